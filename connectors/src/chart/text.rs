//! Text charts: sparklines of a route's KPI windows for receivers that take only text.

use std::fmt::Write as _;

use feedloop_pipeline::finding::format_seconds;
use feedloop_pipeline::impact::RouteImpact;

use super::{format_value, format_window, Series, Window};
use crate::delivery::render::clean;

/// The eight levels of a sparkline, lowest first.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The maximum sparkline columns of a text chart. A longer series is shown in buckets of
/// several windows each, so a line stays readable in a chat message.
pub const MAX_TEXT_COLUMNS: usize = 60;

/// The width of the row labels of a text chart.
const LABEL_WIDTH: usize = 8;

/// Returns a sparkline with one character per value, scaled from the minimum to the maximum
/// of the finite values.
///
/// `None` and non-finite values become a space. A series whose finite values are all equal is
/// drawn at the lowest level, so a flat line never looks like a peak.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
    let min = finite().fold(f64::INFINITY, f64::min);
    let max = finite().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|value| match value {
            Some(v) if v.is_finite() && max > min => {
                let level = ((v - min) / (max - min) * 7.0).round() as usize;
                LEVELS[level.min(7)]
            }
            Some(v) if v.is_finite() => LEVELS[0],
            _ => ' ',
        })
        .collect()
}

/// Returns a few lines that chart a route's KPI windows. The first line names the route and
/// the time span in UTC. Sparklines of the rule's matches, the p99 latency and the error rate
/// follow, each with its range and unit, and a last row marks the finding's windows with `^`.
///
/// A series longer than [`MAX_TEXT_COLUMNS`] windows is shown in buckets, each column the
/// maximum of its windows. The service and route come from traffic, so they are escaped by
/// [`clean`]: a newline in them cannot split the first line or fake a chart row. Characters
/// that a medium reserves, such as backticks, are the caller's to escape.
pub fn text_chart(route: &RouteImpact) -> String {
    let series = Series::from_route(route);
    let name = format!("{} on {}", clean(&route.route), clean(&route.service));
    let (Some(first), Some(last)) = (series.windows.first(), series.windows.last()) else {
        return format!("{name}: no KPI windows");
    };
    let columns = bucket(&series.windows);
    let per_column = series.windows.len().div_ceil(columns.len());

    let mut out = format!(
        "{name}: {} of {}, {} to {}",
        count(series.windows.len(), "window"),
        format_window(series.window_ms),
        format_seconds(first.start_ms),
        format_seconds(last.end_ms),
    );
    if per_column > 1 {
        write!(out, ", each column the maximum of {per_column} windows")
            .expect("writing to a String cannot fail");
    }

    let matches: Vec<Option<f64>> = columns.iter().map(|c| Some(c.matches)).collect();
    let p99: Vec<Option<f64>> = columns.iter().map(|c| c.p99_ms).collect();
    let errors: Vec<Option<f64>> = columns.iter().map(|c| c.error_percent).collect();
    let marks: String = columns
        .iter()
        .map(|c| if c.in_finding { '^' } else { ' ' })
        .collect();
    let in_finding = series.windows.iter().filter(|w| w.in_finding).count();
    // Ranges come from the windows themselves, because a column keeps only its maximum.
    let of_windows = |value: fn(&Window) -> Option<f64>| -> Vec<Option<f64>> {
        series.windows.iter().map(value).collect()
    };

    let rows = [
        (
            "matches",
            sparkline(&matches),
            range(&of_windows(|w| Some(w.matches)), "", " per window"),
        ),
        (
            "p99",
            sparkline(&p99),
            range(&of_windows(|w| w.p99_ms), " ms", ""),
        ),
        (
            "errors",
            sparkline(&errors),
            range(&of_windows(|w| w.error_percent), "%", ""),
        ),
        (
            "finding",
            marks,
            format!("{} in the finding", count(in_finding, "window")),
        ),
    ];
    for (label, line, note) in rows {
        let row = format!("{label:<LABEL_WIDTH$}{line}  {note}");
        write!(out, "\n{}", row.trim_end()).expect("writing to a String cannot fail");
    }
    out
}

/// Returns a count with its noun, such as `1 window` or `40 windows`.
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Returns `min to max` of the values with a unit after each number, or a note that there are
/// none.
fn range(values: &[Option<f64>], unit: &str, suffix: &str) -> String {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return "no data".to_string();
    }
    let min = present.iter().copied().fold(f64::INFINITY, f64::min);
    let max = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{}{unit} to {}{unit}{suffix}",
        format_value(min),
        format_value(max)
    )
}

