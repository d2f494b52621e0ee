use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;

use feedloop_connectors::decode::{Decoder, Format, JsonMapping};
use feedloop_rules::{packs, Detection, Rule};

use super::output::{self, AvroSink, JsonlSink, OutputError, Pacing, Sink};
use super::traffic::{route_index, LOGIN_ROUTE, ORDER_ROUTE, PRODUCT_ROUTE};
use super::*;

/// Returns the default configuration at a lower rate, so a run takes about a second.
fn small_config(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        mean_rate_per_second: 2.0,
        ..ScenarioConfig::default()
    }
}

/// Returns the events and labels of the default configuration, generated once for all tests.
fn default_run() -> &'static (Vec<ScenarioEvent>, Vec<Label>) {
    static RUN: OnceLock<(Vec<ScenarioEvent>, Vec<Label>)> = OnceLock::new();
    RUN.get_or_init(|| generate(&ScenarioConfig::default()))
}

fn generate(config: &ScenarioConfig) -> (Vec<ScenarioEvent>, Vec<Label>) {
    let mut generator = ScenarioGenerator::new(config.clone()).unwrap();
    let events: Vec<ScenarioEvent> = generator.by_ref().collect();
    assert!(!generator.truncated());
    (events, generator.labels())
}

/// Writes a run to memory as an Avro container file, or else as JSON Lines.
fn write_run(config: &ScenarioConfig, avro: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let sink: Box<dyn Sink + '_> = if avro {
        Box::new(AvroSink::new(&mut bytes, config.avro_marker()).unwrap())
    } else {
        Box::new(JsonlSink::plain(&mut bytes))
    };
    let pacing = Pacing {
        send_rate: None,
        deadline: Instant::now() + Duration::from_secs(120),
    };
    let generator = ScenarioGenerator::new(config.clone()).unwrap();
    output::run(generator, sink, pacing).unwrap();
    bytes
}

fn jsonl_bytes(config: &ScenarioConfig) -> Vec<u8> {
    write_run(config, false)
}

fn avro_bytes(config: &ScenarioConfig) -> Vec<u8> {
    write_run(config, true)
}

fn label<'a>(labels: &'a [Label], kind: &str) -> (usize, &'a Label) {
    labels
        .iter()
        .enumerate()
        .find(|(_, l)| l.kind == kind)
        .unwrap()
}

