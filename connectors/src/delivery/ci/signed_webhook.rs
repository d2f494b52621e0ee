//! The signed webhook receiver: each finding change is posted as JSON with an HMAC-SHA256
//! signature, for CI systems and tools that take webhooks rather than an API call.
//!
//! Every request is `POST {url}` with these headers:
//!
//! - `X-Feedloop-Signature-256: sha256=<hex>`: the HMAC-SHA256 of the exact body bytes, keyed
//!   with the shared `secret`, in lower-case hex.
//! - `X-Feedloop-Delivery: <change id>`: equal for every retry of one change, so the receiving
//!   side can drop duplicates. Delivery is at least once, so a timeout after the receiving side
//!   accepted a request leads to a second request with the same id.
//! - `X-Feedloop-Event: <change kind>`: `opened`, `updated`, `resolved` or `reopened`.
//!
//! The body is a JSON object with `change`, `key`, `change_id`, `title`, `text` (a Markdown
//! summary with the evidence), `findings` (after redaction) and, for grouped findings, `group`.
//! A minimal rendering, sent after a size or format rejection, keeps `change`, `key`,
//! `change_id` and the plain `title`, reduces each finding to `rule_id`, `title`, `severity`
//! and `fingerprint`, and adds `"minimal": true`.
//!
//! The receiving side verifies a request before it parses the body:
//!
//! 1. Read the raw body bytes, before any JSON parsing or re-encoding, which would change them.
//! 2. Compute `"sha256=" + hex(HMAC-SHA256(secret, body))`.
//! 3. Compare it with the header in constant time, such as Python's `hmac.compare_digest`,
//!    Go's `hmac.Equal` or [`verify_signature`] here, and respond with 401 when they differ. A plain
//!    string comparison leaks through its timing how many leading characters matched.
//! 4. Drop a request whose `X-Feedloop-Delivery` was already processed.
//!
//! NOTE: the signature covers no timestamp, so a recorded request stays valid. Dropping
//! repeated delivery ids is what stops a replay, and the receiving side must keep those ids
//! for as long as it accepts requests signed with the same secret.
//!
//! A webhook has no lookup, so `recover` finds nothing and an interrupted first delivery is
//! sent again with the same delivery id.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use feedloop_rules::HumanDuration;

use super::{Plan, TITLE_MAX_CHARS};
use crate::delivery::http::{HttpClient, Request};
use crate::delivery::render::{self, Redaction, Template};
use crate::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering,
};
use crate::sink::webhook::Secret;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Feedloop-Signature-256";

/// The header with the change id.
pub const DELIVERY_HEADER: &str = "X-Feedloop-Delivery";

/// The header with the change kind.
pub const EVENT_HEADER: &str = "X-Feedloop-Event";

type HmacSha256 = Hmac<Sha256>;

/// Settings of one signed webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedWebhookConfig {
    /// The URL that changes are posted to.
    pub url: String,
    /// The shared HMAC key; the receiving side verifies signatures with the same value.
    pub secret: Secret,
    /// The change kinds that are posted, all four by default.
    #[serde(default = "super::all_kinds")]
    pub on: Vec<ChangeKind>,
    /// Time allowed for one request, connecting included, 10s by default.
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// The template of `title`.
    #[serde(default = "super::default_title")]
    pub title: String,
    /// An optional template for the paragraph that opens `text`.
    #[serde(default)]
    pub body: Option<String>,
    /// Redaction policy for the title, the text and the findings. Nothing is hidden by default.
    #[serde(default)]
    pub redaction: Redaction,
    /// The maximum length of `text`, in characters, 16000 by default.
    #[serde(default = "default_max_text_chars")]
    pub max_text_chars: usize,
}

fn default_max_text_chars() -> usize {
    16_000
}

/// A receiver that posts signed JSON.
pub struct SignedWebhookReceiver {
    name: String,
    http: HttpClient,
    url: String,
    secret: Vec<u8>,
    on: Vec<ChangeKind>,
    title: Template,
    body: Option<Template>,
    redaction: Redaction,
    max_text_chars: usize,
}

impl fmt::Debug for SignedWebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedWebhookReceiver")
            .field("name", &self.name)
            .field("url", &crate::delivery::http::without_query(&self.url))
            .field("secret", &"<redacted>")
            .field("on", &self.on)
            .field("title", &self.title.source())
            .field("body", &self.body.as_ref().map(Template::source))
            .field("max_text_chars", &self.max_text_chars)
            .finish()
    }
}

