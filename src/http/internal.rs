//! Peer endpoints under `/nacos/internal/` (the gate admits only calls with the
//! cluster secret, see [`super::auth::Access::Peer`]), and the cluster view of
//! `/nacos/v1/core/cluster/nodes` in Nacos's shape.
//!
//! Bodies are [`crate::cluster::peer::encode`]d messages; a body that does not decode
//! gets 400 with the reason, and nothing is applied.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::naming_status;
use super::params::Params;
use crate::cluster::members::MemberState;
use crate::cluster::peer::{self, FROM_HEADER};
use crate::model::now_millis;
use crate::naming::command::{NamingCommand, Origin};
use crate::naming::distro::{ClientRecord, Digest, Forwarded, Snapshot};
use crate::replication::raft::{RaftNode, RaftStatus};

fn binary(body: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}

fn bad_message(e: peer::PeerError) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn not_a_member() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "this node has no cluster members",
    )
        .into_response()
}

/// The calling member, as it names itself.
fn sender(headers: &HeaderMap) -> String {
    headers
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("peer")
        .to_string()
}

/// `GET /nacos/internal/v1/cluster/ping`: a peer's probe.
pub async fn ping() -> &'static str {
    "UP"
}

/// `POST /nacos/internal/v1/distro/sync`: a batch of client records.
pub async fn distro_sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let records: Vec<ClientRecord> = match peer::decode(&body) {
        Ok(r) => r,
        Err(e) => return bad_message(e),
    };
    let from = sender(&headers);
    let now = now_millis();
    for record in records {
        state.naming.merge_client(record, &from, now);
    }
    "ok".into_response()
}

/// `POST /nacos/internal/v1/distro/verify`: a checksum round; answers the clients
/// this member wants.
pub async fn distro_verify(State(state): State<AppState>, body: Bytes) -> Response {
    let digests: Vec<Digest> = match peer::decode(&body) {
        Ok(d) => d,
        Err(e) => return bad_message(e),
    };
    binary(peer::encode(
        &state.naming.verify_digests(digests, now_millis()),
    ))
}

/// `GET /nacos/internal/v1/distro/snapshot`: every client this member holds.
pub async fn distro_snapshot(State(state): State<AppState>) -> Response {
    if state.distro.is_none() {
        return not_a_member();
    }
    let snapshot = Snapshot {
        ready: state.naming.registry().is_ready(),
        records: state.naming.snapshot_records(),
    };
    binary(peer::encode(&snapshot))
}

/// `POST /nacos/internal/v1/distro/forward`: a write for a client this member is
/// responsible for, already checked by the member that took it. Applied here (never
/// forwarded again); the answer is a [`Forwarded`] and, when the write changed the
/// client, its record after it.
pub async fn distro_forward(State(state): State<AppState>, body: Bytes) -> Response {
    let command: NamingCommand = match peer::decode(&body) {
        Ok(c) => c,
        Err(e) => return bad_message(e),
    };
    let client = state.distro.as_ref().and_then(|d| d.client_of(&command));
    let before = client.as_ref().and_then(|c| state.naming.client_version(c));
    let result = state.naming.apply(command, Origin::Local, now_millis());
    let answer = Forwarded::from_result(result, |e| naming_status(e).as_u16());
    // The record only when the write changed the client (a plain beat changes
    // nothing, and beats are most of what is forwarded).
    let record = client
        .filter(|c| state.naming.client_version(c) != before)
        .and_then(|c| state.naming.client_record(&c));
    binary(peer::encode(&(answer, record)))
}

/// `POST /nacos/internal/v1/cs/notify`: keys of configs a peer changed; each is
/// reloaded from the shared database and its listeners woken before the answer.
pub async fn config_notify(State(state): State<AppState>, body: Bytes) -> Response {
    let keys = match crate::config::peers::decode_notice(&body) {
        Ok(k) => k,
        Err(e) => return bad_message(e),
    };
    for key in keys {
        if let Err(e) = state.config.reload(&key).await {
            tracing::warn!(error = %e, data_id = %key.data_id, "cannot reload a config a peer changed");
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
    }
    "ok".into_response()
}

/// A member in Nacos's shape (`Member.java`), with Nacre's figures in `extendInfo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    ip: String,
    port: u16,
    state: String,
    address: String,
    fail_access_cnt: u32,
    extend_info: ExtendInfo,
    abilities: serde_json::Value,
}

