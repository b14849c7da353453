//! The in-memory registry: the single source of truth for services and instances inside
//! a process (DESIGN §1).
//!
//! Shape: one table of service cells keyed by [`ServiceKey`], plus a case-folded index
//! for DNS. Each cell holds the writable state behind a mutex and an immutable
//! [`ServiceSnapshot`] behind an `ArcSwap`.
//!
//! Invariants:
//! * every visible change bumps the service's revision, marks the snapshot stale and
//!   emits one [`ChangeEvent`]; a beat that changes nothing visible bumps nothing;
//! * readers never wait on a writer for long: a fresh snapshot costs a map lookup and an
//!   `Arc` clone; a stale one is rebuilt once, by the first reader after the write, so a
//!   burst of registrations costs one rebuild, not one per write;
//! * expiry is driven by a deadline queue: each ephemeral instance has at most one
//!   pending entry, removed with its slot, so a sweep touches only instances whose
//!   deadline passed and a deregistered instance keeps no memory in the queue;
//! * a service's instances are keyed by their client's `ip:port` (Nacos 2.x): one
//!   instance per client and service, its cluster an attribute.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use super::command::Origin;
use crate::model::{FoldedKey, Instance, InstanceKey, ServiceKey, ServiceMeta};

pub use crate::model::now_millis;

/// A change to one service, sent to every subscriber (DNS, push, replication).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// The service that changed.
    pub key: ServiceKey,
    /// Its revision after the change (registry-wide, increasing); 0 when the service
    /// was removed.
    pub revision: u64,
    /// Where the change came from.
    pub origin: Origin,
}

/// An immutable view of one service at one revision. Cheap to share.
#[derive(Debug)]
pub struct ServiceSnapshot {
    /// The service's key.
    pub key: ServiceKey,
    /// Revision, raised on every visible change; drawn from a registry-wide counter, so
    /// it never repeats, even for a service removed and created again.
    pub revision: u64,
    /// Service-level settings.
    pub meta: ServiceMeta,
    /// Instances, ordered by `(ip, port, cluster)`.
    pub instances: Vec<Arc<Instance>>,
    /// Lowercase hex MD5 over the service name and its instances' identity, weight and
    /// health (as Nacos 1.x `Service#recalculateChecksum`); changes with the revision.
    pub checksum: String,
}

pub(crate) struct Slot {
    /// The instance as readers see it: the registration with the overlay laid over it.
    pub(crate) instance: Arc<Instance>,
    /// What `PUT /ns/instance` laid over the registration (Nacos 2.x instance
    /// metadata), kept across re-registrations in the same cluster.
    pub(crate) overlay: Option<Box<Overlay>>,
    /// Last beat (or registration), milliseconds since the epoch.
    pub(crate) last_beat_ms: u64,
    /// This slot's entry in the expiry queue, `(sequence, deadline)`: the only one it
    /// has, removed with the slot.
    pub(crate) due: Option<(u64, u64)>,
}

impl Slot {
    /// The instance as registered, before any overlay.
    pub(crate) fn registered(&self) -> &Arc<Instance> {
        self.overlay
            .as_ref()
            .map(|o| &o.registered)
            .unwrap_or(&self.instance)
    }
}

