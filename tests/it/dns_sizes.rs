//! Weighted address answers at every service size, over real UDP and TCP: a weighted
//! random sample of at most `dns.max_answers` addresses that fits the client's limit
//! without TC, on the fast path, over TCP and on the general path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use hickory_net::proto::op::Message;
use hickory_net::proto::rr::{RData, RecordType};
use rand::{Rng, SeedableRng};

use crate::dns::{exchange_udp, raw_query};
use crate::support::*;

/// The addresses of the answer section (A and AAAA), in order.
fn answered(msg: &Message) -> Vec<String> {
    addresses(&msg.answers)
}

/// Sends `packet` over TCP (RFC 7766 framing) and parses the answer.
async fn exchange_tcp(addr: SocketAddr, packet: &[u8]) -> Message {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).expect("valid response")
}

/// Checks one answer: no TC, distinct addresses, only eligible ones, as many as
/// expected.
fn check(path: &str, size: usize, msg: &Message, eligible: &HashSet<String>, expected: usize) {
    assert!(!msg.metadata.truncation, "{path} at {size}: TC set");
    let got = answered(msg);
    let distinct: HashSet<&String> = got.iter().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "{path} at {size}: repeats {got:?}"
    );
    for ip in &got {
        assert!(
            eligible.contains(ip),
            "{path} at {size}: {ip} is not healthy, enabled and weighted"
        );
    }
    assert_eq!(got.len(), expected, "{path} at {size}: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_answers_are_capped_weighted_samples_at_every_size() {
    let server = TestServer::start().await;
    let dns = server.dns_addr();
    let name = "sized.DEFAULT_GROUP.svc.";
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut eligible = HashSet::new();
    let mut registered = 0usize;
    for size in [1usize, 2, 16, 17, 127, 128, 300, 1000, 2000] {
        while registered < size {
            let ip = format!("10.6.{}.{}", registered / 250, registered % 250 + 1);
            let weight = match rng.random_range(0..20) {
                0 => 0.0,
                _ => (rng.random_range(1..=10_000) as f64) / 100.0,
            };
            let healthy = rng.random_range(0..10) != 0;
            let enabled = rng.random_range(0..10) != 0;
            let (weight_s, healthy_s, enabled_s) =
                (weight.to_string(), healthy.to_string(), enabled.to_string());
            server
                .register(
                    "sized",
                    &ip,
                    80,
                    &[
                        ("weight", weight_s.as_str()),
                        ("healthy", healthy_s.as_str()),
                        ("enabled", enabled_s.as_str()),
                    ],
                )
                .await;
            if healthy && enabled && weight > 0.0 {
                eligible.insert(ip);
            }
            registered += 1;
        }
        let expected = eligible.len().min(16);
        let plain = raw_query(name, RecordType::A, None);
        let fast = exchange_udp(dns, &plain).await;
        check("udp", size, &fast, &eligible, expected);
        let edns = exchange_udp(dns, &raw_query(name, RecordType::A, Some(4096))).await;
        check("udp+edns", size, &edns, &eligible, expected);
        check(
            "tcp",
            size,
            &exchange_tcp(dns, &plain).await,
            &eligible,
            expected,
        );
        // A byte after the question sends the query down the general path.
        let mut odd = plain.clone();
        odd.push(0);
        let general = exchange_udp(dns, &odd).await;
        check("general", size, &general, &eligible, expected);
        // SRV: a sample that fits 512 bytes with its addresses, eligible targets only.
        let srv = exchange_udp(dns, &raw_query(name, RecordType::SRV, None)).await;
        assert!(!srv.metadata.truncation, "srv at {size}: TC set");
        let targets = targets(&srv.answers);
        assert!(targets.len() <= 16, "srv at {size}: {}", targets.len());
        assert_eq!(targets.len() >= 8, eligible.len() >= 8, "srv at {size}");
        for t in &targets {
            let ip = t.split('.').next().unwrap_or("").replace('-', ".");
            assert!(eligible.contains(&ip), "srv at {size}: {t}");
        }
        let glue = srv
            .additionals
            .iter()
            .filter(|r| r.record_type() == RecordType::A);
        assert_eq!(glue.count(), targets.len(), "srv at {size}: addresses");
        if eligible.len() > 16 {
            // A new sample per query, not one fixed order.
            let again = exchange_udp(dns, &plain).await;
            assert_ne!(answered(&fast), answered(&again), "at {size}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_1000_instances_the_first_address_follows_the_weights() {
    let server = TestServer::start().await;
    // 250 instances each of weights 1, 2, 4 and 8.
    let weights = [1.0, 2.0, 4.0, 8.0];
    let mut weight_of = HashMap::new();
    for i in 0..1000usize {
        let ip = format!("10.7.{}.{}", i / 250, i % 250 + 1);
        let w = weights[i % 4];
        server
            .register("spread", &ip, 80, &[("weight", &w.to_string())])
            .await;
        weight_of.insert(ip, w);
    }
    let packet = raw_query("spread.DEFAULT_GROUP.svc.", RecordType::A, None);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut first_by_weight: HashMap<u64, usize> = HashMap::new();
    let mut firsts = HashSet::new();
    const N: usize = 5000;
    let mut buf = vec![0u8; 4096];
    for _ in 0..N {
        socket.send_to(&packet, server.dns_addr()).await.unwrap();
        let (n, _) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            socket.recv_from(&mut buf),
        )
        .await
        .expect("answer within 5 s")
        .unwrap();
        let msg = Message::from_vec(&buf[..n]).unwrap();
        let got = answered(&msg);
        assert_eq!(got.len(), 16);
        *first_by_weight
            .entry(weight_of[&got[0]] as u64)
            .or_default() += 1;
        firsts.insert(got[0].clone());
    }
    let total: f64 = weights.iter().map(|w| w * 250.0).sum();
    for w in weights {
        let share = first_by_weight.get(&(w as u64)).copied().unwrap_or(0) as f64 / N as f64;
        let expected = w * 250.0 / total;
        assert!(
            (share - expected).abs() < 0.03,
            "weight {w}: first in {share:.3} of answers, expected {expected:.3}"
        );
    }
    assert!(
        firsts.len() > 500,
        "the first address spreads over the service: {} distinct",
        firsts.len()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_edns_gets_a_full_512_byte_answer() {
    let server = TestServer::start_with(|s| s.dns.max_answers = 100).await;
    for i in 0..60u16 {
        server
            .register("wide", &format!("10.8.0.{}", i + 1), 80, &[])
            .await;
        server
            .register("wide", &format!("fd00::8:{:x}", i + 1), 80, &[])
            .await;
    }
    let name = "wide.DEFAULT_GROUP.svc.";
    // Header 12 + question (name 24 + 4) = 40 bytes; 16-byte A and 28-byte AAAA records.
    for (rtype, record_len) in [(RecordType::A, 16usize), (RecordType::AAAA, 28)] {
        let packet = raw_query(name, rtype, None);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&packet, server.dns_addr()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).await.unwrap();
        assert!(n <= 512, "{rtype}: {n} bytes");
        let msg = Message::from_vec(&buf[..n]).unwrap();
        assert!(
            !msg.metadata.truncation,
            "{rtype}: no TC when a subset fits"
        );
        let fit = (512 - 40) / record_len;
        assert_eq!(answered(&msg).len(), fit, "{rtype}: as many as fit");
        assert!(n + record_len > 512, "{rtype}: {n} bytes is full");
    }
    server.shutdown().await;
}

/// SRV (port, weight) pairs of an answer over TCP.
async fn srv_weights(server: &TestServer, name: &str) -> Vec<(u16, u16)> {
    let msg = exchange_tcp(server.dns_addr(), &raw_query(name, RecordType::SRV, None)).await;
    let mut out: Vec<(u16, u16)> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.weight)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn srv_weights_keep_the_nacos_ratios_at_any_scale() {
    let server = TestServer::start().await;
    let weights = [0.01, 1.0, 2.5, 10000.0];
    for (i, w) in weights.iter().enumerate() {
        let ip = format!("10.9.0.{}", i + 1);
        let port = 9000 + i as u16;
        server
            .register("ratios", &ip, port, &[("weight", &w.to_string())])
            .await;
        if *w < 100.0 {
            server
                .register("small", &ip, port, &[("weight", &w.to_string())])
                .await;
        }
    }
    // 0.01 : 1 : 2.5 all hold within 1 % (they came out as 1 : 100 : 250).
    let small = srv_weights(&server, "small.DEFAULT_GROUP.svc.").await;
    assert_eq!(small.len(), 3);
    assert_eq!(small[2].1, 65535, "the heaviest gets the full range");
    for (a, wa) in small.iter().zip(weights) {
        for (b, wb) in small.iter().zip(weights) {
            let (got, want) = (f64::from(a.1) / f64::from(b.1), wa / wb);
            assert!(
                (got / want - 1.0).abs() < 0.01,
                "{wa} : {wb} came out as {} : {}",
                a.1,
                b.1
            );
        }
    }
    // With 10000 beside them, each record's share of the total weight holds within
    // 1 % and no positive weight becomes 0 (it was 65535 : 100, 655 : 1).
    let all = srv_weights(&server, "ratios.DEFAULT_GROUP.svc.").await;
    assert_eq!(all.len(), 4);
    let total: f64 = all.iter().map(|(_, w)| f64::from(*w)).sum();
    let nacos: f64 = weights.iter().sum();
    for ((_, got), want) in all.iter().zip(weights) {
        assert!(*got >= 1, "{want} became 0");
        assert!(
            (f64::from(*got) / total - want / nacos).abs() < 0.01,
            "{want}: share {}",
            f64::from(*got) / total
        );
    }
    assert_eq!(all[3].1, 65535);
    server.shutdown().await;
}

#[tokio::test]
async fn other_classes_are_refused_with_the_question_as_sent() {
    let server = TestServer::start().await;
    server.register("stock", "10.0.0.1", 80, &[]).await;
    let mut packet = raw_query("Stock.DEFAULT_GROUP.svc.", RecordType::A, None);
    // The class is the question's last two bytes: CH (3).
    let n = packet.len();
    packet[n - 2..].copy_from_slice(&3u16.to_be_bytes());
    let reply = exchange_udp(server.dns_addr(), &packet).await;
    assert_eq!(
        reply.metadata.response_code,
        hickory_net::proto::op::ResponseCode::Refused
    );
    assert!(reply.answers.is_empty(), "no IN data for a CH query");
    let question = &reply.queries[0];
    assert_eq!(question.name().to_ascii(), "Stock.DEFAULT_GROUP.svc.");
    assert_eq!(question.query_class(), hickory_net::proto::rr::DNSClass::CH);
    server.shutdown().await;
}

#[tokio::test]
async fn ipv4_mapped_instances_answer_a_and_srv() {
    let server = TestServer::start().await;
    server
        .register("mapped", "::ffff:10.0.0.5", 8080, &[])
        .await;
    let name = "mapped.DEFAULT_GROUP.svc.";
    let a = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::A, None)).await;
    assert_eq!(answered(&a), vec!["10.0.0.5"]);
    let srv = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::SRV, None)).await;
    assert_eq!(
        targets(&srv.answers),
        vec!["10-0-0-5.mapped.DEFAULT_GROUP.svc."]
    );
    let mut glue = srv.clone();
    glue.answers = srv.additionals.clone();
    assert_eq!(answered(&glue), vec!["10.0.0.5"]);
    let host = exchange_udp(
        server.dns_addr(),
        &raw_query("10-0-0-5.mapped.DEFAULT_GROUP.svc.", RecordType::A, None),
    )
    .await;
    assert_eq!(answered(&host), vec!["10.0.0.5"]);
    server.shutdown().await;
}

