//! Avro's binary encoding, read straight into the values the JSON conversion takes.
//!
//! The writer schema is compiled once into a [`Plan`]: one node per type, with named types
//! shared, so a recursive schema is a cycle of node indexes. A record's fields that feedloop
//! reads become [`FieldValue`]s, and the others are skipped without building anything. This
//! avoids apache-avro's `Value` tree, whose record field names and map entries cost an
//! allocation each, which made reading a record take longer than parsing its JSON.

use std::borrow::Cow;
use std::collections::HashMap;

use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, Name, RecordSchema, ResolvedSchema, UuidSchema,
};
use apache_avro::Schema;

use crate::decode::json::FieldValue;

/// The maximum number of items of an array or map whose items take no bytes, such as an
/// array of `null`. Other counts are bounded by the bytes left.
const MAX_EMPTY_ITEMS: u64 = 1 << 20;

/// A writer schema compiled for reading.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    nodes: Vec<Node>,
}

/// One type of the writer schema. Child types are indexes into [`Plan::nodes`].
#[derive(Clone, Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    /// A record's fields: names and nodes.
    Record(Vec<(String, usize)>),
    /// An `int` of days since the epoch.
    Date,
    /// A `long` timestamp, with the number of its units per millisecond: 1, 1,000 or
    /// 1,000,000.
    Timestamp(i64),
    /// A UUID written as a string.
    UuidString,
    /// A UUID written as 16 bytes.
    UuidFixed,
    /// A type read as bytes or fixed but not supported as a value, such as `decimal`.
    Unsupported {
        kind: &'static str,
        size: Option<usize>,
    },
    /// Bytes of a big decimal's digits, then its scale; not supported as a value.
    BigDecimal,
    /// A named type whose node is being compiled; replaced before the plan is used.
    Pending,
}

/// A datum that cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BinaryError {
    /// The bytes end before the datum does.
    Truncated,
    /// The bytes are not a datum of the schema.
    Invalid(String),
}

/// A field value that was read but cannot become a [`FieldValue`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UnsupportedValue {
    pub(super) kind: &'static str,
}

