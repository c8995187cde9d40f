//! Request-body decoding: `apiserver::handlers::decode_object` under each content type
//! (protobuf, JSON, YAML), `api::proto::decode` and `apiserver::dupkeys::duplicate_fields`.
//!
//! Input: the raw body. If it starts with byte `0x01` the rest instead drives a
//! generator that builds a schema-shaped object of a built-in kind, encodes it with
//! `api::proto::encode`, checks that it decodes again, then corrupts a few bytes of the
//! encoding and decodes that (no panic allowed). For bodies that decode as protobuf,
//! re-encoding and decoding must give the same object back.
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, pick};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;

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

/// A body that decodes must survive encode → decode unchanged.
fn round_trip(body: &[u8]) {
    let Ok(value) = api::proto::decode(body) else {
        return;
    };
    let Ok(again) = api::proto::encode(&value) else {
        return;
    };
    match api::proto::decode(&again) {
        Ok(back) => assert_eq!(back, value, "protobuf encode/decode round trip changed the object"),
        Err(e) => panic!("re-encoded object does not decode: {e}\n{value}"),
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
