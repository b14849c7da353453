//! UDP push to HTTP subscribers, as Nacos does for its 1.x clients and still does in 2.x
//! for v1 clients (`shared/nacos-api.md` §4).
//!
//! A client that lists a service with `udpPort` (and `clientIP`) and a push-capable
//! `User-Agent` becomes a subscriber of that service. On every change of the service
//! (a registry change event; changes within `push.delay_ms` are coalesced) each
//! subscriber gets one datagram `{"type":"dom","data":"<ServiceInfo JSON>",
//! "lastRefTime":N}` — gzip-compressed when it is 1024 bytes or more — from one server
//! socket. The client answers `{"type":"push-ack","lastRefTime":N}`; a packet not acked
//! within `push.ack_timeout_ms` is sent again, at most `push.max_retries` times.
//! A subscriber that does not list the service again within `push.subscriber_ttl_ms`
//! ages out.
//!
//! Invariants: `lastRefTime` is unique per push of a service and selection, and below
//! 2^53 (JavaScript clients read it as a double and echo it back); a packet is encoded
//! once per service and `clusters` selection, whatever the number of subscribers;
//! pushes go only to the request's own address (whatever `clientIP` says), or — when
//! `push.allow_targets` is set and the request comes from inside it — to a `clientIP`
//! inside it too, so the server cannot be made to send datagrams to other hosts; the
//! tables are bounded (`push.max_subscribers`, `push.max_per_client` per client and per
//! target address, one pending packet per subscriber, `push.max_unacked_per_target`
//! unacked packets per target address at a time (a push past it waits until an ack
//! or a give-up makes room), so one that never acks gets datagrams only slowly).

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::model::ServiceKey;
use crate::naming::registry::{ChangeEvent, RegistryView, now_millis};
use crate::naming::service_info::{self, ListCache};
use crate::settings::PushSettings;

/// Packets of this size or more are gzip-compressed (as Nacos `PushService`).
const GZIP_FROM_BYTES: usize = 1024;
/// How often pending packets are looked at.
const TICK: Duration = Duration::from_millis(50);
/// How often subscribers are aged out.
const AGE_OUT_EVERY: Duration = Duration::from_secs(1);

/// Errors starting the push service.
#[derive(Debug, Error)]
#[error("cannot bind the UDP push socket on {addr}")]
pub struct PushError {
    /// The address.
    pub addr: SocketAddr,
    /// The cause.
    pub source: std::io::Error,
}

/// One subscriber of one service, as `GET /nacos/v1/ns/service/subscribers` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscriber {
    /// Where pushes go: `clientIP:udpPort`.
    pub addr: SocketAddr,
    /// The address its list request came from (limits count per client).
    pub client: IpAddr,
    /// The `clusters` it listed (comma list; empty for all).
    pub clusters: String,
    /// Its `User-Agent`.
    pub agent: String,
    /// Its `app` parameter.
    pub app: String,
    /// When it last listed the service, milliseconds since the epoch.
    pub last_seen_ms: u64,
}

/// A list request that asks for pushes.
#[derive(Debug)]
pub struct SubscribeRequest<'a> {
    /// `clientIP`, or `None` when absent (then the request's own address is used).
    pub client_ip: Option<&'a str>,
    /// `udpPort`, above 0.
    pub udp_port: u16,
    /// The address the request came from.
    pub peer: IpAddr,
    /// `clusters` as given.
    pub clusters: &'a str,
    /// `User-Agent`.
    pub agent: &'a str,
    /// `app`.
    pub app: &'a str,
}

/// Why a list request with `udpPort` did not become a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The `User-Agent` is not one Nacos pushes to.
    Agent,
    /// `clientIP` is not an IP address.
    BadClientIp,
    /// The target's address family is not the push socket's.
    Family,
    /// `clusters` is longer than [`MAX_CLUSTERS_LEN`].
    TooLong,
    /// `push.max_subscribers`, or `push.max_per_client` for this client or target
    /// address, reached.
    Full,
}

/// Longest `clusters` a subscription may carry, bytes.
pub const MAX_CLUSTERS_LEN: usize = 1024;
/// `User-Agent` and `app` are kept up to this many bytes.
const MAX_LABEL_LEN: usize = 128;

/// Who a packet went to, and for which selection: one pending packet each.
type PendingSlot = (SocketAddr, ServiceKey, String);

/// One packet waiting for its ack.
struct Pending {
    slot: PendingSlot,
    packet: Arc<[u8]>,
    retries_left: u32,
    resend_at: Instant,
}

