//! `keel check` end to end: verdict lines, totals, exit codes, formats, HTML.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keel-check/tests/data")
        .join(rel)
}

fn keel_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("check")
        .args(args)
        .output()
        .expect("run keel")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn good_folder_exits_0_with_totals() {
    let dir = data("knossos/cas-register/good");
    let out = keel_check(&[
        "--model",
        "cas-register",
        "--initial",
        "0",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(": linearizable ("))
            .count(),
        113
    );
    assert!(
        text.contains("total: 113 files: 113 linearizable, 0 not linearizable, 0 unknown"),
        "{text}"
    );
}

#[test]
fn any_violation_exits_1_and_is_explained_with_html() {
    let good = data("knossos/cas-register/good/memstress3-0.edn");
    let bad = data("knossos/cas-register/bad/rethink-fail-minimal.edn");
    let html = std::env::temp_dir().join(format!("keel-check-cli-{}.html", std::process::id()));
    let out = keel_check(&[
        "--initial",
        "0",
        "--html",
        html.to_str().expect("utf8"),
        good.to_str().expect("utf8"),
        bad.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rethink-fail-minimal.edn: not linearizable"),
        "{text}"
    );
    assert!(text.contains("longest linearizable prefix"), "{text}");
    assert!(text.contains("cannot linearize"), "{text}");
    assert!(
        text.contains("total: 2 files: 1 linearizable, 1 not linearizable, 0 unknown"),
        "{text}"
    );
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(
        page.contains("<svg") && page.contains("class=\"op blocking"),
        "html marks the offending op"
    );
    assert!(
        !page.contains("http://")
            || page
                .matches("http://")
                .all(|_| page.contains("http://www.w3.org/2000/svg"))
    );
}

#[test]
fn budget_exhausted_exits_2() {
    let file = data("knossos/cas-register/good/memstress3-0.edn");
    let out = keel_check(&[
        "--initial",
        "0",
        "--steps-max",
        "1",
        file.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("unknown"));
}

#[test]
fn parse_errors_exit_3_with_the_line() {
    let file = temp_file("bad.jsonl", "{\"process\":0,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"k\"}\n{\"process\":0,\"type\":\"okay\",\"f\":\"get\"}\n");
    let out = keel_check(&[file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    let out = keel_check(&["--model", "nonsense", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3));
    let out = keel_check(&[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn keel_json_kv_and_jepsen_log_are_detected() {
    let kv = temp_file(
        "kv.jsonl",
        "{\"process\":0,\"type\":\"invoke\",\"f\":\"put\",\"key\":\"a\",\"value\":\"1\"}\n\
         {\"process\":0,\"type\":\"ok\",\"f\":\"put\",\"key\":\"a\",\"value\":\"1\"}\n\
         {\"process\":1,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"b\"}\n\
         {\"process\":1,\"type\":\"ok\",\"f\":\"get\",\"key\":\"b\",\"value\":\"1\"}\n",
    );
    let out = keel_check(&["--json", kv.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().expect("a line")).expect("json");
    assert_eq!(first["model"], "kv");
    assert_eq!(first["format"], "keel");
    assert_eq!(first["partitions"].as_array().expect("partitions").len(), 2);
    assert_eq!(first["partitions"][1]["verdict"], "not linearizable");
    let log = temp_file("run.log", "INFO  jepsen.util - 1\t:invoke\t:write\t3\nINFO  jepsen.util - 1\t:ok\t:write\t3\nINFO  jepsen.util - 2\t:invoke\t:read\tnil\nINFO  jepsen.util - 2\t:ok\t:read\t3\n");
    let out = keel_check(&[log.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("jepsen-log"));
}
