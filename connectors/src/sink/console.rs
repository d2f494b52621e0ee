//! The console sink: one readable block per finding, and the run summary.

use std::fmt::Write as _;

use feedloop_pipeline::impact::{KpiChange, KpiSummary, OtherRoute};
use feedloop_pipeline::{Finding, Impact, Phase, RunCounts};

use super::DeliveryReport;
use crate::delivery::engine::EngineReport;
use crate::delivery::render::clean;

/// Formats findings and summaries for a terminal.
#[derive(Debug, Clone, Default)]
pub struct Console {
    /// Also print early findings; final findings are always printed.
    pub show_early: bool,
}

impl Console {
    /// Returns the text of one finding, ending in a newline; empty for a hidden early finding.
    pub fn finding_text(&self, finding: &Finding) -> String {
        if finding.phase == Phase::Early && !self.show_early {
            return String::new();
        }
        let phase = match finding.phase {
            Phase::Early => "early",
            Phase::Final => "final",
        };
        // Every line is escaped on its own: values come from logs, and a newline or escape
        // sequence in them must not fake a finding or drive the terminal.
        let mut lines = vec![
            format!(
                "[{phase}] {severity:<8} {rule}  {group}  {start} .. {end}",
                severity = finding.severity.as_str().to_uppercase(),
                rule = finding.rule_id,
                group = group_text(finding),
                start = finding.window.start,
                end = finding.window.end,
            ),
            format!(
                "{}: {} ({})",
                finding.title,
                measure_text(finding),
                finding.condition
            ),
        ];
        if let Some(first) = finding.evidence.first() {
            let query = first
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let status = first
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let target = cut(&format!("{}{query}", first.path), 100);
            let mut line = format!(
                "e.g. {} {} {} {target} -> {status}",
                first.time, first.client, first.method
            );
            if let Some(matched) = &first.matched {
                let _ = write!(line, " [{} in {}]", matched.pattern, matched.field);
            }
            lines.push(line);
        }
        if let Some(line) = finding.impact.as_ref().and_then(impact_line) {
            lines.push(line);
        }
        let lines: Vec<String> = lines.iter().map(|line| clean(line)).collect();
        let mut text = lines.join("\n        ");
        text.push('\n');
        text
    }

    /// Returns the run summary.
    pub fn summary_text(counts: &RunCounts, report: &DeliveryReport) -> String {
        let mut text = String::new();
        let (early, total_final) = report.totals();
        let _ = writeln!(text, "\nfeedloop summary");
        let _ = writeln!(text, "  records read      {:>10}", counts.records);
        let _ = writeln!(text, "  decoded           {:>10}", counts.decoded);
        let _ = writeln!(text, "  dead-lettered     {:>10}", counts.dead_lettered);
        if counts.skipped > 0 {
            let _ = writeln!(
                text,
                "  skipped           {:>10}  (records after an unreadable one in an Avro block, which cannot be located; see the dead letters)",
                counts.skipped
            );
        }
        let _ = writeln!(text, "  late              {:>10}", counts.late);
        if counts.bad_time > 0 {
            let _ = writeln!(text, "  invalid time      {:>10}", counts.bad_time);
        }
        if counts.dropped_kpi_updates > 0 {
            let _ = writeln!(
                text,
                "  KPI updates dropped {:>6}  (KPIs track at most kpi.max_tracked_routes routes; give the input route templates, or raise the limit)",
                counts.dropped_kpi_updates
            );
        }
        if counts.dropped_hits > 0 {
            let _ = writeln!(
                text,
                "  dropped at window limit {:>4}  (raise --max-windows-per-rule, or group more coarsely)",
                counts.dropped_hits
            );
        }
        let _ = writeln!(
            text,
            "  findings          {:>10} final, {} early",
            total_final, early
        );
        if !report.findings_by_rule.is_empty() {
            let _ = writeln!(text, "  by rule:");
            let width = report
                .findings_by_rule
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(0);
            for (rule, (early, fin)) in &report.findings_by_rule {
                let _ = writeln!(text, "    {rule:<width$}  {fin:>6} final  {early:>6} early");
            }
        }
        if !report.changes.is_empty() {
            let count = |kind: &str| report.changes.get(kind).copied().unwrap_or(0);
            let _ = writeln!(
                text,
                "  lifecycle         {:>10} opened, {} updated, {} resolved, {} reopened; {} repeated a reported state",
                count("opened"),
                count("updated"),
                count("resolved"),
                count("reopened"),
                counted(counts.repeated_findings, "finding", "findings")
            );
        }
        if let Some(delivery) = &report.delivery {
            delivery_text(&mut text, delivery);
        }
        if !report.dead_letter_samples.is_empty() {
            let _ = writeln!(text, "  first dead letters:");
            for letter in &report.dead_letter_samples {
                let line = format!(
                    "{} {}: {}",
                    letter.source,
                    letter.position,
                    cut(&letter.error, 160)
                );
                let _ = writeln!(text, "    {}", clean(&line));
            }
        }
        for hook in &report.webhooks {
            let _ = writeln!(
                text,
                "  webhook {}: {} delivered, {} retried, {} failed, {} dropped",
                hook.url, hook.delivered, hook.retried, hook.failed, hook.dropped
            );
        }
        for error in report.write_errors.iter().chain(&report.input_errors) {
            let _ = writeln!(text, "  error: {}", clean(error));
        }
        text
    }
}

