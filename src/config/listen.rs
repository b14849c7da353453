//! Long polling: the `Listening-Configs` wire format and the hub of held listeners.
//!
//! Wire format (Nacos `MD5Util.getClientMd5Map`): records
//! `dataId ^2 group ^2 md5 [^2 tenant] ^1`, where `^1` is U+0001 and `^2` U+0002. A
//! record with two fields before its last one has no tenant and ends with the md5.
//! More than 3 separators in a record, a record with fewer than two fields, or more
//! than [`MAX_LISTEN_KEYS`] records are refused (`invalid probeModify`).
//!
//! The answer lists changed keys as `URLEncoder.encode("dataId^2group[^2tenant]^1…")`,
//! the tenant part only when it is not blank.
//!
//! The hub holds one waiter per long-polling request. A publisher updates the cache
//! first and then calls [`ListenerHub::notify`]; a listener compares MD5s and
//! registers its waiter under the hub's lock, so a change is never missed between the
//! check and the wait.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::model::config::ConfigKey;

/// Most keys one listener request may watch (Nacos's limit).
pub const MAX_LISTEN_KEYS: usize = 10_000;

/// One watched config of a listener request, as the client spelled it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenEntry {
    /// dataId as sent.
    pub data_id: String,
    /// group as sent.
    pub group: String,
    /// tenant as sent (`""` when the record had none).
    pub tenant: String,
    /// The client's MD5 (`""` when it has nothing).
    pub md5: String,
    /// The key in the cache (tenant normalized).
    pub key: ConfigKey,
}

impl ListenEntry {
    /// The entry's part of an answer, not yet URL-encoded: `dataId^2group[^2tenant]^1`.
    pub fn wire_line(&self) -> String {
        let mut s = format!("{}\u{2}{}", self.data_id, self.group);
        if !self.tenant.trim().is_empty() {
            s.push('\u{2}');
            s.push_str(&self.tenant);
        }
        s.push('\u{1}');
        s
    }
}

/// Parses `Listening-Configs`. `Err` carries Nacos's message, `invalid probeModify`.
pub fn parse_listening_configs(raw: &str) -> Result<Vec<ListenEntry>, &'static str> {
    const INVALID: &str = "invalid probeModify";
    if raw.trim().is_empty() {
        return Err(INVALID);
    }
    let mut out = Vec::new();
    let mut fields: Vec<&str> = Vec::with_capacity(4);
    let mut start = 0;
    for (i, c) in raw.char_indices() {
        match c {
            '\u{2}' => {
                fields.push(&raw[start..i]);
                start = i + 1;
                if fields.len() > 3 {
                    return Err(INVALID);
                }
            }
            '\u{1}' => {
                let last = &raw[start..i];
                start = i + 1;
                let (data_id, group, md5, tenant) = match fields.as_slice() {
                    [d, g] => (*d, *g, last, ""),
                    [d, g, m] => (*d, *g, *m, last),
                    _ => return Err(INVALID),
                };
                out.push(ListenEntry {
                    data_id: data_id.to_string(),
                    group: group.to_string(),
                    tenant: tenant.to_string(),
                    md5: md5.to_string(),
                    key: ConfigKey::new(data_id, group, tenant),
                });
                fields.clear();
                if out.len() > MAX_LISTEN_KEYS {
                    return Err(INVALID);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// URL-encodes answer lines as Java's `URLEncoder.encode(s, "UTF-8")` (space → `+`).
pub fn encode_answer(lines: &[String]) -> String {
    let joined: String = lines.concat();
    form_urlencoded::byte_serialize(joined.as_bytes()).collect()
}

/// Which listeners a change concerns.
#[derive(Clone, Debug)]
pub enum ChangeScope {
    /// The formal version: every listener of the key.
    Formal,
    /// A beta version: only listeners whose IP is listed.
    Beta(Vec<String>),
    /// A tag version: only listeners that asked for this tag (`Vipserver-Tag`).
    Tag(String),
}

struct Waiter {
    ip: IpAddr,
    tag: Option<String>,
    entries: Vec<ListenEntry>,
    answer: Option<oneshot::Sender<String>>,
}

#[derive(Default)]
struct Hub {
    next_id: u64,
    waiters: HashMap<u64, Waiter>,
    by_key: HashMap<ConfigKey, HashSet<u64>>,
}

impl Hub {
    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        for e in &waiter.entries {
            if let Some(ids) = self.by_key.get_mut(&e.key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_key.remove(&e.key);
                }
            }
        }
        Some(waiter)
    }
}

/// The held long-polling listeners.
#[derive(Default)]
pub struct ListenerHub {
    inner: Mutex<Hub>,
}

/// A registered waiter; dropping it (answered, timed out, or the client went away)
/// unregisters it.
pub struct WaiterGuard<'h> {
    hub: &'h ListenerHub,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.hub.inner.lock().remove(self.id);
    }
}

