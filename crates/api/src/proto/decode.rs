//! Protobuf message bytes → upstream JSON, driven by the schema table.
//!
//! Follows what upstream does when it reads a protobuf body into its Go types and
//! writes them out as JSON: the last occurrence of a singular scalar wins, repeated
//! occurrences of a singular message merge (their bytes are concatenated), unknown
//! fields are skipped, lists may be packed or not, and a zero value of a non-pointer
//! `omitempty` field is left out while a zero value of a pointer field is kept.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::table::{Field, Message, Presence, Shape, Special, Ty, message_at};
use super::values::{format_duration, format_micro_time, format_time};
use super::wire::{Reader, Wire};
use super::{MAX_DEPTH, ProtoError};

/// What has been read for one schema field.
enum Acc<'a> {
    Absent,
    /// A singular scalar: the last value.
    Scalar(Wire<'a>),
    /// A singular message: every occurrence, merged by concatenation.
    Message(Vec<&'a [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

/// Decodes one message into its JSON form.
pub(crate) fn message(
    msg: &'static Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    if let Some(special) = msg.special {
        return self::special(special, msg, bytes, depth);
    }
    let mut out = Map::new();
    object_into(msg, bytes, depth, &mut out)?;
    Ok(Value::Object(out))
}

/// Decodes a message's fields into `out` (shared with `,inline` fields).
fn object_into(
    msg: &'static Message,
    bytes: &[u8],
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    let mut acc: Vec<Acc<'_>> = msg
        .fields
        .iter()
        .map(|f| match f.shape {
            Shape::One => Acc::Absent,
            Shape::Rep => Acc::List(Vec::new()),
            Shape::Map => Acc::Map(Map::new()),
        })
        .collect();
    let mut reader = Reader::new(bytes);
    while let Some((number, wire)) = reader.field()? {
        let Some(i) = msg.fields.iter().position(|f| f.number == number) else {
            continue; // unknown field: skipped, as upstream does
        };
        accumulate(msg, &msg.fields[i], &mut acc[i], wire, depth)?;
    }
    for (field, acc) in msg.fields.iter().zip(acc) {
        emit(msg, field, acc, depth, out)?;
    }
    Ok(())
}

fn wrong_wire(msg: &Message, field: &Field, wire: &Wire<'_>) -> ProtoError {
    ProtoError::WireType {
        message: msg.name,
        field: field.number,
        wire_type: wire.wire_type(),
    }
}

/// The accumulator does not match the field's shape (cannot happen: both come from
/// the same table entry).
fn mixed_shapes(msg: &Message, field: &Field) -> ProtoError {
    ProtoError::Invalid(format!(
        "{}: field {} changed shape",
        msg.name, field.number
    ))
}

fn accumulate<'a>(
    msg: &'static Message,
    field: &'static Field,
    acc: &mut Acc<'a>,
    wire: Wire<'a>,
    depth: usize,
) -> Result<(), ProtoError> {
    match field.shape {
        Shape::One => match (field.ty, wire) {
            (Ty::Msg(_), Wire::Len(bytes)) => match acc {
                Acc::Message(parts) => parts.push(bytes),
                _ => *acc = Acc::Message(vec![bytes]),
            },
            (ty, wire) if wire_matches(ty, &wire) => *acc = Acc::Scalar(wire),
            (_, wire) => return Err(wrong_wire(msg, field, &wire)),
        },
        Shape::Rep => {
            let Acc::List(list) = acc else {
                return Err(mixed_shapes(msg, field));
            };
            match (field.ty, wire) {
                (Ty::Msg(index), Wire::Len(bytes)) => {
                    list.push(message(message_at(index), bytes, depth + 1)?)
                }
                (Ty::Bool | Ty::I32 | Ty::I64, Wire::Len(packed)) => {
                    let mut reader = Reader::new(packed);
                    while !reader.is_empty() {
                        list.push(scalar(field.ty, Wire::Varint(reader.varint()?))?);
                    }
                }
                (Ty::F64, Wire::Len(packed)) => {
                    let mut reader = Reader::new(packed);
                    while !reader.is_empty() {
                        list.push(scalar(field.ty, Wire::Fixed64(reader.fixed64()?))?);
                    }
                }
                (ty, wire) if wire_matches(ty, &wire) => list.push(scalar(ty, wire)?),
                (_, wire) => return Err(wrong_wire(msg, field, &wire)),
            }
        }
        Shape::Map => {
            let Wire::Len(entry) = wire else {
                return Err(wrong_wire(msg, field, &wire));
            };
            let Acc::Map(map) = acc else {
                return Err(mixed_shapes(msg, field));
            };
            let (key, value) = map_entry(msg, field, entry, depth)?;
            map.insert(key, value);
        }
    }
    Ok(())
}

