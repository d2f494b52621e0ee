//! The Jira receiver against a loopback Jira, for both API flavours: the exact requests it
//! sends, the issues, comments and transitions that result, and its failure classes.

mod common;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use feedloop_connectors::chart;
use feedloop_connectors::delivery::jira::{
    marker_label, JiraConfig, JiraReceiver, SUMMARY_MAX_CHARS, TEXT_MAX_CHARS,
};
use feedloop_connectors::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Receiver, Remote, Rendering, Target,
};
use feedloop_pipeline::impact::{Impact, RouteImpact};
use feedloop_pipeline::Finding;
use feedloop_testkit::jira::{error_body, FieldSpec, Flavour, MockJira, Setup, TOO_LONG};
use feedloop_testkit::{query_pairs, Fault, Reply};

use common::Recorder;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const MARKER: &str = "feedloop-0123456789abcdef";
const SUMMARY: &str = "Repeated failed logins: client=203.0.113.9, principal=alice";

fn finding() -> Finding {
    serde_json::from_value(json!({
        "rule_id": "login-bruteforce",
        "title": "Repeated failed logins",
        "fingerprint": KEY,
        "phase": "early",
        "kind": "threshold",
        "severity": "high",
        "stages": ["design"],
        "tags": [],
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
            ..Target::default()
        },
    }
}

fn config(jira: &MockJira, flavour: Flavour, extra: &str) -> JiraConfig {
    let auth = match flavour {
        Flavour::Cloud => "email: bot@example.com\ntoken: cloud-token-7f3a\n",
        Flavour::DataCenter => "api: data_center\ntoken: dc-pat-91be\n",
    };
    let yaml = format!(
        "base_url: {}\n{auth}project: PAY\ntimeout: 5s\n{extra}",
        jira.url()
    );
    serde_norway::from_str(&yaml).unwrap()
}

fn start(setup: Setup, extra: &str) -> (MockJira, JiraReceiver) {
    let flavour = setup.flavour;
    let jira = MockJira::start(setup);
    let receiver = JiraReceiver::new("jira", &config(&jira, flavour, extra)).unwrap();
    (jira, receiver)
}

fn setup(flavour: Flavour) -> Setup {
    match flavour {
        Flavour::Cloud => Setup::cloud(),
        Flavour::DataCenter => Setup::data_center(),
    }
}

fn prefix(flavour: Flavour) -> &'static str {
    flavour.prefix().trim_end_matches('/')
}

fn apply(
    receiver: &mut JiraReceiver,
    notice: &Notice,
    remote: Option<&Remote>,
    rendering: Rendering,
) -> (Result<Effect, DeliveryError>, Recorder) {
    let mut recorder = Recorder::default();
    let effect = receiver.apply(notice, remote, rendering, &mut recorder);
    (effect, recorder)
}

/// Creates PAY-1 and returns its remote.
fn create(receiver: &mut JiraReceiver) -> Remote {
    let (effect, recorder) = apply(receiver, &notice(ChangeKind::Opened), None, Rendering::Full);
    let Ok(Effect::Applied(remote)) = effect else {
        panic!("create failed: {effect:?}");
    };
    assert_eq!(recorder.created, std::slice::from_ref(&remote));
    remote
}

fn text(value: &str) -> Value {
    json!({"type": "text", "text": value})
}

fn adf_fact(label: &str, value: &str) -> Value {
    json!({"type": "listItem", "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": format!("{label}:"), "marks": [{"type": "strong"}]},
        text(&format!(" {value}")),
    ]}]})
}

fn adf_facts(change: &str, count: u64) -> Value {
    json!({"type": "bulletList", "content": [
        adf_fact("Change", change),
        adf_fact("Rule", "login-bruteforce"),
        adf_fact("Severity", "high"),
        adf_fact("Stages", "design"),
        adf_fact("Service", "accounts"),
        adf_fact("Group", "client=203.0.113.9, principal=alice"),
        adf_fact("Window", "2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z"),
        adf_fact("Measured", &format!("count {count}")),
        adf_fact("Fingerprint", KEY),
    ]})
}

fn adf_cell(kind: &str, value: &str, mark: &str) -> Value {
    json!({"type": kind, "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": value, "marks": [{"type": mark}]}
    ]}]})
}

fn adf_evidence() -> Vec<Value> {
    let header: Vec<Value> = ["time", "client", "request", "status", "principal", "match"]
        .iter()
        .map(|name| adf_cell("tableHeader", name, "strong"))
        .collect();
    let row: Vec<Value> = [
        "2026-12-04T10:00:01.000Z",
        "203.0.113.9",
        "POST /login?user=alice&pw=x",
        "401",
        "alice",
        "sqli in query: pw=x",
    ]
    .iter()
    .map(|value| adf_cell("tableCell", value, "code"))
    .collect();
    vec![
        json!({"type": "heading", "attrs": {"level": 3}, "content": [text("Condition")]}),
        json!({"type": "codeBlock", "content": [text("count >= 20")]}),
        json!({"type": "heading", "attrs": {"level": 3}, "content": [text("Evidence")]}),
        json!({"type": "table", "attrs": {"isNumberColumnEnabled": false}, "content": [
            {"type": "tableRow", "content": header},
            {"type": "tableRow", "content": row},
        ]}),
    ]
}

