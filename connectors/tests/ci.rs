//! The CI receivers (GitLab pipeline triggers, Jenkins builds, signed webhooks) driven through
//! the `Receiver` trait against loopback servers.
//!
//! Each test asserts the exact requests a receiver sends and the state the loopback service
//! ends up in. The signed webhook's signature is checked here with the `hmac` crate directly,
//! not with the receiver's own helper, so a signing bug cannot hide behind a matching
//! verification bug.

mod common;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use feedloop_connectors::delivery::ci::gitlab::{GitLabConfig, GitLabReceiver};
use feedloop_connectors::delivery::ci::jenkins::{JenkinsConfig, JenkinsReceiver};
use feedloop_connectors::delivery::ci::signed_webhook::{
    SignedWebhookConfig, SignedWebhookReceiver,
};
use feedloop_connectors::delivery::render::hash_value;
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::Finding;
use feedloop_testkit::gitlab::GitLab;
use feedloop_testkit::jenkins::{Jenkins, SESSION_COOKIE};
use feedloop_testkit::{query_pairs, Fault, MockServer, Recorded, Reply};

use common::Recorder;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const TRIGGER_TOKEN: &str = "glptt-trigger-secret-4f1c";
const API_TOKEN: &str = "glpat-read-secret-77aa";
const JENKINS_TOKEN: &str = "11aa22bb33cc-jenkins-secret";
const HOOK_SECRET: &str = "whsec-shared-secret-9d2e";

fn finding() -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["build", "test"],
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
            "time_ms": 1796378401000i64,
            "method": "POST",
            "path": "/login",
            "query": "user=alice&pw=x",
            "status": 401,
            "client": "203.0.113.9",
            "principal": "alice",
            "user_agent": "curl/8"
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
            ..Target::default()
        },
    }
}

fn applied(effect: Effect) -> Remote {
    match effect {
        Effect::Applied(remote) => remote,
        Effect::Skipped(reason) => panic!("expected an applied change, got a skip: {reason}"),
    }
}

fn rejection(err: DeliveryError) -> (String, Option<u16>, String, bool) {
    match err {
        DeliveryError::Reject {
            reason,
            status,
            response,
            fallback,
        } => (reason, status, response, fallback),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Returns the parameters every CI receiver sends for the sample notice, with `title`.
fn expected_parameters(kind: ChangeKind, title: &str) -> Vec<(String, String)> {
    let change_id = format!("change-{kind}");
    pairs(&[
        ("FEEDLOOP_FINGERPRINT", KEY),
        ("FEEDLOOP_CHANGE", kind.as_str()),
        ("FEEDLOOP_RULE", "login-bruteforce"),
        ("FEEDLOOP_SEVERITY", "high"),
        ("FEEDLOOP_SERVICE", "accounts"),
        ("FEEDLOOP_DELIVERY", &change_id),
        ("FEEDLOOP_TITLE", title),
    ])
}

/// Returns the default title after the public redaction policy.
fn public_title() -> String {
    format!(
        "Repeated failed logins: client={}, principal={}",
        hash_value("203.0.113.9"),
        hash_value("alice")
    )
}

// ---------------------------------------------------------------------------------------------
// GitLab
// ---------------------------------------------------------------------------------------------

fn gitlab_receiver(gitlab: &GitLab, extra: &str) -> GitLabReceiver {
    let yaml = format!(
        "base_url: {}\nproject: group/app\ntrigger_token: {TRIGGER_TOKEN}\n{extra}",
        gitlab.url()
    );
    let config: GitLabConfig = serde_norway::from_str(&yaml).unwrap();
    GitLabReceiver::new("gitlab-ci", &config).unwrap()
}

fn start_gitlab() -> GitLab {
    GitLab::start(42, "group/app", TRIGGER_TOKEN)
}

fn gitlab_variables(kind: ChangeKind, title: &str) -> Vec<(String, String)> {
    expected_parameters(kind, title)
        .into_iter()
        .map(|(name, value)| (format!("variables[{name}]"), value))
        .collect()
}

#[test]
fn gitlab_first_trigger_sends_exact_form() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");
    let mut progress = Recorder::default();

    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    let remote = applied(effect);
    let expected = Remote {
        id: "1000".into(),
        url: Some(format!("{}/group/app/-/pipelines/1000", gitlab.url())),
        open: true,
        extra: [
            ("change", "opened"),
            ("change_id", "change-opened"),
            ("ref", "main"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    assert_eq!(remote, expected);
    assert_eq!(progress.created, [expected]);

    let requests = gitlab.server().requests();
    assert_eq!(
        gitlab.server().lines(),
        ["POST /api/v4/projects/group%2Fapp/trigger/pipeline"]
    );
    let request = &requests[0];
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.query, "");
    let mut form = pairs(&[("token", TRIGGER_TOKEN), ("ref", "main")]);
    form.extend(gitlab_variables(ChangeKind::Opened, &public_title()));
    assert_eq!(query_pairs(&request.text()), form);
    assert!(
        request.text().starts_with(&format!(
            "token={TRIGGER_TOKEN}&ref=main&variables%5BFEEDLOOP_FINGERPRINT%5D={KEY}&"
        )),
        "{}",
        request.text()
    );

    let pipelines = gitlab.pipelines();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].git_ref, "main");
    assert_eq!(
        pipelines[0].variables,
        expected_parameters(ChangeKind::Opened, &public_title())
    );
}

#[test]
fn gitlab_ref_from_service_catalog() {
    let gitlab = start_gitlab();
    gitlab.add_ref("release/1.2");
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");
    let mut notice = notice(ChangeKind::Opened);
    notice.target.ci_target = Some("release/1.2".into());

    let remote = applied(
        receiver
            .apply(&notice, None, Rendering::Full, &mut Recorder::default())
            .unwrap(),
    );

    assert_eq!(remote.extra["ref"], "release/1.2");
    let form = query_pairs(&gitlab.server().requests()[0].text());
    assert_eq!(form[1], ("ref".to_string(), "release/1.2".to_string()));
    assert_eq!(gitlab.pipelines()[0].git_ref, "release/1.2");
}

#[test]
fn gitlab_lifecycle_follows_change_kinds() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");
    let mut progress = Recorder::default();

    let opened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(opened.open);

    let updated = receiver
        .apply(
            &notice(ChangeKind::Updated),
            Some(&opened),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert_eq!(
        updated,
        Effect::Skipped(
            "receiver `gitlab-ci` does not trigger on updated changes; add `updated` to its `on` list to change that".into()
        )
    );

    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved),
                Some(&opened),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(!resolved.open);
    assert_eq!(resolved.id, "1001");
    assert_eq!(resolved.extra["change"], "resolved");

    let again = receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&resolved),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert!(matches!(again, Effect::Skipped(_)), "{again:?}");

    let reopened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Reopened),
                Some(&resolved),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(reopened.open);
    assert_eq!(reopened.id, "1002");

    assert_eq!(progress.created, [opened]);
    let changes: Vec<String> = gitlab
        .pipelines()
        .iter()
        .map(|p| p.variables[1].1.clone())
        .collect();
    assert_eq!(changes, ["opened", "resolved", "reopened"]);
    assert_eq!(gitlab.server().requests().len(), 3);
}

