//! Late events within the allowed lateness, read from a tansu broker after their finding was
//! delivered, change the finding's impact, and the change reaches GitHub and Slack as an
//! update of the issue and the message that already exist.
//!
//! The run reads a live topic. The first part of the traffic opens the finding with fast
//! calls. The test publishes the second part only after GitHub and Slack have received the
//! finding's creates, so the run reads it in a later batch. That part contains slow calls from
//! inside the finding's window, then a call that moves the watermark past the window so the
//! final finding leaves.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use feedloop_testkit::github::GithubMock;
use feedloop_testkit::slack::{SlackMock, OPS_CHANNEL, TOKEN as SLACK_TOKEN};
use feedloop_testkit::tansu::{self, Broker};
use feedloop_testkit::Recorded;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const GITHUB_TOKEN: &str = "ghp_test_token_never_logged";
const REPO: &str = "example/shop-api";
const TOPIC: &str = "api-events";

/// 2026-01-05T12:00:00Z, the start of the finding's 5-minute window.
const T0: i64 = 1_767_614_400_000;

/// The maximum time the test waits for one step of the run.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

const RULE: &str = "id: orders-auth-burst
title: Burst of authentication failures on orders
severity: high
stages: [operate]
match: {status: 401}
group_by: [client]
window: {size: 5m}
threshold: {count: 10}
";

/// Returns one call to `GET /api/orders` of service `shop` as a JSON Lines record.
fn call(offset_ms: i64, client: &str, status: u16, latency_ms: f64) -> String {
    serde_json::json!({
        "time": T0 + offset_ms,
        "service": "shop",
        "method": "GET",
        "route": "/api/orders",
        "path": "/api/orders",
        "status": status,
        "client": client,
        "latency_ms": latency_ms,
    })
    .to_string()
}

/// Returns the first part in time order: ten fast 401s of 10.0.0.1 every 10 s from 0 to 90 s,
/// which open the finding, and nine fast calls of 10.0.0.2 between them. The 401 at 90 s is the
/// newest event, so the finding opens with the KPIs of the whole part.
fn opening_calls() -> Vec<String> {
    let mut calls: Vec<(i64, String)> = (0..9)
        .map(|i| {
            let offset = i * 10_000 + 5_000;
            (offset, call(offset, "10.0.0.2", 200, 10.0))
        })
        .collect();
    calls.extend((0..10).map(|i| {
        let offset = i * 10_000;
        (offset, call(offset, "10.0.0.1", 401, 10.0))
    }));
    calls.sort_by_key(|(offset, _)| *offset);
    calls.into_iter().map(|(_, line)| line).collect()
}

/// Returns the second part: three slow calls at 30 to 32 s, a minute behind the newest event
/// read but within the 2 minutes allowed. A call at 8 minutes follows, and its watermark
/// (8 minutes minus the lateness) passes the window's end.
fn late_calls() -> Vec<String> {
    vec![
        call(30_000, "10.0.0.3", 200, 5_000.0),
        call(31_000, "10.0.0.3", 200, 5_000.0),
        call(32_000, "10.0.0.3", 200, 5_000.0),
        call(480_000, "10.0.0.2", 200, 10.0),
    ]
}

