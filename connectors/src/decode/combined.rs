//! The Apache/nginx combined and common log formats.
//!
//! A combined line is `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`, and a common
//! line stops after `%b`:
//!
//! ```text
//! 83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a/b.png HTTP/1.1" 200 203023 "-" "Mozilla/5.0"
//! ```
//!
//! The parser works on bytes, without regular expressions, and copies only the fields it
//! keeps. It accepts what real logs contain:
//!
//! - IPv6 clients, and `-` for a missing size, user, referer or user agent;
//! - quotes and backslashes escaped as `\"` and `\\`;
//! - any UTC offset, such as `+0530` or `-0700`;
//! - bytes that are not UTF-8, which are replaced with U+FFFD;
//! - absolute-URI request targets, and HTTP/0.9 request lines without a version;
//! - more fields after the user agent, which are ignored.
//!
//! Scanners and broken clients fill the request line with things that are not HTTP: `-`,
//! an empty string, or the escaped bytes of a TLS handshake sent to a plain-HTTP port. Such a
//! line still becomes an event, with empty method, path and route and `problem` naming the
//! request line, so that rules can count it per client. A referer or user agent whose closing
//! quote is missing is kept too. Its value runs to the end of the line, and `problem` names
//! it. Any other line that is cut short, or whose time, status or response size is invalid,
//! is an error.

use std::borrow::Cow;

use feedloop_rules::{route, ApiEvent};

use super::{quote, split_target, DecodeError};

/// Milliseconds per second, minute and hour.
const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// The layout of `%t`, for error messages.
const TIME_LAYOUT: &str = "[dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]";

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Decodes one combined or common log line, already trimmed of surrounding whitespace.
pub(crate) fn decode(line: &[u8]) -> Result<ApiEvent, DecodeError> {
    if line.is_empty() {
        return Err(DecodeError::new(
            "empty record: expected a combined or common log line",
        ));
    }
    let mut cursor = Cursor {
        bytes: line,
        pos: 0,
    };

    let (client, principal) = read_client_and_user(&mut cursor)?;
    let time_ms = read_time(&mut cursor)?;
    let request = read_request(&mut cursor)?;
    let status = read_status(&mut cursor)?;
    let response_bytes = read_response_size(&mut cursor, status)?;
    let mut problem = request.problem;

    // The referer and user agent are optional, so a common log line ends here.
    let referer = read_header(&mut cursor, "referer", &mut problem);
    let user_agent = read_header(&mut cursor, "user agent", &mut problem);

    let route = route::template(&request.path);
    Ok(ApiEvent {
        time_ms,
        method: request.method,
        route,
        path: request.path,
        query: request.query,
        status: Some(status),
        response_bytes,
        client,
        principal,
        user_agent,
        referer,
        problem,
        ..ApiEvent::default()
    })
}

/// A position in a line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Returns the bytes up to the next space or the end of the line.
    fn token(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// Reads a quoted field whose opening quote is at the cursor.
    ///
    /// The field ends at the first `"` that is not escaped by a backslash and is followed by a
    /// space or the end of the line. Without one, the field runs to the end of the line and
    /// `closed` is false.
    fn quoted(&mut self) -> Quoted<'a> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        let start = self.pos + 1;
        let bytes = self.bytes;
        let mut escaped = false;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b'"' if bytes.get(i + 1).is_none_or(|&b| b == b' ') => {
                    self.pos = i + 1;
                    return Quoted {
                        raw: &bytes[start..i],
                        escaped,
                        closed: true,
                    };
                }
                _ => i += 1,
            }
        }
        self.pos = bytes.len();
        Quoted {
            raw: &bytes[start..],
            escaped,
            closed: false,
        }
    }
}

/// The content of a quoted field, still escaped.
struct Quoted<'a> {
    raw: &'a [u8],
    escaped: bool,
    closed: bool,
}

impl<'a> Quoted<'a> {
    /// Returns the content with `\"` and `\\` unescaped. Other escapes, such as Apache's
    /// `\x16` for a byte that is not printable, are kept as they are.
    fn unescape(&self) -> Cow<'a, [u8]> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut bytes = self.raw.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            if b == b'\\' {
                if let Some(next @ (b'"' | b'\\')) = bytes.peek().copied() {
                    out.push(next);
                    bytes.next();
                    continue;
                }
            }
            out.push(b);
        }
        Cow::Owned(out)
    }
}

