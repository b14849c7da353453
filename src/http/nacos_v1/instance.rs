//! `/nacos/v1/ns/instance*`: register, deregister, update, patch, detail, list and beat,
//! with Nacos's parameters, answers and error codes (`shared/nacos-api.md` §2.1–2.7).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::super::error::ApiError;
use super::super::params::Params;
use crate::model::{
    DEFAULT_BEAT_INTERVAL_MS, DEFAULT_CLUSTER, Host, Instance, InstanceKey, MAX_WEIGHT,
    META_ID_GENERATOR, ServiceKey, parse_metadata, validate_beat_metadata, validate_cluster,
};
use crate::naming::registry::now_millis;
use crate::naming::selection::select_for_list;
use crate::naming::{BeatOutcome, InstanceSpec, NamingError};

/// Nacos's beat reply code for a recorded beat.
const CODE_OK: i32 = 10200;
/// Nacos's beat reply code for an unknown instance (the client registers again).
const CODE_RESOURCE_NOT_FOUND: i32 = 20404;

fn cluster(p: &Params) -> Result<String, ApiError> {
    let c = p
        .optional("clusterName")
        .or_else(|| p.optional("cluster"))
        .unwrap_or(DEFAULT_CLUSTER);
    validate_cluster(c).map_err(ApiError::bad_request)?;
    Ok(c.to_string())
}

fn weight(raw: Option<&str>) -> Result<f64, ApiError> {
    let Some(raw) = raw else { return Ok(1.0) };
    let w: f64 = raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Param 'weight' is illegal, it must be a number: {raw:?}"
        ))
    })?;
    check_weight(w)
}

fn check_weight(w: f64) -> Result<f64, ApiError> {
    if !(0.0..=MAX_WEIGHT).contains(&w) {
        return Err(ApiError::bad_request(
            "instance format invalid: The weights range from 0.0 to 10000.0 (param 'weight')",
        ));
    }
    Ok(w)
}

fn metadata(raw: Option<&str>) -> Result<BTreeMap<String, String>, ApiError> {
    let m = parse_metadata(raw.unwrap_or("")).map_err(ApiError::bad_request)?;
    validate_beat_metadata(&m).map_err(ApiError::bad_request)?;
    Ok(m)
}

fn host(raw: &str) -> Result<Host, ApiError> {
    Host::parse(raw).map_err(ApiError::bad_request)
}

/// Reads an instance from the register/update parameters.
fn instance_spec(p: &Params) -> Result<InstanceSpec, ApiError> {
    let ip = p.required("ip")?;
    Ok(InstanceSpec {
        host: host(ip)?,
        ip: ip.to_string(),
        port: p.port("port")?,
        cluster: cluster(p)?,
        weight: weight(p.optional("weight"))?,
        enabled: match p.optional("enabled") {
            Some(_) => p.boolean("enabled", true),
            None => p.boolean("enable", true),
        },
        healthy: p.boolean("healthy", true),
        ephemeral: p.boolean("ephemeral", true),
        metadata: metadata(p.optional("metadata"))?,
    })
}

/// `POST /nacos/v1/ns/instance`: registers an instance; answers `ok`.
pub async fn register_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let spec = instance_spec(&p)?;
    state.naming.register(&key, spec);
    Ok("ok")
}

/// `DELETE /nacos/v1/ns/instance`: deregisters; `ok` also when nothing matched.
pub async fn deregister_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let ip = p.required("ip")?;
    host(ip)?;
    let port = p.port("port")?;
    state.naming.deregister(&key, ip, port, &cluster(&p)?);
    Ok("ok")
}

/// `PUT /nacos/v1/ns/instance`: updates weight, enabled and metadata (400 when the
/// service does not exist); answers `ok`.
pub async fn update_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let spec = instance_spec(&p)?;
    state.naming.update(&key, spec)?;
    Ok("ok")
}

