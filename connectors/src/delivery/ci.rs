//! CI receivers: a finding change triggers a CI run, such as a pipeline that re-runs the
//! `feedloop gate` check or a regression job.
//!
//! Unlike an issue tracker, a CI system has no object that feedloop creates once and edits
//! later. Every change listed in a receiver's `on` setting sends one trigger: a GitLab
//! pipeline, a Jenkins build or a signed webhook. The [`Remote`] stored for the key records
//! the latest trigger with its id and link, the change kind and change id that caused it, and
//! whether the finding is open after that change. The first trigger for a key is reported
//! through [`Progress::created`], so a crash after it can be recovered instead of repeated.
//!
//! Every trigger carries the same parameters, in this order, so one pipeline definition works
//! with any of the receivers:
//!
//! | name | value |
//! |---|---|
//! | `FEEDLOOP_FINGERPRINT` | the notice key: the finding's fingerprint, or a group's key |
//! | `FEEDLOOP_CHANGE` | `opened`, `updated`, `resolved` or `reopened` |
//! | `FEEDLOOP_RULE` | the rule id |
//! | `FEEDLOOP_SEVERITY` | `info`, `low`, `medium`, `high` or `critical` |
//! | `FEEDLOOP_SERVICE` | the finding's service, empty when it names none |
//! | `FEEDLOOP_DELIVERY` | the change id, equal for every retry of one change |
//! | `FEEDLOOP_TITLE` | the rendered title, redacted and cut to [`TITLE_MAX_CHARS`] |
//!
//! A pipeline that must not run twice for one change keeps the `FEEDLOOP_DELIVERY` values it
//! has seen, because delivery is at least once: a timeout after the service accepted a trigger
//! leads to a retry that triggers again. Misuse to avoid: a trigger informs the pipeline
//! *that* something changed, not whether the gate passes. The pipeline should check the
//! findings' current state instead of trusting `FEEDLOOP_CHANGE`, because triggers for
//! different keys can arrive in any order.
//!
//! That check is `feedloop gate`, which reads the state folder of the run that delivered the
//! change; a pipeline that cannot read that folder has no current state to check.

pub mod gitlab;
pub mod jenkins;
pub mod signed_webhook;

use serde_json::Value;

use feedloop_rules::HumanDuration;

use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Remote, Rendering};

/// The maximum length of `FEEDLOOP_TITLE`, in characters.
///
/// NOTE: neither GitLab nor Jenkins documents a length limit for a trigger variable or a
/// build parameter. This limit keeps titles readable in CI views and in logs.
pub const TITLE_MAX_CHARS: usize = 255;

/// The `Remote::extra` entry with the change kind of the latest trigger.
pub const EXTRA_CHANGE: &str = "change";

/// The `Remote::extra` entry with the change id of the latest trigger.
pub const EXTRA_CHANGE_ID: &str = "change_id";

/// Returns the change kinds that trigger a GitLab pipeline or a Jenkins build by default.
/// Updates are left out because they do not change the finding's state, which the gate checks.
pub fn default_ci_kinds() -> Vec<ChangeKind> {
    vec![
        ChangeKind::Opened,
        ChangeKind::Reopened,
        ChangeKind::Resolved,
    ]
}

/// Returns every change kind, the default of the signed webhook.
pub fn all_kinds() -> Vec<ChangeKind> {
    vec![
        ChangeKind::Opened,
        ChangeKind::Updated,
        ChangeKind::Resolved,
        ChangeKind::Reopened,
    ]
}

/// Returns the default time allowed for one request, connecting included: 10 seconds.
pub fn default_timeout() -> HumanDuration {
    HumanDuration(10_000)
}

/// Returns the default title template, [`render::DEFAULT_TITLE`].
pub fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}

/// A receiver's decision about a notice, made before it sends anything.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Send nothing, for this reason.
    Skip(String),
    /// The stored remote already records a trigger for this very change, as after a recovered
    /// interrupted trigger, so sending again would only duplicate it.
    AlreadySent(Remote),
    /// Send a trigger.
    Send,
}