/// Returns the sorted latencies of the events on `route` in `[start_ms, end_ms)`.
fn latencies(events: &[ScenarioEvent], route: usize, start_ms: i64, end_ms: i64) -> Vec<f64> {
    let template = ROUTES[route].template;
    let method = ROUTES[route].method;
    let mut values: Vec<f64> = events
        .iter()
        .map(|g| &g.event)
        .filter(|e| e.route == template && e.method == method)
        .filter(|e| (start_ms..end_ms).contains(&e.time_ms))
        .map(|e| e.latency_ms.unwrap())
        .collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Returns the nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn status_share(
    events: &[ScenarioEvent],
    route: usize,
    window: (i64, i64),
    matches: impl Fn(u16) -> bool,
) -> (f64, usize) {
    let template = ROUTES[route].template;
    let on_route: Vec<u16> = events
        .iter()
        .map(|g| &g.event)
        .filter(|e| e.route == template && (window.0..window.1).contains(&e.time_ms))
        .map(|e| e.status.unwrap())
        .collect();
    let hits = on_route.iter().filter(|&&s| matches(s)).count();
    (hits as f64 / on_route.len() as f64, on_route.len())
}

#[test]
fn same_seed_same_jsonl_bytes() {
    let config = small_config(7);
    let first = jsonl_bytes(&config);
    let second = jsonl_bytes(&config);
    assert!(first.len() > 1_000_000, "{} bytes", first.len());
    assert!(first == second, "two JSON Lines runs of seed 7 differ");
}

#[test]
fn same_seed_same_avro_bytes() {
    let config = small_config(7);
    let first = avro_bytes(&config);
    let second = avro_bytes(&config);
    assert!(first.len() > 1_000_000, "{} bytes", first.len());
    assert!(first == second, "two Avro runs of seed 7 differ");
}

#[test]
fn other_seed_other_bytes() {
    let first = jsonl_bytes(&small_config(7));
    let second = jsonl_bytes(&small_config(8));
    assert!(first != second, "seeds 7 and 8 produce the same bytes");
}

#[test]
fn jsonl_decodes_to_generated_events() {
    let config = small_config(9);
    let bytes = jsonl_bytes(&config);
    let (generated, _) = generate(&config);
    let decoder = Decoder::new(Format::Json(JsonMapping::default()));
    let lines: Vec<&[u8]> = bytes
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(lines.len(), generated.len());
    for (line, generated) in lines.into_iter().zip(&generated) {
        let decoded = decoder.decode(line).unwrap();
        assert_eq!(
            decoded,
            generated.event,
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn avro_file_reads_back_same_events() {
    let config = small_config(10);
    let bytes = avro_bytes(&config);
    let (generated, _) = generate(&config);
    let read = avro::read_file(bytes.as_slice()).unwrap();
    assert_eq!(read.len(), generated.len());
    for (read, generated) in read.iter().zip(&generated) {
        assert_eq!(read, &generated.event);
    }
}

#[test]
fn avro_file_starts_with_magic_and_schema() {
    let bytes = avro_bytes(&small_config(10));
    assert_eq!(&bytes[..4], b"Obj\x01");
    let header = String::from_utf8_lossy(&bytes[..2_048]);
    assert!(header.contains("avro.schema"));
    assert!(header.contains(r#""namespace":"feedloop","name":"ApiEvent""#));
    assert!(header.contains(r#"{"type":"long","logicalType":"timestamp-millis"}"#));
}

#[test]
fn confluent_message_round_trips() {
    let (events, _) = default_run();
    let encoder = avro::ConfluentEncoder::new(42).unwrap();
    let mut message = Vec::new();
    for generated in events.iter().step_by(997) {
        encoder.encode(&generated.event, &mut message).unwrap();
        assert_eq!(&message[..5], &[0, 0, 0, 0, 42]);
        let (schema_id, event) = avro::decode_confluent(&message).unwrap();
        assert_eq!(schema_id, 42);
        assert_eq!(event, generated.event);
    }
    assert!(avro::decode_confluent(&[1, 0, 0, 0, 42, 0]).is_err());
    assert!(avro::decode_confluent(&[0, 0]).is_err());
}

#[test]
fn events_are_in_time_order_within_run() {
    let config = ScenarioConfig::default();
    let (events, _) = default_run();
    let end_ms = config.start_ms + config.duration_ms;
    assert!(events
        .windows(2)
        .all(|w| w[0].event.time_ms <= w[1].event.time_ms));
    assert!(events
        .iter()
        .all(|g| (config.start_ms..end_ms).contains(&g.event.time_ms)));
}

#[test]
fn labels_describe_the_default_plan() {
    let (_, labels) = default_run();
    let kinds: Vec<&str> = labels.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "credential-stuffing",
            "deploy-regression",
            "object-enumeration",
            "injection-campaign",
            "scraper"
        ]
    );
    let (_, stuffing) = label(labels, "credential-stuffing");
    assert_eq!(stuffing.clients.len(), 12);
    assert_eq!(stuffing.route, "/api/auth/login");
    assert_eq!(stuffing.effects.latency_factor, Some(4.0));
    assert_eq!(stuffing.start, "2025-06-02T08:40:00.000Z");
    assert_eq!(stuffing.end, "2025-06-02T08:55:00.000Z");
    let (_, regression) = label(labels, "deploy-regression");
    assert!(!regression.attack);
    assert!(regression.clients.is_empty());
    assert_eq!(regression.effects.latency_factor, Some(3.0));
    assert_eq!(regression.service, "payments");
    assert_eq!(regression.method, "POST");
    assert_eq!(regression.route, "/api/payments");
    assert_eq!(regression.slow_for_ms, None);
    assert_eq!(regression.every_ms, None);
    let (_, enumeration) = label(labels, "object-enumeration");
    assert_eq!(enumeration.principals.len(), 1);

    let mut written = Vec::new();
    write_labels(labels, &mut written).unwrap();
    let text = String::from_utf8(written).unwrap();
    assert_eq!(text.lines().count(), labels.len());
    assert_eq!(&read_labels(&text).unwrap(), labels);
}

#[test]
fn attacker_events_only_inside_windows() {
    let (events, labels) = default_run();
    let mut counts = vec![0_u64; labels.len()];
    for generated in events {
        let event = &generated.event;
        let owner = labels
            .iter()
            .position(|l| l.clients.contains(&event.client));
        assert_eq!(
            owner, generated.scenario,
            "client {} at {}",
            event.client, event.time_ms
        );
        if let Some(index) = generated.scenario {
            let label = &labels[index];
            assert!(
                label.contains(event.time_ms),
                "{} event at {}",
                label.name,
                event.time_ms
            );
            assert_eq!(event.route, label.route);
            counts[index] += 1;
        }
        if let Some(principal) = &event.principal {
            let attacker = labels.iter().any(|l| l.principals.contains(principal));
            assert_eq!(
                attacker,
                generated.scenario.is_some(),
                "principal {principal}"
            );
        }
    }
    for (label, count) in labels.iter().zip(counts) {
        assert_eq!(label.attacker_events, count, "{}", label.name);
    }
}

#[test]
fn attacker_events_match_their_rates() {
    let (_, labels) = default_run();
    for label in labels.iter().filter(|l| l.attack) {
        let minutes = (label.end_ms - label.start_ms) as f64 / 60_000.0;
        let expected = label.effects.attacker_requests_per_minute.unwrap() * minutes;
        let events = label.attacker_events as f64;
        // Poisson counts stay within 5 standard deviations of their mean.
        let slack = 5.0 * expected.sqrt();
        assert!(
            (events - expected).abs() < slack,
            "{}: {events} events, expected {expected}",
            label.name
        );
    }
}

#[test]
fn login_latency_scales_by_factor() {
    let config = ScenarioConfig::default();
    let (events, labels) = default_run();
    let (_, stuffing) = label(labels, "credential-stuffing");
    let before = latencies(events, LOGIN_ROUTE, config.start_ms, stuffing.start_ms);
    let during = latencies(events, LOGIN_ROUTE, stuffing.start_ms, stuffing.end_ms);
    assert!(before.len() > 500, "{} logins before", before.len());
    assert!(during.len() > 1_000, "{} logins during", during.len());
    let factor = stuffing.effects.latency_factor.unwrap();
    for (q, tolerance) in [(0.5, 0.03), (0.95, 0.08), (0.99, 0.15)] {
        let ratio = quantile(&during, q) / quantile(&before, q);
        assert!(
            (ratio / factor - 1.0).abs() < tolerance,
            "p{} during / before is {ratio:.3}, expected {factor}",
            q * 100.0
        );
    }
    let after = latencies(events, LOGIN_ROUTE, stuffing.end_ms, i64::MAX);
    let ratio = quantile(&after, 0.5) / quantile(&before, 0.5);
    assert!(
        (ratio - 1.0).abs() < 0.05,
        "p50 after / before is {ratio:.3}"
    );
}

#[test]
fn regression_changes_only_its_route_and_window() {
    let config = small_config(13);
    let (with, labels) = generate(&config);
    let (index, regression) = label(&labels, "deploy-regression");
    let mut without_config = config.clone();
    without_config.plan.scenarios.remove(index);
    let (without, _) = generate(&without_config);

    let normal = |events: &[ScenarioEvent]| -> Vec<ApiEvent> {
        events
            .iter()
            .filter(|g| g.scenario.is_none())
            .map(|g| g.event.clone())
            .collect()
    };
    let (with, without) = (normal(&with), normal(&without));
    assert_eq!(with.len(), without.len());
    let factor = regression.effects.latency_factor.unwrap();
    let mut changed = 0;
    for (a, b) in with.iter().zip(&without) {
        let on_route = a.route == regression.route && a.method == regression.method;
        if on_route && regression.contains(a.time_ms) {
            assert_slowed(a, b, factor);
            changed += 1;
        } else {
            assert_eq!(a, b);
        }
    }
    assert!(changed > 30, "{changed} events changed");
}

#[test]
fn regression_latency_scales_by_factor() {
    let config = ScenarioConfig::default();
    let (events, labels) = default_run();
    let (_, regression) = label(labels, "deploy-regression");
    let payments = route_index(DEFAULT_REGRESSION_ROUTE).unwrap();
    let before = latencies(events, payments, config.start_ms, regression.start_ms);
    let during = latencies(events, payments, regression.start_ms, regression.end_ms);
    let factor = regression.effects.latency_factor.unwrap();
    let ratio = quantile(&during, 0.5) / quantile(&before, 0.5);
    assert!((ratio / factor - 1.0).abs() < 0.08, "p50 ratio {ratio:.3}");
}

/// Changes the deploy regression of `config`'s plan with `edit`.
fn edit_regression(config: &mut ScenarioConfig, edit: impl FnOnce(&mut DeployRegression)) {
    let regression = config
        .plan
        .scenarios
        .iter_mut()
        .find_map(|s| match s {
            Scenario::DeployRegression(r) => Some(r),
            _ => None,
        })
        .unwrap();
    edit(regression);
}

/// Returns the normal events of a run of `config` paired with those of the same run without
/// its deploy regression, and the regression's label.
fn pair_with_run_without_regression(config: &ScenarioConfig) -> (Vec<(ApiEvent, ApiEvent)>, Label) {
    let (with, labels) = generate(config);
    let (index, regression) = label(&labels, "deploy-regression");
    let mut without_config = config.clone();
    without_config.plan.scenarios.remove(index);
    let (without, _) = generate(&without_config);
    let normal = |events: &[ScenarioEvent]| -> Vec<ApiEvent> {
        events
            .iter()
            .filter(|g| g.scenario.is_none())
            .map(|g| g.event.clone())
            .collect()
    };
    let (with, without) = (normal(&with), normal(&without));
    assert_eq!(with.len(), without.len());
    (with.into_iter().zip(without).collect(), regression.clone())
}

/// Asserts that `slow` is `base` with its latency multiplied by `factor`. Both latencies are
/// rounded to whole microseconds, and the slowed one is capped at the gateway's timeout.
fn assert_slowed(slow: &ApiEvent, base: &ApiEvent, factor: f64) {
    let (slowed, latency) = (slow.latency_ms.unwrap(), base.latency_ms.unwrap());
    let rounding = 0.000_5 * (1.0 + factor) + 1e-9;
    if slowed == traffic::MAX_LATENCY_MS {
        assert!(
            latency * factor >= slowed - rounding,
            "latency {latency} ms capped at {slowed} ms"
        );
    } else {
        assert!(
            (slowed - latency * factor).abs() <= rounding,
            "latency {latency} ms became {slowed} ms at {}, expected {factor} times it",
            slow.time_ms
        );
    }
    let same_otherwise = ApiEvent {
        latency_ms: base.latency_ms,
        ..slow.clone()
    };
    assert_eq!(&same_otherwise, base);
}

#[test]
fn regression_on_users_me_changes_only_it() {
    let mut config = small_config(13);
    edit_regression(&mut config, |r| r.route = "GET /api/users/me".to_string());
    let (pairs, regression) = pair_with_run_without_regression(&config);
    assert_eq!(regression.service, "accounts");
    assert_eq!(regression.method, "GET");
    assert_eq!(regression.route, "/api/users/me");
    let factor = regression.effects.latency_factor.unwrap();
    assert_eq!(factor, 3.0);

    let (mut changed, mut before, mut after) = (0, 0, 0);
    for (with, without) in &pairs {
        let on_route = with.method == "GET" && with.route == "/api/users/me";
        if on_route && regression.contains(with.time_ms) {
            assert_slowed(with, without, factor);
            changed += 1;
        } else {
            assert_eq!(with, without);
            before += usize::from(on_route && with.time_ms < regression.start_ms);
            after += usize::from(on_route && with.time_ms >= regression.end_ms);
        }
    }
    // At 2 events/s about 0.12 calls a second reach the route, so 20 minutes contain about 140.
    assert!(changed > 80, "{changed} events changed");
    assert!(
        before > 80,
        "{before} events on the route before the window"
    );
    assert!(after > 80, "{after} events on the route after the window");
}

#[test]
fn periodic_regression_slows_only_slow_parts() {
    let mut config = small_config(14);
    edit_regression(&mut config, |r| {
        r.route = "GET /api/users/me".to_string();
        r.start_offset_s = 2_700;
        r.duration_s = 1_300;
        r.slow_for_s = Some(120);
        r.every_s = Some(240);
    });
    let (pairs, regression) = pair_with_run_without_regression(&config);
    let factor = regression.effects.latency_factor.unwrap();
    // The slow parts in seconds after the start of the window. The last period starts at
    // 1,200 s, and the window's end at 1,300 s cuts its slow part to 100 s.
    let slow_parts_s = [
        (0, 120),
        (240, 360),
        (480, 600),
        (720, 840),
        (960, 1_080),
        (1_200, 1_300),
    ];
    let slow_part = |time_ms: i64| {
        slow_parts_s.iter().position(|&(from, to)| {
            (regression.start_ms + from * 1_000..regression.start_ms + to * 1_000)
                .contains(&time_ms)
        })
    };

    let mut slowed = [0; 6];
    let (mut normal_inside, mut normal_outside) = (0, 0);
    for (with, without) in &pairs {
        let on_route = with.method == "GET" && with.route == "/api/users/me";
        if !on_route {
            assert_eq!(with, without);
            continue;
        }
        assert_eq!(
            regression.effects_active_at(with.time_ms),
            slow_part(with.time_ms).is_some(),
            "event at {}",
            with.time_ms
        );
        match slow_part(with.time_ms) {
            Some(part) => {
                assert_slowed(with, without, factor);
                slowed[part] += 1;
            }
            None => {
                assert_eq!(with, without);
                if regression.contains(with.time_ms) {
                    normal_inside += 1;
                } else {
                    normal_outside += 1;
                }
            }
        }
    }
    // About 0.12 calls a second reach the route, so a slow part contains about 14 of them and
    // the 100-second last one about 12.
    for (part, count) in slowed.iter().enumerate() {
        assert!(*count > 0, "no event in slow part {part}");
    }
    assert!(
        normal_inside > 30,
        "{normal_inside} normal events inside the window"
    );
    assert!(
        normal_outside > 500,
        "{normal_outside} events outside the window"
    );
}

#[test]
fn periodic_effect_bounds_are_exact() {
    let effect = RouteEffect {
        route: 10,
        start_ms: 1_000_000,
        end_ms: 2_300_000,
        period_ms: Some((120_000, 240_000)),
        latency_factor: 3.0,
        route_5xx_rate: None,
    };
    let cases = [
        (999_999, false),
        (1_000_000, true),
        (1_119_999, true),
        (1_120_000, false),
        (1_239_999, false),
        (1_240_000, true),
        (2_200_000, true),
        (2_299_999, true),
        (2_300_000, false),
    ];
    for (time_ms, active) in cases {
        assert_eq!(effect.is_active(10, time_ms), active, "at {time_ms}");
    }
    assert!(!effect.is_active(12, 1_000_000));

    let mut config = small_config(1);
    edit_regression(&mut config, |r| {
        r.start_offset_s = 0;
        r.duration_s = 1_300;
        r.slow_for_s = Some(120);
        r.every_s = Some(240);
    });
    let labels = ScenarioGenerator::new(config.clone()).unwrap().labels();
    let (_, regression) = label(&labels, "deploy-regression");
    for (time_ms, active) in cases {
        let time_ms = time_ms - 1_000_000 + config.start_ms;
        assert_eq!(
            regression.effects_active_at(time_ms),
            active,
            "at {time_ms}"
        );
    }
}

#[test]
fn periodic_regression_label_carries_period() {
    let mut config = small_config(1);
    edit_regression(&mut config, |r| {
        r.route = "GET /api/users/me".to_string();
        r.duration_s = 1_300;
        r.slow_for_s = Some(120);
        r.every_s = Some(240);
    });
    let generator = ScenarioGenerator::new(config).unwrap();
    let labels = generator.labels();
    let (_, regression) = label(&labels, "deploy-regression");
    assert_eq!(regression.slow_for_ms, Some(120_000));
    assert_eq!(regression.every_ms, Some(240_000));
    let (_, stuffing) = label(&labels, "credential-stuffing");
    assert_eq!(stuffing.slow_for_ms, None);
    assert_eq!(stuffing.every_ms, None);

    let mut written = Vec::new();
    write_labels(std::slice::from_ref(regression), &mut written).unwrap();
    assert_eq!(
        String::from_utf8(written).unwrap(),
        concat!(
            r#"{"name":"deploy-regression","kind":"deploy-regression","attack":false,"#,
            r#""start_ms":1748853900000,"end_ms":1748855200000,"#,
            r#""start":"2025-06-02T08:45:00.000Z","end":"2025-06-02T09:06:40.000Z","#,
            r#""slow_for_ms":120000,"every_ms":240000,"#,
            r#""service":"accounts","method":"GET","route":"/api/users/me","#,
            r#""clients":[],"principals":[],"attacker_events":0,"expected_rules":[],"#,
            r#""effects":{"latency_factor":3.0}}"#,
            "\n"
        )
    );
}

#[test]
fn default_regression_knobs_stay_out_of_json() {
    let (index, _) = label(&default_run().1, "deploy-regression");
    let regression = &Plan::default().scenarios[index];
    assert_eq!(
        serde_json::to_string(regression).unwrap(),
        r#"{"kind":"deploy-regression","name":"deploy-regression","start_offset_s":2700,"duration_s":1200,"latency_factor":3.0}"#
    );
    let Scenario::DeployRegression(spec) = regression else {
        panic!("scenario {index} is not the deploy regression");
    };
    assert_eq!(spec.route, DEFAULT_REGRESSION_ROUTE);
    assert_eq!(spec.period_s(), None);
}

#[test]
fn periodic_regression_plan_parses() {
    let json = r#"{"scenarios": [{"kind": "deploy-regression", "name": "batch-job",
        "start_offset_s": 3600, "duration_s": 3600, "latency_factor": 2.5,
        "route": "GET /api/users/me", "slow_for_s": 120, "every_s": 240}]}"#;
    let plan: Plan = serde_json::from_str(json).unwrap();
    assert_eq!(
        plan.scenarios,
        [Scenario::DeployRegression(DeployRegression {
            name: "batch-job".to_string(),
            start_offset_s: 3_600,
            duration_s: 3_600,
            latency_factor: 2.5,
            route: "GET /api/users/me".to_string(),
            slow_for_s: Some(120),
            every_s: Some(240),
        })]
    );
    assert_eq!(plan.validate(14_400), Ok(()));
    assert_eq!(
        serde_json::to_string(&plan).unwrap(),
        r#"{"scenarios":[{"kind":"deploy-regression","name":"batch-job","start_offset_s":3600,"duration_s":3600,"latency_factor":2.5,"route":"GET /api/users/me","slow_for_s":120,"every_s":240}]}"#
    );
}

#[test]
fn invalid_regression_knobs_are_rejected() {
    let routes = "GET /api/products, GET /api/products/{id}, GET /api/search, GET /api/cart, \
                  POST /api/cart/items, GET /api/orders, GET /api/orders/{id}, POST /api/orders, \
                  POST /api/auth/login, POST /api/auth/token/refresh, GET /api/users/me, \
                  PATCH /api/users/me, POST /api/payments, GET /api/payments/{id}, \
                  GET /api/payments/methods";
    let cases = [
        (
            "GET /api/user",
            None,
            None,
            format!("invalid route GET /api/user of deploy-regression: expected one of {routes}"),
        ),
        (
            "get /api/users/me",
            None,
            None,
            format!(
                "invalid route get /api/users/me of deploy-regression: expected one of {routes}"
            ),
        ),
        (
            "/api/users/me",
            None,
            None,
            format!("invalid route /api/users/me of deploy-regression: expected one of {routes}"),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            Some(120),
            None,
            "invalid slow_for_s 120 of deploy-regression: expected every_s as well, or neither \
             of them for a route slow the whole window"
                .to_string(),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            None,
            Some(240),
            "invalid every_s 240 of deploy-regression: expected slow_for_s as well, or neither \
             of them for a route slow the whole window"
                .to_string(),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            Some(0),
            Some(240),
            "invalid slow_for_s 0 of deploy-regression: expected at least 1 s and less than \
             every_s, which is 240 s"
                .to_string(),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            Some(240),
            Some(240),
            "invalid slow_for_s 240 of deploy-regression: expected at least 1 s and less than \
             every_s, which is 240 s"
                .to_string(),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            Some(0),
            Some(0),
            "invalid slow_for_s 0 of deploy-regression: expected at least 1 s and less than \
             every_s, which is 0 s"
                .to_string(),
        ),
        (
            DEFAULT_REGRESSION_ROUTE,
            Some(120),
            Some(1_201),
            "invalid every_s 1201 of deploy-regression: expected at most duration_s, which is \
             1200 s, so that the window contains a whole period"
                .to_string(),
        ),
    ];
    for (route, slow_for_s, every_s, expected) in cases {
        let mut config = ScenarioConfig::default();
        edit_regression(&mut config, |r| {
            r.route = route.to_string();
            r.slow_for_s = slow_for_s;
            r.every_s = every_s;
        });
        assert_eq!(
            config.plan.validate(14_400).unwrap_err().to_string(),
            expected
        );
    }

    // The longest period is the whole window.
    let mut config = ScenarioConfig::default();
    edit_regression(&mut config, |r| {
        r.slow_for_s = Some(1_199);
        r.every_s = Some(1_200);
    });
    assert_eq!(config.plan.validate(14_400), Ok(()));
}

#[test]
fn regression_overlap_uses_its_route() {
    // The default regression, 45 to 65 min, overlaps the credential stuffing, 40 to 55 min,
    // in time. On the login route that is an overlap, periodic or not.
    let overlap = "invalid start_offset_s 2700 of deploy-regression: credential-stuffing and \
                   deploy-regression overlap on POST /api/auth/login; move one so that each \
                   route has one known effect at a time";
    for period in [None, Some(60)] {
        let mut config = ScenarioConfig::default();
        edit_regression(&mut config, |r| {
            r.route = "POST /api/auth/login".to_string();
            r.slow_for_s = period;
            r.every_s = period.map(|slow_for_s| slow_for_s * 4);
        });
        assert_eq!(
            config.plan.validate(14_400).unwrap_err().to_string(),
            overlap
        );
    }

    // Starting when the credential stuffing ends, it shares the route without overlap.
    let mut config = ScenarioConfig::default();
    edit_regression(&mut config, |r| {
        r.route = "POST /api/auth/login".to_string();
        r.start_offset_s = 3_300;
    });
    assert_eq!(config.plan.validate(14_400), Ok(()));

    // Moved off the payments route, the regression may overlap another one on it.
    let mut config = ScenarioConfig::default();
    edit_regression(&mut config, |r| r.route = "GET /api/users/me".to_string());
    config
        .plan
        .scenarios
        .push(Scenario::DeployRegression(DeployRegression {
            name: "payments-regression".to_string(),
            start_offset_s: 2_700,
            duration_s: 1_200,
            latency_factor: 2.0,
            route: DEFAULT_REGRESSION_ROUTE.to_string(),
            slow_for_s: None,
            every_s: None,
        }));
    assert_eq!(config.plan.validate(14_400), Ok(()));
}

#[test]
fn scraper_sets_route_5xx_rate() {
    let config = ScenarioConfig::default();
    let (events, labels) = default_run();
    let (_, scraper) = label(labels, "scraper");
    let is_5xx = |status: u16| status >= 500;
    let window = (scraper.start_ms, scraper.end_ms);
    let (during, requests) = status_share(events, PRODUCT_ROUTE, window, is_5xx);
    let expected = scraper.effects.route_5xx_rate.unwrap();
    assert!(requests > 5_000, "{requests} requests");
    assert!((during - expected).abs() < 0.02, "5xx share {during:.3}");
    let before = (config.start_ms, scraper.start_ms);
    let (baseline, _) = status_share(events, PRODUCT_ROUTE, before, is_5xx);
    assert!(baseline < 0.01, "5xx share before {baseline:.4}");

    // Normal clients get the same rate as the scraper.
    let normal: Vec<&ApiEvent> = events
        .iter()
        .filter(|g| g.scenario.is_none() && g.event.route == scraper.route)
        .map(|g| &g.event)
        .filter(|e| scraper.contains(e.time_ms))
        .collect();
    let normal_5xx = normal.iter().filter(|e| e.status == Some(503)).count();
    let share = normal_5xx as f64 / normal.len() as f64;
    assert!(
        (share - expected).abs() < 0.06,
        "normal 5xx share {share:.3}"
    );
}

#[test]
fn enumeration_walks_sequential_ids() {
    let (events, labels) = default_run();
    let (index, enumeration) = label(labels, "object-enumeration");
    let Scenario::ObjectEnumeration(spec) = &ScenarioConfig::default().plan.scenarios[index] else {
        panic!("scenario {index} is not the enumeration");
    };
    let walked: Vec<&ApiEvent> = events
        .iter()
        .filter(|g| g.scenario == Some(index))
        .map(|g| &g.event)
        .collect();
    for (step, event) in walked.iter().enumerate() {
        assert_eq!(
            event.path,
            format!("/api/orders/{}", spec.first_id + step as u64)
        );
        assert_eq!(
            event.principal.as_deref(),
            Some(enumeration.principals[0].as_str())
        );
    }
    let missing = walked.iter().filter(|e| e.status == Some(404)).count();
    let share = missing as f64 / walked.len() as f64;
    let expected = enumeration.effects.attacker_404_share.unwrap();
    assert!((share - expected).abs() < 0.04, "404 share {share:.3}");
    assert_eq!(ROUTES[ORDER_ROUTE].template, enumeration.route);
}

#[test]
fn injection_events_match_shipped_signatures() {
    let (events, labels) = default_run();
    let (index, _) = label(labels, "injection-campaign");
    let rules = packs::shipped().unwrap();
    let rule = |id: &str| rules.rules().iter().find(|r| r.id == id).unwrap();
    let sql = rule("sql-injection-attempt");
    let xss = rule("xss-attempt");
    let tool = rule("scanner-user-agent");
    let mut kinds = BTreeSet::new();
    for generated in events.iter().filter(|g| g.scenario == Some(index)) {
        let event = &generated.event;
        let matched_sql = sql.evaluate(event).is_some();
        let matched_xss = xss.evaluate(event).is_some();
        assert!(
            matched_sql || matched_xss,
            "no signature matches {:?}",
            event.query
        );
        kinds.insert((matched_sql, matched_xss, tool.evaluate(event).is_some()));
    }
    assert!(kinds.iter().any(|k| k.0), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.1), "{kinds:?}");
    assert!(kinds.iter().any(|k| k.2), "{kinds:?}");
}

#[test]
fn normal_traffic_matches_no_signature() {
    let (events, _) = default_run();
    let rules = packs::shipped().unwrap();
    let signatures: Vec<&Rule> = rules
        .rules()
        .iter()
        .filter(|r| matches!(r.detection, Detection::Signature { .. }))
        .collect();
    assert!(signatures.len() >= 5);
    for generated in events.iter().filter(|g| g.scenario.is_none()).step_by(7) {
        for rule in &signatures {
            assert!(
                rule.evaluate(&generated.event).is_none(),
                "{} matches",
                rule.id
            );
        }
    }
}

/// Returns, per key, the highest count of events in one tumbling window of `window_ms`.
fn max_per_window<'a>(
    events: impl Iterator<Item = &'a ApiEvent>,
    window_ms: i64,
    key: impl Fn(&ApiEvent) -> String,
) -> HashMap<String, usize> {
    let mut counts: HashMap<(String, i64), usize> = Default::default();
    for event in events {
        *counts
            .entry((key(event), event.time_ms.div_euclid(window_ms)))
            .or_default() += 1;
    }
    let mut max: HashMap<String, usize> = Default::default();
    for ((key, _), count) in counts {
        let entry = max.entry(key).or_default();
        *entry = (*entry).max(count);
    }
    max
}

#[test]
fn shipped_rule_thresholds_are_crossed() {
    let (events, labels) = default_run();
    let attacker = |index: usize| {
        events
            .iter()
            .filter(move |g| g.scenario == Some(index))
            .map(|g| &g.event)
    };

    // auth-failure-burst needs 10 401s per client in 5 minutes, and
    // login-attempts-from-one-client 20 login posts per client in 10 minutes.
    let (index, stuffing) = label(labels, "credential-stuffing");
    let bursts = max_per_window(attacker(index), 300_000, |e| e.client.clone());
    let attempts = max_per_window(attacker(index), 600_000, |e| e.client.clone());
    for client in &stuffing.clients {
        assert!(
            bursts[client] >= 10,
            "{client}: {} in 5 minutes",
            bursts[client]
        );
        assert!(
            attempts[client] >= 20,
            "{client}: {} in 10 minutes",
            attempts[client]
        );
    }

    // scanner-distinct-404-paths: 10 distinct missing paths per client in an hour.
    let (index, _) = label(labels, "object-enumeration");
    let missing: HashSet<&str> = attacker(index)
        .filter(|e| e.status == Some(404))
        .map(|e| e.path.as_str())
        .collect();
    assert!(missing.len() >= 10, "{} distinct 404 paths", missing.len());

    // route-5xx-ratio: a fifth of the route's responses in 5 minutes, with 20 events at least.
    let (_, scraper) = label(labels, "scraper");
    let mut window_ms = scraper.start_ms;
    while window_ms < scraper.end_ms {
        let window = (window_ms, window_ms + 300_000);
        let (share, requests) = status_share(events, PRODUCT_ROUTE, window, |s| s >= 500);
        assert!(
            share >= 0.2 && requests >= 20,
            "{share:.3} of {requests} at {window_ms}"
        );
        window_ms += 300_000;
    }
}

#[test]
fn adding_a_scenario_keeps_other_normal_events() {
    let mut config = small_config(11);
    config.plan = config.plan.select(&["scraper".to_string()]).unwrap();
    let (alone, _) = generate(&config);
    let (all, _) = generate(&small_config(11));
    let normal = |events: &[ScenarioEvent]| -> Vec<ApiEvent> {
        events
            .iter()
            .filter(|g| g.scenario.is_none() && g.event.time_ms < 1_748_853_600_000)
            .map(|g| g.event.clone())
            .collect()
    };
    // Before the first window of the full plan, the two runs share every event.
    assert_eq!(normal(&alone), normal(&all));
}

#[test]
fn diurnal_rate_follows_hour() {
    let config = ScenarioConfig {
        duration_ms: 24 * 3_600_000,
        mean_rate_per_second: 1.0,
        plan: Plan { scenarios: vec![] },
        ..ScenarioConfig::default()
    };
    let (events, _) = generate(&config);
    let mut per_hour = [0_u32; 24];
    for generated in &events {
        let hour = (generated.event.time_ms / 3_600_000).rem_euclid(24) as usize;
        per_hour[hour] += 1;
    }
    // At amplitude 0.4 the hour of the peak (15 UTC) has 1.4 times the mean, and the hour
    // opposite (3 UTC) 0.6 times.
    let peak = f64::from(per_hour[15]) / 3_600.0;
    let trough = f64::from(per_hour[3]) / 3_600.0;
    assert!((peak - 1.4).abs() < 0.1, "peak hour rate {peak:.3}");
    assert!((trough - 0.6).abs() < 0.08, "trough hour rate {trough:.3}");
    let total = events.len() as f64 / 86_400.0;
    assert!((total - 1.0).abs() < 0.02, "mean rate {total:.3}");
}

#[test]
fn latency_has_heavy_tail() {
    let config = ScenarioConfig::default();
    let (events, _) = default_run();
    let products = latencies(events, 0, config.start_ms, i64::MAX);
    let p50 = quantile(&products, 0.5);
    let p999 = quantile(&products, 0.999);
    let max = products[products.len() - 1];
    assert!(products.len() > 10_000);
    // The log-normal body alone (sigma 0.5) puts p99.9 at 4.7 times the median.
    assert!(p999 > 8.0 * p50, "p50 {p50} ms, p99.9 {p999} ms");
    assert!(max > 40.0 * p50, "p50 {p50} ms, max {max} ms");
    assert!(max <= traffic::MAX_LATENCY_MS);
}

#[test]
fn attacker_identities_stay_out_of_normal_traffic() {
    let (events, labels) = default_run();
    let attackers: HashSet<&str> = labels
        .iter()
        .flat_map(|l| l.clients.iter().chain(&l.principals))
        .map(String::as_str)
        .collect();
    assert_eq!(attackers.len(), 12 + 2 + 3 + 1);
    for generated in events.iter().filter(|g| g.scenario.is_none()) {
        let event = &generated.event;
        assert!(event.client.starts_with("198.1") || event.client.starts_with("2001:db8:1::"));
        assert!(!attackers.contains(event.client.as_str()));
        if let Some(principal) = &event.principal {
            let number = u32::from_str_radix(principal.strip_prefix("usr_").unwrap(), 16).unwrap();
            assert!(number <= traffic::MAX_NORMAL_PRINCIPAL, "{principal}");
        }
    }
}

#[test]
fn plan_json_round_trips() {
    let plan = Plan::default();
    let json = serde_json::to_string(&plan).unwrap();
    let parsed: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, plan);
}

