//! Normal traffic: the services and routes, the client population and the status mix.
//!
//! Every normal call picks a route by weight, a client from a mildly skewed population, and
//! then its status, latency and sizes. A client keeps its address, user agent, principal and
//! region for the whole run, as a real device or integration does.
//!
//! Client addresses come from 198.18.0.0/15, the IPv4 range reserved for benchmarks, and from
//! 2001:db8::/32, the IPv6 documentation range. Health checks come from private 10.0.x.x
//! addresses. So generated files name no public host.
//! Normal traffic is kept clear of the shipped packs where it can be: no search term looks like
//! an attack, and few clients pile up 404s or 401s. Some rules still fire on it, such as
//! `login-abuse-distributed`, because many clients logging in is what normal traffic does.

use rand::Rng;

use feedloop_rules::ApiEvent;

use super::{log_normal, pick_weighted};

/// The number of addresses in 198.18.0.0/15.
const CLIENT_ADDRESSES: u32 = 1 << 17;

/// The maximum number of normal clients: every address of 198.18.0.0/15 but the network
/// address.
pub(super) const MAX_CLIENTS: u32 = CLIENT_ADDRESSES - 1;

/// Clients with a hash below this share (in percent) use IPv6.
const IPV6_PERCENT: u64 = 8;

/// The exponent that skews client choice towards low indexes. With 1.2 and 6,000 clients the
/// busiest client makes about 0.07% of the calls, and the busier half of the clients 56%.
const CLIENT_SKEW: f64 = 1.2;

/// The share of calls to public routes made without signing in.
const ANONYMOUS_SHARE: f64 = 0.6;

/// The share of calls served by the canary deployment.
const CANARY_SHARE: f64 = 0.05;

/// The maximum latency of a call in milliseconds, the gateway's timeout.
pub(super) const MAX_LATENCY_MS: f64 = 30_000.0;

/// The share of calls that stall, which gives the latency distribution its far tail.
const STALL_SHARE: f64 = 0.004;

/// The form of an id in a route's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IdKind {
    /// No id in the path.
    None,
    /// A decimal number from 1 to the bound.
    Number(u32),
    /// A random UUID.
    Uuid,
    /// A payment intent id: `pi_` and 16 letters and digits, which feedloop does not
    /// recognise as an id, so only the logged route names its template.
    PaymentIntent,
}

/// The query string a route's normal calls carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryKind {
    /// No query string.
    None,
    /// Paging and sorting of a product list.
    Listing,
    /// Paging of orders in one state.
    OrderFilter,
    /// A free-text search term.
    Search,
    /// A file name to download.
    FileName,
}

/// One route of one service and the shape of its normal calls.
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    pub service: &'static str,
    pub method: &'static str,
    /// The template as the gateway logs it, with at most one `{id}` segment. The gateway names
    /// ids `{id}`, as feedloop does when it derives a route from a path, so a route reads the
    /// same whether the record carries it or not. Payment intent ids are the exception, and
    /// their service always logs the route.
    pub template: &'static str,
    pub id: IdKind,
    pub query: QueryKind,
    /// Relative share of normal calls.
    pub weight: u32,
    pub success_status: u16,
    pub latency_median_ms: f64,
    /// Standard deviation of the latency's logarithm.
    pub latency_sigma: f64,
    pub response_median_bytes: f64,
    /// Median body size of a request, 0 for a call without a body.
    pub body_median_bytes: f64,
    /// Whether callers may be anonymous.
    pub public: bool,
    /// Whether a conditional GET can return 304 Not Modified.
    pub cacheable: bool,
}

const fn route(
    service: &'static str,
    method: &'static str,
    template: &'static str,
    weight: u32,
) -> Route {
    Route {
        service,
        method,
        template,
        id: IdKind::None,
        query: QueryKind::None,
        weight,
        success_status: 200,
        latency_median_ms: 15.0,
        latency_sigma: 0.6,
        response_median_bytes: 1_500.0,
        body_median_bytes: 0.0,
        public: false,
        cacheable: false,
    }
}

