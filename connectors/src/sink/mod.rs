//! Sinks: where findings and dead letters go.
//!
//! [`deliver`] drains the dataflow's output channel on its own thread and hands each finding
//! to every configured sink: the console, a JSON Lines file and webhooks. Dead letters go to
//! their own JSON Lines file when one is configured; the first few are also kept for the run
//! summary, so a user who configured no file still sees what failed and why. Files are flushed
//! whenever the channel runs empty, so a finding reaches its file within one dataflow step
//! while a busy run still writes in large blocks.

pub mod console;
pub mod webhook;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::Serialize;

use feedloop_pipeline::{DeadLetter, Finding, Output, Phase};

use crate::delivery::engine::{Engine, EngineReport};

use self::console::Console;
use self::webhook::{WebhookReport, WebhookSink};

/// How many dead letters the run summary shows.
pub const DEAD_LETTER_SAMPLES: usize = 5;

/// A JSON Lines file writer.
pub struct JsonlFile {
    path: String,
    writer: BufWriter<File>,
}

impl JsonlFile {
    /// Creates (or truncates) the file, creating its directory if needed.
    pub fn create(path: &Path) -> io::Result<JsonlFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::create(path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("failed to create {}: {err}", path.display()),
            )
        })?;
        Ok(JsonlFile {
            path: path.display().to_string(),
            writer: BufWriter::new(file),
        })
    }

    /// Writes one value as a line.
    pub fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.writer, value)?;
        self.writer.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Every sink of a run.
#[derive(Default)]
pub struct Sinks {
    /// Readable findings and summary on stdout.
    pub console: Option<Console>,
    /// Findings as JSON Lines on stdout, and nothing else there.
    pub stdout_jsonl: bool,
    /// Findings as JSON Lines in a file.
    pub findings_file: Option<JsonlFile>,
    /// Dead letters as JSON Lines in a file.
    pub dead_letter_file: Option<JsonlFile>,
    /// Webhook receivers.
    pub webhooks: Vec<WebhookSink>,
    /// The delivery engine: routing, outbox and receivers of lifecycle changes.
    pub delivery: Option<Engine>,
}

/// The counts and errors of the sinks during a run.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// Rule id to (early, final) finding counts.
    pub findings_by_rule: BTreeMap<String, (u64, u64)>,
    /// The first dead letters, for the summary.
    pub dead_letter_samples: Vec<DeadLetter>,
    /// Dead letters seen, decode failures and late events together.
    pub dead_letters: u64,
    /// Per webhook delivery counts.
    pub webhooks: Vec<WebhookReport>,
    /// Write errors of file and stdout sinks, each reported once.
    pub write_errors: Vec<String>,
    /// Inputs that ended early on a read error.
    pub input_errors: Vec<String>,
    /// Lifecycle changes by kind.
    pub changes: BTreeMap<String, u64>,
    /// What the delivery engine did, when one ran.
    pub delivery: Option<EngineReport>,
}

impl DeliveryReport {
    /// Returns true when anything was lost: an input cut short, a write that failed, or a
    /// finding a webhook did not accept.
    pub fn lost_anything(&self) -> bool {
        !self.input_errors.is_empty()
            || !self.write_errors.is_empty()
            || self.webhooks.iter().any(|w| w.failed > 0 || w.dropped > 0)
            || self
                .delivery
                .as_ref()
                .is_some_and(EngineReport::lost_anything)
    }

    /// Returns the total early and final findings.
    pub fn totals(&self) -> (u64, u64) {
        self.findings_by_rule
            .values()
            .fold((0, 0), |(e, f), (de, df)| (e + de, f + df))
    }
}

