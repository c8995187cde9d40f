//! `api::patch::strategic::strategic_merge`.
//!
//! Text input: `"<definition>" {original} {patch}` (the definition string may be left
//! out: `{original} {patch}` uses `io.k8s.api.apps.v1.Deployment`). Structured input: a
//! definition from a short list, an original object of that type and a patch of the
//! same type with `$patch`, `$retainKeys`, `$setElementOrder/…` and
//! `$deleteFromPrimitiveList/…` directives and `null`s sprinkled in.
#![no_main]

use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, is_text, json_stream, pick};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `(apiVersion, kind, definition)`; the last ones are nested types and a custom type.
const DEFINITIONS: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
    ("v1", "Pod", "io.k8s.api.core.v1.Pod"),
    ("v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"),
    ("v1", "Service", "io.k8s.api.core.v1.Service"),
    ("apps/v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"),
    ("v1", "Node", "io.k8s.api.core.v1.Node"),
    ("batch/v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
    (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    ),
    ("v1", "PodSpec", "io.k8s.api.core.v1.PodSpec"),
    ("example.com/v1", "Widget", "com.example.v1.Widget"),
];

fn run(original: &Value, patch: &Value, definition: &str) {
    let _ = api::patch::strategic::strategic_merge(original, patch, definition);
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind, definition) = *pick(&mut u, DEFINITIONS)?;
    let mut g = Gen::new(&mut u);
    let original = if definition.ends_with(".PodSpec") {
        g.definition(definition, 0, false)?
    } else {
        g.object(api_version, kind, false)?
    };
    g.reset();
    let patch = if definition.ends_with(".PodSpec") {
        g.definition(definition, 0, true)?
    } else {
        g.object(api_version, kind, true)?
    };
    run(&original, &patch, definition);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if is_text(data) {
        let mut values = json_stream(data);
        let definition = match values.first() {
            Some(Value::String(d)) => {
                let d = d.clone();
                values.remove(0);
                d
            }
            _ => "io.k8s.api.apps.v1.Deployment".to_string(),
        };
        let mut values = values.into_iter();
        let original = values.next().unwrap_or(Value::Null);
        let patch = values.next().unwrap_or(Value::Null);
        run(&original, &patch, &definition);
    } else {
        let _ = structured(data);
    }
});
