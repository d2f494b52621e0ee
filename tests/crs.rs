//! Detection and false-positive counts of the shipped signature rules on the OWASP CRS
//! regression tests.
//!
//! Each CRS test stage is one HTTP request with a label: `expect_ids` marks a request the CRS
//! rule must flag (an attack), `no_expect_ids` one it must not flag. Each stage becomes the
//! [`ApiEvent`] an access log would yield for it, with the path and query still
//! percent-encoded. Five signature rules are evaluated on each event twice. The first run uses
//! the fields the packs ship with, and the second adds `body` to each rule's fields, as for
//! gateways whose JSON events carry a body prefix.
//!
//! The test asserts the counts measured today. A pattern change that moves a detection or a
//! false positive fails it, and the change must update `EXPECTED` on purpose. The labels are
//! per CRS rule, so a `no_expect_ids` request may still be an attack that another CRS rule
//! catches; the printed false positives show each such request so it can be judged.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

use feedloop_rules::signature::SignatureMatch;
use feedloop_rules::{ApiEvent, Contribution, Detection, Field, Rule, RuleSet};

/// One go-ftw test file: the tests of one CRS rule.
#[derive(Deserialize)]
struct CrsFile {
    #[serde(default)]
    tests: Vec<CrsTest>,
}

#[derive(Deserialize)]
struct CrsTest {
    test_id: u64,
    stages: Vec<CrsStage>,
}

#[derive(Deserialize)]
struct CrsStage {
    input: StageInput,
    #[serde(default)]
    output: StageOutput,
}

/// The request of one stage. A missing `method` is taken as `GET` (the six stages without one
/// carry their payload in the query string) and a missing `uri` as `/`.
#[derive(Deserialize)]
struct StageInput {
    method: Option<String>,
    uri: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    data: Option<String>,
    encoded_request: Option<String>,
}

#[derive(Deserialize, Default)]
struct StageOutput {
    log: Option<ExpectedLog>,
}

/// The CRS rule ids the WAF log must and must not contain after the stage.
#[derive(Deserialize, Default)]
struct ExpectedLog {
    #[serde(default)]
    expect_ids: Vec<u64>,
    #[serde(default)]
    no_expect_ids: Vec<u64>,
}

/// A CRS rule file family and the feedloop rule expected to flag its attacks.
struct Family {
    /// The number in the CRS folder name, such as `942` in `REQUEST-942-APPLICATION-ATTACK-SQLI`.
    prefix: &'static str,
    /// The attack class the CRS family tests.
    attack: &'static str,
    /// The feedloop rule whose match counts as a detection.
    rule_id: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        prefix: "942",
        attack: "SQLi",
        rule_id: "sql-injection-attempt",
    },
    Family {
        prefix: "941",
        attack: "XSS",
        rule_id: "xss-attempt",
    },
    Family {
        prefix: "930",
        attack: "LFI",
        rule_id: "path-traversal-attempt",
    },
    Family {
        prefix: "932",
        attack: "RCE",
        rule_id: "command-injection-attempt",
    },
    Family {
        prefix: "944",
        attack: "Java",
        rule_id: "command-injection-attempt",
    },
    Family {
        prefix: "913",
        attack: "scanner",
        rule_id: "scanner-user-agent",
    },
];

/// The rules evaluated on every stage. A negative stage that any of them flags counts as a
/// false positive.
const MEASURED_RULES: &[&str] = &[
    "sql-injection-attempt",
    "xss-attempt",
    "path-traversal-attempt",
    "command-injection-attempt",
    "scanner-user-agent",
];

/// The pack files that define `MEASURED_RULES`.
const PACKS: &[&str] = &["rules/packs/injection.yaml", "rules/packs/recon.yaml"];

/// The `User-Agent` that most CRS tests set (2,358 of the 2,502 stages measured), and it
/// carries no payload.
const CRS_DEFAULT_AGENT: &str = "OWASP CRS test agent";

/// Headers that carry no payload in the CRS families measured here (checked by reading the
/// test files), so they do not decide whether a payload is in reach of a rule.
const TRANSPORT_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-connection",
];