/// Drains the output channel into the sinks until every sender is gone.
pub fn deliver(receiver: Receiver<Output>, mut sinks: Sinks) -> DeliveryReport {
    let mut report = DeliveryReport::default();
    let stdout = io::stdout();
    let mut stdout = BufWriter::new(stdout.lock());
    loop {
        let first = match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(output) => output,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(engine) = &mut sinks.delivery {
                    engine.tick();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Take everything already queued, then flush once for the whole burst.
        let queued = std::iter::once(first).chain(std::iter::from_fn(|| receiver.try_recv().ok()));
        for output in queued {
            match output {
                Output::Finding(finding) => {
                    deliver_finding(&finding, &mut sinks, &mut stdout, &mut report)
                }
                Output::Change(change) => {
                    *report
                        .changes
                        .entry(change.kind.as_str().to_string())
                        .or_default() += 1;
                    if let Some(engine) = &mut sinks.delivery {
                        engine.submit(&change);
                    }
                }
                Output::DeadLetter(letter) => deliver_dead_letter(*letter, &mut sinks, &mut report),
                Output::InputError(message) => {
                    tracing::error!(error = %message, "failed to read input; the rest of it is skipped");
                    report.input_errors.push(message);
                }
            }
        }
        flush_all(&mut sinks, &mut stdout, &mut report);
        if let Some(engine) = &mut sinks.delivery {
            engine.tick();
        }
    }
    flush_all(&mut sinks, &mut stdout, &mut report);
    if let Some(engine) = sinks.delivery.take() {
        report.delivery = Some(engine.finish());
    }
    for webhook in sinks.webhooks.drain(..) {
        report.webhooks.push(webhook.finish());
    }
    report
}

fn deliver_finding(
    finding: &Finding,
    sinks: &mut Sinks,
    stdout: &mut impl Write,
    report: &mut DeliveryReport,
) {
    let counts = report
        .findings_by_rule
        .entry(finding.rule_id.clone())
        .or_default();
    match finding.phase {
        Phase::Early => counts.0 += 1,
        Phase::Final => counts.1 += 1,
    }
    let json = serde_json::to_vec(finding).expect("a finding always serializes");
    if let Some(console) = &sinks.console {
        let text = console.finding_text(finding);
        record(stdout.write_all(text.as_bytes()), "stdout", report);
    }
    if sinks.stdout_jsonl {
        record(
            stdout
                .write_all(&json)
                .and_then(|()| stdout.write_all(b"\n")),
            "stdout",
            report,
        );
    }
    if let Some(file) = &mut sinks.findings_file {
        let path = file.path.clone();
        record(file.write(finding), &path, report);
    }
    for webhook in &mut sinks.webhooks {
        webhook.send(json.clone());
    }
}

fn deliver_dead_letter(letter: DeadLetter, sinks: &mut Sinks, report: &mut DeliveryReport) {
    report.dead_letters += 1;
    if let Some(file) = &mut sinks.dead_letter_file {
        let path = file.path.clone();
        record(file.write(&letter), &path, report);
    }
    if report.dead_letter_samples.len() < DEAD_LETTER_SAMPLES {
        report.dead_letter_samples.push(letter);
    }
}

fn flush_all(sinks: &mut Sinks, stdout: &mut impl Write, report: &mut DeliveryReport) {
    record(stdout.flush(), "stdout", report);
    if let Some(file) = &mut sinks.findings_file {
        let path = file.path.clone();
        record(file.flush(), &path, report);
    }
    if let Some(file) = &mut sinks.dead_letter_file {
        let path = file.path.clone();
        record(file.flush(), &path, report);
    }
}

/// Keeps the first write error of each destination; later ones repeat it. A closed stdout
/// (`feedloop scan ... | head`) is not an error: its reader wanted no more.
fn record(result: io::Result<()>, destination: &str, report: &mut DeliveryReport) {
    if let Err(err) = result {
        if destination == "stdout" && err.kind() == io::ErrorKind::BrokenPipe {
            return;
        }
        let message = format!("failed to write to {destination}: {err}");
        if !report.write_errors.contains(&message) {
            tracing::error!(destination, error = %err, "failed to write output");
            report.write_errors.push(message);
        }
    }
}
