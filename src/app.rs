//! Wiring: sources to readers, the dataflow run, and the sinks.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};

use feedloop_connectors::delivery::engine::{Engine, EngineSettings};
use feedloop_connectors::sink::console::Console;
use feedloop_connectors::sink::webhook::{WebhookConfig, WebhookSink};
use feedloop_connectors::sink::{deliver, DeliveryReport, JsonlFile, Sinks};
use feedloop_connectors::source::file;
use feedloop_connectors::source::kafka::{self, KafkaConfig};
use feedloop_connectors::source::{owned_by, FormatConfig};
use feedloop_pipeline::{PartitionReader, ReaderFactory, RunCounts, RunOptions};
use feedloop_rules::RuleSet;

/// One input partition before it is opened.
#[derive(Debug, Clone)]
pub enum PartitionSpec {
    File { path: PathBuf, format: FormatConfig },
    Stdin { format: FormatConfig },
    Kafka { source: usize, partition: i32 },
}

/// The destinations of a run's outputs.
pub struct OutputPlan {
    pub console: Option<Console>,
    pub stdout_jsonl: bool,
    pub findings_file: Option<PathBuf>,
    pub dead_letter_file: Option<PathBuf>,
    pub webhooks: Vec<WebhookConfig>,
    /// Drop early findings before they reach any sink.
    pub final_only: bool,
    /// The delivery engine's settings, when the configuration has a `delivery` section.
    pub delivery: Option<EngineSettings>,
}

/// The maximum worker count of a run, because each worker is a thread with its own buffers.
pub const MAX_WORKERS: usize = 64;

/// The longest allowed lateness; windows stay open this much longer than their size.
pub const MAX_LATENESS_MS: u64 = 7 * 86_400_000;

