//! The service zone (default `svc.`), answered authoritatively from registry snapshots.
//!
//! Names (DESIGN §3), matched case-insensitively:
//! * `<service>.<group>.<zone>` — a service of namespace `public`;
//! * `<service>.<group>._<namespace>.<zone>` — a service of another namespace;
//! * a service name may hold dots (`com.example.Orders.<group>.<zone>`), a group or a
//!   namespace may not: names are read from the right, so one name means at most one
//!   service and no namespace can take another's names. A service that cannot have a
//!   name (see `ServiceKey::dns_unreachable`) is logged when it is created;
//! * `<host>.<service name as above>` — one instance host, the SRV target, where
//!   `<host>` is its IP with `.` or `:` written as `-` (`10-0-0-1`, `fd00--1`);
//! * RFC 2782 `_<service>._<proto>.<group>[._<namespace>].<zone>` SRV (instances by
//!   their metadata `protocol`, tcp unless `udp`), and DNS-SD (RFC 6763): that name's
//!   PTR lists instance names `<host label>-<port>.<that name>` (SRV and TXT of the
//!   metadata), and `_services._dns-sd._udp.<group>[._<namespace>].<zone>` PTR lists
//!   the group's service types. These forms are tried before the zone's own, so a
//!   Nacos service named like `_x._tcp` is reached only through them;
//! * `ns.<zone>` answers the name server's addresses;
//! * the apex answers SOA and NS; a name with service names below it and none of its
//!   own (`DEFAULT_GROUP.svc`, `_dev.svc`) is an empty non-terminal: NODATA, not
//!   NXDOMAIN (RFC 8020 resolvers would cut off everything below).
//!
//! Nacos names are case-sensitive and DNS names are not: when several services differ
//! only by case (they fold to one DNS name), a query is answered from the first of them,
//! oldest first, that has something to answer for its type; when none has, from the
//! oldest (NODATA). So an empty or all-down case twin never hides one with instances.
//! Only the oldest [`MAX_CASE_TWINS`](crate::naming::registry::MAX_CASE_TWINS) twins
//! are considered, so a pile of them cannot make every query for the name expensive.
//!
//! Answers: A/AAAA carry the addresses of the selected instances
//! (`naming::selection::select_for_dns`), one record per address (weights of instances
//! sharing an address add up), in a weighted random order on every query, at most
//! `dns.max_answers`, as many as fit the client's limit. SRV answers a weighted sample
//! of at most `dns.max_srv_answers` instances: priority 0, the Nacos weights scaled so
//! that the heaviest record of the answer has 65535 and none is 0 (RFC 2782 weights
//! are relative), the instance's port, and its host name below the name asked as
//! target, with the address in the additional section (left out, not the records,
//! when it does not fit; RFC 2181 §9). An IPv4-mapped IPv6 instance is its IPv4
//! address. Unknown names get NXDOMAIN, known names with nothing to answer NODATA;
//! both carry the SOA (RFC 2308).
//!
//! Invariant: an answer is encoded once per (name, type, service revision) and cached;
//! a query costs a cache lookup, a revision check and a copy. A UDP worker looks in its
//! own map first ([`LocalCache`]) and a revision check is an atomic load
//! (`RevisionWatch`), so answering a cached name writes no memory that other cores
//! read. An address answer is encoded as records of one size that each point at the
//! question name, so a query copies a weighted sample of them (`wire::Weighted`,
//! O(k · (k + log n)) for k of n addresses, O(k²) when the weights are equal): the
//! cost of a query does not grow with the service. SRV records are written per query
//! from prepared targets the same way. The general path rewrites an ordinary query in
//! an odd shape into the plain one and answers it here too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use parking_lot::RwLock;

use super::locality::Locality;
use super::wire::{self, Prepared, QueryView, Reply, Sample, SrvTarget, Weighted};
use crate::model::{DEFAULT_NAMESPACE, FoldedKey, Instance, ServiceKey};
use crate::naming::registry::{RegistryView, RevisionWatch, ServiceSnapshot};
use crate::naming::selection::{prefer_cluster, select_for_dns};
use crate::settings::DnsSettings;
use crate::settings::MAX_CLUSTER_NAME;

/// Largest number of cached (name, type) answers; the cache is cleared when it grows
/// past this (it only holds names of existing services and hosts).
const CACHE_LIMIT: usize = 200_000;

