//! Attack signatures: regular expressions over URL-decoded request fields.
//!
//! Attackers encode payloads so that a plain substring search misses them: `%27%20OR%201=1`,
//! double encoding (`%2527`), `+` for spaces in a query. [`decode`] undoes percent-encoding
//! until the text stops changing (at most three rounds, so a hostile value cannot make it loop
//! long), turns `+` into a space and drops NUL bytes, and only then are the patterns run. All
//! patterns of a rule run as one [`RegexSet`] pass per field.

use std::borrow::Cow;

use regex::{Regex, RegexSet};

use crate::event::{ApiEvent, Field};

/// The maximum number of percent-decoding rounds applied to a value.
const MAX_DECODE_ROUNDS: usize = 3;

/// Returns the value with percent-encoding undone (repeatedly), `+` as space and NUL removed.
pub fn decode(value: &str) -> Cow<'_, str> {
    if !value.bytes().any(|b| matches!(b, b'%' | b'+' | 0)) {
        return Cow::Borrowed(value);
    }
    let mut text = value.replace('+', " ");
    for _ in 0..MAX_DECODE_ROUNDS {
        if !text.contains('%') {
            break;
        }
        let decoded = percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == text {
            break;
        }
        text = decoded;
    }
    text.retain(|c| c != '\0');
    Cow::Owned(text)
}

/// A rule's compiled patterns and the fields they search.
#[derive(Debug, Clone)]
pub struct Signature {
    fields: Vec<Field>,
    names: Vec<String>,
    set: RegexSet,
    /// The patterns one by one, to report which part of a value matched.
    regexes: Vec<Regex>,
}

/// The first pattern that matched an event, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureMatch {
    /// Index of the pattern in the rule.
    pub pattern: usize,
    /// The field whose decoded value matched.
    pub field: Field,
    /// The matched text, cut to 120 bytes.
    pub excerpt: String,
}

impl Signature {
    /// Compiles patterns; returns the index of a pattern that does not compile with its error.
    pub fn new(
        fields: Vec<Field>,
        patterns: &[(String, String)],
    ) -> Result<Signature, (usize, regex::Error)> {
        let mut regexes = Vec::with_capacity(patterns.len());
        for (i, (_, source)) in patterns.iter().enumerate() {
            regexes.push(Regex::new(source).map_err(|err| (i, err))?);
        }
        let set =
            RegexSet::new(patterns.iter().map(|(_, source)| source)).map_err(|err| (0, err))?;
        let names = patterns.iter().map(|(name, _)| name.clone()).collect();
        Ok(Signature {
            fields,
            names,
            set,
            regexes,
        })
    }

    /// Returns the pattern names in rule order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns the searched fields.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Returns the first (lowest-index) pattern that matches any field of the event.
    pub fn find(&self, event: &ApiEvent) -> Option<SignatureMatch> {
        for field in &self.fields {
            let Some(raw) = event.text(field) else {
                continue;
            };
            let text = decode(&raw);
            // Most values match nothing: a plain yes/no pass is much cheaper than collecting
            // every matching pattern, which only the rare matching value needs.
            if !self.set.is_match(&text) {
                continue;
            }
            let Some(pattern) = self.set.matches(&text).iter().next() else {
                continue;
            };
            let found = self.regexes[pattern]
                .find(&text)
                .map(|m| m.as_str())
                .unwrap_or("");
            return Some(SignatureMatch {
                pattern,
                field: field.clone(),
                excerpt: cut(found, 120).to_string(),
            });
        }
        None
    }
}

/// Returns the longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_handles_double_encoding_and_plus() {
        assert_eq!(decode("id=1%2527%20OR%201=1"), "id=1' OR 1=1");
        assert_eq!(decode("q=a+b"), "q=a b");
        assert_eq!(decode("/plain/path"), "/plain/path");
        assert_eq!(decode("%00%3Cscript%3E"), "<script>");
        assert_eq!(decode("%ZZ"), "%ZZ");
    }

    #[test]
    fn decode_stops_after_three_rounds() {
        // Four layers of encoding of `'`: three rounds leave one layer.
        assert_eq!(decode("%25252527"), "%27");
    }

    #[test]
    fn find_reports_first_pattern_and_field() {
        let patterns = vec![
            ("traversal".to_string(), r"\.\./".to_string()),
            (
                "union-select".to_string(),
                r"(?i)union\s+select".to_string(),
            ),
        ];
        let sig = Signature::new(vec![Field::Path, Field::Query], &patterns).unwrap();
        let event = ApiEvent {
            path: "/items".into(),
            query: Some("id=1%20UNION%20SELECT%20pass".into()),
            ..Default::default()
        };
        let found = sig.find(&event).unwrap();
        assert_eq!(found.pattern, 1);
        assert_eq!(found.field, Field::Query);
        assert_eq!(found.excerpt, "UNION SELECT");
        let clean = ApiEvent {
            path: "/items".into(),
            ..Default::default()
        };
        assert_eq!(sig.find(&clean), None);
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }
}