impl Route {
    const fn id(self, id: IdKind) -> Route {
        Route { id, ..self }
    }

    const fn query(self, query: QueryKind) -> Route {
        Route { query, ..self }
    }

    const fn status(self, success_status: u16) -> Route {
        Route {
            success_status,
            ..self
        }
    }

    const fn latency(self, median_ms: f64, sigma: f64) -> Route {
        Route {
            latency_median_ms: median_ms,
            latency_sigma: sigma,
            ..self
        }
    }

    const fn sizes(self, body_median_bytes: f64, response_median_bytes: f64) -> Route {
        Route {
            body_median_bytes,
            response_median_bytes,
            ..self
        }
    }

    const fn public(self) -> Route {
        Route {
            public: true,
            ..self
        }
    }

    const fn cacheable(self) -> Route {
        Route {
            cacheable: true,
            ..self
        }
    }

    /// Returns the route as the service's access log records it: the template, or nothing for
    /// a service whose log has no route field.
    pub fn logged_route(&self) -> String {
        if logs_routes(self.service) {
            self.template.to_string()
        } else {
            String::new()
        }
    }

    /// Returns a concrete path for the template, with its id filled in.
    pub fn path(&self, rng: &mut impl Rng) -> String {
        let id = match self.id {
            IdKind::None => return self.template.to_string(),
            IdKind::Number(max) => rng.random_range(1..=max).to_string(),
            IdKind::Uuid => uuid(rng),
            IdKind::PaymentIntent => payment_intent(rng),
        };
        let start = self
            .template
            .find('{')
            .expect("a route with an id has a `{`");
        let end = self.template[start..]
            .find('}')
            .map(|offset| start + offset + 1)
            .expect("a route's `{` is closed");
        format!("{}{id}{}", &self.template[..start], &self.template[end..])
    }
}

/// Services behind the API gateway, whose access log records the matched route. The other
/// services log through a plain reverse proxy, which logs paths only, so feedloop derives
/// their routes. Both kinds of record occur in real deployments.
const GATEWAY_SERVICES: &[&str] = &["orders", "accounts", "payments"];

/// Returns true when the service's access log records the matched route.
pub(super) fn logs_routes(service: &str) -> bool {
    GATEWAY_SERVICES.contains(&service)
}