#[test]
fn gitlab_on_list_selects_change_kinds() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\non: [opened, updated]\n");
    let mut progress = Recorder::default();
    let opened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    let updated = applied(
        receiver
            .apply(
                &notice(ChangeKind::Updated),
                Some(&opened),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(updated.extra["change"], "updated");
    assert!(updated.open);

    let resolved = receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&updated),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert!(
        matches!(&resolved, Effect::Skipped(reason) if reason.contains("add `resolved` to its `on` list")),
        "{resolved:?}"
    );
    assert_eq!(gitlab.pipelines().len(), 2);
}

#[test]
fn gitlab_unknown_ref_is_rejected() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: nope\n");
    let mut progress = Recorder::default();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();

    let (reason, status, response, fallback) = rejection(err);
    assert_eq!(
        reason,
        format!(
            "GitLab receiver `gitlab-ci` failed to trigger a pipeline on ref `nope` of project `group%2Fapp`: \
             POST {}/api/v4/projects/group%2Fapp/trigger/pipeline returned HTTP 400: Reference not found; \
             check that the ref exists and that the project allows pipeline variables",
            gitlab.url()
        )
    );
    assert_eq!(status, Some(400));
    assert_eq!(response, r#"{"message":{"base":["Reference not found"]}}"#);
    assert!(!fallback, "a minimal trigger would fail the same way");
    assert!(progress.created.is_empty());
    assert!(gitlab.pipelines().is_empty());
}

#[test]
fn gitlab_restricted_variables_are_rejected() {
    let gitlab = start_gitlab();
    gitlab.restrict_variables();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let (reason, status, _, fallback) = rejection(err);
    assert_eq!(status, Some(400));
    assert!(
        reason.contains("returned HTTP 400: Insufficient permissions to set pipeline variables"),
        "{reason}"
    );
    assert!(!fallback);
}

#[test]
fn gitlab_bad_token_is_rejected_without_leaking() {
    let gitlab = GitLab::start(42, "group/app", "glptt-the-right-token");
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let text = format!("{err} {err:?} {receiver:?}");
    assert!(!text.contains(TRIGGER_TOKEN), "{text}");
    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(404));
    assert!(
        reason.ends_with(
            "returned HTTP 404: 404 Not Found; check `project` and that `trigger_token` belongs to it"
        ),
        "{reason}"
    );
}

#[test]
fn gitlab_revoked_trigger_owner_is_rejected() {
    let gitlab = start_gitlab();
    gitlab.revoke_trigger_owner();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(403));
    assert!(
        reason.ends_with("check `trigger_token` and that its owner may still run pipelines"),
        "{reason}"
    );
    assert!(!reason.contains(TRIGGER_TOKEN));
}

