//! Distro (AP) for ephemeral instances (DESIGN §2, §5): every member holds every
//! client's instances; the member responsible for a client takes its writes and beats
//! and expires it; every change reaches the peers in batches; a periodic checksum
//! round repairs drift; a joining member loads a peer's snapshot before it answers.
//!
//! **Unit of replication: one client** (Nacos 2.x `ClientSyncData`): a
//! [`ClientRecord`] holds every ephemeral instance of an `ip:port` client across
//! services, stamped with a [`Version`]. The owner bumps the version on each visible
//! change of the client (registration, deregistration, update, health, expiry) and
//! sends the whole record; a receiver keeps the record with the highest version and
//! makes the client's instances exactly the record's. Keeping the maximum is
//! commutative and idempotent, so batches may arrive in any order, twice, or through a
//! snapshot, and members converge.
//!
//! A version is `(counter, member)`: the counter is `max(previous + 1, now in ms)`,
//! so a new owner after a failover stamps above the old one's, and two members that
//! both stamped during a membership change are ordered by address.
//!
//! **Owner protection.** A member never takes a peer's deletion of a client it is
//! responsible for and heard from within the client's beat timeout: a minority that
//! expired clients it could not hear during a partition must not delete them from the
//! side they beat. The owner stamps its live copy above the deletion instead, and that
//! copy wins everywhere. A snapshot likewise never deletes a client this node owns
//! (snapshots hold no deletions, and an older record loses to the owner's newer one).
//!
//! **Expiry.** Only the responsible member applies the beat rules to a client's
//! instances. A replicated instance counts its silence from when the owner last
//! vouched for it (a sync or an equal checksum); and when the responsible set changes
//! (a member goes DOWN or comes back), no client heard from before the change expires
//! until `cluster.owner_grace_ms` after it, so the clients of a dead member have that
//! long to beat their new owner. A replicated client that no owner vouched for in
//! [`stale_after_ms`], counted from the later of its last renewal and the last change
//! of the responsible set, is dropped locally (its owner lost it without telling).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::command::{Applied, NamingCommand, Origin};
use super::registry::{Hold, Outcome, Slot, SweepReport};
use super::{BeatOutcome, NamingError, NamingService};
use crate::cluster::members::{MemberState, Membership};
use crate::cluster::peer::{self, PeerClient, PeerError};
use crate::cluster::responsibility::Responsibility;
use crate::model::{ClientId, Host, Instance, InstanceKey, ServiceKey, now_millis};

/// Internal routes of Distro, on every member's HTTP port.
pub mod paths {
    /// POST a batch of [`super::ClientRecord`]s.
    pub const SYNC: &str = "/nacos/internal/v1/distro/sync";
    /// POST [`super::Digest`]s of the sender's clients; answers the ones to send.
    pub const VERIFY: &str = "/nacos/internal/v1/distro/verify";
    /// GET every client record this member holds ([`super::Snapshot`]).
    pub const SNAPSHOT: &str = "/nacos/internal/v1/distro/snapshot";
    /// POST a [`crate::naming::command::NamingCommand`] for a client this member owns;
    /// answers a [`super::Forwarded`] and the client's record when the write changed it.
    pub const FORWARD: &str = "/nacos/internal/v1/distro/forward";
}

/// The order of a client's records: `(counter, member)`, compared in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// `max(previous + 1, milliseconds since the epoch)` at the stamping member.
    pub counter: u64,
    /// The stamping member's address.
    pub member: Arc<str>,
}

/// One ephemeral instance of a client, in one service: what DNS and the list API
/// answer from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaInstance {
    /// Its service.
    pub service: ServiceKey,
    /// Cluster name.
    pub cluster: String,
    /// Weight.
    pub weight: f64,
    /// Health.
    pub healthy: bool,
    /// Enabled.
    pub enabled: bool,
    /// Metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// A snowflake id, if it has one.
    pub id: Option<String>,
}

/// Every ephemeral instance of one client, at one version; no instance means the
/// client is gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client (`ip:port`).
    pub client: InstanceKey,
    /// The record's version.
    pub version: Version,
    /// Its instances, sorted by service.
    pub instances: Vec<ReplicaInstance>,
}

impl ClientRecord {
    /// A 64-bit checksum of the instances (FNV-1a over their encoding): covers every
    /// field DNS and the list API answer from, `enabled`, weight and metadata
    /// included.
    pub fn checksum(&self) -> u64 {
        let bytes = postcard::to_allocvec(&self.instances).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

/// Of two records of the same client, the one that stays: the higher version (the
/// Distro merge; commutative, associative and idempotent).
pub fn merge<'a>(a: &'a ClientRecord, b: &'a ClientRecord) -> &'a ClientRecord {
    if b.version > a.version { b } else { a }
}

/// What the owner says of one client in a checksum round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// The client.
    pub client: InstanceKey,
    /// Its version at the owner.
    pub version: Version,
    /// [`ClientRecord::checksum`] at the owner.
    pub checksum: u64,
}

/// A client the receiver of a checksum round wants, with the version it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Want {
    /// The client.
    pub client: InstanceKey,
    /// The version the receiver holds, if any.
    pub held: Option<Version>,
}

