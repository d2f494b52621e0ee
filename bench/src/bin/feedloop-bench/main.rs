//! `feedloop-bench`: the decode baseline, the throughput benchmark run and the finding latency
//! benchmark, which write their sections of the results page.

mod latency;

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use feedloop_bench::gen::GeneratorConfig;
use feedloop_bench::harness::{self, EventsFile, Manifest, Measurement};
use feedloop_bench::results;

/// How often a running command is checked for having exited or overrun its timeout.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Parser)]
#[command(
    name = "feedloop-bench",
    version,
    about = "Throughput and finding latency benchmarks for feedloop"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Read a JSON Lines file and decode every line, or an Avro container file and decode
    /// every record, then print events per second. Exits non-zero when any record fails to
    /// decode.
    Parse {
        /// The JSON Lines file in feedloop's native schema, or an Avro container file.
        file: PathBuf,
    },
    /// Generate the events file (unless cached), time the decode baseline and `feedloop scan`,
    /// and write the results page, keeping the sections of other benchmarks.
    Run(RunArgs),
    /// Start a tansu broker and `feedloop run` on 127.0.0.1, send background traffic and
    /// attack bursts, time each burst's findings, and write the "Finding latency" section of
    /// the results page. Exits non-zero when a burst goes undetected.
    Latency(latency::LatencyArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Number of generated events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of attack events, from 0 to 1.
    #[arg(long, default_value_t = GeneratorConfig::default().attack_share)]
    attack_share: f64,
    /// Runs of each command. The table reports the median.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The `feedloop` binary to time.
    #[arg(long, default_value = "target/release/feedloop")]
    feedloop: PathBuf,
    /// Folder for the generated events file.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// The results page to write.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
    /// Maximum wall time of one run in seconds. A run that takes longer is killed and the
    /// benchmark fails.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        BenchCommand::Parse { file } => parse(&file),
        BenchCommand::Run(args) => run(&args),
        BenchCommand::Latency(args) => latency::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(file: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let count =
        harness::decode_file(file).with_context(|| format!("failed to read {}", file.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "decoded {} of {} records ({} failed) in {seconds:.3} s: {} events/s",
        count.decoded,
        count.records,
        count.failed,
        harness::group_thousands(harness::events_per_second(count.records, seconds)),
    );
    Ok(if count.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One command to time, and what it printed on its first run.
struct Timed {
    measurement: Measurement,
    program: PathBuf,
    args: Vec<String>,
    first_stderr: String,
}

impl Timed {
    fn new(name: &str, program: PathBuf, args: Vec<String>) -> Timed {
        let command = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Timed {
            measurement: Measurement {
                name: name.to_string(),
                command,
                seconds: Vec::new(),
            },
            program,
            args,
            first_stderr: String::new(),
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.repeats == 0 {
        bail!("invalid --repeats 0: expected at least 1 run per command");
    }
    if !args.feedloop.is_file() {
        bail!(
            "feedloop binary not found at {}. Build it with `cargo build --release -p \
             feedloop`, or pass its path with --feedloop",
            args.feedloop.display()
        );
    }

    let config = GeneratorConfig {
        seed: args.seed,
        events: args.events,
        attack_share: args.attack_share,
        ..GeneratorConfig::default()
    };
    config.validate()?;
    let events = harness::prepare_events(&args.dir, &config).with_context(|| {
        format!(
            "failed to prepare the events file in {}",
            args.dir.display()
        )
    })?;
    if events.reused {
        eprintln!("reusing {}", events.path.display());
    } else {
        eprintln!(
            "generated {} in {:.1} s",
            events.path.display(),
            events.generation.as_secs_f64()
        );
    }
    let avro = harness::prepare_avro(&events, &config).with_context(|| {
        format!(
            "failed to write the Avro events file in {}",
            args.dir.display()
        )
    })?;
    let avro_bytes = fs::metadata(&avro)
        .with_context(|| format!("failed to read {}", avro.display()))?
        .len();

    let mut timed = commands(args, &events.path, &avro)?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    let load_before = load_average();
    // Rounds interleave the commands, so a slow phase of the machine hits all of them alike.
    for round in 0..args.repeats {
        for command in &mut timed {
            let (seconds, stderr) = time_command(&command.program, &command.args, timeout)?;
            eprintln!(
                "round {}: {} took {seconds:.2} s",
                round + 1,
                command.measurement.name
            );
            if round == 0 {
                command.first_stderr = stderr;
            }
            command.measurement.seconds.push(seconds);
        }
    }

    let measurements: Vec<Measurement> = timed.iter().map(|t| t.measurement.clone()).collect();
    let table = harness::render_table(config.events, &measurements);
    println!("\n{table}");

    let load = Load {
        before: load_before,
        after: load_average(),
    };
    let files = Files {
        events: &events,
        avro: &avro,
        avro_bytes,
    };
    let mut page = results_page(args, &files, &timed, &table, &load);
    // The latency benchmark's section and the hand-measured KPI cost outlive a new
    // throughput page.
    let old = fs::read_to_string(&args.results).unwrap_or_default();
    for heading in [results::LATENCY_HEADING, results::KPI_COST_HEADING] {
        if let Some(kept) = results::section(&old, heading) {
            page = results::replace_section(&page, kept);
        }
    }
    fs::write(&args.results, page)
        .with_context(|| format!("failed to write {}", args.results.display()))?;
    eprintln!("results written to {}", args.results.display());
    Ok(ExitCode::SUCCESS)
}

/// Builds the commands to time: the baseline first, because the table compares against it,
/// and the Avro rows after the JSON Lines rows.
fn commands(args: &RunArgs, file: &Path, avro: &Path) -> anyhow::Result<Vec<Timed>> {
    let this = std::env::current_exe().context("failed to find the feedloop-bench binary")?;
    // A path relative to the working folder reads better on the results page.
    let this = std::env::current_dir()
        .ok()
        .and_then(|folder| this.strip_prefix(folder).ok().map(Path::to_path_buf))
        .unwrap_or(this);
    let file = file.display().to_string();
    let avro = avro.display().to_string();
    let scan = |extra: &[&str], input: &str| {
        let mut scan_args = vec!["scan".to_string(), "--format".into(), "jsonl".into()];
        scan_args.extend(extra.iter().map(|a| a.to_string()));
        scan_args.push(input.to_string());
        scan_args
    };
    Ok(vec![
        Timed::new(
            "decode baseline",
            this.clone(),
            vec!["parse".into(), file.clone()],
        ),
        Timed::new("scan", args.feedloop.clone(), scan(&[], &file)),
        Timed::new(
            "scan --workers 2",
            args.feedloop.clone(),
            scan(&["--workers", "2"], &file),
        ),
        Timed::new(
            "decode baseline, Avro",
            this,
            vec!["parse".into(), avro.clone()],
        ),
        Timed::new("scan, Avro", args.feedloop.clone(), scan(&[], &avro)),
    ])
}

/// Runs a command with stdout discarded and returns its wall time in seconds and its stderr.
/// A failed exit or a run past `timeout` is an error.
fn time_command(
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> anyhow::Result<(f64, String)> {
    let command_line = format!("{} {}", program.display(), args.join(" "));
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {command_line}"))?;

    // Drain stderr on its own thread, so the child cannot block on a full stderr pipe.
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            bail!(
                "{command_line} ran longer than {} s and was killed",
                timeout.as_secs()
            );
        }
        thread::sleep(POLL_INTERVAL);
    };
    let seconds = started.elapsed().as_secs_f64();
    let stderr = stderr.join().expect("the stderr reader does not panic");
    if !status.success() {
        bail!("{command_line} failed with {status}: {}", stderr.trim());
    }
    Ok((seconds, stderr))
}

/// Reads a pipe to its end on a new thread and returns the text.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// The system load averages (1, 5 and 15 minutes) around the timed runs, as
/// `/proc/loadavg` shows them, or `None` where that file cannot be read.
struct Load {
    before: Option<String>,
    after: Option<String>,
}

/// The events file, and the same events as an Avro container file.
struct Files<'a> {
    events: &'a EventsFile,
    avro: &'a Path,
    avro_bytes: u64,
}

fn results_page(
    args: &RunArgs,
    files: &Files,
    timed: &[Timed],
    table: &str,
    load: &Load,
) -> String {
    let events = files.events;
    let mut page = String::new();
    let _ = writeln!(page, "# Benchmark results\n");
    let _ = writeln!(
        page,
        "Measured {} by `bench/run.sh`, which builds the release binaries and runs \
         `{}`.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        invocation(),
    );
    page.push_str(&setup(
        args.repeats,
        &events.manifest,
        files.avro_bytes,
        load,
    ));

    page.push_str(table);
    page.push_str(
        "\nCommands, with the events file as FILE and the Avro container file as FILE.avro:\n\n",
    );
    for t in timed {
        let command = t
            .measurement
            .command
            .replace(&files.avro.display().to_string(), "FILE.avro")
            .replace(&events.path.display().to_string(), "FILE");
        let _ = writeln!(page, "- {}: `{command}`", t.measurement.name);
    }

    page.push_str(&notes(events.manifest.events, args.repeats, timed));
    page
}

/// Describes the machine, the commit, the input and the method as a Markdown list.
fn setup(repeats: usize, manifest: &Manifest, avro_bytes: u64, load: &Load) -> String {
    let mut list = String::new();
    let _ = writeln!(list, "- machine: {}", machine());
    let unknown = || "unknown".to_string();
    let _ = writeln!(
        list,
        "- load average (1, 5, 15 min): {} before the timed runs, {} after them",
        load.before.clone().unwrap_or_else(unknown),
        load.after.clone().unwrap_or_else(unknown),
    );
    let _ = writeln!(list, "- commit: {}", commit());
    let _ = writeln!(
        list,
        "- input: {} events, {} of them attacks, {} bytes ({} bytes per event on average), \
         generator version {}, seed {}, attack share {}",
        harness::group_thousands(manifest.events),
        harness::group_thousands(manifest.attack_events),
        harness::group_thousands(manifest.bytes),
        manifest.bytes.checked_div(manifest.events).unwrap_or(0),
        manifest.generator_version,
        manifest.seed,
        manifest.attack_share,
    );
    let _ = writeln!(
        list,
        "- Avro input: the same events in an Avro container file of {} bytes ({} bytes per \
         event on average), with feedloop's schema `schema/api-event.avsc` and the null codec",
        harness::group_thousands(avro_bytes),
        avro_bytes.checked_div(manifest.events).unwrap_or(0),
    );
    let _ = writeln!(
        list,
        "- method: each command ran {repeats} times, interleaved round by round. A run's time \
         is the wall time of the whole process, with stdout discarded. The table gives the \
         median run, and events/s is events divided by the median.\n",
    );
    list
}

/// Explains the figures: what each measurement includes and what limits it.
fn notes(events: u64, repeats: usize, timed: &[Timed]) -> String {
    let seconds: Vec<f64> = timed
        .iter()
        .map(|t| t.measurement.median_seconds())
        .collect();
    let per_second =
        |i: usize| harness::group_thousands(harness::events_per_second(events, seconds[i]));
    let mut notes = String::from("\n## What the figures mean\n\n");
    let _ = writeln!(
        notes,
        "- The decode baseline reads the file line by line and decodes each line into an \
         `ApiEvent` with the default JSON mapping on one thread, at {} events/s. No scan of \
         this file can go faster on one thread, because a scan does the same work first.",
        per_second(0)
    );
    let _ = writeln!(
        notes,
        "- `scan` adds the dataflow, every shipped rule, the windows and the findings on top. \
         It took {:.1} times as long as the baseline, so by that ratio reading and decoding \
         make up about {:.0}% of its time.",
        seconds[1] / seconds[0],
        100.0 * seconds[0] / seconds[1]
    );
    let _ = writeln!(
        notes,
        "- `scan --workers 2` ran at {:.2} times the speed of `scan`. One file is one input \
         partition, and partitions are dealt to workers whole, so one worker reads and decodes \
         every line while both share the rule windows by group key. Splitting the input into \
         several files would let both workers decode.",
        seconds[1] / seconds[2]
    );
    let _ = writeln!(
        notes,
        "- The Avro rows read the same events from an Avro container file. Its decode baseline \
         reads the blocks with feedloop's container file reader and maps each record to an \
         `ApiEvent`, at {} events/s, {:.2} times the speed of the JSON baseline. `scan, Avro` \
         ran at {} events/s, {:.2} times the speed of `scan` on the JSON Lines file.",
        per_second(3),
        seconds[0] / seconds[3],
        per_second(4),
        seconds[1] / seconds[4],
    );
    let _ = writeln!(
        notes,
        "- Every figure includes process start, opening the file and, for `scan`, compiling the \
         rules and closing the last windows. The file had just been written or read, so it was \
         most likely in the page cache and disk speed barely enters. Other processes may share \
         the machine, as the load averages above show, and {repeats} runs give a rough median, \
         not a confidence interval."
    );
    if let Some(summary) = timed
        .get(1)
        .map(|t| t.first_stderr.trim())
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(
            notes,
            "\nSummary that the first `scan` run printed on stderr:\n\n```\n{summary}\n```"
        );
    }
    notes
}

/// Returns how this process was started, with the program's path shortened to its name.
fn invocation() -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(program) = words.first_mut() {
        if let Some(name) = Path::new(program.as_str()).file_name() {
            *program = name.to_string_lossy().into_owned();
        }
    }
    words.join(" ")
}

/// Returns the first three fields of `/proc/loadavg`, such as `0.52 0.61 0.70`.
fn load_average() -> Option<String> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// Describes the CPU from `lscpu` and the cores from `nproc`.
fn machine() -> String {
    let model = command_output("lscpu", &[])
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Model name:"))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = command_output("nproc", &[]).unwrap_or_else(|| "unknown".to_string());
    format!("{model}, {} cores (`nproc`)", cores.trim())
}

/// Returns the short commit id, and whether the work tree differs from it.
fn commit() -> String {
    let Some(head) = command_output("git", &["rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git work tree)".to_string();
    };
    // `--no-optional-locks` keeps `status` from refreshing the index, so it does not write it.
    let changed = command_output("git", &["--no-optional-locks", "status", "--porcelain"])
        .map(|text| text.lines().count())
        .unwrap_or(0);
    if changed == 0 {
        head.trim().to_string()
    } else {
        format!(
            "{} with {changed} uncommitted changes in the work tree",
            head.trim()
        )
    }
}

/// Runs a command and returns its stdout, or `None` when it cannot run or fails.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
