//! Attackers: the clients of a scenario and the calls each one makes.
//!
//! Every attacking client is a separate source of Poisson arrivals at its scenario's rate,
//! from the start of the window to its end. Addresses are drawn without replacement from one
//! pool per documentation range, in plan order, so no two attackers share an address:
//! credential stuffing uses 203.0.113.0/24, injection campaigns 192.0.2.0/24, and enumeration
//! and scraping 198.51.100.0/24. None of these ranges appears in normal traffic.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::plan::Scenario;
use super::traffic::{
    region, Call, LOGIN_ROUTE, MAX_NORMAL_PRINCIPAL, ORDER_ROUTE, PRODUCT_ROUTE, ROUTES,
    SEARCH_ROUTE,
};
use crate::gen::{Encoding, ENCODINGS, SQL_PAYLOADS, XSS_PAYLOADS};

/// User agents that credential stuffing tools rotate through, posing as browsers.
const STUFFING_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/118.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36",
    "okhttp/4.9.3",
];

const SQLMAP_AGENT: &str = "sqlmap/1.8.5#stable (https://sqlmap.org)";
const SCRAPER_AGENT: &str = "Scrapy/2.11.2 (+https://scrapy.org)";
const ENUMERATION_AGENT: &str = "python-requests/2.31.0";

/// The highest product id. The scraper starts over from 1 after it.
const LAST_PRODUCT_ID: u64 = 50_000;

/// The payload families of an injection client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payloads {
    Sql,
    CrossSiteScripting,
    Both,
}

/// The behaviour of one attacker on each request.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Posts a guessed password to the login route, and fails.
    Stuffing,
    /// Requests the next order id as `principal`.
    Enumeration {
        principal: String,
        next_id: u64,
        found_share: f64,
    },
    /// Sends an injection payload in the search query.
    Injection {
        payloads: Payloads,
        encoding: Encoding,
        error_5xx_share: f64,
    },
    /// Fetches the next product page.
    Scraper { next_id: u64 },
}

/// One attacking client.
#[derive(Clone, Debug)]
pub(super) struct Attacker {
    pub client: String,
    /// Requests per millisecond of event time.
    pub rate_per_ms: f64,
    agent: &'static str,
    region: &'static str,
    behaviour: Behaviour,
}

impl Attacker {
    /// Returns the principal the attacker signs in as, if any.
    pub fn principal(&self) -> Option<&str> {
        match &self.behaviour {
            Behaviour::Enumeration { principal, .. } => Some(principal),
            _ => None,
        }
    }

    /// Draws the attacker's next call at `time_ms`.
    pub fn next_call(&mut self, rng: &mut ChaCha8Rng, time_ms: i64) -> Call {
        let client = self.client.clone();
        let agent = self.agent;
        let region = self.region;
        let mut call = match &mut self.behaviour {
            Behaviour::Stuffing => {
                let mut call = Call::draw(rng, time_ms, LOGIN_ROUTE, region);
                call.event.status = Some(401);
                call
            }
            Behaviour::Enumeration {
                principal,
                next_id,
                found_share,
            } => {
                let mut call = Call::draw(rng, time_ms, ORDER_ROUTE, region);
                call.event.path = ROUTES[ORDER_ROUTE].path_with(&next_id.to_string());
                call.event.principal = Some(principal.clone());
                let found = rng.random::<f64>() < *found_share;
                call.event.status = Some(if found { 200 } else { 404 });
                *next_id += 1;
                call
            }
            Behaviour::Injection {
                payloads,
                encoding,
                error_5xx_share,
            } => {
                let mut call = Call::draw(rng, time_ms, SEARCH_ROUTE, region);
                let sql = match payloads {
                    Payloads::Sql => true,
                    Payloads::CrossSiteScripting => false,
                    Payloads::Both => rng.random_bool(0.5),
                };
                let table = if sql { SQL_PAYLOADS } else { XSS_PAYLOADS };
                let payload = table[rng.random_range(0..table.len())];
                call.event.query = Some(format!("q={}&page=1", encoding.apply(payload)));
                let roll: f64 = rng.random();
                call.event.status = Some(if roll < *error_5xx_share {
                    500
                } else if roll < 0.5 + *error_5xx_share / 2.0 {
                    400
                } else {
                    200
                });
                call
            }
            Behaviour::Scraper { next_id } => {
                let mut call = Call::draw(rng, time_ms, PRODUCT_ROUTE, region);
                call.event.path = ROUTES[PRODUCT_ROUTE].path_with(&next_id.to_string());
                call.event.status = Some(200);
                *next_id = *next_id % LAST_PRODUCT_ID + 1;
                call
            }
        };
        call.event.client = client;
        call.event.user_agent = Some(agent.to_string());
        call
    }
}

