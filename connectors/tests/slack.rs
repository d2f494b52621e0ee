//! The Slack receiver against a loopback Slack: exact requests, message state and errors.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use feedloop_connectors::chart;
use feedloop_connectors::delivery::render;
use feedloop_connectors::delivery::slack::{SlackConfig, SlackReceiver};
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, GroupInfo, Notice, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::impact::{Impact, RouteImpact};
use feedloop_pipeline::Finding;
use feedloop_testkit::slack::{SlackMock, OPS_CHANNEL, PRIVATE_CHANNEL, TOKEN, WEBHOOK_PATH};
use feedloop_testkit::{Fault, Reply};

use common::Recorder;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const FIRST_TS: &str = "1700000000.000100";

fn finding() -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["operate"],
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
            slack_channel: Some(OPS_CHANNEL.into()),
            ..Target::default()
        },
    }
}

fn with_count(mut notice: Notice, count: u64, last_seen: &str) -> Notice {
    notice.findings[0].count = count;
    notice.findings[0].last_seen = last_seen.to_string();
    notice
}

fn config(extra: Value) -> SlackConfig {
    let mut config = json!({"min_interval": "1ms", "timeout": "5s"});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(config).unwrap()
}

fn web_api(mock: &SlackMock) -> SlackReceiver {
    SlackReceiver::new(
        "ops",
        &config(json!({"token": TOKEN, "api_url": mock.url()})),
    )
    .unwrap()
}

fn webhook(mock: &SlackMock) -> SlackReceiver {
    SlackReceiver::new(
        "ops-hook",
        &config(json!({"webhook_url": mock.webhook_url()})),
    )
    .unwrap()
}

fn apply(
    receiver: &mut SlackReceiver,
    notice: &Notice,
    remote: Option<&Remote>,
    rendering: Rendering,
) -> (Result<Effect, DeliveryError>, Recorder) {
    let mut progress = Recorder::default();
    let result = receiver.apply(notice, remote, rendering, &mut progress);
    (result, progress)
}

/// Opens the sample finding's message and returns its remote.
fn open(receiver: &mut SlackReceiver) -> Remote {
    let (result, _) = apply(receiver, &notice(ChangeKind::Opened), None, Rendering::Full);
    match result {
        Ok(Effect::Applied(remote)) => remote,
        other => panic!("expected the message to open, got {other:?}"),
    }
}

fn applied(result: Result<Effect, DeliveryError>) -> Remote {
    match result {
        Ok(Effect::Applied(remote)) => remote,
        other => panic!("expected an applied change, got {other:?}"),
    }
}

fn rejection(result: Result<Effect, DeliveryError>) -> (String, Option<u16>, String, bool) {
    match result {
        Err(DeliveryError::Reject {
            reason,
            status,
            response,
            fallback,
        }) => (reason, status, response, fallback),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn opened_remote() -> Remote {
    Remote {
        id: format!("{OPS_CHANNEL}/{FIRST_TS}"),
        url: None,
        open: true,
        extra: [
            ("channel".to_string(), OPS_CHANNEL.to_string()),
            ("ts".to_string(), FIRST_TS.to_string()),
        ]
        .into(),
    }
}

fn expected_metadata() -> Value {
    json!({
        "event_type": "feedloop_finding",
        "event_payload": {"key": KEY, "marker": "feedloop-0123456789abcdef"},
    })
}

fn texts(blocks: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for block in blocks.as_array().unwrap() {
        if let Some(text) = block["text"]["text"].as_str() {
            out.push(text.to_string());
        }
        for list in ["fields", "elements"] {
            for item in block[list].as_array().into_iter().flatten() {
                out.push(item["text"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

#[test]
fn create_posts_blocks_and_metadata() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );

    let remote = applied(result);
    assert_eq!(remote, opened_remote());
    assert_eq!(progress.created, [opened_remote()]);
    assert!(progress.render_failures.is_empty());

    let requests = mock.requests();
    assert_eq!(mock.server().lines(), ["POST /chat.postMessage"]);
    let request = &requests[0];
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let expected = json!({
        "channel": OPS_CHANNEL,
        "text": "Open: Repeated failed logins: client=203.0.113.9, principal=alice (high severity, rule login-bruteforce)",
        "metadata": expected_metadata(),
        "unfurl_links": false,
        "unfurl_media": false,
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": "Open: Repeated failed logins: client=203.0.113.9, principal=alice",
                    "emoji": true,
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Rule*\nlogin-bruteforce"},
                    {"type": "mrkdwn", "text": "*Severity*\nhigh"},
                    {"type": "mrkdwn", "text": "*Stages*\noperate"},
                    {"type": "mrkdwn", "text": "*Service*\naccounts"},
                    {"type": "mrkdwn", "text": "*Group*\nclient=203.0.113.9, principal=alice"},
                    {"type": "mrkdwn", "text": "*Window*\n2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z"},
                    {"type": "mrkdwn", "text": "*Condition*\ncount &gt;= 20"},
                    {"type": "mrkdwn", "text": "*Measured*\ncount 20"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "Last change: *opened*, last seen 2026-12-04T10:01:00.000Z | Fingerprint `0123456789abcdef0123456789abcdef` | feedloop-0123456789abcdef",
                    },
                    {"type": "mrkdwn", "text": "Owners: team-identity | Tags: owasp-api2"},
                ],
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Evidence*\n```\n2026-12-04T10:00:01.000Z  203.0.113.9  POST /login?user=alice&amp;pw=x  401  alice  sqli in query: pw=x\n```",
                },
            },
        ],
    });
    assert_eq!(request.json(), expected);

    let messages = mock.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].ts, FIRST_TS);
    assert_eq!(messages[0].metadata, Some(expected_metadata()));
}

