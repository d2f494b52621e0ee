//! Findings must not depend on the worker count or on disorder within the allowed lateness.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use feedloop_connectors::decode::{Decoder, Format};

/// Identity of each finding: rule, group, window and phase.
fn keys(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {}",
                f["rule_id"], f["group"], f["window"]["start"], f["phase"]
            )
        })
        .collect()
}

#[test]
fn two_workers_match_one_worker() {
    let logs = [common::elastic_log(), common::yauaa_log()];
    let logs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    let one = common::scan_jsonl(&logs, &["--early", "--workers", "1"]);
    let two = common::scan_jsonl(&logs, &["--early", "--workers", "2"]);
    assert!(one.len() > 100, "only {} findings", one.len());
    assert_eq!(keys(&one), keys(&two));
    common::assert_same_findings(&common::finals(one), &common::finals(two), "two workers");
}

#[test]
fn two_workers_match_one_worker_on_one_file() {
    let log = common::elastic_log();
    let one = common::scan_jsonl(&[&log], &["--workers", "1"]);
    let two = common::scan_jsonl(&[&log], &["--workers", "2"]);
    assert!(!one.is_empty());
    // Output order is part of the contract: sorted per watermark step, whatever the workers.
    common::assert_same_findings(&one, &two, "two workers, one file");
}

/// Writes the log's lines in an order where each event trails the newest before it by less
/// than `lateness_ms`: lines sorted by event time plus a random delay below the lateness.
fn shuffle_within(log: &Path, lateness_ms: i64, seed: u64, out: &Path) {
    let decoder = Decoder::new(Format::Combined);
    let text = std::fs::read(log).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut lines: Vec<(i64, &[u8])> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let time = decoder.decode(line).unwrap().time_ms;
            (time + rng.random_range(0..lateness_ms), line)
        })
        .collect();
    // Break ties randomly too, so equal keys are not left in file order.
    lines.shuffle(&mut rng);
    lines.sort_by_key(|(key, _)| *key);
    let mut shuffled = Vec::with_capacity(text.len());
    for (_, line) in lines {
        shuffled.extend_from_slice(line);
        shuffled.push(b'\n');
    }
    std::fs::write(out, shuffled).unwrap();
}

#[test]
fn shuffled_within_lateness_gives_same_findings() {
    let dir = common::temp_dir("shuffle");
    for (name, log) in [
        ("elastic", common::elastic_log()),
        ("yauaa", common::yauaa_log()),
    ] {
        let shuffled = dir.join(format!("{name}.log"));
        // Lateness 5m; disorder up to 4m59.999s plus the log's own disorder of under a minute
        // is removed by sorting first, so every event stays within the lateness.
        shuffle_within(&log, 299_999, 7, &shuffled);
        let args = ["--early", "--allowed-lateness", "5m"];
        let original = common::scan_jsonl(&[&log], &args);
        let reordered = common::scan_jsonl(&[&shuffled], &args);
        assert!(!original.is_empty(), "{name}: no findings");
        assert_eq!(
            keys(&original),
            keys(&reordered),
            "{name}: early and final sets differ"
        );
        common::assert_same_findings(&common::finals(reordered), &common::finals(original), name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disorder_beyond_lateness_is_counted_late() {
    let dir = common::temp_dir("late");
    let shuffled = dir.join("elastic.log");
    shuffle_within(&common::elastic_log(), 600_000, 11, &shuffled);
    let output = common::feedloop(&[
        "scan",
        "--allowed-lateness",
        "1s",
        "--dead-letter",
        dir.join("dead.jsonl").to_str().unwrap(),
        shuffled.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let summary = String::from_utf8_lossy(&output.stdout);
    let late = common::summary_count(&summary, "late");
    assert!(late > 1000, "late {late}");
    assert_eq!(common::summary_count(&summary, "decoded"), 10_000);
    let dead = common::parse_lines(&std::fs::read(dir.join("dead.jsonl")).unwrap());
    assert_eq!(dead.len() as u64, late);
    assert!(dead.iter().all(|d| d["reason"] == "late"));
    assert!(dead[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("late event: time 2015-05-"));
    std::fs::remove_dir_all(&dir).unwrap();
}