/// A member's whole table, for a joining member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Whether the sender had loaded its own snapshot (a member that started with the
    /// others may answer before; its table may be empty).
    pub ready: bool,
    /// Every client with instances.
    pub records: Vec<ClientRecord>,
}

/// The answer to a forwarded command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Forwarded {
    /// Applied.
    Done,
    /// A beat: `Some(interval in ms)` recorded, `None` no such instance.
    Beat(Option<u64>),
    /// A health command: whether it changed.
    Health(bool),
    /// Refused: the HTTP status and Nacos's message.
    Error {
        /// HTTP status.
        status: u16,
        /// The message.
        message: String,
    },
}

impl Forwarded {
    /// The wire form of an outcome; `status_of` maps an error to its HTTP status.
    pub fn from_result(
        result: Result<Applied, NamingError>,
        status_of: impl Fn(&NamingError) -> u16,
    ) -> Self {
        match result {
            Ok(Applied::Done) => Forwarded::Done,
            Ok(Applied::Beat(BeatOutcome::Recorded { interval_ms })) => {
                Forwarded::Beat(Some(interval_ms))
            }
            Ok(Applied::Beat(BeatOutcome::NotFound)) => Forwarded::Beat(None),
            Ok(Applied::Health(changed)) => Forwarded::Health(changed),
            Err(e) => Forwarded::Error {
                status: status_of(&e),
                message: e.to_string(),
            },
        }
    }

    /// The outcome a forwarded answer stands for.
    pub(crate) fn into_result(self) -> Result<Applied, NamingError> {
        match self {
            Forwarded::Done => Ok(Applied::Done),
            Forwarded::Beat(Some(interval_ms)) => {
                Ok(Applied::Beat(BeatOutcome::Recorded { interval_ms }))
            }
            Forwarded::Beat(None) => Ok(Applied::Beat(BeatOutcome::NotFound)),
            Forwarded::Health(changed) => Ok(Applied::Health(changed)),
            Forwarded::Error { status, message } => Err(NamingError::Remote { status, message }),
        }
    }
}

/// How long a replicated client may go without its owner vouching for it before it
/// is dropped locally: three checksum rounds, and at least the owner grace.
pub fn stale_after_ms(verify_interval_ms: u64, owner_grace_ms: u64) -> u64 {
    verify_interval_ms.saturating_mul(3).max(owner_grace_ms)
}

/// How long a deleted client's version is remembered, so that an older record still
/// in flight cannot bring it back, milliseconds.
const TOMBSTONE_MS: u64 = 120_000;

struct ClientEntry {
    version: Version,
    services: BTreeSet<ServiceKey>,
    /// When its owner last vouched for it (or this node changed it).
    renewed_ms: u64,
}

/// The client manager of a cluster member: each client's version, services and last
/// renewal, and the queue of clients changed here.
pub(crate) struct Clients {
    member: Arc<str>,
    responsibility: Arc<dyn Responsibility>,
    owner_grace_ms: u64,
    stale_after_ms: u64,
    entries: Mutex<HashMap<InstanceKey, ClientEntry>>,
    /// Serializes merges, so a client's record and its instances change together.
    merging: Mutex<()>,
    changes: mpsc::UnboundedSender<InstanceKey>,
    last_cleanup_ms: AtomicU64,
}

/// The timings Distro runs with (`[cluster]`).
#[derive(Clone, Debug)]
pub struct DistroSettings {
    /// `cluster.sync_delay_ms`.
    pub sync_delay_ms: u64,
    /// `cluster.verify_interval_ms`.
    pub verify_interval_ms: u64,
    /// `cluster.owner_grace_ms`.
    pub owner_grace_ms: u64,
}

impl Clients {
    pub(crate) fn new(
        member: &str,
        responsibility: Arc<dyn Responsibility>,
        settings: &DistroSettings,
    ) -> (Self, mpsc::UnboundedReceiver<InstanceKey>) {
        let (changes, rx) = mpsc::unbounded_channel();
        (
            Self {
                member: member.into(),
                responsibility,
                owner_grace_ms: settings.owner_grace_ms,
                stale_after_ms: stale_after_ms(
                    settings.verify_interval_ms,
                    settings.owner_grace_ms,
                ),
                entries: Mutex::new(HashMap::new()),
                merging: Mutex::new(()),
                changes,
                last_cleanup_ms: AtomicU64::new(0),
            },
            rx,
        )
    }

    fn next_version(&self, previous: &Version, now: u64) -> Version {
        Version {
            counter: previous.counter.saturating_add(1).max(now),
            member: self.member.clone(),
        }
    }

    /// A change made here to client `ikey` in `service`: a new version, queued for the
    /// peers.
    fn touch(&self, service: &ServiceKey, ikey: &InstanceKey, now: u64) {
        let mut entries = self.entries.lock();
        let entry = entries.entry(ikey.clone()).or_insert_with(|| ClientEntry {
            version: Version::default(),
            services: BTreeSet::new(),
            renewed_ms: now,
        });
        entry.version = self.next_version(&entry.version, now);
        entry.services.insert(service.clone());
        entry.renewed_ms = now;
        drop(entries);
        let _ = self.changes.send(ikey.clone());
    }

    fn is_responsible(&self, ikey: &InstanceKey) -> bool {
        self.responsibility
            .is_responsible(&ClientId::http(&ikey.ip, ikey.port))
    }