/// An update laid over a registration: weight and enabled replace the registered
/// ones, metadata is merged over the registered metadata.
pub(crate) struct Overlay {
    /// The instance as last registered.
    pub(crate) registered: Arc<Instance>,
    pub(crate) weight: f64,
    pub(crate) enabled: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl Overlay {
    /// The instance readers see, with health `healthy` (soft state, not part of either).
    pub(crate) fn apply(&self, healthy: bool) -> Instance {
        let mut visible = (*self.registered).clone();
        visible.weight = self.weight;
        visible.enabled = self.enabled;
        visible.healthy = healthy;
        for (k, v) in &self.metadata {
            visible.metadata.insert(k.clone(), v.clone());
        }
        visible
    }
}

/// The latest a deadline is queued ahead: a later one is checked (and re-queued) then,
/// so entries left by deregistered instances with huge timeouts do not pile up.
const MAX_QUEUE_AHEAD_MS: u64 = 3_600_000;

/// The writable state of one service. Only the naming module mutates it, through
/// [`Registry::update`].
pub(crate) struct ServiceState {
    pub(crate) meta: ServiceMeta,
    pub(crate) instances: BTreeMap<InstanceKey, Slot>,
    /// Cluster names in use, shared by every instance of a cluster.
    clusters: Vec<Arc<str>>,
    /// When the service last lost its last instance, milliseconds since the epoch.
    emptied_at_ms: u64,
    /// The queue entry that checks whether the service may go, `(deadline, sequence)`.
    empty_due: Option<(u64, u64)>,
}

impl ServiceState {
    /// The shared text of a cluster name (one allocation per cluster, not per instance).
    pub(crate) fn intern_cluster(&mut self, name: &str) -> Arc<str> {
        if let Some(c) = self.clusters.iter().find(|c| &***c == name) {
            return c.clone();
        }
        let c: Arc<str> = Arc::from(name);
        self.clusters.push(c.clone());
        c
    }
}

struct ServiceCell {
    key: ServiceKey,
    /// The kind of instance the service holds; set at creation, never changed (a copy
    /// of `ServiceMeta::ephemeral`, readable without the lock).
    ephemeral: bool,
    state: Mutex<CellState>,
    snapshot: ArcSwap<ServiceSnapshot>,
    dirty: AtomicBool,
    /// The revision of the latest change (the next snapshot's), 0 once the service is
    /// removed: what a [`RevisionWatch`] reads.
    latest: AtomicU64,
}

/// A handle on one service's revision that reads it without a lock or a lookup: one
/// atomic load (the DNS fast path checks its cached answers with it on every query).
#[derive(Clone)]
pub struct RevisionWatch(Arc<ServiceCell>);

impl RevisionWatch {
    /// The revision of the service's latest change; 0 once it is removed (revisions
    /// start at 1). A snapshot whose `revision` differs is out of date.
    pub fn revision(&self) -> u64 {
        self.0.latest.load(Ordering::Acquire)
    }
}

struct CellState {
    revision: u64,
    removed: bool,
    data: ServiceState,
}

/// What an expiry deadline is for: an instance of a service, or with no instance,
/// whether the service itself is empty and may go. Holds `Arc`s, so an entry costs
/// no allocation besides the queue's.
struct Due {
    cell: Arc<ServiceCell>,
    instance: Option<InstanceKey>,
}

/// The expiry queue, ordered by `(deadline, sequence)`: an entry is removed when its
/// slot goes, so a deregistered instance holds nothing in it.
type ExpiryQueue = BTreeMap<(u64, u64), Due>;

/// What a write closure gets besides the state: the time of the write and the means to
/// queue an instance for expiry.
pub(crate) struct WriteCtx<'a> {
    /// Milliseconds since the epoch: the time the write was given (never read from the
    /// clock here).
    pub(crate) now: u64,
    registry: &'a Registry,
    cell: &'a Arc<ServiceCell>,
}

impl WriteCtx<'_> {
    /// Counts one more persistent instance in `namespace`, unless the namespace
    /// holds `per_namespace` already or the registry `total` (then the limit that
    /// stopped it, and nothing is counted).
    pub(crate) fn reserve_persistent(
        &self,
        namespace: &str,
        per_namespace: usize,
        total: usize,
    ) -> Result<(), PersistentLimitHit> {
        let mut counts = self.registry.persistent.lock();
        if counts.total >= total {
            return Err(PersistentLimitHit::Total);
        }
        let n = counts.by_namespace.get(namespace).copied().unwrap_or(0);
        if n >= per_namespace {
            return Err(PersistentLimitHit::Namespace);
        }
        counts.by_namespace.insert(namespace.to_string(), n + 1);
        counts.total += 1;
        Ok(())
    }

    /// Counts one persistent instance of `namespace` less.
    pub(crate) fn release_persistent(&self, namespace: &str) {
        let mut counts = self.registry.persistent.lock();
        if let Some(n) = counts.by_namespace.get_mut(namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_namespace.remove(namespace);
            }
            counts.total = counts.total.saturating_sub(1);
        }
    }

    /// Puts an instance on the expiry queue at `at_ms` (at most an hour ahead), unless
    /// its entry is due at that time or earlier; an earlier deadline replaces a later
    /// one.
    pub(crate) fn schedule_expiry(&self, slot: &mut Slot, at_ms: u64) {
        let at_ms = at_ms.min(self.now.saturating_add(MAX_QUEUE_AHEAD_MS));
        if slot.due.is_some_and(|(_, pending)| pending <= at_ms) {
            return;
        }
        let seq = self.registry.expiry_seq.fetch_add(1, Ordering::Relaxed);
        let mut queue = self.registry.expiry.lock();
        if let Some((old_seq, old_at)) = slot.due.replace((seq, at_ms)) {
            queue.remove(&(old_at, old_seq));
        }
        queue.insert(
            (at_ms, seq),
            Due {
                cell: self.cell.clone(),
                instance: Some(slot.instance.key()),
            },
        );
    }

    /// Takes the slot's entry off the expiry queue (the slot is going).
    pub(crate) fn cancel_expiry(&self, slot: &mut Slot) {
        if let Some((seq, at)) = slot.due.take() {
            self.registry.expiry.lock().remove(&(at, seq));
        }
    }
}