fn wire_matches(ty: Ty, wire: &Wire<'_>) -> bool {
    matches!(
        (ty, wire),
        (Ty::Str | Ty::Bytes | Ty::Msg(_), Wire::Len(_))
            | (Ty::Bool | Ty::I32 | Ty::I64, Wire::Varint(_))
            | (Ty::F64, Wire::Fixed64(_))
    )
}

/// A map entry: key (field 1, a string) and value (field 2); missing parts are zero
/// values, as upstream reads them.
fn map_entry(
    msg: &'static Message,
    field: &'static Field,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value: Option<Wire<'_>> = None;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut reader = Reader::new(entry);
    while let Some((number, wire)) = reader.field()? {
        match (number, wire) {
            (1, Wire::Len(bytes)) => key = utf8(bytes)?,
            (1, wire) => return Err(wrong_wire(msg, field, &wire)),
            (2, Wire::Len(bytes)) if matches!(field.ty, Ty::Msg(_)) => parts.push(bytes),
            (2, wire) if wire_matches(field.ty, &wire) => value = Some(wire),
            (2, wire) => return Err(wrong_wire(msg, field, &wire)),
            _ => {}
        }
    }
    let value = match field.ty {
        Ty::Msg(index) => message(message_at(index), &parts.concat(), depth + 1)?,
        ty => match value {
            Some(wire) => scalar(ty, wire)?,
            None => zero(ty),
        },
    };
    Ok((key, value))
}

fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::I32 | Ty::I64 | Ty::F64 => Value::from(0),
        Ty::Msg(_) => Value::Null,
    }
}

fn utf8(bytes: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::InvalidUtf8)
}

/// A scalar value; the wire type has been checked by the caller.
fn scalar(ty: Ty, wire: Wire<'_>) -> Result<Value, ProtoError> {
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Len(bytes)) => Value::String(utf8(bytes)?),
        (Ty::Bytes, Wire::Len(bytes)) => Value::String(BASE64.encode(bytes)),
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // Upstream truncates to the field's width, as the protobuf spec says.
        (Ty::I32, Wire::Varint(v)) => Value::from(v as i32),
        (Ty::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::F64, Wire::Fixed64(bits)) => float(f64::from_bits(bits))?,
        _ => return Err(ProtoError::Invalid(format!("unexpected {ty:?} value"))),
    })
}

/// A double as JSON; whole numbers print without a fraction, as Go prints them.
fn float(value: f64) -> Result<Value, ProtoError> {
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        return Ok(Value::from(value as i64));
    }
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| ProtoError::Invalid(format!("{value} is not a JSON number")))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn emit(
    msg: &'static Message,
    field: &'static Field,
    acc: Acc<'_>,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    let value = match acc {
        Acc::Absent => return Ok(()),
        Acc::Scalar(wire) => scalar(field.ty, wire)?,
        Acc::Message(parts) => {
            let Ty::Msg(index) = field.ty else {
                return Err(ProtoError::Invalid(format!(
                    "{}: field {} is not a message",
                    msg.name, field.number
                )));
            };
            let bytes = if parts.len() == 1 {
                parts[0].to_vec()
            } else {
                parts.concat()
            };
            let target = message_at(index);
            if field.presence == Presence::Inline {
                if target.special.is_some() {
                    return Err(ProtoError::Invalid(format!(
                        "{}: cannot inline {}",
                        msg.name, target.name
                    )));
                }
                return object_into(target, &bytes, depth + 1, out);
            }
            message(target, &bytes, depth + 1)?
        }
        Acc::List(list) if list.is_empty() => return Ok(()),
        Acc::List(list) => Value::Array(list),
        Acc::Map(map) if map.is_empty() => return Ok(()),
        Acc::Map(map) => Value::Object(map),
    };
    if field.presence == Presence::OmitZero && is_zero(&value) {
        return Ok(());
    }
    out.insert(field.json.to_string(), value);
    Ok(())
}

/// The fields of a special message by number (later occurrences win; messages merge).
struct Fields<'a> {
    values: Vec<(u32, Wire<'a>)>,
}