/// Every route of normal traffic.
pub(super) const ROUTES: &[Route] = &[
    // catalog: browsing, mostly anonymous and cacheable.
    route("catalog", "GET", "/v1/products", 14)
        .query(QueryKind::Listing)
        .latency(22.0, 0.6)
        .sizes(0.0, 6_500.0)
        .public()
        .cacheable(),
    route("catalog", "GET", "/v1/products/{id}", 18)
        .id(IdKind::Number(250_000))
        .latency(9.0, 0.5)
        .sizes(0.0, 2_200.0)
        .public()
        .cacheable(),
    route("catalog", "GET", "/v1/categories/{id}/products", 5)
        .id(IdKind::Number(400))
        .query(QueryKind::Listing)
        .latency(28.0, 0.6)
        .sizes(0.0, 6_000.0)
        .public()
        .cacheable(),
    route("catalog", "GET", "/v1/search", 8)
        .query(QueryKind::Search)
        .latency(45.0, 0.8)
        .sizes(0.0, 7_500.0)
        .public(),
    // orders
    route("orders", "GET", "/v1/orders", 6)
        .query(QueryKind::OrderFilter)
        .latency(30.0, 0.7)
        .sizes(0.0, 4_000.0),
    route("orders", "GET", "/v1/orders/{id}", 8)
        .id(IdKind::Number(9_000_000))
        .latency(14.0, 0.6)
        .sizes(0.0, 1_800.0),
    route("orders", "GET", "/v1/orders/{id}/items", 3)
        .id(IdKind::Number(9_000_000))
        .latency(18.0, 0.6)
        .sizes(0.0, 2_600.0),
    route("orders", "POST", "/v1/orders", 3)
        .status(201)
        .latency(70.0, 0.7)
        .sizes(900.0, 1_200.0),
    route("orders", "PATCH", "/v1/orders/{id}", 1)
        .id(IdKind::Number(9_000_000))
        .latency(40.0, 0.6)
        .sizes(250.0, 1_200.0),
    // accounts: the login route is slow on purpose (password hashing).
    route("accounts", "POST", "/v1/auth/login", 2)
        .latency(180.0, 0.25)
        .sizes(120.0, 900.0)
        .public(),
    route("accounts", "POST", "/v1/auth/token/refresh", 1)
        .latency(12.0, 0.4)
        .sizes(700.0, 900.0),
    route("accounts", "GET", "/v1/users/me", 4)
        .latency(8.0, 0.5)
        .sizes(0.0, 1_100.0),
    route("accounts", "GET", "/v1/users/{id}", 3)
        .id(IdKind::Number(2_000_000))
        .latency(10.0, 0.5)
        .sizes(0.0, 1_100.0),
    route("accounts", "PUT", "/v1/users/{id}/preferences", 1)
        .id(IdKind::Number(2_000_000))
        .status(204)
        .latency(25.0, 0.5)
        .sizes(400.0, 0.0),
    // payments: calls out to a payment provider.
    route("payments", "POST", "/v1/payments", 2)
        .status(201)
        .latency(380.0, 0.5)
        .sizes(600.0, 700.0),
    route("payments", "GET", "/v1/payments/{id}", 2)
        .id(IdKind::PaymentIntent)
        .latency(20.0, 0.5)
        .sizes(0.0, 800.0),
    // inventory
    route("inventory", "GET", "/v1/stock/{id}", 6)
        .id(IdKind::Number(250_000))
        .latency(6.0, 0.5)
        .sizes(0.0, 300.0)
        .cacheable(),
    // files: invoices and documents.
    route("files", "GET", "/v1/files/download", 1)
        .query(QueryKind::FileName)
        .latency(60.0, 0.9)
        .sizes(0.0, 48_000.0),
    route("files", "GET", "/v1/files/{id}", 1)
        .id(IdKind::Uuid)
        .latency(15.0, 0.5)
        .sizes(0.0, 1_000.0),
];

/// Index of the login route in [`ROUTES`].
pub(super) const LOGIN_ROUTE: usize = 9;

/// Index of the file download route in [`ROUTES`].
pub(super) const DOWNLOAD_ROUTE: usize = 17;

/// Index of the search route in [`ROUTES`].
pub(super) const SEARCH_ROUTE: usize = 3;

/// Index of the product listing route in [`ROUTES`].
pub(super) const PRODUCTS_ROUTE: usize = 0;

/// Index of the single product route in [`ROUTES`].
pub(super) const PRODUCT_ROUTE: usize = 1;

/// The share of calls that are health checks from the orchestrator, in per mille.
const HEALTH_CHECK_PER_MILLE: u32 = 20;

/// A user agent and what kind of client sends it.
#[derive(Clone, Copy, Debug)]
struct Agent {
    name: &'static str,
    weight: u32,
    browser: bool,
    /// Whether the caller is a service account rather than a person.
    service_account: bool,
}

const fn agent(name: &'static str, weight: u32, browser: bool, service_account: bool) -> Agent {
    Agent {
        name,
        weight,
        browser,
        service_account,
    }
}

/// User agents of normal clients, with their share of clients.
const AGENTS: &[Agent] = &[
    agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36", 24, true, false),
    agent("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", 9, true, false),
    agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", 12, true, false),
    agent("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.6422.113 Mobile Safari/537.36", 10, true, false),
    agent("Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0", 4, true, false),
    agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.0.0", 5, true, false),
    agent("ShopApp/5.12.1 (iPhone; iOS 17.5.1; Scale/3.00)", 11, false, false),
    agent("ShopApp/5.12.0 (Linux; Android 14; SM-S918B) okhttp/4.12.0", 9, false, false),
    agent("python-requests/2.32.3", 4, false, true),
    agent("Go-http-client/2.0", 3, false, true),
    agent("axios/1.7.2", 3, false, true),
    agent("Apache-HttpClient/5.3.1 (Java/17.0.11)", 2, false, true),
    agent("curl/8.7.1", 1, false, true),
    agent("PostmanRuntime/7.39.0", 1, false, true),
];

