//! `keel bench`: load generator for Keel (and etcd, when built with feature `etcd`).
//!
//! Exit codes: 0 the run completed (its errors, if any, are in the report), 1 it could not run
//! (no leader, connection refused, a server pid vanished), 2 usage error.

use keel_bench::config::{Config, KeyDistribution, LoadShape, OpMix, ReadLevel, CLIENTS_MAX};
use keel_bench::runner::{self, Report};
use std::sync::Arc;

/// Most client runtime threads.
const THREADS_MAX: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// System under test: `keel`, or `etcd` (builds with feature `etcd` only).
    #[arg(long, default_value = "keel")]
    system: String,
    /// Client endpoints, comma-separated (`host:port`); the leader is found from them.
    #[arg(long, default_value = "127.0.0.1:7379", env = "KEEL_ENDPOINTS")]
    endpoints: String,
    /// `put`, `get`, `cas`, `txn` (compare 1 key, put 2) or `mixed:<get percent>` (e.g. `mixed:90`).
    #[arg(long, default_value = "put")]
    op: String,
    /// Read level of gets: `linearizable`, `bounded:<ms>` or `any` (etcd: linearizable or
    /// serializable for the others).
    #[arg(long, default_value = "linearizable")]
    read: String,
    /// Concurrent clients (closed loop) or connections (open loop), one connection each.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Open loop at this total arrival rate (ops/s); latency counts from each intended start.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Warm-up seconds (operations run, nothing recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Closed loop: stop after this many measured operations (or at the duration).
    #[arg(long)]
    count: Option<u64>,
    /// Size of the key space.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// `uniform`, `zipf` (exponent 0.99) or `zipf:<exponent>`.
    #[arg(long, default_value = "uniform")]
    dist: String,
    /// Server process ids whose CPU and RSS to report, comma-separated.
    #[arg(long, default_value = "")]
    pids: String,
    /// Per-operation timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    op_timeout_ms: u64,
    /// Do not write every key before a read or CAS run.
    #[arg(long)]
    no_prefill: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client runtime threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn config_of(args: &Args) -> anyhow::Result<(Config, Vec<String>, Vec<u32>)> {
    let shape = match args.rate {
        None => LoadShape::Closed,
        Some(rate_per_s) => LoadShape::Open { rate_per_s },
    };
    let config = Config {
        op: OpMix::parse(&args.op)?,
        read_level: ReadLevel::parse(&args.read)?,
        shape,
        clients: args.clients,
        keys: args.keys,
        key_size_bytes: args.key_size,
        value_size_bytes: args.value_size,
        distribution: KeyDistribution::parse(&args.dist)?,
        warmup_s: args.warmup_s,
        duration_s: args.duration_s,
        count_max: args.count,
        op_timeout_ms: args.op_timeout_ms,
        seed: args.seed,
        prefill: !args.no_prefill,
    };
    config.validate()?;
    let endpoints: Vec<String> = args
        .endpoints
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut pids = Vec::new();
    for p in args
        .pids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        pids.push(
            p.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--pids wants numbers, got {p:?}"))?,
        );
    }
    if args.threads == 0 || args.threads > THREADS_MAX {
        anyhow::bail!("--threads must be in 1..={THREADS_MAX}");
    }
    assert!(config.clients <= CLIENTS_MAX);
    Ok((config, endpoints, pids))
}

async fn run_system(
    system: &str,
    endpoints: &[String],
    config: &Config,
    pids: &[u32],
) -> anyhow::Result<Report> {
    match system {
        "keel" => {
            let target = keel_bench::keel::KeelTarget::discover(endpoints).await?;
            runner::run(Arc::new(target), config, pids).await
        }
        #[cfg(feature = "etcd")]
        "etcd" => {
            let target = keel_bench::etcd::EtcdTarget::discover(endpoints).await?;
            runner::run(Arc::new(target), config, pids).await
        }
        #[cfg(not(feature = "etcd"))]
        "etcd" => anyhow::bail!("this keel was built without the etcd driver (cargo build --features keel/etcd; needs protoc)"),
        other => anyhow::bail!("--system must be keel or etcd, got {other:?}"),
    }
}

pub fn run(args: Args) -> i32 {
    let (config, endpoints, pids) = match config_of(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("keel bench: {e:#}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keel bench: cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run_system(&args.system, &endpoints, &config, &pids)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("keel bench: encoding the report: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{}", keel_bench::report::text(&report));
            }
            0
        }
        Err(e) => {
            eprintln!("keel bench: {e:#}");
            1
        }
    }
}
