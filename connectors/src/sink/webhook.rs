//! The generic webhook sink: each finding as a JSON `POST`, retried until it is accepted.
//!
//! Deliveries run on the sink's own thread behind a bounded queue, so a slow or failing
//! receiver never stalls the dataflow or the other sinks. A response is classed before anything
//! is retried: 2xx is delivered; 408, 425, 429, 5xx and connection errors are retried with
//! exponential backoff and full jitter, waiting at least as long as a `Retry-After` header asks;
//! any other status cannot be fixed by retrying and fails at once. Every failure is logged with
//! the URL and status and counted in the run summary; header values, which carry tokens, never
//! appear in logs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use feedloop_rules::HumanDuration;

/// Settings of one webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL findings are posted to.
    pub url: String,
    /// Extra request headers; values may come from the environment or a file.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Time allowed for one request, connection included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Attempts per finding before it counts as failed, the first included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; each later retry waits up to twice as long.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// The maximum wait between attempts, `Retry-After` excepted.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Findings waiting for delivery before new ones are counted as dropped.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(10_000)
}
fn default_attempts() -> u32 {
    8
}
fn default_initial_backoff() -> HumanDuration {
    HumanDuration(500)
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration(30_000)
}
fn default_queue() -> usize {
    10_000
}

/// The longest `Retry-After` honoured; a receiver asking for more is waited on this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A configuration value that may be a secret: literal text, an environment variable or a file.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Secret {
    Literal(String),
    Env { env: String },
    File { file: std::path::PathBuf },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Literal(<redacted>)"),
            Secret::Env { env } => write!(f, "Env({env})"),
            Secret::File { file } => write!(f, "File({})", file.display()),
        }
    }
}

impl Secret {
    /// Returns the value, reading the environment or the file (trailing newline removed).
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Literal(value) => Ok(value.clone()),
            Secret::Env { env } => std::env::var(env).map_err(|_| {
                format!("environment variable `{env}` is not set; export it or use `file:`")
            }),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|err| format!("failed to read secret file {}: {err}", file.display())),
        }
    }
}

/// Checks a webhook's settings without resolving its secrets.
pub fn check(config: &WebhookConfig) -> Result<(), String> {
    let uri: ureq::http::Uri = config.url.parse().map_err(|err| {
        format!("invalid webhook url `{}`: {err}; write a full URL such as https://hooks.example.com/feedloop", config.url)
    })?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "invalid webhook url `{}`: use an http:// or https:// URL with a host",
            config.url
        ));
    }
    for name in config.headers.keys() {
        ureq::http::HeaderName::try_from(name.as_str())
            .map_err(|_| format!("invalid webhook header name `{name}` for {}", config.url))?;
    }
    if config.max_attempts == 0 {
        return Err(format!(
            "invalid max_attempts 0 for webhook {}: use at least 1",
            config.url
        ));
    }
    if config.timeout.as_millis() == 0 {
        return Err(format!(
            "invalid timeout 0 for webhook {}: use at least 1ms, such as 10s",
            config.url
        ));
    }
    if config.queue_capacity == 0 {
        return Err(format!(
            "invalid queue_capacity 0 for webhook {}: use at least 1",
            config.url
        ));
    }
    Ok(())
}

/// Delivery counts of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookReport {
    pub url: String,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// A running webhook sink.
pub struct WebhookSink {
    url: String,
    queue: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<WebhookReport>>,
    dropped: u64,
}

impl WebhookSink {
    /// Resolves the headers and starts the delivery thread.
    pub fn start(config: &WebhookConfig) -> Result<WebhookSink, String> {
        check(config)?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let value = value
                .resolve()
                .map_err(|err| format!("webhook header `{name}`: {err}"))?;
            headers.push((name.clone(), value));
        }
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "invalid webhook url `{}`: use an http:// or https:// URL",
                config.url
            ));
        }
        let (queue, receiver) = mpsc::sync_channel(config.queue_capacity.max(1));
        let delivery = Delivery::new(config, headers);
        let worker = std::thread::Builder::new()
            .name("webhook".to_string())
            .spawn(move || delivery.run(receiver))
            .map_err(|err| format!("failed to start webhook thread: {err}"))?;
        Ok(WebhookSink {
            url: config.url.clone(),
            queue: Some(queue),
            worker: Some(worker),
            dropped: 0,
        })
    }

    /// Queues a finding's JSON; counts it as dropped when the queue is full.
    pub fn send(&mut self, body: Vec<u8>) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::error!(url = %self.url, dropped = self.dropped, "webhook queue is full; dropping findings");
                }
            }
        }
    }

    /// Waits for queued findings to be delivered or to fail, and returns the counts.
    pub fn finish(mut self) -> WebhookReport {
        drop(self.queue.take());
        let mut report = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(report)) => report,
            _ => WebhookReport {
                url: self.url.clone(),
                ..Default::default()
            },
        };
        report.dropped = self.dropped;
        report
    }
}

/// The delivery thread's state.
struct Delivery {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq)]
enum Attempt {
    Delivered,
    /// Worth retrying, after at least `after` when the receiver sent `Retry-After`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help.
    Fail {
        reason: String,
    },
}

