//! The config center's use cases: publish, get, remove, beta (gray) and tag versions,
//! listen (long polling), search, history and namespaces.
//!
//! Reads come from an in-memory cache of every config's content and MD5, loaded at
//! start, so a `get` or a listener check never touches the database. Writes go to the
//! [`ConfigStore`] first; only after the transaction commits is the cache updated and
//! are listeners woken. Writes to one key are serialized by a striped lock held across
//! the transaction and the cache update, so the cache always ends on the version the
//! database committed last.
//!
//! Every change is then told to the [`ConfigSubscriber`]s as a [`ConfigChange`]: the
//! long-poll [`ListenerHub`] is the first, and in a cluster the peer notifier joins
//! them (DESIGN §4); the use cases wake no listener themselves.

pub mod archive;
pub mod listen;
pub mod peers;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use thiserror::Error;

use crate::model::config::ConfigKey;
use crate::storage::config::{
    ConfigDetail, ConfigRow, HistoryRow, PublishRecord, SearchFilter, StoredBeta, StoredTag,
};
use crate::storage::namespace::NamespaceRow;
use crate::storage::{ConfigStore, Page, PageRequest, StoreError};
use listen::{ChangeScope, ListenEntry, ListenerHub, Registration, encode_answer};

/// Errors of the config use cases.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A compare-and-set publish (`casMd5`) found the config changed since; nothing
    /// was written (Nacos's message).
    #[error("Cas publish fail, server md5 may have changed.")]
    CasConflict,
    /// The database failed; the change was not made.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ConfigError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CasConflict => ConfigError::CasConflict,
            other => ConfigError::Store(other),
        }
    }
}

/// One cached version of a config's content.
#[derive(Debug)]
pub struct Version {
    /// Row id in its table.
    pub id: i64,
    /// Content, UTF-8 (shared with answers without a copy).
    pub content: bytes::Bytes,
    /// `modified_ms` as an HTTP date (RFC 9110 IMF-fixdate), for `Last-Modified`.
    pub last_modified: Arc<str>,
    /// Lowercase hex MD5 of the content.
    pub md5: Arc<str>,
    /// Type (`text`, `yaml`, …); tag versions take the formal one's.
    pub config_type: Arc<str>,
    /// Last modification, ms since the epoch.
    pub modified_ms: i64,
    /// `encrypted_data_key` (2.x), usually empty.
    pub encrypted_data_key: Arc<str>,
}

impl Version {
    /// A version of `content`; the HTTP date is computed once here.
    pub fn new(
        id: i64,
        content: &str,
        md5: &str,
        config_type: &str,
        modified_ms: i64,
        encrypted_data_key: &str,
    ) -> Self {
        let last_modified = chrono::DateTime::from_timestamp_millis(modified_ms)
            .unwrap_or_default()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        Self {
            id,
            content: bytes::Bytes::copy_from_slice(content.as_bytes()),
            last_modified: last_modified.into(),
            md5: md5.into(),
            config_type: config_type.into(),
            modified_ms,
            encrypted_data_key: encrypted_data_key.into(),
        }
    }
}

/// A beta version and the client IPs it is served to.
#[derive(Debug)]
pub struct BetaVersion {
    /// The content.
    pub version: Arc<Version>,
    /// Client IPs, as listed in `betaIps`.
    pub ips: Vec<String>,
}

#[derive(Debug, Default)]
struct CacheItem {
    formal: Option<Arc<Version>>,
    beta: Option<Arc<BetaVersion>>,
    tags: Vec<(String, Arc<Version>)>,
}

impl CacheItem {
    fn is_empty(&self) -> bool {
        self.formal.is_none() && self.beta.is_none() && self.tags.is_empty()
    }

    fn tag(&self, tag: &str) -> Option<&Arc<Version>> {
        self.tags.iter().find(|(t, _)| t == tag).map(|(_, v)| v)
    }

