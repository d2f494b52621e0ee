//! Detection quality of the shipped signature rules on the OWASP CRS regression tests.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use feedloop_rules::{ApiEvent, Detection, Field, Rule, RuleSet};

#[derive(Deserialize)]
struct TestFile {
    #[serde(default)]
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
struct TestCase {
    test_id: u64,
    stages: Vec<Stage>,
}

#[derive(Deserialize)]
struct Stage {
    input: Input,
    #[serde(default)]
    output: Output,
}

#[derive(Deserialize)]
struct Input {
    method: Option<String>,
    uri: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, serde_norway::Value>,
    data: Option<String>,
    encoded_request: Option<String>,
}

#[derive(Deserialize, Default)]
struct Output {
    log: Option<Log>,
}

#[derive(Deserialize, Default)]
struct Log {
    #[serde(default)]
    expect_ids: Vec<u64>,
    #[serde(default)]
    no_expect_ids: Vec<u64>,
}

fn header_text(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Number(n) => n.to_string(),
        serde_norway::Value::Bool(b) => b.to_string(),
        other => panic!("unexpected header value {other:?}"),
    }
}

fn event_of(input: &Input) -> ApiEvent {
    let uri = input.uri.as_deref().unwrap_or("/");
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (uri, None),
    };
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), header_text(value)))
        .collect();
    headers.sort();
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    ApiEvent {
        method: input
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase(),
        path: path.to_string(),
        query,
        user_agent: lookup("user-agent"),
        referer: lookup("referer"),
        body: input.data.clone().filter(|d| !d.is_empty()),
        headers,
        ..Default::default()
    }
}

const RULE_IDS: &[&str] = &[
    "sql-injection-attempt",
    "xss-attempt",
    "path-traversal-attempt",
    "command-injection-attempt",
    "scanner-user-agent",
];

fn load(with_body: bool) -> Vec<Rule> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for name in ["injection.yaml", "recon.yaml"] {
        let path = common::root().join("rules/packs").join(name);
        let mut text = std::fs::read_to_string(&path).unwrap();
        if with_body {
            text = text
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("fields: [") {
                        l.replace(']', ", body]")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        }
        set.extend(RuleSet::from_text(&path, &text).unwrap(), &mut errors);
    }
    RULE_IDS
        .iter()
        .map(|id| set.rules().iter().find(|r| r.id == *id).unwrap().clone())
        .collect()
}

fn category(dir: &str) -> Option<&'static str> {
    let prefix = dir.split('-').nth(1)?;
    Some(match prefix {
        "942" => "sql-injection-attempt",
        "941" => "xss-attempt",
        "930" => "path-traversal-attempt",
        "932" | "944" => "command-injection-attempt",
        "913" => "scanner-user-agent",
        _ => return None,
    })
}

#[test]
fn dump() {
    let shipped = load(false);
    let body = load(true);
    let root = common::shared_data("crs-regression-tests/tests");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let mut out = String::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let Some(cat) = category(&name) else { continue };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed: TestFile =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for case in parsed.tests {
                for stage in case.stages {
                    let fired = |rules: &[Rule], event: &ApiEvent| -> Vec<String> {
                        rules
                            .iter()
                            .filter_map(|r| r.evaluate(event).map(|c| format!("{} {:?}", r.id, c)))
                            .collect()
                    };
                    let event = event_of(&stage.input);
                    let log = stage.output.log.unwrap_or_default();
                    out.push_str(
                        &json!({
                            "file": file.file_name().unwrap().to_str().unwrap(),
                            "test": case.test_id,
                            "cat": cat,
                            "pos": !log.expect_ids.is_empty(),
                            "neg": !log.no_expect_ids.is_empty(),
                            "enc": stage.input.encoded_request.is_some(),
                            "method": event.method,
                            "path": event.path,
                            "query": event.query,
                            "ua": event.user_agent,
                            "referer": event.referer,
                            "headers": event.headers,
                            "body": event.body,
                            "shipped": fired(&shipped, &event),
                            "with_body": fired(&body, &event),
                        })
                        .to_string(),
                    );
                    out.push('\n');
                }
            }
        }
    }
    std::fs::write("/tmp/crs-dump.jsonl", out).unwrap();
    let _ = (
        Path::new("."),
        Detection::Threshold { count: 1 },
        Field::Body,
    );
}
