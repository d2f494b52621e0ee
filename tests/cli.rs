//! The command line: `rules check`, `scan` output contracts, and errors a user sees.

mod common;

#[test]
fn rules_check_accepts_shipped_packs() {
    let output = common::feedloop(&["rules", "check", "rules/packs"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok: 12 rules in 4 files\n"
    );
}

#[test]
fn rules_check_rejects_misspelt_field() {
    let dir = common::temp_dir("misspelt");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "id: burst\ntitle: Burst\nseverity: high\nstages: [operate]\ngroup_by: [client]\nwindw: {size: 1m}\nthreshold: {count: 5}\n",
    )
    .unwrap();
    let output = common::feedloop(&["rules", "check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "error: {}:6: rule `burst`: field `windw`: unknown field `windw`",
        file.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("did you mean `window`?"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rules_check_reports_every_bad_file() {
    let dir = common::temp_dir("two-bad");
    let base = "title: T\nseverity: high\nstages: [operate]\nwindow: {size: 5m}\n";
    std::fs::write(
        dir.join("a.yaml"),
        format!("id: a\n{base}threshold: {{count: 0}}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yml"),
        format!("id: b\n{base}ratio: {{min_ratio: 2, min_events: 5}}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a rule").unwrap();
    let output = common::feedloop(&["rules", "check", dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].ends_with("a.yaml:6: rule `a`: field `threshold.count`: count must be at least 1"),
        "{stderr}"
    );
    assert!(
        lines[1]
            .ends_with("b.yml:6: rule `b`: field `ratio.min_ratio`: min_ratio 2 is outside (0, 1]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  example: threshold: {count: 20}"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scan_jsonl_prints_only_findings_on_stdout() {
    let output = common::feedloop(&[
        "scan",
        "--format",
        "jsonl",
        common::yauaa_log().to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let findings = common::parse_lines(stdout.as_bytes());
    assert_eq!(findings.len(), 94);
    assert!(findings
        .iter()
        .all(|f| f["rule_id"] == "login-abuse-distributed" && f["phase"] == "final"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(common::summary_count(&stderr, "records read"), 3456);
}

#[test]
fn scan_missing_file_names_it() {
    let output = common::feedloop(&["scan", "no/such/access.log"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: failed to open input no/such/access.log"),
        "{stderr}"
    );
}

#[test]
fn scan_dead_letters_bad_lines_and_goes_on() {
    let dir = common::temp_dir("dead");
    let log = dir.join("mixed.log");
    let mut text = std::fs::read_to_string(common::yauaa_log()).unwrap();
    text.insert_str(0, "this is not a log line\n\u{0}\u{1}garbage [x] \"\n");
    std::fs::write(&log, text).unwrap();
    let dead = dir.join("dead.jsonl");
    let output = common::feedloop(&[
        "scan",
        "--dead-letter",
        dead.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let summary = String::from_utf8_lossy(&output.stdout);
    assert_eq!(common::summary_count(&summary, "records read"), 3458);
    assert_eq!(common::summary_count(&summary, "dead-lettered"), 2);
    assert_eq!(common::summary_count(&summary, "findings"), 94);
    let letters = common::parse_lines(&std::fs::read(&dead).unwrap());
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["position"], serde_json::json!({"line": 1}));
    assert_eq!(letters[0]["raw"], "this is not a log line");
    assert_eq!(letters[0]["reason"], "decode");
    assert_eq!(letters[1]["position"], serde_json::json!({"line": 2}));
    std::fs::remove_dir_all(&dir).unwrap();
}