/// Counts of one rule set on one CRS family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Measure {
    /// Positives whose payload can only be in fields the family's rule reads.
    in_reach: usize,
    /// Positives the family's rule flags.
    detected: usize,
    /// In-reach positives the family's rule flags.
    detected_in_reach: usize,
    /// Negatives that any measured rule flags.
    false_positives: usize,
}

/// Counts of one CRS family, as shipped and with `body` added to every signature's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    prefix: &'static str,
    positives: usize,
    negatives: usize,
    shipped: Measure,
    with_body: Measure,
}

/// Stages left out of the table, over all measured families.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Skipped {
    /// Stages given as a raw base64 request, which this test does not parse.
    encoded_request: usize,
    /// Stages with neither `expect_ids` nor `no_expect_ids`.
    unlabelled: usize,
}

/// The counts measured with the packs and the CRS subset in this repository. Update them
/// only for a deliberate change of a pattern, a pack's fields or the data set.
const EXPECTED: &[Row] = &[
    Row {
        prefix: "942",
        positives: 528,
        negatives: 103,
        shipped: Measure {
            in_reach: 73,
            detected: 31,
            detected_in_reach: 31,
            false_positives: 0,
        },
        with_body: Measure {
            in_reach: 519,
            detected: 141,
            detected_in_reach: 141,
            false_positives: 5,
        },
    },
    Row {
        prefix: "941",
        positives: 161,
        negatives: 50,
        shipped: Measure {
            in_reach: 55,
            detected: 30,
            detected_in_reach: 30,
            false_positives: 2,
        },
        with_body: Measure {
            in_reach: 144,
            detected: 57,
            detected_in_reach: 57,
            false_positives: 4,
        },
    },
    Row {
        prefix: "930",
        positives: 48,
        negatives: 13,
        shipped: Measure {
            in_reach: 27,
            detected: 17,
            detected_in_reach: 16,
            false_positives: 0,
        },
        with_body: Measure {
            in_reach: 33,
            detected: 22,
            detected_in_reach: 21,
            false_positives: 0,
        },
    },
    Row {
        prefix: "932",
        positives: 647,
        negatives: 270,
        shipped: Measure {
            in_reach: 380,
            detected: 74,
            detected_in_reach: 74,
            false_positives: 4,
        },
        with_body: Measure {
            in_reach: 628,
            detected: 101,
            detected_in_reach: 99,
            false_positives: 19,
        },
    },
    Row {
        prefix: "944",
        positives: 651,
        negatives: 21,
        shipped: Measure {
            in_reach: 6,
            detected: 3,
            detected_in_reach: 3,
            false_positives: 0,
        },
        with_body: Measure {
            in_reach: 501,
            detected: 108,
            detected_in_reach: 108,
            false_positives: 6,
        },
    },
    Row {
        prefix: "913",
        positives: 5,
        negatives: 2,
        shipped: Measure {
            in_reach: 5,
            detected: 5,
            detected_in_reach: 5,
            false_positives: 0,
        },
        with_body: Measure {
            in_reach: 5,
            detected: 5,
            detected_in_reach: 5,
            false_positives: 0,
        },
    },
];

const EXPECTED_SKIPPED: Skipped = Skipped {
    encoded_request: 1,
    unlabelled: 2,
};

/// The five measured rules, in `MEASURED_RULES` order.
struct RuleVariant {
    rules: Vec<Rule>,
}

impl RuleVariant {
    /// Loads the packs as shipped.
    fn shipped() -> RuleVariant {
        let paths: Vec<PathBuf> = PACKS.iter().map(|p| common::root().join(p)).collect();
        RuleVariant::select(RuleSet::load(&paths).unwrap())
    }

    /// Loads the packs with `body` appended to the fields of every signature rule.
    fn with_body() -> RuleVariant {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        for pack in PACKS {
            let path = common::root().join(pack);
            let text = std::fs::read_to_string(&path).unwrap();
            let loaded = RuleSet::from_text(&path, &add_body_field(&text))
                .unwrap_or_else(|err| panic!("{pack} with `body` added does not load:\n{err}"));
            set.extend(loaded, &mut errors);
        }
        assert!(errors.is_empty(), "duplicate rule ids: {errors:?}");
        RuleVariant::select(set)
    }