impl Delivery {
    fn new(config: &WebhookConfig, headers: Vec<(String, String)>) -> Delivery {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout.as_millis())))
            .http_status_as_error(false)
            .build()
            .into();
        Delivery {
            agent,
            url: config.url.clone(),
            headers,
            max_attempts: config.max_attempts.max(1),
            initial_backoff: Duration::from_millis(config.initial_backoff.as_millis()),
            max_backoff: Duration::from_millis(config.max_backoff.as_millis()),
        }
    }

    fn run(self, receiver: Receiver<Vec<u8>>) -> WebhookReport {
        let mut report = WebhookReport {
            url: self.url.clone(),
            ..Default::default()
        };
        for body in receiver {
            self.deliver(&body, &mut report);
        }
        report
    }

    fn deliver(&self, body: &[u8], report: &mut WebhookReport) {
        let mut rng = rand::rng();
        for attempt in 1..=self.max_attempts {
            let reason = match self.attempt(body) {
                Attempt::Delivered => {
                    report.delivered += 1;
                    return;
                }
                Attempt::Fail { reason } => {
                    tracing::error!(url = %self.url, error = %reason, "webhook rejected finding; not retrying");
                    report.failed += 1;
                    return;
                }
                Attempt::Retry { reason, after } => {
                    if attempt == self.max_attempts {
                        reason
                    } else {
                        let wait =
                            backoff(self.initial_backoff, self.max_backoff, attempt, &mut rng)
                                .max(after.unwrap_or_default());
                        tracing::warn!(url = %self.url, attempt, wait_ms = wait.as_millis() as u64, error = %reason, "webhook delivery failed; retrying");
                        report.retried += 1;
                        std::thread::sleep(wait);
                        continue;
                    }
                }
            };
            tracing::error!(url = %self.url, attempts = self.max_attempts, error = %reason, "webhook delivery failed; giving up on finding");
            report.failed += 1;
        }
    }

    fn attempt(&self, body: &[u8]) -> Attempt {
        let mut request = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        match request.send(body) {
            Ok(response) => classify(response.status().as_u16(), retry_after(&response)),
            Err(err) => Attempt::Retry {
                reason: format!("request failed: {err}"),
                after: None,
            },
        }
    }
}

/// Classes a response status: retry the ones a later attempt can fix.
fn classify(status: u16, retry_after: Option<Duration>) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 425 | 429 | 500..=599 => Attempt::Retry {
            reason: format!("receiver returned HTTP {status}"),
            after: retry_after,
        },
        _ => Attempt::Fail {
            reason: format!("receiver returned HTTP {status}"),
        },
    }
}

/// Reads `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let ms = (date.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0);
            Duration::from_millis(ms as u64)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Full-jitter exponential backoff: a random wait up to `initial * 2^(attempt-1)`, capped.
fn backoff(initial: Duration, max: Duration, attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = initial.saturating_mul(1 << (attempt - 1).min(20)).min(max);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rng.random_range(ms / 2..=ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_statuses() {
        assert_eq!(classify(204, None), Attempt::Delivered);
        assert!(matches!(classify(503, None), Attempt::Retry { .. }));
        assert!(
            matches!(classify(429, Some(Duration::from_secs(2))), Attempt::Retry { after: Some(d), .. } if d == Duration::from_secs(2))
        );
        assert_eq!(
            classify(400, None),
            Attempt::Fail {
                reason: "receiver returned HTTP 400".into()
            }
        );
        assert!(matches!(classify(404, None), Attempt::Fail { .. }));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut rng = rand::rng();
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        for _ in 0..100 {
            let first = backoff(initial, max, 1, &mut rng);
            assert!(first >= Duration::from_millis(50));
            assert!(first <= initial);
            let late = backoff(initial, max, 10, &mut rng);
            assert!(late >= Duration::from_millis(500));
            assert!(late <= max);
        }
    }

    fn config(url: &str) -> WebhookConfig {
        serde_norway::from_str(&format!("url: \"{url}\"")).unwrap()
    }

    #[test]
    fn check_rejects_bad_settings() {
        assert_eq!(check(&config("http://127.0.0.1:9/x")), Ok(()));
        let err = check(&config("http://")).unwrap_err();
        assert!(err.starts_with("invalid webhook url `http://`"), "{err}");
        let err = check(&config("ftp://127.0.0.1/x")).unwrap_err();
        assert!(
            err.starts_with("invalid webhook url `ftp://127.0.0.1/x`: use an http://"),
            "{err}"
        );
        let err = check(&config("http://a b/")).unwrap_err();
        assert!(
            err.starts_with("invalid webhook url `http://a b/`"),
            "{err}"
        );
        let mut bad = config("http://127.0.0.1/x");
        bad.headers
            .insert("Bad Header".into(), Secret::Literal("v".into()));
        assert_eq!(
            check(&bad).unwrap_err(),
            "invalid webhook header name `Bad Header` for http://127.0.0.1/x"
        );
        let mut bad = config("http://127.0.0.1/x");
        bad.max_attempts = 0;
        assert!(check(&bad)
            .unwrap_err()
            .starts_with("invalid max_attempts 0"));
    }

    #[test]
    fn secret_debug_hides_literal() {
        let secret = Secret::Literal("token-123".into());
        assert_eq!(format!("{secret:?}"), "Literal(<redacted>)");
        let secret: Secret = serde_norway::from_str("{env: HOOK_TOKEN}").unwrap();
        assert_eq!(
            secret,
            Secret::Env {
                env: "HOOK_TOKEN".into()
            }
        );
    }
}
