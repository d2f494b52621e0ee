//! `feedloop-bench latency`: how long feedloop takes to report a finding after the traffic
//! that causes it.
//!
//! The run starts a tansu broker on 127.0.0.1, creates a topic and starts `feedloop run` on it
//! with the shipped rule packs plus [`BENCH_RULE`]. A producer sends background traffic at a
//! fixed rate and, on a schedule, bursts of [`traffic::BURST_SIZE`] failed logins from one new
//! client each. For every burst the run records when the broker acknowledged the crossing
//! event and when feedloop's findings file first held the burst's early and final findings.
//!
//! The run also times delivery. feedloop's `delivery` section routes the bench rule's findings,
//! without grouping, to a `slack` receiver whose `api_url` is a loopback Slack started in this
//! process ([`slack::SlackDelivery`]). For every burst the run records when the `chat.postMessage`
//! that opens the burst's finding arrived there. One warm-up burst before the measured ones
//! proves that the whole path, delivery included, works and is not counted.
//!
//! Every wait is bounded: the broker start, the topic, the warm-up, each window's final
//! finding, and the whole run (`--timeout-seconds`). The broker and feedloop are killed when
//! the run ends, however it ends.

mod findings;
mod processes;
mod report;
mod schedule;
mod slack;
mod traffic;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use feedloop_bench::results;

use self::findings::{FindingKey, FindingsWatcher};
use self::processes::Process;
use self::report::{BurstTiming, Report};
use self::slack::{SlackCounts, SlackDelivery};
use self::traffic::{SentBurst, Traffic};

/// The topic the run creates and feedloop reads.
const TOPIC: &str = "api-events";

/// The id of [`BENCH_RULE`].
const BENCH_RULE_ID: &str = "bench-latency-401-burst";

/// The shipped rule that the bursts also trip, with a 5-minute window.
const SHIPPED_RULE_ID: &str = "auth-failure-burst";

/// The window of [`BENCH_RULE`], in milliseconds.
const WINDOW_MS: i64 = 60_000;

/// The rule whose findings the run times: the threshold of the shipped `auth-failure-burst`
/// with a 1-minute window, short enough for its final findings to arrive within the run.
const BENCH_RULE: &str = "\
# Written by `feedloop-bench latency`: the rule whose findings the benchmark times.
id: bench-latency-401-burst
title: Burst of failed logins from one client (latency benchmark)
severity: high
stages: [operate]
tags: [owasp-api2-2023, cwe-307]
match:
  status: [401]
group_by: [client]
window: {size: 1m}
threshold: {count: 10}
";

/// feedloop's allowed lateness. Every event is stamped with the wall clock when it is sent,
/// so events of one partition arrive nearly in order and a short lateness loses none.
const ALLOWED_LATENESS_MS: i64 = 1_000;

/// How long feedloop waits on a caught-up partition before it stops holding the watermark.
const IDLE_TIMEOUT: &str = "1s";

/// The name of the Slack receiver in the generated configuration.
const SLACK_RECEIVER: &str = "bench-slack";

/// Maximum `--slack-min-interval-ms`.
const MAX_SLACK_MIN_INTERVAL_MS: u64 = 60_000;

/// How long the warm-up burst may take to produce its finding and its Slack message, including
/// feedloop's start.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after the last window could close the run waits for final findings.
const FINAL_GRACE: Duration = Duration::from_secs(10);

/// How long feedloop may take to close its windows and exit after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the run checks that feedloop and the findings watcher still run.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The pause between two turns of the producer loop.
const LOOP_PAUSE: Duration = Duration::from_millis(1);

/// Maximum bursts per run, because burst clients are numbered within 203.0.113.0/24.
const MAX_BURSTS: usize = 200;

