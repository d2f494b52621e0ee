//! A loopback GitHub REST API: issues, issue comments, commit statuses, commit lookup and
//! `repository_dispatch` events, with the error responses GitHub documents.
//!
//! [`GithubMock`] keeps one [`Repository`] per `owner/name` it was started with; any other
//! repository answers 404 like a private repository the token cannot see. Requests need
//! `Authorization: Bearer <token>` (or GitHub's older `token <token>`) and otherwise get 401
//! `Bad credentials`. Writes to a repository without push access get 403, issue requests to a
//! repository with issues disabled get 410, and invalid fields get 422 `Validation Failed`
//! with GitHub's `errors` array. Every response from the mock's handler carries `x-ratelimit-*`
//! headers like GitHub's. Rate-limit responses come from queued [`Fault`]s built with
//! [`primary_rate_limit`] and [`secondary_rate_limit`].
//!
//! The mock checks the limits the receiver must respect (titles of 256 characters, bodies
//! and comments of 65,536 characters, label names of 50, status descriptions of 140, dispatch
//! event types of 100 and at most 10 `client_payload` keys), so a receiver that forgets to
//! cut a text fails here the way it would fail against GitHub.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::{percent_decode, query_pairs, Fault, MockServer, Recorded, Reply};

/// The maximum issue title length, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// The maximum issue or comment body length, in characters.
pub const MAX_BODY_CHARS: usize = 65_536;
/// The maximum label name length, in characters.
pub const MAX_LABEL_CHARS: usize = 50;
/// The maximum commit status description length, in characters.
pub const MAX_STATUS_DESCRIPTION_CHARS: usize = 140;
/// The maximum `repository_dispatch` event type length, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;
/// The maximum number of top-level keys in a dispatch's `client_payload`.
pub const MAX_CLIENT_PAYLOAD_KEYS: usize = 10;
/// The primary rate limit the mock reports in `x-ratelimit-limit`.
pub const RATE_LIMIT: u64 = 5_000;

const DOCS_URL: &str = "https://docs.github.com/rest";

/// An issue or pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The number, from 1 in each repository.
    pub number: u64,
    /// The title.
    pub title: String,
    /// The Markdown body.
    pub body: String,
    /// Label names, in the order they were set.
    pub labels: Vec<String>,
    /// Assigned logins.
    pub assignees: Vec<String>,
    /// `open` or `closed`.
    pub state: String,
    /// `completed`, `not_planned` or `reopened`, once the state changed.
    pub state_reason: Option<String>,
    /// Comment bodies, oldest first.
    pub comments: Vec<String>,
    /// True for a pull request, which the issues list endpoint returns as well.
    pub pull_request: bool,
}

/// One commit status as it was posted.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitStatus {
    /// The commit SHA.
    pub sha: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    /// The context; `default` when the request named none.
    pub context: String,
    /// The description, when given.
    pub description: Option<String>,
    /// The link, when given.
    pub target_url: Option<String>,
}

/// A received `repository_dispatch` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The event type.
    pub event_type: String,
    /// The payload; `null` when the request sent none.
    pub client_payload: Value,
}

/// The state of one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Repository {
    /// When false, issue requests get 410, as in a repository with issues turned off.
    pub has_issues: bool,
    /// When false, writes get 403, as for a token whose user can only read.
    pub push: bool,
    /// Logins that can be assigned; any other assignee gets 422.
    pub assignable: Vec<String>,
    /// Branch and tag names with their commit SHAs; every SHA listed here is a known commit.
    pub refs: BTreeMap<String, String>,
    /// Issues and pull requests, by ascending number.
    pub issues: Vec<Issue>,
    /// Commit statuses in the order they were posted.
    pub statuses: Vec<CommitStatus>,
    /// Dispatch events in the order they were received.
    pub dispatches: Vec<Dispatch>,
}

impl Default for Repository {
    fn default() -> Repository {
        Repository {
            has_issues: true,
            push: true,
            assignable: Vec::new(),
            refs: BTreeMap::new(),
            issues: Vec::new(),
            statuses: Vec::new(),
            dispatches: Vec::new(),
        }
    }
}

impl Repository {
    /// Returns the issue with a number.
    pub fn issue(&self, number: u64) -> Option<&Issue> {
        self.issues.iter().find(|issue| issue.number == number)
    }

