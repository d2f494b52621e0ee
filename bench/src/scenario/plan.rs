//! The plan of a scenario run: which scenarios happen, when, and with which knobs.
//!
//! A [`Plan`] is a list of [`Scenario`]s. Each one names its kind, its window as offsets from
//! the start of the run, and the knobs of its kind. The plan reads from and writes to JSON, so
//! a run can be described in a file and the default plan printed as a starting point. A knob
//! left out takes the default plan's value, but the kind, name and window are required.
//! Unknown fields are rejected, so a misspelt knob fails instead of silently keeping its
//! default.
//!
//! [`Plan::validate`] checks every knob against its range and rejects two scenarios on the
//! same route whose windows overlap, because the labels then could not state one known
//! effect per route.

use serde::{Deserialize, Serialize};

use super::traffic::{route_index, LOGIN_ROUTE, ORDER_ROUTE, PRODUCT_ROUTE, ROUTES, SEARCH_ROUTE};
use super::InvalidScenario;

/// The scenarios of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The scenarios, in the order their labels are written.
    pub scenarios: Vec<Scenario>,
}

/// One scenario of a plan, tagged in JSON by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    /// Many clients post guessed credentials to the login route.
    CredentialStuffing(CredentialStuffing),
    /// One principal walks sequential order ids.
    ObjectEnumeration(ObjectEnumeration),
    /// A few clients send SQL injection and cross-site scripting payloads to the search route.
    InjectionCampaign(InjectionCampaign),
    /// One client fetches product pages as fast as it can.
    Scraper(Scraper),
    /// A release makes one route slower. It is not an attack, and no rule should blame one.
    DeployRegression(DeployRegression),
}

/// Knobs of a credential stuffing scenario on `POST /api/auth/login`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialStuffing {
    /// Name of the scenario in its label, unique within the plan.
    pub name: String,
    /// Start of the window, in seconds after the start of the run.
    pub start_offset_s: u64,
    /// Length of the window in seconds.
    pub duration_s: u64,
    /// Number of attacking clients, each with its own address.
    #[serde(default = "knob_defaults::stuffing_clients")]
    pub clients: u32,
    /// Mean login attempts of one client per minute.
    #[serde(default = "knob_defaults::stuffing_requests_per_client_per_minute")]
    pub requests_per_client_per_minute: f64,
    /// Factor applied to the latency of every request to the login route during the window.
    #[serde(default = "knob_defaults::stuffing_latency_factor")]
    pub latency_factor: f64,
}

/// Knobs of an object enumeration scenario on `GET /api/orders/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEnumeration {
    /// Name of the scenario in its label, unique within the plan.
    pub name: String,
    /// Start of the window, in seconds after the start of the run.
    pub start_offset_s: u64,
    /// Length of the window in seconds.
    pub duration_s: u64,
    /// The first order id requested. Each later request adds one to the id.
    #[serde(default = "knob_defaults::enumeration_first_id")]
    pub first_id: u64,
    /// Mean requests per minute.
    #[serde(default = "knob_defaults::enumeration_requests_per_minute")]
    pub requests_per_minute: f64,
    /// Share of requested ids that exist and return 200, from 0 to 1. The others return
    /// 404.
    #[serde(default = "knob_defaults::enumeration_found_share")]
    pub found_share: f64,
}

/// Knobs of an injection campaign on `GET /api/search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionCampaign {
    /// Name of the scenario in its label, unique within the plan.
    pub name: String,
    /// Start of the window, in seconds after the start of the run.
    pub start_offset_s: u64,
    /// Length of the window in seconds.
    pub duration_s: u64,
    /// Number of attacking clients. Client 0 sends SQL injection with sqlmap's user agent,
    /// client 1 cross-site scripting, client 2 both, and so on in turn.
    #[serde(default = "knob_defaults::injection_clients")]
    pub clients: u32,
    /// Mean requests of one client per minute.
    #[serde(default = "knob_defaults::injection_requests_per_client_per_minute")]
    pub requests_per_client_per_minute: f64,
    /// Share of the attackers' requests that get 500, from 0 to 1.
    #[serde(default = "knob_defaults::injection_error_5xx_share")]
    pub error_5xx_share: f64,
}