/// Options of `feedloop-bench latency`.
#[derive(clap::Args)]
pub struct LatencyArgs {
    /// Measured bursts, sent after one warm-up burst that is not counted.
    #[arg(long, default_value_t = 20)]
    pub bursts: usize,
    /// Background traffic in events per second, spread over the partitions by client.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// feedloop's worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// The producer's `linger.ms`: how long it waits to fill a batch before sending it.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Seed of the background traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The `feedloop` binary to run.
    #[arg(long, default_value = "target/release/feedloop")]
    pub feedloop: PathBuf,
    /// The folder of the shipped rule packs, loaded beside the benchmark's own rule.
    #[arg(long, default_value = "rules/packs")]
    pub packs: PathBuf,
    /// Folder for the run's configuration, findings, per-burst timings and logs.
    #[arg(long, default_value = "target/bench/latency")]
    pub dir: PathBuf,
    /// The results page. The run replaces its "Finding latency" section and keeps the rest.
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub results: PathBuf,
    /// A librdkafka property for feedloop's consumer, such as `fetch.wait.max.ms=10`. Repeat the
    /// option for several. They go to the `properties` of the Kafka source.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub consumer_properties: Vec<(String, String)>,
    /// The Slack receiver's `min_interval` in milliseconds: the least time between two posts to
    /// one channel. feedloop's default is 1000, the one message a second per channel that
    /// Slack's rate-limit page allows.
    #[arg(long, default_value_t = 1)]
    pub slack_min_interval_ms: u64,
    /// Maximum wall time of the whole run in seconds. A run that takes longer stops, kills the
    /// broker and feedloop, and fails.
    #[arg(long, default_value_t = 150)]
    pub timeout_seconds: u64,
}

/// Files of one run, all in the run's folder.
struct RunFiles {
    rule: PathBuf,
    config: PathBuf,
    findings: PathBuf,
    dead_letters: PathBuf,
    delivery_state: PathBuf,
    bursts: PathBuf,
    broker_log: PathBuf,
    feedloop_log: PathBuf,
}

impl RunFiles {
    fn in_folder(dir: &Path) -> RunFiles {
        RunFiles {
            rule: dir.join("bench-rule.yaml"),
            config: dir.join("feedloop.yaml"),
            findings: dir.join("findings.jsonl"),
            dead_letters: dir.join("dead-letters.jsonl"),
            delivery_state: dir.join("delivery-state"),
            bursts: dir.join("bursts.csv"),
            broker_log: dir.join("tansu.log"),
            feedloop_log: dir.join("feedloop.log"),
        }
    }
}

