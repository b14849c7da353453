//! The HTTP front door (axum): the router, access control ([`auth`]), shared state,
//! limits and Nacos-shaped errors.
//! Handlers parse and validate input, call the naming use cases, and render Nacos's
//! JSON; they never reach the registry's internals or any storage directly.

pub mod auth;
pub mod conn;
pub mod error;
pub mod internal;
pub mod nacos_v1;
pub mod params;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigService;
use crate::naming::NamingService;
use crate::settings::{ConfigSettings, Settings};

/// State shared by every handler: one `Arc`, so the per-request clone axum makes is
/// one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateInner {
    /// The naming use cases (reads).
    pub naming: Arc<NamingService>,
    /// The naming write door: every naming write of a handler goes through it.
    pub dispatcher: Arc<crate::naming::dispatch::NamingDispatcher>,
    /// `cacheMillis` of list answers, milliseconds.
    pub cache_millis: u64,
    /// Encoded `hosts` of list answers.
    pub list_cache: Arc<crate::naming::service_info::ListCache>,
    /// UDP push to subscribers (`None` when `push.enabled` is off).
    pub push: Option<Arc<crate::push::PushService>>,
    /// Figures of the probe rounds.
    pub probe_stats: Arc<crate::health::probe::ProbeStats>,
    /// The config use cases.
    pub config: Arc<ConfigService>,
    /// Users, tokens and permissions.
    pub auth: Arc<crate::auth::AuthService>,
    /// The config center's limits.
    pub config_settings: Arc<ConfigSettings>,
    /// This node's address: its member address in a cluster, else the bound HTTP
    /// address.
    pub node_addr: String,
    /// Distro and the membership of a cluster member; `None` standalone.
    pub distro: Option<Arc<crate::naming::distro::Distro>>,
    /// The Raft group of CP naming data.
    pub raft: Option<Arc<crate::replication::raft::RaftNode>>,
}

/// The whole router, under the body limit, and the auth gate built from its route
/// table, which [`serve`] puts in front of it for every request.
pub fn router(state: AppState, settings: &Settings) -> (Router, Arc<auth::Gate>) {
    let (router, table) = nacos_v1::routes().finish();
    let gate = Arc::new(auth::Gate::new(
        state.auth.clone(),
        settings.auth.enabled,
        &table,
        settings.http.max_body_bytes,
        settings.cluster.secret.clone(),
    ));
    let router = router
        .layer(DefaultBodyLimit::max(settings.http.max_body_bytes))
        .with_state(state);
    (router, gate)
}

/// Serves `router` on `listener` (HTTP/1.1, keep-alive) until `cancel` fires, then
/// lets in-flight requests finish for up to 10 s. Every request passes `gate` first.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`. Connections follow
/// the `[http]` limits (see [`conn`]): header, idle and body timeouts, TCP
/// keepalive, at most `http.max_connections_per_ip` from one address and at most
/// `http.max_connections` in all.
///
/// Our own accept loop rather than `axum::serve`: each connection is a plain hyper
/// HTTP/1 connection future stored in its task, without the boxed HTTP/1+HTTP/2
/// connection axum allocates. That halves the memory of a held long-polling request
/// (measured with 5,000 held listeners; see `benches/`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    gate: Arc<auth::Gate>,
    settings: &crate::settings::HttpSettings,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::TokioIo;
    use std::net::SocketAddr;
    use tower::ServiceExt;

    let limits = conn::ConnLimits::from_settings(settings);
    let per_ip = crate::net::PerIpLimit::new(settings.max_connections_per_ip);
    let table = conn::ConnTable::new(settings.effective_max_connections());
    let keepalive = (settings.tcp_keepalive_secs > 0)
        .then(|| std::time::Duration::from_secs(settings.tcp_keepalive_secs));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = per_ip.admit(peer.ip()) else {
            tracing::debug!(%peer, "too many HTTP connections from this address; closed");
            continue;
        };
        let state = Arc::new(conn::ConnState::default());
        let Some(counted) = table.admit(&state) else {
            tracing::debug!(%peer, "every HTTP connection is busy; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        crate::net::set_keepalive(&stream, keepalive);
        let router = router.clone();
        let gate = gate.clone();
        let requests = state.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_flight = requests.begin_request();
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let (router, gate) = (router.clone(), gate.clone());
                async move {
                    let _in_flight = in_flight;
                    let req = if hyper::body::Body::is_end_stream(req.body()) {
                        req.map(axum::body::Body::new)
                    } else {
                        req.map(|b| {
                            axum::body::Body::new(conn::TimedBody::new(b, limits.body_read))
                        })
                    };
                    match gate.check(req).await {
                        Ok(req) => router.oneshot(req).await,
                        Err(refused) => Ok(refused),
                    }
                }
            });
        let io = TokioIo::new(conn::TimedIo::new(stream, state, limits));
        let connection = builder.serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
            drop((admitted, counted));
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still running after 10 s; stopping anyway");
    }
    Ok(())
}
