//! Labelled attack scenarios: realistic API traffic with attacks at known times, each with a
//! known effect on the KPIs of its route.
//!
//! A [`ScenarioGenerator`] yields the events of one run in time order. Normal traffic goes to
//! three services (`shop`, `accounts`, `payments`) at a rate that follows the time of day.
//! The [`Plan`]'s scenarios add attackers, each a client that sends its own Poisson stream of
//! requests inside its scenario's window, and effects that change every request to a route
//! during a window, or during the first part of each period of it: a latency factor or a 5xx
//! rate. Each scenario gets a [`Label`] with its window, route, attacker identities and
//! expected effects, so tests can check what feedloop reports against what happened.
//!
//! The events depend only on the [`ScenarioConfig`] and [`SCENARIO_VERSION`]. Normal traffic
//! draws from its own random stream and every attacker from another, and an effect never
//! changes which values are drawn. So adding or removing a scenario changes normal calls only
//! on its route during its window. The other scenarios' attackers may change, because their
//! addresses and random streams follow plan order.
//!
//! Events are written in time order, with no disorder, because every label window must hold
//! exactly its attackers' events.
//!
//! NOTE: latencies, sizes and arrival gaps go through the platform's `ln`, `exp`, `cos` and
//! `powf`, so another platform may produce slightly different values from the same seed.

mod attackers;
pub mod avro;
mod labels;
pub mod output;
mod plan;
mod traffic;

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use feedloop_connectors::delivery::render::clean;
use feedloop_rules::ApiEvent;

pub use labels::{read_labels, write_labels, Effects, Label};
pub use plan::{
    CredentialStuffing, DeployRegression, InjectionCampaign, ObjectEnumeration, Plan, Scenario,
    Scraper, DEFAULT_REGRESSION_ROUTE,
};
pub use traffic::MAX_CLIENTS;

use attackers::{AddressPools, Attacker};
use traffic::{Call, Population, MAX_LATENCY_MS, ROUTES};

/// The version of scenario traffic. It changes whenever the same configuration would produce
/// different bytes.
pub const SCENARIO_VERSION: u32 = 1;

/// The minimum length of a run, in milliseconds of event time: 1 minute.
pub const MIN_DURATION_MS: i64 = 60_000;

/// The maximum length of a run, in milliseconds of event time: 7 days.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;

/// The latest end of a run, in milliseconds since the Unix epoch: the last millisecond of the
/// year 9999, because labels print times in RFC 3339, whose years have four digits.
pub const MAX_END_MS: i64 = 253_402_300_799_999;

/// The highest mean rate of normal traffic, in events per second of event time.
pub const MAX_MEAN_RATE: f64 = 100_000.0;

/// Random stream ids for [`ChaCha8Rng::set_stream`]. Attacker `j` of scenario `i` uses
/// `ATTACKER_STREAMS + (i << 16) + j`.
const TRAFFIC_STREAM: u64 = 1;
const IDENTITY_STREAM: u64 = 2;
const AVRO_MARKER_STREAM: u64 = 3;
const ATTACKER_STREAMS: u64 = 1 << 32;

/// Options of one scenario run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Start of the run, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Length of the run in milliseconds of event time, at most [`MAX_DURATION_MS`].
    pub duration_ms: i64,
    /// Mean rate of normal traffic over a day, in events per second of event time.
    pub mean_rate_per_second: f64,
    /// How far the rate swings with the time of day, from 0 (flat) to below 1: the rate is
    /// `mean × (1 + amplitude × cos(2π (hour − peak_hour) / 24))`.
    pub diurnal_amplitude: f64,
    /// Hour of the day (UTC, from 0 to 24) at which normal traffic peaks.
    pub peak_hour_utc: f64,
    /// Number of distinct normal clients, at most [`MAX_CLIENTS`].
    pub clients: u32,
    /// The maximum number of events of a run. A configuration whose expected count is higher
    /// is rejected, and the generator stops at this count in any case.
    pub max_events: u64,
    /// The scenarios.
    pub plan: Plan,
}

