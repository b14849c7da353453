//! openraft's network over the members' HTTP ports: each RPC is one POST of a peer
//! message (`cluster::peer`, postcard with a version byte) carrying the cluster
//! secret, answered with the encoded result. A snapshot goes whole, in one message
//! (openraft's `full_snapshot`), not in chunks with a 200 ms timeout each
//! (`research/cluster.md` §5.7).

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Node, NodeId, TypeConfig, paths};
use crate::cluster::peer::{self, PeerClient, PeerError};

/// A whole snapshot, as sent to a follower.
#[derive(Serialize, Deserialize)]
pub struct SnapshotMessage {
    /// The node it is for.
    pub target: NodeId,
    /// The leader's vote.
    pub vote: Vote<NodeId>,
    /// The snapshot's description.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// The domain's state.
    pub data: Vec<u8>,
}

/// Makes one [`Connection`] per peer; all share one HTTP client.
pub struct Network {
    client: Option<PeerClient>,
}

impl Network {
    /// A network over `client` (`None` on a standalone node, which calls nobody).
    pub fn new(client: Option<PeerClient>) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// The RPCs to one peer.
pub struct Connection {
    client: Option<PeerClient>,
    target: NodeId,
    addr: String,
}

impl Connection {
    async fn call(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<bytes::Bytes, PeerError> {
        match &self.client {
            Some(client) => client.post(&self.addr, path, body, timeout).await,
            None => Err(PeerError::Decode(format!(
                "a standalone node has no peers (asked to call {})",
                self.addr
            ))),
        }
    }

    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        // Addressed to the node id: a member whose data dir was emptied has a new id at
        // the old address, and must not take the old id's log.
        let bytes = self
            .call(
                path,
                peer::encode(&(self.target, request)),
                option.hard_ttl(),
            )
            .await
            .map_err(|e| match e {
                PeerError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                other => RPCError::Network(NetworkError::new(&other)),
            })?;
        let answer: Result<Resp, RaftError<NodeId, E>> =
            peer::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc(paths::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // Snapshots go whole through `full_snapshot`; openraft calls this only for
        // chunked transfer, which this network does not use.
        Err(RPCError::Network(NetworkError::new(&PeerError::Decode(
            "chunked snapshots are not used; see full_snapshot".into(),
        ))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.rpc(paths::VOTE, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let message = SnapshotMessage {
            target: self.target,
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        // A big snapshot needs longer than a heartbeat-sized deadline.
        let timeout = option.hard_ttl().max(Duration::from_secs(30));
        let bytes = self
            .call(paths::SNAPSHOT, peer::encode(&message), timeout)
            .await
            .map_err(|e| match e {
                PeerError::Unreachable { .. } => StreamingError::Unreachable(Unreachable::new(&e)),
                other => StreamingError::Network(NetworkError::new(&other)),
            })?;
        let answer: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            peer::decode(&bytes).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
