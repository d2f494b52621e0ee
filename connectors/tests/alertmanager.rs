//! The Alertmanager receiver against a real Alertmanager and against a loopback mock.
//!
//! The real-server tests start Debian's `prometheus-alertmanager` on 127.0.0.1 with a null
//! receiver and clustering off, apply notices through the receiver and read the alerts back
//! through `GET /api/v2/alerts`. When the binary is not on `PATH` they skip with a message, but
//! with `FEEDLOOP_REQUIRE_ALERTMANAGER` set they fail instead. `scripts/ensure-alertmanager.sh`
//! installs the binary. The mock tests cover the error responses of an Alertmanager or of the
//! proxy in front of it.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use feedloop_connectors::delivery::alertmanager::{
    AlertmanagerConfig, AlertmanagerReceiver, LABELS_EXTRA,
};
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::Finding;
use feedloop_testkit::{Fault, MockServer, Reply};

use common::Recorder;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn finding() -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["operate", "test"],
        "tags": ["owasp-api2"],
        "service": "accounts",
        "group": {"client": "203.0.113.9", "principal": "alice"},
        "window": {"start": "2025-06-01T10:00:00Z", "end": "2025-06-01T10:05:00Z"},
        "condition": "count >= 20",
        "count": 20,
        "first_seen": "2025-06-01T10:00:01.000Z",
        "last_seen": "2025-06-01T10:01:00.000Z",
        "evidence": [{
            "time": "2025-06-01T10:00:01.000Z",
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

fn notice(kind: ChangeKind, change_id: &str) -> Notice {
    Notice {
        key: KEY.into(),
        change_id: change_id.into(),
        kind,
        findings: vec![finding()],
        group: None,
        target: Target::default(),
    }
}

fn receiver(url: &str, extra_yaml: &str) -> AlertmanagerReceiver {
    let yaml = format!("url: {url}\n{extra_yaml}");
    let config: AlertmanagerConfig = serde_norway::from_str(&yaml).unwrap();
    AlertmanagerReceiver::new("am", &config).unwrap()
}

fn applied(effect: Effect) -> Remote {
    match effect {
        Effect::Applied(remote) => remote,
        Effect::Skipped(reason) => panic!("expected an applied change, got skipped: {reason}"),
    }
}

fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn expected_labels() -> BTreeMap<String, String> {
    string_map(&[
        ("alertname", "login-bruteforce"),
        ("fingerprint", KEY),
        ("severity", "high"),
        ("stages", "operate,test"),
        ("service", "accounts"),
        ("team", "identity"),
        ("client", "203.0.113.9"),
        ("principal", "alice"),
    ])
}

const FACTS: &str = "Rule: login-bruteforce\n\
Severity: high\n\
Stages: operate, test\n\
Service: accounts\n\
Group: client=203.0.113.9, principal=alice\n\
Window: 2025-06-01T10:00:00Z to 2025-06-01T10:05:00Z\n\
Condition: count >= 20\n";

fn expected_description(change: &str, measured: &str) -> String {
    format!(
        "Change: {change}\n{FACTS}Measured: {measured}\nTags: owasp-api2\nFingerprint: {KEY}\n\n\
         Evidence (time | client | request | status | principal | match):\n\
         - 2025-06-01T10:00:01.000Z | 203.0.113.9 | POST /login?user=alice&pw=x | 401 | alice | sqli in query: pw=x"
    )
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Asserts that `endsAt` is `open_for` after a moment between `before` and `after`.
fn assert_ends_after(
    alert: &Value,
    open_for: TimeDelta,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
) {
    let ends_at = parse_time(&alert["endsAt"]);
    let slack = TimeDelta::milliseconds(1);
    assert!(
        ends_at >= before + open_for - slack,
        "endsAt {ends_at} before {before} + {open_for}"
    );
    assert!(
        ends_at <= after + open_for + slack,
        "endsAt {ends_at} after {after} + {open_for}"
    );
}

// ---------------------------------------------------------------------------------------------
// A real Alertmanager.

/// An Alertmanager process with its own folder; both go away when the test ends.
struct Alertmanager {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const ALERTMANAGER_BINARY: &str = "prometheus-alertmanager";

fn find_on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

/// Starts Alertmanager on a free loopback port, or returns `None` after a loud message when
/// the binary is missing and `FEEDLOOP_REQUIRE_ALERTMANAGER` is unset.
fn start_alertmanager(test: &str) -> Option<Alertmanager> {
    let Some(binary) = find_on_path(ALERTMANAGER_BINARY) else {
        assert!(
            std::env::var_os("FEEDLOOP_REQUIRE_ALERTMANAGER").is_none(),
            "{ALERTMANAGER_BINARY} is not on PATH and FEEDLOOP_REQUIRE_ALERTMANAGER is set; run scripts/ensure-alertmanager.sh"
        );
        eprintln!(
            "\n*** SKIPPED {test}: {ALERTMANAGER_BINARY} is not on PATH. Run \
             scripts/ensure-alertmanager.sh, or set FEEDLOOP_REQUIRE_ALERTMANAGER=1 to fail instead. ***\n"
        );
        return None;
    };
    let dir = std::env::temp_dir().join(format!("feedloop-am-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut server = spawn_alertmanager(&binary, dir);
    wait_until_ready(&mut server);
    Some(server)
}

/// Runs Alertmanager with a null receiver, clustering off and its state in `dir`.
fn spawn_alertmanager(binary: &std::path::Path, dir: PathBuf) -> Alertmanager {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();

    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus-alertmanager starts");
    Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

fn wait_until_ready(server: &mut Alertmanager) {
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = agent.get(&format!("{}/-/ready", server.url)).call();
        if ready.is_ok_and(|r| r.status().as_u16() == 200) {
            return;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            let log =
                std::fs::read_to_string(server.dir.join("alertmanager.log")).unwrap_or_default();
            panic!("Alertmanager exited with {status} before it was ready:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "Alertmanager at {} was not ready within 30s",
            server.url
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Lists alerts through `GET /api/v2/alerts` with an optional query.
fn list_alerts(server: &Alertmanager, query: &str) -> Vec<Value> {
    let url = format!("{}/api/v2/alerts{query}", server.url);
    let mut response = agent().get(&url).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    body.as_array().unwrap().clone()
}

/// Returns the query that lists the active alerts of the test key.
fn active_for_key() -> String {
    format!("?active=true&filter=fingerprint%3D%22{KEY}%22")
}

#[test]
fn alertmanager_opens_updates_resolves_reopens() {
    let Some(server) = start_alertmanager("lifecycle") else {
        return;
    };
    let mut receiver = receiver(
        &server.url,
        "labels: {team: identity}\ngenerator_url: http://127.0.0.1:8080/findings\nopen_for: 2h\n",
    );
    let open_for = TimeDelta::hours(2);

    // Opened: one active alert with the exact labels and annotations.
    let mut progress = Recorder::default();
    let before = Utc::now();
    let created = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    let after = Utc::now();
    assert_eq!(created.id, KEY);
    assert!(created.open);
    assert_eq!(progress.created, vec![created.clone()]);
    assert!(progress.render_failures.is_empty());
    assert_eq!(
        created.url.as_deref(),
        Some(
            format!(
                "{}/#/alerts?filter=%7Bfingerprint%3D%22{KEY}%22%7D",
                server.url
            )
            .as_str()
        )
    );
    let stored: BTreeMap<String, String> =
        serde_json::from_str(&created.extra[LABELS_EXTRA]).unwrap();
    assert_eq!(stored, expected_labels());

    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    let labels: BTreeMap<String, String> = serde_json::from_value(alert["labels"].clone()).unwrap();
    assert_eq!(labels, expected_labels());
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(alert["annotations"].clone()).unwrap();
    assert_eq!(
        annotations,
        BTreeMap::from([
            (
                "summary".to_string(),
                "Repeated failed logins: client=203.0.113.9, principal=alice".to_string()
            ),
            (
                "description".to_string(),
                expected_description("opened", "count 20")
            ),
        ])
    );
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["startsAt"], "2025-06-01T10:00:01.000Z");
    assert_eq!(alert["generatorURL"], "http://127.0.0.1:8080/findings");
    assert_ends_after(alert, open_for, before, after);
    assert_eq!(list_alerts(&server, "").len(), 1);

    // Updated: the same alert, with new annotations and a later end.
    let mut update = notice(ChangeKind::Updated, "c2");
    update.findings[0].count = 35;
    let mut progress = Recorder::default();
    let before = Utc::now();
    let updated = applied(
        receiver
            .apply(&update, Some(&created), Rendering::Full, &mut progress)
            .unwrap(),
    );
    let after = Utc::now();
    assert_eq!(updated, created);
    assert!(progress.created.is_empty());
    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0]["annotations"]["description"],
        expected_description("updated", "count 35")
    );
    assert_ends_after(&alerts[0], open_for, before, after);
    assert_eq!(list_alerts(&server, "").len(), 1);

    // Resolved: no longer listed, active or not.
    let mut progress = Recorder::default();
    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved, "c3"),
                Some(&updated),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(!resolved.open);
    assert_eq!(resolved.id, KEY);
    assert!(progress.created.is_empty());
    assert_eq!(list_alerts(&server, &active_for_key()), Vec::<Value>::new());
    assert_eq!(list_alerts(&server, ""), Vec::<Value>::new());

    // A second resolve has nothing to do.
    let skipped = receiver
        .apply(
            &notice(ChangeKind::Resolved, "c4"),
            Some(&resolved),
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();
    assert_eq!(
        skipped,
        Effect::Skipped("the alert is already resolved".into())
    );

    // Reopened: active again, saying why.
    let mut progress = Recorder::default();
    let reopened = applied(
        receiver
            .apply(
                &notice(ChangeKind::Reopened, "c5"),
                Some(&resolved),
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert!(reopened.open);
    assert!(progress.created.is_empty());
    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(
        alerts[0]["annotations"]["description"],
        format!(
            "Reopened: the condition holds again after this alert was resolved.\n\n{}",
            expected_description("reopened", "count 20")
        )
    );
}

#[test]
fn alertmanager_recover_finds_posted_alert() {
    let Some(server) = start_alertmanager("recover") else {
        return;
    };
    let mut first = receiver(&server.url, "labels: {team: identity}\n");
    let opened = notice(ChangeKind::Opened, "c1");
    let created = applied(
        first
            .apply(&opened, None, Rendering::Full, &mut Recorder::default())
            .unwrap(),
    );

    // A receiver that never saw the create finds the alert by its fingerprint label.
    let mut second = receiver(&server.url, "labels: {team: identity}\n");
    assert_eq!(second.recover(&opened).unwrap(), Some(created));
    let mut other = opened.clone();
    other.key = "fedcba9876543210fedcba9876543210".into();
    assert_eq!(second.recover(&other).unwrap(), None);
}

#[test]
fn alertmanager_redacts_labels_and_annotations() {
    let Some(server) = start_alertmanager("redaction") else {
        return;
    };
    let mut receiver = receiver(
        &server.url,
        "redaction: {principals: hash, clients: hash, query: drop}\nbody: \"Seen from {{ group.client }}\"\n",
    );
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );

    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["labels"]["client"], "hash:d861b7e91033");
    assert_eq!(alerts[0]["labels"]["principal"], "hash:2bd806c97f0e");
    let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        "Repeated failed logins: client=hash:d861b7e91033, principal=hash:2bd806c97f0e"
    );
    let description = alerts[0]["annotations"]["description"].as_str().unwrap();
    assert!(
        description.starts_with("Seen from hash:d861b7e91033\n\nChange: opened\n"),
        "{description}"
    );
    for secret in ["203.0.113.9", "alice", "pw=x"] {
        assert!(
            !summary.contains(secret),
            "summary shows {secret}: {summary}"
        );
        assert!(
            !description.contains(secret),
            "description shows {secret}: {description}"
        );
    }
    assert!(
        description
            .ends_with("| POST /login | 401 | hash:2bd806c97f0e | sqli in query: (redacted)"),
        "{description}"
    );
}

#[test]
fn alertmanager_truncates_annotations() {
    let Some(server) = start_alertmanager("truncation") else {
        return;
    };
    let mut receiver = receiver(
        &server.url,
        "max_summary_chars: 40\nmax_description_chars: 120\n",
    );
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );

    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
    let description = alerts[0]["annotations"]["description"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 40, "{summary}");
    assert_eq!(summary, "Repeated failed ... (43 more characters)");
    assert_eq!(description.chars().count(), 120, "{description}");
    assert!(
        description.starts_with("Change: opened\nRule: login-bruteforce\n"),
        "{description}"
    );
    assert!(description.ends_with(" more characters)"), "{description}");
}

#[test]
fn alertmanager_replaces_alert_when_labels_change() {
    let Some(server) = start_alertmanager("relabel") else {
        return;
    };
    let mut receiver = receiver(&server.url, "");
    let created = applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );

    // The finding's service comes from another event in the next window.
    let mut moved = notice(ChangeKind::Updated, "c2");
    moved.findings[0].service = Some("billing".into());
    let updated = applied(
        receiver
            .apply(
                &moved,
                Some(&created),
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    let stored: BTreeMap<String, String> =
        serde_json::from_str(&updated.extra[LABELS_EXTRA]).unwrap();
    assert_eq!(stored["service"], "billing");

    let alerts = list_alerts(&server, &active_for_key());
    assert_eq!(alerts.len(), 1, "the old alert is resolved: {alerts:?}");
    assert_eq!(alerts[0]["labels"]["service"], "billing");

    // A resolve uses the labels stored by the last post.
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved, "c3"),
                Some(&updated),
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    assert_eq!(list_alerts(&server, ""), Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// A loopback mock, for the requests' exact form and the error responses.

fn ok_server() -> MockServer {
    MockServer::start(|_| Reply::empty(200))
}

#[test]
fn alertmanager_request_is_exact() {
    let server = ok_server();
    let mut receiver = receiver(
        server.url(),
        "bearer_token: tok-3141\nlabels: {team: identity}\ngenerator_url: http://127.0.0.1:8080/findings\n",
    );
    let before = Utc::now();
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    let after = Utc::now();

    let requests = server.requests();
    assert_eq!(server.lines(), ["POST /api/v2/alerts"]);
    assert_eq!(requests[0].header("authorization"), Some("Bearer tok-3141"));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let mut body = requests[0].json();
    assert_ends_after(&body[0], TimeDelta::hours(24), before, after);
    body[0]["endsAt"] = Value::Null;
    assert_eq!(
        body,
        json!([{
            "labels": expected_labels(),
            "annotations": {
                "summary": "Repeated failed logins: client=203.0.113.9, principal=alice",
                "description": expected_description("opened", "count 20"),
            },
            "startsAt": "2025-06-01T10:00:01.000Z",
            "endsAt": null,
            "generatorURL": "http://127.0.0.1:8080/findings",
        }])
    );
}

#[test]
fn alertmanager_resolve_sends_end_now() {
    let server = ok_server();
    let mut receiver = receiver(server.url(), "");
    let remote = Remote {
        id: KEY.into(),
        url: None,
        open: true,
        extra: BTreeMap::new(),
    };
    let before = Utc::now();
    let resolved = applied(
        receiver
            .apply(
                &notice(ChangeKind::Resolved, "c9"),
                Some(&remote),
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    let after = Utc::now();
    assert!(!resolved.open);
    let body = server.requests()[0].json();
    assert_eq!(body.as_array().unwrap().len(), 1);
    assert_ends_after(&body[0], TimeDelta::zero(), before, after);
    assert_eq!(body[0]["labels"]["fingerprint"], KEY);
}

#[test]
fn alertmanager_400_then_minimal_passes() {
    let server = ok_server();
    server.fail(Fault::next(
        1,
        Reply::json(400, json!("start time must be before end time")),
    ));
    let mut receiver = receiver(server.url(), "labels: {team: identity}\n");
    let opened = notice(ChangeKind::Opened, "c1");
    let mut progress = Recorder::default();
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Reject {
            reason: format!(
                "POST {}/api/v2/alerts returned HTTP 400: start time must be before end time",
                server.url()
            ),
            status: Some(400),
            response: "\"start time must be before end time\"".into(),
            fallback: true,
        }
    );
    assert!(progress.created.is_empty());

    let created = applied(
        receiver
            .apply(&opened, None, Rendering::Minimal, &mut progress)
            .unwrap(),
    );
    assert_eq!(progress.created, vec![created]);
    let body = server.requests()[1].json();
    assert_eq!(
        body[0]["labels"],
        json!(expected_labels()),
        "the minimal alert keeps its identity"
    );
    assert_eq!(
        body[0]["annotations"],
        json!({
            "summary": "Repeated failed logins",
            "description": format!("Rule: login-bruteforce\nSeverity: high\nFingerprint: {KEY}"),
        })
    );
}

#[test]
fn alertmanager_422_names_the_field() {
    let server = ok_server();
    server.fail(Fault::next(
        1,
        Reply::json(
            422,
            json!({"code": 602, "message": "0.labels in body is required"}),
        ),
    ));
    let mut receiver = receiver(server.url(), "");
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened, "c1"),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();
    match err {
        DeliveryError::Reject {
            reason,
            status,
            fallback,
            ..
        } => {
            assert!(
                reason.ends_with("returned HTTP 422: 0.labels in body is required"),
                "{reason}"
            );
            assert_eq!(status, Some(422));
            assert!(fallback);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn alertmanager_permission_error_rejects() {
    let server = ok_server();
    server.fail(Fault::next(1, Reply::text(403, "Forbidden")));
    let mut receiver = receiver(server.url(), "bearer_token: tok-2718\n");
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened, "c1"),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Reject {
            reason: format!("POST {}/api/v2/alerts returned HTTP 403", server.url()),
            status: Some(403),
            response: "Forbidden".into(),
            fallback: false,
        }
    );
}

#[test]
fn alertmanager_429_waits_for_retry_after() {
    let server = ok_server();
    server.fail(Fault::next(
        1,
        Reply::empty(429).with_header("retry-after", "2"),
    ));
    let mut receiver = receiver(server.url(), "");
    let mut progress = Recorder::default();
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened, "c1"),
            None,
            Rendering::Full,
            &mut progress,
        )
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Retry {
            reason: format!("POST {}/api/v2/alerts returned HTTP 429", server.url()),
            after: Some(Duration::from_secs(2)),
        }
    );
    assert!(progress.created.is_empty());
}

#[test]
fn alertmanager_503_retries_then_posts() {
    let server = ok_server();
    server
        .fail(Fault::next(1, Reply::text(503, "Service Unavailable")).on("POST", "/api/v2/alerts"));
    let mut receiver = receiver(server.url(), "");
    let opened = notice(ChangeKind::Opened, "c1");
    let mut progress = Recorder::default();
    let err = receiver
        .apply(&opened, None, Rendering::Full, &mut progress)
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Retry { after: None, .. }),
        "{err:?}"
    );
    assert!(progress.created.is_empty());

    let created = applied(
        receiver
            .apply(&opened, None, Rendering::Full, &mut progress)
            .unwrap(),
    );
    assert_eq!(progress.created, vec![created]);
    let requests = server.requests();
    assert_eq!(
        server.lines(),
        ["POST /api/v2/alerts", "POST /api/v2/alerts"]
    );
    let (first, second) = (requests[0].json(), requests[1].json());
    assert_eq!(first[0]["labels"], second[0]["labels"]);
    assert_eq!(first[0]["annotations"], second[0]["annotations"]);
}

#[test]
fn alertmanager_skips_resolve_without_open_alert() {
    let server = ok_server();
    let mut receiver = receiver(server.url(), "");
    let resolved = notice(ChangeKind::Resolved, "c1");
    let effect = receiver
        .apply(&resolved, None, Rendering::Full, &mut Recorder::default())
        .unwrap();
    assert_eq!(
        effect,
        Effect::Skipped("no alert was posted for this key, so there is nothing to resolve".into())
    );
    let closed = Remote {
        id: KEY.into(),
        url: None,
        open: false,
        extra: BTreeMap::new(),
    };
    let effect = receiver
        .apply(
            &resolved,
            Some(&closed),
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap();
    assert_eq!(
        effect,
        Effect::Skipped("the alert is already resolved".into())
    );
    assert!(server.requests().is_empty());
}

#[test]
fn alertmanager_template_failure_sends_default() {
    let server = ok_server();
    let mut receiver = receiver(
        server.url(),
        "title: \"{{ distinct }} paths\"\nbody: \"{{ group.path }}\"\n",
    );
    let mut progress = Recorder::default();
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut progress,
            )
            .unwrap(),
    );
    assert_eq!(
        progress.render_failures,
        [
            "receiver `am`: title: the finding has no `distinct`",
            "receiver `am`: body: the finding has no `group.path`",
        ]
    );
    let body = server.requests()[0].json();
    assert_eq!(
        body[0]["annotations"]["summary"],
        "Repeated failed logins: client=203.0.113.9, principal=alice"
    );
    assert_eq!(
        body[0]["annotations"]["description"],
        expected_description("opened", "count 20")
    );
}

#[test]
fn alertmanager_basic_auth_header() {
    let server = ok_server();
    let mut receiver = receiver(
        server.url(),
        "basic_auth: {username: feedloop, password: pa55}\n",
    );
    applied(
        receiver
            .apply(
                &notice(ChangeKind::Opened, "c1"),
                None,
                Rendering::Full,
                &mut Recorder::default(),
            )
            .unwrap(),
    );
    // base64("feedloop:pa55")
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Basic ZmVlZGxvb3A6cGE1NQ==")
    );
}

#[test]
fn alertmanager_secret_stays_hidden() {
    let server = ok_server();
    server.fail(Fault::next(1, Reply::text(401, "Unauthorized")));
    let token = "tok-secret-1618";
    let yaml = format!(
        "url: {}/?token={token}\nbearer_token: {token}\n",
        server.url()
    );
    let config: AlertmanagerConfig = serde_norway::from_str(&yaml).unwrap();
    let mut receiver = AlertmanagerReceiver::new("am", &config).unwrap();
    let err = receiver
        .apply(
            &notice(ChangeKind::Opened, "c1"),
            None,
            Rendering::Full,
            &mut Recorder::default(),
        )
        .unwrap_err();

    let config_debug = format!("{config:?}");
    assert!(
        config_debug.contains("bearer_token: Some(Literal(<redacted>))"),
        "{config_debug}"
    );
    assert!(
        !config_debug
            .replace(&format!("?token={token}"), "")
            .contains(token),
        "{config_debug}"
    );
    let receiver_debug = format!("{receiver:?}");
    assert!(
        !receiver_debug
            .replace(&format!("?token={token}"), "")
            .contains(token),
        "{receiver_debug}"
    );
    assert!(!err.to_string().contains(token), "{err}");
    assert!(!format!("{err:?}").contains(token), "{err:?}");
}

#[test]
fn alertmanager_check_reads_status() {
    let server = MockServer::start(|request| match request.path.as_str() {
        "/api/v2/status" => Reply::json(200, json!({"versionInfo": {"version": "0.25.0"}})),
        _ => Reply::empty(404),
    });
    let mut receiver = receiver(server.url(), "bearer_token: tok-1\n");
    assert_eq!(receiver.check(), Ok(()));
    assert_eq!(server.lines(), ["GET /api/v2/status"]);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer tok-1")
    );

    // A wrong route prefix fails the check; an Alertmanager that is down does not.
    let mut wrong = self::receiver(&format!("{}/alertmanager", server.url()), "");
    let err = wrong.check().unwrap_err();
    assert_eq!(
        err,
        format!(
            "alertmanager receiver `am`: GET {}/alertmanager/api/v2/status returned HTTP 404; check `url` (with any route prefix) and the credentials",
            server.url()
        )
    );
    server.fail(Fault::next(1, Reply::empty(503)));
    assert_eq!(receiver.check(), Ok(()));
}
