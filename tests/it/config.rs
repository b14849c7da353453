//! The config center over real HTTP, each scenario on SQLite and on the local MariaDB:
//! publish/get/delete, search, history and rollback, beta by IP, tags, namespaces,
//! import/export, long polling, and concurrent publishers on one key.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::support::{Db, TestServer, on_both_databases};

pub(crate) const CONFIGS: &str = "/nacos/v1/cs/configs";
const LISTENER: &str = "/nacos/v1/cs/configs/listener";

on_both_databases!(
    publish_get_delete,
    bad_input_is_refused_with_the_field_named,
    search_accurate_blur_and_pages,
    history_and_rollback,
    beta_is_served_by_client_ip,
    tag_versions,
    namespaces,
    import_export_round_trip,
    long_polling,
    concurrent_publishers_on_one_key,
);

/// Publishes with a form body, as the Python and Node clients do; asserts `true`.
pub(crate) async fn publish(
    s: &TestServer,
    data_id: &str,
    group: &str,
    content: &str,
    extra: &[(&str, &str)],
) {
    let mut form = vec![("dataId", data_id), ("group", group), ("content", content)];
    form.extend_from_slice(extra);
    let (status, body) = s.call_form(Method::POST, CONFIGS, &form).await;
    assert_eq!((status, body.as_str()), (200, "true"), "publish {data_id}");
}

/// GET a config: status, body and headers.
pub(crate) async fn get(
    s: &TestServer,
    data_id: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut query = vec![("dataId", data_id), ("group", group)];
    query.extend_from_slice(extra);
    let resp = s
        .request(Method::GET, CONFIGS)
        .query(&query)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.expect("body"), headers)
}

