//! `keel sim`: the deterministic simulator over the real consensus core.
//!
//! Exit codes: 0 clean, 1 a violation was found, 2 usage or internal error.

use keel_sim::{run_seed, Mutant, SimOptions};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Seed range `A..B` (B exclusive), e.g. `1..2000`.
    #[arg(long, conflicts_with = "seed")]
    seeds: Option<String>,
    /// Replay one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the full event trace (with --seed).
    #[arg(long)]
    trace: bool,
    /// Initial voters (3..=7).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Length of the safety phase in 10 ms ticks.
    #[arg(long, default_value_t = 2000)]
    ticks: u64,
    /// Run without faults (a baseline).
    #[arg(long)]
    no_faults: bool,
    /// Switch on one known bug (builds with feature `mutants` only).
    #[arg(long)]
    mutant: Option<String>,
    /// List the mutants, one per line.
    #[arg(long)]
    list_mutants: bool,
    /// Skip the end-of-seed linearizability check (the per-event checks still run).
    #[arg(long)]
    no_history_check: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--seeds wants A..B, got {s:?}"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad seed range start {a:?}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad seed range end {b:?}"))?;
    if b <= a {
        return Err(format!("empty seed range {s}"));
    }
    Ok((a, b))
}

pub fn run(args: Args) -> i32 {
    if args.list_mutants {
        if !cfg!(feature = "mutants") {
            eprintln!("keel sim: this build has no mutants (rebuild with --features mutants)");
            return 2;
        }
        for m in Mutant::ALL {
            println!("{}", m.name());
        }
        return 0;
    }
    let mutant = match &args.mutant {
        None => None,
        Some(name) => {
            if !cfg!(feature = "mutants") {
                eprintln!("keel sim: --mutant needs a build with --features mutants");
                return 2;
            }
            match Mutant::from_name(name) {
                Some(m) => Some(m),
                None => {
                    eprintln!("keel sim: unknown mutant {name:?} (see --list-mutants)");
                    return 2;
                }
            }
        }
    };
    if !(3..=7).contains(&args.nodes) {
        eprintln!("keel sim: --nodes must be 3..=7");
        return 2;
    }
    let opts = SimOptions {
        nodes: args.nodes,
        ticks: args.ticks,
        faults: !args.no_faults,
        mutant,
        check_history: !args.no_history_check,
        ..SimOptions::default()
    };
    let (lo, hi) = match (&args.seeds, args.seed) {
        (Some(r), _) => match parse_range(r) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("keel sim: {e}");
                return 2;
            }
        },
        (None, Some(s)) => (s, s + 1),
        (None, None) => (1, 101),
    };
    let trace = args.trace && args.seed.is_some();
    let started = Instant::now();
    let mut combined: u64 = 0xcbf2_9ce4_8422_2325;
    let mut seeds_run = 0u64;
    let (mut ops, mut ok, mut elections, mut faults, mut clock_flagged) =
        (0usize, 0usize, 0u64, 0u64, 0u64);
    let mut code = 0;
    for seed in lo..hi {
        let r = run_seed(seed, &opts, trace);
        seeds_run += 1;
        combined = (combined ^ r.trace_hash).wrapping_mul(0x100_0000_01b3);
        ops += r.ops;
        ok += r.ops_ok;
        elections += r.elections;
        faults += r.faults;
        clock_flagged += r.clock_assumption_violated as u64;
        if trace {
            for line in &r.trace {
                println!("{line}");
            }
        }
        if r.clock_assumption_violated && trace {
            println!("clock assumption violated: lease reads left out of the checks");
        }
        if let Some(v) = &r.violation {
            println!("VIOLATION seed={seed} property={}", v.property);
            println!("  {}", v.detail);
            if !trace {
                // Replay the seed with tracing for the last events (the run is deterministic).
                let replay = run_seed(seed, &opts, true);
                let tail = replay.trace.len().saturating_sub(25);
                println!("  last events:");
                for line in &replay.trace[tail..] {
                    println!("    {line}");
                }
                println!(
                    "  replay: keel sim --seed {seed} --trace{}",
                    args.mutant
                        .as_ref()
                        .map(|m| format!(" --mutant {m}"))
                        .unwrap_or_default()
                );
            }
            code = 1;
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds={seeds_run} ops={ops} ok={ok} elections={elections} faults={faults} clock_flagged={clock_flagged} elapsed={secs:.2}s seeds_per_s={:.1}",
        seeds_run as f64 / secs.max(1e-9)
    );
    println!("trace_hash={combined:016x}");
    code
}
