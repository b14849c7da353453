//! Typed configuration: compiled-in defaults, then the TOML file, then command-line
//! flags (which also read `NACRE_*` environment variables). Validated once at start;
//! each part of the server receives only its own section.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;
use thiserror::Error;

/// Errors reading or validating the configuration.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// The setting, as `section.key`.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

/// Every setting of a node.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The Nacos HTTP API.
    pub http: HttpSettings,
    /// The DNS server.
    pub dns: DnsSettings,
    /// Naming behaviour.
    pub naming: NamingSettings,
    /// Where the node keeps its files.
    pub data: DataSettings,
    /// The config center's behaviour.
    pub config: ConfigSettings,
    /// The config center's database.
    pub config_store: ConfigStoreSettings,
    /// Probes of persistent instances.
    pub health: HealthSettings,
    /// UDP push to subscribers.
    pub push: PushSettings,
    /// Users, tokens and permissions.
    pub auth: AuthSettings,
    /// The other members of a cluster; none means standalone.
    pub cluster: ClusterSettings,
    /// The Raft group of CP naming data.
    pub raft: RaftSettings,
}

/// `[raft]`: timings and log compaction of the Raft group that keeps persistent
/// instances, service settings and checker settings (DESIGN §2), on one node as on
/// many.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSettings {
    /// Milliseconds between two heartbeats of the leader. Default 100.
    pub heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which a follower stands for election: a
    /// random time between this and twice this, after the old leader's lease (twice
    /// this). Default 400: a new leader 1.2–1.6 s after losing one (Nacos's JRaft
    /// takes 5 s or more).
    pub election_timeout_ms: u64,
    /// A snapshot is built after this many log entries since the last one. Default
    /// 10000.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (a follower that lags less catches up from
    /// the log, not a whole snapshot). Default 1000.
    pub logs_kept_after_snapshot: u64,
    /// Milliseconds a CP write waits for a leader and for its commit before it is
    /// refused with 503. Default 5000.
    pub write_timeout_ms: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_ms: 400,
            snapshot_every: 10_000,
            logs_kept_after_snapshot: 1_000,
            write_timeout_ms: 5_000,
        }
    }
}

/// `[cluster]`: the members of a cluster and the timings of Distro (DESIGN §5). With no
/// members the node is standalone, exactly as without this section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Every member's address `host:port` (its HTTP address as the others reach it),
    /// this node's among them; a missing port means this node's HTTP port. Also
    /// `--cluster-conf FILE` (Nacos's `cluster.conf`: one or more `host[:port]` a line,
    /// comma separated, `#` comments), which replaces this list. Default: none.
    pub members: Vec<String>,
    /// This node's address as the members list names it. Default: the member whose
    /// address is `http.addr`, else the one whose port is `http.addr`'s port and whose
    /// host is a local address. Also `--node-addr`.
    pub node_addr: String,
    /// Milliseconds between two probes of each peer. Default 1000.
    pub probe_interval_ms: u64,
    /// Milliseconds of failed probes after which a peer is DOWN (its clients move to
    /// other members). Default 3000.
    pub down_after_ms: u64,
    /// Milliseconds a change waits before it is sent to the peers, so a burst goes as
    /// one batch (Nacos waits 1000). Default 10.
    pub sync_delay_ms: u64,
    /// Milliseconds between two checksum rounds (Distro verify), each one message per
    /// peer. Default 5000.
    pub verify_interval_ms: u64,
    /// Milliseconds the new owner of a DOWN member's clients waits for them to beat
    /// again before it expires them. Default 30000.
    pub owner_grace_ms: u64,
    /// Milliseconds between two checks of config rows changed in the shared database
    /// (catches a missed notice from a peer). Default 10000.
    pub config_check_interval_ms: u64,
    /// The secret every peer call carries: `NACRE_CLUSTER_SECRET` or the file
    /// `<data.dir>/cluster.secret`, never the config file. Members refuse to start
    /// without one.
    #[serde(skip)]
    pub secret: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            node_addr: String::new(),
            probe_interval_ms: 1_000,
            down_after_ms: 3_000,
            sync_delay_ms: 10,
            verify_interval_ms: 5_000,
            owner_grace_ms: 30_000,
            config_check_interval_ms: 10_000,
            secret: None,
        }
    }
}

