//! The Alertmanager receiver: each finding as an alert posted to Alertmanager's v2 API.
//!
//! Alertmanager identifies an alert by its label set, so posting the same labels again updates
//! the same alert, and a retry or a replay never makes a second one. The labels are the rule id
//! (`alertname`), the notice key (`fingerprint`), `severity`, `stages`, `service`, the
//! configured fixed labels, and the finding's group values under names made valid for
//! Prometheus. The remote id is the `fingerprint` label. Annotations carry the rendered
//! `summary` and a plain-text `description` with the facts and the evidence, both redacted by
//! the receiver's policy.
//!
//! Alertmanager resolves an alert by itself once its `endsAt` has passed. An open finding is
//! therefore posted with `endsAt` set `open_for` ahead (24 hours unless configured), which also
//! resolves it if feedloop stops. A resolved finding is posted with `endsAt` set to now.
//!
//! The remote's `labels` entry keeps the labels of the latest post. A finding's service can come
//! from a different event in each window, so a later change may compute other labels. Then one
//! request resolves the alert with the old labels and posts the new one, so no stale alert stays
//! active until `open_for` ends. A resolve reuses the stored labels.
//!
//! Routing is Alertmanager's job, done on the labels, so this receiver ignores the service
//! catalog's target. `recover` lists active alerts with the matcher `fingerprint="<key>"`,
//! which sees every alert that a successful post stored on the same Alertmanager instance.
//!
//! NOTE: Alertmanager 0.25 keeps alerts in memory only: after it restarts, an open alert is
//! gone until the finding's next change. Prometheus re-sends firing alerts every minute for
//! this reason, but this receiver posts only on changes. It also posts to one instance, while
//! an Alertmanager cluster expects every client to post to every instance.
//!
//! NOTE: a resolve sets `endsAt` from this machine's clock. If Alertmanager's clock is behind,
//! that time is still in the future there, and Alertmanager keeps the later `endsAt` it already
//! has, so the alert stays active until `open_for` ends.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use feedloop_pipeline::Finding;
use feedloop_rules::HumanDuration;

use super::http::{self, HttpClient, Request};
use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering};
use crate::sink::webhook::Secret;

/// The default time allowed for one request.
const DEFAULT_TIMEOUT: HumanDuration = HumanDuration(10_000);

/// The default time an open alert stays active without another post: 24 hours.
pub const DEFAULT_OPEN_FOR: HumanDuration = HumanDuration(86_400_000);

/// The longest `open_for` accepted: 365 days.
const MAX_OPEN_FOR: HumanDuration = HumanDuration(365 * 86_400_000);

/// The default maximum length of the `summary` annotation, in characters.
pub const DEFAULT_MAX_SUMMARY_CHARS: usize = 1_024;

/// The default maximum length of the `description` annotation, in characters.
///
/// NOTE: both defaults are choices, not service limits, because Alertmanager 0.25 stored a
/// 200,000-character annotation in a local test. They keep notifications readable where chat
/// and paging services show the summary as a title.
pub const DEFAULT_MAX_DESCRIPTION_CHARS: usize = 4_096;

/// The label names this receiver sets itself; fixed labels may not use them.
const OWN_LABELS: [&str; 5] = ["alertname", "fingerprint", "severity", "stages", "service"];

/// The key of the remote's `extra` entry with the posted labels, as a JSON object.
pub const LABELS_EXTRA: &str = "labels";

/// The first line of the description when an alert comes back after it was resolved.
const REOPENED_INTRO: &str = "Reopened: the condition holds again after this alert was resolved.";