/// `extendInfo` of a member.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtendInfo {
    version: &'static str,
    /// When this node last heard from the member, ms since the epoch (now for self).
    last_refresh_time: Option<u64>,
    /// How long the oldest Distro change not yet acknowledged by the member waits,
    /// milliseconds.
    distro_sync_lag_millis: u64,
    /// Whether this is the node answering.
    is_self: bool,
    /// The member in the Raft group as this node sees it: `nodeId`, `role`, `term`;
    /// for this node also `lastLogIndex`, `commitIndex` (= applied: an entry is
    /// applied once committed), `appliedIndex`, `snapshotIndex`; on the leader, for a
    /// peer, `matchIndex` and `replicationLag` (entries behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    raft: Option<serde_json::Value>,
    /// Nacos's shape of the same: the group's leader, members and term.
    #[serde(skip_serializing_if = "Option::is_none")]
    raft_meta_data: Option<serde_json::Value>,
}

/// The Raft part of a member's `extendInfo` (see [`ExtendInfo`]).
fn member_raft(
    status: Option<&RaftStatus>,
    address: &str,
    is_self: bool,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let Some(status) = status else {
        return (None, None);
    };
    let addr_of = |id: u64| {
        status
            .voters
            .get(&id)
            .or_else(|| status.learners.get(&id))
            .cloned()
    };
    let id = if is_self {
        Some(status.node_id)
    } else {
        status
            .voters
            .iter()
            .chain(status.learners.iter())
            .find(|(_, a)| a.as_str() == address)
            .map(|(id, _)| *id)
    };
    let members: Vec<String> = status
        .voters
        .values()
        .chain(status.learners.values())
        .cloned()
        .collect();
    let meta = serde_json::json!({"metaDataMap": {"naming_persistent_service_v2": {
        "leader": status.leader.and_then(addr_of),
        "raftGroupMember": members,
        "term": status.term,
    }}});
    let raft_json = if is_self {
        serde_json::json!({
            "nodeId": status.node_id,
            "role": status.role,
            "term": status.term,
            "lastLogIndex": status.last_log_index,
            "commitIndex": status.applied_index,
            "appliedIndex": status.applied_index,
            "snapshotIndex": status.snapshot_index,
        })
    } else {
        let role = match id {
            None => "None",
            Some(id) if Some(id) == status.leader => "Leader",
            Some(id) if status.voters.contains_key(&id) => "Follower",
            Some(_) => "Learner",
        };
        let mut v = serde_json::json!({"nodeId": id, "role": role, "term": status.term});
        if let Some(lag) = id.and_then(|id| status.replication_lag.get(&id)) {
            v["matchIndex"] = serde_json::json!(status.last_log_index.saturating_sub(*lag));
            v["replicationLag"] = serde_json::json!(lag);
        }
        v
    };
    (Some(raft_json), Some(meta))
}

fn member_json(
    address: &str,
    state: MemberState,
    fail_access_cnt: u32,
    extend_info: ExtendInfo,
) -> MemberJson {
    let (ip, port) = match address.rsplit_once(':') {
        Some((ip, port)) => (
            ip.trim_matches(['[', ']']).to_string(),
            port.parse().unwrap_or(0),
        ),
        None => (address.to_string(), 0),
    };
    MemberJson {
        ip,
        port,
        state: state.to_string(),
        address: address.to_string(),
        fail_access_cnt,
        extend_info,
        abilities: serde_json::json!({
            "remoteAbility": {"supportRemoteConnection": false, "grpcReportEnabled": false},
            "configAbility": {"supportRemoteMetrics": false},
            "namingAbility": {"supportJraft": true}
        }),
    }
}

