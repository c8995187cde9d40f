use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use kube::api::ObjectMeta;

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("timestamp")
}

fn ios(s: &str) -> IntOrString {
    match s.parse::<i32>() {
        Ok(i) => IntOrString::Int(i),
        Err(_) => IntOrString::String(s.into()),
    }
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some(ROLLING_UPDATE.into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(ios(surge)),
                    max_unavailable: Some(ios(unavailable)),
                }),
            }),
            template: template("nginx:1"),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: None,
    }
}

fn rs(name: &str, created: i64, replicas: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(ts(created))),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(template("nginx:1")),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn with_annotations(mut r: ReplicaSet, a: &[(&str, &str)]) -> ReplicaSet {
    r.metadata.annotations = Some(
        a.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    r
}

#[test]
fn scaled_values() {
    let cases: [(&str, i32, bool, Result<i32, IntOrPercentError>); 9] = [
        ("3", 10, true, Ok(3)),
        ("25%", 4, true, Ok(1)),
        ("25%", 4, false, Ok(1)),
        ("25%", 10, true, Ok(3)),
        ("25%", 10, false, Ok(2)),
        ("0%", 10, true, Ok(0)),
        ("100%", 7, false, Ok(7)),
        ("abc", 10, true, Err(IntOrPercentError::NotPercent)),
        (
            "x%",
            10,
            true,
            Err(IntOrPercentError::BadPercent("x%".into())),
        ),
    ];
    for (v, total, up, want) in cases {
        assert_eq!(
            scaled_value(&ios(v), total, up),
            want,
            "{v} of {total} up={up}"
        );
    }
}

#[test]
fn fenceposts_table() {
    // (maxSurge, maxUnavailable, replicas) → (surge, unavailable)
    let cases = [
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 10, (3, 2)),
        ("25%", "25%", 1, (1, 0)),
        ("0", "0", 5, (0, 1)),
        ("0%", "10%", 5, (0, 1)),
        ("2", "0", 3, (2, 0)),
    ];
    for (s, u, r, want) in cases {
        assert_eq!(
            resolve_fenceposts(Some(&ios(s)), Some(&ios(u)), r),
            Ok(want),
            "{s}/{u} of {r}"
        );
        let d = deployment(r, s, u);
        assert_eq!((max_surge(&d), max_unavailable(&d)), want, "{s}/{u} of {r}");
    }
    let mut capped = deployment(2, "0", "5");
    assert_eq!(max_unavailable(&capped), 2, "capped at replicas");
    if let Some(st) = capped.spec.as_mut().and_then(|s| s.strategy.as_mut()) {
        st.type_ = Some(RECREATE.into());
    }
    assert_eq!(
        (max_surge(&capped), max_unavailable(&capped)),
        (0, 0),
        "recreate"
    );
}

#[test]
fn hashes() {
    let t = template("nginx:1");
    let h = compute_hash(&t, None);
    assert_eq!(h, compute_hash(&t.clone(), None), "deterministic");
    assert_ne!(h, compute_hash(&template("nginx:2"), None));
    assert_ne!(
        h,
        compute_hash(&t, Some(1)),
        "collision count changes the hash"
    );
    assert!(!h.is_empty() && h.len() <= 10, "{h}");
    assert!(
        h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{h}"
    );
}

#[test]
fn template_equality_ignores_hash_and_empty_values() {
    let a = template("nginx:1");
    let mut hashed = a.clone();
    if let Some(l) = hashed.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.insert(UNIQUE_LABEL_KEY.into(), "abc".into());
    }
    assert!(equal_ignore_hash(&a, &hashed));
    assert!(!equal_ignore_hash(&a, &template("nginx:2")));
    let mut empty_args = a.clone();
    if let Some(s) = empty_args.spec.as_mut() {
        s.containers[0].args = Some(vec![]);
        s.volumes = Some(vec![]);
    }
    assert!(
        equal_ignore_hash(&a, &empty_args),
        "empty and missing lists are equal"
    );
    let mut empty_dir = a.clone();
    if let Some(s) = empty_dir.spec.as_mut() {
        s.volumes = Some(vec![Volume {
            name: "v".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        }]);
    }
    let mut no_source = empty_dir.clone();
    if let Some(v) = no_source.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
        v[0].empty_dir = None;
    }
    assert!(
        !equal_ignore_hash(&empty_dir, &no_source),
        "an empty struct is not absent"
    );
}

