//! The Raft log, the vote and the committed log id, in one redb file
//! (`<data>/raft/log.redb`). redb commits with an fsync before `commit` returns, so an
//! append is reported flushed to openraft only once it is on disk (the pitfall of
//! `research/cluster.md` §5.7).
//!
//! Tables: `log` maps a log index to its entry (postcard), `meta` holds the vote, the
//! committed log id and the last purged log id (postcard, by name). redb is
//! synchronous; every call runs on tokio's blocking pool so that an fsync never stalls
//! a runtime thread.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, NodeId, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

/// The durable log store. Cheap to clone (one shared database handle).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

type StoreResult<T> = Result<T, StorageError<NodeId>>;

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AnyError> {
    postcard::to_allocvec(value).map_err(io_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AnyError> {
    postcard::from_bytes(bytes).map_err(io_err)
}

impl LogStore {
    /// Opens (or creates) the log at `path`.
    ///
    /// Errors when the file cannot be opened or created, or is not a redb file.
    pub fn open(path: &Path) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, AnyError> + Send + 'static,
        err: impl FnOnce(AnyError) -> StorageIOError<NodeId>,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || f(&db))
            .await
            .unwrap_or_else(|e| Err(io_err(e)));
        result.map_err(|e| StorageError::IO { source: err(e) })
    }

    fn read_meta<T: DeserializeOwned>(db: &Database, name: &str) -> Result<Option<T>, AnyError> {
        let txn = db.begin_read().map_err(io_err)?;
        let table = txn.open_table(META).map_err(io_err)?;
        match table.get(name).map_err(io_err)? {
            Some(bytes) => decode(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    fn write_meta<T: Serialize>(db: &Database, name: &str, value: &T) -> Result<(), AnyError> {
        let bytes = encode(value)?;
        let txn = db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(META).map_err(io_err)?;
            table.insert(name, bytes.as_slice()).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry>> {
        let (start, end) = bounds(&range);
        let Some(end) = end else {
            return Ok(Vec::new());
        };
        if end < start {
            return Ok(Vec::new());
        }
        self.blocking(
            move |db| {
                let txn = db.begin_read().map_err(io_err)?;
                let table = txn.open_table(LOG).map_err(io_err)?;
                let mut out = Vec::new();
                for row in table.range(start..=end).map_err(io_err)? {
                    let (_, value) = row.map_err(io_err)?;
                    out.push(decode::<Entry>(value.value())?);
                }
                Ok(out)
            },
            StorageIOError::read_logs,
        )
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        self.blocking(
            |db| {
                let purged: Option<LogId<NodeId>> = Self::read_meta(db, PURGED)?;
                let txn = db.begin_read().map_err(io_err)?;
                let table = txn.open_table(LOG).map_err(io_err)?;
                let last = match table.last().map_err(io_err)? {
                    Some((_, value)) => Some(decode::<Entry>(value.value())?.log_id),
                    None => purged,
                };
                Ok(LogState {
                    last_purged_log_id: purged,
                    last_log_id: last,
                })
            },
            StorageIOError::read_logs,
        )
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StoreResult<()> {
        let vote = *vote;
        self.blocking(
            move |db| Self::write_meta(db, VOTE, &vote),
            StorageIOError::write_vote,
        )
        .await
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<NodeId>>> {
        self.blocking(|db| Self::read_meta(db, VOTE), StorageIOError::read_vote)
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StoreResult<()> {
        self.blocking(
            move |db| Self::write_meta(db, COMMITTED, &committed),
            StorageIOError::write,
        )
        .await
    }

    async fn read_committed(&mut self) -> StoreResult<Option<LogId<NodeId>>> {
        self.blocking(
            |db| Ok(Self::read_meta::<Option<LogId<NodeId>>>(db, COMMITTED)?.flatten()),
            StorageIOError::read,
        )
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageError::IO {
                source: StorageIOError::write_log_entry(entry.log_id, e),
            })?;
            rows.push((entry.log_id.index, bytes));
        }
        let written = self
            .blocking(
                move |db| {
                    let txn = db.begin_write().map_err(io_err)?;
                    {
                        let mut table = txn.open_table(LOG).map_err(io_err)?;
                        for (index, bytes) in &rows {
                            table.insert(*index, bytes.as_slice()).map_err(io_err)?;
                        }
                    }
                    // Durability::Immediate (redb's default): fsynced when this returns.
                    txn.commit().map_err(io_err)
                },
                StorageIOError::write_logs,
            )
            .await;
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let from = log_id.index;
        self.blocking(
            move |db| {
                let txn = db.begin_write().map_err(io_err)?;
                {
                    let mut table = txn.open_table(LOG).map_err(io_err)?;
                    table.retain_in(from.., |_, _| false).map_err(io_err)?;
                }
                txn.commit().map_err(io_err)
            },
            StorageIOError::write_logs,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StoreResult<()> {
        let upto = log_id.index;
        self.blocking(
            move |db| {
                let bytes = encode(&log_id)?;
                let txn = db.begin_write().map_err(io_err)?;
                {
                    let mut meta = txn.open_table(META).map_err(io_err)?;
                    meta.insert(PURGED, bytes.as_slice()).map_err(io_err)?;
                    let mut table = txn.open_table(LOG).map_err(io_err)?;
                    table.retain_in(..=upto, |_, _| false).map_err(io_err)?;
                }
                txn.commit().map_err(io_err)
            },
            StorageIOError::write_logs,
        )
        .await
    }
}
