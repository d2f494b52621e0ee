//! The Kafka receiver against a real broker: a tansu broker started on 127.0.0.1.
//!
//! The broker binary is found through `FEEDLOOP_TANSU`, then the cache folder that
//! `scripts/test.sh` installs it to, then `PATH`.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use feedloop_testkit::tansu::{self, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use feedloop_connectors::delivery::kafka::{KafkaConfig, KafkaReceiver, LAST_EXTRA};
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::Finding;

use common::Recorder;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const PARTITIONS: i32 = 3;

/// Reads every partition of a topic from the start until `count` messages arrived.
fn consume(broker: &Broker, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", "feedloop-receiver-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while messages.len() < count {
        assert!(
            Instant::now() < deadline,
            "read {} of {count} messages within 30s",
            messages.len()
        );
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            messages.push(result.unwrap().detach());
        }
    }
    messages
}

fn headers(message: &OwnedMessage) -> Vec<(String, String)> {
    let Some(headers) = message.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| {
            (
                h.key.to_string(),
                String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
            )
        })
        .collect()
}

fn payload(message: &OwnedMessage) -> Value {
    serde_json::from_slice(message.payload().expect("a message with a value")).unwrap()
}

fn finding(count: u64) -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["operate"],
        "tags": [],
        "service": "accounts",
        "group": {"client": "203.0.113.9"},
        "window": {"start": "2025-06-01T10:00:00Z", "end": "2025-06-01T10:05:00Z"},
        "condition": "count >= 20",
        "count": count,
        "first_seen": "2025-06-01T10:00:01.000Z",
        "last_seen": "2025-06-01T10:01:00.000Z",
        "evidence": [{
            "time": "2025-06-01T10:00:01.000Z",
            "method": "POST",
            "path": "/login",
            "status": 401,
            "client": "203.0.113.9"
        }]
    }))
    .unwrap()
}

fn notice(kind: ChangeKind, change_id: &str, count: u64) -> Notice {
    Notice {
        key: KEY.into(),
        change_id: change_id.into(),
        kind,
        findings: vec![finding(count)],
        group: None,
        target: Target::default(),
    }
}

fn receiver(brokers: &str, topic: &str, extra_yaml: &str) -> KafkaReceiver {
    let yaml = format!("brokers: \"{brokers}\"\ntopic: {topic}\ntimeout: 10s\n{extra_yaml}");
    let config: KafkaConfig = serde_norway::from_str(&yaml).unwrap();
    KafkaReceiver::new("findings-topic", &config).unwrap()
}

fn applied(effect: Effect) -> Remote {
    match effect {
        Effect::Applied(remote) => remote,
        Effect::Skipped(reason) => panic!("expected an applied change, got skipped: {reason}"),
    }
}

