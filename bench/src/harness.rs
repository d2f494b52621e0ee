//! The throughput benchmark: one generated file, a decode-only baseline and `feedloop scan`.
//!
//! The baseline reads the file line by line and decodes every line with the JSON
//! [`Decoder`], which is the least work any scan of the file must do. Comparing `scan` against
//! it shows what the dataflow, the rules and delivery cost on top of decoding. Both are timed
//! as separate processes by wall clock, so both include process start, reading the file and,
//! for `scan`, compiling the rules. The same events are also written as an Avro container
//! file, and its baseline decodes it with feedloop's container file reader.
//!
//! The events file is cached under a name that carries the generator version and every
//! configuration value, next to a manifest written only after the file is complete. A file
//! whose manifest or length does not match is generated again, so an interrupted run never
//! leaves a truncated file that a later run would time.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use feedloop_connectors::decode::{Decoder, Format, JsonMapping};
use feedloop_connectors::source::avro::MAGIC as AVRO_MAGIC;
use feedloop_connectors::source::{file, FormatConfig};
use feedloop_pipeline::{ReadBatch, ReadStatus};

use crate::gen::{self, Generator, GeneratorConfig, GENERATOR_VERSION};
use crate::scenario::avro::AvroFileWriter;

/// Read buffer size of the baseline, the same as feedloop's file source.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Description of a cached events file, stored beside it as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`GENERATOR_VERSION`] that wrote the file.
    pub generator_version: u32,
    /// [`GeneratorConfig::seed`].
    pub seed: u64,
    /// [`GeneratorConfig::events`].
    pub events: u64,
    /// [`GeneratorConfig::attack_share`].
    pub attack_share: f64,
    /// [`GeneratorConfig::rate_per_second`].
    pub rate_per_second: f64,
    /// [`GeneratorConfig::start_ms`].
    pub start_ms: i64,
    /// [`GeneratorConfig::clients`].
    pub clients: u32,
    /// [`GeneratorConfig::principals`].
    pub principals: u32,
    /// Attack events in the file.
    pub attack_events: u64,
    /// Length of the file in bytes.
    pub bytes: u64,
}

impl Manifest {
    /// Returns true when the manifest describes the output of `config`.
    fn matches(&self, config: &GeneratorConfig) -> bool {
        self.generator_version == GENERATOR_VERSION
            && self.seed == config.seed
            && self.events == config.events
            && self.attack_share == config.attack_share
            && self.rate_per_second == config.rate_per_second
            && self.start_ms == config.start_ms
            && self.clients == config.clients
            && self.principals == config.principals
    }
}

/// An events file ready to be read.
#[derive(Clone, Debug)]
pub struct EventsFile {
    /// Path of the file.
    pub path: PathBuf,
    /// Description of its contents.
    pub manifest: Manifest,
    /// Whether an earlier run had already written it.
    pub reused: bool,
    /// Time spent generating it, or zero when it was reused.
    pub generation: Duration,
}

/// Returns the file name of the events file of `config`.
pub fn events_file_name(config: &GeneratorConfig) -> String {
    format!(
        "events-v{GENERATOR_VERSION}-seed{}-n{}-attack{}-rate{}-start{}-c{}-p{}.jsonl",
        config.seed,
        config.events,
        config.attack_share,
        config.rate_per_second,
        config.start_ms,
        config.clients,
        config.principals
    )
}

