//! The Slack receiver: one message per finding, kept current by edits and thread replies.
//!
//! With a bot `token` the receiver uses the Web API. An opened finding becomes one message
//! (`chat.postMessage`) in the service's channel, with Block Kit blocks for the facts and the
//! evidence and with message metadata (`event_type: feedloop_finding`, the notice key and its
//! marker) that [`Receiver::recover`] looks for. Every later change edits that message
//! (`chat.update`) so it always shows the current state, then adds a thread reply saying what
//! changed. The edit goes first because it is idempotent: when the reply fails and the engine
//! retries, the message is edited twice but the thread gets one reply. A resolve marks the
//! header `Resolved`; a change after that marks it `Reopened`. The bot needs the `chat:write`
//! scope, and `channels:history` (`groups:history` for private channels) for recover.
//!
//! With a `webhook_url` the receiver posts to an incoming webhook instead. Webhooks cannot
//! edit, thread or read anything, so every change is a new message in the webhook's own
//! channel and the remote object only counts the messages. Recover finds nothing there, so a
//! create interrupted after Slack accepted it is posted a second time.
//!
//! Slack reports most Web API errors with HTTP 200 and `"ok": false`. Those are errors here
//! too, classed by their code. Text goes out as `mrkdwn` with `&`, `<` and `>` escaped, so a
//! path such as `/<!channel>` in the evidence can never ping a channel or forge a link. Slack's
//! rate-limit page allows one message per second per channel with short bursts, so posts to
//! one channel are spaced by `min_interval`. The receiver sleeps for that spacing itself but
//! never for a retry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use feedloop_rules::HumanDuration;

use super::http::{self, HttpClient, Request};
use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering};
use crate::sink::webhook::Secret;

use self::blocks::{blocks, fallback_text, minimal_text, reply_text, Content, Status};
use self::errors::{check_response, missing_field, response_details, webhook_error};

pub use self::blocks::{escape, escape_within};

mod blocks;
mod errors;

/// The Web API's base URL.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Slack's maximum characters in a message's `text`.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// The maximum characters the receiver puts in `text`, far below Slack's limit, because the
/// text is only the notification and the fallback for clients without blocks.
pub const FALLBACK_TEXT_CHARS: usize = 3_000;

/// Slack's maximum characters in a section's or a context element's text.
pub const MAX_SECTION_CHARS: usize = 3_000;

/// Slack's maximum fields in one section.
pub const MAX_FIELDS: usize = 10;

/// Slack's maximum characters in one section field.
pub const MAX_FIELD_CHARS: usize = 2_000;

/// Slack's maximum characters in a header block's text.
pub const MAX_HEADER_CHARS: usize = 150;

/// Slack's maximum blocks in one message.
pub const MAX_BLOCKS: usize = 50;

/// The metadata event type of every message the receiver opens.
pub const EVENT_TYPE: &str = "feedloop_finding";

/// How many of a channel's newest messages recover searches.
pub const HISTORY_LIMIT: usize = 100;

/// The content type of Web API posts; Slack warns `missing_charset` without the charset.
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The spacing key of the incoming webhook's channel, which the receiver cannot name.
const WEBHOOK_SPACING_KEY: &str = "incoming webhook";

const _: () = assert!(FALLBACK_TEXT_CHARS <= MAX_TEXT_CHARS);

/// Settings of one Slack receiver. Set exactly one of `token` and `webhook_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// A bot token (`xoxb-...`) for the Web API, which edits and threads messages.
    #[serde(default)]
    pub token: Option<Secret>,
    /// An incoming webhook URL; it posts only to the channel it was created for.
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    /// The Web API's base URL, without a trailing slash.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The channel id (`C...`) or name used when the service catalog names none. Web API only.
    #[serde(default)]
    pub channel: Option<String>,
    /// Time allowed for one request, connection included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// The minimum time between two messages posted to one channel, thread replies included.
    #[serde(default = "default_min_interval")]
    pub min_interval: HumanDuration,
    /// The header's template.
    #[serde(default = "default_title")]
    pub title: String,
    /// A template for an introduction shown above the facts, as Slack `mrkdwn`.
    #[serde(default)]
    pub body: Option<String>,
    /// The redaction policy for principals, clients, query strings and user agents.
    #[serde(default)]
    pub redaction: Redaction,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}

