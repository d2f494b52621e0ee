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
use super::store::{Outcome, Pending, Queued, Store};
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

/// Counts of the engine's work during a run.
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
    /// The JSON Lines file rejected notices are appended to.
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
    key: String,
    labels: BTreeMap<String, String>,
    receivers: Vec<String>,
    grouped: bool,
    /// Each member's latest state and whether it is open.
    members: BTreeMap<String, (Finding, bool)>,
    /// Changes not yet sent, in arrival order.
    waiting: Vec<Change>,
    due: Option<Instant>,
    /// Whether a notice went out, and whether the group was open in the last one.
    sent: bool,
    open_when_sent: bool,
    wait: Duration,
    interval: Duration,
}

impl Batch {
    fn new(destination: &Destination, key: String, labels: BTreeMap<String, String>) -> Batch {
        Batch {
            key,
            labels,
            receivers: destination.receivers.clone(),
            grouped: !destination.grouping.by.is_empty(),
            members: BTreeMap::new(),
            waiting: Vec::new(),
            due: None,
            sent: false,
            open_when_sent: false,
            wait: Duration::from_millis(destination.grouping.wait_ms),
            interval: Duration::from_millis(destination.grouping.interval_ms),
        }
    }

    /// Adds a change and returns true when the batch is due at once.
    fn add(&mut self, change: &Change, now: Instant) -> bool {
        self.members.insert(
            change.finding.fingerprint.clone(),
            (change.finding.clone(), change.kind.leaves_open()),
        );
        self.waiting.push(change.clone());
        let wait = if self.sent { self.interval } else { self.wait };
        let due = *self.due.get_or_insert(now + wait);
        due <= now
    }

    /// Turns the waiting changes into notices: usually one. A group that opened and resolved
    /// within one wait, before any message, gets an opening and a resolving notice, so the
    /// finding is still seen.
    fn notices(&mut self, catalog: &Catalog) -> Vec<(Notice, Vec<String>)> {
        self.due = None;
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let waiting = std::mem::take(&mut self.waiting);
        let open = self.members.values().any(|(_, open)| *open);
        let ids = |changes: &[&Change]| -> Vec<String> {
            changes.iter().map(|c| c.change_id.clone()).collect()
        };
        let mut out = Vec::new();
        if !self.grouped && waiting.len() == 1 {
            let change = &waiting[0];
            out.push((
                self.notice(change.kind, change.change_id.clone(), open, catalog),
                Vec::new(),
            ));
        } else if !self.sent && !open {
            let (opening, closing): (Vec<&Change>, Vec<&Change>) =
                waiting.iter().partition(|c| c.kind.leaves_open());
            if !opening.is_empty() {
                let members = ids(&opening);
                let notice = self.notice(ChangeKind::Opened, combined_id(&members), true, catalog);
                out.push((notice, members));
            }
            let members = ids(&closing);
            let notice = self.notice(ChangeKind::Resolved, combined_id(&members), false, catalog);
            out.push((notice, members));
        } else {
            let kind = if !open {
                ChangeKind::Resolved
            } else if !self.sent {
                ChangeKind::Opened
            } else if !self.open_when_sent {
                ChangeKind::Reopened
            } else {
                ChangeKind::Updated
            };
            let members = ids(&waiting.iter().collect::<Vec<_>>());
            let change_id = match members.as_slice() {
                [only] => only.clone(),
                _ => combined_id(&members),
            };
            out.push((self.notice(kind, change_id, open, catalog), members));
        }
        self.sent = true;
        self.open_when_sent = open;
        out
    }

    /// Builds a notice of the group's members: the open ones while any is open, else all.
    fn notice(&self, kind: ChangeKind, change_id: String, open: bool, catalog: &Catalog) -> Notice {
        let mut findings: Vec<Finding> = self
            .members
            .values()
            .filter(|(_, member_open)| *member_open || !open)
            .map(|(finding, _)| finding.clone())
            .collect();
        if findings.is_empty() {
            findings = self.members.values().map(|(f, _)| f.clone()).collect();
        }
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        let target = target_of(catalog, &findings[0]);
        Notice {
            key: self.key.clone(),
            change_id,
            kind,
            group: self.grouped.then(|| GroupInfo {
                labels: self.labels.clone(),
                count: findings.len() as u64,
            }),
            findings,
            target,
        }
    }
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
    /// Opens the store, checks every receiver against its service, starts the workers, and
    /// picks up what the last run left: changes waiting in groups, open findings' group
    /// membership, and open findings a receiver never got (after a route was added).
    pub fn start(settings: EngineSettings) -> Result<Engine, String> {
        let lock = lock_state_dir(&settings.state_dir)?;
        let store = Store::open(&settings.state_dir).map_err(|err| err.to_string())?;
        let dead_letters = DeadLetterFile::open(&settings.dead_letter_path)?;
        let dead_letters = Arc::new(Mutex::new(dead_letters));
        let finishing = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for mut receiver in settings.receivers {
            check_receiver(receiver.as_mut())?;
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
        let mut engine = Engine {
            _lock: lock,
            store,
            router: settings.router,
            catalog: settings.catalog,
            batches: HashMap::new(),
            workers,
            finishing,
            report: EngineReport::default(),
        };
        engine.resume();
        Ok(engine)
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
        }
        let now = Instant::now();
        let mut waiting_in = Vec::new();
        let mut due = Vec::new();
        for destination in &destinations {
            let id = self.batch_id(destination, &change.finding);
            let batch = self
                .batches
                .get_mut(&id)
                .expect("batch_id creates the batch");
            if !batch.waiting.is_empty() {
                self.report.grouped += 1;
            }
            if batch.add(change, now) {
                due.push(id.clone());
            }
            waiting_in.push(id);
        }
        if let Err(err) = self.store.record_change(change, &waiting_in) {
            self.store_error(err);
        }
        for id in due {
            self.release(&id);
        }
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
        for id in due {
            self.release(&id);
        }
    }

