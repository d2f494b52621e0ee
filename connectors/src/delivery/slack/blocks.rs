//! Slack message content: Block Kit blocks, fallback text and thread replies.
//!
//! Everything shown as `mrkdwn` has `&`, `<` and `>` escaped, so a finding's paths, titles
//! and group values can never form a mention such as `<!channel>` or a link. Texts are cut to
//! Slack's limits after escaping, so no block exceeds what Slack accepts. The header is
//! `plain_text` and is only cut. The evidence is a code block of whole lines, and the lines
//! that do not fit are counted in a note instead of being cut mid-line. A finding with KPI
//! impact gets a code block of text charts before the evidence, with fewer routes when the
//! charts of all do not fit one section.

use serde_json::{json, Value};

use feedloop_pipeline::Finding;

use super::{
    FALLBACK_TEXT_CHARS, MAX_BLOCKS, MAX_FIELDS, MAX_FIELD_CHARS, MAX_HEADER_CHARS,
    MAX_SECTION_CHARS,
};
use crate::delivery::render;
use crate::delivery::{ChangeKind, Notice, Remote};

/// The maximum characters of one evidence line, so one huge request cannot push out the rest.
const MAX_EVIDENCE_LINE_CHARS: usize = 300;

/// A message's text and, for a full rendering, its blocks.
pub(super) struct Content {
    pub(super) text: String,
    pub(super) blocks: Option<Vec<Value>>,
}

/// The finding's status that a message shows after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Open,
    Updated,
    Resolved,
    Reopened,
}

impl Status {
    /// Returns the status after `kind` is applied to a finding with the stored `remote`.
    pub(super) fn after(remote: Option<&Remote>, kind: ChangeKind) -> Status {
        match (remote, kind) {
            (_, ChangeKind::Resolved) => Status::Resolved,
            (_, ChangeKind::Reopened) => Status::Reopened,
            (Some(remote), _) if !remote.open => Status::Reopened,
            (Some(_), _) => Status::Updated,
            (None, _) => Status::Open,
        }
    }

    /// Returns the header label of the Web API's one message, which shows the state.
    pub(super) fn state_label(self) -> &'static str {
        match self {
            Status::Open | Status::Updated => "Open",
            Status::Resolved => "Resolved",
            Status::Reopened => "Reopened",
        }
    }

    /// Returns the header label of a webhook message, which shows one change.
    pub(super) fn change_label(self) -> &'static str {
        match self {
            Status::Open => "Open",
            Status::Updated => "Updated",
            Status::Resolved => "Resolved",
            Status::Reopened => "Reopened",
        }
    }
}

/// Escapes the three characters Slack's `mrkdwn` reserves for links and mentions.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Escapes a text and cuts it so that the escaped form has at most `max` characters.
///
/// The cut happens before escaping, so it never splits an entity such as `&amp;`, and the
/// note of left-out characters counts characters of the original text.
pub fn escape_within(text: &str, max: usize) -> String {
    let mut keep = max;
    loop {
        let escaped = escape(&render::truncate(text, keep));
        let length = escaped.chars().count();
        if length <= max || keep == 0 {
            return escaped;
        }
        // Escaping grows the text by a factor; shrink the kept part by the same factor.
        keep = (keep * max / length).min(keep - 1);
    }
}

pub(super) fn fallback_text(notice: &Notice, label: &str, title: &str) -> String {
    let finding = notice.finding();
    let text = format!(
        "{label}: {title} ({} severity, rule {})",
        finding.severity, finding.rule_id
    );
    escape_within(&text, FALLBACK_TEXT_CHARS)
}

pub(super) fn minimal_text(notice: &Notice, label: &str, title: &str) -> String {
    let finding = notice.finding();
    let text = format!(
        "{label}: {title}\nRule: {} | Severity: {} | Fingerprint: {}",
        finding.rule_id, finding.severity, finding.fingerprint
    );
    escape_within(&text, FALLBACK_TEXT_CHARS)
}

