//! The DNS fast path's wire handling: a strict parser for ordinary queries and the
//! assembly of a response from an answer encoded once per service snapshot.
//!
//! Invariants:
//! * the parser never panics and accepts only the common shape (one question, no
//!   answer or authority records, at most one OPT record, no compression in the
//!   question, nothing after the last record); anything else returns `None` and goes to
//!   the general path, which uses hickory-proto's full parser;
//! * a response repeats the client's question bytes, so its id and the case of its
//!   question name (RFC 4343, DNS 0x20) are the client's own;
//! * pre-encoded bodies only point (compression) at offsets inside the header and
//!   question, or inside themselves at fixed offsets, so copying them after a question
//!   of the same length is valid. Sampled address records point only at the question
//!   name; SRV targets and glue point into the question or at records written earlier
//!   in the same response.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

thread_local! {
    /// The generator of answer orders: fast, not cryptographic (an order is no
    /// secret), seeded per thread from the OS-seeded thread generator.
    static ORDER_RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Record type numbers used on the fast path.
pub const TYPE_OPT: u16 = 41;
/// DNS class IN.
pub const CLASS_IN: u16 = 1;
/// Header length, RFC 1035 §4.1.1.
pub const HEADER_LEN: usize = 12;
/// Length of the OPT record the server appends (RFC 6891 §6.1.2, no options).
pub const OPT_LEN: usize = 11;

/// EDNS(0) values of a query's OPT record (RFC 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdnsView {
    /// Requestor's UDP payload size, bytes.
    pub payload: u16,
    /// EDNS version; only 0 is served on the fast path.
    pub version: u8,
    /// The DNSSEC OK bit (RFC 3225), copied into the response.
    pub dnssec_ok: bool,
    /// The EDNS Client Subnet option (RFC 7871), when the query carries one.
    pub client_subnet: Option<ClientSubnetView>,
}

/// An EDNS Client Subnet option of a query (RFC 7871 §6), checked: a known family, a
/// source prefix that fits it, as many address bytes as the prefix needs and no bits
/// set past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnetView {
    /// The address, zero past the source prefix.
    pub addr: std::net::IpAddr,
    /// SOURCE PREFIX-LENGTH, bits.
    pub source_prefix: u8,
    /// Where the option's data (FAMILY onwards) starts in the packet.
    data_at: usize,
}

impl ClientSubnetView {
    /// Length of the option's data, bytes: FAMILY, the two prefix lengths and the
    /// address bytes the source prefix needs.
    fn data_len(&self) -> usize {
        4 + usize::from(self.source_prefix).div_ceil(8)
    }
}

/// EDNS option code of Client Subnet (RFC 7871).
pub const OPTION_CLIENT_SUBNET: u16 = 8;

/// The Client Subnet option in `data` (at offset `data_at` of the packet), or `None`
/// when it is malformed.
fn parse_client_subnet(data: &[u8], data_at: usize) -> Option<ClientSubnetView> {
    let family = be16(data, 0)?;
    let source_prefix = *data.get(2)?;
    let address = data.get(4..)?;
    if address.len() != usize::from(source_prefix).div_ceil(8) {
        return None;
    }
    // Bits past the source prefix must be zero (RFC 7871 §6).
    if let Some(&last) = address.last()
        && source_prefix % 8 != 0
        && last & (0xFF >> (source_prefix % 8)) != 0
    {
        return None;
    }
    let addr = match family {
        1 if source_prefix <= 32 => {
            let mut octets = [0u8; 4];
            octets[..address.len()].copy_from_slice(address);
            std::net::IpAddr::from(octets)
        }
        2 if source_prefix <= 128 => {
            let mut octets = [0u8; 16];
            octets[..address.len()].copy_from_slice(address);
            std::net::IpAddr::from(octets)
        }
        _ => return None,
    };
    Some(ClientSubnetView {
        addr,
        source_prefix,
        data_at,
    })
}

/// A parsed ordinary query, borrowing the packet.
pub struct QueryView<'a> {
    packet: &'a [u8],
    /// Message id.
    pub id: u16,
    /// Recursion desired.
    pub rd: bool,
    /// Checking disabled.
    pub cd: bool,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS(0) values, when the query carries an OPT record.
    pub edns: Option<EdnsView>,
    /// End of the question section in `packet`.
    question_end: usize,
    /// The question name in wire format with ASCII folded to lower case.
    lower: [u8; 255],
    lower_len: usize,
    /// Offsets of the labels of `lower`.
    labels: [u8; 128],
    label_count: usize,
}

