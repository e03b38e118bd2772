//! Membership on a live cluster: add a learner (its addresses replicate through the log),
//! it catches up, promote it, remove it. Requests go to a follower with `?forward=true`.

mod common;

use common::Cluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn post(c: &Cluster, node: usize, path: &str, body: Value) -> (u16, Value) {
    let r = c
        .http
        .post(c.url(node, path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Retries while the cluster says "not yet" (UNAVAILABLE: a change in flight, not caught up).
async fn until_ok(mut f: impl AsyncFnMut() -> (u16, Value)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = f().await;
        if code == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline && code == 503,
            "gave up: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn voters(status: &Value) -> Vec<u64> {
    status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_promote_and_remove() {
    let mut c = Cluster::start(3, 10_000).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (leader + 1) % 3;
    for i in 0..20 {
        c.put_until_ok(&format!("k{i}"), "v", Duration::from_secs(5))
            .await;
    }
    let new = c.add_node().await;
    let id = new as u64 + 1;
    let member = json!({
        "id": id,
        "peer_addr": format!("127.0.0.1:{}", c.peer_ports[new]),
        "client_addr": format!("127.0.0.1:{}", c.client_ports[new]),
    });
    let body =
        until_ok(async || post(&c, follower, "/v1/members?forward=true", member.clone()).await)
            .await;
    let learner = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(learner["role"], "learner", "{body}");
    assert_eq!(learner["client_addr"], member["client_addr"]);

    // The learner catches up and knows what it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, got) = c.get(new, "k19", "?read=any").await;
        if got["kv"]["value"] == "v" {
            break;
        }
        assert!(Instant::now() < deadline, "learner did not catch up: {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.status(new).await.unwrap()["role"], "learner");

    let path = format!("/v1/members/{id}/promote?forward=true");
    until_ok(async || post(&c, follower, &path, json!({})).await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.status(leader).await.unwrap();
        if voters(&st) == vec![1, 2, 3, id] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "promotion did not complete: {st}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.put_until_ok("after-promote", "v", Duration::from_secs(5))
        .await;

    let url = c.url(follower, &format!("/v1/members/{id}?forward=true"));
    until_ok(async || {
        let r = c.http.delete(&url).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.status(leader).await.unwrap();
        if voters(&st) == vec![1, 2, 3] && st["members"].as_array().unwrap().len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "removal did not complete: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.put_until_ok("after-remove", "v", Duration::from_secs(5))
        .await;
    c.shutdown_all().await;
}
