//! Avro output: object container files, and single records in Confluent's wire format.
//!
//! The schema is feedloop's own, `schema/api-event.avsc`, which mirrors its native JSON: the same field
//! names, `time` as a `timestamp-millis` long, optional fields as unions with `null`, and
//! `labels` and `headers` as maps of strings. Maps are written in the event's order, which is
//! sorted by name, so one seed gives the same bytes.
//!
//! Container files use the null codec and a sync marker derived from the seed. The null codec
//! is a choice for reproducibility: apache-avro 0.22 keeps the header metadata in a `HashMap`,
//! so with a compressing codec the order of `avro.schema` and `avro.codec`, and so the file's
//! bytes, can change from run to run.
//!
//! A Confluent-framed message is the byte 0, the schema registry id as a 4-byte big-endian
//! integer, and the record in Avro's binary encoding without a header.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Codec, Reader, Schema, Writer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use feedloop_rules::ApiEvent;

/// The Avro schema of an event, as JSON: the one feedloop reads by default.
pub const SCHEMA_JSON: &str = feedloop_connectors::decode::avro::API_EVENT_SCHEMA;

/// The first byte of a message in Confluent's wire format.
const CONFLUENT_MAGIC: u8 = 0;

/// Returns the parsed schema of an event.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(SCHEMA_JSON).expect("the bundled schema is valid"))
}

/// A writer of one Avro object container file.
pub struct AvroFileWriter<W: Write> {
    writer: Writer<'static, W>,
}

impl<W: Write> AvroFileWriter<W> {
    /// Starts a container file with the null codec and the given sync marker.
    pub fn new(output: W, marker: [u8; 16]) -> Result<AvroFileWriter<W>, apache_avro::Error> {
        let writer = Writer::builder()
            .schema(schema())
            .writer(output)
            .codec(Codec::Null)
            .marker(marker)
            .build()?;
        Ok(AvroFileWriter { writer })
    }

    /// Appends one event. Events are buffered into blocks of about 64 KiB.
    pub fn append(&mut self, event: &ApiEvent) -> Result<(), apache_avro::Error> {
        self.writer.append_ser(Record::of(event))?;
        Ok(())
    }

    /// Writes the last block and returns the output.
    pub fn finish(self) -> Result<W, apache_avro::Error> {
        self.writer.into_inner()
    }
}

/// An encoder of events in Confluent's wire format.
pub struct ConfluentEncoder {
    schema_id: u32,
    datum: GenericDatumWriter<'static>,
}

impl ConfluentEncoder {
    /// Creates an encoder that names `schema_id` in every message.
    pub fn new(schema_id: u32) -> Result<ConfluentEncoder, apache_avro::Error> {
        let datum = GenericDatumWriter::builder(schema()).build()?;
        Ok(ConfluentEncoder { schema_id, datum })
    }

    /// Replaces `message` with the framed record of `event`.
    pub fn encode(
        &self,
        event: &ApiEvent,
        message: &mut Vec<u8>,
    ) -> Result<(), apache_avro::Error> {
        message.clear();
        message.push(CONFLUENT_MAGIC);
        message.extend_from_slice(&self.schema_id.to_be_bytes());
        self.datum.write_ser(message, &Record::of(event))?;
        Ok(())
    }
}

/// Reads every event of a container file written with this schema.
pub fn read_file(input: impl Read) -> Result<Vec<ApiEvent>, apache_avro::Error> {
    let reader = Reader::new(input)?;
    let mut events = Vec::new();
    for value in reader {
        let record: OwnedRecord = apache_avro::from_value(&value?)?;
        events.push(record.into_event());
    }
    Ok(events)
}

/// Decodes one message in Confluent's wire format, returning its schema id and event.
pub fn decode_confluent(message: &[u8]) -> Result<(u32, ApiEvent), apache_avro::Error> {
    if message.len() < 5 || message[0] != CONFLUENT_MAGIC {
        // The same error the container reader raises for a file without Avro's magic bytes.
        return Err(apache_avro::error::Details::HeaderMagic.into());
    }
    let schema_id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    let mut datum = &message[5..];
    let reader = GenericDatumReader::builder(schema()).build()?;
    let record: OwnedRecord = apache_avro::from_value(&reader.read_value(&mut datum)?)?;
    Ok((schema_id, record.into_event()))
}

/// One event with the schema's field names and types, borrowed for writing.
#[derive(Serialize)]
struct Record<'a> {
    time: i64,
    service: &'a str,
    method: &'a str,
    route: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    status: Option<i32>,
    latency_ms: Option<f64>,
    request_bytes: Option<i64>,
    response_bytes: Option<i64>,
    client: &'a str,
    principal: Option<&'a str>,
    user_agent: Option<&'a str>,
    referer: Option<&'a str>,
    trace_id: Option<&'a str>,
    labels: Pairs<'a>,
    headers: Pairs<'a>,
    body: Option<&'a str>,
}

impl Record<'_> {
    fn of(event: &ApiEvent) -> Record<'_> {
        Record {
            time: event.time_ms,
            service: &event.service,
            method: &event.method,
            route: Some(event.route.as_str()).filter(|r| !r.is_empty()),
            path: &event.path,
            query: event.query.as_deref(),
            status: event.status.map(i32::from),
            latency_ms: event.latency_ms,
            request_bytes: event.request_bytes.map(to_long),
            response_bytes: event.response_bytes.map(to_long),
            client: &event.client,
            principal: event.principal.as_deref(),
            user_agent: event.user_agent.as_deref(),
            referer: event.referer.as_deref(),
            trace_id: event.trace_id.as_deref(),
            labels: Pairs(&event.labels),
            headers: Pairs(&event.headers),
            body: event.body.as_deref(),
        }
    }
}

/// Converts a byte count to Avro's signed long, saturating at its maximum.
fn to_long(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Name and value pairs, written as a map in their own order.
struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// One event as read back from Avro.
#[derive(Deserialize)]
struct OwnedRecord {
    time: i64,
    service: String,
    method: String,
    route: Option<String>,
    path: String,
    query: Option<String>,
    status: Option<i32>,
    latency_ms: Option<f64>,
    request_bytes: Option<i64>,
    response_bytes: Option<i64>,
    client: String,
    principal: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    trace_id: Option<String>,
    labels: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

impl OwnedRecord {
    /// Converts the record to an event. Out-of-range numbers become `None`, as a decoder
    /// treats a field it cannot use.
    fn into_event(self) -> ApiEvent {
        ApiEvent {
            time_ms: self.time,
            service: self.service,
            method: self.method,
            route: self.route.unwrap_or_default(),
            path: self.path,
            query: self.query,
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            latency_ms: self.latency_ms,
            request_bytes: self.request_bytes.and_then(|b| u64::try_from(b).ok()),
            response_bytes: self.response_bytes.and_then(|b| u64::try_from(b).ok()),
            client: self.client,
            principal: self.principal,
            user_agent: self.user_agent,
            referer: self.referer,
            trace_id: self.trace_id,
            labels: self.labels.into_iter().collect(),
            headers: self.headers.into_iter().collect(),
            body: self.body,
            problem: None,
        }
    }
}
