//! `flotilla agent`: another machine joins the cluster as a worker node, k3s style.
//!
//! With the server's join token (`<data-dir>/token` of the server) the agent
//! 1. fetches the cluster CA from `GET /cacerts` over an unverified connection and
//!    checks it against the SHA-256 in the token (`K10<hash>::server:<secret>`), so a
//!    man in the middle cannot slip in another CA;
//! 2. over a connection verified with that CA, presents the token's secret and gets
//!    its node credentials: a client certificate for `system:node:<node-name>` (group
//!    `system:nodes`) signed by the cluster CA (`GET /v1-flotilla/client-kubelet`);
//! 3. writes `<data-dir>/agent/kubelet.kubeconfig` (server URL, CA, that certificate),
//!    the CA to `<data-dir>/agent/server-ca.crt` and a `KubeletConfiguration`
//!    (`<data-dir>/agent/kubelet.yaml`, the CA as `clientCAFile` so the API server's
//!    kubelet-client certificate is accepted on 10250);
//! 4. runs the kubelet on the real runtime (`node::run_kubelet`).
//!
//! A bare secret (no `K10…` hash) cannot pin the CA: the agent then trusts the CA
//! given with `--ca-file`, or — with a warning — the one the server sends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use apiserver::join::{JoinToken, NodeCredentials};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::node;

/// `flotilla agent`.
#[derive(Args, Clone)]
pub struct AgentCmd {
    /// The server to join, e.g. `https://10.0.0.1:6443`.
    #[arg(long)]
    pub server: String,
    /// The join token: the content of the server's `<data-dir>/token` (`K10…`), or its
    /// bare secret.
    #[arg(long, required_unless_present = "token_file")]
    pub token: Option<String>,
    /// A file holding the join token.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The cluster CA to trust when the token is a bare secret (without it the
    /// server's CA is trusted unverified, with a warning).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Where containers, images, the pod network's state and the agent's
    /// credentials live.
    #[arg(long, default_value = "/var/lib/flotilla")]
    pub data_dir: PathBuf,
    /// The cluster's pod network (the server's `--cluster-cidr`), exempt from masquerade.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    #[command(flatten)]
    pub kubelet: kubelet::KubeletFlags,
    #[command(flatten)]
    pub runtime: node::NodeRuntimeFlags,
}

/// What joining produced: the files the kubelet runs with.
#[derive(Debug)]
pub struct Joined {
    pub kubeconfig: PathBuf,
    pub ca_file: PathBuf,
    pub user: String,
}

/// How long one join request may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `flotilla agent` until `shutdown`.
pub async fn run(cmd: AgentCmd, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the agent runs containers and needs root");
    }
    let token = match (&cmd.token, &cmd.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?,
        (None, None) => bail!("--token or --token-file is required"),
    };
    let mut flags = cmd.kubelet.clone();
    let node_name = flags
        .node_name
        .clone()
        .unwrap_or_else(kubelet::config::host_name);
    flags.node_name = Some(node_name.clone());
    let joined = join(
        &cmd.server,
        &token,
        cmd.ca_file.as_deref(),
        &cmd.data_dir,
        &node_name,
    )
    .await?;
    tracing::info!(
        "joined {} as {}; kubeconfig: {}",
        cmd.server,
        joined.user,
        joined.kubeconfig.display()
    );
    let flags =
        node::node_kubelet_flags(&cmd.data_dir, &joined.kubeconfig, &joined.ca_file, flags)?;
    node::run_kubelet(
        &cmd.data_dir,
        &cmd.cluster_cidr,
        &flags,
        &cmd.runtime,
        None,
        shutdown,
    )
    .await
}

/// A client of `server` that either verifies it against `ca_pem` or (for
/// `/cacerts` only) trusts anything, optionally with a bearer token.
fn client(
    server: &http::Uri,
    ca_pem: Option<&[u8]>,
    bearer: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let mut cfg = kube::Config::new(server.clone());
    cfg.connect_timeout = Some(JOIN_TIMEOUT);
    cfg.read_timeout = Some(JOIN_TIMEOUT);
    match ca_pem {
        Some(pem) => {
            let ders = rustls_pemfile::certs(&mut &pem[..])
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .context("parsing the cluster CA certificate")?;
            if ders.is_empty() {
                bail!("the cluster CA has no certificate in it");
            }
            cfg.root_cert = Some(ders);
        }
        None => cfg.accept_invalid_certs = true,
    }
    if let Some(secret) = bearer {
        cfg.headers.push((
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {secret}"))
                .context("the token's secret is not a valid header value")?,
        ));
    }
    Ok(kube::Client::try_from(cfg)?)
}

