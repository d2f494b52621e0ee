//! Routing: which receivers a finding change goes to, and how changes are grouped.
//!
//! Routes form a tree, as in Alertmanager. A change enters at the top and is offered to each
//! route in order; the first route whose `match` holds takes it, and its children are tried
//! the same way. A route with `continue: true` lets the change go on to its later siblings
//! too, so one finding can reach Jira and Slack. A route that matched but none of whose
//! children did delivers to its own receivers; a route without receivers uses its parent's.
//! A change no route takes goes nowhere and is counted as unrouted.
//!
//! Matching uses the finding's stages, severity, service, tags, rule id and the owners the
//! service catalog gives its service. Every field of a `match` must hold; a list holds when
//! any of its values does. The service catalog maps a service to its owners, Jira project,
//! GitHub repository, Slack channel and CI target, so one route ("design findings to the
//! owning team's Jira project") serves every team.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use feedloop_pipeline::Finding;
use feedloop_rules::{HumanDuration, Severity, Stage};

use super::Target;

/// The service catalog: service name to where its findings go.
pub type Catalog = BTreeMap<String, CatalogEntry>;

/// One service in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The owning team or people.
    #[serde(default)]
    pub owners: Vec<String>,
    /// The Jira project key, such as `PAY`.
    #[serde(default)]
    pub jira_project: Option<String>,
    /// The GitHub repository as `owner/name`.
    #[serde(default)]
    pub github_repo: Option<String>,
    /// GitHub logins to assign issues to.
    #[serde(default)]
    pub github_assignees: Vec<String>,
    /// The Slack channel id or name.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// The CI target: a GitLab project, a Jenkins job, or a ref to set commit statuses on.
    #[serde(default)]
    pub ci_target: Option<String>,
}

/// Reads a catalog file: a YAML map of service name to entry.
pub fn load_catalog(path: &Path) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("failed to read service catalog {}: {err}", path.display()))?;
    serde_norway::from_str(&text)
        .map_err(|err| format!("invalid service catalog {}: {err}", path.display()))
}

/// Returns the catalog's target for a finding's service; an unknown service gets an empty one.
pub fn target_of(catalog: &Catalog, finding: &Finding) -> Target {
    let service = finding.service.clone().unwrap_or_default();
    let entry = catalog.get(&service).cloned().unwrap_or_default();
    Target {
        service,
        owners: entry.owners,
        jira_project: entry.jira_project,
        github_repo: entry.github_repo,
        github_assignees: entry.github_assignees,
        slack_channel: entry.slack_channel,
        ci_target: entry.ci_target,
    }
}

/// The conditions of a route; all present ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Any of these lifecycle stages.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// This severity or a higher one.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Exactly one of these severities.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Any of these services.
    #[serde(default)]
    pub services: Vec<String>,
    /// Any of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Any of these rule ids.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Any of these owners, from the service catalog.
    #[serde(default)]
    pub owners: Vec<String>,
}

impl Matcher {
    /// Returns why the matcher holds for a finding, or why it does not.
    pub fn explain(&self, finding: &Finding, target: &Target) -> Result<Vec<String>, String> {
        let mut why = Vec::new();
        if !self.stages.is_empty() {
            let hit = finding.stages.iter().find(|s| self.stages.contains(s));
            match hit {
                Some(stage) => why.push(format!("stage {} is listed", stage.as_str())),
                None => {
                    return Err(format!(
                        "stages {} not in {}",
                        stages(&finding.stages),
                        stages(&self.stages)
                    ))
                }
            }
        }
        if let Some(min) = self.min_severity {
            if finding.severity < min {
                return Err(format!("severity {} is below {min}", finding.severity));
            }
            why.push(format!("severity {} is at least {min}", finding.severity));
        }
        if !self.severities.is_empty() {
            if !self.severities.contains(&finding.severity) {
                return Err(format!("severity {} is not listed", finding.severity));
            }
            why.push(format!("severity {} is listed", finding.severity));
        }
        let service = finding.service.as_deref().unwrap_or("");
        check_list(&self.services, &[service], "service", &mut why)?;
        let tags: Vec<&str> = finding.tags.iter().map(String::as_str).collect();
        check_list(&self.tags, &tags, "tag", &mut why)?;
        check_list(&self.rules, &[finding.rule_id.as_str()], "rule", &mut why)?;
        let owners: Vec<&str> = target.owners.iter().map(String::as_str).collect();
        check_list(&self.owners, &owners, "owner", &mut why)?;
        if why.is_empty() {
            why.push("the route matches everything".to_string());
        }
        Ok(why)
    }
}