#[test]
fn update_edits_then_replies_in_thread() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);
    let update = with_count(notice(ChangeKind::Updated), 35, "2026-12-04T10:03:30.000Z");

    let (result, progress) = apply(&mut receiver, &update, Some(&remote), Rendering::Full);

    assert_eq!(applied(result), opened_remote());
    assert!(progress.created.is_empty());
    assert_eq!(
        mock.server().lines(),
        [
            "POST /chat.postMessage",
            "POST /chat.update",
            "POST /chat.postMessage"
        ]
    );
    let requests = mock.requests();
    let edit = requests[1].json();
    assert_eq!(edit["channel"], OPS_CHANNEL);
    assert_eq!(edit["ts"], FIRST_TS);
    assert_eq!(edit["metadata"], expected_metadata());
    let edited = texts(&edit["blocks"]);
    assert_eq!(
        edited[0],
        "Open: Repeated failed logins: client=203.0.113.9, principal=alice"
    );
    assert!(
        edited.contains(&"*Measured*\ncount 35".to_string()),
        "{edited:?}"
    );
    assert!(
        edited
            .iter()
            .any(|t| t.starts_with("Last change: *updated*, last seen 2026-12-04T10:03:30.000Z")),
        "{edited:?}"
    );
    let reply = requests[2].json();
    assert_eq!(
        reply,
        json!({
            "channel": OPS_CHANNEL,
            "thread_ts": FIRST_TS,
            "text": "*Updated:* count 35 in the window 2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z, last seen 2026-12-04T10:03:30.000Z.",
            "unfurl_links": false,
            "unfurl_media": false,
        })
    );

    let messages = mock.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1, "an update never opens a second message");
    let message = &messages[0];
    assert_eq!(message.edits, 1);
    assert_eq!(message.replies.len(), 1);
    assert_eq!(message.replies[0].thread_ts.as_deref(), Some(FIRST_TS));
    let shown = texts(message.blocks.as_ref().unwrap());
    assert!(
        shown.contains(&"*Measured*\ncount 35".to_string()),
        "{shown:?}"
    );
}

#[test]
fn replayed_open_becomes_update() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        Some(&remote),
        Rendering::Full,
    );

    assert_eq!(applied(result), opened_remote());
    assert!(progress.created.is_empty());
    assert_eq!(mock.messages(OPS_CHANNEL).len(), 1);
    assert_eq!(mock.messages(OPS_CHANNEL)[0].replies.len(), 1);
}

#[test]
fn resolve_marks_header_and_replies() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&remote),
        Rendering::Full,
    );

    let resolved = applied(result);
    assert!(!resolved.open);
    assert_eq!(resolved.id, remote.id);
    let message = mock.message(OPS_CHANNEL, FIRST_TS).unwrap();
    assert_eq!(
        message.block_text(0).as_deref(),
        Some("Resolved: Repeated failed logins: client=203.0.113.9, principal=alice")
    );
    assert!(message.text.starts_with("Resolved: "), "{}", message.text);
    assert_eq!(message.replies.len(), 1);
    assert_eq!(
        message.replies[0].text,
        "*Resolved:* the condition `count &gt;= 20` has not held for the rule's resolve period. \
         Last count 20, last seen 2026-12-04T10:01:00.000Z."
    );
}

