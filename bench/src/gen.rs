//! Synthetic API traffic: a seeded stream of [`ApiEvent`]s with a set share of attacks.
//!
//! A [`Generator`] yields [`GeneratedEvent`]s: normal calls to a handful of services, from a
//! few thousand clients and principals, mixed with attack campaigns that the shipped rule packs
//! detect. [`write_jsonl`] writes them in feedloop's native JSON schema, one record per line.
//!
//! The output depends only on the [`GeneratorConfig`] and [`GENERATOR_VERSION`], so one seed
//! always produces the same bytes. Separate random streams drive the schedule (which event is
//! an attack, and when it happens), the normal calls and the attacks. A change to how attacks
//! are built therefore leaves the normal calls of a run unchanged.
//!
//! Event times start at [`GeneratorConfig::start_ms`] and follow Poisson arrivals at
//! [`GeneratorConfig::rate_per_second`]. Each event is then moved back by a small delay, and a
//! few by up to [`MAX_DELAY_MS`], so the stream is slightly out of order, as it is after log
//! shipping. A consumer that allows less lateness than that counts some events as late.
//!
//! Attack events come in campaigns. A campaign is one client doing one thing, such as a run of
//! failed logins or a sweep of missing paths. The campaigns share the attack events between
//! them, so a campaign's requests are spread over a stretch of time that grows as the attack
//! share shrinks. With a very small share, a burst can spread past a rule's window and go
//! undetected. That happens in real traffic too.
//!
//! NOTE: arrival gaps, latencies, sizes and client choice go through `ln`, `exp`, `cos` and
//! `powf` from the platform's math library. The same seed can therefore produce slightly
//! different values on another platform, although the sequence of random draws is the same.

mod attack;
mod catalog;
mod jsonl;

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use feedloop_rules::ApiEvent;

pub use attack::{AttackKind, AttackLabel};
pub(crate) use attack::{Encoding, ENCODINGS, SQL_PAYLOADS, XSS_PAYLOADS};
pub use jsonl::{encode_jsonl, write_jsonl, WriteSummary};

use attack::Campaigns;
use catalog::Traffic;

/// The version of the generated traffic. It changes whenever the same configuration would
/// produce different bytes, so cached event files of different versions are never mixed up.
pub const GENERATOR_VERSION: u32 = 1;

/// The furthest an event's time is moved back from its arrival time, in milliseconds.
pub const MAX_DELAY_MS: i64 = 3_000;

/// The furthest most events are moved back, in milliseconds.
const USUAL_MAX_DELAY_MS: i64 = 40;

/// The share of events that are moved back by up to [`MAX_DELAY_MS`].
const LONG_DELAY_SHARE: f64 = 0.03;

/// Random stream ids for [`ChaCha8Rng::set_stream`].
const SCHEDULE_STREAM: u64 = 1;
const TRAFFIC_STREAM: u64 = 2;
const ATTACK_STREAM: u64 = 3;

/// Options of one generated run.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of events.
    pub events: u64,
    /// Share of events that belong to attack campaigns, from 0 to 1. The number of attack
    /// events is `events * attack_share`, rounded to the nearest integer.
    pub attack_share: f64,
    /// Mean arrival rate in events per second of event time.
    pub rate_per_second: f64,
    /// Time of the first arrival, in milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Number of distinct normal clients (addresses), at most [`MAX_CLIENTS`].
    pub clients: u32,
    /// Number of distinct principals (users and service accounts).
    pub principals: u32,
}

/// The maximum number of normal clients, set by the address range they are drawn from.
pub const MAX_CLIENTS: u32 = catalog::MAX_CLIENTS;

impl Default for GeneratorConfig {
    fn default() -> GeneratorConfig {
        GeneratorConfig {
            seed: 1,
            events: 100_000,
            attack_share: 0.01,
            rate_per_second: 1_000.0,
            // 2025-06-02T08:00:00Z
            start_ms: 1_748_851_200_000,
            clients: 6_000,
            principals: 4_000,
        }
    }
}

impl GeneratorConfig {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !(0.0..=1.0).contains(&self.attack_share) {
            return Err(InvalidConfig::new(
                "attack_share",
                self.attack_share.to_string(),
                "expected a share from 0 to 1, such as 0.01",
            ));
        }
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            return Err(InvalidConfig::new(
                "rate_per_second",
                self.rate_per_second.to_string(),
                "expected a positive number of events per second, such as 1000",
            ));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(InvalidConfig::new(
                "clients",
                self.clients.to_string(),
                format!("expected from 1 to {MAX_CLIENTS} clients"),
            ));
        }
        if self.principals == 0 {
            return Err(InvalidConfig::new(
                "principals",
                self.principals.to_string(),
                "expected at least 1 principal",
            ));
        }
        Ok(())
    }

    /// Returns the number of attack events a run produces.
    pub fn attack_events(&self) -> u64 {
        (self.events as f64 * self.attack_share).round() as u64
    }
}

