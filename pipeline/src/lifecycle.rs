//! The finding lifecycle: opened, updated, resolved, reopened.
//!
//! A fingerprint names one condition (rule, group, stages). Its first finding opens it. A
//! finding for a later window updates it. So does a final whose count, measured values or KPI
//! impact differ from what was reported for its window, because it saw the complete window
//! and late events. When the watermark passes the end of its latest window by the rule's resolve period without another
//! finding, it is resolved, and a finding after that reopens it. The resolve period is the
//! hysteresis: one quiet window between two bursts does not resolve and reopen a finding,
//! because the period spans two windows unless configured otherwise.
//!
//! A rule's next window can report early before the final of the window before it. A final
//! waits for the watermark, which trails the newest event time by the allowed lateness, and a
//! file read in large batches moves it later still. Such a final still updates the finding
//! when it differs from what was reported for its window. Its change carries that
//! window's final facts, but the deadline and the state a resolution reports stay those of
//! the newest window. When the newest window's final then repeats what was reported for it,
//! it is sent again, so receivers end on the newest window's facts.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The condition is met again while open: a later window, or news about a window
    /// already reported, such as its final count.
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
    /// The finding the change reports: the newest window's latest state, except for an update
    /// by an older window's final, which carries that final.
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
    /// The newest window's last reported finding, which a resolution reports.
    finding: Finding,
    /// Start of the newest window (ms).
    newest: i64,
    /// The last reported finding of each older window whose final has not arrived, by window
    /// start (ms).
    older: BTreeMap<i64, Finding>,
    /// Start (ms) of the window of a finding from the store. The run that reported it left no
    /// record of what it reported about older windows, so their findings count as repeats.
    seeded: Option<i64>,
    /// Start (ms) of the window whose facts the last change carried, which receivers show.
    last_change_start: i64,
    resolve_at_ms: i64,
}

