//! Naming's CP data under Raft (DESIGN §2): persistent instances, service settings and
//! cluster checker settings. [`PersistentState`] is what the Raft engine
//! (`replication::raft`) applies its committed entries to: each entry is one encoded
//! [`NamingCommand`], applied to the registry with [`Origin::Raft`] and the proposer's
//! clock, and answered with the encoded [`Forwarded`] outcome.
//!
//! A snapshot is a [`CpService`] for every service whose settings or instances are CP
//! data; restoring one clears the CP data of the registry and replays it as commands,
//! so a restored registry goes through the same checks (kinds, limits) as a live one.
//! Ephemeral instances (Distro's) are left alone. Health of persistent instances is
//! soft state: a snapshot records it, and the probes keep it current afterwards.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::command::{NamingCommand, Origin};
use super::distro::Forwarded;
use super::registry::{Outcome, ServiceSnapshot};
use super::{InstanceSpec, NamingError, NamingService, ServiceSpec};
use crate::cluster::peer;
use crate::model::{ClusterMeta, Host, InstanceKey, ServiceKey, ServiceMeta};
use crate::replication::raft::{ReplicatedState, SnapshotJob};

/// Whether `command` writes CP data, so goes through Raft: persistent instances
/// (registered, removed, updated, or given health by hand), service settings and
/// cluster settings. Beats and ephemeral instances are Distro's; a probe's verdict is
/// soft state.
pub fn is_cp(command: &NamingCommand, naming: &NamingService) -> bool {
    let persistent_service = |key: &ServiceKey| {
        naming
            .service(key)
            .is_some_and(|snapshot| !snapshot.meta.ephemeral)
    };
    match command {
        NamingCommand::Register { instance, .. } => !instance.ephemeral,
        NamingCommand::Deregister { ephemeral, .. } => !ephemeral,
        NamingCommand::UpdateInstance { service, .. }
        | NamingCommand::SetManualHealth { service, .. } => persistent_service(service),
        NamingCommand::Beat { .. } | NamingCommand::SetProbedHealth { .. } => false,
        NamingCommand::UpdateCluster { .. }
        | NamingCommand::CreateService { .. }
        | NamingCommand::UpdateService { .. }
        | NamingCommand::RemoveService { .. } => true,
    }
}

/// The CP data of one service, as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpService {
    /// The service.
    pub service: ServiceKey,
    /// Its settings (threshold, metadata, selector, kind).
    pub spec: ServiceSpec,
    /// Whether it was created or updated through the service API (it then stays when
    /// empty).
    pub explicit: bool,
    /// Cluster settings, by cluster name.
    pub clusters: Vec<(String, ClusterMeta)>,
    /// Its persistent instances as readers see them (an update laid over a
    /// registration is folded into it).
    pub instances: Vec<InstanceSpec>,
}

/// The CP data of the registry, for the Raft engine.
pub struct PersistentState {
    naming: Arc<NamingService>,
}

impl PersistentState {
    /// The CP data of `naming`.
    pub fn new(naming: Arc<NamingService>) -> Self {
        Self { naming }
    }

    /// Every service's CP data, in key order.
    pub fn services(&self) -> Vec<CpService> {
        cp_of(self.capture())
    }

    /// Every service's current snapshot (immutable; cheap to hold).
    fn capture(&self) -> Vec<Arc<ServiceSnapshot>> {
        let registry = self.naming.registry();
        registry
            .service_keys(None)
            .iter()
            .filter_map(|key| registry.snapshot(key))
            .collect()
    }

    /// Removes every piece of CP data: persistent services go, ephemeral ones keep
    /// their instances and get default settings.
    fn clear(&self, origin: &Origin, now: u64) {
        let registry = self.naming.registry();
        for key in registry.service_keys(None) {
            let Some(snapshot) = registry.snapshot(&key) else {
                continue;
            };
            if snapshot.meta.ephemeral {
                registry.update(&key, None, origin, now, |state, _| {
                    let reset = ServiceMeta {
                        ephemeral: true,
                        ..ServiceMeta::default()
                    };
                    if state.meta == reset {
                        Outcome::Unchanged(())
                    } else {
                        state.meta = reset;
                        Outcome::Changed(())
                    }
                });
            } else {
                for instance in &snapshot.instances {
                    let client = InstanceKey::new(&instance.ip, instance.port);
                    let _ = self.naming.apply(
                        NamingCommand::Deregister {
                            service: key.clone(),
                            client,
                            ephemeral: false,
                        },
                        origin.clone(),
                        now,
                    );
                }
                let _ = registry.remove_service(&key, origin, |state| {
                    if state.instances.is_empty() {
                        Ok(())
                    } else {
                        Err(())
                    }
                });
            }
        }
    }

