//! DNS transport and dispatch: UDP sockets (one per worker, `SO_REUSEPORT`, read and
//! written in batches, see [`super::udp`]) and one TCP listener on the same address.
//!
//! Every packet first meets the fast path ([`super::wire::parse`] and the service zone's
//! encoded answers). What the fast path declines is parsed by hickory-proto and handled
//! here or by hickory-server's `Catalog` (static zones and the forwarder).
//!
//! Invariants:
//! * a packet never panics the server: unparsable queries get FORMERR when a header can
//!   be read, and are dropped otherwise; responses are never answered;
//! * names outside every authoritative zone are forwarded only for clients inside
//!   `dns.allow_recursion` and only when forwarders are configured; others get REFUSED
//!   (never an open resolver);
//! * UDP responses respect 512 bytes without EDNS and the negotiated payload (at most
//!   `dns.udp_payload`) with it; larger ones are truncated (TC) so clients retry on TCP;
//! * the work a flood can start is bounded: at most `dns.max_slow_queries` UDP queries
//!   on the general path at once (more are dropped) and `dns.max_tcp_connections` TCP
//!   connections (more are closed at once); with `dns.rrl`, UDP responses per client
//!   prefix are rate-limited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, ResponseCode};
use hickory_server::proto::rr::{LowerName, Name, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse};
use ipnet::IpNet;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::rrl::{Limiter, Verdict};
use super::udp::{Inbox, Outbox};
use super::wire::{self, Reply};
use super::zone::{LocalCache, ServiceZone};

/// Routes each query to the fast path, the service zone's general path, a static zone,
/// the forwarder, or a refusal.
pub struct Dispatcher {
    zone: ServiceZone,
    catalog: Catalog,
    static_origins: Vec<LowerName>,
    /// Address records of the static zones by owner: glue for their referrals.
    static_glue: HashMap<LowerName, Vec<Record>>,
    allow_recursion: Vec<IpNet>,
    forwarding: bool,
    udp_payload: u16,
    /// Longest wait for the forwarders (`dns.forward_timeout_ms`).
    forward_timeout: Duration,
}

impl Dispatcher {
    /// A dispatcher over the service zone and a catalog holding the static zones (their
    /// origins and address records by owner beside; and, when `forwarding`, the
    /// forwarder at the root, waited for at most `forward_timeout`).
    pub fn new(
        zone: ServiceZone,
        catalog: Catalog,
        (static_origins, static_glue): (Vec<LowerName>, HashMap<LowerName, Vec<Record>>),
        allow_recursion: Vec<IpNet>,
        forwarding: bool,
        udp_payload: u16,
        forward_timeout: Duration,
    ) -> Self {
        Self {
            zone,
            catalog,
            static_origins,
            static_glue,
            allow_recursion,
            forwarding,
            udp_payload,
            forward_timeout,
        }
    }

    fn may_recurse(&self, src: SocketAddr) -> bool {
        self.forwarding
            && self
                .allow_recursion
                .iter()
                .any(|net| net.contains(&src.ip().to_canonical()))
    }

    /// Largest response for a client: over UDP 512 bytes without EDNS (RFC 1035 §4.2.1),
    /// else the client's payload size capped at `dns.udp_payload`; 65535 over TCP.
    fn response_limit(&self, protocol: Protocol, edns_payload: Option<u16>) -> u16 {
        match (protocol, edns_payload) {
            (Protocol::Udp, Some(payload)) => payload.clamp(512, self.udp_payload),
            (Protocol::Udp, None) => 512,
            _ => u16::MAX,
        }
    }

    /// Answers a service-zone query straight from encoded answers (looked up in
    /// `local` first, see [`LocalCache`]). Returns false (and leaves `out`
    /// unspecified) when the packet needs the general path.
    pub fn try_fast(
        &self,
        packet: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        local: Option<&mut LocalCache>,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(query) = wire::parse(packet) else {
            return false;
        };
        if query.qclass != wire::CLASS_IN
            || matches!(query.qtype, 41 | 251 | 252 | 253 | 254)
            || query.edns.is_some_and(|e| e.version != 0)
        {
            return false;
        }
        let Some(below) = query.labels_below(self.zone.origin_wire()) else {
            return false;
        };
        let reply = Reply {
            limit: self.response_limit(protocol, query.edns.map(|e| e.payload)) as usize,
            recursion_available: self.may_recurse(src),
            server_payload: self.udp_payload,
            client_subnet_scope: None,
        };
        self.zone
            .respond(&query, below, reply, src.ip(), local, out);
        true
    }