#[derive(Default)]
struct PersistentCounts {
    by_namespace: HashMap<String, usize>,
    total: usize,
}

/// Which limit refused a persistent instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PersistentLimitHit {
    /// The namespace's.
    Namespace,
    /// The node's.
    Total,
}

#[derive(Default)]
struct Tables {
    services: HashMap<ServiceKey, Arc<ServiceCell>>,
    /// Every service a folded name stands for, oldest first.
    folded: HashMap<FoldedKey, Vec<ServiceKey>>,
    /// For every proper suffix of a service's DNS name (folded labels joined by
    /// dots, e.g. `default_group` or `g._dev`), how many services have a name below
    /// it: such a name is an empty non-terminal (RFC 8020: NODATA, not NXDOMAIN).
    dns_suffixes: HashMap<String, usize>,
}

/// The proper suffixes of a service's DNS name (see `Tables::dns_suffixes`).
fn dns_suffixes(key: &ServiceKey) -> Vec<String> {
    let Some(labels) = key.dns_labels() else {
        return Vec::new();
    };
    (1..labels.len()).map(|i| labels[i..].join(".")).collect()
}

/// What a write closure reports back to [`Registry::update`].
pub(crate) enum Outcome<R> {
    /// Something visible changed: bump the revision and notify.
    Changed(R),
    /// Nothing visible changed.
    Unchanged(R),
}

/// What a sweep of the expiry queue did.
#[derive(Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Services removed because they stayed empty (auto-created ones only).
    pub removed_services: Vec<ServiceKey>,
    /// Instances that turned unhealthy, `(service, instance id)`.
    pub unhealthy: Vec<(ServiceKey, String)>,
    /// Instances removed, `(service, instance id)`.
    pub removed: Vec<(ServiceKey, String)>,
    /// The clients of every instance that turned unhealthy or was removed (what
    /// Distro sends to the peers).
    pub changed: Vec<(ServiceKey, InstanceKey)>,
}

/// What the owner of the expiry rules says about one due instance (see
/// [`Registry::sweep_expired_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Apply the beat rules, counting silence from `last_beat_ms`.
    Proceed {
        /// The latest sign of life, milliseconds since the epoch.
        last_beat_ms: u64,
    },
    /// Not now: look again at this time, milliseconds since the epoch (this node is
    /// not responsible for the client, or its grace runs).
    Until(u64),
}

/// How many services that differ only by case (case twins, one DNS name) DNS
/// considers for a name: the oldest ones. Nacos allows 2^n spellings of an n-letter
/// name; a query must not build a snapshot of each.
pub const MAX_CASE_TWINS: usize = 8;

/// What a member loads before its table is ready (see [`Registry::is_ready`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadyPart {
    /// Ephemeral instances: a peer's Distro snapshot.
    Distro = 1,
    /// CP data: caught up with the Raft leader (or no leader to catch up with).
    Raft = 2,
}

