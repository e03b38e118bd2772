//! `keel model`: exhaustive model checking of the real consensus core within bounds
//! (depth-first by default, breadth-first for the per-mutant runs; see keel-model).
//!
//! Exit codes: 0 clean (and every required "sometimes" property reached, unless the run only
//! replayed a script with --depth 0), 1 a violation was found or a required "sometimes"
//! property was never reached, 2 usage or internal error.

use keel_model::{explore, sometimes_names, Bounds, Mutant, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// Initial voters (2..=5).
    #[arg(long)]
    nodes: Option<usize>,
    /// Highest term explored.
    #[arg(long)]
    max_term: Option<u64>,
    /// Longest log (entries) explored.
    #[arg(long)]
    max_log: Option<u64>,
    /// Crash-restarts per path.
    #[arg(long)]
    crashes: Option<u32>,
    /// Network buffer: messages in flight at most.
    #[arg(long)]
    messages: Option<usize>,
    /// Client proposals per path.
    #[arg(long)]
    proposals: Option<u32>,
    /// Client reads (ReadIndex or lease) per path.
    #[arg(long)]
    reads: Option<u32>,
    /// Membership changes per path (0..=2).
    #[arg(long)]
    conf_changes: Option<u32>,
    /// Leadership transfers per path.
    #[arg(long)]
    transfers: Option<u32>,
    /// Snapshots (with compaction) per path.
    #[arg(long)]
    snapshots: Option<u32>,
    /// Message drops per path.
    #[arg(long)]
    drops: Option<u32>,
    /// Message duplications per path.
    #[arg(long)]
    duplicates: Option<u32>,
    /// Timer firings per path.
    #[arg(long)]
    ticks: Option<u32>,
    /// Wall-clock error changes per path (a node's reading moves to either end of the
    /// configured uncertainty).
    #[arg(long)]
    clock_skews: Option<u32>,
    /// Monotonic-clock rate changes per path (a node's clock runs fast or slow by the
    /// configured drift bound from then on).
    #[arg(long)]
    clock_drifts: Option<u32>,
    /// The rate error of a drift action in ppm (default: the nodes' configured bound; larger
    /// values break the clock assumption on purpose).
    #[arg(long)]
    drift_ppm: Option<u64>,
    /// Symmetry reduction: states equal up to a renaming of node ids count once (not with
    /// --conf-changes).
    #[arg(long)]
    symmetry: bool,
    /// Disks hold writes until a `persist` action even without crashes.
    #[arg(long)]
    async_disk: bool,
    /// Explore pre-vote too (longer elections, so deeper paths).
    #[arg(long)]
    pre_vote: bool,
    /// Maximum path length (actions).
    #[arg(long)]
    depth: Option<usize>,
    /// Search depth-first (a few bytes per state instead of kilobytes; the counterexample is
    /// then a real path but not necessarily a shortest one).
    #[arg(long, conflicts_with = "bfs")]
    dfs: bool,
    /// Search breadth-first (a shortest counterexample; a frontier of kilobytes per state).
    #[arg(long)]
    bfs: bool,
    /// Stop after this many unique states.
    #[arg(long)]
    states_max: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    time_limit: Option<u64>,
    /// Switch on one known bug (builds with feature `mutants` only); its own default bounds.
    #[arg(long)]
    mutant: Option<String>,
    /// List the mutants the model covers, one per line.
    #[arg(long)]
    list_mutants: bool,
    /// Start the search from a named situation reached by a short real execution ("boot" for
    /// none); see --list-prefixes. A mutant's default bounds name its own.
    #[arg(long)]
    prefix: Option<String>,
    /// List the named prefixes with what each sets up.
    #[arg(long)]
    list_prefixes: bool,
    /// Run the actions in this file first (e.g. a printed trace; with --depth 0 it is only
    /// replayed and checked), then search from where they end. Replaces any prefix.
    #[arg(long)]
    script: Option<std::path::PathBuf>,
    /// On a violation, also write the counterexample as a keel-core scenario test to this file
    /// (run it with `UPDATE_GOLDEN=1 cargo test -p keel-core --features mutants --test scenario`
    /// after placing it in crates/keel-core/tests/model-replays/).
    #[arg(long)]
    scenario_out: Option<std::path::PathBuf>,
}

/// Script files are read whole; this bounds them.
const SCRIPT_BYTES_MAX: u64 = 4 << 20;