    /// Adds an open issue or pull request with the next number and returns that number.
    pub fn add_issue(&mut self, title: &str, labels: &[&str], pull_request: bool) -> u64 {
        let number = self.issues.len() as u64 + 1;
        self.issues.push(Issue {
            number,
            title: title.to_string(),
            body: String::new(),
            labels: labels.iter().map(|label| label.to_string()).collect(),
            assignees: Vec::new(),
            state: "open".to_string(),
            state_reason: None,
            comments: Vec::new(),
            pull_request,
        });
        number
    }

    /// Returns the latest state of each context on a commit, as GitHub's combined status
    /// reports it.
    pub fn latest_statuses(&self, sha: &str) -> BTreeMap<String, String> {
        let mut latest = BTreeMap::new();
        for status in self.statuses.iter().filter(|status| status.sha == sha) {
            latest.insert(status.context.clone(), status.state.clone());
        }
        latest
    }

    fn known_commit(&self, sha: &str) -> bool {
        self.refs.values().any(|known| known == sha)
    }
}

struct State {
    token: String,
    base_url: String,
    repos: BTreeMap<String, Repository>,
    remaining: u64,
    next_comment_id: u64,
}

/// A GitHub REST API on 127.0.0.1 with in-memory repositories.
pub struct GithubMock {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl GithubMock {
    /// Starts a server that accepts `token` and serves the named `owner/name` repositories.
    pub fn start(token: &str, repos: &[&str]) -> GithubMock {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            base_url: String::new(),
            repos: repos
                .iter()
                .map(|name| (name.to_string(), Repository::default()))
                .collect(),
            remaining: RATE_LIMIT,
            next_comment_id: 1,
        }));
        let handler_state = state.clone();
        let server = MockServer::start(move |request| {
            let mut state = handler_state.lock().expect("github state lock");
            handle(&mut state, request)
        });
        state.lock().expect("github state lock").base_url = server.url().to_string();
        GithubMock { server, state }
    }

    /// Returns the base URL to use as the receiver's `api_url`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Returns every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Returns `METHOD /path` of every request so far.
    pub fn lines(&self) -> Vec<String> {
        self.server.lines()
    }

    /// Queues a fault, such as a rate-limit response.
    pub fn fail(&self, fault: Fault) {
        self.server.fail(fault);
    }

    /// Returns a copy of a repository's state.
    ///
    /// # Panics
    ///
    /// Panics when the mock was not started with that repository.
    pub fn repo(&self, name: &str) -> Repository {
        self.state.lock().expect("github state lock").repos[name].clone()
    }

    /// Changes a repository's state, such as its refs or its permissions.
    ///
    /// # Panics
    ///
    /// Panics when the mock was not started with that repository.
    pub fn update_repo(&self, name: &str, change: impl FnOnce(&mut Repository)) {
        let mut state = self.state.lock().expect("github state lock");
        let repo = state
            .repos
            .get_mut(name)
            .unwrap_or_else(|| panic!("the github mock serves no repository `{name}`"));
        change(repo);
    }
}

/// Returns GitHub's primary rate-limit response: 403 with no requests remaining until `reset`,
/// in seconds since the Unix epoch.
pub fn primary_rate_limit(reset: u64) -> Reply {
    Reply::json(
        403,
        json!({
            "message": "API rate limit exceeded for user ID 1.",
            "documentation_url": DOCS_URL,
        }),
    )
    .with_header("x-ratelimit-limit", &RATE_LIMIT.to_string())
    .with_header("x-ratelimit-remaining", "0")
    .with_header("x-ratelimit-used", &RATE_LIMIT.to_string())
    .with_header("x-ratelimit-reset", &reset.to_string())
    .with_header("x-ratelimit-resource", "core")
}

/// Returns GitHub's secondary rate-limit response: 403, with `retry-after` in seconds when set.
pub fn secondary_rate_limit(retry_after: Option<u64>) -> Reply {
    let reply = Reply::json(
        403,
        json!({
            "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            "documentation_url": DOCS_URL,
        }),
    );
    match retry_after {
        Some(seconds) => reply.with_header("retry-after", &seconds.to_string()),
        None => reply,
    }
}

/// Returns the current time in seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn handle(state: &mut State, request: &Recorded) -> Reply {
    state.remaining = state.remaining.saturating_sub(1);
    let reply = route(state, request);
    let used = RATE_LIMIT - state.remaining;
    reply
        .with_header("x-ratelimit-limit", &RATE_LIMIT.to_string())
        .with_header("x-ratelimit-remaining", &state.remaining.to_string())
        .with_header("x-ratelimit-used", &used.to_string())
        .with_header("x-ratelimit-reset", &(unix_now() + 3_600).to_string())
        .with_header("x-ratelimit-resource", "core")
}

