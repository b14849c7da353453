//! Beat health: a silent ephemeral instance turns unhealthy, then is removed, and DNS
//! follows; a beating one stays. Timeouts are shortened through Nacos's preserved
//! metadata (milliseconds).

use std::time::Duration;

use hickory_net::proto::rr::RecordType;
use reqwest::Method;

use crate::support::*;

const SHORT: &str = r#"{"preserved.heart.beat.interval":"100","preserved.heart.beat.timeout":"600","preserved.ip.delete.timeout":"1500"}"#;

#[tokio::test]
async fn silent_instance_goes_unhealthy_then_is_removed_and_dns_follows() {
    let server = TestServer::start().await;
    server
        .register("beaty", "10.5.0.1", 80, &[("metadata", SHORT)])
        .await;
    server
        .register("beaty", "10.5.0.2", 80, &[("metadata", SHORT)])
        .await;
    let name = "beaty.DEFAULT_GROUP.svc.";
    let mut client = udp_client(server.dns_addr()).await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(sorted(addresses(&a.answers)), vec!["10.5.0.1", "10.5.0.2"]);

    // Keep 10.5.0.2 beating (light beats) while 10.5.0.1 stays silent.
    let beater = {
        let http = server.http.clone();
        let url = format!("{}/nacos/v1/ns/instance/beat", server.base);
        tokio::spawn(async move {
            for _ in 0..200 {
                let _ = http
                    .put(&url)
                    .query(&[("serviceName", "beaty"), ("ip", "10.5.0.2"), ("port", "80")])
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    wait_until(
        Duration::from_secs(5),
        "10.5.0.1 unhealthy in the list",
        || async {
            let list = server.list("beaty", &[]).await;
            list["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["ip"] == "10.5.0.1" && h["healthy"] == false)
        },
    )
    .await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(
        addresses(&a.answers),
        vec!["10.5.0.2"],
        "DNS drops the unhealthy one"
    );
    let healthy_only = server.list("beaty", &[("healthyOnly", "true")]).await;
    assert_eq!(healthy_only["hosts"].as_array().unwrap().len(), 1);

    wait_until(Duration::from_secs(5), "10.5.0.1 removed", || async {
        let list = server.list("beaty", &[]).await;
        list["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["ip"] != "10.5.0.1")
    })
    .await;
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.5.0.2"]);
    let list = server.list("beaty", &[]).await;
    assert_eq!(
        list["hosts"][0]["healthy"], true,
        "the beating instance stayed healthy"
    );

    // The removed instance's light beat now asks the client to register again.
    let (_, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("beaty", "10.5.0.1", "80"),
            &[],
        )
        .await;
    assert!(body.contains("20404"), "{body}");
    beater.abort();

    // Once the last instance stops beating, the name has nothing to answer (NODATA).
    wait_until(Duration::from_secs(5), "10.5.0.2 gone from DNS", || async {
        let mut client = udp_client(server.dns_addr()).await;
        query(&mut client, name, RecordType::A)
            .await
            .answers
            .is_empty()
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_beat_revives_an_unhealthy_instance() {
    let server = TestServer::start().await;
    server
        .register("phoenix", "10.6.0.1", 80, &[("metadata", SHORT)])
        .await;
    let name = "phoenix.DEFAULT_GROUP.svc.";
    let mut client = udp_client(server.dns_addr()).await;
    wait_until(Duration::from_secs(5), "unhealthy", || async {
        let mut c = udp_client(server.dns_addr()).await;
        query(&mut c, name, RecordType::A).await.answers.is_empty()
    })
    .await;
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("phoenix", "10.6.0.1", "80"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("10200"), "{body}");
    let a = query(&mut client, name, RecordType::A).await;
    assert_eq!(addresses(&a.answers), vec!["10.6.0.1"]);
    server.shutdown().await;
}
