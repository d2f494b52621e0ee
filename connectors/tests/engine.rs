//! The delivery engine with a scripted in-process receiver: outbox order, replays, grouping,
//! retries, fallbacks, dead letters and recovery of an interrupted create.
//!
//! The receivers' own HTTP behaviour is tested against loopback servers in their own files;
//! here the receiver is a stand-in so the engine's decisions can be checked one by one.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedloop_connectors::delivery::engine::{Engine, EngineSettings, RetryConfig};
use feedloop_connectors::delivery::route::{Catalog, RouteConfig, Router};
use feedloop_connectors::delivery::{
    DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering,
};
use feedloop_pipeline::lifecycle::{finding_change_id, resolve_change_id};
use feedloop_pipeline::{Change, ChangeKind, Finding};
use feedloop_rules::HumanDuration;

/// What the stand-in receiver saw for one apply.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    key: String,
    kind: ChangeKind,
    remote: Option<String>,
    rendering: Rendering,
    findings: usize,
    group_count: Option<u64>,
    at: Instant,
}

#[derive(Default)]
struct Script {
    calls: Vec<Call>,
    /// Failures to return before behaving normally.
    failures: VecDeque<DeliveryError>,
    /// Keys of objects "created" remotely, including by a create whose response was lost.
    created: Vec<String>,
    /// Loses the response of the next create: makes it, then reports a retryable failure.
    lose_next_create: bool,
    recovered: u32,
}

struct Stand {
    name: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver for Stand {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let mut script = self.script.lock().unwrap();
        script.calls.push(Call {
            key: notice.key.clone(),
            kind: notice.kind,
            remote: remote.map(|r| format!("{}:{}", r.id, if r.open { "open" } else { "closed" })),
            rendering,
            findings: notice.findings.len(),
            group_count: notice.group.as_ref().map(|g| g.count),
            at: Instant::now(),
        });
        if let Some(failure) = script.failures.pop_front() {
            return Err(failure);
        }
        let open = notice.kind != ChangeKind::Resolved;
        match remote {
            None if !open => Ok(Effect::Skipped("nothing was delivered".into())),
            None => {
                let id = format!("OBJ-{}", script.created.len() + 1);
                script.created.push(notice.key.clone());
                let remote = Remote {
                    id,
                    open: true,
                    ..Default::default()
                };
                if std::mem::take(&mut script.lose_next_create) {
                    return Err(DeliveryError::retry("timed out reading the answer"));
                }
                progress.created(&remote);
                Ok(Effect::Applied(remote))
            }
            Some(remote) => Ok(Effect::Applied(Remote {
                open,
                ..remote.clone()
            })),
        }
    }

    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let mut script = self.script.lock().unwrap();
        script.recovered += 1;
        Ok(script
            .created
            .iter()
            .position(|k| *k == notice.key)
            .map(|i| Remote {
                id: format!("OBJ-{}", i + 1),
                open: true,
                ..Default::default()
            }))
    }
}

struct Setup {
    dir: PathBuf,
    script: Arc<Mutex<Script>>,
}

