//! The Jenkins receiver: each finding change listed in `on` starts a parameterised build.
//!
//! The build is `POST /job/<folder>/job/<name>/buildWithParameters` with the parameters of
//! the [CI module](super) table as form fields and Basic authentication with a user and an API
//! token. Jenkins responds with 201 and a `Location` header naming the queue item
//! (`.../queue/item/42/`), which becomes the stored remote. The job comes from the service
//! catalog's `ci_target`, else the receiver's `job`, written as `folder/name`.
//!
//! Jenkins drops parameters that the job does not define, so the job must define every
//! parameter in the table as a string parameter.
//!
//! CSRF protection: before the first build the receiver requests a crumb from
//! `/crumbIssuer/api/json` and keeps the session cookie from that response, because Jenkins
//! 2.176.2 and later bind a crumb to the web session that it was issued in. Both go with every
//! build request. When the crumb issuer responds with 404, CSRF protection is off and builds
//! go without a crumb. Jenkins 2.96 and later also need no crumb from clients that
//! authenticate with an API token. A 403 whose body contains "No valid crumb was included in the
//! request" means that the session expired or Jenkins restarted, so the receiver fetches a new
//! crumb and sends the build once more within the same apply. A second crumb rejection in a
//! row is returned as a rejection, because it points at a proxy that drops the cookie or the
//! header.
//!
//! Recovering an interrupted build looks in the queue first and then at the job's latest
//! [`RECOVER_BUILDS`] builds for one whose `FEEDLOOP_FINGERPRINT` parameter is the notice key.
//! Jenkins adds a queue item before it responds to the build request and keeps the item's
//! parameters on the build that it starts, so a build that Jenkins accepted is found unless
//! newer builds pushed it out of that window.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use feedloop_rules::HumanDuration;

use super::{Plan, TITLE_MAX_CHARS};
use crate::delivery::http::{encode_component, HttpClient, Reply, Request};
use crate::delivery::render::{Redaction, Template};
use crate::delivery::{
    ChangeKind, DeliveryError, Effect, Notice, Progress, Receiver, Remote, Rendering,
};
use crate::sink::webhook::Secret;

/// The number of a job's latest builds that `recover` searches.
pub const RECOVER_BUILDS: usize = 50;

/// The `Remote::extra` entry with the job that was built, as `folder/name`.
pub const EXTRA_JOB: &str = "job";

/// The text of the 403 response that Jenkins sends for a missing, stale or foreign crumb.
const CRUMB_REJECTION: &str = "No valid crumb";

/// Settings of one Jenkins receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JenkinsConfig {
    /// The Jenkins root URL, such as `https://ci.example.com/jenkins`.
    pub base_url: String,
    /// The job to build when the service catalog names no `ci_target`, as `folder/name`.
    #[serde(default)]
    pub job: Option<String>,
    /// The Jenkins user that the API token belongs to.
    pub user: String,
    /// The user's API token, from the user's Security settings page in Jenkins.
    pub api_token: Secret,
    /// The change kinds that start a build: opened, reopened and resolved by default.
    #[serde(default = "super::default_ci_kinds")]
    pub on: Vec<ChangeKind>,
    /// Time allowed for one request, connecting included, 10s by default.
    #[serde(default = "super::default_timeout")]
    pub timeout: HumanDuration,
    /// The template of `FEEDLOOP_TITLE`.
    #[serde(default = "super::default_title")]
    pub title: String,
    /// Redaction policy for the title. Principals and clients are hashed by default, because
    /// build parameters are visible to everyone who can see the build.
    #[serde(default = "Redaction::public")]
    pub redaction: Redaction,
}

/// A crumb and the session it belongs to.
#[derive(Clone)]
struct Crumb {
    /// The header name, `Jenkins-Crumb` unless Jenkins is configured otherwise.
    field: String,
    value: String,
    /// The `Cookie` header value with the session cookies from the crumb response.
    cookie: Option<String>,
}

/// The state of Jenkins' CSRF protection, as the receiver last saw it.
#[derive(Clone)]
enum CrumbState {
    /// No crumb fetched yet, or the last one was rejected.
    Unknown,
    /// The crumb issuer responded with 404, so builds go without a crumb.
    NotIssued,
    Issued(Crumb),
}

/// A receiver that starts Jenkins builds.
pub struct JenkinsReceiver {
    name: String,
    http: HttpClient,
    base_url: String,
    user: String,
    /// The `Authorization` header value.
    authorization: String,
    job: Option<String>,
    on: Vec<ChangeKind>,
    title: Template,
    redaction: Redaction,
    crumb: CrumbState,
}