/// Returns the bytes as text, with invalid UTF-8 replaced by U+FFFD.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    // On a 119-byte ASCII user agent, `from_utf8` took 13 ns and `from_utf8_lossy` 92 ns
    // (Rust 1.95, x86-64, release build), and most lines are valid UTF-8.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn lossy(bytes: &[u8]) -> String {
    text(bytes).into_owned()
}

/// Reads `%h %l %u ` and returns the client and the principal.
///
/// The user runs up to the ` [` that opens the time, because a user name sent in basic
/// authentication can contain spaces.
fn read_client_and_user(cursor: &mut Cursor) -> Result<(String, Option<String>), DecodeError> {
    let client = cursor.token();
    cursor.skip_spaces();
    let _identity = cursor.token();
    cursor.skip_spaces();

    let rest = cursor.rest();
    let time_start = if rest.first() == Some(&b'[') {
        Some(0)
    } else {
        rest.windows(2)
            .position(|pair| pair == b" [")
            .map(|space| space + 1)
    };
    let Some(time_start) = time_start else {
        return Err(DecodeError::new(format!(
            "missing time in record {}: expected client, identity and user followed by \
             {TIME_LAYOUT}",
            quote(cursor.bytes)
        )));
    };
    let user = rest[..time_start].trim_ascii_end();
    cursor.pos += time_start;

    let principal = match user {
        b"" | b"-" | b"\"\"" => None,
        user => Some(lossy(user)),
    };
    Ok((lossy(client), principal))
}

/// Reads `[17/May/2015:10:05:03 +0000]` at the cursor and returns UTC milliseconds.
fn read_time(cursor: &mut Cursor) -> Result<i64, DecodeError> {
    let rest = cursor.rest();
    let Some(len) = rest.iter().position(|&b| b == b']') else {
        return Err(DecodeError::new(format!(
            "truncated time {}: expected {TIME_LAYOUT}",
            quote(rest)
        )));
    };
    let field = &rest[..=len];
    cursor.pos += len + 1;

    parse_time(&field[1..len])
        .map_err(|reason| DecodeError::new(format!("invalid time {}: {reason}", quote(field))))
}

/// Parses `dd/Mon/yyyy:hh:mm:ss +hhmm` into UTC milliseconds, or returns what is wrong.
pub(super) fn parse_time(text: &[u8]) -> Result<i64, String> {
    let layout = || format!("expected {TIME_LAYOUT}");
    let separators_ok = text.len() == 26
        && text[2] == b'/'
        && text[6] == b'/'
        && text[11] == b':'
        && text[14] == b':'
        && text[17] == b':'
        && text[20] == b' ';
    if !separators_ok {
        return Err(layout());
    }

    let month_name = &text[3..6];
    let Some(month) = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))
    else {
        return Err(format!(
            "invalid month {}, expected Jan to Dec",
            quote(month_name)
        ));
    };
    let (Some(day), Some(year), Some(hour), Some(minute), Some(second)) = (
        digits(&text[0..2]),
        digits(&text[7..11]),
        digits(&text[12..14]),
        digits(&text[15..17]),
        digits(&text[18..20]),
    ) else {
        return Err(layout());
    };
    let offset_ms = parse_offset(&text[21..26])?;

    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32 + 1, day)
        .ok_or_else(|| format!("no such date {}", quote(&text[0..11])))?;
    let time = date
        .and_hms_opt(hour, minute, second)
        .ok_or_else(|| format!("invalid time of day {}", quote(&text[12..20])))?;
    Ok(time.and_utc().timestamp_millis() - offset_ms)
}

/// Parses a UTC offset `+hhmm` or `-hhmm` into milliseconds east of UTC.
fn parse_offset(text: &[u8]) -> Result<i64, String> {
    let invalid = || {
        format!(
            "invalid UTC offset {}, expected +hhmm or -hhmm",
            quote(text)
        )
    };
    let sign = match text[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(invalid()),
    };
    let (Some(hours), Some(minutes)) = (digits(&text[1..3]), digits(&text[3..5])) else {
        return Err(invalid());
    };
    if hours > 23 || minutes > 59 {
        return Err(invalid());
    }
    Ok(sign * (hours as i64 * HOUR_MS + minutes as i64 * MINUTE_MS))
}