/// Settings of an Alertmanager receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, such as `http://127.0.0.1:9093`; alerts are posted to
    /// `{url}/api/v2/alerts`. Include the route prefix when Alertmanager runs with
    /// `--web.route-prefix`.
    pub url: String,
    /// Time allowed for one request, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Template of the `summary` annotation.
    #[serde(default = "default_title")]
    pub title: String,
    /// Template of the first paragraph of the `description` annotation.
    #[serde(default)]
    pub body: Option<String>,
    /// The redaction policy for the group labels, the summary and the description.
    #[serde(default)]
    pub redaction: Redaction,
    /// The alerts' `generatorURL`: a link to where people look at findings.
    #[serde(default)]
    pub generator_url: Option<String>,
    /// How long an open alert stays active without another post. Each post of an open finding
    /// sets `endsAt` this far ahead; use more than the longest resolve period of the rules
    /// routed here.
    #[serde(default = "default_open_for")]
    pub open_for: HumanDuration,
    /// Labels added to every alert, such as `team: payments`, for Alertmanager's routes.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// HTTP basic authentication, for an Alertmanager with `basic_auth_users` or a proxy.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A token sent as `Authorization: Bearer <token>`, for an authenticating proxy.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Maximum length of the `summary` annotation, in characters.
    #[serde(default = "default_max_summary_chars")]
    pub max_summary_chars: usize,
    /// Maximum length of the `description` annotation, in characters.
    #[serde(default = "default_max_description_chars")]
    pub max_description_chars: usize,
}

/// A user name and password for HTTP basic authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password: literal text, `{env: NAME}` or `{file: PATH}`.
    pub password: Secret,
}

fn default_timeout() -> HumanDuration {
    DEFAULT_TIMEOUT
}

fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}

fn default_open_for() -> HumanDuration {
    DEFAULT_OPEN_FOR
}

fn default_max_summary_chars() -> usize {
    DEFAULT_MAX_SUMMARY_CHARS
}

fn default_max_description_chars() -> usize {
    DEFAULT_MAX_DESCRIPTION_CHARS
}

/// Posts findings as alerts to one Alertmanager.
pub struct AlertmanagerReceiver {
    name: String,
    base_url: String,
    client: HttpClient,
    authorization: Option<String>,
    title: Template,
    default_title: Template,
    body: Option<Template>,
    redaction: Redaction,
    generator_url: Option<String>,
    open_for: TimeDelta,
    fixed_labels: BTreeMap<String, String>,
    max_summary_chars: usize,
    max_description_chars: usize,
}

impl fmt::Debug for AlertmanagerReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerReceiver")
            .field("name", &self.name)
            .field("url", &self.base_url)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("title", &self.title.source())
            .finish_non_exhaustive()
    }
}

