//! The API event model, rule files, their validation and compiled form.
//!
//! A rule goes through three types: [`schema::RuleSpec`] is the YAML as written,
//! [`Rule`] is the validated, compiled rule the dataflow evaluates, and [`RuleSet`] is
//! every rule loaded from a set of files, with their origins. Only [`Rule::compile`] makes a
//! [`Rule`], so no unchecked rule can reach the dataflow.

pub mod compile;
pub mod duration;
pub mod event;
pub mod load;
pub mod matcher;
pub mod packs;
pub mod route;
pub mod schema;
pub mod signature;

pub use compile::{Contribution, Detection, Rule, RuleIssue, Window};
pub use duration::HumanDuration;
pub use event::{ApiEvent, Field};
pub use load::{LoadError, LoadErrors, Origin, RuleSet};
pub use schema::{Severity, Stage};
