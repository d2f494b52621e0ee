//! Labels: what each scenario of a run did, written beside its events as JSON Lines.
//!
//! One [`Label`] per scenario names its window, its route, the identities of its attackers and
//! its expected effects on the route's KPIs. Attacker identities never occur in normal
//! traffic, so a test can tell every attacker event by its client and the window it lies in.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat};
use serde::{Deserialize, Serialize};

use super::plan::Scenario;
use super::traffic::ROUTES;

/// One scenario as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The scenario's name, unique within the run.
    pub name: String,
    /// The scenario's kind, such as `credential-stuffing`.
    pub kind: String,
    /// True for attacks, false for the deploy regression.
    pub attack: bool,
    /// Start of the window in milliseconds since the Unix epoch, included.
    pub start_ms: i64,
    /// End of the window in milliseconds since the Unix epoch, excluded.
    pub end_ms: i64,
    /// Start of the window, RFC 3339 UTC.
    pub start: String,
    /// End of the window, RFC 3339 UTC.
    pub end: String,
    /// Milliseconds the route is slow at the start of each period, for a deploy regression
    /// with `slow_for_s` and `every_s`. Absent when the effects last the whole window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_for_ms: Option<i64>,
    /// Length of each period in milliseconds. Periods start at `start_ms`, and the last one is
    /// cut off at `end_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<i64>,
    /// The service of the route the scenario targets.
    pub service: String,
    /// The HTTP method of the route.
    pub method: String,
    /// The route template.
    pub route: String,
    /// Addresses of the attacking clients, empty for the deploy regression.
    pub clients: Vec<String>,
    /// Principals the attackers signed in as, empty for most kinds.
    pub principals: Vec<String>,
    /// Number of events the attackers sent.
    pub attacker_events: u64,
    /// Ids of the shipped rules expected to report the scenario.
    pub expected_rules: Vec<String>,
    /// The scenario's effects.
    pub effects: Effects,
}

/// The known effects of a scenario. A field is absent when the scenario has no such effect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effects {
    /// Factor applied to the latency of every request to the route during the window, so
    /// every latency quantile of the route scales by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_factor: Option<f64>,
    /// Share of every request to the route that gets 503 during the window, in place of the
    /// route's baseline 5xx rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_5xx_rate: Option<f64>,
    /// Mean requests per minute of all attackers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_requests_per_minute: Option<f64>,
    /// The status of every attacker request, when it is always the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_status: Option<u16>,
    /// Share of attacker requests that get 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_404_share: Option<f64>,
    /// Share of attacker requests that get a 5xx status, before any route-wide 5xx rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacker_5xx_share: Option<f64>,
}

impl Label {
    /// Builds the label of `scenario` with its attackers' identities and event count.
    pub(super) fn new(
        scenario: &Scenario,
        run_start_ms: i64,
        clients: Vec<String>,
        principals: Vec<String>,
        attacker_events: u64,
    ) -> Label {
        let (start_ms, end_ms) = scenario.window_ms(run_start_ms);
        let route = &ROUTES[scenario.route()];
        let period_ms = match scenario {
            Scenario::DeployRegression(s) => s.period_s().map(|(slow_for_s, every_s)| {
                ((slow_for_s * 1_000) as i64, (every_s * 1_000) as i64)
            }),
            _ => None,
        };
        Label {
            name: scenario.name().to_string(),
            kind: scenario.kind().to_string(),
            attack: scenario.is_attack(),
            start_ms,
            end_ms,
            start: rfc3339(start_ms),
            end: rfc3339(end_ms),
            slow_for_ms: period_ms.map(|(slow_for_ms, _)| slow_for_ms),
            every_ms: period_ms.map(|(_, every_ms)| every_ms),
            service: route.service.to_string(),
            method: route.method.to_string(),
            route: route.template.to_string(),
            clients,
            principals,
            attacker_events,
            expected_rules: scenario
                .expected_rules()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            effects: effects(scenario),
        }
    }

    /// Returns true when `time_ms` lies in the window.
    pub fn contains(&self, time_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&time_ms)
    }

    /// Returns true when the route-wide effects, `latency_factor` and `route_5xx_rate`, apply
    /// at `time_ms`: inside the window and, when the label has a period, inside the slow part
    /// of one.
    pub fn effects_active_at(&self, time_ms: i64) -> bool {
        if !self.contains(time_ms) {
            return false;
        }
        match (self.slow_for_ms, self.every_ms) {
            // A period of 0 ms, which the generator never writes, has no slow part.
            (Some(slow_for_ms), Some(every_ms)) => (time_ms - self.start_ms)
                .checked_rem(every_ms)
                .is_some_and(|offset| offset < slow_for_ms),
            _ => true,
        }
    }
}

fn effects(scenario: &Scenario) -> Effects {
    match scenario {
        Scenario::CredentialStuffing(s) => Effects {
            latency_factor: Some(s.latency_factor),
            attacker_requests_per_minute: Some(
                s.requests_per_client_per_minute * f64::from(s.clients),
            ),
            attacker_status: Some(401),
            ..Effects::default()
        },
        Scenario::ObjectEnumeration(s) => Effects {
            attacker_requests_per_minute: Some(s.requests_per_minute),
            attacker_404_share: Some(1.0 - s.found_share),
            ..Effects::default()
        },
        Scenario::InjectionCampaign(s) => Effects {
            attacker_requests_per_minute: Some(
                s.requests_per_client_per_minute * f64::from(s.clients),
            ),
            attacker_5xx_share: Some(s.error_5xx_share),
            ..Effects::default()
        },
        Scenario::Scraper(s) => Effects {
            route_5xx_rate: Some(s.route_5xx_rate),
            attacker_requests_per_minute: Some(s.requests_per_minute),
            ..Effects::default()
        },
        Scenario::DeployRegression(s) => Effects {
            latency_factor: Some(s.latency_factor),
            ..Effects::default()
        },
    }
}

/// Writes one label per line.
pub fn write_labels(labels: &[Label], mut output: impl Write) -> io::Result<()> {
    for label in labels {
        serde_json::to_writer(&mut output, label)?;
        output.write_all(b"\n")?;
    }
    output.flush()
}

/// Reads labels written by [`write_labels`].
pub fn read_labels(text: &str) -> Result<Vec<Label>, serde_json::Error> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

fn rfc3339(time_ms: i64) -> String {
    DateTime::from_timestamp_millis(time_ms)
        .expect("validated run times lie within chrono's range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