impl<'a> QueryView<'a> {
    /// The question name in wire format, folded to lower case.
    pub fn lower_name(&self) -> &[u8] {
        &self.lower[..self.lower_len]
    }

    /// The whole packet.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// Raw question section bytes (name, type, class) as the client sent them.
    pub fn question(&self) -> &'a [u8] {
        &self.packet[HEADER_LEN..self.question_end]
    }

    /// The labels of the folded question name, first to last, without the root.
    pub fn labels(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.label_count).map(move |i| {
            let at = self.labels[i] as usize;
            let len = self.lower[at] as usize;
            &self.lower[at + 1..at + 1 + len]
        })
    }

    /// When the name is at or below the zone given in wire format (lower case), the
    /// number of labels left of the zone.
    pub fn labels_below(&self, zone_wire: &[u8]) -> Option<usize> {
        let name = self.lower_name();
        if zone_wire.len() > name.len() {
            return None;
        }
        let start = name.len() - zone_wire.len();
        if &name[start..] != zone_wire {
            return None;
        }
        if start == 0 {
            return Some(0);
        }
        if start == name.len() - 1 {
            // The zone is the root: every label is below it.
            return Some(self.label_count);
        }
        (0..self.label_count).find(|&i| self.labels[i] as usize == start)
    }
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Parses an ordinary query; `None` for anything the fast path does not handle.
pub fn parse(packet: &[u8]) -> Option<QueryView<'_>> {
    if packet.len() < HEADER_LEN + 5 {
        return None;
    }
    let flags = be16(packet, 2)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xF;
    let truncated = flags & 0x0200 != 0;
    if is_response || opcode != 0 || truncated {
        return None;
    }
    let (qd, an, ns, ar) = (
        be16(packet, 4)?,
        be16(packet, 6)?,
        be16(packet, 8)?,
        be16(packet, 10)?,
    );
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut view = QueryView {
        packet,
        id: be16(packet, 0)?,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        qtype: 0,
        qclass: 0,
        edns: None,
        question_end: 0,
        lower: [0; 255],
        lower_len: 0,
        labels: [0; 128],
        label_count: 0,
    };
    let mut pos = HEADER_LEN;
    loop {
        let len = *packet.get(pos)? as usize;
        if len == 0 {
            view.lower[view.lower_len] = 0;
            view.lower_len += 1;
            pos += 1;
            break;
        }
        if len > 63 || view.lower_len + 1 + len + 1 > 255 || view.label_count >= 128 {
            return None;
        }
        let label = packet.get(pos + 1..pos + 1 + len)?;
        view.labels[view.label_count] = view.lower_len as u8;
        view.label_count += 1;
        view.lower[view.lower_len] = len as u8;
        for (dst, src) in view.lower[view.lower_len + 1..view.lower_len + 1 + len]
            .iter_mut()
            .zip(label)
        {
            *dst = src.to_ascii_lowercase();
        }
        view.lower_len += 1 + len;
        pos += 1 + len;
    }
    view.qtype = be16(packet, pos)?;
    view.qclass = be16(packet, pos + 2)?;
    pos += 4;
    view.question_end = pos;
    if ar == 1 {
        // OPT: root owner, type 41, class = payload, TTL = ext-rcode, version, flags.
        if *packet.get(pos)? != 0 || be16(packet, pos + 1)? != TYPE_OPT {
            return None;
        }
        let payload = be16(packet, pos + 3)?;
        let version = *packet.get(pos + 6)?;
        let eflags = be16(packet, pos + 7)?;
        let rdlen = be16(packet, pos + 9)? as usize;
        let options_at = pos + OPT_LEN;
        let options = packet.get(options_at..options_at + rdlen)?;
        // Options: code, length, data. Client Subnet is read (at most one, well
        // formed: RFC 7871 §7.1.2 wants FORMERR otherwise, which the general path
        // gives); the others are ignored.
        let mut client_subnet = None;
        let mut at = 0;
        while at < options.len() {
            let code = be16(options, at)?;
            let len = be16(options, at + 2)? as usize;
            let data = options.get(at + 4..at + 4 + len)?;
            if code == OPTION_CLIENT_SUBNET {
                if client_subnet.is_some() {
                    return None;
                }
                client_subnet = Some(parse_client_subnet(data, options_at + at + 4)?);
            }
            at += 4 + len;
        }
        pos = options_at + rdlen;
        view.edns = Some(EdnsView {
            payload,
            version,
            dnssec_ok: eflags & 0x8000 != 0,
            client_subnet,
        });
    }
    if pos != packet.len() {
        return None;
    }
    Some(view)
}

