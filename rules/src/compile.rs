//! Validation of parsed rules into their compiled form.
//!
//! [`Rule::compile`] is the only way to build a [`Rule`], so a rule that reaches the dataflow has
//! a valid id, at least one stage, exactly one detection, a window whose size is a multiple of
//! its slide, compiled patterns and resolved fields. Each check that fails returns a
//! [`RuleIssue`] naming the field and showing a correct example; [`crate::load`] adds the file
//! and line.

use std::fmt;

use serde::Serialize;

use crate::event::{ApiEvent, Field, FIELD_NAMES};
use crate::matcher::Matcher;
use crate::schema::{RuleSpec, Severity, Stage};
use crate::signature::{Signature, SignatureMatch};

/// The maximum window size. Window state is kept per group until the window closes,
/// so longer windows hold more memory per group.
pub const MAX_WINDOW_MS: u64 = 86_400_000;
/// The minimum slide, because shorter slides multiply the windows each event updates.
pub const MIN_SLIDE_MS: u64 = 1_000;
/// The maximum number of windows one event may fall into (`size / slide`).
pub const MAX_WINDOWS_PER_EVENT: u64 = 60;
/// The maximum number of evidence events a rule may keep per finding.
pub const MAX_EVIDENCE_EVENTS: usize = 50;

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable identifier, unique among loaded rules.
    pub id: String,
    /// One-line summary.
    pub title: String,
    /// Longer explanation, if given.
    pub description: Option<String>,
    /// Severity of findings.
    pub severity: Severity,
    /// Lifecycle stages, sorted and without repeats.
    pub stages: Vec<Stage>,
    /// Free tags, in file order.
    pub tags: Vec<String>,
    /// Events the rule counts (the numerator for ratio rules).
    pub filter: Matcher,
    /// Fields whose values form the group key, in file order.
    pub group_by: Vec<Field>,
    /// The event-time window.
    pub window: Window,
    /// The aggregate computed per group and window, and its condition.
    pub detection: Detection,
    /// Evidence events kept per finding.
    pub max_evidence: usize,
}

/// An event-time window; tumbling when `slide_ms == size_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Length of each window in milliseconds.
    pub size_ms: u64,
    /// Distance between window starts in milliseconds; divides `size_ms`.
    pub slide_ms: u64,
}

impl Window {
    /// Returns the starts of every window containing `time_ms`, earliest first.
    ///
    /// Windows start at multiples of the slide counted from the Unix epoch, so every worker
    /// and every run puts an event in the same windows.
    pub fn starts(&self, time_ms: i64) -> impl Iterator<Item = i64> {
        let slide = self.slide_ms as i64;
        let size = self.size_ms as i64;
        let last = time_ms.div_euclid(slide) * slide;
        let first = last - size + slide;
        (0..size / slide).map(move |i| first + i * slide)
    }
}

/// The kind of detection and its parameters.
#[derive(Debug, Clone)]
pub enum Detection {
    /// Fires at `count` matching events.
    Threshold { count: u64 },
    /// Fires at `count` distinct values of `field` among matching events.
    Distinct { field: Field, count: u64 },
    /// Fires when matching events are at least `min_ratio` of the events of `of`, given at
    /// least `min_events` of those.
    Ratio {
        of: Matcher,
        min_ratio: f64,
        min_events: u64,
    },
    /// Fires at `min_count` events that match a pattern.
    Signature {
        signature: Signature,
        min_count: u64,
    },
}

impl Detection {
    /// Returns the kind's name as written in rule files: `threshold`, `distinct`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Detection::Threshold { .. } => "threshold",
            Detection::Distinct { .. } => "distinct",
            Detection::Ratio { .. } => "ratio",
            Detection::Signature { .. } => "signature",
        }
    }
}

