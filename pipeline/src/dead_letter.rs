//! Dead letters: records that could not become events, or events that arrived too late.
//!
//! Nothing a source reads is dropped silently. A record that fails to decode and an event that
//! arrives after its windows have closed both become a [`DeadLetter`], which the run counts and
//! writes to the dead-letter output with enough context to find and replay the original.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The maximum number of bytes of a raw record a dead letter keeps.
pub const MAX_RAW_BYTES: usize = 4096;

/// The position of a record inside its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// 1-based line number in a file or stdin.
    Line(u64),
    /// Kafka partition and offset.
    Offset { partition: i32, offset: i64 },
    /// 1-based block number in an Avro container file, and the 1-based number of the record
    /// among those read from the file. A corrupt block counts as one record, because its
    /// record count cannot be trusted, and its dead letter has that number.
    Container { block: u64, record: u64 },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(line) => write!(f, "line {line}"),
            Position::Offset { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
            Position::Container { block, record } => write!(f, "block {block}, record {record}"),
        }
    }
}

/// The reason a record was set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The record could not be decoded into an event.
    Decode,
    /// The event is older than the watermark allowed, so its windows had already closed.
    Late,
    /// The event time is implausible: before 1970, or further ahead of the wall clock than
    /// the run allows. Such a time would close every open window at once.
    Time,
}

/// A record set aside with its origin, the reason and the raw bytes (capped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Source name, such as a file path or `kafka:topic`.
    pub source: String,
    /// Position of the record inside the source.
    pub position: Position,
    /// The reason the record was set aside.
    pub reason: Reason,
    /// The error, naming the value at fault.
    pub error: String,
    /// The raw record as text (invalid UTF-8 replaced), cut to [`MAX_RAW_BYTES`].
    pub raw: String,
    /// True when `raw` was cut.
    pub raw_truncated: bool,
    /// The bytes of `raw` in standard base64, for binary records such as Avro, whose `raw`
    /// text cannot give the bytes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

impl DeadLetter {
    /// Builds a dead letter, keeping at most [`MAX_RAW_BYTES`] of `raw` cut on a character
    /// boundary.
    pub fn new(
        source: impl Into<String>,
        position: Position,
        reason: Reason,
        error: impl Into<String>,
        raw: &[u8],
    ) -> DeadLetter {
        let cut = raw.len().min(MAX_RAW_BYTES);
        let mut text = String::from_utf8_lossy(&raw[..cut]).into_owned();
        // A multi-byte character cut in two decodes as a trailing U+FFFD: drop it.
        if cut < raw.len()
            && text.ends_with('\u{FFFD}')
            && std::str::from_utf8(&raw[..cut]).is_err()
        {
            text.pop();
        }
        DeadLetter {
            source: source.into(),
            position,
            reason,
            error: error.into(),
            raw: text,
            raw_truncated: cut < raw.len(),
            raw_base64: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_capped_on_char_boundary() {
        let mut raw = vec![b'a'; MAX_RAW_BYTES - 1];
        raw.extend_from_slice("é and more".as_bytes());
        let letter = DeadLetter::new("f", Position::Line(3), Reason::Decode, "bad", &raw);
        assert!(letter.raw_truncated);
        assert_eq!(letter.raw.len(), MAX_RAW_BYTES - 1);
        assert!(letter.raw.bytes().all(|b| b == b'a'));
    }

    #[test]
    fn short_raw_is_kept_whole() {
        let letter = DeadLetter::new("f", Position::Line(1), Reason::Decode, "bad", b"x\xffy");
        assert!(!letter.raw_truncated);
        assert_eq!(letter.raw, "x\u{FFFD}y");
    }
}
