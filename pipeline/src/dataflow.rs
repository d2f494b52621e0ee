//! The timely dataflow: events to hits, hits to windows, windows to findings.
//!
//! ```text
//! input (events, time = watermark at ingestion)
//!   -> flat_map: evaluate every rule, one hit per rule that counts the event
//!   -> exchange by (rule, group): each group's windows live on one worker
//!   -> windows: update window state; report early findings the moment a condition first
//!      holds; report final findings when the frontier passes a window's end
//!   -> exchange to worker 0 -> output: send early findings at once, and each time's final
//!      findings sorted once the frontier passes that time
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
use std::sync::mpsc::Sender;
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

use feedloop_rules::{ApiEvent, Rule};

use crate::driver::Output;
use crate::finding::Finding;
use crate::window::{hits_of, GroupKey, Hit, WindowStore};

/// Resource limits of the dataflow and where their overflow is counted.
pub struct Limits {
    /// The most windows one rule may keep open on one worker.
    pub max_windows_per_rule: usize,
    /// The run's counters; dropped hits are added here.
    pub counters: Arc<crate::driver::Counters>,
}

/// Builds the dataflow over an event stream; findings go to `output` from worker 0.
pub fn build<'scope>(
    events: StreamVec<'scope, u64, ApiEvent>,
    rules: Arc<[Rule]>,
    output: Sender<Output>,
    probe: &ProbeHandle<u64>,
    limits: Limits,
) {
    let matching = rules.clone();
    let findings = events
        // Evaluate every rule on the worker that read the event.
        .flat_map(move |event| {
            let mut hits = Vec::new();
            hits_of(&matching, &event, &mut hits);
            hits
        })
        // Count each group's windows on the worker its key hashes to.
        .unary_frontier(Exchange::new(group_hash), "Windows", move |_, _| {
            let mut windows = Windows::new(rules, limits.max_windows_per_rule);
            let counters = limits.counters;
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each(|cap, data| {
                    if let Some(&time) = cap.least() {
                        let early = windows.absorb(time, || cap.retain_least(port), data);
                        if !early.is_empty() {
                            output.session(&cap).give_iterator(early.into_iter());
                        }
                    }
                });
                let dropped = windows.store.take_dropped();
                if dropped > 0 {
                    let before = counters.dropped_hits.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
                    if before == 0 {
                        tracing::warn!(dropped, "a rule reached its limit of open windows; hits that would open more are dropped and counted");
                    }
                }
                let watermark = frontier.frontier().first().copied();
                windows.advance(watermark, |at, findings| {
                    output.session(at).give_iterator(findings.into_iter());
                });
            }
        });

    // Gather findings on worker 0 and send them out in a stable order.
    let mut collector = Collector::default();
    findings.probe_with(probe).sink(
        Exchange::new(|_: &Finding| 0),
        "Output",
        move |(input, frontier)| {
            input.for_each(|cap, data| {
                let time = cap.least().copied().unwrap_or(0);
                for finding in data.drain(..) {
                    // Early findings leave at once; finals wait to be sent in a stable order.
                    if finding.phase == crate::finding::Phase::Early {
                        let _ = output.send(Output::Finding(Box::new(finding)));
                    } else {
                        collector.stash.entry(time).or_default().push(finding);
                    }
                }
            });
            collector.flush(frontier, &output);
        },
    );
}

fn group_hash(hit: &Hit) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hit.rule.hash(&mut hasher);
    hit.group.hash(&mut hasher);
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

/// Findings waiting at worker 0 for the frontier to pass their time.
#[derive(Default)]
struct Collector {
    stash: BTreeMap<u64, Vec<Finding>>,
}

impl Collector {
    /// Sends each passed time's findings, sorted, so output order does not depend on how
    /// workers interleave.
    fn flush(
        &mut self,
        frontier: &timely::progress::frontier::MutableAntichain<u64>,
        output: &Sender<Output>,
    ) {
        while let Some(entry) = self.stash.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let mut findings = entry.remove();
            findings.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
            for finding in findings {
                let _ = output.send(Output::Finding(Box::new(finding)));
            }
        }
    }
}

fn order_key(finding: &Finding) -> impl Ord + '_ {
    (
        finding.phase,
        &finding.window.end,
        &finding.rule_id,
        finding.key().1,
        &finding.window.start,
    )
}