#[test]
fn reopen_after_resolve() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&remote),
        Rendering::Full,
    );
    let resolved = applied(result);

    let reopen = with_count(notice(ChangeKind::Reopened), 41, "2026-12-04T11:00:00.000Z");
    let (result, progress) = apply(&mut receiver, &reopen, Some(&resolved), Rendering::Full);

    let reopened = applied(result);
    assert!(reopened.open);
    assert_eq!(reopened.id, remote.id);
    assert!(progress.created.is_empty());
    let message = mock.message(OPS_CHANNEL, FIRST_TS).unwrap();
    assert_eq!(
        message.block_text(0).as_deref(),
        Some("Reopened: Repeated failed logins: client=203.0.113.9, principal=alice")
    );
    assert_eq!(message.edits, 2);
    assert_eq!(message.replies.len(), 2);
    assert_eq!(
        message.replies[1].text,
        "*Reopened:* the condition `count &gt;= 20` holds again: count 41 in the window \
         2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z."
    );

    // An update that finds the message resolved reopens it too, and the reply states it.
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&reopened),
        Rendering::Full,
    );
    let resolved = applied(result);
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&resolved),
        Rendering::Full,
    );
    assert!(applied(result).open);
    let message = mock.message(OPS_CHANNEL, FIRST_TS).unwrap();
    assert!(message.replies[3].text.starts_with("*Reopened:*"));
}

#[test]
fn resolve_without_open_message_is_skipped() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let resolved = notice(ChangeKind::Resolved);

    let (result, _) = apply(&mut receiver, &resolved, None, Rendering::Full);
    assert!(matches!(result, Ok(Effect::Skipped(_))), "{result:?}");

    let mut closed = opened_remote();
    closed.open = false;
    let (result, _) = apply(&mut receiver, &resolved, Some(&closed), Rendering::Full);
    assert!(matches!(result, Ok(Effect::Skipped(_))), "{result:?}");

    assert!(mock.requests().is_empty());
}

#[test]
fn unknown_channel_is_rejected() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut missing = notice(ChangeKind::Opened);
    missing.target.slack_channel = Some("C0GONE".into());

    let (result, progress) = apply(&mut receiver, &missing, None, Rendering::Full);

    let (reason, status, response, fallback) = rejection(result);
    assert_eq!(
        reason,
        format!(
            "POST {}/chat.postMessage returned error `channel_not_found`; check the channel id \
             in the service catalog's `slack_channel` or the receiver's `channel`",
            mock.url()
        )
    );
    assert_eq!(status, Some(200));
    assert_eq!(response, r#"{"error":"channel_not_found","ok":false}"#);
    assert!(!fallback);
    assert!(progress.created.is_empty());
}

#[test]
fn permission_errors_are_rejected() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut private = notice(ChangeKind::Opened);
    private.target.slack_channel = Some(PRIVATE_CHANNEL.into());
    let (result, _) = apply(&mut receiver, &private, None, Rendering::Full);
    let (reason, _, _, fallback) = rejection(result);
    assert!(
        reason.contains("returned error `not_in_channel`; invite the app"),
        "{reason}"
    );
    assert!(!fallback);

    let bad_token = config(json!({"token": "xoxb-wrong", "api_url": mock.url()}));
    let mut receiver = SlackReceiver::new("ops", &bad_token).unwrap();
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let (reason, _, _, fallback) = rejection(result);
    assert!(
        reason.ends_with("returned error `invalid_auth`; check the receiver's `token`"),
        "{reason}"
    );
    assert!(!fallback);
    assert!(mock.messages(OPS_CHANNEL).is_empty());
}

#[test]
fn missing_channel_names_both_fixes() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut nowhere = notice(ChangeKind::Opened);
    nowhere.target.slack_channel = None;

    let (result, _) = apply(&mut receiver, &nowhere, None, Rendering::Full);

    let (reason, status, _, _) = rejection(result);
    assert_eq!(
        reason,
        "slack receiver `ops`: no channel for service `accounts`; set `slack_channel` for the \
         service in the service catalog, or `channel` in the receiver's configuration"
    );
    assert_eq!(status, None);
    assert!(mock.requests().is_empty());
}