/// What a name in the zone refers to: the services it may mean are the case twins
/// that fold to it, oldest first (never empty).
enum Target {
    Apex,
    Service(Vec<Arc<ServiceSnapshot>>),
    Host(Vec<Arc<ServiceSnapshot>>, IpAddr),
    /// `ns.<zone>`, the zone's name server (the SOA MNAME and NS target).
    NameServer,
    /// `_<service>._<proto>.<group>[._<namespace>]` (RFC 2782 SRV, DNS-SD PTR to its
    /// instances): the twins, whether `_udp`, and where the group label starts in the
    /// question (offset from the message start).
    ServiceType(Vec<Arc<ServiceSnapshot>>, bool, u16),
    /// `<instance>._<service>._<proto>.<group>[._<namespace>]` (DNS-SD instance: SRV
    /// and TXT): the twins, `_udp`, the instance's address and port, the group offset.
    SdInstance(Vec<Arc<ServiceSnapshot>>, bool, IpAddr, u16, u16),
    /// `_services._dns-sd._udp.<group>[._<namespace>]` (DNS-SD browsing): the services
    /// of that group.
    SdBrowse(Vec<Arc<ServiceSnapshot>>),
    /// A name with service names below it and none of its own (RFC 8020).
    EmptyNonTerminal,
    Missing,
}

/// A computed answer before encoding.
struct ZoneAnswer {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    /// The addresses (all of one family) and their weights, when the answer is a
    /// sample of address records drawn per query (`answers` is then empty).
    addresses: Option<Vec<(IpAddr, f64)>>,
    /// The SRV targets, when the answer is SRV records built per query (the
    /// `answers` and `additionals` are then empty).
    srv: Option<Vec<SrvTarget>>,
}

impl ZoneAnswer {
    /// Whether the answer section will hold something.
    fn has_records(&self) -> bool {
        !self.answers.is_empty() || self.addresses.is_some() || self.srv.is_some()
    }
}

/// A service an answer was built from, at the revision it was built from.
struct Source {
    key: ServiceKey,
    watch: RevisionWatch,
    revision: u64,
}

/// Encoded answers by cache key (see [`ServiceZone::respond`]); foldhash, randomly
/// seeded, for names that clients choose.
type AnswerMap = HashMap<Box<[u8]>, Arc<Cached>, foldhash::fast::RandomState>;

/// A UDP worker's own map of the answers it has used, so that answering a cached name
/// writes to no memory shared with other cores: the zone's shared cache is read only
/// on a miss here. Its entries are checked exactly as the shared ones. (DNS over TCP,
/// a query or two per connection, uses the shared cache alone.)
#[derive(Default)]
pub struct LocalCache {
    answers: AnswerMap,
}

struct Cached {
    /// The registry's service-set generation when the name was resolved: a created or
    /// removed service may change which service a name means.
    generation: u64,
    /// The services (case twins) this answer was built from, at their revisions;
    /// empty for the apex.
    source: Vec<Source>,
    /// Whether the answer depends on the client's cluster (`[dns.locality]`): a
    /// service's instances. Other answers hold for every client (Client Subnet scope 0).
    by_locality: bool,
    prepared: Prepared,
}

/// The service zone: resolves names to services and keeps encoded answers.
pub struct ServiceZone {
    origin: Name,
    origin_wire: Vec<u8>,
    registry: RegistryView,
    ttl: u32,
    max_answers: usize,
    max_srv_answers: usize,
    soa: Record,
    ns: Record,
    /// `ns.<zone>`.
    ns_name: Name,
    /// Addresses of `ns.<zone>`.
    ns_addresses: Vec<IpAddr>,
    /// `dns.expose`.
    expose: crate::settings::ExposeSettings,
    /// `dns.locality` and `dns.ecs_resolvers`.
    locality: Locality,
    /// Keyed by the folded question name in wire format followed by the type (2 bytes)
    /// and, for a client that `[dns.locality]` places in a cluster, its name.
    cache: RwLock<AnswerMap>,
}

impl ServiceZone {
    /// A zone over `registry` with the `[dns]` settings. Errors when `dns.zone` is not
    /// a valid name (settings validation already checks this).
    pub fn new(
        registry: RegistryView,
        settings: &DnsSettings,
    ) -> Result<Self, hickory_proto::ProtoError> {
        let origin = Name::from_ascii(&settings.zone)?.to_lowercase();
        let mut origin_wire = Vec::new();
        wire::put_labels(&mut origin_wire, origin.iter());
        origin_wire.push(0);
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let ns_name = Name::from_ascii("ns")?.append_domain(&origin)?;
        let soa = Record::from_rdata(
            origin.clone(),
            settings.negative_ttl,
            RData::SOA(SOA::new(
                ns_name.clone(),
                Name::from_ascii("hostmaster")?.append_domain(&origin)?,
                serial,
                3600,
                600,
                86400,
                settings.negative_ttl,
            )),
        );
        let ns = Record::from_rdata(origin.clone(), 3600, RData::NS(NS(ns_name.clone())));
        Ok(Self {
            origin,
            origin_wire,
            registry,
            ttl: settings.ttl,
            max_answers: settings.max_answers,
            max_srv_answers: settings.max_srv_answers,
            soa,
            ns,
            ns_name,
            ns_addresses: settings.name_server_addresses(),
            expose: settings.expose.clone(),
            locality: Locality::new(&settings.locality, &settings.ecs_resolvers),
            cache: RwLock::new(AnswerMap::default()),
        })
    }

