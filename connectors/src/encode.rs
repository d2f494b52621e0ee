//! Events as feedloop's native JSON, the layout the JSON decoder's default mapping reads.
//!
//! `feedloop events` uses this to turn access logs into JSON Lines that can be published to
//! Kafka, and decoding the output again gives back the same event.

use serde_json::{Map, Number, Value};

use feedloop_rules::ApiEvent;

/// Returns the event as a native JSON object; missing fields are left out.
pub fn native_json(event: &ApiEvent) -> Value {
    let mut object = Map::new();
    object.insert("time".into(), Value::from(event.time_ms));
    let texts = [
        ("service", Some(&event.service)),
        ("method", Some(&event.method)),
        ("route", Some(&event.route)),
        ("path", Some(&event.path)),
        ("query", event.query.as_ref()),
        ("client", Some(&event.client)),
        ("principal", event.principal.as_ref()),
        ("user_agent", event.user_agent.as_ref()),
        ("referer", event.referer.as_ref()),
        ("trace_id", event.trace_id.as_ref()),
        ("body", event.body.as_ref()),
    ];
    for (name, value) in texts {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            object.insert(name.into(), Value::from(value.as_str()));
        }
    }
    // The decoder drops one leading `?` from `query`, so a query that starts with `?` (as in
    // `/a??b`) gets one more to keep.
    if let Some(query) = event.query.as_ref().filter(|q| q.starts_with('?')) {
        object.insert("query".into(), Value::from(format!("?{query}")));
    }
    if let Some(status) = event.status {
        object.insert("status".into(), Value::from(status));
    }
    if let Some(latency) = event.latency_ms.and_then(Number::from_f64) {
        object.insert("latency_ms".into(), Value::Number(latency));
    }
    if let Some(bytes) = event.request_bytes {
        object.insert("request_bytes".into(), Value::from(bytes));
    }
    if let Some(bytes) = event.response_bytes {
        object.insert("response_bytes".into(), Value::from(bytes));
    }
    for (name, pairs) in [("labels", &event.labels), ("headers", &event.headers)] {
        if !pairs.is_empty() {
            let map = pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            object.insert(name.into(), Value::Object(map));
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, Format, JsonMapping};

    #[test]
    fn native_json_round_trips_through_decoder() {
        let event = ApiEvent {
            time_ms: 1_431_857_103_250,
            service: "shop".into(),
            method: "POST".into(),
            route: "/v1/orders/{id}".into(),
            path: "/v1/orders/42".into(),
            query: Some("expand=items".into()),
            status: Some(201),
            latency_ms: Some(12.5),
            request_bytes: Some(310),
            response_bytes: Some(1200),
            client: "2001:db8::7".into(),
            principal: Some("user-9".into()),
            user_agent: Some("curl/8.5.0".into()),
            referer: None,
            trace_id: Some("4bf92f3577b34da6".into()),
            labels: vec![("env".into(), "prod".into())],
            headers: vec![("x-api-key".into(), "k1".into())],
            body: None,
            problem: None,
        };
        let decoder = Decoder::new(Format::Json(JsonMapping::default()));
        let line = serde_json::to_vec(&native_json(&event)).unwrap();
        assert_eq!(decoder.decode(&line).unwrap(), event);

        let odd_query = ApiEvent {
            query: Some("??x/".into()),
            ..event
        };
        let line = serde_json::to_vec(&native_json(&odd_query)).unwrap();
        assert_eq!(decoder.decode(&line).unwrap(), odd_query);
    }
}
