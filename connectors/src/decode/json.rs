//! JSON Lines: one JSON object per record, read through a [`JsonMapping`].
//!
//! The default mapping reads feedloop's own field names from the top level of the object. It
//! takes a fast path that deserializes only the mapped members straight from the record,
//! borrowing strings that contain no escapes and skipping every other member. A mapping with
//! other pointers parses the whole record into a `serde_json::Value` first and then follows
//! each pointer, which allocates for every member of the record.
//!
//! Both paths hand the values they find to one conversion step, so a value that one path
//! accepts the other accepts too, with the same result and the same error. The exception is a
//! record that repeats a mapped member: the fast path rejects it, and the pointer path reads
//! the last one.
//!
//! A record that is not valid JSON gets one more try when the fault is one that access logs
//! commonly contain: nginx's `\xHH` escapes, or bytes that are not UTF-8.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use feedloop_rules::{route, ApiEvent};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{combined, quote, split_target, DecodeError};

/// Epoch numbers above this are read as milliseconds by [`TimeFormat::Auto`], and numbers up
/// to it as seconds. 10^11 seconds is in the year 5138, and 10^11 milliseconds is in 1973.
const AUTO_EPOCH_MS_ABOVE: f64 = 1e11;

/// The largest distance from the Unix epoch a time may have: 100,000,000 days, the range of an
/// ECMAScript `Date`.
const MAX_EPOCH_MS: i64 = 8_640_000_000_000_000;

/// Field mapping for JSON records: a JSON pointer for each event field, and the formats of the
/// time and latency values.
///
/// Each field names a JSON pointer (RFC 6901) into the record, such as `/request/uri`. A
/// field left out of the configuration keeps its default pointer, which is `/` followed by the
/// field's own name. So the default mapping reads records such as this one:
///
/// ```json
/// {"time": "2015-05-17T10:05:03Z", "service": "shop", "method": "GET",
///  "path": "/users/42?expand=orders", "status": 200, "latency_ms": 12.5,
///  "client": "83.149.9.216", "labels": {"env": "prod"}, "headers": {"X-Api-Key": "k1"}}
/// ```
///
/// A mapping for a nested gateway log, in YAML:
///
/// ```yaml
/// time: /ts
/// time_format: epoch_s
/// client: /remote_addr
/// path: /request/uri
/// status: /response/status
/// latency_ms: /duration
/// latency_unit: s
/// ```
///
/// These rules hold for every field:
///
/// - A pointer that finds nothing, `null`, `""` or `"-"` leaves the field empty. Only `time`
///   is required.
/// - Numeric fields (`status`, `latency_ms`, `request_bytes`, `response_bytes`) accept JSON
///   numbers and numbers written as strings, such as `"200"`.
/// - Text fields accept strings. A number or boolean is converted to text.
/// - Any other value, such as an object where text is expected, makes the record invalid. The
///   error names the field, its pointer and the value.
/// - Members of the record that no pointer names are ignored.
///
/// An unknown option in the configuration is rejected, and so is a pointer that is neither
/// empty nor starts with `/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonMapping {
    /// Event time, required. Default `/time`. [`TimeFormat`] sets how it is written.
    pub time: JsonPointer,
    /// Format of the `time` value. Default `auto`.
    pub time_format: TimeFormat,
    /// Service (API) name. Default `/service`.
    pub service: JsonPointer,
    /// HTTP method, upper-cased when read. Default `/method`.
    pub method: JsonPointer,
    /// Route template such as `/users/{id}`. Default `/route`. When it is missing or empty, the
    /// route is derived from the path by replacing id-like segments (numbers, UUIDs, long hex
    /// strings, dates) with `{id}`.
    pub route: JsonPointer,
    /// Request path, still percent-encoded. Default `/path`. A query after `?` is split off
    /// into `query` and is used unless the `query` field is present. An absolute URI
    /// (`http://host/p?q`) keeps only its path and query.
    pub path: JsonPointer,
    /// Query string, with or without a leading `?`. Default `/query`.
    pub query: JsonPointer,
    /// HTTP status: an integer from 100 to 999. Default `/status`. The value 0 leaves the
    /// field empty, because proxies such as Envoy log 0 for a request that got no response.
    pub status: JsonPointer,
    /// Time to serve the call, a non-negative number in `latency_unit`. Default
    /// `/latency_ms`.
    pub latency_ms: JsonPointer,
    /// Unit of the `latency_ms` value in the record. Default `ms`.
    pub latency_unit: LatencyUnit,
    /// Request size in bytes, a non-negative integer. Default `/request_bytes`.
    pub request_bytes: JsonPointer,
    /// Response size in bytes, a non-negative integer. Default `/response_bytes`.
    pub response_bytes: JsonPointer,
    /// Client address or host name. Default `/client`.
    pub client: JsonPointer,
    /// Authenticated user or API key id. Default `/principal`.
    pub principal: JsonPointer,
    /// `User-Agent` request header. Default `/user_agent`.
    pub user_agent: JsonPointer,
    /// `Referer` request header. Default `/referer`.
    pub referer: JsonPointer,
    /// Distributed trace id. Default `/trace_id`.
    pub trace_id: JsonPointer,
    /// An object whose members become labels, sorted by name. Each value must be a string,
    /// number or boolean, and a `null` member is skipped. Default `/labels`.
    pub labels: JsonPointer,
    /// An object of request headers. Names are lower-cased and sorted. A value may be a
    /// string, number or boolean, or an array of those, which is joined with `, `. A `null`
    /// member is skipped. Default `/headers`.
    pub headers: JsonPointer,
    /// A prefix of the request body, as text. Default `/body`.
    pub body: JsonPointer,
}

impl Default for JsonMapping {
    fn default() -> JsonMapping {
        JsonMapping {
            time: JsonPointer::member("time"),
            time_format: TimeFormat::Auto,
            service: JsonPointer::member("service"),
            method: JsonPointer::member("method"),
            route: JsonPointer::member("route"),
            path: JsonPointer::member("path"),
            query: JsonPointer::member("query"),
            status: JsonPointer::member("status"),
            latency_ms: JsonPointer::member("latency_ms"),
            latency_unit: LatencyUnit::Milliseconds,
            request_bytes: JsonPointer::member("request_bytes"),
            response_bytes: JsonPointer::member("response_bytes"),
            client: JsonPointer::member("client"),
            principal: JsonPointer::member("principal"),
            user_agent: JsonPointer::member("user_agent"),
            referer: JsonPointer::member("referer"),
            trace_id: JsonPointer::member("trace_id"),
            labels: JsonPointer::member("labels"),
            headers: JsonPointer::member("headers"),
            body: JsonPointer::member("body"),
        }
    }
}

impl JsonMapping {
    /// Returns true when every pointer is the default one, whatever the other options.
    fn has_default_pointers(&self) -> bool {
        let defaults = JsonMapping {
            time_format: self.time_format,
            latency_unit: self.latency_unit,
            ..JsonMapping::default()
        };
        *self == defaults
    }
}