#[test]
fn gitlab_unknown_project_is_rejected() {
    let gitlab = start_gitlab();
    let yaml = format!(
        "base_url: {}\nproject: 7\ntrigger_token: {TRIGGER_TOKEN}\nref: main\n",
        gitlab.url()
    );
    let config: GitLabConfig = serde_norway::from_str(&yaml).unwrap();
    let mut receiver = GitLabReceiver::new("gitlab-ci", &config).unwrap();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(404));
    assert!(reason.contains("of project `7`"), "{reason}");
    assert!(reason.contains("404 Project Not Found"), "{reason}");
    assert_eq!(
        gitlab.server().lines(),
        ["POST /api/v4/projects/7/trigger/pipeline"]
    );
}

#[test]
fn gitlab_rate_limit_retries_after() {
    let gitlab = start_gitlab();
    gitlab.server().fail(
        Fault::next(
            1,
            Reply::json(429, json!({"message": "Retry later"})).with_header("Retry-After", "2"),
        )
        .on("POST", "/api/v4/projects/"),
    );
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");
    let mut progress = Recorder::default();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();

    assert_eq!(
        err,
        DeliveryError::Retry {
            reason: format!(
                "POST {}/api/v4/projects/group%2Fapp/trigger/pipeline returned HTTP 429",
                gitlab.url()
            ),
            after: Some(Duration::from_secs(2)),
        }
    );
    assert!(progress.created.is_empty());

    let remote = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(progress.created, [remote]);
    assert_eq!(gitlab.pipelines().len(), 1);
}

#[test]
fn gitlab_outage_retries() {
    let gitlab = start_gitlab();
    gitlab
        .server()
        .fail(Fault::next(1, Reply::text(503, "upstream connect error")));
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    assert!(
        matches!(err, DeliveryError::Retry { after: None, .. }),
        "{err:?}"
    );
}

#[test]
fn gitlab_without_ref_is_rejected() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    assert_eq!(
        err,
        DeliveryError::reject(
            "GitLab receiver `gitlab-ci` has no ref for service `accounts`: set `ci_target` for the service in the service catalog, or `ref` in the receiver's settings"
        )
    );
    assert!(gitlab.server().requests().is_empty());
}

#[test]
fn gitlab_recover_finds_interrupted_trigger() {
    let gitlab = start_gitlab();
    gitlab.allow_api_token(API_TOKEN);
    let mut receiver = gitlab_receiver(&gitlab, &format!("ref: main\napi_token: {API_TOKEN}\n"));
    // The trigger succeeds, but the engine never stores the result, as after a crash.
    let sent = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    gitlab.insert_pipeline(
        "main",
        &[
            ("FEEDLOOP_FINGERPRINT", "ffffffffffffffffffffffffffffffff"),
            ("FEEDLOOP_DELIVERY", "change-other"),
        ],
    );
    let before = gitlab.server().requests().len();

    let recovered = receiver
        .recover(&notice(ChangeKind::Opened))
        .unwrap()
        .expect("the interrupted trigger is found");

    assert_eq!(recovered, sent);
    let requests: Vec<Recorded> = gitlab.server().requests().split_off(before);
    let lines: Vec<String> = requests.iter().map(Recorded::line).collect();
    assert_eq!(
        lines,
        [
            "GET /api/v4/projects/group%2Fapp/pipelines",
            "GET /api/v4/projects/group%2Fapp/pipelines/1001/variables",
            "GET /api/v4/projects/group%2Fapp/pipelines/1000/variables",
        ]
    );
    assert_eq!(
        query_pairs(&requests[0].query),
        pairs(&[
            ("source", "trigger"),
            ("ref", "main"),
            ("order_by", "id"),
            ("sort", "desc"),
            ("per_page", "20")
        ])
    );
    for request in &requests {
        assert_eq!(request.header("private-token"), Some(API_TOKEN));
    }

    // Applying the same change with the recovered remote sends nothing more.
    let mut progress = Recorder::default();
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            Some(&recovered),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert_eq!(effect, Effect::Applied(sent));
    assert!(progress.created.is_empty());
    assert_eq!(gitlab.pipelines().len(), 2);

    // A later change triggers as usual.
    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved),
                Some(&recovered),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(resolved.id, "1002");
}

#[test]
fn gitlab_recover_with_bad_api_token_is_rejected() {
    let gitlab = start_gitlab();
    gitlab.allow_api_token(API_TOKEN);
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\napi_token: glpat-expired-0000\n");

    let err = receiver.recover(&notice(ChangeKind::Opened)).unwrap_err();

    assert!(!format!("{err:?}").contains("glpat-expired-0000"));
    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(401));
    assert!(
        reason.starts_with(
            "GitLab receiver `gitlab-ci` failed to list the pipelines of project `group%2Fapp`: GET "
        ),
        "{reason}"
    );
    assert!(
        reason.ends_with(
            "returned HTTP 401: 401 Unauthorized; check that `api_token` is valid, has the `read_api` scope and a role that may read pipeline variables"
        ),
        "{reason}"
    );
}

