//! KPIs per service, route and window, and the impact each finding had on them.
//!
//! Every event adds to its route's aggregate for the KPI window it falls in ([`KpiAgg`]):
//! requests, 4xx and 5xx responses, bytes, a latency sketch, per-client and per-principal
//! counts, and the matches of every rule. The match operator sums these per batch
//! ([`KpiBatch`]), so one update per route and window leaves a batch however busy the route.
//! The updates form a differential collection whose difference type is the aggregate itself:
//! adding two aggregates merges them, so consolidating the collection sums a batch. They are
//! gathered on worker 0 in a [`KpiStore`], next to the findings, and kept for the baseline and
//! correlation horizons.
//!
//! A finding's impact ([`crate::impact::Impact`]) is computed from the store when the finding
//! reaches worker 0. An early finding sees the KPIs so far; a final one sees complete windows,
//! late events within the allowed lateness included, because the output operator waits for the
//! frontier of the KPI stream as well. Windows in which a route had findings are marked and
//! left out of later baselines, so an ongoing attack never becomes its own baseline: windows
//! of findings that name attackers (grouped by client or principal) for every rule, windows of
//! route-wide findings (a share of errors, many clients on one route) for their own rule, so
//! one noisy route-wide rule cannot empty every other rule's baseline.
//!
//! NOTE: the store lives on worker 0 only. Aggregation runs on every worker, but the store and
//! the impact computation do not scale with workers, and their memory grows with the number of
//! distinct clients per route and window over the kept horizon.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use feedloop_rules::ApiEvent;

use crate::finding::{format_seconds, Finding};
use crate::impact::{
    Correlation, GroupShare, Impact, KpiChange, KpiSummary, OtherRoute, RouteImpact, SeriesPoint,
    OTHER_ROUTE_RISE, RELATED_CORRELATION,
};

/// KPI settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KpiOptions {
    /// Compute KPIs and impact at all.
    pub enabled: bool,
    /// The KPI window size in milliseconds.
    pub window_ms: u64,
    /// Windows in a route's trailing baseline.
    pub baseline_windows: usize,
    /// Windows the correlation and the chart series look back over.
    pub horizon_windows: usize,
    /// The minimum number of windows a correlation coefficient may rest on.
    pub min_correlation_windows: usize,
    /// The latency sketch's relative error, such as 0.01.
    pub relative_error: f64,
    /// Routes reported per finding, the most matched first.
    pub max_routes: usize,
    /// Other routes of the finding's services reported when their KPIs rose; 0 turns the
    /// check off.
    pub max_other_routes: usize,
    /// Routes whose KPIs are kept at once; updates for further routes are dropped and counted,
    /// because logs without route templates make every raw path a route.
    pub max_tracked_routes: usize,
}

impl Default for KpiOptions {
    fn default() -> Self {
        KpiOptions {
            enabled: true,
            window_ms: 60_000,
            baseline_windows: 30,
            horizon_windows: 30,
            min_correlation_windows: 8,
            relative_error: 0.01,
            max_routes: 3,
            max_other_routes: 5,
            max_tracked_routes: 20_000,
        }
    }
}

impl KpiOptions {
    fn sketch(&self) -> DDSketch {
        DDSketch::new(SketchConfig::new(self.relative_error, 2048, 1.0e-9))
    }

    /// Returns the start of the KPI window holding a time.
    pub fn pane(&self, time_ms: i64) -> i64 {
        let size = self.window_ms.max(1) as i64;
        time_ms.div_euclid(size) * size
    }
}

/// The smallest absolute rise of an error rate that counts, so that one error in a thousand
/// becoming two is no rise.
pub const OTHER_ROUTE_MIN_RATE_RISE: f64 = 0.01;
/// The requests another route needs during a finding before a rise of its KPIs counts.
pub const OTHER_ROUTE_MIN_REQUESTS: u64 = 30;
/// Other routes checked per finding, the busiest during its windows first, which bounds the
/// cost of a finding on a service with many routes.
pub const OTHER_ROUTES_CHECKED: usize = 20;

/// The maximum latency counted, one day in milliseconds. Longer ones are left out of quantiles.
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;

/// Requests, errors and bytes of one identity (a client or a principal) on a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCounts {
    pub requests: u64,
    pub errors: u64,
    pub errors_5xx: u64,
}

impl IdentityCounts {
    fn add(&mut self, other: &IdentityCounts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.errors_5xx += other.errors_5xx;
    }
}

/// The aggregate of one route's events in one KPI window.
#[derive(Clone, Serialize, Deserialize)]
pub struct KpiAgg {
    pub requests: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Latencies in milliseconds; empty when the events carry none.
    pub latency: Option<DDSketch>,
    /// Counts per client, keyed by [`identity_key`] so the hot path copies no strings.
    pub clients: FxHashMap<u64, IdentityCounts>,
    /// Counts per principal, keyed by [`identity_key`].
    pub principals: FxHashMap<u64, IdentityCounts>,
    /// Matching events per rule index.
    pub matches: BTreeMap<u32, u64>,
}

impl KpiAgg {
    /// Returns the fields that order aggregates. Differential sorts updates with their differences, so
    /// aggregates need a total order; it has no meaning beyond that.
    fn order_key(&self) -> (u64, u64, u64, u64, u64, &BTreeMap<u32, u64>, usize) {
        (
            self.requests,
            self.errors_4xx,
            self.errors_5xx,
            self.request_bytes,
            self.response_bytes,
            &self.matches,
            self.latency.as_ref().map_or(0, DDSketch::count),
        )
    }
}

impl PartialEq for KpiAgg {
    fn eq(&self, other: &Self) -> bool {
        self.order_key() == other.order_key()
    }
}

impl Eq for KpiAgg {}

impl PartialOrd for KpiAgg {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KpiAgg {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

impl std::fmt::Debug for KpiAgg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KpiAgg")
            .field("requests", &self.requests)
            .field("errors_4xx", &self.errors_4xx)
            .field("errors_5xx", &self.errors_5xx)
            .field(
                "latencies",
                &self.latency.as_ref().map_or(0, DDSketch::count),
            )
            .field("clients", &self.clients.len())
            .field("matches", &self.matches)
            .finish()
    }
}

