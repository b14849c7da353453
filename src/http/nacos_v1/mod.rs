//! The Nacos Open API v1 routes: naming (`/nacos/v1/ns/...`), config
//! (`/nacos/v1/cs/...`), namespaces and the console health probes.

pub mod config;
pub mod health;
pub mod history;
pub mod instance;
pub mod namespace;
pub mod operator;
pub mod service;

use axum::Router;
use axum::routing::{get, put};

use super::AppState;

/// Routes of the Nacos API v1, relative to the server root.
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
        .route(
            "/nacos/v1/ns/service/subscribers",
            get(service::list_subscribers),
        )
        .route("/nacos/v1/ns/cluster", put(health::update_cluster))
        .route("/nacos/v1/ns/health", put(health::update_health))
        .route("/nacos/v1/ns/health/instance", put(health::update_health))
        .route("/nacos/v1/ns/health/checkers", get(health::checkers))
        .route("/nacos/v1/ns/operator/metrics", get(operator::metrics))
        .route("/nacos/v1/ns/ops/metrics", get(operator::metrics))
        .route(
            "/nacos/v1/cs/configs",
            get(config::get_configs)
                .post(config::post_configs)
                .delete(config::delete_configs),
        )
        .route(
            "/nacos/v1/cs/configs/listener",
            get(config::listeners_of_config).post(config::listener),
        )
        .route("/nacos/v1/cs/configs/catalog", get(config::catalog))
        .route("/nacos/v1/cs/listener", get(config::listeners_of_ip))
        .route("/nacos/v1/cs/history", get(history::history))
        .route("/nacos/v1/cs/history/previous", get(history::previous))
        .route(
            "/nacos/v1/cs/history/configs",
            get(history::configs_of_namespace),
        )
        .route(
            "/nacos/v1/console/namespaces",
            get(namespace::get_namespaces)
                .post(namespace::create_namespace)
                .put(namespace::update_namespace)
                .delete(namespace::delete_namespace),
        )
        .route("/nacos/v1/console/health/liveness", get(operator::health))
        .route("/nacos/v1/console/health/readiness", get(operator::health))
}
