//! The receivers a configuration can name, and how each is built.
//!
//! Each entry under `delivery.receivers` is a name and one receiver kind with its settings:
//!
//! ```yaml
//! receivers:
//!   build-github:
//!     github: {repo: example/payments-api, token: {env: GITHUB_TOKEN}}
//! ```
//!
//! Building a receiver resolves its secrets, so a missing variable fails before the run starts.

use serde::Deserialize;

use super::alertmanager::{AlertmanagerConfig, AlertmanagerReceiver};
use super::ci::gitlab::{GitLabConfig, GitLabReceiver};
use super::ci::jenkins::{JenkinsConfig, JenkinsReceiver};
use super::ci::signed_webhook::{SignedWebhookConfig, SignedWebhookReceiver};
use super::github::{GithubConfig, GithubReceiver};
use super::jira::{JiraConfig, JiraReceiver};
use super::kafka::{KafkaConfig, KafkaReceiver};
use super::route::Catalog;
use super::slack::{SlackConfig, SlackReceiver};
use super::Receiver;

/// One configured receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverConfig {
    /// Jira issues: created once, commented on, transitioned on resolve and reopen.
    Jira(JiraConfig),
    /// Slack messages through the Web API (edited and threaded) or an incoming webhook.
    Slack(SlackConfig),
    /// GitHub issues, commit statuses and repository dispatches.
    Github(GithubConfig),
    /// Alerts in Alertmanager's v2 API, resolved with the finding.
    Alertmanager(AlertmanagerConfig),
    /// A findings topic keyed by fingerprint.
    Kafka(KafkaConfig),
    /// GitLab pipeline triggers.
    Gitlab(GitLabConfig),
    /// Jenkins parameterised builds.
    Jenkins(JenkinsConfig),
    /// A JSON POST signed with HMAC-SHA256.
    SignedWebhook(SignedWebhookConfig),
}

impl ReceiverConfig {
    /// Builds the receiver, resolving its secrets. A Jira receiver's start-up check also
    /// covers every project the catalog names.
    pub fn build(&self, name: &str, catalog: &Catalog) -> Result<Box<dyn Receiver>, String> {
        Ok(match self {
            ReceiverConfig::Jira(config) => {
                let mut receiver = JiraReceiver::new(name, config)?;
                let mut projects: Vec<String> = catalog
                    .values()
                    .filter_map(|entry| entry.jira_project.clone())
                    .collect();
                projects.sort();
                projects.dedup();
                receiver.with_projects(projects);
                Box::new(receiver)
            }
            ReceiverConfig::Slack(config) => Box::new(SlackReceiver::new(name, config)?),
            ReceiverConfig::Github(config) => Box::new(GithubReceiver::new(name, config)?),
            ReceiverConfig::Alertmanager(config) => {
                Box::new(AlertmanagerReceiver::new(name, config)?)
            }
            ReceiverConfig::Kafka(config) => Box::new(KafkaReceiver::new(name, config)?),
            ReceiverConfig::Gitlab(config) => Box::new(GitLabReceiver::new(name, config)?),
            ReceiverConfig::Jenkins(config) => Box::new(JenkinsReceiver::new(name, config)?),
            ReceiverConfig::SignedWebhook(config) => {
                Box::new(SignedWebhookReceiver::new(name, config)?)
            }
        })
    }
}
