//! The delivery engine: routes changes, groups them, queues them in the outbox and runs one
//! worker thread per receiver.
//!
//! [`Engine::submit`] takes each lifecycle change from the dataflow, asks the router where it
//! goes, folds it into its route's group, and once the group's wait is over writes one notice
//! per receiver to the outbox, in the same transaction as the finding's new state. Each
//! receiver's worker takes its notices from the outbox in order and applies them; a worker that
//! waits for a rate limit or a failing service holds up only its own receiver.
//!
//! A worker retries what a later attempt can fix, with exponential backoff and full jitter,
//! never sooner than a service asked; it retries a rejection caused by size or format once with
//! a minimal message; it sends other rejections to the dead-letter file with the service's
//! answer. After the last attempt the notice stays in the outbox, the worker stops for this run,
//! and the next start delivers it first. Groups still waiting when the input ends are sent at
//! once. Nothing is dropped without a count: unrouted changes, changes folded into a group,
//! fallbacks, dead letters and notices left in the outbox all appear in the report.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver as Wake, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use feedloop_pipeline::{Change, ChangeKind, Finding, OpenFinding};
use feedloop_rules::HumanDuration;

use super::route::{label_value, target_of, Catalog, Destination, Grouping, Router};
use super::store::{Outcome, Pending, Store};
use super::{DeliveryError, Effect, GroupInfo, Notice, Progress, Receiver, Remote, Rendering};

/// Retry settings of a receiver's worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per notice before it is left in the outbox for the next start.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; each later one waits up to twice as long.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// The maximum wait between attempts, unless a service requests more.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
}

fn default_attempts() -> u32 {
    10
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration(60_000)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// Counts of one receiver's work during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverReport {
    pub name: String,
    /// Notices applied.
    pub applied: u64,
    /// Notices with nothing to do, such as a resolve of a finding never delivered.
    pub skipped: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Notices sent as a minimal message after a size or format rejection.
    pub fallbacks: u64,
    /// Notices rejected and written to the dead-letter file.
    pub dead_lettered: u64,
    /// Templates that failed to render; the plain default was sent.
    pub render_failures: u64,
    /// Objects found again after an interrupted create.
    pub recovered: u64,
    /// Notices still in the outbox when the run ended.
    pub pending: u64,
    /// The last error, when the worker gave up for this run.
    pub gave_up: Option<String>,
}

/// What the engine did during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineReport {
    /// Lifecycle changes received from the dataflow.
    pub changes: u64,
    /// Changes no route took.
    pub unrouted: u64,
    /// Changes folded into a group's message with others.
    pub grouped: u64,
    /// Notices written to the outbox.
    pub queued: u64,
    /// Notices left out because the receiver had the change already.
    pub replayed: u64,
    /// Errors of the state store.
    pub store_errors: Vec<String>,
    pub receivers: Vec<ReceiverReport>,
}

impl EngineReport {
    /// Returns true when a change did not reach a receiver it was routed to.
    pub fn lost_anything(&self) -> bool {
        !self.store_errors.is_empty()
            || self
                .receivers
                .iter()
                .any(|r| r.dead_lettered > 0 || r.pending > 0)
    }
}

/// Everything the engine needs to start.
pub struct EngineSettings {
    /// The directory of the state store.
    pub state_dir: PathBuf,
    /// Where rejected notices are appended, as JSON Lines.
    pub dead_letter_path: PathBuf,
    pub router: Router,
    pub catalog: Catalog,
    pub receivers: Vec<Box<dyn Receiver>>,
    pub retry: RetryConfig,
    /// Set to stop the workers after their current attempt.
    pub stop: Arc<AtomicBool>,
}

/// Changes of one group waiting to become a notice.
struct Batch {
    route: String,
    key: String,
    labels: BTreeMap<String, String>,
    receivers: Vec<String>,
    grouped: bool,
    /// Each member's latest state and whether it is open.
    members: BTreeMap<String, (Finding, bool)>,
    /// Changes not yet sent.
    change_ids: Vec<String>,
    kinds: Vec<ChangeKind>,
    due: Option<Instant>,
    /// Whether a notice went out, and whether the group was open in the last one.
    sent: bool,
    open_when_sent: bool,
    interval: Duration,
}

