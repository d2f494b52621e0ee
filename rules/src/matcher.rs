//! Compiled match expressions.
//!
//! A [`Matcher`] is a [`MatchSpec`] with its regular expressions compiled, its status classes
//! turned into ranges and its field names resolved, so evaluating it against an event does no
//! parsing. A condition on a field the event does not carry is false, except `exists: false`.

use regex::Regex;

use crate::event::{ApiEvent, Field};
use crate::schema::{MatchSpec, NumCond, TextCond};

/// A compiled match expression: holds when every condition holds.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    conditions: Vec<(Field, Condition)>,
    any: Vec<Matcher>,
    not: Option<Box<Matcher>>,
}

#[derive(Debug, Clone)]
enum Condition {
    Text(Vec<TextTest>),
    Number(Vec<NumTest>),
}

#[derive(Debug, Clone)]
enum TextTest {
    OneOf {
        values: Vec<String>,
        ignore_case: bool,
    },
    Prefix {
        values: Vec<String>,
        ignore_case: bool,
    },
    Suffix {
        values: Vec<String>,
        ignore_case: bool,
    },
    Contains {
        values: Vec<String>,
        ignore_case: bool,
    },
    Regex(Regex),
    Exists(bool),
}

#[derive(Debug, Clone)]
enum NumTest {
    OneOf(Vec<f64>),
    Range {
        min: f64,
        min_inclusive: bool,
        max: f64,
        max_inclusive: bool,
    },
    Exists(bool),
}

/// A match expression that cannot be compiled, with the path of the condition at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchError {
    /// Dotted path to the condition, such as `match.any[1].status`.
    pub path: String,
    /// The problem, naming the value.
    pub message: String,
    /// A correct example of the condition.
    pub example: &'static str,
}

