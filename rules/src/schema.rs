//! The rule file schema: what a rule author writes, exactly as parsed from YAML.
//!
//! These types only describe the shape of a file. Every struct rejects unknown fields, so a
//! misspelt key fails at load with its line instead of being ignored. Nothing here is checked
//! beyond its shape: [`crate::compile`] turns a [`RuleSpec`] into a [`crate::Rule`] and rejects
//! values that parse but make no sense (a window that is not a multiple of its slide, a regex
//! that does not compile, a `group_by` field that does not exist).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// One detection rule as written in a rule file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, unique across all loaded rules: lower case, digits and `-`.
    pub id: String,
    /// One-line summary shown on every finding.
    pub title: String,
    /// Longer explanation for the people who receive the finding.
    #[serde(default)]
    pub description: Option<String>,
    /// The urgency of this rule's findings.
    pub severity: Severity,
    /// The lifecycle stages whose teams should receive the findings (at least one).
    pub stages: Vec<Stage>,
    /// Free tags, such as an OWASP API Security Top 10 2023 category or a CWE id.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The events the rule counts. Omitted means every event.
    #[serde(default, rename = "match")]
    pub matches: Option<MatchSpec>,
    /// Event fields whose values split the counting into groups, such as `[client]`.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The event-time window the rule counts over.
    pub window: WindowSpec,
    /// Fires when at least `count` matching events fall in one window of one group.
    #[serde(default)]
    pub threshold: Option<ThresholdSpec>,
    /// Fires when a field takes at least `count` distinct values in one window of one group.
    #[serde(default)]
    pub distinct: Option<DistinctSpec>,
    /// Fires when the share of matching events in a group's window reaches `min_ratio`.
    #[serde(default)]
    pub ratio: Option<RatioSpec>,
    /// Fires when events carry an attack pattern in the given fields.
    #[serde(default)]
    pub signature: Option<SignatureSpec>,
    /// How much evidence each finding keeps.
    #[serde(default)]
    pub evidence: EvidenceSpec,
}

/// The urgency of a finding, from `info` to `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Returns the lower-case name used in files and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage of the API lifecycle whose team a finding feeds back into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Trends and digests for planning.
    Strategy,
    /// The API's contract or architecture must change.
    Design,
    /// A regression test should exist.
    Test,
    /// CI should gate releases while the finding is open.
    Build,
    /// Someone must act now.
    Operate,
    /// A trend to watch.
    Monitor,
}

impl Stage {
    /// Returns the lower-case name used in files and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Strategy => "strategy",
            Stage::Design => "design",
            Stage::Test => "test",
            Stage::Build => "build",
            Stage::Operate => "operate",
            Stage::Monitor => "monitor",
        }
    }
}

/// An event-time window: tumbling when `slide` is omitted, sliding otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Length of each window, such as `5m`.
    pub size: HumanDuration,
    /// Distance between the starts of consecutive windows; `size` must be a multiple of it.
    #[serde(default)]
    pub slide: Option<HumanDuration>,
}

/// The condition of a `threshold` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Matching events per group and window at which the rule fires.
    pub count: u64,
}

/// The condition of a `distinct` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctSpec {
    /// The field whose distinct values are counted, such as `path`.
    pub field: String,
    /// Distinct values per group and window at which the rule fires.
    pub count: u64,
}

/// The condition of a `ratio` rule: `match` selects the numerator among the events of `of`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioSpec {
    /// Share of events (0 to 1) that must match for the rule to fire.
    pub min_ratio: f64,
    /// Events the group needs in the window before the share counts.
    pub min_events: u64,
    /// The events the share is taken of. Omitted means every event.
    #[serde(default)]
    pub of: Option<MatchSpec>,
}

/// The condition of a `signature` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureSpec {
    /// Fields searched after URL decoding, such as `[path, query, user_agent]`.
    #[serde(default = "default_signature_fields")]
    pub fields: Vec<String>,
    /// The patterns; an event matches when any pattern matches any field.
    pub patterns: Vec<PatternSpec>,
    /// Matching events per group and window at which the rule fires.
    #[serde(default = "one")]
    pub min_count: u64,
}

fn default_signature_fields() -> Vec<String> {
    vec!["path".to_string(), "query".to_string()]
}

fn one() -> u64 {
    1
}

/// A named regular expression (Rust `regex` syntax).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    /// Short name reported in evidence, such as `union-select`.
    pub name: String,
    /// The regular expression; use `(?i)` for case-insensitive matching.
    pub regex: String,
}

/// How much evidence each finding keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSpec {
    /// Events kept per finding, the earliest by event time (0 to 50).
    #[serde(default = "default_evidence_events")]
    pub max_events: usize,
}