struct Worker {
    name: String,
    wake: Sender<()>,
    thread: JoinHandle<ReceiverReport>,
}

/// The running delivery engine.
pub struct Engine {
    /// Held for the whole run: two runs on one state folder would race on the same outbox.
    _lock: File,
    store: Store,
    router: Router,
    catalog: Catalog,
    batches: HashMap<(String, String), Batch>,
    workers: Vec<Worker>,
    finishing: Arc<AtomicBool>,
    report: EngineReport,
}

impl Engine {
    /// Opens the store, checks every receiver against its service and starts the workers.
    pub fn start(settings: EngineSettings) -> Result<Engine, String> {
        let lock = lock_state_dir(&settings.state_dir)?;
        let store = Store::open(&settings.state_dir).map_err(|err| err.to_string())?;
        let dead_letters = Arc::new(Mutex::new(DeadLetterFile::new(&settings.dead_letter_path)));
        let finishing = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for mut receiver in settings.receivers {
            receiver
                .check()
                .map_err(|err| format!("receiver `{}`: {err}", receiver.name()))?;
            let name = receiver.name().to_string();
            let (wake, woken) = mpsc::channel();
            let context = WorkerContext {
                name: name.clone(),
                store: Store::open(&settings.state_dir).map_err(|err| err.to_string())?,
                retry: settings.retry,
                stop: settings.stop.clone(),
                finishing: finishing.clone(),
                dead_letters: dead_letters.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("receiver-{name}"))
                .spawn(move || context.run(receiver, woken))
                .map_err(|err| format!("failed to start receiver `{name}`: {err}"))?;
            workers.push(Worker { name, wake, thread });
        }
        Ok(Engine {
            _lock: lock,
            store,
            router: settings.router,
            catalog: settings.catalog,
            batches: HashMap::new(),
            workers,
            finishing,
            report: EngineReport::default(),
        })
    }

    /// Returns the findings open when the last run stopped.
    pub fn open_findings(&self) -> Vec<OpenFinding> {
        self.store.open_findings().unwrap_or_default()
    }

