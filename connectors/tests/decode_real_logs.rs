//! Decodes every line of the two real Apache access logs in the shared data folder.
//!
//! The expected figures were computed from the raw files with awk, grep and Python's
//! `datetime.strptime`, not with this decoder, so a parser bug shows up as a mismatch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use feedloop_connectors::decode::{Decoder, Format};
use feedloop_rules::ApiEvent;

const ELASTIC_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/elastic-apache-logs/apache_logs"
);
const YAUAA_LOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/yauaa-hackers-access/hackers-access.log"
);

/// The outcome of decoding every line of one file.
struct DecodedLog {
    records: usize,
    /// Events with their 1-based line numbers.
    events: Vec<(usize, ApiEvent)>,
    /// Error messages with their 1-based line numbers.
    errors: Vec<(usize, String)>,
}

impl DecodedLog {
    fn read(path: &str) -> DecodedLog {
        let bytes = fs::read(path).unwrap_or_else(|err| panic!("reading {path} failed: {err}"));
        let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|line| line.is_empty()) {
            lines.pop();
        }

        let format = Format::detect(lines[0]);
        assert_eq!(format, Format::Combined, "format detected for {path}");
        let decoder = Decoder::new(format);

        let mut events = Vec::new();
        let mut errors = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            match decoder.decode(line) {
                Ok(event) => events.push((index + 1, event)),
                Err(err) => errors.push((index + 1, err.to_string())),
            }
        }
        DecodedLog {
            records: lines.len(),
            events,
            errors,
        }
    }

    fn events(&self) -> impl Iterator<Item = &ApiEvent> {
        self.events.iter().map(|(_, event)| event)
    }

    fn count_where(&self, predicate: impl Fn(&ApiEvent) -> bool) -> usize {
        self.events().filter(|event| predicate(event)).count()
    }

    fn count_by<K: Ord>(&self, key: impl Fn(&ApiEvent) -> K) -> BTreeMap<K, usize> {
        let mut counts = BTreeMap::new();
        for event in self.events() {
            *counts.entry(key(event)).or_insert(0) += 1;
        }
        counts
    }
}

fn counts<K: Ord + Clone>(pairs: &[(K, usize)]) -> BTreeMap<K, usize> {
    pairs.iter().cloned().collect()
}

#[test]
fn elastic_log_decodes_every_line() {
    let log = DecodedLog::read(ELASTIC_LOG);

    assert_eq!(log.records, 10_000);
    assert_eq!(log.events.len(), 10_000);
    assert_eq!(log.errors, Vec::<(usize, String)>::new());

    let problems: Vec<(usize, Option<&str>)> = log
        .events
        .iter()
        .filter(|(_, event)| event.problem.is_some())
        .map(|(line, event)| (*line, event.problem.as_deref()))
        .collect();
    let expected_problem = concat!(
        r#"unterminated user agent "Mozilla/5.0 (compatible; Googlebot/2.1; "#,
        r#"+http://www.google.com/bot.html": the record may be truncated"#
    );
    assert_eq!(problems, vec![(8899, Some(expected_problem))]);
}

