//! DNS under abuse: a flood of malformed packets over UDP and TCP against the real
//! binary (canaries answered, memory flat), response rate limiting, and forwarding from
//! random source ports with random ids.

use std::collections::HashSet;
use std::time::Duration;

use hickory_net::proto::op::Message;
use hickory_net::proto::rr::RecordType;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::binary::spawn_nacre;
use crate::dns::{exchange_udp, raw_query};
use crate::support::*;

const CANARY: &str = "canary.DEFAULT_GROUP.svc.";

/// A malformed (or odd) DNS message, of one of several shapes, from `rng`.
fn garbage(rng: &mut impl Rng, valid: &[u8]) -> Vec<u8> {
    let mut p = match rng.random_range(0..8) {
        // Random bytes of any length.
        0 => (0..rng.random_range(0..600))
            .map(|_| rng.random())
            .collect(),
        // A valid query cut anywhere.
        1 => valid[..rng.random_range(0..valid.len())].to_vec(),
        // A valid query with bytes flipped.
        2 => {
            let mut v = valid.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..v.len());
                v[i] ^= rng.random::<u8>() | 1;
            }
            v
        }
        // A header that promises 65535 questions and more.
        3 => {
            let mut v = valid[..12].to_vec();
            v[4..12].copy_from_slice(&[0xff; 8]);
            v.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
            v
        }
        // A name that points at itself.
        4 => {
            let mut v = valid[..12].to_vec();
            v.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
            v
        }
        // Labels past 255 bytes.
        5 => {
            let mut v = valid[..12].to_vec();
            for _ in 0..6 {
                v.push(63);
                v.extend(std::iter::repeat_n(b'a', 63));
            }
            v.extend_from_slice(&[0, 0, 1, 0, 1]);
            v
        }
        // A response (QR set): must never be answered.
        6 => {
            let mut v = valid.to_vec();
            v[2] |= 0x80;
            v
        }
        // An OPT record whose length runs past the end.
        _ => {
            let mut v = valid.to_vec();
            v[11] = 1;
            v.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2]);
            v
        }
    };
    if p.len() > 4096 {
        p.truncate(4096);
    }
    p
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

async fn canary_udp(addr: std::net::SocketAddr) {
    let a = exchange_udp(addr, &raw_query(CANARY, RecordType::A, None)).await;
    assert_eq!(addresses(&a.answers), vec!["10.9.9.9"], "canary over UDP");
}

