//! Findings: what the dataflow reports when a rule's condition holds in a window.
//!
//! A rule reports a window of one group twice at most. The `early` finding leaves as soon as
//! the condition first holds, while the window is still open; its counts are those at that
//! moment, so a threshold rule's early count is its threshold.
//! The `final` finding leaves when the watermark passes the window's end, with complete counts.
//! Ratio rules report only `final` findings, because a share can fall again before the window
//! closes. The JSON form is documented in `docs/findings.md` and is what every sink writes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use feedloop_rules::{Rule, Severity, Stage};

/// When a finding was emitted relative to its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The condition holds and the window is still open.
    Early,
    /// The window has closed; counts are complete.
    Final,
}

/// A window's bounds as RFC 3339 UTC instants; `end` is exclusive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowBounds {
    pub start: String,
    pub end: String,
}

/// One event kept as evidence, with the fields an API owner needs to find it in their logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Event time, RFC 3339 UTC with milliseconds.
    pub time: String,
    #[serde(skip)]
    pub time_ms: i64,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<f64>,
    pub client: String,
    /// The route template of the call, when it differs from the path.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// The service the call was made to, when the input names one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user_agent: Option<String>,
    /// For signature rules: the pattern name, the field and the matched text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub matched: Option<SignatureEvidence>,
}

/// The place a signature matched inside an evidence event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SignatureEvidence {
    pub pattern: String,
    pub field: String,
    pub excerpt: String,
}

impl Evidence {
    /// Orders evidence by event time, then by content, so the kept sample is the same
    /// whatever order the events arrived in.
    pub fn sort_key(&self) -> impl Ord + '_ {
        (
            self.time_ms,
            &self.client,
            &self.method,
            &self.path,
            &self.query,
            self.status,
            &self.user_agent,
            &self.principal,
            self.latency_ms.map(|v| v.to_bits()),
        )
    }
}

/// A finding: a rule's condition held for one group in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule_id: String,
    pub title: String,
    /// Stable hash of rule id, group key and stages: the same condition always maps to it.
    pub fingerprint: String,
    pub phase: Phase,
    pub kind: String,
    pub severity: Severity,
    pub stages: Vec<Stage>,
    pub tags: Vec<String>,
    /// The service the finding is about: the group's `service` value, otherwise the service
    /// of its earliest evidence event; absent when the input names no service.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    /// `group_by` field name to value; `null` where the events lacked the field.
    pub group: serde_json::Map<String, serde_json::Value>,
    pub window: WindowBounds,
    /// The condition the rule tests, such as `count >= 20`.
    pub condition: String,
    /// Events that matched in the window (the numerator for ratio rules).
    pub count: u64,
    /// Distinct values of the rule's field (distinct rules).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub distinct: Option<u64>,
    /// Matching share of `total` (ratio rules).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ratio: Option<f64>,
    /// Events the share is taken of (ratio rules).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub total: Option<u64>,
    /// Matches per pattern name (signature rules).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patterns: Option<std::collections::BTreeMap<String, u64>>,
    /// Event time of the earliest matching event in the window.
    pub first_seen: String,
    /// Event time of the latest matching event in the window.
    pub last_seen: String,
    /// The earliest matching events of the window, at most the rule's `evidence.max_events`.
    pub evidence: Vec<Evidence>,
    /// How the finding moved its routes' KPIs; absent when KPIs are off.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub impact: Option<crate::impact::Impact>,
}

impl Finding {
    /// Returns the identity of the reported window: rule, group, window start and phase.
    pub fn key(&self) -> (String, String, String, Phase) {
        let group = serde_json::to_string(&self.group).expect("a JSON map always serializes");
        (
            self.rule_id.clone(),
            group,
            self.window.start.clone(),
            self.phase,
        )
    }
}

/// Returns the fingerprint of a rule's finding for a group: the first 128 bits of SHA-256 over
/// the rule id, the group values and the stages, in hex.
pub fn fingerprint(rule: &Rule, group: &[Option<String>]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule.id.as_bytes());
    hasher.update([0]);
    for value in group {
        match value {
            Some(v) => {
                hasher.update([1]);
                hasher.update(v.as_bytes());
            }
            None => hasher.update([2]),
        }
        hasher.update([0]);
    }
    for stage in &rule.stages {
        hasher.update(stage.as_str().as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_millis(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Formats milliseconds since the epoch as RFC 3339 UTC, whole seconds.
pub fn format_seconds(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_instants() {
        assert_eq!(format_millis(1_431_857_103_000), "2015-05-17T10:05:03.000Z");
        assert_eq!(format_seconds(1_431_857_100_000), "2015-05-17T10:05:00Z");
    }
}
