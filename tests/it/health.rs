//! Persistent instances and their probes against real targets: a TCP listener the test
//! opens and closes, an HTTP server whose status the test sets, and the MariaDB of this
//! machine. DNS, the list API and push subscribers follow every change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use hickory_net::proto::rr::RecordType;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::*;

/// A node whose probes run every 100 ms and flip after 2 results.
/// Pushes are not resent within a test (a slow ack would otherwise bring a resend of
/// an older push).
async fn probing_server() -> TestServer {
    TestServer::start_with(|s| {
        allow_loopback_probes(s);
        s.health.interval_ms = 100;
        s.health.jitter_ms = 20;
        s.health.timeout_ms = 500;
        s.health.check_times = 2;
        s.push.ack_timeout_ms = 30_000;
    })
    .await
}

const PERSISTENT: (&str, &str) = ("ephemeral", "false");

/// The test's targets listen on loopback, which probes may not reach by default.
pub fn allow_loopback_probes(s: &mut nacre::settings::Settings) {
    s.health.allow_targets = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    s.health.deny_targets = Vec::new();
}

async fn healthy_in_list(server: &TestServer, service: &str) -> Vec<bool> {
    server.list(service, &[]).await["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["healthy"] == true)
        .collect()
}

async fn dns_a(server: &TestServer, service: &str) -> Vec<String> {
    let mut client = udp_client(server.dns_addr()).await;
    let name = format!("{service}.DEFAULT_GROUP.svc.");
    addresses(&query(&mut client, &name, RecordType::A).await.answers)
}

/// Waits until the instance's health is `healthy` in the list API and DNS agrees.
async fn wait_health(server: &TestServer, service: &str, ip: &str, healthy: bool) {
    wait_until(
        Duration::from_secs(5),
        &format!("{service} healthy={healthy}"),
        || async {
            healthy_in_list(server, service).await == vec![healthy]
                && (dns_a(server, service).await == vec![ip.to_string()]) == healthy
        },
    )
    .await;
}

async fn set_cluster(server: &TestServer, service: &str, checker: &str) -> (u16, String) {
    server
        .call(
            Method::PUT,
            "/nacos/v1/ns/cluster",
            &[
                ("serviceName", service),
                ("clusterName", "DEFAULT"),
                ("checkPort", "80"),
                ("useInstancePort4Check", "true"),
                ("healthChecker", checker),
            ],
        )
        .await
}

/// Accepts connections on `listener` until the task is aborted.
fn accept_all(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

#[tokio::test]
async fn persistent_instances_live_without_beats_and_kinds_do_not_mix() {
    let server = TestServer::start_with(|s| s.health.enabled = false).await;
    let short = (
        "metadata",
        r#"{"preserved.heart.beat.interval":"50","preserved.heart.beat.timeout":"100","preserved.ip.delete.timeout":"200"}"#,
    );
    server
        .register("db", "10.8.0.1", 3306, &[PERSISTENT, short])
        .await;
    // Past its beat and delete timeouts without a beat it is still there and healthy.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(healthy_in_list(&server, "db").await, vec![true]);
    let host = &server.list("db", &[]).await["hosts"][0];
    assert_eq!(host["ephemeral"], false);

    // An ephemeral instance cannot join a persistent service, nor the other way round.
    let (status, body) = server
        .instance(
            Method::POST,
            "/nacos/v1/ns/instance",
            ("db", "10.8.0.2", "3306"),
            &[],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "Current service DEFAULT_GROUP@@db is persistent service, can't register ephemeral instance."
    );
    server.register("web", "10.8.1.1", 80, &[]).await;
    let (status, body) = server
        .instance(
            Method::POST,
            "/nacos/v1/ns/instance",
            ("web", "10.8.1.2", "80"),
            &[PERSISTENT],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("is ephemeral service, can't register persistent instance"),
        "{body}"
    );
    // POST /ns/service makes a persistent service (Nacos 2.x).
    let (status, _) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/service",
            &[("serviceName", "made")],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .instance(
            Method::POST,
            "/nacos/v1/ns/instance",
            ("made", "10.8.2.1", "80"),
            &[],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    server.register("made", "10.8.2.1", 80, &[PERSISTENT]).await;

    // A beat does not reach a persistent instance (the client would register it again).
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("db", "10.8.0.1", "3306"),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 20404);

    // Deregistration removes only the kind it names.
    let delete = |extra: &'static [(&'static str, &'static str)]| {
        let server = &server;
        async move {
            server
                .instance(
                    Method::DELETE,
                    "/nacos/v1/ns/instance",
                    ("db", "10.8.0.1", "3306"),
                    extra,
                )
                .await
        }
    };
    assert_eq!(delete(&[]).await, (200, "ok".to_string()));
    assert_eq!(
        healthy_in_list(&server, "db").await,
        vec![true],
        "still there"
    );
    assert_eq!(delete(&[PERSISTENT]).await, (200, "ok".to_string()));
    assert!(healthy_in_list(&server, "db").await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn tcp_probe_follows_a_listener_and_subscribers_hear_of_it() {
    let server = probing_server().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    server
        .register(
            "tcp-svc",
            "127.0.0.1",
            port,
            &[PERSISTENT, ("healthy", "false")],
        )
        .await;
    let receiver = PushReceiver::bind().await;
    receiver.subscribe(&server, "tcp-svc").await;

    let accepting = accept_all(listener);
    wait_health(&server, "tcp-svc", "127.0.0.1", true).await;
    let push = receiver.next(Duration::from_secs(2)).await.expect("push");
    assert_eq!(push.data["hosts"][0]["healthy"], true);
    receiver.ack(&push).await;
    let (status, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", "tcp-svc")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["clusters"][0]["healthChecker"]["type"],
        "TCP"
    );

    // Closed: the next probe is refused and the instance goes down at once.
    accepting.abort();
    let _ = accepting.await;
    wait_health(&server, "tcp-svc", "127.0.0.1", false).await;
    let push = receiver.next(Duration::from_secs(2)).await.expect("push");
    assert_eq!(push.data["hosts"][0]["healthy"], false);
    receiver.ack(&push).await;

    // Open again on the same port: healthy after two good probes.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let accepting = accept_all(listener);
    wait_health(&server, "tcp-svc", "127.0.0.1", true).await;
    accepting.abort();
    let metrics = server
        .call(
            Method::GET,
            "/nacos/v1/ns/operator/metrics",
            &[("onlyStatus", "false")],
        )
        .await
        .1;
    let metrics: Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(metrics["healthCheckRoundTargets"], 1, "{metrics}");
    assert_eq!(metrics["subscribeCount"], 1, "{metrics}");
    server.shutdown().await;
}

/// A one-line HTTP server: answers every request with the status in `status` and
/// keeps the request heads it saw.
struct StatusServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl StatusServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (status.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (st, sn) = (st.clone(), sn.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    sn.lock().push(String::from_utf8_lossy(&head).to_string());
                    let code = st.load(Ordering::Relaxed);
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self {
            addr,
            status,
            seen,
            task,
        }
    }
}

#[tokio::test]
async fn http_probe_follows_the_status_and_sends_path_and_headers() {
    let server = probing_server().await;
    let http = StatusServer::start().await;
    server
        .register(
            "http-svc",
            "127.0.0.1",
            http.addr.port(),
            &[PERSISTENT, ("healthy", "false")],
        )
        .await;
    let checker =
        r#"{"type":"HTTP","path":"/ready","headers":"X-Probe:nacre","expectedResponseCode":200}"#;
    assert_eq!(
        set_cluster(&server, "http-svc", checker).await,
        (200, "ok".to_string())
    );
    wait_health(&server, "http-svc", "127.0.0.1", true).await;
    {
        let seen = http.seen.lock();
        let last = seen.last().expect("a request");
        assert!(last.starts_with("GET /ready HTTP/1.1\r\n"), "{last}");
        assert!(
            last.to_ascii_lowercase().contains("x-probe: nacre"),
            "{last}"
        );
    }
    http.status.store(500, Ordering::Relaxed);
    wait_health(&server, "http-svc", "127.0.0.1", false).await;
    http.status.store(200, Ordering::Relaxed);
    wait_health(&server, "http-svc", "127.0.0.1", true).await;

    // The checker shows in the service detail.
    let (_, body) = server
        .call(
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", "http-svc")],
        )
        .await;
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["clusters"][0]["healthChecker"]["path"], "/ready");
    http.task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn mysql_probe_passes_on_the_local_mariadb_and_fails_with_a_wrong_password() {
    let server = probing_server().await;
    for (service, pwd) in [("db-ok", ""), ("db-bad", "wrong-password")] {
        server
            .register(
                service,
                "127.0.0.1",
                3306,
                &[
                    PERSISTENT,
                    ("healthy", if pwd.is_empty() { "false" } else { "true" }),
                ],
            )
            .await;
        let checker = format!(r#"{{"type":"MYSQL","user":"root","pwd":"{pwd}","cmd":"select 1"}}"#);
        let (status, body) = server
            .call(
                Method::PUT,
                "/nacos/v1/ns/cluster",
                &[
                    ("serviceName", service),
                    ("clusterName", "DEFAULT"),
                    ("checkPort", "3306"),
                    ("useInstancePort4Check", "true"),
                    ("healthChecker", checker.as_str()),
                ],
            )
            .await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    wait_health(&server, "db-ok", "127.0.0.1", true).await;
    wait_health(&server, "db-bad", "127.0.0.1", false).await;
    server.shutdown().await;
}

#[tokio::test]
async fn manual_health_only_for_clusters_without_a_probe() {
    // No probe rounds: the instance is not reachable, and only the hand sets health.
    let server = TestServer::start_with(|s| s.health.enabled = false).await;
    server
        .register("manual", "10.8.3.1", 80, &[PERSISTENT])
        .await;
    let set = |healthy: &'static str| {
        let server = &server;
        async move {
            server
                .instance(
                    Method::PUT,
                    "/nacos/v1/ns/health/instance",
                    ("manual", "10.8.3.1", "80"),
                    &[("healthy", healthy)],
                )
                .await
        }
    };
    // The default checker is TCP: hands off.
    let (status, body) = set("false").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "health check is still working, service: DEFAULT_GROUP@@manual, cluster: DEFAULT"
    );
    assert_eq!(
        set_cluster(&server, "manual", r#"{"type":"NONE"}"#).await,
        (200, "ok".to_string())
    );
    assert_eq!(set("false").await, (200, "ok".to_string()));
    wait_health(&server, "manual", "10.8.3.1", false).await;
    assert_eq!(set("true").await, (200, "ok".to_string()));
    wait_health(&server, "manual", "10.8.3.1", true).await;

    // Bad input names the field and changes nothing.
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/health/instance",
            ("manual", "10.8.3.1", "80"),
            &[],
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Param 'healthy' is required.")
    );
    assert_eq!(set("maybe").await.0, 400);
    for (checker, field) in [
        (r#"{"type":"ICMP"}"#, "healthChecker"),
        ("{", "healthChecker"),
    ] {
        let (status, body) = set_cluster(&server, "manual", checker).await;
        assert_eq!(status, 400);
        assert!(body.contains(field), "{body}");
    }
    let (status, body) = server
        .call(
            Method::PUT,
            "/nacos/v1/ns/cluster",
            &[
                ("serviceName", "manual"),
                ("clusterName", "DEFAULT"),
                ("checkPort", "99999"),
                ("useInstancePort4Check", "true"),
                ("healthChecker", r#"{"type":"TCP"}"#),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("checkPort"), "{body}");
    let (status, body) = set_cluster(&server, "nowhere", r#"{"type":"NONE"}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("service not found"), "{body}");
    assert_eq!(healthy_in_list(&server, "manual").await, vec![true]);
    let (status, body) = server
        .call(Method::GET, "/nacos/v1/ns/health/checkers", &[])
        .await;
    assert_eq!(status, 200);
    let checkers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(checkers["HTTP"]["expectedResponseCode"], 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_hanging_target_does_not_hold_up_the_others() {
    // Probes may take 30 s; a target that never answers keeps one of the two slots
    // busy all that time, and the other instances are still checked every round.
    let server = TestServer::start_with(|s| {
        allow_loopback_probes(s);
        s.health.interval_ms = 100;
        s.health.jitter_ms = 20;
        s.health.timeout_ms = 30_000;
        s.health.check_times = 2;
        s.health.max_concurrency = 2;
    })
    .await;
    // Accepts connections and never answers the HTTP request.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    server
        .register("hangs", "127.0.0.1", silent_port, &[PERSISTENT])
        .await;
    assert_eq!(
        set_cluster(&server, "hangs", r#"{"type":"HTTP","path":"/"}"#).await,
        (200, "ok".to_string())
    );
    // On every address, so 127.0.0.2 and the others reach it too.
    let good = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let good_port = good.local_addr().unwrap().port();
    let accepting = accept_all(good);
    for i in 0..4 {
        server
            .register(
                "answers",
                &format!("127.0.0.{}", i + 1),
                good_port,
                &[PERSISTENT, ("healthy", "false")],
            )
            .await;
    }
    wait_until(
        Duration::from_secs(10),
        "the answering ones healthy",
        || async { healthy_in_list(&server, "answers").await == vec![true; 4] },
    )
    .await;
    assert_eq!(
        healthy_in_list(&server, "hangs").await,
        vec![true],
        "its first probe is still waiting"
    );
    held.abort();
    accepting.abort();
    server.shutdown().await;
}
