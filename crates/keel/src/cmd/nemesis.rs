//! `keel nemesis`: a Jepsen-style fault campaign against real `keel serve` processes (this
//! binary by default), every peer link through Keel's fault proxy. See docs/nemesis.md.
//!
//! The last stdout line is `NEMESIS ops=<n> ok=<n> fail=<n> info=<n> faults=<n> verdict=...`.
//! Exit codes: 0 valid, 1 a violation was found, 2 harness error or usage (or an `unknown`
//! verdict: the checker gave up).

use std::path::PathBuf;

use keel_nemesis::{parse_duration_ms, run_blocking, CampaignConfig, FaultKind, WorkloadMix};

use super::conn::EXIT_USAGE;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long faults and workload run: `60s`, `30m`, `90` (seconds).
    #[arg(long, default_value = "60s")]
    pub time: String,
    /// Cluster size (3 or 5 are the usual choices; 1..=7).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Fault mix, comma-separated: partition, isolate-leader, asymmetric, bridge, flapping,
    /// delay, reset, duplicate, kill, pause, transfer, clock, clock-beyond, clock-jump,
    /// clock-drift, slow-disk, noisy-neighbour, rolling-restart, membership, upgrade (needs
    /// --upgrade-to); or `partitions`, `all` (with upgrade only when --upgrade-to is given),
    /// `none`.
    #[arg(long, default_value = "partition,isolate-leader,kill,pause,transfer")]
    pub faults: String,
    /// Fixes the fault schedule and the workload's choices (not the system's timing).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory [default: keel-nemesis/<seed>-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `keel` binary whose `serve` is tested [default: this executable].
    #[arg(long)]
    pub keel_bin: Option<PathBuf>,
    /// Pass `--mutant NAME` to every server (needs a build with the `mutants` feature).
    #[arg(long)]
    pub mutant: Option<String>,
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Deadline of one client operation, retries included.
    #[arg(long, default_value_t = 2_000)]
    pub op_timeout_ms: u64,
    /// After the heal, a write must be acknowledged within this bound.
    #[arg(long, default_value_t = 30_000)]
    pub recovery_timeout_ms: u64,
    /// Register workers (read/write/cas through the leader).
    #[arg(long, default_value_t = 4)]
    pub register_workers: usize,
    /// Linearizable-read workers, each starting at a different node.
    #[arg(long, default_value_t = 3)]
    pub reader_workers: usize,
    /// Hot register keys (chosen with a skew).
    #[arg(long, default_value_t = 3)]
    pub hot_keys: usize,
    /// Pause between one worker's operations (long campaigns: 20 or more keeps the history
    /// within the recorder's bound of 2M events).
    #[arg(long, default_value_t = 5)]
    pub think_ms: u64,
    /// Workloads, comma-separated: register (read/write/cas + linearizable readers), set, dup,
    /// bank (multi-key transfers; the total never changes), stale-reads (bounded/any reads
    /// checked against their declared staleness); or `all`.
    #[arg(long, default_value = "all")]
    pub workload: String,
    /// Accounts of the bank workload (2..=64).
    #[arg(long, default_value_t = 5)]
    pub bank_accounts: usize,
    /// The servers' configured clock uncertainty (written to each node's config): `clock`
    /// skews stay within it, `clock-beyond` goes past it.
    #[arg(long, default_value_t = keel_nemesis::cluster::CLOCK_UNCERTAINTY_MS_DEFAULT)]
    pub clock_uncertainty_ms: u64,
    /// The next release's build (e.g. target/release/keel-next from scripts/build-next): the
    /// `upgrade` fault rolls nodes to it one by one, sometimes back, then finalizes the
    /// upgrade and checks that this build then refuses the upgraded data.
    #[arg(long, value_name = "BIN")]
    pub upgrade_to: Option<PathBuf>,
}

pub fn run(args: Args) -> i32 {
    let time_ms = match parse_duration_ms(&args.time) {
        Ok(ms) if ms > 0 => ms,
        Ok(_) => {
            eprintln!("keel nemesis: --time must be positive");
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("keel nemesis: {e:#}");
            return EXIT_USAGE;
        }
    };
    if let Some(bin) = &args.upgrade_to {
        if !bin.is_file() {
            eprintln!(
                "keel nemesis: --upgrade-to {}: no such file (build it with scripts/build-next)",
                bin.display()
            );
            return EXIT_USAGE;
        }
    }
    let faults = match FaultKind::parse_mix_with(&args.faults, args.upgrade_to.is_some()) {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("keel nemesis: {e:#}");
            return EXIT_USAGE;
        }
    };
    let workloads = match WorkloadMix::parse(&args.workload) {
        Ok(mix) => mix,
        Err(e) => {
            eprintln!("keel nemesis: --workload: {e}");
            return EXIT_USAGE;
        }
    };
    if !(2..=keel_nemesis::bank::ACCOUNTS_MAX).contains(&args.bank_accounts) {
        eprintln!(
            "keel nemesis: --bank-accounts must be 2..={}",
            keel_nemesis::bank::ACCOUNTS_MAX
        );
        return EXIT_USAGE;
    }
    if args.clock_uncertainty_ms == 0 || args.clock_uncertainty_ms > 60_000 {
        eprintln!("keel nemesis: --clock-uncertainty-ms must be 1..=60000");
        return EXIT_USAGE;
    }
    if args.register_workers + args.reader_workers > keel_nemesis::workload::WORKERS_MAX
        || args.hot_keys == 0
        || args.hot_keys > 1_000
    {
        eprintln!(
            "keel nemesis: at most {} workers and 1..=1000 hot keys",
            keel_nemesis::workload::WORKERS_MAX
        );
        return EXIT_USAGE;
    }
    let keel_bin = match args.keel_bin.map(Ok).unwrap_or_else(std::env::current_exe) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("keel nemesis: cannot find this executable: {e}");
            return EXIT_USAGE;
        }
    };
    let out = args.out.unwrap_or_else(|| {
        let unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("keel-nemesis").join(format!("{}-{unix_s}", args.seed))
    });
    let mut config = CampaignConfig::new(keel_bin, out.clone());
    config.nodes = args.nodes;
    config.time_ms = time_ms;
    config.faults = faults;
    config.seed = args.seed;
    config.mutant = args.mutant;
    config.election_timeout_ms = args.election_timeout_ms;
    config.op_timeout_ms = args.op_timeout_ms;
    config.recovery_timeout_ms = args.recovery_timeout_ms;
    config.register_workers = args.register_workers;
    config.reader_workers = args.reader_workers;
    config.hot_keys = args.hot_keys;
    config.think_ms = args.think_ms;
    config.workloads = workloads;
    config.bank_accounts = args.bank_accounts;
    config.clock_uncertainty_ms = args.clock_uncertainty_ms;
    config.upgrade_to = args.upgrade_to;
    println!(
        "keel nemesis: {} nodes, {} ms, faults {}, workload {}, seed {}, output {}",
        config.nodes,
        config.time_ms,
        args.faults,
        args.workload,
        config.seed,
        out.display()
    );
    match run_blocking(config) {
        Ok(summary) => {
            for problem in &summary.problems {
                println!("violation: {problem}");
            }
            for note in &summary.notes {
                println!("note: {note}");
            }
            println!("report: {}", out.join("report.html").display());
            println!("{}", summary.line());
            summary.exit_code()
        }
        Err(e) => {
            eprintln!("keel nemesis: harness error: {e:#}");
            println!("NEMESIS ops=0 ok=0 fail=0 info=0 faults=0 verdict=unknown");
            2
        }
    }
}