/// Publishes records to the topic's only partition, in order, and waits until the broker has
/// them all.
fn publish(broker: &Broker, records: &[String]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    for record in records {
        producer
            .send(BaseRecord::<(), String>::to(TOPIC).payload(record))
            .unwrap_or_else(|(err, _)| panic!("produce failed: {err}"));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn write_config(dir: &Path, broker: &Broker, github: &GithubMock, slack: &SlackMock) -> PathBuf {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULE).unwrap();
    let text = format!(
        "sources:
  - kafka:
      brokers: \"{brokers}\"
      topic: {TOPIC}
      group_id: feedloop-late-update
      start: earliest
rules: [\"{rules}\"]
time: {{allowed_lateness: 2m}}
outputs:
  console: {{enabled: false}}
  jsonl: {{path: \"{findings}\"}}
dead_letter: {{path: \"{dead_letters}\"}}
delivery:
  state_dir: \"{state}\"
  receivers:
    github:
      github:
        api_url: \"{github}\"
        repo: {REPO}
        token: {{env: FEEDLOOP_TEST_GITHUB_TOKEN}}
        min_write_interval: 1ms
    slack:
      slack:
        api_url: \"{slack}\"
        channel: {OPS_CHANNEL}
        token: {{env: FEEDLOOP_TEST_SLACK_TOKEN}}
        min_interval: 1ms
  routes:
    - receivers: [github, slack]
",
        brokers = broker.address,
        rules = rules.display(),
        findings = dir.join("findings.jsonl").display(),
        dead_letters = dir.join("dead-letters.jsonl").display(),
        state = dir.join("state").display(),
        github = github.url(),
        slack = slack.url(),
    );
    let path = dir.join("feedloop.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `feedloop run` that is killed when the test fails before it stops.
struct Run {
    child: Child,
    dir: PathBuf,
}

impl Run {
    fn start(dir: &Path, config: &Path) -> Run {
        let child = Command::new(env!("CARGO_BIN_EXE_feedloop"))
            .args(["run", "--config", config.to_str().unwrap()])
            .current_dir(common::root())
            .env("FEEDLOOP_TEST_GITHUB_TOKEN", GITHUB_TOKEN)
            .env("FEEDLOOP_TEST_SLACK_TOKEN", SLACK_TOKEN)
            .env("FEEDLOOP_LOG", "debug")
            .stdout(File::create(dir.join("stdout.txt")).unwrap())
            .stderr(File::create(dir.join("stderr.txt")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("the feedloop binary runs");
        Run {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// Polls `done` until it returns true; panics with the run's log after [`STEP_TIMEOUT`] or
    /// when the run exits first.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !done() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "feedloop exited ({status}) before {what}:\n{}",
                    self.output("stderr.txt")
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {STEP_TIMEOUT:?} waiting for {what}:\n{}",
                self.output("stderr.txt")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM, which a live run takes as the request to stop, and waits for the exit.
    fn stop(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed: {sent}");
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "feedloop did not stop within {STEP_TIMEOUT:?} of SIGTERM:\n{}",
                self.output("stderr.txt")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(Recorded::line).collect()
}

/// Returns the text charts between the Markdown body's `**Impact**` fence and its end.
fn markdown_impact(body: &str) -> &str {
    let start = body
        .find("\n**Impact**\n\n```text\n")
        .unwrap_or_else(|| panic!("no impact in the body:\n{body}"));
    let rest = &body[start + "\n**Impact**\n\n```text\n".len()..];
    &rest[..rest.find("\n```").expect("the impact fence closes")]
}

/// Returns the text of the Slack section that starts with `*Impact*`.
fn slack_impact(blocks: &Value) -> String {
    blocks
        .as_array()
        .expect("blocks are an array")
        .iter()
        .filter_map(|block| block["text"]["text"].as_str())
        .find(|text| text.starts_with("*Impact*"))
        .unwrap_or_else(|| panic!("no impact section in {blocks}"))
        .to_string()
}

/// Returns the during-the-finding KPIs of a finding's only affected route.
fn during(finding: &Value) -> &Value {
    let routes = finding["impact"]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{finding}");
    assert_eq!(routes[0]["route"], "GET /api/orders");
    &routes[0]["during"]
}

/// The text chart of the route when the finding opened: 19 fast calls in two KPI windows.
/// Latencies are the sketch's, within its 1% relative error: 10 ms reads 10.07 ms and
/// 5000 ms reads 4965 ms.
const FAST_CHART: &str =
    "GET /api/orders on shop: 2 windows of 1m, 2026-01-05T12:00:00Z to 2026-01-05T12:02:00Z
matches █▁  4 to 6 per window
p99     ▁▁  10.1 ms to 10.1 ms
errors  ▁█  50% to 57.1%
finding ^^  2 windows in the finding";

/// The text chart of the route after the late calls: the first window's p99 is theirs.
const SLOW_CHART: &str =
    "GET /api/orders on shop: 2 windows of 1m, 2026-01-05T12:00:00Z to 2026-01-05T12:02:00Z
matches █▁  4 to 6 per window
p99     █▁  10.1 ms to 4965 ms
errors  ▁█  40% to 57.1%
finding ^^  2 windows in the finding";

#[test]
fn late_events_update_delivered_finding() {
    let broker = tansu::start();
    broker.create_topic(TOPIC, 1);
    let github = GithubMock::start(GITHUB_TOKEN, &[REPO]);
    let slack = SlackMock::start();
    let dir = common::temp_dir("late-update");
    let config = write_config(&dir, &broker, &github, &slack);

    publish(&broker, &opening_calls());
    let mut run = Run::start(&dir, &config);
    let created = |path: &str, requests: Vec<Recorded>| {
        requests
            .iter()
            .any(|request| request.method == "POST" && request.path == path)
    };
    run.wait_for("the GitHub issue and the Slack message", || {
        created("/repos/example/shop-api/issues", github.requests())
            && created("/chat.postMessage", slack.requests())
    });

    publish(&broker, &late_calls());
    run.wait_for("the update at GitHub and Slack", || {
        github.requests().len() >= 3 && slack.requests().len() >= 4
    });
    let status = run.stop();
    let stdout = run.output("stdout.txt");
    assert!(
        status.success(),
        "{status}\nstdout:\n{stdout}\nstderr:\n{}",
        run.output("stderr.txt")
    );

    // The run read every call, none of them late, and made one opening and one update.
    assert_eq!(
        common::summary_count(&stdout, "records read"),
        23,
        "{stdout}"
    );
    assert_eq!(common::summary_count(&stdout, "late"), 0, "{stdout}");
    assert!(
        stdout.contains(
            " 1 opened, 1 updated, 0 resolved, 0 reopened; 0 findings repeated a reported state\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("    github: 2 applied, 0 skipped, 0 retried, "),
        "{stdout}"
    );
    assert!(
        stdout.contains("    slack: 2 applied, 0 skipped, 0 retried, "),
        "{stdout}"
    );

    // The early finding saw the fast calls only. The final one counts the late ones too, and
    // its p99, the latency at rank floor(0.99 * 21) = 20 of 22, is one of the slow calls.
    let findings = common::parse_lines(&std::fs::read(dir.join("findings.jsonl")).unwrap());
    let phases: Vec<&str> = findings
        .iter()
        .map(|f| f["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["early", "final"]);
    let fingerprint = findings[0]["fingerprint"].as_str().unwrap();
    assert_eq!(findings[1]["fingerprint"], fingerprint);
    assert_eq!(findings[0]["count"], 10);
    assert_eq!(findings[1]["count"], 10);
    assert_eq!(during(&findings[0])["requests"], 19);
    assert_eq!(during(&findings[0])["p99_ms"], 10.0747);
    assert_eq!(during(&findings[1])["requests"], 22);
    assert_eq!(during(&findings[1])["p99_ms"], 4965.3233);

    // GitHub: one issue, created with the fast impact, then one comment with the slow one.
    let requests = github.requests();
    assert_eq!(
        lines(&requests),
        [
            "GET /repos/example/shop-api",
            "POST /repos/example/shop-api/issues",
            "POST /repos/example/shop-api/issues/1/comments",
        ]
    );
    let marker = format!("feedloop-{}", &fingerprint[..16]);
    let create = requests[1].json();
    assert_eq!(
        create["title"],
        "Burst of authentication failures on orders: client=hash:f5047344122f"
    );
    assert_eq!(
        create["labels"],
        serde_json::json!(["feedloop", marker, "severity:high", "service:shop"])
    );
    let body = create["body"].as_str().unwrap();
    assert!(body.starts_with("- **Change:** opened\n"), "{body}");
    assert_eq!(markdown_impact(body), FAST_CHART);
    let comment = requests[2].json()["body"].as_str().unwrap().to_string();
    assert!(
        comment.starts_with(
            "**Updated:** the condition still holds; the facts below are the latest for their \
             window. Impact now: \
             `22 requests on GET /api/orders during the finding, p99 latency 4965 ms, error rate \
             45%, no baseline to compare with; 100% of its errors from \
             client=hash:f5047344122f`.\n\n- **Change:** updated\n"
        ),
        "{comment}"
    );
    assert!(
        comment.contains("\n- **Measured:** count 10\n"),
        "{comment}"
    );
    assert_eq!(markdown_impact(&comment), SLOW_CHART);
    let repo = github.repo(REPO);
    assert_eq!(repo.issues.len(), 1);
    assert_eq!(repo.issues[0].state, "open");
    assert_eq!(repo.issues[0].comments, [comment]);

    // Slack: one message, posted with the fast impact, edited to the slow one, and one reply.
    let requests = slack.requests();
    assert_eq!(
        lines(&requests),
        [
            "POST /auth.test",
            "POST /chat.postMessage",
            "POST /chat.update",
            "POST /chat.postMessage",
        ]
    );
    let post = requests[1].json();
    assert_eq!(post["channel"], OPS_CHANNEL);
    assert_eq!(post["metadata"]["event_payload"]["key"], fingerprint);
    assert_eq!(
        slack_impact(&post["blocks"]),
        format!("*Impact*\n```\n{FAST_CHART}\n```")
    );
    let messages = slack.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let ts = messages[0].ts.clone();
    let edit = requests[2].json();
    assert_eq!(edit["channel"], OPS_CHANNEL);
    assert_eq!(edit["ts"], ts.as_str());
    assert_eq!(
        slack_impact(&edit["blocks"]),
        format!("*Impact*\n```\n{SLOW_CHART}\n```")
    );
    let context = edit["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|block| block["type"] == "context")
        .expect("the edit has a context block");
    assert_eq!(
        context["elements"][0]["text"],
        format!(
            "Last change: *updated*, last seen 2026-01-05T12:01:30.000Z | Fingerprint `{fingerprint}` | {marker}"
        )
    );
    let reply = requests[3].json();
    assert_eq!(reply["thread_ts"], ts.as_str());
    assert_eq!(
        reply["text"],
        "*Updated:* count 10 in the window 2026-01-05T12:00:00Z to 2026-01-05T12:05:00Z, last seen \
         2026-01-05T12:01:30.000Z. Impact now: 22 requests on GET /api/orders during the finding, \
         p99 latency 4965 ms, error rate 45%, no baseline to compare with; 100% of its errors \
         from client=10.0.0.1."
    );
    assert_eq!(messages[0].edits, 1);
    assert_eq!(messages[0].replies.len(), 1);
    assert_eq!(
        messages[0].block_text(0).unwrap(),
        "Open: Burst of authentication failures on orders: client=10.0.0.1"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
