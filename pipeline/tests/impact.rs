//! Incremental impact: an event that arrives late, within the allowed lateness, updates the
//! KPIs behind an open finding, and the final finding reaches delivery as an update.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use feedloop_pipeline::{
    ChangeKind, Finding, Output, PartitionReader, Phase, Position, ReadBatch, ReadStatus,
    RunOptions,
};
use feedloop_rules::{ApiEvent, RuleSet};

const START_MS: i64 = 1_700_000_040_000 - 1_700_000_040_000 % 300_000;

fn call(offset_ms: i64, client: &str, status: u16, latency_ms: f64) -> ApiEvent {
    ApiEvent {
        time_ms: START_MS + offset_ms,
        service: "shop".into(),
        client: client.into(),
        method: "GET".into(),
        route: "/api/orders".into(),
        path: "/api/orders".into(),
        status: Some(status),
        latency_ms: Some(latency_ms),
        ..Default::default()
    }
}

/// Hands out the first stage, waits for `release`, then hands out the second and finishes.
struct Staged {
    stages: Vec<Vec<ApiEvent>>,
    release: Arc<AtomicBool>,
    line: u64,
}

impl PartitionReader for Staged {
    fn name(&self) -> &str {
        "staged"
    }

    fn read(&mut self, _max: usize, batch: &mut ReadBatch) -> ReadStatus {
        if self.stages.is_empty() {
            return ReadStatus::Finished;
        }
        if self.stages.len() == 1 && !self.release.load(Ordering::SeqCst) {
            return ReadStatus::Pending;
        }
        for event in self.stages.remove(0) {
            self.line += 1;
            batch.events.push((event, Position::Line(self.line)));
            batch.records += 1;
        }
        ReadStatus::Ready
    }
}

#[test]
fn impact_of_an_open_finding_follows_a_late_event() {
    // Ten failures from one client in the first 90 s, and ordinary calls for 150 s.
    let mut first: Vec<ApiEvent> = (0..10)
        .map(|i| call(i * 10_000, "10.0.0.1", 401, 10.0))
        .collect();
    first.extend((0..16).map(|i| call(i * 10_000 + 5_000, "10.0.0.2", 200, 10.0)));
    first.sort_by_key(|e| e.time_ms);
    // Then three slow calls from inside the window, late but within the 2 minutes allowed,
    // and a call eight minutes in that closes the window.
    let second = vec![
        call(100_000, "10.0.0.3", 200, 5_000.0),
        call(101_000, "10.0.0.3", 200, 5_000.0),
        call(102_000, "10.0.0.3", 200, 5_000.0),
        call(480_000, "10.0.0.2", 200, 10.0),
    ];
    let release = Arc::new(AtomicBool::new(false));
    let reader_release = release.clone();
    let readers: feedloop_pipeline::ReaderFactory = Arc::new(move |worker, _| {
        if worker != 0 {
            return Vec::new();
        }
        vec![Box::new(Staged {
            stages: vec![first.clone(), second.clone()],
            release: reader_release.clone(),
            line: 0,
        }) as Box<dyn PartitionReader>]
    });
    let rule = "id: burst\ntitle: Burst\nseverity: high\nstages: [operate]\nmatch: {status: 401}\ngroup_by: [client]\nwindow: {size: 5m}\nthreshold: {count: 10}\n";
    let rules = RuleSet::from_text(Path::new("burst.yaml"), rule).unwrap();
    let options = RunOptions {
        allowed_lateness_ms: 120_000,
        ..RunOptions::default()
    };
    let (sender, receiver) = mpsc::channel();
    let run = std::thread::spawn(move || feedloop_pipeline::run(&rules, options, readers, sender));

    let mut findings: Vec<Finding> = Vec::new();
    let mut changes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(Output::Finding(finding)) => {
                // The early finding is out: now let the late event in.
                release.store(true, Ordering::SeqCst);
                findings.push(*finding);
            }
            Ok(Output::Change(change)) => changes.push(*change),
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    run.join().unwrap().unwrap();

    let phases: Vec<Phase> = findings.iter().map(|f| f.phase).collect();
    assert_eq!(phases, [Phase::Early, Phase::Final]);
    assert_eq!(findings[0].count, findings[1].count);
    let during = |f: &Finding| f.impact.as_ref().unwrap().routes[0].during.clone();
    // The early finding covers the KPI windows up to its last failure's, at 90 s: 22 calls.
    assert_eq!(during(&findings[0]).requests, 22);
    assert!(during(&findings[0]).p99_ms.unwrap() < 11.0);
    // The final also counts the late calls, and their latency.
    assert_eq!(during(&findings[1]).requests, 29);
    let p99 = during(&findings[1]).p99_ms.unwrap();
    assert!((4_950.0..=5_050.0).contains(&p99), "p99 {p99}");
    let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds[..2], [ChangeKind::Opened, ChangeKind::Updated]);
    assert_eq!(changes[1].finding.impact, findings[1].impact);
}
