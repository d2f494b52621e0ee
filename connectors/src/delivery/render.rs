//! Rendering: titles and bodies from templates, each service's size limits, and redaction.
//!
//! A template is text with `{{ field }}` placeholders naming finding fields (`title`,
//! `severity`, `group.client`, `window.start`, ...). Templates are checked against the finding
//! schema when the configuration loads, so a misspelt field fails then, not at 3 a.m. A field
//! that a particular finding lacks (`distinct` on a threshold rule, `group.user` on a rule that
//! groups by client) makes that rendering fail; the receiver then sends the plain default text
//! and the failure is counted.
//!
//! Limits are counted in characters, never bytes, and a cut text ends with a note saying how
//! much was left out, so a reader knows the message is incomplete. Redaction happens before
//! rendering: a receiver's policy hashes or drops principals, clients, query strings and user
//! agents in the group and the evidence, so a public repository never sees what a private
//! Jira project may.

use std::fmt::Write as _;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use feedloop_pipeline::impact::{OTHER_ROUTE_RISE, RELATED_CORRELATION};
use feedloop_pipeline::kpi::OTHER_ROUTE_MIN_RATE_RISE;
use feedloop_pipeline::Finding;

use super::Notice;

/// The fields a template may name, besides `group.<field>`.
pub const TEMPLATE_FIELDS: &[&str] = &[
    "change",
    "condition",
    "count",
    "distinct",
    "fingerprint",
    "first_seen",
    "group",
    "group_count",
    "kind",
    "last_seen",
    "owners",
    "ratio",
    "rule_id",
    "service",
    "severity",
    "stages",
    "tags",
    "title",
    "total",
    "window.end",
    "window.start",
];

/// The default title template.
pub const DEFAULT_TITLE: &str = "{{ title }}: {{ group }}";

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

impl Template {
    /// Parses a template and checks every field it names.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("template `{source}` opens `{{{{` without a closing `}}}}`")
            })?;
            let field = after[..close].trim();
            check_field(field).map_err(|err| format!("template `{source}`: {err}"))?;
            parts.push(Part::Field(field.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// Returns the template's text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template for a notice; fails when a named field has no value.
    pub fn render(&self, notice: &Notice) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(field) => out.push_str(&clean(&field_value(notice, field)?)),
            }
        }
        Ok(out)
    }
}

fn check_field(field: &str) -> Result<(), String> {
    if TEMPLATE_FIELDS.contains(&field) {
        return Ok(());
    }
    if let Some(name) = field.strip_prefix("group.") {
        if feedloop_rules::Field::parse(name).is_some() {
            return Ok(());
        }
        return Err(format!(
            "unknown group field `{name}`; use an event field such as `group.client`"
        ));
    }
    Err(format!(
        "unknown field `{field}`; use one of {}, or group.<field>",
        TEMPLATE_FIELDS.join(", ")
    ))
}

fn field_value(notice: &Notice, field: &str) -> Result<String, String> {
    let finding = notice.finding();
    let missing = || format!("the finding has no `{field}`");
    let value = match field {
        "change" => notice.kind.as_str().to_string(),
        "condition" => finding.condition.clone(),
        "count" => finding.count.to_string(),
        "distinct" => finding.distinct.ok_or_else(missing)?.to_string(),
        "fingerprint" => finding.fingerprint.clone(),
        "first_seen" => finding.first_seen.clone(),
        "group" => match &notice.group {
            // A group message speaks for all its findings, not for the first one's group.
            Some(group) => {
                let labels: Vec<String> = group
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let noun = if group.count == 1 {
                    "finding"
                } else {
                    "findings"
                };
                format!("{} {noun} with {}", group.count, labels.join(", "))
            }
            None => group_text(finding),
        },
        "group_count" => notice
            .group
            .as_ref()
            .map_or(1, |group| group.count)
            .to_string(),
        "kind" => finding.kind.clone(),
        "last_seen" => finding.last_seen.clone(),
        "owners" => notice.target.owners.join(", "),
        "ratio" => finding.ratio.ok_or_else(missing)?.to_string(),
        "rule_id" => finding.rule_id.clone(),
        "service" => finding.service.clone().ok_or_else(missing)?,
        "severity" => finding.severity.as_str().to_string(),
        "stages" => finding
            .stages
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        "tags" => finding.tags.join(", "),
        "title" => finding.title.clone(),
        "total" => finding.total.ok_or_else(missing)?.to_string(),
        "window.end" => finding.window.end.clone(),
        "window.start" => finding.window.start.clone(),
        other => {
            let name = other.strip_prefix("group.").ok_or_else(missing)?;
            match finding.group.get(name) {
                Some(serde_json::Value::String(value)) => value.clone(),
                _ => return Err(missing()),
            }
        }
    };
    Ok(value)
}

