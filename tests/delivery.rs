//! Delivery through the command: the lifecycle across runs, every final reaching a receiver,
//! `feedloop gate` and `feedloop routes test`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Writes a configuration reading one JSON Lines file, with a delivery state folder.
fn config(dir: &Path, events: &Path, delivery: &str) -> std::path::PathBuf {
    let path = dir.join("feedloop.yaml");
    let text = format!(
        "sources:\n  - file: {{paths: [\"{}\"], format: json}}\ntime: {{allowed_lateness: 1m, resolve_after: 10m}}\noutputs:\n  console: {{enabled: true}}\ndelivery:\n  state_dir: \"{}\"\n{delivery}",
        events.display(),
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn gate_fails_while_a_high_finding_is_open_and_passes_once_it_resolves() {
    let dir = common::temp_dir("gate");
    let events = common::root().join("tests/golden/auth.events.jsonl");
    let first = config(&dir, &events, "");
    let run = common::feedloop(&["run", "--config", first.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The input's last event is at 13:25; the distributed-login finding's window ends at 14:00,
    // so it stays open while the two earlier ones resolved 10 minutes after their windows.
    assert!(
        stdout(&run)
            .contains("  lifecycle                  3 opened, 3 updated, 2 resolved, 0 reopened; 0 findings repeated a reported state\n"),
        "{}",
        stdout(&run)
    );

    let config_arg = first.to_str().unwrap();
    let gate = common::feedloop(&["gate", "--config", config_arg, "--service", "shop"]);
    assert_eq!(
        gate.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gate.stderr)
    );
    let text = stdout(&gate);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "gate failed: 1 open finding of severity high or higher for service shop"
    );
    assert!(
        lines[1].starts_with("  high     login-abuse-distributed (")
            && lines[1].contains(
                " shop [route=/register], latest window ends 2026-01-05T14:00:00Z, fingerprint "
            ),
        "{text}"
    );
    assert_eq!(lines.len(), 2, "{text}");

    // Another service, or a higher bar, passes.
    let other = common::feedloop(&["gate", "--config", config_arg, "--service", "billing"]);
    assert_eq!(other.status.code(), Some(0));
    assert_eq!(
        stdout(&other),
        "gate passed: no open findings of severity high or higher for service billing\n"
    );
    let critical =
        common::feedloop(&["gate", "--config", config_arg, "--min-severity", "critical"]);
    assert_eq!(critical.status.code(), Some(0));

    // A later run whose events move time past the deadline resolves the finding it inherited.
    let later = dir.join("later.jsonl");
    std::fs::write(
        &later,
        "{\"time\":1767625200000,\"service\":\"shop\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,\"client\":\"10.9.9.9\"}\n",
    )
    .unwrap();
    let second = config(&dir, &later, "");
    let run = common::feedloop(&["run", "--config", second.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout(&run)
            .contains("  lifecycle                  0 opened, 0 updated, 1 resolved, 0 reopened; 0 findings repeated a reported state\n"),
        "{}",
        stdout(&run)
    );
    let state = dir.join("state");
    let gate = common::feedloop(&[
        "gate",
        "--state-dir",
        state.to_str().unwrap(),
        "--service",
        "shop",
    ]);
    assert_eq!(gate.status.code(), Some(0));
    assert_eq!(
        stdout(&gate),
        "gate passed: no open findings of severity high or higher for service shop\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gate_without_state_fails_closed() {
    let dir = common::temp_dir("gate-empty");
    let gate = common::feedloop(&["gate", "--state-dir", dir.join("none").to_str().unwrap()]);
    assert_eq!(gate.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&gate.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: no delivery state in {}: run `feedloop run` with a `delivery` section first",
            dir.join("none").display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes a finding of the given stages for service `shop`.
fn finding_file(dir: &Path, name: &str, stages: &[&str]) -> std::path::PathBuf {
    let finding = serde_json::json!({
        "rule_id": "login-abuse-distributed", "title": "Distributed login abuse",
        "fingerprint": "00112233445566778899aabbccddeeff", "phase": "final", "kind": "distinct",
        "severity": "high", "stages": stages, "tags": [], "service": "shop",
        "group": {"route": "/login"},
        "window": {"start": "2026-01-05T13:00:00Z", "end": "2026-01-05T14:00:00Z"},
        "condition": "distinct client >= 5", "count": 6, "distinct": 6,
        "first_seen": "2026-01-05T13:00:00.000Z", "last_seen": "2026-01-05T13:25:00.000Z",
        "evidence": []
    });
    let path = dir.join(name);
    std::fs::write(&path, finding.to_string()).unwrap();
    path
}

#[test]
fn the_example_routes_each_stage_to_its_receiver_without_credentials() {
    let dir = common::temp_dir("routes-example");
    let config = "examples/delivery/feedloop.yaml";
    let design = finding_file(&dir, "design.json", &["operate", "design"]);
    let output = common::feedloop(&[
        "routes",
        "test",
        "--config",
        config,
        design.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout(&output),
        "finding login-abuse-distributed (high, stages operate, design, service shop)
catalog entry for shop: owners shop-team; jira_project SHOP; github_repo example/shop-api; slack_channel C07SHOPOPS1; ci_target main
  design: match: stage design is listed
    -> jira
  test-and-build: no match: stages [operate, design] not in [test, build]
  operate: match: stage operate is listed
    -> slack
  monitor: no match: stages [operate, design] not in [monitor]
reaches: jira, slack
  operate groups by rule_id, service (wait 30s, interval 5m)
"
    );
    let cases: [(&[&str], &str); 4] = [
        (&["design"], "reaches: jira\n"),
        (&["test", "build"], "reaches: github, gitlab\n"),
        (&["operate"], "reaches: slack\n"),
        (&["monitor"], "reaches: alertmanager\n"),
    ];
    for (stages, expected) in cases {
        let file = finding_file(&dir, "case.json", stages);
        let output =
            common::feedloop(&["routes", "test", "--config", config, file.to_str().unwrap()]);
        let text = stdout(&output);
        assert!(text.contains(expected), "{stages:?}: {text}");
    }
    let strategy = finding_file(&dir, "strategy.json", &["strategy"]);
    let output = common::feedloop(&[
        "routes",
        "test",
        "--config",
        config,
        strategy.to_str().unwrap(),
    ]);
    assert!(stdout(&output).ends_with("reaches no receiver: no route matched\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn routes_test_names_an_unknown_receiver_and_a_bad_finding() {
    let dir = common::temp_dir("routes-bad");
    let events = common::root().join("tests/golden/auth.events.jsonl");
    let path = config(&dir, &events, "  routes:\n    - receivers: [jria]\n");
    let finding = finding_file(&dir, "f.json", &["design"]);
    let output = common::feedloop(&[
        "routes",
        "test",
        "--config",
        path.to_str().unwrap(),
        finding.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: invalid delivery routes: routes[0]: unknown receiver `jria`; none are configured under delivery.receivers\n"
    );
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"severity\": \"urgent\"}").unwrap();
    let good = config(&dir, &events, "");
    let output = common::feedloop(&[
        "routes",
        "test",
        "--config",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: invalid finding {}: unknown variant `urgent`",
            bad.display()
        )),
        "{stderr}"
    );
    // A hand-written finding needs only the fields the routes match on.
    let minimal = dir.join("minimal.json");
    std::fs::write(
        &minimal,
        "{\"stages\": [\"monitor\"], \"service\": \"shop\"}",
    )
    .unwrap();
    let example = "examples/delivery/feedloop.yaml";
    let output = common::feedloop(&[
        "routes",
        "test",
        "--config",
        example,
        minimal.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout(&output).ends_with("reaches: alertmanager\n"),
        "{}",
        stdout(&output)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gate_hashes_clients_escapes_traffic_text_and_warns_on_unknown_services() {
    let dir = common::temp_dir("gate-hostile");
    let events = dir.join("events.jsonl");
    let service = "pay\\u001b[31mRED\\nforged";
    let lines: String = (0..10)
        .map(|i| {
            format!(
                "{{\"time\":{},\"service\":\"{service}\",\"method\":\"GET\",\"path\":\"/api/orders\",\"status\":401,\"client\":\"10.0.0.9\"}}\n",
                1_767_614_400_000i64 + 10_000 * i
            )
        })
        .collect();
    std::fs::write(&events, lines).unwrap();
    let path = config(&dir, &events, "");
    let run = common::feedloop(&["run", "--config", path.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let state = dir.join("state");
    let gate = common::feedloop(&["gate", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(gate.status.code(), Some(1));
    let text = stdout(&gate);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(
        lines[1].contains(" pay\\u{1b}[31mRED\\u{a}forged [client=hash:"),
        "{text}"
    );
    assert!(!text.contains("10.0.0.9"), "{text}");

    let typo = common::feedloop(&[
        "gate",
        "--state-dir",
        state.to_str().unwrap(),
        "--service",
        "pya",
    ]);
    assert_eq!(typo.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&typo.stderr),
        format!(
            "warning: no finding of service `pya` was ever recorded in {}; known services: pay\\u{{1b}}[31mRED\\u{{a}}forged\n",
            state.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loopback server that stores the JSON body of every request and responds 200.
struct Capture {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start() -> Capture {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/hook", server.server_addr().to_ip().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (incoming, stored) = (server.clone(), bodies.clone());
        let thread = std::thread::spawn(move || {
            for mut request in incoming.incoming_requests() {
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).unwrap();
                stored
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
        Capture {
            url,
            bodies,
            server,
            thread: Some(thread),
        }
    }

    /// Returns the bodies received so far and clears the list.
    fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.bodies.lock().unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Returns a finding's facts about its window: fingerprint, window start, count, measured
/// values and impact.
fn window_facts(finding: &serde_json::Value) -> String {
    let fields = [
        "fingerprint",
        "count",
        "distinct",
        "ratio",
        "total",
        "patterns",
        "impact",
    ];
    let mut facts: Vec<String> = fields.iter().map(|f| finding[f].to_string()).collect();
    facts.push(finding["window"]["start"].to_string());
    facts.join(" ")
}

#[test]
fn every_final_reaches_the_receiver() {
    // The impact example read from a file: for 36 of its 61 finals, the next window of the
    // same fingerprint reported early before them.
    let dir = common::temp_dir("every-final");
    let capture = Capture::start();
    let findings_path = dir.join("findings.jsonl");
    let text = format!(
        "sources:\n  - file: {{paths: [examples/impact/events.jsonl.gz], format: json}}\n\
         time: {{allowed_lateness: 1m}}\n\
         kpi: {{window: 1m, baseline_windows: 30}}\n\
         outputs:\n  console: {{enabled: true, show_early: false}}\n  jsonl: {{path: \"{}\"}}\n\
         delivery:\n  state_dir: \"{}\"\n  receivers:\n    hook:\n      signed_webhook:\n        url: \"{}\"\n        secret: test-secret\n  routes:\n    - name: all\n      match: {{}}\n      receivers: [hook]\n",
        findings_path.display(),
        dir.join("state").display(),
        capture.url,
    );
    let config = dir.join("feedloop.yaml");
    std::fs::write(&config, text).unwrap();
    let run = common::feedloop(&["run", "--config", config.to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout(&run).contains(
            "  lifecycle                 25 opened, 97 updated, 24 resolved, 0 reopened; 0 findings repeated a reported state\n"
        ),
        "{}",
        stdout(&run)
    );
    let findings = common::parse_lines(&std::fs::read(&findings_path).unwrap());
    let posts = capture.take();
    let kinds: Vec<&str> = posts
        .iter()
        .map(|p| p["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 146);
    assert_eq!(kinds.iter().filter(|k| **k == "opened").count(), 25);
    assert_eq!(kinds.iter().filter(|k| **k == "updated").count(), 97);
    assert_eq!(kinds.iter().filter(|k| **k == "resolved").count(), 24);

    // Every final's count, measured values and impact reached the receiver.
    let reported: BTreeSet<String> = posts
        .iter()
        .filter(|p| p["change"] != "resolved")
        .map(|p| window_facts(&p["findings"][0]))
        .collect();
    let finals: Vec<&serde_json::Value> =
        findings.iter().filter(|f| f["phase"] == "final").collect();
    assert_eq!(finals.len(), 61);
    let missing: Vec<String> = finals
        .iter()
        .map(|f| window_facts(f))
        .filter(|facts| !reported.contains(facts))
        .collect();
    assert_eq!(missing, Vec::<String>::new());

    // 36 updates are about a window older than one the receiver had already seen.
    let mut newest_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut older = 0;
    for post in &posts {
        let finding = &post["findings"][0];
        let fingerprint = finding["fingerprint"].as_str().unwrap().to_string();
        let start = finding["window"]["start"].as_str().unwrap().to_string();
        let newest = newest_seen.entry(fingerprint).or_insert(start.clone());
        if start < *newest {
            assert_eq!(post["change"], "updated");
            assert_eq!(finding["phase"], "final");
            older += 1;
        }
        *newest = (*newest).clone().max(start);
    }
    assert_eq!(older, 36);
    // Each fingerprint's last post shows its newest window's final.
    let mut last: BTreeMap<String, &serde_json::Value> = BTreeMap::new();
    for post in &posts {
        let finding = &post["findings"][0];
        last.insert(
            finding["fingerprint"].as_str().unwrap().to_string(),
            finding,
        );
    }
    assert_eq!(last.len(), 25);
    for (fingerprint, finding) in &last {
        assert_eq!(finding["window"]["start"], newest_seen[fingerprint]);
        assert_eq!(finding["phase"], "final", "{fingerprint}");
    }

    // A replay repeats the change ids, so the receiver gets nothing twice. The one finding
    // still open comes from the store, and its windows before the stored one make no change.
    let again = common::feedloop(&["run", "--config", config.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(
        stdout(&again).contains(
            "142 changes, 0 unrouted, 0 folded into groups, 0 queued, 142 skipped as already queued or delivered"
        ),
        "{}",
        stdout(&again)
    );
    assert_eq!(capture.take(), Vec::<serde_json::Value>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}
