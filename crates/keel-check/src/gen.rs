//! History generators for tests and benchmarks, deterministic from a seed.
//!
//! [`linearizable`] runs a sequential model under random concurrency: every operation takes
//! effect at a random point between its invoke and its completion, so the history is
//! linearizable by construction. Some operations crash (`info`): they take effect before the
//! crash, later, or never. Every written value is unique, which lets [`inject`] plant one
//! anomaly that is *provably* not linearizable (the proof is in each variant's comment).

use crate::history::{pair_operations, Event, EventKind, History, Op, OpStatus, Process};
use crate::value::Value;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Upper bound on generated operations.
pub const GEN_OPS_MAX: usize = 1_000_000;

/// Which operation names and values to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// read / write with integer values.
    Register,
    /// read / write / cas with integer values.
    CasRegister,
    /// get / put / cas with string values (the simulator's shape).
    Kv,
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub flavor: Flavor,
    /// Concurrent client processes.
    pub processes: u32,
    /// Operations to invoke.
    pub ops: usize,
    /// Keys; with 1 key events carry no key unless `keyed`.
    pub keys: u32,
    pub keyed: bool,
    pub read_percent: u32,
    /// Share of non-read operations that are cas (cas-register and kv).
    pub cas_percent: u32,
    /// Chance that a completion is a crash (`info`).
    pub info_percent: u32,
    /// Kv only: share of non-read, non-cas operations that are appends (of a unique token).
    pub append_percent: u32,
}

impl Default for GenConfig {
    fn default() -> GenConfig {
        GenConfig {
            seed: 0,
            flavor: Flavor::CasRegister,
            processes: 5,
            ops: 100,
            keys: 1,
            keyed: false,
            read_percent: 50,
            cas_percent: 30,
            info_percent: 5,
            append_percent: 0,
        }
    }
}

struct Pending {
    process: u64,
    key: u32,
    f: &'static str,
    input: Value,
    /// The result, once the operation took effect: `Some(ok?, output)`.
    applied: Option<(bool, Value)>,
}

fn key_value(config: &GenConfig, key: u32) -> Option<Value> {
    (config.keyed || config.keys > 1).then(|| Value::Str(format!("k{key}")))
}

/// A linearizable history (see the module comment).
pub fn linearizable(config: &GenConfig) -> History {
    assert!(config.processes >= 1, "at least one process");
    assert!(config.ops <= GEN_OPS_MAX, "ops above GEN_OPS_MAX");
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let keys = config.keys.max(1);
    let mut state: Vec<Value> = vec![Value::Nil; keys as usize];
    let mut slots: Vec<Option<Pending>> = (0..config.processes).map(|_| None).collect();
    let mut process_ids: Vec<u64> = (0..config.processes as u64).collect();
    // Crashed operations that have not taken effect: they may, later, or never.
    let mut ghosts: Vec<Pending> = Vec::new();
    let mut next_value: i64 = 1;
    let mut invoked = 0usize;
    let mut history = History::new();
    let mut clock_ns: u64 = 0;
    let (read_f, write_f) = match config.flavor {
        Flavor::Kv => ("get", "put"),
        _ => ("read", "write"),
    };
    let fresh = |n: i64| match config.flavor {
        Flavor::Kv => Value::Str(format!("v{n}")),
        _ => Value::Int(n),
    };
    loop {
        let busy = slots.iter().any(Option::is_some);
        if invoked >= config.ops && !busy {
            break;
        }
        clock_ns += rng.gen_range(1..1000);
        let slot = rng.gen_range(0..slots.len());
        let push = |history: &mut History, process: u64, kind, f: &str, key: u32, value: Value| {
            history.push(Event {
                process: Process::Client(process),
                kind,
                f: f.to_string(),
                key: key_value(config, key),
                value,
                time_ns: Some(clock_ns),
                line: 0,
            });
        };
        // A ghost may take effect at any moment.
        if !ghosts.is_empty() && rng.gen_range(0..100) < 3 {
            let ghost = ghosts.swap_remove(rng.gen_range(0..ghosts.len()));
            apply(&mut state, &ghost);
            continue;
        }
        match slots[slot].take() {
            None if invoked < config.ops => {
                invoked += 1;
                let key = rng.gen_range(0..keys);
                let current = state[key as usize].clone();
                let roll = rng.gen_range(0..100);
                let (f, input) = if roll < config.read_percent {
                    (read_f, Value::Nil)
                } else if config.flavor != Flavor::Register
                    && rng.gen_range(0..100) < config.cas_percent
                    && !current.is_nil()
                {
                    // Usually expect the current value, so that many cas succeed.
                    let expected = if rng.gen_bool(0.7) {
                        current
                    } else {
                        fresh(rng.gen_range(1..next_value.max(2)))
                    };
                    next_value += 1;
                    ("cas", Value::List(vec![expected, fresh(next_value - 1)]))
                } else if config.flavor == Flavor::Kv
                    && rng.gen_range(0..100) < config.append_percent
                {
                    next_value += 1;
                    ("append", Value::Str(format!("a{},", next_value - 1)))
                } else {
                    next_value += 1;
                    (write_f, fresh(next_value - 1))
                };
                let process = process_ids[slot];
                push(
                    &mut history,
                    process,
                    EventKind::Invoke,
                    f,
                    key,
                    input.clone(),
                );
                slots[slot] = Some(Pending {
                    process,
                    key,
                    f,
                    input,
                    applied: None,
                });
            }
            None => {}
            Some(mut pending) => {
                if pending.applied.is_none() && rng.gen_bool(0.5) {
                    // The linearization point.
                    let result = apply(&mut state, &pending);
                    pending.applied = Some(result);
                    slots[slot] = Some(pending);
                } else if rng.gen_range(0..100) < config.info_percent {
                    push(
                        &mut history,
                        pending.process,
                        EventKind::Info,
                        pending.f,
                        pending.key,
                        Value::Nil,
                    );
                    process_ids[slot] += config.processes as u64;
                    if pending.applied.is_none() {
                        ghosts.push(pending);
                    }
                } else if let Some((ok, output)) = pending.applied.clone() {
                    let kind = if ok { EventKind::Ok } else { EventKind::Fail };
                    let value = if pending.f == read_f {
                        output
                    } else {
                        pending.input.clone()
                    };
                    push(
                        &mut history,
                        pending.process,
                        kind,
                        pending.f,
                        pending.key,
                        value,
                    );
                } else {
                    slots[slot] = Some(pending);
                }
            }
        }
    }
    history
}