/// Runs the benchmark, prints the table and writes the results section. Exits with failure
/// when a measured burst produced no early finding.
pub fn run(args: &LatencyArgs) -> anyhow::Result<ExitCode> {
    check_args(args)?;
    let tansu = processes::tansu_binary()?;
    let files = prepare_folder(args)?;

    let started = Instant::now();
    let load_before = crate::load_average();
    let outcome = measure(args, &tansu, &files, started)?;
    let duration = started.elapsed();

    fs::write(&files.bursts, report::bursts_csv(&outcome.timings))?;
    let report = Report {
        args,
        measured_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        invocation: crate::invocation(),
        machine: crate::machine(),
        load_before,
        load_after: crate::load_average(),
        commit: crate::commit(),
        broker_version: processes::tansu_version(&tansu),
        timings: outcome.timings,
        producer: outcome.producer,
        slack: outcome.slack,
        feedloop_summary: outcome.feedloop_summary,
        duration,
    };
    println!("\n{}\n{}", report.comparison(), report.table());
    let detected = report.detected_early();
    let delivered = report.delivered_to_slack();
    println!(
        "{detected} of {} bursts detected early, {delivered} delivered to Slack; per-burst \
         timings in {}",
        args.bursts,
        files.bursts.display()
    );
    write_results(&args.results, &report.section())?;
    eprintln!("results written to {}", args.results.display());
    Ok(if detected == args.bursts && delivered == args.bursts {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Creates the run's folder, writes the bench rule into it and removes an old findings file
/// and delivery state.
fn prepare_folder(args: &LatencyArgs) -> anyhow::Result<RunFiles> {
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("failed to create {}", args.dir.display()))?;
    let files = RunFiles::in_folder(&args.dir.canonicalize()?);
    // A findings file left by an earlier run would be read as this run's output.
    if files.findings.exists() {
        fs::remove_file(&files.findings)?;
    }
    // An earlier run's state would hold the same burst clients' findings as open, so their
    // changes would edit old Slack messages instead of opening new ones.
    if files.delivery_state.exists() {
        fs::remove_dir_all(&files.delivery_state)
            .with_context(|| format!("failed to remove {}", files.delivery_state.display()))?;
    }
    fs::write(&files.rule, BENCH_RULE)?;
    Ok(files)
}

/// Starts the broker, the topic, feedloop and the producer, sends the warm-up burst and the
/// measured ones, and stops everything again.
fn measure(
    args: &LatencyArgs,
    tansu: &Path,
    files: &RunFiles,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let broker = processes::start_broker(tansu, &files.broker_log)?;
    processes::create_topic(&broker.address, TOPIC, args.partitions)?;
    let slack = SlackDelivery::start();
    let config = feedloop_config(
        args,
        &broker.address,
        &args.packs.canonicalize()?,
        slack.api_url(),
        files,
    );
    fs::write(&files.config, config)?;
    eprintln!(
        "tansu listens on {}; topic {TOPIC} has {} partitions; the loopback Slack listens on \
         {}; starting feedloop",
        broker.address,
        args.partitions,
        slack.api_url()
    );

    let watcher = FindingsWatcher::start(files.findings.clone());
    let feedloop = processes::start_feedloop(
        &args.feedloop,
        &files.config,
        &[(slack::TOKEN_ENV, slack::BOT_TOKEN)],
        &files.feedloop_log,
    )?;
    let traffic = Traffic::new(&broker.address, TOPIC, args.rate, args.seed, args.linger_ms)?;
    let mut session = Session {
        traffic,
        watcher,
        slack,
        feedloop,
        bursts: Vec::new(),
        next_burst: 0,
        deadline: started + Duration::from_secs(args.timeout_seconds),
        timeout_seconds: args.timeout_seconds,
        next_check: Instant::now(),
        feedloop_log: files.feedloop_log.clone(),
    };
    session.warm_up()?;
    eprintln!("warm-up burst detected; sending {} bursts", args.bursts);
    let clock = session.measure(args.bursts)?;
    let outcome = session.finish(&clock)?;
    broker.process.interrupt(STOP_TIMEOUT)?;
    Ok(outcome)
}

/// Splits `KEY=VALUE` at the first `=`.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!(
            "invalid property `{text}`: expected KEY=VALUE, such as fetch.wait.max.ms=10"
        )),
    }
}

fn check_args(args: &LatencyArgs) -> anyhow::Result<()> {
    if args.bursts == 0 || args.bursts > MAX_BURSTS {
        bail!(
            "invalid --bursts {}: expected 1 to {MAX_BURSTS}",
            args.bursts
        );
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!(
            "invalid --rate {}: expected 1 to 100000 events per second",
            args.rate
        );
    }
    if !(1..=64).contains(&args.partitions) {
        bail!("invalid --partitions {}: expected 1 to 64", args.partitions);
    }
    if !(1..=64).contains(&args.workers) {
        bail!("invalid --workers {}: expected 1 to 64", args.workers);
    }
    if args.slack_min_interval_ms > MAX_SLACK_MIN_INTERVAL_MS {
        bail!(
            "invalid --slack-min-interval-ms {}: expected 0 to {MAX_SLACK_MIN_INTERVAL_MS}",
            args.slack_min_interval_ms
        );
    }
    if !args.feedloop.is_file() {
        bail!(
            "feedloop binary not found at {}. Build it with `cargo build --release -p \
             feedloop`, or pass its path with --feedloop",
            args.feedloop.display()
        );
    }
    if !args.packs.is_dir() {
        bail!(
            "rule packs not found at {}; run from the repository root or pass --packs",
            args.packs.display()
        );
    }
    Ok(())
}