impl State {
    fn new(finding: Finding, resolve_at_ms: i64, seeded: bool) -> State {
        let start = millis(&finding.window.start);
        State {
            open: true,
            finding,
            newest: start,
            older: BTreeMap::new(),
            seeded: seeded.then_some(start),
            last_change_start: start,
            resolve_at_ms,
        }
    }
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
            self.deadlines
                .insert((resolve_at_ms, finding.fingerprint.clone()));
            self.states.insert(
                finding.fingerprint.clone(),
                State::new(finding, resolve_at_ms, true),
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
        state.last_change_start = state.newest;
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
        let Some(state) = self.states.get_mut(&fingerprint) else {
            self.states.insert(
                fingerprint.clone(),
                State::new(finding.clone(), deadline, false),
            );
            self.deadlines.insert((deadline, fingerprint));
            return Some(Change {
                kind: ChangeKind::Opened,
                change_id: finding_change_id(finding),
                finding: finding.clone(),
                resolve_at_ms: deadline,
            });
        };
        if start < state.newest {
            let change = apply_older_final(state, finding, start);
            if change.is_none() {
                self.unchanged += 1;
            }
            return change;
        }

        let same_window = start == state.newest;
        let news = !same_window || reports_news(&state.finding, finding);
        // After an older window's final, the newest window's final goes out even when it
        // repeats its early finding, so receivers end on the newest window's facts.
        let shows_newest_again =
            same_window && finding.phase == Phase::Final && state.last_change_start != start;
        if state.open && !news && !shows_newest_again {
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
        if !same_window && state.finding.phase == Phase::Early {
            // The window's final is still to come; keep what was reported to compare it with.
            state.older.insert(state.newest, state.finding.clone());
        }
        if finding.phase == Phase::Final {
            // Finals leave in window order, so no older window's final can still come.
            state.older.clear();
        }
        if news || shows_newest_again {
            state.newest = start;
            state.finding = finding.clone();
        }
        state.resolve_at_ms = state.resolve_at_ms.max(deadline);
        state.open = true;
        state.last_change_start = state.newest;
        self.deadlines.insert((state.resolve_at_ms, fingerprint));
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

/// Returns the update an older window's final makes: its facts when they differ from what was
/// reported for the window. An older window's early finding makes none, because its final
/// follows. The update leaves the deadline and the newest window's state alone.
///
/// Finals leave in window order, so no final of a window before this one can still come, and
/// their records are dropped. The watermark passes an older window's end before any deadline
/// of a newer window, so its final comes while the finding is open. One that came after a
/// resolution would report nothing rather than reopen the finding.
fn apply_older_final(state: &mut State, finding: &Finding, start: i64) -> Option<Change> {
    if finding.phase != Phase::Final {
        return None;
    }
    let reported = state.older.remove(&start);
    state.older.retain(|&older, _| older > start);
    let news = match reported {
        Some(reported) => reports_news(&reported, finding),
        // Nothing was reported for the window in this run, such as when its early finding
        // came after the newer window's.
        // NOTE: a window before a seeded one makes no change even when the earlier run stopped
        // before its final, because the store keeps one finding per fingerprint.
        None => state.seeded.is_none_or(|seeded| start > seeded),
    };
    if !news || !state.open {
        return None;
    }
    state.last_change_start = start;
    Some(Change {
        kind: ChangeKind::Updated,
        change_id: finding_change_id(finding),
        finding: finding.clone(),
        resolve_at_ms: state.resolve_at_ms,
    })
}

/// Returns true when a finding reports more than the last finding reported for its window. An
/// early finding does so with a higher count, or the same count and another KPI impact. A
/// final does so with any other count, measured value or impact.
fn reports_news(reported: &Finding, finding: &Finding) -> bool {
    let other_impact = finding.impact.is_some() && finding.impact != reported.impact;
    match finding.phase {
        Phase::Early => {
            finding.count > reported.count || (finding.count == reported.count && other_impact)
        }
        Phase::Final => {
            finding.count != reported.count
                || finding.distinct != reported.distinct
                || finding.ratio != reported.ratio
                || finding.total != reported.total
                || finding.patterns != reported.patterns
                || other_impact
        }
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

    fn impact(kpi_window_ms: u64) -> crate::impact::Impact {
        crate::impact::Impact {
            kpi_window_ms,
            relative_error: 0.01,
            routes: Vec::new(),
            other_routes: Vec::new(),
        }
    }

    /// Returns a change's kind, and its finding's window start in minutes, phase and count.
    fn facts(change: &Change) -> (ChangeKind, i64, Phase, u64) {
        let start = millis(&change.finding.window.start) / 60_000;
        (
            change.kind,
            start,
            change.finding.phase,
            change.finding.count,
        )
    }

    fn summary(changes: &[Change]) -> Vec<(ChangeKind, i64, Phase, u64)> {
        changes.iter().map(facts).collect()
    }

    #[test]
    fn older_window_final_updates_with_its_facts() {
        // The early finding of window 5 comes before the final of window 0.
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        let mut changes = Vec::new();
        changes.extend(lifecycle.observe(&finding(0, 3, Phase::Early)));
        changes.extend(lifecycle.observe(&finding(5, 3, Phase::Early)));
        changes.extend(lifecycle.observe(&finding(0, 7, Phase::Final)));
        changes.extend(lifecycle.observe(&finding(5, 4, Phase::Final)));
        assert_eq!(
            summary(&changes),
            [
                (ChangeKind::Opened, 0, Phase::Early, 3),
                (ChangeKind::Updated, 5, Phase::Early, 3),
                (ChangeKind::Updated, 0, Phase::Final, 7),
                (ChangeKind::Updated, 5, Phase::Final, 4),
            ]
        );
        assert_eq!(
            changes[2].change_id,
            finding_change_id(&finding(0, 7, Phase::Final))
        );
        // The deadline follows window 5, which ends at minute 10, also for window 0's final.
        let deadlines: Vec<i64> = changes.iter().map(|c| c.resolve_at_ms).collect();
        assert_eq!(deadlines, [900_000, 1_200_000, 1_200_000, 1_200_000]);
        assert_eq!(lifecycle.unchanged(), 0);
        let resolved = lifecycle.advance(1_200_001);
        assert_eq!(
            summary(&resolved),
            [(ChangeKind::Resolved, 5, Phase::Final, 4)]
        );
        assert_eq!(resolved[0].change_id, resolve_change_id("fp", 1_200_000));
    }

    #[test]
    fn newest_final_resent_after_older_final() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(0, 3, Phase::Early)));
        one(lifecycle.observe(&finding(5, 3, Phase::Early)));
        let older = one(lifecycle.observe(&finding(0, 7, Phase::Final)));
        assert_eq!(older.finding.window.start, "1970-01-01T00:00:00Z");
        // Window 5's final repeats its early finding, but receivers last saw window 0.
        let newest = one(lifecycle.observe(&finding(5, 3, Phase::Final)));
        assert_eq!(facts(&newest), (ChangeKind::Updated, 5, Phase::Final, 3));
        assert_eq!(
            newest.change_id,
            finding_change_id(&finding(5, 3, Phase::Final))
        );
        assert_eq!(newest.resolve_at_ms, 1_200_000);
        assert_eq!(lifecycle.unchanged(), 0);
    }

    #[test]
    fn older_window_final_repeating_its_early_is_unchanged() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(0, 3, Phase::Early)));
        one(lifecycle.observe(&finding(5, 3, Phase::Early)));
        assert!(lifecycle.observe(&finding(0, 3, Phase::Final)).is_empty());
        // Receivers still show window 5, so its repeating final is not sent either.
        assert!(lifecycle.observe(&finding(5, 3, Phase::Final)).is_empty());
        assert_eq!(lifecycle.unchanged(), 2);
    }

    /// Returns a lifecycle where window 0 reported early with an impact, then window 5.
    fn after_early_with_impact() -> Lifecycle {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        let mut early = finding(0, 3, Phase::Early);
        early.impact = Some(impact(60_000));
        one(lifecycle.observe(&early));
        one(lifecycle.observe(&finding(5, 3, Phase::Early)));
        lifecycle
    }

    #[test]
    fn older_window_final_with_new_impact_updates() {
        let mut lifecycle = after_early_with_impact();
        let mut last = finding(0, 3, Phase::Final);
        last.impact = Some(impact(30_000));
        let updated = one(lifecycle.observe(&last));
        assert_eq!(updated.kind, ChangeKind::Updated);
        assert_eq!(updated.finding.impact, Some(impact(30_000)));
    }

    #[test]
    fn older_window_final_with_same_impact_is_unchanged() {
        let mut lifecycle = after_early_with_impact();
        let mut last = finding(0, 3, Phase::Final);
        last.impact = Some(impact(60_000));
        assert!(lifecycle.observe(&last).is_empty());
        assert_eq!(lifecycle.unchanged(), 1);
    }

    #[test]
    fn older_window_final_with_new_measured_value_updates() {
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        let mut early = finding(0, 3, Phase::Early);
        early.distinct = Some(3);
        one(lifecycle.observe(&early));
        one(lifecycle.observe(&finding(5, 3, Phase::Early)));
        let mut last = finding(0, 3, Phase::Final);
        last.distinct = Some(5);
        let updated = one(lifecycle.observe(&last));
        assert_eq!(updated.kind, ChangeKind::Updated);
        assert_eq!(updated.finding.distinct, Some(5));
    }

    #[test]
    fn unreported_older_window_final_updates() {
        // Window 0 reports early only after window 5, so nothing was reported for it.
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(5, 3, Phase::Early)));
        assert!(lifecycle.observe(&finding(0, 3, Phase::Early)).is_empty());
        let updated = one(lifecycle.observe(&finding(0, 3, Phase::Final)));
        assert_eq!(facts(&updated), (ChangeKind::Updated, 0, Phase::Final, 3));
        assert_eq!(updated.resolve_at_ms, 1_200_000);
        let resolved = lifecycle.advance(i64::MAX);
        assert_eq!(resolved[0].finding.window.start, "1970-01-01T00:05:00Z");
    }

    #[test]
    fn older_windows_than_a_seeded_one_are_unchanged() {
        // A replay after a restart: the store contains window 10, reported by the earlier run.
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        lifecycle.seed(vec![OpenFinding {
            finding: finding(10, 3, Phase::Early),
            resolve_at_ms: 1_500_000,
        }]);
        assert!(lifecycle.observe(&finding(5, 3, Phase::Early)).is_empty());
        assert!(lifecycle.observe(&finding(5, 9, Phase::Final)).is_empty());
        assert!(lifecycle.observe(&finding(10, 3, Phase::Early)).is_empty());
        // Once window 15 is the newest, the seeded window's final is compared with the store.
        one(lifecycle.observe(&finding(15, 3, Phase::Early)));
        let updated = one(lifecycle.observe(&finding(10, 6, Phase::Final)));
        assert_eq!(facts(&updated), (ChangeKind::Updated, 10, Phase::Final, 6));
        assert_eq!(updated.resolve_at_ms, 1_800_000);
        assert_eq!(lifecycle.unchanged(), 3);
    }

    #[test]
    fn older_final_after_reopening_updates() {
        // A file in one batch: window 30 reports early past window 0's deadline, before
        // window 0's final.
        let mut lifecycle = Lifecycle::new(HashMap::new(), 600_000);
        one(lifecycle.observe(&finding(0, 3, Phase::Early)));
        let changes = lifecycle.observe(&finding(30, 3, Phase::Early));
        assert_eq!(
            kinds(&changes),
            [ChangeKind::Resolved, ChangeKind::Reopened]
        );
        let updated = one(lifecycle.observe(&finding(0, 8, Phase::Final)));
        assert_eq!(facts(&updated), (ChangeKind::Updated, 0, Phase::Final, 8));
        assert_eq!(updated.resolve_at_ms, 2_700_000);
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
