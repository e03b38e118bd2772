//! Workloads: concurrent clients through `keel-client`, every operation recorded.
//!
//! - **register** workers: read / write / cas on a few hot keys (skewed: key i is chosen with
//!   weight 1/(i+1)). Keys rotate every `KEY_EPOCH_MS` (`r<i>-<epoch>`) so each key's history
//!   stays small enough for the checker, as Jepsen's independent keys do. Writes carry a
//!   session (exactly-once); a write whose fate is unknown is recorded `info` and the worker
//!   takes a new process id.
//! - **reader** workers: linearizable reads only, each client's first endpoint a different
//!   node, so a follower that wrongly answers linearizable reads itself is exercised.
//! - **set** worker: adds unique elements (`s/<n>` keys); every acknowledged add must be
//!   present at the end.
//! - **dup** worker: writes `d/<n>` = first (session tag T), then `d/<n>` = second, then sends
//!   tag T again: the server must answer from its session cache (same revision) and the key
//!   must still read `second`. Anything else is a double-applied retry.
//! - **bank** worker ([`crate::bank`]): transfers between accounts in guarded transactions,
//!   full reads (a txn of gets, or a range read at a random level) that must sum to the total.
//! - **stale reads** (`stale_reads`): register workers also read at `bounded:<ms>` and `any`;
//!   those reads are kept out of the linearizability check and checked against their declared
//!   staleness instead ([`crate::staleness`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_client::{
    CasExpectation, Client, ClientConfig, Error, RangeSpec, ReadLevel, ReadOptions, SessionTag,
    WriteOptions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::bank;
use crate::history::Recorder;
use crate::staleness::StaleRead;

/// A register key lives this long before workers move to the next one.
pub const KEY_EPOCH_MS: u64 = 10_000;
/// Workers of one kind, at most.
pub const WORKERS_MAX: usize = 32;
/// Elements the set worker adds, at most.
pub const SET_ADDS_MAX: u64 = 100_000;
/// Reads below linearizable kept for the staleness check, at most.
pub const STALE_READS_MAX: usize = 500_000;
/// Bank violations kept, at most (the count goes on).
pub const BANK_VIOLATIONS_MAX: usize = 100;
/// Staleness bounds a `bounded` read asks for.
pub const STALE_BOUNDS_MS: [u64; 3] = [50, 250, 1_000];
/// Process ids per worker generation (a worker's n-th process id is `w + n * this`).
const PROCESS_STRIDE: u64 = 1_000;

/// Which workloads run (`--workload`, a comma list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadMix {
    /// Register workers and linearizable readers.
    pub register: bool,
    pub set: bool,
    pub dup: bool,
    pub bank: bool,
    /// `bounded` / `any` reads among the register workers' reads.
    pub stale_reads: bool,
}

impl WorkloadMix {
    pub const NAMES: [&'static str; 5] = ["register", "set", "dup", "bank", "stale-reads"];

    /// Parses `register,set,dup,bank,stale-reads`, or `all`.
    pub fn parse(text: &str) -> Result<WorkloadMix, String> {
        let mut mix = WorkloadMix {
            register: false,
            set: false,
            dup: false,
            bank: false,
            stale_reads: false,
        };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => {
                    mix = WorkloadMix {
                        register: true,
                        set: true,
                        dup: true,
                        bank: true,
                        stale_reads: true,
                    }
                }
                "register" => mix.register = true,
                "set" => mix.set = true,
                "dup" => mix.dup = true,
                "bank" => mix.bank = true,
                "stale-reads" => mix.stale_reads = true,
                _ => {
                    return Err(format!(
                        "unknown workload {word:?}; known: all, {}",
                        WorkloadMix::NAMES.join(", ")
                    ))
                }
            }
        }
        if mix.stale_reads && !mix.register {
            return Err("stale-reads needs the register workload".to_string());
        }
        if !(mix.register || mix.set || mix.dup || mix.bank) {
            return Err("no workload chosen".to_string());
        }
        Ok(mix)
    }
}

#[cfg(test)]
mod mix_tests {
    use super::*;

