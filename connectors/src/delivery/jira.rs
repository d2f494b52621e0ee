//! The Jira receiver: one issue per finding, then comments and workflow transitions.
//!
//! An opened finding creates an issue (`POST /rest/api/{v}/issue`) in the project of the
//! finding's service, from the service catalog's `jira_project`, else in the configured
//! `project`. Later changes comment on that issue; a resolve or a reopen moves it through the
//! project's workflow by transition name, then comments why. Two API flavours exist: Jira Cloud
//! (REST v3, Basic auth with an account email and API token, rich text as Atlassian Document
//! Format) and Jira Data Center (REST v2, a personal access token as Bearer, wiki markup).
//! When the finding carries KPI impact, a full create also attaches the PNG chart of its most
//! affected route as `impact-<KEY>.png`, after the issue is recorded.
//!
//! Every issue carries the labels `feedloop`, the rule id and [`render::marker`] of the
//! notice key. [`JiraReceiver::recover`] searches for that marker label. The engine calls it
//! only for a create whose outcome is unknown (the process stopped between the request and
//! recording the response), never to deduplicate ordinary changes, which the state store does.
//! Jira has no consistent lookup by label: Cloud's `search/jql` is eventually consistent
//! (Atlassian's "Search after write" guide for Jira Cloud: usually seconds, sometimes minutes),
//! and its `reconcileIssues` remedy needs the issue ids that the lost response held. Data
//! Center's index can lag on other cluster nodes. A recover soon after the lost create can
//! therefore miss the issue, and the retry then creates a second one.
//!
//! Misconfiguration fails at start-up rather than at the first finding. [`Receiver::check`]
//! looks up each project's issue type and its required fields through the create metadata
//! API. It names every required field that feedloop does not fill, with the configuration line
//! to add. Tokens are resolved once; neither they nor the `Authorization`
//! header appear in `Debug` output, logs or errors.

mod check;
mod content;
mod document;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use feedloop_pipeline::Finding;
use feedloop_rules::HumanDuration;

pub use self::content::TEXT_MAX_CHARS;
use self::document::{Document, Format};
use super::http::{self, HttpClient, Reply, Request};
use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering};
use crate::chart;
use crate::sink::webhook::Secret;

/// Jira's limit for an issue summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 255;

/// The label every feedloop issue carries, besides its marker and rule id.
pub const FEEDLOOP_LABEL: &str = "feedloop";

/// Fields the start-up check does not ask for: feedloop fills them, and Jira fills `reporter`
/// with the token's user. `fields` may set `reporter` but none of the others.
pub const FILLED_FIELDS: &[&str] = &[
    "project",
    "issuetype",
    "summary",
    "description",
    "reporter",
    "labels",
];

/// Defaults of [`JiraConfig`], named in one place.
pub mod defaults {
    /// The issue type: `Task` exists in Jira Software, Jira Work Management and Jira Service
    /// Management project templates, `Bug` only in software projects.
    pub const ISSUE_TYPE: &str = "Task";

    /// Resolve transitions tried in order: `Done` in simplified and team-managed workflows,
    /// `Resolve Issue` and `Close Issue` in Jira's classic default workflow.
    pub const RESOLVE_TRANSITIONS: &[&str] = &["Done", "Resolve Issue", "Close Issue"];

    /// Reopen transitions tried in order: `Reopen` in many custom workflows, `Reopen Issue` in
    /// Jira's classic default workflow, `To Do` in simplified workflows.
    pub const REOPEN_TRANSITIONS: &[&str] = &["Reopen", "Reopen Issue", "To Do"];

    /// Time allowed for one request, connecting included, in milliseconds.
    pub const TIMEOUT_MS: u64 = 10_000;
}

/// The Jira REST API flavour a receiver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JiraApi {
    /// Jira Cloud: REST v3, Atlassian Document Format, Basic auth with `email` and an API
    /// token.
    #[default]
    Cloud,
    /// Jira Data Center or Server: REST v2, wiki markup, a personal access token as Bearer.
    DataCenter,
}

impl JiraApi {
    /// Returns the REST path prefix, such as `rest/api/3`.
    pub fn prefix(self) -> &'static str {
        match self {
            JiraApi::Cloud => "rest/api/3",
            JiraApi::DataCenter => "rest/api/2",
        }
    }

    /// Returns the rich-text format of descriptions and comments.
    fn format(self) -> Format {
        match self {
            JiraApi::Cloud => Format::Adf,
            JiraApi::DataCenter => Format::Wiki,
        }
    }
}

/// Workflow transition names in order of preference: the first one the issue offers is taken.
/// Configured as one name or a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct TransitionNames(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for TransitionNames {
    fn from(value: OneOrMany) -> TransitionNames {
        match value {
            OneOrMany::One(name) => TransitionNames(vec![name]),
            OneOrMany::Many(names) => TransitionNames(names),
        }
    }
}

impl TransitionNames {
    fn from_static(names: &[&str]) -> TransitionNames {
        TransitionNames(names.iter().map(|name| name.to_string()).collect())
    }

    /// Returns the names quoted and joined for messages: `"Done" or "Close Issue"`.
    fn describe(&self) -> String {
        quoted_list(&self.0, "or")
    }
}