impl Plan {
    /// Compiles `schema`, whose root is node 0.
    pub(super) fn compile(schema: &Schema) -> Result<Plan, String> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|err| err.to_string())?;
        let mut compiler = Compiler {
            names: resolved.get_names(),
            nodes: Vec::new(),
            named: HashMap::new(),
        };
        compiler.compile(schema)?;
        Ok(Plan {
            nodes: compiler.nodes,
        })
    }

    /// Returns the fields of the root record, names and nodes, or `None` when the root is
    /// not a record.
    pub(super) fn root_fields(&self) -> Option<&[(String, usize)]> {
        match &self.nodes[0] {
            Node::Record(fields) => Some(fields),
            _ => None,
        }
    }

    /// Reads a value of `node`. An unsupported value is consumed and reported as such.
    /// Text borrows from `input` where it is valid UTF-8.
    pub(super) fn read<'a>(
        &self,
        node: usize,
        input: &mut &'a [u8],
    ) -> Result<Result<FieldValue<'a>, UnsupportedValue>, BinaryError> {
        let value = match &self.nodes[node] {
            Node::Null => FieldValue::Null,
            Node::Boolean => match take(input, 1)?[0] {
                0 => FieldValue::Bool(false),
                1 => FieldValue::Bool(true),
                byte => {
                    return Err(BinaryError::Invalid(format!(
                        "{byte} is not a boolean (0 or 1)"
                    )))
                }
            },
            Node::Int => integer(read_int(input)?.into()),
            Node::Long => integer(read_long(input)?),
            Node::Float => {
                let bytes = take(input, 4)?;
                let x = f32::from_le_bytes(bytes.try_into().expect("4 bytes"));
                FieldValue::Float(f64::from(x))
            }
            Node::Double => {
                let bytes = take(input, 8)?;
                FieldValue::Float(f64::from_le_bytes(bytes.try_into().expect("8 bytes")))
            }
            Node::Bytes => text(read_bytes(input)?, false)?,
            Node::String | Node::UuidString => text(read_bytes(input)?, true)?,
            Node::Fixed(size) => text(take(input, *size)?, false)?,
            Node::Enum(symbols) => {
                let index = read_int(input)?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| {
                        BinaryError::Invalid(format!(
                            "enum index {index} is outside its {} symbols",
                            symbols.len()
                        ))
                    })?;
                FieldValue::Text(Cow::Owned(symbol.clone()))
            }
            Node::Array(items) => {
                let mut values = Vec::new();
                let mut unsupported = None;
                self.read_blocks(*items, input, |plan, input| {
                    match plan.read(*items, input)? {
                        Ok(value) => values.push(value),
                        Err(kind) => unsupported = Some(kind),
                    }
                    Ok(())
                })?;
                if let Some(kind) = unsupported {
                    return Ok(Err(kind));
                }
                FieldValue::Array(values)
            }
            Node::Map(values) => {
                let mut members = Vec::new();
                let mut unsupported = None;
                self.read_blocks(*values, input, |plan, input| {
                    let name = match text(read_bytes(input)?, true)? {
                        FieldValue::Text(name) => name,
                        _ => unreachable!("text returns text"),
                    };
                    match plan.read(*values, input)? {
                        Ok(value) => members.push((name, value)),
                        Err(kind) => unsupported = Some(kind),
                    }
                    Ok(())
                })?;
                if let Some(kind) = unsupported {
                    return Ok(Err(kind));
                }
                FieldValue::Object(members)
            }
            Node::Union(variants) => {
                let index = read_long(input)?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| {
                        BinaryError::Invalid(format!(
                            "union index {index} is outside its {} types",
                            variants.len()
                        ))
                    })?;
                return self.read(*variant, input);
            }
            Node::Record(fields) => {
                // A nested record becomes an object of its fields, in schema order.
                let mut members = Vec::with_capacity(fields.len());
                let mut unsupported = None;
                for (name, field) in fields {
                    match self.read(*field, input)? {
                        Ok(value) => members.push((Cow::Owned(name.clone()), value)),
                        Err(kind) => unsupported = Some(kind),
                    }
                }
                if let Some(kind) = unsupported {
                    return Ok(Err(kind));
                }
                FieldValue::Object(members)
            }
            Node::Date => FieldValue::EpochMillis(i64::from(read_int(input)?) * 86_400_000),
            Node::Timestamp(per_milli) => {
                FieldValue::EpochMillis(read_long(input)?.div_euclid(*per_milli))
            }
            Node::UuidFixed => {
                let bytes = take(input, 16)?;
                FieldValue::Text(Cow::Owned(format_uuid(bytes)))
            }
            Node::BigDecimal => {
                // Digits as a big-endian two's complement integer, then the scale.
                read_bytes(input)?;
                read_long(input)?;
                return Ok(Err(UnsupportedValue {
                    kind: "big-decimal",
                }));
            }
            Node::Unsupported { kind, size } => {
                match size {
                    Some(size) => take(input, *size)?,
                    None => read_bytes(input)?,
                };
                return Ok(Err(UnsupportedValue { kind }));
            }
            Node::Pending => unreachable!("every node is compiled before the plan is used"),
        };
        Ok(Ok(value))
    }

    /// Skips a value of `node`.
    pub(super) fn skip(&self, node: usize, input: &mut &[u8]) -> Result<(), BinaryError> {
        match &self.nodes[node] {
            Node::Null => {}
            Node::Boolean => {
                take(input, 1)?;
            }
            Node::Int | Node::Enum(_) | Node::Date => {
                read_int(input)?;
            }
            Node::Long | Node::Timestamp(_) => {
                read_long(input)?;
            }
            Node::Float => {
                take(input, 4)?;
            }
            Node::Double => {
                take(input, 8)?;
            }
            Node::Bytes | Node::String | Node::UuidString => {
                read_bytes(input)?;
            }
            Node::Fixed(size) => {
                take(input, *size)?;
            }
            Node::UuidFixed => {
                take(input, 16)?;
            }
            Node::Unsupported { size, .. } => {
                match size {
                    Some(size) => take(input, *size)?,
                    None => read_bytes(input)?,
                };
            }
            Node::BigDecimal => {
                read_bytes(input)?;
                read_long(input)?;
            }
            Node::Array(items) => {
                self.read_blocks(*items, input, |plan, input| plan.skip(*items, input))?;
            }
            Node::Map(values) => {
                self.read_blocks(*values, input, |plan, input| {
                    read_bytes(input)?;
                    plan.skip(*values, input)
                })?;
            }
            Node::Union(variants) => {
                let index = read_long(input)?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| {
                        BinaryError::Invalid(format!(
                            "union index {index} is outside its {} types",
                            variants.len()
                        ))
                    })?;
                self.skip(*variant, input)?;
            }
            Node::Record(fields) => {
                for (_, field) in fields {
                    self.skip(*field, input)?;
                }
            }
            Node::Pending => unreachable!("every node is compiled before the plan is used"),
        }
        Ok(())
    }

    /// Reads the blocks of an array or map, calling `item` once per item.
    fn read_blocks<'a>(
        &self,
        item_node: usize,
        input: &mut &'a [u8],
        mut item: impl FnMut(&Plan, &mut &'a [u8]) -> Result<(), BinaryError>,
    ) -> Result<(), BinaryError> {
        loop {
            let count = read_long(input)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                read_long(input)?;
            }
            let count = count.unsigned_abs();
            let limit = if self.takes_bytes(item_node) {
                input.len() as u64
            } else {
                MAX_EMPTY_ITEMS
            };
            if count > limit {
                return Err(if self.takes_bytes(item_node) {
                    BinaryError::Truncated
                } else {
                    BinaryError::Invalid(format!(
                        "a block of {count} empty items is more than {MAX_EMPTY_ITEMS}"
                    ))
                });
            }
            for _ in 0..count {
                item(self, input)?;
            }
        }
    }

    /// Returns true when every value of `node` takes at least one byte.
    fn takes_bytes(&self, node: usize) -> bool {
        match &self.nodes[node] {
            Node::Null => false,
            Node::Fixed(size) => *size > 0,
            Node::Record(fields) => fields.iter().any(|(_, f)| self.takes_bytes(*f)),
            _ => true,
        }
    }
}

