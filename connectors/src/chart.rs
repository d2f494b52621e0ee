//! Impact charts: a finding's effect on a route, drawn as a PNG image or as text.
//!
//! A [`RouteImpact`] carries one point per KPI window of the route: the rule's matches, the
//! request count, the error rate and the p99 latency, and whether the window overlaps the
//! finding. [`render_png`] draws that series as two stacked panels over one UTC time axis: the
//! matches per window on top, the p99 latency (left axis, ms) and the error rate (right axis,
//! %) below, with the finding's windows shaded in both. [`text_chart`] shows the same series as
//! sparklines for receivers that take only text.
//!
//! Rendering is deterministic: the text is drawn with the DejaVu Sans font embedded in this
//! crate (see `assets/DejaVuSans-LICENSE.txt`), never with a system font, and the PNG encoder
//! runs with fixed settings, so one input gives the same PNG bytes on every run. NOTE: equal
//! bytes across CPU architectures are untested, because the glyph rasterizer computes in
//! floating point.
//!
//! A window without requests has no error rate, and a window without latency samples has no
//! p99. Both appear as gaps rather than as zeros, because a zero would read as a healthy
//! window.

mod draw;
mod text;

use feedloop_pipeline::impact::RouteImpact;

pub use self::draw::render_png;
pub use self::text::{sparkline, text_chart, MAX_TEXT_COLUMNS};

/// The chart width in pixels that suits Slack and Jira previews.
pub const DEFAULT_WIDTH: u32 = 800;

/// The chart height in pixels that suits Slack and Jira previews.
pub const DEFAULT_HEIGHT: u32 = 400;

/// The smallest width [`render_png`] draws, in pixels; below it the labels overlap.
pub const MIN_WIDTH: u32 = 320;

/// The smallest height [`render_png`] draws, in pixels; below it the labels overlap.
pub const MIN_HEIGHT: u32 = 160;

/// The largest width or height [`render_png`] draws, in pixels, which bounds its memory use.
pub const MAX_SIDE: u32 = 4_096;

/// The window length assumed when a series has a single window, in milliseconds.
///
/// NOTE: a [`RouteImpact`] does not carry the KPI window size, which lives on the enclosing
/// `Impact`, so it is taken from the spacing of the window starts. A series of one window has
/// no spacing, and its bar is drawn one minute wide whatever the real window size is.
const SINGLE_WINDOW_MS: i64 = 60_000;

/// The reason a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The requested image size is outside the supported range.
    #[error(
        "invalid chart size {width}x{height}: use {MIN_WIDTH}x{MIN_HEIGHT} to \
         {MAX_SIDE}x{MAX_SIDE} pixels, such as {DEFAULT_WIDTH}x{DEFAULT_HEIGHT}"
    )]
    InvalidSize {
        /// The requested width in pixels.
        width: u32,
        /// The requested height in pixels.
        height: u32,
    },
    /// The route's series has no windows, so there is nothing to draw.
    #[error("route `{route}` has no KPI windows to chart")]
    NoWindows {
        /// The route's template.
        route: String,
    },
    /// The embedded font could not be loaded.
    #[error("failed to load the embedded chart font: {0}")]
    Font(String),
    /// Drawing failed.
    #[error("failed to draw the chart: {0}")]
    Draw(String),
    /// Encoding the drawn image as PNG failed.
    #[error("failed to encode the chart as PNG: {0}")]
    Encode(String),
}

/// One KPI window as the charts show it.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    start_ms: i64,
    end_ms: i64,
    matches: f64,
    /// Absent when the window had no latency samples.
    p99_ms: Option<f64>,
    /// Absent when the window had no requests.
    error_percent: Option<f64>,
    in_finding: bool,
}

/// A route's windows in time order, with the window length they were measured over.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    windows: Vec<Window>,
    window_ms: i64,
}

impl Series {
    /// Builds the windows of a route, oldest first. Non-finite values become gaps.
    fn from_route(route: &RouteImpact) -> Series {
        let mut points: Vec<_> = route.series.iter().collect();
        points.sort_by_key(|point| point.start_ms);
        let window_ms = points
            .windows(2)
            .map(|pair| pair[1].start_ms - pair[0].start_ms)
            .filter(|gap| *gap > 0)
            .min()
            .unwrap_or(SINGLE_WINDOW_MS);
        let windows = points
            .into_iter()
            .map(|point| Window {
                start_ms: point.start_ms,
                end_ms: point.start_ms.saturating_add(window_ms),
                matches: point.matches as f64,
                p99_ms: point.p99_ms.filter(|value| value.is_finite()),
                error_percent: Some(point.error_rate * 100.0)
                    .filter(|value| point.requests > 0 && value.is_finite()),
                in_finding: point.in_finding,
            })
            .collect();
        Series { windows, window_ms }
    }

    /// Returns the time spans of consecutive windows that overlap the finding.
    fn finding_spans(&self) -> Vec<(i64, i64)> {
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for window in self.windows.iter().filter(|window| window.in_finding) {
            match spans.last_mut() {
                Some(last) if last.1 >= window.start_ms => last.1 = last.1.max(window.end_ms),
                _ => spans.push((window.start_ms, window.end_ms)),
            }
        }
        spans
    }