#[test]
fn gitlab_recover_without_api_token_finds_nothing() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    assert_eq!(receiver.recover(&notice(ChangeKind::Opened)).unwrap(), None);
    assert!(gitlab.server().requests().is_empty());
}

#[test]
fn gitlab_recover_finds_nothing_for_new_key() {
    let gitlab = start_gitlab();
    gitlab.allow_api_token(API_TOKEN);
    gitlab.insert_pipeline("main", &[("FEEDLOOP_FINGERPRINT", "other")]);
    let mut receiver = gitlab_receiver(&gitlab, &format!("ref: main\napi_token: {API_TOKEN}\n"));

    assert_eq!(receiver.recover(&notice(ChangeKind::Opened)).unwrap(), None);
    assert_eq!(gitlab.server().requests().len(), 2);
}

#[test]
fn gitlab_title_is_redacted_and_truncated() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");
    let mut long = notice(ChangeKind::Opened);
    long.findings[0].title = "é".repeat(400);

    receiver
        .apply(&long, None, Rendering::Full, &mut Recorder::default())
        .unwrap();

    let title = &gitlab.pipelines()[0].variables[6];
    assert_eq!(title.0, "FEEDLOOP_TITLE");
    assert_eq!(title.1.chars().count(), 255);
    let full = format!(
        "{}: client={}, principal={}",
        "é".repeat(400),
        hash_value("203.0.113.9"),
        hash_value("alice")
    );
    // 230 characters are kept, because the note "... (225 more characters)" takes 25.
    let left_out = full.chars().count() - 230;
    assert_eq!(left_out, 225);
    assert!(
        title
            .1
            .ends_with(&format!("... ({left_out} more characters)")),
        "{}",
        title.1
    );
    assert!(!title.1.contains("alice"));
}

#[test]
fn gitlab_redaction_can_keep_values() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(
        &gitlab,
        "ref: main\nredaction: {principals: keep, clients: drop}\n",
    );

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();

    assert_eq!(
        gitlab.pipelines()[0].variables[6].1,
        "Repeated failed logins: client=(redacted), principal=alice"
    );
}

#[test]
fn gitlab_minimal_rendering_sends_plain_title() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(&gitlab, "ref: main\n");

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Minimal,
            &mut Recorder::default(),
        )
        .unwrap();

    assert_eq!(
        gitlab.pipelines()[0].variables,
        expected_parameters(ChangeKind::Opened, "Repeated failed logins")
    );
}

#[test]
fn gitlab_failed_template_sends_default_title() {
    let gitlab = start_gitlab();
    let mut receiver = gitlab_receiver(
        &gitlab,
        "ref: main\ntitle: '{{ distinct }} distinct paths'\n",
    );
    let mut progress = Recorder::default();

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(progress.render_failures, ["the finding has no `distinct`"]);
    assert_eq!(gitlab.pipelines()[0].variables[6].1, public_title());
}

// ---------------------------------------------------------------------------------------------
// Jenkins
// ---------------------------------------------------------------------------------------------

const JOB: &str = "payments/api-gate";
const BUILD_PATH: &str = "/job/payments/job/api-gate/buildWithParameters";

fn start_jenkins() -> Jenkins {
    Jenkins::start("feedloop", JENKINS_TOKEN, &[JOB, "regression"])
}

fn jenkins_receiver(jenkins: &Jenkins, extra: &str) -> JenkinsReceiver {
    jenkins_receiver_with_token(jenkins, JENKINS_TOKEN, extra)
}

fn jenkins_receiver_with_token(jenkins: &Jenkins, token: &str, extra: &str) -> JenkinsReceiver {
    let yaml = format!(
        "base_url: {}\nuser: feedloop\napi_token: {token}\n{extra}",
        jenkins.url()
    );
    let config: JenkinsConfig = serde_norway::from_str(&yaml).unwrap();
    JenkinsReceiver::new("jenkins-ci", &config).unwrap()
}

fn basic_auth() -> String {
    use base64::Engine as _;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("feedloop:{JENKINS_TOKEN}"));
    format!("Basic {credentials}")
}

/// Returns the session id in a request's `Cookie` header.
fn session_of(request: &Recorded) -> String {
    let cookie = request.header("cookie").expect("a Cookie header");
    let (name, value) = cookie.split_once('=').expect("name=value");
    assert_eq!(name, SESSION_COOKIE);
    value.to_string()
}

#[test]
fn jenkins_build_sends_crumb_cookie_and_auth() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut progress = Recorder::default();

    let remote = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    let expected = Remote {
        id: "1".into(),
        url: Some(format!("{}/queue/item/1/", jenkins.url())),
        open: true,
        extra: [
            ("change", "opened"),
            ("change_id", "change-opened"),
            ("job", JOB),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    assert_eq!(remote, expected);
    assert_eq!(progress.created, [expected]);

    let requests = jenkins.server().requests();
    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}")
        ]
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some(basic_auth().as_str())
    );
    let build = &requests[1];
    assert_eq!(build.header("authorization"), Some(basic_auth().as_str()));
    assert_eq!(
        build.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let session = session_of(build);
    let crumb = jenkins.crumb_of(&session).expect("a live session");
    assert_eq!(build.header("jenkins-crumb"), Some(crumb.as_str()));
    assert_eq!(
        query_pairs(&build.text()),
        expected_parameters(ChangeKind::Opened, &public_title())
    );

    let items = jenkins.items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].job, JOB);
    assert_eq!(
        items[0].parameters,
        expected_parameters(ChangeKind::Opened, &public_title())
    );
}

