//! The finding lifecycle: opened, updated, resolved, reopened.
//!
//! A fingerprint names one condition (rule, group, stages). Its first finding opens it. A
//! finding for a later window, a higher count in the same window, or the same window with a
//! different KPI impact (complete windows, late events) updates it. When the
//! watermark passes the end of its latest window by the rule's resolve period without another
//! finding, it is resolved, and a finding after that reopens it. The resolve period is the
//! hysteresis: one quiet window between two bursts does not resolve and reopen a finding,
//! because the period spans two windows unless configured otherwise.
//!
//! Resolution follows event time, like everything else in the dataflow: a stream that goes
//! silent resolves nothing until its events move the watermark again. When the input ends,
//! only deadlines the input's own watermark passed are resolved; the rest stay open, so a
//! replayed file does not resolve everything merely by ending.
//!
//! Every change has an id derived from what it reports (fingerprint, window, phase and count,
//! or the resolve deadline), not from its kind: the same input replayed after a restart gives
//! the same ids even when a change that was an opening before is now an update, and delivery
//! uses the ids to apply each effect once.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chrono::DateTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::finding::{Finding, Phase};

/// The kind of change to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The condition is met for the first time.
    Opened,
    /// The condition is met again while open: a later window or a higher count.
    Updated,
    /// The condition has not held for the rule's resolve period.
    Resolved,
    /// The condition is met again after it was resolved.
    Reopened,
}

impl ChangeKind {
    /// Returns the lower-case name used in messages and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Updated => "updated",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Reopened => "reopened",
        }
    }

    /// Returns true for the changes after which the finding is open.
    pub fn leaves_open(self) -> bool {
        !matches!(self, ChangeKind::Resolved)
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle change of a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// Stable id of what the change reports; equal for equal input.
    pub change_id: String,
    /// The finding's latest state.
    pub finding: Finding,
    /// Event time (ms) at which the finding resolves unless its condition is met again.
    pub resolve_at_ms: i64,
}

/// A finding open before this run started, from the delivery state store.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFinding {
    pub finding: Finding,
    pub resolve_at_ms: i64,
}

struct State {
    open: bool,
    finding: Finding,
    /// Start of the latest reported window (ms) and its count.
    latest: (i64, u64),
    resolve_at_ms: i64,
}

/// The lifecycle of every fingerprint seen by one collector.
pub struct Lifecycle {
    /// Resolve period per rule id, in ms.
    resolve_after: HashMap<String, i64>,
    default_resolve_after: i64,
    states: HashMap<String, State>,
    deadlines: BTreeSet<(i64, String)>,
    /// Findings that repeated what was already reported.
    unchanged: u64,
}

impl Lifecycle {
    /// Returns a lifecycle with a resolve period per rule id, and one for unknown rules.
    pub fn new(resolve_after: HashMap<String, i64>, default_resolve_after: i64) -> Lifecycle {
        Lifecycle {
            resolve_after,
            default_resolve_after,
            states: HashMap::new(),
            deadlines: BTreeSet::new(),
            unchanged: 0,
        }
    }

    /// Seeds findings that were open when an earlier run stopped.
    pub fn seed(&mut self, open: Vec<OpenFinding>) {
        for OpenFinding {
            finding,
            resolve_at_ms,
        } in open
        {
            let latest = (millis(&finding.window.start), finding.count);
            self.deadlines
                .insert((resolve_at_ms, finding.fingerprint.clone()));
            self.states.insert(
                finding.fingerprint.clone(),
                State {
                    open: true,
                    finding,
                    latest,
                    resolve_at_ms,
                },
            );
        }
    }

    /// Returns how many findings repeated what was already reported.
    pub fn unchanged(&self) -> u64 {
        self.unchanged
    }

    /// Takes in a finding and returns the changes it makes: none, one, or a resolution
    /// followed by a reopening when the finding's window starts after the fingerprint's
    /// resolve deadline. That gap proves the condition did not hold in between even when the
    /// frontier never stopped there, as when a whole file arrives in one batch.
    pub fn observe(&mut self, finding: &Finding) -> Vec<Change> {
        let mut changes = Vec::new();
        let start = millis(&finding.window.start);
        let lapsed = self
            .states
            .get(&finding.fingerprint)
            .filter(|state| state.open && start >= state.resolve_at_ms)
            .map(|state| state.resolve_at_ms);
        if let Some(deadline) = lapsed {
            self.deadlines
                .remove(&(deadline, finding.fingerprint.clone()));
            changes.push(self.resolve(&finding.fingerprint, deadline));
        }
        changes.extend(self.apply(finding));
        changes
    }

