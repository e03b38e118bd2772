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

use crate::history::Recorder;

/// A register key lives this long before workers move to the next one.
pub const KEY_EPOCH_MS: u64 = 10_000;
/// Workers of one kind, at most.
pub const WORKERS_MAX: usize = 32;
/// Elements the set worker adds, at most.
pub const SET_ADDS_MAX: u64 = 100_000;
/// Process ids per worker generation (a worker's n-th process id is `w + n * this`).
const PROCESS_STRIDE: u64 = 1_000;

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub endpoints: Vec<String>,
    pub hot_keys: usize,
    pub register_workers: usize,
    pub reader_workers: usize,
    pub set_workers: usize,
    pub dup_workers: usize,
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
        let unknown = if reads_only || roll < 40 {
            let options = ReadOptions {
                level: ReadLevel::Linearizable,
                ..Default::default()
            };
            ctx.recorder
                .record(process, "invoke", "read", Some(&key), Value::Null, None);
            match client.get(&key, options).await {
                Ok(answer) => {
                    let value = answer.kv.map(|kv| text(&kv.value));
                    if let Some(v) = &value {
                        last_read.insert(key.clone(), v.clone());
                    }
                    ctx.recorder
                        .record(process, "ok", "read", Some(&key), json!(value), None);
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