    /// The general path: full parse with hickory-proto, then the service zone, a
    /// static zone, the forwarder or REFUSED. `None` means drop the packet.
    pub async fn handle_slow(
        &self,
        packet: &[u8],
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let request = match Request::from_bytes(packet.to_vec(), src, protocol) {
            Ok(r) => r,
            Err(e) => {
                debug!(%src, error = %e, "unparsable DNS packet");
                return wire::error_response(packet, &[], u16::from(ResponseCode::FormErr) as u8);
            }
        };
        if request.metadata.message_type != hickory_server::proto::op::MessageType::Query {
            return None;
        }
        let max_size =
            self.response_limit(protocol, request.edns.as_ref().map(|e| e.max_payload()));
        let name = request
            .queries
            .queries()
            .first()
            .map(|q| (Name::from(q.name().clone()), q.query_type()));
        let mut forwarded = None;
        if request.queries.len() == 1
            && let Some((name, qtype)) = &name
        {
            if self.zone.origin().zone_of(name) {
                return self.zone_general(packet, &request, *qtype, max_size, src, protocol);
            }
            let lower = LowerName::from(name.clone());
            let is_static = self.static_origins.iter().any(|o| o.zone_of(&lower));
            if !is_static && !self.may_recurse(src) {
                return wire::error_response(
                    packet,
                    request.queries.as_bytes(),
                    u16::from(ResponseCode::Refused) as u8,
                );
            }
            if !is_static {
                forwarded = Some(name.clone());
            }
        }
        let capture = Capture {
            out: Arc::new(Mutex::new(None)),
            max_size,
        };
        let handled = self
            .catalog
            .handle_request::<_, TokioTime>(&request, capture.clone());
        let Some(qname) = forwarded else {
            handled.await;
            let answer = capture.out.lock().take()?;
            return Some(self.referral(answer, max_size));
        };
        // A forwarded query answers within dns.forward_timeout_ms (under a stub
        // resolver's own timeout, glibc's 5 s), SERVFAIL when the forwarders do not.
        let servfail = || {
            wire::error_response(
                packet,
                request.queries.as_bytes(),
                u16::from(ResponseCode::ServFail) as u8,
            )
        };
        if tokio::time::timeout(self.forward_timeout, handled)
            .await
            .is_err()
        {
            debug!(%src, name = %qname, "forwarders did not answer in time; SERVFAIL");
            return servfail();
        }
        let answer = capture.out.lock().take()?;
        scrub_forwarded(&answer, &qname, max_size).or_else(servfail)
    }

    /// A query in the service zone that the fast path declined (an odd shape, another
    /// class, opcode or EDNS version, a zone transfer). An ordinary query in an odd
    /// shape is rewritten in the plain one (header, question as sent, OPT) and
    /// answered by the fast path, so both paths give the same answers; the rest get
    /// their error.
    fn zone_general(
        &self,
        packet: &[u8],
        request: &Request,
        qtype: RecordType,
        max_size: u16,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let query = request.queries.queries().first()?.original();
        let error = match (request.metadata.op_code, qtype, query.query_class()) {
            (op, _, _) if op != hickory_server::proto::op::OpCode::Query => {
                Some(ResponseCode::NotImp)
            }
            (_, RecordType::AXFR | RecordType::IXFR, _) => Some(ResponseCode::Refused),
            // The zone holds IN data only (a CH query must not get it).
            (_, _, class) if class != hickory_server::proto::rr::DNSClass::IN => {
                Some(ResponseCode::Refused)
            }
            _ if request.edns.as_ref().is_some_and(|e| e.version() > 0) => {
                Some(ResponseCode::BADVERS)
            }
            _ => None,
        };
        let Some(error) = error else {
            let plain = plain_query(request, query);
            let mut out = Vec::with_capacity(512);
            if self.try_fast(&plain, src, protocol, None, &mut out) {
                return Some(out);
            }
            // A question type the fast path does not serve (OPT, MAILA, MAILB), or an
            // option it finds malformed (a Client Subnet with bits past its prefix,
            // or two of them: FORMERR, RFC 7871 §7.1.2).
            let rcode = match u16::from(qtype) {
                41 | 253 | 254 => ResponseCode::NotImp,
                _ => ResponseCode::FormErr,
            };
            return wire::error_response(
                packet,
                request.queries.as_bytes(),
                u16::from(rcode) as u8,
            );
        };
        if error == ResponseCode::BADVERS {
            let mut msg = Message::error_msg(request.metadata.id, request.metadata.op_code, error);
            msg.add_query(query.clone());
            let mut e = Edns::new();
            e.set_max_payload(self.udp_payload);
            msg.set_edns(e);
            let bytes = msg.to_vec().ok()?;
            return (bytes.len() <= usize::from(max_size)).then_some(bytes);
        }
        // The question exactly as sent.
        wire::error_response(packet, request.queries.as_bytes(), u16::from(error) as u8)
    }
}

