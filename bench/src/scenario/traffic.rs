//! Normal traffic of a scenario run: three services, their routes, and a client population.
//!
//! Every normal call picks a route by weight and a client from a skewed population, then draws
//! its status from the route's baseline 4xx and 5xx rates and its latency from the route's
//! distribution: a log-normal body with a Pareto tail that starts at the body's 99th
//! percentile. A client keeps its address, principal, user agent and region for the whole run.
//!
//! A [`Call`] carries every random draw an event needs, including the ones only a scenario's
//! effect uses, so each call makes the same draws whether or not an effect is active. An
//! effect therefore changes the events on its route and window and nothing else.
//!
//! Normal clients use 198.18.0.0/15 (reserved for benchmarks) and 2001:db8:1::/48, and
//! normal principals are `usr_` with 8 hex digits below `80000000`. Attackers use the IPv4
//! documentation ranges and principals from `80000000` up, so no attacker identity ever
//! appears in normal traffic.

use rand::Rng;

use feedloop_rules::ApiEvent;

use crate::gen::{log_normal, pick_weighted};

/// The maximum latency of a call in milliseconds, the gateway's timeout.
pub(super) const MAX_LATENCY_MS: f64 = 30_000.0;

/// The exponent of the Pareto tail of latencies. Below 2 the tail has no finite variance.
const PARETO_SHAPE: f64 = 1.6;

/// The standard normal quantile of 0.99, where a route's Pareto tail starts.
const Z_99: f64 = 2.326_348;

/// The maximum number of normal clients: the addresses of 198.18.0.0/15 but the first.
pub const MAX_CLIENTS: u32 = (1 << 17) - 1;

/// The exponent that skews client choice towards low indexes.
const CLIENT_SKEW: f64 = 1.3;

/// The share of calls to public routes made without signing in.
const ANONYMOUS_SHARE: f64 = 0.5;

/// The highest normal principal number. Attacker principals lie above it.
pub(super) const MAX_NORMAL_PRINCIPAL: u32 = 0x7fff_ffff;

/// The form of an id in a route's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IdKind {
    /// No id in the path.
    None,
    /// A decimal number in a range.
    Number(u64, u64),
    /// A random UUID.
    Uuid,
}

/// The query string of a route's normal calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryKind {
    None,
    /// Paging and sorting of a list.
    Listing,
    /// A free-text search term.
    Search,
    /// Paging of orders in one state.
    OrderFilter,
}

/// The client errors a route returns, in rough order of frequency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ErrorMix {
    /// Wrong passwords and malformed requests.
    Login,
    /// Missing objects, expired tokens and objects of other users.
    Object,
    /// Invalid bodies and expired tokens.
    Write,
    /// Bad parameters, expired tokens and rate limits.
    Read,
}

/// One route of one service and the shape of its normal calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    pub service: &'static str,
    pub method: &'static str,
    /// The route template as the gateway logs it.
    pub template: &'static str,
    pub id: IdKind,
    pub query: QueryKind,
    /// Relative share of normal calls.
    pub weight: u32,
    pub success_status: u16,
    /// Median latency of the log-normal body, in milliseconds.
    pub latency_median_ms: f64,
    /// Standard deviation of the latency's logarithm.
    pub latency_sigma: f64,
    /// Share of calls whose latency comes from the Pareto tail.
    pub tail_share: f64,
    /// Baseline share of 4xx responses.
    pub error_4xx_rate: f64,
    /// Baseline share of 5xx responses.
    pub error_5xx_rate: f64,
    pub errors: ErrorMix,
    /// Median body size of a request, 0 for calls without a body.
    pub request_body_bytes: f64,
    /// Median body size of a successful response.
    pub response_bytes: f64,
    /// Whether callers may be anonymous.
    pub public: bool,
}