    fn resolve(&mut self, fingerprint: &str, deadline: i64) -> Change {
        let state = self
            .states
            .get_mut(fingerprint)
            .expect("every deadline belongs to a known fingerprint");
        state.open = false;
        Change {
            kind: ChangeKind::Resolved,
            change_id: resolve_change_id(fingerprint, deadline),
            finding: state.finding.clone(),
            resolve_at_ms: deadline,
        }
    }

    fn apply(&mut self, finding: &Finding) -> Option<Change> {
        let start = millis(&finding.window.start);
        let end = millis(&finding.window.end);
        let resolve_after = self
            .resolve_after
            .get(&finding.rule_id)
            .copied()
            .unwrap_or(self.default_resolve_after);
        let deadline = end.saturating_add(resolve_after);
        let fingerprint = finding.fingerprint.clone();
        let kind = match self.states.get_mut(&fingerprint) {
            None => {
                self.states.insert(
                    fingerprint.clone(),
                    State {
                        open: true,
                        finding: finding.clone(),
                        latest: (start, finding.count),
                        resolve_at_ms: deadline,
                    },
                );
                self.deadlines.insert((deadline, fingerprint));
                ChangeKind::Opened
            }
            Some(state) => {
                // The same window with complete KPIs (a final after its early finding, late
                // events within the lateness) is news when its impact moved.
                let same_window = start == state.latest.0;
                let newer = start > state.latest.0
                    || (same_window && finding.count > state.latest.1)
                    || (same_window
                        && finding.count == state.latest.1
                        && finding.impact.is_some()
                        && finding.impact != state.finding.impact);
                if state.open && !newer {
                    self.unchanged += 1;
                    return None;
                }
                let kind = if state.open {
                    ChangeKind::Updated
                } else {
                    ChangeKind::Reopened
                };
                self.deadlines
                    .remove(&(state.resolve_at_ms, fingerprint.clone()));
                if newer {
                    state.latest = (start, finding.count);
                    state.finding = finding.clone();
                }
                state.resolve_at_ms = state.resolve_at_ms.max(deadline);
                state.open = true;
                self.deadlines.insert((state.resolve_at_ms, fingerprint));
                kind
            }
        };
        let state = &self.states[&finding.fingerprint];
        Some(Change {
            kind,
            change_id: finding_change_id(finding),
            finding: state.finding.clone(),
            resolve_at_ms: state.resolve_at_ms,
        })
    }

    /// Resolves every open finding whose deadline lies before the watermark.
    pub fn advance(&mut self, watermark: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((deadline, fingerprint)) = self.deadlines.first().cloned() {
            if deadline >= watermark {
                break;
            }
            self.deadlines.pop_first();
            changes.push(self.resolve(&fingerprint, deadline));
        }
        changes
    }
}

