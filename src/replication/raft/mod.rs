//! Raft (openraft 0.9, storage v2) for the CP data of DESIGN §2: one group, a durable
//! log ([`log_store`]) and snapshots ([`state_machine`]) in `<data>/raft/`, peer RPCs
//! over the members' HTTP ports ([`network`]). Everything openraft is behind this
//! module, so that an upgrade stays here; the domain sees only [`ReplicatedState`]
//! and byte strings.
//!
//! * **Node ids** are random, non-zero `u64`s kept in `<data>/raft/node_id`: stable
//!   across restarts and address changes (Nacos's JRaft keys peers by address and
//!   restores stale ones, `research/cluster.md` §3.5).
//! * **One node is a one-member group**, initialized at its first start.
//! * **Writes** ([`RaftNode::write`]) are proposed on the leader, forwarded to it from
//!   a follower, and answered only once committed and applied; with no leader, or when
//!   a leader cannot reach a majority, they are refused with [`WriteError::NoLeader`].

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cluster::peer::{self, PeerClient, PeerError};

pub use log_store::LogStore;
pub use state_machine::StateMachine;

/// A Raft node id.
pub type NodeId = u64;
/// A Raft node's address: its member address (`host:port` of the HTTP port).
pub type Node = BasicNode;

/// One log entry's payload: the domain's commands that arrived together at the leader
/// (group commit: one entry, one fsync for all of them), stamped with the leader's
/// clock so that applying them is deterministic on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Milliseconds since the epoch when the leader proposed it.
    pub at_ms: u64,
    /// The domain's commands, each encoded by the domain, applied in this order.
    pub commands: Vec<Vec<u8>>,
}

openraft::declare_raft_types!(
    /// The Raft types of Nacre's CP group.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Vec<u8>>,
        NodeId = NodeId,
        Node = Node,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;

/// Encodes a state captured by [`ReplicatedState::snapshot`].
pub type SnapshotJob = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// What a replicated domain gives the Raft engine. Implemented by naming for its CP
/// data; the engine never looks inside the bytes.
pub trait ReplicatedState: Send + Sync + 'static {
    /// Applies one committed command of the entry at log index `index`, proposed at
    /// `at_ms` (milliseconds since the epoch, the leader's clock), and returns the
    /// answer for its proposer (encoded by the domain). Must be deterministic: the same
    /// commands in the same order give the same state on every node.
    fn apply(&self, index: u64, at_ms: u64, command: &[u8]) -> Vec<u8>;
    /// The whole replicated state as of now, as a job that encodes it: the call
    /// itself must be quick (it runs between two applies; capture immutable handles),
    /// the job runs later on a blocking thread while applies go on.
    fn snapshot(&self) -> SnapshotJob;
    /// Replaces the whole replicated state with a [`ReplicatedState::snapshot`] taken at
    /// log index `index`. Errors (with a message) when the bytes do not decode; the
    /// state is then unchanged.
    fn restore(&self, index: u64, data: &[u8]) -> Result<(), String>;
}

/// Peer paths of the Raft RPCs, on the HTTP port (DESIGN §5).
pub mod paths {
    /// openraft's `append_entries`.
    pub const APPEND: &str = "/nacos/internal/v1/raft/append";
    /// openraft's `vote`.
    pub const VOTE: &str = "/nacos/internal/v1/raft/vote";
    /// A whole snapshot, in one message.
    pub const SNAPSHOT: &str = "/nacos/internal/v1/raft/snapshot";
    /// A proposal forwarded to the leader.
    pub const WRITE: &str = "/nacos/internal/v1/raft/write";
    /// A member's node id and whether it holds a group (`GET`).
    pub const IDENTITY: &str = "/nacos/internal/v1/raft/identity";
    /// A membership change forwarded to the leader.
    pub const MEMBERSHIP: &str = "/nacos/internal/v1/raft/membership";
}

/// A member's answer on [`paths::IDENTITY`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Its node id.
    pub node_id: NodeId,
    /// Whether it holds a group (a log, a vote or a membership).
    pub initialized: bool,
    /// Index of the last entry it applied.
    pub applied_index: u64,
}

/// A membership change, as the admin API asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add the member at this address (learner, then voter).
    Add {
        /// Its member address (`host:port`).
        addr: String,
    },
    /// Remove the member with this node id.
    Remove {
        /// Its node id.
        node_id: NodeId,
    },
}

