//! A stateful Slack on loopback: the Web API methods feedloop calls and an incoming webhook.
//!
//! [`SlackMock`] keeps channels and messages. `chat.postMessage` creates a message (or a
//! thread reply when `thread_ts` is set) with a timestamp such as `1700000000.000100`,
//! `chat.update` edits one, `conversations.history` lists a channel's top-level messages
//! newest first, with their metadata only when `include_all_metadata=true`, and `auth.test`
//! checks the token. Like Slack, a failed Web API call returns HTTP 200 with `"ok": false`
//! and an error code (`invalid_auth`, `channel_not_found`, `msg_too_long`, `invalid_blocks`,
//! ...). Only a rate limit is an HTTP 429 with `Retry-After`.
//!
//! The incoming webhook at [`WEBHOOK_PATH`] posts into [`OPS_CHANNEL`] and responds in plain
//! text: `ok`, or an error code with 400, 404, 410 or 429, as Slack's webhooks do. Slack's
//! 403 `action_prohibited` comes only from a queued [`Fault`](crate::Fault).
//!
//! The mock checks Block Kit's size limits (header text, section text, fields, block count)
//! so a receiver that ignores them fails here as it would against Slack. It accepts only the
//! block types feedloop sends and does not check scopes or pagination cursors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{query_pairs, MockServer, Recorded, Reply};

/// The bot token the mock accepts.
pub const TOKEN: &str = "xoxb-feedloop-test-token";

/// A channel the app is a member of.
pub const OPS_CHANNEL: &str = "C01OPS";

/// [`OPS_CHANNEL`]'s name.
pub const OPS_NAME: &str = "ops";

/// A channel the app was never invited to: posting there returns `not_in_channel`.
pub const PRIVATE_CHANNEL: &str = "C02PRIVATE";

/// The incoming webhook's path; it posts into [`OPS_CHANNEL`]. The last part is its secret.
pub const WEBHOOK_PATH: &str = "/services/T0FEED/B0LOOP/hook5ecret0value";

/// Slack's maximum characters in a message's `text`.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// Slack's maximum blocks in one message.
pub const MAX_BLOCKS: usize = 50;

/// The first timestamp's seconds; each message adds 100 to the fraction.
const TS_SECONDS: u64 = 1_700_000_000;

/// A Slack channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The id, such as `C01OPS`.
    pub id: String,
    /// The name without `#`.
    pub name: String,
    /// True when archived, so posting returns `is_archived`.
    pub archived: bool,
    /// True when the app was invited; otherwise posting returns `not_in_channel`.
    pub member: bool,
}

/// A message or a thread reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel id.
    pub channel: String,
    /// The timestamp that identifies the message in its channel.
    pub ts: String,
    /// The parent's timestamp for a thread reply.
    pub thread_ts: Option<String>,
    /// The `text` field.
    pub text: String,
    /// The `blocks` array, absent when the message has none.
    pub blocks: Option<Value>,
    /// The `metadata` object, when one was posted.
    pub metadata: Option<Value>,
    /// Thread replies, oldest first.
    pub replies: Vec<Message>,
    /// How many times `chat.update` edited the message.
    pub edits: u32,
    /// True when posted through the incoming webhook; the Web API cannot edit those.
    pub via_webhook: bool,
}

impl Message {
    /// Returns the text of the block at `index`'s `text` object, such as a header's title.
    pub fn block_text(&self, index: usize) -> Option<String> {
        self.blocks.as_ref()?[index]["text"]["text"]
            .as_str()
            .map(str::to_string)
    }
}

/// Everything the mock stores.
#[derive(Debug, Default)]
pub struct SlackState {
    /// Known channels.
    pub channels: Vec<Channel>,
    /// Top-level messages of every channel, oldest first.
    pub messages: Vec<Message>,
    /// When set, a second post to one channel within this interval returns 429 `ratelimited`.
    pub min_post_interval: Option<Duration>,
    last_post: HashMap<String, Instant>,
    posted: u64,
}