/// Parses a short run of ASCII digits, or returns `None` when a byte is not a digit.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// A parsed request line, or an empty one with the reason in `problem`.
struct Request {
    method: String,
    path: String,
    query: Option<String>,
    problem: Option<String>,
}

fn read_request(cursor: &mut Cursor) -> Result<Request, DecodeError> {
    cursor.skip_spaces();
    match cursor.peek() {
        Some(b'"') => {}
        Some(_) => {
            let field = quote(cursor.token());
            return Err(DecodeError::new(format!(
                "invalid request line {field}: expected a quoted request line \
                 such as \"GET / HTTP/1.1\""
            )));
        }
        None => {
            return Err(DecodeError::new(
                "truncated record after the time: expected a quoted request line, status and size",
            ))
        }
    }

    let quoted = cursor.quoted();
    if !quoted.closed {
        return Err(DecodeError::new(format!(
            "unterminated request line {}: the record is truncated or a quote is not escaped",
            quote(quoted.raw)
        )));
    }
    let line = quoted.unescape();
    Ok(parse_request_line(&line))
}

/// Splits `METHOD TARGET HTTP/x.y`, or `METHOD TARGET` from HTTP/0.9, into an event's method,
/// path and query.
///
/// A target with spaces in it is kept whole, because a raw attack payload such as
/// `/?id=1 OR 1=1` is what signature rules look for.
fn parse_request_line(line: &[u8]) -> Request {
    let trimmed = line.trim_ascii();
    let (method, rest) = match trimmed.iter().position(|&b| b == b' ') {
        Some(space) => (&trimmed[..space], trimmed[space..].trim_ascii_start()),
        None => (trimmed, &b""[..]),
    };
    let target = match rest.iter().rposition(|&b| b == b' ') {
        Some(space) if rest[space + 1..].starts_with(b"HTTP/") => rest[..space].trim_ascii_end(),
        _ if rest.starts_with(b"HTTP/") => b"",
        _ => rest,
    };

    if !is_method(method) || target.is_empty() {
        return Request {
            method: String::new(),
            path: String::new(),
            query: None,
            problem: Some(format!(
                "malformed request line {}: expected METHOD TARGET HTTP/VERSION",
                quote(line)
            )),
        };
    }

    let (path, query) = split_target(&text(target));
    Request {
        method: text(method).to_ascii_uppercase(),
        path,
        query,
        problem: None,
    }
}