/// Settings of one Jira receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// The site's base URL, such as `https://example.atlassian.net` or
    /// `https://jira.example.com/jira`; issue links are `<base_url>/browse/<KEY>`.
    pub base_url: String,
    /// The API flavour: `cloud` (the default) or `data_center`.
    #[serde(default)]
    pub api: JiraApi,
    /// The Atlassian account email the API token belongs to; required for `cloud`, rejected
    /// for `data_center`.
    #[serde(default)]
    pub email: Option<String>,
    /// A Cloud API token or a Data Center personal access token: literal, `{env: NAME}` or
    /// `{file: PATH}`.
    pub token: Secret,
    /// The project key for findings whose service has no `jira_project` in the catalog.
    #[serde(default)]
    pub project: Option<String>,
    /// The issue type name; defaults to [`defaults::ISSUE_TYPE`].
    #[serde(default = "default_issue_type")]
    pub issue_type: String,
    /// Labels added to every issue, besides `feedloop`, the marker and the rule id. Jira
    /// labels cannot contain spaces.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Extra issue fields by field id, such as custom fields required by the project. A value
    /// is a template string (`"{{ severity }}"`, sent as a string) or any JSON value whose
    /// strings are templates, such as `{value: "{{ severity }}"}` for a select field or `3`
    /// for a number field.
    #[serde(default)]
    pub fields: BTreeMap<String, Value>,
    /// The issue summary template; defaults to [`render::DEFAULT_TITLE`].
    #[serde(default = "default_title")]
    pub title: String,
    /// An optional template shown before the facts in the description.
    #[serde(default)]
    pub body: Option<String>,
    /// The redaction policy for principals, clients, query strings and user agents. The
    /// default keeps all of them.
    #[serde(default)]
    pub redaction: Redaction,
    /// Transition names that resolve an issue; defaults to [`defaults::RESOLVE_TRANSITIONS`].
    #[serde(default = "default_resolve_transitions")]
    pub resolve_transition: TransitionNames,
    /// Transition names that reopen an issue; defaults to [`defaults::REOPEN_TRANSITIONS`].
    #[serde(default = "default_reopen_transitions")]
    pub reopen_transition: TransitionNames,
    /// A resolution name, such as `Done` or `Fixed`, sent with the resolve transition for
    /// workflows whose resolve screen requires one; none by default.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Time allowed for one request, connecting included, such as `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_issue_type() -> String {
    defaults::ISSUE_TYPE.to_string()
}

fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}

fn default_resolve_transitions() -> TransitionNames {
    TransitionNames::from_static(defaults::RESOLVE_TRANSITIONS)
}

fn default_reopen_transitions() -> TransitionNames {
    TransitionNames::from_static(defaults::REOPEN_TRANSITIONS)
}

fn default_timeout() -> HumanDuration {
    HumanDuration(defaults::TIMEOUT_MS)
}

/// A configured field value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
enum FieldValue {
    Text(Template),
    List(Vec<FieldValue>),
    Object(Vec<(String, FieldValue)>),
    Literal(Value),
}

