//! Wiring: sources to readers, the dataflow run, and the sinks.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};

use feedloop_connectors::sink::console::Console;
use feedloop_connectors::sink::webhook::{WebhookConfig, WebhookSink};
use feedloop_connectors::sink::{deliver, DeliveryReport, JsonlFile, Sinks};
use feedloop_connectors::source::file::LineReader;
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
                    let reader = LineReader::open(path, format.clone())
                        .with_context(|| format!("failed to open input {}", path.display()))?;
                    slot.push(Box::new(reader));
                }
                PartitionSpec::Stdin { format } => {
                    slot.push(Box::new(LineReader::stdin(format.clone())));
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
    options: RunOptions,
    readers: ReaderFactory,
    plan: OutputPlan,
) -> anyhow::Result<(RunCounts, DeliveryReport)> {
    let mut sinks = Sinks {
        console: plan.console,
        stdout_jsonl: plan.stdout_jsonl,
        ..Default::default()
    };
    if let Some(path) = &plan.findings_file {
        sinks.findings_file = Some(JsonlFile::create(path)?);
    }
    if let Some(path) = &plan.dead_letter_file {
        sinks.dead_letter_file = Some(JsonlFile::create(path)?);
    }
    for hook in &plan.webhooks {
        sinks
            .webhooks
            .push(WebhookSink::start(hook).map_err(anyhow::Error::msg)?);
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