    fn beta_for(&self, ip: IpAddr) -> Option<&Arc<BetaVersion>> {
        self.beta
            .as_ref()
            .filter(|b| b.ips.contains(&ip.to_string()))
    }
}

/// What a `get` serves.
#[derive(Clone, Debug)]
pub struct Served {
    /// The version served.
    pub version: Arc<Version>,
    /// The config's formal type (for `Content-Type`).
    pub config_type: Arc<str>,
    /// Served from the beta version.
    pub beta: bool,
    /// Served from this tag version.
    pub tag: Option<String>,
}

/// Who asks for a config: the client's IP (beta) and tag (`tag` parameter, or the
/// `Vipserver-Tag` header which falls back to the formal version).
#[derive(Clone, Debug)]
pub struct Requester<'a> {
    /// Client IP.
    pub ip: IpAddr,
    /// `tag` parameter: only that tag version is served.
    pub tag: Option<&'a str>,
    /// `Vipserver-Tag` header: that tag version if it exists, else the formal one.
    pub auto_tag: Option<&'a str>,
}

/// A publish as accepted by the API (validated).
#[derive(Clone, Debug, Default)]
pub struct PublishCommand {
    /// The record for `config_info`.
    pub record: PublishRecord,
    /// Beta IPs (`betaIps` header): publish a beta version instead.
    pub beta_ips: Option<Vec<String>>,
    /// Tag: publish a tag version instead.
    pub tag: Option<String>,
}

/// A change to one config, as every [`ConfigSubscriber`] sees it.
#[derive(Clone, Debug)]
pub struct ConfigChange {
    /// The config.
    pub key: ConfigKey,
    /// Which of its versions changed (formal, a beta for some IPs, or a tag).
    pub scope: ChangeScope,
    /// Written on this node (`true`), or reloaded after a peer's notice or the check
    /// of changed rows (`false`): the peer notifier tells peers only of the first.
    pub local: bool,
}

/// What is told of every config change, after the database committed it and the cache
/// took it, before the write returns: the long-poll hub, and in a cluster the peer
/// notifier. Called under the key's write lock, so changes of one key arrive in commit
/// order; it must not block.
pub trait ConfigSubscriber: Send + Sync {
    /// One change.
    fn changed(&self, change: &ConfigChange);
}

impl ConfigSubscriber for ListenerHub {
    /// Answers the held listeners the change concerns.
    fn changed(&self, change: &ConfigChange) {
        self.notify(&change.key, &change.scope);
    }
}

/// Number of stripes of the per-key write lock.
const WRITE_STRIPES: usize = 256;