impl fmt::Debug for JenkinsReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let crumb = match self.crumb {
            CrumbState::Unknown => "not fetched",
            CrumbState::NotIssued => "not issued",
            CrumbState::Issued(_) => "<redacted>",
        };
        f.debug_struct("JenkinsReceiver")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field("api_token", &"<redacted>")
            .field("job", &self.job)
            .field("on", &self.on)
            .field("title", &self.title.source())
            .field("crumb", &crumb)
            .finish()
    }
}

impl JenkinsReceiver {
    /// Builds a receiver: resolves the API token, parses the title and checks the settings.
    pub fn new(name: &str, config: &JenkinsConfig) -> Result<JenkinsReceiver, String> {
        super::check_url(name, "base_url", &config.base_url)?;
        super::check_kinds(name, &config.on)?;
        if let Some(job) = &config.job {
            job_path(job).map_err(|err| format!("receiver `{name}`: invalid `job`: {err}"))?;
        }
        if config.user.is_empty() || config.user.contains(':') {
            return Err(format!(
                "receiver `{name}`: invalid `user` `{}`: name the Jenkins user that owns the API token; it cannot be empty or contain `:`",
                config.user
            ));
        }
        let token = config
            .api_token
            .resolve()
            .map_err(|err| format!("receiver `{name}`: `api_token`: {err}"))?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", config.user));
        Ok(JenkinsReceiver {
            name: name.to_string(),
            http: HttpClient::new(Duration::from_millis(config.timeout.as_millis())),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            user: config.user.clone(),
            authorization: format!("Basic {credentials}"),
            job: config.job.clone(),
            on: config.on.clone(),
            title: super::parse_template(name, "title", &config.title)?,
            redaction: config.redaction,
            crumb: CrumbState::Unknown,
        })
    }

    /// Returns the job to build, `folder/name`, and its URL path `job/folder/job/name`.
    fn job(&self, notice: &Notice) -> Result<(String, String), DeliveryError> {
        let from_catalog = notice.target.ci_target.as_deref().filter(|j| !j.is_empty());
        let Some(job) = from_catalog.or(self.job.as_deref()) else {
            return Err(DeliveryError::reject(format!(
                "Jenkins receiver `{}` has no job for service `{}`: set `ci_target` for the service in the service catalog, or `job` in the receiver's settings",
                self.name, notice.target.service
            )));
        };
        let path = job_path(job).map_err(|err| {
            DeliveryError::reject(format!(
                "Jenkins receiver `{}`: invalid job `{job}` for service `{}`: {err}",
                self.name, notice.target.service
            ))
        })?;
        Ok((job.to_string(), path))
    }

    /// Asks the crumb issuer for a crumb and its session cookie.
    fn fetch_crumb(&self) -> Result<CrumbState, DeliveryError> {
        let url = format!("{}/crumbIssuer/api/json", self.base_url);
        let request = Request::new("GET", url).header("Authorization", &self.authorization);
        let reply = match self.http.send(&request) {
            Ok(reply) => reply,
            Err(DeliveryError::Reject {
                status: Some(404), ..
            }) => {
                tracing::debug!(receiver = %self.name, "Jenkins has no crumb issuer; building without a crumb");
                return Ok(CrumbState::NotIssued);
            }
            Err(err) => {
                let prefix = format!(
                    "Jenkins receiver `{}` failed to fetch a CSRF crumb",
                    self.name
                );
                return Err(super::explain_rejection(
                    err,
                    &prefix,
                    credential_hint,
                    false,
                ));
            }
        };
        let body = reply.json()?;
        let field = body["crumbRequestField"].as_str();
        let value = body["crumb"].as_str();
        let (Some(field), Some(value)) = (field, value) else {
            return Err(DeliveryError::Reject {
                reason: format!(
                    "Jenkins receiver `{}`: the crumb response lacks `crumb` or `crumbRequestField`",
                    self.name
                ),
                status: Some(reply.status),
                response: crate::delivery::http::excerpt(&reply.body),
                fallback: false,
            });
        };
        Ok(CrumbState::Issued(Crumb {
            field: field.to_string(),
            value: value.to_string(),
            cookie: session_cookie(&reply),
        }))
    }