#[test]
fn configured_channel_is_the_default() {
    let mock = SlackMock::start();
    let with_default = config(json!({"token": TOKEN, "api_url": mock.url(), "channel": "#ops"}));
    let mut receiver = SlackReceiver::new("ops", &with_default).unwrap();
    let mut no_catalog = notice(ChangeKind::Opened);
    no_catalog.target.slack_channel = None;

    let (result, _) = apply(&mut receiver, &no_catalog, None, Rendering::Full);

    // Slack returns the channel's id, which later edits need.
    assert_eq!(applied(result), opened_remote());
    assert_eq!(mock.requests()[0].json()["channel"], "#ops");
}

#[test]
fn invalid_blocks_then_minimal_passes() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    mock.server().fail(
        Fault::next(
            1,
            Reply::json(
                200,
                json!({
                    "ok": false,
                    "error": "invalid_blocks",
                    "errors": ["unsupported type"],
                    "response_metadata": {"messages": ["[ERROR] unsupported type [json-pointer:/blocks/3]"]},
                }),
            ),
        )
        .on("POST", "/chat.postMessage"),
    );

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let (reason, status, _, fallback) = rejection(result);
    assert!(fallback, "{reason}");
    assert_eq!(status, Some(200));
    assert!(
        reason.contains(
            "returned error `invalid_blocks` (messages: [ERROR] unsupported type \
             [json-pointer:/blocks/3]); the message's size or format was rejected"
        ),
        "{reason}"
    );
    assert!(progress.created.is_empty());

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Minimal,
    );
    let remote = applied(result);
    assert_eq!(progress.created, std::slice::from_ref(&remote));
    let minimal = mock.requests()[1].json();
    assert_eq!(
        minimal,
        json!({
            "channel": OPS_CHANNEL,
            "text": "Open: Repeated failed logins: client=203.0.113.9, principal=alice\nRule: login-bruteforce | Severity: high | Fingerprint: 0123456789abcdef0123456789abcdef",
            "metadata": expected_metadata(),
            "unfurl_links": false,
            "unfurl_media": false,
        })
    );
    let messages = mock.messages(OPS_CHANNEL);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].blocks, None);
}

#[test]
fn minimal_edit_removes_blocks() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&remote),
        Rendering::Minimal,
    );

    applied(result);
    let edit = mock.requests()[1].json();
    assert_eq!(edit["blocks"], json!([]));
    assert_eq!(mock.message(OPS_CHANNEL, FIRST_TS).unwrap().blocks, None);
}

#[test]
fn rate_limit_retries_after_header() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    mock.server().fail(
        Fault::next(
            1,
            Reply::json(429, json!({"ok": false, "error": "ratelimited"}))
                .with_header("retry-after", "2"),
        )
        .on("POST", "/chat.postMessage"),
    );

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );

    assert_eq!(
        result,
        Err(DeliveryError::Retry {
            reason: format!("POST {}/chat.postMessage returned HTTP 429", mock.url()),
            after: Some(Duration::from_secs(2)),
        })
    );
    assert!(progress.created.is_empty());
    assert!(mock.messages(OPS_CHANNEL).is_empty());
}

#[test]
fn transient_ok_false_retries() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);
    mock.server().fail(
        Fault::next(
            1,
            Reply::json(200, json!({"ok": false, "error": "internal_error"})),
        )
        .on("POST", "/chat.update"),
    );

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&remote),
        Rendering::Full,
    );

    match result {
        Err(DeliveryError::Retry { reason, after }) => {
            assert!(
                reason.contains("returned error `internal_error`"),
                "{reason}"
            );
            assert_eq!(after, None);
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    // The edit failed first, so no thread reply was posted that a retry would repeat.
    assert!(mock
        .message(OPS_CHANNEL, FIRST_TS)
        .unwrap()
        .replies
        .is_empty());
}

#[test]
fn deleted_message_is_rejected() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut gone = opened_remote();
    gone.extra.insert("ts".into(), "1699999999.000001".into());

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&gone),
        Rendering::Full,
    );

    let (reason, _, _, fallback) = rejection(result);
    assert!(
        reason.contains("returned error `message_not_found`"),
        "{reason}"
    );
    assert!(!fallback);
}

