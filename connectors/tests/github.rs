//! The GitHub receiver against the loopback GitHub mock: the exact requests it sends for each
//! change, the mock's resulting state, and how GitHub's error responses are classed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use feedloop_connectors::chart;
use feedloop_connectors::delivery::github::{GithubConfig, GithubReceiver};
use feedloop_connectors::delivery::render::{self, Redaction};
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::impact::{Impact, RouteImpact};
use feedloop_pipeline::Finding;
use feedloop_testkit::github::{primary_rate_limit, secondary_rate_limit, unix_now, GithubMock};
use feedloop_testkit::{Fault, Reply};

const TOKEN: &str = "ghp_test_token_4f1d9c";
const REPO: &str = "acme/accounts";
const MAIN_SHA: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const KEY: &str = "0123456789abcdef0123456789abcdef";
const MARKER: &str = "feedloop-0123456789abcdef";

/// Records what the receiver reports, with the number of requests the mock had received when
/// each create was reported.
struct Recorder<'a> {
    mock: &'a GithubMock,
    created: Vec<(Remote, usize)>,
    render_failures: Vec<String>,
}

impl<'a> Recorder<'a> {
    fn new(mock: &'a GithubMock) -> Recorder<'a> {
        Recorder {
            mock,
            created: Vec::new(),
            render_failures: Vec::new(),
        }
    }
}

impl Progress for Recorder<'_> {
    fn created(&mut self, remote: &Remote) {
        self.created
            .push((remote.clone(), self.mock.requests().len()));
    }

    fn render_failed(&mut self, reason: &str) {
        self.render_failures.push(reason.to_string());
    }
}

fn finding() -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["test", "build"],
        "tags": ["owasp-api2"],
        "service": "accounts",
        "group": {"client": "203.0.113.9", "principal": "alice"},
        "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
        "condition": "count >= 20",
        "count": 20,
        "first_seen": "2026-12-04T10:00:01.000Z",
        "last_seen": "2026-12-04T10:01:00.000Z",
        "evidence": [{
            "time": "2026-12-04T10:00:01.000Z",
            "method": "POST",
            "path": "/login",
            "query": "user=alice&pw=x",
            "status": 401,
            "client": "203.0.113.9",
            "principal": "alice",
            "user_agent": "curl/8",
            "matched": {"pattern": "sqli", "field": "query", "excerpt": "pw=x"}
        }]
    }))
    .unwrap()
}

fn notice(kind: ChangeKind) -> Notice {
    Notice {
        key: KEY.into(),
        change_id: format!("change-{kind}"),
        kind,
        findings: vec![finding()],
        group: None,
        target: Target {
            service: "accounts".into(),
            owners: vec!["team-identity".into()],
            github_repo: Some(REPO.into()),
            github_assignees: vec!["alice-dev".into()],
            ..Target::default()
        },
    }
}

/// Returns a notice for a second finding of the same service, with its own key.
fn other_notice(kind: ChangeKind) -> Notice {
    let mut notice = notice(kind);
    notice.key = "fedcba9876543210fedcba9876543210".into();
    notice.findings[0].fingerprint = notice.key.clone();
    notice.findings[0].title = "Credential stuffing".into();
    notice
}

fn start_mock() -> GithubMock {
    let mock = GithubMock::start(TOKEN, &[REPO, "acme/other"]);
    mock.update_repo(REPO, |repo| {
        repo.assignable = vec!["alice-dev".into(), "octocat".into()];
        repo.refs.insert("main".into(), MAIN_SHA.into());
    });
    mock
}

fn base_config(mock: &GithubMock) -> Value {
    json!({
        "api_url": mock.url(),
        "token": TOKEN,
        "labels": ["security"],
        "min_write_interval": "0ms",
        "timeout": "5s",
    })
}

fn receiver(config: Value) -> GithubReceiver {
    let config: GithubConfig = serde_json::from_value(config).unwrap();
    GithubReceiver::new("gh", &config).unwrap()
}

fn with(mut config: Value, key: &str, value: Value) -> Value {
    config[key] = value;
    config
}

