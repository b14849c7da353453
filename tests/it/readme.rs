//! Replays the README walk-throughs with the real `curl` and `dig` against a node on
//! port 0, and checks that `dig` and the config reads print exactly what the README
//! shows.

use std::process::Command;

use crate::support::TestServer;

/// The lines of the fenced block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> Vec<String> {
    let after = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let mut lines = after.lines().skip_while(|l| !l.starts_with("```")).skip(1);
    lines
        .by_ref()
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_string)
        .collect()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-v").output().is_ok()
}

/// Runs `script` with `sh -e`, with `env` set; returns its standard output.
async fn run(script: String, env: Vec<(&'static str, String)>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(&script)
            .envs(env)
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    })
    .await
    .expect("command task")
}

#[tokio::test]
async fn readme_walkthrough_prints_what_it_says() {
    if !(have("dig") && have("curl")) {
        assert!(
            std::env::var("NACRE_REQUIRE_DIG").is_err(),
            "dig and curl are required (apt-get install dnsutils curl)"
        );
        eprintln!("skipping the README walk-through: dig or curl is not installed");
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let server = TestServer::start().await;
    let http = server.app.http_addr.to_string();
    let dns_port = server.dns_addr().port().to_string();
    let password_file = server.data_dir().join("auth/admin.password");
    // The walk-through runs as one shell session: it logs in, registers, asks DNS.
    let script = block_after(&readme, "<!-- walkthrough:commands -->")
        .join("\n")
        .replace("127.0.0.1:8848", &http)
        .replace("-p 5353", &format!("-p {dns_port}"))
        .replace(
            "data/auth/admin.password",
            &password_file.display().to_string(),
        );
    let expected_srv = block_after(&readme, "<!-- walkthrough:srv -->").join("\n") + "\n";
    let out = run(script, Vec::new()).await;
    assert_eq!(
        out,
        format!("okok{expected_srv}"),
        "each curl prints ok, then dig the SRV records"
    );

    // The config walk-through, with the TOKEN of the one above, prints what the
    // README says.
    let token = crate::support::login(
        &server.base,
        "nacos",
        &crate::support::admin_password(server.data_dir()),
    )
    .await;
    let mut printed = String::new();
    for line in block_after(&readme, "<!-- walkthrough:config -->") {
        let out = run(
            line.replace("127.0.0.1:8848", &http),
            vec![("TOKEN", token.clone())],
        )
        .await;
        printed.push_str(&out);
        printed.push('\n');
    }
    let expected = block_after(&readme, "<!-- walkthrough:config-output -->").join("\n") + "\n";
    assert_eq!(printed, expected);
    server.shutdown().await;
}
