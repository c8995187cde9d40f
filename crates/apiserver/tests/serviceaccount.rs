//! Service-account tokens against a real API server (in-process, in-memory store):
//! TokenRequest, the bearer-token authenticator and the ServiceAccount admission.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

mod common;
use common::client;

struct Env {
    client: Client,
    kubeconfig: std::path::PathBuf,
    _server: common::TestServer,
}

async fn start() -> Env {
    let server = common::start().await;
    let kubeconfig = server.running.kubeconfig.clone();
    Env {
        client: client(&kubeconfig, None).await,
        kubeconfig,
        _server: server,
    }
}

async fn create_sa(c: &Client, ns: &str, name: &str, automount: Option<bool>) -> ServiceAccount {
    let api: Api<ServiceAccount> = Api::namespaced(c.clone(), ns);
    let mut v = json!({"metadata": {"name": name}});
    if let Some(a) = automount {
        v["automountServiceAccountToken"] = json!(a);
    }
    api.create(
        &PostParams::default(),
        &serde_json::from_value(v).expect("sa"),
    )
    .await
    .expect("create sa")
}

async fn token_request(
    c: &Client,
    ns: &str,
    sa: &str,
    spec: serde_json::Value,
) -> Result<TokenRequest, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(c.clone(), ns);
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    api.create_subresource("token", sa, &PostParams::default(), &body)
        .await
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

async fn can_list_pods(env: &Env, token: &str) -> Result<(), u16> {
    let c = client(&env.kubeconfig, Some(token)).await;
    let pods: Api<Pod> = Api::namespaced(c, "default");
    pods.list(&ListParams::default())
        .await
        .map(|_| ())
        .map_err(|e| code(&e))
}

