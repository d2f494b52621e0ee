//! A loopback Jira that keeps issues, comments, transitions and attachments, for tests.
//!
//! [`MockJira`] serves one flavour at a time. Cloud is REST v3 under `/rest/api/3`, with rich
//! text as Atlassian Document Format and Basic auth with email and API token. Data Center is
//! REST v2 under `/rest/api/2`, with wiki markup strings and a personal access token as Bearer. It implements
//! the requests the Jira receiver sends, with the validation and error bodies Jira documents:
//!
//! - `GET issue/createmeta/{project}/issuetypes[/{id}]`: paged create metadata, items under
//!   `issueTypes`/`fields` on Cloud and `values` on Data Center; 404 for an unknown project.
//! - `POST issue`: a 400 with a per-field `errors` map for an unknown project or issue type, a
//!   missing or over-long summary, a description that is not ADF (Cloud) or not a string
//!   (Data Center) or is over 32,767 characters, a label with spaces, a field off the create
//!   screen, a missing required field, or a select value that is not one of its options.
//! - `GET issue/{key}`, `POST issue/{key}/comment`, `GET`/`POST issue/{key}/transitions`,
//!   `POST issue/{key}/attachments` (which needs `X-Atlassian-Token: no-check` and a
//!   multipart `file` part, like Jira).
//! - Search by label: `GET search/jql` on Cloud (the older `search` returns 410 Gone there)
//!   and `GET search` on Data Center, for JQL of the form `labels = "x" [ORDER BY ...]`.
//!
//! Any other credentials get a 401. ADF sizes are the length of the compact JSON, the stricter
//! of the two ways to read Jira's limit. Search here sees an issue at once, unlike Jira's
//! index, which can lag a create by seconds.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::{query_pairs, MockServer, Recorded, Reply};

/// Jira's limit for a description or comment, in characters.
pub const TEXT_MAX_CHARS: usize = 32_767;

/// Jira's limit for a summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 255;

/// The message of Jira's 400 for a description or comment over the limit.
pub const TOO_LONG: &str =
    "The entered text is too long. It exceeds the allowed limit of 32,767 characters.";

/// The Jira API flavour a mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Jira Cloud: REST v3 with ADF and Basic auth.
    Cloud,
    /// Jira Data Center: REST v2 with wiki markup and Bearer auth.
    DataCenter,
}

impl Flavour {
    /// Returns the REST path prefix, such as `/rest/api/3/`.
    pub fn prefix(self) -> &'static str {
        match self {
            Flavour::Cloud => "/rest/api/3/",
            Flavour::DataCenter => "/rest/api/2/",
        }
    }
}

/// A field of an issue type's create screen.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The field id, such as `summary` or `customfield_10010`.
    pub id: String,
    /// The display name, such as `Severity`.
    pub name: String,
    /// Whether a create must set it.
    pub required: bool,
    /// Whether Jira fills it when a create leaves it out.
    pub has_default: bool,
    /// The schema type: `string`, `number`, `option`, `array`, `user`, ...
    pub schema_type: String,
    /// The options of an `option` field. Any value passes when it is empty.
    pub allowed_values: Vec<String>,
}

impl FieldSpec {
    /// Returns a string field that a create may leave out.
    pub fn optional(id: &str, name: &str) -> FieldSpec {
        FieldSpec {
            id: id.to_string(),
            name: name.to_string(),
            required: false,
            has_default: false,
            schema_type: "string".to_string(),
            allowed_values: Vec::new(),
        }
    }

    /// Returns a string field that a create must set.
    pub fn required(id: &str, name: &str) -> FieldSpec {
        FieldSpec {
            required: true,
            ..FieldSpec::optional(id, name)
        }
    }

    /// Marks the field as filled by Jira when left out.
    pub fn with_default(mut self) -> FieldSpec {
        self.has_default = true;
        self
    }

    /// Sets the schema type, such as `number` or `user`.
    pub fn typed(mut self, schema_type: &str) -> FieldSpec {
        self.schema_type = schema_type.to_string();
        self
    }

    /// Makes the field a single select with these options.
    pub fn select(mut self, options: &[&str]) -> FieldSpec {
        self.schema_type = "option".to_string();
        self.allowed_values = options.iter().map(|o| o.to_string()).collect();
        self
    }

    fn metadata(&self) -> Value {
        let allowed: Vec<Value> = self
            .allowed_values
            .iter()
            .enumerate()
            .map(|(i, value)| json!({"id": (10_100 + i).to_string(), "value": value}))
            .collect();
        json!({
            "fieldId": self.id,
            "key": self.id,
            "name": self.name,
            "required": self.required,
            "hasDefaultValue": self.has_default,
            "schema": {"type": self.schema_type},
            "operations": ["set"],
            "allowedValues": allowed,
        })
    }
}