#[tokio::test]
async fn any_is_answered_minimally() {
    let server = TestServer::start().await;
    for i in 1..=40u8 {
        server
            .register("many", &format!("10.10.0.{i}"), 80, &[])
            .await;
    }
    server.register("many", "fd00::10", 80, &[]).await;
    server.register("six", "fd00::11", 80, &[]).await;
    // The repro: 40 instances made a 695-byte answer to a 55-byte query.
    let packet = raw_query("many.DEFAULT_GROUP.svc.", RecordType::ANY, Some(4096));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&packet, server.dns_addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).await.unwrap();
    let msg = Message::from_vec(&buf[..n]).unwrap();
    assert!(
        msg.answers.iter().all(|r| r.record_type() == RecordType::A),
        "one RRset"
    );
    assert_eq!(msg.answers.len(), 16, "capped at dns.max_answers");
    assert!(n <= 16 * 16 + packet.len() + 11, "{n} bytes");
    // A service with IPv6 addresses only answers its AAAA RRset.
    let six = exchange_udp(
        server.dns_addr(),
        &raw_query("six.DEFAULT_GROUP.svc.", RecordType::ANY, None),
    )
    .await;
    assert_eq!(answered(&six), vec!["fd00::11"]);
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_and_port_in_two_clusters_is_one_srv_record() {
    let server = TestServer::start().await;
    // The repro: the same ip:port registered in two clusters gave two SRV records.
    server
        .register("twice", "10.13.0.1", 8080, &[("clusterName", "A")])
        .await;
    server
        .register("twice", "10.13.0.1", 8080, &[("clusterName", "B")])
        .await;
    let srv = exchange_udp(
        server.dns_addr(),
        &raw_query("twice.DEFAULT_GROUP.svc.", RecordType::SRV, None),
    )
    .await;
    assert_eq!(srv.answers.len(), 1, "{:?}", srv.answers);
    server.shutdown().await;
}