/// Packets waiting for their acks, by `(lastRefTime, address)`: at most one per
/// subscriber, the latest, so a late retry never sends older data after newer.
#[derive(Default)]
struct PendingTable {
    by_ack: HashMap<(u64, SocketAddr), Pending>,
    latest: HashMap<PendingSlot, u64>,
    /// Unacked packets per target address.
    per_ip: HashMap<IpAddr, usize>,
}

impl PendingTable {
    /// Unacked packets to `ip`.
    fn unacked(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    fn insert(&mut self, last_ref_time: u64, pending: Pending) {
        let addr = pending.slot.0;
        if let Some(older) = self.latest.insert(pending.slot.clone(), last_ref_time) {
            self.drop_entry((older, addr));
        }
        self.by_ack.insert((last_ref_time, addr), pending);
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
    }

    fn drop_entry(&mut self, ack: (u64, SocketAddr)) -> Option<Pending> {
        let pending = self.by_ack.remove(&ack)?;
        if let Some(n) = self.per_ip.get_mut(&ack.1.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ack.1.ip());
            }
        }
        Some(pending)
    }

    fn remove(&mut self, ack: (u64, SocketAddr)) -> Option<Pending> {
        let pending = self.drop_entry(ack)?;
        if self.latest.get(&pending.slot) == Some(&ack.0) {
            self.latest.remove(&pending.slot);
        }
        Some(pending)
    }
}

/// The subscribers of every service, with running counts so a subscription never
/// scans the table.
#[derive(Default)]
struct SubscriberTable {
    by_service: HashMap<ServiceKey, Vec<Subscriber>>,
    per_client: HashMap<IpAddr, usize>,
    /// Subscriptions per target address (the IP pushes go to).
    per_target: HashMap<IpAddr, usize>,
    total: usize,
}

/// The subscriber table, the socket and the packets waiting for acks.
pub struct PushService {
    settings: PushSettings,
    socket: UdpSocket,
    ipv4_socket: bool,
    registry: RegistryView,
    list_cache: Arc<ListCache>,
    cache_millis: u64,
    subscribers: Mutex<SubscriberTable>,
    pending: Mutex<PendingTable>,
    next_ref: AtomicU64,
    /// Subscribers (address, `clusters`) of each service whose push waited for room
    /// at their address.
    deferred: Mutex<HashMap<ServiceKey, HashSet<(SocketAddr, String)>>>,
    /// An ack came or a pending packet was given up since the worker last looked:
    /// deferred services may go now.
    room: std::sync::atomic::AtomicBool,
}

/// The task that turns change events into pushes and handles acks and retries.
pub struct PushWorker {
    service: Arc<PushService>,
    events: broadcast::Receiver<ChangeEvent>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushPacket<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a str,
    last_ref_time: u64,
}

/// An ack; Java sends `lastRefTime` as a string, Node.js as a number.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    #[serde(rename = "type")]
    kind: String,
    last_ref_time: serde_json::Value,
}

impl PushService {
    /// Binds the push socket on `settings.addr` and subscribes to the registry's
    /// change events (so no change is missed before the worker runs). `list_cache`
    /// and `cache_millis` are those of the list API, so a push carries exactly what a
    /// list would answer.
    pub async fn start(
        settings: &PushSettings,
        registry: RegistryView,
        list_cache: Arc<ListCache>,
        cache_millis: u64,
    ) -> Result<(Arc<Self>, PushWorker), PushError> {
        let socket = UdpSocket::bind(settings.addr)
            .await
            .map_err(|source| PushError {
                addr: settings.addr,
                source,
            })?;
        let events = registry.subscribe();
        let service = Arc::new(Self {
            settings: settings.clone(),
            socket,
            ipv4_socket: settings.addr.is_ipv4(),
            registry,
            list_cache,
            cache_millis,
            subscribers: Mutex::new(SubscriberTable::default()),
            pending: Mutex::new(PendingTable::default()),
            // Microseconds since the epoch: unique, increasing, far below 2^53.
            next_ref: AtomicU64::new(now_millis().saturating_mul(1000)),
            deferred: Mutex::new(HashMap::new()),
            room: std::sync::atomic::AtomicBool::new(false),
        });
        let worker = PushWorker {
            service: service.clone(),
            events,
        };
        Ok((service, worker))
    }