fn route(state: &mut State, request: &Recorded) -> Reply {
    if !authorized(request, &state.token) {
        return error(401, "Bad credentials");
    }

    let segments: Vec<String> = request
        .path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let ["repos", owner, name, rest @ ..] = segments.as_slice() else {
        return error(404, "Not Found");
    };

    let full_name = format!("{owner}/{name}");
    let base_url = state.base_url.clone();
    let comment_id = state.next_comment_id;
    let Some(repo) = state.repos.get_mut(&full_name) else {
        return error(404, "Not Found");
    };
    let writes = request.method != "GET";
    if writes && !repo.push {
        return error(403, "Resource not accessible by personal access token");
    }
    if rest.first() == Some(&"issues") && !repo.has_issues {
        return error(410, "Issues are disabled for this repo");
    }

    let links = Links {
        base_url,
        full_name,
    };

    match (request.method.as_str(), rest) {
        ("GET", []) => repository_info(repo, &links),
        ("POST", ["issues"]) => create_issue(repo, &links, request),
        ("GET", ["issues"]) => list_issues(repo, &links, request),
        ("GET", ["issues", number]) => with_issue(repo, number, |issue| {
            Reply::json(200, issue_json(issue, &links))
        }),
        ("PATCH", ["issues", number]) => update_issue(repo, &links, number, request),
        ("POST", ["issues", number, "comments"]) => {
            state.next_comment_id += 1;
            create_comment(repo, &links, number, comment_id, request)
        }
        ("POST", ["statuses", sha]) => create_status(repo, sha, request),
        ("GET", ["commits", reference @ ..]) if !reference.is_empty() => {
            get_commit(repo, &reference.join("/"))
        }
        ("POST", ["dispatches"]) => dispatch(repo, request),
        _ => error(404, "Not Found"),
    }
}

/// The parts of URLs the mock hands out.
struct Links {
    base_url: String,
    full_name: String,
}

impl Links {
    fn issue_html(&self, number: u64) -> String {
        format!("{}/{}/issues/{number}", self.base_url, self.full_name)
    }

    fn issue_api(&self, number: u64) -> String {
        format!("{}/repos/{}/issues/{number}", self.base_url, self.full_name)
    }
}

fn authorized(request: &Recorded, token: &str) -> bool {
    match request.header("authorization") {
        Some(value) => value == format!("Bearer {token}") || value == format!("token {token}"),
        None => false,
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"message": message, "documentation_url": DOCS_URL}),
    )
}

/// Returns a 422 with one field error, in GitHub's `Validation Failed` form.
fn invalid(resource: &str, field: &str, code: &str, message: Option<&str>) -> Reply {
    let mut detail = json!({"resource": resource, "field": field, "code": code});
    if let Some(message) = message {
        detail["message"] = json!(message);
    }
    validation_failed(detail)
}

fn validation_failed(detail: Value) -> Reply {
    Reply::json(
        422,
        json!({
            "message": "Validation Failed",
            "errors": [detail],
            "documentation_url": DOCS_URL,
        }),
    )
}

fn too_long(resource: &str, field: &str, max: usize) -> Reply {
    let message = format!("{field} is too long (maximum is {max} characters)");
    invalid(resource, field, "custom", Some(&message))
}

fn body_json(request: &Recorded) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(error(400, "Problems parsing JSON")),
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn repository_info(repo: &Repository, links: &Links) -> Reply {
    Reply::json(
        200,
        json!({
            "full_name": links.full_name,
            "has_issues": repo.has_issues,
            "permissions": {"admin": false, "push": repo.push, "pull": true},
        }),
    )
}

