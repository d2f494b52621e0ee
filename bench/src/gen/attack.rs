//! Attack campaigns: runs of requests by one client that the shipped rule packs detect.
//!
//! Each [`AttackKind`] names the rule expected to detect it. Injection payloads are encoded
//! the way attack tools send them: nearly raw, percent-encoded, form-encoded or
//! double-encoded. Only payloads that the shipped signatures match after URL decoding are
//! used, so every attack event is detectable on its own or as part of its campaign's burst.
//!
//! Attacker addresses come from the three IPv4 documentation ranges (TEST-NET-1 to 3) and
//! from 2001:db8:ffff::/48, apart from every normal client.

use std::ops::RangeInclusive;

use rand::Rng;

use feedloop_rules::ApiEvent;

use super::catalog::{
    self, Route, DOWNLOAD_ROUTE, LOGIN_ROUTE, PRODUCTS_ROUTE, PRODUCT_ROUTE, ROUTES, SEARCH_ROUTE,
};
use super::{log_normal, pick_weighted, GeneratedEvent};

/// The number of campaigns that run at once. Attack events are dealt among them at random.
const CONCURRENT_CAMPAIGNS: usize = 3;

/// The maximum length of an encoded payload in bytes. A longer encoding falls back to
/// [`Encoding::Minimal`], which keeps records within the generator's size range.
const MAX_ENCODED_PAYLOAD: usize = 90;

/// A kind of attack, and the shipped rule that detects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackKind {
    /// SQL injection payloads in a query string or path.
    SqlInjection,
    /// Cross-site scripting payloads in a query string or referer.
    CrossSiteScripting,
    /// Path traversal and file inclusion payloads in a query string or path.
    PathTraversal,
    /// A burst of failed logins (401) from one client on the login route.
    LoginBruteForce,
    /// Many distinct missing paths (404) from one client.
    NotFoundScan,
    /// Requests for well-known sensitive files: `/.env`, `/.git/config`, `/wp-login.php`.
    SensitivePathProbe,
}

impl AttackKind {
    /// Every kind, in declaration order.
    pub const ALL: [AttackKind; 6] = [
        AttackKind::SqlInjection,
        AttackKind::CrossSiteScripting,
        AttackKind::PathTraversal,
        AttackKind::LoginBruteForce,
        AttackKind::NotFoundScan,
        AttackKind::SensitivePathProbe,
    ];

    /// Returns the kind's name in kebab case, such as `sql-injection`.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::SqlInjection => "sql-injection",
            AttackKind::CrossSiteScripting => "cross-site-scripting",
            AttackKind::PathTraversal => "path-traversal",
            AttackKind::LoginBruteForce => "login-brute-force",
            AttackKind::NotFoundScan => "not-found-scan",
            AttackKind::SensitivePathProbe => "sensitive-path-probe",
        }
    }

    /// Returns the id of the shipped rule that detects this kind.
    pub fn rule_id(self) -> &'static str {
        match self {
            AttackKind::SqlInjection => "sql-injection-attempt",
            AttackKind::CrossSiteScripting => "xss-attempt",
            AttackKind::PathTraversal => "path-traversal-attempt",
            AttackKind::LoginBruteForce => "auth-failure-burst",
            AttackKind::NotFoundScan => "scanner-distinct-404-paths",
            AttackKind::SensitivePathProbe => "sensitive-path-probe",
        }
    }

    /// Relative share of campaigns of this kind.
    fn weight(self) -> u32 {
        match self {
            AttackKind::SqlInjection => 22,
            AttackKind::CrossSiteScripting => 15,
            AttackKind::PathTraversal => 13,
            AttackKind::LoginBruteForce => 15,
            AttackKind::NotFoundScan => 15,
            AttackKind::SensitivePathProbe => 20,
        }
    }

    /// Number of requests in one campaign. Bursts have at least 15 requests, so they can cross
    /// their rule's threshold of 10 even when a few requests get other statuses.
    fn requests(self) -> RangeInclusive<u32> {
        match self {
            AttackKind::SqlInjection => 12..=40,
            AttackKind::CrossSiteScripting => 8..=25,
            AttackKind::PathTraversal => 8..=25,
            AttackKind::LoginBruteForce => 15..=60,
            AttackKind::NotFoundScan => 30..=90,
            AttackKind::SensitivePathProbe => 3..=12,
        }
    }

    /// User agents the kind's tools send. Each campaign picks one.
    fn user_agents(self) -> &'static [&'static str] {
        match self {
            AttackKind::SqlInjection => &[
                "sqlmap/1.8.5#stable (https://sqlmap.org)",
                BOT_BROWSER_AGENT,
                "python-requests/2.31.0",
            ],
            AttackKind::CrossSiteScripting | AttackKind::PathTraversal => &[
                BOT_BROWSER_AGENT,
                "python-requests/2.31.0",
                "curl/7.88.1",
                "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
            ],
            AttackKind::LoginBruteForce => &[
                "python-requests/2.31.0",
                "Mozilla/4.0 (Hydra)",
                BOT_BROWSER_AGENT,
                "okhttp/4.9.3",
            ],
            AttackKind::NotFoundScan => &[
                "gobuster/3.6",
                "Fuzz Faster U Fool v2.1.0-dev",
                "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
                BOT_BROWSER_AGENT,
                "curl/7.88.1",
            ],
            AttackKind::SensitivePathProbe => &[
                BOT_BROWSER_AGENT,
                "python-requests/2.31.0",
                "Go-http-client/1.1",
                "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
                "Mozilla/5.0 zgrab/0.x",
            ],
        }
    }
}

