//! The naming use cases: register, deregister, update, beat, query, and service
//! management, with Nacos's semantics (see `shared/nacos-api.md` §1–3).
//!
//! Owns the [`registry::Registry`]; never imports HTTP, DNS or storage types. Every
//! write is a [`command::NamingCommand`], submitted by the front doors to the
//! [`dispatch::NamingDispatcher`] and applied by [`NamingService::apply`] with its origin
//! and time; the methods named after each write (`register`, `beat`, …) apply one from
//! this node at the clock's time, for tests and tools. Every write goes through the
//! registry so that readers see one consistent snapshot and subscribers get one change
//! event per visible change.

pub mod command;
pub mod dispatch;
pub mod distro;
pub mod ids;
pub mod persistent;
pub mod registry;
pub mod selection;
pub mod service_info;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{ClusterMeta, Host, Instance, InstanceKey, ServiceKey, ServiceMeta};
use command::{Applied, NamingCommand, Origin};
use registry::{Outcome, Overlay, Registry, ServiceSnapshot, Slot, now_millis};

/// Errors of the naming use cases. Each carries what a caller needs to render Nacos's
/// message.
#[derive(Debug, Error, PartialEq)]
pub enum NamingError {
    /// The service does not exist (Nacos 2.x wording).
    #[error("service not found, namespace: {}, service: {}", .0.namespace, .0.grouped_name())]
    ServiceNotFound(ServiceKey),
    /// `POST /ns/service` for a service that exists.
    #[error("specified service {} already exists!", .0.grouped_name())]
    ServiceExists(ServiceKey),
    /// `DELETE /ns/service` while instances are registered.
    #[error("Service {} is not empty, can't be delete. Please unregister instance first", .0.grouped_name())]
    ServiceNotEmpty(ServiceKey),
    /// The instance does not exist.
    #[error("no matched ip found! instance {ip}:{port} in cluster {cluster} of service {}", key.grouped_name())]
    InstanceNotFound {
        /// The service searched.
        key: ServiceKey,
        /// The instance's `ip` parameter.
        ip: String,
        /// Its port.
        port: u16,
        /// Its cluster.
        cluster: String,
    },
    /// A registration of the other kind than the service holds (Nacos 2.x makes
    /// ephemerality a property of the service).
    #[error("Current service {} is {} service, can't register {} instance.", key.grouped_name(), kind(*service_ephemeral), kind(!service_ephemeral))]
    KindMismatch {
        /// The service.
        key: ServiceKey,
        /// The kind the service holds.
        service_ephemeral: bool,
    },
    /// A new persistent instance past `naming.max_persistent_instances_per_namespace`
    /// or `naming.max_persistent_instances`.
    #[error("{scope} holds {max} persistent instances, the most {setting} allows")]
    PersistentLimit {
        /// What is full: `namespace <id>`, or `this node`.
        scope: String,
        /// The limit.
        max: usize,
        /// The setting that sets it.
        setting: &'static str,
    },
    /// Metadata that breaks Nacos's rules once merged (see
    /// [`crate::model::validate_beat_metadata`]); the text names the key.
    #[error("{0}")]
    BadMetadata(String),
    /// A command whose access proof does not allow writing its service (checked by
    /// the dispatcher against the service the command writes).
    #[error("user {who} has no write permission on service {} of namespace {}", key.grouped_name(), key.namespace)]
    AccessDenied {
        /// Who the proof was for.
        who: String,
        /// The service.
        key: ServiceKey,
    },
    /// Refused by the member a write was forwarded to (Distro), with its status and
    /// message.
    #[error("{message}")]
    Remote {
        /// The HTTP status the member answered with.
        status: u16,
        /// Its message.
        message: String,
    },
    /// Manual health for a cluster whose instances are probed (as Nacos
    /// `HealthOperatorV2Impl`): only clusters with the `NONE` checker take it.
    #[error("health check is still working, service: {}, cluster: {cluster}", key.grouped_name())]
    HealthCheckRunning {
        /// The service.
        key: ServiceKey,
        /// The cluster.
        cluster: String,
    },
}

impl NamingError {
    /// The HTTP status Nacos answers this error with: 400 for a refused request, 404
    /// for a missing instance, 403 for a denied write, a member's own status for
    /// [`NamingError::Remote`].
    pub fn status(&self) -> u16 {
        match self {
            NamingError::ServiceNotFound(_)
            | NamingError::ServiceExists(_)
            | NamingError::ServiceNotEmpty(_)
            | NamingError::KindMismatch { .. }
            | NamingError::PersistentLimit { .. }
            | NamingError::BadMetadata(_)
            | NamingError::HealthCheckRunning { .. } => 400,
            NamingError::InstanceNotFound { .. } => 404,
            NamingError::AccessDenied { .. } => 403,
            NamingError::Remote { status, .. } => *status,
        }
    }
}

fn kind(ephemeral: bool) -> &'static str {
    if ephemeral { "ephemeral" } else { "persistent" }
}

/// A registration or an update, fully validated by the caller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// The `ip` parameter.
    pub ip: String,
    /// The parsed host.
    pub host: Host,
    /// Port.
    pub port: u16,
    /// Cluster name.
    pub cluster: String,
    /// Weight, `0.0..=10000.0`.
    pub weight: f64,
    /// Enabled flag.
    pub enabled: bool,
    /// Initial health (Nacos accepts `healthy` on register).
    pub healthy: bool,
    /// Ephemeral (beats) or persistent.
    pub ephemeral: bool,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
}