/// Address pools of the documentation ranges, each drawn without replacement.
pub(super) struct AddressPools {
    stuffing: Vec<u8>,
    injection: Vec<u8>,
    single: Vec<u8>,
}

impl AddressPools {
    /// Shuffles the host numbers 1 to 254 of each range.
    pub fn new(rng: &mut ChaCha8Rng) -> AddressPools {
        let mut pool = || {
            let mut hosts: Vec<u8> = (1..=254).collect();
            hosts.shuffle(rng);
            hosts
        };
        AddressPools {
            stuffing: pool(),
            injection: pool(),
            single: pool(),
        }
    }

    /// Returns the number of addresses a plan needs from each pool.
    pub fn demand(scenarios: &[Scenario]) -> [u32; 3] {
        let mut demand = [0; 3];
        for scenario in scenarios {
            match scenario {
                Scenario::CredentialStuffing(s) => demand[0] += s.clients,
                Scenario::InjectionCampaign(s) => demand[1] += s.clients,
                Scenario::ObjectEnumeration(_) | Scenario::Scraper(_) => demand[2] += 1,
                Scenario::DeployRegression(_) => {}
            }
        }
        demand
    }

    fn take(pool: &mut Vec<u8>, network: &str) -> String {
        let host = pool
            .pop()
            .expect("plan validation keeps each pool's demand within its 254 addresses");
        format!("{network}.{host}")
    }
}

/// Builds the attackers of one scenario. The deploy regression has none.
pub(super) fn attackers(
    scenario: &Scenario,
    pools: &mut AddressPools,
    rng: &mut ChaCha8Rng,
) -> Vec<Attacker> {
    let per_minute = |rate: f64| rate / 60_000.0;
    match scenario {
        Scenario::CredentialStuffing(s) => (0..s.clients)
            .map(|index| Attacker {
                client: AddressPools::take(&mut pools.stuffing, "203.0.113"),
                rate_per_ms: per_minute(s.requests_per_client_per_minute),
                agent: STUFFING_AGENTS[index as usize % STUFFING_AGENTS.len()],
                region: region(rng),
                behaviour: Behaviour::Stuffing,
            })
            .collect(),
        Scenario::ObjectEnumeration(s) => {
            let number = MAX_NORMAL_PRINCIPAL + 1 + rng.random_range(0..MAX_NORMAL_PRINCIPAL);
            vec![Attacker {
                client: AddressPools::take(&mut pools.single, "198.51.100"),
                rate_per_ms: per_minute(s.requests_per_minute),
                agent: ENUMERATION_AGENT,
                region: region(rng),
                behaviour: Behaviour::Enumeration {
                    principal: format!("usr_{number:08x}"),
                    next_id: s.first_id,
                    found_share: s.found_share,
                },
            }]
        }
        Scenario::InjectionCampaign(s) => (0..s.clients)
            .map(|index| {
                let payloads = [Payloads::Sql, Payloads::CrossSiteScripting, Payloads::Both]
                    [index as usize % 3];
                let agent = match payloads {
                    Payloads::Sql => SQLMAP_AGENT,
                    Payloads::CrossSiteScripting => STUFFING_AGENTS[0],
                    Payloads::Both => ENUMERATION_AGENT,
                };
                Attacker {
                    client: AddressPools::take(&mut pools.injection, "192.0.2"),
                    rate_per_ms: per_minute(s.requests_per_client_per_minute),
                    agent,
                    region: region(rng),
                    behaviour: Behaviour::Injection {
                        payloads,
                        encoding: ENCODINGS[rng.random_range(0..ENCODINGS.len())],
                        error_5xx_share: s.error_5xx_share,
                    },
                }
            })
            .collect(),
        Scenario::Scraper(s) => vec![Attacker {
            client: AddressPools::take(&mut pools.single, "198.51.100"),
            rate_per_ms: per_minute(s.requests_per_minute),
            agent: SCRAPER_AGENT,
            region: region(rng),
            behaviour: Behaviour::Scraper {
                next_id: rng.random_range(1..=LAST_PRODUCT_ID),
            },
        }],
        Scenario::DeployRegression(_) => Vec::new(),
    }
}
