//! `keel-nemesis`: Jepsen-style fault campaigns against real `keel serve` processes.
//!
//! - [`proxy`]: the fault proxy, one TCP listener per directed peer link (pass, black-hole,
//!   refuse/reset, delay with jitter, duplicate whole frames), controlled in-process.
//! - [`cluster`]: N `keel serve` children on loopback, peer traffic through the proxies; kill -9,
//!   restart (also graceful, for rolling restarts), SIGSTOP/SIGCONT, clock skew via
//!   libfaketime, a noisy neighbour, spare node slots for membership changes; everything dies
//!   with the harness.
//! - [`nemesis`]: the seeded fault schedule (`--seed`, `--faults` mix) and its executor.
//! - [`upgrade`]: the rolling upgrade to an `--upgrade-to` build: a pure seeded planner
//!   (upgrade, roll back, finalize, check the old build is refused) and its steps.
//! - [`workload`]: concurrent `keel-client` workers (registers, linearizable readers on every
//!   node, `bounded`/`any` reads, an append-only set, duplicate session submissions, the bank),
//!   every operation recorded.
//! - [`history`]: the recorder; history.jsonl is keel-check's JSON-lines format.
//! - [`bank`]: the bank workload's transactions and its invariant (the total never changes).
//! - [`staleness`]: `bounded` / `any` reads checked against their declared staleness.
//! - [`campaign`]: one run end to end, verdicts, output directory; [`report`]: report.html.
//!
//! Architecture invariant: the harness never trusts the servers' own account of safety; every
//! verdict comes from what clients observed (plus the commit-index-regression counter).

pub mod bank;
pub mod campaign;
pub mod cluster;
pub mod history;
pub mod metrics;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod staleness;
pub mod upgrade;
pub mod workload;

pub use campaign::{parse_duration_ms, run, run_blocking, CampaignConfig, Summary};
pub use nemesis::FaultKind;
pub use workload::WorkloadMix;
