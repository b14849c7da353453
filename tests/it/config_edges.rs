//! Config center edges, each on SQLite and on the local MariaDB: compare-and-set
//! publishes (`casMd5`), Nacos's 10 MB content limit, and imports that say what they
//! skipped.

use std::collections::HashSet;

use reqwest::Method;

use crate::config::{CONFIGS, get, get_json, publish, python_md5};
use crate::support::{Db, TestServer, on_both_databases};

on_both_databases!(
    cas_publishes_refuse_a_stale_md5,
    one_of_concurrent_cas_publishers_wins,
    cas_holds_across_two_nodes_on_one_database,
    content_up_to_nacos_s_ten_megabytes,
    an_import_lists_every_config_it_did_not_take,
);

/// Publishes `content` with header `casMd5`; status and body.
async fn publish_cas(
    s: &TestServer,
    data_id: &str,
    content: &str,
    cas: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = s
        .request(Method::POST, CONFIGS)
        .header("casMd5", cas)
        .form(&[("dataId", data_id), ("group", "G"), ("content", content)]);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    s.send(request).await
}

async fn history_count(s: &TestServer, data_id: &str) -> u64 {
    let page = get_json(
        s,
        "/nacos/v1/cs/history",
        &[("search", "accurate"), ("dataId", data_id), ("group", "G")],
    )
    .await;
    page["totalCount"].as_u64().expect("totalCount")
}

async fn cas_publishes_refuse_a_stale_md5(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "cas", "G", "v1", &[]).await;
    // The repro: a wrong casMd5 used to answer true and overwrite.
    let (status, body) = publish_cas(&s, "cas", "v2", "wrong", &[]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body,
        "caused: Cas publish fail, server md5 may have changed.;"
    );
    assert_eq!(get(&s, "cas", "G", &[]).await.1, "v1");
    assert_eq!(history_count(&s, "cas").await, 1, "nothing written");
    // The right one replaces it.
    let (status, body) = publish_cas(&s, "cas", "v2", &python_md5("v1"), &[]).await;
    assert_eq!((status, body.as_str()), (200, "true"));
    assert_eq!(get(&s, "cas", "G", &[]).await.1, "v2");
    // The old MD5 is stale now.
    let (status, _) = publish_cas(&s, "cas", "v3", &python_md5("v1"), &[]).await;
    assert_eq!(status, 409);
    // A config that does not exist is created, whatever casMd5 says (as Nacos).
    let (status, body) = publish_cas(&s, "fresh", "f1", "anything", &[]).await;
    assert_eq!((status, body.as_str()), (200, "true"));
    // Beta versions are compared with the stored beta version.
    let beta = [("betaIps", "10.0.0.9")];
    publish(&s, "cas", "G", "b1", &[]).await;
    let (status, _) = publish_cas(&s, "cas", "beta1", "none-yet", &beta).await;
    assert_eq!(status, 200, "no beta version yet: created");
    let (status, _) = publish_cas(&s, "cas", "beta2", &python_md5("b1"), &beta).await;
    assert_eq!(status, 409, "the beta version holds beta1");
    let (status, _) = publish_cas(&s, "cas", "beta2", &python_md5("beta1"), &beta).await;
    assert_eq!(status, 200);
    s.shutdown().await;
}

