//! The in-process client transport (`apiserver::loopback`) against a real API server
//! (in-process, in-memory store): a `kube::Client` on it creates, reads, watches and is
//! authorized like a network client, and sees writes made over HTTPS.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use apiserver::auth::UserInfo;
use apiserver::loopback::Loopback;

mod common;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "loop"}},
        "data": {"k": value},
    }))
    .expect("config map")
}

#[tokio::test]
async fn loopback_client_behaves_like_a_network_client() {
    let server = common::start().await;
    let running = &server.running;
    let https = common::client(&running.kubeconfig, None).await;
    let local = Client::new(
        Loopback::component(running.server.clone(), "system:kube-controller-manager"),
        "default",
    );

    // Writes through the loopback are visible over HTTPS and the other way round.
    let over_loop: Api<ConfigMap> = Api::default_namespaced(local.clone());
    let over_https: Api<ConfigMap> = Api::default_namespaced(https.clone());
    let created = over_loop
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .expect("create over loopback");
    assert!(!created.uid().unwrap_or_default().is_empty());
    let seen = over_https.get("a").await.expect("get over https");
    assert_eq!(seen.resource_version(), created.resource_version());

    // A watch over the loopback streams later changes made over HTTPS, in order.
    let rv = created.resource_version().expect("rv");
    let mut events = over_loop
        .watch(&WatchParams::default().labels("app=loop").timeout(30), &rv)
        .await
        .expect("watch")
        .boxed();
    over_https
        .create(&PostParams::default(), &config_map("b", "2"))
        .await
        .expect("create over https");
    over_https
        .replace("a", &PostParams::default(), &{
            let mut a = over_https.get("a").await.expect("get a");
            a.data = Some([("k".to_string(), "3".to_string())].into());
            a
        })
        .await
        .expect("update over https");
    let mut got = Vec::new();
    while got.len() < 2 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), events.try_next())
            .await
            .expect("watch event in time")
            .expect("watch stream")
            .expect("stream not ended");
        match ev {
            WatchEvent::Added(cm) => got.push(format!("ADDED {}", cm.name_any())),
            WatchEvent::Modified(cm) => got.push(format!(
                "MODIFIED {} {}",
                cm.name_any(),
                cm.data.unwrap_or_default()["k"]
            )),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(got, ["ADDED b", "MODIFIED a 3"]);

    // Errors come back as Kubernetes Status errors, as over the network.
    let err = over_loop
        .create(&PostParams::default(), &config_map("a", "again"))
        .await
        .expect_err("duplicate create");
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("expected a Status error, got {other:?}"),
    }

    // The identity given to the loopback is the one authorized: the anonymous user is
    // forbidden, by name.
    let anonymous = Client::new(
        Loopback::new(running.server.clone(), UserInfo::anonymous()),
        "default",
    );
    let err = Api::<ConfigMap>::default_namespaced(anonymous)
        .get("a")
        .await
        .expect_err("anonymous get");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("system:anonymous"), "{s:?}");
        }
        other => panic!("expected a Status error, got {other:?}"),
    }
}
