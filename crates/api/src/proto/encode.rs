//! Upstream JSON → protobuf message bytes, driven by the schema table (the inverse of
//! [`super::decode`]).
//!
//! The output is what upstream's generated marshallers write for the same object:
//! fields in field-number order, non-pointer fields always (their zero value when the
//! JSON leaves them out), pointer fields only when set (`null` counts as unset), and
//! map entries sorted by key. Keys the schema does not know are dropped, as upstream's
//! JSON decoder drops them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::table::{Field, Message, Presence, Shape, Special, Ty, message_at};
use super::values::{parse_duration, parse_time};
use super::wire::{LEN, put_fixed64_field, put_key, put_len, put_varint, put_varint_field};
use super::{MAX_DEPTH, ProtoError};

fn mismatch(msg: &Message, field: &str, want: &str, got: &Value) -> ProtoError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    ProtoError::Invalid(format!("{}.{field}: expected {want}, got {got}", msg.name))
}

/// Encodes `value` as the message `msg` (without a key or length).
pub(crate) fn message(
    msg: &'static Message,
    value: &Value,
    depth: usize,
) -> Result<Vec<u8>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    if let Some(special) = msg.special {
        return self::special(special, msg, value, depth);
    }
    let Value::Object(object) = value else {
        return Err(mismatch(msg, "", "an object", value));
    };
    let mut out = Vec::new();
    object_fields(msg, object, depth, &mut out)?;
    Ok(out)
}

fn object_fields(
    msg: &'static Message,
    object: &Map<String, Value>,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    let mut fields: Vec<&'static Field> = msg.fields.iter().collect();
    fields.sort_by_key(|f| f.number);
    for field in fields {
        if field.presence == Presence::Inline {
            let Ty::Msg(index) = field.ty else {
                return Err(ProtoError::Invalid(format!(
                    "{}: inline field {} is not a message",
                    msg.name, field.number
                )));
            };
            let mut inner = Vec::new();
            object_fields(message_at(index), object, depth + 1, &mut inner)?;
            put_len(out, field.number, &inner);
            continue;
        }
        let value = object.get(field.json).filter(|v| !v.is_null());
        let non_pointer = matches!(field.presence, Presence::Keep | Presence::OmitZero);
        let value = match value {
            Some(value) => value,
            // Upstream always writes non-pointer fields (except `[]byte`), zero or not.
            None if non_pointer && field.shape == Shape::One && field.ty != Ty::Bytes => {
                put_zero(field, depth, out)?;
                continue;
            }
            None => continue,
        };
        match (field.shape, value) {
            (Shape::One, value) => put_value(msg, field, value, depth, out)?,
            (Shape::Rep, Value::Array(items)) => {
                for item in items {
                    put_value(msg, field, item, depth, out)?;
                }
            }
            (Shape::Map, Value::Object(map)) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for key in keys {
                    let mut entry = Vec::new();
                    put_len(&mut entry, 1, key.as_bytes());
                    let entry_field = Field {
                        number: 2,
                        ..*field
                    };
                    put_value(msg, &entry_field, &map[key], depth, &mut entry)?;
                    put_len(out, field.number, &entry);
                }
            }
            (Shape::Rep, other) => return Err(mismatch(msg, field.json, "a list", other)),
            (Shape::Map, other) => return Err(mismatch(msg, field.json, "an object", other)),
        }
    }
    Ok(())
}

/// Writes the zero value of a non-pointer field, as upstream's marshallers do.
fn put_zero(field: &Field, depth: usize, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    match field.ty {
        Ty::Str | Ty::Bytes => put_len(out, field.number, b""),
        Ty::Bool | Ty::I32 | Ty::I64 => put_varint_field(out, field.number, 0),
        Ty::F64 => put_fixed64_field(out, field.number, 0),
        Ty::Msg(index) => {
            let bytes = zero_message(message_at(index), depth + 1)?;
            put_len(out, field.number, &bytes);
        }
    }
    Ok(())
}

/// The encoding of a message's Go zero value.
fn zero_message(msg: &'static Message, depth: usize) -> Result<Vec<u8>, ProtoError> {
    match msg.special {
        // A zero Time and nil raw bytes are written as empty messages.
        Some(
            Special::Time
            | Special::MicroTime
            | Special::RawExtension
            | Special::FieldsV1
            | Special::Json
            | Special::StringList
            | Special::PropsOrArray
            | Special::PropsOrBool
            | Special::PropsOrStringArray,
        ) => Ok(Vec::new()),
        Some(Special::Duration) => message(msg, &Value::String("0s".to_string()), depth),
        Some(Special::Quantity) => message(msg, &Value::String("0".to_string()), depth),
        Some(Special::IntOrString) => message(msg, &Value::from(0), depth),
        None => message(msg, &Value::Object(Map::new()), depth),
    }
}

fn int(msg: &Message, field: &Field, value: &Value) -> Result<i64, ProtoError> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    n.ok_or_else(|| mismatch(msg, field.json, "an integer", value))
}