#[test]
fn plan_knobs_default_to_default_plan() {
    let json = r#"{"scenarios": [
        {"kind": "credential-stuffing", "name": "credential-stuffing", "start_offset_s": 2400, "duration_s": 900},
        {"kind": "deploy-regression", "name": "deploy-regression", "start_offset_s": 2700, "duration_s": 1200},
        {"kind": "object-enumeration", "name": "object-enumeration", "start_offset_s": 5400, "duration_s": 1200},
        {"kind": "injection-campaign", "name": "injection-campaign", "start_offset_s": 7800, "duration_s": 1200},
        {"kind": "scraper", "name": "scraper", "start_offset_s": 10800, "duration_s": 1200}
    ]}"#;
    let parsed: Plan = serde_json::from_str(json).unwrap();
    assert_eq!(parsed, Plan::default());
}

#[test]
fn plan_requires_name_and_window() {
    for (json, missing) in [
        (
            r#"{"kind": "scraper", "start_offset_s": 0, "duration_s": 60}"#,
            "name",
        ),
        (
            r#"{"kind": "scraper", "name": "s", "duration_s": 60}"#,
            "start_offset_s",
        ),
        (
            r#"{"kind": "scraper", "name": "s", "start_offset_s": 0}"#,
            "duration_s",
        ),
        (
            r#"{"name": "s", "start_offset_s": 0, "duration_s": 60}"#,
            "kind",
        ),
    ] {
        let plan = format!(r#"{{"scenarios": [{json}]}}"#);
        let error = serde_json::from_str::<Plan>(&plan).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("missing field `{missing}`")),
            "{error}"
        );
    }
}