    /// The client manager's say on a due instance (see [`Hold`]).
    fn hold(&self, ikey: &InstanceKey, last_beat_ms: u64, now: u64) -> Hold {
        if !self.is_responsible(ikey) {
            // Another member expires it; look again in a while (it may move here).
            return Hold::Until(now.saturating_add(5_000));
        }
        let renewed = self
            .entries
            .lock()
            .get(ikey)
            .map(|e| e.renewed_ms)
            .unwrap_or(0);
        let last = last_beat_ms.max(renewed);
        let moved = self.responsibility.moved_at_ms();
        let grace_end = moved.saturating_add(self.owner_grace_ms);
        if moved > 0 && last < moved && now < grace_end {
            return Hold::Until(grace_end.saturating_add(1));
        }
        Hold::Proceed { last_beat_ms: last }
    }
}

impl NamingService {
    fn clients(&self) -> Option<&Clients> {
        self.clients.as_deref()
    }

    /// Makes this naming service a Distro member named `member` (its address), whose
    /// responsible clients `responsibility` decides. Returns the queue of clients
    /// changed here, for [`Distro::run`].
    pub fn with_distro(
        mut self,
        member: &str,
        responsibility: Arc<dyn Responsibility>,
        settings: &DistroSettings,
    ) -> (Self, mpsc::UnboundedReceiver<InstanceKey>) {
        let (clients, rx) = Clients::new(member, responsibility, settings);
        self.clients = Some(Arc::new(clients));
        (self, rx)
    }

    /// Records a visible change of client `ikey`'s instance in `service` made by a
    /// write from `origin` (only this node's own writes are sent to peers).
    pub(crate) fn client_changed(
        &self,
        origin: &Origin,
        service: &ServiceKey,
        ikey: &InstanceKey,
        now: u64,
    ) {
        if let (Some(clients), Origin::Local) = (self.clients(), origin) {
            clients.touch(service, ikey, now);
        }
    }

    /// Applies the beat rules to the instances whose deadline passed at `now_ms`, only
    /// to clients this node is responsible for, and queues what changed for the peers
    /// (see the module docs).
    pub fn sweep_expired(&self, now_ms: u64) -> SweepReport {
        let Some(clients) = self.clients() else {
            return self.registry.sweep_expired(now_ms);
        };
        let report = self
            .registry
            .sweep_expired_with(now_ms, &|ikey, last| clients.hold(ikey, last, now_ms));
        for (service, ikey) in &report.changed {
            clients.touch(service, ikey, now_ms);
        }
        self.cleanup_clients(clients, now_ms);
        report
    }

    /// Forgets old deletions and drops replicated clients nobody vouched for lately
    /// (at most once a second).
    fn cleanup_clients(&self, clients: &Clients, now: u64) {
        let last = clients.last_cleanup_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000 {
            return;
        }
        clients.last_cleanup_ms.store(now, Ordering::Relaxed);
        // Silence counts from the last move too: after a partition heals or a member
        // comes back, an owner needs a checksum round to vouch for its clients again.
        let moved = clients.responsibility.moved_at_ms();
        let stale: Vec<(InstanceKey, Version)> = {
            let mut entries = clients.entries.lock();
            entries.retain(|_, e| {
                !(e.services.is_empty() && now.saturating_sub(e.renewed_ms) > TOMBSTONE_MS)
            });
            entries
                .iter()
                .filter(|(k, e)| {
                    !e.services.is_empty()
                        && now.saturating_sub(e.renewed_ms.max(moved)) > clients.stale_after_ms
                        && !clients.is_responsible(k)
                })
                .map(|(k, e)| (k.clone(), e.version.clone()))
                .collect()
        };
        for (client, version) in stale {
            tracing::info!(client = %format!("{}:{}", client.ip, client.port), "replicated client dropped: no owner vouched for it");
            let origin = Origin::Peer(clients.member.clone());
            let _guard = clients.merging.lock();
            self.replace_client(
                &ClientRecord {
                    client,
                    version,
                    instances: Vec::new(),
                },
                &origin,
                now,
            );
        }
    }

    /// The version of client `ikey`'s record here; `None` for a client this node never
    /// held (or standalone).
    pub fn client_version(&self, ikey: &InstanceKey) -> Option<Version> {
        self.clients()?
            .entries
            .lock()
            .get(ikey)
            .map(|e| e.version.clone())
    }

    /// The current record of client `ikey`; `None` for a client this node never held.
    pub fn client_record(&self, ikey: &InstanceKey) -> Option<ClientRecord> {
        let clients = self.clients()?;
        let (version, services) = {
            let entries = clients.entries.lock();
            let e = entries.get(ikey)?;
            (e.version.clone(), e.services.clone())
        };
        let mut instances = Vec::new();
        let mut gone = Vec::new();
        for service in services {
            // A snapshot's instances are sorted by their key, (ip, port).
            let found = self.registry.snapshot(&service).and_then(|snap| {
                snap.instances
                    .binary_search_by(|i| (&*i.ip, i.port).cmp(&(&*ikey.ip, ikey.port)))
                    .ok()
                    .map(|at| snap.instances[at].clone())
                    .filter(|i| i.ephemeral)
            });
            match found {
                Some(i) => instances.push(ReplicaInstance {
                    service,
                    cluster: i.cluster.to_string(),
                    weight: i.weight,
                    healthy: i.healthy,
                    enabled: i.enabled,
                    metadata: i.metadata.clone(),
                    id: i.id.as_deref().map(str::to_string),
                }),
                None => gone.push(service),
            }
        }
        if !gone.is_empty() {
            let mut entries = clients.entries.lock();
            if let Some(e) = entries.get_mut(ikey) {
                for s in &gone {
                    e.services.remove(s);
                }
            }
        }
        Some(ClientRecord {
            client: ikey.clone(),
            version,
            instances,
        })
    }