impl std::fmt::Debug for ClusterSettings {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("members", &self.members)
            .field("node_addr", &self.node_addr)
            .field("probe_interval_ms", &self.probe_interval_ms)
            .field("down_after_ms", &self.down_after_ms)
            .field("sync_delay_ms", &self.sync_delay_ms)
            .field("verify_interval_ms", &self.verify_interval_ms)
            .field("owner_grace_ms", &self.owner_grace_ms)
            .field("config_check_interval_ms", &self.config_check_interval_ms)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ClusterSettings {
    /// Whether members are configured (a cluster, not a standalone node).
    pub fn is_cluster(&self) -> bool {
        !self.members.is_empty()
    }

    /// Parses Nacos's `cluster.conf`: each line trimmed, text after `#` dropped,
    /// entries separated by commas, each `host[:port]` (a missing port is
    /// `default_port`). Returns the members in file order, without duplicates.
    pub fn parse_cluster_conf(text: &str, default_port: u16) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            for entry in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let member = with_port(entry, default_port);
                if !members.contains(&member) {
                    members.push(member);
                }
            }
        }
        members
    }

    /// The members with their ports filled in (`default_port` where missing).
    pub fn normalized_members(&self, default_port: u16) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        for m in &self.members {
            let member = with_port(m.trim(), default_port);
            if !members.contains(&member) {
                members.push(member);
            }
        }
        members
    }
}

/// `host` with `:default_port` appended unless it has a port (`[v6]:port` and a bare
/// IPv6 literal understood).
fn with_port(entry: &str, default_port: u16) -> String {
    if entry.parse::<SocketAddr>().is_ok() {
        return entry.to_string();
    }
    if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return SocketAddr::new(ip, default_port).to_string();
    }
    match entry.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => entry.to_string(),
        _ => format!("{entry}:{default_port}"),
    }
}

/// `[auth]`: who may use the HTTP API. On by default; no secret ships with Nacre.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Check every request but the health probes and login. Default true. Turning it
    /// off is allowed only while `http.addr` is a loopback address.
    pub enabled: bool,
    /// Base64 of the key that signs tokens (as Nacos's `token.secret.key`), at least
    /// 32 bytes decoded; also `NACRE_AUTH_TOKEN_KEY`. Empty (the default): the key in
    /// `<data.dir>/auth/token.key`, generated at first start.
    pub token_key: String,
    /// Seconds a token lives (`tokenTtl`), and the longest expiry accepted. Default
    /// 18000 (Nacos's), at most 604800 (a week).
    pub token_ttl_secs: u64,
    /// Seconds a checked username and password (sent on every request by the Node.js
    /// client) are remembered before bcrypt checks them again. Default 300.
    pub credential_cache_secs: u64,
    /// The admin password set when the admin user is created (or when it still has
    /// Nacos's default password): `NACRE_ADMIN_PASSWORD` only, never from a file.
    #[serde(skip)]
    pub admin_password: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            token_key: String::new(),
            token_ttl_secs: 18_000,
            credential_cache_secs: 300,
            admin_password: None,
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    /// Never prints the key or the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .field(
                "token_key",
                &if self.token_key.is_empty() {
                    ""
                } else {
                    "<set>"
                },
            )
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("credential_cache_secs", &self.credential_cache_secs)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

/// The loopback and private networks: who may use forwarding.
fn local_networks() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// `[health]`: server-side probes of persistent instances (as Nacos's TCP, HTTP and
/// MySQL health checks).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Probe persistent instances at all. Default true.
    pub enabled: bool,
    /// Time between the starts of two check rounds, milliseconds. Default 5000.
    pub interval_ms: u64,
    /// Each round starts up to this much earlier or later than `interval_ms` says,
    /// at random, milliseconds. Default 500.
    pub jitter_ms: u64,
    /// How long one probe may take (connect, request, query), milliseconds. Default
    /// 1000.
    pub timeout_ms: u64,
    /// Consecutive results that flip an instance (Nacos's `checkTimes`). Default 3.
    /// A refused connection or an unexpected HTTP status flips it at once.
    pub check_times: u32,
    /// Most probes in flight at once. Default 512.
    pub max_concurrency: usize,
    /// Networks probes (TCP, HTTP, MYSQL) may reach. Default the private networks
    /// (`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fc00::/7`). A host name is
    /// resolved once per probe and the probe goes to an address of it that is allowed.
    pub allow_targets: Vec<IpNet>,
    /// Networks probes never reach, even inside `allow_targets`. Default loopback,
    /// `0.0.0.0/8`, link-local and the cloud metadata addresses (AWS, GCP, Azure,
    /// Alibaba Cloud). Unspecified, broadcast and multicast addresses are never probed.
    pub deny_targets: Vec<IpNet>,
}

