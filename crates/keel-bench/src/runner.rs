//! Runs one configuration against a target: connect every client, prefill, warm up, measure.
//!
//! Closed loop: client i issues its next operation when the previous one completes; latency is
//! completion minus actual start. Open loop (as wrk2): the total rate R is split evenly over the
//! N connections, connection w intends to start operation k at t0 + (w + k·N)/R, and latency is
//! completion minus that *intended* start, so time spent waiting behind a slow server counts.

use crate::config::{Config, LoadShape, OpMix};
use crate::driver::{Connection, OpError, Route, Target};
use crate::histogram::{LatencyHistogram, LatencySummary};
use crate::keys::{KeyPicker, ZipfTable};
use crate::procstat::{ProcWatch, ServerCost};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often peak RSS is sampled during the measured window.
pub const RSS_POLL_INTERVAL_MS: u64 = 250;
/// Distinct error messages kept per code (the first ones seen).
pub const ERROR_MESSAGES_PER_CODE_MAX: usize = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub system: String,
    pub config: Config,
    /// Seconds from the end of the warm-up to the last measured completion.
    pub measured_s: f64,
    /// Successful measured operations.
    pub ops: u64,
    pub ops_per_s: f64,
    pub latency: LatencySummary,
    pub errors: BTreeMap<String, u64>,
    pub error_examples: BTreeMap<String, String>,
    /// Compare-and-swaps and transactions whose comparison failed (not errors).
    pub cas_failed: u64,
    pub server: Option<ServerCost>,
    /// This client's own CPU per successful operation, in microseconds (it shares the machine).
    pub client_cpu_us_per_op: f64,
}

struct WorkerStats {
    histogram: LatencyHistogram,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
    cas_failed: u64,
    ops: u64,
    last_done: Option<Instant>,
}

impl WorkerStats {
    fn new() -> WorkerStats {
        WorkerStats {
            histogram: LatencyHistogram::new(),
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            cas_failed: 0,
            ops: 0,
            last_done: None,
        }
    }

    fn record(&mut self, latency: Duration, done: Instant, outcome: Result<bool, OpError>) {
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        match outcome {
            Ok(swapped) => {
                self.ops += 1;
                if !swapped {
                    self.cas_failed += 1;
                }
                self.histogram.record(latency);
            }
            Err(e) => self.record_error(e),
        }
    }

    fn record_error(&mut self, e: OpError) {
        *self.errors.entry(e.code.clone()).or_insert(0) += 1;
        if ERROR_MESSAGES_PER_CODE_MAX > 0 {
            self.error_examples.entry(e.code).or_insert(e.message);
        }
    }

