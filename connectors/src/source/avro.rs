//! Avro object container files: one partition per file, read block by block.
//!
//! A container file starts with the magic bytes `Obj\x01`, a metadata map that contains the
//! writer schema (`avro.schema`) and the codec (`avro.codec`), and a 16-byte sync marker.
//! Blocks follow, each with its record count, its size in bytes, the records (compressed by
//! the codec) and the sync marker again. The null, deflate and snappy codecs are read. The
//! file may be gzip-compressed as a whole, like any file input, and then byte offsets count
//! the bytes after decompression.
//!
//! A block that cannot be read (a count or size out of range, a sync marker that does not
//! follow it, data the codec rejects) is one dead letter. The reader then searches the bytes
//! after the block's first byte for the next sync marker and goes on with the block after it,
//! so a corrupt block loses only its own records. When the sync marker after a block is
//! damaged too, the block after it is lost with it. A record that fails to decode is one dead
//! letter too. When the Avro reader fails inside a record, the records after it in the same
//! block cannot be located, so the dead letter counts them as skipped. A file that ends inside
//! a block is cut short, which ends the partition with a failure.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::str::FromStr;
use std::sync::Arc;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::{Codec, Schema};

use feedloop_pipeline::{DeadLetter, PartitionReader, Position, ReadBatch, ReadStatus};

use crate::decode::avro::{describe, DatumError, RecordDecoder};
use crate::source::binary_dead_letter;

/// The first bytes of every Avro object container file.
pub const MAGIC: &[u8; 4] = b"Obj\x01";

/// The maximum size of one block, compressed, in bytes. A block header that claims more is
/// read as corrupt. Java's `DataFileWriter` writes blocks of about 64 KB by default.
pub const MAX_BLOCK_BYTES: u64 = 64 << 20;

/// The codecs this reader accepts, for messages.
const CODECS: &str = "null, deflate and snappy";

/// Reads one Avro object container file as a partition of records.
pub struct AvroFileReader {
    name: String,
    stream: Stream,
    records: Arc<RecordDecoder>,
    codec: Codec,
    marker: [u8; 16],
    /// Blocks started so far; the current block's 1-based number.
    block_number: u64,
    /// Records counted so far, decoded or not, including those a dead letter skipped inside a
    /// block. A corrupt block counts as one record, since its count cannot be trusted.
    record_number: u64,
    block: Block,
    finished: bool,
}

/// The records of the current block.
#[derive(Default)]
struct Block {
    /// The block's records, decompressed.
    data: Vec<u8>,
    /// The offset of the next record in `data`.
    at: usize,
    /// Records of the block not read yet.
    left: u64,
}

/// A block that could not be read.
enum BlockError {
    /// The bytes at the block's start are not a block. `consumed` contains every byte read
    /// for it, to be searched for the next sync marker.
    Corrupt {
        reason: String,
        consumed: Vec<u8>,
    },
    /// The file ended inside the block, for the reason given.
    CutShort {
        reason: String,
        consumed: Vec<u8>,
    },
    Io(io::Error),
}

impl From<io::Error> for BlockError {
    fn from(err: io::Error) -> BlockError {
        BlockError::Io(err)
    }
}

impl AvroFileReader {
    /// Reads the header of a container file from `input`, whose first bytes are [`MAGIC`].
    /// The error describes what is wrong with the header.
    pub fn new(name: String, input: Box<dyn BufRead + Send>) -> io::Result<AvroFileReader> {
        let mut stream = Stream {
            input,
            replay: Vec::new(),
            replay_at: 0,
            offset: 0,
        };
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);

