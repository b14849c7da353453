//! Durability of the config center: 1,000 publishes to the real binary, a hard kill
//! (SIGKILL, no graceful shutdown), a restart on the same data: every acknowledged
//! publish is there, with its history row. On SQLite and on the local MariaDB.

use std::time::Duration;

use crate::binary::spawn_nacre;
use crate::support::MariaDb;

const CONFIGS: usize = 1000;
const PUBLISHERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_a_hard_kill_sqlite() {
    survives_hard_kill(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_a_hard_kill_mariadb() {
    let db = MariaDb::create().await;
    survives_hard_kill(Some(db.url())).await;
}

async fn survives_hard_kill(db_url: Option<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let extra: Vec<&str> = match &db_url {
        Some(url) => vec!["--db-url", url.as_str()],
        None => Vec::new(),
    };
    let (mut child, http, _) = spawn_nacre(&data, &extra);
    let base = format!("http://{http}");
    let client = crate::support::admin_client(&base, &data).await;

    // 16 concurrent publishers, 1,000 configs; the kill comes right after the last
    // acknowledgement.
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (p..CONFIGS).step_by(PUBLISHERS) {
                let data_id = format!("durable-{i:04}");
                let content = format!("content {i} 配置");
                let resp = client
                    .post(format!("{base}/nacos/v1/cs/configs"))
                    .form(&[
                        ("dataId", data_id.as_str()),
                        ("group", "G"),
                        ("content", &content),
                    ])
                    .send()
                    .await
                    .expect("publish");
                if resp.status() == 200 && resp.text().await.expect("body") == "true" {
                    acked.push((data_id, content));
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("publisher"));
    }
    assert_eq!(acked.len(), CONFIGS, "every publish is acknowledged");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let (mut child, http, _) = spawn_nacre(&data, &extra);
    let base = format!("http://{http}");
    for (data_id, content) in &acked {
        let resp = client
            .get(format!("{base}/nacos/v1/cs/configs"))
            .query(&[("dataId", data_id.as_str()), ("group", "G")])
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{data_id} is there after the kill");
        assert_eq!(&resp.text().await.expect("body"), content);
        let page: serde_json::Value = client
            .get(format!("{base}/nacos/v1/cs/history"))
            .query(&[
                ("search", "accurate"),
                ("dataId", data_id.as_str()),
                ("group", "G"),
            ])
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("history JSON");
        assert_eq!(page["totalCount"], 1, "{data_id} has its history row");
    }
    child.kill().expect("SIGKILL");
    let _ = tokio::time::timeout(Duration::from_secs(5), async { child.wait() }).await;
}
