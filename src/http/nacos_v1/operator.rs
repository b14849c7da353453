//! `/nacos/v1/ns/operator/metrics` (alias `/ops/metrics`) and the console health
//! probes. Nacos clients (Java 1.x, npm) call `metrics` and test `status == "UP"`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::super::AppState;
use super::super::params::Params;

/// The answer of `metrics`; with `onlyStatus=true` (the default, as Nacos 2.x) only
/// `status` is present.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsJson {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responsible_instance_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscribe_count: Option<usize>,
    /// Nacre's own: milliseconds the last round of probes took.
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check_round_millis: Option<u64>,
    /// Nacre's own: persistent instances probed in the last round.
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check_round_targets: Option<u64>,
}

/// `GET /nacos/v1/ns/operator/metrics`.
pub async fn metrics(State(state): State<AppState>, p: Params) -> Json<MetricsJson> {
    let registry = state.naming.view();
    if p.boolean("onlyStatus", true) {
        return Json(MetricsJson {
            status: "UP",
            service_count: None,
            instance_count: None,
            responsible_instance_count: None,
            subscribe_count: None,
            health_check_round_millis: None,
            health_check_round_targets: None,
        });
    }
    let instances = registry.instance_count();
    Json(MetricsJson {
        status: "UP",
        service_count: Some(registry.service_count()),
        instance_count: Some(instances),
        responsible_instance_count: Some(instances),
        subscribe_count: Some(
            state
                .push
                .as_ref()
                .map(|p| p.subscriber_count())
                .unwrap_or(0),
        ),
        health_check_round_millis: Some(state.probe_stats.last_round_ms()),
        health_check_round_targets: Some(state.probe_stats.last_round_targets()),
    })
}

/// `GET /nacos/v1/console/health/liveness`: `OK` once serving.
pub async fn health() -> &'static str {
    "OK"
}

/// `GET /nacos/v1/console/health/readiness`: `OK` once the naming table is loaded;
/// 503 before (a cluster member that has not loaded a peer's Distro snapshot), with
/// Nacos's wording.
pub async fn readiness(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if state.naming.registry().is_ready() {
        "OK".into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "server is DOWN now, detailed error message: still loading (the Distro snapshot \
             of a peer, or catching up with the Raft leader)",
        )
            .into_response()
    }
}
