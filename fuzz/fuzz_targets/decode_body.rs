//! Request-body decoding: `apiserver::handlers::decode_object` under each content type
//! (protobuf, JSON, YAML), `api::proto::decode` and `apiserver::dupkeys::duplicate_fields`.
//!
//! Input: the raw body. If it starts with byte `0x01` the rest instead drives a
//! generator that builds a schema-shaped object of a built-in kind, encodes it with
//! `api::proto::encode`, checks that it decodes again, then corrupts a few bytes of the
//! encoding and decodes that (no panic allowed). For bodies that decode as protobuf,
//! encode → decode must settle after one round trip (see [`round_trip`]).
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, pick};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CONTENT_TYPES: &[&str] = &[
    "application/vnd.kubernetes.protobuf",
    "application/json",
    "application/yaml",
    "",
    "text/yaml; charset=utf-8",
    "APPLICATION/JSON ; x=y",
];

fn decode_all(body: &[u8]) {
    for ct in CONTENT_TYPES {
        let mut headers = HeaderMap::new();
        if !ct.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let _ = apiserver::handlers::decode_object(&headers, body);
    }
    let _ = apiserver::dupkeys::duplicate_fields(body);
    round_trip(body);
}

/// Encoding a decoded body and decoding it again must settle: the second round trip
/// gives back exactly what the first gave. (The first may differ from the body's own
/// decoding: fields a client left out come back with their zero values, because the
/// encoder writes every non-pointer field as upstream's marshallers do.)
fn round_trip(body: &[u8]) {
    let Ok(value) = api::proto::decode(body) else {
        return;
    };
    let Some(once) = re_decode(&value) else {
        return;
    };
    let Some(twice) = re_decode(&once) else {
        panic!("a re-encoded object cannot be encoded again\n{once}");
    };
    assert!(
        same_json(&twice, &once),
        "protobuf encode/decode does not settle after one round trip\n{twice}\n{once}"
    );
}

/// Equality of JSON values, except that floating-point numbers only need to agree to
/// about 15 significant digits: `serde_json` (without its `float_roundtrip` feature)
/// may read a printed float back one unit in the last place off, which matters only
/// for floats inside embedded raw JSON (`fieldsV1`, `RawExtension`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || ((x - y) / x.abs().max(y.abs())).abs() < 1e-15,
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// `decode(encode(value))`; `None` if `value` cannot be encoded. A value that encodes
/// must decode.
fn re_decode(value: &Value) -> Option<Value> {
    let encoded = api::proto::encode(value).ok()?;
    match api::proto::decode(&encoded) {
        Ok(back) => Some(back),
        Err(e) => panic!("encoded object does not decode: {e}\n{value}"),
    }
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind) = *pick(&mut u, KINDS)?;
    let mut g = Gen::new(&mut u);
    let object = g.object(api_version, kind, false)?;
    let Ok(mut encoded) = api::proto::encode(&object) else {
        return Ok(());
    };
    if let Err(e) = api::proto::decode(&encoded) {
        panic!("encoded object does not decode: {e}\n{object}");
    }
    round_trip(&encoded);
    // Corrupt: overwrite, truncate or splice a few bytes, then decode again.
    let edits = g.u.int_in_range(1..=4)?;
    for _ in 0..edits {
        if encoded.is_empty() {
            break;
        }
        let at = g.u.int_in_range(0..=encoded.len() - 1)?;
        match g.u.int_in_range(0..=2)? {
            0 => encoded[at] = g.u.arbitrary()?,
            1 => encoded.truncate(at),
            _ => encoded.insert(at, g.u.arbitrary()?),
        }
    }
    decode_all(&encoded);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((1, rest)) => {
            let _ = structured(rest);
        }
        _ => decode_all(data),
    }
});
