//! Helpers shared by the end-to-end tests: running the binary and reading findings.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Returns the repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns a file of the shared real-traffic data sets.
pub fn shared_data(relative: &str) -> PathBuf {
    root().join("../shared/data").join(relative)
}

/// Returns the semicomplete.com access log (10,000 lines, out of order within each hour).
pub fn elastic_log() -> PathBuf {
    shared_data("elastic-apache-logs/apache_logs")
}

/// Returns the yauaa hackers access log (3,456 lines, every client hostile).
pub fn yauaa_log() -> PathBuf {
    shared_data("yauaa-hackers-access/hackers-access.log")
}

/// Returns a fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("feedloop-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the feedloop binary with arguments and returns its output.
pub fn feedloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_feedloop"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the feedloop binary runs")
}

/// Runs `feedloop scan --format jsonl` and returns the findings; panics unless it succeeds.
pub fn scan_jsonl(files: &[&Path], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["scan", "--format", "jsonl"];
    args.extend_from_slice(extra);
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let output = feedloop(&args);
    assert!(
        output.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_lines(&output.stdout)
}

/// Parses JSON Lines; panics on a line that is not JSON.
pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

/// Returns findings sorted by rule, group, window and phase, for comparisons that must not
/// depend on output order.
pub fn sorted(mut findings: Vec<Value>) -> Vec<Value> {
    findings.sort_by_key(|f| {
        (
            f["rule_id"].as_str().unwrap().to_string(),
            f["group"].to_string(),
            f["window"]["start"].as_str().unwrap().to_string(),
            f["phase"].as_str().unwrap().to_string(),
        )
    });
    findings
}

/// Returns the final findings, sorted as [`sorted`] does.
pub fn finals(findings: Vec<Value>) -> Vec<Value> {
    sorted(
        findings
            .into_iter()
            .filter(|f| f["phase"] == "final")
            .collect(),
    )
}

/// Reads the run summary's number for a label such as `late`.
pub fn summary_count(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no `{label}` in summary:\n{summary}"))
}

/// Asserts two lists of findings are equal, reporting the first difference briefly.
pub fn assert_same_findings(actual: &[Value], expected: &[Value], what: &str) {
    let brief = |f: &Value| {
        format!(
            "{} {} {} {}",
            f["rule_id"], f["group"], f["window"]["start"], f["phase"]
        )
    };
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a == e,
            "{what}: finding {i} differs\n  actual:   {a}\n  expected: {e}"
        );
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} findings, expected {}; first extra: {:?}",
        actual.len(),
        expected.len(),
        actual
            .get(expected.len())
            .or(expected.get(actual.len()))
            .map(brief)
    );
}
