//! Degraded modes on real processes (docs/degraded-modes.md): what writes and each read level
//! do, and what the client sees, when a node is cut off (SIGSTOP of the others), when the
//! leader is isolated, and under overload. Each test names the matrix rows it backs.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn signal(cluster: &Cluster, index: usize, sig: &str) {
    let pid = cluster.nodes[index]
        .child
        .as_ref()
        .expect("node is running")
        .id();
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

fn put(addr: &str, key: &str, value: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let body = serde_json::json!({ "value": value }).to_string();
    let (code, v) = http(addr, "PUT", &format!("/v1/kv/{key}"), body.as_bytes());
    (code, v, started.elapsed())
}

fn get(addr: &str, key: &str, read: &str) -> (u16, Value) {
    http(addr, "GET", &format!("/v1/kv/{key}?read={read}"), b"")
}

fn status(addr: &str) -> Value {
    http(addr, "GET", "/v1/status", b"").1
}

/// Matrix rows "minority partition" and "majority side": the lone node answers `any` with
/// staleness metadata, refuses `bounded` once the bound has passed, and fails writes fast with
/// NO_LEADER; the other two (stopped here, so they are the unreachable side) recover on
/// SIGCONT with every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_follower_serves_any_refuses_bounded_and_fails_writes_fast() {
    let mut cluster = Cluster::start("lone-follower", 3, 0, &[]);
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    let lone = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let leader_addr = cluster.nodes[leader].client_addr.clone();
    let lone_addr = cluster.nodes[lone].client_addr.clone();
    for i in 0..20 {
        let (code, v, _) = put(&leader_addr, &format!("k{i}"), &format!("v{i}"));
        assert_eq!(code, 200, "{v}");
    }
    let applied = status(&leader_addr)["applied_index"].as_u64().unwrap();
    cluster.wait_applied(&client, lone, applied).await;
    // Healthy: a generous bound is met on a follower (the leader's idle no-ops keep it fresh).
    let (code, v) = get(&lone_addr, "k19", "bounded:2000");
    assert_eq!(code, 200, "bounded read on a healthy follower: {v}");
    assert_eq!(v["served"]["level"], "bounded");
    assert_eq!(v["kv"]["value"], "v19");

    signal(&cluster, leader, "STOP");
    signal(&cluster, other, "STOP");
    let stopped = Instant::now();

    // Writes: never hang; NO_LEADER within about two election timeouts.
    let mut no_leader_after = None;
    while stopped.elapsed() < Duration::from_millis(6 * ELECTION_TIMEOUT_MS) {
        let (code, v, took) = put(&lone_addr, "w", "x");
        assert!(
            took < Duration::from_millis(4 * ELECTION_TIMEOUT_MS + 1000),
            "a write on the cut-off node hung for {took:?}: {code} {v}"
        );
        assert!(
            matches!(code, 421 | 503 | 504),
            "write on a cut-off follower: {code} {v}"
        );
        if v["code"] == "NO_LEADER" {
            assert_eq!(code, 503);
            assert!(v["term"].is_u64(), "NO_LEADER names the term: {v}");
            assert!(v.get("last_contact_ms").is_some(), "{v}");
            no_leader_after = Some(stopped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let no_leader_after = no_leader_after.expect("the cut-off node says NO_LEADER");
    assert!(
        no_leader_after <= Duration::from_millis(2 * ELECTION_TIMEOUT_MS + 1500),
        "NO_LEADER only after {no_leader_after:?}"
    );

    // `any`: served locally with how stale it may be, and the staleness grows.
    let (code, v1) = get(&lone_addr, "k19", "any");
    assert_eq!(code, 200, "{v1}");
    assert_eq!(v1["served"]["level"], "any");
    assert_eq!(v1["kv"]["value"], "v19");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v2) = get(&lone_addr, "k19", "any");
    let s1 = v1["served"]["staleness_ms"]
        .as_u64()
        .expect("staleness bound");
    let s2 = v2["served"]["staleness_ms"]
        .as_u64()
        .expect("staleness bound");
    assert!(
        s2 >= s1 + 250,
        "staleness grows while cut off: {s1} then {s2}"
    );

    // `bounded`: refused at once once the bound has passed, never forwarded.
    let (code, v) = get(&lone_addr, "k19", "bounded:100");
    assert_eq!(code, 412, "{v}");
    assert_eq!(v["code"], "STALE_BOUND_UNMET");
    assert!(v["staleness_ms"].as_u64().unwrap() > 100, "{v}");
    // Linearizable: not served by a node that cannot prove it.
    let started = Instant::now();
    let (code, v) = get(&lone_addr, "k19", "linearizable");
    assert!(matches!(code, 421 | 503), "{code} {v}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let st = status(&lone_addr);
    assert_eq!(st["mode"], "no_leader", "{st}");

    signal(&cluster, leader, "CONT");
    signal(&cluster, other, "CONT");
    let (_, _) = cluster.wait_leader(&client).await;
    // Recovers on its own: writes go through again and nothing acknowledged was lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = cluster.wait_leader(&client).await;
        let addr = st
            .leader
            .as_ref()
            .map(|l| l.1.clone())
            .unwrap_or(lone_addr.clone());
        let (code, _, _) = put(&addr, "after", "ok");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no write after SIGCONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..20 {
        let (code, v) = get(&lone_addr, &format!("k{i}"), "any");
        assert_eq!(code, 200);
        assert_eq!(
            v["kv"]["value"],
            format!("v{i}"),
            "acknowledged write k{i} kept"
        );
    }
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
}

/// Matrix row "leader isolated": the old leader stops serving linearizable reads once its lease
/// can no longer be proven, answers writes with OUTCOME_UNKNOWN / NO_LEADER / NOT_LEADER
/// within the request timeout (never a hang, never a success without a quorum), and reports
/// mode no_quorum or no_leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_never_acknowledges_and_says_so() {
    let mut cluster = Cluster::start("isolated-leader", 3, 0, &[]);
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    let addr = cluster.nodes[leader].client_addr.clone();
    let (code, v, _) = put(&addr, "before", "1");
    assert_eq!(code, 200, "{v}");
    for i in 0..3 {
        if i != leader {
            signal(&cluster, i, "STOP");
        }
    }
    let stopped = Instant::now();
    // A write proposed now can never commit: the client must hear so, not success.
    let (code, v, took) = put(&addr, "during", "2");
    assert!(
        matches!(code, 421 | 503 | 504),
        "isolated leader write: {code} {v}"
    );
    assert!(
        took < Duration::from_millis(4 * ELECTION_TIMEOUT_MS + 1500),
        "{took:?}"
    );
    if code == 504 {
        assert_eq!(v["code"], "OUTCOME_UNKNOWN", "{v}");
    }
    // After the lease and check-quorum: no linearizable read is served.
    tokio::time::sleep(Duration::from_millis(3 * ELECTION_TIMEOUT_MS)).await;
    let (code, v) = get(&addr, "before", "linearizable");
    assert!(
        matches!(code, 421 | 503),
        "linearizable on isolated leader: {code} {v}"
    );
    let (code, v) = get(&addr, "before", "any");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["kv"]["value"], "1");
    let mode = status(&addr)["mode"].as_str().unwrap().to_string();
    assert!(
        mode == "no_quorum" || mode == "no_leader",
        "mode {mode} after {:?}",
        stopped.elapsed()
    );
    for i in 0..3 {
        if i != leader {
            signal(&cluster, i, "CONT");
        }
    }
    cluster.wait_leader(&client).await;
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metrics(addr: &str) -> String {
    String::from_utf8(http_raw(addr, "GET", "/metrics", b"").1).expect("metrics are text")
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Matrix row "overload": open-loop writes at several times what the node admits. Refusals
/// are explicit (OVERLOADED, counted by reason), admitted writes keep a bounded latency, no
/// spurious election happens (Raft traffic has its own priority lane), every acknowledged
/// write is readable afterwards, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_explicitly_without_elections_or_loss() {
    let root = std::env::temp_dir().join(format!("keel-overload-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("small-queues.toml");
    // Small limits so a test client can offer several times the capacity: a slow disk
    // (5 ms per sync batch) and short queues.
    std::fs::write(
        &cfg,
        "inflight_proposals_max = 256\nclient_queue_max = 256\nqueue_delay_target_ms = 10\n\
         queue_delay_interval_ms = 50\n",
    )
    .unwrap();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let mut cluster = Cluster::start(
        "overload",
        3,
        0,
        &["--config", &cfg_arg, "--test-fsync-delay-ms", "5"],
    );
    let client = cluster.client();
    let (leader, st) = cluster.wait_leader(&client).await;
    let term_before = st.term;
    let addr = cluster.nodes[leader].client_addr.clone();
    let leader_pid = cluster.nodes[leader].child.as_ref().unwrap().id();
    let before = metrics(&addr);
    let changes_before = metric(&before, "keel_leader_changes_total");

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Open loop: a new request every 100 µs for 4 s (10,000/s offered), at most 1,500 open.
    let offered_for = Duration::from_secs(4);
    let started = Instant::now();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(1500));
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    let mut client_gave_up = 0u64;
    while started.elapsed() < offered_for {
        let due = started + Duration::from_micros(100 * sent);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            client_gave_up += 1;
            sent += 1;
            continue;
        };
        let url = format!("http://{addr}/v1/kv/load-{sent}");
        let http = http.clone();
        let key = sent;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = http
                .put(&url)
                .header("x-keel-client-id", format!("c{}", key % 8))
                .body(format!("{{\"value\":\"{key}\"}}"))
                .send()
                .await;
            drop(permit);
            let code = match r {
                Ok(resp) => resp.status().as_u16(),
                Err(_) => 0,
            };
            (key, code, t.elapsed())
        }));
        sent += 1;
    }
    let mut ok = Vec::new();
    let mut ok_latency = Vec::new();
    let mut overloaded = 0u64;
    let mut other = Vec::new();
    for t in tasks {
        let (key, code, took) = t.await.unwrap();
        match code {
            200 => {
                ok.push(key);
                ok_latency.push(took);
            }
            429 | 503 => overloaded += 1,
            c => other.push(c),
        }
    }
    ok_latency.sort();
    let p99 = ok_latency[(ok_latency.len() * 99 / 100).min(ok_latency.len() - 1)];
    let p50 = ok_latency[ok_latency.len() / 2];
    let after = metrics(&addr);
    let rejected = metric(&after, "keel_admission_rejected_total");
    eprintln!(
        "overload: offered {sent} in {offered_for:?}, ok {}, overloaded {overloaded}, other {:?}, \
         client-side open-limit {client_gave_up}; admitted p50 {p50:?} p99 {p99:?}; \
         rejected by reason total {rejected}; leader RSS {} KiB",
        ok.len(),
        other.len(),
        rss_kib(leader_pid)
    );
    assert!(overloaded > 0, "several times capacity must see refusals");
    assert!(rejected >= overloaded as f64, "every refusal is counted");
    assert!(other.is_empty(), "only OK or OVERLOADED, got {other:?}");
    assert!(ok.len() > 100, "the node kept admitting work: {}", ok.len());
    assert!(p99 < Duration::from_secs(3), "admitted p99 {p99:?}");
    let st = status(&addr);
    assert_eq!(
        st["term"].as_u64().unwrap(),
        term_before,
        "no election under overload"
    );
    assert_eq!(
        metric(&after, "keel_leader_changes_total"),
        changes_before,
        "no leader change under overload"
    );
    assert!(rss_kib(leader_pid) < 512 * 1024, "memory stays bounded");
    // Every acknowledged write is there.
    for key in ok.iter().step_by(7) {
        let (code, v) = get(&addr, &format!("load-{key}"), "linearizable");
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            v["kv"]["value"],
            key.to_string(),
            "acknowledged write load-{key}"
        );
    }
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
    let _ = std::fs::remove_dir_all(&root);
}

