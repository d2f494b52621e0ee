//! The latency figures: per-burst intervals, their quantiles, and the results section.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use feedloop_bench::harness::group_thousands;
use feedloop_bench::results::LATENCY_HEADING;

use super::findings::POLL_INTERVAL;
use super::slack::{SlackCounts, CHANNEL};
use super::traffic::{ProducerCounts, SentBurst, BURST_SIZE};
use super::{LatencyArgs, ALLOWED_LATENESS_MS, BENCH_RULE_ID, IDLE_TIMEOUT, SHIPPED_RULE_ID};

/// The delivery promise the Slack figure is checked against: each finding within a second.
const PROMISE: Duration = Duration::from_secs(1);

/// Timings of one measured burst. A missing instant means the event did not happen before
/// the run stopped waiting.
#[derive(Clone, Debug)]
pub struct BurstTiming {
    /// The burst's client address.
    pub client: String,
    /// When the burst was sent, and its event times.
    pub sent: Option<SentBurst>,
    /// When the bench rule's window that contains the crossing event ended.
    pub window_end: Option<Instant>,
    /// When the broker acknowledged the crossing event.
    pub acked: Option<Instant>,
    /// The delivery error of the crossing event, if it was not delivered.
    pub delivery_error: Option<String>,
    /// When the bench rule's early finding appeared in the findings file.
    pub early: Option<Instant>,
    /// When the early finding of the shipped `auth-failure-burst` appeared.
    pub shipped_early: Option<Instant>,
    /// When the bench rule's final finding appeared.
    pub final_seen: Option<Instant>,
    /// When the Slack message that opens the bench rule's finding arrived at the loopback
    /// Slack.
    pub slack: Option<Instant>,
}

impl BurstTiming {
    fn handed(&self) -> Option<Instant> {
        self.sent.map(|sent| sent.handed)
    }
}

/// Returns `later - earlier` in milliseconds, negative when `later` came first.
fn millis_between(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1e3
    } else {
        -(earlier - later).as_secs_f64() * 1e3
    }
}

/// One interval of the table, measured on each burst that has both of its ends.
struct Row {
    name: &'static str,
    values_ms: Vec<f64>,
}

impl Row {
    fn new(
        name: &'static str,
        timings: &[BurstTiming],
        interval: impl Fn(&BurstTiming) -> Option<(Instant, Instant)>,
    ) -> Row {
        let values_ms = timings
            .iter()
            .filter_map(&interval)
            .map(|(later, earlier)| millis_between(later, earlier))
            .collect();
        Row { name, values_ms }
    }
}

/// The quantiles of one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// Returns the nearest-rank quantiles of the values, or `None` when there are none. With
/// fewer than 100 values the 99th percentile is the maximum.
pub fn quantiles(values: &[f64]) -> Option<Quantiles> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("intervals are never NaN"));
    let rank = |percent: f64| {
        let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    };
    Some(Quantiles {
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: sorted[sorted.len() - 1],
    })
}

/// Everything the results section reports.
pub struct Report<'a> {
    /// The options of the run.
    pub args: &'a LatencyArgs,
    /// When the run finished, in UTC.
    pub measured_at: String,
    /// The command line of the run.
    pub invocation: String,
    /// CPU model and core count.
    pub machine: String,
    /// Load averages before the broker started.
    pub load_before: Option<String>,
    /// Load averages after the run.
    pub load_after: Option<String>,
    /// The commit and whether the work tree differs from it.
    pub commit: String,
    /// Output of `tansu --version`.
    pub broker_version: Option<String>,
    /// One entry per measured burst.
    pub timings: Vec<BurstTiming>,
    /// The producer's counts.
    pub producer: ProducerCounts,
    /// The loopback Slack's request counts.
    pub slack: SlackCounts,
    /// The summary feedloop printed when it stopped.
    pub feedloop_summary: Option<String>,
    /// Wall time of the whole run, broker start to broker stop.
    pub duration: Duration,
}

