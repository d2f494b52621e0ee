//! The driver: reads partitions, tracks watermarks and feeds the dataflow on each worker.
//!
//! Every worker owns some partitions (files, or Kafka partitions) and one input to the
//! dataflow. A partition's watermark is the highest event time it has produced minus the
//! allowed lateness; an event older than its partition's watermark, or than the worker's input
//! time, is late: it is counted and sent to the dead-letter output instead of the dataflow.
//! The worker advances its input to the least watermark of its partitions that still produce,
//! and timely's frontier, the least input time over all workers, is the global watermark that
//! closes windows.
//!
//! Lateness is decided from one partition's own order of events, never from how partitions
//! interleave, so the same partitions give the same accepted events with any number of workers.
//! A partition that has produced nothing yet holds its worker's input at zero; a partition
//! that reports itself idle stops holding it until it produces again.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::{InputHandle, ProbeHandle};

use feedloop_rules::{ApiEvent, RuleSet};

use crate::dataflow;
use crate::dead_letter::{DeadLetter, Position, Reason};
use crate::finding::Finding;
use crate::kpi::{KpiOptions, KpiStore};
use crate::lifecycle::{Change, Lifecycle, OpenFinding};

/// The dataflow input of one worker: events, timestamped with the worker's watermark.
type EventInput = InputHandle<u64, CapacityContainerBuilder<Vec<ApiEvent>>>;

/// One partition of a source, read in order by one worker.
pub trait PartitionReader: Send {
    /// Returns the partition's name for dead letters and logs, such as a file path.
    fn name(&self) -> &str;

    /// Reads up to `max` records into `batch`, decoding them.
    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus;
}

/// What a partition reported after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Records may follow at once.
    Ready,
    /// Nothing right now, and the partition still holds back the watermark.
    Pending,
    /// Nothing for a while; the partition stops holding the watermark until it produces.
    Idle,
    /// The partition has ended; nothing more will come.
    Finished,
}

/// Records read from a partition in one call.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Decoded events with their position.
    pub events: Vec<(ApiEvent, Position)>,
    /// Records that failed to decode.
    pub dead_letters: Vec<DeadLetter>,
    /// Records read, decoded or not.
    pub records: u64,
    /// Records known to be in the input that could not be located, such as the rest of an
    /// Avro block after a record that cannot be read. They are not counted in `records`.
    pub skipped: u64,
    /// A failure that ended the partition early, such as a truncated gzip stream.
    pub failure: Option<String>,
}

impl ReadBatch {
    fn clear(&mut self) {
        self.events.clear();
        self.dead_letters.clear();
        self.records = 0;
        self.skipped = 0;
        self.failure = None;
    }
}

/// Creates the readers of the partitions a worker owns, given its index and the worker count.
pub type ReaderFactory = Arc<dyn Fn(usize, usize) -> Vec<Box<dyn PartitionReader>> + Send + Sync>;

/// An output of a run, sent in the order a sink should apply it.
#[derive(Debug, Clone)]
pub enum Output {
    Finding(Box<Finding>),
    /// A lifecycle change, sent right after the finding that caused it.
    Change(Box<Change>),
    DeadLetter(Box<DeadLetter>),
    /// A partition ended early on a read error; the message names the partition.
    InputError(String),
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads in this process.
    pub workers: usize,
    /// How far behind the highest event time of a partition an event may be and still count.
    pub allowed_lateness_ms: u64,
    /// Records read from a partition per call.
    pub batch_size: usize,
    /// Set to end the run: every partition is treated as finished and every window closes.
    pub stop: Arc<AtomicBool>,
    /// How far ahead of the wall clock an event time may be; later events are dead-lettered,
    /// because one such time would push the watermark past every open window.
    pub max_future_ms: u64,
    /// The maximum number of windows one rule keeps open on one worker. Hits that would open more
    /// are dropped and counted.
    pub max_windows_per_rule: usize,
    /// How long after its latest window a finding resolves without another one; `None` means
    /// two window sizes of its rule.
    pub resolve_after_ms: Option<u64>,
    /// Findings open when an earlier run stopped, so this run can update and resolve them.
    pub open_findings: Vec<OpenFinding>,
    /// KPI and impact settings.
    pub kpi: KpiOptions,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            allowed_lateness_ms: 60_000,
            batch_size: 1024,
            stop: Arc::new(AtomicBool::new(false)),
            max_future_ms: 86_400_000,
            max_windows_per_rule: 250_000,
            resolve_after_ms: None,
            open_findings: Vec::new(),
            kpi: KpiOptions::default(),
        }
    }
}