/// The contribution of one event to its group's windows under a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Contribution {
    /// One matching event (threshold).
    Count,
    /// One matching event with the value of the distinct field.
    Value(String),
    /// One event of the ratio's denominator, and whether it matched.
    Ratio { matched: bool },
    /// One event that matched a signature.
    Signature(SignatureMatch),
}

/// A problem with one field of one rule, before the file and line are known.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleIssue {
    /// Dotted path of the field at fault, such as `window.slide`.
    pub field: String,
    /// The problem, naming the value.
    pub message: String,
    /// A correct example of the field.
    pub example: String,
}

impl RuleIssue {
    fn new(field: impl Into<String>, message: impl Into<String>, example: &str) -> RuleIssue {
        RuleIssue {
            field: field.into(),
            message: message.into(),
            example: example.to_string(),
        }
    }
}

impl fmt::Display for RuleIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

const DETECTION_EXAMPLE: &str = "threshold: {count: 20}";

impl Rule {
    /// Validates a parsed rule.
    pub fn compile(spec: &RuleSpec) -> Result<Rule, RuleIssue> {
        check_id(&spec.id)?;
        if spec.title.trim().is_empty() {
            return Err(RuleIssue::new(
                "title",
                "title is empty",
                "title: Login failures",
            ));
        }
        if spec.stages.is_empty() {
            return Err(RuleIssue::new(
                "stages",
                "list at least one lifecycle stage (strategy, design, test, build, operate, monitor)",
                "stages: [operate, test]",
            ));
        }
        let mut stages = spec.stages.clone();
        stages.sort();
        stages.dedup();

        let filter = match &spec.matches {
            Some(m) => Matcher::compile(m, "match").map_err(match_issue)?,
            None => Matcher::default(),
        };
        let group_by = spec
            .group_by
            .iter()
            .enumerate()
            .map(|(i, name)| parse_field(name, &format!("group_by[{i}]"), "group_by: [client]"))
            .collect::<Result<Vec<_>, _>>()?;
        let window = compile_window(spec)?;
        let detection = compile_detection(spec)?;
        if spec.evidence.max_events > MAX_EVIDENCE_EVENTS {
            return Err(RuleIssue::new(
                "evidence.max_events",
                format!(
                    "{} evidence events is more than the maximum of {MAX_EVIDENCE_EVENTS}",
                    spec.evidence.max_events
                ),
                "evidence: {max_events: 5}",
            ));
        }

        Ok(Rule {
            id: spec.id.clone(),
            title: spec.title.trim().to_string(),
            description: spec.description.clone(),
            severity: spec.severity,
            stages,
            tags: spec.tags.clone(),
            filter,
            group_by,
            window,
            detection,
            max_evidence: spec.evidence.max_events,
        })
    }

    /// Returns what the event contributes to this rule, or `None` when it does not count.
    pub fn evaluate(&self, event: &ApiEvent) -> Option<Contribution> {
        match &self.detection {
            Detection::Threshold { .. } => {
                self.filter.matches(event).then_some(Contribution::Count)
            }
            Detection::Distinct { field, .. } => {
                if !self.filter.matches(event) {
                    return None;
                }
                event
                    .text(field)
                    .map(|v| Contribution::Value(v.into_owned()))
            }
            Detection::Ratio { of, .. } => {
                if !of.matches(event) {
                    return None;
                }
                Some(Contribution::Ratio {
                    matched: self.filter.matches(event),
                })
            }
            Detection::Signature { signature, .. } => {
                if !self.filter.matches(event) {
                    return None;
                }
                signature.find(event).map(Contribution::Signature)
            }
        }
    }

    /// Returns the group key of an event: the value of each `group_by` field, `None` where
    /// the event lacks it.
    pub fn group_key(&self, event: &ApiEvent) -> Vec<Option<String>> {
        self.group_by
            .iter()
            .map(|f| event.text(f).map(|v| v.into_owned()))
            .collect()
    }