    /// Returns the runs of adjacent windows that have a value, as (window middle, value)
    /// points, so a line breaks at every gap instead of bridging it.
    fn runs(&self, value: impl Fn(&Window) -> Option<f64>) -> Vec<Vec<(i64, f64)>> {
        let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
        let mut previous_end: Option<i64> = None;
        for window in &self.windows {
            let Some(y) = value(window) else {
                previous_end = None;
                continue;
            };
            let point = (window.start_ms + self.window_ms / 2, y);
            match (runs.last_mut(), previous_end) {
                (Some(run), Some(end)) if end >= window.start_ms => run.push(point),
                _ => runs.push(vec![point]),
            }
            previous_end = Some(window.end_ms);
        }
        runs
    }
}

/// Formats a value with at most three significant decimals, without trailing zeros: `480`,
/// `12.5`, `0.25`.
fn format_value(value: f64) -> String {
    let decimals = match value.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Formats a window length in milliseconds as a short duration: `1m`, `30s`, `250ms`, `1h`.
fn format_window(ms: i64) -> String {
    match ms {
        ms if ms > 0 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms > 0 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms > 0 && ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use feedloop_pipeline::impact::{Correlation, KpiSummary, RouteImpact, SeriesPoint};

    use super::*;

    /// The start of the fixture's first window: 2026-12-04T10:00:00Z.
    pub(crate) const START_MS: i64 = 1_796_378_400_000;

    /// Returns a route with one point per `(matches, p99_ms, error_rate, in_finding)`, one
    /// minute apart, each window with 1000 requests.
    pub(crate) fn route_with(points: &[(u64, Option<f64>, f64, bool)]) -> RouteImpact {
        let series = points
            .iter()
            .enumerate()
            .map(|(i, &(matches, p99_ms, error_rate, in_finding))| {
                let start_ms = START_MS + i as i64 * 60_000;
                SeriesPoint {
                    start: feedloop_pipeline::finding::format_seconds(start_ms),
                    start_ms,
                    matches,
                    requests: 1_000,
                    error_rate,
                    p99_ms,
                    in_finding,
                }
            })
            .collect();
        RouteImpact {
            service: "accounts".into(),
            route: "POST /login".into(),
            during: KpiSummary::default(),
            baseline: None,
            baseline_windows: 0,
            baseline_of_own_findings: false,
            change: BTreeMap::new(),
            from_group: None,
            correlation: Correlation::default(),
            series,
        }
    }

    /// Returns a credential-stuffing-like route: 40 windows, matches rising to 300 during
    /// windows 20 to 29 (the finding) while p99 rises from 120 ms to 480 ms.
    pub(crate) fn attack_route() -> RouteImpact {
        let points: Vec<(u64, Option<f64>, f64, bool)> = (0..40u64)
            .map(|i| {
                let in_finding = (20..30).contains(&i);
                let (matches, p99, errors) = if in_finding {
                    let step = (i - 19) as f64;
                    (30 * (i - 19), 120.0 + 36.0 * step, 0.01 + 0.012 * step)
                } else {
                    (i % 3, 118.0 + (i % 5) as f64, 0.01)
                };
                (matches, Some(p99), errors, in_finding)
            })
            .collect();
        route_with(&points)
    }

    #[test]
    fn series_infers_window_and_gaps() {
        let mut route = route_with(&[
            (1, Some(100.0), 0.5, false),
            (2, None, 0.25, true),
            (3, Some(f64::NAN), 0.0, true),
        ]);
        route.series[2].requests = 0;
        route.series.swap(0, 2);
        let series = Series::from_route(&route);
        assert_eq!(series.window_ms, 60_000);
        let starts: Vec<i64> = series.windows.iter().map(|w| w.start_ms).collect();
        assert_eq!(starts, [START_MS, START_MS + 60_000, START_MS + 120_000]);
        assert_eq!(series.windows[0].error_percent, Some(50.0));
        assert_eq!(series.windows[1].p99_ms, None);
        assert_eq!(series.windows[2].p99_ms, None, "NaN becomes a gap");
        assert_eq!(series.windows[2].error_percent, None, "no requests");
        assert_eq!(
            series.finding_spans(),
            [(START_MS + 60_000, START_MS + 180_000)]
        );
        assert_eq!(
            series.runs(|w| w.p99_ms),
            [vec![(START_MS + 30_000, 100.0)]]
        );
    }

    #[test]
    fn series_breaks_runs_at_missing_windows() {
        let mut route = route_with(&[(1, None, 0.0, false); 3]);
        route.series[2].start_ms += 60_000;
        let series = Series::from_route(&route);
        let runs = series.runs(|w| Some(w.matches));
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].len(), 2);
        assert_eq!(runs[1], [(START_MS + 210_000, 1.0)]);
    }

    #[test]
    fn format_value_trims_decimals() {
        assert_eq!(format_value(480.0), "480");
        assert_eq!(format_value(479.6), "480");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(0.0), "0");
    }

    #[test]
    fn format_window_picks_unit() {
        assert_eq!(format_window(60_000), "1m");
        assert_eq!(format_window(300_000), "5m");
        assert_eq!(format_window(3_600_000), "1h");
        assert_eq!(format_window(30_000), "30s");
        assert_eq!(format_window(1_500), "1500ms");
    }
}