/// How many UDP sockets of this machine are bound to local port `port` (from
/// /proc/net/udp; IPv4).
fn udp_sockets_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&wanted))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_is_served_by_one_socket_per_worker() {
    let server = TestServer::start_with(|s| s.dns.udp_workers = 4).await;
    server.register("spread", "10.16.0.1", 80, &[]).await;
    let dns = server.dns_addr();
    assert_eq!(udp_sockets_on(dns.port()), 4, "four sockets share the port");
    // Clients on many source ports (spread by the kernel over the sockets) all get
    // their answer.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        tasks.push(tokio::spawn(async move {
            let reply = exchange_udp(
                dns,
                &raw_query("spread.DEFAULT_GROUP.svc.", RecordType::A, None),
            )
            .await;
            answered(&reply)
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec!["10.16.0.1"]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_queries_on_one_socket_is_answered_query_by_query() {
    // One worker takes queued queries in batches (recvmmsg) and sends their answers
    // together (sendmmsg): every query of a burst gets its own answer, fast-path and
    // general-path ones alike, to the port it came from.
    let server = TestServer::start_with(|s| s.dns.udp_workers = 1).await;
    server.register("burst", "10.17.0.1", 80, &[]).await;
    let dns = server.dns_addr();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    const N: u16 = 300;
    // Bursts of 50, each read back before the next, so that the client's own receive
    // buffer holds every answer.
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 4096];
    for burst in 0..N / 50 {
        for id in burst * 50..(burst + 1) * 50 {
            let mut packet = raw_query("burst.DEFAULT_GROUP.svc.", RecordType::A, None);
            packet[0..2].copy_from_slice(&id.to_be_bytes());
            if id % 10 == 0 {
                packet = odd_query(id);
            }
            socket.send_to(&packet, dns).await.unwrap();
        }
        while seen.len() < usize::from((burst + 1) * 50) {
            let Ok(Ok((n, _))) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.recv_from(&mut buf),
            )
            .await
            else {
                break;
            };
            let reply = Message::from_vec(&buf[..n]).expect("valid response");
            assert_eq!(
                answered(&reply),
                vec!["10.17.0.1"],
                "id {}",
                reply.metadata.id
            );
            assert!(seen.insert(reply.metadata.id), "one answer per query");
        }
    }
    // The socket's receive buffer may drop part of a burst on a busy machine; almost
    // all must come back, each once.
    assert!(
        seen.len() >= usize::from(N) * 9 / 10,
        "{} of {N}",
        seen.len()
    );
    server.shutdown().await;
}

