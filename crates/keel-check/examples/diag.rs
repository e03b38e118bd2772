//! Prints search statistics for a generated history: `cargo run --release -p keel-check
//! --example diag -- PROCESSES OPS INFO_PERCENT [SEED]`.
use keel_check::gen::{self, GenConfig};
use keel_check::{check, pair_operations, Model, OpStatus, Options};
use std::time::Duration;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let config = GenConfig {
        processes: args.first().copied().unwrap_or(16) as u32,
        ops: args.get(1).copied().unwrap_or(400) as usize,
        info_percent: args.get(2).copied().unwrap_or(20) as u32,
        seed: args.get(3).copied().unwrap_or(1),
        ..GenConfig::default()
    };
    let history = gen::linearizable(&config);
    let ops = pair_operations(&history).expect("ok");
    let info = ops.iter().filter(|o| o.status == OpStatus::Info).count();
    let options = Options {
        time_limit: Some(Duration::from_secs(20)),
        ..Options::default()
    };
    let report = check(&history, Model::CasRegister, &options).expect("ok");
    let p = &report.partitions[0];
    println!(
        "{:?}: {} ops, {} info; verdict {}, {} steps, {} cache entries, {:.1} ms",
        config,
        ops.len(),
        info,
        report.verdict.name(),
        p.steps,
        p.cache_entries,
        report.elapsed.as_secs_f64() * 1e3
    );
}
