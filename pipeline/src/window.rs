//! Window state: per rule, group and window, what the matching events add up to.
//!
//! The dataflow keeps windowed aggregates as plain state inside one operator rather than in
//! differential arrangements, because an arrangement of window keys that never retract keeps
//! growing. Each [`Hit`] updates every window it falls in directly, and a window's state is
//! dropped the moment the watermark passes its end, so memory follows the number of open
//! windows and not the length of the stream. The state is kept per window, not per slide, so
//! a sliding window costs `size / slide` updates per hit. Rules are limited to
//! [`feedloop_rules::compile::MAX_WINDOWS_PER_EVENT`] windows per event. Differential
//! dataflow enters before this store: non-matching ratio events, the bulk of all hits, travel
//! as a collection of [`TotalKey`] updates that is consolidated within each batch.
//!
//! Nothing here depends on arrival order. Counts and distinct sets are sums and unions, and
//! evidence keeps the earliest events by [`Evidence::sort_key`], so the same set of events
//! gives the same final findings however it was shuffled or split across workers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use feedloop_rules::{ApiEvent, Contribution, Detection, Rule};

use crate::finding::{
    fingerprint, format_millis, format_seconds, Evidence, Finding, Phase, SignatureEvidence,
    WindowBounds,
};

/// Rule index and group values: one counting unit.
pub type GroupKey = (u32, Vec<Option<String>>);

/// One event's contribution to one rule, with its group and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Index of the rule in the rule set.
    pub rule: u32,
    /// The event's group key under the rule.
    pub group: Vec<Option<String>>,
    /// Event time in milliseconds since the epoch.
    pub time_ms: i64,
    /// The event's contribution to the window.
    pub value: HitValue,
    /// The event as evidence, when the rule keeps evidence and the event counts.
    pub evidence: Option<Evidence>,
}

/// The contribution a hit adds to its windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HitValue {
    Count,
    Value(String),
    Ratio {
        matched: bool,
    },
    Signature {
        pattern: u32,
    },
    /// Ratio denominator events that did not match, already summed per slide.
    Total(u64),
}

/// A ratio rule's group and slide that non-matching denominator events fall in. These are the
/// bulk of all hits (every event, for a rule like "5xx share per route"), so they are summed
/// per batch before the exchange instead of travelling one by one.
pub type TotalKey = (u32, Vec<Option<String>>, i64);

/// Evaluates every rule against an event and appends the hits, with non-matching ratio
/// denominator events as their rule, group and slide start in `totals`.
pub fn hits_of(rules: &[Rule], event: &ApiEvent, out: &mut Vec<Hit>, totals: &mut Vec<TotalKey>) {
    for (index, rule) in rules.iter().enumerate() {
        let Some(contribution) = rule.evaluate(event) else {
            continue;
        };
        if contribution == (Contribution::Ratio { matched: false }) {
            let slide = rule.window.slide_ms as i64;
            let pane = event.time_ms.div_euclid(slide) * slide;
            totals.push((index as u32, rule.group_key(event), pane));
            continue;
        }
        let (value, matched) = match contribution {
            Contribution::Count => (HitValue::Count, None),
            Contribution::Value(v) => (HitValue::Value(v), None),
            Contribution::Ratio { matched } => (HitValue::Ratio { matched }, None),
            Contribution::Signature(m) => {
                let Detection::Signature { signature, .. } = &rule.detection else {
                    unreachable!("only signature rules contribute signature matches")
                };
                let evidence = SignatureEvidence {
                    pattern: signature.names()[m.pattern].clone(),
                    field: m.field.to_string(),
                    excerpt: m.excerpt,
                };
                (
                    HitValue::Signature {
                        pattern: m.pattern as u32,
                    },
                    Some(evidence),
                )
            }
        };
        let counts = !matches!(value, HitValue::Ratio { matched: false });
        let evidence = (counts && rule.max_evidence > 0).then(|| evidence_of(event, matched));
        out.push(Hit {
            rule: index as u32,
            group: rule.group_key(event),
            time_ms: event.time_ms,
            value,
            evidence,
        });
    }
}

fn evidence_of(event: &ApiEvent, matched: Option<SignatureEvidence>) -> Evidence {
    use feedloop_rules::signature::cut;
    Evidence {
        // Formatted when a finding is built: most evidence never makes it into one.
        time: String::new(),
        time_ms: event.time_ms,
        method: event.method.clone(),
        path: cut(&event.path, 512).to_string(),
        query: event.query.as_deref().map(|q| cut(q, 512).to_string()),
        status: event.status,
        latency_ms: event.latency_ms,
        client: event.client.clone(),
        route: (event.route != event.path).then(|| event.route.clone()),
        service: (!event.service.is_empty()).then(|| event.service.clone()),
        principal: event.principal.clone(),
        user_agent: event.user_agent.as_deref().map(|u| cut(u, 256).to_string()),
        matched,
    }
}