#[test]
fn jenkins_crumb_is_reused_across_builds() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut progress = Recorder::default();
    let opened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    let updated = receiver
        .apply(
            &notice(ChangeKind::Updated),
            Some(&opened),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    assert!(matches!(updated, Effect::Skipped(_)), "{updated:?}");

    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved),
                Some(&opened),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    assert!(!resolved.open);
    assert_eq!(resolved.id, "2");
    assert_eq!(progress.created, [opened]);
    assert_eq!(jenkins.crumbs_issued(), 1);
    let requests = jenkins.server().requests();
    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
            format!("POST {BUILD_PATH}")
        ]
    );
    assert_eq!(session_of(&requests[1]), session_of(&requests[2]));
}

#[test]
fn jenkins_stale_crumb_is_refetched_once() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut progress = Recorder::default();
    let opened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    jenkins.expire_sessions();

    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved),
                Some(&opened),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    assert_eq!(resolved.id, "2");
    assert_eq!(jenkins.crumbs_issued(), 2);
    let requests = jenkins.server().requests();
    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
            format!("POST {BUILD_PATH}"),
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
        ]
    );
    let stale = session_of(&requests[2]);
    let fresh = session_of(&requests[4]);
    assert_ne!(stale, fresh);
    assert_eq!(
        requests[4].header("jenkins-crumb"),
        jenkins.crumb_of(&fresh).as_deref()
    );
    assert_eq!(jenkins.items().len(), 2);
}

#[test]
fn jenkins_crumb_rejected_twice_is_rejected() {
    let jenkins = start_jenkins();
    let no_crumb = Reply::text(
        403,
        "<title>Error 403 No valid crumb was included in the request</title>",
    );
    jenkins
        .server()
        .fail(Fault::next(2, no_crumb).on("POST", "/job/"));
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut progress = Recorder::default();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();

    let (reason, status, _, fallback) = rejection(err);
    assert_eq!(status, Some(403));
    assert!(!fallback);
    assert_eq!(
        reason,
        format!(
            "Jenkins receiver `jenkins-ci` failed to start job `{JOB}`: POST {}{BUILD_PATH} returned HTTP 403; \
             Jenkins rejected a newly fetched crumb too; check that no proxy drops the session cookie or the crumb header",
            jenkins.url()
        )
    );
    assert!(progress.created.is_empty());
    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
        ]
    );

    // The next attempt starts with a new crumb and goes through.
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(jenkins.crumbs_issued(), 3);
    assert_eq!(jenkins.items().len(), 1);
}

#[test]
fn jenkins_crumb_issuer_404_is_tolerated() {
    let jenkins = start_jenkins();
    jenkins.disable_crumb_issuer();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut progress = Recorder::default();

    let opened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    receiver
        .apply(
            &notice(ChangeKind::Resolved),
            Some(&opened),
            Rendering::Full,
            &mut progress,
        )
        .unwrap();

    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /crumbIssuer/api/json".to_string(),
            format!("POST {BUILD_PATH}"),
            format!("POST {BUILD_PATH}"),
        ]
    );
    for build in &jenkins.server().requests()[1..] {
        assert_eq!(build.header("jenkins-crumb"), None);
        assert_eq!(build.header("cookie"), None);
        assert_eq!(build.header("authorization"), Some(basic_auth().as_str()));
    }
    assert_eq!(jenkins.items().len(), 2);
}

#[test]
fn jenkins_bad_token_is_rejected_without_leaking() {
    let jenkins = start_jenkins();
    let wrong = "wrong-jenkins-token-0000";
    let mut receiver = jenkins_receiver_with_token(&jenkins, wrong, &format!("job: {JOB}\n"));

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("feedloop:{wrong}"));
    let text = format!("{err} {err:?} {receiver:?}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains(&encoded), "{text}");
    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(401));
    assert_eq!(
        reason,
        format!(
            "Jenkins receiver `jenkins-ci` failed to fetch a CSRF crumb: GET {}/crumbIssuer/api/json returned HTTP 401; check `user` and `api_token`",
            jenkins.url()
        )
    );
    assert!(jenkins.items().is_empty());
}

#[test]
fn jenkins_unknown_job_is_rejected() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut notice = notice(ChangeKind::Opened);
    notice.target.ci_target = Some("payments/missing".into());

    let err = receiver
        .apply(&notice, None, Rendering::Full, &mut Recorder::default())
        .unwrap_err();

    let (reason, status, _, _) = rejection(err);
    assert_eq!(status, Some(404));
    assert!(
        reason.starts_with(
            "Jenkins receiver `jenkins-ci` failed to start job `payments/missing`: POST "
        ),
        "{reason}"
    );
    assert!(
        reason.ends_with("check the job name; a job in a folder is written `folder/name`"),
        "{reason}"
    );
    assert_eq!(
        jenkins.server().lines()[1],
        "POST /job/payments/job/missing/buildWithParameters"
    );
}