/// The networks probes may reach by default: the private ones.
fn private_networks() -> Vec<IpNet> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Where probes never go by default: loopback, "this network", link-local (which
/// holds the AWS, GCP and Azure metadata address 169.254.169.254) and the other cloud
/// metadata addresses (Alibaba Cloud, Azure's wire server, AWS over IPv6).
fn probe_deny_networks() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "0.0.0.0/8",
        "169.254.0.0/16",
        "fe80::/10",
        "100.100.100.200/32",
        "168.63.129.16/32",
        "fd00:ec2::254/128",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

impl HealthSettings {
    /// Whether a probe may reach `ip`: inside `allow_targets`, outside `deny_targets`,
    /// and neither unspecified, broadcast nor multicast. An IPv4-mapped IPv6 address
    /// counts as its IPv4 address.
    pub fn may_probe(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        let special = ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
        !special
            && self.allow_targets.iter().any(|n| n.contains(&ip))
            && !self.deny_targets.iter().any(|n| n.contains(&ip))
    }
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 5_000,
            jitter_ms: 500,
            timeout_ms: 1_000,
            check_times: 3,
            max_concurrency: 512,
            allow_targets: private_networks(),
            deny_targets: probe_deny_networks(),
        }
    }
}

/// `[push]`: UDP push of service changes to subscribed clients (Nacos's 1.x push).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Push at all. Default true.
    pub enabled: bool,
    /// The UDP socket pushes are sent from and acks come back to. Default
    /// `0.0.0.0:0` (any free port).
    pub addr: SocketAddr,
    /// Changes of a service within this window go out as one push, milliseconds.
    /// Default 100.
    pub delay_ms: u64,
    /// A push not acked within this time is sent again, milliseconds. Default 1000.
    pub ack_timeout_ms: u64,
    /// Resends of one push before it is given up. Default 2.
    pub max_retries: u32,
    /// A subscriber that has not listed the service again for this long is dropped,
    /// milliseconds. Default 30000.
    pub subscriber_ttl_ms: u64,
    /// Most subscribers of all services together. Default 100000.
    pub max_subscribers: usize,
    /// Most subscriptions made from one client address, and most aimed at one target
    /// address. Default 256.
    pub max_per_client: usize,
    /// Most pushes to one target address waiting for their ack; past it, pushes to that
    /// address are skipped until acks come or the pending ones are given up. Default 64.
    pub max_unacked_per_target: usize,
    /// A list request from inside these networks may name another host inside them
    /// as its `clientIP`; otherwise pushes go to the request's own address, whatever
    /// `clientIP` says. Default none.
    pub allow_targets: Vec<IpNet>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            delay_ms: 100,
            ack_timeout_ms: 1_000,
            max_retries: 2,
            subscriber_ttl_ms: 30_000,
            max_subscribers: 100_000,
            max_per_client: 256,
            max_unacked_per_target: 64,
            allow_targets: Vec::new(),
        }
    }
}

/// `[http]`: the Nacos HTTP API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Listen address; port 0 picks a free port. Default `0.0.0.0:8848`.
    pub addr: SocketAddr,
    /// Largest request body accepted, bytes. Default 32 MiB: room for a config of
    /// `config.max_content_bytes` (10 MiB) percent-encoded in a form body.
    pub max_body_bytes: usize,
    /// From the first byte of a request to the end of its head, milliseconds; a
    /// slower (or half-sent) request closes its connection. Default 10000.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and no traffic for this long is closed,
    /// milliseconds. Held long polls are requests in flight and stay. So is one whose
    /// answer could not be written for this long (a client that stopped reading).
    /// Default 60000.
    pub idle_timeout_ms: u64,
    /// From a request's head to the end of its body, milliseconds. Default 30000.
    pub body_read_timeout_ms: u64,
    /// TCP keepalive probes after this many idle seconds find peers that vanished
    /// without closing; 0 turns them off. Default 60.
    pub tcp_keepalive_secs: u64,
    /// Most connections open at once from one client address; more are closed as
    /// soon as they are accepted. Default 1024.
    pub max_connections_per_ip: usize,
    /// Most connections open at once in all; past it the oldest connection with no
    /// request in flight is closed to make room. 0 (the default): three quarters of
    /// the process's open-file limit, so sockets cannot use up the descriptors the
    /// database, DNS and probes need.
    pub max_connections: usize,
}

