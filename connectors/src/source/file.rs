//! File and stdin sources: one partition per file, read line by line, or block by block for
//! Avro container files ([`super::avro`]).
//!
//! Gzip files are recognised by their magic bytes, not their name, and may hold several gzip
//! members (as `cat a.gz b.gz` produces). So are Avro container files, when the format is
//! `auto`. Lines are split on `\n` only; invalid UTF-8 is left to
//! the decoder. Blank lines are skipped and not counted as records. An I/O error ends the
//! partition and is logged with the file and line, because a half-read file cannot be resumed.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use feedloop_pipeline::{DeadLetter, PartitionReader, Position, ReadBatch, ReadStatus, Reason};

use crate::decode::{Decoder, Format};
use crate::source::avro::{AvroFileReader, MAGIC as AVRO_MAGIC};
use crate::source::FormatConfig;

/// The maximum line length in bytes. Longer lines are dead-lettered with their first bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The maximum number of input line bytes read into one batch.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Reads one file or stdin as a partition of records.
pub struct LineReader {
    name: String,
    input: Box<dyn BufRead + Send>,
    format: FormatConfig,
    decoder: Option<Decoder>,
    /// The format and line it was detected from, when the configuration sets `auto`.
    detected: Option<(&'static str, u64)>,
    line: u64,
    buffer: Vec<u8>,
    finished: bool,
}

impl LineReader {
    /// Opens a file, decompressing it when it starts with the gzip magic bytes.
    pub fn open(path: &Path, format: FormatConfig) -> io::Result<LineReader> {
        let file = File::open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a directory",
            ));
        }
        Ok(LineReader::new(
            path.display().to_string(),
            ungzip(file)?,
            format,
        ))
    }

    /// Reads standard input, decompressing it when it starts with the gzip magic bytes.
    pub fn stdin(format: FormatConfig) -> io::Result<LineReader> {
        Ok(LineReader::new(
            "stdin".to_string(),
            ungzip(io::stdin())?,
            format,
        ))
    }

    /// Reads any byte stream under a name.
    pub fn new(name: String, input: Box<dyn BufRead + Send>, format: FormatConfig) -> LineReader {
        let decoder = format.fixed().map(Decoder::new);
        LineReader {
            name,
            input,
            format,
            decoder,
            detected: None,
            line: 0,
            buffer: Vec::new(),
            finished: false,
        }
    }

    /// Reads the next line into the buffer, without the newline. Returns false at the end.
    fn next_line(&mut self) -> io::Result<bool> {
        self.buffer.clear();
        let limit = (MAX_LINE_BYTES + 1) as u64;
        let read = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buffer)?;
        if read == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buffer.last() == Some(&b'\n') {
            self.buffer.pop();
        } else if self.buffer.len() > MAX_LINE_BYTES {
            // Skip the rest of an overlong line so the next record starts on a line boundary.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut self.input).take(limit).read_until(b'\n', &mut rest)?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        Ok(true)
    }

    fn decode_line(&mut self, batch: &mut ReadBatch) {
        let position = Position::Line(self.line);
        if self.buffer.len() > MAX_LINE_BYTES {
            let error = format!("line is longer than the maximum of {MAX_LINE_BYTES} bytes");
            batch.dead_letters.push(self.dead_letter(position, error));
            return;
        }
        if self.decoder.is_none() {
            let format = match self.format.fixed() {
                Some(format) => format,
                None => {
                    let format = Format::detect(&self.buffer);
                    let name = if matches!(format, Format::Json(_)) {
                        "JSON Lines"
                    } else {
                        "combined log"
                    };
                    self.detected = Some((name, self.line));
                    format
                }
            };
            self.decoder = Some(Decoder::new(format));
        }
        let decoder = self.decoder.as_ref().expect("the decoder was just set");
        match decoder.decode(&self.buffer) {
            Ok(event) => batch.events.push((event, position)),
            Err(err) => {
                let error = match self.detected {
                    Some((format, line)) => format!(
                        "{err} (read as {format}, detected from line {line}; set the input format if that is wrong)"
                    ),
                    None => err.to_string(),
                };
                batch.dead_letters.push(self.dead_letter(position, error));
            }
        }
    }

    /// Builds the dead letter of the line in the buffer.
    fn dead_letter(&self, position: Position, error: String) -> DeadLetter {
        DeadLetter::new(&self.name, position, Reason::Decode, error, &self.buffer)
    }
}

impl PartitionReader for LineReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus {
        if self.finished {
            return ReadStatus::Finished;
        }
        let mut taken = 0;
        let mut bytes = 0;
        // A batch also ends after MAX_BATCH_BYTES, so a file of long lines does not hold
        // thousands of megabyte-sized records in memory at once.
        while taken < max && bytes < MAX_BATCH_BYTES {
            match self.next_line() {
                Ok(true) => {}
                Ok(false) => {
                    self.finished = true;
                    return ReadStatus::Finished;
                }
                Err(err) => {
                    batch.failure = Some(format!("failed to read after line {}: {err}", self.line));
                    self.finished = true;
                    return ReadStatus::Finished;
                }
            }
            if self.buffer.trim_ascii().is_empty() {
                continue;
            }
            taken += 1;
            bytes += self.buffer.len();
            batch.records += 1;
            self.decode_line(batch);
        }
        ReadStatus::Ready
    }
}

