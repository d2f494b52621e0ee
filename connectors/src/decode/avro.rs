//! Avro records: the fields of a record, by name, to an [`ApiEvent`].
//!
//! A record is read with its writer schema, which a container file carries in its header and
//! a Kafka source takes from a configured schema file. Its fields are matched to the event by
//! feedloop's native field names (`time`, `service`, `method`, … `body`), the names the JSON
//! Lines decoder's default mapping reads, and their values go through the same conversion as
//! JSON values. So a record and the JSON object with the same values give the same event. For
//! example, `null`, `""` and `"-"` leave a field empty, and a missing route is derived from the
//! path. Header names are lower-cased, and labels and headers are sorted. Fields with other
//! names are skipped.
//!
//! The `time` field is required. A `timestamp-millis`, `timestamp-micros` or `timestamp-nanos`
//! value is read in its unit, and digits past the millisecond are dropped, rounding down. The
//! `local-timestamp-*` types are read the same way, as if their local time were UTC, and a
//! `date` is midnight UTC of its day. Any other type is read as a JSON value would be: a string
//! as RFC 3339 or a common log time, a number as epoch seconds, or as milliseconds above 10^11.
//!
//! Enum symbols and UUIDs become text, and so do `bytes` and `fixed` values, with invalid
//! UTF-8 replaced. A `string` must be UTF-8. A `decimal`, `big-decimal` or `duration` value in
//! a field feedloop reads makes the record invalid.
//!
//! [`API_EVENT_SCHEMA`] is feedloop's own schema for these records, shipped as
//! `schema/api-event.avsc`.

use std::path::Path;

mod binary;

use apache_avro::schema::RecordSchema;
use apache_avro::Schema;

use feedloop_rules::ApiEvent;

use self::binary::{BinaryError, Plan, UnsupportedValue};
use super::json::{build_event, FieldValue, Origin, RecordFields};
use super::{DecodeError, JsonMapping};

/// feedloop's Avro schema of an event, `schema/api-event.avsc`: the native field names, `time`
/// as a `timestamp-millis` long, optional fields as unions with `null`, and `labels` and
/// `headers` as maps of strings.
pub const API_EVENT_SCHEMA: &str = include_str!("../../../schema/api-event.avsc");

/// The event fields a record may have, in the order of [`RecordFields`].
const FIELD_NAMES: [&str; 18] = [
    "time",
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
    "labels",
    "headers",
    "body",
];

/// Returns feedloop's own schema, parsed.
pub fn api_event_schema() -> Schema {
    Schema::parse_str(API_EVENT_SCHEMA).expect("schema/api-event.avsc is a valid Avro schema")
}

/// Reads and parses an Avro schema file (`.avsc`). The error names the path and gives the
/// parser's message.
pub fn load_schema(path: &Path) -> Result<Schema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("failed to read Avro schema {}: {err}", path.display()))?;
    Schema::parse_str(&text)
        .map_err(|err| format!("invalid Avro schema {}: {}", path.display(), describe(&err)))
}

/// Turns Avro records of one writer schema into events.
#[derive(Clone, Debug)]
pub struct RecordDecoder {
    schema: Schema,
    plan: Plan,
    /// For each field of the writer schema, in order: its name, its node in the plan, and the
    /// index of the event field it fills in [`FIELD_NAMES`], or `None` when the event has no
    /// field of that name.
    fields: Vec<(String, usize, Option<usize>)>,
    /// The default JSON mapping, whose conversion rules the values go through. It is built
    /// once, because building it formats a pointer for every field.
    mapping: JsonMapping,
}

/// The reason a datum could not become an event.
#[derive(Debug)]
pub enum DatumError {
    /// The bytes are not a record of the schema: what is wrong, and true when the bytes ended
    /// before the record did. Where the next record of the same bytes starts is unknown.
    Binary { message: String, truncated: bool },
    /// The record was read to its end, but a field value cannot be used.
    Field(DecodeError),
}