/// The user agent of orchestrator health checks.
const HEALTH_CHECK_AGENT: &str = "kube-probe/1.30";

/// Regions and their share of clients.
const REGIONS: &[(&str, u32)] = &[("eu-west-1", 5), ("us-east-1", 4), ("ap-southeast-2", 1)];

/// Search terms of normal calls, already form-encoded. None of them may look like an attack.
const SEARCH_TERMS: &[&str] = &[
    "running+shoes",
    "usb-c+cable",
    "coffee+grinder",
    "wireless+headphones",
    "standing+desk",
    "yoga+mat",
    "kids%27+rain+boots",
    "led+bulb+e27",
    "backpack+30l",
    "gift+card",
    "cast+iron+pan",
    "phone+case",
    "espresso+beans",
    "winter+jacket",
    "4k+monitor",
    "desk+lamp",
];

const SORT_KEYS: &[&str] = &["price", "-price", "newest", "rating"];

const ORDER_STATES: &[&str] = &["open", "shipped", "delivered", "cancelled"];

const FILE_KINDS: &[&str] = &["invoice", "receipt", "statement", "credit-note"];

/// Referers of browser calls. The web shop calls the API across origins, so browsers send only
/// the shop's origin under their default referrer policy (`strict-origin-when-cross-origin`).
const REFERERS: &[&str] = &["https://shop.example.com/", "https://m.example.com/"];

/// One normal client.
#[derive(Clone, Debug)]
pub(super) struct Client {
    address: String,
    agent: Agent,
    principal: String,
    region: &'static str,
}

/// The normal traffic model of one seed.
pub(super) struct Traffic {
    clients: Vec<Client>,
}

impl Traffic {
    /// Builds the client population of a seed.
    pub fn new(seed: u64, clients: u32, principals: u32) -> Traffic {
        let clients = (0..clients)
            .map(|index| client(seed, index, principals))
            .collect();
        Traffic { clients }
    }

    /// Generates one normal call at `time_ms`.
    pub fn next_event(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        if rng.random_range(0..1_000) < HEALTH_CHECK_PER_MILLE {
            return health_check(rng, time_ms);
        }

        let route = &ROUTES[pick_weighted(rng, ROUTES, |r| r.weight)];
        let client = self.pick_client(rng);
        let anonymous = route.public && rng.random_bool(ANONYMOUS_SHARE);
        let status = normal_status(rng, route, anonymous);

        let mut event = base_event(rng, time_ms, route.service, route.method);
        event.route = route.logged_route();
        event.path = route.path(rng);
        event.query = normal_query(rng, route.query);
        event.status = Some(status);
        event.latency_ms = Some(latency_ms(rng, route, status));
        event.request_bytes = Some(request_bytes(rng, route.body_median_bytes));
        event.response_bytes = Some(response_bytes(rng, route, status));
        event.client = client.address.clone();
        event.principal = (!anonymous).then(|| client.principal.clone());
        event.user_agent = Some(client.agent.name.to_string());
        if client.agent.browser {
            event.referer = Some(REFERERS[rng.random_range(0..REFERERS.len())].to_string());
        }
        event.labels = labels(rng, client.region);
        event
    }

    /// Picks a client, favouring low indexes so that some clients are much busier than others.
    fn pick_client(&self, rng: &mut impl Rng) -> &Client {
        let share = rng.random::<f64>().powf(CLIENT_SKEW);
        let index = (share * self.clients.len() as f64) as usize;
        &self.clients[index.min(self.clients.len() - 1)]
    }
}

/// Builds an event with the fields every call has: time, service, method and trace id.
pub(super) fn base_event(
    rng: &mut impl Rng,
    time_ms: i64,
    service: &str,
    method: &str,
) -> ApiEvent {
    ApiEvent {
        time_ms,
        service: service.to_string(),
        method: method.to_string(),
        trace_id: Some(hex(rng, 32)),
        ..ApiEvent::default()
    }
}