/// Knobs of a scraper scenario on `GET /api/products/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scraper {
    /// Name of the scenario in its label, unique within the plan.
    pub name: String,
    /// Start of the window, in seconds after the start of the run.
    pub start_offset_s: u64,
    /// Length of the window in seconds.
    pub duration_s: u64,
    /// Mean requests per minute.
    #[serde(default = "knob_defaults::scraper_requests_per_minute")]
    pub requests_per_minute: f64,
    /// Share of every request to the route that gets 503 during the window, from 0 to 1. It
    /// replaces the route's baseline 5xx rate, for the scraper and every other client.
    #[serde(default = "knob_defaults::scraper_route_5xx_rate")]
    pub route_5xx_rate: f64,
}

/// Knobs of a deploy regression, on `POST /api/payments` unless `route` names another route.
///
/// The knobs that keep their defaults are left out of the JSON, so plans written before they
/// existed print and run as before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRegression {
    /// Name of the scenario in its label, unique within the plan.
    pub name: String,
    /// Start of the window, in seconds after the start of the run.
    pub start_offset_s: u64,
    /// Length of the window in seconds.
    pub duration_s: u64,
    /// Factor applied to the latency of every request to the route while it is slow.
    #[serde(default = "knob_defaults::regression_latency_factor")]
    pub latency_factor: f64,
    /// The route the regression slows, as `METHOD /template`, such as `GET /api/users/me`.
    #[serde(
        default = "default_regression_route",
        skip_serializing_if = "is_default_regression_route"
    )]
    pub route: String,
    /// Seconds the route is slow at the start of each period, or `None` when it is slow for
    /// the whole window. Set together with `every_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_for_s: Option<u64>,
    /// Length of a period in seconds. Periods start at the start of the window, and the last
    /// one ends with the window, so its slow part may be cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_s: Option<u64>,
}

/// The knob values that a plan may leave out, which the default plan uses too.
mod knob_defaults {
    pub fn stuffing_clients() -> u32 {
        12
    }
    pub fn stuffing_requests_per_client_per_minute() -> f64 {
        6.0
    }
    pub fn stuffing_latency_factor() -> f64 {
        4.0
    }
    pub fn enumeration_first_id() -> u64 {
        4_200_000
    }
    pub fn enumeration_requests_per_minute() -> f64 {
        40.0
    }
    pub fn enumeration_found_share() -> f64 {
        0.15
    }
    pub fn injection_clients() -> u32 {
        3
    }
    pub fn injection_requests_per_client_per_minute() -> f64 {
        6.0
    }
    pub fn injection_error_5xx_share() -> f64 {
        0.1
    }
    pub fn scraper_requests_per_minute() -> f64 {
        240.0
    }
    pub fn scraper_route_5xx_rate() -> f64 {
        0.3
    }
    pub fn regression_latency_factor() -> f64 {
        3.0
    }
}

/// The route a deploy regression slows when its plan names none.
pub const DEFAULT_REGRESSION_ROUTE: &str = "POST /api/payments";

fn default_regression_route() -> String {
    DEFAULT_REGRESSION_ROUTE.to_string()
}

fn is_default_regression_route(route: &str) -> bool {
    route == DEFAULT_REGRESSION_ROUTE
}

impl DeployRegression {
    /// Returns the slow time and the period in seconds, or `None` when the whole window is
    /// slow.
    pub fn period_s(&self) -> Option<(u64, u64)> {
        self.slow_for_s.zip(self.every_s)
    }
}

/// The largest latency factor a scenario may set.
const MAX_LATENCY_FACTOR: f64 = 100.0;

/// The largest rate of one attacking source, in requests per minute.
const MAX_REQUESTS_PER_MINUTE: f64 = 60_000.0;