/// An issue type of a project with its create screen.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueTypeSpec {
    /// The id, such as `10001`.
    pub id: String,
    /// The name, such as `Task`.
    pub name: String,
    /// The fields a create may set.
    pub fields: Vec<FieldSpec>,
}

/// A project and its issue types.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSpec {
    /// The key, such as `PAY`.
    pub key: String,
    /// The issue types.
    pub issue_types: Vec<IssueTypeSpec>,
}

/// A workflow transition.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionSpec {
    /// The id sent back to run it.
    pub id: String,
    /// The name shown on the button, such as `Done`.
    pub name: String,
    /// The statuses it is offered from.
    pub from: Vec<String>,
    /// The status it leads to.
    pub to: String,
}

/// The mock's credentials, projects and workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The API flavour.
    pub flavour: Flavour,
    /// The account email of Cloud's Basic auth, unused on Data Center.
    pub email: String,
    /// The API token or personal access token.
    pub token: String,
    /// The projects.
    pub projects: Vec<ProjectSpec>,
    /// The status of a new issue.
    pub initial_status: String,
    /// Statuses in the `done` category. Every other status is in `new`.
    pub done_statuses: Vec<String>,
    /// The workflow.
    pub transitions: Vec<TransitionSpec>,
    /// The maximum create metadata items per page, whatever `maxResults` requests.
    pub page_size: usize,
}

impl Setup {
    /// Returns Jira Cloud with project `PAY` (issue types Task and Bug) and the simple workflow.
    pub fn cloud() -> Setup {
        Setup {
            flavour: Flavour::Cloud,
            email: "bot@example.com".to_string(),
            token: "cloud-token-7f3a".to_string(),
            projects: vec![Setup::project("PAY")],
            initial_status: "To Do".to_string(),
            done_statuses: vec!["Done".to_string()],
            transitions: Setup::simple_workflow(),
            page_size: 50,
        }
    }

    /// Returns Jira Data Center with the same project and workflow as [`Setup::cloud`].
    pub fn data_center() -> Setup {
        Setup {
            flavour: Flavour::DataCenter,
            email: String::new(),
            token: "dc-pat-91be".to_string(),
            ..Setup::cloud()
        }
    }

    /// Returns a project with issue types Task (`10001`) and Bug (`10002`) on the standard screen.
    pub fn project(key: &str) -> ProjectSpec {
        let issue_type = |id: &str, name: &str| IssueTypeSpec {
            id: id.to_string(),
            name: name.to_string(),
            fields: Setup::standard_fields(),
        };
        ProjectSpec {
            key: key.to_string(),
            issue_types: vec![issue_type("10001", "Task"), issue_type("10002", "Bug")],
        }
    }

    /// Returns the system fields of a create screen, where `reporter` is required but has a default.
    pub fn standard_fields() -> Vec<FieldSpec> {
        vec![
            FieldSpec::required("project", "Project").typed("project"),
            FieldSpec::required("issuetype", "Issue Type").typed("issuetype"),
            FieldSpec::required("summary", "Summary"),
            FieldSpec::optional("description", "Description"),
            FieldSpec::required("reporter", "Reporter")
                .typed("user")
                .with_default(),
            FieldSpec::optional("labels", "Labels").typed("array"),
            FieldSpec::optional("priority", "Priority")
                .typed("priority")
                .with_default(),
        ]
    }

    /// Returns the workflow To Do, In Progress, Done: `Start Progress` (21), `Done` (31) and
    /// `Reopen` (41).
    pub fn simple_workflow() -> Vec<TransitionSpec> {
        let transition = |id: &str, name: &str, from: &[&str], to: &str| TransitionSpec {
            id: id.to_string(),
            name: name.to_string(),
            from: from.iter().map(|s| s.to_string()).collect(),
            to: to.to_string(),
        };
        vec![
            transition("21", "Start Progress", &["To Do"], "In Progress"),
            transition("31", "Done", &["To Do", "In Progress"], "Done"),
            transition("41", "Reopen", &["Done"], "To Do"),
        ]
    }

    /// Adds a field to every issue type of every project.
    pub fn with_field(mut self, field: FieldSpec) -> Setup {
        for project in &mut self.projects {
            for issue_type in &mut project.issue_types {
                issue_type.fields.push(field.clone());
            }
        }
        self
    }

    fn expected_authorization(&self) -> String {
        match self.flavour {
            Flavour::Cloud => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", self.email, self.token))
            ),
            Flavour::DataCenter => format!("Bearer {}", self.token),
        }
    }

    fn category(&self, status: &str) -> &'static str {
        if self.done_statuses.iter().any(|s| s == status) {
            "done"
        } else {
            "new"
        }
    }

    fn status_json(&self, status: &str) -> Value {
        json!({"name": status, "statusCategory": {"key": self.category(status)}})
    }
}

