//! Sources, decoders and sinks around the dataflow.
//!
//! Sources read records and decode them into events for the dataflow driver; sinks take what
//! the dataflow emits (findings and dead letters) to the console, files and webhooks.

pub mod chart;
pub mod decode;
pub mod delivery;
pub mod encode;
pub mod sink;
pub mod source;