#[test]
fn kafka_receiver_writes_changes_in_order() {
    let broker = tansu::start();
    broker.create_topic("findings", PARTITIONS);
    let mut receiver = receiver(&broker.address, "findings", "");

    let mut progress = Recorder::default();
    let created = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1", 20),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(progress.created, vec![created.clone()]);
    assert!(created.open);
    let (topic, rest) = created.id.split_once('/').unwrap();
    let (partition, offset) = rest.split_once('/').unwrap();
    assert_eq!(topic, "findings");
    assert_eq!(offset, "0");
    assert_eq!(created.extra[LAST_EXTRA], created.id);

    let mut progress = Recorder::default();
    let updated = applied(
        receiver
            .apply(
                &notice(ChangeKind::Updated, "c2", 35),
                Some(&created),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(progress.created.is_empty());
    assert_eq!(
        updated.id, created.id,
        "the remote id stays the first message's"
    );
    assert!(updated.open);
    assert_eq!(updated.extra[LAST_EXTRA], format!("findings/{partition}/1"));

    let messages = consume(&broker, "findings", 2);
    let expected = [("opened", "c1", 20), ("updated", "c2", 35)];
    for (i, (message, (change, change_id, count))) in messages.iter().zip(expected).enumerate() {
        assert_eq!(message.partition().to_string(), partition, "message {i}");
        assert_eq!(message.offset(), i as i64, "message {i}");
        assert_eq!(message.key(), Some(KEY.as_bytes()), "message {i}");
        assert_eq!(
            headers(message),
            [
                ("feedloop-change".to_string(), change.to_string()),
                ("feedloop-change-id".to_string(), change_id.to_string()),
            ],
            "message {i}"
        );
        assert_eq!(
            payload(message),
            json!({
                "change": change,
                "change_id": change_id,
                "key": KEY,
                "title": "Repeated failed logins: client=203.0.113.9",
                "findings": [finding(count)],
            }),
            "message {i}"
        );
    }

    // A resolve is written and closes the remote; a second one is skipped.
    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved, "c3", 35),
                Some(&updated),
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    assert!(!resolved.open);
    assert_eq!(
        resolved.extra[LAST_EXTRA],
        format!("findings/{partition}/2")
    );
    let again = receiver
        .apply(
            &notice(ChangeKind::Resolved, "c4", 35),
            Some(&resolved),
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();
    assert_eq!(
        again,
        Effect::Skipped("the finding is already resolved".into())
    );
}

#[test]
fn kafka_receiver_oversized_message_falls_back() {
    let broker = tansu::start();
    broker.create_topic("findings", PARTITIONS);
    // librdkafka's smallest allowed message.max.bytes.
    let mut receiver = receiver(
        &broker.address,
        "findings",
        "properties: {message.max.bytes: \"1000\"}\n",
    );
    let mut big = notice(ChangeKind::Opened, "c1", 20);
    let event = big.findings[0].evidence[0].clone();
    big.findings[0].evidence = vec![event; 40];

    let mut progress = Recorder::default();
    let err = receiver
        .apply(&big, None, Rendering::Full, &mut progress)
        .unwrap_err();
    match &err {
        DeliveryError::Reject {
            reason, fallback, ..
        } => {
            assert!(*fallback, "{err:?}");
            assert!(
                reason.ends_with("the message is larger than `message.max.bytes` allows"),
                "{reason}"
            );
            assert!(
                reason.starts_with(&format!(
                    "failed to write to Kafka topic `findings` on {}:",
                    broker.address
                )),
                "{reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(progress.created.is_empty());

    let created = applied(
        receiver
            .apply(&big, None, Rendering::Minimal, &mut progress)
            .unwrap(),
    );
    assert_eq!(progress.created, vec![created]);
    let messages = consume(&broker, "findings", 1);
    assert_eq!(
        payload(&messages[0]),
        json!({
            "change": "opened",
            "change_id": "c1",
            "key": KEY,
            "title": "Repeated failed logins",
            "findings": [{
                "rule_id": "login-bruteforce",
                "title": "Repeated failed logins",
                "severity": "high",
                "fingerprint": KEY,
            }],
            "minimal": true,
        })
    );
}

#[test]
fn kafka_receiver_retries_when_broker_is_silent() {
    // A listener of this test's own: the system accepts connections to it, and nothing responds.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let yaml = format!("brokers: \"{address}\"\ntopic: findings\ntimeout: 1s\n");
    let config: KafkaConfig = serde_norway::from_str(&yaml).unwrap();
    let mut receiver = KafkaReceiver::new("findings-topic", &config).unwrap();

    let mut progress = Recorder::default();
    let started = Instant::now();
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened, "c1", 20),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
    match &err {
        DeliveryError::Retry { reason, after } => {
            assert!(
                reason.starts_with(&format!(
                    "failed to write to Kafka topic `findings` on {address}:"
                )),
                "{reason}"
            );
            assert_eq!(*after, None);
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(progress.created.is_empty());
    drop(silent);
}