/// An uploaded attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The attachment id.
    pub id: String,
    /// The file name from the multipart part.
    pub file_name: String,
    /// The part's content type.
    pub content_type: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// An issue as the mock stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The numeric id, as text.
    pub id: String,
    /// The key, such as `PAY-1`.
    pub key: String,
    /// The project key.
    pub project: String,
    /// The issue type name.
    pub issue_type: String,
    /// The current status.
    pub status: String,
    /// The summary.
    pub summary: String,
    /// The description as sent: an ADF document (Cloud) or a string (Data Center).
    pub description: Value,
    /// The labels.
    pub labels: Vec<String>,
    /// Every field of the create request, as sent.
    pub fields: Map<String, Value>,
    /// Comment bodies in order: ADF documents or strings.
    pub comments: Vec<Value>,
    /// Names of the transitions applied, in order.
    pub transitions: Vec<String>,
    /// The resolution name a transition set, if any.
    pub resolution: Option<String>,
    /// Uploaded attachments.
    pub attachments: Vec<Attachment>,
}

struct State {
    setup: Setup,
    url: String,
    issues: Vec<Issue>,
    next_id: u64,
}

/// A stateful loopback Jira.
pub struct MockJira {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

impl MockJira {
    /// Starts a mock Jira on 127.0.0.1.
    pub fn start(setup: Setup) -> MockJira {
        let state = Arc::new(Mutex::new(State {
            setup,
            url: String::new(),
            issues: Vec::new(),
            next_id: 10_000,
        }));
        let handler_state = state.clone();
        let server = MockServer::start(move |request| {
            let mut state = handler_state.lock().expect("jira state lock");
            handle(&mut state, request)
        });
        state.lock().expect("jira state lock").url = server.url().to_string();
        MockJira { server, state }
    }

    /// Returns the base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Returns the underlying server, for recorded requests and queued faults.
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// Returns every issue in creation order.
    pub fn issues(&self) -> Vec<Issue> {
        self.state.lock().expect("jira state lock").issues.clone()
    }

    /// Returns one issue by key.
    ///
    /// # Panics
    ///
    /// Panics when no issue has the key, which fails the test that expected it.
    pub fn issue(&self, key: &str) -> Issue {
        self.issues()
            .into_iter()
            .find(|issue| issue.key == key)
            .unwrap_or_else(|| panic!("mock jira has no issue {key}"))
    }

    /// Sets an issue's status directly, as a person moving it in Jira would.
    pub fn set_status(&self, key: &str, status: &str) {
        let mut state = self.state.lock().expect("jira state lock");
        if let Some(issue) = state.issues.iter_mut().find(|issue| issue.key == key) {
            issue.status = status.to_string();
        }
    }

    /// Returns the `Authorization` header value the mock accepts.
    pub fn authorization(&self) -> String {
        self.state
            .lock()
            .expect("jira state lock")
            .setup
            .expected_authorization()
    }
}

/// Returns Jira's error body: general messages and per-field errors.
pub fn error_body(messages: &[&str], errors: &[(&str, &str)]) -> Value {
    let errors: Map<String, Value> = errors
        .iter()
        .map(|(field, message)| (field.to_string(), json!(message)))
        .collect();
    json!({"errorMessages": messages, "errors": errors})
}

fn error(status: u16, messages: &[&str], errors: &[(&str, &str)]) -> Reply {
    Reply::json(status, error_body(messages, errors))
}

fn field_errors(status: u16, errors: &Map<String, Value>) -> Reply {
    Reply::json(
        status,
        json!({"errorMessages": [], "errors": Value::Object(errors.clone())}),
    )
}

fn handle(state: &mut State, request: &Recorded) -> Reply {
    if request.header("authorization") != Some(state.setup.expected_authorization().as_str()) {
        return Reply::text(401, "Client must be authenticated to access this resource.")
            .with_header("www-authenticate", "Basic realm=\"protected-area\"");
    }
    let Some(rest) = request.path.strip_prefix(state.setup.flavour.prefix()) else {
        return error(404, &[&format!("null for uri: {}", request.path)], &[]);
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (request.method.as_str(), parts.as_slice()) {
        ("GET", ["issue", "createmeta", project, "issuetypes"]) => {
            issue_types(state, project, request)
        }
        ("GET", ["issue", "createmeta", project, "issuetypes", id]) => {
            issue_type_fields(state, project, id, request)
        }
        ("POST", ["issue"]) => create(state, request),
        ("GET", ["issue", key]) => get_issue(state, key),
        ("POST", ["issue", key, "comment"]) => comment(state, key, request),
        ("GET", ["issue", key, "transitions"]) => transitions(state, key),
        ("POST", ["issue", key, "transitions"]) => transition(state, key, request),
        ("POST", ["issue", key, "attachments"]) => attach(state, key, request),
        ("GET", ["search", "jql"]) if state.setup.flavour == Flavour::Cloud => {
            search(state, request)
        }
        ("GET", ["search"]) if state.setup.flavour == Flavour::DataCenter => search(state, request),
        (_, ["search"]) => error(
            410,
            &["The requested API has been removed. Migrate to the /rest/api/3/search/jql API."],
            &[],
        ),
        _ => error(404, &[&format!("null for uri: {}", request.path)], &[]),
    }
}

/// Returns the `startAt` and page size of a request, capped at the mock's page size.
fn page_bounds(state: &State, request: &Recorded) -> (usize, usize) {
    let pairs = query_pairs(&request.query);
    let number = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let size = number("maxResults")
        .unwrap_or(50)
        .min(state.setup.page_size)
        .max(1);
    (number("startAt").unwrap_or(0), size)
}

fn page(state: &State, request: &Recorded, cloud_key: &str, items: Vec<Value>) -> Reply {
    let (start, size) = page_bounds(state, request);
    let total = items.len();
    let slice: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let is_last = start + slice.len() >= total;
    match state.setup.flavour {
        Flavour::Cloud => Reply::json(
            200,
            json!({cloud_key: slice, "startAt": start, "maxResults": size, "total": total}),
        ),
        Flavour::DataCenter => Reply::json(
            200,
            json!({"values": slice, "startAt": start, "maxResults": size, "total": total, "isLast": is_last}),
        ),
    }
}

fn find_project<'a>(state: &'a State, key: &str) -> Option<&'a ProjectSpec> {
    state.setup.projects.iter().find(|p| p.key == key)
}

