//! In-process clients of the API server.
//!
//! The controller manager, the scheduler and the kubelet that `flotilla server` runs in
//! its own process reach the API through [`Loopback`], a `tower` service that hands each
//! request straight to [`dispatch`]: authentication (the identity given here),
//! authorization, routing and the handlers are the very ones a network client goes
//! through, and a `kube::Client` built on it (`kube::Client::new(Loopback::…, "default")`)
//! behaves as over HTTPS. What it skips is the transport: no loopback TCP connection per
//! watch (the `kube` client speaks HTTP/1.1 only, so every informer held its own
//! connection), no TLS record encryption of every event in both directions, no HTTP
//! framing. Upstream's kube-apiserver has a loopback client for the same purpose; ours is
//! an in-memory one. Separate processes (`flotilla controller-manager`, `scheduler`,
//! `kubelet`, `agent`) still use HTTPS.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::BoxError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Request;

use crate::auth::UserInfo;
use crate::server::{ApiServer, ConnInfo, dispatch};

/// A `tower` service answering requests with the in-process API server. Cheap to clone.
#[derive(Clone)]
pub struct Loopback {
    server: Arc<ApiServer>,
    conn: ConnInfo,
}

impl Loopback {
    /// Requests made as `user`.
    pub fn new(server: Arc<ApiServer>, user: UserInfo) -> Loopback {
        Loopback {
            server,
            conn: ConnInfo {
                user: Some(user),
                remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            },
        }
    }

    /// Requests made by a built-in component as `name` (for example
    /// `system:kube-scheduler`), with the privileges the admin certificate has (group
    /// `system:masters`), like the certificate-authenticated clients these replace.
    pub fn component(server: Arc<ApiServer>, name: &str) -> Loopback {
        Loopback::new(
            server,
            UserInfo {
                name: name.to_string(),
                uid: String::new(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
        )
    }
}

impl<B> tower::Service<Request<B>> for Loopback
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.conn.clone());
        let server = self.server.clone();
        Box::pin(async move { Ok(dispatch(server, req.map(Body::new)).await) })
    }
}
