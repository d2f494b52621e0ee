//! The Kafka source: every partition of a topic, spread over the workers.
//!
//! Each worker opens one `BaseConsumer`, assigns itself the partitions whose index it owns
//! (partition `p` goes to worker `p % workers`) and splits each into its own queue, so each
//! partition is one [`PartitionReader`] with its own watermark. The consumer joins the
//! configured group id but does not commit offsets: offsets may be committed only once the
//! effects of the events before them are durable, and nothing downstream is durable yet, so a
//! restart re-reads from the configured start.
//!
//! A partition that has reached the end of its log and stays there for `idle_timeout` reports
//! itself idle, so a quiet partition does not hold every window open. With `stop_at_end`, each
//! partition finishes once it has read up to the high watermark it had when the run started,
//! which turns a topic into a bounded input for replays and tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;

use feedloop_pipeline::{DeadLetter, PartitionReader, Position, ReadBatch, ReadStatus, Reason};
use feedloop_rules::HumanDuration;

use crate::decode::{Decoder, Format, JsonMapping};
use crate::source::FormatConfig;

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
    /// Record layout; `auto` is read as JSON Lines with the default mapping.
    #[serde(default)]
    pub format: FormatConfig,
    /// Where to start: `earliest`, `latest`, or `committed` (the group's offsets, else earliest).
    #[serde(default)]
    pub start: StartFrom,
    /// Finish each partition at the high watermark it had when the run started.
    #[serde(default)]
    pub stop_at_end: bool,
    /// How long a caught-up partition waits before it stops holding the watermark.
    #[serde(default = "default_idle")]
    pub idle_timeout: HumanDuration,
    /// Extra librdkafka properties, such as `security.protocol`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn default_group() -> String {
    "feedloop".to_string()
}

fn default_idle() -> HumanDuration {
    HumanDuration(5_000)
}

/// Where a partition starts reading.
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
    Client { brokers: String, source: KafkaError },
    #[error("failed to read metadata of topic `{topic}` from {brokers}: {source}; check that the broker is reachable and the topic exists")]
    Metadata { topic: String, brokers: String, source: KafkaError },
    #[error("topic `{topic}` was not found on {brokers}; create it or fix `topic`")]
    NoTopic { topic: String, brokers: String },
    #[error("failed to assign partitions of `{topic}`: {source}")]
    Assign { topic: String, source: KafkaError },
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns the topic's partition ids, sorted.
pub fn partitions(config: &KafkaConfig) -> Result<Vec<i32>, KafkaSourceError> {
    let consumer: BaseConsumer = client_config(config).create().map_err(|source| {
        KafkaSourceError::Client { brokers: config.brokers.clone(), source }
    })?;
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), METADATA_TIMEOUT)
        .map_err(|source| KafkaSourceError::Metadata {
            topic: config.topic.clone(),
            brokers: config.brokers.clone(),
            source,
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
        .set("auto.offset.reset", if config.start == StartFrom::Latest { "latest" } else { "earliest" })
        .set("fetch.queue.backoff.ms", "10");
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// Opens one consumer that reads the given partitions, one reader each.
pub fn open(
    config: &KafkaConfig,
    mine: &[i32],
) -> Result<Vec<KafkaPartitionReader>, KafkaSourceError> {
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let consumer: Arc<BaseConsumer> = Arc::new(client_config(config).create().map_err(
        |source| KafkaSourceError::Client { brokers: config.brokers.clone(), source },
    )?);

    let offset = match config.start {
        StartFrom::Earliest => Offset::Beginning,
        StartFrom::Latest => Offset::End,
        StartFrom::Committed => Offset::Stored,
    };
    let mut assignment = TopicPartitionList::new();
    for p in mine {
        assignment
            .add_partition_offset(&config.topic, *p, offset)
            .map_err(|source| KafkaSourceError::Assign { topic: config.topic.clone(), source })?;
    }
    consumer
        .assign(&assignment)
        .map_err(|source| KafkaSourceError::Assign { topic: config.topic.clone(), source })?;

    let format = config.format.fixed().unwrap_or(Format::Json(JsonMapping::default()));
    let mut readers = Vec::with_capacity(mine.len());
    for &p in mine {
        let queue = consumer
            .split_partition_queue(&config.topic, p)
            .expect("the topic name has no NUL byte and the partition is assigned");
        let end = if config.stop_at_end {
            let (_, high) = consumer.fetch_watermarks(&config.topic, p, METADATA_TIMEOUT).map_err(
                |source| KafkaSourceError::Metadata {
                    topic: config.topic.clone(),
                    brokers: config.brokers.clone(),
                    source,
                },
            )?;
            Some(high)
        } else {
            None
        };
        readers.push(KafkaPartitionReader {
            name: format!("kafka:{}/{p}", config.topic),
            consumer: consumer.clone(),
            queue,
            partition: p,
            decoder: Decoder::new(format.clone()),
            end,
            next_offset: None,
            caught_up_since: None,
            idle_timeout: Duration::from_millis(config.idle_timeout.as_millis()),
        });
    }
    Ok(readers)
}

/// One Kafka partition as a partition of the dataflow's input.
pub struct KafkaPartitionReader {
    name: String,
    consumer: Arc<BaseConsumer>,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<rdkafka::consumer::DefaultConsumerContext>,
    partition: i32,
    decoder: Decoder,
    /// With `stop_at_end`: the offset at which the partition finishes.
    end: Option<i64>,
    /// The offset after the last message read.
    next_offset: Option<i64>,
    caught_up_since: Option<Instant>,
    idle_timeout: Duration,
}

impl KafkaPartitionReader {
    fn reached_end(&self) -> bool {
        match self.end {
            Some(end) => end <= 0 || self.next_offset.is_some_and(|next| next >= end),
            None => false,
        }
    }
}

impl PartitionReader for KafkaPartitionReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, max: usize, batch: &mut ReadBatch) -> ReadStatus {
        // Serve the consumer's own queue (errors, statistics); messages arrive on `queue`.
        if let Some(Err(err)) = self.consumer.poll(Duration::ZERO) {
            tracing::warn!(source = %self.name, error = %err, "Kafka consumer error");
        }
        if self.reached_end() {
            return ReadStatus::Finished;
        }

        let mut taken = 0;
        let mut wait = Duration::from_millis(10);
        while taken < max {
            match self.queue.poll(wait) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.caught_up_since.get_or_insert_with(Instant::now);
                    break;
                }
                Some(Err(err)) => {
                    tracing::warn!(source = %self.name, error = %err, "failed to fetch from Kafka; retrying");
                    break;
                }
                Some(Ok(message)) => {
                    wait = Duration::ZERO;
                    self.caught_up_since = None;
                    taken += 1;
                    batch.records += 1;
                    let offset = message.offset();
                    self.next_offset = Some(offset + 1);
                    let position = Position::Offset { partition: self.partition, offset };
                    let payload = message.payload().unwrap_or_default();
                    match self.decoder.decode(payload) {
                        Ok(event) => batch.events.push((event, position)),
                        Err(err) => batch.dead_letters.push(DeadLetter::new(
                            &self.name,
                            position,
                            Reason::Decode,
                            err.to_string(),
                            payload,
                        )),
                    }
                    if self.reached_end() {
                        return ReadStatus::Finished;
                    }
                }
            }
        }
        if taken > 0 {
            return ReadStatus::Ready;
        }
        match self.caught_up_since {
            Some(since) if since.elapsed() >= self.idle_timeout => ReadStatus::Idle,
            _ => ReadStatus::Pending,
        }
    }
}