/// Returns the text with control and invisible formatting characters written as `\u{..}`
/// escapes. Values from traffic (paths, user agents, service names) pass through here before
/// they reach a title, a message or a terminal, so they cannot forge lines, reorder text or
/// hide characters.
pub fn clean(text: &str) -> String {
    if !text.chars().any(is_unsafe_char) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if is_unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Returns whether a character acts on the text around it without showing itself: a control
/// character, a bidirectional mark, embedding, override or isolate, a zero-width character,
/// or a line or paragraph separator.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Soft hyphen, Arabic letter mark, Mongolian vowel separator.
            '\u{ad}' | '\u{61c}' | '\u{180e}'
            // Zero-width space, non-joiner and joiner, left-to-right and right-to-left marks.
            | '\u{200b}'..='\u{200f}'
            // Line and paragraph separators, bidirectional embeddings and overrides.
            | '\u{2028}'..='\u{202e}'
            // Word joiner, invisible operators, bidirectional isolates, deprecated format
            // characters.
            | '\u{2060}'..='\u{206f}'
            // Zero-width no-break space (byte order mark).
            | '\u{feff}'
        )
}

/// Returns a finding's group as `field=value, ...`, or `all` for a rule without `group_by`.
pub fn group_text(finding: &Finding) -> String {
    if finding.group.is_empty() {
        return "all".to_string();
    }
    finding
        .group
        .iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(value) => format!("{name}={value}"),
            _ => format!("{name}=(none)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cuts a text to at most `max` characters, ending it with a note of how many were left out.
pub fn truncate(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    // The note's length depends on the number it holds; find the longest prefix that fits.
    let mut keep = max;
    loop {
        let note = format!("... ({} more characters)", total - keep);
        let note_len = note.chars().count();
        if note_len >= max {
            return text.chars().take(max).collect();
        }
        if keep + note_len <= max {
            let mut out: String = text.chars().take(keep).collect();
            out.push_str(&note);
            return out;
        }
        keep = max - note_len;
    }
}

/// The treatment a redaction policy gives one kind of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Treatment {
    /// Shown as it is.
    #[default]
    Keep,
    /// Replaced by `hash:` and the first 12 hex digits of its SHA-256, so equal values still
    /// look equal.
    Hash,
    /// Left out.
    Drop,
}

/// A receiver's redaction policy for groups and evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// Principals (user ids, API keys' owners).
    #[serde(default)]
    pub principals: Treatment,
    /// Client addresses.
    #[serde(default)]
    pub clients: Treatment,
    /// Query strings, and signature excerpts taken from them.
    #[serde(default)]
    pub query: Treatment,
    /// User agents.
    #[serde(default)]
    pub user_agents: Treatment,
}

impl Redaction {
    /// Returns the policy for a public place: hashed principals and clients, no query strings.
    pub fn public() -> Redaction {
        Redaction {
            principals: Treatment::Hash,
            clients: Treatment::Hash,
            query: Treatment::Drop,
            user_agents: Treatment::Keep,
        }
    }

    /// Returns a copy of the notice with the policy applied to every finding and to a group's
    /// labels, so templates, facts and evidence all see redacted values.
    pub fn apply_notice(&self, notice: &Notice) -> Notice {
        let mut out = notice.clone();
        out.findings = notice.findings.iter().map(|f| self.apply(f)).collect();
        if let Some(group) = &mut out.group {
            for (label, value) in group.labels.iter_mut() {
                let treatment = self.treatment(label.strip_prefix("group.").unwrap_or(label));
                *value = treat(treatment, value).unwrap_or_else(|| "(redacted)".to_string());
            }
        }
        out
    }

    fn treatment(&self, field: &str) -> Treatment {
        match field {
            "principal" => self.principals,
            "client" => self.clients,
            "query" => self.query,
            "user_agent" => self.user_agents,
            _ => Treatment::Keep,
        }
    }