pub(crate) async fn get_json(s: &TestServer, path: &str, query: &[(&str, &str)]) -> Value {
    let (status, body) = s.call(Method::GET, path, query).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

pub(crate) fn header<'h>(h: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// `Listening-Configs` for one key (no tenant).
fn listening(data_id: &str, group: &str, md5: &str) -> String {
    format!("{data_id}\u{2}{group}\u{2}{md5}\u{1}")
}

/// Starts a long-polling request (30 s) for `watch` in the background and waits until
/// the server holds it; the task gives the time the answer came and its body.
async fn hold_listener(
    s: &TestServer,
    watch: String,
) -> tokio::task::JoinHandle<(Instant, String)> {
    let before = s.app.config.hub().held();
    let (base, http) = (s.base.clone(), s.http.clone());
    let task = tokio::spawn(async move {
        let resp = http
            .post(format!("{base}{LISTENER}"))
            .header("Long-Pulling-Timeout", "30000")
            .form(&[("Listening-Configs", watch)])
            .send()
            .await
            .expect("listener");
        (Instant::now(), resp.text().await.expect("body"))
    });
    crate::support::wait_until(Duration::from_secs(5), "listener held", || async {
        s.app.config.hub().held() > before
    })
    .await;
    task
}

/// A long-polling request; returns status, body and how long it took.
async fn listen(
    s: &TestServer,
    configs: &str,
    timeout_ms: u64,
    extra: &[(&str, &str)],
) -> (u16, String, Duration) {
    let start = Instant::now();
    let mut req = s
        .request(Method::POST, LISTENER)
        .header("Long-Pulling-Timeout", timeout_ms.to_string())
        .form(&[("Listening-Configs", configs)]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("listener");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"), start.elapsed())
}

async fn publish_get_delete(db: Db) {
    let s = TestServer::start_db(db).await;
    // Bytes matter: whitespace at both ends and non-ASCII text are kept, and the MD5 is
    // of the UTF-8 bytes (Python: hashlib.md5(content.encode()).hexdigest()).
    let content = "  配置 = 值\nkey: \u{1F600}\n";
    publish(
        &s,
        "app.yaml",
        "DEFAULT_GROUP",
        content,
        &[("type", "yaml"), ("appName", "shop")],
    )
    .await;
    let (status, body, h) = get(&s, "app.yaml", "DEFAULT_GROUP", &[]).await;
    assert_eq!((status, body.as_str()), (200, content));
    assert_eq!(
        header(&h, "Content-MD5"),
        "b98265171ffbf290f433402831b6d321"
    );
    assert_eq!(header(&h, "Config-Type"), "yaml");
    assert_eq!(header(&h, "Content-Type"), "text/plain;charset=UTF-8");
    assert_eq!(header(&h, "Cache-Control"), "no-cache,no-store");
    assert!(!header(&h, "Last-Modified").is_empty());

    // `tenant=public` is the public namespace, as in Nacos 2.x.
    let (status, body, _) = get(&s, "app.yaml", "DEFAULT_GROUP", &[("tenant", "public")]).await;
    assert_eq!((status, body.as_str()), (200, content));

    // JSON type answers with its content type; show=all carries the stored fields.
    publish(
        &s,
        "app.json",
        "G",
        "{\"a\":1}",
        &[("type", "json"), ("desc", "d"), ("config_tags", "t1,t2")],
    )
    .await;
    let (_, _, h) = get(&s, "app.json", "G", &[]).await;
    assert_eq!(header(&h, "Content-Type"), "application/json;charset=UTF-8");
    let all = get_json(
        &s,
        CONFIGS,
        &[("dataId", "app.json"), ("group", "G"), ("show", "all")],
    )
    .await;
    assert_eq!(all["content"], "{\"a\":1}");
    assert_eq!(all["desc"], "d");
    assert_eq!(all["configTags"], "t1,t2");
    assert_eq!(all["type"], "json");

    // Update keeps the app name when none is sent.
    publish(&s, "app.yaml", "DEFAULT_GROUP", "v2", &[]).await;
    let all = get_json(
        &s,
        CONFIGS,
        &[
            ("dataId", "app.yaml"),
            ("group", "DEFAULT_GROUP"),
            ("show", "all"),
        ],
    )
    .await;
    assert_eq!(all["appName"], "shop");
    assert_eq!(all["content"], "v2");

    // Delete: true, then 404 with Nacos's body; deleting again is still true.
    let q = [("dataId", "app.yaml"), ("group", "DEFAULT_GROUP")];
    assert_eq!(
        s.call(Method::DELETE, CONFIGS, &q).await,
        (200, "true".to_string())
    );
    let (status, body, _) = get(&s, "app.yaml", "DEFAULT_GROUP", &[]).await;
    assert_eq!((status, body.as_str()), (404, "config data not exist\n"));
    assert_eq!(
        s.call(Method::DELETE, CONFIGS, &q).await,
        (200, "true".to_string())
    );

    // Delete by ids.
    let id = all_id(&s, "app.json", "G").await;
    let (status, body) = s
        .call(Method::DELETE, CONFIGS, &[("delType", "ids"), ("ids", &id)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"], true);
    assert_eq!(get(&s, "app.json", "G", &[]).await.0, 404);
    s.shutdown().await;
}

async fn all_id(s: &TestServer, data_id: &str, group: &str) -> String {
    let all = get_json(
        s,
        CONFIGS,
        &[("dataId", data_id), ("group", group), ("show", "all")],
    )
    .await;
    all["id"].as_str().expect("id is a string").to_string()
}

/// MD5 as Python's `hashlib.md5(s.encode()).hexdigest()`, computed by the md-5 crate
/// independently of the server.
pub(crate) fn python_md5(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn bad_input_is_refused_with_the_field_named(db: Db) {
    let s = TestServer::start_on(db, |c| c.config.max_content_bytes = 1024).await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("dataId", "a/b"), ("group", "G"), ("content", "x")],
            "caused: invalid dataId : a/b;",
        ),
        (
            vec![("group", "G"), ("content", "x")],
            "caused: invalid dataId : ;",
        ),
        (
            vec![("dataId", "a"), ("group", "G G"), ("content", "x")],
            "caused: invalid group : G G;",
        ),
        (
            vec![("dataId", "a"), ("group", "G"), ("content", "  ")],
            "caused: content is blank :   ;",
        ),
        (
            vec![
                ("dataId", "a"),
                ("group", "G"),
                ("content", "x"),
                ("tenant", "bad/tenant"),
            ],
            "caused: invalid tenant : bad/tenant;",
        ),
        (
            vec![
                ("dataId", "a"),
                ("group", "G"),
                ("content", "x"),
                ("tag", "waytoolongtagname"),
            ],
            "caused: too long tag, over 16;",
        ),
        (
            vec![
                ("dataId", "a"),
                ("group", "G"),
                ("content", "x"),
                ("config_tags", "1,2,3,4,5,6"),
            ],
            "caused: too many config_tags, over 5;",
        ),
    ];
    for (form, expected) in cases {
        let (status, body) = s.call_form(Method::POST, CONFIGS, &form).await;
        assert_eq!((status, body.as_str()), (400, expected), "{form:?}");
    }
    let big = "x".repeat(1025);
    let (status, body) = s
        .call_form(
            Method::POST,
            CONFIGS,
            &[("dataId", "a"), ("group", "G"), ("content", &big)],
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (400, "caused: invalid content, over 1024;")
    );
    let (status, body) = s
        .call(
            Method::GET,
            CONFIGS,
            &[
                ("search", "accurate"),
                ("dataId", ""),
                ("group", ""),
                ("pageNo", "1"),
                ("pageSize", "0"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("pageSize"), "{body}");
    let (status, body) = s
        .call(
            Method::GET,
            CONFIGS,
            &[("search", "accurate"), ("pageNo", "x"), ("pageSize", "10")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("pageNo"), "{body}");
    // Nothing was stored by the refused requests.
    let page = get_json(
        &s,
        CONFIGS,
        &[
            ("search", "blur"),
            ("dataId", ""),
            ("group", ""),
            ("pageNo", "1"),
            ("pageSize", "10"),
        ],
    )
    .await;
    assert_eq!(page["totalCount"], 0);
    s.shutdown().await;
}

async fn search_accurate_blur_and_pages(db: Db) {
    let s = TestServer::start_db(db).await;
    for i in 0..12 {
        let id = format!("svc-{i:02}.properties");
        let group = if i % 2 == 0 { "EVEN" } else { "ODD" };
        let tags = if i < 3 { "hot" } else { "cold" };
        publish(
            &s,
            &id,
            group,
            &format!("n={i}"),
            &[("appName", "shop"), ("config_tags", tags)],
        )
        .await;
    }
    publish(&s, "other", "EVEN", "x", &[("tenant", "dev")]).await;
    let search = |extra: Vec<(&'static str, &'static str)>| {
        let s = &s;
        async move {
            // The first of two equal names wins, so the extras go first.
            let mut q = extra;
            q.extend([("pageNo", "1"), ("pageSize", "5")]);
            get_json(s, CONFIGS, &q).await
        }
    };
    // Accurate with empty filters lists the public namespace only, paged.
    let page = search(vec![("search", "accurate"), ("dataId", ""), ("group", "")]).await;
    assert_eq!(page["totalCount"], 12);
    assert_eq!(page["pagesAvailable"], 3);
    assert_eq!(page["pageNumber"], 1);
    assert_eq!(page["pageItems"].as_array().unwrap().len(), 5);
    let item = &page["pageItems"][0];
    assert_eq!(item["dataId"], "svc-00.properties");
    assert_eq!(item["content"], "n=0");
    assert_eq!(item["appName"], "shop");
    assert!(item["id"].is_string());
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", "svc-03.properties"),
        ("group", "ODD"),
    ])
    .await;
    assert_eq!(page["totalCount"], 1);
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", ""),
        ("group", "EVEN"),
    ])
    .await;
    assert_eq!(page["totalCount"], 6);
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", ""),
        ("group", ""),
        ("config_tags", "hot"),
    ])
    .await;
    assert_eq!(page["totalCount"], 3);
    // Blur: `*` is the wildcard.
    let page = search(vec![
        ("search", "blur"),
        ("dataId", "svc-1*"),
        ("group", ""),
    ])
    .await;
    assert_eq!(page["totalCount"], 2);
    let page = search(vec![
        ("search", "blur"),
        ("dataId", "*"),
        ("group", "*"),
        ("tenant", "dev"),
    ])
    .await;
    assert_eq!(page["totalCount"], 1);
    // A page past the end is empty, with the counts set.
    let page = search(vec![
        ("search", "accurate"),
        ("dataId", ""),
        ("group", ""),
        ("pageNo", "9"),
    ])
    .await;
    assert_eq!(page["totalCount"], 12);
    assert_eq!(page["pageItems"].as_array().unwrap().len(), 0);
    s.shutdown().await;
}