impl Matcher {
    /// Compiles a match expression; `path` names where it sits in the rule, for errors.
    pub fn compile(spec: &MatchSpec, path: &str) -> Result<Matcher, MatchError> {
        let mut conditions = Vec::new();
        let text_fields = [
            (Field::Service, &spec.service),
            (Field::Method, &spec.method),
            (Field::Route, &spec.route),
            (Field::Path, &spec.path),
            (Field::Query, &spec.query),
            (Field::Client, &spec.client),
            (Field::Principal, &spec.principal),
            (Field::UserAgent, &spec.user_agent),
            (Field::Referer, &spec.referer),
            (Field::TraceId, &spec.trace_id),
            (Field::Body, &spec.body),
        ];
        for (field, cond) in text_fields {
            if let Some(cond) = cond {
                let at = format!("{path}.{field}");
                conditions.push((field, Condition::Text(compile_text(cond, &at)?)));
            }
        }
        let number_fields = [
            (Field::Status, &spec.status),
            (Field::LatencyMs, &spec.latency_ms),
            (Field::RequestBytes, &spec.request_bytes),
            (Field::ResponseBytes, &spec.response_bytes),
        ];
        for (field, cond) in number_fields {
            if let Some(cond) = cond {
                let at = format!("{path}.{field}");
                conditions.push((field, Condition::Number(compile_number(cond, &at)?)));
            }
        }
        for (name, cond) in &spec.labels {
            let at = format!("{path}.labels.{name}");
            conditions.push((
                Field::Label(name.clone()),
                Condition::Text(compile_text(cond, &at)?),
            ));
        }
        for (name, cond) in &spec.headers {
            let at = format!("{path}.headers.{name}");
            let field = Field::Header(name.to_ascii_lowercase());
            conditions.push((field, Condition::Text(compile_text(cond, &at)?)));
        }

        let any = spec
            .any
            .iter()
            .enumerate()
            .map(|(i, sub)| Matcher::compile(sub, &format!("{path}.any[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let not = match &spec.not {
            Some(sub) => Some(Box::new(Matcher::compile(sub, &format!("{path}.not"))?)),
            None => None,
        };
        Ok(Matcher {
            conditions,
            any,
            not,
        })
    }

    /// Returns true when the event satisfies the expression.
    pub fn matches(&self, event: &ApiEvent) -> bool {
        let conditions_hold = self.conditions.iter().all(|(field, cond)| match cond {
            Condition::Text(tests) => {
                let value = event.text(field);
                tests.iter().all(|test| test.holds(value.as_deref()))
            }
            Condition::Number(tests) => {
                let value = event.number(field);
                tests.iter().all(|test| test.holds(value))
            }
        });
        conditions_hold
            && (self.any.is_empty() || self.any.iter().any(|m| m.matches(event)))
            && self.not.as_ref().is_none_or(|m| !m.matches(event))
    }

    /// Returns true for the expression that matches every event.
    pub fn is_everything(&self) -> bool {
        self.conditions.is_empty() && self.any.is_empty() && self.not.is_none()
    }

    /// Adds every field the expression reads to `fields`.
    pub fn collect_fields(&self, fields: &mut Vec<Field>) {
        fields.extend(self.conditions.iter().map(|(f, _)| f.clone()));
        for sub in &self.any {
            sub.collect_fields(fields);
        }
        if let Some(sub) = &self.not {
            sub.collect_fields(fields);
        }
    }
}

const TEXT_EXAMPLE: &str = "path: {prefix: [/admin, /wp-admin], ignore_case: true}";
const NUMBER_EXAMPLE: &str = "status: {gte: 500, lt: 600}   # or: status: 5xx, status: [401, 403]";

fn compile_text(cond: &TextCond, path: &str) -> Result<Vec<TextTest>, MatchError> {
    let ops = match cond {
        TextCond::Equals(v) => {
            return Ok(vec![TextTest::OneOf {
                values: vec![v.clone()],
                ignore_case: false,
            }])
        }
        TextCond::In(values) => {
            return Ok(vec![TextTest::OneOf {
                values: values.clone(),
                ignore_case: false,
            }])
        }
        TextCond::Ops(ops) => ops,
    };
    let ignore_case = ops.ignore_case;
    let fold = |values: Vec<String>| -> Vec<String> {
        if ignore_case {
            values.into_iter().map(|v| v.to_ascii_lowercase()).collect()
        } else {
            values
        }
    };

    let mut tests = Vec::new();
    if let Some(v) = &ops.equals {
        tests.push(TextTest::OneOf {
            values: fold(vec![v.clone()]),
            ignore_case,
        });
    }
    if let Some(values) = &ops.one_of {
        tests.push(TextTest::OneOf {
            values: fold(values.clone()),
            ignore_case,
        });
    }
    if let Some(v) = &ops.prefix {
        tests.push(TextTest::Prefix {
            values: fold(v.clone().into_vec()),
            ignore_case,
        });
    }
    if let Some(v) = &ops.suffix {
        tests.push(TextTest::Suffix {
            values: fold(v.clone().into_vec()),
            ignore_case,
        });
    }
    if let Some(v) = &ops.contains {
        tests.push(TextTest::Contains {
            values: fold(v.clone().into_vec()),
            ignore_case,
        });
    }
    if let Some(pattern) = &ops.regex {
        let regex = Regex::new(pattern).map_err(|err| MatchError {
            path: format!("{path}.regex"),
            message: format!("invalid regular expression `{pattern}`: {err}"),
            example: "path: {regex: '(?i)^/(wp-admin|administrator)/'}",
        })?;
        tests.push(TextTest::Regex(regex));
    }
    if let Some(exists) = ops.exists {
        tests.push(TextTest::Exists(exists));
    }
    if tests.is_empty() {
        return Err(MatchError {
            path: path.to_string(),
            message: "condition has no operator".to_string(),
            example: TEXT_EXAMPLE,
        });
    }
    Ok(tests)
}

fn compile_number(cond: &NumCond, path: &str) -> Result<Vec<NumTest>, MatchError> {
    let ops = match cond {
        NumCond::Equals(v) => return Ok(vec![NumTest::OneOf(vec![*v])]),
        NumCond::In(values) => return Ok(vec![NumTest::OneOf(values.clone())]),
        NumCond::Class(class) => return parse_status_class(class, path).map(|t| vec![t]),
        NumCond::Ops(ops) => ops,
    };
    let mut tests = Vec::new();
    if let Some(v) = ops.equals {
        tests.push(NumTest::OneOf(vec![v]));
    }
    if let Some(values) = &ops.one_of {
        tests.push(NumTest::OneOf(values.clone()));
    }
    let bounds = [(ops.gt, false), (ops.gte, true)];
    for (min, min_inclusive) in bounds
        .into_iter()
        .filter_map(|(v, inc)| v.map(|v| (v, inc)))
    {
        tests.push(NumTest::Range {
            min,
            min_inclusive,
            max: f64::INFINITY,
            max_inclusive: true,
        });
    }
    let bounds = [(ops.lt, false), (ops.lte, true)];
    for (max, max_inclusive) in bounds
        .into_iter()
        .filter_map(|(v, inc)| v.map(|v| (v, inc)))
    {
        tests.push(NumTest::Range {
            min: f64::NEG_INFINITY,
            min_inclusive: true,
            max,
            max_inclusive,
        });
    }
    if let Some(exists) = ops.exists {
        tests.push(NumTest::Exists(exists));
    }
    if tests.is_empty() {
        return Err(MatchError {
            path: path.to_string(),
            message: "condition has no operator".to_string(),
            example: NUMBER_EXAMPLE,
        });
    }
    Ok(tests)
}

fn parse_status_class(class: &str, path: &str) -> Result<NumTest, MatchError> {
    let bytes = class.as_bytes();
    let valid = bytes.len() == 3
        && (b'1'..=b'5').contains(&bytes[0])
        && bytes[1..].iter().all(|b| b.eq_ignore_ascii_case(&b'x'));
    if !valid {
        return Err(MatchError {
            path: path.to_string(),
            message: format!("invalid number or status class `{class}`"),
            example: NUMBER_EXAMPLE,
        });
    }
    let min = f64::from(bytes[0] - b'0') * 100.0;
    Ok(NumTest::Range {
        min,
        min_inclusive: true,
        max: min + 100.0,
        max_inclusive: false,
    })
}

impl TextTest {
    fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return matches!(self, TextTest::Exists(false));
        };
        let cased = |ignore_case: bool| -> std::borrow::Cow<'_, str> {
            if ignore_case {
                std::borrow::Cow::Owned(value.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(value)
            }
        };
        match self {
            TextTest::OneOf {
                values,
                ignore_case,
            } => {
                let v = cased(*ignore_case);
                values.iter().any(|x| *x == *v)
            }
            TextTest::Prefix {
                values,
                ignore_case,
            } => {
                let v = cased(*ignore_case);
                values.iter().any(|x| v.starts_with(x.as_str()))
            }
            TextTest::Suffix {
                values,
                ignore_case,
            } => {
                let v = cased(*ignore_case);
                values.iter().any(|x| v.ends_with(x.as_str()))
            }
            TextTest::Contains {
                values,
                ignore_case,
            } => {
                let v = cased(*ignore_case);
                values.iter().any(|x| v.contains(x.as_str()))
            }
            TextTest::Regex(regex) => regex.is_match(value),
            TextTest::Exists(exists) => *exists,
        }
    }
}