        let mut magic = [0u8; 4];
        let read = stream.read_up_to(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid(format!(
                "not an Avro object container file: it starts with {:02x?}, not with `Obj` \
                 and the byte 1",
                &magic[..read]
            )));
        }
        let metadata_schema = Schema::map(Schema::Bytes).build();
        let metadata = GenericDatumReader::builder(&metadata_schema)
            .build()
            .and_then(|reader| reader.read_value(&mut stream))
            .map_err(|err| {
                invalid(format!(
                    "invalid Avro container header: the metadata cannot be read: {}",
                    describe(&err)
                ))
            })?;
        let Value::Map(metadata) = metadata else {
            return Err(invalid(
                "invalid Avro container header: the metadata is not a map".to_string(),
            ));
        };
        let schema = writer_schema(&metadata).map_err(invalid)?;
        let codec = codec(&metadata).map_err(invalid)?;
        let records = RecordDecoder::new(schema).map_err(|reason| {
            invalid(format!(
                "the writer schema in the Avro container header cannot be read as events: {reason}"
            ))
        })?;
        let mut marker = [0u8; 16];
        stream.read_exact(&mut marker).map_err(|err| {
            invalid(format!(
                "invalid Avro container header: the sync marker cannot be read: {err}"
            ))
        })?;

        Ok(AvroFileReader {
            name,
            stream,
            records: Arc::new(records),
            codec,
            marker,
            block_number: 0,
            record_number: 0,
            block: Block::default(),
            finished: false,
        })
    }

    /// Reads the next block into `self.block`. Returns false at the end of the file.
    fn next_block(&mut self) -> Result<bool, BlockError> {
        let mut consumed = Vec::new();
        let Some(count) = read_long(&mut self.stream, &mut consumed)? else {
            return Ok(false);
        };
        // The count's bytes are in `consumed`, so the size is never at the start of the input.
        let size = read_long(&mut self.stream, &mut consumed)?.unwrap_or_default();
        let corrupt = |reason: String, consumed: Vec<u8>| BlockError::Corrupt { reason, consumed };
        if count < 1 {
            return Err(corrupt(
                format!("its record count {count} is not positive"),
                consumed,
            ));
        }
        if !(0..=MAX_BLOCK_BYTES as i64).contains(&size) {
            return Err(corrupt(
                format!("its size {size} is outside 0 to {MAX_BLOCK_BYTES} bytes"),
                consumed,
            ));
        }
        let data_start = consumed.len();
        let block_end = data_start + size as usize + self.marker.len();
        consumed.resize(block_end, 0);
        let read = self.stream.read_up_to(&mut consumed[data_start..])?;
        if read < block_end - data_start {
            consumed.truncate(data_start + read);
            return Err(BlockError::CutShort {
                reason: format!("the {size} bytes it claims run past the end of the file"),
                consumed,
            });
        }
        let data_end = block_end - self.marker.len();
        if consumed[data_end..] != self.marker {
            return Err(corrupt(
                format!("the {size} bytes it claims are not followed by the file's sync marker"),
                consumed,
            ));
        }
        let mut data = consumed[data_start..data_end].to_vec();
        if let Err(err) = self.codec.decompress(&mut data) {
            return Err(corrupt(
                format!("its data cannot be decompressed: {}", describe(&err)),
                consumed,
            ));
        }
        self.block = Block {
            data,
            at: 0,
            left: count as u64,
        };
        Ok(true)
    }

    /// Searches the bytes after the first one of a corrupt block, then the rest of the file,
    /// for the next sync marker. Returns the number of bytes skipped and whether a marker was
    /// found; the next block starts right after it.
    fn skip_to_marker(&mut self, consumed: Vec<u8>) -> io::Result<(u64, bool)> {
        self.stream.unread(consumed.get(1..).unwrap_or_default());
        let mut skipped = consumed.len().min(1) as u64;
        let mut window = [0u8; 16];
        let mut filled = 0;
        while let Some(byte) = self.stream.read_byte()? {
            skipped += 1;
            window.copy_within(1.., 0);
            window[15] = byte;
            filled += 1;
            if filled >= window.len() && window == self.marker {
                return Ok((skipped, true));
            }
        }
        Ok((skipped, false))
    }

    fn dead_letter(&self, position: Position, error: String, raw: &[u8]) -> DeadLetter {
        binary_dead_letter(&self.name, position, error, raw)
    }

    /// Handles a block that could not be read. Returns false when the partition has ended.
    fn recover(&mut self, error: BlockError, start: u64, batch: &mut ReadBatch) -> bool {
        let block = self.block_number;
        let position = Position::Container {
            block,
            record: self.record_number + 1,
        };
        let (reason, consumed, cut_short) = match error {
            BlockError::Io(err) => {
                batch.failure = Some(format!(
                    "failed to read block {block} at byte {start}: {err}"
                ));
                return false;
            }
            BlockError::CutShort { reason, consumed } => (reason, consumed, true),
            BlockError::Corrupt { reason, consumed } => (reason, consumed, false),
        };
        let raw = consumed.clone();
        let (skipped, found) = match self.skip_to_marker(consumed) {
            Ok(result) => result,
            Err(err) => {
                batch.failure = Some(format!(
                    "failed to read after corrupt block {block} at byte {start}: {err}"
                ));
                return false;
            }
        };
        // A cut-short block with a sync marker in it was corrupt; without one, the file ends
        // inside its last block.
        if !found && cut_short {
            batch.failure = Some(format!(
                "the file ends inside block {block} at byte {start}, after {} of its bytes: it \
                 was cut short, or its last block is corrupt",
                raw.len()
            ));
            return false;
        }
        batch.records += 1;
        self.record_number += 1;
        let error = if found {
            format!(
                "corrupt Avro block {block} at byte {start}: {reason}; skipped {skipped} bytes \
                 to the next sync marker, so the records of this block are lost"
            )
        } else {
            format!(
                "corrupt Avro block {block} at byte {start}: {reason}; no sync marker follows, \
                 so the rest of the file ({skipped} bytes) was skipped"
            )
        };
        batch
            .dead_letters
            .push(self.dead_letter(position, error, &raw));
        found
    }
}

