//! The timely dataflow: events to hits, hits to windows, windows to findings.
//!
//! ```text
//! input (events, time = watermark at ingestion)
//!   -> match: evaluate every rule, one hit per rule that counts the event
//!      (non-matching ratio events become a differential collection of per-slide counts,
//!       consolidated within each batch, so a busy route sends one update, not thousands)
//!   -> exchange by (rule, group): each group's windows live on one worker
//!   -> windows: update window state; report early findings the moment a condition first
//!      holds; report final findings when the frontier passes a window's end
//!   -> exchange to worker 0 -> output: send early findings at once, and each time's final
//!      findings sorted once the frontier passes that time; each finding is followed by the
//!      lifecycle change it makes, and findings resolve as the frontier passes their deadlines
//! ```
//!
//! An event enters at the worker's input time, which is never later than its event time, so
//! the frontier is a watermark: once it passes a window's end no hit for that window can still
//! arrive. The windows operator holds one capability, at the least time it may still emit a
//! final finding at, and downgrades it as the frontier moves; a held capability that never
//! moved would stall every operator downstream. Early findings do not wait for the frontier:
//! they leave with the capability of the input that crossed the condition.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use differential_dataflow::AsCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::progress::Antichain;

use feedloop_rules::{ApiEvent, Rule};

use crate::driver::Output;
use crate::finding::{Finding, Phase};
use crate::kpi::{KpiAgg, KpiBatch, KpiKey, KpiOptions, KpiStore};
use crate::lifecycle::Lifecycle;
use crate::window::{hits_of, GroupKey, Hit, HitValue, TotalKey, WindowStore};

/// Resource limits of the dataflow and where their overflow is counted.
pub struct Limits {
    /// The maximum number of windows one rule keeps open on one worker.
    pub max_windows_per_rule: usize,
    /// The run's counters; dropped hits are added here.
    pub counters: Arc<crate::driver::Counters>,
    /// The lifecycle of findings; set on worker 0 only, where every finding is collected.
    pub lifecycle: Option<Lifecycle>,
    /// The allowed lateness, to find the input's last watermark when it ends.
    pub allowed_lateness_ms: u64,
    /// KPI settings.
    pub kpi: KpiOptions,
    /// The KPI store; set on worker 0 only, where findings get their impact.
    pub kpi_store: Option<KpiStore>,
}