/// Draws the labels of a call served in `region`: the environment, the region and whether
/// the stable or the canary deployment served it.
pub(super) fn labels(rng: &mut impl Rng, region: &str) -> Vec<(String, String)> {
    let deployment = if rng.random_bool(CANARY_SHARE) {
        "canary"
    } else {
        "stable"
    };
    vec![
        ("deployment".to_string(), deployment.to_string()),
        ("env".to_string(), "prod".to_string()),
        ("region".to_string(), region.to_string()),
    ]
}

/// Picks a region by weight.
pub(super) fn region(rng: &mut impl Rng) -> &'static str {
    REGIONS[pick_weighted(rng, REGIONS, |(_, weight)| *weight)].0
}

/// Draws the size of a request: headers plus, when the call has one, a body.
pub(super) fn request_bytes(rng: &mut impl Rng, body_median_bytes: f64) -> u64 {
    let headers = rng.random_range(280..900);
    let body = if body_median_bytes > 0.0 {
        log_normal(rng, body_median_bytes, 0.5) as u64
    } else {
        0
    };
    headers + body
}

/// Draws the size of an error body.
pub(super) fn error_bytes(rng: &mut impl Rng) -> u64 {
    rng.random_range(90..320)
}

/// Draws a latency for a route and status, in milliseconds with microsecond precision.
pub(super) fn latency_ms(rng: &mut impl Rng, route: &Route, status: u16) -> f64 {
    let mut latency = match status {
        // The gateway gave up waiting.
        504 => MAX_LATENCY_MS,
        // Rejected before reaching the handler.
        401 | 403 | 429 => log_normal(rng, 2.0, 0.5),
        502 | 503 => log_normal(rng, 4.0, 0.8),
        500 => log_normal(rng, route.latency_median_ms * 2.0, route.latency_sigma),
        304 => log_normal(rng, route.latency_median_ms * 0.4, route.latency_sigma),
        _ => log_normal(rng, route.latency_median_ms, route.latency_sigma),
    };
    if status != 504 && rng.random_bool(STALL_SHARE) {
        latency += log_normal(rng, 2_000.0, 1.0);
    }
    round_micros(latency.min(MAX_LATENCY_MS))
}

/// Rounds milliseconds to whole microseconds.
pub(super) fn round_micros(latency_ms: f64) -> f64 {
    (latency_ms * 1_000.0).round() / 1_000.0
}