pub fn run(args: Args) -> i32 {
    if args.list_mutants {
        for m in Mutant::ALL {
            println!("{}", m.name());
        }
        return 0;
    }
    if args.list_prefixes {
        for p in keel_model::PREFIXES {
            println!("{}: {} ({} actions)", p.name, p.about, p.script.len());
        }
        return 0;
    }
    let mut b = match &args.mutant {
        None => Bounds::default(),
        Some(name) => {
            if !cfg!(feature = "mutants") {
                eprintln!("keel model: --mutant needs a build with --features mutants");
                return 2;
            }
            match Mutant::from_name(name) {
                Some(m) => Bounds::for_mutant(m),
                None => {
                    eprintln!("keel model: unknown mutant {name:?} (see --list-mutants)");
                    return 2;
                }
            }
        }
    };
    macro_rules! set {
        ($($arg:ident => $field:ident),*) => { $(if let Some(v) = args.$arg { b.$field = v; })* };
    }
    set!(nodes => nodes, max_term => term_max, max_log => log_entries_max, crashes => crashes,
        messages => messages, proposals => proposals, reads => reads, conf_changes => conf_changes,
        transfers => transfers, snapshots => snapshots, drops => drops, duplicates => duplicates, ticks => ticks, clock_skews => clock_skews, clock_drifts => clock_drifts,
        depth => depth_max, states_max => states_max, time_limit => time_limit_s);
    b.pre_vote |= args.pre_vote;
    b.symmetry |= args.symmetry;
    if args.drift_ppm.is_some() {
        b.drift_ppm = args.drift_ppm;
    }
    b.dfs = (b.dfs || args.dfs) && !args.bfs;
    if let Some(name) = &args.prefix {
        if name == "boot" {
            b.script.clear();
            b.script_name = "boot".into();
        } else {
            b = match b.with_prefix(name) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("keel model: {e} (see --list-prefixes)");
                    return 2;
                }
            };
        }
    }
    if let Some(path) = &args.script {
        match read_script(path) {
            Ok(lines) => {
                b.script = lines;
                b.script_name = path.display().to_string();
            }
            Err(e) => {
                eprintln!("keel model: {e}");
                return 2;
            }
        }
    }
    b.sync_disk &= !args.async_disk;
    if let Err(e) = b.validate() {
        eprintln!("keel model: {e}");
        return 2;
    }
    println!(
        "bounds: nodes={} max-term={} max-log={} crashes={} messages={} proposals={} reads={} conf-changes={} transfers={} snapshots={} drops={} duplicates={} ticks={} clock-skews={} clock-drifts={} symmetry={} async-disk={} pre-vote={} depth={} search={} mutant={} start={} ({} scripted actions)",
        b.nodes, b.term_max, b.log_entries_max, b.crashes, b.messages, b.proposals, b.reads, b.conf_changes,
        b.transfers, b.snapshots, b.drops, b.duplicates, b.ticks, b.clock_skews, b.clock_drifts, b.symmetry, b.async_disk(), b.pre_vote, b.depth_max, if b.dfs { "dfs" } else { "bfs" },
        b.mutant.map_or("none", |m| m.name()), b.script_name, b.script.len()
    );
    let mut progress = |s: &keel_model::Stats| {
        eprintln!(
            "  ... {} explored, {} unique, depth {}, {:.0} s",
            s.states_explored, s.states_unique, s.depth_max, s.elapsed_s
        );
    };
    let (outcome, stats) = match explore(&b, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keel model: {e}");
            return 2;
        }
    };
    println!("states explored: {}", stats.states_explored);
    println!("unique states: {}", stats.states_unique);
    println!(
        "max depth: {} (after {} scripted actions)",
        stats.depth_max, stats.script_actions
    );
    println!(
        "states/s: {:.0}",
        stats.states_explored as f64 / stats.elapsed_s.max(1e-3)
    );
    println!("elapsed: {:.2} s", stats.elapsed_s);
    if let Some(why) = stats.truncated {
        println!("bound reached: {why}");
    }
    println!(
        "sometimes reached: {}",
        sometimes_names(stats.reached).join(" ")
    );
    let code = match outcome {
        Outcome::Violation {
            property,
            detail,
            trace,
        } => {
            println!("VIOLATION property={property}");
            println!("detail: {detail}");
            println!(
                "trace ({} actions: {} scripted, {} explored):",
                trace.len(),
                stats.script_actions.min(trace.len()),
                trace.len().saturating_sub(stats.script_actions)
            );
            for (i, (a, lines)) in trace.iter().enumerate() {
                println!("  {:>3}. {a}", i + 1);
                for l in lines {
                    println!("         {l}");
                }
            }
            println!("replay (save the lines below, then: keel model --mutant NAME --script FILE --depth 0):");
            println!(
                "  model nodes={} max-term={} mutant={}",
                b.nodes,
                b.term_max,
                b.mutant.map_or("none", |m| m.name())
            );
            for (a, _) in &trace {
                println!("  {a}");
            }
            if let Some(path) = &args.scenario_out {
                let actions: Vec<keel_model::Action> =
                    trace.iter().map(|(a, _)| a.clone()).collect();
                let written = keel_model::scenario_text(&b, &actions, &property, &detail)
                    .and_then(|text| std::fs::write(path, text).map_err(|e| e.to_string()));
                match written {
                    Ok(()) => println!("scenario test written to {}", path.display()),
                    Err(e) => {
                        eprintln!("keel model: cannot write {}: {e}", path.display());
                        return 2;
                    }
                }
            }
            1
        }
        Outcome::Clean if b.depth_max == 0 => 0, // a pure replay: nothing was explored
        Outcome::Clean => {
            let missing = b.sometimes_required() & !stats.reached;
            if missing != 0 {
                println!(
                    "NOT REACHED: {} (the bounds explore too little)",
                    sometimes_names(missing).join(" ")
                );
                1
            } else {
                0
            }
        }
    };
    println!("states={} depth={}", stats.states_unique, stats.depth_max);
    code
}

fn read_script(path: &std::path::Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(SCRIPT_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > SCRIPT_BYTES_MAX {
        return Err(format!(
            "{}: a script holds at most {SCRIPT_BYTES_MAX} bytes",
            path.display()
        ));
    }
    keel_model::script_lines(&text)
}