/// Counts of a run, summed over workers.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub records: AtomicU64,
    pub decoded: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub skipped: AtomicU64,
    pub late: AtomicU64,
    pub bad_time: AtomicU64,
    pub input_errors: AtomicU64,
    pub dropped_hits: AtomicU64,
    /// Findings that repeated what their fingerprint had reported, so made no change.
    pub repeated_findings: AtomicU64,
    /// KPI updates dropped because the store tracked its limit of routes.
    pub dropped_kpi_updates: AtomicU64,
    /// The highest event time fed to the dataflow, for resolving findings when input ends.
    pub max_event_time: AtomicI64,
}

/// The final counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    /// Records read from all sources.
    pub records: u64,
    /// Records decoded into events (including late ones).
    pub decoded: u64,
    /// Records that failed to decode.
    pub dead_lettered: u64,
    /// Records known to be in the input that could not be located.
    pub skipped: u64,
    /// Decoded events that arrived after their windows closed.
    pub late: u64,
    /// Decoded events with an implausible time (before 1970 or far in the future).
    pub bad_time: u64,
    /// Partitions that ended early on a read error.
    pub input_errors: u64,
    /// Hits dropped because a rule reached its limit of open windows.
    pub dropped_hits: u64,
    /// Findings that repeated what their fingerprint had reported, so made no lifecycle change.
    pub repeated_findings: u64,
    /// KPI updates dropped because the store tracked its limit of routes.
    pub dropped_kpi_updates: u64,
}

/// A run that could not start or whose worker failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to start {workers} dataflow workers: {message}")]
    Start { workers: usize, message: String },
    #[error("a dataflow worker failed: {0}")]
    Worker(String),
}

/// Runs the rules over the partitions the factory creates until every partition finishes or
/// `options.stop` is set, sending findings and dead letters to `output`.
pub fn run(
    rules: &RuleSet,
    options: RunOptions,
    readers: ReaderFactory,
    output: Sender<Output>,
) -> Result<RunCounts, RunError> {
    let rules: Arc<[feedloop_rules::Rule]> = rules.rules().to_vec().into();
    let counters = Arc::new(Counters::default());
    let workers = options.workers.max(1);
    let config = timely::Config::process(workers);
    let shared = counters.clone();
    let board = Arc::new(WatermarkBoard::new(workers));

    let guards = timely::execute(config, move |worker| {
        let output = output.clone();
        let mut input = EventInput::new();
        let probe = ProbeHandle::new();
        let rules = rules.clone();
        let sink = output.clone();
        let lifecycle = (worker.index() == 0).then(|| lifecycle_of(&rules, &options));
        let mut kpi_store =
            (worker.index() == 0 && options.kpi.enabled).then(|| kpi_store_of(&rules, &options));
        worker.dataflow::<u64, _, _>(|scope| {
            let limits = dataflow::Limits {
                max_windows_per_rule: options.max_windows_per_rule,
                counters: shared.clone(),
                lifecycle,
                allowed_lateness_ms: options.allowed_lateness_ms,
                kpi: options.kpi,
                kpi_store: kpi_store.take(),
            };
            dataflow::build(input.to_stream(scope), rules, sink, &probe, limits);
        });

        let partitions = readers(worker.index(), worker.peers());
        let place = (worker.index(), board.clone());
        let mut feeder = Feeder::new(partitions, &options, &shared, output, place);
        while feeder.feed(&mut input) {
            worker.step_or_park(feeder.park_for());
        }
        drop(input);
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    })
    .map_err(|message| RunError::Start { workers, message })?;

    for result in guards.join() {
        result.map_err(RunError::Worker)?;
    }
    Ok(RunCounts {
        records: counters.records.load(Ordering::Relaxed),
        decoded: counters.decoded.load(Ordering::Relaxed),
        dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        skipped: counters.skipped.load(Ordering::Relaxed),
        late: counters.late.load(Ordering::Relaxed),
        bad_time: counters.bad_time.load(Ordering::Relaxed),
        input_errors: counters.input_errors.load(Ordering::Relaxed),
        dropped_hits: counters.dropped_hits.load(Ordering::Relaxed),
        repeated_findings: counters.repeated_findings.load(Ordering::Relaxed),
        dropped_kpi_updates: counters.dropped_kpi_updates.load(Ordering::Relaxed),
    })
}

/// Returns worker 0's KPI store, keeping windows long enough for the longest rule window.
fn kpi_store_of(rules: &[feedloop_rules::Rule], options: &RunOptions) -> KpiStore {
    let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
    let longest = rules.iter().map(|r| r.window.size_ms).max().unwrap_or(0);
    let shorter: Vec<&str> = rules
        .iter()
        .filter(|r| r.window.size_ms < options.kpi.window_ms)
        .map(|r| r.id.as_str())
        .collect();
    if options.kpi.enabled && !shorter.is_empty() {
        tracing::warn!(
            kpi_window_ms = options.kpi.window_ms,
            rules = %shorter.join(", "),
            "the KPI window is longer than these rules' windows, so their impact covers traffic before and after each finding, and a final's last KPI window is still filling; set kpi.window to the shortest rule window or less"
        );
    }
    KpiStore::new(options.kpi, &ids, longest)
}