/// Appends `labels` in wire format (a length byte, then the bytes), without the root
/// label. A label longer than 63 bytes is cut to 63 (no query can ask for one).
pub fn put_labels<'a>(out: &mut Vec<u8>, labels: impl IntoIterator<Item = &'a [u8]>) {
    for label in labels {
        let label = &label[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
}

/// A weighted random sample without replacement over `n` items: each draw picks an
/// item not drawn yet with probability proportional to its weight, so the first is `i`
/// with probability `w[i] / Σw`. A draw of `k` items costs O(k · (k + log n)),
/// whatever `n` is: the running totals of the weights are computed once, when the
/// answer is prepared.
#[derive(Debug, Clone)]
pub struct Weighted {
    /// Running totals of the items' weights (`cumulative[i]` = w₀ + … + wᵢ); every
    /// weight is above zero.
    cumulative: Vec<f64>,
    /// Every weight is the same (Nacos's default of 1 everywhere): a draw is a
    /// uniform sample, drawn without the running totals.
    uniform: bool,
}

impl Weighted {
    /// A sampler over these weights (Nacos weights; a weight that is not above zero,
    /// or not finite, counts as the smallest positive one so that every item can be
    /// drawn).
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let mut first = None;
        let mut uniform = true;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                let w = if w.is_finite() && w > 0.0 {
                    w
                } else {
                    f64::MIN_POSITIVE
                };
                uniform &= *first.get_or_insert(w) == w;
                total += w;
                total
            })
            .collect();
        Self {
            cumulative,
            uniform,
        }
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// The weight of item `i` and where its share starts on the running total.
    fn span(&self, i: usize) -> (f64, f64) {
        let start = if i == 0 { 0.0 } else { self.cumulative[i - 1] };
        (start, self.cumulative[i] - start)
    }

    /// Draws `take` distinct item indices (fewer when there are fewer items) into
    /// `out` (cleared first), in the order drawn. Allocates nothing for up to 32.
    pub fn draw(&self, take: usize, out: &mut Drawn) {
        out.clear();
        let n = self.len();
        let take = take.min(n);
        if take == 0 {
            return;
        }
        ORDER_RNG.with_borrow_mut(|rng| {
            if self.uniform {
                draw_uniform(n, take, rng, out);
            } else {
                self.draw_weighted(take, rng, out);
            }
        });
    }

    /// [`Weighted::draw`] for weights that differ: each point drawn on the weight
    /// left is moved past the shares of the items drawn before.
    fn draw_weighted(&self, take: usize, rng: &mut SmallRng, out: &mut Drawn) {
        let n = self.len();
        let total = self.cumulative[n - 1];
        // The drawn items' shares of the running total, by start: (start, weight).
        let mut drawn: smallvec::SmallVec<[(f64, f64); 32]> = smallvec::SmallVec::new();
        let mut drawn_weight = 0.0;
        while out.len() < take {
            // A point on the weight of the items not drawn yet, then moved past the
            // shares of drawn items that start at or before it.
            let mut u = rng.random::<f64>() * (total - drawn_weight).max(0.0);
            for &(start, weight) in &drawn {
                if u >= start {
                    u += weight;
                } else {
                    break;
                }
            }
            let mut i = self.cumulative.partition_point(|&c| c <= u).min(n - 1);
            // Rounding can land on a drawn item's edge: take the nearest free one (at
            // most `take` steps away).
            if out.contains(&i) {
                match (i..n).chain((0..i).rev()).find(|j| !out.contains(j)) {
                    Some(j) => i = j,
                    None => return,
                }
            }
            let (start, weight) = self.span(i);
            let at = drawn.partition_point(|&(s, _)| s < start);
            drawn.insert(at, (start, weight));
            drawn_weight += weight;
            out.push(i);
        }
    }
}

