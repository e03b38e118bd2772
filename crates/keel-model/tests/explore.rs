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
    assert!(b.dfs, "the default clean run searches depth-first");
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

/// Depth-first search explores what breadth-first search explores. (Not exactly the same
/// count: the fingerprint leaves out time-derived deadlines, so which of two states with one
/// fingerprint is kept, and expanded, depends on the search order.)
#[test]
fn depth_first_and_breadth_first_explore_the_same_states() {
    let dfs = Bounds {
        depth_max: 6,
        dfs: true,
        ..Bounds::default()
    };
    let bfs = Bounds {
        dfs: false,
        ..dfs.clone()
    };
    let (o1, s1) = run(&dfs);
    let (o2, s2) = run(&bfs);
    assert!(matches!(o1, Outcome::Clean) && matches!(o2, Outcome::Clean));
    assert!(s2.states_unique > 1000, "{s2:?}");
    let diff = s1.states_unique.abs_diff(s2.states_unique);
    assert!(diff * 100 <= s2.states_unique, "dfs {s1:?} bfs {s2:?}");
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

/// Symmetry reduction merges states that differ only by a renaming of node ids: far fewer
/// states, the same verdict and the same "sometimes" properties.
#[test]
fn symmetry_reduction_keeps_the_verdict_with_fewer_states() {
    let plain = Bounds {
        depth_max: 7,
        time_limit_s: 120,
        ..Bounds::default()
    };
    let sym = Bounds {
        symmetry: true,
        ..plain.clone()
    };
    let (o1, s1) = run(&plain);
    let (o2, s2) = run(&sym);
    assert!(matches!(o1, Outcome::Clean) && matches!(o2, Outcome::Clean));
    assert_eq!(s1.reached, s2.reached, "plain {s1:?} symmetric {s2:?}");
    assert!(
        s2.states_unique * 2 < s1.states_unique,
        "plain {s1:?} symmetric {s2:?}"
    );
    assert!(s2.states_unique > 100, "{s2:?}");
}

/// Monotonic-clock drift (within the nodes' configured bound) is explored, and breaks nothing.
#[test]
fn clock_drift_within_the_bound_is_explored_and_clean() {
    let still = Bounds {
        depth_max: 6,
        time_limit_s: 120,
        ..Bounds::default()
    };
    let drifting = Bounds {
        clock_drifts: 1,
        ..still.clone()
    };
    let (o1, s1) = run(&still);
    let (o2, s2) = run(&drifting);
    assert!(matches!(o1, Outcome::Clean) && matches!(o2, Outcome::Clean));
    assert!(
        s2.states_unique > s1.states_unique,
        "drift added no states: {s1:?} {s2:?}"
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
    let b = Bounds {
        conf_changes: 1,
        symmetry: true,
        ..Bounds::default()
    };
    assert!(
        explore(&b, &mut |_| {}).is_err(),
        "the spare node breaks symmetry"
    );
}

#[test]
fn every_prefix_is_a_clean_real_execution() {
    for p in keel_model::PREFIXES {
        let b = Bounds {
            depth_max: 2,
            time_limit_s: 30,
            ..Bounds::default()
        }
        .with_prefix(p.name)
        .expect("named prefix");
        let (outcome, stats) = run(&b);
        assert!(matches!(outcome, Outcome::Clean), "{}: {outcome:?}", p.name);
        assert_eq!(stats.script_actions, p.script.len(), "{}", p.name);
        assert!(stats.states_unique > 1, "{}: nothing explored", p.name);
        assert_eq!(stats.reached & REACHED_LEADER, REACHED_LEADER, "{}", p.name);
    }
}

#[test]
fn a_script_that_does_not_fit_the_state_is_refused() {
    let b = Bounds {
        script: vec!["tick 1".into(), "deliver 3->1 AppResp t7".into()],
        ..Bounds::default()
    };
    let err = explore(&b, &mut |_| {}).expect_err("no such message");
    assert!(err.contains("script line 2"), "{err}");
    let b = Bounds {
        script: vec!["fly 1".into()],
        ..Bounds::default()
    };
    assert!(explore(&b, &mut |_| {}).is_err());
}

#[cfg(feature = "mutants")]
mod mutants {
    use super::*;
    use keel_model::{script_lines, Mutant};

    /// The mutant's default bounds (what `keel model --mutant NAME` runs).
    fn fast_bounds(m: Mutant, depth_max: usize) -> Bounds {
        // No tight time limit: on a loaded machine it would make the result depend on load.
        let b = Bounds {
            depth_max,
            time_limit_s: 600,
            ..Bounds::for_mutant(m)
        };
        assert_eq!(
            b.script.is_empty(),
            Bounds::prefix_for_mutant(m).is_none(),
            "a mutant's default bounds start from its prefix"
        );
        b
    }

    /// The violated property, the trace (as script lines) and the explored depth.
    fn caught(m: Mutant, depth_max: usize) -> (String, Vec<String>, usize) {
        match run(&fast_bounds(m, depth_max)) {
            (
                Outcome::Violation {
                    property, trace, ..
                },
                stats,
            ) => (
                property,
                trace.iter().map(|(a, _)| a.to_string()).collect(),
                stats.depth_max,
            ),
            (Outcome::Clean, stats) => panic!("{} not caught: {stats:?}", m.name()),
        }
    }

    /// Teeth the other way round: with the core unmodified, the same bounds and start explore
    /// as deep as the mutant's counterexample and find nothing.
    fn clean_without(m: Mutant, depth_max: usize) {
        let b = Bounds {
            mutant: None,
            dfs: true,
            ..fast_bounds(m, depth_max)
        };
        let (outcome, stats) = run(&b);
        assert!(matches!(outcome, Outcome::Clean), "{outcome:?}");
        assert_eq!(stats.depth_max, depth_max, "{stats:?}");
        assert!(stats.truncated == Some("depth") || stats.truncated.is_none());
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

    #[test]
    fn commit_previous_term() {
        let (property, _, depth) = caught(Mutant::CommitPreviousTerm, 14);
        assert_eq!(property, "commit-current-term");
        clean_without(Mutant::CommitPreviousTerm, depth);
    }

    #[test]
    fn append_without_prev_check() {
        let (property, _, depth) = caught(Mutant::AppendWithoutPrevCheck, 14);
        assert_eq!(property, "log-matching");
        clean_without(Mutant::AppendWithoutPrevCheck, depth);
    }

    #[test]
    fn lease_without_wait() {
        let (property, _, depth) = caught(Mutant::LeaseWithoutWait, 14);
        assert_eq!(property, "read-freshness");
        clean_without(Mutant::LeaseWithoutWait, depth);
    }

    #[test]
    fn read_index_without_quorum() {
        let (property, _, depth) = caught(Mutant::ReadIndexWithoutQuorum, 14);
        assert_eq!(property, "read-freshness");
        clean_without(Mutant::ReadIndexWithoutQuorum, depth);
    }

    /// The commands of a scenario file: its leading comment lines and every line followed by
    /// `----` (expected output, which the keel-core harness fills in, is left out).
    fn scenario_commands(text: &str) -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out: Vec<String> = lines
            .iter()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.to_string())
            .collect();
        for w in lines.windows(2) {
            if w[1] == "----" {
                out.push(w[0].to_string());
            }
        }
        out
    }

    /// Every mutant's counterexample at its default bounds, written as a keel-core scenario
    /// test, is the one checked in under crates/keel-core/tests/model-replays/ (which keel-core's
    /// `model_replays` test replays and requires to reach the same violation). Regenerate with
    /// `KEEL_MODEL_REPLAYS_UPDATE=1`, then `UPDATE_GOLDEN=1 cargo test -p keel-core --features
    /// mutants --test scenario model_replays`.
    #[test]
    fn counterexamples_match_the_checked_in_scenario_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../keel-core/tests/model-replays");
        let update = std::env::var("KEEL_MODEL_REPLAYS_UPDATE").is_ok_and(|v| v == "1");
        for m in Mutant::ALL {
            let b = Bounds::for_mutant(m);
            let (outcome, _) = run(&b);
            let Outcome::Violation {
                property,
                detail,
                trace,
            } = outcome
            else {
                panic!("{} not caught at its default bounds", m.name());
            };
            let actions: Vec<_> = trace.into_iter().map(|(a, _)| a).collect();
            let text =
                keel_model::scenario_text(&b, &actions, &property, &detail).expect("scenario text");
            assert!(
                text.contains(&format!("# expect: VIOLATION {property}")),
                "{text}"
            );
            let path = dir.join(format!("{}.txt", m.name()));
            if update {
                std::fs::write(&path, &text).expect("write replay");
                continue;
            }
            let checked_in = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                scenario_commands(&checked_in),
                scenario_commands(&text),
                "{} differs from what the model finds now (KEEL_MODEL_REPLAYS_UPDATE=1 rewrites it)",
                path.display()
            );
        }
    }

    /// With symmetry reduction every mutant the reduction applies to is still caught, with a
    /// counterexample as short as without it (breadth-first: shortest either way).
    #[test]
    fn symmetry_reduction_still_catches_the_mutants() {
        for m in [
            Mutant::VoteWithoutLogCheck,
            Mutant::ReadIndexWithoutQuorum,
            Mutant::VoteBeforePersist,
        ] {
            let plain = Bounds::for_mutant(m);
            let sym = Bounds {
                symmetry: true,
                ..plain.clone()
            };
            let (Outcome::Violation { trace: t1, .. }, _) = run(&plain) else {
                panic!("{} not caught", m.name());
            };
            let (Outcome::Violation { trace: t2, .. }, s2) = run(&sym) else {
                panic!("{} not caught with symmetry reduction", m.name());
            };
            assert_eq!(t1.len(), t2.len(), "{}: {s2:?}", m.name());
        }
    }

    /// A printed counterexample is a script: replayed from boot with no search, it reproduces
    /// the violation (with the mutant) and is clean with the core unmodified.
    #[test]
    fn a_printed_trace_replays() {
        let (property, trace, _) = caught(Mutant::AppendWithoutPrevCheck, 14);
        let text = trace.join("\n");
        let replay = Bounds {
            script: script_lines(&text).expect("script"),
            script_name: "trace".into(),
            depth_max: 0,
            ..Bounds::for_mutant(Mutant::AppendWithoutPrevCheck)
        };
        match run(&replay) {
            (Outcome::Violation { property: p, .. }, stats) => {
                assert_eq!(p, property);
                assert_eq!(stats.script_actions, trace.len());
            }
            (Outcome::Clean, _) => panic!("the replayed trace found nothing"),
        }
        let clean = Bounds {
            mutant: None,
            ..replay
        };
        assert!(matches!(run(&clean).0, Outcome::Clean));
    }
}
