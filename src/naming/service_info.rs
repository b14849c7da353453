//! The `hosts` JSON of `instance/list` answers, encoded once per service revision and
//! selection (`clusters`, `healthyOnly`) and then copied into every answer, so a list
//! request costs a lookup and a copy rather than a serialization of every instance.
//!
//! Invariant: an entry is used only while its revision is the service's current one;
//! a service keeps at most 16 selections; the whole cache is cleared past 100,000
//! services' worth of entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::model::{META_ID_GENERATOR, ServiceKey};
use crate::naming::registry::ServiceSnapshot;
use crate::naming::selection::select_for_list;

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
