//! Table-driven tests for validation and defaulting.

use serde_json::{Value, json};

use super::*;

/// Defaults an object as the server would, then validates it.
fn check(group: &str, kind: &str, mut obj: Value, old: Option<&Value>) -> Vec<FieldError> {
    apply_defaults(group, "v1", kind, &mut obj);
    validate(group, kind, &obj, old)
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn simple_pod() -> Value {
    pod(json!({"containers": [{"name": "web", "image": "nginx:1.27"}]}))
}

fn deployment(spec_patch: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    });
    merge(&mut d["spec"], spec_patch);
    d
}

/// Shallow-recursive merge for building test objects (null deletes).
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn stored(mut obj: Value, rv: &str) -> Value {
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj
}

#[test]
fn field_error_messages_match_upstream() {
    let cases = [
        (
            FieldError::required("spec.containers[0].name", ""),
            "spec.containers[0].name: Required value",
        ),
        (
            FieldError::invalid("metadata.name", "Foo", "bad"),
            "metadata.name: Invalid value: \"Foo\": bad",
        ),
        (
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            FieldError::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"],
            ),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ),
        (
            FieldError::duplicate("spec.containers[1].name", "web"),
            "spec.containers[1].name: Duplicate value: \"web\"",
        ),
        (FieldError::forbidden("spec", "no"), "spec: Forbidden: no"),
        (
            FieldError::too_long("metadata.annotations", 262144),
            "metadata.annotations: Too long: may not be more than 262144 bytes",
        ),
        (
            FieldError::too_many("spec.rules", 25, 20),
            "spec.rules: Too many: 25: must have at most 20 items",
        ),
        (
            FieldError::not_found("spec.containers[0].volumeMounts[0].name", "data"),
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
        ),
        (
            FieldError::invalid("x", Value::Null, "gone"),
            "x: Invalid value: \"null\": gone",
        ),
        (
            FieldError::invalid("x", json!(["a", "b"]), "d"),
            "x: Invalid value: []string{\"a\", \"b\"}: d",
        ),
        (
            FieldError::invalid("x", true, "d"),
            "x: Invalid value: true: d",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.message(), want);
    }
    let err = FieldError::required("spec.selector", "");
    assert_eq!(
        err.to_cause(),
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"})
    );
    let reasons = [
        (FieldErrorType::Invalid, "FieldValueInvalid"),
        (FieldErrorType::NotSupported, "FieldValueNotSupported"),
        (FieldErrorType::Duplicate, "FieldValueDuplicate"),
        (FieldErrorType::Forbidden, "FieldValueForbidden"),
        (FieldErrorType::TooLong, "FieldValueTooLong"),
        (FieldErrorType::TooMany, "FieldValueTooMany"),
        (FieldErrorType::NotFound, "FieldValueNotFound"),
    ];
    for (kind, reason) in reasons {
        assert_eq!(kind.reason(), reason);
    }
}

#[test]
fn invalid_status_message() {
    let errs = vec![
        FieldError::required("spec.containers[0].image", ""),
        FieldError::required("spec.containers[0].image", ""),
        FieldError::invalid("metadata.name", "A", "x"),
    ];
    assert_eq!(
        invalid_message("apps", "Deployment", "web", &errs),
        "Deployment.apps \"web\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"A\": x]"
    );
    assert_eq!(
        invalid_message("", "Pod", "p", &errs[..1]),
        "Pod \"p\" is invalid: spec.containers[0].image: Required value"
    );
}

