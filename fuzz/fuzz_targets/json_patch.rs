//! `api::patch::json::json_patch` (RFC 6902).
//!
//! Text input: `{original} [operations]`. Structured input: an original object of a
//! built-in kind and operations whose paths mostly point into it.
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, is_text, json_stream, pick};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test", "bogus"];

fn run(original: &Value, patch: &Value) {
    if let Ok(result) = api::patch::json::json_patch(original, patch) {
        // An empty patch leaves the document as it was.
        assert_eq!(
            api::patch::json::json_patch(&result, &Value::Array(Vec::new()))
                .ok()
                .as_ref(),
            Some(&result)
        );
    }
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind) = *pick(&mut u, KINDS)?;
    let mut g = Gen::new(&mut u);
    let original = g.object(api_version, kind, false)?;
    let n = g.u.int_in_range(0..=5)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let mut op = Map::new();
        op.insert("op".into(), Value::from(*pick(g.u, OPS)?));
        op.insert("path".into(), Value::from(g.pointer(&original)?));
        if g.u.ratio(1, 2)? {
            op.insert("from".into(), Value::from(g.pointer(&original)?));
        }
        if g.u.ratio(2, 3)? {
            g.reset();
            op.insert("value".into(), g.any(0)?);
        }
        if g.u.ratio(1, 16)? {
            let k = g.key()?;
            op.insert(k, g.scalar()?);
        }
        ops.push(Value::Object(op));
    }
    run(&original, &Value::Array(ops));
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if is_text(data) {
        let mut values = json_stream(data).into_iter();
        let original = values.next().unwrap_or(Value::Null);
        let patch = values.next().unwrap_or(Value::Null);
        run(&original, &patch);
    } else {
        let _ = structured(data);
    }
});