#[test]
fn plan_rejects_unknown_knob() {
    let json = r#"{"scenarios": [{"kind": "scraper", "name": "s", "start_offset_s": 0,
        "duration_s": 60, "requests_per_minute": 60, "route_5xx_rate": 0.3,
        "latency_factor": 2}]}"#;
    let error = serde_json::from_str::<Plan>(json).unwrap_err().to_string();
    assert!(error.contains("unknown field `latency_factor`"), "{error}");
}

#[test]
fn invalid_plans_are_rejected() {
    let overlapping = r#"{"scenarios": [
        {"kind": "scraper", "name": "a", "start_offset_s": 0, "duration_s": 600,
         "requests_per_minute": 60, "route_5xx_rate": 0.3},
        {"kind": "scraper", "name": "b", "start_offset_s": 300, "duration_s": 600,
         "requests_per_minute": 60, "route_5xx_rate": 0.3}]}"#;
    let plan: Plan = serde_json::from_str(overlapping).unwrap();
    assert_eq!(
        plan.validate(3_600).unwrap_err().to_string(),
        "invalid start_offset_s 300 of b: a and b overlap on GET /api/products/{id}; move one \
         so that each route has one known effect at a time"
    );

    let mut plan = Plan::default();
    assert_eq!(
        plan.validate(3_300).unwrap_err().to_string(),
        "invalid duration_s 1200 of deploy-regression: the window from 2700 s to 3900 s ends \
         after the run, which lasts 3300 s; lengthen the run or move the window"
    );
    if let Scenario::CredentialStuffing(s) = &mut plan.scenarios[0] {
        s.latency_factor = 0.0;
    }
    assert_eq!(
        plan.validate(14_400).unwrap_err().to_string(),
        "invalid latency_factor 0 of credential-stuffing: expected a factor above 0 and at most \
         100, such as 4.0"
    );
    assert_eq!(
        Plan::default()
            .select(&["phishing".to_string()])
            .unwrap_err()
            .to_string(),
        "invalid scenarios phishing: expected one of credential-stuffing, deploy-regression, \
         object-enumeration, injection-campaign, scraper"
    );
}

