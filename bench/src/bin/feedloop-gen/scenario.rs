//! `feedloop-gen scenario`: a labelled scenario run to files or a Kafka topic.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::ValueEnum;

use feedloop_bench::scenario::output::{
    self, AvroSink, JsonlSink, KafkaEncoding, KafkaSink, Pacing, RunSummary, Sink,
};
use feedloop_bench::scenario::{
    write_labels, Plan, ScenarioConfig, ScenarioGenerator, MAX_CLIENTS, MAX_DURATION_MS,
    MAX_END_MS, MAX_MEAN_RATE, MIN_DURATION_MS,
};

use super::{parse_number, parse_start};

/// Name of the labels file in the output folder.
const LABELS_FILE: &str = "labels.jsonl";

/// Writes seeded API traffic with labelled attack scenarios, and one label per scenario in
/// `labels.jsonl`. The same options always produce the same bytes.
#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// Seed of every random choice.
    #[arg(long, default_value_t = ScenarioConfig::default().seed)]
    seed: u64,
    /// Folder for the events and labels files, created when missing.
    #[arg(long, required_unless_present = "print_plan")]
    out: Option<PathBuf>,
    /// Encoding of the events: JSON Lines in feedloop's native schema, or Avro (a container
    /// file, or Confluent-framed messages on Kafka).
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    format: OutputFormat,
    /// Compresses the JSON Lines file with gzip, as events.jsonl.gz.
    #[arg(long)]
    gzip: bool,
    /// Start of the run, RFC 3339, from 1970 [default: 2025-06-02T08:00:00Z].
    #[arg(long, value_parser = parse_run_start)]
    start: Option<Typed<i64>>,
    /// Length of the run in event time, from 1m to 7d, such as 4h, 90m or 2h30m.
    #[arg(long, default_value = "4h", value_parser = parse_run_duration)]
    duration: Typed<i64>,
    /// Mean rate of normal traffic over a day, in events per second of event time, above 0
    /// and at most 100000.
    #[arg(long, default_value_t = ScenarioConfig::default().mean_rate_per_second, value_parser = parse_mean_rate)]
    mean_rate: f64,
    /// How far the rate swings over the day, from 0 (flat) to below 1.
    #[arg(long, default_value_t = ScenarioConfig::default().diurnal_amplitude, value_parser = parse_amplitude)]
    diurnal_amplitude: f64,
    /// Hour of the day (UTC) at which normal traffic peaks, from 0 to 24.
    #[arg(long, default_value_t = ScenarioConfig::default().peak_hour_utc, value_parser = parse_peak_hour)]
    peak_hour: f64,
    /// Number of distinct normal clients, from 1 to 131071.
    #[arg(
        long,
        default_value_t = ScenarioConfig::default().clients,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS))
    )]
    clients: u32,
    /// Comma-separated names of the plan's scenarios to run [default: all of them].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// JSON file with the plan to run in place of the default plan, as --print-plan prints it.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Prints the default plan as JSON and exits.
    #[arg(long)]
    print_plan: bool,
    /// Kafka bootstrap servers, such as 127.0.0.1:9092. With --topic, the events go to the
    /// topic instead of a file, and the labels still go to --out.
    #[arg(long, requires = "topic")]
    brokers: Option<String>,
    /// Kafka topic for the events. It must exist unless the broker creates topics on use.
    #[arg(long, requires = "brokers")]
    topic: Option<String>,
    /// Schema registry id in the Confluent header of Avro messages on Kafka.
    #[arg(long, default_value_t = 1)]
    schema_id: u32,
    /// Events per second of wall-clock time [default: as fast as possible].
    #[arg(long)]
    send_rate: Option<f64>,
    /// The maximum number of events. A plan expected to make more is rejected before it starts.
    #[arg(long, default_value_t = ScenarioConfig::default().max_events)]
    max_events: u64,
    /// The maximum wall-clock time of the whole run, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

/// The encoding of the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Jsonl,
    Avro,
}