fn issue_url(mock: &GithubMock, number: u64) -> String {
    format!("{}/{REPO}/issues/{number}", mock.url())
}

fn remote(mock: &GithubMock, number: u64, open: bool) -> Remote {
    Remote {
        id: number.to_string(),
        url: Some(issue_url(mock, number)),
        open,
        extra: BTreeMap::from([("repo".to_string(), REPO.to_string())]),
    }
}

fn public(notice: &Notice) -> Notice {
    let mut redacted = notice.clone();
    redacted.findings = vec![Redaction::public().apply(notice.finding())];
    redacted
}

fn applied(effect: Effect) -> Remote {
    match effect {
        Effect::Applied(remote) => remote,
        other => panic!("expected an applied change, got {other:?}"),
    }
}

fn rejection(err: DeliveryError) -> (String, Option<u16>, bool) {
    match err {
        DeliveryError::Reject {
            reason,
            status,
            fallback,
            ..
        } => (reason, status, fallback),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn retry_wait(err: DeliveryError) -> Option<Duration> {
    match err {
        DeliveryError::Retry { after, .. } => after,
        other => panic!("expected a retry, got {other:?}"),
    }
}

/// Creates the issue for `notice(Opened)` and returns its remote.
fn create(receiver: &mut GithubReceiver, mock: &GithubMock) -> Remote {
    let mut progress = Recorder::new(mock);
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    applied(effect)
}

#[test]
fn create_sends_issue_and_reports_it_first() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let expected = remote(&mock, 1, true);
    assert_eq!(effect, Effect::Applied(expected.clone()));
    assert_eq!(progress.created, [(expected, 1)]);
    assert!(progress.render_failures.is_empty());

    assert_eq!(mock.lines(), ["POST /repos/acme/accounts/issues"]);
    let request = &mock.requests()[0];
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(request.header("authorization"), Some(bearer.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let redacted = public(&notice(ChangeKind::Opened));
    let title = format!(
        "Repeated failed logins: client={}, principal={}",
        render::hash_value("203.0.113.9"),
        render::hash_value("alice")
    );
    let body = render::markdown(&redacted, redacted.finding(), None);
    assert_eq!(
        request.json(),
        json!({
            "title": title,
            "body": body,
            "labels": ["security", "feedloop", MARKER, "severity:high", "service:accounts"],
            "assignees": ["alice-dev"],
        })
    );

    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert_eq!(issue.title, title);
    assert_eq!(issue.state, "open");
    assert!(issue.body.ends_with(&format!("<!-- {MARKER} -->")));
    assert_eq!(issue.assignees, ["alice-dev"]);
}

#[test]
fn update_comments_on_open_issue() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    let update = notice(ChangeKind::Updated);
    let effect = receiver
        .apply(&update, Some(&created), Rendering::Full, &mut progress)
        .unwrap();

    assert_eq!(effect, Effect::Applied(remote(&mock, 1, true)));
    assert!(progress.created.is_empty());
    assert_eq!(
        mock.lines()[1..],
        ["POST /repos/acme/accounts/issues/1/comments"]
    );
    let redacted = public(&update);
    let lead =
        "**Updated:** the condition still holds; the facts below are the latest for their window.";
    let body = render::markdown(&redacted, redacted.finding(), Some(lead));
    assert_eq!(mock.requests()[1].json(), json!({"body": body}));
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert_eq!(issue.state, "open");
    assert_eq!(issue.comments, [body]);
}

#[test]
fn update_goes_to_stored_repo() {
    let mock = start_mock();
    mock.update_repo("acme/other", |repo| {
        repo.add_issue("moved", &[MARKER], false);
    });
    let mut receiver = receiver(base_config(&mock));
    let mut stored = remote(&mock, 1, true);
    stored.extra.insert("repo".into(), "acme/other".into());
    let mut progress = Recorder::new(&mock);
    let effect = receiver
        .apply(
            &notice(ChangeKind::Updated),
            Some(&stored),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(applied(effect).extra["repo"], "acme/other");
    assert_eq!(mock.lines(), ["POST /repos/acme/other/issues/1/comments"]);
    assert_eq!(mock.repo("acme/other").issue(1).unwrap().comments.len(), 1);
}

#[test]
fn resolve_closes_as_completed_with_comment() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    let effect = receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&created),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(effect, Effect::Applied(remote(&mock, 1, false)));
    assert_eq!(
        mock.lines()[1..],
        [
            "PATCH /repos/acme/accounts/issues/1",
            "POST /repos/acme/accounts/issues/1/comments"
        ]
    );
    let requests = mock.requests();
    assert_eq!(
        requests[1].json(),
        json!({"state": "closed", "state_reason": "completed"})
    );
    let comment = requests[2].json()["body"].as_str().unwrap().to_string();
    assert!(
        comment.starts_with(
            "**Resolved:** the condition has not held for the rule's resolve period.\n\n"
        ),
        "{comment}"
    );
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert_eq!(issue.state, "closed");
    assert_eq!(issue.state_reason.as_deref(), Some("completed"));
    assert_eq!(issue.comments, [comment]);
}

#[test]
fn reopen_patches_open_and_says_why() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    let closed = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved),
                Some(&created),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    let before = mock.requests().len();
    let effect = receiver
        .apply(
            &notice(ChangeKind::Reopened),
            Some(&closed),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(effect, Effect::Applied(remote(&mock, 1, true)));
    assert_eq!(
        mock.lines()[before..],
        [
            "PATCH /repos/acme/accounts/issues/1",
            "POST /repos/acme/accounts/issues/1/comments"
        ]
    );
    let requests = mock.requests();
    assert_eq!(requests[before].json(), json!({"state": "open"}));
    let comment = requests[before + 1].json()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        comment.starts_with("**Reopened:** the condition holds again (change: reopened).\n\n"),
        "{comment}"
    );
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert_eq!(issue.state, "open");
    assert_eq!(issue.state_reason.as_deref(), Some("reopened"));
    assert_eq!(issue.comments.len(), 2);
}

