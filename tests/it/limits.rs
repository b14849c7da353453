//! Limits on input: every request over one gets a 400 or 413 that says which, and
//! changes nothing.

use reqwest::Method;

use crate::support::*;

#[tokio::test]
async fn over_limit_requests_get_a_clear_400_or_413() {
    let server = TestServer::start_with(|s| s.http.max_body_bytes = 64 * 1024).await;
    let url = format!("{}/nacos/v1/cs/configs", server.base);

    // A body over http.max_body_bytes.
    let big = "x".repeat(100 * 1024);
    let (status, body) = server
        .send(server.http.post(&url).form(&[
            ("dataId", "d"),
            ("group", "G"),
            ("content", big.as_str()),
        ]))
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body"), "{body}");

    // Too many parameters, and a name too long.
    let many: Vec<(String, String)> = (0..300).map(|i| (format!("p{i}"), "v".into())).collect();
    let (status, body) = server.send(server.http.post(&url).form(&many)).await;
    assert_eq!(status, 400);
    assert!(body.contains("too many parameters"), "{body}");
    let long_name = "n".repeat(200);
    let (status, body) = server
        .send(server.http.get(&url).query(&[(long_name.as_str(), "v")]))
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("parameter name"), "{body}");

    // Metadata over 1024 characters, as a parameter and in a beat.
    let metadata = format!(r#"{{"k":"{}"}}"#, "v".repeat(1100));
    let (status, body) = server
        .instance(
            Method::POST,
            "/nacos/v1/ns/instance",
            ("svc", "10.0.0.1", "80"),
            &[("metadata", metadata.as_str())],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("metadata") && body.contains("1024"), "{body}");
    let beat = format!(
        r#"{{"ip":"10.0.0.1","port":80,"metadata":{{"k":"{}"}}}}"#,
        "v".repeat(1100)
    );
    let (status, body) = server
        .instance(
            Method::PUT,
            "/nacos/v1/ns/instance/beat",
            ("svc", "10.0.0.1", "80"),
            &[("beat", beat.as_str())],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("metadata"), "{body}");

    // Page sizes over config.max_page_size (1000).
    for (path, extra) in [
        ("/nacos/v1/ns/service/list", vec![("pageNo", "1")]),
        (
            "/nacos/v1/ns/service/subscribers",
            vec![("serviceName", "svc")],
        ),
        (
            "/nacos/v1/cs/configs",
            vec![("search", "accurate"), ("dataId", ""), ("group", "")],
        ),
        ("/nacos/v1/auth/users", vec![("pageNo", "1")]),
    ] {
        let mut q = extra.clone();
        q.push(("pageSize", "100000"));
        let (status, body) = server.call(Method::GET, path, &q).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("pageSize"), "{path}: {body}");
    }

    // Nothing of it was stored.
    assert!(
        server.list("svc", &[]).await["hosts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, _) = server
        .call(
            Method::GET,
            "/nacos/v1/cs/configs",
            &[("dataId", "d"), ("group", "G")],
        )
        .await;
    assert_eq!(status, 404);
    server.shutdown().await;
}
