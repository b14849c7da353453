//! Membership: the configured members, each peer's state as this node's probes see it,
//! and the responsible node of every client derived from it (DESIGN §5).
//!
//! States are Nacos's: `UP` after a successful probe; `SUSPICIOUS` from the first
//! failure; `DOWN` once probes have failed for `cluster.down_after_ms` (Nacos: the 4th
//! failure in a row, 10–16 s in a 3-node cluster; here 3 s by default, because the time
//! to detect a dead owner is the time its clients' writes wait). Peers start
//! SUSPICIOUS, as never heard from, and turn DOWN if they stay silent that long.
//!
//! Responsibility is computed over this node and every peer that is not DOWN (a
//! SUSPICIOUS owner keeps its clients, as in Nacos, so one lost probe moves nothing).
//! Each change of that set is stamped ([`Responsibility::moved_at_ms`]): expiry then
//! gives the clients that moved a grace to beat their new owner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use super::responsibility::{Members, Responsibility};
use crate::model::ClientId;

/// A member's state (Nacos `NodeState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MemberState {
    /// Answered its last probe.
    Up,
    /// Its last probe failed, or it was never heard from; still owns its clients.
    Suspicious,
    /// Probes failed for `cluster.down_after_ms`: its clients moved to other members.
    Down,
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberState::Up => "UP",
            MemberState::Suspicious => "SUSPICIOUS",
            MemberState::Down => "DOWN",
        })
    }
}

/// What this node knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's address as the members list names it.
    pub addr: String,
    /// Its state.
    pub state: MemberState,
    /// Failed probes in a row.
    pub fail_count: u32,
    /// When it last answered, milliseconds since the epoch; `None`: never.
    pub last_contact_ms: Option<u64>,
    /// Since when its probes fail, milliseconds since the epoch.
    pub failing_since_ms: Option<u64>,
}