impl SlackState {
    fn channel(&self, reference: &str) -> Option<&Channel> {
        let name = reference.strip_prefix('#').unwrap_or(reference);
        self.channels
            .iter()
            .find(|c| c.id == reference || c.name == name)
    }

    fn channel_by_id(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    fn next_ts(&mut self) -> String {
        self.posted += 1;
        format!("{TS_SECONDS}.{:06}", self.posted * 100)
    }

    fn find_mut(&mut self, channel: &str, ts: &str) -> Option<&mut Message> {
        let parent = self.messages.iter_mut().find(|m| {
            m.channel == channel && (m.ts == ts || m.replies.iter().any(|r| r.ts == ts))
        })?;
        if parent.ts == ts {
            return Some(parent);
        }
        parent.replies.iter_mut().find(|r| r.ts == ts)
    }

    /// Returns a 429 reply when the channel had a post within `min_post_interval`.
    fn throttle(&mut self, channel: &str) -> Option<Reply> {
        let interval = self.min_post_interval?;
        let now = Instant::now();
        let recent = self
            .last_post
            .get(channel)
            .is_some_and(|last| now.duration_since(*last) < interval);
        if recent {
            return Some(
                Reply::json(429, json!({"ok": false, "error": "ratelimited"}))
                    .with_header("retry-after", "1"),
            );
        }
        self.last_post.insert(channel.to_string(), now);
        None
    }
}

/// A loopback Slack Web API and incoming webhook.
pub struct SlackMock {
    server: MockServer,
    state: Arc<Mutex<SlackState>>,
}

impl SlackMock {
    /// Starts a Slack with [`OPS_CHANNEL`], [`PRIVATE_CHANNEL`] and the token [`TOKEN`].
    pub fn start() -> SlackMock {
        let state = Arc::new(Mutex::new(SlackState::default()));
        {
            let mut state = state.lock().expect("slack state lock");
            state.channels.push(channel(OPS_CHANNEL, OPS_NAME, true));
            state
                .channels
                .push(channel(PRIVATE_CHANNEL, "private-team", false));
        }
        let handler_state = state.clone();
        let server = MockServer::start(move |request| {
            let mut state = handler_state.lock().expect("slack state lock");
            handle(&mut state, request)
        });
        SlackMock { server, state }
    }

    /// Returns the Web API base URL, the value for a receiver's `api_url`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Returns the incoming webhook's full URL.
    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.server.url())
    }

    /// Returns the underlying server, for its recorded requests and queued faults.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Returns every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Locks and returns the state, for assertions and set-up.
    pub fn state(&self) -> MutexGuard<'_, SlackState> {
        self.state.lock().expect("slack state lock")
    }

    /// Returns a channel's top-level messages, oldest first.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        self.state()
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// Returns one top-level message.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.messages(channel).into_iter().find(|m| m.ts == ts)
    }

    /// Posts a message as someone else, such as a person chatting in the channel; returns its ts.
    pub fn add_message(&self, channel: &str, text: &str, metadata: Option<Value>) -> String {
        let mut state = self.state();
        let ts = state.next_ts();
        state.messages.push(Message {
            channel: channel.to_string(),
            ts: ts.clone(),
            thread_ts: None,
            text: text.to_string(),
            blocks: None,
            metadata,
            replies: Vec::new(),
            edits: 0,
            via_webhook: false,
        });
        ts
    }

    /// Adds a channel the app is a member of.
    pub fn add_channel(&self, id: &str, name: &str) {
        self.state().channels.push(channel(id, name, true));
    }

    /// Archives a channel, so posts return `is_archived` (or 410 through the webhook).
    pub fn archive(&self, id: &str) {
        let mut state = self.state();
        if let Some(channel) = state.channels.iter_mut().find(|c| c.id == id) {
            channel.archived = true;
        }
    }

    /// Makes a second post to one channel within `interval` return 429 `ratelimited`.
    pub fn set_min_post_interval(&self, interval: Option<Duration>) {
        self.state().min_post_interval = interval;
    }
}