/// The config center.
pub struct ConfigService {
    store: ConfigStore,
    cache: RwLock<HashMap<ConfigKey, CacheItem>>,
    hub: Arc<ListenerHub>,
    /// Told of every change: the hub first, then those added by
    /// [`ConfigService::subscribe`].
    subscribers: RwLock<Vec<Arc<dyn ConfigSubscriber>>>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl ConfigService {
    /// Loads every config, beta and tag version from `store` into the cache.
    pub async fn load(store: ConfigStore) -> Result<Self, ConfigError> {
        let mut cache: HashMap<ConfigKey, CacheItem> = HashMap::new();
        for c in store.load_configs().await? {
            cache.entry(c.key.clone()).or_default().formal = Some(Arc::new(formal_version(&c)));
        }
        for b in store.load_betas().await? {
            let item = cache.entry(b.key.clone()).or_default();
            item.beta = Some(Arc::new(beta_version(&b)));
        }
        for t in store.load_tags().await? {
            let item = cache.entry(t.key.clone()).or_default();
            item.tags.push((t.tag.clone(), Arc::new(tag_version(&t))));
        }
        let hub = Arc::new(ListenerHub::default());
        Ok(Self {
            store,
            cache: RwLock::new(cache),
            subscribers: RwLock::new(vec![hub.clone() as Arc<dyn ConfigSubscriber>]),
            hub,
            stripes: (0..WRITE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: Default::default(),
        })
    }

    /// The held listeners.
    pub fn hub(&self) -> &ListenerHub {
        &self.hub
    }

    /// Adds a subscriber, told of every change from now on.
    pub fn subscribe(&self, subscriber: Arc<dyn ConfigSubscriber>) {
        self.subscribers.write().push(subscriber);
    }

    /// Tells every subscriber of a change made here.
    fn changed(&self, key: &ConfigKey, scope: ChangeScope) {
        self.tell(key, scope, true);
    }

    fn tell(&self, key: &ConfigKey, scope: ChangeScope, local: bool) {
        let change = ConfigChange {
            key: key.clone(),
            scope,
            local,
        };
        for subscriber in self.subscribers.read().iter() {
            subscriber.changed(&change);
        }
    }

    fn stripe(&self, key: &ConfigKey) -> &tokio::sync::Mutex<()> {
        &self.stripes[(self.hasher.hash_one(key) as usize) % WRITE_STRIPES]
    }

    /// The version a requester gets, as Nacos `ConfigServletInner#doGetConfig`: beta
    /// when the caller's IP is listed; with `tag`, that tag version or nothing; with
    /// `auto_tag`, that tag version if it exists; else the formal version.
    pub fn get(&self, key: &ConfigKey, who: &Requester<'_>) -> Option<Served> {
        let cache = self.cache.read();
        let item = cache.get(key)?;
        let config_type = item
            .formal
            .as_ref()
            .map(|v| v.config_type.clone())
            .unwrap_or_else(|| Arc::from("text"));
        if let Some(b) = item.beta_for(who.ip) {
            return Some(Served {
                version: b.version.clone(),
                config_type,
                beta: true,
                tag: None,
            });
        }
        if let Some(tag) = who.tag {
            return item.tag(tag).map(|v| Served {
                version: v.clone(),
                config_type,
                beta: false,
                tag: Some(tag.to_string()),
            });
        }
        if let Some(tag) = who.auto_tag
            && let Some(v) = item.tag(tag)
        {
            return Some(Served {
                version: v.clone(),
                config_type,
                beta: false,
                tag: Some(tag.to_string()),
            });
        }
        item.formal.as_ref().map(|v| Served {
            version: v.clone(),
            config_type,
            beta: false,
            tag: None,
        })
    }

    /// The MD5 a listener is compared with (`""` when there is nothing), as Nacos
    /// `ConfigCacheService#getContentMd5`: beta for listed IPs, the tag version for
    /// its tag, else the formal one.
    pub fn md5_for(&self, key: &ConfigKey, ip: IpAddr, tag: Option<&str>) -> Arc<str> {
        let cache = self.cache.read();
        md5_in(&cache, key, ip, tag)
    }

    /// The formal MD5 of a config, `""` when absent.
    pub fn formal_md5(&self, key: &ConfigKey) -> Arc<str> {
        let cache = self.cache.read();
        cache
            .get(key)
            .and_then(|i| i.formal.as_ref())
            .map(|v| v.md5.clone())
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Number of formal configs per tenant.
    pub fn count_by_tenant(&self) -> HashMap<String, usize> {
        let cache = self.cache.read();
        let mut out = HashMap::new();
        for (k, item) in cache.iter() {
            if item.formal.is_some() {
                *out.entry(k.tenant.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Publishes: a formal version (with its history row), or a beta version when
    /// `beta_ips` is set, or a tag version when `tag` is set. Returns after the
    /// database committed, the cache was updated and listeners were woken.
    pub async fn publish(&self, cmd: PublishCommand) -> Result<(), ConfigError> {
        let rec = &cmd.record;
        let key = rec.key.clone();
        let _guard = self.stripe(&key).lock().await;
        if let Some(ips) = cmd.beta_ips {
            let beta = StoredBeta {
                id: 0,
                key: key.clone(),
                content: rec.content.clone(),
                md5: rec.md5.clone(),
                beta_ips: ips.join(","),
                app_name: rec.app_name.clone(),
                modified_ms: 0,
                created_ms: 0,
                encrypted_data_key: rec.encrypted_data_key.clone(),
            };
            let id = self
                .store
                .publish_beta(&beta, &rec.src_ip, rec.cas_md5.as_deref())
                .await?;
            let version = Arc::new(BetaVersion {
                version: Arc::new(Version::new(
                    id,
                    &rec.content,
                    &rec.md5,
                    &rec.config_type,
                    now_ms(),
                    &rec.encrypted_data_key,
                )),
                ips: ips.clone(),
            });
            self.cache.write().entry(key.clone()).or_default().beta = Some(version);
            self.changed(&key, ChangeScope::Beta(ips));
            return Ok(());
        }
        if let Some(tag) = cmd.tag {
            let stored = StoredTag {
                id: 0,
                key: key.clone(),
                tag: tag.clone(),
                content: rec.content.clone(),
                md5: rec.md5.clone(),
                modified_ms: 0,
            };
            let id = self
                .store
                .publish_tag(
                    &stored,
                    rec.app_name.as_deref(),
                    &rec.src_ip,
                    rec.src_user.as_deref(),
                    rec.cas_md5.as_deref(),
                )
                .await?;
            let version = Arc::new(Version::new(
                id,
                &rec.content,
                &rec.md5,
                &rec.config_type,
                now_ms(),
                "",
            ));
            {
                let mut cache = self.cache.write();
                let item = cache.entry(key.clone()).or_default();
                item.tags.retain(|(t, _)| *t != tag);
                item.tags.push((tag.clone(), version));
            }
            self.changed(&key, ChangeScope::Tag(tag));
            return Ok(());
        }
        let done = self.store.publish(rec.clone()).await?;
        let version = Arc::new(Version::new(
            done.id,
            &rec.content,
            &rec.md5,
            &rec.config_type,
            done.modified_ms,
            &rec.encrypted_data_key,
        ));
        self.cache.write().entry(key.clone()).or_default().formal = Some(version);
        self.changed(&key, ChangeScope::Formal);
        Ok(())
    }

    /// Removes the formal version (with a `D` history row), or only the tag version
    /// when `tag` is set. Absent configs are not an error. Returns whether one existed.
    pub async fn remove(
        &self,
        key: &ConfigKey,
        tag: Option<&str>,
        src_ip: &str,
        src_user: Option<&str>,
    ) -> Result<bool, ConfigError> {
        let _guard = self.stripe(key).lock().await;
        let existed = match tag {
            Some(tag) => {
                let existed = self.store.remove_tag(key, tag).await?;
                self.update_item(key, |item| item.tags.retain(|(t, _)| t != tag));
                self.changed(key, ChangeScope::Tag(tag.to_string()));
                existed
            }
            None => {
                let existed = self.store.remove(key, src_ip, src_user).await?;
                self.update_item(key, |item| item.formal = None);
                self.changed(key, ChangeScope::Formal);
                existed
            }
        };
        Ok(existed)
    }

    /// Stops a beta: deletes the beta version and wakes the listeners it was served to.
    pub async fn stop_beta(&self, key: &ConfigKey) -> Result<bool, ConfigError> {
        let _guard = self.stripe(key).lock().await;
        let existed = self.store.remove_beta(key).await?;
        let mut ips = Vec::new();
        self.update_item(key, |item| {
            if let Some(b) = item.beta.take() {
                ips = b.ips.clone();
            }
        });
        if !ips.is_empty() {
            self.changed(key, ChangeScope::Beta(ips));
        }
        Ok(existed)
    }

    /// The beta version of a config with its IPs, from the database.
    pub async fn beta(&self, key: &ConfigKey) -> Result<Option<StoredBeta>, ConfigError> {
        Ok(self
            .store
            .load_betas()
            .await?
            .into_iter()
            .find(|b| b.key == *key))
    }

    /// Reloads one config (formal, beta and tag versions) from the database after
    /// another cluster member changed it (as Nacos `DumpService#dump`), and tells the
    /// subscribers of what differs from the cache (so listeners wake), marked not
    /// local. Returns whether anything differed.
    pub async fn reload(&self, key: &ConfigKey) -> Result<bool, ConfigError> {
        let _guard = self.stripe(key).lock().await;
        let formal = self.store.config_of(key).await?.into_iter().next();
        let beta = self.store.beta_of(key).await?.into_iter().next();
        let tags = self.store.tags_of(key).await?;
        let fresh = CacheItem {
            formal: formal.map(|c| Arc::new(formal_version(&c))),
            beta: beta.as_ref().map(|b| Arc::new(beta_version(b))),
            tags: tags
                .iter()
                .map(|t| (t.tag.clone(), Arc::new(tag_version(t))))
                .collect(),
        };
        let same = |a: &Option<Arc<Version>>, b: &Option<Arc<Version>>| match (a, b) {
            (Some(a), Some(b)) => a.md5 == b.md5 && a.id == b.id,
            (None, None) => true,
            _ => false,
        };
        let mut scopes = Vec::new();
        {
            let mut cache = self.cache.write();
            let old = cache.remove(key).unwrap_or_default();
            if !same(&old.formal, &fresh.formal) {
                scopes.push(ChangeScope::Formal);
            }
            let old_beta = old
                .beta
                .as_ref()
                .map(|b| (b.version.clone(), b.ips.clone()));
            let new_beta = fresh
                .beta
                .as_ref()
                .map(|b| (b.version.clone(), b.ips.clone()));
            let beta_same = match (&old_beta, &new_beta) {
                (Some((a, ai)), Some((b, bi))) => a.md5 == b.md5 && a.id == b.id && ai == bi,
                (None, None) => true,
                _ => false,
            };
            if !beta_same {
                let mut ips: Vec<String> = old_beta.map(|(_, i)| i).unwrap_or_default();
                for ip in new_beta.map(|(_, i)| i).unwrap_or_default() {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
                scopes.push(ChangeScope::Beta(ips));
            }
            let mut tag_names: Vec<&String> =
                old.tags.iter().chain(&fresh.tags).map(|(t, _)| t).collect();
            tag_names.sort();
            tag_names.dedup();
            for tag in tag_names {
                if !same(&old.tag(tag).cloned(), &fresh.tag(tag).cloned()) {
                    scopes.push(ChangeScope::Tag(tag.clone()));
                }
            }
            if !fresh.is_empty() {
                cache.insert(key.clone(), fresh);
            }
        }
        let changed = !scopes.is_empty();
        for scope in scopes {
            self.tell(key, scope, false);
        }
        Ok(changed)
    }

    /// Reloads every config the database changed at or after `since_ms` (ms since the
    /// epoch): the periodic check that catches a missed notice from a peer. Returns
    /// how many differed from the cache.
    pub async fn reload_changed_since(&self, since_ms: i64) -> Result<usize, ConfigError> {
        let mut changed = 0;
        for key in self.store.changed_since(since_ms).await? {
            if self.reload(&key).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }

    fn update_item(&self, key: &ConfigKey, f: impl FnOnce(&mut CacheItem)) {
        let mut cache = self.cache.write();
        if let Some(item) = cache.get_mut(key) {
            f(item);
            if item.is_empty() {
                cache.remove(key);
            }
        }
    }

    /// Long polling. Answers at once (with the stale entries, URL-encoded) when any
    /// client MD5 differs from ours or when `hold` is `None`; otherwise waits up to
    /// `hold` for a change of a watched key and answers with that key, or with `""` at
    /// the end of the hold.
    pub async fn listen(
        &self,
        ip: IpAddr,
        tag: Option<String>,
        entries: Vec<ListenEntry>,
        hold: Option<Duration>,
    ) -> String {
        let registration = {
            let tag_ref = tag.clone();
            self.hub
                .check_or_register(ip, tag, entries, hold.is_some(), |e| {
                    *self.md5_for(&e.key, ip, tag_ref.as_deref()) != *e.md5
                })
        };
        match registration {
            Registration::Changed(lines) => {
                if lines.is_empty() {
                    String::new()
                } else {
                    encode_answer(&lines)
                }
            }
            Registration::Held(guard, rx) => {
                let hold = hold.unwrap_or_default();
                let answer = tokio::time::timeout(hold, rx).await;
                drop(guard);
                match answer {
                    Ok(Ok(line)) => line,
                    _ => String::new(),
                }
            }
        }
    }

    /// Detail of one config from the database (`show=all`, catalog).
    pub async fn detail(&self, key: &ConfigKey) -> Result<Option<ConfigDetail>, ConfigError> {
        Ok(self.store.detail(key).await?)
    }

    /// A page of configs (`search=accurate|blur`).
    pub async fn search(
        &self,
        filter: &SearchFilter,
        page: PageRequest,
    ) -> Result<Page<ConfigRow>, ConfigError> {
        Ok(self.store.search(filter, page).await?)
    }

    /// A page of a config's history, newest first.
    pub async fn history(
        &self,
        key: &ConfigKey,
        page: PageRequest,
    ) -> Result<Page<HistoryRow>, ConfigError> {
        Ok(self.store.history(key, page).await?)
    }

    /// Custom namespaces.
    pub async fn namespaces(&self) -> Result<Vec<NamespaceRow>, ConfigError> {
        Ok(self.store.namespaces().await?)
    }

    /// One custom namespace by id.
    pub async fn namespace(&self, id: &str) -> Result<Option<NamespaceRow>, ConfigError> {
        Ok(self.store.namespace(id).await?)
    }

    /// Creates a namespace; `false` when the id is taken.
    pub async fn create_namespace(&self, namespace: &NamespaceRow) -> Result<bool, ConfigError> {
        Ok(self.store.create_namespace(namespace).await?)
    }

    /// Renames a namespace and sets its description; `false` when it does not exist.
    pub async fn update_namespace(&self, namespace: &NamespaceRow) -> Result<bool, ConfigError> {
        Ok(self.store.update_namespace(namespace).await?)
    }

    /// Deletes a namespace (its configs stay, as Nacos); `false` when it did not exist.
    pub async fn delete_namespace(&self, id: &str) -> Result<bool, ConfigError> {
        Ok(self.store.delete_namespace(id).await?)
    }

    /// One history entry by its `nid`.
    pub async fn history_detail(&self, nid: i64) -> Result<Option<HistoryRow>, ConfigError> {
        Ok(self.store.history_detail(nid).await?)
    }

    /// The history entry before entry `id` of the same config.
    pub async fn history_previous(&self, id: i64) -> Result<Option<HistoryRow>, ConfigError> {
        Ok(self.store.history_previous(id).await?)
    }

    /// The configs an export takes: those `filter` matches, or with `ids`, those rows.
    pub async fn export_rows(
        &self,
        filter: &SearchFilter,
        ids: &[i64],
    ) -> Result<Vec<ConfigRow>, ConfigError> {
        Ok(self.store.export_rows(filter, ids).await?)
    }

    /// The keys of the configs with row ids `ids` (those that exist).
    pub async fn keys_by_ids(&self, ids: &[i64]) -> Result<Vec<ConfigKey>, ConfigError> {
        Ok(self.store.keys_by_ids(ids).await?)
    }

    /// Closes the database (at shutdown, after the last write).
    pub async fn close(&self) {
        self.store.close().await;
    }
}

fn md5_in(
    cache: &HashMap<ConfigKey, CacheItem>,
    key: &ConfigKey,
    ip: IpAddr,
    tag: Option<&str>,
) -> Arc<str> {
    let Some(item) = cache.get(key) else {
        return Arc::from("");
    };
    if let Some(b) = item.beta_for(ip) {
        return b.version.md5.clone();
    }
    if let Some(tag) = tag
        && let Some(v) = item.tag(tag)
    {
        return v.md5.clone();
    }
    item.formal
        .as_ref()
        .map(|v| v.md5.clone())
        .unwrap_or_else(|| Arc::from(""))
}

fn formal_version(c: &crate::storage::config::StoredConfig) -> Version {
    Version::new(
        c.id,
        &c.content,
        &c.md5,
        &c.config_type,
        c.modified_ms,
        &c.encrypted_data_key,
    )
}

fn beta_version(b: &StoredBeta) -> BetaVersion {
    BetaVersion {
        version: Arc::new(Version::new(
            b.id,
            &b.content,
            &b.md5,
            "text",
            b.modified_ms,
            &b.encrypted_data_key,
        )),
        ips: split_ips(&b.beta_ips),
    }
}

fn tag_version(t: &StoredTag) -> Version {
    Version::new(t.id, &t.content, &t.md5, "text", t.modified_ms, "")
}

/// Splits a comma-separated IP list, trimming and dropping blanks.
pub fn split_ips(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ConfigStoreSettings;

    /// Records every change it is told of.
    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Vec<String>>);

    impl ConfigSubscriber for Recorder {
        fn changed(&self, change: &ConfigChange) {
            self.0
                .lock()
                .push(format!("{} {:?}", change.key.data_id, change.scope));
        }
    }

    fn record(data_id: &str, content: &str) -> PublishRecord {
        PublishRecord {
            key: ConfigKey::new(data_id, "DEFAULT_GROUP", ""),
            content: content.into(),
            md5: crate::model::config::content_md5(content),
            config_type: "text".into(),
            app_name: None,
            src_user: None,
            src_ip: "127.0.0.1".into(),
            desc: None,
            usage: None,
            effect: None,
            schema: None,
            config_tags: None,
            encrypted_data_key: String::new(),
            cas_md5: None,
        }
    }

    #[tokio::test]
    async fn every_committed_change_reaches_every_subscriber_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConfigStore::open(&ConfigStoreSettings::default(), dir.path())
            .await
            .unwrap();
        let config = ConfigService::load(store).await.unwrap();
        let recorder = Arc::new(Recorder::default());
        config.subscribe(recorder.clone());
        let publish = |beta_ips: Option<Vec<String>>, tag: Option<String>| PublishCommand {
            record: record("app.yaml", "a: 1"),
            beta_ips,
            tag,
        };
        config.publish(publish(None, None)).await.unwrap();
        // A refused compare-and-set publish changes nothing and tells nobody.
        let mut cas = publish(None, None);
        cas.record.cas_md5 = Some("0".repeat(32));
        assert!(matches!(
            config.publish(cas).await,
            Err(ConfigError::CasConflict)
        ));
        config
            .publish(publish(Some(vec!["10.0.0.1".into()]), None))
            .await
            .unwrap();
        config
            .publish(publish(None, Some("canary".into())))
            .await
            .unwrap();
        let key = ConfigKey::new("app.yaml", "DEFAULT_GROUP", "");
        config.stop_beta(&key).await.unwrap();
        config
            .remove(&key, Some("canary"), "127.0.0.1", None)
            .await
            .unwrap();
        config.remove(&key, None, "127.0.0.1", None).await.unwrap();
        assert_eq!(
            *recorder.0.lock(),
            vec![
                "app.yaml Formal",
                "app.yaml Beta([\"10.0.0.1\"])",
                "app.yaml Tag(\"canary\")",
                "app.yaml Beta([\"10.0.0.1\"])",
                "app.yaml Tag(\"canary\")",
                "app.yaml Formal",
            ]
        );
    }
}
