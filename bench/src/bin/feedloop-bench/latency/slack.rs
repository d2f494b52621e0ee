//! The loopback Slack that `feedloop run` delivers the bench rule's findings to, and when each
//! finding's message arrived there.
//!
//! The run starts a [`SlackMock`] from `feedloop-testkit` in the benchmark's own process,
//! because no real Slack can be reached from the benchmark machine. The mock listens on
//! 127.0.0.1 and stamps each request with the instant it finished reading the body. feedloop's
//! Slack receiver opens one message per finding with `chat.postMessage`, whose metadata names
//! the notice key. On a route without grouping that key is the finding's fingerprint, which
//! the findings file also carries, so a burst's message is the opening post whose key is the
//! fingerprint of the burst's early finding.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::Instant;

use feedloop_connectors::delivery::slack::EVENT_TYPE;
use feedloop_testkit::slack::{SlackMock, OPS_CHANNEL, TOKEN};
use feedloop_testkit::Recorded;

/// The environment variable that passes the mock's bot token to feedloop.
pub const TOKEN_ENV: &str = "FEEDLOOP_BENCH_SLACK_TOKEN";

/// The channel the receiver posts to, one that the mock has invited the bot to.
pub const CHANNEL: &str = OPS_CHANNEL;

/// The bot token the mock accepts.
pub const BOT_TOKEN: &str = TOKEN;

/// Counts of the requests the mock received, by Web API method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlackCounts {
    /// `chat.postMessage` requests that open a finding's message.
    pub opened: u64,
    /// Opening posts for a key that already had one, such as a retry after an error.
    pub repeated: u64,
    /// `chat.postMessage` requests that reply in a message's thread.
    pub replies: u64,
    /// `chat.update` requests.
    pub updates: u64,
    /// All other requests, such as the `auth.test` that feedloop sends at start.
    pub other: u64,
}

/// The kind of one request to the mock.
#[derive(Debug, PartialEq, Eq)]
enum SlackRequest {
    /// An opening `chat.postMessage` for the notice key.
    Opened(String),
    Reply,
    Update,
    Other,
}

/// The running mock and the opening posts read from it so far.
pub struct SlackDelivery {
    mock: SlackMock,
    /// Notice key to the arrival of its first opening post.
    opened: HashMap<String, Instant>,
    /// Requests already read, counted from the first.
    scanned: usize,
    counts: SlackCounts,
}

impl SlackDelivery {
    /// Starts the mock on a free port of 127.0.0.1.
    pub fn start() -> SlackDelivery {
        SlackDelivery {
            mock: SlackMock::start(),
            opened: HashMap::new(),
            scanned: 0,
            counts: SlackCounts::default(),
        }
    }

    /// Returns the mock's Web API base URL, the receiver's `api_url`.
    pub fn api_url(&self) -> &str {
        self.mock.url()
    }

    /// Reads the requests that arrived since the last call.
    pub fn refresh(&mut self) {
        let requests = self.mock.requests();
        for request in requests.iter().skip(self.scanned) {
            match classify(request) {
                SlackRequest::Opened(key) => {
                    self.counts.opened += 1;
                    match self.opened.entry(key) {
                        Entry::Vacant(entry) => {
                            entry.insert(request.at);
                        }
                        Entry::Occupied(_) => self.counts.repeated += 1,
                    }
                }
                SlackRequest::Reply => self.counts.replies += 1,
                SlackRequest::Update => self.counts.updates += 1,
                SlackRequest::Other => self.counts.other += 1,
            }
        }
        self.scanned = requests.len();
    }

    /// Returns when the first opening post for `key` arrived, as of the last refresh.
    ///
    /// NOTE: the mock records a request before it responds, so an opening post that it
    /// rejected still counts here. With the benchmark's token and channel it rejects a post
    /// only when the post breaks Slack's text or block limits, and
    /// [`SlackCounts::repeated`] counts the retries that follow a rejection.
    pub fn opened(&self, key: &str) -> Option<Instant> {
        self.opened.get(key).copied()
    }

    /// Returns the counts as of the last refresh.
    pub fn counts(&self) -> SlackCounts {
        self.counts
    }
}

/// Classifies a request by its path and, for `chat.postMessage`, its body.
fn classify(request: &Recorded) -> SlackRequest {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/chat.update") => SlackRequest::Update,
        ("POST", "/chat.postMessage") => {
            let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
                return SlackRequest::Other;
            };
            if body.get("thread_ts").is_some_and(|ts| !ts.is_null()) {
                return SlackRequest::Reply;
            }
            let metadata = &body["metadata"];
            match metadata["event_payload"]["key"].as_str() {
                Some(key) if metadata["event_type"] == EVENT_TYPE => {
                    SlackRequest::Opened(key.to_string())
                }
                _ => SlackRequest::Other,
            }
        }
        _ => SlackRequest::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn request(method: &str, path: &str, body: serde_json::Value) -> Recorded {
        Recorded {
            method: method.to_string(),
            path: path.to_string(),
            query: String::new(),
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            at: Instant::now(),
        }
    }

    #[test]
    fn classify_opening_post() {
        let body = json!({
            "channel": CHANNEL,
            "text": "Burst of failed logins: client=203.0.113.1",
            "metadata": {"event_type": EVENT_TYPE, "event_payload": {"key": "fp-1", "marker": "m"}},
        });
        assert_eq!(
            classify(&request("POST", "/chat.postMessage", body)),
            SlackRequest::Opened("fp-1".to_string())
        );
    }

    #[test]
    fn classify_other_requests() {
        let reply = json!({"channel": CHANNEL, "thread_ts": "1700000000.000100", "text": "x"});
        assert_eq!(
            classify(&request("POST", "/chat.postMessage", reply)),
            SlackRequest::Reply
        );
        let foreign = json!({
            "channel": CHANNEL,
            "text": "x",
            "metadata": {"event_type": "deploy", "event_payload": {"key": "fp-1"}},
        });
        assert_eq!(
            classify(&request("POST", "/chat.postMessage", foreign)),
            SlackRequest::Other
        );
        assert_eq!(
            classify(&request("POST", "/chat.update", json!({"ts": "1"}))),
            SlackRequest::Update
        );
        assert_eq!(
            classify(&request("POST", "/auth.test", json!({}))),
            SlackRequest::Other
        );
    }

    #[test]
    fn refresh_keeps_first_arrival() {
        let mut slack = SlackDelivery::start();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}/chat.postMessage", slack.api_url());
        let post = |key: &str| {
            let body = json!({
                "channel": CHANNEL,
                "text": "finding",
                "metadata": {"event_type": EVENT_TYPE, "event_payload": {"key": key}},
            });
            agent
                .post(&url)
                .header("authorization", &format!("Bearer {BOT_TOKEN}"))
                .header("content-type", "application/json; charset=utf-8")
                .send(body.to_string())
                .unwrap();
        };
        let before = Instant::now();
        post("fp-1");
        slack.refresh();
        let first = slack.opened("fp-1").unwrap();
        assert!(first >= before);
        post("fp-1");
        post("fp-2");
        slack.refresh();
        assert_eq!(slack.opened("fp-1"), Some(first));
        assert!(slack.opened("fp-2").is_some());
        assert_eq!(slack.opened("fp-3"), None);
        let counts = slack.counts();
        assert_eq!(counts.opened, 3);
        assert_eq!(counts.repeated, 1);
        assert_eq!(counts.other, 0);
    }
}
