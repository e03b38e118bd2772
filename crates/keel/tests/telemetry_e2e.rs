//! Telemetry on a real process: metric series stay bounded whatever keys and client ids the
//! API sees, and user data cannot forge or corrupt log lines.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_string())
        .collect()
}

async fn scrape(http: &reqwest::Client, addr: &str) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// 100,000 requests with random keys, client ids and read levels: the set of series is the
/// same before and after (every label comes from a bounded enum, pre-created at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_count_does_not_grow_with_keys_or_client_ids() {
    let cluster = Cluster::start("cardinality", 1, 0, &[]);
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    let addr = cluster.nodes[0].client_addr.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let text = scrape(&http, &addr).await;
    // The operational signals, by their exact names, exist from start-up.
    for name in [
        "keel_leader_changes_total",
        "keel_commit_index_regressions_total",
        "keel_snapshot_install_failures_total",
        "keel_quorum_ack_latency_seconds_bucket",
        "keel_admission_rejected_total{reason=\"queue_delay\"}",
        "keel_invariant_violations_total",
        "keel_term",
        "keel_commit_index",
        "keel_applied_index",
        "keel_config_version",
        "keel_mode{mode=\"healthy\"}",
        "keel_lease_valid",
        "keel_wal_fsync_seconds_bucket",
        "keel_request_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing series {name}");
    }
    for line in text.lines().filter(|l| {
        l.starts_with("keel_invariant_violations_total")
            || l.starts_with("keel_commit_index_regressions_total")
    }) {
        assert!(line.ends_with(" 0"), "must stay 0: {line}");
    }
    let before = series(&text);
    let total: u64 = std::env::var("KEEL_CARDINALITY_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let workers = 64u64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let http = http.clone();
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            // A small deterministic generator per worker (xorshift): distinct keys and ids.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (w + 1);
            let mut codes = std::collections::BTreeMap::<u16, u64>::new();
            let mut i = w;
            while i < total {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("k{x:016x}");
                let client_id = format!("client-{:x}", x.rotate_left(17));
                let req = match x % 10 {
                    0 => http
                        .put(format!("http://{addr}/v1/kv/{key}"))
                        .body(format!("{{\"value\":\"{i}\"}}")),
                    1 => http.get(format!(
                        "http://{addr}/v1/kv/{key}?read=bounded:{}",
                        x % 5000
                    )),
                    2 => http.get(format!("http://{addr}/v1/kv/{key}?read=linearizable")),
                    3 => http.get(format!("http://{addr}/v1/kv/{key}?read=nonsense-{x}")),
                    4 => http.post(format!("http://{addr}/v1/{key}")),
                    _ => http.get(format!("http://{addr}/v1/kv/{key}?read=any")),
                };
                let code = match req.header("x-keel-client-id", client_id).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *codes.entry(code).or_default() += 1;
                i += workers;
            }
            codes
        }));
    }
    let mut codes = std::collections::BTreeMap::<u16, u64>::new();
    for t in tasks {
        for (c, n) in t.await.unwrap() {
            *codes.entry(c).or_default() += n;
        }
    }
    let after = series(&scrape(&http, &addr).await);
    eprintln!(
        "cardinality: {total} requests, codes {codes:?}; series before {} after {}",
        before.len(),
        after.len()
    );
    assert_eq!(codes.values().sum::<u64>(), total);
    assert!(
        codes.get(&200).copied().unwrap_or(0) > total / 2,
        "{codes:?}"
    );
    assert!(
        codes.contains_key(&400) && codes.contains_key(&404),
        "{codes:?}"
    );
    assert_eq!(before, after, "the set of series changed");
    assert!(
        before.len() < 2000,
        "series count {} is not small",
        before.len()
    );
}

fn run_node_and_inject(text_logs: bool) -> String {
    let ports = free_ports(2);
    let root = std::env::temp_dir().join(format!(
        "keel-log-injection-{}-{}",
        std::process::id(),
        text_logs
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let log_path = root.join("node.log");
    let client_addr = format!("127.0.0.1:{}", ports[0]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(["--listen-client", &client_addr])
        .args(["--listen-peer", &format!("127.0.0.1:{}", ports[1])])
        .args(["--log", "debug"])
        .args(["--parent-pid", &std::process::id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    if text_logs {
        cmd.arg("--log-text");
    }
    let mut child = cmd.spawn().expect("spawn keel serve");
    let forged = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"ERROR","message":"FORGED-LINE"}"#;
    let keys = [
        format!("inj\n{forged}\n"),
        "\u{1b}[31mRED-ANSI\u{1b}[0m\r\u{1b}[2K".to_string(),
        format!("plain{forged}"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&client_addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut written = 0;
    while written < keys.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "node did not accept writes"
        );
        let key = &keys[written];
        let path: String = key
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (code, _) = http(
            &client_addr,
            "PUT",
            &format!("/v1/kv/{path}"),
            br#"{"value":"v"}"#,
        );
        if code == 200 {
            written += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        !log.contains(&0x1b),
        "a raw escape character reached the log"
    );
    assert!(
        !log.contains(&b'\r'),
        "a raw carriage return reached the log"
    );
    String::from_utf8(log).expect("log is UTF-8")
}

/// Keys with newlines, a forged JSON log line and ANSI escapes: in the JSON log every line is
/// one JSON object and none is the forged one; in the text log no line starts with the forged
/// text; no raw escape or carriage return reaches either. The keys do reach the log (escaped),
/// so the check is not vacuous.
#[test]
fn user_data_cannot_forge_log_lines_or_inject_escapes() {
    let json = run_node_and_inject(false);
    let mut lines = 0;
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not one JSON object ({e}): {line:?}"));
        assert_ne!(v["message"], "FORGED-LINE", "forged line: {line}");
        lines += 1;
    }
    assert!(lines > 3);
    assert!(
        json.contains("FORGED-LINE"),
        "the key reached the log, escaped"
    );
    assert!(json.contains("RED-ANSI"));

    let text = run_node_and_inject(true);
    assert!(text.contains("FORGED-LINE") && text.contains("RED-ANSI"));
    for line in text.lines() {
        assert!(
            !line.starts_with("{\"timestamp\""),
            "forged line in the text log: {line}"
        );
    }
}