#[test]
fn defaults_table() {
    let cases: Vec<(&str, &str, Value, Value)> = vec![
        (
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                 "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}},
                 "livenessProbe": {"httpGet": {"port": 80}}},
                {"name": "b", "image": "busybox:1.36"}
            ], "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}),
            json!({"metadata": {"name": "p"}, "spec": {
                "containers": [
                    {"name": "a", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                     "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}},
                     "livenessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                     "imagePullPolicy": "Always", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                    {"name": "b", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent", "resources": {},
                     "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x", "defaultMode": 420}}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "enableServiceLinks": true
            }}),
        ),
        (
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x@sha256:0123456789abcdef0123456789abcdef"}]}}}}),
            json!({"metadata": {"name": "d"}, "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "template": {"metadata": {"creationTimestamp": null}, "spec": {
                    "containers": [{"name": "c", "image": "x@sha256:0123456789abcdef0123456789abcdef", "imagePullPolicy": "IfNotPresent",
                        "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
                    "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}}
            }}),
        ),
        (
            "apps",
            "DaemonSet",
            json!({"spec": {"template": {"spec": {}}}}),
            json!({"spec": {
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                "revisionHistoryLimit": 10,
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "securityContext": {}, "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}}
            }}),
        ),
        (
            "apps",
            "StatefulSet",
            json!({"spec": {"template": {"spec": {}}, "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]}}),
            json!({"spec": {
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "replicas": 1, "revisionHistoryLimit": 10,
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                    "securityContext": {}, "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}},
                "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "www", "creationTimestamp": null},
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}]
            }}),
        ),
        (
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}}}),
            json!({"spec": {
                "schedule": "* * * * *", "concurrencyPolicy": "Allow", "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"creationTimestamp": null}, "spec": {"template": {"metadata": {"creationTimestamp": null},
                    "spec": {"restartPolicy": "Never", "dnsPolicy": "ClusterFirst", "securityContext": {},
                        "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}}}}
            }}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
                "status": {"loadBalancer": {}}}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.5", "ports": [{"port": 80, "targetPort": "http"}], "sessionAffinity": "ClientIP"}}),
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"],
                "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}], "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true,
                "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]},
                "status": {"loadBalancer": {}}}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"clusterIP": "None"}}),
            json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"], "sessionAffinity": "None", "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4"]},
                "status": {"loadBalancer": {}}}),
        ),
        (
            "",
            "Namespace",
            json!({"metadata": {"name": "team"}}),
            json!({"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ),
        (
            "",
            "Namespace",
            json!({"metadata": {"name": "team", "resourceVersion": "5"}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
            json!({"metadata": {"name": "team", "resourceVersion": "5", "labels": {"kubernetes.io/metadata.name": "team"}},
                "spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
        ),
        (
            "",
            "Secret",
            json!({"stringData": {"user": "admin"}, "data": {"pw": "cGFzcw=="}}),
            json!({"type": "Opaque", "data": {"pw": "cGFzcw==", "user": "YWRtaW4="}}),
        ),
        (
            "",
            "ReplicationController",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {}}}}),
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"selector": {"app": "x"}, "replicas": 1,
                "template": {"metadata": {"labels": {"app": "x"}, "creationTimestamp": null}, "spec": {"dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always", "securityContext": {}, "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler"}}}}),
        ),
        (
            "",
            "Node",
            json!({"spec": {"podCIDR": "10.244.0.0/24"}, "status": {"capacity": {"cpu": "4", "memory": "8192Mi"}}}),
            json!({"spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
                "status": {"capacity": {"cpu": "4", "memory": "8Gi"}, "allocatable": {"cpu": "4", "memory": "8Gi"}}}),
        ),
        (
            "",
            "ConfigMap",
            json!({"data": {"a": "b"}}),
            json!({"data": {"a": "b"}}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            json!({"spec": {}}),
            json!({"spec": {}}),
        ),
    ];
    for (group, kind, mut input, want) in cases {
        apply_defaults(group, "v1", kind, &mut input);
        assert_eq!(input, want, "defaults for {kind}");
    }
}