/// Draws `take` (at most `n`) distinct indices of `0..n` uniformly into `out`: by
/// rejection when they are at most half of `n` (O(take²) compares, nothing of size
/// `n`), else by a partial Fisher–Yates shuffle of `0..n` (then `n` < 2 · `take`).
fn draw_uniform(n: usize, take: usize, rng: &mut SmallRng, out: &mut Drawn) {
    if take * 2 <= n {
        while out.len() < take {
            let i = rng.random_range(0..n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
        return;
    }
    let mut order: smallvec::SmallVec<[usize; 64]> = (0..n).collect();
    for j in 0..take {
        order.swap(j, rng.random_range(j..n));
        out.push(order[j]);
    }
}

/// The indices a [`Weighted::draw`] picked, in order (inline up to 32).
pub type Drawn = smallvec::SmallVec<[usize; 32]>;

/// One SRV record of a service answer, before its weight is scaled.
#[derive(Debug, Clone)]
pub struct SrvTarget {
    /// The instance's Nacos weight (above zero).
    pub weight: f64,
    /// The instance's port.
    pub port: u16,
    /// The target name in wire format: the host label followed by a pointer to the
    /// question name (offset 12), or a whole name for an instance registered by host
    /// name.
    pub target: Box<[u8]>,
    /// The address that goes in the additional section under the target name.
    pub address: Option<std::net::IpAddr>,
}

/// The part of an answer that is drawn per query.
#[derive(Debug, Clone)]
pub enum Sample {
    /// The body is `weights.len()` address records of `record_len` bytes each, every
    /// one owned by a pointer to the question name: a weighted sample of at most `max`
    /// of them is sent, as many as fit.
    Addresses {
        /// Bytes of one record.
        record_len: usize,
        /// The records' weights.
        weights: Weighted,
        /// `dns.max_answers`.
        max: usize,
    },
    /// SRV records built per query (the body is empty): a weighted sample of at most
    /// `max` targets, their weights scaled so that the largest is 65535 (RFC 2782
    /// weights are relative), each with its address in the additional section. When
    /// the addresses do not fit beside the records, they are left out, not the records
    /// (RFC 2181 §9).
    Srv {
        /// The targets.
        targets: Vec<SrvTarget>,
        /// Their weights.
        weights: Weighted,
        /// `dns.max_srv_answers`.
        max: usize,
        /// TTL of every record, seconds.
        ttl: u32,
    },
}

/// A response encoded once for one name and type, ready to be copied after any
/// client's question for that name.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Response code (4 bits).
    pub rcode: u8,
    /// Counts of the answer, authority and additional sections of `body`.
    pub counts: [u16; 3],
    /// The sections after the question.
    pub body: Vec<u8>,
    /// Present when the answer section is drawn per query.
    pub sample: Option<Sample>,
    /// The encoder had to drop records (the answer exceeds 65535 bytes): send TC.
    pub truncated: bool,
}

/// Per-query options of a response.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// Largest response allowed (512 for UDP without EDNS; the negotiated payload with
    /// it; 65535 for TCP).
    pub limit: usize,
    /// Whether to set RA (the client may use forwarding).
    pub recursion_available: bool,
    /// The server's EDNS payload size, written in the response's OPT record.
    pub server_payload: u16,
    /// When the answer used the query's Client Subnet option: the SCOPE
    /// PREFIX-LENGTH to send back in it (RFC 7871 §7.2.1). `None` leaves the option
    /// out of the response.
    pub client_subnet_scope: Option<u8>,
}

/// Length of the OPT record of the response to `query`: none without EDNS, else the
/// bare record plus the Client Subnet option when `reply` sends it back.
fn response_opt_len(query: &QueryView<'_>, reply: &Reply) -> usize {
    match query.edns {
        None => 0,
        Some(edns) => match (edns.client_subnet, reply.client_subnet_scope) {
            (Some(subnet), Some(_)) => OPT_LEN + 4 + subnet.data_len(),
            _ => OPT_LEN,
        },
    }
}

