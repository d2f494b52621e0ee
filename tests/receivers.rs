//! Receivers through the whole command, against loopback servers that speak each service's
//! API: a run killed mid-delivery, rate limits, resolve and reopen, grouping.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use feedloop_testkit::github::{GithubMock, Repository};
use feedloop_testkit::jira::{MockJira, Setup};
use feedloop_testkit::slack::{SlackMock, OPS_CHANNEL, TOKEN as SLACK_TOKEN};
use feedloop_testkit::{Fault, Reply};

const GITHUB_TOKEN: &str = "ghp_test_token_never_logged";
const REPO: &str = "example/shop-api";

/// Returns the golden events of all four packs: 15 fingerprints, 42 lifecycle changes.
fn golden_events() -> Vec<PathBuf> {
    ["auth", "errors", "injection", "recon"]
        .iter()
        .map(|pack| common::root().join(format!("tests/golden/{pack}.events.jsonl")))
        .collect()
}

/// Writes a configuration over `events` that sends every change to the given receivers.
fn write_config(dir: &Path, events: &[PathBuf], receivers: &str, routes: &str) -> PathBuf {
    let paths: Vec<String> = events
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let text = format!(
        "sources:\n  - file: {{paths: [{}], format: json}}\n\
         time: {{allowed_lateness: 1m, resolve_after: 10m}}\n\
         outputs:\n  console: {{enabled: false}}\n\
         delivery:\n  state_dir: \"{}\"\n  retry: {{max_attempts: 5, initial_backoff: 50ms, max_backoff: 200ms}}\n  receivers:\n{receivers}  routes:\n{routes}",
        paths.join(", "),
        dir.join("state").display(),
    );
    let path = dir.join("feedloop.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn github_receiver(url: &str, interval: &str) -> String {
    format!(
        "    github:\n      github:\n        api_url: \"{url}\"\n        repo: {REPO}\n        token: {{env: FEEDLOOP_TEST_GITHUB_TOKEN}}\n        min_write_interval: {interval}\n"
    )
}

fn slack_receiver(url: &str) -> String {
    format!(
        "    slack:\n      slack:\n        api_url: \"{url}\"\n        token: {{env: FEEDLOOP_TEST_SLACK_TOKEN}}\n        min_interval: 1ms\n"
    )
}

fn jira_receiver(jira: &MockJira, token: &str) -> String {
    std::fs::write(jira_token_file(), token).unwrap();
    format!(
        "    jira:\n      jira:\n        base_url: \"{}\"\n        email: bot@example.com\n        token: {{file: \"{}\"}}\n",
        jira.url(),
        jira_token_file().display()
    )
}

fn jira_token_file() -> PathBuf {
    std::env::temp_dir().join(format!("feedloop-test-jira-token-{}", std::process::id()))
}

fn command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedloop"));
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir(common::root())
        .env("FEEDLOOP_TEST_GITHUB_TOKEN", GITHUB_TOKEN)
        .env("FEEDLOOP_TEST_SLACK_TOKEN", SLACK_TOKEN)
        .env("FEEDLOOP_LOG", "debug");
    command
}