/// Returns true for a plausible method name: a letter, then letters, digits, `-` or `_`
/// (WebDAV has `VERSION-CONTROL`).
fn is_method(token: &[u8]) -> bool {
    let Some((first, rest)) = token.split_first() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn read_status(cursor: &mut Cursor) -> Result<u16, DecodeError> {
    cursor.skip_spaces();
    if cursor.at_end() {
        return Err(DecodeError::new(
            "truncated record after the request line: expected a status and a response size",
        ));
    }
    let token = cursor.token();
    let status = match token {
        [b'1'..=b'9', b'0'..=b'9', b'0'..=b'9'] => digits(token),
        _ => None,
    };
    status.map(|s| s as u16).ok_or_else(|| {
        DecodeError::new(format!(
            "invalid status {}: expected a three-digit HTTP status code",
            quote(token)
        ))
    })
}

fn read_response_size(cursor: &mut Cursor, status: u16) -> Result<Option<u64>, DecodeError> {
    cursor.skip_spaces();
    if cursor.at_end() {
        return Err(DecodeError::new(format!(
            "truncated record after status {status}: expected a response size in bytes or \"-\""
        )));
    }
    let token = cursor.token();
    if token == b"-" {
        return Ok(None);
    }
    let size = std::str::from_utf8(token)
        .ok()
        .filter(|text| text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok());
    match size {
        Some(size) => Ok(Some(size)),
        None => Err(DecodeError::new(format!(
            "invalid response size {}: expected a number of bytes or \"-\"",
            quote(token)
        ))),
    }
}

/// Reads an optional quoted header value, such as the referer. A `-` or a missing field reads
/// as `None`. An unclosed quote keeps the rest of the line and records the problem, unless
/// the request line already did.
fn read_header(cursor: &mut Cursor, name: &str, problem: &mut Option<String>) -> Option<String> {
    cursor.skip_spaces();
    if cursor.peek() != Some(b'"') {
        return None;
    }

    let quoted = cursor.quoted();
    if !quoted.closed && problem.is_none() {
        *problem = Some(format!(
            "unterminated {name} {}: the record may be truncated",
            quote(quoted.raw)
        ));
    }
    match quoted.raw {
        b"-" => None,
        _ => Some(lossy(&quoted.unescape())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, Format};

    const FIRST_ELASTIC_LINE: &str = concat!(
        r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "#,
        r#""GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" "#,
        r#"200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "#,
        r#""Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 "#,
        r#"(KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36""#
    );

    /// 2015-05-17T10:05:03Z in milliseconds since the Unix epoch.
    const MAY_17_10_05_03: i64 = 1_431_857_103_000;

    fn decode_ok(line: &str) -> ApiEvent {
        match Decoder::new(Format::Combined).decode(line.as_bytes()) {
            Ok(event) => event,
            Err(err) => panic!("decoding {line:?} failed: {err}"),
        }
    }

    fn decode_err(line: &[u8]) -> String {
        match Decoder::new(Format::Combined).decode(line) {
            Ok(event) => panic!(
                "decoding {:?} succeeded: {event:?}",
                String::from_utf8_lossy(line)
            ),
            Err(err) => err.to_string(),
        }
    }

    fn line_with_request(request: &str) -> String {
        format!(r#"10.0.0.1 - - [17/May/2015:10:05:03 +0000] "{request}" 400 226 "-" "-""#)
    }

    #[test]
    fn combined_line_fields() {
        let event = decode_ok(FIRST_ELASTIC_LINE);
        assert_eq!(event.time_ms, MAY_17_10_05_03);
        assert_eq!(event.client, "83.149.9.216");
        assert_eq!(event.principal, None);
        assert_eq!(event.method, "GET");
        assert_eq!(
            event.path,
            "/presentations/logstash-monitorama-2013/images/kibana-search.png"
        );
        assert_eq!(event.route, event.path);
        assert_eq!(event.query, None);
        assert_eq!(event.status, Some(200));
        assert_eq!(event.response_bytes, Some(203023));
        assert_eq!(
            event.referer.as_deref(),
            Some("http://semicomplete.com/presentations/logstash-monitorama-2013/")
        );
        assert_eq!(
            event.user_agent.as_deref(),
            Some(concat!(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 ",
                "(KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"
            ))
        );
        assert_eq!(event.problem, None);
        assert_eq!(event.service, "");
        assert_eq!(event.latency_ms, None);
        assert_eq!(event.request_bytes, None);
    }

    #[test]
    fn common_line_fields() {
        let event = decode_ok(
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(event.client, "127.0.0.1");
        assert_eq!(event.principal.as_deref(), Some("frank"));
        assert_eq!(event.time_ms, 971_211_336_000);
        assert_eq!(event.path, "/apache_pb.gif");
        assert_eq!(event.status, Some(200));
        assert_eq!(event.response_bytes, Some(2326));
        assert_eq!(event.referer, None);
        assert_eq!(event.user_agent, None);
        assert_eq!(event.problem, None);
    }

    #[test]
    fn query_route_and_ipv6() {
        let line = r#"2001:41d0:8:f69::1 - alice [17/May/2015:10:05:03 +0000] "post /users/42/orders?page=2&q=%27 HTTP/1.1" 201 - "-" "curl/7.35.0""#;
        let event = decode_ok(line);
        assert_eq!(event.client, "2001:41d0:8:f69::1");
        assert_eq!(event.principal.as_deref(), Some("alice"));
        assert_eq!(event.method, "POST");
        assert_eq!(event.path, "/users/42/orders");
        assert_eq!(event.route, "/users/{id}/orders");
        assert_eq!(event.query.as_deref(), Some("page=2&q=%27"));
        assert_eq!(event.status, Some(201));
        assert_eq!(event.response_bytes, None);
        assert_eq!(event.referer, None);
        assert_eq!(event.user_agent.as_deref(), Some("curl/7.35.0"));
    }

    #[test]
    fn utc_offsets_convert_to_utc() {
        let cases = [
            ("17/May/2015:10:05:03 +0000", MAY_17_10_05_03),
            ("17/May/2015:11:05:03 +0100", MAY_17_10_05_03),
            ("17/May/2015:03:05:03 -0700", MAY_17_10_05_03),
            ("17/May/2015:15:35:03 +0530", MAY_17_10_05_03),
            ("16/May/2015:23:35:03 -1030", MAY_17_10_05_03),
            ("01/Jan/1970:00:00:00 +0000", 0),
            ("29/Feb/2016:00:00:00 +0000", 1_456_704_000_000),
            ("17/may/2015:10:05:03 +0000", MAY_17_10_05_03),
        ];
        for (time, expected) in cases {
            let line = format!(r#"1.2.3.4 - - [{time}] "GET / HTTP/1.1" 200 1"#);
            assert_eq!(decode_ok(&line).time_ms, expected, "time {time}");
        }
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a\"b\\c?x=\"1\" HTTP/1.1" 200 5 "http://r/\"q\"" "Mozilla \"quoted\" \\o/""#;
        let event = decode_ok(line);
        assert_eq!(event.path, r#"/a"b\c"#);
        assert_eq!(event.query.as_deref(), Some(r#"x="1""#));
        assert_eq!(event.referer.as_deref(), Some(r#"http://r/"q""#));
        assert_eq!(event.user_agent.as_deref(), Some(r#"Mozilla "quoted" \o/"#));
        assert_eq!(event.status, Some(200));
        assert_eq!(event.problem, None);
    }

    #[test]
    fn escaped_quote_before_closing_quote() {
        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 200 5 "-" "ends with \"""#;
        let event = decode_ok(line);
        assert_eq!(event.user_agent.as_deref(), Some(r#"ends with ""#));
        assert_eq!(event.problem, None);
    }

    #[test]
    fn trailing_spaces_fields_and_cr() {
        let base = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 200 5 "-" "ua""#;
        for suffix in [
            "   ",
            " 0.003 \"host.example\" extra",
            " 1234",
            "\t",
            "\r",
            " \r",
        ] {
            let line = format!("{base}{suffix}");
            let event = decode_ok(&line);
            assert_eq!(event.user_agent.as_deref(), Some("ua"), "suffix {suffix:?}");
            assert_eq!(event.problem, None, "suffix {suffix:?}");
        }
        let with_bom = format!("\u{FEFF}{base}\r");
        assert_eq!(decode_ok(&with_bom).client, "1.2.3.4");

        let common = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /x HTTP/1.1" 200 5    "#;
        assert_eq!(decode_ok(common).response_bytes, Some(5));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut line = b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET /caf\xe9 HTTP/1.1\" 404 5 \"-\" \"bot\xff\xfe\"".to_vec();
        let event = decode(&line).unwrap();
        assert_eq!(event.path, "/caf\u{FFFD}");
        assert_eq!(event.user_agent.as_deref(), Some("bot\u{FFFD}\u{FFFD}"));
        assert_eq!(event.problem, None);

        line[0] = 0xff;
        let event = decode(&line).unwrap();
        assert_eq!(event.client, "\u{FFFD}.2.3.4");
    }

    #[test]
    fn nul_bytes_are_kept_outside_the_time() {
        let line = b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET /a\x00b HTTP/1.1\" 400 5 \"-\" \"\x00\"";
        let event = decode(line).unwrap();
        assert_eq!(event.path, "/a\u{0}b");
        assert_eq!(event.user_agent.as_deref(), Some("\u{0}"));

        let line = b"1.2.3.4 - - [17/May/2015:10:0\x00:03 +0000] \"GET / HTTP/1.1\" 200 5";
        assert_eq!(
            decode_err(line),
            r#"invalid time "[17/May/2015:10:0\0:03 +0000]": expected [dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]"#
        );
    }

    #[test]
    fn absolute_uri_target() {
        let event = decode_ok(&line_with_request("GET http://niels.basj.es/acl_users/require_login?came_from=http%3A//niels.basj.es/join_form HTTP/1.1"));
        assert_eq!(event.method, "GET");
        assert_eq!(event.path, "/acl_users/require_login");
        assert_eq!(
            event.query.as_deref(),
            Some("came_from=http%3A//niels.basj.es/join_form")
        );
        assert_eq!(event.problem, None);

        let event = decode_ok(&line_with_request("GET http://host HTTP/1.0"));
        assert_eq!(event.path, "/");
        assert_eq!(event.query, None);
    }

    #[test]
    fn http09_and_unusual_targets() {
        let event = decode_ok(&line_with_request("GET /index.html"));
        assert_eq!(event.method, "GET");
        assert_eq!(event.path, "/index.html");
        assert_eq!(event.problem, None);

        let event = decode_ok(&line_with_request("CONNECT example.com:443 HTTP/1.1"));
        assert_eq!(event.method, "CONNECT");
        assert_eq!(event.path, "example.com:443");

        let event = decode_ok(&line_with_request("OPTIONS * HTTP/1.1"));
        assert_eq!(event.path, "*");

        let event = decode_ok(&line_with_request("GET /?id=1 OR 1=1 HTTP/1.1"));
        assert_eq!(event.path, "/");
        assert_eq!(event.query.as_deref(), Some("id=1 OR 1=1"));
        assert_eq!(event.problem, None);

        let event = decode_ok(&line_with_request("VERSION-CONTROL  /repo/42  HTTP/1.1"));
        assert_eq!(event.method, "VERSION-CONTROL");
        assert_eq!(event.path, "/repo/42");
        assert_eq!(event.route, "/repo/{id}");
    }

    #[test]
    fn malformed_request_lines_are_kept() {
        let cases = [
            (
                "-",
                r#"malformed request line "-": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                "",
                r#"malformed request line "": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                r"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                r#"malformed request line "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                "GET",
                r#"malformed request line "GET": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                "GET HTTP/1.1",
                r#"malformed request line "GET HTTP/1.1": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                "/x GET HTTP/1.1",
                r#"malformed request line "/x GET HTTP/1.1": expected METHOD TARGET HTTP/VERSION"#,
            ),
            (
                r#"\"GET / HTTP/1.1"#,
                r#"malformed request line "\"GET / HTTP/1.1": expected METHOD TARGET HTTP/VERSION"#,
            ),
        ];
        for (request, problem) in cases {
            let event = decode_ok(&line_with_request(request));
            assert_eq!(event.method, "", "request {request:?}");
            assert_eq!(event.path, "", "request {request:?}");
            assert_eq!(event.route, "", "request {request:?}");
            assert_eq!(event.query, None, "request {request:?}");
            assert_eq!(
                event.problem.as_deref(),
                Some(problem),
                "request {request:?}"
            );
            assert_eq!(event.status, Some(400), "request {request:?}");
            assert_eq!(event.time_ms, MAY_17_10_05_03, "request {request:?}");
            assert_eq!(event.client, "10.0.0.1", "request {request:?}");
        }
    }

    #[test]
    fn unclosed_user_agent_is_kept_with_problem() {
        let line = r#"46.118.127.106 - - [20/May/2015:12:05:17 +0000] "GET /x.py HTTP/1.1" 200 235 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"#;
        let event = decode_ok(line);
        assert_eq!(event.status, Some(200));
        assert_eq!(
            event.user_agent.as_deref(),
            Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html")
        );
        assert_eq!(
            event.problem.as_deref(),
            Some(
                r#"unterminated user agent "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html": the record may be truncated"#
            )
        );

        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "http://r/x"#;
        let event = decode_ok(line);
        assert_eq!(event.referer.as_deref(), Some("http://r/x"));
        assert_eq!(event.user_agent, None);
        assert_eq!(
            event.problem.as_deref(),
            Some(r#"unterminated referer "http://r/x": the record may be truncated"#)
        );
    }

    #[test]
    fn request_problem_wins_over_header_problem() {
        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "-" 400 0 "-" "open"#;
        let event = decode_ok(line);
        assert_eq!(event.user_agent.as_deref(), Some("open"));
        assert_eq!(
            event.problem.as_deref(),
            Some(r#"malformed request line "-": expected METHOD TARGET HTTP/VERSION"#)
        );
    }

    #[test]
    fn user_with_spaces_and_empty_quotes() {
        let line = r#"1.2.3.4 - john doe [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 401 5"#;
        assert_eq!(decode_ok(line).principal.as_deref(), Some("john doe"));
        let line = r#"1.2.3.4 - "" [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 401 5"#;
        assert_eq!(decode_ok(line).principal, None);
    }

    #[test]
    fn empty_and_blank_records_fail() {
        let expected = "empty record: expected a combined or common log line";
        assert_eq!(decode_err(b""), expected);
        assert_eq!(decode_err(b"     "), expected);
        assert_eq!(decode_err(b" \t \r"), expected);
        assert_eq!(decode_err(b"\xEF\xBB\xBF"), expected);
    }

    #[test]
    fn garbage_fails_with_short_message() {
        let garbage: Vec<u8> = (0..10_240u32)
            .map(|i| b"abc xyz{}\"[]\\"[(i % 13) as usize])
            .collect();
        let message = decode_err(&garbage);
        assert!(
            message.len() < 400,
            "message of {} bytes: {message}",
            message.len()
        );
        assert!(message.contains("(10240 bytes)"), "{message}");

        let letters = vec![b'x'; 10_240];
        let message = decode_err(&letters);
        assert!(
            message.starts_with("missing time in record \"xxxx"),
            "{message}"
        );
        assert!(message.ends_with(
            "... (10240 bytes): expected client, identity and user followed by [dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]"
        ), "{message}");
    }

    #[test]
    fn hostile_lines_fail_with_exact_messages() {
        let cases: [(&[u8], &str); 17] = [
            (
                b"1.2.3.4 - -",
                r#"missing time in record "1.2.3.4 - -": expected client, identity and user followed by [dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:0",
                r#"truncated time "[17/May/2015:10:0": expected [dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]"#,
            ),
            (
                b"1.2.3.4 - - [17/Mai/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[17/Mai/2015:10:05:03 +0000]": invalid month "Mai", expected Jan to Dec"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +01x0] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[17/May/2015:10:05:03 +01x0]": invalid UTC offset "+01x0", expected +hhmm or -hhmm"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 0100] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[17/May/2015:10:05:03 0100]": expected [dd/Mon/yyyy:hh:mm:ss +hhmm] such as [17/May/2015:10:05:03 +0000]"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +2400] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[17/May/2015:10:05:03 +2400]": invalid UTC offset "+2400", expected +hhmm or -hhmm"#,
            ),
            (
                b"1.2.3.4 - - [31/Feb/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[31/Feb/2015:10:05:03 +0000]": no such date "31/Feb/2015""#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:24:05:03 +0000] \"GET / HTTP/1.1\" 200 5",
                r#"invalid time "[17/May/2015:24:05:03 +0000]": invalid time of day "24:05:03""#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" abc 5",
                r#"invalid status "abc": expected a three-digit HTTP status code"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 99999 5",
                r#"invalid status "99999": expected a three-digit HTTP status code"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 099 5",
                r#"invalid status "099": expected a three-digit HTTP status code"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200",
                r#"truncated record after status 200: expected a response size in bytes or "-""#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 12a",
                r#"invalid response size "12a": expected a number of bytes or "-""#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\"",
                "truncated record after the request line: expected a status and a response size",
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] \"GET /index.html HTTP/1.1 200 5",
                r#"unterminated request line "GET /index.html HTTP/1.1 200 5": the record is truncated or a quote is not escaped"#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000] GET / HTTP/1.1 200 5",
                r#"invalid request line "GET": expected a quoted request line such as "GET / HTTP/1.1""#,
            ),
            (
                b"1.2.3.4 - - [17/May/2015:10:05:03 +0000]",
                "truncated record after the time: expected a quoted request line, status and size",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                decode_err(line),
                expected,
                "line {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn parse_request_line_keeps_raw_encoding() {
        let request = parse_request_line(b"GET /a%20b/%2e%2e/?q=%3Cscript%3E HTTP/1.1");
        assert_eq!(request.path, "/a%20b/%2e%2e/");
        assert_eq!(request.query.as_deref(), Some("q=%3Cscript%3E"));
        assert_eq!(request.problem, None);
    }
}