/// Checks settings that apply to every run before anything is opened or created.
pub fn check_run_settings(
    workers: usize,
    lateness_ms: u64,
    specs: &[PartitionSpec],
    plan: &OutputPlan,
) -> anyhow::Result<()> {
    if workers == 0 || workers > MAX_WORKERS {
        bail!("invalid worker count {workers}: use 1 to {MAX_WORKERS}");
    }
    if lateness_ms > MAX_LATENESS_MS {
        bail!(
            "invalid allowed lateness {}: the maximum is 7d",
            feedloop_rules::HumanDuration(lateness_ms)
        );
    }
    let stdin_count = specs
        .iter()
        .filter(|s| matches!(s, PartitionSpec::Stdin { .. }))
        .count();
    if stdin_count > 1 {
        bail!("standard input (`-`) is given {stdin_count} times; give it once");
    }
    let outputs = [&plan.findings_file, &plan.dead_letter_file];
    for spec in specs {
        let PartitionSpec::File { path, .. } = spec else {
            continue;
        };
        for output in outputs.iter().copied().flatten() {
            if same_file(path, output) {
                bail!(
                    "output file {} is also an input; writing it would destroy the input, so choose another output path",
                    output.display()
                );
            }
        }
    }
    if let (Some(a), Some(b)) = (&plan.findings_file, &plan.dead_letter_file) {
        if same_file(a, b) {
            bail!(
                "the findings file and the dead-letter file are both {}; give them different paths",
                a.display()
            );
        }
    }
    for hook in &plan.webhooks {
        feedloop_connectors::sink::webhook::check(hook).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Returns true when two paths name the same file, existing or not.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolve = |p: &std::path::Path| -> Option<PathBuf> {
        if let Ok(path) = p.canonicalize() {
            return Some(path);
        }
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    match (resolve(a), resolve(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// Loads rules from paths, or the shipped packs when none are given.
pub fn load_rules(paths: &[PathBuf]) -> anyhow::Result<RuleSet> {
    let set = if paths.is_empty() {
        feedloop_rules::packs::shipped().context("the shipped rule packs are invalid")?
    } else {
        RuleSet::load(paths).map_err(|errors| anyhow::anyhow!("{errors}"))?
    };
    if set.is_empty() {
        bail!("no rules loaded; pass --rules with a folder of rule files");
    }
    Ok(set)
}

/// Expands Kafka sources into their partitions.
pub fn kafka_partitions(sources: &[KafkaConfig]) -> anyhow::Result<Vec<PartitionSpec>> {
    let mut specs = Vec::new();
    for (i, config) in sources.iter().enumerate() {
        for partition in kafka::partitions(config)? {
            specs.push(PartitionSpec::Kafka {
                source: i,
                partition,
            });
        }
    }
    Ok(specs)
}

/// Opens every partition, dealt to workers round-robin, and returns the factory that hands
/// each worker its readers.
pub fn open_partitions(
    specs: &[PartitionSpec],
    kafka_sources: &[KafkaConfig],
    workers: usize,
) -> anyhow::Result<ReaderFactory> {
    let mut slots: Vec<Vec<Box<dyn PartitionReader>>> = (0..workers).map(|_| Vec::new()).collect();
    for (worker, slot) in slots.iter_mut().enumerate() {
        let mut kafka_mine: Vec<Vec<i32>> = vec![Vec::new(); kafka_sources.len()];
        for (index, spec) in specs.iter().enumerate() {
            if !owned_by(index, worker, workers) {
                continue;
            }
            match spec {
                PartitionSpec::File { path, format } => {
                    let reader = file::open(path, format.clone())
                        .with_context(|| format!("failed to open input {}", path.display()))?;
                    slot.push(reader);
                }
                PartitionSpec::Stdin { format } => {
                    let reader =
                        file::stdin(format.clone()).context("failed to read standard input")?;
                    slot.push(reader);
                }
                PartitionSpec::Kafka { source, partition } => kafka_mine[*source].push(*partition),
            }
        }
        for (source, partitions) in kafka_mine.iter().enumerate() {
            for reader in kafka::open(&kafka_sources[source], partitions)? {
                slot.push(Box::new(reader));
            }
        }
    }
    let slots = Mutex::new(slots.into_iter().map(Some).collect::<Vec<_>>());
    Ok(Arc::new(move |worker, _peers| {
        let mut slots = slots
            .lock()
            .expect("no worker panics while holding the slots");
        slots[worker].take().unwrap_or_default()
    }))
}

/// Runs the rules over the readers and delivers what comes out. Returns the counts and what
/// the sinks did.
pub fn execute(
    rules: &RuleSet,
    mut options: RunOptions,
    readers: ReaderFactory,
    plan: OutputPlan,
) -> anyhow::Result<(RunCounts, DeliveryReport)> {
    let mut sinks = Sinks {
        console: plan.console,
        stdout_jsonl: plan.stdout_jsonl,
        ..Default::default()
    };
    // Webhooks first: their secrets can still fail to resolve, and files are truncated on
    // create.
    for hook in &plan.webhooks {
        sinks
            .webhooks
            .push(WebhookSink::start(hook).map_err(anyhow::Error::msg)?);
    }
    if let Some(settings) = plan.delivery {
        let engine = Engine::start(settings).map_err(anyhow::Error::msg)?;
        options.open_findings = engine.open_findings();
        sinks.delivery = Some(engine);
    }
    if let Some(path) = &plan.findings_file {
        sinks.findings_file = Some(JsonlFile::create(path)?);
    }
    if let Some(path) = &plan.dead_letter_file {
        sinks.dead_letter_file = Some(JsonlFile::create(path)?);
    }

    let stop = options.stop.clone();
    // A second Ctrl-C after the first one leaves at once.
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping: closing open windows; press Ctrl-C again to quit at once");
    });

    let (sender, receiver) = mpsc::channel();
    let final_only = plan.final_only;
    let (filtered_sender, filtered_receiver) = mpsc::channel();
    let filter = std::thread::spawn(move || {
        for output in receiver {
            if final_only {
                if let feedloop_pipeline::Output::Finding(f) = &output {
                    if f.phase == feedloop_pipeline::Phase::Early {
                        continue;
                    }
                }
            }
            if filtered_sender.send(output).is_err() {
                break;
            }
        }
    });
    let delivery = std::thread::spawn(move || deliver(filtered_receiver, sinks));

    let counts = feedloop_pipeline::run(rules, options, readers, sender)?;
    filter.join().expect("the filter thread does not panic");
    let report = delivery.join().expect("the delivery thread does not panic");
    Ok((counts, report))
}
