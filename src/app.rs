//! Composition root: builds every part from the settings, starts the servers and
//! workers under one cancellation token, and shuts them down in order (stop accepting,
//! finish in-flight HTTP requests, stop workers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cluster::members::Membership;
use crate::cluster::peer::PeerClient;
use crate::config::{ConfigError, ConfigService};
use crate::dns::{DnsError, DnsServer};
use crate::health::BeatExpiryWorker;
use crate::health::probe::{ProbeSharing, ProbeStats, ProbeWorker};
use crate::http::{self, AppState, AppStateInner};
use crate::naming::NamingService;
use crate::naming::dispatch::NamingDispatcher;
use crate::naming::distro::{Distro, DistroSettings};
use crate::naming::persistent::PersistentState;
use crate::naming::registry::{ReadyPart, Registry};
use crate::naming::service_info::ListCache;
use crate::push::{PushError, PushService};
use crate::replication::raft::{OpenError, RaftNode, RaftOptions};
use crate::settings::Settings;
use crate::storage::{ConfigStore, StoreError};

/// Errors starting a node.
#[derive(Debug, Error)]
pub enum AppError {
    /// The HTTP address could not be bound.
    #[error("cannot bind HTTP on {addr}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The DNS server could not start.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The config database could not be opened or migrated.
    #[error("cannot open the config database")]
    Store(#[from] StoreError),
    /// The UDP push socket could not be bound.
    #[error(transparent)]
    Push(#[from] PushError),
    /// Auth could not start (a refused key or admin password, or the users table).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthStartError),
    /// The config cache could not be loaded.
    #[error("cannot load configs")]
    Config(#[from] ConfigError),
    /// The settings are refused (a cluster member without a shared database or key).
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The Raft group (log, snapshot or node id in `<data>/raft`).
    #[error("cannot open the raft group")]
    Raft(#[from] OpenError),
    /// A cluster member without a cluster secret.
    #[error(
        "cluster members need a secret for peer calls: set NACRE_CLUSTER_SECRET, or write it to {path}, with the same value on every member"
    )]
    NoClusterSecret {
        /// The secret file looked for.
        path: String,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Creates the data directory readable by its owner only (0700), or tightens an
/// existing one to that where it may (a warning otherwise): it holds the database, the token key and the admin password.
fn owner_only_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        // Best effort: a directory of another owner stays as it is (its files are 0600).
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            Ok(()) => {
                tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data directory was open to other users; set to 0700")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), error = %e, "data directory is open to other users and cannot be set to 0700")
            }
        }
    }
    Ok(())
}

/// A running node.
pub struct App {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound DNS address (UDP and TCP).
    pub dns_addr: SocketAddr,
    /// The naming use cases (tests and benches may drive them directly).
    pub naming: Arc<NamingService>,
    /// The config use cases.
    pub config: Arc<ConfigService>,
    /// UDP push to subscribers, when `push.enabled`.
    pub push: Option<Arc<PushService>>,
    /// Figures of the probe rounds.
    pub probe_stats: Arc<ProbeStats>,
    cancel: CancellationToken,
    dns: DnsServer,
    tasks: Vec<JoinHandle<()>>,
    raft: Arc<RaftNode>,
}

impl App {
    /// Starts a node: config database and cache, registry, naming, beat expiry,
    /// probes, push, DNS and HTTP (bound on `http.addr`).
    pub async fn start(settings: Settings) -> Result<Self, AppError> {
        let listener = TcpListener::bind(settings.http.addr)
            .await
            .map_err(|source| AppError::HttpBind {
                addr: settings.http.addr,
                source,
            })?;
        Self::start_on(settings, listener).await
    }

