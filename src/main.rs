//! The `feedloop` command: runs detection rules over API traffic and delivers findings.

mod app;
mod config;
mod delivery;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use feedloop_connectors::delivery::render::clean;
use feedloop_connectors::sink::console::{counted, Console};
use feedloop_connectors::source::FormatConfig;
use feedloop_pipeline::RunOptions;
use feedloop_rules::{HumanDuration, RuleSet, Severity};

use crate::app::{OutputPlan, PartitionSpec};
use crate::config::{Config, SourceConfig};

#[derive(Parser)]
#[command(
    name = "feedloop",
    version,
    about = "Runtime API traffic in, security findings out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sources, rules and outputs of a configuration file.
    Run {
        /// The configuration file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Worker threads; overrides `workers` in the configuration.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Scan log files with the shipped rule packs (or --rules) and print the findings.
    Scan(ScanArgs),
    /// Decode log files and print each event as native JSON, one per line, for publishing to
    /// Kafka or checking a field mapping. Records that fail to decode are reported on stderr.
    Events {
        /// Log files or Avro container files, plain or gzip; `-` reads stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Input layout; `auto` detects Avro container files, JSON Lines or the combined log
        /// format per file.
        #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
        input_format: InputFormat,
    },
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Work with the delivery routing tree.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
    /// Fail a CI job while findings at or above a severity are open for a service. Exits 1 and
    /// lists them when there are any, 0 when there are none.
    Gate(GateArgs),
}

#[derive(Subcommand)]
enum RoutesCommand {
    /// Show which receivers a finding would reach, and which routes matched and why.
    Test {
        /// The configuration file with the `delivery` section.
        #[arg(long, short)]
        config: PathBuf,
        /// A file holding one finding as JSON (the first line of a JSON Lines file); `-` reads
        /// stdin.
        finding: PathBuf,
    },
}

