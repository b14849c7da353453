//! The config center in a cluster on a shared MySQL database (DESIGN §4, §5): the
//! member that writes a config tells its peers the key; they reload it from the
//! database and wake their listeners (as Nacos `AsyncNotifyService` and
//! `DumpService#dump`). A notice carries no content, only the key.
//!
//! Each peer has its own queue: keys changed meanwhile go as one batch, and while a
//! peer does not answer its batch is retried with growing pauses (0.5 s, 1.5 s, 4.5 s,
//! then every 10 s), so a member that comes back gets every key it missed. A periodic
//! check of rows changed since the last check ([`ConfigService::reload_changed_since`],
//! every `cluster.config_check_interval_ms`) catches a notice lost anyway (a member
//! that was down when the writer itself stopped).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ConfigChange, ConfigService, ConfigSubscriber};
use crate::cluster::peer::{self, PeerClient};
use crate::model::config::ConfigKey;

/// The internal route a member takes notices on: POST a list of keys (each
/// `(dataId, group, tenant)`).
pub const NOTIFY_PATH: &str = "/nacos/internal/v1/cs/notify";

#[derive(Default)]
struct Queue {
    pending: Mutex<BTreeSet<(String, String, String)>>,
    notify: Notify,
}

/// Tells peers of every config changed on this member. Subscribe it to the
/// [`ConfigService`], then run it.
pub struct PeerNotifier {
    client: PeerClient,
    queues: HashMap<String, Arc<Queue>>,
}

impl PeerNotifier {
    /// A notifier for `peers`, calling them with `client`.
    pub fn new(client: PeerClient, peers: &[String]) -> Arc<Self> {
        Arc::new(Self {
            client,
            queues: peers
                .iter()
                .map(|p| (p.clone(), Arc::new(Queue::default())))
                .collect(),
        })
    }

    /// Sends the queued notices until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for (peer, queue) in &self.queues {
            tasks.spawn(Self::send_loop(
                self.client.clone(),
                peer.clone(),
                queue.clone(),
                cancel.clone(),
            ));
        }
        cancel.cancelled().await;
        tasks.shutdown().await;
    }

    async fn send_loop(
        client: PeerClient,
        peer: String,
        queue: Arc<Queue>,
        cancel: CancellationToken,
    ) {
        let mut failures: u32 = 0;
        loop {
            if queue.pending.lock().is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = queue.notify.notified() => {}
                }
            }
            let keys: Vec<(String, String, String)> = std::mem::take(&mut *queue.pending.lock())
                .into_iter()
                .collect();
            if keys.is_empty() {
                continue;
            }
            match client
                .post(
                    &peer,
                    NOTIFY_PATH,
                    peer::encode(&keys),
                    Duration::from_secs(2),
                )
                .await
            {
                Ok(_) => failures = 0,
                Err(e) => {
                    tracing::debug!(peer, error = %e, keys = keys.len(), "config notice failed; retrying");
                    queue.pending.lock().extend(keys);
                    // As Nacos: 500 ms + n² s, n capped (here at 3, so at most ~10 s).
                    let n = u64::from(failures.min(3));
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(500 + n * n * 1_000);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

impl ConfigSubscriber for PeerNotifier {
    fn changed(&self, change: &ConfigChange) {
        if !change.local {
            return;
        }
        let k = &change.key;
        for queue in self.queues.values() {
            queue
                .pending
                .lock()
                .insert((k.data_id.clone(), k.group.clone(), k.tenant.clone()));
            queue.notify.notify_one();
        }
    }
}

/// Decodes a notice: the keys a peer changed.
pub fn decode_notice(body: &[u8]) -> Result<Vec<ConfigKey>, peer::PeerError> {
    let keys: Vec<(String, String, String)> = peer::decode(body)?;
    Ok(keys
        .into_iter()
        .map(|(data_id, group, tenant)| ConfigKey {
            data_id,
            group,
            tenant,
        })
        .collect())
}

/// Reloads the configs changed in the database since the last check, every
/// `interval`, until `cancel` fires. Each check looks back to a little before the last
/// one started (twice the interval, and at least 5 s), so rows committed late or
/// stamped by a member whose clock is behind are not missed.
pub async fn run_change_check(
    config: Arc<ConfigService>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let margin = (interval * 2).max(Duration::from_secs(5));
    let mut since = chrono::Utc::now().timestamp_millis();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = chrono::Utc::now().timestamp_millis();
        let from = since.saturating_sub(i64::try_from(margin.as_millis()).unwrap_or(i64::MAX));
        match config.reload_changed_since(from).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                configs = n,
                "config check: reloaded configs changed by peers"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "config check failed");
                continue;
            }
        }
        since = started;
    }
}