const fn route(
    service: &'static str,
    method: &'static str,
    template: &'static str,
    weight: u32,
    latency_median_ms: f64,
) -> Route {
    Route {
        service,
        method,
        template,
        id: IdKind::None,
        query: QueryKind::None,
        weight,
        success_status: 200,
        latency_median_ms,
        latency_sigma: 0.5,
        tail_share: 0.005,
        error_4xx_rate: 0.01,
        error_5xx_rate: 0.002,
        errors: ErrorMix::Read,
        request_body_bytes: 0.0,
        response_bytes: 1_500.0,
        public: false,
    }
}

impl Route {
    const fn id(self, id: IdKind) -> Route {
        Route { id, ..self }
    }

    const fn query(self, query: QueryKind) -> Route {
        Route { query, ..self }
    }

    const fn writes(self, success_status: u16, request_body_bytes: f64) -> Route {
        Route {
            success_status,
            request_body_bytes,
            errors: ErrorMix::Write,
            ..self
        }
    }

    const fn shape(self, sigma: f64, tail_share: f64) -> Route {
        Route {
            latency_sigma: sigma,
            tail_share,
            ..self
        }
    }

    const fn errors(self, mix: ErrorMix, rate_4xx: f64, rate_5xx: f64) -> Route {
        Route {
            errors: mix,
            error_4xx_rate: rate_4xx,
            error_5xx_rate: rate_5xx,
            ..self
        }
    }

    const fn response(self, response_bytes: f64) -> Route {
        Route {
            response_bytes,
            ..self
        }
    }

    const fn public(self) -> Route {
        Route {
            public: true,
            ..self
        }
    }

    /// Returns a concrete path with the id filled in.
    pub fn path(&self, rng: &mut impl Rng) -> String {
        match self.id {
            IdKind::None => self.template.to_string(),
            IdKind::Number(low, high) => self.path_with(&rng.random_range(low..=high).to_string()),
            IdKind::Uuid => self.path_with(&uuid(rng)),
        }
    }

    /// Returns the path with `{id}` replaced by `id`.
    pub fn path_with(&self, id: &str) -> String {
        self.template.replace("{id}", id)
    }

    /// Draws a latency in milliseconds: log-normal, or from the Pareto tail.
    pub fn latency_ms(&self, rng: &mut impl Rng) -> f64 {
        let tail_roll: f64 = rng.random();
        let body = log_normal(rng, self.latency_median_ms, self.latency_sigma);
        let tail_start = self.latency_median_ms * (Z_99 * self.latency_sigma).exp();
        // `1 - random()` lies in (0, 1], so the power stays finite.
        let tail = tail_start / (1.0 - rng.random::<f64>()).powf(1.0 / PARETO_SHAPE);
        let latency = if tail_roll < self.tail_share {
            tail
        } else {
            body
        };
        latency.min(MAX_LATENCY_MS)
    }
}