/// Returns the `feedloop run` configuration: the topic from its start, the shipped packs and
/// the benchmark's rule, findings to a file and nothing on the console, and the bench rule's
/// changes to the Slack Web API at `slack_api_url`.
fn feedloop_config(
    args: &LatencyArgs,
    brokers: &str,
    packs: &Path,
    slack_api_url: &str,
    files: &RunFiles,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by `feedloop-bench latency`.\n\
         sources:\n\
         \x20 - kafka:\n\
         \x20     brokers: \"{brokers}\"\n\
         \x20     topic: {TOPIC}\n\
         \x20     group_id: feedloop-bench-latency\n\
         \x20     format: json\n\
         \x20     start: earliest\n\
         \x20     stop_at_end: false\n\
         \x20     idle_timeout: {IDLE_TIMEOUT}"
    );
    if !args.consumer_properties.is_empty() {
        let _ = writeln!(text, "      properties:");
        for (key, value) in &args.consumer_properties {
            let _ = writeln!(text, "        {key:?}: {value:?}");
        }
    }
    let _ = writeln!(
        text,
        "rules: [\"{}\", \"{}\"]",
        packs.display(),
        files.rule.display()
    );
    let _ = writeln!(
        text,
        "time: {{allowed_lateness: {}ms}}",
        ALLOWED_LATENESS_MS
    );
    let _ = writeln!(text, "workers: {}", args.workers);
    let _ = writeln!(
        text,
        "dead_letter: {{path: \"{}\"}}",
        files.dead_letters.display()
    );
    let _ = writeln!(
        text,
        "outputs:\n  console: {{enabled: false}}\n  jsonl: {{path: \"{}\"}}",
        files.findings.display()
    );
    // One route without grouping, so each finding is its own message and the message's
    // metadata key is the finding's fingerprint.
    let _ = writeln!(
        text,
        "delivery:\n\
         \x20 state_dir: \"{}\"\n\
         \x20 receivers:\n\
         \x20   {SLACK_RECEIVER}:\n\
         \x20     slack:\n\
         \x20       api_url: \"{slack_api_url}\"\n\
         \x20       token: {{env: {}}}\n\
         \x20       channel: {}\n\
         \x20       min_interval: {}ms\n\
         \x20 routes:\n\
         \x20   - name: bench-rule\n\
         \x20     match: {{rules: [{BENCH_RULE_ID}]}}\n\
         \x20     receivers: [{SLACK_RECEIVER}]",
        files.delivery_state.display(),
        slack::TOKEN_ENV,
        slack::CHANNEL,
        args.slack_min_interval_ms
    );
    text
}

/// Replaces the latency section of the results page, keeping every other section.
fn write_results(path: &Path, section: &str) -> anyhow::Result<()> {
    let page = match fs::read_to_string(path) {
        Ok(page) => page,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("failed to read {}", path.display())),
    };
    fs::write(path, results::replace_section(&page, section))
        .with_context(|| format!("failed to write {}", path.display()))
}

/// An instant paired with the wall clock read at the same moment, to turn wall-clock times
/// such as window ends into instants.
#[derive(Clone, Copy, Debug)]
struct Clock {
    instant: Instant,
    wall_ms: i64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            wall_ms: traffic::wall_clock_ms(),
        }
    }

    fn instant_at(&self, wall_ms: i64) -> Instant {
        let offset = Duration::from_millis(wall_ms.abs_diff(self.wall_ms));
        if wall_ms >= self.wall_ms {
            self.instant + offset
        } else {
            self.instant - offset
        }
    }
}

/// One scheduled burst.
struct Burst {
    client: String,
    planned: Instant,
    warm_up: bool,
    sent: Option<SentBurst>,
}

impl Burst {
    /// Returns the delivery mark of the burst at `index`; 0 marks nothing.
    fn mark(index: usize) -> usize {
        index + 1
    }
}