impl KpiAgg {
    fn empty() -> KpiAgg {
        KpiAgg {
            requests: 0,
            errors_4xx: 0,
            errors_5xx: 0,
            request_bytes: 0,
            response_bytes: 0,
            latency: None,
            clients: FxHashMap::default(),
            principals: FxHashMap::default(),
            matches: BTreeMap::new(),
        }
    }

    fn add_event(&mut self, event: &ApiEvent, options: &KpiOptions) {
        self.requests += 1;
        let status = event.status.unwrap_or(0);
        let (error, error_5xx) = ((400..600).contains(&status), (500..600).contains(&status));
        self.errors_4xx += u64::from((400..500).contains(&status));
        self.errors_5xx += u64::from(error_5xx);
        self.request_bytes += event.request_bytes.unwrap_or(0);
        self.response_bytes += event.response_bytes.unwrap_or(0);
        // A latency beyond a day is a broken record, and one such value would stretch the
        // sketch's bins until every quantile of the window is meaningless.
        if let Some(latency) = event
            .latency_ms
            .filter(|l| l.is_finite() && (0.0..=MAX_LATENCY_MS).contains(l))
        {
            self.latency
                .get_or_insert_with(|| options.sketch())
                .add(latency);
        }
        let counts = IdentityCounts {
            requests: 1,
            errors: u64::from(error),
            errors_5xx: u64::from(error_5xx),
        };
        add_identity(&mut self.clients, identity_key(&event.client), &counts);
        if let Some(principal) = &event.principal {
            add_identity(&mut self.principals, identity_key(principal), &counts);
        }
    }

    /// Adds another aggregate of the same route and window.
    pub fn merge(&mut self, other: &KpiAgg) {
        self.add_totals(other);
        for (key, counts) in &other.clients {
            add_identity(&mut self.clients, *key, counts);
        }
        for (key, counts) in &other.principals {
            add_identity(&mut self.principals, *key, counts);
        }
        for (rule, n) in &other.matches {
            *self.matches.entry(*rule).or_default() += n;
        }
    }

    /// Adds another aggregate's counts, bytes and latencies, leaving out its identities and
    /// matches, which summaries over several windows do not need.
    fn add_totals(&mut self, other: &KpiAgg) {
        self.requests += other.requests;
        self.errors_4xx += other.errors_4xx;
        self.errors_5xx += other.errors_5xx;
        self.request_bytes += other.request_bytes;
        self.response_bytes += other.response_bytes;
        if let Some(theirs) = &other.latency {
            match &mut self.latency {
                Some(ours) => {
                    ours.merge(theirs)
                        .expect("every sketch of a run has the same configuration");
                }
                None => self.latency = Some(theirs.clone()),
            }
        }
    }
}

impl differential_dataflow::difference::IsZero for KpiAgg {
    fn is_zero(&self) -> bool {
        self.requests == 0 && self.matches.is_empty()
    }
}

impl differential_dataflow::difference::Semigroup for KpiAgg {
    fn plus_equals(&mut self, rhs: &Self) {
        self.merge(rhs);
    }
}

fn add_identity(map: &mut FxHashMap<u64, IdentityCounts>, key: u64, counts: &IdentityCounts) {
    map.entry(key).or_default().add(counts);
}

/// Returns the 64-bit key a client or principal is counted under: SipHash, because clients
/// and principals come from traffic and a weak hash would let an attacker merge its counts
/// into someone else's. Keys live only within one run, so the hash may change with Rust.
pub fn identity_key(value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The key of a route's KPIs: service, `METHOD route`, window start.
pub type KpiKey = (String, String, i64);

/// Returns the route name KPIs use: the method and the route template.
pub fn route_name(method: &str, route: &str) -> String {
    format!("{method} {route}")
}

/// Sums one batch's events per service, route and window on the worker that read them.
///
/// Keys are looked up by reference and copied only for a service, method or route new to the
/// batch, because this runs for every event.
#[derive(Default)]
pub struct KpiBatch {
    routes: FxHashMap<String, Methods>,
}

/// A service's windows by method, then route template, then window start.
type Methods = FxHashMap<String, FxHashMap<String, BTreeMap<i64, KpiAgg>>>;

/// Returns the value of a key, inserting a default one first when missing, without copying
/// the key when it is present.
fn slot<'a, V: Default>(map: &'a mut FxHashMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

impl KpiBatch {
    /// Adds an event and the rules it matched.
    pub fn add(
        &mut self,
        event: &ApiEvent,
        matched: impl Iterator<Item = u32>,
        options: &KpiOptions,
    ) {
        let pane = options.pane(event.time_ms);
        let methods = slot(&mut self.routes, &event.service);
        let routes = slot(methods, &event.method);
        let agg = slot(routes, &event.route)
            .entry(pane)
            .or_insert_with(KpiAgg::empty);
        agg.add_event(event, options);
        for rule in matched {
            *agg.matches.entry(rule).or_default() += 1;
        }
    }

    /// Takes every aggregate of the batch.
    pub fn drain(&mut self) -> impl Iterator<Item = (KpiKey, KpiAgg)> + '_ {
        self.routes.drain().flat_map(|(service, methods)| {
            methods.into_iter().flat_map(move |(method, routes)| {
                let service = service.clone();
                routes.into_iter().flat_map(move |(route, panes)| {
                    let service = service.clone();
                    let name = route_name(&method, &route);
                    panes
                        .into_iter()
                        .map(move |(pane, agg)| ((service.clone(), name.clone(), pane), agg))
                })
            })
        })
    }
}

/// A finding's claim on a KPI window of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    rule: u32,
    /// The earliest event time at which a finding of the rule covered the window.
    known_at: i64,
    /// Whether the finding names attackers (a client or principal group) rather than a whole
    /// route: such a window is an attack window for every rule's baseline, while a route-wide
    /// finding (a share of errors, many clients on one route) only for its own rule's.
    targeted: bool,
}