#[test]
fn recover_finds_interrupted_create() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    // The create reached Slack but its result was never stored.
    open(&mut receiver);
    let other_key = json!({
        "event_type": "feedloop_finding",
        "event_payload": {"key": "ffff", "marker": "feedloop-ffff"},
    });
    mock.add_message(OPS_CHANNEL, "another finding", Some(other_key));
    mock.add_message(OPS_CHANNEL, "someone chatting", None);

    let found = receiver.recover(&notice(ChangeKind::Opened)).unwrap();

    assert_eq!(found, Some(opened_remote()));
    let requests = mock.requests();
    let lookup = requests.last().unwrap();
    assert_eq!(lookup.line(), "GET /conversations.history");
    assert_eq!(
        lookup.query,
        format!("channel={OPS_CHANNEL}&include_all_metadata=true&limit=100")
    );
    assert_eq!(
        lookup.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let mut unknown = notice(ChangeKind::Opened);
    unknown.key = "fedcba9876543210fedcba9876543210".into();
    assert_eq!(receiver.recover(&unknown).unwrap(), None);
}

#[test]
fn recover_by_channel_name_finds_nothing() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut by_name = notice(ChangeKind::Opened);
    by_name.target.slack_channel = Some("#ops".into());

    assert_eq!(receiver.recover(&by_name).unwrap(), None);
    assert!(mock.requests().is_empty());
}

#[test]
fn redaction_applies_policy() {
    let mock = SlackMock::start();
    let public = config(json!({
        "token": TOKEN,
        "api_url": mock.url(),
        "redaction": {"principals": "hash", "clients": "hash", "query": "drop"},
    }));
    let mut receiver = SlackReceiver::new("ops", &public).unwrap();

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );

    applied(result);
    let body = mock.requests()[0].text();
    for private in ["203.0.113.9", "alice", "pw=x"] {
        assert!(!body.contains(private), "{private} leaked: {body}");
    }
    let client = render::hash_value("203.0.113.9");
    let principal = render::hash_value("alice");
    let blocks = texts(&mock.requests()[0].json()["blocks"]);
    assert!(
        blocks.contains(&format!("*Group*\nclient={client}, principal={principal}")),
        "{blocks:?}"
    );
    assert!(
        blocks.contains(&format!(
            "*Evidence*\n```\n2026-12-04T10:00:01.000Z  {client}  POST /login  401  {principal}  \
             sqli in query: (redacted)\n```"
        )),
        "{blocks:?}"
    );
}

#[test]
fn truncation_at_the_limits() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut big = notice(ChangeKind::Opened);
    let finding = &mut big.findings[0];
    finding.title = "T".repeat(500);
    finding
        .group
        .insert("path".into(), json!("/p".repeat(3_000)));
    let event = finding.evidence[0].clone();
    finding.evidence = (0..200)
        .map(|i| {
            let mut event = event.clone();
            event.path = format!("/items/{i}/{}", "x".repeat(400));
            event
        })
        .collect();

    let (result, _) = apply(&mut receiver, &big, None, Rendering::Full);

    applied(result);
    let body = mock.requests()[0].json();
    assert_eq!(body["text"].as_str().unwrap().chars().count(), 3_000);
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
    assert!(header.ends_with("more characters)"), "{header}");
    let fields = blocks[1]["fields"].as_array().unwrap();
    assert!(fields.len() <= 10);
    for field in fields {
        assert!(field["text"].as_str().unwrap().chars().count() <= 2_000);
    }
    let group = fields[4]["text"].as_str().unwrap();
    assert!(group.starts_with("*Group*\nclient="), "{group}");
    assert_eq!(group.chars().count(), 2_000);
    let evidence = blocks[3]["text"]["text"].as_str().unwrap();
    assert!(evidence.chars().count() <= 3_000);
    assert!(evidence.ends_with("more events not shown)"), "{evidence}");
    // Slack's own limits accepted the message.
    assert_eq!(mock.messages(OPS_CHANNEL).len(), 1);
}

