//! The Raft group of CP naming data across three in-process members (issue #13):
//! persistent instances and service settings reach every member and survive
//! restarting all of them; a leader's death elects another; a member alone refuses
//! writes with a clear 503 and still serves reads; a member that missed writes catches
//! up from the log and, after compaction, from a snapshot; members are removed and
//! added with the admin API.

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::cluster::TestCluster;
use crate::support::wait_until;

/// The group as member `i` sees it (`GET /nacos/v1/core/cluster/raft`).
async fn raft_status(cluster: &TestCluster, i: usize) -> serde_json::Value {
    let (status, body) = cluster
        .call(i, Method::GET, "/nacos/v1/core/cluster/raft", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("raft JSON");
    v["data"].clone()
}

/// Waits until every running member knows the same leader with `voters` voters;
/// returns the leader's member index.
async fn leader(cluster: &TestCluster, voters: usize) -> usize {
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut leaders = Vec::new();
        for i in 0..cluster.members.len() {
            if cluster.nodes[i].is_none() {
                continue;
            }
            let status = raft_status(cluster, i).await;
            let count = status["voters"].as_object().map(|v| v.len()).unwrap_or(0);
            leaders.push((status["leader"].as_u64(), count, status["role"].clone(), i));
        }
        let first = leaders.first().and_then(|l| l.0);
        if first.is_some()
            && leaders.iter().all(|l| l.0 == first && l.1 == voters)
            && let Some(l) = leaders.iter().find(|l| l.2 == "Leader")
        {
            found = Some(l.3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    found.unwrap_or_else(|| panic!("no agreed leader with {voters} voters"))
}

async fn register_persistent(cluster: &TestCluster, i: usize, ip: &str) -> (u16, String) {
    cluster
        .call(
            i,
            Method::POST,
            "/nacos/v1/ns/instance",
            &[
                ("serviceName", "db"),
                ("ip", ip),
                ("port", "5432"),
                ("ephemeral", "false"),
            ],
        )
        .await
}

/// Every `ip` member `i` lists for `db`, healthy or not.
async fn db_ips(cluster: &TestCluster, i: usize) -> Vec<String> {
    let (status, body) = cluster
        .call(
            i,
            Method::GET,
            "/nacos/v1/ns/instance/list",
            &[("serviceName", "db"), ("healthyOnly", "false")],
        )
        .await;
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("list JSON");
    let mut ips: Vec<String> = v["hosts"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(|h| h["ip"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ips.sort();
    ips
}

/// Member `i`'s detail of service `db` (null when it has none).
async fn db_detail(cluster: &TestCluster, i: usize) -> serde_json::Value {
    let (_, body) = cluster
        .call(
            i,
            Method::GET,
            "/nacos/v1/ns/service",
            &[("serviceName", "db")],
        )
        .await;
    serde_json::from_str(&body).unwrap_or_default()
}

async fn threshold(cluster: &TestCluster, i: usize) -> String {
    db_detail(cluster, i).await["protectThreshold"].to_string()
}

/// The DEFAULT cluster's checker type and check port, as member `i` shows them.
async fn checker(cluster: &TestCluster, i: usize) -> String {
    let v = db_detail(cluster, i).await;
    let clusters = v["clusters"].as_array().cloned().unwrap_or_default();
    clusters
        .iter()
        .find(|c| c["name"] == "DEFAULT")
        .map(|c| {
            format!(
                "{} {}",
                c["healthChecker"]["type"].as_str().unwrap_or("?"),
                c["defaultCheckPort"]
            )
        })
        .unwrap_or_default()
}

async fn every_member_lists(cluster: &TestCluster, want: &[&str]) {
    for i in 0..cluster.members.len() {
        if cluster.nodes[i].is_none() {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = db_ips(cluster, i).await;
            if listed == want {
                break;
            }
            if Instant::now() > deadline {
                let status = raft_status(cluster, i).await;
                panic!("member {i} lists {listed:?}, not {want:?}; raft: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn probes_off(s: &mut nacre::settings::Settings) {
    s.health.enabled = false;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_data_reaches_every_member_and_survives_restarting_them_all() {
    let mut cluster = TestCluster::start_with(3, probes_off).await;
    leader(&cluster, 3).await;
    // Written on each member in turn: followers forward to the leader.
    for (i, ip) in ["10.5.0.1", "10.5.0.2", "10.5.0.3"].iter().enumerate() {
        assert_eq!(
            register_persistent(&cluster, i, ip).await,
            (200, "ok".into())
        );
    }
    let (status, body) = cluster
        .call(
            1,
            Method::PUT,
            "/nacos/v1/ns/service",
            &[("serviceName", "db"), ("protectThreshold", "0.6")],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = cluster
        .call(
            2,
            Method::PUT,
            "/nacos/v1/ns/cluster",
            &[
                ("serviceName", "db"),
                ("clusterName", "DEFAULT"),
                ("checkPort", "5432"),
                ("useInstancePort4Check", "false"),
                ("healthChecker", r#"{"type":"NONE"}"#),
            ],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let all = ["10.5.0.1", "10.5.0.2", "10.5.0.3"];
    every_member_lists(&cluster, &all).await;
    for i in 0..3 {
        wait_until(
            Duration::from_secs(5),
            "the threshold everywhere",
            || async { threshold(&cluster, i).await == "0.6" },
        )
        .await;
    }
    // The cluster view shows the group: from the leader, every member's role and
    // term, its own indexes, each follower's replication lag.
    let lead = leader(&cluster, 3).await;
    let (status, body) = cluster
        .call(lead, Method::GET, "/nacos/v1/core/cluster/nodes", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut roles = Vec::new();
    for member in nodes["data"].as_array().expect("members") {
        let raft = &member["extendInfo"]["raft"];
        roles.push(raft["role"].as_str().unwrap_or("?").to_string());
        assert!(raft["term"].as_u64().unwrap_or(0) >= 1, "{member}");
        if member["extendInfo"]["isSelf"] == true {
            assert!(raft["appliedIndex"].as_u64().unwrap_or(0) >= 4, "{member}");
            assert_eq!(raft["commitIndex"], raft["appliedIndex"], "{member}");
        } else {
            assert!(raft["replicationLag"].is_u64(), "{member}");
        }
        let meta =
            &member["extendInfo"]["raftMetaData"]["metaDataMap"]["naming_persistent_service_v2"];
        assert_eq!(
            meta["raftGroupMember"].as_array().map(Vec::len),
            Some(3),
            "{member}"
        );
    }
    roles.sort();
    assert_eq!(roles, ["Follower", "Follower", "Leader"]);
    for i in 0..3 {
        cluster.stop(i).await;
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    leader(&cluster, 3).await;
    every_member_lists(&cluster, &all).await;
    for i in 0..3 {
        assert_eq!(threshold(&cluster, i).await, "0.6", "member {i}");
        assert_eq!(checker(&cluster, i).await, "NONE 5432", "member {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_death_elects_another_and_writes_resume() {
    let mut cluster = TestCluster::start_with(3, probes_off).await;
    let old = leader(&cluster, 3).await;
    assert_eq!(register_persistent(&cluster, old, "10.6.0.1").await.0, 200);
    cluster.stop(old).await;
    let stopped = Instant::now();
    let survivor = (old + 1) % 3;
    // Writes are refused (503) or wait until a new leader takes them.
    let mut accepted_after = None;
    while stopped.elapsed() < Duration::from_secs(15) {
        let (status, body) = register_persistent(&cluster, survivor, "10.6.0.2").await;
        if status == 200 {
            accepted_after = Some(stopped.elapsed());
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("no Raft leader"), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = accepted_after.expect("a write accepted after the leader died");
    println!("first write accepted {took:?} after the leader stopped");
    let new = leader(&cluster, 3).await;
    assert_ne!(new, old);
    every_member_lists(&cluster, &["10.6.0.1", "10.6.0.2"]).await;
    cluster.restart(old).await;
    every_member_lists(&cluster, &["10.6.0.1", "10.6.0.2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_alone_refuses_writes_clearly_and_serves_reads() {
    let mut cluster = TestCluster::start_with(3, probes_off).await;
    leader(&cluster, 3).await;
    assert_eq!(register_persistent(&cluster, 2, "10.7.0.1").await.0, 200);
    every_member_lists(&cluster, &["10.7.0.1"]).await;
    cluster.stop(0).await;
    cluster.stop(1).await;
    // Past the election timeout: a leader knows it lost its majority, a follower its
    // leader.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = register_persistent(&cluster, 2, "10.7.0.2").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no Raft leader"), "{body}");
    assert_eq!(db_ips(&cluster, 2).await, ["10.7.0.1"], "reads are served");
    // The refused write was not applied anywhere once the others are back.
    cluster.restart(0).await;
    cluster.restart(1).await;
    leader(&cluster, 3).await;
    assert_eq!(register_persistent(&cluster, 2, "10.7.0.3").await.0, 200);
    every_member_lists(&cluster, &["10.7.0.1", "10.7.0.3"]).await;
}

fn small_snapshots(s: &mut nacre::settings::Settings) {
    s.health.enabled = false;
    s.raft.snapshot_every = 10;
    s.raft.logs_kept_after_snapshot = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_missed_writes_catches_up_from_the_log_and_from_a_snapshot() {
    let mut cluster = TestCluster::start_with(3, small_snapshots).await;
    let first = leader(&cluster, 3).await;
    let lagging = (first + 1) % 3;
    let writer = (first + 2) % 3;
    cluster.stop(lagging).await;
    let mut want: Vec<String> = Vec::new();
    for k in 0..3 {
        let ip = format!("10.8.0.{}", k + 1);
        assert_eq!(register_persistent(&cluster, writer, &ip).await.0, 200);
        want.push(ip);
    }
    cluster.restart(lagging).await;
    want.sort();
    let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
    every_member_lists(&cluster, &want_refs).await;

    cluster.stop(lagging).await;
    for k in 3..40 {
        let ip = format!("10.8.0.{}", k + 1);
        assert_eq!(register_persistent(&cluster, writer, &ip).await.0, 200);
        want.push(ip);
    }
    let now_leader = leader(&cluster, 3).await;
    let status = raft_status(&cluster, now_leader).await;
    assert!(
        status["snapshotIndex"].as_u64().unwrap_or(0) > 10,
        "the leader compacted its log: {status}"
    );
    cluster.restart(lagging).await;
    want.sort();
    let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
    every_member_lists(&cluster, &want_refs).await;
    let caught_up = raft_status(&cluster, lagging).await;
    assert!(
        caught_up["snapshotIndex"].as_u64().unwrap_or(0) > 10,
        "the lagging member installed a snapshot: {caught_up}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_removed_and_added_with_the_admin_api() {
    let cluster = TestCluster::start_with(3, probes_off).await;
    let lead = leader(&cluster, 3).await;
    let other = (lead + 1) % 3;
    let removed = (lead + 2) % 3;
    let removed_id = raft_status(&cluster, removed).await["nodeId"]
        .as_u64()
        .expect("node id");
    let id = removed_id.to_string();
    // Asked of a follower: it goes to the leader.
    let (status, body) = cluster
        .call(
            other,
            Method::DELETE,
            "/nacos/v1/core/cluster/raft/members",
            &[("nodeId", &id)],
        )
        .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let status = raft_status(&cluster, lead).await;
    assert_eq!(
        status["voters"].as_object().map(|v| v.len()),
        Some(2),
        "{status}"
    );
    assert!(status["voters"].get(&id).is_none(), "{status}");
    // Writes go on with two voters.
    assert_eq!(
        register_persistent(&cluster, other, "10.9.9.1").await.0,
        200
    );
    // Unknown ids and missing parameters are refused.
    let (status, _) = cluster
        .call(
            lead,
            Method::DELETE,
            "/nacos/v1/core/cluster/raft/members",
            &[("nodeId", &id)],
        )
        .await;
    assert_eq!(status, 409);
    let (status, body) = cluster
        .call(
            lead,
            Method::POST,
            "/nacos/v1/core/cluster/raft/members",
            &[],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("address"), "{body}");
    // Added back by its address with the CLI (which signs in and calls the admin
    // API): a learner that catches up, then a voter. `nacre raft status` shows it.
    let addr = cluster.members[removed].clone();
    let server = cluster.base(other);
    let nacre = |args: Vec<String>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::binary::BIN)
                .arg("raft")
                .args(&args)
                .args(["--server", server.as_str()])
                .env("NACRE_PASSWORD", crate::cluster::ADMIN_PASSWORD)
                .output()
                .expect("nacre raft runs")
        })
    };
    let out = nacre(vec!["add-member".into(), "--address".into(), addr.clone()])
        .await
        .expect("task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    leader(&cluster, 3).await;
    let out = nacre(vec!["status".into()]).await.expect("task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(&addr), "{stdout}");
    // A wrong password is refused with the server's answer.
    let refused = std::process::Command::new(crate::binary::BIN)
        .args(["raft", "status", "--server", cluster.base(other).as_str()])
        .env("NACRE_PASSWORD", "not-the-password")
        .output()
        .expect("nacre raft runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        register_persistent(&cluster, removed, "10.9.9.2").await.0,
        200
    );
    every_member_lists(&cluster, &["10.9.9.1", "10.9.9.2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_quorum_is_recovered_with_nacre_raft_recover() {
    let mut cluster = TestCluster::start_with(3, probes_off).await;
    leader(&cluster, 3).await;
    for (i, ip) in ["10.4.0.1", "10.4.0.2"].iter().enumerate() {
        assert_eq!(register_persistent(&cluster, i, ip).await.0, 200);
    }
    every_member_lists(&cluster, &["10.4.0.1", "10.4.0.2"]).await;
    // Two members are lost for good; the third is stopped and recovered.
    for i in 0..3 {
        cluster.stop(i).await;
    }
    let out = std::process::Command::new(crate::binary::BIN)
        .args(["raft", "recover", "--data-dir"])
        .arg(cluster.data_dir(0))
        .args(["--node-addr", cluster.members[0].as_str()])
        .output()
        .expect("nacre raft recover runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("recovered node"), "{stdout}");
    for i in 1..3 {
        std::fs::remove_dir_all(cluster.data_dir(i).join("raft")).expect("empty the lost member");
    }
    cluster.restart(0).await;
    let (status, body) = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = register_persistent(&cluster, 0, "10.4.0.3").await;
            if answer.0 == 200 || Instant::now() > deadline {
                break answer;
            }
        }
    };
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "the recovered member leads alone"
    );
    assert_eq!(
        db_ips(&cluster, 0).await,
        ["10.4.0.1", "10.4.0.2", "10.4.0.3"]
    );
    // The others come back empty and are added with the admin API.
    for i in 1..3 {
        cluster.restart(i).await;
        let (status, body) = cluster
            .call(
                0,
                Method::POST,
                "/nacos/v1/core/cluster/raft/members",
                &[("address", cluster.members[i].as_str())],
            )
            .await;
        assert_eq!((status, body.as_str()), (200, "ok"), "add member {i}");
    }
    leader(&cluster, 3).await;
    every_member_lists(&cluster, &["10.4.0.1", "10.4.0.2", "10.4.0.3"]).await;
}