/// `PATCH /nacos/v1/ns/instance`: changes only the given fields (metadata, weight,
/// enabled) of an existing instance; 404 when it does not exist.
pub async fn patch_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let ikey = instance_key(&p)?;
    let current = find(&state, &key, &ikey)?;
    let spec = InstanceSpec {
        ip: current.ip.clone(),
        host: current.host.clone(),
        port: current.port,
        cluster: current.cluster.clone(),
        weight: match p.optional("weight") {
            Some(raw) => weight(Some(raw))?,
            None => current.weight,
        },
        enabled: p.boolean("enabled", current.enabled),
        healthy: current.healthy,
        ephemeral: current.ephemeral,
        metadata: match p.optional("metadata") {
            Some(raw) => metadata(Some(raw))?,
            None => current.metadata.clone(),
        },
    };
    state.naming.update(&key, spec)?;
    Ok("ok")
}

fn instance_key(p: &Params) -> Result<InstanceKey, ApiError> {
    let ip = p.required("ip")?;
    host(ip)?;
    Ok(InstanceKey {
        ip: ip.to_string(),
        port: p.port("port")?,
        cluster: cluster(p)?,
    })
}

fn find(state: &AppState, key: &ServiceKey, ikey: &InstanceKey) -> Result<Arc<Instance>, ApiError> {
    state.naming.instance(key, ikey).ok_or_else(|| {
        NamingError::InstanceNotFound {
            key: key.clone(),
            ip: ikey.ip.clone(),
            port: ikey.port,
            cluster: ikey.cluster.clone(),
        }
        .into()
    })
}

/// The detail answer of `GET /nacos/v1/ns/instance`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    service: String,
    ip: String,
    port: u16,
    cluster_name: String,
    weight: f64,
    healthy: bool,
    instance_id: String,
    metadata: BTreeMap<String, String>,
}

/// `GET /nacos/v1/ns/instance`: one instance; 404 `no matched ip found!…` when absent.
pub async fn get_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<InstanceDetail>, ApiError> {
    let key = p.service_key()?;
    let ikey = instance_key(&p)?;
    let inst = find(&state, &key, &ikey)?;
    Ok(Json(InstanceDetail {
        service: p.required("serviceName")?.to_string(),
        ip: inst.ip.clone(),
        port: inst.port,
        cluster_name: inst.cluster.clone(),
        weight: inst.weight,
        healthy: inst.healthy,
        instance_id: inst.instance_id.clone(),
        metadata: inst.metadata.clone(),
    }))
}

/// One host of a list answer (Nacos 2.x `Instance` JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostJson<'a> {
    instance_id: &'a str,
    ip: &'a str,
    port: u16,
    weight: f64,
    healthy: bool,
    enabled: bool,
    ephemeral: bool,
    cluster_name: &'a str,
    service_name: &'a str,
    metadata: &'a BTreeMap<String, String>,
    instance_heart_beat_interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id_generator: Option<&'a str>,
    instance_heart_beat_time_out: u64,
    ip_delete_timeout: u64,
}

/// The answer of `GET /nacos/v1/ns/instance/list` (Nacos 2.x `ServiceInfo`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJson<'a> {
    name: &'a str,
    group_name: &'a str,
    clusters: &'a str,
    cache_millis: u64,
    hosts: Vec<HostJson<'a>>,
    last_ref_time: u64,
    checksum: &'a str,
    #[serde(rename = "allIPs")]
    all_ips: bool,
    reach_protection_threshold: bool,
    valid: bool,
}