    /// Sends every waiting group, lets the workers empty the outbox, and returns the report.
    pub fn finish(mut self) -> EngineReport {
        let ids: Vec<_> = self
            .batches
            .iter()
            .filter(|(_, b)| b.due.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.release(&id);
        }
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

    /// Picks up what the last run left behind; see [`Engine::start`].
    fn resume(&mut self) {
        let open = self.store.open_findings().unwrap_or_default();
        for finding in &open {
            self.rejoin_groups(&finding.finding);
        }
        match self.store.waiting() {
            Ok(waiting) => {
                for item in waiting {
                    self.wait_again(&item.change, item.id);
                }
            }
            Err(err) => self.store_error(err),
        }
        for finding in &open {
            self.catch_up(&finding.finding);
        }
    }

    /// Makes an open finding a member of its groups again; a group with an open object at one
    /// of its receivers counts as sent.
    fn rejoin_groups(&mut self, finding: &Finding) {
        let target = target_of(&self.catalog, finding);
        for destination in self.router.route(finding, &target) {
            if destination.grouping.by.is_empty() {
                continue;
            }
            let id = self.batch_id(&destination, finding);
            let delivered = destination.receivers.iter().any(|receiver| {
                matches!(self.store.remote(receiver, &id.1), Ok(Some(remote)) if remote.open)
            });
            let batch = self
                .batches
                .get_mut(&id)
                .expect("batch_id creates the batch");
            batch
                .members
                .insert(finding.fingerprint.clone(), (finding.clone(), true));
            batch.sent |= delivered;
            batch.open_when_sent |= delivered;
        }
    }

    /// Puts a change that waited in a group when the last run stopped back into its groups.
    fn wait_again(&mut self, change: &Change, stored_id: i64) {
        let target = target_of(&self.catalog, &change.finding);
        let now = Instant::now();
        let mut waiting_in = Vec::new();
        for destination in self.router.route(&change.finding, &target) {
            let id = self.batch_id(&destination, &change.finding);
            let batch = self
                .batches
                .get_mut(&id)
                .expect("batch_id creates the batch");
            batch.add(change, now);
            waiting_in.push(id);
        }
        if let Err(err) = self.store.wait_again(change, &waiting_in, stored_id) {
            self.store_error(err);
        }
    }

    /// Queues an open finding for each receiver of its ungrouped routes that has no object
    /// for it, such as a receiver whose route was added since the finding opened.
    fn catch_up(&mut self, finding: &Finding) {
        let target = target_of(&self.catalog, finding);
        let change_id = feedloop_pipeline::lifecycle::finding_change_id(finding);
        let mut queued = Vec::new();
        for destination in self.router.route(finding, &target) {
            if !destination.grouping.by.is_empty() {
                continue;
            }
            for receiver in &destination.receivers {
                match self.store.remote(receiver, &finding.fingerprint) {
                    Ok(None) => queued.push(Queued {
                        receiver: receiver.clone(),
                        notice: Notice {
                            key: finding.fingerprint.clone(),
                            change_id: change_id.clone(),
                            kind: ChangeKind::Opened,
                            findings: vec![finding.clone()],
                            group: None,
                            target: target.clone(),
                        },
                        members: Vec::new(),
                    }),
                    Ok(Some(_)) => {}
                    Err(err) => self.store_error(err),
                }
            }
        }
        self.queue(None, queued);
    }

    /// Returns the id of the batch a destination puts a finding in, creating the batch.
    fn batch_id(&mut self, destination: &Destination, finding: &Finding) -> (String, String) {
        let grouping: &Grouping = &destination.grouping;
        let labels: BTreeMap<String, String> = grouping
            .by
            .iter()
            .map(|label| (label.clone(), label_value(label, finding)))
            .collect();
        let key = if grouping.by.is_empty() {
            finding.fingerprint.clone()
        } else {
            group_key(&destination.route, &labels)
        };
        let id = (destination.route.clone(), key.clone());
        self.batches
            .entry(id.clone())
            .or_insert_with(|| Batch::new(destination, key, labels));
        id
    }

    /// Ends a batch's wait: its notices go to the outbox of each of its receivers.
    fn release(&mut self, id: &(String, String)) {
        let Some(batch) = self.batches.get_mut(id) else {
            return;
        };
        let notices = batch.notices(&self.catalog);
        let receivers = batch.receivers.clone();
        let queued = notices
            .into_iter()
            .flat_map(|(notice, members)| {
                receivers.iter().map(move |receiver| Queued {
                    receiver: receiver.clone(),
                    notice: notice.clone(),
                    members: members.clone(),
                })
            })
            .collect();
        self.queue(Some((&id.0, &id.1)), queued);
    }

    fn queue(&mut self, group: Option<(&str, &str)>, queued: Vec<Queued>) {
        if group.is_none() && queued.is_empty() {
            return;
        }
        match self.store.release(group, &queued) {
            Ok(count) => {
                self.report.queued += count as u64;
                self.report.replayed += (queued.len() - count) as u64;
            }
            Err(err) => self.store_error(err),
        }
        for worker in &self.workers {
            if queued.iter().any(|item| item.receiver == worker.name) {
                let _ = worker.wake.send(());
            }
        }
    }

    fn store_error(&mut self, err: super::store::StoreError) {
        tracing::error!(error = %err, "failed to write to the delivery state store");
        let message = err.to_string();
        if !self.report.store_errors.contains(&message) {
            self.report.store_errors.push(message);
        }
    }
}

/// Runs a receiver's start-up check. Receivers let a check pass with a warning when their
/// service could not answer (refused, timed out, 5xx), because delivery retries; a check the
/// service answered with a rejection stops the run. Messages already name the receiver.
fn check_receiver(receiver: &mut dyn Receiver) -> Result<(), String> {
    receiver.check()
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
    file: File,
}

impl DeadLetterFile {
    /// Opens the file for appending at start, so an unusable path fails before any input.
    fn open(path: &Path) -> Result<DeadLetterFile, String> {
        let fail = |err: std::io::Error| {
            format!(
                "failed to open the delivery dead-letter file {}: {err}; set delivery.dead_letter to a writable file",
                path.display()
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        Ok(DeadLetterFile {
            path: path.to_path_buf(),
            file,
        })
    }

    fn write(&mut self, value: &serde_json::Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value).expect("a JSON value always serializes");
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
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

/// The reason a worker stopped working through its outbox.
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
                if self.stop.load(Ordering::SeqCst) {
                    return report;
                }
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
                    match &effect {
                        Effect::Applied(remote) => {
                            tracing::info!(receiver = %self.name, key = %item.notice.key, change = %item.notice.kind, remote = %remote.id, "applied a change");
                            report.applied += 1;
                        }
                        Effect::Skipped(reason) => {
                            tracing::info!(receiver = %self.name, key = %item.notice.key, change = %item.notice.kind, reason = %reason, "nothing to apply for a change");
                            report.skipped += 1;
                        }
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
                    self.dead_letter(item, &reason, status, &response)?;
                    self.store
                        .complete(&self.name, item, Outcome::DeadLettered, None)
                        .map_err(|err| Halt::GaveUp(err.to_string()))?;
                    report.dead_lettered += 1;
                    return Ok(());
                }
                DeliveryError::Retry { reason, after } => {
                    attempt += 1;
                    // A live run keeps trying at the longest backoff, so an outage only delays
                    // delivery; once the input has ended, the notice waits for the next start.
                    if attempt >= self.retry.max_attempts && self.finishing.load(Ordering::SeqCst) {
                        return Err(Halt::GaveUp(format!("{reason} (after {attempt} attempts)")));
                    }
                    report.retried += 1;
                    let wait = backoff(&self.retry, attempt.min(self.retry.max_attempts))
                        .max(after.unwrap_or_default());
                    tracing::warn!(receiver = %self.name, attempt, wait_ms = wait.as_millis() as u64, error = %reason, "delivery failed; retrying");
                    self.sleep(wait)?;
                }
            }
        }
    }

    /// Tries once: recovers an interrupted create first, records a create's intent, applies.
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

    /// Appends a rejected notice to the dead-letter file; when that fails, the notice stays in
    /// the outbox and the worker stops, so nothing is dropped.
    fn dead_letter(
        &self,
        item: &Pending,
        reason: &str,
        status: Option<u16>,
        response: &str,
    ) -> Result<(), Halt> {
        tracing::error!(receiver = %self.name, key = %item.notice.key, error = %reason, "receiver rejected a notice; writing it to the dead-letter file");
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
        file.write(&value).map_err(|err| {
            Halt::GaveUp(format!(
                "failed to write a dead letter to {}: {err}",
                file.path.display()
            ))
        })
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
