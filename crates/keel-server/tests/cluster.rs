//! A real 3-node cluster in one process: election, writes, reads at every level, NOT_LEADER and
//! forwarding, exactly-once sessions, leader failure, restart catch-up by log and by snapshot.

mod common;

use common::{Cluster, ELECTION_TIMEOUT_MS};

use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_write_fail_over_and_catch_up() {
    let started = Instant::now();
    let mut c = Cluster::start(3, 50).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    eprintln!("startup to leader: {:?}", started.elapsed());

    // Write and read on the leader.
    let (code, body) = c.put(leader, "k0", "v0").await;
    assert_eq!(code, 200, "{body}");
    let rev0 = body["revision"].as_u64().unwrap();
    assert!(rev0 >= 1);
    assert_eq!(body["header"]["served_by"], leader as u64 + 1);
    let (code, body) = c.get(leader, "k0", "").await;
    assert_eq!(code, 200);
    assert_eq!(body["kv"]["value"], "v0");
    assert_eq!(body["served"]["level"], "linearizable");
    assert_eq!(body["served"]["staleness_ms"], 0);

    // A follower refuses a write with the leader's address, or forwards it on request.
    let follower = (leader + 1) % 3;
    let (code, body) = c.put(follower, "k1", "v1").await;
    assert_eq!(code, 421, "{body}");
    assert_eq!(body["code"], "NOT_LEADER");
    assert_eq!(body["leader"]["id"], leader as u64 + 1);
    assert_eq!(
        body["leader"]["client_addr"],
        format!("127.0.0.1:{}", c.client_ports[leader])
    );
    let (code, body) = c
        .put_body(follower, "k1", json!({"value": "v1"}), "?forward=true")
        .await;
    assert_eq!(code, 200, "{body}");
    // Linearizable reads on a follower: NOT_LEADER; `any` is served locally with staleness.
    let (code, body) = c.get(follower, "k1", "").await;
    assert_eq!(code, 421, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = c.get(follower, "k1", "?read=any").await;
        assert_eq!(code, 200);
        if body["kv"]["value"] == "v1" {
            assert_eq!(body["served"]["level"], "any");
            assert!(body["served"]["staleness_ms"].is_u64(), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "follower never applied k1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A bound of 0 ms cannot be proven by a follower.
    let (code, body) = c.get(follower, "k1", "?read=bounded:0").await;
    assert_eq!(code, 412, "{body}");
    assert_eq!(body["code"], "STALE_BOUND_UNMET");

    // Exactly-once: the same (client_id, seq) applies once.
    let r = c
        .http
        .post(c.url(leader, "/v1/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_u64()
        .unwrap();
    let body = json!({"value": "once", "session": {"client_id": client_id, "seq": 1}});
    let (code, first) = c.put_body(leader, "dedup", body.clone(), "").await;
    assert_eq!(code, 200, "{first}");
    let (code, second) = c.put_body(leader, "dedup", body, "").await;
    assert_eq!(code, 200, "{second}");
    assert_eq!(first["revision"], second["revision"]);
    assert_eq!(second["duplicate"], true);
    let (_, got) = c.get(leader, "dedup", "").await;
    assert_eq!(
        got["kv"]["version"], 1,
        "retried write applied twice: {got}"
    );
    let (code, err) = c
        .put_body(
            leader,
            "x",
            json!({"value": "v", "session": {"client_id": 999_999, "seq": 1}}),
            "",
        )
        .await;
    assert_eq!(
        (code, err["code"].clone()),
        (410, json!("SESSION_EXPIRED")),
        "{err}"
    );

    // Kill the leader: a new one is elected and every acknowledged write is still there.
    let mut acked = vec![
        ("k0".to_string(), "v0".to_string()),
        ("k1".to_string(), "v1".to_string()),
    ];
    for i in 0..30 {
        let (k, v) = (format!("a{i}"), format!("x{i}"));
        c.put_until_ok(&k, &v, Duration::from_secs(5)).await;
        acked.push((k, v));
    }
    let killed_at = Instant::now();
    c.kill(leader).await;
    let first_ack = c
        .put_until_ok("after-kill", "1", Duration::from_secs(10))
        .await;
    eprintln!(
        "failover (kill to first acknowledged write): {:?}",
        first_ack - killed_at
    );
    acked.push(("after-kill".into(), "1".into()));
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    // Enough writes while the old leader is down that the others snapshot and compact past it.
    for i in 0..120 {
        let (k, v) = (format!("b{i}"), format!("y{i}"));
        c.put_until_ok(&k, &v, Duration::from_secs(5)).await;
        acked.push((k, v));
    }
    for (k, v) in &acked {
        let (code, body) = c.get(new_leader, k, "").await;
        assert_eq!(code, 200);
        assert_eq!(
            body["kv"]["value"],
            v.as_str(),
            "acknowledged write {k} lost"
        );
    }

    // Restart the old leader: it catches up (the leader compacted: by snapshot).
    c.boot(leader).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = c.get(leader, "b119", "?read=any").await;
        if body["kv"]["value"] == "y119" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (k, v) in &acked {
        let (code, body) = c.get(leader, k, "?read=any").await;
        assert_eq!(code, 200);
        assert_eq!(body["kv"]["value"], v.as_str(), "restarted node misses {k}");
    }
    let restarted = c
        .http
        .get(c.url(leader, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !restarted.contains("keel_snapshots_installed_total 0"),
        "the restarted node should have caught up by snapshot: {restarted}"
    );
    let metrics = c
        .http
        .get(c.url(new_leader, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("keel_commit_index_regressions_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_snapshots_created_total"),
        "{metrics}"
    );
    c.shutdown_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_of_the_leader_hands_over() {
    let mut c = Cluster::start(3, 10_000).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    c.put_until_ok("k", "v", Duration::from_secs(5)).await;
    let server = c.servers[leader].take().unwrap();
    let t = Instant::now();
    server.shutdown().await.expect("clean shutdown");
    // The transfer makes the next leader available without waiting out an election timeout.
    let new_leader = c.wait_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    eprintln!("graceful handover: {:?}", t.elapsed());
    let (code, body) = c.get(new_leader, "k", "").await;
    assert_eq!((code, body["kv"]["value"].clone()), (200, json!("v")));
    c.shutdown_all().await;
}

/// Failover measurement: `KEEL_FAILOVER_KILLS=20 cargo test -p keel-server --release --test
/// cluster failover_times -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn failover_times() {
    let kills: usize = std::env::var("KEEL_FAILOVER_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let started = Instant::now();
    let mut c = Cluster::start(3, 10_000).await;
    c.wait_leader(Duration::from_secs(10)).await;
    let startup = started.elapsed();
    let mut times = Vec::new();
    for round in 0..kills {
        let leader = c.wait_leader(Duration::from_secs(10)).await;
        c.put_until_ok("warm", &round.to_string(), Duration::from_secs(5))
            .await;
        let t = Instant::now();
        c.kill(leader).await;
        let acked = c
            .put_until_ok("f", &round.to_string(), Duration::from_secs(10))
            .await;
        times.push((acked - t).as_millis() as u64);
        c.boot(leader).await;
        // Let the restarted node catch up before the next kill.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    times.sort();
    let p = |q: f64| {
        times[((times.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(times.len() - 1)]
    };
    eprintln!(
        "startup-to-leader {:?}; failover over {} kills: p50 {} ms, p99 {} ms, max {} ms (election timeout {} ms); all {:?}",
        startup,
        kills,
        p(0.5),
        p(0.99),
        times[times.len() - 1],
        ELECTION_TIMEOUT_MS,
        times
    );
    c.shutdown_all().await;
}