fn default_timeout() -> HumanDuration {
    HumanDuration(10_000)
}

/// Slack's rate-limit page allows one message per second per channel, with short bursts.
fn default_min_interval() -> HumanDuration {
    HumanDuration(1_000)
}

fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}

/// Delivers findings to Slack through the Web API or an incoming webhook.
pub struct SlackReceiver {
    name: String,
    mode: Mode,
    http: HttpClient,
    title: Template,
    body: Option<Template>,
    redaction: Redaction,
    spacing: Spacing,
    /// Slack warning codes already logged, so each is logged once.
    warned: HashSet<String>,
}

enum Mode {
    WebApi(WebApi),
    Webhook { url: String },
}

struct WebApi {
    api_url: String,
    token: String,
    channel: Option<String>,
}

impl fmt::Debug for SlackReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SlackReceiver");
        out.field("name", &self.name);
        match &self.mode {
            Mode::WebApi(api) => out
                .field("api_url", &api.api_url)
                .field("token", &"<redacted>")
                .field("channel", &api.channel),
            Mode::Webhook { .. } => out.field("webhook_url", &"<redacted>"),
        };
        out.field("min_interval", &self.spacing.min_interval)
            .finish_non_exhaustive()
    }
}

impl SlackReceiver {
    /// Resolves the token or webhook URL and parses the templates.
    pub fn new(name: &str, config: &SlackConfig) -> Result<SlackReceiver, String> {
        let mode = resolve_mode(name, config)?;
        let title = Template::parse(&config.title)
            .map_err(|err| format!("slack receiver `{name}`: invalid `title`: {err}"))?;
        let body = config
            .body
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(|err| format!("slack receiver `{name}`: invalid `body`: {err}"))?;
        if config.timeout.as_millis() == 0 {
            return Err(format!(
                "slack receiver `{name}`: invalid timeout 0; use at least 1ms, such as 10s"
            ));
        }
        Ok(SlackReceiver {
            name: name.to_string(),
            mode,
            http: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
            title,
            body,
            redaction: config.redaction,
            spacing: Spacing::new(Duration::from_millis(config.min_interval.as_millis())),
            warned: HashSet::new(),
        })
    }
}

