//! Taints and tolerations: matching (upstream `ToleratesTaint`, `MatchTaint`), the node
//! controller's taint keys, and writing a node's `spec.taints`.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::{Error, is_conflict, is_not_found};

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Attempts of one read-modify-write of a node's taints.
const WRITE_ATTEMPTS: usize = 5;

/// A taint with just key and effect (the node controller's taints carry no value).
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: None,
    }
}

/// Upstream `MatchTaint`: same key and effect.
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Whether `taints` has a taint with this key and effect.
pub fn has_taint(taints: &[Taint], key: &str, effect: &str) -> bool {
    taints.iter().any(|t| t.key == key && t.effect == effect)
}

/// The node's taints (empty when unset).
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The node's `NoExecute` taints.
pub fn no_execute(taints: &[Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref()
        && !k.is_empty()
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// `taints` after removing those matching `remove` and adding `add` (each stamped with
/// `now` as `timeAdded`; a taint already present keeps its own). `None` if unchanged.
pub fn edited(
    taints: &[Taint],
    add: &[Taint],
    remove: &[Taint],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| !remove.iter().any(|r| same_taint(r, t)))
        .cloned()
        .collect();
    for a in add {
        if !out.iter().any(|t| same_taint(t, a)) {
            let mut a = a.clone();
            a.time_added = Some(Time(now));
            out.push(a);
        }
    }
    (out != taints).then_some(out)
}

/// Add `add` and remove `remove` on node `name` (upstream `SwapNodeControllerTaint`),
/// re-reading on conflicts. `Ok(false)`: nothing to change or node gone.
pub async fn swap_taints(
    api: &Api<Node>,
    name: &str,
    add: &[Taint],
    remove: &[Taint],
) -> Result<bool, Error> {
    for _ in 0..WRITE_ATTEMPTS {
        let Some(node) = api.get_opt(name).await? else {
            return Ok(false);
        };
        let Some(new) = edited(node_taints(&node), add, remove, Timestamp::now()) else {
            return Ok(false);
        };
        let value = if new.is_empty() {
            serde_json::Value::Null
        } else {
            json!(new)
        };
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": value},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!("taints of node {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(
        key: Option<&str>,
        op: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerates_table() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: NO_EXECUTE.into(),
            time_added: None,
        };
        let cases = [
            (
                tol(Some("k"), Some("Equal"), Some("v"), Some(NO_EXECUTE)),
                true,
            ),
            (tol(Some("k"), None, Some("v"), None), true),
            (tol(Some("k"), Some("Equal"), Some("w"), None), false),
            (tol(Some("k"), Some("Exists"), None, None), true),
            (
                tol(Some("k"), Some("Exists"), None, Some(NO_SCHEDULE)),
                false,
            ),
            (tol(None, Some("Exists"), None, None), true),
            (tol(Some("other"), Some("Exists"), None, None), false),
            (tol(Some("k"), Some("Bogus"), Some("v"), None), false),
        ];
        for (i, (t2, want)) in cases.iter().enumerate() {
            assert_eq!(tolerates(t2, &t), *want, "case {i}: {t2:?}");
        }
    }

    #[test]
    fn edited_table() {
        let now = Timestamp::from_second(100).expect("ts");
        let old = Timestamp::from_second(5).expect("ts");
        let mut existing = taint(UNREACHABLE, NO_EXECUTE);
        existing.time_added = Some(Time(old));
        let user = Taint {
            key: "user".into(),
            value: Some("x".into()),
            effect: NO_SCHEDULE.into(),
            time_added: None,
        };
        // (current, add, remove) -> resulting (key, effect, timeAdded seconds) or None
        type Case = (
            Vec<Taint>,
            Vec<Taint>,
            Vec<Taint>,
            Option<Vec<(&'static str, &'static str, Option<i64>)>>,
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![], None),
            (
                vec![user.clone()],
                vec![taint(UNREACHABLE, NO_EXECUTE)],
                vec![taint(NOT_READY, NO_EXECUTE)],
                Some(vec![
                    ("user", NO_SCHEDULE, None),
                    (UNREACHABLE, NO_EXECUTE, Some(100)),
                ]),
            ),
            // Already there: keeps its own timeAdded, nothing to write.
            (
                vec![existing.clone()],
                vec![taint(UNREACHABLE, NO_EXECUTE)],
                vec![],
                None,
            ),
            (
                vec![existing.clone(), user.clone()],
                vec![taint(NOT_READY, NO_EXECUTE)],
                vec![taint(UNREACHABLE, NO_EXECUTE)],
                Some(vec![
                    ("user", NO_SCHEDULE, None),
                    (NOT_READY, NO_EXECUTE, Some(100)),
                ]),
            ),
            // Removal matches key and effect only.
            (
                vec![existing.clone()],
                vec![],
                vec![taint(UNREACHABLE, NO_SCHEDULE)],
                None,
            ),
            (
                vec![existing],
                vec![],
                vec![taint(UNREACHABLE, NO_EXECUTE)],
                Some(vec![]),
            ),
        ];
        for (i, (cur, add, rm, want)) in cases.into_iter().enumerate() {
            let got = edited(&cur, &add, &rm, now).map(|v| {
                v.into_iter()
                    .map(|t| (t.key, t.effect, t.time_added.map(|x| x.0.as_second())))
                    .collect::<Vec<_>>()
            });
            let want = want.map(|v| {
                v.into_iter()
                    .map(|(k, e, s)| (k.to_string(), e.to_string(), s))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "case {i}");
        }
    }
}