/// Returns the events file of `config` in `dir`, generating it unless a complete one exists.
pub fn prepare_events(dir: &Path, config: &GeneratorConfig) -> io::Result<EventsFile> {
    let path = dir.join(events_file_name(config));
    let manifest_path = path.with_extension("manifest.json");
    if let Some(manifest) = read_manifest(&manifest_path, &path, config) {
        return Ok(EventsFile {
            path,
            manifest,
            reused: true,
            generation: Duration::ZERO,
        });
    }

    fs::create_dir_all(dir)?;
    let started = Instant::now();
    let generator = Generator::new(config.clone())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let partial = path.with_extension("jsonl.partial");
    let summary = gen::write_jsonl(generator, BufWriter::new(File::create(&partial)?))?;
    fs::rename(&partial, &path)?;
    let generation = started.elapsed();

    let manifest = Manifest {
        generator_version: GENERATOR_VERSION,
        seed: config.seed,
        events: config.events,
        attack_share: config.attack_share,
        rate_per_second: config.rate_per_second,
        start_ms: config.start_ms,
        clients: config.clients,
        principals: config.principals,
        attack_events: summary.attack_events,
        bytes: summary.bytes,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
    fs::write(&manifest_path, text)?;
    Ok(EventsFile {
        path,
        manifest,
        reused: false,
        generation,
    })
}

/// Returns the events of `events` as an Avro container file beside it, writing it unless an
/// earlier run wrote it for the same, reused, events file.
///
/// The file is written under a `.partial` name and renamed once complete, so an existing file
/// is a complete one.
pub fn prepare_avro(events: &EventsFile, config: &GeneratorConfig) -> io::Result<PathBuf> {
    let path = events.path.with_extension("avro");
    if events.reused && path.is_file() {
        return Ok(path);
    }
    let generator = Generator::new(config.clone())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    let partial = path.with_extension("avro.partial");
    let output = BufWriter::new(File::create(&partial)?);
    // The sync marker only has to be fixed for the same bytes on every run.
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&config.seed.to_le_bytes());
    marker[8..].copy_from_slice(b"feedloop");
    let mut writer = AvroFileWriter::new(output, marker).map_err(io::Error::other)?;
    for generated in generator {
        writer.append(&generated.event).map_err(io::Error::other)?;
    }
    let mut output = writer.finish().map_err(io::Error::other)?;
    io::Write::flush(&mut output)?;
    drop(output);
    fs::rename(&partial, &path)?;
    Ok(path)
}

/// Reads the manifest of a cached file. Returns `None` when either file is missing or they
/// do not match.
fn read_manifest(manifest_path: &Path, path: &Path, config: &GeneratorConfig) -> Option<Manifest> {
    let text = fs::read_to_string(manifest_path).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    let length = fs::metadata(path).ok()?.len();
    (manifest.matches(config) && manifest.bytes == length).then_some(manifest)
}

/// Counts of the lines that the decode baseline read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCount {
    /// Non-blank lines read.
    pub records: u64,
    /// Lines that decoded into an event.
    pub decoded: u64,
    /// Lines the decoder rejected.
    pub failed: u64,
}

/// Decodes every record of a file: an Avro container file, recognised by its magic bytes,
/// with feedloop's container file reader, and else every non-blank line as JSON with the
/// default mapping.
pub fn decode_file(path: &Path) -> io::Result<DecodeCount> {
    let mut magic = [0u8; 4];
    let is_avro =
        io::Read::read_exact(&mut File::open(path)?, &mut magic).is_ok() && &magic == AVRO_MAGIC;
    if is_avro {
        return decode_avro_file(path);
    }
    let decoder = Decoder::new(Format::Json(JsonMapping::default()));
    let mut input = BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path)?);
    let mut line = Vec::with_capacity(1_024);
    let mut count = DecodeCount::default();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        count.records += 1;
        match decoder.decode(&line) {
            Ok(_) => count.decoded += 1,
            Err(_) => count.failed += 1,
        }
    }
    Ok(count)
}

/// Decodes every record of an Avro container file with feedloop's reader.
fn decode_avro_file(path: &Path) -> io::Result<DecodeCount> {
    let mut reader = file::open(path, FormatConfig::Avro)?;
    let mut batch = ReadBatch::default();
    let mut count = DecodeCount::default();
    loop {
        batch.events.clear();
        batch.dead_letters.clear();
        batch.records = 0;
        let status = reader.read(1024, &mut batch);
        count.records += batch.records;
        count.decoded += batch.events.len() as u64;
        count.failed += batch.dead_letters.len() as u64;
        if let Some(failure) = batch.failure.take() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, failure));
        }
        if status == ReadStatus::Finished {
            return Ok(count);
        }
    }
}

/// The timed runs of one command.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Short name for the table, such as `scan --workers 2`.
    pub name: String,
    /// The command line as run.
    pub command: String,
    /// Wall time of each run, in seconds.
    pub seconds: Vec<f64>,
}