impl Setup {
    fn new(test: &str) -> Setup {
        let dir =
            std::env::temp_dir().join(format!("feedloop-engine-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Setup {
            dir,
            script: Arc::new(Mutex::new(Script::default())),
        }
    }

    fn engine(&self, routes: &str) -> Engine {
        self.try_engine(routes).unwrap()
    }

    fn try_engine(&self, routes: &str) -> Result<Engine, String> {
        let configs: Vec<RouteConfig> = serde_norway::from_str(routes).unwrap();
        let router = Router::new(&configs, &["stand".to_string()]).unwrap();
        Engine::start(EngineSettings {
            state_dir: self.dir.clone(),
            dead_letter_path: self.dir.join("dead.jsonl"),
            router,
            catalog: Catalog::new(),
            receivers: vec![Box::new(Stand {
                name: "stand".into(),
                script: self.script.clone(),
            })],
            retry: RetryConfig {
                max_attempts: 4,
                initial_backoff: HumanDuration(10),
                max_backoff: HumanDuration(50),
            },
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.script.lock().unwrap().calls.clone()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const EVERYTHING: &str = "- receivers: [stand]";

fn finding(fingerprint: &str, count: u64) -> Finding {
    serde_json::from_value(serde_json::json!({
        "rule_id": "login-bruteforce", "title": "Repeated failed logins", "fingerprint": fingerprint,
        "phase": "early", "kind": "threshold", "severity": "high", "stages": ["operate"],
        "tags": [], "service": "accounts", "group": {"client": "10.0.0.1"},
        "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z"},
        "condition": "count >= 3", "count": count, "first_seen": "", "last_seen": "", "evidence": []
    }))
    .unwrap()
}

/// Returns a change with the id the lifecycle gives it.
fn change(kind: ChangeKind, fingerprint: &str, count: u64) -> Change {
    let finding = finding(fingerprint, count);
    let change_id = match kind {
        ChangeKind::Resolved => resolve_change_id(fingerprint, 1_000 + count as i64),
        _ => finding_change_id(&finding),
    };
    Change {
        kind,
        change_id,
        finding,
        resolve_at_ms: 1_000,
    }
}

fn lifecycle(fingerprint: &str) -> Vec<Change> {
    vec![
        change(ChangeKind::Opened, fingerprint, 3),
        change(ChangeKind::Updated, fingerprint, 9),
        change(ChangeKind::Resolved, fingerprint, 9),
        change(ChangeKind::Reopened, fingerprint, 4),
    ]
}

fn summary(calls: &[Call]) -> Vec<(ChangeKind, Option<String>)> {
    calls.iter().map(|c| (c.kind, c.remote.clone())).collect()
}

#[test]
fn changes_apply_in_order_to_one_object() {
    let setup = Setup::new("order");
    let mut engine = setup.engine(EVERYTHING);
    for change in lifecycle("fp1") {
        engine.submit(&change);
    }
    let report = engine.finish();
    assert_eq!(
        summary(&setup.calls()),
        [
            (ChangeKind::Opened, None),
            (ChangeKind::Updated, Some("OBJ-1:open".into())),
            (ChangeKind::Resolved, Some("OBJ-1:open".into())),
            (ChangeKind::Reopened, Some("OBJ-1:closed".into())),
        ]
    );
    assert_eq!((report.changes, report.queued), (4, 4));
    assert_eq!(report.receivers[0].applied, 4);
    assert!(!report.lost_anything());
}

#[test]
fn engine_replay_applies_nothing_twice() {
    let setup = Setup::new("replay");
    let mut engine = setup.engine(EVERYTHING);
    for change in lifecycle("fp1") {
        engine.submit(&change);
    }
    engine.finish();
    let mut again = setup.engine(EVERYTHING);
    for change in lifecycle("fp1") {
        again.submit(&change);
    }
    // A change the first run never saw is the only one applied.
    again.submit(&change(ChangeKind::Updated, "fp1", 12));
    let report = again.finish();
    assert_eq!((report.queued, report.replayed), (1, 4));
    let calls = setup.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(
        (calls[4].kind, calls[4].remote.as_deref()),
        (ChangeKind::Updated, Some("OBJ-1:open"))
    );
    assert_eq!(setup.script.lock().unwrap().created, ["fp1"]);
}

#[test]
fn fifty_findings_within_the_group_wait_become_one_notice() {
    let setup = Setup::new("group");
    let mut engine =
        setup.engine("- receivers: [stand]\n  group_by: [rule_id]\n  group_wait: 300ms");
    for i in 0..50 {
        engine.submit(&change(ChangeKind::Opened, &format!("fp{i:02}"), 3));
    }
    std::thread::sleep(Duration::from_millis(400));
    engine.tick();
    let report = engine.finish();
    let calls = setup.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].kind, ChangeKind::Opened);
    assert_eq!(calls[0].findings, 50);
    assert_eq!(calls[0].group_count, Some(50));
    assert!(calls[0].key.starts_with("group-"));
    assert_eq!((report.changes, report.grouped, report.queued), (50, 49, 1));
}

#[test]
fn engine_group_resolves_with_its_members() {
    let setup = Setup::new("group-resolve");
    let mut engine = setup.engine("- receivers: [stand]\n  group_by: [rule_id]");
    engine.submit(&change(ChangeKind::Opened, "a", 3));
    engine.submit(&change(ChangeKind::Opened, "b", 3));
    engine.submit(&change(ChangeKind::Resolved, "a", 3));
    engine.submit(&change(ChangeKind::Resolved, "b", 3));
    engine.finish();
    let kinds: Vec<_> = setup.calls().iter().map(|c| (c.kind, c.findings)).collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Opened, 1),
            (ChangeKind::Updated, 2),
            (ChangeKind::Updated, 1),
            (ChangeKind::Resolved, 2),
        ]
    );
}