fn channel(id: &str, name: &str, member: bool) -> Channel {
    Channel {
        id: id.to_string(),
        name: name.to_string(),
        archived: false,
        member,
    }
}

fn handle(state: &mut SlackState, request: &Recorded) -> Reply {
    if request.path.starts_with("/services/") {
        return webhook(state, request);
    }
    let method = request.path.trim_start_matches('/');
    let known = [
        "chat.postMessage",
        "chat.update",
        "conversations.history",
        "auth.test",
    ];
    if !known.contains(&method) {
        return Reply::json(404, json!({"ok": false, "error": "unknown_method"}));
    }
    if let Err(code) = authorize(request) {
        return api_error(code);
    }
    if method == "conversations.history" {
        return history(state, &query_pairs(&request.query));
    }
    if method == "auth.test" {
        return ok(json!({"user_id": "U0FEEDBOT", "team_id": "T0FEED", "bot_id": "B0FEED"}));
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => return api_error("invalid_json"),
    };
    let response = if method == "chat.postMessage" {
        post_message(state, &body)
    } else {
        update_message(state, &body)
    };
    with_charset_warning(response, request)
}

fn authorize(request: &Recorded) -> Result<(), &'static str> {
    match request.header("authorization") {
        None => Err("not_authed"),
        Some(value) if value == format!("Bearer {TOKEN}") => Ok(()),
        Some(_) => Err("invalid_auth"),
    }
}

fn ok(fields: Value) -> Reply {
    let mut response = json!({"ok": true});
    if let (Some(response), Value::Object(fields)) = (response.as_object_mut(), fields) {
        response.extend(fields);
    }
    Reply::json(200, response)
}

fn api_error(code: &str) -> Reply {
    Reply::json(200, json!({"ok": false, "error": code}))
}

/// Adds Slack's `missing_charset` warning to a successful JSON post without a charset.
fn with_charset_warning(reply: Reply, request: &Recorded) -> Reply {
    let content_type = request.header("content-type").unwrap_or("");
    if reply.status != 200 || content_type.contains("charset") {
        return reply;
    }
    let Ok(mut response) = serde_json::from_slice::<Value>(&reply.body) else {
        return reply;
    };
    if response["ok"] != json!(true) {
        return reply;
    }
    response["warning"] = json!("missing_charset");
    response["response_metadata"] = json!({"warnings": ["missing_charset"]});
    Reply::json(200, response)
}

fn post_message(state: &mut SlackState, body: &Value) -> Reply {
    let reference = body["channel"].as_str().unwrap_or("");
    let Some(channel) = state.channel(reference).cloned() else {
        return api_error("channel_not_found");
    };
    if channel.archived {
        return api_error("is_archived");
    }
    if !channel.member {
        return api_error("not_in_channel");
    }
    if let Err(reply) = check_content(body) {
        return reply;
    }

    let thread_ts = body["thread_ts"].as_str().map(str::to_string);
    if let Some(parent) = &thread_ts {
        let exists = state
            .messages
            .iter()
            .any(|m| m.channel == channel.id && &m.ts == parent);
        if !exists {
            return api_error("thread_not_found");
        }
    }
    if let Some(reply) = state.throttle(&channel.id) {
        return reply;
    }

    let message = new_message(state, &channel.id, body, thread_ts.clone(), false);
    let ts = message.ts.clone();
    match &thread_ts {
        Some(parent) => {
            let parent = state.find_mut(&channel.id, parent).expect("checked above");
            parent.replies.push(message);
        }
        None => state.messages.push(message),
    }
    ok(json!({
        "channel": channel.id,
        "ts": ts,
        "message": {"type": "message", "text": body["text"], "ts": ts, "thread_ts": thread_ts},
    }))
}