/// The arguments of `feedloop gate`.
#[derive(clap::Args)]
struct GateArgs {
    /// The configuration file whose `delivery.state_dir` holds the state.
    #[arg(
        long,
        short,
        conflicts_with = "state_dir",
        required_unless_present = "state_dir"
    )]
    config: Option<PathBuf>,
    /// The delivery state folder, instead of a configuration file.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The service whose open findings fail the gate; omitted means every service.
    #[arg(long)]
    service: Option<String>,
    /// The least severity that fails the gate.
    #[arg(long, value_enum, default_value_t = SeverityArg::High)]
    min_severity: SeverityArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SeverityArg {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(severity: SeverityArg) -> Severity {
        match severity {
            SeverityArg::Info => Severity::Info,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

/// The arguments of `feedloop scan`.
#[derive(clap::Args)]
struct ScanArgs {
    /// Log files or Avro container files, plain or gzip; `-` reads stdin.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Rule files or folders to use instead of the shipped packs.
    #[arg(long)]
    rules: Vec<PathBuf>,
    /// Output: readable text, or one JSON finding per line on stdout (summary on stderr).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Input layout; `auto` detects Avro container files, JSON Lines or the combined log
    /// format per file.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    input_format: InputFormat,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// How far an event may trail the newest event of its file and still count.
    #[arg(long, default_value = "1m")]
    allowed_lateness: HumanDuration,
    /// Also report early findings (the condition is met while the window is still open).
    #[arg(long)]
    early: bool,
    /// Write records that fail to decode, and late events, to this JSON Lines file.
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// The maximum number of windows one rule keeps open per worker; hits beyond are dropped and
    /// counted.
    #[arg(long, default_value_t = 250_000)]
    max_windows_per_rule: usize,
    /// The KPI window size for each finding's impact, from 1s to 1d.
    #[arg(long, default_value = "1m", value_parser = parse_kpi_window)]
    kpi_window: HumanDuration,
    /// Leave out KPIs and impact.
    #[arg(long)]
    no_kpi: bool,
}

/// Parses `--kpi-window`, so that clap names the flag and the value as typed when it is out of
/// range.
fn parse_kpi_window(text: &str) -> Result<HumanDuration, String> {
    let window: HumanDuration = text
        .parse()
        .map_err(|err: feedloop_rules::duration::DurationError| err.to_string())?;
    config::check_kpi_window(window)?;
    Ok(window)
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files and folders; exits non-zero when any rule is invalid.
    Check {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Jsonl,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    Auto,
    Combined,
    Json,
    Avro,
}

impl From<InputFormat> for FormatConfig {
    fn from(format: InputFormat) -> FormatConfig {
        match format {
            InputFormat::Auto => FormatConfig::Auto,
            InputFormat::Combined => FormatConfig::Combined,
            InputFormat::Json => FormatConfig::Json,
            InputFormat::Avro => FormatConfig::Avro,
        }
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, workers } => run(config, workers),
        Command::Scan(args) => scan(args),
        Command::Events {
            files,
            input_format,
        } => print_events(&files, input_format.into()),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => check_rules(&paths),
        Command::Routes {
            command: RoutesCommand::Test { config, finding },
        } => test_routes(&config, &finding),
        Command::Gate(args) => gate(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns true when stdout was closed by its reader, as `feedloop events ... | head` does.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging() {
    // The HTTP client's own debug and trace events print request headers, tokens included,
    // so they stay at warn whatever FEEDLOOP_LOG asks for.
    let quiet = ["ureq=warn", "ureq_proto=warn", "rustls=warn"];
    let filter = quiet.iter().fold(
        tracing_subscriber::EnvFilter::try_from_env("FEEDLOOP_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        |filter, directive| filter.add_directive(directive.parse().expect("a valid directive")),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn scan(options: ScanArgs) -> anyhow::Result<ExitCode> {
    let rules = app::load_rules(&options.rules)?;
    let input_format: FormatConfig = options.input_format.into();
    let workers = options.workers;
    let specs: Vec<PartitionSpec> = options
        .files
        .iter()
        .map(|path| {
            let format = input_format.clone();
            if path.as_os_str() == "-" {
                PartitionSpec::Stdin { format }
            } else {
                PartitionSpec::File {
                    path: path.clone(),
                    format,
                }
            }
        })
        .collect();
    let jsonl = options.format == OutputFormat::Jsonl;
    let plan = OutputPlan {
        console: (!jsonl).then_some(Console {
            show_early: options.early,
        }),
        stdout_jsonl: jsonl,
        findings_file: None,
        dead_letter_file: options.dead_letter,
        webhooks: Vec::new(),
        final_only: !options.early,
        delivery: None,
    };
    let lateness = options.allowed_lateness.as_millis();
    app::check_run_settings(workers, lateness, &specs, &plan)?;
    let readers = app::open_partitions(&specs, &[], workers)?;
    let run_options = RunOptions {
        workers,
        allowed_lateness_ms: lateness,
        max_windows_per_rule: options.max_windows_per_rule,
        kpi: config::KpiConfig {
            enabled: !options.no_kpi,
            window: options.kpi_window,
            ..config::KpiConfig::default()
        }
        .options()?,
        ..RunOptions::default()
    };
    let (counts, report) = app::execute(&rules, run_options, readers, plan)?;
    let summary = Console::summary_text(&counts, &report);
    if jsonl {
        eprint!("{summary}");
    } else {
        // A closed stdout (`| head`) has seen what it wanted; the summary is not worth a panic.
        let _ = std::io::stdout().write_all(summary.as_bytes());
        let _ = std::io::stdout().flush();
    }
    Ok(exit_code(&report))
}

fn run(config_path: PathBuf, workers: Option<usize>) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config_path)?;
    let rules = app::load_rules(&config.rules)?;
    let workers = workers.unwrap_or(config.workers);

    let mut specs = Vec::new();
    let mut kafka_sources = Vec::new();
    for source in &config.sources {
        match source {
            SourceConfig::File { paths, format } => {
                specs.extend(paths.iter().map(|path| PartitionSpec::File {
                    path: path.clone(),
                    format: format.clone(),
                }))
            }
            SourceConfig::Stdin { format } => specs.push(PartitionSpec::Stdin {
                format: format.clone(),
            }),
            SourceConfig::Kafka(kafka) => kafka_sources.push(kafka.clone()),
        }
    }

    // A bad Avro schema file fails the run here, before any broker is contacted.
    for kafka in &kafka_sources {
        kafka.payload_decoder().map_err(anyhow::Error::msg)?;
    }

    let lateness = config.time.allowed_lateness.as_millis();
    let options = RunOptions {
        workers,
        allowed_lateness_ms: lateness,
        max_windows_per_rule: config.limits.max_windows_per_rule,
        max_future_ms: config.limits.max_future.as_millis(),
        resolve_after_ms: config.time.resolve_after.map(|d| d.as_millis()),
        kpi: config.kpi.options()?,
        ..RunOptions::default()
    };
    let delivery = match &config.delivery {
        Some(delivery) => Some(delivery::settings(delivery, options.stop.clone())?),
        None => None,
    };
    let console = &config.outputs.console;
    let plan = OutputPlan {
        console: console.enabled.then_some(Console {
            show_early: console.show_early,
        }),
        stdout_jsonl: false,
        findings_file: config.outputs.jsonl.as_ref().map(|j| j.path.clone()),
        dead_letter_file: config.dead_letter.as_ref().map(|d| d.path.clone()),
        webhooks: config.outputs.webhooks.clone(),
        final_only: false,
        delivery,
    };
    app::check_run_settings(workers, lateness, &specs, &plan)?;
    specs.extend(app::kafka_partitions(&kafka_sources)?);
    let readers = app::open_partitions(&specs, &kafka_sources, workers)?;
    let (counts, report) = app::execute(&rules, options, readers, plan)?;
    let mut summary = Console::summary_text(&counts, &report);
    if let Some(jsonl) = &config.outputs.jsonl {
        summary.push_str(&format!("  findings written to {}\n", jsonl.path.display()));
    }
    if let Some(dead) = &config.dead_letter {
        summary.push_str(&format!(
            "  dead letters written to {}\n",
            dead.path.display()
        ));
    }
    let _ = std::io::stdout().write_all(summary.as_bytes());
    Ok(exit_code(&report))
}

fn print_events(files: &[PathBuf], format: FormatConfig) -> anyhow::Result<ExitCode> {
    use feedloop_pipeline::{ReadBatch, ReadStatus};

    let readers = feedloop_connectors::source::file::open_all(files, &format)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = 0u64;
    for mut reader in readers {
        let mut batch = ReadBatch::default();
        loop {
            batch.events.clear();
            batch.dead_letters.clear();
            let status = reader.read(1024, &mut batch);
            for (event, _) in &batch.events {
                serde_json::to_writer(&mut out, &feedloop_connectors::encode::native_json(event))?;
                out.write_all(b"\n")?;
            }
            for letter in &batch.dead_letters {
                failed += 1;
                let line = format!("{} {}: {}", letter.source, letter.position, letter.error);
                eprintln!("{}", clean(&line));
            }
            if status == ReadStatus::Finished {
                break;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        eprintln!("{} failed to decode", counted(failed, "record", "records"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns failure when the run lost anything (an input cut short, a failed write, a finding
/// a webhook did not accept), so scripts and CI notice. The summary lists what was lost.
fn exit_code(report: &feedloop_connectors::sink::DeliveryReport) -> ExitCode {
    if report.lost_anything() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn test_routes(config: &std::path::Path, finding: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let text = delivery::explain_routes(&config, finding)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    let state_dir = match (&args.state_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => {
            let config = Config::load(config)?;
            let delivery = config.delivery.ok_or_else(|| {
                anyhow::anyhow!("the configuration has no `delivery` section, so no findings are kept for the gate; add one or pass --state-dir")
            })?;
            delivery.state_dir
        }
        (None, None) => unreachable!("clap requires --config or --state-dir"),
    };
    let (text, open) = delivery::gate_text(
        &state_dir,
        args.service.as_deref(),
        args.min_severity.into(),
    )?;
    print!("{text}");
    Ok(if open {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check_rules(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    match RuleSet::load(paths) {
        Ok(set) => {
            let files: std::collections::BTreeSet<_> =
                set.origins().iter().map(|o| &o.file).collect();
            println!(
                "ok: {} in {}",
                counted(set.len() as u64, "rule", "rules"),
                counted(files.len() as u64, "file", "files")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{}",
                counted(
                    errors.0.len() as u64,
                    "invalid rule file entry",
                    "invalid rule file entries"
                )
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
