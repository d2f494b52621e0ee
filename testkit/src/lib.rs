//! Loopback HTTP servers that speak the receivers' APIs, for tests.
//!
//! [`MockServer`] listens on 127.0.0.1 only, on a port the system picks, records every request
//! it receives, and answers through a handler that holds the service's state (issues, messages,
//! alerts). Tests queue [`Fault`]s to make the next matching requests fail the way the real
//! service fails (a 429 with `Retry-After`, a 503, a field error), then assert the exact
//! requests a receiver sent. Each service module builds its handler on top of this.
//!
//! Nothing here opens a socket anywhere but 127.0.0.1.

#![deny(missing_docs)]

pub mod github;
pub mod gitlab;
pub mod jenkins;
pub mod jira;
pub mod slack;
pub mod tansu;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method, such as `POST`.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query string without `?`; empty when absent.
    pub query: String,
    /// Headers with lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// Returns the first value of a header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Returns the body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses the body as JSON.
    ///
    /// # Panics
    ///
    /// Panics when the body is not JSON, which fails the test that expected it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("body of {} {} is not JSON: {err}", self.method, self.path)
        })
    }

    /// Returns `METHOD /path`, the short form tests compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An answer to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// A plain text answer.
    pub fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// An answer without a body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A queued failure: the next `times` requests that match get `reply` instead of the handler.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The answer to send.
    pub reply: Reply,
    /// How many matching requests get it.
    pub times: usize,
    /// Only requests with this method, when set.
    pub method: Option<String>,
    /// Only requests whose path starts with this, when set.
    pub path_prefix: Option<String>,
}

impl Fault {
    /// A fault for the next `times` requests of any kind.
    pub fn next(times: usize, reply: Reply) -> Fault {
        Fault {
            reply,
            times,
            method: None,
            path_prefix: None,
        }
    }

    /// Limits the fault to one method and path prefix.
    pub fn on(mut self, method: &str, path_prefix: &str) -> Fault {
        self.method = Some(method.to_string());
        self.path_prefix = Some(path_prefix.to_string());
        self
    }

    fn matches(&self, request: &Recorded) -> bool {
        self.method.as_deref().is_none_or(|m| m == request.method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| request.path.starts_with(p))
    }
}

type Handler = Box<dyn FnMut(&Recorded) -> Reply + Send>;

/// A recording HTTP server on 127.0.0.1.
pub struct MockServer {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a server whose answers come from `handler`.
    ///
    /// # Panics
    ///
    /// Panics when no loopback port can be bound.
    pub fn start(handler: impl FnMut(&Recorded) -> Reply + Send + 'static) -> MockServer {
        Self::start_boxed(Box::new(handler))
    }

    fn start_boxed(mut handler: Handler) -> MockServer {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port");
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let faults: Arc<Mutex<Vec<Fault>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, faults, stop) = (requests.clone(), faults.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50))
                    else {
                        continue;
                    };
                    let recorded = record(&mut request);
                    requests
                        .lock()
                        .expect("requests lock")
                        .push(recorded.clone());
                    let reply =
                        take_fault(&faults, &recorded).unwrap_or_else(|| handler(&recorded));
                    respond(request, reply);
                }
            })
        };
        MockServer {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            faults,
            stop,
            thread: Some(thread),
        }
    }

    /// Returns the base URL, such as `http://127.0.0.1:41234`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Returns every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Returns `METHOD /path` of every request so far.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }

    /// Queues a fault.
    pub fn fail(&self, fault: Fault) {
        self.faults.lock().expect("faults lock").push(fault);
    }

    /// Waits until at least `count` requests arrived or `timeout` passed; returns the count.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests.lock().expect("requests lock").len();
            if seen >= count || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record(request: &mut tiny_http::Request) -> Recorded {
    let url = request.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path.to_string(), query.to_string()),
        None => (url, String::new()),
    };
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    Recorded {
        method: request.method().as_str().to_string(),
        path,
        query,
        headers,
        body,
        at: Instant::now(),
    }
}

fn take_fault(faults: &Mutex<Vec<Fault>>, request: &Recorded) -> Option<Reply> {
    let mut faults = faults.lock().expect("faults lock");
    let index = faults
        .iter()
        .position(|f| f.times > 0 && f.matches(request))?;
    let fault = &mut faults[index];
    fault.times -= 1;
    let reply = fault.reply.clone();
    if fault.times == 0 {
        faults.remove(index);
    }
    Some(reply)
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let mut response = tiny_http::Response::from_data(reply.body).with_status_code(reply.status);
    for (name, value) in &reply.headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

/// Splits a query string into decoded pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` as space.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_records_and_applies_faults() {
        let server = MockServer::start(|_| Reply::json(200, serde_json::json!({"ok": true})));
        server.fail(
            Fault::next(1, Reply::empty(429).with_header("retry-after", "2")).on("POST", "/x"),
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let first = agent
            .post(&format!("{}/x?a=1", server.url()))
            .send("hi")
            .unwrap();
        assert_eq!(first.status().as_u16(), 429);
        assert_eq!(first.headers()["retry-after"], "2");
        let second = agent
            .post(&format!("{}/x", server.url()))
            .send("hi")
            .unwrap();
        assert_eq!(second.status().as_u16(), 200);
        let requests = server.requests();
        assert_eq!(server.lines(), ["POST /x", "POST /x"]);
        assert_eq!(requests[0].query, "a=1");
        assert_eq!(requests[0].text(), "hi");
    }

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            query_pairs("a=1&b=x%20y&c=a+b"),
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "a b".into())
            ]
        );
    }
}