/// A dated browser user agent, as bots that pose as browsers send.
const BOT_BROWSER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.85 Safari/537.36";

/// The kind and campaign of an attack event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttackLabel {
    /// The kind of attack.
    pub kind: AttackKind,
    /// The campaign, numbered from 0 in the order campaigns start.
    pub campaign: u64,
}

/// SQL injection payloads, before encoding. Each matches a pattern of `sql-injection-attempt`.
pub(crate) const SQL_PAYLOADS: &[&str] = &[
    "1' OR '1'='1",
    "' OR 1=1-- -",
    "1 UNION SELECT username, password FROM users--",
    "-1 UNION ALL SELECT NULL,NULL,table_name FROM information_schema.tables",
    "1' AND SLEEP(5)-- -",
    "1; DROP TABLE orders--",
    "1' WAITFOR DELAY '0:0:5'--",
    "admin'--",
    "1) AND 1=(SELECT 1 FROM pg_catalog.pg_user)",
    "1 AND BENCHMARK(5000000,MD5(1))",
];

/// Cross-site scripting payloads, before encoding. Each matches a pattern of `xss-attempt`.
pub(crate) const XSS_PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><script>alert(document.domain)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "javascript:alert(document.cookie)",
    "<iframe src=\"javascript:alert(1)\">",
    "<body onload=alert('xss')>",
    "<details open ontoggle=alert(1)>",
];

/// Path traversal payloads, before encoding. Each matches a pattern of
/// `path-traversal-attempt`.
const TRAVERSAL_PAYLOADS: &[&str] = &[
    "../../../../etc/passwd",
    "../../../../../../etc/shadow",
    "....//....//....//etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "/proc/self/environ",
    "php://filter/convert.base64-encode/resource=index.php",
    "file:///etc/hosts",
    "../../../../var/www/.env",
];

/// Paths that probes look for. Each matches a pattern of `sensitive-path-probe`.
const SENSITIVE_PATHS: &[&str] = &[
    "/.env",
    "/.env.production",
    "/api/.env",
    "/.git/config",
    "/.git/HEAD",
    "/wp-login.php",
    "/wp-admin/",
    "/xmlrpc.php",
    "/.aws/credentials",
    "/phpinfo.php",
    "/server-status",
    "/actuator/env",
    "/phpmyadmin/",
    "/backup.zip",
    "/db.sql",
    "/.DS_Store",
];

/// Path prefixes of a missing-path sweep.
const SCAN_PREFIXES: &[&str] = &["/api", "/v1", "/api/v2", "/app"];

/// Words of a missing-path sweep. None of them matches `sensitive-path-probe`, so each kind
/// maps to one rule.
const SCAN_WORDS: &[&str] = &[
    "/admin",
    "/api-docs",
    "/swagger.json",
    "/graphql",
    "/console",
    "/debug",
    "/metrics",
    "/internal",
    "/test",
    "/dev",
    "/staging",
    "/beta",
    "/private",
    "/export",
    "/import",
    "/upload",
    "/uploads",
    "/static/app.js",
    "/portal",
    "/dashboard",
    "/manage",
    "/system",
    "/status",
    "/config.json",
    "/settings",
    "/users/export",
    "/reports",
    "/billing",
    "/invoices/all",
    "/webhooks",
    "/callback",
    "/oauth/authorize",
    "/sso",
    "/cgi-bin/status",
    "/vendor",
    "/tmp",
    "/logs",
    "/v3/orders",
];