impl NumTest {
    fn holds(&self, value: Option<f64>) -> bool {
        let Some(value) = value else {
            return matches!(self, NumTest::Exists(false));
        };
        match self {
            NumTest::OneOf(values) => values.contains(&value),
            NumTest::Range {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                let above = if *min_inclusive {
                    value >= *min
                } else {
                    value > *min
                };
                let below = if *max_inclusive {
                    value <= *max
                } else {
                    value < *max
                };
                above && below
            }
            NumTest::Exists(exists) => *exists,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(yaml: &str) -> Matcher {
        let spec: MatchSpec = serde_norway::from_str(yaml).unwrap();
        Matcher::compile(&spec, "match").unwrap()
    }

    fn event(method: &str, path: &str, status: u16) -> ApiEvent {
        ApiEvent {
            method: method.into(),
            path: path.into(),
            status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn status_class_and_list() {
        let m = matcher("status: 5xx");
        assert!(m.matches(&event("GET", "/", 500)));
        assert!(m.matches(&event("GET", "/", 599)));
        assert!(!m.matches(&event("GET", "/", 600)));
        assert!(!m.matches(&event("GET", "/", 499)));
        let m = matcher("status: [401, 403]");
        assert!(m.matches(&event("GET", "/", 403)));
        assert!(!m.matches(&event("GET", "/", 404)));
    }

    #[test]
    fn text_operators_and_case() {
        let m = matcher("{method: POST, path: {prefix: [/Login, /join], ignore_case: true}}");
        assert!(m.matches(&event("POST", "/login_form", 200)));
        assert!(m.matches(&event("POST", "/JOIN_form", 200)));
        assert!(!m.matches(&event("GET", "/login_form", 200)));
        assert!(!m.matches(&event("POST", "/about", 200)));
    }

    #[test]
    fn any_and_not() {
        let m = matcher("{any: [{status: 401}, {status: 403}], not: {path: {suffix: .png}}}");
        assert!(m.matches(&event("GET", "/a", 401)));
        assert!(!m.matches(&event("GET", "/a.png", 401)));
        assert!(!m.matches(&event("GET", "/a", 200)));
    }

    #[test]
    fn missing_field_fails_except_exists_false() {
        let m = matcher("user_agent: {contains: curl}");
        assert!(!m.matches(&event("GET", "/", 200)));
        let m = matcher("user_agent: {exists: false}");
        assert!(m.matches(&event("GET", "/", 200)));
        let m = matcher("latency_ms: {gte: 100}");
        assert!(!m.matches(&event("GET", "/", 200)));
    }

    #[test]
    fn compile_rejects_bad_class_and_regex() {
        let spec: MatchSpec = serde_norway::from_str("status: 6xx").unwrap();
        let err = Matcher::compile(&spec, "match").unwrap_err();
        assert_eq!(err.path, "match.status");
        assert_eq!(err.message, "invalid number or status class `6xx`");
        let spec: MatchSpec = serde_norway::from_str("any: [{path: {regex: '(['}}]").unwrap();
        let err = Matcher::compile(&spec, "match").unwrap_err();
        assert_eq!(err.path, "match.any[0].path.regex");
        let spec: MatchSpec = serde_norway::from_str("path: {}").unwrap();
        let err = Matcher::compile(&spec, "match").unwrap_err();
        assert_eq!(err.message, "condition has no operator");
    }
}