    fn merge(&mut self, other: WorkerStats) {
        self.histogram.merge(&other.histogram);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_insert(0) += n;
        }
        for (code, message) in other.error_examples {
            self.error_examples.entry(code).or_insert(message);
        }
        self.cas_failed += other.cas_failed;
        self.ops += other.ops;
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The route every client of this configuration uses.
pub fn route_of(config: &Config) -> Route {
    if config.op.writes() || config.read_level.needs_leader() {
        Route::Leader
    } else {
        Route::Spread
    }
}

/// One operation of the mix; Ok(false) only for a CAS that did not swap.
async fn one_op<C: Connection>(
    conn: &mut C,
    config: &Config,
    picker: &mut KeyPicker,
    value: &[u8],
) -> Result<bool, OpError> {
    let index = picker.next_key_index();
    let key = config.key(index);
    let timeout = Duration::from_millis(config.op_timeout_ms);
    let op = async {
        match config.op {
            OpMix::Put => conn.put(&key, value).await.map(|()| true),
            OpMix::Get => conn.get(&key, config.read_level).await.map(|()| true),
            OpMix::Cas => conn.cas(&key, value, value).await,
            OpMix::Txn => {
                let key2 = config.key((index + 1) % config.keys);
                conn.txn(&key, &key2, value, value).await
            }
            OpMix::Mixed { get_percent } => {
                if picker.chance_percent(get_percent) {
                    conn.get(&key, config.read_level).await.map(|()| true)
                } else {
                    conn.put(&key, value).await.map(|()| true)
                }
            }
        }
    };
    match tokio::time::timeout(timeout, op).await {
        Ok(outcome) => outcome,
        Err(_) => Err(OpError::new(
            "TIMEOUT",
            format!("no answer within {} ms", config.op_timeout_ms),
        )),
    }
}

/// Writes every key once, spreading keys over `clients` connections to the leader.
pub async fn prefill<T: Target>(target: &Arc<T>, config: &Config) -> Result<()> {
    let clients = config.clients.min(64) as u64;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let target = target.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = target.connect(c as usize, Route::Leader).await?;
            let value = config.value();
            let mut index = c;
            while index < config.keys {
                let key = config.key(index);
                let mut attempts = 0;
                loop {
                    match conn.put(&key, &value).await {
                        Ok(()) => break,
                        Err(e) if attempts < 5 => {
                            attempts += 1;
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => anyhow::bail!("prefill put failed: {}: {}", e.code, e.message),
                    }
                }
                index += clients;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.context("prefill task panicked")??;
    }
    Ok(())
}

/// Runs `config` against `target`, watching the server `pids` during the measured window.
pub async fn run<T: Target>(target: Arc<T>, config: &Config, pids: &[u32]) -> Result<Report> {
    config.validate()?;
    if config.prefill && (config.op.reads() || matches!(config.op, OpMix::Cas | OpMix::Txn)) {
        prefill(&target, config).await?;
    }
    let route = route_of(config);
    let mut conns = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let conn = target
            .connect(i, route)
            .await
            .with_context(|| format!("connecting client {i}"))?;
        conns.push(conn);
    }
    let zipf = match config.distribution {
        crate::config::KeyDistribution::Zipf { exponent } => {
            Some(Arc::new(ZipfTable::new(config.keys, exponent)))
        }
        crate::config::KeyDistribution::Uniform => None,
    };

    let t0 = Instant::now() + Duration::from_millis(10);
    let warmup_end = t0 + Duration::from_secs_f64(config.warmup_s);
    let end = warmup_end + Duration::from_secs_f64(config.duration_s);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(config.clients);
    for (w, conn) in conns.into_iter().enumerate() {
        let config = config.clone();
        let picker = KeyPicker::new(
            config.distribution,
            config.keys,
            zipf.clone(),
            config.seed.wrapping_mul(1_000_003).wrapping_add(w as u64),
        );
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            match config.shape {
                LoadShape::Closed => {
                    closed_worker(conn, &config, picker, t0, warmup_end, end, &counter).await
                }
                LoadShape::Open { rate_per_s } => {
                    open_worker(conn, &config, picker, w, rate_per_s, t0, warmup_end, end).await
                }
            }
        }));
    }

    tokio::time::sleep_until(warmup_end).await;
    let mut watch = ProcWatch::start(pids).context("watching the server pids")?;
    let client_start = crate::procstat::sample(std::process::id()).ok();
    let mut stats = WorkerStats::new();
    let mut remaining = tasks;
    while !remaining.is_empty() {
        tokio::time::sleep(Duration::from_millis(RSS_POLL_INTERVAL_MS)).await;
        watch.poll();
        let mut still = Vec::with_capacity(remaining.len());
        for task in remaining {
            if task.is_finished() {
                stats.merge(task.await.context("client task panicked")?);
            } else {
                still.push(task);
            }
        }
        remaining = still;
    }
    let measured_end = stats.last_done.unwrap_or(end).max(warmup_end);
    let measured_s = (measured_end - warmup_end).as_secs_f64().max(1e-9);
    let client_cpu_us_per_op = match (client_start, crate::procstat::sample(std::process::id())) {
        (Some(a), Ok(b)) if stats.ops > 0 => {
            (b.cpu_seconds - a.cpu_seconds) * 1e6 / stats.ops as f64
        }
        _ => 0.0,
    };
    let server = if pids.is_empty() {
        None
    } else {
        Some(watch.finish(stats.ops)?)
    };
    Ok(Report {
        system: target.name().to_string(),
        config: config.clone(),
        measured_s,
        ops: stats.ops,
        ops_per_s: stats.ops as f64 / measured_s,
        latency: stats.histogram.summary(),
        errors: stats.errors,
        error_examples: stats.error_examples,
        cas_failed: stats.cas_failed,
        server,
        client_cpu_us_per_op,
    })
}

async fn closed_worker<C: Connection>(
    mut conn: C,
    config: &Config,
    mut picker: KeyPicker,
    t0: Instant,
    warmup_end: Instant,
    end: Instant,
    counter: &AtomicU64,
) -> WorkerStats {
    let value = config.value();
    let mut stats = WorkerStats::new();
    tokio::time::sleep_until(t0).await;
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let measured = start >= warmup_end;
        if let (true, Some(count_max)) = (measured, config.count_max) {
            if counter.fetch_add(1, Ordering::Relaxed) >= count_max {
                break;
            }
        }
        let outcome = one_op(&mut conn, config, &mut picker, &value).await;
        let done = Instant::now();
        if measured {
            stats.record(done - start, done, outcome);
        }
    }
    stats
}

#[allow(clippy::too_many_arguments)]
async fn open_worker<C: Connection>(
    mut conn: C,
    config: &Config,
    mut picker: KeyPicker,
    worker: usize,
    rate_per_s: f64,
    t0: Instant,
    warmup_end: Instant,
    end: Instant,
) -> WorkerStats {
    let value = config.value();
    let mut stats = WorkerStats::new();
    let clients = config.clients as f64;
    // Past this, arrivals still owed are dropped and counted, so a far-too-slow server cannot
    // keep the run going forever.
    let drain_end = end + Duration::from_millis(config.op_timeout_ms);
    let mut k: u64 = 0;
    loop {
        let offset_s = (worker as f64 + k as f64 * clients) / rate_per_s;
        let intended = t0 + Duration::from_secs_f64(offset_s);
        if intended >= end {
            break;
        }
        k += 1;
        let measured = intended >= warmup_end;
        if Instant::now() >= drain_end {
            if measured {
                stats.record_error(OpError::new(
                    "NOT_ISSUED",
                    "arrival still owed when the drain time ran out",
                ));
            }
            continue;
        }
        tokio::time::sleep_until(intended).await;
        let outcome = one_op(&mut conn, config, &mut picker, &value).await;
        let done = Instant::now();
        if measured {
            stats.record(done - intended, done, outcome);
        }
    }
    stats
}