impl Default for Plan {
    /// Returns the default plan of a 4-hour run: every kind once, each attack after at least
    /// 40 minutes of clean traffic on its route, and the deploy regression overlapping the
    /// credential stuffing.
    fn default() -> Plan {
        let minutes = |m: u64| m * 60;
        Plan {
            scenarios: vec![
                Scenario::CredentialStuffing(CredentialStuffing {
                    name: "credential-stuffing".to_string(),
                    start_offset_s: minutes(40),
                    duration_s: minutes(15),
                    clients: knob_defaults::stuffing_clients(),
                    requests_per_client_per_minute:
                        knob_defaults::stuffing_requests_per_client_per_minute(),
                    latency_factor: knob_defaults::stuffing_latency_factor(),
                }),
                Scenario::DeployRegression(DeployRegression {
                    name: "deploy-regression".to_string(),
                    start_offset_s: minutes(45),
                    duration_s: minutes(20),
                    latency_factor: knob_defaults::regression_latency_factor(),
                    route: default_regression_route(),
                    slow_for_s: None,
                    every_s: None,
                }),
                Scenario::ObjectEnumeration(ObjectEnumeration {
                    name: "object-enumeration".to_string(),
                    start_offset_s: minutes(90),
                    duration_s: minutes(20),
                    first_id: knob_defaults::enumeration_first_id(),
                    requests_per_minute: knob_defaults::enumeration_requests_per_minute(),
                    found_share: knob_defaults::enumeration_found_share(),
                }),
                Scenario::InjectionCampaign(InjectionCampaign {
                    name: "injection-campaign".to_string(),
                    start_offset_s: minutes(130),
                    duration_s: minutes(20),
                    clients: knob_defaults::injection_clients(),
                    requests_per_client_per_minute:
                        knob_defaults::injection_requests_per_client_per_minute(),
                    error_5xx_share: knob_defaults::injection_error_5xx_share(),
                }),
                Scenario::Scraper(Scraper {
                    name: "scraper".to_string(),
                    start_offset_s: minutes(180),
                    duration_s: minutes(20),
                    requests_per_minute: knob_defaults::scraper_requests_per_minute(),
                    route_5xx_rate: knob_defaults::scraper_route_5xx_rate(),
                }),
            ],
        }
    }
}

impl Plan {
    /// Keeps only the scenarios with the given names, in plan order.
    pub fn select(&self, names: &[String]) -> Result<Plan, InvalidScenario> {
        for name in names {
            if !self.scenarios.iter().any(|s| s.name() == name) {
                let known: Vec<&str> = self.scenarios.iter().map(|s| s.name()).collect();
                return Err(InvalidScenario::new(
                    "scenarios",
                    name.clone(),
                    format!("expected one of {}", known.join(", ")),
                ));
            }
        }
        let scenarios = self
            .scenarios
            .iter()
            .filter(|s| names.iter().any(|n| n == s.name()))
            .cloned()
            .collect();
        Ok(Plan { scenarios })
    }