impl Report<'_> {
    /// Returns the number of bursts whose early finding from the bench rule arrived.
    pub fn detected_early(&self) -> usize {
        self.timings.iter().filter(|t| t.early.is_some()).count()
    }

    /// Returns the number of bursts whose Slack message arrived.
    pub fn delivered_to_slack(&self) -> usize {
        self.timings.iter().filter(|t| t.slack.is_some()).count()
    }

    fn rows(&self) -> Vec<Row> {
        let t = &self.timings;
        vec![
            Row::new("early finding after the crossing event's ack", t, |b| {
                Some((b.early?, b.acked?))
            }),
            Row::new("Slack message after the crossing event's ack", t, |b| {
                Some((b.slack?, b.acked?))
            }),
            Row::new("Slack message after the findings file line", t, |b| {
                Some((b.slack?, b.early?))
            }),
            Row::new(
                "early finding after the crossing event's hand-over",
                t,
                |b| Some((b.early?, b.handed()?)),
            ),
            Row::new("early `auth-failure-burst` after the ack", t, |b| {
                Some((b.shipped_early?, b.acked?))
            }),
            Row::new("ack after hand-over (producer and broker)", t, |b| {
                Some((b.acked?, b.handed()?))
            }),
            Row::new("final finding after the window's end", t, |b| {
                Some((b.final_seen?, b.window_end?))
            }),
        ]
    }

    /// Renders the figures as a Markdown table.
    pub fn table(&self) -> String {
        let bursts = self.timings.len();
        let mut table = String::new();
        table.push_str("| interval | bursts | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |\n");
        table.push_str("|---|---:|---:|---:|---:|---:|\n");
        for row in self.rows() {
            let count = row.values_ms.len();
            match quantiles(&row.values_ms) {
                Some(q) => {
                    let _ = writeln!(
                        table,
                        "| {} | {count} of {bursts} | {:.1} | {:.1} | {:.1} | {:.1} |",
                        row.name, q.p50, q.p90, q.p99, q.max
                    );
                }
                None => {
                    let _ = writeln!(table, "| {} | 0 of {bursts} | - | - | - | - |", row.name);
                }
            }
        }
        table
    }

    /// Renders the findings-file and Slack figures side by side; see [`comparison`].
    pub fn comparison(&self) -> String {
        comparison(&self.timings)
    }

    /// Renders the whole "Finding latency" section of the results page.
    pub fn section(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{LATENCY_HEADING}\n");
        let _ = writeln!(
            text,
            "Measured {} by `bench/latency.sh`, which builds the release binaries and runs \
             `{}`. The run took {:.0} s from the broker's start to its stop.\n",
            self.measured_at,
            self.invocation,
            self.duration.as_secs_f64()
        );
        text.push_str(&self.setup());
        text.push_str(&self.comparison());
        text.push('\n');
        text.push_str(&self.table());
        text.push_str(&self.notes());
        if let Some(summary) = &self.feedloop_summary {
            let _ = writeln!(
                text,
                "\nSummary that feedloop printed when the run stopped it:\n\n```\n{summary}\n```"
            );
        }
        text
    }

    /// Describes the machine, the commit and the setup as a Markdown list.
    fn setup(&self) -> String {
        let args = self.args;
        let unknown = || "unknown".to_string();
        let mut list = String::new();
        let _ = writeln!(list, "- machine: {}", self.machine);
        let _ = writeln!(
            list,
            "- load average (1, 5, 15 min): {} before the run, {} after it",
            self.load_before.clone().unwrap_or_else(unknown),
            self.load_after.clone().unwrap_or_else(unknown),
        );
        let _ = writeln!(list, "- commit: {}", self.commit);
        let _ = writeln!(
            list,
            "- broker: {} with in-memory storage on 127.0.0.1, one topic of {} partitions",
            self.broker_version.as_deref().unwrap_or("tansu"),
            args.partitions
        );
        let properties = if args.consumer_properties.is_empty() {
            "no extra consumer properties".to_string()
        } else {
            let pairs: Vec<String> = args
                .consumer_properties
                .iter()
                .map(|(key, value)| format!("`{key}={value}`"))
                .collect();
            format!("consumer properties {}", pairs.join(", "))
        };
        let _ = writeln!(
            list,
            "- feedloop: `{} run` with workers: {}, reading the topic from `earliest` with \
             `stop_at_end: false`, `idle_timeout: {IDLE_TIMEOUT}` and {properties}; \
             `allowed_lateness` of {ALLOWED_LATENESS_MS} ms, console off and findings to a JSON \
             Lines file",
            args.feedloop.display(),
            args.workers
        );
        let slack = self.slack;
        let _ = writeln!(
            list,
            "- delivery: one route without grouping takes the changes of `{BENCH_RULE_ID}` to a \
             `slack` receiver with a bot token, channel `{CHANNEL}` and `min_interval: {}ms` \
             (feedloop's default is 1s). Its `api_url` is `SlackMock` from `feedloop-testkit`, \
             a Slack Web API server on 127.0.0.1 in the benchmark's process, because no real \
             Slack can be reached from this machine. The delivery state store is in the run's \
             folder and starts empty. Requests the mock received: opening \
             `chat.postMessage` {} (for a finding that had one already: {}), thread replies \
             {}, `chat.update` {}, other {} (feedloop sends one `auth.test` at start)",
            args.slack_min_interval_ms,
            slack.opened,
            slack.repeated,
            slack.replies,
            slack.updates,
            slack.other
        );
        let _ = writeln!(
            list,
            "- rules: the shipped packs, which every event is evaluated against, plus \
             `{BENCH_RULE_ID}`, the threshold of the shipped `{SHIPPED_RULE_ID}` ({BURST_SIZE} \
             401s per client) with a 1-minute window instead of 5 minutes, so that its final \
             findings arrive within the run"
        );
        let _ = writeln!(
            list,
            "- background traffic: {} events/s of `feedloop-gen` normal traffic (seed {}), \
             each stamped with the wall clock when handed to the producer and keyed by client; \
             {} events in all. Producer `linger.ms` {}, `acks=all`; of the background and burst \
             events, {} were acknowledged and {} failed",
            format_rate(args.rate),
            args.seed,
            group_thousands(self.producer.background),
            args.linger_ms,
            group_thousands(self.producer.delivered),
            group_thousands(self.producer.failed)
        );
        let _ = writeln!(
            list,
            "- bursts: {} measured, after one warm-up burst that is not counted. Each is one \
             new client sending {BURST_SIZE} failed logins (`POST /v1/auth/login`, 401) back \
             to back, spread over the run so that none straddles a window boundary and the \
             last starts a second before a window closes\n",
            self.timings.len()
        );
        list
    }

    /// Explains what each interval includes and excludes.
    fn notes(&self) -> String {
        let poll_ms = POLL_INTERVAL.as_millis();
        let mut notes = String::from("\n### What the figures mean\n\n");
        let _ = writeln!(
            notes,
            "- Each finding interval ends when the benchmark first read the finding's line from \
             feedloop's findings file, which it reads every {poll_ms} ms, so a figure can be up \
             to {poll_ms} ms late. A Slack interval ends at the loopback Slack's own stamp, \
             which is not polled, so the Slack message can appear to come before the file's \
             line by up to {poll_ms} ms. Quantiles are nearest-rank; with fewer than 100 bursts \
             the p99 is the maximum. `bursts.csv` in the run's folder has every burst's figures."
        );
        let _ = writeln!(
            notes,
            "- The ack is the delivery report of the burst's last, crossing event, timed on the \
             producer's polling thread. From the ack on, the early figure covers the broker \
             answering feedloop's fetch request, librdkafka handing the records over, the \
             Kafka reader's poll (it waits up to 10 ms for a record), the worker's park (up to \
             5 ms after a turn that read nothing), decoding, every rule, the windows, the \
             output worker, and the delivery thread's write and flush of the file. That \
             thread's 200 ms receive timeout adds nothing here, because it only bounds the wait \
             while no output arrives, and the thread flushes once it has written what is queued."
        );
        notes.push_str(&self.delivery_note());
        notes.push_str(&self.broker_note());
        let _ = writeln!(
            notes,
            "- The hand-over figure adds the producer's `linger.ms` and the produce round trip, \
             so it is the latency for a service whose log record has reached a Kafka producer. \
             No figure includes how long a real service takes to ship its access log to that \
             producer."
        );
        let _ = writeln!(
            notes,
            "- A final finding can leave only when the watermark passes the window's end, and \
             the watermark trails the newest event time of every partition by the allowed \
             lateness ({ALLOWED_LATENESS_MS} ms here, 1 minute by default). The final figure is \
             that lateness plus the time for the first events stamped after it to travel the \
             same path. The finals of all bursts in one window leave together, so that row has \
             one distinct value per window."
        );
        let _ = writeln!(
            notes,
            "- Broker, producer, feedloop and the benchmark share the machine's cores, and other \
             processes may share them too, as the load averages show. How long the run lasts \
             depends on the second of the minute it starts at, because the last burst waits for \
             a window end."
        );
        notes
    }

    /// Explains what the Slack figure adds to the findings-file figure.
    fn delivery_note(&self) -> String {
        format!(
            "- The Slack figure ends when the loopback Slack finished reading the \
             `chat.postMessage` request that opens the finding's message. The benchmark matches \
             it to its burst by the message metadata's key, which on a route without grouping \
             is the finding's fingerprint, as the findings file reports it. After the finding, \
             the dataflow sends its `opened` change on the same output channel. The delivery \
             thread writes the finding to the file's buffer and hands the change to the \
             delivery engine. The engine routes it, queues it at once because the route has \
             no `group_wait`, and commits it to the SQLite outbox (WAL, `synchronous = FULL`) \
             in the same transaction as the finding's state. The engine then wakes the \
             receiver's worker, and only after the whole batch does the delivery thread flush \
             the findings file. Every change is committed, including unrouted ones such as \
             `{SHIPPED_RULE_ID}`'s, so the findings-file figure of this run includes those \
             commits and is not comparable with a run without a `delivery` section. The \
             worker's 500 ms receive timeout only bounds its wait while the outbox is empty, \
             because a queued notice wakes it at once. The worker then reads the outbox, \
             commits a create intent, renders the Block Kit message, waits out `min_interval` \
             ({} ms here) since its last post to the channel, and posts over loopback HTTP. A \
             real Slack adds the network round trip and Slack's own processing, which this run \
             does not measure. One worker applies a receiver's notices in order, so with \
             feedloop's default `min_interval` of 1 s a channel gets at most one post a second, \
             thread replies included, and a finding that closely follows others waits for \
             their posts.\n",
            self.args.slack_min_interval_ms
        )
    }

    /// Explains how the broker's fetch handling shapes the early figure.
    fn broker_note(&self) -> String {
        let fetch_wait = self
            .args
            .consumer_properties
            .iter()
            .rev()
            .find(|(key, _)| key == "fetch.wait.max.ms")
            .map(|(_, value)| format!("{value} ms, as this run set it with --consumer-property"))
            .unwrap_or_else(|| {
                "100 ms, feedloop's default (librdkafka's own is 500 ms)".to_string()
            });
        format!(
            "- Most of the early figure can be the broker. The fetch handler of tansu 0.6.0 \
             (`tansu-storage`, `service/fetch.rs`) reads the partitions and then, before it \
             answers, sleeps for half of the request's remaining max wait when that is at least \
             250 ms, else for all of it, even when the read found records. The max wait is \
             librdkafka's `fetch.wait.max.ms`: {fetch_wait}. With 500 ms, a record would wait 250 \
             ms in the fetch that reads it plus up to 250 ms for that fetch to start; with a \
             wait under 250 ms, as here, between one and two max waits. Its in-memory storage also lists \
             every stored batch of a partition on each fetch, so the broker's CPU use grows as \
             the topic grows, the more so the shorter the max wait. librdkafka documents \
             `fetch.wait.max.ms` as the most time the broker may wait to fill a response with \
             `fetch.min.bytes` (default 1), so a broker that answers once that much has \
             arrived adds no such wait.\n"
        )
    }
}