impl AlertmanagerReceiver {
    /// Checks the settings, resolves the credentials and parses the templates.
    pub fn new(name: &str, config: &AlertmanagerConfig) -> Result<Self, String> {
        let fail =
            |field: &str, err: String| format!("alertmanager receiver `{name}`: {field}: {err}");
        check_url(&config.url).map_err(|err| fail("url", err))?;
        if let Some(url) = &config.generator_url {
            check_url(url).map_err(|err| fail("generator_url", err))?;
        }
        let title = Template::parse(&config.title).map_err(|err| fail("title", err))?;
        let body = config
            .body
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|err| fail("body", err))?;
        check_fixed_labels(&config.labels).map_err(|err| fail("labels", err))?;
        let open_for = check_open_for(config.open_for).map_err(|err| fail("open_for", err))?;
        check_limits(config).map_err(|(field, err)| fail(field, err))?;
        let authorization = authorization(config).map_err(|(field, err)| fail(field, err))?;
        let timeout = std::time::Duration::from_millis(config.timeout.as_millis());
        Ok(AlertmanagerReceiver {
            name: name.to_string(),
            base_url: config.url.trim_end_matches('/').to_string(),
            client: HttpClient::new(timeout),
            authorization,
            title,
            default_title: Template::parse(render::DEFAULT_TITLE)
                .expect("the default title names known fields only"),
            body,
            redaction: config.redaction,
            generator_url: config.generator_url.clone(),
            open_for,
            fixed_labels: config.labels.clone(),
            max_summary_chars: config.max_summary_chars,
            max_description_chars: config.max_description_chars,
        })
    }

    /// Returns the label set of the notice's alert, its identity in Alertmanager.
    ///
    /// `notice` must already be redacted, because group values become label values.
    pub fn labels(&self, notice: &Notice) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), alert_name(&notice.findings));
        labels.insert("fingerprint".to_string(), notice.key.clone());
        labels.insert("severity".to_string(), highest_severity(&notice.findings));
        labels.insert("stages".to_string(), joined_stages(&notice.findings));
        if let Some(service) = common_service(&notice.findings) {
            labels.insert("service".to_string(), service);
        }
        labels.extend(self.fixed_labels.clone());
        let group: Vec<(String, String)> = match &notice.group {
            Some(group) => group
                .labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            None => notice
                .finding()
                .group
                .iter()
                .map(|(name, value)| (name.clone(), label_value(value)))
                .collect(),
        };
        for (field, value) in group {
            let name = free_label_name(&labels, &label_name(&field));
            labels.insert(name, value);
        }
        labels
    }

    /// Returns the `summary` and `description` annotations.
    fn annotations(
        &self,
        notice: &Notice,
        rendering: Rendering,
        reopening: bool,
        progress: &mut dyn Progress,
    ) -> BTreeMap<String, String> {
        let (summary, description) = match rendering {
            Rendering::Full => (
                self.summary(notice, progress),
                self.description(notice, reopening, progress),
            ),
            Rendering::Minimal => (notice.finding().title.clone(), minimal_description(notice)),
        };
        BTreeMap::from([
            (
                "summary".to_string(),
                render::truncate(&summary, self.max_summary_chars),
            ),
            (
                "description".to_string(),
                render::truncate(&description, self.max_description_chars),
            ),
        ])
    }

    fn summary(&self, notice: &Notice, progress: &mut dyn Progress) -> String {
        match self.title.render(notice) {
            Ok(text) => text,
            Err(reason) => {
                progress.render_failed(&format!("receiver `{}`: title: {reason}", self.name));
                self.default_title
                    .render(notice)
                    .unwrap_or_else(|_| notice.finding().title.clone())
            }
        }
    }

    fn description(&self, notice: &Notice, reopening: bool, progress: &mut dyn Progress) -> String {
        let mut intro = Vec::new();
        if reopening {
            intro.push(REOPENED_INTRO.to_string());
        }
        if let Some(body) = &self.body {
            match body.render(notice) {
                Ok(text) => intro.push(text),
                Err(reason) => {
                    progress.render_failed(&format!("receiver `{}`: body: {reason}", self.name))
                }
            }
        }
        let mut out = String::new();
        for paragraph in intro {
            out.push_str(&paragraph);
            out.push_str("\n\n");
        }
        out.push_str(&facts_text(notice));
        out
    }

    /// Builds one alert of the `POST /api/v2/alerts` body.
    fn alert(
        &self,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Value {
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": timestamp(starts_at),
            "endsAt": timestamp(ends_at),
        });
        if let Some(url) = &self.generator_url {
            alert["generatorURL"] = Value::String(url.clone());
        }
        alert
    }

    fn post(&self, alerts: Vec<Value>) -> Result<(), DeliveryError> {
        let url = format!("{}/api/v2/alerts", self.base_url);
        let request = self.authorize(Request::new("POST", url).json(Value::Array(alerts)));
        self.client
            .send(&request)
            .map(|_| ())
            .map_err(with_service_message)
    }

    fn authorize(&self, request: Request) -> Request {
        match &self.authorization {
            Some(value) => request.header("authorization", value.clone()),
            None => request,
        }
    }

    /// Returns the remote for the notice's alert, keeping its labels for later changes.
    fn remote(&self, key: &str, labels: &BTreeMap<String, String>, open: bool) -> Remote {
        let matcher = format!("{{{}}}", fingerprint_matcher(key));
        let labels = serde_json::to_string(labels).expect("a string map always serializes");
        Remote {
            id: key.to_string(),
            url: Some(format!(
                "{}/#/alerts?filter={}",
                self.base_url,
                http::encode_component(&matcher)
            )),
            open,
            extra: BTreeMap::from([(LABELS_EXTRA.to_string(), labels)]),
        }
    }

    /// Returns a copy of the notice with the redaction policy applied to every finding.
    fn redacted(&self, notice: &Notice) -> Notice {
        self.redaction.apply_notice(notice)
    }
}