    /// The address pushes are sent from (and acks go to).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Records (or refreshes) a subscriber of `key` from a list request with
    /// `udpPort`. Refuses, as Nacos does, agents it does not push to; and — unlike
    /// Nacos — targets the push socket cannot reach and subscriptions past the limits.
    /// The target is the request's own address unless `clientIP` names another host
    /// and both are inside `push.allow_targets` (Nacos pushes to any `clientIP`).
    pub fn subscribe(&self, key: &ServiceKey, req: SubscribeRequest<'_>) -> Result<(), Refusal> {
        if !push_capable(req.agent) {
            return Err(Refusal::Agent);
        }
        if req.clusters.len() > MAX_CLUSTERS_LEN {
            return Err(Refusal::TooLong);
        }
        let peer = req.peer.to_canonical();
        let named = match req.client_ip {
            Some(raw) => raw
                .parse::<IpAddr>()
                .map_err(|_| Refusal::BadClientIp)?
                .to_canonical(),
            None => peer,
        };
        // Another host only when both are inside allow_targets (empty by default):
        // otherwise pushes go back to where the request came from.
        let allowed = |ip: &IpAddr| self.settings.allow_targets.iter().any(|n| n.contains(ip));
        let ip = if named != peer && allowed(&peer) && allowed(&named) {
            named
        } else {
            peer
        };
        if ip.is_ipv4() != self.ipv4_socket {
            return Err(Refusal::Family);
        }
        let addr = SocketAddr::new(ip, req.udp_port);
        let now = now_millis();
        let mut table = self.subscribers.lock();
        if let Some(sub) = table.by_service.get_mut(key).and_then(|subs| {
            subs.iter_mut()
                .find(|s| s.addr == addr && s.clusters == req.clusters)
        }) {
            sub.last_seen_ms = now;
            return Ok(());
        }
        let of_client = table.per_client.get(&peer).copied().unwrap_or(0);
        let of_target = table.per_target.get(&ip).copied().unwrap_or(0);
        if table.total >= self.settings.max_subscribers
            || of_client >= self.settings.max_per_client
            || of_target >= self.settings.max_per_client
        {
            return Err(Refusal::Full);
        }
        table.total += 1;
        table.per_client.insert(peer, of_client + 1);
        table.per_target.insert(ip, of_target + 1);
        table
            .by_service
            .entry(key.clone())
            .or_default()
            .push(Subscriber {
                addr,
                client: peer,
                clusters: req.clusters.to_string(),
                agent: truncated(req.agent),
                app: truncated(req.app),
                last_seen_ms: now,
            });
        Ok(())
    }

    /// The subscribers of a service.
    pub fn subscribers(&self, key: &ServiceKey) -> Vec<Subscriber> {
        self.subscribers
            .lock()
            .by_service
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Number of subscribers of every service.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.lock().total
    }

    fn has_subscribers(&self, key: &ServiceKey) -> bool {
        self.subscribers.lock().by_service.contains_key(key)
    }

    /// Sends the current state of `key` to each of its subscribers: one packet, with
    /// one `lastRefTime`, per `clusters` selection.
    async fn push_service(&self, key: &ServiceKey) {
        let subscribers = self.subscribers(key);
        // Every subscriber is pushed now: what waited for room is part of this.
        self.deferred.lock().remove(key);
        self.push_to(key, &subscribers).await;
    }

    /// Pushes the current state of `key` to the subscribers whose push waited for
    /// room at their address.
    async fn push_deferred(&self, key: &ServiceKey, waiting: HashSet<(SocketAddr, String)>) {
        let subscribers: Vec<Subscriber> = self
            .subscribers(key)
            .into_iter()
            .filter(|s| waiting.contains(&(s.addr, s.clusters.clone())))
            .collect();
        self.push_to(key, &subscribers).await;
    }

