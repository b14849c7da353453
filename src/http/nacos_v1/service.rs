//! `/nacos/v1/ns/service*`: create, remove, update, detail and list of services
//! (`shared/nacos-api.md` §2.10).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::super::AppState;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::params::Params;
use crate::model::{DEFAULT_GROUP, parse_metadata, validate_group};
use crate::naming::command::NamingCommand;
use crate::naming::{NamingError, ServiceSpec};

fn threshold(raw: Option<&str>) -> Result<f32, ApiError> {
    let Some(raw) = raw else { return Ok(0.0) };
    let t: f32 = raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Param 'protectThreshold' is illegal, it must be a number: {raw:?}"
        ))
    })?;
    if !(0.0..=1.0).contains(&t) {
        return Err(ApiError::bad_request(format!(
            "Param 'protectThreshold' is illegal, it must be between 0 and 1: {raw}"
        )));
    }
    Ok(t)
}

fn spec(p: &Params, threshold_value: f32) -> Result<ServiceSpec, ApiError> {
    let metadata =
        parse_metadata(p.optional("metadata").unwrap_or("")).map_err(ApiError::bad_request)?;
    let selector = p
        .optional("selector")
        .map(|raw| {
            serde_json::from_str::<serde_json::Value>(raw).map_err(|e| {
                ApiError::bad_request(format!("Param 'selector' is not valid JSON: {e}"))
            })
        })
        .transpose()?;
    Ok(ServiceSpec {
        protect_threshold: threshold_value,
        metadata,
        selector,
        // Nacos 2.x's v1 `ServiceController#create` makes persistent services; its v2
        // API reads `ephemeral` (default false), and so does Nacre on both.
        ephemeral: p.boolean("ephemeral", false),
    })
}

/// `POST /nacos/v1/ns/service`: creates a service, persistent unless `ephemeral=true`
/// (as Nacos 2.x: ephemeral instances are then refused until the service is removed);
/// 400 when it exists.
pub async fn create_service(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let spec = spec(&p, threshold(p.optional("protectThreshold"))?)?;
    let command = NamingCommand::CreateService { service: key, spec };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `DELETE /nacos/v1/ns/service`: removes an empty service; 400 when missing or not
/// empty.
pub async fn remove_service(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let command = NamingCommand::RemoveService { service: key };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `PUT /nacos/v1/ns/service`: replaces protectThreshold (required), metadata and
/// selector; 400 when the service is missing.
pub async fn update_service(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let t = threshold(Some(p.required("protectThreshold")?))?;
    let command = NamingCommand::UpdateService {
        service: key,
        spec: spec(&p, t)?,
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// A cluster in the service detail: Nacos's fields, plus the check port settings under
/// their Nacos 1.x names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterJson {
    name: String,
    health_checker: serde_json::Value,
    metadata: BTreeMap<String, String>,
    default_check_port: u16,
    #[serde(rename = "useIPPort4Check")]
    use_ip_port_4_check: bool,
}

/// The answer of `GET /nacos/v1/ns/service`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceJson {
    namespace_id: String,
    group_name: String,
    name: String,
    protect_threshold: f32,
    metadata: BTreeMap<String, String>,
    selector: serde_json::Value,
    clusters: Vec<ClusterJson>,
}

/// `GET /nacos/v1/ns/service`: service detail; 400 `service not found, …` when missing
/// (Nacos 2.x).
pub async fn get_service(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<ServiceJson>, ApiError> {
    let key = p.service_key()?;
    let snap = state
        .naming
        .service(&key)
        .ok_or_else(|| ApiError::from(NamingError::ServiceNotFound(key.clone())))?;
    let mut clusters: Vec<String> = snap
        .instances
        .iter()
        .map(|i| i.cluster.to_string())
        .chain(snap.meta.clusters.keys().cloned())
        .collect();
    clusters.sort();
    clusters.dedup();
    Ok(Json(ServiceJson {
        namespace_id: key.namespace.clone(),
        group_name: key.group.clone(),
        name: key.service.clone(),
        protect_threshold: snap.meta.protect_threshold,
        metadata: snap.meta.metadata.clone(),
        selector: snap.meta.selector.clone(),
        clusters: clusters
            .into_iter()
            .map(|name| {
                let cluster = snap.meta.cluster(&name);
                ClusterJson {
                    health_checker: cluster.health_checker.to_json(),
                    metadata: cluster.metadata.clone(),
                    default_check_port: cluster.check_port,
                    use_ip_port_4_check: cluster.use_instance_port,
                    name,
                }
            })
            .collect(),
    }))
}

/// The answer of `GET /nacos/v1/ns/service/list`.
#[derive(Serialize)]
pub struct ServiceListJson {
    count: usize,
    doms: Vec<String>,
}

fn page_param(p: &Params, name: &str) -> Result<usize, ApiError> {
    let raw = p.required(name)?;
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "Param '{name}' is illegal, it must be a positive integer: {raw:?}"
        ))),
    }
}