#[test]
fn resolve_without_open_issue_skips() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let resolved = notice(ChangeKind::Resolved);

    let effect = receiver
        .apply(&resolved, None, Rendering::Full, &mut progress)
        .unwrap();
    assert_eq!(
        effect,
        Effect::Skipped("no issue exists for this finding, so there is nothing to close".into())
    );
    let closed = remote(&mock, 4, false);
    let effect = receiver
        .apply(&resolved, Some(&closed), Rendering::Full, &mut progress)
        .unwrap();
    assert_eq!(effect, Effect::Skipped("issue #4 is already closed".into()));
    assert!(mock.requests().is_empty());
}

#[test]
fn minimal_fallback_after_400() {
    let mock = start_mock();
    mock.fail(
        Fault::next(
            1,
            Reply::json(400, json!({"message": "Problems parsing JSON"})),
        )
        .on("POST", "/repos/acme/accounts/issues"),
    );
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let opened = notice(ChangeKind::Opened);
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    let (reason, status, fallback) = rejection(err);
    assert_eq!(status, Some(400));
    assert!(fallback);
    assert!(
        reason.ends_with("returned HTTP 400: Problems parsing JSON"),
        "{reason}"
    );
    assert!(progress.created.is_empty());

    let effect = receiver
        .apply(&opened, None, Rendering::Minimal, &mut progress)
        .unwrap();
    assert_eq!(effect, Effect::Applied(remote(&mock, 1, true)));
    assert_eq!(
        mock.requests()[1].json(),
        json!({
            "title": "Repeated failed logins",
            "body": format!(
                "- **Title:** Repeated failed logins\n- **Rule:** login-bruteforce\n\
                 - **Severity:** high\n- **Fingerprint:** {KEY}\n\n<!-- {MARKER} -->"
            ),
            "labels": ["feedloop", MARKER, "severity:high", "service:accounts"],
            "assignees": [],
        })
    );
}