    /// Sends the current state of `key` to `subscribers`: one packet, with one
    /// `lastRefTime`, per `clusters` selection.
    async fn push_to(&self, key: &ServiceKey, subscribers: &[Subscriber]) {
        if subscribers.is_empty() {
            return;
        }
        let snapshot = self.registry.snapshot(key);
        let mut packets: HashMap<&str, (u64, Arc<[u8]>)> = HashMap::new();
        for sub in subscribers {
            let (last_ref_time, packet) = packets
                .entry(sub.clusters.as_str())
                .or_insert_with(|| {
                    let hosts = snapshot
                        .as_ref()
                        .map(|snap| self.list_cache.hosts(snap, &sub.clusters, false));
                    let data = service_info::render(
                        key,
                        &sub.clusters,
                        hosts.as_deref(),
                        self.cache_millis,
                        now_millis(),
                    );
                    let last_ref_time = self.next_ref.fetch_add(1, Ordering::Relaxed);
                    (last_ref_time, encode_packet(&data, last_ref_time).into())
                })
                .clone();
            // A target that does not ack (not a Nacos client, or not listening) gets
            // at most `push.max_unacked_per_target` packets until acks or give-ups; a
            // push that replaces its subscriber's own pending packet adds none. Others
            // wait (the service is pushed again once the address has room).
            let slot: PendingSlot = (sub.addr, key.clone(), sub.clusters.clone());
            {
                let pending = self.pending.lock();
                if !pending.latest.contains_key(&slot)
                    && pending.unacked(sub.addr.ip()) >= self.settings.max_unacked_per_target
                {
                    drop(pending);
                    debug!(addr = %sub.addr, service = %key, "push deferred: too many unacked pushes to this address");
                    self.deferred
                        .lock()
                        .entry(key.clone())
                        .or_default()
                        .insert((sub.addr, sub.clusters.clone()));
                    continue;
                }
            }
            self.send(sub.addr, &packet).await;
            self.pending.lock().insert(
                last_ref_time,
                Pending {
                    slot,
                    packet,
                    retries_left: self.settings.max_retries,
                    resend_at: Instant::now() + self.ack_timeout(),
                },
            );
        }
    }

    fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ack_timeout_ms)
    }

    async fn send(&self, addr: SocketAddr, packet: &[u8]) {
        if let Err(e) = self.socket.send_to(packet, addr).await {
            debug!(%addr, error = %e, "push not sent");
        }
    }

    /// Takes an ack datagram from `from`: the pending packet with that `lastRefTime`
    /// sent to that address is done.
    fn on_datagram(&self, datagram: &[u8], from: SocketAddr) {
        let Ok(ack) = serde_json::from_slice::<Ack>(datagram) else {
            debug!(%from, "push socket: not an ack, ignored");
            return;
        };
        let last_ref_time = match &ack.last_ref_time {
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let Some(last_ref_time) = last_ref_time.filter(|_| ack.kind == "push-ack") else {
            debug!(%from, kind = %ack.kind, "push socket: unexpected message, ignored");
            return;
        };
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        if self.pending.lock().remove((last_ref_time, from)).is_some() {
            self.room.store(true, Ordering::Release);
        }
    }

    /// Resends packets whose ack is late; gives up on those out of retries.
    async fn resend_due(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut pending = self.pending.lock();
            let mut given_up = Vec::new();
            for (ack, p) in pending.by_ack.iter_mut() {
                if p.resend_at > now {
                    continue;
                }
                if p.retries_left == 0 {
                    given_up.push(*ack);
                    continue;
                }
                p.retries_left -= 1;
                p.resend_at = now + self.ack_timeout();
                due.push((ack.1, p.packet.clone()));
            }
            if !given_up.is_empty() {
                self.room.store(true, Ordering::Release);
            }
            for ack in given_up {
                if let Some(p) = pending.remove(ack) {
                    debug!(addr = %ack.1, service = %p.slot.1, last_ref_time = ack.0, "push not acked, given up");
                }
            }
        }
        for (addr, packet) in due {
            self.send(addr, &packet).await;
        }
    }

    /// The subscribers whose pushes waited for room, once some address got room.
    fn take_deferred(&self) -> Vec<(ServiceKey, HashSet<(SocketAddr, String)>)> {
        if !self.room.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.deferred.lock().drain().collect()
    }

    /// Drops subscribers that have not listed again within the TTL.
    fn age_out(&self) {
        let cutoff = now_millis().saturating_sub(self.settings.subscriber_ttl_ms);
        let mut guard = self.subscribers.lock();
        let table = &mut *guard;
        let (per_client, per_target, total) = (
            &mut table.per_client,
            &mut table.per_target,
            &mut table.total,
        );
        table.by_service.retain(|key, subs| {
            subs.retain(|s| {
                if s.last_seen_ms >= cutoff {
                    return true;
                }
                debug!(service = %key, addr = %s.addr, "push subscriber aged out");
                *total = total.saturating_sub(1);
                if let Some(n) = per_client.get_mut(&s.client) {
                    *n = n.saturating_sub(1);
                }
                if let Some(n) = per_target.get_mut(&s.addr.ip()) {
                    *n = n.saturating_sub(1);
                }
                false
            });
            !subs.is_empty()
        });
        per_client.retain(|_, n| *n > 0);
        per_target.retain(|_, n| *n > 0);
    }
}

