//! The end-of-seed check: the client history, per key, through keel-check's `kv` model.

use crate::workload::{Op, OpKind, Outcome};
use keel_check::{HistoryBuilder, Model, Options, Value, Verdict};
use keel_core::invariants::Violation;

/// Search steps allowed per key before the verdict is `unknown` (treated as a pass, counted).
const CHECK_STEPS_MAX: u64 = 2_000_000;

/// Builds the keel-check history: one process per operation, events in real-time order.
pub fn to_history(ops: &[Op], include_lease_reads: bool) -> keel_check::History {
    // (time, 0 = invoke / 1 = complete, op index)
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        let is_read = matches!(op.kind, OpKind::Get { .. });
        if is_read
            && (op.lease && !include_lease_reads || !matches!(op.outcome, Outcome::Ok { .. }))
        {
            continue; // Failed reads change nothing; lease reads may be excluded.
        }
        events.push((op.invoke_us, 0, i));
        if !matches!(op.outcome, Outcome::Open | Outcome::Info) {
            events.push((op.complete_us, 1, i));
        }
    }
    // Completions at the same instant as an invoke sort after it: treated as concurrent.
    events.sort_unstable();
    let mut b = HistoryBuilder::new();
    for (t, kind, i) in events {
        let op = &ops[i];
        b.at_time_ns(t * 1000);
        let p = op.id;
        if kind == 0 {
            match &op.kind {
                OpKind::Put { key, value } => {
                    b.invoke(p, "put", Some(key), Value::str(value.clone()))
                }
                OpKind::Cas { key, expected, new } => b.invoke(
                    p,
                    "cas",
                    Some(key),
                    Value::List(vec![Value::str(expected.clone()), Value::str(new.clone())]),
                ),
                OpKind::Get { key } => b.invoke(p, "get", Some(key), Value::Nil),
            };
        } else {
            match (&op.kind, &op.outcome) {
                (OpKind::Get { .. }, Outcome::Ok { value, .. }) => {
                    b.ok(p, Value::str(value.clone().unwrap_or_default()));
                }
                (OpKind::Cas { .. }, Outcome::Ok { swapped: false, .. }) => {
                    b.fail(p);
                }
                (_, Outcome::Ok { .. }) => {
                    b.ok(p, Value::Nil);
                }
                (_, Outcome::Fail) => {
                    b.fail(p);
                }
                _ => unreachable!("open and info ops have no completion"),
            }
        }
    }
    b.build()
}

/// Linearizability of the client history (lease reads left out when the seed violated the
/// clock assumption).
pub fn check(ops: &[Op], clock_assumption_violated: bool) -> Option<Violation> {
    let history = to_history(ops, !clock_assumption_violated);
    let options = Options {
        steps_max: Some(CHECK_STEPS_MAX),
        ..Options::default()
    };
    match keel_check::check(&history, Model::Kv, &options) {
        Ok(report) if report.verdict == Verdict::NotLinearizable => Some(Violation {
            property: "linearizability",
            detail: format!("client history is not linearizable: {}", summarize(&report)),
        }),
        Ok(_) => None,
        Err(e) => Some(Violation {
            property: "history-format",
            detail: format!("{e:?}"),
        }),
    }
}

fn summarize(report: &keel_check::Report) -> String {
    report
        .partitions
        .iter()
        .filter(|p| p.verdict == Verdict::NotLinearizable)
        .map(|p| p.label.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
