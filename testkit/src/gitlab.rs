//! A loopback GitLab that runs pipeline triggers and lists the pipelines they started.
//!
//! It serves three endpoints of the REST API v4 for one project, reachable by its numeric id
//! or its URL-encoded path:
//!
//! - `POST /api/v4/projects/:id/trigger/pipeline` with form fields `token`, `ref` and
//!   `variables[NAME]`. It responds with 201 and the pipeline. A request without `token` or
//!   `ref` gets 400 `{"error": "token is missing"}` or `{"error": "ref is missing"}`. Another
//!   project gets 404 `{"message": "404 Project Not Found"}`, and an unknown trigger token 404
//!   `{"message": "404 Not Found"}`. A token whose owner may no longer run pipelines gets 403.
//!   An unknown ref, or variables that the project does not allow, get 400 with
//!   `{"message": {"base": [...]}}`.
//! - `GET /api/v4/projects/:id/pipelines` with the `PRIVATE-TOKEN` header and the `source`,
//!   `ref`, `sort` and `per_page` parameters, newest first by default.
//! - `GET /api/v4/projects/:id/pipelines/:pipeline_id/variables`.
//!
//! Reads without the right `PRIVATE-TOKEN` get 401 `{"message": "401 Unauthorized"}`.
//! Any other request gets 404. Tests queue rate limits and outages on [`GitLab::server`].

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::{query_pairs, MockServer, Recorded, Reply};

/// A pipeline that a trigger started.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The pipeline id, unique on the instance.
    pub id: u64,
    /// The branch or tag it runs on.
    pub git_ref: String,
    /// The pipeline source, always `trigger` here.
    pub source: String,
    /// The variables passed as `variables[NAME]`, in the order sent.
    pub variables: Vec<(String, String)>,
    /// The link to the pipeline page.
    pub web_url: String,
}

struct State {
    url: String,
    project_id: u64,
    project_path: String,
    trigger_token: String,
    trigger_allowed: bool,
    api_token: Option<String>,
    refs: Vec<String>,
    variables_allowed: bool,
    pipelines: Vec<Pipeline>,
    next_id: u64,
}

/// A loopback GitLab with one project, one trigger token and the ref `main`.
pub struct GitLab {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl GitLab {
    /// Starts a GitLab whose project has the id `project_id` and the path `project_path`, such
    /// as `group/app`, and accepts the trigger token `trigger_token`.
    pub fn start(project_id: u64, project_path: &str, trigger_token: &str) -> GitLab {
        let state = Arc::new(Mutex::new(State {
            url: String::new(),
            project_id,
            project_path: project_path.to_string(),
            trigger_token: trigger_token.to_string(),
            trigger_allowed: true,
            api_token: None,
            refs: vec!["main".to_string()],
            variables_allowed: true,
            pipelines: Vec::new(),
            next_id: 1000,
        }));
        let handler_state = state.clone();
        let server = MockServer::start(move |request| {
            let mut state = handler_state.lock().expect("gitlab state lock");
            handle(&mut state, request)
        });
        state.lock().expect("gitlab state lock").url = server.url().to_string();
        GitLab { server, state }
    }

    /// Returns the base URL, to use as the receiver's `base_url`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Returns the underlying server, for recorded requests and queued faults.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Accepts `token` as a `PRIVATE-TOKEN` for the read endpoints.
    pub fn allow_api_token(&self, token: &str) {
        self.state().api_token = Some(token.to_string());
    }

    /// Adds a branch or tag that pipelines can run on.
    pub fn add_ref(&self, name: &str) {
        self.state().refs.push(name.to_string());
    }

    /// Makes the project reject triggers that set variables, as a project does whose minimum
    /// role to set pipeline variables is "no one".
    pub fn restrict_variables(&self) {
        self.state().variables_allowed = false;
    }

    /// Makes the trigger token's owner lose the right to run pipelines.
    pub fn revoke_trigger_owner(&self) {
        self.state().trigger_allowed = false;
    }

    /// Adds a pipeline as if a trigger had started it, for recovery tests.
    pub fn insert_pipeline(&self, git_ref: &str, variables: &[(&str, &str)]) -> Pipeline {
        let mut state = self.state();
        let variables = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        create_pipeline(&mut state, git_ref, variables)
    }