fn millis(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// Returns the id of a change a finding makes: a hash of its fingerprint, window, phase and count.
pub fn finding_change_id(finding: &Finding) -> String {
    let phase = match finding.phase {
        Phase::Early => "early",
        Phase::Final => "final",
    };
    short_hash(&[
        finding.fingerprint.as_bytes(),
        finding.window.start.as_bytes(),
        phase.as_bytes(),
        finding.count.to_string().as_bytes(),
    ])
}

/// Returns the id of a resolution: a hash of its fingerprint and deadline.
pub fn resolve_change_id(fingerprint: &str, deadline_ms: i64) -> String {
    short_hash(&[
        fingerprint.as_bytes(),
        b"resolved",
        deadline_ms.to_string().as_bytes(),
    ])
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0]);
    }
    hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(start_min: i64, count: u64, phase: Phase) -> Finding {
        let start = crate::finding::format_seconds(start_min * 60_000);
        let end = crate::finding::format_seconds((start_min + 5) * 60_000);
        serde_json::from_value(serde_json::json!({
            "rule_id": "r", "title": "t", "fingerprint": "fp", "phase": phase,
            "kind": "threshold", "severity": "high", "stages": ["operate"], "tags": [],
            "group": {}, "window": {"start": start, "end": end}, "condition": "count >= 3",
            "count": count, "first_seen": "", "last_seen": "", "evidence": []
        }))
        .unwrap()
    }

    fn one(mut changes: Vec<Change>) -> Change {
        assert_eq!(changes.len(), 1, "{changes:?}");
        changes.remove(0)
    }

    fn kinds(changes: &[Change]) -> Vec<ChangeKind> {
        changes.iter().map(|c| c.kind).collect()
    }

    #[test]
    fn open_update_resolve_reopen() {
        // Windows of 5 minutes, resolved 10 minutes after the latest window ends.
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        let opened = one(lifecycle.observe(&finding(0, 3, Phase::Early)));
        assert_eq!(opened.kind, ChangeKind::Opened);
        assert_eq!(opened.resolve_at_ms, 900_000);
        // The final of the same window with the same count reports nothing new.
        assert!(lifecycle.observe(&finding(0, 3, Phase::Final)).is_empty());
        assert_eq!(lifecycle.unchanged(), 1);
        let updated = one(lifecycle.observe(&finding(0, 7, Phase::Final)));
        assert_eq!(updated.kind, ChangeKind::Updated);
        assert_eq!(updated.finding.count, 7);
        // A quiet window in between does not resolve it: the deadline moved with window 5.
        let next = one(lifecycle.observe(&finding(10, 4, Phase::Early)));
        assert_eq!(
            (next.kind, next.resolve_at_ms),
            (ChangeKind::Updated, 1_500_000)
        );
        assert!(lifecycle.advance(1_500_000).is_empty());
        let resolved = lifecycle.advance(1_500_001);
        assert_eq!(kinds(&resolved), [ChangeKind::Resolved]);
        assert_eq!(resolved[0].change_id, resolve_change_id("fp", 1_500_000));
        assert!(lifecycle.advance(9_000_000).is_empty());
        let reopened = one(lifecycle.observe(&finding(60, 3, Phase::Early)));
        assert_eq!(reopened.kind, ChangeKind::Reopened);
    }

    #[test]
    fn a_window_after_the_deadline_resolves_then_reopens_without_frontier_progress() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(0, 3, Phase::Early)));
        // The deadline is minute 15; a window starting at minute 15 shows the gap.
        let changes = lifecycle.observe(&finding(15, 3, Phase::Early));
        assert_eq!(
            kinds(&changes),
            [ChangeKind::Resolved, ChangeKind::Reopened]
        );
        assert_eq!(changes[0].change_id, resolve_change_id("fp", 900_000));
        assert_eq!(changes[1].resolve_at_ms, 1_800_000);
        // The resolution is not repeated when the frontier passes the old deadline.
        assert!(lifecycle.advance(1_000_000).is_empty());
    }

    #[test]
    fn an_older_window_does_not_replace_the_latest() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(10, 3, Phase::Early)));
        assert!(lifecycle.observe(&finding(5, 9, Phase::Final)).is_empty());
        let resolved = lifecycle.advance(i64::MAX);
        assert_eq!(resolved[0].finding.window.start, "1970-01-01T00:10:00Z");
    }

    #[test]
    fn change_ids_depend_on_content_not_kind() {
        let mut first = Lifecycle::new(HashMap::new(), 600_000);
        let opened = one(first.observe(&finding(0, 3, Phase::Early)));
        let mut seeded = Lifecycle::new(HashMap::new(), 600_000);
        seeded.seed(vec![OpenFinding {
            finding: finding(-10, 3, Phase::Final),
            resolve_at_ms: 300_000,
        }]);
        let again = one(seeded.observe(&finding(0, 3, Phase::Early)));
        assert_eq!(again.kind, ChangeKind::Updated);
        assert_eq!(again.change_id, opened.change_id);
        assert_eq!(opened.change_id.len(), 24);
    }

    #[test]
    fn seeded_findings_resolve_when_the_watermark_passes() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        lifecycle.seed(vec![OpenFinding {
            finding: finding(0, 3, Phase::Final),
            resolve_at_ms: 900_000,
        }]);
        assert_eq!(kinds(&lifecycle.advance(900_001)), [ChangeKind::Resolved]);
    }
}