/// The aggregate of one window of one group.
#[derive(Debug, Default)]
struct WindowState {
    /// Counted events: matching events, or the ratio's numerator.
    count: u64,
    /// The ratio's denominator.
    total: u64,
    values: HashSet<String>,
    patterns: BTreeMap<u32, u64>,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    evidence: Vec<Evidence>,
    /// True once an early finding was scheduled for this window.
    fired_early: bool,
}

impl WindowState {
    fn add(&mut self, hit: &Hit, max_evidence: usize) {
        let counted = match &hit.value {
            HitValue::Count => true,
            HitValue::Value(v) => {
                if !self.values.contains(v) {
                    self.values.insert(v.clone());
                }
                true
            }
            HitValue::Ratio { matched } => {
                self.total += 1;
                *matched
            }
            HitValue::Total(n) => {
                self.total += n;
                false
            }
            HitValue::Signature { pattern } => {
                *self.patterns.entry(*pattern).or_default() += 1;
                true
            }
        };
        if !counted {
            return;
        }
        self.count += 1;
        self.first_seen = Some(self.first_seen.map_or(hit.time_ms, |t| t.min(hit.time_ms)));
        self.last_seen = Some(self.last_seen.map_or(hit.time_ms, |t| t.max(hit.time_ms)));
        if let Some(evidence) = &hit.evidence {
            keep_earliest(&mut self.evidence, evidence, max_evidence);
        }
    }

    fn holds(&self, detection: &Detection) -> bool {
        match detection {
            Detection::Threshold { count } => self.count >= *count,
            Detection::Distinct { count, .. } => self.values.len() as u64 >= *count,
            Detection::Ratio {
                min_ratio,
                min_events,
                ..
            } => self.total >= *min_events && self.count as f64 >= *min_ratio * self.total as f64,
            Detection::Signature { min_count, .. } => self.count >= *min_count,
        }
    }
}

/// Inserts `evidence` into the sorted sample if it is among the `max` earliest.
fn keep_earliest(sample: &mut Vec<Evidence>, evidence: &Evidence, max: usize) {
    if sample.len() == max
        && sample
            .last()
            .is_some_and(|last| last.sort_key() <= evidence.sort_key())
    {
        return;
    }
    let at = sample.partition_point(|e| e.sort_key() <= evidence.sort_key());
    sample.insert(at, evidence.clone());
    sample.truncate(max);
}

/// Returns true for detections that may report before their window closes.
fn fires_early(detection: &Detection) -> bool {
    !matches!(detection, Detection::Ratio { .. })
}

/// All open windows of the groups one worker owns.
pub struct WindowStore {
    rules: Arc<[Rule]>,
    windows: FxHashMap<GroupKey, BTreeMap<i64, WindowState>>,
    /// Window end to the groups with a window ending there.
    closing: BTreeMap<i64, Vec<GroupKey>>,
    /// Open windows per rule, and the most each rule may have.
    open_per_rule: Vec<usize>,
    max_windows_per_rule: usize,
    /// Hits that found their rule at its window limit since the last `take_dropped`.
    dropped: u64,
}

impl WindowStore {
    /// Creates an empty store for the rules that produced the hits, with no window limit.
    pub fn new(rules: Arc<[Rule]>) -> WindowStore {
        WindowStore::with_limit(rules, usize::MAX)
    }

    /// Creates an empty store where each rule may keep at most `max_windows_per_rule` windows
    /// open. A hit that would open one more is dropped and counted, so a flood of distinct
    /// groups (one per request path, say) costs bounded memory.
    pub fn with_limit(rules: Arc<[Rule]>, max_windows_per_rule: usize) -> WindowStore {
        let open_per_rule = vec![0; rules.len()];
        WindowStore {
            rules,
            windows: FxHashMap::default(),
            closing: BTreeMap::new(),
            open_per_rule,
            max_windows_per_rule,
            dropped: 0,
        }
    }

