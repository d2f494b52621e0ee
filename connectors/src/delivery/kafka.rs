//! The Kafka receiver: each finding change as one message on a findings topic.
//!
//! The message key is the notice key (the finding's fingerprint). While the topic's partition
//! count stays the same, every change of one finding lands on the same partition, so a consumer
//! reads them in order. Keys are partitioned with `murmur2_random`, as Java clients do, so
//! Kafka Streams and other Java consumers find a key where they expect it.
//!
//! The value is a JSON object with `change`, `change_id`, `key`, the rendered `title`, the
//! redacted `findings` and, for a grouped notice, `group`. The headers `feedloop-change` and
//! `feedloop-change-id` repeat the change kind and id, so a consumer can filter without parsing
//! the value. The remote id is `topic/partition/offset` of the key's first message, and the
//! remote's `last` entry keeps the latest message's position.
//!
//! `apply` returns only after the broker acknowledged the message with `acks=all`, so the
//! change is durable when the engine records it. With `enable.idempotence`, librdkafka 2.12
//! writes each message exactly once and in produce order despite its own retries. Delivery
//! across failures is still at least once. A message whose acknowledgement timed out may have
//! been written, and so may a message written just before a crash that kept the engine from
//! recording it. The engine then sends the change again, so consumers drop repeats by the
//! `feedloop-change-id` header. `recover` finds nothing, because finding a change again means
//! reading its partition back, which costs more than the repeat it saves.
//!
//! Every change is written, because a topic is an append-only log. The exception is the rule
//! every receiver follows: a resolve for a key that never had a message, or whose last change
//! was already a resolve, is skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::Deserialize;
use serde_json::{json, Value};

use feedloop_rules::HumanDuration;

use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering};

/// The default time to wait for the broker to acknowledge a message.
const DEFAULT_TIMEOUT: HumanDuration = HumanDuration(30_000);

/// Extra wait for librdkafka's report after its own `message.timeout.ms` has passed.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// The header with the change kind, such as `opened`.
pub const CHANGE_HEADER: &str = "feedloop-change";

/// The header with the change id, by which consumers drop repeats.
pub const CHANGE_ID_HEADER: &str = "feedloop-change-id";

/// The key of the remote's `extra` entry with the latest message's `topic/partition/offset`.
pub const LAST_EXTRA: &str = "last";

/// librdkafka properties the receiver sets itself, with what to do instead.
const OWN_PROPERTIES: [(&str, &str); 6] = [
    ("bootstrap.servers", "set `brokers` instead"),
    (
        "enable.idempotence",
        "remove it, because the receiver always enables it",
    ),
    (
        "acks",
        "remove it, because the idempotent producer needs `all`",
    ),
    (
        "request.required.acks",
        "remove it, because the idempotent producer needs `all`",
    ),
    ("message.timeout.ms", "set `timeout` instead"),
    ("delivery.timeout.ms", "set `timeout` instead"),
];

/// Settings of a Kafka receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, such as `127.0.0.1:9092`.
    pub brokers: String,
    /// The topic findings are written to; it must exist unless the broker creates topics.
    pub topic: String,
    /// Extra librdkafka properties, such as `security.protocol` or `compression.type`. They
    /// may replace the receiver's `partitioner`, but not the properties it needs itself.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How long a message may take until the broker acknowledges it, retries included
    /// (librdkafka's `message.timeout.ms`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Template of the value's `title` field.
    #[serde(default = "default_title")]
    pub title: String,
    /// The redaction policy for the findings' groups and evidence.
    #[serde(default)]
    pub redaction: Redaction,
}

fn default_timeout() -> HumanDuration {
    DEFAULT_TIMEOUT
}

fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}

/// The outcome of one message's delivery: its partition and offset, or the error.
type Report = Result<(i32, i64), KafkaError>;

/// The producer's context: stores each delivery report under the message's sequence number.
#[derive(Default)]
struct Reports {
    reports: Mutex<HashMap<usize, Report>>,
}

impl Reports {
    /// Removes and returns a message's report, dropping the reports of earlier messages that
    /// arrived after their `apply` gave up waiting.
    fn take(&self, sequence: usize) -> Option<Report> {
        let mut reports = self
            .reports
            .lock()
            .expect("the reports lock is never poisoned");
        let report = reports.remove(&sequence);
        reports.retain(|&other, _| other > sequence);
        report
    }
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        let report = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((err, _)) => Err(err.clone()),
        };
        self.reports
            .lock()
            .expect("the reports lock is never poisoned")
            .insert(sequence, report);
    }
}