#[test]
fn mrkdwn_escapes_reserved_characters() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let mut hostile = notice(ChangeKind::Opened);
    hostile.findings[0].title = "<!channel> & <https://evil.example|bank>".into();
    hostile.findings[0].evidence[0].path = "/a<b>&c".into();

    let (result, _) = apply(&mut receiver, &hostile, None, Rendering::Full);

    applied(result);
    let body = mock.requests()[0].json();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("Open: &lt;!channel&gt; &amp; &lt;https://evil.example|bank&gt;: "),
        "{text}"
    );
    let blocks = texts(&body["blocks"]);
    assert_eq!(
        blocks[0],
        "Open: <!channel> & <https://evil.example|bank>: client=203.0.113.9, principal=alice",
        "the plain_text header is sent as written"
    );
    for mrkdwn in &blocks[1..] {
        assert!(!mrkdwn.contains('<'), "{mrkdwn}");
        assert!(!mrkdwn.contains('>'), "{mrkdwn}");
    }
    let evidence = blocks.last().unwrap();
    assert!(evidence.contains("POST /a&lt;b&gt;&amp;c?"), "{evidence}");
}

#[test]
fn failed_title_template_sends_default() {
    let mock = SlackMock::start();
    let custom = config(json!({
        "token": TOKEN,
        "api_url": mock.url(),
        "title": "{{ distinct }} distinct paths",
        "body": "Owners: {{ owners }}. {{ ratio }}",
    }));
    let mut receiver = SlackReceiver::new("ops", &custom).unwrap();

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );

    applied(result);
    assert_eq!(
        progress.render_failures,
        [
            "slack receiver `ops`: title template `{{ distinct }} distinct paths`: the finding \
             has no `distinct`",
            "slack receiver `ops`: body template `Owners: {{ owners }}. {{ ratio }}`: the \
             finding has no `ratio`",
        ]
    );
    let blocks = texts(&mock.requests()[0].json()["blocks"]);
    assert_eq!(
        blocks[0],
        "Open: Repeated failed logins: client=203.0.113.9, principal=alice"
    );
    assert_eq!(blocks[1], "*Rule*\nlogin-bruteforce", "no intro section");
}

#[test]
fn body_template_adds_intro_section() {
    let mock = SlackMock::start();
    let custom = config(json!({
        "token": TOKEN,
        "api_url": mock.url(),
        "body": "Owners: {{ owners }} <check the runbook>",
    }));
    let mut receiver = SlackReceiver::new("ops", &custom).unwrap();

    applied(
        apply(
            &mut receiver,
            &notice(ChangeKind::Opened),
            None,
            Rendering::Full,
        )
        .0,
    );

    let blocks = &mock.requests()[0].json()["blocks"];
    assert_eq!(
        blocks[1],
        json!({"type": "section", "text": {"type": "mrkdwn", "text": "Owners: team-identity &lt;check the runbook&gt;"}})
    );
}

#[test]
fn group_notice_reply_counts_findings() {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let remote = open(&mut receiver);
    let mut grouped = notice(ChangeKind::Updated);
    grouped.group = Some(GroupInfo {
        labels: [("service".to_string(), "accounts".to_string())].into(),
        count: 3,
    });

    applied(apply(&mut receiver, &grouped, Some(&remote), Rendering::Full).0);

    let message = mock.message(OPS_CHANNEL, FIRST_TS).unwrap();
    assert!(
        message.replies[0]
            .text
            .ends_with(" 3 findings in the group."),
        "{}",
        message.replies[0].text
    );
    let shown = texts(message.blocks.as_ref().unwrap());
    assert!(
        shown.contains(&"*Findings in group*\n3".to_string()),
        "{shown:?}"
    );
}

#[test]
fn posts_to_one_channel_are_spaced() {
    let mock = SlackMock::start();
    mock.set_min_post_interval(Some(Duration::from_millis(150)));
    let spaced = config(json!({"token": TOKEN, "api_url": mock.url(), "min_interval": "200ms"}));
    let mut receiver = SlackReceiver::new("ops", &spaced).unwrap();
    let remote = open(&mut receiver);

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&remote),
        Rendering::Full,
    );

    applied(result);
    let posts: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/chat.postMessage")
        .collect();
    assert_eq!(posts.len(), 2);
    let gap = posts[1].at.duration_since(posts[0].at);
    assert!(gap >= Duration::from_millis(190), "{gap:?}");

    // Without spacing, Slack's per-channel limit returns 429 and the engine waits.
    mock.add_channel("C03BUSY", "busy");
    mock.set_min_post_interval(Some(Duration::from_secs(5)));
    let mut hasty = web_api(&mock);
    let mut busy = notice(ChangeKind::Opened);
    busy.target.slack_channel = Some("C03BUSY".into());
    let (result, _) = apply(&mut hasty, &busy, None, Rendering::Full);
    let opened = applied(result);
    busy.kind = ChangeKind::Updated;
    let (result, _) = apply(&mut hasty, &busy, Some(&opened), Rendering::Full);
    assert_eq!(
        result,
        Err(DeliveryError::Retry {
            reason: format!("POST {}/chat.postMessage returned HTTP 429", mock.url()),
            after: Some(Duration::from_secs(1)),
        })
    );
}