#[test]
fn job_defaults_and_selector_generation() {
    let mut job = json!({"metadata": {"name": "pi", "namespace": "d", "uid": "u-1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
    apply_defaults("batch", "v1", "Job", &mut job);
    let labels = json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "job-name": "pi"});
    assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(job["metadata"]["labels"], labels);
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    for (field, want) in [
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
    ] {
        assert_eq!(job["spec"][field], want, "{field}");
    }
    assert!(
        validate("batch", "Job", &job, None).is_empty(),
        "{:?}",
        validate("batch", "Job", &job, None)
    );

    // Manual selectors and objects already stored are left alone.
    let mut manual = json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true, "parallelism": 3}});
    apply_defaults("batch", "v1", "Job", &mut manual);
    assert!(manual["spec"].get("selector").is_none());
    assert!(manual["spec"].get("completions").is_none());
    let mut stored_job =
        json!({"metadata": {"name": "s", "uid": "u", "resourceVersion": "7"}, "spec": {}});
    apply_defaults("batch", "v1", "Job", &mut stored_job);
    assert!(stored_job["spec"].get("selector").is_none());
}

#[test]
fn image_pull_policy_defaults() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("registry.example.com:5000/team/app", "Always"),
        ("registry.example.com:5000/team/app:v2", "IfNotPresent"),
        (
            "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "IfNotPresent",
        ),
        (
            "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Always",
        ),
        ("Nginx", "IfNotPresent"),
        ("", "IfNotPresent"),
    ];
    for (image, want) in cases {
        assert_eq!(defaults::default_pull_policy(image), want, "{image}");
    }
}

#[test]
fn admission_defaults() {
    let mut p = simple_pod();
    apply_admission_defaults("", "Pod", &mut p);
    assert_eq!(p["spec"]["priority"], 0);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
    apply_admission_defaults("", "Pod", &mut p);
    assert_eq!(
        p["spec"]["tolerations"].as_array().map(Vec::len),
        Some(2),
        "idempotent"
    );
}