/// What `PUT` / `PATCH /ns/instance` lays over a registration; `None` keeps the
/// instance's current value (weight, enabled) or the earlier update's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceUpdate {
    /// Weight, `0.0..=10000.0`.
    pub weight: Option<f64>,
    /// Enabled flag.
    pub enabled: Option<bool>,
    /// Metadata merged over the registration's.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// What a beat found (as Nacos `InstanceController#beat`).
#[derive(Clone, Debug, PartialEq)]
pub enum BeatOutcome {
    /// The beat was recorded; the client should beat again after `interval_ms`.
    Recorded {
        /// `clientBeatInterval`, milliseconds.
        interval_ms: u64,
    },
    /// No such instance: the client should register again (code 20404).
    NotFound,
}

/// Service settings given to create or update a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Protect threshold, 0.0..=1.0.
    pub protect_threshold: f32,
    /// Service metadata.
    pub metadata: BTreeMap<String, String>,
    /// Selector JSON (serialized as its JSON text).
    #[serde(with = "crate::model::json_text")]
    pub selector: Option<serde_json::Value>,
    /// The kind of instance a service created with this spec holds (ignored by
    /// updates, which keep the service's kind).
    pub ephemeral: bool,
}

/// One persistent instance to probe, with the settings of its cluster.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    /// Its service.
    pub service: ServiceKey,
    /// The instance as last seen (its health decides which way a result may flip it).
    pub instance: Arc<Instance>,
    /// Its cluster's checker and check port.
    pub cluster: Arc<ClusterMeta>,
}

/// The naming use cases over one registry. Share it in an `Arc`.
pub struct NamingService {
    registry: Arc<Registry>,
    max_persistent_per_namespace: usize,
    max_persistent: usize,
    snowflake: ids::SnowflakeIds,
    /// The client manager of a cluster member (see [`distro`]); `None` standalone.
    clients: Option<Arc<distro::Clients>>,
}

