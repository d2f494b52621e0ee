//! The GitHub receiver: one issue per finding, commented on while the finding changes, closed
//! when it resolves, with an optional commit status that gates CI and an optional
//! `repository_dispatch` event that starts workflows.
//!
//! Issues. The first change for a key creates an issue in the catalog's `github_repo` (or the
//! configured `repo`) with the labels `feedloop`, the key's marker, `severity:<level>` and
//! `service:<name>`, and a Markdown body that ends with the marker in an HTML comment. Later
//! changes add comments; a resolve closes the issue as completed and a change after that
//! reopens it, each with a comment saying why. The issue number is the remote id, and the
//! repository is stored with it, so a catalog that later maps the service elsewhere never
//! splits one finding over two repositories. GitHub documents that it silently drops the labels
//! and assignees of a new issue when the token's user has no push access. Without the marker
//! label an interrupted create cannot be found again and the retry opens a second issue, so
//! [`GithubReceiver::check`] rejects such a token for the configured `repo`.
//!
//! Recovery. [`Receiver::recover`] looks the marker label up with the issues list endpoint
//! (`GET /repos/{owner}/{repo}/issues?labels=<marker>&state=all`), which reads the issues
//! themselves. The search API is not used because GitHub serves it from an index that it
//! updates asynchronously, so it can miss an issue created seconds earlier, which is exactly the
//! issue recovery looks for. NOTE: GitHub does not document a read-after-write guarantee for
//! the list endpoint either; recovery and the commit status gate below assume that it lists an
//! issue, and its new state, once the request that changed it has returned.
//!
//! Commit statuses. With `commit_status` set, every change posts a status on the commit that
//! `ci_target` (or `commit_status.status_ref`) names, resolving a branch or tag to its SHA
//! first. A status belongs to a context, and GitHub keeps only the latest status per context
//! and commit, so one status per finding under a shared context would turn the gate green when
//! any finding resolves while others are still open. The context is therefore one per service
//! (`feedloop/<service>`, or `feedloop` for findings without a service, or a fixed configured
//! name), and its state is derived from GitHub itself: opened, updated and reopened changes set
//! `failure`; a resolve lists the open issues in the context's scope after closing its own, and
//! sets `success` only when none remain. The gate therefore survives restarts without state of
//! its own, a fixed context name can be made a required check in branch protection, and a
//! person who closes an issue by hand takes that finding out of the gate at the next resolve.
//!
//! Requests and limits. Every request carries `Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28` and the bearer token. Content-creating requests (POST,
//! PATCH, PUT, DELETE) start at least `min_write_interval` after the previous one ended,
//! because GitHub's secondary rate limit blocks bursts of them. Rate-limit responses become
//! [`DeliveryError::Retry`] with the wait GitHub names, and the receiver never sleeps for a
//! retry itself. Titles are cut to 256 characters, bodies and comments to 65,536 and status
//! descriptions to 140, and the body's marker survives the cut. Redaction defaults to
//! [`Redaction::public`] because a repository may be public.
//!
//! A change makes several requests (state, comment, status, dispatch), and an error in a later
//! one makes the engine retry the whole change. The retry repeats the earlier requests. A
//! repeated state change or status leaves the same result, but a comment can appear twice. The
//! dispatch is sent last, so a workflow never starts twice because a comment or status failed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use feedloop_rules::HumanDuration;

use super::http::{encode_component, HttpClient, Reply, Request};
use super::render::{self, Redaction, Template};
use super::{ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering};
use crate::sink::webhook::Secret;

/// The REST API of github.com.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version sent with every request.
pub const API_VERSION: &str = "2022-11-28";
/// The maximum issue title length GitHub accepts, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// The maximum issue or comment body length GitHub accepts, in characters.
pub const MAX_BODY_CHARS: usize = 65_536;
/// The maximum commit status description length GitHub accepts, in characters.
pub const MAX_STATUS_DESCRIPTION_CHARS: usize = 140;
/// The maximum label name length GitHub accepts, in characters.
pub const MAX_LABEL_CHARS: usize = 50;
/// The maximum `repository_dispatch` event type length GitHub accepts, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;
/// The label on every issue the receiver creates.
pub const FEEDLOOP_LABEL: &str = "feedloop";
/// The key in [`Remote::extra`] that stores the issue's repository.
pub const REPO_KEY: &str = "repo";

const DEFAULT_TIMEOUT: HumanDuration = HumanDuration(10_000);
/// GitHub's REST API best practices recommend at least one second between POST, PATCH, PUT
/// and DELETE requests, to stay clear of the secondary rate limit.
const DEFAULT_MIN_WRITE_INTERVAL: HumanDuration = HumanDuration(1_000);
/// The page size of issue lists, GitHub's maximum.
const ISSUES_PER_PAGE: usize = 100;