    /// Returns every field the rule reads, sorted and without repeats.
    pub fn fields_read(&self) -> Vec<Field> {
        let mut fields = self.group_by.clone();
        self.filter.collect_fields(&mut fields);
        match &self.detection {
            Detection::Threshold { .. } => {}
            Detection::Distinct { field, .. } => fields.push(field.clone()),
            Detection::Ratio { of, .. } => of.collect_fields(&mut fields),
            Detection::Signature { signature, .. } => fields.extend_from_slice(signature.fields()),
        }
        fields.sort();
        fields.dedup();
        fields
    }
}

fn check_id(id: &str) -> Result<(), RuleIssue> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(RuleIssue::new(
            "id",
            format!("invalid id `{id}`: use 1 to 64 lower-case letters, digits and `-`"),
            "id: auth-failure-burst",
        ))
    }
}

fn match_issue(err: crate::matcher::MatchError) -> RuleIssue {
    RuleIssue::new(err.path, err.message, err.example)
}

fn parse_field(name: &str, at: &str, example: &str) -> Result<Field, RuleIssue> {
    Field::parse(name).ok_or_else(|| {
        RuleIssue::new(
            at,
            format!(
                "unknown event field `{name}`; fields are {}, label.NAME and header.NAME",
                FIELD_NAMES.join(", ")
            ),
            example,
        )
    })
}

fn compile_window(spec: &RuleSpec) -> Result<Window, RuleIssue> {
    const EXAMPLE: &str = "window: {size: 10m, slide: 1m}";
    let size_ms = spec.window.size.as_millis();
    let slide_ms = spec.window.slide.map_or(size_ms, |s| s.as_millis());
    if size_ms == 0 || size_ms > MAX_WINDOW_MS {
        return Err(RuleIssue::new(
            "window.size",
            format!("window size {} is outside 1s to 1d", spec.window.size),
            EXAMPLE,
        ));
    }
    if slide_ms < MIN_SLIDE_MS {
        return Err(RuleIssue::new(
            if spec.window.slide.is_some() {
                "window.slide"
            } else {
                "window.size"
            },
            format!("slide of {slide_ms}ms is shorter than the minimum of 1s"),
            EXAMPLE,
        ));
    }
    if slide_ms > size_ms || !size_ms.is_multiple_of(slide_ms) {
        return Err(RuleIssue::new(
            "window.slide",
            format!(
                "window size {} is not a multiple of slide {}",
                spec.window.size,
                crate::duration::HumanDuration(slide_ms)
            ),
            EXAMPLE,
        ));
    }
    if size_ms / slide_ms > MAX_WINDOWS_PER_EVENT {
        return Err(RuleIssue::new(
            "window.slide",
            format!(
                "window size {} over slide {} puts each event in {} windows, more than the maximum of {MAX_WINDOWS_PER_EVENT}",
                spec.window.size,
                crate::duration::HumanDuration(slide_ms),
                size_ms / slide_ms
            ),
            EXAMPLE,
        ));
    }
    Ok(Window { size_ms, slide_ms })
}