impl NamingService {
    /// A naming service over `registry`, without a limit on persistent instances,
    /// giving snowflake ids as worker 0.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            max_persistent_per_namespace: usize::MAX,
            max_persistent: usize::MAX,
            snowflake: ids::SnowflakeIds::new(0),
            clients: None,
        }
    }

    /// Gives snowflake instance ids as `worker` (see [`ids::SnowflakeIds::worker_of`]).
    pub fn with_snowflake_worker(mut self, worker: u16) -> Self {
        self.snowflake = ids::SnowflakeIds::new(worker);
        self
    }

    /// Refuses new persistent instances in a namespace that holds `max` already
    /// (`naming.max_persistent_instances_per_namespace`): each one is probed by the
    /// server, so their number is what a namespace user can make the server probe.
    pub fn with_max_persistent_per_namespace(mut self, max: usize) -> Self {
        self.max_persistent_per_namespace = max;
        self
    }

    /// Refuses new persistent instances once the node holds `max`
    /// (`naming.max_persistent_instances`), whatever their namespaces.
    pub fn with_max_persistent(mut self, max: usize) -> Self {
        self.max_persistent = max;
        self
    }

    /// The registry, for readers (DNS, list) and workers.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A read-only view of the registry, for readers (DNS, push, lists).
    pub fn view(&self) -> registry::RegistryView {
        registry::RegistryView::new(self.registry.clone())
    }

    /// Registers (or re-registers) an instance, creating the service if needed (as Nacos
    /// `InstanceController#register`). An instance is its client's `ip:port`, one per
    /// service (as Nacos 2.x): registering it in another cluster moves it there. A
    /// re-registration keeps the instance id (a `snowflake` one too, while the cluster
    /// stays), keeps what `PUT /ns/instance` laid over it (while the cluster stays, as
    /// Nacos 2.x keys that by `ip:port:cluster`, and while the merged metadata still
    /// passes the beat rules and size limit) and restarts its beat clock.
    /// Ephemeral instances are queued for beat expiry.
    ///
    /// Errors with [`NamingError::KindMismatch`] when the service holds the other kind
    /// of instance, [`NamingError::PersistentLimit`] for a new persistent instance in a
    /// full namespace.
    pub fn register(&self, key: &ServiceKey, spec: InstanceSpec) -> Result<(), NamingError> {
        self.register_at(key, spec, &Origin::Local, now_millis())
    }

    /// Applies a command from `origin` at `now_ms` (milliseconds since the epoch): the
    /// one deterministic write function (DESIGN §1). The same commands applied to
    /// registries in the same state at the same times leave them the same. Errors as
    /// the method of the same name ([`NamingService::register`], …).
    pub fn apply(
        &self,
        command: NamingCommand,
        origin: Origin,
        now_ms: u64,
    ) -> Result<Applied, NamingError> {
        let origin = &origin;
        match command {
            NamingCommand::Register { service, instance } => self
                .register_at(&service, instance, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::Deregister {
                service,
                client,
                ephemeral,
            } => {
                self.deregister_at(&service, &client, ephemeral, origin, now_ms);
                Ok(Applied::Done)
            }
            NamingCommand::UpdateInstance {
                service,
                client,
                cluster,
                update,
            } => self
                .update_at(&service, &client, &cluster, update, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::Beat {
                service,
                client,
                full,
            } => self
                .beat_at(&service, &client, full, origin, now_ms)
                .map(Applied::Beat),
            NamingCommand::SetProbedHealth {
                service,
                client,
                cluster,
                checker,
                healthy,
            } => Ok(Applied::Health(self.set_probed_health_at(
                &service, &client, &cluster, &checker, healthy, origin, now_ms,
            ))),
            NamingCommand::SetManualHealth {
                service,
                client,
                cluster,
                healthy,
            } => self
                .set_manual_health_at(&service, &client, &cluster, healthy, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::UpdateCluster {
                service,
                cluster,
                meta,
            } => self
                .update_cluster_at(&service, &cluster, meta, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::CreateService { service, spec } => self
                .create_service_at(&service, spec, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::UpdateService { service, spec } => self
                .update_service_at(&service, spec, origin, now_ms)
                .map(|()| Applied::Done),
            NamingCommand::RemoveService { service } => self
                .remove_service_at(&service, origin)
                .map(|()| Applied::Done),
        }
    }

    fn register_at(
        &self,
        key: &ServiceKey,
        spec: InstanceSpec,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        let ikey_ip = spec.ip.clone();
        let port = spec.port;
        let registered =
            self.registry
                .update(key, Some(spec.ephemeral), origin, now, |state, ctx| {
                    if state.meta.ephemeral != spec.ephemeral {
                        return Outcome::Unchanged(Err(NamingError::KindMismatch {
                            key: key.clone(),
                            service_ephemeral: state.meta.ephemeral,
                        }));
                    }
                    let now = ctx.now;
                    let ikey = InstanceKey {
                        ip: Arc::from(spec.ip.as_str()),
                        port: spec.port,
                    };
                    let healthy = spec.healthy;
                    let mut instance = Instance {
                        ip: ikey.ip.clone(),
                        addr: spec.host.ip(),
                        port: spec.port,
                        weight: spec.weight,
                        healthy,
                        enabled: spec.enabled,
                        ephemeral: spec.ephemeral,
                        cluster: state.intern_cluster(&spec.cluster),
                        metadata: spec.metadata,
                        id: None,
                    };
                    let ephemeral = instance.ephemeral;
                    let (slot, changed) = match state.instances.get_mut(&ikey) {
                        Some(slot) => {
                            // Share the key's text instead of keeping a second copy.
                            instance.ip = slot.instance.ip.clone();
                            let previous = slot.registered();
                            let same_cluster = previous.cluster == instance.cluster;
                            if instance.wants_snowflake_id() {
                                instance.id = previous
                                    .id
                                    .clone()
                                    .filter(|_| same_cluster)
                                    .or_else(|| Some(self.snowflake_id(now, &instance, key)));
                            }
                            if !same_cluster {
                                slot.overlay = None;
                            }
                            let instance = Arc::new(instance);
                            let merged = slot.overlay.as_mut().and_then(|overlay| {
                                overlay.registered = instance.clone();
                                let visible = overlay.apply(healthy);
                                // An update that breaks the beat rules or the size limit
                                // over the new registration's metadata goes.
                                crate::model::validate_beat_metadata(&visible.metadata)
                                    .and_then(|_| {
                                        crate::model::check_metadata_size(&visible.metadata)
                                    })
                                    .is_ok()
                                    .then_some(visible)
                            });
                            if merged.is_none() {
                                slot.overlay = None;
                            }
                            let visible = merged.unwrap_or_else(|| Arc::unwrap_or_clone(instance));
                            let changed = *slot.instance != visible;
                            if changed {
                                slot.instance = Arc::new(visible);
                            }
                            slot.last_beat_ms = now;
                            (slot, changed)
                        }
                        None => {
                            if !ephemeral
                                && let Err(hit) = ctx.reserve_persistent(
                                    &key.namespace,
                                    self.max_persistent_per_namespace,
                                    self.max_persistent,
                                )
                            {
                                return Outcome::Unchanged(Err(self.persistent_limit(key, hit)));
                            }
                            if instance.wants_snowflake_id() {
                                instance.id = Some(self.snowflake_id(now, &instance, key));
                            }
                            let slot = state.instances.entry(ikey).or_insert(Slot {
                                instance: Arc::new(instance),
                                overlay: None,
                                last_beat_ms: now,
                                due: None,
                            });
                            (slot, true)
                        }
                    };
                    if ephemeral {
                        let timeout = slot.instance.beat_timeout_ms();
                        ctx.schedule_expiry(slot, now.saturating_add(timeout).saturating_add(1));
                    }
                    if changed {
                        Outcome::Changed(Ok(ephemeral))
                    } else {
                        Outcome::Unchanged(Ok(false))
                    }
                });
        // `update` with `create` always finds or makes the service.
        if registered.unwrap_or(Ok(false))? {
            self.client_changed(origin, key, &InstanceKey::new(&ikey_ip, port), now);
        }
        Ok(())
    }

    fn persistent_limit(&self, key: &ServiceKey, hit: registry::PersistentLimitHit) -> NamingError {
        match hit {
            registry::PersistentLimitHit::Namespace => NamingError::PersistentLimit {
                scope: format!("namespace {}", key.namespace),
                max: self.max_persistent_per_namespace,
                setting: "naming.max_persistent_instances_per_namespace",
            },
            registry::PersistentLimitHit::Total => NamingError::PersistentLimit {
                scope: "this node".into(),
                max: self.max_persistent,
                setting: "naming.max_persistent_instances",
            },
        }
    }

    fn snowflake_id(&self, now_ms: u64, instance: &Instance, key: &ServiceKey) -> Arc<str> {
        Arc::from(self.snowflake.instance_id(now_ms, &instance.cluster, key))
    }

    /// Removes the instance of client `ikey` of the given kind, whatever its cluster
    /// (as Nacos 2.x). Succeeds when it does not exist, or is of the other kind, which
    /// stays (as Nacos 2.x, where the two kinds live in different clients).
    pub fn deregister(&self, key: &ServiceKey, ikey: &InstanceKey, ephemeral: bool) {
        self.deregister_at(key, ikey, ephemeral, &Origin::Local, now_millis());
    }

    fn deregister_at(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        ephemeral: bool,
        origin: &Origin,
        now: u64,
    ) {
        let removed = self.registry.update(key, None, origin, now, |state, ctx| {
            if state
                .instances
                .get(ikey)
                .is_some_and(|slot| slot.instance.ephemeral == ephemeral)
            {
                if let Some(mut slot) = state.instances.remove(ikey) {
                    ctx.cancel_expiry(&mut slot);
                }
                if !ephemeral {
                    ctx.release_persistent(&key.namespace);
                }
                Outcome::Changed(true)
            } else {
                Outcome::Unchanged(false)
            }
        });
        if ephemeral && removed == Some(true) {
            self.client_changed(origin, key, ikey, now);
        }
    }

    /// `PUT` and `PATCH /nacos/v1/ns/instance`: lays `update` over the registration of
    /// the instance of client `ikey` in `cluster` (as Nacos 2.x instance metadata): its
    /// weight and enabled flag replace the registered ones, its metadata is merged over
    /// the registered metadata (so the `preserved.*` keys of the registration stay
    /// unless the update names them). The update replaces an earlier update, and stays
    /// when the instance registers again in the same cluster. Health is not touched.
    ///
    /// Errors: [`NamingError::ServiceNotFound`]; [`NamingError::InstanceNotFound`] when
    /// no such instance is registered in `cluster` (Nacos 2.x would keep the update for
    /// a later registration; Nacre refuses, so a PUT never goes unnoticed); and
    /// [`NamingError::BadMetadata`] when the merged metadata breaks the beat rules.
    pub fn update(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        update: InstanceUpdate,
    ) -> Result<(), NamingError> {
        self.update_at(key, ikey, cluster, update, &Origin::Local, now_millis())
    }

    fn update_at(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        update: InstanceUpdate,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        let not_found = || NamingError::InstanceNotFound {
            key: key.clone(),
            ip: ikey.ip.to_string(),
            port: ikey.port,
            cluster: cluster.to_string(),
        };
        let changed = self
            .registry
            .update(key, None, origin, now, |state, _| {
                let Some(slot) = state
                    .instances
                    .get_mut(ikey)
                    .filter(|slot| &*slot.instance.cluster == cluster)
                else {
                    return Outcome::Unchanged(Err(not_found()));
                };
                let overlay = Overlay {
                    registered: slot.registered().clone(),
                    weight: update.weight.unwrap_or(slot.instance.weight),
                    enabled: update.enabled.unwrap_or(slot.instance.enabled),
                    metadata: match update.metadata {
                        Some(m) => m,
                        None => slot
                            .overlay
                            .as_ref()
                            .map(|o| o.metadata.clone())
                            .unwrap_or_default(),
                    },
                };
                let visible = overlay.apply(slot.instance.healthy);
                if let Err(e) = crate::model::validate_beat_metadata(&visible.metadata)
                    .and_then(|_| crate::model::check_metadata_size(&visible.metadata))
                {
                    return Outcome::Unchanged(Err(NamingError::BadMetadata(e)));
                }
                slot.overlay = Some(Box::new(overlay));
                if visible == *slot.instance {
                    return Outcome::Unchanged(Ok(false));
                }
                let ephemeral = visible.ephemeral;
                slot.instance = Arc::new(visible);
                Outcome::Changed(Ok(ephemeral))
            })
            .unwrap_or_else(|| Err(NamingError::ServiceNotFound(key.clone())))?;
        if changed {
            self.client_changed(origin, key, ikey, now);
        }
        Ok(())
    }

    /// Records a beat (as Nacos `InstanceController#beat`): refreshes the beat clock and
    /// turns an unhealthy instance healthy. With `full` (the client's beat JSON), a
    /// missing instance is registered from it first. Only ephemeral instances take
    /// beats: for a persistent one (health by probes) the beat finds nothing, as in
    /// Nacos 2.x, where beats go to the ephemeral client of `ip:port`.
    ///
    /// Errors only when `full` registers into a service of the other kind.
    pub fn beat(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        full: Option<InstanceSpec>,
    ) -> Result<BeatOutcome, NamingError> {
        self.beat_at(key, ikey, full, &Origin::Local, now_millis())
    }

    fn beat_at(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        full: Option<InstanceSpec>,
        origin: &Origin,
        now: u64,
    ) -> Result<BeatOutcome, NamingError> {
        let found = self.registry.update(key, None, origin, now, |state, ctx| {
            let now = ctx.now;
            let Some(slot) = state
                .instances
                .get_mut(ikey)
                .filter(|slot| slot.instance.ephemeral)
            else {
                return Outcome::Unchanged(None);
            };
            slot.last_beat_ms = now;
            let interval_ms = slot.instance.beat_interval_ms();
            let at = now
                .saturating_add(slot.instance.beat_timeout_ms())
                .saturating_add(1);
            ctx.schedule_expiry(slot, at);
            if slot.instance.healthy {
                return Outcome::Unchanged(Some((interval_ms, false)));
            }
            let mut next = (*slot.instance).clone();
            next.healthy = true;
            slot.instance = Arc::new(next);
            Outcome::Changed(Some((interval_ms, true)))
        });
        match (found.flatten(), full) {
            (Some((interval_ms, revived)), _) => {
                if revived {
                    self.client_changed(origin, key, ikey, now);
                }
                Ok(BeatOutcome::Recorded { interval_ms })
            }
            (None, Some(spec)) => {
                self.register_at(key, spec, origin, now)?;
                self.beat_at(key, ikey, None, origin, now)
            }
            (None, None) => Ok(BeatOutcome::NotFound),
        }
    }

    /// Sets the health of a persistent instance as a probe with `checker` of its
    /// `cluster` found it. Returns whether it changed; `false` also when the instance
    /// is gone or ephemeral, when it now belongs to another cluster (re-registered
    /// there while the probe ran), or when its cluster's checker is no longer
    /// `checker` (so a probe that was in flight when the cluster was switched to
    /// manual health changes nothing).
    pub fn set_probed_health(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        checker: &crate::model::HealthChecker,
        healthy: bool,
    ) -> bool {
        self.set_probed_health_at(
            key,
            ikey,
            cluster,
            checker,
            healthy,
            &Origin::Local,
            now_millis(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn set_probed_health_at(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        checker: &crate::model::HealthChecker,
        healthy: bool,
        origin: &Origin,
        now: u64,
    ) -> bool {
        self.registry
            .update(key, None, origin, now, |state, _| {
                let probed = state.instances.get(ikey).is_some_and(|slot| {
                    *slot.instance.cluster == *cluster
                        && state.meta.cluster(cluster).health_checker == *checker
                });
                if !probed {
                    return Outcome::Unchanged(false);
                }
                set_health(state, ikey, healthy)
            })
            .unwrap_or(false)
    }

    /// `PUT /nacos/v1/ns/health/instance`: sets the health of the persistent instance
    /// of client `ikey` in `cluster` by hand, allowed only when that cluster's checker
    /// is `NONE` (as Nacos 2.x `HealthOperatorV2Impl`; a missing instance, or one in
    /// another cluster, is no error and changes nothing). Errors with
    /// [`NamingError::HealthCheckRunning`] otherwise, also for a missing service.
    pub fn set_manual_health(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        healthy: bool,
    ) -> Result<(), NamingError> {
        self.set_manual_health_at(key, ikey, cluster, healthy, &Origin::Local, now_millis())
    }

    fn set_manual_health_at(
        &self,
        key: &ServiceKey,
        ikey: &InstanceKey,
        cluster: &str,
        healthy: bool,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        let running = || NamingError::HealthCheckRunning {
            key: key.clone(),
            cluster: cluster.to_string(),
        };
        self.registry
            .update(key, None, origin, now, |state, _| {
                let manual = state
                    .meta
                    .clusters
                    .get(cluster)
                    .is_some_and(|c| c.health_checker == crate::model::HealthChecker::None);
                if !manual {
                    return Outcome::Unchanged(Err(running()));
                }
                let in_cluster = state
                    .instances
                    .get(ikey)
                    .is_some_and(|slot| &*slot.instance.cluster == cluster);
                if !in_cluster {
                    return Outcome::Unchanged(Ok(()));
                }
                match set_health(state, ikey, healthy) {
                    Outcome::Changed(_) => Outcome::Changed(Ok(())),
                    Outcome::Unchanged(_) => Outcome::Unchanged(Ok(())),
                }
            })
            .unwrap_or_else(|| Err(running()))
    }

    /// `PUT /nacos/v1/ns/cluster`: replaces the settings (health checker, check port,
    /// metadata) of one cluster of an existing service. Errors when the service is
    /// missing.
    pub fn update_cluster(
        &self,
        key: &ServiceKey,
        cluster: &str,
        meta: ClusterMeta,
    ) -> Result<(), NamingError> {
        self.update_cluster_at(key, cluster, meta, &Origin::Local, now_millis())
    }

    fn update_cluster_at(
        &self,
        key: &ServiceKey,
        cluster: &str,
        meta: ClusterMeta,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        self.registry
            .update(key, None, origin, now, |state, _| {
                if state.meta.clusters.get(cluster).map(|c| &**c) == Some(&meta) {
                    return Outcome::Unchanged(());
                }
                state
                    .meta
                    .clusters
                    .insert(cluster.to_string(), Arc::new(meta));
                Outcome::Changed(())
            })
            .ok_or_else(|| NamingError::ServiceNotFound(key.clone()))
    }

    /// Every persistent instance whose cluster has a probe (not `NONE`), with its
    /// cluster's settings, read from the current snapshots.
    pub fn probe_targets(&self) -> Vec<ProbeTarget> {
        let mut targets = Vec::new();
        for snap in self.registry.persistent_snapshots() {
            for instance in snap.instances.iter().filter(|i| !i.ephemeral) {
                let cluster = snap.meta.cluster(&instance.cluster);
                if cluster.health_checker == crate::model::HealthChecker::None {
                    continue;
                }
                targets.push(ProbeTarget {
                    service: snap.key.clone(),
                    instance: instance.clone(),
                    cluster,
                });
            }
        }
        targets
    }

    /// The instance of client `ikey`, if registered (in whatever cluster).
    pub fn instance(&self, key: &ServiceKey, ikey: &InstanceKey) -> Option<Arc<Instance>> {
        let snap = self.registry.snapshot(key)?;
        snap.instances
            .iter()
            .find(|i| i.ip == ikey.ip && i.port == ikey.port)
            .cloned()
    }

    /// Creates a service through the service API (`POST /ns/service`). Errors when it
    /// exists already, also when registration created it (Nacos 2.x).
    pub fn create_service(&self, key: &ServiceKey, spec: ServiceSpec) -> Result<(), NamingError> {
        self.create_service_at(key, spec, &Origin::Local, now_millis())
    }

    fn create_service_at(
        &self,
        key: &ServiceKey,
        spec: ServiceSpec,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        if self.registry.snapshot(key).is_some() {
            return Err(NamingError::ServiceExists(key.clone()));
        }
        let created = self
            .registry
            .update(key, Some(spec.ephemeral), origin, now, |state, _| {
                if state.meta.explicit {
                    return Outcome::Unchanged(false);
                }
                state.meta = meta_from(spec, &state.meta);
                Outcome::Changed(true)
            });
        match created {
            Some(true) => Ok(()),
            _ => Err(NamingError::ServiceExists(key.clone())),
        }
    }

    /// Updates a service's settings (`PUT /ns/service`); metadata is replaced.
    pub fn update_service(&self, key: &ServiceKey, spec: ServiceSpec) -> Result<(), NamingError> {
        self.update_service_at(key, spec, &Origin::Local, now_millis())
    }

    fn update_service_at(
        &self,
        key: &ServiceKey,
        spec: ServiceSpec,
        origin: &Origin,
        now: u64,
    ) -> Result<(), NamingError> {
        self.registry
            .update(key, None, origin, now, |state, _| {
                let next = meta_from(spec, &state.meta);
                if next == state.meta {
                    return Outcome::Unchanged(());
                }
                state.meta = next;
                Outcome::Changed(())
            })
            .ok_or_else(|| NamingError::ServiceNotFound(key.clone()))
    }

    /// Removes a service that has no instances (as Nacos 2.x).
    pub fn remove_service(&self, key: &ServiceKey) -> Result<(), NamingError> {
        self.remove_service_at(key, &Origin::Local)
    }

    fn remove_service_at(&self, key: &ServiceKey, origin: &Origin) -> Result<(), NamingError> {
        let removed = self.registry.remove_service(key, origin, |state| {
            if state.instances.is_empty() {
                Ok(())
            } else {
                Err(NamingError::ServiceNotEmpty(key.clone()))
            }
        })?;
        if removed {
            Ok(())
        } else {
            Err(NamingError::ServiceNotFound(key.clone()))
        }
    }

    /// The snapshot of a service.
    pub fn service(&self, key: &ServiceKey) -> Option<Arc<ServiceSnapshot>> {
        self.registry.snapshot(key)
    }

    /// Plain names of the services of one group in one namespace, sorted.
    pub fn service_names(&self, namespace: &str, group: &str) -> Vec<String> {
        self.registry
            .service_keys(Some(namespace))
            .into_iter()
            .filter(|k| k.group == group)
            .map(|k| k.service)
            .collect()
    }
}

/// The settings a service API call leaves: threshold, metadata and selector from the
/// call; the kind and the cluster settings stay.
fn meta_from(spec: ServiceSpec, old: &ServiceMeta) -> ServiceMeta {
    ServiceMeta {
        protect_threshold: spec.protect_threshold,
        metadata: spec.metadata,
        selector: spec.selector.unwrap_or_else(|| old.selector.clone()),
        explicit: true,
        ephemeral: old.ephemeral,
        clusters: old.clusters.clone(),
    }
}

/// Sets the health of a persistent instance; unchanged when it is missing, ephemeral
/// or already so.
fn set_health(
    state: &mut registry::ServiceState,
    ikey: &InstanceKey,
    healthy: bool,
) -> Outcome<bool> {
    let Some(slot) = state.instances.get_mut(ikey) else {
        return Outcome::Unchanged(false);
    };
    if slot.instance.ephemeral || slot.instance.healthy == healthy {
        return Outcome::Unchanged(false);
    }
    let mut next = (*slot.instance).clone();
    next.healthy = healthy;
    slot.instance = Arc::new(next);
    Outcome::Changed(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DEFAULT_CLUSTER, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT};

    fn spec(ip: &str, meta: &[(&str, &str)]) -> InstanceSpec {
        InstanceSpec {
            ip: ip.into(),
            host: Host::parse(ip).unwrap(),
            port: 8080,
            cluster: DEFAULT_CLUSTER.into(),
            weight: 1.0,
            enabled: true,
            healthy: true,
            ephemeral: true,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn ikey(ip: &str) -> InstanceKey {
        InstanceKey::new(ip, 8080)
    }

    #[test]
    fn snapshot_follows_writes_and_revision_bumps_only_on_change() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        naming.register(&key, spec("10.0.0.1", &[])).unwrap();
        let r1 = naming.service(&key).unwrap().revision;
        naming.register(&key, spec("10.0.0.1", &[])).unwrap();
        assert_eq!(
            naming.service(&key).unwrap().revision,
            r1,
            "same registration"
        );
        naming.register(&key, spec("10.0.0.2", &[])).unwrap();
        let snap = naming.service(&key).unwrap();
        assert!(snap.revision > r1);
        assert_eq!(snap.instances.len(), 2);
        assert_eq!(
            snap.instances[0].instance_id(&key),
            "10.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@stock"
        );
        assert_eq!(naming.registry().instance_count(), 2);
        naming.deregister(&key, &ikey("10.0.0.1"), true);
        assert_eq!(naming.service(&key).unwrap().instances.len(), 1);
        assert_eq!(naming.registry().instance_count(), 1);
    }

    #[test]
    fn a_service_left_empty_by_a_refused_registration_goes_after_its_ttl() {
        let naming = NamingService::new(Arc::new(Registry::with_empty_service_ttl(1_000)))
            .with_max_persistent_per_namespace(0);
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "refused");
        let mut persistent = spec("10.0.0.1", &[]);
        persistent.ephemeral = false;
        assert!(matches!(
            naming.register(&key, persistent),
            Err(NamingError::PersistentLimit { .. })
        ));
        let now = registry::now_millis();
        assert!(
            naming
                .registry()
                .sweep_expired(now + 500)
                .removed_services
                .is_empty()
        );
        let report = naming.registry().sweep_expired(now + 1_500);
        assert_eq!(report.removed_services, vec![key.clone()]);
        assert_eq!(naming.registry().queued_expiries(), 0);
    }

    #[test]
    fn a_deregistered_instance_leaves_nothing_in_the_expiry_queue() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        let hour = [
            (META_BEAT_TIMEOUT, "3600000"),
            (META_DELETE_TIMEOUT, "3600000"),
        ];
        for i in 0..100 {
            naming
                .register(&key, spec(&format!("10.0.1.{i}"), &hour))
                .unwrap();
        }
        // One entry per instance, and the new service's own empty check.
        assert_eq!(naming.registry().queued_expiries(), 101);
        for i in 0..100 {
            naming.deregister(&key, &ikey(&format!("10.0.1.{i}")), true);
        }
        // Only the check of the emptied (auto-created) service waits.
        assert_eq!(naming.registry().queued_expiries(), 1);
    }

    #[test]
    fn sweep_marks_unhealthy_then_removes_and_beat_revives() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        let meta = [(META_BEAT_TIMEOUT, "100"), (META_DELETE_TIMEOUT, "200")];
        let mut s = spec("10.0.0.1", &meta);
        s.metadata
            .insert(crate::model::META_BEAT_INTERVAL.into(), "50".into());
        naming.register(&key, s).unwrap();
        let now = registry::now_millis();
        assert_eq!(naming.registry().sweep_expired(now), Default::default());
        let report = naming.registry().sweep_expired(now + 150);
        assert_eq!(report.unhealthy.len(), 1);
        assert!(!naming.service(&key).unwrap().instances[0].healthy);
        // A beat revives it.
        assert_eq!(
            naming.beat(&key, &ikey("10.0.0.1"), None).unwrap(),
            BeatOutcome::Recorded { interval_ms: 50 }
        );
        assert!(naming.service(&key).unwrap().instances[0].healthy);
        let later = registry::now_millis() + 1_000;
        let report = naming.registry().sweep_expired(later);
        assert_eq!(report.removed.len(), 1, "{report:?}");
        assert!(naming.service(&key).unwrap().instances.is_empty());
        assert_eq!(
            naming.beat(&key, &ikey("10.0.0.1"), None).unwrap(),
            BeatOutcome::NotFound
        );
    }

    #[test]
    fn empty_auto_created_services_go_after_their_ttl() {
        let naming = NamingService::new(Arc::new(Registry::with_empty_service_ttl(1_000)));
        let auto = ServiceKey::new("public", "DEFAULT_GROUP", "auto");
        let kept = ServiceKey::new("public", "DEFAULT_GROUP", "kept");
        naming
            .create_service(
                &kept,
                ServiceSpec {
                    protect_threshold: 0.0,
                    metadata: Default::default(),
                    selector: None,
                    ephemeral: true,
                },
            )
            .unwrap();
        for key in [&auto, &kept] {
            naming.register(key, spec("10.0.0.1", &[])).unwrap();
            naming.deregister(key, &ikey("10.0.0.1"), true);
        }
        let now = registry::now_millis();
        assert!(
            naming
                .registry()
                .sweep_expired(now + 500)
                .removed_services
                .is_empty()
        );
        let report = naming.registry().sweep_expired(now + 1_500);
        assert_eq!(report.removed_services, vec![auto.clone()]);
        assert!(naming.service(&auto).is_none());
        assert!(
            naming.service(&kept).is_some(),
            "services made by the API stay"
        );
    }

    #[test]
    fn huge_timeouts_from_metadata_do_not_overflow() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "forever");
        let max = u64::MAX.to_string();
        naming
            .register(
                &key,
                spec(
                    "10.0.0.1",
                    &[(META_BEAT_TIMEOUT, &max), (META_DELETE_TIMEOUT, &max)],
                ),
            )
            .unwrap();
        naming.beat(&key, &ikey("10.0.0.1"), None).unwrap();
        let report = naming.registry().sweep_expired(u64::MAX);
        assert!(report.unhealthy.is_empty() && report.removed.is_empty());
        assert!(naming.service(&key).unwrap().instances[0].healthy);
    }

    #[test]
    fn restarts_do_not_pile_up_expiry_entries_and_shorter_timeouts_apply() {
        let naming = NamingService::new(Arc::new(Registry::with_empty_service_ttl(1_000)));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "restarts");
        for _ in 0..10 {
            naming.register(&key, spec("10.0.0.1", &[])).unwrap();
            naming.deregister(&key, &ikey("10.0.0.1"), true);
        }
        naming.register(&key, spec("10.0.0.1", &[])).unwrap();
        // Past the 15 s beat timeout every stale entry (and every empty-service check)
        // is dropped when it pops; the one live entry turns the instance unhealthy and
        // is queued again for its delete deadline.
        let report = naming
            .registry()
            .sweep_expired(registry::now_millis() + 16_000);
        assert_eq!(report.unhealthy.len(), 1, "{report:?}");
        assert_eq!(naming.registry().queued_expiries(), 1);

        // Re-registering with a shorter timeout takes effect before the old deadline.
        let short = [(META_BEAT_TIMEOUT, "100"), (META_DELETE_TIMEOUT, "60000")];
        let mut s = spec("10.0.0.1", &short);
        s.metadata
            .insert(crate::model::META_BEAT_INTERVAL.into(), "50".into());
        naming.register(&key, s).unwrap();
        let report = naming
            .registry()
            .sweep_expired(registry::now_millis() + 500);
        assert_eq!(report.unhealthy.len(), 1, "{report:?}");
    }

    #[test]
    fn writes_emit_one_change_event_each() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let mut events = naming.registry().subscribe();
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        naming.register(&key, spec("10.0.0.1", &[])).unwrap();
        naming.register(&key, spec("10.0.0.1", &[])).unwrap();
        naming.deregister(&key, &ikey("10.0.0.1"), true);
        let revisions: Vec<u64> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.revision)
            .collect();
        // Created, registered, deregistered; the identical re-registration emits nothing.
        assert_eq!(revisions.len(), 3, "{revisions:?}");
        assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
        // A service removed and created again never repeats a revision.
        naming.remove_service(&key).unwrap();
        naming.register(&key, spec("10.0.0.2", &[])).unwrap();
        let again = naming.service(&key).unwrap().revision;
        assert!(again > revisions[2], "{again} after {revisions:?}");
    }

    #[test]
    fn folded_lookup_finds_every_case_twin_oldest_first() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let a = ServiceKey::new("public", "DEFAULT_GROUP", "Stock");
        let b = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        naming.register(&a, spec("10.0.0.1", &[])).unwrap();
        naming.register(&b, spec("10.0.0.2", &[])).unwrap();
        let keys = |n: &NamingService| -> Vec<ServiceKey> {
            n.registry()
                .find_folded(&b.folded())
                .iter()
                .map(|s| s.key.clone())
                .collect()
        };
        assert_eq!(keys(&naming), vec![a.clone(), b.clone()]);
        naming.deregister(&a, &ikey("10.0.0.1"), true);
        naming.remove_service(&a).unwrap();
        assert_eq!(keys(&naming), vec![b.clone()]);
        naming.deregister(&b, &ikey("10.0.0.2"), true);
        naming.remove_service(&b).unwrap();
        assert!(keys(&naming).is_empty());
    }

    #[test]
    fn a_service_holds_one_kind_of_instance() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "db");
        let mut persistent = spec("10.0.0.1", &[]);
        persistent.ephemeral = false;
        naming.register(&key, persistent.clone()).unwrap();
        assert_eq!(
            naming.register(&key, spec("10.0.0.2", &[])),
            Err(NamingError::KindMismatch {
                key: key.clone(),
                service_ephemeral: false
            })
        );
        // Beats reach only ephemeral instances; a full beat would register one here.
        assert_eq!(
            naming.beat(&key, &ikey("10.0.0.1"), None),
            Ok(BeatOutcome::NotFound)
        );
        assert!(
            naming
                .beat(&key, &ikey("10.0.0.2"), Some(spec("10.0.0.2", &[])))
                .is_err()
        );
        // Deregistration of the other kind leaves it.
        naming.deregister(&key, &ikey("10.0.0.1"), true);
        assert_eq!(naming.service(&key).unwrap().instances.len(), 1);
        naming.deregister(&key, &ikey("10.0.0.1"), false);
        assert!(naming.service(&key).unwrap().instances.is_empty());
    }

    #[test]
    fn probes_see_persistent_instances_of_probed_clusters_and_flip_them() {
        use crate::model::{ClusterMeta, HealthChecker};
        let naming = NamingService::new(Arc::new(Registry::new()));
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "db");
        let mut persistent = spec("10.0.0.1", &[]);
        persistent.ephemeral = false;
        naming.register(&key, persistent).unwrap();
        naming
            .register(
                &ServiceKey::new("public", "DEFAULT_GROUP", "web"),
                spec("10.0.0.9", &[]),
            )
            .unwrap();
        let targets = naming.probe_targets();
        assert_eq!(targets.len(), 1, "ephemeral instances are not probed");
        assert_eq!(targets[0].cluster.health_checker, HealthChecker::Tcp);

        let tcp = HealthChecker::Tcp;
        assert!(naming.set_probed_health(&key, &ikey("10.0.0.1"), DEFAULT_CLUSTER, &tcp, false));
        assert!(!naming.set_probed_health(&key, &ikey("10.0.0.1"), DEFAULT_CLUSTER, &tcp, false));
        assert!(
            !naming.set_probed_health(&key, &ikey("10.0.0.1"), "OTHER", &tcp, true),
            "a result for a cluster it does not belong to (any more) is dropped"
        );
        assert!(!naming.service(&key).unwrap().instances[0].healthy);
        assert!(matches!(
            naming.set_manual_health(&key, &ikey("10.0.0.1"), DEFAULT_CLUSTER, true),
            Err(NamingError::HealthCheckRunning { .. })
        ));

        let manual = ClusterMeta {
            health_checker: HealthChecker::None,
            ..ClusterMeta::default()
        };
        naming
            .update_cluster(&key, DEFAULT_CLUSTER, manual)
            .unwrap();
        assert!(naming.probe_targets().is_empty(), "NONE is not probed");
        assert!(
            !naming.set_probed_health(&key, &ikey("10.0.0.1"), DEFAULT_CLUSTER, &tcp, true),
            "a TCP result that was in flight is dropped"
        );
        naming
            .set_manual_health(&key, &ikey("10.0.0.1"), DEFAULT_CLUSTER, true)
            .unwrap();
        assert!(naming.service(&key).unwrap().instances[0].healthy);
        assert_eq!(
            naming.update_cluster(
                &ServiceKey::new("public", "DEFAULT_GROUP", "nope"),
                DEFAULT_CLUSTER,
                ClusterMeta::default()
            ),
            Err(NamingError::ServiceNotFound(ServiceKey::new(
                "public",
                "DEFAULT_GROUP",
                "nope"
            )))
        );
    }
}