/// Windows claimed on a finding's own routes, left out of its other routes' baselines: all
/// claims, and those of findings that name attackers, for when the rule fires in every window.
#[derive(Default)]
struct AttackPanes {
    all: BTreeSet<i64>,
    targeted: BTreeSet<i64>,
}

/// A route's baseline for one finding.
struct Baseline {
    summary: Option<KpiSummary>,
    /// The windows it covers, windows without traffic included.
    windows: usize,
    /// Whether it had to take back windows claimed by the rule's own route-wide findings.
    of_own_findings: bool,
}

/// Every route's KPI windows over the kept horizon, on worker 0.
pub struct KpiStore {
    options: KpiOptions,
    /// Rule id to its index, for the match counts.
    rule_index: HashMap<String, u32>,
    routes: HashMap<(String, String), BTreeMap<i64, KpiAgg>>,
    /// Windows in which a route had findings, left out of baselines.
    marked: HashMap<(String, String), BTreeMap<i64, Vec<Mark>>>,
    /// The first window each route had traffic in; a baseline never reaches before it.
    first_pane: HashMap<(String, String), i64>,
    /// How long windows are kept behind the watermark.
    retention_ms: i64,
}

impl KpiStore {
    /// Returns an empty store; `longest_rule_window_ms` sizes how long windows are kept.
    pub fn new(options: KpiOptions, rule_ids: &[String], longest_rule_window_ms: u64) -> KpiStore {
        let horizon = options.baseline_windows.max(options.horizon_windows) as i64 + 2;
        KpiStore {
            options,
            rule_index: rule_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect(),
            routes: HashMap::new(),
            marked: HashMap::new(),
            first_pane: HashMap::new(),
            retention_ms: horizon
                .saturating_mul(options.window_ms as i64)
                .saturating_add(2 * longest_rule_window_ms as i64),
        }
    }

    /// Adds an aggregate.
    /// Adds an aggregate; returns false when it was dropped because the store already tracks
    /// its limit of routes.
    pub fn absorb(&mut self, key: KpiKey, agg: &KpiAgg) -> bool {
        let (service, route, pane) = key;
        let id = (service, route);
        if !self.routes.contains_key(&id) && self.routes.len() >= self.options.max_tracked_routes {
            return false;
        }
        let (service, route) = id;
        let first = self
            .first_pane
            .entry((service.clone(), route.clone()))
            .or_insert(pane);
        *first = (*first).min(pane);
        let panes = self.routes.entry((service, route)).or_default();
        match panes.get_mut(&pane) {
            Some(existing) => existing.merge(agg),
            None => {
                panes.insert(pane, agg.clone());
            }
        }
        true
    }

    /// Drops windows older than the kept horizon behind the watermark.
    pub fn prune(&mut self, watermark: i64) {
        let keep_from = watermark.saturating_sub(self.retention_ms);
        for panes in self.routes.values_mut() {
            while panes.first_key_value().is_some_and(|(p, _)| *p < keep_from) {
                panes.pop_first();
            }
        }
        self.routes.retain(|_, panes| !panes.is_empty());
        for panes in self.marked.values_mut() {
            while panes.first_key_value().is_some_and(|(p, _)| *p < keep_from) {
                panes.pop_first();
            }
        }
        self.marked.retain(|_, panes| !panes.is_empty());
    }

    /// Returns a finding's impact, and marks its windows on its routes as attack windows for
    /// later baselines.
    pub fn impact(&mut self, finding: &Finding) -> Option<Impact> {
        let rule = *self.rule_index.get(&finding.rule_id)?;
        let start = parse_ms(&finding.window.start)?;
        let end = parse_ms(&finding.window.end)?;
        // An early finding covers the KPI windows up to the one holding its last matching
        // event: later windows of its rule window have not happened yet in event time, even
        // when events of them were read in the same batch.
        let covered_end = match finding.phase {
            crate::finding::Phase::Early => parse_ms(&finding.last_seen)
                .map(|last| (self.options.pane(last) + self.options.window_ms as i64).min(end))
                .unwrap_or(end),
            crate::finding::Phase::Final => end,
        };
        let during: Vec<i64> = self.panes_between(start, covered_end);
        let routes = self.affected_routes(finding, rule, &during);
        let impacts: Vec<RouteImpact> = routes
            .iter()
            .map(|key| self.route_impact(finding, rule, key, &during, end))
            .collect();
        let other_routes = self.other_routes(finding, rule, &routes, &during, end);
        // A mark counts for a later baseline only once event time has passed the moment the
        // finding was known (an early finding's last event, a final's window end), so every
        // baseline is the same for the same input, however the workers interleave.
        let known_at = match finding.phase {
            crate::finding::Phase::Early => parse_ms(&finding.last_seen).unwrap_or(end),
            crate::finding::Phase::Final => end,
        };
        let targeted = ["client", "principal"]
            .iter()
            .any(|field| finding.group.contains_key(*field));
        for key in routes {
            let panes = self.marked.entry(key).or_default();
            for pane in &during {
                let marks = panes.entry(*pane).or_default();
                match marks
                    .iter_mut()
                    .find(|m| m.rule == rule && m.targeted == targeted)
                {
                    Some(mark) => mark.known_at = mark.known_at.min(known_at),
                    None => marks.push(Mark {
                        rule,
                        known_at,
                        targeted,
                    }),
                }
            }
        }
        Some(Impact {
            kpi_window_ms: self.options.window_ms,
            relative_error: self.options.relative_error,
            routes: impacts,
            other_routes,
        })
    }

    fn panes_between(&self, start: i64, end: i64) -> Vec<i64> {
        let size = self.options.window_ms.max(1) as i64;
        let mut pane = self.options.pane(start);
        let mut out = Vec::new();
        while pane < end {
            out.push(pane);
            pane += size;
        }
        out
    }