fn no_project(key: &str) -> Reply {
    error(
        404,
        &[&format!("No project could be found with key '{key}'.")],
        &[],
    )
}

fn issue_types(state: &State, project: &str, request: &Recorded) -> Reply {
    let Some(spec) = find_project(state, project) else {
        return no_project(project);
    };
    let items = spec
        .issue_types
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "subtask": false}))
        .collect();
    page(state, request, "issueTypes", items)
}

fn issue_type_fields(state: &State, project: &str, id: &str, request: &Recorded) -> Reply {
    let Some(spec) = find_project(state, project) else {
        return no_project(project);
    };
    let Some(issue_type) = spec.issue_types.iter().find(|t| t.id == id) else {
        return error(
            404,
            &[&format!(
                "Issue type with id '{id}' was not found in project {project}."
            )],
            &[],
        );
    };
    let items = issue_type.fields.iter().map(FieldSpec::metadata).collect();
    page(state, request, "fields", items)
}

fn create(state: &mut State, request: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error(400, &["Unexpected character in the request body."], &[]);
    };
    let Some(fields) = body.get("fields").and_then(Value::as_object) else {
        return error(400, &["The request body has no `fields` object."], &[]);
    };
    let project_key = fields["project"]["key"].as_str().unwrap_or("").to_string();
    let Some(project) = find_project(state, &project_key) else {
        return error(400, &[], &[("project", "valid project is required")]);
    };
    let type_name = fields["issuetype"]["name"].as_str().unwrap_or("");
    let Some(issue_type) = project.issue_types.iter().find(|t| t.name == type_name) else {
        return error(400, &[], &[("issuetype", "valid issue type is required")]);
    };
    let errors = validate_fields(state.setup.flavour, issue_type, fields);
    if !errors.is_empty() {
        return field_errors(400, &errors);
    }

    let issue_type = issue_type.name.clone();
    state.next_id += 1;
    let number = state
        .issues
        .iter()
        .filter(|i| i.project == project_key)
        .count()
        + 1;
    let issue = Issue {
        id: state.next_id.to_string(),
        key: format!("{project_key}-{number}"),
        project: project_key,
        issue_type,
        status: state.setup.initial_status.clone(),
        summary: fields["summary"].as_str().unwrap_or("").to_string(),
        description: fields.get("description").cloned().unwrap_or(Value::Null),
        labels: string_list(fields.get("labels")),
        fields: fields.clone(),
        comments: Vec::new(),
        transitions: Vec::new(),
        resolution: None,
        attachments: Vec::new(),
    };
    let created = json!({
        "id": issue.id,
        "key": issue.key,
        "self": format!("{}{}issue/{}", state.url, state.setup.flavour.prefix(), issue.id),
    });
    state.issues.push(issue);
    Reply::json(201, created)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Validates a create's fields the way Jira does and returns Jira's per-field errors.
