//! The `nacre` binary itself: port 0 for both servers with the bound addresses logged,
//! a clean exit on SIGTERM, and a privileged DNS port refused with a hint.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nacre");

/// Starts `nacre serve` on port 0 for HTTP and DNS with `data_dir` and `extra` flags;
/// returns the child and the HTTP and DNS addresses it logged.
pub fn spawn_nacre(data_dir: &Path, extra: &[&str]) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .current_dir(data_dir.parent().unwrap_or(data_dir))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("nacre starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let (mut dns, mut http) = (None, None);
    while (dns.is_none() || http.is_none()) && start.elapsed() < Duration::from_secs(30) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let addr = line.split("addr=").nth(1).map(|a| a.trim().to_string());
            if line.contains("DNS listening") {
                dns = addr;
            } else if line.contains("HTTP listening") {
                http = addr;
            }
        }
    }
    let dns = dns
        .expect("DNS address logged")
        .parse()
        .expect("DNS address");
    let http = http
        .expect("HTTP address logged")
        .parse()
        .expect("HTTP address");
    (child, http, dns)
}

#[test]
fn serve_on_port_zero_logs_both_addresses_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http, dns) = spawn_nacre(&dir.path().join("data"), &[]);
    assert_ne!(dns.port(), 0);
    assert_ne!(http.port(), 0);
    std::net::TcpStream::connect(http).expect("HTTP accepts");
    std::net::TcpStream::connect(dns).expect("DNS over TCP accepts");

    // SIGTERM: a clean, successful exit.
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "nacre did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn privileged_dns_port_without_privilege_says_how_to_fix_it() {
    // Needs root (to drop to `nobody`) and runuser; elsewhere there is nothing to check.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    if !is_root || Command::new("runuser").arg("--help").output().is_err() {
        eprintln!("skipping: needs root and runuser");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let open = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    open(dir.path());
    open(&data);
    let out = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            BIN,
            "serve",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .args(["--dns-addr", "127.0.0.1:53", "--data-dir"])
        .arg(&data)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("runuser runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("cannot execute")
        || stderr.contains("Permission denied (os error 13)") && !stderr.contains("bind")
    {
        eprintln!("skipping: nobody cannot run the test binary here: {stderr}");
        return;
    }
    assert!(!out.status.success(), "binding port 53 as nobody must fail");
    assert!(
        stderr.contains("cap_net_bind_service") && stderr.contains("--dns-addr"),
        "the error says how to fix it: {stderr}"
    );
}

#[test]
fn a_config_file_without_auth_is_accepted_for_a_loopback_flag_and_refused_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nacre.toml");
    std::fs::write(&conf, "[auth]\nenabled = false\n").unwrap();
    let conf_arg = conf.display().to_string();
    // The file alone would serve 0.0.0.0:8848 without auth; the flag makes it loopback.
    let (mut child, http, _) = spawn_nacre(&dir.path().join("data"), &["--config", &conf_arg]);
    std::net::TcpStream::connect(http).expect("HTTP accepts");
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(BIN)
        .args(["serve", "--config", &conf_arg])
        .args([
            "--http-addr",
            "0.0.0.0:0",
            "--dns-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data2"))
        .env("NO_COLOR", "1")
        .output()
        .expect("nacre runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.enabled") && stderr.contains("loopback"),
        "{stderr}"
    );
}