/// Decides whether a notice triggers CI, given the receiver's `on` list and the stored remote.
pub(crate) fn plan(
    receiver: &str,
    on: &[ChangeKind],
    notice: &Notice,
    remote: Option<&Remote>,
) -> Plan {
    let kind = notice.kind;
    if !on.contains(&kind) {
        return Plan::Skip(format!(
            "receiver `{receiver}` does not trigger on {kind} changes; add `{kind}` to its `on` list to change that"
        ));
    }
    if kind == ChangeKind::Resolved {
        match remote {
            None => {
                return Plan::Skip(format!(
                    "receiver `{receiver}` sent no trigger while the finding was open, so there is nothing to resolve"
                ))
            }
            Some(remote) if !remote.open => {
                return Plan::Skip(format!(
                    "receiver `{receiver}` already sent a trigger for the resolve, as {}",
                    remote.id
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(remote) = remote {
        if remote.extra.get(EXTRA_CHANGE_ID) == Some(&notice.change_id) {
            let mut remote = remote.clone();
            remote.open = kind.leaves_open();
            return Plan::AlreadySent(remote);
        }
    }
    Plan::Send
}

/// Checks an `on` list when a receiver is built.
pub(crate) fn check_kinds(receiver: &str, on: &[ChangeKind]) -> Result<(), String> {
    if on.is_empty() {
        return Err(format!(
            "receiver `{receiver}`: `on` is empty; list at least one of opened, updated, resolved, reopened, or remove the receiver from its routes"
        ));
    }
    Ok(())
}

/// Checks that a URL setting is an absolute http(s) URL with a host.
pub(crate) fn check_url(receiver: &str, field: &str, url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|err| {
        format!("receiver `{receiver}`: invalid `{field}` `{url}`: {err}; write a full URL such as https://ci.example.com")
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "receiver `{receiver}`: invalid `{field}` `{url}`: use an http:// or https:// URL with a host"
        ));
    }
    Ok(())
}

/// Parses a template setting. The error names the receiver and the field.
pub(crate) fn parse_template(
    receiver: &str,
    field: &str,
    source: &str,
) -> Result<Template, String> {
    Template::parse(source)
        .map_err(|err| format!("receiver `{receiver}`: invalid `{field}`: {err}"))
}

/// Returns a copy of the notice with the redaction policy applied to every finding.
pub(crate) fn redacted(notice: &Notice, redaction: &Redaction) -> Notice {
    redaction.apply_notice(notice)
}

/// Renders the title of a redacted notice, cut to `max_chars`.
///
/// A minimal rendering is the finding's plain title. When the template fails, the failure is
/// counted through `progress` and the default title is rendered instead.
pub(crate) fn render_title(
    redacted: &Notice,
    template: &Template,
    rendering: Rendering,
    progress: &mut dyn Progress,
    max_chars: usize,
) -> String {
    let finding = redacted.finding();
    let title = match rendering {
        Rendering::Minimal => finding.title.clone(),
        Rendering::Full => match template.render(redacted) {
            Ok(title) => title,
            Err(reason) => {
                progress.render_failed(&reason);
                plain_title(redacted)
            }
        },
    };
    render::truncate(&title, max_chars)
}

/// Renders [`render::DEFAULT_TITLE`], which names only fields that every finding has. The
/// finding's title is used should that ever fail.
fn plain_title(notice: &Notice) -> String {
    Template::parse(render::DEFAULT_TITLE)
        .and_then(|template| template.render(notice))
        .unwrap_or_else(|_| notice.finding().title.clone())
}

/// Returns the trigger parameters every CI receiver sends, in the order of the module table.
pub fn parameters(notice: &Notice, title: &str) -> Vec<(String, String)> {
    let finding = notice.finding();
    let service = finding
        .service
        .clone()
        .unwrap_or_else(|| notice.target.service.clone());
    [
        ("FEEDLOOP_FINGERPRINT", notice.key.clone()),
        ("FEEDLOOP_CHANGE", notice.kind.as_str().to_string()),
        ("FEEDLOOP_RULE", finding.rule_id.clone()),
        ("FEEDLOOP_SEVERITY", finding.severity.as_str().to_string()),
        ("FEEDLOOP_SERVICE", service),
        ("FEEDLOOP_DELIVERY", notice.change_id.clone()),
        ("FEEDLOOP_TITLE", title.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Returns the remote for a trigger that the service accepted.
pub(crate) fn triggered(
    notice: &Notice,
    id: String,
    url: Option<String>,
    extra: &[(&str, &str)],
) -> Remote {
    let mut remote = Remote {
        id,
        url,
        open: notice.kind.leaves_open(),
        extra: Default::default(),
    };
    remote
        .extra
        .insert(EXTRA_CHANGE.to_string(), notice.kind.as_str().to_string());
    remote
        .extra
        .insert(EXTRA_CHANGE_ID.to_string(), notice.change_id.clone());
    for (name, value) in extra {
        remote.extra.insert(name.to_string(), value.to_string());
    }
    remote
}

/// Returns the effect of a sent trigger, reporting it as created when it is the key's first.
pub(crate) fn record(
    before: Option<&Remote>,
    remote: Remote,
    progress: &mut dyn Progress,
) -> Effect {
    if before.is_none() {
        progress.created(&remote);
    }
    Effect::Applied(remote)
}

/// Rebuilds the remote of a trigger found by `recover` from the parameters it carried.
///
/// Returns `None` when the parameters name no change id, because without one a later apply
/// could not tell whether that trigger was for its change.
pub(crate) fn recovered(
    id: String,
    url: Option<String>,
    parameters: &[(String, String)],
    extra: &[(&str, &str)],
) -> Option<Remote> {
    let find = |name: &str| {
        parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let change_id = find("FEEDLOOP_DELIVERY")?;
    let change = find("FEEDLOOP_CHANGE").unwrap_or_default();
    let mut remote = Remote {
        id,
        url,
        open: change != ChangeKind::Resolved.as_str(),
        extra: Default::default(),
    };
    remote.extra.insert(EXTRA_CHANGE.to_string(), change);
    remote.extra.insert(EXTRA_CHANGE_ID.to_string(), change_id);
    for (name, value) in extra {
        remote.extra.insert(name.to_string(), value.to_string());
    }
    Some(remote)
}

/// Returns the text of a service's error message in a JSON body: a string, or the strings
/// inside an object or array (GitLab's `{"message": {"base": ["Reference not found"]}}`).
pub(crate) fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let message = value.get("message").or_else(|| value.get("error"))?;
    let mut parts = Vec::new();
    collect_strings(message, &mut parts);
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

/// Adds context to a rejection: `prefix`, the service's error message and a hint for the fix.
/// A retry passes through unchanged.
///
/// CI triggers carry no large text, so a minimal rendering cannot fix a rejection and callers
/// normally pass `fallback: false`.
pub(crate) fn explain_rejection(
    err: DeliveryError,
    prefix: &str,
    hint: impl FnOnce(Option<u16>) -> Option<&'static str>,
    fallback: bool,
) -> DeliveryError {
    match err {
        DeliveryError::Reject {
            reason,
            status,
            response,
            ..
        } => {
            let mut text = format!("{prefix}: {reason}");
            if let Some(message) = error_message(&response) {
                text.push_str(": ");
                text.push_str(&message);
            }
            if let Some(hint) = hint(status) {
                text.push_str("; ");
                text.push_str(hint);
            }
            DeliveryError::Reject {
                reason: text,
                status,
                response,
                fallback,
            }
        }
        retry => retry,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::delivery::{ChangeKind, Target};
    use feedloop_pipeline::Finding;

    pub(crate) fn finding() -> Finding {
        serde_json::from_value(serde_json::json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["build", "test"],
            "tags": ["owasp-api2"],
            "service": "accounts",
            "group": {"client": "203.0.113.9", "principal": "alice"},
            "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
            "condition": "count >= 20",
            "count": 20,
            "first_seen": "2026-12-04T10:00:01.000Z",
            "last_seen": "2026-12-04T10:01:00.000Z",
            "evidence": []
        }))
        .unwrap()
    }

    pub(crate) fn notice(kind: ChangeKind) -> Notice {
        Notice {
            key: "0123456789abcdef0123456789abcdef".into(),
            change_id: "change-1".into(),
            kind,
            findings: vec![finding()],
            group: None,
            target: Target::default(),
        }
    }

    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) created: Vec<Remote>,
        pub(crate) failures: Vec<String>,
    }

    impl Progress for Recorder {
        fn created(&mut self, remote: &Remote) {
            self.created.push(remote.clone());
        }
        fn render_failed(&mut self, reason: &str) {
            self.failures.push(reason.to_string());
        }
    }

    fn open_remote(change_id: &str) -> Remote {
        let mut remote = Remote {
            id: "7".into(),
            url: None,
            open: true,
            extra: Default::default(),
        };
        remote
            .extra
            .insert(EXTRA_CHANGE_ID.into(), change_id.to_string());
        remote
    }

    #[test]
    fn plan_skips_kinds_outside_on() {
        let on = default_ci_kinds();
        let plan = plan("ci", &on, &notice(ChangeKind::Updated), None);
        assert_eq!(
            plan,
            Plan::Skip(
                "receiver `ci` does not trigger on updated changes; add `updated` to its `on` list to change that".into()
            )
        );
    }

    #[test]
    fn plan_skips_resolve_without_open_trigger() {
        let on = all_kinds();
        let resolved = notice(ChangeKind::Resolved);
        assert!(matches!(plan("ci", &on, &resolved, None), Plan::Skip(_)));
        let mut closed = open_remote("change-0");
        closed.open = false;
        assert!(matches!(
            plan("ci", &on, &resolved, Some(&closed)),
            Plan::Skip(_)
        ));
        assert_eq!(
            plan("ci", &on, &resolved, Some(&open_remote("change-0"))),
            Plan::Send
        );
    }

    #[test]
    fn plan_does_not_repeat_a_recorded_change() {
        let on = all_kinds();
        let remote = open_remote("change-1");
        let plan = plan("ci", &on, &notice(ChangeKind::Opened), Some(&remote));
        assert_eq!(plan, Plan::AlreadySent(remote));
    }

    #[test]
    fn parameters_in_documented_order() {
        let names: Vec<String> = parameters(&notice(ChangeKind::Opened), "t")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            [
                "FEEDLOOP_FINGERPRINT",
                "FEEDLOOP_CHANGE",
                "FEEDLOOP_RULE",
                "FEEDLOOP_SEVERITY",
                "FEEDLOOP_SERVICE",
                "FEEDLOOP_DELIVERY",
                "FEEDLOOP_TITLE"
            ]
        );
    }

    #[test]
    fn title_falls_back_when_template_fails() {
        let template = Template::parse("{{ distinct }} distinct").unwrap();
        let mut progress = Recorder::default();
        let title = render_title(
            &notice(ChangeKind::Opened),
            &template,
            Rendering::Full,
            &mut progress,
            TITLE_MAX_CHARS,
        );
        assert_eq!(
            title,
            "Repeated failed logins: client=203.0.113.9, principal=alice"
        );
        assert_eq!(progress.failures, ["the finding has no `distinct`"]);
    }

    #[test]
    fn minimal_title_is_plain() {
        let template = Template::parse(render::DEFAULT_TITLE).unwrap();
        let title = render_title(
            &notice(ChangeKind::Opened),
            &template,
            Rendering::Minimal,
            &mut Recorder::default(),
            TITLE_MAX_CHARS,
        );
        assert_eq!(title, "Repeated failed logins");
    }

    #[test]
    fn error_message_reads_gitlab_shapes() {
        assert_eq!(
            error_message(r#"{"message":{"base":["Reference not found"]}}"#).as_deref(),
            Some("Reference not found")
        );
        assert_eq!(
            error_message(r#"{"message":"404 Project Not Found"}"#).as_deref(),
            Some("404 Project Not Found")
        );
        assert_eq!(
            error_message(r#"{"error":"token is missing"}"#).as_deref(),
            Some("token is missing")
        );
        assert_eq!(error_message("<html>no</html>"), None);
    }

    #[test]
    fn recovered_reads_change_and_state() {
        let parameters = vec![
            ("FEEDLOOP_CHANGE".to_string(), "resolved".to_string()),
            ("FEEDLOOP_DELIVERY".to_string(), "change-9".to_string()),
        ];
        let remote = recovered("5".into(), None, &parameters, &[("ref", "main")]).unwrap();
        assert!(!remote.open);
        assert_eq!(remote.extra[EXTRA_CHANGE], "resolved");
        assert_eq!(remote.extra[EXTRA_CHANGE_ID], "change-9");
        assert_eq!(remote.extra["ref"], "main");
        assert_eq!(recovered("5".into(), None, &[], &[]), None);
    }

    #[test]
    fn check_url_rejects_relative_and_other_schemes() {
        assert!(check_url("ci", "url", "https://ci.example.com/hook").is_ok());
        let err = check_url("ci", "url", "ftp://ci.example.com").unwrap_err();
        assert_eq!(
            err,
            "receiver `ci`: invalid `url` `ftp://ci.example.com`: use an http:// or https:// URL with a host"
        );
        assert!(check_url("ci", "url", "/relative").is_err());
    }
}