    /// Returns a copy of the finding with the policy applied to its group and evidence.
    pub fn apply(&self, finding: &Finding) -> Finding {
        let mut out = finding.clone();
        if let Some(impact) = &mut out.impact {
            let shares = impact
                .routes
                .iter_mut()
                .filter_map(|route| route.from_group.as_mut())
                .chain(
                    impact
                        .other_routes
                        .iter_mut()
                        .filter_map(|route| route.from_group.as_mut()),
                );
            for share in shares {
                let treatment = self.treatment(&share.field);
                share.value =
                    treat(treatment, &share.value).unwrap_or_else(|| "(redacted)".to_string());
            }
        }
        for (name, value) in out.group.iter_mut() {
            let treatment = self.treatment(name);
            if let serde_json::Value::String(text) = value {
                *value = match treat(treatment, text) {
                    Some(text) => serde_json::Value::String(text),
                    None => serde_json::Value::String("(redacted)".to_string()),
                };
            }
        }
        for event in &mut out.evidence {
            event.client = treat(self.clients, &event.client).unwrap_or_default();
            event.principal = event
                .principal
                .as_deref()
                .and_then(|p| treat(self.principals, p));
            event.user_agent = event
                .user_agent
                .as_deref()
                .and_then(|u| treat(self.user_agents, u));
            event.query = event.query.as_deref().and_then(|q| treat(self.query, q));
            let from_query = event.matched.as_ref().is_some_and(|m| m.field == "query");
            if from_query && self.query != Treatment::Keep {
                if let Some(matched) = &mut event.matched {
                    matched.excerpt = "(redacted)".to_string();
                }
            }
        }
        out
    }
}

fn treat(treatment: Treatment, value: &str) -> Option<String> {
    match treatment {
        Treatment::Keep => Some(value.to_string()),
        Treatment::Drop => None,
        Treatment::Hash => Some(hash_value(value)),
    }
}