fn stages(list: &[Stage]) -> String {
    let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
    format!("[{}]", names.join(", "))
}

fn check_list(
    wanted: &[String],
    have: &[&str],
    what: &str,
    why: &mut Vec<String>,
) -> Result<(), String> {
    if wanted.is_empty() {
        return Ok(());
    }
    match have.iter().find(|h| wanted.iter().any(|w| w == *h)) {
        Some(value) => {
            why.push(format!("{what} {value} is listed"));
            Ok(())
        }
        None => Err(format!(
            "{what} [{}] not in [{}]",
            have.join(", "),
            wanted.join(", ")
        )),
    }
}

/// A route as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for messages and `feedloop routes test`; defaults to the route's position.
    #[serde(default)]
    pub name: Option<String>,
    /// The conditions; an absent `match` matches every change.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// Receiver names; empty means the parent route's.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Whether a change this route took is still offered to the later sibling routes.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Labels whose equal values put changes into one message: `rule_id`, `service`,
    /// `severity`, `fingerprint` or `group.<field>`. Empty means one message per finding.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long to gather a new group's changes before its first message.
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// How long to gather further changes of a group that has had a message.
    #[serde(default)]
    pub group_interval: Option<HumanDuration>,
    /// Child routes, tried in order once this route matches.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// The grouping settings of a route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grouping {
    /// The labels; empty means one group per fingerprint.
    pub by: Vec<String>,
    pub wait_ms: u64,
    pub interval_ms: u64,
}

/// A checked route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    pub receivers: Vec<String>,
    pub continue_matching: bool,
    pub grouping: Grouping,
    pub routes: Vec<Route>,
}

/// The receivers and grouping one route gives a change.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The route's name.
    pub route: String,
    pub receivers: Vec<String>,
    pub grouping: Grouping,
}

/// The whole routing tree.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Router {
    pub routes: Vec<Route>,
}

impl Router {
    /// Checks the routes against the configured receiver names.
    pub fn new(configs: &[RouteConfig], receivers: &[String]) -> Result<Router, String> {
        let parent = Route {
            name: "routes".to_string(),
            matcher: Matcher::default(),
            receivers: Vec::new(),
            continue_matching: false,
            grouping: Grouping::default(),
            routes: Vec::new(),
        };
        let routes: Vec<Route> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| check_route(c, &parent, &format!("routes[{i}]"), receivers))
            .collect::<Result<_, _>>()?;
        // Groups are keyed by route name, so two routes of one name would share groups.
        let mut seen = Vec::new();
        check_unique_names(&routes, &mut seen)?;
        Ok(Router { routes })
    }

    /// Returns where a change of this finding goes.
    pub fn route(&self, finding: &Finding, target: &Target) -> Vec<Destination> {
        let mut out = Vec::new();
        walk(&self.routes, finding, target, &mut out, &mut Vec::new(), 0);
        out
    }

    /// Returns where a change goes and a line per route tried saying why it did or did not
    /// match.
    pub fn explain(&self, finding: &Finding, target: &Target) -> (Vec<Destination>, Vec<String>) {
        let mut out = Vec::new();
        let mut lines = Vec::new();
        walk(&self.routes, finding, target, &mut out, &mut lines, 0);
        (out, lines)
    }
}

