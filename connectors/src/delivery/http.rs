//! The HTTP client every receiver uses, and the classing of its answers.
//!
//! A receiver builds a [`Request`], sends it with [`HttpClient::send`] and gets either a 2xx
//! [`Reply`] or a [`DeliveryError`] that already says whether to retry and how long to wait.
//! Waits come from `Retry-After` (seconds or an HTTP date) and from GitHub's rate-limit
//! headers (`x-ratelimit-remaining: 0` with `x-ratelimit-reset`, and the secondary limit's 403
//! with or without `retry-after`). A 429 is never retried at once: without a header it waits
//! at least [`MIN_RATE_LIMIT_WAIT`].
//!
//! Header values carry tokens, so nothing here logs a request; errors name the method, the
//! URL without its query, and the status.

use std::time::Duration;

use serde_json::Value;

use super::DeliveryError;

/// The maximum wait a service can request. Longer requests are capped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The minimum wait after a 429 that named no time.
pub const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// The wait after GitHub's secondary rate limit when it names no time, as GitHub documents.
pub const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// How much of an error response is kept for logs and dead letters.
const RESPONSE_EXCERPT_CHARS: usize = 2_000;

/// The body of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON document, sent as `application/json`.
    Json(Value),
    /// URL-encoded form fields, sent as `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// Raw bytes with their content type, such as a multipart upload.
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// One HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    /// Returns a request without headers or body.
    pub fn new(method: &'static str, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: Value) -> Request {
        self.body = Body::Json(body);
        self
    }

    /// Sets a form body.
    pub fn form(mut self, fields: Vec<(String, String)>) -> Request {
        self.body = Body::Form(fields);
        self
    }

    /// Sets a raw body.
    pub fn raw(mut self, content_type: impl Into<String>, bytes: Vec<u8>) -> Request {
        self.body = Body::Raw {
            content_type: content_type.into(),
            bytes,
        };
        self
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Returns the first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Parses the body as JSON; a 2xx answer that is not JSON is a rejection.
    pub fn json(&self) -> Result<Value, DeliveryError> {
        serde_json::from_str(&self.body).map_err(|err| DeliveryError::Reject {
            reason: format!("expected a JSON answer, got: {err}"),
            status: Some(self.status),
            response: excerpt(&self.body),
            fallback: false,
        })
    }
}

/// A blocking HTTP client with one timeout for each whole request.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
}

impl HttpClient {
    /// Returns a client whose requests each take at most `timeout`, connecting included.
    pub fn new(timeout: Duration) -> HttpClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("feedloop/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HttpClient { agent }
    }

    /// Sends a request and classes the answer.
    pub fn send(&self, request: &Request) -> Result<Reply, DeliveryError> {
        let (status, headers, body) = self.exchange(request).map_err(|err| {
            DeliveryError::retry(format!(
                "{} {} failed: {err}",
                request.method,
                without_query(&request.url)
            ))
        })?;
        if (200..300).contains(&status) {
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
        Err(classify(request, status, &headers, &body))
    }

    fn exchange(&self, request: &Request) -> Result<Exchange, String> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method)
            .uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let (content_type, bytes) = match &request.body {
            Body::Empty => (None, Vec::new()),
            Body::Json(value) => (
                Some("application/json".to_string()),
                serde_json::to_vec(value).expect("a JSON value always serializes"),
            ),
            Body::Form(fields) => (
                Some("application/x-www-form-urlencoded".to_string()),
                form_encode(fields).into_bytes(),
            ),
            Body::Raw {
                content_type,
                bytes,
            } => (Some(content_type.clone()), bytes.clone()),
        };
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let http_request = builder.body(bytes).map_err(|err| err.to_string())?;
        let mut response = self
            .agent
            .run(http_request)
            .map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|err| format!("failed to read the answer: {err}"))?;
        Ok((status, headers, body))
    }
}

/// A raw answer: status, lower-case headers and body.
type Exchange = (u16, Vec<(String, String)>, String);