fn new_message(
    state: &mut SlackState,
    channel: &str,
    body: &Value,
    thread_ts: Option<String>,
    via_webhook: bool,
) -> Message {
    Message {
        channel: channel.to_string(),
        ts: state.next_ts(),
        thread_ts,
        text: body["text"].as_str().unwrap_or("").to_string(),
        blocks: non_empty_blocks(body),
        metadata: body.get("metadata").cloned(),
        replies: Vec::new(),
        edits: 0,
        via_webhook,
    }
}

fn non_empty_blocks(body: &Value) -> Option<Value> {
    body.get("blocks")
        .filter(|b| b.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
}

fn update_message(state: &mut SlackState, body: &Value) -> Reply {
    let channel = body["channel"].as_str().unwrap_or("");
    if state.channel_by_id(channel).is_none() {
        return api_error("channel_not_found");
    }
    if let Err(reply) = check_content(body) {
        return reply;
    }
    let ts = body["ts"].as_str().unwrap_or("");
    let Some(message) = state.find_mut(channel, ts) else {
        return api_error("message_not_found");
    };
    if message.via_webhook {
        return api_error("cant_update_message");
    }
    if let Some(text) = body["text"].as_str() {
        message.text = text.to_string();
    }
    // Slack keeps the earlier blocks when `blocks` is absent and removes them on an empty array.
    if body.get("blocks").is_some() {
        message.blocks = non_empty_blocks(body);
    }
    if let Some(metadata) = body.get("metadata") {
        message.metadata = Some(metadata.clone());
    }
    message.edits += 1;
    ok(json!({"channel": channel, "ts": ts, "text": message.text}))
}

/// Checks text length and Block Kit limits, responding as Slack does when one is broken.
fn check_content(body: &Value) -> Result<(), Reply> {
    let text = body["text"].as_str().unwrap_or("");
    let blocks = body.get("blocks");
    let has_blocks = blocks
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    if text.is_empty() && !has_blocks {
        return Err(api_error("no_text"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(api_error("msg_too_long"));
    }
    let Some(blocks) = blocks else {
        return Ok(());
    };
    check_blocks(blocks).map_err(|problem| {
        Reply::json(
            200,
            json!({
                "ok": false,
                "error": "invalid_blocks",
                "errors": [problem],
                "response_metadata": {"messages": [format!("[ERROR] {problem}")]},
            }),
        )
    })
}

/// Returns the first broken Block Kit limit, described with a JSON pointer.
pub fn check_blocks(blocks: &Value) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else {
        return Err("blocks must be an array [json-pointer:/blocks]".to_string());
    };
    if blocks.len() > MAX_BLOCKS {
        return Err(format!(
            "no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"
        ));
    }
    for (index, block) in blocks.iter().enumerate() {
        check_block(block)
            .map_err(|problem| format!("{problem} [json-pointer:/blocks/{index}]"))?;
    }
    Ok(())
}

fn check_block(block: &Value) -> Result<(), String> {
    match block["type"].as_str() {
        Some("header") => {
            if block["text"]["type"] != json!("plain_text") {
                return Err("a header's text must be plain_text".to_string());
            }
            check_length(&block["text"], 150, "header text")
        }
        Some("section") => {
            let fields = block["fields"].as_array();
            if block.get("text").is_none() && fields.is_none() {
                return Err("a section needs text or fields".to_string());
            }
            if block.get("text").is_some() {
                check_length(&block["text"], 3_000, "section text")?;
            }
            let fields = fields.map(Vec::as_slice).unwrap_or_default();
            if fields.len() > 10 {
                return Err("a section has at most 10 fields".to_string());
            }
            fields
                .iter()
                .try_for_each(|field| check_length(field, 2_000, "field text"))
        }
        Some("context") => {
            let elements = block["elements"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if elements.is_empty() || elements.len() > 10 {
                return Err("a context block has 1 to 10 elements".to_string());
            }
            elements
                .iter()
                .try_for_each(|element| check_length(element, 3_000, "context text"))
        }
        Some("divider") => Ok(()),
        other => Err(format!("unsupported block type {other:?}")),
    }
}

fn check_length(text: &Value, max: usize, what: &str) -> Result<(), String> {
    let Some(content) = text["text"].as_str() else {
        return Err(format!("{what} is missing"));
    };
    let length = content.chars().count();
    if length == 0 || length > max {
        return Err(format!(
            "{what} must be 1 to {max} characters, got {length}"
        ));
    }
    Ok(())
}

fn history(state: &SlackState, query: &[(String, String)]) -> Reply {
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(channel) = param("channel").and_then(|id| state.channel_by_id(id)) else {
        return api_error("channel_not_found");
    };
    if !channel.member {
        return api_error("not_in_channel");
    }

    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 999);
    let with_metadata = matches!(param("include_all_metadata"), Some("true" | "1"));
    let ts_value = |ts: &str| ts.parse::<f64>().unwrap_or(0.0);
    let oldest = param("oldest").map(ts_value).unwrap_or(0.0);

    let mut matching: Vec<&Message> = state
        .messages
        .iter()
        .filter(|m| m.channel == channel.id && ts_value(&m.ts) >= oldest)
        .collect();
    matching.reverse();
    let has_more = matching.len() > limit;
    let messages: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|m| history_entry(m, with_metadata))
        .collect();
    ok(json!({"messages": messages, "has_more": has_more}))
}

fn history_entry(message: &Message, with_metadata: bool) -> Value {
    let mut entry = json!({"type": "message", "ts": message.ts, "text": message.text});
    if let Some(blocks) = &message.blocks {
        entry["blocks"] = blocks.clone();
    }
    if !message.replies.is_empty() {
        entry["thread_ts"] = json!(message.ts);
        entry["reply_count"] = json!(message.replies.len());
    }
    if let (true, Some(metadata)) = (with_metadata, &message.metadata) {
        entry["metadata"] = metadata.clone();
    }
    entry
}

fn webhook(state: &mut SlackState, request: &Recorded) -> Reply {
    if request.method != "POST" || request.path != WEBHOOK_PATH {
        return Reply::text(404, "no_service");
    }
    let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(&request.body) else {
        return Reply::text(400, "invalid_payload");
    };
    if let Err(reply) = check_content(&body) {
        let response: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let code = response["error"].as_str().unwrap_or("invalid_payload");
        return Reply::text(400, code);
    }
    let archived = state
        .channel_by_id(OPS_CHANNEL)
        .is_none_or(|channel| channel.archived);
    if archived {
        return Reply::text(410, "channel_is_archived");
    }
    if state.throttle(OPS_CHANNEL).is_some() {
        return Reply::text(429, "rate_limited").with_header("retry-after", "1");
    }
    let message = new_message(state, OPS_CHANNEL, &body, None, true);
    state.messages.push(message);
    Reply::text(200, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn call(mock: &SlackMock, method: &str, token: &str, body: Value) -> Value {
        let mut response = agent()
            .post(&format!("{}/{method}", mock.url()))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/json; charset=utf-8")
            .send(body.to_string())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{method}");
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    #[test]
    fn post_update_and_history() {
        let mock = SlackMock::start();
        let posted = call(
            &mock,
            "chat.postMessage",
            TOKEN,
            json!({"channel": "#ops", "text": "hi", "metadata": {"event_type": "x", "event_payload": {"key": "k"}}}),
        );
        assert_eq!(posted["ok"], json!(true));
        assert_eq!(posted["channel"], json!(OPS_CHANNEL));
        assert_eq!(posted["ts"], json!("1700000000.000100"));
        let reply = call(
            &mock,
            "chat.postMessage",
            TOKEN,
            json!({"channel": OPS_CHANNEL, "text": "more", "thread_ts": "1700000000.000100"}),
        );
        assert_eq!(reply["ts"], json!("1700000000.000200"));
        let updated = call(
            &mock,
            "chat.update",
            TOKEN,
            json!({"channel": OPS_CHANNEL, "ts": "1700000000.000100", "text": "edited"}),
        );
        assert_eq!(updated["ok"], json!(true));
        let message = mock.message(OPS_CHANNEL, "1700000000.000100").unwrap();
        assert_eq!(message.text, "edited");
        assert_eq!(message.edits, 1);
        assert_eq!(message.replies.len(), 1);
        assert_eq!(message.replies[0].text, "more");

        let mut response = agent()
            .get(&format!(
                "{}/conversations.history?channel={OPS_CHANNEL}&include_all_metadata=true",
                mock.url()
            ))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        let history: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(history["messages"].as_array().unwrap().len(), 1);
        assert_eq!(
            history["messages"][0]["metadata"]["event_payload"]["key"],
            json!("k")
        );
        assert_eq!(history["messages"][0]["reply_count"], json!(1));
    }

    #[test]
    fn api_errors_are_ok_false() {
        let mock = SlackMock::start();
        let cases = [
            (
                "wrong-token",
                json!({"channel": OPS_CHANNEL, "text": "x"}),
                "invalid_auth",
            ),
            (
                TOKEN,
                json!({"channel": "C0NONE", "text": "x"}),
                "channel_not_found",
            ),
            (
                TOKEN,
                json!({"channel": PRIVATE_CHANNEL, "text": "x"}),
                "not_in_channel",
            ),
            (
                TOKEN,
                json!({"channel": OPS_CHANNEL, "text": "x".repeat(MAX_TEXT_CHARS + 1)}),
                "msg_too_long",
            ),
            (
                TOKEN,
                json!({"channel": OPS_CHANNEL, "text": "x", "blocks": vec![json!({"type": "divider"}); 51]}),
                "invalid_blocks",
            ),
        ];
        for (token, body, code) in cases {
            let response = call(&mock, "chat.postMessage", token, body);
            assert_eq!(response["ok"], json!(false), "{code}");
            assert_eq!(response["error"], json!(code));
        }
        assert!(mock.messages(OPS_CHANNEL).is_empty());
    }

    #[test]
    fn block_limits() {
        let header = |n: usize| json!([{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(n)}}]);
        assert_eq!(check_blocks(&header(150)), Ok(()));
        assert!(check_blocks(&header(151)).is_err());
        let field = json!({"type": "mrkdwn", "text": "f"});
        let fields = |n: usize| json!([{"type": "section", "fields": vec![field.clone(); n]}]);
        assert_eq!(check_blocks(&fields(10)), Ok(()));
        assert!(check_blocks(&fields(11)).is_err());
        let section =
            json!([{"type": "section", "text": {"type": "mrkdwn", "text": "s".repeat(3_001)}}]);
        assert_eq!(
            check_blocks(&section),
            Err(
                "section text must be 1 to 3000 characters, got 3001 [json-pointer:/blocks/0]"
                    .to_string()
            )
        );
    }

    #[test]
    fn webhook_responds_in_plain_text() {
        let mock = SlackMock::start();
        let send = |path: &str, body: &str| {
            let mut response = agent()
                .post(&format!("{}{path}", mock.url()))
                .header("content-type", "application/json")
                .send(body.to_string())
                .unwrap();
            (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap(),
            )
        };
        assert_eq!(
            send(WEBHOOK_PATH, r#"{"text":"hi"}"#),
            (200, "ok".to_string())
        );
        assert_eq!(
            send(WEBHOOK_PATH, "not json"),
            (400, "invalid_payload".to_string())
        );
        assert_eq!(
            send("/services/T0/B0/wrong", r#"{"text":"hi"}"#),
            (404, "no_service".to_string())
        );
        mock.archive(OPS_CHANNEL);
        assert_eq!(
            send(WEBHOOK_PATH, r#"{"text":"hi"}"#),
            (410, "channel_is_archived".to_string())
        );
        let messages = mock.messages(OPS_CHANNEL);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].via_webhook);
    }
}