#[test]
fn retries_wait_at_least_as_long_as_asked() {
    let setup = Setup::new("retry");
    setup
        .script
        .lock()
        .unwrap()
        .failures
        .extend([DeliveryError::Retry {
            reason: "HTTP 429".into(),
            after: Some(Duration::from_millis(400)),
        }]);
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    let report = engine.finish();
    let calls = setup.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(400));
    assert_eq!(
        (report.receivers[0].retried, report.receivers[0].applied),
        (1, 1)
    );
}

#[test]
fn a_size_rejection_falls_back_and_a_second_rejection_is_dead_lettered() {
    let setup = Setup::new("reject");
    let reject = |fallback| DeliveryError::Reject {
        reason: "POST /issue returned HTTP 400".into(),
        status: Some(400),
        response: r#"{"errors":{"summary":"too long"}}"#.into(),
        fallback,
    };
    // fp1 is rejected for its size, and its minimal message for something else: dead letter.
    setup
        .script
        .lock()
        .unwrap()
        .failures
        .extend([reject(true), reject(false)]);
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    engine.submit(&change(ChangeKind::Opened, "fp2", 3));
    let report = engine.finish();
    let renderings: Vec<_> = setup
        .calls()
        .iter()
        .map(|c| (c.key.clone(), c.rendering))
        .collect();
    assert_eq!(
        renderings,
        [
            ("fp1".to_string(), Rendering::Full),
            ("fp1".to_string(), Rendering::Minimal),
            ("fp2".to_string(), Rendering::Full),
        ]
    );
    let r = &report.receivers[0];
    assert_eq!((r.fallbacks, r.dead_lettered, r.applied), (1, 1, 1));
    assert!(report.lost_anything());
    let dead = std::fs::read_to_string(setup.dir.join("dead.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(line["receiver"], "stand");
    assert_eq!(line["status"], 400);
    assert_eq!(line["response"], r#"{"errors":{"summary":"too long"}}"#);
    assert_eq!(line["notice"]["key"], "fp1");
}

#[test]
fn engine_recovers_a_lost_create() {
    let setup = Setup::new("recover");
    setup.script.lock().unwrap().lose_next_create = true;
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    engine.submit(&change(ChangeKind::Updated, "fp1", 5));
    let report = engine.finish();
    let script = setup.script.lock().unwrap();
    assert_eq!(script.created, ["fp1"]);
    assert_eq!(script.recovered, 1);
    assert_eq!(
        summary(&script.calls),
        [
            (ChangeKind::Opened, None),
            (ChangeKind::Opened, Some("OBJ-1:open".into())),
            (ChangeKind::Updated, Some("OBJ-1:open".into())),
        ]
    );
    assert_eq!(report.receivers[0].recovered, 1);
}

#[test]
fn engine_keeps_failed_notices_for_next_start() {
    let setup = Setup::new("gave-up");
    setup
        .script
        .lock()
        .unwrap()
        .failures
        .extend((0..4).map(|_| DeliveryError::retry("HTTP 503")));
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    let report = engine.finish();
    assert_eq!(report.receivers[0].pending, 1);
    assert!(report.receivers[0]
        .gave_up
        .as_deref()
        .unwrap()
        .starts_with("HTTP 503 (after 4 attempts)"));
    assert!(report.lost_anything());
    // The next start delivers it first.
    let engine = setup.engine(EVERYTHING);
    let report = engine.finish();
    assert_eq!(
        (report.receivers[0].applied, report.receivers[0].pending),
        (1, 0)
    );
    assert_eq!(setup.script.lock().unwrap().created, ["fp1"]);
}

#[test]
fn open_findings_are_kept_for_the_next_run() {
    let setup = Setup::new("open");
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    engine.submit(&change(ChangeKind::Opened, "fp2", 3));
    engine.submit(&change(ChangeKind::Resolved, "fp2", 3));
    engine.finish();
    let engine = setup.engine(EVERYTHING);
    let open: Vec<_> = engine
        .open_findings()
        .into_iter()
        .map(|o| (o.finding.fingerprint, o.resolve_at_ms))
        .collect();
    assert_eq!(open, [("fp1".to_string(), 1_000)]);
    engine.finish();
}

#[test]
fn two_runs_cannot_share_a_state_folder() {
    let setup = Setup::new("lock");
    let first = setup.engine(EVERYTHING);
    let err = setup.try_engine(EVERYTHING).err().unwrap();
    assert_eq!(
        err,
        format!(
            "another feedloop run is using the delivery state folder {}; stop it, or give this run its own delivery.state_dir",
            setup.dir.display()
        )
    );
    first.finish();
    setup.engine(EVERYTHING).finish();
}

#[test]
fn engine_retries_past_limit_while_live() {
    let setup = Setup::new("live-retry");
    setup
        .script
        .lock()
        .unwrap()
        .failures
        .extend((0..6).map(|_| DeliveryError::retry("HTTP 503")));
    let mut engine = setup.engine(EVERYTHING);
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    // Four attempts are allowed, but the input has not ended, so the worker goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.calls().len() < 7 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = engine.finish();
    let r = &report.receivers[0];
    assert_eq!((r.applied, r.retried, r.pending), (1, 6, 0));
    assert_eq!(r.gave_up, None);
}

#[test]
fn changes_waiting_in_a_group_survive_a_crash() {
    let setup = Setup::new("group-crash");
    let routes = "- receivers: [stand]\n  group_by: [rule_id]\n  group_wait: 1h";
    let mut engine = setup.engine(routes);
    engine.submit(&change(ChangeKind::Opened, "a", 3));
    engine.submit(&change(ChangeKind::Opened, "b", 3));
    // Dropped without finishing: the group's wait never ended in this process.
    drop(engine);
    assert!(setup.calls().is_empty());
    let engine = setup.engine(routes);
    engine.finish();
    let calls = setup.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].kind, calls[0].findings), (ChangeKind::Opened, 2));
}