/// Folds the windows into at most [`MAX_TEXT_COLUMNS`] columns, each the maximum of its
/// windows' values, and in the finding when any of them is.
fn bucket(windows: &[Window]) -> Vec<Window> {
    let per_column = windows.len().div_ceil(MAX_TEXT_COLUMNS).max(1);
    windows
        .chunks(per_column)
        .map(|chunk| {
            let max_of =
                |value: fn(&Window) -> Option<f64>| chunk.iter().filter_map(value).reduce(f64::max);
            Window {
                start_ms: chunk[0].start_ms,
                end_ms: chunk[chunk.len() - 1].end_ms,
                matches: max_of(|w| Some(w.matches)).unwrap_or(0.0),
                p99_ms: max_of(|w| w.p99_ms),
                error_percent: max_of(|w| w.error_percent),
                in_finding: chunk.iter().any(|w| w.in_finding),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::tests::{attack_route, route_with};

    #[test]
    fn sparkline_scales_min_to_max() {
        let values: Vec<Option<f64>> = (0..8).map(|v| Some(v as f64)).collect();
        assert_eq!(sparkline(&values), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[Some(120.0), Some(480.0), Some(300.0)]), "▁█▅");
    }

    #[test]
    fn sparkline_leaves_gaps_for_none() {
        assert_eq!(
            sparkline(&[Some(0.0), None, Some(10.0), Some(f64::NAN), Some(5.0)]),
            "▁ █ ▅"
        );
        assert_eq!(sparkline(&[None, None]), "  ");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn sparkline_draws_constant_series_low() {
        assert_eq!(sparkline(&[Some(7.0); 4]), "▁▁▁▁");
        assert_eq!(sparkline(&[Some(0.0), None, Some(0.0)]), "▁ ▁");
        assert_eq!(sparkline(&[Some(f64::INFINITY), Some(1.0)]), " ▁");
    }

    #[test]
    fn text_chart_shows_ranges_and_units() {
        let route = route_with(&[
            (0, Some(120.0), 0.01, false),
            (150, Some(300.0), 0.05, true),
            (300, None, 0.125, true),
            (2, Some(121.5), 0.01, false),
        ]);
        assert_eq!(
            text_chart(&route),
            "POST /login on accounts: 4 windows of 1m, 2026-12-04T10:00:00Z to 2026-12-04T10:04:00Z\n\
             matches ▁▅█▁  0 to 300 per window\n\
             p99     ▁█ ▁  120 ms to 300 ms\n\
             errors  ▁▃█▁  1% to 12.5%\n\
             finding  ^^   2 windows in the finding"
        );
    }

    #[test]
    fn text_chart_notes_missing_data() {
        let mut route = route_with(&[(0, None, 0.0, false), (0, None, 0.0, false)]);
        for point in &mut route.series {
            point.requests = 0;
        }
        let chart = text_chart(&route);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines[1], "matches ▁▁  0 to 0 per window");
        assert_eq!(lines[2], "p99         no data");
        assert_eq!(lines[3], "errors      no data");
        assert_eq!(lines[4], "finding     0 windows in the finding");
        route.series.clear();
        assert_eq!(
            text_chart(&route),
            "POST /login on accounts: no KPI windows"
        );
    }

    #[test]
    fn text_chart_escapes_route_and_service() {
        let mut route = route_with(&[(0, Some(120.0), 0.01, false), (3, Some(130.0), 0.0, true)]);
        route.route = "POST /a\nmatches ▁█ fake\u{202e}".to_string();
        route.service = "acc\nounts".to_string();
        let chart = text_chart(&route);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 5, "{chart}");
        assert_eq!(
            lines[0],
            "POST /a\\u{a}matches ▁█ fake\\u{202e} on acc\\u{a}ounts: 2 windows of 1m, 2026-12-04T10:00:00Z to 2026-12-04T10:02:00Z"
        );
        route.series.clear();
        assert_eq!(
            text_chart(&route),
            "POST /a\\u{a}matches ▁█ fake\\u{202e} on acc\\u{a}ounts: no KPI windows"
        );
    }

    #[test]
    fn text_chart_buckets_long_series() {
        let points: Vec<(u64, Option<f64>, f64, bool)> = (0..150u64)
            .map(|i| (i, Some(100.0), 0.0, i == 149))
            .collect();
        let chart = text_chart(&route_with(&points));
        let lines: Vec<&str> = chart.lines().collect();
        assert!(
            lines[0].ends_with(", each column the maximum of 3 windows"),
            "{}",
            lines[0]
        );
        let sparkline = lines[1]
            .strip_prefix("matches ")
            .unwrap()
            .split("  ")
            .next()
            .unwrap();
        assert_eq!(sparkline.chars().count(), 50);
        assert!(sparkline.ends_with('█'), "{sparkline}");
        assert!(lines[1].ends_with("0 to 149 per window"), "{}", lines[1]);
        assert!(
            lines[4].ends_with("^  1 window in the finding"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn text_chart_of_attack_marks_finding() {
        let chart = text_chart(&attack_route());
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[4],
            format!(
                "finding {}{}{}  10 windows in the finding",
                " ".repeat(20),
                "^".repeat(10),
                " ".repeat(10)
            )
        );
        assert!(lines[1].ends_with("0 to 300 per window"), "{}", lines[1]);
        assert!(lines[2].ends_with("118 ms to 480 ms"), "{}", lines[2]);
    }
}