#[test]
fn jenkins_missing_permission_is_rejected() {
    let jenkins = start_jenkins();
    jenkins.server().fail(
        Fault::next(
            1,
            Reply::text(403, "feedloop is missing the Job/Build permission"),
        )
        .on("POST", "/job/"),
    );
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let (reason, status, response, fallback) = rejection(err);
    assert_eq!(status, Some(403));
    assert!(!fallback);
    assert_eq!(response, "feedloop is missing the Job/Build permission");
    assert!(
        reason.ends_with("check that `user` has the Overall/Read and Job/Build permissions"),
        "{reason}"
    );
    assert_eq!(
        jenkins.crumbs_issued(),
        1,
        "a permission error fetches no new crumb"
    );
}

#[test]
fn jenkins_job_from_service_catalog() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    let mut notice = notice(ChangeKind::Opened);
    notice.target.ci_target = Some("regression".into());

    let remote = applied(
        receiver
            .apply(&notice, None, Rendering::Full, &mut Recorder::default())
            .unwrap(),
    );

    assert_eq!(remote.extra["job"], "regression");
    assert_eq!(
        jenkins.server().lines()[1],
        "POST /job/regression/buildWithParameters"
    );
}

#[test]
fn jenkins_without_job_is_rejected() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, "");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    assert_eq!(
        err,
        DeliveryError::reject(
            "Jenkins receiver `jenkins-ci` has no job for service `accounts`: set `ci_target` for the service in the service catalog, or `job` in the receiver's settings"
        )
    );
    assert!(jenkins.server().requests().is_empty());
}

#[test]
fn jenkins_rate_limit_retries_after() {
    let jenkins = start_jenkins();
    jenkins.server().fail(
        Fault::next(1, Reply::empty(429).with_header("Retry-After", "2")).on("POST", "/job/"),
    );
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    assert_eq!(
        err,
        DeliveryError::Retry {
            reason: format!("POST {}{BUILD_PATH} returned HTTP 429", jenkins.url()),
            after: Some(Duration::from_secs(2)),
        }
    );
    assert!(jenkins.items().is_empty());
}

#[test]
fn jenkins_recover_finds_queued_then_built() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));
    // The build request succeeds, but the engine never stores the result.
    let sent = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    jenkins.insert_item(JOB, &[("FEEDLOOP_FINGERPRINT", "other-key")]);
    let before = jenkins.server().requests().len();

    let queued = receiver
        .recover(&notice(ChangeKind::Opened))
        .unwrap()
        .expect("the queued item is found");

    assert_eq!(queued, sent);
    let requests = jenkins.server().requests().split_off(before);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].line(), "GET /queue/api/json");
    assert_eq!(
        query_pairs(&requests[0].query),
        pairs(&[(
            "tree",
            "items[id,task[url],actions[parameters[name,value]]]"
        )])
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some(basic_auth().as_str())
    );

    jenkins.start_builds();
    let before = jenkins.server().requests().len();
    let built = receiver
        .recover(&notice(ChangeKind::Opened))
        .unwrap()
        .expect("the build is found");

    assert_eq!(built.id, "1");
    assert_eq!(
        built.url,
        Some(format!("{}/job/payments/job/api-gate/1/", jenkins.url()))
    );
    assert_eq!(built.extra, sent.extra);
    let requests = jenkins.server().requests().split_off(before);
    let lines: Vec<String> = requests.iter().map(Recorded::line).collect();
    assert_eq!(
        lines,
        [
            "GET /queue/api/json",
            "GET /job/payments/job/api-gate/api/json"
        ]
    );
    assert_eq!(
        query_pairs(&requests[1].query),
        pairs(&[(
            "tree",
            "builds[number,url,queueId,actions[parameters[name,value]]]{0,50}"
        )])
    );

    // The same change with the recovered remote sends nothing more.
    let before = jenkins.server().requests().len();
    let effect = receiver
        .apply(
            &notice(ChangeKind::Opened),
            Some(&built),
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();
    assert_eq!(effect, Effect::Applied(built));
    assert_eq!(jenkins.server().requests().len(), before);
}

#[test]
fn jenkins_recover_finds_nothing_for_new_key() {
    let jenkins = start_jenkins();
    jenkins.insert_item(JOB, &[("FEEDLOOP_FINGERPRINT", "other-key")]);
    // The same key queued for another job belongs to another receiver.
    jenkins.insert_item("regression", &[("FEEDLOOP_FINGERPRINT", KEY)]);
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));

    assert_eq!(receiver.recover(&notice(ChangeKind::Opened)).unwrap(), None);
    assert_eq!(
        jenkins.server().lines(),
        [
            "GET /queue/api/json",
            "GET /job/payments/job/api-gate/api/json"
        ]
    );
}

