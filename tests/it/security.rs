//! The security fixes of the hardening pass, each as a user with rights on one
//! namespace would try them: files of the data dir, namespaces beyond one's grants,
//! history authorship, padded user names.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;

use crate::support::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_dir_and_the_database_files_are_the_owner_s_only() {
    // A data dir and a database left open to everyone by an older version.
    let server = TestServer::start_with(|s| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&s.data.dir)
            .unwrap();
        let db = s.data.dir.join("nacre.db");
        std::fs::File::create(&db).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    })
    .await;
    // A publish makes sure the write-ahead log and its index exist.
    let (status, _) = server
        .call_form(
            Method::POST,
            "/nacos/v1/cs/configs",
            &[("dataId", "d"), ("group", "G"), ("content", "v")],
        )
        .await;
    assert_eq!(status, 200);
    let dir = server.data_dir();
    assert_eq!(mode(dir), 0o700);
    for file in ["nacre.db", "nacre.db-wal", "nacre.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    server.shutdown().await;

    let fresh = TestServer::start().await;
    assert_eq!(mode(fresh.data_dir()), 0o700);
    assert_eq!(mode(&fresh.data_dir().join("nacre.db")), 0o600);
    fresh.shutdown().await;
}

#[tokio::test]
async fn a_user_lists_only_the_namespaces_of_their_grants() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    for ns in ["dev", "prod"] {
        let (status, _) = server
            .call_form(
                Method::POST,
                "/nacos/v1/console/namespaces",
                &[("customNamespaceId", ns), ("namespaceName", ns)],
            )
            .await;
        assert_eq!(status, 200);
    }
    user_with_grant(&server, "alice", "alice-password-1", "dev:*:*", "rw").await;
    let alice = client_with_token(&login(&base, "alice", "alice-password-1").await);
    let ids = |body: serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_string())
            .collect()
    };
    let url = format!("{base}/nacos/v1/console/namespaces");
    let mine: serde_json::Value = alice.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(ids(mine), vec!["dev"]);
    let all: serde_json::Value = server
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(all), vec!["", "dev", "prod"]);
    for (ns, want) in [("dev", 200), ("prod", 404), ("", 404)] {
        assert_eq!(
            status_of(
                alice
                    .get(&url)
                    .query(&[("show", "all"), ("namespaceId", ns)])
            )
            .await,
            want,
            "{ns:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn history_names_the_signed_in_author_of_each_change() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    let (status, _) = server
        .call_form(
            Method::POST,
            "/nacos/v1/console/namespaces",
            &[("customNamespaceId", "dev"), ("namespaceName", "dev")],
        )
        .await;
    assert_eq!(status, 200);
    user_with_grant(&server, "alice", "alice-password-1", "dev:*:*", "rw").await;
    let alice = client_with_token(&login(&base, "alice", "alice-password-1").await);
    let configs = format!("{base}/nacos/v1/cs/configs");
    let key = [("dataId", "d"), ("group", "G"), ("tenant", "dev")];
    // A signed-in user cannot name another author.
    for content in ["v1", "v2"] {
        let mut form = key.to_vec();
        form.extend([("content", content), ("src_user", "mallory")]);
        assert_eq!(status_of(alice.post(&configs).form(&form)).await, 200);
    }
    assert_eq!(
        status_of(server.http.delete(&configs).query(&key)).await,
        200
    );
    let page: serde_json::Value = alice
        .get(format!("{base}/nacos/v1/cs/history"))
        .query(&[("search", "accurate"), ("dataId", "d"), ("group", "G")])
        .query(&[("tenant", "dev")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows: Vec<(String, String)> = page["pageItems"]
        .as_array()
        .expect("pageItems")
        .iter()
        .map(|r| {
            (
                r["opType"].as_str().unwrap().trim().to_string(),
                r["srcUser"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [("D", "nacos"), ("U", "alice"), ("I", "alice")];
    assert_eq!(
        rows,
        want.map(|(o, u)| (o.to_string(), u.to_string())).to_vec()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_padded_user_name_is_no_other_spelling_of_a_user() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    let password = admin_password(server.data_dir());
    let plain = reqwest::Client::new();
    for name in ["nacos ", " nacos", "nacos\t", "NACOS"] {
        let login = plain
            .post(format!("{base}/nacos/v1/auth/login"))
            .form(&[("username", name), ("password", password.as_str())]);
        assert_eq!(status_of(login).await, 403, "login as {name:?}");
        let call = plain
            .get(format!("{base}/nacos/v1/ns/service/list"))
            .query(&[
                ("username", name),
                ("password", password.as_str()),
                ("pageNo", "1"),
                ("pageSize", "10"),
            ]);
        assert_eq!(status_of(call).await, 403, "request as {name:?}");
    }
    let login = plain
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[("username", "nacos"), ("password", password.as_str())]);
    assert_eq!(status_of(login).await, 200);
    server.shutdown().await;
}

/// A node whose probes run every 100 ms and flip after 2 results.
async fn probing(configure: impl FnOnce(&mut nacre::settings::Settings)) -> TestServer {
    TestServer::start_with(|s| {
        s.health.interval_ms = 100;
        s.health.jitter_ms = 20;
        s.health.timeout_ms = 500;
        s.health.check_times = 2;
        configure(s);
    })
    .await
}

/// The `healthy` flags of a service's instances in namespace `ns`.
async fn health_of(server: &TestServer, ns: &str, service: &str) -> Vec<bool> {
    let list = server.list(service, &[("namespaceId", ns)]).await;
    list["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["healthy"] == true)
        .collect()
}

async fn create_namespace(server: &TestServer, ns: &str) {
    let (status, _) = server
        .call_form(
            Method::POST,
            "/nacos/v1/console/namespaces",
            &[("customNamespaceId", ns), ("namespaceName", ns)],
        )
        .await;
    assert_eq!(status, 200);
}

fn cluster_form<'a>(ns: &'a str, service: &'a str, checker: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("namespaceId", ns),
        ("serviceName", service),
        ("clusterName", "DEFAULT"),
        ("checkPort", "3306"),
        ("useInstancePort4Check", "true"),
        ("healthChecker", checker),
    ]
}

#[tokio::test]
async fn only_an_admin_sets_a_mysql_checker_and_it_runs_one_read_only_statement() {
    use sqlx::Connection;
    // A database of its own with a function that writes when called.
    let db = MariaDb::create().await;
    let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE written (a INT)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION writes() RETURNS INT MODIFIES SQL DATA \
         BEGIN INSERT INTO written VALUES (1); RETURN 1; END",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let server = probing(crate::health::allow_loopback_probes).await;
    let base = server.base.clone();
    create_namespace(&server, "dev").await;
    user_with_grant(&server, "alice", "alice-password-1", "dev:*:*", "rw").await;
    let alice = client_with_token(&login(&base, "alice", "alice-password-1").await);
    let register = [
        ("namespaceId", "dev"),
        ("serviceName", "db"),
        ("ip", "127.0.0.1"),
        ("port", "3306"),
        ("ephemeral", "false"),
    ];
    let instance = format!("{base}/nacos/v1/ns/instance");
    assert_eq!(status_of(alice.post(&instance).query(&register)).await, 200);
    let cluster = format!("{base}/nacos/v1/ns/cluster");

    // The repro: a namespace user's MYSQL checker with two writes.
    let writes = r#"{"type":"MYSQL","user":"root","pwd":"","cmd":"INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)"}"#;
    let (status, body) = server
        .send(alice.put(&cluster).form(&cluster_form("dev", "db", writes)))
        .await;
    assert_eq!(status, 403, "{body}");
    let select = r#"{"type":"MYSQL","user":"root","pwd":"","cmd":"select 1"}"#;
    assert_eq!(
        status_of(alice.put(&cluster).form(&cluster_form("dev", "db", select))).await,
        403,
        "no MYSQL checker at all for a namespace user"
    );
    // Even an admin sets only one read-only statement.
    for cmd in [
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
        "SELECT 1; SELECT 2",
        "SELECT 1 /*!; INSERT INTO t VALUES (1) */",
        "SELECT * FROM written FOR UPDATE",
        "SELECT SLEEP(60)",
        "DELETE FROM written",
    ] {
        let checker =
            serde_json::json!({"type": "MYSQL", "user": "root", "pwd": "", "cmd": cmd}).to_string();
        let (status, body) = server
            .send(
                server
                    .http
                    .put(&cluster)
                    .form(&cluster_form("dev", "db", &checker)),
            )
            .await;
        assert_eq!(status, 400, "{cmd}: {body}");
        assert!(body.contains("healthChecker"), "{body}");
    }
    assert_eq!(health_of(&server, "dev", "db").await, vec![true]);

    // A SELECT of a function that writes passes the parser; the server's read-only
    // transaction refuses the write, the probe fails, nothing is written.
    let call = serde_json::json!({
        "type": "MYSQL", "user": "root", "pwd": "",
        "cmd": format!("SELECT {}.writes()", db.name),
    })
    .to_string();
    assert_eq!(
        status_of(
            server
                .http
                .put(&cluster)
                .form(&cluster_form("dev", "db", &call))
        )
        .await,
        200
    );
    wait_until(Duration::from_secs(5), "db unhealthy", || async {
        health_of(&server, "dev", "db").await == vec![false]
    })
    .await;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM written")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the probe wrote nothing");

    // Nacos's replica check runs (a prepared SHOW) and finds a writable server.
    let read_only = r#"{"type":"MYSQL","user":"root","pwd":"","cmd":"show global variables where variable_name='read_only'"}"#;
    assert_eq!(
        status_of(
            server
                .http
                .put(&cluster)
                .form(&cluster_form("dev", "db", read_only))
        )
        .await,
        200
    );
    wait_until(Duration::from_secs(5), "db healthy", || async {
        health_of(&server, "dev", "db").await == vec![true]
    })
    .await;
    // The checker's credentials go where instances are: a namespace user cannot add
    // one (their own fake MySQL server) to that cluster.
    let mut rogue = register.to_vec();
    rogue[2] = ("ip", "10.66.0.1");
    assert_eq!(status_of(alice.post(&instance).query(&rogue)).await, 403);

    // The password never shows, to the admin or to a reader; a form sent back with
    // the mask keeps it.
    let secret = r#"{"type":"MYSQL","user":"root","pwd":"s3cret-pw","cmd":"select 1"}"#;
    assert_eq!(
        status_of(
            server
                .http
                .put(&cluster)
                .form(&cluster_form("dev", "db", secret))
        )
        .await,
        200
    );
    let masked = r#"{"type":"MYSQL","user":"root","pwd":"******","cmd":"select 2"}"#;
    assert_eq!(
        status_of(
            server
                .http
                .put(&cluster)
                .form(&cluster_form("dev", "db", masked))
        )
        .await,
        200
    );
    for client in [&server.http, &alice] {
        let (status, body) = server
            .send(
                client
                    .get(format!("{base}/nacos/v1/ns/service"))
                    .query(&[("namespaceId", "dev"), ("serviceName", "db")]),
            )
            .await;
        assert_eq!(status, 200);
        assert!(!body.contains("s3cret"), "{body}");
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
        let checker = &detail["clusters"][0]["healthChecker"];
        assert_eq!(checker["pwd"], "******");
        assert_eq!(checker["cmd"], "select 2");
    }
    // With the kept password (a wrong one for root) the probe fails.
    wait_until(Duration::from_secs(5), "db unhealthy again", || async {
        health_of(&server, "dev", "db").await == vec![false]
    })
    .await;
    server.shutdown().await;
}

/// Counts the connections made to a listener on every address.
async fn counting_listener() -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count, task)
}

#[tokio::test]
async fn probes_never_reach_a_target_outside_allow_targets() {
    let (open_port, connections, task) = counting_listener().await;
    // The port-scan repro: 21 persistent instances around one open port, plus the
    // open port under other spellings of loopback.
    let server = probing(|_| {}).await;
    let first = open_port.saturating_sub(10).max(1);
    for port in first..first + 21 {
        server
            .register("scan", "127.0.0.1", port, &[("ephemeral", "false")])
            .await;
    }
    for ip in [
        "::ffff:127.0.0.1",
        "localhost",
        "169.254.169.254",
        "0.0.0.0",
    ] {
        server
            .register("other", ip, open_port, &[("ephemeral", "false")])
            .await;
    }
    wait_until(Duration::from_secs(5), "every target refused", || async {
        health_of(&server, "public", "scan").await == vec![false; 21]
            && health_of(&server, "public", "other").await == vec![false; 4]
    })
    .await;
    // Several rounds later still nothing reached the open port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    server.shutdown().await;

    // Allowed everywhere and denied nowhere, the unspecified address is still never
    // probed, while loopback now is.
    let open = probing(|s| {
        s.health.allow_targets = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        s.health.deny_targets = Vec::new();
    })
    .await;
    for ip in ["0.0.0.0", "::"] {
        open.register("unspecified", ip, open_port, &[("ephemeral", "false")])
            .await;
    }
    open.register(
        "loopback",
        "127.0.0.1",
        open_port,
        &[("ephemeral", "false"), ("healthy", "false")],
    )
    .await;
    wait_until(Duration::from_secs(5), "loopback probed", || async {
        health_of(&open, "public", "loopback").await == vec![true]
            && health_of(&open, "public", "unspecified").await == vec![false; 2]
    })
    .await;
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    open.shutdown().await;
    task.abort();
}

#[tokio::test]
async fn forbidden_probe_headers_and_status_codes_are_refused() {
    let server = TestServer::start_with(|s| s.health.enabled = false).await;
    server
        .register("web", "10.9.0.1", 80, &[("ephemeral", "false")])
        .await;
    let put = |checker: String| {
        let server = &server;
        async move {
            server
                .call_form(
                    Method::PUT,
                    "/nacos/v1/ns/cluster",
                    &[
                        ("serviceName", "web"),
                        ("clusterName", "DEFAULT"),
                        ("checkPort", "80"),
                        ("useInstancePort4Check", "true"),
                        ("healthChecker", &checker),
                    ],
                )
                .await
        }
    };
    for header in [
        "Host:internal.example",
        "host:x",
        "Authorization:Bearer abc",
        "Cookie:session=1",
        "Content-Length:10",
        "Connection:keep-alive",
        "Transfer-Encoding:chunked",
        "Proxy-Authorization:Basic x",
        "X-Forwarded-For:10.0.0.1",
        "X-Real-IP:10.0.0.1",
        "Accept:*/*|Host:b",
    ] {
        let checker = serde_json::json!({"type": "HTTP", "path": "/", "headers": header});
        let (status, body) = put(checker.to_string()).await;
        assert_eq!(status, 400, "{header}: {body}");
        assert!(
            body.contains("healthChecker") && body.contains("not allowed"),
            "{body}"
        );
    }
    for code in [302, 401, 404, 500] {
        let checker = serde_json::json!({"type": "HTTP", "expectedResponseCode": code});
        let (status, body) = put(checker.to_string()).await;
        assert_eq!(status, 400, "{code}: {body}");
    }
    let fine = serde_json::json!({"type": "HTTP", "path": "/health", "headers": "Accept:text/plain|X-Probe:1", "expectedResponseCode": 204});
    assert_eq!(put(fine.to_string()).await, (200, "ok".to_string()));
    server.shutdown().await;
}

#[tokio::test]
async fn a_namespace_holds_at_most_the_configured_persistent_instances() {
    let server = TestServer::start_with(|s| {
        s.health.enabled = false;
        s.naming.max_persistent_instances_per_namespace = 3;
        s.naming.max_persistent_instances = 5;
    })
    .await;
    for i in 1..=3 {
        server
            .register(
                &format!("db{i}"),
                "10.9.1.1",
                3306,
                &[("ephemeral", "false")],
            )
            .await;
    }
    // Re-registering one that exists is no new instance.
    server
        .register("db1", "10.9.1.1", 3306, &[("ephemeral", "false")])
        .await;
    let fourth = [
        ("serviceName", "db4"),
        ("ip", "10.9.1.1"),
        ("port", "3306"),
        ("ephemeral", "false"),
    ];
    let (status, body) = server
        .call(Method::POST, "/nacos/v1/ns/instance", &fourth)
        .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("naming.max_persistent_instances_per_namespace"),
        "{body}"
    );
    // Ephemeral instances and other namespaces are not counted against it.
    server.register("web", "10.9.1.2", 80, &[]).await;
    server
        .register(
            "db4",
            "10.9.1.1",
            3306,
            &[("ephemeral", "false"), ("namespaceId", "dev")],
        )
        .await;
    // A deregistration frees a place.
    let (status, _) = server
        .call(
            Method::DELETE,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "db2"),
                ("ip", "10.9.1.1"),
                ("port", "3306"),
                ("ephemeral", "false"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .call(Method::POST, "/nacos/v1/ns/instance", &fourth)
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // Namespace ids need not exist, so the node has its own cap: 4 so far, one more.
    server
        .register(
            "db",
            "10.9.1.1",
            3306,
            &[("ephemeral", "false"), ("namespaceId", "ns2")],
        )
        .await;
    let (status, body) = server
        .call(
            Method::POST,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "db"),
                ("ip", "10.9.1.1"),
                ("port", "3306"),
                ("ephemeral", "false"),
                ("namespaceId", "ns3"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("naming.max_persistent_instances "), "{body}");
    server.shutdown().await;
}

/// Two UDP sockets on the same port: the victim's on 127.0.0.3 and the sender's own
/// on 127.0.0.1.
async fn victim_and_own_socket() -> (tokio::net::UdpSocket, tokio::net::UdpSocket) {
    for _ in 0..50 {
        let victim = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
        let port = victim.local_addr().unwrap().port();
        if let Ok(own) = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await {
            return (victim, own);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.3");
}

/// Datagrams `socket` receives within `within`.
async fn datagrams(socket: &tokio::net::UdpSocket, within: Duration) -> usize {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + within;
    let mut n = 0;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

#[tokio::test]
async fn pushes_reach_only_the_subscriber_s_own_address() {
    let server = TestServer::start_with(|s| {
        // Nothing is given up within the test, so nothing makes room.
        s.push.ack_timeout_ms = 30_000;
        s.push.max_retries = 2;
        s.push.max_unacked_per_target = 16;
    })
    .await;
    server.register("pushed", "10.7.9.1", 80, &[]).await;
    let (victim, own) = victim_and_own_socket().await;
    let port = victim.local_addr().unwrap().port().to_string();
    // The reflection repro: 256 subscriptions from 127.0.0.1 naming 127.0.0.3.
    for i in 0..256 {
        let clusters = format!("c{i}");
        let (status, _) = server
            .send(
                server
                    .request(Method::GET, "/nacos/v1/ns/instance/list")
                    .header("User-Agent", "Nacos-Java-Client:v1.4.6")
                    .query(&[
                        ("serviceName", "pushed"),
                        ("udpPort", port.as_str()),
                        ("clientIP", "127.0.0.3"),
                        ("clusters", clusters.as_str()),
                    ]),
            )
            .await;
        assert_eq!(status, 200);
    }
    server.register("pushed", "10.7.9.2", 80, &[]).await;
    let (to_victim, to_own) = tokio::join!(
        datagrams(&victim, Duration::from_secs(2)),
        datagrams(&own, Duration::from_secs(2))
    );
    assert_eq!(to_victim, 0, "nothing reaches the host clientIP names");
    // Nobody acks: at most 16 pushes wait for an ack at one address at a time, where
    // Nacos sent 1,530 datagrams.
    assert!(to_own > 0, "the sender itself is pushed to");
    assert!(to_own <= 16, "{to_own} datagrams to one address");
    server.shutdown().await;
}
