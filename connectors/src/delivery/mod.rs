//! Delivery: each finding change applied once to every receiver it is routed to.
//!
//! The dataflow emits lifecycle changes (opened, updated, resolved, reopened). The router picks
//! the receivers of each change, and the outbox stores the change durably before anything is
//! sent. Each receiver runs on its own thread, takes its changes from the outbox in order, and
//! records the remote object it created (a Jira key, an issue number, a Slack message
//! timestamp) in the state store in the same transaction that marks the change done.
//!
//! A receiver therefore never decides on its own whether to create or update: the state store
//! tells it whether a remote object exists for the notice's key and whether it is open. An
//! opened change for a key that already has an object becomes an update, which is what makes a
//! restart, a replay of the same input or a retry harmless. A receiver that creates something
//! must report it through [`Progress::created`] before any further request, so a failure after
//! the create can never lead to a second one.

pub mod alertmanager;
pub mod ci;
pub mod engine;
pub mod github;
pub mod http;
pub mod jira;
pub mod kafka;
pub mod receivers;
pub mod render;
pub mod route;
pub mod slack;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use feedloop_pipeline::ChangeKind;
use feedloop_pipeline::Finding;

/// The destinations of a service's findings, from the service catalog. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The service's name; empty when the finding names no service.
    #[serde(default)]
    pub service: String,
    /// The owning team or people, for messages and assignees.
    #[serde(default)]
    pub owners: Vec<String>,
    /// The Jira project key, such as `PAY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jira_project: Option<String>,
    /// The GitHub repository as `owner/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_repo: Option<String>,
    /// GitHub logins to assign issues to.
    #[serde(default)]
    pub github_assignees: Vec<String>,
    /// The Slack channel id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// The CI target: a GitLab project id, a Jenkins job, or a commit ref to set statuses on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_target: Option<String>,
}

/// A group of findings delivered as one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The route's `group_by` labels and their values.
    pub labels: BTreeMap<String, String>,
    /// Changes folded into this notice.
    pub count: u64,
}

/// One change as a receiver sees it: the unit of delivery, stored in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The remote object's identity: the finding's fingerprint, or a group's key.
    pub key: String,
    /// The change's identity; the same input always gives the same id, so a replay is seen.
    pub change_id: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The finding's latest state; for a group, every member's latest state.
    pub findings: Vec<Finding>,
    /// Set when a route groups findings into one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupInfo>,
    /// The catalog entry of the findings' service.
    #[serde(default)]
    pub target: Target,
}

impl Notice {
    /// Returns the finding the message is about: the only one, or a group's first.
    ///
    /// # Panics
    ///
    /// Panics if the notice has no finding; the router never builds one without.
    pub fn finding(&self) -> &Finding {
        self.findings
            .first()
            .expect("a notice always carries at least one finding")
    }
}

/// The remote object a receiver created for a notice key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// The service's id for it: a Jira key, an issue number, a Slack `channel/ts`.
    pub id: String,
    /// A link people can open, when the service gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// False once the receiver closed or resolved it.
    pub open: bool,
    /// Anything else the receiver needs later, such as a Slack thread timestamp.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// How much a receiver puts into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// Templates, evidence, everything the receiver's limits allow.
    Full,
    /// Title, rule, severity and fingerprint only: the retry after a size or format error.
    Minimal,
}

/// Why a delivery failed, classed by what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryError {
    /// A later attempt may succeed: 408, 425, 429, 5xx, rate limits, timeouts, refused
    /// connections. `after` is the least wait the service asked for.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying the same request cannot help: validation, permissions, a missing project.
    Reject {
        reason: String,
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// The start of the service's response body, for the dead-letter output.
        response: String,
        /// True when the cause is the message's size or format, so a minimal message may pass.
        fallback: bool,
    },
}

impl DeliveryError {
    /// Returns a retryable error without a requested wait.
    pub fn retry(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// Returns a rejection with no response, such as a missing catalog entry.
    pub fn reject(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Reject {
            reason: reason.into(),
            status: None,
            response: String::new(),
            fallback: false,
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Retry { reason, .. } => f.write_str(reason),
            DeliveryError::Reject { reason, .. } => f.write_str(reason),
        }
    }
}

/// Records a receiver's progress while it applies a notice.
pub trait Progress {
    /// Stores a newly created remote object at once, before the receiver sends anything else
    /// for the notice.
    fn created(&mut self, remote: &Remote);

    /// Counts a template that failed to render; the receiver sent its plain default instead.
    fn render_failed(&mut self, reason: &str);
}

/// What applying a notice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The remote object after the change; stored for the notice's key.
    Applied(Remote),
    /// Nothing to do, with the reason, such as a resolve for a key that never had an object.
    Skipped(String),
}

/// A client of one service's API. Each runs on its own thread.
pub trait Receiver: Send {
    /// Returns the receiver's configured name.
    fn name(&self) -> &str;

    /// Checks the remote configuration before the run starts, such as Jira's project and
    /// required fields. The default checks nothing.
    fn check(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Applies one notice. `remote` is the object stored for the notice's key, if any.
    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError>;

    /// Finds the object an interrupted create may have made, by the marker the receiver puts
    /// in everything it creates. Called only for a key whose create was started but never
    /// recorded. The default finds nothing.
    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let _ = notice;
        Ok(None)
    }
}
