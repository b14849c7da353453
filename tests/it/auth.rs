//! Auth over real HTTP: the matrix of every non-public route against every kind of
//! bad credential (none, garbage, expired, another key, `alg: none`, a user without
//! permission on the namespace, `User-Agent: Nacos-Server`, `serverIdentity`, path
//! tricks), the right user getting 2xx on each, and the start-up refusals of bad
//! secrets.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use nacre::http::auth::Access;
use reqwest::Method;

use crate::support::*;

/// Who a case is sent as when it should succeed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// The admin `nacos`.
    Admin,
    /// `alice`, with `rw` on namespace `dev`.
    Alice,
    /// `bob`, with `rw` on namespace `other` only.
    Bob,
    /// Nobody (public routes).
    Anyone,
    /// Another cluster member, with the cluster secret: nobody on a standalone node.
    Peer,
}

/// One request of the matrix: what the right user sends to get 2xx.
struct Case {
    method: Method,
    path: &'static str,
    who: Who,
    params: Vec<(&'static str, String)>,
    headers: Vec<(&'static str, &'static str)>,
    /// The status the right user gets, when not 2xx.
    expect: Option<u16>,
}

fn case(method: Method, path: &'static str, who: Who, params: &[(&'static str, &str)]) -> Case {
    Case {
        method,
        path,
        who,
        params: params.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        headers: Vec::new(),
        expect: None,
    }
}

/// A case whose right user gets `status` past the gate (a refusal of the request
/// itself, not of the caller).
fn expecting(status: u16, mut c: Case) -> Case {
    c.expect = Some(status);
    c
}

const NS: &str = "/nacos/v1/ns";
const CS: &str = "/nacos/v1/cs";