/// Settings of one GitHub receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The REST API's base URL: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The token sent as `Authorization: Bearer`. Its user needs push access to the
    /// repositories, and the token needs write access to issues, plus commit statuses or
    /// contents when `commit_status` or `dispatch_event_type` are set.
    pub token: Secret,
    /// The repository as `owner/name`, for services the catalog maps to no repository.
    #[serde(default)]
    pub repo: Option<String>,
    /// Labels added to every issue, besides the ones the receiver adds itself.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Logins assigned to every issue, besides the catalog's `github_assignees`.
    #[serde(default)]
    pub assignees: Vec<String>,
    /// The issue title template.
    #[serde(default = "default_title")]
    pub title: String,
    /// A template put above the facts in the issue body and in every comment.
    #[serde(default)]
    pub body: Option<String>,
    /// The redaction policy applied before rendering. The default is the public policy: hashed
    /// principals and clients, no query strings.
    #[serde(default = "Redaction::public")]
    pub redaction: Redaction,
    /// Time allowed for one request, connection included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// The minimum time from the end of one content-creating request (POST, PATCH, PUT,
    /// DELETE) to the start of the next.
    #[serde(default = "default_min_write_interval")]
    pub min_write_interval: HumanDuration,
    /// Commit statuses that are `failure` while a finding is open; off when absent.
    #[serde(default)]
    pub commit_status: Option<CommitStatusConfig>,
    /// The `repository_dispatch` event type sent for every change; off when absent.
    #[serde(default)]
    pub dispatch_event_type: Option<String>,
}

/// Settings of the commit status gate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitStatusConfig {
    /// One context for every finding of the repository; by default each service gets its own
    /// `feedloop/<service>`, and findings without a service share `feedloop`.
    #[serde(default)]
    pub context: Option<String>,
    /// The branch, tag or commit SHA to set statuses on when the catalog's `ci_target` names
    /// none, such as `main`.
    #[serde(default)]
    pub status_ref: Option<String>,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_string()
}
fn default_title() -> String {
    render::DEFAULT_TITLE.to_string()
}
fn default_timeout() -> HumanDuration {
    DEFAULT_TIMEOUT
}
fn default_min_write_interval() -> HumanDuration {
    DEFAULT_MIN_WRITE_INTERVAL
}

/// A repository as `owner/name`, checked to contain only the characters GitHub allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoName(String);

impl RepoName {
    fn parse(text: &str) -> Result<RepoName, String> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text.trim().split_once('/') {
            Some((owner, name)) if valid_part(owner) && valid_part(name) => {
                Ok(RepoName(format!("{owner}/{name}")))
            }
            _ => Err(format!(
                "invalid repository `{text}`: write it as owner/name, such as acme/payments"
            )),
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client of the GitHub REST API for one receiver.
pub struct GithubReceiver {
    name: String,
    api_url: String,
    token: String,
    client: HttpClient,
    repo: Option<RepoName>,
    labels: Vec<String>,
    assignees: Vec<String>,
    title: Template,
    intro: Option<Template>,
    redaction: Redaction,
    min_write_interval: Duration,
    last_write: Option<Instant>,
    commit_status: Option<CommitStatusConfig>,
    /// Services already warned about for having no commit ref.
    warned_without_ref: std::collections::BTreeSet<String>,
    dispatch_event_type: Option<String>,
}

impl fmt::Debug for GithubReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubReceiver")
            .field("name", &self.name)
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

impl GithubReceiver {
    /// Checks the settings, resolves the token and parses the templates.
    pub fn new(name: &str, config: &GithubConfig) -> Result<GithubReceiver, String> {
        let field_error = |field: &str, err: String| {
            format!("github receiver `{name}`: invalid `{field}`: {err}")
        };
        let api_url = config.api_url.trim_end_matches('/').to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(field_error(
                "api_url",
                format!("`{api_url}` is not an http:// or https:// URL; use {DEFAULT_API_URL}"),
            ));
        }
        let token = config
            .token
            .resolve()
            .map_err(|err| field_error("token", err))?;
        if token.trim().is_empty() {
            return Err(field_error("token", "the token is empty".to_string()));
        }
        let repo = match &config.repo {
            Some(repo) => Some(RepoName::parse(repo).map_err(|err| field_error("repo", err))?),
            None => None,
        };
        check_settings(config).map_err(|(field, err)| field_error(field, err))?;
        let title = Template::parse(&config.title).map_err(|err| field_error("title", err))?;
        let intro = match &config.body {
            Some(body) => Some(Template::parse(body).map_err(|err| field_error("body", err))?),
            None => None,
        };
        Ok(GithubReceiver {
            name: name.to_string(),
            api_url,
            token,
            client: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
            repo,
            labels: config.labels.clone(),
            assignees: config.assignees.clone(),
            title,
            intro,
            redaction: config.redaction,
            min_write_interval: Duration::from_millis(config.min_write_interval.as_millis()),
            last_write: None,
            commit_status: config.commit_status.clone(),
            warned_without_ref: Default::default(),
            dispatch_event_type: config.dispatch_event_type.clone(),
        })
    }
}

/// Checks the settings GitHub would reject later; the error names the field.
fn check_settings(config: &GithubConfig) -> Result<(), (&'static str, String)> {
    if config.timeout.as_millis() == 0 {
        return Err((
            "timeout",
            "0 allows no time; use at least 1ms, such as 10s".into(),
        ));
    }
    if let Some(label) = config
        .labels
        .iter()
        .find(|label| label.is_empty() || label.chars().count() > MAX_LABEL_CHARS)
    {
        return Err((
            "labels",
            format!("label `{label}` must have 1 to {MAX_LABEL_CHARS} characters"),
        ));
    }
    if let Some(event_type) = &config.dispatch_event_type {
        let length = event_type.chars().count();
        if length == 0 || length > MAX_EVENT_TYPE_CHARS {
            return Err((
                "dispatch_event_type",
                format!("`{event_type}` must have 1 to {MAX_EVENT_TYPE_CHARS} characters"),
            ));
        }
    }
    let context = config
        .commit_status
        .as_ref()
        .and_then(|status| status.context.as_deref());
    if context.is_some_and(|context| context.trim().is_empty()) {
        return Err((
            "commit_status.context",
            "the context is empty; remove it or name one, such as feedloop".into(),
        ));
    }
    Ok(())
}

impl Receiver for GithubReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    /// Checks that the configured `repo` has issues enabled and that the token's user has push
    /// access, without which GitHub drops the marker label. Checks nothing without `repo`.
    fn check(&mut self) -> Result<(), String> {
        let Some(repo) = self.repo.clone() else {
            return Ok(());
        };
        let name = self.name.clone();
        let context = |err: String| format!("github receiver `{name}`: {err}");
        let request = Request::new("GET", format!("{}/repos/{repo}", self.api_url));
        let info = match self.send(&repo, request).and_then(|reply| reply.json()) {
            Ok(info) => info,
            Err(err @ DeliveryError::Retry { .. }) => {
                tracing::warn!(receiver = %name, error = %err, "could not check the repository at start; delivery retries until GitHub answers");
                return Ok(());
            }
            Err(err) => return Err(context(err.to_string())),
        };
        if info["has_issues"] == Value::Bool(false) {
            return Err(context(format!(
                "issues are disabled in {repo}; enable them in the repository's settings"
            )));
        }
        if info["permissions"]["push"] == Value::Bool(false) {
            return Err(context(format!(
                "the token's user has no push access to {repo}, so GitHub would drop the labels \
                 that let feedloop find its issues again; use a token with write access"
            )));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        let resolved = notice.kind == ChangeKind::Resolved;
        match remote {
            None if resolved => {
                return Ok(Effect::Skipped(
                    "no issue exists for this finding, so there is nothing to close".to_string(),
                ))
            }
            Some(remote) if resolved && !remote.open => {
                return Ok(Effect::Skipped(format!(
                    "issue #{} is already closed",
                    remote.id
                )))
            }
            _ => {}
        }
        let repo = self.repo_for(notice, remote)?;
        let status_ref = self.status_ref_for(notice);
        let notice = self.redacted(notice);
        let remote = match remote {
            None => self.create(&repo, &notice, rendering, progress)?,
            Some(remote) => self.change(&repo, &notice, remote, rendering, progress)?,
        };
        if let Some(status_ref) = status_ref {
            self.post_status(&repo, &status_ref, &notice, &remote)?;
        }
        self.dispatch(&repo, &notice, &remote)?;
        Ok(Effect::Applied(remote))
    }

    /// Finds the issue that carries the key's marker label, open or closed; pull requests,
    /// which the issues list endpoint also returns, are skipped.
    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let repo = self.repo_for(notice, None)?;
        let marker = render::marker(&notice.key);
        let page = self.list_issues(&repo, &[marker], "all")?;
        let oldest = page
            .issues
            .iter()
            .filter_map(|issue| remote_from_issue(issue, &repo).ok())
            .min_by_key(|remote| remote.id.parse::<u64>().unwrap_or(u64::MAX));
        Ok(oldest)
    }
}