    fn build_request(&self, url: &str, form: &[(String, String)]) -> Request {
        let mut request = Request::new("POST", url)
            .header("Authorization", &self.authorization)
            .form(form.to_vec());
        if let CrumbState::Issued(crumb) = &self.crumb {
            request = request.header(&crumb.field, &crumb.value);
            if let Some(cookie) = &crumb.cookie {
                request = request.header("Cookie", cookie);
            }
        }
        request
    }

    /// Sends a build request with the current crumb, fetching a new crumb and sending once
    /// more when Jenkins rejects the crumb. A rejected build request gets the fix for `job`.
    fn post_build(
        &mut self,
        job: &str,
        url: &str,
        form: &[(String, String)],
    ) -> Result<Reply, DeliveryError> {
        if matches!(self.crumb, CrumbState::Unknown) {
            self.crumb = self.fetch_crumb()?;
        }
        let first = self.http.send(&self.build_request(url, form));
        let result = match first {
            Err(err) if is_crumb_rejection(&err) => {
                tracing::info!(receiver = %self.name, job, "Jenkins rejected the crumb; fetching a new one and sending the build again");
                self.crumb = CrumbState::Unknown;
                self.crumb = self.fetch_crumb()?;
                let second = self.http.send(&self.build_request(url, form));
                if matches!(&second, Err(err) if is_crumb_rejection(err)) {
                    self.crumb = CrumbState::Unknown;
                }
                second
            }
            other => other,
        };
        result.map_err(|err| self.explain(err, job))
    }

    /// Adds the receiver, the job and the fix to a rejected build request.
    fn explain(&self, err: DeliveryError, job: &str) -> DeliveryError {
        let prefix = format!(
            "Jenkins receiver `{}` failed to start job `{job}`",
            self.name
        );
        if is_crumb_rejection(&err) {
            let hint = |_| {
                Some("Jenkins rejected a newly fetched crumb too; check that no proxy drops the session cookie or the crumb header")
            };
            return super::explain_rejection(err, &prefix, hint, false);
        }
        let hint = |status| match status {
            Some(404) => Some("check the job name; a job in a folder is written `folder/name`"),
            Some(400 | 405) => {
                Some("check that the job is parameterised and defines every FEEDLOOP_ parameter")
            }
            other => credential_hint(other),
        };
        super::explain_rejection(err, &prefix, hint, false)
    }

    /// Starts a build and returns the stored remote for its queue item.
    fn trigger(
        &mut self,
        notice: &Notice,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Remote, DeliveryError> {
        let (job, path) = self.job(notice)?;
        let redacted = super::redacted(notice, &self.redaction);
        let title =
            super::render_title(&redacted, &self.title, rendering, progress, TITLE_MAX_CHARS);
        let form = super::parameters(notice, &title);
        let url = format!("{}/{path}/buildWithParameters", self.base_url);
        let reply = self.post_build(&job, &url, &form)?;
        let location = reply.header("location").map(|l| self.absolute(l));
        let Some((location, id)) = location.and_then(|l| queue_item_id(&l).map(|id| (l, id)))
        else {
            return Err(DeliveryError::Reject {
                reason: format!(
                    "Jenkins receiver `{}`: the build response for job `{job}` has no queue item `Location`; check that `base_url` is the Jenkins root URL and that no login page sits in front of Jenkins",
                    self.name
                ),
                status: Some(reply.status),
                response: crate::delivery::http::excerpt(&reply.body),
                fallback: false,
            });
        };
        Ok(super::triggered(
            notice,
            id,
            Some(location),
            &[(EXTRA_JOB, &job)],
        ))
    }

    /// Returns a `Location` value as an absolute URL.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_string();
        }
        let origin = self
            .base_url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?)))
            .unwrap_or_else(|| self.base_url.clone());
        format!("{origin}/{}", location.trim_start_matches('/'))
    }

    fn get_json(&self, url: String) -> Result<Value, DeliveryError> {
        let request = Request::new("GET", url).header("Authorization", &self.authorization);
        self.http.send(&request)?.json()
    }

    /// Finds a queued build of the job whose fingerprint parameter is the notice key.
    fn find_queued(
        &self,
        notice: &Notice,
        job: &str,
        path: &str,
    ) -> Result<Option<Remote>, DeliveryError> {
        let tree = "items[id,task[url],actions[parameters[name,value]]]";
        let url = format!(
            "{}/queue/api/json?tree={}",
            self.base_url,
            encode_component(tree)
        );
        let queue = self.get_json(url)?;
        let items = queue["items"].as_array().cloned().unwrap_or_default();
        let job_url_path = format!("{}/{path}", url_path(&self.base_url));
        for item in items {
            let task_url = item["task"]["url"].as_str().unwrap_or_default();
            if url_path(task_url) != job_url_path {
                continue;
            }
            let parameters = build_parameters(&item);
            let Some(id) = item["id"].as_u64() else {
                continue;
            };
            if has_fingerprint(&parameters, &notice.key) {
                let url = format!("{}/queue/item/{id}/", self.base_url);
                return Ok(super::recovered(
                    id.to_string(),
                    Some(url),
                    &parameters,
                    &[(EXTRA_JOB, job)],
                ));
            }
        }
        Ok(None)
    }

    /// Finds a recent build of the job whose fingerprint parameter is the notice key.
    fn find_built(
        &self,
        notice: &Notice,
        job: &str,
        path: &str,
    ) -> Result<Option<Remote>, DeliveryError> {
        let tree = format!(
            "builds[number,url,queueId,actions[parameters[name,value]]]{{0,{RECOVER_BUILDS}}}"
        );
        let url = format!(
            "{}/{path}/api/json?tree={}",
            self.base_url,
            encode_component(&tree)
        );
        let job_json = self.get_json(url)?;
        let builds = job_json["builds"].as_array().cloned().unwrap_or_default();
        for build in builds {
            let parameters = build_parameters(&build);
            let Some(queue_id) = build["queueId"].as_u64() else {
                continue;
            };
            if has_fingerprint(&parameters, &notice.key) {
                let url = build["url"].as_str().map(str::to_string);
                return Ok(super::recovered(
                    queue_id.to_string(),
                    url,
                    &parameters,
                    &[(EXTRA_JOB, job)],
                ));
            }
        }
        Ok(None)
    }
}