/// Applies an operation to the true state; returns (took effect?, value read).
fn apply(state: &mut [Value], op: &Pending) -> (bool, Value) {
    let cell = &mut state[op.key as usize];
    match op.f {
        "read" | "get" => (true, cell.clone()),
        "cas" => {
            let pair = op.input.as_list().expect("cas input is a pair");
            if *cell == pair[0] {
                *cell = pair[1].clone();
                (true, Value::Nil)
            } else {
                (false, Value::Nil)
            }
        }
        "append" => {
            let prefix = if cell.is_nil() {
                String::new()
            } else {
                cell.to_text()
            };
            *cell = Value::Str(format!("{prefix}{}", op.input.to_text()));
            (true, Value::Nil)
        }
        _ => {
            *cell = op.input.clone();
            (true, Value::Nil)
        }
    }
}

/// Anomalies [`inject`] can plant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// An existing read returns a value overwritten before the read began.
    StaleRead,
    /// A new read after an acknowledged write returns the value that write replaced.
    LostWrite,
    /// A write re-applies an earlier write's value, so a read of its own value has no source.
    DuplicatedWrite,
    /// Two non-overlapping writes are observed in the opposite order by two later reads.
    ReorderedWrites,
}

impl Anomaly {
    pub const ALL: [Anomaly; 4] = [
        Anomaly::StaleRead,
        Anomaly::LostWrite,
        Anomaly::DuplicatedWrite,
        Anomaly::ReorderedWrites,
    ];
}

fn is_read(op: &Op) -> bool {
    op.f == "read" || op.f == "get"
}

/// The value an ok write or cas wrote.
fn written(op: &Op) -> Option<&Value> {
    if op.status != OpStatus::Ok {
        return None;
    }
    match op.f.as_str() {
        "write" | "put" => Some(&op.input),
        "cas" => op.input.as_list().map(|p| &p[1]),
        _ => None,
    }
}