/// Returns one line on the most affected route: the KPI that moved most against its baseline
/// (a rise from zero first), and the p99 latency too when it moved by a fifth or more. It
/// ends with the share of the route's 5xx, errors or requests that came from the finding's
/// group, whichever the group caused.
pub fn impact_line(impact: &Impact) -> Option<String> {
    let route = impact.routes.first()?;
    let during = &route.during;
    let name = cut(&route.route, 100);
    let moved = ranked_changes(route);
    let parts: Vec<String> = moved
        .iter()
        .take(1)
        .chain(
            moved
                .iter()
                .skip(1)
                .find(|(n, c)| *n == "p99_ms" && c.relative.is_some_and(|r| r.abs() >= 0.2)),
        )
        .map(|(n, c)| describe_change(n, c, &route.during, route.baseline.as_ref()))
        .collect();
    let mut line = if route.baseline.is_none() {
        let noun = if during.requests == 1 {
            "request"
        } else {
            "requests"
        };
        let mut levels = String::new();
        if let Some(p99) = during.p99_ms {
            let _ = write!(levels, ", p99 latency {p99:.0} ms");
        }
        let errors = during.error_4xx_rate + during.error_5xx_rate;
        if errors > 0.0 {
            let _ = write!(levels, ", error rate {}", percent(errors));
        }
        format!(
            "impact: {} {noun} on {name} during the finding{levels}, no baseline to compare with",
            during.requests
        )
    } else if parts.is_empty() {
        format!(
            "impact: on {name} during the finding, no change of 5% or more against a baseline of {}",
            counted(route.baseline_windows as u64, "window", "windows")
        )
    } else {
        format!("impact: on {name} during the finding, {}", parts.join(", "))
    };
    if let Some(group) = &route.from_group {
        let share = if group.errors_5xx > 0 {
            group.errors_5xx_share.map(|s| (s, "5xx"))
        } else if group.errors > 0 {
            group.errors_share.map(|s| (s, "errors"))
        } else {
            group.requests_share.map(|s| (s, "requests"))
        };
        if let Some((share, what)) = share {
            let _ = write!(
                line,
                "; {} of its {what} from {}={}",
                percent(share),
                group.field,
                cut(&group.value, 60)
            );
        }
    }
    if let Some(other) = impact.other_routes.iter().find(|o| o.related) {
        let _ = write!(line, "; also {}", describe_other_route(other));
    }
    Some(line)
}

/// Describes the KPI of another route that rose most, with its correlation with the matches.
fn describe_other_route(other: &OtherRoute) -> String {
    let rise = |c: &KpiChange| c.relative.unwrap_or(f64::INFINITY);
    let (name, change) = ["p99_ms", "error_5xx_rate", "error_4xx_rate"]
        .iter()
        .filter_map(|name| other.change.get(*name).map(|c| (*name, c)))
        .filter(|(_, c)| c.absolute > 0.0)
        .max_by(|a, b| rise(a.1).total_cmp(&rise(b.1)).then(b.0.cmp(a.0)))
        .unwrap_or((
            "p99_ms",
            &KpiChange {
                absolute: 0.0,
                relative: None,
            },
        ));
    let coefficient = if name == "p99_ms" {
        other.correlation.p99_ms
    } else {
        other.correlation.error_rate
    };
    let mut text = format!(
        "{} on {}",
        describe_change(name, change, &other.during, other.baseline.as_ref()),
        cut(&other.route, 100)
    );
    if let Some(r) = coefficient {
        let _ = write!(text, ", correlation {r:.2} with the matches");
    }
    text
}