impl Receiver for AlertmanagerReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `/api/v2/status`. A wrong URL or rejected credentials fail the check. An
    /// Alertmanager that is down or returns 5xx only logs a warning, because deliveries retry.
    fn check(&mut self) -> Result<(), String> {
        let request = self.authorize(Request::new(
            "GET",
            format!("{}/api/v2/status", self.base_url),
        ));
        match self.client.send(&request) {
            Ok(_) => Ok(()),
            Err(err @ DeliveryError::Retry { .. }) => {
                tracing::warn!(receiver = %self.name, error = %err, "Alertmanager is not reachable yet; deliveries will retry");
                Ok(())
            }
            Err(err) => Err(format!(
                "alertmanager receiver `{}`: {err}; check `url` (with any route prefix) and the credentials",
                self.name
            )),
        }
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let resolving = notice.kind == ChangeKind::Resolved;
        match remote {
            None if resolving => {
                return Ok(Effect::Skipped(
                    "no alert was posted for this key, so there is nothing to resolve".into(),
                ))
            }
            Some(remote) if resolving && !remote.open => {
                return Ok(Effect::Skipped("the alert is already resolved".into()))
            }
            _ => {}
        }
        let notice = self.redacted(notice);
        let posted = remote.and_then(posted_labels);
        let labels = match (&posted, resolving) {
            (Some(posted), true) => posted.clone(),
            _ => self.labels(&notice),
        };
        let reopening = remote.is_some_and(|r| !r.open);
        let annotations = self.annotations(&notice, rendering, reopening, progress);
        let now = Utc::now();
        let starts_at = first_seen(&notice.findings).unwrap_or(now).min(now);
        let ends_at = if resolving { now } else { now + self.open_for };

        let mut alerts = Vec::new();
        let replaced = posted.filter(|old| *old != labels && remote.is_some_and(|r| r.open));
        if let Some(old) = &replaced {
            alerts.push(self.alert(old, &annotations, starts_at, now));
        }
        alerts.push(self.alert(&labels, &annotations, starts_at, ends_at));
        self.post(alerts)?;

        let applied = self.remote(&notice.key, &labels, !resolving);
        if remote.is_none() {
            progress.created(&applied);
        }
        Ok(Effect::Applied(applied))
    }

    /// Lists the active alerts whose `fingerprint` label is the notice's key and returns the
    /// most recently updated one.
    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let url = format!(
            "{}/api/v2/alerts?active=true&filter={}",
            self.base_url,
            http::encode_component(&fingerprint_matcher(&notice.key))
        );
        let reply = self
            .client
            .send(&self.authorize(Request::new("GET", url)))?;
        let alerts = reply.json()?;
        let found = alerts
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alert| alert["labels"]["fingerprint"] == notice.key.as_str())
            .max_by(|a, b| {
                let updated = |alert: &Value| alert["updatedAt"].as_str().unwrap_or("").to_string();
                updated(a).cmp(&updated(b))
            });
        let Some(alert) = found else {
            return Ok(None);
        };
        let labels: BTreeMap<String, String> = serde_json::from_value(alert["labels"].clone())
            .map_err(|err| DeliveryError::Reject {
                reason: format!("Alertmanager listed an alert whose labels are not strings: {err}"),
                status: Some(reply.status),
                response: http::excerpt(&reply.body),
                fallback: false,
            })?;
        Ok(Some(self.remote(&notice.key, &labels, true)))
    }
}

/// Returns the label set stored by an earlier post, if the remote has a readable one.
fn posted_labels(remote: &Remote) -> Option<BTreeMap<String, String>> {
    serde_json::from_str(remote.extra.get(LABELS_EXTRA)?).ok()
}

/// Returns the matcher `fingerprint="<key>"`, with `"` and `\` escaped.
fn fingerprint_matcher(key: &str) -> String {
    let escaped = key.replace('\\', "\\\\").replace('"', "\\\"");
    format!("fingerprint=\"{escaped}\"")
}