    /// Takes a peer's record of a client (see the module docs for the rules). Returns
    /// whether it was applied.
    pub fn merge_client(&self, record: ClientRecord, from: &str, now: u64) -> bool {
        let Some(clients) = self.clients() else {
            return false;
        };
        let _guard = clients.merging.lock();
        let (held, services) = {
            let entries = clients.entries.lock();
            match entries.get(&record.client) {
                Some(e) => (Some(e.version.clone()), e.services.clone()),
                None => (None, BTreeSet::new()),
            }
        };
        if let Some(held) = &held
            && *held >= record.version
        {
            if *held == record.version
                && let Some(e) = clients.entries.lock().get_mut(&record.client)
            {
                e.renewed_ms = now;
            }
            return false;
        }
        if record.instances.is_empty()
            && !services.is_empty()
            && clients.is_responsible(&record.client)
            && self.client_heard_from(&record.client, &services, now)
        {
            // Owner protection: our live copy goes out above the deletion.
            let mut entries = clients.entries.lock();
            if let Some(e) = entries.get_mut(&record.client) {
                e.version = clients.next_version(&record.version, now);
                e.renewed_ms = now;
            }
            drop(entries);
            let _ = clients.changes.send(record.client.clone());
            return false;
        }
        self.replace_client(&record, &Origin::Peer(Arc::from(from)), now);
        true
    }

    /// Whether an instance of client `ikey` in `services` beat within its beat timeout.
    fn client_heard_from(
        &self,
        ikey: &InstanceKey,
        services: &BTreeSet<ServiceKey>,
        now: u64,
    ) -> bool {
        services.iter().any(|service| {
            self.registry
                .update(service, None, &Origin::Local, now, |state, _| {
                    let alive = state.instances.get(ikey).is_some_and(|slot| {
                        slot.instance.ephemeral
                            && now.saturating_sub(slot.last_beat_ms)
                                <= slot.instance.beat_timeout_ms()
                    });
                    Outcome::Unchanged(alive)
                })
                .unwrap_or(false)
        })
    }

    /// Makes client `record.client`'s ephemeral instances exactly the record's, as a
    /// write from `origin`, and stores its version. Callers hold `merging`.
    fn replace_client(&self, record: &ClientRecord, origin: &Origin, now: u64) {
        let Some(clients) = self.clients() else {
            return;
        };
        let ikey = &record.client;
        let old: BTreeSet<ServiceKey> = clients
            .entries
            .lock()
            .get(ikey)
            .map(|e| e.services.clone())
            .unwrap_or_default();
        let mut kept = BTreeSet::new();
        for service in old
            .iter()
            .chain(record.instances.iter().map(|r| &r.service))
            .collect::<BTreeSet<_>>()
        {
            let wanted = record.instances.iter().find(|r| &r.service == service);
            let create = wanted.map(|_| true);
            let applied = self
                .registry
                .update(service, create, origin, now, |state, ctx| {
                    if !state.meta.ephemeral {
                        return Outcome::Unchanged(false);
                    }
                    let Some(r) = wanted else {
                        return match state.instances.remove(ikey) {
                            Some(mut slot) => {
                                ctx.cancel_expiry(&mut slot);
                                tracing::debug!(
                                    client = %format!("{}:{}", ikey.ip, ikey.port),
                                    service = %service,
                                    ?origin,
                                    version = ?record.version,
                                    "Distro: instance removed by a client record"
                                );
                                Outcome::Changed(false)
                            }
                            None => Outcome::Unchanged(false),
                        };
                    };
                    let existing = state
                        .instances
                        .get(ikey)
                        .map(|slot| slot.instance.ip.clone());
                    let instance = Instance {
                        ip: existing.unwrap_or_else(|| ikey.ip.clone()),
                        addr: Host::parse(&ikey.ip).ok().and_then(|h| h.ip()),
                        port: ikey.port,
                        weight: r.weight,
                        healthy: r.healthy,
                        enabled: r.enabled,
                        ephemeral: true,
                        cluster: state.intern_cluster(&r.cluster),
                        metadata: r.metadata.clone(),
                        id: r.id.as_deref().map(Arc::from),
                    };
                    let mut inserted = false;
                    let slot = state.instances.entry(ikey.clone()).or_insert_with(|| {
                        inserted = true;
                        Slot {
                            instance: Arc::new(instance.clone()),
                            overlay: None,
                            last_beat_ms: now,
                            due: None,
                        }
                    });
                    slot.last_beat_ms = slot.last_beat_ms.max(now);
                    let changed = inserted || *slot.instance != instance;
                    if changed {
                        slot.instance = Arc::new(instance);
                        slot.overlay = None;
                    }
                    let timeout = slot.instance.beat_timeout_ms();
                    ctx.schedule_expiry(slot, now.saturating_add(timeout).saturating_add(1));
                    if changed {
                        Outcome::Changed(true)
                    } else {
                        Outcome::Unchanged(true)
                    }
                });
            if applied == Some(true) {
                kept.insert(service.clone());
            }
        }
        let mut entries = clients.entries.lock();
        let entry = entries.entry(ikey.clone()).or_insert_with(|| ClientEntry {
            version: Version::default(),
            services: BTreeSet::new(),
            renewed_ms: now,
        });
        entry.version = record.version.clone();
        entry.services = kept;
        entry.renewed_ms = now;
    }

