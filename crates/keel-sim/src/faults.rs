//! Swarm testing: each seed draws its own fault mix and intensities.

use crate::SimOptions;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const PARTITION: usize = 0;
pub const CRASH: usize = 1;
pub const PAUSE: usize = 2;
pub const CLOG: usize = 3;
pub const CLOCK_JUMP: usize = 4;
pub const SLOW_DISK: usize = 5;
/// A scripted sequence of partitions that follows leadership (Raft paper Figure 8 shapes).
pub const LEADER_SHUFFLE: usize = 6;
pub const FAULT_CLASSES: usize = 7;
pub const FAULT_NAMES: [&str; FAULT_CLASSES] = [
    "partition",
    "crash",
    "pause",
    "clog",
    "clock-jump",
    "slow-disk",
    "leader-shuffle",
];

#[derive(Clone, Debug)]
pub struct FaultPlan {
    pub seed: u64,
    /// Which fault classes this seed uses.
    pub enabled: [bool; FAULT_CLASSES],
    pub nemesis_gap_us: (u64, u64),
    pub net_delay_us: (u64, u64),
    pub loss: f64,
    pub duplicate: f64,
    pub disk_latency_us: (u64, u64),
    pub churn: bool,
    pub transfers: bool,
    pub keys: usize,
    pub think_us_max: u64,
    pub snapshot_every: u64,
    /// This seed runs one node with a wall clock beyond the configured uncertainty (undetectable
    /// steady skew): lease reads are then left out of the checks.
    pub skewed_node: Option<u64>,
    /// Lease reads on (deferred commit, idle renewal) or off (ReadIndex only) for the cluster.
    pub lease_reads: bool,
    /// Probability that a newly elected leader crashes within 80 ms (leader flapping).
    pub leader_flap: f64,
    /// Entries per append message: small values make catching-up followers lag in steps.
    pub append_entries_max: usize,
    /// How many clients only read, under leases where possible.
    pub readers: usize,
    /// A client gives up on an operation after this long (a write is then `info`).
    pub op_timeout_us: u64,
}

impl FaultPlan {
    pub fn draw(rng: &mut ChaCha8Rng, opts: &SimOptions) -> FaultPlan {
        let seed = rng.gen();
        let mut enabled = [false; FAULT_CLASSES];
        for e in enabled.iter_mut() {
            *e = opts.faults && rng.gen_bool(0.6);
        }
        let net_lo = rng.gen_range(200..3_000);
        let net_span = if rng.gen_bool(0.2) { 60_000 } else { 15_000 };
        let net_hi = net_lo + rng.gen_range(500..net_span);
        let disk_lo = rng.gen_range(50..500);
        FaultPlan {
            seed,
            enabled,
            nemesis_gap_us: if rng.gen_bool(0.3) {
                (
                    rng.gen_range(30_000..100_000),
                    rng.gen_range(200_000..600_000),
                )
            } else {
                (
                    rng.gen_range(100_000..500_000),
                    rng.gen_range(800_000..3_000_000),
                )
            },
            net_delay_us: (net_lo, net_hi),
            loss: if opts.faults && rng.gen_bool(0.4) {
                rng.gen_range(0.001..0.08)
            } else {
                0.0
            },
            duplicate: if opts.faults && rng.gen_bool(0.3) {
                rng.gen_range(0.001..0.05)
            } else {
                0.0
            },
            disk_latency_us: (disk_lo, disk_lo + rng.gen_range(100..8_000)),
            churn: opts.faults && rng.gen_bool(0.5),
            transfers: opts.faults && rng.gen_bool(0.4),
            keys: rng.gen_range(1..6),
            think_us_max: rng.gen_range(5_000..60_000),
            snapshot_every: rng.gen_range(20..200),
            lease_reads: rng.gen_bool(0.7),
            readers: rng.gen_range(0..3),
            op_timeout_us: rng.gen_range(120_000..800_000),
            append_entries_max: if rng.gen_bool(0.5) {
                rng.gen_range(1..4)
            } else {
                rng.gen_range(4..32)
            },
            leader_flap: if opts.faults && rng.gen_bool(0.3) {
                rng.gen_range(0.1..0.5)
            } else {
                0.0
            },
            skewed_node: if opts.faults && rng.gen_bool(0.05) {
                Some(rng.gen_range(1..=opts.nodes as u64))
            } else {
                None
            },
        }
    }

    pub fn any_faults(&self) -> bool {
        self.enabled.iter().any(|e| *e)
    }

    pub fn nemesis_gap_us(&self, rng: &mut ChaCha8Rng) -> u64 {
        rng.gen_range(self.nemesis_gap_us.0..=self.nemesis_gap_us.1)
    }

    pub fn pick_fault(&self, rng: &mut ChaCha8Rng) -> usize {
        let choices: Vec<usize> = (0..FAULT_CLASSES).filter(|i| self.enabled[*i]).collect();
        choices[rng.gen_range(0..choices.len())]
    }

    /// Initial clock of a node: within the assumed bounds, except a deliberately skewed node.
    pub fn clock_for(&self, rng: &mut ChaCha8Rng, id: u64) -> (i64, i64) {
        let u_us = crate::CLOCK_UNCERTAINTY_MS as i64 * 1000;
        let drift_max = crate::CLOCK_DRIFT_PPM_MAX as i64 / 4;
        let drift = rng.gen_range(-drift_max..=drift_max);
        // Drift over the run must stay inside the interval too: keep the offset small.
        let offset = rng.gen_range(-u_us / 3..=u_us / 3);
        if self.skewed_node == Some(id) {
            let skew = rng.gen_range(3 * u_us..40 * u_us) * if rng.gen_bool(0.5) { 1 } else { -1 };
            return (skew, drift);
        }
        (offset, drift)
    }
}