/// Builds the dataflow over an event stream; findings go to `output` from worker 0.
pub fn build<'scope>(
    events: StreamVec<'scope, u64, ApiEvent>,
    rules: Arc<[Rule]>,
    output: Sender<Output>,
    probe: &ProbeHandle<u64>,
    limits: Limits,
) {
    let rules_for_matching = rules.clone();
    let kpi = limits.kpi;
    // Evaluate every rule on the worker that read the event, and sum the batch's KPIs. Hits,
    // ratio totals and KPI sums leave through separate outputs, because one stream read by
    // three consumers would clone every record for two of them.
    let mut builder = OperatorBuilder::new("Match".to_owned(), events.scope());
    let mut input = builder.new_input(events, Pipeline);
    let (hits_output, hits) = builder.new_output::<Vec<Hit>>();
    let (totals_output, totals) = builder.new_output::<Vec<(TotalKey, u64, i64)>>();
    let (kpis_output, kpis) = builder.new_output::<Vec<(KpiKey, u64, KpiAgg)>>();
    let mut hits_output = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(hits_output);
    let mut totals_output = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(totals_output);
    let mut kpis_output = OutputBuilder::<_, CapacityContainerBuilder<_>>::from(kpis_output);
    builder.build(move |_capabilities| {
        let mut hits = Vec::new();
        let mut totals = Vec::new();
        let mut kpis = KpiBatch::default();
        move |_frontiers| {
            let mut hits_session = hits_output.activate();
            let mut totals_session = totals_output.activate();
            let mut kpis_session = kpis_output.activate();
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                for event in data.drain(..) {
                    let before = hits.len();
                    hits_of(&rules_for_matching, &event, &mut hits, &mut totals);
                    if kpi.enabled {
                        let matched = hits[before..].iter().map(|hit: &Hit| hit.rule);
                        kpis.add(&event, matched, &kpi);
                    }
                }
                hits_session.session(&cap).give_iterator(hits.drain(..));
                totals_session
                    .session(&cap)
                    .give_iterator(totals.drain(..).map(|key| (key, time, 1)));
                kpis_session
                    .session(&cap)
                    .give_iterator(kpis.drain().map(|(key, agg)| (key, time, agg)));
            })
        }
    });
    // Non-matching ratio events as a differential collection of (rule, group, slide) with a
    // count, summed within each batch before the exchange.
    let totals = totals.as_collection().consolidate_stream().inner;
    // KPIs as a differential collection of (service, route, window) whose difference is the
    // aggregate itself, so consolidating sums each batch.
    let kpis = kpis.as_collection().consolidate_stream().inner;

    // Count each group's windows on the worker its key hashes to.
    let window_counters = limits.counters.clone();
    let findings = hits.binary_frontier(
        totals,
        Exchange::new(group_hash),
        Exchange::new(|update: &(TotalKey, u64, i64)| key_hash(update.0 .0, &update.0 .1)),
        "Windows",
        move |_, _| {
            let mut windows = Windows::new(rules, limits.max_windows_per_rule);
            let counters = window_counters;
            let mut converted = Vec::new();
            move |(hits, hits_frontier), (totals, totals_frontier), output| {
                let port = output.output_index();
                hits.for_each(|cap, data| {
                    if let Some(&time) = cap.least() {
                        let early = windows.absorb(time, || cap.retain_least(port), data);
                        if !early.is_empty() {
                            output.session(&cap).give_iterator(early.into_iter());
                        }
                    }
                });
                totals.for_each(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    converted.extend(data.drain(..).filter(|(_, _, n)| *n > 0).map(
                        |((rule, group, pane), _, n)| Hit {
                            rule,
                            group,
                            time_ms: pane,
                            value: HitValue::Total(n as u64),
                            evidence: None,
                        },
                    ));
                    // Ratio rules never report early, so nothing can come back here.
                    let early = windows.absorb(time, || cap.retain_least(port), &mut converted);
                    debug_assert!(early.is_empty());
                });
                let dropped = windows.store.take_dropped();
                if dropped > 0 {
                    let before = counters.dropped_hits.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                    if before == 0 {
                        tracing::warn!(dropped, "a rule reached its limit of open windows; hits that would open more are dropped and counted");
                    }
                }
                let watermark = [hits_frontier, totals_frontier]
                    .iter()
                    .filter_map(|f| f.frontier().first().copied())
                    .min();
                windows.advance(watermark, |at, findings| {
                    output.session(at).give_iterator(findings.into_iter());
                });
            }
        },
    );

    // Gather findings on worker 0 and send them out in a stable order, each followed by the
    // lifecycle change it makes; resolve findings as the frontier passes their deadlines.
    // KPIs meet the findings there too, and the frontier of both decides when finals leave,
    // so a final finding's impact includes every KPI update before its window closed.
    let mut collector = Collector {
        stash: BTreeMap::new(),
        lifecycle: limits.lifecycle,
        kpis: limits.kpi_store,
        counters: limits.counters,
        lateness: limits.allowed_lateness_ms as i64,
        ended: false,
    };
    let done: StreamVec<'scope, u64, ()> = findings.binary_frontier(
        kpis,
        Exchange::new(|_: &Finding| 0),
        Exchange::new(|_: &(KpiKey, u64, KpiAgg)| 0),
        "Output",
        move |_, _| {
            move |(findings, findings_frontier),
                  (kpis, kpis_frontier),
                  _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
                kpis.for_each(|_, data| {
                    if let Some(store) = collector.kpis.as_mut() {
                        for (key, _, agg) in data.drain(..) {
                            if !store.absorb(key, &agg) {
                                let before = collector
                                    .counters
                                    .dropped_kpi_updates
                                    .fetch_add(1, Ordering::Relaxed);
                                if before == 0 {
                                    tracing::warn!("KPIs reached their limit of tracked routes; updates for further routes are dropped and counted");
                                }
                            }
                        }
                    }
                });
                findings.for_each(|cap, data| {
                    let time = cap.least().copied().unwrap_or(0);
                    for finding in data.drain(..) {
                        // Early findings leave at once; finals wait to be sent in a stable order.
                        if finding.phase == Phase::Early {
                            collector.send(finding, &output);
                        } else {
                            collector.stash.entry(time).or_default().push(finding);
                        }
                    }
                });
                let mut frontier = Antichain::new();
                for time in findings_frontier
                    .frontier()
                    .iter()
                    .chain(kpis_frontier.frontier().iter())
                {
                    frontier.insert(*time);
                }
                collector.flush(&frontier, &output);
            }
        },
    );
    done.probe_with(probe);
}

fn group_hash(hit: &Hit) -> u64 {
    key_hash(hit.rule, &hit.group)
}

/// Hashes a rule and group, so a group's hits and totals meet on one worker.
fn key_hash(rule: u32, group: &[Option<String>]) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    rule.hash(&mut hasher);
    group.hash(&mut hasher);
    hasher.finish()
}

/// The windows operator's state between invocations.
struct Windows {
    store: WindowStore,
    /// The capability at the least time the operator may still emit final findings at.
    hold: Option<Capability<u64>>,
    fired: Vec<(GroupKey, i64)>,
}