/// Plants `anomaly` into a history from [`linearizable`]; `None` when the history has no
/// place for it (too few operations). The result is never linearizable.
pub fn inject(history: &History, anomaly: Anomaly, seed: u64) -> Option<History> {
    let ops = pair_operations(history).expect("generated histories are well-formed");
    if ops.iter().any(|o| o.f == "append") {
        return None; // the proofs below assume every state was written by one put / cas
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Every written value is unique: required by the proofs below.
    let mut writers: BTreeMap<(Option<Value>, Value), usize> = BTreeMap::new();
    for op in &ops {
        let values: Vec<&Value> = match op.f.as_str() {
            "write" | "put" => vec![&op.input],
            "cas" => op.input.as_list().map(|p| vec![&p[1]]).unwrap_or_default(),
            _ => vec![],
        };
        for v in values {
            let previous = writers.insert((op.key.clone(), v.clone()), 1);
            assert!(previous.is_none(), "generated values are unique");
        }
    }
    let writes: Vec<usize> = (0..ops.len())
        .filter(|&i| written(&ops[i]).is_some())
        .collect();
    // Pairs (wx, w2) of ok writes on one key, wx completed before w2 was invoked.
    let mut ordered: Vec<(usize, usize)> = Vec::new();
    for &a in &writes {
        for &b in &writes {
            if ops[a].key == ops[b].key && ops[a].complete_index.expect("ok") < ops[b].invoke_index
            {
                ordered.push((a, b));
            }
        }
    }
    let fresh_process = ops.iter().map(|o| o.process).max().unwrap_or(0) + 1;
    let read_f = if ops.iter().any(|o| o.f == "get" || o.f == "put") {
        "get"
    } else {
        "read"
    };
    let mut out = history.clone();
    let read_event = |process: u64, kind: EventKind, key: &Option<Value>, value: Value| Event {
        process: Process::Client(process),
        kind,
        f: read_f.to_string(),
        key: key.clone(),
        value,
        time_ns: None,
        line: 0,
    };
    match anomaly {
        // R reads x, but x's only writer Wx completed before W2 (writing y != x) was
        // invoked, and W2 completed before R was invoked: Wx < W2 < R in every
        // linearization, and nothing writes x again.
        Anomaly::StaleRead => {
            let mut candidates = Vec::new();
            for (r, read) in ops.iter().enumerate() {
                if !is_read(read) || read.status != OpStatus::Ok {
                    continue;
                }
                for &(wx, w2) in &ordered {
                    if ops[w2].key == read.key
                        && ops[w2].complete_index.expect("ok") < read.invoke_index
                    {
                        candidates.push((r, wx));
                    }
                }
            }
            if candidates.is_empty() {
                return None;
            }
            let (r, wx) = candidates[rng.gen_range(0..candidates.len())];
            let at = ops[r].complete_index.expect("ok read completes");
            out.events[at].value = written(&ops[wx]).expect("a write").clone();
        }
        // A read inserted right after W2 completes returns x, written only by Wx which
        // completed before W2 was invoked: same proof as a stale read.
        Anomaly::LostWrite => {
            if ordered.is_empty() {
                return None;
            }
            let (wx, w2) = ordered[rng.gen_range(0..ordered.len())];
            let at = ops[w2].complete_index.expect("ok") + 1;
            let x = written(&ops[wx]).expect("a write").clone();
            out.events.insert(
                at,
                read_event(fresh_process, EventKind::Invoke, &ops[w2].key, Value::Nil),
            );
            out.events.insert(
                at + 1,
                read_event(fresh_process, EventKind::Ok, &ops[w2].key, x),
            );
        }
        // W2's value y is read by R; W2 now writes x (Wx's value) instead. Nothing writes y
        // any more, so R (an ok read of a non-nil value) has no source.
        Anomaly::DuplicatedWrite => {
            let mut candidates = Vec::new();
            for &(wx, w2) in &ordered {
                let y = written(&ops[w2]).expect("a write");
                let observed = ops.iter().any(|r| {
                    is_read(r) && r.status == OpStatus::Ok && r.key == ops[w2].key && r.output == *y
                });
                if observed {
                    candidates.push((wx, w2));
                }
            }
            if candidates.is_empty() {
                return None;
            }
            let (wx, w2) = candidates[rng.gen_range(0..candidates.len())];
            let x = written(&ops[wx]).expect("a write").clone();
            let replace = |value: &Value| match value.as_list() {
                Some(pair) => Value::List(vec![pair[0].clone(), x.clone()]),
                None => x.clone(),
            };
            let invoke = ops[w2].invoke_index;
            out.events[invoke].value = replace(&out.events[invoke].value);
            let complete = ops[w2].complete_index.expect("ok");
            if !out.events[complete].value.is_nil() {
                out.events[complete].value = replace(&out.events[complete].value);
            }
        }
        // W1 (a) completed before W2 (b) was invoked. After W2 completes, R1 reads b, then
        // R2 (invoked after R1 completed) reads a. R1 follows W2 (b's only writer); a after
        // R1 needs W1 after R1, but W1 precedes W2 in real time.
        Anomaly::ReorderedWrites => {
            if ordered.is_empty() {
                return None;
            }
            let (w1, w2) = ordered[rng.gen_range(0..ordered.len())];
            let a = written(&ops[w1]).expect("a write").clone();
            let b = written(&ops[w2]).expect("a write").clone();
            let key = &ops[w2].key;
            let at = ops[w2].complete_index.expect("ok") + 1;
            let events = [
                read_event(fresh_process, EventKind::Invoke, key, Value::Nil),
                read_event(fresh_process, EventKind::Ok, key, b),
                read_event(fresh_process + 1, EventKind::Invoke, key, Value::Nil),
                read_event(fresh_process + 1, EventKind::Ok, key, a),
            ];
            for (offset, event) in events.into_iter().enumerate() {
                out.events.insert(at + offset, event);
            }
        }
    }
    Some(out)
}