impl HttpSettings {
    /// `max_connections`, with 0 read as three quarters of the open-file limit
    /// (at least 256).
    pub fn effective_max_connections(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        usize::try_from(files / 4 * 3)
            .unwrap_or(usize::MAX)
            .max(256)
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 8848)),
            max_body_bytes: 32 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 30_000,
            tcp_keepalive_secs: 60,
            max_connections_per_ip: 1024,
            max_connections: 0,
        }
    }
}

/// `[dns]`: the authoritative DNS server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// Listen address for UDP and TCP; port 0 picks a free port (the same one for both).
    /// Default `0.0.0.0:53`.
    pub addr: SocketAddr,
    /// The service zone, default `svc.`.
    pub zone: String,
    /// TTL of service answers, seconds. Default 5.
    pub ttl: u32,
    /// TTL of negative answers (the SOA minimum), seconds. Default 5.
    pub negative_ttl: u32,
    /// Most A/AAAA records in one answer, a weighted sample drawn per query. Default 16.
    pub max_answers: usize,
    /// Addresses of the zone's name server `ns.<zone>` (the NS target and SOA
    /// MNAME), answered as its A/AAAA records and as glue. Empty (the default): the
    /// address of `dns.addr` when it is a specific one; with `0.0.0.0` or `::`,
    /// `ns.<zone>` has no address (set this before delegating the zone).
    pub ns_addresses: Vec<std::net::IpAddr>,
    /// Most SRV records in one answer, a weighted sample drawn per query (their
    /// addresses go in the additional section). Default 16.
    pub max_srv_answers: usize,
    /// Largest UDP response offered with EDNS(0), bytes. Default 1232.
    pub udp_payload: u16,
    /// Directory of static zone files (`*.zone`, RFC 1035 master format), each loaded as
    /// an authoritative zone named after its file. Default `zones`; a missing directory
    /// means no static zones.
    pub zones_dir: PathBuf,
    /// Upstream resolvers (`ip:port`) for names outside every authoritative zone. Empty
    /// means such names are REFUSED.
    pub forwarders: Vec<SocketAddr>,
    /// Longest wait for the forwarders, milliseconds; past it the query gets SERVFAIL.
    /// Under a stub resolver's own timeout (glibc: 5 s). Default 2500.
    pub forward_timeout_ms: u64,
    /// Client networks allowed to use forwarding. Default loopback and private ranges.
    pub allow_recursion: Vec<IpNet>,
    /// Seconds an idle TCP connection is kept. Default 10.
    pub tcp_idle_secs: u64,
    /// Most TCP connections open at once; more are closed at once. Default 1024.
    pub max_tcp_connections: usize,
    /// Most TCP connections open at once from one client address. Default 64.
    pub max_tcp_connections_per_ip: usize,
    /// UDP sockets on the DNS port (`SO_REUSEPORT`), each served by its own thread
    /// (batched: `recvmmsg` / `sendmmsg` of up to 32 packets) so that UDP throughput
    /// grows with cores; 0 (the default) means one per core.
    pub udp_workers: usize,
    /// Most UDP queries on the general path (static zones, forwarding, odd queries)
    /// at once; more are dropped. Default 1024.
    pub max_slow_queries: usize,
    /// Response rate limiting of UDP answers per client prefix; off by default.
    pub rrl: RrlSettings,
    /// Which namespaces DNS serves, and to whom. DNS answers are not behind the HTTP
    /// API's auth: by default every namespace is answered to anyone who can reach the
    /// port.
    pub expose: ExposeSettings,
    /// `[dns.locality]`: client network to Nacos cluster name, e.g. `"10.1.0.0/16" =
    /// "hz"`. A service query from a network listed here (the longest prefix wins) is
    /// answered from that cluster's instances when it has healthy ones, else from all.
    /// Empty (the default): every client gets every cluster's instances.
    pub locality: std::collections::BTreeMap<IpNet, String>,
    /// Resolvers whose EDNS Client Subnet option (RFC 7871) places their clients for
    /// `[dns.locality]`: a query from one of these networks that carries the option is
    /// placed by the subnet in it, not by the resolver's own address, and its answer
    /// says the scope it holds for. The option from anyone else is ignored. Default
    /// empty.
    pub ecs_resolvers: Vec<IpNet>,
}