/// The registry table. Cloning is not offered: share it in an `Arc`.
pub struct Registry {
    /// Sequence numbers of expiry entries.
    expiry_seq: AtomicU64,
    /// Bumped whenever a service is created or removed: which service a (folded) name
    /// resolves to can change only then.
    generation: AtomicU64,
    /// Source of revisions, shared by all services so that a service removed and
    /// created again never repeats a revision a cache may still hold.
    revisions: AtomicU64,
    /// Milliseconds an auto-created service may stay empty before it is removed.
    empty_service_ttl_ms: u64,
    tables: RwLock<Tables>,
    expiry: Mutex<ExpiryQueue>,
    events: broadcast::Sender<ChangeEvent>,
    instance_count: AtomicU64,
    /// Persistent instances per namespace and in all (see
    /// `naming.max_persistent_instances_per_namespace`).
    persistent: Mutex<PersistentCounts>,
    /// What the table still waits for before it holds what the cluster holds, as
    /// [`ReadyPart`] bits (a joining member waits for a peer's Distro snapshot and to
    /// catch up with the Raft leader): DNS answers SERVFAIL meanwhile.
    pending: std::sync::atomic::AtomicU8,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// How long an auto-created service may stay empty, as Nacos 2.x
/// `nacos.naming.clean.empty-service.expired-time` (60 s).
pub const DEFAULT_EMPTY_SERVICE_TTL_MS: u64 = 60_000;

impl Registry {
    /// An empty registry; empty auto-created services go after 60 s.
    pub fn new() -> Self {
        Self::with_empty_service_ttl(DEFAULT_EMPTY_SERVICE_TTL_MS)
    }