impl FieldValue {
    fn parse(value: &Value) -> Result<FieldValue, String> {
        Ok(match value {
            Value::String(text) => FieldValue::Text(Template::parse(text)?),
            Value::Array(items) => FieldValue::List(
                items
                    .iter()
                    .map(FieldValue::parse)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => FieldValue::Object(
                map.iter()
                    .map(|(name, value)| Ok((name.clone(), FieldValue::parse(value)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => FieldValue::Literal(other.clone()),
        })
    }

    fn render(&self, notice: &Notice) -> Result<Value, String> {
        Ok(match self {
            FieldValue::Text(template) => Value::String(template.render(notice)?),
            FieldValue::List(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render(notice))
                    .collect::<Result<_, _>>()?,
            ),
            FieldValue::Object(entries) => {
                let mut map = Map::new();
                for (name, value) in entries {
                    map.insert(name.clone(), value.render(notice)?);
                }
                Value::Object(map)
            }
            FieldValue::Literal(value) => value.clone(),
        })
    }
}

/// A Jira client that applies finding changes as issues, comments and transitions.
pub struct JiraReceiver {
    name: String,
    api: JiraApi,
    base_url: String,
    /// The whole `Authorization` header value; it contains the token.
    authorization: String,
    project: Option<String>,
    issue_type: String,
    labels: Vec<String>,
    fields: Vec<(String, FieldValue)>,
    title: Template,
    body: Option<Template>,
    redaction: Redaction,
    resolve_transition: TransitionNames,
    reopen_transition: TransitionNames,
    resolution: Option<String>,
    /// Projects the start-up check covers besides `project`, such as the catalog's.
    extra_projects: Vec<String>,
    client: HttpClient,
}

impl fmt::Debug for JiraReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JiraReceiver")
            .field("name", &self.name)
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("authorization", &"<redacted>")
            .field("project", &self.project)
            .field("issue_type", &self.issue_type)
            .finish_non_exhaustive()
    }
}

impl JiraReceiver {
    /// Builds a receiver: checks the settings, resolves the token and parses the templates.
    /// Errors name the receiver and the field.
    pub fn new(name: &str, config: &JiraConfig) -> Result<JiraReceiver, String> {
        let fail =
            |field: &str, message: String| format!("jira receiver `{name}`: {field}: {message}");
        let base_url = check_base_url(&config.base_url).map_err(|err| fail("base_url", err))?;
        let token = config.token.resolve().map_err(|err| fail("token", err))?;
        if token.trim().is_empty() {
            return Err(fail(
                "token",
                "the token is empty; set the API token or personal access token".into(),
            ));
        }
        let authorization = authorization(name, config, &token)?;
        if config.timeout.as_millis() == 0 {
            return Err(fail(
                "timeout",
                "invalid timeout 0; use at least 1ms, such as 10s".into(),
            ));
        }
        check_names(config).map_err(|(field, err)| fail(field, err))?;
        let fields = parse_fields(&config.fields).map_err(|(field, err)| fail(&field, err))?;
        let title = Template::parse(&config.title).map_err(|err| fail("title", err))?;
        let body = config
            .body
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|err| fail("body", err))?;
        Ok(JiraReceiver {
            name: name.to_string(),
            api: config.api,
            base_url,
            authorization,
            project: config.project.clone().filter(|p| !p.trim().is_empty()),
            issue_type: config.issue_type.clone(),
            labels: config.labels.clone(),
            fields,
            title,
            body,
            redaction: config.redaction,
            resolve_transition: config.resolve_transition.clone(),
            reopen_transition: config.reopen_transition.clone(),
            resolution: config.resolution.clone(),
            extra_projects: Vec::new(),
            client: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
        })
    }

    /// Sets the projects the start-up check covers besides the configured `project`, such as
    /// every `jira_project` in the service catalog that routes to this receiver.
    pub fn with_projects(&mut self, projects: Vec<String>) {
        self.extra_projects = projects;
    }

    /// Uploads a PNG file, such as a chart, as an attachment of issue `key` and returns the
    /// attachment's id.
    pub fn attach(&self, key: &str, file_name: &str, png: &[u8]) -> Result<String, DeliveryError> {
        if file_name.is_empty() || file_name.contains(['"', '\\', '\r', '\n', '/']) {
            return Err(DeliveryError::reject(format!(
                "invalid attachment file name `{}`: use a plain name such as chart.png, without quotes, slashes or line breaks",
                file_name.escape_default()
            )));
        }
        let (content_type, bytes) = http::multipart_file("file", file_name, "image/png", png);
        let request = Request::new(
            "POST",
            self.url(&format!("issue/{}/attachments", path_part(key))),
        )
        .header("X-Atlassian-Token", "no-check")
        .raw(content_type, bytes);
        let reply = self.send(request)?.json()?;
        let id = reply
            .as_array()
            .and_then(|items| items.first())
            .and_then(|item| item.get("id"))
            .map(|id| match id {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            });
        id.ok_or_else(|| unexpected_response("POST attachments", "attachment id"))
    }

    /// Returns the URL of a REST resource, such as `issue` or `issue/PAY-1/comment`.
    fn url(&self, resource: &str) -> String {
        format!("{}/{}/{resource}", self.base_url, self.api.prefix())
    }

    /// Sends a request with the credentials and adds Jira's error details to a rejection.
    fn send(&self, request: Request) -> Result<Reply, DeliveryError> {
        let request = request
            .header("Authorization", self.authorization.as_str())
            .header("Accept", "application/json");
        self.client
            .send(&request)
            .map_err(|err| explain(self.api, err))
    }

    fn project_for(&self, notice: &Notice) -> Result<String, DeliveryError> {
        let from_catalog = notice
            .target
            .jira_project
            .as_deref()
            .filter(|p| !p.trim().is_empty());
        match from_catalog.or(self.project.as_deref()) {
            Some(project) => Ok(project.trim().to_string()),
            None => Err(DeliveryError::reject(format!(
                "jira receiver `{}` has no project for service `{}`: set `jira_project` for the service in the catalog, or `project` in the receiver",
                self.name, notice.target.service
            ))),
        }
    }

    /// Returns the notice with the redaction policy applied to every finding, so templates,
    /// facts and evidence all see redacted values.
    fn redacted(&self, notice: &Notice) -> Notice {
        self.redaction.apply_notice(notice)
    }

    fn summary(&self, notice: &Notice, progress: &mut dyn Progress) -> String {
        let rendered = self.title.render(notice).unwrap_or_else(|err| {
            progress.render_failed(&format!("jira receiver `{}`: title: {err}", self.name));
            default_summary(notice)
        });
        let line = rendered.replace("\r\n", " ").replace(['\r', '\n'], " ");
        let line = line.trim();
        let line = if line.is_empty() {
            default_summary(notice)
        } else {
            line.to_string()
        };
        render::truncate(&line, SUMMARY_MAX_CHARS)
    }

    fn intro(&self, notice: &Notice, progress: &mut dyn Progress) -> Option<String> {
        let template = self.body.as_ref()?;
        match template.render(notice) {
            Ok(text) => Some(text),
            Err(err) => {
                progress.render_failed(&format!("jira receiver `{}`: body: {err}", self.name));
                None
            }
        }
    }

    fn issue_labels(&self, notice: &Notice, finding: &Finding) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        let wanted = self.labels.iter().cloned().chain([
            FEEDLOOP_LABEL.to_string(),
            marker_label(&notice.key),
            label_text(&finding.rule_id),
        ]);
        for label in wanted {
            if !label.is_empty() && !labels.contains(&label) {
                labels.push(label);
            }
        }
        labels
    }

    /// Renders the configured `fields`. A field whose template fails is left out and counted.
    fn extra_fields(&self, notice: &Notice, progress: &mut dyn Progress) -> Map<String, Value> {
        let mut out = Map::new();
        for (id, value) in &self.fields {
            match value.render(notice) {
                Ok(value) => {
                    out.insert(id.clone(), value);
                }
                Err(err) => progress.render_failed(&format!(
                    "jira receiver `{}`: fields.{id}: {err}; the field was left out",
                    self.name
                )),
            }
        }
        out
    }

