//! Config rows: `config_info` with its history (`his_config_info`) and tags
//! (`config_tags_relation`), beta rows (`config_info_beta`) and tag versions
//! (`config_info_tag`).
//!
//! A formal publish or delete writes its `config_info` change and its history row in
//! one transaction, as Nacos `ExternalConfigInfoPersistServiceImpl`: an insert writes
//! an `I` row with the new content, an update a `U` row with the **previous** content,
//! a delete a `D` row with the deleted content.

use chrono::NaiveDateTime;
use sqlx::Row;

use super::{
    ConfigStore, LastInsertId, Page, PageRequest, StoreError, millis, now, opt_text, text,
    with_pool,
};
use crate::model::config::ConfigKey;
pub use crate::model::config::{HistoryRow, PublishRecord, SearchFilter};

/// A config as loaded into the cache.
#[derive(Clone, Debug)]
pub struct StoredConfig {
    /// `config_info.id`.
    pub id: i64,
    /// Identity.
    pub key: ConfigKey,
    /// Content.
    pub content: String,
    /// MD5 of the content.
    pub md5: String,
    /// Type (`text`, `yaml`, …).
    pub config_type: String,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
    /// `encrypted_data_key` (2.x), usually empty.
    pub encrypted_data_key: String,
}

/// A beta (gray) version: content served only to `beta_ips`.
#[derive(Clone, Debug)]
pub struct StoredBeta {
    /// `config_info_beta.id`.
    pub id: i64,
    /// Identity.
    pub key: ConfigKey,
    /// Content.
    pub content: String,
    /// MD5 of the content.
    pub md5: String,
    /// Comma-separated client IPs.
    pub beta_ips: String,
    /// App name.
    pub app_name: Option<String>,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
    /// Creation, ms since the epoch.
    pub created_ms: i64,
    /// `encrypted_data_key`.
    pub encrypted_data_key: String,
}

/// A tag version: content served to clients that ask for the tag.
#[derive(Clone, Debug)]
pub struct StoredTag {
    /// `config_info_tag.id`.
    pub id: i64,
    /// Identity of the config.
    pub key: ConfigKey,
    /// The tag.
    pub tag: String,
    /// Content.
    pub content: String,
    /// MD5 of the content.
    pub md5: String,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
}

/// Everything stored about a config (`ConfigAllInfo`).
#[derive(Clone, Debug, Default)]
pub struct ConfigDetail {
    /// `config_info.id`.
    pub id: i64,
    /// Identity.
    pub key: ConfigKey,
    /// Content.
    pub content: String,
    /// MD5 of the content.
    pub md5: String,
    /// App name.
    pub app_name: Option<String>,
    /// Type.
    pub config_type: Option<String>,
    /// Creation, ms since the epoch.
    pub created_ms: i64,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
    /// Who published it.
    pub src_user: Option<String>,
    /// From which IP.
    pub src_ip: Option<String>,
    /// `c_desc`.
    pub desc: Option<String>,
    /// `c_use`.
    pub usage: Option<String>,
    /// `effect`.
    pub effect: Option<String>,
    /// `c_schema`.
    pub schema: Option<String>,
    /// Tags from `config_tags_relation`, comma-separated.
    pub config_tags: Option<String>,
    /// `encrypted_data_key`.
    pub encrypted_data_key: String,
}

/// The outcome of a formal publish.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    /// `config_info.id`.
    pub id: i64,
    /// The stored modification time, ms since the epoch.
    pub modified_ms: i64,
}

/// A search result row (`ConfigInfo`).
#[derive(Clone, Debug)]
pub struct ConfigRow {
    /// `config_info.id`.
    pub id: i64,
    /// Identity.
    pub key: ConfigKey,
    /// Content.
    pub content: String,
    /// App name.
    pub app_name: Option<String>,
    /// Type.
    pub config_type: Option<String>,
    /// `c_desc`.
    pub desc: Option<String>,
    /// `encrypted_data_key`.
    pub encrypted_data_key: String,
}

/// How many times a publish batch that MySQL chose as a deadlock victim runs again.
const DEADLOCK_RETRIES: u32 = 3;

const FORMAL_COLUMNS: &str =
    "id, data_id, group_id, tenant_id, content, md5, type, gmt_modified, encrypted_data_key";
const HISTORY_COLUMNS: &str = "CAST(nid AS SIGNED) AS nid, CAST(id AS SIGNED) AS id, data_id, group_id, tenant_id, app_name, src_ip, src_user, op_type, gmt_create, gmt_modified, encrypted_data_key";

fn key_of<R: Row>(row: &R) -> Result<ConfigKey, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let data_id: Option<String> = opt_text(row, "data_id")?;
    let group: Option<String> = opt_text(row, "group_id")?;
    let tenant: Option<String> = opt_text(row, "tenant_id")?;
    Ok(ConfigKey {
        data_id: data_id.unwrap_or_default(),
        group: group.unwrap_or_default(),
        tenant: tenant.unwrap_or_default(),
    })
}