impl Dispatcher {
    /// A static zone's answer as sent, unless it is a referral to a delegated child
    /// zone (no answer, NS records and no SOA in the authority section): that one is
    /// not authoritative and carries the addresses of the delegated name servers that
    /// the zone holds as glue (RFC 1034 §4.3.2), which hickory leaves out. The glue is
    /// dropped again when it does not fit `max_size`.
    fn referral(&self, answer: Vec<u8>, max_size: u16) -> Vec<u8> {
        let Ok(mut msg) = Message::from_vec(&answer) else {
            return answer;
        };
        let name_servers: Vec<Name> = msg
            .authorities
            .iter()
            .filter_map(|r| match &r.data {
                hickory_server::proto::rr::RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        let is_referral = msg.answers.is_empty()
            && msg.metadata.response_code == ResponseCode::NoError
            && !name_servers.is_empty()
            && !msg
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
        if !is_referral {
            return answer;
        }
        msg.metadata.authoritative = false;
        for ns in &name_servers {
            for glue in self
                .static_glue
                .get(&LowerName::from(ns))
                .into_iter()
                .flatten()
            {
                if !msg.additionals.contains(glue) {
                    msg.additionals.push(glue.clone());
                }
            }
        }
        encode_within(msg, max_size).unwrap_or(answer)
    }
}

/// `msg` encoded within `max_size` bytes: whole when it fits, else without its
/// additional section (RFC 2181 §9), else cut with TC. `None` when it cannot be
/// encoded.
fn encode_within(mut msg: Message, max_size: u16) -> Option<Vec<u8>> {
    let fits = |bytes: &Vec<u8>| bytes.len() <= usize::from(max_size);
    if let Some(full) = msg.to_vec().ok().filter(fits) {
        return Some(full);
    }
    if !msg.additionals.is_empty() {
        msg.additionals.clear();
        if let Some(bare) = msg.to_vec().ok().filter(fits) {
            return Some(bare);
        }
    }
    let mut truncated = msg.truncate();
    truncated.metadata.truncation = true;
    truncated.to_vec().ok()
}

/// A forwarded answer with only what concerns `qname` (the question's bailiwick): answer
/// records owned by `qname` or by the CNAME chain from it, SOA and NS records of
/// zones above `qname` in the authority section, and no additional records (an
/// upstream must not slip records for other names to the client). Re-encoded within
/// `max_size` (TC when it does not fit); `None` when the answer cannot be parsed.
fn scrub_forwarded(answer: &[u8], qname: &Name, max_size: u16) -> Option<Vec<u8>> {
    let mut msg = Message::from_vec(answer).ok()?;
    let mut pending = std::mem::take(&mut msg.answers);
    let mut chain = vec![qname.clone()];
    let mut kept = Vec::with_capacity(pending.len());
    loop {
        let before = kept.len();
        pending.retain(|record| {
            if !chain.contains(&record.name) {
                return true;
            }
            if let hickory_server::proto::rr::RData::CNAME(target) = &record.data
                && !chain.contains(&target.0)
            {
                chain.push(target.0.clone());
            }
            kept.push(record.clone());
            false
        });
        if kept.len() == before {
            break;
        }
    }
    msg.answers = kept;
    msg.authorities = std::mem::take(&mut msg.authorities)
        .into_iter()
        .filter(|r| {
            matches!(r.record_type(), RecordType::SOA | RecordType::NS) && r.name.zone_of(qname)
        })
        .collect();
    msg.additionals.clear();
    encode_within(msg, max_size)
}

/// `request` rewritten in the shape the fast path takes: its id, RD and CD, the
/// question (`query`, case as sent, uncompressed) and an OPT record with its payload
/// size, DO bit and Client Subnet options when it had one.
fn plain_query(request: &Request, query: &hickory_server::proto::op::Query) -> Vec<u8> {
    let mut flags: u16 = 0;
    if request.metadata.recursion_desired {
        flags |= 0x0100;
    }
    if request.metadata.checking_disabled {
        flags |= 0x0010;
    }
    let mut plain = Vec::with_capacity(64);
    plain.extend_from_slice(&request.metadata.id.to_be_bytes());
    plain.extend_from_slice(&flags.to_be_bytes());
    plain.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(request.edns.is_some())]);
    wire::put_labels(&mut plain, query.name().iter());
    plain.push(0);
    plain.extend_from_slice(&u16::from(query.query_type()).to_be_bytes());
    plain.extend_from_slice(&u16::from(query.query_class()).to_be_bytes());
    if let Some(edns) = &request.edns {
        let dnssec_ok: u16 = if edns.flags().dnssec_ok { 0x8000 } else { 0 };
        plain.extend_from_slice(&[0, 0, 41]);
        plain.extend_from_slice(&edns.max_payload().to_be_bytes());
        plain.extend_from_slice(&[0, 0]);
        plain.extend_from_slice(&dnssec_ok.to_be_bytes());
        let mut options = Vec::new();
        for option in edns
            .options()
            .get_all(hickory_server::proto::rr::rdata::opt::EdnsCode::Subnet)
        {
            if let hickory_server::proto::rr::rdata::opt::EdnsOption::Subnet(subnet) = option
                && let Ok(data) = Vec::<u8>::try_from(subnet)
            {
                options.extend_from_slice(&wire::OPTION_CLIENT_SUBNET.to_be_bytes());
                options.extend_from_slice(&(data.len() as u16).to_be_bytes());
                options.extend_from_slice(&data);
            }
        }
        plain.extend_from_slice(&(options.len() as u16).to_be_bytes());
        plain.extend_from_slice(&options);
    }
    plain
}