impl SignedWebhookReceiver {
    /// Builds a receiver: resolves the secret, parses the templates and checks the settings.
    pub fn new(name: &str, config: &SignedWebhookConfig) -> Result<SignedWebhookReceiver, String> {
        super::check_url(name, "url", &config.url)?;
        super::check_kinds(name, &config.on)?;
        let secret = config
            .secret
            .resolve()
            .map_err(|err| format!("receiver `{name}`: `secret`: {err}"))?;
        if secret.is_empty() {
            return Err(format!(
                "receiver `{name}`: `secret` is empty; set the key that the receiving side verifies signatures with"
            ));
        }
        if config.max_text_chars < 100 {
            return Err(format!(
                "receiver `{name}`: invalid `max_text_chars` {}: use at least 100",
                config.max_text_chars
            ));
        }
        let body = match &config.body {
            Some(source) => Some(super::parse_template(name, "body", source)?),
            None => None,
        };
        Ok(SignedWebhookReceiver {
            name: name.to_string(),
            http: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
            url: config.url.clone(),
            secret: secret.into_bytes(),
            on: config.on.clone(),
            title: super::parse_template(name, "title", &config.title)?,
            body,
            redaction: config.redaction,
            max_text_chars: config.max_text_chars,
        })
    }

    /// Returns the JSON body for a notice.
    fn payload(&self, notice: &Notice, rendering: Rendering, progress: &mut dyn Progress) -> Value {
        let redacted = super::redacted(notice, &self.redaction);
        let title =
            super::render_title(&redacted, &self.title, rendering, progress, TITLE_MAX_CHARS);
        if rendering == Rendering::Minimal {
            let findings: Vec<Value> = notice
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "rule_id": f.rule_id,
                        "title": f.title,
                        "severity": f.severity.as_str(),
                        "fingerprint": f.fingerprint,
                    })
                })
                .collect();
            return json!({
                "change": notice.kind.as_str(),
                "key": notice.key,
                "change_id": notice.change_id,
                "title": title,
                "findings": findings,
                "minimal": true,
            });
        }
        let intro = self.body.as_ref().and_then(|template| {
            template
                .render(&redacted)
                .map_err(|reason| progress.render_failed(&reason))
                .ok()
        });
        let text = render::markdown(&redacted, redacted.finding(), intro.as_deref());
        let mut payload = json!({
            "change": notice.kind.as_str(),
            "key": notice.key,
            "change_id": notice.change_id,
            "title": title,
            "text": render::truncate(&text, self.max_text_chars),
            "findings": redacted.findings,
        });
        if let Some(group) = &notice.group {
            payload["group"] = json!(group);
        }
        payload
    }

    /// Adds the receiver and the fix to a rejected delivery.
    fn explain(&self, err: DeliveryError, rendering: Rendering) -> DeliveryError {
        let fallback = rendering == Rendering::Full
            && matches!(err, DeliveryError::Reject { fallback: true, .. });
        let prefix = format!("signed webhook receiver `{}` failed to deliver", self.name);
        let hint = |status| match status {
            Some(401 | 403) => {
                Some("check that the receiving side verifies with the same `secret`")
            }
            Some(404 | 405) => Some("check `url`"),
            _ => None,
        };
        super::explain_rejection(err, &prefix, hint, fallback)
    }
}

impl Receiver for SignedWebhookReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        match super::plan(&self.name, &self.on, notice, remote) {
            Plan::Skip(reason) => return Ok(Effect::Skipped(reason)),
            Plan::AlreadySent(remote) => return Ok(Effect::Applied(remote)),
            Plan::Send => {}
        }
        let payload = self.payload(notice, rendering, progress);
        let bytes = serde_json::to_vec(&payload).expect("a JSON value always serializes");
        let request = Request::new("POST", self.url.clone())
            .header(SIGNATURE_HEADER, sign(&self.secret, &bytes))
            .header(DELIVERY_HEADER, &notice.change_id)
            .header(EVENT_HEADER, notice.kind.as_str())
            .raw("application/json", bytes);
        self.http
            .send(&request)
            .map_err(|err| self.explain(err, rendering))?;
        let delivered = super::triggered(notice, notice.change_id.clone(), None, &[]);
        Ok(super::record(remote, delivered, progress))
    }
}