/// Returns `hash:` and the first 12 hex digits of the value's SHA-256.
pub fn hash_value(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::from("hash:");
    for byte in &digest[..6] {
        write!(out, "{byte:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// Returns the facts every message shows, as label and value, in order.
pub fn facts(notice: &Notice, finding: &Finding) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Change", notice.kind.as_str().to_string()),
        ("Rule", finding.rule_id.clone()),
        ("Severity", finding.severity.as_str().to_string()),
        (
            "Stages",
            finding
                .stages
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    if let Some(service) = &finding.service {
        facts.push(("Service", clean(service)));
    }
    facts.push(("Group", clean(&group_text(finding))));
    facts.push((
        "Window",
        format!("{} to {}", finding.window.start, finding.window.end),
    ));
    facts.push(("Condition", finding.condition.clone()));
    let mut measured = format!("count {}", finding.count);
    if let Some(distinct) = finding.distinct {
        write!(measured, ", distinct {distinct}").expect("writing to a String cannot fail");
    }
    if let (Some(ratio), Some(total)) = (finding.ratio, finding.total) {
        write!(measured, ", ratio {ratio} of {total}").expect("writing to a String cannot fail");
    }
    facts.push(("Measured", measured));
    if let Some(group) = &notice.group {
        facts.push(("Findings in group", group.count.to_string()));
    }
    if !finding.tags.is_empty() {
        facts.push(("Tags", finding.tags.join(", ")));
    }
    if !notice.target.owners.is_empty() {
        facts.push(("Owners", notice.target.owners.join(", ")));
    }
    facts.push(("Fingerprint", finding.fingerprint.clone()));
    facts
}

/// The maximum routes whose text chart a message shows; the rest are counted in a note.
pub const IMPACT_MAX_ROUTES: usize = 3;

/// The maximum characters of one text chart line, so a huge route template cannot push the
/// rest of a message out.
pub const IMPACT_LINE_MAX_CHARS: usize = 300;

/// Returns the text charts of a finding's first `max_routes` affected routes (the most
/// affected first), separated by blank lines, with a note counting the routes left out.
/// Returns `None` when the finding has no impact or no affected route.
///
/// Each line has control and bidi characters escaped, backticks replaced by `'` and at most
/// [`IMPACT_LINE_MAX_CHARS`] characters, so the text can sit inside a code block. Characters
/// a medium reserves elsewhere, such as Slack's `&`, `<` and `>`, are the caller's to escape.
pub fn impact_text(finding: &Finding, max_routes: usize) -> Option<String> {
    let routes = &finding.impact.as_ref()?.routes;
    if routes.is_empty() || max_routes == 0 {
        return None;
    }
    let mut charts: Vec<String> = routes
        .iter()
        .take(max_routes)
        .map(|route| {
            crate::chart::text_chart(route)
                .lines()
                .map(|line| truncate(&clean(line).replace('`', "'"), IMPACT_LINE_MAX_CHARS))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let left_out = routes.len().saturating_sub(max_routes);
    if left_out > 0 {
        let noun = if left_out == 1 { "route" } else { "routes" };
        charts.push(format!("({left_out} more affected {noun} not shown)"));
    }
    let related: Vec<String> = finding
        .impact
        .iter()
        .flat_map(|impact| &impact.other_routes)
        .filter(|other| other.related)
        .take(max_routes)
        .map(|other| {
            let line = format!("Also rose with the matches: {}", other_route_text(other));
            truncate(&clean(&line).replace('`', "'"), IMPACT_LINE_MAX_CHARS)
        })
        .collect();
    if !related.is_empty() {
        charts.push(related.join("\n"));
    }
    Some(charts.join("\n\n"))
}

/// Describes the KPIs of another route that rose with the matches, with their correlation,
/// such as `POST /token p99 +100% (r 0.98)`: those that rose by [`OTHER_ROUTE_RISE`] or more
/// (an error rate also by one percentage point) and correlate by [`RELATED_CORRELATION`] or
/// more.
fn other_route_text(other: &feedloop_pipeline::impact::OtherRoute) -> String {
    let mut parts = Vec::new();
    for (name, label, coefficient, min_absolute) in [
        ("p99_ms", "p99", other.correlation.p99_ms, 0.0),
        (
            "error_5xx_rate",
            "5xx rate",
            other.correlation.error_rate,
            OTHER_ROUTE_MIN_RATE_RISE,
        ),
        (
            "error_4xx_rate",
            "4xx rate",
            other.correlation.error_rate,
            OTHER_ROUTE_MIN_RATE_RISE,
        ),
    ] {
        let Some(change) = other.change.get(name) else {
            continue;
        };
        let rose = change.absolute > 0.0
            && change.absolute >= min_absolute
            && change.relative.is_none_or(|r| r >= OTHER_ROUTE_RISE);
        let Some(r) = coefficient.filter(|r| rose && *r >= RELATED_CORRELATION) else {
            continue;
        };
        let rise = match change.relative {
            Some(relative) => format!("{:+.0}%", relative * 100.0),
            None => "up from 0".to_string(),
        };
        parts.push(format!("{label} {rise} (r {r:.2})"));
    }
    format!("{} {}", other.route, parts.join(", "))
}

/// The maximum characters of the impact summary that update messages carry.
pub const IMPACT_SUMMARY_MAX_CHARS: usize = 400;

/// Returns the one-line impact summary of a finding, as the console prints it, for the texts
/// of updates: without the `impact:` prefix, with control and bidi characters escaped and
/// backticks replaced by `'`, at most [`IMPACT_SUMMARY_MAX_CHARS`] characters.
pub fn impact_summary(finding: &Finding) -> Option<String> {
    let line = crate::sink::console::impact_line(finding.impact.as_ref()?)?;
    let line = line.strip_prefix("impact: ").unwrap_or(&line);
    Some(truncate(
        &clean(line).replace('`', "'"),
        IMPACT_SUMMARY_MAX_CHARS,
    ))
}

/// The evidence table's column names.
pub const EVIDENCE_COLUMNS: [&str; 6] =
    ["time", "client", "request", "status", "principal", "match"];

/// Returns one row per evidence event, in [`EVIDENCE_COLUMNS`] order.
pub fn evidence_rows(finding: &Finding) -> Vec<[String; 6]> {
    finding
        .evidence
        .iter()
        .map(|e| {
            let request = match &e.query {
                Some(query) => format!("{} {}?{}", e.method, e.path, query),
                None => format!("{} {}", e.method, e.path),
            };
            let matched = e
                .matched
                .as_ref()
                .map(|m| format!("{} in {}: {}", m.pattern, m.field, m.excerpt))
                .unwrap_or_default();
            [
                e.time.clone(),
                clean(&e.client),
                clean(&request),
                e.status.map(|s| s.to_string()).unwrap_or_default(),
                clean(e.principal.as_deref().unwrap_or_default()),
                clean(&matched),
            ]
        })
        .collect()
}

/// Returns the marker every created object carries, so an interrupted create can be found again.
pub fn marker(key: &str) -> String {
    format!("feedloop-{}", &key[..key.len().min(16)])
}

/// Renders a Markdown body: facts, the impact's text charts, the evidence table and the
/// fingerprint marker.
pub fn markdown(notice: &Notice, finding: &Finding, intro: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(intro) = intro {
        out.push_str(intro);
        out.push_str("\n\n");
    }
    for (label, value) in facts(notice, finding) {
        // Values taken from traffic go in code spans, where GitHub renders no mention, link
        // or image.
        let value = match label {
            "Group" | "Service" => markdown_cell(&value),
            _ => markdown_escape(&value),
        };
        writeln!(out, "- **{label}:** {value}").expect("writing to a String cannot fail");
    }
    if let Some(impact) = impact_text(finding, IMPACT_MAX_ROUTES) {
        // Before the evidence, so a body cut to a receiver's limit loses evidence rows first.
        write!(out, "\n**Impact**\n\n```text\n{impact}\n```\n")
            .expect("writing to a String cannot fail");
    }
    let rows = evidence_rows(finding);
    if !rows.is_empty() {
        out.push_str("\n| ");
        out.push_str(&EVIDENCE_COLUMNS.join(" | "));
        out.push_str(" |\n|");
        out.push_str(&"---|".repeat(EVIDENCE_COLUMNS.len()));
        out.push('\n');
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| markdown_cell(c)).collect();
            writeln!(out, "| {} |", cells.join(" | ")).expect("writing to a String cannot fail");
        }
    }
    write!(out, "\n<!-- {} -->", marker(&notice.key)).expect("writing to a String cannot fail");
    out
}

fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '\\' | '*' | '_' | '`' | '[' | ']' | '!' | '|' | '#' | '@' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn markdown_cell(text: &str) -> String {
    format!(
        "`{}`",
        text.replace('`', "'")
            .replace('|', "\\|")
            .replace('\n', " ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{ChangeKind, Notice, Target};

    pub(crate) fn finding() -> Finding {
        serde_json::from_value(serde_json::json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["operate", "test"],
            "tags": ["owasp-api2"],
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

    #[test]
    fn template_renders_fields() {
        let template =
            Template::parse("[{{ severity }}] {{title}} for {{ group.client }}").unwrap();
        assert_eq!(
            template.render(&notice()).unwrap(),
            "[high] Repeated failed logins for 203.0.113.9"
        );
        let default = Template::parse(DEFAULT_TITLE).unwrap();
        assert_eq!(
            default.render(&notice()).unwrap(),
            "Repeated failed logins: client=203.0.113.9, principal=alice"
        );
    }

    #[test]
    fn group_field_speaks_for_a_whole_group() {
        let mut grouped = notice();
        grouped.group = Some(crate::delivery::GroupInfo {
            labels: [("rule_id".to_string(), "login-bruteforce".to_string())].into(),
            count: 50,
        });
        let default = Template::parse(DEFAULT_TITLE).unwrap();
        assert_eq!(
            default.render(&grouped).unwrap(),
            "Repeated failed logins: 50 findings with rule_id=login-bruteforce"
        );
    }

    #[test]
    fn template_rejects_unknown_fields_at_parse() {
        let err = Template::parse("{{ severty }}").unwrap_err();
        assert!(
            err.starts_with(
                "template `{{ severty }}`: unknown field `severty`; use one of change,"
            ),
            "{err}"
        );
        let err = Template::parse("{{ group.nope }}").unwrap_err();
        assert_eq!(
            err,
            "template `{{ group.nope }}`: unknown group field `nope`; use an event field such as `group.client`"
        );
        let err = Template::parse("{{ title").unwrap_err();
        assert_eq!(err, "template `{{ title` opens `{{` without a closing `}}`");
    }

    #[test]
    fn template_fails_on_absent_value() {
        let template = Template::parse("{{ distinct }} paths").unwrap();
        assert_eq!(
            template.render(&notice()).unwrap_err(),
            "the finding has no `distinct`"
        );
        let template = Template::parse("{{ group.path }}").unwrap();
        assert_eq!(
            template.render(&notice()).unwrap_err(),
            "the finding has no `group.path`"
        );
    }

    #[test]
    fn truncate_counts_characters_and_notes_the_rest() {
        assert_eq!(truncate("short", 10), "short");
        let text = "é".repeat(100);
        let cut = truncate(&text, 40);
        assert_eq!(cut.chars().count(), 40);
        assert_eq!(cut, format!("{}... (84 more characters)", "é".repeat(16)));
        assert_eq!(truncate("abcdef", 3), "abc");
    }

    #[test]
    fn public_redaction_hashes_and_drops() {
        let redacted = Redaction::public().apply(&finding());
        assert_eq!(redacted.group["client"], hash_value("203.0.113.9"));
        assert_eq!(redacted.group["principal"], hash_value("alice"));
        assert_eq!(hash_value("alice"), "hash:2bd806c97f0e");
        let event = &redacted.evidence[0];
        assert_eq!(event.client, hash_value("203.0.113.9"));
        assert_eq!(event.principal.as_deref(), Some("hash:2bd806c97f0e"));
        assert_eq!(event.query, None);
        assert_eq!(event.matched.as_ref().unwrap().excerpt, "(redacted)");
        assert_eq!(event.user_agent.as_deref(), Some("curl/8"));
        let kept = Redaction::default().apply(&finding());
        assert_eq!(kept, finding());
    }

    #[test]
    fn impact_group_values_are_redacted() {
        let mut with_impact = finding();
        with_impact.impact = Some(serde_json::from_value(serde_json::json!({
            "kpi_window_ms": 60000, "relative_error": 0.01,
            "routes": [{"service": "accounts", "route": "POST /login",
                "during": {"requests": 1, "requests_per_window": 1.0, "errors_4xx": 1, "errors_5xx": 0,
                    "error_4xx_rate": 1.0, "error_5xx_rate": 0.0, "request_bytes": 0, "response_bytes": 0},
                "baseline_windows": 0, "change": {},
                "from_group": {"field": "client", "value": "203.0.113.9", "requests": 1, "errors": 1, "errors_5xx": 0},
                "correlation": {"windows": 1}, "series": []}],
            "other_routes": [{"service": "accounts", "route": "POST /token",
                "during": {"requests": 1, "requests_per_window": 1.0, "errors_4xx": 0, "errors_5xx": 0,
                    "error_4xx_rate": 0.0, "error_5xx_rate": 0.0, "request_bytes": 0, "response_bytes": 0},
                "baseline_windows": 0, "change": {},
                "from_group": {"field": "client", "value": "203.0.113.9", "requests": 1, "errors": 0, "errors_5xx": 0},
                "correlation": {"windows": 1}, "rose": false, "related": false}]
        })).unwrap());
        let redacted = Redaction::public().apply(&with_impact).impact.unwrap();
        let share = redacted.routes[0].from_group.clone().unwrap();
        assert_eq!(share.value, hash_value("203.0.113.9"));
        let other = redacted.other_routes[0].from_group.clone().unwrap();
        assert_eq!(other.value, hash_value("203.0.113.9"));
    }

    #[test]
    fn impact_text_names_related_other_routes() {
        let mut finding = finding();
        let other = |route: &str, related: bool| {
            serde_json::from_value(serde_json::json!({
                "service": "accounts", "route": route,
                "during": {"requests": 100, "requests_per_window": 20.0, "errors_4xx": 0, "errors_5xx": 5,
                    "error_4xx_rate": 0.0, "error_5xx_rate": 0.05, "p99_ms": 40.0,
                    "request_bytes": 0, "response_bytes": 0},
                "baseline_windows": 30,
                "change": {"p99_ms": {"absolute": 24.0, "relative": 1.5},
                    "error_5xx_rate": {"absolute": 0.05},
                    "error_4xx_rate": {"absolute": 0.02, "relative": 0.32}},
                "correlation": {"windows": 30, "p99_ms": 0.9812, "error_rate": 0.75},
                "rose": true, "related": related
            }))
            .unwrap()
        };
        finding.impact = Some(feedloop_pipeline::Impact {
            kpi_window_ms: 60_000,
            relative_error: 0.01,
            routes: vec![crate::chart::tests::attack_route()],
            other_routes: vec![other("POST /token", true), other("GET /me", false)],
        });
        let text = impact_text(&finding, IMPACT_MAX_ROUTES).unwrap();
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            "Also rose with the matches: POST /token p99 +150% (r 0.98), 5xx rate up from 0 (r 0.75)"
        );
        assert!(!text.contains("GET /me"), "{text}");
    }

    #[test]
    fn group_labels_are_redacted_with_the_findings() {
        let mut grouped = notice();
        grouped.group = Some(crate::delivery::GroupInfo {
            labels: [
                ("group.client".to_string(), "203.0.113.9".to_string()),
                ("rule_id".to_string(), "login-bruteforce".to_string()),
            ]
            .into(),
            count: 2,
        });
        let redacted = Redaction::public().apply_notice(&grouped);
        let labels = &redacted.group.unwrap().labels;
        assert_eq!(labels["group.client"], hash_value("203.0.113.9"));
        assert_eq!(labels["rule_id"], "login-bruteforce");
        assert_eq!(
            redacted.findings[0].group["client"],
            hash_value("203.0.113.9")
        );
    }

    #[test]
    fn clean_escapes_control_and_bidi_characters() {
        assert_eq!(clean("plain /login é"), "plain /login é");
        assert_eq!(
            clean("a\nb\u{1b}[31m\u{202e}c"),
            "a\\u{a}b\\u{1b}[31m\\u{202e}c"
        );
        assert_eq!(
            clean("\u{2066}x\u{2069}\u{200b}y\u{200d}\u{2028}z\u{feff}\u{ad}"),
            "\\u{2066}x\\u{2069}\\u{200b}y\\u{200d}\\u{2028}z\\u{feff}\\u{ad}"
        );
    }

    #[test]
    fn markdown_keeps_traffic_values_in_code_spans() {
        let mut hostile = finding();
        hostile.group.insert(
            "route".into(),
            serde_json::Value::String("/x @org/team ![i](https://e.test/p.png) `a`".into()),
        );
        let mut notice = notice();
        notice.findings = vec![hostile.clone()];
        let body = markdown(&notice, &hostile, None);
        assert!(
            body.contains("- **Group:** `client=203.0.113.9, principal=alice, route=/x @org/team ![i](https://e.test/p.png) 'a'`\n"),
            "{body}"
        );
    }

    #[test]
    fn impact_text_cleans_and_counts_routes() {
        let mut hostile = crate::chart::tests::attack_route();
        hostile.route = format!("/a`b\u{202e}c\nmatches ▁█/{}", "p".repeat(400));
        let mut finding = finding();
        assert_eq!(impact_text(&finding, IMPACT_MAX_ROUTES), None);
        finding.impact = Some(feedloop_pipeline::Impact {
            kpi_window_ms: 60_000,
            relative_error: 0.01,
            routes: vec![hostile, crate::chart::tests::attack_route()],
            other_routes: Vec::new(),
        });

        let text = impact_text(&finding, 1).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("/a'b\\u{202e}c\\u{a}matches ▁█/ppp"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[0].chars().count(), IMPACT_LINE_MAX_CHARS);
        assert_eq!(lines[5], "");
        assert_eq!(lines[6], "(1 more affected route not shown)");
        assert_eq!(lines.len(), 7);

        let both = impact_text(&finding, IMPACT_MAX_ROUTES).unwrap();
        assert!(
            both.contains("\n\nPOST /login on accounts: 40 windows"),
            "{both}"
        );
        assert!(!both.contains("not shown"), "{both}");
        let body = markdown(&notice_with(&finding), &finding, None);
        let impact_at = body.find("\n**Impact**\n\n```text\n").unwrap();
        assert!(impact_at < body.find("| time |").unwrap(), "{body}");
    }

    fn notice_with(finding: &Finding) -> Notice {
        Notice {
            findings: vec![finding.clone()],
            ..notice()
        }
    }

    #[test]
    fn markdown_body_has_facts_evidence_and_marker() {
        let body = markdown(&notice(), &finding(), None);
        assert!(
            body.starts_with("- **Change:** opened\n- **Rule:** login-bruteforce\n"),
            "{body}"
        );
        assert!(body.contains("| `2026-12-04T10:00:01.000Z` | `203.0.113.9` | `POST /login?user=alice&pw=x` | `401` | `alice` | `sqli in query: pw=x` |"), "{body}");
        assert!(
            body.ends_with("<!-- feedloop-0123456789abcdef -->"),
            "{body}"
        );
    }
}
