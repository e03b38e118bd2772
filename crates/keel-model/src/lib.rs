//! keel-model: an explicit-state model checker over the real `keel-core`.
//!
//! Because the core is sans-IO and deterministic, a state is just clones of the real nodes plus
//! what surrounds them (disks, network, clock, budgets); there is no second model to drift from
//! the implementation. The search (`explore.rs`: breadth-first, or depth-first with little
//! memory) enumerates every interleaving of the actions in `action.rs` within the bounds,
//! deduplicating states by fingerprint, and checks the safety properties in `check.rs` after
//! every action. Breadth-first, the first violation found is at minimal depth. It starts at
//! boot, or where a script (`script.rs`: a named prefix, or a printed trace to replay) ends;
//! a violation's path is printed as a script that replays, and can be written as a keel-core
//! scenario test (`replay.rs`).
//!
//! The fingerprint leaves out only the nodes' time-derived deadlines: a timer fires as an
//! action whose time step is long enough for it to have expired whatever its jitter. Optional
//! symmetry reduction (`symmetry`) keys states by the smallest fingerprint over every renaming
//! of node ids (keel_core::rename): with deadlines abstracted, the only thing that tells node ids
//! apart is the per-id seed of the election jitter, which then no longer changes what happens.
//! It is off with membership changes (the model's spare node plays a fixed part).

mod action;
mod check;
mod explore;
mod replay;
mod script;
mod state;

pub use action::{Action, Broken};
pub use explore::{explore, Outcome, Stats};
pub use keel_core::Mutant;
pub use replay::scenario_text;
pub use script::{prefix_named, script_lines, Prefix, PREFIXES};

use keel_core::{Config, NodeId};
use std::collections::BTreeSet;

/// Bits of `State::reached`: the "sometimes" properties.
pub const REACHED_LEADER: u8 = 1;
pub const REACHED_COMMIT: u8 = 2;
pub const REACHED_RECONFIGURED: u8 = 4;

/// The exploration bounds. Every action with a budget is bounded per path.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Initial voters (2..=5); one spare node more exists when `conf_changes > 0`.
    pub nodes: usize,
    pub term_max: u64,
    /// States whose logs grow past this many entries are not expanded.
    pub log_entries_max: u64,
    pub crashes: u32,
    /// Network buffer: messages in flight at most; further sends are lost.
    pub messages: usize,
    pub proposals: u32,
    pub reads: u32,
    /// Membership changes (at most 2).
    pub conf_changes: u32,
    pub transfers: u32,
    pub snapshots: u32,
    pub drops: u32,
    pub duplicates: u32,
    /// Timer firings (`tick`) per path.
    pub ticks: u32,
    /// Wall-clock error changes (`clock`, to either end of the uncertainty) per path.
    pub clock_skews: u32,
    /// Monotonic-clock rate changes (`drift`, to either end of the configured drift bound)
    /// per path.
    pub clock_drifts: u32,
    /// The rate error a `drift` action applies, ppm; None: the nodes' configured bound
    /// (`clock_drift_ppm_max`). A larger value explores clocks that break the assumption, so
    /// lease reads may then be stale (the model must find that: its teeth for drift).
    pub drift_ppm: Option<u64>,
    /// Symmetry reduction: states equal up to a renaming of node ids are one state. Not with
    /// membership changes (the spare node is not interchangeable with the voters).
    pub symmetry: bool,
    /// Disks complete every write at once (no `persist` action). Forced off when crashes > 0.
    pub sync_disk: bool,
    pub depth_max: usize,
    /// Depth-first instead of breadth-first: little memory, counterexamples not shortest.
    pub dfs: bool,
    /// Unique states at most: about 30 bytes each depth-first, a few kilobytes each in the
    /// breadth-first frontier.
    pub states_max: usize,
    pub time_limit_s: u64,
    /// Global clock bound: no tick past this model time.
    pub time_max_ms: u64,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub lease_duration_ms: u64,
    pub append_entries_max: usize,
    pub pre_vote: bool,
    pub mutant: Option<Mutant>,
    /// Actions run from boot before the search (a named prefix, or a trace to replay); the
    /// search starts where they end. Scripted actions cost no budget.
    pub script: Vec<String>,
    /// What the script is, for the output: "boot" when empty.
    pub script_name: String,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            nodes: 3,
            term_max: 3,
            log_entries_max: 4,
            crashes: 0,
            messages: 6,
            proposals: 1,
            reads: 1,
            conf_changes: 0,
            transfers: 0,
            snapshots: 0,
            drops: 0,
            duplicates: 0,
            ticks: 3,
            clock_skews: 0,
            clock_drifts: 0,
            drift_ppm: None,
            symmetry: false,
            sync_disk: true,
            depth_max: 10,
            dfs: true,
            states_max: 50_000_000,
            time_limit_s: 300,
            time_max_ms: 2_000,
            election_timeout_ms: 100,
            heartbeat_interval_ms: 50,
            lease_duration_ms: 300,
            append_entries_max: 4,
            pre_vote: false,
            mutant: None,
            script: Vec::new(),
            script_name: "boot".to_string(),
        }
    }
}

