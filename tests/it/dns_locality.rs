//! `[dns.locality]`: answers from the client's Nacos cluster, placed by source address
//! or by EDNS Client Subnet (RFC 7871) from a trusted resolver.

use std::net::IpAddr;
use std::time::Duration;

use hickory_net::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_net::proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_net::proto::rr::{Name, RecordType};
use reqwest::Method;
use tokio::net::UdpSocket;

use crate::support::*;

/// A query for `name`, with EDNS and, when given, a Client Subnet option.
fn query_packet(name: &str, rtype: RecordType, subnet: Option<ClientSubnet>) -> Vec<u8> {
    let mut msg = Message::new(0x1C5, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(subnet) = subnet {
        edns.options_mut().insert(EdnsOption::Subnet(subnet));
    }
    msg.set_edns(edns);
    msg.to_vec().unwrap()
}

/// Sends `packet` over UDP from `source` (a loopback address) and returns the answer.
async fn exchange_from(source: &str, server: std::net::SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind((source.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).expect("valid response")
}

/// The Client Subnet option of a response, if any.
fn subnet_of(msg: &Message) -> Option<ClientSubnet> {
    match msg.edns.as_ref()?.options().get(EdnsCode::Subnet)? {
        EdnsOption::Subnet(subnet) => Some(*subnet),
        _ => None,
    }
}

/// The distinct addresses of `rtype` answers to `name` over 20 queries from `source`.
async fn seen_from(
    server: &TestServer,
    source: &str,
    name: &str,
    rtype: RecordType,
    subnet: Option<ClientSubnet>,
) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let answer = exchange_from(
            source,
            server.dns_addr(),
            &query_packet(name, rtype, subnet),
        )
        .await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        if rtype == RecordType::SRV {
            seen.extend(targets(&answer.answers));
        } else {
            seen.extend(addresses(&answer.answers));
        }
    }
    seen.into_iter().collect()
}