/// Returns `len` random lower-case hex digits.
pub(super) fn hex(rng: &mut impl Rng, len: usize) -> String {
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

/// Returns a payment intent id such as `pi_3NxVbZ2eZvKYlo2C`.
fn payment_intent(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let tail: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("pi_{tail}")
}

/// Builds client `index` of a seed. The address depends only on the index, so no two clients
/// share one, and the other attributes come from a hash of the seed and the index.
fn client(seed: u64, index: u32, principals: u32) -> Client {
    let hash = mix(seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Multiplying by an odd number permutes the range, which spreads neighbours apart. Index
    // + 1 is never a multiple of the range, so no client gets 198.18.0.0, the network address.
    let spread = (index + 1).wrapping_mul(40_503) % CLIENT_ADDRESSES;
    let address = if hash % 100 < IPV6_PERCENT {
        // The high group is never 0, so the address is in canonical form (RFC 5952).
        let high = (spread >> 8) + 1;
        let low = ((spread & 0xff) << 8) | (hash >> 56) as u32;
        format!("2001:db8::{high:x}:{low:x}")
    } else {
        format!(
            "198.{}.{}.{}",
            18 + (spread >> 16),
            (spread >> 8) & 0xff,
            spread & 0xff
        )
    };

    let agent_pick = (mix(hash) % 1_000) as u32;
    let agent = AGENTS[pick_by_share(agent_pick, 1_000, AGENTS, |a| a.weight)];
    let principal_index = u64::from(index % principals);
    let prefix = if agent.service_account { "svc" } else { "usr" };
    let principal = format!("{prefix}_{:08x}", mix(seed ^ principal_index) >> 32);
    let region_pick = (mix(hash ^ 1) % 1_000) as u32;
    let region = REGIONS[pick_by_share(region_pick, 1_000, REGIONS, |(_, w)| *w)].0;
    Client {
        address,
        agent,
        principal,
        region,
    }
}

/// Maps `pick` in `0..scale` to an index of a weight table, without a random generator.
fn pick_by_share<T>(pick: u32, scale: u32, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    let mut target = (u64::from(pick) * u64::from(total) / u64::from(scale)) as u32;
    for (index, item) in items.iter().enumerate() {
        if target < weight(item) {
            return index;
        }
        target -= weight(item);
    }
    items.len() - 1
}

/// Hashes one number with the SplitMix64 finaliser, which is fast and spreads bits well.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws the status of a normal call. Failures are rare and spread over many clients.
fn normal_status(rng: &mut impl Rng, route: &Route, anonymous: bool) -> u16 {
    let roll = rng.random_range(0..10_000);
    let login = route.template == ROUTES[LOGIN_ROUTE].template;
    match roll {
        // Mistyped passwords on the login route, expired tokens elsewhere.
        0..=599 if login => 401,
        0..=39 if !anonymous => 401,
        40..=59 if !anonymous => 403,
        60..=139 if route.id != IdKind::None => 404,
        140..=219 if route.method != "GET" => 422,
        220..=259 => 400,
        260..=279 => 429,
        280..=289 => 500,
        290..=299 => 502,
        300..=304 => 503,
        305..=306 => 504,
        307..=606 if route.cacheable => 304,
        _ => route.success_status,
    }
}

/// Draws a response size for a status.
fn response_bytes(rng: &mut impl Rng, route: &Route, status: u16) -> u64 {
    match status {
        204 | 304 => 0,
        200 | 201 => log_normal(rng, route.response_median_bytes, 0.5) as u64,
        _ => error_bytes(rng),
    }
}

/// Draws the query string of a normal call.
fn normal_query(rng: &mut impl Rng, kind: QueryKind) -> Option<String> {
    let query = match kind {
        QueryKind::None => return None,
        QueryKind::Listing => {
            let page = rng.random_range(1..=12);
            if rng.random_bool(0.5) {
                let sort = SORT_KEYS[rng.random_range(0..SORT_KEYS.len())];
                format!("page={page}&sort={sort}")
            } else {
                let limit = [20, 50, 100][rng.random_range(0..3)];
                format!("page={page}&limit={limit}")
            }
        }
        QueryKind::OrderFilter => {
            let state = ORDER_STATES[rng.random_range(0..ORDER_STATES.len())];
            format!("status={state}&page={}", rng.random_range(1..=5))
        }
        QueryKind::Search => {
            let term = SEARCH_TERMS[rng.random_range(0..SEARCH_TERMS.len())];
            format!("q={term}&page={}", rng.random_range(1..=5))
        }
        QueryKind::FileName => {
            let kind = FILE_KINDS[rng.random_range(0..FILE_KINDS.len())];
            let year = rng.random_range(2022..=2025);
            let month = rng.random_range(1..=12);
            format!("name={kind}-{year}-{month:02}.pdf")
        }
    };
    Some(query)
}

/// Builds a health check from one of the orchestrator's node addresses.
fn health_check(rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
    let service = ROUTES[rng.random_range(0..ROUTES.len())].service;
    let mut event = base_event(rng, time_ms, service, "GET");
    if logs_routes(service) {
        event.route = "/healthz".to_string();
    }
    event.path = "/healthz".to_string();
    event.status = Some(200);
    event.latency_ms = Some(round_micros(log_normal(rng, 0.8, 0.4)));
    event.request_bytes = Some(rng.random_range(110..140));
    event.response_bytes = Some(15);
    event.client = format!(
        "10.0.{}.{}",
        rng.random_range(0..4),
        rng.random_range(2..30)
    );
    event.user_agent = Some(HEALTH_CHECK_AGENT.to_string());
    let region = region(rng);
    event.labels = labels(rng, region);
    event
}
