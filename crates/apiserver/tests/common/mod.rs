//! Set-up shared by the API server's integration tests: a real server in this process
//! on an in-memory store, and `kube` clients of it over HTTPS.

use kube::Client;
use kube::config::{AuthInfo, Config, KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

/// A running server; it stops when dropped.
pub struct TestServer {
    pub running: apiserver::Running,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a server on a free loopback port with a fresh data dir.
pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let running = apiserver::start_with_store(
        apiserver::ServerConfig {
            data_dir: dir.path().to_path_buf(),
            secure_port: 0,
            bind_address: "127.0.0.1".into(),
            ..Default::default()
        },
        store::MemoryStore::new().expect("store"),
        shutdown.clone(),
    )
    .await
    .expect("start");
    TestServer {
        running,
        shutdown,
        _dir: dir,
    }
}

/// An HTTPS client from the admin kubeconfig, or with only a bearer token.
pub async fn client(kubeconfig: &std::path::Path, token: Option<&str>) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    if let Some(t) = token {
        cfg.auth_info = AuthInfo {
            token: Some(t.to_string().into()),
            ..Default::default()
        };
    }
    Client::try_from(cfg).expect("client")
}
