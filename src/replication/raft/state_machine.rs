//! openraft's state machine over a [`ReplicatedState`] domain, with the current
//! snapshot in a file (`<data>/raft/snapshot.bin`).
//!
//! The domain's state lives in memory (the registry); what makes it durable is the log
//! plus the snapshot file. At open the file is restored into the domain, and openraft
//! then re-applies the committed entries after it. A snapshot is captured from the
//! domain on the state machine's own task, between two applies (so it matches the last
//! applied log id exactly; the domain hands over immutable handles, cheaply), then
//! encoded and written (temporary file, fsync, rename, fsync of the directory) on a
//! blocking thread while applies go on; the log is purged behind it only after that.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Entry, Node, NodeId, ReplicatedState, SnapshotJob, TypeConfig};

/// The name of the snapshot file in the Raft directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

type StoreResult<T> = Result<T, StorageError<NodeId>>;

/// A snapshot as kept on disk and sent to a peer.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// openraft's description: last log id, membership, id.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// The domain's state ([`ReplicatedState::snapshot`]).
    pub data: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Applied {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
    current: Option<StoredSnapshot>,
    /// Snapshots built by this node, for distinct ids.
    built: u64,
}

/// The state machine. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    domain: Arc<dyn ReplicatedState>,
    dir: PathBuf,
    applied: Arc<Mutex<Applied>>,
}

fn any(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

impl StateMachine {
    /// A state machine over `domain` whose snapshot lives in `dir`; restores the
    /// snapshot file into the domain when there is one.
    ///
    /// Errors when the file exists but cannot be read or decoded, or the domain
    /// refuses it: starting without it would serve a state that lost data.
    pub fn open(domain: Arc<dyn ReplicatedState>, dir: &Path) -> Result<Self, AnyError> {
        let mut applied = Applied::default();
        let path = dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: StoredSnapshot = postcard::from_bytes(&bytes)
                    .map_err(|e| any(format!("{}: {e}", path.display())))?;
                let index = stored.meta.last_log_id.map(|l| l.index).unwrap_or(0);
                domain
                    .restore(index, &stored.data)
                    .map_err(|e| any(format!("{}: {e}", path.display())))?;
                applied.last = stored.meta.last_log_id;
                applied.membership = stored.meta.last_membership.clone();
                applied.current = Some(stored);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(any(format!("{}: {e}", path.display()))),
        }
        Ok(Self {
            domain,
            dir: dir.to_path_buf(),
            applied: Arc::new(Mutex::new(applied)),
        })
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.applied.lock().last
    }
}

/// Writes `snapshot` to `dir/snapshot.bin` durably: a temporary file, fsync, rename,
/// fsync of the directory.
fn persist(dir: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let bytes = postcard::to_allocvec(snapshot).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Builds one snapshot from state captured between two applies: the domain's encoding
/// job and the file writes run on a blocking thread, applies go on meanwhile.
pub struct Builder {
    pub(super) meta: SnapshotMeta<NodeId, Node>,
    /// Behind a lock only so that the builder is `Sync`, as openraft asks.
    job: Mutex<Option<SnapshotJob>>,
    dir: PathBuf,
    applied: Arc<Mutex<Applied>>,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let job = self.job.lock().take();
        let dir = self.dir.clone();
        let meta = self.meta.clone();
        let signature = meta.signature();
        let built = tokio::task::spawn_blocking(move || {
            let data = Arc::new(job.map(|job| job()).unwrap_or_default());
            let snapshot = StoredSnapshot { meta, data };
            persist(&dir, &snapshot).map(|()| snapshot)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| StorageError::IO {
            source: StorageIOError::write_snapshot(Some(signature), &e),
        })?;
        tracing::info!(
            last_log = ?built.meta.last_log_id,
            bytes = built.data.len(),
            "raft snapshot built"
        );
        self.applied.lock().current = Some(built.clone());
        Ok(Snapshot {
            meta: built.meta.clone(),
            snapshot: Box::new(Cursor::new((*built.data).clone())),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        let applied = self.applied.lock();
        Ok((applied.last, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Vec<Vec<u8>>>>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let response = match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => proposal
                    .commands
                    .iter()
                    .map(|c| self.domain.apply(entry.log_id.index, proposal.at_ms, c))
                    .collect(),
                EntryPayload::Membership(m) => {
                    self.applied.lock().membership =
                        StoredMembership::new(Some(entry.log_id), m.clone());
                    Vec::new()
                }
            };
            self.applied.lock().last = Some(entry.log_id);
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let job = self.domain.snapshot();
        let mut applied = self.applied.lock();
        applied.built += 1;
        let snapshot_id = match applied.last {
            Some(last) => format!("{}-{}-{}", last.leader_id, last.index, applied.built),
            None => format!("--{}", applied.built),
        };
        Builder {
            meta: SnapshotMeta {
                last_log_id: applied.last,
                last_membership: applied.membership.clone(),
                snapshot_id,
            },
            job: Mutex::new(Some(job)),
            dir: self.dir.clone(),
            applied: self.applied.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: Arc::new(snapshot.into_inner()),
        };
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        self.domain
            .restore(index, &stored.data)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::read_snapshot(Some(meta.signature()), any(e)),
            })?;
        let dir = self.dir.clone();
        let to_write = stored.clone();
        tokio::task::spawn_blocking(move || persist(&dir, &to_write))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_snapshot(Some(meta.signature()), &e),
            })?;
        let mut applied = self.applied.lock();
        applied.last = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        applied.current = Some(stored);
        tracing::info!(last_log = ?meta.last_log_id, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.applied.lock().current.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new((*s.data).clone())),
        }))
    }
}
