//! keel-sim: a deterministic, single-threaded simulator over the real keel-core.
//!
//! One seed fixes everything: the fault mix (swarm testing), network delays, losses,
//! partitions, crashes with lost and torn writes, pauses, clock offsets, drift and jumps, slow
//! disks, membership churn, leadership transfers, snapshots, and a skewed client workload of
//! puts, CAS and reads (ReadIndex, lease, inherited lease). After every event the safety
//! monitor (keel_core::invariants) checks every property; reads are checked for freshness as
//! they complete; at the end the client history is checked for linearizability per key; then a
//! liveness phase heals everything and requires a committed write within a bound.

mod clock;
pub mod degraded;
mod disk;
mod events;
pub mod faults;
pub mod history;
pub mod workload;
mod world;

pub use keel_core::invariants::Violation;
pub use keel_core::Mutant;

/// Damage to synced WAL data, injected at crashes (one damaged node at a time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalDamage {
    /// No damage to synced data (crashes still lose and tear unsynced writes).
    #[default]
    Off,
    /// Half of the crashes flip a bit in a synced record of one of the last batches; the node
    /// restarts with storage repair on and the core in repair mode (`Node::new_repairing`).
    Repair,
    /// The same damage, but the node restarts as if the cut were a torn write: `Node::new`, no
    /// repair mode. Unsafe on purpose: proves the checks catch silent truncation.
    SilentTruncate,
}

/// The simulated nodes' clock assumptions (what `Config` is told).
pub const CLOCK_UNCERTAINTY_MS: u64 = 20;
pub const CLOCK_DRIFT_PPM_MAX: u64 = 400;

#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Initial voters (3..=7).
    pub nodes: usize,
    /// Length of the safety phase in 10 ms ticks.
    pub ticks: u64,
    /// Bound for the liveness phase.
    pub liveness_ms: u64,
    pub clients: usize,
    pub faults: bool,
    pub mutant: Option<Mutant>,
    /// Check the client history for linearizability at the end.
    pub check_history: bool,
    /// Damage to synced WAL data at crashes.
    pub wal_damage: WalDamage,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 5,
            ticks: 2000,
            liveness_ms: 10_000,
            clients: 6,
            faults: true,
            mutant: None,
            check_history: true,
            wal_damage: WalDamage::Off,
        }
    }
}

/// Collects trace lines when asked (replaying one seed), else nothing.
#[derive(Default)]
pub struct TraceSink {
    pub lines: Option<Vec<String>>,
}

impl TraceSink {
    pub fn enabled(&self) -> bool {
        self.lines.is_some()
    }
    pub fn push(&mut self, line: String) {
        if let Some(l) = &mut self.lines {
            l.push(line);
        }
    }
}

#[derive(Debug)]
pub struct SeedResult {
    pub seed: u64,
    pub trace_hash: u64,
    pub violation: Option<Violation>,
    pub events: u64,
    pub ops: usize,
    pub ops_ok: usize,
    pub ops_info: usize,
    pub elections: u64,
    pub faults: u64,
    pub clock_assumption_violated: bool,
    /// Crashes that damaged a synced WAL record (`SimOptions::wal_damage`).
    pub wal_damages: u64,
    /// Repairing nodes that caught up (`Note::RepairCompleted`).
    pub repairs_completed: u64,
    pub trace: Vec<String>,
}

/// Runs one seed. With `trace`, keeps every event line.
pub fn run_seed(seed: u64, opts: &SimOptions, trace: bool) -> SeedResult {
    let sink = TraceSink {
        lines: if trace { Some(Vec::new()) } else { None },
    };
    let mut world = world::World::new(seed, opts.clone(), sink);
    world.clock_assumption_violated = world.plan.skewed_node.is_some();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
    let mut violation = match run {
        Ok(v) => v,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Some(Violation {
                property: "assertion",
                detail: format!("a node stopped on an assertion: {msg}"),
            })
        }
    };
    if violation.is_none() && opts.check_history {
        violation = history::check(&world.ops, world.clock_assumption_violated);
    }
    let ops_ok = world
        .ops
        .iter()
        .filter(|o| matches!(o.outcome, workload::Outcome::Ok { .. }))
        .count();
    let ops_info = world
        .ops
        .iter()
        .filter(|o| matches!(o.outcome, workload::Outcome::Info))
        .count();
    SeedResult {
        seed,
        trace_hash: world.trace_hash,
        violation,
        events: world.events,
        ops: world.ops.len(),
        ops_ok,
        ops_info,
        elections: world.elections,
        faults: world.faults_injected,
        clock_assumption_violated: world.clock_assumption_violated,
        wal_damages: world.wal_damages,
        repairs_completed: world.repairs_completed,
        trace: world.take_trace(),
    }
}