/// Writes finding changes to one Kafka topic.
pub struct KafkaReceiver {
    name: String,
    brokers: String,
    topic: String,
    client_config: ClientConfig,
    /// Made again after a fatal error, which leaves a producer unusable.
    producer: Option<BaseProducer<Reports>>,
    wait: Duration,
    title: Template,
    default_title: Template,
    redaction: Redaction,
    sequence: usize,
}

impl fmt::Debug for KafkaReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaReceiver")
            .field("name", &self.name)
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaReceiver {
    /// Checks the settings, parses the template and creates the producer, which connects to
    /// the brokers in the background.
    pub fn new(name: &str, config: &KafkaConfig) -> Result<Self, String> {
        let fail = |field: &str, err: String| format!("kafka receiver `{name}`: {field}: {err}");
        if config.brokers.trim().is_empty() {
            return Err(fail(
                "brokers",
                "missing: list bootstrap servers, such as `127.0.0.1:9092`".into(),
            ));
        }
        if config.topic.trim().is_empty() {
            return Err(fail(
                "topic",
                "missing: name the findings topic, such as `findings`".into(),
            ));
        }
        if config.timeout.as_millis() == 0 || config.timeout.as_millis() > i32::MAX as u64 {
            return Err(fail(
                "timeout",
                format!(
                    "invalid duration {}: use more than 0 and at most 24d, such as 30s",
                    config.timeout
                ),
            ));
        }
        for (property, instead) in OWN_PROPERTIES {
            if config.properties.contains_key(property) {
                return Err(fail(
                    "properties",
                    format!("`{property}` is set by the receiver; {instead}"),
                ));
            }
        }
        let title = Template::parse(&config.title).map_err(|err| fail("title", err))?;
        let client_config = client_config(config);
        let producer = client_config
            .create_with_context(Reports::default())
            .map_err(|err| {
                fail(
                    "properties",
                    format!("failed to create the Kafka producer: {err}"),
                )
            })?;
        Ok(KafkaReceiver {
            name: name.to_string(),
            brokers: config.brokers.clone(),
            topic: config.topic.clone(),
            client_config,
            producer: Some(producer),
            wait: Duration::from_millis(config.timeout.as_millis()) + REPORT_GRACE,
            title,
            default_title: Template::parse(render::DEFAULT_TITLE)
                .expect("the default title names known fields only"),
            redaction: config.redaction,
            sequence: 0,
        })
    }

    /// Returns the message value for a notice.
    pub fn value(
        &self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Value {
        let notice = self.redaction.apply_notice(notice);
        let mut value = json!({
            "change": notice.kind.as_str(),
            "change_id": notice.change_id,
            "key": notice.key,
        });
        match rendering {
            Rendering::Full => {
                value["title"] = Value::String(self.title_text(&notice, progress));
                value["findings"] = json!(notice.findings);
                if let Some(group) = &notice.group {
                    value["group"] = json!(group);
                }
            }
            Rendering::Minimal => {
                value["title"] = Value::String(notice.finding().title.clone());
                value["findings"] = notice
                    .findings
                    .iter()
                    .map(|f| {
                        json!({
                            "rule_id": f.rule_id,
                            "title": f.title,
                            "severity": f.severity,
                            "fingerprint": f.fingerprint,
                        })
                    })
                    .collect();
                value["minimal"] = Value::Bool(true);
            }
        }
        value
    }

    fn title_text(&self, notice: &Notice, progress: &mut dyn Progress) -> String {
        match self.title.render(notice) {
            Ok(text) => text,
            Err(reason) => {
                progress.render_failed(&format!("receiver `{}`: title: {reason}", self.name));
                self.default_title
                    .render(notice)
                    .unwrap_or_else(|_| notice.finding().title.clone())
            }
        }
    }

    /// Writes one message and waits for its delivery report; returns its partition and offset.
    fn produce(&mut self, notice: &Notice, payload: &str) -> Result<(i32, i64), DeliveryError> {
        self.sequence += 1;
        if self.producer.is_none() {
            match self.client_config.create_with_context(Reports::default()) {
                Ok(producer) => self.producer = Some(producer),
                Err(err) => return Err(self.failure(&err)),
            }
        }
        match self.send_and_wait(notice, payload, self.sequence) {
            Ok(position) => Ok(position),
            Err(Some(err)) => Err(self.failure(&err)),
            Err(None) => Err(DeliveryError::retry(format!(
                "no delivery report for the message to Kafka topic `{}` on {}",
                self.topic, self.brokers
            ))),
        }
    }

    /// Sends one message and flushes the producer; `Err(None)` means no report came.
    fn send_and_wait(
        &self,
        notice: &Notice,
        payload: &str,
        sequence: usize,
    ) -> Result<(i32, i64), Option<KafkaError>> {
        let producer = self.producer.as_ref().expect("`produce` made the producer");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: CHANGE_HEADER,
                value: Some(notice.kind.as_str()),
            })
            .insert(Header {
                key: CHANGE_ID_HEADER,
                value: Some(notice.change_id.as_str()),
            });
        let record = BaseRecord::with_opaque_to(&self.topic, sequence)
            .key(notice.key.as_str())
            .payload(payload)
            .headers(headers);
        if let Err((err, _)) = producer.send(record) {
            return Err(Some(err));
        }
        // The flush polls the producer, which runs the delivery callback for this message.
        let flushed = producer.flush(self.wait);
        match (producer.context().take(sequence), flushed) {
            (Some(Ok(position)), _) => Ok(position),
            (Some(Err(err)), _) | (None, Err(err)) => Err(Some(err)),
            (None, Ok(())) => Err(None),
        }
    }

    /// Classes a producer error and drops a producer that a fatal error made unusable.
    fn failure(&mut self, err: &KafkaError) -> DeliveryError {
        let reason = format!(
            "failed to write to Kafka topic `{}` on {}: {err}",
            self.topic, self.brokers
        );
        let fatal = self
            .producer
            .as_ref()
            .and_then(|producer| producer.client().fatal_error());
        if let Some((code, text)) = fatal {
            tracing::warn!(receiver = %self.name, topic = %self.topic, error = %text, ?code, "Kafka producer failed fatally; making a new one");
            self.producer = None;
            return DeliveryError::retry(format!("{reason} (fatal: {text})"));
        }
        classify(
            &reason,
            &self.topic,
            &self.brokers,
            err.rdkafka_error_code(),
        )
    }
}