    fn select(set: RuleSet) -> RuleVariant {
        let rules = MEASURED_RULES
            .iter()
            .map(|id| {
                let rule = set.rules().iter().find(|r| r.id == *id);
                rule.unwrap_or_else(|| panic!("rule `{id}` is not in {PACKS:?}"))
                    .clone()
            })
            .collect();
        RuleVariant { rules }
    }

    fn rule(&self, id: &str) -> &Rule {
        self.rules.iter().find(|r| r.id == id).unwrap()
    }

    /// Returns each measured rule that flags the event, with its match.
    fn flags(&self, event: &ApiEvent) -> Vec<(&str, SignatureMatch)> {
        let mut flagged = Vec::new();
        for rule in &self.rules {
            if let Some(Contribution::Signature(found)) = rule.evaluate(event) {
                flagged.push((rule.id.as_str(), found));
            }
        }
        flagged
    }
}

/// Returns the pack text with `body` appended to every `signature.fields` list.
fn add_body_field(pack: &str) -> String {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(pack) {
        let mut rule = Value::deserialize(document).unwrap();
        let fields = rule
            .get_mut("signature")
            .and_then(|signature| signature.get_mut("fields"))
            .and_then(Value::as_sequence_mut);
        if let Some(fields) = fields {
            fields.push(Value::from("body"));
        }
        documents.push(serde_norway::to_string(&rule).unwrap());
    }
    documents.join("---\n")
}

fn signature_fields(rule: &Rule) -> &[Field] {
    match &rule.detection {
        Detection::Signature { signature, .. } => signature.fields(),
        other => panic!("rule `{}` is a {} rule", rule.id, other.kind()),
    }
}

/// Builds the event an access log would record for the request: method, raw path and query
/// split at the first `?`, every header under its lower-case name, and `data` as the body.
fn stage_event(input: &StageInput) -> ApiEvent {
    let uri = input.uri.as_deref().unwrap_or("/");
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (uri, None),
    };

    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), header_text(name, value)))
        .collect();
    headers.sort();
    let header = |name: &str| {
        let found = headers.iter().find(|(n, _)| n == name);
        found.map(|(_, value)| value.clone())
    };

    ApiEvent {
        method: input
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase(),
        path: path.to_string(),
        query,
        user_agent: header("user-agent"),
        referer: header("referer"),
        body: input.data.clone().filter(|data| !data.is_empty()),
        headers,
        ..Default::default()
    }
}

fn header_text(name: &str, value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("header `{name}` has a value that is not a scalar: {other:?}"),
    }
}

/// Returns true when every part of the event that can carry a payload is read by one of
/// `fields`.
///
/// The path and query count as read: every measured rule but `scanner-user-agent` reads them,
/// and the scanner cases name the tool in the user agent. The body, a user agent other than
/// `CRS_DEFAULT_AGENT`, the referer and any header outside `TRANSPORT_HEADERS` each need their
/// field.
fn payload_in_reach(event: &ApiEvent, fields: &[Field]) -> bool {
    if event.body.is_some() && !fields.contains(&Field::Body) {
        return false;
    }
    event
        .headers
        .iter()
        .all(|(name, value)| match name.as_str() {
            "user-agent" => value == CRS_DEFAULT_AGENT || fields.contains(&Field::UserAgent),
            "referer" => fields.contains(&Field::Referer),
            _ => {
                TRANSPORT_HEADERS.contains(&name.as_str())
                    || fields.contains(&Field::Header(name.clone()))
            }
        })
}

/// A negative stage that a measured rule flags.
struct FalsePositive {
    case: String,
    rule_id: String,
    found: SignatureMatch,
}

impl fmt::Display for FalsePositive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} in {}: {:?}",
            self.case, self.rule_id, self.found.field, self.found.excerpt
        )
    }
}