    fn create(
        &self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let project = self.project_for(notice)?;
        let notice = self.redacted(notice);
        let finding = notice.finding();
        let intro = match rendering {
            Rendering::Full => self.intro(&notice, progress),
            Rendering::Minimal => None,
        };
        let description = content::description(
            &notice,
            finding,
            intro.as_deref(),
            rendering,
            self.api.format(),
        );
        let mut fields = self.extra_fields(&notice, progress);
        fields.insert("project".into(), json!({"key": project}));
        fields.insert("issuetype".into(), json!({"name": self.issue_type}));
        fields.insert("summary".into(), json!(self.summary(&notice, progress)));
        fields.insert(
            "description".into(),
            description.to_value(self.api.format()),
        );
        fields.insert("labels".into(), json!(self.issue_labels(&notice, finding)));

        let request = Request::new("POST", self.url("issue")).json(json!({ "fields": fields }));
        let response = self.send(request)?.json()?;
        let key = response
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected_response("POST issue", "issue `key`"))?;
        let remote = Remote {
            id: key.to_string(),
            url: Some(self.browse_url(key)),
            open: true,
            extra: BTreeMap::new(),
        };
        // Recorded before anything else is sent, so a later failure cannot cause a second
        // create.
        progress.created(&remote);
        if rendering == Rendering::Full {
            self.attach_chart(key, finding);
        }
        Ok(Effect::Applied(remote))
    }

    /// Attaches the impact chart of the finding's most affected route to a new issue as
    /// `impact-<issue key>.png`; does nothing for a finding without impact.
    ///
    /// The issue is recorded by then, so a failure is logged and the create still counts as
    /// applied. An error here would make the engine retry the change, and the retry would
    /// find the recorded issue and comment on it instead of creating or attaching anything.
    // NOTE: the upload is tried once. A failed upload, or a stop between the create and the
    // upload, leaves the issue without its chart.
    fn attach_chart(&self, key: &str, finding: &Finding) {
        let Some(route) = finding
            .impact
            .as_ref()
            .and_then(|impact| impact.routes.first())
        else {
            return;
        };
        let title = render::clean(&format!(
            "{}: {} on {}",
            finding.title, route.route, route.service
        ));
        let file_name = format!("impact-{key}.png");
        let attached =
            chart::render_png(&title, route, chart::DEFAULT_WIDTH, chart::DEFAULT_HEIGHT)
                .map_err(|err| err.to_string())
                .and_then(|png| {
                    self.attach(key, &file_name, &png)
                        .map_err(|err| err.to_string())
                });
        if let Err(err) = attached {
            tracing::warn!(
                receiver = %self.name,
                issue = %key,
                error = %err,
                "failed to attach the impact chart; the issue stays without it"
            );
        }
    }

    fn browse_url(&self, key: &str) -> String {
        format!("{}/browse/{key}", self.base_url)
    }

    fn comment(&self, key: &str, body: &Document) -> Result<(), DeliveryError> {
        let request = Request::new(
            "POST",
            self.url(&format!("issue/{}/comment", path_part(key))),
        )
        .json(json!({"body": body.to_value(self.api.format())}));
        self.send(request).map(|_| ())
    }

    fn update(
        &self,
        notice: &Notice,
        remote: &Remote,
        rendering: Rendering,
    ) -> Result<Effect, DeliveryError> {
        let notice = self.redacted(notice);
        let finding = notice.finding();
        let lead = format!(
            "feedloop saw this finding again ({}): count {}, last seen {}.",
            notice.kind, finding.count, finding.last_seen
        );
        let body = content::comment(&notice, finding, &lead, true, rendering, self.api.format());
        self.comment(&remote.id, &body)?;
        Ok(Effect::Applied(Remote {
            open: true,
            ..remote.clone()
        }))
    }

    fn resolve(
        &self,
        notice: &Notice,
        remote: &Remote,
        rendering: Rendering,
    ) -> Result<Effect, DeliveryError> {
        let outcome = self.transition(&remote.id, Goal::Resolve)?;
        let notice = self.redacted(notice);
        let finding = notice.finding();
        let lead = match outcome {
            Moved::Transitioned => {
                "The condition has not held for the rule's resolve period, so feedloop resolved this issue.".to_string()
            }
            Moved::AlreadyThere(status) => format!(
                "The condition has not held for the rule's resolve period. The issue was already in status {status}, so feedloop left its status unchanged."
            ),
        };
        let body = content::comment(&notice, finding, &lead, false, rendering, self.api.format());
        self.comment(&remote.id, &body)?;
        Ok(Effect::Applied(Remote {
            open: false,
            ..remote.clone()
        }))
    }

    fn reopen(
        &self,
        notice: &Notice,
        remote: &Remote,
        rendering: Rendering,
    ) -> Result<Effect, DeliveryError> {
        let outcome = self.transition(&remote.id, Goal::Reopen)?;
        let notice = self.redacted(notice);
        let finding = notice.finding();
        let lead = match outcome {
            Moved::Transitioned => format!(
                "The condition holds again after it was resolved ({}), so feedloop reopened this issue.",
                notice.kind
            ),
            Moved::AlreadyThere(status) => format!(
                "The condition holds again after it was resolved ({}). The issue was already in status {status}, so feedloop left its status unchanged.",
                notice.kind
            ),
        };
        let body = content::comment(&notice, finding, &lead, true, rendering, self.api.format());
        self.comment(&remote.id, &body)?;
        Ok(Effect::Applied(Remote {
            open: true,
            ..remote.clone()
        }))
    }

    /// Moves an issue by the first configured transition it offers, unless a person already
    /// moved it into the goal's status category. A status transition offered from every status
    /// (common in simplified workflows) would otherwise drag such an issue back.
    fn transition(&self, key: &str, goal: Goal) -> Result<Moved, DeliveryError> {
        let (status, done) = self.status(key)?;
        if done == (goal == Goal::Resolve) {
            return Ok(Moved::AlreadyThere(status));
        }

        let names = match goal {
            Goal::Resolve => &self.resolve_transition,
            Goal::Reopen => &self.reopen_transition,
        };
        let url = self.url(&format!("issue/{}/transitions", path_part(key)));
        let response = self.send(Request::new("GET", url.as_str()))?.json()?;
        let offered: Vec<(String, String)> = response
            .get("transitions")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(transition_entry).collect())
            .unwrap_or_default();
        let chosen = names.0.iter().find_map(|candidate| {
            offered
                .iter()
                .find(|(_, name)| name.trim().eq_ignore_ascii_case(candidate.trim()))
        });
        let Some((id, _)) = chosen else {
            let available: Vec<String> = offered.into_iter().map(|(_, name)| name).collect();
            return Err(DeliveryError::reject(format!(
                "jira issue {key} in status {status} offers no transition named {}; available: {}; set `{}` in jira receiver `{}` to one of them",
                names.describe(),
                if available.is_empty() { "none".to_string() } else { quoted_list(&available, "and") },
                goal.setting(),
                self.name
            )));
        };

        let mut body = json!({"transition": {"id": id}});
        if let (Goal::Resolve, Some(resolution)) = (goal, &self.resolution) {
            body["fields"] = json!({"resolution": {"name": resolution}});
        }
        self.send(Request::new("POST", url).json(body))?;
        Ok(Moved::Transitioned)
    }

    /// Returns an issue's status name and whether its status category is done.
    fn status(&self, key: &str) -> Result<(String, bool), DeliveryError> {
        let url = self.url(&format!("issue/{}?fields=status", path_part(key)));
        let response = self.send(Request::new("GET", url))?.json()?;
        let status = &response["fields"]["status"];
        let name = status["name"].as_str().unwrap_or("(unknown)").to_string();
        Ok((name, status_done(status)))
    }
}

