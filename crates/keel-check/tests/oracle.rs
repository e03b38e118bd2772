//! Cross-check against a brute-force oracle on small random histories with few values
//! (so values repeat, writes collide and reads are ambiguous): every verdict must agree.
//! The oracle tries every order that respects real time, with each info op in or out.

use keel_check::{check, HistoryBuilder, Model, Op, OpStatus, Options, Value, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Read(Option<i64>),
    Write(i64),
    Cas(i64, i64),
    Append(i64),
}

struct Small {
    kind: Kind,
    ok: bool,
    invoke: usize,
    complete: usize,
}

/// Random history: ops of random kinds, random results, random overlaps.
fn random_history(seed: u64, kv: bool) -> (keel_check::History, Vec<Small>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let processes = rng.gen_range(1..5u64);
    let total = rng.gen_range(1..8usize);
    let mut b = HistoryBuilder::new();
    let mut open: Vec<Option<(usize, Kind)>> = vec![None; processes as usize];
    let mut small = Vec::new();
    let mut started = 0;
    let mut event = 0;
    let mut next_process: Vec<u64> = (0..processes).collect();
    while started < total || open.iter().any(Option::is_some) {
        let p = rng.gen_range(0..processes as usize);
        match open[p] {
            None if started < total => {
                started += 1;
                let kind = match rng.gen_range(0..if kv { 4 } else { 3 }) {
                    0 => Kind::Read(None),
                    1 => Kind::Write(rng.gen_range(1..4)),
                    2 if !kv => Kind::Cas(rng.gen_range(1..4), rng.gen_range(1..4)),
                    _ => Kind::Append(rng.gen_range(1..3)),
                };
                let (f, value) = match kind {
                    Kind::Read(_) => (if kv { "get" } else { "read" }, Value::Nil),
                    Kind::Write(v) => (if kv { "put" } else { "write" }, text(v, kv)),
                    Kind::Cas(e, n) => ("cas", Value::List(vec![Value::Int(e), Value::Int(n)])),
                    Kind::Append(v) => ("append", text(v, kv)),
                };
                b.invoke(next_process[p], f, None, value);
                open[p] = Some((event, kind));
                event += 1;
            }
            None => {}
            Some((invoke, kind)) => {
                let process = next_process[p];
                match rng.gen_range(0..10) {
                    0 => {
                        b.info(process);
                        next_process[p] += processes;
                        small.push(Small {
                            kind,
                            ok: false,
                            invoke,
                            complete: usize::MAX,
                        });
                    }
                    1 => {
                        b.fail(process);
                    }
                    _ => {
                        let kind = match kind {
                            Kind::Read(_) => {
                                let read = if kv {
                                    [None, Some(0), Some(1), Some(2), Some(12), Some(21), Some(3)]
                                        [rng.gen_range(0..7)]
                                } else {
                                    [None, Some(1), Some(2), Some(3)][rng.gen_range(0..4)]
                                };
                                b.ok(process, read.map(|v| text(v, kv)).unwrap_or(Value::Nil));
                                Kind::Read(read)
                            }
                            other => {
                                b.ok(process, Value::Nil);
                                other
                            }
                        };
                        small.push(Small {
                            kind,
                            ok: true,
                            invoke,
                            complete: event,
                        });
                    }
                }
                open[p] = None;
                event += 1;
            }
        }
    }
    (b.build(), small)
}

/// kv values as text: 0 stands for the empty string, 12 for "12" (append of 1 then 2).
fn text(v: i64, kv: bool) -> Value {
    if !kv {
        return Value::Int(v);
    }
    if v == 0 {
        Value::str("")
    } else {
        Value::Str(v.to_string())
    }
}

fn step(state: &str, kind: Kind) -> Option<String> {
    match kind {
        Kind::Read(None) => Some(state.to_string()),
        Kind::Read(Some(v)) => {
            let want = if v == 0 { String::new() } else { v.to_string() };
            (state == want).then(|| state.to_string())
        }
        Kind::Write(v) => Some(v.to_string()),
        Kind::Cas(e, n) => (state == e.to_string()).then(|| n.to_string()),
        Kind::Append(v) => Some(format!("{state}{v}")),
    }
}