    /// Returns every pipeline started so far, oldest first.
    pub fn pipelines(&self) -> Vec<Pipeline> {
        self.state().pipelines.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("gitlab state lock")
    }
}

fn handle(state: &mut State, request: &Recorded) -> Reply {
    let Some(rest) = request.path.strip_prefix("/api/v4/projects/") else {
        return Reply::json(404, json!({"error": "404 Not Found"}));
    };
    let (project, route) = rest.split_once('/').unwrap_or((rest, ""));
    let known = project == state.project_id.to_string()
        || crate::percent_decode(project) == state.project_path;
    if !known {
        return Reply::json(404, json!({"message": "404 Project Not Found"}));
    }
    let segments: Vec<&str> = route.split('/').collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["trigger", "pipeline"]) => trigger(state, request),
        ("GET", ["pipelines"]) => authorized(state, request, list_pipelines),
        ("GET", ["pipelines", id, "variables"]) => {
            let id = id.to_string();
            authorized(state, request, move |state, _| {
                pipeline_variables(state, &id)
            })
        }
        _ => Reply::json(404, json!({"error": "404 Not Found"})),
    }
}

fn trigger(state: &mut State, request: &Recorded) -> Reply {
    let form = query_pairs(&request.text());
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let Some(token) = field("token") else {
        return Reply::json(400, json!({"error": "token is missing"}));
    };
    let Some(git_ref) = field("ref") else {
        return Reply::json(400, json!({"error": "ref is missing"}));
    };
    if token != state.trigger_token {
        return Reply::json(404, json!({"message": "404 Not Found"}));
    }
    if !state.trigger_allowed {
        return Reply::json(403, json!({"message": "403 Forbidden"}));
    }
    let variables: Vec<(String, String)> = form
        .iter()
        .filter_map(|(name, value)| {
            let name = name.strip_prefix("variables[")?.strip_suffix(']')?;
            Some((name.to_string(), value.clone()))
        })
        .collect();
    if !variables.is_empty() && !state.variables_allowed {
        let base = ["Insufficient permissions to set pipeline variables"];
        return Reply::json(400, json!({"message": {"base": base}}));
    }
    if !state.refs.contains(&git_ref) {
        return Reply::json(400, json!({"message": {"base": ["Reference not found"]}}));
    }
    let pipeline = create_pipeline(state, &git_ref, variables);
    Reply::json(201, pipeline_json(state, &pipeline))
}

fn create_pipeline(state: &mut State, git_ref: &str, variables: Vec<(String, String)>) -> Pipeline {
    let id = state.next_id;
    state.next_id += 1;
    let pipeline = Pipeline {
        id,
        git_ref: git_ref.to_string(),
        source: "trigger".to_string(),
        variables,
        web_url: format!("{}/{}/-/pipelines/{id}", state.url, state.project_path),
    };
    state.pipelines.push(pipeline.clone());
    pipeline
}

fn pipeline_json(state: &State, pipeline: &Pipeline) -> Value {
    json!({
        "id": pipeline.id,
        "iid": pipeline.id - 999,
        "project_id": state.project_id,
        "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
        "ref": pipeline.git_ref,
        "status": "created",
        "source": pipeline.source,
        "web_url": pipeline.web_url,
        "created_at": "2026-12-04T10:06:00.000Z",
        "updated_at": "2026-12-04T10:06:00.000Z",
    })
}

fn authorized(
    state: &mut State,
    request: &Recorded,
    read: impl FnOnce(&mut State, &Recorded) -> Reply,
) -> Reply {
    let token = request.header("private-token");
    if token.is_none() || token != state.api_token.as_deref() {
        return Reply::json(401, json!({"message": "401 Unauthorized"}));
    }
    read(state, request)
}

fn list_pipelines(state: &mut State, request: &Recorded) -> Reply {
    let query = query_pairs(&request.query);
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let per_page: usize = param("per_page").and_then(|p| p.parse().ok()).unwrap_or(20);
    let mut pipelines: Vec<&Pipeline> = state
        .pipelines
        .iter()
        .filter(|p| param("source").is_none_or(|s| s == p.source))
        .filter(|p| param("ref").is_none_or(|r| r == p.git_ref))
        .collect();
    if param("sort") != Some("asc") {
        pipelines.reverse();
    }
    let page: Vec<Value> = pipelines
        .into_iter()
        .take(per_page)
        .map(|p| pipeline_json(state, p))
        .collect();
    Reply::json(200, Value::Array(page))
}

fn pipeline_variables(state: &mut State, id: &str) -> Reply {
    let pipeline = state.pipelines.iter().find(|p| p.id.to_string() == id);
    let Some(pipeline) = pipeline else {
        return Reply::json(404, json!({"message": "404 Not found"}));
    };
    let variables: Vec<Value> = pipeline
        .variables
        .iter()
        .map(|(key, value)| json!({"variable_type": "env_var", "key": key, "value": value, "raw": false}))
        .collect();
    Reply::json(200, Value::Array(variables))
}
