//! A loopback Jenkins with CSRF crumbs bound to web sessions and parameterised jobs.
//!
//! Every request needs Basic authentication with the configured user and API token, else it
//! gets 401. The endpoints:
//!
//! - `GET /crumbIssuer/api/json` issues a crumb for a new web session and sets the session
//!   cookie (`JSESSIONID.<id>`). With the crumb issuer turned off it responds with 404, and
//!   builds need no crumb.
//! - `POST /job/<folder>/job/<name>/buildWithParameters` checks the crumb before anything else:
//!   the `Jenkins-Crumb` header must carry the crumb issued for the session named by the
//!   `Cookie` header, else the response is 403 "No valid crumb was included in the request".
//!   An unknown job gets 404. A build gets a queue item and 201 with `Location:
//!   <base>/queue/item/<n>/`. A request whose job and parameters equal those of an item still
//!   in the queue gets that item's location, as Jenkins merges such requests.
//! - `GET /queue/api/json` lists the items waiting in the queue with their parameters.
//! - `GET /job/<folder>/job/<name>/api/json` lists the job's builds, newest first.
//!
//! Tests call [`Jenkins::expire_sessions`] to make every issued crumb stale, as a session
//! timeout or a restart does, and [`Jenkins::start_builds`] to move queued items into builds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{percent_decode, query_pairs, MockServer, Recorded, Reply};

/// The name of the session cookie, as Jenkins names it: `JSESSIONID.` and an instance id.
pub const SESSION_COOKIE: &str = "JSESSIONID.5f3a9c1e";

/// The header that carries the crumb.
pub const CRUMB_FIELD: &str = "Jenkins-Crumb";

/// A build request that Jenkins accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// The queue item number, as in `/queue/item/<id>/`.
    pub id: u64,
    /// The job, as `folder/name`.
    pub job: String,
    /// The form parameters in the order sent.
    pub parameters: Vec<(String, String)>,
    /// The build number once the item left the queue.
    pub build: Option<u64>,
}

struct State {
    url: String,
    authorization: String,
    jobs: Vec<String>,
    crumb_issuer: bool,
    /// Session id to the crumb issued in it.
    sessions: BTreeMap<String, String>,
    next_session: u64,
    crumbs_issued: usize,
    items: Vec<QueueItem>,
    next_item: u64,
    next_build: BTreeMap<String, u64>,
}

/// A loopback Jenkins with one user and a fixed set of jobs.
pub struct Jenkins {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl Jenkins {
    /// Starts a Jenkins with the user `user`, whose API token is `api_token`, and the jobs
    /// named as `folder/name` in `jobs`. The crumb issuer is on.
    pub fn start(user: &str, api_token: &str, jobs: &[&str]) -> Jenkins {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{api_token}"));
        let state = Arc::new(Mutex::new(State {
            url: String::new(),
            authorization: format!("Basic {credentials}"),
            jobs: jobs.iter().map(|j| j.to_string()).collect(),
            crumb_issuer: true,
            sessions: BTreeMap::new(),
            next_session: 1,
            crumbs_issued: 0,
            items: Vec::new(),
            next_item: 1,
            next_build: BTreeMap::new(),
        }));
        let handler_state = state.clone();
        let server = MockServer::start(move |request| {
            let mut state = handler_state.lock().expect("jenkins state lock");
            handle(&mut state, request)
        });
        state.lock().expect("jenkins state lock").url = server.url().to_string();
        Jenkins { server, state }
    }

    /// Returns the base URL, to use as the receiver's `base_url`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Returns the underlying server, for recorded requests and queued faults.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Turns CSRF protection off: the crumb issuer responds with 404 and builds need no crumb.
    pub fn disable_crumb_issuer(&self) {
        self.state().crumb_issuer = false;
    }

    /// Ends every web session, so every crumb issued so far is rejected.
    pub fn expire_sessions(&self) {
        self.state().sessions.clear();
    }

    /// Returns how many crumbs were issued.
    pub fn crumbs_issued(&self) -> usize {
        self.state().crumbs_issued
    }

    /// Returns the crumb issued for a session id, if the session is still valid.
    pub fn crumb_of(&self, session: &str) -> Option<String> {
        self.state().sessions.get(session).cloned()
    }

    /// Starts a build for every queued item.
    pub fn start_builds(&self) {
        let mut state = self.state();
        let State {
            items, next_build, ..
        } = &mut *state;
        for item in items.iter_mut().filter(|item| item.build.is_none()) {
            let number = next_build.entry(item.job.clone()).or_insert(1);
            item.build = Some(*number);
            *number += 1;
        }
    }

    /// Adds a queue item as if a build request had been accepted, for recovery tests.
    pub fn insert_item(&self, job: &str, parameters: &[(&str, &str)]) -> QueueItem {
        let parameters = parameters
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        queue(&mut self.state(), job, parameters)
    }