fn oracle(ops: &[Small], done: &mut Vec<bool>, state: &str) -> bool {
    if ops.iter().zip(done.iter()).all(|(o, d)| *d || !o.ok) {
        return true;
    }
    for i in 0..ops.len() {
        if done[i] {
            continue;
        }
        // Every ok op that completed before i was invoked must already be placed.
        let blocked = ops
            .iter()
            .enumerate()
            .any(|(j, o)| !done[j] && j != i && o.ok && o.complete < ops[i].invoke);
        if blocked {
            continue;
        }
        if let Some(next) = step(state, ops[i].kind) {
            done[i] = true;
            let found = oracle(ops, done, &next);
            done[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

fn agree(kv: bool, seeds: std::ops::Range<u64>) {
    let model = if kv { Model::Kv } else { Model::CasRegister };
    let mut counts = [0usize; 2];
    for seed in seeds {
        let (history, small) = random_history(seed, kv);
        let expected = oracle(&small, &mut vec![false; small.len()], "");
        let report = check(&history, model, &Options::default()).expect("well-formed");
        let want = if expected {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let ops: Vec<String> = report.ops.iter().map(Op::describe).collect();
        assert_eq!(report.verdict, want, "seed {seed}: {ops:#?}");
        counts[expected as usize] += 1;
        let _ = OpStatus::Ok;
    }
    assert!(
        counts[0] > 50 && counts[1] > 50,
        "both verdicts exercised: {counts:?}"
    );
}

#[test]
fn cas_register_agrees_with_brute_force() {
    agree(false, 0..20_000);
}

#[test]
fn kv_with_append_agrees_with_brute_force() {
    agree(true, 0..20_000);
}

/// Multi-register: txns of one or two micro-ops over keys x, y, z (initially 0), values 0..2.
/// Exercises the union-find key grouping and the greedy rule for read-only txns.
#[test]
fn multi_register_agrees_with_brute_force() {
    type Micro = (bool, usize, i64); // (is_write, key, value); reads with value -1 are unknown
    fn legal(state: &mut [i64; 3], txn: &[Micro]) -> bool {
        for &(write, k, v) in txn {
            if write {
                state[k] = v;
            } else if v >= 0 && state[k] != v {
                return false;
            }
        }
        true
    }
    fn search(
        ops: &[(Vec<Micro>, bool, usize, usize)],
        done: &mut Vec<bool>,
        state: [i64; 3],
    ) -> bool {
        if ops.iter().zip(done.iter()).all(|(o, d)| *d || !o.1) {
            return true;
        }
        for i in 0..ops.len() {
            if done[i]
                || ops
                    .iter()
                    .enumerate()
                    .any(|(j, o)| !done[j] && j != i && o.1 && o.3 < ops[i].2)
            {
                continue;
            }
            let mut next = state;
            if legal(&mut next, &ops[i].0) {
                done[i] = true;
                let found = search(ops, done, next);
                done[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    let keys = ["x", "y", "z"];
    let mut counts = [0usize; 2];
    for seed in 0..10_000u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let processes = rng.gen_range(1..4usize);
        let total = rng.gen_range(1..7usize);
        let mut b = HistoryBuilder::new();
        let mut open: Vec<Option<(usize, Vec<Micro>)>> = vec![None; processes];
        let mut pid: Vec<u64> = (0..processes as u64).collect();
        let (mut started, mut event) = (0, 0);
        let mut small: Vec<(Vec<Micro>, bool, usize, usize)> = Vec::new();
        let micro_value = |m: &Micro, known: bool| {
            let kind = Value::Keyword(if m.0 { "write" } else { "read" }.into());
            let v = if m.0 || known {
                Value::Int(m.2)
            } else {
                Value::Nil
            };
            Value::List(vec![kind, Value::Keyword(keys[m.1].into()), v])
        };
        while started < total || open.iter().any(Option::is_some) {
            let p = rng.gen_range(0..processes);
            match open[p].take() {
                None if started < total => {
                    started += 1;
                    let txn: Vec<Micro> = (0..rng.gen_range(1..3))
                        .map(|_| (rng.gen_bool(0.5), rng.gen_range(0..3), rng.gen_range(0..3)))
                        .collect();
                    let invoke = Value::List(txn.iter().map(|m| micro_value(m, false)).collect());
                    b.invoke(pid[p], "txn", None, invoke);
                    open[p] = Some((event, txn));
                    event += 1;
                }
                None => {}
                Some((invoke, txn)) => {
                    match rng.gen_range(0..10) {
                        0 => {
                            b.info(pid[p]);
                            pid[p] += processes as u64;
                            let writes: Vec<Micro> = txn.iter().copied().filter(|m| m.0).collect();
                            small.push((writes, false, invoke, usize::MAX));
                        }
                        1 => {
                            b.fail(pid[p]);
                        }
                        _ => {
                            let result =
                                Value::List(txn.iter().map(|m| micro_value(m, true)).collect());
                            b.ok(pid[p], result);
                            small.push((txn, true, invoke, event));
                        }
                    }
                    event += 1;
                }
            }
        }
        let expected = search(&small, &mut vec![false; small.len()], [0, 0, 0]);
        let options = Options {
            initial: Some(Value::Int(0)),
            ..Options::default()
        };
        let report = check(&b.build(), Model::MultiRegister, &options).expect("well-formed");
        let want = if expected {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let ops: Vec<String> = report.ops.iter().map(Op::describe).collect();
        assert_eq!(report.verdict, want, "seed {seed}: {ops:#?}");
        counts[expected as usize] += 1;
    }
    assert!(
        counts[0] > 50 && counts[1] > 50,
        "both verdicts exercised: {counts:?}"
    );
}
