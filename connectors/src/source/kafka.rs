//! The Kafka source: every partition of a topic, spread over the workers.
//!
//! Each worker opens one `BaseConsumer` and assigns it the partitions dealt to that worker.
//! Every partition is one [`PartitionReader`] with its own watermark; the readers share the
//! consumer, and whichever reader polls it sorts the messages into per-partition buffers, so
//! each partition's messages stay in offset order. A partition whose buffer fills up is paused
//! at the broker until its reader catches up, which bounds memory when the driver reads one
//! partition while another races ahead. (librdkafka's per-partition queues were not used:
//! messages fetched between `assign` and splitting a queue off arrive on the main queue, and
//! ordering them against the split queue is not possible.) The consumer joins the
//! configured group id but does not commit offsets: offsets may be committed only once the
//! effects of the events before them are durable, and nothing downstream is durable yet, so a
//! restart re-reads from the configured start.
//!
//! A partition that has reached the end of its log and stays there for `idle_timeout` reports
//! itself idle, so a quiet partition does not hold every window open. With `stop_at_end`, each
//! partition finishes the first time it has caught up with the end of its log, which turns a
//! topic into a bounded input for replays and tests. The end is the one the broker reports in
//! its fetch responses; the high watermark from a separate offsets request is not used,
//! because tansu 0.6 answers that request with the base offset of the last record batch.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Deserializer};

use feedloop_pipeline::{DeadLetter, PartitionReader, Position, ReadBatch, ReadStatus, Reason};
use feedloop_rules::{ApiEvent, HumanDuration};

use crate::decode::avro::{api_event_schema, load_schema, ConfluentDecoder, RecordDecoder};
use crate::decode::{DecodeError, Decoder, Format, JsonMapping};
use crate::source::{binary_dead_letter, FormatConfig};

/// Settings of a Kafka source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, such as `127.0.0.1:9092`.
    pub brokers: String,
    /// The topic to read; every partition is read.
    pub topic: String,
    /// Consumer group id.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Record layout; `auto` is read as JSON Lines with the default mapping, and `avro` as
    /// Avro records in Confluent's wire format.
    #[serde(default)]
    pub format: FormatConfig,
    /// The writer schema and schema ids of `format: avro`.
    #[serde(default)]
    pub avro: Option<AvroConfig>,
    /// The start position: `earliest`, `latest`, or `committed` (the group's offsets, else
    /// earliest).
    #[serde(default)]
    pub start: StartFrom,
    /// Finish each partition once it has caught up with the end of its log.
    #[serde(default)]
    pub stop_at_end: bool,
    /// How long a caught-up partition waits before it stops holding the watermark.
    #[serde(default = "default_idle")]
    pub idle_timeout: HumanDuration,
    /// Extra librdkafka properties, such as `security.protocol`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Settings of Avro messages in Confluent's wire format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvroConfig {
    /// The writer schema file (`.avsc`) of every accepted message; omitted means feedloop's
    /// own `schema/api-event.avsc`.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// The schema registry ids to accept, one or a list; omitted means any id. A message with
    /// another id is dead-lettered.
    #[serde(default, deserialize_with = "one_or_many")]
    pub schema_ids: Option<Vec<u32>>,
}

/// Reads a number or a list of numbers.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u32>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "a schema id or a list of schema ids, such as 1 or [1, 7]"
    )]
    enum OneOrMany {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(id) => Some(vec![id]),
        OneOrMany::Many(ids) => Some(ids),
    })
}

/// The decoder of a Kafka source's message payloads.
#[derive(Clone, Debug)]
pub enum PayloadDecoder {
    /// One record of text per message, as a line of a file.
    Text(Decoder),
    /// One Avro record in Confluent's wire format per message.
    ConfluentAvro(Arc<ConfluentDecoder>),
}

impl KafkaConfig {
    /// Builds the payload decoder, reading the Avro schema file for `format: avro`. The error
    /// names the setting or file at fault.
    pub fn payload_decoder(&self) -> Result<PayloadDecoder, String> {
        let topic = &self.topic;
        if self.format != FormatConfig::Avro {
            if self.avro.is_some() {
                return Err(format!(
                    "Kafka source `{topic}` has `avro` settings but format {:?}; set `format: \
                     avro` or remove `avro`",
                    self.format
                ));
            }
            let format = self
                .format
                .fixed()
                .unwrap_or(Format::Json(JsonMapping::default()));
            return Ok(PayloadDecoder::Text(Decoder::new(format)));
        }

        let avro = self.avro.clone().unwrap_or_default();
        let (schema, schema_name) = match &avro.schema {
            Some(path) => (load_schema(path)?, format!("schema {}", path.display())),
            None => (
                api_event_schema(),
                "feedloop's schema/api-event.avsc".to_string(),
            ),
        };
        let records = RecordDecoder::new(schema)
            .map_err(|reason| format!("Avro {schema_name} cannot be read as events: {reason}"))?;
        if avro.schema_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "Kafka source `{topic}` has an empty avro.schema_ids, so it would reject every \
                 message; list the ids to accept, or remove the key to accept any id"
            ));
        }
        Ok(PayloadDecoder::ConfluentAvro(Arc::new(
            ConfluentDecoder::new(records, avro.schema_ids, schema_name),
        )))
    }
}