/// Compiles schemas into nodes, sharing named types.
struct Compiler<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    nodes: Vec<Node>,
    named: HashMap<Name, usize>,
}

impl Compiler<'_> {
    /// Compiles `schema` and returns its node.
    fn compile(&mut self, schema: &Schema) -> Result<usize, String> {
        if let Schema::Ref { name } = schema {
            if let Some(node) = self.named.get(name) {
                return Ok(*node);
            }
            let target = self
                .names
                .get(name)
                .ok_or_else(|| format!("the schema refers to an unknown type {name}"))?;
            return self.compile(target);
        }
        let name = named_type(schema);
        if let Some(name) = name {
            if let Some(node) = self.named.get(name) {
                return Ok(*node);
            }
        }
        let index = self.nodes.len();
        self.nodes.push(Node::Pending);
        if let Some(name) = name {
            self.named.insert(name.clone(), index);
        }
        let node = match schema {
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int | Schema::TimeMillis => Node::Int,
            Schema::Long | Schema::TimeMicros => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Fixed(fixed) => Node::Fixed(fixed.size),
            Schema::Enum(schema) => Node::Enum(schema.symbols.clone()),
            Schema::Array(array) => Node::Array(self.compile(&array.items)?),
            Schema::Map(map) => Node::Map(self.compile(&map.types)?),
            Schema::Union(union) => Node::Union(
                union
                    .variants()
                    .iter()
                    .map(|variant| self.compile(variant))
                    .collect::<Result<_, _>>()?,
            ),
            Schema::Record(RecordSchema { fields, .. }) => Node::Record(
                fields
                    .iter()
                    .map(|field| Ok((field.name.clone(), self.compile(&field.schema)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Schema::Date => Node::Date,
            Schema::TimestampMillis | Schema::LocalTimestampMillis => Node::Timestamp(1),
            Schema::TimestampMicros | Schema::LocalTimestampMicros => Node::Timestamp(1_000),
            Schema::TimestampNanos | Schema::LocalTimestampNanos => Node::Timestamp(1_000_000),
            Schema::Uuid(UuidSchema::String) => Node::UuidString,
            Schema::Uuid(UuidSchema::Fixed(_) | UuidSchema::Bytes) => Node::UuidFixed,
            Schema::Decimal(DecimalSchema { inner, .. }) => Node::Unsupported {
                kind: "decimal",
                size: match inner {
                    InnerDecimalSchema::Bytes => None,
                    InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
                },
            },
            Schema::BigDecimal => Node::BigDecimal,
            Schema::Duration(_) => Node::Unsupported {
                kind: "duration",
                size: Some(12),
            },
            Schema::Ref { .. } => unreachable!("references are followed above"),
        };
        self.nodes[index] = node;
        Ok(index)
    }
}

/// Returns the name of a named type that a `Ref` can point at.
fn named_type(schema: &Schema) -> Option<&Name> {
    match schema {
        Schema::Record(record) => Some(&record.name),
        Schema::Enum(schema) => Some(&schema.name),
        Schema::Fixed(fixed) => Some(&fixed.name),
        _ => None,
    }
}

/// Returns an integer as the JSON reader would: non-negative ones as unsigned.
fn integer<'a>(n: i64) -> FieldValue<'a> {
    match u64::try_from(n) {
        Ok(unsigned) => FieldValue::Unsigned(unsigned),
        Err(_) => FieldValue::Signed(n),
    }
}

/// Converts bytes to text: a `string` must be UTF-8, and other bytes have invalid UTF-8
/// replaced.
fn text(bytes: &[u8], strict: bool) -> Result<FieldValue<'_>, BinaryError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(err) if strict => {
            return Err(BinaryError::Invalid(format!(
                "a string is not valid UTF-8: {err}"
            )))
        }
        Err(_) => String::from_utf8_lossy(bytes),
    };
    Ok(FieldValue::Text(text))
}