/// The HTTP status of a failed request, if the server answered.
fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Joins `server` with `token` as `node_name` and writes the node's credentials
/// under `<data_dir>/agent`.
pub async fn join(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    data_dir: &Path,
    node_name: &str,
) -> anyhow::Result<Joined> {
    let token = JoinToken::parse(token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let url: http::Uri = server
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    if url.scheme_str() != Some("https") || url.host().is_none() {
        bail!("--server {server:?}: expected https://HOST:PORT");
    }
    let get = |path: &str| {
        http::Request::get(path)
            .body(Vec::new())
            .map_err(anyhow::Error::from)
    };

    // 1. The cluster CA, pinned against the token's hash.
    let served = client(&url, None, None)?
        .request_text(get(apiserver::join::CACERTS_PATH)?)
        .await
        .map_err(|e| match status_of(&e) {
            Some(code) => anyhow::anyhow!(
                "{server}{} answered {code}: is this a flotilla server?",
                apiserver::join::CACERTS_PATH
            ),
            None => anyhow::anyhow!("cannot reach the server at {server}: {}", chain(&e)),
        })?;
    let ca_pem: Vec<u8> = match (&token.ca_hash, ca_file) {
        (Some(want), _) => {
            let got = apiserver::join::ca_hash(served.as_bytes());
            if got != *want {
                bail!(
                    "the server's CA certificate does not match the token (sha256 {got}, the \
                     token says {want}): refusing to join — the token is for another cluster, \
                     or someone is intercepting the connection (possible man in the middle)"
                );
            }
            served.into_bytes()
        }
        (None, Some(f)) => {
            let pem =
                std::fs::read(f).with_context(|| format!("reading --ca-file {}", f.display()))?;
            if pem != served.as_bytes() {
                tracing::warn!(
                    "the server sent a CA other than --ca-file {}: trusting --ca-file only",
                    f.display()
                );
            }
            pem
        }
        (None, None) => {
            tracing::warn!(
                "the token is a bare secret without the CA hash: trusting the server's CA \
                 unverified (use the full K10… token from the server's <data-dir>/token, or \
                 --ca-file)"
            );
            served.into_bytes()
        }
    };

    // 2. The node's own credentials, over a verified connection.
    let path = format!(
        "{}?nodeName={}",
        apiserver::join::NODE_CREDENTIALS_PATH,
        form_urlencoded::byte_serialize(node_name.as_bytes()).collect::<String>()
    );
    let text = client(&url, Some(&ca_pem), Some(&token.secret))?
        .request_text(get(&path)?)
        .await
        .map_err(|e| match (status_of(&e), &e) {
            (Some(401), _) => anyhow::anyhow!(
                "the server refused the join token (401 Unauthorized): check --token against \
                 the server's <data-dir>/token"
            ),
            (Some(code), kube::Error::Api(s)) => {
                anyhow::anyhow!(
                    "the server refused to issue node credentials ({code}): {}",
                    s.message
                )
            }
            _ => anyhow::anyhow!(
                "cannot get node credentials from {server}: {} (a certificate error means the \
                 server's certificate does not name this address: start it with --tls-san)",
                chain(&e)
            ),
        })?;
    let creds: NodeCredentials =
        serde_json::from_str(&text).context("the server's node credentials are not readable")?;

    // 3. The files the kubelet runs with.
    let dir = data_dir.join("agent");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("server-ca.crt");
    write_file(&ca_path, &ca_pem, 0o644)?;
    let kubeconfig = dir.join("kubelet.kubeconfig");
    write_file(
        &kubeconfig,
        kubeconfig_text(server.trim_end_matches('/'), &ca_pem, &creds).as_bytes(),
        0o600,
    )?;
    Ok(Joined {
        kubeconfig,
        ca_file: ca_path,
        user: creds.user,
    })
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

fn kubeconfig_text(server: &str, ca_pem: &[u8], creds: &NodeCredentials) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: flotilla\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: flotilla\n  context:\n    cluster: flotilla\n    user: {user}\ncurrent-context: flotilla\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem),
        user = creds.user,
        cert = b64(creds.certificate.as_bytes()),
        key = b64(creds.key.as_bytes()),
    )
}