    /// The zone's origin, lower case.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The zone's origin in wire format, lower case.
    pub fn origin_wire(&self) -> &[u8] {
        &self.origin_wire
    }

    /// Answers a parsed query from `client` whose name is in this zone (`labels_below`
    /// labels left of the origin), writing the response into `out`. A name of a
    /// namespace that `dns.expose.clients` does not answer to `client` gets REFUSED.
    /// With `[dns.locality]`, a service's instances are those of the client's cluster
    /// when it has healthy ones (see [`super::locality`]). Answers are looked up in
    /// `local` first (when given), then in the zone's shared cache, and built on a
    /// miss. Every name gets SERVFAIL while the registry is not ready (a cluster member
    /// before its snapshot).
    pub fn respond(
        &self,
        query: &QueryView<'_>,
        labels_below: usize,
        mut reply: Reply,
        client: IpAddr,
        local: Option<&mut LocalCache>,
        out: &mut Vec<u8>,
    ) {
        if !self.registry.is_ready() {
            // A cluster member that has not loaded a peer's snapshot: SERVFAIL, so a
            // resolver asks the next server instead of caching an empty answer.
            out.clear();
            if let Some(resp) = wire::error_response(query.packet(), query.question(), 2) {
                out.extend_from_slice(&resp);
            }
            return;
        }
        let placement = if self.locality.is_empty() {
            None
        } else {
            let subnet = query.edns.and_then(|e| e.client_subnet);
            Some(self.locality.place(client, subnet.as_ref()))
        };
        let cluster = placement.as_ref().and_then(|p| p.cluster.as_deref());
        let mut key_buf = [0u8; 257 + MAX_CLUSTER_NAME];
        let name = query.lower_name();
        key_buf[..name.len()].copy_from_slice(name);
        key_buf[name.len()..name.len() + 2].copy_from_slice(&query.qtype.to_be_bytes());
        let mut key_len = name.len() + 2;
        if let Some(cluster) = cluster {
            let cluster = &cluster.as_bytes()[..cluster.len().min(MAX_CLUSTER_NAME)];
            key_buf[key_len..key_len + cluster.len()].copy_from_slice(cluster);
            key_len += cluster.len();
        }
        let key = &key_buf[..key_len];
        // REFUSED, or the prepared answer with the Client Subnet scope it holds for.
        let mut send = |refused: bool, by_locality: bool, prepared: &Prepared, out: &mut _| {
            if refused {
                refuse(query, out);
                return;
            }
            reply.client_subnet_scope = placement
                .as_ref()
                .and_then(|p| p.client_subnet_scope)
                .map(|scope| if by_locality { scope } else { 0 });
            wire::assemble(query, prepared, reply, out);
        };
        let refuses_cached =
            |cached: &Cached| self.refuses(cached.source.iter().map(|s| &s.key), client);
        if let Some(cached) = local.as_ref().and_then(|l| l.answers.get(key))
            && self.is_current(cached)
        {
            send(
                refuses_cached(cached),
                cached.by_locality,
                &cached.prepared,
                out,
            );
            return;
        }
        let shared = self
            .cache
            .read()
            .get(key)
            .filter(|cached| self.is_current(cached))
            .cloned();
        if let Some(cached) = shared {
            send(
                refuses_cached(&cached),
                cached.by_locality,
                &cached.prepared,
                out,
            );
            if let Some(local) = local {
                remember(&mut local.answers, key, cached);
            }
            return;
        }
        let generation = self.registry.generation();
        let labels: Vec<&[u8]> = query.labels().take(labels_below).collect();
        let target = self.resolve(&labels);
        let (twins, cacheable): (&[Arc<ServiceSnapshot>], bool) = match &target {
            Target::Apex | Target::NameServer | Target::EmptyNonTerminal => (&[], true),
            Target::Service(twins)
            | Target::Host(twins, _)
            | Target::ServiceType(twins, ..)
            | Target::SdInstance(twins, ..)
            | Target::SdBrowse(twins) => (twins, true),
            Target::Missing => (&[], false),
        };
        let refused = self.refuses(twins.iter().map(|s| &s.key), client);
        // None when a service went meanwhile (or the name is unknown): not cached.
        let source: Option<Vec<Source>> = twins
            .iter()
            .map(|s| {
                Some(Source {
                    key: s.key.clone(),
                    watch: self.registry.watch(&s.key)?,
                    revision: s.revision,
                })
            })
            .collect::<Option<_>>()
            .filter(|_| cacheable);
        let qname = match name_from_wire(query.lower_name()) {
            Some(n) => n,
            None => {
                out.clear();
                if let Some(resp) = wire::error_response(query.packet(), query.question(), 2) {
                    out.extend_from_slice(&resp);
                }
                return;
            }
        };
        let qtype = RecordType::from(query.qtype);
        let by_locality = matches!(target, Target::Service(_) | Target::ServiceType(..));
        let answer = self.answer(&qname, qtype, target, cluster);
        let prepared = self.prepare(&qname, qtype, answer);
        send(refused, by_locality, &prepared, out);
        let Some(source) = source else {
            return;
        };
        let cached = Arc::new(Cached {
            generation,
            source,
            by_locality,
            prepared,
        });
        if let Some(local) = local {
            remember(&mut local.answers, key, cached.clone());
        }
        remember(&mut self.cache.write(), key, cached);
    }