/// Renders the findings-file and Slack figures side by side, over the bursts that have
/// both, with the ratio of each quantile and the count within [`PROMISE`].
pub fn comparison(timings: &[BurstTiming]) -> String {
    let pairs: Vec<(f64, f64)> = timings
        .iter()
        .filter_map(|b| {
            let acked = b.acked?;
            Some((
                millis_between(b.early?, acked),
                millis_between(b.slack?, acked),
            ))
        })
        .collect();

    let bursts = timings.len();
    let mut text = format!(
        "Time from the broker's ack of a burst's crossing event to the early finding of \
         `{BENCH_RULE_ID}` in the findings file and to its message in Slack, over the {} of \
         {bursts} bursts that have both:\n\n",
        pairs.len()
    );

    let file: Vec<f64> = pairs.iter().map(|(file, _)| *file).collect();
    let slack: Vec<f64> = pairs.iter().map(|(_, slack)| *slack).collect();
    let (Some(file_q), Some(slack_q)) = (quantiles(&file), quantiles(&slack)) else {
        text.push_str("No burst has both figures.\n");
        return text;
    };

    text.push_str("| quantile | findings file (ms) | Slack (ms) | Slack / findings file |\n");
    text.push_str("|---|---:|---:|---:|\n");
    let quantile_rows = [
        ("p50", file_q.p50, slack_q.p50),
        ("p90", file_q.p90, slack_q.p90),
        ("max", file_q.max, slack_q.max),
    ];
    for (name, file_ms, slack_ms) in quantile_rows {
        let _ = writeln!(
            text,
            "| {name} | {file_ms:.1} | {slack_ms:.1} | {} |",
            format_ratio(slack_ms, file_ms)
        );
    }

    let within = timings
        .iter()
        .filter(|b| {
            b.slack
                .zip(b.acked)
                .is_some_and(|(slack, acked)| slack <= acked + PROMISE)
        })
        .count();
    let _ = writeln!(
        text,
        "\n{within} of {bursts} bursts reached Slack within {} s of the ack.",
        PROMISE.as_secs()
    );
    text
}

