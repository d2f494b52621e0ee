//! The lifecycle through the dataflow. A file read in one batch reports the early finding of
//! a rule's next window before the final of the window before it. That final still reaches
//! delivery as an update carrying its own window's count.

use std::path::Path;
use std::sync::{mpsc, Arc};

use feedloop_pipeline::kpi::KpiOptions;
use feedloop_pipeline::lifecycle::{finding_change_id, resolve_change_id};
use feedloop_pipeline::{
    Change, ChangeKind, Finding, Output, PartitionReader, Phase, Position, ReadBatch, ReadStatus,
    RunOptions,
};
use feedloop_rules::{ApiEvent, RuleSet};

/// 2026-01-05T12:00:00Z, the start of the first 5-minute window.
const T0: i64 = 1_767_614_400_000;

const MINUTE: i64 = 60_000;

fn call(offset_ms: i64, client: &str, status: u16) -> ApiEvent {
    ApiEvent {
        time_ms: T0 + offset_ms,
        service: "shop".into(),
        client: client.into(),
        method: "POST".into(),
        route: "/api/login".into(),
        path: "/api/login".into(),
        status: Some(status),
        ..Default::default()
    }
}

/// Hands out every event in one read, like a short file.
struct OneBatch {
    events: Vec<ApiEvent>,
}

impl PartitionReader for OneBatch {
    fn name(&self) -> &str {
        "one-batch"
    }

    fn read(&mut self, _max: usize, batch: &mut ReadBatch) -> ReadStatus {
        if self.events.is_empty() {
            return ReadStatus::Finished;
        }
        for (line, event) in self.events.drain(..).enumerate() {
            batch.events.push((event, Position::Line(line as u64 + 1)));
            batch.records += 1;
        }
        ReadStatus::Ready
    }
}

/// Runs the rule over the events on one worker and returns the findings and changes in the
/// order the dataflow sent them.
fn run(events: Vec<ApiEvent>) -> (Vec<Finding>, Vec<Change>) {
    let readers: feedloop_pipeline::ReaderFactory = Arc::new(move |worker, _| {
        if worker != 0 {
            return Vec::new();
        }
        vec![Box::new(OneBatch {
            events: events.clone(),
        }) as Box<dyn PartitionReader>]
    });
    let rule = "id: burst\ntitle: Burst\nseverity: high\nstages: [operate]\nmatch: {status: 401}\ngroup_by: [client]\nwindow: {size: 5m}\nthreshold: {count: 3}\n";
    let rules = RuleSet::from_text(Path::new("burst.yaml"), rule).unwrap();
    // Without KPIs an early and a final finding with equal counts report equal facts.
    let options = RunOptions {
        workers: 1,
        allowed_lateness_ms: 60_000,
        kpi: KpiOptions {
            enabled: false,
            ..KpiOptions::default()
        },
        ..RunOptions::default()
    };
    let (sender, receiver) = mpsc::channel();
    feedloop_pipeline::run(&rules, options, readers, sender).unwrap();
    let mut findings = Vec::new();
    let mut changes = Vec::new();
    for output in receiver.try_iter() {
        match output {
            Output::Finding(finding) => findings.push(*finding),
            Output::Change(change) => changes.push(*change),
            _ => {}
        }
    }
    (findings, changes)
}

/// Returns the window start in minutes after T0, the phase and the count.
fn facts(finding: &Finding) -> (i64, Phase, u64) {
    let start = chrono::DateTime::parse_from_rfc3339(&finding.window.start)
        .unwrap()
        .timestamp_millis();
    ((start - T0) / MINUTE, finding.phase, finding.count)
}

#[test]
fn older_window_final_reaches_delivery_as_update() {
    // Five failures in the window at minute 0, three in the window at minute 5, and an
    // ordinary call at minute 40 whose watermark passes the resolve deadline.
    let mut events: Vec<ApiEvent> = (0..5).map(|i| call(i * 20_000, "10.0.0.1", 401)).collect();
    events.extend((0..3).map(|i| call(5 * MINUTE + i * 20_000, "10.0.0.1", 401)));
    events.push(call(40 * MINUTE, "10.0.0.2", 200));
    let (findings, changes) = run(events.clone());

    let reported: Vec<(i64, Phase, u64)> = findings.iter().map(facts).collect();
    assert_eq!(
        reported,
        [
            (0, Phase::Early, 3),
            (5, Phase::Early, 3),
            (0, Phase::Final, 5),
            (5, Phase::Final, 3),
        ]
    );
    let summary: Vec<(ChangeKind, (i64, Phase, u64))> = changes
        .iter()
        .map(|c| (c.kind, facts(&c.finding)))
        .collect();
    // Window 0's final carries its own count. Window 5's final repeats its early finding, but
    // goes out so that receivers end on the newest window.
    assert_eq!(
        summary,
        [
            (ChangeKind::Opened, (0, Phase::Early, 3)),
            (ChangeKind::Updated, (5, Phase::Early, 3)),
            (ChangeKind::Updated, (0, Phase::Final, 5)),
            (ChangeKind::Updated, (5, Phase::Final, 3)),
            (ChangeKind::Resolved, (5, Phase::Final, 3)),
        ]
    );
    // Resolution follows the newest window, which ends at minute 10, after two window sizes.
    let deadlines: Vec<i64> = changes
        .iter()
        .map(|c| (c.resolve_at_ms - T0) / MINUTE)
        .collect();
    assert_eq!(deadlines, [15, 20, 20, 20, 20]);

    let mut ids: Vec<String> = findings.iter().map(finding_change_id).collect();
    ids.push(resolve_change_id(
        &findings[0].fingerprint,
        T0 + 20 * MINUTE,
    ));
    let change_ids: Vec<String> = changes.iter().map(|c| c.change_id.clone()).collect();
    assert_eq!(change_ids, ids);
    let (_, again) = run(events);
    let again_ids: Vec<String> = again.iter().map(|c| c.change_id.clone()).collect();
    assert_eq!(again_ids, change_ids);
}
