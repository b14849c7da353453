//! The DNS front door: hickory glue, the service zone and the transports.
//!
//! Owns: binding UDP and TCP on one address, loading static zones, the forwarder, and
//! the service zone answered from registry snapshots. Never reads SQL; never writes to
//! the registry.

pub mod locality;
pub mod rrl;
pub mod server;
pub mod udp;
pub mod wire;
pub mod zone;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::rdata::{CNAME, MX, NS, PTR, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::proto::rr::{RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::proto::serialize::txt::Parser;
use hickory_server::resolver::config::{ConnectionConfig, NameServerConfig, ResolverOpts};
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::naming::registry::RegistryView;
use crate::settings::DnsSettings;
use server::Dispatcher;
use zone::ServiceZone;

/// Errors starting the DNS server.
#[derive(Debug, Error)]
pub enum DnsError {
    /// The address could not be bound.
    #[error("cannot bind DNS {protocol} on {addr}{hint}")]
    Bind {
        /// "UDP" or "TCP".
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
        /// How to fix a permission error, or empty.
        hint: &'static str,
    },
    /// A static zone file could not be loaded.
    #[error("cannot load zone file {path}: {reason}")]
    Zone {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The forwarder could not be built.
    #[error("cannot configure DNS forwarders: {0}")]
    Forwarder(String),
    /// The service zone name is invalid.
    #[error("invalid dns.zone: {0}")]
    ZoneName(String),
    /// A UDP worker thread could not be started.
    #[error("cannot start a DNS UDP worker thread")]
    Worker(#[source] std::io::Error),
}

const PRIVILEGE_HINT: &str = " (ports below 1024 need root or the capability: run \
`setcap cap_net_bind_service=+ep $(which nacre)`, or choose another port with \
--dns-addr 0.0.0.0:5353)";

/// The query handling of a DNS server with `settings` over `registry`, without its
/// sockets: the service zone, the static zones of `dns.zones_dir` and, with
/// `dns.forwarders`, the forwarder. (The fuzzers drive it directly.)
pub fn dispatcher(settings: &DnsSettings, registry: RegistryView) -> Result<Dispatcher, DnsError> {
    let zone =
        ServiceZone::new(registry, settings).map_err(|e| DnsError::ZoneName(e.to_string()))?;
    let mut catalog = Catalog::new();
    let mut static_origins = Vec::new();
    let mut static_glue: HashMap<LowerName, Vec<Record>> = HashMap::new();
    for (origin, handler, addresses) in load_static_zones(&settings.zones_dir)? {
        info!(zone = %origin, "static zone loaded");
        static_origins.push(origin.clone());
        catalog.upsert(origin, vec![handler]);
        for record in addresses {
            static_glue
                .entry(LowerName::from(&record.name))
                .or_default()
                .push(record);
        }
    }
    let forwarding = !settings.forwarders.is_empty();
    if forwarding {
        let name_servers = settings
            .forwarders
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        // One try per forwarder, each within the overall bound (the dispatcher also
        // gives up after dns.forward_timeout_ms).
        let mut options = ResolverOpts::default();
        options.timeout = Duration::from_millis(settings.forward_timeout_ms);
        options.attempts = 1;
        let forwarder = ForwardZoneHandler::builder_tokio(ForwardConfig {
            name_servers,
            options: Some(options),
        })
        .build()
        .map_err(DnsError::Forwarder)?;
        catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(forwarder)]);
    }
    Ok(Dispatcher::new(
        zone,
        catalog,
        (static_origins, static_glue),
        settings.allow_recursion.clone(),
        forwarding,
        settings.udp_payload,
        Duration::from_millis(settings.forward_timeout_ms),
    ))
}

/// A running DNS server; its tasks and UDP worker threads stop when it is dropped or
/// shut down.
pub struct DnsServer {
    /// The bound address (UDP and TCP).
    pub local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// Stops the UDP workers.
    stop: CancellationToken,
    udp_threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `settings.addr` (port 0: a free port shared by both), loads
    /// the static zones and starts serving.
    pub async fn start(settings: &DnsSettings, registry: RegistryView) -> Result<Self, DnsError> {
        let dispatcher = Arc::new(dispatcher(settings, registry)?);
        if settings.name_server_addresses().is_empty() {
            tracing::warn!(
                zone = %settings.zone,
                "ns.<zone> has no address (dns.addr is a wildcard and dns.ns_addresses is empty); set dns.ns_addresses before delegating the zone"
            );
        }
        let workers = settings.udp_worker_count();
        let (udp, tcp) = bind_pair(settings.addr, workers > 1).await?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            protocol: "UDP",
            addr: settings.addr,
            source,
            hint: "",
        })?;
        // One socket per worker on the same port (SO_REUSEPORT): the kernel spreads
        // clients over them, and each is served by its own thread.
        let mut sockets = vec![udp];
        for _ in 1..workers {
            let more = bind_udp(local_addr, true).map_err(|source| DnsError::Bind {
                protocol: "UDP",
                addr: local_addr,
                source,
                hint: "",
            })?;
            sockets.push(more);
        }
        let idle = Duration::from_secs(settings.tcp_idle_secs);
        let limits = server::UdpLimits {
            rrl: settings
                .rrl
                .enabled
                .then(|| Arc::new(rrl::Limiter::new(settings.rrl.clone()))),
            slow: Arc::new(tokio::sync::Semaphore::new(settings.max_slow_queries)),
        };
        let stop = CancellationToken::new();
        let mut udp_threads = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            let worker = server::UdpWorker {
                socket,
                dispatcher: dispatcher.clone(),
                limits: limits.clone(),
                general: tokio::runtime::Handle::current(),
            };
            let worker_stop = stop.clone();
            match std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || worker.run(worker_stop))
            {
                Ok(thread) => udp_threads.push(thread),
                Err(e) => {
                    // The workers already started stop and close their sockets.
                    stop.cancel();
                    return Err(DnsError::Worker(e));
                }
            }
        }
        let tasks = vec![tokio::spawn(server::serve_tcp(
            tcp,
            dispatcher,
            idle,
            settings.max_tcp_connections,
            settings.max_tcp_connections_per_ip,
        ))];
        info!(workers, "DNS UDP workers");
        Ok(Self {
            local_addr,
            tasks,
            stop,
            udp_threads: parking_lot::Mutex::new(udp_threads),
        })
    }

    /// Stops serving; when it returns, the UDP sockets are closed (the worker threads
    /// have ended).
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.stop.cancel();
        for thread in self.udp_threads.lock().drain(..) {
            if thread.join().is_err() {
                tracing::warn!("a DNS UDP worker panicked");
            }
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn bind_pair(
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<(std::net::UdpSocket, TcpListener), DnsError> {
    let bind_err = |protocol, source: std::io::Error| {
        let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
            PRIVILEGE_HINT
        } else {
            ""
        };
        DnsError::Bind {
            protocol,
            addr,
            source,
            hint,
        }
    };
    // With port 0, the TCP port must match the UDP one; retry if another process holds it.
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    loop {
        attempts -= 1;
        let udp = bind_udp(addr, reuse_port).map_err(|e| bind_err("UDP", e))?;
        let bound = udp.local_addr().map_err(|e| bind_err("UDP", e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if attempts == 0 => return Err(bind_err("TCP", e)),
            Err(_) => continue,
        }
    }
}

/// Receive buffer asked for the UDP socket (the kernel caps it at `net.core.rmem_max`):
/// room for a burst of a few thousand queries, where the default (about 208 KiB)
/// drops a few hundred under load, as NSD's and Unbound's larger buffers avoid.
const UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// A non-blocking UDP socket bound to `addr`, with `SO_REUSEPORT` when `reuse_port`
/// (so that the other workers' sockets can bind the same port); not yet registered
/// with a runtime (its worker thread does that).
fn bind_udp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECV_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the DNS UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A loaded static zone: its origin, its handler and its address records (the glue of
/// its delegations).
pub type StaticZone = (LowerName, Arc<dyn ZoneHandler>, Vec<Record>);

/// Loads every `*.zone` file of `dir` as a primary zone named after the file. A missing
/// directory holds no zones.
pub fn load_static_zones(dir: &Path) -> Result<Vec<StaticZone>, DnsError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zone"))
        .collect();
    paths.sort();
    let mut zones: Vec<StaticZone> = Vec::new();
    for path in paths {
        let zone_err = |reason: String| DnsError::Zone {
            path: path.display().to_string(),
            reason,
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| zone_err("file name is not UTF-8".into()))?;
        let mut origin = Name::from_ascii(stem).map_err(|e| zone_err(e.to_string()))?;
        origin.set_fqdn(true);
        let text = std::fs::read_to_string(&path).map_err(|e| zone_err(e.to_string()))?;
        let records = parse_zone(&text, &path, &origin).map_err(zone_err)?;
        let addresses: Vec<Record> = records
            .values()
            .filter(|set| matches!(set.record_type(), RecordType::A | RecordType::AAAA))
            .flat_map(|set| set.records_without_rrsigs().cloned())
            .collect();
        let handler: InMemoryZoneHandler =
            InMemoryZoneHandler::new(origin.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
                .map_err(zone_err)?;
        zones.push((LowerName::from(origin), Arc::new(handler), addresses));
    }
    Ok(zones)
}

/// Parses a zone file (RFC 1035 master format) with hickory's parser, allowing `_`
/// anywhere in a name (RFC 2181 §11: any octet is legal in a label). Hickory runs
/// every label that does not start with `_` through IDNA, which refuses `_` (so
/// `mail_x` or `web.default_group.svc.` failed): outside quoted strings and comments,
/// each `_` is written as a stand-in that IDNA keeps, and put back in every owner and
/// target name after parsing. `$INCLUDE` files are read in here first (see
/// [`expand_includes`]), so the same holds in them. Errors with the parser's message.
fn parse_zone(
    text: &str,
    path: &Path,
    origin: &Name,
) -> Result<BTreeMap<RrKey, RecordSet>, String> {
    let text = &expand_includes(text, path, &origin.to_string(), 0)?;
    let lower = text.to_ascii_lowercase();
    let stand_in = (0..)
        .map(|i| format!("u5fz{i}q"))
        .find(|c| !lower.contains(c.as_str()))
        .unwrap_or_default();
    let mut escaped = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (mut quoted, mut escape) = (false, false);
        for (i, ch) in line.char_indices() {
            match ch {
                _ if escape => {
                    escape = false;
                    escaped.push(ch);
                }
                '\\' => {
                    escape = true;
                    escaped.push(ch);
                }
                '"' => {
                    quoted = !quoted;
                    escaped.push(ch);
                }
                ';' if !quoted => {
                    escaped.push_str(&line[i..]);
                    break;
                }
                '_' if !quoted => escaped.push_str(&stand_in),
                _ => escaped.push(ch),
            }
        }
    }
    let (_, parsed) = Parser::new(escaped, Some(path.to_path_buf()), Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    let stand_in = stand_in.as_bytes();
    let fix = |name: &Name| -> Result<Name, String> {
        if !name
            .iter()
            .any(|l| l.windows(stand_in.len()).any(|w| w == stand_in))
        {
            return Ok(name.clone());
        }
        let labels: Vec<Vec<u8>> = name
            .iter()
            .map(|label| {
                let mut out = Vec::with_capacity(label.len());
                let mut rest = label;
                while !rest.is_empty() {
                    if rest.starts_with(stand_in) {
                        out.push(b'_');
                        rest = &rest[stand_in.len()..];
                    } else {
                        out.push(rest[0]);
                        rest = &rest[1..];
                    }
                }
                out
            })
            .collect();
        let mut fixed = Name::from_labels(labels).map_err(|e| e.to_string())?;
        fixed.set_fqdn(name.is_fqdn());
        Ok(fixed)
    };
    let mut records: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
    for set in parsed.values() {
        for record in set.records_without_rrsigs() {
            let data = match &record.data {
                RData::CNAME(n) => RData::CNAME(CNAME(fix(&n.0)?)),
                RData::NS(n) => RData::NS(NS(fix(&n.0)?)),
                RData::PTR(n) => RData::PTR(PTR(fix(&n.0)?)),
                RData::MX(mx) => RData::MX(MX::new(mx.preference, fix(&mx.exchange)?)),
                RData::SRV(srv) => RData::SRV(SRV::new(
                    srv.priority,
                    srv.weight,
                    srv.port,
                    fix(&srv.target)?,
                )),
                RData::SOA(soa) => RData::SOA(SOA::new(
                    fix(&soa.mname)?,
                    fix(&soa.rname)?,
                    soa.serial,
                    soa.refresh,
                    soa.retry,
                    soa.expire,
                    soa.minimum,
                )),
                other => other.clone(),
            };
            let name = fix(&record.name)?;
            let mut fixed = Record::from_rdata(name.clone(), record.ttl, data);
            fixed.dns_class = record.dns_class;
            let rtype = fixed.record_type();
            records
                .entry(RrKey::new(LowerName::from(&name), rtype))
                .or_insert_with(|| RecordSet::new(name, rtype, 0))
                .insert(fixed, 0);
        }
    }
    Ok(records)
}

/// How deep `$INCLUDE` files may nest (a file that includes itself stops here).
const MAX_INCLUDE_DEPTH: usize = 8;

/// `text` (of the zone file at `path`, whose origin is `origin`, absolute) with every
/// `$INCLUDE <file> [<origin>]` line replaced by that file's text (a relative path is
/// relative to the including file's directory), expanded in turn. RFC 1035 §5.1: the
/// included file starts at the given origin, else at the origin in effect, and the
/// including file goes on at the origin in effect before the directive, so `$ORIGIN`
/// lines are written around the included text.
fn expand_includes(text: &str, path: &Path, origin: &str, depth: usize) -> Result<String, String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!(
            "$INCLUDE nests deeper than {MAX_INCLUDE_DEPTH} files (at {})",
            path.display()
        ));
    }
    // The origin in effect, absolute.
    let mut current = origin.to_string();
    let absolute = |name: &str, current: &str| {
        if name.ends_with('.') {
            name.to_string()
        } else if current == "." {
            format!("{name}.")
        } else {
            format!("{name}.{current}")
        }
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let code = line.split(';').next().unwrap_or_default();
        let mut words = code.split_whitespace();
        let directive = if line.starts_with('$') {
            words.next()
        } else {
            None
        };
        match directive.map(str::to_ascii_uppercase).as_deref() {
            Some("$ORIGIN") => {
                if let Some(name) = words.next() {
                    current = absolute(name, &current);
                }
                out.push_str(line);
            }
            Some("$INCLUDE") => {
                let file = words
                    .next()
                    .map(|f| f.trim_matches('"'))
                    .ok_or_else(|| format!("$INCLUDE without a file name in {}", path.display()))?;
                let included = path.parent().unwrap_or(Path::new(".")).join(file);
                let start = words
                    .next()
                    .map_or_else(|| current.clone(), |name| absolute(name, &current));
                let body = std::fs::read_to_string(&included)
                    .map_err(|e| format!("$INCLUDE {}: {e}", included.display()))?;
                let body = expand_includes(&body, &included, &start, depth + 1)?;
                out.push_str(&format!("$ORIGIN {start}\n"));
                out.push_str(&body);
                if !body.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&format!("$ORIGIN {current}\n"));
            }
            _ => out.push_str(line),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_files_take_underscores_and_keep_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("example.test.zone"),
            "$TTL 300\n\
             @ IN SOA ns1 hostmaster 1 3600 600 86400 300\n\
             @ IN NS ns1\n\
             ns1 IN A 192.0.2.1\n\
             $INCLUDE inc/hosts.inc _lab\n\
             $INCLUDE inc/plain.inc\n\
             after_x IN A 192.0.2.9\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("inc")).unwrap();
        std::fs::write(
            dir.path().join("inc/hosts.inc"),
            "web_1 IN A 192.0.2.2\n$ORIGIN deeper\ndb_1 IN CNAME web_1._lab.example.test.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("inc/plain.inc"), "mail_x IN A 192.0.2.3").unwrap();
        let zones = load_static_zones(dir.path()).expect("the zone and its includes load");
        let (_, _, addresses) = &zones[0];
        let mut names: Vec<String> = addresses.iter().map(|r| r.name.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "after_x.example.test.",
                "mail_x.example.test.",
                "ns1.example.test.",
                "web_1._lab.example.test.",
            ]
        );
        // A file that includes itself is refused, not followed forever.
        std::fs::write(dir.path().join("inc/plain.inc"), "$INCLUDE plain.inc\n").unwrap();
        let err = load_static_zones(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("nests deeper"), "{err}");
    }

    #[test]
    fn shipped_zone_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        let zones = load_static_zones(&dir).expect("zones/ loads");
        assert!(!zones.is_empty(), "an example zone ships in zones/");
    }
}
