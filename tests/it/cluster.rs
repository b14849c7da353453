//! Clusters in one process: three members on 127.0.0.1 (listeners bound on port 0
//! first, so the members list names real addresses), one MariaDB database shared by
//! all, a shared token key and cluster secret. Short timings: probes every 200 ms,
//! DOWN after 600 ms.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RecordType;
use nacre::app::{App, AppError};
use nacre::cluster::responsibility::responsible_member;
use nacre::model::ClientId;
use nacre::settings::Settings;
use reqwest::Method;
use tokio::net::TcpListener;

use crate::support::{MariaDb, addresses, login, query, sorted, udp_client, wait_until};

const SECRET: &str = "it-cluster-secret";
const TOKEN_KEY: &str = "aXQtY2x1c3Rlci10b2tlbi1rZXktb2YtdGhpcnR5LXR3by1ieXRlcw==";
pub const ADMIN_PASSWORD: &str = "it-admin-password-1";

pub struct Node {
    pub app: App,
    pub base: String,
}

pub struct TestCluster {
    pub nodes: Vec<Option<Node>>,
    pub members: Vec<String>,
    dirs: Vec<PathBuf>,
    db: MariaDb,
    http: reqwest::Client,
    configure: fn(&mut Settings),
    _root: tempfile::TempDir,
}

fn no_change(_: &mut Settings) {}

