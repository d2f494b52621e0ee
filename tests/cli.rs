//! The command line: `rules check`, `scan` output contracts, and the errors a user gets.

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
    assert!(
        stderr.ends_with("\n2 invalid rule file entries\n"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rules_check_counts_one_rule() {
    let dir = common::temp_dir("one-rule");
    let file = dir.join("one.yaml");
    std::fs::write(
        &file,
        "id: burst\ntitle: Burst\nseverity: high\nstages: [operate]\ngroup_by: [client]\nwindow: {size: 1m}\nthreshold: {count: 5}\n",
    )
    .unwrap();
    let output = common::feedloop(&["rules", "check", file.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ok: 1 rule in 1 file\n"
    );

    std::fs::write(&file, "id: burst\n").unwrap();
    let output = common::feedloop(&["rules", "check", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with("\n1 invalid rule file entry\n"),
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

#[test]
fn scan_rejects_output_that_is_an_input() {
    let dir = common::temp_dir("same-file");
    let log = dir.join("access.log");
    std::fs::copy(common::yauaa_log(), &log).unwrap();
    let output = common::feedloop(&[
        "scan",
        "--dead-letter",
        log.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is also an input"), "{stderr}");
    let kept = std::fs::metadata(&log).unwrap().len();
    assert_eq!(kept, std::fs::metadata(common::yauaa_log()).unwrap().len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scan_rejects_worker_counts_out_of_range() {
    for workers in ["0", "65"] {
        let output = common::feedloop(&[
            "scan",
            "--workers",
            workers,
            common::yauaa_log().to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!("error: invalid worker count {workers}: use 1 to 64");
        assert!(stderr.starts_with(&expected), "{stderr}");
    }
}

#[test]
fn scan_rejects_kpi_window_out_of_range() {
    for window in ["0s", "2d"] {
        let output = common::feedloop(&[
            "scan",
            "--kpi-window",
            window,
            common::yauaa_log().to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!(
            "error: invalid value '{window}' for '--kpi-window <KPI_WINDOW>': use 1s to 1d, such as 1m\n"
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
    }
}

#[test]
fn events_counts_one_failed_record() {
    let dir = common::temp_dir("events-one-bad");
    let log = dir.join("events.jsonl");
    let good = r#"{"time": 1700000000000, "client": "198.51.100.1", "method": "GET", "path": "/", "status": 200}"#;
    std::fs::write(&log, format!("{good}\nnot json\n")).unwrap();
    let output = common::feedloop(&["events", log.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(common::parse_lines(&output.stdout).len(), 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with("\n1 record failed to decode\n"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn far_future_time_does_not_blind_rules() {
    let dir = common::temp_dir("future");
    let log = dir.join("access.log");
    let mut text = String::from(
        "203.0.113.9 - - [31/Dec/9999:23:59:59 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"\n",
    );
    text.push_str(&std::fs::read_to_string(common::yauaa_log()).unwrap());
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
    assert_eq!(common::summary_count(&summary, "invalid time"), 1);
    assert_eq!(common::summary_count(&summary, "late"), 0);
    assert_eq!(common::summary_count(&summary, "findings"), 94);
    let letters = common::parse_lines(&std::fs::read(&dead).unwrap());
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason"], "time");
    let error = letters[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid event time 9999-12-31T23:59:59.000Z: too far in the future"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn console_escapes_control_characters() {
    let dir = common::temp_dir("escape");
    let log = dir.join("events.jsonl");
    let line = r#"{"time": 1700000000000, "client": "198.51.100.1", "method": "GET", "path": "/wp-login.php\u2066\n[final] CRITICAL fake\u001b[2J", "status": 404}"#;
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let output = common::feedloop(&["scan", log.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(!stdout.contains('\u{2066}'), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with("[final] CRITICAL fake")),
        "{stdout}"
    );
    assert!(
        stdout.contains(r"/wp-login.php\u{2066}\u{a}[final] CRITICAL fake\u{1b}[2J"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_gzip_fails_the_run() {
    let dir = common::temp_dir("truncated");
    let gz =
        std::fs::read(common::root().join("examples/quickstart/data/semicomplete-access.log.gz"))
            .unwrap();
    let log = dir.join("cut.log.gz");
    std::fs::write(&log, &gz[..gz.len() / 2]).unwrap();
    let output = common::feedloop(&["scan", log.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let records = common::summary_count(&stdout, "records read");
    assert!(records > 1000, "{records} records");
    assert!(records < 10_000, "{records} records");
    assert!(stdout.contains("  error: "), "{stdout}");
    assert!(
        stdout.contains("cut.log.gz: failed to read after line"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scan_reads_gzip_from_stdin() {
    let gz =
        std::fs::read(common::root().join("examples/quickstart/data/basjes-hackers-access.log.gz"))
            .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_feedloop"))
        .args(["scan", "--format", "jsonl", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(common::parse_lines(&output.stdout).len(), 94);
}

#[test]
fn scan_into_closed_pipe_exits_quietly() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_feedloop"))
        // Over 64 KiB of output, more than a pipe buffers, so writes after the close fail.
        .args(["scan", "--early", common::elastic_log().to_str().unwrap()])
        .arg(common::yauaa_log())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("[early] "), "{first}");
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}