/// An encoding of a payload in a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Only what would break the URL is escaped: space, `#`, `%`, `&`, `+` and control bytes.
    Minimal,
    /// Every byte except unreserved characters is percent-encoded.
    Percent,
    /// As [`Encoding::Percent`], but spaces become `+` as in an HTML form.
    Form,
    /// Percent-encoded twice, so `'` becomes `%2527`.
    Double,
}

pub(crate) const ENCODINGS: [Encoding; 4] = [
    Encoding::Minimal,
    Encoding::Percent,
    Encoding::Form,
    Encoding::Double,
];

impl Encoding {
    /// Encodes a payload, falling back to [`Encoding::Minimal`] when the result would be longer
    /// than [`MAX_ENCODED_PAYLOAD`].
    pub(crate) fn apply(self, payload: &str) -> String {
        let encoded = match self {
            Encoding::Minimal => percent_encode(payload, is_raw_safe, false),
            Encoding::Percent => percent_encode(payload, is_unreserved, false),
            Encoding::Form => percent_encode(payload, is_unreserved, true),
            Encoding::Double => {
                let once = percent_encode(payload, is_unreserved, false);
                once.replace('%', "%25")
            }
        };
        if encoded.len() > MAX_ENCODED_PAYLOAD && self != Encoding::Minimal {
            return Encoding::Minimal.apply(payload);
        }
        encoded
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_raw_safe(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'#' | b'%' | b'&' | b'+')
}

/// Percent-encodes every byte that `keep` rejects, writing spaces as `+` when `plus_for_space`.
fn percent_encode(text: &str, keep: fn(u8) -> bool, plus_for_space: bool) -> String {
    let mut encoded = String::with_capacity(text.len() * 2);
    for &byte in text.as_bytes() {
        if keep(byte) {
            encoded.push(char::from(byte));
        } else if byte == b' ' && plus_for_space {
            encoded.push('+');
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// One running campaign.
#[derive(Clone, Debug)]
struct Campaign {
    label: AttackLabel,
    client: String,
    user_agent: &'static str,
    region: &'static str,
    encoding: Encoding,
    /// Service that unmatched paths are logged under.
    service: &'static str,
    /// Start position of a sweep in its word list.
    offset: usize,
    step: u32,
    remaining: u32,
}

/// The running campaigns and the count of campaigns started so far.
#[derive(Debug, Default)]
pub(super) struct Campaigns {
    active: Vec<Campaign>,
    started: u64,
}

impl Campaigns {
    /// Generates the next attack event at `time_ms`, starting campaigns as needed.
    pub fn next_event(&mut self, rng: &mut impl Rng, time_ms: i64) -> GeneratedEvent {
        while self.active.len() < CONCURRENT_CAMPAIGNS {
            let campaign = self.start(rng);
            self.active.push(campaign);
        }

        let slot = rng.random_range(0..self.active.len());
        let campaign = &mut self.active[slot];
        let event = campaign.next_request(rng, time_ms);
        let label = campaign.label;
        campaign.step += 1;
        campaign.remaining -= 1;
        if campaign.remaining == 0 {
            self.active.swap_remove(slot);
        }
        GeneratedEvent {
            event,
            attack: Some(label),
        }
    }

    fn start(&mut self, rng: &mut impl Rng) -> Campaign {
        let kind = AttackKind::ALL[pick_weighted(rng, &AttackKind::ALL, |k| k.weight())];
        let agents = kind.user_agents();
        let label = AttackLabel {
            kind,
            campaign: self.started,
        };
        self.started += 1;
        Campaign {
            label,
            client: attacker_address(rng),
            user_agent: agents[rng.random_range(0..agents.len())],
            region: catalog::region(rng),
            encoding: ENCODINGS[rng.random_range(0..ENCODINGS.len())],
            service: ROUTES[rng.random_range(0..ROUTES.len())].service,
            offset: rng.random_range(0..SCAN_WORDS.len() * SCAN_PREFIXES.len()),
            step: 0,
            remaining: rng.random_range(kind.requests()),
        }
    }
}

impl Campaign {
    fn next_request(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        match self.label.kind {
            AttackKind::SqlInjection => self.sql_injection(rng, time_ms),
            AttackKind::CrossSiteScripting => self.cross_site_scripting(rng, time_ms),
            AttackKind::PathTraversal => self.path_traversal(rng, time_ms),
            AttackKind::LoginBruteForce => self.login_attempt(rng, time_ms),
            AttackKind::NotFoundScan => self.missing_path(rng, time_ms),
            AttackKind::SensitivePathProbe => self.sensitive_path(rng, time_ms),
        }
    }

    /// Builds a request to a known route with the campaign's client, agent and labels.
    fn request(&self, rng: &mut impl Rng, time_ms: i64, route: &Route) -> ApiEvent {
        let mut event = catalog::base_event(rng, time_ms, route.service, route.method);
        event.route = route.logged_route();
        event.client = self.client.clone();
        event.user_agent = Some(self.user_agent.to_string());
        event.labels = catalog::labels(rng, self.region);
        event.request_bytes = Some(catalog::request_bytes(rng, route.body_median_bytes));
        event
    }

    /// Builds a request for a path no route matches, logged without a route.
    fn unmatched_request(&self, rng: &mut impl Rng, time_ms: i64, path: String) -> ApiEvent {
        let mut event = catalog::base_event(rng, time_ms, self.service, "GET");
        event.path = path;
        event.client = self.client.clone();
        event.user_agent = Some(self.user_agent.to_string());
        event.labels = catalog::labels(rng, self.region);
        event.request_bytes = Some(rng.random_range(150..400));
        event.latency_ms = Some(catalog::round_micros(log_normal(rng, 1.5, 0.5)));
        event
    }

    fn sql_injection(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let payload = SQL_PAYLOADS[rng.random_range(0..SQL_PAYLOADS.len())];
        let encoded = self.encoding.apply(payload);
        let target = rng.random_range(0..3);
        let route = &ROUTES[match target {
            0 => SEARCH_ROUTE,
            1 => PRODUCTS_ROUTE,
            _ => PRODUCT_ROUTE,
        }];

        let mut event = self.request(rng, time_ms, route);
        match target {
            0 => {
                event.path = route.template.to_string();
                event.query = Some(format!("q={encoded}&page=1"));
            }
            1 => {
                event.path = route.template.to_string();
                event.query = Some(format!("page=1&sort={encoded}"));
            }
            _ => event.path = format!("/v1/products/{}", Encoding::Percent.apply(payload)),
        }
        let status = [200, 200, 400, 400, 500][rng.random_range(0..5)];
        let mut latency = log_normal(rng, route.latency_median_ms, route.latency_sigma);
        if status == 200 && is_time_delay(payload) {
            // A time-delay payload that reached the database.
            latency += 5_000.0;
        }
        finish(rng, &mut event, route, status, latency);
        event
    }

    fn cross_site_scripting(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let payload = XSS_PAYLOADS[rng.random_range(0..XSS_PAYLOADS.len())];
        let encoded = self.encoding.apply(payload);
        let in_referer = rng.random_bool(0.2);
        let route = &ROUTES[if in_referer {
            PRODUCT_ROUTE
        } else {
            SEARCH_ROUTE
        }];

        let mut event = self.request(rng, time_ms, route);
        if in_referer {
            event.path = route.path(rng);
            event.referer = Some(format!("https://shop.example.com/search?q={encoded}"));
        } else {
            event.path = route.template.to_string();
            event.query = Some(format!("q={encoded}"));
        }
        let status = [200, 200, 200, 400][rng.random_range(0..4)];
        let latency = log_normal(rng, route.latency_median_ms, route.latency_sigma);
        finish(rng, &mut event, route, status, latency);
        event
    }

    fn path_traversal(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let payload = TRAVERSAL_PAYLOADS[rng.random_range(0..TRAVERSAL_PAYLOADS.len())];
        let route = &ROUTES[DOWNLOAD_ROUTE];
        let status = [400, 403, 404, 404][rng.random_range(0..4)];

        if rng.random_bool(0.3) {
            // The payload goes into the path with its slashes encoded, so the request still
            // reaches the files service.
            let path = format!("/v1/files/{}", Encoding::Percent.apply(payload));
            let mut event = self.unmatched_request(rng, time_ms, path);
            event.service = route.service.to_string();
            event.status = Some(status);
            event.response_bytes = Some(catalog::error_bytes(rng));
            return event;
        }

        let mut event = self.request(rng, time_ms, route);
        event.path = route.template.to_string();
        event.query = Some(format!("name={}", self.encoding.apply(payload)));
        let latency = log_normal(rng, 3.0, 0.5);
        finish(rng, &mut event, route, status, latency);
        event
    }

    fn login_attempt(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let route = &ROUTES[LOGIN_ROUTE];
        let mut event = self.request(rng, time_ms, route);
        event.path = route.template.to_string();

        // The last guess of some campaigns succeeds.
        let status = if self.remaining == 1 && rng.random_bool(0.2) {
            200
        } else {
            [401, 401, 401, 401, 401, 401, 401, 401, 401, 429][rng.random_range(0..10)]
        };
        let latency = if status == 429 {
            log_normal(rng, 2.0, 0.5)
        } else {
            // The password hash is checked whether or not the guess is right.
            log_normal(rng, route.latency_median_ms, route.latency_sigma)
        };
        finish(rng, &mut event, route, status, latency);
        event
    }

    fn missing_path(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let position =
            (self.offset + self.step as usize) % (SCAN_WORDS.len() * SCAN_PREFIXES.len());
        let prefix = SCAN_PREFIXES[position / SCAN_WORDS.len()];
        let word = SCAN_WORDS[position % SCAN_WORDS.len()];
        let mut event = self.unmatched_request(rng, time_ms, format!("{prefix}{word}"));
        let status = [404, 404, 404, 404, 404, 404, 404, 404, 403, 405][rng.random_range(0..10)];
        event.status = Some(status);
        event.response_bytes = Some(catalog::error_bytes(rng));
        event
    }

    fn sensitive_path(&self, rng: &mut impl Rng, time_ms: i64) -> ApiEvent {
        let path = SENSITIVE_PATHS[rng.random_range(0..SENSITIVE_PATHS.len())];
        let mut event = self.unmatched_request(rng, time_ms, path.to_string());
        let roll = rng.random_range(0..100);
        let status = match roll {
            0..=2 => 200,
            3..=19 => 403,
            _ => 404,
        };
        event.status = Some(status);
        event.response_bytes = Some(if status == 200 {
            rng.random_range(200..4_000)
        } else {
            catalog::error_bytes(rng)
        });
        event
    }
}

/// Returns true for a payload that makes the database wait.
fn is_time_delay(payload: &str) -> bool {
    ["SLEEP(", "WAITFOR DELAY", "BENCHMARK("]
        .iter()
        .any(|call| payload.contains(call))
}

/// Sets the status, latency and response size of a request to a known route.
fn finish(rng: &mut impl Rng, event: &mut ApiEvent, route: &Route, status: u16, latency: f64) {
    event.status = Some(status);
    event.latency_ms = Some(catalog::round_micros(latency.min(catalog::MAX_LATENCY_MS)));
    event.response_bytes = Some(if status < 300 {
        log_normal(rng, route.response_median_bytes, 0.5) as u64
    } else {
        catalog::error_bytes(rng)
    });
}

/// Draws an attacker address.
fn attacker_address(rng: &mut impl Rng) -> String {
    if rng.random_bool(0.15) {
        return format!(
            "2001:db8:ffff:{:x}::{:x}",
            rng.random_range(1..0xffff_u32),
            rng.random_range(1..0xffff_u32)
        );
    }
    let network = ["192.0.2", "198.51.100", "203.0.113"][rng.random_range(0..3)];
    format!("{network}.{}", rng.random_range(1..255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_escape_as_documented() {
        let payload = "1' OR 1=1#&+";
        assert_eq!(Encoding::Minimal.apply(payload), "1'%20OR%201=1%23%26%2B");
        assert_eq!(
            Encoding::Percent.apply(payload),
            "1%27%20OR%201%3D1%23%26%2B"
        );
        assert_eq!(Encoding::Form.apply(payload), "1%27+OR+1%3D1%23%26%2B");
        assert_eq!(
            Encoding::Double.apply(payload),
            "1%2527%2520OR%25201%253D1%2523%2526%252B"
        );
    }

    #[test]
    fn long_encoding_falls_back_to_minimal() {
        let payload = "<".repeat(50);
        assert_eq!(Encoding::Double.apply(&payload), payload);
    }

    #[test]
    fn kind_names_are_distinct() {
        let mut names: Vec<_> = AttackKind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AttackKind::ALL.len());
    }
}