#[test]
fn new_replica_set_annotations() {
    let mut d = deployment(4, "25%", "25%");
    d.metadata.annotations = Some(
        [
            ("team".to_string(), "a".to_string()),
            (LAST_APPLIED_ANNOTATION.to_string(), "{}".to_string()),
            (REVISION_ANNOTATION.to_string(), "9".to_string()),
        ]
        .into(),
    );
    let get = |r: &ReplicaSet, k: &str| {
        r.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k).cloned())
    };
    // A ReplicaSet about to be created.
    let mut fresh = rs("a", 1, 0, 0);
    assert!(set_new_replica_set_annotations(
        &d, &mut fresh, "1", false, 2000
    ));
    assert_eq!(get(&fresh, REVISION_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(
        get(&fresh, DESIRED_REPLICAS_ANNOTATION).as_deref(),
        Some("4")
    );
    assert_eq!(get(&fresh, MAX_REPLICAS_ANNOTATION).as_deref(), Some("5"));
    assert_eq!(get(&fresh, "team").as_deref(), Some("a"));
    assert_eq!(get(&fresh, LAST_APPLIED_ANNOTATION), None);
    assert_eq!(get(&fresh, REVISION_HISTORY_ANNOTATION), None);
    // Nothing to change the second time.
    assert!(!set_new_replica_set_annotations(
        &d, &mut fresh, "1", true, 2000
    ));

    // (own revision, own history, new revision) → (revision, history, changed)
    let cases = [
        (Some("1"), None, "3", "3", Some("1"), true),
        (Some("2"), Some("1"), "4", "4", Some("1,2"), true),
        (Some("5"), None, "3", "5", None, false),
        (Some("x"), None, "3", "x", None, false),
    ];
    for (own, history, new, want_rev, want_hist, want_changed) in cases {
        let mut a = vec![("team", "a")];
        if let Some(o) = own {
            a.push((REVISION_ANNOTATION, o));
        }
        if let Some(h) = history {
            a.push((REVISION_HISTORY_ANNOTATION, h));
        }
        let mut r = with_annotations(rs("b", 1, 1, 1), &a);
        let changed = set_new_replica_set_annotations(&d, &mut r, new, true, 2000);
        assert_eq!(changed, want_changed, "{own:?} -> {new}");
        assert_eq!(get(&r, REVISION_ANNOTATION).as_deref(), Some(want_rev));
        assert_eq!(get(&r, REVISION_HISTORY_ANNOTATION).as_deref(), want_hist);
    }
    // The history keeps the newest entries within the length limit.
    let mut r = with_annotations(
        rs("c", 1, 1, 1),
        &[
            ("team", "a"),
            (REVISION_ANNOTATION, "30"),
            (REVISION_HISTORY_ANNOTATION, "10,20"),
        ],
    );
    set_new_replica_set_annotations(&d, &mut r, "40", true, 6);
    assert_eq!(
        get(&r, REVISION_HISTORY_ANNOTATION).as_deref(),
        Some("20,30")
    );
}

#[test]
fn revisions_and_orderings() {
    let r1 = with_annotations(rs("r1", 30, 1, 1), &[(REVISION_ANNOTATION, "1")]);
    let r2 = with_annotations(rs("r2", 10, 3, 3), &[(REVISION_ANNOTATION, "2")]);
    let bad = with_annotations(rs("bad", 20, 3, 3), &[(REVISION_ANNOTATION, "x")]);
    let none = rs("none", 40, 3, 0);
    assert_eq!(revision(&r1), Some(1));
    assert_eq!(revision(&bad), None);
    assert_eq!(revision(&none), Some(0));
    assert_eq!(max_revision([&r1, &r2, &bad, &none]), 2);
    assert_eq!(max_revision([]), 0);

    let names = |mut v: Vec<ReplicaSet>, f: fn(&ReplicaSet, &ReplicaSet) -> Ordering| {
        v.sort_by(f);
        v.into_iter()
            .map(|r| r.metadata.name.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let all = vec![r1.clone(), r2.clone(), bad.clone(), none.clone()];
    assert_eq!(names(all.clone(), by_creation), ["r2", "bad", "r1", "none"]);
    assert_eq!(
        names(all.clone(), by_size_newer),
        ["none", "bad", "r2", "r1"]
    );
    assert_eq!(
        names(all.clone(), by_size_older),
        ["r2", "bad", "none", "r1"]
    );
    assert_eq!(
        names(vec![r2.clone(), none.clone(), r1.clone()], by_revision),
        ["none", "r1", "r2"]
    );
}

#[test]
fn finds_the_new_replica_set() {
    let d = deployment(3, "25%", "25%");
    let mut other = rs("other", 1, 1, 1);
    if let Some(s) = other.spec.as_mut() {
        s.template = Some(template("nginx:2"));
    }
    let newer = rs("newer", 9, 1, 1);
    let older = rs("older", 5, 1, 1);
    let list = vec![other, newer, older];
    assert_eq!(
        find_new_replica_set(&d, &list),
        Some(2),
        "the oldest matching one"
    );
    assert_eq!(find_new_replica_set(&d, &list[..1]), None);
}

#[test]
fn new_replicas_of_a_rollout_step() {
    let d = deployment(4, "25%", "25%");
    // (old spec, old status replicas, new spec) → new replicas
    let cases = [
        (4, 4, 0, 1),
        (3, 3, 1, 2),
        (4, 4, 1, 1),
        (3, 4, 1, 1), // the old ReplicaSet still runs 4 pods: no room yet
        (0, 0, 2, 4),
        (0, 0, 4, 4),
    ];
    for (old_spec, old_status, new_spec, want) in cases {
        let mut old = rs("old", 1, old_spec, old_spec);
        if let Some(s) = old.status.as_mut() {
            s.replicas = old_status;
        }
        let new = rs("new", 2, new_spec, 0);
        let got = new_rs_new_replicas(&d, &[&old, &new], &new).expect("valid");
        assert_eq!(got, want, "old {old_spec}/{old_status} new {new_spec}");
    }
}

#[test]
fn proportions() {
    // Deployment scaled from 10 (max 13 before) to 20 (max 25): 5 and 5 replicas grow.
    let d = deployment(20, "25%", "25%");
    let a = with_annotations(rs("a", 1, 5, 5), &[(MAX_REPLICAS_ANNOTATION, "13")]);
    let b = with_annotations(rs("b", 2, 5, 5), &[(MAX_REPLICAS_ANNOTATION, "13")]);
    // 5 * 25 / 13 = 9.6 → 10: +5 each, capped by what is left to add.
    assert_eq!(replica_set_proportion(&a, &d, 15, 0), 5);
    assert_eq!(replica_set_proportion(&b, &d, 15, 12), 3);
    assert_eq!(replica_set_proportion(&b, &d, 15, 15), 0);
    assert_eq!(replica_set_proportion(&rs("z", 1, 0, 0), &d, 15, 0), 0);
    // Scaling to zero removes everything.
    let zero = deployment(0, "25%", "25%");
    assert_eq!(replica_set_proportion(&a, &zero, -10, 0), -5);
}

#[test]
fn saturation() {
    let d = deployment(3, "25%", "25%");
    let full = with_annotations(rs("a", 1, 3, 3), &[(DESIRED_REPLICAS_ANNOTATION, "3")]);
    assert!(is_saturated(&d, Some(&full)));
    let unannotated = rs("a", 1, 3, 3);
    assert!(!is_saturated(&d, Some(&unannotated)));
    let unavailable = with_annotations(rs("a", 1, 3, 2), &[(DESIRED_REPLICAS_ANNOTATION, "3")]);
    assert!(!is_saturated(&d, Some(&unavailable)));
    assert!(!is_saturated(&d, None));
}

#[test]
fn status_and_availability_condition() {
    let d = deployment(4, "25%", "25%");
    let old = rs("old", 1, 2, 2);
    let new = rs("new", 2, 2, 1);
    let s = calculate_status(&[&old, &new], Some(&new), &d, ts(100));
    assert_eq!(s.replicas, Some(4));
    assert_eq!(s.updated_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(1));
    let c = get_condition(&s, AVAILABLE).expect("available");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some(MIN_AVAILABLE_REASON))
    );

    let low = rs("new", 2, 4, 2);
    let s2 = calculate_status(&[&low], Some(&low), &d, ts(100));
    let c = get_condition(&s2, AVAILABLE).expect("available");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some(MIN_UNAVAILABLE_REASON))
    );
    assert_eq!(
        c.message.as_deref(),
        Some("Deployment does not have minimum availability.")
    );
}

