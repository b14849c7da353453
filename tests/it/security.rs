//! The security fixes of the hardening pass, each as a user with rights on one
//! namespace would try them: files of the data dir, namespaces beyond one's grants,
//! history authorship, padded user names.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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
