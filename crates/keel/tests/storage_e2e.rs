//! Storage end to end on real processes (issue 4): a node killed with kill -9 keeps every
//! acknowledged write; damage to a sealed WAL segment makes `keel serve` refuse to start (naming
//! file and offset) and `keel storage verify` exit 1; with `--repair` in a three-node cluster the
//! damaged node starts, catches up from a leader, and then holds every acknowledged write.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_client::{Client, ClientConfig, ReadLevel, ReadOptions};

/// Small WAL segments so that a few hundred KiB of writes seal several of them.
const CONFIG_TOML: &str = "message_bytes_max = 16384\nwal_segment_bytes = 24576\n";
const VALUE_BYTES: usize = 1000;
const KEYS: usize = 120;
const WAIT_MS: u64 = 15_000;

fn write_config(root: &Path) -> String {
    let path = root.join("small-segments.toml");
    std::fs::write(&path, CONFIG_TOML).unwrap();
    path.to_string_lossy().into_owned()
}

fn value(i: usize) -> String {
    let mut v = format!("value-{i}-");
    v.extend(std::iter::repeat_n('x', VALUE_BYTES - v.len()));
    v
}

/// Puts keys `range` through `client`; returns (key, value, revision) of each acknowledged put.
async fn put_keys(client: &Client, range: std::ops::Range<usize>) -> Vec<(String, String, u64)> {
    let mut acknowledged = Vec::new();
    for i in range {
        let key = format!("k{i:04}");
        let put = client.put(&key, value(i), write_options()).await.unwrap();
        acknowledged.push((key, value(i), put.revision));
    }
    acknowledged
}

async fn check_all(client: &Client, acknowledged: &[(String, String, u64)], options: ReadOptions) {
    for (key, value, revision) in acknowledged {
        let get = client.get(key, options.clone()).await.unwrap();
        let kv = get.kv.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.value, value.as_bytes(), "{key}");
        assert_eq!(kv.mod_revision, *revision, "{key}");
    }
}

/// WAL segments of a data directory, oldest first.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs
}

/// Flips one bit in the payload of the first record of the oldest segment (a sealed one).
/// Returns the segment's file name and the record's offset.
fn damage_sealed_segment(data_dir: &Path) -> (String, u64) {
    let segs = segments(data_dir);
    assert!(segs.len() >= 3, "need sealed segments, have {segs:?}");
    let path = &segs[0];
    let mut bytes = std::fs::read(path).unwrap();
    let record_offset = 64usize; // The segment header is 64 bytes; the first record follows.
    bytes[record_offset + 48 + 5] ^= 0x10; // A payload byte: the record's CRC fails.
    std::fs::write(path, &bytes).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, record_offset as u64)
}

fn node_log(cluster: &Cluster, index: usize) -> String {
    let path = cluster
        .root
        .join(format!("node-{}.log", cluster.nodes[index].id));
    std::fs::read_to_string(path).unwrap_or_default()
}

fn client_for(endpoint: &str) -> Client {
    let mut config = ClientConfig::new(&[endpoint.to_string()]);
    config.rng_seed = 11;
    config.attempt_timeout_ms = 1_000;
    config.call_timeout_ms = 10_000;
    Client::new(config).unwrap()
}

#[tokio::test]
async fn single_node_keeps_acknowledged_writes_and_refuses_a_damaged_sealed_segment() {
    let root = temp_root("storage-config");
    let config = write_config(&root);
    let mut cluster = Cluster::start("storage-single", 1, 0, &["--config", &config]);
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    client.register_session().await.unwrap();
    let acknowledged = put_keys(&client, 0..KEYS).await;

    // (a) kill -9, restart: every acknowledged write is there.
    cluster.kill9(0);
    cluster.spawn(0);
    cluster.wait_leader(&client).await;
    check_all(&client, &acknowledged, ReadOptions::default()).await;

    // (b) Damage inside a sealed segment of the stopped node: serve refuses, verify says 1.
    cluster.kill9(0);
    let data_dir = cluster.data_dir(0);
    let (segment, offset) = damage_sealed_segment(&data_dir);
    let log_before = node_log(&cluster, 0).len();
    cluster.spawn(0);
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    let status = loop {
        let child = cluster.nodes[0].child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "keel serve kept running on damage"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    cluster.nodes[0].child = None;
    assert!(
        !status.success(),
        "keel serve must fail on damage: {status:?}"
    );
    let log = node_log(&cluster, 0)[log_before..].to_string();
    assert!(log.contains(&segment), "the error names the file: {log}");
    assert!(
        log.contains(&format!("offset {offset}")),
        "the error names the offset: {log}"
    );

    let verify = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["storage", "verify"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(verify.status.code(), Some(1), "{text}");
    assert!(text.contains(&segment), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn repair_mode_node_catches_up_and_then_holds_every_acknowledged_write() {
    let root = temp_root("storage-config");
    let config = write_config(&root);
    let mut cluster = Cluster::start("storage-repair", 3, 0, &["--config", &config]);
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    client.register_session().await.unwrap();
    let mut acknowledged = put_keys(&client, 0..KEYS).await;
    let last_revision = acknowledged.last().unwrap().2;
    let victim = (leader + 1) % 3;
    cluster.wait_applied(&client, victim, last_revision).await;
    cluster.kill9(victim);
    let (segment, _) = damage_sealed_segment(&cluster.data_dir(victim));

    // Without --repair the damaged node refuses to start (checked in the single-node test);
    // with it, it starts, cuts the log at the damage and repairs from the leader.
    acknowledged.extend(put_keys(&client, KEYS..KEYS + 20).await);
    cluster.extra_args.push("--repair".into());
    cluster.spawn(victim);
    cluster.extra_args.pop();
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let log = node_log(&cluster, victim);
        if log.contains("repair completed") {
            assert!(log.contains(&segment), "the repair names the file: {log}");
            assert!(log.contains("starting in repair mode"), "{log}");
            let completed = log.find("repair completed").unwrap();
            let restarted = log.find("starting in repair mode").unwrap();
            assert!(
                !log[restarted..completed].contains("became leader"),
                "a repairing node never campaigns"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "repair did not complete\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_revision = acknowledged.last().unwrap().2;
    cluster.wait_applied(&client, victim, last_revision).await;
    // The repaired node itself serves every acknowledged write.
    let local = client_for(&cluster.nodes[victim].client_addr);
    let any = ReadOptions {
        level: ReadLevel::Any,
        ..ReadOptions::default()
    };
    check_all(&local, &acknowledged, any).await;

    // It votes again: with the leader gone, the other two (it among them) elect one.
    let (leader, _) = cluster.wait_leader(&client).await;
    cluster.kill9(leader);
    cluster.wait_leader(&client).await;
    check_all(&client, &acknowledged, ReadOptions::default()).await;
    let _ = std::fs::remove_dir_all(&root);
}
