//! `keel sim` as a user runs it: output lines, exit codes, replay.

use std::process::Command;

fn keel(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn clean_range_prints_trace_hash_and_rate_and_exits_0() {
    let (code, out) = keel(&["sim", "--seeds", "1..6", "--ticks", "600"]);
    assert_eq!(code, 0, "{out}");
    let hash = out
        .lines()
        .find(|l| l.starts_with("trace_hash="))
        .expect("a trace_hash line");
    assert_eq!(hash.len(), "trace_hash=".len() + 16);
    assert!(out.contains("seeds_per_s="), "{out}");
    let (_, again) = keel(&["sim", "--seeds", "1..6", "--ticks", "600"]);
    assert!(
        again.contains(hash),
        "the same seeds give the same trace_hash"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(keel(&["sim", "--seeds", "5..5"]).0, 2);
    assert_eq!(keel(&["sim", "--seeds", "x"]).0, 2);
    assert_eq!(keel(&["sim", "--nodes", "9"]).0, 2);
    assert_eq!(keel(&["sim", "--mutant", "no-such-bug"]).0, 2);
    assert_eq!(keel(&["sim", "--no-such-flag"]).0, 2);
    // `keel check` keeps 2 for an `unknown` verdict: its usage errors are 3.
    assert_eq!(keel(&["check", "--no-such-flag"]).0, 3);
    assert_eq!(keel(&["sim", "--help"]).0, 0);
}

#[cfg(feature = "mutants")]
#[test]
fn a_mutant_is_reported_with_its_seed_and_the_seed_replays() {
    let (list_code, list) = keel(&["sim", "--list-mutants"]);
    assert_eq!(list_code, 0);
    assert_eq!(list.lines().count(), 7, "{list}");
    let (code, out) = keel(&["sim", "--seeds", "1..50", "--mutant", "vote-before-persist"]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("VIOLATION seed="))
        .expect("a VIOLATION line");
    assert!(
        line.contains("property=vote-persisted-before-reply"),
        "{line}"
    );
    let seed = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("seed=");
    let (replay_code, replay) = keel(&[
        "sim",
        "--seed",
        seed,
        "--trace",
        "--mutant",
        "vote-before-persist",
    ]);
    assert_eq!(replay_code, 1);
    assert!(
        replay.contains(line),
        "replay reproduces the same violation"
    );
}