fn run(config: &Path) -> Output {
    command(config).output().expect("the feedloop binary runs")
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns each issue by its marker label: (state, comment count, title).
fn issues_by_marker(repo: &Repository) -> BTreeMap<String, (String, usize, String)> {
    let mut out = BTreeMap::new();
    for issue in &repo.issues {
        let marker = issue
            .labels
            .iter()
            .find(|l| l.starts_with("feedloop-"))
            .unwrap_or_else(|| {
                panic!(
                    "issue #{} has no marker label: {:?}",
                    issue.number, issue.labels
                )
            })
            .clone();
        let previous = out.insert(
            marker.clone(),
            (
                issue.state.clone(),
                issue.comments.len(),
                issue.title.clone(),
            ),
        );
        assert!(previous.is_none(), "two issues carry the marker {marker}");
    }
    out
}

#[test]
fn a_run_killed_mid_delivery_and_run_again_leaves_one_issue_per_fingerprint() {
    // The reference: the same input delivered without interruption.
    let reference_dir = common::temp_dir("restart-reference");
    let reference_mock = GithubMock::start(GITHUB_TOKEN, &[REPO]);
    let routes = "    - receivers: [github]\n";
    let config = write_config(
        &reference_dir,
        &golden_events(),
        &github_receiver(reference_mock.url(), "1ms"),
        routes,
    );
    assert_success(&run(&config));
    let expected = issues_by_marker(&reference_mock.repo(REPO));
    assert_eq!(expected.len(), 15);

    // Writes are spaced by 100ms, so the kill lands while most changes wait in the outbox.
    let dir = common::temp_dir("restart");
    let mock = GithubMock::start(GITHUB_TOKEN, &[REPO]);
    let config = write_config(
        &dir,
        &golden_events(),
        &github_receiver(mock.url(), "100ms"),
        routes,
    );
    let mut child = command(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.repo(REPO).issues.len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = mock.repo(REPO).issues.len();
    assert!((5..15).contains(&before), "{before} issues before the kill");

    let output = run(&config);
    assert_success(&output);
    let actual = issues_by_marker(&mock.repo(REPO));
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "one issue per fingerprint, the same fingerprints as without the kill"
    );
    for (marker, (state, comments, title)) in &expected {
        let (actual_state, actual_comments, actual_title) = &actual[marker];
        assert_eq!((actual_state, actual_title), (state, title), "{marker}");
        // A comment whose response arrived just before the kill, but whose record did not, is
        // posted again: at most one extra per run that was killed.
        assert!(
            (*comments..=*comments + 1).contains(actual_comments),
            "{marker}: {actual_comments} comments, {comments} without the kill"
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains(GITHUB_TOKEN)
            && !String::from_utf8_lossy(&output.stderr).contains(GITHUB_TOKEN)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&reference_dir);
}

/// Writes JSON Lines events for service `shop`: `count` 401s of one client, 10 seconds apart,
/// starting at `start_ms`.
fn failures(client: &str, start_ms: i64, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{{\"time\":{},\"service\":\"shop\",\"method\":\"GET\",\"path\":\"/api/orders\",\"status\":401,\"client\":\"{client}\"}}\n",
                start_ms + 10_000 * i as i64
            )
        })
        .collect()
}

/// 2026-01-05T12:00:00Z.
const T0: i64 = 1_767_614_400_000;
const HOUR: i64 = 3_600_000;

const CATALOG: &str = "  services:\n    shop:\n      jira_project: PAY\n      github_repo: example/shop-api\n      slack_channel: C01OPS\n";

#[test]
fn resolve_and_reopen_reach_jira_github_and_slack() {
    let dir = common::temp_dir("resolve-reopen");
    // A burst opens the finding; an hour later another client's request moves the watermark
    // past its resolve deadline; a second burst an hour after that reopens it.
    let events = dir.join("events.jsonl");
    let filler = "{\"time\":1767618000000,\"service\":\"shop\",\"method\":\"GET\",\"path\":\"/\",\"status\":200,\"client\":\"10.9.9.9\"}\n";
    std::fs::write(
        &events,
        [
            failures("10.0.0.1", T0, 10),
            filler.to_string(),
            failures("10.0.0.1", T0 + 2 * HOUR, 10),
        ]
        .concat(),
    )
    .unwrap();
    let jira = MockJira::start(Setup::cloud());
    let github = GithubMock::start(GITHUB_TOKEN, &[REPO]);
    let slack = SlackMock::start();
    let receivers = [
        jira_receiver(&jira, &Setup::cloud().token),
        github_receiver(github.url(), "1ms"),
        slack_receiver(slack.url()),
    ]
    .concat();
    let routes = format!("    - match: {{rules: [auth-failure-burst]}}\n      receivers: [jira, github, slack]\n{CATALOG}");
    let config = write_config(&dir, &[events], &receivers, &routes);
    let output = run(&config);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "1 opened, 2 updated, 1 resolved, 1 reopened; 0 findings repeated a reported state\n"
        ),
        "{stdout}"
    );

    let issues = jira.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].project, "PAY");
    assert_eq!(issues[0].transitions, ["Done", "Reopen"]);
    assert_eq!(issues[0].status, "To Do");
    // It resolves and reopens. Then the final of each burst updates it, because its impact
    // covers the whole window where the early one covered the windows up to its last failure.
    // The first burst's final comes after the reopening because the file is read in one batch.
    assert_eq!(issues[0].comments.len(), 4);

    let repo = github.repo(REPO);
    assert_eq!(repo.issues.len(), 1);
    assert_eq!(repo.issues[0].state, "open");
    let patches: Vec<String> = github
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.json()["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(patches, ["closed", "open"]);

    let messages = slack.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1);
    let replies: Vec<&str> = messages[0]
        .replies
        .iter()
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(
        replies,
        [
            "*Resolved:* the condition `count &gt;= 10` has not held for the rule's resolve period. Last count 10, last seen 2026-01-05T12:01:30.000Z.",
            "*Reopened:* the condition `count &gt;= 10` holds again: count 10 in the window 2026-01-05T14:00:00Z to 2026-01-05T14:05:00Z.",
            "*Updated:* count 10 in the window 2026-01-05T12:00:00Z to 2026-01-05T12:05:00Z, last seen 2026-01-05T12:01:30.000Z. Impact now: 10 requests on GET /api/orders during the finding, error rate 100%, no baseline to compare with; 100% of its errors from client=10.0.0.1.",
            "*Updated:* count 10 in the window 2026-01-05T14:00:00Z to 2026-01-05T14:05:00Z, last seen 2026-01-05T14:01:30.000Z. Impact now: on GET /api/orders during the finding, 4xx rate 0% to 100%; 100% of its errors from client=10.0.0.1.",
        ]
    );
    assert!(
        messages[0].block_text(0).unwrap().starts_with("Open: "),
        "{:?}",
        messages[0].blocks
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fifty_findings_within_the_group_wait_become_one_slack_message() {
    let dir = common::temp_dir("group-fifty");
    let events = dir.join("events.jsonl");
    // 50 clients fail 10 times each within the same 100 seconds, in time order.
    let mut lines: Vec<String> = (0..50)
        .flat_map(|i| {
            failures(&format!("10.0.1.{i}"), T0 + i as i64, 10)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort_by_key(|line| {
        serde_json::from_str::<serde_json::Value>(line).unwrap()["time"]
            .as_i64()
            .unwrap()
    });
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let slack = SlackMock::start();
    let routes = format!(
        "    - receivers: [slack]\n      group_by: [rule_id]\n      group_wait: 30s\n{CATALOG}"
    );
    let config = write_config(&dir, &[events], &slack_receiver(slack.url()), &routes);
    let output = run(&config);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("100 changes, 0 unrouted, 99 folded into groups, 1 queued"),
        "{stdout}"
    );
    let messages = slack.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        messages[0].block_text(0).unwrap(),
        "Open: Burst of authentication failures from one client: 50 findings with rule_id=auth-failure-burst"
    );
    assert!(
        messages[0].text.contains("50 findings"),
        "{}",
        messages[0].text
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rate_limited_receiver_waits_while_the_others_deliver() {
    let dir = common::temp_dir("rate-limit");
    let github = GithubMock::start(GITHUB_TOKEN, &[REPO]);
    github.fail(
        Fault::next(
            2,
            Reply::json(429, serde_json::json!({"message": "slow down"}))
                .with_header("retry-after", "2"),
        )
        .on("POST", "/repos/"),
    );
    let slack = SlackMock::start();
    let receivers = [
        github_receiver(github.url(), "1ms"),
        slack_receiver(slack.url()),
    ]
    .concat();
    let routes = format!("    - receivers: [github, slack]\n{CATALOG}");
    let config = write_config(&dir, &golden_events(), &receivers, &routes);
    let output = run(&config);
    assert_success(&output);

    let requests = github.requests();
    let limited: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].method == "POST" && i + 1 < requests.len())
        .take(2)
        .collect();
    assert_eq!(limited.len(), 2);
    for &i in &limited {
        let gap = requests[i + 1].at - requests[i].at;
        assert!(
            gap >= Duration::from_secs(2),
            "request {} came {gap:?} after a 429 asking for 2s",
            i + 1
        );
    }
    // Slack delivered during GitHub's first wait.
    let first_limit = requests[limited[0]].at;
    let during = slack
        .requests()
        .iter()
        .filter(|r| r.at > first_limit && r.at < first_limit + Duration::from_secs(2))
        .count();
    assert!(during > 0, "no Slack request while GitHub waited");
    // Nothing was lost: every fingerprint reached both.
    assert_eq!(issues_by_marker(&github.repo(REPO)).len(), 15);
    assert_eq!(slack.messages(OPS_CHANNEL).len(), 15);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("    github: 42 applied, 0 skipped, 2 retried"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
