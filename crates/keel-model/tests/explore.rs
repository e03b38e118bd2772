//! The checker over the unmodified core finds nothing within a small bound and reaches its
//! "sometimes" properties; with a mutant switched on it finds a violation (feature `mutants`).

use keel_model::{explore, Bounds, Outcome, REACHED_COMMIT, REACHED_LEADER};

fn run(b: &Bounds) -> (Outcome, keel_model::Stats) {
    explore(b, &mut |_| {}).expect("valid bounds")
}

#[test]
fn unmodified_core_is_clean_and_reaches_leader_and_commit() {
    let b = Bounds {
        depth_max: 8,
        crashes: 0,
        reads: 1,
        proposals: 1,
        time_limit_s: 60,
        ..Bounds::default()
    };
    let (outcome, stats) = run(&b);
    assert!(matches!(outcome, Outcome::Clean), "{outcome:?}");
    assert!(
        stats.states_unique > 1000,
        "explored only {} states",
        stats.states_unique
    );
    assert_eq!(
        stats.reached & REACHED_LEADER,
        REACHED_LEADER,
        "no leader elected"
    );
    assert_eq!(
        stats.reached & REACHED_COMMIT,
        REACHED_COMMIT,
        "no value committed"
    );
    assert_eq!(stats.depth_max, 8);
}

#[test]
fn unmodified_core_with_crashes_and_async_disks_is_clean() {
    let b = Bounds {
        depth_max: 7,
        crashes: 1,
        proposals: 0,
        reads: 0,
        time_limit_s: 60,
        ..Bounds::default()
    };
    let (outcome, stats) = run(&b);
    assert!(matches!(outcome, Outcome::Clean), "{outcome:?}");
    assert_eq!(
        stats.reached & REACHED_LEADER,
        REACHED_LEADER,
        "no leader elected"
    );
}

#[test]
fn invalid_bounds_are_refused() {
    let b = Bounds {
        nodes: 9,
        ..Bounds::default()
    };
    assert!(explore(&b, &mut |_| {}).is_err());
    let b = Bounds {
        conf_changes: 3,
        ..Bounds::default()
    };
    assert!(explore(&b, &mut |_| {}).is_err());
}

#[cfg(feature = "mutants")]
mod mutants {
    use super::*;
    use keel_model::Mutant;

    /// Each mutant's own default bounds, capped so the whole file stays fast.
    fn caught(m: Mutant, depth_max: usize) -> (String, usize) {
        let b = Bounds {
            depth_max,
            time_limit_s: 40,
            ..Bounds::for_mutant(m)
        };
        match run(&b) {
            (
                Outcome::Violation {
                    property, trace, ..
                },
                _,
            ) => (property, trace.len()),
            (Outcome::Clean, stats) => panic!("{} not caught: {stats:?}", m.name()),
        }
    }

    #[test]
    fn vote_before_persist() {
        assert_eq!(
            caught(Mutant::VoteBeforePersist, 6).0,
            "vote-persisted-before-reply"
        );
    }

    #[test]
    fn vote_without_log_check() {
        assert_eq!(
            caught(Mutant::VoteWithoutLogCheck, 10).0,
            "leader-completeness"
        );
    }

    #[test]
    fn skip_joint_consensus() {
        assert_eq!(caught(Mutant::SkipJointConsensus, 8).0, "joint-consensus");
    }
}