impl GithubReceiver {
    /// Returns the issue's repository: the stored one, the catalog's, or the configured one.
    fn repo_for(
        &self,
        notice: &Notice,
        remote: Option<&Remote>,
    ) -> Result<RepoName, DeliveryError> {
        if let Some(stored) = remote.and_then(|remote| remote.extra.get(REPO_KEY)) {
            return RepoName::parse(stored).map_err(DeliveryError::reject);
        }
        let service = service_name(notice).unwrap_or("(none)");
        if let Some(repo) = &notice.target.github_repo {
            return RepoName::parse(repo).map_err(|err| {
                DeliveryError::reject(format!(
                    "service catalog entry `{service}`: {err}; fix its `github_repo`"
                ))
            });
        }
        self.repo.clone().ok_or_else(|| {
            DeliveryError::reject(format!(
                "no GitHub repository for service `{service}`: set `github_repo` for it in the \
                 service catalog, or `repo` in the github receiver `{}`",
                self.name
            ))
        })
    }

    /// Returns the ref to set a commit status on, or `None` when statuses are off.
    /// Returns the ref to set the commit status on. A service with no ref still gets its
    /// issue; its status is left out, with one warning per service.
    fn status_ref_for(&mut self, notice: &Notice) -> Option<String> {
        let settings = self.commit_status.as_ref()?;
        let chosen = notice
            .target
            .ci_target
            .clone()
            .or_else(|| settings.status_ref.clone());
        match chosen {
            Some(reference) if !reference.trim().is_empty() => Some(reference),
            _ => {
                let service = service_name(notice).unwrap_or("(none)").to_string();
                if self.warned_without_ref.insert(service.clone()) {
                    tracing::warn!(receiver = %self.name, service = %service.escape_debug(), "no commit ref for this service's commit status, so only its issue is kept; set `ci_target` in the service catalog or `commit_status.status_ref`");
                }
                None
            }
        }
    }

    fn redacted(&self, notice: &Notice) -> Notice {
        self.redaction.apply_notice(notice)
    }

