//! CP naming data on one node (issue #13): persistent instances, a service's protect
//! threshold and metadata, and a cluster's checker settings go through the node's
//! one-member Raft group, so they survive a restart (graceful, and SIGKILL of the real
//! binary) with no setting to turn on.

use reqwest::Method;

use crate::binary::spawn_nacre;
use crate::support::TestServer;

async fn register_persistent(server: &TestServer, service: &str, ip: &str, port: u16) {
    let port = port.to_string();
    let (status, body) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", service),
                ("ip", ip),
                ("port", &port),
                ("ephemeral", "false"),
                ("weight", "3"),
                ("metadata", "role=primary"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// What a reader sees of a service: instances (ip, port, weight, metadata), protect
/// threshold, metadata, and the DEFAULT cluster's checker.
async fn cp_view(server: &TestServer, service: &str) -> (Vec<String>, String) {
    let list = server.list(service, &[]).await;
    let mut instances: Vec<String> = list["hosts"]
        .as_array()
        .map(|hosts| {
            hosts
                .iter()
                .map(|h| {
                    format!(
                        "{}:{} w={} meta={} ephemeral={}",
                        h["ip"].as_str().unwrap_or_default(),
                        h["port"],
                        h["weight"],
                        h["metadata"],
                        h["ephemeral"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    instances.sort();
    let (status, detail) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", service)],
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    let detail: serde_json::Value = serde_json::from_str(&detail).expect("service JSON");
    let settings = format!(
        "threshold={} metadata={} clusters={}",
        detail["protectThreshold"], detail["metadata"], detail["clusters"]
    );
    (instances, settings)
}

#[tokio::test]
async fn persistent_data_survives_a_restart_of_a_single_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let start = || {
        let data = data.clone();
        TestServer::start_with(move |s| {
            s.data.dir = data;
            s.health.enabled = false;
        })
    };
    let server = start().await;
    register_persistent(&server, "db", "10.0.0.7", 3306).await;
    register_persistent(&server, "db", "10.0.0.8", 3306).await;
    let (status, body) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/service",
            &[
                ("serviceName", "db"),
                ("protectThreshold", "0.5"),
                ("metadata", "owner=dba"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/cluster",
            &[
                ("serviceName", "db"),
                ("clusterName", "DEFAULT"),
                ("checkPort", "3306"),
                ("useInstancePort4Check", "false"),
                (
                    "healthChecker",
                    r#"{"type":"MYSQL","user":"probe","pwd":"","cmd":"select 1"}"#,
                ),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // One removed before the restart stays removed.
    let (status, _) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "db"),
                ("ip", "10.0.0.8"),
                ("port", "3306"),
                ("ephemeral", "false"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    // An ephemeral instance is Distro's, not Raft's: it does not come back.
    server.register("web", "10.0.1.1", 80, &[]).await;
    let before = cp_view(&server, "db").await;
    assert_eq!(before.0.len(), 1, "{before:?}");
    assert!(before.1.contains("threshold=0.5"), "{before:?}");
    assert!(before.1.contains("MYSQL"), "{before:?}");
    server.shutdown().await;

    let server = start().await;
    assert_eq!(
        cp_view(&server, "db").await,
        before,
        "CP data after a restart"
    );
    let (status, _) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", "web")],
        )
        .await;
    assert_ne!(
        status, 200,
        "the ephemeral service is gone after the restart"
    );
    // Writes go on after the restart, and a second restart keeps them too.
    register_persistent(&server, "db", "10.0.0.9", 3306).await;
    let after = cp_view(&server, "db").await;
    assert_eq!(after.0.len(), 2, "{after:?}");
    server.shutdown().await;
    let server = start().await;
    assert_eq!(cp_view(&server, "db").await, after);
    server.shutdown().await;
}

/// 300 persistent registrations from 12 concurrent clients to the real binary, a
/// SIGKILL right after the last acknowledgement, a restart on the same data dir:
/// every acknowledged registration is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_persistent_registration_survives_a_hard_kill() {
    const INSTANCES: usize = 300;
    const CLIENTS: usize = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut child, http, _) = spawn_nacre(&data, &[]);
    let base = format!("http://{http}");
    let client = crate::support::admin_client(&base, &data).await;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (c..INSTANCES).step_by(CLIENTS) {
                let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
                let resp = client
                    .post(format!("{base}/nacos/v1/ns/instance"))
                    .form(&[
                        ("serviceName", "kept"),
                        ("ip", ip.as_str()),
                        ("port", "5432"),
                        ("ephemeral", "false"),
                    ])
                    .send()
                    .await
                    .expect("register");
                if resp.status() == 200 {
                    acked.push(ip);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("client task"));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(
        acked.len(),
        INSTANCES,
        "every registration was acknowledged"
    );

    let (mut child, http, _) = spawn_nacre(&data, &[]);
    let base = format!("http://{http}");
    let client = crate::support::admin_client(&base, &data).await;
    let list = client
        .get(format!("{base}/nacos/v1/ns/instance/list"))
        .query(&[("serviceName", "kept"), ("healthyOnly", "false")])
        .send()
        .await
        .expect("list")
        .json::<serde_json::Value>()
        .await
        .expect("list JSON");
    let mut found: Vec<String> = list["hosts"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|h| h["ip"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    child.kill().expect("stop");
    let _ = child.wait();
    found.sort();
    acked.sort();
    assert_eq!(
        found, acked,
        "every acknowledged registration after SIGKILL"
    );
}
