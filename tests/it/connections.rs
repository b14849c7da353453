//! Idle, half-sent and piled-up connections over real sockets, with the timeouts
//! shortened: the HTTP port closes what holds a socket for nothing, keeps held long
//! polls, and caps connections per address; DNS over TCP caps them per address too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_net::proto::rr::RecordType;
use md5::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// A connection to `to` from the loopback address `from` (any free port).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.expect("connect")
}

/// Whether the server closed `stream` within `within`: a read ends (EOF or reset)
/// instead of waiting.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. to a slow body); keep reading until it closes.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Status line of a full request sent on a fresh connection from 127.0.0.1.
async fn liveness(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut out)).await;
    out.lines().next().unwrap_or("").to_string()
}

const HALF_SENT: &[u8] = b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\n";

#[tokio::test]
async fn half_sent_and_idle_connections_are_closed_while_long_polls_hold() {
    let server = TestServer::start_with(|s| {
        s.http.header_read_timeout_ms = 300;
        s.http.idle_timeout_ms = 600;
        s.http.body_read_timeout_ms = 300;
    })
    .await;
    let addr = server.app.http_addr;
    // The repro: 50 connections with a request head that never ends.
    let mut half = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(HALF_SENT).await.unwrap();
        half.push(stream);
    }
    // A connection that sent a whole request, read its answer and went quiet.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /nacos/v1/console/health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A request whose body stops half way.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /nacos/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=n",
        )
        .await
        .unwrap();
    // A long poll held for 1.5 s: longer than every timeout above.
    let (status, body) = server
        .call_form(
            reqwest::Method::POST,
            "/nacos/v1/cs/configs",
            &[("dataId", "held"), ("group", "G"), ("content", "v")],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let listening = format!("held\u{2}G\u{2}{:x}\u{1}", md5::Md5::digest(b"v"));
    let started = Instant::now();
    let held = server.send(
        server
            .request(reqwest::Method::POST, "/nacos/v1/cs/configs/listener")
            .header("Long-Pulling-Timeout", "2000")
            .form(&[("Listening-Configs", listening.as_str())]),
    );

    let (held, closed) = tokio::join!(held, async {
        let mut open = Vec::new();
        for (i, stream) in half
            .iter_mut()
            .chain([&mut idle, &mut silent, &mut slow_body])
            .enumerate()
        {
            if !closed_within(stream, Duration::from_secs(3)).await {
                open.push(i);
            }
        }
        open
    });
    assert_eq!(
        closed,
        Vec::<usize>::new(),
        "every half-sent (0-49), idle (50), silent (51) and slow (52) connection closed"
    );
    assert_eq!(held, (200, String::new()), "the long poll ran to its end");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(liveness(addr).await, "HTTP/1.1 200 OK");
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let server = TestServer::start_with(|s| {
        s.http.max_connections_per_ip = 5;
        s.dns.max_tcp_connections_per_ip = 3;
    })
    .await;
    let http = server.app.http_addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from("127.0.0.2", http).await;
        stream.write_all(HALF_SENT).await.unwrap();
        held.push(stream);
    }
    let mut sixth = connect_from("127.0.0.2", http).await;
    assert!(
        closed_within(&mut sixth, Duration::from_secs(2)).await,
        "the sixth from one address is closed at once"
    );
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(50)).await);
    }
    // Another address is served.
    assert_eq!(liveness(http).await, "HTTP/1.1 200 OK");

    // DNS over TCP: three from one address, the fourth closed; others answered.
    let dns = server.dns_addr();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect_from("127.0.0.2", dns).await);
    }
    let mut fourth = connect_from("127.0.0.2", dns).await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    let mut client = tcp_client(dns).await;
    let resp = query(&mut client, "svc.", RecordType::SOA).await;
    assert_eq!(resp.answers.len(), 1);
    drop((held, open));
    server.shutdown().await;
}

#[tokio::test]
async fn accepted_connections_have_tcp_keepalive() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("NACRE_REQUIRE_SS").is_none(),
            "ss (iproute2) is needed"
        );
        eprintln!("skipping: no ss (iproute2)");
        return;
    }
    let server = TestServer::start_with(|s| s.http.tcp_keepalive_secs = 45).await;
    let port = server.app.http_addr.port();
    let _stream = TcpStream::connect(server.app.http_addr).await.unwrap();
    let mut seen = String::new();
    wait_until(Duration::from_secs(5), "a keepalive timer", || {
        let out = std::process::Command::new("ss")
            .args([
                "-tnoH",
                "state",
                "established",
                &format!("( sport = :{port} )"),
            ])
            .output()
            .unwrap();
        seen = String::from_utf8_lossy(&out.stdout).to_string();
        let found = seen.contains("keepalive");
        async move { found }
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_connection_limit_idle_ones_make_room_and_busy_ones_stay() {
    let server = TestServer::start_with(|s| s.http.max_connections = 3).await;
    let addr = server.app.http_addr;
    let (status, _) = server
        .call_form(
            reqwest::Method::POST,
            "/nacos/v1/cs/configs",
            &[("dataId", "held"), ("group", "G"), ("content", "v")],
        )
        .await;
    assert_eq!(status, 200);
    // A held long poll: a busy connection (the client's pooled connection used for
    // the publish above is idle and gets evicted first).
    let listening = format!("held\u{2}G\u{2}{:x}\u{1}", md5::Md5::digest(b"v"));
    let held = tokio::spawn({
        let request = server
            .request(reqwest::Method::POST, "/nacos/v1/cs/configs/listener")
            .header("Long-Pulling-Timeout", "3000")
            .form(&[("Listening-Configs", listening)]);
        async move {
            let resp = request.send().await.expect("long poll");
            resp.status().as_u16()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut half = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from("127.0.0.2", addr).await;
        stream.write_all(HALF_SENT).await.unwrap();
        half.push(stream);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Full now; each new request closes the oldest idle or half-sent one.
    for _ in 0..3 {
        assert_eq!(liveness(addr).await, "HTTP/1.1 200 OK");
    }
    assert!(closed_within(&mut half[0], Duration::from_secs(2)).await);
    assert_eq!(held.await.unwrap(), 200, "the long poll was never closed");
    drop(half);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_closed() {
    let server = TestServer::start_with(|s| {
        s.http.idle_timeout_ms = 600;
    })
    .await;
    let addr = server.app.http_addr;
    let content = "x".repeat(1 << 20);
    let (status, body) = server
        .call_form(
            reqwest::Method::POST,
            "/nacos/v1/cs/configs",
            &[("dataId", "big"), ("group", "G"), ("content", &content)],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let token = login(&server.base, "nacos", &admin_password(server.data_dir())).await;
    // 32 pipelined GETs of 1 MiB each (32 MiB of answers) from a client that reads none.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.expect("connect");
    let get = format!(
        "GET /nacos/v1/cs/configs?dataId=big&group=G&accessToken={token} HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    stream.write_all(get.repeat(32).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // The server gave up on the stalled writes: what was in flight drains, then EOF.
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received += n,
        }
    };
    assert!(closed, "the connection was closed after {received} bytes");
    assert!(
        received < 32 << 20,
        "not every answer went out: {received} bytes"
    );
    assert_eq!(liveness(addr).await, "HTTP/1.1 200 OK");
    server.shutdown().await;
}
