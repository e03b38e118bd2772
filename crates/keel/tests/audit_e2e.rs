//! Audit evidence on a real cluster: every node's hash-chained file verifies, anchors of each
//! chain head are committed in the log and held by every node, records derived from the log
//! are identical on every node, and tampering (an edited record, a cut tail) is detected by
//! `keel audit verify`.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn verify(file: &Path, anchors_from: &[PathBuf]) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.args(["audit", "verify", "--json"]).arg(file);
    for a in anchors_from {
        cmd.arg("--anchors-from").arg(a);
    }
    let out = cmd.output().expect("run keel audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report)
}

fn records(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The log-derived records (those with an index) of a file, as (kind, term, index, details).
fn log_derived(file: &Path) -> Vec<(String, Value, Value, Value)> {
    records(file)
        .into_iter()
        .filter(|r| !r["index"].is_null())
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["term"].clone(),
                r["index"].clone(),
                r["details"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chains_verify_anchor_each_other_and_reveal_tampering() {
    let root = std::env::temp_dir().join(format!("keel-audit-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("anchors.toml");
    std::fs::write(
        &cfg,
        "audit_anchor_interval_ms = 200\naudit_anchor_records_max = 4\n",
    )
    .unwrap();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let mut cluster = Cluster::start("audit", 3, 0, &["--config", &cfg_arg]);
    let client = cluster.client();
    // Critical actions: elections and transfers, with writes in between.
    for round in 0..3 {
        let (leader, _) = cluster.wait_leader(&client).await;
        let addr = cluster.nodes[leader].client_addr.clone();
        let (code, v) = http(
            &addr,
            "PUT",
            "/v1/kv/a",
            format!("{{\"value\":\"{round}\"}}").as_bytes(),
        );
        assert_eq!(code, 200, "{v}");
        let (code, v) = http(&addr, "POST", "/v1/leader/transfer", b"{}");
        assert_eq!(code, 200, "{v}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    cluster.wait_leader(&client).await;
    let files: Vec<PathBuf> = (0..3)
        .map(|i| cluster.data_dir(i).join("audit.log"))
        .collect();
    // Wait until every node holds an anchor of every node's chain.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let complete = files.iter().all(|f| {
            let anchored: std::collections::BTreeSet<u64> = records(f)
                .iter()
                .filter(|r| r["kind"] == "anchor_committed")
                .filter_map(|r| r["details"]["anchor_node"].as_u64())
                .collect();
            anchored.len() == 3
        });
        if complete {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anchors missing\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        cluster.kill9(i);
    }
    // Every chain verifies against the others' anchors.
    for i in 0..3 {
        let others: Vec<PathBuf> = (0..3)
            .filter(|&j| j != i)
            .map(|j| files[j].clone())
            .collect();
        let (code, report) = verify(&files[i], &others);
        assert_eq!(code, 0, "node {} chain: {report}", i + 1);
        assert!(report["anchors_checked"].as_u64().unwrap() >= 1, "{report}");
        let kinds: Vec<String> = records(&files[i])
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect();
        for needed in [
            "node_started",
            "election_won",
            "anchor_committed",
            "mode_transition",
        ] {
            assert!(
                kinds.iter().any(|k| k == needed),
                "node {} lacks {needed}: {kinds:?}",
                i + 1
            );
        }
    }
    // Records derived from the log are identical on every node (for the indexes all hold).
    let derived: Vec<_> = files.iter().map(|f| log_derived(f)).collect();
    for (kind, term, index, details) in &derived[0] {
        for other in &derived[1..] {
            if let Some(o) = other.iter().find(|o| &o.2 == index) {
                assert_eq!((&o.0, &o.1, &o.3), (kind, term, details), "index {index}");
            }
        }
    }
    // A modified record is detected.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let victim = lines
        .iter()
        .position(|l| l.contains("\"election_won\""))
        .expect("an election record");
    let original = lines[victim].clone();
    lines[victim] = original.replacen("\"term\":", "\"term\":1", 1);
    assert_ne!(lines[victim], original);
    let tampered = root.join("tampered.log");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let (code, report) = verify(&tampered, &[]);
    assert_eq!(code, 1, "modified record not detected: {report}");
    // A cut tail is invisible alone but detected against another node's anchors.
    let all: Vec<&str> = text.lines().collect();
    let anchored_seq = records(&files[1])
        .iter()
        .filter(|r| r["kind"] == "anchor_committed" && r["details"]["anchor_node"] == 1)
        .filter_map(|r| r["details"]["anchor_seq"].as_u64())
        .max()
        .expect("node 2 holds an anchor of node 1");
    let cut = root.join("cut.log");
    std::fs::write(&cut, all[..anchored_seq as usize].join("\n") + "\n").unwrap();
    let (code, report) = verify(&cut, &[]);
    assert_eq!(code, 0, "a cut tail alone looks intact: {report}");
    let (code, report) = verify(&cut, &[files[1].clone()]);
    assert_eq!(code, 1, "cut tail not detected with anchors: {report}");
    let _ = std::fs::remove_dir_all(&root);
}
