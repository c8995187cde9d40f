//! `api::validation::{apply_defaults, apply_admission_defaults, validate}` on arbitrary
//! objects of several built-in kinds, for create (`old` absent) and update.
//!
//! Text input: `["<apiVersion>" "<kind>"] {object} [{old object}]` (without the two
//! strings the object's own `apiVersion`/`kind` are used). Structured input: a kind from
//! a list, a schema-shaped object of it, and sometimes an old object.
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, is_text, json_stream, pick, split_api_version};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn run(api_version: &str, kind: &str, mut object: Value, old: Option<Value>) {
    let (group, version) = split_api_version(api_version);
    // Raw, as a client sent it, then defaulted as the API server does.
    let _ = api::validation::validate(group, kind, &object, old.as_ref());
    api::validation::apply_defaults(group, version, kind, &mut object);
    api::validation::apply_admission_defaults(group, kind, &mut object);
    let _ = api::validation::validate(group, kind, &object, old.as_ref());
    // Defaulting twice changes nothing more.
    let mut again = object.clone();
    api::validation::apply_defaults(group, version, kind, &mut again);
    api::validation::apply_admission_defaults(group, kind, &mut again);
    assert_eq!(
        again, object,
        "defaulting {api_version} {kind} is not idempotent"
    );
    // An update that changes nothing.
    let _ = api::validation::validate(group, kind, &object, Some(&object));
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind) = *pick(&mut u, KINDS)?;
    let mut g = Gen::new(&mut u);
    let object = g.object(api_version, kind, false)?;
    g.reset();
    let old = if g.u.ratio(1, 3)? {
        Some(g.object(api_version, kind, false)?)
    } else {
        None
    };
    run(api_version, kind, object, old);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if is_text(data) {
        let mut values = json_stream(data);
        let (api_version, kind) = match (values.first(), values.get(1)) {
            (Some(Value::String(a)), Some(Value::String(k))) => {
                let pair = (a.clone(), k.clone());
                values.drain(..2);
                pair
            }
            (Some(object), _) => {
                let text = |key: &str| {
                    object
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                (text("apiVersion"), text("kind"))
            }
            _ => return,
        };
        let mut values = values.into_iter();
        let Some(object) = values.next() else {
            return;
        };
        run(&api_version, &kind, object, values.next());
    } else {
        let _ = structured(data);
    }
});
