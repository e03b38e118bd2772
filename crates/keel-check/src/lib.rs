//! `keel-check`: a linearizability checker for Keel and Jepsen histories.
//!
//! Algorithm: Wing & Gong's backtracking search with Lowe's memoization (a cache of
//! (linearized-set bitset, model state) pairs, hashed incrementally), split per key by
//! P-compositionality, partitions optionally searched in parallel, under a time / step /
//! memory budget (exhausted => [`Verdict::Unknown`], never a guess). Semantics are Jepsen's:
//! `ok` took effect between invoke and completion, `fail` certainly did not, `info` (or no
//! completion) may take effect at any time after its invoke, or never.
//!
//! # API (stable; used by the simulator)
//!
//! ```
//! use keel_check::{check, HistoryBuilder, Model, Options, Value, Verdict};
//!
//! let mut b = HistoryBuilder::new();
//! b.invoke(0, "put", Some("x"), Value::str("1"));
//! b.ok(0, Value::Nil);
//! b.invoke(1, "get", Some("x"), Value::Nil);
//! b.ok(1, Value::str("1"));
//! b.invoke(2, "put", Some("y"), Value::str("2"));
//! b.info(2); // timed out
//! let report = check(&b.build(), Model::Kv, &Options::default()).expect("well-formed history");
//! assert_eq!(report.verdict, Verdict::Linearizable);
//! assert_eq!(report.partitions.len(), 2); // one per key
//! ```
//!
//! - [`History`] is a list of [`Event`]s in real-time order (position = time). Build it with
//!   [`HistoryBuilder`] or parse a file with [`parse_history`]; write it for `keel check`
//!   with [`History::to_keel_jsonl`].
//! - [`check`] returns a [`Report`]: the [`Verdict`], one [`PartitionReport`] per key, and for
//!   each violation an [`Explanation`] (longest linearizable prefix, the operation that cannot
//!   be ordered, why each pending operation cannot come next). Errors are structural
//!   ([`HistoryError`], with the source line).
//! - [`html::render`] draws a report as a self-contained HTML page.
//! - [`gen`] generates histories (linearizable by construction, or with one injected anomaly)
//!   for tests and benchmarks; deterministic from a seed.
//!
//! Models ([`Model`]): `register`, `cas-register`, `kv` (get/put/append/delete/cas on string
//! values), `mutex`, `multi-register` (txn). For the kv model the simulator should emit
//! `put` (value = new string), `get` (completion value = string read, nil = absent), `cas`
//! (value = `[expected new]`), each with a key; timeouts as `info`.
//!
//! Determinism: with `threads = 1` and no time limit, the verdict, the explanation and every
//! statistic except elapsed time depend only on the history and the options.

pub mod check;
pub mod gen;
pub mod history;
pub mod html;
pub mod model;
pub mod parse;
mod search;
pub mod value;

pub use check::{check, Explanation, Options, PartitionReport, Report, Step, Stuck, Verdict};
pub use history::{
    pair_operations, Event, EventKind, History, HistoryBuilder, HistoryError, Op, OpStatus, Process,
};
pub use model::Model;
pub use parse::{parse_history, Format, ParseError};
pub use value::Value;
