//! Impact: how a finding moved its routes' KPIs, as carried in the finding's JSON.
//!
//! For every route a finding touched, [`RouteImpact`] compares the KPIs during the finding's
//! windows with a trailing baseline of the same route that leaves out windows in which the
//! route had open findings, so an ongoing attack never becomes its own baseline. It also says
//! how much of the route's traffic and errors came from the finding's group (the offending
//! client or principal), and how the rule's match count per KPI window correlates with each
//! KPI over a trailing horizon. The per-window series it rests on travels along, so charts and
//! sparklines can be drawn wherever the finding goes.
//!
//! Latency quantiles come from a DDSketch with a stated relative error: a reported p99 is
//! within that fraction of the true p99 of the same events. Counts and rates are exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The impact of one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// The KPI window size in milliseconds.
    pub kpi_window_ms: u64,
    /// The relative error bound of every latency quantile, such as 0.01 for 1%.
    pub relative_error: f64,
    /// One entry per affected route, the most affected (by matches) first.
    pub routes: Vec<RouteImpact>,
    /// Other routes of the affected routes' services, checked for a rise in their KPIs during
    /// the finding and for how closely their KPIs follow the rule's matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_routes: Vec<OtherRoute>,
}

/// The impact on one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteImpact {
    pub service: String,
    pub route: String,
    /// The KPIs over the KPI windows that overlap the finding's window.
    pub during: KpiSummary,
    /// The KPIs over the trailing baseline windows; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<KpiSummary>,
    /// How many windows the baseline rests on.
    pub baseline_windows: usize,
    /// True when the rule's own route-wide findings had claimed every baseline window, so the
    /// baseline is made of them: the rule fires all the time on this route.
    #[serde(default, skip_serializing_if = "is_false")]
    pub baseline_of_own_findings: bool,
    /// KPI name to its change from the baseline; empty without a baseline.
    pub change: BTreeMap<String, KpiChange>,
    /// The share of the route's traffic in the finding's windows that came from its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_group: Option<GroupShare>,
    /// Correlation of the rule's match count per window with each KPI.
    pub correlation: Correlation,
    /// The per-window series behind the numbers, oldest first, for charts.
    pub series: Vec<SeriesPoint>,
}

/// Another route of a finding's services, checked for a rise in its KPIs during the finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherRoute {
    pub service: String,
    pub route: String,
    /// The KPIs over the KPI windows that overlap the finding's window.
    pub during: KpiSummary,
    /// The KPIs over the route's trailing baseline windows; absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<KpiSummary>,
    pub baseline_windows: usize,
    /// True when the baseline is made of windows claimed by the rule's own route-wide findings.
    #[serde(default, skip_serializing_if = "is_false")]
    pub baseline_of_own_findings: bool,
    /// KPI name to its change from the baseline; empty without a baseline.
    pub change: BTreeMap<String, KpiChange>,
    /// The share of the route's traffic in the finding's windows that came from its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_group: Option<GroupShare>,
    /// Correlation of the rule's match count per window on the finding's routes with this
    /// route's KPIs.
    pub correlation: Correlation,
    /// Whether p99 latency, the 4xx rate or the 5xx rate rose by [`OTHER_ROUTE_RISE`] or more
    /// (an error rate also by at least one percentage point).
    pub rose: bool,
    /// Whether a KPI that rose correlates with the rule's matches by [`RELATED_CORRELATION`]
    /// or more, so the rise followed the attack's matches over the horizon.
    pub related: bool,
}

/// The relative rise of another route's KPI from which it counts as risen.
pub const OTHER_ROUTE_RISE: f64 = 0.5;

/// The correlation from which another route's rise counts as following a rule's matches.
pub const RELATED_CORRELATION: f64 = 0.7;

/// The KPIs of a route over some windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiSummary {
    pub requests: u64,
    /// Mean requests per KPI window.
    pub requests_per_window: f64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub error_4xx_rate: f64,
    pub error_5xx_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// A KPI's change from its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KpiChange {
    /// During minus baseline, in the KPI's unit.
    pub absolute: f64,
    /// `absolute / baseline`; absent when the baseline is zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
}

/// The traffic of a finding's group on a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupShare {
    /// The field that names the group's members: `client` or `principal`.
    pub field: String,
    /// The group's value of that field.
    pub value: String,
    pub requests: u64,
    /// 4xx and 5xx responses to the group.
    pub errors: u64,
    pub errors_5xx: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_5xx_share: Option<f64>,
}

/// Pearson correlations over the trailing horizon; a coefficient is absent when fewer than the
/// configured minimum of windows have data, or when a series is constant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Correlation {
    /// The windows the coefficients rest on.
    pub windows: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// One KPI window of a route, with the rule's matches in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Window start, RFC 3339 UTC.
    pub start: String,
    /// Window start in milliseconds since the epoch.
    pub start_ms: i64,
    /// The rule's matching events on this route in the window.
    pub matches: u64,
    pub requests: u64,
    /// 4xx and 5xx responses over requests; 0 without requests.
    pub error_rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Whether the window overlaps the finding's window.
    pub in_finding: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}