    /// Returns the routes of the finding's own evidence, the most frequent first; without
    /// evidence, the routes the rule matched on during the windows, the most matched first.
    fn affected_routes(
        &self,
        finding: &Finding,
        rule: u32,
        during: &[i64],
    ) -> Vec<(String, String)> {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for event in &finding.evidence {
            let service = event.service.clone().unwrap_or_default();
            let route = route_name(&event.method, event.route.as_deref().unwrap_or(&event.path));
            *seen.entry((service, route)).or_default() += 1;
        }
        let mut from_evidence: Vec<((String, String), usize)> = seen
            .into_iter()
            .filter(|(key, _)| self.routes.contains_key(key))
            .collect();
        if !from_evidence.is_empty() {
            from_evidence.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            return from_evidence
                .into_iter()
                .take(self.options.max_routes)
                .map(|(key, _)| key)
                .collect();
        }
        self.most_matched_routes(finding, rule, during)
    }

    fn most_matched_routes(
        &self,
        finding: &Finding,
        rule: u32,
        during: &[i64],
    ) -> Vec<(String, String)> {
        let mut counted: Vec<((String, String), u64)> = self
            .routes
            .iter()
            .filter(|((service, _), _)| finding.service.as_deref().is_none_or(|s| s == service))
            .map(|(key, panes)| {
                let matches = during
                    .iter()
                    .filter_map(|p| panes.get(p))
                    .map(|agg| agg.matches.get(&rule).copied().unwrap_or(0))
                    .sum::<u64>();
                (key.clone(), matches)
            })
            .filter(|(_, matches)| *matches > 0)
            .collect();
        if let Some(serde_json::Value::String(route)) = finding.group.get("route") {
            counted.retain(|((_, name), _)| name.split_once(' ').is_some_and(|(_, r)| r == route));
        }
        counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counted
            .into_iter()
            .take(self.options.max_routes)
            .map(|(key, _)| key)
            .collect()
    }

    fn route_impact(
        &self,
        finding: &Finding,
        rule: u32,
        key: &(String, String),
        during: &[i64],
        end: i64,
    ) -> RouteImpact {
        let empty = BTreeMap::new();
        let panes = self.routes.get(key).unwrap_or(&empty);
        let first = during.first().copied().unwrap_or(0);

        let during_aggs: Vec<&KpiAgg> = during.iter().filter_map(|p| panes.get(p)).collect();
        let during_summary = summarize(&during_aggs, during.len());
        let baseline = self.baseline(key, rule, first, end, &AttackPanes::default());
        let change = baseline
            .summary
            .as_ref()
            .map(|b| changes(&during_summary, b))
            .unwrap_or_default();
        let matches = |_: i64, agg: &KpiAgg| agg.matches.get(&rule).copied().unwrap_or(0);

        RouteImpact {
            service: key.0.clone(),
            route: key.1.clone(),
            from_group: group_share(finding, &during_aggs),
            correlation: self.correlation(matches, panes, during),
            series: self.series(rule, panes, during),
            baseline_windows: baseline.windows,
            baseline_of_own_findings: baseline.of_own_findings,
            baseline: baseline.summary.map(rounded),
            change,
            during: rounded(during_summary),
        }
    }

    /// Returns a route's baseline for a finding of `rule` whose windows start at `first` and
    /// end at `end`: the N windows before `first`, by time. Windows without traffic count as
    /// zero requests, but windows claimed by findings on the route do not count.
    ///
    /// When the rule's own route-wide findings claimed every one of those windows, the rule
    /// fires all the time on the route. The baseline then takes those windows back (leaving
    /// out only windows that attackers claimed), so such findings compare with the route's
    /// usual state rather than with nothing.
    fn baseline(
        &self,
        key: &(String, String),
        rule: u32,
        first: i64,
        end: i64,
        attack: &AttackPanes,
    ) -> Baseline {
        let claimed = self.claimed_panes(key, rule, end, true);
        let strict = self.baseline_without(key, first, &claimed, &attack.all);
        if strict.windows > 0 {
            return strict;
        }
        let targeted = self.claimed_panes(key, rule, end, false);
        let fallback = self.baseline_without(key, first, &targeted, &attack.targeted);
        if fallback.windows > 0 {
            return Baseline {
                of_own_findings: true,
                ..fallback
            };
        }
        strict
    }

    fn baseline_without(
        &self,
        key: &(String, String),
        first: i64,
        claimed: &BTreeSet<i64>,
        also_claimed: &BTreeSet<i64>,
    ) -> Baseline {
        let empty = BTreeMap::new();
        let panes = self.routes.get(key).unwrap_or(&empty);
        let size = self.options.window_ms as i64;
        let earliest = self.first_pane.get(key).copied().unwrap_or(first);
        let from = (first - self.options.baseline_windows as i64 * size)
            .max(earliest)
            .min(first);
        let unmarked = |pane: &i64| !claimed.contains(pane) && !also_claimed.contains(pane);
        let windows = (0..self.options.baseline_windows as i64)
            .map(|i| from + i * size)
            .take_while(|pane| *pane < first)
            .filter(unmarked)
            .count();
        let aggs: Vec<&KpiAgg> = panes
            .range(from..first)
            .filter(|(p, _)| unmarked(p))
            .map(|(_, agg)| agg)
            .collect();
        Baseline {
            summary: (windows > 0).then(|| summarize(&aggs, windows)),
            windows,
            of_own_findings: false,
        }
    }

