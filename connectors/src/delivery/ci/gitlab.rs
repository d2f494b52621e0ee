//! The GitLab receiver: each finding change listed in `on` triggers a pipeline with a
//! pipeline trigger token.
//!
//! The trigger is `POST /api/v4/projects/:id/trigger/pipeline` with form fields `token`, `ref`
//! and `variables[NAME]` for each parameter in the [CI module](super) table. GitLab responds
//! with 201 and the pipeline (`id`, `web_url`), which becomes the stored remote. The ref comes from the
//! service catalog's `ci_target`, else the receiver's `ref`. The project is a numeric id or a
//! path such as `group/app`, which is URL-encoded here.
//!
//! The trigger token travels in the form body only, so no URL, log line or error contains
//! it. GitLab responds with 404 to an unknown project or an unknown token, and with 400
//! `{"message": {"base": ["Reference not found"]}}` to a ref that does not exist. A project
//! that lets no one set pipeline variables also responds with 400. Each of these becomes a
//! rejection whose reason names the fix. Rate limits (429 with `Retry-After`) and 5xx
//! responses are retried.
//!
//! Recovering an interrupted trigger needs `api_token`, a token with the `read_api` scope,
//! because a trigger token cannot read anything. The lookup lists the latest pipelines that a
//! trigger started on the ref, newest first, and reads each one's variables until it finds one
//! whose `FEEDLOOP_FINGERPRINT` is the notice key. GitLab stores a pipeline before it responds
//! to the trigger, so the list is consistent. Only the newest [`RECOVER_PIPELINES`] are
//! searched. Without `api_token`, `recover` finds nothing and the change triggers again, which
//! runs the pipeline a second time.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use feedloop_rules::HumanDuration;

use super::{Plan, TITLE_MAX_CHARS};
use crate::delivery::http::{encode_component, HttpClient, Request};
use crate::delivery::render::{Redaction, Template};
use crate::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering,
};
use crate::sink::webhook::Secret;

/// The number of recent triggered pipelines that `recover` searches.
pub const RECOVER_PIPELINES: usize = 20;

/// The `Remote::extra` entry with the ref the pipeline ran on.
pub const EXTRA_REF: &str = "ref";

/// Settings of one GitLab receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitLabConfig {
    /// The GitLab instance's URL without `/api/v4`, `https://gitlab.com` by default.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The project: a numeric id such as `42`, or a path such as `group/app`.
    pub project: String,
    /// The pipeline trigger token, from the project's Settings > CI/CD > Pipeline trigger
    /// tokens.
    pub trigger_token: Secret,
    /// The branch or tag to run on when the service catalog names no `ci_target`.
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// A token with the `read_api` scope, used only to find a pipeline after an interrupted
    /// trigger.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// The change kinds that trigger a pipeline: opened, reopened and resolved by default.
    #[serde(default = "super::default_ci_kinds")]
    pub on: Vec<ChangeKind>,
    /// Time allowed for one request, connecting included, 10s by default.
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// The template of `FEEDLOOP_TITLE`.
    #[serde(default = "super::default_title")]
    pub title: String,
    /// Redaction policy for the title. Principals and clients are hashed by default, because
    /// pipeline variables are visible to everyone who can see the pipeline.
    #[serde(default = "Redaction::public")]
    pub redaction: Redaction,
}

fn default_base_url() -> String {
    "https://gitlab.com".to_string()
}

/// A receiver that triggers GitLab pipelines.
pub struct GitLabReceiver {
    name: String,
    http: HttpClient,
    base_url: String,
    project: String,
    trigger_token: String,
    api_token: Option<String>,
    git_ref: Option<String>,
    on: Vec<ChangeKind>,
    title: Template,
    redaction: Redaction,
}

impl fmt::Debug for GitLabReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabReceiver")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("project", &self.project)
            .field("trigger_token", &"<redacted>")
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("git_ref", &self.git_ref)
            .field("on", &self.on)
            .field("title", &self.title.source())
            .finish()
    }
}