    /// Takes one change: routes it, groups it, and queues what is due.
    pub fn submit(&mut self, change: &Change) {
        self.report.changes += 1;
        let target = target_of(&self.catalog, &change.finding);
        let destinations = self.router.route(&change.finding, &target);
        if destinations.is_empty() {
            self.report.unrouted += 1;
            self.record(Some(change), Vec::new());
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        let mut grouped = 0;
        for destination in destinations {
            let batch = self.batch_for(&destination, &change.finding);
            if !batch.change_ids.is_empty() {
                grouped += 1;
            }
            batch.members.insert(
                change.finding.fingerprint.clone(),
                (change.finding.clone(), change.kind.leaves_open()),
            );
            batch.change_ids.push(change.change_id.clone());
            batch.kinds.push(change.kind);
            let wait = if batch.sent {
                batch.interval
            } else {
                Duration::from_millis(destination.grouping.wait_ms)
            };
            let at = *batch.due.get_or_insert(now + wait);
            if at <= now {
                due.push((batch.route.clone(), batch.key.clone()));
            }
        }
        self.report.grouped += grouped;
        let notices = due.iter().flat_map(|id| self.flush(id)).collect::<Vec<_>>();
        self.record(Some(change), notices);
    }

    /// Sends the groups whose wait is over; call it regularly.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<_> = self
            .batches
            .iter()
            .filter(|(_, b)| b.due.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let notices = due.iter().flat_map(|id| self.flush(id)).collect();
        self.record(None, notices);
    }

    /// Sends every waiting group, lets the workers empty the outbox, and returns the report.
    pub fn finish(mut self) -> EngineReport {
        let ids: Vec<_> = self
            .batches
            .iter()
            .filter(|(_, b)| b.due.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let notices = ids.iter().flat_map(|id| self.flush(id)).collect();
        self.record(None, notices);
        self.finishing.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.wake.send(());
            match worker.thread.join() {
                Ok(report) => self.report.receivers.push(report),
                Err(_) => self.report.receivers.push(ReceiverReport {
                    name: worker.name,
                    gave_up: Some("the receiver's thread panicked".to_string()),
                    ..Default::default()
                }),
            }
        }
        if let Ok(queued) = self.store.queued() {
            for report in &mut self.report.receivers {
                report.pending = queued
                    .iter()
                    .find(|(name, _)| *name == report.name)
                    .map_or(0, |(_, n)| *n);
            }
        }
        self.report
    }

    fn batch_for(&mut self, destination: &Destination, finding: &Finding) -> &mut Batch {
        let grouping: &Grouping = &destination.grouping;
        let grouped = !grouping.by.is_empty();
        let labels: BTreeMap<String, String> = grouping
            .by
            .iter()
            .map(|label| (label.clone(), label_value(label, finding)))
            .collect();
        let key = if grouped {
            group_key(&destination.route, &labels)
        } else {
            finding.fingerprint.clone()
        };
        self.batches
            .entry((destination.route.clone(), key.clone()))
            .or_insert_with(|| Batch {
                route: destination.route.clone(),
                key,
                labels,
                receivers: destination.receivers.clone(),
                grouped,
                members: BTreeMap::new(),
                change_ids: Vec::new(),
                kinds: Vec::new(),
                due: None,
                sent: false,
                open_when_sent: false,
                interval: Duration::from_millis(grouping.interval_ms),
            })
    }

    /// Turns a batch's waiting changes into one notice per receiver.
    fn flush(&mut self, id: &(String, String)) -> Vec<(String, Notice)> {
        let Some(batch) = self.batches.get_mut(id) else {
            return Vec::new();
        };
        batch.due = None;
        if batch.change_ids.is_empty() {
            return Vec::new();
        }
        let open = batch.members.values().any(|(_, open)| *open);
        // The receivers decide between create and update from the state store; the kind says
        // what the group as a whole did since its last message.
        let kind = if !batch.grouped && batch.kinds.len() == 1 {
            batch.kinds[0]
        } else if !open {
            ChangeKind::Resolved
        } else if !batch.sent {
            ChangeKind::Opened
        } else if !batch.open_when_sent {
            ChangeKind::Reopened
        } else {
            ChangeKind::Updated
        };
        let change_id = if batch.change_ids.len() == 1 {
            batch.change_ids[0].clone()
        } else {
            combined_id(&batch.change_ids)
        };
        batch.change_ids.clear();
        batch.kinds.clear();
        batch.sent = true;
        batch.open_when_sent = open;
        let mut findings: Vec<Finding> = batch
            .members
            .values()
            .filter(|(_, member_open)| *member_open || !open)
            .map(|(finding, _)| finding.clone())
            .collect();
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        let target = target_of(&self.catalog, &findings[0]);
        let notice = Notice {
            key: batch.key.clone(),
            change_id,
            kind,
            group: batch.grouped.then(|| GroupInfo {
                labels: batch.labels.clone(),
                count: findings.len() as u64,
            }),
            findings,
            target,
        };
        batch
            .receivers
            .iter()
            .map(|receiver| (receiver.clone(), notice.clone()))
            .collect()
    }

    fn record(&mut self, change: Option<&Change>, notices: Vec<(String, Notice)>) {
        if change.is_none() && notices.is_empty() {
            return;
        }
        match self.store.record(change, &notices) {
            Ok(queued) => {
                self.report.queued += queued as u64;
                self.report.replayed += (notices.len() - queued) as u64;
            }
            Err(err) => {
                tracing::error!(error = %err, "failed to record a change in the delivery state store");
                let message = err.to_string();
                if !self.report.store_errors.contains(&message) {
                    self.report.store_errors.push(message);
                }
            }
        }
        if !notices.is_empty() {
            for worker in &self.workers {
                if notices.iter().any(|(name, _)| *name == worker.name) {
                    let _ = worker.wake.send(());
                }
            }
        }
    }
}

/// Takes the state folder's lock, so only one run at a time delivers from its outbox.
fn lock_state_dir(dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(dir).map_err(|err| {
        format!(
            "failed to create delivery state folder {}: {err}",
            dir.display()
        )
    })?;
    let path = dir.join("run.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| format!("failed to open {}: {err}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another feedloop run is using the delivery state folder {}; stop it, or give this run its own delivery.state_dir",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(format!("failed to lock {}: {err}", path.display()))
        }
    }
}