fn check_route(
    config: &RouteConfig,
    parent: &Route,
    path: &str,
    receivers: &[String],
) -> Result<Route, String> {
    for name in &config.receivers {
        if !receivers.contains(name) {
            let known = if receivers.is_empty() {
                "none are configured under delivery.receivers".to_string()
            } else {
                format!("configured: {}", receivers.join(", "))
            };
            return Err(format!("{path}: unknown receiver `{name}`; {known}"));
        }
    }
    let by = config
        .group_by
        .clone()
        .unwrap_or(parent.grouping.by.clone());
    for label in &by {
        check_label(label).map_err(|err| format!("{path}.group_by: {err}"))?;
    }
    let grouping = Grouping {
        by,
        wait_ms: config
            .group_wait
            .map_or(parent.grouping.wait_ms, |d| d.as_millis()),
        interval_ms: config
            .group_interval
            .map_or(parent.grouping.interval_ms, |d| d.as_millis()),
    };
    let mut route = Route {
        name: config.name.clone().unwrap_or_else(|| path.to_string()),
        matcher: config.matcher.clone(),
        receivers: if config.receivers.is_empty() {
            parent.receivers.clone()
        } else {
            config.receivers.clone()
        },
        continue_matching: config.continue_matching,
        grouping,
        routes: Vec::new(),
    };
    if route.receivers.is_empty() && config.routes.is_empty() {
        return Err(format!(
            "{path}: a route needs receivers or child routes; add `receivers: [name]`"
        ));
    }
    route.routes = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, c)| check_route(c, &route, &format!("{path}.routes[{i}]"), receivers))
        .collect::<Result<_, _>>()?;
    Ok(route)
}

fn check_unique_names<'a>(routes: &'a [Route], seen: &mut Vec<&'a str>) -> Result<(), String> {
    for route in routes {
        if seen.contains(&route.name.as_str()) {
            return Err(format!(
                "two routes are named `{}`; give each route its own name",
                route.name
            ));
        }
        seen.push(&route.name);
        check_unique_names(&route.routes, seen)?;
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), String> {
    match label {
        "rule_id" | "service" | "severity" | "fingerprint" => Ok(()),
        other => match other.strip_prefix("group.") {
            Some(field) if feedloop_rules::Field::parse(field).is_some() => Ok(()),
            _ => Err(format!(
                "unknown label `{other}`; use rule_id, service, severity, fingerprint or group.<field>"
            )),
        },
    }
}

/// Returns the value of a grouping label for a finding.
pub fn label_value(label: &str, finding: &Finding) -> String {
    match label {
        "rule_id" => finding.rule_id.clone(),
        "service" => finding.service.clone().unwrap_or_default(),
        "severity" => finding.severity.as_str().to_string(),
        "fingerprint" => finding.fingerprint.clone(),
        other => {
            let field = other.strip_prefix("group.").unwrap_or(other);
            match finding.group.get(field) {
                Some(serde_json::Value::String(value)) => value.clone(),
                _ => String::new(),
            }
        }
    }
}

