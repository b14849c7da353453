//! Which instances a reader gets: the Nacos list selection (with its protect threshold)
//! and the DNS selection. Pure functions over a [`ServiceSnapshot`].

use std::sync::Arc;

use super::registry::ServiceSnapshot;
use crate::model::Instance;

/// The result of a Nacos `instance/list` selection.
#[derive(Debug)]
pub struct ListSelection {
    /// The selected instances with the health reported to the client (protection
    /// reports every instance healthy).
    pub hosts: Vec<(Arc<Instance>, bool)>,
    /// Whether the protect threshold was reached (`reachProtectionThreshold`).
    pub protected: bool,
}

/// Nacos 2.x `instance/list` selection (`ServiceUtil.selectInstancesWithHealthyProtection`):
/// keep enabled instances of the requested clusters (all clusters when `clusters` is
/// empty); with `healthy_only`, keep the healthy ones; then, only for a service that has
/// service metadata (created or updated through the service API), when
/// `healthy / total <= protectThreshold` over the kept instances (so after the
/// `healthy_only` filter, as 2.x does) report every kept instance as healthy.
pub fn select_for_list(
    snapshot: &ServiceSnapshot,
    clusters: &[&str],
    healthy_only: bool,
) -> ListSelection {
    let in_clusters: Vec<&Arc<Instance>> = snapshot
        .instances
        .iter()
        .filter(|i| i.enabled && (clusters.is_empty() || clusters.contains(&&*i.cluster)))
        .collect();
    let kept: Vec<&Arc<Instance>> = if healthy_only {
        in_clusters.into_iter().filter(|i| i.healthy).collect()
    } else {
        in_clusters
    };
    let total = kept.len();
    let healthy = kept.iter().filter(|i| i.healthy).count();
    let threshold = snapshot.meta.protect_threshold.max(0.0) as f64;
    let protected =
        snapshot.meta.explicit && total > 0 && (healthy as f64 / total as f64) <= threshold;
    ListSelection {
        hosts: kept
            .into_iter()
            .map(|i| (i.clone(), protected || i.healthy))
            .collect(),
        protected,
    }
}

/// The instances DNS answers with: enabled, weight above zero and healthy. When the
/// service's protect threshold is above zero and the healthy share of the candidates
/// (enabled, weight above zero) is at or under it, every candidate is answered instead,
/// so that the few healthy ones are not overloaded (as Nacos's protect threshold).
///
/// A threshold of 0 means "off" here, unlike Nacos 1.x where 0 healthy out of N with
/// threshold 0 also trips protection: DNS must stop answering dead addresses.
pub fn select_for_dns(snapshot: &ServiceSnapshot) -> (Vec<&Arc<Instance>>, bool) {
    let candidates: Vec<&Arc<Instance>> = snapshot
        .instances
        .iter()
        .filter(|i| i.enabled && i.weight > 0.0)
        .collect();
    let healthy = candidates.iter().filter(|i| i.healthy).count();
    let threshold = snapshot.meta.protect_threshold as f64;
    if threshold > 0.0
        && !candidates.is_empty()
        && (healthy as f64 / candidates.len() as f64) <= threshold
    {
        return (candidates, true);
    }
    (
        candidates.into_iter().filter(|i| i.healthy).collect(),
        false,
    )
}
