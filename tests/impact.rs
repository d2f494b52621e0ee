//! Impact on generated scenarios with labels. In examples/impact, credential stuffing slows
//! the login route fourfold while an unrelated deploy slows a payments route threefold. A
//! scenario generated here adds a slowdown of a neighbouring route that follows the attack,
//! and a periodic one that does not.

mod common;

use std::io::Read;

use serde_json::Value;

struct Event {
    time: i64,
    service: String,
    route: String,
    status: u16,
    client: String,
    latency: f64,
}

fn events() -> Vec<Event> {
    let file = std::fs::File::open(common::root().join("examples/impact/events.jsonl.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(event_of).collect()
}

fn event_of(line: &str) -> Event {
    let v: Value = serde_json::from_str(line).unwrap();
    Event {
        time: ms(v["time"].as_str().unwrap()),
        service: v["service"].as_str().unwrap().to_string(),
        route: format!(
            "{} {}",
            v["method"].as_str().unwrap(),
            v["route"].as_str().unwrap()
        ),
        status: v["status"].as_u64().unwrap() as u16,
        client: v["client"].as_str().unwrap().to_string(),
        latency: v["latency_ms"].as_f64().unwrap(),
    }
}

fn labels() -> Vec<Value> {
    std::fs::read_to_string(common::root().join("examples/impact/labels.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn exact_p99(events: &[&Event]) -> f64 {
    let mut latencies: Vec<f64> = events.iter().map(|e| e.latency).collect();
    latencies.sort_by(f64::total_cmp);
    latencies[(0.99 * (latencies.len() as f64 - 1.0)) as usize]
}

fn findings() -> Vec<Value> {
    let path = common::root().join("examples/impact/events.jsonl.gz");
    common::finals(common::scan_jsonl(&[&path], &[]))
}

#[test]
fn impact_of_credential_stuffing() {
    let events = events();
    let labels = labels();
    let stuffing = labels
        .iter()
        .find(|l| l["name"] == "credential-stuffing")
        .unwrap();
    let attackers: Vec<&str> = stuffing["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let route = format!(
        "{} {}",
        stuffing["method"].as_str().unwrap(),
        stuffing["route"].as_str().unwrap()
    );
    let findings = findings();
    let bursts: Vec<&Value> = findings
        .iter()
        .filter(|f| f["rule_id"] == "auth-failure-burst")
        .collect();
    // Every stuffing client is caught, and no one else.
    let mut caught: Vec<&str> = bursts
        .iter()
        .map(|f| f["group"]["client"].as_str().unwrap())
        .collect();
    caught.sort();
    caught.dedup();
    let mut expected = attackers.clone();
    expected.sort();
    assert_eq!(caught, expected);

    for finding in bursts {
        let client = finding["group"]["client"].as_str().unwrap();
        let impact = &finding["impact"]["routes"][0];
        assert_eq!(impact["service"], stuffing["service"]);
        assert_eq!(impact["route"], route.as_str());
        let start = ms(finding["window"]["start"].as_str().unwrap());
        let end = ms(finding["window"]["end"].as_str().unwrap());
        let on_route: Vec<&Event> = events
            .iter()
            .filter(|e| e.service == "accounts" && e.route == route)
            .collect();
        let during: Vec<&Event> = on_route
            .iter()
            .copied()
            .filter(|e| (start..end).contains(&e.time))
            .collect();
        let windows = impact["baseline_windows"].as_i64().unwrap();
        assert!(windows >= 20, "{windows} baseline windows");

        // The attackers' share of the route's errors is exact, from the labelled identities.
        let errors = during.iter().filter(|e| e.status >= 400).count() as u64;
        let mine = during
            .iter()
            .filter(|e| e.client == client && e.status >= 400)
            .count() as u64;
        let share = &impact["from_group"];
        assert_eq!(share["errors"], mine);
        let expected_share = ((mine as f64 / errors as f64) * 10_000.0).round() / 10_000.0;
        assert_eq!(share["errors_share"].as_f64().unwrap(), expected_share);
        let from_attackers = during
            .iter()
            .filter(|e| e.status >= 400 && attackers.contains(&e.client.as_str()))
            .count();
        assert!(
            from_attackers as f64 > 0.9 * errors as f64,
            "attackers made most errors"
        );

        // p99 during the finding, against the exact p99 of the same events.
        let p99 = impact["during"]["p99_ms"].as_f64().unwrap();
        let exact = exact_p99(&during);
        assert!(
            (p99 - exact).abs() <= 0.01 * exact + 1e-3,
            "p99 {p99} vs {exact}"
        );
        // The reported factor is the exact factor of these events within the sketch's error
        // (1% on each quantile), and the events carry the labelled factor up to sampling.
        let baseline = impact["baseline"]["p99_ms"].as_f64().unwrap();
        let factor = p99 / baseline;
        let relative = impact["change"]["p99_ms"]["relative"].as_f64().unwrap();
        assert!((relative + 1.0 - factor).abs() < 1e-3);
        // The baseline is the 30 minutes before the window, less the attack's earlier windows,
        // which its findings claimed.
        let attack_start = ms(stuffing["start"].as_str().unwrap());
        let baseline_events: Vec<&Event> = on_route
            .iter()
            .copied()
            .filter(|e| (start - 30 * 60_000..start.min(attack_start)).contains(&e.time))
            .collect();
        assert_eq!(
            windows,
            (start.min(attack_start) - (start - 30 * 60_000)) / 60_000
        );
        let exact_baseline = exact_p99(&baseline_events);
        assert!(
            (baseline - exact_baseline).abs() <= 0.01 * exact_baseline + 1e-3,
            "baseline p99 {baseline} vs {exact_baseline}"
        );
        // Each p99 is within 1% of its exact value, so the factor is within about 2% of the
        // exact factor of these events.
        let exact_factor = exact / exact_baseline;
        assert!(
            (factor / exact_factor - 1.0).abs() <= 0.0202,
            "factor {factor} vs exact {exact_factor}"
        );
        // The events carry the labelled factor up to the sampling of a heavy tail.
        let labelled = stuffing["effects"]["latency_factor"].as_f64().unwrap();
        assert!(
            (exact_factor / labelled - 1.0).abs() < 0.4,
            "exact factor {exact_factor} far from the labelled {labelled}"
        );
        // The matches follow the latency on this route.
        let correlation = impact["correlation"]["p99_ms"].as_f64().unwrap();
        assert!(correlation > 0.8, "correlation {correlation}");
    }
}

#[test]
fn impact_leaves_out_an_unrelated_route() {
    let labels = labels();
    let regression = labels
        .iter()
        .find(|l| l["name"] == "deploy-regression")
        .unwrap();
    assert_eq!(regression["attack"], false);
    for finding in findings() {
        for route in finding["impact"]["routes"].as_array().unwrap() {
            assert_ne!(
                route["service"], regression["service"],
                "{} names the payments route",
                finding["rule_id"]
            );
        }
    }
}

#[test]
fn console_prints_one_impact_line() {
    let path = common::root().join("examples/impact/events.jsonl.gz");
    let output = common::feedloop(&["scan", path.to_str().unwrap()]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("impact: on POST /api/auth/login during the finding"))
        .unwrap_or_else(|| panic!("no impact line:\n{text}"));
    assert!(line.contains(", p99 latency +"), "{line}");
    assert!(
        line.contains("% of its errors from client=203.0.113."),
        "{line}"
    );
}

/// The chart of the first credential-stuffing finding, committed beside the scenario so a
/// reader can see what operators get. Set FEEDLOOP_BLESS=1 to write it again.
#[test]
fn chart_of_the_scenario_is_stable() {
    let findings = findings();
    let finding = findings
        .iter()
        .find(|f| f["rule_id"] == "auth-failure-burst")
        .unwrap();
    let route: feedloop_pipeline::impact::RouteImpact =
        serde_json::from_value(finding["impact"]["routes"][0].clone()).unwrap();
    let title = format!(
        "{}: {} on {}",
        finding["title"].as_str().unwrap(),
        route.route,
        route.service
    );
    let png = feedloop_connectors::chart::render_png(&title, &route, 800, 400).unwrap();
    let again = feedloop_connectors::chart::render_png(&title, &route, 800, 400).unwrap();
    assert_eq!(png, again, "the same finding gives the same bytes");
    // The PNG header holds the size: width and height as big-endian u32 after "IHDR".
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 800);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 400);
    let committed = common::root().join("examples/impact/chart-credential-stuffing.png");
    if std::env::var_os("FEEDLOOP_BLESS").is_some() {
        std::fs::write(&committed, &png).unwrap();
    }
    assert_eq!(
        std::fs::read(&committed).unwrap(),
        png,
        "bless with FEEDLOOP_BLESS=1"
    );
}

/// Generates 90 minutes of traffic around credential stuffing on the login route. A shared
/// backend slows token refreshes while the attack runs. A batch job slows `GET /api/users/me`
/// for two minutes out of every four, from before the attack until after it. A deploy slows
/// the payments service while the attack runs.
fn other_routes_scenario(dir: &std::path::Path) -> std::path::PathBuf {
    use feedloop_bench::scenario::{output, Plan, ScenarioConfig, ScenarioGenerator};

    let plan: Plan = serde_json::from_value(serde_json::json!({"scenarios": [
        {"kind": "credential-stuffing", "name": "credential-stuffing", "start_offset_s": 2400,
         "duration_s": 900, "clients": 12, "requests_per_client_per_minute": 6.0,
         "latency_factor": 4.0},
        {"kind": "deploy-regression", "name": "auth-backend-saturation", "start_offset_s": 2400,
         "duration_s": 900, "latency_factor": 2.5, "route": "POST /api/auth/token/refresh"},
        {"kind": "deploy-regression", "name": "batch-job", "start_offset_s": 600,
         "duration_s": 4200, "latency_factor": 3.0, "route": "GET /api/users/me",
         "slow_for_s": 120, "every_s": 240},
        {"kind": "deploy-regression", "name": "deploy-regression", "start_offset_s": 2700,
         "duration_s": 1200, "latency_factor": 3.0}
    ]}))
    .unwrap();
    let config = ScenarioConfig {
        seed: 7,
        duration_ms: 90 * 60_000,
        plan,
        ..ScenarioConfig::default()
    };
    let path = dir.join("events.jsonl");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let summary = output::run(
        ScenarioGenerator::new(config).unwrap(),
        Box::new(output::JsonlSink::plain(file)),
        output::Pacing {
            send_rate: None,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(120),
        },
    )
    .unwrap();
    assert_eq!(summary.events, 53_954);
    path
}

/// Returns each KPI window's p99 latency of a route over a time range, from the events.
fn window_p99s(events: &[Event], route: &str, from: i64, to: i64) -> Vec<(i64, f64)> {
    let mut windows: std::collections::BTreeMap<i64, Vec<&Event>> = Default::default();
    for event in events.iter().filter(|e| e.route == route) {
        if (from..to).contains(&event.time) {
            windows
                .entry(event.time - event.time % 60_000)
                .or_default()
                .push(event);
        }
    }
    windows
        .into_iter()
        .map(|(start, events)| (start, exact_p99(&events)))
        .collect()
}

#[test]
fn other_routes_separate_collateral_from_coincidence() {
    let dir = common::temp_dir("other-routes");
    let path = other_routes_scenario(&dir);
    let findings: Vec<Value> = common::finals(common::scan_jsonl(&[&path], &[]))
        .into_iter()
        .filter(|f| f["rule_id"] == "auth-failure-burst")
        .collect();
    assert_eq!(
        findings.len(),
        36,
        "three 5-minute windows of 12 stuffing clients"
    );

    for finding in &findings {
        let impact = &finding["impact"];
        let routes: Vec<&str> = impact["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["route"].as_str().unwrap())
            .collect();
        assert_eq!(routes, ["POST /api/auth/login"]);
        let others = impact["other_routes"].as_array().unwrap();
        let other = |route: &str| {
            others
                .iter()
                .find(|o| o["route"] == route)
                .unwrap_or_else(|| panic!("{route} missing from {others:?}"))
        };

        // Token refreshes slowed with the attack: related, and first.
        let refresh = other("POST /api/auth/token/refresh");
        assert_eq!(others[0]["route"], "POST /api/auth/token/refresh");
        assert_eq!(refresh["rose"], true);
        assert_eq!(refresh["related"], true);
        let r = refresh["correlation"]["p99_ms"].as_f64().unwrap();
        assert!(r >= 0.7, "refresh correlation {r}");
        let rise = refresh["change"]["p99_ms"]["relative"].as_f64().unwrap();
        assert!(rise >= 0.5, "refresh p99 rise {rise}");

        // The batch job slowed GET /api/users/me in half of the windows, before, during and
        // after the attack: its p99 does not follow the matches.
        let me = other("GET /api/users/me");
        assert_eq!(me["related"], false);
        let r = me["correlation"]["p99_ms"].as_f64().unwrap();
        assert!(r.abs() < 0.3, "batch job correlation {r}");
        assert_eq!(me["correlation"]["windows"], 30);

        // The payments deploy ran at the same time, in another service: never checked.
        for route in impact["routes"].as_array().unwrap().iter().chain(others) {
            assert_ne!(route["service"], "payments");
        }
    }

    // The batch job really raised the route's latency during the attack: the windows it slowed
    // have a p99 at least twice that of the windows it left alone.
    let events: Vec<Event> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(event_of)
        .collect();
    let start = ms("2025-06-02T08:40:00Z");
    let windows = window_p99s(&events, "GET /api/users/me", start, start + 15 * 60_000);
    let slow = |window: i64| ((window - ms("2025-06-02T08:10:00Z")) / 60_000) % 4 < 2;
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    let slowed = mean(windows.iter().filter(|w| slow(w.0)).map(|w| w.1).collect());
    let normal = mean(windows.iter().filter(|w| !slow(w.0)).map(|w| w.1).collect());
    assert!(
        slowed >= 2.0 * normal,
        "slowed {slowed} ms, normal {normal} ms"
    );

    let _ = std::fs::remove_dir_all(&dir);
}
