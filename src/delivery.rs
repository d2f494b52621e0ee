//! The delivery side of the command: engine settings from the configuration, `feedloop routes
//! test` and `feedloop gate`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use feedloop_connectors::delivery::engine::EngineSettings;
use feedloop_connectors::delivery::render::clean;
use feedloop_connectors::delivery::route::{target_of, CatalogEntry};
use feedloop_connectors::delivery::store::{Store, DATABASE_FILE};
use feedloop_pipeline::Finding;
use feedloop_rules::{HumanDuration, Severity};

use crate::config::{Config, DeliveryConfig};

/// Builds the engine's settings: the routing tree, the catalog and every receiver, whose
/// secrets are resolved here so a missing one fails before any input is read.
pub fn settings(config: &DeliveryConfig, stop: Arc<AtomicBool>) -> anyhow::Result<EngineSettings> {
    let router = config.router()?;
    let catalog = config.catalog()?;
    let mut receivers = Vec::new();
    for (name, receiver) in &config.receivers {
        receivers.push(receiver.build(name, &catalog).map_err(anyhow::Error::msg)?);
    }
    Ok(EngineSettings {
        state_dir: config.state_dir.clone(),
        dead_letter_path: config.dead_letter_path(),
        router,
        catalog,
        receivers,
        retry: config.retry,
        stop,
    })
}

/// Returns the routes a finding takes, with the reason at each route, and its catalog target.
pub fn explain_routes(config: &Config, finding_path: &Path) -> anyhow::Result<String> {
    let delivery = config.delivery.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "the configuration has no `delivery` section; add receivers and routes to it"
        )
    })?;
    let router = delivery.router()?;
    let catalog = delivery.catalog()?;
    let finding = read_finding(finding_path)?;
    let target = target_of(&catalog, &finding);
    let (destinations, lines) = router.explain(&finding, &target);

    let mut out = String::new();
    let service = clean(finding.service.as_deref().unwrap_or("(none)"));
    writeln!(
        out,
        "finding {} ({}, {}, service {service})",
        clean(&finding.rule_id),
        finding.severity,
        stage_list(&finding)
    )?;
    if !target.service.is_empty() && !catalog.contains_key(&target.service) {
        writeln!(
            out,
            "service {} is not in the catalog; receivers use their own defaults",
            clean(&target.service)
        )?;
    }
    if let Some(entry) = catalog.get(&target.service) {
        writeln!(
            out,
            "catalog entry for {}: {}",
            target.service,
            entry_text(entry)
        )?;
    }
    for line in lines {
        writeln!(out, "  {}", clean(&line))?;
    }
    if destinations.is_empty() {
        writeln!(out, "reaches no receiver: no route matched")?;
    } else {
        let mut names: Vec<&str> = destinations
            .iter()
            .flat_map(|d| d.receivers.iter().map(String::as_str))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        names.retain(|name| seen.insert(*name));
        writeln!(out, "reaches: {}", names.join(", "))?;
        for destination in &destinations {
            if !destination.grouping.by.is_empty() {
                writeln!(
                    out,
                    "  {} groups by {} (wait {}, interval {})",
                    destination.route,
                    destination.grouping.by.join(", "),
                    HumanDuration(destination.grouping.wait_ms),
                    HumanDuration(destination.grouping.interval_ms)
                )?;
            }
        }
    }
    Ok(out)
}

fn entry_text(entry: &CatalogEntry) -> String {
    let mut parts = Vec::new();
    if !entry.owners.is_empty() {
        parts.push(format!("owners {}", entry.owners.join(", ")));
    }
    let named = [
        ("jira_project", &entry.jira_project),
        ("github_repo", &entry.github_repo),
        ("slack_channel", &entry.slack_channel),
        ("ci_target", &entry.ci_target),
    ];
    for (label, value) in named {
        if let Some(value) = value {
            parts.push(format!("{label} {value}"));
        }
    }
    parts.join("; ")
}

fn stage_list(finding: &Finding) -> String {
    let names: Vec<&str> = finding.stages.iter().map(|s| s.as_str()).collect();
    format!("stages {}", names.join(", "))
}

fn read_finding(path: &Path) -> anyhow::Result<Finding> {
    let mut text = String::new();
    let name = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
        "from stdin".to_string()
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read finding {}", path.display()))?;
        path.display().to_string()
    };
    // A whole file may be one pretty-printed finding; a JSON Lines file gives its first line.
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(whole) => serde_json::from_str(first).map_err(|_| {
            anyhow::anyhow!(
                "invalid finding {name}: {whole}; expected one finding as JSON, as `feedloop scan --format jsonl` writes"
            )
        })?,
    };
    let serde_json::Value::Object(mut fields) = value else {
        anyhow::bail!("invalid finding {name}: expected a JSON object, as `feedloop scan --format jsonl` writes");
    };
    // Routing reads only a few fields; the others get neutral values so a hand-written
    // finding needs only what the routes match on.
    let defaults = serde_json::json!({
        "rule_id": "", "title": "", "fingerprint": "", "phase": "final", "kind": "threshold",
        "severity": "info", "stages": [], "tags": [], "group": {},
        "window": {"start": "", "end": ""}, "condition": "", "count": 0,
        "first_seen": "", "last_seen": "", "evidence": []
    });
    if let serde_json::Value::Object(defaults) = defaults {
        for (key, value) in defaults {
            fields.entry(key).or_insert(value);
        }
    }
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|err| {
        anyhow::anyhow!("invalid finding {name}: {err}; check the field against docs/findings.md")
    })
}

/// Returns the gate's report and whether any matching finding is open.
pub fn gate_text(
    state_dir: &Path,
    service: Option<&str>,
    min_severity: Severity,
) -> anyhow::Result<(String, bool)> {
    if !state_dir.join(DATABASE_FILE).exists() {
        anyhow::bail!(
            "no delivery state in {}: run `feedloop run` with a `delivery` section first, or pass the right --state-dir",
            state_dir.display()
        );
    }
    let unreadable = |err: feedloop_connectors::delivery::store::StoreError| {
        anyhow::anyhow!(
            "failed to read the delivery state in {}: {err}; pass the `delivery.state_dir` of a feedloop run",
            state_dir.display()
        )
    };
    let store = Store::open_read_only(state_dir).map_err(unreadable)?;
    let rows = store.open_rows(service, min_severity).map_err(unreadable)?;
    if let Some(service) = service {
        if !store.knows_service(service).map_err(unreadable)? {
            let known = store.services().map_err(unreadable)?;
            eprintln!(
                "warning: no finding of service `{}` was ever recorded in {}; known services: {}",
                clean(service),
                state_dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    clean(&known.join(", "))
                }
            );
        }
    }
    let scope = service.map_or("any service".to_string(), |s| {
        format!("service {}", clean(s))
    });
    let mut out = String::new();
    if rows.is_empty() {
        writeln!(
            out,
            "gate passed: no open findings of severity {min_severity} or higher for {scope}"
        )?;
        return Ok((out, false));
    }
    let noun = if rows.len() == 1 {
        "finding"
    } else {
        "findings"
    };
    writeln!(
        out,
        "gate failed: {} open {noun} of severity {min_severity} or higher for {scope}",
        rows.len()
    )?;
    for row in &rows {
        writeln!(
            out,
            "  {:<8} {} ({}) {} [{}], latest window ends {}, fingerprint {}",
            row.severity.as_str(),
            row.rule_id,
            row.title,
            if row.service.is_empty() {
                "-"
            } else {
                &row.service
            },
            row.group,
            row.window_end,
            row.fingerprint
        )?;
    }
    Ok((out, true))
}
