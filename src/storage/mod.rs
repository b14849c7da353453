//! The config center's durable record, through sqlx: SQLite embedded (the default, a
//! file in the data dir) or MySQL/MariaDB, with Nacos's table and column names
//! (`config_info`, `his_config_info`, `config_info_beta`, `config_info_tag`,
//! `config_tags_relation`, `tenant_info`). Schemas are in `migrations/sqlite` and
//! `migrations/mysql`, applied at start.
//!
//! One [`ConfigStore`] serves both databases: the SQL is the same text for both (both
//! take `?` placeholders), and [`with_pool!`] expands each body once per backend. No
//! business rule lives here; callers validate and serialize writes per key.
//!
//! SQLite: one connection writes (so a write transaction never meets `SQLITE_BUSY` on
//! lock upgrade), several read; WAL journal, `synchronous` from the settings.
//!
//! Times are UTC `DATETIME`s; `tenant_info` keeps milliseconds, as Nacos. Unsigned
//! columns of Nacos's MySQL schema (`his_config_info.id`, `.nid`) are read through
//! `CAST(... AS SIGNED)` so one decoder serves both databases.

pub mod auth;
pub mod config;
pub mod namespace;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlQueryResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use thiserror::Error;

pub use crate::model::{Page, PageRequest};
use crate::settings::ConfigStoreSettings;

/// Errors of the store. Every one is a server-side failure (HTTP 500).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The schema could not be applied.
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The transaction of a group commit failed; nothing of it was stored.
    #[error("database error: {0}")]
    Batch(String),
    /// The store was closed.
    #[error("the config store is closed")]
    Closed,
    /// A compare-and-set publish found another MD5 than its `casMd5`; nothing was
    /// written.
    #[error("Cas publish fail, server md5 may have changed.")]
    CasConflict,
    /// The database file could not be created or its mode set.
    #[error("cannot create or protect the database file {path}")]
    Files {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A queued publish and where its outcome goes.
type PublishJob = (
    config::PublishRecord,
    tokio::sync::oneshot::Sender<Result<config::Published, StoreError>>,
);

/// Most publishes committed in one transaction. Every batch size has its own SQL text,
/// so the prepared-statement cache holds [`STATEMENT_CACHE`] statements: enough for
/// the three multi-row statements of every size up to this one.
const MAX_BATCH: usize = 64;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 512;

/// The two backends.
#[derive(Clone, Debug)]
enum Backend {
    /// SQLite: `write` has one connection, `read` several.
    Sqlite { read: SqlitePool, write: SqlitePool },
    /// MySQL or MariaDB.
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool for reading (`read`) or
/// writing (`write`); the body is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, read, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::storage::Backend::Sqlite { read: $pool, .. } => $body,
            $crate::storage::Backend::MySql($pool) => $body,
        }
    };
    ($store:expr, write, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::storage::Backend::Sqlite { write: $pool, .. } => $body,
            $crate::storage::Backend::MySql($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// The id of the row an `INSERT` created, for either backend.
pub(crate) trait LastInsertId {
    fn last_id(&self) -> i64;
}

impl LastInsertId for SqliteQueryResult {
    fn last_id(&self) -> i64 {
        self.last_insert_rowid()
    }
}

impl LastInsertId for MySqlQueryResult {
    fn last_id(&self) -> i64 {
        i64::try_from(self.last_insert_id()).unwrap_or(i64::MAX)
    }
}

/// The config database.
#[derive(Clone, Debug)]
pub struct ConfigStore {
    backend: Backend,
    /// Queue of the group-commit writer (see [`ConfigStore::publish`]).
    publisher: tokio::sync::mpsc::Sender<PublishJob>,
}

impl ConfigStore {
    /// Opens (creating and migrating) the database of `settings`: SQLite in
    /// `<data_dir>/nacre.db` when the URL is empty.
    pub async fn open(settings: &ConfigStoreSettings, data_dir: &Path) -> Result<Self, StoreError> {
        let url = settings.url.trim();
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = sqlx::mysql::MySqlConnectOptions::from_str(url)?
                .statement_cache_capacity(STATEMENT_CACHE);
            let pool = MySqlPoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            sqlx::migrate!("migrations/mysql").run(&pool).await?;
            return Ok(Self::with_writer(Backend::MySql(pool)));
        }
        let options = if url.is_empty() {
            SqliteConnectOptions::new().filename(data_dir.join("nacre.db"))
        } else {
            SqliteConnectOptions::from_str(url)?
        };
        let synchronous = if settings.sqlite_synchronous == "normal" {
            SqliteSynchronous::Normal
        } else {
            SqliteSynchronous::Full
        };
        owner_only_files(options.get_filename())?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .statement_cache_capacity(STATEMENT_CACHE)
            // LIKE is case-sensitive, as on MySQL with Nacos's utf8_bin collation.
            .pragma("case_sensitive_like", "ON");
        // An embedded database has no connection to lose: no ping before each use
        // (for SQLite a ping is one more round trip to the connection's thread).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self::with_writer(Backend::Sqlite { read, write }))
    }

    /// Starts the group-commit writer. It holds only the backend, so it ends once
    /// every `ConfigStore` clone (every sender) is gone.
    fn with_writer(backend: Backend) -> Self {
        let (publisher, mut queue) = tokio::sync::mpsc::channel::<PublishJob>(4 * MAX_BATCH);
        let (writer_tx, _) = tokio::sync::mpsc::channel(1);
        let writer = ConfigStore {
            backend: backend.clone(),
            publisher: writer_tx,
        };
        tokio::spawn(async move {
            let mut jobs: Vec<PublishJob> = Vec::with_capacity(MAX_BATCH);
            while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
                let (records, replies): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
                match writer.publish_batch(&records).await {
                    Ok(done) => {
                        for (reply, outcome) in replies.into_iter().zip(done) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, batch = records.len(), "publish batch failed");
                        let message = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Batch(message.clone())));
                        }
                    }
                }
            }
        });
        Self { backend, publisher }
    }

    /// Which database this is: `sqlite` or `mysql`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::MySql(_) => "mysql",
        }
    }

    /// Closes every connection (waits for checked-out ones).
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::MySql(pool) => pool.close().await,
        }
    }
}