impl Default for ScenarioConfig {
    fn default() -> ScenarioConfig {
        ScenarioConfig {
            seed: 1,
            // 2025-06-02T08:00:00Z
            start_ms: 1_748_851_200_000,
            duration_ms: 4 * 3_600_000,
            mean_rate_per_second: 10.0,
            diurnal_amplitude: 0.4,
            peak_hour_utc: 15.0,
            clients: 2_000,
            max_events: 5_000_000,
            plan: Plan::default(),
        }
    }
}

impl ScenarioConfig {
    /// Checks every value against its range and the plan against the run.
    pub fn validate(&self) -> Result<(), InvalidScenario> {
        if !(MIN_DURATION_MS..=MAX_DURATION_MS).contains(&self.duration_ms) {
            return Err(InvalidScenario::new(
                "duration_ms",
                self.duration_ms.to_string(),
                format!("expected 1 minute to 7 days ({MAX_DURATION_MS} ms)"),
            ));
        }
        // The whole run, not only its start, must end before the year 10000.
        let end_ms = self.start_ms.saturating_add(self.duration_ms);
        if self.start_ms < 0 || end_ms > MAX_END_MS {
            return Err(InvalidScenario::new(
                "start_ms",
                self.start_ms.to_string(),
                "expected a run from 1970 that ends before the year 10000",
            ));
        }
        let rate = self.mean_rate_per_second;
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_MEAN_RATE) {
            return Err(InvalidScenario::new(
                "mean_rate_per_second",
                rate.to_string(),
                format!("expected a rate above 0 and at most {MAX_MEAN_RATE}, such as 10"),
            ));
        }
        if !(0.0..1.0).contains(&self.diurnal_amplitude) {
            return Err(InvalidScenario::new(
                "diurnal_amplitude",
                self.diurnal_amplitude.to_string(),
                "expected at least 0 and below 1, such as 0.4",
            ));
        }
        if !(0.0..=24.0).contains(&self.peak_hour_utc) {
            return Err(InvalidScenario::new(
                "peak_hour_utc",
                self.peak_hour_utc.to_string(),
                "expected an hour from 0 to 24, such as 15",
            ));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(InvalidScenario::new(
                "clients",
                self.clients.to_string(),
                format!("expected from 1 to {MAX_CLIENTS} clients"),
            ));
        }
        self.plan.validate((self.duration_ms / 1_000) as u64)?;
        self.validate_addresses()?;

        let expected = self.expected_events_bound();
        if expected > self.max_events as f64 {
            return Err(InvalidScenario::new(
                "max_events",
                self.max_events.to_string(),
                format!(
                    "the run may make up to about {expected:.0} events; lower the rate or the \
                     duration, or raise max_events"
                ),
            ));
        }
        Ok(())
    }

    /// Returns an upper estimate of the events a run makes: normal traffic at its peak rate
    /// for the whole run, plus every attacker at its mean rate for its window.
    pub fn expected_events_bound(&self) -> f64 {
        let seconds = self.duration_ms as f64 / 1_000.0;
        let normal = self.mean_rate_per_second * (1.0 + self.diurnal_amplitude) * seconds;
        let attacks: f64 = self
            .plan
            .scenarios
            .iter()
            .map(|s| {
                let (start, end) = s.window_ms(0);
                let per_minute = attacker_requests_per_minute(s);
                per_minute * (end - start) as f64 / 60_000.0
            })
            .sum();
        // Poisson counts rarely exceed their mean by more than a few standard deviations.
        let total = normal + attacks;
        total + 6.0 * total.sqrt()
    }

    fn validate_addresses(&self) -> Result<(), InvalidScenario> {
        let demand = AddressPools::demand(&self.plan.scenarios);
        let ranges = ["203.0.113.0/24", "192.0.2.0/24", "198.51.100.0/24"];
        for (needed, range) in demand.into_iter().zip(ranges) {
            if needed > 254 {
                return Err(InvalidScenario::new(
                    "clients",
                    needed.to_string(),
                    format!("the plan needs more than the 254 attacker addresses of {range}"),
                ));
            }
        }
        Ok(())
    }

    /// Returns the 16-byte sync marker of the run's Avro container file.
    pub fn avro_marker(&self) -> [u8; 16] {
        let mut marker = [0; 16];
        stream(self.seed, AVRO_MARKER_STREAM).fill(&mut marker);
        marker
    }
}