fn put_value(
    msg: &'static Message,
    field: &Field,
    value: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    let number = field.number;
    match (field.ty, value) {
        (Ty::Str, Value::String(s)) => put_len(out, number, s.as_bytes()),
        (Ty::Bytes, Value::String(s)) => {
            let bytes = BASE64
                .decode(s)
                .map_err(|e| ProtoError::Invalid(format!("{}.{}: {e}", msg.name, field.json)))?;
            put_len(out, number, &bytes);
        }
        (Ty::Bool, Value::Bool(b)) => put_varint_field(out, number, u64::from(*b)),
        (Ty::I32, value) => {
            let n = int(msg, field, value)?;
            let n = i32::try_from(n)
                .map_err(|_| mismatch(msg, field.json, "a 32-bit integer", value))?;
            // Negative int32 values are sign-extended to ten bytes, per the spec.
            put_varint_field(out, number, i64::from(n) as u64);
        }
        (Ty::I64, value) => put_varint_field(out, number, int(msg, field, value)? as u64),
        (Ty::F64, Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| mismatch(msg, field.json, "a number", value))?;
            put_fixed64_field(out, number, f.to_bits());
        }
        (Ty::Msg(index), value) => {
            let bytes = message(message_at(index), value, depth + 1)?;
            put_len(out, number, &bytes);
        }
        (Ty::Str | Ty::Bytes, other) => return Err(mismatch(msg, field.json, "a string", other)),
        (Ty::Bool, other) => return Err(mismatch(msg, field.json, "a boolean", other)),
        (Ty::F64, other) => return Err(mismatch(msg, field.json, "a number", other)),
    }
    Ok(())
}

/// Writes a sub-message of a special message by its schema.
fn put_sub_message(
    msg: &'static Message,
    number: u32,
    value: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    let Some(Ty::Msg(index)) = msg.field(number).map(|f| f.ty) else {
        return Err(ProtoError::Invalid(format!(
            "{}: field {number} is not a message",
            msg.name
        )));
    };
    let bytes = message(message_at(index), value, depth + 1)?;
    put_len(out, number, &bytes);
    Ok(())
}

fn put_strings(
    msg: &Message,
    number: u32,
    items: &[Value],
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    for item in items {
        let Value::String(s) = item else {
            return Err(mismatch(msg, "", "a list of strings", item));
        };
        put_len(out, number, s.as_bytes());
    }
    Ok(())
}

fn special(
    special: Special,
    msg: &'static Message,
    value: &Value,
    depth: usize,
) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::new();
    match (special, value) {
        (Special::Time | Special::MicroTime, Value::Null) => {}
        (Special::Time | Special::MicroTime, Value::String(s)) => {
            let (seconds, nanos) = parse_time(s)?;
            // Upstream writes whole seconds for `Time` and microseconds for `MicroTime`.
            let nanos = if special == Special::Time {
                0
            } else {
                nanos - nanos % 1_000
            };
            put_varint_field(&mut out, 1, seconds as u64);
            put_varint_field(&mut out, 2, i64::from(nanos) as u64);
        }
        (Special::Duration, Value::String(s)) => {
            put_varint_field(&mut out, 1, parse_duration(s)? as u64)
        }
        (Special::FieldsV1 | Special::Json | Special::RawExtension, value) => {
            let bytes =
                serde_json::to_vec(value).map_err(|e| ProtoError::Invalid(e.to_string()))?;
            put_len(&mut out, 1, &bytes);
        }
        (Special::StringList, Value::Array(items)) => put_strings(msg, 1, items, &mut out)?,
        (Special::Quantity, Value::String(_) | Value::Number(_)) => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let canonical = crate::quantity::canonicalize(&text)
                .map_err(|e| ProtoError::Invalid(format!("quantity {text:?}: {e}")))?;
            put_len(&mut out, 1, canonical.as_bytes());
        }
        (Special::IntOrString, Value::Number(_)) => {
            let n = value
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| mismatch(msg, "", "a 32-bit integer", value))?;
            put_varint_field(&mut out, 1, 0);
            put_varint_field(&mut out, 2, i64::from(n) as u64);
            put_len(&mut out, 3, b"");
        }
        (Special::IntOrString, Value::String(s)) => {
            put_varint_field(&mut out, 1, 1);
            put_varint_field(&mut out, 2, 0);
            put_len(&mut out, 3, s.as_bytes());
        }
        (Special::PropsOrArray, Value::Array(items)) => {
            for item in items {
                put_sub_message(msg, 2, item, depth, &mut out)?;
            }
        }
        (Special::PropsOrArray, Value::Object(_)) => {
            put_sub_message(msg, 1, value, depth, &mut out)?
        }
        (Special::PropsOrBool, Value::Bool(b)) => put_varint_field(&mut out, 1, u64::from(*b)),
        (Special::PropsOrBool, Value::Object(_)) => {
            put_varint_field(&mut out, 1, 1);
            put_sub_message(msg, 2, value, depth, &mut out)?;
        }
        (Special::PropsOrStringArray, Value::Array(items)) => put_strings(msg, 2, items, &mut out)?,
        (Special::PropsOrStringArray, Value::Object(_)) => {
            put_sub_message(msg, 1, value, depth, &mut out)?
        }
        (_, other) => return Err(mismatch(msg, "", &format!("a {special:?} value"), other)),
    }
    Ok(out)
}

/// Writes the envelope around an encoded object: the magic prefix and a
/// `runtime.Unknown` with the type, the raw bytes and empty encoding/content type, as
/// upstream writes them.
pub(crate) fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    put_len(&mut type_meta, 1, api_version.as_bytes());
    put_len(&mut type_meta, 2, kind.as_bytes());
    let mut out = super::MAGIC.to_vec();
    put_len(&mut out, 1, &type_meta);
    put_key(&mut out, 2, LEN);
    put_varint(&mut out, raw.len() as u64);
    out.extend_from_slice(raw);
    put_len(&mut out, 3, b"");
    put_len(&mut out, 4, b"");
    out
}