fn default_evidence_events() -> usize {
    5
}

impl Default for EvidenceSpec {
    fn default() -> Self {
        EvidenceSpec {
            max_events: default_evidence_events(),
        }
    }
}

/// A match expression: every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    pub service: Option<TextCond>,
    pub method: Option<TextCond>,
    pub route: Option<TextCond>,
    pub path: Option<TextCond>,
    pub query: Option<TextCond>,
    pub client: Option<TextCond>,
    pub principal: Option<TextCond>,
    pub user_agent: Option<TextCond>,
    pub referer: Option<TextCond>,
    pub trace_id: Option<TextCond>,
    pub body: Option<TextCond>,
    pub status: Option<NumCond>,
    pub latency_ms: Option<NumCond>,
    pub request_bytes: Option<NumCond>,
    pub response_bytes: Option<NumCond>,
    /// Conditions on labels by name.
    #[serde(default)]
    pub labels: BTreeMap<String, TextCond>,
    /// Conditions on request headers by name (case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, TextCond>,
    /// Holds when at least one of these expressions holds.
    #[serde(default)]
    pub any: Vec<MatchSpec>,
    /// Holds when this expression does not.
    #[serde(default)]
    pub not: Option<Box<MatchSpec>>,
}

/// A condition on a text field: a string (equals), a list (equals any), or operators.
#[derive(Debug, Clone, PartialEq)]
pub enum TextCond {
    Equals(String),
    In(Vec<String>),
    Ops(TextOps),
}

/// Operators on a text field; all given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOps {
    pub equals: Option<String>,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<String>>,
    pub prefix: Option<OneOrMany>,
    pub suffix: Option<OneOrMany>,
    pub contains: Option<OneOrMany>,
    /// A regular expression that must match somewhere in the value.
    pub regex: Option<String>,
    /// `true`: the field must be present; `false`: it must be absent.
    pub exists: Option<bool>,
    /// Compare ignoring ASCII case (applies to equals, in, prefix, suffix and contains).
    #[serde(default)]
    pub ignore_case: bool,
}

/// One string or a list of strings, of which any may match.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// Returns the strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A condition on a numeric field: a number, a status class like `5xx`, a list, or operators.
#[derive(Debug, Clone, PartialEq)]
pub enum NumCond {
    Equals(f64),
    /// A status class such as `4xx`, kept as written and checked at compile time.
    Class(String),
    In(Vec<f64>),
    Ops(NumOps),
}

/// Comparison operators on a numeric field; all given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumOps {
    pub equals: Option<f64>,
    #[serde(rename = "in")]
    pub one_of: Option<Vec<f64>>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    /// `true`: the field must be present; `false`: it must be absent.
    pub exists: Option<bool>,
}

impl<'de> Deserialize<'de> for TextCond {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextCondVisitor;

        impl<'de> Visitor<'de> for TextCondVisitor {
            type Value = TextCond;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a string, a list of strings, or a map of operators such as {prefix: /admin}",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextCond, E> {
                Ok(TextCond::Equals(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TextCond, E> {
                Ok(TextCond::Equals(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TextCond, E> {
                Ok(TextCond::Equals(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextCond, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<String>()? {
                    values.push(value);
                }
                Ok(TextCond::In(values))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TextCond, A::Error> {
                TextOps::deserialize(MapAccessDeserializer::new(map)).map(TextCond::Ops)
            }
        }

        deserializer.deserialize_any(TextCondVisitor)
    }
}

impl<'de> Deserialize<'de> for NumCond {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumCondVisitor;

        impl<'de> Visitor<'de> for NumCondVisitor {
            type Value = NumCond;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a status class such as 5xx, a list of numbers, or a map of operators such as {gte: 500}")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumCond, E> {
                Ok(NumCond::Equals(v as f64))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumCond, E> {
                Ok(NumCond::Equals(v as f64))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumCond, E> {
                Ok(NumCond::Equals(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumCond, E> {
                Ok(NumCond::Class(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NumCond, A::Error> {
                let mut values = Vec::new();
                while let Some(value) = seq.next_element::<f64>()? {
                    values.push(value);
                }
                Ok(NumCond::In(values))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NumCond, A::Error> {
                NumOps::deserialize(MapAccessDeserializer::new(map)).map(NumCond::Ops)
            }
        }

        deserializer.deserialize_any(NumCondVisitor)
    }
}

/// The names of [`RuleSpec`]'s fields, for "did you mean" hints.
pub const RULE_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "severity",
    "stages",
    "tags",
    "match",
    "group_by",
    "window",
    "threshold",
    "distinct",
    "ratio",
    "signature",
    "evidence",
];
