//! UDP push to subscribers over real sockets: a test subscriber lists with `udpPort`,
//! receives Nacos's push packets, acks them or not.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::support::*;

async fn push_server(ack_timeout_ms: u64, max_retries: u32) -> TestServer {
    TestServer::start_with(|s| {
        s.push.ack_timeout_ms = ack_timeout_ms;
        s.push.max_retries = max_retries;
    })
    .await
}

async fn subscribers(server: &TestServer, service: &str) -> Value {
    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service/subscribers",
            &[("serviceName", service)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("subscribers JSON")
}

#[tokio::test]
async fn a_subscriber_gets_each_change_within_a_second_and_its_ack_stops_retries() {
    let server = push_server(300, 2).await;
    server.register("pushed", "10.7.0.1", 80, &[]).await;
    let receiver = PushReceiver::bind().await;
    let listed = receiver.subscribe(&server, "pushed").await;
    assert_eq!(listed["hosts"].as_array().unwrap().len(), 1);

    let subs = subscribers(&server, "pushed").await;
    assert_eq!(subs["count"], 1, "{subs}");
    let sub = &subs["subscribers"][0];
    assert_eq!(sub["addrStr"], format!("127.0.0.1:{}", receiver.port()));
    assert_eq!(sub["agent"], "Nacos-Java-Client:v1.4.6");
    assert_eq!(sub["serviceName"], "DEFAULT_GROUP@@pushed");
    assert_eq!(sub["namespaceId"], "public");

    let changed = Instant::now();
    server.register("pushed", "10.7.0.2", 80, &[]).await;
    let push = receiver
        .next(Duration::from_secs(1))
        .await
        .expect("a push within 1 s of the change");
    assert!(changed.elapsed() < Duration::from_secs(1));
    assert_eq!(push.ips(), vec!["10.7.0.1", "10.7.0.2"]);
    assert_eq!(push.data["name"], "DEFAULT_GROUP@@pushed");
    assert!(push.last_ref_time() < 1 << 53);
    receiver.ack(&push).await;
    // Acked: no resend after the 300 ms ack timeout.
    assert!(
        receiver.next(Duration::from_millis(1_000)).await.is_none(),
        "an acked push is not sent again"
    );

    // The next change comes too, with a new lastRefTime; a deregistration as well.
    server
        .instance(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            ("pushed", "10.7.0.1", "80"),
            &[],
        )
        .await;
    let next = receiver
        .next(Duration::from_secs(1))
        .await
        .expect("second push");
    assert!(next.last_ref_time() > push.last_ref_time());
    assert_eq!(next.ips(), vec!["10.7.0.2"]);
    receiver.ack(&next).await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_unacked_push_is_sent_again_a_bounded_number_of_times() {
    let server = push_server(200, 2).await;
    server.register("retried", "10.7.1.1", 80, &[]).await;
    let receiver = PushReceiver::bind().await;
    receiver.subscribe(&server, "retried").await;
    server.register("retried", "10.7.1.2", 80, &[]).await;
    let first = receiver.next(Duration::from_secs(1)).await.expect("push");
    let mut copies = 1;
    while let Some(again) = receiver.next(Duration::from_millis(800)).await {
        assert_eq!(again.last_ref_time(), first.last_ref_time(), "a resend");
        assert_eq!(again.ips(), first.ips());
        copies += 1;
    }
    assert_eq!(copies, 3, "sent once and retried twice, then given up");
    server.shutdown().await;
}

#[tokio::test]
async fn only_push_capable_agents_subscribe_pushes_go_to_the_sender_and_subscribers_age_out() {
    let server = TestServer::start_with(|s| {
        s.naming.cache_millis = 100;
        s.push.subscriber_ttl_ms = 1_000;
    })
    .await;
    server.register("aged", "10.7.2.1", 80, &[]).await;
    let list_as = |agent: &'static str, client_ip: &'static str| {
        let server = &server;
        async move {
            server
                .send(
                    server
                        .request(Method::GET, "/nacos/v1/ns/instance/list")
                        .header("User-Agent", agent)
                        .query(&[
                            ("serviceName", "aged"),
                            ("udpPort", "40001"),
                            ("clientIP", client_ip),
                        ]),
                )
                .await
        }
    };
    // The Python client polls; Nacos never pushes to it.
    assert_eq!(
        list_as("Nacos-Python-Client:v0.1.5", "127.0.0.1").await.0,
        200
    );
    assert_eq!(subscribers(&server, "aged").await["count"], 0);
    // A clientIP other than the sender: the datagrams go to the sender.
    assert_eq!(list_as("Nacos-Java-Client:v1.4.6", "8.8.8.8").await.0, 200);
    let subs = subscribers(&server, "aged").await;
    assert_eq!(subs["count"], 1);
    assert_eq!(subs["subscribers"][0]["addrStr"], "127.0.0.1:40001");

    let (status, body) = list_as("Nacos-Java-Client:v1.4.6", "not-an-ip").await;
    assert_eq!(status, 200, "the list is answered even so: {body}");
    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/instance/list",
            &[("serviceName", "aged"), ("udpPort", "x")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("udpPort"), "{body}");

    let receiver = PushReceiver::bind().await;
    receiver.subscribe(&server, "aged").await;
    assert_eq!(subscribers(&server, "aged").await["count"], 2);
    wait_until(Duration::from_secs(3), "subscriber aged out", || async {
        subscribers(&server, "aged").await["count"] == 0
    })
    .await;
    server.register("aged", "10.7.2.2", 80, &[]).await;
    assert!(
        receiver.next(Duration::from_millis(500)).await.is_none(),
        "no push after it aged out"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pushes_past_the_unacked_limit_wait_and_then_go() {
    let server = TestServer::start_with(|s| {
        s.push.ack_timeout_ms = 30_000;
        s.push.max_unacked_per_target = 4;
    })
    .await;
    server.register("many", "10.7.5.1", 80, &[]).await;
    let receiver = PushReceiver::bind().await;
    let port = receiver.port().to_string();
    // Ten subscriptions of one address (one per `clusters` selection).
    for i in 0..10 {
        let clusters = format!("c{i}");
        let (status, _) = server
            .send(
                server
                    .request(Method::GET, "/nacos/v1/ns/instance/list")
                    .header("User-Agent", "Nacos-Java-Client:v1.4.6")
                    .query(&[
                        ("serviceName", "many"),
                        ("udpPort", port.as_str()),
                        ("clientIP", "127.0.0.1"),
                        ("clusters", clusters.as_str()),
                    ]),
            )
            .await;
        assert_eq!(status, 200);
    }
    server.register("many", "10.7.5.2", 80, &[]).await;
    // Four go at once; each ack makes room for the ones that waited.
    let mut selections = std::collections::HashSet::new();
    while let Some(push) = receiver.next(Duration::from_secs(2)).await {
        selections.insert(push.data["clusters"].as_str().unwrap().to_string());
        receiver.ack(&push).await;
        if selections.len() == 10 {
            break;
        }
    }
    assert_eq!(selections.len(), 10, "{selections:?}");
    server.shutdown().await;
}
