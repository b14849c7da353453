//! `/nacos/v1/ns/instance*`: register, deregister, update, patch, detail, list and beat,
//! with Nacos's parameters, answers and error codes (`shared/nacos-api.md` §2.1–2.7).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::super::auth::Caller;
use super::super::error::ApiError;
use super::super::params::Params;
use crate::auth::proof::AccessProof;
use crate::model::{
    DEFAULT_BEAT_INTERVAL_MS, DEFAULT_CLUSTER, Host, Instance, InstanceKey, MAX_WEIGHT, ServiceKey,
    check_metadata_size, parse_metadata, validate_beat_metadata, validate_cluster,
};
use crate::naming::command::{Applied, NamingCommand};
use crate::naming::registry::now_millis;
use crate::naming::service_info::{self, CachedHosts};
use crate::naming::{BeatOutcome, InstanceSpec, InstanceUpdate, NamingError};

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
        enabled: enabled(p, true),
        healthy: p.boolean("healthy", true),
        ephemeral: p.boolean("ephemeral", true),
        metadata: metadata(p.optional("metadata"))?,
    })
}

/// `POST /nacos/v1/ns/instance`: registers an instance; answers `ok`.
///
/// A persistent instance joining a cluster whose checker is `MYSQL` needs an admin:
/// the server logs in to it with the checker's credentials, so only an admin may say
/// where they go.
pub async fn register_instance(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let key = p.service_key()?;
    let spec = instance_spec(&p)?;
    if !spec.ephemeral
        && !caller.is_admin()
        && state.naming.service(&key).is_some_and(|s| {
            matches!(
                s.meta.cluster(&spec.cluster).health_checker,
                crate::model::HealthChecker::Mysql { .. }
            )
        })
    {
        return Err(ApiError::forbidden(
            "only an admin may register an instance in a cluster with a MYSQL health checker",
        ));
    }
    let command = NamingCommand::Register {
        service: key,
        instance: spec,
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `DELETE /nacos/v1/ns/instance`: deregisters the instance of the kind `ephemeral`
/// says (default true, as Nacos 2.x); `ok` also when nothing matched.
pub async fn deregister_instance(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let command = NamingCommand::Deregister {
        service: p.service_key()?,
        client: instance_key(&p)?,
        ephemeral: p.boolean("ephemeral", true),
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// `PUT /nacos/v1/ns/instance`: lays weight (default 1), enabled (default true) and
/// metadata over the registration of the instance (as Nacos 2.x: the metadata is
/// merged over the registered one, `healthy` is ignored); 400 when the service does
/// not exist, 404 when the instance is not registered in `clusterName`. Answers `ok`.
pub async fn update_instance(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let target = update_target(&p)?;
    let update = InstanceUpdate {
        weight: Some(weight(p.optional("weight"))?),
        enabled: Some(enabled(&p, true)),
        metadata: Some(metadata(p.optional("metadata"))?),
    };
    submit_update(&state, &caller, target, update).await
}

/// `PATCH /nacos/v1/ns/instance`: changes only the given fields (metadata, weight,
/// enabled) of the instance in `clusterName`; 404 when it is not registered there.
pub async fn patch_instance(
    State(state): State<AppState>,
    caller: Caller,
    p: Params,
) -> Result<&'static str, ApiError> {
    let target = update_target(&p)?;
    let update = InstanceUpdate {
        weight: p.optional("weight").map(|w| weight(Some(w))).transpose()?,
        enabled: (p.optional("enabled").is_some() || p.optional("enable").is_some())
            .then(|| enabled(&p, true)),
        metadata: p
            .optional("metadata")
            .map(|m| metadata(Some(m)))
            .transpose()?,
    };
    submit_update(&state, &caller, target, update).await
}

/// The instance an update names: `serviceName`, `ip` and `port`, `clusterName`.
fn update_target(p: &Params) -> Result<(ServiceKey, InstanceKey, String), ApiError> {
    Ok((p.service_key()?, instance_key(p)?, cluster(p)?))
}

/// Submits `update` for the instance `target`; answers `ok`.
async fn submit_update(
    state: &AppState,
    caller: &Caller,
    (service, client, cluster): (ServiceKey, InstanceKey, String),
    update: InstanceUpdate,
) -> Result<&'static str, ApiError> {
    let command = NamingCommand::UpdateInstance {
        service,
        client,
        cluster,
        update,
    };
    state.dispatcher.submit(command, &caller.proof()).await?;
    Ok("ok")
}

/// The `enabled` parameter, or the legacy `enable` the Python and Node.js clients send.
fn enabled(p: &Params, default: bool) -> bool {
    match p.optional("enabled") {
        Some(_) => p.boolean("enabled", default),
        None => p.boolean("enable", default),
    }
}

/// The client of the request: its `ip` and `port` (an instance is one per client and
/// service, whatever its cluster, as Nacos 2.x).
pub(super) fn instance_key(p: &Params) -> Result<InstanceKey, ApiError> {
    let ip = p.required("ip")?;
    host(ip)?;
    Ok(InstanceKey::new(ip, p.port("port")?))
}

/// The instance of client `ikey` when it is registered in `cluster`; 404 otherwise.
fn find(
    state: &AppState,
    key: &ServiceKey,
    ikey: &InstanceKey,
    cluster: &str,
) -> Result<Arc<Instance>, ApiError> {
    state
        .naming
        .instance(key, ikey)
        .filter(|i| &*i.cluster == cluster)
        .ok_or_else(|| {
            NamingError::InstanceNotFound {
                key: key.clone(),
                ip: ikey.ip.to_string(),
                port: ikey.port,
                cluster: cluster.to_string(),
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
    let inst = find(&state, &key, &ikey, &cluster(&p)?)?;
    Ok(Json(InstanceDetail {
        service: p.required("serviceName")?.to_string(),
        ip: inst.ip.to_string(),
        port: inst.port,
        cluster_name: inst.cluster.to_string(),
        weight: inst.weight,
        healthy: inst.healthy,
        instance_id: inst.instance_id(&key),
        metadata: inst.metadata.clone(),
    }))
}

/// What a list request says of its sender besides its parameters: the peer address
/// and the `User-Agent` (read without copying the other headers).
pub struct Sender {
    peer: Option<std::net::IpAddr>,
    agent: Option<axum::http::HeaderValue>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Sender {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            peer: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
            agent: parts.headers.get(axum::http::header::USER_AGENT).cloned(),
        })
    }
}

/// `GET /nacos/v1/ns/instance/list`: the instances of a service (`healthyOnly`,
/// `clusters`) as Nacos 2.x `ServiceInfo` JSON; an unknown service answers an empty
/// `hosts`, never 404. The `hosts` array comes from the
/// [`ListCache`](service_info::ListCache), encoded once per service revision and
/// selection. With `udpPort` (and `clientIP`) from a push-capable client the sender
/// becomes a subscriber of the service (see [`crate::push`]); a refused subscription
/// still gets its list answer.
pub async fn list_instances(
    State(state): State<AppState>,
    sender: Sender,
    p: Params,
) -> Result<axum::response::Response, ApiError> {
    let key = p.service_key()?;
    let clusters = p.optional("clusters").unwrap_or("");
    let healthy_only = p.boolean("healthyOnly", false);
    if p.optional("udpPort").is_some() {
        let udp_port = p.port("udpPort")?;
        if let (Some(push), Some(peer), true) = (&state.push, sender.peer, udp_port > 0) {
            let agent = sender
                .agent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let request = crate::push::SubscribeRequest {
                client_ip: p.optional("clientIP"),
                udp_port,
                peer,
                clusters,
                agent,
                app: p.optional("app").unwrap_or(""),
            };
            if let Err(refusal) = push.subscribe(&key, request) {
                tracing::debug!(service = %key, ?refusal, "push subscription refused");
            }
        }
    }
    let hosts = state
        .naming
        .service(&key)
        .map(|snap| state.list_cache.hosts(&snap, clusters, healthy_only));
    Ok(list_body(&state, &key, clusters, hosts.as_deref()))
}

fn list_body(
    state: &AppState,
    key: &ServiceKey,
    clusters: &str,
    hosts: Option<&CachedHosts>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = service_info::render(key, clusters, hosts, state.cache_millis, now_millis());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The fields of the beat JSON that find the instance, borrowed from the request
/// where no unescaping is needed; the rest (metadata, weight, …) is skipped without
/// being built, since an ordinary beat does not need it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BeatTarget<'a> {
    #[serde(borrow)]
    ip: Option<std::borrow::Cow<'a, str>>,
    port: Option<i64>,
    #[serde(borrow)]
    cluster: Option<std::borrow::Cow<'a, str>>,
}

/// The beat JSON a client sends (Nacos `RsInfo` / `BeatInfo`); unknown fields ignored.
/// Read in full only to register a missing instance again.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BeatJson {
    weight: Option<f64>,
    metadata: Option<BTreeMap<String, serde_json::Value>>,
    ephemeral: Option<bool>,
}

fn beat_json_error(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("Param 'beat' is not valid beat JSON: {e}"))
}

/// The instance a beat is for and its cluster: the `ip`, `port` and `cluster` of the
/// beat JSON where it gives them, else the `ip`, `port` and `clusterName` parameters
/// (as Nacos `InstanceController#beat`). The beat finds the instance by `ip:port`
/// alone; the cluster serves a registration from a full beat. Errors, naming the
/// field, on bad JSON or values.
pub fn beat_key(beat: Option<&str>, p: &Params) -> Result<(InstanceKey, String), ApiError> {
    let Some(raw) = beat else {
        return Ok((instance_key(p)?, cluster(p)?));
    };
    let beat: BeatTarget<'_> = serde_json::from_str(raw).map_err(beat_json_error)?;
    let cluster = match beat
        .cluster
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        Some(c) => {
            validate_cluster(c).map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
            c.to_string()
        }
        None => cluster(p)?,
    };
    let ip = match beat.ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(ip) => ip,
        None => p.required("ip")?,
    };
    let port = match beat.port {
        Some(port) => u16::try_from(port).map_err(|_| {
            ApiError::bad_request(format!("Param 'beat' has an illegal port: {port}"))
        })?,
        None => p.port("port")?,
    };
    Ok((InstanceKey::new(ip, port), cluster))
}