/// Returns the thread reply describing what a change did.
pub(super) fn reply_text(notice: &Notice, status: Status) -> String {
    let finding = notice.finding();
    let window = format!("{} to {}", finding.window.start, finding.window.end);
    let mut text = match status {
        Status::Resolved => format!(
            "*Resolved:* the condition `{}` has not held for the rule's resolve period. \
             Last count {}, last seen {}.",
            finding.condition, finding.count, finding.last_seen
        ),
        Status::Reopened => format!(
            "*Reopened:* the condition `{}` holds again: count {} in the window {window}.",
            finding.condition, finding.count
        ),
        Status::Open | Status::Updated => format!(
            "*Updated:* count {} in the window {window}, last seen {}.",
            finding.count, finding.last_seen
        ),
    };
    if let Some(group) = &notice.group {
        text.push_str(&format!(" {} findings in the group.", group.count));
    }
    if matches!(status, Status::Open | Status::Updated) {
        if let Some(summary) = render::impact_summary(finding) {
            text.push_str(&format!(" Impact now: {summary}."));
        }
    }
    escape_within(&text, FALLBACK_TEXT_CHARS)
}

/// Returns the Block Kit blocks: header, optional intro, facts, context, the impact's text
/// charts and evidence.
pub(super) fn blocks(notice: &Notice, label: &str, title: &str, intro: Option<&str>) -> Vec<Value> {
    let finding = notice.finding();
    let header = render::truncate(&format!("{label}: {title}"), MAX_HEADER_CHARS);
    // NOTE: plain_text is sent unescaped because Slack's escaping rules are written for
    // mrkdwn; whether Slack decodes `&amp;` in plain_text is untested here.
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": header, "emoji": true},
    })];
    if let Some(intro) = intro.filter(|intro| !intro.trim().is_empty()) {
        blocks.push(section(escape_within(intro, MAX_SECTION_CHARS)));
    }
    blocks.push(fields_block(notice));
    blocks.push(context_block(notice));
    if let Some(impact) = impact_text(finding) {
        blocks.push(section(impact));
    }
    if let Some(evidence) = evidence_text(&render::evidence_rows(finding)) {
        blocks.push(section(evidence));
    }
    blocks.truncate(MAX_BLOCKS);
    blocks
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// Returns the facts as section fields, at most [`MAX_FIELDS`].
fn fields_block(notice: &Notice) -> Value {
    let shown_elsewhere = ["Change", "Fingerprint", "Tags", "Owners"];
    let fields: Vec<Value> = render::facts(notice, notice.finding())
        .into_iter()
        .filter(|(label, _)| !shown_elsewhere.contains(label))
        .take(MAX_FIELDS)
        .map(|(label, value)| {
            let text = escape_within(&format!("*{label}*\n{value}"), MAX_FIELD_CHARS);
            json!({"type": "mrkdwn", "text": text})
        })
        .collect();
    json!({"type": "section", "fields": fields})
}

/// Returns the context line: the last change, fingerprint, marker, owners and tags.
fn context_block(notice: &Notice) -> Value {
    let finding = notice.finding();
    let mut lines = vec![format!(
        "Last change: *{}*, last seen {} | Fingerprint `{}` | {}",
        notice.kind,
        finding.last_seen,
        finding.fingerprint,
        render::marker(&notice.key)
    )];
    let mut people = Vec::new();
    if !notice.target.owners.is_empty() {
        people.push(format!("Owners: {}", notice.target.owners.join(", ")));
    }
    if !finding.tags.is_empty() {
        people.push(format!("Tags: {}", finding.tags.join(", ")));
    }
    if !people.is_empty() {
        lines.push(people.join(" | "));
    }
    let elements: Vec<Value> = lines
        .iter()
        .map(|line| json!({"type": "mrkdwn", "text": escape_within(line, MAX_SECTION_CHARS)}))
        .collect();
    json!({"type": "context", "elements": elements})
}

