//! The test-only bug switches work and the tests' own checks catch them
//! (`cargo test -p keel-server --features mutants --test mutants`).
#![cfg(feature = "mutants")]

mod common;

use common::Cluster;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_dedup_applies_a_retry_twice() {
    let mut c = Cluster::start(1, 10_000).await;
    c.mutant = Some("no-session-dedup".into());
    c.kill(0).await;
    c.boot(0).await;
    c.wait_leader(Duration::from_secs(10)).await;
    let r = c.http.post(c.url(0, "/v1/sessions")).send().await.unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_u64()
        .unwrap();
    let body = json!({"value": "once", "session": {"client_id": client_id, "seq": 1}});
    assert_eq!(c.put_body(0, "dedup", body.clone(), "").await.0, 200);
    assert_eq!(c.put_body(0, "dedup", body, "").await.0, 200);
    let (_, got) = c.get(0, "dedup", "").await;
    // The exactly-once check of tests/cluster.rs (version stays 1) fails under this mutant.
    assert_eq!(got["kv"]["version"], 2, "{got}");
    c.shutdown_all().await;
}