/// Everything measured over the CRS folders.
struct Measurement {
    rows: Vec<Row>,
    skipped: Skipped,
    shipped_false_positives: Vec<FalsePositive>,
    with_body_false_positives: Vec<FalsePositive>,
}

/// Returns the go-ftw files of one family, in path order.
fn family_files(tests: &Path, family: &Family) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(tests)
        .unwrap_or_else(|err| panic!("failed to read {}: {err}", tests.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.split('-').nth(1) == Some(family.prefix)
        })
        .collect();
    folders.sort();
    assert_eq!(
        folders.len(),
        1,
        "CRS folders for {}: {folders:?}",
        family.prefix
    );

    let mut files: Vec<PathBuf> = std::fs::read_dir(&folders[0])
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

/// Returns every stage of a go-ftw file with its case name, `RULE/TEST#STAGE`.
fn read_stages(file: &Path) -> Vec<(String, CrsStage)> {
    let text = std::fs::read_to_string(file).unwrap();
    let parsed: CrsFile = serde_norway::from_str(&text)
        .unwrap_or_else(|err| panic!("{}: invalid go-ftw file: {err}", file.display()));
    let rule = file.file_stem().unwrap().to_string_lossy();

    let mut stages = Vec::new();
    for test in parsed.tests {
        for (index, stage) in test.stages.into_iter().enumerate() {
            stages.push((format!("{rule}/{}#{}", test.test_id, index + 1), stage));
        }
    }
    stages
}

/// The label of a stage, from its expected WAF log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    /// `expect_ids` is not empty: the request is an attack.
    Positive,
    /// Only `no_expect_ids` is given: the CRS rule must not flag the request.
    Negative,
}

/// Returns the stage's label, or `None` for a stage left out, which it counts in `skipped`.
fn classify(stage: &CrsStage, skipped: &mut Skipped) -> Option<Label> {
    if stage.input.encoded_request.is_some() {
        skipped.encoded_request += 1;
        return None;
    }
    let log = stage.output.log.as_ref();
    if log.is_some_and(|log| !log.expect_ids.is_empty()) {
        return Some(Label::Positive);
    }
    if log.is_some_and(|log| !log.no_expect_ids.is_empty()) {
        return Some(Label::Negative);
    }
    skipped.unlabelled += 1;
    None
}

/// Evaluates one rule variant on a labelled event and adds the outcome to `counts`. Returns
/// the rule matches that make a negative event a false positive.
fn score(
    variant: &RuleVariant,
    family: &Family,
    event: &ApiEvent,
    label: Label,
    counts: &mut Measure,
) -> Vec<(String, SignatureMatch)> {
    let flags = variant.flags(event);
    match label {
        Label::Positive => {
            let fields = signature_fields(variant.rule(family.rule_id));
            let in_reach = payload_in_reach(event, fields);
            let detected = flags.iter().any(|(id, _)| *id == family.rule_id);
            counts.in_reach += usize::from(in_reach);
            counts.detected += usize::from(detected);
            counts.detected_in_reach += usize::from(in_reach && detected);
            Vec::new()
        }
        Label::Negative => {
            counts.false_positives += usize::from(!flags.is_empty());
            flags
                .into_iter()
                .map(|(id, found)| (id.to_string(), found))
                .collect()
        }
    }
}

fn measure() -> Measurement {
    let shipped = RuleVariant::shipped();
    let with_body = RuleVariant::with_body();
    let tests = common::shared_data("crs-regression-tests/tests");
    let mut measurement = Measurement {
        rows: Vec::new(),
        skipped: Skipped::default(),
        shipped_false_positives: Vec::new(),
        with_body_false_positives: Vec::new(),
    };

    for family in FAMILIES {
        let mut row = Row {
            prefix: family.prefix,
            positives: 0,
            negatives: 0,
            shipped: Measure::default(),
            with_body: Measure::default(),
        };
        for file in family_files(&tests, family) {
            for (case, stage) in read_stages(&file) {
                let Some(label) = classify(&stage, &mut measurement.skipped) else {
                    continue;
                };
                match label {
                    Label::Positive => row.positives += 1,
                    Label::Negative => row.negatives += 1,
                }
                let event = stage_event(&stage.input);

                let variants = [
                    (
                        &shipped,
                        &mut row.shipped,
                        &mut measurement.shipped_false_positives,
                    ),
                    (
                        &with_body,
                        &mut row.with_body,
                        &mut measurement.with_body_false_positives,
                    ),
                ];
                for (variant, counts, false_positives) in variants {
                    let matches = score(variant, family, &event, label, counts);
                    false_positives.extend(matches.into_iter().map(|(rule_id, found)| {
                        FalsePositive {
                            case: case.clone(),
                            rule_id,
                            found,
                        }
                    }));
                }
            }
        }
        measurement.rows.push(row);
    }
    measurement
}