/// Runs the `scenario` subcommand.
pub fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    if args.print_plan {
        let plan =
            serde_json::to_string_pretty(&Plan::default()).expect("a plan serializes to JSON");
        println!("{plan}");
        return Ok(());
    }
    check_args(&args)?;
    let out = args
        .out
        .clone()
        .expect("clap requires --out without --print-plan");
    let config = config(&args)?;
    let generator = ScenarioGenerator::new(config.clone()).map_err(|err| {
        if err.field() == "max_events" {
            anyhow!(
                "invalid --max-events {}: the run may make up to about {:.0} events; lower \
                 --mean-rate or --duration, or raise --max-events",
                args.max_events,
                config.expected_events_bound()
            )
        } else {
            err.into()
        }
    })?;
    fs::create_dir_all(&out).with_context(|| format!("failed to create {}", out.display()))?;

    let started = Instant::now();
    let pacing = Pacing {
        send_rate: args.send_rate,
        deadline: started + Duration::from_secs(args.timeout_seconds),
    };
    let (summary, target) = match (&args.brokers, &args.topic) {
        (Some(brokers), Some(topic)) => {
            let encoding = match args.format {
                OutputFormat::Jsonl => KafkaEncoding::Json,
                OutputFormat::Avro => KafkaEncoding::ConfluentAvro {
                    schema_id: args.schema_id,
                },
            };
            let sink = KafkaSink::new(brokers, topic, encoding)
                .with_context(|| format!("failed to create a Kafka producer for {brokers}"))?;
            let summary = output::run(generator, Box::new(sink), pacing)
                .with_context(|| format!("failed to send events to topic {topic}"))?;
            (summary, format!("topic {topic} at {brokers}"))
        }
        _ => write_events_file(&args, &config, &out, generator, pacing)?,
    };

    let labels_path = out.join(LABELS_FILE);
    write_file(&labels_path, |file| write_labels(&summary.labels, file))?;
    report(
        &summary,
        &target,
        &labels_path,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn check_args(args: &ScenarioArgs) -> anyhow::Result<()> {
    if args.gzip && (args.format == OutputFormat::Avro || args.topic.is_some()) {
        bail!(
            "--gzip applies only to a JSON Lines file; leave it out with --format avro or --topic"
        );
    }
    if let Some(rate) = args.send_rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("invalid --send-rate {rate}: expected a positive number of events per second");
        }
    }
    if args.timeout_seconds == 0 {
        bail!("invalid --timeout-seconds 0: expected at least 1 second");
    }
    if let Some(start) = &args.start {
        if start.value.saturating_add(args.duration.value) > MAX_END_MS {
            bail!(
                "invalid --start {}: a run of --duration {} would end after the year 9999; \
                 start earlier or shorten the run",
                start.text,
                args.duration.text
            );
        }
    }
    Ok(())
}

fn config(args: &ScenarioArgs) -> anyhow::Result<ScenarioConfig> {
    let plan = match &args.plan {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("failed to read plan {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("invalid plan {}", path.display()))?
        }
        None => Plan::default(),
    };
    let plan = if args.scenarios.is_empty() {
        plan
    } else {
        plan.select(&args.scenarios)?
    };
    let defaults = ScenarioConfig::default();
    Ok(ScenarioConfig {
        seed: args.seed,
        start_ms: args
            .start
            .as_ref()
            .map_or(defaults.start_ms, |start| start.value),
        duration_ms: args.duration.value,
        mean_rate_per_second: args.mean_rate,
        diurnal_amplitude: args.diurnal_amplitude,
        peak_hour_utc: args.peak_hour,
        clients: args.clients,
        max_events: args.max_events,
        plan,
    })
}