impl TestCluster {
    /// `n` members, started one after the other.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, no_change).await
    }

    pub async fn start_with(n: usize, configure: fn(&mut Settings)) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            nacre::telemetry::init();
        }
        let db = MariaDb::create().await;
        let root = tempfile::tempdir().expect("tempdir");
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let members: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").to_string())
            .collect();
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| root.path().join(format!("node{i}")))
            .collect();
        let mut cluster = Self {
            nodes: Vec::new(),
            members,
            dirs,
            db,
            http: reqwest::Client::new(),
            configure,
            _root: root,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let node = cluster.launch(i, listener).await.expect("member starts");
            cluster.nodes.push(Some(node));
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        let token = login(&cluster.base(0), "nacos", ADMIN_PASSWORD).await;
        cluster.http = crate::support::client_with_token(&token);
        cluster
    }

    /// Waits until member `i`'s readiness answers 200 (it loaded a snapshot).
    pub async fn wait_ready(&self, i: usize) {
        let url = format!("{}/nacos/v1/console/health/readiness", self.base(i));
        wait_until(Duration::from_secs(10), "the member is ready", || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    fn settings(&self, i: usize) -> Settings {
        let mut s = Settings::default();
        s.http.addr = self.members[i].parse().expect("member address");
        s.dns.addr = "127.0.0.1:0".parse().unwrap();
        s.data.dir = self.dirs[i].clone();
        s.dns.zones_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        s.naming.expiry_tick_ms = 50;
        s.config.min_long_poll_ms = 200;
        s.config_store.url = self.db.url();
        s.auth.token_key = TOKEN_KEY.into();
        s.auth.admin_password = Some(ADMIN_PASSWORD.into());
        s.cluster.members = self.members.clone();
        s.cluster.node_addr = self.members[i].clone();
        s.cluster.secret = Some(SECRET.into());
        s.cluster.probe_interval_ms = 200;
        s.cluster.down_after_ms = 600;
        s.cluster.verify_interval_ms = 1_000;
        s.cluster.owner_grace_ms = 3_000;
        s.cluster.config_check_interval_ms = 1_000;
        (self.configure)(&mut s);
        s
    }

    async fn launch(&self, i: usize, listener: TcpListener) -> Result<Node, AppError> {
        let app = App::start_on(self.settings(i), listener).await?;
        Ok(Node {
            base: format!("http://{}", app.http_addr),
            app,
        })
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        &self.dirs[i]
    }

    pub fn base(&self, i: usize) -> String {
        format!("http://{}", self.members[i])
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node running")
    }

    pub fn dns(&self, i: usize) -> SocketAddr {
        self.node(i).app.dns_addr
    }

    /// Stops member `i` (its address stays in the members list).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.app.shutdown().await;
        }
    }

    /// Starts member `i` again on its address; returns once it serves (maybe not yet
    /// ready).
    pub async fn restart(&mut self, i: usize) {
        let listener = TcpListener::bind(&self.members[i]).await.expect("rebind");
        let node = self.launch(i, listener).await.expect("member restarts");
        self.nodes[i] = Some(node);
    }

    pub async fn call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> (u16, String) {
        let resp = self
            .http
            .request(method, format!("{}{}", self.node(i).base, path))
            .query(query)
            .send()
            .await
            .expect("http request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn register(
        &self,
        i: usize,
        service: &str,
        ip: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) {
        let port = port.to_string();
        let mut params = vec![
            ("serviceName", service),
            ("ip", ip),
            ("port", port.as_str()),
        ];
        params.extend_from_slice(extra);
        let (status, body) = self
            .call(i, Method::POST, "/nacos/v1/ns/instance", &params)
            .await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "register {service} {ip} on {i}"
        );
    }

    pub async fn beat(&self, i: usize, service: &str, ip: &str, port: u16) -> (u16, String) {
        let port = port.to_string();
        self.call(
            i,
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            &[
                ("serviceName", service),
                ("ip", ip),
                ("port", port.as_str()),
            ],
        )
        .await
    }

    /// The `ip`s the list API of member `i` answers for `service` (healthy only).
    pub async fn listed(&self, i: usize, service: &str) -> Vec<String> {
        let (status, body) = self
            .call(
                i,
                Method::GET,
                "/nacos/v1/ns/instance/list",
                &[("serviceName", service), ("healthyOnly", "true")],
            )
            .await;
        if status != 200 {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_str(&body).expect("list JSON");
        let ips = v["hosts"]
            .as_array()
            .map(|hosts| {
                hosts
                    .iter()
                    .filter_map(|h| h["ip"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        sorted(ips)
    }

    /// The A records member `i`'s DNS answers for `name`, or the response code.
    pub async fn dig(&self, i: usize, name: &str) -> Result<Vec<String>, ResponseCode> {
        let mut client = udp_client(self.dns(i)).await;
        let msg = query(&mut client, name, RecordType::A).await;
        match msg.response_code {
            ResponseCode::NoError => Ok(sorted(addresses(&msg.answers))),
            code => Err(code),
        }
    }

    /// A client `ip:port` (port 8080) whose responsible member is `owner`, among
    /// 10.9.<k>.<j>.
    pub fn client_owned_by(&self, owner: usize, k: u8) -> String {
        (1..=250u8)
            .map(|j| format!("10.9.{k}.{j}"))
            .find(|ip| {
                responsible_member(&self.members, &ClientId::http(ip, 8080))
                    == Some(self.members[owner].as_str())
            })
            .expect("some client hashes to every member")
    }
}

/// Short beat rules for an instance: unhealthy after 1 s, removed after 2 s silent.
const SHORT_BEATS: [(&str, &str); 1] = [(
    "metadata",
    r#"{"preserved.heart.beat.timeout":"1000","preserved.ip.delete.timeout":"2000","preserved.heart.beat.interval":"300"}"#,
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_on_one_member_is_answered_by_every_member() {
    let cluster = TestCluster::start(3).await;
    cluster.register(0, "stock", "10.0.0.1", 8080, &[]).await;
    cluster.register(1, "stock", "10.0.0.2", 8080, &[]).await;
    for i in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "DNS and list agree on every member",
            || async {
                cluster.dig(i, "stock.DEFAULT_GROUP.svc.").await
                    == Ok(vec!["10.0.0.1".into(), "10.0.0.2".into()])
                    && cluster.listed(i, "stock").await == ["10.0.0.1", "10.0.0.2"]
            },
        )
        .await;
    }
    // An update and a deregistration travel too, whatever member takes them.
    let (status, _) = cluster
        .call(
            2,
            Method::PUT,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "stock"),
                ("ip", "10.0.0.1"),
                ("port", "8080"),
                ("enabled", "false"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    cluster
        .call(
            0,
            Method::DELETE,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "stock"),
                ("ip", "10.0.0.2"),
                ("port", "8080"),
            ],
        )
        .await;
    for i in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "the change on every member",
            || async {
                cluster.dig(i, "stock.DEFAULT_GROUP.svc.").await == Ok(vec![])
                    && cluster.listed(i, "stock").await.is_empty()
            },
        )
        .await;
    }
    // The cluster view shows every member UP.
    let (status, body) = cluster
        .call(1, Method::GET, "/nacos/v1/core/cluster/nodes", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states: Vec<(String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["address"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = cluster
        .members
        .iter()
        .map(|m| (m.clone(), "UP".to_string()))
        .collect();
    expected.sort();
    assert_eq!(states, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beats_on_any_member_keep_an_instance_and_silence_removes_it_everywhere() {
    let cluster = TestCluster::start(3).await;
    let ip = cluster.client_owned_by(0, 1);
    cluster.register(1, "pay", &ip, 8080, &SHORT_BEATS).await;
    // The member that took the registration answers it at once (it was forwarded to
    // the owner, whose answer carried the client back).
    assert_eq!(
        cluster.dig(1, "pay.DEFAULT_GROUP.svc.").await,
        Ok(vec![ip.clone()])
    );
    for j in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "the instance on every member",
            || async { cluster.dig(j, "pay.DEFAULT_GROUP.svc.").await == Ok(vec![ip.clone()]) },
        )
        .await;
    }
    // Beat through each member in turn for 4 s: twice the delete timeout.
    let until = Instant::now() + Duration::from_secs(4);
    let mut i = 0;
    while Instant::now() < until {
        let (status, body) = cluster.beat(i % 3, "pay", &ip, 8080).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"code\":10200"), "{body}");
        for j in 0..3 {
            assert_eq!(
                cluster.dig(j, "pay.DEFAULT_GROUP.svc.").await,
                Ok(vec![ip.clone()]),
                "member {j}"
            );
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Silence: its owner expires it, and every member drops it.
    for j in 0..3 {
        wait_until(
            Duration::from_secs(6),
            "the silent instance is gone everywhere",
            || async {
                cluster.listed(j, "pay").await.is_empty()
                    && cluster.dig(j, "pay.DEFAULT_GROUP.svc.").await == Ok(vec![])
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_refuses_to_answer_until_it_loaded_a_snapshot() {
    let mut cluster = TestCluster::start(3).await;
    cluster.stop(2).await;
    // Fewer than dns.max_answers (16), so an A answer holds them all.
    for k in 1..=12u8 {
        cluster
            .register(k as usize % 2, "orders", &format!("10.1.0.{k}"), 8080, &[])
            .await;
    }
    let expected: Vec<String> = sorted((1..=12).map(|k| format!("10.1.0.{k}")).collect());
    cluster.restart(2).await;
    // Right after the start: not ready (SERVFAIL, 503), never an empty answer.
    let first = cluster.dig(2, "orders.DEFAULT_GROUP.svc.").await;
    assert!(
        first == Err(ResponseCode::ServFail) || first.as_ref() == Ok(&expected),
        "{first:?}"
    );
    let mut saw_not_ready = first == Err(ResponseCode::ServFail);
    let readiness = reqwest::get(format!(
        "{}/nacos/v1/console/health/readiness",
        cluster.base(2)
    ))
    .await
    .unwrap();
    saw_not_ready |= readiness.status() == 503;
    assert!(
        saw_not_ready,
        "a restarted member answered before it loaded a snapshot"
    );
    // Then it answers what the others answer.
    wait_until(
        Duration::from_secs(5),
        "the restarted member answers",
        || async { cluster.dig(2, "orders.DEFAULT_GROUP.svc.").await.as_ref() == Ok(&expected) },
    )
    .await;
    assert_eq!(cluster.listed(2, "orders").await, expected);
    let readiness = reqwest::get(format!(
        "{}/nacos/v1/console/health/readiness",
        cluster.base(2)
    ))
    .await
    .unwrap();
    assert_eq!(readiness.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_of_a_dead_member_keep_their_instances_while_they_beat() {
    let mut cluster = TestCluster::start(3).await;
    // Both clients are member 0's; one keeps beating (through member 1), one falls
    // silent with member 0.
    let live = cluster.client_owned_by(0, 2);
    let gone = cluster.client_owned_by(0, 3);
    cluster.register(0, "cart", &live, 8080, &SHORT_BEATS).await;
    cluster.register(0, "cart", &gone, 8080, &SHORT_BEATS).await;
    for j in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "both instances everywhere",
            || async { cluster.listed(j, "cart").await.len() == 2 },
        )
        .await;
    }
    // Both beat their owner last just before it stops: beyond their delete timeout
    // (2 s), only the grace keeps them.
    assert_eq!(cluster.beat(0, "cart", &gone, 8080).await.0, 200);
    cluster.stop(0).await;
    let stopped = Instant::now();
    let mut gone_after = None;
    while stopped.elapsed() < Duration::from_secs(12) {
        let (status, body) = cluster.beat(1, "cart", &live, 8080).await;
        assert_eq!(status, 200, "{body}");
        for j in 1..3 {
            let answer = cluster
                .dig(j, "cart.DEFAULT_GROUP.svc.")
                .await
                .expect("an answer");
            assert!(
                answer.contains(&live),
                "member {j} lost the live client after {:?}: {answer:?}",
                stopped.elapsed()
            );
            if answer.contains(&gone) {
                // Within the grace (3 s after member 0 turned DOWN, itself 0.6 s), kept.
                assert!(
                    gone_after.is_none(),
                    "the silent client came back on member {j}"
                );
            } else if gone_after.is_none() && j == 2 {
                gone_after = Some(stopped.elapsed());
            }
        }
        if gone_after.is_some_and(|t| stopped.elapsed() > t + Duration::from_secs(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone_after = gone_after.expect("the silent client is removed after the grace");
    assert!(
        gone_after >= Duration::from_millis(3_000),
        "removed before the grace ended: {gone_after:?}"
    );
    assert_eq!(cluster.listed(1, "cart").await, std::slice::from_ref(&live));
    assert_eq!(cluster.listed(2, "cart").await, [live]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_calls_need_the_cluster_secret() {
    let cluster = TestCluster::start(2).await;
    let url = format!(
        "{}{}",
        cluster.base(0),
        nacre::naming::distro::paths::SNAPSHOT
    );
    let plain = reqwest::Client::new();
    let refused = plain.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let wrong = plain
        .get(&url)
        .header("x-nacre-cluster-secret", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    // A user's token is no cluster secret either.
    let user = cluster.http.get(&url).send().await.unwrap();
    assert_eq!(user.status(), 403);
    let right = plain
        .get(&url)
        .header("x-nacre-cluster-secret", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // A forged registration without the secret changes nothing.
    let command = nacre::cluster::peer::encode(&vec![nacre::naming::distro::ClientRecord {
        client: nacre::model::InstanceKey::new("10.6.6.6", 80),
        version: nacre::naming::distro::Version {
            counter: u64::MAX,
            member: "x".into(),
        },
        instances: vec![],
    }]);
    let forged = plain
        .post(format!(
            "{}{}",
            cluster.base(0),
            nacre::naming::distro::paths::SYNC
        ))
        .body(command)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // A token issued by one member is taken by the other (shared key and users).
    let (status, body) = cluster
        .call(
            1,
            Method::GET,
            "/nacos/v1/ns/service/list",
            &[("pageNo", "1"), ("pageSize", "10")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn members_refuse_to_start_on_sqlite_or_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut s = Settings::default();
    s.http.addr = addr.parse().unwrap();
    s.dns.addr = "127.0.0.1:0".parse().unwrap();
    s.data.dir = dir.path().join("data");
    s.auth.token_key = TOKEN_KEY.into();
    s.cluster.members = vec![addr.clone(), "127.0.0.1:1".into()];
    s.cluster.secret = Some(SECRET.into());
    let err = App::start_on(s.clone(), listener)
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("config_store.url") && text.contains("SQLite"),
        "{text}"
    );
    s.config_store.url = "mysql://root@127.0.0.1:3306/test".into();
    s.cluster.secret = None;
    let listener = TcpListener::bind(&addr).await.unwrap();
    let err = App::start_on(s, listener).await.err().expect("refused");
    assert!(err.to_string().contains("NACRE_CLUSTER_SECRET"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_published_on_one_member_wakes_a_listener_on_another() {
    let cluster = TestCluster::start(3).await;
    let publish = |i: usize, content: &'static str| {
        let cluster = &cluster;
        async move {
            let (status, body) = cluster
                .call(
                    i,
                    Method::POST,
                    "/nacos/v1/cs/configs",
                    &[
                        ("dataId", "app.yaml"),
                        ("group", "DEFAULT_GROUP"),
                        ("content", content),
                    ],
                )
                .await;
            assert_eq!((status, body.as_str()), (200, "true"));
        }
    };
    publish(0, "v: 1").await;
    let get = |i: usize| {
        let cluster = &cluster;
        async move {
            cluster
                .call(
                    i,
                    Method::GET,
                    "/nacos/v1/cs/configs",
                    &[("dataId", "app.yaml"), ("group", "DEFAULT_GROUP")],
                )
                .await
        }
    };
    wait_until(Duration::from_secs(5), "member 2 has v1", || async {
        get(2).await == (200, "v: 1".into())
    })
    .await;
    // A listener on member 2 that holds v1's MD5, woken by a publish on member 0.
    let md5 = nacre::model::config::content_md5("v: 1");
    let listening = format!("app.yaml\u{2}DEFAULT_GROUP\u{2}{md5}\u{1}");
    let listener = {
        let request = cluster
            .http
            .post(format!("{}/nacos/v1/cs/configs/listener", cluster.base(2)))
            .header("Long-Pulling-Timeout", "20000")
            .form(&[("Listening-Configs", listening.as_str())]);
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = request.send().await.expect("listen");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(0, "v: 2").await;
    let (status, body, waited) = listener.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("app.yaml"), "woken with the key: {body:?}");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the notice, not the hold's end: {waited:?}"
    );
    assert_eq!(get(2).await, (200, "v: 2".into()));
    // Member 1's notice travels beside member 2's: it may land a moment later.
    wait_until(Duration::from_secs(5), "member 1 has v2", || async {
        get(1).await == (200, "v: 2".into())
    })
    .await;

    // A change no member announced (written to the shared database by hand) is found
    // by the periodic check of changed rows.
    {
        use sqlx::Connection;
        let mut conn = sqlx::MySqlConnection::connect(&cluster.db.url())
            .await
            .unwrap();
        sqlx::query("UPDATE config_info SET content = 'v: 3', md5 = ?, gmt_modified = UTC_TIMESTAMP(3) WHERE data_id = 'app.yaml'")
            .bind(nacre::model::config::content_md5("v: 3"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for i in 0..3 {
        wait_until(
            Duration::from_secs(10),
            "every member reloads the row",
            || async { get(i).await == (200, "v: 3".into()) },
        )
        .await;
    }
}

fn fast_probes(s: &mut Settings) {
    crate::health::allow_loopback_probes(s);
    s.health.interval_ms = 100;
    s.health.jitter_ms = 20;
    s.health.timeout_ms = 500;
    s.health.check_times = 2;
}

/// Accepts connections on `listener` until the task is aborted.
fn accept_all(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_instance_is_probed_by_one_member_and_every_member_follows_its_verdict() {
    use nacre::cluster::responsibility::{responsible_for_id, service_id};
    let mut cluster = TestCluster::start_with(3, fast_probes).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut target = accept_all(listener);
    cluster
        .register(1, "probed", "127.0.0.1", port, &[("ephemeral", "false")])
        .await;
    for i in 0..3 {
        wait_until(
            Duration::from_secs(10),
            "healthy on every member",
            || async { cluster.listed(i, "probed").await == ["127.0.0.1"] },
        )
        .await;
    }
    // Exactly one member probes it: the one the service hashes to.
    let started = Instant::now();
    let prober = loop {
        let rounds: Vec<u64> = (0..3)
            .map(|i| cluster.node(i).app.probe_stats.last_round_targets())
            .collect();
        if rounds.iter().sum::<u64>() == 1 {
            break rounds.iter().position(|r| *r == 1).expect("a prober");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "probe rounds per member: {rounds:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = nacre::model::ServiceKey::new("public", "DEFAULT_GROUP", "probed");
    assert_eq!(
        responsible_for_id(&cluster.members, &service_id(&key)),
        Some(cluster.members[prober].as_str())
    );
    // Its verdict reaches every member.
    target.abort();
    let _ = target.await;
    for i in 0..3 {
        wait_until(
            Duration::from_secs(10),
            "unhealthy on every member",
            || async { cluster.listed(i, "probed").await.is_empty() },
        )
        .await;
    }
    // The prober stops: another member takes the service over.
    cluster.stop(prober).await;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    target = accept_all(listener);
    for i in (0..3).filter(|i| *i != prober) {
        wait_until(
            Duration::from_secs(10),
            "healthy again on the surviving members",
            || async { cluster.listed(i, "probed").await == ["127.0.0.1"] },
        )
        .await;
    }
    target.abort();
}
