//! Registry authentication: a fake registry (axum, loopback) that demands HTTP Basic or a
//! bearer token obtained from its token endpoint with basic credentials (the
//! `WWW-Authenticate: Bearer realm=…` flow of Docker Hub and most registries). Debian's
//! docker-registry would need bcrypt htpasswd files and a JWT-signing token server for
//! the same, so the fake serves the fixture's OCI layout itself.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use images::testutil::{self, TestDir};
use images::{Credentials, ImageStore, PullOptions};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Open,
    Basic,
    Bearer,
}

struct Fake {
    mode: Mode,
    addr: String,
    layout: PathBuf,
    manifest: String,
    token_requests: AtomicUsize,
    /// Blob requests still to fail with 503.
    flaky: AtomicUsize,
}

const USER: &str = "alice";
const PASS: &str = "s3cret";
const TOKEN: &str = "token-for-alice";

fn basic_ok(h: &HeaderMap) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))
    );
    h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn authorized(f: &Fake, h: &HeaderMap) -> bool {
    match f.mode {
        Mode::Open => true,
        Mode::Basic => basic_ok(h),
        Mode::Bearer => {
            h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {TOKEN}").as_str())
        }
    }
}

fn challenge(f: &Fake) -> Response {
    let value = match f.mode {
        Mode::Open => String::new(),
        Mode::Basic => "Basic realm=\"fake\"".to_string(),
        Mode::Bearer => format!(
            "Bearer realm=\"http://{}/token\",service=\"fake-registry\"",
            f.addr
        ),
    };
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, value)],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

async fn token(State(f): State<Arc<Fake>>, h: HeaderMap) -> Response {
    f.token_requests.fetch_add(1, Ordering::SeqCst);
    if basic_ok(&h) {
        format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "bad credentials").into_response()
    }
}

async fn v2_root(State(f): State<Arc<Fake>>, h: HeaderMap) -> Response {
    if authorized(&f, &h) {
        "{}".into_response()
    } else {
        challenge(&f)
    }
}

async fn v2(State(f): State<Arc<Fake>>, Path(rest): Path<String>, h: HeaderMap) -> Response {
    if !authorized(&f, &h) {
        return challenge(&f);
    }
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap_or(d);
        fs::read(f.layout.join("blobs/sha256").join(hex)).ok()
    };
    if let Some((_, r)) = rest.rsplit_once("/manifests/") {
        let d = if r.starts_with("sha256:") {
            r.to_string()
        } else {
            f.manifest.clone()
        };
        if r != "v1" && !r.starts_with("sha256:") {
            return (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
                .into_response();
        }
        return match blob(&d) {
            Some(b) => (
                [
                    (
                        header::CONTENT_TYPE,
                        images::image::MT_OCI_MANIFEST.to_string(),
                    ),
                    (header::HeaderName::from_static("docker-content-digest"), d),
                ],
                b,
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    if let Some((_, d)) = rest.rsplit_once("/blobs/") {
        if f.flaky
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
        return match blob(d) {
            Some(b) => b.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    StatusCode::NOT_FOUND.into_response()
}

async fn start(mode: Mode, work: &TestDir) -> (Arc<Fake>, tokio::task::JoinHandle<()>) {
    // One plain layer: no device nodes or whiteouts, so this test needs no root.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_data(&mut h, "hello.txt", &b"hello\n"[..]).unwrap();
    let layout = testutil::build_layout(
        &work.path().join("layout"),
        "v1",
        vec![b.into_inner().unwrap()],
        "auth",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = Arc::new(Fake {
        mode,
        addr,
        layout: layout.dir.clone(),
        manifest: layout.manifest.to_string(),
        token_requests: AtomicUsize::new(0),
        flaky: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .route("/v2/", axum::routing::get(v2_root))
        .route("/v2/{*rest}", axum::routing::get(v2))
        .with_state(fake.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, server)
}

fn opts(fake: &Fake, creds: Option<Credentials>) -> PullOptions {
    let mut credentials = HashMap::new();
    if let Some(c) = creds {
        credentials.insert(fake.addr.clone(), c);
    }
    PullOptions {
        insecure_registries: vec![fake.addr.clone()],
        credentials,
        ..Default::default()
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("timed out")
}

fn alice(password: &str) -> Credentials {
    Credentials::Basic {
        username: USER.into(),
        password: password.into(),
    }
}

#[tokio::test]
async fn bearer_token_challenge_with_basic_credentials() {
    let work = TestDir::new("auth-bearer");
    let (fake, server) = start(Mode::Bearer, &work).await;
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let name = format!("{}/private/app:v1", fake.addr);

    let err = timed(store.pull(&name, &opts(&fake, None)))
        .await
        .unwrap_err();
    eprintln!("anonymous: {err}");
    assert!(err.to_string().contains("not authorized to pull"), "{err}");
    let err = timed(store.pull(&name, &opts(&fake, Some(alice("wrong")))))
        .await
        .unwrap_err();
    eprintln!("wrong password: {err}");
    assert!(err.to_string().contains("not authorized to pull"), "{err}");
    assert!(store.list().unwrap().is_empty());

    let info = timed(store.pull(&name, &opts(&fake, Some(alice(PASS)))))
        .await
        .unwrap();
    assert_eq!(info.name, name);
    assert!(fake.token_requests.load(Ordering::SeqCst) >= 2);
    let (lower, _) = store.rootfs_layers(&name).await.unwrap();
    assert_eq!(fs::read(lower[0].join("hello.txt")).unwrap(), b"hello\n");

    // A ready bearer token works without a token request.
    let before = fake.token_requests.load(Ordering::SeqCst);
    let other = ImageStore::open(&work.path().join("store2")).unwrap();
    timed(other.pull(&name, &opts(&fake, Some(Credentials::Bearer(TOKEN.into())))))
        .await
        .unwrap();
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), before);
    server.abort();
}

#[tokio::test]
async fn basic_auth_challenge() {
    let work = TestDir::new("auth-basic");
    let (fake, server) = start(Mode::Basic, &work).await;
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let name = format!("{}/private/app:v1", fake.addr);
    let err = timed(store.pull(&name, &opts(&fake, None)))
        .await
        .unwrap_err();
    eprintln!("anonymous: {err}");
    assert!(err.to_string().contains("not authorized to pull"), "{err}");
    let err = timed(store.pull(&name, &opts(&fake, Some(alice("wrong")))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not authorized to pull"), "{err}");
    timed(store.pull(&name, &opts(&fake, Some(alice(PASS)))))
        .await
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 0);
    server.abort();
}

#[tokio::test]
async fn transient_blob_errors_are_retried() {
    let work = TestDir::new("flaky");
    let (fake, server) = start(Mode::Open, &work).await;
    let name = format!("{}/flaky/app:v1", fake.addr);
    // Two 503s (config then layer, or one blob twice): within the retry budget.
    fake.flaky.store(2, Ordering::SeqCst);
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    timed(store.pull(&name, &opts(&fake, None))).await.unwrap();
    assert_eq!(fake.flaky.load(Ordering::SeqCst), 0);
    // A registry that keeps failing: a clear error naming the blob, nothing left.
    fake.flaky.store(100, Ordering::SeqCst);
    let other = ImageStore::open(&work.path().join("other")).unwrap();
    let err = timed(other.pull(&name, &opts(&fake, None)))
        .await
        .unwrap_err();
    eprintln!("always 503: {err}");
    assert!(err.to_string().contains("pulling blob sha256:"), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(testutil::count_files(&work.path().join("other/blobs")), 0);
    assert_eq!(testutil::count_files(&work.path().join("other/tmp")), 0);
    server.abort();
}