/// A query for `burst.DEFAULT_GROUP.svc` A in a shape the fast path declines and
/// hickory accepts: an additional record that is not OPT.
fn odd_query(id: u16) -> Vec<u8> {
    let mut packet = raw_query("burst.DEFAULT_GROUP.svc.", RecordType::A, None);
    packet[0..2].copy_from_slice(&id.to_be_bytes());
    packet[11] = 1;
    // An additional A record owned by the root: not OPT, so the general path.
    packet.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 1]);
    packet
}

#[tokio::test]
async fn a_workers_cached_answer_follows_every_change() {
    // One worker: its own map of answers serves the second query; a registration, a
    // weight change, a deregistration and the service's removal each show at once.
    let server = TestServer::start_with(|s| s.dns.udp_workers = 1).await;
    let dns = server.dns_addr();
    let ask = || async move {
        let reply = exchange_udp(
            dns,
            &raw_query("follow.DEFAULT_GROUP.svc.", RecordType::A, None),
        )
        .await;
        (reply.metadata.response_code, sorted(answered(&reply)))
    };
    server.register("follow", "10.18.0.1", 80, &[]).await;
    for _ in 0..3 {
        assert_eq!(ask().await.1, vec!["10.18.0.1"]);
    }
    server.register("follow", "10.18.0.2", 80, &[]).await;
    assert_eq!(ask().await.1, vec!["10.18.0.1", "10.18.0.2"]);
    server
        .register("follow", "10.18.0.2", 80, &[("weight", "0")])
        .await;
    assert_eq!(ask().await.1, vec!["10.18.0.1"]);
    for ip in ["10.18.0.1", "10.18.0.2"] {
        let (status, _) = server
            .call(
                reqwest::Method::DELETE,
                "/nacos/v1/ns/instance",
                &[("serviceName", "follow"), ("ip", ip), ("port", "80")],
            )
            .await;
        assert_eq!(status, 200);
    }
    let (rcode, addresses) = ask().await;
    assert!(addresses.is_empty());
    assert_eq!(
        rcode,
        hickory_net::proto::op::ResponseCode::NoError,
        "NODATA while the service stays"
    );
    let (status, body) = server
        .call(
            reqwest::Method::DELETE,
            "/nacos/v1/ns/service",
            &[("serviceName", "follow")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ask().await.0,
        hickory_net::proto::op::ResponseCode::NXDomain
    );
    server.shutdown().await;
}