impl PartitionReader for AvroFileReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus {
        if self.finished {
            return ReadStatus::Finished;
        }
        let records = Arc::clone(&self.records);
        let mut taken = 0;
        while taken < max {
            if self.block.left == 0 {
                let start = self.stream.offset;
                self.block_number += 1;
                match self.next_block() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.finished = true;
                        return ReadStatus::Finished;
                    }
                    Err(error) => {
                        taken += 1;
                        if !self.recover(error, start, batch) {
                            self.finished = true;
                            return ReadStatus::Finished;
                        }
                        continue;
                    }
                }
            }

            taken += 1;
            batch.records += 1;
            self.record_number += 1;
            let position = Position::Container {
                block: self.block_number,
                record: self.record_number,
            };
            let start = self.block.at;
            let mut rest = &self.block.data[start..];
            let result = records.read(&mut rest);
            let end = self.block.data.len() - rest.len();
            self.block.at = end;
            self.block.left -= 1;
            match result {
                Ok(event) => batch.events.push((event, position)),
                Err(DatumError::Field(err)) => {
                    let raw = &self.block.data[start..end];
                    batch
                        .dead_letters
                        .push(self.dead_letter(position, err.to_string(), raw));
                }
                Err(DatumError::Binary { message, .. }) => {
                    let skipped = self.block.left;
                    let error = format!(
                        "invalid Avro record {} of block {}: {message}; the {skipped} records \
                         after it in the block cannot be located, so they were skipped",
                        self.record_number, self.block_number
                    );
                    let raw = &self.block.data[start..];
                    batch
                        .dead_letters
                        .push(self.dead_letter(position, error, raw));
                    self.record_number += skipped;
                    batch.skipped += skipped;
                    self.block.left = 0;
                    self.block.at = self.block.data.len();
                }
            }
            if self.block.left == 0 && self.block.at < self.block.data.len() {
                taken += 1;
                batch.records += 1;
                let extra = &self.block.data[self.block.at..];
                let error = format!(
                    "Avro block {} has {} bytes after its last record; they were skipped, \
                     because the block's record count or its data is wrong",
                    self.block_number,
                    extra.len()
                );
                let position = Position::Container {
                    block: self.block_number,
                    record: self.record_number,
                };
                batch
                    .dead_letters
                    .push(self.dead_letter(position, error, extra));
                self.block.at = self.block.data.len();
            }
        }
        ReadStatus::Ready
    }
}