#[test]
fn jenkins_minimal_rendering_sends_plain_title() {
    let jenkins = start_jenkins();
    let mut receiver = jenkins_receiver(&jenkins, &format!("job: {JOB}\n"));

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Minimal,
            &mut Recorder::default(),
        )
        .unwrap();

    assert_eq!(
        jenkins.items()[0].parameters,
        expected_parameters(ChangeKind::Opened, "Repeated failed logins")
    );
}

// ---------------------------------------------------------------------------------------------
// Signed webhook
// ---------------------------------------------------------------------------------------------

fn webhook_receiver(server: &MockServer, extra: &str) -> SignedWebhookReceiver {
    let yaml = format!(
        "url: {}/hooks/feedloop\nsecret: {HOOK_SECRET}\n{extra}",
        server.url()
    );
    let config: SignedWebhookConfig = serde_norway::from_str(&yaml).unwrap();
    SignedWebhookReceiver::new("ci-hook", &config).unwrap()
}

/// Checks a request's signature with the `hmac` crate, the way a receiving side would.
fn signature_matches(request: &Recorded, secret: &[u8]) -> bool {
    let header = request
        .header("x-feedloop-signature-256")
        .expect("a signature header");
    let hex = header.strip_prefix("sha256=").expect("the sha256= prefix");
    let signature: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&request.body);
    mac.verify_slice(&signature).is_ok()
}

fn assert_signed(request: &Recorded, secret: &[u8]) {
    assert!(
        signature_matches(request, secret),
        "the signature of {} does not match its body",
        request.line()
    );
}

#[test]
fn webhook_signature_verifies_independently() {
    let server = MockServer::start(|_| Reply::empty(204));
    let mut receiver = webhook_receiver(&server, "");
    let mut progress = Recorder::default();

    let remote = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );

    assert_eq!(remote.id, "change-opened");
    assert_eq!(remote.url, None);
    assert!(remote.open);
    assert_eq!(progress.created, [remote]);

    let requests = server.requests();
    assert_eq!(server.lines(), ["POST /hooks/feedloop"]);
    let request = &requests[0];
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-feedloop-delivery"), Some("change-opened"));
    assert_eq!(request.header("x-feedloop-event"), Some("opened"));
    assert_signed(request, HOOK_SECRET.as_bytes());

    let mut tampered = request.clone();
    tampered.body.push(b' ');
    assert!(!signature_matches(&tampered, HOOK_SECRET.as_bytes()));
    assert!(!signature_matches(request, b"another secret"));

    let body = request.json();
    assert_eq!(body["change"], "opened");
    assert_eq!(body["key"], KEY);
    assert_eq!(body["change_id"], "change-opened");
    assert_eq!(
        body["title"],
        "Repeated failed logins: client=203.0.113.9, principal=alice"
    );
    assert_eq!(body["findings"], json!([finding()]));
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("- **Change:** opened\n- **Rule:** login-bruteforce\n"),
        "{text}"
    );
    assert!(body.get("group").is_none());
    assert!(body.get("minimal").is_none());
}

#[test]
fn webhook_sends_every_kind_by_default() {
    let server = MockServer::start(|_| Reply::empty(200));
    let mut receiver = webhook_receiver(&server, "");
    let mut progress = Recorder::default();
    let mut remote: Option<Remote> = None;

    for kind in [
        ChangeKind::Opened,
        ChangeKind::Updated,
        ChangeKind::Resolved,
        ChangeKind::Reopened,
    ] {
        let effect = receiver
            .apply(
                &notice(kind),
                remote.as_ref(),
                Rendering::Full,
                &mut progress,
            )
            .unwrap();
        let next = applied(effect);
        assert_eq!(next.open, kind != ChangeKind::Resolved);
        remote = Some(next);
    }

    let requests = server.requests();
    let events: Vec<&str> = requests
        .iter()
        .map(|r| r.header("x-feedloop-event").unwrap())
        .collect();
    assert_eq!(events, ["opened", "updated", "resolved", "reopened"]);
    for request in &requests {
        assert_signed(request, HOOK_SECRET.as_bytes());
    }
    assert_eq!(progress.created.len(), 1);
    assert_eq!(progress.created[0].id, "change-opened");
}