impl Measurement {
    /// Returns the median wall time in seconds.
    ///
    /// # Panics
    ///
    /// Panics when there are no runs.
    pub fn median_seconds(&self) -> f64 {
        median(&self.seconds)
    }
}

/// Returns the median of the values, which is the mean of the middle two for an even count.
///
/// # Panics
///
/// Panics when `values` is empty or contains NaN.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "the median of no values is undefined");
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("timings are never NaN"));
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

/// Renders the results as a Markdown table. The first measurement is the baseline that the
/// ratio column compares against.
///
/// # Panics
///
/// Panics when `measurements` is empty or a measurement has no runs.
pub fn render_table(events: u64, measurements: &[Measurement]) -> String {
    let baseline = measurements[0].median_seconds();
    let mut table = String::new();
    table.push_str("| measurement | runs (s) | median (s) | events/s | ratio to baseline |\n");
    table.push_str("|---|---|---|---:|---:|\n");
    for measurement in measurements {
        let median = measurement.median_seconds();
        let runs: Vec<String> = measurement
            .seconds
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect();
        let _ = writeln!(
            table,
            "| {} | {} | {median:.2} | {} | {:.2} |",
            measurement.name,
            runs.join(", "),
            group_thousands(events_per_second(events, median)),
            baseline / median,
        );
    }
    table
}

/// Returns the throughput of `events` in `seconds`, rounded to whole events.
pub fn events_per_second(events: u64, seconds: f64) -> u64 {
    (events as f64 / seconds).round() as u64
}

/// Writes a number with commas between groups of three digits, such as `1,234,567`.
pub fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
    }

    #[test]
    fn group_thousands_cases() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn table_ratio_is_against_first_row() {
        let measurements = [
            Measurement {
                name: "decode".into(),
                command: "parse".into(),
                seconds: vec![1.0, 2.0, 1.5],
            },
            Measurement {
                name: "scan".into(),
                command: "scan".into(),
                seconds: vec![6.0, 6.0, 6.0],
            },
        ];
        let table = render_table(3_000_000, &measurements);
        assert!(
            table.contains("| decode | 1.00, 2.00, 1.50 | 1.50 | 2,000,000 | 1.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| scan | 6.00, 6.00, 6.00 | 6.00 | 500,000 | 0.25 |"),
            "{table}"
        );
    }

    #[test]
    fn cached_file_is_reused_only_when_complete() {
        let dir = std::env::temp_dir().join(format!("feedloop-bench-{}", std::process::id()));
        let config = GeneratorConfig {
            events: 200,
            ..GeneratorConfig::default()
        };

        let first = prepare_events(&dir, &config).unwrap();
        assert!(!first.reused);
        assert_eq!(first.manifest.events, 200);
        assert_eq!(
            first.manifest.bytes,
            fs::metadata(&first.path).unwrap().len()
        );

        let second = prepare_events(&dir, &config).unwrap();
        assert!(second.reused);
        assert_eq!(second.manifest, first.manifest);

        // A truncated file is generated again.
        let text = fs::read(&first.path).unwrap();
        fs::write(&first.path, &text[..text.len() / 2]).unwrap();
        let third = prepare_events(&dir, &config).unwrap();
        assert!(!third.reused);
        assert_eq!(fs::read(&third.path).unwrap(), text);

        let count = decode_file(&third.path).unwrap();
        assert_eq!(count.records, 200);
        assert_eq!(count.decoded, 200);
        assert_eq!(count.failed, 0);

        let avro = prepare_avro(&third, &config).unwrap();
        assert_eq!(avro, third.path.with_extension("avro"));
        let count = decode_file(&avro).unwrap();
        assert_eq!(count.records, 200);
        assert_eq!(count.decoded, 200);
        assert_eq!(count.failed, 0);
        let reused = prepare_events(&dir, &config).unwrap();
        let written = fs::metadata(&avro).unwrap().modified().unwrap();
        assert_eq!(prepare_avro(&reused, &config).unwrap(), avro);
        assert_eq!(fs::metadata(&avro).unwrap().modified().unwrap(), written);

        fs::remove_dir_all(&dir).unwrap();
    }
}