fn group_key(route: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    for (label, value) in labels {
        hasher.update([0]);
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    format!(
        "group-{}",
        digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn combined_id(ids: &[String]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let mut hasher = Sha256::new();
    for id in &sorted {
        hasher.update(id.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The append-only file of rejected notices.
struct DeadLetterFile {
    path: PathBuf,
    file: Option<File>,
}

impl DeadLetterFile {
    fn new(path: &Path) -> DeadLetterFile {
        DeadLetterFile {
            path: path.to_path_buf(),
            file: None,
        }
    }

    fn write(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        let mut line = serde_json::to_vec(value).expect("a JSON value always serializes");
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    }
}

struct WorkerContext {
    name: String,
    store: Store,
    retry: RetryConfig,
    stop: Arc<AtomicBool>,
    finishing: Arc<AtomicBool>,
    dead_letters: Arc<Mutex<DeadLetterFile>>,
}

/// Records a receiver's creates in the store as they happen.
struct StoreProgress<'a> {
    store: &'a mut Store,
    receiver: &'a str,
    key: &'a str,
    render_failures: u64,
}

impl Progress for StoreProgress<'_> {
    fn created(&mut self, remote: &Remote) {
        if let Err(err) = self.store.save_remote(self.receiver, self.key, remote) {
            tracing::error!(receiver = self.receiver, error = %err, "failed to record a created object");
        }
    }

    fn render_failed(&mut self, reason: &str) {
        self.render_failures += 1;
        tracing::warn!(
            receiver = self.receiver,
            error = reason,
            "template failed; sent the plain message"
        );
    }
}

/// Why a worker stopped working through its outbox.
enum Halt {
    Stopped,
    GaveUp(String),
}

impl WorkerContext {
    fn run(mut self, mut receiver: Box<dyn Receiver>, woken: Wake<()>) -> ReceiverReport {
        let mut report = ReceiverReport {
            name: self.name.clone(),
            ..Default::default()
        };
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return report;
            }
            let finishing = self.finishing.load(Ordering::SeqCst);
            let pending = match self.store.pending(&self.name, 64) {
                Ok(pending) => pending,
                Err(err) => {
                    report.gave_up = Some(err.to_string());
                    return report;
                }
            };
            if pending.is_empty() {
                if finishing {
                    return report;
                }
                match woken.recv_timeout(Duration::from_millis(500)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return report,
                }
            }
            for item in pending {
                match self.deliver(receiver.as_mut(), &item, &mut report) {
                    Ok(()) => {}
                    Err(Halt::Stopped) => return report,
                    Err(Halt::GaveUp(reason)) => {
                        tracing::error!(receiver = %self.name, error = %reason, "receiver keeps failing; its notices stay in the outbox for the next start");
                        report.gave_up = Some(reason);
                        return report;
                    }
                }
            }
        }
    }

    fn deliver(
        &mut self,
        receiver: &mut dyn Receiver,
        item: &Pending,
        report: &mut ReceiverReport,
    ) -> Result<(), Halt> {
        let notice = &item.notice;
        let mut rendering = Rendering::Full;
        let mut attempt = 0;
        loop {
            let outcome = self.attempt(receiver, notice, rendering, report);
            let error = match outcome {
                Ok(effect) => {
                    let (outcome, remote) = match &effect {
                        Effect::Applied(remote) => (Outcome::Applied, Some(remote)),
                        Effect::Skipped(_) => (Outcome::Skipped, None),
                    };
                    self.store
                        .complete(&self.name, item, outcome, remote)
                        .map_err(|err| Halt::GaveUp(err.to_string()))?;
                    match outcome {
                        Outcome::Applied => report.applied += 1,
                        _ => report.skipped += 1,
                    }
                    return Ok(());
                }
                Err(error) => error,
            };
            match error {
                DeliveryError::Reject { fallback: true, .. } if rendering == Rendering::Full => {
                    report.fallbacks += 1;
                    rendering = Rendering::Minimal;
                }
                DeliveryError::Reject {
                    reason,
                    status,
                    response,
                    ..
                } => {
                    self.dead_letter(item, &reason, status, &response);
                    self.store
                        .complete(&self.name, item, Outcome::DeadLettered, None)
                        .map_err(|err| Halt::GaveUp(err.to_string()))?;
                    report.dead_lettered += 1;
                    return Ok(());
                }
                DeliveryError::Retry { reason, after } => {
                    attempt += 1;
                    if attempt >= self.retry.max_attempts {
                        return Err(Halt::GaveUp(format!("{reason} (after {attempt} attempts)")));
                    }
                    report.retried += 1;
                    let wait = backoff(&self.retry, attempt).max(after.unwrap_or_default());
                    tracing::warn!(receiver = %self.name, attempt, wait_ms = wait.as_millis() as u64, error = %reason, "delivery failed; retrying");
                    self.sleep(wait)?;
                }
            }
        }
    }

    /// One try: recovers an interrupted create first, records a create's intent, applies.
    fn attempt(
        &mut self,
        receiver: &mut dyn Receiver,
        notice: &Notice,
        rendering: Rendering,
        report: &mut ReceiverReport,
    ) -> Result<Effect, DeliveryError> {
        let store_error = |err: super::store::StoreError| DeliveryError::retry(err.to_string());
        let mut remote = self
            .store
            .remote(&self.name, &notice.key)
            .map_err(store_error)?;
        if remote.is_none()
            && self
                .store
                .has_intent(&self.name, &notice.key)
                .map_err(store_error)?
        {
            match receiver.recover(notice)? {
                Some(found) => {
                    self.store
                        .save_remote(&self.name, &notice.key, &found)
                        .map_err(store_error)?;
                    report.recovered += 1;
                    remote = Some(found);
                }
                None => self
                    .store
                    .clear_intent(&self.name, &notice.key)
                    .map_err(store_error)?,
            }
        }
        let creating = remote.is_none() && notice.kind != ChangeKind::Resolved;
        if creating {
            self.store
                .begin_create(&self.name, &notice.key, &notice.change_id)
                .map_err(store_error)?;
        }
        let mut progress = StoreProgress {
            store: &mut self.store,
            receiver: &self.name,
            key: &notice.key,
            render_failures: 0,
        };
        let result = receiver.apply(notice, remote.as_ref(), rendering, &mut progress);
        report.render_failures += progress.render_failures;
        if creating {
            // A rejection or a skip made nothing; a retryable failure may have, so its intent
            // stays for `recover`.
            if matches!(
                result,
                Err(DeliveryError::Reject { .. }) | Ok(Effect::Skipped(_))
            ) {
                let _ = self.store.clear_intent(&self.name, &notice.key);
            }
        }
        result
    }

    fn dead_letter(&self, item: &Pending, reason: &str, status: Option<u16>, response: &str) {
        tracing::error!(receiver = %self.name, key = %item.notice.key, error = %reason, "receiver rejected a notice; written to the dead-letter file");
        let value = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "reason": "delivery",
            "receiver": self.name,
            "error": reason,
            "status": status,
            "response": response,
            "notice": item.notice,
        });
        let mut file = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = file.write(&value) {
            tracing::error!(path = %file.path.display(), error = %err, "failed to write a delivery dead letter");
        }
    }

    /// Sleeps in short slices so a stop request is seen quickly.
    fn sleep(&self, wait: Duration) -> Result<(), Halt> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return Err(Halt::Stopped);
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }
}

/// Full-jitter exponential backoff: between half and all of `initial * 2^(attempt-1)`, capped.
fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let initial = retry.initial_backoff.as_millis();
    let ceiling = initial
        .saturating_mul(1 << (attempt.saturating_sub(1)).min(20))
        .min(retry.max_backoff.as_millis());
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling.max(1)))
}