    /// Checks every scenario against its ranges, against a run of `duration_s` seconds, and
    /// against the other scenarios.
    pub fn validate(&self, duration_s: u64) -> Result<(), InvalidScenario> {
        for (index, scenario) in self.scenarios.iter().enumerate() {
            scenario.validate(duration_s)?;
            for other in &self.scenarios[..index] {
                if other.name() == scenario.name() {
                    return Err(InvalidScenario::new(
                        "name",
                        scenario.name().to_string(),
                        "expected names that are unique within the plan",
                    ));
                }
                if other.route() == scenario.route() && overlaps(other, scenario) {
                    return Err(InvalidScenario::of_scenario(
                        "start_offset_s",
                        scenario.start_offset_s().to_string(),
                        scenario.name(),
                        format!(
                            "{} and {} overlap on {} {}; move one so that each route has one \
                             known effect at a time",
                            other.name(),
                            scenario.name(),
                            ROUTES[scenario.route()].method,
                            ROUTES[scenario.route()].template
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// Returns the scenario's name.
    pub fn name(&self) -> &str {
        match self {
            Scenario::CredentialStuffing(s) => &s.name,
            Scenario::ObjectEnumeration(s) => &s.name,
            Scenario::InjectionCampaign(s) => &s.name,
            Scenario::Scraper(s) => &s.name,
            Scenario::DeployRegression(s) => &s.name,
        }
    }

    /// Returns the kind's name in kebab case, as the `kind` field of the plan and labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Scenario::CredentialStuffing(_) => "credential-stuffing",
            Scenario::ObjectEnumeration(_) => "object-enumeration",
            Scenario::InjectionCampaign(_) => "injection-campaign",
            Scenario::Scraper(_) => "scraper",
            Scenario::DeployRegression(_) => "deploy-regression",
        }
    }

    /// Returns true for attacks, false for the deploy regression.
    pub fn is_attack(&self) -> bool {
        !matches!(self, Scenario::DeployRegression(_))
    }

    /// Returns the start of the window in seconds after the start of the run.
    pub fn start_offset_s(&self) -> u64 {
        self.window_s().0
    }

    /// Returns the start offset and the duration of the window, in seconds.
    fn window_s(&self) -> (u64, u64) {
        match self {
            Scenario::CredentialStuffing(s) => (s.start_offset_s, s.duration_s),
            Scenario::ObjectEnumeration(s) => (s.start_offset_s, s.duration_s),
            Scenario::InjectionCampaign(s) => (s.start_offset_s, s.duration_s),
            Scenario::Scraper(s) => (s.start_offset_s, s.duration_s),
            Scenario::DeployRegression(s) => (s.start_offset_s, s.duration_s),
        }
    }

    /// Returns the window as start and end in milliseconds since the Unix epoch, end excluded.
    pub fn window_ms(&self, run_start_ms: i64) -> (i64, i64) {
        let (offset_s, duration_s) = self.window_s();
        let start = run_start_ms + (offset_s * 1_000) as i64;
        (start, start + (duration_s * 1_000) as i64)
    }

    /// Returns the index of the scenario's route in the catalog.
    ///
    /// # Panics
    ///
    /// Panics when a deploy regression names an unknown route, which [`Plan::validate`]
    /// rejects.
    pub(super) fn route(&self) -> usize {
        match self {
            Scenario::CredentialStuffing(_) => LOGIN_ROUTE,
            Scenario::ObjectEnumeration(_) => ORDER_ROUTE,
            Scenario::InjectionCampaign(_) => SEARCH_ROUTE,
            Scenario::Scraper(_) => PRODUCT_ROUTE,
            Scenario::DeployRegression(s) => {
                route_index(&s.route).expect("a validated plan names only known routes")
            }
        }
    }

    /// Returns the ids of the shipped rules expected to report the scenario. Traffic without
    /// attacks already makes `login-abuse-distributed` fire, so it is expected here only where
    /// the attack adds to it.
    pub fn expected_rules(&self) -> &'static [&'static str] {
        match self {
            Scenario::CredentialStuffing(_) => &[
                "auth-failure-burst",
                "login-attempts-from-one-client",
                "login-abuse-distributed",
            ],
            Scenario::ObjectEnumeration(_) => &["scanner-distinct-404-paths", "client-404-share"],
            Scenario::InjectionCampaign(_) => {
                &["sql-injection-attempt", "xss-attempt", "scanner-user-agent"]
            }
            Scenario::Scraper(_) => &["route-5xx-ratio"],
            Scenario::DeployRegression(_) => &[],
        }
    }

    fn validate(&self, run_duration_s: u64) -> Result<(), InvalidScenario> {
        let name = self.name();
        if name.is_empty() {
            return Err(InvalidScenario::new(
                "name",
                String::new(),
                "expected a name such as credential-stuffing",
            ));
        }
        let (offset_s, duration_s) = self.window_s();
        if duration_s == 0 {
            return Err(knob(name, "duration_s", 0, "expected at least 1 second"));
        }
        if offset_s.saturating_add(duration_s) > run_duration_s {
            return Err(knob(
                name,
                "duration_s",
                duration_s,
                format!(
                    "the window from {offset_s} s to {} s ends after the run, which lasts \
                     {run_duration_s} s; lengthen the run or move the window",
                    offset_s.saturating_add(duration_s)
                ),
            ));
        }
        match self {
            Scenario::CredentialStuffing(s) => {
                check_count(name, "clients", s.clients, 1, 254)?;
                check_rate(
                    name,
                    "requests_per_client_per_minute",
                    s.requests_per_client_per_minute,
                )?;
                check_factor(name, s.latency_factor)
            }
            Scenario::ObjectEnumeration(s) => {
                check_rate(name, "requests_per_minute", s.requests_per_minute)?;
                check_share(name, "found_share", s.found_share)?;
                if s.first_id == 0 || s.first_id > 1 << 53 {
                    return Err(knob(name, "first_id", s.first_id, "expected 1 to 2^53"));
                }
                Ok(())
            }
            Scenario::InjectionCampaign(s) => {
                check_count(name, "clients", s.clients, 1, 254)?;
                check_rate(
                    name,
                    "requests_per_client_per_minute",
                    s.requests_per_client_per_minute,
                )?;
                check_share(name, "error_5xx_share", s.error_5xx_share)
            }
            Scenario::Scraper(s) => {
                check_rate(name, "requests_per_minute", s.requests_per_minute)?;
                check_share(name, "route_5xx_rate", s.route_5xx_rate)
            }
            Scenario::DeployRegression(s) => {
                check_factor(name, s.latency_factor)?;
                check_route(name, &s.route)?;
                check_period(name, s)
            }
        }
    }
}

fn overlaps(a: &Scenario, b: &Scenario) -> bool {
    let (a_start, a_end) = a.window_ms(0);
    let (b_start, b_end) = b.window_ms(0);
    a_start < b_end && b_start < a_end
}

fn knob(
    scenario: &str,
    field: &'static str,
    value: impl ToString,
    expected: impl Into<String>,
) -> InvalidScenario {
    InvalidScenario::of_scenario(field, value.to_string(), scenario, expected)
}

fn check_count(
    scenario: &str,
    field: &'static str,
    value: u32,
    min: u32,
    max: u32,
) -> Result<(), InvalidScenario> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(knob(
        scenario,
        field,
        value,
        format!("expected {min} to {max}"),
    ))
}

fn check_rate(scenario: &str, field: &'static str, value: f64) -> Result<(), InvalidScenario> {
    if value.is_finite() && value > 0.0 && value <= MAX_REQUESTS_PER_MINUTE {
        return Ok(());
    }
    Err(knob(
        scenario,
        field,
        value,
        format!("expected a rate above 0 and at most {MAX_REQUESTS_PER_MINUTE} per minute"),
    ))
}

fn check_share(scenario: &str, field: &'static str, value: f64) -> Result<(), InvalidScenario> {
    if (0.0..=1.0).contains(&value) {
        return Ok(());
    }
    Err(knob(
        scenario,
        field,
        value,
        "expected a share from 0 to 1, such as 0.3",
    ))
}

fn check_factor(scenario: &str, value: f64) -> Result<(), InvalidScenario> {
    if value.is_finite() && value > 0.0 && value <= MAX_LATENCY_FACTOR {
        return Ok(());
    }
    Err(knob(
        scenario,
        "latency_factor",
        value,
        format!("expected a factor above 0 and at most {MAX_LATENCY_FACTOR}, such as 4.0"),
    ))
}

fn check_route(scenario: &str, route: &str) -> Result<(), InvalidScenario> {
    if route_index(route).is_some() {
        return Ok(());
    }
    let known: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    Err(knob(
        scenario,
        "route",
        route,
        format!("expected one of {}", known.join(", ")),
    ))
}

/// Checks that `slow_for_s` and `every_s` are set together, and that each period has a slow
/// part and a normal part and fits in the window.
fn check_period(scenario: &str, regression: &DeployRegression) -> Result<(), InvalidScenario> {
    let (slow_for_s, every_s) = match (regression.slow_for_s, regression.every_s) {
        (None, None) => return Ok(()),
        (Some(slow_for_s), Some(every_s)) => (slow_for_s, every_s),
        (Some(slow_for_s), None) => {
            return Err(unpaired(scenario, "slow_for_s", slow_for_s, "every_s"))
        }
        (None, Some(every_s)) => return Err(unpaired(scenario, "every_s", every_s, "slow_for_s")),
    };
    if slow_for_s == 0 || slow_for_s >= every_s {
        return Err(knob(
            scenario,
            "slow_for_s",
            slow_for_s,
            format!("expected at least 1 s and less than every_s, which is {every_s} s"),
        ));
    }
    if every_s > regression.duration_s {
        return Err(knob(
            scenario,
            "every_s",
            every_s,
            format!(
                "expected at most duration_s, which is {} s, so that the window contains a \
                 whole period",
                regression.duration_s
            ),
        ));
    }
    Ok(())
}

fn unpaired(scenario: &str, field: &'static str, value: u64, other: &str) -> InvalidScenario {
    knob(
        scenario,
        field,
        value,
        format!("expected {other} as well, or neither of them for a route slow the whole window"),
    )
}