/// Returns the writer schema of a container file's metadata.
fn writer_schema(metadata: &HashMap<String, Value>) -> Result<Schema, String> {
    let Some(Value::Bytes(json)) = metadata.get("avro.schema") else {
        return Err("invalid Avro container header: the metadata has no `avro.schema`".to_string());
    };
    let json = std::str::from_utf8(json).map_err(|err| {
        format!("invalid writer schema in the Avro container header: not UTF-8: {err}")
    })?;
    Schema::parse_str(json).map_err(|err| {
        format!(
            "invalid writer schema in the Avro container header: {}",
            describe(&err)
        )
    })
}

/// Returns the codec of a container file's metadata; a file without one uses null.
fn codec(metadata: &HashMap<String, Value>) -> Result<Codec, String> {
    let name = match metadata.get("avro.codec") {
        None => return Ok(Codec::Null),
        Some(Value::Bytes(name)) => String::from_utf8_lossy(name).into_owned(),
        Some(_) => return Err("invalid Avro container header: `avro.codec` is not bytes".into()),
    };
    let supported = matches!(name.as_str(), "null" | "deflate" | "snappy");
    match Codec::from_str(&name) {
        Ok(codec) if supported => Ok(codec),
        _ => Err(format!(
            "the Avro codec {name:?} is not supported; feedloop reads files written with the \
             {CODECS} codecs"
        )),
    }
}

/// Reads a zigzag-encoded variable-length long, appending its bytes to `consumed`. Returns
/// `None` at the end of the input before its first byte.
fn read_long(stream: &mut Stream, consumed: &mut Vec<u8>) -> Result<Option<i64>, BlockError> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let Some(byte) = stream.read_byte().map_err(BlockError::Io)? else {
            if consumed.is_empty() {
                return Ok(None);
            }
            return Err(BlockError::CutShort {
                reason: "the file ends inside its header".to_string(),
                consumed: std::mem::take(consumed),
            });
        };
        consumed.push(byte);
        if shift >= 64 {
            return Err(BlockError::Corrupt {
                reason: "its header contains a number longer than 10 bytes".to_string(),
                consumed: std::mem::take(consumed),
            });
        }
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            let signed = (value >> 1) as i64 ^ -((value & 1) as i64);
            return Ok(Some(signed));
        }
    }
}

/// The bytes of a file, with bytes put back to be read again first.
struct Stream {
    input: Box<dyn BufRead + Send>,
    replay: Vec<u8>,
    replay_at: usize,
    /// Bytes read from the start of the file, less those put back.
    offset: u64,
}

impl Stream {
    fn read_byte(&mut self) -> io::Result<Option<u8>> {
        let mut byte = [0u8; 1];
        Ok((self.read_up_to(&mut byte)? == 1).then_some(byte[0]))
    }

