//! The producer side of a latency run: steady background traffic and attack bursts.
//!
//! Background events are the generator's normal traffic with the event time replaced by the
//! wall clock at the moment each is handed to the producer, keyed by client. A burst is one
//! new client sending [`BURST_SIZE`] failed logins back to back. The last of them is the one
//! that crosses the rules' threshold, and its delivery report is timed by the producer's
//! polling thread the moment librdkafka hands it over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use feedloop_bench::gen::{encode_jsonl, Generator, GeneratorConfig};
use feedloop_rules::ApiEvent;

/// Failed logins in one burst: the threshold of both rules the benchmark times.
pub const BURST_SIZE: usize = 10;

/// Maximum background events sent in one call, so a stalled loop catches up in steps.
const MAX_CATCH_UP: u64 = 10_000;

/// Maximum wait for room in the producer's queue.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(5);

/// librdkafka's `message.timeout.ms`: the time it keeps trying to deliver a message before it
/// reports a failure.
const MESSAGE_TIMEOUT_MS: &str = "10000";

/// Delivery reports: counts of every message, and the time of each marked one.
#[derive(Default)]
struct Acks {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Mark to the instant its delivery report arrived, or the delivery error.
    marked: Mutex<HashMap<usize, Result<Instant, String>>>,
}

/// The producer context that records delivery reports. The opaque value of a message is its
/// mark, or 0 for messages that are only counted.
struct AckContext {
    acks: Arc<Acks>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, mark: usize) {
        let now = Instant::now();
        let outcome = match result {
            Ok(_) => {
                self.acks.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(now)
            }
            Err((err, _)) => {
                self.acks.failed.fetch_add(1, Ordering::Relaxed);
                Err(err.to_string())
            }
        };
        if mark != 0 {
            self.acks
                .marked
                .lock()
                .expect("no thread panics while holding the delivery marks")
                .insert(mark, outcome);
        }
    }
}

/// Record of one sent burst.
#[derive(Clone, Copy, Debug)]
pub struct SentBurst {
    /// When the crossing event was handed to the producer.
    pub handed: Instant,
    /// Event time of the first event, ms since the epoch.
    pub first_time_ms: i64,
    /// Event time of the crossing event, ms since the epoch.
    pub crossing_time_ms: i64,
}

/// Producer counts at the end of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProducerCounts {
    /// Background events handed to the producer.
    pub background: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages that failed to be delivered.
    pub failed: u64,
}

/// The producer and the background traffic it sends.
pub struct Traffic {
    producer: ThreadedProducer<AckContext>,
    acks: Arc<Acks>,
    topic: String,
    generator: Generator,
    rate: f64,
    started: Instant,
    background: u64,
    line: Vec<u8>,
}

impl Traffic {
    /// Creates the producer. The background rate is counted from this moment.
    pub fn new(
        brokers: &str,
        topic: &str,
        rate: f64,
        seed: u64,
        linger_ms: u64,
    ) -> anyhow::Result<Traffic> {
        let acks = Arc::new(Acks::default());
        let producer: ThreadedProducer<AckContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", linger_ms.to_string())
            .set("acks", "all")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .create_with_context(AckContext { acks: acks.clone() })
            .with_context(|| format!("failed to create a Kafka producer for {brokers}"))?;
        let config = GeneratorConfig {
            seed,
            // The generator stops only at this count, and the run stops long before.
            events: u64::MAX,
            attack_share: 0.0,
            rate_per_second: rate,
            ..GeneratorConfig::default()
        };
        let generator = Generator::new(config)?;
        Ok(Traffic {
            producer,
            acks,
            topic: topic.to_string(),
            generator,
            rate,
            started: Instant::now(),
            background: 0,
            line: Vec::with_capacity(1_024),
        })
    }

    /// Sends the background events due by now at the configured rate.
    pub fn send_background(&mut self) -> anyhow::Result<()> {
        let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
        let count = due.saturating_sub(self.background).min(MAX_CATCH_UP);
        for _ in 0..count {
            let mut event = self
                .generator
                .next()
                .expect("the generator yields u64::MAX events")
                .event;
            event.time_ms = wall_clock_ms();
            self.send(&event, 0)?;
            self.background += 1;
        }
        Ok(())
    }