/// Every member as this node sees it (self first is not promised: sorted by address).
fn members(state: &AppState, self_addr: &str) -> Vec<MemberJson> {
    // One view of the group for every member's entry.
    let status = state.raft.as_ref().map(|r| r.status());
    let status = status.as_ref();
    let own = |address: &str| {
        member_json(
            address,
            if state.naming.registry().is_ready() {
                MemberState::Up
            } else {
                MemberState::Suspicious
            },
            0,
            {
                let (raft, raft_meta_data) = member_raft(status, address, true);
                ExtendInfo {
                    version: env!("CARGO_PKG_VERSION"),
                    last_refresh_time: Some(now_millis()),
                    distro_sync_lag_millis: 0,
                    is_self: true,
                    raft,
                    raft_meta_data,
                }
            },
        )
    };
    let Some(distro) = &state.distro else {
        return vec![own(self_addr)];
    };
    let membership = distro.membership();
    let mut out: Vec<MemberJson> = membership
        .status()
        .into_iter()
        .map(|p| {
            let lag = distro.sync_lag_ms(&p.addr);
            let (raft, raft_meta_data) = member_raft(status, &p.addr, false);
            member_json(
                &p.addr,
                p.state,
                p.fail_count,
                ExtendInfo {
                    version: env!("CARGO_PKG_VERSION"),
                    last_refresh_time: p.last_contact_ms,
                    distro_sync_lag_millis: lag,
                    is_self: false,
                    raft,
                    raft_meta_data,
                },
            )
        })
        .collect();
    out.push(own(membership.this()));
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

/// This node's address for the cluster view: its member address, else `http.addr`.
fn self_address(state: &AppState) -> String {
    match &state.distro {
        Some(d) => d.membership().this().to_string(),
        None => state.node_addr.clone(),
    }
}

/// `GET /nacos/v1/core/cluster/nodes[?keyword=]`: `{"code":200,"message":null,
/// "data":[Member…]}`, sorted by address; `keyword` keeps the addresses that start
/// with it (as Nacos `NacosClusterController#listNodes`).
pub async fn cluster_nodes(
    State(state): State<AppState>,
    params: Params,
) -> Json<serde_json::Value> {
    let keyword = params.optional("keyword").unwrap_or("");
    let list: Vec<MemberJson> = members(&state, &self_address(&state))
        .into_iter()
        .filter(|m| m.address.starts_with(keyword))
        .collect();
    Json(serde_json::json!({"code": 200, "message": null, "data": list}))
}

/// `GET /nacos/v1/core/cluster/nodes/self` (and Nacos's `/v1/core/cluster/self`):
/// this node.
pub async fn cluster_self(State(state): State<AppState>) -> Json<serde_json::Value> {
    let address = self_address(&state);
    let me = members(&state, &address)
        .into_iter()
        .find(|m| m.address == address);
    Json(serde_json::json!({"code": 200, "message": null, "data": me}))
}

/// `POST /nacos/internal/v1/health/verdicts`: probe verdicts of the member responsible
/// for their services ([`crate::naming::command::NamingCommand::SetProbedHealth`]
/// only; anything else in the batch is refused with 400 and nothing is applied).
pub async fn health_verdicts(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verdicts: Vec<NamingCommand> = match peer::decode(&body) {
        Ok(v) => v,
        Err(e) => return bad_message(e),
    };
    if verdicts
        .iter()
        .any(|v| !matches!(v, NamingCommand::SetProbedHealth { .. }))
    {
        return (
            StatusCode::BAD_REQUEST,
            "only probe verdicts are accepted here",
        )
            .into_response();
    }
    let origin = Origin::Peer(std::sync::Arc::from(sender(&headers)));
    let now = now_millis();
    for verdict in verdicts {
        let _ = state.naming.apply(verdict, origin.clone(), now);
    }
    "ok".into_response()
}

/// The Raft group of this node, or the answer a node without one gives.
fn raft_of(state: &AppState) -> Result<&std::sync::Arc<RaftNode>, Box<Response>> {
    state.raft.as_ref().ok_or_else(|| Box::new(not_a_member()))
}

/// `POST /nacos/internal/v1/raft/append`: openraft's `append_entries`.
pub async fn raft_append(State(state): State<AppState>, body: Bytes) -> Response {
    let raft = match raft_of(&state) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match raft.handle_append(&body).await {
        Ok(answer) => binary(answer),
        Err(e) => bad_message(e),
    }
}

/// `POST /nacos/internal/v1/raft/vote`: openraft's `vote`.
pub async fn raft_vote(State(state): State<AppState>, body: Bytes) -> Response {
    let raft = match raft_of(&state) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match raft.handle_vote(&body).await {
        Ok(answer) => binary(answer),
        Err(e) => bad_message(e),
    }
}

/// `POST /nacos/internal/v1/raft/snapshot`: a whole snapshot from the leader.
pub async fn raft_snapshot(State(state): State<AppState>, body: Bytes) -> Response {
    let raft = match raft_of(&state) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    match raft.handle_snapshot(&body).await {
        Ok(answer) => binary(answer),
        Err(e) => bad_message(e),
    }
}

/// `POST /nacos/internal/v1/raft/write`: a proposal forwarded to the leader.
pub async fn raft_write(State(state): State<AppState>, body: Bytes) -> Response {
    match raft_of(&state) {
        Ok(raft) => binary(raft.handle_write(&body).await),
        Err(response) => *response,
    }
}

/// `POST /nacos/internal/v1/raft/membership`: a membership change forwarded to the
/// leader.
pub async fn raft_membership(State(state): State<AppState>, body: Bytes) -> Response {
    match raft_of(&state) {
        Ok(raft) => binary(raft.handle_membership(&body).await),
        Err(response) => *response,
    }
}

/// `GET /nacos/internal/v1/raft/identity`: this node's Raft id and whether it holds a
/// group.
pub async fn raft_identity(State(state): State<AppState>) -> Response {
    match raft_of(&state) {
        Ok(raft) => binary(peer::encode(&raft.identity().await)),
        Err(response) => *response,
    }
}

/// `GET /nacos/v1/core/cluster/raft`: the Raft group as this node sees it
/// (`{"code":200,"message":null,"data":RaftStatus}`).
pub async fn raft_status(State(state): State<AppState>) -> Response {
    match &state.raft {
        Some(raft) => {
            Json(serde_json::json!({"code": 200, "message": null, "data": raft.status()}))
                .into_response()
        }
        None => not_a_member(),
    }
}

/// `POST /nacos/v1/core/cluster/raft/members?address=host:port` (admin): adds the
/// member at `address` to the group, as a learner until it has caught up, then as a
/// voter. `DELETE …?nodeId=N` removes one. Either goes to the leader from any member.
/// Answers `ok`; 400 for a missing parameter, 503 with no leader, 409 when refused.
pub async fn raft_members(
    State(state): State<AppState>,
    method: axum::http::Method,
    params: Params,
) -> Response {
    use crate::replication::raft::{MembershipChange, MembershipError};
    let raft = match raft_of(&state) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let change = if method == axum::http::Method::DELETE {
        match params.required("nodeId").map(|v| v.parse::<u64>()) {
            Ok(Ok(node_id)) => MembershipChange::Remove { node_id },
            Ok(Err(_)) => {
                return super::error::ApiError::bad_request("nodeId must be a number")
                    .into_response();
            }
            Err(e) => return e.into_response(),
        }
    } else {
        match params.required("address") {
            Ok(addr) => MembershipChange::Add {
                addr: addr.to_string(),
            },
            Err(e) => return e.into_response(),
        }
    };
    match raft.change_membership(change).await {
        Ok(()) => "ok".into_response(),
        Err(e @ MembershipError::NoLeader(_)) => super::error::ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        }
        .into_response(),
        Err(e @ MembershipError::Refused(_)) => super::error::ApiError {
            status: StatusCode::CONFLICT,
            message: e.to_string(),
        }
        .into_response(),
    }
}