    /// Whether an answer built from the services `keys` is refused to `client` by
    /// `dns.expose.clients` (nothing to check when it is empty).
    fn refuses<'a>(&self, keys: impl IntoIterator<Item = &'a ServiceKey>, client: IpAddr) -> bool {
        if self.expose.clients.is_empty() {
            return false;
        }
        let client = client.to_canonical();
        keys.into_iter().any(|key| {
            self.expose
                .clients
                .get(&key.namespace)
                .is_some_and(|nets| !nets.iter().any(|net| net.contains(&client)))
        })
    }

    /// Whether DNS serves namespace `namespace` (`dns.expose.namespaces`).
    fn serves(&self, namespace: &str) -> bool {
        self.expose
            .namespaces
            .iter()
            .any(|n| n == "*" || n == namespace)
    }

    fn is_current(&self, cached: &Cached) -> bool {
        if cached.generation != self.registry.generation() {
            return false;
        }
        cached
            .source
            .iter()
            .all(|s| s.watch.revision() == s.revision)
    }

    fn resolve(&self, labels: &[&[u8]]) -> Target {
        if labels.is_empty() {
            return Target::Apex;
        }
        if labels == [b"ns"] {
            return Target::NameServer;
        }
        if let Some(target) = self.resolve_standard(labels) {
            return target;
        }
        if let Some(s) = self.find_service(labels) {
            return Target::Service(s);
        }
        if labels.len() >= 3
            && let Some(ip) = host_from_label(labels[0])
            && let Some(s) = self.find_service(&labels[1..])
        {
            return Target::Host(s, ip);
        }
        // The labels come folded to lower case (`QueryView`).
        let folded = labels.join(&b'.');
        // The namespace of the names below: `_<namespace>` last, else public (the
        // index is folded, so a served namespace is matched without case here).
        let namespace_served = match labels.last() {
            Some(last) if last.starts_with(b"_") => self
                .expose
                .namespaces
                .iter()
                .any(|n| n == "*" || n.as_bytes().eq_ignore_ascii_case(&last[1..])),
            _ => self.serves(DEFAULT_NAMESPACE),
        };
        match std::str::from_utf8(&folded) {
            Ok(name) if namespace_served && self.registry.is_dns_empty_non_terminal(name) => {
                Target::EmptyNonTerminal
            }
            _ => Target::Missing,
        }
    }

    /// The services (case twins, oldest first) a name below the zone means, if any.
    /// Read from the right: a last label `_<namespace>` names the namespace and the
    /// one before it the group; otherwise the last label is the group of a `public`
    /// service. The labels left of the group are the service name, joined by dots. So
    /// one name means one (namespace, group, service) at most.
    fn find_service(&self, labels: &[&[u8]]) -> Option<Vec<Arc<ServiceSnapshot>>> {
        let text: Vec<&str> = labels
            .iter()
            .map(|l| std::str::from_utf8(l).ok())
            .collect::<Option<_>>()?;
        let key = match text.as_slice() {
            [service @ .., group, namespace] if namespace.starts_with('_') => {
                if service.is_empty() {
                    return None;
                }
                FoldedKey::new(&namespace[1..], group, &service.join("."))
            }
            [service @ .., group] if !service.is_empty() => {
                FoldedKey::new(DEFAULT_NAMESPACE, group, &service.join("."))
            }
            _ => return None,
        };
        let mut twins = self.registry.find_folded(&key);
        twins.retain(|s| self.serves(&s.key.namespace));
        (!twins.is_empty()).then_some(twins)
    }

    /// The answer for `target`; `cluster` is the client's cluster by `[dns.locality]`.
    fn answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        target: Target,
        cluster: Option<&str>,
    ) -> ZoneAnswer {
        let mut answer = self.empty_answer();
        match target {
            Target::Missing => answer.rcode = ResponseCode::NXDomain,
            Target::EmptyNonTerminal => {}
            Target::Apex => match qtype {
                RecordType::SOA => answer.answers.push(self.soa.clone()),
                RecordType::NS => {
                    answer.answers.push(self.ns.clone());
                    answer.additionals = self.ns_records(None);
                }
                _ => {}
            },
            Target::NameServer => answer.answers = self.ns_records(Some(qtype)),
            Target::ServiceType(twins, udp, group_at) => {
                for snapshot in &twins {
                    let candidate =
                        self.service_type_answer(qname, qtype, snapshot, udp, group_at, cluster);
                    if candidate.has_records() {
                        answer = candidate;
                        break;
                    }
                }
            }
            Target::SdInstance(twins, udp, ip, port, group_at) => {
                let found = twins.iter().find_map(|s| {
                    let (selected, _) = select_for_dns(s);
                    let inst = selected.into_iter().find(|i| {
                        i.port == port
                            && i.addr.map(|a| a.to_canonical()) == Some(ip)
                            && is_udp(i) == udp
                    })?;
                    Some((s.clone(), inst.clone()))
                });
                match (found, qtype) {
                    (None, _) => answer.rcode = ResponseCode::NXDomain,
                    (Some((s, inst)), RecordType::SRV) => {
                        let suffix = service_suffix(&s.key.service);
                        answer.srv = self.srv_target(&inst, &suffix, group_at).map(|t| vec![t]);
                    }
                    (Some((_, inst)), RecordType::TXT) => {
                        answer.answers.push(Record::from_rdata(
                            qname.clone(),
                            self.ttl,
                            RData::TXT(TXT::new(metadata_txt(&inst.metadata))),
                        ));
                    }
                    _ => {}
                }
            }
            Target::SdBrowse(services) => {
                if qtype == RecordType::PTR {
                    // The group's name: the question without `_services._dns-sd._udp`.
                    let group = qname.trim_to(qname.num_labels().saturating_sub(3) as usize);
                    for s in &services {
                        let (selected, _) = select_for_dns(s);
                        for udp in [false, true] {
                            if !selected.iter().any(|i| is_udp(i) == udp) {
                                continue;
                            }
                            if let Some(name) = service_type_name(&s.key.service, udp, &group) {
                                answer.answers.push(Record::from_rdata(
                                    qname.clone(),
                                    self.ttl,
                                    RData::PTR(PTR(name)),
                                ));
                            }
                        }
                    }
                }
            }
            Target::Host(twins, ip) => {
                // The first twin that answers for this address, if any.
                let found = twins.iter().any(|s| {
                    select_for_dns(s)
                        .0
                        .iter()
                        .any(|i| i.addr.map(|a| a.to_canonical()) == Some(ip))
                });
                if !found {
                    answer.rcode = ResponseCode::NXDomain;
                } else if matches!(
                    (qtype, ip),
                    (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))
                ) {
                    answer.answers.push(self.address_record(qname.clone(), ip));
                }
            }
            Target::Service(twins) => {
                // The first twin with something to answer for this type, else the
                // oldest one's (empty) answer.
                let mut first = None;
                for snapshot in &twins {
                    let candidate = self.service_answer(qtype, snapshot, cluster);
                    if candidate.has_records() {
                        first = Some(candidate);
                        break;
                    }
                    first.get_or_insert(candidate);
                }
                if let Some(found) = first {
                    answer = found;
                }
            }
        }
        if !answer.has_records() {
            answer.authorities.push(self.soa.clone());
        }
        answer
    }

    fn empty_answer(&self) -> ZoneAnswer {
        ZoneAnswer {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            addresses: None,
            srv: None,
        }
    }

    /// The answer of one service to an A, AAAA, ANY or SRV query (no records for
    /// another type), from the instances of `cluster` when it has healthy ones. ANY is
    /// answered minimally, as A (or AAAA when the service has no IPv4 address), so it
    /// is sampled and capped like them.
    fn service_answer(
        &self,
        qtype: RecordType,
        snapshot: &ServiceSnapshot,
        cluster: Option<&str>,
    ) -> ZoneAnswer {
        let mut answer = self.empty_answer();
        let selected = prefer_cluster(select_for_dns(snapshot).0, cluster);
        // ANY gets one RRset (RFC 8482 §4.2): the IPv4 addresses, or the IPv6 ones
        // when there are none.
        let qtype = match qtype {
            RecordType::ANY => {
                let has_v4 = selected
                    .iter()
                    .any(|i| i.addr.is_some_and(|a| a.to_canonical().is_ipv4()));
                if has_v4 {
                    RecordType::A
                } else {
                    RecordType::AAAA
                }
            }
            other => other,
        };
        match qtype {
            RecordType::A | RecordType::AAAA => {
                // One record per address, in the order first seen; weights add up.
                let mut by_ip: Vec<(IpAddr, f64)> = Vec::new();
                let mut index: HashMap<IpAddr, usize> = HashMap::new();
                for inst in &selected {
                    // An IPv4-mapped IPv6 address is the IPv4 address it maps.
                    let Some(ip) = inst.addr.map(|a| a.to_canonical()) else {
                        continue;
                    };
                    if ip.is_ipv4() != (qtype == RecordType::A) {
                        continue;
                    }
                    match index.entry(ip) {
                        std::collections::hash_map::Entry::Occupied(at) => {
                            by_ip[*at.get()].1 += inst.weight
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(by_ip.len());
                            by_ip.push((ip, inst.weight));
                        }
                    }
                }
                if !by_ip.is_empty() {
                    answer.addresses = Some(by_ip);
                }
            }
            RecordType::SRV => {
                // Host names below the question name itself.
                let targets: Vec<SrvTarget> = selected
                    .iter()
                    .filter_map(|inst| self.srv_target(inst, &[], wire::HEADER_LEN as u16))
                    .collect();
                if !targets.is_empty() {
                    answer.srv = Some(targets);
                }
            }
            _ => {}
        }
        answer
    }

    /// The address records of `ns.<zone>` (`dns.ns_addresses`), those of type `qtype`
    /// when given (A, AAAA; ANY gets all).
    fn ns_records(&self, qtype: Option<RecordType>) -> Vec<Record> {
        self.ns_addresses
            .iter()
            .filter(|ip| match qtype {
                None | Some(RecordType::ANY) => true,
                Some(RecordType::A) => ip.is_ipv4(),
                Some(RecordType::AAAA) => ip.is_ipv6(),
                Some(_) => false,
            })
            .map(|ip| {
                let mut record = self.address_record(self.ns_name.clone(), *ip);
                record.ttl = 3600;
                record
            })
            .collect()
    }

    fn address_record(&self, name: Name, ip: IpAddr) -> Record {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(name, self.ttl, data)
    }

    fn message(&self, qname: &Name, qtype: RecordType, answer: ZoneAnswer) -> Message {
        let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
        msg.metadata.authoritative = true;
        msg.metadata.response_code = answer.rcode;
        let mut query = Query::query(qname.clone(), qtype);
        query.set_query_class(DNSClass::IN);
        msg.add_query(query);
        msg.insert_answers(answer.answers);
        msg.insert_authorities(answer.authorities);
        msg.insert_additionals(answer.additionals);
        msg
    }

    /// Encodes an answer once and cuts it after the question. A weighted address
    /// answer is written here as fixed-size records that each point at the question
    /// name, so that any subset in any order is a valid answer section; everything
    /// else is encoded by hickory-proto.
    fn prepare(&self, qname: &Name, qtype: RecordType, mut answer: ZoneAnswer) -> Prepared {
        let rcode = u16::from(answer.rcode) as u8 & 0xF;
        if let Some(targets) = answer.srv.take() {
            let weights = Weighted::new(targets.iter().map(|t| t.weight));
            return Prepared {
                rcode,
                counts: [0; 3],
                body: Vec::new(),
                sample: Some(Sample::Srv {
                    targets,
                    weights,
                    max: self.max_srv_answers,
                    ttl: self.ttl,
                }),
                truncated: false,
            };
        }
        if let Some(addresses) = answer.addresses.take() {
            return self.prepare_addresses(rcode, &addresses);
        }
        let msg = self.message(qname, qtype, answer);
        let question_len = wire_len(qname) + 4;
        let bytes = match msg.to_vec() {
            Ok(b) if b.len() >= wire::HEADER_LEN + question_len => b,
            _ => {
                return Prepared {
                    rcode: u16::from(ResponseCode::ServFail) as u8,
                    counts: [0; 3],
                    body: Vec::new(),
                    sample: None,
                    truncated: false,
                };
            }
        };
        // The counts and TC bit as encoded: past 65535 bytes hickory drops records.
        let count = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let counts = [count(6), count(8), count(10)];
        let truncated = bytes[2] & 0x02 != 0;
        let body = bytes[wire::HEADER_LEN + question_len..].to_vec();
        Prepared {
            rcode,
            counts,
            body,
            sample: None,
            truncated,
        }
    }

    /// The answer section of A (or AAAA) records of `addresses` (one family, with
    /// their weights), as records of the same size whose owner is a pointer to the
    /// question name (offset 12), sampled per query.
    fn prepare_addresses(&self, rcode: u8, addresses: &[(IpAddr, f64)]) -> Prepared {
        let record_len = |ip: &IpAddr| if ip.is_ipv4() { 16 } else { 28 };
        let mut body = Vec::with_capacity(addresses.len() * 28);
        for (ip, _) in addresses {
            let (rtype, rdata): (RecordType, &[u8]) = match ip {
                IpAddr::V4(v4) => (RecordType::A, &v4.octets()),
                IpAddr::V6(v6) => (RecordType::AAAA, &v6.octets()),
            };
            body.extend_from_slice(&[0xC0, 0x0C]);
            body.extend_from_slice(&u16::from(rtype).to_be_bytes());
            body.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
            body.extend_from_slice(&self.ttl.to_be_bytes());
            body.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            body.extend_from_slice(rdata);
        }
        Prepared {
            rcode,
            counts: [u16::try_from(addresses.len()).unwrap_or(u16::MAX), 0, 0],
            body,
            sample: Some(Sample::Addresses {
                record_len: addresses.first().map_or(0, |(ip, _)| record_len(ip)),
                weights: Weighted::new(addresses.iter().map(|(_, w)| *w)),
                max: self.max_answers,
            }),
            truncated: false,
        }
    }
}