/// Unmounts (lazily, so open files do not block it) when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem at `dir` with 64 KiB files until it is full, then frees one: less
/// than a WAL segment stays free. Returns the filler files.
fn fill(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    use std::io::Write;
    let chunk = vec![0xA5u8; 64 << 10];
    let mut files = Vec::new();
    for i in 0..100_000 {
        let path = dir.join(format!("filler-{i}"));
        let mut f = std::fs::File::create(&path).expect("create filler");
        let full = f.write_all(&chunk).and_then(|()| f.sync_all()).is_err();
        files.push(path);
        if full {
            break;
        }
    }
    let last = files.pop().unwrap();
    std::fs::remove_file(last).unwrap();
    files
}

/// Matrix row "disk full": a node whose disk fills (ENOSPC preallocating a WAL segment) turns
/// read-only (mode disk_full): writes through it get NO_SPACE (507, retry at another node),
/// `any` reads still work, a leader hands leadership over, the cluster keeps committing
/// through the others, and when space returns the node catches up with nothing lost.
/// Needs root (it mounts a small tmpfs for one node's data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_node_turns_read_only_and_recovers_when_space_returns() {
    let root = std::env::temp_dir().join(format!("keel-diskfull-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("small-segments.toml");
    std::fs::write(
        &cfg,
        "wal_segment_bytes = 1048576\nmessage_bytes_max = 524288\nvalue_bytes_max = 131072\n",
    )
    .unwrap();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let mut cluster = Cluster::prepare("disk-full", 3, 0, &["--config", &cfg_arg]);
    let dir = cluster.data_dir(0);
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test needs root to mount a tmpfs (the CI machine runs as root)"
    );
    let _mount = Mount(dir.clone());
    for i in 0..3 {
        cluster.spawn(i);
    }
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    let full_addr = cluster.nodes[0].client_addr.clone();
    let filler_dir = dir.join("filler");
    std::fs::create_dir_all(&filler_dir).unwrap();
    let fillers = fill(&filler_dir);

    // Write through whichever node leads until node 1 needs a new segment and cannot get one.
    let value = "x".repeat(100 << 10);
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_disk_full = false;
    let mut i = 0;
    while Instant::now() < deadline && !saw_disk_full {
        let (_, st) = cluster.wait_leader(&client).await;
        let addr = st.leader.as_ref().map(|l| l.1.clone()).unwrap();
        let (code, _, _) = put(&addr, &format!("big{i}"), &value);
        if code == 200 {
            acked.push(i);
        }
        i += 1;
        saw_disk_full = status(&full_addr)["mode"] == "disk_full";
    }
    assert!(
        saw_disk_full,
        "node 1 never reported disk_full\n{}",
        cluster.log_tail()
    );
    let m = metrics(&full_addr);
    assert!(
        m.contains("keel_mode{mode=\"disk_full\"} 1"),
        "the mode gauge says disk_full"
    );
    // Writes through it: NO_SPACE, retry at another node.
    let (code, v, _) = put(&full_addr, "through-full", "1");
    assert_eq!(code, 507, "{v}");
    assert_eq!(v["code"], "NO_SPACE");
    assert_eq!(v["retry"], "other_node");
    // `any` reads are served.
    let (code, v) = get(&full_addr, "big0", "any");
    assert_eq!(code, 200, "{v}");
    // The others keep committing (a full leader hands over).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = cluster.wait_leader(&client).await;
        let addr = st.leader.as_ref().map(|l| l.1.clone()).unwrap();
        if addr != full_addr {
            let (code, v, _) = put(&addr, "during-full", "ok");
            assert_eq!(code, 200, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "the full node kept leadership");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.all_alive(), "a full disk must not stop the node");

    // Space returns: the node leaves disk_full and catches up.
    for f in fillers {
        std::fs::remove_file(f).unwrap();
    }
    let (leader, st) = cluster.wait_leader(&client).await;
    let _ = leader;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(&full_addr);
        if s["mode"] != "disk_full" && s["applied_index"].as_u64() >= Some(st.commit_index) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 did not recover: {s}\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in &acked {
        let (code, v) = get(&full_addr, &format!("big{i}"), "any");
        assert_eq!(code, 200);
        assert_eq!(
            v["kv"]["value"].as_str().map(str::len),
            Some(value.len()),
            "big{i}"
        );
    }
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
    let _ = std::fs::remove_dir_all(&root);
}