fn pod(name: &str, extra: serde_json::Value) -> Pod {
    let mut v = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "initContainers": [{"name": "i", "image": "busybox"}]}});
    if let Some(o) = extra.as_object() {
        for (k, x) in o {
            v["spec"][k] = x.clone();
        }
    }
    serde_json::from_value(v).expect("pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_and_authentication() {
    let env = start().await;
    let sa = create_sa(&env.client, "default", "robot", None).await;
    // A missing service account: 404.
    let err = token_request(&env.client, "default", "ghost", json!({}))
        .await
        .expect_err("404");
    assert_eq!(code(&err), 404);
    // Too short: 422.
    let err = token_request(
        &env.client,
        "default",
        "robot",
        json!({"expirationSeconds": 599}),
    )
    .await
    .expect_err("422");
    assert_eq!(code(&err), 422);
    // Defaults: the API audience, one hour.
    let tr = token_request(&env.client, "default", "robot", json!({}))
        .await
        .expect("token");
    assert_eq!(
        tr.spec.audiences,
        vec!["https://kubernetes.default.svc.cluster.local".to_string()]
    );
    assert_eq!(tr.spec.expiration_seconds, Some(3600));
    let status = tr.status.expect("status");
    let c = claims(&status.token);
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(c["kubernetes.io"]["namespace"], "default");
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"]["uid"].as_str(),
        sa.uid().as_deref()
    );
    assert_eq!(
        status.expiration_timestamp.0.as_second(),
        c["exp"].as_i64().unwrap()
    );
    // The token authenticates (AllowAuthenticated lets it list pods).
    can_list_pods(&env, &status.token)
        .await
        .expect("authenticated");
    // A token for another audience does not.
    let vault = token_request(
        &env.client,
        "default",
        "robot",
        json!({"audiences": ["vault"]}),
    )
    .await
    .expect("vault token")
    .status
    .expect("status")
    .token;
    assert_eq!(can_list_pods(&env, &vault).await, Err(401));
    // Nor does a tampered one.
    let mut forged: Vec<&str> = status.token.split('.').collect();
    let other = vault.split('.').nth(1).unwrap().to_string();
    forged[1] = &other;
    assert_eq!(can_list_pods(&env, &forged.join(".")).await, Err(401));

    // Bound to a pod: its uid must match, and the token dies with the pod.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "bound",
                json!({"serviceAccountName": "robot", "automountServiceAccountToken": false}),
            ),
        )
        .await
        .expect("pod");
    let uid = p.uid().expect("uid");
    let err = token_request(
        &env.client,
        "default",
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "bound", "uid": "wrong"}}),
    )
    .await
    .expect_err("409");
    assert_eq!(code(&err), 409);
    let err = token_request(
        &env.client,
        "default",
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "nope"}}),
    )
    .await
    .expect_err("404");
    assert_eq!(code(&err), 404);
    let bound = token_request(
        &env.client,
        "default",
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "bound", "uid": uid}}),
    )
    .await
    .expect("bound token")
    .status
    .expect("status")
    .token;
    assert_eq!(
        claims(&bound)["kubernetes.io"]["pod"]["uid"].as_str(),
        Some(uid.as_str())
    );
    can_list_pods(&env, &bound)
        .await
        .expect("bound token works");
    pods.delete("bound", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    assert_eq!(can_list_pods(&env, &bound).await, Err(401));
    // The unbound token dies with the service account.
    Api::<ServiceAccount>::namespaced(env.client.clone(), "default")
        .delete("robot", &DeleteParams::default())
        .await
        .expect("delete sa");
    assert_eq!(can_list_pods(&env, &status.token).await, Err(401));
    // Recreated under the same name (new uid): still refused.
    create_sa(&env.client, "default", "robot", None).await;
    assert_eq!(can_list_pods(&env, &status.token).await, Err(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_admission() {
    let env = start().await;
    // No service account controller here: the admission waits a little for
    // `default`, then refuses the pod.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let err = pods
        .create(&PostParams::default(), &pod("early", json!({})))
        .await
        .expect_err("no default service account");
    assert_eq!(code(&err), 403);
    assert!(
        err.to_string()
            .contains("serviceaccount \"default\" not found"),
        "{err}"
    );
    create_sa(&env.client, "default", "default", None).await;
    let p = pods
        .create(&PostParams::default(), &pod("auto", json!({})))
        .await
        .expect("pod");
    let spec = p.spec.expect("spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes = spec.volumes.expect("volumes");
    assert_eq!(volumes.len(), 1);
    let v = &volumes[0];
    assert!(
        v.name.starts_with("kube-api-access-") && v.name.len() == 21,
        "{}",
        v.name
    );
    let projected = v.projected.as_ref().expect("projected");
    assert_eq!(projected.default_mode, Some(420));
    let sources = projected.sources.as_ref().expect("sources");
    let token = sources[0].service_account_token.as_ref().expect("token");
    assert_eq!(
        (token.path.as_str(), token.expiration_seconds),
        ("token", Some(3607))
    );
    assert_eq!(
        sources[1].config_map.as_ref().expect("configMap").name,
        "kube-root-ca.crt"
    );
    assert!(sources[2].downward_api.is_some());
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
    {
        let m = c.volume_mounts.as_ref().expect("mounts");
        assert_eq!(m.len(), 1, "{}", c.name);
        assert_eq!(m[0].name, v.name);
        assert_eq!(
            m[0].mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(m[0].read_only, Some(true));
    }
    // Opting out on the pod, or on the service account.
    let p = pods
        .create(
            &PostParams::default(),
            &pod("optout", json!({"automountServiceAccountToken": false})),
        )
        .await
        .expect("pod");
    assert!(p.spec.expect("spec").volumes.is_none_or(|v| v.is_empty()));
    create_sa(&env.client, "default", "quiet", Some(false)).await;
    let p = pods
        .create(
            &PostParams::default(),
            &pod("quiet", json!({"serviceAccountName": "quiet"})),
        )
        .await
        .expect("pod");
    assert!(p.spec.expect("spec").volumes.is_none_or(|v| v.is_empty()));
    // The pod overrides the service account.
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "loud",
                json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
            ),
        )
        .await
        .expect("pod");
    assert_eq!(p.spec.expect("spec").volumes.map(|v| v.len()), Some(1));
    // A named service account that does not exist: refused at once.
    let err = pods
        .create(
            &PostParams::default(),
            &pod("ghostly", json!({"serviceAccountName": "ghost"})),
        )
        .await
        .expect_err("403");
    assert_eq!(code(&err), 403);
    // Mirror pods get no token and may not name a service account.
    let mut mirror = pod("mirror", json!({"nodeName": "n1"}));
    mirror.metadata.annotations = Some(
        [(
            "kubernetes.io/config.mirror".to_string(),
            "hash".to_string(),
        )]
        .into(),
    );
    let p = pods
        .create(&PostParams::default(), &mirror)
        .await
        .expect("mirror pod");
    assert!(p.spec.expect("spec").volumes.is_none_or(|v| v.is_empty()));
    mirror.metadata.name = Some("mirror2".into());
    mirror.spec.as_mut().unwrap().service_account_name = Some("default".into());
    let err = pods
        .create(&PostParams::default(), &mirror)
        .await
        .expect_err("403");
    assert_eq!(code(&err), 403);
    // Another namespace, without any service account.
    let nss: Api<Namespace> = Api::all(env.client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .expect("ns");
    let other: Api<Pod> = Api::namespaced(env.client.clone(), "other");
    assert_eq!(
        code(
            &other
                .create(&PostParams::default(), &pod("x", json!({})))
                .await
                .expect_err("403")
        ),
        403
    );
}
