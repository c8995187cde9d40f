//! Label selectors (`api::selector::Selector`) and field selectors
//! (`api::fields::FieldSelector`): parsing, printing, matching, conversion per kind.
//!
//! Input (text, invalid UTF-8 replaced): line 1 is a label selector, line 2 a field
//! selector, further `key=value` lines form the label / field set matched against.
//! Checked beyond "no panic": a parsed selector prints to a string that parses back to
//! the same selector (label selectors: same printed form; field selectors: same terms,
//! possibly in another order, as upstream sorts raw terms) with the same verdict on the
//! set.
#![no_main]

use std::collections::BTreeMap;

use api::fields::{FieldSelector, escape_value, object_fields, unescape_value};
use api::selector::Selector;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// `(group, version, kind)` whose field-label conversion is exercised.
const FIELD_KINDS: &[(&str, &str, &str)] = &[
    ("", "v1", "Pod"),
    ("", "v1", "Event"),
    ("", "v1", "Secret"),
    ("", "v1", "Node"),
    ("", "v1", "Namespace"),
    ("apps", "v1", "ReplicaSet"),
    ("batch", "v1", "Job"),
    ("", "v1", "ConfigMap"),
    ("example.com", "v1", "Widget"),
];

fn labels_check(input: &str, set: &BTreeMap<String, String>) {
    let Ok(sel) = Selector::parse(input) else {
        return;
    };
    let printed = sel.to_string();
    let again = Selector::parse(&printed).unwrap_or_else(|e| {
        panic!("printed label selector {printed:?} (from {input:?}) does not parse: {e}")
    });
    assert_eq!(
        again.to_string(),
        printed,
        "label selector print is not stable (from {input:?})"
    );
    assert_eq!(
        sel.matches(set),
        again.matches(set),
        "reparsed label selector {printed:?} matches differently"
    );
    let object = json!({"metadata": {"labels": set}});
    assert_eq!(sel.matches(set), sel.matches_object(&object));
    for key in set.keys() {
        let _ = sel.requires_exact_match(key);
    }
    // matchLabels / matchExpressions built from the same set.
    let exprs: Vec<Value> = set
        .iter()
        .map(|(k, v)| json!({"key": k, "operator": v, "values": [v, k]}))
        .collect();
    let _ = Selector::from_label_selector_value(
        &json!({"matchLabels": set, "matchExpressions": exprs}),
    );
    if let Ok(exact) = Selector::validated_from_set(set) {
        assert!(
            exact.matches(set),
            "selector from a label set does not match that set: {set:?}"
        );
        let printed = exact.to_string();
        let back = Selector::parse(&printed).unwrap_or_else(|e| {
            panic!("selector printed from a valid set {printed:?} does not parse: {e}")
        });
        assert!(
            back.matches(set),
            "reparsed set selector {printed:?} does not match {set:?}"
        );
    }
}

fn fields_check(input: &str, set: &BTreeMap<String, String>) {
    for (k, v) in set {
        let escaped = escape_value(v);
        assert_eq!(
            unescape_value(&escaped).as_deref(),
            Ok(v.as_str()),
            "escape/unescape of {v:?}"
        );
        let _ = unescape_value(k);
    }
    let Ok(sel) = FieldSelector::parse(input) else {
        return;
    };
    let printed = sel.to_string();
    let again = FieldSelector::parse(&printed).unwrap_or_else(|e| {
        panic!("printed field selector {printed:?} (from {input:?}) does not parse: {e}")
    });
    // Upstream sorts the raw terms before unescaping them, so the printed form may list
    // the same terms in another order; as a set they must agree.
    assert_eq!(
        sorted_terms(&again),
        sorted_terms(&sel),
        "field selector {input:?} printed as {printed:?} parses differently"
    );
    assert_eq!(sel.matches(set), again.matches(set));
    for key in set.keys() {
        let _ = sel.requires_exact_match(key);
    }
    let object = json!({"metadata": {"name": set.get("name"), "namespace": set.get("namespace")}, "spec": set, "status": set});
    for (group, version, kind) in FIELD_KINDS {
        if let Ok(converted) = sel.convert_for(group, version, kind) {
            let fields = object_fields(group, kind, &object);
            let _ = converted.matches(&fields);
        }
    }
    let _ = FieldSelector::from_set(set).to_string();
}

fn sorted_terms(sel: &FieldSelector) -> Vec<String> {
    let mut terms: Vec<String> = sel.requirements().iter().map(ToString::to_string).collect();
    terms.sort();
    terms
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let label = lines.next().unwrap_or_default();
    let field = lines.next().unwrap_or_default();
    let set: BTreeMap<String, String> = lines
        .map(|line| match line.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect();
    labels_check(label, &set);
    fields_check(field, &set);
});