impl Bounds {
    /// Default bounds that catch each mutant in seconds: exhaustive BFS from boot for the three
    /// bugs with short counterexamples; from the prefix `prefix_for_mutant` names (a short real
    /// execution, `script.rs`) for the four whose counterexamples are 12-14 actions from boot.
    /// From boot (`--prefix boot`) those four are caught too, but the BFS frontier then needs
    /// 2-13 GB and 30-200 s. Either way the counterexample is a shortest one from the start.
    pub fn for_mutant(m: Mutant) -> Bounds {
        let base = Bounds {
            mutant: Some(m),
            depth_max: 16,
            dfs: false,
            states_max: 3_000_000,
            reads: 0,
            proposals: 0,
            crashes: 0,
            ..Bounds::default()
        };
        let b = match m {
            Mutant::CommitPreviousTerm => Bounds {
                term_max: 3,
                ticks: 3,
                log_entries_max: 3,
                append_entries_max: 1,
                ..base
            },
            Mutant::VoteBeforePersist => Bounds {
                crashes: 1,
                term_max: 1,
                ticks: 1,
                ..base
            },
            Mutant::VoteWithoutLogCheck => Bounds {
                term_max: 2,
                ticks: 2,
                ..base
            },
            Mutant::AppendWithoutPrevCheck => Bounds {
                term_max: 3,
                ticks: 3,
                log_entries_max: 3,
                messages: 4,
                ..base
            },
            Mutant::SkipJointConsensus => Bounds {
                conf_changes: 1,
                term_max: 1,
                ticks: 1,
                ..base
            },
            Mutant::LeaseWithoutWait => Bounds {
                proposals: 1,
                reads: 1,
                term_max: 2,
                ticks: 2,
                log_entries_max: 3,
                messages: 4,
                ..base
            },
            Mutant::ReadIndexWithoutQuorum => Bounds {
                proposals: 1,
                reads: 1,
                term_max: 2,
                ticks: 2,
                log_entries_max: 3,
                messages: 4,
                lease_duration_ms: 150,
                ..base
            },
        };
        match Bounds::prefix_for_mutant(m) {
            Some(p) => b.with_prefix(p).expect("known prefix"),
            None => b,
        }
    }

    /// A prefix (`PREFIXES`) from which the mutant's counterexample is a few actions away.
    pub fn prefix_for_mutant(m: Mutant) -> Option<&'static str> {
        match m {
            Mutant::CommitPreviousTerm | Mutant::AppendWithoutPrevCheck => Some("lone-entry"),
            Mutant::LeaseWithoutWait | Mutant::ReadIndexWithoutQuorum => Some("leased-leader"),
            Mutant::VoteBeforePersist
            | Mutant::VoteWithoutLogCheck
            | Mutant::SkipJointConsensus => None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(2..=5).contains(&self.nodes) {
            return Err("--nodes must be 2..=5".into());
        }
        if self.conf_changes > 2 {
            return Err("--conf-changes must be at most 2".into());
        }
        if self.symmetry && self.conf_changes > 0 {
            return Err("--symmetry cannot be used with --conf-changes (the spare node is not interchangeable)".into());
        }
        if self.messages == 0 || self.messages > 64 {
            return Err("--messages must be 1..=64".into());
        }
        if (self.depth_max == 0 && self.script.is_empty()) || self.states_max == 0 {
            return Err("--depth (without a script) and --states-max must be positive".into());
        }
        if self.mutant.is_some() && !cfg!(feature = "mutants") {
            return Err("mutants need a build with feature `mutants`".into());
        }
        self.node_config(1).validate()
    }

    /// Whether writes stay pending until a `persist` action (always when crashes are explored:
    /// only then can the order of persisting and sending be observed).
    pub fn async_disk(&self) -> bool {
        !self.sync_disk || self.crashes > 0
    }

    /// Starts the search from the named prefix (see `PREFIXES`).
    pub fn with_prefix(mut self, name: &str) -> Result<Bounds, String> {
        let p = prefix_named(name).ok_or_else(|| format!("unknown prefix {name:?}"))?;
        self.script = p.script.iter().map(|l| l.to_string()).collect();
        self.script_name = p.name.to_string();
        Ok(self)
    }

    pub fn initial_voters(&self) -> BTreeSet<NodeId> {
        (1..=self.nodes as NodeId).collect()
    }

    /// Node ids in the model: the voters, plus one spare when membership changes are explored.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let n = self.nodes + usize::from(self.conf_changes > 0);
        (1..=n as NodeId).collect()
    }

    /// Small, fixed timing so that timers are few and leases are short; deterministic seeds.
    pub fn node_config(&self, id: NodeId) -> Config {
        let mut c = Config::new(id);
        c.random_seed = 0x6b65_656c ^ id;
        c.election_timeout_ms = self.election_timeout_ms;
        c.heartbeat_interval_ms = self.heartbeat_interval_ms;
        c.lease_duration_ms = self.lease_duration_ms;
        c.lease_renew_interval_ms = self.lease_duration_ms / 2;
        c.clock_uncertainty_ms = 5;
        c.clock_drift_ppm_max = 1000;
        c.pre_vote = self.pre_vote;
        c.append_entries_max = self.append_entries_max;
        c.inflight_messages_max = 4;
        c.snapshot_chunk_bytes_max = 1024;
        c.compaction_retain_entries = 0;
        c.mutant = self.mutant;
        c
    }

    /// Which "sometimes" properties these bounds must reach.
    pub fn sometimes_required(&self) -> u8 {
        let mut r = REACHED_LEADER;
        if self.proposals > 0 {
            r |= REACHED_COMMIT;
        }
        if self.conf_changes > 0 {
            r |= REACHED_RECONFIGURED;
        }
        r
    }
}

pub fn sometimes_names(bits: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if bits & REACHED_LEADER != 0 {
        v.push("leader-elected");
    }
    if bits & REACHED_COMMIT != 0 {
        v.push("value-committed");
    }
    if bits & REACHED_RECONFIGURED != 0 {
        v.push("reconfiguration-completed");
    }
    v
}
