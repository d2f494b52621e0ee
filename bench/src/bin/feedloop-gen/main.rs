//! `feedloop-gen`: writes synthetic API events as JSON Lines in feedloop's native schema, and
//! with `scenario`, labelled attack scenarios as JSON Lines, Avro or Kafka messages.

mod scenario;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::DateTime;
use clap::{Parser, Subcommand};

use feedloop_bench::gen::{write_jsonl, Generator, GeneratorConfig, WriteSummary, MAX_CLIENTS};
use feedloop_connectors::delivery::render::clean;

/// Writes seeded, reproducible API events with a share of attack traffic, one JSON object per
/// line. The same options always produce the same bytes.
#[derive(Parser)]
#[command(name = "feedloop-gen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    mixed: Args,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a run of labelled attack scenarios and its labels.
    Scenario(scenario::ScenarioArgs),
}

/// Options of the mixed traffic that `feedloop-gen` writes without a subcommand.
#[derive(clap::Args)]
struct Args {
    /// Seed of every random choice.
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    seed: u64,
    /// Number of events to write.
    #[arg(long, default_value_t = GeneratorConfig::default().events)]
    events: u64,
    /// Share of events that belong to attack campaigns, from 0 to 1.
    #[arg(long, default_value_t = GeneratorConfig::default().attack_share, value_parser = parse_share)]
    attack_share: f64,
    /// Mean arrival rate, in events per second of event time, above 0.
    #[arg(long, default_value_t = GeneratorConfig::default().rate_per_second, value_parser = parse_rate)]
    rate: f64,
    /// Time of the first event, RFC 3339 [default: 2025-06-02T08:00:00Z].
    #[arg(long, value_parser = parse_start)]
    start: Option<i64>,
    /// Number of distinct normal clients (addresses), from 1 to 131071.
    #[arg(
        long,
        default_value_t = GeneratorConfig::default().clients,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS))
    )]
    clients: u32,
    /// Number of distinct principals (users and service accounts), at least 1.
    #[arg(
        long,
        default_value_t = GeneratorConfig::default().principals,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    principals: u32,
    /// File to write, or stdout when absent or `-`.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Scenario(args)) => scenario::run(args),
        None => generate(cli.mixed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_message(&err));
            ExitCode::FAILURE
        }
    }
}

/// Returns an error's message with its causes, escaped by [`clean`] because it can quote a
/// plan file, such as serde's unknown field names.
fn error_message(err: &anyhow::Error) -> String {
    clean(&format!("{err:#}"))
}

fn generate(args: Args) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        seed: args.seed,
        events: args.events,
        attack_share: args.attack_share,
        rate_per_second: args.rate,
        start_ms: args.start.unwrap_or(GeneratorConfig::default().start_ms),
        clients: args.clients,
        principals: args.principals,
    };
    let generator = Generator::new(config)?;
    let started = Instant::now();

    let (summary, target) = match args.output.filter(|path| path.as_os_str() != "-") {
        Some(path) => {
            let file = File::create(&path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            let summary = write_jsonl(generator, BufWriter::new(file))
                .with_context(|| format!("failed to write {}", path.display()))?;
            (summary, path.display().to_string())
        }
        None => {
            let stdout = BufWriter::new(io::stdout().lock());
            match write_jsonl(generator, stdout) {
                Ok(summary) => (summary, "stdout".to_string()),
                // A reader such as `head` closed the pipe, which ends the output normally.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                Err(err) => return Err(err).context("failed to write to stdout"),
            }
        }
    };
    report(&summary, &target, started.elapsed().as_secs_f64());
    Ok(())
}

fn report(summary: &WriteSummary, target: &str, seconds: f64) {
    let mean_bytes = summary.bytes.checked_div(summary.events).unwrap_or(0);
    let _ = writeln!(
        io::stderr(),
        "wrote {} events ({} attack, mean {mean_bytes} bytes) to {target} in {seconds:.2} s",
        summary.events,
        summary.attack_events,
    );
}

fn parse_share(text: &str) -> Result<f64, String> {
    parse_number(
        text,
        |share| (0.0..=1.0).contains(&share),
        "expected a share from 0 to 1, such as 0.01",
    )
}

fn parse_rate(text: &str) -> Result<f64, String> {
    parse_number(
        text,
        |rate| rate > 0.0,
        "expected a positive number of events per second, such as 1000",
    )
}

/// Parses a finite number for a flag and checks it with `valid`. The error is `expected`,
/// which clap prints after the flag and the value as typed.
pub(crate) fn parse_number(
    text: &str,
    valid: impl Fn(f64) -> bool,
    expected: &str,
) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && valid(value) => Ok(value),
        _ => Err(expected.to_string()),
    }
}

/// Parses an RFC 3339 time into milliseconds since the Unix epoch.
pub(crate) fn parse_start(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|err| format!("invalid start time {text:?}: {err}; expected RFC 3339 such as 2025-06-02T08:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_errors_name_flags() {
        let cases = [
            (
                ["--rate", "0"],
                "error: invalid value '0' for '--rate <RATE>': expected a positive number of events per second, such as 1000",
            ),
            (
                ["--attack-share", "2"],
                "error: invalid value '2' for '--attack-share <ATTACK_SHARE>': expected a share from 0 to 1, such as 0.01",
            ),
            (
                ["--clients", "131072"],
                "error: invalid value '131072' for '--clients <CLIENTS>': 131072 is not in 1..=131071",
            ),
            (
                ["--principals", "0"],
                "error: invalid value '0' for '--principals <PRINCIPALS>': 0 is not in 1..=4294967295",
            ),
        ];
        for (args, expected) in cases {
            let argv = ["feedloop-gen", args[0], args[1]];
            let Err(err) = Cli::try_parse_from(argv) else {
                panic!("{args:?} parsed without an error");
            };
            assert_eq!(err.to_string().lines().next(), Some(expected), "{args:?}");
        }
    }

    #[test]
    fn error_message_escapes_plan_text() {
        let dir = std::env::temp_dir().join(format!("feedloop-gen-error-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plan = dir.join("plan.json");
        std::fs::write(&plan, "{\"scenarios\": [], \"x\u{202e}y\": 1}").unwrap();
        let cli = Cli::try_parse_from([
            "feedloop-gen".as_ref(),
            "scenario".as_ref(),
            "--plan".as_ref(),
            plan.as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
        ])
        .unwrap();
        let Some(Command::Scenario(args)) = cli.command else {
            panic!("the arguments name the scenario subcommand");
        };

        let err = scenario::run(args).unwrap_err();
        assert_eq!(
            error_message(&err),
            format!(
                "invalid plan {}: unknown field `x\\u{{202e}}y`, expected `scenarios` at line 1 column 25",
                plan.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