/// Returns the signature header value for a body: `sha256=` and the HMAC-SHA256 in hex.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let mut out = String::from("sha256=");
    for byte in mac.finalize().into_bytes() {
        write!(out, "{byte:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// Checks a signature header against a body in constant time.
///
/// Returns false for a header without the `sha256=` prefix or with invalid hex.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ci::tests::{notice, Recorder};

    fn parse(yaml: &str) -> Result<SignedWebhookConfig, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    fn receiver(extra: &str) -> SignedWebhookReceiver {
        let config = parse(&format!(
            "url: https://hooks.example.com/ci\nsecret: s3cret\n{extra}"
        ))
        .unwrap();
        SignedWebhookReceiver::new("hook", &config).unwrap()
    }

    #[test]
    fn config_defaults() {
        let config = parse("url: https://hooks.example.com/ci\nsecret: s3cret\n").unwrap();
        assert_eq!(
            config.on,
            [
                ChangeKind::Opened,
                ChangeKind::Updated,
                ChangeKind::Resolved,
                ChangeKind::Reopened
            ]
        );
        assert_eq!(config.redaction, Redaction::default());
        assert_eq!(config.max_text_chars, 16_000);
        assert_eq!(config.body, None);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = parse("url: https://h.example.com\nsecret: s\nheaders: {}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `headers`"), "{err}");
    }

    #[test]
    fn new_rejects_empty_secret() {
        let config = parse("url: https://h.example.com\nsecret: ''\n").unwrap();
        let err = SignedWebhookReceiver::new("hook", &config).unwrap_err();
        assert!(
            err.starts_with("receiver `hook`: `secret` is empty"),
            "{err}"
        );
    }

    #[test]
    fn signature_matches_known_vector() {
        // HMAC-SHA256 test case 2 of RFC 4231.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_signature(
            b"Jefe",
            b"what do ya want for nothing?",
            &signature
        ));
    }

    #[test]
    fn verify_rejects_altered_input() {
        let signature = sign(b"key", b"body");
        assert!(!verify_signature(b"key", b"body!", &signature));
        assert!(!verify_signature(b"other", b"body", &signature));
        assert!(!verify_signature(b"key", b"body", &signature[7..]));
        assert!(!verify_signature(b"key", b"body", "sha256=zz"));
    }

    #[test]
    fn payload_full_has_text_and_findings() {
        let receiver = receiver("body: 'Rule {{ rule_id }} changed.'\n");
        let payload = receiver.payload(
            &notice(ChangeKind::Opened),
            Rendering::Full,
            &mut Recorder::default(),
        );
        assert_eq!(payload["change"], "opened");
        assert_eq!(payload["change_id"], "change-1");
        assert_eq!(
            payload["title"],
            "Repeated failed logins: client=203.0.113.9, principal=alice"
        );
        let text = payload["text"].as_str().unwrap();
        assert!(
            text.starts_with("Rule login-bruteforce changed.\n\n"),
            "{text}"
        );
        assert!(
            text.ends_with("<!-- feedloop-0123456789abcdef -->"),
            "{text}"
        );
        assert_eq!(payload["findings"][0]["rule_id"], "login-bruteforce");
        assert!(payload.get("group").is_none());
    }

    #[test]
    fn payload_minimal_keeps_identity_only() {
        let receiver = receiver("");
        let payload = receiver.payload(
            &notice(ChangeKind::Resolved),
            Rendering::Minimal,
            &mut Recorder::default(),
        );
        assert_eq!(
            payload,
            json!({
                "change": "resolved",
                "key": "0123456789abcdef0123456789abcdef",
                "change_id": "change-1",
                "title": "Repeated failed logins",
                "findings": [{
                    "rule_id": "login-bruteforce",
                    "title": "Repeated failed logins",
                    "severity": "high",
                    "fingerprint": "0123456789abcdef0123456789abcdef"
                }],
                "minimal": true
            })
        );
    }

    #[test]
    fn debug_hides_secret() {
        let config = parse("url: https://h.example.com\nsecret: hook-secret-value\n").unwrap();
        let receiver = SignedWebhookReceiver::new("hook", &config).unwrap();
        let text = format!("{config:?} {receiver:?}");
        assert!(!text.contains("hook-secret-value"), "{text}");
    }
}