    /// [`App::start`] with the HTTP listener already bound (tests bind a cluster's
    /// listeners on port 0 first, to name the members).
    pub async fn start_on(mut settings: Settings, listener: TcpListener) -> Result<Self, AppError> {
        owner_only_dir(&settings.data.dir).map_err(|source| AppError::DataDir {
            path: settings.data.dir.display().to_string(),
            source,
        })?;
        let cluster = if settings.cluster.is_cluster() {
            settings.validate_cluster()?;
            let secret = match settings.cluster.secret.clone() {
                Some(s) => s,
                None => {
                    let path = settings.data.dir.join("cluster.secret");
                    match std::fs::read_to_string(&path) {
                        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
                        _ => {
                            return Err(AppError::NoClusterSecret {
                                path: path.display().to_string(),
                            });
                        }
                    }
                }
            };
            settings.cluster.secret = Some(secret.clone());
            // validate_cluster found this node among the members.
            let node = settings.node_addr().unwrap_or_default();
            let members = settings
                .cluster
                .normalized_members(settings.http.addr.port());
            let membership = Arc::new(Membership::new(
                &node,
                &members,
                settings.cluster.down_after_ms,
                crate::model::now_millis(),
            ));
            info!(node = %node, members = ?members, "cluster member");
            Some((node, secret, membership))
        } else {
            None
        };
        let registry = Arc::new(Registry::with_empty_service_ttl(
            settings.naming.empty_service_ttl_ms,
        ));
        let naming = NamingService::new(registry.clone())
            .with_max_persistent_per_namespace(
                settings.naming.max_persistent_instances_per_namespace,
            )
            .with_max_persistent(settings.naming.max_persistent_instances)
            // As Nacos: the worker id of snowflake instance ids from the node's
            // address (0 for an unspecified one).
            .with_snowflake_worker(crate::naming::ids::SnowflakeIds::worker_of(
                settings.http.addr.ip(),
            ));
        let distro_settings = DistroSettings {
            sync_delay_ms: settings.cluster.sync_delay_ms,
            verify_interval_ms: settings.cluster.verify_interval_ms,
            owner_grace_ms: settings.cluster.owner_grace_ms,
        };
        let (naming, distro_changes) = match &cluster {
            Some((node, _, membership)) => {
                let (naming, rx) = naming.with_distro(node, membership.clone(), &distro_settings);
                // Not ready until a peer's snapshot is in (DNS: SERVFAIL; readiness: 503).
                registry.set_ready(false);
                (naming, Some(rx))
            }
            None => (naming, None),
        };
        let naming = Arc::new(naming);
        // A standalone node answers DNS once its CP data is restored (below).
        if cluster.is_none() {
            registry.set_ready(false);
        }
        let store = ConfigStore::open(&settings.config_store, &settings.data.dir).await?;
        info!(database = store.kind(), "config store open");
        let (auth, _bootstrap) =
            crate::auth::AuthService::start(store.clone(), &settings.auth, &settings.data.dir)
                .await?;
        let auth = Arc::new(auth);
        if !settings.auth.enabled {
            tracing::warn!(
                addr = %settings.http.addr,
                "auth is OFF: anyone who reaches the HTTP port may read and change everything"
            );
        }
        let config = Arc::new(ConfigService::load(store).await?);
        let cancel = CancellationToken::new();

        let dns = DnsServer::start(&settings.dns, naming.view()).await?;
        info!(addr = %dns.local_addr, "DNS listening (UDP and TCP)");

        let http_addr = listener.local_addr().map_err(|source| AppError::HttpBind {
            addr: settings.http.addr,
            source,
        })?;
        info!(addr = %http_addr, "HTTP listening (Nacos API under /nacos)");

        let mut tasks = Vec::new();
        let list_cache = Arc::new(ListCache::default());
        let push = if settings.push.enabled {
            let (push, worker) = PushService::start(
                &settings.push,
                naming.view(),
                list_cache.clone(),
                settings.naming.cache_millis,
            )
            .await?;
            if let Ok(addr) = push.local_addr() {
                info!(%addr, "UDP push socket bound");
            }
            tasks.push(tokio::spawn(worker.run(cancel.clone())));
            Some(push)
        } else {
            None
        };
        // CP data (persistent instances, service and cluster settings) goes through
        // Raft, restored here after the last step that can fail (an open group holds
        // its log file) and before HTTP serves. A standalone node is a one-member group,
        // so its CP data survives restarts; DNS answered SERVFAIL until now. A member of
        // a cluster joins the group of all members (initialized once, by
        // `replication::raft::bootstrap`'s rule).
        let raft_dir = settings.data.dir.join("raft");
        let raft = match &cluster {
            None => {
                let options = RaftOptions::from_settings(
                    raft_dir,
                    listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| settings.http.addr.to_string()),
                    None,
                    &settings.raft,
                );
                let state = Arc::new(PersistentState::new(naming.clone()));
                let raft = RaftNode::open(options, state).await?;
                info!(node_id = raft.id(), "raft group open (this node alone)");
                registry.set_ready(true);
                raft
            }
            Some((node, secret, _)) => {
                let options = RaftOptions::from_settings(
                    raft_dir,
                    node.clone(),
                    Some(PeerClient::new(node, secret)),
                    &settings.raft,
                );
                let state = Arc::new(PersistentState::new(naming.clone()));
                let raft = RaftNode::open(options, state).await?;
                info!(node_id = raft.id(), "raft group open (cluster member)");
                // Not ready (DNS SERVFAIL, readiness 503) until caught up with the leader.
                registry.set_part_ready(ReadyPart::Raft, false);
                let (waiting, registry, stop) = (raft.clone(), registry.clone(), cancel.clone());
                tasks.push(tokio::spawn(async move {
                    let caught_up = waiting.wait_caught_up(&stop).await;
                    if !stop.is_cancelled() {
                        if caught_up {
                            info!("raft: caught up with the leader");
                        } else {
                            tracing::warn!(
                                "raft: no leader to catch up with; serving the persistent data this member holds"
                            );
                        }
                        registry.set_part_ready(ReadyPart::Raft, true);
                    }
                }));
                tasks.push(tokio::spawn(crate::replication::raft::watch_replication(
                    raft.clone(),
                    Duration::from_secs(5),
                    cancel.clone(),
                )));
                tasks.push(tokio::spawn(crate::replication::raft::bootstrap(
                    raft.clone(),
                    settings
                        .cluster
                        .normalized_members(settings.http.addr.port()),
                    cancel.clone(),
                )));
                raft
            }
        };
        let distro = match (&cluster, distro_changes) {
            (Some((node, secret, membership)), Some(changes)) => {
                let client = PeerClient::new(node, secret);
                let distro = Distro::new(
                    naming.clone(),
                    membership.clone(),
                    client.clone(),
                    distro_settings,
                );
                tasks.push(tokio::spawn(crate::cluster::run_probes(
                    membership.clone(),
                    client,
                    Duration::from_millis(settings.cluster.probe_interval_ms),
                    cancel.clone(),
                )));
                tasks.push(tokio::spawn(distro.clone().run(changes, cancel.clone())));
                let notifier = crate::config::peers::PeerNotifier::new(
                    PeerClient::new(node, secret),
                    membership.peers(),
                );
                config.subscribe(notifier.clone());
                tasks.push(tokio::spawn(notifier.run(cancel.clone())));
                tasks.push(tokio::spawn(crate::config::peers::run_change_check(
                    config.clone(),
                    Duration::from_millis(settings.cluster.config_check_interval_ms),
                    cancel.clone(),
                )));
                Some(distro)
            }
            _ => None,
        };
        let mut dispatcher = NamingDispatcher::new(naming.clone());
        if let Some(distro) = &distro {
            dispatcher = dispatcher.with_distro(distro.clone());
        }
        dispatcher = dispatcher.with_raft(raft.clone());
        let dispatcher = Arc::new(dispatcher);
        let mut probes = ProbeWorker::new(dispatcher.clone(), settings.health.clone());
        if let Some((node, secret, membership)) = &cluster {
            probes = probes.with_sharing(ProbeSharing::new(
                membership.clone(),
                PeerClient::new(node, secret),
            ));
        }
        let probe_stats = probes.stats();
        if settings.health.enabled {
            tasks.push(tokio::spawn(probes.run(cancel.clone())));
        }