fn adf_doc(mut content: Vec<Value>) -> Value {
    content.retain(|block| !block.is_null());
    json!({"type": "doc", "version": 1, "content": content})
}

const WIKI_FACTS: &str = "* *Rule:* login-bruteforce\n\
     * *Severity:* high\n\
     * *Stages:* design\n\
     * *Service:* accounts\n\
     * *Group:* client=203.0.113.9, principal=alice\n\
     * *Window:* 2026-12-04T10:00:00Z to 2026-12-04T10:05:00Z\n";

const WIKI_EVIDENCE: &str = "h3. Condition\n\n\
     {code}\ncount >= 20\n{code}\n\n\
     h3. Evidence\n\n\
     ||time||client||request||status||principal||match||\n\
     |{{2026-12-04T10:00:01.000Z}}|{{203.0.113.9}}|{{POST /login\\?user=alice&pw=x}}|{{401}}|{{alice}}|{{sqli in query: pw=x}}|";

fn basic(email: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{token}"))
    )
}

#[test]
fn cloud_create_sends_adf_issue() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    let (effect, recorder) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );

    let expected = Remote {
        id: "PAY-1".into(),
        url: Some(format!("{}/browse/PAY-1", jira.url())),
        open: true,
        extra: Default::default(),
    };
    assert_eq!(effect, Ok(Effect::Applied(expected.clone())));
    assert_eq!(recorder.created, [expected]);
    assert!(recorder.render_failures.is_empty());

    let requests = jira.server().requests();
    assert_eq!(jira.server().lines(), ["POST /rest/api/3/issue"]);
    let create = &requests[0];
    assert_eq!(
        create.header("authorization"),
        Some(basic("bot@example.com", "cloud-token-7f3a").as_str())
    );
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(create.header("accept"), Some("application/json"));
    let mut content = vec![adf_facts("opened", 20)];
    content.extend(adf_evidence());
    let description = adf_doc(content);
    assert_eq!(
        create.json(),
        json!({"fields": {
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": SUMMARY,
            "description": description,
            "labels": ["feedloop", MARKER, "login-bruteforce"],
        }})
    );

    let issue = jira.issue("PAY-1");
    assert_eq!(issue.status, "To Do");
    assert_eq!(issue.issue_type, "Task");
    assert_eq!(issue.summary, SUMMARY);
    assert_eq!(issue.labels, ["feedloop", MARKER, "login-bruteforce"]);
    assert_eq!(issue.description, description);
}

#[test]
fn data_center_create_sends_wiki_issue() {
    let (jira, mut receiver) = start(Setup::data_center(), "issue_type: Bug\n");
    let remote = create(&mut receiver);
    assert_eq!(remote.id, "PAY-1");

    let requests = jira.server().requests();
    assert_eq!(jira.server().lines(), ["POST /rest/api/2/issue"]);
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer dc-pat-91be")
    );
    let description = format!(
        "* *Change:* opened\n{WIKI_FACTS}* *Measured:* count 20\n* *Fingerprint:* {KEY}\n\n{WIKI_EVIDENCE}"
    );
    assert_eq!(
        requests[0].json(),
        json!({"fields": {
            "project": {"key": "PAY"},
            "issuetype": {"name": "Bug"},
            "summary": SUMMARY,
            "description": description,
            "labels": ["feedloop", MARKER, "login-bruteforce"],
        }})
    );
    assert_eq!(jira.issue("PAY-1").issue_type, "Bug");
}

#[test]
fn create_fills_mapped_fields() {
    let setup = Setup::cloud()
        .with_field(FieldSpec::required("customfield_10010", "Severity").select(&["high", "low"]))
        .with_field(FieldSpec::optional("customfield_10020", "Origin"))
        .with_field(FieldSpec::optional("customfield_10030", "Score").typed("number"));
    let extra = "body: \"Raised by feedloop for {{ owners }}.\"\n\
                 labels: [api-security]\n\
                 fields:\n  \
                   customfield_10010: {value: \"{{ severity }}\"}\n  \
                   customfield_10020: \"{{ rule_id }} in {{ service }}\"\n  \
                   customfield_10030: 7\n";
    let (jira, mut receiver) = start(setup, extra);
    let mut notice = notice(ChangeKind::Opened);
    notice.target.owners = vec!["team-payments".into()];
    let (effect, _) = apply(&mut receiver, &notice, None, Rendering::Full);
    assert!(matches!(effect, Ok(Effect::Applied(_))), "{effect:?}");

    let issue = jira.issue("PAY-1");
    assert_eq!(issue.fields["customfield_10010"], json!({"value": "high"}));
    assert_eq!(
        issue.fields["customfield_10020"],
        json!("login-bruteforce in accounts")
    );
    assert_eq!(issue.fields["customfield_10030"], json!(7));
    assert_eq!(
        issue.labels,
        ["api-security", "feedloop", MARKER, "login-bruteforce"]
    );
    assert_eq!(
        issue.description["content"][0],
        json!({"type": "paragraph", "content": [text("Raised by feedloop for team-payments.")]})
    );
}