#[test]
fn elastic_log_first_line_fields() {
    let log = DecodedLog::read(ELASTIC_LOG);
    let (line, event) = &log.events[0];

    assert_eq!(*line, 1);
    assert_eq!(event.time_ms, 1_431_857_103_000);
    assert_eq!(event.client, "83.149.9.216");
    assert_eq!(event.principal, None);
    assert_eq!(event.method, "GET");
    assert_eq!(
        event.path,
        "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    );
    assert_eq!(
        event.route,
        "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    );
    assert_eq!(event.query, None);
    assert_eq!(event.status, Some(200));
    assert_eq!(event.response_bytes, Some(203_023));
    assert_eq!(
        event.referer.as_deref(),
        Some("http://semicomplete.com/presentations/logstash-monitorama-2013/")
    );
    assert_eq!(
        event.user_agent.as_deref(),
        Some(concat!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 ",
            "(KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"
        ))
    );
    assert_eq!(event.problem, None);
}

#[test]
fn elastic_log_truncated_user_agent_line() {
    let log = DecodedLog::read(ELASTIC_LOG);
    let (_, event) = log.events.iter().find(|(line, _)| *line == 8899).unwrap();

    assert_eq!(event.client, "46.118.127.106");
    assert_eq!(event.time_ms, 1_432_123_517_000);
    assert_eq!(event.path, "/scripts/grok-py-test/configlib.py");
    assert_eq!(event.status, Some(200));
    assert_eq!(event.response_bytes, Some(235));
    assert_eq!(event.referer, None);
    assert_eq!(
        event.user_agent.as_deref(),
        Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html")
    );
}

#[test]
fn elastic_log_status_and_method_counts() {
    let log = DecodedLog::read(ELASTIC_LOG);

    let by_status = log.count_by(|event| event.status);
    let expected = counts(&[
        (Some(200), 9126),
        (Some(304), 445),
        (Some(404), 213),
        (Some(301), 164),
        (Some(206), 45),
        (Some(500), 3),
        (Some(416), 2),
        (Some(403), 2),
    ]);
    assert_eq!(by_status, expected);

    let by_method = log.count_by(|event| event.method.clone());
    let expected = counts(&[
        ("GET".to_string(), 9952),
        ("HEAD".into(), 42),
        ("POST".into(), 5),
        ("OPTIONS".into(), 1),
    ]);
    assert_eq!(by_method, expected);
}

#[test]
fn elastic_log_field_totals() {
    let log = DecodedLog::read(ELASTIC_LOG);

    let clients: BTreeSet<&str> = log.events().map(|event| event.client.as_str()).collect();
    assert_eq!(clients.len(), 1753);
    assert_eq!(
        log.count_where(|event| event.client == "66.249.73.135"),
        482
    );

    let times: Vec<i64> = log.events().map(|event| event.time_ms).collect();
    assert_eq!(times.iter().sum::<i64>(), 14_320_064_200_266_000);
    assert_eq!(times.iter().min(), Some(&1_431_857_100_000));
    assert_eq!(times.iter().max(), Some(&1_432_155_959_000));

    assert_eq!(log.count_where(|event| event.response_bytes.is_none()), 669);
    let size_sum: u64 = log.events().filter_map(|event| event.response_bytes).sum();
    assert_eq!(size_sum, 2_747_282_740);

    assert_eq!(log.count_where(|event| event.referer.is_none()), 4073);
    assert_eq!(log.count_where(|event| event.user_agent.is_none()), 190);
    assert_eq!(
        log.count_where(|event| event.referer.is_none() && event.user_agent.is_none()),
        187
    );
    assert_eq!(log.count_where(|event| event.query.is_some()), 1258);
    assert_eq!(log.count_where(|event| event.principal.is_some()), 0);
}

#[test]
fn yauaa_log_decodes_every_line() {
    let log = DecodedLog::read(YAUAA_LOG);

    assert_eq!(log.records, 3456);
    assert_eq!(log.events.len(), 3456);
    assert_eq!(log.errors, Vec::<(usize, String)>::new());
    assert_eq!(log.count_where(|event| event.problem.is_some()), 0);
}

#[test]
fn yauaa_log_first_line_fields() {
    let log = DecodedLog::read(YAUAA_LOG);
    let (line, event) = &log.events[0];

    assert_eq!(*line, 1);
    // 25/Oct/2015:04:11:25 +0100 is 03:11:25 UTC.
    assert_eq!(event.time_ms, 1_445_742_685_000);
    assert_eq!(event.client, "195.154.46.135");
    assert_eq!(event.method, "GET");
    assert_eq!(event.path, "/linux/doing-pxe-without-dhcp-control");
    assert_eq!(event.status, Some(200));
    assert_eq!(event.response_bytes, Some(24_323));
    assert_eq!(event.referer.as_deref(), Some("http://howto.basjes.nl/"));
    assert_eq!(
        event.user_agent.as_deref(),
        Some("Mozilla/5.0 (Windows NT 5.1; rv:35.0) Gecko/20100101 Firefox/35.0")
    );
    assert_eq!(event.problem, None);
}

#[test]
fn yauaa_log_status_method_and_request_counts() {
    let log = DecodedLog::read(YAUAA_LOG);

    let by_status = log.count_by(|event| event.status);
    let expected = counts(&[
        (Some(200), 2846),
        (Some(302), 585),
        (Some(403), 13),
        (Some(404), 12),
    ]);
    assert_eq!(by_status, expected);

    let by_method = log.count_by(|event| event.method.clone());
    assert_eq!(
        by_method,
        counts(&[("GET".to_string(), 2376), ("POST".to_string(), 1080)])
    );

    // These counts include absolute-URI requests such as `GET http://howto.basjes.nl/join_form`,
    // which count under their path: two for each form request and four for require_login.
    let by_request = log.count_by(|event| (event.method.clone(), event.path.clone()));
    let request_count = |method: &str, path: &str| {
        by_request
            .get(&(method.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(request_count("GET", "/join_form"), 587);
    assert_eq!(request_count("POST", "/join_form"), 578);
    assert_eq!(request_count("GET", "/login_form"), 522);
    assert_eq!(request_count("POST", "/login_form"), 501);
    assert_eq!(
        request_count("GET", "/acl_users/credentials_cookie_auth/require_login"),
        789
    );
    assert_eq!(log.count_where(|event| !event.path.starts_with('/')), 0);
}

#[test]
fn yauaa_log_field_totals() {
    let log = DecodedLog::read(YAUAA_LOG);

    let clients: BTreeSet<&str> = log.events().map(|event| event.client.as_str()).collect();
    assert_eq!(clients.len(), 520);
    let post_clients: BTreeSet<&str> = log
        .events()
        .filter(|event| event.method == "POST")
        .map(|event| event.client.as_str())
        .collect();
    // All 520 clients send requests, but only 439 of them send a POST.
    assert_eq!(post_clients.len(), 439);
    assert_eq!(log.count_where(|event| event.client.contains(':')), 12);

    let times: Vec<i64> = log.events().map(|event| event.time_ms).collect();
    assert_eq!(times.iter().sum::<i64>(), 4_997_312_298_776_000);
    assert_eq!(times.iter().min(), Some(&1_445_742_685_000));
    assert_eq!(times.iter().max(), Some(&1_446_217_179_000));

    assert_eq!(log.count_where(|event| event.response_bytes.is_none()), 0);
    let size_sum: u64 = log.events().filter_map(|event| event.response_bytes).sum();
    assert_eq!(size_sum, 46_882_196);

    assert_eq!(log.count_where(|event| event.referer.is_none()), 21);
    assert_eq!(log.count_where(|event| event.user_agent.is_none()), 0);
    assert_eq!(log.count_where(|event| event.query.is_some()), 793);
    assert_eq!(log.count_where(|event| event.principal.is_some()), 0);
}