        let state = AppState::new(AppStateInner {
            naming: naming.clone(),
            dispatcher: dispatcher.clone(),
            cache_millis: settings.naming.cache_millis,
            list_cache,
            push: push.clone(),
            probe_stats: probe_stats.clone(),
            auth,
            config: config.clone(),
            config_settings: Arc::new(settings.config.clone()),
            node_addr: cluster
                .as_ref()
                .map(|(node, _, _)| node.clone())
                .unwrap_or_else(|| http_addr.to_string()),
            distro: distro.clone(),
            raft: Some(raft.clone()),
        });
        let (router, gate) = http::router(state, &settings);
        let http_cancel = cancel.clone();
        let http_settings = settings.http.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, gate, &http_settings, http_cancel).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        let worker = BeatExpiryWorker::new(
            naming.clone(),
            Duration::from_millis(settings.naming.expiry_tick_ms),
        );
        tasks.push(tokio::spawn(worker.run(cancel.clone())));

        Ok(Self {
            http_addr,
            dns_addr: dns.local_addr,
            naming,
            config,
            push,
            probe_stats,
            cancel,
            dns,
            tasks,
            raft,
        })
    }

    /// Stops DNS, lets in-flight HTTP requests finish, and stops the workers.
    pub async fn shutdown(self) {
        self.dns.shutdown();
        self.cancel.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.raft.shutdown().await;
        self.config.close().await;
        info!("stopped");
    }
}