/// Timings and limits of the group.
#[derive(Clone)]
pub struct RaftOptions {
    /// The Raft directory (`<data>/raft`).
    pub dir: PathBuf,
    /// This member's address (`host:port`), what peers call.
    pub addr: String,
    /// Peer client; `None` on a standalone node (a one-member group).
    pub client: Option<PeerClient>,
    /// Leader heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// Election timeout range, milliseconds.
    pub election_timeout_ms: (u64, u64),
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// How long a write waits for a leader and for its commit, milliseconds.
    pub write_timeout_ms: u64,
}

impl RaftOptions {
    /// Options for `dir` and `addr` from the `[raft]` settings.
    pub fn from_settings(
        dir: PathBuf,
        addr: String,
        client: Option<PeerClient>,
        settings: &crate::settings::RaftSettings,
    ) -> Self {
        Self {
            dir,
            addr,
            client,
            heartbeat_ms: settings.heartbeat_ms,
            election_timeout_ms: (
                settings.election_timeout_ms,
                2 * settings.election_timeout_ms,
            ),
            snapshot_every: settings.snapshot_every,
            logs_kept_after_snapshot: settings.logs_kept_after_snapshot,
            write_timeout_ms: settings.write_timeout_ms,
        }
    }

    /// Options for `dir` and `addr` with the defaults of `settings::RaftSettings`.
    pub fn new(dir: PathBuf, addr: String, client: Option<PeerClient>) -> Self {
        Self::from_settings(dir, addr, client, &crate::settings::RaftSettings::default())
    }
}

