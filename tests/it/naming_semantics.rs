//! Nacos 2.x naming semantics that 1.x-style code got wrong, pinned over real HTTP
//! and DNS: one instance per client `ip:port` per service, updates laid over the
//! registration, numbers Java clients cannot read, snowflake instance ids.

use std::time::Duration;

use hickory_net::proto::rr::{RData, RecordType};
use reqwest::Method;
use serde_json::Value;

use crate::support::*;

const INSTANCE: &str = "/nacos/v1/ns/instance";

fn hosts(list: &Value) -> &Vec<Value> {
    list["hosts"].as_array().expect("hosts")
}

#[tokio::test]
async fn an_instance_is_its_client_whatever_the_cluster() {
    let server = TestServer::start().await;
    // The repro: registered in CX, deregistered without a cluster name.
    server
        .register("dereg", "10.90.0.2", 80, &[("clusterName", "CX")])
        .await;
    let (status, body) = server
        .instance(Method::DELETE, INSTANCE, ("dereg", "10.90.0.2", "80"), &[])
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(hosts(&server.list("dereg", &[]).await).is_empty());

    // The same ip:port in a second cluster moves the instance there: one instance,
    // one SRV record.
    server
        .register("moved", "10.90.0.3", 80, &[("clusterName", "A")])
        .await;
    server
        .register("moved", "10.90.0.3", 80, &[("clusterName", "B")])
        .await;
    let list = server.list("moved", &[]).await;
    assert_eq!(hosts(&list).len(), 1, "{list}");
    assert_eq!(hosts(&list)[0]["clusterName"], "B");
    assert_eq!(
        hosts(&list)[0]["instanceId"],
        "10.90.0.3#80#B#DEFAULT_GROUP@@moved"
    );
    let mut dns = udp_client(server.dns_addr()).await;
    let srv = query(&mut dns, "moved.DEFAULT_GROUP.svc.", RecordType::SRV).await;
    let records = srv
        .answers
        .iter()
        .filter(|r| matches!(r.data, RData::SRV(_)))
        .count();
    assert_eq!(records, 1);
    // Detail asks for the cluster it is in.
    let (status, _) = server
        .instance(
            Method::GET,
            INSTANCE,
            ("moved", "10.90.0.3", "80"),
            &[("clusterName", "A")],
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .instance(
            Method::GET,
            INSTANCE,
            ("moved", "10.90.0.3", "80"),
            &[("clusterName", "B")],
        )
        .await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

fn metadata_of(list: &Value) -> Value {
    hosts(list)[0]["metadata"].clone()
}

#[tokio::test]
async fn an_update_is_laid_over_the_registration_and_keeps_its_timeouts() {
    let server = TestServer::start().await;
    let registration = serde_json::json!({
        "a": "1",
        "preserved.heart.beat.interval": "1000",
        "preserved.heart.beat.timeout": "4000",
        "preserved.ip.delete.timeout": "5000",
    })
    .to_string();
    server
        .register(
            "upd",
            "10.91.0.1",
            80,
            &[("metadata", registration.as_str()), ("weight", "3")],
        )
        .await;
    let put = |extra: &'static [(&'static str, &'static str)]| {
        let server = &server;
        async move {
            server
                .instance(Method::PUT, INSTANCE, ("upd", "10.91.0.1", "80"), extra)
                .await
        }
    };
    // The update's keys over the registration's; the preserved ones stay.
    assert_eq!(
        put(&[("metadata", "b=2"), ("weight", "5")]).await,
        (200, "ok".to_string())
    );
    let list = server.list("upd", &[]).await;
    let meta = metadata_of(&list);
    assert_eq!(meta["a"], "1");
    assert_eq!(meta["b"], "2");
    assert_eq!(meta["preserved.heart.beat.timeout"], "4000");
    assert_eq!(hosts(&list)[0]["weight"], 5.0);
    assert_eq!(hosts(&list)[0]["instanceHeartBeatTimeOut"], 4000);
    // A second update replaces the first; without metadata, only the registration's.
    assert_eq!(put(&[("metadata", "c=3")]).await.0, 200);
    let meta = metadata_of(&server.list("upd", &[]).await);
    assert_eq!((meta["b"].is_null(), &meta["c"]), (true, &Value::from("3")));
    assert_eq!(put(&[]).await.0, 200);
    let list = server.list("upd", &[]).await;
    let meta = metadata_of(&list);
    assert!(meta["c"].is_null() && meta["a"] == "1", "{meta}");
    assert_eq!(
        hosts(&list)[0]["weight"],
        1.0,
        "weight defaults to 1, as Nacos"
    );
    // The update stays when the client registers again.
    assert_eq!(
        put(&[("metadata", "d=4"), ("enabled", "false")]).await.0,
        200
    );
    server
        .register(
            "upd",
            "10.91.0.1",
            80,
            &[("metadata", registration.as_str()), ("weight", "3")],
        )
        .await;
    assert!(
        hosts(&server.list("upd", &[]).await).is_empty(),
        "still disabled: the list leaves it out"
    );
    assert_eq!(
        put(&[("metadata", "d=4"), ("enabled", "true")]).await.0,
        200
    );
    let list = server.list("upd", &[]).await;
    assert_eq!(metadata_of(&list)["d"], "4");
    assert_eq!(hosts(&list)[0]["enabled"], true);

    // A PUT never creates an instance: none registered, or not in that cluster.
    for (ip, extra) in [
        ("10.91.0.2", &[][..]),
        ("10.91.0.1", &[("clusterName", "OTHER")][..]),
    ] {
        let (status, body) = server
            .instance(Method::PUT, INSTANCE, ("upd", ip, "80"), extra)
            .await;
        assert_eq!(status, 404, "{ip} {extra:?}: {body}");
    }
    assert_eq!(hosts(&server.list("upd", &[]).await).len(), 1);
    // An update that breaks the beat rules once merged is refused and changes nothing.
    let (status, body) = server
        .instance(
            Method::PUT,
            INSTANCE,
            ("upd", "10.91.0.1", "80"),
            &[("metadata", "preserved.heart.beat.interval=9000")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(metadata_of(&server.list("upd", &[]).await)["d"], "4");
    // An update that the new registration makes break the beat rules goes: interval
    // 3 s laid over a registration whose timeout is now 2 s.
    assert_eq!(
        put(&[("metadata", "preserved.heart.beat.interval=3000,e=5")]).await,
        (200, "ok".to_string())
    );
    assert_eq!(
        hosts(&server.list("upd", &[]).await)[0]["instanceHeartBeatInterval"],
        3000
    );
    let shorter = serde_json::json!({
        "a": "1",
        "preserved.heart.beat.interval": "1000",
        "preserved.heart.beat.timeout": "2000",
        "preserved.ip.delete.timeout": "3000",
    })
    .to_string();
    server
        .register("upd", "10.91.0.1", 80, &[("metadata", shorter.as_str())])
        .await;
    let list = server.list("upd", &[]).await;
    let meta = metadata_of(&list);
    assert!(meta["e"].is_null(), "the update went: {meta}");
    assert_eq!(hosts(&list)[0]["instanceHeartBeatInterval"], 1000);
    assert_eq!(hosts(&list)[0]["instanceHeartBeatTimeOut"], 2000);

    // The registration's short timeouts still apply: without beats it goes soon.
    wait_until(Duration::from_secs(10), "instance expired", || async {
        hosts(&server.list("upd", &[]).await).is_empty()
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn numbers_java_clients_cannot_read_and_bad_cluster_names_are_refused() {
    let server = TestServer::start().await;
    for key in [
        "preserved.ip.delete.timeout",
        "preserved.heart.beat.timeout",
        "preserved.heart.beat.interval",
    ] {
        let metadata = serde_json::json!({ key: "9223372036854775808" }).to_string();
        let (status, body) = server
            .instance(
                Method::POST,
                INSTANCE,
                ("nums", "10.92.0.1", "80"),
                &[("metadata", metadata.as_str())],
            )
            .await;
        assert_eq!(status, 400, "{key}: {body}");
        assert!(body.contains(key), "{body}");
        // Through a full beat too.
        let beat = serde_json::json!({
            "ip": "10.92.0.1", "port": 80, "metadata": { key: "99999999999999999999" }
        })
        .to_string();
        let (status, body) = server
            .call(
                Method::PUT,
                "/nacos/v1/ns/instance/beat",
                &[("serviceName", "nums"), ("beat", beat.as_str())],
            )
            .await;
        assert_eq!(status, 400, "beat {key}: {body}");
    }
    for cluster in ["a_b", "a.b", "a b"] {
        let (status, body) = server
            .instance(
                Method::POST,
                INSTANCE,
                ("nums", "10.92.0.1", "80"),
                &[("clusterName", cluster)],
            )
            .await;
        assert_eq!(status, 400, "{cluster}: {body}");
        assert!(body.contains("clusterName"), "{body}");
    }
    assert!(hosts(&server.list("nums", &[]).await).is_empty());
    // The largest Java long is fine.
    server
        .register(
            "nums",
            "10.92.0.1",
            80,
            &[(
                "metadata",
                r#"{"preserved.ip.delete.timeout":"9223372036854775807"}"#,
            )],
        )
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn snowflake_instance_ids_are_given_once_and_kept() {
    let server = TestServer::start().await;
    let snowflake = (
        "metadata",
        r#"{"preserved.instance.id.generator":"snowflake"}"#,
    );
    server
        .register("flake", "10.93.0.1", 80, &[snowflake])
        .await;
    server
        .register("flake", "10.93.0.2", 80, &[snowflake])
        .await;
    let ids = |list: Value| -> Vec<String> {
        hosts(&list)
            .iter()
            .map(|h| h["instanceId"].as_str().unwrap().to_string())
            .collect()
    };
    let first = ids(server.list("flake", &[]).await);
    for id in &first {
        let (number, rest) = id.split_once('#').unwrap();
        assert!(number.parse::<u64>().is_ok(), "{id}");
        assert_eq!(rest, "DEFAULT#DEFAULT_GROUP@@flake");
    }
    assert_ne!(first[0], first[1]);
    // Registering again keeps the id.
    server
        .register("flake", "10.93.0.1", 80, &[snowflake])
        .await;
    assert_eq!(ids(server.list("flake", &[]).await), first);
    let (status, body) = server
        .instance(Method::GET, INSTANCE, ("flake", "10.93.0.1", "80"), &[])
        .await;
    assert_eq!(status, 200);
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["instanceId"], first[0].as_str());
    // An unknown generator is the client's mistake.
    let (status, body) = server
        .instance(
            Method::POST,
            INSTANCE,
            ("flake", "10.93.0.3", "80"),
            &[("metadata", r#"{"preserved.instance.id.generator":"uuid"}"#)],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("preserved.instance.id.generator"), "{body}");
    server.shutdown().await;
}

async fn dns_a(server: &TestServer, name: &str) -> (Vec<String>, u16) {
    let mut dns = udp_client(server.dns_addr()).await;
    let resp = query(&mut dns, name, RecordType::A).await;
    (
        sorted(addresses(&resp.answers)),
        u16::from(resp.metadata.response_code),
    )
}

#[tokio::test]
async fn of_case_twins_the_one_with_something_to_answer_answers_dns() {
    let server = TestServer::start_with(|s| s.naming.empty_service_ttl_ms = 60_000).await;
    // The repro: an empty service created by the API, then its lower-case twin with an
    // instance. The empty one is older but has nothing to answer.
    let (status, _) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/service",
            &[("serviceName", "Shadow"), ("ephemeral", "true")],
        )
        .await;
    assert_eq!(status, 200);
    server.register("shadow", "10.94.0.1", 80, &[]).await;
    assert_eq!(
        dns_a(&server, "shadow.DEFAULT_GROUP.svc.").await,
        (vec!["10.94.0.1".to_string()], 0)
    );
    // When the older twin gets an instance, it answers (oldest first).
    server.register("Shadow", "10.94.0.2", 80, &[]).await;
    assert_eq!(
        dns_a(&server, "SHADOW.default_group.svc.").await.0,
        vec!["10.94.0.2".to_string()]
    );
    // Its instance leaves: the other answers again at once, not after the empty
    // service's 60 s.
    let (status, _) = server
        .instance(Method::DELETE, INSTANCE, ("Shadow", "10.94.0.2", "80"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        dns_a(&server, "shadow.DEFAULT_GROUP.svc.").await.0,
        vec!["10.94.0.1".to_string()]
    );
    // With nobody to answer: NODATA (NOERROR, no records), not NXDOMAIN.
    let (status, _) = server
        .instance(Method::DELETE, INSTANCE, ("shadow", "10.94.0.1", "80"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        dns_a(&server, "shadow.DEFAULT_GROUP.svc.").await,
        (vec![], 0)
    );
    // DNS looks at the oldest 8 twins only: a 9th with an instance is not answered
    // until an older twin goes.
    for name in ["sHadow", "shAdow", "shaDow", "shadOw", "shadoW", "SHadow"] {
        let (status, _) = server
            .call(
                Method::POST,
                "/nacos/v1/ns/service",
                &[("serviceName", name), ("ephemeral", "true")],
            )
            .await;
        assert_eq!(status, 200);
    }
    server.register("SHADOW", "10.94.0.9", 80, &[]).await;
    assert_eq!(
        dns_a(&server, "shadow.DEFAULT_GROUP.svc.").await,
        (vec![], 0)
    );
    let (status, body) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/service",
            &[("serviceName", "sHadow")],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(
        dns_a(&server, "shadow.DEFAULT_GROUP.svc.").await.0,
        vec!["10.94.0.9".to_string()]
    );
    server.shutdown().await;
}