    /// Sends one burst of failed logins from `client`. The crossing event carries `mark`,
    /// which must not be 0.
    pub fn send_burst(&mut self, client: &str, mark: usize) -> anyhow::Result<SentBurst> {
        assert_ne!(mark, 0, "mark 0 means an unmarked message");
        let mut first_time_ms = 0;
        for index in 0..BURST_SIZE {
            let event = failed_login(client, wall_clock_ms(), mark * BURST_SIZE + index);
            if index == 0 {
                first_time_ms = event.time_ms;
            }
            if index + 1 < BURST_SIZE {
                self.send(&event, 0)?;
                continue;
            }
            let handed = Instant::now();
            self.send(&event, mark)?;
            return Ok(SentBurst {
                handed,
                first_time_ms,
                crossing_time_ms: event.time_ms,
            });
        }
        unreachable!("a burst has at least one event")
    }

    /// Returns the instant the message with `mark` was acknowledged, or its delivery error,
    /// once its delivery report has arrived.
    pub fn ack(&self, mark: usize) -> Option<Result<Instant, String>> {
        self.acks
            .marked
            .lock()
            .expect("no thread panics while holding the delivery marks")
            .get(&mark)
            .cloned()
    }

    /// Waits up to `timeout` for outstanding deliveries and returns the counts.
    pub fn finish(self, timeout: Duration) -> ProducerCounts {
        if let Err(err) = self.producer.flush(timeout) {
            eprintln!("warning: the producer did not deliver every message: {err}");
        }
        ProducerCounts {
            background: self.background,
            delivered: self.acks.delivered.load(Ordering::Relaxed),
            failed: self.acks.failed.load(Ordering::Relaxed),
        }
    }

    /// Hands one event to the producer, keyed by client, waiting while its queue is full.
    fn send(&mut self, event: &ApiEvent, mark: usize) -> anyhow::Result<()> {
        self.line.clear();
        encode_jsonl(event, &mut self.line);
        let payload = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let deadline = Instant::now() + QUEUE_FULL_TIMEOUT;
        loop {
            let record = BaseRecord::with_opaque_to(&self.topic, mark)
                .key(event.client.as_str())
                .payload(payload);
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => bail!("failed to hand an event to the producer: {err}"),
            }
        }
    }
}

/// Builds one failed login on the generator's login route, as a password-guessing tool
/// sends it. `sequence` makes the trace id unique.
fn failed_login(client: &str, time_ms: i64, sequence: usize) -> ApiEvent {
    ApiEvent {
        time_ms,
        service: "accounts".to_string(),
        method: "POST".to_string(),
        route: "/v1/auth/login".to_string(),
        path: "/v1/auth/login".to_string(),
        status: Some(401),
        latency_ms: Some(182.0),
        request_bytes: Some(240),
        response_bytes: Some(96),
        client: client.to_string(),
        user_agent: Some("python-requests/2.31.0".to_string()),
        trace_id: Some(format!("{sequence:032x}")),
        labels: vec![
            ("deployment".to_string(), "stable".to_string()),
            ("env".to_string(), "prod".to_string()),
            ("region".to_string(), "eu-west-1".to_string()),
        ],
        ..ApiEvent::default()
    }
}

/// Returns the wall clock in milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    use feedloop_connectors::decode::{Decoder, Format, JsonMapping};

    #[test]
    fn failed_login_decodes_as_sent() {
        let event = failed_login("203.0.113.7", 1_748_851_200_123, 3);
        let mut line = Vec::new();
        encode_jsonl(&event, &mut line);
        let decoder = Decoder::new(Format::Json(JsonMapping::default()));
        let decoded = decoder.decode(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(decoded.client, "203.0.113.7");
        assert_eq!(decoded.status, Some(401));
        assert_eq!(decoded.time_ms, 1_748_851_200_123);
        assert_eq!(decoded.route, "/v1/auth/login");
    }
}
