//! The webhook sink against a real HTTP server on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

/// One request as the server received it, and the status it returned.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
    status: u16,
}

/// An HTTP server that responds to each request with the status `respond` returns for its
/// index.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(respond: fn(usize) -> u16) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/findings", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (server_clone, seen_clone) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut request in server_clone.incoming_requests() {
                let authorization = header(&request, "Authorization");
                let content_type = header(&request, "Content-Type");
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).unwrap();
                let mut seen = seen_clone.lock().unwrap();
                let status = respond(seen.len());
                seen.push(Seen {
                    authorization,
                    content_type,
                    body: serde_json::from_str(&body).unwrap(),
                    status,
                });
                drop(seen);
                let _ = request.respond(tiny_http::Response::empty(status));
            }
        });
        Receiver {
            url,
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

/// Runs the recon pack over the semicomplete log with one webhook and returns the findings
/// written to the JSON Lines file, stdout and stderr.
fn run_with_webhook(
    name: &str,
    url: &str,
    extra: &str,
    expect_success: bool,
) -> (Vec<Value>, String, String) {
    let dir = common::temp_dir(name);
    let findings = dir.join("findings.jsonl");
    let config = format!(
        "sources:\n  - file: {{paths: [\"{log}\"]}}\nrules: [rules/packs/recon.yaml]\noutputs:\n  console: {{enabled: false}}\n  jsonl: {{path: \"{out}\"}}\n  webhooks:\n    - url: \"{url}\"\n      headers: {{Authorization: {{env: FEEDLOOP_TEST_HOOK_TOKEN}}}}\n      initial_backoff: 50ms\n      max_backoff: 200ms\n{extra}",
        log = common::elastic_log().display(),
        out = findings.display(),
    );
    let config_path = dir.join("feedloop.yaml");
    std::fs::write(&config_path, config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_feedloop"))
        .args(["run", "--config", config_path.to_str().unwrap()])
        .current_dir(common::root())
        .env("FEEDLOOP_TEST_HOOK_TOKEN", "Bearer s3cret-token")
        .env("FEEDLOOP_LOG", "debug")
        .output()
        .unwrap();
    // A finding the webhook did not accept makes the run fail, after it has finished.
    assert_eq!(
        output.status.success(),
        expect_success,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = common::parse_lines(&std::fs::read(&findings).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    (
        written,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sorted_bodies(seen: &[Seen], status: u16) -> Vec<String> {
    let mut bodies: Vec<String> = seen
        .iter()
        .filter(|s| s.status == status)
        .map(|s| s.body.to_string())
        .collect();
    bodies.sort();
    bodies
}

#[test]
fn webhook_retries_503_then_delivers_everything() {
    let receiver = Receiver::start(|i| if i == 0 { 503 } else { 200 });
    let (findings, stdout, stderr) = run_with_webhook("hook-503", &receiver.url, "", true);
    let seen = receiver.seen();

    let mut expected: Vec<String> = findings.iter().map(Value::to_string).collect();
    expected.sort();
    assert_eq!(findings.len(), 71);
    assert_eq!(seen.len(), findings.len() + 1);
    assert_eq!(sorted_bodies(&seen, 200), expected);
    // The rejected request was the first finding, and it was sent again.
    assert_eq!(seen[0].status, 503);
    assert_eq!(seen[1].body, seen[0].body);
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer s3cret-token")));
    assert!(seen
        .iter()
        .all(|s| s.content_type.as_deref() == Some("application/json")));
    let line = format!(
        "webhook {}: 71 delivered, 1 retried, 0 failed, 0 dropped",
        receiver.url
    );
    assert!(stdout.contains(&line), "{stdout}");
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "secret leaked"
    );
}

#[test]
fn webhook_does_not_retry_400() {
    let receiver = Receiver::start(|i| if i == 3 { 400 } else { 200 });
    let (findings, stdout, stderr) = run_with_webhook("hook-400", &receiver.url, "", false);
    let seen = receiver.seen();
    assert_eq!(seen.len(), findings.len());
    assert_eq!(seen.iter().filter(|s| s.status == 400).count(), 1);
    let line = format!(
        "webhook {}: 70 delivered, 0 retried, 1 failed, 0 dropped",
        receiver.url
    );
    assert!(stdout.contains(&line), "{stdout}");
    assert!(
        stderr.contains("webhook rejected finding; not retrying"),
        "{stderr}"
    );
    assert!(stderr.contains("receiver returned HTTP 400"), "{stderr}");
}

#[test]
fn webhook_gives_up_after_max_attempts() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/findings");
    let (findings, stdout, _) =
        run_with_webhook("hook-refused", &url, "      max_attempts: 2\n", false);
    let line = format!(
        "webhook {url}: 0 delivered, {} retried, {} failed, 0 dropped",
        findings.len(),
        findings.len()
    );
    assert!(stdout.contains(&line), "{stdout}");
}