/// Offers a finding to sibling routes in order; returns whether any took it.
fn walk(
    routes: &[Route],
    finding: &Finding,
    target: &Target,
    out: &mut Vec<Destination>,
    lines: &mut Vec<String>,
    depth: usize,
) -> bool {
    let indent = "  ".repeat(depth);
    let mut taken = false;
    for route in routes {
        match route.matcher.explain(finding, target) {
            Err(why) => lines.push(format!("{indent}{}: no match: {why}", route.name)),
            Ok(why) => {
                lines.push(format!("{indent}{}: match: {}", route.name, why.join("; ")));
                taken = true;
                let child_took = walk(&route.routes, finding, target, out, lines, depth + 1);
                if !child_took {
                    lines.push(format!("{indent}  -> {}", route.receivers.join(", ")));
                    out.push(Destination {
                        route: route.name.clone(),
                        receivers: route.receivers.clone(),
                        grouping: route.grouping.clone(),
                    });
                }
                if !route.continue_matching {
                    break;
                }
            }
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(stages: &[&str], severity: &str, service: &str) -> Finding {
        serde_json::from_value(serde_json::json!({
            "rule_id": "login-bruteforce", "title": "t", "fingerprint": "fp", "phase": "early",
            "kind": "threshold", "severity": severity, "stages": stages, "tags": ["owasp-api2"],
            "service": service, "group": {"client": "10.0.0.1"},
            "window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z"},
            "condition": "count >= 3", "count": 3, "first_seen": "", "last_seen": "", "evidence": []
        }))
        .unwrap()
    }

    fn router(yaml: &str) -> Result<Router, String> {
        let configs: Vec<RouteConfig> = serde_norway::from_str(yaml).unwrap();
        let names = ["jira", "github", "slack", "pager"].map(String::from);
        Router::new(&configs, &names)
    }

    const TREE: &str = "
- name: design
  match: {stages: [design]}
  receivers: [jira]
- name: test-and-build
  match: {stages: [test, build]}
  receivers: [github]
  continue: true
- name: operate
  match: {stages: [operate, monitor]}
  receivers: [slack]
  group_by: [rule_id]
  group_wait: 30s
  routes:
    - name: critical
      match: {min_severity: critical}
      receivers: [pager]
";

    fn receivers(destinations: &[Destination]) -> Vec<String> {
        destinations
            .iter()
            .flat_map(|d| d.receivers.iter().cloned())
            .collect()
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let router = router(TREE).unwrap();
        let target = Target::default();
        assert_eq!(
            receivers(&router.route(&finding(&["design", "operate"], "high", "a"), &target)),
            ["jira"]
        );
        assert_eq!(
            receivers(&router.route(&finding(&["test", "operate"], "high", "a"), &target)),
            ["github", "slack"]
        );
        assert!(router
            .route(&finding(&["strategy"], "high", "a"), &target)
            .is_empty());
    }

    #[test]
    fn children_refine_and_inherit_grouping() {
        let router = router(TREE).unwrap();
        let target = Target::default();
        let destinations = router.route(&finding(&["operate"], "critical", "a"), &target);
        assert_eq!(receivers(&destinations), ["pager"]);
        assert_eq!(
            destinations[0].grouping,
            Grouping {
                by: vec!["rule_id".into()],
                wait_ms: 30_000,
                interval_ms: 0
            }
        );
        assert_eq!(
            receivers(&router.route(&finding(&["operate"], "high", "a"), &target)),
            ["slack"]
        );
    }

    #[test]
    fn explain_says_why() {
        let router = router(TREE).unwrap();
        let (_, lines) = router.explain(&finding(&["operate"], "high", "a"), &Target::default());
        assert_eq!(
            lines,
            [
                "design: no match: stages [operate] not in [design]",
                "test-and-build: no match: stages [operate] not in [test, build]",
                "operate: match: stage operate is listed",
                "  critical: no match: severity high is below critical",
                "  -> slack",
            ]
        );
    }

    #[test]
    fn services_and_owners_match_through_the_catalog() {
        let router =
            router("- match: {owners: [payments-team], services: [pay]}\n  receivers: [jira]")
                .unwrap();
        let mut catalog = Catalog::new();
        catalog.insert(
            "pay".into(),
            CatalogEntry {
                owners: vec!["payments-team".into()],
                jira_project: Some("PAY".into()),
                ..Default::default()
            },
        );
        let finding = finding(&["design"], "low", "pay");
        let target = target_of(&catalog, &finding);
        assert_eq!(target.jira_project.as_deref(), Some("PAY"));
        assert_eq!(receivers(&router.route(&finding, &target)), ["jira"]);
        assert!(router.route(&finding, &Target::default()).is_empty());
    }

    #[test]
    fn unknown_receivers_and_labels_are_rejected() {
        assert_eq!(
            router("- receivers: [jria]").unwrap_err(),
            "routes[0]: unknown receiver `jria`; configured: jira, github, slack, pager"
        );
        assert_eq!(
            router("- receivers: [jira]\n  group_by: [client]").unwrap_err(),
            "routes[0].group_by: unknown label `client`; use rule_id, service, severity, fingerprint or group.<field>"
        );
        assert_eq!(
            router("- match: {stages: [design]}").unwrap_err(),
            "routes[0]: a route needs receivers or child routes; add `receivers: [name]`"
        );
        assert_eq!(
            router("- {name: ops, receivers: [jira]}\n- {name: ops, receivers: [slack]}")
                .unwrap_err(),
            "two routes are named `ops`; give each route its own name"
        );
        let err = serde_norway::from_str::<Vec<RouteConfig>>("- recievers: [jira]").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `recievers`"),
            "{err}"
        );
    }
}