    /// The digests of the clients this node is responsible for and holds instances of.
    pub fn owned_digests(&self) -> Vec<Digest> {
        let Some(clients) = self.clients() else {
            return Vec::new();
        };
        let owned: Vec<InstanceKey> = clients
            .entries
            .lock()
            .iter()
            .filter(|(k, e)| !e.services.is_empty() && clients.is_responsible(k))
            .map(|(k, _)| k.clone())
            .collect();
        owned
            .iter()
            .filter_map(|k| self.client_record(k))
            .filter(|r| !r.instances.is_empty())
            .map(|r| Digest {
                checksum: r.checksum(),
                client: r.client,
                version: r.version,
            })
            .collect()
    }

    /// A checksum round from a peer: renews the clients that match and answers the
    /// ones this node wants (missing or different), with the version it holds.
    pub fn verify_digests(&self, digests: Vec<Digest>, now: u64) -> Vec<Want> {
        let Some(clients) = self.clients() else {
            return Vec::new();
        };
        let mut wants = Vec::new();
        for d in digests {
            match self.client_record(&d.client) {
                Some(local) if !local.instances.is_empty() && local.checksum() == d.checksum => {
                    if let Some(e) = clients.entries.lock().get_mut(&d.client) {
                        e.renewed_ms = now;
                    }
                }
                Some(local) => wants.push(Want {
                    client: d.client,
                    held: Some(local.version),
                }),
                None => wants.push(Want {
                    client: d.client,
                    held: None,
                }),
            }
        }
        wants
    }

    /// Every client record with instances, for a joining member.
    pub fn snapshot_records(&self) -> Vec<ClientRecord> {
        let Some(clients) = self.clients() else {
            return Vec::new();
        };
        let keys: Vec<InstanceKey> = clients
            .entries
            .lock()
            .iter()
            .filter(|(_, e)| !e.services.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| self.client_record(k))
            .filter(|r| !r.instances.is_empty())
            .collect()
    }

    /// Stamps client `ikey`'s record above `above` (a peer holds a newer version of a
    /// client this node owns) and queues it.
    fn restamp(&self, ikey: &InstanceKey, above: &Version, now: u64) {
        let Some(clients) = self.clients() else {
            return;
        };
        let mut entries = clients.entries.lock();
        if let Some(e) = entries.get_mut(ikey)
            && e.version <= *above
        {
            e.version = clients.next_version(above, now);
        }
    }
}

/// The Distro engine of one member: sends changes, runs checksum rounds, loads the
/// snapshot at start and forwards writes to owners. Share it in an `Arc`.
pub struct Distro {
    naming: Arc<NamingService>,
    membership: Arc<Membership>,
    client: PeerClient,
    settings: DistroSettings,
    queues: HashMap<String, Arc<PeerQueue>>,
}

#[derive(Default)]
struct PeerQueue {
    pending: Mutex<HashSet<InstanceKey>>,
    /// Since when the oldest pending change waits, ms since the epoch (0: none).
    oldest_ms: AtomicU64,
    notify: Notify,
}

impl PeerQueue {
    fn add(&self, keys: impl IntoIterator<Item = InstanceKey>, now: u64) {
        let mut pending = self.pending.lock();
        pending.extend(keys);
        if !pending.is_empty() {
            let _ = self
                .oldest_ms
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
        drop(pending);
        self.notify.notify_one();
    }
}

impl Distro {
    /// The engine of `naming` (made a member with [`NamingService::with_distro`]).
    pub fn new(
        naming: Arc<NamingService>,
        membership: Arc<Membership>,
        client: PeerClient,
        settings: DistroSettings,
    ) -> Arc<Self> {
        let queues = membership
            .peers()
            .iter()
            .map(|p| (p.clone(), Arc::new(PeerQueue::default())))
            .collect();
        Arc::new(Self {
            naming,
            membership,
            client,
            settings,
            queues,
        })
    }

    /// How long the oldest change not yet acknowledged by `peer` has waited,
    /// milliseconds (0: none waits).
    pub fn sync_lag_ms(&self, peer: &str) -> u64 {
        self.queues
            .get(peer)
            .map(|q| q.oldest_ms.load(Ordering::Acquire))
            .filter(|t| *t > 0)
            .map(|t| now_millis().saturating_sub(t))
            .unwrap_or(0)
    }