fn validate_fields(
    flavour: Flavour,
    issue_type: &IssueTypeSpec,
    fields: &Map<String, Value>,
) -> Map<String, Value> {
    let mut errors = Map::new();
    let mut fail = |field: &str, message: String| {
        errors.insert(field.to_string(), Value::String(message));
    };
    match fields.get("summary").and_then(Value::as_str) {
        None | Some("") => fail("summary", "You must specify a summary of the issue.".into()),
        Some(summary) if summary.chars().count() > SUMMARY_MAX_CHARS => fail(
            "summary",
            "Summary must be less than 255 characters.".into(),
        ),
        Some(summary) if summary.contains(['\r', '\n']) => fail(
            "summary",
            "The summary is invalid because it contains newline characters.".into(),
        ),
        Some(_) => {}
    }
    if let Some(description) = fields.get("description") {
        if let Err(message) = check_text(flavour, description) {
            fail("description", message);
        }
    }
    if let Some(message) = check_labels(fields.get("labels")) {
        fail("labels", message);
    }
    for (id, value) in fields {
        match issue_type.fields.iter().find(|f| &f.id == id) {
            None => fail(
                id,
                format!(
                    "Field '{id}' cannot be set. It is not on the appropriate screen, or unknown."
                ),
            ),
            Some(spec) => {
                if let Some(message) = check_value(spec, value) {
                    fail(id, message);
                }
            }
        }
    }
    for spec in &issue_type.fields {
        if spec.required && !spec.has_default && !fields.contains_key(&spec.id) {
            fail(&spec.id, format!("{} is required.", spec.name));
        }
    }
    errors
}

fn check_labels(labels: Option<&Value>) -> Option<String> {
    let labels = labels?;
    let Some(items) = labels.as_array() else {
        return Some("Operation value must be an array of strings.".into());
    };
    for item in items {
        let Some(label) = item.as_str() else {
            return Some("Operation value must be an array of strings.".into());
        };
        if label.contains(char::is_whitespace) {
            return Some(format!(
                "The label '{label}' contains spaces which is invalid."
            ));
        }
        if label.chars().count() > SUMMARY_MAX_CHARS {
            return Some(format!(
                "The label '{label}' exceeds the maximum length of 255 characters."
            ));
        }
    }
    None
}

/// Checks a custom or system field value against its schema type.
fn check_value(spec: &FieldSpec, value: &Value) -> Option<String> {
    match spec.schema_type.as_str() {
        "option" => {
            let chosen = value.get("value").or_else(|| value.get("id"));
            match chosen.and_then(Value::as_str) {
                None => Some(format!("Specify a valid 'id' or 'value' for {}", spec.name)),
                Some(option)
                    if !spec.allowed_values.is_empty()
                        && !spec.allowed_values.iter().any(|a| a == option) =>
                {
                    Some(format!("Option value '{option}' is not valid"))
                }
                Some(_) => None,
            }
        }
        "number" if !value.is_number() => Some(format!(
            "Operation value must be a number for {}",
            spec.name
        )),
        // Summary, description and labels have their own checks.
        "string" if matches!(spec.id.as_str(), "summary" | "description") => None,
        "string" if !value.is_string() => Some("Operation value must be a string".into()),
        _ => None,
    }
}

/// Checks a description or comment body: its format for the flavour and Jira's length limit.
fn check_text(flavour: Flavour, text: &Value) -> Result<(), String> {
    let size = match (flavour, text) {
        (Flavour::Cloud, Value::Object(_)) => {
            if text["type"] != "doc" || text["version"] != 1 {
                return Err("Operation value must be an Atlassian Document (see the Atlassian Document Format)".into());
            }
            validate_adf(text).map_err(|_| "INVALID_INPUT".to_string())?;
            text.to_string().chars().count()
        }
        (Flavour::Cloud, _) => {
            return Err(
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                    .into(),
            )
        }
        (Flavour::DataCenter, Value::String(markup)) => markup.chars().count(),
        (Flavour::DataCenter, _) => return Err("Operation value must be a string".into()),
    };
    if size > TEXT_MAX_CHARS {
        return Err(TOO_LONG.into());
    }
    Ok(())
}

/// Checks an ADF node tree: known node types, allowed children, non-empty text nodes.
pub fn validate_adf(node: &Value) -> Result<(), String> {
    let kind = node["type"]
        .as_str()
        .ok_or_else(|| format!("node without a type: {node}"))?;
    if kind == "text" {
        return check_text_node(node);
    }
    let allowed: &[&str] = match kind {
        "doc" | "tableCell" | "tableHeader" => &BLOCKS,
        "listItem" => &["paragraph", "bulletList", "orderedList", "codeBlock"],
        "paragraph" | "heading" => &["text", "hardBreak"],
        "codeBlock" => &["text"],
        "bulletList" | "orderedList" => &["listItem"],
        "table" => &["tableRow"],
        "tableRow" => &["tableHeader", "tableCell"],
        "hardBreak" | "rule" => &[],
        other => return Err(format!("unknown node type `{other}`")),
    };
    if kind == "heading" {
        let level = node["attrs"]["level"].as_u64().unwrap_or(0);
        if !(1..=6).contains(&level) {
            return Err("heading without a level from 1 to 6".into());
        }
    }
    let children = match node.get("content") {
        None => &Vec::new(),
        Some(Value::Array(children)) => children,
        Some(_) => return Err(format!("`{kind}` content is not an array")),
    };
    let must_have_children = matches!(
        kind,
        "bulletList"
            | "orderedList"
            | "listItem"
            | "table"
            | "tableRow"
            | "tableCell"
            | "tableHeader"
    );
    if must_have_children && children.is_empty() {
        return Err(format!("`{kind}` needs at least one child"));
    }
    for child in children {
        let child_kind = child["type"].as_str().unwrap_or("");
        if !allowed.contains(&child_kind) {
            return Err(format!("`{child_kind}` is not allowed in `{kind}`"));
        }
        if kind == "codeBlock" && child.get("marks").is_some() {
            return Err("text in a code block cannot have marks".into());
        }
        validate_adf(child)?;
    }
    Ok(())
}

