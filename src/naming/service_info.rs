//! Nacos's `ServiceInfo` JSON, the answer of `instance/list` and the `data` of a UDP
//! push: [`render`] writes it around a `hosts` array that [`ListCache`] encodes once per
//! service revision and selection (`clusters`, `healthyOnly`) and then copies into
//! every answer, so a list request costs a lookup and a copy rather than a
//! serialization of every instance.
//!
//! Invariant: a cache entry is used only while its revision is the service's current
//! one; a service keeps at most 16 selections; the whole cache is cleared past 100,000
//! services' worth of entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use super::registry::ServiceSnapshot;
use super::selection::select_for_list;
use crate::model::{META_ID_GENERATOR, ServiceKey};

const MAX_SERVICES: usize = 100_000;
const MAX_SELECTIONS: usize = 16;

/// One encoded selection.
pub struct CachedHosts {
    revision: u64,
    clusters: String,
    healthy_only: bool,
    /// The `hosts` array, JSON.
    pub json: Vec<u8>,
    /// `reachProtectionThreshold` of this selection.
    pub protected: bool,
    /// The service checksum at this revision.
    pub checksum: String,
}

/// One host of a list answer (Nacos 2.x `Instance` JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostJson<'a> {
    instance_id: String,
    ip: &'a str,
    port: u16,
    weight: f64,
    healthy: bool,
    enabled: bool,
    ephemeral: bool,
    cluster_name: &'a str,
    service_name: &'a str,
    metadata: &'a BTreeMap<String, String>,
    instance_heart_beat_interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_id_generator: Option<&'a str>,
    instance_heart_beat_time_out: u64,
    ip_delete_timeout: u64,
}

/// The cache, shared by every list request.
#[derive(Default)]
pub struct ListCache {
    entries: RwLock<HashMap<ServiceKey, Vec<Arc<CachedHosts>>>>,
}

impl ListCache {
    /// The encoded selection for `snapshot`, built on first use at its revision.
    pub fn hosts(
        &self,
        snapshot: &ServiceSnapshot,
        clusters: &str,
        healthy_only: bool,
    ) -> Arc<CachedHosts> {
        if let Some(found) = self.entries.read().get(&snapshot.key).and_then(|v| {
            v.iter()
                .find(|c| {
                    c.revision == snapshot.revision
                        && c.healthy_only == healthy_only
                        && c.clusters == clusters
                })
                .cloned()
        }) {
            return found;
        }
        let built = Arc::new(encode(snapshot, clusters, healthy_only));
        let mut entries = self.entries.write();
        if entries.len() >= MAX_SERVICES {
            entries.clear();
        }
        let selections = entries.entry(snapshot.key.clone()).or_default();
        selections.retain(|c| c.revision == snapshot.revision);
        if selections.len() < MAX_SELECTIONS {
            selections.push(built.clone());
        }
        built
    }
}

fn encode(snapshot: &ServiceSnapshot, clusters: &str, healthy_only: bool) -> CachedHosts {
    let wanted: Vec<&str> = clusters
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let selection = select_for_list(snapshot, &wanted, healthy_only);
    let grouped = snapshot.key.grouped_name();
    let hosts: Vec<HostJson<'_>> = selection
        .hosts
        .iter()
        .map(|(inst, healthy)| HostJson {
            instance_id: inst.instance_id(&snapshot.key),
            ip: &inst.ip,
            port: inst.port,
            weight: inst.weight,
            healthy: *healthy,
            enabled: inst.enabled,
            ephemeral: inst.ephemeral,
            cluster_name: &inst.cluster,
            service_name: &grouped,
            metadata: &inst.metadata,
            instance_heart_beat_interval: inst.beat_interval_ms(),
            // Nacos's getter: "simple" when metadata is empty, else the key's value.
            instance_id_generator: if inst.metadata.is_empty() {
                Some("simple")
            } else {
                inst.metadata.get(META_ID_GENERATOR).map(String::as_str)
            },
            instance_heart_beat_time_out: inst.beat_timeout_ms(),
            ip_delete_timeout: inst.delete_timeout_ms(),
        })
        .collect();
    CachedHosts {
        revision: snapshot.revision,
        clusters: clusters.to_string(),
        healthy_only,
        // Serializing plain structs of strings and numbers cannot fail.
        json: serde_json::to_vec(&hosts).unwrap_or_else(|_| b"[]".to_vec()),
        protected: selection.protected,
        checksum: snapshot.checksum.clone(),
    }
}

/// Writes the `ServiceInfo` JSON of Nacos 2.x (`shared/nacos-api.md` §2.6): `name` is
/// the grouped name, `clusters` echoes the request, `cacheMillis` and `lastRefTime` are
/// milliseconds. `hosts` is the encoded selection, or `None` for an unknown service
/// (an empty `hosts`, as Nacos answers it, never 404).
pub fn render(
    key: &ServiceKey,
    clusters: &str,
    hosts: Option<&CachedHosts>,
    cache_millis: u64,
    last_ref_time_ms: u64,
) -> Vec<u8> {
    let hosts_json: &[u8] = hosts.map(|h| h.json.as_slice()).unwrap_or(b"[]");
    let mut out = Vec::with_capacity(hosts_json.len() + 256);
    let json_str = |out: &mut Vec<u8>, s: &str| {
        // Serializing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
    out.extend_from_slice(b"{\"name\":");
    json_str(&mut out, &key.grouped_name());
    out.extend_from_slice(b",\"groupName\":");
    json_str(&mut out, &key.group);
    out.extend_from_slice(b",\"clusters\":");
    json_str(&mut out, clusters);
    out.extend_from_slice(format!(",\"cacheMillis\":{cache_millis},\"hosts\":").as_bytes());
    out.extend_from_slice(hosts_json);
    out.extend_from_slice(format!(",\"lastRefTime\":{last_ref_time_ms},\"checksum\":").as_bytes());
    json_str(&mut out, hosts.map(|h| h.checksum.as_str()).unwrap_or(""));
    out.extend_from_slice(b",\"allIPs\":false,\"reachProtectionThreshold\":");
    out.extend_from_slice(if hosts.is_some_and(|h| h.protected) {
        b"true"
    } else {
        b"false"
    });
    out.extend_from_slice(b",\"valid\":true}");
    out
}
