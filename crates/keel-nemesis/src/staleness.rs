//! Reads below linearizable, checked against what they declared rather than linearizability.
//!
//! A `bounded:<ms>` read promises its value was the latest acknowledged value at some time no
//! earlier than `start - staleness - U` (the staleness the server reported, else the declared
//! bound; `U` the configured clock uncertainty, covering the harness's own clock against the
//! servers'). An `any` read promises only that its value was written at some point (or is the
//! initial absence); if it reports a `staleness_ms`, that claim is checked like a bound.
//!
//! The check is sound with unknown timings: a read is too stale only if some write w2 that was
//! acknowledged before the cutoff was invoked after the write w of the value read completed
//! (so w2 is ordered after w, and every state from the cutoff on holds w2 or later). Values are
//! unique per write; keys are never deleted.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::Event;

/// Violations reported, at most (the count is kept beyond).
pub const VIOLATIONS_LISTED_MAX: usize = 20;

/// One read below linearizable, as the worker saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct StaleRead {
    pub key: String,
    pub value: Option<String>,
    /// `Some(bound)` for `bounded:<bound>`, None for `any`.
    pub bound_ms: Option<u64>,
    /// What the server reported in `served.staleness_ms`.
    pub staleness_ms: Option<u64>,
    /// `served.node`.
    pub node: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A write as the history shows it.
#[derive(Clone, Debug)]
struct Write {
    value: String,
    invoke_ns: u64,
    /// Acknowledged at (None: unknown outcome).
    ok_ns: Option<u64>,
}

/// Writes (`write` and successful `cas`) per key, from the history.
fn writes_by_key(events: &[Event]) -> BTreeMap<String, Vec<Write>> {
    let mut pending: BTreeMap<u64, (String, String, u64)> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Write>> = BTreeMap::new();
    for event in events {
        if !matches!(event.f.as_str(), "write" | "cas") {
            continue;
        }
        let Some(key) = &event.key else { continue };
        let value = match (&event.f[..], &event.value) {
            ("write", Value::String(v)) => v.clone(),
            ("cas", Value::Array(pair)) if pair.len() == 2 => {
                pair[1].as_str().unwrap_or_default().to_string()
            }
            _ => continue,
        };
        match event.kind {
            "invoke" => {
                pending.insert(event.process, (key.clone(), value, event.time_ns));
            }
            kind => {
                let Some((key, value, invoke_ns)) = pending.remove(&event.process) else {
                    continue;
                };
                let ok_ns = match kind {
                    "ok" => Some(event.time_ns),
                    "info" => None,
                    _ => continue, // a failed cas changed nothing
                };
                out.entry(key).or_default().push(Write {
                    value,
                    invoke_ns,
                    ok_ns,
                });
            }
        }
    }
    // Writes invoked but never completed may have applied.
    for (_, (key, value, invoke_ns)) in pending {
        out.entry(key).or_default().push(Write {
            value,
            invoke_ns,
            ok_ns: None,
        });
    }
    out
}

/// What the check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StalenessReport {
    pub bounded_checked: u64,
    pub any_checked: u64,
    /// Reads whose staleness claim was not checked (clock assumption violated).
    pub bound_unchecked: u64,
    pub violations: Vec<String>,
    pub violations_total: u64,
}