fn leader_addr_of(cluster: &Cluster) -> Option<String> {
    for n in &cluster.nodes {
        if n.child.is_some() {
            let (code, st) = http(&n.client_addr, "GET", "/v1/status", b"");
            if code == 200 && st["role"] == "leader" {
                return Some(n.client_addr.clone());
            }
        }
    }
    None
}

/// Matrix row "majority side": with one node gone (here the leader, stopped), the other two
/// elect a leader and serve writes and every read level again within a few election timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_side_keeps_serving_when_the_leader_stops() {
    let mut cluster = Cluster::start("majority-side", 3, 0, &[]);
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    let (code, v, _) = put(&cluster.nodes[leader].client_addr, "m", "1");
    assert_eq!(code, 200, "{v}");
    signal(&cluster, leader, "STOP");
    let stopped = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader_addr = loop {
        let mut found = None;
        for &i in &others {
            let addr = &cluster.nodes[i].client_addr;
            let (code, _, _) = put(addr, "m", "2");
            if code == 200 {
                found = Some(addr.clone());
                break;
            }
        }
        if let Some(a) = found {
            break a;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "no write within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failover = stopped.elapsed();
    eprintln!("majority side: first acknowledged write {failover:?} after the leader stopped");
    assert!(failover < Duration::from_millis(10 * ELECTION_TIMEOUT_MS));
    let (code, v) = get(&new_leader_addr, "m", "linearizable");
    assert_eq!((code, v["kv"]["value"].as_str()), (200, Some("2")), "{v}");
    for &i in &others {
        let addr = &cluster.nodes[i].client_addr;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (code, v) = get(addr, "m", "bounded:2000");
            if code == 200 && v["kv"]["value"] == "2" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bounded read on node {}: {v}",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (code, _) = get(addr, "m", "any");
        assert_eq!(code, 200);
    }
    signal(&cluster, leader, "CONT");
    let old = cluster.nodes[leader].client_addr.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = get(&old, "m", "any");
        if code == 200 && v["kv"]["value"] == "2" && status(&old)["role"] == "follower" {
            break;
        }
        assert!(Instant::now() < deadline, "old leader did not rejoin: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
}

/// Matrix row "leader flapping": leadership moves every 300 ms while one client writes an
/// increasing counter and others read it at each level. Every answer is a success or a
/// retryable code; a linearizable read never returns less than a value acknowledged before
/// it started; a bounded read that succeeds states a staleness within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_flapping_keeps_reads_linearizable_and_errors_retryable() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let mut cluster = Cluster::start("flapping", 3, 0, &[]);
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    let addrs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.client_addr.clone())
        .collect();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addrs, acked, stop) = (addrs.clone(), acked.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut n = 0u64;
            let mut codes = std::collections::BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let addr = &addrs[(n % 3) as usize];
                let (code, v, _) = put(addr, "counter", &format!("{n:08}"));
                *codes.entry(code).or_default() += 1;
                assert!(matches!(code, 200 | 421 | 503 | 504), "write: {code} {v}");
                if code == 200 {
                    acked.fetch_max(n, Ordering::SeqCst);
                }
            }
            codes
        })
    };
    let reader = {
        let (addrs, acked, stop) = (addrs.clone(), acked.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut i = 0usize;
            let mut served = [0u64; 3];
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let addr = &addrs[i % 3];
                let floor = acked.load(Ordering::SeqCst);
                let level = ["linearizable", "bounded:500", "any"][i % 3];
                let (code, v) = get(addr, "counter", level);
                if code != 200 {
                    assert!(matches!(code, 412 | 421 | 503), "{level}: {code} {v}");
                    continue;
                }
                served[i % 3] += 1;
                let seen: u64 = v["kv"]["value"].as_str().map_or(0, |s| s.parse().unwrap());
                match level {
                    "linearizable" => assert!(
                        seen >= floor,
                        "stale linearizable read: {seen} < acknowledged {floor}: {v}"
                    ),
                    "bounded:500" => assert!(
                        v["served"]["staleness_ms"].as_u64().unwrap() <= 500,
                        "bounded read beyond its bound: {v}"
                    ),
                    _ => assert_eq!(v["served"]["level"], "any"),
                }
            }
            served
        })
    };
    let started = Instant::now();
    let mut transfers = 0;
    while started.elapsed() < Duration::from_secs(4) {
        if let Some(addr) = leader_addr_of(&cluster) {
            let (code, _) = http(&addr, "POST", "/v1/leader/transfer", b"{}");
            if code == 200 {
                transfers += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let codes = writer.await.unwrap();
    let served = reader.await.unwrap();
    eprintln!("flapping: {transfers} transfers; write codes {codes:?}; reads served {served:?}");
    assert!(transfers >= 5, "leadership flapped only {transfers} times");
    assert!(
        acked.load(Ordering::SeqCst) > 10,
        "writes got through between flaps"
    );
    assert!(
        served.iter().all(|&s| s > 0),
        "every level was served: {served:?}"
    );
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
    cluster.wait_leader(&client).await;
}

/// Matrix row "slow disk": every fdatasync takes 100 ms more. Writes slow down (they wait for
/// a majority's sync) but succeed; lease reads at the leader do not touch the disk and stay
/// fast; follower reads at `bounded` and `any` are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disk_slows_writes_not_lease_reads() {
    let cluster = Cluster::start("slow-disk", 3, 0, &["--test-fsync-delay-ms", "100"]);
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    let addr = cluster.nodes[leader].client_addr.clone();
    let mut write_ms = Vec::new();
    for i in 0..10 {
        let (code, v, took) = put(&addr, "s", &i.to_string());
        assert_eq!(code, 200, "{v}");
        write_ms.push(took.as_millis() as u64);
    }
    let mut read_ms = Vec::new();
    let mut lease_reads = 0;
    for _ in 0..40 {
        let started = Instant::now();
        let (code, v) = get(&addr, "s", "linearizable");
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["kv"]["value"], "9");
        read_ms.push(started.elapsed().as_millis() as u64);
        if v["served"]["path"] == "lease" {
            lease_reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_ms.sort();
    read_ms.sort();
    eprintln!("slow disk: write ms {write_ms:?}; linearizable read ms p50 {} max {}; lease {lease_reads}/40",
        read_ms[20], read_ms[39]);
    assert!(
        write_ms[0] >= 100,
        "a write cannot beat the slow sync: {write_ms:?}"
    );
    assert!(write_ms[9] < 3000, "{write_ms:?}");
    assert!(lease_reads >= 20, "lease reads kept working: {lease_reads}");
    assert!(
        read_ms[20] < 50,
        "lease reads stay fast on a slow disk: {read_ms:?}"
    );
    let follower = cluster.nodes[(leader + 1) % 3].client_addr.clone();
    let (code, v) = get(&follower, "s", "bounded:3000");
    assert_eq!(code, 200, "{v}");
    let (code, _) = get(&follower, "s", "any");
    assert_eq!(code, 200);
    assert_eq!(status(&addr)["mode"], "healthy");
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Matrix row "clock jump": the leader's wall clock jumps 30 s ahead (libfaketime; monotonic
/// time untouched). It notices the discontinuity, reports clock_untrusted, stops lease reads
/// (linearizable reads go through ReadIndex), refuses `bounded` (staleness is unprovable with
/// an untrusted clock), still serves `any` and writes; after the cooling-off period it is
/// healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jump_turns_lease_reads_off_until_cooled_off() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime is missing: run scripts/setup (installs Debian's faketime)"
    );
    let root = std::env::temp_dir().join(format!("keel-clock-jump-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let cfg = root.join("cooloff.toml");
    std::fs::write(&cfg, "clock_cooloff_ms = 3000\n").unwrap();
    let offset_file = root.join("faketime");
    std::fs::write(&offset_file, "+0\n").unwrap();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let mut cluster = Cluster::prepare("clock-jump", 3, 0, &["--config", &cfg_arg]);
    cluster.nodes[0].env = vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset_file.to_string_lossy().into(),
        ),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    for i in 0..3 {
        cluster.spawn(i);
    }
    let client = cluster.client();
    let (leader, _) = cluster.wait_leader(&client).await;
    let node1 = cluster.nodes[0].client_addr.clone();
    if leader != 0 {
        let (code, v) = http(
            &cluster.nodes[leader].client_addr,
            "POST",
            "/v1/leader/transfer",
            b"{\"target\":1}",
        );
        assert_eq!(code, 200, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&node1)["role"] != "leader" || status(&node1)["mode"] != "healthy" {
        assert!(
            Instant::now() < deadline,
            "node 1 did not become a healthy leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, v, _) = put(&node1, "t", "before");
    assert_eq!(code, 200, "{v}");
    let (_, v) = get(&node1, "t", "linearizable");
    assert_eq!(
        v["served"]["path"], "lease",
        "healthy leader reads by lease: {v}"
    );

    std::fs::write(&offset_file, "+30s\n").unwrap();
    let jumped = Instant::now();
    while status(&node1)["mode"] != "clock_untrusted" {
        assert!(
            jumped.elapsed() < Duration::from_secs(3),
            "no clock_untrusted after the jump: {}",
            status(&node1)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metric(&metrics(&node1), "keel_clock_discontinuities_total") >= 1.0);
    let (code, v) = get(&node1, "t", "linearizable");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["served"]["path"], "read_index",
        "no lease reads on an untrusted clock"
    );
    let (code, v) = get(&node1, "t", "bounded:60000");
    assert_eq!(
        (code, v["code"].as_str()),
        (412, Some("STALE_BOUND_UNMET")),
        "{v}"
    );
    let (code, v) = get(&node1, "t", "any");
    assert_eq!(code, 200, "{v}");
    assert!(
        v["served"]["staleness_ms"].is_null(),
        "unknown staleness: {v}"
    );
    let (code, v, took) = put(&node1, "t", "during");
    assert_eq!(code, 200, "writes go on: {v}");
    assert!(took < Duration::from_secs(3));

    let deadline = Instant::now() + Duration::from_secs(8);
    while status(&node1)["mode"] == "clock_untrusted" {
        assert!(
            Instant::now() < deadline,
            "still clock_untrusted after the cooling-off period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = get(&node1, "t", "linearizable");
    assert_eq!(
        (code, v["kv"]["value"].as_str()),
        (200, Some("during")),
        "{v}"
    );
    assert!(cluster.all_alive(), "{}", cluster.log_tail());
    let _ = std::fs::remove_dir_all(&root);
}