/// Returns the mean requests per minute of all attackers of a scenario together.
fn attacker_requests_per_minute(scenario: &Scenario) -> f64 {
    match scenario {
        Scenario::CredentialStuffing(s) => s.requests_per_client_per_minute * f64::from(s.clients),
        Scenario::InjectionCampaign(s) => s.requests_per_client_per_minute * f64::from(s.clients),
        Scenario::ObjectEnumeration(s) => s.requests_per_minute,
        Scenario::Scraper(s) => s.requests_per_minute,
        Scenario::DeployRegression(_) => 0.0,
    }
}

/// A configuration or plan value outside its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidScenario {
    field: &'static str,
    value: String,
    /// The name of the plan's scenario the value belongs to, if any.
    scenario: Option<String>,
    expected: String,
}

impl InvalidScenario {
    fn new(field: &'static str, value: String, expected: impl Into<String>) -> InvalidScenario {
        InvalidScenario {
            field,
            value,
            scenario: None,
            expected: expected.into(),
        }
    }

    /// Returns the error for a value of the plan's scenario `scenario`.
    fn of_scenario(
        field: &'static str,
        value: String,
        scenario: &str,
        expected: impl Into<String>,
    ) -> InvalidScenario {
        InvalidScenario {
            scenario: Some(scenario.to_string()),
            ..InvalidScenario::new(field, value, expected)
        }
    }

    /// Returns the name of the invalid field, as [`ScenarioConfig`] or the plan's JSON names it.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

/// Returns a value for an error message: escaped by [`clean`], because it can come from a plan
/// file or the command line, and quoted when empty so that the message still shows it.
fn shown(value: &str) -> String {
    if value.is_empty() {
        "\"\"".to_string()
    } else {
        clean(value)
    }
}

impl fmt::Display for InvalidScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {}", self.field, shown(&self.value))?;
        if let Some(scenario) = &self.scenario {
            write!(f, " of {}", shown(scenario))?;
        }
        write!(f, ": {}", self.expected)
    }
}

impl std::error::Error for InvalidScenario {}

/// One generated event, and the index of the scenario whose attacker sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioEvent {
    /// The call.
    pub event: ApiEvent,
    /// Index into the plan's scenarios (and the labels) of the attacker's scenario, or
    /// `None` for normal traffic.
    pub scenario: Option<usize>,
}

/// A change to every request to one route during a window, or during the first part of each
/// period of it.
#[derive(Clone, Copy, Debug)]
struct RouteEffect {
    route: usize,
    start_ms: i64,
    end_ms: i64,
    /// The active time and the length of each period in milliseconds, or `None` when the
    /// effect is active for the whole window.
    period_ms: Option<(i64, i64)>,
    latency_factor: f64,
    route_5xx_rate: Option<f64>,
}

impl RouteEffect {
    /// Returns true when the effect changes a call to `route` at `time_ms`.
    fn is_active(&self, route: usize, time_ms: i64) -> bool {
        if route != self.route || !(self.start_ms..self.end_ms).contains(&time_ms) {
            return false;
        }
        match self.period_ms {
            None => true,
            Some((active_ms, every_ms)) => (time_ms - self.start_ms) % every_ms < active_ms,
        }
    }
}