impl Windows {
    fn new(rules: Arc<[Rule]>, max_windows_per_rule: usize) -> Windows {
        Windows {
            store: WindowStore::with_limit(rules, max_windows_per_rule),
            hold: None,
            fired: Vec::new(),
        }
    }

    /// Adds hits of one input time, keeping a capability no later than that time, and returns
    /// the early findings of windows whose condition first held on one of these hits. Each is
    /// a snapshot taken right after the hit that crossed the condition, so its count is the
    /// threshold itself and it leaves without waiting for the frontier.
    fn absorb(
        &mut self,
        time: u64,
        retain: impl FnOnce() -> Option<Capability<u64>>,
        hits: &mut Vec<Hit>,
    ) -> Vec<Finding> {
        if self.hold.as_ref().is_none_or(|h| *h.time() > time) {
            self.hold = retain();
        }
        let mut early = Vec::new();
        for hit in hits.drain(..) {
            self.store.insert(hit, &mut self.fired);
            for (key, start) in self.fired.drain(..) {
                early.extend(self.store.early_finding(&key, start));
            }
        }
        early
    }

    /// Emits the final findings of windows ending at or before the watermark, then holds the
    /// least time still needed. `emit` sends findings at a time.
    fn advance(
        &mut self,
        watermark: Option<u64>,
        mut emit: impl FnMut(&Capability<u64>, Vec<Finding>),
    ) {
        let Some(capability) = self.hold.as_ref() else {
            return;
        };

        let close_until = watermark.map_or(i64::MAX, |w| w as i64);
        while let Some(end) = self.store.next_end().filter(|end| *end <= close_until) {
            let mut findings = Vec::new();
            self.store.close_until(end, &mut findings);
            if !findings.is_empty() {
                emit(&capability.delayed(&(end.max(0) as u64)), findings);
            }
        }

        // Hold the watermark while windows are open, so their finals can still be sent; hold
        // nothing once every window is closed, or the frontier downstream would stall.
        match watermark {
            Some(w) if self.store.next_end().is_some() => {
                if let Some(h) = self.hold.as_mut() {
                    if w > *h.time() {
                        h.downgrade(&w);
                    }
                }
            }
            _ => self.hold = None,
        }
    }
}

/// Findings waiting at worker 0 for the frontier to pass their time, and their lifecycle.
struct Collector {
    stash: BTreeMap<u64, Vec<Finding>>,
    lifecycle: Option<Lifecycle>,
    kpis: Option<KpiStore>,
    counters: Arc<crate::driver::Counters>,
    lateness: i64,
    ended: bool,
}

impl Collector {
    /// Sends each passed time's findings, sorted, so output order does not depend on how
    /// workers interleave.
    fn flush(&mut self, frontier: &Antichain<u64>, output: &Sender<Output>) {
        while let Some(entry) = self.stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let mut findings = entry.remove();
            // The key serializes each group once, not once per comparison.
            findings.sort_by_cached_key(order_key);
            for finding in findings {
                self.send(finding, output);
            }
        }
        self.resolve(frontier, output);
    }

    /// Sends a finding with its impact, and the change it makes.
    fn send(&mut self, mut finding: Finding, output: &Sender<Output>) {
        if let Some(store) = self.kpis.as_mut() {
            finding.impact = store.impact(&finding);
        }
        let changes = match self.lifecycle.as_mut() {
            Some(lifecycle) => lifecycle.observe(&finding),
            None => Vec::new(),
        };
        if changes.is_empty() {
            self.counters
                .repeated_findings
                .fetch_add(1, Ordering::Relaxed);
        }
        let _ = output.send(Output::Finding(Box::new(finding)));
        for change in changes {
            let _ = output.send(Output::Change(Box::new(change)));
        }
    }

    /// Resolves findings whose deadlines the watermark passed. When the input has ended, the
    /// watermark is the input's own last one, not the end of time, so findings still within
    /// their resolve period stay open.
    fn resolve(&mut self, frontier: &Antichain<u64>, output: &Sender<Output>) {
        let Some(lifecycle) = self.lifecycle.as_mut() else {
            return;
        };
        let watermark = match frontier.elements().first() {
            Some(&time) => time as i64,
            None if !self.ended => {
                self.ended = true;
                let last = self.counters.max_event_time.load(Ordering::Relaxed);
                last.saturating_sub(self.lateness)
            }
            None => return,
        };
        for change in lifecycle.advance(watermark) {
            let _ = output.send(Output::Change(Box::new(change)));
        }
        if let Some(store) = self.kpis.as_mut() {
            store.prune(watermark);
        }
    }
}

fn order_key(finding: &Finding) -> (Phase, String, String, String, String) {
    let (rule, group, start, phase) = finding.key();
    (phase, finding.window.end.clone(), rule, group, start)
}