    /// Returns the windows of a route that findings claimed before `end` for the baseline of a
    /// finding of `rule`: windows of findings that name attackers, and with `own_rule_wide`
    /// also windows of the rule's own route-wide findings.
    fn claimed_panes(
        &self,
        key: &(String, String),
        rule: u32,
        end: i64,
        own_rule_wide: bool,
    ) -> BTreeSet<i64> {
        let claims = |mark: &Mark| {
            mark.known_at < end && (mark.targeted || (own_rule_wide && mark.rule == rule))
        };
        self.marked
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, marks)| marks.iter().any(claims))
            .map(|(pane, _)| *pane)
            .collect()
    }

    /// Returns the other routes of the finding's services, of the busiest
    /// [`OTHER_ROUTES_CHECKED`] during its windows at most `kpi.max_other_routes`: those whose
    /// rise follows the rule's matches first, then those whose KPIs rose, then the busiest.
    fn other_routes(
        &self,
        finding: &Finding,
        rule: u32,
        own: &[(String, String)],
        during: &[i64],
        end: i64,
    ) -> Vec<OtherRoute> {
        if self.options.max_other_routes == 0 || own.is_empty() || during.is_empty() {
            return Vec::new();
        }
        let services: BTreeSet<&str> = own.iter().map(|(service, _)| service.as_str()).collect();
        let mut candidates: Vec<(&(String, String), u64)> = self
            .routes
            .iter()
            .filter(|(key, _)| services.contains(key.0.as_str()) && !own.contains(key))
            .map(|(key, panes)| {
                let requests = during
                    .iter()
                    .filter_map(|p| panes.get(p))
                    .map(|agg| agg.requests)
                    .sum::<u64>();
                (key, requests)
            })
            .filter(|(_, requests)| *requests > 0)
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        candidates.truncate(OTHER_ROUTES_CHECKED);

        // The rule's matches on the finding's own routes, per window.
        let mut own_matches: BTreeMap<i64, u64> = BTreeMap::new();
        for key in own {
            for (pane, agg) in self.routes.get(key).into_iter().flatten() {
                *own_matches.entry(*pane).or_default() +=
                    agg.matches.get(&rule).copied().unwrap_or(0);
            }
        }
        let matches = |pane: i64, _: &KpiAgg| own_matches.get(&pane).copied().unwrap_or(0);
        // The windows in which the attack already ran on the finding's routes stay out of the
        // other routes' baselines too, or a slowdown it causes would become their baseline.
        let attack_panes = AttackPanes {
            all: own
                .iter()
                .flat_map(|key| self.claimed_panes(key, rule, end, true))
                .collect(),
            targeted: own
                .iter()
                .flat_map(|key| self.claimed_panes(key, rule, end, false))
                .collect(),
        };

        let first = during[0];
        let mut checked: Vec<(f64, u64, OtherRoute)> = Vec::new();
        for (key, requests) in candidates {
            let panes = &self.routes[key];
            let during_aggs: Vec<&KpiAgg> = during.iter().filter_map(|p| panes.get(p)).collect();
            let during_summary = summarize(&during_aggs, during.len());
            let baseline = self.baseline(key, rule, first, end, &attack_panes);
            let change = baseline
                .summary
                .as_ref()
                .map(|b| changes(&during_summary, b))
                .unwrap_or_default();
            // A route with few requests during the finding has quantiles and rates that jump
            // with one call, so it never counts as risen.
            let (p99_rise, error_rise) = if requests < OTHER_ROUTE_MIN_REQUESTS {
                (0.0, 0.0)
            } else {
                let p99_rise = rise(&change, "p99_ms", 0.0);
                let error_4xx_rise = rise(&change, "error_4xx_rate", OTHER_ROUTE_MIN_RATE_RISE);
                let error_5xx_rise = rise(&change, "error_5xx_rate", OTHER_ROUTE_MIN_RATE_RISE);
                (p99_rise, error_4xx_rise.max(error_5xx_rise))
            };
            let correlation = self.correlation(matches, panes, during);
            let follows = |rise: f64, coefficient: Option<f64>| {
                rise >= OTHER_ROUTE_RISE && coefficient.is_some_and(|r| r >= RELATED_CORRELATION)
            };
            let related = follows(p99_rise, correlation.p99_ms)
                || follows(error_rise, correlation.error_rate);
            let largest_rise = p99_rise.max(error_rise);
            let rose = largest_rise >= OTHER_ROUTE_RISE;
            checked.push((
                if rose { largest_rise } else { 0.0 },
                requests,
                OtherRoute {
                    service: key.0.clone(),
                    route: key.1.clone(),
                    from_group: group_share(finding, &during_aggs),
                    correlation,
                    rose,
                    related,
                    baseline_windows: baseline.windows,
                    baseline_of_own_findings: baseline.of_own_findings,
                    change,
                    baseline: baseline.summary.map(rounded),
                    during: rounded(during_summary),
                },
            ));
        }
        checked.sort_by(|(a_rise, a_requests, a), (b_rise, b_requests, b)| {
            b.related
                .cmp(&a.related)
                .then(b.rose.cmp(&a.rose))
                .then(b_rise.total_cmp(a_rise))
                .then(b_requests.cmp(a_requests))
                .then_with(|| (&a.service, &a.route).cmp(&(&b.service, &b.route)))
        });
        checked
            .into_iter()
            .take(self.options.max_other_routes)
            .map(|(_, _, route)| route)
            .collect()
    }

    /// Returns the horizon's windows: those ending with the finding's last window.
    fn horizon<'a>(
        &self,
        panes: &'a BTreeMap<i64, KpiAgg>,
        during: &[i64],
    ) -> Vec<(i64, &'a KpiAgg)> {
        let last = during.last().copied().unwrap_or(0);
        let size = self.options.window_ms as i64;
        let from = last - (self.options.horizon_windows as i64 - 1) * size;
        panes.range(from..=last).map(|(p, a)| (*p, a)).collect()
    }

    /// Returns the correlations of a match count per window, from `matches`, with the route's
    /// KPIs over the horizon's windows that have traffic on the route.
    fn correlation(
        &self,
        matches: impl Fn(i64, &KpiAgg) -> u64,
        panes: &BTreeMap<i64, KpiAgg>,
        during: &[i64],
    ) -> Correlation {
        let horizon = self.horizon(panes, during);
        let windows = horizon.len();
        let matches: Vec<f64> = horizon
            .iter()
            .map(|(pane, agg)| matches(*pane, agg) as f64)
            .collect();
        let enough = windows >= self.options.min_correlation_windows;
        let coefficient = |values: Vec<Option<f64>>| -> Option<f64> {
            if !enough {
                return None;
            }
            let pairs: Vec<(f64, f64)> = matches
                .iter()
                .zip(values)
                .filter_map(|(x, y)| y.map(|y| (*x, y)))
                .collect();
            (pairs.len() >= self.options.min_correlation_windows)
                .then(|| pearson(&pairs))
                .flatten()
                .map(round4)
        };
        Correlation {
            windows,
            requests: coefficient(
                horizon
                    .iter()
                    .map(|(_, a)| Some(a.requests as f64))
                    .collect(),
            ),
            error_rate: coefficient(horizon.iter().map(|(_, a)| Some(error_rate(a))).collect()),
            p99_ms: coefficient(
                horizon
                    .iter()
                    .map(|(_, a)| quantile(a.latency.as_ref(), 0.99))
                    .collect(),
            ),
        }
    }

    fn series(&self, rule: u32, panes: &BTreeMap<i64, KpiAgg>, during: &[i64]) -> Vec<SeriesPoint> {
        self.horizon(panes, during)
            .into_iter()
            .map(|(pane, agg)| SeriesPoint {
                start: format_seconds(pane),
                start_ms: pane,
                matches: agg.matches.get(&rule).copied().unwrap_or(0),
                requests: agg.requests,
                error_rate: round4(error_rate(agg)),
                p99_ms: quantile(agg.latency.as_ref(), 0.99).map(round4),
                in_finding: during.contains(&pane),
            })
            .collect()
    }
}

