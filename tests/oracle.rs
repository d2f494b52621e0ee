//! The dataflow's final findings against a naive single-threaded recomputation.
//!
//! The oracle decodes the same log, asks each rule what every event contributes (the rule
//! crate's matching is trusted here; the windows, groups and aggregates are what is checked),
//! puts each event in every window whose span contains it, computed directly from the window
//! definition, and keeps the windows whose condition holds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use feedloop_connectors::decode::{Decoder, Format};
use feedloop_rules::{Contribution, Detection, RuleSet};

/// One window of one group under one rule, aggregated naively.
#[derive(Default)]
struct Aggregate {
    count: u64,
    total: u64,
    values: BTreeSet<String>,
}

fn rules() -> RuleSet {
    let mut paths: Vec<PathBuf> = vec![common::root().join("rules/packs")];
    paths.push(common::root().join("tests/rules/oracle.yaml"));
    RuleSet::load(&paths).unwrap()
}

fn rfc3339(ms: i64) -> String {
    feedloop_pipeline::finding::format_seconds(ms)
}

/// Recomputes the final findings of every threshold, distinct and ratio rule.
fn oracle(rules: &RuleSet, logs: &[&Path]) -> BTreeSet<String> {
    let decoder = Decoder::new(Format::Combined);
    let mut windows: BTreeMap<(usize, Vec<Option<String>>, i64), Aggregate> = BTreeMap::new();
    for log in logs {
        let text = std::fs::read(log).unwrap();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let event = decoder.decode(line).unwrap();
            for (r, rule) in rules.rules().iter().enumerate() {
                let Some(contribution) = rule.evaluate(&event) else {
                    continue;
                };
                let size = rule.window.size_ms as i64;
                let slide = rule.window.slide_ms as i64;
                // Every start that is a multiple of the slide with start <= t < start + size.
                let mut start = (event.time_ms - size).div_euclid(slide) * slide;
                while start <= event.time_ms {
                    if event.time_ms < start + size {
                        let key = (r, rule.group_key(&event), start);
                        let agg = windows.entry(key).or_default();
                        match &contribution {
                            Contribution::Count | Contribution::Signature(_) => agg.count += 1,
                            Contribution::Value(v) => {
                                agg.count += 1;
                                agg.values.insert(v.clone());
                            }
                            Contribution::Ratio { matched } => {
                                agg.total += 1;
                                agg.count += u64::from(*matched);
                            }
                        }
                    }
                    start += slide;
                }
            }
        }
    }

    let mut findings = BTreeSet::new();
    for ((r, group, start), agg) in windows {
        let rule = &rules.rules()[r];
        let (holds, extra) = match &rule.detection {
            Detection::Threshold { count } => (agg.count >= *count, json!(null)),
            Detection::Signature { min_count, .. } => (agg.count >= *min_count, json!(null)),
            Detection::Distinct { count, .. } => {
                (agg.values.len() as u64 >= *count, json!(agg.values.len()))
            }
            Detection::Ratio {
                min_ratio,
                min_events,
                ..
            } => {
                let ratio = agg.count as f64 / agg.total as f64;
                let rounded = (ratio * 10_000.0).round() / 10_000.0;
                (
                    agg.total >= *min_events && ratio >= *min_ratio,
                    json!([rounded, agg.total]),
                )
            }
        };
        if !holds {
            continue;
        }
        let group: serde_json::Map<String, Value> = rule
            .group_by
            .iter()
            .zip(group)
            .map(|(f, v)| (f.to_string(), v.map_or(Value::Null, Value::String)))
            .collect();
        let end = start + rule.window.size_ms as i64;
        findings.insert(
            json!([
                rule.id,
                group,
                rfc3339(start),
                rfc3339(end),
                agg.count,
                extra
            ])
            .to_string(),
        );
    }
    findings
}

/// Reduces dataflow findings to what the oracle computes.
fn summarize(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .map(|f| {
            let extra = if let Some(d) = f.get("distinct") {
                d.clone()
            } else if let Some(r) = f.get("ratio") {
                json!([r, f["total"]])
            } else {
                json!(null)
            };
            json!([
                f["rule_id"],
                f["group"],
                f["window"]["start"],
                f["window"]["end"],
                f["count"],
                extra
            ])
            .to_string()
        })
        .collect()
}

fn check_against_oracle(logs: &[&Path]) {
    let rules = rules();
    let expected = oracle(&rules, logs);
    let args = [
        "--rules",
        "rules/packs",
        "--rules",
        "tests/rules/oracle.yaml",
        "--allowed-lateness",
        "1h",
    ];
    let actual = summarize(&common::scan_jsonl(logs, &args));
    assert!(!expected.is_empty());
    let missing: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "findings the dataflow missed: {missing:#?}"
    );
    assert!(
        extra.is_empty(),
        "findings the oracle does not have: {extra:#?}"
    );
}

#[test]
fn oracle_matches_elastic_log() {
    check_against_oracle(&[&common::elastic_log()]);
}

#[test]
fn oracle_matches_yauaa_log() {
    check_against_oracle(&[&common::yauaa_log()]);
}

#[test]
fn oracle_matches_both_logs_together() {
    check_against_oracle(&[&common::elastic_log(), &common::yauaa_log()]);
}

#[test]
fn oracle_finds_every_kind() {
    let rules = rules();
    let findings = oracle(&rules, &[&common::elastic_log(), &common::yauaa_log()]);
    let kinds: BTreeSet<&str> = findings
        .iter()
        .map(|f| {
            let id = serde_json::from_str::<Value>(f).unwrap()[0]
                .as_str()
                .unwrap()
                .to_string();
            let rule = rules.rules().iter().find(|r| r.id == id).unwrap();
            rule.detection.kind()
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["distinct", "ratio", "signature", "threshold"])
    );
}
