use std::collections::{BTreeMap, BTreeSet, HashMap};

use feedloop_connectors::decode::{Decoder, Format, JsonMapping};
use feedloop_rules::{packs, route, Detection, Rule};

use super::catalog::{
    DOWNLOAD_ROUTE, LOGIN_ROUTE, PRODUCTS_ROUTE, PRODUCT_ROUTE, ROUTES, SEARCH_ROUTE,
};
use super::*;

fn config(seed: u64, events: u64, attack_share: f64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        events,
        attack_share,
        ..GeneratorConfig::default()
    }
}

fn generate(config: &GeneratorConfig) -> Vec<GeneratedEvent> {
    Generator::new(config.clone()).unwrap().collect()
}

fn jsonl_bytes(config: &GeneratorConfig) -> Vec<u8> {
    let mut bytes = Vec::new();
    let summary = write_jsonl(Generator::new(config.clone()).unwrap(), &mut bytes).unwrap();
    assert_eq!(summary.bytes, bytes.len() as u64);
    bytes
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&b| b == b'\n')
        .collect()
}

fn json_decoder() -> Decoder {
    Decoder::new(Format::Json(JsonMapping::default()))
}

fn shipped_rule(id: &str) -> Rule {
    let rules = packs::shipped().unwrap();
    rules.rules().iter().find(|r| r.id == id).unwrap().clone()
}

#[test]
fn same_seed_same_bytes() {
    let config = config(7, 20_000, 0.05);
    let first = jsonl_bytes(&config);
    let second = jsonl_bytes(&config);
    assert_eq!(first.len(), second.len());
    assert!(first == second, "two runs of seed 7 differ");
}

#[test]
fn other_seed_other_bytes() {
    let first = jsonl_bytes(&config(7, 2_000, 0.05));
    let second = jsonl_bytes(&config(8, 2_000, 0.05));
    assert!(first != second, "seeds 7 and 8 produce the same bytes");
}

#[test]
fn record_sizes_within_300_to_600_bytes() {
    for (seed, share) in [(1, 0.0), (2, 0.01), (3, 0.5), (4, 1.0)] {
        let bytes = jsonl_bytes(&config(seed, 30_000, share));
        for (index, line) in lines(&bytes).into_iter().enumerate() {
            assert!(
                (300..=600).contains(&line.len()),
                "seed {seed} share {share} line {} has {} bytes: {}",
                index + 1,
                line.len(),
                String::from_utf8_lossy(line)
            );
        }
    }
}

#[test]
fn every_line_decodes_to_generated_event() {
    let config = config(11, 20_000, 0.2);
    let bytes = jsonl_bytes(&config);
    let generated = generate(&config);
    let decoder = json_decoder();
    let lines = lines(&bytes);
    assert_eq!(lines.len(), generated.len());

    for (line, generated) in lines.into_iter().zip(generated) {
        let decoded = decoder.decode(line).unwrap_or_else(|err| {
            panic!(
                "line fails to decode: {err}: {}",
                String::from_utf8_lossy(line)
            )
        });
        let mut expected = generated.event;
        if expected.route.is_empty() {
            expected.route = route::template(&expected.path);
        }
        assert_eq!(decoded, expected);
    }
}

#[test]
fn attack_count_is_exact() {
    let cases = [
        (1, 10_000, 0.01, 100),
        (2, 10_000, 0.0, 0),
        (3, 10_000, 1.0, 10_000),
        (4, 12_345, 0.037, 457),
        (5, 999, 0.5, 500),
        (6, 1, 0.5, 1),
        (7, 0, 0.3, 0),
    ];
    for (seed, events, share, expected) in cases {
        let config = config(seed, events, share);
        assert_eq!(
            config.attack_events(),
            expected,
            "events {events} share {share}"
        );

        let generated = generate(&config);
        let attacks = generated.iter().filter(|g| g.attack.is_some()).count();
        assert_eq!(
            generated.len() as u64,
            events,
            "events {events} share {share}"
        );
        assert_eq!(attacks as u64, expected, "events {events} share {share}");
    }
}

#[test]
fn attacks_spread_over_the_run() {
    let generated = generate(&config(12, 100_000, 0.01));
    let positions: Vec<usize> = generated
        .iter()
        .enumerate()
        .filter(|(_, g)| g.attack.is_some())
        .map(|(index, _)| index)
        .collect();
    assert_eq!(positions.len(), 1_000);
    assert!(positions[0] < 5_000, "first attack at {}", positions[0]);
    assert!(positions[999] > 95_000, "last attack at {}", positions[999]);
}

