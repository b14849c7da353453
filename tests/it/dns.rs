//! DNS answers over real UDP and TCP, from instances registered over real HTTP.

use std::collections::HashMap;
use std::time::Duration;

use hickory_net::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_net::proto::rr::{Name, RData, RecordType};
use rand::Rng;
use reqwest::Method;
use tokio::net::UdpSocket;

use crate::support::*;

const STOCK: &str = "stock.DEFAULT_GROUP.svc.";

#[tokio::test]
async fn a_and_srv_answer_only_healthy_enabled_weighted_instances() {
    let server = TestServer::start().await;
    server.register("stock", "10.0.0.1", 8080, &[]).await;
    server
        .register("stock", "10.0.0.2", 8081, &[("weight", "2")])
        .await;
    server
        .register("stock", "10.0.0.3", 8082, &[("enabled", "false")])
        .await;
    server
        .register("stock", "10.0.0.4", 8083, &[("weight", "0")])
        .await;
    server.register("stock", "fd00::5", 8084, &[]).await;

    for mut client in [
        udp_client(server.dns_addr()).await,
        tcp_client(server.dns_addr()).await,
    ] {
        let a = query(&mut client, STOCK, RecordType::A).await;
        assert!(a.metadata.authoritative);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(sorted(addresses(&a.answers)), vec!["10.0.0.1", "10.0.0.2"]);
        assert!(a.answers.iter().all(|r| r.ttl == 5));

        let aaaa = query(&mut client, STOCK, RecordType::AAAA).await;
        assert_eq!(addresses(&aaaa.answers), vec!["fd00::5"]);

        let srv = query(&mut client, STOCK, RecordType::SRV).await;
        let mut targets: Vec<(u16, u16, String)> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.port, s.weight, s.target.to_ascii())),
                _ => None,
            })
            .collect();
        targets.sort();
        // Weights scaled so that the heaviest is 65535; targets below the name asked.
        assert_eq!(
            targets,
            vec![
                (8080, 32768, "10-0-0-1.stock.DEFAULT_GROUP.svc.".to_string()),
                (8081, 65535, "10-0-0-2.stock.DEFAULT_GROUP.svc.".to_string()),
                (8084, 32768, "fd00--5.stock.DEFAULT_GROUP.svc.".to_string()),
            ]
        );
        assert_eq!(
            sorted(addresses(&srv.additionals)),
            vec!["10.0.0.1", "10.0.0.2", "fd00::5"]
        );
        // The SRV target resolves to the instance.
        let host = query(
            &mut client,
            "10-0-0-2.stock.DEFAULT_GROUP.svc.",
            RecordType::A,
        )
        .await;
        assert_eq!(addresses(&host.answers), vec!["10.0.0.2"]);
    }

    // Disabling an instance and setting a weight to 0 take them out of DNS at once.
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance",
            ("stock", "10.0.0.1", "8080"),
            &[("enabled", "false")],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _) = server
        .instance(
            Method::PATCH,
            "/nacos/v1/ns/instance",
            ("stock", "10.0.0.4", "8083"),
            &[("weight", "3")],
        )
        .await;
    assert_eq!(status, 200);
    let mut client = udp_client(server.dns_addr()).await;
    let a = query(&mut client, STOCK, RecordType::A).await;
    assert_eq!(sorted(addresses(&a.answers)), vec!["10.0.0.2", "10.0.0.4"]);

    // Deregistration removes it.
    let (status, _) = server
        .instance(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            ("stock", "10.0.0.2", "8081"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let a = query(&mut client, STOCK, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.0.0.4"]);
    server.shutdown().await;
}

#[tokio::test]
async fn first_address_follows_the_weights() {
    let server = TestServer::start().await;
    let weights = [("10.1.0.1", 1.0), ("10.1.0.2", 2.0), ("10.1.0.3", 7.0)];
    for (ip, w) in weights {
        server
            .register("weighted", ip, 80, &[("weight", &w.to_string())])
            .await;
    }
    let mut client = udp_client(server.dns_addr()).await;
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut orders = std::collections::HashSet::new();
    const N: usize = 2000;
    for _ in 0..N {
        let a = query(&mut client, "weighted.DEFAULT_GROUP.svc.", RecordType::A).await;
        let addrs = addresses(&a.answers);
        assert_eq!(addrs.len(), 3);
        *first.entry(addrs[0].clone()).or_default() += 1;
        orders.insert(addrs);
    }
    for (ip, w) in weights {
        let share = *first.get(ip).unwrap_or(&0) as f64 / N as f64;
        let expected = w / 10.0;
        assert!(
            (share - expected).abs() < 0.04,
            "{ip}: first in {share:.3} of answers, expected {expected:.3}"
        );
    }
    assert!(orders.len() >= 4, "orders vary: {orders:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn protect_threshold_is_applied_alike_by_dns_and_the_list_api() {
    let server = TestServer::start().await;
    server.register("guarded", "10.2.0.1", 80, &[]).await;
    server
        .register("guarded", "10.2.0.2", 80, &[("healthy", "false")])
        .await;
    server
        .register("guarded", "10.2.0.3", 80, &[("healthy", "false")])
        .await;
    let threshold = |t: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server
                .call(
                    Method::PUT,
                    "/nacos/v1/ns/service",
                    &[("serviceName", "guarded"), ("protectThreshold", t)],
                )
                .await;
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
    };
    let mut client = udp_client(server.dns_addr()).await;
    let name = "guarded.DEFAULT_GROUP.svc.";
    let listed = |healthy_only: &'static str| {
        let server = &server;
        async move {
            let list = server
                .list("guarded", &[("healthyOnly", healthy_only)])
                .await;
            let hosts: Vec<(String, bool)> = list["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["ip"].as_str().unwrap().to_string(), h["healthy"] == true))
                .collect();
            (hosts, list["reachProtectionThreshold"] == true)
        }
    };

    // 1 of 3 healthy is at or under 0.6: every instance answers, reported healthy,
    // also to a healthyOnly client.
    threshold("0.6").await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(
        sorted(addresses(&a.answers)),
        vec!["10.2.0.1", "10.2.0.2", "10.2.0.3"]
    );
    for healthy_only in ["false", "true"] {
        let (hosts, protected) = listed(healthy_only).await;
        assert!(protected, "healthyOnly={healthy_only}");
        assert_eq!(hosts.len(), 3, "healthyOnly={healthy_only}: {hosts:?}");
        assert!(hosts.iter().all(|(_, healthy)| *healthy));
    }

    // 1 of 3 is above 0.2: only the healthy one.
    threshold("0.2").await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.2.0.1"]);
    let (hosts, protected) = listed("true").await;
    assert!(!protected);
    assert_eq!(hosts, vec![("10.2.0.1".to_string(), true)]);
    let (hosts, _) = listed("false").await;
    assert_eq!(hosts.iter().filter(|(_, h)| *h).count(), 1, "{hosts:?}");

    // Threshold 0 never trips: with every instance down, DNS answers NODATA and a
    // healthyOnly list is empty; a full list shows them unhealthy.
    threshold("0").await;
    server
        .register("guarded", "10.2.0.1", 80, &[("healthy", "false")])
        .await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty(), "{:?}", a.answers);
    let (hosts, protected) = listed("true").await;
    assert!(!protected);
    assert!(hosts.is_empty(), "{hosts:?}");
    let (hosts, protected) = listed("false").await;
    assert!(!protected);
    assert_eq!(hosts.len(), 3);
    assert!(hosts.iter().all(|(_, healthy)| !*healthy));
    server.shutdown().await;
}

#[tokio::test]
async fn negative_answers_carry_the_soa_and_aa() {
    let server = TestServer::start().await;
    server.register("stock", "10.0.0.1", 8080, &[]).await;
    let mut client = udp_client(server.dns_addr()).await;

    let nx = query(&mut client, "missing.DEFAULT_GROUP.svc.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert!(nx.answers.is_empty());
    assert!(matches!(
        nx.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
    assert_eq!(nx.authorities[0].name.to_ascii(), "svc.");

    let nodata = query(&mut client, STOCK, RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.metadata.authoritative);
    assert!(nodata.answers.is_empty());
    assert!(matches!(
        nodata.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));

    let txt = query(&mut client, STOCK, RecordType::TXT).await;
    assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
    assert!(txt.answers.is_empty());

    let soa = query(&mut client, "svc.", RecordType::SOA).await;
    assert!(matches!(
        soa.answers.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));
    let ns = query(&mut client, "svc.", RecordType::NS).await;
    assert!(matches!(
        ns.answers.first().map(|r| &r.data),
        Some(RData::NS(_))
    ));

    // A service in another namespace is reached with the namespace label `_<id>`.
    server
        .register("stock", "10.9.0.1", 8080, &[("namespaceId", "dev")])
        .await;
    let dev = query(&mut client, "stock.DEFAULT_GROUP._dev.svc.", RecordType::A).await;
    assert_eq!(addresses(&dev.answers), vec!["10.9.0.1"]);
    server.shutdown().await;
}

#[tokio::test]
async fn static_zone_answers_authoritatively() {
    let server = TestServer::start().await;
    let mut client = udp_client(server.dns_addr()).await;
    let www = query(&mut client, "www.example.test.", RecordType::A).await;
    assert!(www.metadata.authoritative);
    assert_eq!(addresses(&www.answers), vec!["192.0.2.10"]);
    let nx = query(&mut client, "nope.example.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    server.shutdown().await;
}

#[tokio::test]
async fn other_names_are_forwarded_for_allowed_clients_only() {
    // The upstream is another node whose static zone holds upstream.test.
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("upstream.test.zone"),
        "$ORIGIN upstream.test.\n$TTL 60\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\napp IN A 198.51.100.7\n",
    )
    .unwrap();
    let zones_dir = zones.path().to_path_buf();
    let upstream = TestServer::start_with(|s| s.dns.zones_dir = zones_dir).await;
    let upstream_addr = upstream.dns_addr();

    let server = TestServer::start_with(|s| s.dns.forwarders = vec![upstream_addr]).await;
    let mut client = udp_client(server.dns_addr()).await;
    let app = query(&mut client, "app.upstream.test.", RecordType::A).await;
    assert_eq!(app.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&app.answers), vec!["198.51.100.7"]);
    assert!(
        !app.metadata.authoritative,
        "forwarded answers are not authoritative"
    );
    assert!(app.metadata.recursion_available);

    // A client outside allow_recursion is refused, but still gets authoritative data.
    let strict = TestServer::start_with(|s| {
        s.dns.forwarders = vec![upstream_addr];
        s.dns.allow_recursion = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    strict.register("stock", "10.0.0.1", 8080, &[]).await;
    let mut client = udp_client(strict.dns_addr()).await;
    let refused = query(&mut client, "app.upstream.test.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let own = query(&mut client, STOCK, RecordType::A).await;
    assert_eq!(addresses(&own.answers), vec!["10.0.0.1"]);
    assert!(!own.metadata.recursion_available);

    // Without forwarders, other names are refused too.
    let mut client = udp_client(upstream.dns_addr()).await;
    let none = query(&mut client, "example.org.", RecordType::A).await;
    assert_eq!(none.metadata.response_code, ResponseCode::Refused);
    strict.shutdown().await;
    server.shutdown().await;
    upstream.shutdown().await;
}

/// Builds a raw query with hickory-proto.
pub(crate) fn raw_query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut msg = Message::new(0xBEEF, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        msg.set_edns(e);
    }
    msg.to_vec().unwrap()
}

pub(crate) async fn exchange_udp(addr: std::net::SocketAddr, packet: &[u8]) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).expect("valid response")
}

#[tokio::test]
async fn large_answers_are_samples_that_fit_udp_and_tcp() {
    let server = TestServer::start().await;
    for i in 1..=40u8 {
        server
            .register("big", &format!("10.3.0.{i}"), 9000, &[])
            .await;
    }
    let name = "big.DEFAULT_GROUP.svc.";
    // SRV without EDNS: a weighted sample of the 40 that fits 512 bytes with the
    // addresses, no TC (it was TC with no records).
    let glued = |msg: &Message| {
        msg.additionals
            .iter()
            .filter(|r| r.record_type() == RecordType::A)
            .count()
    };
    let srv = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::SRV, None)).await;
    assert!(!srv.metadata.truncation, "no TC when a sample fits");
    assert!(
        (8..16).contains(&srv.answers.len()),
        "{} SRV records in 512 bytes",
        srv.answers.len()
    );
    assert_eq!(glued(&srv), srv.answers.len(), "every target's address");
    // With EDNS(0) the server offers 1232 bytes: dns.max_srv_answers (16) fit.
    let srv = exchange_udp(
        server.dns_addr(),
        &raw_query(name, RecordType::SRV, Some(4096)),
    )
    .await;
    assert!(!srv.metadata.truncation);
    assert_eq!((srv.answers.len(), glued(&srv)), (16, 16));
    assert_eq!(srv.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    let mut tcp = tcp_client(server.dns_addr()).await;
    let full = query(&mut tcp, name, RecordType::SRV).await;
    assert_eq!((full.answers.len(), glued(&full)), (16, 16));
    // A answers are a weighted subset capped at dns.max_answers (16).
    let a = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::A, None)).await;
    assert!(!a.metadata.truncation);
    assert_eq!(a.answers.len(), 16);
    server.shutdown().await;
}