    /// An empty registry whose auto-created services are removed once they have been
    /// empty for `ttl_ms` milliseconds. Services created through the service API stay.
    pub fn with_empty_service_ttl(ttl_ms: u64) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            revisions: AtomicU64::new(0),
            expiry_seq: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            empty_service_ttl_ms: ttl_ms,
            tables: RwLock::new(Tables::default()),
            expiry: Mutex::new(BTreeMap::new()),
            events,
            instance_count: AtomicU64::new(0),
            persistent: Mutex::new(PersistentCounts::default()),
            pending: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// Whether the table is loaded (always on a single node; in a cluster once a
    /// peer's snapshot is in). Readers that would answer authoritatively from an
    /// unloaded table (DNS, readiness) must refuse instead.
    pub fn is_ready(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Marks the ephemeral data (Distro's part) loaded or not (see
    /// [`Registry::is_ready`]).
    pub fn set_ready(&self, ready: bool) {
        self.set_part_ready(ReadyPart::Distro, ready);
    }

    /// Marks one part of the table loaded or not; the table is ready once every part
    /// is.
    pub fn set_part_ready(&self, part: ReadyPart, ready: bool) {
        let bit = part as u8;
        if ready {
            self.pending.fetch_and(!bit, Ordering::AcqRel);
        } else {
            self.pending.fetch_or(bit, Ordering::AcqRel);
        }
    }

    /// Subscribes to change events. A subscriber that falls more than 4096 events behind
    /// gets `Lagged` and should re-read the snapshots it cares about.
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    /// The current snapshot of a service, if it exists.
    pub fn snapshot(&self, key: &ServiceKey) -> Option<Arc<ServiceSnapshot>> {
        let cell = self.tables.read().services.get(key).cloned()?;
        Some(Self::fresh_snapshot(&cell))
    }

    /// Snapshots of the services whose case-folded key matches, for DNS, in the order
    /// they were created, at most the oldest [`MAX_CASE_TWINS`] (see `dns::zone` for
    /// which one answers). Empty when none does.
    pub fn find_folded(&self, folded: &FoldedKey) -> Vec<Arc<ServiceSnapshot>> {
        let cells: Vec<Arc<ServiceCell>> = {
            let tables = self.tables.read();
            let Some(keys) = tables.folded.get(folded) else {
                return Vec::new();
            };
            keys.iter()
                .take(MAX_CASE_TWINS)
                .filter_map(|k| tables.services.get(k).cloned())
                .collect()
        };
        cells.iter().map(|c| Self::fresh_snapshot(c)).collect()
    }

    /// Whether a DNS name below the zone (`folded`: its labels, lower case, joined by
    /// dots) has service names below it but is none itself: an empty non-terminal.
    pub fn is_dns_empty_non_terminal(&self, folded: &str) -> bool {
        self.tables.read().dns_suffixes.contains_key(folded)
    }

    /// Keys of every service in a namespace (all namespaces when `None`), sorted.
    pub fn service_keys(&self, namespace: Option<&str>) -> Vec<ServiceKey> {
        let tables = self.tables.read();
        let mut keys: Vec<ServiceKey> = tables
            .services
            .keys()
            .filter(|k| namespace.is_none_or(|ns| k.namespace == ns))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Snapshots of every service that holds persistent instances.
    pub fn persistent_snapshots(&self) -> Vec<Arc<ServiceSnapshot>> {
        let cells: Vec<Arc<ServiceCell>> = self
            .tables
            .read()
            .services
            .values()
            .filter(|c| !c.ephemeral)
            .cloned()
            .collect();
        cells.iter().map(|c| Self::fresh_snapshot(c)).collect()
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.tables.read().services.len()
    }

    /// The service-set generation: changes whenever a service is created or removed,
    /// so a cache of name-to-service resolutions is valid while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of entries in the expiry queue.
    pub fn queued_expiries(&self) -> usize {
        self.expiry.lock().len()
    }

    /// Number of persistent instances in `namespace`.
    pub fn persistent_count(&self, namespace: &str) -> usize {
        self.persistent
            .lock()
            .by_namespace
            .get(namespace)
            .copied()
            .unwrap_or(0)
    }

    /// Number of instances in all services.
    pub fn instance_count(&self) -> u64 {
        self.instance_count.load(Ordering::Relaxed)
    }

    /// A watch on service `key`'s revision; `None` when it does not exist.
    pub fn watch(&self, key: &ServiceKey) -> Option<RevisionWatch> {
        self.tables
            .read()
            .services
            .get(key)
            .map(|cell| RevisionWatch(cell.clone()))
    }

    fn fresh_snapshot(cell: &ServiceCell) -> Arc<ServiceSnapshot> {
        if cell.dirty.load(Ordering::Acquire) {
            let state = cell.state.lock();
            if cell.dirty.load(Ordering::Acquire) {
                let snap = Arc::new(build_snapshot(&cell.key, &state));
                cell.snapshot.store(snap.clone());
                cell.dirty.store(false, Ordering::Release);
                return snap;
            }
        }
        cell.snapshot.load_full()
    }

    /// Runs `f` on the state of service `key` under its lock, as a write from `origin`
    /// at `now` (milliseconds since the epoch). With `create = Some(ephemeral)`, a
    /// missing service is created first, with default settings and holding instances of
    /// that kind; with `None`, a missing service gives `None`. A `Changed` outcome
    /// bumps the revision and emits an event.
    pub(crate) fn update<R>(
        &self,
        key: &ServiceKey,
        create: Option<bool>,
        origin: &Origin,
        now: u64,
        f: impl FnOnce(&mut ServiceState, &WriteCtx<'_>) -> Outcome<R>,
    ) -> Option<R> {
        loop {
            let cell = self.cell(key, create, origin, now)?;
            let state = cell.state.lock();
            if state.removed {
                // Lost a race with remove_service; look the service up again.
                continue;
            }
            return Some(self.apply(&cell, state, origin, now, f));
        }
    }

    /// Runs `f` on the state of one cell under its lock; `None` when the service was
    /// removed meanwhile.
    fn update_cell<R>(
        &self,
        cell: &Arc<ServiceCell>,
        origin: &Origin,
        now: u64,
        f: impl FnOnce(&mut ServiceState, &WriteCtx<'_>) -> Outcome<R>,
    ) -> Option<R> {
        let state = cell.state.lock();
        if state.removed {
            return None;
        }
        Some(self.apply(cell, state, origin, now, f))
    }

    fn apply<R>(
        &self,
        cell: &Arc<ServiceCell>,
        mut state: parking_lot::MutexGuard<'_, CellState>,
        origin: &Origin,
        now: u64,
        f: impl FnOnce(&mut ServiceState, &WriteCtx<'_>) -> Outcome<R>,
    ) -> R {
        let ctx = WriteCtx {
            now,
            registry: self,
            cell,
        };
        let before = state.data.instances.len();
        let outcome = f(&mut state.data, &ctx);
        let after = state.data.instances.len();
        self.adjust_count(before, after);
        if before > 0 && after == 0 && !state.data.meta.explicit {
            state.data.emptied_at_ms = ctx.now;
            let at = ctx.now.saturating_add(self.empty_service_ttl_ms);
            let seq = self.expiry_seq.fetch_add(1, Ordering::Relaxed);
            let mut queue = self.expiry.lock();
            if let Some(old) = state.data.empty_due.replace((at, seq)) {
                queue.remove(&old);
            }
            queue.insert(
                (at, seq),
                Due {
                    cell: cell.clone(),
                    instance: None,
                },
            );
        }
        match outcome {
            Outcome::Unchanged(r) => r,
            Outcome::Changed(r) => {
                state.revision = self.next_revision();
                let revision = state.revision;
                cell.dirty.store(true, Ordering::Release);
                cell.latest.store(revision, Ordering::Release);
                drop(state);
                self.notify(&cell.key, revision, origin);
                r
            }
        }
    }

    fn next_revision(&self) -> u64 {
        self.revisions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends a change event, without building one when nobody listens.
    fn notify(&self, key: &ServiceKey, revision: u64, origin: &Origin) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(ChangeEvent {
                key: key.clone(),
                revision,
                origin: origin.clone(),
            });
        }
    }

    fn adjust_count(&self, before: usize, after: usize) {
        if after > before {
            self.instance_count
                .fetch_add((after - before) as u64, Ordering::Relaxed);
        } else if before > after {
            self.instance_count
                .fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
    }

    fn cell(
        &self,
        key: &ServiceKey,
        create: Option<bool>,
        origin: &Origin,
        now: u64,
    ) -> Option<Arc<ServiceCell>> {
        if let Some(cell) = self.tables.read().services.get(key) {
            return Some(cell.clone());
        }
        let ephemeral = create?;
        let mut tables = self.tables.write();
        if let Some(cell) = tables.services.get(key) {
            return Some(cell.clone());
        }
        let revision = self.next_revision();
        // Created empty: if nothing lands in it (a refused registration), it goes
        // after its empty-service TTL like any emptied service.
        let empty_due = (
            now.saturating_add(self.empty_service_ttl_ms),
            self.expiry_seq.fetch_add(1, Ordering::Relaxed),
        );
        let state = CellState {
            revision,
            removed: false,
            data: ServiceState {
                meta: ServiceMeta {
                    ephemeral,
                    ..ServiceMeta::default()
                },
                instances: BTreeMap::new(),
                clusters: Vec::new(),
                emptied_at_ms: now,
                empty_due: Some(empty_due),
            },
        };
        let cell = Arc::new(ServiceCell {
            key: key.clone(),
            ephemeral,
            snapshot: ArcSwap::from_pointee(build_snapshot(key, &state)),
            state: Mutex::new(state),
            dirty: AtomicBool::new(false),
            latest: AtomicU64::new(revision),
        });
        tables.services.insert(key.clone(), cell.clone());
        self.expiry.lock().insert(
            empty_due,
            Due {
                cell: cell.clone(),
                instance: None,
            },
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        tables
            .folded
            .entry(key.folded())
            .or_default()
            .push(key.clone());
        for suffix in dns_suffixes(key) {
            *tables.dns_suffixes.entry(suffix).or_default() += 1;
        }
        drop(tables);
        if let Some(why) = key.dns_unreachable() {
            tracing::info!(service = %key, "service has no DNS name: {why}");
        }
        self.notify(key, revision, origin);
        Some(cell)
    }

    /// Removes a service, as a write from `origin`. `check` sees its state first and
    /// may refuse with an error. Returns `Ok(false)` when the service does not exist.
    pub(crate) fn remove_service<E>(
        &self,
        key: &ServiceKey,
        origin: &Origin,
        check: impl FnOnce(&ServiceState) -> Result<(), E>,
    ) -> Result<bool, E> {
        self.remove_cell(key, None, origin, check)
    }

    /// Removes service `key` if it is still `expected` (any cell with `None`) and
    /// `check` agrees; its queued empty-service check goes with it.
    fn remove_cell<E>(
        &self,
        key: &ServiceKey,
        expected: Option<&Arc<ServiceCell>>,
        origin: &Origin,
        check: impl FnOnce(&ServiceState) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut tables = self.tables.write();
        let Some(cell) = tables.services.get(key).cloned() else {
            return Ok(false);
        };
        if expected.is_some_and(|e| !Arc::ptr_eq(e, &cell)) {
            // Another service of that name since: not the one the entry was for.
            return Ok(false);
        }
        let mut state = cell.state.lock();
        check(&state.data)?;
        state.removed = true;
        cell.latest.store(0, Ordering::Release);
        self.adjust_count(state.data.instances.len(), 0);
        if let Some(due) = state.data.empty_due.take() {
            self.expiry.lock().remove(&due);
        }
        drop(state);
        tables.services.remove(key);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let folded = key.folded();
        if let Some(keys) = tables.folded.get_mut(&folded) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                tables.folded.remove(&folded);
            }
        }
        for suffix in dns_suffixes(key) {
            if let Some(count) = tables.dns_suffixes.get_mut(&suffix) {
                *count -= 1;
                if *count == 0 {
                    tables.dns_suffixes.remove(&suffix);
                }
            }
        }
        drop(tables);
        self.notify(key, 0, origin);
        Ok(true)
    }

    /// Removes an auto-created service that has had no instance since its deadline was
    /// set (a registration in between cancels it: the service is not empty, or was
    /// emptied again later and has a later deadline).
    fn remove_if_still_empty(
        &self,
        cell: &Arc<ServiceCell>,
        now_ms: u64,
        report: &mut SweepReport,
    ) {
        let removable = |state: &ServiceState| {
            state.instances.is_empty()
                && !state.meta.explicit
                && state
                    .emptied_at_ms
                    .saturating_add(self.empty_service_ttl_ms)
                    <= now_ms
        };
        if self
            .remove_cell(&cell.key, Some(cell), &Origin::Local, |state| {
                if removable(state) { Ok(()) } else { Err(()) }
            })
            .unwrap_or(false)
        {
            report.removed_services.push(cell.key.clone());
        }
    }

    /// Pops every expiry deadline that has passed at `now_ms` and applies the beat
    /// rules (as Nacos `ClientBeatCheckTask`): past the beat timeout an instance turns
    /// unhealthy, past the delete timeout it is removed; otherwise it is queued again at
    /// its next deadline. Only ephemeral instances are ever queued. Its changes are
    /// local ones ([`Origin::Local`]).
    pub fn sweep_expired(&self, now_ms: u64) -> SweepReport {
        self.sweep_expired_with(now_ms, &|_, last_beat_ms| Hold::Proceed { last_beat_ms })
    }

    /// [`Registry::sweep_expired`], asking `hold` first about each due instance (its
    /// client and last beat): the client manager's say on who expires what and from
    /// when (DESIGN §2).
    pub fn sweep_expired_with(
        &self,
        now_ms: u64,
        hold: &dyn Fn(&InstanceKey, u64) -> Hold,
    ) -> SweepReport {
        let mut report = SweepReport::default();
        // Take this sweep's batch first: entries re-queued while processing it wait for
        // the next sweep, so a deadline that saturates at `u64::MAX` cannot spin here.
        let batch: Vec<((u64, u64), Due)> = {
            let mut queue = self.expiry.lock();
            let mut batch = Vec::new();
            while queue
                .first_key_value()
                .is_some_and(|((at, _), _)| *at <= now_ms)
            {
                if let Some(entry) = queue.pop_first() {
                    batch.push(entry);
                }
            }
            batch
        };
        for ((_, seq), due) in batch {
            let Some(instance_key) = due.instance else {
                self.remove_if_still_empty(&due.cell, now_ms, &mut report);
                continue;
            };
            let service = due.cell.key.clone();
            self.update_cell(&due.cell, &Origin::Local, now_ms, |state, ctx| {
                let Some(slot) = state.instances.get_mut(&instance_key) else {
                    return Outcome::Unchanged(());
                };
                if slot.due.map(|(s, _)| s) != Some(seq) {
                    // Not this slot's entry (it was re-queued while this one popped).
                    return Outcome::Unchanged(());
                }
                slot.due = None;
                let inst = slot.instance.clone();
                if !inst.ephemeral {
                    return Outcome::Unchanged(());
                }
                let last_beat_ms = match hold(&instance_key, slot.last_beat_ms) {
                    Hold::Proceed { last_beat_ms } => last_beat_ms,
                    Hold::Until(at) => {
                        ctx.schedule_expiry(slot, at.max(now_ms.saturating_add(1)));
                        return Outcome::Unchanged(());
                    }
                };
                let silent = now_ms.saturating_sub(last_beat_ms);
                if silent > inst.delete_timeout_ms() {
                    state.instances.remove(&instance_key);
                    report
                        .removed
                        .push((service.clone(), inst.instance_id(&service)));
                    report.changed.push((service.clone(), instance_key.clone()));
                    return Outcome::Changed(());
                }
                let delete_at = last_beat_ms
                    .saturating_add(inst.delete_timeout_ms())
                    .saturating_add(1);
                if silent > inst.beat_timeout_ms() {
                    ctx.schedule_expiry(slot, delete_at);
                    if inst.healthy {
                        let mut changed = (*inst).clone();
                        changed.healthy = false;
                        slot.instance = Arc::new(changed);
                        report
                            .unhealthy
                            .push((service.clone(), inst.instance_id(&service)));
                        report.changed.push((service.clone(), instance_key.clone()));
                        return Outcome::Changed(());
                    }
                    return Outcome::Unchanged(());
                }
                let next = if inst.healthy {
                    last_beat_ms
                        .saturating_add(inst.beat_timeout_ms())
                        .saturating_add(1)
                } else {
                    delete_at
                };
                ctx.schedule_expiry(slot, next);
                Outcome::Unchanged(())
            });
        }
        report
    }
}

/// A read-only handle on the registry for its readers (DNS, push, HTTP reads):
/// snapshots, lookups and change events, and nothing that can change the table
/// (DESIGN §1). Cheap to clone. Each method is the [`Registry`] method of the same name.
#[derive(Clone)]
pub struct RegistryView(Arc<Registry>);

impl RegistryView {
    /// A view of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self(registry)
    }

    /// See [`Registry::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.0.subscribe()
    }

    /// See [`Registry::snapshot`].
    pub fn snapshot(&self, key: &ServiceKey) -> Option<Arc<ServiceSnapshot>> {
        self.0.snapshot(key)
    }

    /// See [`Registry::find_folded`].
    pub fn find_folded(&self, folded: &FoldedKey) -> Vec<Arc<ServiceSnapshot>> {
        self.0.find_folded(folded)
    }

    /// See [`Registry::is_dns_empty_non_terminal`].
    pub fn is_dns_empty_non_terminal(&self, folded: &str) -> bool {
        self.0.is_dns_empty_non_terminal(folded)
    }

    /// See [`Registry::service_keys`].
    pub fn service_keys(&self, namespace: Option<&str>) -> Vec<ServiceKey> {
        self.0.service_keys(namespace)
    }

    /// See [`Registry::service_count`].
    pub fn service_count(&self) -> usize {
        self.0.service_count()
    }

    /// See [`Registry::instance_count`].
    pub fn instance_count(&self) -> u64 {
        self.0.instance_count()
    }

    /// See [`Registry::generation`].
    pub fn generation(&self) -> u64 {
        self.0.generation()
    }

    /// See [`Registry::is_ready`].
    pub fn is_ready(&self) -> bool {
        self.0.is_ready()
    }

    /// See [`Registry::watch`].
    pub fn watch(&self, key: &ServiceKey) -> Option<RevisionWatch> {
        self.0.watch(key)
    }
}

fn build_snapshot(key: &ServiceKey, state: &CellState) -> ServiceSnapshot {
    use md5::{Digest, Md5};
    let instances: Vec<Arc<Instance>> = state
        .data
        .instances
        .values()
        .map(|slot| slot.instance.clone())
        .collect();
    let mut hasher = Md5::new();
    hasher.update(key.grouped_name().as_bytes());
    for i in &instances {
        hasher.update(
            format!(
                "{}:{}_{}_{}_{},",
                i.ip, i.port, i.weight, i.healthy, i.cluster
            )
            .as_bytes(),
        );
    }
    ServiceSnapshot {
        key: key.clone(),
        revision: state.revision,
        meta: state.data.meta.clone(),
        instances,
        checksum: hex(&hasher.finalize()),
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
