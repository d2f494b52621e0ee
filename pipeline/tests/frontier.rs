//! Frontier progress: windows close while the input is still open, even when a partition is
//! idle, and a stopped run closes everything.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedloop_pipeline::{
    Output, PartitionReader, Phase, Position, ReadBatch, ReadStatus, ReaderFactory, RunOptions,
};
use feedloop_rules::{ApiEvent, RuleSet};

const START_MS: i64 = 1_700_000_040_000;

/// Ten minutes of one request per second from one client, then silence that never ends.
struct Steady {
    next: i64,
}

impl PartitionReader for Steady {
    fn name(&self) -> &str {
        "steady"
    }

    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus {
        for _ in 0..max.min(50) {
            if self.next >= 600 {
                return ReadStatus::Pending;
            }
            let event = ApiEvent {
                time_ms: START_MS + self.next * 1000,
                client: "198.51.100.7".into(),
                method: "GET".into(),
                path: "/".into(),
                status: Some(401),
                ..Default::default()
            };
            batch
                .events
                .push((event, Position::Line(self.next as u64 + 1)));
            batch.records += 1;
            self.next += 1;
        }
        ReadStatus::Ready
    }
}

/// A partition that has nothing and reports itself idle.
struct Quiet;

impl PartitionReader for Quiet {
    fn name(&self) -> &str {
        "quiet"
    }

    fn read(&mut self, _max: usize, _batch: &mut ReadBatch) -> ReadStatus {
        ReadStatus::Idle
    }
}

fn rules() -> RuleSet {
    let text = "id: burst\ntitle: Burst\nseverity: high\nstages: [operate]\nmatch: {status: 401}\ngroup_by: [client]\nwindow: {size: 1m}\nthreshold: {count: 5}\n";
    RuleSet::from_text(Path::new("burst.yaml"), text).unwrap()
}

/// Runs until the first final finding arrives, then stops the run. Returns the number of
/// final findings that arrived before the stop, and of all final findings, which depends on
/// how far the reader got before the stop.
fn run_until_first_final(workers: usize, readers: ReaderFactory) -> (usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        workers,
        allowed_lateness_ms: 10_000,
        batch_size: 50,
        stop: stop.clone(),
        ..RunOptions::default()
    };
    let (sender, receiver) = mpsc::channel();
    let rules = rules();
    let run = std::thread::spawn(move || feedloop_pipeline::run(&rules, options, readers, sender));

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before_stop = 0;
    while Instant::now() < deadline {
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(Output::Finding(f)) if f.phase == Phase::Final => {
                before_stop += 1;
                break;
            }
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let after_stop = receiver
        .iter()
        .filter(|o| matches!(o, Output::Finding(f) if f.phase == Phase::Final))
        .count();
    run.join().unwrap().unwrap();
    (before_stop, before_stop + after_stop)
}

#[test]
fn windows_close_while_input_is_open() {
    let readers: ReaderFactory = Arc::new(|_, _| vec![Box::new(Steady { next: 0 })]);
    let (before_stop, total) = run_until_first_final(1, readers);
    assert_eq!(before_stop, 1, "no window closed while the input was open");
    assert!((1..=10).contains(&total), "{total} final findings");
}

#[test]
fn idle_partition_on_same_worker_does_not_hold_windows() {
    let readers: ReaderFactory =
        Arc::new(|_, _| vec![Box::new(Steady { next: 0 }), Box::new(Quiet)]);
    let (before_stop, total) = run_until_first_final(1, readers);
    assert_eq!(before_stop, 1, "the idle partition held every window open");
    assert!((1..=10).contains(&total), "{total} final findings");
}

#[test]
fn idle_worker_does_not_hold_windows() {
    // Worker 0 reads the steady partition; worker 1 only has the idle one.
    let slots: Mutex<Vec<Option<Box<dyn PartitionReader>>>> = Mutex::new(vec![
        Some(Box::new(Steady { next: 0 })),
        Some(Box::new(Quiet)),
    ]);
    let readers: ReaderFactory =
        Arc::new(move |worker, _| slots.lock().unwrap()[worker].take().into_iter().collect());
    let (before_stop, total) = run_until_first_final(2, readers);
    assert_eq!(before_stop, 1, "the idle worker held every window open");
    assert!((1..=10).contains(&total), "{total} final findings");
}

/// One event far ahead, then a burst that does not move the watermark, then silence.
struct Straggling {
    step: usize,
}

impl PartitionReader for Straggling {
    fn name(&self) -> &str {
        "straggling"
    }

    fn read(&mut self, _max: usize, batch: &mut ReadBatch) -> ReadStatus {
        let event = |offset_s: i64| ApiEvent {
            time_ms: START_MS + offset_s * 1000,
            client: "198.51.100.7".into(),
            method: "POST".into(),
            path: "/login".into(),
            status: Some(401),
            ..Default::default()
        };
        self.step += 1;
        match self.step {
            1 => batch.events.push((event(100), Position::Line(1))),
            2 => {
                for i in 0..5 {
                    batch.events.push((event(50), Position::Line(2 + i)));
                }
            }
            _ => return ReadStatus::Pending,
        }
        batch.records += batch.events.len() as u64;
        ReadStatus::Ready
    }
}

#[test]
fn early_finding_does_not_wait_for_watermark() {
    let stop = Arc::new(AtomicBool::new(false));
    let options = RunOptions {
        allowed_lateness_ms: 100_000,
        stop: stop.clone(),
        ..RunOptions::default()
    };
    let (sender, receiver) = mpsc::channel();
    let readers: ReaderFactory = Arc::new(|_, _| vec![Box::new(Straggling { step: 0 })]);
    let rules = rules();
    let run = std::thread::spawn(move || feedloop_pipeline::run(&rules, options, readers, sender));

    // The burst leaves the watermark where it was, so only an early finding can arrive now.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut early = None;
    while early.is_none() && Instant::now() < deadline {
        if let Ok(Output::Finding(f)) = receiver.recv_timeout(Duration::from_millis(50)) {
            early = Some(f);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rest: Vec<Output> = receiver.iter().collect();
    run.join().unwrap().unwrap();

    let early = early.expect("no early finding while the watermark stood still");
    assert_eq!(early.phase, Phase::Early);
    assert_eq!(early.count, 5);
    let finals = rest
        .iter()
        .filter(|o| matches!(o, Output::Finding(f) if f.phase == Phase::Final));
    assert_eq!(finals.count(), 1);
}