async fn canary_tcp(addr: std::net::SocketAddr) {
    let mut client = tcp_client(addr).await;
    let a = query(&mut client, CANARY, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.9.9.9"], "canary over TCP");
}

/// Sends `frames` over one TCP connection, then reads whatever comes back until the
/// server closes or goes quiet; returns how many bytes came back.
async fn tcp_garbage(addr: std::net::SocketAddr, frames: Vec<Vec<u8>>, cut_last: bool) -> usize {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return 0;
    };
    let mut bytes = Vec::new();
    for f in &frames {
        bytes.extend_from_slice(&(f.len() as u16).to_be_bytes());
        bytes.extend_from_slice(f);
    }
    if cut_last {
        // A frame that announces more than it carries.
        bytes.extend_from_slice(&[0x01, 0x00, 0xde, 0xad]);
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 16384];
    let mut answered = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut sink)).await
    {
        if n == 0 {
            break;
        }
        answered += n;
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_packets_leaves_the_server_answering_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, http, dns) = spawn_nacre(&data, &[]);
    let base = format!("http://{http}");
    let client = admin_client(&base, &data).await;
    let resp = client
        .request(Method::POST, format!("{base}/nacos/v1/ns/instance"))
        .query(&[
            ("serviceName", "canary"),
            ("ip", "10.9.9.9"),
            ("port", "53"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let valid = raw_query(CANARY, RecordType::A, Some(1232));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let mut rss_warm = 0;
    // UDP: 100,000 packets in batches of 1,000, a canary after each batch.
    for batch in 0..100 {
        for _ in 0..1000 {
            let _ = socket.send_to(&garbage(&mut rng, &valid), dns).await;
        }
        canary_udp(dns).await;
        if batch == 9 {
            rss_warm = rss_kib(child.id());
        }
    }
    // TCP: 100,000 frames on 1,000 connections, 20 at a time, a canary every 100.
    let mut answered = 0;
    for round in 0..50 {
        let mut tasks = Vec::new();
        for c in 0..20 {
            let frames: Vec<Vec<u8>> = (0..100).map(|_| garbage(&mut rng, &valid)).collect();
            tasks.push(tokio::spawn(tcp_garbage(dns, frames, c % 4 == 0)));
        }
        for t in tasks {
            answered += t.await.unwrap();
        }
        if round % 5 == 4 {
            canary_tcp(dns).await;
            canary_udp(dns).await;
        }
    }
    assert!(
        answered > 100_000,
        "the server read the frames and answered (FORMERR) many: {answered} bytes"
    );
    let rss_end = rss_kib(child.id());
    eprintln!("server RSS after 10k UDP packets {rss_warm} KiB, at the end {rss_end} KiB");
    assert!(
        rss_end < rss_warm + 16 * 1024,
        "memory stays flat: {rss_warm} KiB after 10k packets, {rss_end} KiB after 200k"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn rate_limiting_drops_and_slips_udp_answers_of_one_prefix_only() {
    let server = TestServer::start_with(|s| {
        s.dns.rrl.enabled = true;
        s.dns.rrl.responses_per_second = 5;
        s.dns.rrl.slip = 2;
    })
    .await;
    server.register("canary", "10.9.9.9", 53, &[]).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = raw_query(CANARY, RecordType::A, None);
    for _ in 0..40 {
        socket.send_to(&packet, server.dns_addr()).await.unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
    {
        let msg = Message::from_vec(&buf[..n]).unwrap();
        if msg.metadata.truncation {
            assert!(msg.answers.is_empty());
            truncated += 1;
        } else {
            full += 1;
        }
    }
    assert!((5..=8).contains(&full), "about 5 full answers, got {full}");
    assert!(
        truncated >= 10,
        "every other limited answer slips as TC: {truncated}"
    );
    assert!(full + truncated < 40, "the rest are dropped");
    // TCP is not limited.
    let mut tcp = tcp_client(server.dns_addr()).await;
    for _ in 0..20 {
        let a = query(&mut tcp, CANARY, RecordType::A).await;
        assert_eq!(addresses(&a.answers), vec!["10.9.9.9"]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn forwarded_queries_leave_from_random_ports_with_random_ids() {
    // An upstream that records where each query came from and answers NXDOMAIN.
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = upstream.recv_from(&mut buf).await {
            let req = &buf[..n];
            record
                .lock()
                .push((from.port(), u16::from_be_bytes([req[0], req[1]])));
            let question = nacre::dns::wire::parse(req)
                .map(|q| q.question().to_vec())
                .unwrap_or_default();
            if let Some(resp) = nacre::dns::wire::error_response(req, &question, 3) {
                let _ = upstream.send_to(&resp, from).await;
            }
        }
    });
    let server = TestServer::start_with(|s| s.dns.forwarders = vec![upstream_addr]).await;
    for i in 0..8 {
        let name = format!("host{i}.example.org.");
        exchange_udp(server.dns_addr(), &raw_query(&name, RecordType::A, None)).await;
    }
    let seen = seen.lock().clone();
    assert!(seen.len() >= 8, "{seen:?}");
    let ports: HashSet<u16> = seen.iter().map(|(p, _)| *p).collect();
    let ids: HashSet<u16> = seen.iter().map(|(_, id)| *id).collect();
    assert!(ports.len() >= 6, "source ports vary: {seen:?}");
    assert!(ids.len() >= 7, "query ids vary: {seen:?}");
    task.abort();
    server.shutdown().await;
}

/// An upstream that answers every query with `answer` (given the query) until aborted.
fn fake_upstream(
    socket: UdpSocket,
    answer: impl Fn(&Message) -> Option<Message> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = answer(&query).and_then(|m| m.to_vec().ok()) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    })
}

#[tokio::test]
async fn forwarded_answers_keep_only_the_records_of_the_name_asked() {
    use hickory_net::proto::op::{MessageType, OpCode};
    use hickory_net::proto::rr::rdata::{A, CNAME, NS};
    use hickory_net::proto::rr::{Name, RData, Record};
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    // The repro: an answer for poison.example.org that also carries victim.test.
    let task = fake_upstream(upstream, |query| {
        let qname = query.queries.first()?.name().clone();
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_queries(query.queries.clone());
        let alias = name("alias.example.org.");
        reply.add_answers([
            Record::from_rdata(qname, 60, RData::CNAME(CNAME(alias.clone()))),
            Record::from_rdata(alias, 60, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name("victim.test."), 60, RData::A(A::new(6, 6, 6, 6))),
        ]);
        reply.add_authorities([Record::from_rdata(
            name("victim.test."),
            60,
            RData::NS(NS(name("ns.evil."))),
        )]);
        reply.add_additionals([Record::from_rdata(
            name("ns.evil."),
            60,
            RData::A(A::new(6, 6, 6, 7)),
        )]);
        Some(reply)
    });
    let server = TestServer::start_with(|s| s.dns.forwarders = vec![upstream_addr]).await;
    let reply = exchange_udp(
        server.dns_addr(),
        &raw_query("poison.example.org.", RecordType::A, None),
    )
    .await;
    let owners: Vec<(String, RecordType)> = reply
        .answers
        .iter()
        .map(|r| (r.name.to_ascii(), r.record_type()))
        .collect();
    assert_eq!(
        owners,
        vec![
            ("poison.example.org.".to_string(), RecordType::CNAME),
            ("alias.example.org.".to_string(), RecordType::A),
        ]
    );
    assert!(reply.authorities.is_empty(), "{:?}", reply.authorities);
    assert!(reply.additionals.is_empty(), "{:?}", reply.additionals);
    task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn forwarding_answers_servfail_before_a_stub_gives_up() {
    // One forwarder that never answers, one that refuses everything.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let refusing = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let refusing_addr = refusing.local_addr().unwrap();
    let task = fake_upstream(refusing, |query| {
        let mut reply = Message::error_msg(
            query.metadata.id,
            query.metadata.op_code,
            hickory_net::proto::op::ResponseCode::Refused,
        );
        reply.add_queries(query.queries.clone());
        Some(reply)
    });
    for forwarders in [
        vec![silent_addr],
        vec![refusing_addr],
        vec![refusing_addr, silent_addr],
    ] {
        let server = TestServer::start_with(|s| s.dns.forwarders = forwarders.clone()).await;
        let started = std::time::Instant::now();
        let reply = exchange_udp(
            server.dns_addr(),
            &raw_query("nowhere.example.org.", RecordType::A, None),
        )
        .await;
        // glibc's stub waits 5 s for an answer; the default bound is 2.5 s.
        assert!(
            started.elapsed() < Duration::from_millis(4500),
            "{forwarders:?}: {:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                reply.metadata.response_code,
                hickory_net::proto::op::ResponseCode::ServFail
                    | hickory_net::proto::op::ResponseCode::Refused
            ),
            "{forwarders:?}: {:?}",
            reply.metadata.response_code
        );
        server.shutdown().await;
    }
    drop(silent);
    task.abort();
}