/// Classes a non-2xx answer: what retrying can fix, and how long to wait first.
pub fn classify(
    request: &Request,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> DeliveryError {
    let reason = format!(
        "{} {} returned HTTP {status}",
        request.method,
        without_query(&request.url)
    );
    let requested = retry_after(headers).or_else(|| rate_limit_reset(headers));
    let secondary = status == 403
        && (requested.is_some() || body.to_ascii_lowercase().contains("secondary rate limit"));
    match status {
        429 => DeliveryError::Retry {
            reason,
            after: Some(requested.unwrap_or(MIN_RATE_LIMIT_WAIT)),
        },
        403 if secondary => DeliveryError::Retry {
            reason: format!("{reason} (rate limited)"),
            after: Some(requested.unwrap_or(SECONDARY_LIMIT_WAIT)),
        },
        408 | 425 | 500..=599 => DeliveryError::Retry {
            reason,
            after: requested,
        },
        _ => DeliveryError::Reject {
            reason,
            status: Some(status),
            response: excerpt(body),
            fallback: matches!(status, 400 | 413 | 422),
        },
    }
}

/// Returns the first value of a header among lower-case names.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reads `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let value = header(headers, "retry-after")?.trim();
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

/// Reads GitHub's primary limit: when no requests remain, the wait until the reset time.
pub fn rate_limit_reset(headers: &[(String, String)]) -> Option<Duration> {
    let remaining = header(headers, "x-ratelimit-remaining")?.trim();
    if remaining != "0" {
        return None;
    }
    let reset: i64 = header(headers, "x-ratelimit-reset")?.trim().parse().ok()?;
    let ms = (reset * 1_000 - chrono::Utc::now().timestamp_millis()).max(1_000);
    Some(Duration::from_millis(ms as u64).min(MAX_RETRY_AFTER))
}

/// Returns the URL without its query string, which may carry tokens.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Returns the start of a response body, cut on a character boundary.
pub fn excerpt(body: &str) -> String {
    match body.char_indices().nth(RESPONSE_EXCERPT_CHARS) {
        Some((end, _)) => format!("{}...", &body[..end]),
        None => body.to_string(),
    }
}

/// Encodes form fields as `application/x-www-form-urlencoded`.
pub fn form_encode(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", encode_component(name), encode_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query or form component.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Returns a `multipart/form-data` body with one file part, and its content type.
pub fn multipart_file(
    field: &str,
    file_name: &str,
    content_type: &str,
    data: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "feedloop-part-5f3a9c1e7b2d4a60";
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(
        format!(
            "Content-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn post() -> Request {
        Request::new("POST", "http://127.0.0.1:1/rest?token=secret")
    }

    #[test]
    fn classify_429_waits_for_retry_after() {
        let err = classify(&post(), 429, &headers(&[("retry-after", "2")]), "");
        assert_eq!(
            err,
            DeliveryError::Retry {
                reason: "POST http://127.0.0.1:1/rest returned HTTP 429".into(),
                after: Some(Duration::from_secs(2)),
            }
        );
    }

    #[test]
    fn classify_429_without_header_still_waits() {
        let err = classify(&post(), 429, &[], "");
        assert!(
            matches!(err, DeliveryError::Retry { after: Some(d), .. } if d == MIN_RATE_LIMIT_WAIT)
        );
    }

    #[test]
    fn classify_github_secondary_limit() {
        let err = classify(
            &post(),
            403,
            &[],
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
        );
        assert!(
            matches!(err, DeliveryError::Retry { after: Some(d), .. } if d == SECONDARY_LIMIT_WAIT)
        );
        let err = classify(&post(), 403, &headers(&[("retry-after", "7")]), "{}");
        assert!(
            matches!(err, DeliveryError::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
        );
    }

    #[test]
    fn classify_github_primary_limit() {
        let reset = chrono::Utc::now().timestamp() + 30;
        let err = classify(
            &post(),
            403,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
            ]),
            "{}",
        );
        match err {
            DeliveryError::Retry { after: Some(d), .. } => {
                assert!(
                    d > Duration::from_secs(25) && d <= Duration::from_secs(30),
                    "{d:?}"
                )
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn classify_permission_errors_are_rejected() {
        let err = classify(
            &post(),
            403,
            &headers(&[("x-ratelimit-remaining", "12")]),
            "no",
        );
        assert_eq!(
            err,
            DeliveryError::Reject {
                reason: "POST http://127.0.0.1:1/rest returned HTTP 403".into(),
                status: Some(403),
                response: "no".into(),
                fallback: false,
            }
        );
        assert!(matches!(
            classify(&post(), 400, &[], ""),
            DeliveryError::Reject { fallback: true, .. }
        ));
        assert!(matches!(
            classify(&post(), 503, &[], ""),
            DeliveryError::Retry { after: None, .. }
        ));
    }

    #[test]
    fn retry_after_caps_long_waits() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "86400")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[
                ("token".into(), "a b&c".into()),
                ("ref".into(), "main".into())
            ]),
            "token=a%20b%26c&ref=main"
        );
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let body = "é".repeat(RESPONSE_EXCERPT_CHARS + 5);
        let cut = excerpt(&body);
        assert_eq!(cut.chars().count(), RESPONSE_EXCERPT_CHARS + 3);
        assert!(cut.ends_with("..."));
    }
}