/// RFC 2782 and DNS-SD names (RFC 6763), beside the zone's own.
impl ServiceZone {
    /// The standard name `labels` (below the zone, lower case) is, if any: labels up to
    /// `_tcp` or `_udp`, then the group and maybe `_<namespace>`.
    fn resolve_standard(&self, labels: &[&[u8]]) -> Option<Target> {
        let proto = labels.iter().position(|l| *l == b"_tcp" || *l == b"_udp")?;
        let udp = labels[proto] == b"_udp";
        let group_at = proto + 1;
        let tail = &labels[group_at..];
        let tail_ok = match tail {
            [group] => !group.starts_with(b"_"),
            [group, namespace] => !group.starts_with(b"_") && namespace.starts_with(b"_"),
            _ => false,
        };
        if !tail_ok || proto == 0 {
            return None;
        }
        // Where the group label starts in the question (after the 12-byte header).
        let offset = wire::HEADER_LEN
            + labels[..group_at]
                .iter()
                .map(|l| l.len() + 1)
                .sum::<usize>();
        let group_offset = u16::try_from(offset).ok().filter(|&o| o < 0x4000)?;
        if udp && labels[..proto] == [&b"_services"[..], b"_dns-sd"] {
            return Some(Target::SdBrowse(self.services_of_group(tail)));
        }
        let service_at = if labels[0].starts_with(b"_") {
            0
        } else if proto >= 2 && labels[1].starts_with(b"_") {
            1
        } else {
            return None;
        };
        let mut name: Vec<&[u8]> = vec![&labels[service_at][1..]];
        name.extend_from_slice(&labels[service_at + 1..proto]);
        name.extend_from_slice(tail);
        let twins = self.find_service(&name)?;
        if service_at == 0 {
            return Some(Target::ServiceType(twins, udp, group_offset));
        }
        // `<host label>-<port>`.
        let instance = std::str::from_utf8(labels[0]).ok()?;
        let (host, port) = instance.rsplit_once('-')?;
        let ip = host_from_label(host.as_bytes())?;
        let port = port.parse().ok()?;
        Some(Target::SdInstance(twins, udp, ip, port, group_offset))
    }