/// `[dns.locality]` from (network, cluster) pairs.
fn networks(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<ipnet::IpNet, String> {
    pairs
        .iter()
        .map(|(net, cluster)| (net.parse().unwrap(), cluster.to_string()))
        .collect()
}

#[tokio::test]
async fn locality_answers_from_the_clients_cluster_by_source_address() {
    let server = TestServer::start_with(|s| {
        s.dns.locality = networks(&[
            ("127.0.0.2/32", "hz"),
            ("127.0.0.3/32", "sh"),
            ("127.0.0.0/29", "bj"),
        ]);
    })
    .await;
    for (ip, cluster, healthy) in [
        ("10.20.1.1", "hz", "true"),
        ("10.20.1.2", "hz", "true"),
        ("10.20.2.1", "sh", "false"),
        ("10.20.3.1", "DEFAULT", "true"),
    ] {
        server
            .register(
                "pay",
                ip,
                80,
                &[("clusterName", cluster), ("healthy", healthy)],
            )
            .await;
    }
    let name = "pay.DEFAULT_GROUP.svc.";
    let everyone = vec!["10.20.1.1", "10.20.1.2", "10.20.3.1"];
    // hz's client gets hz's instances, by A, SRV and the RFC 2782 name.
    assert_eq!(
        seen_from(&server, "127.0.0.2", name, RecordType::A, None).await,
        vec!["10.20.1.1", "10.20.1.2"]
    );
    assert_eq!(
        seen_from(&server, "127.0.0.2", name, RecordType::SRV, None).await,
        vec![
            "10-20-1-1.pay.DEFAULT_GROUP.svc.",
            "10-20-1-2.pay.DEFAULT_GROUP.svc."
        ]
    );
    assert_eq!(
        seen_from(
            &server,
            "127.0.0.2",
            "_pay._tcp.DEFAULT_GROUP.svc.",
            RecordType::SRV,
            None
        )
        .await,
        vec![
            "10-20-1-1.pay.DEFAULT_GROUP.svc.",
            "10-20-1-2.pay.DEFAULT_GROUP.svc."
        ]
    );
    // sh has no healthy instance: its client gets every healthy one.
    assert_eq!(
        seen_from(&server, "127.0.0.3", name, RecordType::A, None).await,
        everyone
    );
    // bj (127.0.0.4 in 127.0.0.0/29) has no instance at all; 127.0.0.1 is in bj too,
    // and 127.0.0.9 in no network: all get every healthy instance.
    for source in ["127.0.0.4", "127.0.0.9"] {
        assert_eq!(
            seen_from(&server, source, name, RecordType::A, None).await,
            everyone,
            "{source}"
        );
    }
    // No Client Subnet option is sent back to a query placed by its source.
    let plain = exchange_from(
        "127.0.0.2",
        server.dns_addr(),
        &query_packet(name, RecordType::A, None),
    )
    .await;
    assert_eq!(subnet_of(&plain), None);

    // hz loses its instances: its client falls back to every healthy one at once
    // (the cached answer follows the service's revision).
    for ip in ["10.20.1.1", "10.20.1.2"] {
        let (status, body) = server
            .call(
                Method::DELETE,
                "/nacos/v1/ns/instance",
                &[
                    ("serviceName", "pay"),
                    ("ip", ip),
                    ("port", "80"),
                    ("clusterName", "hz"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        seen_from(&server, "127.0.0.2", name, RecordType::A, None).await,
        vec!["10.20.3.1"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn locality_uses_client_subnet_from_trusted_resolvers_with_its_scope() {
    let server = TestServer::start_with(|s| {
        s.dns.locality = networks(&[
            ("10.1.0.0/16", "hz"),
            ("10.2.0.0/16", "sh"),
            ("2001:db8:1::/48", "hz"),
        ]);
        s.dns.ecs_resolvers = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for (ip, cluster) in [
        ("10.21.1.1", "hz"),
        ("10.21.2.1", "sh"),
        ("10.21.2.2", "sh"),
        ("10.21.3.1", "DEFAULT"),
    ] {
        server
            .register("stock", ip, 80, &[("clusterName", cluster)])
            .await;
    }
    let name = "stock.DEFAULT_GROUP.svc.";
    let subnet = |s: &str| Some(s.parse::<ClientSubnet>().unwrap());
    // The A addresses seen by a query from the trusted resolver with `s` as its subnet.
    let via_resolver = |s: &str| seen_from(&server, "127.0.0.1", name, RecordType::A, subnet(s));
    let all = vec!["10.21.1.1", "10.21.2.1", "10.21.2.2", "10.21.3.1"];
    assert_eq!(via_resolver("10.1.7.0/24").await, vec!["10.21.1.1"]);
    assert_eq!(
        via_resolver("10.2.0.0/16").await,
        vec!["10.21.2.1", "10.21.2.2"]
    );
    assert_eq!(
        via_resolver("2001:db8:1:5::/64").await,
        vec!["10.21.1.1"],
        "an IPv6 client subnet places an A query too"
    );
    assert_eq!(via_resolver("192.0.2.0/24").await, all);
    // From a resolver that is not trusted, the option is ignored (placed by the
    // source, which is in no network) and not sent back.
    assert_eq!(
        seen_from(
            &server,
            "127.0.0.2",
            name,
            RecordType::A,
            subnet("10.1.7.0/24")
        )
        .await,
        all
    );
    let untrusted = exchange_from(
        "127.0.0.2",
        server.dns_addr(),
        &query_packet(name, RecordType::A, subnet("10.1.7.0/24")),
    )
    .await;
    assert_eq!(subnet_of(&untrusted), None);

    // The scope (RFC 7871 §7.2.1): the prefix that every address placed alike shares;
    // family, source prefix and address as sent.
    let ask = |name: &'static str, rtype, s: &'static str| {
        let server = server.dns_addr();
        async move { exchange_from("127.0.0.1", server, &query_packet(name, rtype, subnet(s))).await }
    };
    for (sent, scope) in [
        ("10.1.7.0/24", 16),
        ("10.2.0.0/16", 16),
        ("10.0.0.0/8", 16),
        ("192.0.2.0/24", 1),
    ] {
        // Twice: the first answer is built, the second comes from the cache.
        for _ in 0..2 {
            let answer = ask(name, RecordType::A, sent).await;
            let echoed = subnet_of(&answer).expect("client subnet sent back");
            let asked: ClientSubnet = sent.parse().unwrap();
            assert_eq!(echoed.addr(), asked.addr(), "{sent}");
            assert_eq!(echoed.source_prefix(), asked.source_prefix(), "{sent}");
            assert_eq!(echoed.scope_prefix(), scope, "{sent}");
        }
    }
    // A query in an odd shape (a record in its answer section) takes the general
    // path, which keeps the option: same placement, same scope.
    let mut odd =
        Message::from_vec(&query_packet(name, RecordType::A, subnet("10.1.7.0/24"))).unwrap();
    odd.answers.push(hickory_net::proto::rr::Record::from_rdata(
        Name::from_ascii(name).unwrap(),
        5,
        hickory_net::proto::rr::RData::A("192.0.2.1".parse().unwrap()),
    ));
    let answer = exchange_from("127.0.0.1", server.dns_addr(), &odd.to_vec().unwrap()).await;
    assert_eq!(addresses(&answer.answers), vec!["10.21.1.1"]);
    assert_eq!(subnet_of(&answer).map(|s| s.scope_prefix()), Some(16));
    // A name whose answer does not depend on the client holds for all: scope 0.
    let apex = ask("svc.", RecordType::SOA, "10.1.7.0/24").await;
    assert_eq!(subnet_of(&apex).map(|s| s.scope_prefix()), Some(0));
    // SOURCE PREFIX-LENGTH 0: no client address to use; scope 0 (RFC 7871 §7.1.2).
    let zero = ask(name, RecordType::A, "0.0.0.0/0").await;
    assert_eq!(subnet_of(&zero).map(|s| s.scope_prefix()), Some(0));

    // A malformed option (bits set past the source prefix) gets FORMERR.
    let mut bad = query_packet(name, RecordType::A, subnet("10.1.6.0/23"));
    let at = bad.len() - 1;
    bad[at] |= 0x01;
    let answer = exchange_from("127.0.0.1", server.dns_addr(), &bad).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::FormErr);
    server.shutdown().await;
}

#[tokio::test]
async fn locality_settings_parse_from_toml() {
    let settings = nacre::settings::Settings::from_toml(
        r#"
        [dns]
        ecs_resolvers = ["127.0.0.1/32"]
        [dns.locality]
        "10.1.0.0/16" = "hz"
        "fd00::/8" = "sh"
        "#,
    )
    .expect("valid settings");
    assert_eq!(settings.dns.locality.len(), 2);
    assert_eq!(
        settings
            .dns
            .locality
            .get(&"10.1.0.0/16".parse().unwrap())
            .map(String::as_str),
        Some("hz")
    );
    assert!(
        nacre::settings::Settings::from_toml("[dns.locality]\n\"10.1.0.0/16\" = \"\"\n").is_err(),
        "an empty cluster name is refused"
    );
}