/// `pageSize`, at most `max` (`config.max_page_size`, the limit of every page).
fn page_size(p: &Params, max: u32) -> Result<usize, ApiError> {
    let size = page_param(p, "pageSize")?;
    if size > max as usize {
        return Err(ApiError::bad_request(format!(
            "Param 'pageSize' is illegal, it must be at most {max}: {size}"
        )));
    }
    Ok(size)
}

/// `GET /nacos/v1/ns/service/list`: one page (1-based `pageNo`, `pageSize`, both
/// required) of the plain service names of a group, and the total count.
pub async fn list_services(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<ServiceListJson>, ApiError> {
    let page_no = page_param(&p, "pageNo")?;
    let page_size = page_size(&p, state.config_settings.max_page_size)?;
    let group = p.optional("groupName").unwrap_or(DEFAULT_GROUP);
    validate_group(group).map_err(ApiError::bad_request)?;
    let names = state.naming.service_names(&p.namespace()?, group);
    let doms = names
        .iter()
        .skip((page_no - 1).saturating_mul(page_size))
        .take(page_size)
        .cloned()
        .collect();
    Ok(Json(ServiceListJson {
        count: names.len(),
        doms,
    }))
}

/// One subscriber in `service/subscribers` (Nacos's `Subscriber` JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriberJson {
    addr_str: String,
    agent: String,
    app: String,
    ip: String,
    port: u16,
    namespace_id: String,
    service_name: String,
    cluster: String,
}

/// The answer of `GET /nacos/v1/ns/service/subscribers`.
#[derive(Serialize)]
pub struct SubscribersJson {
    subscribers: Vec<SubscriberJson>,
    count: usize,
}

/// `GET /nacos/v1/ns/service/subscribers`: one page (`pageNo` 1, `pageSize` 1000 by
/// default) of the UDP push subscribers of a service, and their count.
pub async fn list_subscribers(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<SubscribersJson>, ApiError> {
    let key = p.service_key()?;
    let page_no = match p.optional("pageNo") {
        Some(_) => page_param(&p, "pageNo")?,
        None => 1,
    };
    let page_size = match p.optional("pageSize") {
        Some(_) => page_size(&p, state.config_settings.max_page_size)?,
        None => 1000,
    };
    let all = state
        .push
        .as_ref()
        .map(|push| push.subscribers(&key))
        .unwrap_or_default();
    let grouped = key.grouped_name();
    let subscribers = all
        .iter()
        .skip((page_no - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|s| SubscriberJson {
            addr_str: s.addr.to_string(),
            agent: s.agent.clone(),
            app: s.app.clone(),
            ip: s.addr.ip().to_string(),
            port: s.addr.port(),
            namespace_id: key.namespace.clone(),
            service_name: grouped.clone(),
            cluster: s.clusters.clone(),
        })
        .collect();
    Ok(Json(SubscribersJson {
        subscribers,
        count: all.len(),
    }))
}