    /// Returns every accepted build request, queued or built, oldest first.
    pub fn items(&self) -> Vec<QueueItem> {
        self.state().items.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("jenkins state lock")
    }
}

fn handle(state: &mut State, request: &Recorded) -> Reply {
    if request.header("authorization") != Some(state.authorization.as_str()) {
        return html(401, "Unauthorized", "Invalid password/token for user");
    }
    let path = request.path.trim_end_matches('/');
    match (request.method.as_str(), path) {
        ("GET", "/crumbIssuer/api/json") => issue_crumb(state),
        ("GET", "/queue/api/json") => list_queue(state),
        ("POST", _) if path.ends_with("/buildWithParameters") => {
            if state.crumb_issuer && !crumb_valid(state, request) {
                return html(
                    403,
                    "Forbidden",
                    "No valid crumb was included in the request",
                );
            }
            let job = path.trim_end_matches("/buildWithParameters");
            match job_name(state, job) {
                Some(job) => build(state, request, &job),
                None => html(404, "Not Found", "Not Found"),
            }
        }
        ("GET", _) if path.ends_with("/api/json") => {
            match job_name(state, path.trim_end_matches("/api/json")) {
                Some(job) => list_builds(state, &job),
                None => html(404, "Not Found", "Not Found"),
            }
        }
        _ => html(404, "Not Found", "Not Found"),
    }
}

/// Returns a Jetty-style HTML error page, as Jenkins sends for errors.
fn html(status: u16, title: &str, reason: &str) -> Reply {
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n\
         <title>Error {status} {reason}</title>\n</head>\n<body><h2>HTTP ERROR {status} {title}</h2>\n\
         <table>\n<tr><th>MESSAGE:</th><td>{reason}</td></tr>\n</table>\n</body>\n</html>\n"
    );
    Reply {
        status,
        headers: vec![("content-type".into(), "text/html;charset=utf-8".into())],
        body: body.into_bytes(),
    }
}

fn issue_crumb(state: &mut State) -> Reply {
    if !state.crumb_issuer {
        return html(404, "Not Found", "Not Found");
    }
    let session = format!(
        "node0{:x}q7k2m{}",
        state.next_session * 7919,
        state.next_session
    );
    let crumb = format!(
        "{:016x}{:016x}",
        state.next_session.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        state.crumbs_issued as u64 + 0x5bd1_e995
    );
    state.next_session += 1;
    state.crumbs_issued += 1;
    state.sessions.insert(session.clone(), crumb.clone());
    Reply::json(
        200,
        json!({
            "_class": "hudson.security.csrf.DefaultCrumbIssuer",
            "crumb": crumb,
            "crumbRequestField": CRUMB_FIELD,
        }),
    )
    .with_header(
        "Set-Cookie",
        &format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly"),
    )
}

/// Returns true when the request's crumb is the one issued for its session cookie.
fn crumb_valid(state: &State, request: &Recorded) -> bool {
    let session = request.header("cookie").and_then(|cookies| {
        cookies
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_string())
    });
    let crumb = request.header(&CRUMB_FIELD.to_ascii_lowercase());
    match (session, crumb) {
        (Some(session), Some(crumb)) => {
            state.sessions.get(&session).map(String::as_str) == Some(crumb)
        }
        _ => false,
    }
}

/// Returns the job named by a path such as `/job/folder/job/name`, as `folder/name`, if it
/// exists.
fn job_name(state: &State, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if !segments.len().is_multiple_of(2) || segments.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    for pair in segments.chunks(2) {
        if pair[0] != "job" {
            return None;
        }
        names.push(percent_decode(pair[1]));
    }
    let job = names.join("/");
    state.jobs.contains(&job).then_some(job)
}

fn job_url(state: &State, job: &str) -> String {
    let path: Vec<String> = job.split('/').map(|name| format!("job/{name}")).collect();
    format!("{}/{}/", state.url, path.join("/"))
}

fn build(state: &mut State, request: &Recorded, job: &str) -> Reply {
    let parameters = query_pairs(&request.text());
    let queued = state
        .items
        .iter()
        .find(|item| item.build.is_none() && item.job == job && item.parameters == parameters)
        .cloned();
    let item = queued.unwrap_or_else(|| queue(state, job, parameters));
    let mut reply = Reply::empty(201);
    reply.headers.push((
        "Location".into(),
        format!("{}/queue/item/{}/", state.url, item.id),
    ));
    reply
}

fn queue(state: &mut State, job: &str, parameters: Vec<(String, String)>) -> QueueItem {
    let item = QueueItem {
        id: state.next_item,
        job: job.to_string(),
        parameters,
        build: None,
    };
    state.next_item += 1;
    state.items.push(item.clone());
    item
}

fn parameters_action(parameters: &[(String, String)]) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|(name, value)| {
            json!({"_class": "hudson.model.StringParameterValue", "name": name, "value": value})
        })
        .collect();
    json!([
        {"_class": "hudson.model.ParametersAction", "parameters": parameters},
        {"_class": "hudson.model.CauseAction"}
    ])
}

fn list_queue(state: &State) -> Reply {
    let items: Vec<Value> = state
        .items
        .iter()
        .filter(|item| item.build.is_none())
        .map(|item| {
            json!({
                "_class": "hudson.model.Queue$WaitingItem",
                "id": item.id,
                "url": format!("queue/item/{}/", item.id),
                "task": {
                    "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                    "name": item.job.rsplit('/').next().unwrap_or_default(),
                    "url": job_url(state, &item.job),
                },
                "actions": parameters_action(&item.parameters),
            })
        })
        .collect();
    Reply::json(200, json!({"_class": "hudson.model.Queue", "items": items}))
}

fn list_builds(state: &State, job: &str) -> Reply {
    let mut builds: Vec<Value> = state
        .items
        .iter()
        .filter(|item| item.job == job)
        .filter_map(|item| {
            let number = item.build?;
            Some(json!({
                "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                "number": number,
                "url": format!("{}{number}/", job_url(state, job)),
                "queueId": item.id,
                "actions": parameters_action(&item.parameters),
            }))
        })
        .collect();
    builds.reverse();
    Reply::json(
        200,
        json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob", "builds": builds}),
    )
}