#[test]
fn invalid_config_is_rejected() {
    let cases = [
        (
            ScenarioConfig {
                max_events: 1_000,
                ..ScenarioConfig::default()
            },
            "invalid max_events 1000: the run may make up to",
        ),
        (
            ScenarioConfig {
                diurnal_amplitude: 1.0,
                ..ScenarioConfig::default()
            },
            "invalid diurnal_amplitude 1: expected at least 0 and below 1, such as 0.4",
        ),
        (
            ScenarioConfig {
                duration_ms: 8 * 24 * 3_600_000,
                ..ScenarioConfig::default()
            },
            "invalid duration_ms 691200000: expected 1 minute to 7 days",
        ),
        (
            ScenarioConfig {
                mean_rate_per_second: f64::NAN,
                ..ScenarioConfig::default()
            },
            "invalid mean_rate_per_second NaN",
        ),
        (
            ScenarioConfig {
                clients: 0,
                ..ScenarioConfig::default()
            },
            "invalid clients 0: expected from 1 to 131071 clients",
        ),
    ];
    for (config, expected) in cases {
        let error = ScenarioGenerator::new(config).err().unwrap().to_string();
        assert!(error.starts_with(expected), "{error}");
    }
}

#[test]
fn run_past_deadline_times_out() {
    let generator = ScenarioGenerator::new(small_config(12)).unwrap();
    let pacing = Pacing {
        send_rate: None,
        deadline: Instant::now(),
    };
    let sink = Box::new(JsonlSink::plain(Vec::new()));
    let error = output::run(generator, sink, pacing).unwrap_err();
    assert!(
        matches!(error, OutputError::TimedOut { events: 0 }),
        "{error}"
    );
}