/// Every route of the run. Indexes below name the routes that scenarios target.
pub(super) const ROUTES: &[Route] = &[
    // shop: browsing is public, but carts and orders need a session.
    route("shop", "GET", "/api/products", 16, 24.0)
        .query(QueryKind::Listing)
        .response(6_000.0)
        .public(),
    route("shop", "GET", "/api/products/{id}", 22, 9.0)
        .id(IdKind::Number(1, 50_000))
        .errors(ErrorMix::Object, 0.01, 0.002)
        .response(2_200.0)
        .public(),
    route("shop", "GET", "/api/search", 8, 45.0)
        .query(QueryKind::Search)
        .shape(0.6, 0.01)
        .response(7_000.0)
        .public(),
    route("shop", "GET", "/api/cart", 6, 12.0).response(1_400.0),
    route("shop", "POST", "/api/cart/items", 3, 20.0).writes(201, 180.0),
    route("shop", "GET", "/api/orders", 5, 30.0)
        .query(QueryKind::OrderFilter)
        .response(4_000.0),
    route("shop", "GET", "/api/orders/{id}", 8, 14.0)
        .id(IdKind::Number(1_000_000, 4_000_000))
        .errors(ErrorMix::Object, 0.012, 0.002)
        .response(1_800.0),
    route("shop", "POST", "/api/orders", 2, 85.0)
        .writes(201, 900.0)
        .response(1_200.0),
    // accounts: logins hash the password, so they are slow and steady.
    route("accounts", "POST", "/api/auth/login", 3, 180.0)
        .writes(200, 120.0)
        .shape(0.25, 0.003)
        .errors(ErrorMix::Login, 0.05, 0.002)
        .response(900.0)
        .public(),
    route("accounts", "POST", "/api/auth/token/refresh", 3, 12.0)
        .writes(200, 700.0)
        .response(900.0),
    route("accounts", "GET", "/api/users/me", 6, 8.0).response(1_100.0),
    route("accounts", "PATCH", "/api/users/me", 1, 25.0)
        .writes(200, 400.0)
        .response(1_100.0),
    // payments: calls out to a payment provider.
    route("payments", "POST", "/api/payments", 2, 350.0)
        .writes(201, 600.0)
        .shape(0.4, 0.01)
        .errors(ErrorMix::Write, 0.02, 0.005)
        .response(700.0),
    route("payments", "GET", "/api/payments/{id}", 2, 20.0)
        .id(IdKind::Uuid)
        .errors(ErrorMix::Object, 0.01, 0.002)
        .response(800.0),
    route("payments", "GET", "/api/payments/methods", 1, 15.0).response(600.0),
];

/// Index of `GET /api/products/{id}`, the scraper's route.
pub(super) const PRODUCT_ROUTE: usize = 1;

/// Index of `GET /api/search`, the injection campaign's route.
pub(super) const SEARCH_ROUTE: usize = 2;

/// Index of `GET /api/orders/{id}`, the object enumeration's route.
pub(super) const ORDER_ROUTE: usize = 6;

/// Index of `POST /api/auth/login`, the credential stuffing's route.
pub(super) const LOGIN_ROUTE: usize = 8;

/// Returns the index of the route written as `METHOD /template`, such as `GET /api/users/me`.
pub(super) fn route_index(name: &str) -> Option<usize> {
    let (method, template) = name.split_once(' ')?;
    ROUTES
        .iter()
        .position(|r| r.method == method && r.template == template)
}

/// User agents of normal clients and their relative shares. None names an attack tool.
const AGENTS: &[(&str, u32)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36", 30),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", 14),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0", 6),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36", 12),
    ("ShopApp/5.12.0 (iPhone; iOS 17.5; Scale/3.00)", 20),
    ("ShopApp/5.12.0 (Android 14; Pixel 8)", 14),
    ("shop-sdk-python/2.3.1", 4),
];

/// Regions and their relative shares.
const REGIONS: &[(&str, u32)] = &[("eu-west-1", 50), ("us-east-1", 35), ("ap-southeast-2", 15)];

/// Search terms of normal calls, none of which looks like an attack.
const SEARCH_TERMS: &[&str] = &[
    "shoes",
    "running+shoes",
    "laptop",
    "usb-c+cable",
    "coffee",
    "desk+lamp",
    "backpack",
    "headphones",
    "rain+jacket",
    "water+bottle",
    "phone+case",
    "gift+card",
];

const SORT_KEYS: &[&str] = &["price", "-price", "newest", "rating"];

const ORDER_STATES: &[&str] = &["open", "shipped", "delivered", "returned"];

/// A client of normal traffic.
#[derive(Clone, Debug)]
pub(super) struct Client {
    pub address: String,
    pub principal: String,
    pub agent: &'static str,
    pub region: &'static str,
}

/// One call before the scenarios' effects: the event with every draw an effect may need.
#[derive(Clone, Debug)]
pub(super) struct Call {
    /// The event, with its latency and status as drawn.
    pub event: ApiEvent,
    /// Index of the route in [`ROUTES`].
    pub route: usize,
    /// Body size of the response if the call succeeds.
    pub success_bytes: u64,
    /// Body size of the response if the call fails.
    pub error_bytes: u64,
    /// A uniform draw from [0, 1) that decides whether an effect's 5xx rate hits this call.
    pub effect_roll: f64,
}

