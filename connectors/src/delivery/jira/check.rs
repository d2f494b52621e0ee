//! The Jira receiver's start-up check, through Jira's create metadata API.
//!
//! For each project the receiver may create issues in (its `project` and the catalog projects
//! given through [`JiraReceiver::with_projects`]), the check lists the project's issue types
//! (`GET issue/createmeta/{project}/issuetypes`), finds the configured one by name, and lists
//! its fields (`GET issue/createmeta/{project}/issuetypes/{id}`). A required field without a
//! default that feedloop does not fill and `fields` does not map would make every create fail
//! with a 400, so the check fails instead and shows the configuration line to add. Both lists
//! are paged. Cloud names the items `issueTypes` and `fields`, Data Center `values`. These
//! endpoints exist in Jira Cloud and in Jira Data Center 8.4 and later. An older server
//! returns 404 for them, and the check reports Jira's message.

use serde_json::Value;

use super::{path_part, JiraReceiver, FILLED_FIELDS};
use crate::delivery::http::Request;
use crate::delivery::DeliveryError;

/// Items requested per page of create metadata.
const PAGE_SIZE: usize = 50;

/// The maximum pages read per list, so a server that never reports the end cannot loop forever.
const MAX_PAGES: usize = 100;

/// Checks every project the receiver may create issues in. The error lists every problem, one
/// line per project.
pub(super) fn run(receiver: &JiraReceiver) -> Result<(), String> {
    let mut projects: Vec<String> = receiver.project.iter().cloned().collect();
    for project in &receiver.extra_projects {
        let project = project.trim();
        if !project.is_empty() && !projects.iter().any(|p| p == project) {
            projects.push(project.to_string());
        }
    }
    if projects.is_empty() {
        tracing::warn!(
            receiver = %receiver.name,
            "jira receiver has no project to check; findings without a catalog `jira_project` will be rejected"
        );
        return Ok(());
    }
    let problems: Vec<String> = projects
        .iter()
        .filter_map(|project| check_project(receiver, project).err())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn check_project(receiver: &JiraReceiver, project: &str) -> Result<(), String> {
    let types_resource = format!("issue/createmeta/{}/issuetypes", path_part(project));
    let types = match paged(receiver, &types_resource, &["issueTypes", "values"]) {
        Ok(types) => types,
        Err(err @ DeliveryError::Retry { .. }) => return unreachable_now(receiver, project, &err),
        Err(err) => return Err(project_error(receiver, project, err)),
    };

    let expected = receiver.issue_type.trim();
    // Exact, because the create sends the configured name as it is.
    let found = types
        .iter()
        .find(|issue_type| issue_type["name"].as_str() == Some(expected));
    let Some(issue_type) = found else {
        let names: Vec<&str> = types.iter().filter_map(|t| t["name"].as_str()).collect();
        return Err(format!(
            "jira receiver `{}`: project {project} has no issue type \"{expected}\"; available: {}; set `issue_type` to one of them",
            receiver.name,
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ));
    };
    let id = match &issue_type["id"] {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        _ => {
            return Err(format!(
                "jira receiver `{}`: project {project}: issue type \"{expected}\" has no id in Jira's create metadata",
                receiver.name
            ))
        }
    };

    let fields_resource = format!("{types_resource}/{}", path_part(&id));
    let fields = paged(receiver, &fields_resource, &["fields", "values", "results"])
        .map_err(|err| project_error(receiver, project, err))?;
    let missing: Vec<&Value> = fields
        .iter()
        .filter(|field| unmapped_required(receiver, field))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(missing_fields_message(
        receiver, project, expected, &missing,
    ))
}

/// Returns true for a required field without a default that nothing fills.
fn unmapped_required(receiver: &JiraReceiver, field: &Value) -> bool {
    let id = field_id(field);
    field["required"].as_bool() == Some(true)
        && field["hasDefaultValue"].as_bool() != Some(true)
        && !FILLED_FIELDS.contains(&id)
        && !receiver.fields.iter().any(|(mapped, _)| mapped == id)
}

fn field_id(field: &Value) -> &str {
    field["fieldId"]
        .as_str()
        .or_else(|| field["key"].as_str())
        .unwrap_or("")
}

fn missing_fields_message(
    receiver: &JiraReceiver,
    project: &str,
    issue_type: &str,
    missing: &[&Value],
) -> String {
    let listed: Vec<String> = missing
        .iter()
        .map(|field| {
            let name = field["name"].as_str().unwrap_or("unnamed");
            format!("{} ({name})", field_id(field))
        })
        .collect();
    let lines: Vec<String> = missing
        .iter()
        .map(|field| format!("    {}", suggestion(field)))
        .collect();
    format!(
        "jira receiver `{}`: project {project}, issue type \"{issue_type}\": required {} not mapped: {}; add {} under `fields` in the receiver's configuration, such as:\n  fields:\n{}",
        receiver.name,
        if missing.len() == 1 { "field is" } else { "fields are" },
        listed.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
        lines.join("\n")
    )
}

/// Returns an example configuration line for a field, shaped by its schema type.
fn suggestion(field: &Value) -> String {
    let id = field_id(field);
    let schema = &field["schema"];
    let first_allowed = &field["allowedValues"][0];
    let allowed = first_allowed["value"]
        .as_str()
        .or_else(|| first_allowed["name"].as_str());
    match (schema["type"].as_str(), schema["items"].as_str()) {
        (Some("option"), _) => format!("{id}: {{value: \"{}\"}}", allowed.unwrap_or("...")),
        (Some("array"), Some("option")) => {
            format!("{id}: [{{value: \"{}\"}}]", allowed.unwrap_or("..."))
        }
        (Some("array"), Some("string")) => format!("{id}: [\"{{{{ rule_id }}}}\"]"),
        (Some("number"), _) => format!("{id}: 1"),
        (Some("string") | None, _) => format!("{id}: \"{{{{ severity }}}}\""),
        (Some(_), _) => match allowed {
            Some(name) => format!("{id}: {{name: \"{name}\"}}"),
            None => format!("{id}: {{id: \"...\"}}"),
        },
    }
}

/// Reads every page of a create metadata list. `keys` are the names the items may come under.
fn paged(
    receiver: &JiraReceiver,
    resource: &str,
    keys: &[&str],
) -> Result<Vec<Value>, DeliveryError> {
    let mut items: Vec<Value> = Vec::new();
    for _ in 0..MAX_PAGES {
        let url = format!(
            "{}?startAt={}&maxResults={PAGE_SIZE}",
            receiver.url(resource),
            items.len()
        );
        let page = receiver.send(Request::new("GET", url))?.json()?;
        let batch = keys
            .iter()
            .find_map(|key| page[*key].as_array())
            .cloned()
            .unwrap_or_default();
        let received = batch.len();
        items.extend(batch);
        let total = page["total"].as_u64();
        let is_last = page["isLast"].as_bool();
        let complete = match (is_last, total) {
            (Some(last), _) => last,
            (None, Some(total)) => items.len() as u64 >= total,
            (None, None) => true,
        };
        if complete || received == 0 {
            break;
        }
    }
    Ok(items)
}

/// Lets the run start when Jira could not answer the check (refused, timed out, 5xx): delivery
/// retries until it answers, and a wrong setting then shows up as a dead letter.
fn unreachable_now(
    receiver: &JiraReceiver,
    project: &str,
    err: &DeliveryError,
) -> Result<(), String> {
    tracing::warn!(receiver = %receiver.name, project, error = %err, "could not check the Jira project at start; delivery retries until Jira answers");
    Ok(())
}

fn project_error(receiver: &JiraReceiver, project: &str, err: DeliveryError) -> String {
    match err {
        DeliveryError::Reject {
            status: Some(404),
            response,
            ..
        } => {
            let body: Value = serde_json::from_str(&response).unwrap_or(Value::Null);
            let messages: Vec<&str> = body["errorMessages"]
                .as_array()
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "jira receiver `{}`: project {project} was not found at {} ({}); check `project` in the receiver or `jira_project` in the service catalog, and that the token's user can create issues in it",
                receiver.name,
                receiver.base_url,
                if messages.is_empty() { "HTTP 404".to_string() } else { messages.join(" ") }
            )
        }
        other => format!(
            "jira receiver `{}`: checking project {project} failed: {other}",
            receiver.name
        ),
    }
}