#[test]
fn send_rate_paces_events() {
    let config = ScenarioConfig {
        duration_ms: 60_000,
        plan: Plan { scenarios: vec![] },
        ..ScenarioConfig::default()
    };
    let generator = ScenarioGenerator::new(config).unwrap();
    let pacing = Pacing {
        send_rate: Some(2_000.0),
        deadline: Instant::now() + Duration::from_secs(30),
    };
    let started = Instant::now();
    let summary = output::run(generator, Box::new(JsonlSink::plain(Vec::new())), pacing).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    // About 600 events at 2,000 per second need about 0.3 s. Only the lower bound is firm.
    let least = (summary.events - 1) as f64 / 2_000.0;
    assert!(
        elapsed >= least,
        "{} events in {elapsed:.3} s",
        summary.events
    );
}

#[test]
fn example_matches_its_command() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/impact");
    let mut text = Vec::new();
    GzDecoder::new(std::fs::File::open(folder.join("events.jsonl.gz")).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let labels = std::fs::read_to_string(folder.join("labels.jsonl")).unwrap();

    // The command in examples/impact/README.md.
    let mut config = ScenarioConfig {
        seed: 7,
        duration_ms: 2 * 3_600_000,
        mean_rate_per_second: 4.0,
        ..ScenarioConfig::default()
    };
    let names = [
        "credential-stuffing".to_string(),
        "deploy-regression".to_string(),
    ];
    config.plan = config.plan.select(&names).unwrap();
    assert!(
        text == jsonl_bytes(&config),
        "the example differs from its command's output"
    );
    let (_, expected_labels) = generate(&config);
    assert_eq!(read_labels(&labels).unwrap(), expected_labels);
    let mut written = Vec::new();
    write_labels(&expected_labels, &mut written).unwrap();
    assert!(
        labels.as_bytes() == written,
        "the example's labels differ from its command's output"
    );
}