fn family(prefix: &str) -> &'static Family {
    FAMILIES.iter().find(|f| f.prefix == prefix).unwrap()
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Prints one table row per family, each with the counts of one rule variant.
fn print_variant(title: &str, rows: &[(&Row, &Measure)]) {
    println!("\n{title}");
    println!(
        "{:<38} {:>5} {:>6} {:>15} {:>16} {:>5} {:>13}",
        "CRS family -> rule", "pos", "reach", "detected", "detected/reach", "neg", "false pos"
    );
    for (row, measure) in rows {
        let family = family(row.prefix);
        println!(
            "{:<38} {:>5} {:>6} {:>5} {:>9} {:>7} {:>8} {:>5} {:>4} {:>8}",
            format!("{} {} -> {}", family.prefix, family.attack, family.rule_id),
            row.positives,
            measure.in_reach,
            measure.detected,
            format!("({})", percent(measure.detected, row.positives)),
            format!("{}/{}", measure.detected_in_reach, measure.in_reach),
            format!("({})", percent(measure.detected_in_reach, measure.in_reach)),
            row.negatives,
            measure.false_positives,
            format!("({})", percent(measure.false_positives, row.negatives)),
        );
    }
}

fn print_table(measurement: &Measurement) {
    let rows = &measurement.rows;
    let shipped: Vec<_> = rows.iter().map(|row| (row, &row.shipped)).collect();
    let with_body: Vec<_> = rows.iter().map(|row| (row, &row.with_body)).collect();
    print_variant("as shipped", &shipped);
    print_variant("with body added to the fields", &with_body);

    println!(
        "\nskipped stages: {} with encoded_request, {} unlabelled",
        measurement.skipped.encoded_request, measurement.skipped.unlabelled
    );
    let lists = [
        ("as shipped", &measurement.shipped_false_positives),
        ("with body", &measurement.with_body_false_positives),
    ];
    for (title, false_positives) in lists {
        println!(
            "\nrule matches on negatives {title}: {}",
            false_positives.len()
        );
        for false_positive in false_positives {
            println!("  {false_positive}");
        }
    }
}

/// Returns one line per count of `actual` that differs from `expected`, naming the family
/// and the count.
fn compare(actual: &Row, expected: &Row) -> Vec<String> {
    let counts = |row: &Row| {
        [
            ("positives", row.positives),
            ("negatives", row.negatives),
            ("in reach as shipped", row.shipped.in_reach),
            ("detected as shipped", row.shipped.detected),
            (
                "detected in reach as shipped",
                row.shipped.detected_in_reach,
            ),
            ("false positives as shipped", row.shipped.false_positives),
            ("in reach with body", row.with_body.in_reach),
            ("detected with body", row.with_body.detected),
            (
                "detected in reach with body",
                row.with_body.detected_in_reach,
            ),
            ("false positives with body", row.with_body.false_positives),
        ]
    };
    let family = family(expected.prefix);
    let mut differences = Vec::new();
    for ((name, measured), (_, wanted)) in counts(actual).into_iter().zip(counts(expected)) {
        if measured != wanted {
            differences.push(format!(
                "{} {} ({}): {name} is {measured}, expected {wanted}",
                family.prefix, family.attack, family.rule_id
            ));
        }
    }
    differences
}

