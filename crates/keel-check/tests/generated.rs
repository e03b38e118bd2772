//! Property tests: generated histories are linearizable; with one injected anomaly they are
//! not. Both directions, many seeds, several models and concurrency levels.

use keel_check::gen::{self, Anomaly, Flavor, GenConfig};
use keel_check::{check, Model, Options, Verdict};
use proptest::prelude::*;

fn model_of(flavor: Flavor) -> Model {
    match flavor {
        Flavor::Register => Model::Register,
        Flavor::CasRegister => Model::CasRegister,
        Flavor::Kv => Model::Kv,
    }
}

fn config() -> impl Strategy<Value = GenConfig> {
    (
        any::<u64>(),
        prop_oneof![
            Just(Flavor::Register),
            Just(Flavor::CasRegister),
            Just(Flavor::Kv)
        ],
        1u32..8,
        10usize..120,
        1u32..4,
        0u32..15,
    )
        .prop_map(
            |(seed, flavor, processes, ops, keys, info_percent)| GenConfig {
                seed,
                flavor,
                processes,
                ops,
                keys,
                info_percent,
                ..GenConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn generated_histories_are_linearizable(config in config(), partition in any::<bool>(), append in 0u32..40) {
        let config = GenConfig { append_percent: append, ..config };
        let history = gen::linearizable(&config);
        let options = Options { partition, ..Options::default() };
        let report = check(&history, model_of(config.flavor), &options).expect("well-formed");
        prop_assert_eq!(report.verdict, Verdict::Linearizable, "{:?}", config);
    }

    #[test]
    fn injected_anomalies_are_not_linearizable(
        config in config(),
        anomaly in prop_oneof![
            Just(Anomaly::StaleRead),
            Just(Anomaly::LostWrite),
            Just(Anomaly::DuplicatedWrite),
            Just(Anomaly::ReorderedWrites)
        ],
        seed in any::<u64>(),
        partition in any::<bool>(),
    ) {
        let history = gen::linearizable(&config);
        // Histories too small for the anomaly are skipped (counted below, not here).
        if let Some(bad) = gen::inject(&history, anomaly, seed) {
            let options = Options { partition, ..Options::default() };
            let report = check(&bad, model_of(config.flavor), &options).expect("well-formed");
            prop_assert_eq!(report.verdict, Verdict::NotLinearizable, "{:?} {:?}", anomaly, config);
            let explained = report.partitions.iter().filter_map(|p| p.explanation.as_ref()).count();
            prop_assert!(explained >= 1);
        }
    }
}

#[test]
fn every_anomaly_is_injectable_and_detected_on_many_seeds() {
    for anomaly in Anomaly::ALL {
        let mut detected = 0;
        for seed in 0..40u64 {
            let config = GenConfig {
                seed,
                processes: 4,
                ops: 60,
                info_percent: 5,
                ..GenConfig::default()
            };
            let history = gen::linearizable(&config);
            assert_eq!(
                check(&history, Model::CasRegister, &Options::default())
                    .expect("ok")
                    .verdict,
                Verdict::Linearizable
            );
            if let Some(bad) = gen::inject(&history, anomaly, seed) {
                assert_eq!(
                    check(&bad, Model::CasRegister, &Options::default())
                        .expect("ok")
                        .verdict,
                    Verdict::NotLinearizable
                );
                detected += 1;
            }
        }
        assert!(
            detected >= 30,
            "{anomaly:?}: injected in only {detected} of 40 histories"
        );
    }
}

#[test]
fn hard_case_many_processes_and_info_ops_is_linearizable() {
    let config = GenConfig {
        seed: 7,
        processes: 16,
        ops: 300,
        info_percent: 20,
        ..GenConfig::default()
    };
    let history = gen::linearizable(&config);
    let report = check(&history, Model::CasRegister, &Options::default()).expect("ok");
    assert_eq!(report.verdict, Verdict::Linearizable);
}

#[test]
fn unpartitioned_kv_agrees_with_partitioned() {
    for seed in 0..10 {
        let config = GenConfig {
            seed,
            flavor: Flavor::Kv,
            processes: 10,
            ops: 300,
            keys: 5,
            info_percent: 2,
            ..GenConfig::default()
        };
        let history = gen::linearizable(&config);
        let bad = gen::inject(&history, Anomaly::StaleRead, seed).expect("room for a stale read");
        for partition in [true, false] {
            let options = Options {
                partition,
                ..Options::default()
            };
            assert_eq!(
                check(&history, Model::Kv, &options).expect("ok").verdict,
                Verdict::Linearizable
            );
            assert_eq!(
                check(&bad, Model::Kv, &options).expect("ok").verdict,
                Verdict::NotLinearizable
            );
        }
    }
}

#[test]
fn parallel_partitions_give_the_same_reports() {
    let config = GenConfig {
        seed: 11,
        flavor: Flavor::Kv,
        processes: 8,
        ops: 400,
        keys: 12,
        ..GenConfig::default()
    };
    let history =
        gen::inject(&gen::linearizable(&config), Anomaly::LostWrite, 3).expect("injectable");
    let one = check(&history, Model::Kv, &Options::default()).expect("ok");
    let four = check(
        &history,
        Model::Kv,
        &Options {
            threads: 4,
            ..Options::default()
        },
    )
    .expect("ok");
    assert_eq!(one.verdict, Verdict::NotLinearizable);
    assert_eq!(one.verdict, four.verdict);
    let summary = |r: &keel_check::Report| {
        r.partitions
            .iter()
            .map(|p| (p.label.clone(), p.verdict, p.steps, p.linearization.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&one), summary(&four));
}