/// The purpose of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Resolve,
    Reopen,
}

impl Goal {
    fn setting(self) -> &'static str {
        match self {
            Goal::Resolve => "resolve_transition",
            Goal::Reopen => "reopen_transition",
        }
    }
}

/// The way an issue reached the goal status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Moved {
    Transitioned,
    /// Already in the goal's status category, in the named status.
    AlreadyThere(String),
}

impl Receiver for JiraReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&mut self) -> Result<(), String> {
        check::run(self)
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        match (remote, notice.kind) {
            (None, ChangeKind::Resolved) => Ok(Effect::Skipped(format!(
                "no jira issue exists for finding {}, so there is nothing to resolve",
                notice.key
            ))),
            (Some(remote), ChangeKind::Resolved) if !remote.open => Ok(Effect::Skipped(format!(
                "jira issue {} is already resolved",
                remote.id
            ))),
            (Some(remote), ChangeKind::Resolved) => self.resolve(notice, remote, rendering),
            (None, _) => self.create(notice, rendering, progress),
            (Some(remote), _) if remote.open => self.update(notice, remote, rendering),
            (Some(remote), _) => self.reopen(notice, remote, rendering),
        }
    }

    // NOTE: the search index can lag a create (see the module documentation), so a recover
    // soon after the lost create may return `None` although the issue exists.
    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let jql = format!(
            "labels = \"{}\" ORDER BY created ASC",
            jql_escape(&marker_label(&notice.key))
        );
        let resource = match self.api {
            JiraApi::Cloud => "search/jql",
            JiraApi::DataCenter => "search",
        };
        let url = format!(
            "{}?jql={}&fields=status",
            self.url(resource),
            http::encode_component(&jql)
        );
        let response = self.send(Request::new("GET", url))?.json()?;
        let issues = response
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected_response("GET search", "`issues` array"))?;
        if issues.len() > 1 {
            tracing::warn!(
                receiver = %self.name,
                key = %notice.key,
                issues = issues.len(),
                "several jira issues carry the marker of one finding; using the oldest"
            );
        }
        let Some(issue) = issues.first() else {
            return Ok(None);
        };
        let key = issue
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected_response("GET search", "issue `key`"))?;
        Ok(Some(Remote {
            id: key.to_string(),
            url: Some(self.browse_url(key)),
            open: !status_done(&issue["fields"]["status"]),
            extra: BTreeMap::new(),
        }))
    }
}

/// Returns the summary from the default title template, which renders for every finding.
fn default_summary(notice: &Notice) -> String {
    Template::parse(render::DEFAULT_TITLE)
        .and_then(|template| template.render(notice))
        .unwrap_or_else(|_| notice.finding().title.clone())
}

/// Returns a text as a Jira label. Labels cannot contain spaces, so whitespace becomes `-`,
/// and they are cut to at most 255 characters.
pub fn label_text(text: &str) -> String {
    let joined: String = text
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .collect();
    joined.chars().take(SUMMARY_MAX_CHARS).collect()
}

/// Returns the marker label of a notice key, the one [`JiraReceiver::recover`] searches for.
pub fn marker_label(key: &str) -> String {
    label_text(&render::marker(key))
}

fn jql_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Percent-encodes a key for a URL path, although Jira keys are letters, digits and `-`.
fn path_part(key: &str) -> String {
    http::encode_component(key)
}

fn quoted_list(items: &[String], last: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((only, [])) => only.clone(),
        Some((tail, head)) => format!("{} {last} {tail}", head.join(", ")),
    }
}

/// Returns the id and name of one entry of a transitions response.
fn transition_entry(item: &Value) -> Option<(String, String)> {
    let id = match item.get("id")? {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => return None,
    };
    let name = item.get("name")?.as_str()?.to_string();
    Some((id, name))
}

/// Returns true when a status object's category is `done`.
fn status_done(status: &Value) -> bool {
    status["statusCategory"]["key"].as_str() == Some("done")
}

fn unexpected_response(operation: &str, expected: &str) -> DeliveryError {
    DeliveryError::reject(format!(
        "jira's response to {operation} has no {expected}; check that `base_url` points at the Jira site"
    ))
}

fn check_base_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = trimmed
        .parse()
        .map_err(|err| format!("invalid URL `{url}`: {err}; write the site's URL, such as https://example.atlassian.net"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) || uri.query().is_some() {
        return Err(format!(
            "invalid URL `{url}`: use an http:// or https:// URL with a host and no query, such as https://example.atlassian.net"
        ));
    }
    Ok(trimmed.to_string())
}

