//! Sources: where records come from, split into partitions the workers read.
//!
//! Each source turns its input into [`PartitionReader`]s for the dataflow driver: one per file,
//! one for stdin, one per Kafka partition. A partition is read in order by one worker, and
//! partitions are dealt to workers round-robin by index, so the same inputs always land on the
//! same workers.

pub mod avro;
pub mod file;
pub mod kafka;

use base64::Engine;
use feedloop_pipeline::dead_letter::MAX_RAW_BYTES;
use feedloop_pipeline::{DeadLetter, Position, Reason};
use serde::Deserialize;

use crate::decode::{Format, JsonMapping};

/// The layout of a source's records.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FormatConfig {
    /// Detect per file: the Avro container magic bytes mean Avro, and otherwise the first
    /// non-blank record decides, `{` for JSON Lines and anything else combined. On Kafka,
    /// JSON Lines.
    #[default]
    Auto,
    /// Apache/nginx combined or common log format.
    Combined,
    /// JSON Lines with the default field mapping.
    Json,
    /// JSON Lines with a custom field mapping.
    JsonMapping(Box<JsonMapping>),
    /// Avro: object container files for files and stdin, Confluent-framed records for Kafka.
    Avro,
}

impl FormatConfig {
    /// Returns the line format, or `None` for `auto`, which needs the first record, and for
    /// `avro`, which is not read line by line.
    pub fn fixed(&self) -> Option<Format> {
        match self {
            FormatConfig::Auto | FormatConfig::Avro => None,
            FormatConfig::Combined => Some(Format::Combined),
            FormatConfig::Json => Some(Format::Json(JsonMapping::default())),
            FormatConfig::JsonMapping(mapping) => Some(Format::Json((**mapping).clone())),
        }
    }
}

/// Builds the dead letter of a binary record that failed to decode, with its bytes in
/// `raw_base64` as well as in `raw`.
pub fn binary_dead_letter(
    source: &str,
    position: Position,
    error: String,
    raw: &[u8],
) -> DeadLetter {
    let mut letter = DeadLetter::new(source, position, Reason::Decode, error, raw);
    let kept = &raw[..raw.len().min(MAX_RAW_BYTES)];
    letter.raw_base64 = Some(base64::engine::general_purpose::STANDARD.encode(kept));
    letter
}

/// Returns true when partition `index` belongs to worker `worker` of `peers`.
pub fn owned_by(index: usize, worker: usize, peers: usize) -> bool {
    index % peers.max(1) == worker
}