#[test]
fn catalog_project_wins_over_default() {
    let mut setup = Setup::cloud();
    setup.projects.push(Setup::project("OPS"));
    let (jira, mut receiver) = start(setup, "");
    let mut notice = notice(ChangeKind::Opened);
    notice.target.jira_project = Some("OPS".into());
    let (effect, _) = apply(&mut receiver, &notice, None, Rendering::Full);
    let Ok(Effect::Applied(remote)) = effect else {
        panic!("{effect:?}");
    };
    assert_eq!(remote.id, "OPS-1");
    assert_eq!(
        jira.server().requests()[0].json()["fields"]["project"],
        json!({"key": "OPS"})
    );
}

#[test]
fn missing_project_is_rejected() {
    let jira = MockJira::start(Setup::cloud());
    let mut config = config(&jira, Flavour::Cloud, "");
    config.project = None;
    let mut receiver = JiraReceiver::new("jira", &config).unwrap();
    let (effect, recorder) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    assert_eq!(
        effect,
        Err(DeliveryError::reject(
            "jira receiver `jira` has no project for service `accounts`: set `jira_project` for the service in the catalog, or `project` in the receiver"
        ))
    );
    assert!(recorder.created.is_empty());
    assert!(jira.server().requests().is_empty());
}

#[test]
fn cloud_update_comments_with_counts() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    let remote = create(&mut receiver);
    let mut update = notice(ChangeKind::Updated);
    update.findings[0].count = 25;
    update.findings[0].last_seen = "2026-12-04T10:04:00.000Z".into();

    let (effect, recorder) = apply(&mut receiver, &update, Some(&remote), Rendering::Full);
    assert_eq!(effect, Ok(Effect::Applied(remote.clone())));
    assert!(recorder.created.is_empty());

    let requests = jira.server().requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].line(), "POST /rest/api/3/issue/PAY-1/comment");
    let mut content = vec![
        json!({"type": "paragraph", "content": [text(
            "feedloop saw this finding again (updated): count 25, last seen 2026-12-04T10:04:00.000Z."
        )]}),
        adf_facts("updated", 25),
    ];
    content.extend(adf_evidence());
    assert_eq!(requests[1].json(), json!({"body": adf_doc(content)}));
    assert_eq!(jira.issue("PAY-1").comments.len(), 1);
}

#[test]
fn data_center_update_comments_in_wiki() {
    let (jira, mut receiver) = start(Setup::data_center(), "");
    let remote = create(&mut receiver);
    let mut update = notice(ChangeKind::Updated);
    update.findings[0].count = 25;

    let (effect, _) = apply(&mut receiver, &update, Some(&remote), Rendering::Full);
    assert_eq!(effect, Ok(Effect::Applied(remote)));
    let requests = jira.server().requests();
    assert_eq!(requests[1].line(), "POST /rest/api/2/issue/PAY-1/comment");
    let body = format!(
        "feedloop saw this finding again (updated): count 25, last seen 2026-12-04T10:01:00.000Z.\n\n\
         * *Change:* updated\n{WIKI_FACTS}* *Measured:* count 25\n* *Fingerprint:* {KEY}\n\n{WIKI_EVIDENCE}"
    );
    assert_eq!(requests[1].json(), json!({"body": body}));
    assert_eq!(jira.issue("PAY-1").comments, [json!(body)]);
}

#[test]
fn resolve_transitions_then_comments() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        let remote = create(&mut receiver);
        let (effect, _) = apply(
            &mut receiver,
            &notice(ChangeKind::Resolved),
            Some(&remote),
            Rendering::Full,
        );
        assert_eq!(
            effect,
            Ok(Effect::Applied(Remote {
                open: false,
                ..remote.clone()
            })),
            "{flavour:?}"
        );
        let prefix = prefix(flavour);
        assert_eq!(
            jira.server().lines()[1..],
            [
                format!("GET {prefix}/issue/PAY-1"),
                format!("GET {prefix}/issue/PAY-1/transitions"),
                format!("POST {prefix}/issue/PAY-1/transitions"),
                format!("POST {prefix}/issue/PAY-1/comment"),
            ],
            "{flavour:?}"
        );
        let requests = jira.server().requests();
        assert_eq!(requests[1].query, "fields=status");
        assert_eq!(requests[3].json(), json!({"transition": {"id": "31"}}));
        let issue = jira.issue("PAY-1");
        assert_eq!(issue.status, "Done");
        assert_eq!(issue.transitions, ["Done"]);
        let comment = requests[4].text();
        assert!(
            comment.contains("The condition has not held for the rule's resolve period, so feedloop resolved this issue."),
            "{flavour:?}: {comment}"
        );
        assert!(!comment.contains("Evidence"), "{flavour:?}: {comment}");
    }
}