/// Measurements of a finished session.
struct Outcome {
    timings: Vec<BurstTiming>,
    producer: traffic::ProducerCounts,
    slack: SlackCounts,
    feedloop_summary: Option<String>,
}

/// The running broker client, feedloop, findings watcher and loopback Slack, and the bursts so
/// far.
struct Session {
    traffic: Traffic,
    watcher: FindingsWatcher,
    slack: SlackDelivery,
    feedloop: Process,
    bursts: Vec<Burst>,
    next_burst: usize,
    deadline: Instant,
    timeout_seconds: u64,
    next_check: Instant,
    feedloop_log: PathBuf,
}

impl Session {
    /// Sends one burst a second from now and waits for its early finding and its Slack
    /// message, which show that feedloop has started, reads the topic and delivers.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let client = "192.0.2.1".to_string();
        let key = FindingKey::new(BENCH_RULE_ID, "early", &client);
        self.bursts.push(Burst {
            client: client.clone(),
            planned: Instant::now() + Duration::from_secs(1),
            warm_up: true,
            sent: None,
        });
        let complete = self.drive(
            |session| session.slack_arrival(&client).is_some(),
            Instant::now() + WARM_UP_TIMEOUT,
        )?;
        if complete {
            return Ok(());
        }
        if self.watcher.seen(&key).is_none() {
            bail!(
                "feedloop reported no early finding for the warm-up burst within {} s; its \
                 output is in {}",
                WARM_UP_TIMEOUT.as_secs(),
                self.feedloop_log.display()
            );
        }
        bail!(
            "feedloop reported the warm-up burst's finding but posted no Slack message for it \
             within {} s; its output is in {}",
            WARM_UP_TIMEOUT.as_secs(),
            self.feedloop_log.display()
        );
    }

    /// Returns when the Slack message that opens the bench rule's finding for `client`
    /// arrived, as of the loopback Slack's last refresh.
    fn slack_arrival(&self, client: &str) -> Option<Instant> {
        let key = FindingKey::new(BENCH_RULE_ID, "early", client);
        let fingerprint = self.watcher.fingerprint(&key)?;
        self.slack.opened(&fingerprint)
    }

    /// Sends `count` bursts on the schedule of [`schedule::plan_bursts`] and waits until each
    /// has its findings or its window's final finding is overdue. Returns the clock the
    /// schedule was planned with.
    fn measure(&mut self, count: usize) -> anyhow::Result<Clock> {
        let clock = Clock::now();
        let plan = schedule::plan_bursts(clock.wall_ms + 500, count, WINDOW_MS);
        for (index, time_ms) in plan.iter().enumerate() {
            self.bursts.push(Burst {
                client: format!("203.0.113.{}", index + 1),
                planned: clock.instant_at(*time_ms),
                warm_up: false,
                sent: None,
            });
        }
        let last_ms = *plan.last().expect("at least one burst is planned");
        let closes = schedule::window_end(last_ms, WINDOW_MS) + ALLOWED_LATENESS_MS;
        let until = clock.instant_at(closes) + FINAL_GRACE;
        let complete = self.drive(Session::all_seen, until)?;
        if !complete {
            eprintln!("warning: some findings did not arrive; the table counts the ones that did");
        }
        Ok(clock)
    }

    /// Returns true when every measured burst was sent and has all three findings and its
    /// Slack message.
    fn all_seen(&self) -> bool {
        self.bursts
            .iter()
            .filter(|burst| !burst.warm_up)
            .all(|burst| {
                burst.sent.is_some()
                    && [
                        (BENCH_RULE_ID, "early"),
                        (BENCH_RULE_ID, "final"),
                        (SHIPPED_RULE_ID, "early"),
                    ]
                    .iter()
                    .all(|(rule, phase)| {
                        let key = FindingKey::new(rule, phase, &burst.client);
                        self.watcher.seen(&key).is_some()
                    })
                    && self.slack_arrival(&burst.client).is_some()
            })
    }

    /// Sends background traffic and due bursts until `done` holds, returning true, or until
    /// `until`, returning false. Fails when feedloop exits or the run's deadline passes.
    fn drive(&mut self, done: impl Fn(&Session) -> bool, until: Instant) -> anyhow::Result<bool> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= self.deadline {
                bail!(
                    "the run took longer than --timeout-seconds {}; stopping",
                    self.timeout_seconds
                );
            }
            if now >= until {
                return Ok(false);
            }
            self.traffic.send_background()?;
            self.send_due_bursts(now)?;
            if now >= self.next_check {
                self.feedloop.check_running()?;
                self.watcher.check()?;
                // Arrivals carry the mock's own stamps, so reading them only every check
                // interval delays when the run notices them, not the figures.
                self.slack.refresh();
                self.next_check = now + CHECK_INTERVAL;
            }
            thread::sleep(LOOP_PAUSE);
        }
    }

    fn send_due_bursts(&mut self, now: Instant) -> anyhow::Result<()> {
        while let Some(burst) = self.bursts.get_mut(self.next_burst) {
            if burst.planned > now {
                break;
            }
            let sent = self
                .traffic
                .send_burst(&burst.client, Burst::mark(self.next_burst))?;
            burst.sent = Some(sent);
            self.next_burst += 1;
        }
        Ok(())
    }

    /// Collects each measured burst's timings, then stops the producer, the watcher and
    /// feedloop, in that order, and the loopback Slack last.
    fn finish(mut self, clock: &Clock) -> anyhow::Result<Outcome> {
        self.slack.refresh();
        let mut timings = Vec::new();
        for (index, burst) in self.bursts.iter().enumerate() {
            if burst.warm_up {
                continue;
            }
            let seen = |rule: &str, phase: &str| {
                self.watcher
                    .seen(&FindingKey::new(rule, phase, &burst.client))
            };
            let ack = self.traffic.ack(Burst::mark(index));
            if let Some(sent) = burst.sent {
                let first_end = schedule::window_end(sent.first_time_ms, WINDOW_MS);
                if first_end != schedule::window_end(sent.crossing_time_ms, WINDOW_MS) {
                    eprintln!(
                        "warning: burst {} straddled a window end, so no window reached the \
                         threshold; the producer loop fell behind its schedule",
                        burst.client
                    );
                }
            }
            timings.push(BurstTiming {
                client: burst.client.clone(),
                sent: burst.sent,
                window_end: burst.sent.map(|sent| {
                    clock.instant_at(schedule::window_end(sent.crossing_time_ms, WINDOW_MS))
                }),
                acked: ack.clone().and_then(Result::ok),
                delivery_error: ack.and_then(Result::err),
                early: seen(BENCH_RULE_ID, "early"),
                shipped_early: seen(SHIPPED_RULE_ID, "early"),
                final_seen: seen(BENCH_RULE_ID, "final"),
                slack: self.slack_arrival(&burst.client),
            });
        }

        let producer = self.traffic.finish(Duration::from_secs(5));
        let watched = self.watcher.stop()?;
        if watched.invalid > 0 {
            eprintln!(
                "warning: {} of {} lines in the findings file were not findings",
                watched.invalid, watched.lines
            );
        }
        let status = self.feedloop.interrupt(STOP_TIMEOUT)?;
        if !status.success() {
            eprintln!(
                "warning: feedloop exited with {status}; its output is in {}",
                self.feedloop_log.display()
            );
        }
        let feedloop_summary = fs::read_to_string(&self.feedloop_log)
            .ok()
            .and_then(|log| report::run_summary(&log));
        // feedloop has stopped, so the counts include every request it sent.
        self.slack.refresh();
        let slack = self.slack.counts();
        if slack.repeated > 0 {
            eprintln!(
                "warning: the loopback Slack received {} opening posts for findings that had \
                 one already; each figure uses the first post",
                slack.repeated
            );
        }
        Ok(Outcome {
            timings,
            producer,
            slack,
            feedloop_summary,
        })
    }
}