const BLOCKS: [&str; 8] = [
    "paragraph",
    "heading",
    "bulletList",
    "orderedList",
    "codeBlock",
    "table",
    "rule",
    "blockquote",
];

fn check_text_node(node: &Value) -> Result<(), String> {
    match node["text"].as_str() {
        Some(text) if !text.is_empty() => {}
        _ => return Err("a text node needs non-empty `text`".into()),
    }
    let Some(marks) = node.get("marks") else {
        return Ok(());
    };
    let marks = marks.as_array().ok_or("marks is not an array")?;
    for mark in marks {
        let kind = mark["type"].as_str().unwrap_or("");
        if !["strong", "em", "code", "link", "strike", "underline"].contains(&kind) {
            return Err(format!("unknown mark `{kind}`"));
        }
    }
    Ok(())
}

fn issue_index(state: &State, key: &str) -> Option<usize> {
    state.issues.iter().position(|issue| issue.key == *key)
}

fn no_issue() -> Reply {
    error(
        404,
        &["Issue does not exist or you do not have permission to see it."],
        &[],
    )
}

fn get_issue(state: &State, key: &str) -> Reply {
    let Some(index) = issue_index(state, key) else {
        return no_issue();
    };
    let issue = &state.issues[index];
    Reply::json(
        200,
        json!({
            "id": issue.id,
            "key": issue.key,
            "fields": {
                "status": state.setup.status_json(&issue.status),
                "summary": issue.summary,
                "labels": issue.labels,
            },
        }),
    )
}

fn comment(state: &mut State, key: &str, request: &Recorded) -> Reply {
    let Some(index) = issue_index(state, key) else {
        return no_issue();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return error(400, &["Unexpected character in the request body."], &[]);
    };
    let Some(text) = body.get("body") else {
        return error(400, &[], &[("comment", "Comment body can not be empty!")]);
    };
    if let Err(message) = check_text(state.setup.flavour, text) {
        return error(400, &[], &[("comment", &message)]);
    }
    let issue = &mut state.issues[index];
    issue.comments.push(text.clone());
    let id = 10_000 + issue.comments.len();
    Reply::json(201, json!({"id": id.to_string(), "body": text}))
}

fn offered<'a>(state: &'a State, status: &str) -> Vec<&'a TransitionSpec> {
    state
        .setup
        .transitions
        .iter()
        .filter(|t| t.from.iter().any(|from| from == status))
        .collect()
}

fn transitions(state: &State, key: &str) -> Reply {
    let Some(index) = issue_index(state, key) else {
        return no_issue();
    };
    let items: Vec<Value> = offered(state, &state.issues[index].status)
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "to": state.setup.status_json(&t.to)}))
        .collect();
    Reply::json(200, json!({"expand": "transitions", "transitions": items}))
}