#[test]
fn reopen_transitions_back_then_comments() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        let remote = create(&mut receiver);
        let resolved = notice(ChangeKind::Resolved);
        let (effect, _) = apply(&mut receiver, &resolved, Some(&remote), Rendering::Full);
        let Ok(Effect::Applied(closed)) = effect else {
            panic!("{flavour:?}: {effect:?}");
        };

        let (effect, recorder) = apply(
            &mut receiver,
            &notice(ChangeKind::Reopened),
            Some(&closed),
            Rendering::Full,
        );
        assert_eq!(effect, Ok(Effect::Applied(remote.clone())), "{flavour:?}");
        assert!(recorder.created.is_empty());
        let prefix = prefix(flavour);
        assert_eq!(
            jira.server().lines()[5..],
            [
                format!("GET {prefix}/issue/PAY-1"),
                format!("GET {prefix}/issue/PAY-1/transitions"),
                format!("POST {prefix}/issue/PAY-1/transitions"),
                format!("POST {prefix}/issue/PAY-1/comment"),
            ],
            "{flavour:?}"
        );
        let requests = jira.server().requests();
        assert_eq!(requests[7].json(), json!({"transition": {"id": "41"}}));
        let issue = jira.issue("PAY-1");
        assert_eq!(issue.status, "To Do");
        assert_eq!(issue.transitions, ["Done", "Reopen"]);
        assert!(
            requests[8]
                .text()
                .contains("The condition holds again after it was resolved (reopened), so feedloop reopened this issue."),
            "{flavour:?}"
        );
    }
}

#[test]
fn resolve_sends_configured_resolution() {
    let (jira, mut receiver) = start(
        Setup::cloud(),
        "resolve_transition: done\nresolution: Fixed\n",
    );
    let remote = create(&mut receiver);
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&remote),
        Rendering::Full,
    );
    assert!(matches!(
        effect,
        Ok(Effect::Applied(Remote { open: false, .. }))
    ));
    assert_eq!(
        jira.server().requests()[3].json(),
        json!({"transition": {"id": "31"}, "fields": {"resolution": {"name": "Fixed"}}})
    );
    assert_eq!(jira.issue("PAY-1").resolution.as_deref(), Some("Fixed"));
}

#[test]
fn missing_transition_lists_available_names() {
    let (jira, mut receiver) = start(Setup::cloud(), "resolve_transition: Close Issue\n");
    let remote = create(&mut receiver);
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&remote),
        Rendering::Full,
    );
    assert_eq!(
        effect,
        Err(DeliveryError::reject(
            "jira issue PAY-1 in status To Do offers no transition named \"Close Issue\"; available: \"Start Progress\" and \"Done\"; set `resolve_transition` in jira receiver `jira` to one of them"
        ))
    );
    assert_eq!(
        jira.server().lines()[1..],
        [
            "GET /rest/api/3/issue/PAY-1",
            "GET /rest/api/3/issue/PAY-1/transitions"
        ]
    );
    assert_eq!(jira.server().requests()[1].query, "fields=status");
    assert_eq!(jira.issue("PAY-1").status, "To Do");
    assert!(jira.issue("PAY-1").comments.is_empty());
}

#[test]
fn resolve_of_issue_closed_by_hand_only_comments() {
    let (jira, mut receiver) = start(Setup::data_center(), "");
    let remote = create(&mut receiver);
    jira.set_status("PAY-1", "Done");
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Resolved),
        Some(&remote),
        Rendering::Full,
    );
    assert!(
        matches!(effect, Ok(Effect::Applied(Remote { open: false, .. }))),
        "{effect:?}"
    );
    assert_eq!(
        jira.server().lines()[1..],
        [
            "GET /rest/api/2/issue/PAY-1",
            "POST /rest/api/2/issue/PAY-1/comment"
        ]
    );
    let issue = jira.issue("PAY-1");
    assert!(issue.transitions.is_empty());
    let comment = issue.comments[0].as_str().unwrap().to_string();
    assert!(
        comment.starts_with("The condition has not held for the rule's resolve period. The issue was already in status Done, so feedloop left its status unchanged."),
        "{comment}"
    );
}

#[test]
fn reopen_of_issue_reopened_by_hand_only_comments() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    let remote = create(&mut receiver);
    let closed = Remote {
        open: false,
        ..remote.clone()
    };
    jira.set_status("PAY-1", "In Progress");
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        Some(&closed),
        Rendering::Full,
    );
    assert_eq!(effect, Ok(Effect::Applied(remote)));
    assert_eq!(
        jira.server().lines()[1..],
        [
            "GET /rest/api/3/issue/PAY-1",
            "POST /rest/api/3/issue/PAY-1/comment"
        ]
    );
    let issue = jira.issue("PAY-1");
    assert_eq!(issue.status, "In Progress");
    assert!(issue.transitions.is_empty());
    assert!(
        jira.server().requests()[2].text().contains(
            "The condition holds again after it was resolved (opened). The issue was already in status In Progress, so feedloop left its status unchanged."
        )
    );
}

#[test]
fn resolve_without_open_issue_is_skipped() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    let resolved = notice(ChangeKind::Resolved);
    let (effect, _) = apply(&mut receiver, &resolved, None, Rendering::Full);
    assert_eq!(
        effect,
        Ok(Effect::Skipped(format!(
            "no jira issue exists for finding {KEY}, so there is nothing to resolve"
        )))
    );
    let closed = Remote {
        id: "PAY-9".into(),
        url: None,
        open: false,
        extra: Default::default(),
    };
    let (effect, _) = apply(&mut receiver, &resolved, Some(&closed), Rendering::Full);
    assert_eq!(
        effect,
        Ok(Effect::Skipped(
            "jira issue PAY-9 is already resolved".into()
        ))
    );
    assert!(jira.server().requests().is_empty());
}