/// One source of arrivals: normal traffic, or one attacker.
struct Source {
    /// The next arrival, in milliseconds since the Unix epoch.
    next_ms: f64,
    /// The end of the source's window, excluded.
    end_ms: f64,
    rng: ChaCha8Rng,
    /// The scenario index and the attacker, or `None` for normal traffic.
    attacker: Option<(usize, Attacker)>,
}

/// An iterator over the events of one [`ScenarioConfig`], in time order.
pub struct ScenarioGenerator {
    config: ScenarioConfig,
    population: Population,
    sources: Vec<Source>,
    effects: Vec<RouteEffect>,
    /// Attacker clients and principals per scenario, in plan order.
    identities: Vec<(Vec<String>, Vec<String>)>,
    /// Events sent by each scenario's attackers so far.
    attacker_events: Vec<u64>,
    emitted: u64,
    truncated: bool,
}

impl ScenarioGenerator {
    /// Creates a generator after validating the configuration.
    pub fn new(config: ScenarioConfig) -> Result<ScenarioGenerator, InvalidScenario> {
        config.validate()?;
        let end_ms = (config.start_ms + config.duration_ms) as f64;
        let mut normal = Source {
            next_ms: config.start_ms as f64,
            end_ms,
            rng: stream(config.seed, TRAFFIC_STREAM),
            attacker: None,
        };
        normal.next_ms += normal_gap_ms(&config, &mut normal.rng, normal.next_ms);
        let mut sources = vec![normal];

        let mut identity_rng = stream(config.seed, IDENTITY_STREAM);
        let mut pools = AddressPools::new(&mut identity_rng);
        let mut identities = Vec::new();
        let mut effects = Vec::new();
        for (index, scenario) in config.plan.scenarios.iter().enumerate() {
            let (start_ms, end_ms) = scenario.window_ms(config.start_ms);
            let attackers = attackers::attackers(scenario, &mut pools, &mut identity_rng);
            identities.push(identities_of(&attackers));
            for (number, attacker) in attackers.into_iter().enumerate() {
                let id = ATTACKER_STREAMS + ((index as u64) << 16) + number as u64;
                let mut rng = stream(config.seed, id);
                let next_ms = start_ms as f64 + exponential(&mut rng) / attacker.rate_per_ms;
                sources.push(Source {
                    next_ms,
                    end_ms: end_ms as f64,
                    rng,
                    attacker: Some((index, attacker)),
                });
            }
            if let Some(effect) = route_effect(scenario, start_ms, end_ms) {
                effects.push(effect);
            }
        }

        Ok(ScenarioGenerator {
            population: Population::new(config.seed, config.clients),
            attacker_events: vec![0; config.plan.scenarios.len()],
            config,
            sources,
            effects,
            identities,
            emitted: 0,
            truncated: false,
        })
    }

    /// Returns the configuration the generator runs.
    pub fn config(&self) -> &ScenarioConfig {
        &self.config
    }

    /// Returns the labels of the plan's scenarios, with the attacker events sent so far.
    pub fn labels(&self) -> Vec<Label> {
        self.config
            .plan
            .scenarios
            .iter()
            .zip(&self.identities)
            .zip(&self.attacker_events)
            .map(|((scenario, (clients, principals)), &events)| {
                Label::new(
                    scenario,
                    self.config.start_ms,
                    clients.clone(),
                    principals.clone(),
                    events,
                )
            })
            .collect()
    }

    /// Returns true when the generator stopped at `max_events` before the end of the run.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Returns the index of the source with the earliest arrival before its end, the first
    /// such source on a tie.
    fn next_source(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (index, source) in self.sources.iter().enumerate() {
            if source.next_ms >= source.end_ms {
                continue;
            }
            if best.is_none_or(|b| source.next_ms < self.sources[b].next_ms) {
                best = Some(index);
            }
        }
        best
    }