/// Makes the SQLite database at `path` readable by its owner only (0600), creating it
/// empty when missing: it holds password hashes and every config. SQLite creates the
/// `-wal` and `-shm` files with the database's mode; existing ones are tightened too.
fn owner_only_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(());
    }
    let io = |source| StoreError::Files {
        path: path.display().to_string(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = Path::new(&file);
        if file.exists() {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

/// A text column. Read as bytes because MySQL flags columns with a `_bin` collation
/// (Nacos's `utf8_bin`) as BINARY, and sqlx then refuses to decode them as `String`.
pub(crate) fn text<R: sqlx::Row>(row: &R, column: &str) -> Result<String, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let bytes: Vec<u8> = row.try_get(column)?;
    utf8(column, bytes)
}

/// A nullable text column (see [`text`]).
pub(crate) fn opt_text<R: sqlx::Row>(row: &R, column: &str) -> Result<Option<String>, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes.map(|b| utf8(column, b)).transpose()
}

fn utf8(column: &str, bytes: Vec<u8>) -> Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(e),
    })
}

/// A stored time as bound in statements: `YYYY-MM-DD HH:MM:SS.fff`, which SQLite keeps
/// as text and MySQL parses into `DATETIME`. Formatted once per statement instead of
/// once per bound value.
pub(crate) fn sql_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Now, as stored in `DATETIME` columns (UTC, millisecond precision).
pub(crate) fn now() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond_millis()
}

trait MillisPrecision {
    fn with_nanosecond_millis(self) -> Self;
}

impl MillisPrecision for NaiveDateTime {
    fn with_nanosecond_millis(self) -> Self {
        use chrono::Timelike;
        let ms = self.nanosecond() / 1_000_000 * 1_000_000;
        self.with_nanosecond(ms).unwrap_or(self)
    }
}

/// Milliseconds since the epoch of a stored UTC time.
pub fn millis(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}