/// Writes a file atomically with the given mode.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(dir: &Path, token: Option<&str>) -> (apiserver::Running, CancellationToken) {
        let shutdown = CancellationToken::new();
        std::fs::create_dir_all(dir).unwrap();
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, "plain-token,plain-user,u1\n").unwrap();
        let running = apiserver::start_with_store(
            apiserver::ServerConfig {
                data_dir: dir.to_path_buf(),
                secure_port: 0,
                bind_address: "127.0.0.1".into(),
                token: token.map(String::from),
                token_auth_file: Some(tokens),
                ..Default::default()
            },
            store::MemoryStore::new().expect("memory store"),
            shutdown.clone(),
        )
        .await
        .expect("start API server");
        (running, shutdown)
    }

    #[tokio::test]
    async fn joins_with_the_token_as_its_own_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (running, shutdown) = server(&dir.path().join("server"), None).await;
        let url = format!("https://127.0.0.1:{}", running.addr.port());
        let token = std::fs::read_to_string(&running.token_file).unwrap();
        assert!(token.starts_with("K10"), "{token}");
        let agent = dir.path().join("agent");
        let joined = join(&url, &token, None, &agent, "worker-1").await.unwrap();
        assert_eq!(joined.user, "system:node:worker-1");
        assert_eq!(
            std::fs::read(&joined.ca_file).unwrap(),
            std::fs::read(dir.path().join("server/pki/ca.crt")).unwrap()
        );
        // The kubeconfig works, as the node's own user.
        let client = crate::kube_client(&joined.kubeconfig).await.unwrap();
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        nodes.list(&Default::default()).await.unwrap();
        // Its certificate names the node: user system:node:worker-1, group system:nodes.
        let cfg = kube::config::Kubeconfig::read_from(&joined.kubeconfig).unwrap();
        let cert = cfg.auth_infos[0]
            .auth_info
            .as_ref()
            .unwrap()
            .client_certificate_data
            .clone()
            .unwrap();
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cert)
            .unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let user = apiserver::auth::user_from_cert(&der).unwrap();
        assert_eq!(user.name, "system:node:worker-1");
        assert!(user.groups.contains(&"system:nodes".to_string()));
        // The bare secret joins too (no CA pinning).
        let secret = JoinToken::parse(&token).unwrap().secret;
        join(&url, &secret, None, &dir.path().join("agent2"), "worker-2")
            .await
            .unwrap();
        shutdown.cancel();
    }

    #[tokio::test]
    async fn refuses_a_wrong_token_a_foreign_ca_and_an_unreachable_server() {
        let dir = tempfile::tempdir().unwrap();
        let (running, shutdown) = server(&dir.path().join("server"), Some("chosen-secret")).await;
        let url = format!("https://127.0.0.1:{}", running.addr.port());
        let token = std::fs::read_to_string(&running.token_file).unwrap();
        assert!(token.trim().ends_with("::server:chosen-secret"), "{token}");
        let agent = dir.path().join("agent");

        let e = join(&url, "wrong-secret", None, &agent, "w")
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("refused the join token (401"),
            "{e:#}"
        );

        let ca = std::fs::read(dir.path().join("server/pki/ca.crt")).unwrap();
        let mut other = ca.clone();
        other.push(b'\n');
        let foreign = JoinToken::full(&other, "chosen-secret");
        let e = join(&url, &foreign, None, &agent, "w").await.unwrap_err();
        assert!(
            format!("{e:#}").contains("possible man in the middle"),
            "{e:#}"
        );

        let e = join(&url, &token, None, &agent, "Not_A_Name")
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("not a valid node name"), "{e:#}");
        // Another authenticated user (not the join identity) gets no node credentials.
        let e = join(
            &url,
            "plain-token",
            Some(&dir.path().join("server/pki/ca.crt")),
            &agent,
            "w",
        )
        .await
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("refused to issue node credentials (403)"),
            "{e:#}"
        );
        assert!(!agent.join("agent/kubelet.kubeconfig").exists());

        shutdown.cancel();
        let _ = running.task.await;
        let e = join(&url, &token, None, &agent, "w").await.unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot reach the server"),
            "{e:#}"
        );
    }
}