fn default_group() -> String {
    "feedloop".to_string()
}

fn default_idle() -> HumanDuration {
    HumanDuration(5_000)
}

/// The position a partition starts reading at.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    Latest,
    #[default]
    Committed,
}

/// A Kafka source that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("failed to create Kafka consumer for {brokers}: {source}")]
    Client {
        brokers: String,
        source: Box<KafkaError>,
    },
    #[error("failed to read metadata of topic `{topic}` from {brokers}: {source}; check that the broker is reachable and the topic exists")]
    Metadata {
        topic: String,
        brokers: String,
        source: Box<KafkaError>,
    },
    #[error("topic `{topic}` was not found on {brokers}; create it or fix `topic`")]
    NoTopic { topic: String, brokers: String },
    #[error("{reason}")]
    Format { reason: String },
    #[error("failed to assign partitions of `{topic}`: {source}")]
    Assign {
        topic: String,
        source: Box<KafkaError>,
    },
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns the topic's partition ids, sorted.
pub fn partitions(config: &KafkaConfig) -> Result<Vec<i32>, KafkaSourceError> {
    let consumer: BaseConsumer =
        client_config(config)
            .create()
            .map_err(|source| KafkaSourceError::Client {
                brokers: config.brokers.clone(),
                source: Box::new(source),
            })?;
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), METADATA_TIMEOUT)
        .map_err(|source| KafkaSourceError::Metadata {
            topic: config.topic.clone(),
            brokers: config.brokers.clone(),
            source: Box::new(source),
        })?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| KafkaSourceError::NoTopic {
            topic: config.topic.clone(),
            brokers: config.brokers.clone(),
        })?;
    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            if config.start == StartFrom::Latest {
                "latest"
            } else {
                "earliest"
            },
        )
        .set("fetch.queue.backoff.ms", "10")
        // librdkafka's default of 500 ms lets a broker hold a fetch that long; tansu 0.6
        // holds every fetch for part of it even when records are ready, which alone would
        // use half of the one-second budget for findings. `properties` can override it.
        .set("fetch.wait.max.ms", "100");
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// Messages buffered per partition before the partition is paused at the broker.
const BUFFER_PAUSE: usize = 8_192;

/// Opens one consumer that reads the given partitions, one reader each.
pub fn open(
    config: &KafkaConfig,
    mine: &[i32],
) -> Result<Vec<KafkaPartitionReader>, KafkaSourceError> {
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let consumer: BaseConsumer =
        client_config(config)
            .create()
            .map_err(|source| KafkaSourceError::Client {
                brokers: config.brokers.clone(),
                source: Box::new(source),
            })?;

    let offset = match config.start {
        StartFrom::Earliest => Offset::Beginning,
        StartFrom::Latest => Offset::End,
        StartFrom::Committed => Offset::Stored,
    };
    let mut assignment = TopicPartitionList::new();
    for p in mine {
        assignment
            .add_partition_offset(&config.topic, *p, offset)
            .map_err(|source| KafkaSourceError::Assign {
                topic: config.topic.clone(),
                source: Box::new(source),
            })?;
    }
    consumer
        .assign(&assignment)
        .map_err(|source| KafkaSourceError::Assign {
            topic: config.topic.clone(),
            source: Box::new(source),
        })?;

    let shared = Arc::new(Mutex::new(Shared {
        consumer,
        topic: config.topic.clone(),
        buffers: mine.iter().map(|p| (*p, Buffer::default())).collect(),
    }));
    let decoder = config
        .payload_decoder()
        .map_err(|reason| KafkaSourceError::Format { reason })?;
    Ok(mine
        .iter()
        .map(|&p| KafkaPartitionReader {
            name: format!("kafka:{}/{p}", config.topic),
            shared: shared.clone(),
            partition: p,
            decoder: decoder.clone(),
            stop_at_end: config.stop_at_end,
            finished: false,
            caught_up_since: None,
            idle_timeout: Duration::from_millis(config.idle_timeout.as_millis()),
        })
        .collect())
}

/// The consumer of one worker and the messages it fetched, by partition.
struct Shared {
    consumer: BaseConsumer,
    topic: String,
    buffers: HashMap<i32, Buffer>,
}

#[derive(Default)]
struct Buffer {
    messages: VecDeque<OwnedMessage>,
    /// True when the partition reported the end of its log after the last buffered message.
    at_end: bool,
    paused: bool,
}

