//! End to end through a real Kafka broker: the bundled logs published to a topic on a tansu
//! broker started on 127.0.0.1 give the same findings as scanning the files.
//!
//! The broker binary is found through `FEEDLOOP_TANSU`, then the cache folder the test script
//! installs it to, then `PATH`. `scripts/test.sh` installs it when missing.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use feedloop_testkit::tansu::{self, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

/// Publishes each log's events as native JSON, keyed by client so each client's events stay
/// in order within one partition. Returns the number published.
fn publish(broker: &Broker, topic: &str, logs: &[PathBuf]) -> usize {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut sent = 0;
    for log in logs {
        let output = common::feedloop(&["events", log.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for event in common::parse_lines(&output.stdout) {
            let payload = event.to_string();
            let key = event["client"].as_str().unwrap().to_string();
            loop {
                let record = BaseRecord::to(topic).key(&key).payload(&payload);
                match producer.send(record) {
                    Ok(()) => break,
                    Err((err, _)) => {
                        assert!(
                            matches!(
                                err.rdkafka_error_code(),
                                Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            ),
                            "produce failed: {err}"
                        );
                        producer.poll(Duration::from_millis(100));
                    }
                }
            }
            sent += 1;
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    sent
}

#[test]
fn kafka_topic_gives_same_findings_as_files() {
    let broker = tansu::start();
    let topic = "api-events";
    broker.create_topic(topic, 3);
    let logs = vec![common::elastic_log(), common::yauaa_log()];
    let published = publish(&broker, topic, &logs);
    assert_eq!(published, 13_456);

    let dir = common::temp_dir("kafka");
    let findings_path = dir.join("findings.jsonl");
    let config = format!(
        "sources:\n  - kafka:\n      brokers: \"{}\"\n      topic: {topic}\n      group_id: feedloop-test\n      start: earliest\n      stop_at_end: true\ntime: {{allowed_lateness: 2m}}\nworkers: 2\noutputs:\n  console: {{enabled: false}}\n  jsonl: {{path: \"{}\"}}\n",
        broker.address,
        findings_path.display()
    );
    let config_path = dir.join("feedloop.yaml");
    std::fs::write(&config_path, config).unwrap();
    let output = common::feedloop(&["run", "--config", config_path.to_str().unwrap()]);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(common::summary_count(&summary, "records read"), 13_456);
    assert_eq!(common::summary_count(&summary, "decoded"), 13_456);
    assert_eq!(common::summary_count(&summary, "late"), 0);

    let from_kafka = common::parse_lines(&std::fs::read(&findings_path).unwrap());
    let paths: Vec<&std::path::Path> = logs.iter().map(|p| p.as_path()).collect();
    let from_files = common::scan_jsonl(&paths, &["--early", "--allowed-lateness", "2m"]);
    let early = |findings: &[Value]| -> BTreeSet<String> {
        findings
            .iter()
            .filter(|f| f["phase"] == "early")
            .map(|f| format!("{} {} {}", f["rule_id"], f["group"], f["window"]["start"]))
            .collect()
    };
    assert!(from_files.len() > 100);
    assert_eq!(early(&from_kafka), early(&from_files));
    common::assert_same_findings(
        &common::finals(from_kafka),
        &common::finals(from_files),
        "final findings from Kafka",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
