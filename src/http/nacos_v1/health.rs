//! Health-check settings and manual health (`shared/nacos-api.md` §2.11–2.12):
//! `PUT /nacos/v1/ns/cluster` sets a cluster's checker, `PUT /nacos/v1/ns/health/instance`
//! sets the health of an instance whose cluster has the `NONE` checker, and
//! `GET /nacos/v1/ns/health/checkers` lists the checker types.

use axum::Json;
use axum::extract::State;

use super::super::AppState;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::params::Params;
use super::instance::instance_key;
use crate::model::{ClusterMeta, DEFAULT_CLUSTER, HealthChecker, parse_metadata, validate_cluster};
use crate::naming::command::NamingCommand;

/// `PUT /nacos/v1/ns/cluster`: replaces the health-check settings of one cluster of an
/// existing service (as Nacos `ClusterController#update`). Parameters `clusterName`,
/// `checkPort`, `useInstancePort4Check` and `healthChecker` (Nacos's checker JSON) are
/// required, `metadata` optional; 400 naming the field when one is missing or bad, 400
/// when the service does not exist. Answers `ok`.
///
/// A `MYSQL` checker logs in to a database and runs a statement there, so only an
/// admin may set one (403 otherwise); its `cmd` must be one read-only statement (see
/// [`crate::model::health::read_only_statement`]). A `pwd` of `******` (what reads
/// show) keeps the password the cluster has.
pub async fn update_cluster(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let cluster = p.required("clusterName")?;
    validate_cluster(cluster).map_err(ApiError::bad_request)?;
    let check_port = p.port("checkPort")?;
    let use_instance_port = p.strict_boolean("useInstancePort4Check")?;
    let raw = p.required("healthChecker")?;
    // The right first: a namespace user learns nothing of what a MYSQL checker may run.
    if HealthChecker::declares_mysql(raw) && !caller.is_admin() {
        return Err(ApiError::forbidden(
            "only an admin may set a MYSQL health checker (param 'healthChecker')",
        ));
    }
    let mut health_checker = HealthChecker::parse(raw).map_err(ApiError::bad_request)?;
    // A MYSQL password sent back as its mask keeps the cluster's password.
    if let Some(current) = state.naming.service(&key) {
        health_checker = health_checker.unmasked(&current.meta.cluster(cluster).health_checker);
    }
    let metadata =
        parse_metadata(p.optional("metadata").unwrap_or("")).map_err(ApiError::bad_request)?;
    let command = NamingCommand::UpdateCluster {
        service: key,
        cluster: cluster.to_string(),
        meta: ClusterMeta {
            health_checker,
            check_port,
            use_instance_port,
            metadata,
        },
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `PUT /nacos/v1/ns/health/instance` (and `/nacos/v1/ns/health`): sets the health of
/// a persistent instance by hand (`healthy`, or the legacy `valid`, required). Allowed
/// only when its cluster's checker is `NONE`, else 400 `health check is still working,
/// …`; a missing instance is no error (as Nacos 2.x). Answers `ok`.
pub async fn update_health(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let ikey = instance_key(&p)?;
    let cluster = p
        .optional("clusterName")
        .or_else(|| p.optional("cluster"))
        .unwrap_or(DEFAULT_CLUSTER);
    let name = if p.optional("healthy").is_none() && p.optional("valid").is_some() {
        "valid"
    } else {
        "healthy"
    };
    let healthy = p.strict_boolean(name)?;
    let command = NamingCommand::SetManualHealth {
        service: key,
        client: ikey,
        cluster: cluster.to_string(),
        healthy,
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `GET /nacos/v1/ns/health/checkers`: every checker type with its default settings.
pub async fn checkers() -> Json<serde_json::Value> {
    let defaults = [
        HealthChecker::Tcp,
        HealthChecker::Http {
            path: String::new(),
            headers: String::new(),
            expected_response_code: 200,
        },
        HealthChecker::Mysql {
            user: String::new(),
            pwd: String::new(),
            cmd: String::new(),
        },
        HealthChecker::None,
    ];
    Json(serde_json::Value::Object(
        defaults
            .iter()
            .map(|c| (c.type_name().to_string(), c.to_json()))
            .collect(),
    ))
}