/// Formats a share as a percentage with two significant digits below 10%, so 0.0019 reads
/// 0.19% rather than 0%.
fn percent(share: f64) -> String {
    let value = share * 100.0;
    if value == 0.0 || value.abs() >= 10.0 {
        format!("{value:.0}%")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}%")
    } else {
        format!("{value:.2}%")
    }
}

/// Returns the changes worth naming, the biggest first: a rise from zero outranks any
/// relative change. Changes below 5% are left out, and so are rates that rose from zero by
/// less than one percentage point.
fn ranked_changes(route: &feedloop_pipeline::impact::RouteImpact) -> Vec<(&str, KpiChange)> {
    let significant = |name: &str, c: &KpiChange| match c.relative {
        Some(relative) => relative.abs() >= 0.05,
        None => !name.ends_with("_rate") || c.absolute.abs() >= 0.01,
    };
    let mut moved: Vec<(&str, KpiChange)> = route
        .change
        .iter()
        .filter(|(name, c)| {
            matches!(
                name.as_str(),
                "p99_ms" | "error_5xx_rate" | "error_4xx_rate" | "requests_per_window"
            ) && c.absolute != 0.0
                && significant(name, c)
        })
        .map(|(name, c)| (name.as_str(), *c))
        .collect();
    let weight = |c: &KpiChange| c.relative.map_or(f64::INFINITY, f64::abs);
    moved.sort_by(|a, b| weight(&b.1).total_cmp(&weight(&a.1)).then(a.0.cmp(b.0)));
    moved
}

fn describe_change(
    name: &str,
    change: &KpiChange,
    during: &KpiSummary,
    before: Option<&KpiSummary>,
) -> String {
    let signed = |relative: f64| format!("{:+.0}%", relative * 100.0);
    let (label, now, was) = match name {
        "p99_ms" => (
            "p99 latency",
            during
                .p99_ms
                .map_or("-".to_string(), |v| format!("{v:.0} ms")),
            before
                .and_then(|b| b.p99_ms)
                .map_or("-".to_string(), |v| format!("{v:.0} ms")),
        ),
        "error_5xx_rate" => (
            "5xx rate",
            percent(during.error_5xx_rate),
            before.map_or("-".to_string(), |b| percent(b.error_5xx_rate)),
        ),
        "error_4xx_rate" => (
            "4xx rate",
            percent(during.error_4xx_rate),
            before.map_or("-".to_string(), |b| percent(b.error_4xx_rate)),
        ),
        _ => (
            "requests per window",
            per_window(during.requests_per_window),
            before.map_or("-".to_string(), |b| per_window(b.requests_per_window)),
        ),
    };
    match change.relative {
        Some(relative) => format!("{label} {} ({was} to {now})", signed(relative)),
        None => format!("{label} {was} to {now}"),
    }
}

fn per_window(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.2}")
    } else if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn delivery_text(text: &mut String, delivery: &EngineReport) {
    let _ = writeln!(
        text,
        "  delivery          {:>10} changes, {} unrouted, {} folded into groups, {} queued, {} skipped as already queued or delivered",
        delivery.changes, delivery.unrouted, delivery.grouped, delivery.queued, delivery.replayed
    );
    for r in &delivery.receivers {
        let _ = writeln!(
            text,
            "    {}: {} applied, {} skipped, {} retried, {} minimal fallbacks, {} dead-lettered, {} template failures, {} recovered, {} left in the outbox",
            r.name, r.applied, r.skipped, r.retried, r.fallbacks, r.dead_lettered, r.render_failures, r.recovered, r.pending
        );
        if let Some(reason) = &r.gave_up {
            let _ = writeln!(
                text,
                "    {}: gave up for this run: {}",
                r.name,
                clean(reason)
            );
        }
    }
    for error in &delivery.store_errors {
        let _ = writeln!(text, "  error: {}", clean(error));
    }
}

