//! Sinks of a scenario run: JSON Lines or Avro files, or a Kafka topic, at a fixed rate or as
//! fast as possible, within a deadline.
//!
//! [`run`] takes the generator's events one by one, waits until each is due when a send rate
//! is set, and hands it to a [`Sink`]. A run that reaches its deadline stops with
//! [`OutputError::TimedOut`], and one cut short by the generator's `max_events` stops with
//! [`OutputError::Truncated`], so a partial output is never reported as complete.
//!
//! Pacing never changes the bytes of a file. Uncompressed JSON Lines are flushed before each
//! wait, so a reader that follows the file reads the events as they are due. Gzip and Avro
//! output is not flushed early, because a flush would end a deflate block or an Avro block at
//! a point that depends on timing.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use feedloop_rules::ApiEvent;

use super::avro::{AvroFileWriter, ConfluentEncoder};
use super::{Label, ScenarioGenerator};
use crate::gen::encode_jsonl;

/// The maximum wait between two checks of the deadline while the producer queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

/// librdkafka's `message.timeout.ms`: how long it retries a message before reporting failure.
const MESSAGE_TIMEOUT_MS: &str = "30000";

/// A destination for the events of a run.
pub trait Sink {
    /// Writes or sends one event and returns the bytes it took.
    fn send(&mut self, event: &ApiEvent, deadline: Instant) -> Result<u64, OutputError>;

    /// Makes what was sent so far visible to readers, where that does not change the output.
    fn pause(&mut self) -> Result<(), OutputError>;

    /// Completes the output: writes buffered data, or waits for the broker's
    /// acknowledgements.
    fn finish(self: Box<Self>, deadline: Instant) -> Result<(), OutputError>;
}

/// How fast and how long a run may send.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// Events per second of wall-clock time, or `None` for as fast as possible.
    pub send_rate: Option<f64>,
    /// The instant by which the run, its final flush included, must end.
    pub deadline: Instant,
}

/// Counts and labels of a completed run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Events sent.
    pub events: u64,
    /// Events sent by attackers.
    pub attacker_events: u64,
    /// Bytes of the events before compression: JSON lines with newlines, Avro records or
    /// Kafka message payloads.
    pub bytes: u64,
    /// The labels, with the attacker event counts of the whole run.
    pub labels: Vec<Label>,
}

