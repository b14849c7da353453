//! Health workers: the beat expiry worker for ephemeral instances, which asks naming
//! to apply the beat rules to instances whose deadline passed (the registry keeps a
//! deadline queue, so a tick touches only those; the client manager says which are
//! this member's to expire), and the probe worker for
//! persistent instances ([`probe`]).

pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::naming::NamingService;
use crate::naming::registry::now_millis;

/// Turns silent ephemeral instances unhealthy, then removes them (as Nacos
/// `ClientBeatCheckTask`), every `tick`.
pub struct BeatExpiryWorker {
    naming: Arc<NamingService>,
    tick: Duration,
}

impl BeatExpiryWorker {
    /// A worker over `naming` waking every `tick`; in a cluster it expires only the
    /// clients this member is responsible for (see [`crate::naming::distro`]).
    pub fn new(naming: Arc<NamingService>, tick: Duration) -> Self {
        Self { naming, tick }
    }

    /// Runs until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let report = self.naming.sweep_expired(now_millis());
            for (service, id) in &report.unhealthy {
                info!(%service, instance = %id, "instance unhealthy: no beat within its beat timeout");
            }
            for (service, id) in &report.removed {
                info!(%service, instance = %id, "instance removed: no beat within its delete timeout");
            }
            for service in &report.removed_services {
                info!(%service, "service removed: empty for longer than its empty-service TTL");
            }
        }
    }
}
