//! The API event: one record per API call, the unit every rule is evaluated against.
//!
//! Decoders build an [`ApiEvent`] from whatever the input carries. A field the input does not
//! carry stays empty (`None`, or an empty string for the text fields that every format has), and
//! [`Field`] names each field as rules and `group_by` refer to it. Rules that read a field a
//! format never fills are reported when they are loaded, so an empty field is never a silent
//! "no match".

use std::fmt;

use serde::{Deserialize, Serialize};

/// One API call, as seen by the gateway, proxy or server that logged it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiEvent {
    /// Event time: when the call was received, in milliseconds since the Unix epoch, UTC.
    pub time_ms: i64,
    /// The service (API) the call was made to; empty when the input does not name one.
    pub service: String,
    /// HTTP method in upper case, such as `GET`; empty when the request line was malformed.
    pub method: String,
    /// Route template such as `/users/{id}`, given by the input or derived from `path`.
    pub route: String,
    /// Raw path without the query string, as received (still percent-encoded).
    pub path: String,
    /// Raw query string without the leading `?`.
    pub query: Option<String>,
    /// HTTP response status code.
    pub status: Option<u16>,
    /// Time to serve the call, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Request size in bytes.
    pub request_bytes: Option<u64>,
    /// Response size in bytes.
    pub response_bytes: Option<u64>,
    /// Client address (IPv4 or IPv6, without port) or host name as logged.
    pub client: String,
    /// Authenticated user or API key id, hashed where the source is configured to hash it.
    pub principal: Option<String>,
    /// `User-Agent` request header.
    pub user_agent: Option<String>,
    /// `Referer` request header.
    pub referer: Option<String>,
    /// Distributed trace id.
    pub trace_id: Option<String>,
    /// Free labels such as environment, region or deployment, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Selected request headers, names in lower case, sorted by name.
    pub headers: Vec<(String, String)>,
    /// A prefix of the request body.
    pub body: Option<String>,
    /// The part of the record the decoder could not parse while still keeping the event, such
    /// as a malformed request line.
    pub problem: Option<String>,
}