#[test]
fn minimal_fallback_after_description_error() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    jira.server().fail(
        Fault::next(
            1,
            Reply::json(400, error_body(&[], &[("description", TOO_LONG)])),
        )
        .on("POST", "/rest/api/3/issue"),
    );
    let opened = notice(ChangeKind::Opened);
    let (effect, recorder) = apply(&mut receiver, &opened, None, Rendering::Full);
    let Err(DeliveryError::Reject {
        reason,
        status,
        fallback,
        ..
    }) = effect
    else {
        panic!("expected a rejection, got {effect:?}");
    };
    assert_eq!(
        reason,
        format!(
            "POST {}/rest/api/3/issue returned HTTP 400: description: {TOO_LONG}",
            jira.url()
        )
    );
    assert_eq!(status, Some(400));
    assert!(fallback);
    assert!(recorder.created.is_empty());
    assert!(jira.issues().is_empty());

    let (effect, recorder) = apply(&mut receiver, &opened, None, Rendering::Minimal);
    assert!(matches!(effect, Ok(Effect::Applied(_))), "{effect:?}");
    assert_eq!(recorder.created.len(), 1);
    let requests = jira.server().requests();
    let minimal = adf_doc(vec![
        json!({"type": "paragraph", "content": [text("Repeated failed logins")]}),
        json!({"type": "bulletList", "content": [
            adf_fact("Rule", "login-bruteforce"),
            adf_fact("Severity", "high"),
            adf_fact("Fingerprint", KEY),
        ]}),
    ]);
    assert_eq!(requests[1].json()["fields"]["description"], minimal);
    assert_eq!(requests[1].json()["fields"]["summary"], SUMMARY);
    assert_eq!(
        requests[1].json()["fields"]["labels"],
        json!(["feedloop", MARKER, "login-bruteforce"])
    );
}

#[test]
fn required_field_error_names_the_field() {
    let setup = Setup::cloud().with_field(FieldSpec::required("customfield_10010", "Severity"));
    let (jira, mut receiver) = start(setup, "");
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let Err(DeliveryError::Reject {
        reason,
        fallback,
        response,
        ..
    }) = effect
    else {
        panic!("expected a rejection, got {effect:?}");
    };
    assert_eq!(
        reason,
        format!(
            "POST {}/rest/api/3/issue returned HTTP 400: customfield_10010: Severity is required.",
            jira.url()
        )
    );
    assert!(!fallback, "a minimal message cannot add a missing field");
    assert!(response.contains("customfield_10010"), "{response}");
}

#[test]
fn permission_error_is_rejected() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    jira.server().fail(Fault::next(
        1,
        Reply::json(
            403,
            error_body(
                &["You do not have permission to create issues in this project."],
                &[],
            ),
        ),
    ));
    let (effect, recorder) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let Err(DeliveryError::Reject {
        reason,
        status,
        fallback,
        ..
    }) = effect
    else {
        panic!("expected a rejection, got {effect:?}");
    };
    assert_eq!(
        reason,
        format!(
            "POST {}/rest/api/3/issue returned HTTP 403: You do not have permission to create issues in this project.; check that the token's user has the project permission for this action",
            jira.url()
        )
    );
    assert_eq!(status, Some(403));
    assert!(!fallback);
    assert!(recorder.created.is_empty());
}

#[test]
fn rate_limit_retries_after_retry_after() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    jira.server().fail(Fault::next(
        1,
        Reply::json(429, error_body(&["Rate limit exceeded."], &[]))
            .with_header("Retry-After", "2"),
    ));
    let opened = notice(ChangeKind::Opened);
    let (effect, recorder) = apply(&mut receiver, &opened, None, Rendering::Full);
    assert_eq!(
        effect,
        Err(DeliveryError::Retry {
            reason: format!("POST {}/rest/api/3/issue returned HTTP 429", jira.url()),
            after: Some(Duration::from_secs(2)),
        })
    );
    assert!(recorder.created.is_empty());
    assert!(jira.issues().is_empty());

    let (effect, _) = apply(&mut receiver, &opened, None, Rendering::Full);
    assert!(matches!(effect, Ok(Effect::Applied(_))), "{effect:?}");
    assert_eq!(jira.issues().len(), 1);
}

#[test]
fn recover_finds_interrupted_create() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        // The create reached Jira, but its response was never recorded.
        let created = create(&mut receiver);
        let opened = notice(ChangeKind::Opened);

        let recovered = receiver.recover(&opened).unwrap();
        assert_eq!(recovered, Some(created.clone()), "{flavour:?}");
        let search = jira.server().requests().pop().unwrap();
        let path = match flavour {
            Flavour::Cloud => "/rest/api/3/search/jql",
            Flavour::DataCenter => "/rest/api/2/search",
        };
        assert_eq!(search.line(), format!("GET {path}"));
        assert_eq!(
            query_pairs(&search.query),
            [
                (
                    "jql".to_string(),
                    format!("labels = \"{MARKER}\" ORDER BY created ASC")
                ),
                ("fields".to_string(), "status".to_string()),
            ]
        );

        jira.set_status("PAY-1", "Done");
        let recovered = receiver.recover(&opened).unwrap().unwrap();
        assert!(
            !recovered.open,
            "{flavour:?}: a done issue is recovered as closed"
        );

        let mut other = notice(ChangeKind::Opened);
        other.key = "fedcba9876543210fedcba9876543210".into();
        assert_eq!(receiver.recover(&other).unwrap(), None, "{flavour:?}");
        assert_eq!(marker_label(&other.key), "feedloop-fedcba9876543210");
    }
}