impl RecordDecoder {
    /// Creates a decoder for records written with `schema`, which must be a record with a
    /// `time` field. The error describes what is wrong with the schema.
    pub fn new(schema: Schema) -> Result<RecordDecoder, String> {
        let Schema::Record(RecordSchema { name, .. }) = &schema else {
            return Err(format!(
                "the schema is {}, not a record; feedloop reads records with fields such as \
                 time, method, path and status",
                kind_name(&schema)
            ));
        };
        let plan = Plan::compile(&schema)?;
        let fields: Vec<(String, usize, Option<usize>)> = plan
            .root_fields()
            .expect("a record schema compiles to a record")
            .iter()
            .map(|(field, node)| {
                let slot = FIELD_NAMES.iter().position(|name| name == field);
                (field.clone(), *node, slot)
            })
            .collect();
        if !fields.iter().any(|(_, _, slot)| *slot == Some(0)) {
            return Err(format!(
                "record {name} has no field `time`; every event needs an event time, so add \
                 one, such as {{\"name\": \"time\", \"type\": {{\"type\": \"long\", \
                 \"logicalType\": \"timestamp-millis\"}}}}"
            ));
        }
        Ok(RecordDecoder {
            schema,
            plan,
            fields,
            mapping: JsonMapping::default(),
        })
    }