/// Returns the `Authorization` header value for the configured flavour.
fn authorization(name: &str, config: &JiraConfig, token: &str) -> Result<String, String> {
    let email = config.email.as_deref().map(str::trim);
    match (config.api, email) {
        (JiraApi::Cloud, Some(email)) if !email.is_empty() => {
            let pair = format!("{email}:{token}");
            Ok(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        (JiraApi::Cloud, _) => Err(format!(
            "jira receiver `{name}`: email: missing; Jira Cloud API tokens need the account's email, such as `email: bot@example.com`"
        )),
        (JiraApi::DataCenter, None) => Ok(format!("Bearer {token}")),
        (JiraApi::DataCenter, Some(_)) => Err(format!(
            "jira receiver `{name}`: email: not used with `api: data_center`, which authenticates with a personal access token alone; remove `email`"
        )),
    }
}

/// Checks names that Jira would reject later. The error contains the field and the message.
fn check_names(config: &JiraConfig) -> Result<(), (&'static str, String)> {
    if config.issue_type.trim().is_empty() {
        return Err((
            "issue_type",
            "empty; name an issue type such as Task".into(),
        ));
    }
    if let Some(label) = config.labels.iter().find(|label| {
        label.is_empty()
            || label.contains(char::is_whitespace)
            || label.chars().count() > SUMMARY_MAX_CHARS
    }) {
        return Err((
            "labels",
            format!("invalid label `{label}`: Jira labels are 1 to 255 characters without spaces, such as `api-security`"),
        ));
    }
    for (field, names) in [
        ("resolve_transition", &config.resolve_transition),
        ("reopen_transition", &config.reopen_transition),
    ] {
        if names.0.is_empty() || names.0.iter().any(|name| name.trim().is_empty()) {
            return Err((
                field,
                "empty; name a workflow transition such as \"Done\"".into(),
            ));
        }
    }
    Ok(())
}

fn parse_fields(
    fields: &BTreeMap<String, Value>,
) -> Result<Vec<(String, FieldValue)>, (String, String)> {
    let mut out = Vec::new();
    for (id, value) in fields {
        let field = format!("fields.{id}");
        if FILLED_FIELDS.contains(&id.as_str()) && id != "reporter" {
            return Err((
                field,
                "feedloop fills this field itself; use `title`, `body`, `labels`, `project` or `issue_type` instead".into(),
            ));
        }
        let parsed = FieldValue::parse(value).map_err(|err| (field, err))?;
        out.push((id.clone(), parsed));
    }
    Ok(out)
}

/// Adds Jira's own explanation to a rejection: the `errorMessages` and per-field `errors` of
/// its error body, and a hint for authentication and permission failures.
fn explain(api: JiraApi, err: DeliveryError) -> DeliveryError {
    let DeliveryError::Reject {
        reason,
        status,
        response,
        fallback,
    } = err
    else {
        return err;
    };
    let (messages, field_errors) = error_details(&response);

    let mut details = messages;
    details.extend(
        field_errors
            .iter()
            .map(|(field, message)| format!("{field}: {message}")),
    );
    let mut reason = reason;
    if !details.is_empty() {
        reason = format!("{reason}: {}", details.join("; "));
    }
    if let Some(hint) = status.and_then(|status| status_hint(api, status)) {
        reason = format!("{reason}; {hint}");
    }

    // A minimal message helps only when the error concerns the text feedloop writes.
    let text_fields = ["summary", "description", "comment", "body"];
    let only_other_fields = !field_errors.is_empty()
        && field_errors
            .iter()
            .all(|(field, _)| !text_fields.contains(&field.as_str()));
    DeliveryError::Reject {
        reason,
        status,
        response,
        fallback: fallback && !only_other_fields,
    }
}

/// Reads Jira's error body `{"errorMessages": [...], "errors": {field: message}}`; a body in
/// another shape gives nothing.
fn error_details(body: &str) -> (Vec<String>, Vec<(String, String)>) {
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let messages = body["errorMessages"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let field_errors = body["errors"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(field, message)| {
                    let text = message
                        .as_str()
                        .map_or_else(|| message.to_string(), str::to_string);
                    (field.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    (messages, field_errors)
}

fn status_hint(api: JiraApi, status: u16) -> Option<&'static str> {
    match (status, api) {
        (401, JiraApi::Cloud) => Some("check the receiver's `email` and `token`"),
        (401, JiraApi::DataCenter) => Some("check the receiver's `token`"),
        (403, _) => Some("check that the token's user has the project permission for this action"),
        (404, _) => Some("check that the project or issue exists and the token's user can see it"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Target;

    fn finding() -> Finding {
        serde_json::from_value(json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["design"],
            "tags": [],
            "service": "accounts",
            "group": {"client": "203.0.113.9", "principal": "alice"},
            "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
            "condition": "count >= 20",
            "count": 20,
            "first_seen": "2026-12-04T10:00:01.000Z",
            "last_seen": "2026-12-04T10:01:00.000Z",
            "evidence": [{
                "time": "2026-12-04T10:00:01.000Z",
                "method": "POST",
                "path": "/login",
                "query": "user=alice&pw=x",
                "status": 401,
                "client": "203.0.113.9",
                "principal": "alice",
                "user_agent": "curl/8",
                "matched": {"pattern": "sqli", "field": "query", "excerpt": "pw=x"}
            }]
        }))
        .unwrap()
    }

    fn notice() -> Notice {
        Notice {
            key: "0123456789abcdef0123456789abcdef".into(),
            change_id: "c1".into(),
            kind: ChangeKind::Opened,
            findings: vec![finding()],
            group: None,
            target: Target::default(),
        }
    }

    fn parse(yaml: &str) -> Result<JiraConfig, String> {
        serde_norway::from_str(yaml).map_err(|err| err.to_string())
    }

    fn cloud_config() -> JiraConfig {
        parse("base_url: http://127.0.0.1:9/\nemail: bot@example.com\ntoken: t0k3n\nproject: PAY\n")
            .unwrap()
    }

    #[derive(Default)]
    struct Recorder {
        failures: Vec<String>,
    }

    impl Progress for Recorder {
        fn created(&mut self, _remote: &Remote) {}
        fn render_failed(&mut self, reason: &str) {
            self.failures.push(reason.to_string());
        }
    }

    #[test]
    fn config_defaults() {
        let config = cloud_config();
        assert_eq!(config.api, JiraApi::Cloud);
        assert_eq!(config.issue_type, "Task");
        assert_eq!(config.title, render::DEFAULT_TITLE);
        assert_eq!(
            config.resolve_transition.0,
            ["Done", "Resolve Issue", "Close Issue"]
        );
        assert_eq!(
            config.reopen_transition.0,
            ["Reopen", "Reopen Issue", "To Do"]
        );
        assert_eq!(config.timeout, HumanDuration(10_000));
        assert_eq!(config.redaction, Redaction::default());
        assert!(config.fields.is_empty());
    }

    #[test]
    fn config_parses_data_center_settings() {
        let config = parse(
            r#"
base_url: https://jira.example.com/jira
api: data_center
token: {env: JIRA_PAT}
issue_type: Bug
labels: [api-security]
fields:
  customfield_10010: "{{ severity }}"
  customfield_10020: {value: "{{ severity }}"}
  customfield_10030: 3
resolve_transition: Close
reopen_transition: [Reopen Issue, Back to work]
resolution: Fixed
redaction: {principals: hash, query: drop}
timeout: 5s
"#,
        )
        .unwrap();
        assert_eq!(config.api, JiraApi::DataCenter);
        assert_eq!(
            config.token,
            Secret::Env {
                env: "JIRA_PAT".into()
            }
        );
        assert_eq!(config.resolve_transition.0, ["Close"]);
        assert_eq!(config.reopen_transition.0, ["Reopen Issue", "Back to work"]);
        assert_eq!(
            config.fields["customfield_10020"],
            json!({"value": "{{ severity }}"})
        );
        assert_eq!(config.fields["customfield_10030"], json!(3));
        assert_eq!(config.redaction.principals, render::Treatment::Hash);
        assert_eq!(config.timeout, HumanDuration(5_000));
    }

    #[test]
    fn config_rejects_unknown_key() {
        let err = parse("base_url: http://127.0.0.1:9\ntoken: t\nprojekt: PAY\n").unwrap_err();
        assert!(err.contains("unknown field `projekt`"), "{err}");
        let err = parse("base_url: http://127.0.0.1:9\ntoken: t\napi: server\n").unwrap_err();
        assert!(err.contains("unknown variant `server`"), "{err}");
    }

    #[test]
    fn new_checks_authentication_settings() {
        let mut config = cloud_config();
        config.email = None;
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: email: missing; Jira Cloud API tokens need the account's email, such as `email: bot@example.com`"
        );
        let mut config = cloud_config();
        config.api = JiraApi::DataCenter;
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: email: not used with `api: data_center`, which authenticates with a personal access token alone; remove `email`"
        );
        let mut config = cloud_config();
        config.token = Secret::Env {
            env: "FEEDLOOP_TEST_UNSET_JIRA_TOKEN".into(),
        };
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: token: environment variable `FEEDLOOP_TEST_UNSET_JIRA_TOKEN` is not set; export it or use `file:`"
        );
    }

    #[test]
    fn new_names_the_invalid_field() {
        let mut config = cloud_config();
        config.fields.insert("summary".into(), json!("x"));
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: fields.summary: feedloop fills this field itself; use `title`, `body`, `labels`, `project` or `issue_type` instead"
        );
        let mut config = cloud_config();
        config
            .fields
            .insert("customfield_1".into(), json!({"value": "{{ severty }}"}));
        let err = JiraReceiver::new("jira", &config).unwrap_err();
        assert!(
            err.starts_with("jira receiver `jira`: fields.customfield_1: template `{{ severty }}`: unknown field `severty`"),
            "{err}"
        );
        let mut config = cloud_config();
        config.labels = vec!["api security".into()];
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: labels: invalid label `api security`: Jira labels are 1 to 255 characters without spaces, such as `api-security`"
        );
        let mut config = cloud_config();
        config.base_url = "ftp://jira.example.com".into();
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: base_url: invalid URL `ftp://jira.example.com`: use an http:// or https:// URL with a host and no query, such as https://example.atlassian.net"
        );
        let mut config = cloud_config();
        config.resolve_transition = TransitionNames(Vec::new());
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: resolve_transition: empty; name a workflow transition such as \"Done\""
        );
        let mut config = cloud_config();
        config.title = "{{ title".into();
        assert_eq!(
            JiraReceiver::new("jira", &config).unwrap_err(),
            "jira receiver `jira`: title: template `{{ title` opens `{{` without a closing `}}`"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let receiver = JiraReceiver::new("jira", &cloud_config()).unwrap();
        let debug_text = format!("{receiver:?} {:?}", cloud_config());
        assert!(!debug_text.contains("t0k3n"), "{debug_text}");
        assert!(
            !debug_text.contains(&receiver.authorization),
            "{debug_text}"
        );
        assert!(debug_text.contains("<redacted>"), "{debug_text}");
    }

    #[test]
    fn labels_carry_marker_and_rule() {
        let mut config = cloud_config();
        config.labels = vec!["api-security".into(), "feedloop".into()];
        let receiver = JiraReceiver::new("jira", &config).unwrap();
        let mut finding = finding();
        finding.rule_id = "login brute force".into();
        assert_eq!(
            receiver.issue_labels(&notice(), &finding),
            [
                "api-security",
                "feedloop",
                "feedloop-0123456789abcdef",
                "login-brute-force"
            ]
        );
    }

    #[test]
    fn summary_is_one_line_within_limit() {
        let mut config = cloud_config();
        config.title = "{{ title }}\n{{ severity }}".into();
        let receiver = JiraReceiver::new("jira", &config).unwrap();
        let mut progress = Recorder::default();
        assert_eq!(
            receiver.summary(&notice(), &mut progress),
            "Repeated failed logins high"
        );
        let mut long = notice();
        long.findings[0].title = "x".repeat(400);
        let summary = receiver.summary(&long, &mut progress);
        assert_eq!(summary.chars().count(), SUMMARY_MAX_CHARS);
        assert!(summary.ends_with("... (175 more characters)"), "{summary}");
        assert!(progress.failures.is_empty());
    }

    #[test]
    fn summary_falls_back_when_template_fails() {
        let mut config = cloud_config();
        config.title = "{{ distinct }} distinct values".into();
        let receiver = JiraReceiver::new("jira", &config).unwrap();
        let mut progress = Recorder::default();
        assert_eq!(
            receiver.summary(&notice(), &mut progress),
            "Repeated failed logins: client=203.0.113.9, principal=alice"
        );
        assert_eq!(
            progress.failures,
            ["jira receiver `jira`: title: the finding has no `distinct`"]
        );
    }

    #[test]
    fn field_values_render_templates_inside_json() {
        let value = FieldValue::parse(&json!({
            "value": "{{ severity }}",
            "list": ["{{ rule_id }}", 2],
            "flag": true,
        }))
        .unwrap();
        assert_eq!(
            value.render(&notice()).unwrap(),
            json!({"value": "high", "list": ["login-bruteforce", 2], "flag": true})
        );
        let missing = FieldValue::parse(&json!(["{{ total }}"])).unwrap();
        assert_eq!(
            missing.render(&notice()).unwrap_err(),
            "the finding has no `total`"
        );
    }

    #[test]
    fn wiki_description_shows_facts_condition_and_evidence() {
        let doc = content::description(
            &notice(),
            &finding(),
            Some("Seen by [feedloop]."),
            Rendering::Full,
            Format::Wiki,
        );
        assert_eq!(
            doc.to_wiki(),
            "Seen by \\[feedloop\\].\n\n\
             * *Change:* opened\n\
             * *Rule:* login-bruteforce\n\
             * *Severity:* high\n\
             * *Stages:* design\n\
             * *Service:* accounts\n\
             * *Group:* client=203.0.113.9, principal=alice\n\
             * *Window:* 2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z\n\
             * *Measured:* count 20\n\
             * *Fingerprint:* 0123456789abcdef0123456789abcdef\n\n\
             h3. Condition\n\n\
             {code}\ncount >= 20\n{code}\n\n\
             h3. Evidence\n\n\
             ||time||client||request||status||principal||match||\n\
             |{{2026-12-04T10:00:01.000Z}}|{{203.0.113.9}}|{{POST /login\\?user=alice&pw=x}}|{{401}}|{{alice}}|{{sqli in query: pw=x}}|"
        );
    }

    #[test]
    fn minimal_description_has_title_rule_severity_fingerprint() {
        let doc = content::description(
            &notice(),
            &finding(),
            None,
            Rendering::Minimal,
            Format::Wiki,
        );
        assert_eq!(
            doc.to_wiki(),
            "Repeated failed logins\n\n* *Rule:* login-bruteforce\n* *Severity:* high\n* *Fingerprint:* 0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn description_leaves_out_rows_beyond_the_limit() {
        let mut finding = finding();
        let event = finding.evidence[0].clone();
        finding.evidence = (0..200)
            .map(|i| {
                let mut event = event.clone();
                event.path = format!("/login/{i}/{}", "p".repeat(400));
                event
            })
            .collect();
        for format in [Format::Adf, Format::Wiki] {
            let doc = content::description(&notice(), &finding, None, Rendering::Full, format);
            let size = doc.size(format);
            assert!(size <= TEXT_MAX_CHARS, "{format:?}: {size}");
            let Some(document::Block::Paragraph(note)) = doc.blocks.last() else {
                panic!("{format:?}: no note at the end");
            };
            let document::Inline::Text(note) = &note[0] else {
                panic!("{format:?}: the note is not text");
            };
            assert!(
                note.ends_with(
                    "more evidence rows left out to fit Jira's limit of 32767 characters."
                ),
                "{note}"
            );
            let Some(document::Block::Table { rows, .. }) = doc
                .blocks
                .iter()
                .find(|b| matches!(b, document::Block::Table { .. }))
            else {
                panic!("{format:?}: no table");
            };
            let left_out: usize = note.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(rows.len() + left_out, 200);
            assert!(!rows.is_empty());
        }
    }

    #[test]
    fn explain_adds_field_errors_and_hints() {
        let reject = |status: u16, body: &str| DeliveryError::Reject {
            reason: format!("POST http://127.0.0.1:9/rest/api/3/issue returned HTTP {status}"),
            status: Some(status),
            response: body.into(),
            fallback: matches!(status, 400 | 413 | 422),
        };
        let err = explain(
            JiraApi::Cloud,
            reject(
                400,
                r#"{"errorMessages":[],"errors":{"customfield_10010":"Severity is required."}}"#,
            ),
        );
        let DeliveryError::Reject {
            reason, fallback, ..
        } = err
        else {
            panic!("expected a rejection");
        };
        assert_eq!(
            reason,
            "POST http://127.0.0.1:9/rest/api/3/issue returned HTTP 400: customfield_10010: Severity is required."
        );
        assert!(!fallback, "a minimal message cannot fix a custom field");
        let err = explain(
            JiraApi::Cloud,
            reject(
                400,
                r#"{"errorMessages":[],"errors":{"description":"too long"}}"#,
            ),
        );
        assert!(matches!(err, DeliveryError::Reject { fallback: true, .. }));
        let err = explain(
            JiraApi::DataCenter,
            reject(401, "Client must be authenticated to access this resource."),
        );
        assert!(
            err.to_string()
                .ends_with("HTTP 401; check the receiver's `token`"),
            "{err}"
        );
        let retry = DeliveryError::retry("timed out");
        assert_eq!(explain(JiraApi::Cloud, retry.clone()), retry);
    }

    #[test]
    fn quoted_list_joins_names() {
        let names = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(quoted_list(&names(&["Done"]), "or"), "\"Done\"");
        assert_eq!(
            quoted_list(&names(&["Done", "Resolve Issue", "Close Issue"]), "or"),
            "\"Done\", \"Resolve Issue\" or \"Close Issue\""
        );
    }
}