#[test]
fn check_calls_auth_test() {
    let mock = SlackMock::start();
    assert_eq!(web_api(&mock).check(), Ok(()));
    let bad_token = config(json!({"token": "xoxb-wrong", "api_url": mock.url()}));
    let err = SlackReceiver::new("ops", &bad_token)
        .unwrap()
        .check()
        .unwrap_err();
    assert!(
        err.starts_with("slack receiver `ops`: POST ") && err.contains("`invalid_auth`"),
        "{err}"
    );
    assert!(!err.contains("xoxb-wrong"), "{err}");
    assert_eq!(
        mock.server().lines(),
        ["POST /auth.test", "POST /auth.test"]
    );
}

#[test]
fn webhook_posts_new_message_per_change() {
    let mock = SlackMock::start();
    let mut receiver = webhook(&mock);

    let (result, progress) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let first = applied(result);
    assert_eq!(first.id, "webhook");
    assert!(first.open);
    assert_eq!(first.extra["messages"], "1");
    assert_eq!(progress.created, std::slice::from_ref(&first));

    let update = with_count(notice(ChangeKind::Updated), 35, "2026-12-04T10:03:30.000Z");
    let (result, progress) = apply(&mut receiver, &update, Some(&first), Rendering::Full);
    let second = applied(result);
    assert_eq!(second.extra["messages"], "2");
    assert!(progress.created.is_empty());

    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&second),
        Rendering::Full,
    );
    let third = applied(result);
    assert!(!third.open);
    assert_eq!(third.extra["messages"], "3");

    assert_eq!(
        mock.server().lines(),
        vec![format!("POST {WEBHOOK_PATH}"); 3]
    );
    let requests = mock.requests();
    let opened = requests[0].json();
    assert_eq!(
        requests[0].header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(opened.get("channel"), None);
    assert_eq!(opened.get("metadata"), None);
    let messages = mock.messages(OPS_CHANNEL);
    let headers: Vec<String> = messages.iter().map(|m| m.block_text(0).unwrap()).collect();
    assert_eq!(
        headers,
        [
            "Open: Repeated failed logins: client=203.0.113.9, principal=alice",
            "Updated: Repeated failed logins: client=203.0.113.9, principal=alice",
            "Resolved: Repeated failed logins: client=203.0.113.9, principal=alice",
        ]
    );
    assert!(messages
        .iter()
        .all(|m| m.via_webhook && m.replies.is_empty()));
    assert_eq!(receiver.recover(&notice(ChangeKind::Opened)).unwrap(), None);
}

#[test]
fn webhook_errors_are_classed() {
    let mock = SlackMock::start();
    let mut receiver = webhook(&mock);
    let opened = notice(ChangeKind::Opened);
    let faults = [
        (Reply::text(400, "invalid_blocks"), true),
        (Reply::text(403, "action_prohibited"), false),
        (Reply::text(404, "channel_not_found"), false),
    ];
    for (reply, expect_fallback) in faults {
        mock.server().fail(Fault::next(1, reply));
        let (result, _) = apply(&mut receiver, &opened, None, Rendering::Full);
        let (reason, _, _, fallback) = rejection(result);
        assert_eq!(fallback, expect_fallback, "{reason}");
        assert!(!reason.contains(WEBHOOK_PATH), "{reason}");
    }

    mock.archive(OPS_CHANNEL);
    let (result, _) = apply(&mut receiver, &opened, None, Rendering::Full);
    let (reason, status, _, _) = rejection(result);
    assert_eq!(
        reason,
        "POST the Slack incoming webhook returned HTTP 410: `channel_is_archived`; unarchive \
         the channel or create a webhook for another one"
    );
    assert_eq!(status, Some(410));

    mock.server().fail(Fault::next(
        1,
        Reply::text(429, "rate_limited").with_header("retry-after", "2"),
    ));
    let (result, _) = apply(&mut receiver, &opened, None, Rendering::Full);
    assert_eq!(
        result,
        Err(DeliveryError::Retry {
            reason: "POST the Slack incoming webhook returned HTTP 429".into(),
            after: Some(Duration::from_secs(2)),
        })
    );
    assert!(mock.messages(OPS_CHANNEL).is_empty());
}