async fn one_of_concurrent_cas_publishers_wins(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "race-cas", "G", "base", &[]).await;
    let before = history_count(&s, "race-cas").await;
    for round in 0..3 {
        let current = get(&s, "race-cas", "G", &[]).await.1;
        let cas = python_md5(&current);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (base, http, cas) = (s.base.clone(), s.http.clone(), cas.clone());
            tasks.push(tokio::spawn(async move {
                let content = format!("round {round} publisher {i}");
                let resp = http
                    .post(format!("{base}{CONFIGS}"))
                    .header("casMd5", cas)
                    .form(&[
                        ("dataId", "race-cas"),
                        ("group", "G"),
                        ("content", content.as_str()),
                    ])
                    .send()
                    .await
                    .expect("publish");
                (resp.status().as_u16(), content)
            }));
        }
        let mut winners = HashSet::new();
        for task in tasks {
            let (status, content) = task.await.unwrap();
            match status {
                200 => {
                    winners.insert(content);
                }
                409 => {}
                other => panic!("status {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = get(&s, "race-cas", "G", &[]).await.1;
        assert!(winners.contains(&stored), "{stored} won");
    }
    assert_eq!(history_count(&s, "race-cas").await, before + 3);
    s.shutdown().await;
}

async fn cas_holds_across_two_nodes_on_one_database(db: Db) {
    // Two nodes, each with its own cache and its own per-key locks, on one database:
    // only the database can make the check and the write one step.
    let password = "both-nodes-admin-pw";
    let a = TestServer::start_on(db, |s| s.auth.admin_password = Some(password.into())).await;
    let url = a.db_url.clone();
    let b = TestServer::start_with(|s| {
        s.config_store.url = url;
        s.auth.admin_password = Some(password.into());
    })
    .await;
    let mut clients = Vec::new();
    for node in [&a, &b] {
        let token = crate::support::login(&node.base, "nacos", password).await;
        clients.push((node.base.clone(), crate::support::client_with_token(&token)));
    }
    // The admin's password came from the environment: the nodes' own clients hold
    // no token, so every call goes through a signed-in client.
    let (base_a, http_a) = clients[0].clone();
    let published = http_a
        .post(format!("{base_a}{CONFIGS}"))
        .form(&[("dataId", "shared"), ("group", "G"), ("content", "base")])
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    for round in 0..3 {
        // The database's content (node a's cache may not have heard of b's writes).
        let all: serde_json::Value = http_a
            .get(format!("{base_a}{CONFIGS}"))
            .query(&[("dataId", "shared"), ("group", "G"), ("show", "all")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let current = all["content"].as_str().unwrap().to_string();
        let cas = python_md5(&current);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (base, http) = clients[i % 2].clone();
            let cas = cas.clone();
            tasks.push(tokio::spawn(async move {
                let content = format!("round {round} publisher {i}");
                let resp = http
                    .post(format!("{base}{CONFIGS}"))
                    .header("casMd5", cas)
                    .form(&[
                        ("dataId", "shared"),
                        ("group", "G"),
                        ("content", content.as_str()),
                    ])
                    .send()
                    .await
                    .expect("publish");
                (resp.status().as_u16(), content)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (status, content) = task.await.unwrap();
            assert!(status == 200 || status == 409, "status {status}");
            if status == 200 {
                winners.push(content);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
    }
    b.shutdown().await;
    a.shutdown().await;
}

async fn content_up_to_nacos_s_ten_megabytes(db: Db) {
    // Default settings: Nacos's maxContent of 10 MiB.
    let s = TestServer::start_db(db).await;
    let max = 10 * 1024 * 1024;
    let big = "x".repeat(max);
    publish(&s, "big", "G", &big, &[]).await;
    let (status, body, _) = get(&s, "big", "G", &[]).await;
    assert_eq!((status, body.len()), (200, max));
    let (status, body) = s
        .call_form(
            Method::POST,
            CONFIGS,
            &[
                ("dataId", "bigger"),
                ("group", "G"),
                ("content", &format!("{big}y")),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, "caused: invalid content, over 10485760;");
    s.shutdown().await;
}

/// A v1 export zip of `entries` (`group/dataId`, content bytes).
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, content) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(content).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

async fn an_import_lists_every_config_it_did_not_take(db: Db) {
    let s = TestServer::start_on(db, |c| c.config.max_content_bytes = 1024).await;
    let large = vec![b'x'; 2048];
    let huge = vec![b'y'; 8 * 1024 * 1024];
    let zip = zip_of(&[
        ("G/fine", b"fine"),
        ("G/large", &large),
        ("G/huge", &huge),
        ("G/blank", b"   "),
        ("G/binary", &[0xff, 0xfe, 0x00]),
        ("G/bad id!", b"v"),
        ("not-a-config", b"v"),
    ]);
    let part = reqwest::multipart::Part::bytes(zip).file_name("export.zip");
    let (status, body) = s
        .send(
            s.request(Method::POST, CONFIGS)
                .query(&[("import", "true"), ("policy", "OVERWRITE")])
                .multipart(reqwest::multipart::Form::new().part("file", part)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = &result["data"];
    assert_eq!(data["succCount"], 1, "{result}");
    let failed: HashSet<String> = data["failData"]
        .as_array()
        .expect("failData")
        .iter()
        .map(|f| {
            assert!(f["reason"].as_str().is_some_and(|r| !r.is_empty()), "{f}");
            format!(
                "{}/{}",
                f["group"].as_str().unwrap(),
                f["dataId"].as_str().unwrap()
            )
        })
        .collect();
    let want: HashSet<String> = ["G/large", "G/huge", "G/blank", "G/binary", "G/bad id!"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(failed, want, "{result}");
    // Only what is no config at all is unrecognized.
    assert_eq!(data["unrecognizedCount"], 1, "{result}");
    assert_eq!(get(&s, "fine", "G", &[]).await.1, "fine");
    assert_eq!(get(&s, "large", "G", &[]).await.0, 404);
    s.shutdown().await;
}

/// The repro: a compare-and-set publish locked every row of its dataId (all groups
/// and namespaces) on MySQL, so a lock held on any of them stalled it, and InnoDB
/// could pick it as a deadlock victim. It locks its own row only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mariadb_a_cas_publish_locks_only_its_own_row() {
    use sqlx::Connection as _;
    let s = TestServer::start_db(Db::MariaDb).await;
    publish(&s, "locked", "G", "v1", &[]).await;
    publish(&s, "locked", "OTHER", "o1", &[]).await;
    let mut other = sqlx::MySqlConnection::connect(&s.db_url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    let held = sqlx::query(
        "SELECT id FROM config_info WHERE data_id = 'locked' AND group_id = 'OTHER' \
         AND tenant_id = '' FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(held.len(), 1, "another client holds group OTHER's row");
    // Without the fix this waits for innodb_lock_wait_timeout (50 s) and fails.
    let published = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        publish_cas(&s, "locked", "v2", &python_md5("v1"), &[]),
    )
    .await
    .expect("the publish did not wait for another group's lock");
    assert_eq!(published, (200, "true".to_string()));
    let (status, body) = publish_cas(&s, "locked", "v3", &python_md5("v1"), &[]).await;
    assert_eq!(status, 409, "the check still holds: {body}");
    tx.commit().await.unwrap();
    assert_eq!(get(&s, "locked", "G", &[]).await.1, "v2");
    assert_eq!(get(&s, "locked", "OTHER", &[]).await.1, "o1");
    s.shutdown().await;
}
