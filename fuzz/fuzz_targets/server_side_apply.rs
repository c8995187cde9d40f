//! `api::patch::apply::server_side_apply` and `update_managed_fields`.
//!
//! Text input: `{live or null} {applied} [{applied by a second manager}]`. Structured
//! input: a live object of a built-in kind (absent, bare, or with `managedFields` from an
//! ordinary update, sometimes corrupted) and one or two applied configurations by
//! different managers, with and without force.
//!
//! Checked beyond "no panic": a configuration that was just applied successfully can be
//! applied again by the same manager without conflicts.
#![no_main]

use api::patch::apply::{ApplyError, server_side_apply, update_managed_fields};
use arbitrary::Unstructured;
use flotilla_fuzz::{Gen, KINDS, is_text, json_stream, pick};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: &str = "2024-01-01T00:00:00Z";
const MANAGERS: &[&str] = &["kubectl", "helm", "", "kube-controller-manager"];

/// Applies `applied` for `manager` on `live`, and re-applies it on success.
fn apply(live: Option<&Value>, applied: &Value, manager: &str, force: bool) -> Option<Value> {
    let result = server_side_apply(live, applied, manager, force, None, NOW).ok()?;
    match server_side_apply(Some(&result), applied, manager, false, None, NOW) {
        Err(ApplyError::Conflicts(c)) => panic!(
            "re-applying the same configuration as {manager:?} conflicts: {c:?}\nlive: {result}\napplied: {applied}"
        ),
        _ => Some(result),
    }
}

fn run(live: Option<&Value>, first: &Value, second: Option<&Value>, force: bool) {
    let Some(result) = apply(live, first, "kubectl", force) else {
        return;
    };
    if let Some(second) = second
        && let Some(next) = apply(Some(&result), second, "helm", force)
    {
        // An ordinary update by a third manager on top of two appliers.
        let _ = update_managed_fields(Some(&next), &result, "editor", "Update", "v1", NOW);
    }
}

fn structured(data: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(data);
    let (api_version, kind) = *pick(&mut u, KINDS)?;
    let mut g = Gen::new(&mut u);
    let live = match g.u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(g.object(api_version, kind, false)?),
        _ => {
            let object = g.object(api_version, kind, false)?;
            let manager = *pick(g.u, MANAGERS)?;
            let mut tracked =
                update_managed_fields(None, &object, manager, "Update", api_version, NOW);
            if g.u.ratio(1, 4)? {
                // Damage the managedFields entry the server itself wrote.
                g.reset();
                let junk = g.any(2)?;
                if let Some(entry) = tracked.pointer_mut("/metadata/managedFields/0") {
                    let field = *pick(
                        g.u,
                        &[
                            "fieldsV1",
                            "manager",
                            "operation",
                            "apiVersion",
                            "fieldsType",
                        ],
                    )?;
                    entry[field] = junk;
                }
            }
            Some(tracked)
        }
    };
    g.reset();
    let first = g.object(api_version, kind, false)?;
    g.reset();
    let second = if g.u.ratio(1, 2)? {
        Some(g.object(api_version, kind, false)?)
    } else {
        None
    };
    let force = g.u.arbitrary()?;
    let manager = *pick(g.u, MANAGERS)?;
    // A manager that collides with (or differs from) the one that created the object.
    if let Some(result) = apply(live.as_ref(), &first, manager, force) {
        run(Some(&result), &first, second.as_ref(), force);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if is_text(data) {
        let values = json_stream(data);
        let live = values.first().filter(|v| !v.is_null());
        let Some(first) = values.get(1) else {
            return;
        };
        run(live, first, values.get(2), false);
        run(live, first, values.get(2), true);
    } else {
        let _ = structured(data);
    }
});