    /// Applies the effects active on the call's route at its time, then sets its status.
    fn apply_effects(&self, mut call: Call) -> ApiEvent {
        let time_ms = call.event.time_ms;
        let mut status = call
            .event
            .status
            .expect("every call has a status before its effects");
        for effect in &self.effects {
            if !effect.is_active(call.route, time_ms) {
                continue;
            }
            if let Some(latency) = call.event.latency_ms.as_mut() {
                *latency = (*latency * effect.latency_factor).min(MAX_LATENCY_MS);
            }
            if let Some(rate) = effect.route_5xx_rate {
                status = if call.effect_roll < rate {
                    503
                } else if status >= 500 {
                    ROUTES[call.route].success_status
                } else {
                    status
                };
            }
        }
        call.finish(status)
    }
}

impl Iterator for ScenarioGenerator {
    type Item = ScenarioEvent;

    fn next(&mut self) -> Option<ScenarioEvent> {
        let index = self.next_source()?;
        if self.emitted == self.config.max_events {
            self.truncated = true;
            return None;
        }
        let config = &self.config;
        let source = &mut self.sources[index];
        let time_ms = source.next_ms.floor() as i64;
        let (call, scenario) = match &mut source.attacker {
            None => {
                let call = self.population.next_call(&mut source.rng, time_ms);
                source.next_ms += normal_gap_ms(config, &mut source.rng, source.next_ms);
                (call, None)
            }
            Some((scenario, attacker)) => {
                let call = attacker.next_call(&mut source.rng, time_ms);
                source.next_ms += exponential(&mut source.rng) / attacker.rate_per_ms;
                (call, Some(*scenario))
            }
        };
        if let Some(scenario) = scenario {
            self.attacker_events[scenario] += 1;
        }
        self.emitted += 1;
        Some(ScenarioEvent {
            event: self.apply_effects(call),
            scenario,
        })
    }
}

fn identities_of(attackers: &[Attacker]) -> (Vec<String>, Vec<String>) {
    let clients = attackers.iter().map(|a| a.client.clone()).collect();
    let principals = attackers
        .iter()
        .filter_map(|a| a.principal().map(str::to_string))
        .collect();
    (clients, principals)
}

fn route_effect(scenario: &Scenario, start_ms: i64, end_ms: i64) -> Option<RouteEffect> {
    let (latency_factor, route_5xx_rate, period_s) = match scenario {
        Scenario::CredentialStuffing(s) => (s.latency_factor, None, None),
        Scenario::DeployRegression(s) => (s.latency_factor, None, s.period_s()),
        Scenario::Scraper(s) => (1.0, Some(s.route_5xx_rate), None),
        Scenario::ObjectEnumeration(_) | Scenario::InjectionCampaign(_) => return None,
    };
    Some(RouteEffect {
        route: scenario.route(),
        start_ms,
        end_ms,
        period_ms: period_s
            .map(|(active_s, every_s)| ((active_s * 1_000) as i64, (every_s * 1_000) as i64)),
        latency_factor,
        route_5xx_rate,
    })
}

/// Draws the gap to the next normal arrival after `time_ms`, at the rate of that time of day.
fn normal_gap_ms(config: &ScenarioConfig, rng: &mut ChaCha8Rng, time_ms: f64) -> f64 {
    let hour = (time_ms / 3_600_000.0).rem_euclid(24.0);
    let phase = std::f64::consts::TAU * (hour - config.peak_hour_utc) / 24.0;
    let per_second = config.mean_rate_per_second * (1.0 + config.diurnal_amplitude * phase.cos());
    exponential(rng) * 1_000.0 / per_second
}

/// Draws an exponential value with mean 1.
fn exponential(rng: &mut ChaCha8Rng) -> f64 {
    // `1 - random()` lies in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln()
}

/// Creates one of the independent random streams of a seed.
fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

#[cfg(test)]
mod tests;