impl Receiver for JenkinsReceiver {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(
        &mut self,
        notice: &Notice,
        remote: Option<&Remote>,
        rendering: Rendering,
        progress: &mut dyn Progress,
    ) -> Result<Effect, DeliveryError> {
        match super::plan(&self.name, &self.on, notice, remote) {
            Plan::Skip(reason) => Ok(Effect::Skipped(reason)),
            Plan::AlreadySent(remote) => Ok(Effect::Applied(remote)),
            Plan::Send => {
                let triggered = self.trigger(notice, rendering, progress)?;
                Ok(super::record(remote, triggered, progress))
            }
        }
    }

    fn recover(&mut self, notice: &Notice) -> Result<Option<Remote>, DeliveryError> {
        let Ok((job, path)) = self.job(notice) else {
            return Ok(None);
        };
        if let Some(remote) = self.find_queued(notice, &job, &path)? {
            return Ok(Some(remote));
        }
        self.find_built(notice, &job, &path)
    }
}

/// Returns the fix for an authentication or permission rejection.
fn credential_hint(status: Option<u16>) -> Option<&'static str> {
    match status {
        Some(401) => Some("check `user` and `api_token`"),
        Some(403) => Some("check that `user` has the Overall/Read and Job/Build permissions"),
        _ => None,
    }
}

/// Returns true for Jenkins' 403 response to a missing or stale crumb.
fn is_crumb_rejection(err: &DeliveryError) -> bool {
    matches!(err, DeliveryError::Reject { status: Some(403), response, .. } if response.contains(CRUMB_REJECTION))
}

/// Returns the `Cookie` header value for the cookies a response sets, without their attributes.
fn session_cookie(reply: &Reply) -> Option<String> {
    let cookies: Vec<&str> = reply
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .filter_map(|(_, value)| value.split(';').next())
        .map(str::trim)
        .filter(|pair| pair.contains('='))
        .collect();
    (!cookies.is_empty()).then(|| cookies.join("; "))
}

/// Returns the URL path of a job written as `folder/name`: `job/folder/job/name`.
fn job_path(job: &str) -> Result<String, String> {
    let segments: Vec<&str> = job.split('/').collect();
    if segments.iter().any(|s| s.trim().is_empty()) {
        return Err(format!(
            "`{job}` has an empty name part; write a job as `name` or `folder/name`"
        ));
    }
    Ok(segments
        .iter()
        .map(|segment| format!("job/{}", encode_component(segment)))
        .collect::<Vec<_>>()
        .join("/"))
}

/// Returns the path of an absolute URL without the trailing slash: `/jenkins/job/gate` for
/// `https://ci.example.com/jenkins/job/gate/`. Jenkins may report its own root URL, which can
/// differ from `base_url` in scheme and host behind a proxy, so only paths are compared.
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |start| &after_scheme[start..]);
    path.trim_end_matches('/')
}