    /// The served services of the group named by `tail` (`group` or `group`,
    /// `_namespace`; lower case), sorted.
    fn services_of_group(&self, tail: &[&[u8]]) -> Vec<Arc<ServiceSnapshot>> {
        let (group, namespace): (&[u8], &[u8]) = match tail {
            [group] => (group, DEFAULT_NAMESPACE.as_bytes()),
            [group, namespace] => (group, &namespace[1..]),
            _ => return Vec::new(),
        };
        self.registry
            .service_keys(None)
            .into_iter()
            .filter(|k| {
                k.group.as_bytes().eq_ignore_ascii_case(group)
                    && k.namespace.as_bytes().eq_ignore_ascii_case(namespace)
                    && self.serves(&k.namespace)
                    && k.dns_labels().is_some()
            })
            .filter_map(|k| self.registry.snapshot(&k))
            .collect()
    }

    /// The answer of one service to its RFC 2782 / DNS-SD type name: SRV records of
    /// its instances of that protocol (host names below its own name; those of
    /// `cluster` when it has healthy ones), or PTR records naming all those instances
    /// (`<host label>-<port>.<question>`).
    fn service_type_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        snapshot: &ServiceSnapshot,
        udp: bool,
        group_offset: u16,
        cluster: Option<&str>,
    ) -> ZoneAnswer {
        let mut answer = self.empty_answer();
        let instances: Vec<&Arc<Instance>> = select_for_dns(snapshot)
            .0
            .into_iter()
            .filter(|i| is_udp(i) == udp)
            .collect();
        match qtype {
            RecordType::SRV => {
                let suffix = service_suffix(&snapshot.key.service);
                let targets: Vec<SrvTarget> = prefer_cluster(instances, cluster)
                    .into_iter()
                    .filter_map(|inst| self.srv_target(inst, &suffix, group_offset))
                    .collect();
                if !targets.is_empty() {
                    answer.srv = Some(targets);
                }
            }
            RecordType::PTR => {
                for inst in instances {
                    let Some(ip) = inst.addr.map(|a| a.to_canonical()) else {
                        continue;
                    };
                    let label = format!("{}-{}", host_label(ip), inst.port);
                    let Ok(name) =
                        Name::from_labels([label.as_bytes()]).and_then(|n| n.append_domain(qname))
                    else {
                        continue;
                    };
                    answer.answers.push(Record::from_rdata(
                        qname.clone(),
                        self.ttl,
                        RData::PTR(PTR(name)),
                    ));
                }
            }
            _ => {}
        }
        answer
    }

    /// The SRV target of an instance: its host label, then `suffix` (wire labels),
    /// then a pointer to offset `rest` of the question (where the rest of the name the
    /// host is below starts); a whole name for an instance registered by host name.
    fn srv_target(&self, inst: &Instance, suffix: &[u8], rest: u16) -> Option<SrvTarget> {
        let (target, address) = match inst.addr.map(|a| a.to_canonical()) {
            Some(ip) => {
                let label = host_label(ip);
                let mut target = vec![label.len() as u8];
                target.extend_from_slice(label.as_bytes());
                target.extend_from_slice(suffix);
                target.extend_from_slice(&(0xC000 | rest).to_be_bytes());
                (target, Some(ip))
            }
            None => (name_to_wire(&inst.ip)?, None),
        };
        Some(SrvTarget {
            weight: inst.weight,
            port: inst.port,
            target: target.into_boxed_slice(),
            address,
        })
    }
}

