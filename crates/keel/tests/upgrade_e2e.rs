//! Rolling upgrade on real processes (docs/upgrades.md): this build and the test build that
//! stands in for the next release (`scripts/build-next` → target/release/keel-next) in one
//! cluster; a node rolled back before finalization; finalization refused while a member runs
//! the older binary, then committed; every data directory switched to format 2; the older
//! binary then refused on a finalized data directory and by its peers; no acknowledged write
//! lost through all of it.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{write_options, Cluster};
use keel_client::{Client, ErrorCode, ReadOptions};

const WAIT_MS: u64 = 20_000;

/// The next-release build. Made by `scripts/build-next` (CI's `scripts/test` runs it before
/// the tests); `KEEL_NEXT_BIN` overrides the path.
fn next_bin() -> PathBuf {
    let path = std::env::var_os("KEEL_NEXT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/keel-next")
        });
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/build-next first (it builds the next-release test build)",
        path.display()
    );
    let version = std::process::Command::new(&path)
        .arg("--version")
        .output()
        .expect("run keel-next --version");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(
        version.contains("next-version") && version.contains("protocol 1.1"),
        "{} is not the next-version build: {version}",
        path.display()
    );
    path
}

fn old_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keel"))
}

async fn put_keys(client: &Client, from: usize, to: usize, acked: &mut Vec<(String, String)>) {
    for i in from..to {
        let (key, value) = (format!("k{i:04}"), format!("v{i}"));
        client.put(&key, &value, write_options()).await.unwrap();
        acked.push((key, value));
    }
}

async fn check_all(client: &Client, acked: &[(String, String)]) {
    for (key, value) in acked {
        let get = client.get(key, ReadOptions::default()).await.unwrap();
        let kv = get.kv.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.value, value.as_bytes(), "{key}");
    }
}

/// Restarts node `index` on `bin` (kill -9: the roughest restart) and waits until it has
/// applied everything the leader had.
async fn restart_on(cluster: &mut Cluster, client: &Client, index: usize, bin: PathBuf) {
    cluster.kill9(index);
    cluster.nodes[index].bin = Some(bin);
    cluster.spawn(index);
    let (_, leader) = cluster.wait_leader(client).await;
    cluster
        .wait_applied(client, index, leader.commit_index)
        .await;
}

/// The node's versions as its status reports them: (protocol, max, cluster version, format).
async fn versions(cluster: &Cluster, client: &Client, index: usize) -> (String, u32, u32, u32) {
    let s = client
        .status_of(&cluster.nodes[index].client_addr)
        .await
        .unwrap();
    (
        s.protocol,
        s.cluster_version_max,
        s.cluster_version,
        s.data_format,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_with_rollback_then_finalization_fences_the_old_release() {
    let next = next_bin();
    let mut cluster = Cluster::start("upgrade", 3, 1, &[]);
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    let mut acked = Vec::new();
    put_keys(&client, 0, 20, &mut acked).await;

    // All on the older release: finalizing to 2 is refused, finalizing to what everyone
    // supports changes nothing.
    let refused = client.finalize_upgrade(Some(2)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        ErrorCode::FailedPrecondition.as_str(),
        "{refused}"
    );
    let same = client.finalize_upgrade(None).await.unwrap();
    assert_eq!((same.previous, same.cluster_version), (1, 1));

    // Node 1 on the next release: a mixed cluster serves everything.
    restart_on(&mut cluster, &client, 0, next.clone()).await;
    assert_eq!(
        versions(&cluster, &client, 0).await,
        ("1.1".to_string(), 2, 1, 1)
    );
    put_keys(&client, 20, 40, &mut acked).await;
    check_all(&client, &acked).await;
    // Still refused: nodes 2 and 3 run the older binary (whichever node leads says so).
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let refused = client.finalize_upgrade(Some(2)).await.unwrap_err();
        if refused.code() == ErrorCode::FailedPrecondition.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "finalize: {refused}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Roll node 1 back before finalization: allowed, and it has lost nothing.
    restart_on(&mut cluster, &client, 0, old_bin()).await;
    assert_eq!(
        versions(&cluster, &client, 0).await,
        ("1.0".to_string(), 1, 1, 1)
    );
    put_keys(&client, 40, 50, &mut acked).await;

    // Upgrade every node, one at a time, writing in between.
    for index in 0..3 {
        restart_on(&mut cluster, &client, index, next.clone()).await;
        put_keys(&client, 50 + 10 * index, 60 + 10 * index, &mut acked).await;
    }
    check_all(&client, &acked).await;

    // Finalize: retried while the leader has not yet seen a restarted peer's handshake.
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    let finalized = loop {
        match client.finalize_upgrade(None).await {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(Instant::now() < deadline, "finalize never succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!((finalized.previous, finalized.cluster_version), (1, 2));
    // Every node applies it and switches its data directory to format 2.
    for index in 0..3 {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            let v = versions(&cluster, &client, index).await;
            if v == ("1.1".to_string(), 2, 2, 2) {
                break;
            }
            assert!(Instant::now() < deadline, "node {} at {v:?}", index + 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let format = std::fs::read(cluster.data_dir(index).join("FORMAT")).unwrap();
        assert_eq!(format[8], 2, "node {} FORMAT file", index + 1);
    }
    put_keys(&client, 80, 90, &mut acked).await;

    // Rolling back now is refused: the older binary will not open a format-2 directory.
    cluster.kill9(2);
    cluster.nodes[2].bin = Some(old_bin());
    cluster.spawn(2);
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    let exit = loop {
        let child = cluster.nodes[2].child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the older binary kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cluster.nodes[2].child = None;
    assert!(
        !exit.success(),
        "the older binary exited 0 on a finalized directory"
    );
    let log = std::fs::read_to_string(cluster.root.join("node-3.log")).unwrap();
    assert!(
        log.contains("newer than this binary"),
        "{}",
        cluster.log_tail()
    );
    cluster.nodes[2].bin = Some(next.clone());
    cluster.spawn(2);
    let (_, leader) = cluster.wait_leader(&client).await;
    cluster.wait_applied(&client, 2, leader.commit_index).await;

    // An older binary on a fresh directory (a replacement node): added as a learner, it never
    // receives the log: its handshakes say it cannot run cluster version 2, so the members
    // refuse its connections (it can neither answer nor be answered). Were both checks gone,
    // it would apply up to the finalization entry and stop (status_of below would fail).
    cluster.nodes[3].bin = Some(old_bin());
    cluster.spawn(3);
    let (peer, http) = (
        cluster.nodes[3].peer_addr.clone(),
        cluster.nodes[3].client_addr.clone(),
    );
    client.add_learner(4, &peer, &http).await.unwrap();
    put_keys(&client, 90, 100, &mut acked).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let learner = client.status_of(&http).await.unwrap();
    assert_eq!(
        learner.applied_index,
        0,
        "an older binary received the log of a finalized cluster {}",
        cluster.log_tail()
    );
    let logs: String = (1..=3)
        .map(|id| std::fs::read_to_string(cluster.root.join(format!("node-{id}.log"))).unwrap())
        .collect();
    assert!(
        logs.contains("finalized version 2") || logs.contains("cluster finalized"),
        "no refusal logged\n{}",
        cluster.log_tail()
    );

    check_all(&client, &acked).await;
    assert_eq!(acked.len(), 100);
}