#[test]
fn validation_422_names_field_errors() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let mut opened = notice(ChangeKind::Opened);
    opened.target.github_assignees = vec!["ghost".into()];
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    let (reason, status, fallback) = rejection(err);
    assert_eq!(status, Some(422));
    assert!(fallback);
    assert!(
        reason.ends_with(
            "returned HTTP 422: Validation Failed: Issue.assignees invalid (value \"ghost\")"
        ),
        "{reason}"
    );
    assert!(mock.repo(REPO).issues.is_empty());

    let effect = receiver
        .apply(&opened, None, Rendering::Minimal, &mut progress)
        .unwrap();
    assert_eq!(applied(effect).id, "1");
    assert!(mock.repo(REPO).issue(1).unwrap().assignees.is_empty());
}

#[test]
fn permission_403_is_rejected() {
    let mock = start_mock();
    mock.update_repo(REPO, |repo| repo.push = false);
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    let (reason, status, fallback) = rejection(err);
    assert_eq!(status, Some(403));
    assert!(!fallback);
    assert!(
        reason.contains(
            "returned HTTP 403: Resource not accessible by personal access token; give the \
             token write access"
        ),
        "{reason}"
    );
    assert_eq!(mock.requests().len(), 1);
}

#[test]
fn disabled_issues_and_unknown_repo_are_rejected() {
    let mock = start_mock();
    mock.update_repo(REPO, |repo| repo.has_issues = false);
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    let (reason, status, fallback) = rejection(err);
    assert_eq!(status, Some(410));
    assert!(!fallback);
    assert!(
        reason.contains("Issues are disabled for this repo; issues are disabled in acme/accounts"),
        "{reason}"
    );

    let mut missing = notice(ChangeKind::Opened);
    missing.target.github_repo = Some("acme/missing".into());
    let err = receiver
        .apply(&missing, None, Rendering::Full, &mut progress)
        .unwrap_err();
    let (reason, status, _) = rejection(err);
    assert_eq!(status, Some(404));
    assert!(
        reason.contains("Not Found; check that acme/missing and the issue or ref exist"),
        "{reason}"
    );
}

#[test]
fn missing_repo_rejected_and_missing_ref_skips_status() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let mut opened = notice(ChangeKind::Opened);
    opened.target.github_repo = None;
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::reject(
            "no GitHub repository for service `accounts`: set `github_repo` for it in the \
             service catalog, or `repo` in the github receiver `gh`"
        )
    );

    let mut receiver = self::receiver(with(
        base_config(&mock),
        "commit_status",
        json!({"context": "feedloop"}),
    ));
    // Without a commit ref the issue is still created; only the status is left out.
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert!(matches!(effect, Effect::Applied(_)), "{effect:?}");
    assert_eq!(mock.lines(), ["POST /repos/acme/accounts/issues"]);
}

#[test]
fn retry_after_429() {
    let mock = start_mock();
    mock.fail(Fault::next(
        1,
        Reply::empty(429).with_header("retry-after", "2"),
    ));
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let opened = notice(ChangeKind::Opened);
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert_eq!(retry_wait(err), Some(Duration::from_secs(2)));
    assert!(progress.created.is_empty());

    let effect = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap();
    assert_eq!(applied(effect).id, "1");
    assert_eq!(mock.repo(REPO).issues.len(), 1);
}

#[test]
fn primary_rate_limit_waits_until_reset() {
    let mock = start_mock();
    mock.fail(Fault::next(1, primary_rate_limit(unix_now() + 30)));
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    let wait = retry_wait(err).unwrap();
    assert!(wait > Duration::from_secs(25), "{wait:?}");
    assert!(wait <= Duration::from_secs(30), "{wait:?}");
}

#[test]
fn secondary_rate_limit_waits() {
    let mock = start_mock();
    mock.fail(Fault::next(1, secondary_rate_limit(Some(7))));
    mock.fail(Fault::next(1, secondary_rate_limit(None)));
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let opened = notice(ChangeKind::Opened);

    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert_eq!(retry_wait(err), Some(Duration::from_secs(7)));
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert_eq!(retry_wait(err), Some(Duration::from_secs(60)));
    assert!(mock.repo(REPO).issues.is_empty());
}