/// Formats `numerator / denominator` with two decimals, or `-` when the denominator is not
/// above zero.
fn format_ratio(numerator: f64, denominator: f64) -> String {
    if denominator > 0.0 {
        format!("{:.2}", numerator / denominator)
    } else {
        "-".to_string()
    }
}

/// Formats a rate with commas between groups of three digits when it is a whole number.
fn format_rate(rate: f64) -> String {
    if rate.fract() == 0.0 && rate < u64::MAX as f64 {
        group_thousands(rate as u64)
    } else {
        rate.to_string()
    }
}

/// Returns the run summary from feedloop's log, without the lines that name output paths.
/// The summary starts at the last line that reads `feedloop summary` or `feedloop run
/// summary`.
pub fn run_summary(log: &str) -> Option<String> {
    let start = ["\nfeedloop summary", "\nfeedloop run summary"]
        .iter()
        .filter_map(|heading| log.rfind(heading))
        .max()?
        + 1;
    let lines: Vec<&str> = log[start..]
        .lines()
        .filter(|line| !line.contains(" written to "))
        .collect();
    Some(lines.join("\n").trim_end().to_string())
}

/// Renders each burst's intervals in milliseconds as CSV; empty cells are intervals that
/// did not complete.
pub fn bursts_csv(timings: &[BurstTiming]) -> String {
    let mut csv = String::from(
        "client,crossing_event_time_ms,ack_after_handover_ms,early_after_ack_ms,\
         slack_after_ack_ms,slack_after_early_ms,auth_failure_burst_after_ack_ms,\
         final_after_window_end_ms,delivery_error\n",
    );
    let cell = |pair: Option<(Instant, Instant)>| {
        pair.map(|(later, earlier)| format!("{:.2}", millis_between(later, earlier)))
            .unwrap_or_default()
    };
    for timing in timings {
        let handed = timing.handed();
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            timing.client,
            timing
                .sent
                .map(|s| s.crossing_time_ms.to_string())
                .unwrap_or_default(),
            cell(timing.acked.zip(handed)),
            cell(timing.early.zip(timing.acked)),
            cell(timing.slack.zip(timing.acked)),
            cell(timing.slack.zip(timing.early)),
            cell(timing.shipped_early.zip(timing.acked)),
            cell(timing.final_seen.zip(timing.window_end)),
            timing.delivery_error.as_deref().unwrap_or_default(),
        );
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let q = quantiles(&values).unwrap();
        assert_eq!(q.p50, 10.0);
        assert_eq!(q.p90, 18.0);
        assert_eq!(q.p99, 20.0);
        assert_eq!(q.max, 20.0);
    }

    #[test]
    fn quantiles_of_one_and_none() {
        assert_eq!(quantiles(&[]), None);
        let q = quantiles(&[7.5]).unwrap();
        assert_eq!((q.p50, q.p90, q.p99, q.max), (7.5, 7.5, 7.5, 7.5));
    }

    #[test]
    fn quantiles_ignore_input_order() {
        let q = quantiles(&[3.0, -1.0, 2.0]).unwrap();
        assert_eq!(q.p50, 2.0);
        assert_eq!(q.max, 3.0);
    }

    #[test]
    fn millis_between_is_signed() {
        let earlier = Instant::now();
        let later = earlier + Duration::from_millis(250);
        assert_eq!(millis_between(later, earlier), 250.0);
        assert_eq!(millis_between(earlier, later), -250.0);
    }

    fn timing(start: Instant, early_ms: u64, slack_ms: Option<u64>) -> BurstTiming {
        BurstTiming {
            client: "203.0.113.1".to_string(),
            sent: None,
            window_end: None,
            acked: Some(start),
            delivery_error: None,
            early: Some(start + Duration::from_millis(early_ms)),
            shipped_early: None,
            final_seen: None,
            slack: slack_ms.map(|ms| start + Duration::from_millis(ms)),
        }
    }

    #[test]
    fn comparison_shows_ratio_and_promise() {
        let start = Instant::now();
        let timings = vec![
            timing(start, 100, Some(200)),
            timing(start, 200, Some(1_500)),
            timing(start, 300, None),
        ];
        let text = comparison(&timings);
        assert!(text.contains("over the 2 of 3 bursts"), "{text}");
        assert!(text.contains("| p50 | 100.0 | 200.0 | 2.00 |"), "{text}");
        assert!(text.contains("| max | 200.0 | 1500.0 | 7.50 |"), "{text}");
        assert!(
            text.contains("1 of 3 bursts reached Slack within 1 s of the ack."),
            "{text}"
        );
    }

    #[test]
    fn comparison_without_slack() {
        let start = Instant::now();
        let text = comparison(&[timing(start, 100, None)]);
        assert!(text.contains("No burst has both figures."), "{text}");
    }

    #[test]
    fn ratio_of_zero_denominator() {
        assert_eq!(format_ratio(3.0, 2.0), "1.50");
        assert_eq!(format_ratio(3.0, 0.0), "-");
    }

    #[test]
    fn run_summary_drops_output_paths() {
        let log = "WARN something\nfeedloop summary\n  records read  10\n  findings \
                   written to /tmp/x/findings.jsonl\n";
        assert_eq!(
            run_summary(log).as_deref(),
            Some("feedloop summary\n  records read  10")
        );
        assert_eq!(run_summary("no summary"), None);
    }
}
