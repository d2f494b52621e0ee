//! The delivery side of the command: engine settings from the configuration, `feedloop routes
//! test` and `feedloop gate`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use feedloop_connectors::delivery::engine::EngineSettings;
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
        receivers.push(
            receiver
                .build(name, &catalog)
                .map_err(|err| anyhow::anyhow!("receiver `{name}`: {err}"))?,
        );
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
    let service = finding.service.as_deref().unwrap_or("(none)");
    writeln!(
        out,
        "finding {} ({}, {}, service {service})",
        finding.rule_id,
        finding.severity,
        stage_list(&finding)
    )?;
    if !target.service.is_empty() && !catalog.contains_key(&target.service) {
        writeln!(
            out,
            "service {} is not in the catalog; receivers use their own defaults",
            target.service
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
        writeln!(out, "  {line}")?;
    }
    if destinations.is_empty() {
        writeln!(out, "reaches no receiver: no route matched")?;
    } else {
        let mut names: Vec<&str> = destinations
            .iter()
            .flat_map(|d| d.receivers.iter().map(String::as_str))
            .collect();
        names.dedup();
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
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read finding {}", path.display()))?;
    }
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    // A whole file may be one pretty-printed finding; a JSON Lines file gives its first line.
    serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(first))
        .with_context(|| {
            format!(
                "invalid finding {}: expected one finding as JSON, as `feedloop scan --format jsonl` writes",
                path.display()
            )
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
    let store = Store::open_read_only(state_dir)?;
    let rows = store.open_rows(service, min_severity)?;
    let scope = service.map_or("any service".to_string(), |s| format!("service {s}"));
    let mut out = String::new();
    if rows.is_empty() {
        writeln!(
            out,
            "gate passed: no open findings of severity {min_severity} or higher for {scope}"
        )?;
        return Ok((out, false));
    }
    writeln!(
        out,
        "gate failed: {} open findings of severity {min_severity} or higher for {scope}",
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
