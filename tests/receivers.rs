//! Receivers through the whole command, against loopback servers that speak each service's
//! API: a run killed mid-delivery, rate limits, resolve and reopen, grouping.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use feedloop_testkit::github::{GithubMock, Repository};

const GITHUB_TOKEN: &str = "ghp_test_token_never_logged";
const REPO: &str = "example/shop-api";

/// The golden events of all four packs: 15 fingerprints, 35 lifecycle changes.
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

fn command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_feedloop"));
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir(common::root())
        .env("FEEDLOOP_TEST_GITHUB_TOKEN", GITHUB_TOKEN)
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
        // A comment whose answer arrived just before the kill, but whose record did not, is
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