impl GitLabReceiver {
    /// Builds a receiver: resolves the tokens, parses the title and checks the settings.
    pub fn new(name: &str, config: &GitLabConfig) -> Result<GitLabReceiver, String> {
        super::check_url(name, "base_url", &config.base_url)?;
        super::check_kinds(name, &config.on)?;
        if config.project.trim().is_empty() {
            return Err(format!(
                "receiver `{name}`: `project` is empty; set the numeric project id or its path, such as `group/app`"
            ));
        }
        if config
            .git_ref
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err(format!(
                "receiver `{name}`: `ref` is empty; name a branch or tag such as `main`, or leave `ref` out"
            ));
        }
        let trigger_token = config
            .trigger_token
            .resolve()
            .map_err(|err| format!("receiver `{name}`: `trigger_token`: {err}"))?;
        let api_token = match &config.api_token {
            Some(secret) => Some(
                secret
                    .resolve()
                    .map_err(|err| format!("receiver `{name}`: `api_token`: {err}"))?,
            ),
            None => None,
        };
        Ok(GitLabReceiver {
            name: name.to_string(),
            http: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            project: encode_project(config.project.trim()),
            trigger_token,
            api_token,
            git_ref: config.git_ref.clone(),
            on: config.on.clone(),
            title: super::parse_template(name, "title", &config.title)?,
            redaction: config.redaction,
        })
    }

    fn project_url(&self) -> String {
        format!("{}/api/v4/projects/{}", self.base_url, self.project)
    }

    /// Returns the ref to run on: the catalog's `ci_target`, else the configured `ref`.
    fn git_ref(&self, notice: &Notice) -> Result<String, DeliveryError> {
        let from_catalog = notice.target.ci_target.as_deref().filter(|r| !r.is_empty());
        match from_catalog.or(self.git_ref.as_deref()) {
            Some(git_ref) => Ok(git_ref.to_string()),
            None => Err(DeliveryError::reject(format!(
                "GitLab receiver `{}` has no ref for service `{}`: set `ci_target` for the service in the service catalog, or `ref` in the receiver's settings",
                self.name, notice.target.service
            ))),
        }
    }

    /// Adds the receiver, the project, the ref and the fix to a rejected trigger.
    fn explain(&self, err: DeliveryError, git_ref: &str) -> DeliveryError {
        let prefix = format!(
            "GitLab receiver `{}` failed to trigger a pipeline on ref `{git_ref}` of project `{}`",
            self.name, self.project
        );
        let hint = |status| match status {
            Some(400) => {
                Some("check that the ref exists and that the project allows pipeline variables")
            }
            Some(401 | 403) => {
                Some("check `trigger_token` and that its owner may still run pipelines")
            }
            Some(404) => Some("check `project` and that `trigger_token` belongs to it"),
            _ => None,
        };
        super::explain_rejection(err, &prefix, hint, false)
    }

    /// Sends the trigger and returns the stored remote for the pipeline it started.
    fn trigger(
        &self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Remote, DeliveryError> {
        let git_ref = self.git_ref(notice)?;
        let redacted = super::redacted(notice, &self.redaction);
        let title =
            super::render_title(&redacted, &self.title, rendering, progress, TITLE_MAX_CHARS);
        let mut form = vec![
            ("token".to_string(), self.trigger_token.clone()),
            ("ref".to_string(), git_ref.clone()),
        ];
        for (name, value) in super::parameters(notice, &title) {
            form.push((format!("variables[{name}]"), value));
        }
        let url = format!("{}/trigger/pipeline", self.project_url());
        let reply = self
            .http
            .send(&Request::new("POST", url).form(form))
            .map_err(|err| self.explain(err, &git_ref))?;
        let pipeline = reply.json()?;
        let id = pipeline_id(&pipeline).ok_or_else(|| DeliveryError::Reject {
            reason: format!(
                "GitLab receiver `{}`: the trigger response has no pipeline `id`",
                self.name
            ),
            status: Some(reply.status),
            response: crate::delivery::http::excerpt(&reply.body),
            fallback: false,
        })?;
        let web_url = pipeline["web_url"].as_str().map(str::to_string);
        Ok(super::triggered(
            notice,
            id,
            web_url,
            &[(EXTRA_REF, &git_ref)],
        ))
    }

    /// Adds the receiver and the fix to a rejected read made by `recover`.
    fn explain_read(&self, err: DeliveryError) -> DeliveryError {
        let prefix = format!(
            "GitLab receiver `{}` failed to list the pipelines of project `{}`",
            self.name, self.project
        );
        let hint = |status| {
            match status {
            Some(401 | 403) => Some(
                "check that `api_token` is valid, has the `read_api` scope and a role that may read pipeline variables",
            ),
            Some(404) => Some("check `project` and that `api_token` can see it"),
            _ => None,
        }
        };
        super::explain_rejection(err, &prefix, hint, false)
    }

    /// Lists recent triggered pipelines on a ref, newest first.
    fn recent_pipelines(&self, token: &str, git_ref: &str) -> Result<Vec<Value>, DeliveryError> {
        let url = format!(
            "{}/pipelines?source=trigger&ref={}&order_by=id&sort=desc&per_page={RECOVER_PIPELINES}",
            self.project_url(),
            encode_component(git_ref)
        );
        let reply = self
            .http
            .send(&Request::new("GET", url).header("PRIVATE-TOKEN", token))
            .map_err(|err| self.explain_read(err))?;
        match reply.json()? {
            Value::Array(pipelines) => Ok(pipelines),
            _ => Err(DeliveryError::retry(format!(
                "GitLab receiver `{}`: the pipeline list is not a JSON array",
                self.name
            ))),
        }
    }

    /// Reads a pipeline's variables as name and value pairs.
    fn pipeline_variables(
        &self,
        token: &str,
        id: &str,
    ) -> Result<Vec<(String, String)>, DeliveryError> {
        let url = format!("{}/pipelines/{id}/variables", self.project_url());
        let reply = self
            .http
            .send(&Request::new("GET", url).header("PRIVATE-TOKEN", token))
            .map_err(|err| self.explain_read(err))?;
        let variables = reply.json()?;
        let pairs = variables
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let key = item["key"].as_str()?;
                        let value = item["value"].as_str()?;
                        Some((key.to_string(), value.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(pairs)
    }
}

impl Receiver for GitLabReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        match super::plan(&self.name, &self.on, notice, remote) {
            Plan::Skip(reason) => Ok(Effect::Skipped(reason)),
            Plan::AlreadySent(remote) => Ok(Effect::Applied(remote)),
            Plan::Send => {
                let triggered = self.trigger(notice, rendering, progress)?;
                Ok(super::record(remote, triggered, progress))
            }
        }
    }

    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let Some(token) = self.api_token.clone() else {
            return Ok(None);
        };
        let Ok(git_ref) = self.git_ref(notice) else {
            return Ok(None);
        };
        for pipeline in self.recent_pipelines(&token, &git_ref)? {
            let Some(id) = pipeline_id(&pipeline) else {
                continue;
            };
            let variables = self.pipeline_variables(&token, &id)?;
            let matches = variables
                .iter()
                .any(|(name, value)| name == "FEEDLOOP_FINGERPRINT" && *value == notice.key);
            if matches {
                let web_url = pipeline["web_url"].as_str().map(str::to_string);
                return Ok(super::recovered(
                    id,
                    web_url,
                    &variables,
                    &[(EXTRA_REF, &git_ref)],
                ));
            }
        }
        Ok(None)
    }
}