/// `GET /nacos/v1/ns/instance/list`: the instances of a service (`healthyOnly`,
/// `clusters`); an unknown service answers an empty `hosts`, never 404.
pub async fn list_instances(
    State(state): State<AppState>,
    p: Params,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let key = p.service_key()?;
    let clusters_param = p.optional("clusters").unwrap_or("");
    let clusters: Vec<&str> = clusters_param
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let healthy_only = p.boolean("healthyOnly", false);
    let grouped = key.grouped_name();
    let snapshot = state.naming.service(&key);
    let selection = snapshot
        .as_ref()
        .map(|s| select_for_list(s, &clusters, healthy_only));
    let hosts = selection
        .as_ref()
        .map(|sel| {
            sel.hosts
                .iter()
                .map(|(inst, healthy)| HostJson {
                    instance_id: &inst.instance_id,
                    ip: &inst.ip,
                    port: inst.port,
                    weight: inst.weight,
                    healthy: *healthy,
                    enabled: inst.enabled,
                    ephemeral: inst.ephemeral,
                    cluster_name: &inst.cluster,
                    service_name: &grouped,
                    metadata: &inst.metadata,
                    instance_heart_beat_interval: inst.beat_interval_ms(),
                    instance_id_generator: if inst.metadata.is_empty() {
                        Some("simple")
                    } else {
                        inst.metadata.get(META_ID_GENERATOR).map(String::as_str)
                    },
                    instance_heart_beat_time_out: inst.beat_timeout_ms(),
                    ip_delete_timeout: inst.delete_timeout_ms(),
                })
                .collect()
        })
        .unwrap_or_default();
    let body = ListJson {
        name: &grouped,
        group_name: &key.group,
        clusters: clusters_param,
        cache_millis: state.cache_millis,
        hosts,
        last_ref_time: now_millis(),
        checksum: snapshot.as_ref().map(|s| s.checksum.as_str()).unwrap_or(""),
        all_ips: false,
        reach_protection_threshold: selection.as_ref().is_some_and(|s| s.protected),
        valid: true,
    };
    Ok(Json(body).into_response())
}

/// The beat JSON a client sends (Nacos `RsInfo` / `BeatInfo`); unknown fields ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BeatJson {
    ip: Option<String>,
    port: Option<i64>,
    cluster: Option<String>,
    weight: Option<f64>,
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    ephemeral: Option<bool>,
}

/// The beat reply (`clientBeatInterval` in milliseconds).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BeatReply {
    client_beat_interval: u64,
    code: i32,
    light_beat_enabled: bool,
}

/// `PUT /nacos/v1/ns/instance/beat`: records a client beat (as Nacos
/// `InstanceController#beat`). Code 10200 when recorded; 20404 when the instance is
/// unknown and no `beat` JSON came (the client then registers again); with a `beat`
/// JSON an unknown instance is registered from it.
pub async fn beat_instance(
    State(state): State<AppState>,
    p: Params,
) -> Result<Json<BeatReply>, ApiError> {
    let key = p.service_key()?;
    let beat: Option<BeatJson> = p
        .optional("beat")
        .map(|raw| {
            serde_json::from_str::<BeatJson>(raw).map_err(|e| {
                ApiError::bad_request(format!("Param 'beat' is not valid beat JSON: {e}"))
            })
        })
        .transpose()?;
    let mut cluster = cluster(&p)?;
    let (ikey, full) = match beat {
        Some(beat) => {
            if let Some(c) = beat
                .cluster
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                validate_cluster(c)
                    .map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
                cluster = c.to_string();
            }
            let ip = match beat.ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(ip) => ip.to_string(),
                None => p.required("ip")?.to_string(),
            };
            let host = Host::parse(&ip)
                .map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
            let port = match beat.port {
                Some(port) => u16::try_from(port).map_err(|_| {
                    ApiError::bad_request(format!("Param 'beat' has an illegal port: {port}"))
                })?,
                None => p.port("port")?,
            };
            let metadata: BTreeMap<String, String> = beat
                .metadata
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    serde_json::Value::Null => None,
                    other => Some((k, other.to_string())),
                })
                .collect();
            validate_beat_metadata(&metadata)
                .map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
            let spec = InstanceSpec {
                ip: ip.clone(),
                host,
                port,
                cluster: cluster.clone(),
                weight: check_weight(beat.weight.unwrap_or(1.0))?,
                enabled: true,
                healthy: true,
                ephemeral: beat.ephemeral.unwrap_or(true),
                metadata,
            };
            (InstanceKey { ip, port, cluster }, Some(spec))
        }
        None => (instance_key(&p)?, None),
    };
    let reply = match state.naming.beat(&key, &ikey, full) {
        BeatOutcome::Recorded { interval_ms } => BeatReply {
            client_beat_interval: interval_ms,
            code: CODE_OK,
            light_beat_enabled: true,
        },
        BeatOutcome::NotFound => BeatReply {
            client_beat_interval: DEFAULT_BEAT_INTERVAL_MS,
            code: CODE_RESOURCE_NOT_FOUND,
            light_beat_enabled: true,
        },
    };
    Ok(Json(reply))
}