/// Writes the events to a file in `out` under a temporary name, and renames it once it is
/// complete, so an interrupted run never leaves a file that looks whole.
fn write_events_file(
    args: &ScenarioArgs,
    config: &ScenarioConfig,
    out: &Path,
    generator: ScenarioGenerator,
    pacing: Pacing,
) -> anyhow::Result<(RunSummary, String)> {
    let name = match (args.format, args.gzip) {
        (OutputFormat::Avro, _) => "events.avro",
        (OutputFormat::Jsonl, true) => "events.jsonl.gz",
        (OutputFormat::Jsonl, false) => "events.jsonl",
    };
    let path = out.join(name);
    let partial = out.join(format!("{name}.partial"));
    let file = BufWriter::new(
        File::create(&partial)
            .with_context(|| format!("failed to create {}", partial.display()))?,
    );
    let sink: Box<dyn Sink> = match (args.format, args.gzip) {
        (OutputFormat::Avro, _) => Box::new(AvroSink::new(file, config.avro_marker())?),
        (OutputFormat::Jsonl, true) => Box::new(JsonlSink::gzip(file)),
        (OutputFormat::Jsonl, false) => Box::new(JsonlSink::plain(file)),
    };
    let summary = output::run(generator, sink, pacing)
        .with_context(|| format!("failed to write {}", partial.display()))?;
    fs::rename(&partial, &path)
        .with_context(|| format!("failed to rename {} to {name}", partial.display()))?;
    Ok((summary, path.display().to_string()))
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut file = BufWriter::new(
        File::create(path).with_context(|| format!("failed to create {}", path.display()))?,
    );
    write(&mut file)
        .and_then(|()| file.flush())
        .with_context(|| format!("failed to write {}", path.display()))
}

fn report(summary: &RunSummary, target: &str, labels: &Path, seconds: f64) {
    let _ = writeln!(
        io::stderr(),
        "wrote {} events ({} from attackers, {} {}, {} bytes before compression) to \
         {target} in {seconds:.2} s, and the labels to {}",
        summary.events,
        summary.attacker_events,
        summary.labels.len(),
        if summary.labels.len() == 1 {
            "scenario"
        } else {
            "scenarios"
        },
        summary.bytes,
        labels.display(),
    );
}

/// A flag's parsed value and the text it was parsed from, which errors quote.
#[derive(Clone, Debug, PartialEq)]
struct Typed<T> {
    value: T,
    text: String,
}

/// Parses `--start`, a time from 1970.
fn parse_run_start(text: &str) -> Result<Typed<i64>, String> {
    let value = parse_start(text)?;
    if value < 0 {
        return Err("expected a time from 1970, such as 2025-06-02T08:00:00Z".to_string());
    }
    Ok(Typed {
        value,
        text: text.to_string(),
    })
}

/// Parses `--duration` into milliseconds, from 1 minute to 7 days.
fn parse_run_duration(text: &str) -> Result<Typed<i64>, String> {
    let value = parse_duration_ms(text)?;
    if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&value) {
        return Err("expected 1m to 7d, such as 4h".to_string());
    }
    Ok(Typed {
        value,
        text: text.to_string(),
    })
}

fn parse_mean_rate(text: &str) -> Result<f64, String> {
    parse_number(
        text,
        |rate| rate > 0.0 && rate <= MAX_MEAN_RATE,
        &format!("expected a rate above 0 and at most {MAX_MEAN_RATE}, such as 10"),
    )
}

fn parse_amplitude(text: &str) -> Result<f64, String> {
    parse_number(
        text,
        |amplitude| (0.0..1.0).contains(&amplitude),
        "expected at least 0 and below 1, such as 0.4",
    )
}

fn parse_peak_hour(text: &str) -> Result<f64, String> {
    parse_number(
        text,
        |hour| (0.0..=24.0).contains(&hour),
        "expected an hour from 0 to 24, such as 15",
    )
}