/// The registration a full beat makes when its instance `ikey` is gone (Nacos
/// registers it again from the beat JSON): weight, metadata and ephemeral from the
/// JSON, checked as a registration is. Errors name the field.
pub fn beat_registration(
    beat: &str,
    ikey: &InstanceKey,
    cluster: &str,
) -> Result<InstanceSpec, ApiError> {
    let beat: BeatJson = serde_json::from_str(beat).map_err(beat_json_error)?;
    let host =
        Host::parse(&ikey.ip).map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
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
        .and_then(|_| check_metadata_size(&metadata))
        .map_err(|e| ApiError::bad_request(format!("Param 'beat': {e}")))?;
    Ok(InstanceSpec {
        ip: ikey.ip.to_string(),
        host,
        port: ikey.port,
        cluster: cluster.to_string(),
        weight: check_weight(beat.weight.unwrap_or(1.0))?,
        enabled: true,
        healthy: true,
        ephemeral: beat.ephemeral.unwrap_or(true),
        metadata,
    })
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
    caller: Caller,
    p: Params,
) -> Result<Json<BeatReply>, ApiError> {
    let key = p.service_key()?;
    let beat_raw = p.optional("beat");
    // The instance key first; the full instance (to register it again, as Nacos does
    // for a beat with its JSON) is built only when the instance is gone, so an ordinary
    // beat parses no host and builds no metadata map.
    let (ikey, cluster) = beat_key(beat_raw, &p)?;
    let proof = caller.proof();
    // The key is kept for a second command only when the beat carries the instance.
    let retry = beat_raw.map(|raw| (key.clone(), ikey.clone(), raw));
    let light = NamingCommand::Beat {
        service: key,
        client: ikey,
        full: None,
    };
    let outcome = match (beat_outcome(&state, light, &proof).await?, retry) {
        (BeatOutcome::NotFound, Some((service, client, raw))) => {
            let spec = beat_registration(raw, &client, &cluster)?;
            let full = NamingCommand::Beat {
                service,
                client,
                full: Some(spec),
            };
            beat_outcome(&state, full, &proof).await?
        }
        (outcome, _) => outcome,
    };
    let reply = match outcome {
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

/// Submits a beat command and returns what it found.
async fn beat_outcome(
    state: &AppState,
    command: NamingCommand,
    proof: &AccessProof,
) -> Result<BeatOutcome, ApiError> {
    match state.dispatcher.submit(command, proof).await? {
        Applied::Beat(outcome) => Ok(outcome),
        other => Err(ApiError::caused(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("a beat was answered with {other:?}"),
        )),
    }
}
