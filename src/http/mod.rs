//! The HTTP front door (axum): the router, shared state, limits and Nacos-shaped errors.
//! Handlers parse and validate input, call the naming use cases, and render Nacos's
//! JSON; they never reach the registry's internals or any storage directly.

pub mod error;
pub mod list_cache;
pub mod nacos_v1;
pub mod params;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::config::ConfigService;
use crate::naming::NamingService;
use crate::settings::{ConfigSettings, Settings};

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The naming use cases.
    pub naming: Arc<NamingService>,
    /// `cacheMillis` of list answers, milliseconds.
    pub cache_millis: u64,
    /// Encoded `hosts` of list answers.
    pub list_cache: Arc<list_cache::ListCache>,
    /// The config use cases.
    pub config: Arc<ConfigService>,
    /// The config center's limits.
    pub config_settings: Arc<ConfigSettings>,
}

/// The whole router, testable without a socket.
pub fn router(state: AppState, settings: &Settings) -> Router {
    nacos_v1::routes()
        .layer(DefaultBodyLimit::max(settings.http.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `cancel` fires, then finishes in-flight
/// requests. Handlers see the peer address (`ConnectInfo<SocketAddr>`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await
}