impl<'a> Fields<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, ProtoError> {
        let mut values = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some(item) = reader.field()? {
            values.push(item);
        }
        Ok(Fields { values })
    }

    fn varint(&self, msg: &Message, number: u32) -> Result<Option<u64>, ProtoError> {
        let mut out = None;
        for (n, wire) in &self.values {
            if *n == number {
                match wire {
                    Wire::Varint(v) => out = Some(*v),
                    other => {
                        return Err(ProtoError::WireType {
                            message: msg.name,
                            field: number,
                            wire_type: other.wire_type(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every length-delimited occurrence of a field.
    fn all_bytes(&self, msg: &Message, number: u32) -> Result<Vec<&'a [u8]>, ProtoError> {
        let mut out = Vec::new();
        for (n, wire) in &self.values {
            if *n == number {
                match wire {
                    Wire::Len(bytes) => out.push(*bytes),
                    other => {
                        return Err(ProtoError::WireType {
                            message: msg.name,
                            field: number,
                            wire_type: other.wire_type(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn last_bytes(&self, msg: &Message, number: u32) -> Result<Option<&'a [u8]>, ProtoError> {
        Ok(self.all_bytes(msg, number)?.last().copied())
    }

    fn string(&self, msg: &Message, number: u32) -> Result<Option<String>, ProtoError> {
        self.last_bytes(msg, number)?.map(utf8).transpose()
    }

    /// A singular message field: its occurrences merged, decoded with its schema.
    fn message(
        &self,
        msg: &'static Message,
        number: u32,
        depth: usize,
    ) -> Result<Option<Value>, ProtoError> {
        let parts = self.all_bytes(msg, number)?;
        if parts.is_empty() {
            return Ok(None);
        }
        let target = sub_message(msg, number)?;
        message(target, &parts.concat(), depth + 1).map(Some)
    }

    fn messages(
        &self,
        msg: &'static Message,
        number: u32,
        depth: usize,
    ) -> Result<Vec<Value>, ProtoError> {
        let target = sub_message(msg, number)?;
        self.all_bytes(msg, number)?
            .into_iter()
            .map(|bytes| message(target, bytes, depth + 1))
            .collect()
    }

    fn strings(&self, msg: &Message, number: u32) -> Result<Vec<Value>, ProtoError> {
        self.all_bytes(msg, number)?
            .into_iter()
            .map(|b| utf8(b).map(Value::String))
            .collect()
    }
}

fn sub_message(msg: &'static Message, number: u32) -> Result<&'static Message, ProtoError> {
    match msg.field(number).map(|f| f.ty) {
        Some(Ty::Msg(index)) => Ok(message_at(index)),
        _ => Err(ProtoError::Invalid(format!(
            "{}: field {number} is not a message",
            msg.name
        ))),
    }
}

/// Embedded JSON bytes (`RawExtension`, `JSON`, `FieldsV1`); empty is `null`.
fn embedded_json(bytes: Option<&[u8]>) -> Result<Value, ProtoError> {
    match bytes {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| ProtoError::Invalid(format!("embedded JSON: {e}"))),
    }
}

fn special(
    special: Special,
    msg: &'static Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    let fields = Fields::read(bytes)?;
    Ok(match special {
        // An empty Time is Go's zero time, which is `null` in JSON.
        Special::Time if bytes.is_empty() => Value::Null,
        Special::Time => Value::String(format_time(fields.varint(msg, 1)?.unwrap_or(0) as i64)?),
        Special::MicroTime if bytes.is_empty() => Value::Null,
        Special::MicroTime => {
            let seconds = fields.varint(msg, 1)?.unwrap_or(0) as i64;
            let nanos = fields.varint(msg, 2)?.unwrap_or(0) as i32;
            Value::String(format_micro_time(seconds, i64::from(nanos))?)
        }
        Special::Duration => {
            Value::String(format_duration(fields.varint(msg, 1)?.unwrap_or(0) as i64))
        }
        Special::FieldsV1 | Special::Json => embedded_json(fields.last_bytes(msg, 1)?)?,
        Special::RawExtension => match fields.last_bytes(msg, 1)? {
            Some(raw) if raw.starts_with(&super::MAGIC) => super::decode_envelope(raw, depth + 1)?,
            raw => embedded_json(raw)?,
        },
        Special::StringList => Value::Array(fields.strings(msg, 1)?),
        Special::Quantity => {
            // An empty message is the zero quantity; an empty string does not parse.
            let text = fields.string(msg, 1)?.unwrap_or_else(|| "0".to_string());
            let canonical = crate::quantity::canonicalize(&text)
                .map_err(|e| ProtoError::Invalid(format!("quantity {text:?}: {e}")))?;
            Value::String(canonical)
        }
        Special::IntOrString => {
            if fields.varint(msg, 1)?.unwrap_or(0) == 1 {
                Value::String(fields.string(msg, 3)?.unwrap_or_default())
            } else {
                Value::from(fields.varint(msg, 2)?.unwrap_or(0) as i32)
            }
        }
        Special::PropsOrArray => {
            let list = fields.messages(msg, 2, depth)?;
            if !list.is_empty() {
                Value::Array(list)
            } else {
                fields.message(msg, 1, depth)?.unwrap_or(Value::Null)
            }
        }
        Special::PropsOrBool => match fields.message(msg, 2, depth)? {
            Some(schema) => schema,
            None => Value::Bool(fields.varint(msg, 1)?.unwrap_or(0) != 0),
        },
        Special::PropsOrStringArray => {
            let list = fields.strings(msg, 2)?;
            if !list.is_empty() {
                Value::Array(list)
            } else {
                fields.message(msg, 1, depth)?.unwrap_or(Value::Null)
            }
        }
    })
}