#[test]
fn crs_counts_match_expected() {
    let measurement = measure();
    print_table(&measurement);

    let prefixes = |rows: &[Row]| rows.iter().map(|row| row.prefix).collect::<Vec<_>>();
    assert_eq!(
        prefixes(&measurement.rows),
        prefixes(EXPECTED),
        "EXPECTED must list the families in FAMILIES order"
    );
    let mut differences = Vec::new();
    for (actual, expected) in measurement.rows.iter().zip(EXPECTED) {
        differences.extend(compare(actual, expected));
    }
    let skipped = [
        (
            "stages with encoded_request",
            measurement.skipped.encoded_request,
            EXPECTED_SKIPPED.encoded_request,
        ),
        (
            "unlabelled stages",
            measurement.skipped.unlabelled,
            EXPECTED_SKIPPED.unlabelled,
        ),
    ];
    for (name, measured, wanted) in skipped {
        if measured != wanted {
            differences.push(format!("skipped {name}: {measured}, expected {wanted}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} counts differ from EXPECTED; update EXPECTED only for a deliberate change:\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
}

#[test]
fn body_variant_appends_body_to_each_rule() {
    let shipped = RuleVariant::shipped();
    let with_body = RuleVariant::with_body();
    for (plain, extended) in shipped.rules.iter().zip(&with_body.rules) {
        let mut expected = signature_fields(plain).to_vec();
        expected.push(Field::Body);
        assert_eq!(
            signature_fields(extended),
            expected.as_slice(),
            "fields of `{}`",
            plain.id
        );
    }
}

#[test]
fn stage_event_keeps_uri_raw() {
    let input: StageInput = serde_norway::from_str(
        r#"
method: post
uri: "/a%2Fb?id=%27%20OR%201=1?x=1"
headers:
  User-Agent: sqlmap/1.7
  Referer: https://example.com/
  Cookie: session=abc
  Content-Length: 3
data: q=1
"#,
    )
    .unwrap();
    let event = stage_event(&input);

    assert_eq!(event.method, "POST");
    assert_eq!(event.path, "/a%2Fb");
    assert_eq!(event.query.as_deref(), Some("id=%27%20OR%201=1?x=1"));
    assert_eq!(event.user_agent.as_deref(), Some("sqlmap/1.7"));
    assert_eq!(event.referer.as_deref(), Some("https://example.com/"));
    assert_eq!(event.header("cookie"), Some("session=abc"));
    assert_eq!(event.header("content-length"), Some("3"));
    assert_eq!(event.body.as_deref(), Some("q=1"));
}

#[test]
fn stage_event_defaults_method_and_uri() {
    let input: StageInput = serde_norway::from_str("headers: {Host: localhost}").unwrap();
    let event = stage_event(&input);

    assert_eq!(event.method, "GET");
    assert_eq!(event.path, "/");
    assert_eq!(event.query, None);
    assert_eq!(event.user_agent, None);
    assert_eq!(event.body, None);
}

#[test]
fn payload_in_reach_needs_each_carrier_read() {
    let uri_fields = [Field::Path, Field::Query];
    let header_fields = [Field::Path, Field::Query, Field::UserAgent, Field::Referer];
    let event = |headers: &[(&str, &str)], body: Option<&str>| ApiEvent {
        path: "/get".into(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        body: body.map(str::to_string),
        ..Default::default()
    };

    let plain = event(
        &[("host", "localhost"), ("user-agent", CRS_DEFAULT_AGENT)],
        None,
    );
    assert!(payload_in_reach(&plain, &uri_fields));

    let with_body = event(&[], Some("a=1"));
    assert!(!payload_in_reach(&with_body, &header_fields));
    assert!(payload_in_reach(&with_body, &[Field::Query, Field::Body]));

    let agent = event(&[("user-agent", "nikto")], None);
    assert!(!payload_in_reach(&agent, &uri_fields));
    assert!(payload_in_reach(&agent, &header_fields));

    let cookie = event(&[("cookie", "id=1' or '1'='1")], None);
    assert!(!payload_in_reach(&cookie, &header_fields));
    assert!(payload_in_reach(&cookie, &[Field::Header("cookie".into())]));
}
