//! Which instances a reader gets: the Nacos list selection and the DNS selection, with
//! one protect-threshold rule for both. Pure functions over a [`ServiceSnapshot`].
//!
//! The protect threshold (Nacos `protectThreshold`): when the healthy share of a
//! reader's candidates is at or under the service's threshold, the reader gets every
//! candidate, so the few healthy instances are not overloaded. Nacre departs from
//! Nacos in two ways, the same for the list API and DNS:
//! * a threshold of 0 (the default) never trips it, so a service whose instances are
//!   all down answers none (Nacos 1.x and 2.x trip on `0 <= 0` and report dead
//!   instances as healthy);
//! * the share is that of the service's candidates before `healthyOnly` (as Nacos 1.x;
//!   2.x filters first, so a `healthyOnly` client could never see protection).
//!
//! Each reader takes the share over its own candidates: DNS over the enabled instances
//! with a weight above 0 (weight 0 drains an instance from DNS), the list API over the
//! enabled instances of the requested clusters, whatever their weight (Nacos lists
//! weight-0 instances).

use std::sync::Arc;

use super::registry::ServiceSnapshot;
use crate::model::Instance;

/// Whether the protect threshold trips for `healthy` of `total` candidates: the
/// threshold is above 0, there are candidates, and `healthy / total <= threshold`.
pub fn protection_reached(healthy: usize, total: usize, threshold: f32) -> bool {
    threshold > 0.0 && total > 0 && (healthy as f64 / total as f64) <= f64::from(threshold)
}

/// The result of a Nacos `instance/list` selection.
#[derive(Debug)]
pub struct ListSelection {
    /// The selected instances with the health reported to the client (protection
    /// reports every instance healthy).
    pub hosts: Vec<(Arc<Instance>, bool)>,
    /// Whether the protect threshold was reached (`reachProtectionThreshold`).
    pub protected: bool,
}

/// `instance/list` selection: the candidates are the enabled instances of the
/// requested clusters (all clusters when `clusters` is empty). When protection trips
/// (see the module docs) every candidate is returned and reported healthy; otherwise
/// the candidates are returned with their health, only the healthy ones with
/// `healthy_only`.
pub fn select_for_list(
    snapshot: &ServiceSnapshot,
    clusters: &[&str],
    healthy_only: bool,
) -> ListSelection {
    let candidates: Vec<&Arc<Instance>> = snapshot
        .instances
        .iter()
        .filter(|i| i.enabled && (clusters.is_empty() || clusters.contains(&&*i.cluster)))
        .collect();
    let healthy = candidates.iter().filter(|i| i.healthy).count();
    let protected = protection_reached(healthy, candidates.len(), snapshot.meta.protect_threshold);
    ListSelection {
        hosts: candidates
            .into_iter()
            .filter(|i| protected || !healthy_only || i.healthy)
            .map(|i| (i.clone(), protected || i.healthy))
            .collect(),
        protected,
    }
}

/// The instances DNS answers with: the candidates are the enabled instances with a
/// weight above zero; the healthy ones are answered, or every candidate when
/// protection trips (see the module docs). Also says whether it tripped.
pub fn select_for_dns(snapshot: &ServiceSnapshot) -> (Vec<&Arc<Instance>>, bool) {
    let candidates: Vec<&Arc<Instance>> = snapshot
        .instances
        .iter()
        .filter(|i| i.enabled && i.weight > 0.0)
        .collect();
    let healthy = candidates.iter().filter(|i| i.healthy).count();
    if protection_reached(healthy, candidates.len(), snapshot.meta.protect_threshold) {
        return (candidates, true);
    }
    (
        candidates.into_iter().filter(|i| i.healthy).collect(),
        false,
    )
}

/// Locality (`[dns.locality]`): the instances of `selected` in `cluster` when at
/// least one of them is healthy, else all of `selected` (also when `cluster` is
/// `None`).
pub fn prefer_cluster<'a>(
    selected: Vec<&'a Arc<Instance>>,
    cluster: Option<&str>,
) -> Vec<&'a Arc<Instance>> {
    let Some(cluster) = cluster else {
        return selected;
    };
    if !selected.iter().any(|i| i.healthy && &*i.cluster == cluster) {
        return selected;
    }
    selected
        .into_iter()
        .filter(|i| &*i.cluster == cluster)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_zero_never_trips_and_the_bound_is_inclusive() {
        assert!(!protection_reached(0, 3, 0.0));
        assert!(!protection_reached(0, 0, 0.5));
        assert!(protection_reached(0, 3, 0.1));
        assert!(protection_reached(1, 2, 0.5));
        assert!(!protection_reached(2, 3, 0.5));
        assert!(!protection_reached(0, 3, -1.0));
    }
}