/// A configuration value outside its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig {
    field: &'static str,
    value: String,
    expected: String,
}

impl InvalidConfig {
    fn new(field: &'static str, value: String, expected: impl Into<String>) -> InvalidConfig {
        InvalidConfig {
            field,
            value,
            expected: expected.into(),
        }
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {}: {}",
            self.field, self.value, self.expected
        )
    }
}

impl std::error::Error for InvalidConfig {}

/// One generated API call and, for attack traffic, what it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedEvent {
    /// The call. An empty `route` means that the record carries none, because the service's
    /// log has no route field or no route matched the path. The decoder then derives the route
    /// from the path.
    pub event: ApiEvent,
    /// The attack campaign the call belongs to, or `None` for normal traffic.
    pub attack: Option<AttackLabel>,
}

/// An iterator over the events of one [`GeneratorConfig`].
pub struct Generator {
    config: GeneratorConfig,
    schedule_rng: ChaCha8Rng,
    traffic_rng: ChaCha8Rng,
    attack_rng: ChaCha8Rng,
    traffic: Traffic,
    campaigns: Campaigns,
    emitted: u64,
    attacks_left: u64,
    arrival_ms: f64,
}

impl Generator {
    /// Creates a generator after validating the configuration.
    pub fn new(config: GeneratorConfig) -> Result<Generator, InvalidConfig> {
        config.validate()?;
        let traffic = Traffic::new(config.seed, config.clients, config.principals);
        let attacks_left = config.attack_events();
        let arrival_ms = config.start_ms as f64;
        Ok(Generator {
            schedule_rng: stream(config.seed, SCHEDULE_STREAM),
            traffic_rng: stream(config.seed, TRAFFIC_STREAM),
            attack_rng: stream(config.seed, ATTACK_STREAM),
            traffic,
            campaigns: Campaigns::default(),
            emitted: 0,
            attacks_left,
            arrival_ms,
            config,
        })
    }

    /// Returns the configuration the generator runs.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Advances the arrival clock and returns the next event's time, moved back by its delay.
    fn next_time_ms(&mut self) -> i64 {
        let mean_gap_ms = 1_000.0 / self.config.rate_per_second;
        let uniform: f64 = self.schedule_rng.random();
        // Gaps between arrivals are exponential. `1 - uniform` is never 0, so `ln` stays finite.
        self.arrival_ms += -(1.0 - uniform).ln() * mean_gap_ms;

        let max_delay = if self.schedule_rng.random_bool(LONG_DELAY_SHARE) {
            MAX_DELAY_MS
        } else {
            USUAL_MAX_DELAY_MS
        };
        let delay = self.schedule_rng.random_range(0..=max_delay);
        (self.arrival_ms as i64 - delay).max(self.config.start_ms)
    }

    /// Decides whether the next event is an attack, so that exactly the configured number of
    /// attack events is spread at random over the run (selection sampling).
    fn next_is_attack(&mut self) -> bool {
        let events_left = self.config.events - self.emitted;
        let attack = self.schedule_rng.random_range(0..events_left) < self.attacks_left;
        if attack {
            self.attacks_left -= 1;
        }
        attack
    }
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        if self.emitted == self.config.events {
            return None;
        }
        let time_ms = self.next_time_ms();
        let is_attack = self.next_is_attack();
        self.emitted += 1;

        let generated = if is_attack {
            self.campaigns.next_event(&mut self.attack_rng, time_ms)
        } else {
            GeneratedEvent {
                event: self.traffic.next_event(&mut self.traffic_rng, time_ms),
                attack: None,
            }
        };
        Some(generated)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.config.events - self.emitted).ok();
        (left.unwrap_or(usize::MAX), left)
    }
}

/// Creates one of the independent random streams of a seed.
fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// Draws a log-normal value from its median and the standard deviation of its logarithm.
pub(crate) fn log_normal(rng: &mut impl Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * standard_normal(rng)).exp()
}

/// Draws a standard normal value (Box-Muller transform).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    // `1 - random()` lies in (0, 1], so the logarithm is finite.
    let radius = (-2.0 * (1.0 - rng.random::<f64>()).ln()).sqrt();
    let angle = std::f64::consts::TAU * rng.random::<f64>();
    radius * angle.cos()
}

/// Draws an index from a table of weights.
///
/// # Panics
///
/// Panics when the weights sum to 0.
pub(crate) fn pick_weighted<T>(
    rng: &mut impl Rng,
    items: &[T],
    weight: impl Fn(&T) -> u32,
) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    assert!(total > 0, "a weight table has a positive total");
    let mut target = rng.random_range(0..total);
    for (index, item) in items.iter().enumerate() {
        let w = weight(item);
        if target < w {
            return index;
        }
        target -= w;
    }
    unreachable!("the target is below the total of the weights")
}

#[cfg(test)]
mod tests;