fn issue_json(issue: &Issue, links: &Links) -> Value {
    let labels: Vec<Value> = issue
        .labels
        .iter()
        .map(|name| json!({"name": name}))
        .collect();
    let assignees: Vec<Value> = issue
        .assignees
        .iter()
        .map(|login| json!({"login": login}))
        .collect();
    let mut value = json!({
        "url": links.issue_api(issue.number),
        "html_url": links.issue_html(issue.number),
        "number": issue.number,
        "title": issue.title,
        "body": issue.body,
        "labels": labels,
        "assignees": assignees,
        "state": issue.state,
        "state_reason": issue.state_reason,
        "comments": issue.comments.len(),
    });
    if issue.pull_request {
        value["pull_request"] =
            json!({"url": format!("{}/pulls/{}", links.full_name, issue.number)});
    }
    value
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn create_issue(repo: &mut Repository, links: &Links, request: &Recorded) -> Reply {
    let fields = match body_json(request) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let title = fields.get("title").and_then(Value::as_str).unwrap_or("");
    let body = fields.get("body").and_then(Value::as_str).unwrap_or("");
    let labels = strings(fields.get("labels"));
    let assignees = strings(fields.get("assignees"));

    if title.is_empty() {
        return invalid("Issue", "title", "missing_field", None);
    }
    if chars(title) > MAX_TITLE_CHARS {
        return too_long("Issue", "title", MAX_TITLE_CHARS);
    }
    if chars(body) > MAX_BODY_CHARS {
        return too_long("Issue", "body", MAX_BODY_CHARS);
    }
    if labels.iter().any(|label| chars(label) > MAX_LABEL_CHARS) {
        return too_long("Label", "name", MAX_LABEL_CHARS);
    }
    if let Some(unknown) = assignees.iter().find(|a| !repo.assignable.contains(a)) {
        return validation_failed(json!({
            "resource": "Issue",
            "field": "assignees",
            "code": "invalid",
            "value": unknown,
        }));
    }

    let number = repo.issues.len() as u64 + 1;
    let issue = Issue {
        number,
        title: title.to_string(),
        body: body.to_string(),
        labels,
        assignees,
        state: "open".to_string(),
        state_reason: None,
        comments: Vec::new(),
        pull_request: false,
    };
    let reply = Reply::json(201, issue_json(&issue, links));
    repo.issues.push(issue);
    reply
}

fn list_issues(repo: &Repository, links: &Links, request: &Recorded) -> Reply {
    let query: BTreeMap<String, String> = query_pairs(&request.query).into_iter().collect();
    let state = query.get("state").map_or("open", String::as_str);
    if !matches!(state, "open" | "closed" | "all") {
        return invalid("Issue", "state", "invalid", None);
    }
    let required_labels: Vec<&str> = query
        .get("labels")
        .map(|labels| labels.split(',').filter(|l| !l.is_empty()).collect())
        .unwrap_or_default();
    let per_page: usize = query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    // GitHub sorts by creation time, newest first, and matches issues that have every label.
    let matching: Vec<Value> = repo
        .issues
        .iter()
        .rev()
        .filter(|issue| state == "all" || issue.state == state)
        .filter(|issue| {
            required_labels
                .iter()
                .all(|required| issue.labels.iter().any(|label| label == required))
        })
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|issue| issue_json(issue, links))
        .collect();
    Reply::json(200, Value::Array(matching))
}

fn with_issue(repo: &mut Repository, number: &str, act: impl FnOnce(&mut Issue) -> Reply) -> Reply {
    let number: Option<u64> = number.parse().ok();
    match repo
        .issues
        .iter_mut()
        .find(|issue| Some(issue.number) == number)
    {
        Some(issue) => act(issue),
        None => error(404, "Not Found"),
    }
}

fn update_issue(repo: &mut Repository, links: &Links, number: &str, request: &Recorded) -> Reply {
    let fields = match body_json(request) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let state = fields.get("state").and_then(Value::as_str);
    if state.is_some_and(|s| !matches!(s, "open" | "closed")) {
        return invalid("Issue", "state", "invalid", None);
    }
    let reason = fields.get("state_reason").and_then(Value::as_str);
    if reason.is_some_and(|r| !matches!(r, "completed" | "not_planned" | "reopened")) {
        return invalid("Issue", "state_reason", "invalid", None);
    }
    if let Some(title) = fields.get("title").and_then(Value::as_str) {
        if chars(title) > MAX_TITLE_CHARS {
            return too_long("Issue", "title", MAX_TITLE_CHARS);
        }
    }
    with_issue(repo, number, |issue| {
        if let Some(title) = fields.get("title").and_then(Value::as_str) {
            issue.title = title.to_string();
        }
        match state {
            Some("closed") if issue.state != "closed" => {
                issue.state = "closed".to_string();
                issue.state_reason = Some(reason.unwrap_or("completed").to_string());
            }
            Some("open") if issue.state != "open" => {
                issue.state = "open".to_string();
                issue.state_reason = Some(reason.unwrap_or("reopened").to_string());
            }
            _ => {}
        }
        Reply::json(200, issue_json(issue, links))
    })
}

fn create_comment(
    repo: &mut Repository,
    links: &Links,
    number: &str,
    id: u64,
    request: &Recorded,
) -> Reply {
    let fields = match body_json(request) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let body = fields.get("body").and_then(Value::as_str).unwrap_or("");
    if body.is_empty() {
        return invalid("IssueComment", "body", "missing_field", None);
    }
    if chars(body) > MAX_BODY_CHARS {
        return too_long("IssueComment", "body", MAX_BODY_CHARS);
    }
    with_issue(repo, number, |issue| {
        issue.comments.push(body.to_string());
        let html_url = format!("{}#issuecomment-{id}", links.issue_html(issue.number));
        Reply::json(201, json!({"id": id, "body": body, "html_url": html_url}))
    })
}