    /// Returns and resets the number of hits dropped at the window limit.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Adds a hit to each window it falls in. Pushes onto `early` each window whose condition
    /// now holds for the first time, as the group and window start.
    pub fn insert(&mut self, hit: Hit, early: &mut Vec<(GroupKey, i64)>) {
        let rule = &self.rules[hit.rule as usize];
        let index = hit.rule as usize;
        let key: GroupKey = (hit.rule, hit.group.clone());
        let windows = self.windows.entry(key).or_default();
        let mut dropped = false;
        for start in rule.window.starts(hit.time_ms) {
            if !windows.contains_key(&start) {
                if self.open_per_rule[index] >= self.max_windows_per_rule {
                    dropped = true;
                    continue;
                }
                self.open_per_rule[index] += 1;
                let end = start + rule.window.size_ms as i64;
                self.closing
                    .entry(end)
                    .or_default()
                    .push((hit.rule, hit.group.clone()));
            }
            let state = windows.entry(start).or_default();
            state.add(&hit, rule.max_evidence);
            if !state.fired_early && fires_early(&rule.detection) && state.holds(&rule.detection) {
                state.fired_early = true;
                early.push(((hit.rule, hit.group.clone()), start));
            }
        }
        if dropped {
            self.dropped += 1;
            if windows.is_empty() {
                self.windows.remove(&(hit.rule, hit.group));
            }
        }
    }

    /// Returns the early finding of a window, if the window is still open.
    pub fn early_finding(&self, key: &GroupKey, start: i64) -> Option<Finding> {
        let state = self.windows.get(key)?.get(&start)?;
        Some(self.finding(key, start, state, Phase::Early))
    }

    /// Returns the earliest end among open windows.
    pub fn next_end(&self) -> Option<i64> {
        self.closing.keys().next().copied()
    }