/// Adds Alertmanager's own error message to a rejection's reason.
///
/// Alertmanager 0.25 returns a JSON string for a validation error, such as
/// `"start time must be before end time"`, and `{"code": 400, "message": "..."}` for a
/// malformed request.
fn with_service_message(err: DeliveryError) -> DeliveryError {
    match err {
        DeliveryError::Reject {
            reason,
            status,
            response,
            fallback,
        } => {
            let message = match serde_json::from_str::<Value>(&response) {
                Ok(Value::String(text)) => Some(text),
                Ok(Value::Object(object)) => object
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
            let reason = match message {
                Some(message) => format!("{reason}: {message}"),
                None => reason,
            };
            DeliveryError::Reject {
                reason,
                status,
                response,
                fallback,
            }
        }
        retry => retry,
    }
}

/// Turns a field name into a valid Prometheus label name.
///
/// Valid names match `[a-zA-Z_][a-zA-Z0-9_]*`, and names starting with `__` are reserved for
/// Prometheus's own use. Every other character becomes `_`, a leading digit gets a `_` before
/// it, and a leading run of underscores is cut to one: `header.x-api-key` becomes
/// `header_x_api_key`.
pub fn label_name(field: &str) -> String {
    let mut name: String = field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    while name.starts_with("__") {
        name.remove(0);
    }
    name
}

/// Returns `name`, or `group_<name>` when a label already uses it, then a numbered variant.
fn free_label_name(labels: &BTreeMap<String, String>, name: &str) -> String {
    if !labels.contains_key(name) {
        return name.to_string();
    }
    let prefixed = format!("group_{name}");
    if !labels.contains_key(&prefixed) {
        return prefixed;
    }
    (2..)
        .map(|n| format!("{prefixed}_{n}"))
        .find(|candidate| !labels.contains_key(candidate))
        .expect("a finite map leaves some numbered name free")
}

/// Returns a group value as a label value; a missing value reads `(none)`, as in messages.
fn label_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

/// Returns the rule id when every finding has the same one, else `feedloop`.
fn alert_name(findings: &[Finding]) -> String {
    let first = findings.first().map_or("feedloop", |f| f.rule_id.as_str());
    if findings.iter().all(|f| f.rule_id == first) {
        first.to_string()
    } else {
        "feedloop".to_string()
    }
}

fn highest_severity(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .map_or("info", |s| s.as_str())
        .to_string()
}

/// Returns every finding's stages, sorted and joined with `,`, such as `operate,test`.
fn joined_stages(findings: &[Finding]) -> String {
    let mut stages: Vec<&str> = findings
        .iter()
        .flat_map(|f| f.stages.iter().map(|s| s.as_str()))
        .collect();
    stages.sort_unstable();
    stages.dedup();
    stages.join(",")
}

/// Returns the service when every finding names the same one.
fn common_service(findings: &[Finding]) -> Option<String> {
    let first = findings.first()?.service.as_ref()?;
    findings
        .iter()
        .all(|f| f.service.as_ref() == Some(first))
        .then(|| first.clone())
}

/// Returns the earliest `first_seen` among the findings that parses as RFC 3339.
fn first_seen(findings: &[Finding]) -> Option<DateTime<Utc>> {
    findings
        .iter()
        .filter_map(|f| DateTime::parse_from_rfc3339(&f.first_seen).ok())
        .map(|t| t.with_timezone(&Utc))
        .min()
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Returns the description: facts, the members of a group, and the evidence.
pub fn facts_text(notice: &Notice) -> String {
    let finding = notice.finding();
    let mut out = String::new();
    for (label, value) in render::facts(notice, finding) {
        writeln!(out, "{label}: {value}").expect("writing to a String cannot fail");
    }
    if notice.findings.len() > 1 {
        out.push_str("\nFindings:\n");
        for member in &notice.findings {
            writeln!(
                out,
                "- {} ({}, {}): {}",
                member.title,
                member.rule_id,
                member.severity.as_str(),
                render::group_text(member)
            )
            .expect("writing to a String cannot fail");
        }
    }
    let rows = render::evidence_rows(finding);
    if !rows.is_empty() {
        writeln!(
            out,
            "\nEvidence ({}):",
            render::EVIDENCE_COLUMNS.join(" | ")
        )
        .expect("writing to a String cannot fail");
        for row in rows {
            // An empty cell reads `-`, so each line keeps one value per column.
            let cells: Vec<&str> = row
                .iter()
                .map(|cell| if cell.is_empty() { "-" } else { cell.as_str() })
                .collect();
            writeln!(out, "- {}", cells.join(" | ")).expect("writing to a String cannot fail");
        }
    }
    out.trim_end().to_string()
}

fn minimal_description(notice: &Notice) -> String {
    let finding = notice.finding();
    format!(
        "Rule: {}\nSeverity: {}\nFingerprint: {}",
        finding.rule_id,
        finding.severity.as_str(),
        notice.key
    )
}

fn check_url(url: &str) -> Result<(), String> {
    let url_without_query = http::without_query(url);
    let uri: ureq::http::Uri = url.parse().map_err(|err| {
        format!("invalid URL `{url_without_query}`: {err}; write a full URL such as http://127.0.0.1:9093")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "invalid URL `{url_without_query}`: use an http:// or https:// URL with a host"
        ));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(
            "invalid URL: it contains credentials (`user:password@`); put them in `basic_auth` instead"
                .to_string(),
        );
    }
    Ok(())
}

fn check_fixed_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for name in labels.keys() {
        if OWN_LABELS.contains(&name.as_str()) {
            return Err(format!(
                "label `{name}` is set by the receiver; choose another name, such as `team`"
            ));
        }
        if label_name(name) != *name {
            return Err(format!(
                "invalid label name `{name}`: use letters, digits and `_`, not starting with a digit or `__`, such as `{}`",
                label_name(name)
            ));
        }
    }
    Ok(())
}