/// Returns the queue item number in a URL such as `https://ci/queue/item/42/`.
fn queue_item_id(location: &str) -> Option<String> {
    let mut segments = location.trim_end_matches('/').rsplit('/');
    let id = segments.next()?;
    let is_item = segments.next() == Some("item");
    (is_item && !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// Returns the parameters of a queue item or build, from its `ParametersAction`.
fn build_parameters(item: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let actions = item["actions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for action in actions {
        let parameters = action["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for parameter in parameters {
            let Some(name) = parameter["name"].as_str() else {
                continue;
            };
            let value = match &parameter["value"] {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out.push((name.to_string(), value));
        }
    }
    out
}

fn has_fingerprint(parameters: &[(String, String)], key: &str) -> bool {
    parameters
        .iter()
        .any(|(name, value)| name == "FEEDLOOP_FINGERPRINT" && value == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<JenkinsConfig, serde_norway::Error> {
        serde_norway::from_str(yaml)
    }

    const MINIMAL: &str = "base_url: https://ci.example.com\nuser: feedloop\napi_token: t0k\n";

    #[test]
    fn config_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.job, None);
        assert_eq!(
            config.on,
            [
                ChangeKind::Opened,
                ChangeKind::Reopened,
                ChangeKind::Resolved
            ]
        );
        assert_eq!(config.timeout, HumanDuration(10_000));
        assert_eq!(config.redaction, Redaction::public());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = parse(&format!("{MINIMAL}password: x\n")).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `password`"),
            "{err}"
        );
    }

    #[test]
    fn new_rejects_bad_settings() {
        let config = parse(&format!("{MINIMAL}job: team//gate\n")).unwrap();
        let err = JenkinsReceiver::new("jk", &config).unwrap_err();
        assert_eq!(
            err,
            "receiver `jk`: invalid `job`: `team//gate` has an empty name part; write a job as `name` or `folder/name`"
        );
        let config =
            parse("base_url: https://ci.example.com\nuser: 'a:b'\napi_token: t\n").unwrap();
        let err = JenkinsReceiver::new("jk", &config).unwrap_err();
        assert!(
            err.starts_with("receiver `jk`: invalid `user` `a:b`"),
            "{err}"
        );
    }

    #[test]
    fn job_paths_nest_folders() {
        assert_eq!(job_path("gate").unwrap(), "job/gate");
        assert_eq!(
            job_path("payments/api gate").unwrap(),
            "job/payments/job/api%20gate"
        );
        assert!(job_path("/gate").is_err());
    }

    #[test]
    fn url_paths_ignore_origin() {
        assert_eq!(
            url_path("https://ci.example.com/jenkins/job/gate/"),
            "/jenkins/job/gate"
        );
        assert_eq!(
            url_path("http://127.0.0.1:8080/job/a/job/b/"),
            "/job/a/job/b"
        );
        assert_eq!(url_path("https://ci.example.com"), "");
        assert_eq!(url_path("https://ci.example.com/"), "");
    }

    #[test]
    fn queue_item_ids() {
        assert_eq!(
            queue_item_id("https://ci/queue/item/42/").as_deref(),
            Some("42")
        );
        assert_eq!(
            queue_item_id("https://ci/queue/item/42").as_deref(),
            Some("42")
        );
        assert_eq!(queue_item_id("https://ci/job/gate/42/"), None);
        assert_eq!(queue_item_id("https://ci/queue/item/x/"), None);
    }

    #[test]
    fn session_cookies_drop_attributes() {
        let reply = Reply {
            status: 200,
            headers: vec![
                (
                    "set-cookie".into(),
                    "JSESSIONID.1a2b3c4d=node01abc; Path=/; HttpOnly".into(),
                ),
                ("set-cookie".into(), "other=1; Secure".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: String::new(),
        };
        assert_eq!(
            session_cookie(&reply).as_deref(),
            Some("JSESSIONID.1a2b3c4d=node01abc; other=1")
        );
    }

    #[test]
    fn debug_hides_token() {
        let config =
            parse("base_url: https://ci.example.com\nuser: feedloop\napi_token: jenkins-secret\n")
                .unwrap();
        let receiver = JenkinsReceiver::new("jk", &config).unwrap();
        let text = format!("{config:?} {receiver:?}");
        assert!(!text.contains("jenkins-secret"), "{text}");
        let encoded = base64::engine::general_purpose::STANDARD.encode("feedloop:jenkins-secret");
        assert!(!text.contains(&encoded), "{text}");
    }
}