#[test]
fn webhook_on_list_filters_kinds() {
    let server = MockServer::start(|_| Reply::empty(200));
    let mut receiver = webhook_receiver(&server, "on: [opened]\n");

    let effect = receiver
        .apply(
            &notice(ChangeKind::Reopened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();

    assert!(
        matches!(&effect, Effect::Skipped(reason) if reason.contains("add `reopened`")),
        "{effect:?}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn webhook_minimal_after_400() {
    let server = MockServer::start(|_| Reply::empty(200));
    server.fail(Fault::next(
        1,
        Reply::json(400, json!({"error": "payload too deeply nested"})),
    ));
    let mut receiver = webhook_receiver(&server, "");
    let mut progress = Recorder::default();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    let (reason, status, _, fallback) = rejection(err);
    assert_eq!(status, Some(400));
    assert!(
        fallback,
        "a full payload rejected with 400 may pass as minimal"
    );
    assert!(reason.contains("payload too deeply nested"), "{reason}");

    let remote = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened),
                None,
                Rendering::Minimal,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(progress.created, [remote]);

    let requests = server.requests();
    let minimal = &requests[1];
    assert_signed(minimal, HOOK_SECRET.as_bytes());
    assert_eq!(
        minimal.json(),
        json!({
            "change": "opened",
            "key": KEY,
            "change_id": "change-opened",
            "title": "Repeated failed logins",
            "findings": [{
                "rule_id": "login-bruteforce",
                "title": "Repeated failed logins",
                "severity": "high",
                "fingerprint": KEY
            }],
            "minimal": true
        })
    );
}

#[test]
fn webhook_minimal_rejection_has_no_fallback() {
    let server = MockServer::start(|_| Reply::empty(413));
    let mut receiver = webhook_receiver(&server, "");

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Minimal,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let (_, status, _, fallback) = rejection(err);
    assert_eq!(status, Some(413));
    assert!(!fallback, "nothing smaller than the minimal payload exists");
}

#[test]
fn webhook_redaction_and_truncation() {
    let server = MockServer::start(|_| Reply::empty(200));
    let mut receiver = webhook_receiver(
        &server,
        "redaction: {principals: hash, clients: hash, query: drop}\nmax_text_chars: 300\n\
         body: 'Rule {{ rule_id }} on {{ service }}.'\n",
    );

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();

    let body = server.requests()[0].json();
    let text = body["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 300);
    assert!(
        text.starts_with("Rule login-bruteforce on accounts.\n\n"),
        "{text}"
    );
    assert!(
        text.contains("more characters)") && text.ends_with(')'),
        "{text}"
    );
    assert!(!text.contains("alice"), "{text}");
    let finding: &Value = &body["findings"][0];
    assert_eq!(finding["group"]["principal"], hash_value("alice"));
    assert_eq!(finding["group"]["client"], hash_value("203.0.113.9"));
    assert_eq!(finding["evidence"][0]["principal"], hash_value("alice"));
    assert!(finding["evidence"][0].get("query").is_none());
    assert_eq!(
        body["title"],
        format!(
            "Repeated failed logins: client={}, principal={}",
            hash_value("203.0.113.9"),
            hash_value("alice")
        )
    );
}

#[test]
fn webhook_secret_from_file_absent_from_errors() {
    let server = MockServer::start(|_| Reply::json(401, json!({"error": "bad signature"})));
    let path = std::env::temp_dir().join(format!("feedloop-ci-hook-{}", std::process::id()));
    std::fs::write(&path, format!("{HOOK_SECRET}\n")).unwrap();
    let yaml = format!(
        "url: {}/hooks/feedloop?team=payments\nsecret: {{file: {}}}\n",
        server.url(),
        path.display()
    );
    let config: SignedWebhookConfig = serde_norway::from_str(&yaml).unwrap();
    let mut receiver = SignedWebhookReceiver::new("ci-hook", &config).unwrap();
    std::fs::remove_file(&path).unwrap();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    // The trailing newline of the file is not part of the key.
    assert_signed(&server.requests()[0], HOOK_SECRET.as_bytes());
    let text = format!("{err} {err:?} {receiver:?}");
    assert!(!text.contains(HOOK_SECRET), "{text}");
    assert!(!text.contains("team=payments"), "{text}");
    assert!(!format!("{config:?}").contains(HOOK_SECRET));
    let (reason, status, _, fallback) = rejection(err);
    assert_eq!(status, Some(401));
    assert!(!fallback);
    assert_eq!(
        reason,
        format!(
            "signed webhook receiver `ci-hook` failed to deliver: POST {}/hooks/feedloop returned HTTP 401: bad signature; \
             check that the receiving side verifies with the same `secret`",
            server.url()
        )
    );
}

#[test]
fn webhook_rate_limit_retries_after() {
    let server = MockServer::start(|_| Reply::empty(200));
    server.fail(Fault::next(
        1,
        Reply::empty(429).with_header("Retry-After", "2"),
    ));
    let mut receiver = webhook_receiver(&server, "");
    let mut progress = Recorder::default();

    let err = receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();

    assert_eq!(
        err,
        DeliveryError::Retry {
            reason: format!("POST {}/hooks/feedloop returned HTTP 429", server.url()),
            after: Some(Duration::from_secs(2)),
        }
    );
    assert!(progress.created.is_empty());

    receiver
        .apply(
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap();
    let requests = server.requests();
    assert_eq!(
        requests[0].header("x-feedloop-delivery"),
        requests[1].header("x-feedloop-delivery"),
        "a retry keeps the delivery id so the receiving side can drop duplicates"
    );
}

#[test]
fn webhook_recover_finds_nothing() {
    let server = MockServer::start(|_| Reply::empty(200));
    let mut receiver = webhook_receiver(&server, "");

    assert_eq!(receiver.recover(&notice(ChangeKind::Opened)).unwrap(), None);
    assert!(server.requests().is_empty());
}
