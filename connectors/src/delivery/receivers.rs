//! The receivers a configuration can name, and how each is built.
//!
//! Each entry under `delivery.receivers` is a name and one receiver kind with its settings:
//!
//! ```yaml
//! receivers:
//!   design-jira:
//!     jira: {url: "https://example.atlassian.net", project: SEC, email: me@example.com, token: {env: JIRA_TOKEN}}
//! ```
//!
//! Building a receiver resolves its secrets, so a missing variable fails before the run starts.

use serde::Deserialize;

use super::Receiver;

/// One configured receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverConfig {}

impl ReceiverConfig {
    /// Builds the receiver, resolving its secrets.
    pub fn build(&self, name: &str) -> Result<Box<dyn Receiver>, String> {
        let _ = name;
        match *self {}
    }
}