    /// Replays one service's CP data as commands.
    fn replay(&self, cp: CpService, origin: &Origin, now: u64) -> Vec<NamingError> {
        let mut commands = Vec::new();
        let service = cp.service;
        let clusters: Vec<NamingCommand> = cp
            .clusters
            .into_iter()
            .map(|(cluster, meta)| NamingCommand::UpdateCluster {
                service: service.clone(),
                cluster,
                meta,
            })
            .collect();
        let registers = cp
            .instances
            .into_iter()
            .map(|instance| NamingCommand::Register {
                service: service.clone(),
                instance,
            });
        if cp.explicit {
            let exists = self.naming.service(&service).is_some();
            commands.push(if exists {
                NamingCommand::UpdateService {
                    service: service.clone(),
                    spec: cp.spec,
                }
            } else {
                NamingCommand::CreateService {
                    service: service.clone(),
                    spec: cp.spec,
                }
            });
            commands.extend(clusters);
            commands.extend(registers);
        } else {
            // An implicit service exists through its instances; only a service API
            // call sets its threshold, metadata and selector (and makes it explicit).
            commands.extend(registers);
            commands.extend(clusters);
        }
        commands
            .into_iter()
            .filter_map(|c| self.naming.apply(c, origin.clone(), now).err())
            .collect()
    }
}

/// The CP data of `snapshots`, in their order: persistent instances, and services
/// that hold any or have settings of their own.
fn cp_of(snapshots: Vec<Arc<ServiceSnapshot>>) -> Vec<CpService> {
    let mut out = Vec::new();
    for snapshot in snapshots {
        let key = snapshot.key.clone();
        let meta = &snapshot.meta;
        let instances: Vec<InstanceSpec> = snapshot
            .instances
            .iter()
            .filter(|i| !i.ephemeral)
            .map(|i| InstanceSpec {
                ip: i.ip.to_string(),
                host: Host::parse(&i.ip).unwrap_or(Host::Name(i.ip.to_string())),
                port: i.port,
                cluster: i.cluster.to_string(),
                weight: i.weight,
                enabled: i.enabled,
                healthy: i.healthy,
                ephemeral: false,
                metadata: i.metadata.clone(),
            })
            .collect();
        let default = ServiceMeta::default();
        let has_settings = meta.explicit
            || meta.protect_threshold != default.protect_threshold
            || meta.metadata != default.metadata
            || meta.selector != default.selector
            || !meta.clusters.is_empty();
        if instances.is_empty() && !has_settings {
            continue;
        }
        out.push(CpService {
            service: key,
            spec: ServiceSpec {
                protect_threshold: meta.protect_threshold,
                metadata: meta.metadata.clone(),
                selector: Some(meta.selector.clone()),
                ephemeral: meta.ephemeral,
            },
            explicit: meta.explicit,
            clusters: meta
                .clusters
                .iter()
                .map(|(name, c)| (name.clone(), (**c).clone()))
                .collect(),
            instances,
        });
    }
    out
}

/// The answer of an applied command, as the proposer decodes it.
fn answer(result: Result<super::command::Applied, NamingError>) -> Vec<u8> {
    peer::encode(&Forwarded::from_result(result, NamingError::status))
}

/// Decodes the answer of a committed command (see [`ReplicatedState::apply`]).
///
/// Errors with [`NamingError::Remote`] (status 500) when the bytes do not decode.
pub fn decode_answer(bytes: &[u8]) -> Result<super::command::Applied, NamingError> {
    match peer::decode::<Forwarded>(bytes) {
        Ok(answer) => answer.into_result(),
        Err(e) => Err(NamingError::Remote {
            status: 500,
            message: format!("bad answer from the Raft state machine: {e}"),
        }),
    }
}

impl ReplicatedState for PersistentState {
    fn apply(&self, index: u64, at_ms: u64, command: &[u8]) -> Vec<u8> {
        match peer::decode::<NamingCommand>(command) {
            Ok(command) => answer(self.naming.apply(command, Origin::Raft(index), at_ms)),
            Err(e) => {
                // Never proposed by this code; refused the same way on every node.
                tracing::error!(index, error = %e, "raft entry is not a naming command");
                answer(Err(NamingError::Remote {
                    status: 500,
                    message: format!("raft entry {index} is not a naming command: {e}"),
                }))
            }
        }
    }