/// Why the group could not start.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The Raft directory or the node id file.
    #[error("raft directory {path}: {source}")]
    Dir {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The log file.
    #[error("raft log {path}: {message}")]
    Log {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The snapshot file or openraft itself.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a write was not committed.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteError {
    /// No leader is known, or the leader cannot reach a majority: this node may be on
    /// the minority side of a partition. Answered as HTTP 503.
    #[error("no Raft leader: {0}")]
    NoLeader(String),
    /// The group stopped (shutdown or a storage failure).
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// The leader's answer to a forwarded proposal.
#[derive(Serialize, Deserialize)]
pub enum ForwardAnswer {
    /// Proposed here: the outcome.
    Answer(Result<Vec<u8>, WriteError>),
    /// Not proposed: this node does not lead (with a majority).
    NotLeader,
}

/// What a forward came to.
enum Forward {
    /// An outcome to give the caller.
    Done(Result<Vec<u8>, WriteError>),
    /// Not proposed; worth another try while the write timeout lasts.
    Retry(String),
}

/// A membership change refused.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipError {
    /// No leader is known, or the leader cannot be reached.
    #[error("no Raft leader: {0}")]
    NoLeader(String),
    /// The change itself was refused (an unknown node, an unreachable new member, or
    /// openraft's refusal); the text says why.
    #[error("{0}")]
    Refused(String),
}

/// What `/nacos/v1/core/cluster/nodes` shows of the group.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// `Leader`, `Follower`, `Candidate` or `Learner`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The leader's id, when known.
    pub leader: Option<NodeId>,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied (hence committed) entry.
    pub applied_index: u64,
    /// Index the last snapshot covers.
    pub snapshot_index: u64,
    /// The voters, by id and address.
    pub voters: BTreeMap<NodeId, String>,
    /// Learners (members that receive the log but do not vote).
    pub learners: BTreeMap<NodeId, String>,
    /// On the leader: how many entries each follower is behind.
    pub replication_lag: BTreeMap<NodeId, u64>,
}

/// This node's member of the CP group.
pub struct RaftNode {
    raft: Raft<TypeConfig>,
    /// Commands waiting for the next group commit (see [`batch_proposals`]).
    batcher: tokio::sync::mpsc::Sender<Queued>,
    id: NodeId,
    addr: String,
    client: Option<PeerClient>,
    write_timeout: Duration,
}

/// Reads the node id from `dir/node_id`, or makes and keeps a new one.
fn node_id(dir: &Path) -> Result<NodeId, std::io::Error> {
    let path = dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<NodeId>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Under 2^53, so that JSON readers (the console) keep it exact.
            let id = (rand::random::<u64>() >> 11).max(1);
            let tmp = dir.join("node_id.tmp");
            std::fs::write(&tmp, format!("{id}\n"))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

impl RaftNode {
    /// Opens the group in `options.dir` over `state`: restores the snapshot, replays the
    /// committed log, and on a standalone node initializes the one-member group at its
    /// first start.
    ///
    /// Errors when the directory, the log or the snapshot cannot be read; a node never
    /// starts on a state it could not restore.
    pub async fn open(
        options: RaftOptions,
        state: Arc<dyn ReplicatedState>,
    ) -> Result<Arc<Self>, OpenError> {
        let dir = options.dir.clone();
        let dir_err = |source| OpenError::Dir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let id = node_id(&dir).map_err(dir_err)?;
        let log_path = dir.join("log.redb");
        let log = LogStore::open(&log_path).map_err(|e| OpenError::Log {
            path: log_path.clone(),
            message: e.to_string(),
        })?;
        let state_machine =
            StateMachine::open(state, &dir).map_err(|e| OpenError::Raft(e.to_string()))?;
        let config = Config {
            cluster_name: "nacre".into(),
            heartbeat_interval: options.heartbeat_ms,
            election_timeout_min: options.election_timeout_ms.0,
            election_timeout_max: options.election_timeout_ms.1,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_every),
            max_in_snapshot_log_to_keep: options.logs_kept_after_snapshot,
            purge_batch_size: 256,
            ..Default::default()
        }
        .validate()
        .map_err(|e| OpenError::Raft(e.to_string()))?;
        let network = network::Network::new(options.client.clone());
        let raft = Raft::new(id, Arc::new(config), network, log, state_machine)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let (batcher, queued) = tokio::sync::mpsc::channel(8192);
        tokio::spawn(batch_proposals(raft.clone(), queued));
        let node = Arc::new(Self {
            raft,
            batcher,
            id,
            addr: options.addr.clone(),
            client: options.client.clone(),
            write_timeout: Duration::from_millis(options.write_timeout_ms),
        });
        if node.client.is_none()
            && let Err(e) = node.start_alone().await
        {
            // The group holds the log file open: stop it, or a retry could not open it.
            node.shutdown().await;
            return Err(e);
        }
        Ok(node)
    }

    /// A standalone node: initializes the one-member group once, and on a restart
    /// elects itself at once rather than after an election timeout.
    async fn start_alone(&self) -> Result<(), OpenError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(self.id, BasicNode::new(&self.addr))]);
            self.raft
                .initialize(members)
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
            tracing::info!(
                node_id = self.id,
                "raft group initialized with this node alone"
            );
        } else if self.is_sole_voter() {
            let _ = self.raft.trigger().elect().await;
        }
        Ok(())
    }

    fn is_sole_voter(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        voters == [self.id]
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Commits `command` (proposed with this node's time `at_ms`) and returns the
    /// domain's answer. On a follower the proposal goes to the leader. While no leader
    /// is known, the known one cannot be reached, or this node leads without a
    /// majority, it retries every 50 ms until the write timeout; once an entry is
    /// appended it waits for the commit up to the timeout and is not proposed again.
    ///
    /// Errors with [`WriteError::NoLeader`] when no leader takes the write or the commit
    /// does not come in time (this node may be cut off); with [`WriteError::Stopped`]
    /// after a fatal error.
    pub async fn write(&self, command: Vec<u8>, at_ms: u64) -> Result<Vec<u8>, WriteError> {
        let proposal = (at_ms, command);
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            let refusal = match self.leader() {
                Some((leader, _)) if leader == self.id => {
                    if self.has_quorum() {
                        return self.propose(proposal, deadline).await;
                    }
                    "this node leads but has not heard from a majority of the members \
                     recently; it may be cut off"
                        .to_string()
                }
                Some((_, addr)) => match self.forward(&addr, &proposal, deadline).await {
                    Forward::Done(answer) => return answer,
                    Forward::Retry(why) => why,
                },
                None => "no leader is elected; this node may be cut off from a majority \
                         of the members"
                    .to_string(),
            };
            if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(WriteError::NoLeader(refusal));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader's id and address, when known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// Proposes on this node, which leads with a majority, and waits for the commit
    /// until `deadline`.
    async fn propose(
        &self,
        (at_ms, command): (u64, Vec<u8>),
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.batcher.send((at_ms, command, tx)).await.is_err() {
            return Err(WriteError::Stopped("the raft group is shut down".into()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(WriteError::Stopped("the raft group is shut down".into())),
            Err(_) => Err(WriteError::NoLeader(
                "the write was not committed in time; this node may be cut off from a \
                 majority of the members (the write takes effect only if the members \
                 agree on it later)"
                    .into(),
            )),
        }
    }

    /// Whether this leader heard from a majority within the longest election timeout,
    /// its lease (always on a one-voter group). A leader that did not is likely cut
    /// off: it does not append an entry that could commit only after the caller was
    /// told no.
    fn has_quorum(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let voters = metrics.membership_config.membership().voter_ids().count();
        if voters <= 1 {
            return true;
        }
        let limit = self.raft.config().election_timeout_max;
        metrics
            .millis_since_quorum_ack
            .is_some_and(|ms| ms <= limit)
    }

    /// Sends a proposal to the leader at `addr`.
    async fn forward(
        &self,
        addr: &str,
        proposal: &(u64, Vec<u8>),
        deadline: tokio::time::Instant,
    ) -> Forward {
        let Some(client) = &self.client else {
            return Forward::Done(Err(WriteError::NoLeader(format!(
                "the leader is {addr}, and this node has no peer client"
            ))));
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client
            .post(addr, paths::WRITE, peer::encode(proposal), left)
            .await
        {
            Ok(bytes) => match peer::decode::<ForwardAnswer>(&bytes) {
                Ok(ForwardAnswer::Answer(answer)) => Forward::Done(answer),
                Ok(ForwardAnswer::NotLeader) => Forward::Retry(format!("{addr} no longer leads")),
                Err(e) => Forward::Done(Err(WriteError::Stopped(format!(
                    "bad answer from {addr}: {e}"
                )))),
            },
            Err(e @ PeerError::Unreachable { .. }) => {
                Forward::Retry(format!("the leader {addr} cannot be reached: {e}"))
            }
            Err(e) => Forward::Done(Err(WriteError::NoLeader(e.to_string()))),
        }
    }

    /// Serves a proposal forwarded by a follower: proposes it here when this node
    /// leads with a majority, else answers that it does not (the follower retries; no
    /// second hop). Answers an encoded [`ForwardAnswer`].
    pub async fn handle_write(&self, body: &[u8]) -> Vec<u8> {
        let answer = match peer::decode::<(u64, Vec<u8>)>(body) {
            Ok(proposal) => match self.leader() {
                Some((leader, _)) if leader == self.id && self.has_quorum() => {
                    let deadline = tokio::time::Instant::now() + self.write_timeout;
                    ForwardAnswer::Answer(self.propose(proposal, deadline).await)
                }
                _ => ForwardAnswer::NotLeader,
            },
            Err(e) => ForwardAnswer::Answer(Err(WriteError::Stopped(e.to_string()))),
        };
        peer::encode(&answer)
    }

    /// Refuses an RPC addressed to another node id (this member's data dir was
    /// emptied, or the address now belongs to another node).
    fn addressed_here(&self, target: NodeId) -> Result<(), PeerError> {
        if target == self.id {
            Ok(())
        } else {
            Err(PeerError::Decode(format!(
                "raft message for node {target}, this member is node {}; remove the old \
                 node and add this one with the admin API",
                self.id
            )))
        }
    }

    /// Serves openraft's `append_entries` RPC (an encoded `(target node id, request)`;
    /// answers the encoded result). Errors when the body does not decode or is for
    /// another node id.
    pub async fn handle_append(&self, body: &[u8]) -> Result<Vec<u8>, PeerError> {
        let (target, request) = peer::decode(body)?;
        self.addressed_here(target)?;
        Ok(peer::encode(&self.raft.append_entries(request).await))
    }

    /// Serves openraft's `vote` RPC (as [`RaftNode::handle_append`]).
    pub async fn handle_vote(&self, body: &[u8]) -> Result<Vec<u8>, PeerError> {
        let (target, request) = peer::decode(body)?;
        self.addressed_here(target)?;
        Ok(peer::encode(&self.raft.vote(request).await))
    }

    /// Serves a whole snapshot sent by the leader (as [`RaftNode::handle_append`]).
    pub async fn handle_snapshot(&self, body: &[u8]) -> Result<Vec<u8>, PeerError> {
        let message: network::SnapshotMessage = peer::decode(body)?;
        self.addressed_here(message.target)?;
        let snapshot = openraft::Snapshot {
            meta: message.meta,
            snapshot: Box::new(Cursor::new(message.data)),
        };
        Ok(peer::encode(
            &self
                .raft
                .install_full_snapshot(message.vote, snapshot)
                .await,
        ))
    }

    /// Initializes a fresh group with `members` (id → address) as its voters. Only for
    /// a cluster's first start (see `cluster` for the rule); refused when this node
    /// already holds a log or a vote.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), String> {
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        self.raft.initialize(nodes).await.map_err(|e| e.to_string())
    }

    /// Whether this node holds a group (a log, a vote or a membership).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// A member's identity (`None` when it cannot be reached or answers nonsense).
    pub async fn identity_of(&self, addr: &str) -> Option<Identity> {
        let client = self.client.as_ref()?;
        let bytes = client
            .get(addr, paths::IDENTITY, Duration::from_secs(2))
            .await
            .ok()?;
        peer::decode(&bytes).ok()
    }

    /// This node's identity, for [`paths::IDENTITY`].
    pub async fn identity(&self) -> Identity {
        Identity {
            node_id: self.id,
            initialized: self.is_initialized().await,
            applied_index: self.status().applied_index,
        }
    }

    /// Applies a membership change: on the leader here, elsewhere forwarded to it. An
    /// added member joins as a learner, is waited for until it has caught up, then
    /// becomes a voter; a removed one leaves the voters and the learners.
    ///
    /// Errors with [`MembershipError::NoLeader`] when no leader is known or reachable,
    /// [`MembershipError::Refused`] when the new member cannot be reached, the node id
    /// is not a member, or openraft refuses.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), MembershipError> {
        match self.leader() {
            Some((leader, _)) if leader == self.id => self.change_here(change).await,
            Some((_, addr)) => {
                let Some(client) = &self.client else {
                    return Err(MembershipError::NoLeader(addr));
                };
                let bytes = client
                    .post(
                        &addr,
                        paths::MEMBERSHIP,
                        peer::encode(&change),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|e| MembershipError::NoLeader(e.to_string()))?;
                peer::decode::<Result<(), MembershipError>>(&bytes)
                    .map_err(|e| MembershipError::NoLeader(e.to_string()))?
            }
            None => Err(MembershipError::NoLeader("no leader is known".into())),
        }
    }

    /// Serves a membership change forwarded by a member (answers the encoded result).
    pub async fn handle_membership(&self, body: &[u8]) -> Vec<u8> {
        let answer = match peer::decode::<MembershipChange>(body) {
            Ok(change) => match self.leader() {
                Some((leader, _)) if leader == self.id => self.change_here(change).await,
                _ => Err(MembershipError::NoLeader(
                    "the member the change was forwarded to no longer leads".into(),
                )),
            },
            Err(e) => Err(MembershipError::Refused(e.to_string())),
        };
        peer::encode(&answer)
    }

    async fn change_here(&self, change: MembershipChange) -> Result<(), MembershipError> {
        let refused = |e: String| MembershipError::Refused(e);
        match change {
            MembershipChange::Add { addr } => {
                let identity = self.identity_of(&addr).await.ok_or_else(|| {
                    refused(format!(
                        "member {addr} cannot be reached to learn its node id"
                    ))
                })?;
                let id = identity.node_id;
                self.raft
                    .add_learner(id, BasicNode::new(&addr), true)
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                tracing::info!(node_id = id, addr, "raft member added");
            }
            MembershipChange::Remove { node_id } => {
                let metrics = self.raft.metrics().borrow().clone();
                let membership = metrics.membership_config.membership();
                let voter = membership.voter_ids().any(|v| v == node_id);
                let learner = membership.learner_ids().any(|l| l == node_id);
                if !voter && !learner {
                    return Err(refused(format!("node {node_id} is not a member")));
                }
                if voter {
                    self.raft
                        .change_membership(
                            ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                            false,
                        )
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                }
                let metrics = self.raft.metrics().borrow().clone();
                if metrics
                    .membership_config
                    .membership()
                    .get_node(&node_id)
                    .is_some()
                {
                    self.raft
                        .change_membership(
                            ChangeMembers::RemoveNodes(BTreeSet::from([node_id])),
                            false,
                        )
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                }
                tracing::info!(node_id, "raft member removed");
            }
        }
        Ok(())
    }

    /// Waits until this member has caught up with the group: it leads, or it applied
    /// what the leader had applied when asked; or no leader is known for three of the
    /// longest election timeouts after `started` (there is nothing to catch up with,
    /// and the member serves what it holds, as a lone Distro member does). Returns
    /// whether it caught up with a leader. Stops early when `cancel` fires.
    pub async fn wait_caught_up(&self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        let started = tokio::time::Instant::now();
        let leaderless = Duration::from_millis(3 * self.raft.config().election_timeout_max);
        let mut target: Option<u64> = None;
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let applied = self.status().applied_index;
            match (target, self.leader()) {
                (Some(t), _) if applied >= t => return true,
                (_, Some((leader, _))) if leader == self.id => return true,
                (None, Some((_, addr))) => {
                    target = self.identity_of(&addr).await.map(|i| i.applied_index);
                }
                (None, None) if started.elapsed() >= leaderless => return false,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The group as this node sees it.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: BTreeMap<NodeId, String> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let learners = membership
            .learner_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect();
        let last = m.last_log_index.unwrap_or(0);
        let replication_lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, matched)| {
                        (
                            *id,
                            last.saturating_sub(matched.map(|l| l.index).unwrap_or(0)),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        RaftStatus {
            node_id: self.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: last,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            voters,
            learners,
            replication_lag,
        }
    }

    /// Stops the group.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Logs followers that stop replicating (Nacos users report followers that lagged for
/// weeks, unnoticed: `research/cluster.md` §3.5). On the leader, every `every`: a
/// follower whose matched index has not moved for 10 s while entries wait for it is
/// logged as a warning (again each minute while it lasts), and logged again when it
/// catches up. Runs until `cancel` fires.
pub async fn watch_replication(
    node: Arc<RaftNode>,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    // follower → (matched index, since when unchanged, last warning)
    let mut seen: BTreeMap<NodeId, (u64, tokio::time::Instant, Option<tokio::time::Instant>)> =
        BTreeMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let m = node.raft.metrics().borrow().clone();
        let Some(replication) = m.replication.as_ref() else {
            seen.clear();
            continue;
        };
        let last = m.last_log_index.unwrap_or(0);
        let now = tokio::time::Instant::now();
        for (id, matched) in replication.iter() {
            if *id == node.id {
                continue;
            }
            let matched = matched.map(|l| l.index).unwrap_or(0);
            let entry = seen.entry(*id).or_insert((matched, now, None));
            if matched != entry.0 || matched >= last {
                if entry.2.is_some() && matched >= last {
                    tracing::info!(node_id = id, matched, "raft follower caught up");
                    entry.2 = None;
                }
                *entry = (matched, now, entry.2);
                continue;
            }
            let stalled = now.duration_since(entry.1);
            let due = entry
                .2
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
            if stalled >= Duration::from_secs(10) && due {
                tracing::warn!(
                    node_id = id,
                    matched,
                    last_log_index = last,
                    stalled_secs = stalled.as_secs(),
                    "raft follower is not replicating"
                );
                entry.2 = Some(now);
            }
        }
    }
}

/// A command waiting for a group commit: its proposer's clock, the command, and where
/// its answer goes.
type Queued = (
    u64,
    Vec<u8>,
    tokio::sync::oneshot::Sender<Result<Vec<u8>, WriteError>>,
);

/// Most commands in one entry.
const MAX_BATCH: usize = 1024;
/// Entries proposed and not yet committed at once: while they commit, the next
/// commands gather into the next entry.
const IN_FLIGHT: usize = 2;

/// Group commit on the leader: takes the commands that are waiting (up to
/// [`MAX_BATCH`]) as one [`Proposal`], so one log entry and one fsync serve every
/// concurrent write (openraft 0.9 appends and flushes each entry on its own); with
/// [`IN_FLIGHT`] entries committing, the next batch gathers meanwhile. Each command
/// gets its own answer. Ends when the node is dropped.
async fn batch_proposals(raft: Raft<TypeConfig>, mut queued: tokio::sync::mpsc::Receiver<Queued>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = queued.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let at_ms = batch.iter().map(|(at, _, _)| *at).max().unwrap_or(0);
        let (commands, answers): (Vec<Vec<u8>>, Vec<_>) =
            batch.into_iter().map(|(_, c, tx)| (c, tx)).unzip();
        let raft = raft.clone();
        tokio::spawn(async move {
            let outcome = raft.client_write(Proposal { at_ms, commands }).await;
            drop(slot);
            match outcome {
                Ok(response) => {
                    let mut data = response.data.into_iter();
                    for tx in answers {
                        let answer = data.next().ok_or_else(|| {
                            WriteError::Stopped("the state machine gave no answer".into())
                        });
                        let _ = tx.send(answer);
                    }
                }
                Err(e) => {
                    let error = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                            WriteError::NoLeader("leadership moved while writing; retry".into())
                        }
                        other => WriteError::Stopped(other.to_string()),
                    };
                    for tx in answers {
                        let _ = tx.send(Err(error.clone()));
                    }
                }
            }
        });
    }
}

/// What [`recover`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    /// This node's id, now the group's only voter.
    pub node_id: NodeId,
    /// Index of the last entry the recovered state holds.
    pub last_log_index: u64,
    /// Entries replayed from the log over the snapshot.
    pub replayed: usize,
}

/// Recovers from a lost quorum, on a stopped member (the one with the most data, see
/// `nacre raft status` before the loss, or the highest last log index): its state
/// (the snapshot, then every entry of its log, also entries it never learned were
/// committed, as etcd's `--force-new-cluster` does) becomes a snapshot whose
/// membership is this node alone at `addr`, and the log is emptied (the vote is
/// kept). Started again, the member leads a one-member group with that data; the
/// other members are then emptied (their `<data>/raft` removed) and added back with
/// the admin API. `state` receives the recovered state (and is what the snapshot is
/// built from).
///
/// Errors when the directory holds no node id, the log or the snapshot cannot be
/// read, or the new files cannot be written; the old log is kept as
/// `log.redb.before-recovery` until the new one is written.
pub async fn recover(
    dir: &Path,
    addr: &str,
    state: Arc<dyn ReplicatedState>,
) -> Result<Recovered, OpenError> {
    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::{Membership, RaftSnapshotBuilder, StoredMembership};

    let raft_err = |e: &dyn std::fmt::Display| OpenError::Raft(e.to_string());
    let id_path = dir.join("node_id");
    if !id_path.exists() {
        return Err(OpenError::Raft(format!(
            "{} does not exist: nothing to recover in {}",
            id_path.display(),
            dir.display()
        )));
    }
    let id = node_id(dir).map_err(|source| OpenError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let log_path = dir.join("log.redb");
    let (vote, entries) = {
        let mut log = LogStore::open(&log_path).map_err(|e| OpenError::Log {
            path: log_path.clone(),
            message: e.to_string(),
        })?;
        let vote = log.read_vote().await.map_err(|e| raft_err(&e))?;
        let entries = openraft::RaftLogReader::try_get_log_entries(&mut log, ..)
            .await
            .map_err(|e| raft_err(&e))?;
        (vote, entries)
    };
    let mut sm = StateMachine::open(state, dir).map_err(|e| raft_err(&e))?;
    let from = sm.last_applied().map(|l| l.index + 1).unwrap_or(0);
    let replay: Vec<Entry> = entries
        .into_iter()
        .filter(|e| e.log_id.index >= from)
        .collect();
    let replayed = replay.len();
    sm.apply(replay).await.map_err(|e| raft_err(&e))?;
    let last = sm.last_applied();
    let mut builder = sm.get_snapshot_builder().await;
    let membership = Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(id, BasicNode::new(addr))]),
    );
    builder.meta.last_membership = StoredMembership::new(last, membership);
    builder.meta.snapshot_id = format!("recovered-{}", last.map(|l| l.index).unwrap_or(0));
    builder.build_snapshot().await.map_err(|e| raft_err(&e))?;
    let kept = dir.join("log.redb.before-recovery");
    std::fs::rename(&log_path, &kept).map_err(|source| OpenError::Dir {
        path: log_path.clone(),
        source,
    })?;
    let mut log = LogStore::open(&log_path).map_err(|e| OpenError::Log {
        path: log_path.clone(),
        message: e.to_string(),
    })?;
    if let Some(vote) = vote {
        log.save_vote(&vote).await.map_err(|e| raft_err(&e))?;
    }
    log.save_committed(last).await.map_err(|e| raft_err(&e))?;
    drop(log);
    let _ = std::fs::remove_file(&kept);
    Ok(Recovered {
        node_id: id,
        last_log_index: last.map(|l| l.index).unwrap_or(0),
        replayed,
    })
}