#[test]
fn recover_finds_interrupted_create() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    // The create reached GitHub, but its remote was never stored.
    let lost = create(&mut receiver, &mock);
    let mut restarted = self::receiver(base_config(&mock));
    let recovered = restarted.recover(&notice(ChangeKind::Opened)).unwrap();

    assert_eq!(recovered, Some(lost));
    let request = mock.requests().last().cloned().unwrap();
    assert_eq!(request.line(), "GET /repos/acme/accounts/issues");
    assert_eq!(
        request.query,
        format!("labels={MARKER}&state=all&per_page=100")
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(request.header("authorization"), Some(bearer.as_str()));
}

#[test]
fn recover_sees_closed_issues_and_skips_pull_requests() {
    let mock = start_mock();
    let other_marker = render::marker(&other_notice(ChangeKind::Opened).key);
    mock.update_repo(REPO, |repo| {
        repo.add_issue("a pull request", &[&other_marker], true);
        let number = repo.add_issue("closed finding", &[MARKER], false);
        repo.issues[number as usize - 1].state = "closed".into();
    });
    let mut receiver = receiver(base_config(&mock));

    let recovered = receiver.recover(&notice(ChangeKind::Opened)).unwrap();
    assert_eq!(recovered, Some(remote(&mock, 2, false)));
    let recovered = receiver.recover(&other_notice(ChangeKind::Opened)).unwrap();
    assert_eq!(recovered, None);
}

#[test]
fn public_redaction_by_default() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    create(&mut receiver, &mock);
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();

    for raw in ["203.0.113.9", "alice", "user=alice", "pw=x"] {
        assert!(
            !issue.title.contains(raw),
            "title shows `{raw}`: {}",
            issue.title
        );
        assert!(
            !issue.body.contains(raw),
            "body shows `{raw}`: {}",
            issue.body
        );
    }
    assert!(issue.body.contains(&render::hash_value("203.0.113.9")));
    assert!(issue.body.contains(&render::hash_value("alice")));
    assert!(issue.body.contains("`POST /login`"), "{}", issue.body);
}

#[test]
fn configured_redaction_keeps_values() {
    let mock = start_mock();
    let mut receiver = receiver(with(base_config(&mock), "redaction", json!({})));
    create(&mut receiver, &mock);
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();

    assert_eq!(
        issue.title,
        "Repeated failed logins: client=203.0.113.9, principal=alice"
    );
    assert!(
        issue.body.contains("`POST /login?user=alice&pw=x`"),
        "{}",
        issue.body
    );
}

#[test]
fn truncates_title_body_and_comment_at_limits() {
    let mock = start_mock();
    let mut receiver = receiver(with(base_config(&mock), "title", json!("{{ title }}")));
    let mut long = notice(ChangeKind::Opened);
    long.findings[0].title = "T".repeat(300);
    long.findings[0].condition = "c".repeat(70_000);
    let mut progress = Recorder::new(&mock);
    let created = applied(
        receiver
            .apply(&long, None, Rendering::Full, &mut progress)
            .unwrap(),
    );
    long.kind = ChangeKind::Updated;
    receiver
        .apply(&long, Some(&created), Rendering::Full, &mut progress)
        .unwrap();

    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert_eq!(issue.title.chars().count(), 256);
    assert!(
        issue.title.ends_with("... (68 more characters)"),
        "{}",
        issue.title
    );
    assert_eq!(issue.body.chars().count(), 65_536);
    assert!(issue.body.contains("more characters)\n<!-- "));
    assert!(issue.body.ends_with(&format!("<!-- {MARKER} -->")));
    assert_eq!(issue.comments[0].chars().count(), 65_536);
    assert!(issue.comments[0].starts_with("**Updated:**"));
    assert!(issue.comments[0].ends_with(&format!("<!-- {MARKER} -->")));
}

#[test]
fn failed_title_template_falls_back() {
    let mock = start_mock();
    let config = with(base_config(&mock), "title", json!("{{ distinct }} paths"));
    let mut receiver = receiver(with(config, "body", json!("Seen {{ ratio }}")));
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(
        progress.render_failures,
        [
            "title template: the finding has no `distinct`",
            "body template: the finding has no `ratio`"
        ]
    );
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert!(
        issue
            .title
            .starts_with("Repeated failed logins: client=hash:"),
        "{}",
        issue.title
    );
    assert!(
        issue.body.starts_with("- **Change:** opened\n"),
        "{}",
        issue.body
    );
}

