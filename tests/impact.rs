//! Impact on a generated scenario with labels (examples/impact): credential stuffing slows
//! the login route fourfold while an unrelated deploy slows a payments route threefold.

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
    text.lines()
        .map(|line| {
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
        })
        .collect()
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
        let labelled = stuffing["effects"]["latency_factor"].as_f64().unwrap();
        assert!(
            (factor / labelled - 1.0).abs() < 0.4,
            "factor {factor} far from the labelled {labelled}"
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