    fn snapshot(&self) -> SnapshotJob {
        let captured = self.capture();
        Box::new(move || peer::encode(&cp_of(captured)))
    }

    fn restore(&self, index: u64, data: &[u8]) -> Result<(), String> {
        let services: Vec<CpService> = peer::decode(data).map_err(|e| e.to_string())?;
        let origin = Origin::Raft(index);
        let now = crate::naming::registry::now_millis();
        self.clear(&origin, now);
        let mut refused = 0usize;
        for cp in services {
            let key = cp.service.clone();
            for e in self.replay(cp, &origin, now) {
                refused += 1;
                tracing::warn!(service = %key.grouped_name(), error = %e, "snapshot entry refused");
            }
        }
        if refused > 0 {
            tracing::warn!(refused, index, "raft snapshot restored with refusals");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{DEFAULT_CLUSTER, HealthChecker};
    use crate::naming::registry::Registry;

    fn spec(ip: &str, ephemeral: bool) -> InstanceSpec {
        InstanceSpec {
            ip: ip.into(),
            host: Host::parse(ip).unwrap(),
            port: 5432,
            cluster: DEFAULT_CLUSTER.into(),
            weight: 2.0,
            enabled: true,
            healthy: true,
            ephemeral,
            metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
        }
    }

    fn naming() -> Arc<NamingService> {
        Arc::new(NamingService::new(Arc::new(Registry::new())))
    }

    fn cp_commands() -> Vec<NamingCommand> {
        let db = ServiceKey::new("public", "G", "db");
        let web = ServiceKey::new("public", "G", "web");
        vec![
            NamingCommand::Register {
                service: db.clone(),
                instance: spec("10.0.0.1", false),
            },
            NamingCommand::Register {
                service: db.clone(),
                instance: spec("10.0.0.2", false),
            },
            NamingCommand::UpdateCluster {
                service: db.clone(),
                cluster: DEFAULT_CLUSTER.into(),
                meta: ClusterMeta {
                    health_checker: HealthChecker::None,
                    ..ClusterMeta::default()
                },
            },
            NamingCommand::CreateService {
                service: web.clone(),
                spec: ServiceSpec {
                    protect_threshold: 0.4,
                    metadata: BTreeMap::from([("team".to_string(), "a".to_string())]),
                    selector: None,
                    ephemeral: true,
                },
            },
        ]
    }

    #[test]
    fn a_snapshot_restores_the_cp_data_and_leaves_ephemeral_instances_alone() {
        let leader = naming();
        for (i, command) in cp_commands().into_iter().enumerate() {
            let answer = PersistentState::new(leader.clone()).apply(
                i as u64 + 1,
                1_000 + i as u64,
                &peer::encode(&command),
            );
            assert!(decode_answer(&answer).is_ok(), "{command:?}");
        }
        let state = PersistentState::new(leader.clone());
        let data = (state.snapshot())();

        // A follower with stale CP data of its own and an ephemeral instance.
        let follower = naming();
        let web = ServiceKey::new("public", "G", "web");
        let stale = ServiceKey::new("public", "G", "stale");
        follower.register(&web, spec("10.0.9.9", true)).unwrap();
        follower.register(&stale, spec("10.0.8.8", false)).unwrap();
        let restored = PersistentState::new(follower.clone());
        restored.restore(4, &data).unwrap();
        assert_eq!(restored.services(), state.services());
        assert!(follower.service(&stale).is_none(), "stale CP data is gone");
        let web_now = follower.service(&web).unwrap();
        assert_eq!(web_now.instances.len(), 1, "the ephemeral instance stays");
        assert_eq!(web_now.meta.protect_threshold, 0.4);
        // Restoring twice changes nothing.
        restored.restore(4, &data).unwrap();
        assert_eq!(restored.services(), state.services());
        assert!(restored.restore(4, b"\x01garbage").is_err());
    }

    #[test]
    fn only_cp_commands_go_through_raft() {
        let naming = naming();
        for command in cp_commands() {
            assert!(is_cp(&command, &naming), "{command:?}");
        }
        let web = ServiceKey::new("public", "G", "web");
        assert!(!is_cp(
            &NamingCommand::Register {
                service: web.clone(),
                instance: spec("10.0.0.3", true),
            },
            &naming
        ));
        assert!(!is_cp(
            &NamingCommand::Beat {
                service: web,
                client: InstanceKey::new("10.0.0.3", 5432),
                full: None,
            },
            &naming
        ));
    }
}