fn resolve_mode(name: &str, config: &SlackConfig) -> Result<Mode, String> {
    match (&config.token, &config.webhook_url) {
        (Some(_), Some(_)) => Err(format!(
            "slack receiver `{name}`: both `token` and `webhook_url` are set; keep one"
        )),
        (None, None) => Err(format!(
            "slack receiver `{name}`: missing `token` or `webhook_url`; set `token` to a bot \
             token for edits and threads, or `webhook_url` to an incoming webhook"
        )),
        (None, Some(webhook_url)) => {
            if config.channel.is_some() {
                return Err(format!(
                    "slack receiver `{name}`: `channel` needs `token`, because an incoming \
                     webhook posts only to the channel it was created for; remove `channel`"
                ));
            }
            let url = webhook_url
                .resolve()
                .map_err(|err| format!("slack receiver `{name}`: `webhook_url`: {err}"))?;
            // The URL is the secret, so the message never shows it.
            if !is_http_url(&url) {
                return Err(format!(
                    "slack receiver `{name}`: `webhook_url` is not an http:// or https:// URL"
                ));
            }
            Ok(Mode::Webhook { url })
        }
        (Some(token), None) => {
            let token = token
                .resolve()
                .map_err(|err| format!("slack receiver `{name}`: `token`: {err}"))?;
            if token.trim().is_empty() {
                return Err(format!("slack receiver `{name}`: `token` is empty"));
            }
            if !is_http_url(&config.api_url) {
                return Err(format!(
                    "slack receiver `{name}`: invalid `api_url` `{}`; use an http:// or \
                     https:// URL such as {DEFAULT_API_URL}",
                    config.api_url
                ));
            }
            Ok(Mode::WebApi(WebApi {
                api_url: config.api_url.trim_end_matches('/').to_string(),
                token,
                channel: config.channel.clone(),
            }))
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

impl Receiver for SlackReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    /// Checks the token with `auth.test`; an incoming webhook cannot be checked without posting.
    fn check(&mut self) -> Result<(), String> {
        if matches!(self.mode, Mode::Webhook { .. }) {
            return Ok(());
        }
        match self.call("auth.test", None, json!({})) {
            Ok(_) => Ok(()),
            Err(err @ DeliveryError::Retry { .. }) => {
                tracing::warn!(receiver = %self.name, error = %err, "could not check the token at start; delivery retries until Slack answers");
                Ok(())
            }
            Err(err) => Err(format!("slack receiver `{}`: {err}", self.name)),
        }
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        if notice.kind == ChangeKind::Resolved {
            match remote {
                None => {
                    return Ok(Effect::Skipped(
                        "no Slack message was posted for this finding, so there is nothing to \
                         resolve"
                            .to_string(),
                    ))
                }
                Some(remote) if !remote.open => {
                    return Ok(Effect::Skipped(format!(
                        "the finding is already resolved in Slack ({})",
                        remote.id
                    )))
                }
                Some(_) => {}
            }
        }
        let notice = &self.redact(notice);
        match (&self.mode, remote) {
            (Mode::Webhook { .. }, _) => self.post_change(notice, remote, rendering, progress),
            (Mode::WebApi(_), None) => self.open_message(notice, rendering, progress),
            (Mode::WebApi(_), Some(remote)) => {
                self.edit_message(notice, remote, rendering, progress)
            }
        }
    }

    /// Searches the channel's [`HISTORY_LIMIT`] newest top-level messages for the notice's
    /// metadata. A message pushed out by a hundred newer ones is not found, and the finding
    /// then gets a second message. The lookup needs the channel's id, because Slack's read
    /// methods reject names, so with a name it logs a warning and finds nothing.
    ///
    /// NOTE: this relies on `conversations.history` listing a message as soon as its post was
    /// accepted, which Slack does not document. Slack's rate-limit page also announces
    /// stricter history limits for commercially distributed apps outside its Marketplace.
    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let Mode::WebApi(api) = &self.mode else {
            return Ok(None);
        };
        let channel = self.target_channel(api, notice)?;
        if !is_channel_id(&channel) {
            tracing::warn!(
                receiver = %self.name,
                channel = %channel,
                key = %notice.key,
                "cannot search a Slack channel by name for an interrupted post; use the channel id"
            );
            return Ok(None);
        }
        let query = [
            ("channel", channel.clone()),
            ("include_all_metadata", "true".to_string()),
            ("limit", HISTORY_LIMIT.to_string()),
        ];
        let response = self.call_get("conversations.history", &query)?;
        let marker = render::marker(&notice.key);
        let found = response["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|message| is_marked(message, &notice.key, &marker));
        Ok(found
            .and_then(|message| message["ts"].as_str())
            .map(|ts| message_remote(&channel, ts, true)))
    }
}

/// Returns true when a history entry carries the receiver's metadata for `key`.
fn is_marked(message: &Value, key: &str, marker: &str) -> bool {
    let metadata = &message["metadata"];
    metadata["event_type"] == EVENT_TYPE
        && metadata["event_payload"]["key"] == key
        && metadata["event_payload"]["marker"] == marker
}

/// Returns true for a Slack conversation id such as `C024BE91L`, which the read methods need.
fn is_channel_id(channel: &str) -> bool {
    let mut chars = channel.chars();
    matches!(chars.next(), Some('C' | 'G' | 'D'))
        && channel.len() >= 3
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl SlackReceiver {
    fn redact(&self, notice: &Notice) -> Notice {
        self.redaction.apply_notice(notice)
    }

    fn target_channel(&self, api: &WebApi, notice: &Notice) -> Result<String, DeliveryError> {
        let from_catalog = notice
            .target
            .slack_channel
            .as_deref()
            .map(str::trim)
            .filter(|channel| !channel.is_empty());
        let channel = from_catalog.or(api.channel.as_deref());
        channel.map(str::to_string).ok_or_else(|| {
            let service = match notice.target.service.as_str() {
                "" => "(none)",
                service => service,
            };
            DeliveryError::reject(format!(
                "slack receiver `{}`: no channel for service `{service}`; set `slack_channel` \
                 for the service in the service catalog, or `channel` in the receiver's \
                 configuration",
                self.name
            ))
        })
    }

    /// Posts the finding's message, then records it before anything else can fail.
    fn open_message(
        &mut self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let Mode::WebApi(api) = &self.mode else {
            unreachable!("open_message runs in Web API mode only");
        };
        let channel = self.target_channel(api, notice)?;
        let status = Status::after(None, notice.kind);
        let content = self.content(notice, status.state_label(), rendering, progress);
        let mut body = json!({
            "channel": channel,
            "text": content.text,
            "metadata": metadata(notice),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(blocks) = content.blocks {
            body["blocks"] = Value::Array(blocks);
        }
        let response = self.call("chat.postMessage", Some(&channel), body)?;
        let Some(ts) = response["ts"].as_str() else {
            return Err(missing_field("chat.postMessage", "ts", &response));
        };
        let posted_in = response["channel"].as_str().unwrap_or(&channel);
        // Later replies name the channel by the id Slack returned, so space posts by it too.
        self.spacing.record(posted_in);
        let remote = message_remote(posted_in, ts, status != Status::Resolved);
        progress.created(&remote);
        Ok(Effect::Applied(remote))
    }

    /// Edits the opening message to the current state, then replies in its thread.
    fn edit_message(
        &mut self,
        notice: &Notice,
        remote: &Remote,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let (channel, ts) = locate(remote)?;
        let status = Status::after(Some(remote), notice.kind);
        let content = self.content(notice, status.state_label(), rendering, progress);
        let edit = json!({
            "channel": channel,
            "ts": ts,
            "text": content.text,
            // An empty array removes the earlier blocks, which a minimal edit must not keep.
            "blocks": content.blocks.unwrap_or_default(),
            "metadata": metadata(notice),
        });
        self.call("chat.update", None, edit)?;
        let reply = json!({
            "channel": channel,
            "thread_ts": ts,
            "text": reply_text(notice, status),
            "unfurl_links": false,
            "unfurl_media": false,
        });
        self.call("chat.postMessage", Some(&channel), reply)?;
        let mut remote = remote.clone();
        remote.open = status != Status::Resolved;
        Ok(Effect::Applied(remote))
    }

    /// Posts one incoming-webhook message for the change.
    fn post_change(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let status = Status::after(remote, notice.kind);
        let content = self.content(notice, status.change_label(), rendering, progress);
        let mut body = json!({
            "text": content.text,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(blocks) = content.blocks {
            body["blocks"] = Value::Array(blocks);
        }
        self.send_webhook(&body)?;
        let earlier = remote
            .and_then(|remote| remote.extra.get("messages"))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0);
        let posted = Remote {
            id: "webhook".to_string(),
            url: None,
            open: status != Status::Resolved,
            extra: BTreeMap::from([("messages".to_string(), (earlier + 1).to_string())]),
        };
        if remote.is_none() {
            progress.created(&posted);
        }
        Ok(Effect::Applied(posted))
    }

    /// Renders the text and, for [`Rendering::Full`], the blocks of a message.
    fn content(
        &self,
        notice: &Notice,
        label: &str,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Content {
        let title = self.render_title(notice, progress);
        match rendering {
            Rendering::Minimal => Content {
                text: minimal_text(notice, label, &title),
                blocks: None,
            },
            Rendering::Full => {
                let intro = self.render_body(notice, progress);
                Content {
                    text: fallback_text(notice, label, &title),
                    blocks: Some(blocks(notice, label, &title, intro.as_deref())),
                }
            }
        }
    }

    fn render_title(&self, notice: &Notice, progress: &mut dyn Progress) -> String {
        self.title.render(notice).unwrap_or_else(|err| {
            progress.render_failed(&format!(
                "slack receiver `{}`: title template `{}`: {err}",
                self.name,
                self.title.source()
            ));
            let finding = notice.finding();
            format!("{}: {}", finding.title, render::group_text(finding))
        })
    }

    fn render_body(&self, notice: &Notice, progress: &mut dyn Progress) -> Option<String> {
        let template = self.body.as_ref()?;
        match template.render(notice) {
            Ok(intro) => Some(intro),
            Err(err) => {
                progress.render_failed(&format!(
                    "slack receiver `{}`: body template `{}`: {err}",
                    self.name,
                    template.source()
                ));
                None
            }
        }
    }

    /// Calls a Web API method with a JSON body; `channel` is set for posts that need spacing.
    fn call(
        &mut self,
        method: &str,
        channel: Option<&str>,
        body: Value,
    ) -> Result<Value, DeliveryError> {
        let Mode::WebApi(api) = &self.mode else {
            unreachable!("Web API calls run in Web API mode only");
        };
        let bytes = serde_json::to_vec(&body).expect("a JSON value always serializes");
        let request = Request::new("POST", format!("{}/{method}", api.api_url))
            .header("authorization", format!("Bearer {}", api.token))
            .raw(JSON_CONTENT_TYPE, bytes);
        if let Some(channel) = channel {
            self.spacing.wait(channel);
        }
        let result = self.http.send(&request);
        if let Some(channel) = channel {
            self.spacing.record(channel);
        }
        let response = check_response(&request, &result?)?;
        self.log_warnings(method, &response);
        Ok(response)
    }

    fn call_get(&mut self, method: &str, query: &[(&str, String)]) -> Result<Value, DeliveryError> {
        let Mode::WebApi(api) = &self.mode else {
            unreachable!("Web API calls run in Web API mode only");
        };
        let fields: Vec<(String, String)> = query
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let url = format!("{}/{method}?{}", api.api_url, http::form_encode(&fields));
        let request =
            Request::new("GET", url).header("authorization", format!("Bearer {}", api.token));
        let reply = self.http.send(&request)?;
        let response = check_response(&request, &reply)?;
        self.log_warnings(method, &response);
        Ok(response)
    }

    /// Logs each warning code of a successful Web API response, once per code.
    fn log_warnings(&mut self, method: &str, response: &Value) {
        let Some(warning) = response["warning"].as_str() else {
            return;
        };
        if self.warned.insert(warning.to_string()) {
            tracing::warn!(
                receiver = %self.name,
                method,
                warning,
                details = %response_details(response),
                "slack accepted a request with a warning"
            );
        }
    }

    /// Posts to the incoming webhook, which responds with the plain text `ok` on success.
    fn send_webhook(&mut self, body: &Value) -> Result<(), DeliveryError> {
        let Mode::Webhook { url } = &self.mode else {
            unreachable!("webhook posts run in webhook mode only");
        };
        let bytes = serde_json::to_vec(body).expect("a JSON value always serializes");
        let request = Request::new("POST", url.clone()).raw(JSON_CONTENT_TYPE, bytes);
        self.spacing.wait(WEBHOOK_SPACING_KEY);
        let result = self.http.send(&request);
        self.spacing.record(WEBHOOK_SPACING_KEY);
        match result {
            Ok(reply) if reply.body.trim() == "ok" => Ok(()),
            Ok(reply) => Err(DeliveryError::Reject {
                reason: format!(
                    "POST to the Slack incoming webhook returned HTTP {} without `ok`",
                    reply.status
                ),
                status: Some(reply.status),
                response: http::excerpt(&reply.body),
                fallback: false,
            }),
            Err(err) => Err(webhook_error(err, url)),
        }
    }
}

/// Returns the message metadata recover looks for.
fn metadata(notice: &Notice) -> Value {
    json!({
        "event_type": EVENT_TYPE,
        "event_payload": {"key": notice.key, "marker": render::marker(&notice.key)},
    })
}

fn message_remote(channel: &str, ts: &str, open: bool) -> Remote {
    Remote {
        id: format!("{channel}/{ts}"),
        url: None,
        open,
        extra: BTreeMap::from([
            ("channel".to_string(), channel.to_string()),
            ("ts".to_string(), ts.to_string()),
        ]),
    }
}

/// Returns the channel and timestamp of a stored message, from `extra` or the `channel/ts` id.
fn locate(remote: &Remote) -> Result<(String, String), DeliveryError> {
    if let (Some(channel), Some(ts)) = (remote.extra.get("channel"), remote.extra.get("ts")) {
        return Ok((channel.clone(), ts.clone()));
    }
    match remote.id.split_once('/') {
        Some((channel, ts)) if !channel.is_empty() && !ts.is_empty() => {
            Ok((channel.to_string(), ts.to_string()))
        }
        _ => Err(DeliveryError::reject(format!(
            "the stored Slack message id `{}` is not `channel/ts`; the state store entry was \
             not written by the Slack receiver's Web API mode",
            remote.id
        ))),
    }
}

/// Keeps posts to one channel at least `min_interval` apart.
struct Spacing {
    min_interval: Duration,
    last_post: HashMap<String, Instant>,
}

impl Spacing {
    /// Above this many channels, entries older than `min_interval` are dropped.
    const PRUNE_ABOVE: usize = 1_024;

    fn new(min_interval: Duration) -> Spacing {
        Spacing {
            min_interval,
            last_post: HashMap::new(),
        }
    }

    /// Sleeps until `min_interval` has passed since the channel's last post.
    fn wait(&self, channel: &str) {
        let Some(last) = self.last_post.get(channel) else {
            return;
        };
        let next = *last + self.min_interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }

    fn record(&mut self, channel: &str) {
        let now = Instant::now();
        if self.last_post.len() > Self::PRUNE_ABOVE {
            let min_interval = self.min_interval;
            self.last_post
                .retain(|_, last| now.duration_since(*last) < min_interval);
        }
        self.last_post.insert(channel.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SlackConfig, String> {
        serde_norway::from_str(yaml).map_err(|err| err.to_string())
    }

    #[test]
    fn config_defaults_for_web_api() {
        let config = parse("token: xoxb-1\nchannel: C01OPS\n").unwrap();
        assert_eq!(config.token, Some(Secret::Literal("xoxb-1".into())));
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert_eq!(config.timeout, HumanDuration(10_000));
        assert_eq!(config.min_interval, HumanDuration(1_000));
        assert_eq!(config.title, render::DEFAULT_TITLE);
        assert_eq!(config.redaction, Redaction::default());
        let receiver = SlackReceiver::new("ops", &config).unwrap();
        assert!(
            matches!(&receiver.mode, Mode::WebApi(api) if api.channel.as_deref() == Some("C01OPS"))
        );
    }

    #[test]
    fn config_reads_webhook_from_env_and_policy() {
        let config = parse(
            "webhook_url: {env: FEEDLOOP_SLACK_HOOK}\nmin_interval: 5ms\nredaction:\n  clients: hash\n",
        )
        .unwrap();
        assert_eq!(
            config.webhook_url,
            Some(Secret::Env {
                env: "FEEDLOOP_SLACK_HOOK".into()
            })
        );
        assert_eq!(config.min_interval, HumanDuration(5));
        assert_eq!(config.redaction.clients, render::Treatment::Hash);
    }

    #[test]
    fn config_rejects_unknown_key() {
        let err = parse("token: xoxb-1\nchanel: C01OPS\n").unwrap_err();
        assert!(err.contains("unknown field `chanel`"), "{err}");
    }

    #[test]
    fn config_needs_exactly_one_mode() {
        let err = SlackReceiver::new("ops", &parse("channel: C01OPS\n").unwrap()).unwrap_err();
        assert!(
            err.starts_with("slack receiver `ops`: missing `token` or `webhook_url`"),
            "{err}"
        );
        let both = parse("token: xoxb-1\nwebhook_url: https://hooks.example/x\n").unwrap();
        let err = SlackReceiver::new("ops", &both).unwrap_err();
        assert_eq!(
            err,
            "slack receiver `ops`: both `token` and `webhook_url` are set; keep one"
        );
        let hook = parse("webhook_url: https://hooks.example/x\nchannel: C01OPS\n").unwrap();
        let err = SlackReceiver::new("ops", &hook).unwrap_err();
        assert!(err.contains("`channel` needs `token`"), "{err}");
    }

    #[test]
    fn config_errors_hide_webhook_url() {
        let config = parse("webhook_url: ftp://hooks.example/secret-path\n").unwrap();
        let err = SlackReceiver::new("ops", &config).unwrap_err();
        assert_eq!(
            err,
            "slack receiver `ops`: `webhook_url` is not an http:// or https:// URL"
        );
    }

    #[test]
    fn config_rejects_bad_template() {
        let config = parse("token: xoxb-1\ntitle: '{{ severty }}'\n").unwrap();
        let err = SlackReceiver::new("ops", &config).unwrap_err();
        assert!(
            err.starts_with("slack receiver `ops`: invalid `title`: template `{{ severty }}`"),
            "{err}"
        );
    }

    #[test]
    fn channel_ids_are_recognised() {
        for id in ["C01OPS", "G0PRIV", "D024BE91L"] {
            assert!(is_channel_id(id), "{id}");
        }
        for name in ["#ops", "ops", "C", "c01ops", "Cops-team"] {
            assert!(!is_channel_id(name), "{name}");
        }
    }
}
