//! JSON Lines in feedloop's native schema, the layout the default `JsonMapping` reads.
//!
//! The time is written as RFC 3339 with milliseconds in UTC. Fields that an event lacks are
//! left out rather than written as `null`, and so is an empty route, which makes the decoder
//! derive the route from the path.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use feedloop_rules::ApiEvent;

use super::GeneratedEvent;

/// Counts of the records that [`write_jsonl`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Records written.
    pub events: u64,
    /// Records that belong to attack campaigns.
    pub attack_events: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
}

/// Writes every event as one JSON Lines record.
pub fn write_jsonl(
    events: impl IntoIterator<Item = GeneratedEvent>,
    mut output: impl Write,
) -> io::Result<WriteSummary> {
    let mut summary = WriteSummary::default();
    let mut line = Vec::with_capacity(1_024);
    for generated in events {
        line.clear();
        encode_jsonl(&generated.event, &mut line);
        output.write_all(&line)?;
        summary.events += 1;
        summary.attack_events += u64::from(generated.attack.is_some());
        summary.bytes += line.len() as u64;
    }
    output.flush()?;
    Ok(summary)
}

/// Appends one event to `line` as a JSON object followed by a newline.
///
/// # Panics
///
/// Panics when `time_ms` is outside the range chrono can represent, about 262,000 years
/// either side of 1970.
pub fn encode_jsonl(event: &ApiEvent, line: &mut Vec<u8>) {
    let time = DateTime::from_timestamp_millis(event.time_ms)
        .expect("generated times lie within chrono's range")
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let record = NativeRecord {
        time: &time,
        service: &event.service,
        method: &event.method,
        route: &event.route,
        path: &event.path,
        query: event.query.as_deref(),
        status: event.status,
        latency_ms: event.latency_ms,
        request_bytes: event.request_bytes,
        response_bytes: event.response_bytes,
        client: &event.client,
        principal: event.principal.as_deref(),
        user_agent: event.user_agent.as_deref(),
        referer: event.referer.as_deref(),
        trace_id: event.trace_id.as_deref(),
        labels: Pairs(&event.labels),
        headers: Pairs(&event.headers),
        body: event.body.as_deref(),
    };
    serde_json::to_writer(&mut *line, &record).expect("writing JSON to a Vec cannot fail");
    line.push(b'\n');
}

/// One record with the native field names, in the order a reader expects them.
#[derive(Serialize)]
struct NativeRecord<'a> {
    time: &'a str,
    service: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    route: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_bytes: Option<u64>,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Pairs::is_empty")]
    labels: Pairs<'a>,
    #[serde(skip_serializing_if = "Pairs::is_empty")]
    headers: Pairs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// Name and value pairs, written as a JSON object.
struct Pairs<'a>(&'a [(String, String)]);

impl Pairs<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}
