//! The console sink: one readable block per finding, and the run summary.

use std::fmt::Write as _;

use feedloop_pipeline::{Finding, Phase, Position, RunCounts};

use super::DeliveryReport;

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
        let mut text = String::new();
        let phase = match finding.phase {
            Phase::Early => "early",
            Phase::Final => "final",
        };
        let group = group_text(finding);
        let _ = write!(
            text,
            "[{phase}] {severity:<8} {rule}  {group}  {start} .. {end}\n        {title}: {measure} ({condition})",
            severity = finding.severity.as_str().to_uppercase(),
            rule = finding.rule_id,
            start = finding.window.start,
            end = finding.window.end,
            title = finding.title,
            measure = measure_text(finding),
            condition = finding.condition,
        );
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
            let _ = write!(
                text,
                "\n        e.g. {} {} {} {} -> {}",
                first.time,
                first.client,
                first.method,
                cut(&format!("{}{query}", first.path), 100),
                status
            );
            if let Some(matched) = &first.matched {
                let _ = write!(text, " [{} in {}]", matched.pattern, matched.field);
            }
        }
        text.push('\n');
        text
    }

    /// Returns the run summary.
    pub fn summary_text(counts: &RunCounts, report: &DeliveryReport) -> String {
        let mut text = String::new();
        let (early, total_final) = report.totals();
        let _ = writeln!(text, "\nfeedloop run summary");
        let _ = writeln!(text, "  records read      {:>10}", counts.records);
        let _ = writeln!(text, "  decoded           {:>10}", counts.decoded);
        let _ = writeln!(text, "  dead-lettered     {:>10}", counts.dead_lettered);
        let _ = writeln!(text, "  late              {:>10}", counts.late);
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
        if !report.dead_letter_samples.is_empty() {
            let _ = writeln!(text, "  first dead letters:");
            for letter in &report.dead_letter_samples {
                let position = match &letter.position {
                    Position::Line(line) => format!("line {line}"),
                    Position::Offset { partition, offset } => {
                        format!("partition {partition} offset {offset}")
                    }
                };
                let _ = writeln!(
                    text,
                    "    {} {}: {}",
                    letter.source,
                    position,
                    cut(&letter.error, 160)
                );
            }
        }
        for hook in &report.webhooks {
            let _ = writeln!(
                text,
                "  webhook {}: {} delivered, {} retried, {} failed, {} dropped",
                hook.url, hook.delivered, hook.retried, hook.failed, hook.dropped
            );
        }
        for error in &report.write_errors {
            let _ = writeln!(text, "  error: {error}");
        }
        text
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
    if let (Some(ratio), Some(total)) = (finding.ratio, finding.total) {
        return format!(
            "{} of {} events ({:.1}%)",
            finding.count,
            total,
            ratio * 100.0
        );
    }
    if let Some(distinct) = finding.distinct {
        return format!("{distinct} distinct values in {} events", finding.count);
    }
    if let Some(patterns) = &finding.patterns {
        let names: Vec<String> = patterns.iter().map(|(n, c)| format!("{n} x{c}")).collect();
        return format!("{} events: {}", finding.count, names.join(", "));
    }
    format!("{} events", finding.count)
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars).collect();
    out.push('…');
    out
}
