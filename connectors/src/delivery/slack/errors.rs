//! Classing Slack's responses: Web API `"ok": false` codes and incoming-webhook errors.
//!
//! The Web API reports most errors with HTTP 200, so the HTTP client's classing sees a
//! success, and [`check_response`] reads `ok` and classes the error code instead. An incoming
//! webhook reports errors with an HTTP status and a plain-text code, which the HTTP client
//! classes. [`webhook_error`] then adds the code and a fix and removes the webhook URL, which
//! is a secret.

use serde_json::{json, Value};

use crate::delivery::http::{self, Reply, Request};
use crate::delivery::DeliveryError;

/// Parses a Web API response: `"ok": true` is a success, anything else an error by its code.
pub(super) fn check_response(request: &Request, reply: &Reply) -> Result<Value, DeliveryError> {
    let response = reply.json()?;
    if response["ok"] == json!(true) {
        return Ok(response);
    }
    let code = response["error"].as_str().unwrap_or("unknown_error");
    Err(api_error(request, reply, code, &response))
}

/// The handling a Web API error code calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorClass {
    /// A transient failure on Slack's side or a rate limit.
    Retry,
    /// The message's size or format was rejected; a minimal message may pass.
    Fallback,
    /// Retrying cannot help until someone fixes the token, scope or channel.
    Reject,
}

fn error_class(code: &str) -> ErrorClass {
    match code {
        "ratelimited"
        | "rate_limited"
        | "internal_error"
        | "fatal_error"
        | "service_unavailable"
        | "request_timeout" => ErrorClass::Retry,
        "msg_too_long"
        | "invalid_blocks"
        | "invalid_blocks_format"
        | "too_many_attachments"
        | "invalid_arguments"
        | "no_text" => ErrorClass::Fallback,
        _ => ErrorClass::Reject,
    }
}

/// Returns what to do about an error code, for the rejection's reason.
fn error_hint(code: &str) -> &'static str {
    match code {
        "channel_not_found" => {
            "check the channel id in the service catalog's `slack_channel` or the receiver's \
             `channel`"
        }
        "not_in_channel" => "invite the app to the channel",
        "is_archived" => "unarchive the channel or route the service to another one",
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" => {
            "check the receiver's `token`"
        }
        "missing_scope" => "add the scope Slack names as `needed` to the app and reinstall it",
        "message_not_found" | "cant_update_message" => {
            "the message was deleted, or was not posted by this app's token"
        }
        _ => match error_class(code) {
            ErrorClass::Retry => "a later attempt may succeed",
            ErrorClass::Fallback => "the message's size or format was rejected",
            ErrorClass::Reject => "see the Slack method's documented errors",
        },
    }
}

/// Classes a Web API response with `"ok": false`.
fn api_error(request: &Request, reply: &Reply, code: &str, response: &Value) -> DeliveryError {
    let details = response_details(response);
    let details = if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    };
    let reason = format!(
        "{} {} returned error `{code}`{details}; {}",
        request.method,
        http::without_query(&request.url),
        error_hint(code)
    );
    match error_class(code) {
        ErrorClass::Retry => {
            let limited = matches!(code, "ratelimited" | "rate_limited");
            let requested = http::retry_after(&reply.headers);
            let after = match limited {
                true => Some(requested.unwrap_or(http::MIN_RATE_LIMIT_WAIT)),
                false => requested,
            };
            DeliveryError::Retry { reason, after }
        }
        class => DeliveryError::Reject {
            reason,
            status: Some(reply.status),
            response: http::excerpt(&reply.body),
            fallback: class == ErrorClass::Fallback,
        },
    }
}