#[test]
fn validate_rejects_a_run_ending_past_year_9999() {
    let config = ScenarioConfig {
        // 9999-12-31T23:00:00Z, and four hours.
        start_ms: 253_402_297_200_000,
        duration_ms: 4 * 3_600_000,
        ..ScenarioConfig::default()
    };
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "invalid start_ms 253402297200000: expected a run from 1970 that ends before the year 10000"
    );
}

#[test]
fn invalid_values_are_escaped() {
    let err = InvalidScenario::new("scenarios", "x\u{1b}[31mRED".to_string(), "expected a name");
    assert_eq!(
        err.to_string(),
        "invalid scenarios x\\u{1b}[31mRED: expected a name"
    );
    let err = InvalidScenario::of_scenario(
        "duration_s",
        "6000000".to_string(),
        "a\u{202e}b\u{200b}",
        "expected less",
    );
    assert_eq!(
        err.to_string(),
        "invalid duration_s 6000000 of a\\u{202e}b\\u{200b}: expected less"
    );
}

#[test]
fn invalid_empty_values_are_quoted() {
    let mut config = ScenarioConfig::default();
    edit_regression(&mut config, |r| r.route = String::new());
    let error = config.plan.validate(14_400).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "invalid route \"\" of deploy-regression: expected one of GET /api/products, "
        ),
        "{error}"
    );

    let mut config = ScenarioConfig::default();
    edit_regression(&mut config, |r| r.name = String::new());
    assert_eq!(
        config.plan.validate(14_400).unwrap_err().to_string(),
        "invalid name \"\": expected a name such as credential-stuffing"
    );
}