/// Initializes a fresh cluster's group exactly once. Runs on every member at start;
/// the rule (also in the README):
///
/// * a member that holds a group (a log, a vote or a membership) does nothing;
/// * only the member whose address sorts first among the configured members (byte
///   order of the normalized `host:port`) may initialize, and only once every
///   configured member answers its identity and none of them holds a group; it then
///   makes all of them the voters;
/// * when some member already holds a group, this member's data is new (a fresh data
///   dir in an existing cluster): nothing is initialized, and the log says to add
///   this member with the admin API (`nacre raft add-member`).
///
/// Every other member waits for the leader's first append. Asks every 500 ms until
/// done or `cancel` fires.
pub async fn bootstrap(
    node: Arc<RaftNode>,
    mut members: Vec<String>,
    cancel: tokio_util::sync::CancellationToken,
) {
    members.sort();
    members.dedup();
    let first = members.first().is_some_and(|m| *m == node.addr);
    let mut hinted = false;
    loop {
        if node.is_initialized().await {
            return;
        }
        let mut identities = Vec::new();
        for addr in &members {
            if *addr == node.addr {
                identities.push(Some((addr.clone(), node.identity().await)));
            } else {
                identities.push(node.identity_of(addr).await.map(|i| (addr.clone(), i)));
            }
        }
        let answered: Vec<(String, Identity)> = identities.iter().flatten().cloned().collect();
        if answered.iter().any(|(_, i)| i.initialized) {
            if !hinted {
                tracing::warn!(
                    node_id = node.id,
                    addr = node.addr,
                    "this member holds no Raft data while the cluster's group exists: \
                     add it with `nacre raft add-member --address {}` (or the admin API)",
                    node.addr
                );
                hinted = true;
            }
        } else if first && answered.len() == members.len() {
            let voters: BTreeMap<NodeId, String> = answered
                .into_iter()
                .map(|(addr, i)| (i.node_id, addr))
                .collect();
            match node.initialize(voters.clone()).await {
                Ok(()) => {
                    tracing::info!(?voters, "raft group initialized with every member");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "raft group not initialized"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};
    use parking_lot::Mutex;

    use super::*;

    /// A domain that keeps the commands it applied, in order, with their entry's index
    /// and time.
    #[derive(Default)]
    struct Journal(Mutex<Vec<(u64, u64, Vec<u8>)>>);

    impl ReplicatedState for Journal {
        fn apply(&self, index: u64, at_ms: u64, command: &[u8]) -> Vec<u8> {
            self.0.lock().push((index, at_ms, command.to_vec()));
            index.to_be_bytes().to_vec()
        }

        fn snapshot(&self) -> SnapshotJob {
            let state = self.0.lock().clone();
            Box::new(move || postcard::to_allocvec(&state).unwrap_or_default())
        }

        fn restore(&self, _index: u64, data: &[u8]) -> Result<(), String> {
            *self.0.lock() = postcard::from_bytes(data).map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = LogStore::open(&dir.path().join("log.redb")).expect("log store");
            let sm = StateMachine::open(Arc::new(Journal::default()), dir.path())
                .expect("state machine");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage suite, on the redb log store and the state machine.
    #[test]
    fn openraft_storage_suite_passes() {
        if let Err(e) = Suite::test_all(Builder) {
            panic!("openraft storage suite: {e}");
        }
    }

    fn options(dir: &Path) -> RaftOptions {
        let mut options = RaftOptions::new(dir.to_path_buf(), "127.0.0.1:1".into(), None);
        options.snapshot_every = 50;
        options
    }

    /// Concurrent writes share log entries (group commit), each gets its own answer,
    /// and the commands of one entry are applied in order with the entry's index.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_committed_together_and_answered_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Arc::new(Journal::default());
        let node = RaftNode::open(options(dir.path()), journal.clone())
            .await
            .expect("open");
        let before = node.status().last_log_index;
        let writes: Vec<_> = (0..200u32)
            .map(|i| {
                let node = node.clone();
                tokio::spawn(async move { node.write(i.to_be_bytes().to_vec(), 7).await })
            })
            .collect();
        let mut answers = Vec::new();
        for w in writes {
            answers.push(w.await.expect("task").expect("write"));
        }
        let entries = node.status().last_log_index - before;
        assert!(entries < 200, "200 writes took {entries} entries");
        let applied = journal.0.lock().clone();
        assert_eq!(applied.len(), 200);
        // Each answer is the index of the entry its command went in.
        for (i, answer) in answers.iter().enumerate() {
            let at = applied
                .iter()
                .find(|(_, _, c)| *c == (i as u32).to_be_bytes())
                .expect("applied");
            assert_eq!(*answer, at.0.to_be_bytes().to_vec());
        }
        node.shutdown().await;
    }

    /// A one-member group keeps its committed writes across a restart, from the log
    /// and, after compaction, from the snapshot; the node id stays.
    #[tokio::test]
    async fn a_single_node_keeps_its_writes_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Arc::new(Journal::default());
        let node = RaftNode::open(options(dir.path()), journal.clone())
            .await
            .expect("open");
        let id = node.id();
        for i in 0..120u8 {
            let answer = node
                .write(vec![i], 1_000 + u64::from(i))
                .await
                .expect("write");
            assert_eq!(answer.len(), 8, "the domain's answer comes back");
        }
        node.shutdown().await;
        drop(node);
        let applied = journal.0.lock().clone();
        assert_eq!(applied.len(), 120);

        let again = Arc::new(Journal::default());
        let node = RaftNode::open(options(dir.path()), again.clone())
            .await
            .expect("reopen");
        assert_eq!(node.id(), id, "the node id is kept in the data dir");
        let status = node.status();
        assert!(
            status.snapshot_index > 0,
            "a snapshot was built: {status:?}"
        );
        assert_eq!(
            *again.0.lock(),
            applied,
            "snapshot plus log give back every write"
        );
        node.write(vec![200], 5_000).await.expect("writes resume");
        node.shutdown().await;
    }
}