fn create_status(repo: &mut Repository, sha: &str, request: &Recorded) -> Reply {
    let fields = match body_json(request) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    if !repo.known_commit(sha) {
        return error(422, &format!("No commit found for SHA: {sha}"));
    }

    let state = fields.get("state").and_then(Value::as_str).unwrap_or("");
    if !matches!(state, "error" | "failure" | "pending" | "success") {
        return invalid(
            "Status",
            "state",
            "custom",
            Some("state is not included in the list"),
        );
    }
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let description = text("description");
    if description
        .as_deref()
        .is_some_and(|d| chars(d) > MAX_STATUS_DESCRIPTION_CHARS)
    {
        return too_long("Status", "description", MAX_STATUS_DESCRIPTION_CHARS);
    }

    let status = CommitStatus {
        sha: sha.to_string(),
        state: state.to_string(),
        context: text("context").unwrap_or_else(|| "default".to_string()),
        description,
        target_url: text("target_url"),
    };
    let reply = Reply::json(
        201,
        json!({
            "id": repo.statuses.len() + 1,
            "state": status.state,
            "context": status.context,
            "description": status.description,
            "target_url": status.target_url,
        }),
    );
    repo.statuses.push(status);
    reply
}

fn get_commit(repo: &Repository, reference: &str) -> Reply {
    let sha = match repo.refs.get(reference) {
        Some(sha) => sha.clone(),
        None if repo.known_commit(reference) => reference.to_string(),
        None => return error(422, &format!("No commit found for SHA: {reference}")),
    };
    Reply::json(200, json!({"sha": sha, "commit": {"message": "a commit"}}))
}

fn dispatch(repo: &mut Repository, request: &Recorded) -> Reply {
    let fields = match body_json(request) {
        Ok(fields) => fields,
        Err(reply) => return reply,
    };
    let event_type = fields
        .get("event_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if event_type.is_empty() {
        return invalid("Repository", "event_type", "missing_field", None);
    }
    if chars(event_type) > MAX_EVENT_TYPE_CHARS {
        return too_long("Repository", "event_type", MAX_EVENT_TYPE_CHARS);
    }
    let client_payload = fields.get("client_payload").cloned().unwrap_or(Value::Null);
    let keys = client_payload.as_object().map_or(0, Map::len);
    if keys > MAX_CLIENT_PAYLOAD_KEYS {
        return error(
            422,
            "client_payload has too many top-level keys (maximum is 10)",
        );
    }
    repo.dispatches.push(Dispatch {
        event_type: event_type.to_string(),
        client_payload,
    });
    Reply::empty(204)
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

    #[test]
    fn mock_rejects_bad_credentials() {
        let mock = GithubMock::start("right", &["acme/api"]);
        let mut answer = agent()
            .get(&format!("{}/repos/acme/api", mock.url()))
            .header("authorization", "Bearer wrong")
            .call()
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401);
        let body: Value =
            serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["message"], "Bad credentials");
    }

    #[test]
    fn mock_creates_and_lists_issues_by_label() {
        let mock = GithubMock::start("t", &["acme/api"]);
        let post = |title: &str, labels: Value| {
            agent()
                .post(&format!("{}/repos/acme/api/issues", mock.url()))
                .header("authorization", "Bearer t")
                .send(json!({"title": title, "labels": labels}).to_string())
                .unwrap()
        };
        let first = post("one", json!(["feedloop", "a"]));
        assert_eq!(first.status().as_u16(), 201);
        assert!(first.headers().contains_key("x-ratelimit-remaining"));
        post("two", json!(["feedloop"]));
        let too_long = post(&"x".repeat(MAX_TITLE_CHARS + 1), json!([]));
        assert_eq!(too_long.status().as_u16(), 422);
        let mut list = agent()
            .get(&format!(
                "{}/repos/acme/api/issues?labels=feedloop,a&state=all",
                mock.url()
            ))
            .header("authorization", "Bearer t")
            .call()
            .unwrap();
        let issues: Value =
            serde_json::from_str(&list.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(issues.as_array().unwrap().len(), 1);
        assert_eq!(issues[0]["number"], 1);
        assert_eq!(mock.repo("acme/api").issues.len(), 2);
    }
}