/// A `ResponseHandler` that keeps the encoded response for the transport to send.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max_size: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(self.max_size);
        let info = response.destructive_emit(&mut encoder)?;
        *self.out.lock() = Some(bytes);
        Ok(info)
    }
}

/// The bounds on what UDP clients can make the server do, shared by the workers.
#[derive(Clone)]
pub struct UdpLimits {
    /// Response rate limiting, when `dns.rrl.enabled`.
    pub rrl: Option<Arc<Limiter>>,
    /// Permits for queries on the general path (`dns.max_slow_queries`).
    pub slow: Arc<Semaphore>,
}

/// Applies rate limiting to an answer to `src`: true when `response` is to be sent;
/// a slipped answer is first replaced by the request's header and question with TC
/// set.
fn rate_limited(
    rrl: Option<&Limiter>,
    request: &[u8],
    response: &mut Vec<u8>,
    src: SocketAddr,
) -> bool {
    match rrl.map(|r| r.check(src.ip(), std::time::Instant::now())) {
        None | Some(Verdict::Send) => true,
        Some(Verdict::Drop) => false,
        Some(Verdict::Slip) => match wire::truncated_reply(request) {
            Some(tc) => {
                *response = tc;
                true
            }
            None => false,
        },
    }
}

/// One UDP socket and what serving it needs: run on a thread of its own.
pub struct UdpWorker {
    /// The bound, non-blocking socket.
    pub socket: std::net::UdpSocket,
    /// Answers the queries.
    pub dispatcher: Arc<Dispatcher>,
    /// Rate limiting and the general path's permits.
    pub limits: UdpLimits,
    /// The runtime that runs queries on the general path (static zones and the
    /// forwarder live there).
    pub general: tokio::runtime::Handle,
}