/// Returns the text charts of the finding's impact as a code block that fits one section,
/// showing fewer routes when more do not fit, or `None` without impact.
fn impact_text(finding: &Finding) -> Option<String> {
    let (open, close) = ("*Impact*\n```\n", "\n```");
    let room = MAX_SECTION_CHARS - open.len() - close.len();
    let mut routes = render::IMPACT_MAX_ROUTES;
    loop {
        let charts = render::impact_text(finding, routes)?;
        if escape(&charts).chars().count() <= room || routes == 1 {
            return Some(format!("{open}{}{close}", escape_within(&charts, room)));
        }
        routes -= 1;
    }
}

/// Returns the evidence as preformatted lines that fit one section, noting left-out events.
fn evidence_text(rows: &[[String; 6]]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let (open, close) = ("*Evidence*\n```\n", "\n```");
    // Room for the note of left-out events, which has at most 45 characters.
    let budget = MAX_SECTION_CHARS - open.len() - close.len() - 45;
    let mut lines: Vec<String> = Vec::new();
    let mut used = 0;
    for row in rows {
        let cells: Vec<&str> = row
            .iter()
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect();
        // A backtick could close the code block early, so it becomes a quote.
        let line = cells.join("  ").replace('`', "'").replace('\n', " ");
        let line = escape_within(&line, MAX_EVIDENCE_LINE_CHARS);
        let length = line.chars().count() + 1;
        if used + length > budget {
            break;
        }
        used += length;
        lines.push(line);
    }
    let left_out = rows.len() - lines.len();
    let mut text = format!("{open}{}{close}", lines.join("\n"));
    if left_out > 0 {
        text.push_str(&format!("\n({left_out} more events not shown)"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::slack::message_remote;
    use crate::delivery::Target;
    use feedloop_pipeline::Finding;

    fn finding() -> Finding {
        serde_json::from_value(json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["operate"],
            "tags": ["owasp-api2"],
            "service": "accounts",
            "group": {"client": "203.0.113.9"},
            "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
            "condition": "count >= 20",
            "count": 20,
            "first_seen": "2026-12-04T10:00:01.000Z",
            "last_seen": "2026-12-04T10:01:00.000Z",
            "evidence": [{
                "time": "2026-12-04T10:00:01.000Z",
                "method": "POST",
                "path": "/login",
                "status": 401,
                "client": "203.0.113.9",
            }]
        }))
        .unwrap()
    }

    fn notice(kind: ChangeKind) -> Notice {
        Notice {
            key: "0123456789abcdef0123456789abcdef".into(),
            change_id: "c1".into(),
            kind,
            findings: vec![finding()],
            group: None,
            target: Target {
                service: "accounts".into(),
                owners: vec!["team-identity".into()],
                slack_channel: Some("C01OPS".into()),
                ..Target::default()
            },
        }
    }

    #[test]
    fn escape_reserved_characters() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(escape("<!channel>"), "&lt;!channel&gt;");
    }

    #[test]
    fn escape_within_never_splits_entities() {
        let text = "&".repeat(100);
        let cut = escape_within(&text, 200);
        assert!(cut.chars().count() <= 200, "{cut}");
        assert!(cut.starts_with("&amp;"), "{cut}");
        let before_note = cut.split("...").next().unwrap();
        assert_eq!(before_note.len() % 5, 0, "{cut}");
        assert!(cut.ends_with("more characters)"), "{cut}");
        assert_eq!(escape_within("short & sweet", 60), "short &amp; sweet");
        assert!(escape_within(&text, 60).chars().count() <= 60);
    }

    #[test]
    fn blocks_for_sample_finding() {
        let notice = notice(ChangeKind::Opened);
        let blocks = blocks(
            &notice,
            "Open",
            "Repeated failed logins: client=203.0.113.9",
            None,
        );
        assert_eq!(blocks.len(), 4);
        assert_eq!(
            blocks[0]["text"]["text"],
            "Open: Repeated failed logins: client=203.0.113.9"
        );
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Rule*\nlogin-bruteforce",
                "*Severity*\nhigh",
                "*Stages*\noperate",
                "*Service*\naccounts",
                "*Group*\nclient=203.0.113.9",
                "*Window*\n2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z",
                "*Condition*\ncount &gt;= 20",
                "*Measured*\ncount 20",
            ]
        );
        assert_eq!(
            blocks[2]["elements"][0]["text"],
            "Last change: *opened*, last seen 2026-12-04T10:01:00.000Z | Fingerprint \
             `0123456789abcdef0123456789abcdef` | feedloop-0123456789abcdef"
        );
        assert_eq!(
            blocks[2]["elements"][1]["text"],
            "Owners: team-identity | Tags: owasp-api2"
        );
        assert_eq!(
            blocks[3]["text"]["text"],
            "*Evidence*\n```\n2026-12-04T10:00:01.000Z  203.0.113.9  POST /login  401\n```"
        );
    }

    #[test]
    fn evidence_notes_left_out_events() {
        let row = |i: usize| {
            [
                format!("t{i}"),
                "c".to_string(),
                format!("GET /{}", "p".repeat(200)),
                String::new(),
                String::new(),
                String::new(),
            ]
        };
        let rows: Vec<[String; 6]> = (0..40).map(row).collect();
        let text = evidence_text(&rows).unwrap();
        assert!(text.chars().count() <= MAX_SECTION_CHARS, "{}", text.len());
        assert!(text.ends_with("more events not shown)"), "{text}");
        assert_eq!(evidence_text(&[]), None);
    }

    #[test]
    fn impact_section_fits_and_escapes() {
        let mut finding = finding();
        let mut route = crate::chart::tests::attack_route();
        route.route = format!("/<!channel>/`x`/{}", "&".repeat(400));
        finding.impact = Some(feedloop_pipeline::Impact {
            kpi_window_ms: 60_000,
            relative_error: 0.01,
            routes: vec![route; 12],
            other_routes: Vec::new(),
        });
        let text = impact_text(&finding).unwrap();
        assert!(text.chars().count() <= MAX_SECTION_CHARS, "{}", text.len());
        assert!(
            text.starts_with("*Impact*\n```\n/&lt;!channel&gt;/'x'/"),
            "{text}"
        );
        assert!(!text.contains("<!channel>"), "{text}");
        assert!(
            text.ends_with("more affected routes not shown)\n```"),
            "{text}"
        );
        let shown = text.matches("windows in the finding").count();
        assert!(
            (1..render::IMPACT_MAX_ROUTES).contains(&shown),
            "{shown} routes"
        );
        finding.impact = None;
        assert_eq!(impact_text(&finding), None);
    }

    #[test]
    fn status_follows_remote_and_change() {
        let open = message_remote("C01OPS", "1.0", true);
        let closed = message_remote("C01OPS", "1.0", false);
        assert_eq!(Status::after(None, ChangeKind::Opened), Status::Open);
        assert_eq!(
            Status::after(Some(&open), ChangeKind::Opened),
            Status::Updated
        );
        assert_eq!(
            Status::after(Some(&open), ChangeKind::Updated),
            Status::Updated
        );
        assert_eq!(
            Status::after(Some(&closed), ChangeKind::Updated),
            Status::Reopened
        );
        assert_eq!(
            Status::after(Some(&closed), ChangeKind::Reopened),
            Status::Reopened
        );
        assert_eq!(
            Status::after(Some(&open), ChangeKind::Resolved),
            Status::Resolved
        );
        assert_eq!(Status::Updated.state_label(), "Open");
        assert_eq!(Status::Updated.change_label(), "Updated");
    }
}