    /// Fills `buffer` unless the input ends first. Returns the bytes read.
    fn read_up_to(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            let n = self.read(&mut buffer[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Puts bytes back, to be read before the rest of the input.
    fn unread(&mut self, bytes: &[u8]) {
        let mut replay = bytes.to_vec();
        replay.extend_from_slice(&self.replay[self.replay_at..]);
        self.replay = replay;
        self.replay_at = 0;
        self.offset -= bytes.len() as u64;
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let n = if self.replay_at < self.replay.len() {
            let n = buffer.len().min(self.replay.len() - self.replay_at);
            buffer[..n].copy_from_slice(&self.replay[self.replay_at..self.replay_at + n]);
            self.replay_at += n;
            n
        } else {
            loop {
                match self.input.read(buffer) {
                    Ok(n) => break n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                }
            }
        };
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Record;
    use apache_avro::{DeflateSettings, Writer};
    use base64::Engine;

    use super::*;
    use crate::decode::avro::api_event_schema;

    const MARKER: [u8; 16] = *b"0123456789abcdef";

    /// Writes a container file of `blocks` blocks of `per_block` records each. Record `i`
    /// (from 0) has path `/r/i` and time `1_000_000_000_000 + i` ms.
    fn container(codec: Codec, blocks: usize, per_block: usize) -> Vec<u8> {
        let schema = api_event_schema();
        let mut writer = Writer::builder()
            .schema(&schema)
            .writer(Vec::new())
            .codec(codec)
            .marker(MARKER)
            .build()
            .unwrap();
        for i in 0..blocks * per_block {
            let mut record = Record::new(&schema).unwrap();
            record.put("time", Value::TimestampMillis(1_000_000_000_000 + i as i64));
            record.put("service", "shop");
            record.put("method", "GET");
            record.put("route", Value::Union(0, Box::new(Value::Null)));
            record.put("path", format!("/r/{i}"));
            record.put("client", "198.51.100.1");
            for field in [
                "query",
                "principal",
                "user_agent",
                "referer",
                "trace_id",
                "body",
            ] {
                record.put(field, Value::Union(0, Box::new(Value::Null)));
            }
            record.put("status", Value::Union(1, Box::new(Value::Int(200))));
            record.put("latency_ms", Value::Union(0, Box::new(Value::Null)));
            record.put("request_bytes", Value::Union(0, Box::new(Value::Null)));
            record.put("response_bytes", Value::Union(0, Box::new(Value::Null)));
            record.put("labels", Value::Map(Default::default()));
            record.put("headers", Value::Map(Default::default()));
            writer.append_value(record).unwrap();
            if (i + 1) % per_block == 0 {
                writer.flush().unwrap();
            }
        }
        writer.into_inner().unwrap()
    }

    /// Returns the byte offsets at which each block starts: after the header's sync marker
    /// and after every block's.
    fn block_starts(file: &[u8]) -> Vec<usize> {
        file.windows(16)
            .enumerate()
            .filter(|(_, window)| *window == MARKER)
            .map(|(at, _)| at + 16)
            .filter(|at| *at < file.len())
            .collect()
    }

    fn read_all(file: Vec<u8>) -> ReadBatch {
        let mut reader = AvroFileReader::new("mem.avro".into(), Box::new(io::Cursor::new(file)))
            .expect("the header is valid");
        let mut batch = ReadBatch::default();
        for _ in 0..1000 {
            if reader.read(7, &mut batch) == ReadStatus::Finished {
                return batch;
            }
        }
        panic!("the reader did not finish");
    }

    fn paths(batch: &ReadBatch) -> Vec<String> {
        batch.events.iter().map(|(e, _)| e.path.clone()).collect()
    }

    #[test]
    fn blocks_are_read_with_positions() {
        let batch = read_all(container(Codec::Null, 3, 4));
        assert_eq!(batch.records, 12);
        assert_eq!(batch.events.len(), 12);
        assert!(batch.dead_letters.is_empty());
        assert!(batch.failure.is_none());
        assert_eq!(batch.events[0].0.path, "/r/0");
        assert_eq!(batch.events[0].0.time_ms, 1_000_000_000_000);
        assert_eq!(batch.events[0].0.route, "/r/{id}");
        assert_eq!(
            batch.events[5].1,
            Position::Container {
                block: 2,
                record: 6
            }
        );
        assert_eq!(batch.events[11].0.path, "/r/11");
    }

    #[test]
    fn deflate_and_snappy_blocks_are_read() {
        for codec in [Codec::Deflate(DeflateSettings::default()), Codec::Snappy] {
            let batch = read_all(container(codec, 2, 5));
            assert_eq!(batch.events.len(), 10, "{codec:?}");
            assert_eq!(batch.events[9].0.path, "/r/9", "{codec:?}");
        }
    }

    #[test]
    fn garbage_block_is_skipped_to_next_marker() {
        let file = container(Codec::Null, 3, 4);
        let starts = block_starts(&file);
        assert_eq!(starts.len(), 3);
        let garbage = b"this is not an Avro block";
        let batch = read_all(spliced_bytes(&file, starts[1], garbage));
        assert_eq!(batch.events.len(), 12);
        assert_eq!(batch.records, 13);
        assert!(batch.failure.is_none());
        assert_eq!(batch.dead_letters.len(), 1);
        let letter = &batch.dead_letters[0];
        assert_eq!(
            letter.position,
            Position::Container {
                block: 2,
                record: 5
            }
        );
        // `t` is the count 58 and `h` the size 52, and the 52 bytes after them are not followed
        // by the marker.
        assert_eq!(
            letter.error,
            format!(
                "corrupt Avro block 2 at byte {}: the 52 bytes it claims are not followed by the \
                 file's sync marker; skipped {} bytes to the next sync marker, so the records of \
                 this block are lost",
                starts[1],
                garbage.len() + 16
            )
        );
        assert_eq!(
            batch.events[4].1,
            Position::Container {
                block: 3,
                record: 6
            }
        );
        // The letter keeps the bytes read for the block: its 2 header bytes, 52 bytes and
        // 16 where the marker should be.
        let kept = base64::engine::general_purpose::STANDARD
            .decode(letter.raw_base64.as_deref().unwrap())
            .unwrap();
        let at = starts[1];
        assert_eq!(kept, spliced_bytes(&file, at, garbage)[at..at + 70]);
    }

    /// Returns `file` with `garbage` and the marker put in at byte `at`.
    fn spliced_bytes(file: &[u8], at: usize, garbage: &[u8]) -> Vec<u8> {
        let mut spliced = file[..at].to_vec();
        spliced.extend_from_slice(garbage);
        spliced.extend_from_slice(&MARKER);
        spliced.extend_from_slice(&file[at..]);
        spliced
    }

    /// Returns the length in bytes of the varint at the start of `bytes`.
    fn varint_len(bytes: &[u8]) -> usize {
        bytes.iter().position(|b| b & 0x80 == 0).unwrap() + 1
    }

    #[test]
    fn corrupt_block_loses_only_its_records() {
        let file = container(Codec::Null, 3, 4);
        let starts = block_starts(&file);
        let mut corrupt = file.clone();
        // The second block claims a size 2 bytes off, so its sync marker is not where the
        // size puts it.
        let size_at = starts[1] + varint_len(&file[starts[1]..]);
        corrupt[size_at] ^= 0x04;

        let batch = read_all(corrupt);
        assert_eq!(
            paths(&batch),
            ["/r/0", "/r/1", "/r/2", "/r/3", "/r/8", "/r/9", "/r/10", "/r/11"]
        );
        assert_eq!(batch.records, 9);
        assert_eq!(batch.dead_letters.len(), 1);
        let letter = &batch.dead_letters[0];
        assert_eq!(
            letter.position,
            Position::Container {
                block: 2,
                record: 5
            }
        );
        assert!(
            letter
                .error
                .starts_with(&format!("corrupt Avro block 2 at byte {}: the ", starts[1])),
            "{}",
            letter.error
        );
        assert!(
            letter.error.ends_with(&format!(
                "bytes it claims are not followed by the file's sync marker; skipped {} bytes \
                 to the next sync marker, so the records of this block are lost",
                starts[2] - starts[1]
            )),
            "{}",
            letter.error
        );
        // Block 3 follows the corrupt block, whose 4 records count as one.
        assert_eq!(
            batch.events[4].1,
            Position::Container {
                block: 3,
                record: 6
            }
        );
    }

    #[test]
    fn damaged_marker_loses_next_block_too() {
        let file = container(Codec::Null, 3, 4);
        let starts = block_starts(&file);
        let mut corrupt = file.clone();
        corrupt[starts[2] - 16] ^= 0xff;

        let batch = read_all(corrupt);
        assert_eq!(paths(&batch), ["/r/0", "/r/1", "/r/2", "/r/3"]);
        assert_eq!(batch.dead_letters.len(), 1);
        assert!(
            batch.dead_letters[0].error.ends_with(&format!(
                "skipped {} bytes to the next sync marker, so the records of this block are lost",
                file.len() - starts[1]
            )),
            "{}",
            batch.dead_letters[0].error
        );
    }

    #[test]
    fn bad_record_skips_rest_of_block() {
        let file = container(Codec::Null, 2, 3);
        let starts = block_starts(&file);
        let mut bad = file.clone();
        // The block starts with its count and size, and then the first record, whose time is
        // a varint: ten continuation bytes make it invalid.
        let count_bytes = varint_len(&file[starts[0]..]);
        let record_at = starts[0] + count_bytes + varint_len(&file[starts[0] + count_bytes..]);
        for byte in &mut bad[record_at..record_at + 10] {
            *byte = 0xff;
        }

        let batch = read_all(bad);
        assert_eq!(paths(&batch), ["/r/3", "/r/4", "/r/5"]);
        assert_eq!(batch.records, 4);
        assert_eq!(batch.skipped, 2);
        assert_eq!(batch.dead_letters.len(), 1);
        let letter = &batch.dead_letters[0];
        assert_eq!(
            letter.position,
            Position::Container {
                block: 1,
                record: 1
            }
        );
        assert_eq!(
            letter.error,
            "invalid Avro record 1 of block 1: invalid field `time`: a number is longer than the \
             10 bytes of a long; the 2 records after it in the block cannot be located, so they \
             were skipped"
        );
        assert_eq!(
            batch.events[0].1,
            Position::Container {
                block: 2,
                record: 4
            }
        );
    }

    #[test]
    fn cut_short_file_is_a_failure() {
        let file = container(Codec::Null, 2, 3);
        let starts = block_starts(&file);
        let cut = file[..file.len() - 20].to_vec();
        let batch = read_all(cut);
        assert_eq!(paths(&batch), ["/r/0", "/r/1", "/r/2"]);
        assert!(batch.dead_letters.is_empty());
        assert_eq!(
            batch.failure.as_deref(),
            Some(
                format!(
                    "the file ends inside block 2 at byte {}, after {} of its bytes: it was cut \
                     short, or its last block is corrupt",
                    starts[1],
                    file.len() - 20 - starts[1]
                )
                .as_str()
            )
        );
    }

    #[test]
    fn trailing_garbage_without_marker_is_dead_lettered() {
        let mut file = container(Codec::Null, 1, 2);
        let end = file.len();
        file.extend_from_slice(&[0x80; 12]);
        let batch = read_all(file);
        assert_eq!(batch.events.len(), 2);
        assert!(batch.failure.is_none());
        assert_eq!(batch.dead_letters.len(), 1);
        assert_eq!(
            batch.dead_letters[0].error,
            format!(
                "corrupt Avro block 2 at byte {end}: its header contains a number longer than 10 \
                 bytes; no sync marker follows, so the rest of the file (12 bytes) was skipped"
            )
        );
    }

    #[test]
    fn header_errors_are_reported() {
        let open = |bytes: Vec<u8>| {
            AvroFileReader::new("mem.avro".into(), Box::new(io::Cursor::new(bytes)))
                .err()
                .expect("the header is invalid")
                .to_string()
        };
        assert_eq!(
            open(b"{\"a\"".to_vec()),
            "not an Avro object container file: it starts with [7b, 22, 61, 22], not with `Obj` \
             and the byte 1"
        );

        // A header with the codec `zstandard`, which is not read.
        let mut header = MAGIC.to_vec();
        let schema = API_EVENT.as_bytes();
        let entries: [(&[u8], &[u8]); 2] =
            [(b"avro.schema", schema), (b"avro.codec", b"zstandard")];
        header.push(4); // two entries, zigzag-encoded
        for (key, value) in entries {
            put_bytes(&mut header, key);
            put_bytes(&mut header, value);
        }
        header.push(0);
        header.extend_from_slice(&MARKER);
        assert_eq!(
            open(header),
            "the Avro codec \"zstandard\" is not supported; feedloop reads files written with \
             the null, deflate and snappy codecs"
        );

        let mut header = MAGIC.to_vec();
        header.push(2);
        put_bytes(&mut header, b"avro.schema");
        put_bytes(
            &mut header,
            br#"{"type": "record", "name": "E", "fields": [{"name": "ts", "type": "long"}]}"#,
        );
        header.push(0);
        header.extend_from_slice(&MARKER);
        let err = open(header);
        assert!(
            err.starts_with(
                "the writer schema in the Avro container header cannot be read as events: \
                 record E has no field `time`"
            ),
            "{err}"
        );
    }

    const API_EVENT: &str = crate::decode::avro::API_EVENT_SCHEMA;

    /// Appends Avro `bytes`: the zigzag length, then the bytes. Lengths stay below 64 here.
    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        let mut n = (bytes.len() as u64) << 1;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
}