/// Writes the response to `query` from `prepared` into `out` (cleared first): the
/// client's id, flags and question, the pre-encoded sections (shuffled, and cut to
/// fit, when they may be), and an OPT record when the query had one. When the fixed
/// sections do not fit `limit`, the response is truncated (TC) with no records, so the
/// client retries over TCP (RFC 7766).
pub fn assemble(query: &QueryView<'_>, prepared: &Prepared, reply: Reply, out: &mut Vec<u8>) {
    out.clear();
    let mut flags: u16 = 0x8000 | 0x0400 | u16::from(prepared.rcode & 0xF);
    if query.rd {
        flags |= 0x0100;
    }
    if reply.recursion_available {
        flags |= 0x0080;
    }
    if query.cd {
        flags |= 0x0010;
    }
    out.extend_from_slice(&query.id.to_be_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(query.question());
    let opt_len = response_opt_len(query, &reply);
    let room = reply.limit.saturating_sub(out.len() + opt_len);
    let mut counts = prepared.counts;
    match &prepared.sample {
        Some(Sample::Addresses {
            record_len,
            weights,
            max,
        }) if *record_len > 0 => {
            let fit = (room / record_len).min(*max);
            let mut order = Drawn::new();
            weights.draw(fit, &mut order);
            for &i in &order {
                let at = i * record_len;
                if let Some(record) = prepared.body.get(at..at + record_len) {
                    out.extend_from_slice(record);
                }
            }
            counts[0] = order.len() as u16;
        }
        Some(Sample::Srv {
            targets,
            weights,
            max,
            ttl,
        }) => match write_srv(targets, weights, *max, *ttl, room, out) {
            Some(written) => counts = written,
            None => {
                flags |= 0x0200;
                counts = [0, 0, 0];
            }
        },
        _ => {
            if prepared.body.len() <= room {
                out.extend_from_slice(&prepared.body);
                if prepared.truncated {
                    flags |= 0x0200;
                }
            } else {
                flags |= 0x0200;
                counts = [0, 0, 0];
            }
        }
    }
    if let Some(edns) = query.edns {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&reply.server_payload.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(if edns.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        let rdlen = (opt_len - OPT_LEN) as u16;
        out.extend_from_slice(&rdlen.to_be_bytes());
        if let (Some(subnet), Some(scope)) = (edns.client_subnet, reply.client_subnet_scope) {
            // FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as the query sent them (the
            // parser checked they are there), with the scope this answer holds for
            // (RFC 7871 §7.2.1).
            let data = &query.packet[subnet.data_at..subnet.data_at + subnet.data_len()];
            out.extend_from_slice(&OPTION_CLIENT_SUBNET.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            let at = out.len();
            out.extend_from_slice(data);
            out[at + 3] = scope;
        }
        counts[2] += 1;
    }
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..8].copy_from_slice(&counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&counts[2].to_be_bytes());
}

/// Bytes of an SRV record whose target is `target`: owner pointer, type, class, TTL,
/// length, then priority, weight, port and the target.
fn srv_len(target: &SrvTarget) -> usize {
    2 + 2 + 2 + 4 + 2 + 6 + target.target.len()
}

/// Bytes of the address record of `target` in the additional section (owner is a
/// pointer to the SRV record's target name).
fn glue_len(target: &SrvTarget) -> usize {
    match target.address {
        Some(std::net::IpAddr::V4(_)) => 2 + 10 + 4,
        Some(std::net::IpAddr::V6(_)) => 2 + 10 + 16,
        None => 0,
    }
}

/// Appends a weighted sample of SRV records (see [`Sample::Srv`]) to `out` within
/// `room` bytes: as many as fit with their addresses, else as many as fit without.
/// Returns the section counts, or `None` when not even one record fits.
fn write_srv(
    targets: &[SrvTarget],
    weights: &Weighted,
    max: usize,
    ttl: u32,
    room: usize,
    out: &mut Vec<u8>,
) -> Option<[u16; 3]> {
    let mut order = Drawn::new();
    weights.draw(max, &mut order);
    let fitting = |with_glue: bool| {
        let mut used = 0;
        order
            .iter()
            .take_while(|&&i| {
                let t = &targets[i];
                used += srv_len(t) + if with_glue { glue_len(t) } else { 0 };
                used <= room
            })
            .count()
    };
    let (take, with_glue) = match fitting(true) {
        0 => (fitting(false), false),
        n => (n, true),
    };
    if take == 0 {
        return None;
    }
    let chosen = &order[..take];
    // Scale so that the heaviest record of this answer gets 65535 and no positive
    // weight becomes 0 (RFC 2782 weights are relative).
    let heaviest = chosen
        .iter()
        .map(|&i| targets[i].weight)
        .fold(f64::MIN_POSITIVE, f64::max);
    let mut glue: Vec<(usize, std::net::IpAddr)> = Vec::with_capacity(take);
    for &i in chosen {
        let t = &targets[i];
        let weight = (t.weight / heaviest * 65535.0).round().clamp(1.0, 65535.0) as u16;
        out.extend_from_slice(&[0xC0, 0x0C, 0, 33, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&((6 + t.target.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&t.port.to_be_bytes());
        let at = out.len();
        out.extend_from_slice(&t.target);
        if let Some(ip) = t.address
            && with_glue
            && !glue.iter().any(|(_, seen)| *seen == ip)
        {
            glue.push((at, ip));
        }
    }
    let mut glued = 0u16;
    for &(at, ip) in &glue {
        // Too far for a pointer (a long answer over TCP): nothing to point at.
        let Some(at) = u16::try_from(at).ok().filter(|&at| at < 0x4000) else {
            continue;
        };
        out.extend_from_slice(&(0xC000 | at).to_be_bytes());
        let (rtype, data): (u16, &[u8]) = match ip {
            std::net::IpAddr::V4(v4) => (1, &v4.octets()),
            std::net::IpAddr::V6(v6) => (28, &v6.octets()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        glued += 1;
    }
    Some([take as u16, 0, glued])
}

/// A minimal error response built from a request's header and question bytes: used
/// when the packet cannot be parsed far enough for hickory's error path (FORMERR) or to
/// REFUSE a client. `question` is the raw question section, empty when unknown.
pub fn error_response(request: &[u8], question: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if request.len() < HEADER_LEN {
        return None;
    }
    let flags = be16(request, 2)?;
    if flags & 0x8000 != 0 {
        // Never answer a response: that is how reflection loops start.
        return None;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + question.len());
    out.extend_from_slice(&request[0..2]);
    let opcode = flags & 0x7800;
    let rd = flags & 0x0100;
    let out_flags = 0x8000 | opcode | rd | u16::from(rcode & 0xF);
    out.extend_from_slice(&out_flags.to_be_bytes());
    let qd: u16 = if question.is_empty() { 0 } else { 1 };
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(question);
    Some(out)
}

/// The slipped answer of rate limiting: the request's header and question with QR and
/// TC set and nothing else, so the client retries over TCP. `None` for a response or a
/// packet without a readable header.
pub fn truncated_reply(request: &[u8]) -> Option<Vec<u8>> {
    let question = parse(request).map(|q| q.question()).unwrap_or(&[]);
    let mut out = error_response(request, question, 0)?;
    out[2] |= 0x02;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16, edns: bool) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn parses_and_folds_case() {
        let p = query(&["Stock", "DEFAULT_GROUP", "svc"], 1, true);
        let q = parse(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.qtype, 1);
        assert_eq!(
            q.edns,
            Some(EdnsView {
                payload: 4096,
                version: 0,
                dnssec_ok: true,
                client_subnet: None,
            })
        );
        let labels: Vec<&[u8]> = q.labels().collect();
        assert_eq!(labels, vec![&b"stock"[..], b"default_group", b"svc"]);
        assert_eq!(q.labels_below(b"\x03svc\x00"), Some(2));
        assert_eq!(q.labels_below(b"\x02vc\x00"), None);
        assert_eq!(q.labels_below(b"\x00"), Some(3));
    }

    #[test]
    fn refuses_odd_shapes_without_panicking() {
        let good = query(&["a", "svc"], 1, false);
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_none());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_none());
        let mut pointer = good.clone();
        pointer[12] = 0xC0;
        assert!(parse(&pointer).is_none());
    }

    #[test]
    fn random_options_never_break_the_parser_or_the_echo() {
        let mut rng = SmallRng::seed_from_u64(7);
        let base = query(&["a", "svc"], 1, true);
        for _ in 0..20_000 {
            let mut p = base.clone();
            let len = rng.random_range(0..40usize);
            let mut rdata: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) && rdata.len() >= 4 {
                // Often an ECS option header, so that its checks run.
                rdata[0..2].copy_from_slice(&OPTION_CLIENT_SUBNET.to_be_bytes());
            }
            let at = p.len() - 2;
            p[at..].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
            p.extend_from_slice(&rdata);
            if let Some(q) = parse(&p) {
                let mut out = Vec::new();
                let prepared = Prepared {
                    rcode: 0,
                    counts: [0; 3],
                    body: Vec::new(),
                    sample: None,
                    truncated: false,
                };
                let reply = Reply {
                    limit: 512,
                    recursion_available: false,
                    server_payload: 1232,
                    client_subnet_scope: Some(24),
                };
                assemble(&q, &prepared, reply, &mut out);
                assert!(out.len() >= HEADER_LEN);
            }
        }
    }

    #[test]
    fn client_subnet_options_are_checked() {
        let ok = parse_client_subnet(&[0, 1, 23, 0, 10, 1, 6], 40).unwrap();
        assert_eq!(ok.addr, "10.1.6.0".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(ok.source_prefix, 23);
        let zero = parse_client_subnet(&[0, 2, 0, 0], 40).unwrap();
        assert_eq!(zero.addr, "::".parse::<std::net::IpAddr>().unwrap());
        for bad in [
            &[0, 1, 23, 0, 10, 1, 7][..], // a bit past the prefix
            &[0, 1, 24, 0, 10, 1],        // too few address bytes
            &[0, 1, 16, 0, 10, 1, 0],     // too many
            &[0, 1, 33, 0, 10, 1, 0, 0, 0],
            &[0, 3, 8, 0, 10],
            &[0, 1],
        ] {
            assert!(parse_client_subnet(bad, 40).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn draws_are_distinct_and_the_first_follows_the_weights() {
        let shuffle = Weighted::new([1.0, 3.0]);
        let mut first = [0usize; 2];
        let mut order = Drawn::new();
        for _ in 0..4000 {
            shuffle.draw(2, &mut order);
            assert_eq!(order.len(), 2);
            assert_ne!(order[0], order[1]);
            first[order[0]] += 1;
        }
        let share = first[1] as f64 / 4000.0;
        assert!((0.70..0.80).contains(&share), "share {share}");
    }

    #[test]
    fn later_draws_follow_the_weights_left() {
        // Weights 1, 2, 7: after 7 is drawn first (p = 0.7), the second is 2 with
        // probability 2/3. Exact sequential sampling gives P(second = 2) =
        // 0.1·2/9 + 0.7·2/3 = 0.4889.
        let shuffle = Weighted::new([1.0, 2.0, 7.0]);
        let mut second_is_two = 0usize;
        let mut order = Drawn::new();
        const N: usize = 20_000;
        for _ in 0..N {
            shuffle.draw(3, &mut order);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted.as_slice(), [0, 1, 2]);
            second_is_two += usize::from(order[1] == 1);
        }
        let share = second_is_two as f64 / N as f64;
        assert!((share - 0.4889).abs() < 0.02, "share {share}");
    }

    #[test]
    fn equal_weights_draw_every_item_alike() {
        // Both the sparse (rejection) and the dense (shuffle) way.
        for (n, take) in [(10usize, 10usize), (10, 3), (2_000, 16)] {
            let shuffle = Weighted::new(vec![2.5; n]);
            assert!(shuffle.uniform);
            let mut first = vec![0usize; n];
            let mut order = Drawn::new();
            let rounds = 200 * n;
            for _ in 0..rounds {
                shuffle.draw(take, &mut order);
                assert_eq!(order.len(), take);
                let mut sorted = order.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), take, "distinct");
                first[order[0]] += 1;
            }
            // Each item comes first 200 times on average; within 5 standard
            // deviations of a binomial.
            let expected = 200.0;
            let sd = (rounds as f64 * (1.0 / n as f64) * (1.0 - 1.0 / n as f64)).sqrt();
            for (i, &count) in first.iter().enumerate() {
                assert!(
                    (count as f64 - expected).abs() < 5.0 * sd,
                    "n {n} item {i} first {count} times"
                );
            }
        }
        assert!(!Weighted::new([1.0, 1.0, 2.0]).uniform);
    }

    #[test]
    fn skewed_and_large_draws_stay_distinct() {
        let mut weights = vec![1e-6; 5_000];
        weights[4_321] = 1e6;
        weights[0] = 0.0;
        let shuffle = Weighted::new(weights);
        let mut order = Drawn::new();
        for _ in 0..200 {
            shuffle.draw(16, &mut order);
            assert_eq!(order.len(), 16);
            assert_eq!(order[0], 4_321);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 16);
        }
        shuffle.draw(6_000, &mut order);
        assert_eq!(order.len(), 5_000, "at most every record");
    }
}