    /// Creates the issue and reports it through `progress` before anything else is sent.
    fn create(
        &mut self,
        repo: &RepoName,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Remote, DeliveryError> {
        let title = self.render_title(notice, rendering, progress);
        let body = self.render_body(notice, rendering, progress, None);
        let labels = self.issue_labels(notice, rendering);
        let assignees = match rendering {
            Rendering::Full => self.issue_assignees(notice),
            Rendering::Minimal => Vec::new(),
        };
        let payload = json!({
            "title": title,
            "body": body,
            "labels": labels,
            "assignees": assignees,
        });
        let url = format!("{}/repos/{repo}/issues", self.api_url);
        let issue = self
            .send(repo, Request::new("POST", url).json(payload))?
            .json()?;
        let remote = remote_from_issue(&issue, repo)?;
        progress.created(&remote);
        warn_if_marker_dropped(&issue, &render::marker(&notice.key), repo);
        Ok(remote)
    }

    /// Applies a change to an existing issue: a comment, after closing or reopening the issue
    /// when the change requires it.
    fn change(
        &mut self,
        repo: &RepoName,
        notice: &Notice,
        remote: &Remote,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Remote, DeliveryError> {
        // NOTE: an issue deleted or transferred on GitHub returns 404 here, so the change is
        // rejected rather than filed as a new issue.
        let number = issue_number(remote)?;
        let open_after = notice.kind.leaves_open();

        let lead = match (notice.kind, remote.open) {
            (ChangeKind::Resolved, _) => {
                "**Resolved:** the condition has not held for the rule's resolve period."
                    .to_string()
            }
            (kind, false) => {
                format!("**Reopened:** the condition holds again (change: {kind}).")
            }
            (ChangeKind::Opened, true) => {
                "**Opened again:** the finding was reported as new while this issue is open."
                    .to_string()
            }
            (_, true) => {
                let mut lead = "**Updated:** the condition still holds; the facts below are the \
                                latest for their window."
                    .to_string();
                if let Some(summary) = render::impact_summary(notice.finding()) {
                    lead.push_str(&format!(" Impact now: `{summary}`."));
                }
                lead
            }
        };
        if open_after != remote.open {
            self.set_issue_state(repo, number, open_after)?;
        }

        let body = self.render_body(notice, rendering, progress, Some(&lead));
        let url = format!("{}/repos/{repo}/issues/{number}/comments", self.api_url);
        self.send(repo, Request::new("POST", url).json(json!({"body": body})))?;

        let mut after = remote.clone();
        after.open = open_after;
        after
            .extra
            .entry(REPO_KEY.to_string())
            .or_insert_with(|| repo.to_string());
        Ok(after)
    }

    fn set_issue_state(
        &mut self,
        repo: &RepoName,
        number: u64,
        open: bool,
    ) -> Result<(), DeliveryError> {
        let payload = if open {
            json!({"state": "open"})
        } else {
            json!({"state": "closed", "state_reason": "completed"})
        };
        let url = format!("{}/repos/{repo}/issues/{number}", self.api_url);
        self.send(repo, Request::new("PATCH", url).json(payload))?;
        Ok(())
    }

    /// Returns the issue title; a template that fails falls back to the default title.
    fn render_title(
        &self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> String {
        let finding = notice.finding();
        let title = match rendering {
            Rendering::Minimal => finding.title.clone(),
            Rendering::Full => match self.title.render(notice) {
                Ok(title) => title,
                Err(err) => {
                    progress.render_failed(&format!("title template: {err}"));
                    default_title_text(notice)
                }
            },
        };
        render::truncate(title.trim(), MAX_TITLE_CHARS)
    }

    /// Returns an issue or comment body that fits GitHub's limit and still ends with the
    /// marker; `lead` opens a comment with what changed.
    fn render_body(
        &self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
        lead: Option<&str>,
    ) -> String {
        let finding = notice.finding();
        let body = match rendering {
            Rendering::Minimal => minimal_body(notice, lead),
            Rendering::Full => {
                let template_text = match self.intro.as_ref().map(|intro| intro.render(notice)) {
                    Some(Ok(text)) => Some(text),
                    Some(Err(err)) => {
                        progress.render_failed(&format!("body template: {err}"));
                        None
                    }
                    None => None,
                };
                let intro = match (lead, template_text) {
                    (Some(lead), Some(text)) => Some(format!("{lead}\n\n{text}")),
                    (Some(lead), None) => Some(lead.to_string()),
                    (None, text) => text,
                };
                render::markdown(notice, finding, intro.as_deref())
            }
        };
        fit_body(&body, &render::marker(&notice.key))
    }

    /// Returns the configured labels (full rendering only), then the receiver's own:
    /// `feedloop`, the marker, the severity and the service.
    fn issue_labels(&self, notice: &Notice, rendering: Rendering) -> Vec<String> {
        let finding = notice.finding();
        let mut labels = match rendering {
            Rendering::Full => self.labels.clone(),
            Rendering::Minimal => Vec::new(),
        };
        labels.push(FEEDLOOP_LABEL.to_string());
        labels.push(render::marker(&notice.key));
        labels.push(label_text(&format!(
            "severity:{}",
            finding.severity.as_str()
        )));
        if let Some(service) = service_name(notice) {
            labels.push(service_label(service));
        }
        dedup(labels)
    }

    fn issue_assignees(&self, notice: &Notice) -> Vec<String> {
        let mut assignees = notice.target.github_assignees.clone();
        assignees.extend(self.assignees.iter().cloned());
        dedup(assignees)
    }
}

impl GithubReceiver {
    /// Posts the commit status for the change's context. The state is `failure` while the
    /// finding is open. After a resolve it stays `failure` while another issue in the context's
    /// scope is open, and becomes `success` otherwise.
    fn post_status(
        &mut self,
        repo: &RepoName,
        status_ref: &str,
        notice: &Notice,
        remote: &Remote,
    ) -> Result<(), DeliveryError> {
        let scope = self.status_scope(notice);
        let status = if remote.open {
            let finding = notice.finding();
            StatusUpdate {
                state: "failure",
                description: format!(
                    "open finding #{}: [{}] {}",
                    remote.id,
                    finding.severity.as_str(),
                    finding.title
                ),
                target_url: remote.url.clone(),
            }
        } else {
            self.status_after_resolve(repo, &scope, remote)?
        };
        let sha = self.commit_sha(repo, status_ref)?;
        let mut payload = json!({
            "state": status.state,
            "context": scope.context,
            "description": render::truncate(&status.description, MAX_STATUS_DESCRIPTION_CHARS),
        });
        if let Some(url) = status.target_url {
            payload["target_url"] = json!(url);
        }
        let url = format!("{}/repos/{repo}/statuses/{sha}", self.api_url);
        self.send(repo, Request::new("POST", url).json(payload))?;
        Ok(())
    }

    /// Returns the status after a resolve: `success` when no issue in the scope is open any
    /// more, else `failure` linking to the newest open one.
    fn status_after_resolve(
        &mut self,
        repo: &RepoName,
        scope: &StatusScope,
        remote: &Remote,
    ) -> Result<StatusUpdate, DeliveryError> {
        let page = self.list_issues(repo, &scope.labels, "open")?;
        let open: Vec<&Value> = page
            .issues
            .iter()
            .filter(|issue| scope.contains(issue))
            .collect();
        let Some(newest) = open.first() else {
            return Ok(StatusUpdate {
                state: "success",
                description: "no open findings".to_string(),
                target_url: remote.url.clone(),
            });
        };
        // Only the first page is listed, so a full page means there may be more.
        let count = match open.len() {
            n if page.full => format!("{n} or more open findings"),
            1 => "1 open finding".to_string(),
            n => format!("{n} open findings"),
        };
        Ok(StatusUpdate {
            state: "failure",
            description: format!(
                "{count}, such as #{}: {}",
                newest["number"],
                newest["title"].as_str().unwrap_or("")
            ),
            target_url: newest["html_url"].as_str().map(str::to_string),
        })
    }

    fn status_scope(&self, notice: &Notice) -> StatusScope {
        let configured = self
            .commit_status
            .as_ref()
            .and_then(|settings| settings.context.clone());
        match (configured, service_name(notice)) {
            (Some(context), _) => StatusScope {
                context,
                labels: vec![FEEDLOOP_LABEL.to_string()],
                only_without_service: false,
            },
            (None, Some(service)) => StatusScope {
                context: format!("feedloop/{service}"),
                labels: vec![FEEDLOOP_LABEL.to_string(), service_label(service)],
                only_without_service: false,
            },
            (None, None) => StatusScope {
                context: FEEDLOOP_LABEL.to_string(),
                labels: vec![FEEDLOOP_LABEL.to_string()],
                only_without_service: true,
            },
        }
    }

    /// Returns the commit SHA a ref names; a full SHA is used as it is.
    fn commit_sha(&mut self, repo: &RepoName, reference: &str) -> Result<String, DeliveryError> {
        let is_sha = reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit());
        if is_sha {
            return Ok(reference.to_ascii_lowercase());
        }
        let path: Vec<String> = reference.split('/').map(encode_component).collect();
        let url = format!("{}/repos/{repo}/commits/{}", self.api_url, path.join("/"));
        let commit = self.send(repo, Request::new("GET", url))?.json()?;
        match commit["sha"].as_str() {
            Some(sha) => Ok(sha.to_string()),
            None => Err(DeliveryError::reject(format!(
                "GitHub returned no `sha` for ref `{reference}` in {repo}"
            ))),
        }
    }

    fn dispatch(
        &mut self,
        repo: &RepoName,
        notice: &Notice,
        remote: &Remote,
    ) -> Result<(), DeliveryError> {
        let Some(event_type) = self.dispatch_event_type.clone() else {
            return Ok(());
        };
        let finding = notice.finding();
        // GitHub accepts at most 10 top-level keys in `client_payload`; this sends 6.
        let payload = json!({
            "event_type": event_type,
            "client_payload": {
                "fingerprint": finding.fingerprint,
                "change": notice.kind.as_str(),
                "rule_id": finding.rule_id,
                "severity": finding.severity.as_str(),
                "service": service_name(notice),
                "issue_url": remote.url,
            },
        });
        let url = format!("{}/repos/{repo}/dispatches", self.api_url);
        self.send(repo, Request::new("POST", url).json(payload))?;
        Ok(())
    }

    /// Returns the first page of issues with every label in `labels`, pull requests left out.
    fn list_issues(
        &mut self,
        repo: &RepoName,
        labels: &[String],
        state: &str,
    ) -> Result<IssuePage, DeliveryError> {
        let labels: Vec<String> = labels.iter().map(|label| encode_component(label)).collect();
        let url = format!(
            "{}/repos/{repo}/issues?labels={}&state={state}&per_page={ISSUES_PER_PAGE}",
            self.api_url,
            labels.join(",")
        );
        let list = self.send(repo, Request::new("GET", url))?.json()?;
        let Value::Array(issues) = list else {
            return Err(DeliveryError::reject(format!(
                "GitHub returned no issue list for {repo}"
            )));
        };
        let full = issues.len() >= ISSUES_PER_PAGE;
        let issues = issues
            .into_iter()
            .filter(|issue| issue.get("pull_request").is_none())
            .collect();
        Ok(IssuePage { issues, full })
    }

    /// Sends a request with GitHub's headers, spacing content-creating requests by
    /// `min_write_interval`, and adds GitHub's message and a likely fix to rejections.
    fn send(&mut self, repo: &RepoName, request: Request) -> Result<Reply, DeliveryError> {
        let request = request
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("authorization", format!("Bearer {}", self.token));
        let is_write = matches!(request.method, "POST" | "PATCH" | "PUT" | "DELETE");
        if is_write {
            self.wait_for_write_slot();
        }
        let result = self.client.send(&request);
        if is_write {
            // Measured from the end of the request, so the next one reaches GitHub at least
            // the interval after this one did.
            self.last_write = Some(Instant::now());
        }
        result.map_err(|err| explain(err, repo))
    }

    fn wait_for_write_slot(&self) {
        let Some(last) = self.last_write else {
            return;
        };
        let ready = last + self.min_write_interval;
        let now = Instant::now();
        if ready > now {
            std::thread::sleep(ready - now);
        }
    }
}

/// One page of the issues list endpoint.
struct IssuePage {
    /// The issues, pull requests left out.
    issues: Vec<Value>,
    /// True when the page had the maximum size, so more pages may follow.
    full: bool,
}

/// A commit status to post, without its context.
struct StatusUpdate {
    /// `failure` or `success`.
    state: &'static str,
    description: String,
    target_url: Option<String>,
}

/// The issues a commit status context covers.
struct StatusScope {
    context: String,
    /// Labels every covered issue has.
    labels: Vec<String>,
    /// True for the shared `feedloop` context, which leaves out issues with a service label
    /// because their services have contexts of their own.
    only_without_service: bool,
}

impl StatusScope {
    fn contains(&self, issue: &Value) -> bool {
        if !self.only_without_service {
            return true;
        }
        let labels = issue["labels"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        !labels.iter().any(|label| {
            label["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("service:"))
        })
    }
}

/// Returns the finding's service, or the catalog entry's when the finding names none.
fn service_name(notice: &Notice) -> Option<&str> {
    notice
        .finding()
        .service
        .as_deref()
        .or(Some(notice.target.service.as_str()))
        .filter(|service| !service.is_empty())
}

/// Returns a label name GitHub accepts: commas, which separate labels in list queries, become
/// spaces, and the name is cut to [`MAX_LABEL_CHARS`].
fn label_text(text: &str) -> String {
    text.replace(',', " ")
        .chars()
        .take(MAX_LABEL_CHARS)
        .collect()
}

fn service_label(service: &str) -> String {
    label_text(&format!("service:{service}"))
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(items.len());
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

fn default_title_text(notice: &Notice) -> String {
    Template::parse(render::DEFAULT_TITLE)
        .and_then(|template| template.render(notice))
        .unwrap_or_else(|_| notice.finding().title.clone())
}

/// Returns the body of the minimal rendering: title, rule, severity, fingerprint and marker.
fn minimal_body(notice: &Notice, lead: Option<&str>) -> String {
    let finding = notice.finding();
    let mut body = String::new();
    if let Some(lead) = lead {
        body.push_str(lead);
        body.push_str("\n\n");
    }
    body.push_str(&format!(
        "- **Title:** {}\n- **Rule:** {}\n- **Severity:** {}\n- **Fingerprint:** {}\n",
        finding.title,
        finding.rule_id,
        finding.severity.as_str(),
        finding.fingerprint
    ));
    body.push_str(&format!("\n<!-- {} -->", render::marker(&notice.key)));
    body
}

/// Cuts a body to [`MAX_BODY_CHARS`], keeping its closing marker comment.
fn fit_body(body: &str, marker: &str) -> String {
    if body.chars().count() <= MAX_BODY_CHARS {
        return body.to_string();
    }
    let suffix = format!("\n<!-- {marker} -->");
    let content = body.strip_suffix(&suffix).unwrap_or(body);
    let room = MAX_BODY_CHARS - suffix.chars().count();
    format!("{}{suffix}", render::truncate(content, room))
}

fn issue_number(remote: &Remote) -> Result<u64, DeliveryError> {
    remote.id.parse().map_err(|_| {
        DeliveryError::reject(format!(
            "stored remote id `{}` is not a GitHub issue number",
            remote.id
        ))
    })
}

/// Returns the remote for an issue from GitHub's answer.
fn remote_from_issue(issue: &Value, repo: &RepoName) -> Result<Remote, DeliveryError> {
    let number = issue["number"].as_u64().ok_or_else(|| {
        DeliveryError::reject(format!(
            "GitHub returned an issue without a number in {repo}"
        ))
    })?;
    Ok(Remote {
        id: number.to_string(),
        url: issue["html_url"].as_str().map(str::to_string),
        open: issue["state"].as_str() != Some("closed"),
        extra: BTreeMap::from([(REPO_KEY.to_string(), repo.to_string())]),
    })
}

fn warn_if_marker_dropped(issue: &Value, marker: &str, repo: &RepoName) {
    let labels = issue["labels"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if !labels.iter().any(|label| label["name"] == marker) {
        tracing::warn!(
            repo = %repo,
            issue = %issue["number"],
            marker,
            "GitHub dropped the marker label; an interrupted create could not be recovered"
        );
    }
}

/// Adds GitHub's message and the likely fix to a rejection.
fn explain(err: DeliveryError, repo: &RepoName) -> DeliveryError {
    let DeliveryError::Reject {
        reason,
        status: Some(status),
        response,
        fallback,
    } = err
    else {
        return err;
    };
    let message = serde_json::from_str::<Value>(&response)
        .ok()
        .and_then(|body| body["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| "no message".to_string());
    let hint = match status {
        401 => format!("{message}; check the receiver's `token`"),
        403 => format!(
            "{message}; give the token write access to issues, commit statuses and contents of \
             {repo}"
        ),
        404 => format!(
            "{message}; check that {repo} and the issue or ref exist and the token can read them"
        ),
        410 => format!(
            "{message}; issues are disabled in {repo}: enable them in the repository's \
             settings or map the service to another repository"
        ),
        422 => validation_errors(&response).unwrap_or(message),
        _ => message,
    };
    DeliveryError::Reject {
        reason: format!("{reason}: {hint}"),
        status: Some(status),
        response,
        fallback,
    }
}

/// Returns a 422 answer's message and field errors, such as
/// `Validation Failed: Issue.title custom (title is too long)`.
fn validation_errors(response: &str) -> Option<String> {
    let body: Value = serde_json::from_str(response).ok()?;
    let message = body["message"].as_str().unwrap_or("Validation Failed");
    let details: Vec<String> = body["errors"]
        .as_array()?
        .iter()
        .map(|error| match error {
            Value::String(text) => text.clone(),
            _ => {
                let text = |name: &str| error[name].as_str().unwrap_or("").to_string();
                let mut detail = format!("{}.{} {}", text("resource"), text("field"), text("code"));
                if !error["value"].is_null() {
                    detail.push_str(&format!(" (value {})", error["value"]));
                }
                if !text("message").is_empty() {
                    detail.push_str(&format!(" ({})", text("message")));
                }
                detail
            }
        })
        .collect();
    Some(format!("{message}: {}", details.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Target;

    fn config(yaml: &str) -> Result<GithubConfig, String> {
        serde_norway::from_str(yaml).map_err(|err| err.to_string())
    }

    fn notice() -> Notice {
        let finding = serde_json::from_value(json!({
            "rule_id": "login-bruteforce",
            "title": "Repeated failed logins",
            "fingerprint": "0123456789abcdef0123456789abcdef",
            "phase": "early",
            "kind": "threshold",
            "severity": "high",
            "stages": ["test"],
            "tags": [],
            "service": "accounts",
            "group": {"client": "203.0.113.9"},
            "window": {"start": "2026-12-04T10:00:00Z", "end": "2026-12-04T10:05:00Z"},
            "condition": "count >= 20",
            "count": 20,
            "first_seen": "2026-12-04T10:00:01.000Z",
            "last_seen": "2026-12-04T10:01:00.000Z",
            "evidence": []
        }))
        .unwrap();
        Notice {
            key: "0123456789abcdef0123456789abcdef".into(),
            change_id: "c1".into(),
            kind: ChangeKind::Opened,
            findings: vec![finding],
            group: None,
            target: Target::default(),
        }
    }

    #[test]
    fn config_defaults() {
        let config = config("token: t\n").unwrap();
        assert_eq!(config.api_url, DEFAULT_API_URL);
        assert_eq!(config.title, render::DEFAULT_TITLE);
        assert_eq!(config.redaction, Redaction::public());
        assert_eq!(config.timeout, HumanDuration(10_000));
        assert_eq!(config.min_write_interval, HumanDuration(1_000));
        assert_eq!(config.commit_status, None);
        assert_eq!(config.dispatch_event_type, None);
    }

    #[test]
    fn config_full() {
        let config = config(
            "api_url: http://127.0.0.1:9/api/v3/\n\
             token: {env: GITHUB_TOKEN}\n\
             repo: acme/payments\n\
             labels: [security]\n\
             assignees: [octocat]\n\
             title: '[{{ severity }}] {{ title }}'\n\
             body: 'Owners: {{ owners }}'\n\
             redaction: {principals: drop}\n\
             timeout: 5s\n\
             min_write_interval: 250ms\n\
             commit_status: {context: feedloop, status_ref: main}\n\
             dispatch_event_type: feedloop-finding\n",
        )
        .unwrap();
        assert_eq!(
            config.token,
            Secret::Env {
                env: "GITHUB_TOKEN".into()
            }
        );
        assert_eq!(config.redaction.principals, render::Treatment::Drop);
        assert_eq!(config.redaction.clients, render::Treatment::Keep);
        assert_eq!(config.min_write_interval, HumanDuration(250));
        assert_eq!(
            config.commit_status,
            Some(CommitStatusConfig {
                context: Some("feedloop".into()),
                status_ref: Some("main".into()),
            })
        );
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = config("token: t\nrepository: acme/payments\n").unwrap_err();
        assert!(err.contains("unknown field `repository`"), "{err}");
        let err = config("token: t\ncommit_status: {ref: main}\n").unwrap_err();
        assert!(err.contains("unknown field `ref`"), "{err}");
    }

    #[test]
    fn new_names_receiver_and_field() {
        let err = GithubReceiver::new("gh", &config("token: t\ntitle: '{{ nope }}'\n").unwrap())
            .unwrap_err();
        assert!(
            err.starts_with("github receiver `gh`: invalid `title`: template `{{ nope }}`"),
            "{err}"
        );
        let err =
            GithubReceiver::new("gh", &config("token: t\nrepo: acme\n").unwrap()).unwrap_err();
        assert_eq!(
            err,
            "github receiver `gh`: invalid `repo`: invalid repository `acme`: write it as \
             owner/name, such as acme/payments"
        );
        let long = "x".repeat(MAX_EVENT_TYPE_CHARS + 1);
        let yaml = format!("token: t\ndispatch_event_type: {long}\n");
        let err = GithubReceiver::new("gh", &config(&yaml).unwrap()).unwrap_err();
        assert!(err.contains("invalid `dispatch_event_type`"), "{err}");
        let err = GithubReceiver::new("gh", &config("token: t\napi_url: ftp://x\n").unwrap())
            .unwrap_err();
        assert!(err.contains("invalid `api_url`"), "{err}");
    }

    #[test]
    fn repo_name_parsing() {
        assert_eq!(
            RepoName::parse("acme/pay.ments-2").unwrap().to_string(),
            "acme/pay.ments-2"
        );
        assert!(RepoName::parse("acme/pay/ments").is_err());
        assert!(RepoName::parse("/payments").is_err());
        assert!(RepoName::parse("acme/pay ments").is_err());
    }

    #[test]
    fn labels_include_marker_severity_and_service() {
        let mut config = config("token: t\nlabels: [security, feedloop]\n").unwrap();
        config.min_write_interval = HumanDuration(0);
        let receiver = GithubReceiver::new("gh", &config).unwrap();
        assert_eq!(
            receiver.issue_labels(&notice(), Rendering::Full),
            [
                "security",
                "feedloop",
                "feedloop-0123456789abcdef",
                "severity:high",
                "service:accounts"
            ]
        );
        assert_eq!(
            receiver.issue_labels(&notice(), Rendering::Minimal),
            [
                "feedloop",
                "feedloop-0123456789abcdef",
                "severity:high",
                "service:accounts"
            ]
        );
        let long = service_label(&format!("a,{}", "b".repeat(80)));
        assert_eq!(long.chars().count(), MAX_LABEL_CHARS);
        assert!(long.starts_with("service:a b"), "{long}");
    }

    #[test]
    fn minimal_body_has_facts_and_marker() {
        assert_eq!(
            minimal_body(&notice(), Some("**Resolved:** gone.")),
            "**Resolved:** gone.\n\n\
             - **Title:** Repeated failed logins\n\
             - **Rule:** login-bruteforce\n\
             - **Severity:** high\n\
             - **Fingerprint:** 0123456789abcdef0123456789abcdef\n\
             \n<!-- feedloop-0123456789abcdef -->"
        );
    }

    #[test]
    fn fit_body_keeps_marker() {
        let marker = "feedloop-0123456789abcdef";
        let body = format!("{}\n<!-- {marker} -->", "é".repeat(MAX_BODY_CHARS));
        let fitted = fit_body(&body, marker);
        assert_eq!(fitted.chars().count(), MAX_BODY_CHARS);
        assert!(fitted.ends_with(&format!("more characters)\n<!-- {marker} -->")));
        assert_eq!(fit_body("short", marker), "short");
    }

    #[test]
    fn validation_errors_name_fields() {
        let response = r#"{"message":"Validation Failed","errors":[
            {"resource":"Issue","field":"title","code":"custom","message":"title is too long"},
            {"resource":"Issue","field":"assignees","code":"invalid","value":"ghost"},
            "labels are invalid"]}"#;
        assert_eq!(
            validation_errors(response).unwrap(),
            "Validation Failed: Issue.title custom (title is too long); \
             Issue.assignees invalid (value \"ghost\"); labels are invalid"
        );
        assert_eq!(validation_errors("not json"), None);
    }

    #[test]
    fn status_scope_per_service() {
        let mut config = config("token: t\ncommit_status: {status_ref: main}\n").unwrap();
        config.min_write_interval = HumanDuration(0);
        let receiver = GithubReceiver::new("gh", &config).unwrap();
        let scope = receiver.status_scope(&notice());
        assert_eq!(scope.context, "feedloop/accounts");
        assert_eq!(scope.labels, ["feedloop", "service:accounts"]);
        let mut without_service = notice();
        without_service.findings[0].service = None;
        let scope = receiver.status_scope(&without_service);
        assert_eq!(scope.context, "feedloop");
        assert!(scope.contains(&json!({"labels": [{"name": "feedloop"}]})));
        assert!(!scope.contains(&json!({"labels": [{"name": "service:accounts"}]})));
    }
}