fn group_text(finding: &Finding) -> String {
    if finding.group.is_empty() {
        return "(all events)".to_string();
    }
    finding
        .group
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k}={}", cut(s, 60)),
            None => format!("{k}=-"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn measure_text(finding: &Finding) -> String {
    let events = |n: u64| {
        if n == 1 {
            "1 event".to_string()
        } else {
            format!("{n} events")
        }
    };
    if let (Some(ratio), Some(total)) = (finding.ratio, finding.total) {
        return format!(
            "{} of {} ({:.1}%)",
            finding.count,
            events(total),
            ratio * 100.0
        );
    }
    if let Some(distinct) = finding.distinct {
        return format!("{distinct} distinct values in {}", events(finding.count));
    }
    if let Some(patterns) = &finding.patterns {
        let names: Vec<String> = patterns.iter().map(|(n, c)| format!("{n} x{c}")).collect();
        return format!("{}: {}", events(finding.count), names.join(", "));
    }
    events(finding.count)
}

/// Returns a count with its noun, such as `1 finding` or `2 findings`.
pub fn counted(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("1 {singular}")
    } else {
        format!("{count} {plural}")
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_one_finding() {
        let counts = RunCounts {
            repeated_findings: 1,
            ..RunCounts::default()
        };
        let report = DeliveryReport {
            changes: [("opened".to_string(), 1)].into_iter().collect(),
            ..DeliveryReport::default()
        };
        let text = Console::summary_text(&counts, &report);
        assert!(
            text.contains("  lifecycle                  1 opened, 0 updated, 0 resolved, 0 reopened; 1 finding repeated a reported state\n"),
            "{text}"
        );
        let counts = RunCounts {
            repeated_findings: 2,
            ..counts
        };
        let text = Console::summary_text(&counts, &report);
        assert!(
            text.contains("; 2 findings repeated a reported state\n"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod impact_tests {
    use super::*;

    fn impact(change: serde_json::Value, share: serde_json::Value) -> Impact {
        serde_json::from_value(serde_json::json!({
            "kpi_window_ms": 60000, "relative_error": 0.01,
            "routes": [{"service": "accounts", "route": "POST /login",
                "during": {"requests": 360, "requests_per_window": 72.0, "errors_4xx": 60, "errors_5xx": 1,
                    "error_4xx_rate": 0.1667, "error_5xx_rate": 0.0028, "p99_ms": 130.0,
                    "request_bytes": 0, "response_bytes": 0},
                "baseline": {"requests": 1800, "requests_per_window": 60.0, "errors_4xx": 0, "errors_5xx": 2,
                    "error_4xx_rate": 0.0, "error_5xx_rate": 0.0011, "p99_ms": 125.0,
                    "request_bytes": 0, "response_bytes": 0},
                "baseline_windows": 30, "change": change, "from_group": share,
                "correlation": {"windows": 30}, "series": []}]
        }))
        .unwrap()
    }

    #[test]
    fn finding_text_escapes_hidden_characters() {
        let mut finding: Finding = serde_json::from_value(serde_json::json!({
            "rule_id": "auth-failure-burst", "title": "Failed logins\u{200b}",
            "fingerprint": "0123456789abcdef0123456789abcdef", "phase": "final",
            "kind": "threshold", "severity": "high", "stages": [], "tags": [],
            "service": "accounts\u{200b}", "group": {"client": "203.0.113.9\u{202e}"},
            "window": {"start": "2025-06-02T08:40:00Z", "end": "2025-06-02T08:45:00Z"},
            "condition": "count >= 20", "count": 20,
            "first_seen": "2025-06-02T08:40:06.054Z", "last_seen": "2025-06-02T08:44:00.000Z",
            "evidence": [{"time": "2025-06-02T08:40:06.054Z", "method": "POST",
                "path": "/lo\u{2066}gin\n[final] fake", "status": 401,
                "client": "203.0.113.9\u{202e}"}]
        }))
        .unwrap();
        let change = serde_json::json!({"error_4xx_rate": {"absolute": 0.1667}});
        let mut impact = impact(change, serde_json::Value::Null);
        impact.routes[0].route = "POST /lo\u{2066}gin\u{200b}".to_string();
        finding.impact = Some(impact);

        let text = Console::default().finding_text(&finding);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            "[final] HIGH     auth-failure-burst  client=203.0.113.9\\u{202e}  2025-06-02T08:40:00Z .. 2025-06-02T08:45:00Z"
        );
        assert_eq!(
            lines[1],
            "        Failed logins\\u{200b}: 20 events (count >= 20)"
        );
        assert_eq!(
            lines[2],
            "        e.g. 2025-06-02T08:40:06.054Z 203.0.113.9\\u{202e} POST /lo\\u{2066}gin\\u{a}[final] fake -> 401"
        );
        assert_eq!(
            lines[3],
            "        impact: on POST /lo\\u{2066}gin\\u{200b} during the finding, 4xx rate 0% to 17%"
        );
    }

    #[test]
    fn impact_line_names_a_rise_from_zero_and_the_groups_own_errors() {
        let change = serde_json::json!({
            "error_4xx_rate": {"absolute": 0.1667},
            "error_5xx_rate": {"absolute": 0.0017, "relative": 1.5},
            "requests_per_window": {"absolute": 12.0, "relative": 0.2},
            "p99_ms": {"absolute": 5.0, "relative": 0.04}
        });
        let share = serde_json::json!({"field": "client", "value": "203.0.113.9", "requests": 60,
            "errors": 60, "errors_5xx": 0, "requests_share": 0.1667, "errors_share": 0.9836});
        assert_eq!(
            impact_line(&impact(change, share)).unwrap(),
            "impact: on POST /login during the finding, 4xx rate 0% to 17%; 98% of its errors from client=203.0.113.9"
        );
    }

    #[test]
    fn summary_counts_skipped_records_only_when_any() {
        let report = DeliveryReport::default();
        let mut counts = RunCounts {
            records: 41_216,
            decoded: 41_215,
            dead_lettered: 1,
            ..RunCounts::default()
        };
        let text = Console::summary_text(&counts, &report);
        assert!(!text.contains("skipped"), "{text}");
        counts.skipped = 25;
        let text = Console::summary_text(&counts, &report);
        assert!(
            text.contains("\n  skipped                   25  (records after an unreadable one in an Avro block"),
            "{text}"
        );
    }

    #[test]
    fn impact_line_skips_trivial_changes_and_keeps_small_rates() {
        let change = serde_json::json!({
            "error_5xx_rate": {"absolute": 0.0019},
            "requests_per_window": {"absolute": -0.5, "relative": -0.01},
            "error_4xx_rate": {"absolute": 0.0008, "relative": 0.12}
        });
        assert_eq!(
            impact_line(&impact(change, serde_json::Value::Null)).unwrap(),
            "impact: on POST /login during the finding, 4xx rate +12% (0% to 17%)"
        );
        assert_eq!(percent(0.0019), "0.19%");
        assert_eq!(percent(0.047), "4.7%");
        assert_eq!(percent(0.1667), "17%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn impact_line_without_baseline_gives_levels() {
        let mut impact = impact(serde_json::json!({}), serde_json::Value::Null);
        impact.routes[0].baseline = None;
        impact.routes[0].baseline_windows = 0;
        assert_eq!(
            impact_line(&impact).unwrap(),
            "impact: 360 requests on POST /login during the finding, p99 latency 130 ms, error rate 17%, no baseline to compare with"
        );
        impact.routes[0].baseline_windows = 30;
        impact.routes[0].baseline = Some(impact.routes[0].during.clone());
        assert_eq!(
            impact_line(&impact).unwrap(),
            "impact: on POST /login during the finding, no change of 5% or more against a baseline of 30 windows"
        );
        impact.routes[0].baseline_windows = 1;
        assert_eq!(
            impact_line(&impact).unwrap(),
            "impact: on POST /login during the finding, no change of 5% or more against a baseline of 1 window"
        );
    }

    #[test]
    fn impact_line_names_a_related_other_route() {
        let change = serde_json::json!({"p99_ms": {"absolute": 5.0, "relative": 0.04}});
        let mut impact = impact(change, serde_json::Value::Null);
        let other = |route: &str, related: bool, relative: f64, r: f64| {
            serde_json::from_value(serde_json::json!({
                "service": "accounts", "route": route,
                "during": {"requests": 100, "requests_per_window": 20.0, "errors_4xx": 1, "errors_5xx": 0,
                    "error_4xx_rate": 0.01, "error_5xx_rate": 0.0, "p99_ms": 40.0,
                    "request_bytes": 0, "response_bytes": 0},
                "baseline": {"requests": 600, "requests_per_window": 20.0, "errors_4xx": 6, "errors_5xx": 0,
                    "error_4xx_rate": 0.01, "error_5xx_rate": 0.0, "p99_ms": 16.0,
                    "request_bytes": 0, "response_bytes": 0},
                "baseline_windows": 30,
                "change": {"p99_ms": {"absolute": 24.0, "relative": relative}},
                "correlation": {"windows": 30, "p99_ms": r}, "rose": true, "related": related
            }))
            .unwrap()
        };
        impact.other_routes = vec![other("GET /me", false, 2.0, 0.05)];
        assert_eq!(
            impact_line(&impact).unwrap(),
            "impact: on POST /login during the finding, no change of 5% or more against a baseline of 30 windows"
        );

        impact
            .other_routes
            .push(other("POST /token", true, 1.5, 0.91));
        assert_eq!(
            impact_line(&impact).unwrap(),
            "impact: on POST /login during the finding, no change of 5% or more against a baseline of 30 windows; also p99 latency +150% (16 ms to 40 ms) on POST /token, correlation 0.91 with the matches"
        );
    }
}