#[test]
fn webhook_minimal_is_text_only() {
    let mock = SlackMock::start();
    let mut receiver = webhook(&mock);

    applied(
        apply(
            &mut receiver,
            &notice(ChangeKind::Opened),
            None,
            Rendering::Minimal,
        )
        .0,
    );

    assert_eq!(
        mock.requests()[0].json(),
        json!({
            "text": "Open: Repeated failed logins: client=203.0.113.9, principal=alice\nRule: login-bruteforce | Severity: high | Fingerprint: 0123456789abcdef0123456789abcdef",
            "unfurl_links": false,
            "unfurl_media": false,
        })
    );
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let mock = SlackMock::start();
    let token_config = config(json!({"token": TOKEN, "api_url": mock.url()}));
    let receiver = SlackReceiver::new("ops", &token_config).unwrap();
    for shown in [format!("{token_config:?}"), format!("{receiver:?}")] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }

    let hook_config = config(json!({"webhook_url": mock.webhook_url()}));
    let mut receiver = SlackReceiver::new("ops-hook", &hook_config).unwrap();
    let secret = WEBHOOK_PATH.rsplit('/').next().unwrap();
    for shown in [format!("{hook_config:?}"), format!("{receiver:?}")] {
        assert!(!shown.contains(secret), "{shown}");
    }
    mock.server()
        .fail(Fault::next(1, Reply::text(404, "no_service")));
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "POST the Slack incoming webhook returned HTTP 404: `no_service`; the webhook was \
         removed or its URL is wrong; create a new incoming webhook"
    );

    // A refused connection: the mock's port is closed once it is dropped.
    let url = mock.webhook_url();
    drop(mock);
    let closed = config(json!({"webhook_url": url}));
    let mut receiver = SlackReceiver::new("ops-hook", &closed).unwrap();
    let (result, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let err = result.unwrap_err();
    assert!(matches!(err, DeliveryError::Retry { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains(secret), "{err:?}");
    assert!(!format!("{err:?}").contains("/services/"), "{err:?}");
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

/// Posts the notice's opening message through the Web API and returns its blocks.
fn opened_blocks(notice: &Notice) -> Vec<Value> {
    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    applied(apply(&mut receiver, notice, None, Rendering::Full).0);
    mock.requests()[0].json()["blocks"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn impact_adds_text_chart_block() {
    let plain = opened_blocks(&notice(ChangeKind::Opened));
    let mut charted_notice = notice(ChangeKind::Opened);
    charted_notice.findings[0].impact = Some(impact());
    let charted = opened_blocks(&charted_notice);

    let text = chart::text_chart(&impact().routes[0]);
    assert!(text.contains("0 to 302 per window"), "{text}");
    let section = json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*Impact*\n```\n{text}\n```")},
    });
    let mut expected = plain.clone();
    expected.insert(3, section.clone());
    assert_eq!(charted, expected, "the chart goes before the evidence");
    assert!(!texts(&Value::Array(plain))
        .iter()
        .any(|t| t.starts_with("*Impact*")));

    let mock = SlackMock::start();
    let mut receiver = web_api(&mock);
    let (result, _) = apply(&mut receiver, &charted_notice, None, Rendering::Full);
    let remote = applied(result);
    let mut update = charted_notice.clone();
    update.kind = ChangeKind::Updated;
    applied(apply(&mut receiver, &update, Some(&remote), Rendering::Full).0);
    let edit = mock.requests()[1].json();
    assert!(
        edit["blocks"].as_array().unwrap().contains(&section),
        "the edit keeps the chart: {edit}"
    );

    let mock = SlackMock::start();
    let mut receiver = webhook(&mock);
    applied(apply(&mut receiver, &charted_notice, None, Rendering::Full).0);
    let posted = mock.requests()[0].json();
    assert!(
        posted["blocks"].as_array().unwrap().contains(&section),
        "{posted}"
    );
}
