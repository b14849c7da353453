//! Naming writes as data (DESIGN §1): every change to the registry is a
//! [`NamingCommand`], applied by [`super::NamingService::apply`] with the time and the
//! [`Origin`] passed in. The same command is then a local write, a Distro delta sent to
//! a peer, or (for persistent data) a Raft log entry, and applying it to two registries
//! in the same state at the same time gives the same result.
//!
//! Commands are serde types whose encoding needs no self-description (postcard, for
//! peer messages): the two values that are JSON in Nacos's API (a cluster's health
//! checker and a service's selector) travel as their JSON text.

use serde::{Deserialize, Serialize};

use super::{BeatOutcome, InstanceSpec, InstanceUpdate, ServiceSpec};
use crate::model::{ClusterMeta, HealthChecker, InstanceKey, ServiceKey};

/// Where a change came from, carried by every [`super::registry::ChangeEvent`] so that
/// replication never sends a peer's change back to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A write accepted on this node (HTTP, the health workers, later gRPC and the
    /// console).
    Local,
    /// A change received from a peer, named by its member address (`host:port`).
    Peer(std::sync::Arc<str>),
    /// An entry of the Raft log, by its index.
    Raft(u64),
}

/// One naming write. Each variant names the service it changes and carries everything
/// the change needs, fully validated by the front door that built it; none reads the
/// clock (the time comes with [`super::NamingService::apply`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NamingCommand {
    /// Register (or re-register) an instance, creating the service if needed (as Nacos
    /// `InstanceController#register`).
    Register {
        /// The service.
        service: ServiceKey,
        /// The instance.
        instance: InstanceSpec,
    },
    /// Remove the instance of client `client` of the given kind.
    Deregister {
        /// The service.
        service: ServiceKey,
        /// The instance's client (`ip:port`).
        client: InstanceKey,
        /// Which kind to remove; an instance of the other kind stays.
        ephemeral: bool,
    },
    /// Lay an update over a registration (`PUT` / `PATCH /nacos/v1/ns/instance`).
    UpdateInstance {
        /// The service.
        service: ServiceKey,
        /// The instance's client.
        client: InstanceKey,
        /// The cluster the instance must be in.
        cluster: String,
        /// What changes.
        update: InstanceUpdate,
    },
    /// A client beat (as Nacos `InstanceController#beat`); with `full`, a missing
    /// instance is registered from the beat first.
    Beat {
        /// The service.
        service: ServiceKey,
        /// The instance's client.
        client: InstanceKey,
        /// The client's beat JSON, as a registration.
        full: Option<InstanceSpec>,
    },
    /// A probe's verdict on a persistent instance.
    SetProbedHealth {
        /// The service.
        service: ServiceKey,
        /// The instance's client.
        client: InstanceKey,
        /// The cluster the instance was probed in.
        cluster: String,
        /// The checker that probed it (a verdict of a checker since replaced is
        /// dropped).
        #[serde(with = "crate::model::json_text")]
        checker: HealthChecker,
        /// The verdict.
        healthy: bool,
    },
    /// Health set by hand (`PUT /nacos/v1/ns/health/instance`).
    SetManualHealth {
        /// The service.
        service: ServiceKey,
        /// The instance's client.
        client: InstanceKey,
        /// Its cluster.
        cluster: String,
        /// The health to set.
        healthy: bool,
    },
    /// Replace one cluster's settings (`PUT /nacos/v1/ns/cluster`).
    UpdateCluster {
        /// The service.
        service: ServiceKey,
        /// The cluster.
        cluster: String,
        /// Its new settings.
        meta: ClusterMeta,
    },
    /// Create a service through the service API (`POST /nacos/v1/ns/service`).
    CreateService {
        /// The service.
        service: ServiceKey,
        /// Its settings.
        spec: ServiceSpec,
    },
    /// Update a service's settings (`PUT /nacos/v1/ns/service`).
    UpdateService {
        /// The service.
        service: ServiceKey,
        /// Its new settings.
        spec: ServiceSpec,
    },
    /// Remove a service that has no instances (`DELETE /nacos/v1/ns/service`).
    RemoveService {
        /// The service.
        service: ServiceKey,
    },
}