#[tokio::test]
async fn question_case_and_id_are_echoed() {
    let server = TestServer::start().await;
    server.register("stock", "10.0.0.1", 8080, &[]).await;
    for (name, edns) in [
        ("StOcK.default_GROUP.SVC.", None),
        ("stock.DEFAULT_GROUP.svc.", Some(1232)),
    ] {
        let resp = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::A, edns)).await;
        assert_eq!(resp.metadata.id, 0xBEEF);
        assert!(resp.metadata.recursion_desired);
        assert_eq!(resp.queries[0].name().to_ascii(), name);
        assert_eq!(addresses(&resp.answers), vec!["10.0.0.1"]);
        assert_eq!(resp.edns.is_some(), edns.is_some());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn random_and_truncated_packets_leave_the_server_answering() {
    let server = TestServer::start().await;
    server.register("stock", "10.0.0.1", 8080, &[]).await;
    let addr = server.dns_addr();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = [
        raw_query(STOCK, RecordType::A, Some(1232)),
        raw_query(STOCK, RecordType::SRV, None),
        raw_query("www.example.test.", RecordType::A, None),
        raw_query("x.example.org.", RecordType::MX, Some(512)),
    ];
    let mut rng = rand::rng();
    for i in 0..2000 {
        let packet: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            1 => {
                let v = &valid[i % valid.len()];
                v[..rng.random_range(0..v.len())].to_vec()
            }
            2 => {
                let mut v = valid[i % valid.len()].clone();
                let at = rng.random_range(0..v.len());
                v[at] = rng.random();
                v
            }
            _ => {
                let mut v = valid[i % valid.len()].clone();
                v.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>()));
                v
            }
        };
        socket.send_to(&packet, addr).await.unwrap();
    }
    // Garbage over TCP too: a length prefix that lies, then a close.
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&[0x01, 0x00, 0xde, 0xad]).await.unwrap();
    }
    let mut client = udp_client(addr).await;
    let a = query(&mut client, STOCK, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.0.0.1"]);
    let mut tcp = tcp_client(addr).await;
    let a = query(&mut tcp, STOCK, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.0.0.1"]);
    // A malformed question gets FORMERR, not silence.
    let mut bad = raw_query(STOCK, RecordType::A, None);
    bad[12] = 0xC0; // a compression pointer where the question name starts
    bad[13] = 0xFF;
    let resp = exchange_udp(addr, &bad).await;
    assert_eq!(resp.metadata.response_code, ResponseCode::FormErr);
    server.shutdown().await;
}

#[tokio::test]
async fn an_emptied_service_answers_nodata_then_nxdomain_once_cleaned_up() {
    let server = TestServer::start_with(|s| s.naming.empty_service_ttl_ms = 300).await;
    server.register("brief", "10.7.0.1", 80, &[]).await;
    let (status, _) = server
        .instance(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            ("brief", "10.7.0.1", "80"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let name = "brief.DEFAULT_GROUP.svc.";
    let mut client = udp_client(server.dns_addr()).await;
    let nodata = query(&mut client, name, RecordType::A).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    wait_until(
        Duration::from_secs(5),
        "the empty service is removed",
        || async {
            let mut c = udp_client(server.dns_addr()).await;
            query(&mut c, name, RecordType::A)
                .await
                .metadata
                .response_code
                == ResponseCode::NXDomain
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_cached_name_keeps_its_service_and_follows_a_new_case_twin() {
    let server = TestServer::start_with(|s| s.naming.empty_service_ttl_ms = 60_000).await;
    // `a.b.c.svc.` is service `a.b` of group `c` in namespace public ...
    server.register("c@@a.b", "10.8.0.1", 80, &[]).await;
    let mut client = udp_client(server.dns_addr()).await;
    let name = "a.b.c.svc.";
    let first = query(&mut client, name, RecordType::A).await;
    assert_eq!(addresses(&first.answers), vec!["10.8.0.1"]);
    // ... and stays so when service `a` of group `b` in namespace `c` comes (it was
    // taken over): that one is `a.b._c.svc.`.
    server
        .register("b@@a", "10.8.0.2", 80, &[("namespaceId", "c")])
        .await;
    let second = query(&mut client, name, RecordType::A).await;
    assert_eq!(addresses(&second.answers), vec!["10.8.0.1"]);
    let namespaced = query(&mut client, "a.b._c.svc.", RecordType::A).await;
    assert_eq!(addresses(&namespaced.answers), vec!["10.8.0.2"]);
    // A cached NODATA gives way to a case twin created later with an instance.
    let (status, _) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/service",
            &[("serviceName", "Quiet"), ("ephemeral", "true")],
        )
        .await;
    assert_eq!(status, 200);
    let empty = query(&mut client, "quiet.DEFAULT_GROUP.svc.", RecordType::A).await;
    assert!(empty.answers.is_empty());
    server.register("QUIET", "10.8.0.3", 80, &[]).await;
    let twin = query(&mut client, "quiet.DEFAULT_GROUP.svc.", RecordType::A).await;
    assert_eq!(addresses(&twin.answers), vec!["10.8.0.3"]);
    server.shutdown().await;
}

#[tokio::test]
async fn static_zones_take_underscores_delegations_and_glue() {
    let zones = tempfile::tempdir().unwrap();
    std::fs::write(
        zones.path().join("corp.test.zone"),
        r#"; Underscores are legal in DNS names (RFC 2181 §11).
$ORIGIN corp.test.
$TTL 60
@         IN SOA  ns1 host_master 1 3600 600 86400 60
@         IN NS   ns1
ns1       IN A    192.0.2.53
a_b       IN A    192.0.2.1
x         IN MX   10 mail_x
mail_x    IN A    192.0.2.2
ext       IN CNAME web.default_group.svc.
_sip._tcp IN SRV  0 5 5060 sip_host
sip_host  IN A    192.0.2.3
note      IN TXT  "keep_this as_is" ; a_comment
sub       IN NS   ns.sub
ns.sub    IN A    192.0.2.54
"#,
    )
    .unwrap();
    let dir = zones.path().to_path_buf();
    let server = TestServer::start_with(|s| s.dns.zones_dir = dir).await;
    let mut client = udp_client(server.dns_addr()).await;
    let a = query(&mut client, "a_b.corp.test.", RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["192.0.2.1"]);
    let mx = query(&mut client, "x.corp.test.", RecordType::MX).await;
    assert_eq!(targets(&mx.answers), vec!["mail_x.corp.test."]);
    let ext = query(&mut client, "ext.corp.test.", RecordType::CNAME).await;
    assert_eq!(targets(&ext.answers), vec!["web.default_group.svc."]);
    let srv = query(&mut client, "_sip._tcp.corp.test.", RecordType::SRV).await;
    assert_eq!(targets(&srv.answers), vec!["sip_host.corp.test."]);
    let txt = query(&mut client, "note.corp.test.", RecordType::TXT).await;
    let text: Vec<String> = txt
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        text,
        vec!["keep_this as_is"],
        "quoted text is left as it is"
    );
    let soa = query(&mut client, "corp.test.", RecordType::SOA).await;
    assert_eq!(targets(&soa.answers), vec!["host_master.corp.test."]);
    // The delegation below is a referral (RFC 1034 §4.3.2): not authoritative, the NS
    // records in the authority section and their addresses as glue.
    let sub = query(&mut client, "www.sub.corp.test.", RecordType::A).await;
    assert!(
        !sub.metadata.authoritative,
        "a referral is not authoritative"
    );
    assert!(sub.answers.is_empty());
    let delegated: Vec<String> = sub
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::NS)
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(delegated, vec!["sub.corp.test."]);
    assert_eq!(addresses(&sub.additionals), vec!["192.0.2.54"], "glue");
    server.shutdown().await;
}

/// A query for the name of these raw labels (any bytes) below `svc.`.
fn labels_query(labels: &[&[u8]], rtype: RecordType) -> Vec<u8> {
    let mut all: Vec<&[u8]> = labels.to_vec();
    all.push(b"svc");
    let mut name = Name::from_labels(all).unwrap();
    name.set_fqdn(true);
    let mut msg = Message::new(0xBEEF, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name, rtype));
    msg.to_vec().unwrap()
}

#[tokio::test]
async fn one_dns_name_means_one_service_and_dotted_names_resolve() {
    let server = TestServer::start().await;
    // The repro: namespace DEFAULT_GROUP's `pay` in group `api` took over the name of
    // the public `pay.api`.
    server.register("pay.api", "10.11.0.1", 80, &[]).await;
    server
        .register(
            "pay",
            "10.11.0.2",
            80,
            &[("groupName", "api"), ("namespaceId", "DEFAULT_GROUP")],
        )
        .await;
    let dns = server.dns_addr();
    let a = |name: &str| raw_query(name, RecordType::A, None);
    let public = exchange_udp(dns, &a("pay.api.DEFAULT_GROUP.svc.")).await;
    assert_eq!(addresses(&public.answers), vec!["10.11.0.1"]);
    let namespaced = exchange_udp(dns, &a("pay.api._DEFAULT_GROUP.svc.")).await;
    assert_eq!(addresses(&namespaced.answers), vec!["10.11.0.2"]);
    // Dotted service names, and Dubbo's, resolve as they are.
    server
        .register("com.example.OrderService", "10.11.0.3", 80, &[])
        .await;
    let dotted = exchange_udp(dns, &a("com.example.OrderService.DEFAULT_GROUP.svc.")).await;
    assert_eq!(addresses(&dotted.answers), vec!["10.11.0.3"]);
    server
        .register("providers:com.foo.BarService:1.0.0:", "10.11.0.4", 80, &[])
        .await;
    let dubbo = exchange_udp(
        dns,
        &labels_query(
            &[
                b"providers:com",
                b"foo",
                b"BarService:1",
                b"0",
                b"0:",
                b"DEFAULT_GROUP",
            ],
            RecordType::A,
        ),
    )
    .await;
    assert_eq!(addresses(&dubbo.answers), vec!["10.11.0.4"]);
    // A group with a dot has no DNS name (it is logged); the name it would seem to
    // have is nobody's.
    server
        .register("x", "10.11.0.5", 80, &[("groupName", "a.b")])
        .await;
    let dotted_group = exchange_udp(dns, &a("x.a.b.svc.")).await;
    assert_eq!(dotted_group.metadata.response_code, ResponseCode::NXDomain);
    server.shutdown().await;
}

#[tokio::test]
async fn names_above_services_answer_nodata_not_nxdomain() {
    let server = TestServer::start().await;
    server.register("stock", "10.12.0.1", 80, &[]).await;
    server
        .register("a.b", "10.12.0.2", 80, &[("groupName", "G2")])
        .await;
    server
        .register(
            "x",
            "10.12.0.3",
            80,
            &[("groupName", "G3"), ("namespaceId", "dev")],
        )
        .await;
    let mut client = udp_client(server.dns_addr()).await;
    // The repro: DEFAULT_GROUP.svc was NXDOMAIN, so RFC 8020 resolvers cut off
    // everything below it.
    for name in [
        "DEFAULT_GROUP.svc.",
        "default_group.svc.",
        "b.G2.svc.",
        "G2.svc.",
        "_dev.svc.",
        "G3._dev.svc.",
    ] {
        let reply = query(&mut client, name, RecordType::A).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name}"
        );
        assert!(reply.answers.is_empty(), "{name}");
        assert!(
            reply
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "{name}: SOA in authority"
        );
    }
    for name in [
        "nothing.svc.",
        "zzz.DEFAULT_GROUP.svc.",
        "a.G2.svc.",
        "_prod.svc.",
    ] {
        let reply = query(&mut client, name, RecordType::A).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_zone_name_server_resolves_and_comes_as_glue() {
    // The repro: ns.svc. was NXDOMAIN, a lame delegation once the zone is delegated.
    let server = TestServer::start().await;
    let mut client = udp_client(server.dns_addr()).await;
    let a = query(&mut client, "ns.svc.", RecordType::A).await;
    assert_eq!(
        addresses(&a.answers),
        vec!["127.0.0.1"],
        "dns.addr's address"
    );
    let ns = query(&mut client, "svc.", RecordType::NS).await;
    assert_eq!(addresses(&ns.additionals), vec!["127.0.0.1"], "glue");
    let aaaa = query(&mut client, "ns.svc.", RecordType::AAAA).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    server.shutdown().await;

    let server = TestServer::start_with(|s| {
        s.dns.ns_addresses = vec![
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ]
    })
    .await;
    let mut client = udp_client(server.dns_addr()).await;
    let aaaa = query(&mut client, "ns.svc.", RecordType::AAAA).await;
    assert_eq!(addresses(&aaaa.answers), vec!["2001:db8::53"]);
    let ns = query(&mut client, "svc.", RecordType::NS).await;
    assert_eq!(
        sorted(addresses(&ns.additionals)),
        vec!["192.0.2.53", "2001:db8::53"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn dns_expose_chooses_the_namespaces_served_and_their_clients() {
    let server = TestServer::start_with(|s| {
        s.dns.expose.namespaces = vec!["public".into(), "dev".into(), "qa".into()];
        s.dns.expose.clients = [
            ("dev".to_string(), vec!["127.0.0.0/8".parse().unwrap()]),
            ("qa".to_string(), vec!["10.0.0.0/8".parse().unwrap()]),
        ]
        .into_iter()
        .collect();
    })
    .await;
    for (ns, ip) in [
        ("public", "10.14.0.1"),
        ("dev", "10.14.0.2"),
        ("qa", "10.14.0.3"),
        ("prod", "10.14.0.4"),
    ] {
        server
            .register("stock", ip, 80, &[("namespaceId", ns)])
            .await;
    }
    let mut client = udp_client(server.dns_addr()).await;
    let public = query(&mut client, "stock.DEFAULT_GROUP.svc.", RecordType::A).await;
    assert_eq!(addresses(&public.answers), vec!["10.14.0.1"]);
    let dev = query(&mut client, "stock.DEFAULT_GROUP._dev.svc.", RecordType::A).await;
    assert_eq!(
        addresses(&dev.answers),
        vec!["10.14.0.2"],
        "127.0.0.1 may see dev"
    );
    // qa answers 10/8 only; asked twice, so the cached answer is refused too.
    for _ in 0..2 {
        let qa = query(&mut client, "stock.DEFAULT_GROUP._qa.svc.", RecordType::A).await;
        assert_eq!(qa.metadata.response_code, ResponseCode::Refused);
        assert!(qa.answers.is_empty());
    }
    // prod is not served at all: its names do not exist.
    for name in [
        "stock.DEFAULT_GROUP._prod.svc.",
        "_prod.svc.",
        "DEFAULT_GROUP._prod.svc.",
    ] {
        let prod = query(&mut client, name, RecordType::A).await;
        assert_eq!(
            prod.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    server.shutdown().await;
}