fn compile_detection(spec: &RuleSpec) -> Result<Detection, RuleIssue> {
    let given: Vec<&str> = [
        ("threshold", spec.threshold.is_some()),
        ("distinct", spec.distinct.is_some()),
        ("ratio", spec.ratio.is_some()),
        ("signature", spec.signature.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if given.len() != 1 {
        let message = if given.is_empty() {
            "rule has no detection: add one of `threshold`, `distinct`, `ratio` or `signature`"
                .to_string()
        } else {
            format!(
                "rule has {} detections ({}); keep exactly one",
                given.len(),
                given.join(", ")
            )
        };
        return Err(RuleIssue::new(
            given.get(1).copied().unwrap_or("threshold"),
            message,
            DETECTION_EXAMPLE,
        ));
    }

    if let Some(t) = &spec.threshold {
        if t.count == 0 {
            return Err(RuleIssue::new(
                "threshold.count",
                "count must be at least 1",
                DETECTION_EXAMPLE,
            ));
        }
        return Ok(Detection::Threshold { count: t.count });
    }
    if let Some(d) = &spec.distinct {
        const EXAMPLE: &str = "distinct: {field: path, count: 25}";
        let field = parse_field(&d.field, "distinct.field", EXAMPLE)?;
        if d.count == 0 {
            return Err(RuleIssue::new(
                "distinct.count",
                "count must be at least 1",
                EXAMPLE,
            ));
        }
        return Ok(Detection::Distinct {
            field,
            count: d.count,
        });
    }
    if let Some(r) = &spec.ratio {
        const EXAMPLE: &str = "ratio: {min_ratio: 0.2, min_events: 50}";
        if !(r.min_ratio > 0.0 && r.min_ratio <= 1.0) {
            return Err(RuleIssue::new(
                "ratio.min_ratio",
                format!("min_ratio {} is outside (0, 1]", r.min_ratio),
                EXAMPLE,
            ));
        }
        if r.min_events == 0 {
            return Err(RuleIssue::new(
                "ratio.min_events",
                "min_events must be at least 1",
                EXAMPLE,
            ));
        }
        let of = match &r.of {
            Some(m) => Matcher::compile(m, "ratio.of").map_err(match_issue)?,
            None => Matcher::default(),
        };
        return Ok(Detection::Ratio {
            of,
            min_ratio: r.min_ratio,
            min_events: r.min_events,
        });
    }
    let s = spec
        .signature
        .as_ref()
        .expect("exactly one detection is present");
    compile_signature(s)
}

fn compile_signature(s: &crate::schema::SignatureSpec) -> Result<Detection, RuleIssue> {
    const EXAMPLE: &str =
        "signature: {fields: [path, query], patterns: [{name: traversal, regex: '\\.\\./'}]}";
    if s.patterns.is_empty() {
        return Err(RuleIssue::new(
            "signature.patterns",
            "list at least one pattern",
            EXAMPLE,
        ));
    }
    if s.fields.is_empty() {
        return Err(RuleIssue::new(
            "signature.fields",
            "list at least one field",
            EXAMPLE,
        ));
    }
    if s.min_count == 0 {
        return Err(RuleIssue::new(
            "signature.min_count",
            "min_count must be at least 1",
            EXAMPLE,
        ));
    }
    let fields = s
        .fields
        .iter()
        .enumerate()
        .map(|(i, name)| parse_field(name, &format!("signature.fields[{i}]"), EXAMPLE))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in s.patterns.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            return Err(RuleIssue::new(
                format!("signature.patterns[{i}].name"),
                format!("pattern name `{}` is used twice", p.name),
                EXAMPLE,
            ));
        }
    }
    let patterns: Vec<(String, String)> = s
        .patterns
        .iter()
        .map(|p| (p.name.clone(), p.regex.clone()))
        .collect();
    let signature = Signature::new(fields, &patterns).map_err(|(i, err)| {
        if i == usize::MAX {
            return RuleIssue::new(
                "signature.patterns",
                format!("the {} patterns together are too large to compile: {err}; split them over several rules", patterns.len()),
                EXAMPLE,
            );
        }
        let source = &patterns[i].1;
        let shown: String = source.chars().take(200).collect();
        let more = if shown.len() < source.len() { "..." } else { "" };
        let err = err.to_string();
        let err: String = err.chars().take(500).collect();
        RuleIssue::new(
            format!("signature.patterns[{i}].regex"),
            format!("invalid regular expression `{shown}{more}`: {err}"),
            EXAMPLE,
        )
    })?;
    Ok(Detection::Signature {
        signature,
        min_count: s.min_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<Rule, RuleIssue> {
        let spec: RuleSpec = serde_norway::from_str(yaml).unwrap();
        Rule::compile(&spec)
    }

    const BASE: &str = "id: r1\ntitle: T\nseverity: high\nstages: [operate]\n";

    #[test]
    fn window_starts_cover_event() {
        let w = Window {
            size_ms: 600_000,
            slide_ms: 60_000,
        };
        let starts: Vec<i64> = w.starts(125_000).collect();
        assert_eq!(starts.len(), 10);
        assert_eq!(starts[0], 120_000 - 540_000);
        assert_eq!(starts[9], 120_000);
        let tumbling = Window {
            size_ms: 60_000,
            slide_ms: 60_000,
        };
        assert_eq!(tumbling.starts(-1).collect::<Vec<_>>(), vec![-60_000]);
    }

    #[test]
    fn compile_threshold_rule() {
        let rule = compile(&format!(
            "{BASE}window: {{size: 5m}}\ngroup_by: [client]\nthreshold: {{count: 3}}\n"
        ))
        .unwrap();
        assert_eq!(
            rule.window,
            Window {
                size_ms: 300_000,
                slide_ms: 300_000
            }
        );
        assert_eq!(rule.group_by, vec![Field::Client]);
        assert_eq!(rule.detection.kind(), "threshold");
    }

    #[test]
    fn compile_rejects_slide_not_dividing_size() {
        let err = compile(&format!(
            "{BASE}window: {{size: 5m, slide: 2m}}\nthreshold: {{count: 3}}\n"
        ))
        .unwrap_err();
        assert_eq!(err.field, "window.slide");
        assert_eq!(err.message, "window size 5m is not a multiple of slide 2m");
    }

    #[test]
    fn compile_rejects_two_detections_and_none() {
        let err = compile(&format!("{BASE}window: {{size: 5m}}\nthreshold: {{count: 3}}\ndistinct: {{field: path, count: 3}}\n")).unwrap_err();
        assert_eq!(
            err.message,
            "rule has 2 detections (threshold, distinct); keep exactly one"
        );
        let err = compile(&format!("{BASE}window: {{size: 5m}}\n")).unwrap_err();
        assert!(
            err.message.starts_with("rule has no detection"),
            "{}",
            err.message
        );
    }

    #[test]
    fn compile_rejects_unknown_group_field() {
        let err = compile(&format!(
            "{BASE}window: {{size: 5m}}\ngroup_by: [ip]\nthreshold: {{count: 3}}\n"
        ))
        .unwrap_err();
        assert_eq!(err.field, "group_by[0]");
        assert!(
            err.message.starts_with("unknown event field `ip`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn compile_rejects_bad_id_and_ratio() {
        let err = compile("id: Bad_Id\ntitle: T\nseverity: low\nstages: [test]\nwindow: {size: 1m}\nthreshold: {count: 1}\n").unwrap_err();
        assert_eq!(err.field, "id");
        let err = compile(&format!(
            "{BASE}window: {{size: 5m}}\nratio: {{min_ratio: 1.5, min_events: 5}}\n"
        ))
        .unwrap_err();
        assert_eq!(err.message, "min_ratio 1.5 is outside (0, 1]");
    }

    #[test]
    fn evaluate_ratio_counts_denominator() {
        let rule = compile(&format!("{BASE}window: {{size: 5m}}\nmatch: {{status: 5xx}}\nratio: {{min_ratio: 0.5, min_events: 2, of: {{method: GET}}}}\n")).unwrap();
        let get = |status| ApiEvent {
            method: "GET".into(),
            status: Some(status),
            ..Default::default()
        };
        assert_eq!(
            rule.evaluate(&get(500)),
            Some(Contribution::Ratio { matched: true })
        );
        assert_eq!(
            rule.evaluate(&get(200)),
            Some(Contribution::Ratio { matched: false })
        );
        let post = ApiEvent {
            method: "POST".into(),
            status: Some(500),
            ..Default::default()
        };
        assert_eq!(rule.evaluate(&post), None);
    }
}