/// Format of the time value in a JSON record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Any of the forms below. A string is tried as RFC 3339, then as a common log format
    /// time such as `17/May/2015:10:05:03 +0000` (brackets allowed), then as a number. A
    /// number above 10^11 is epoch milliseconds, and any other number is epoch seconds.
    #[default]
    Auto,
    /// An RFC 3339 string such as `2015-05-17T10:05:03.250+02:00`. Digits past the
    /// millisecond are dropped.
    Rfc3339,
    /// Milliseconds since the Unix epoch, as a number or a numeric string. A fraction is
    /// rounded to the nearest millisecond.
    EpochMs,
    /// Seconds since the Unix epoch, as a number or a numeric string. A fraction is allowed
    /// and is rounded to the nearest millisecond.
    EpochS,
}

/// Unit of the latency value in a JSON record. feedloop stores latency in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatencyUnit {
    /// Nanoseconds, `ns`.
    #[serde(rename = "ns")]
    Nanoseconds,
    /// Microseconds, `us`, such as Apache's `%D`.
    #[serde(rename = "us")]
    Microseconds,
    /// Milliseconds, `ms`, the default.
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds, `s`, such as nginx's `$request_time`.
    #[serde(rename = "s")]
    Seconds,
}

impl LatencyUnit {
    fn milliseconds(self) -> f64 {
        match self {
            LatencyUnit::Nanoseconds => 1e-6,
            LatencyUnit::Microseconds => 1e-3,
            LatencyUnit::Milliseconds => 1.0,
            LatencyUnit::Seconds => 1e3,
        }
    }
}

/// A JSON pointer (RFC 6901) such as `/request/uri`.
///
/// Each `/`-separated token names an object member or an array index. Inside a token, `~1`
/// stands for `/` and `~0` for `~`, so `/headers/x~1y` names the member `x/y`. The empty
/// pointer names the whole record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JsonPointer(String);

impl JsonPointer {
    /// Validates `text` as a JSON pointer.
    pub fn parse(text: &str) -> Result<JsonPointer, InvalidPointer> {
        let invalid = |reason| InvalidPointer {
            pointer: text.to_string(),
            reason,
        };
        if !text.is_empty() && !text.starts_with('/') {
            return Err(invalid(
                "a pointer must be empty or start with \"/\", such as \"/ts\"",
            ));
        }
        let bytes = text.as_bytes();
        let bad_tilde = |(i, _): (usize, &str)| !matches!(bytes.get(i + 1), Some(b'0' | b'1'));
        if text.match_indices('~').any(bad_tilde) {
            return Err(invalid("\"~\" must be followed by 0 or 1"));
        }
        Ok(JsonPointer(text.to_string()))
    }

    /// Returns the pointer as written, such as `/request/uri`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds the pointer to a top-level member whose name has no `/` or `~`.
    fn member(name: &str) -> JsonPointer {
        JsonPointer(format!("/{name}"))
    }
}

impl TryFrom<String> for JsonPointer {
    type Error = InvalidPointer;

    fn try_from(text: String) -> Result<JsonPointer, InvalidPointer> {
        JsonPointer::parse(&text)
    }
}

impl From<JsonPointer> for String {
    fn from(pointer: JsonPointer) -> String {
        pointer.0
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not a valid JSON pointer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON pointer {pointer:?}: {reason}")]
pub struct InvalidPointer {
    pointer: String,
    reason: &'static str,
}

/// Decodes JSON records through one mapping.
#[derive(Clone, Debug)]
pub(crate) struct JsonDecoder {
    mapping: JsonMapping,
    /// True when the mapping uses the default pointers, so the fast path applies.
    native: bool,
}

impl JsonDecoder {
    pub(crate) fn new(mapping: JsonMapping) -> JsonDecoder {
        let native = mapping.has_default_pointers();
        JsonDecoder { mapping, native }
    }

    /// Decodes one record, already trimmed of surrounding whitespace.
    pub(crate) fn decode(&self, record: &[u8]) -> Result<ApiEvent, DecodeError> {
        if record.is_empty() {
            return Err(DecodeError::new("empty record: expected a JSON object"));
        }
        let error = match self.decode_text(record) {
            Ok(event) => return Ok(event),
            Err(error) => error,
        };
        match repair_record(record) {
            // NOTE: a syntax error found after the repair gives its column in the repaired
            // record, which is off wherever an escape or invalid byte before it was replaced.
            Some(repaired) => self.decode_text(&repaired),
            None => Err(error),
        }
    }

    /// Decodes a record as serde_json reads it, which rejects bytes that are not UTF-8.
    fn decode_text(&self, record: &[u8]) -> Result<ApiEvent, DecodeError> {
        // Only an object takes the fast path, because a derived struct would also accept an
        // array of its fields in order.
        if self.native && record.first() == Some(&b'{') {
            let fields: RecordFields = serde_json::from_slice(record).map_err(invalid_json)?;
            return build_event(fields, &self.mapping, Origin::Json);
        }

        let value: Value = serde_json::from_slice(record).map_err(invalid_json)?;
        if !value.is_object() {
            return Err(DecodeError::new(format!(
                "invalid JSON record: expected an object, found {}",
                describe_kind(&value)
            )));
        }
        build_event(
            RecordFields::at_pointers(&value, &self.mapping),
            &self.mapping,
            Origin::Json,
        )
    }
}

/// Repairs the two kinds of invalid JSON that access logs commonly contain, or returns `None`
/// when the record has neither.
///
/// nginx without `escape=json` writes `"`, `\`, bytes below 0x20 and bytes from 0x7F up as
/// `\xHH`, which JSON does not allow. A logger that copies request bytes into a string
/// unescaped can write bytes that are not UTF-8, and those are replaced with U+FFFD.
fn repair_record(record: &[u8]) -> Option<Vec<u8>> {
    let unescaped = replace_hex_escapes(record);
    let bytes = unescaped.as_deref().unwrap_or(record);
    match std::str::from_utf8(bytes) {
        Ok(_) => unescaped,
        Err(_) => Some(String::from_utf8_lossy(bytes).into_owned().into_bytes()),
    }
}

/// Rewrites each `\xHH` escape as the byte it stands for, escaped the JSON way where JSON
/// requires it. Returns `None` when the record has no such escape.
fn replace_hex_escapes(record: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(record.len());
    let mut replaced = false;
    let mut i = 0;
    while i < record.len() {
        if record[i] != b'\\' {
            out.push(record[i]);
            i += 1;
            continue;
        }

        let escape = (
            record.get(i + 1),
            hex(record.get(i + 2)),
            hex(record.get(i + 3)),
        );
        let (Some(b'x'), Some(high), Some(low)) = escape else {
            // Any other escape, such as `\"`, is copied whole so that its second byte is not
            // read as the start of an escape.
            let end = (i + 2).min(record.len());
            out.extend_from_slice(&record[i..end]);
            i = end;
            continue;
        };
        match high << 4 | low {
            byte @ (b'"' | b'\\') => out.extend([b'\\', byte]),
            byte @ (0x00..=0x1F | 0x7F) => out.extend(format!("\\u{byte:04x}").bytes()),
            byte => out.push(byte),
        }
        replaced = true;
        i += 4;
    }
    replaced.then_some(out)
}

fn invalid_json(err: serde_json::Error) -> DecodeError {
    DecodeError::new(format!("invalid JSON record: {err}"))
}

fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The values a mapping points at in one record, before conversion.
#[derive(Default, Deserialize)]
pub(super) struct RecordFields<'a> {
    #[serde(borrow)]
    pub(super) time: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) service: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) method: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) route: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) path: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) query: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) status: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) latency_ms: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) request_bytes: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) response_bytes: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) client: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) principal: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) user_agent: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) referer: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) trace_id: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) labels: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) headers: Option<FieldValue<'a>>,
    #[serde(borrow)]
    pub(super) body: Option<FieldValue<'a>>,
}