#[test]
fn redaction_applies_to_every_text() {
    let (jira, mut receiver) = start(
        Setup::cloud(),
        "redaction: {principals: hash, clients: hash, query: drop}\n",
    );
    let remote = create(&mut receiver);
    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Updated),
        Some(&remote),
        Rendering::Full,
    );
    assert!(matches!(effect, Ok(Effect::Applied(_))), "{effect:?}");

    let issue = jira.issue("PAY-1");
    assert_eq!(
        issue.summary,
        "Repeated failed logins: client=hash:d861b7e91033, principal=hash:2bd806c97f0e"
    );
    for request in jira.server().requests() {
        let body = request.text();
        for secret in ["alice", "203.0.113.9", "pw=x", "user="] {
            assert!(
                !body.contains(secret),
                "{} sent `{secret}`: {body}",
                request.line()
            );
        }
        assert!(body.contains("hash:2bd806c97f0e"), "{}", request.line());
    }
    let table = &issue.description["content"][4]["content"][1]["content"];
    assert_eq!(table[2], adf_cell("tableCell", "POST /login", "code"));
    assert_eq!(
        table[5],
        adf_cell("tableCell", "sqli in query: (redacted)", "code")
    );
}

#[test]
fn truncation_keeps_texts_within_limits() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        let mut opened = notice(ChangeKind::Opened);
        let finding = &mut opened.findings[0];
        finding.title = "Repeated failed logins ".repeat(20);
        let event = finding.evidence[0].clone();
        finding.evidence = (0..300)
            .map(|i| {
                let mut event = event.clone();
                event.path = format!("/login/{i}/{}", "é|[x]".repeat(100));
                event
            })
            .collect();

        let (effect, _) = apply(&mut receiver, &opened, None, Rendering::Full);
        let Ok(Effect::Applied(remote)) = effect else {
            panic!("{flavour:?}: {effect:?}");
        };
        let issue = jira.issue("PAY-1");
        assert_eq!(
            issue.summary.chars().count(),
            SUMMARY_MAX_CHARS,
            "{flavour:?}"
        );
        assert!(issue.summary.ends_with(" more characters)"), "{flavour:?}");
        let description = text_of(&issue.description);
        assert!(description.chars().count() <= TEXT_MAX_CHARS, "{flavour:?}");
        assert!(
            description.chars().count() > TEXT_MAX_CHARS - 2_000,
            "{flavour:?}"
        );
        assert!(
            description
                .contains("more evidence rows left out to fit Jira's limit of 32767 characters."),
            "{flavour:?}"
        );

        let (effect, _) = apply(
            &mut receiver,
            &notice_like(&opened, ChangeKind::Updated),
            Some(&remote),
            Rendering::Full,
        );
        assert!(
            matches!(effect, Ok(Effect::Applied(_))),
            "{flavour:?}: {effect:?}"
        );
        let comment = text_of(&jira.issue("PAY-1").comments[0]);
        assert!(comment.chars().count() <= TEXT_MAX_CHARS, "{flavour:?}");
        assert!(
            comment.contains("more evidence rows left out"),
            "{flavour:?}"
        );
    }
}

/// Returns what Jira's limit is checked on: wiki markup as it is, ADF as compact JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(markup) => markup.clone(),
        adf => adf.to_string(),
    }
}

fn notice_like(notice: &Notice, kind: ChangeKind) -> Notice {
    Notice {
        kind,
        ..notice.clone()
    }
}

#[test]
fn template_failure_sends_default_text() {
    let setup = Setup::cloud().with_field(FieldSpec::optional("customfield_10020", "Paths"));
    let extra = "title: \"{{ distinct }} distinct paths\"\n\
                 body: \"Total: {{ total }}\"\n\
                 fields: {customfield_10020: \"{{ distinct }}\"}\n";
    let (jira, mut receiver) = start(setup, extra);
    let (effect, recorder) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    assert!(matches!(effect, Ok(Effect::Applied(_))), "{effect:?}");
    assert_eq!(
        recorder.render_failures,
        [
            "jira receiver `jira`: body: the finding has no `total`",
            "jira receiver `jira`: fields.customfield_10020: the finding has no `distinct`; the field was left out",
            "jira receiver `jira`: title: the finding has no `distinct`",
        ]
    );
    let issue = jira.issue("PAY-1");
    assert_eq!(issue.summary, SUMMARY);
    assert!(!issue.fields.contains_key("customfield_10020"));
    assert_eq!(issue.description["content"][0], adf_facts("opened", 20));
}

