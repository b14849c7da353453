//! Test harness: an in-process node on 127.0.0.1 port 0, an HTTP client, DNS clients
//! (hickory, UDP and TCP) and wait-until helpers with deadlines.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::proto::op::Message;
use hickory_net::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use nacre::app::App;
use nacre::settings::Settings;
use reqwest::Method;

pub struct TestServer {
    pub app: App,
    pub http: reqwest::Client,
    pub base: String,
    /// The config database, as `config_store.url` names it (SQLite by path).
    pub db_url: String,
    data_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _db: Option<MariaDb>,
}

/// Which config database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// SQLite in the test's data dir (the default).
    Sqlite,
    /// A fresh database on the MariaDB of this machine.
    MariaDb,
}

/// The MariaDB server the tests use (root, no password). Tests fail, not skip, when it
/// is down.
pub const MARIADB_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A database of its own on the local MariaDB, dropped when the test ends.
pub struct MariaDb {
    pub name: String,
}

impl MariaDb {
    pub async fn create() -> Self {
        use sqlx::Connection;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("nacre_it_{}_{}", std::process::id(), n);
        let mut conn = sqlx::MySqlConnection::connect(MARIADB_ADMIN_URL)
            .await
            .unwrap_or_else(|e| {
                panic!("MariaDB at 127.0.0.1:3306 (root, no password) is needed: {e}")
            });
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await
            .expect("drop old test database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.name)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own runtime on its own thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(MARIADB_ADMIN_URL).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The password the node generated for user `nacos` at its first start.
pub fn admin_password(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("auth/admin.password"))
        .expect("admin.password in the data dir")
        .trim()
        .to_string()
}

/// Logs in at `base` and returns the access token.
pub async fn login(base: &str, username: &str, password: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("login request");
    assert_eq!(resp.status(), 200, "login as {username}");
    let body: serde_json::Value = resp.json().await.expect("login JSON");
    body["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_string()
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// A client signed in as the admin of the node whose data dir is `data_dir` (with
/// auth off, a plain client).
pub async fn admin_client(base: &str, data_dir: &Path) -> reqwest::Client {
    if !data_dir.join("auth/admin.password").exists() {
        return reqwest::Client::new();
    }
    let token = login(base, "nacos", &admin_password(data_dir)).await;
    client_with_token(&token)
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::start_on(Db::Sqlite, configure).await
    }

    /// A node whose config center runs on `db`; long polls hold at least 200 ms.
    pub async fn start_db(db: Db) -> Self {
        Self::start_on(db, |_| {}).await
    }

    pub async fn start_on(db: Db, configure: impl FnOnce(&mut Settings)) -> Self {
        let mariadb = match db {
            Db::MariaDb => Some(MariaDb::create().await),
            Db::Sqlite => None,
        };
        // Logs only when RUST_LOG asks for them (e.g. RUST_LOG=nacre=debug).
        if std::env::var_os("RUST_LOG").is_some() {
            nacre::telemetry::init();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::default();
        settings.http.addr = "127.0.0.1:0".parse().unwrap();
        settings.dns.addr = "127.0.0.1:0".parse().unwrap();
        settings.data.dir = dir.path().join("data");
        settings.dns.zones_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        settings.naming.expiry_tick_ms = 50;
        settings.config.min_long_poll_ms = 200;
        if let Some(m) = &mariadb {
            settings.config_store.url = m.url();
        }
        configure(&mut settings);
        let data_dir = settings.data.dir.clone();
        let db_url = if settings.config_store.url.is_empty() {
            format!("sqlite:{}", data_dir.join("nacre.db").display())
        } else {
            settings.config_store.url.clone()
        };
        let app = App::start(settings).await.expect("node starts");
        let base = format!("http://{}", app.http_addr);
        let http = admin_client(&base, &data_dir).await;
        Self {
            app,
            http,
            db_url,
            data_dir,
            base,
            _dir: dir,
            _db: mariadb,
        }
    }

    /// Sends a request with parameters in the query string; returns status and body.
    pub async fn call(&self, method: Method, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        self.send(self.request(method, path).query(query)).await
    }

    /// Sends a request with parameters in a form body.
    pub async fn call_form(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, String) {
        self.send(self.request(method, path).form(form)).await
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let resp = request.send().await.expect("http request");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// Calls `/nacos/v1/ns/instance` (or a path below it) for one instance, with
    /// `serviceName`, `ip`, `port` and `extra` in the query string.
    pub async fn instance(
        &self,
        method: Method,
        path: &str,
        (service, ip, port): (&str, &str, &str),
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let mut params = vec![("serviceName", service), ("ip", ip), ("port", port)];
        params.extend_from_slice(extra);
        self.call(method, path, &params).await
    }

    pub async fn register(&self, service: &str, ip: &str, port: u16, extra: &[(&str, &str)]) {
        let port = port.to_string();
        let mut params = vec![
            ("serviceName", service),
            ("ip", ip),
            ("port", port.as_str()),
        ];
        params.extend_from_slice(extra);
        let (status, body) = self
            .call(Method::POST, "/nacos/v1/ns/instance", &params)
            .await;
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "register {service} {ip}"
        );
    }

    pub async fn list(&self, service: &str, extra: &[(&str, &str)]) -> serde_json::Value {
        let mut params = vec![("serviceName", service)];
        params.extend_from_slice(extra);
        let (status, body) = self
            .call(Method::GET, "/nacos/v1/ns/instance/list", &params)
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("list JSON")
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn dns_addr(&self) -> SocketAddr {
        self.app.dns_addr
    }

    pub async fn shutdown(self) {
        self.app.shutdown().await;
    }
}

pub async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

pub async fn tcp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (future, sender) = TcpClientStream::new(addr, None, None, TokioRuntimeProvider::new());
    let stream = future.await.expect("tcp connect");
    let (client, bg) = Client::<TokioRuntimeProvider>::new(stream, sender);
    tokio::spawn(bg);
    client
}

/// Sends one query and returns the response message.
pub async fn query(
    client: &mut Client<TokioRuntimeProvider>,
    name: &str,
    rtype: RecordType,
) -> Message {
    let name = Name::from_ascii(name).expect("name");
    let resp = client
        .query(name, DNSClass::IN, rtype)
        .await
        .expect("dns response");
    resp.into_message()
}

/// The addresses of the A and AAAA records of a section, in order.
pub fn addresses(records: &[hickory_net::proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The target names of the CNAME, MX, NS, PTR and SRV records of a section (SOA: its
/// RNAME), in order.
pub fn targets(records: &[hickory_net::proto::rr::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_ascii()),
            RData::MX(m) => Some(m.exchange.to_ascii()),
            RData::NS(n) => Some(n.0.to_ascii()),
            RData::PTR(p) => Some(p.0.to_ascii()),
            RData::SRV(s) => Some(s.target.to_ascii()),
            RData::SOA(s) => Some(s.rname.to_ascii()),
            _ => None,
        })
        .collect()
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Polls `check` until it returns true or `deadline` passes (then panics with `what`).
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A UDP push receiver, as a Nacos 1.x client runs one: it lists with `udpPort` and
/// `clientIP`, reads pushes and acks them.
pub struct PushReceiver {
    pub socket: tokio::net::UdpSocket,
}

/// One push as received: the packet JSON, its `data` parsed, and where it came from.
pub struct Push {
    pub packet: serde_json::Value,
    pub data: serde_json::Value,
    pub from: SocketAddr,
}

impl Push {
    /// The packet's `lastRefTime`.
    pub fn last_ref_time(&self) -> u64 {
        self.packet["lastRefTime"].as_u64().expect("lastRefTime")
    }

    /// The `ip`s of the pushed hosts, sorted.
    pub fn ips(&self) -> Vec<String> {
        sorted(
            self.data["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .map(|h| h["ip"].as_str().expect("ip").to_string())
                .collect(),
        )
    }
}

impl PushReceiver {
    pub async fn bind() -> Self {
        Self {
            socket: tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp bind"),
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("local addr").port()
    }

    /// Lists `service` as the Java 1.x client does, asking for pushes.
    pub async fn subscribe(&self, server: &TestServer, service: &str) -> serde_json::Value {
        let port = self.port().to_string();
        let (status, body) = server
            .send(
                server
                    .request(Method::GET, "/nacos/v1/ns/instance/list")
                    .header("User-Agent", "Nacos-Java-Client:v1.4.6")
                    .query(&[
                        ("serviceName", service),
                        ("udpPort", port.as_str()),
                        ("clientIP", "127.0.0.1"),
                    ]),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("list JSON")
    }

    /// The next push within `within`, gunzipped and parsed; `None` when none came.
    pub async fn next(&self, within: Duration) -> Option<Push> {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = tokio::time::timeout(within, self.socket.recv_from(&mut buf))
            .await
            .ok()?
            .expect("udp recv");
        let mut bytes = buf[..n].to_vec();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
                .expect("gzip");
            bytes = out;
        }
        let packet: serde_json::Value = serde_json::from_slice(&bytes).expect("push JSON");
        assert_eq!(packet["type"], "dom", "{packet}");
        let data = serde_json::from_str(packet["data"].as_str().expect("data is a string"))
            .expect("data JSON");
        Some(Push { packet, data, from })
    }

    /// Acks a push the way the Java client does (`lastRefTime` as a string).
    pub async fn ack(&self, push: &Push) {
        let ack = format!(
            r#"{{"type": "push-ack", "lastRefTime":"{}", "data":""}}"#,
            push.last_ref_time()
        );
        self.socket
            .send_to(ack.as_bytes(), push.from)
            .await
            .expect("ack");
    }
}

/// The status a request gets.
pub async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("request").status().as_u16()
}

/// Creates `user` with `password`, a role of its own and `action` on `resource`.
pub async fn user_with_grant(
    server: &TestServer,
    user: &str,
    password: &str,
    resource: &str,
    action: &str,
) {
    let role = format!("ROLE_{}", user.to_uppercase());
    for (path, params) in [
        (
            "/nacos/v1/auth/users",
            vec![("username", user), ("password", password)],
        ),
        (
            "/nacos/v1/auth/roles",
            vec![("role", role.as_str()), ("username", user)],
        ),
        (
            "/nacos/v1/auth/permissions",
            vec![
                ("role", role.as_str()),
                ("resource", resource),
                ("action", action),
            ],
        ),
    ] {
        let (status, body) = server
            .send(
                server
                    .http
                    .post(format!("{}{path}", server.base))
                    .form(&params),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

/// Runs each scenario once per database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::support::Db::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    super::$name(crate::support::Db::MariaDb).await
                }
            }
        )*
    };
}
pub(crate) use on_both_databases;