/// Longest cluster name `[dns.locality]` takes, bytes.
pub const MAX_CLUSTER_NAME: usize = 64;

/// `[dns.expose]`: the namespaces the service zone answers for, and optional client
/// networks per namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExposeSettings {
    /// Namespace ids served (`public` for the default one); `"*"` serves all. A
    /// namespace not served has no DNS names (NXDOMAIN). Default `["*"]`.
    pub namespaces: Vec<String>,
    /// Namespace id to the client networks it is answered to; others get REFUSED for
    /// its names. A namespace not listed is answered to every client. Default empty.
    pub clients: std::collections::HashMap<String, Vec<IpNet>>,
}

impl Default for ExposeSettings {
    fn default() -> Self {
        Self {
            namespaces: vec!["*".into()],
            clients: std::collections::HashMap::new(),
        }
    }
}

/// `[dns.rrl]`: response rate limiting for UDP (see `dns::rrl`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlSettings {
    /// Limit at all. Default false.
    pub enabled: bool,
    /// Responses per second to one client prefix. Default 20.
    pub responses_per_second: u32,
    /// Past the rate, every `slip`-th response goes out truncated (TC) instead of
    /// being dropped; 0 drops all. Default 2.
    pub slip: u32,
    /// Prefix length that groups IPv4 clients. Default 24.
    pub ipv4_prefix_len: u8,
    /// Prefix length that groups IPv6 clients. Default 56.
    pub ipv6_prefix_len: u8,
    /// Most prefixes tracked at once. Default 100000.
    pub max_entries: usize,
}

impl Default for RrlSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix_len: 24,
            ipv6_prefix_len: 56,
            max_entries: 100_000,
        }
    }
}

impl DnsSettings {
    /// How many UDP workers to run: `udp_workers`, or the number of cores when 0.
    pub fn udp_worker_count(&self) -> usize {
        match self.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The addresses `ns.<zone>` answers: `ns_addresses`, else the IP of `addr` when
    /// it is not unspecified, else none.
    pub fn name_server_addresses(&self) -> Vec<std::net::IpAddr> {
        if !self.ns_addresses.is_empty() {
            return self.ns_addresses.clone();
        }
        let ip = self.addr.ip();
        if ip.is_unspecified() {
            Vec::new()
        } else {
            vec![ip]
        }
    }
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], 53)),
            zone: "svc.".into(),
            ttl: 5,
            negative_ttl: 5,
            max_answers: 16,
            max_srv_answers: 16,
            ns_addresses: Vec::new(),
            udp_payload: 1232,
            zones_dir: PathBuf::from("zones"),
            forwarders: Vec::new(),
            forward_timeout_ms: 2500,
            allow_recursion: local_networks(),
            tcp_idle_secs: 10,
            max_tcp_connections: 1024,
            max_tcp_connections_per_ip: 64,
            udp_workers: 0,
            max_slow_queries: 1024,
            rrl: RrlSettings::default(),
            expose: ExposeSettings::default(),
            locality: std::collections::BTreeMap::new(),
            ecs_resolvers: Vec::new(),
        }
    }
}

/// `[naming]`: naming behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamingSettings {
    /// How often the beat checker looks at the expiry queue, milliseconds. Default 500.
    pub expiry_tick_ms: u64,
    /// `cacheMillis` in list answers, milliseconds. Default 10000 (Nacos 2.x).
    pub cache_millis: u64,
    /// Milliseconds a service created by registration may stay without instances
    /// before it is removed (Nacos 2.x `nacos.naming.clean.empty-service.expired-time`).
    /// Services created through the service API stay. Default 60000.
    pub empty_service_ttl_ms: u64,
    /// Most persistent instances (`ephemeral=false`) one namespace may hold; each is
    /// probed by the server. Default 1000.
    pub max_persistent_instances_per_namespace: usize,
    /// Most persistent instances of all namespaces together (namespace ids need not
    /// exist, so the per-namespace cap alone bounds nothing). Default 10000.
    pub max_persistent_instances: usize,
}

impl Default for NamingSettings {
    fn default() -> Self {
        Self {
            expiry_tick_ms: 500,
            cache_millis: 10_000,
            empty_service_ttl_ms: 60_000,
            max_persistent_instances_per_namespace: 1_000,
            max_persistent_instances: 10_000,
        }
    }
}

/// `[data]`: files of the node.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Data directory, created at start. Default `data`.
    pub dir: PathBuf,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}

