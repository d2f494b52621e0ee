//! Decoders: raw records to [`ApiEvent`]s.
//!
//! A source splits its input into records (one line each, without the newline) and hands each
//! one to a [`Decoder`], which returns an event or a [`DecodeError`]. Two formats exist: the
//! Apache/nginx combined and common log formats ([`Format::Combined`]) and JSON Lines read
//! through a field mapping ([`Format::Json`]).
//!
//! A decoder never drops a record silently. A record that cannot become an event is an error,
//! which the caller turns into a dead letter. A record that is usable but partly malformed,
//! such as an access log line whose request line is not HTTP, becomes an event with `problem`
//! set, because scanners and attacks produce such lines.
//!
//! Decoding with the wrong format fails every record: a JSON log read as combined has no
//! `[time]`, and a combined log read as JSON is not an object. Use [`Format::detect`] on the
//! first non-blank record when the configuration does not name the format.

pub mod avro;
mod combined;
mod json;

use feedloop_rules::ApiEvent;

pub use json::{InvalidPointer, JsonMapping, JsonPointer, LatencyUnit, TimeFormat};

/// The UTF-8 byte order mark, which some tools write at the start of a file.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// The maximum number of characters of a value quoted in an error or problem message.
const MAX_QUOTED_CHARS: usize = 120;

/// The layout of the records a source reads.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a format is built once per source, so its size does not matter"
)]
pub enum Format {
    /// Apache/nginx combined log format,
    /// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`. Lines in the common log format
    /// (the first seven fields only) are accepted too.
    Combined,
    /// JSON Lines: one JSON object per record, read through the mapping.
    Json(JsonMapping),
}

impl Format {
    /// Guesses the format from the first non-blank record of a source.
    ///
    /// A record that starts with `{`, after any whitespace and byte order mark, selects JSON
    /// with the default mapping. Anything else, a blank record included, selects combined.
    pub fn detect(first_record: &[u8]) -> Format {
        if trim_record(first_record).first() == Some(&b'{') {
            Format::Json(JsonMapping::default())
        } else {
            Format::Combined
        }
    }
}

/// Turns records of one [`Format`] into events.
///
/// A decoder has no state between records, so one decoder can be cloned into, or shared
/// between, any number of threads.
///
/// ```
/// use feedloop_connectors::decode::{Decoder, Format};
///
/// let line = br#"10.0.0.1 - - [17/May/2015:12:05:03 +0200] "GET /users/42?x=1 HTTP/1.1" 200 512 "-" "curl/8.0""#;
/// let decoder = Decoder::new(Format::detect(line));
/// let event = decoder.decode(line).unwrap();
/// assert_eq!(event.time_ms, 1_431_857_103_000);
/// assert_eq!(event.route, "/users/{id}");
/// assert_eq!(event.query.as_deref(), Some("x=1"));
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    kind: DecoderKind,
}

#[derive(Clone, Debug)]
enum DecoderKind {
    Combined,
    /// Boxed so that the common combined decoder stays one word.
    Json(Box<json::JsonDecoder>),
}

impl Decoder {
    /// Creates a decoder for records of `format`.
    pub fn new(format: Format) -> Decoder {
        let kind = match format {
            Format::Combined => DecoderKind::Combined,
            Format::Json(mapping) => DecoderKind::Json(Box::new(json::JsonDecoder::new(mapping))),
        };
        Decoder { kind }
    }

    /// Decodes one record into an event.
    ///
    /// `record` is one line without its trailing newline. A trailing `\r`, surrounding
    /// whitespace and a leading UTF-8 byte order mark are ignored. The error names the value at
    /// fault and what was expected instead.
    pub fn decode(&self, record: &[u8]) -> Result<ApiEvent, DecodeError> {
        let record = trim_record(record);
        match &self.kind {
            DecoderKind::Combined => combined::decode(record),
            DecoderKind::Json(decoder) => decoder.decode(record),
        }
    }
}

/// A record that could not be decoded, with a lowercase message that names the value at
/// fault and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> DecodeError {
        DecodeError {
            message: message.into(),
        }
    }

    /// Returns the message, the same text that `Display` writes.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Strips a leading byte order mark and surrounding ASCII whitespace, which covers the `\r`