/// Parses a duration such as `90m`, `4h`, `2h30m`, `3600s` or `1d` into milliseconds.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let invalid = || "expected a number and unit such as 4h, 90m or 2h30m".to_string();
    let mut total_ms: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit_ms: i64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(invalid()),
        };
        let count: i64 = digits.parse().map_err(|_| invalid())?;
        total_ms = count
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(total_ms)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn duration_units_add_up() {
        assert_eq!(parse_duration_ms("90m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2h30m"), Ok(9_000_000));
        assert_eq!(parse_duration_ms("3600s"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
    }

    #[test]
    fn duration_without_unit_is_rejected() {
        for text in ["", "90", "h", "4x", "-1h"] {
            assert_eq!(
                parse_duration_ms(text),
                Err("expected a number and unit such as 4h, 90m or 2h30m".to_string()),
                "{text:?}"
            );
        }
    }

    /// Returns the first line of the error of `feedloop-gen scenario` with `args`, whether
    /// clap or the run reports it. The output folder is never created.
    fn scenario_error(args: &[&str]) -> String {
        let out = std::env::temp_dir().join("feedloop-gen-never-created");
        let mut argv = vec!["feedloop-gen", "scenario", "--out", out.to_str().unwrap()];
        argv.extend_from_slice(args);
        let error = match crate::Cli::try_parse_from(argv) {
            Ok(crate::Cli {
                command: Some(crate::Command::Scenario(args)),
                ..
            }) => run(args).unwrap_err().to_string(),
            Ok(_) => panic!("the arguments name the scenario subcommand"),
            Err(err) => err.to_string(),
        };
        assert!(!out.exists(), "{}", out.display());
        error.lines().next().unwrap().to_string()
    }

    #[test]
    fn errors_name_flags_and_typed_values() {
        let cases: [(&[&str], &str); 12] = [
            (
                &["--duration", "8d"],
                "error: invalid value '8d' for '--duration <DURATION>': expected 1m to 7d, such as 4h",
            ),
            (
                &["--duration", "0s"],
                "error: invalid value '0s' for '--duration <DURATION>': expected 1m to 7d, such as 4h",
            ),
            (
                &["--duration", "59s"],
                "error: invalid value '59s' for '--duration <DURATION>': expected 1m to 7d, such as 4h",
            ),
            (
                &["--duration", "4x"],
                "error: invalid value '4x' for '--duration <DURATION>': expected a number and unit such as 4h, 90m or 2h30m",
            ),
            (
                &["--mean-rate", "0"],
                "error: invalid value '0' for '--mean-rate <MEAN_RATE>': expected a rate above 0 and at most 100000, such as 10",
            ),
            (
                &["--mean-rate", "1e9"],
                "error: invalid value '1e9' for '--mean-rate <MEAN_RATE>': expected a rate above 0 and at most 100000, such as 10",
            ),
            (
                &["--diurnal-amplitude", "1"],
                "error: invalid value '1' for '--diurnal-amplitude <DIURNAL_AMPLITUDE>': expected at least 0 and below 1, such as 0.4",
            ),
            (
                &["--peak-hour", "NaN"],
                "error: invalid value 'NaN' for '--peak-hour <PEAK_HOUR>': expected an hour from 0 to 24, such as 15",
            ),
            (
                &["--clients", "0"],
                "error: invalid value '0' for '--clients <CLIENTS>': 0 is not in 1..=131071",
            ),
            (
                &["--start", "1969-12-31T00:00:00Z"],
                "error: invalid value '1969-12-31T00:00:00Z' for '--start <START>': expected a time from 1970, such as 2025-06-02T08:00:00Z",
            ),
            (
                &["--start", "9999-12-31T23:00:00+00:00"],
                "invalid --start 9999-12-31T23:00:00+00:00: a run of --duration 4h would end after the year 9999; start earlier or shorten the run",
            ),
            (
                &["--max-events", "10"],
                "invalid --max-events 10: the run may make up to about 211381 events; lower --mean-rate or --duration, or raise --max-events",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(scenario_error(args), expected, "{args:?}");
        }
    }

    #[test]
    fn duration_bounds_are_accepted() {
        assert_eq!(parse_run_duration("1m").unwrap().value, MIN_DURATION_MS);
        assert_eq!(parse_run_duration("7d").unwrap().value, MAX_DURATION_MS);
        assert_eq!(
            parse_run_duration("2h30m"),
            Ok(Typed {
                value: 9_000_000,
                text: "2h30m".to_string()
            })
        );
    }
}