/// Returns the `warning`, `needed` scope and `response_metadata` messages of a response.
pub(super) fn response_details(response: &Value) -> String {
    let mut details = Vec::new();
    if let Some(warning) = response["warning"].as_str() {
        details.push(format!("warning: {warning}"));
    }
    if let Some(needed) = response["needed"].as_str() {
        details.push(format!("needed: {needed}"));
    }
    let metadata = &response["response_metadata"];
    for list in ["messages", "warnings"] {
        let items: Vec<&str> = metadata[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !items.is_empty() {
            details.push(format!("{list}: {}", items.join("; ")));
        }
    }
    details.join(", ")
}

/// Returns the rejection for a successful response that lacks a field the receiver needs.
pub(super) fn missing_field(method: &str, field: &str, response: &Value) -> DeliveryError {
    DeliveryError::Reject {
        reason: format!("slack {method} returned `ok` without `{field}`"),
        status: Some(200),
        response: http::excerpt(&response.to_string()),
        fallback: false,
    }
}

/// Removes the webhook URL, which is a secret, from an error and adds Slack's error code.
pub(super) fn webhook_error(err: DeliveryError, url: &str) -> DeliveryError {
    let scrub = |text: &str| {
        let mut text = text
            .replace(url, "the Slack incoming webhook")
            .replace(http::without_query(url), "the Slack incoming webhook");
        if let Some(path) = url_path(url) {
            text = text.replace(path, "/<webhook path>");
        }
        text
    };
    match err {
        DeliveryError::Retry { reason, after } => DeliveryError::Retry {
            reason: scrub(&reason),
            after,
        },
        DeliveryError::Reject {
            reason,
            status,
            response,
            fallback,
        } => {
            let code = response.trim();
            let reason = match webhook_hint(code) {
                Some(hint) => format!("{}: `{code}`; {hint}", scrub(&reason)),
                None => scrub(&reason),
            };
            DeliveryError::Reject {
                reason,
                status,
                response: scrub(&response),
                fallback,
            }
        }
    }
}

fn url_path(url: &str) -> Option<&str> {
    let after_scheme = url.split_once("://")?.1;
    let start = after_scheme.find('/')?;
    Some(&after_scheme[start..]).filter(|path| path.len() > 1)
}

/// Returns what to do about an incoming webhook's plain-text error code.
fn webhook_hint(code: &str) -> Option<&'static str> {
    let hint = match code {
        "invalid_payload" | "invalid_blocks" | "invalid_blocks_format" => {
            "the message's size or format was rejected"
        }
        "action_prohibited" => "an admin restricted posting through this webhook",
        "channel_not_found" => "the webhook's channel was deleted; create a new webhook",
        "channel_is_archived" => "unarchive the channel or create a webhook for another one",
        "no_service" | "no_team" | "team_disabled" => {
            "the webhook was removed or its URL is wrong; create a new incoming webhook"
        }
        _ => return None,
    };
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classed() {
        let cases = [
            ("ratelimited", ErrorClass::Retry),
            ("internal_error", ErrorClass::Retry),
            ("fatal_error", ErrorClass::Retry),
            ("service_unavailable", ErrorClass::Retry),
            ("request_timeout", ErrorClass::Retry),
            ("msg_too_long", ErrorClass::Fallback),
            ("invalid_blocks", ErrorClass::Fallback),
            ("invalid_blocks_format", ErrorClass::Fallback),
            ("too_many_attachments", ErrorClass::Fallback),
            ("invalid_arguments", ErrorClass::Fallback),
            ("channel_not_found", ErrorClass::Reject),
            ("not_in_channel", ErrorClass::Reject),
            ("is_archived", ErrorClass::Reject),
            ("invalid_auth", ErrorClass::Reject),
            ("not_authed", ErrorClass::Reject),
            ("account_inactive", ErrorClass::Reject),
            ("token_revoked", ErrorClass::Reject),
            ("missing_scope", ErrorClass::Reject),
            ("message_not_found", ErrorClass::Reject),
            ("cant_update_message", ErrorClass::Reject),
            ("something_new", ErrorClass::Reject),
        ];
        for (code, class) in cases {
            assert_eq!(error_class(code), class, "{code}");
        }
    }

    #[test]
    fn api_error_reads_details_into_reason() {
        let request = Request::new("POST", "http://127.0.0.1:9/chat.postMessage?x=1");
        let response = json!({
            "ok": false,
            "error": "missing_scope",
            "needed": "chat:write",
            "warning": "superfluous_charset",
            "response_metadata": {"messages": ["[ERROR] no scope"]},
        });
        let reply = Reply {
            status: 200,
            headers: Vec::new(),
            body: response.to_string(),
        };
        let err = check_response(&request, &reply).unwrap_err();
        let DeliveryError::Reject {
            reason,
            status,
            fallback,
            ..
        } = err
        else {
            panic!("expected a rejection, got {err:?}");
        };
        assert_eq!(
            reason,
            "POST http://127.0.0.1:9/chat.postMessage returned error `missing_scope` \
             (warning: superfluous_charset, needed: chat:write, messages: [ERROR] no scope); \
             add the scope Slack names as `needed` to the app and reinstall it"
        );
        assert_eq!(status, Some(200));
        assert!(!fallback);
    }

    #[test]
    fn webhook_error_hides_the_url() {
        let url = "http://127.0.0.1:9/services/T0/B0/s3cret";
        let err = webhook_error(
            DeliveryError::Retry {
                reason: format!("POST {url} failed: connection refused"),
                after: None,
            },
            url,
        );
        assert_eq!(
            err,
            DeliveryError::Retry {
                reason: "POST the Slack incoming webhook failed: connection refused".into(),
                after: None,
            }
        );
        assert_eq!(url_path(url), Some("/services/T0/B0/s3cret"));
    }
}
