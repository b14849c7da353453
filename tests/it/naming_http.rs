//! The Nacos naming Open API v1 over real HTTP: answers, error codes and bad input.

use reqwest::Method;
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn register_list_and_deregister_as_nacos_answers() {
    let server = TestServer::start().await;
    // The Python client sends params in the query; the Java client may send a form body.
    server
        .register(
            "DEFAULT_GROUP@@orders",
            "10.0.0.1",
            8080,
            &[
                ("metadata", r#"{"zone":"a"}"#),
                ("clusterName", "c1"),
                ("enable", "true"),
            ],
        )
        .await;
    let (status, body) = server
        .call_form(
            Method::POST,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "orders"),
                ("ip", "10.0.0.2"),
                ("port", "8080"),
                ("weight", "3.5"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let list = server.list("orders", &[]).await;
    assert_eq!(list["name"], "DEFAULT_GROUP@@orders");
    assert_eq!(list["groupName"], "DEFAULT_GROUP");
    assert_eq!(list["cacheMillis"], 10000);
    assert_eq!(list["reachProtectionThreshold"], false);
    assert_eq!(list["valid"], true);
    assert!(list["lastRefTime"].as_u64().unwrap() > 0);
    assert!(list["checksum"].as_str().unwrap().len() == 32);
    let hosts = list["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    let h = &hosts[0];
    assert_eq!(h["instanceId"], "10.0.0.1#8080#c1#DEFAULT_GROUP@@orders");
    assert_eq!(h["serviceName"], "DEFAULT_GROUP@@orders");
    assert_eq!(h["clusterName"], "c1");
    assert_eq!(h["metadata"]["zone"], "a");
    assert_eq!(h["weight"], 1.0);
    assert_eq!(h["ephemeral"], true);
    assert_eq!(h["instanceHeartBeatInterval"], 5000);
    assert_eq!(h["instanceHeartBeatTimeOut"], 15000);
    assert_eq!(h["ipDeleteTimeout"], 30000);
    assert!(
        h.get("instanceIdGenerator").is_none(),
        "omitted when metadata lacks it"
    );
    assert_eq!(hosts[1]["instanceIdGenerator"], "simple");
    assert_eq!(hosts[1]["weight"], 3.5);

    let c1 = server.list("orders", &[("clusters", "c1")]).await;
    assert_eq!(c1["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(c1["clusters"], "c1");

    let (status, body) = server
        .instance(
            Method::GET,
            "/nacos/v1/ns/instance",
            ("orders", "10.0.0.2", "8080"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["service"], "orders");
    assert_eq!(detail["weight"], 3.5);

    let (status, _) = server
        .instance(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            ("orders", "10.0.0.2", "8080"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    // Deregistering what is not there is still ok.
    let (status, body) = server
        .instance(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            ("nothing", "10.0.0.2", "8080"),
            &[],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = server
        .instance(
            Method::GET,
            "/nacos/v1/ns/instance",
            ("orders", "10.0.0.2", "8080"),
            &[],
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // An unknown service lists empty, never 404.
    let empty = server.list("ghost", &[]).await;
    assert_eq!(empty["hosts"].as_array().unwrap().len(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn beat_contract_matches_nacos() {
    let server = TestServer::start().await;
    // Unknown instance without beat JSON: 20404 so the client registers again.
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("DEFAULT_GROUP@@pay", "10.0.0.7", "9000"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["code"], 20404);
    assert_eq!(reply["clientBeatInterval"], 5000);

    // A full beat (Java 1.x sends it in the PUT body) registers the instance from it.
    let beat = r#"{"cluster":"","ip":"10.0.0.7","metadata":{"preserved.heart.beat.interval":"3000"},"period":3000,"port":9000,"scheduled":false,"serviceName":"DEFAULT_GROUP@@pay","stopped":false,"weight":2.0}"#;
    let resp = server
        .http
        .put(format!("{}/nacos/v1/ns/instance/beat", server.base))
        .query(&[
            ("serviceName", "DEFAULT_GROUP@@pay"),
            ("namespaceId", "public"),
        ])
        .form(&[("beat", beat)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["code"], 10200);
    assert_eq!(reply["clientBeatInterval"], 3000);
    assert_eq!(reply["lightBeatEnabled"], true);
    let list = server.list("pay", &[]).await;
    assert_eq!(list["hosts"][0]["weight"], 2.0);

    // A light beat now finds it.
    let (_, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("pay", "10.0.0.7", "9000"),
            &[],
        )
        .await;
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["code"], 10200);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ip", "10.0.0.1"), ("port", "80")], "serviceName"),
        (
            &[("serviceName", "@@svc"), ("ip", "10.0.0.1"), ("port", "80")],
            "serviceName",
        ),
        (
            &[
                ("serviceName", "a@@b@@c"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
            ],
            "serviceName",
        ),
        (
            &[
                ("serviceName", "has space"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
            ],
            "serviceName",
        ),
        (&[("serviceName", "svc"), ("port", "80")], "ip"),
        (
            &[("serviceName", "svc"), ("ip", "10.0.0.300"), ("port", "80")],
            "ip",
        ),
        (
            &[("serviceName", "svc"), ("ip", "not an ip"), ("port", "80")],
            "ip",
        ),
        (&[("serviceName", "svc"), ("ip", "10.0.0.1")], "port"),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "eighty"),
            ],
            "port",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "70000"),
            ],
            "port",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
                ("weight", "heavy"),
            ],
            "weight",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
                ("weight", "20000"),
            ],
            "weight",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
                ("metadata", "{bad"),
            ],
            "metadata",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
                ("clusterName", "a b"),
            ],
            "clusterName",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("ip", "10.0.0.1"),
                ("port", "80"),
                ("namespaceId", "a/b"),
            ],
            "namespaceId",
        ),
    ];
    for (params, field) in cases {
        let (status, body) = server
            .call(Method::POST, "/nacos/v1/ns/instance", params)
            .await;
        assert_eq!(status, 400, "{params:?} -> {body}");
        assert!(
            body.contains(field),
            "{params:?}: message {body:?} names {field}"
        );
    }
    let beats: &[(&[(&str, &str)], &str)] = &[
        (&[("serviceName", "svc"), ("beat", "{not json")], "beat"),
        (
            &[
                ("serviceName", "svc"),
                ("beat", r#"{"ip":"10.0.0.1","port":99999}"#),
            ],
            "beat",
        ),
        (
            &[
                ("serviceName", "svc"),
                ("beat", r#"{"ip":"x y","port":80}"#),
            ],
            "beat",
        ),
        (&[("serviceName", "svc"), ("ip", "10.0.0.1")], "port"),
    ];
    for (params, field) in beats {
        let (status, body) = server
            .call(Method::PUT, "/nacos/v1/ns/instance/beat", params)
            .await;
        assert_eq!(status, 400, "{params:?} -> {body}");
        assert!(
            body.contains(field),
            "{params:?}: message {body:?} names {field}"
        );
    }
    let (status, body) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/service",
            &[("serviceName", "svc"), ("protectThreshold", "2")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("protectThreshold"));
    // Nothing was registered by any of these.
    let (_, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/operator/metrics",
            &[("onlyStatus", "false")],
        )
        .await;
    let metrics: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metrics["instanceCount"], 0);
    assert_eq!(metrics["serviceCount"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn service_api_creates_updates_lists_and_removes() {
    let server = TestServer::start().await;
    let create = |name: &'static str| {
        let server = &server;
        async move {
            server
                .call(
                    Method::POST,
                    "/nacos/v1/ns/service",
                    &[
                        ("serviceName", name),
                        ("protectThreshold", "0.3"),
                        ("metadata", "k=v"),
                    ],
                )
                .await
        }
    };
    assert_eq!(create("alpha").await, (200, "ok".to_string()));
    let (status, body) = create("alpha").await;
    assert_eq!(status, 400);
    assert!(body.contains("already exists"), "{body}");
    create("beta").await;
    create("gamma").await;
    // A service that registration created exists too (Nacos 2.x).
    server
        .register("auto", "10.0.0.9", 80, &[("namespaceId", "scratch")])
        .await;
    let (status, body) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/service",
            &[("serviceName", "auto"), ("namespaceId", "scratch")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already exists"), "{body}");

    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", "alpha")],
        )
        .await;
    assert_eq!(status, 200);
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["name"], "alpha");
    assert_eq!(detail["namespaceId"], "public");
    assert_eq!(detail["groupName"], "DEFAULT_GROUP");
    assert!((detail["protectThreshold"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(detail["metadata"]["k"], "v");
    assert_eq!(detail["selector"]["type"], "none");

    let (status, _) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/service",
            &[("serviceName", "alpha")],
        )
        .await;
    assert_eq!(status, 400, "protectThreshold is required on update");
    let (status, _) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/service",
            &[("serviceName", "alpha"), ("protectThreshold", "0.5")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/service",
            &[("serviceName", "nope"), ("protectThreshold", "0.5")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("service not found"), "{body}");

    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service/list",
            &[("pageNo", "1"), ("pageSize", "2")],
        )
        .await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["count"], 3);
    assert_eq!(page["doms"], serde_json::json!(["alpha", "beta"]));
    let (_, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service/list",
            &[("pageNo", "2"), ("pageSize", "2")],
        )
        .await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["doms"], serde_json::json!(["gamma"]));
    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service/list",
            &[("pageSize", "2")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("pageNo"));

    // A service made by the API is persistent (Nacos 2.x).
    server
        .register("alpha", "10.0.0.1", 80, &[("ephemeral", "false")])
        .await;
    let (status, body) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/service",
            &[("serviceName", "alpha")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("not empty"), "{body}");
    let (status, _) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/service",
            &[("serviceName", "beta")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/service",
            &[("serviceName", "beta")],
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = server
        .call(Method::GET, "/nacos/v1/ns/operator/metrics", &[])
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"UP"}"#));
    let (status, body) = server
        .call(Method::GET, "/nacos/v1/console/health/liveness", &[])
        .await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    server.shutdown().await;
}