/// The result of [`ListenerHub::check_or_register`].
pub enum Registration<'h> {
    /// These entries are stale already: their answer lines (see
    /// [`ListenEntry::wire_line`]).
    Changed(Vec<String>),
    /// Nothing is stale; the waiter is held until a change arrives on the receiver.
    Held(WaiterGuard<'h>, oneshot::Receiver<String>),
}

impl ListenerHub {
    /// Under the hub's lock: finds the entries for which `is_stale` holds; if there
    /// are none and `hold` is set, registers a waiter.
    pub fn check_or_register(
        &self,
        ip: IpAddr,
        tag: Option<String>,
        entries: Vec<ListenEntry>,
        hold: bool,
        is_stale: impl Fn(&ListenEntry) -> bool,
    ) -> Registration<'_> {
        let mut hub = self.inner.lock();
        let changed: Vec<String> = entries
            .iter()
            .filter(|e| is_stale(e))
            .map(ListenEntry::wire_line)
            .collect();
        if !changed.is_empty() || !hold {
            return Registration::Changed(changed);
        }
        let (tx, rx) = oneshot::channel();
        let id = hub.next_id;
        hub.next_id += 1;
        for e in &entries {
            hub.by_key.entry(e.key.clone()).or_default().insert(id);
        }
        hub.waiters.insert(
            id,
            Waiter {
                ip,
                tag,
                entries,
                answer: Some(tx),
            },
        );
        Registration::Held(WaiterGuard { hub: self, id }, rx)
    }

    /// Answers every held listener of `key` in `scope` with that key; returns how many.
    pub fn notify(&self, key: &ConfigKey, scope: &ChangeScope) -> usize {
        let mut hub = self.inner.lock();
        let Some(ids) = hub.by_key.get(key) else {
            return 0;
        };
        let chosen: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                hub.waiters.get(id).is_some_and(|w| match scope {
                    ChangeScope::Formal => true,
                    ChangeScope::Beta(ips) => ips.contains(&w.ip.to_string()),
                    ChangeScope::Tag(tag) => w.tag.as_deref() == Some(tag.as_str()),
                })
            })
            .collect();
        for id in &chosen {
            if let Some(mut w) = hub.remove(*id)
                && let Some(tx) = w.answer.take()
                && let Some(entry) = w.entries.iter().find(|e| e.key == *key)
            {
                let _ = tx.send(encode_answer(&[entry.wire_line()]));
            }
        }
        chosen.len()
    }

    /// Held listeners of one config: `(client IP, its MD5)`.
    pub fn listeners_of(&self, key: &ConfigKey) -> Vec<(IpAddr, String)> {
        let hub = self.inner.lock();
        let Some(ids) = hub.by_key.get(key) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| hub.waiters.get(id))
            .filter_map(|w| {
                w.entries
                    .iter()
                    .find(|e| e.key == *key)
                    .map(|e| (w.ip, e.md5.clone()))
            })
            .collect()
    }

    /// Configs held by listeners from one client IP: `(key, MD5)`.
    pub fn keys_of_ip(&self, ip: IpAddr) -> Vec<(ConfigKey, String)> {
        let hub = self.inner.lock();
        let mut out: Vec<(ConfigKey, String)> = hub
            .waiters
            .values()
            .filter(|w| w.ip == ip)
            .flat_map(|w| w.entries.iter().map(|e| (e.key.clone(), e.md5.clone())))
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// How many listener requests are held.
    pub fn held(&self) -> usize {
        self.inner.lock().waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_with_and_without_tenant() {
        let raw = "a\u{2}G\u{2}m1\u{1}b\u{2}G\u{2}\u{2}dev\u{1}";
        let e = parse_listening_configs(raw).expect("valid");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (
                e[0].data_id.as_str(),
                e[0].md5.as_str(),
                e[0].tenant.as_str()
            ),
            ("a", "m1", "")
        );
        assert_eq!(
            (
                e[1].data_id.as_str(),
                e[1].md5.as_str(),
                e[1].tenant.as_str()
            ),
            ("b", "", "dev")
        );
        assert_eq!(e[1].key.tenant, "dev");
    }

    #[test]
    fn refuses_malformed_input() {
        for raw in ["", "  ", "a\u{1}", "a\u{2}b\u{2}c\u{2}d\u{2}e\u{1}"] {
            assert!(parse_listening_configs(raw).is_err(), "{raw:?}");
        }
        let many = "a\u{2}b\u{2}\u{1}".repeat(MAX_LISTEN_KEYS + 1);
        assert!(parse_listening_configs(&many).is_err());
        // Text after the last record is ignored, as Nacos.
        assert_eq!(
            parse_listening_configs("a\u{2}b\u{2}m\u{1}tail").map(|v| v.len()),
            Ok(1)
        );
    }

    #[test]
    fn answer_is_url_encoded_like_java() {
        let e = &parse_listening_configs("my id\u{2}G\u{2}m\u{2}dev\u{1}").expect("valid")[0];
        assert_eq!(encode_answer(&[e.wire_line()]), "my+id%02G%02dev%01");
    }
}
