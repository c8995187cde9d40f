//! `api::patch::merge::merge_patch` (RFC 7386 as upstream applies it).
//!
//! Text input: `{original} {patch}`. Structured input: an original object of a built-in
//! kind and a patch shaped by the same schema, with `null`s. A merge patch that applies
//! must be idempotent: applying it again changes nothing.
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, is_text, json_stream, pick};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn run(original: &Value, patch: &Value) {
    let Ok(once) = api::patch::merge::merge_patch(original, patch) else {
        return;
    };
    let twice = api::patch::merge::merge_patch(&once, patch);
    assert_eq!(
        twice.as_ref().ok(),
        Some(&once),
        "merge patch is not idempotent"
    );
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind) = *pick(&mut u, KINDS)?;
    let mut g = Gen::new(&mut u);
    let original = g.object(api_version, kind, false)?;
    g.reset();
    let patch = if g.u.ratio(1, 4)? {
        g.any(0)?
    } else {
        g.object(api_version, kind, true)?
    };
    run(&original, &patch);
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