/// Returns the lifecycle of worker 0's collector, seeded with the findings still open.
fn lifecycle_of(rules: &[feedloop_rules::Rule], options: &RunOptions) -> Lifecycle {
    let resolve_after = |rule: &feedloop_rules::Rule| {
        options.resolve_after_ms.unwrap_or(2 * rule.window.size_ms) as i64
    };
    let periods = rules
        .iter()
        .map(|rule| (rule.id.clone(), resolve_after(rule)))
        .collect();
    let default = options.resolve_after_ms.unwrap_or(3_600_000) as i64;
    let mut lifecycle = Lifecycle::new(periods, default);
    lifecycle.seed(options.open_findings.clone());
    lifecycle
}

/// The watermark state of one partition.
struct Clock {
    /// Highest event time seen.
    max_seen: Option<i64>,
    finished: bool,
    idle: bool,
}

impl Clock {
    fn watermark(&self, lateness: i64) -> Option<i64> {
        self.max_seen.map(|t| t.saturating_sub(lateness))
    }
}

/// Reads one worker's partitions and sends their events into its dataflow input.
struct Feeder<'a> {
    partitions: Vec<Box<dyn PartitionReader>>,
    clocks: Vec<Clock>,
    lateness: i64,
    max_future_ms: i64,
    batch_size: usize,
    stop: Arc<AtomicBool>,
    counters: &'a Counters,
    output: Sender<Output>,
    batch: ReadBatch,
    /// True when the last call read nothing, so the worker may park.
    quiet: bool,
    worker: usize,
    board: Arc<WatermarkBoard>,
}

impl<'a> Feeder<'a> {
    fn new(
        partitions: Vec<Box<dyn PartitionReader>>,
        options: &RunOptions,
        counters: &'a Counters,
        output: Sender<Output>,
        (worker, board): (usize, Arc<WatermarkBoard>),
    ) -> Feeder<'a> {
        let clocks = partitions
            .iter()
            .map(|_| Clock {
                max_seen: None,
                finished: false,
                idle: false,
            })
            .collect();
        Feeder {
            partitions,
            clocks,
            lateness: options.allowed_lateness_ms.min(i64::MAX as u64) as i64,
            max_future_ms: options.max_future_ms.min(i64::MAX as u64 / 2) as i64,
            batch_size: options.batch_size.max(1),
            stop: options.stop.clone(),
            counters,
            output,
            batch: ReadBatch::default(),
            quiet: false,
            worker,
            board,
        }
    }

    fn park_for(&self) -> Option<Duration> {
        if self.quiet {
            Some(Duration::from_millis(5))
        } else {
            Some(Duration::ZERO)
        }
    }

    /// Reads one batch, from the partition furthest behind that has records, and sends it.
    /// Returns false once every partition has finished.
    fn feed(&mut self, input: &mut EventInput) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let order = self.read_order();
        if order.is_empty() {
            return false;
        }

        // The partition furthest behind goes first; when it has nothing right now, the next
        // one gets the turn, so one quiet partition does not delay the others' early findings.
        self.quiet = true;
        for p in order {
            self.batch.clear();
            let status = self.partitions[p].read(self.batch_size, &mut self.batch);
            let clock = &mut self.clocks[p];
            match status {
                ReadStatus::Finished => clock.finished = true,
                ReadStatus::Idle => clock.idle = self.batch.events.is_empty(),
                ReadStatus::Ready | ReadStatus::Pending => clock.idle = false,
            }
            let read_any = self.batch.records > 0;
            self.send_batch(p, input);
            if read_any || status == ReadStatus::Finished {
                self.quiet = !read_any;
                break;
            }
        }

        if let Some(time) = self.input_time() {
            if time > *input.time() {
                input.advance_to(time);
            }
        }
        // Hand the batch to the dataflow now even if the watermark stood still: the input
        // buffers sends until it fills, and a held-back batch would delay early findings.
        input.flush();
        true
    }

    /// Returns the unfinished partitions, the one with the lowest watermark first, so partitions
    /// advance together in event time and none holds windows open longer than it must.
    fn read_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.clocks.len())
            .filter(|i| !self.clocks[*i].finished)
            .collect();
        order.sort_by_key(|i| {
            let clock = &self.clocks[*i];
            (
                clock.idle,
                clock.watermark(self.lateness).unwrap_or(i64::MIN),
                *i,
            )
        });
        order
    }

    fn send_batch(&mut self, p: usize, input: &mut EventInput) {
        let counters = self.counters;
        counters
            .records
            .fetch_add(self.batch.records, Ordering::Relaxed);
        counters
            .decoded
            .fetch_add(self.batch.events.len() as u64, Ordering::Relaxed);
        counters
            .dead_lettered
            .fetch_add(self.batch.dead_letters.len() as u64, Ordering::Relaxed);
        counters
            .skipped
            .fetch_add(self.batch.skipped, Ordering::Relaxed);
        for letter in self.batch.dead_letters.drain(..) {
            let _ = self.output.send(Output::DeadLetter(Box::new(letter)));
        }
        if let Some(failure) = self.batch.failure.take() {
            counters.input_errors.fetch_add(1, Ordering::Relaxed);
            let _ = self.output.send(Output::InputError(format!(
                "{}: {failure}",
                self.partitions[p].name()
            )));
        }
        let latest_allowed = wall_clock_ms().saturating_add(self.max_future_ms);

        let input_time = *input.time() as i64;
        for (event, position) in self.batch.events.drain(..) {
            if event.time_ms < 0 || event.time_ms > latest_allowed {
                counters.bad_time.fetch_add(1, Ordering::Relaxed);
                let letter = bad_time_letter(self.partitions[p].name(), position, &event);
                let _ = self.output.send(Output::DeadLetter(Box::new(letter)));
                continue;
            }
            let clock = &mut self.clocks[p];
            let floor = clock
                .watermark(self.lateness)
                .unwrap_or(i64::MIN)
                .max(input_time);
            if event.time_ms < floor {
                counters.late.fetch_add(1, Ordering::Relaxed);
                let letter = late_letter(self.partitions[p].name(), position, &event, floor);
                let _ = self.output.send(Output::DeadLetter(Box::new(letter)));
                continue;
            }
            clock.max_seen = Some(
                clock
                    .max_seen
                    .map_or(event.time_ms, |t| t.max(event.time_ms)),
            );
            counters
                .max_event_time
                .fetch_max(event.time_ms, Ordering::Relaxed);
            input.send(event);
        }
    }

    /// Returns the time this worker's input may advance to: the least watermark over the
    /// partitions that still produce, or over all open ones when every one is idle.
    fn input_time(&self) -> Option<u64> {
        let open = || self.clocks.iter().filter(|c| !c.finished);
        let active_least = open()
            .filter(|c| !c.idle)
            .map(|c| c.watermark(self.lateness).unwrap_or(0))
            .min();
        let time = match active_least {
            Some(time) => {
                self.board.publish(self.worker, Some(time));
                time
            }
            // Every partition here is idle: follow the other workers, so this worker holds
            // nothing back, or else the newest watermark among its own idle partitions.
            None => {
                self.board.publish(self.worker, None);
                match self.board.least_other(self.worker) {
                    Some(time) => time,
                    None => open().filter_map(|c| c.watermark(self.lateness)).max()?,
                }
            }
        };
        Some(time.max(0) as u64)
    }
}