/// `[config]`: the config center's behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSettings {
    /// Largest config content accepted by a publish or an import, bytes of UTF-8.
    /// Default 10485760 (10 MiB, Nacos's `maxContent`; Nacos's 100 KiB quota applies
    /// only with its capacity checks on).
    pub max_content_bytes: usize,
    /// Shortest hold of a long-polling listener, milliseconds. A listener is held for
    /// `max(min_long_poll_ms, Long-Pulling-Timeout - 500)`, as Nacos
    /// `LongPollingService` (where the floor is 10000). Default 10000.
    pub min_long_poll_ms: u64,
    /// Largest `pageSize` accepted by every paged API (config search and history,
    /// service list, subscribers, users, roles, permissions), items. Default 1000 (the
    /// Python client lists with 1000).
    pub max_page_size: u32,
}

impl Default for ConfigSettings {
    fn default() -> Self {
        Self {
            max_content_bytes: 10 * 1024 * 1024,
            min_long_poll_ms: 10_000,
            max_page_size: 1000,
        }
    }
}

/// `[config_store]`: where configs, history and namespaces are kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigStoreSettings {
    /// Empty (the default): SQLite in `<data.dir>/nacre.db`. Otherwise a database URL:
    /// `mysql://user:password@host:3306/db` (MySQL or MariaDB, Nacos's schema) or
    /// `sqlite:///path/file.db`.
    pub url: String,
    /// Most pooled connections. Default 8.
    pub max_connections: u32,
    /// SQLite's `synchronous` pragma in WAL mode: `full` (the default) syncs the log
    /// on every commit, so an acknowledged publish survives a power cut; `normal`
    /// survives a crash of the process only.
    pub sqlite_synchronous: String,
}

impl Default for ConfigStoreSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
            sqlite_synchronous: "full".into(),
        }
    }
}