/// Returns a pipeline's `id` as text.
fn pipeline_id(pipeline: &Value) -> Option<String> {
    pipeline["id"].as_u64().map(|id| id.to_string())
}

/// Returns the project as it goes into a URL: a numeric id or an encoded path unchanged, and a
/// plain path such as `group/app` encoded as `group%2Fapp`.
fn encode_project(project: &str) -> String {
    if project.contains('%') {
        project.to_string()
    } else {
        encode_component(project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<GitLabConfig, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    #[test]
    fn config_defaults() {
        let config = parse("project: group/app\ntrigger_token: t0k\nref: main\n").unwrap();
        assert_eq!(config.base_url, "https://gitlab.com");
        assert_eq!(config.git_ref.as_deref(), Some("main"));
        assert_eq!(
            config.on,
            [
                ChangeKind::Opened,
                ChangeKind::Reopened,
                ChangeKind::Resolved
            ]
        );
        assert_eq!(config.timeout, HumanDuration(10_000));
        assert_eq!(config.title, crate::delivery::render::DEFAULT_TITLE);
        assert_eq!(config.redaction, Redaction::public());
        assert!(config.api_token.is_none());
    }

    #[test]
    fn config_reads_every_field() {
        let config = parse(
            "base_url: https://gitlab.example.com\nproject: 42\ntrigger_token: {env: GL_TRIGGER}\n\
             api_token: {file: /run/gl}\non: [opened, updated]\ntimeout: 3s\ntitle: '{{ rule_id }}'\n\
             redaction: {principals: drop}\n",
        )
        .unwrap();
        assert_eq!(config.project, "42");
        assert_eq!(config.on, [ChangeKind::Opened, ChangeKind::Updated]);
        assert_eq!(config.timeout, HumanDuration(3_000));
        assert_eq!(
            config.trigger_token,
            Secret::Env {
                env: "GL_TRIGGER".into()
            }
        );
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = parse("project: 1\ntrigger_token: t\nbranch: main\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `branch`"), "{err}");
    }

    #[test]
    fn new_rejects_bad_settings() {
        let config = parse("project: 1\ntrigger_token: t\ntitle: '{{ nope }}'\n").unwrap();
        let err = GitLabReceiver::new("gl", &config).unwrap_err();
        assert!(
            err.starts_with("receiver `gl`: invalid `title`: template `{{ nope }}`"),
            "{err}"
        );
        let config = parse("project: ' '\ntrigger_token: t\n").unwrap();
        let err = GitLabReceiver::new("gl", &config).unwrap_err();
        assert!(
            err.starts_with("receiver `gl`: `project` is empty"),
            "{err}"
        );
        let config = parse("project: 1\ntrigger_token: t\non: []\n").unwrap();
        let err = GitLabReceiver::new("gl", &config).unwrap_err();
        assert!(err.starts_with("receiver `gl`: `on` is empty"), "{err}");
    }

    #[test]
    fn project_paths_are_encoded_once() {
        assert_eq!(encode_project("42"), "42");
        assert_eq!(encode_project("group/sub/app"), "group%2Fsub%2Fapp");
        assert_eq!(encode_project("group%2Fapp"), "group%2Fapp");
    }

    #[test]
    fn debug_hides_tokens() {
        let config =
            parse("project: 1\ntrigger_token: trig-secret\napi_token: api-secret\n").unwrap();
        let receiver = GitLabReceiver::new("gl", &config).unwrap();
        let text = format!("{config:?} {receiver:?}");
        assert!(!text.contains("trig-secret"), "{text}");
        assert!(!text.contains("api-secret"), "{text}");
    }
}
