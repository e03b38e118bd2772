//! Bearer-token authorization on a real cluster (`keel serve --auth-tokens`): open endpoints
//! stay open; no token or an unknown one is UNAUTHENTICATED (401); a role that does not allow
//! the operation is PERMISSION_DENIED (403); allowed requests work, including a write a
//! follower forwards to the leader; every failure is counted by reason in
//! `keel_authz_failures_total` and audited as `authz_failure` records carrying the count.

mod common;

use common::*;
use keel_client::{Client, ClientConfig, Error, ErrorCode};
use std::time::{Duration, Instant};

const READ: &str = "reader-0123456789abcdef";
const WRITE: &str = "writer-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

fn client(endpoint: &str, token: Option<&str>, forward: bool) -> Client {
    let mut config = ClientConfig::new(&[endpoint]);
    config.rng_seed = 11;
    config.attempt_timeout_ms = 1_000;
    config.call_timeout_ms = 5_000;
    config.forward = forward;
    config.token = token.map(str::to_string);
    Client::new(config).unwrap()
}

fn code_of(e: &Error) -> ErrorCode {
    match e {
        Error::Server(s) => s.code.clone(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn metric(addr: &str, series: &str) -> u64 {
    let (status, body) = http_raw(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_each_role_and_failures_are_counted_and_audited() {
    let root = temp_root("auth-tokens");
    let file = root.join("tokens");
    std::fs::write(
        &file,
        format!("# role token\nread {READ}\nwrite {WRITE}\nadmin {ADMIN}\n"),
    )
    .unwrap();
    let tokens = file.to_string_lossy().to_string();
    let cluster = Cluster::start("auth", 3, 0, &["--auth-tokens", &tokens]);
    let admin_all = {
        let mut config = ClientConfig::new(&cluster.endpoints());
        config.token = Some(ADMIN.into());
        config.retry_reserve_tokens = 20;
        Client::new(config).unwrap()
    };
    let (leader, _) = cluster.wait_leader(&admin_all).await;
    let follower = (leader + 1) % 3;
    let at = cluster.nodes[follower].client_addr.clone();

    // Open endpoints need no token.
    assert_eq!(http(&at, "GET", "/v1/status", b"").0, 200);
    assert_eq!(http_raw(&at, "GET", "/health", b"").0, 200);
    // No token: 401 with a clear code, nothing written.
    let (status, body) = http(&at, "PUT", "/v1/kv/a?forward=true", br#"{"value":"x"}"#);
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    assert_eq!(body["retry"], "no");
    let e = client(&at, Some("unknown-0123456789abcdef"), true)
        .get("a", Default::default())
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::Unauthenticated);

    // read: reads only.
    let reader = client(&at, Some(READ), true);
    let e = reader.put("a", b"1", write_options()).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PermissionDenied);
    // write: reads and writes (a follower forwards the write to the leader with its own
    // credentials), but no membership change.
    let writer = client(&at, Some(WRITE), true);
    writer.put("a", b"1", write_options()).await.unwrap();
    let e = writer.transfer_leader(None).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::PermissionDenied);
    let leader_addr = cluster.nodes[leader].client_addr.clone();
    let got = client(&leader_addr, Some(READ), false)
        .get("a", Default::default())
        .await
        .unwrap();
    assert_eq!(got.kv.map(|kv| kv.value), Some(b"1".to_vec()));
    // admin: everything.
    client(&at, Some(ADMIN), true).members().await.unwrap();

    // Counted by reason on the node that refused them...
    assert!(metric(&at, "keel_authz_failures_total{reason=\"missing\"} ") >= 1);
    assert!(metric(&at, "keel_authz_failures_total{reason=\"invalid\"} ") >= 1);
    assert!(metric(&at, "keel_authz_failures_total{reason=\"forbidden\"} ") >= 2);
    // ...and audited, with counts, within about a second.
    let audit = cluster.data_dir(follower).join("audit.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let reasons: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["kind"] == "authz_failure")
            .map(|r| r["details"]["reason"].as_str().unwrap_or("").to_string())
            .collect();
        if ["missing", "invalid", "forbidden"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "authz failures not audited: {reasons:?}\n{}",
            cluster.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The chain still verifies.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The CLI takes the token from KEEL_TOKEN (or --token).
    let cli = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.args(["put", "--endpoints", &leader_addr, "cli-key", "v"]);
        match token {
            Some(t) => cmd.env("KEEL_TOKEN", t),
            None => cmd.env_remove("KEEL_TOKEN"),
        };
        cmd.output().unwrap()
    };
    let denied = cli(None);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("UNAUTHENTICATED"));
    assert!(cli(Some(WRITE)).status.success());
}

#[test]
fn a_bad_token_file_stops_the_node_with_the_line() {
    let root = temp_root("auth-bad-file");
    let file = root.join("tokens");
    std::fs::write(&file, "admin short\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--id", "1", "--listen-client", "127.0.0.1:0"])
        .args(["--listen-peer", "127.0.0.1:0", "--auth-tokens"])
        .arg(&file)
        .arg("--data-dir")
        .arg(root.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("line 1: a token"), "{text}");
}