    /// Closes every window ending at or before `watermark` and appends the final findings of
    /// those whose condition holds, ordered by window end, rule and group.
    pub fn close_until(&mut self, watermark: i64, out: &mut Vec<Finding>) {
        while let Some(entry) = self.closing.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let (end, mut keys) = entry.remove_entry();
            keys.sort();
            for key in keys {
                let rule = &self.rules[key.0 as usize];
                let start = end - rule.window.size_ms as i64;
                let Some(windows) = self.windows.get_mut(&key) else {
                    continue;
                };
                let Some(state) = windows.remove(&start) else {
                    continue;
                };
                self.open_per_rule[key.0 as usize] -= 1;
                let now_empty = windows.is_empty();
                if state.holds(&rule.detection) {
                    out.push(self.finding(&key, start, &state, Phase::Final));
                }
                if now_empty {
                    self.windows.remove(&key);
                }
            }
        }
    }

    /// Returns the number of open windows.
    pub fn open_windows(&self) -> usize {
        self.windows.values().map(BTreeMap::len).sum()
    }

    fn finding(&self, key: &GroupKey, start: i64, state: &WindowState, phase: Phase) -> Finding {
        let rule = &self.rules[key.0 as usize];
        let group = rule
            .group_by
            .iter()
            .zip(&key.1)
            .map(|(field, value)| {
                let value = value
                    .clone()
                    .map_or(serde_json::Value::Null, serde_json::Value::String);
                (field.to_string(), value)
            })
            .collect::<serde_json::Map<_, _>>();
        let service = match group.get("service") {
            Some(serde_json::Value::String(service)) => Some(service.clone()),
            _ => state.evidence.first().and_then(|e| e.service.clone()),
        };
        let (distinct, ratio, total, patterns) = match &rule.detection {
            Detection::Distinct { .. } => (Some(state.values.len() as u64), None, None, None),
            Detection::Ratio { .. } => {
                let ratio = if state.total == 0 {
                    0.0
                } else {
                    state.count as f64 / state.total as f64
                };
                (None, Some(round4(ratio)), Some(state.total), None)
            }
            Detection::Signature { signature, .. } => {
                let names = signature.names();
                let patterns = state
                    .patterns
                    .iter()
                    .map(|(i, n)| (names[*i as usize].clone(), *n))
                    .collect();
                (None, None, None, Some(patterns))
            }
            Detection::Threshold { .. } => (None, None, None, None),
        };
        Finding {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            fingerprint: fingerprint(rule, &key.1),
            phase,
            kind: rule.detection.kind().to_string(),
            severity: rule.severity,
            stages: rule.stages.clone(),
            tags: rule.tags.clone(),
            service,
            group,
            window: WindowBounds {
                start: format_seconds(start),
                end: format_seconds(start + rule.window.size_ms as i64),
            },
            condition: condition_text(&rule.detection),
            count: state.count,
            distinct,
            ratio,
            total,
            patterns,
            first_seen: state.first_seen.map(format_millis).unwrap_or_default(),
            last_seen: state.last_seen.map(format_millis).unwrap_or_default(),
            evidence: state
                .evidence
                .iter()
                .map(|e| Evidence {
                    time: format_millis(e.time_ms),
                    ..e.clone()
                })
                .collect(),
            impact: None,
        }
    }
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Returns the rule's condition as a short text, such as `count >= 20`.
pub fn condition_text(detection: &Detection) -> String {
    match detection {
        Detection::Threshold { count } => format!("count >= {count}"),
        Detection::Distinct { field, count } => format!("distinct {field} >= {count}"),
        Detection::Ratio {
            min_ratio,
            min_events,
            ..
        } => {
            format!("ratio >= {min_ratio} of at least {min_events} events")
        }
        Detection::Signature { min_count, .. } => format!("signature matches >= {min_count}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use feedloop_rules::RuleSet;

    use super::*;

    fn store(rule: &str) -> WindowStore {
        let set = RuleSet::from_text(Path::new("t.yaml"), rule).unwrap();
        WindowStore::new(set.rules().to_vec().into())
    }

    fn hit(group: &str, time_ms: i64) -> Hit {
        Hit {
            rule: 0,
            group: vec![Some(group.to_string())],
            time_ms,
            value: HitValue::Count,
            evidence: None,
        }
    }

    const SLIDING: &str = "id: s\ntitle: S\nseverity: low\nstages: [monitor]\ngroup_by: [client]\nwindow: {size: 10m, slide: 1m}\nthreshold: {count: 1000000}\n";

    #[test]
    fn open_windows_plateau_at_constant_keys() {
        let mut store = store(SLIDING);
        let mut early = Vec::new();
        let mut findings = Vec::new();
        let lateness = 60_000;
        let mut peak = 0;
        // Three clients, one hit each per second, for a simulated day.
        for second in 0..86_400i64 {
            let time = second * 1000;
            for client in ["a", "b", "c"] {
                store.insert(hit(client, time), &mut early);
            }
            if second % 10 == 0 {
                store.close_until(time - lateness, &mut findings);
                peak = peak.max(store.open_windows());
            }
        }
        // Each client has the 10 windows covering now plus at most the lateness (1m) and one
        // close interval (10s) of windows waiting to close: 12 per client.
        assert!(peak <= 3 * 12, "peak of {peak} open windows");
        assert!(findings.is_empty());
        store.close_until(i64::MAX, &mut findings);
        assert_eq!(store.open_windows(), 0);
        assert_eq!(store.next_end(), None);
    }

    #[test]
    fn window_limit_drops_and_counts() {
        let set = RuleSet::from_text(Path::new("t.yaml"), SLIDING).unwrap();
        let mut store = WindowStore::with_limit(set.rules().to_vec().into(), 25);
        let mut early = Vec::new();
        // Each new client opens 10 windows; the third client finds only 5 left.
        for client in ["a", "b", "c", "d"] {
            store.insert(hit(client, 0), &mut early);
        }
        assert_eq!(store.open_windows(), 25);
        assert_eq!(store.take_dropped(), 2);
        assert_eq!(store.take_dropped(), 0);
        let mut findings = Vec::new();
        store.close_until(i64::MAX, &mut findings);
        assert_eq!(store.open_windows(), 0);
        store.insert(hit("d", 0), &mut early);
        assert_eq!(store.open_windows(), 10);
    }

    #[test]
    fn threshold_fires_early_once_per_window() {
        let rule = "id: t\ntitle: T\nseverity: low\nstages: [monitor]\ngroup_by: [client]\nwindow: {size: 1m}\nthreshold: {count: 3}\n";
        let mut store = store(rule);
        let mut early = Vec::new();
        for i in 0..5 {
            store.insert(hit("a", 1_000 + i), &mut early);
        }
        assert_eq!(early, vec![((0, vec![Some("a".to_string())]), 0)]);
        let finding = store.early_finding(&early[0].0, 0).unwrap();
        assert_eq!(finding.count, 5);
        assert_eq!(finding.phase, Phase::Early);

        let mut findings = Vec::new();
        store.close_until(59_999, &mut findings);
        assert!(findings.is_empty());
        store.close_until(60_000, &mut findings);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].phase, Phase::Final);
        assert_eq!(findings[0].window.start, "1970-01-01T00:00:00Z");
        assert_eq!(findings[0].window.end, "1970-01-01T00:01:00Z");
    }

    #[test]
    fn evidence_keeps_earliest_whatever_the_order() {
        let make = |time_ms: i64| Evidence {
            time: format_millis(time_ms),
            time_ms,
            method: "GET".into(),
            path: format!("/{time_ms}"),
            query: None,
            status: Some(200),
            latency_ms: None,
            client: "c".into(),
            route: None,
            service: None,
            principal: None,
            user_agent: None,
            matched: None,
        };
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        for t in 0..20 {
            keep_earliest(&mut forward, &make(t), 3);
            keep_earliest(&mut backward, &make(19 - t), 3);
        }
        let times: Vec<i64> = forward.iter().map(|e| e.time_ms).collect();
        assert_eq!(times, vec![0, 1, 2]);
        assert_eq!(forward, backward);
    }
}