#[test]
fn conditions_keep_transition_time() {
    let mut s = DeploymentStatus::default();
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", NEW_RS_REASON, "a", ts(1)),
    );
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", NEW_RS_REASON, "b", ts(2)),
    );
    let c = get_condition(&s, PROGRESSING).expect("cond");
    assert_eq!(
        c.message.as_deref(),
        Some("a"),
        "same status and reason: unchanged"
    );
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "c", ts(3)),
    );
    let c = get_condition(&s, PROGRESSING).expect("cond");
    assert_eq!(c.last_transition_time, Some(Time(ts(1))));
    assert_eq!(c.last_update_time, Some(Time(ts(3))));
    set_condition(
        &mut s,
        new_condition(PROGRESSING, "False", TIMED_OUT_REASON, "d", ts(4)),
    );
    let c = get_condition(&s, PROGRESSING).expect("cond");
    assert_eq!(c.last_transition_time, Some(Time(ts(4))));
    remove_condition(&mut s, PROGRESSING);
    assert!(s.conditions.is_none());
}

#[test]
fn progress_predicates() {
    let mut d = deployment(2, "25%", "25%");
    d.status = Some(DeploymentStatus {
        replicas: Some(3),
        updated_replicas: Some(1),
        ready_replicas: Some(2),
        available_replicas: Some(2),
        observed_generation: Some(1),
        ..Default::default()
    });
    let st = |replicas, updated, available| DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        ..Default::default()
    };
    assert!(deployment_complete(&d, &st(2, 2, 2)));
    assert!(!deployment_complete(&d, &st(3, 2, 2)));
    assert!(deployment_progressing(&d, &st(3, 2, 2)), "more updated");
    assert!(deployment_progressing(&d, &st(2, 1, 2)), "fewer old");
    assert!(!deployment_progressing(&d, &st(3, 1, 2)), "no change");

    let progressing_at = |t: i64, reason: &str| DeploymentStatus {
        conditions: Some(vec![new_condition(PROGRESSING, "True", reason, "", ts(t))]),
        ..Default::default()
    };
    assert!(!deployment_timed_out(
        &d,
        &progressing_at(0, RS_UPDATED_REASON),
        ts(600)
    ));
    assert!(deployment_timed_out(
        &d,
        &progressing_at(0, RS_UPDATED_REASON),
        ts(601)
    ));
    assert!(!deployment_timed_out(
        &d,
        &progressing_at(0, NEW_RS_AVAILABLE_REASON),
        ts(9999)
    ));
    assert!(deployment_timed_out(
        &d,
        &progressing_at(500, TIMED_OUT_REASON),
        ts(501)
    ));
    if let Some(s) = d.spec.as_mut() {
        s.progress_deadline_seconds = Some(i32::MAX);
    }
    assert!(!deployment_timed_out(
        &d,
        &progressing_at(0, RS_UPDATED_REASON),
        ts(9999)
    ));
}
