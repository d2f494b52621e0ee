//! Avro input end to end. A generated scenario written as an Avro container file and as JSON
//! Lines gives the same findings. The same events as Confluent-framed Avro messages on a
//! tansu broker on 127.0.0.1 give them too. Bad records are dead-lettered with their reason,
//! while the good records around them still count.
//!
//! The events come from the generator library that `feedloop-gen scenario` runs, with the
//! options `--seed 7 --duration 70m --scenarios credential-stuffing,deploy-regression`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use feedloop_bench::scenario::output::{
    self, AvroSink, JsonlSink, KafkaEncoding, KafkaSink, Pacing, Sink,
};
use feedloop_bench::scenario::{Plan, ScenarioConfig, ScenarioGenerator};
use feedloop_testkit::tansu::{self, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

/// Events of the scenario run.
const EVENTS: u64 = 41_416;

fn scenario() -> ScenarioConfig {
    let names = [
        "credential-stuffing".to_string(),
        "deploy-regression".to_string(),
    ];
    ScenarioConfig {
        seed: 7,
        duration_ms: 70 * 60_000,
        plan: Plan::default().select(&names).unwrap(),
        ..ScenarioConfig::default()
    }
}

fn pacing() -> Pacing {
    Pacing {
        send_rate: None,
        deadline: Instant::now() + Duration::from_secs(120),
    }
}

/// Runs the scenario into `sink` and checks that every event was written.
fn generate(sink: Box<dyn Sink + '_>) {
    let generator = ScenarioGenerator::new(scenario()).unwrap();
    let summary = output::run(generator, sink, pacing()).unwrap();
    assert_eq!(summary.events, EVENTS);
}

/// The scenario as an Avro container file and as JSON Lines, written once per test process.
struct Files {
    avro: PathBuf,
    jsonl: PathBuf,
}

fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = common::temp_dir("avro-files");
        let avro = dir.join("events.avro");
        let file = std::io::BufWriter::new(std::fs::File::create(&avro).unwrap());
        generate(Box::new(
            AvroSink::new(file, scenario().avro_marker()).unwrap(),
        ));
        let jsonl = dir.join("events.jsonl");
        let file = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        generate(Box::new(JsonlSink::plain(file)));
        Files { avro, jsonl }
    })
}

/// Runs `feedloop scan --format jsonl` and returns stdout, the findings, and stderr, the
/// summary; panics unless it succeeds.
fn scan(file: &Path, extra: &[&str]) -> (Vec<u8>, String) {
    let mut args = vec!["scan", "--format", "jsonl"];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    let output = common::feedloop(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "scan failed: {stderr}");
    (output.stdout, stderr)
}

fn dead_letters(path: &Path) -> Vec<Value> {
    common::parse_lines(&std::fs::read(path).unwrap())
}

#[test]
fn avro_file_gives_same_findings_as_jsonl() {
    let files = files();
    let (from_avro, avro_summary) = scan(&files.avro, &[]);
    let (from_jsonl, jsonl_summary) = scan(&files.jsonl, &[]);

    let findings = common::parse_lines(&from_jsonl);
    assert_eq!(findings.len(), 61);
    assert!(
        from_avro == from_jsonl,
        "the findings of the Avro file differ from those of the JSON Lines file"
    );
    for summary in [&avro_summary, &jsonl_summary] {
        assert_eq!(common::summary_count(summary, "records read"), EVENTS);
        assert_eq!(common::summary_count(summary, "decoded"), EVENTS);
        assert_eq!(common::summary_count(summary, "dead-lettered"), 0);
    }
    assert_eq!(avro_summary, jsonl_summary);
}

#[test]
fn avro_events_match_jsonl_events() {
    let files = files();
    let avro = common::feedloop(&["events", files.avro.to_str().unwrap()]);
    let jsonl = common::feedloop(&["events", files.jsonl.to_str().unwrap()]);
    assert!(avro.status.success());
    assert!(jsonl.status.success());
    assert_eq!(common::parse_lines(&avro.stdout).len() as u64, EVENTS);
    assert!(
        avro.stdout == jsonl.stdout,
        "`feedloop events` prints other events for the Avro file"
    );
}