impl ApiEvent {
    /// Returns the value of a label, if the event has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        lookup(&self.labels, name)
    }

    /// Returns the value of a request header by its lower-case name, if the event has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        lookup(&self.headers, name)
    }

    /// Returns a field's value as text, or `None` when the event does not carry it.
    pub fn text(&self, field: &Field) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;

        match field {
            Field::Service => non_empty(&self.service).map(Cow::Borrowed),
            Field::Method => non_empty(&self.method).map(Cow::Borrowed),
            Field::Route => non_empty(&self.route).map(Cow::Borrowed),
            Field::Path => non_empty(&self.path).map(Cow::Borrowed),
            Field::Query => self.query.as_deref().map(Cow::Borrowed),
            Field::Status => self.status.map(|s| Cow::Owned(s.to_string())),
            Field::LatencyMs => self.latency_ms.map(|v| Cow::Owned(v.to_string())),
            Field::RequestBytes => self.request_bytes.map(|v| Cow::Owned(v.to_string())),
            Field::ResponseBytes => self.response_bytes.map(|v| Cow::Owned(v.to_string())),
            Field::Client => non_empty(&self.client).map(Cow::Borrowed),
            Field::Principal => self.principal.as_deref().map(Cow::Borrowed),
            Field::UserAgent => self.user_agent.as_deref().map(Cow::Borrowed),
            Field::Referer => self.referer.as_deref().map(Cow::Borrowed),
            Field::TraceId => self.trace_id.as_deref().map(Cow::Borrowed),
            Field::Body => self.body.as_deref().map(Cow::Borrowed),
            Field::Label(name) => self.label(name).map(Cow::Borrowed),
            Field::Header(name) => self.header(name).map(Cow::Borrowed),
        }
    }

    /// Returns a numeric field's value, or `None` for text fields and missing values.
    pub fn number(&self, field: &Field) -> Option<f64> {
        match field {
            Field::Status => self.status.map(f64::from),
            Field::LatencyMs => self.latency_ms,
            Field::RequestBytes => self.request_bytes.map(|v| v as f64),
            Field::ResponseBytes => self.response_bytes.map(|v| v as f64),
            _ => None,
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A field of [`ApiEvent`] as rules name it: `status`, `user_agent`, `label.env`,
/// `header.x-api-key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Field {
    Service,
    Method,
    Route,
    Path,
    Query,
    Status,
    LatencyMs,
    RequestBytes,
    ResponseBytes,
    Client,
    Principal,
    UserAgent,
    Referer,
    TraceId,
    Body,
    /// A free label by name.
    Label(String),
    /// A request header by lower-case name.
    Header(String),
}

/// The plain field names, in the order the reference documentation lists them.
pub const FIELD_NAMES: &[&str] = &[
    "service",
    "method",
    "route",
    "path",
    "query",
    "status",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "client",
    "principal",
    "user_agent",
    "referer",
    "trace_id",
    "body",
];

impl Field {
    /// Parses a field name; returns `None` for a name that is not a field.
    pub fn parse(name: &str) -> Option<Field> {
        let field = match name {
            "service" => Field::Service,
            "method" => Field::Method,
            "route" => Field::Route,
            "path" => Field::Path,
            "query" => Field::Query,
            "status" => Field::Status,
            "latency_ms" => Field::LatencyMs,
            "request_bytes" => Field::RequestBytes,
            "response_bytes" => Field::ResponseBytes,
            "client" => Field::Client,
            "principal" => Field::Principal,
            "user_agent" => Field::UserAgent,
            "referer" => Field::Referer,
            "trace_id" => Field::TraceId,
            "body" => Field::Body,
            other => {
                if let Some(label) = other.strip_prefix("label.").filter(|l| !l.is_empty()) {
                    Field::Label(label.to_string())
                } else if let Some(header) = other.strip_prefix("header.").filter(|h| !h.is_empty())
                {
                    Field::Header(header.to_ascii_lowercase())
                } else {
                    return None;
                }
            }
        };
        Some(field)
    }

    /// Returns true for fields compared as numbers.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Field::Status | Field::LatencyMs | Field::RequestBytes | Field::ResponseBytes
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Field::Service => "service",
            Field::Method => "method",
            Field::Route => "route",
            Field::Path => "path",
            Field::Query => "query",
            Field::Status => "status",
            Field::LatencyMs => "latency_ms",
            Field::RequestBytes => "request_bytes",
            Field::ResponseBytes => "response_bytes",
            Field::Client => "client",
            Field::Principal => "principal",
            Field::UserAgent => "user_agent",
            Field::Referer => "referer",
            Field::TraceId => "trace_id",
            Field::Body => "body",
            Field::Label(name) => return write!(f, "label.{name}"),
            Field::Header(name) => return write!(f, "header.{name}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip() {
        for name in FIELD_NAMES {
            let field = Field::parse(name).unwrap();
            assert_eq!(field.to_string(), *name);
        }
        assert_eq!(Field::parse("label.env"), Some(Field::Label("env".into())));
        assert_eq!(
            Field::parse("header.X-Api-Key"),
            Some(Field::Header("x-api-key".into()))
        );
        assert_eq!(Field::parse("label."), None);
        assert_eq!(Field::parse("stauts"), None);
    }

    #[test]
    fn text_of_missing_fields_is_none() {
        let event = ApiEvent {
            status: Some(404),
            ..Default::default()
        };
        assert_eq!(event.text(&Field::Status).as_deref(), Some("404"));
        assert_eq!(event.text(&Field::Client), None);
        assert_eq!(event.text(&Field::UserAgent), None);
        assert_eq!(event.number(&Field::Status), Some(404.0));
    }
}
