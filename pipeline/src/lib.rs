//! The timely dataflow that evaluates compiled rules over event-time windows.
//!
//! Sources hand decoded events to [`driver::run`] through [`driver::PartitionReader`]s; the
//! dataflow in [`dataflow`] evaluates every rule, keeps each group's windows in
//! [`window::WindowStore`] and emits [`finding::Finding`]s and their lifecycle
//! [`lifecycle::Change`]s. Nothing in this crate performs I/O
//! beyond calling the readers it is given and sending to the output channel.

pub mod dataflow;
pub mod dead_letter;
pub mod driver;
pub mod finding;
pub mod impact;
pub mod kpi;
pub mod lifecycle;
pub mod window;

pub use dead_letter::{DeadLetter, Position, Reason};
pub use driver::{
    run, Output, PartitionReader, ReadBatch, ReadStatus, ReaderFactory, RunCounts, RunOptions,
};
pub use finding::{Finding, Phase};
pub use impact::Impact;
pub use lifecycle::{Change, ChangeKind, OpenFinding};