/// Writes 16 bytes as a UUID, such as `123e4567-e89b-12d3-a456-426614174000`.
fn format_uuid(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Takes `n` bytes from the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], BinaryError> {
    if input.len() < n {
        return Err(BinaryError::Truncated);
    }
    let (taken, rest) = input.split_at(n);
    *input = rest;
    Ok(taken)
}

/// Reads a length-prefixed byte string.
fn read_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], BinaryError> {
    let length = read_long(input)?;
    let length = usize::try_from(length)
        .map_err(|_| BinaryError::Invalid(format!("a length of {length} bytes is negative")))?;
    take(input, length)
}

/// Reads a zigzag varint `int`.
fn read_int(input: &mut &[u8]) -> Result<i32, BinaryError> {
    let value = read_long(input)?;
    i32::try_from(value)
        .map_err(|_| BinaryError::Invalid(format!("{value} is outside the range of an int")))
}

/// Reads a zigzag varint `long`.
pub(super) fn read_long(input: &mut &[u8]) -> Result<i64, BinaryError> {
    let mut value: u64 = 0;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    if input.len() >= 10 {
        Err(BinaryError::Invalid(
            "a number is longer than the 10 bytes of a long".to_string(),
        ))
    } else {
        Err(BinaryError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: &str) -> Plan {
        Plan::compile(&Schema::parse_str(json).unwrap()).unwrap()
    }

    /// Reads the root record and returns its fields as an object.
    fn read_root<'a>(plan: &Plan, bytes: &'a [u8]) -> (FieldValue<'a>, usize) {
        let mut input = bytes;
        let value = plan.read(0, &mut input).unwrap().unwrap();
        (value, input.len())
    }

    fn field<'v, 'a>(value: &'v FieldValue<'a>, name: &str) -> &'v FieldValue<'a> {
        let FieldValue::Object(members) = value else {
            panic!("not an object: {value:?}");
        };
        &members.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn long_cases() {
        let cases: [(&[u8], Result<i64, BinaryError>); 6] = [
            (&[0x00], Ok(0)),
            (&[0x01], Ok(-1)),
            (&[0x02], Ok(1)),
            (&[0xac, 0x02], Ok(150)),
            (&[0x80, 0x80], Err(BinaryError::Truncated)),
            (
                &[0xff; 10],
                Err(BinaryError::Invalid(
                    "a number is longer than the 10 bytes of a long".to_string(),
                )),
            ),
        ];
        for (bytes, expected) in cases {
            let mut input = bytes;
            assert_eq!(read_long(&mut input), expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn recursive_record_is_read_and_skipped() {
        let plan = plan(
            r#"{"type": "record", "name": "Node", "fields": [
                {"name": "id", "type": "long"},
                {"name": "next", "type": ["null", "Node"]}]}"#,
        );
        // id 1, next: id 2, next: null; then one byte of the next datum.
        let bytes = [0x02, 0x02, 0x04, 0x00, 0x7f];
        let (value, left) = read_root(&plan, &bytes);
        assert_eq!(left, 1);
        let FieldValue::Object(next) = field(&value, "next") else {
            panic!("next is not a record");
        };
        assert!(matches!(next[0], (ref name, FieldValue::Unsigned(2)) if name == "id"));
        let mut input = &bytes[..];
        plan.skip(0, &mut input).unwrap();
        assert_eq!(input, [0x7f]);
    }

    #[test]
    fn enum_uuid_and_blocks_are_read() {
        let plan = plan(
            r#"{"type": "record", "name": "E", "fields": [
                {"name": "method", "type": {"type": "enum", "name": "M", "symbols": ["GET", "POST"]}},
                {"name": "trace_id", "type": {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}},
                {"name": "labels", "type": {"type": "map", "values": "string"}}]}"#,
        );
        let mut bytes = vec![0x02];
        bytes.extend(0x10u8..0x20);
        // A map block with a negative count (-1) and its size in bytes, then the end.
        bytes.extend([0x01, 0x08, 0x02, b'k', 0x02, b'v', 0x00]);
        let (value, left) = read_root(&plan, &bytes);
        assert_eq!(left, 0);
        assert!(matches!(field(&value, "method"), FieldValue::Text(t) if t == "POST"));
        assert!(matches!(
            field(&value, "trace_id"),
            FieldValue::Text(t) if t == "10111213-1415-1617-1819-1a1b1c1d1e1f"
        ));
        let FieldValue::Object(labels) = field(&value, "labels") else {
            panic!("labels is not a map");
        };
        assert_eq!(labels.len(), 1);
        assert!(matches!(&labels[0], (name, FieldValue::Text(v)) if name == "k" && v == "v"));
    }

    #[test]
    fn invalid_data_is_reported() {
        let plan = plan(
            r#"{"type": "record", "name": "E", "fields": [
                {"name": "ok", "type": "boolean"},
                {"name": "path", "type": "string"},
                {"name": "tags", "type": {"type": "array", "items": "null"}}]}"#,
        );
        let read = |bytes: &[u8]| {
            let mut input = bytes;
            plan.read(0, &mut input).map(|_| ())
        };
        assert_eq!(
            read(&[0x02]),
            Err(BinaryError::Invalid(
                "2 is not a boolean (0 or 1)".to_string()
            ))
        );
        assert_eq!(read(&[0x01, 0x08, b'a']), Err(BinaryError::Truncated));
        assert_eq!(
            read(&[0x01, 0x03]),
            Err(BinaryError::Invalid(
                "a length of -2 bytes is negative".to_string()
            ))
        );
        assert_eq!(
            read(&[0x01, 0x02, 0xff]),
            Err(BinaryError::Invalid(
                "a string is not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 0"
                    .to_string()
            ))
        );
        // 2^21 nulls in one block.
        assert_eq!(
            read(&[0x01, 0x00, 0x80, 0x80, 0x80, 0x02]),
            Err(BinaryError::Invalid(
                "a block of 2097152 empty items is more than 1048576".to_string()
            ))
        );
    }
}