#[test]
fn body_template_opens_issue_and_comments() {
    let mock = start_mock();
    let mut receiver = receiver(with(
        base_config(&mock),
        "body",
        json!("Owners: {{ owners }}"),
    ));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(
            &notice(ChangeKind::Updated),
            Some(&created),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    assert!(
        issue
            .body
            .starts_with("Owners: team-identity\n\n- **Change:** opened"),
        "{}",
        issue.body
    );
    assert!(
        issue.comments[0].starts_with("**Updated:** the condition still holds; the facts below are the latest for their window.\n\nOwners: team-identity\n\n- **Change:** updated"),
        "{}",
        issue.comments[0]
    );
}

#[test]
fn secret_stays_out_of_debug_and_errors() {
    let mock = start_mock();
    let secret = "ghp_wrong_secret_8c2e";
    let config: GithubConfig =
        serde_json::from_value(with(base_config(&mock), "token", json!(secret))).unwrap();
    let mut receiver = GithubReceiver::new("gh", &config).unwrap();
    assert!(!format!("{config:?}").contains(secret));
    assert!(!format!("{receiver:?}").contains(secret));

    let mut progress = Recorder::new(&mock);
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    assert!(!err.to_string().contains(secret));
    assert!(!format!("{err:?}").contains(secret));
    let (reason, status, fallback) = rejection(err);
    assert_eq!(status, Some(401));
    assert!(!fallback);
    assert!(
        reason.ends_with("returned HTTP 401: Bad credentials; check the receiver's `token`"),
        "{reason}"
    );
    let check = receiver.check();
    assert_eq!(check, Ok(()), "no `repo` configured, so nothing is checked");
}

#[test]
fn check_rejects_repo_without_push_access() {
    let mock = start_mock();
    let mut receiver = receiver(with(base_config(&mock), "repo", json!(REPO)));
    assert_eq!(receiver.check(), Ok(()));
    assert_eq!(mock.lines(), ["GET /repos/acme/accounts"]);

    mock.update_repo(REPO, |repo| repo.push = false);
    let err = receiver.check().unwrap_err();
    assert!(
        err.starts_with(
            "github receiver `gh`: the token's user has no push access to acme/accounts"
        ),
        "{err}"
    );
    mock.update_repo(REPO, |repo| repo.has_issues = false);
    let err = receiver.check().unwrap_err();
    assert_eq!(
        err,
        "github receiver `gh`: issues are disabled in acme/accounts; enable them in the \
         repository's settings"
    );
}

#[test]
fn commit_status_fails_until_last_finding_resolves() {
    let mock = start_mock();
    let mut receiver = receiver(with(
        base_config(&mock),
        "commit_status",
        json!({"status_ref": "main"}),
    ));
    let mut progress = Recorder::new(&mock);
    let first = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(
        mock.lines(),
        [
            "POST /repos/acme/accounts/issues",
            "GET /repos/acme/accounts/commits/main",
            format!("POST /repos/acme/accounts/statuses/{MAIN_SHA}").as_str(),
        ]
    );
    assert_eq!(
        progress.created[0].1, 1,
        "created is reported before the status"
    );
    assert_eq!(
        mock.requests()[2].json(),
        json!({
            "state": "failure",
            "context": "feedloop/accounts",
            "description": "open finding #1: [high] Repeated failed logins",
            "target_url": issue_url(&mock, 1),
        })
    );

    let second = applied(
        receiver
            .apply(
                &other_notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    let before = mock.requests().len();
    receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&first),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    let requests = mock.requests();
    let lines: Vec<String> = requests[before..].iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "PATCH /repos/acme/accounts/issues/1",
            "POST /repos/acme/accounts/issues/1/comments",
            "GET /repos/acme/accounts/issues",
            "GET /repos/acme/accounts/commits/main",
            format!("POST /repos/acme/accounts/statuses/{MAIN_SHA}").as_str(),
        ]
    );
    assert_eq!(
        requests[before + 2].query,
        "labels=feedloop,service%3Aaccounts&state=open&per_page=100"
    );
    assert_eq!(
        requests[before + 4].json(),
        json!({
            "state": "failure",
            "context": "feedloop/accounts",
            "description": render::truncate(
                &format!(
                    "1 open finding, such as #2: Credential stuffing: client={}, principal={}",
                    render::hash_value("203.0.113.9"),
                    render::hash_value("alice")
                ),
                140
            ),
            "target_url": issue_url(&mock, 2),
        })
    );

    receiver
        .apply(
            &other_notice(ChangeKind::Resolved),
            Some(&second),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    let last = mock.requests().last().cloned().unwrap();
    assert_eq!(
        last.json(),
        json!({
            "state": "success",
            "context": "feedloop/accounts",
            "description": "no open findings",
            "target_url": issue_url(&mock, 2),
        })
    );
    assert_eq!(
        mock.repo(REPO).latest_statuses(MAIN_SHA),
        BTreeMap::from([("feedloop/accounts".to_string(), "success".to_string())])
    );
}

#[test]
fn commit_status_uses_catalog_sha_as_is() {
    let mock = start_mock();
    let sha = "0000000000000000000000000000000000c0ffee";
    mock.update_repo(REPO, |repo| {
        repo.refs.insert("release".into(), sha.into());
    });
    let mut receiver = receiver(with(
        base_config(&mock),
        "commit_status",
        json!({"context": "security/feedloop", "status_ref": "main"}),
    ));
    let mut opened = notice(ChangeKind::Opened);
    opened.target.ci_target = Some(sha.into());
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap();

    assert_eq!(
        mock.lines(),
        [
            "POST /repos/acme/accounts/issues",
            format!("POST /repos/acme/accounts/statuses/{sha}").as_str(),
        ]
    );
    assert_eq!(mock.requests()[1].json()["context"], "security/feedloop");
    assert_eq!(
        mock.repo(REPO).latest_statuses(sha),
        BTreeMap::from([("security/feedloop".to_string(), "failure".to_string())])
    );
}

#[test]
fn dispatch_sends_finding_payload() {
    let mock = start_mock();
    let mut receiver = receiver(with(
        base_config(&mock),
        "dispatch_event_type",
        json!("feedloop-finding"),
    ));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&created),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let requests = mock.requests();
    assert_eq!(requests[1].line(), "POST /repos/acme/accounts/dispatches");
    let payload = |change: &str| {
        json!({
            "event_type": "feedloop-finding",
            "client_payload": {
                "fingerprint": KEY,
                "change": change,
                "rule_id": "login-bruteforce",
                "severity": "high",
                "service": "accounts",
                "issue_url": issue_url(&mock, 1),
            },
        })
    };
    assert_eq!(requests[1].json(), payload("opened"));
    assert_eq!(
        requests.last().unwrap().line(),
        "POST /repos/acme/accounts/dispatches"
    );
    assert_eq!(requests.last().unwrap().json(), payload("resolved"));
    let dispatches = mock.repo(REPO).dispatches;
    assert_eq!(dispatches.len(), 2);
    assert_eq!(dispatches[0].event_type, "feedloop-finding");
}