impl Call {
    /// Draws a call to `route` at `time_ms` with the route's latency, sizes and labels. The
    /// caller sets the client, principal and status.
    pub fn draw(rng: &mut impl Rng, time_ms: i64, route: usize, region: &str) -> Call {
        let spec = &ROUTES[route];
        let event = ApiEvent {
            time_ms,
            service: spec.service.to_string(),
            method: spec.method.to_string(),
            route: spec.template.to_string(),
            path: spec.template.to_string(),
            latency_ms: Some(spec.latency_ms(rng)),
            request_bytes: Some(request_bytes(rng, spec.request_body_bytes)),
            trace_id: Some(hex(rng, 32)),
            labels: vec![
                ("env".to_string(), "prod".to_string()),
                ("region".to_string(), region.to_string()),
            ],
            ..ApiEvent::default()
        };
        let success_bytes = if spec.success_status == 204 {
            0
        } else {
            log_normal(rng, spec.response_bytes, 0.5) as u64
        };
        Call {
            event,
            route,
            success_bytes,
            error_bytes: rng.random_range(90..320),
            effect_roll: rng.random(),
        }
    }

    /// Sets the status and the response size that goes with it.
    pub fn finish(mut self, status: u16) -> ApiEvent {
        self.event.status = Some(status);
        self.event.response_bytes = Some(if status < 300 {
            self.success_bytes
        } else {
            self.error_bytes
        });
        self.event.latency_ms = self.event.latency_ms.map(round_micros);
        self.event
    }
}

/// The normal clients of a run.
pub(super) struct Population {
    clients: Vec<Client>,
}

impl Population {
    /// Builds `count` clients of a seed.
    pub fn new(seed: u64, count: u32) -> Population {
        let principals = (count * 3 / 4).max(1);
        let clients = (0..count)
            .map(|index| client(seed, index, principals))
            .collect();
        Population { clients }
    }

    /// Draws one normal call at `time_ms`.
    pub fn next_call(&self, rng: &mut impl Rng, time_ms: i64) -> Call {
        let route_index = pick_weighted(rng, ROUTES, |r| r.weight);
        let route = &ROUTES[route_index];
        let client = self.pick_client(rng);
        let anonymous = route.public && rng.random_bool(ANONYMOUS_SHARE);
        let status = baseline_status(rng, route, anonymous);

        let mut call = Call::draw(rng, time_ms, route_index, client.region);
        call.event.path = route.path(rng);
        call.event.query = normal_query(rng, route.query);
        call.event.client = client.address.clone();
        call.event.user_agent = Some(client.agent.to_string());
        // A login names its principal only once it succeeds.
        let signed_in = if route_index == LOGIN_ROUTE {
            status < 300
        } else {
            !anonymous
        };
        call.event.principal = signed_in.then(|| client.principal.clone());
        call.event.status = Some(status);
        call
    }

    fn pick_client(&self, rng: &mut impl Rng) -> &Client {
        let share = rng.random::<f64>().powf(CLIENT_SKEW);
        let index = (share * self.clients.len() as f64) as usize;
        &self.clients[index.min(self.clients.len() - 1)]
    }
}

/// Draws a status from the route's baseline rates. Anonymous callers are not rejected with
/// 401, because public routes do not ask them to sign in.
pub(super) fn baseline_status(rng: &mut impl Rng, route: &Route, anonymous: bool) -> u16 {
    let roll: f64 = rng.random();
    let pick = rng.random_range(0..100);
    if roll < route.error_5xx_rate {
        return match pick {
            0..=49 => 500,
            50..=74 => 502,
            _ => 503,
        };
    }
    if roll >= route.error_5xx_rate + route.error_4xx_rate {
        return route.success_status;
    }
    let status = match route.errors {
        ErrorMix::Login => [401, 400][usize::from(pick >= 90)],
        ErrorMix::Object => match pick {
            0..=59 => 404,
            60..=79 => 401,
            80..=89 => 403,
            _ => 400,
        },
        ErrorMix::Write => match pick {
            0..=49 => 422,
            50..=79 => 400,
            _ => 401,
        },
        ErrorMix::Read => match pick {
            0..=39 => 400,
            40..=79 => 401,
            _ => 429,
        },
    };
    if anonymous && status == 401 && route.errors != ErrorMix::Login {
        400
    } else {
        status
    }
}