#[test]
fn times_rise_with_small_disorder() {
    let config = config(13, 100_000, 0.02);
    let generated = generate(&config);
    let mut newest = config.start_ms;
    let mut out_of_order = 0;
    for generated in &generated {
        let time = generated.event.time_ms;
        assert!(time >= config.start_ms, "time {time} before the start");
        assert!(
            time >= newest - MAX_DELAY_MS,
            "time {time} trails {newest} too far"
        );
        if time < newest {
            out_of_order += 1;
        }
        newest = newest.max(time);
    }
    assert!(out_of_order > 1_000, "{out_of_order} events out of order");

    // 100,000 events at 1,000 per second span about 100 seconds.
    let span_ms = newest - config.start_ms;
    assert!((95_000..=105_000).contains(&span_ms), "span {span_ms} ms");
}

#[test]
fn normal_traffic_has_variety() {
    let generated = generate(&config(14, 100_000, 0.0));
    let events: Vec<&ApiEvent> = generated.iter().map(|g| &g.event).collect();

    let clients: BTreeSet<&str> = events.iter().map(|e| e.client.as_str()).collect();
    let principals: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.principal.as_deref())
        .collect();
    let services: BTreeSet<&str> = events.iter().map(|e| e.service.as_str()).collect();
    // Records without a route get the one feedloop derives from the path.
    let routes: BTreeSet<String> = events
        .iter()
        .map(|e| {
            if e.route.is_empty() {
                route::template(&e.path)
            } else {
                e.route.clone()
            }
        })
        .collect();
    let expected_routes: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| r.template.to_string())
        .chain(["/healthz".to_string()])
        .collect();
    let agents: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.user_agent.as_deref())
        .collect();
    let ipv6 = clients.iter().filter(|c| c.contains(':')).count();
    assert!(clients.len() > 3_000, "{} clients", clients.len());
    assert!(ipv6 > 100, "{ipv6} IPv6 clients");
    assert!(principals.len() > 2_000, "{} principals", principals.len());
    assert_eq!(services.len(), 6, "{services:?}");
    assert_eq!(routes, expected_routes);
    assert!(agents.len() > 10, "{agents:?}");
    assert!(events
        .iter()
        .all(|e| e.trace_id.as_ref().is_some_and(|t| t.len() == 32)));
    assert!(events.iter().all(|e| e.label("env") == Some("prod")));
    assert!(events.iter().all(|e| e.label("region").is_some()));
    assert!(events.iter().any(|e| e.path.starts_with("/v1/orders/")));
}

#[test]
fn normal_status_mix() {
    let generated = generate(&config(15, 100_000, 0.0));
    let mut by_class: BTreeMap<u16, u64> = BTreeMap::new();
    for generated in &generated {
        *by_class
            .entry(generated.event.status.unwrap() / 100)
            .or_default() += 1;
    }
    let share = |class: u16| by_class.get(&class).copied().unwrap_or(0) as f64 / 100_000.0;
    assert!(share(2) > 0.9, "{by_class:?}");
    assert!((0.005..0.05).contains(&share(3)), "{by_class:?}");
    assert!((0.01..0.05).contains(&share(4)), "{by_class:?}");
    assert!((0.001..0.01).contains(&share(5)), "{by_class:?}");
}

#[test]
fn latency_has_heavy_tail() {
    let generated = generate(&config(16, 100_000, 0.0));
    let mut latencies: Vec<f64> = generated
        .iter()
        .map(|g| g.event.latency_ms.unwrap())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p50 = latencies[50_000];
    let p99 = latencies[99_000];
    let max = latencies[99_999];
    assert!(p99 > 8.0 * p50, "p50 {p50} ms, p99 {p99} ms");
    assert!(max > 2_000.0, "max {max} ms");
    assert!(max <= catalog::MAX_LATENCY_MS, "max {max} ms");
}

