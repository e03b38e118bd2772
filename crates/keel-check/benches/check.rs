//! Criterion benchmarks: the shared Knossos cas-register suite (all files, parsing excluded)
//! and generated hard cases. Run: `cargo bench -p keel-check --bench check`.

use criterion::{criterion_group, criterion_main, Criterion};
use keel_check::gen::{self, Flavor, GenConfig};
use keel_check::{check, parse_history, History, Model, Options, Value, Verdict};
use std::path::Path;

fn knossos_suite() -> Vec<History> {
    let mut out = Vec::new();
    for folder in ["good", "bad"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/knossos/cas-register")
            .join(folder);
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("data dir")
            .map(|e| e.expect("entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("read");
            out.push(parse_history(&text, None).expect("parse").0);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let suite = knossos_suite();
    let zero = Options {
        initial: Some(Value::Int(0)),
        ..Options::default()
    };
    c.bench_function("knossos cas-register suite (120 files)", |b| {
        b.iter(|| {
            for history in &suite {
                let report = check(history, Model::CasRegister, &zero).expect("check");
                assert!(report.verdict != Verdict::Unknown);
            }
        })
    });
    let cases = [
        (
            "register 16 processes 20% info 400 ops",
            GenConfig {
                seed: 1,
                processes: 16,
                ops: 400,
                info_percent: 20,
                ..GenConfig::default()
            },
            Model::CasRegister,
            true,
        ),
        (
            "register 20 processes 10% info 1000 ops",
            GenConfig {
                seed: 2,
                processes: 20,
                ops: 1000,
                info_percent: 10,
                ..GenConfig::default()
            },
            Model::CasRegister,
            true,
        ),
        (
            "kv 10 clients 1700 ops unpartitioned",
            GenConfig {
                seed: 3,
                flavor: Flavor::Kv,
                processes: 10,
                ops: 1700,
                keys: 8,
                info_percent: 2,
                append_percent: 30,
                ..GenConfig::default()
            },
            Model::Kv,
            false,
        ),
        (
            "kv 10 clients 3000 ops unpartitioned",
            GenConfig {
                seed: 4,
                flavor: Flavor::Kv,
                processes: 10,
                ops: 3000,
                keys: 8,
                info_percent: 2,
                append_percent: 30,
                ..GenConfig::default()
            },
            Model::Kv,
            false,
        ),
    ];
    let mut group = c.benchmark_group("generated");
    group.sample_size(10);
    for (name, config, model, partition) in cases {
        let history = gen::linearizable(&config);
        let options = Options {
            partition,
            ..Options::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                assert_eq!(
                    check(&history, model, &options).expect("check").verdict,
                    Verdict::Linearizable
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