    /// Returns the writer schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Reads one record from the start of `bytes`, advancing past it, and converts it.
    ///
    /// A field value that cannot be used fails the record only after the whole record was
    /// read, so `bytes` is then at the start of the next record.
    pub fn read(&self, bytes: &mut &[u8]) -> Result<ApiEvent, DatumError> {
        let mut found: [Option<FieldValue<'_>>; 18] = Default::default();
        let mut unusable = None;
        for (name, node, slot) in &self.fields {
            let result = match slot {
                Some(index) => self.plan.read(*node, bytes).map(|value| match value {
                    Ok(value) => found[*index] = Some(value),
                    Err(UnsupportedValue { kind }) => {
                        unusable.get_or_insert(DecodeError::new(format!(
                            "invalid {name} in Avro field `{name}`: values of Avro type \
                             {kind} are not supported; use a string or number type for this \
                             field"
                        )));
                    }
                }),
                None => self.plan.skip(*node, bytes),
            };
            result.map_err(|err| match err {
                BinaryError::Truncated => DatumError::Binary {
                    message: format!("the bytes end inside field `{name}`"),
                    truncated: true,
                },
                BinaryError::Invalid(reason) => DatumError::Binary {
                    message: format!("invalid field `{name}`: {reason}"),
                    truncated: false,
                },
            })?;
        }
        if let Some(err) = unusable {
            return Err(DatumError::Field(err));
        }

        let [time, service, method, route, path, query, status, latency_ms, request_bytes, response_bytes, client, principal, user_agent, referer, trace_id, labels, headers, body] =
            found;
        let fields = RecordFields {
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
        };
        build_event(fields, &self.mapping, Origin::Avro).map_err(DatumError::Field)
    }
}

/// Returns the name of a schema's type for messages, such as `string` or `array`.
fn kind_name(schema: &Schema) -> String {
    match schema {
        Schema::Union(_) => "a union".to_string(),
        Schema::Array(_) => "an array".to_string(),
        Schema::Map(_) => "a map".to_string(),
        Schema::Enum(_) => "an enum".to_string(),
        Schema::Fixed(_) => "a fixed".to_string(),
        other => format!(
            "of type {}",
            serde_json::to_string(other).unwrap_or_default()
        ),
    }
}

/// Writes an Avro error with the errors that caused it, such as
/// `Failed to read string: failed to fill whole buffer`.
pub(crate) fn describe(err: &apache_avro::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The first byte of a message in Confluent's wire format.
pub const CONFLUENT_MAGIC: u8 = 0;

/// The bytes before the record in Confluent's wire format: the magic byte and the schema id
/// as a 4-byte big-endian integer.
const CONFLUENT_HEADER_BYTES: usize = 5;

/// Decodes messages in Confluent's wire format: [`CONFLUENT_MAGIC`], the schema registry id
/// as a 4-byte big-endian integer, and one record in Avro's binary encoding.
///
/// No schema registry is contacted: every accepted id is read with one writer schema.
#[derive(Clone, Debug)]
pub struct ConfluentDecoder {
    records: RecordDecoder,
    /// The accepted schema ids, or `None` for any id.
    schema_ids: Option<Vec<u32>>,
    /// The origin of the writer schema, such as a path, for messages.
    schema_name: String,
}

impl ConfluentDecoder {
    /// Creates a decoder that reads records of the accepted ids with `records`' schema.
    /// `schema_name` names that schema in errors.
    pub fn new(
        records: RecordDecoder,
        schema_ids: Option<Vec<u32>>,
        schema_name: String,
    ) -> ConfluentDecoder {
        ConfluentDecoder {
            records,
            schema_ids,
            schema_name,
        }
    }

    /// Decodes one message. The error names the fault and the fix.
    pub fn decode(&self, message: &[u8]) -> Result<ApiEvent, DecodeError> {
        let Some((header, body)) = message.split_first_chunk::<CONFLUENT_HEADER_BYTES>() else {
            return Err(DecodeError::new(format!(
                "invalid Confluent Avro message: it has {} bytes, fewer than the 5 of the \
                 header (magic byte 0 and a 4-byte schema id); check that the producer uses \
                 Confluent's Avro serializer",
                message.len()
            )));
        };
        if header[0] != CONFLUENT_MAGIC {
            return Err(DecodeError::new(format!(
                "invalid Confluent Avro message: magic byte {}, expected 0; the message is not \
                 in Confluent's wire format, so check the producer's serializer or the source's \
                 format",
                header[0]
            )));
        }
        let schema_id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if let Some(ids) = &self.schema_ids {
            if !ids.contains(&schema_id) {
                return Err(DecodeError::new(format!(
                    "unknown schema id {schema_id}: this source reads {} with {}; add the id \
                     to avro.schema_ids if the message was written with that schema",
                    list(ids),
                    self.schema_name
                )));
            }
        }

        let mut rest = body;
        let event = self.records.read(&mut rest).map_err(|err| match err {
            DatumError::Binary {
                message,
                truncated: true,
            } => DecodeError::new(format!(
                "truncated Avro body: the {}-byte record of schema id {schema_id} ends too \
                     soon, because {message}; the message was cut short, or written with \
                     another schema than {}",
                body.len(),
                self.schema_name
            )),
            DatumError::Binary { message, .. } => DecodeError::new(format!(
                "invalid Avro body of schema id {schema_id}: {message}; check that the id was \
                 written with {}",
                self.schema_name
            )),
            DatumError::Field(err) => err,
        })?;
        if !rest.is_empty() {
            return Err(DecodeError::new(format!(
                "invalid Avro body of schema id {schema_id}: {} bytes follow the record; the \
                 message was written with another schema than {}, or holds more than one record",
                rest.len(),
                self.schema_name
            )));
        }
        Ok(event)
    }
}

/// Names schema ids as `id 4` or `ids 1, 2 and 3`.
fn list(ids: &[u32]) -> String {
    let texts: Vec<String> = ids.iter().map(u32::to_string).collect();
    match texts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("ids {} and {last}", rest.join(", ")),
        _ => format!("id {}", texts.join("")),
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::{Record, Value};
    use apache_avro::writer::datum::GenericDatumWriter;

    use super::*;
    use crate::decode::{Decoder, Format};

    /// Encodes a record of `schema` with the given field values; unset fields get `null`.
    fn datum(schema: &Schema, fields: &[(&str, Value)]) -> Vec<u8> {
        let mut record = Record::new(schema).unwrap();
        for (name, value) in fields {
            record.put(name, value.clone());
        }
        GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap()
    }

    fn some(value: Value) -> Value {
        Value::Union(1, Box::new(value))
    }

    fn none() -> Value {
        Value::Union(0, Box::new(Value::Null))
    }

    fn text(value: &str) -> Value {
        Value::String(value.to_string())
    }

    fn map(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), text(value)))
                .collect(),
        )
    }

    /// Returns a record of the shipped schema with every field set, and a null route.
    fn full_record() -> Vec<(&'static str, Value)> {
        vec![
            ("time", Value::TimestampMillis(1_431_857_103_250)),
            ("service", text("shop")),
            ("method", text("post")),
            ("route", none()),
            ("path", text("/users/42/orders")),
            ("query", some(text("page=2"))),
            ("status", some(Value::Int(201))),
            ("latency_ms", some(Value::Double(12.5))),
            ("request_bytes", some(Value::Long(512))),
            ("response_bytes", some(Value::Long(1024))),
            ("client", text("2001:db8::1")),
            ("principal", some(text("key-7"))),
            ("user_agent", some(text("curl/8.0"))),
            ("referer", some(text("-"))),
            ("trace_id", some(text("abc123"))),
            ("labels", map(&[("region", "eu"), ("env", "prod")])),
            ("headers", map(&[("X-Api-Key", "k1"), ("Accept", "a, b")])),
            ("body", some(text("{\"q\":1}"))),
        ]
    }

    /// The JSON record with the same values as [`full_record`].
    const FULL_JSON: &str = r#"{"time": 1431857103250, "service": "shop", "method": "post",
        "path": "/users/42/orders", "query": "page=2", "status": 201, "latency_ms": 12.5,
        "request_bytes": 512, "response_bytes": 1024, "client": "2001:db8::1",
        "principal": "key-7", "user_agent": "curl/8.0", "referer": "-", "trace_id": "abc123",
        "labels": {"region": "eu", "env": "prod"}, "headers": {"X-Api-Key": "k1", "Accept": "a, b"},
        "body": "{\"q\":1}"}"#;

    fn decode_datum(decoder: &RecordDecoder, bytes: &[u8]) -> Result<ApiEvent, String> {
        let mut rest = bytes;
        decoder.read(&mut rest).map_err(|err| match err {
            DatumError::Binary { message, .. } => format!("binary: {message}"),
            DatumError::Field(err) => err.to_string(),
        })
    }

    fn shipped() -> RecordDecoder {
        RecordDecoder::new(api_event_schema()).unwrap()
    }

    fn schema_with_time(time_type: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type": "record", "name": "E", "fields": [
                {{"name": "time", "type": {time_type}}},
                {{"name": "path", "type": "string"}},
                {{"name": "extra", "type": {{"type": "array", "items": "long"}}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn record_gives_same_event_as_json() {
        let schema = api_event_schema();
        let bytes = datum(&schema, &full_record());
        let from_avro = decode_datum(&shipped(), &bytes).unwrap();
        let from_json = Decoder::new(Format::Json(JsonMapping::default()))
            .decode(FULL_JSON.as_bytes())
            .unwrap();
        assert_eq!(from_avro, from_json);
        assert_eq!(from_avro.time_ms, 1_431_857_103_250);
        assert_eq!(from_avro.method, "POST");
        assert_eq!(from_avro.route, "/users/{id}/orders");
        assert_eq!(from_avro.referer, None);
        assert_eq!(
            from_avro.headers,
            vec![
                ("accept".to_string(), "a, b".to_string()),
                ("x-api-key".to_string(), "k1".to_string())
            ]
        );
        assert_eq!(
            from_avro.labels,
            vec![
                ("env".to_string(), "prod".to_string()),
                ("region".to_string(), "eu".to_string())
            ]
        );
    }

    #[test]
    fn time_logical_types_and_plain_values() {
        let cases: [(&str, Value, i64); 8] = [
            (
                r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
                Value::TimestampMillis(1_431_857_103_250),
                1_431_857_103_250,
            ),
            (
                r#"{"type": "long", "logicalType": "timestamp-micros"}"#,
                Value::TimestampMicros(1_431_857_103_250_999),
                1_431_857_103_250,
            ),
            (
                r#"{"type": "long", "logicalType": "timestamp-nanos"}"#,
                Value::TimestampNanos(1_431_857_103_250_999_999),
                1_431_857_103_250,
            ),
            (
                r#"{"type": "long", "logicalType": "local-timestamp-millis"}"#,
                Value::LocalTimestampMillis(1_431_857_103_250),
                1_431_857_103_250,
            ),
            (
                r#"{"type": "long", "logicalType": "timestamp-micros"}"#,
                Value::TimestampMicros(-1_500),
                -2,
            ),
            (
                r#"{"type": "int", "logicalType": "date"}"#,
                Value::Date(16_572),
                1_431_820_800_000,
            ),
            (r#""long""#, Value::Long(1_431_857_103), 1_431_857_103_000),
            (
                r#""string""#,
                text("2015-05-17T10:05:03.250Z"),
                1_431_857_103_250,
            ),
        ];
        for (time_type, value, expected) in cases {
            let schema = schema_with_time(time_type);
            let decoder = RecordDecoder::new(schema.clone()).unwrap();
            let bytes = datum(
                &schema,
                &[
                    ("time", value),
                    ("path", text("/a")),
                    ("extra", Value::Array(vec![Value::Long(1)])),
                ],
            );
            let event = decode_datum(&decoder, &bytes).unwrap();
            assert_eq!(event.time_ms, expected, "time of type {time_type}");
        }
    }

    #[test]
    fn null_time_is_missing() {
        let schema = schema_with_time(r#"["null", "long"]"#);
        let decoder = RecordDecoder::new(schema.clone()).unwrap();
        let bytes = datum(
            &schema,
            &[
                ("time", none()),
                ("path", text("/a")),
                ("extra", Value::Array(Vec::new())),
            ],
        );
        assert_eq!(
            decode_datum(&decoder, &bytes).unwrap_err(),
            "missing time in Avro field `time`: every record needs an event time"
        );
    }

    #[test]
    fn invalid_field_names_avro_field() {
        let schema = api_event_schema();
        let mut fields = full_record();
        fields[6].1 = some(Value::Int(1234));
        let bytes = datum(&schema, &fields);
        assert_eq!(
            decode_datum(&shipped(), &bytes).unwrap_err(),
            "invalid status 1234 in Avro field `status`: expected an HTTP status code from 100 to 999"
        );
    }

    #[test]
    fn decimal_field_is_unsupported() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "E", "fields": [
                {"name": "time", "type": "long"},
                {"name": "latency_ms", "type": {"type": "bytes", "logicalType": "decimal",
                 "precision": 6, "scale": 2}}]}"#,
        )
        .unwrap();
        let decoder = RecordDecoder::new(schema.clone()).unwrap();
        let bytes = datum(
            &schema,
            &[
                ("time", Value::Long(1_431_857_103)),
                ("latency_ms", Value::Decimal(vec![4, 210].into())),
            ],
        );
        assert_eq!(
            decode_datum(&decoder, &bytes).unwrap_err(),
            "invalid latency_ms in Avro field `latency_ms`: values of Avro type decimal are not \
             supported; use a string or number type for this field"
        );
    }

    #[test]
    fn schema_without_time_is_rejected() {
        let schema = Schema::parse_str(
            r#"{"type": "record", "name": "Hit", "namespace": "web", "fields": [
                {"name": "ts", "type": "long"}]}"#,
        )
        .unwrap();
        let err = RecordDecoder::new(schema).unwrap_err();
        assert!(
            err.starts_with("record web.Hit has no field `time`; every event needs an event time"),
            "{err}"
        );
        let err = RecordDecoder::new(Schema::String).unwrap_err();
        assert!(
            err.starts_with("the schema is of type \"string\", not a record;"),
            "{err}"
        );
    }

    #[test]
    fn load_schema_names_path_and_parser_message() {
        let dir = std::env::temp_dir().join(format!("feedloop-avsc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.avsc");
        std::fs::write(&path, r#"{"type": "record", "name": "E"}"#).unwrap();
        let err = load_schema(&path).unwrap_err();
        assert_eq!(
            err,
            format!(
                "invalid Avro schema {}: No `fields` in record",
                path.display()
            )
        );
        let missing = dir.join("missing.avsc");
        let err = load_schema(&missing).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "failed to read Avro schema {}: ",
                missing.display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn confluent(ids: Option<Vec<u32>>) -> ConfluentDecoder {
        ConfluentDecoder::new(shipped(), ids, "schema api.avsc".to_string())
    }

    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut message = vec![CONFLUENT_MAGIC];
        message.extend_from_slice(&id.to_be_bytes());
        message.extend_from_slice(body);
        message
    }

    fn decode_message(decoder: &ConfluentDecoder, message: &[u8]) -> Result<ApiEvent, String> {
        decoder.decode(message).map_err(|err| err.to_string())
    }

    #[test]
    fn confluent_message_decodes() {
        let body = datum(&api_event_schema(), &full_record());
        let event = decode_message(&confluent(Some(vec![1, 7])), &framed(7, &body)).unwrap();
        assert_eq!(event.path, "/users/42/orders");
        let event = decode_message(&confluent(None), &framed(123_456, &body)).unwrap();
        assert_eq!(event.status, Some(201));
    }

    #[test]
    fn confluent_bad_messages() {
        let body = datum(&api_event_schema(), &full_record());
        let decoder = confluent(Some(vec![1, 2, 3]));

        let mut wrong_magic = framed(1, &body);
        wrong_magic[0] = b'{';
        assert_eq!(
            decode_message(&decoder, &wrong_magic).unwrap_err(),
            "invalid Confluent Avro message: magic byte 123, expected 0; the message is not in \
             Confluent's wire format, so check the producer's serializer or the source's format"
        );
        assert_eq!(
            decode_message(&decoder, &framed(9, &body)).unwrap_err(),
            "unknown schema id 9: this source reads ids 1, 2 and 3 with schema api.avsc; add the \
             id to avro.schema_ids if the message was written with that schema"
        );
        assert_eq!(
            decode_message(&decoder, &[0, 0, 0]).unwrap_err(),
            "invalid Confluent Avro message: it has 3 bytes, fewer than the 5 of the header \
             (magic byte 0 and a 4-byte schema id); check that the producer uses Confluent's \
             Avro serializer"
        );
        // The last 10 bytes are the headers map's end, and the body's union index and text.
        let cut = framed(2, &body[..body.len() - 10]);
        assert_eq!(
            decode_message(&decoder, &cut).unwrap_err(),
            format!(
                "truncated Avro body: the {}-byte record of schema id 2 ends too soon, because \
                 the bytes end inside field `headers`; the message was cut short, or written \
                 with another schema than schema api.avsc",
                body.len() - 10
            )
        );
        let mut bad_union = framed(1, &body);
        // The route's union index, right after time, service and method.
        let route_at = 5 + 6 + 1 + 4 + 1 + 4;
        bad_union[route_at] = 8;
        assert_eq!(
            decode_message(&decoder, &bad_union).unwrap_err(),
            "invalid Avro body of schema id 1: invalid field `route`: union index 4 is outside \
             its 2 types; check that the id was written with schema api.avsc"
        );
        let mut long = framed(3, &body);
        long.extend_from_slice(b"xyz");
        assert_eq!(
            decode_message(&decoder, &long).unwrap_err(),
            "invalid Avro body of schema id 3: 3 bytes follow the record; the message was \
             written with another schema than schema api.avsc, or holds more than one record"
        );
    }

    #[test]
    fn list_joins_ids() {
        assert_eq!(list(&[4]), "id 4");
        assert_eq!(list(&[4, 5]), "ids 4 and 5");
        assert_eq!(list(&[1, 2, 3]), "ids 1, 2 and 3");
    }
}