async fn history_and_rollback(db: Db) {
    let s = TestServer::start_db(db).await;
    for v in ["v1", "v2", "v3"] {
        publish(&s, "h", "G", v, &[]).await;
    }
    let config_id = all_id(&s, "h", "G").await;
    assert_eq!(
        s.call(Method::DELETE, CONFIGS, &[("dataId", "h"), ("group", "G")])
            .await
            .0,
        200
    );
    let q = [("search", "accurate"), ("dataId", "h"), ("group", "G")];
    let page = get_json(&s, "/nacos/v1/cs/history", &q).await;
    assert_eq!(page["totalCount"], 4);
    let items = page["pageItems"].as_array().unwrap();
    let ops: Vec<&str> = items
        .iter()
        .map(|i| i["opType"].as_str().unwrap())
        .collect();
    // Newest first; CHAR(10) padding as Nacos reads it.
    assert_eq!(
        ops,
        ["D         ", "U         ", "U         ", "I         "]
    );
    assert!(items[0]["content"].is_null());
    assert!(items[0]["createdTime"].as_str().unwrap().ends_with("+0000"));
    // Details: I holds the inserted content, U the previous one, D the deleted one.
    let mut contents = Vec::new();
    for item in items {
        let nid = item["id"].as_str().unwrap();
        let detail = get_json(
            &s,
            "/nacos/v1/cs/history",
            &[("nid", nid), ("dataId", "h"), ("group", "G")],
        )
        .await;
        contents.push(detail["content"].as_str().unwrap().to_string());
        assert_eq!(
            detail["md5"],
            python_md5(detail["content"].as_str().unwrap())
        );
    }
    assert_eq!(contents, ["v3", "v2", "v1", "v1"]);
    // A nid read with another config's name is refused.
    let nid = items[0]["id"].as_str().unwrap();
    let (status, _) = s
        .call(
            Method::GET,
            "/nacos/v1/cs/history",
            &[("nid", nid), ("dataId", "other"), ("group", "G")],
        )
        .await;
    assert_eq!(status, 403);
    // previous: the newest history row of the config id.
    let prev = get_json(
        &s,
        "/nacos/v1/cs/history/previous",
        &[("id", &config_id), ("dataId", "h"), ("group", "G")],
    )
    .await;
    assert_eq!(prev["opType"], "D         ");
    // Rollback: publish the content of a history version.
    let v2_nid = items[1]["id"].as_str().unwrap();
    let v2 = get_json(
        &s,
        "/nacos/v1/cs/history",
        &[("nid", v2_nid), ("dataId", "h"), ("group", "G")],
    )
    .await;
    publish(&s, "h", "G", v2["content"].as_str().unwrap(), &[]).await;
    assert_eq!(get(&s, "h", "G", &[]).await.1, "v2");
    let page = get_json(&s, "/nacos/v1/cs/history", &q).await;
    assert_eq!(page["totalCount"], 5);
    let listed = get_json(&s, "/nacos/v1/cs/history/configs", &[("tenant", "")]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    s.shutdown().await;
}

async fn beta_is_served_by_client_ip(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "b", "G", "formal", &[]).await;
    let formal_md5 = python_md5("formal");
    // A listener from 127.0.0.1 holds on the formal MD5; a beta for another IP does
    // not wake it, one for 127.0.0.1 does.
    let held = hold_listener(&s, listening("b", "G", &formal_md5)).await;
    let beta = |ips: &'static str, content: &'static str| {
        let s = &s;
        async move {
            let resp = s
                .request(Method::POST, CONFIGS)
                .header("betaIps", ips)
                .form(&[("dataId", "b"), ("group", "G"), ("content", content)])
                .send()
                .await
                .expect("beta publish");
            assert_eq!(resp.text().await.unwrap(), "true");
        }
    };
    beta("10.9.9.9", "beta-elsewhere").await;
    assert_eq!(get(&s, "b", "G", &[]).await.1, "formal");
    assert_eq!(
        s.app.config.hub().held(),
        1,
        "a beta for another IP wakes nobody"
    );
    beta("10.9.9.9,127.0.0.1", "beta-here").await;
    let (_, answer) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(answer, "b%02G%01\n");
    let (status, body, h) = get(&s, "b", "G", &[]).await;
    assert_eq!(
        (status, body.as_str(), header(&h, "isBeta")),
        (200, "beta-here", "true")
    );
    let q = get_json(
        &s,
        CONFIGS,
        &[("dataId", "b"), ("group", "G"), ("beta", "true")],
    )
    .await;
    assert_eq!(q["data"]["betaIps"], "10.9.9.9,127.0.0.1");
    assert_eq!(q["data"]["content"], "beta-here");
    // The listener compares with the beta MD5 from this IP.
    let (_, body, _) = listen(
        &s,
        &listening("b", "G", &python_md5("beta-here")),
        1000,
        &[("Long-Pulling-Timeout-No-Hangup", "true")],
    )
    .await;
    assert_eq!(body, "");
    // Stop beta: formal again.
    let (status, body) = s
        .call(
            Method::DELETE,
            CONFIGS,
            &[("dataId", "b"), ("group", "G"), ("beta", "true")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"], true);
    let (_, body, h) = get(&s, "b", "G", &[]).await;
    assert_eq!((body.as_str(), header(&h, "isBeta")), ("formal", ""));
    s.shutdown().await;
}

async fn tag_versions(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "t", "G", "formal", &[]).await;
    publish(&s, "t", "G", "canary-content", &[("tag", "canary")]).await;
    assert_eq!(get(&s, "t", "G", &[]).await.1, "formal");
    let (status, body, h) = get(&s, "t", "G", &[("tag", "canary")]).await;
    assert_eq!(
        (status, body.as_str(), header(&h, "Vipserver-Tag")),
        (200, "canary-content", "canary")
    );
    assert_eq!(get(&s, "t", "G", &[("tag", "nope")]).await.0, 404);
    // The Vipserver-Tag header selects the tag version when there is one.
    let resp = s
        .request(Method::GET, CONFIGS)
        .query(&[("dataId", "t"), ("group", "G")])
        .header("Vipserver-Tag", "canary")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "canary-content");
    // Deleting the tag version leaves the formal one.
    let (status, _) = s
        .call(
            Method::DELETE,
            CONFIGS,
            &[("dataId", "t"), ("group", "G"), ("tag", "canary")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(get(&s, "t", "G", &[("tag", "canary")]).await.0, 404);
    assert_eq!(get(&s, "t", "G", &[]).await.1, "formal");
    s.shutdown().await;
}

async fn namespaces(db: Db) {
    let s = TestServer::start_db(db).await;
    const NS: &str = "/nacos/v1/console/namespaces";
    let list = get_json(&s, NS, &[]).await;
    assert_eq!(list["code"], 200);
    assert_eq!(list["data"][0]["namespace"], "");
    assert_eq!(list["data"][0]["namespaceShowName"], "public");
    assert_eq!(list["data"][0]["type"], 0);
    let create = |id: &'static str, name: &'static str| {
        let s = &s;
        async move {
            s.call_form(
                Method::POST,
                NS,
                &[
                    ("customNamespaceId", id),
                    ("namespaceName", name),
                    ("namespaceDesc", "d"),
                ],
            )
            .await
        }
    };
    assert_eq!(create("dev", "Development").await, (200, "true".into()));
    assert_eq!(
        create("dev", "Again").await,
        (200, "false".into()),
        "taken id"
    );
    assert_eq!(create("bad id", "x").await, (200, "false".into()), "bad id");
    assert_eq!(
        create("x1", "bad@name").await,
        (200, "false".into()),
        "bad name"
    );
    let (status, _) = s
        .call_form(Method::POST, NS, &[("namespaceName", "generated")])
        .await;
    assert_eq!(status, 200);
    let exists = |id: &'static str| {
        let s = &s;
        async move {
            s.call(
                Method::GET,
                NS,
                &[("checkNamespaceIdExist", "true"), ("customNamespaceId", id)],
            )
            .await
            .1
        }
    };
    assert_eq!(exists("dev").await, "true");
    assert_eq!(exists("nope").await, "false");
    publish(&s, "cfg", "G", "x", &[("tenant", "dev")]).await;
    let one = get_json(&s, NS, &[("show", "all"), ("namespaceId", "dev")]).await;
    assert_eq!(
        (
            one["namespaceShowName"].as_str(),
            one["configCount"].as_u64(),
            one["type"].as_u64()
        ),
        (Some("Development"), Some(1), Some(2))
    );
    let (status, body) = s
        .call_form(
            Method::PUT,
            NS,
            &[
                ("namespace", "dev"),
                ("namespaceShowName", "Dev 2"),
                ("namespaceDesc", "new"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let list = get_json(&s, NS, &[]).await;
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespaceShowName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public", "Dev 2", "generated"]);
    assert_eq!(
        s.call(Method::DELETE, NS, &[("namespaceId", "dev")]).await,
        (200, "true".into())
    );
    assert_eq!(exists("dev").await, "false");
    // As in Nacos, an unknown namespace still takes configs and instances.
    publish(&s, "cfg", "G", "y", &[("tenant", "unknown-ns")]).await;
    assert_eq!(
        get(&s, "cfg", "G", &[("tenant", "unknown-ns")]).await.1,
        "y"
    );
    s.register("stock", "10.0.0.1", 80, &[("namespaceId", "unknown-ns")])
        .await;
    let listed = s.list("stock", &[("namespaceId", "unknown-ns")]).await;
    assert_eq!(listed["hosts"].as_array().unwrap().len(), 1);
    s.shutdown().await;
}

async fn import_export_round_trip(db: Db) {
    let s = TestServer::start_db(db).await;
    let (status, _) = s
        .call_form(
            Method::POST,
            "/nacos/v1/console/namespaces",
            &[("customNamespaceId", "dev"), ("namespaceName", "dev")],
        )
        .await;
    assert_eq!(status, 200);
    let configs = [
        ("a.yaml", "G1", "a: 1\n配置: 值"),
        ("b.properties", "G1", "b=2"),
        ("c", "G2", "c"),
    ];
    for (id, group, content) in configs {
        publish(
            &s,
            id,
            group,
            content,
            &[("tenant", "dev"), ("appName", "shop"), ("type", "yaml")],
        )
        .await;
    }
    for v2 in [false, true] {
        let flag = if v2 { "exportV2" } else { "export" };
        let resp = s
            .request(Method::GET, CONFIGS)
            .query(&[
                (flag, "true"),
                ("tenant", "dev"),
                ("group", ""),
                ("dataId", ""),
                ("ids", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            header(resp.headers(), "Content-Disposition")
                .starts_with("attachment;filename=nacos_config_export_")
        );
        let zip = resp.bytes().await.unwrap().to_vec();
        for (id, group, _) in configs {
            assert_eq!(
                s.call(
                    Method::DELETE,
                    CONFIGS,
                    &[("dataId", id), ("group", group), ("tenant", "dev")]
                )
                .await
                .0,
                200
            );
        }
        let import = |zip: Vec<u8>, policy: &'static str| {
            let s = &s;
            async move {
                let part = reqwest::multipart::Part::bytes(zip).file_name("export.zip");
                let form = reqwest::multipart::Form::new().part("file", part);
                let resp = s
                    .request(Method::POST, CONFIGS)
                    .query(&[("import", "true"), ("namespace", "dev"), ("policy", policy)])
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()
            }
        };
        let result = import(zip.clone(), "ABORT").await;
        assert_eq!(result["code"], 200, "{result}");
        assert_eq!(result["data"]["succCount"], 3, "{result}");
        for (id, group, content) in configs {
            let (status, body, h) = get(&s, id, group, &[("tenant", "dev")]).await;
            assert_eq!((status, body.as_str()), (200, content));
            assert_eq!(header(&h, "Content-MD5"), python_md5(content));
        }
        let all = get_json(
            &s,
            CONFIGS,
            &[
                ("dataId", "c"),
                ("group", "G2"),
                ("tenant", "dev"),
                ("show", "all"),
            ],
        )
        .await;
        assert_eq!(all["appName"], "shop");
        // Existing configs: ABORT stops, SKIP skips, OVERWRITE writes.
        let result = import(zip.clone(), "ABORT").await;
        assert_eq!(result["data"]["succCount"], 0, "{result}");
        assert_eq!(
            result["data"]["failData"].as_array().unwrap().len(),
            1,
            "{result}"
        );
        let result = import(zip.clone(), "SKIP").await;
        assert_eq!(
            (
                result["data"]["succCount"].as_u64(),
                result["data"]["skipCount"].as_u64()
            ),
            (Some(0), Some(3)),
            "{result}"
        );
        let result = import(zip.clone(), "OVERWRITE").await;
        assert_eq!(result["data"]["succCount"], 3, "{result}");
    }
    // An unknown namespace and a file that is not a zip are refused with Nacos's codes.
    let part = reqwest::multipart::Part::bytes(b"not a zip".to_vec()).file_name("x.zip");
    let resp = s
        .request(Method::POST, CONFIGS)
        .query(&[("import", "true"), ("namespace", "nope")])
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["code"], 100001);
    let part = reqwest::multipart::Part::bytes(b"not a zip".to_vec()).file_name("x.zip");
    let resp = s
        .request(Method::POST, CONFIGS)
        .query(&[("import", "true"), ("namespace", "dev")])
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["code"], 100004);
    s.shutdown().await;
}

async fn long_polling(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "lp", "G", "one", &[]).await;
    let md5 = python_md5("one");

    // A stale MD5 (and an empty one for an existing config) answers at once.
    let (status, body, took) = listen(&s, &listening("lp", "G", "stale"), 30_000, &[]).await;
    assert_eq!((status, body.as_str()), (200, "lp%02G%01\n"));
    assert!(
        took < Duration::from_secs(5),
        "answered at once, took {took:?}"
    );
    // An empty MD5 for a config that does not exist is up to date: held, then empty.
    let (status, body, took) = listen(&s, &listening("absent", "G", ""), 1_000, &[]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(
        took >= Duration::from_millis(450),
        "held until its timeout, took {took:?}"
    );
    // No-Hangup answers at once even when nothing changed.
    let (_, body, took) = listen(
        &s,
        &listening("lp", "G", &md5),
        30_000,
        &[("Long-Pulling-Timeout-No-Hangup", "true")],
    )
    .await;
    assert_eq!(body, "");
    assert!(took < Duration::from_secs(5));

    // A held listener returns within 1 s of a publish, with the changed key (and its
    // tenant when it has one).
    let (status, body) = s
        .call_form(
            Method::POST,
            CONFIGS,
            &[
                ("dataId", "lp"),
                ("group", "G"),
                ("content", "t"),
                ("tenant", "dev"),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "true"));
    let watch = format!(
        "{}lp\u{2}G\u{2}{}\u{2}dev\u{1}",
        listening("other", "G", ""),
        python_md5("t")
    );
    let held = hold_listener(&s, watch).await;
    // The listener queries see it while it is held.
    let by_key = get_json(
        &s,
        LISTENER,
        &[("dataId", "lp"), ("group", "G"), ("tenant", "dev")],
    )
    .await;
    assert_eq!(
        by_key["lisentersGroupkeyStatus"]["127.0.0.1"],
        python_md5("t")
    );
    let by_ip = get_json(
        &s,
        "/nacos/v1/cs/listener",
        &[("ip", "127.0.0.1"), ("all", "true")],
    )
    .await;
    assert_eq!(
        by_ip["lisentersGroupkeyStatus"]["lp+G+dev"],
        python_md5("t")
    );
    let published_at = Instant::now();
    let (status, _) = s
        .call_form(
            Method::POST,
            CONFIGS,
            &[
                ("dataId", "lp"),
                ("group", "G"),
                ("content", "t2"),
                ("tenant", "dev"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let (answered_at, body) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(body, "lp%02G%02dev%01\n");
    let delay = answered_at.saturating_duration_since(published_at);
    assert!(
        delay < Duration::from_secs(1),
        "answered {delay:?} after the publish"
    );
    assert_eq!(s.app.config.hub().held(), 0);

    // A delete wakes listeners too (the MD5 becomes "").
    let held = hold_listener(&s, listening("lp", "G", &md5)).await;
    assert_eq!(
        s.call(Method::DELETE, CONFIGS, &[("dataId", "lp"), ("group", "G")])
            .await
            .0,
        200
    );
    let (_, body) = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(body, "lp%02G%01\n");

    // Malformed Listening-Configs: 400 `invalid probeModify`.
    for bad in ["", "a\u{1}", "a\u{2}b\u{2}c\u{2}d\u{2}e\u{1}"] {
        let (status, body, _) = listen(&s, bad, 30_000, &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (400, "caused: invalid probeModify;"),
            "{bad:?}"
        );
    }
    s.shutdown().await;
}

async fn concurrent_publishers_on_one_key(db: Db) {
    let s = TestServer::start_db(db).await;
    publish(&s, "race", "G", "initial", &[]).await;
    // Listeners follow the key the way clients do: poll with their MD5, re-read on change.
    let (done_tx, done_rx) = tokio::sync::watch::channel(None::<String>);
    let mut listeners = Vec::new();
    for _ in 0..5 {
        let (base, http) = (s.base.clone(), s.http.clone());
        let mut done = done_rx.clone();
        listeners.push(tokio::spawn(async move {
            let mut md5 = String::new();
            loop {
                let final_md5 = done.borrow_and_update().clone();
                if final_md5.as_deref() == Some(md5.as_str()) {
                    return md5;
                }
                let resp = http
                    .post(format!("{base}{LISTENER}"))
                    .header("Long-Pulling-Timeout", "1000")
                    .form(&[("Listening-Configs", listening("race", "G", &md5))])
                    .send()
                    .await
                    .expect("listener");
                if !resp.text().await.expect("body").is_empty() {
                    let resp = http
                        .get(format!("{base}{CONFIGS}"))
                        .query(&[("dataId", "race"), ("group", "G")])
                        .send()
                        .await
                        .expect("get");
                    md5 = resp
                        .headers()
                        .get("Content-MD5")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                }
            }
        }));
    }
    let mut publishers = Vec::new();
    for i in 0..50 {
        let (base, http) = (s.base.clone(), s.http.clone());
        publishers.push(tokio::spawn(async move {
            let content = format!("content from publisher {i}");
            let resp = http
                .post(format!("{base}{CONFIGS}"))
                .form(&[
                    ("dataId", "race"),
                    ("group", "G"),
                    ("content", content.as_str()),
                ])
                .send()
                .await
                .expect("publish");
            (resp.status().as_u16(), resp.text().await.unwrap(), content)
        }));
    }
    let mut acknowledged = HashSet::new();
    for p in publishers {
        let (status, body, content) = p.await.unwrap();
        if (status, body.as_str()) == (200, "true") {
            acknowledged.insert(content);
        }
    }
    assert_eq!(acknowledged.len(), 50, "every publish is acknowledged");
    let (_, final_content, h) = get(&s, "race", "G", &[]).await;
    assert!(
        acknowledged.contains(&final_content),
        "final content {final_content:?} was acknowledged"
    );
    let final_md5 = header(&h, "Content-MD5").to_string();
    assert_eq!(final_md5, python_md5(&final_content));
    // The database agrees with the cache.
    let all = get_json(
        &s,
        CONFIGS,
        &[("dataId", "race"), ("group", "G"), ("show", "all")],
    )
    .await;
    assert_eq!(all["content"], final_content.as_str());
    // History: the first insert plus one U row per acknowledged publish, each holding
    // the content it replaced, so every acknowledged content but the final one appears.
    let page = get_json(
        &s,
        "/nacos/v1/cs/history",
        &[
            ("search", "accurate"),
            ("dataId", "race"),
            ("group", "G"),
            ("pageSize", "500"),
        ],
    )
    .await;
    assert_eq!(page["totalCount"], 51);
    let mut replaced = HashSet::new();
    for item in page["pageItems"].as_array().unwrap() {
        let nid = item["id"].as_str().unwrap();
        let d = get_json(
            &s,
            "/nacos/v1/cs/history",
            &[("nid", nid), ("dataId", "race"), ("group", "G")],
        )
        .await;
        replaced.insert(d["content"].as_str().unwrap().to_string());
    }
    for content in &acknowledged {
        assert!(
            content == &final_content || replaced.contains(content),
            "{content} is in the history"
        );
    }
    done_tx.send(Some(final_md5.clone())).unwrap();
    for l in listeners {
        let md5 = tokio::time::timeout(Duration::from_secs(20), l)
            .await
            .expect("listener settles")
            .unwrap();
        assert_eq!(md5, final_md5);
    }
    s.shutdown().await;
}