/// Keeps `cached` under `key` in `map`, which is cleared when it holds
/// [`CACHE_LIMIT`] answers.
fn remember(map: &mut AnswerMap, key: &[u8], cached: Arc<Cached>) {
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key.into(), cached);
}

/// Whether an instance serves over UDP: its metadata `protocol` (default tcp).
fn is_udp(inst: &Instance) -> bool {
    inst.metadata
        .get("protocol")
        .is_some_and(|p| p.eq_ignore_ascii_case("udp"))
}

/// A service name's labels in wire format (no terminator).
fn service_suffix(service: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    wire::put_labels(&mut wire, service.split('.').map(str::as_bytes));
    wire
}

/// `_<service>._<proto>.<group>`: a service's DNS-SD type name below `group`.
fn service_type_name(service: &str, udp: bool, group: &Name) -> Option<Name> {
    let first = format!("_{service}");
    let mut labels: Vec<&[u8]> = first.split('.').map(str::as_bytes).collect();
    labels.push(if udp { b"_udp" } else { b"_tcp" });
    Name::from_labels(labels).ok()?.append_domain(group).ok()
}

/// An instance's metadata as TXT strings `key=value` (RFC 6763 §6): sorted by key,
/// each at most 255 bytes (longer pairs are left out), at most 1000 bytes in all; one
/// empty string when there is none.
fn metadata_txt(metadata: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for (key, value) in metadata {
        let pair = format!("{key}={value}");
        if pair.len() > 255 || key.is_empty() || key.contains('=') {
            continue;
        }
        if total + pair.len() + 1 > 1000 {
            break;
        }
        total += pair.len() + 1;
        out.push(pair);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// A REFUSED response to `query`: its header and question, nothing else.
fn refuse(query: &QueryView<'_>, out: &mut Vec<u8>) {
    out.clear();
    if let Some(response) = wire::error_response(
        query.packet(),
        query.question(),
        u16::from(ResponseCode::Refused) as u8,
    ) {
        out.extend_from_slice(&response);
    }
}

fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

/// A host name in wire format, uncompressed and lower case (an SRV target of an
/// instance registered by name); `None` when it is not a valid name.
fn name_to_wire(host: &str) -> Option<Vec<u8>> {
    let mut name = Name::from_ascii(host).ok()?.to_lowercase();
    name.set_fqdn(true);
    let mut wire = Vec::new();
    wire::put_labels(&mut wire, name.iter());
    wire.push(0);
    Some(wire)
}

fn name_from_wire(wire: &[u8]) -> Option<Name> {
    let mut labels = Vec::new();
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        labels.push(wire.get(pos + 1..pos + 1 + len as usize)?);
        pos += 1 + len as usize;
    }
    let mut name = Name::from_labels(labels).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The host label of an IP: `10-0-0-1`, or for IPv6 the compressed text with `:` as
/// `-` (`fd00--1`).
pub fn host_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// Parses a host label back into an IP (the inverse of [`host_label`]).
pub fn host_from_label(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    if text.matches('-').count() == 3
        && let Ok(v4) = text.replace('-', ".").parse::<std::net::Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    text.replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels_round_trip() {
        for ip in ["10.0.0.1", "fd00::1", "2001:db8::8:800:200c:417a", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(host_from_label(host_label(ip).as_bytes()), Some(ip));
        }
        assert_eq!(host_from_label(b"stock"), None);
        assert_eq!(host_from_label(b"10-0-0"), None);
    }
}