#[test]
fn attacks_match_their_rules() {
    let config = config(17, 40_000, 0.5);
    let bytes = jsonl_bytes(&config);
    let generated = generate(&config);
    let decoder = json_decoder();
    let rules: HashMap<AttackKind, Rule> = AttackKind::ALL
        .iter()
        .map(|&kind| (kind, shipped_rule(kind.rule_id())))
        .collect();

    let mut kinds_seen = BTreeSet::new();
    let mut campaigns: HashMap<u64, (AttackKind, Vec<ApiEvent>)> = HashMap::new();
    for (line, generated) in lines(&bytes).into_iter().zip(generated) {
        let Some(label) = generated.attack else {
            continue;
        };
        let event = decoder.decode(line).unwrap();
        kinds_seen.insert(label.kind);
        let rule = &rules[&label.kind];
        if let Detection::Signature { .. } = rule.detection {
            assert!(
                rule.evaluate(&event).is_some(),
                "{} misses {}",
                rule.id,
                String::from_utf8_lossy(line)
            );
        }
        campaigns
            .entry(label.campaign)
            .or_insert_with(|| (label.kind, Vec::new()))
            .1
            .push(event);
    }
    assert_eq!(kinds_seen.len(), AttackKind::ALL.len(), "{kinds_seen:?}");

    // Burst campaigns cross their rule's threshold of 10. A campaign cut off by the end of the
    // run, or one whose dice gave it many 429s, may not, so 90% must.
    let mut bursts = 0;
    let mut crossing = 0;
    for (kind, events) in campaigns.values() {
        let client = &events[0].client;
        assert!(
            events.iter().all(|e| &e.client == client),
            "{kind:?} changes client"
        );
        let crosses = match kind {
            AttackKind::LoginBruteForce => {
                let failures = events.iter().filter(|e| e.status == Some(401)).count();
                failures >= 10
            }
            AttackKind::NotFoundScan => {
                let missing: BTreeSet<&str> = events
                    .iter()
                    .filter(|e| e.status == Some(404))
                    .map(|e| e.path.as_str())
                    .collect();
                missing.len() >= 10
            }
            _ => continue,
        };
        bursts += 1;
        crossing += u32::from(crosses);
    }
    assert!(bursts > 50, "{bursts} burst campaigns");
    assert!(
        crossing * 10 >= bursts * 9,
        "{crossing} of {bursts} bursts cross"
    );
}

#[test]
fn normal_traffic_matches_no_signature() {
    let config = config(18, 50_000, 0.0);
    let bytes = jsonl_bytes(&config);
    let decoder = json_decoder();
    let rules = packs::shipped().unwrap();
    let signatures: Vec<&Rule> = rules
        .rules()
        .iter()
        .filter(|r| matches!(r.detection, Detection::Signature { .. }))
        .collect();
    assert!(signatures.len() >= 5);

    for line in lines(&bytes) {
        let event = decoder.decode(line).unwrap();
        for rule in &signatures {
            assert!(
                rule.evaluate(&event).is_none(),
                "{} matches {}",
                rule.id,
                String::from_utf8_lossy(line)
            );
        }
    }
}

#[test]
fn route_indexes_name_their_routes() {
    assert_eq!(ROUTES[PRODUCTS_ROUTE].template, "/v1/products");
    assert_eq!(ROUTES[PRODUCT_ROUTE].template, "/v1/products/{id}");
    assert_eq!(ROUTES[SEARCH_ROUTE].template, "/v1/search");
    assert_eq!(ROUTES[LOGIN_ROUTE].template, "/v1/auth/login");
    assert_eq!(ROUTES[DOWNLOAD_ROUTE].template, "/v1/files/download");
}

#[test]
fn invalid_config_is_rejected() {
    let cases = [
        (
            config(1, 10, 1.5),
            "invalid attack_share 1.5: expected a share from 0 to 1, such as 0.01",
        ),
        (
            config(1, 10, -0.1),
            "invalid attack_share -0.1: expected a share from 0 to 1, such as 0.01",
        ),
        (
            GeneratorConfig {
                rate_per_second: 0.0,
                ..GeneratorConfig::default()
            },
            "invalid rate_per_second 0: expected a positive number of events per second, such as 1000",
        ),
        (
            GeneratorConfig {
                clients: MAX_CLIENTS + 1,
                ..GeneratorConfig::default()
            },
            "invalid clients 131072: expected from 1 to 131071 clients",
        ),
        (
            GeneratorConfig {
                principals: 0,
                ..GeneratorConfig::default()
            },
            "invalid principals 0: expected at least 1 principal",
        ),
    ];
    for (config, expected) in cases {
        let error = Generator::new(config).err().unwrap();
        assert_eq!(error.to_string(), expected);
    }
    assert!(config(1, 10, f64::NAN).validate().is_err());
}
