//! The Nacos Open API v1 routes served so far: naming (`/nacos/v1/ns/...`) and the
//! console health probes.

pub mod instance;
pub mod operator;
pub mod service;

use axum::Router;
use axum::routing::{get, put};

use super::AppState;

/// Routes of the naming API v1, relative to the server root.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/nacos/v1/ns/instance",
            get(instance::get_instance)
                .post(instance::register_instance)
                .delete(instance::deregister_instance)
                .put(instance::update_instance)
                .patch(instance::patch_instance),
        )
        .route("/nacos/v1/ns/instance/list", get(instance::list_instances))
        .route("/nacos/v1/ns/instance/beat", put(instance::beat_instance))
        .route(
            "/nacos/v1/ns/service",
            get(service::get_service)
                .post(service::create_service)
                .delete(service::remove_service)
                .put(service::update_service),
        )
        .route("/nacos/v1/ns/service/list", get(service::list_services))
        .route("/nacos/v1/ns/operator/metrics", get(operator::metrics))
        .route("/nacos/v1/ns/ops/metrics", get(operator::metrics))
        .route("/nacos/v1/console/health/liveness", get(operator::health))
        .route("/nacos/v1/console/health/readiness", get(operator::health))
}