/// The WHERE clause that selects one config's rows, or none.
fn key_clause(key: Option<&ConfigKey>) -> &'static str {
    match key {
        Some(_) => " WHERE data_id = ? AND group_id = ? AND tenant_id = ?",
        None => "",
    }
}

/// Binds `key`'s parts for [`key_clause`].
fn bind_key<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    key: Option<&'q ConfigKey>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match key {
        Some(k) => query.bind(&k.data_id).bind(&k.group).bind(&k.tenant),
        None => query,
    }
}

/// Appends the WHERE clause of a search and its bound values.
fn search_clause(filter: &SearchFilter, sql: &mut String, binds: &mut Vec<String>) {
    sql.push_str(" WHERE tenant_id = ?");
    binds.push(filter.tenant.clone());
    for (column, value) in [
        ("data_id", &filter.data_id),
        ("group_id", &filter.group),
        ("app_name", &filter.app_name),
    ] {
        if value.is_empty() {
            continue;
        }
        if filter.blur {
            sql.push_str(&format!(" AND {column} LIKE ?"));
            binds.push(value.replace('*', "%"));
        } else {
            sql.push_str(&format!(" AND {column} = ?"));
            binds.push(value.clone());
        }
    }
    if !filter.tags.is_empty() {
        let marks = vec!["?"; filter.tags.len()].join(",");
        sql.push_str(&format!(
            " AND id IN (SELECT id FROM config_tags_relation WHERE tag_name IN ({marks}))"
        ));
        binds.extend(filter.tags.iter().cloned());
    }
}

impl ConfigStore {
    /// Every formal config, for the cache at start.
    pub async fn load_configs(&self) -> Result<Vec<StoredConfig>, StoreError> {
        self.configs_where(None).await
    }

    /// The formal config of `key` (none or one), as [`ConfigStore::load_configs`].
    pub async fn config_of(&self, key: &ConfigKey) -> Result<Vec<StoredConfig>, StoreError> {
        self.configs_where(Some(key)).await
    }

