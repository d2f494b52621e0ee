//! Attack signatures: regular expressions over URL-decoded request fields.
//!
//! Attackers encode payloads so that a plain substring search misses them: `%27%20OR%201=1`,
//! double encoding (`%2527`), `+` for spaces in a query, HTML character references
//! (`&#60;script&#62;`) and JavaScript escapes (`\u003c`, `\x3c`). [`decode`] first undoes
//! percent-encoding until the text stops changing, at most three rounds so a hostile value
//! cannot make it loop long, and turns `+` into a space. It then replaces character references
//! and escapes once and drops NUL bytes, and only then are the patterns run. All patterns of a
//! rule run as one [`RegexSet`] pass per field.

use std::borrow::Cow;

use regex::{Regex, RegexSet};

use crate::event::{ApiEvent, Field};

/// The maximum number of percent-decoding rounds applied to a value.
const MAX_DECODE_ROUNDS: usize = 3;

/// Returns the value with percent-encoding undone (repeatedly), `+` as space, HTML character
/// references and `\u`/`\x` escapes replaced, and NUL removed.
pub fn decode(value: &str) -> Cow<'_, str> {
    if !value
        .bytes()
        .any(|b| matches!(b, b'%' | b'+' | b'&' | b'\\' | 0))
    {
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
    if text.contains('&') || text.contains('\\') {
        text = decode_references(&text);
    }
    text.retain(|c| c != '\0');
    Cow::Owned(text)
}

/// Replaces HTML character references (`&#60;`, `&#x3c;`, `&lt;` and the other four XML
/// names) and JavaScript escapes (`\u003c`, `\x3c`) with their characters. The semicolon of a
/// numeric reference is optional and leading zeros are allowed, as browsers accept both.
/// Anything that does not parse, or names no valid character, is kept as written.
fn decode_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['&', '\\']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        match reference(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                let c = rest.chars().next().expect("the match is a character");
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses one reference or escape at the start of `text`: the character and the bytes used.
fn reference(text: &str) -> Option<(char, usize)> {
    let bytes = text.as_bytes();
    let hex_run = |from: usize, max: usize| {
        bytes[from..]
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_hexdigit())
            .count()
    };
    let (value, used) = match bytes {
        [b'\\', b'u', ..] if hex_run(2, 4) == 4 => (u32::from_str_radix(&text[2..6], 16).ok()?, 6),
        [b'\\', b'x', ..] if hex_run(2, 2) == 2 => (u32::from_str_radix(&text[2..4], 16).ok()?, 4),
        [b'&', b'#', b'x' | b'X', ..] => {
            let digits = hex_run(3, 8);
            let value = u32::from_str_radix(&text[3..3 + digits], 16).ok()?;
            (
                value,
                3 + digits + usize::from(bytes.get(3 + digits) == Some(&b';')),
            )
        }
        [b'&', b'#', ..] => {
            let digits = bytes[2..]
                .iter()
                .take(10)
                .take_while(|b| b.is_ascii_digit())
                .count();
            let value = text[2..2 + digits].parse().ok()?;
            (
                value,
                2 + digits + usize::from(bytes.get(2 + digits) == Some(&b';')),
            )
        }
        [b'&', ..] => {
            let names = [
                ("&lt;", '<'),
                ("&gt;", '>'),
                ("&quot;", '"'),
                ("&apos;", '\''),
                ("&amp;", '&'),
            ];
            let (name, c) = names.iter().find(|(name, _)| {
                text.get(..name.len())
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
            })?;
            return Some((*c, name.len()));
        }
        _ => return None,
    };
    char::from_u32(value).map(|c| (c, used))
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
    fn decode_replaces_references_and_escapes() {
        assert_eq!(decode("&#60;script&#62;"), "<script>");
        assert_eq!(decode("&#x3C;svg&#X3e;"), "<svg>");
        assert_eq!(decode("&#0000060script"), "<script");
        assert_eq!(decode("&lt;img src=x&GT;"), "<img src=x>");
        assert_eq!(decode("$\\u007Bjndi:ldap"), "${jndi:ldap");
        assert_eq!(decode("\\x3cscript"), "<script");
        assert_eq!(decode("%26%2360%3Bscript"), "<script");
        assert_eq!(
            decode("a & b &#; &#xZZ; \\u12 &bogus;"),
            "a & b &#; &#xZZ; \\u12 &bogus;"
        );
        assert_eq!(decode("&#1114112;"), "&#1114112;");
        assert_eq!(decode("naïve & café"), "naïve & café");
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