/// The members of a cluster as this node sees them. Share it in an `Arc`.
pub struct Membership {
    this: String,
    peers: Vec<String>,
    down_after_ms: u64,
    status: Mutex<BTreeMap<String, PeerStatus>>,
    view: ArcSwap<Members>,
    moved_at: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Membership {
    /// The members (`this` among them; added when missing) at `now_ms`, peers
    /// SUSPICIOUS until probed; DOWN after `down_after_ms` of failures.
    pub fn new(this: &str, members: &[String], down_after_ms: u64, now_ms: u64) -> Self {
        let mut peers: Vec<String> = members.iter().filter(|m| *m != this).cloned().collect();
        peers.sort();
        peers.dedup();
        let status = peers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    PeerStatus {
                        addr: p.clone(),
                        state: MemberState::Suspicious,
                        fail_count: 0,
                        last_contact_ms: None,
                        failing_since_ms: Some(now_ms),
                    },
                )
            })
            .collect();
        let view = Members::new(this, peers.iter().cloned().chain([this.to_string()]));
        let (changes, _) = watch::channel(0);
        Self {
            this: this.to_string(),
            peers,
            down_after_ms,
            status: Mutex::new(status),
            view: ArcSwap::from_pointee(view),
            moved_at: AtomicU64::new(0),
            changes,
        }
    }

    /// This node's address.
    pub fn this(&self) -> &str {
        &self.this
    }

    /// The other members, sorted.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// Every peer's status, sorted by address.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.status.lock().values().cloned().collect()
    }

    /// The state of `peer`; `None` for a non-member.
    pub fn state(&self, peer: &str) -> Option<MemberState> {
        self.status.lock().get(peer).map(|s| s.state)
    }

    /// Whether `peer` is UP (Distro sends to it only then).
    pub fn is_up(&self, peer: &str) -> bool {
        self.state(peer) == Some(MemberState::Up)
    }

    /// Whether `addr` is a member (this node or a peer).
    pub fn is_member(&self, addr: &str) -> bool {
        addr == self.this
            || self
                .peers
                .binary_search_by(|p| p.as_str().cmp(addr))
                .is_ok()
    }

    /// The member responsible for `client`.
    pub fn responsible(&self, client: &ClientId) -> String {
        self.view
            .load()
            .responsible(client)
            .unwrap_or(&self.this)
            .to_string()
    }

    /// Whether this member is responsible for the thing named `id` among the members
    /// that are not DOWN (for a service's probes: `responsibility::service_id`).
    pub fn is_responsible_for(&self, id: &str) -> bool {
        self.view
            .load()
            .responsible_for(id)
            .is_none_or(|m| m == self.this)
    }

    /// Watches changes of the responsible set (the value counts them).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records that `peer` answered at `now_ms`.
    pub fn record_success(&self, peer: &str, now_ms: u64) {
        self.record(peer, now_ms, true);
    }

    /// Records that a probe of `peer` failed at `now_ms`.
    pub fn record_failure(&self, peer: &str, now_ms: u64) {
        self.record(peer, now_ms, false);
    }

    fn record(&self, peer: &str, now_ms: u64, ok: bool) {
        let mut status = self.status.lock();
        let Some(s) = status.get_mut(peer) else {
            return;
        };
        let before = s.state;
        if ok {
            s.state = MemberState::Up;
            s.fail_count = 0;
            s.last_contact_ms = Some(now_ms);
            s.failing_since_ms = None;
        } else {
            s.fail_count = s.fail_count.saturating_add(1);
            let since = *s.failing_since_ms.get_or_insert(now_ms);
            s.state = if now_ms.saturating_sub(since) >= self.down_after_ms {
                MemberState::Down
            } else {
                MemberState::Suspicious
            };
        }
        let after = s.state;
        if before == after {
            return;
        }
        tracing::info!(peer, from = %before, to = %after, "member state changed");
        if (before == MemberState::Down) != (after == MemberState::Down) {
            let live: Vec<String> = status
                .values()
                .filter(|s| s.state != MemberState::Down)
                .map(|s| s.addr.clone())
                .chain([self.this.clone()])
                .collect();
            self.view
                .store(Arc::new(Members::new(self.this.clone(), live)));
            self.moved_at.store(now_ms, Ordering::Release);
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

impl Responsibility for Membership {
    fn is_responsible(&self, client: &ClientId) -> bool {
        self.view.load().is_responsible(client)
    }

    fn moved_at_ms(&self) -> u64 {
        self.moved_at.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_peer_turns_suspicious_then_down_and_its_clients_move() {
        let members = vec!["a:1".to_string(), "b:1".to_string(), "c:1".to_string()];
        let m = Membership::new("a:1", &members, 3_000, 1_000);
        assert_eq!(m.peers(), ["b:1", "c:1"]);
        m.record_success("b:1", 1_100);
        m.record_success("c:1", 1_100);
        assert!(m.is_up("b:1"));
        let owned_by_b: Vec<ClientId> = (0..200)
            .map(|i| ClientId::http(&format!("10.0.0.{i}"), 80))
            .filter(|c| m.responsible(c) == "b:1")
            .collect();
        assert!(!owned_by_b.is_empty());
        m.record_failure("b:1", 2_000);
        assert_eq!(m.state("b:1"), Some(MemberState::Suspicious));
        assert!(owned_by_b.iter().all(|c| m.responsible(c) == "b:1"));
        assert_eq!(m.moved_at_ms(), 0);
        m.record_failure("b:1", 5_000);
        assert_eq!(m.state("b:1"), Some(MemberState::Down));
        assert_eq!(m.moved_at_ms(), 5_000);
        assert!(owned_by_b.iter().all(|c| m.responsible(c) != "b:1"));
        m.record_success("b:1", 6_000);
        assert!(owned_by_b.iter().all(|c| m.responsible(c) == "b:1"));
        assert_eq!(m.moved_at_ms(), 6_000);
    }
}