/// `text` cut to [`MAX_LABEL_LEN`] bytes at a character boundary.
fn truncated(text: &str) -> String {
    let mut end = text.len().min(MAX_LABEL_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl PushWorker {
    /// Runs until `shutdown` fires: coalesces change events for `push.delay_ms`, then
    /// pushes each changed service that has subscribers; reads acks; resends late
    /// packets; ages subscribers out.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let service = self.service;
        let delay = Duration::from_millis(service.settings.delay_ms);
        let mut changed: HashSet<ServiceKey> = HashSet::new();
        let mut flush_at: Option<Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 65_536];
        let mut next_age_out = Instant::now() + AGE_OUT_EVERY;
        loop {
            let flush = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = self.events.recv() => match event {
                    Ok(event) => {
                        if service.has_subscribers(&event.key) {
                            changed.insert(event.key);
                            flush_at.get_or_insert_with(|| Instant::now() + delay);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: push every subscribed service.
                        changed.extend(service.subscribers.lock().by_service.keys().cloned());
                        flush_at.get_or_insert_with(|| Instant::now() + delay);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = flush => {
                    flush_at = None;
                    for key in std::mem::take(&mut changed) {
                        service.push_service(&key).await;
                    }
                }
                received = service.socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => service.on_datagram(&buf[..n], from),
                    // ICMP errors of earlier sends surface here on some systems.
                    Err(e) => debug!(error = %e, "push socket receive failed"),
                },
                _ = tick.tick() => {
                    service.resend_due().await;
                    for (key, waiting) in service.take_deferred() {
                        service.push_deferred(&key, waiting).await;
                    }
                    if Instant::now() >= next_age_out {
                        next_age_out = Instant::now() + AGE_OUT_EVERY;
                        service.age_out();
                    }
                }
            }
        }
    }
}

/// The datagram for one push: Nacos's JSON, gzip-compressed from 1024 bytes.
fn encode_packet(service_info: &[u8], last_ref_time: u64) -> Vec<u8> {
    let packet = PushPacket {
        kind: "dom",
        data: std::str::from_utf8(service_info).unwrap_or(""),
        last_ref_time,
    };
    // Serializing strings and numbers cannot fail.
    let json = serde_json::to_vec(&packet).unwrap_or_default();
    if json.len() < GZIP_FROM_BYTES {
        return json;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    match gz.write_all(&json).and_then(|_| gz.finish()) {
        Ok(compressed) => compressed,
        Err(_) => json,
    }
}

/// Whether Nacos pushes to this `User-Agent` (its `PushService#canEnablePush` with
/// the default switch versions): Java ≥ 0.1.0, `Nacos-DNS` ≥ 0.4.3, C ≥ 1.0.12, Go ≥
/// 0.1.0, C# ≥ 0.9.0. The Python client (`Nacos-Python-Client`) is never pushed to; the
/// Node.js client sends `Nacos-Java-Client:v1.0.0`.
pub fn push_capable(agent: &str) -> bool {
    const CLIENTS: [(&str, [u32; 3]); 6] = [
        ("Nacos-Java-Client:v", [0, 1, 0]),
        ("Nacos-DNS:v", [0, 4, 3]),
        ("Nacos-C-Client:v", [1, 0, 12]),
        ("vip-client4cpp:v", [1, 0, 12]),
        ("Nacos-Go-Client:v", [0, 1, 0]),
        ("Nacos-CSharp-Client:v", [0, 9, 0]),
    ];
    CLIENTS.iter().any(|(prefix, min)| {
        agent
            .strip_prefix(prefix)
            .is_some_and(|version| version_parts(version) >= *min)
    })
}

/// `1.4.6-SNAPSHOT` → `[1, 4, 6]`; missing or unreadable parts count as 0.
fn version_parts(version: &str) -> [u32; 3] {
    let mut parts = [0u32; 3];
    for (slot, part) in parts.iter_mut().zip(version.split('.')) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        *slot = digits.parse().unwrap_or(0);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_capable_agents_are_nacos_s() {
        assert!(push_capable("Nacos-Java-Client:v1.4.6"));
        assert!(push_capable("Nacos-Java-Client:v1.0.0"));
        assert!(push_capable("Nacos-Go-Client:v2.2.1"));
        assert!(push_capable("Nacos-C-Client:v1.0.12"));
        assert!(!push_capable("Nacos-C-Client:v1.0.11"));
        assert!(!push_capable("Nacos-Python-Client:v0.1.5"));
        assert!(!push_capable("curl/8.0"));
        assert!(!push_capable(""));
    }

    #[test]
    fn large_packets_are_gzipped_small_ones_not() {
        let small = encode_packet(br#"{"hosts":[]}"#, 7);
        let v: serde_json::Value = serde_json::from_slice(&small).unwrap();
        assert_eq!(v["type"], "dom");
        assert_eq!(v["lastRefTime"], 7);
        assert_eq!(v["data"], r#"{"hosts":[]}"#);
        let big = encode_packet("x".repeat(2000).as_bytes(), 8);
        assert_eq!(&big[..2], &[0x1f, 0x8b]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&big[..]), &mut out)
            .unwrap();
        assert!(out.contains("\"lastRefTime\":8"));
    }

    async fn service(settings: PushSettings) -> Arc<PushService> {
        let (push, _worker) = PushService::start(
            &settings,
            RegistryView::new(Arc::new(crate::naming::registry::Registry::new())),
            Arc::new(ListCache::default()),
            10_000,
        )
        .await
        .unwrap();
        push
    }

    fn req(peer: &str, client_ip: Option<&'static str>, port: u16) -> SubscribeRequest<'static> {
        SubscribeRequest {
            client_ip,
            udp_port: port,
            peer: peer.parse().unwrap(),
            clusters: "",
            agent: "Nacos-Java-Client:v1.4.6",
            app: "",
        }
    }

    fn targets(push: &PushService, key: &ServiceKey) -> Vec<String> {
        push.subscribers(key)
            .iter()
            .map(|s| s.addr.to_string())
            .collect()
    }

    #[tokio::test]
    async fn pushes_go_back_to_the_sender_by_default() {
        let push = service(PushSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..PushSettings::default()
        })
        .await;
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "s");
        // The reflection repro: clientIP names another host; the push goes back to
        // the sender, private network or not.
        for (peer, named) in [("127.0.0.1", "127.0.0.3"), ("10.0.0.2", "10.0.0.3")] {
            assert_eq!(push.subscribe(&key, req(peer, Some(named), 7)), Ok(()));
        }
        assert_eq!(
            push.subscribe(&key, req("203.0.113.5", Some("not-an-ip"), 7)),
            Err(Refusal::BadClientIp)
        );
        assert_eq!(
            targets(&push, &key),
            vec!["127.0.0.1:7".to_string(), "10.0.0.2:7".to_string()]
        );
    }

    #[tokio::test]
    async fn another_target_only_inside_allow_targets_and_within_the_limits() {
        let push = service(PushSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            max_per_client: 2,
            allow_targets: vec!["10.0.0.0/8".parse().unwrap()],
            ..PushSettings::default()
        })
        .await;
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "s");
        // From outside the allowed networks, the sender's own address.
        assert_eq!(
            push.subscribe(&key, req("203.0.113.5", Some("10.0.0.1"), 1)),
            Ok(())
        );
        // Inside them, another host inside them.
        assert_eq!(
            push.subscribe(&key, req("10.0.0.2", Some("10.0.0.3"), 1)),
            Ok(())
        );
        assert_eq!(
            push.subscribe(&key, req("::ffff:10.0.0.2", Some("10.0.0.4"), 1)),
            Ok(()),
            "a v4-mapped peer is its IPv4 address"
        );
        assert_eq!(
            push.subscribe(&key, req("10.0.0.2", Some("10.0.0.5"), 1)),
            Err(Refusal::Full),
            "two per client"
        );
        assert_eq!(
            push.subscribe(&key, req("10.0.0.2", Some("10.0.0.3"), 1)),
            Ok(()),
            "a refresh is no new subscription"
        );
        // Many senders aiming at one target: two per target address too.
        assert_eq!(
            push.subscribe(&key, req("10.0.0.7", Some("10.0.0.3"), 2)),
            Ok(())
        );
        assert_eq!(
            push.subscribe(&key, req("10.0.0.8", Some("10.0.0.3"), 3)),
            Err(Refusal::Full),
            "two per target"
        );
        assert_eq!(
            push.subscribe(&key, req("fd00::1", None, 1)),
            Err(Refusal::Family),
            "an IPv6 target for an IPv4 socket"
        );
        assert_eq!(
            targets(&push, &key),
            vec!["203.0.113.5:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.3:2"]
        );
    }
}