    /// The membership it runs over.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Runs the engine: loads a snapshot (the registry answers as not ready until
    /// then), sends changes from `changes`, and runs checksum rounds, until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<InstanceKey>,
        cancel: CancellationToken,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for (peer, queue) in &self.queues {
            tasks.spawn(
                self.clone()
                    .send_loop(peer.clone(), queue.clone(), cancel.clone()),
            );
        }
        tasks.spawn(self.clone().verify_loop(cancel.clone()));
        tasks.spawn(self.clone().load_snapshot(cancel.clone()));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                key = changes.recv() => {
                    let Some(key) = key else { break };
                    let mut batch = vec![key];
                    while let Ok(k) = changes.try_recv() {
                        batch.push(k);
                    }
                    let now = now_millis();
                    for queue in self.queues.values() {
                        queue.add(batch.iter().cloned(), now);
                    }
                }
            }
        }
        tasks.shutdown().await;
    }

    async fn send_loop(
        self: Arc<Self>,
        peer: String,
        queue: Arc<PeerQueue>,
        cancel: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = queue.notify.notified() => {}
            }
            // The merge window: changes in it go as one batch.
            tokio::time::sleep(Duration::from_millis(self.settings.sync_delay_ms)).await;
            loop {
                let keys: Vec<InstanceKey> = {
                    let mut pending = queue.pending.lock();
                    pending.drain().collect()
                };
                if keys.is_empty() {
                    queue.oldest_ms.store(0, Ordering::Release);
                    break;
                }
                let started = now_millis();
                let records: Vec<ClientRecord> = keys
                    .iter()
                    .filter_map(|k| self.naming.client_record(k))
                    .collect();
                let body = peer::encode(&records);
                match self
                    .client
                    .post(&peer, paths::SYNC, body, Duration::from_secs(5))
                    .await
                {
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        let pending_left = !queue.pending.lock().is_empty();
                        queue
                            .oldest_ms
                            .store(if pending_left { started } else { 0 }, Ordering::Release);
                    }
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "Distro sync failed; retrying");
                        queue.pending.lock().extend(keys);
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    async fn verify_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.settings.verify_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.naming.registry().is_ready() {
                continue;
            }
            let digests = self.naming.owned_digests();
            if digests.is_empty() {
                continue;
            }
            let body = peer::encode(&digests);
            for (peer, queue) in &self.queues {
                if !self.membership.is_up(peer) {
                    continue;
                }
                let answer = self
                    .client
                    .post(peer, paths::VERIFY, body.clone(), Duration::from_secs(5))
                    .await;
                let wants: Vec<Want> = match answer.and_then(|b| peer::decode(&b)) {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::debug!(peer, error = %e, "Distro verify failed");
                        continue;
                    }
                };
                if wants.is_empty() {
                    continue;
                }
                let now = now_millis();
                for want in &wants {
                    if let Some(held) = &want.held {
                        self.naming.restamp(&want.client, held, now);
                    }
                }
                tracing::debug!(peer, clients = wants.len(), "Distro verify: repairing");
                queue.add(wants.into_iter().map(|w| w.client), now);
            }
        }
    }

    /// Loads a peer's snapshot, then marks the registry ready. Asks the UP peers: a
    /// ready peer's snapshot is taken at once; when the peers that answer are all
    /// starting too (a cluster starting together), their snapshots are all taken; when
    /// every peer is DOWN, this member serves alone.
    async fn load_snapshot(self: Arc<Self>, cancel: CancellationToken) {
        let registry = self.naming.registry().clone();
        loop {
            let mut starting = Vec::new();
            for peer in self.membership.peers() {
                // Only peers that answer probes are asked (a listening but hung
                // peer would hold the load up to the timeout).
                if !self.membership.is_up(peer) {
                    continue;
                }
                let got = self
                    .client
                    .get(peer, paths::SNAPSHOT, Duration::from_secs(10))
                    .await
                    .and_then(|b| peer::decode::<Snapshot>(&b));
                match got {
                    Ok(snapshot) if snapshot.ready => {
                        let n = self.apply_snapshot(peer, snapshot.records);
                        tracing::info!(peer, clients = n, "Distro snapshot loaded");
                        registry.set_ready(true);
                        return;
                    }
                    Ok(snapshot) => starting.push((peer.clone(), snapshot.records)),
                    Err(e) => tracing::debug!(peer, error = %e, "Distro snapshot failed"),
                }
            }
            let all_down = self
                .membership
                .peers()
                .iter()
                .all(|p| self.membership.state(p) == Some(MemberState::Down));
            if !starting.is_empty() || all_down {
                let mut n = 0;
                for (peer, records) in starting {
                    n += self.apply_snapshot(&peer, records);
                }
                tracing::info!(
                    clients = n,
                    "Distro: no ready peer ({}); serving what this member holds",
                    if all_down {
                        "all are DOWN"
                    } else {
                        "the others are starting too"
                    }
                );
                registry.set_ready(true);
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    fn apply_snapshot(&self, peer: &str, records: Vec<ClientRecord>) -> usize {
        let now = now_millis();
        tracing::debug!(peer, records = records.len(), "applying a Distro snapshot");
        records
            .into_iter()
            .filter(|r| self.naming.merge_client(r.clone(), peer, now))
            .count()
    }

    /// The member that takes `command`'s writes: the responsible member of its
    /// client for an ephemeral instance's register, deregister, update and beat;
    /// `None`: this one.
    fn owner_of(&self, command: &NamingCommand) -> Option<String> {
        let client = self.client_of(command)?;
        let owner = self
            .membership
            .responsible(&ClientId::http(&client.ip, client.port));
        (owner != self.membership.this()).then_some(owner)
    }

    /// The ephemeral client a command writes, if it writes one.
    pub fn client_of(&self, command: &NamingCommand) -> Option<InstanceKey> {
        let client = match command {
            NamingCommand::Register { instance, .. } if instance.ephemeral => {
                InstanceKey::new(&instance.ip, instance.port)
            }
            NamingCommand::Deregister {
                client,
                ephemeral: true,
                ..
            }
            | NamingCommand::Beat { client, .. } => client.clone(),
            NamingCommand::UpdateInstance {
                service, client, ..
            } if self
                .naming
                .service(service)
                .is_some_and(|s| s.meta.ephemeral) =>
            {
                client.clone()
            }
            _ => return None,
        };
        Some(client)
    }

    /// Applies `command` where it belongs: forwarded to the responsible member when
    /// that is another one, which applies it and answers; here otherwise. When the
    /// owner cannot be reached, the command is applied here (availability first): it
    /// then reaches every member as this member's change.
    pub async fn submit(&self, command: NamingCommand) -> Result<Applied, NamingError> {
        let Some(owner) = self.owner_of(&command) else {
            return self.naming.apply(command, Origin::Local, now_millis());
        };
        let body = peer::encode(&command);
        match self
            .client
            .post(&owner, paths::FORWARD, body, Duration::from_secs(2))
            .await
        {
            Ok(bytes) => match peer::decode::<(Forwarded, Option<ClientRecord>)>(&bytes) {
                Ok((answer, record)) => {
                    // Read your writes: the member the client called holds the change
                    // when it answers, not a sync later.
                    if let Some(record) = record {
                        self.naming.merge_client(record, &owner, now_millis());
                    }
                    answer.into_result()
                }
                Err(e) => Err(NamingError::Remote {
                    status: 502,
                    message: format!("bad answer from {owner}: {e}"),
                }),
            },
            Err(PeerError::Unreachable { .. }) => {
                tracing::debug!(owner, "owner unreachable; the write is applied here");
                self.naming.apply(command, Origin::Local, now_millis())
            }
            Err(e) => Err(NamingError::Remote {
                status: 502,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::cluster::responsibility::Standalone;
    use crate::model::DEFAULT_CLUSTER;
    use crate::naming::InstanceSpec;
    use crate::naming::registry::Registry;

    fn settings() -> DistroSettings {
        DistroSettings {
            sync_delay_ms: 0,
            verify_interval_ms: 1_000,
            owner_grace_ms: 3_000,
        }
    }

    /// A member that is responsible for every client (or for none).
    struct Fixed(bool);

    impl Responsibility for Fixed {
        fn is_responsible(&self, _: &ClientId) -> bool {
            self.0
        }
    }

    fn member(name: &str, owns: bool) -> NamingService {
        let responsibility: Arc<dyn Responsibility> = if owns {
            Arc::new(Standalone)
        } else {
            Arc::new(Fixed(false))
        };
        NamingService::new(Arc::new(Registry::new()))
            .with_distro(name, responsibility, &settings())
            .0
    }

    fn spec(ip: &str, weight: f64) -> InstanceSpec {
        InstanceSpec {
            ip: ip.into(),
            host: Host::parse(ip).unwrap(),
            port: 8080,
            cluster: DEFAULT_CLUSTER.into(),
            weight,
            enabled: true,
            healthy: true,
            ephemeral: true,
            metadata: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        }
    }

    fn state_of(naming: &NamingService) -> Vec<String> {
        naming
            .registry()
            .service_keys(None)
            .iter()
            .filter_map(|key| naming.service(key))
            .map(|snap| {
                let instances: Vec<String> = snap
                    .instances
                    .iter()
                    .map(|i| {
                        format!(
                            "{}:{} w{} h{} e{} {:?}",
                            i.ip, i.port, i.weight, i.healthy, i.enabled, i.metadata
                        )
                    })
                    .collect();
                format!("{} {:?}", snap.key, instances)
            })
            .filter(|s| !s.ends_with("[]"))
            .collect()
    }

    #[test]
    fn a_record_carries_the_client_to_another_member() {
        let a = member("a:1", true);
        let b = member("b:1", false);
        let stock = ServiceKey::new("", "DEFAULT_GROUP", "stock");
        let pay = ServiceKey::new("", "DEFAULT_GROUP", "pay");
        a.register(&stock, spec("10.0.0.1", 2.0)).unwrap();
        a.register(&pay, spec("10.0.0.1", 1.0)).unwrap();
        let ikey = InstanceKey::new("10.0.0.1", 8080);
        let record = a.client_record(&ikey).unwrap();
        assert_eq!(record.instances.len(), 2);
        assert!(b.merge_client(record.clone(), "a:1", 1));
        assert_eq!(state_of(&a), state_of(&b));
        // The same record again changes nothing; a checksum round finds them equal.
        assert!(!b.merge_client(record, "a:1", 2));
        assert!(b.verify_digests(a.owned_digests(), 3).is_empty());
        // A deregistration is a record without that service.
        a.deregister(&pay, &ikey, true);
        assert!(b.merge_client(a.client_record(&ikey).unwrap(), "a:1", 4));
        assert_eq!(state_of(&a), state_of(&b));
    }

    #[test]
    fn the_merge_is_commutative_and_idempotent() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(12);
        let services: Vec<ServiceKey> = ["stock", "pay", "cart"]
            .iter()
            .map(|s| ServiceKey::new("", "DEFAULT_GROUP", *s))
            .collect();
        for round in 0..40 {
            // Records of 3 clients at random versions from 3 members, some deletions.
            let mut records = Vec::new();
            for _ in 0..12 {
                let client = InstanceKey::new(&format!("10.0.0.{}", rng.random_range(1..4)), 8080);
                let chosen: Vec<&ServiceKey> =
                    services.iter().filter(|_| rng.random_bool(0.6)).collect();
                let instances: Vec<ReplicaInstance> = chosen
                    .into_iter()
                    .map(|s| ReplicaInstance {
                        service: s.clone(),
                        cluster: DEFAULT_CLUSTER.into(),
                        weight: f64::from(rng.random_range(0..4u8)),
                        healthy: rng.random_bool(0.8),
                        enabled: rng.random_bool(0.8),
                        metadata: BTreeMap::from([(
                            "v".to_string(),
                            rng.random_range(0..3u8).to_string(),
                        )]),
                        id: None,
                    })
                    .collect();
                let version = Version {
                    counter: rng.random_range(1..20),
                    member: ["a:1", "b:1", "c:1"][rng.random_range(0..3)].into(),
                };
                // A member never stamps two contents with one version.
                if records
                    .iter()
                    .any(|r: &ClientRecord| r.client == client && r.version == version)
                {
                    continue;
                }
                records.push(ClientRecord {
                    client,
                    version,
                    instances,
                });
            }
            let expected = {
                let m = member("x:1", false);
                let mut sorted = records.clone();
                sorted.sort_by(|x, y| x.version.cmp(&y.version));
                for r in sorted {
                    m.merge_client(r, "p", 1);
                }
                state_of(&m)
            };
            for _ in 0..4 {
                let m = member("x:1", false);
                let mut shuffled = records.clone();
                shuffled.shuffle(&mut rng);
                // Some twice: idempotent.
                let again: Vec<ClientRecord> = shuffled
                    .iter()
                    .filter(|_| rng.random_bool(0.3))
                    .cloned()
                    .collect();
                for r in shuffled.into_iter().chain(again) {
                    m.merge_client(r, "p", 1);
                }
                assert_eq!(state_of(&m), expected, "round {round}");
            }
            // The pure merge agrees: the maximum whatever the order.
            let max = records.iter().fold(&records[0], |acc, r| merge(acc, r));
            let max_rev = records
                .iter()
                .rev()
                .fold(&records[records.len() - 1], |acc, r| merge(acc, r));
            assert_eq!(max.version, max_rev.version);
        }
    }

    /// Responsible for nothing; the responsible set last changed at `.0`.
    struct Elsewhere(AtomicU64);

    impl Responsibility for Elsewhere {
        fn is_responsible(&self, _: &ClientId) -> bool {
            false
        }

        fn moved_at_ms(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_replica_nobody_vouches_for_goes_but_not_right_after_a_move() {
        let responsibility = Arc::new(Elsewhere(AtomicU64::new(0)));
        let b = NamingService::new(Arc::new(Registry::new()))
            .with_distro("b:1", responsibility.clone(), &settings())
            .0;
        let a = member("a:1", true);
        let stock = ServiceKey::new("", "DEFAULT_GROUP", "stock");
        a.register(&stock, spec("10.0.0.1", 1.0)).unwrap();
        let ikey = InstanceKey::new("10.0.0.1", 8080);
        let t0 = 1_800_000_000_000;
        assert!(b.merge_client(a.client_record(&ikey).unwrap(), "a:1", t0));
        let stale = stale_after_ms(1_000, 3_000);
        // A partition healed just now: its owner gets a round to vouch for it first.
        responsibility.0.store(t0 + stale, Ordering::Relaxed);
        b.sweep_expired(t0 + stale + 10);
        assert_eq!(b.service(&stock).unwrap().instances.len(), 1);
        // Nobody vouched for it since: it goes.
        b.sweep_expired(t0 + 2 * stale + 20);
        assert!(b.service(&stock).unwrap().instances.is_empty());
    }

    #[test]
    fn an_owner_refuses_a_peer_deleting_a_client_it_hears_from() {
        let a = member("a:1", true);
        let stock = ServiceKey::new("", "DEFAULT_GROUP", "stock");
        let ikey = InstanceKey::new("10.0.0.1", 8080);
        a.register(&stock, spec("10.0.0.1", 1.0)).unwrap();
        let mine = a.client_record(&ikey).unwrap();
        // A minority member expired it during a partition, with a later version.
        let deletion = ClientRecord {
            client: ikey.clone(),
            version: Version {
                counter: mine.version.counter + 10,
                member: "b:1".into(),
            },
            instances: Vec::new(),
        };
        assert!(!a.merge_client(deletion.clone(), "b:1", now_millis()));
        assert_eq!(a.service(&stock).unwrap().instances.len(), 1);
        let restamped = a.client_record(&ikey).unwrap();
        assert!(
            restamped.version > deletion.version,
            "the live copy goes out above it"
        );
    }
}