#[test]
fn valid_objects_pass() {
    let cases: Vec<(&str, &str, Value)> = vec![
        ("", "Pod", simple_pod()),
        (
            "",
            "Pod",
            pod(json!({
                "containers": [{
                    "name": "app", "image": "busybox",
                    "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
                    "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
                    "envFrom": [{"configMapRef": {"name": "cfg"}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi", "example.com/gpu": "1"}},
                    "readinessProbe": {"tcpSocket": {"port": "http"}},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": false}
                }],
                "initContainers": [{"name": "init", "image": "busybox", "command": ["true"]},
                                   {"name": "sidecar", "image": "envoy", "restartPolicy": "Always", "startupProbe": {"exec": {"command": ["true"]}}}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}},
                            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt"}]}},
                            {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
                "serviceAccountName": "builder",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, {"operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "x"}}}],
                "dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["svc.cluster.local"]},
                "hostname": "h", "subdomain": "s", "activeDeadlineSeconds": 60
            })),
        ),
        ("apps", "Deployment", deployment(json!({}))),
        (
            "apps",
            "Deployment",
            deployment(json!({"replicas": 0, "strategy": {"type": "Recreate"}})),
        ),
        (
            "apps",
            "ReplicaSet",
            json!({"metadata": {"name": "rs", "namespace": "d"}, "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "apps",
            "DaemonSet",
            json!({"metadata": {"name": "ds", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            "apps",
            "StatefulSet",
            json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"serviceName": "web", "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i",
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Paris",
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "np", "namespace": "d"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.11",
                "ports": [{"port": 80, "nodePort": 30080}]}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "hl", "namespace": "d"}, "spec": {"clusterIP": "None"}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "ext", "namespace": "d"}, "spec": {"type": "ExternalName", "externalName": "example.com."}}),
        ),
        ("", "Namespace", json!({"metadata": {"name": "team-a"}})),
        (
            "",
            "Node",
            json!({"metadata": {"name": "node-1"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "podCIDR": "10.244.1.0/24"}}),
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata": {"name": "cfg", "namespace": "d"}, "data": {"app.properties": "x=1"}, "binaryData": {"b.bin": "AAE="}}),
        ),
        (
            "",
            "Secret",
            json!({"metadata": {"name": "tls", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}),
        ),
        (
            "",
            "Secret",
            json!({"metadata": {"name": "dc", "namespace": "d"}, "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{\"auths\":{}}"}}),
        ),
        (
            "",
            "Event",
            json!({"metadata": {"name": "e.1", "namespace": "d"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "d"}, "reason": "Started", "type": "Normal"}),
        ),
        (
            "events.k8s.io",
            "Event",
            json!({"metadata": {"name": "e.2", "namespace": "d"}, "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "example.com/ctl",
                "reportingInstance": "ctl-1", "action": "Create", "reason": "Created", "type": "Normal", "regarding": {"kind": "Pod", "namespace": "d"}}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            json!({"metadata": {"name": "system:controller:x"}}),
        ),
        (
            "example.com",
            "Widget",
            json!({"metadata": {"name": "w", "namespace": "d", "finalizers": ["example.com/cleanup"]}}),
        ),
        (
            "",
            "PodTemplate",
            json!({"metadata": {"name": "t", "namespace": "d"}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}),
        ),
        (
            "",
            "ReplicationController",
            json!({"metadata": {"name": "rc", "namespace": "d"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
    ];
    for (group, kind, obj) in cases {
        let name = obj["metadata"]["name"].clone();
        let errs = check(group, kind, obj, None);
        assert!(
            errs.is_empty(),
            "{kind} {name}: {}",
            aggregate_message(&errs)
        );
    }
}

/// (group, kind, object, old object, expected (field, reason) pairs in order).
type Rejection = (
    &'static str,
    &'static str,
    Value,
    Option<Value>,
    Vec<(&'static str, &'static str)>,
);

#[test]
fn rejections_table() {
    let cases: Vec<Rejection> = vec![
        (
            "",
            "Pod",
            pod(json!({"containers": []})),
            None,
            vec![("spec.containers", "FieldValueRequired")],
        ),
        (
            "",
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "i"}, {"name": "a", "image": ""}]})),
            None,
            vec![
                ("spec.containers[1].image", "FieldValueRequired"),
                ("spec.containers[1].name", "FieldValueDuplicate"),
            ],
        ),
        (
            "",
            "Pod",
            pod(json!({"containers": [{"name": "", "image": "i"}]})),
            None,
            vec![("spec.containers[0].name", "FieldValueRequired")],
        ),
        (
            "",
            "Pod",
            pod(json!({"containers": [{"name": "Web", "image": "i"}]})),
            None,
            vec![("spec.containers[0].name", "FieldValueInvalid")],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"}]}]}),
            ),
            None,
            vec![
                (
                    "spec.containers[0].ports[0].containerPort",
                    "FieldValueInvalid",
                ),
                (
                    "spec.containers[0].ports[1].protocol",
                    "FieldValueNotSupported",
                ),
            ],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
            ),
            None,
            vec![("spec.containers[0].resources.requests", "FieldValueInvalid")],
        ),
        (
            "",
            "Pod",
            pod(json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "i"}]})),
            None,
            vec![("spec.restartPolicy", "FieldValueNotSupported")],
        ),
        (
            "",
            "Pod",
            pod(json!({"dnsPolicy": "Magic", "containers": [{"name": "a", "image": "i"}]})),
            None,
            vec![("spec.dnsPolicy", "FieldValueNotSupported")],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i", "volumeMounts": [{"name": "missing", "mountPath": "/m"}]}],
                "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}),
            ),
            None,
            vec![
                ("spec.volumes[0].hostPath", "FieldValueForbidden"),
                ("spec.volumes[2].name", "FieldValueDuplicate"),
                (
                    "spec.containers[0].volumeMounts[0].name",
                    "FieldValueNotFound",
                ),
            ],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i", "env": [{"name": "A=B"}, {"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}),
            ),
            None,
            vec![
                ("spec.containers[0].env[0].name", "FieldValueInvalid"),
                ("spec.containers[0].env[1].valueFrom", "FieldValueInvalid"),
            ],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i", "livenessProbe": {"successThreshold": 2, "exec": {"command": ["x"]}},
                "readinessProbe": {"periodSeconds": 5}}]}),
            ),
            None,
            vec![
                (
                    "spec.containers[0].livenessProbe.successThreshold",
                    "FieldValueInvalid",
                ),
                ("spec.containers[0].readinessProbe", "FieldValueRequired"),
            ],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i"}], "tolerations": [{"operator": "Equal", "value": "x"}]}),
            ),
            None,
            vec![("spec.tolerations[0].operator", "FieldValueInvalid")],
        ),
        (
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "a", "image": "i"}], "ephemeralContainers": [{"name": "dbg", "image": "busybox"}]}),
            ),
            None,
            vec![("spec.ephemeralContainers", "FieldValueForbidden")],
        ),
        (
            "",
            "Pod",
            json!({"metadata": {"name": "Bad_Name", "namespace": "default", "labels": {"a": "b c"}, "annotations": {"-x": "1"}, "finalizers": ["foo"]},
                "spec": {"containers": [{"name": "a", "image": "i"}]}}),
            None,
            vec![
                ("metadata.name", "FieldValueInvalid"),
                ("metadata.labels", "FieldValueInvalid"),
                ("metadata.annotations", "FieldValueInvalid"),
                ("metadata.finalizers[0]", "FieldValueInvalid"),
            ],
        ),
        (
            "",
            "Pod",
            json!({"metadata": {"namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i"}]}}),
            None,
            vec![("metadata.name", "FieldValueRequired")],
        ),
        (
            "",
            "Pod",
            json!({"metadata": {"name": "p", "namespace": "d", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
                {"apiVersion": "", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}]},
                "spec": {"containers": [{"name": "a", "image": "i"}]}}),
            None,
            vec![
                ("metadata.ownerReferences.apiVersion", "FieldValueInvalid"),
                ("metadata.ownerReferences", "FieldValueInvalid"),
            ],
        ),
        (
            "",
            "Pod",
            stored(simple_pod(), "2"),
            Some(stored(
                pod(
                    json!({"containers": [{"name": "web", "image": "nginx:1.27", "workingDir": "/x"}]}),
                ),
                "1",
            )),
            vec![("spec", "FieldValueForbidden")],
        ),
        (
            "",
            "Pod",
            stored(
                pod(
                    json!({"containers": [{"name": "web", "image": "nginx"}, {"name": "b", "image": "b"}]}),
                ),
                "2",
            ),
            Some(stored(simple_pod(), "1")),
            vec![("spec.containers", "FieldValueForbidden")],
        ),
        (
            "apps",
            "Deployment",
            deployment(json!({"selector": null})),
            None,
            vec![
                ("spec.selector", "FieldValueRequired"),
                ("spec.template.metadata.labels", "FieldValueInvalid"),
            ],
        ),
        (
            "apps",
            "Deployment",
            deployment(json!({"selector": {"matchLabels": {"app": "other"}}, "replicas": -1})),
            None,
            vec![
                ("spec.replicas", "FieldValueInvalid"),
                ("spec.template.metadata.labels", "FieldValueInvalid"),
            ],
        ),
        (
            "apps",
            "Deployment",
            deployment(
                json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}}),
            ),
            None,
            vec![(
                "spec.strategy.rollingUpdate.maxUnavailable",
                "FieldValueInvalid",
            )],
        ),
        (
            "apps",
            "Deployment",
            deployment(json!({"strategy": {"type": "BlueGreen"}})),
            None,
            vec![("spec.strategy", "FieldValueNotSupported")],
        ),
        (
            "apps",
            "Deployment",
            deployment(json!({"template": {"spec": {"restartPolicy": "Never"}}})),
            None,
            vec![("spec.template.spec.restartPolicy", "FieldValueNotSupported")],
        ),
        (
            "apps",
            "Deployment",
            stored(
                deployment(
                    json!({"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}),
                ),
                "2",
            ),
            Some(stored(deployment(json!({})), "1")),
            vec![("spec.selector", "FieldValueInvalid")],
        ),
        (
            "apps",
            "StatefulSet",
            json!({"metadata": {"name": "a.b", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            None,
            vec![("metadata.name", "FieldValueInvalid")],
        ),
        (
            "apps",
            "DaemonSet",
            json!({"metadata": {"name": "ds", "namespace": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            None,
            vec![(
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "FieldValueInvalid",
            )],
        ),
        (
            "batch",
            "Job",
            json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            None,
            vec![("spec.template.spec.restartPolicy", "FieldValueRequired")],
        ),
        (
            "batch",
            "Job",
            json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"manualSelector": true, "parallelism": -1,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}),
            None,
            vec![
                ("spec.parallelism", "FieldValueInvalid"),
                ("spec.selector", "FieldValueRequired"),
                ("spec.template.metadata.labels", "FieldValueInvalid"),
            ],
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"schedule": "61 * * * *", "concurrencyPolicy": "Sometimes",
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}),
            None,
            vec![
                ("spec.schedule", "FieldValueInvalid"),
                ("spec.concurrencyPolicy", "FieldValueNotSupported"),
            ],
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"clusterIP": "10.0.0.1"}}),
            None,
            vec![("spec.ports", "FieldValueRequired")],
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "1svc", "namespace": "d"}, "spec": {"clusterIP": "10.0.0.1", "type": "Weird",
                "ports": [{"port": 0}, {"name": "a", "port": 80, "protocol": "HTTP"}]}}),
            None,
            vec![
                ("metadata.name", "FieldValueInvalid"),
                ("spec.ports[0].name", "FieldValueRequired"),
                ("spec.ports[0].port", "FieldValueInvalid"),
                ("spec.ports[0].targetPort", "FieldValueInvalid"),
                ("spec.ports[1].protocol", "FieldValueNotSupported"),
                ("spec.type", "FieldValueNotSupported"),
            ],
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.1", "ports": [{"port": 80, "nodePort": 80}]}}),
            None,
            vec![("spec.ports[0].nodePort", "FieldValueInvalid")],
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}}),
            None,
            vec![("spec.ports[1]", "FieldValueDuplicate")],
        ),
        (
            "",
            "Namespace",
            json!({"metadata": {"name": "Team.A"}}),
            None,
            vec![("metadata.name", "FieldValueInvalid")],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"bad/key": "x", "dup": "1"}, "binaryData": {"dup": "AA=="}}),
            None,
            vec![
                ("data[bad/key]", "FieldValueInvalid"),
                ("data[dup]", "FieldValueInvalid"),
            ],
        ),
        (
            "",
            "ConfigMap",
            stored(
                json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}, "immutable": true}),
                "2",
            ),
            Some(stored(
                json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": true}),
                "1",
            )),
            vec![("data", "FieldValueForbidden")],
        ),
        (
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"big": "x".repeat(MAX_SECRET + 1)}}),
            None,
            vec![("[]", "FieldValueTooLong")],
        ),
        (
            "",
            "Secret",
            json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}}),
            None,
            vec![("data[tls.key]", "FieldValueRequired")],
        ),
        (
            "",
            "Secret",
            stored(
                json!({"metadata": {"name": "t", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}),
                "2",
            ),
            Some(stored(
                json!({"metadata": {"name": "t", "namespace": "d"}, "type": "Opaque", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}),
                "1",
            )),
            vec![("type", "FieldValueInvalid")],
        ),
        (
            "",
            "Node",
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Never"}, {"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]}}),
            None,
            vec![
                ("metadata.taints[0].effect", "FieldValueNotSupported"),
                ("metadata.taints[2]", "FieldValueDuplicate"),
            ],
        ),
        (
            "",
            "Event",
            json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "namespace": "other"}}),
            None,
            vec![("involvedObject.namespace", "FieldValueInvalid")],
        ),
        (
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
            None,
            vec![
                ("spec.leaseDurationSeconds", "FieldValueInvalid"),
                ("spec.leaseTransitions", "FieldValueInvalid"),
            ],
        ),
        (
            "example.com",
            "Widget",
            stored(
                json!({"metadata": {"name": "w2", "namespace": "d", "uid": "b"}}),
                "2",
            ),
            Some(stored(
                json!({"metadata": {"name": "w", "namespace": "d", "uid": "a"}}),
                "1",
            )),
            vec![
                ("metadata.name", "FieldValueInvalid"),
                ("metadata.uid", "FieldValueInvalid"),
            ],
        ),
        (
            "example.com",
            "Widget",
            json!({"metadata": {"name": "w", "namespace": "d"}}),
            Some(stored(
                json!({"metadata": {"name": "w", "namespace": "d"}}),
                "1",
            )),
            vec![("metadata.resourceVersion", "FieldValueInvalid")],
        ),
    ];
    for (group, kind, obj, old, want) in cases {
        let label = format!("{kind} {}", obj["metadata"]["name"]);
        let mut old = old;
        if let Some(o) = old.as_mut() {
            apply_defaults(group, "v1", kind, o);
        }
        let errs = check(group, kind, obj, old.as_ref());
        let got: Vec<(&str, &str)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.reason()))
            .collect();
        let mut dedup = Vec::new();
        for g in got {
            if !dedup.contains(&g) {
                dedup.push(g);
            }
        }
        assert_eq!(dedup, want, "{label}: {}", aggregate_message(&errs));
    }
}