fn parse_ms(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn error_rate(agg: &KpiAgg) -> f64 {
    if agg.requests == 0 {
        0.0
    } else {
        (agg.errors_4xx + agg.errors_5xx) as f64 / agg.requests as f64
    }
}

fn quantile(sketch: Option<&DDSketch>, q: f64) -> Option<f64> {
    sketch
        .and_then(|s| s.quantile(q).ok().flatten())
        .filter(|v| v.is_finite())
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Sums aggregates into a summary; `windows` is the number of windows they stand for.
fn summarize(aggs: &[&KpiAgg], windows: usize) -> KpiSummary {
    let mut total = KpiAgg::empty();
    for agg in aggs {
        total.add_totals(agg);
    }
    let rate = |n: u64| {
        if total.requests == 0 {
            0.0
        } else {
            n as f64 / total.requests as f64
        }
    };
    KpiSummary {
        requests: total.requests,
        requests_per_window: total.requests as f64 / windows.max(1) as f64,
        errors_4xx: total.errors_4xx,
        errors_5xx: total.errors_5xx,
        error_4xx_rate: rate(total.errors_4xx),
        error_5xx_rate: rate(total.errors_5xx),
        p50_ms: quantile(total.latency.as_ref(), 0.50),
        p95_ms: quantile(total.latency.as_ref(), 0.95),
        p99_ms: quantile(total.latency.as_ref(), 0.99),
        request_bytes: total.request_bytes,
        response_bytes: total.response_bytes,
    }
}

/// Rounds a summary's fractional fields to 4 decimals for output, after changes were computed
/// from the exact values.
fn rounded(mut summary: KpiSummary) -> KpiSummary {
    summary.requests_per_window = round4(summary.requests_per_window);
    summary.error_4xx_rate = round4(summary.error_4xx_rate);
    summary.error_5xx_rate = round4(summary.error_5xx_rate);
    summary.p50_ms = summary.p50_ms.map(round4);
    summary.p95_ms = summary.p95_ms.map(round4);
    summary.p99_ms = summary.p99_ms.map(round4);
    summary
}

/// Returns a KPI's relative rise from its baseline, 0 when it fell or rose by less than
/// `min_absolute`, and infinity for a rise from zero.
fn rise(changes: &BTreeMap<String, KpiChange>, name: &str, min_absolute: f64) -> f64 {
    match changes.get(name) {
        Some(change) if change.absolute > 0.0 && change.absolute >= min_absolute => {
            change.relative.unwrap_or(f64::INFINITY).max(0.0)
        }
        _ => 0.0,
    }
}

fn changes(during: &KpiSummary, baseline: &KpiSummary) -> BTreeMap<String, KpiChange> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, now: Option<f64>, before: Option<f64>| {
        if let (Some(now), Some(before)) = (now, before) {
            let absolute = round4(now - before);
            let relative = (before != 0.0).then(|| round4((now - before) / before));
            out.insert(name.to_string(), KpiChange { absolute, relative });
        }
    };
    put(
        "requests_per_window",
        Some(during.requests_per_window),
        Some(baseline.requests_per_window),
    );
    put(
        "error_4xx_rate",
        Some(during.error_4xx_rate),
        Some(baseline.error_4xx_rate),
    );
    put(
        "error_5xx_rate",
        Some(during.error_5xx_rate),
        Some(baseline.error_5xx_rate),
    );
    put("p50_ms", during.p50_ms, baseline.p50_ms);
    put("p95_ms", during.p95_ms, baseline.p95_ms);
    put("p99_ms", during.p99_ms, baseline.p99_ms);
    out
}

/// Returns the share of the windows' traffic from the finding's client, or else its principal.
fn group_share(finding: &Finding, aggs: &[&KpiAgg]) -> Option<GroupShare> {
    let (field, value) =
        ["client", "principal"]
            .iter()
            .find_map(|field| match finding.group.get(*field) {
                Some(serde_json::Value::String(value)) => Some((*field, value.clone())),
                _ => None,
            })?;
    let mut counts = IdentityCounts::default();
    let (mut requests, mut errors, mut errors_5xx) = (0u64, 0u64, 0u64);
    for agg in aggs {
        let map = if field == "client" {
            &agg.clients
        } else {
            &agg.principals
        };
        if let Some(c) = map.get(&identity_key(&value)) {
            counts.add(c);
        }
        requests += agg.requests;
        errors += agg.errors_4xx + agg.errors_5xx;
        errors_5xx += agg.errors_5xx;
    }
    let share = |part: u64, whole: u64| (whole > 0).then(|| round4(part as f64 / whole as f64));
    Some(GroupShare {
        field: field.to_string(),
        value,
        requests: counts.requests,
        errors: counts.errors,
        errors_5xx: counts.errors_5xx,
        requests_share: share(counts.requests, requests),
        errors_share: share(counts.errors, errors),
        errors_5xx_share: share(counts.errors_5xx, errors_5xx),
    })
}

/// Returns Pearson's correlation coefficient, or `None` when either series is constant.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return None;
    }
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
        syy += (y - mean_y) * (y - mean_y);
    }
    if sxx <= f64::EPSILON || syy <= f64::EPSILON {
        return None;
    }
    Some(sxy / (sxx.sqrt() * syy.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_known_series() {
        let rising: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 2.0 * i as f64 + 1.0)).collect();
        assert_eq!(pearson(&rising).map(round4), Some(1.0));
        let falling: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, -(i as f64))).collect();
        assert_eq!(pearson(&falling).map(round4), Some(-1.0));
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0)).collect();
        assert_eq!(pearson(&flat), None);
    }

    #[test]
    fn absurd_latencies_stay_out_of_quantiles() {
        let options = KpiOptions::default();
        let mut agg = KpiAgg::empty();
        for latency in [100.0, 120.0, 1e300, f64::INFINITY, -5.0] {
            let event = ApiEvent {
                latency_ms: Some(latency),
                status: Some(200),
                ..Default::default()
            };
            agg.add_event(&event, &options);
        }
        assert_eq!(agg.requests, 5);
        assert_eq!(agg.latency.as_ref().unwrap().count(), 2);
        let p99 = quantile(agg.latency.as_ref(), 0.99).unwrap();
        assert!((100.0..=121.2).contains(&p99), "{p99}");
    }

    /// Returns an aggregate of `fast` calls of 10 ms and `slow` calls of 30 ms.
    fn calls(fast: usize, slow: usize) -> KpiAgg {
        let options = KpiOptions::default();
        let mut agg = KpiAgg::empty();
        for latency in std::iter::repeat_n(10.0, fast).chain(std::iter::repeat_n(30.0, slow)) {
            let event = ApiEvent {
                latency_ms: Some(latency),
                status: Some(200),
                client: "198.18.0.1".into(),
                ..Default::default()
            };
            agg.add_event(&event, &options);
        }
        agg
    }

    #[test]
    fn other_routes_split_related_from_unrelated() {
        let minute = 60_000;
        let base = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
        let mut store = KpiStore::new(KpiOptions::default(), &["burst".to_string()], 300_000);
        let mut put = |service: &str, route: &str, minute_of_run: i64, agg: &KpiAgg| {
            let key = (
                service.to_string(),
                route.to_string(),
                base + minute_of_run * minute,
            );
            assert!(store.absorb(key, agg));
        };
        for m in 0..35 {
            let attack = (30..35).contains(&m);
            let mut login = calls(20, 0);
            if attack {
                login.matches.insert(0, 30);
            }
            put("accounts", "POST /login", m, &login);
            // A shared backend slows token refreshes while the attack runs.
            put(
                "accounts",
                "POST /token",
                m,
                &if attack { calls(0, 20) } else { calls(20, 0) },
            );
            // Two slow calls now and then, once during the attack: the merged p99 during the
            // attack rises, but the windows with slow calls do not follow the matches.
            let sporadic = [8, 14, 20, 31].contains(&m);
            put(
                "accounts",
                "GET /me",
                m,
                &if sporadic { calls(18, 2) } else { calls(20, 0) },
            );
            put("accounts", "PATCH /me", m, &calls(2, 0));
            // Another service slows during the attack; it is not the finding's service.
            put(
                "payments",
                "POST /pay",
                m,
                &if attack { calls(0, 20) } else { calls(20, 0) },
            );
        }
        let finding: Finding = serde_json::from_value(serde_json::json!({
            "rule_id": "burst", "title": "Burst", "fingerprint": "f", "phase": "final",
            "kind": "threshold", "severity": "high", "stages": ["operate"], "tags": [],
            "service": "accounts", "group": {"client": "203.0.113.9"},
            "window": {"start": format_seconds(base + 30 * minute), "end": format_seconds(base + 35 * minute)},
            "condition": "count >= 10", "count": 150,
            "first_seen": format_seconds(base + 30 * minute), "last_seen": format_seconds(base + 35 * minute - 1),
            "evidence": []
        }))
        .unwrap();

        let impact = store.impact(&finding).unwrap();
        let routes: Vec<&str> = impact.routes.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(routes, ["POST /login"]);
        let others: Vec<(&str, bool, bool)> = impact
            .other_routes
            .iter()
            .map(|o| (o.route.as_str(), o.rose, o.related))
            .collect();
        assert_eq!(
            others,
            [
                ("POST /token", true, true),
                ("GET /me", true, false),
                ("PATCH /me", false, false)
            ]
        );
        let token = &impact.other_routes[0];
        assert_eq!(token.correlation.windows, 30);
        assert_eq!(token.correlation.p99_ms, Some(1.0));
        assert_eq!(token.baseline_windows, 30);
        let p99 = token.change["p99_ms"].relative.unwrap();
        assert!((1.9..=2.1).contains(&p99), "p99 change {p99}");
        let me = &impact.other_routes[1];
        let r = me.correlation.p99_ms.unwrap();
        assert!(r.abs() < 0.3, "correlation {r}");
        assert!(me.change["p99_ms"].relative.unwrap() > 1.9);
        // A constant series has no coefficient.
        assert_eq!(impact.other_routes[2].correlation.p99_ms, None);
    }

    #[test]
    fn rule_firing_every_window_gets_a_baseline() {
        let minute = 60_000;
        let rules = ["spread".to_string()];
        let mut store = KpiStore::new(KpiOptions::default(), &rules, 300_000);
        for m in 0..20 {
            let mut agg = calls(10, 0);
            agg.matches.insert(0, 5);
            assert!(store.absorb(("shop".into(), "POST /login".into(), m * minute), &agg));
            assert!(store.absorb(
                ("shop".into(), "GET /cart".into(), m * minute),
                &calls(10, 0)
            ));
        }
        let finding = |from: i64, group: serde_json::Value| -> Finding {
            serde_json::from_value(serde_json::json!({
                "rule_id": "spread", "title": "Spread", "fingerprint": "f", "phase": "final",
                "kind": "distinct", "severity": "high", "stages": ["operate"], "tags": [],
                "service": "shop", "group": group,
                "window": {"start": format_seconds(from * minute), "end": format_seconds((from + 5) * minute)},
                "condition": "distinct client >= 5", "count": 25,
                "first_seen": format_seconds(from * minute),
                "last_seen": format_seconds((from + 5) * minute - 1), "evidence": []
            }))
            .unwrap()
        };
        let route_wide = serde_json::json!({"route": "/login"});

        let first = store.impact(&finding(0, route_wide.clone())).unwrap();
        assert_eq!(first.routes[0].baseline_windows, 0);
        assert!(!first.routes[0].baseline_of_own_findings);
        // The rule's own findings claimed every earlier window, so the baseline takes them back.
        let second = store.impact(&finding(5, route_wide)).unwrap();
        assert_eq!(second.routes[0].baseline_windows, 5);
        assert!(second.routes[0].baseline_of_own_findings);
        assert_eq!(second.routes[0].baseline.as_ref().unwrap().requests, 50);
        // Other routes of the service take the same windows back.
        let cart = &second.other_routes[0];
        assert_eq!(cart.route, "GET /cart");
        assert_eq!(cart.baseline_windows, 5);
        assert!(cart.baseline_of_own_findings);
        // Windows that a finding naming an attacker claimed stay out even then.
        let attacker = serde_json::json!({"client": "203.0.113.9"});
        assert!(store.impact(&finding(10, attacker)).is_some());
        let later = store
            .impact(&finding(15, serde_json::json!({"route": "/login"})))
            .unwrap();
        assert_eq!(later.routes[0].baseline_windows, 10);
        assert!(later.routes[0].baseline_of_own_findings);
        assert_eq!(later.routes[0].baseline.as_ref().unwrap().requests, 100);
    }

    #[test]
    fn early_finding_covers_windows_up_to_its_last_event() {
        let minute = 60_000;
        let mut store = KpiStore::new(KpiOptions::default(), &["burst".to_string()], 300_000);
        // Twelve calls a minute for five minutes, all read at once.
        for m in 0..5 {
            let mut agg = calls(12, 0);
            agg.matches.insert(0, 4);
            assert!(store.absorb(("shop".into(), "POST /login".into(), m * minute), &agg));
        }
        let finding = |phase: &str| -> Finding {
            serde_json::from_value(serde_json::json!({
                "rule_id": "burst", "title": "Burst", "fingerprint": "f", "phase": phase,
                "kind": "threshold", "severity": "high", "stages": ["operate"], "tags": [],
                "service": "shop", "group": {"client": "203.0.113.9"},
                "window": {"start": format_seconds(0), "end": format_seconds(5 * minute)},
                "condition": "count >= 8", "count": 8,
                "first_seen": format_seconds(0), "last_seen": format_seconds(minute + 30_000),
                "evidence": []
            }))
            .unwrap()
        };

        let early = store.impact(&finding("early")).unwrap();
        let during = &early.routes[0].during;
        assert_eq!(during.requests, 24);
        assert_eq!(during.requests_per_window, 12.0);
        assert_eq!(early.routes[0].series.len(), 2);
        let last = early.routes[0].series.last().unwrap();
        assert_eq!(last.start_ms, minute);

        let fin = store.impact(&finding("final")).unwrap();
        assert_eq!(fin.routes[0].during.requests, 60);
        assert_eq!(fin.routes[0].series.len(), 5);
    }

    #[test]
    fn other_routes_are_off_at_zero() {
        let options = KpiOptions {
            max_other_routes: 0,
            ..KpiOptions::default()
        };
        let mut store = KpiStore::new(options, &["burst".to_string()], 300_000);
        let mut login = calls(20, 0);
        login.matches.insert(0, 30);
        store.absorb(("accounts".into(), "POST /login".into(), 0), &login);
        store.absorb(("accounts".into(), "POST /token".into(), 0), &calls(0, 20));
        let finding: Finding = serde_json::from_value(serde_json::json!({
            "rule_id": "burst", "title": "Burst", "fingerprint": "f", "phase": "final",
            "kind": "threshold", "severity": "high", "stages": ["operate"], "tags": [],
            "service": "accounts", "group": {},
            "window": {"start": format_seconds(0), "end": format_seconds(60_000)},
            "condition": "count >= 10", "count": 30,
            "first_seen": format_seconds(0), "last_seen": format_seconds(59_999), "evidence": []
        }))
        .unwrap();
        let impact = store.impact(&finding).unwrap();
        assert_eq!(impact.routes.len(), 1);
        assert!(impact.other_routes.is_empty());
    }

    #[test]
    fn store_drops_routes_beyond_its_limit() {
        let options = KpiOptions {
            max_tracked_routes: 2,
            ..KpiOptions::default()
        };
        let mut store = KpiStore::new(options, &[], 60_000);
        let agg = KpiAgg::empty();
        let key = |route: &str| ("shop".to_string(), route.to_string(), 0);
        assert!(store.absorb(key("GET /a"), &agg));
        assert!(store.absorb(key("GET /b"), &agg));
        assert!(!store.absorb(key("GET /c"), &agg));
        // Routes already tracked keep their updates.
        assert!(store.absorb(key("GET /a"), &agg));
    }

    #[test]
    fn panes_align_to_the_window() {
        let options = KpiOptions::default();
        assert_eq!(options.pane(125_000), 120_000);
        assert_eq!(options.pane(-1), -60_000);
    }
}