impl Settings {
    /// Reads a TOML file over the defaults. Not validated yet: command-line flags may
    /// still change it (`--http-addr` can make `auth.enabled = false` acceptable), so
    /// the caller validates once they are applied.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses TOML text over the defaults and validates it.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings: Settings = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: PathBuf::new(),
            source: Box::new(e),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and combinations; `from_toml` calls it, and `main` after the flags
    /// override the file.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, reason: &str| {
            Err(SettingsError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.raft.heartbeat_ms == 0 {
            return invalid("raft.heartbeat_ms", "must be at least 1");
        }
        if self.raft.election_timeout_ms < 2 * self.raft.heartbeat_ms {
            return invalid(
                "raft.election_timeout_ms",
                "must be at least twice raft.heartbeat_ms",
            );
        }
        if self.raft.snapshot_every == 0 {
            return invalid("raft.snapshot_every", "must be at least 1");
        }
        if self.raft.write_timeout_ms == 0 {
            return invalid("raft.write_timeout_ms", "must be at least 1");
        }
        if !self.dns.zone.ends_with('.') || self.dns.zone.len() < 2 {
            return invalid(
                "dns.zone",
                "must be a fully qualified name such as \"svc.\"",
            );
        }
        if hickory_proto::rr::Name::from_ascii(&self.dns.zone).is_err() {
            return invalid("dns.zone", "is not a valid DNS name");
        }
        if self.dns.max_answers == 0 {
            return invalid("dns.max_answers", "must be at least 1");
        }
        if self.dns.forward_timeout_ms == 0 {
            return invalid("dns.forward_timeout_ms", "must be at least 1");
        }
        if self.dns.max_srv_answers == 0 {
            return invalid("dns.max_srv_answers", "must be at least 1");
        }
        if self.dns.udp_payload < 512 {
            return invalid("dns.udp_payload", "must be at least 512");
        }
        if self.dns.max_tcp_connections == 0 || self.dns.max_slow_queries == 0 {
            return invalid(
                "dns.max_tcp_connections",
                "dns.max_tcp_connections and dns.max_slow_queries must be at least 1",
            );
        }
        if self.dns.rrl.ipv4_prefix_len > 32 || self.dns.rrl.ipv6_prefix_len > 128 {
            return invalid(
                "dns.rrl",
                "prefix lengths are at most 32 (IPv4) and 128 (IPv6)",
            );
        }
        if let Some((net, _)) = self
            .dns
            .locality
            .iter()
            .find(|(_, cluster)| cluster.is_empty() || cluster.len() > MAX_CLUSTER_NAME)
        {
            return Err(SettingsError::Invalid {
                field: "dns.locality",
                reason: format!(
                    "the cluster name of {net} must be 1 to {MAX_CLUSTER_NAME} bytes long"
                ),
            });
        }
        if self.config.max_page_size == 0 {
            return invalid("config.max_page_size", "must be at least 1");
        }
        if self.config_store.max_connections == 0 {
            return invalid("config_store.max_connections", "must be at least 1");
        }
        if !matches!(
            self.config_store.sqlite_synchronous.as_str(),
            "full" | "normal"
        ) {
            return invalid(
                "config_store.sqlite_synchronous",
                "must be \"full\" or \"normal\"",
            );
        }
        let url = &self.config_store.url;
        if !(url.is_empty()
            || url.starts_with("mysql://")
            || url.starts_with("mariadb://")
            || url.starts_with("sqlite:"))
        {
            return invalid(
                "config_store.url",
                "must be empty (SQLite in the data dir), mysql://... or sqlite:...",
            );
        }
        if self.http.header_read_timeout_ms == 0
            || self.http.idle_timeout_ms == 0
            || self.http.body_read_timeout_ms == 0
        {
            return invalid(
                "http.header_read_timeout_ms",
                "http.header_read_timeout_ms, idle_timeout_ms and body_read_timeout_ms must be at least 1",
            );
        }
        if self.http.max_connections_per_ip == 0 || self.dns.max_tcp_connections_per_ip == 0 {
            return invalid(
                "http.max_connections_per_ip",
                "http.max_connections_per_ip and dns.max_tcp_connections_per_ip must be at least 1",
            );
        }
        if self.naming.expiry_tick_ms == 0 {
            return invalid("naming.expiry_tick_ms", "must be at least 1");
        }
        if !self.auth.enabled && !self.http.addr.ip().is_loopback() {
            return invalid(
                "auth.enabled",
                "may be false only while http.addr is a loopback address (such as 127.0.0.1:8848): \
                 without auth anyone who reaches the port could change every service and config",
            );
        }
        if !(60..=604_800).contains(&self.auth.token_ttl_secs) {
            return invalid(
                "auth.token_ttl_secs",
                "must be between 60 and 604800 (a week)",
            );
        }
        if !self.auth.token_key.trim().is_empty()
            && let Err(e) = crate::auth::token::check_key(&self.auth.token_key, "auth.token_key")
        {
            return invalid("auth.token_key", &e.to_string());
        }
        if self.health.interval_ms == 0 {
            return invalid("health.interval_ms", "must be at least 1");
        }
        if self.health.jitter_ms >= self.health.interval_ms {
            return invalid("health.jitter_ms", "must be less than health.interval_ms");
        }
        if self.health.timeout_ms == 0 {
            return invalid("health.timeout_ms", "must be at least 1");
        }
        if self.health.check_times == 0 {
            return invalid("health.check_times", "must be at least 1");
        }
        if self.health.max_concurrency == 0 {
            return invalid("health.max_concurrency", "must be at least 1");
        }
        if self.cluster.is_cluster() {
            self.validate_cluster()?;
        }
        if self.push.ack_timeout_ms == 0 {
            return invalid("push.ack_timeout_ms", "must be at least 1");
        }
        // Clients list again every cacheMillis; a shorter TTL would drop them between.
        if self.push.subscriber_ttl_ms <= 2 * self.naming.cache_millis {
            return invalid(
                "push.subscriber_ttl_ms",
                "must be more than twice naming.cache_millis (clients refresh every cacheMillis)",
            );
        }
        Ok(())
    }
}

