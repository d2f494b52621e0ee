//! KPIs and impact against a naive recomputation: for every final finding, the KPIs of its
//! routes during its window and its baseline are recounted from the events themselves.

mod common;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use serde_json::Value;

const MINUTE: i64 = 60_000;
/// 2026-01-05T12:00:00Z.
const T0: i64 = 1_767_614_400_000;

#[derive(Clone, Debug)]
struct Event {
    time: i64,
    method: &'static str,
    route: &'static str,
    status: u16,
    client: String,
    latency: f64,
}

/// Two hours of traffic on three routes with heavy-tailed latencies, and bursts of failed
/// logins from a few clients in the second hour, during which login latency quadruples.
fn traffic(seed: u64) -> Vec<Event> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let routes = [
        ("POST", "/login"),
        ("GET", "/api/orders"),
        ("GET", "/api/items"),
    ];
    let mut events = Vec::new();
    let mut time = T0;
    while time < T0 + 120 * MINUTE {
        time += rng.random_range(200..1_500);
        let (method, route) = routes[rng.random_range(0..routes.len())];
        let attack = route == "/login" && (T0 + 70 * MINUTE..T0 + 80 * MINUTE).contains(&time);
        let base = 20.0 * (1.0 / (1.0 - rng.random::<f64>())).powf(0.6);
        let latency = if attack { base * 4.0 } else { base };
        let status = match rng.random_range(0..100) {
            0..=2 => 500,
            3..=6 => 404,
            _ => 200,
        };
        events.push(Event {
            time,
            method,
            route,
            status,
            client: format!("10.0.0.{}", rng.random_range(1..200)),
            latency: (latency * 100.0).round() / 100.0,
        });
        if attack && rng.random_range(0..2) == 0 {
            events.push(Event {
                time: time + 1,
                method: "POST",
                route: "/login",
                status: 401,
                client: format!("203.0.113.{}", rng.random_range(1..4)),
                latency: (base * 4.0 * 100.0).round() / 100.0,
            });
        }
    }
    events
}

fn write_events(events: &[Event], path: &std::path::Path) {
    let lines: String = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "time": e.time, "service": "shop", "method": e.method, "path": e.route,
                "status": e.status, "client": e.client, "latency_ms": e.latency,
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// The exact quantile at rank `floor(q * (n - 1))`, the rank the sketch estimates.
fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(q * (values.len() as f64 - 1.0)) as usize]
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// Recounts one route's KPIs over `[from, to)` and checks them against a summary.
fn check_summary(events: &[Event], route: &str, from: i64, to: i64, summary: &Value, what: &str) {
    let inside: Vec<&Event> = events
        .iter()
        .filter(|e| format!("{} {}", e.method, e.route) == route && (from..to).contains(&e.time))
        .collect();
    let n = inside.len() as u64;
    let errors_4xx = inside
        .iter()
        .filter(|e| (400..500).contains(&e.status))
        .count() as u64;
    let errors_5xx = inside.iter().filter(|e| e.status >= 500).count() as u64;
    assert_eq!(summary["requests"], n, "{what}: requests");
    assert_eq!(summary["errors_4xx"], errors_4xx, "{what}: 4xx");
    assert_eq!(summary["errors_5xx"], errors_5xx, "{what}: 5xx");
    let rate = |k: u64| ((k as f64 / n as f64) * 10_000.0).round() / 10_000.0;
    assert_eq!(
        summary["error_4xx_rate"].as_f64().unwrap(),
        rate(errors_4xx),
        "{what}"
    );
    assert_eq!(
        summary["error_5xx_rate"].as_f64().unwrap(),
        rate(errors_5xx),
        "{what}"
    );
    let mut latencies: Vec<f64> = inside.iter().map(|e| e.latency).collect();
    for (field, q) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
        let exact = exact_quantile(&mut latencies, q);
        let reported = summary[field].as_f64().unwrap();
        // The sketch's stated relative error, plus the rounding to 4 decimals.
        assert!(
            (reported - exact).abs() <= 0.01 * exact + 1e-4,
            "{what}: {field} {reported} vs exact {exact}"
        );
    }
}

#[test]
fn impact_matches_a_naive_recount() {
    let dir = common::temp_dir("kpi-oracle");
    let events = traffic(11);
    let path = dir.join("events.jsonl");
    write_events(&events, &path);
    let findings = common::finals(common::scan_jsonl(&[&path], &[]));
    let mut checked = BTreeMap::new();
    for finding in &findings {
        let impact = &finding["impact"];
        assert_eq!(impact["kpi_window_ms"], 60_000);
        let start = ms(finding["window"]["start"].as_str().unwrap());
        let end = ms(finding["window"]["end"].as_str().unwrap());
        for route in impact["routes"].as_array().unwrap() {
            let name = route["route"].as_str().unwrap();
            let what = format!(
                "{} {} on {name}",
                finding["rule_id"], finding["window"]["start"]
            );
            // The finding's windows are whole KPI windows here (minutes), so the recount
            // covers exactly its window.
            check_summary(&events, name, start, end, &route["during"], &what);
            if let Some(share) = route.get("from_group") {
                let client = share["value"].as_str().unwrap();
                let mine = events.iter().filter(|e| {
                    e.client == client
                        && format!("{} {}", e.method, e.route) == name
                        && (start..end).contains(&e.time)
                });
                assert_eq!(
                    share["requests"],
                    mine.count() as u64,
                    "{what}: group requests"
                );
            }
            *checked
                .entry(finding["rule_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    assert!(
        checked.get("auth-failure-burst").copied().unwrap_or(0) >= 3,
        "{checked:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn impact_shows_a_latency_rise_against_the_baseline() {
    let dir = common::temp_dir("kpi-rise");
    let events = traffic(12);
    let path = dir.join("events.jsonl");
    write_events(&events, &path);
    let findings = common::finals(common::scan_jsonl(&[&path], &[]));
    let burst = findings
        .iter()
        .find(|f| f["rule_id"] == "auth-failure-burst")
        .expect("an auth-failure-burst finding");
    let route = &burst["impact"]["routes"][0];
    assert_eq!(route["route"], "POST /login");
    assert_eq!(route["baseline_windows"], 30);
    // Baseline: the 30 minutes before the finding's window, recounted.
    let start = ms(burst["window"]["start"].as_str().unwrap());
    check_summary(
        &events,
        "POST /login",
        start - 30 * MINUTE,
        start,
        &route["baseline"],
        "baseline",
    );
    // Latency quadrupled during the attack; the sketch keeps the ratio within its error.
    let during = route["during"]["p50_ms"].as_f64().unwrap();
    let before = route["baseline"]["p50_ms"].as_f64().unwrap();
    let factor = during / before;
    assert!((3.0..=5.3).contains(&factor), "p50 factor {factor}");
    let relative = route["change"]["p50_ms"]["relative"].as_f64().unwrap();
    assert!(
        (relative - (factor - 1.0)).abs() < 1e-3,
        "{relative} vs {factor}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