impl<'a> RecordFields<'a> {
    /// Follows each pointer of the mapping into a parsed record.
    fn at_pointers(record: &'a Value, mapping: &JsonMapping) -> RecordFields<'a> {
        let at = |pointer: &JsonPointer| record.pointer(pointer.as_str()).map(FieldValue::from);
        RecordFields {
            time: at(&mapping.time),
            service: at(&mapping.service),
            method: at(&mapping.method),
            route: at(&mapping.route),
            path: at(&mapping.path),
            query: at(&mapping.query),
            status: at(&mapping.status),
            latency_ms: at(&mapping.latency_ms),
            request_bytes: at(&mapping.request_bytes),
            response_bytes: at(&mapping.response_bytes),
            client: at(&mapping.client),
            principal: at(&mapping.principal),
            user_agent: at(&mapping.user_agent),
            referer: at(&mapping.referer),
            trace_id: at(&mapping.trace_id),
            labels: at(&mapping.labels),
            headers: at(&mapping.headers),
            body: at(&mapping.body),
        }
    }
}

/// A JSON value found for one field, borrowing strings from the record where it can.
#[derive(Debug)]
pub(super) enum FieldValue<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    /// A time in milliseconds since the Unix epoch, whatever the time format, from an Avro
    /// timestamp. Anywhere else it counts as the integer.
    EpochMillis(i64),
    Float(f64),
    Text(Cow<'a, str>),
    Array(Vec<FieldValue<'a>>),
    Object(Vec<(Cow<'a, str>, FieldValue<'a>)>),
}

impl<'a> From<&'a Value> for FieldValue<'a> {
    fn from(value: &'a Value) -> FieldValue<'a> {
        match value {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => FieldValue::Unsigned(u),
                (None, Some(i)) => FieldValue::Signed(i),
                (None, None) => FieldValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => FieldValue::Text(Cow::Borrowed(s)),
            Value::Array(items) => FieldValue::Array(items.iter().map(FieldValue::from).collect()),
            Value::Object(members) => FieldValue::Object(
                members
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.into()))
                    .collect(),
            ),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FieldValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldValueVisitor(PhantomData))
    }
}

struct FieldValueVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldValueVisitor<'a> {
    type Value = FieldValue<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(FieldValue::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(FieldValue::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(FieldValue::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        FieldValue::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(FieldValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key::<FieldValue<'a>>()? {
            let FieldValue::Text(name) = key else {
                return Err(de::Error::custom("object keys must be strings"));
            };
            members.push((name, map.next_value()?));
        }
        Ok(FieldValue::Object(members))
    }
}

/// A field's name and where its value came from, for error messages.
#[derive(Clone, Copy)]
pub(super) struct Source<'m> {
    name: &'static str,
    /// The field's JSON pointer, or `None` for a field of an Avro record, which has the
    /// field's own name.
    pointer: Option<&'m JsonPointer>,
}

impl<'m> Source<'m> {
    fn new(name: &'static str, pointer: &'m JsonPointer) -> Source<'m> {
        Source {
            name,
            pointer: Some(pointer),
        }
    }

    /// Names the Avro record field `name`.
    pub(super) fn avro(name: &'static str) -> Source<'static> {
        Source {
            name,
            pointer: None,
        }
    }

    /// Returns where the value was found, such as `at /ts` or ``in Avro field `time` ``.
    fn place(self) -> String {
        match self.pointer {
            Some(pointer) => format!("at {pointer}"),
            None => format!("in Avro field `{}`", self.name),
        }
    }

    /// Builds the error for a value of the wrong kind or out of range.
    pub(super) fn invalid(self, value: &FieldValue, expected: &str) -> DecodeError {
        let name = self.name;
        let place = self.place();
        let message = match value {
            FieldValue::Array(_) => {
                format!("invalid {name} {place}: expected {expected}, found an array")
            }
            FieldValue::Object(_) => {
                format!("invalid {name} {place}: expected {expected}, found an object")
            }
            FieldValue::Text(text) => {
                let value_text = quote(text.as_bytes());
                format!("invalid {name} {value_text} {place}: expected {expected}")
            }
            // Debug writes 1e300 as such, where Display would write all 301 digits.
            FieldValue::Float(x) => {
                format!("invalid {name} {x:?} {place}: expected {expected}")
            }
            scalar => {
                let value_text = scalar_text(scalar).unwrap_or_default();
                format!("invalid {name} {value_text} {place}: expected {expected}")
            }
        };
        DecodeError::new(message)
    }
}

/// The kind of record the values came from, which sets how errors name a field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A JSON record read through a mapping: errors give the field's pointer.
    Json,
    /// An Avro record, whose fields have feedloop's names: errors give the field name.
    Avro,
}

impl Origin {
    fn source<'m>(self, name: &'static str, pointer: &'m JsonPointer) -> Source<'m> {
        match self {
            Origin::Json => Source::new(name, pointer),
            Origin::Avro => Source::avro(name),
        }
    }
}

/// Builds the event from the values found in one record.
pub(super) fn build_event(
    fields: RecordFields,
    mapping: &JsonMapping,
    origin: Origin,
) -> Result<ApiEvent, DecodeError> {
    let RecordFields {
        time,
        service,
        method,
        route,
        path,
        query,
        status,
        latency_ms,
        request_bytes,
        response_bytes,
        client,
        principal,
        user_agent,
        referer,
        trace_id,
        labels,
        headers,
        body,
    } = fields;
    let m = mapping;

    let time_ms = read_time(time, origin.source("time", &m.time), m.time_format)?;
    let request = read_request([method, route, path, query], m, origin)?;
    let latency_ms = read_float(latency_ms, origin.source("latency_ms", &m.latency_ms))?
        .map(|latency| latency * m.latency_unit.milliseconds());
    let request_bytes = read_size(
        request_bytes,
        origin.source("request_bytes", &m.request_bytes),
    )?;
    let response_bytes = read_size(
        response_bytes,
        origin.source("response_bytes", &m.response_bytes),
    )?;

    Ok(ApiEvent {
        time_ms,
        service: read_text(service, origin.source("service", &m.service))?.unwrap_or_default(),
        method: request.method,
        route: request.route,
        path: request.path,
        query: request.query,
        status: read_status(status, origin.source("status", &m.status))?,
        latency_ms,
        request_bytes,
        response_bytes,
        client: read_text(client, origin.source("client", &m.client))?.unwrap_or_default(),
        principal: read_text(principal, origin.source("principal", &m.principal))?,
        user_agent: read_text(user_agent, origin.source("user_agent", &m.user_agent))?,
        referer: read_text(referer, origin.source("referer", &m.referer))?,
        trace_id: read_text(trace_id, origin.source("trace_id", &m.trace_id))?,
        labels: read_pairs(labels, origin.source("labels", &m.labels), PairKind::Labels)?,
        headers: read_pairs(
            headers,
            origin.source("headers", &m.headers),
            PairKind::Headers,
        )?,
        body: read_text(body, origin.source("body", &m.body))?,
        problem: None,
    })
}