impl NamingCommand {
    /// The service the command changes.
    pub fn service(&self) -> &ServiceKey {
        match self {
            NamingCommand::Register { service, .. }
            | NamingCommand::Deregister { service, .. }
            | NamingCommand::UpdateInstance { service, .. }
            | NamingCommand::Beat { service, .. }
            | NamingCommand::SetProbedHealth { service, .. }
            | NamingCommand::SetManualHealth { service, .. }
            | NamingCommand::UpdateCluster { service, .. }
            | NamingCommand::CreateService { service, .. }
            | NamingCommand::UpdateService { service, .. }
            | NamingCommand::RemoveService { service } => service,
        }
    }
}

/// What applying a command reports besides success.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// The command was applied (or changed nothing, which is no error).
    Done,
    /// What a beat found.
    Beat(BeatOutcome),
    /// Whether a health command changed the instance's health.
    Health(bool),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::model::{DEFAULT_CLUSTER, Host};
    use crate::naming::NamingService;
    use crate::naming::registry::Registry;

    fn spec(ip: &str, port: u16, weight: f64) -> InstanceSpec {
        InstanceSpec {
            ip: ip.into(),
            host: Host::parse(ip).unwrap(),
            port,
            cluster: DEFAULT_CLUSTER.into(),
            weight,
            enabled: true,
            healthy: true,
            ephemeral: true,
            metadata: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        }
    }

    fn every_kind() -> Vec<NamingCommand> {
        let service = ServiceKey::new("dev", "g", "stock");
        let db = ServiceKey::new("dev", "g", "db");
        let client = InstanceKey::new("10.0.0.1", 8080);
        let mut persistent = spec("10.0.0.9", 3306, 1.0);
        persistent.ephemeral = false;
        vec![
            NamingCommand::CreateService {
                service: service.clone(),
                spec: ServiceSpec {
                    protect_threshold: 0.25,
                    metadata: BTreeMap::from([("owner".to_string(), "team".to_string())]),
                    selector: Some(serde_json::json!({"type": "none"})),
                    ephemeral: true,
                },
            },
            NamingCommand::Register {
                service: service.clone(),
                instance: spec("10.0.0.1", 8080, 2.5),
            },
            NamingCommand::Register {
                service: service.clone(),
                instance: spec("host-a.example", 8081, 1.0),
            },
            NamingCommand::UpdateInstance {
                service: service.clone(),
                client: client.clone(),
                cluster: DEFAULT_CLUSTER.into(),
                update: InstanceUpdate {
                    weight: Some(7.0),
                    enabled: None,
                    metadata: Some(BTreeMap::from([("v".to_string(), "2".to_string())])),
                },
            },
            NamingCommand::Beat {
                service: service.clone(),
                client: InstanceKey::new("10.0.0.2", 8080),
                full: Some(spec("10.0.0.2", 8080, 1.0)),
            },
            NamingCommand::Register {
                service: db.clone(),
                instance: persistent,
            },
            NamingCommand::UpdateCluster {
                service: db.clone(),
                cluster: DEFAULT_CLUSTER.into(),
                meta: ClusterMeta {
                    health_checker: HealthChecker::Http {
                        path: "/health".into(),
                        headers: String::new(),
                        expected_response_code: 204,
                    },
                    check_port: 8080,
                    use_instance_port: false,
                    metadata: BTreeMap::new(),
                },
            },
            NamingCommand::SetProbedHealth {
                service: db.clone(),
                client: InstanceKey::new("10.0.0.9", 3306),
                cluster: DEFAULT_CLUSTER.into(),
                checker: HealthChecker::Http {
                    path: "/health".into(),
                    headers: String::new(),
                    expected_response_code: 204,
                },
                healthy: false,
            },
            NamingCommand::SetManualHealth {
                service: db.clone(),
                client: InstanceKey::new("10.0.0.9", 3306),
                cluster: DEFAULT_CLUSTER.into(),
                healthy: true,
            },
            NamingCommand::UpdateService {
                service: service.clone(),
                spec: ServiceSpec {
                    protect_threshold: 0.5,
                    metadata: BTreeMap::new(),
                    selector: None,
                    ephemeral: true,
                },
            },
            NamingCommand::Deregister {
                service: service.clone(),
                client,
                ephemeral: true,
            },
            NamingCommand::RemoveService {
                service: ServiceKey::new("dev", "g", "never-made"),
            },
        ]
    }

    #[test]
    fn every_command_survives_a_binary_round_trip() {
        for command in every_kind() {
            let bytes = postcard::to_allocvec(&command).unwrap();
            let back: NamingCommand = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, command);
        }
        for origin in [
            Origin::Local,
            Origin::Peer(Arc::from("10.0.0.2:8848")),
            Origin::Raft(7),
        ] {
            let bytes = postcard::to_allocvec(&origin).unwrap();
            assert_eq!(postcard::from_bytes::<Origin>(&bytes).unwrap(), origin);
        }
    }

    /// Everything a reader sees of a registry: each service's settings, instances and
    /// revision.
    fn state_of(naming: &NamingService) -> Vec<String> {
        naming
            .registry()
            .service_keys(None)
            .iter()
            .filter_map(|key| naming.service(key))
            .map(|snap| {
                format!(
                    "{:?} {:?} {:?} {}",
                    snap.key, snap.meta, snap.instances, snap.revision
                )
            })
            .collect()
    }

    #[test]
    fn the_same_commands_at_the_same_times_give_the_same_registry() {
        let replay = || {
            let naming = NamingService::new(Arc::new(Registry::new())).with_snowflake_worker(3);
            let mut results = Vec::new();
            for (i, command) in every_kind().into_iter().enumerate() {
                let now = 1_700_000_000_000 + 1_000 * i as u64;
                results.push(format!("{:?}", naming.apply(command, Origin::Local, now)));
            }
            // Expiry at a fixed time: the beat-less instances turn unhealthy.
            naming.registry().sweep_expired(1_700_000_100_000);
            (results, state_of(&naming))
        };
        let (first_results, first_state) = replay();
        assert_eq!(replay(), (first_results.clone(), first_state.clone()));
        // Manual health on a probed cluster, and removing a missing service, fail.
        assert_eq!(
            first_results
                .iter()
                .filter(|r| r.starts_with("Err("))
                .count(),
            2,
            "{first_results:?}"
        );
        assert_eq!(first_state.len(), 2, "{first_state:?}");
    }

    #[test]
    fn change_events_carry_their_origin() {
        let naming = NamingService::new(Arc::new(Registry::new()));
        let mut events = naming.registry().subscribe();
        let service = ServiceKey::new("public", "DEFAULT_GROUP", "stock");
        let peer = Origin::Peer(Arc::from("10.0.0.2:8848"));
        naming
            .apply(
                NamingCommand::Register {
                    service: service.clone(),
                    instance: spec("10.0.0.1", 80, 1.0),
                },
                peer.clone(),
                1_000,
            )
            .unwrap();
        naming
            .apply(
                NamingCommand::Deregister {
                    service: service.clone(),
                    client: InstanceKey::new("10.0.0.1", 80),
                    ephemeral: true,
                },
                Origin::Raft(9),
                2_000,
            )
            .unwrap();
        let origins: Vec<Origin> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.origin)
            .collect();
        // Created and registered (one command), then deregistered.
        assert_eq!(origins, vec![peer.clone(), peer, Origin::Raft(9)]);
    }
}
