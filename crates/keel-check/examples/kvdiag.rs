//! Checks generated kv histories with appends, per key and whole:
//! `cargo run --release -p keel-check --example kvdiag -- OPS KEYS APPEND_PERCENT SEEDS`.
use keel_check::gen::{self, Flavor, GenConfig};
use keel_check::{check, Model, Options};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    for seed in 0..args[3] {
        let config = GenConfig {
            seed,
            flavor: Flavor::Kv,
            processes: 10,
            ops: args[0] as usize,
            keys: args[1] as u32,
            info_percent: 2,
            append_percent: args[2] as u32,
            ..GenConfig::default()
        };
        let history = gen::linearizable(&config);
        for partition in [true, false] {
            let report = check(
                &history,
                Model::Kv,
                &Options {
                    partition,
                    ..Options::default()
                },
            )
            .expect("ok");
            if report.verdict != keel_check::Verdict::Linearizable {
                println!(
                    "seed {seed} partition {partition}: {}",
                    report.verdict.name()
                );
                for p in &report.partitions {
                    if let Some(e) = &p.explanation {
                        for s in &e.prefix[e.prefix.len().saturating_sub(5)..] {
                            println!("  {} => {}", report.ops[s.op].describe(), s.state_after);
                        }
                        println!("  blocking {}", report.ops[e.blocking_op].describe());
                        for s in &e.stuck {
                            println!("  stuck {}: {}", report.ops[s.op].describe(), s.reason);
                        }
                    }
                }
            }
        }
    }
}