#[test]
fn writes_are_spaced_by_min_interval() {
    let mock = start_mock();
    let config = with(base_config(&mock), "min_write_interval", json!("200ms"));
    let config = with(config, "commit_status", json!({"status_ref": "main"}));
    let mut receiver = receiver(with(config, "dispatch_event_type", json!("feedloop")));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(
            &notice(ChangeKind::Updated),
            Some(&created),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let writes: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|request| request.method != "GET")
        .collect();
    assert_eq!(
        writes.len(),
        6,
        "issue, status, dispatch, comment, status, dispatch"
    );
    for pair in writes.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(200),
            "{} came {gap:?} after {}",
            pair[1].line(),
            pair[0].line()
        );
    }
}

#[test]
fn commit_status_counts_a_full_page_as_more() {
    let mock = start_mock();
    mock.update_repo(REPO, |repo| {
        for _ in 0..100 {
            repo.add_issue("older finding", &["feedloop", "service:accounts"], false);
        }
    });
    let mut receiver = receiver(with(
        base_config(&mock),
        "commit_status",
        json!({"status_ref": "main"}),
    ));
    let created = create(&mut receiver, &mock);
    assert_eq!(created.id, "101");
    let mut progress = Recorder::new(&mock);
    receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&created),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let last = mock.requests().last().cloned().unwrap();
    assert_eq!(
        last.json(),
        json!({
            "state": "failure",
            "context": "feedloop/accounts",
            "description": "100 or more open findings, such as #100: older finding",
            "target_url": issue_url(&mock, 100),
        })
    );
}