/// The method, route, path and query of one record.
struct Request {
    method: String,
    route: String,
    path: String,
    query: Option<String>,
}

/// Reads the values found for method, route, path and query, in that order.
fn read_request(
    [method, route, path, query]: [Option<FieldValue>; 4],
    m: &JsonMapping,
    origin: Origin,
) -> Result<Request, DecodeError> {
    let method = read_text(method, origin.source("method", &m.method))?
        .map(|method| method.to_ascii_uppercase())
        .unwrap_or_default();

    let target = read_text(path, origin.source("path", &m.path))?;
    let (path, query_in_path) = split_target(target.as_deref().unwrap_or(""));
    let query = match read_text(query, origin.source("query", &m.query))? {
        Some(query) => {
            let query = query.strip_prefix('?').unwrap_or(&query);
            (!query.is_empty()).then(|| query.to_string())
        }
        None => query_in_path,
    };

    let route = read_text(route, origin.source("route", &m.route))?
        .unwrap_or_else(|| route::template(&path));
    Ok(Request {
        method,
        route,
        path,
        query,
    })
}

/// Drops the values that count as absent: `null`, `""` and `"-"`.
fn present(value: Option<FieldValue>) -> Option<FieldValue> {
    match value? {
        FieldValue::Null => None,
        FieldValue::Text(text) if text.is_empty() || text == "-" => None,
        value => Some(value),
    }
}

/// Returns the text of a scalar value, or `None` for an array or object.
fn scalar_text(value: &FieldValue) -> Option<String> {
    match value {
        FieldValue::Null => Some("null".to_string()),
        FieldValue::Bool(b) => Some(b.to_string()),
        FieldValue::Unsigned(n) => Some(n.to_string()),
        FieldValue::Signed(n) | FieldValue::EpochMillis(n) => Some(n.to_string()),
        FieldValue::Float(x) => Some(x.to_string()),
        FieldValue::Text(text) => Some(text.to_string()),
        FieldValue::Array(_) | FieldValue::Object(_) => None,
    }
}

fn read_text(value: Option<FieldValue>, source: Source) -> Result<Option<String>, DecodeError> {
    match present(value) {
        None => Ok(None),
        Some(FieldValue::Text(text)) => Ok(Some(text.into_owned())),
        Some(value) => match scalar_text(&value) {
            Some(text) => Ok(Some(text)),
            None => Err(source.invalid(&value, "a string")),
        },
    }
}

/// Returns a non-negative integer, also from an integral float or a string of digits.
fn to_unsigned(value: &FieldValue) -> Option<u64> {
    match value {
        FieldValue::Unsigned(n) => Some(*n),
        FieldValue::EpochMillis(n) => u64::try_from(*n).ok(),
        FieldValue::Float(x) if x.fract() == 0.0 && *x >= 0.0 && *x < u64::MAX as f64 => {
            Some(*x as u64)
        }
        FieldValue::Text(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
}

fn read_status(value: Option<FieldValue>, source: Source) -> Result<Option<u16>, DecodeError> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    match to_unsigned(&value) {
        Some(0) => Ok(None),
        Some(status @ 100..=999) => Ok(Some(status as u16)),
        _ => Err(source.invalid(&value, "an HTTP status code from 100 to 999")),
    }
}

fn read_size(value: Option<FieldValue>, source: Source) -> Result<Option<u64>, DecodeError> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    match to_unsigned(&value) {
        Some(size) => Ok(Some(size)),
        None => Err(source.invalid(&value, "a number of bytes")),
    }
}

fn read_float(value: Option<FieldValue>, source: Source) -> Result<Option<f64>, DecodeError> {
    let Some(value) = present(value) else {
        return Ok(None);
    };
    let number = match &value {
        FieldValue::Unsigned(n) => Some(*n as f64),
        FieldValue::Signed(n) | FieldValue::EpochMillis(n) => Some(*n as f64),
        FieldValue::Float(x) => Some(*x),
        FieldValue::Text(text) => text.parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
        _ => Err(source.invalid(&value, "a non-negative number")),
    }
}

/// Which of the two objects of string values is read.
#[derive(Clone, Copy, PartialEq)]
enum PairKind {
    Labels,
    Headers,
}

fn read_pairs(
    value: Option<FieldValue>,
    source: Source,
    kind: PairKind,
) -> Result<Vec<(String, String)>, DecodeError> {
    let Some(value) = present(value) else {
        return Ok(Vec::new());
    };
    let FieldValue::Object(members) = value else {
        return Err(source.invalid(&value, "an object"));
    };

    let mut pairs = Vec::with_capacity(members.len());
    for (name, member) in members {
        let text = match &member {
            FieldValue::Null => continue,
            FieldValue::Array(items) if kind == PairKind::Headers => join_scalars(items),
            member => scalar_text(member),
        };
        let Some(text) = text else {
            return Err(DecodeError::new(format!(
                "invalid {} {}: member {} must be a string, number or boolean",
                source.name,
                source.place(),
                quote(name.as_bytes())
            )));
        };
        let name = match kind {
            PairKind::Labels => name.into_owned(),
            PairKind::Headers => name.to_ascii_lowercase(),
        };
        pairs.push((name, text));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs)
}

/// Joins an array of scalars with `, `, the way HTTP folds repeated header fields.
fn join_scalars(items: &[FieldValue]) -> Option<String> {
    let texts = items
        .iter()
        .map(|item| match item {
            FieldValue::Array(_) | FieldValue::Object(_) | FieldValue::Null => None,
            scalar => scalar_text(scalar),
        })
        .collect::<Option<Vec<String>>>()?;
    Some(texts.join(", "))
}

fn read_time(
    value: Option<FieldValue>,
    source: Source,
    format: TimeFormat,
) -> Result<i64, DecodeError> {
    let Some(value) = present(value) else {
        return Err(DecodeError::new(format!(
            "missing time {}: every record needs an event time",
            source.place()
        )));
    };

    let time_ms = match (format, &value) {
        (_, FieldValue::EpochMillis(ms)) => Some(*ms).filter(|ms| ms.abs() <= MAX_EPOCH_MS),
        (TimeFormat::Auto, FieldValue::Text(text)) => parse_rfc3339(text)
            .or_else(|| parse_common_log_time(text))
            .or_else(|| epoch_ms(&value, EpochUnit::Auto)),
        (TimeFormat::Auto, _) => epoch_ms(&value, EpochUnit::Auto),
        (TimeFormat::Rfc3339, FieldValue::Text(text)) => parse_rfc3339(text),
        (TimeFormat::Rfc3339, _) => None,
        (TimeFormat::EpochMs, _) => epoch_ms(&value, EpochUnit::Milliseconds),
        (TimeFormat::EpochS, _) => epoch_ms(&value, EpochUnit::Seconds),
    };

    let expected = match format {
        TimeFormat::Auto => {
            "an RFC 3339 time such as \"2015-05-17T10:05:03Z\", a common log time such as \
             \"17/May/2015:10:05:03 +0000\", or epoch seconds or milliseconds"
        }
        TimeFormat::Rfc3339 => "an RFC 3339 time such as \"2015-05-17T10:05:03Z\"",
        TimeFormat::EpochMs => "a number of milliseconds since the Unix epoch",
        TimeFormat::EpochS => "a number of seconds since the Unix epoch",
    };
    time_ms.ok_or_else(|| source.invalid(&value, expected))
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(time.timestamp_millis()).filter(|ms| ms.abs() <= MAX_EPOCH_MS)
}