impl Receiver for KafkaReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        if notice.kind == ChangeKind::Resolved {
            match remote {
                None => {
                    return Ok(Effect::Skipped(
                        "no message was written for this key, so there is nothing to resolve"
                            .into(),
                    ))
                }
                Some(remote) if !remote.open => {
                    return Ok(Effect::Skipped("the finding is already resolved".into()))
                }
                Some(_) => {}
            }
        }
        let payload = self.value(notice, rendering, progress).to_string();
        let (partition, offset) = self.produce(notice, &payload)?;
        let position = format!("{}/{partition}/{offset}", self.topic);
        let open = notice.kind.leaves_open();
        let applied = match remote {
            None => {
                let created = Remote {
                    id: position.clone(),
                    url: None,
                    open,
                    extra: BTreeMap::from([(LAST_EXTRA.to_string(), position)]),
                };
                progress.created(&created);
                created
            }
            Some(remote) => {
                let mut updated = remote.clone();
                updated.open = open;
                updated.extra.insert(LAST_EXTRA.to_string(), position);
                updated
            }
        };
        Ok(Effect::Applied(applied))
    }
}

fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", config.timeout.as_millis().to_string());
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// Classes a librdkafka error code: what a later attempt can fix, and what needs a change of
/// message or configuration.
///
/// librdkafka retries transient errors itself until `message.timeout.ms`, so the errors that
/// reach here are timeouts, lost connections and permanent errors.
fn classify(
    reason: &str,
    topic: &str,
    brokers: &str,
    code: Option<RDKafkaErrorCode>,
) -> DeliveryError {
    use RDKafkaErrorCode as Code;
    match code {
        Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge) => {
            DeliveryError::Reject {
                reason: format!("{reason}; the message is larger than `message.max.bytes` allows"),
                status: None,
                response: String::new(),
                fallback: true,
            }
        }
        Some(Code::UnknownTopic | Code::UnknownTopicOrPartition | Code::UnknownPartition) => {
            DeliveryError::reject(format!(
                "Kafka topic `{topic}` was not found on {brokers}; create it or fix `topic`"
            ))
        }
        Some(
            Code::MessageTimedOut
            | Code::OperationTimedOut
            | Code::RequestTimedOut
            | Code::QueueFull
            | Code::BrokerTransportFailure
            | Code::AllBrokersDown
            | Code::Resolve
            | Code::BrokerNotAvailable
            | Code::LeaderNotAvailable
            | Code::NotLeaderForPartition
            | Code::NetworkException
            | Code::NotEnoughReplicas
            | Code::NotEnoughReplicasAfterAppend
            | Code::KafkaStorageError
            | Code::ThrottlingQuotaExceeded
            | Code::PurgeQueue
            | Code::PurgeInflight
            | Code::Retry,
        ) => DeliveryError::retry(reason),
        _ => DeliveryError::reject(reason),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::delivery::Target;

    fn notice(kind: ChangeKind) -> Notice {
        let finding = serde_json::from_value(json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["operate"],
            "tags": [],
            "group": {"client": "203.0.113.9"},
            "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
            "condition": "count >= 20",
            "count": 20,
            "first_seen": "2026-12-04T10:00:01.000Z",
            "last_seen": "2026-12-04T10:01:00.000Z",
            "evidence": []
        }))
        .unwrap();
        Notice {
            key: "0123456789abcdef0123456789abcdef".into(),
            change_id: "c1".into(),
            kind,
            findings: vec![finding],
            group: None,
            target: Target::default(),
        }
    }

    fn config(yaml: &str) -> KafkaConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    /// Binds a loopback listener for this test, so a producer that connects reaches nothing
    /// else.
    fn own_listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        (listener, address)
    }

    struct Recorder(Vec<String>);

    impl Progress for Recorder {
        fn created(&mut self, _remote: &Remote) {
            panic!("nothing is created in these tests");
        }

        fn render_failed(&mut self, reason: &str) {
            self.0.push(reason.to_string());
        }
    }

    #[test]
    fn config_defaults_and_fields() {
        let parsed = config("brokers: 127.0.0.1:9092\ntopic: findings\n");
        assert_eq!(parsed.timeout, DEFAULT_TIMEOUT);
        assert_eq!(parsed.title, render::DEFAULT_TITLE);
        assert!(parsed.properties.is_empty());
        assert_eq!(parsed.redaction, Redaction::default());
        let parsed = config(
            "brokers: 127.0.0.1:9092\ntopic: findings\ntimeout: 5s\ntitle: \"{{ title }}\"\n\
             properties: {compression.type: zstd}\nredaction: {principals: drop}\n",
        );
        assert_eq!(parsed.timeout, HumanDuration(5_000));
        assert_eq!(parsed.properties["compression.type"], "zstd");
        assert_eq!(parsed.redaction.principals, render::Treatment::Drop);
    }

    #[test]
    fn config_rejects_unknown_key() {
        let err = serde_norway::from_str::<KafkaConfig>("brokers: b\ntopic: t\nkey: fingerprint\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `key`"), "{err}");
    }

    #[test]
    fn new_rejects_invalid_settings() {
        let (_listener, address) = own_listener();
        let cases = [
            ("brokers: \"\"\ntopic: t\n".to_string(), "kafka receiver `k`: brokers: missing: list bootstrap servers, such as `127.0.0.1:9092`".to_string()),
            (format!("brokers: {address}\ntopic: \" \"\n"), "kafka receiver `k`: topic: missing: name the findings topic, such as `findings`".to_string()),
            (format!("brokers: {address}\ntopic: t\ntimeout: 0s\n"), "kafka receiver `k`: timeout: invalid duration 0s: use more than 0 and at most 24d, such as 30s".to_string()),
            (format!("brokers: {address}\ntopic: t\nproperties: {{enable.idempotence: \"false\"}}\n"), "kafka receiver `k`: properties: `enable.idempotence` is set by the receiver; remove it, because the receiver always enables it".to_string()),
            (format!("brokers: {address}\ntopic: t\nproperties: {{message.timeout.ms: \"5\"}}\n"), "kafka receiver `k`: properties: `message.timeout.ms` is set by the receiver; set `timeout` instead".to_string()),
        ];
        for (yaml, expected) in cases {
            let err = KafkaReceiver::new("k", &config(&yaml)).unwrap_err();
            assert_eq!(err, expected, "for {yaml:?}");
        }
        let err = KafkaReceiver::new(
            "k",
            &config(&format!(
                "brokers: {address}\ntopic: t\nproperties: {{no.such.property: x}}\n"
            )),
        )
        .unwrap_err();
        assert!(
            err.starts_with("kafka receiver `k`: properties: failed to create the Kafka producer:"),
            "{err}"
        );
        assert!(err.contains("no.such.property"), "{err}");
    }

    #[test]
    fn value_full_minimal_and_redacted() {
        let (_listener, address) = own_listener();
        let receiver = KafkaReceiver::new(
            "k",
            &config(&format!(
                "brokers: {address}\ntopic: t\nredaction: {{clients: hash}}\n"
            )),
        )
        .unwrap();
        let notice = notice(ChangeKind::Opened);
        let mut progress = Recorder(Vec::new());
        let full = receiver.value(&notice, Rendering::Full, &mut progress);
        let mut redacted = serde_json::to_value(&notice.findings[0]).unwrap();
        redacted["group"]["client"] = json!(render::hash_value("203.0.113.9"));
        assert_eq!(
            full,
            json!({
                "change": "opened",
                "change_id": "c1",
                "key": "0123456789abcdef0123456789abcdef",
                "title": format!("Repeated failed logins: client={}", render::hash_value("203.0.113.9")),
                "findings": [redacted],
            })
        );
        let minimal = receiver.value(&notice, Rendering::Minimal, &mut progress);
        assert_eq!(
            minimal,
            json!({
                "change": "opened",
                "change_id": "c1",
                "key": "0123456789abcdef0123456789abcdef",
                "title": "Repeated failed logins",
                "findings": [{
                    "rule_id": "login-bruteforce",
                    "title": "Repeated failed logins",
                    "severity": "high",
                    "fingerprint": "0123456789abcdef0123456789abcdef",
                }],
                "minimal": true,
            })
        );
        assert!(progress.0.is_empty());
    }

    #[test]
    fn value_title_falls_back_on_template_failure() {
        let (_listener, address) = own_listener();
        let receiver = KafkaReceiver::new(
            "k",
            &config(&format!(
                "brokers: {address}\ntopic: t\ntitle: \"{{{{ ratio }}}}\"\n"
            )),
        )
        .unwrap();
        let mut progress = Recorder(Vec::new());
        let value = receiver.value(&notice(ChangeKind::Opened), Rendering::Full, &mut progress);
        assert_eq!(value["title"], "Repeated failed logins: client=203.0.113.9");
        assert_eq!(
            progress.0,
            ["receiver `k`: title: the finding has no `ratio`"]
        );
    }

    #[test]
    fn resolve_without_open_remote_is_skipped() {
        let (_listener, address) = own_listener();
        let mut receiver =
            KafkaReceiver::new("k", &config(&format!("brokers: {address}\ntopic: t\n"))).unwrap();
        let resolved = notice(ChangeKind::Resolved);
        let mut progress = Recorder(Vec::new());
        let effect = receiver
            .apply(&resolved, None, Rendering::Full, &mut progress)
            .unwrap();
        assert_eq!(
            effect,
            Effect::Skipped(
                "no message was written for this key, so there is nothing to resolve".into()
            )
        );
        let closed = Remote {
            id: "t/0/0".into(),
            open: false,
            ..Remote::default()
        };
        let effect = receiver
            .apply(&resolved, Some(&closed), Rendering::Full, &mut progress)
            .unwrap();
        assert_eq!(
            effect,
            Effect::Skipped("the finding is already resolved".into())
        );
    }

    #[test]
    fn classify_codes() {
        let class = |code| classify("failed", "findings", "b:9092", Some(code));
        assert_eq!(
            class(RDKafkaErrorCode::MessageTimedOut),
            DeliveryError::retry("failed")
        );
        assert_eq!(
            class(RDKafkaErrorCode::AllBrokersDown),
            DeliveryError::retry("failed")
        );
        assert_eq!(
            class(RDKafkaErrorCode::NotEnoughReplicas),
            DeliveryError::retry("failed")
        );
        assert_eq!(
            class(RDKafkaErrorCode::MessageSizeTooLarge),
            DeliveryError::Reject {
                reason: "failed; the message is larger than `message.max.bytes` allows".into(),
                status: None,
                response: String::new(),
                fallback: true,
            }
        );
        assert_eq!(
            class(RDKafkaErrorCode::UnknownTopicOrPartition),
            DeliveryError::reject(
                "Kafka topic `findings` was not found on b:9092; create it or fix `topic`"
            )
        );
        assert_eq!(
            class(RDKafkaErrorCode::TopicAuthorizationFailed),
            DeliveryError::reject("failed")
        );
        assert_eq!(
            classify("failed", "t", "b", None),
            DeliveryError::reject("failed")
        );
    }
}