/// Checks every read. `check_bounds` false (the clock assumption was violated) keeps only the
/// "was ever written" part.
pub fn check(
    events: &[Event],
    reads: &[StaleRead],
    clock_uncertainty_ms: u64,
    check_bounds: bool,
) -> StalenessReport {
    let writes = writes_by_key(events);
    let none = Vec::new();
    let mut report = StalenessReport::default();
    let violate = |report: &mut StalenessReport, text: String| {
        report.violations_total += 1;
        if report.violations.len() < VIOLATIONS_LISTED_MAX {
            report.violations.push(text);
        }
    };
    for read in reads {
        assert!(read.start_ns <= read.end_ns);
        match read.bound_ms {
            Some(_) => report.bounded_checked += 1,
            None => report.any_checked += 1,
        }
        let level = match read.bound_ms {
            Some(bound) => format!("bounded:{bound}"),
            None => "any".to_string(),
        };
        let key_writes = writes.get(&read.key).unwrap_or(&none);
        let source = match &read.value {
            None => None,
            Some(value) => match key_writes.iter().find(|w| &w.value == value) {
                None => {
                    violate(
                        &mut report,
                        format!(
                            "{level} read of {} from node {} returned {value:?}, never written",
                            read.key, read.node
                        ),
                    );
                    continue;
                }
                Some(w) if w.invoke_ns > read.end_ns => {
                    violate(
                        &mut report,
                        format!("{level} read of {} from node {} returned {value:?} before its write was invoked", read.key, read.node),
                    );
                    continue;
                }
                Some(w) => Some(w),
            },
        };
        if let (Some(bound), Some(staleness)) = (read.bound_ms, read.staleness_ms) {
            if staleness > bound {
                violate(
                    &mut report,
                    format!(
                        "{level} read of {} served by node {} reporting staleness {staleness} ms",
                        read.key, read.node
                    ),
                );
                continue;
            }
        }
        // The staleness claimed: the reported one, else the declared bound (any: none).
        let Some(claim_ms) = read.staleness_ms.or(read.bound_ms) else {
            continue;
        };
        if !check_bounds {
            report.bound_unchecked += 1;
            continue;
        }
        let cutoff_ns = read
            .start_ns
            .saturating_sub((claim_ms + clock_uncertainty_ms + 1) * 1_000_000);
        let newer = key_writes.iter().find(|w2| {
            let acked_before_cutoff = w2.ok_ns.is_some_and(|ok| ok < cutoff_ns);
            let after_source = match source {
                None => true,
                Some(w) => w.ok_ns.is_some_and(|ok| w2.invoke_ns > ok),
            };
            acked_before_cutoff && after_source
        });
        if let Some(w2) = newer {
            violate(
                &mut report,
                format!(
                    "{level} read of {} from node {} (claimed staleness {claim_ms} ms) returned {:?}, but {:?} was acknowledged {} ms before the read began",
                    read.key,
                    read.node,
                    read.value,
                    w2.value,
                    (read.start_ns - w2.ok_ns.unwrap_or(0)) / 1_000_000
                ),
            );
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(process: u64, kind: &'static str, f: &str, value: Value, ms: u64) -> Event {
        Event {
            process,
            kind,
            f: f.to_string(),
            key: Some("k".to_string()),
            value,
            time_ns: ms * 1_000_000,
            error: None,
        }
    }

    fn read(
        value: Option<&str>,
        bound_ms: Option<u64>,
        staleness_ms: Option<u64>,
        start_ms: u64,
    ) -> StaleRead {
        StaleRead {
            key: "k".to_string(),
            value: value.map(str::to_string),
            bound_ms,
            staleness_ms,
            node: 2,
            start_ns: start_ms * 1_000_000,
            end_ns: (start_ms + 5) * 1_000_000,
        }
    }

    /// a written 0..10 ms, b written 20..30 ms (after a), c cas'd 40..50 ms, d unknown.
    fn history() -> Vec<Event> {
        vec![
            event(1, "invoke", "write", json!("a"), 0),
            event(1, "ok", "write", json!("a"), 10),
            event(1, "invoke", "write", json!("b"), 20),
            event(1, "ok", "write", json!("b"), 30),
            event(2, "invoke", "cas", json!(["b", "c"]), 40),
            event(2, "ok", "cas", json!(["b", "c"]), 50),
            event(3, "invoke", "write", json!("d"), 60),
            event(3, "info", "write", json!("d"), 70),
        ]
    }

    #[test]
    fn fresh_enough_reads_pass() {
        let reads = [
            read(Some("c"), Some(100), Some(0), 1_000),
            // b was replaced at 50 ms; a read at 120 ms with bound 100 may still see b.
            read(Some("b"), Some(100), None, 120),
            read(Some("d"), None, None, 75),
            read(None, Some(1_000), Some(500), 200),
            read(Some("a"), None, None, 10_000),
        ];
        let report = check(&history(), &reads, 10, true);
        assert_eq!(report.violations, Vec::<String>::new());
        assert_eq!((report.bounded_checked, report.any_checked), (3, 2));
    }

    #[test]
    fn too_stale_reads_fail() {
        // b replaced by c (acknowledged at 50 ms): at 300 ms, 100 ms + 10 ms stale is too much.
        let report = check(
            &history(),
            &[read(Some("b"), Some(100), None, 300)],
            10,
            true,
        );
        assert_eq!(report.violations_total, 1, "{:?}", report.violations);
        // The server's own staleness claim is held to as well (any with staleness_ms).
        let report = check(
            &history(),
            &[read(Some("a"), None, Some(20), 1_000)],
            10,
            true,
        );
        assert_eq!(report.violations_total, 1);
        // Absent long after a write was acknowledged.
        let report = check(&history(), &[read(None, Some(50), None, 500)], 10, true);
        assert_eq!(report.violations_total, 1);
        // A bound the server itself says it exceeded.
        let report = check(
            &history(),
            &[read(Some("c"), Some(50), Some(80), 60)],
            10,
            true,
        );
        assert_eq!(report.violations_total, 1);
        // Never written, or read before its write began.
        let report = check(
            &history(),
            &[
                read(Some("zz"), None, None, 100),
                read(Some("d"), None, None, 50),
            ],
            10,
            true,
        );
        assert_eq!(report.violations_total, 2);
        // With the clock assumption violated only the existence part is checked.
        let report = check(
            &history(),
            &[read(Some("b"), Some(100), None, 300)],
            10,
            false,
        );
        assert_eq!((report.violations_total, report.bound_unchecked), (0, 1));
    }
}