    async fn configs_where(
        &self,
        key: Option<&ConfigKey>,
    ) -> Result<Vec<StoredConfig>, StoreError> {
        let sql = format!(
            "SELECT {FORMAL_COLUMNS} FROM config_info{}",
            key_clause(key)
        );
        with_pool!(self, read, pool => {
            let rows = bind_key(sqlx::query(&sql), key).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let md5: Option<String> = opt_text(&row, "md5")?;
                let content: String = text(&row, "content")?;
                let modified: NaiveDateTime = row.try_get("gmt_modified")?;
                let config_type: Option<String> = opt_text(&row, "type")?;
                out.push(StoredConfig {
                    id: row.try_get("id")?,
                    key: key_of(&row)?,
                    md5: md5.unwrap_or_else(|| crate::model::config::content_md5(&content)),
                    content,
                    config_type: config_type.unwrap_or_else(|| "text".into()),
                    modified_ms: millis(modified),
                    encrypted_data_key: text(&row, "encrypted_data_key")?,
                });
            }
            Ok(out)
        })
    }

    /// Every beta version, for the cache at start.
    pub async fn load_betas(&self) -> Result<Vec<StoredBeta>, StoreError> {
        self.betas_where(None).await
    }

    /// The beta version of `key` (none or one).
    pub async fn beta_of(&self, key: &ConfigKey) -> Result<Vec<StoredBeta>, StoreError> {
        self.betas_where(Some(key)).await
    }

    async fn betas_where(&self, key: Option<&ConfigKey>) -> Result<Vec<StoredBeta>, StoreError> {
        let sql = format!(
            "SELECT id, data_id, group_id, tenant_id, content, md5, beta_ips, app_name, \
             gmt_create, gmt_modified, encrypted_data_key FROM config_info_beta{}",
            key_clause(key)
        );
        with_pool!(self, read, pool => {
            let rows = bind_key(sqlx::query(&sql), key).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let md5: Option<String> = opt_text(&row, "md5")?;
                let content: String = text(&row, "content")?;
                let beta_ips: Option<String> = opt_text(&row, "beta_ips")?;
                let created: NaiveDateTime = row.try_get("gmt_create")?;
                let modified: NaiveDateTime = row.try_get("gmt_modified")?;
                out.push(StoredBeta {
                    id: row.try_get("id")?,
                    key: key_of(&row)?,
                    md5: md5.unwrap_or_else(|| crate::model::config::content_md5(&content)),
                    content,
                    beta_ips: beta_ips.unwrap_or_default(),
                    app_name: opt_text(&row, "app_name")?,
                    created_ms: millis(created),
                    modified_ms: millis(modified),
                    encrypted_data_key: text(&row, "encrypted_data_key")?,
                });
            }
            Ok(out)
        })
    }

    /// Every tag version, for the cache at start.
    pub async fn load_tags(&self) -> Result<Vec<StoredTag>, StoreError> {
        self.tags_where(None).await
    }

    /// The tag versions of `key`.
    pub async fn tags_of(&self, key: &ConfigKey) -> Result<Vec<StoredTag>, StoreError> {
        self.tags_where(Some(key)).await
    }

    /// The keys of every config whose formal, beta or tag version changed at or after
    /// `since_ms` (ms since the epoch), or that was deleted since (its history row):
    /// what a cluster member reloads in case it missed a peer's notice.
    pub async fn changed_since(&self, since_ms: i64) -> Result<Vec<ConfigKey>, StoreError> {
        let since = chrono::DateTime::from_timestamp_millis(since_ms)
            .map(|t| t.naive_utc())
            .unwrap_or_default();
        let sql = "SELECT data_id, group_id, tenant_id FROM config_info WHERE gmt_modified >= ? \
                   UNION SELECT data_id, group_id, tenant_id FROM config_info_beta WHERE gmt_modified >= ? \
                   UNION SELECT data_id, group_id, tenant_id FROM config_info_tag WHERE gmt_modified >= ? \
                   UNION SELECT data_id, group_id, tenant_id FROM his_config_info WHERE gmt_modified >= ?";
        with_pool!(self, read, pool => {
            let rows = sqlx::query(sql)
                .bind(since)
                .bind(since)
                .bind(since)
                .bind(since)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(key_of(&row)?);
            }
            Ok(out)
        })
    }

    async fn tags_where(&self, key: Option<&ConfigKey>) -> Result<Vec<StoredTag>, StoreError> {
        let sql = format!(
            "SELECT id, data_id, group_id, tenant_id, tag_id, content, md5, gmt_modified \
             FROM config_info_tag{}",
            key_clause(key)
        );
        with_pool!(self, read, pool => {
            let rows = bind_key(sqlx::query(&sql), key).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let md5: Option<String> = opt_text(&row, "md5")?;
                let content: String = text(&row, "content")?;
                let modified: NaiveDateTime = row.try_get("gmt_modified")?;
                out.push(StoredTag {
                    id: row.try_get("id")?,
                    key: key_of(&row)?,
                    tag: text(&row, "tag_id")?,
                    md5: md5.unwrap_or_else(|| crate::model::config::content_md5(&content)),
                    content,
                    modified_ms: millis(modified),
                });
            }
            Ok(out)
        })
    }

    /// Inserts or updates a config and writes its history row, in one transaction.
    ///
    /// Concurrent publishes are committed together (group commit): they queue for the
    /// one writer, which runs each waiting batch in one transaction, so a batch costs
    /// one commit (and one log sync) however many publishes it holds. Each caller is
    /// answered after its batch committed; if the batch fails, every publish in it
    /// fails and none is stored.
    pub async fn publish(&self, rec: PublishRecord) -> Result<Published, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.publisher
            .send((rec, tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Publishes a batch in one transaction (see [`ConfigStore::publish`]) with a
    /// fixed number of statements whatever its size: read the current rows, upsert
    /// every config (`ON CONFLICT` / `ON DUPLICATE KEY`), read the ids of new ones,
    /// insert every history row. Keys in a batch are distinct (callers serialize
    /// writes per key). Tags are rare and written per record.
    ///
    /// A record with `cas_md5` is checked against the row read in the same
    /// transaction under a write lock (SQLite takes the database's at `BEGIN
    /// IMMEDIATE`; MySQL locks that key's row alone with `SELECT … FOR UPDATE` by its
    /// whole unique key), so no other writer can change the row between the check and
    /// the write. A record that fails its check gets [`StoreError::CasConflict`] and
    /// writes nothing; the others go on.
    ///
    /// A transaction that MySQL chose as a deadlock victim (error 1213, SQLSTATE
    /// 40001) wrote nothing and is run again, up to [`DEADLOCK_RETRIES`] times.
    pub(crate) async fn publish_batch(
        &self,
        all: &[PublishRecord],
    ) -> Result<Vec<Result<Published, StoreError>>, StoreError> {
        let mut tries = 0;
        loop {
            match self.publish_batch_once(all).await {
                Err(StoreError::Sql(sqlx::Error::Database(e)))
                    if e.code().as_deref() == Some("40001") && tries < DEADLOCK_RETRIES =>
                {
                    tries += 1;
                    tracing::warn!(error = %e, tries, "publish batch was a deadlock victim; running it again");
                }
                outcome => return outcome,
            }
        }
    }

    async fn publish_batch_once(
        &self,
        all: &[PublishRecord],
    ) -> Result<Vec<Result<Published, StoreError>>, StoreError> {
        const COLUMNS: &str = "data_id, group_id, tenant_id, content, md5, src_ip, src_user, \
            gmt_create, gmt_modified, app_name, c_desc, c_use, effect, type, c_schema, \
            encrypted_data_key";
        const UPDATED: [&str; 12] = [
            "content",
            "md5",
            "src_ip",
            "src_user",
            "gmt_modified",
            "app_name",
            "c_desc",
            "c_use",
            "effect",
            "type",
            "c_schema",
            "encrypted_data_key",
        ];
        let at = now();
        let at_text = super::sql_time(at);
        let marks = |n: usize, per: usize| {
            let one = format!("({})", vec!["?"; per].join(", "));
            vec![one; n].join(", ")
        };
        let (begin, lock) = self.locking();
        const READ: &str = "SELECT id, data_id, group_id, tenant_id, content, md5, app_name, \
            encrypted_data_key FROM config_info WHERE";
        let ids_sql = |n: usize| format!("{READ} data_id IN ({})", vec!["?"; n].join(", "));
        let statements = |records: &[&PublishRecord]| {
            let upsert_sql = {
                let head = format!(
                    "INSERT INTO config_info ({COLUMNS}) VALUES {}",
                    marks(records.len(), 16)
                );
                match self.backend {
                    super::Backend::Sqlite { .. } => format!(
                        "{head} ON CONFLICT (data_id, group_id, tenant_id) DO UPDATE SET {}",
                        UPDATED.map(|c| format!("{c} = excluded.{c}")).join(", ")
                    ),
                    super::Backend::MySql(_) => format!(
                        "{head} ON DUPLICATE KEY UPDATE {}",
                        UPDATED.map(|c| format!("{c} = VALUES({c})")).join(", ")
                    ),
                }
            };
            let history_sql = format!(
                "INSERT INTO his_config_info (id, data_id, group_id, tenant_id, app_name, content, \
             md5, src_ip, src_user, gmt_create, gmt_modified, op_type, encrypted_data_key) VALUES {}",
                marks(records.len(), 13)
            );
            (upsert_sql, history_sql)
        };
        /// The current row of a key: id, content, md5, app name, data key.
        type Old = (i64, String, Option<String>, Option<String>, String);
        with_pool!(self, write, pool => {
            let mut tx = pool.begin_with(begin).await?;
            // MySQL: lock the rows of compare-and-set keys first, by their whole
            // unique key (other keys' rows stay unlocked); the plain read after them
            // then sees no older version of those rows.
            let cas: Vec<&PublishRecord> = all.iter().filter(|r| r.cas_md5.is_some()).collect();
            let locked_sql = (!lock.is_empty() && !cas.is_empty()).then(|| {
                let one = "(data_id = ? AND group_id = ? AND tenant_id = ?)";
                format!("{READ} {}{lock}", vec![one; cas.len()].join(" OR "))
            });
            let mut locked = Vec::new();
            if let Some(sql) = &locked_sql {
                let mut q = sqlx::query(sql);
                for rec in &cas {
                    q = q.bind(&rec.key.data_id).bind(&rec.key.group).bind(&rec.key.tenant);
                }
                locked = q.fetch_all(&mut *tx).await?;
            }
            let read_sql = ids_sql(all.len());
            let mut q = sqlx::query(&read_sql);
            for rec in all {
                q = q.bind(&rec.key.data_id);
            }
            let mut old: std::collections::HashMap<ConfigKey, Old> = std::collections::HashMap::new();
            for row in q.fetch_all(&mut *tx).await?.into_iter().chain(locked) {
                old.insert(
                    key_of(&row)?,
                    (
                        row.try_get("id")?,
                        text(&row, "content")?,
                        opt_text(&row, "md5")?,
                        opt_text(&row, "app_name")?,
                        text(&row, "encrypted_data_key")?,
                    ),
                );
            }
            // Compare-and-set against the rows just read under the write lock.
            let passes = |rec: &PublishRecord| match old.get(&rec.key) {
                Some((_, _, md5, _, _)) => cas_passes(rec.cas_md5.as_deref(), md5.clone()),
                None => true,
            };
            let records: Vec<&PublishRecord> = all.iter().filter(|r| passes(r)).collect();
            if records.is_empty() {
                tx.rollback().await?;
                return Ok(all.iter().map(|_| Err(StoreError::CasConflict)).collect());
            }
            let (upsert_sql, history_sql) = statements(&records);
            let mut q = sqlx::query(&upsert_sql);
            for rec in &records {
                let app = rec
                    .app_name
                    .clone()
                    .or_else(|| old.get(&rec.key).and_then(|o| o.3.clone()));
                q = q
                    .bind(&rec.key.data_id)
                    .bind(&rec.key.group)
                    .bind(&rec.key.tenant)
                    .bind(&rec.content)
                    .bind(&rec.md5)
                    .bind(&rec.src_ip)
                    .bind(&rec.src_user)
                    .bind(&at_text)
                    .bind(&at_text)
                    .bind(app)
                    .bind(&rec.desc)
                    .bind(&rec.usage)
                    .bind(&rec.effect)
                    .bind(&rec.config_type)
                    .bind(&rec.schema)
                    .bind(&rec.encrypted_data_key);
            }
            q.execute(&mut *tx).await?;
            let mut new_ids: std::collections::HashMap<ConfigKey, i64> = std::collections::HashMap::new();
            if records.iter().any(|r| !old.contains_key(&r.key)) {
                let new_ids_sql = ids_sql(records.len());
                let mut q = sqlx::query(&new_ids_sql);
                for rec in &records {
                    q = q.bind(&rec.key.data_id);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    new_ids.insert(key_of(&row)?, row.try_get("id")?);
                }
            }
            let mut out = Vec::with_capacity(records.len());
            let mut q = sqlx::query(&history_sql);
            for rec in &records {
                // I rows hold the new content, U rows the content they replace.
                let (id, content, md5, app, data_key, op) = match old.get(&rec.key) {
                    Some((id, content, md5, app, data_key)) => {
                        (*id, content.as_str(), md5.clone(), app.clone(), data_key.as_str(), "U")
                    }
                    None => {
                        let id = new_ids.get(&rec.key).copied().ok_or_else(|| {
                            sqlx::Error::RowNotFound
                        })?;
                        (id, rec.content.as_str(), Some(rec.md5.clone()), rec.app_name.clone(),
                         rec.encrypted_data_key.as_str(), "I")
                    }
                };
                q = q
                    .bind(id)
                    .bind(&rec.key.data_id)
                    .bind(&rec.key.group)
                    .bind(&rec.key.tenant)
                    .bind(app)
                    .bind(content)
                    .bind(md5)
                    .bind(&rec.src_ip)
                    .bind(&rec.src_user)
                    .bind(&at_text)
                    .bind(&at_text)
                    .bind(op)
                    .bind(data_key);
                out.push(Published { id, modified_ms: super::millis(at) });
            }
            q.execute(&mut *tx).await?;
            for (rec, done) in records.iter().zip(&out) {
                let Some(tags) = &rec.config_tags else { continue };
                sqlx::query("DELETE FROM config_tags_relation WHERE id = ?")
                    .bind(done.id)
                    .execute(&mut *tx)
                    .await?;
                for tag in tags {
                    sqlx::query(
                        "INSERT INTO config_tags_relation (id, tag_name, tag_type, data_id, \
                         group_id, tenant_id) VALUES (?, ?, NULL, ?, ?, ?)",
                    )
                    .bind(done.id)
                    .bind(tag)
                    .bind(&rec.key.data_id)
                    .bind(&rec.key.group)
                    .bind(&rec.key.tenant)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            let mut done = out.into_iter();
            Ok(all
                .iter()
                .map(|rec| match passes(rec) {
                    true => done.next().ok_or(StoreError::Closed),
                    false => Err(StoreError::CasConflict),
                })
                .collect())
        })
    }

    /// Deletes a config and writes its `D` history row, in one transaction. Returns
    /// whether it existed.
    pub async fn remove(
        &self,
        key: &ConfigKey,
        src_ip: &str,
        src_user: Option<&str>,
    ) -> Result<bool, StoreError> {
        let at = now();
        with_pool!(self, write, pool => {
            let mut tx = pool.begin().await?;
            let old = sqlx::query(
                "SELECT id, content, md5, app_name, encrypted_data_key FROM config_info \
                 WHERE data_id = ? AND group_id = ? AND tenant_id = ?",
            )
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = old else {
                return Ok(false);
            };
            let id: i64 = row.try_get("id")?;
            let content: String = text(&row, "content")?;
            let md5: Option<String> = opt_text(&row, "md5")?;
            let app: Option<String> = opt_text(&row, "app_name")?;
            let data_key: String = text(&row, "encrypted_data_key")?;
            sqlx::query("DELETE FROM config_info WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM config_tags_relation WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO his_config_info (id, data_id, group_id, tenant_id, app_name, \
                 content, md5, src_ip, src_user, gmt_create, gmt_modified, op_type, \
                 encrypted_data_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'D', ?)",
            )
            .bind(id)
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .bind(&app)
            .bind(&content)
            .bind(&md5)
            .bind(src_ip)
            .bind(src_user)
            .bind(at)
            .bind(at)
            .bind(&data_key)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The keys of the configs with these ids (for delete by ids).
    pub async fn keys_by_ids(&self, ids: &[i64]) -> Result<Vec<ConfigKey>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(",");
        let sql =
            format!("SELECT data_id, group_id, tenant_id FROM config_info WHERE id IN ({marks})");
        with_pool!(self, read, pool => {
            let mut q = sqlx::query(&sql);
            for id in ids {
                q = q.bind(*id);
            }
            let rows = q.fetch_all(pool).await?;
            rows.iter().map(|r| key_of(r).map_err(StoreError::from)).collect()
        })
    }

    /// Everything about one config, with its tags (`show=all`, catalog).
    pub async fn detail(&self, key: &ConfigKey) -> Result<Option<ConfigDetail>, StoreError> {
        with_pool!(self, read, pool => {
            let row = sqlx::query(
                "SELECT id, data_id, group_id, tenant_id, content, md5, app_name, type, \
                 gmt_create, gmt_modified, src_user, src_ip, c_desc, c_use, effect, c_schema, \
                 encrypted_data_key FROM config_info \
                 WHERE data_id = ? AND group_id = ? AND tenant_id = ?",
            )
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let id: i64 = row.try_get("id")?;
            let tags = sqlx::query("SELECT tag_name FROM config_tags_relation WHERE id = ? ORDER BY nid")
                .bind(id)
                .fetch_all(pool)
                .await?;
            let mut names = Vec::with_capacity(tags.len());
            for t in &tags {
                names.push(text(t, "tag_name")?);
            }
            let created: NaiveDateTime = row.try_get("gmt_create")?;
            let modified: NaiveDateTime = row.try_get("gmt_modified")?;
            let md5: Option<String> = opt_text(&row, "md5")?;
            Ok(Some(ConfigDetail {
                id,
                key: key_of(&row)?,
                content: text(&row, "content")?,
                md5: md5.unwrap_or_default(),
                app_name: opt_text(&row, "app_name")?,
                config_type: opt_text(&row, "type")?,
                created_ms: millis(created),
                modified_ms: millis(modified),
                src_user: opt_text(&row, "src_user")?,
                src_ip: opt_text(&row, "src_ip")?,
                desc: opt_text(&row, "c_desc")?,
                usage: opt_text(&row, "c_use")?,
                effect: opt_text(&row, "effect")?,
                schema: opt_text(&row, "c_schema")?,
                config_tags: (!names.is_empty()).then(|| names.join(",")),
                encrypted_data_key: text(&row, "encrypted_data_key")?,
            }))
        })
    }

    /// A page of configs matching `filter`, ordered by id.
    pub async fn search(
        &self,
        filter: &SearchFilter,
        page: PageRequest,
    ) -> Result<Page<ConfigRow>, StoreError> {
        let mut clause = String::new();
        let mut binds = Vec::new();
        search_clause(filter, &mut clause, &mut binds);
        let count_sql = format!("SELECT COUNT(*) AS n FROM config_info{clause}");
        let page_sql = format!(
            "SELECT id, data_id, group_id, tenant_id, content, app_name, type, c_desc, \
             encrypted_data_key FROM config_info{clause} ORDER BY id LIMIT ? OFFSET ?"
        );
        with_pool!(self, read, pool => {
            let mut q = sqlx::query(&count_sql);
            for b in &binds {
                q = q.bind(b);
            }
            let total: i64 = q.fetch_one(pool).await?.try_get("n")?;
            let mut q = sqlx::query(&page_sql);
            for b in &binds {
                q = q.bind(b);
            }
            let rows = q.bind(page.limit()).bind(page.offset()).fetch_all(pool).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(ConfigRow {
                    id: row.try_get("id")?,
                    key: key_of(&row)?,
                    content: text(&row, "content")?,
                    app_name: opt_text(&row, "app_name")?,
                    config_type: opt_text(&row, "type")?,
                    desc: opt_text(&row, "c_desc")?,
                    encrypted_data_key: text(&row, "encrypted_data_key")?,
                });
            }
            Ok(Page { total, request: page, items })
        })
    }

    /// Configs for export: those of `tenant` matching the optional filters, or the ids.
    pub async fn export_rows(
        &self,
        filter: &SearchFilter,
        ids: &[i64],
    ) -> Result<Vec<ConfigRow>, StoreError> {
        let mut clause = String::new();
        let mut binds = Vec::new();
        if ids.is_empty() {
            search_clause(filter, &mut clause, &mut binds);
        } else {
            let marks = vec!["?"; ids.len()].join(",");
            clause = format!(" WHERE id IN ({marks})");
        }
        let sql = format!(
            "SELECT id, data_id, group_id, tenant_id, content, app_name, type, c_desc, \
             encrypted_data_key FROM config_info{clause} ORDER BY id"
        );
        with_pool!(self, read, pool => {
            let mut q = sqlx::query(&sql);
            if ids.is_empty() {
                for b in &binds {
                    q = q.bind(b);
                }
            } else {
                for id in ids {
                    q = q.bind(*id);
                }
            }
            let rows = q.fetch_all(pool).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in rows {
                items.push(ConfigRow {
                    id: row.try_get("id")?,
                    key: key_of(&row)?,
                    content: text(&row, "content")?,
                    app_name: opt_text(&row, "app_name")?,
                    config_type: opt_text(&row, "type")?,
                    desc: opt_text(&row, "c_desc")?,
                    encrypted_data_key: text(&row, "encrypted_data_key")?,
                });
            }
            Ok(items)
        })
    }

    /// A page of the history of one config, newest first.
    pub async fn history(
        &self,
        key: &ConfigKey,
        page: PageRequest,
    ) -> Result<Page<HistoryRow>, StoreError> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM his_config_info \
             WHERE data_id = ? AND group_id = ? AND tenant_id = ? ORDER BY nid DESC LIMIT ? OFFSET ?"
        );
        with_pool!(self, read, pool => {
            let total: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM his_config_info \
                 WHERE data_id = ? AND group_id = ? AND tenant_id = ?",
            )
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .fetch_one(pool)
            .await?
            .try_get("n")?;
            let rows = sqlx::query(&sql)
                .bind(&key.data_id)
                .bind(&key.group)
                .bind(&key.tenant)
                .bind(page.limit())
                .bind(page.offset())
                .fetch_all(pool)
                .await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                items.push(history_row(row, false)?);
            }
            Ok(Page { total, request: page, items })
        })
    }

    /// One history row by `nid`, with its content.
    pub async fn history_detail(&self, nid: i64) -> Result<Option<HistoryRow>, StoreError> {
        let sql =
            format!("SELECT {HISTORY_COLUMNS}, content, md5 FROM his_config_info WHERE nid = ?");
        with_pool!(self, read, pool => {
            let row = sqlx::query(&sql).bind(nid).fetch_optional(pool).await?;
            row.map(|r| history_row(&r, true)).transpose().map_err(StoreError::from)
        })
    }

    /// The newest history row of the config with `config_info.id` = `id`
    /// (Nacos `detailPreviousConfigHistory`).
    pub async fn history_previous(&self, id: i64) -> Result<Option<HistoryRow>, StoreError> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS}, content, md5 FROM his_config_info WHERE id = ? \
             ORDER BY nid DESC LIMIT 1"
        );
        with_pool!(self, read, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.map(|r| history_row(&r, true)).transpose().map_err(StoreError::from)
        })
    }

    /// Upserts the beta version of a config.
    ///
    /// With `cas_md5`, only if the stored beta version has that MD5 (or none, or there
    /// is none), checked under the write lock as [`ConfigStore::publish`] does; else
    /// [`StoreError::CasConflict`].
    pub async fn publish_beta(
        &self,
        beta: &StoredBeta,
        src_ip: &str,
        cas_md5: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        let k = &beta.key;
        let (begin, lock) = self.locking();
        with_pool!(self, write, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let old = sqlx::query(&format!(
                "SELECT id, md5 FROM config_info_beta WHERE data_id = ? AND group_id = ? AND tenant_id = ?{lock}",
            ))
            .bind(&k.data_id)
            .bind(&k.group)
            .bind(&k.tenant)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match old {
                Some(row) => {
                    let id: i64 = row.try_get("id")?;
                    if !cas_passes(cas_md5, opt_text(&row, "md5")?) {
                        tx.rollback().await?;
                        return Err(StoreError::CasConflict);
                    }
                    sqlx::query(
                        "UPDATE config_info_beta SET content = ?, md5 = ?, beta_ips = ?, \
                         src_ip = ?, gmt_modified = ?, app_name = ?, encrypted_data_key = ? WHERE id = ?",
                    )
                    .bind(&beta.content)
                    .bind(&beta.md5)
                    .bind(&beta.beta_ips)
                    .bind(src_ip)
                    .bind(at)
                    .bind(&beta.app_name)
                    .bind(&beta.encrypted_data_key)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => sqlx::query(
                    "INSERT INTO config_info_beta (data_id, group_id, tenant_id, app_name, content, \
                     beta_ips, md5, gmt_create, gmt_modified, src_ip, encrypted_data_key) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&k.data_id)
                .bind(&k.group)
                .bind(&k.tenant)
                .bind(&beta.app_name)
                .bind(&beta.content)
                .bind(&beta.beta_ips)
                .bind(&beta.md5)
                .bind(at)
                .bind(at)
                .bind(src_ip)
                .bind(&beta.encrypted_data_key)
                .execute(&mut *tx)
                .await?
                .last_id(),
            };
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Deletes the beta version of a config; returns whether there was one.
    pub async fn remove_beta(&self, key: &ConfigKey) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let done = sqlx::query(
                "DELETE FROM config_info_beta WHERE data_id = ? AND group_id = ? AND tenant_id = ?",
            )
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Upserts a tag version of a config.
    ///
    /// With `cas_md5`, as [`ConfigStore::publish_beta`].
    pub async fn publish_tag(
        &self,
        tag: &StoredTag,
        app_name: Option<&str>,
        src_ip: &str,
        src_user: Option<&str>,
        cas_md5: Option<&str>,
    ) -> Result<i64, StoreError> {
        let at = now();
        let k = &tag.key;
        let (begin, lock) = self.locking();
        with_pool!(self, write, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let old = sqlx::query(&format!(
                "SELECT id, md5 FROM config_info_tag WHERE data_id = ? AND group_id = ? AND tenant_id = ? AND tag_id = ?{lock}",
            ))
            .bind(&k.data_id)
            .bind(&k.group)
            .bind(&k.tenant)
            .bind(&tag.tag)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match old {
                Some(row) => {
                    let id: i64 = row.try_get("id")?;
                    if !cas_passes(cas_md5, opt_text(&row, "md5")?) {
                        tx.rollback().await?;
                        return Err(StoreError::CasConflict);
                    }
                    sqlx::query(
                        "UPDATE config_info_tag SET content = ?, md5 = ?, src_ip = ?, src_user = ?, \
                         gmt_modified = ?, app_name = ? WHERE id = ?",
                    )
                    .bind(&tag.content)
                    .bind(&tag.md5)
                    .bind(src_ip)
                    .bind(src_user)
                    .bind(at)
                    .bind(app_name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => sqlx::query(
                    "INSERT INTO config_info_tag (data_id, group_id, tenant_id, tag_id, app_name, \
                     content, md5, gmt_create, gmt_modified, src_ip, src_user) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&k.data_id)
                .bind(&k.group)
                .bind(&k.tenant)
                .bind(&tag.tag)
                .bind(app_name)
                .bind(&tag.content)
                .bind(&tag.md5)
                .bind(at)
                .bind(at)
                .bind(src_ip)
                .bind(src_user)
                .execute(&mut *tx)
                .await?
                .last_id(),
            };
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Deletes a tag version; returns whether there was one.
    pub async fn remove_tag(&self, key: &ConfigKey, tag: &str) -> Result<bool, StoreError> {
        with_pool!(self, write, pool => {
            let done = sqlx::query(
                "DELETE FROM config_info_tag WHERE data_id = ? AND group_id = ? AND tenant_id = ? AND tag_id = ?",
            )
            .bind(&key.data_id)
            .bind(&key.group)
            .bind(&key.tenant)
            .bind(tag)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

/// Whether a compare-and-set with `cas_md5` may replace a stored version whose MD5 is
/// `stored` (as Nacos's `… AND (md5 = ? OR md5 IS NULL OR md5 = '')`).
fn cas_passes(cas_md5: Option<&str>, stored: Option<String>) -> bool {
    match (cas_md5, stored) {
        (Some(cas), Some(md5)) => md5.is_empty() || md5 == cas,
        _ => true,
    }
}

impl ConfigStore {
    /// How a compare-and-set transaction starts and reads its row: SQLite takes the
    /// write lock at `BEGIN IMMEDIATE`; MySQL locks the rows read (`FOR UPDATE`).
    fn locking(&self) -> (&'static str, &'static str) {
        match self.backend {
            super::Backend::Sqlite { .. } => ("BEGIN IMMEDIATE", ""),
            super::Backend::MySql(_) => ("BEGIN", " FOR UPDATE"),
        }
    }
}

fn history_row<R: Row>(row: &R, with_content: bool) -> Result<HistoryRow, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> NaiveDateTime: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let created: NaiveDateTime = row.try_get("gmt_create")?;
    let modified: NaiveDateTime = row.try_get("gmt_modified")?;
    let op: Option<String> = opt_text(row, "op_type")?;
    Ok(HistoryRow {
        nid: row.try_get("nid")?,
        id: row.try_get("id")?,
        key: key_of(row)?,
        app_name: opt_text(row, "app_name")?,
        content: if with_content {
            opt_text(row, "content")?
        } else {
            None
        },
        md5: if with_content {
            opt_text(row, "md5")?
        } else {
            None
        },
        src_ip: opt_text(row, "src_ip")?,
        src_user: opt_text(row, "src_user")?,
        op_type: op.unwrap_or_default().trim().to_string(),
        created_ms: millis(created),
        modified_ms: millis(modified),
        encrypted_data_key: text(row, "encrypted_data_key")?,
    })
}
