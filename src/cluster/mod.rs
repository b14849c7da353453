//! The cluster: members, peer liveness, the peer client, and which node is
//! responsible for what (DESIGN §5).
//!
//! * [`members`]: the configured members and each peer's state as the probes see it;
//! * [`peer`]: calls between members (cluster secret, versioned binary bodies);
//! * [`responsibility`]: the rule that gives every client one responsible node.

pub mod members;
pub mod peer;
pub mod responsibility;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::now_millis;
use members::Membership;
use peer::PeerClient;

/// The path every member answers peer probes on.
pub const PING_PATH: &str = "/nacos/internal/v1/cluster/ping";

/// Probes every peer every `interval` (each probe times out after `interval`) and
/// records the answers in `membership`, until `cancel` fires.
pub async fn run_probes(
    membership: Arc<Membership>,
    client: PeerClient,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let probes = membership.peers().iter().map(|peer| {
            let client = client.clone();
            let membership = membership.clone();
            async move {
                let answered = client.get(peer, PING_PATH, interval).await;
                match answered {
                    Ok(_) => membership.record_success(peer, now_millis()),
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "peer probe failed");
                        membership.record_failure(peer, now_millis());
                    }
                }
            }
        });
        futures_util::future::join_all(probes).await;
    }
}