fn transition(state: &mut State, key: &str, request: &Recorded) -> Reply {
    let Some(index) = issue_index(state, key) else {
        return no_issue();
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let id = body["transition"]["id"].as_str().unwrap_or("").to_string();
    let chosen = offered(state, &state.issues[index].status)
        .into_iter()
        .find(|t| t.id == id)
        .cloned();
    let Some(chosen) = chosen else {
        return error(
            400,
            &[&format!(
                "Transition id '{id}' is not valid for this issue."
            )],
            &[],
        );
    };
    let issue = &mut state.issues[index];
    issue.status = chosen.to;
    issue.transitions.push(chosen.name);
    if let Some(resolution) = body["fields"]["resolution"]["name"].as_str() {
        issue.resolution = Some(resolution.to_string());
    }
    Reply::empty(204)
}

fn attach(state: &mut State, key: &str, request: &Recorded) -> Reply {
    if request.header("x-atlassian-token") != Some("no-check") {
        return Reply::text(403, "XSRF check failed");
    }
    let Some(index) = issue_index(state, key) else {
        return no_issue();
    };
    let content_type = request.header("content-type").unwrap_or("");
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .map(str::to_string)
    else {
        return error(
            415,
            &["The request is not multipart/form-data with a boundary."],
            &[],
        );
    };
    let Some(part) = multipart_parts(&request.body, &boundary)
        .into_iter()
        .find(|part| part.name == "file")
    else {
        return error(
            400,
            &["The request has no multipart part named 'file'."],
            &[],
        );
    };
    state.next_id += 1;
    let attachment = Attachment {
        id: state.next_id.to_string(),
        file_name: part.file_name,
        content_type: part.content_type,
        bytes: part.data,
    };
    let uploaded = json!([{
        "id": attachment.id,
        "filename": attachment.file_name,
        "size": attachment.bytes.len(),
        "mimeType": attachment.content_type,
        "content": format!("{}/secure/attachment/{}/{}", state.url, attachment.id, attachment.file_name),
    }]);
    state.issues[index].attachments.push(attachment);
    Reply::json(200, uploaded)
}

struct Part {
    name: String,
    file_name: String,
    content_type: String,
    data: Vec<u8>,
}

/// Splits a multipart/form-data body into its parts.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(header_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let headers = String::from_utf8_lossy(&rest[..header_end]).into_owned();
        let data_start = header_end + 4;
        let closing = format!("\r\n{delimiter}");
        let Some(data_len) = find(&rest[data_start..], closing.as_bytes()) else {
            break;
        };
        parts.push(Part {
            name: header_param(&headers, "name").unwrap_or_default(),
            file_name: header_param(&headers, "filename").unwrap_or_default(),
            content_type: headers
                .lines()
                .find_map(|line| line.strip_prefix("Content-Type: "))
                .unwrap_or("")
                .to_string(),
            data: rest[data_start..data_start + data_len].to_vec(),
        });
        rest = &rest[data_start + data_len + 2..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Reads `name="value"` from a Content-Disposition header.
fn header_param(headers: &str, name: &str) -> Option<String> {
    let pattern = format!(" {name}=\"");
    let start = headers.find(&pattern)? + pattern.len();
    let end = headers[start..].find('"')?;
    Some(headers[start..start + end].to_string())
}

fn search(state: &State, request: &Recorded) -> Reply {
    let pairs = query_pairs(&request.query);
    let jql = pairs
        .iter()
        .find(|(name, _)| name == "jql")
        .map(|(_, value)| value.as_str())
        .unwrap_or("");
    let Some(label) = label_query(jql) else {
        return error(
            400,
            &[&format!(
                "Error in the JQL Query: the mock supports only labels = \"x\", got: {jql}"
            )],
            &[],
        );
    };
    let issues: Vec<Value> = state
        .issues
        .iter()
        .filter(|issue| issue.labels.contains(&label))
        .map(|issue| {
            json!({
                "id": issue.id,
                "key": issue.key,
                "fields": {"status": state.setup.status_json(&issue.status)},
            })
        })
        .collect();
    match state.setup.flavour {
        Flavour::Cloud => Reply::json(200, json!({"issues": issues, "isLast": true})),
        Flavour::DataCenter => Reply::json(
            200,
            json!({"startAt": 0, "maxResults": 50, "total": issues.len(), "issues": issues}),
        ),
    }
}

/// Returns the value of `labels = "value"`, optionally followed by `ORDER BY ...`.
pub fn label_query(jql: &str) -> Option<String> {
    let rest = jql.trim().strip_prefix("labels")?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let mut chars = rest.strip_prefix('"')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '\\' => value.push(chars.next()?),
            '"' => break,
            c => value.push(c),
        }
    }
    let tail = chars.as_str().trim();
    let ordered = tail
        .get(..8)
        .is_some_and(|start| start.eq_ignore_ascii_case("order by"));
    (tail.is_empty() || ordered).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends a request with the mock's credentials unless `authorization` is given. Returns the
    /// status and the body as JSON, or as a JSON string when the body is not JSON.
    fn send(
        jira: &MockJira,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let authorization = jira.authorization();
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", jira.url()));
        if !headers.iter().any(|(name, _)| *name == "authorization") {
            builder = builder.header("authorization", authorization.as_str());
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut response = agent.run(builder.body(body).unwrap()).unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn create(jira: &MockJira, fields: Value) -> (u16, Value) {
        let body = json!({"fields": fields}).to_string().into_bytes();
        let path = format!("{}issue", jira.state.lock().unwrap().setup.flavour.prefix());
        send(
            jira,
            "POST",
            &path,
            &[("content-type", "application/json")],
            body,
        )
    }

    fn adf(text: &str) -> Value {
        json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": text}]}
        ]})
    }

    #[test]
    fn mock_rejects_other_credentials() {
        let jira = MockJira::start(Setup::cloud());
        let (status, body) = send(
            &jira,
            "GET",
            "/rest/api/3/issue/PAY-1",
            &[("authorization", "Bearer cloud-token-7f3a")],
            Vec::new(),
        );
        assert_eq!(status, 401);
        assert_eq!(
            body,
            json!("Client must be authenticated to access this resource.")
        );
        let (status, _) = send(&jira, "GET", "/rest/api/3/issue/PAY-1", &[], Vec::new());
        assert_eq!(status, 404);
    }

    #[test]
    fn mock_create_validates_like_jira() {
        let jira = MockJira::start(
            Setup::cloud()
                .with_field(FieldSpec::required("customfield_10010", "Severity").select(&["High"])),
        );
        let base = json!({
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": "s".repeat(256),
            "description": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": ""}]}
            ]},
            "labels": ["two words"],
            "customfield_99999": "x",
        });
        let (status, body) = create(&jira, base);
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"errorMessages": [], "errors": {
                "summary": "Summary must be less than 255 characters.",
                "description": "INVALID_INPUT",
                "labels": "The label 'two words' contains spaces which is invalid.",
                "customfield_99999": "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, or unknown.",
                "customfield_10010": "Severity is required.",
            }})
        );
        let long = json!({
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": "fits",
            "description": adf(&"x".repeat(TEXT_MAX_CHARS)),
            "customfield_10010": {"value": "Low"},
        });
        let (status, body) = create(&jira, long);
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["description"], TOO_LONG);
        assert_eq!(
            body["errors"]["customfield_10010"],
            "Option value 'Low' is not valid"
        );
        let good = json!({
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": "fits",
            "description": adf("ok"),
            "customfield_10010": {"value": "High"},
        });
        let (status, body) = create(&jira, good);
        assert_eq!(status, 201);
        assert_eq!(body["key"], "PAY-1");
        assert_eq!(jira.issue("PAY-1").status, "To Do");
    }

    #[test]
    fn mock_data_center_wants_wiki_strings() {
        let jira = MockJira::start(Setup::data_center());
        let fields = json!({
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": "fits",
            "description": adf("not wiki"),
        });
        let (status, body) = create(&jira, fields);
        assert_eq!(status, 400);
        assert_eq!(
            body["errors"]["description"],
            "Operation value must be a string"
        );
        let fields = json!({
            "project": {"key": "PAY"},
            "issuetype": {"name": "Task"},
            "summary": "fits",
            "description": "x".repeat(TEXT_MAX_CHARS + 1),
        });
        let (status, body) = create(&jira, fields);
        assert_eq!(status, 400);
        assert_eq!(body["errors"]["description"], TOO_LONG);
    }

    #[test]
    fn mock_attachment_needs_xsrf_header() {
        let jira = MockJira::start(Setup::cloud());
        let fields =
            json!({"project": {"key": "PAY"}, "issuetype": {"name": "Task"}, "summary": "s"});
        assert_eq!(create(&jira, fields).0, 201);
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--b1--\r\n".to_vec();
        let content_type = ("content-type", "multipart/form-data; boundary=b1");
        let path = "/rest/api/3/issue/PAY-1/attachments";
        let (status, response) = send(&jira, "POST", path, &[content_type], body.clone());
        assert_eq!(status, 403);
        assert_eq!(response, json!("XSRF check failed"));
        let headers = [content_type, ("x-atlassian-token", "no-check")];
        let (status, response) = send(&jira, "POST", path, &headers, body);
        assert_eq!(status, 200);
        assert_eq!(response[0]["filename"], "a.png");
        assert_eq!(jira.issue("PAY-1").attachments[0].bytes, b"PNG");
    }

    #[test]
    fn mock_cloud_old_search_is_gone() {
        let jira = MockJira::start(Setup::cloud());
        let (status, _) = send(&jira, "GET", "/rest/api/3/search?jql=x", &[], Vec::new());
        assert_eq!(status, 410);
    }

    #[test]
    fn label_query_parses_quoted_values() {
        assert_eq!(
            label_query("labels = \"feedloop-0123\" ORDER BY created ASC"),
            Some("feedloop-0123".to_string())
        );
        assert_eq!(label_query("labels=\"a\\\"b\""), Some("a\"b".to_string()));
        assert_eq!(label_query("project = PAY"), None);
        assert_eq!(label_query("labels = \"a\" AND project = PAY"), None);
    }

    #[test]
    fn adf_validation_rejects_bad_trees() {
        let good = json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "hi", "marks": [{"type": "strong"}]}]}
        ]});
        assert_eq!(validate_adf(&good), Ok(()));
        let empty_text = json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": ""}]}
        ]});
        assert!(validate_adf(&empty_text).is_err());
        let text_in_doc =
            json!({"type": "doc", "version": 1, "content": [{"type": "text", "text": "x"}]});
        assert!(validate_adf(&text_in_doc).is_err());
        let empty_list = json!({"type": "doc", "version": 1, "content": [{"type": "bulletList", "content": []}]});
        assert!(validate_adf(&empty_list).is_err());
    }

    #[test]
    fn multipart_parts_are_split() {
        let body = b"--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--b1--\r\n";
        let parts = multipart_parts(body, "b1");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].file_name, "a.png");
        assert_eq!(parts[0].content_type, "image/png");
        assert_eq!(parts[0].data, b"\x89PNG");
    }
}