/// Every route, in an order where each request finds what it needs (creations first,
/// deletions last), with parameters in namespace `dev`.
fn cases(alice_password: &str) -> Vec<Case> {
    use Method as M;
    use Who::*;
    let svc = [("serviceName", "svc"), ("namespaceId", "dev")];
    let inst = [
        ("serviceName", "svc"),
        ("namespaceId", "dev"),
        ("ip", "10.1.1.1"),
        ("port", "80"),
    ];
    let cfg = [("dataId", "cfg"), ("group", "G"), ("tenant", "dev")];
    let with = |base: &[(&'static str, &'static str)], more: &[(&'static str, &'static str)]| {
        base.iter().chain(more).copied().collect::<Vec<_>>()
    };
    let listening = "cfg\u{2}G\u{2}stale\u{2}dev\u{1}";
    let mut listen = case(
        M::POST,
        "/nacos/v1/cs/configs/listener",
        Alice,
        &[("Listening-Configs", listening), ("tenant", "dev")],
    );
    listen.headers.push(("Long-Pulling-Timeout", "1000"));
    let _ = (NS, CS);
    vec![
        case(
            M::POST,
            "/nacos/v1/auth/login",
            Anyone,
            &[("username", "alice"), ("password", alice_password)],
        ),
        case(
            M::POST,
            "/nacos/v1/auth/users/login",
            Anyone,
            &[("username", "alice"), ("password", alice_password)],
        ),
        case(M::GET, "/nacos/v1/console/health/liveness", Anyone, &[]),
        case(M::GET, "/nacos/v1/console/health/readiness", Anyone, &[]),
        case(
            M::POST,
            "/nacos/v1/console/namespaces",
            Admin,
            &[("customNamespaceId", "dev2"), ("namespaceName", "dev2")],
        ),
        case(
            M::PUT,
            "/nacos/v1/console/namespaces",
            Admin,
            &[("namespace", "dev2"), ("namespaceShowName", "dev two")],
        ),
        case(M::GET, "/nacos/v1/console/namespaces", Bob, &[]),
        case(
            M::POST,
            "/nacos/v1/ns/service",
            Alice,
            &[("serviceName", "made"), ("namespaceId", "dev")],
        ),
        case(M::POST, "/nacos/v1/ns/instance", Alice, &inst),
        case(M::GET, "/nacos/v1/ns/instance", Alice, &inst),
        case(
            M::PUT,
            "/nacos/v1/ns/instance",
            Alice,
            &with(&inst, &[("weight", "2")]),
        ),
        case(
            M::PATCH,
            "/nacos/v1/ns/instance",
            Alice,
            &with(&inst, &[("weight", "3")]),
        ),
        case(M::GET, "/nacos/v1/ns/instance/list", Alice, &svc),
        case(M::PUT, "/nacos/v1/ns/instance/beat", Alice, &inst),
        case(M::GET, "/nacos/v1/ns/service", Alice, &svc),
        case(
            M::PUT,
            "/nacos/v1/ns/service",
            Alice,
            &with(&svc, &[("protectThreshold", "0.1")]),
        ),
        case(
            M::GET,
            "/nacos/v1/ns/service/list",
            Alice,
            &[("pageNo", "1"), ("pageSize", "10"), ("namespaceId", "dev")],
        ),
        case(M::GET, "/nacos/v1/ns/service/subscribers", Alice, &svc),
        case(
            M::PUT,
            "/nacos/v1/ns/cluster",
            Alice,
            &with(
                &svc,
                &[
                    ("clusterName", "DEFAULT"),
                    ("checkPort", "80"),
                    ("useInstancePort4Check", "true"),
                    ("healthChecker", r#"{"type":"NONE"}"#),
                ],
            ),
        ),
        case(
            M::PUT,
            "/nacos/v1/ns/health/instance",
            Alice,
            &with(&inst, &[("healthy", "true")]),
        ),
        case(
            M::PUT,
            "/nacos/v1/ns/health",
            Alice,
            &with(&inst, &[("healthy", "true")]),
        ),
        case(M::GET, "/nacos/v1/ns/health/checkers", Bob, &[]),
        case(M::GET, "/nacos/v1/ns/operator/metrics", Bob, &[]),
        case(M::GET, "/nacos/v1/core/cluster/nodes", Bob, &[]),
        case(M::GET, "/nacos/v1/core/cluster/nodes/self", Bob, &[]),
        case(M::GET, "/nacos/v1/core/cluster/self", Bob, &[]),
        case(M::GET, "/nacos/internal/v1/cluster/ping", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/distro/sync", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/distro/verify", Peer, &[]),
        case(M::GET, "/nacos/internal/v1/distro/snapshot", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/distro/forward", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/cs/notify", Peer, &[]),
        case(M::GET, "/nacos/v1/core/cluster/raft", Bob, &[]),
        // A standalone node has no members to add or remove: 409 past the gate.
        expecting(
            409,
            case(
                M::POST,
                "/nacos/v1/core/cluster/raft/members",
                Admin,
                &[("address", "127.0.0.1:1")],
            ),
        ),
        expecting(
            409,
            case(
                M::DELETE,
                "/nacos/v1/core/cluster/raft/members",
                Admin,
                &[("nodeId", "1")],
            ),
        ),
        case(M::POST, "/nacos/internal/v1/health/verdicts", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/raft/append", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/raft/vote", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/raft/snapshot", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/raft/write", Peer, &[]),
        case(M::POST, "/nacos/internal/v1/raft/membership", Peer, &[]),
        case(M::GET, "/nacos/internal/v1/raft/identity", Peer, &[]),
        case(M::GET, "/nacos/v1/ns/ops/metrics", Bob, &[]),
        case(
            M::POST,
            "/nacos/v1/cs/configs",
            Alice,
            &with(&cfg, &[("content", "v1")]),
        ),
        case(M::GET, "/nacos/v1/cs/configs", Alice, &cfg),
        case(M::GET, "/nacos/v1/cs/configs/listener", Alice, &cfg),
        listen,
        case(M::GET, "/nacos/v1/cs/configs/catalog", Alice, &cfg),
        case(
            M::GET,
            "/nacos/v1/cs/listener",
            Alice,
            &[("ip", "127.0.0.1"), ("tenant", "dev")],
        ),
        case(M::GET, "/nacos/v1/cs/history", Alice, &cfg),
        case(
            M::GET,
            "/nacos/v1/cs/history/previous",
            Alice,
            &with(&cfg, &[("id", "1")]),
        ),
        case(
            M::GET,
            "/nacos/v1/cs/history/configs",
            Alice,
            &[("tenant", "dev")],
        ),
        case(M::DELETE, "/nacos/v1/cs/configs", Alice, &cfg),
        case(
            M::POST,
            "/nacos/v1/auth/users",
            Admin,
            &[("username", "carol"), ("password", "carol-password-1")],
        ),
        case(
            M::GET,
            "/nacos/v1/auth/users",
            Admin,
            &[("pageNo", "1"), ("pageSize", "10")],
        ),
        case(
            M::GET,
            "/nacos/v1/auth/users/search",
            Admin,
            &[("username", "car")],
        ),
        case(
            M::PUT,
            "/nacos/v1/auth/users",
            Alice,
            &[("username", "alice"), ("newPassword", alice_password)],
        ),
        case(
            M::POST,
            "/nacos/v1/auth/roles",
            Admin,
            &[("role", "ROLE_C"), ("username", "carol")],
        ),
        case(
            M::GET,
            "/nacos/v1/auth/roles",
            Admin,
            &[("pageNo", "1"), ("pageSize", "10")],
        ),
        case(
            M::GET,
            "/nacos/v1/auth/roles/search",
            Admin,
            &[("role", "ROLE")],
        ),
        case(
            M::POST,
            "/nacos/v1/auth/permissions",
            Admin,
            &[("role", "ROLE_C"), ("resource", "c:*:*"), ("action", "r")],
        ),
        case(
            M::GET,
            "/nacos/v1/auth/permissions",
            Admin,
            &[("pageNo", "1"), ("pageSize", "10")],
        ),
        case(
            M::DELETE,
            "/nacos/v1/auth/permissions",
            Admin,
            &[("role", "ROLE_C"), ("resource", "c:*:*"), ("action", "r")],
        ),
        case(
            M::DELETE,
            "/nacos/v1/auth/roles",
            Admin,
            &[("role", "ROLE_C"), ("username", "carol")],
        ),
        case(
            M::DELETE,
            "/nacos/v1/auth/users",
            Admin,
            &[("username", "carol")],
        ),
        case(M::DELETE, "/nacos/v1/ns/instance", Alice, &inst),
        case(
            M::DELETE,
            "/nacos/v1/ns/service",
            Alice,
            &[("serviceName", "made"), ("namespaceId", "dev")],
        ),
        case(
            M::DELETE,
            "/nacos/v1/console/namespaces",
            Admin,
            &[("namespaceId", "dev2")],
        ),
    ]
}

/// A JWT with the given header and claims, signed with HMAC-SHA256 by `key` (or left
/// unsigned with `key = None`).
fn jwt(header: &str, claims: &str, key: Option<&[u8]>) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    match key {
        Some(key) => {
            let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
            let _ = header;
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key),
            )
            .unwrap()
        }
        None => format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        ),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The status of a raw HTTP/1.1 request for `target` (sent as is, so `/./` and `%2e`
/// reach the server unnormalized).
fn raw_status(addr: SocketAddr, method: &Method, target: &str, headers: &[(&str, &str)]) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status for {target}: {head}"))
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    c: &Case,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client
        .request(c.method.clone(), format!("{base}{}", c.path))
        .query(&c.params);
    for (k, v) in c.headers.iter().chain(extra) {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_route_refuses_bad_credentials_and_serves_the_right_user() {
    let server = TestServer::start().await;
    let admin = &server.http;
    let alice_password = "alice-password-1";
    // Namespace dev; alice may read and write it, bob only namespace "other".
    for (path, params) in [
        (
            "/nacos/v1/console/namespaces",
            vec![("customNamespaceId", "dev"), ("namespaceName", "dev")],
        ),
        (
            "/nacos/v1/auth/users",
            vec![("username", "alice"), ("password", alice_password)],
        ),
        (
            "/nacos/v1/auth/users",
            vec![("username", "bob"), ("password", "bob-password-1")],
        ),
        (
            "/nacos/v1/auth/roles",
            vec![("role", "ROLE_DEV"), ("username", "alice")],
        ),
        (
            "/nacos/v1/auth/roles",
            vec![("role", "ROLE_OTHER"), ("username", "bob")],
        ),
        (
            "/nacos/v1/auth/permissions",
            vec![
                ("role", "ROLE_DEV"),
                ("resource", "dev:*:*"),
                ("action", "rw"),
            ],
        ),
        (
            "/nacos/v1/auth/permissions",
            vec![
                ("role", "ROLE_OTHER"),
                ("resource", "other:*:*"),
                ("action", "rw"),
            ],
        ),
    ] {
        let (status, body) = server
            .send(admin.post(format!("{}{path}", server.base)).form(&params))
            .await;
        assert_eq!(status, 200, "{path} {params:?}: {body}");
    }
    let alice = client_with_token(&login(&server.base, "alice", alice_password).await);
    let bob = client_with_token(&login(&server.base, "bob", "bob-password-1").await);
    let plain = reqwest::Client::new();

    // The route table: every route is in the matrix, and only four are public.
    let table = nacre::http::nacos_v1::routes().table().to_vec();
    let cases = cases(alice_password);
    let routed: BTreeSet<(String, &str)> = table
        .iter()
        .map(|e| (e.method.to_string(), e.path))
        .collect();
    let covered: BTreeSet<(String, &str)> = cases
        .iter()
        .map(|c| (c.method.to_string(), c.path))
        .collect();
    assert_eq!(
        routed, covered,
        "every route has a case, and only routes do"
    );
    let public: BTreeSet<&str> = table
        .iter()
        .filter(|e| e.access == Access::Public)
        .map(|e| e.path)
        .collect();
    assert_eq!(
        public,
        BTreeSet::from([
            "/nacos/v1/auth/login",
            "/nacos/v1/auth/users/login",
            "/nacos/v1/console/health/liveness",
            "/nacos/v1/console/health/readiness",
        ])
    );

    // Bad credentials of every kind.
    let key = STANDARD
        .decode(
            std::fs::read_to_string(server.data_dir().join("auth/token.key"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let claims = |exp: u64| format!(r#"{{"sub":"nacos","exp":{exp}}}"#);
    let expired = jwt("", &claims(now_secs() - 60), Some(&key));
    let other_key = jwt("", &claims(now_secs() + 600), Some(&[9u8; 48]));
    let alg_none = jwt(
        r#"{"alg":"none","typ":"JWT"}"#,
        &claims(now_secs() + 600),
        None,
    );
    let bearer = |t: &str| format!("Bearer {t}");
    let bad: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no token", vec![]),
        ("garbage token", vec![("Authorization", bearer("garbage"))]),
        ("expired token", vec![("Authorization", bearer(&expired))]),
        (
            "token of another key",
            vec![("Authorization", bearer(&other_key))],
        ),
        ("alg none", vec![("Authorization", bearer(&alg_none))]),
        (
            "garbage accessToken header",
            vec![("accessToken", "x.y.z".into())],
        ),
        (
            "User-Agent Nacos-Server",
            vec![("User-Agent", "Nacos-Server:v2.4.0".into())],
        ),
        (
            "serverIdentity",
            vec![
                ("serverIdentity", "security".into()),
                ("User-Agent", "Nacos-Server:v2.4.0".into()),
            ],
        ),
    ];
    let http = server.app.http_addr;
    for c in cases.iter().filter(|c| c.who != Who::Anyone) {
        for (what, headers) in &bad {
            let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = send(&plain, &server.base, c, &extra).await;
            assert_eq!(status, 403, "{} {} with {what}: {body}", c.method, c.path);
        }
        // A wrong password, and an accessToken parameter that is garbage.
        let mut wrong = Case {
            params: c.params.clone(),
            headers: c.headers.clone(),
            method: c.method.clone(),
            path: c.path,
            who: c.who,
            expect: c.expect,
        };
        wrong
            .params
            .retain(|(k, _)| *k != "username" && *k != "password");
        wrong.params.push(("username", "nacos".into()));
        wrong.params.push(("password", "not-the-password".into()));
        assert_eq!(
            send(&plain, &server.base, &wrong, &[]).await.0,
            403,
            "{} {} wrong password",
            c.method,
            c.path
        );
        wrong
            .params
            .retain(|(k, _)| *k != "username" && *k != "password");
        wrong.params.push(("accessToken", "garbage".into()));
        assert_eq!(
            send(&plain, &server.base, &wrong, &[]).await.0,
            403,
            "{} {} accessToken",
            c.method,
            c.path
        );

        // A user without permission on namespace dev (routes open to any user aside).
        if c.who != Who::Bob {
            let (status, body) = send(&bob, &server.base, c, &[]).await;
            assert_eq!(status, 403, "{} {} as bob: {body}", c.method, c.path);
        }

        // Path tricks, without credentials: never past the gate.
        let query: String = c
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let rest = c.path.trim_start_matches("/nacos");
        for target in [
            format!("/{}", c.path),
            format!("/.{}", c.path),
            format!("/nacos/%2e{rest}"),
            format!("/nacos/v1/console/health/liveness/../../../..{rest}"),
            format!("{};x=1", c.path),
            c.path.to_uppercase(),
            c.path.replace("/v1/", "/V1/"),
        ] {
            let target = format!("{target}?{query}");
            let status = tokio::task::spawn_blocking({
                let (method, target) = (c.method.clone(), target.clone());
                move || raw_status(http, &method, &target, &[])
            })
            .await
            .unwrap();
            assert_eq!(status, 403, "{} {target}", c.method);
        }
    }

    // The right user, in order: every route answers 2xx; a standalone node has no
    // peer, so its peer routes refuse even the admin (and any secret).
    for c in &cases {
        let client = match c.who {
            Who::Admin => admin,
            Who::Alice => &alice,
            Who::Bob => &bob,
            Who::Anyone => &plain,
            Who::Peer => {
                for extra in [&[][..], &[("x-nacre-cluster-secret", "")][..]] {
                    let (status, body) = send(admin, &server.base, c, extra).await;
                    assert_eq!(
                        status, 403,
                        "{} {} on a standalone node: {body}",
                        c.method, c.path
                    );
                }
                continue;
            }
        };
        let (status, body) = send(client, &server.base, c, &[]).await;
        match c.expect {
            Some(expected) => assert_eq!(
                status, expected,
                "{} {} as {:?}: {body}",
                c.method, c.path, c.who
            ),
            None => assert!(
                (200..300).contains(&status),
                "{} {} as {:?}: {status} {body}",
                c.method,
                c.path,
                c.who
            ),
        }
    }

    // Nacos's other ways of sending credentials work too: username and password on
    // the request (the Node.js client), accessToken as a parameter (Python, Java).
    let (status, _) = server
        .send(
            plain
                .get(format!("{}/nacos/v1/ns/instance/list", server.base))
                .query(&[
                    ("serviceName", "svc"),
                    ("namespaceId", "dev"),
                    ("username", "alice"),
                    ("password", alice_password),
                ]),
        )
        .await;
    assert_eq!(status, 200);
    let token = login(&server.base, "alice", alice_password).await;
    let (status, _) = server
        .send(
            plain
                .get(format!("{}/nacos/v1/ns/instance/list", server.base))
                .query(&[
                    ("serviceName", "svc"),
                    ("namespaceId", "dev"),
                    ("accessToken", token.as_str()),
                ]),
        )
        .await;
    assert_eq!(status, 200);
    server.shutdown().await;
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn login_answers_as_nacos_and_tokens_carry_an_expiry() {
    let server = TestServer::start().await;
    let password = admin_password(server.data_dir());
    let resp = reqwest::Client::new()
        .post(format!("{}/nacos/v1/auth/users/login", server.base))
        .query(&[("username", "nacos")])
        .form(&[("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = resp
        .headers()
        .get("Authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["tokenTtl"], 18000);
    assert_eq!(body["globalAdmin"], true);
    assert_eq!(body["username"], "nacos");
    let token = body["accessToken"].as_str().unwrap();
    assert_eq!(header, format!("Bearer {token}"));
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(
        exp > now_secs() && exp <= now_secs() + 18_000 + 5,
        "{claims}"
    );

    for (user, pw) in [("nacos", "nacos"), ("nacos", "wrong"), ("nobody", "x")] {
        let (status, body) = server
            .send(
                reqwest::Client::new()
                    .post(format!("{}/nacos/v1/auth/login", server.base))
                    .form(&[("username", user), ("password", pw)]),
            )
            .await;
        assert_eq!(
            (status, body.as_str()),
            (403, "user not found!"),
            "{user}/{pw}"
        );
    }
    server.shutdown().await;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_fresh_data_dir_gets_a_key_and_an_admin_password_only_its_owner_reads() {
    let server = TestServer::start().await;
    let dir = server.data_dir().join("auth");
    assert_eq!(mode(&dir), 0o700);
    for file in ["token.key", "admin.password"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let key = STANDARD
        .decode(
            std::fs::read_to_string(dir.join("token.key"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    assert!(key.len() >= 32);
    assert!(admin_password(server.data_dir()).len() >= 20);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_secrets_are_refused_at_start() {
    use nacre::app::App;
    use nacre::settings::Settings;
    async fn start_err(configure: impl FnOnce(&mut Settings, &Path)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::default();
        s.http.addr = "127.0.0.1:0".parse().unwrap();
        s.dns.addr = "127.0.0.1:0".parse().unwrap();
        s.data.dir = dir.path().join("data");
        configure(&mut s, dir.path());
        if let Err(e) = s.validate() {
            return e.to_string();
        }
        match App::start(s).await {
            Ok(app) => {
                app.shutdown().await;
                panic!("started");
            }
            Err(e) => format!("{e:#}"),
        }
    }
    let e = start_err(|s, _| s.auth.token_key = STANDARD.encode([1u8; 16])).await;
    assert!(e.contains("at least 32"), "{e}");
    let e = start_err(|s, _| {
        s.auth.token_key =
            "SecretKey012345678901234567890123456789012345678901234567890123456789".into()
    })
    .await;
    assert!(e.contains("published with Nacos"), "{e}");
    let e =
        start_err(|s, _| s.auth.token_key = "VGhpc0lzTXlDdXN0b21TZWNyZXRLZXkwMTIzNDU2Nzg=".into())
            .await;
    assert!(e.contains("published with Nacos"), "{e}");
    let e = start_err(|s, _| s.auth.token_key = "not base64!".into()).await;
    assert!(e.contains("Base64"), "{e}");
    let e = start_err(|s, _| s.auth.admin_password = Some("short".into())).await;
    assert!(
        e.contains("NACRE_ADMIN_PASSWORD") && e.contains("too short"),
        "{e}"
    );
    let e = start_err(|s, _| s.auth.admin_password = Some("nacos".into())).await;
    assert!(e.contains("NACRE_ADMIN_PASSWORD"), "{e}");
    let e = start_err(|s, _| {
        s.auth.enabled = false;
        s.http.addr = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    assert!(e.contains("auth.enabled") && e.contains("loopback"), "{e}");
    let e = start_err(|s, _| s.auth.token_ttl_secs = 10 * 24 * 3600).await;
    assert!(e.contains("auth.token_ttl_secs"), "{e}");
    // A key file of an earlier start that is too weak is refused too.
    let e = start_err(|s, _| {
        std::fs::create_dir_all(s.data.dir.join("auth")).unwrap();
        std::fs::write(s.data.dir.join("auth/token.key"), STANDARD.encode(b"short")).unwrap();
    })
    .await;
    assert!(e.contains("token.key") && e.contains("at least 32"), "{e}");
}

#[tokio::test]
async fn nacos_s_default_admin_password_stops_the_start_until_replaced() {
    use nacre::app::App;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut settings = nacre::settings::Settings::default();
    settings.http.addr = "127.0.0.1:0".parse().unwrap();
    settings.dns.addr = "127.0.0.1:0".parse().unwrap();
    settings.data.dir = data.clone();
    App::start(settings.clone())
        .await
        .expect("first start")
        .shutdown()
        .await;
    // As an existing Nacos database has it: user nacos with password "nacos".
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            data.join("nacre.db").display()
        ))
        .await
        .unwrap();
        sqlx::query("UPDATE users SET password = ? WHERE username = 'nacos'")
            .bind("$2a$10$EuWPZHzz32dJN7jexM34MOeYirDdFAZm2kuWj7VEOJhhZkDrxfvUu")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let e = match App::start(settings.clone()).await {
        Ok(_) => panic!("started with nacos/nacos"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("default password") && e.contains("NACRE_ADMIN_PASSWORD"),
        "{e}"
    );
    settings.auth.admin_password = Some("a-new-admin-password".into());
    let app = App::start(settings)
        .await
        .expect("starts with a new password");
    let base = format!("http://{}", app.http_addr);
    login(&base, "nacos", "a-new-admin-password").await;
    let status = reqwest::Client::new()
        .post(format!("{base}/nacos/v1/auth/login"))
        .form(&[("username", "nacos"), ("password", "nacos")])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    app.shutdown().await;
}

#[tokio::test]
async fn a_grant_on_one_namespace_or_config_reaches_nothing_beyond_it() {
    let server = TestServer::start().await;
    let base = server.base.clone();
    for ns in ["dev", "prod"] {
        let (status, _) = server
            .send(
                server
                    .http
                    .post(format!("{base}/nacos/v1/console/namespaces"))
                    .form(&[("customNamespaceId", ns), ("namespaceName", ns)]),
            )
            .await;
        assert_eq!(status, 200);
    }
    for tenant in ["", "dev", "prod"] {
        for data_id in ["x", "secret"] {
            let (status, _) = server
                .send(
                    server
                        .http
                        .post(format!("{base}/nacos/v1/cs/configs"))
                        .form(&[
                            ("dataId", data_id),
                            ("group", "G"),
                            ("tenant", tenant),
                            ("content", "v"),
                        ]),
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    user_with_grant(&server, "alice", "alice-password-1", "dev:*:*", "rw").await;
    user_with_grant(&server, "carl", "carl-password-1", "dev:G:config/x", "rw").await;
    let alice = client_with_token(&login(&base, "alice", "alice-password-1").await);
    let carl = client_with_token(&login(&base, "carl", "carl-password-1").await);
    let configs = format!("{base}/nacos/v1/cs/configs");

    // The namespace is the parameter the handler reads (`tenant`): `namespaceId=dev`
    // does not make a public config readable.
    assert_eq!(
        status_of(alice.get(&configs).query(&[
            ("dataId", "secret"),
            ("group", "G"),
            ("namespaceId", "dev")
        ]))
        .await,
        403
    );
    // HEAD is checked as GET; other methods without a route end at the gate.
    assert_eq!(
        status_of(alice.head(&configs).query(&[
            ("dataId", "secret"),
            ("group", "G"),
            ("tenant", "prod")
        ]))
        .await,
        403
    );
    assert_eq!(
        status_of(alice.head(&configs).query(&[
            ("dataId", "secret"),
            ("group", "G"),
            ("tenant", "dev")
        ]))
        .await,
        200,
        "HEAD where GET is allowed"
    );
    assert_eq!(
        status_of(alice.request(Method::OPTIONS, &configs)).await,
        405
    );
    assert_eq!(
        status_of(alice.get(format!("{base}/nacos/v1/cs/nowhere"))).await,
        404
    );
    // HEAD of a list with udpPort would subscribe to prod's services.
    assert_eq!(
        status_of(
            alice
                .head(format!("{base}/nacos/v1/ns/instance/list"))
                .header("User-Agent", "Nacos-Java-Client:v1.4.6")
                .query(&[
                    ("serviceName", "svc"),
                    ("namespaceId", "prod"),
                    ("udpPort", "9999"),
                ])
        )
        .await,
        403
    );

    // An import goes where `namespace` says, and needs write there.
    let zip = {
        let export = server
            .http
            .get(&configs)
            .query(&[("export", "true"), ("tenant", "dev")])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(export.to_vec()).file_name("export.zip"),
        )
    };
    assert_eq!(
        status_of(
            alice
                .post(&configs)
                .query(&[
                    ("import", "true"),
                    ("tenant", "dev"),
                    ("namespace", "prod"),
                    ("policy", "OVERWRITE"),
                ])
                .multipart(zip)
        )
        .await,
        403
    );

    // Listening-Configs is read as the handler reads it, decoded once more: a prod
    // line hidden behind a second encoding is still a prod line.
    let hidden = "secret%2502G%2502stale%2502prod%2501";
    assert_eq!(
        status_of(
            alice
                .post(format!("{base}/nacos/v1/cs/configs/listener"))
                .header("Long-Pulling-Timeout", "1000")
                .form(&[("Listening-Configs", hidden)])
        )
        .await,
        403
    );
    assert_eq!(
        status_of(
            alice
                .post(format!("{base}/nacos/v1/cs/configs/listener"))
                .header("Long-Pulling-Timeout", "1000")
                .form(&[("Listening-Configs", "secret%02G%02stale%02dev%01")])
        )
        .await,
        200,
        "a dev line is alice's to hear"
    );

    // A grant on one config reaches that config only: not by ids, export, search.
    assert_eq!(
        status_of(
            carl.get(&configs)
                .query(&[("dataId", "x"), ("group", "G"), ("tenant", "dev")])
        )
        .await,
        200
    );
    for query in [
        vec![("delType", "ids"), ("ids", "1,2,3,4,5,6")],
        vec![("export", "true"), ("ids", "1,2,3,4,5,6")],
        vec![("search", "blur"), ("pageNo", "1"), ("pageSize", "10")],
    ] {
        let mut q = vec![("dataId", "x"), ("group", "G"), ("tenant", "dev")];
        q.extend(query.iter().copied());
        let method = if q.iter().any(|(k, _)| *k == "delType") {
            Method::DELETE
        } else {
            Method::GET
        };
        assert_eq!(
            status_of(carl.request(method, &configs).query(&q)).await,
            403,
            "{q:?}"
        );
    }
    assert_eq!(
        status_of(
            carl.get(format!("{base}/nacos/v1/cs/history/configs"))
                .query(&[("tenant", "dev")])
        )
        .await,
        403
    );

    // Path tricks with a valid token of a user without rights there: never a 2xx.
    let http = server.app.http_addr;
    let token = login(&base, "alice", "alice-password-1").await;
    let auth = format!("Bearer {token}");
    for target in [
        "/nacos/v1/cs/configs?dataId=secret&group=G&tenant=prod",
        "//nacos/v1/cs/configs?dataId=secret&group=G&tenant=prod",
        "/nacos/v1/cs/./configs?dataId=secret&group=G&tenant=prod",
        "/nacos/v1/cs/%63onfigs?dataId=secret&group=G&tenant=prod",
        "/nacos/v1/cs/configs/?dataId=secret&group=G&tenant=prod",
        "/nacos/v1/cs/configs;x=1?dataId=secret&group=G&tenant=prod",
        "/NACOS/v1/cs/configs?dataId=secret&group=G&tenant=prod",
    ] {
        let auth = auth.clone();
        let status = tokio::task::spawn_blocking(move || {
            raw_status(http, &Method::GET, target, &[("Authorization", &auth)])
        })
        .await
        .unwrap();
        assert!(!(200..300).contains(&status), "{target}: {status}");
    }
    server.shutdown().await;
}