/// Buffers a byte stream, decompressing it when it starts with the gzip magic bytes.
fn ungzip(input: impl Read + Send + 'static) -> io::Result<Box<dyn BufRead + Send>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    if gzip {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Opens a file as a partition: an Avro container file with format `avro`, or with `auto`
/// when it starts with the Avro magic bytes, and else a file of lines. Gzip is decompressed
/// first either way.
pub fn open(path: &Path, format: FormatConfig) -> io::Result<Box<dyn PartitionReader>> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    reader(path.display().to_string(), ungzip(file)?, format)
}

/// Opens standard input as a partition, as [`open`] opens a file.
pub fn stdin(format: FormatConfig) -> io::Result<Box<dyn PartitionReader>> {
    reader("stdin".to_string(), ungzip(io::stdin())?, format)
}

/// Chooses the reader of a byte stream by its format and first bytes.
fn reader(
    name: String,
    mut input: Box<dyn BufRead + Send>,
    format: FormatConfig,
) -> io::Result<Box<dyn PartitionReader>> {
    let avro = match format {
        FormatConfig::Avro => true,
        FormatConfig::Auto => input.fill_buf()?.starts_with(AVRO_MAGIC),
        _ => false,
    };
    if avro {
        Ok(Box::new(AvroFileReader::new(name, input)?))
    } else {
        Ok(Box::new(LineReader::new(name, input, format)))
    }
}

/// Opens each path (`-` for stdin) as one partition.
pub fn open_all(
    paths: &[PathBuf],
    format: &FormatConfig,
) -> io::Result<Vec<Box<dyn PartitionReader>>> {
    paths
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                stdin(format.clone())
            } else {
                open(path, format.clone()).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("failed to open {}: {err}", path.display()),
                    )
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static [u8]) -> LineReader {
        LineReader::new("mem".into(), Box::new(text), FormatConfig::Auto)
    }

    #[test]
    fn blank_lines_are_skipped_and_numbered() {
        let mut r = reader(b"\n{\"time\": 1000, \"path\": \"/a\"}\n\n{\"nope\n");
        let mut batch = ReadBatch::default();
        assert_eq!(r.read(10, &mut batch), ReadStatus::Finished);
        assert_eq!(batch.records, 2);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].1, Position::Line(2));
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(batch.dead_letters[0].position, Position::Line(4));
        assert_eq!(batch.dead_letters[0].raw, "{\"nope");
        let error = &batch.dead_letters[0].error;
        assert!(
            error.ends_with(
                "(read as JSON Lines, detected from line 2; set the input format if that is wrong)"
            ),
            "{error}"
        );
    }

    #[test]
    fn read_stops_at_max() {
        let mut r = reader(b"{\"time\": 1}\n{\"time\": 2}\n{\"time\": 3}\n");
        let mut batch = ReadBatch::default();
        assert_eq!(r.read(2, &mut batch), ReadStatus::Ready);
        assert_eq!(batch.events.len(), 2);
        let mut batch = ReadBatch::default();
        assert_eq!(r.read(2, &mut batch), ReadStatus::Finished);
        assert_eq!(batch.events.len(), 1);
    }

    #[test]
    fn overlong_line_is_dead_lettered_and_skipped() {
        let mut text = vec![b'x'; MAX_LINE_BYTES + 10];
        text.extend_from_slice(b"\n{\"time\": 5}\n");
        let text: &'static [u8] = Box::leak(text.into_boxed_slice());
        let mut r = reader(text);
        let mut batch = ReadBatch::default();
        r.read(10, &mut batch);
        assert_eq!(batch.dead_letters.len(), 1);
        assert!(batch.dead_letters[0].raw_truncated);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].1, Position::Line(2));
    }

    #[test]
    fn batch_of_long_lines_stops_at_byte_limit() {
        let mut text = Vec::new();
        for _ in 0..20 {
            text.extend(std::iter::repeat_n(b'x', 1_000_000));
            text.push(b'\n');
        }
        let text: &'static [u8] = Box::leak(text.into_boxed_slice());
        let mut r = reader(text);
        let mut batch = ReadBatch::default();
        assert_eq!(r.read(1024, &mut batch), ReadStatus::Ready);
        // Eight lines make 8,000,000 bytes, under the 8 MiB limit; the ninth crosses it.
        assert_eq!(batch.records, 9);
    }

    #[test]
    fn truncated_gzip_reports_failure() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        for i in 0..1000 {
            writeln!(gz, "{{\"time\": {i}}}").unwrap();
        }
        let bytes = gz.finish().unwrap();
        let cut: &'static [u8] = Box::leak(bytes[..bytes.len() / 2].to_vec().into_boxed_slice());
        let mut r = LineReader::new("cut.gz".into(), ungzip(cut).unwrap(), FormatConfig::Auto);
        let mut batch = ReadBatch::default();
        while r.read(100, &mut batch) != ReadStatus::Finished {}
        let failure = batch.failure.expect("a truncated stream is a failure");
        assert!(
            failure.starts_with("failed to read after line "),
            "{failure}"
        );
        assert!(batch.events.len() < 1000);
    }

    #[test]
    fn gzip_is_detected_by_magic() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("feedloop-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.txt");
        let mut gz = GzEncoder::new(File::create(&path).unwrap(), Compression::fast());
        gz.write_all(b"{\"time\": 1}\n{\"time\": 2}\n").unwrap();
        gz.finish().unwrap();
        let mut r = LineReader::open(&path, FormatConfig::Auto).unwrap();
        let mut batch = ReadBatch::default();
        assert_eq!(r.read(10, &mut batch), ReadStatus::Finished);
        assert_eq!(batch.events.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