#[test]
fn opened_again_comments_on_open_issue() {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let created = create(&mut receiver, &mock);
    let mut progress = Recorder::new(&mock);
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            Some(&created),
            Rendering::Minimal,
            &mut progress,
        )
        .unwrap();

    assert_eq!(effect, Effect::Applied(remote(&mock, 1, true)));
    assert!(progress.created.is_empty());
    assert_eq!(mock.repo(REPO).issues.len(), 1);
    let comment = mock.repo(REPO).issue(1).unwrap().comments[0].clone();
    assert_eq!(
        comment,
        format!(
            "**Opened again:** the finding was reported as new while this issue is open.\n\n\
             - **Title:** Repeated failed logins\n- **Rule:** login-bruteforce\n\
             - **Severity:** high\n- **Fingerprint:** {KEY}\n\n<!-- {MARKER} -->"
        )
    );
}

/// Returns the impact of the example credential-stuffing route on `POST /login`.
fn impact() -> Impact {
    let route: RouteImpact =
        serde_json::from_str(include_str!("../../examples/impact/route.json")).unwrap();
    Impact {
        kpi_window_ms: 60_000,
        relative_error: 0.01,
        routes: vec![route],
        other_routes: Vec::new(),
    }
}

/// Applies an opened and an updated change and returns the issue body and its comment.
fn body_and_comment(notice: &Notice) -> (String, String) {
    let mock = start_mock();
    let mut receiver = receiver(base_config(&mock));
    let mut progress = Recorder::new(&mock);
    let created = applied(
        receiver
            .apply(notice, None, Rendering::Full, &mut progress)
            .unwrap(),
    );
    let mut update = notice.clone();
    update.kind = ChangeKind::Updated;
    receiver
        .apply(&update, Some(&created), Rendering::Full, &mut progress)
        .unwrap();
    let issue = mock.repo(REPO).issue(1).cloned().unwrap();
    (issue.body, issue.comments[0].clone())
}

#[test]
fn impact_adds_text_chart_to_body_and_comments() {
    let (plain_body, plain_comment) = body_and_comment(&notice(ChangeKind::Opened));
    let mut charted = notice(ChangeKind::Opened);
    charted.findings[0].impact = Some(impact());
    let (body, comment) = body_and_comment(&charted);

    let text = chart::text_chart(&impact().routes[0]);
    assert!(text.contains("0 to 302 per window"), "{text}");
    let section = format!("\n**Impact**\n\n```text\n{text}\n```\n");
    assert!(body.contains(&section), "{body}");
    assert!(comment.contains(&section), "{comment}");
    assert!(
        body.find(&section) < body.find("| time |"),
        "the chart comes before the evidence: {body}"
    );
    assert_eq!(body.replacen(&section, "", 1), plain_body);
    // The update's lead names the impact as it is now, with the client redacted.
    let summary = " Impact now: `on POST /login during the finding, 4xx rate +853% (1.5% to 15%), \
                   p99 latency +297% (121 ms to 480 ms); 91% of its errors from \
                   client=hash:d861b7e91033`.";
    assert!(comment.contains(summary), "{comment}");
    let comment = comment.replacen(summary, "", 1);
    assert_eq!(comment.replacen(&section, "", 1), plain_comment);
    assert!(!plain_body.contains("**Impact**"), "{plain_body}");
}