#[test]
fn secret_stays_out_of_debug_and_errors() {
    let jira = MockJira::start(Setup::cloud());
    let yaml = format!(
        "base_url: {}\nemail: bot@example.com\ntoken: wrong-secret-4411\nproject: PAY\n",
        jira.url()
    );
    let config: JiraConfig = serde_norway::from_str(&yaml).unwrap();
    let mut receiver = JiraReceiver::new("jira", &config).unwrap();
    let encoded = basic("bot@example.com", "wrong-secret-4411");
    let encoded = encoded.trim_start_matches("Basic ");

    let debug_text = format!("{config:?} {receiver:?}");
    assert!(!debug_text.contains("wrong-secret-4411"), "{debug_text}");
    assert!(!debug_text.contains(encoded), "{debug_text}");

    let (effect, _) = apply(
        &mut receiver,
        &notice(ChangeKind::Opened),
        None,
        Rendering::Full,
    );
    let err = effect.unwrap_err();
    let DeliveryError::Reject {
        reason,
        status,
        response,
        ..
    } = &err
    else {
        panic!("expected a rejection, got {err:?}");
    };
    assert_eq!(
        reason,
        &format!(
            "POST {}/rest/api/3/issue returned HTTP 401; check the receiver's `email` and `token`",
            jira.url()
        )
    );
    assert_eq!(*status, Some(401));
    let check = receiver.check().unwrap_err();
    for text in [format!("{err:?}"), response.clone(), check.clone()] {
        assert!(!text.contains("wrong-secret-4411"), "{text}");
        assert!(!text.contains(encoded), "{text}");
    }
    assert!(check.contains("HTTP 401"), "{check}");
}

#[test]
fn attach_uploads_multipart_png() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        create(&mut receiver);
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let id = receiver.attach("PAY-1", "latency.png", &png).unwrap();

        let request = jira.server().requests().pop().unwrap();
        assert_eq!(
            request.line(),
            format!("POST {}/issue/PAY-1/attachments", prefix(flavour))
        );
        assert_eq!(request.header("x-atlassian-token"), Some("no-check"));
        assert!(
            request
                .header("content-type")
                .unwrap()
                .starts_with("multipart/form-data; boundary="),
            "{flavour:?}"
        );
        let attachments = jira.issue("PAY-1").attachments;
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0].id, id);
        assert_eq!(attachments[0].file_name, "latency.png");
        assert_eq!(attachments[0].content_type, "image/png");
        assert_eq!(attachments[0].bytes, png);
    }
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

fn notice_with_impact(kind: ChangeKind) -> Notice {
    let mut notice = notice(kind);
    notice.findings[0].impact = Some(impact());
    notice
}

#[test]
fn create_attaches_impact_chart_once() {
    for flavour in [Flavour::Cloud, Flavour::DataCenter] {
        let (jira, mut receiver) = start(setup(flavour), "");
        let opened = notice_with_impact(ChangeKind::Opened);
        let (effect, recorder) = apply(&mut receiver, &opened, None, Rendering::Full);
        let Ok(Effect::Applied(remote)) = effect else {
            panic!("{flavour:?}: create failed: {effect:?}");
        };
        assert_eq!(recorder.created, std::slice::from_ref(&remote));
        let api = prefix(flavour);
        assert_eq!(
            jira.server().lines(),
            [
                format!("POST {api}/issue"),
                format!("POST {api}/issue/PAY-1/attachments"),
            ]
        );
        let attachments = jira.issue("PAY-1").attachments;
        assert_eq!(attachments.len(), 1, "{flavour:?}");
        assert_eq!(attachments[0].file_name, "impact-PAY-1.png");
        assert_eq!(attachments[0].content_type, "image/png");
        let route = &impact().routes[0];
        let expected = chart::render_png(
            "Repeated failed logins: POST /login on accounts",
            route,
            chart::DEFAULT_WIDTH,
            chart::DEFAULT_HEIGHT,
        )
        .unwrap();
        assert!(attachments[0].bytes == expected, "{flavour:?}: other PNG");

        let updated = notice_with_impact(ChangeKind::Updated);
        let (effect, _) = apply(&mut receiver, &updated, Some(&remote), Rendering::Full);
        assert!(effect.is_ok(), "{effect:?}");
        assert_eq!(
            jira.server().lines().last().unwrap(),
            &format!("POST {api}/issue/PAY-1/comment")
        );
        assert_eq!(jira.issue("PAY-1").attachments.len(), 1, "{flavour:?}");
    }
}

#[test]
fn failed_attachment_keeps_the_created_issue() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    jira.server().fail(
        Fault::next(1, Reply::json(503, json!({"errorMessages": ["busy"]})))
            .on("POST", "/rest/api/3/issue/PAY-1/attachments"),
    );
    let opened = notice_with_impact(ChangeKind::Opened);
    let (effect, recorder) = apply(&mut receiver, &opened, None, Rendering::Full);

    let Ok(Effect::Applied(remote)) = effect else {
        panic!("create failed: {effect:?}");
    };
    assert_eq!(remote.id, "PAY-1");
    assert_eq!(recorder.created, [remote]);
    assert_eq!(
        jira.server().lines(),
        [
            "POST /rest/api/3/issue",
            "POST /rest/api/3/issue/PAY-1/attachments"
        ]
    );
    assert_eq!(jira.issues().len(), 1);
    assert!(jira.issue("PAY-1").attachments.is_empty());
}

#[test]
fn minimal_create_attaches_no_chart() {
    let (jira, mut receiver) = start(Setup::cloud(), "");
    let opened = notice_with_impact(ChangeKind::Opened);
    let (effect, _) = apply(&mut receiver, &opened, None, Rendering::Minimal);
    assert!(effect.is_ok(), "{effect:?}");
    assert_eq!(jira.server().lines(), ["POST /rest/api/3/issue"]);
}