/// of CRLF line endings.
fn trim_record(record: &[u8]) -> &[u8] {
    let record = record.strip_prefix(BYTE_ORDER_MARK).unwrap_or(record);
    record.trim_ascii()
}

/// Splits a request target into its raw path and query.
///
/// An absolute URI (`http://host/p?q`) loses its scheme and authority, and an empty path in
/// one becomes `/`. Any other target is kept as it is, such as `*` or the `host:port` of a
/// CONNECT. An empty query counts as no query.
pub(crate) fn split_target(target: &str) -> (String, Option<String>) {
    let target = strip_scheme_and_authority(target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path = if path.is_empty() && !target.is_empty() {
        "/"
    } else {
        path
    };
    let query = query.filter(|q| !q.is_empty()).map(str::to_string);
    (path.to_string(), query)
}

/// Returns the path and query of an absolute URI, or the whole target when it is not one.
fn strip_scheme_and_authority(target: &str) -> &str {
    // Most targets are origin form, and this skips the substring search for them.
    if target.starts_with('/') {
        return target;
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    let mut scheme_chars = scheme.bytes();
    let starts_with_letter = scheme_chars.next().is_some_and(|b| b.is_ascii_alphabetic());
    let valid_scheme = starts_with_letter
        && scheme_chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !valid_scheme {
        return target;
    }

    match rest.find(['/', '?']) {
        Some(start) => &rest[start..],
        None => "/",
    }
}

/// Quotes a value for a message: invalid UTF-8 replaced, control characters and `"` escaped,
/// and text past [`MAX_QUOTED_CHARS`] cut off with its full length in bytes appended.
pub(crate) fn quote(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut quoted = String::with_capacity(text.len().min(MAX_QUOTED_CHARS) + 2);
    quoted.push('"');
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_QUOTED_CHARS) {
        if c == '"' {
            quoted.push_str("\\\"");
        } else if c.is_control() {
            quoted.extend(c.escape_debug());
        } else {
            quoted.push(c);
        }
    }
    quoted.push('"');
    if chars.next().is_some() {
        quoted.push_str(&format!("... ({} bytes)", value.len()));
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_json_after_whitespace_and_bom() {
        let json = Format::Json(JsonMapping::default());
        assert_eq!(Format::detect(b"{\"time\": 1}"), json);
        assert_eq!(Format::detect(b"  \t{\"time\": 1}"), json);
        assert_eq!(Format::detect(b"\xEF\xBB\xBF{\"time\": 1}"), json);
        assert_eq!(Format::detect(b"\xEF\xBB\xBF {}"), json);
    }

    #[test]
    fn detect_combined_otherwise() {
        let line = b"127.0.0.1 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 5";
        assert_eq!(Format::detect(line), Format::Combined);
        assert_eq!(Format::detect(b""), Format::Combined);
        assert_eq!(Format::detect(b"   "), Format::Combined);
        assert_eq!(Format::detect(b"[{\"time\": 1}]"), Format::Combined);
    }

    #[test]
    fn decoder_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone>() {}
        assert_traits::<Decoder>();
        assert_traits::<DecodeError>();
    }

    #[test]
    fn split_target_cases() {
        let cases: [(&str, &str, Option<&str>); 13] = [
            ("/", "/", None),
            ("/a/b?x=1&y=2", "/a/b", Some("x=1&y=2")),
            ("/a?", "/a", None),
            ("/a?b?c", "/a", Some("b?c")),
            ("/%2e%2e/etc/passwd", "/%2e%2e/etc/passwd", None),
            ("http://host/p?q", "/p", Some("q")),
            ("HTTP://host:8080/p/q", "/p/q", None),
            ("https://host", "/", None),
            ("https://host?q=1", "/", Some("q=1")),
            ("*", "*", None),
            ("example.com:443", "example.com:443", None),
            (
                "/redirect?to=http://evil/x",
                "/redirect",
                Some("to=http://evil/x"),
            ),
            ("", "", None),
        ];
        for (target, path, query) in cases {
            let (got_path, got_query) = split_target(target);
            assert_eq!(got_path, path, "path of {target:?}");
            assert_eq!(got_query.as_deref(), query, "query of {target:?}");
        }
    }

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote(b"GET /"), "\"GET /\"");
        assert_eq!(quote(b"a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(b"\x00\x16"), "\"\\0\\u{16}\"");
        assert_eq!(quote(b"\xff"), "\"\u{FFFD}\"");
        let long = vec![b'x'; 10_240];
        let quoted = quote(&long);
        assert!(quoted.ends_with("\"... (10240 bytes)"), "{quoted}");
        assert_eq!(
            quoted.len(),
            MAX_QUOTED_CHARS + 2 + "... (10240 bytes)".len()
        );
    }

    /// A xorshift generator, so the random cases are the same on every run.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// Checks what must hold for every event the decoders return, whatever the input.
    fn check_event(event: &ApiEvent, input: &[u8]) {
        let input = String::from_utf8_lossy(input);
        assert!(
            !event.path.contains('?'),
            "path {:?} from {input:?}",
            event.path
        );
        assert!(
            event.query.as_deref() != Some(""),
            "empty query from {input:?}"
        );
        assert!(
            event.headers.is_sorted_by(|a, b| a.0 <= b.0),
            "headers from {input:?}"
        );
        assert!(
            event.labels.is_sorted_by(|a, b| a.0 <= b.0),
            "labels from {input:?}"
        );
    }

    fn check_combined_event(event: &ApiEvent, input: &[u8]) {
        check_event(event, input);
        let input = String::from_utf8_lossy(input);
        assert!(event.status.is_some(), "no status from {input:?}");
        assert!(
            !event.method.is_empty() || event.problem.is_some(),
            "empty method without a problem from {input:?}"
        );
        assert_eq!(
            event.method,
            event.method.to_ascii_uppercase(),
            "from {input:?}"
        );
    }

    #[test]
    fn decode_random_bytes_never_panics() {
        const ALPHABET: &[u8] = b" \"\\[]{}:,/-+?.0123456789GETPOSTHTP\x00\xff\xc3\t";
        let combined = Decoder::new(Format::Combined);
        let json = Decoder::new(Format::Json(JsonMapping::default()));
        let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);

        for _ in 0..20_000 {
            let len = random.below(120);
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[random.below(ALPHABET.len())])
                .collect();
            if let Ok(event) = combined.decode(&input) {
                check_combined_event(&event, &input);
            }
            if let Ok(event) = json.decode(&input) {
                check_event(&event, &input);
            }
        }
    }

    #[test]
    fn decode_mutated_records_never_panics() {
        let line: &[u8] = br#"2001:db8::1 - bob [17/May/2015:10:05:03 +0530] "GET http://h/a/1?x=\"y\" HTTP/1.1" 200 5 "-" "ua \\ \"q\"""#;
        let record: &[u8] = br#"{"time": "2015-05-17T10:05:03Z", "path": "/a/1?b", "status": "200", "headers": {"B": ["1", 2], "a": "x"}, "labels": {"z": 1, "y": true}, "latency_ms": 1.5}"#;
        let combined = Decoder::new(Format::Combined);
        let json = Decoder::new(Format::Json(JsonMapping::default()));
        let mut random = Xorshift(0x2545_F491_4F6C_DD1D);
        let mut combined_ok = 0;
        let mut json_ok = 0;

        for _ in 0..20_000 {
            for (original, is_json) in [(line, false), (record, true)] {
                let mut input = original.to_vec();
                for _ in 0..1 + random.below(3) {
                    let at = random.below(input.len());
                    match random.below(3) {
                        0 => input[at] = random.next() as u8,
                        1 => {
                            input.remove(at);
                        }
                        _ => input.truncate(at),
                    }
                    if input.is_empty() {
                        break;
                    }
                }
                if is_json {
                    if let Ok(event) = json.decode(&input) {
                        json_ok += 1;
                        check_event(&event, &input);
                    }
                } else if let Ok(event) = combined.decode(&input) {
                    combined_ok += 1;
                    check_combined_event(&event, &input);
                }
            }
        }
        // Enough mutations must still decode for the checks above to mean something.
        assert!(
            combined_ok > 2_000,
            "only {combined_ok} mutated lines decoded"
        );
        assert!(json_ok > 1_000, "only {json_ok} mutated records decoded");
    }
}