const MAX_SECRET: usize = core_v1::MAX_SECRET_SIZE;

#[test]
fn exact_messages_for_common_mistakes() {
    let errs = check(
        "apps",
        "Deployment",
        deployment(json!({"selector": {"matchLabels": {"app": "other"}}})),
        None,
    );
    assert_eq!(
        aggregate_message(&errs),
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
    );
    let errs = check(
        "",
        "Pod",
        pod(
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
        ),
        None,
    );
    assert_eq!(
        aggregate_message(&errs),
        "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
    );
    let errs = check(
        "",
        "Pod",
        json!({"metadata": {"name": "Foo", "namespace": "d"}, "spec": {"containers": [{"name": "a", "image": "i"}]}}),
        None,
    );
    assert_eq!(
        errs[0].message(),
        "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    let errs = check(
        "batch",
        "Job",
        json!({"metadata": {"name": "j", "namespace": "d", "uid": "u"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        None,
    );
    assert_eq!(
        errs[0].message(),
        "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    let old = stored(deployment(json!({})), "1");
    let mut new = stored(
        deployment(
            json!({"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}),
        ),
        "2",
    );
    apply_defaults("apps", "v1", "Deployment", &mut new);
    let mut old_d = old;
    apply_defaults("apps", "v1", "Deployment", &mut old_d);
    let errs = validate("apps", "Deployment", &new, Some(&old_d));
    assert_eq!(
        aggregate_message(&errs),
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );
}

#[test]
fn undecodable_objects_are_reported() {
    let errs = validate(
        "apps",
        "Deployment",
        &json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}}),
        None,
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].kind, FieldErrorType::TypeInvalid);
}

#[test]
fn the_mirror_pod_annotation_is_immutable() {
    let mut mirror =
        pod(json!({"nodeName": "n1", "containers": [{"name": "web", "image": "nginx:1"}]}));
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    let mut old = mirror.clone();
    apply_defaults("", "v1", "Pod", &mut old);
    let old = stored(old, "5");
    // The image may change (as for any pod); the annotation may not.
    let mut image = stored(mirror.clone(), "5");
    image["spec"]["containers"][0]["image"] = json!("nginx:2");
    let errs = check("", "Pod", image, Some(&old));
    assert!(errs.is_empty(), "{errs:?}");
    for annotations in [json!({}), json!({"kubernetes.io/config.mirror": "other"})] {
        let mut changed = stored(mirror.clone(), "5");
        changed["metadata"]["annotations"] = annotations;
        let errs = check("", "Pod", changed, Some(&old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].field,
            "metadata.annotations.kubernetes.io/config.mirror"
        );
        assert_eq!(errs[0].detail, "field is immutable");
    }
}