/// Picks a region by weight.
pub(super) fn region(rng: &mut impl Rng) -> &'static str {
    REGIONS[pick_weighted(rng, REGIONS, |(_, weight)| *weight)].0
}

fn request_bytes(rng: &mut impl Rng, body_median_bytes: f64) -> u64 {
    let headers = rng.random_range(280..900);
    let body = if body_median_bytes > 0.0 {
        log_normal(rng, body_median_bytes, 0.5) as u64
    } else {
        0
    };
    headers + body
}

fn normal_query(rng: &mut impl Rng, kind: QueryKind) -> Option<String> {
    let page = rng.random_range(1..=8);
    let query = match kind {
        QueryKind::None => return None,
        QueryKind::Listing => {
            let sort = SORT_KEYS[rng.random_range(0..SORT_KEYS.len())];
            format!("page={page}&sort={sort}")
        }
        QueryKind::Search => {
            let term = SEARCH_TERMS[rng.random_range(0..SEARCH_TERMS.len())];
            format!("q={term}&page={page}")
        }
        QueryKind::OrderFilter => {
            let state = ORDER_STATES[rng.random_range(0..ORDER_STATES.len())];
            format!("status={state}&page={page}")
        }
    };
    Some(query)
}

/// Builds client `index` of a seed. The address depends only on the index, so no two clients
/// share one, and the other attributes come from a hash of the seed and the index.
fn client(seed: u64, index: u32, principals: u32) -> Client {
    let hash = mix(seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Multiplying by an odd number permutes the range and spreads neighbours apart. Index + 1
    // is below the range and never 0, so no client gets the network address 198.18.0.0.
    let spread = (index + 1).wrapping_mul(40_503) % (1 << 17);
    let address = if hash % 100 < 8 {
        format!("2001:db8:1::{:x}", spread + 1)
    } else {
        format!(
            "198.{}.{}.{}",
            18 + (spread >> 16),
            (spread >> 8) & 0xff,
            spread & 0xff
        )
    };
    let principal_number = (mix(seed ^ u64::from(index % principals)) >> 33) as u32;
    debug_assert!(principal_number <= MAX_NORMAL_PRINCIPAL);
    Client {
        address,
        principal: format!("usr_{principal_number:08x}"),
        agent: AGENTS[pick_by_hash(mix(hash), AGENTS)].0,
        region: REGIONS[pick_by_hash(mix(hash ^ 1), REGIONS)].0,
    }
}

/// Maps a hash to an index of a weight table, without a random generator.
fn pick_by_hash<T>(hash: u64, items: &[(T, u32)]) -> usize {
    let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut target = hash % total;
    for (index, (_, weight)) in items.iter().enumerate() {
        if target < u64::from(*weight) {
            return index;
        }
        target -= u64::from(*weight);
    }
    items.len() - 1
}

/// Hashes one number with the SplitMix64 finaliser.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rounds milliseconds to whole microseconds.
fn round_micros(latency_ms: f64) -> f64 {
    (latency_ms * 1_000.0).round() / 1_000.0
}

/// Returns `len` random lower-case hex digits.
fn hex(rng: &mut impl Rng, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(DIGITS[rng.random_range(0..16)]))
        .collect()
}

/// Returns a random version 4 UUID in its usual text form.
fn uuid(rng: &mut impl Rng) -> String {
    let variant = ['8', '9', 'a', 'b'][rng.random_range(0..4)];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        hex(rng, 3),
        hex(rng, 12)
    )
}