    #[test]
    fn workload_mix_parsing() {
        let all = WorkloadMix::parse("all").unwrap();
        assert!(all.register && all.set && all.dup && all.bank && all.stale_reads);
        let bank = WorkloadMix::parse("bank").unwrap();
        assert!(bank.bank && !bank.register && !bank.stale_reads);
        assert!(
            WorkloadMix::parse("stale-reads").is_err(),
            "needs registers"
        );
        assert!(WorkloadMix::parse("").is_err());
        assert!(WorkloadMix::parse("register,bogus").is_err());
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub endpoints: Vec<String>,
    pub hot_keys: usize,
    pub register_workers: usize,
    pub reader_workers: usize,
    pub set_workers: usize,
    pub dup_workers: usize,
    pub bank_workers: usize,
    /// Accounts of the bank (2..=`bank::ACCOUNTS_MAX`).
    pub bank_accounts: usize,
    /// Register workers also read at `bounded:<ms>` and `any`.
    pub stale_reads: bool,
    pub op_timeout_ms: u64,
    /// Pause between a worker's operations (sets the load; the recorder holds `EVENTS_MAX`).
    pub think_ms: u64,
    pub seed: u64,
}

/// What the checks need beyond the history.
#[derive(Default, Debug)]
pub struct Outcomes {
    /// Set elements acknowledged added.
    pub set_acked: Vec<String>,
    /// Set elements whose add is unknown (may or may not be present).
    pub set_unknown: Vec<String>,
    /// Duplicate submissions whose resend was answered.
    pub dup_rounds_checked: u64,
    /// Descriptions of double-applied retries.
    pub dup_violations: Vec<String>,
    /// Register keys used (for the final read-back).
    pub register_keys: std::collections::BTreeSet<String>,
    /// Full bank reads that were checked (all sum to the total, or a violation is listed).
    pub bank_reads_checked: u64,
    pub bank_transfers_ok: u64,
    pub bank_transfers_failed: u64,
    pub bank_violations: Vec<String>,
    pub bank_violations_total: u64,
    /// Reads at `bounded` and `any` (checked by [`crate::staleness`]).
    pub stale_reads: Vec<StaleRead>,
    /// Linearizable reads served from a lease: (process, completion time ns). Left out of the
    /// linearizability check when the clock assumption is violated.
    pub lease_reads: std::collections::BTreeSet<(u64, u64)>,
}

impl Outcomes {
    fn bank_violation(&mut self, text: String) {
        self.bank_violations_total += 1;
        if self.bank_violations.len() < BANK_VIOLATIONS_MAX {
            self.bank_violations.push(text);
        }
    }
}

pub struct Workload {
    pub spec: WorkloadSpec,
    pub recorder: Arc<Recorder>,
    pub outcomes: Arc<Mutex<Outcomes>>,
    stop: Arc<AtomicBool>,
}

pub fn client(endpoints: &[String], timeout_ms: u64, seed: u64) -> Result<Client, Error> {
    let mut config = ClientConfig::new(endpoints);
    config.call_timeout_ms = timeout_ms;
    config.attempt_timeout_ms = (timeout_ms / 2).max(200);
    config.connect_timeout_ms = 200;
    config.rng_seed = seed;
    config.backoff_max_ms = 200;
    Client::new(config)
}

fn rotated(endpoints: &[String], start: usize) -> Vec<String> {
    let n = endpoints.len();
    (0..n).map(|i| endpoints[(start + i) % n].clone()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn lock(outcomes: &Mutex<Outcomes>) -> std::sync::MutexGuard<'_, Outcomes> {
    outcomes.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workload {
    pub fn new(spec: WorkloadSpec, recorder: Arc<Recorder>) -> Workload {
        assert!(spec.register_workers + spec.reader_workers <= WORKERS_MAX);
        assert!(spec.hot_keys >= 1);
        Workload {
            spec,
            recorder,
            outcomes: Arc::new(Mutex::new(Outcomes::default())),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Spawns every worker; they run until [`Workload::stop`].
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut worker: u64 = 0;
        for _ in 0..self.spec.register_workers {
            handles.push(tokio::spawn(register_worker(self.ctx(worker), false)));
            worker += 1;
        }
        for _ in 0..self.spec.reader_workers {
            handles.push(tokio::spawn(register_worker(self.ctx(worker), true)));
            worker += 1;
        }
        for _ in 0..self.spec.set_workers {
            handles.push(tokio::spawn(set_worker(self.ctx(worker))));
            worker += 1;
        }
        for _ in 0..self.spec.dup_workers {
            handles.push(tokio::spawn(dup_worker(self.ctx(worker))));
            worker += 1;
        }
        for _ in 0..self.spec.bank_workers {
            handles.push(tokio::spawn(bank_worker(self.ctx(worker))));
            worker += 1;
        }
        handles
    }

    fn ctx(&self, worker: u64) -> Ctx {
        Ctx {
            worker,
            spec: self.spec.clone(),
            recorder: Arc::clone(&self.recorder),
            outcomes: Arc::clone(&self.outcomes),
            stop: Arc::clone(&self.stop),
            rng: ChaCha8Rng::seed_from_u64(self.spec.seed ^ ((worker + 1) * 0x51_7cc1_b727)),
        }
    }
}

struct Ctx {
    worker: u64,
    spec: WorkloadSpec,
    recorder: Arc<Recorder>,
    outcomes: Arc<Mutex<Outcomes>>,
    stop: Arc<AtomicBool>,
    rng: ChaCha8Rng,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.recorder.full()
    }

    fn client(&self, sessions: bool) -> Option<Client> {
        let endpoints = rotated(&self.spec.endpoints, self.worker as usize);
        let client = client(&endpoints, self.spec.op_timeout_ms, self.rng.clone().gen()).ok()?;
        let _ = sessions;
        Some(client)
    }

    /// Registers a session, retrying until it works or the run stops.
    async fn session_client(&self) -> Option<Client> {
        let client = self.client(true)?;
        while !self.stopped() {
            if client.register_session().await.is_ok() {
                return Some(client);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

/// Picks key index i with weight 1/(i+1).
fn skewed_index(rng: &mut ChaCha8Rng, count: usize) -> usize {
    let total: f64 = (0..count).map(|i| 1.0 / (i + 1) as f64).sum();
    let mut point = rng.gen_range(0.0..total);
    for i in 0..count {
        let weight = 1.0 / (i + 1) as f64;
        if point < weight {
            return i;
        }
        point -= weight;
    }
    count - 1
}

async fn register_worker(mut ctx: Ctx, reads_only: bool) {
    let client = if reads_only {
        ctx.client(false)
    } else {
        ctx.session_client().await
    };
    let Some(client) = client else { return };
    let mut generation: u64 = 0;
    let mut process = ctx.worker;
    let mut counter: u64 = 0;
    let mut last_read: std::collections::BTreeMap<String, String> = Default::default();
    while !ctx.stopped() {
        let epoch = ctx.recorder.now_ns() / 1_000_000 / KEY_EPOCH_MS;
        let index = skewed_index(&mut ctx.rng, ctx.spec.hot_keys);
        let key = format!("r{index}-{epoch}");
        lock(&ctx.outcomes).register_keys.insert(key.clone());
        let roll: u32 = ctx.rng.gen_range(0..100);
        counter += 1;
        let unknown = if !reads_only && ctx.spec.stale_reads && roll < 16 {
            stale_read(&mut ctx, &client, process, &key, roll < 8).await;
            false
        } else if reads_only || roll < 40 {
            let options = ReadOptions {
                level: ReadLevel::Linearizable,
                ..Default::default()
            };
            ctx.recorder
                .record(process, "invoke", "read", Some(&key), Value::Null, None);
            match client.get(&key, options).await {
                Ok(answer) => {
                    let lease = answer.raw["served"]["path"].as_str() == Some("lease");
                    let value = answer.kv.map(|kv| text(&kv.value));
                    if let Some(v) = &value {
                        last_read.insert(key.clone(), v.clone());
                    }
                    let time_ns =
                        ctx.recorder
                            .record(process, "ok", "read", Some(&key), json!(value), None);
                    if lease {
                        lock(&ctx.outcomes).lease_reads.insert((process, time_ns));
                    }
                }
                Err(e) => {
                    ctx.recorder.record(
                        process,
                        "fail",
                        "read",
                        Some(&key),
                        Value::Null,
                        Some(e.code()),
                    );
                }
            }
            false
        } else if roll < 80 || !last_read.contains_key(&key) {
            let value = format!("{process}-{counter}");
            ctx.recorder
                .record(process, "invoke", "write", Some(&key), json!(value), None);
            match client.put(&key, &value, WriteOptions::default()).await {
                Ok(_) => {
                    ctx.recorder
                        .record(process, "ok", "write", Some(&key), json!(value), None);
                    false
                }
                Err(e) => {
                    ctx.recorder.record(
                        process,
                        "info",
                        "write",
                        Some(&key),
                        json!(value),
                        Some(e.code()),
                    );
                    true
                }
            }
        } else {
            let expected = last_read[&key].clone();
            let value = format!("{process}-{counter}");
            let argument = json!([expected, value]);
            ctx.recorder
                .record(process, "invoke", "cas", Some(&key), argument.clone(), None);
            let expectation = CasExpectation::Value(expected.clone().into_bytes());
            match client
                .cas(&key, expectation, &value, WriteOptions::default())
                .await
            {
                Ok(answer) if answer.succeeded => {
                    ctx.recorder
                        .record(process, "ok", "cas", Some(&key), argument, None);
                    false
                }
                Ok(_) => {
                    ctx.recorder.record(
                        process,
                        "fail",
                        "cas",
                        Some(&key),
                        argument,
                        Some("mismatch".to_string()),
                    );
                    last_read.remove(&key);
                    false
                }
                Err(e) => {
                    ctx.recorder.record(
                        process,
                        "info",
                        "cas",
                        Some(&key),
                        argument,
                        Some(e.code()),
                    );
                    true
                }
            }
        };
        if unknown {
            generation += 1;
            process = ctx.worker + generation * PROCESS_STRIDE;
        }
        tokio::time::sleep(Duration::from_millis(ctx.spec.think_ms)).await;
    }
}

/// One read at `bounded:<ms>` (else `any`), recorded as `read-bounded` / `read-any` (not part
/// of the linearizability check) and kept for the staleness check.
async fn stale_read(ctx: &mut Ctx, client: &Client, process: u64, key: &str, bounded: bool) {
    let (level, f, bound_ms) = if bounded {
        let bound_ms = STALE_BOUNDS_MS[ctx.rng.gen_range(0..STALE_BOUNDS_MS.len())];
        let level = ReadLevel::Bounded {
            max_staleness_ms: bound_ms,
        };
        (level, "read-bounded", Some(bound_ms))
    } else {
        (ReadLevel::Any, "read-any", None)
    };
    let options = ReadOptions {
        level,
        ..Default::default()
    };
    let start_ns = ctx.recorder.record(
        process,
        "invoke",
        f,
        Some(key),
        json!(level.as_query()),
        None,
    );
    match client.get(key, options).await {
        Ok(answer) => {
            let value = answer.kv.map(|kv| text(&kv.value));
            let end_ns = ctx
                .recorder
                .record(process, "ok", f, Some(key), json!(value), None);
            let mut outcomes = lock(&ctx.outcomes);
            if outcomes.stale_reads.len() < STALE_READS_MAX {
                outcomes.stale_reads.push(StaleRead {
                    key: key.to_string(),
                    value,
                    bound_ms,
                    staleness_ms: answer.served.staleness_ms,
                    node: answer.served.node,
                    start_ns,
                    end_ns,
                });
            }
        }
        Err(e) => {
            ctx.recorder
                .record(process, "fail", f, Some(key), Value::Null, Some(e.code()));
        }
    }
}

/// The bank: full reads (txn of gets, or range reads at a random level) checked against the
/// total, and guarded transfers between two random accounts.
async fn bank_worker(mut ctx: Ctx) {
    let Some(client) = ctx.session_client().await else {
        return;
    };
    let accounts = ctx.spec.bank_accounts;
    assert!((2..=bank::ACCOUNTS_MAX).contains(&accounts));
    let mut process = ctx.worker;
    let mut generation: u64 = 0;
    let mut last: Option<Vec<Option<bank::Account>>> = None;
    while !ctx.stopped() {
        let roll: u32 = ctx.rng.gen_range(0..100);
        if roll < 25 || last.is_none() {
            // A full read through the log.
            ctx.recorder.record(
                process,
                "invoke",
                "bank-read",
                Some("bank"),
                json!("txn"),
                None,
            );
            let answer = client
                .txn(bank::read_all_txn(accounts), WriteOptions::default())
                .await;
            match answer.map_err(|e| e.code()).and_then(|t| {
                bank::parse_read_all(accounts, &t.responses).map_err(|e| format!("bad answer: {e}"))
            }) {
                Ok(read) => {
                    ctx.recorder.record(
                        process,
                        "ok",
                        "bank-read",
                        Some("bank"),
                        json!(bank::balances(&read)),
                        None,
                    );
                    bank_check(&ctx, "txn read", &read, &Value::Null);
                    last = Some(read);
                }
                Err(code) => {
                    ctx.recorder.record(
                        process,
                        "fail",
                        "bank-read",
                        Some("bank"),
                        Value::Null,
                        Some(code),
                    );
                }
            }
        } else if roll < 50 {
            // A range read at a random level: one applied state, whatever its age.
            let level = match roll % 3 {
                0 => ReadLevel::Linearizable,
                1 => ReadLevel::Bounded {
                    max_staleness_ms: 1_000,
                },
                _ => ReadLevel::Any,
            };
            let f = "bank-range";
            ctx.recorder.record(
                process,
                "invoke",
                f,
                Some("bank"),
                json!(level.as_query()),
                None,
            );
            match bank::read_range(&client, accounts, level).await {
                Ok((read, served)) => {
                    ctx.recorder.record(
                        process,
                        "ok",
                        f,
                        Some("bank"),
                        json!(bank::balances(&read)),
                        None,
                    );
                    bank_check(
                        &ctx,
                        &format!("{} range read", level.as_query()),
                        &read,
                        &served,
                    );
                }
                Err(e) => {
                    ctx.recorder.record(
                        process,
                        "fail",
                        f,
                        Some("bank"),
                        Value::Null,
                        Some(e.code()),
                    );
                }
            }
        } else if let Some(read) = last.take() {
            // A transfer guarded by the balances last read.
            let from = ctx.rng.gen_range(0..accounts);
            let to = (from + ctx.rng.gen_range(1..accounts)) % accounts;
            let (Some(a), Some(b)) = (&read[from], &read[to]) else {
                continue;
            };
            if a.balance == 0 {
                continue;
            }
            let amount = ctx.rng.gen_range(1..=a.balance.min(bank::BALANCE_INITIAL));
            let argument = json!([from, to, amount]);
            ctx.recorder.record(
                process,
                "invoke",
                "transfer",
                Some("bank"),
                argument.clone(),
                None,
            );
            match client
                .txn(
                    bank::transfer_txn((from, a), (to, b), amount),
                    WriteOptions::default(),
                )
                .await
            {
                Ok(answer) if answer.succeeded => {
                    ctx.recorder
                        .record(process, "ok", "transfer", Some("bank"), argument, None);
                    lock(&ctx.outcomes).bank_transfers_ok += 1;
                }
                Ok(_) => {
                    ctx.recorder.record(
                        process,
                        "fail",
                        "transfer",
                        Some("bank"),
                        argument,
                        Some("compare failed".to_string()),
                    );
                    lock(&ctx.outcomes).bank_transfers_failed += 1;
                }
                Err(e) => {
                    ctx.recorder.record(
                        process,
                        "info",
                        "transfer",
                        Some("bank"),
                        argument,
                        Some(e.code()),
                    );
                    generation += 1;
                    process = ctx.worker + generation * PROCESS_STRIDE;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(ctx.spec.think_ms * 2)).await;
    }
}

/// Checks one full read. A read below linearizable may come from a node still replaying its
/// log from before the accounts were created (all absent: the init is one txn); that is not a
/// violation.
fn bank_check(ctx: &Ctx, what: &str, read: &[Option<bank::Account>], served: &Value) {
    let mut outcomes = lock(&ctx.outcomes);
    let stale_level =
        served.get("level").and_then(Value::as_str) != Some("linearizable") && !served.is_null();
    if stale_level && read.iter().all(Option::is_none) {
        return;
    }
    outcomes.bank_reads_checked += 1;
    if let Err(problem) = bank::check_read(ctx.spec.bank_accounts, read) {
        outcomes.bank_violation(format!("{what} (served {served}): {problem}"));
    }
}

async fn set_worker(ctx: Ctx) {
    let Some(client) = ctx.session_client().await else {
        return;
    };
    let mut process = ctx.worker;
    let mut generation = 0;
    for n in 0..SET_ADDS_MAX {
        if ctx.stopped() {
            break;
        }
        let element = format!("{}-{n}", ctx.worker);
        let key = format!("s/{element}");
        ctx.recorder
            .record(process, "invoke", "add", Some("set"), json!(element), None);
        match client.put(&key, "1", WriteOptions::default()).await {
            Ok(_) => {
                ctx.recorder
                    .record(process, "ok", "add", Some("set"), json!(element), None);
                lock(&ctx.outcomes).set_acked.push(element);
            }
            Err(e) => {
                ctx.recorder.record(
                    process,
                    "info",
                    "add",
                    Some("set"),
                    json!(element),
                    Some(e.code()),
                );
                lock(&ctx.outcomes).set_unknown.push(element);
                generation += 1;
                process = ctx.worker + generation * PROCESS_STRIDE;
            }
        }
        tokio::time::sleep(Duration::from_millis(ctx.spec.think_ms * 4)).await;
    }
}

async fn dup_worker(ctx: Ctx) {
    let Some(client) = ctx.session_client().await else {
        return;
    };
    let Some(client_id) = client.session_client_id() else {
        return;
    };
    let process = ctx.worker;
    let mut seq: u64 = 1_000_000;
    let mut round: u64 = 0;
    while !ctx.stopped() {
        round += 1;
        seq += 2;
        let key = format!("d/{}-{round}", ctx.worker);
        let first = SessionTag {
            client_id,
            seq,
            lowest_unacked_seq: seq,
        };
        let second = SessionTag {
            client_id,
            seq: seq + 1,
            lowest_unacked_seq: seq,
        };
        let with = |tag: SessionTag| WriteOptions {
            session_override: Some(tag),
            ..Default::default()
        };
        let record = |kind: &'static str, f: &str, value: Value, error: Option<String>| {
            ctx.recorder
                .record(process, kind, f, Some(&key), value, error);
        };
        record("invoke", "dup-first", json!(first.seq), None);
        let first_revision = match client.put(&key, "first", with(first)).await {
            Ok(answer) => answer.revision,
            Err(e) => {
                record("fail", "dup-first", Value::Null, Some(e.code()));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        record("ok", "dup-first", json!(first_revision), None);
        record("invoke", "dup-second", json!(second.seq), None);
        if let Err(e) = client.put(&key, "second", with(second)).await {
            record("fail", "dup-second", Value::Null, Some(e.code()));
            continue;
        }
        record("ok", "dup-second", Value::Null, None);
        record("invoke", "dup-resend", json!(first.seq), None);
        let resend = client.put(&key, "first", with(first)).await;
        let resend_revision = match resend {
            Ok(answer) => answer.revision,
            Err(e) => {
                record("fail", "dup-resend", Value::Null, Some(e.code()));
                continue;
            }
        };
        record("ok", "dup-resend", json!(resend_revision), None);
        let read = client
            .get(
                &key,
                ReadOptions {
                    level: ReadLevel::Linearizable,
                    ..Default::default()
                },
            )
            .await;
        {
            let mut outcomes = lock(&ctx.outcomes);
            outcomes.dup_rounds_checked += 1;
            if resend_revision != first_revision {
                outcomes.dup_violations.push(format!(
                "{key}: resent seq {} answered revision {resend_revision}, first answer was {first_revision} (applied twice)",
                first.seq
            ));
            }
            if let Ok(answer) = read {
                let value = answer.kv.map(|kv| text(&kv.value));
                if value.as_deref() == Some("first") {
                    outcomes.dup_violations.push(format!(
                    "{key}: reads \"first\" after \"second\" was acknowledged: the resent write applied again"
                ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(ctx.spec.think_ms * 10)).await;
    }
}

/// Reads every element of the set (`s/` keys), linearizably, following pages.
pub async fn read_set(client: &Client) -> Result<std::collections::BTreeSet<String>, Error> {
    let mut found = std::collections::BTreeSet::new();
    let mut start = b"s/".to_vec();
    let pages_max = 10_000;
    for _ in 0..pages_max {
        let spec = RangeSpec::Span {
            start: start.clone(),
            end: Some(b"s0".to_vec()),
        };
        let options = ReadOptions {
            level: ReadLevel::Linearizable,
            ..Default::default()
        };
        let page = client.range(spec, Some(1000), options).await?;
        for kv in &page.kvs {
            found.insert(text(&kv.key[2..]));
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return Ok(found),
        }
    }
    Ok(found)
}