/// A run that failed or did not complete.
#[derive(Debug)]
pub enum OutputError {
    /// Writing a file failed.
    Io(io::Error),
    /// Encoding Avro failed.
    Avro(apache_avro::Error),
    /// The Kafka producer failed.
    Kafka(KafkaError),
    /// The deadline passed before the run ended.
    TimedOut {
        /// Events sent before the deadline.
        events: u64,
    },
    /// The generator stopped at its `max_events` before the end of the run.
    Truncated {
        /// The configured maximum.
        max_events: u64,
    },
    /// The broker did not acknowledge every message before the deadline.
    Undelivered {
        /// Messages handed to the producer.
        sent: u64,
        /// Messages the broker acknowledged.
        delivered: u64,
        /// Messages whose delivery failed.
        failed: u64,
    },
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Io(err) => write!(f, "failed to write events: {err}"),
            OutputError::Avro(err) => write!(f, "failed to encode Avro: {err}"),
            OutputError::Kafka(err) => write!(f, "failed to produce to Kafka: {err}"),
            OutputError::TimedOut { events } => write!(
                f,
                "timed out after {events} events; raise the timeout or the send rate"
            ),
            OutputError::Truncated { max_events } => write!(
                f,
                "the run reached max_events {max_events} before its end; raise max_events"
            ),
            OutputError::Undelivered {
                sent,
                delivered,
                failed,
            } => write!(
                f,
                "the broker acknowledged {delivered} of {sent} messages before the deadline, \
                 and {failed} failed; check that the topic exists and the broker is reachable"
            ),
        }
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutputError::Io(err) => Some(err),
            OutputError::Avro(err) => Some(err),
            OutputError::Kafka(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for OutputError {
    fn from(err: io::Error) -> OutputError {
        OutputError::Io(err)
    }
}

impl From<apache_avro::Error> for OutputError {
    fn from(err: apache_avro::Error) -> OutputError {
        OutputError::Avro(err)
    }
}

/// Sends every event of `generator` to `sink` and completes it.
pub fn run(
    mut generator: ScenarioGenerator,
    mut sink: Box<dyn Sink + '_>,
    pacing: Pacing,
) -> Result<RunSummary, OutputError> {
    let started = Instant::now();
    let mut events = 0;
    let mut attacker_events = 0;
    let mut bytes = 0;
    for generated in generator.by_ref() {
        if let Some(rate) = pacing.send_rate {
            let due = started + Duration::from_secs_f64(events as f64 / rate);
            let now = Instant::now();
            if due > now {
                sink.pause()?;
                thread::sleep(due.min(pacing.deadline).saturating_duration_since(now));
            }
        }
        if Instant::now() >= pacing.deadline {
            return Err(OutputError::TimedOut { events });
        }
        bytes += sink.send(&generated.event, pacing.deadline)?;
        events += 1;
        attacker_events += u64::from(generated.scenario.is_some());
    }
    if generator.truncated() {
        return Err(OutputError::Truncated {
            max_events: generator.config().max_events,
        });
    }
    sink.finish(pacing.deadline)?;
    Ok(RunSummary {
        events,
        attacker_events,
        bytes,
        labels: generator.labels(),
    })
}

/// JSON Lines in feedloop's native schema, optionally gzip-compressed.
pub struct JsonlSink<W: Write> {
    output: JsonlOutput<W>,
    line: Vec<u8>,
}

enum JsonlOutput<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

impl<W: Write> JsonlSink<W> {
    /// Writes uncompressed lines to `output`.
    pub fn plain(output: W) -> JsonlSink<W> {
        JsonlSink {
            output: JsonlOutput::Plain(output),
            line: Vec::with_capacity(1_024),
        }
    }

    /// Writes gzip-compressed lines to `output`, at the best compression and with no file
    /// name or time in the header, so the same events give the same bytes.
    pub fn gzip(output: W) -> JsonlSink<W> {
        JsonlSink {
            output: JsonlOutput::Gzip(GzEncoder::new(output, Compression::best())),
            line: Vec::with_capacity(1_024),
        }
    }
}

impl<W: Write> Sink for JsonlSink<W> {
    fn send(&mut self, event: &ApiEvent, _deadline: Instant) -> Result<u64, OutputError> {
        self.line.clear();
        encode_jsonl(event, &mut self.line);
        match &mut self.output {
            JsonlOutput::Plain(output) => output.write_all(&self.line)?,
            JsonlOutput::Gzip(output) => output.write_all(&self.line)?,
        }
        Ok(self.line.len() as u64)
    }

    fn pause(&mut self) -> Result<(), OutputError> {
        if let JsonlOutput::Plain(output) = &mut self.output {
            output.flush()?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>, _deadline: Instant) -> Result<(), OutputError> {
        match self.output {
            JsonlOutput::Plain(mut output) => output.flush()?,
            JsonlOutput::Gzip(output) => output.finish()?.flush()?,
        }
        Ok(())
    }
}

/// An Avro object container file.
pub struct AvroSink<W: Write> {
    writer: AvroFileWriter<W>,
    record: Vec<u8>,
    encoder: ConfluentEncoder,
}

impl<W: Write> AvroSink<W> {
    /// Starts a container file with the run's sync marker.
    pub fn new(output: W, marker: [u8; 16]) -> Result<AvroSink<W>, OutputError> {
        Ok(AvroSink {
            writer: AvroFileWriter::new(output, marker)?,
            record: Vec::with_capacity(512),
            encoder: ConfluentEncoder::new(0)?,
        })
    }
}

impl<W: Write> Sink for AvroSink<W> {
    fn send(&mut self, event: &ApiEvent, _deadline: Instant) -> Result<u64, OutputError> {
        self.writer.append(event)?;
        // The writer reports bytes only when it writes a block, so the record is sized by
        // encoding it alone, less the 5 bytes of the Confluent header.
        self.encoder.encode(event, &mut self.record)?;
        Ok(self.record.len() as u64 - 5)
    }

    fn pause(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(self: Box<Self>, _deadline: Instant) -> Result<(), OutputError> {
        self.writer.finish()?.flush()?;
        Ok(())
    }
}

/// Delivery counts of a producer.
#[derive(Default)]
struct Acks {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct AckContext {
    acks: Arc<Acks>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.acks.delivered,
            Err(_) => &self.acks.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The encoding of Kafka message payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaEncoding {
    /// One native JSON object per message, without the newline.
    Json,
    /// Avro in Confluent's wire format with this schema registry id.
    ConfluentAvro {
        /// The schema registry id written into every message.
        schema_id: u32,
    },
}

/// A Kafka topic. Messages are keyed by client, so one client's events stay in order on one
/// partition.
pub struct KafkaSink {
    producer: ThreadedProducer<AckContext>,
    acks: Arc<Acks>,
    topic: String,
    encoding: KafkaEncoding,
    confluent: ConfluentEncoder,
    payload: Vec<u8>,
    sent: u64,
}

impl KafkaSink {
    /// Creates a producer for `brokers`, a comma-separated list of `host:port`.
    pub fn new(
        brokers: &str,
        topic: &str,
        encoding: KafkaEncoding,
    ) -> Result<KafkaSink, OutputError> {
        let acks = Arc::new(Acks::default());
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", "feedloop-gen")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .create_with_context(AckContext { acks: acks.clone() })
            .map_err(OutputError::Kafka)?;
        let schema_id = match encoding {
            KafkaEncoding::ConfluentAvro { schema_id } => schema_id,
            KafkaEncoding::Json => 0,
        };
        Ok(KafkaSink {
            producer,
            acks,
            topic: topic.to_string(),
            encoding,
            confluent: ConfluentEncoder::new(schema_id)?,
            payload: Vec::with_capacity(1_024),
            sent: 0,
        })
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, event: &ApiEvent, deadline: Instant) -> Result<u64, OutputError> {
        match self.encoding {
            KafkaEncoding::Json => {
                self.payload.clear();
                encode_jsonl(event, &mut self.payload);
                self.payload.pop();
            }
            KafkaEncoding::ConfluentAvro { .. } => {
                self.confluent.encode(event, &mut self.payload)?
            }
        }
        loop {
            let record = BaseRecord::to(&self.topic)
                .key(event.client.as_bytes())
                .payload(&self.payload);
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if Instant::now() >= deadline {
                        return Err(OutputError::TimedOut { events: self.sent });
                    }
                    thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((err, _)) => return Err(OutputError::Kafka(err)),
            }
        }
        self.sent += 1;
        Ok(self.payload.len() as u64)
    }

    fn pause(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(self: Box<Self>, deadline: Instant) -> Result<(), OutputError> {
        let left = deadline.saturating_duration_since(Instant::now());
        // A flush that times out leaves the count short, which the check below reports.
        let _ = self.producer.flush(left);
        let delivered = self.acks.delivered.load(Ordering::Relaxed);
        if delivered != self.sent {
            return Err(OutputError::Undelivered {
                sent: self.sent,
                delivered,
                failed: self.acks.failed.load(Ordering::Relaxed),
            });
        }
        Ok(())
    }
}