impl Shared {
    /// Polls the consumer until `partition` has `want` messages buffered or nothing arrives
    /// within `wait`, sorting every message into its partition's buffer.
    fn pump(&mut self, partition: i32, want: usize, mut wait: Duration) {
        while self
            .buffers
            .get(&partition)
            .is_some_and(|b| b.messages.len() < want)
        {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    wait = Duration::ZERO;
                    let p = message.partition();
                    if let Some(buffer) = self.buffers.get_mut(&p) {
                        buffer.at_end = false;
                        buffer.messages.push_back(message.detach());
                    }
                    self.pause_if_full(p);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(buffer) = self.buffers.get_mut(&p) {
                        buffer.at_end = true;
                    }
                    if p == partition {
                        break;
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(topic = %self.topic, error = %err, "Kafka consumer error; retrying");
                    break;
                }
            }
        }
    }

    fn pause_if_full(&mut self, partition: i32) {
        let full = self
            .buffers
            .get(&partition)
            .is_some_and(|b| b.messages.len() >= BUFFER_PAUSE);
        if full {
            self.set_paused(partition, true);
        }
    }

    fn resume_if_drained(&mut self, partition: i32) {
        let drained = self
            .buffers
            .get(&partition)
            .is_some_and(|b| b.messages.len() <= BUFFER_PAUSE / 2);
        if drained {
            self.set_paused(partition, false);
        }
    }

    /// Pauses or resumes fetching a partition at the broker, unless it already is so.
    fn set_paused(&mut self, partition: i32, paused: bool) {
        let Some(buffer) = self.buffers.get_mut(&partition) else {
            return;
        };
        if buffer.paused == paused {
            return;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        match result {
            Ok(()) => buffer.paused = paused,
            Err(err) => {
                tracing::warn!(topic = %self.topic, partition, paused, error = %err, "failed to pause or resume Kafka partition")
            }
        }
    }
}

/// One Kafka partition as a partition of the dataflow's input.
pub struct KafkaPartitionReader {
    name: String,
    shared: Arc<Mutex<Shared>>,
    partition: i32,
    decoder: PayloadDecoder,
    /// Finish at the first end of the log.
    stop_at_end: bool,
    finished: bool,
    caught_up_since: Option<Instant>,
    idle_timeout: Duration,
}

impl KafkaPartitionReader {
    /// Decodes messages into the batch.
    fn decode_all(&self, messages: &[OwnedMessage], batch: &mut ReadBatch) {
        match &self.decoder {
            PayloadDecoder::Text(decoder) => {
                for message in messages {
                    self.decode(message, batch, false, |payload| decoder.decode(payload));
                }
            }
            PayloadDecoder::ConfluentAvro(decoder) => {
                for message in messages {
                    self.decode(message, batch, true, |payload| decoder.decode(payload));
                }
            }
        }
    }

    /// Decodes one message. A `binary` payload's dead letter keeps its bytes in base64.
    fn decode(
        &self,
        message: &OwnedMessage,
        batch: &mut ReadBatch,
        binary: bool,
        decode: impl FnOnce(&[u8]) -> Result<ApiEvent, DecodeError>,
    ) {
        batch.records += 1;
        let offset = message.offset();
        let position = Position::Offset {
            partition: self.partition,
            offset,
        };
        let payload = message.payload().unwrap_or_default();
        match decode(payload) {
            Ok(event) => batch.events.push((event, position)),
            Err(err) if binary => batch.dead_letters.push(binary_dead_letter(
                &self.name,
                position,
                err.to_string(),
                payload,
            )),
            Err(err) => batch.dead_letters.push(DeadLetter::new(
                &self.name,
                position,
                Reason::Decode,
                err.to_string(),
                payload,
            )),
        }
    }
}

impl PartitionReader for KafkaPartitionReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus {
        if self.finished {
            return ReadStatus::Finished;
        }
        let shared = self.shared.clone();
        let mut shared = shared
            .lock()
            .expect("no reader panics while holding the consumer");
        shared.pump(self.partition, max, Duration::from_millis(10));

        let taken;
        let at_end;
        {
            let buffer = shared
                .buffers
                .get_mut(&self.partition)
                .expect("every reader has a buffer");
            let messages: Vec<OwnedMessage> = buffer
                .messages
                .drain(..buffer.messages.len().min(max))
                .collect();
            at_end = buffer.at_end && buffer.messages.is_empty();
            taken = messages.len();
            self.decode_all(&messages, batch);
        }
        shared.resume_if_drained(self.partition);
        drop(shared);

        if at_end && self.stop_at_end {
            self.finished = true;
            return if taken > 0 {
                ReadStatus::Ready
            } else {
                ReadStatus::Finished
            };
        }
        if taken > 0 {
            self.caught_up_since = None;
            return ReadStatus::Ready;
        }
        if at_end {
            let since = *self.caught_up_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.idle_timeout {
                return ReadStatus::Idle;
            }
        }
        ReadStatus::Pending
    }
}