#[test]
fn attach_rejects_unsafe_names_and_missing_issues() {
    let (jira, receiver) = start(Setup::cloud(), "");
    let err = receiver
        .attach("PAY-1", "a\"\r\nX-Evil: 1.png", b"x")
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::reject(
            "invalid attachment file name `a\\\"\\r\\nX-Evil: 1.png`: use a plain name such as chart.png, without quotes, slashes or line breaks"
        )
    );
    assert!(jira.server().requests().is_empty());
    let err = receiver.attach("PAY-404", "chart.png", b"x").unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Reject {
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(
            "HTTP 404: Issue does not exist or you do not have permission to see it.; check that the project or issue exists and the token's user can see it"
        ),
        "{err}"
    );
}

#[test]
fn check_passes_when_required_fields_are_mapped() {
    let setup = Setup::cloud().with_field(FieldSpec::required("customfield_10010", "Severity"));
    let (jira, mut receiver) = start(setup, "fields: {customfield_10010: \"{{ severity }}\"}\n");
    assert_eq!(receiver.check(), Ok(()));
    let requests = jira.server().requests();
    assert_eq!(
        jira.server().lines(),
        [
            "GET /rest/api/3/issue/createmeta/PAY/issuetypes",
            "GET /rest/api/3/issue/createmeta/PAY/issuetypes/10001",
        ]
    );
    assert_eq!(requests[0].query, "startAt=0&maxResults=50");
    assert_eq!(
        requests[0].header("authorization"),
        Some(basic("bot@example.com", "cloud-token-7f3a").as_str())
    );
}

#[test]
fn check_names_a_missing_project() {
    let (jira, mut receiver) = start(Setup::data_center(), "");
    receiver.with_projects(vec!["NOPE".into(), "PAY".into()]);
    assert_eq!(
        receiver.check(),
        Err(format!(
            "jira receiver `jira`: project NOPE was not found at {} (No project could be found with key 'NOPE'.); check `project` in the receiver or `jira_project` in the service catalog, and that the token's user can create issues in it",
            jira.url()
        ))
    );
}

#[test]
fn check_lists_available_issue_types() {
    let (_jira, mut receiver) = start(Setup::cloud(), "issue_type: Incident\n");
    assert_eq!(
        receiver.check(),
        Err("jira receiver `jira`: project PAY has no issue type \"Incident\"; available: Task, Bug; set `issue_type` to one of them".into())
    );

    // The create sends the name as configured, so the check compares it exactly.
    let (_jira, mut receiver) = start(Setup::cloud(), "issue_type: task\n");
    assert_eq!(
        receiver.check(),
        Err("jira receiver `jira`: project PAY has no issue type \"task\"; available: Task, Bug; set `issue_type` to one of them".into())
    );
}

#[test]
fn check_shows_config_lines_for_unmapped_fields() {
    let setup = Setup::cloud()
        .with_field(FieldSpec::required("customfield_10010", "Severity").select(&["High", "Low"]))
        .with_field(FieldSpec::required("customfield_10020", "Team"))
        .with_field(FieldSpec::required("customfield_10030", "Sprint").with_default())
        .with_field(FieldSpec::required("customfield_10040", "Mapped"));
    let (_jira, mut receiver) = start(setup, "fields: {customfield_10040: x}\n");
    assert_eq!(
        receiver.check(),
        Err("jira receiver `jira`: project PAY, issue type \"Task\": required fields are not mapped: customfield_10010 (Severity), customfield_10020 (Team); add them under `fields` in the receiver's configuration, such as:\n  fields:\n    customfield_10010: {value: \"High\"}\n    customfield_10020: \"{{ severity }}\"".into())
    );
}

#[test]
fn check_reads_every_page_and_catalog_project() {
    let mut setup = Setup::data_center();
    setup.page_size = 2;
    let mut ops = Setup::project("OPS");
    ops.issue_types[1]
        .fields
        .push(FieldSpec::required("customfield_10050", "Component"));
    setup.projects.push(ops);
    let (jira, mut receiver) = start(setup, "issue_type: Bug\n");
    receiver.with_projects(vec!["OPS".into(), "PAY".into(), " ".into()]);

    assert_eq!(
        receiver.check(),
        Err("jira receiver `jira`: project OPS, issue type \"Bug\": required field is not mapped: customfield_10050 (Component); add it under `fields` in the receiver's configuration, such as:\n  fields:\n    customfield_10050: \"{{ severity }}\"".into())
    );
    let lines = jira.server().lines();
    // PAY: one page of issue types, four of fields; OPS the same.
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert_eq!(lines[0], "GET /rest/api/2/issue/createmeta/PAY/issuetypes");
    assert_eq!(
        lines[1],
        "GET /rest/api/2/issue/createmeta/PAY/issuetypes/10002"
    );
    assert_eq!(lines[5], "GET /rest/api/2/issue/createmeta/OPS/issuetypes");
    let queries: Vec<String> = jira.server().requests()[1..5]
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(
        queries,
        [
            "startAt=0&maxResults=50",
            "startAt=2&maxResults=50",
            "startAt=4&maxResults=50",
            "startAt=6&maxResults=50"
        ]
    );
}