/// Parses `17/May/2015:10:05:03 +0000`, with or without the brackets.
fn parse_common_log_time(text: &str) -> Option<i64> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    combined::parse_time(inner.as_bytes()).ok()
}

#[derive(Clone, Copy)]
enum EpochUnit {
    Auto,
    Milliseconds,
    Seconds,
}

/// Converts an epoch number, or a string holding one, to milliseconds.
fn epoch_ms(value: &FieldValue, unit: EpochUnit) -> Option<i64> {
    let integer = match value {
        FieldValue::Unsigned(n) => i64::try_from(*n).ok(),
        FieldValue::Signed(n) => Some(*n),
        FieldValue::Text(text) => text.parse::<i64>().ok(),
        _ => None,
    };
    let ms = match integer {
        Some(n) => match unit {
            EpochUnit::Milliseconds => Some(n),
            EpochUnit::Auto if n as f64 > AUTO_EPOCH_MS_ABOVE => Some(n),
            EpochUnit::Auto | EpochUnit::Seconds => n.checked_mul(1000),
        },
        None => {
            let x = match value {
                FieldValue::Float(x) => *x,
                FieldValue::Text(text) => text.parse::<f64>().ok()?,
                _ => return None,
            };
            let scale = match unit {
                EpochUnit::Milliseconds => 1.0,
                EpochUnit::Auto if x > AUTO_EPOCH_MS_ABOVE => 1.0,
                EpochUnit::Auto | EpochUnit::Seconds => 1000.0,
            };
            let ms = (x * scale).round();
            // NaN and infinities fail this check too.
            (ms.abs() <= MAX_EPOCH_MS as f64).then_some(ms as i64)
        }
    };
    ms.filter(|ms| ms.abs() <= MAX_EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, Format};

    /// 2015-05-17T10:05:03Z in milliseconds since the Unix epoch.
    const MAY_17_10_05_03: i64 = 1_431_857_103_000;

    fn decode_default(record: &str) -> Result<ApiEvent, String> {
        Decoder::new(Format::Json(JsonMapping::default()))
            .decode(record.as_bytes())
            .map_err(|err| err.to_string())
    }

    fn decode_with(mapping: &JsonMapping, record: &str) -> Result<ApiEvent, String> {
        Decoder::new(Format::Json(mapping.clone()))
            .decode(record.as_bytes())
            .map_err(|err| err.to_string())
    }

    /// Decodes through the pointer path even for the default mapping.
    fn decode_by_pointers(record: &str) -> Result<ApiEvent, String> {
        let decoder = JsonDecoder {
            mapping: JsonMapping::default(),
            native: false,
        };
        decoder
            .decode(record.as_bytes())
            .map_err(|err| err.to_string())
    }

    fn mapping(json: &str) -> JsonMapping {
        serde_json::from_str(json).unwrap()
    }

    fn time_of(record: &str) -> Result<i64, String> {
        decode_default(record).map(|event| event.time_ms)
    }

    const FULL_RECORD: &str = r#"{
        "time": "2015-05-17T12:05:03.250+02:00", "service": "shop", "method": "post",
        "route": "", "path": "/users/42/orders?page=2", "status": 201, "latency_ms": 12.5,
        "request_bytes": 512, "response_bytes": "1024", "client": "2001:db8::1",
        "principal": "key-7", "user_agent": "curl/8.0", "referer": "-", "trace_id": "abc123",
        "labels": {"region": "eu", "env": "prod", "build": 17},
        "headers": {"X-Api-Key": "k1", "Accept": ["a", "b"], "content-type": null},
        "body": "{\"q\":1}", "other": {"ignored": [1, 2, 3]}
    }"#;

    #[test]
    fn default_mapping_reads_every_field() {
        let record = FULL_RECORD.replace('\n', " ");
        let event = decode_default(&record).unwrap();
        assert_eq!(event.time_ms, MAY_17_10_05_03 + 250);
        assert_eq!(event.service, "shop");
        assert_eq!(event.method, "POST");
        assert_eq!(event.route, "/users/{id}/orders");
        assert_eq!(event.path, "/users/42/orders");
        assert_eq!(event.query.as_deref(), Some("page=2"));
        assert_eq!(event.status, Some(201));
        assert_eq!(event.latency_ms, Some(12.5));
        assert_eq!(event.request_bytes, Some(512));
        assert_eq!(event.response_bytes, Some(1024));
        assert_eq!(event.client, "2001:db8::1");
        assert_eq!(event.principal.as_deref(), Some("key-7"));
        assert_eq!(event.user_agent.as_deref(), Some("curl/8.0"));
        assert_eq!(event.referer, None);
        assert_eq!(event.trace_id.as_deref(), Some("abc123"));
        let labels = [("build", "17"), ("env", "prod"), ("region", "eu")];
        let labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(event.labels, labels);
        let headers = [("accept", "a, b"), ("x-api-key", "k1")];
        let headers: Vec<_> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(event.headers, headers);
        assert_eq!(event.body.as_deref(), Some(r#"{"q":1}"#));
        assert_eq!(event.problem, None);
    }

    #[test]
    fn minimal_record_has_empty_fields() {
        let event = decode_default(r#"{"time": 1431857103}"#).unwrap();
        let expected = ApiEvent {
            time_ms: MAY_17_10_05_03,
            ..ApiEvent::default()
        };
        assert_eq!(event, expected);
    }

    #[test]
    fn time_forms_in_auto_format() {
        let cases = [
            (r#"{"time": "2015-05-17T10:05:03Z"}"#, MAY_17_10_05_03),
            (
                r#"{"time": "2015-05-17T10:05:03.1239Z"}"#,
                MAY_17_10_05_03 + 123,
            ),
            (r#"{"time": "2015-05-17T03:05:03-07:00"}"#, MAY_17_10_05_03),
            (r#"{"time": "17/May/2015:15:35:03 +0530"}"#, MAY_17_10_05_03),
            (
                r#"{"time": "[17/May/2015:10:05:03 +0000]"}"#,
                MAY_17_10_05_03,
            ),
            (r#"{"time": 1431857103}"#, MAY_17_10_05_03),
            (r#"{"time": 1431857103.25}"#, MAY_17_10_05_03 + 250),
            (r#"{"time": 1431857103123}"#, MAY_17_10_05_03 + 123),
            (r#"{"time": 1431857103123.6}"#, MAY_17_10_05_03 + 124),
            (r#"{"time": "1431857103"}"#, MAY_17_10_05_03),
            (r#"{"time": "1431857103.5"}"#, MAY_17_10_05_03 + 500),
            (r#"{"time": "1431857103123"}"#, MAY_17_10_05_03 + 123),
            (r#"{"time": 100000000000}"#, 100_000_000_000_000),
            (r#"{"time": 100000000001}"#, 100_000_000_001),
            (r#"{"time": 0}"#, 0),
            (r#"{"time": -1.5}"#, -1500),
        ];
        for (record, expected) in cases {
            assert_eq!(time_of(record), Ok(expected), "record {record}");
        }
    }

    #[test]
    fn time_formats_restrict_forms() {
        let rfc3339 = mapping(r#"{"time_format": "rfc3339"}"#);
        let epoch_ms = mapping(r#"{"time_format": "epoch_ms"}"#);
        let epoch_s = mapping(r#"{"time_format": "epoch_s"}"#);
        let time = |mapping: &JsonMapping, record| decode_with(mapping, record).map(|e| e.time_ms);

        assert_eq!(
            time(&rfc3339, r#"{"time": "2015-05-17T10:05:03Z"}"#),
            Ok(MAY_17_10_05_03)
        );
        assert_eq!(
            time(&rfc3339, r#"{"time": 1431857103}"#),
            Err(r#"invalid time 1431857103 at /time: expected an RFC 3339 time such as "2015-05-17T10:05:03Z""#.to_string())
        );
        assert_eq!(
            time(&rfc3339, r#"{"time": "17/May/2015:10:05:03 +0000"}"#),
            Err(r#"invalid time "17/May/2015:10:05:03 +0000" at /time: expected an RFC 3339 time such as "2015-05-17T10:05:03Z""#.to_string())
        );

        assert_eq!(
            time(&epoch_ms, r#"{"time": 1431857103}"#),
            Ok(1_431_857_103)
        );
        assert_eq!(
            time(&epoch_ms, r#"{"time": "1431857103000"}"#),
            Ok(MAY_17_10_05_03)
        );
        assert_eq!(
            time(&epoch_ms, r#"{"time": "2015-05-17T10:05:03Z"}"#),
            Err(r#"invalid time "2015-05-17T10:05:03Z" at /time: expected a number of milliseconds since the Unix epoch"#.to_string())
        );

        assert_eq!(
            time(&epoch_s, r#"{"time": 1431857103000}"#),
            Ok(1_431_857_103_000_000)
        );
        assert_eq!(
            time(&epoch_s, r#"{"time": 1431857103.001}"#),
            Ok(MAY_17_10_05_03 + 1)
        );
        assert_eq!(
            time(&epoch_s, r#"{"time": true}"#),
            Err(
                "invalid time true at /time: expected a number of seconds since the Unix epoch"
                    .to_string()
            )
        );
    }

    #[test]
    fn missing_and_invalid_time_fail() {
        let auto_expected = r#"expected an RFC 3339 time such as "2015-05-17T10:05:03Z", a common log time such as "17/May/2015:10:05:03 +0000", or epoch seconds or milliseconds"#;
        let cases = [
            (
                r#"{}"#,
                "missing time at /time: every record needs an event time".to_string(),
            ),
            (
                r#"{"time": null}"#,
                "missing time at /time: every record needs an event time".to_string(),
            ),
            (
                r#"{"time": ""}"#,
                "missing time at /time: every record needs an event time".to_string(),
            ),
            (
                r#"{"Time": 1}"#,
                "missing time at /time: every record needs an event time".to_string(),
            ),
            (
                r#"{"time": "yesterday"}"#,
                format!(r#"invalid time "yesterday" at /time: {auto_expected}"#),
            ),
            (
                r#"{"time": "2015-05-17 10:05"}"#,
                format!(r#"invalid time "2015-05-17 10:05" at /time: {auto_expected}"#),
            ),
            (
                r#"{"time": "2015-02-31T10:05:03Z"}"#,
                format!(r#"invalid time "2015-02-31T10:05:03Z" at /time: {auto_expected}"#),
            ),
            (
                r#"{"time": {"sec": 1}}"#,
                format!("invalid time at /time: {auto_expected}, found an object"),
            ),
            (
                r#"{"time": [1]}"#,
                format!("invalid time at /time: {auto_expected}, found an array"),
            ),
            (
                r#"{"time": 1e300}"#,
                format!("invalid time 1e300 at /time: {auto_expected}"),
            ),
            (
                r#"{"time": 18446744073709551615}"#,
                format!("invalid time 18446744073709551615 at /time: {auto_expected}"),
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(time_of(record), Err(expected.clone()), "record {record}");
            assert_eq!(
                decode_by_pointers(record).map(|e| e.time_ms),
                Err(expected),
                "record {record}"
            );
        }
    }

    #[test]
    fn non_object_records_fail() {
        let cases = [
            (
                "[1, 2]",
                "invalid JSON record: expected an object, found an array",
            ),
            (
                r#""time""#,
                "invalid JSON record: expected an object, found a string",
            ),
            (
                "42",
                "invalid JSON record: expected an object, found a number",
            ),
            (
                "null",
                "invalid JSON record: expected an object, found null",
            ),
            ("", "empty record: expected a JSON object"),
            ("   ", "empty record: expected a JSON object"),
        ];
        for (record, expected) in cases {
            assert_eq!(
                decode_default(record),
                Err(expected.to_string()),
                "record {record:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let cases = [
            (r#"{"time": 1"#, "invalid JSON record: EOF while parsing an object at line 1 column 10"),
            (r#"{"time": 1,}"#, "invalid JSON record: trailing comma at line 1 column 12"),
            (r#"{"time": 1} x"#, "invalid JSON record: trailing characters at line 1 column 13"),
            (r#"{"time": "abc"#, "invalid JSON record: EOF while parsing a string at line 1 column 13"),
            ("{\"time\": 1, \"path\": \"/a\u{0}\"}", "invalid JSON record: control character (\\u0000-\\u001F) found while parsing a string at line 1 column 24"),
        ];
        for (record, expected) in cases {
            assert_eq!(
                decode_default(record),
                Err(expected.to_string()),
                "record {record:?}"
            );
        }
    }

    #[test]
    fn numbers_as_strings_and_absent_values() {
        let record = r#"{"time": 1431857103, "status": "404", "latency_ms": "0.25", "request_bytes": "-", "response_bytes": "", "principal": "-", "user_agent": "", "referer": null, "status_text": "x"}"#;
        let event = decode_default(record).unwrap();
        assert_eq!(event.status, Some(404));
        assert_eq!(event.latency_ms, Some(0.25));
        assert_eq!(event.request_bytes, None);
        assert_eq!(event.response_bytes, None);
        assert_eq!(event.principal, None);
        assert_eq!(event.user_agent, None);
        assert_eq!(event.referer, None);

        let event =
            decode_default(r#"{"time": 1, "status": 0, "response_bytes": 12.0, "client": 7}"#)
                .unwrap();
        assert_eq!(event.status, None);
        assert_eq!(event.response_bytes, Some(12));
        assert_eq!(event.client, "7");
    }

    #[test]
    fn invalid_field_values_fail() {
        let cases = [
            (
                r#"{"time": 1, "status": "abc"}"#,
                r#"invalid status "abc" at /status: expected an HTTP status code from 100 to 999"#,
            ),
            (
                r#"{"time": 1, "status": 99999}"#,
                "invalid status 99999 at /status: expected an HTTP status code from 100 to 999",
            ),
            (
                r#"{"time": 1, "status": 99}"#,
                "invalid status 99 at /status: expected an HTTP status code from 100 to 999",
            ),
            (
                r#"{"time": 1, "status": -200}"#,
                "invalid status -200 at /status: expected an HTTP status code from 100 to 999",
            ),
            (
                r#"{"time": 1, "status": 200.5}"#,
                "invalid status 200.5 at /status: expected an HTTP status code from 100 to 999",
            ),
            (
                r#"{"time": 1, "latency_ms": -3}"#,
                "invalid latency_ms -3 at /latency_ms: expected a non-negative number",
            ),
            (
                r#"{"time": 1, "latency_ms": "0.004, 0.002"}"#,
                r#"invalid latency_ms "0.004, 0.002" at /latency_ms: expected a non-negative number"#,
            ),
            (
                r#"{"time": 1, "latency_ms": "NaN"}"#,
                r#"invalid latency_ms "NaN" at /latency_ms: expected a non-negative number"#,
            ),
            (
                r#"{"time": 1, "response_bytes": "+5"}"#,
                r#"invalid response_bytes "+5" at /response_bytes: expected a number of bytes"#,
            ),
            (
                r#"{"time": 1, "request_bytes": false}"#,
                "invalid request_bytes false at /request_bytes: expected a number of bytes",
            ),
            (
                r#"{"time": 1, "client": {"ip": "1.2.3.4"}}"#,
                "invalid client at /client: expected a string, found an object",
            ),
            (
                r#"{"time": 1, "path": ["/a"]}"#,
                "invalid path at /path: expected a string, found an array",
            ),
            (
                r#"{"time": 1, "labels": "env=prod"}"#,
                r#"invalid labels "env=prod" at /labels: expected an object"#,
            ),
            (
                r#"{"time": 1, "labels": {"env": ["prod"]}}"#,
                r#"invalid labels at /labels: member "env" must be a string, number or boolean"#,
            ),
            (
                r#"{"time": 1, "headers": {"x-a": {"b": 1}}}"#,
                r#"invalid headers at /headers: member "x-a" must be a string, number or boolean"#,
            ),
            (
                r#"{"time": 1, "headers": {"x-a": [[1]]}}"#,
                r#"invalid headers at /headers: member "x-a" must be a string, number or boolean"#,
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(
                decode_default(record),
                Err(expected.to_string()),
                "record {record}"
            );
            assert_eq!(
                decode_by_pointers(record),
                Err(expected.to_string()),
                "record {record}"
            );
        }
    }

    #[test]
    fn path_query_and_route_rules() {
        let event = decode_default(r#"{"time": 1, "path": "/a/1?x=1", "query": "?y=2"}"#).unwrap();
        assert_eq!(event.path, "/a/1");
        assert_eq!(event.query.as_deref(), Some("y=2"));
        assert_eq!(event.route, "/a/{id}");

        let event = decode_default(r#"{"time": 1, "path": "/a/1", "route": "/a/:id"}"#).unwrap();
        assert_eq!(event.route, "/a/:id");

        let event = decode_default(r#"{"time": 1, "path": "http://host/p?q=1"}"#).unwrap();
        assert_eq!(event.path, "/p");
        assert_eq!(event.query.as_deref(), Some("q=1"));

        let event = decode_default(r#"{"time": 1, "path": "/p?"}"#).unwrap();
        assert_eq!(event.query, None);

        let event = decode_default(r#"{"time": 1, "method": "get"}"#).unwrap();
        assert_eq!(event.method, "GET");
        assert_eq!(event.path, "");
        assert_eq!(event.route, "");
    }

    #[test]
    fn escaped_strings_and_invalid_utf8() {
        let event =
            decode_default(r#"{"time": 1, "user_agent": "a\"b\\c\u00e9", "path": "/caf\u00e9"}"#)
                .unwrap();
        assert_eq!(event.user_agent.as_deref(), Some("a\"b\\c\u{e9}"));
        assert_eq!(event.path, "/caf\u{e9}");

        let record = b"{\"time\": 1, \"path\": \"/caf\xe9\", \"user_agent\": \"\xff\xfebot\"}";
        let decoder = Decoder::new(Format::Json(JsonMapping::default()));
        let event = decoder.decode(record).unwrap();
        assert_eq!(event.path, "/caf\u{FFFD}");
        assert_eq!(event.user_agent.as_deref(), Some("\u{FFFD}\u{FFFD}bot"));

        let decoder = JsonDecoder {
            mapping: JsonMapping::default(),
            native: false,
        };
        let event = decoder.decode(record).unwrap();
        assert_eq!(event.path, "/caf\u{FFFD}");
    }

    #[test]
    fn nginx_hex_escapes_are_repaired() {
        // nginx's default escaping inside a JSON log_format: `"` is `\x22`, `\` is `\x5C`,
        // and bytes below 0x20 or from 0x7F up are `\xHH` too.
        let record = r#"{"time": 1, "user_agent": "say \x22hi\x22 caf\xC3\xA9 \x5Cx\x5C", "path": "/a\x0Ab\xFF", "referer": "\"q\" \\x41"}"#;
        let event = decode_default(record).unwrap();
        assert_eq!(
            event.user_agent.as_deref(),
            Some("say \"hi\" caf\u{e9} \\x\\")
        );
        assert_eq!(event.path, "/a\nb\u{FFFD}");
        assert_eq!(event.referer.as_deref(), Some("\"q\" \\x41"));
        assert_eq!(decode_by_pointers(record), decode_default(record));
    }

    #[test]
    fn repair_failures_report_errors() {
        let cases = [
            (
                r#"{"time": 1, "path": "/\xZZ"}"#,
                "invalid JSON record: invalid escape at line 1 column 24",
            ),
            (
                r#"{"time": 1, "path": "\x41", "status": }"#,
                // The column is counted in the repaired record, where `\x41` is one byte.
                "invalid JSON record: expected value at line 1 column 36",
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(
                decode_default(record),
                Err(expected.to_string()),
                "record {record}"
            );
        }
    }

    #[test]
    fn duplicate_member_depends_on_path() {
        let record = r#"{"time": 1, "status": 200, "status": 404}"#;
        assert_eq!(
            decode_default(record),
            Err("invalid JSON record: duplicate field `status` at line 1 column 35".to_string())
        );
        assert_eq!(decode_by_pointers(record).unwrap().status, Some(404));
    }

    #[test]
    fn fast_path_matches_pointer_path() {
        let mut records = vec![FULL_RECORD.replace('\n', " ")];
        records.extend(
            [
                r#"{"time": 1431857103}"#,
                r#"{"time": "2015-05-17T10:05:03Z", "path": "/x?y", "query": null}"#,
                r#"{"time": 1, "headers": {"B": "1", "a": true, "c": [1, "x", 2.5]}}"#,
                r#"{"time": 1, "labels": {}, "headers": null, "body": 12}"#,
                r#"{"time": 1, "status": "200", "latency_ms": 7, "trace_id": 99}"#,
                r#"{"time": "nope"}"#,
                r#"{"time": 1, "status": []}"#,
                r#"{"time": 1, "path": "/a\u0000b"}"#,
            ]
            .map(str::to_string),
        );
        for record in &records {
            assert_eq!(
                decode_default(record),
                decode_by_pointers(record),
                "record {record}"
            );
        }
    }

    #[test]
    fn nested_mapping_reads_gateway_record() {
        let mapping = mapping(
            r#"{"time": "/ts", "time_format": "epoch_s", "client": "/remote_addr",
                "path": "/request/uri", "method": "/request/method",
                "status": "/response/status", "latency_ms": "/duration",
                "latency_unit": "us", "headers": "/request/headers",
                "labels": "/tags", "trace_id": "/request/headers/x-b3~1trace"}"#,
        );
        let record = r#"{"ts": 1431857103.5, "remote_addr": "10.1.2.3",
            "request": {"method": "DELETE", "uri": "/v1/items/0f8fad5b-d9cb-469f-a165-70867728950e?force=1",
                        "headers": {"Host": "api.example", "x-b3/trace": "t-1"}},
            "response": {"status": 204}, "duration": 1500, "tags": {"env": "staging"},
            "time": "ignored", "path": "/ignored"}"#;
        let event = decode_with(&mapping, &record.replace('\n', " ")).unwrap();
        assert_eq!(event.time_ms, MAY_17_10_05_03 + 500);
        assert_eq!(event.client, "10.1.2.3");
        assert_eq!(event.method, "DELETE");
        assert_eq!(event.path, "/v1/items/0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(event.route, "/v1/items/{id}");
        assert_eq!(event.query.as_deref(), Some("force=1"));
        assert_eq!(event.status, Some(204));
        assert_eq!(event.latency_ms, Some(1.5));
        assert_eq!(event.trace_id.as_deref(), Some("t-1"));
        assert_eq!(
            event.headers,
            vec![
                ("host".to_string(), "api.example".to_string()),
                ("x-b3/trace".to_string(), "t-1".to_string())
            ]
        );
        assert_eq!(
            event.labels,
            vec![("env".to_string(), "staging".to_string())]
        );
        assert_eq!(event.service, "");

        let missing = decode_with(&mapping, r#"{"time": 1431857103}"#);
        assert_eq!(
            missing,
            Err("missing time at /ts: every record needs an event time".to_string())
        );
    }

    #[test]
    fn nginx_json_log_line() {
        // An nginx `log_format ... escape=json` line as commonly configured: every variable is
        // a string, $request_time is in seconds and $remote_user is empty when unset.
        let line = r#"{"time_local":"14/Mar/2023:09:26:53 +0100","remote_addr":"203.0.113.7","remote_user":"","request":"POST /api/v1/users/1234/orders?limit=10 HTTP/1.1","request_method":"POST","request_uri":"/api/v1/users/1234/orders?limit=10","status":"201","body_bytes_sent":"512","request_length":"1024","request_time":"0.123","http_referer":"","http_user_agent":"python-requests/2.31.0","http_x_request_id":"4bf92f3577b34da6a3ce929d0e0e4736","host":"api.example.com"}"#;
        let mapping = mapping(
            r#"{"time": "/time_local", "client": "/remote_addr", "principal": "/remote_user",
                "method": "/request_method", "path": "/request_uri", "status": "/status",
                "response_bytes": "/body_bytes_sent", "request_bytes": "/request_length",
                "latency_ms": "/request_time", "latency_unit": "s",
                "referer": "/http_referer", "user_agent": "/http_user_agent",
                "trace_id": "/http_x_request_id", "service": "/host"}"#,
        );
        let event = decode_with(&mapping, line).unwrap();
        // 2023-03-14T08:26:53Z
        assert_eq!(event.time_ms, 1_678_782_413_000);
        assert_eq!(event.client, "203.0.113.7");
        assert_eq!(event.principal, None);
        assert_eq!(event.method, "POST");
        assert_eq!(event.path, "/api/v1/users/1234/orders");
        assert_eq!(event.route, "/api/v1/users/{id}/orders");
        assert_eq!(event.query.as_deref(), Some("limit=10"));
        assert_eq!(event.status, Some(201));
        assert_eq!(event.response_bytes, Some(512));
        assert_eq!(event.request_bytes, Some(1024));
        assert_eq!(event.latency_ms, Some(123.0));
        assert_eq!(event.referer, None);
        assert_eq!(event.user_agent.as_deref(), Some("python-requests/2.31.0"));
        assert_eq!(
            event.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(event.service, "api.example.com");
        assert_eq!(event.problem, None);
    }

    #[test]
    fn mapping_defaults_and_options_parse() {
        assert_eq!(mapping("{}"), JsonMapping::default());
        assert!(JsonMapping::default().has_default_pointers());

        let parsed = mapping(r#"{"time_format": "epoch_ms", "latency_unit": "ns"}"#);
        assert_eq!(parsed.time_format, TimeFormat::EpochMs);
        assert_eq!(parsed.latency_unit, LatencyUnit::Nanoseconds);
        assert_eq!(parsed.time.as_str(), "/time");
        assert!(parsed.has_default_pointers());

        let parsed = mapping(r#"{"client": "/remote_addr"}"#);
        assert_eq!(parsed.client.as_str(), "/remote_addr");
        assert_eq!(parsed.path.as_str(), "/path");
        assert!(!parsed.has_default_pointers());

        let serialized = serde_json::to_value(JsonMapping::default()).unwrap();
        assert_eq!(serialized["time"], "/time");
        assert_eq!(serialized["time_format"], "auto");
        assert_eq!(serialized["latency_unit"], "ms");
        assert_eq!(serialized["headers"], "/headers");
    }

    #[test]
    fn mapping_rejects_bad_options() {
        let error = |json: &str| {
            serde_json::from_str::<JsonMapping>(json)
                .unwrap_err()
                .to_string()
        };

        let unknown = error(r#"{"tme": "/ts"}"#);
        assert!(
            unknown.starts_with("unknown field `tme`, expected one of `time`"),
            "{unknown}"
        );

        let relative = error(r#"{"time": "ts"}"#);
        assert!(
            relative.starts_with(r#"invalid JSON pointer "ts": a pointer must be empty or start with "/", such as "/ts""#),
            "{relative}"
        );

        let tilde = error(r#"{"path": "/a~2b"}"#);
        assert!(
            tilde.starts_with(r#"invalid JSON pointer "/a~2b": "~" must be followed by 0 or 1"#),
            "{tilde}"
        );

        let format = error(r#"{"time_format": "iso"}"#);
        assert!(
            format.starts_with(
                "unknown variant `iso`, expected one of `auto`, `rfc3339`, `epoch_ms`, `epoch_s`"
            ),
            "{format}"
        );

        let unit = error(r#"{"latency_unit": "sec"}"#);
        assert!(
            unit.starts_with("unknown variant `sec`, expected one of `ns`, `us`, `ms`, `s`"),
            "{unit}"
        );
    }

    #[test]
    fn pointer_parse_cases() {
        assert_eq!(JsonPointer::parse("").unwrap().as_str(), "");
        assert_eq!(JsonPointer::parse("/").unwrap().as_str(), "/");
        assert_eq!(
            JsonPointer::parse("/a~0b/c~1d/0").unwrap().as_str(),
            "/a~0b/c~1d/0"
        );
        assert!(JsonPointer::parse("a").is_err());
        assert!(JsonPointer::parse("/a~").is_err());
        assert!(JsonPointer::parse("/a~x").is_err());
    }
}