fn check_open_for(open_for: HumanDuration) -> Result<TimeDelta, String> {
    if open_for.as_millis() == 0 || open_for > MAX_OPEN_FOR {
        return Err(format!(
            "invalid duration {open_for}: use more than 0 and at most {MAX_OPEN_FOR}, such as {DEFAULT_OPEN_FOR}"
        ));
    }
    let millis = i64::try_from(open_for.as_millis()).expect("at most 365 days fits in i64");
    Ok(TimeDelta::milliseconds(millis))
}

/// Checks the timeout and the length limits; an error names the field and the fix.
fn check_limits(config: &AlertmanagerConfig) -> Result<(), (&'static str, String)> {
    if config.timeout.as_millis() == 0 {
        return Err((
            "timeout",
            "invalid duration 0: use at least 1ms, such as 10s".into(),
        ));
    }
    for (field, value) in [
        ("max_summary_chars", config.max_summary_chars),
        ("max_description_chars", config.max_description_chars),
    ] {
        if value == 0 {
            return Err((field, "invalid length 0: use at least 1".into()));
        }
    }
    Ok(())
}

/// Returns the `Authorization` header value, resolving the configured secret; an error names
/// the field.
fn authorization(config: &AlertmanagerConfig) -> Result<Option<String>, (&'static str, String)> {
    match (&config.basic_auth, &config.bearer_token) {
        (Some(_), Some(_)) => Err((
            "bearer_token",
            "set either `basic_auth` or `bearer_token`, not both".into(),
        )),
        (Some(basic), None) => {
            let password = basic
                .password
                .resolve()
                .map_err(|err| ("basic_auth.password", err))?;
            let pair = format!("{}:{password}", basic.username);
            Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )))
        }
        (None, Some(token)) => {
            let token = token.resolve().map_err(|err| ("bearer_token", err))?;
            Ok(Some(format!("Bearer {token}")))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{GroupInfo, Target};

    fn finding() -> Finding {
        serde_json::from_value(json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["operate", "test"],
            "tags": ["owasp-api2"],
            "service": "accounts",
            "group": {"client": "203.0.113.9", "header.x-api-key": "k-1", "service": "accounts"},
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
                "user_agent": "curl/8"
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

    fn config(yaml: &str) -> AlertmanagerConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    fn receiver(yaml: &str) -> AlertmanagerReceiver {
        AlertmanagerReceiver::new("am", &config(yaml)).unwrap()
    }

    #[test]
    fn config_defaults() {
        let config = config("url: http://127.0.0.1:9093\n");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.open_for, HumanDuration(24 * 3_600_000));
        assert_eq!(config.title, render::DEFAULT_TITLE);
        assert_eq!(config.max_summary_chars, DEFAULT_MAX_SUMMARY_CHARS);
        assert_eq!(config.max_description_chars, DEFAULT_MAX_DESCRIPTION_CHARS);
        assert_eq!(config.redaction, Redaction::default());
        assert!(config.generator_url.is_none());
        assert!(config.basic_auth.is_none());
        assert!(config.bearer_token.is_none());
    }

    #[test]
    fn config_reads_every_field() {
        let config = config(
            "url: http://127.0.0.1:9093/am\ntimeout: 5s\ntitle: \"{{ title }}\"\nbody: \"Owners: {{ owners }}\"\n\
             redaction: {clients: hash}\ngenerator_url: http://127.0.0.1:8080/findings\nopen_for: 2h\n\
             labels: {team: payments}\nbasic_auth: {username: feedloop, password: {env: AM_PASSWORD}}\n\
             max_summary_chars: 200\nmax_description_chars: 1000\n",
        );
        assert_eq!(config.timeout, HumanDuration(5_000));
        assert_eq!(config.open_for, HumanDuration(7_200_000));
        assert_eq!(config.body.as_deref(), Some("Owners: {{ owners }}"));
        assert_eq!(config.redaction.clients, render::Treatment::Hash);
        assert_eq!(config.labels["team"], "payments");
        let basic = config.basic_auth.unwrap();
        assert_eq!(basic.username, "feedloop");
        assert_eq!(
            basic.password,
            Secret::Env {
                env: "AM_PASSWORD".into()
            }
        );
        assert_eq!(config.max_summary_chars, 200);
    }

    #[test]
    fn config_rejects_unknown_key() {
        let err =
            serde_norway::from_str::<AlertmanagerConfig>("url: http://127.0.0.1:9093\nopen: 1h\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field `open`"), "{err}");
        let err = serde_norway::from_str::<AlertmanagerConfig>(
            "url: http://127.0.0.1:9093\nbasic_auth: {user: a, password: b}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `user`"), "{err}");
    }

    #[test]
    fn new_rejects_invalid_settings() {
        let cases = [
            ("url: 127.0.0.1:9093\n", "alertmanager receiver `am`: url: invalid URL `127.0.0.1:9093`: use an http:// or https:// URL with a host"),
            ("url: http://admin:pw@127.0.0.1:9093\n", "alertmanager receiver `am`: url: invalid URL: it contains credentials (`user:password@`); put them in `basic_auth` instead"),
            ("url: http://127.0.0.1:9093\ngenerator_url: findings\n", "alertmanager receiver `am`: generator_url: invalid URL `findings`: use an http:// or https:// URL with a host"),
            ("url: http://127.0.0.1:9093\nlabels: {severity: x}\n", "alertmanager receiver `am`: labels: label `severity` is set by the receiver; choose another name, such as `team`"),
            ("url: http://127.0.0.1:9093\nlabels: {team-name: x}\n", "alertmanager receiver `am`: labels: invalid label name `team-name`: use letters, digits and `_`, not starting with a digit or `__`, such as `team_name`"),
            ("url: http://127.0.0.1:9093\nopen_for: 0s\n", "alertmanager receiver `am`: open_for: invalid duration 0s: use more than 0 and at most 365d, such as 1d"),
            ("url: http://127.0.0.1:9093\ntimeout: 0s\n", "alertmanager receiver `am`: timeout: invalid duration 0: use at least 1ms, such as 10s"),
            ("url: http://127.0.0.1:9093\nmax_description_chars: 0\n", "alertmanager receiver `am`: max_description_chars: invalid length 0: use at least 1"),
            ("url: http://127.0.0.1:9093\nbearer_token: t\nbasic_auth: {username: a, password: b}\n", "alertmanager receiver `am`: bearer_token: set either `basic_auth` or `bearer_token`, not both"),
            ("url: http://127.0.0.1:9093\nbearer_token: {env: FEEDLOOP_TEST_UNSET_AM_TOKEN}\n", "alertmanager receiver `am`: bearer_token: environment variable `FEEDLOOP_TEST_UNSET_AM_TOKEN` is not set; export it or use `file:`"),
        ];
        for (yaml, expected) in cases {
            let err = AlertmanagerReceiver::new("am", &config(yaml)).unwrap_err();
            assert_eq!(err, expected, "for {yaml:?}");
        }
        let err = AlertmanagerReceiver::new(
            "am",
            &config("url: http://127.0.0.1:9093\ntitle: \"{{ titel }}\"\n"),
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "alertmanager receiver `am`: title: template `{{ titel }}`: unknown field `titel`"
            ),
            "{err}"
        );
    }

    #[test]
    fn label_names_follow_prometheus_rules() {
        assert_eq!(label_name("client"), "client");
        assert_eq!(label_name("header.x-api-key"), "header_x_api_key");
        assert_eq!(label_name("label.team"), "label_team");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name("__name__"), "_name__");
        assert_eq!(label_name(""), "_");
        assert_eq!(label_name("ünï"), "_n_");
    }

    #[test]
    fn labels_name_rule_key_and_group() {
        let receiver = receiver("url: http://127.0.0.1:9093\nlabels: {team: identity}\n");
        let labels = receiver.labels(&notice());
        let expected: BTreeMap<String, String> = [
            ("alertname", "login-bruteforce"),
            ("fingerprint", "0123456789abcdef0123456789abcdef"),
            ("severity", "high"),
            ("stages", "operate,test"),
            ("service", "accounts"),
            ("team", "identity"),
            ("client", "203.0.113.9"),
            ("header_x_api_key", "k-1"),
            ("group_service", "accounts"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn labels_of_a_route_group() {
        let receiver = receiver("url: http://127.0.0.1:9093\nredaction: {clients: hash}\n");
        let mut other = finding();
        other.rule_id = "token-stuffing".into();
        other.severity = feedloop_rules::Severity::Critical;
        other.stages = vec![feedloop_rules::Stage::Monitor];
        let notice = Notice {
            findings: vec![finding(), other],
            group: Some(GroupInfo {
                labels: BTreeMap::from([
                    ("client".to_string(), "203.0.113.9".to_string()),
                    ("team".to_string(), "identity".to_string()),
                ]),
                count: 2,
            }),
            ..notice()
        };
        let labels = receiver.labels(&receiver.redacted(&notice));
        assert_eq!(labels["alertname"], "feedloop");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["stages"], "monitor,operate,test");
        assert_eq!(labels["client"], render::hash_value("203.0.113.9"));
        assert_eq!(labels["team"], "identity");
        assert!(!labels.contains_key("header_x_api_key"), "{labels:?}");
    }

    #[test]
    fn free_label_name_avoids_taken_names() {
        let mut labels = BTreeMap::from([("service".to_string(), "a".to_string())]);
        assert_eq!(free_label_name(&labels, "client"), "client");
        assert_eq!(free_label_name(&labels, "service"), "group_service");
        labels.insert("group_service".into(), "b".into());
        assert_eq!(free_label_name(&labels, "service"), "group_service_2");
    }

    #[test]
    fn description_lists_facts_and_evidence() {
        let text = facts_text(&notice());
        assert!(
            text.starts_with("Change: opened\nRule: login-bruteforce\nSeverity: high\nStages: operate, test\nService: accounts\n"),
            "{text}"
        );
        assert!(
            text.contains("\nFingerprint: 0123456789abcdef0123456789abcdef\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "Evidence (time | client | request | status | principal | match):\n\
                 - 2026-12-04T10:00:01.000Z | 203.0.113.9 | POST /login?user=alice&pw=x | 401 | alice | -"
            ),
            "{text}"
        );
    }

    #[test]
    fn service_message_joins_the_reason() {
        let reject = |response: &str| DeliveryError::Reject {
            reason: "POST http://127.0.0.1:1/api/v2/alerts returned HTTP 400".into(),
            status: Some(400),
            response: response.into(),
            fallback: true,
        };
        let err = with_service_message(reject("\"start time must be before end time\"\n"));
        assert_eq!(
            err.to_string(),
            "POST http://127.0.0.1:1/api/v2/alerts returned HTTP 400: start time must be before end time"
        );
        let err = with_service_message(reject(
            r#"{"code":400,"message":"parsing alerts body failed"}"#,
        ));
        assert!(
            err.to_string().ends_with(": parsing alerts body failed"),
            "{err}"
        );
        let err = with_service_message(reject("<html>bad gateway</html>"));
        assert!(err.to_string().ends_with("returned HTTP 400"), "{err}");
    }

    #[test]
    fn matcher_escapes_quotes() {
        assert_eq!(fingerprint_matcher("ab12"), "fingerprint=\"ab12\"");
        assert_eq!(
            fingerprint_matcher("a\"b\\c"),
            "fingerprint=\"a\\\"b\\\\c\""
        );
    }

    #[test]
    fn debug_hides_credentials() {
        let receiver = receiver(
            "url: http://127.0.0.1:9093\nbasic_auth: {username: u, password: hunter2-secret}\n",
        );
        let shown = format!("{receiver:?}");
        assert!(
            shown.contains("authorization: Some(\"<redacted>\")"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            !shown.contains(&base64::engine::general_purpose::STANDARD.encode("u:hunter2-secret")),
            "{shown}"
        );
    }
}