impl UdpWorker {
    /// Serves the socket on the calling thread, with a single-threaded runtime of its
    /// own, until `stop` is cancelled; the socket is closed when this returns. A thread
    /// per socket keeps a worker's queries on one core: no other thread is woken to
    /// answer them.
    pub fn run(self, stop: CancellationToken) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                warn!(error = %e, "cannot start a DNS UDP worker");
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match UdpSocket::from_std(self.socket) {
                Ok(socket) => Arc::new(socket),
                Err(e) => {
                    warn!(error = %e, "cannot start a DNS UDP worker");
                    return;
                }
            };
            tokio::select! {
                () = serve_udp(socket, self.dispatcher, self.limits, self.general) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Serves UDP until dropped: a batch of queries at a time (see [`super::udp`]),
/// fast-path answers sent together after the batch; a query for the general path gets
/// its own task on `general` (at most `dns.max_slow_queries` at once).
async fn serve_udp(
    socket: Arc<UdpSocket>,
    dispatcher: Arc<Dispatcher>,
    limits: UdpLimits,
    general: tokio::runtime::Handle,
) {
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    let mut local = LocalCache::default();
    loop {
        let received = match inbox.recv(&socket).await {
            Ok(received) => received,
            Err(e) => {
                warn!(error = %e, "DNS UDP worker stopped");
                return;
            }
        };
        for i in 0..received {
            let (packet, src) = inbox.packet(i);
            if src.port() == 0 {
                continue;
            }
            let out = outbox.next_buffer();
            if dispatcher.try_fast(packet, src, Protocol::Udp, Some(&mut local), out) {
                if rate_limited(limits.rrl.as_deref(), packet, out, src) {
                    outbox.commit(src);
                }
                continue;
            }
            let Ok(permit) = limits.slow.clone().try_acquire_owned() else {
                debug!(%src, "too many queries on the general path; dropped");
                continue;
            };
            let packet = packet.to_vec();
            let dispatcher = dispatcher.clone();
            let socket = socket.clone();
            let rrl = limits.rrl.clone();
            general.spawn(async move {
                if let Some(mut resp) = dispatcher.handle_slow(&packet, src, Protocol::Udp).await
                    && rate_limited(rrl.as_deref(), &packet, &mut resp, src)
                    && let Err(e) = socket.send_to(&resp, src).await
                {
                    debug!(%src, error = %e, "udp send error");
                }
                drop(permit);
            });
        }
        outbox.flush(&socket).await;
    }
}

/// Serves DNS over TCP (RFC 7766: two-byte length prefix, several queries per
/// connection) until the task is aborted. Idle connections close after `idle`; past
/// `max_per_ip` open ones from one address, or `max_connections` in all, new
/// connections are closed at once.
pub async fn serve_tcp(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    idle: Duration,
    max_connections: usize,
    max_per_ip: usize,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let per_ip = crate::net::PerIpLimit::new(max_per_ip);
    loop {
        match listener.accept().await {
            Ok((stream, src)) => {
                // Per address first, so one client cannot take the global slots.
                let Some(admitted) = per_ip.admit(src.ip()) else {
                    debug!(%src, "too many DNS TCP connections from this address; closed");
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    debug!(%src, "too many DNS TCP connections; closed");
                    continue;
                };
                let dispatcher = dispatcher.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_tcp_connection(stream, src, dispatcher, idle).await {
                        debug!(%src, error = %e, "tcp connection closed");
                    }
                    drop((permit, admitted));
                });
            }
            Err(e) => {
                warn!(error = %e, "tcp accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    dispatcher: Arc<Dispatcher>,
    idle: Duration,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(1500);
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            _ => return Ok(()),
        };
        let mut packet = vec![0u8; len];
        match tokio::time::timeout(idle, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let response = if dispatcher.try_fast(&packet, src, Protocol::Tcp, None, &mut out) {
            Some(std::mem::take(&mut out))
        } else {
            dispatcher.handle_slow(&packet, src, Protocol::Tcp).await
        };
        if let Some(resp) = response {
            let mut framed = Vec::with_capacity(resp.len() + 2);
            framed.extend_from_slice(&(resp.len() as u16).to_be_bytes());
            framed.extend_from_slice(&resp);
            // A client that does not read its answers holds its slot only until the
            // idle timeout.
            match tokio::time::timeout(idle, stream.write_all(&framed)).await {
                Ok(written) => written?,
                Err(_) => return Ok(()),
            }
            out = resp;
        }
    }
}