impl Settings {
    /// The rules for members of a cluster (DESIGN §5): a shared config database (not
    /// SQLite), a shared token key (not one generated per node), sane timings, and
    /// this node among the members. Part of [`Settings::validate`]; `App::start` checks
    /// it again for settings built in code.
    pub fn validate_cluster(&self) -> Result<(), SettingsError> {
        let invalid = |field, reason: &str| {
            Err(SettingsError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        let url = &self.config_store.url;
        if url.is_empty() || url.starts_with("sqlite:") {
            return invalid(
                "config_store.url",
                "a cluster needs one config database shared by every member, and SQLite is \
                 one file per node: set config_store.url (or --db-url / NACRE_DB_URL) to the \
                 same mysql://user:password@host:3306/db on every member, or remove \
                 [cluster] members to run standalone on SQLite",
            );
        }
        if self.auth.enabled && self.auth.token_key.trim().is_empty() {
            return invalid(
                "auth.token_key",
                "cluster members must sign tokens with the same key, and a key generated \
                 at first start differs on every node: set NACRE_AUTH_TOKEN_KEY (or \
                 auth.token_key) to the same base64 key of at least 32 bytes on every \
                 member, e.g. the output of `openssl rand -base64 32`",
            );
        }
        if self.cluster.probe_interval_ms == 0 {
            return invalid("cluster.probe_interval_ms", "must be at least 1");
        }
        if self.cluster.down_after_ms < self.cluster.probe_interval_ms {
            return invalid(
                "cluster.down_after_ms",
                "must be at least cluster.probe_interval_ms",
            );
        }
        if self.cluster.verify_interval_ms == 0 {
            return invalid("cluster.verify_interval_ms", "must be at least 1");
        }
        if self.cluster.config_check_interval_ms == 0 {
            return invalid("cluster.config_check_interval_ms", "must be at least 1");
        }
        if self.cluster.sync_delay_ms > 1_000 {
            return invalid("cluster.sync_delay_ms", "must be at most 1000");
        }
        if self.node_addr().is_none() {
            return invalid(
                "cluster.node_addr",
                "names no member: set --node-addr (or cluster.node_addr) to this node's \
                 address exactly as the members list names it",
            );
        }
        Ok(())
    }

    /// This node's address among the members (see [`ClusterSettings::node_addr`]);
    /// `None` when it names no member or none can be found.
    pub fn node_addr(&self) -> Option<String> {
        let port = self.http.addr.port();
        let members = self.cluster.normalized_members(port);
        if !self.cluster.node_addr.trim().is_empty() {
            let addr = with_port(self.cluster.node_addr.trim(), port);
            return members.contains(&addr).then_some(addr);
        }
        let own = self.http.addr.to_string();
        if members.contains(&own) {
            return Some(own);
        }
        let local = |host: &str| {
            host.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| {
                    ip.is_loopback()
                        || ip == self.http.addr.ip()
                        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
                })
        };
        let mut candidates = members.iter().filter(|m| {
            m.rsplit_once(':')
                .is_some_and(|(host, p)| p.parse() == Ok(port) && local(host))
        });
        let first = candidates.next()?.clone();
        // Two candidates (two members on this host with this port) is a guess: refuse.
        candidates.next().is_none().then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_conf_is_read_as_nacos_reads_it() {
        let text = "#2026-12-04\n10.0.0.1:8848\n 10.0.0.2 # the second\n10.0.0.3:9000,10.0.0.1:8848\n\n[::1]:8848\n";
        assert_eq!(
            ClusterSettings::parse_cluster_conf(text, 8848),
            [
                "10.0.0.1:8848",
                "10.0.0.2:8848",
                "10.0.0.3:9000",
                "[::1]:8848"
            ]
        );
    }

    #[test]
    fn members_need_a_shared_database_and_key_and_must_name_this_node() {
        let mut s = Settings::default();
        s.http.addr = "127.0.0.1:8848".parse().unwrap();
        s.cluster.members = vec!["127.0.0.1:8848".into(), "127.0.0.1:8849".into()];
        let field = |s: &Settings| match s.validate() {
            Err(SettingsError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(&s), "config_store.url");
        s.config_store.url = "sqlite:/tmp/x.db".into();
        assert_eq!(field(&s), "config_store.url");
        s.config_store.url = "mysql://root@127.0.0.1:3306/test".into();
        assert_eq!(field(&s), "auth.token_key");
        s.auth.token_key = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==".into();
        s.validate().expect("valid");
        assert_eq!(s.node_addr().as_deref(), Some("127.0.0.1:8848"));
        s.cluster.node_addr = "127.0.0.1:8850".into();
        assert_eq!(field(&s), "cluster.node_addr");
        s.cluster.node_addr = "127.0.0.1:8849".into();
        assert_eq!(s.node_addr().as_deref(), Some("127.0.0.1:8849"));
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/nacre.toml");
        let settings = Settings::from_file(&path).expect("conf/nacre.toml");
        settings.validate().expect("valid");
        assert_eq!(settings.dns.zone, "svc.");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Settings::from_toml("[dns]\nzonee = \"x.\"\n").is_err());
        assert!(Settings::from_toml("[dns]\nzone = \"svc\"\n").is_err());
    }
}