/// The watermark each worker of this process derives from its partitions that still produce,
/// so a worker whose partitions are all idle can follow the others instead of holding the
/// frontier at its last event.
///
/// NOTE: this only spans the workers of one process; a cluster of processes would need the
/// same exchange between processes.
pub(crate) struct WatermarkBoard {
    /// Per worker: its active watermark, or `i64::MIN` when it has none.
    times: Vec<std::sync::atomic::AtomicI64>,
}

impl WatermarkBoard {
    pub(crate) fn new(workers: usize) -> WatermarkBoard {
        WatermarkBoard {
            times: (0..workers)
                .map(|_| std::sync::atomic::AtomicI64::new(i64::MIN))
                .collect(),
        }
    }

    fn publish(&self, worker: usize, time: Option<i64>) {
        self.times[worker].store(time.unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    /// Returns the least active watermark among the other workers, if any has one.
    fn least_other(&self, worker: usize) -> Option<i64> {
        self.times
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != worker)
            .map(|(_, t)| t.load(Ordering::Relaxed))
            .filter(|t| *t != i64::MIN)
            .min()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn bad_time_letter(source: &str, position: Position, event: &ApiEvent) -> DeadLetter {
    let raw = serde_json::to_vec(event).expect("an event always serializes");
    let error = if event.time_ms < 0 {
        format!("invalid event time {} ms: before 1970", event.time_ms)
    } else {
        format!(
            "invalid event time {}: too far in the future; check the clock or time field of the source",
            crate::finding::format_millis(event.time_ms)
        )
    };
    DeadLetter::new(source, position, Reason::Time, error, &raw)
}

fn late_letter(source: &str, position: Position, event: &ApiEvent, floor: i64) -> DeadLetter {
    let raw = serde_json::to_vec(event).expect("an event always serializes");
    let error = format!(
        "late event: time {} is before the watermark {}; raise time.allowed_lateness to keep such events",
        crate::finding::format_millis(event.time_ms),
        crate::finding::format_millis(floor)
    );
    DeadLetter::new(source, position, Reason::Late, error, &raw)
}