#[test]
fn a_group_that_opens_and_resolves_within_its_wait_is_still_seen() {
    let setup = Setup::new("group-flash");
    let mut engine = setup.engine("- receivers: [stand]\n  group_by: [rule_id]\n  group_wait: 1h");
    engine.submit(&change(ChangeKind::Opened, "a", 3));
    engine.submit(&change(ChangeKind::Resolved, "a", 3));
    engine.finish();
    assert_eq!(
        summary(&setup.calls()),
        [
            (ChangeKind::Opened, None),
            (ChangeKind::Resolved, Some("OBJ-1:open".into())),
        ]
    );
}

#[test]
fn a_replayed_group_sends_nothing_and_keeps_its_open_members() {
    let setup = Setup::new("group-replay");
    let routes = "- receivers: [stand]\n  group_by: [rule_id]\n  group_wait: 1h";
    let changes = [
        change(ChangeKind::Opened, "a", 3),
        change(ChangeKind::Opened, "b", 3),
    ];
    let mut engine = setup.engine(routes);
    for change in &changes {
        engine.submit(change);
    }
    engine.finish();
    let mut again = setup.engine(routes);
    for change in &changes {
        again.submit(change);
    }
    // b resolving leaves a open, so the group stays open.
    again.submit(&change(ChangeKind::Resolved, "b", 3));
    let report = again.finish();
    let calls = setup.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.kind, c.findings))
            .collect::<Vec<_>>(),
        [(ChangeKind::Opened, 2), (ChangeKind::Updated, 1)]
    );
    assert_eq!(report.queued, 1);
}

#[test]
fn an_open_finding_reaches_a_route_added_later() {
    let setup = Setup::new("catch-up");
    let mut engine = setup.engine("- match: {stages: [design]}\n  receivers: [stand]");
    engine.submit(&change(ChangeKind::Opened, "fp1", 3));
    let report = engine.finish();
    assert_eq!(report.unrouted, 1);
    assert!(setup.calls().is_empty());
    let engine = setup.engine(EVERYTHING);
    engine.finish();
    assert_eq!(summary(&setup.calls()), [(ChangeKind::Opened, None)]);
    // Once it has an object there, a later start sends nothing more.
    setup.engine(EVERYTHING).finish();
    assert_eq!(setup.calls().len(), 1);
}

#[test]
fn an_unwritable_dead_letter_file_fails_the_start() {
    let setup = Setup::new("dead-dir");
    std::fs::create_dir_all(setup.dir.join("dead.jsonl")).unwrap();
    let err = setup.try_engine(EVERYTHING).err().unwrap();
    assert!(
        err.starts_with(&format!(
            "failed to open the delivery dead-letter file {}:",
            setup.dir.join("dead.jsonl").display()
        )),
        "{err}"
    );
    assert!(
        err.ends_with("set delivery.dead_letter to a writable file"),
        "{err}"
    );
}
