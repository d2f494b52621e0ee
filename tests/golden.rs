//! Golden tests: each shipped pack over its fixed events gives exactly the expected findings.
//!
//! For `rules/packs/NAME.yaml`, `tests/golden/NAME.events.jsonl` holds events built to fire
//! every rule of the pack once, next to near misses that must not fire, and
//! `tests/golden/NAME.expected.jsonl` holds the findings, early and final, in output order.
//! After a deliberate change, `FEEDLOOP_BLESS=1 cargo test --test golden` rewrites the
//! expected files; review their diff before committing it.

mod common;

use std::path::PathBuf;

fn packs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(common::root().join("rules/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn golden(name: &str, suffix: &str) -> PathBuf {
    common::root().join(format!("tests/golden/{name}.{suffix}"))
}

#[test]
fn every_pack_has_golden_files() {
    for name in packs() {
        assert!(
            golden(&name, "events.jsonl").exists(),
            "no golden events for pack {name}"
        );
        assert!(
            golden(&name, "expected.jsonl").exists(),
            "no expected findings for pack {name}"
        );
    }
}

#[test]
fn packs_give_golden_findings() {
    let bless = std::env::var_os("FEEDLOOP_BLESS").is_some();
    for name in packs() {
        let pack = format!("rules/packs/{name}.yaml");
        let events = golden(&name, "events.jsonl");
        let actual = common::scan_jsonl(&[&events], &["--rules", &pack, "--early"]);
        let expected_path = golden(&name, "expected.jsonl");
        if bless {
            let text: String = actual.iter().map(|f| format!("{f}\n")).collect();
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let expected = common::parse_lines(&std::fs::read(&expected_path).unwrap());
        common::assert_same_findings(&actual, &expected, &name);
    }
}

/// The number of final findings per rule in each pack's golden output, written out here so a
/// bless cannot silently change what fires.
#[test]
fn golden_findings_fire_each_rule_once() {
    let expected = [
        (
            "auth",
            vec![
                "auth-failure-burst",
                "login-abuse-distributed",
                "login-attempts-from-one-client",
            ],
        ),
        ("errors", vec!["route-5xx-ratio"]),
        (
            "injection",
            vec![
                "command-injection-attempt",
                "command-injection-attempt",
                "path-traversal-attempt",
                "path-traversal-attempt",
                "sql-injection-attempt",
                "xss-attempt",
            ],
        ),
        (
            "recon",
            vec![
                "client-404-share",
                "scanner-distinct-404-paths",
                "scanner-user-agent",
                "sensitive-path-probe",
                "sensitive-path-probe",
            ],
        ),
    ];
    for (name, rules) in expected {
        let findings = common::parse_lines(&std::fs::read(golden(name, "expected.jsonl")).unwrap());
        let mut finals: Vec<String> = findings
            .iter()
            .filter(|f| f["phase"] == "final")
            .map(|f| f["rule_id"].as_str().unwrap().to_string())
            .collect();
        finals.sort();
        assert_eq!(finals, rules, "pack {name}");
    }
}
