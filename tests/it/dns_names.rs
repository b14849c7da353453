//! Standard DNS names beside the zone's own, over real UDP: RFC 2782 service names
//! and DNS-SD (RFC 6763) browsing, instance SRV and TXT.

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::{RData, RecordType};

use crate::dns::{exchange_udp, raw_query};
use crate::support::*;

/// (port, target) of the SRV records of `name`.
async fn srv(server: &TestServer, name: &str) -> Vec<(u16, String)> {
    let reply = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::SRV, None)).await;
    let mut out: Vec<(u16, String)> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// The PTR targets of `name`, sorted.
async fn ptr(server: &TestServer, name: &str) -> Vec<String> {
    let reply = exchange_udp(server.dns_addr(), &raw_query(name, RecordType::PTR, None)).await;
    sorted(targets(&reply.answers))
}

async fn rcode(server: &TestServer, name: &str, rtype: RecordType) -> (ResponseCode, usize) {
    let reply = exchange_udp(server.dns_addr(), &raw_query(name, rtype, None)).await;
    (reply.metadata.response_code, reply.answers.len())
}

#[tokio::test]
async fn rfc_2782_and_dns_sd_names_answer_as_specified() {
    let server = TestServer::start().await;
    server
        .register(
            "stock",
            "10.15.0.1",
            8080,
            &[("metadata", r#"{"version":"1.2","zone":"hz"}"#)],
        )
        .await;
    server
        .register(
            "stock",
            "10.15.0.2",
            9090,
            &[("metadata", r#"{"protocol":"udp"}"#)],
        )
        .await;
    server.register("orders", "10.15.0.3", 80, &[]).await;
    server
        .register("stock", "10.15.0.4", 7070, &[("namespaceId", "dev")])
        .await;

    // RFC 2782: _<service>._<proto>.<group>.svc SRV, by the instance's `protocol`.
    assert_eq!(
        srv(&server, "_stock._tcp.DEFAULT_GROUP.svc.").await,
        vec![(8080, "10-15-0-1.stock.DEFAULT_GROUP.svc.".to_string())]
    );
    assert_eq!(
        srv(&server, "_stock._udp.DEFAULT_GROUP.svc.").await,
        vec![(9090, "10-15-0-2.stock.DEFAULT_GROUP.svc.".to_string())]
    );
    assert_eq!(
        srv(&server, "_stock._tcp.DEFAULT_GROUP._dev.svc.").await,
        vec![(7070, "10-15-0-4.stock.DEFAULT_GROUP._dev.svc.".to_string())]
    );
    // The SRV target resolves.
    let host = exchange_udp(
        server.dns_addr(),
        &raw_query("10-15-0-1.stock.DEFAULT_GROUP.svc.", RecordType::A, None),
    )
    .await;
    assert_eq!(addresses(&host.answers), vec!["10.15.0.1"]);

    // DNS-SD: browse the group's service types ...
    assert_eq!(
        ptr(&server, "_services._dns-sd._udp.DEFAULT_GROUP.svc.").await,
        vec![
            "_orders._tcp.DEFAULT_GROUP.svc.",
            "_stock._tcp.DEFAULT_GROUP.svc.",
            "_stock._udp.DEFAULT_GROUP.svc.",
        ]
    );
    // ... a type's instances ...
    assert_eq!(
        ptr(&server, "_stock._tcp.DEFAULT_GROUP.svc.").await,
        vec!["10-15-0-1-8080._stock._tcp.DEFAULT_GROUP.svc."]
    );
    // ... and an instance's SRV and TXT (its metadata as key=value).
    let instance = "10-15-0-1-8080._stock._tcp.DEFAULT_GROUP.svc.";
    assert_eq!(
        srv(&server, instance).await,
        vec![(8080, "10-15-0-1.stock.DEFAULT_GROUP.svc.".to_string())]
    );
    let txt = exchange_udp(
        server.dns_addr(),
        &raw_query(instance, RecordType::TXT, None),
    )
    .await;
    let strings: Vec<String> = txt
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(strings, vec!["version=1.2", "zone=hz"]);

    // NXDOMAIN for what does not exist, NODATA for other types.
    for name in [
        "_nope._tcp.DEFAULT_GROUP.svc.",
        "10-15-0-9-8080._stock._tcp.DEFAULT_GROUP.svc.",
        "10-15-0-2-9090._stock._tcp.DEFAULT_GROUP.svc.",
    ] {
        assert_eq!(
            rcode(&server, name, RecordType::SRV).await.0,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(
        rcode(&server, "_stock._tcp.DEFAULT_GROUP.svc.", RecordType::A).await,
        (ResponseCode::NoError, 0)
    );
    assert_eq!(
        rcode(&server, "_orders._udp.DEFAULT_GROUP.svc.", RecordType::SRV).await,
        (ResponseCode::NoError, 0)
    );
    server.shutdown().await;
}