#[test]
fn garbage_block_is_dead_lettered_and_rest_counts() {
    let files = files();
    let bytes = std::fs::read(&files.avro).unwrap();
    let marker = scenario().avro_marker();
    let starts: Vec<usize> = bytes
        .windows(16)
        .enumerate()
        .filter(|(_, window)| *window == marker)
        .map(|(at, _)| at + 16)
        .collect();
    // Garbage and a sync marker after the first block, as if a writer had flushed junk.
    let garbage = b"this is not an Avro block";
    let at = starts[1];
    let mut spliced = bytes[..at].to_vec();
    spliced.extend_from_slice(garbage);
    spliced.extend_from_slice(&marker);
    spliced.extend_from_slice(&bytes[at..]);
    let dir = common::temp_dir("avro-garbage");
    let path = dir.join("events.avro");
    std::fs::write(&path, &spliced).unwrap();
    let letters_path = dir.join("dead.jsonl");

    let (findings, summary) = scan(&path, &["--dead-letter", letters_path.to_str().unwrap()]);
    let (expected, _) = scan(&files.jsonl, &[]);
    assert!(
        findings == expected,
        "a garbage block changed the findings of the good records"
    );
    assert_eq!(common::summary_count(&summary, "records read"), EVENTS + 1);
    assert_eq!(common::summary_count(&summary, "decoded"), EVENTS);
    assert_eq!(common::summary_count(&summary, "dead-lettered"), 1);

    let letters = dead_letters(&letters_path);
    assert_eq!(letters.len(), 1);
    let records_in_first_block = first_block_count(&bytes[starts[0]..]);
    assert_eq!(letters[0]["source"], path.to_str().unwrap());
    assert_eq!(letters[0]["reason"], "decode");
    assert_eq!(
        letters[0]["position"],
        serde_json::json!({"container": {"block": 2, "record": records_in_first_block + 1}})
    );
    assert_eq!(
        letters[0]["error"],
        format!(
            "corrupt Avro block 2 at byte {at}: the 52 bytes it claims are not followed by the \
             file's sync marker; skipped {} bytes to the next sync marker, so the records of \
             this block are lost",
            garbage.len() + 16
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn avro_format_rejects_other_files() {
    let jsonl = &files().jsonl;
    let output = common::feedloop(&["scan", "--input-format", "avro", jsonl.to_str().unwrap()]);
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: failed to open input {}: not an Avro object container file: it starts with \
             [7b, 22, 74, 69], not with `Obj` and the byte 1\n",
            jsonl.display()
        )
    );
}

/// Reads the record count at the start of a block: a zigzag varint.
fn first_block_count(block: &[u8]) -> u64 {
    let mut value = 0u64;
    for (i, byte) in block.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    value >> 1
}

#[test]
fn bad_schema_file_is_rejected_at_start() {
    let dir = common::temp_dir("avro-schema");
    let schema = dir.join("event.avsc");
    std::fs::write(&schema, r#"{"type": "record", "name": "E"}"#).unwrap();
    // The port is never connected to: the schema is checked before any broker.
    let config = format!(
        "sources:\n  - kafka:\n      brokers: \"127.0.0.1:9\"\n      topic: events\n      format: avro\n      avro: {{schema: \"{}\", schema_ids: 3}}\n",
        schema.display()
    );
    let config_path = dir.join("feedloop.yaml");
    std::fs::write(&config_path, config).unwrap();
    let output = common::feedloop(&["run", "--config", config_path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: invalid Avro schema {}: No `fields` in record\n",
            schema.display()
        )
    );

    let config = "sources:\n  - kafka:\n      brokers: \"127.0.0.1:9\"\n      topic: events\n      avro: {schema_ids: [1, 2]}\n";
    std::fs::write(&config_path, config).unwrap();
    let output = common::feedloop(&["run", "--config", config_path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: Kafka source `events` has `avro` settings but format Auto; set `format: avro` \
         or remove `avro`\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a `feedloop run` configuration that reads `topic` to its end, and returns its path.
fn kafka_config(dir: &Path, broker: &Broker, topic: &str, avro: &str, workers: u32) -> PathBuf {
    let config = format!(
        "sources:\n  - kafka:\n      brokers: \"{}\"\n      topic: {topic}\n      group_id: feedloop-test\n      format: avro\n{avro}      start: earliest\n      stop_at_end: true\ntime: {{allowed_lateness: 2m}}\nworkers: {workers}\ndead_letter: {{path: \"{}\"}}\noutputs:\n  console: {{enabled: false}}\n  jsonl: {{path: \"{}\"}}\n",
        broker.address,
        dir.join("dead.jsonl").display(),
        dir.join("findings.jsonl").display(),
    );
    let path = dir.join("feedloop.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Runs `feedloop run` and returns the summary; panics unless it succeeds.
fn run(config: &Path) -> String {
    let output = common::feedloop(&["run", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the rule, group and window of each early finding.
fn early(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| f["phase"] == "early")
        .map(|f| format!("{} {} {}", f["rule_id"], f["group"], f["window"]["start"]))
        .collect()
}

#[test]
fn kafka_avro_gives_same_findings_as_file() {
    let broker = tansu::start();
    let topic = "api-events-avro";
    // NOTE: a fetch at an offset inside a record batch returns, on tansu 0.6, only the
    // batches after it. The Kafka source pauses a partition once it buffers 8,192 of its
    // messages and resumes at such an offset, so tansu loses the rest of that batch. With 8
    // partitions each one holds fewer messages (5,965 at most), so no partition is paused.
    broker.create_topic(topic, 8);
    let sink = KafkaSink::new(
        &broker.address,
        topic,
        KafkaEncoding::ConfluentAvro { schema_id: 1 },
    )
    .unwrap();
    generate(Box::new(sink));

    let dir = common::temp_dir("avro-kafka");
    let config = kafka_config(&dir, &broker, topic, "", 2);
    let summary = run(&config);
    assert_eq!(common::summary_count(&summary, "records read"), EVENTS);
    assert_eq!(common::summary_count(&summary, "decoded"), EVENTS);
    assert_eq!(common::summary_count(&summary, "dead-lettered"), 0);
    assert_eq!(common::summary_count(&summary, "late"), 0);

    let from_kafka = common::parse_lines(&std::fs::read(dir.join("findings.jsonl")).unwrap());
    let files = files();
    let from_file =
        common::parse_lines(&scan(&files.avro, &["--early", "--allowed-lateness", "2m"]).0);
    assert_eq!(common::finals(from_file.clone()).len(), 61);
    assert_eq!(early(&from_kafka), early(&from_file));
    common::assert_same_findings(
        &common::finals(from_kafka),
        &common::finals(from_file),
        "final findings from Kafka",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_kafka_messages_are_dead_lettered() {
    let broker = tansu::start();
    let topic = "api-events-hostile";
    broker.create_topic(topic, 1);

    // A good message of the scenario, to cut and to frame with another id.
    let body = {
        let mut message = Vec::new();
        let encoder = feedloop_bench::scenario::avro::ConfluentEncoder::new(1).unwrap();
        let event = ScenarioGenerator::new(scenario())
            .unwrap()
            .next()
            .unwrap()
            .event;
        encoder.encode(&event, &mut message).unwrap();
        message[5..].to_vec()
    };
    let framed = |id: u32, body: &[u8]| {
        let mut message = vec![0u8];
        message.extend_from_slice(&id.to_be_bytes());
        message.extend_from_slice(body);
        message
    };
    let hostile: [Vec<u8>; 3] = [
        br#"{"time": "2025-06-02T08:00:00Z", "path": "/"}"#.to_vec(),
        framed(2, &body),
        framed(1, &body[..body.len() / 2]),
    ];
    publish(&broker, topic, &hostile);
    let sink = KafkaSink::new(
        &broker.address,
        topic,
        KafkaEncoding::ConfluentAvro { schema_id: 1 },
    )
    .unwrap();
    generate(Box::new(sink));

    let dir = common::temp_dir("avro-kafka-hostile");
    let config = kafka_config(&dir, &broker, topic, "      avro: {schema_ids: [1]}\n", 1);
    let summary = run(&config);
    assert_eq!(common::summary_count(&summary, "records read"), EVENTS + 3);
    assert_eq!(common::summary_count(&summary, "decoded"), EVENTS);
    assert_eq!(common::summary_count(&summary, "dead-lettered"), 3);
    assert_eq!(common::summary_count(&summary, "late"), 0);

    let letters = dead_letters(&dir.join("dead.jsonl"));
    let errors: Vec<&str> = letters
        .iter()
        .map(|l| l["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[0],
        "invalid Confluent Avro message: magic byte 123, expected 0; the message is not in \
         Confluent's wire format, so check the producer's serializer or the source's format"
    );
    assert_eq!(
        errors[1],
        "unknown schema id 2: this source reads id 1 with feedloop's schema/api-event.avsc; \
         add the id to avro.schema_ids if the message was written with that schema"
    );
    // Half of the first event's record ends in its user agent.
    assert_eq!(
        errors[2],
        format!(
            "truncated Avro body: the {}-byte record of schema id 1 ends too soon, because the \
             bytes end inside field `user_agent`; the message was cut short, or written with \
             another schema than feedloop's schema/api-event.avsc",
            body.len() / 2
        )
    );
    assert_eq!(
        letters[0]["raw"],
        r#"{"time": "2025-06-02T08:00:00Z", "path": "/"}"#
    );
    assert_eq!(
        letters[0]["raw_base64"],
        "eyJ0aW1lIjogIjIwMjUtMDYtMDJUMDg6MDA6MDBaIiwgInBhdGgiOiAiLyJ9"
    );
    for (offset, letter) in letters.iter().enumerate() {
        assert_eq!(letter["source"], format!("kafka:{topic}/0"));
        assert_eq!(letter["reason"], "decode");
        assert_eq!(
            letter["position"],
            serde_json::json!({"offset": {"partition": 0, "offset": offset}})
        );
    }

    // The good messages after the bad ones still give every finding of the file.
    let from_kafka = common::parse_lines(&std::fs::read(dir.join("findings.jsonl")).unwrap());
    let files = files();
    let from_file =
        common::parse_lines(&scan(&files.avro, &["--early", "--allowed-lateness", "2m"]).0);
    common::assert_same_findings(
        &common::finals(from_kafka),
        &common::finals(from_file),
        "final findings from Kafka with bad messages",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Publishes raw messages to partition 0 and waits for the broker to acknowledge them.
fn publish(broker: &Broker, topic: &str, messages: &[Vec<u8>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    for message in messages {
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .payload(message.as_slice());
        producer.send(record).map_err(|(err, _)| err).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}
