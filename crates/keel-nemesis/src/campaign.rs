//! One campaign end to end: start the cluster, run workload and nemesis for `time_ms`, heal,
//! wait for recovery, read back, check, write the output directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_check::{check, parse_history, Format, Model, Options, Verdict};
use keel_client::{ReadLevel, ReadOptions, WriteOptions};
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterSpec};
use crate::history::{faults_to_jsonl, to_jsonl, Event, Recorder};
use crate::metrics;
use crate::nemesis::{self, FaultKind};
use crate::report;
use crate::upgrade;
use crate::workload::{self, Workload, WorkloadMix, WorkloadSpec};
use crate::{bank, staleness};

/// The counter that must stay 0 on every node.
pub const REGRESSIONS_METRIC: &str = "keel_commit_index_regressions_total";
const LEADER_WAIT_MS: u64 = 30_000;
const METRICS_INTERVAL_MS: u64 = 1_000;
/// Wall-clock budget of the linearizability check; beyond it the verdict is `unknown`.
const CHECK_TIME_LIMIT_MS: u64 = 60_000;
/// Final-read process ids start here (after every worker's).
const FINAL_PROCESS_BASE: u64 = 10_000_000;
const BANK_INIT_ATTEMPTS_MAX: u32 = 50;
/// Spare node slots for the membership fault (each replacement uses one).
const MEMBERSHIP_SPARES: usize = 12;
/// Bank workers (two, so guarded transfers race and some compares fail).
const BANK_WORKERS: usize = 2;

#[derive(Clone, Debug)]
pub struct CampaignConfig {
    pub keel_bin: PathBuf,
    pub nodes: usize,
    pub time_ms: u64,
    pub faults: Vec<FaultKind>,
    pub seed: u64,
    pub out_dir: PathBuf,
    pub election_timeout_ms: u64,
    pub mutant: Option<String>,
    pub op_timeout_ms: u64,
    pub recovery_timeout_ms: u64,
    pub register_workers: usize,
    pub reader_workers: usize,
    pub hot_keys: usize,
    /// Pause between a worker's operations; 0 = as fast as answers come.
    pub think_ms: u64,
    pub workloads: WorkloadMix,
    /// Accounts of the bank workload.
    pub bank_accounts: usize,
    /// Every server's configured clock uncertainty (`clock_uncertainty_ms`): the `clock` fault
    /// stays within it, `clock-beyond` goes past it.
    pub clock_uncertainty_ms: u64,
    /// The build the `upgrade` fault rolls nodes to (`--upgrade-to`).
    pub upgrade_to: Option<PathBuf>,
}

impl CampaignConfig {
    pub fn new(keel_bin: PathBuf, out_dir: PathBuf) -> CampaignConfig {
        CampaignConfig {
            keel_bin,
            nodes: 3,
            time_ms: 60_000,
            faults: FaultKind::parse_mix("partition,kill,pause,transfer").expect("known"),
            seed: 1,
            out_dir,
            election_timeout_ms: 300,
            mutant: None,
            op_timeout_ms: 2_000,
            recovery_timeout_ms: 30_000,
            register_workers: 4,
            reader_workers: 3,
            hot_keys: 3,
            think_ms: 5,
            workloads: WorkloadMix::parse("all").expect("known"),
            bank_accounts: 5,
            clock_uncertainty_ms: crate::cluster::CLOCK_UNCERTAINTY_MS_DEFAULT,
            upgrade_to: None,
        }
    }
}

/// What a campaign found.
#[derive(Clone, Debug)]
pub struct Summary {
    pub ops: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub faults: u64,
    /// `valid`, `invalid` or `unknown`.
    pub verdict: &'static str,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub elapsed_ms: u64,
    pub json: Value,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "NEMESIS ops={} ok={} fail={} info={} faults={} verdict={}",
            self.ops, self.ok, self.fail, self.info, self.faults, self.verdict
        )
    }

    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            "valid" => 0,
            "invalid" => 1,
            _ => 2,
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[index.min(sorted.len() - 1)])
}

/// Time from each leader kill to the next acknowledged write, in ms.
fn failover_ms(events: &[Event], kills_ns: &[u64]) -> Vec<u64> {
    let mut out: Vec<u64> = kills_ns
        .iter()
        .filter_map(|&kill| {
            events
                .iter()
                .find(|e| {
                    e.time_ns > kill && e.kind == "ok" && matches!(e.f.as_str(), "write" | "cas")
                })
                .map(|e| (e.time_ns - kill) / 1_000_000)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Waits until a write is acknowledged. Err names a node that exited (with its log's last
/// line): a server that dies by itself is a finding, not a timeout.
async fn wait_for_write(cluster: &mut Cluster, bound_ms: u64) -> Result<Option<u64>, String> {
    let started = Instant::now();
    let client = workload::client(&cluster.endpoints(), 1_000, 3).map_err(|e| e.to_string())?;
    while started.elapsed() < Duration::from_millis(bound_ms) {
        if client
            .put("nemesis/probe", "1", WriteOptions::default())
            .await
            .is_ok()
        {
            return Ok(Some(started.elapsed().as_millis() as u64));
        }
        let exited = cluster.reap();
        if let Some((id, status)) = exited.first() {
            return Err(format!(
                "node {id} exited by itself ({status}): {}",
                cluster.log_tail(*id)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// Runs one campaign. Errors are harness errors (exit 2); violations are in the summary.
pub async fn run(config: CampaignConfig) -> Result<Summary> {
    let started = Instant::now();
    let upgrading = config.faults.contains(&FaultKind::Upgrade);
    anyhow::ensure!(
        !upgrading || config.upgrade_to.is_some(),
        "the upgrade fault needs --upgrade-to BIN (the build to upgrade to)"
    );
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("cannot create {}", config.out_dir.display()))?;
    let spec = ClusterSpec {
        keel_bin: config.keel_bin.clone(),
        nodes: config.nodes,
        dir: config.out_dir.join("cluster"),
        election_timeout_ms: config.election_timeout_ms,
        mutant: config.mutant.clone(),
        seed: config.seed,
        clock_uncertainty_ms: Some(config.clock_uncertainty_ms),
        spares: if config.faults.contains(&FaultKind::Membership) {
            MEMBERSHIP_SPARES.min(crate::cluster::SLOTS_MAX - config.nodes)
        } else {
            0
        },
        upgrade_bin: config.upgrade_to.clone(),
    };
    let mut cluster = Cluster::create(spec).await?;
    let mut notes = Vec::new();
    if !cluster.peer_routes_supported {
        notes.push(
            "server lacks --peer-routes: peer links routed through the proxy via --peers"
                .to_string(),
        );
    }
    if config.faults.contains(&FaultKind::Clock) && !cluster.faketime_available() {
        notes.push("libfaketime not installed: clock faults skipped".to_string());
    }
    if config.faults.contains(&FaultKind::SlowDisk) && !cluster.fsync_delay_supported {
        notes.push("server lacks --test-fsync-delay-ms: slow-disk faults skipped".to_string());
    }
    cluster.start_all().await?;
    match wait_for_write(&mut cluster, LEADER_WAIT_MS).await {
        Ok(Some(_)) => {}
        Ok(None) => anyhow::bail!(
            "the cluster accepted no write within {LEADER_WAIT_MS} ms; logs in {}",
            cluster.spec.dir.display()
        ),
        Err(exited) => anyhow::bail!("the cluster did not start: {exited}"),
    }

    let mix = config.workloads;
    if mix.bank {
        let client = workload::client(&cluster.endpoints(), 2_000, 4)
            .map_err(|e| anyhow::anyhow!("client: {e}"))?;
        let mut created = false;
        for _ in 0..BANK_INIT_ATTEMPTS_MAX {
            if bank::init(&client, config.bank_accounts).await.is_ok() {
                created = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::ensure!(created, "could not create the bank's accounts");
    }
    let recorder = Arc::new(Recorder::new());
    let workload = Workload::new(
        WorkloadSpec {
            endpoints: cluster.endpoints(),
            hot_keys: config.hot_keys,
            register_workers: if mix.register {
                config.register_workers
            } else {
                0
            },
            reader_workers: if mix.register {
                config.reader_workers
            } else {
                0
            },
            set_workers: usize::from(mix.set),
            dup_workers: usize::from(mix.dup),
            bank_workers: if mix.bank { BANK_WORKERS } else { 0 },
            bank_accounts: config.bank_accounts,
            stale_reads: mix.stale_reads,
            op_timeout_ms: config.op_timeout_ms,
            think_ms: config.think_ms,
            seed: config.seed,
        },
        Arc::clone(&recorder),
    );
    let workers = workload.spawn();
    let steps = nemesis::schedule(
        config.seed,
        &config.faults,
        config.time_ms,
        config.election_timeout_ms,
    );
    let cluster = tokio::sync::Mutex::new(cluster);
    let env = nemesis::NemesisEnv {
        clock_uncertainty_ms: config.clock_uncertainty_ms,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(config.time_ms);
    let regressions: std::sync::Mutex<BTreeMap<u64, f64>> = Default::default();
    let samples: std::sync::Mutex<Vec<metrics::Sample>> = Default::default();
    let scrape = async {
        loop {
            {
                let cluster = cluster.lock().await;
                for id in cluster.ids() {
                    let Some(text) = cluster.metrics_text(id).await else {
                        continue;
                    };
                    let sample = metrics::Sample::from_text(recorder.now_ns(), id, &text);
                    if let Some(value) = sample.get(REGRESSIONS_METRIC) {
                        let mut seen = regressions.lock().unwrap_or_else(|p| p.into_inner());
                        let entry = seen.entry(id).or_insert(0.0);
                        *entry = entry.max(value);
                    }
                    let mut kept = samples.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() < metrics::SAMPLES_MAX {
                        kept.push(sample);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(METRICS_INTERVAL_MS)).await;
        }
    };
    let faults_applied = tokio::select! {
        applied = nemesis::run(&cluster, &recorder, &steps, deadline, &env) => applied?,
        _ = scrape => unreachable!("the scraper loops forever"),
    };
    tokio::time::sleep_until(deadline).await;

    // Heal and recover.
    let mut cluster = cluster.into_inner();
    nemesis::heal_all(&mut cluster)?;
    recorder.fault(
        "instant",
        "heal",
        "network healed, nodes resumed and restarted".to_string(),
    );
    let mut problems = Vec::new();
    let clock_beyond = env
        .clock_beyond
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let clock_violations: Vec<String> = clock_beyond
        .iter()
        .filter(|(_, _, flagged)| !flagged)
        .map(|(id, offset, _)| {
            format!(
                "node {id} ran {offset:+} ms off, beyond ±{} ms, unflagged",
                config.clock_uncertainty_ms
            )
        })
        .take(10)
        .collect();
    let flagged = clock_beyond.iter().filter(|(_, _, f)| *f).count();
    if flagged > 0 {
        notes.push(format!(
            "{flagged} clock faults beyond the bound were flagged by their node (clock untrusted): lease reads stay checked"
        ));
    }
    let rolling = env
        .rolling
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let rolling_slow = rolling.iter().filter(|(_, ms)| ms.is_none()).count();
    if rolling_slow > 0 {
        notes.push(format!(
            "rolling restarts: {rolling_slow} of {} nodes did not catch up within {} ms",
            rolling.len(),
            nemesis::ROLLING_CATCH_UP_MS_MAX
        ));
    }
    let recovery = wait_for_write(&mut cluster, config.recovery_timeout_ms).await;
    let recovery_ms = recovery.clone().ok().flatten();
    match recovery {
        Ok(Some(ms)) => notes.push(format!("recovered {ms} ms after the heal")),
        Ok(None) => problems.push(format!(
            "no recovery: no write acknowledged within {} ms of the heal",
            config.recovery_timeout_ms
        )),
        Err(exited) => problems.push(format!("after the heal, {exited}")),
    }
    if recorder.full() {
        notes.push(format!(
            "the history reached {} events: workers stopped early (raise --think-ms)",
            crate::history::EVENTS_MAX
        ));
    }
    // A short quiet tail under the healed network, then stop the clients.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    workload.stop();
    for worker in workers {
        let _ =
            tokio::time::timeout(Duration::from_millis(config.op_timeout_ms + 5_000), worker).await;
    }

    // Final read-back of every register key, recorded like any read.
    let keys: Vec<String> = workload
        .outcomes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .register_keys
        .iter()
        .cloned()
        .collect();
    let reader = workload::client(&cluster.endpoints(), 5_000, 5)
        .map_err(|e| anyhow::anyhow!("client: {e}"))?;
    let mut final_unread = 0;
    for (index, key) in keys.iter().enumerate() {
        let process = FINAL_PROCESS_BASE + index as u64;
        recorder.record(process, "invoke", "read", Some(key), Value::Null, None);
        let options = ReadOptions {
            level: ReadLevel::Linearizable,
            ..Default::default()
        };
        match reader.get(key, options).await {
            Ok(answer) => {
                let value = answer
                    .kv
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                recorder.record(process, "ok", "read", Some(key), json!(value), None);
            }
            Err(e) => {
                final_unread += 1;
                recorder.record(
                    process,
                    "fail",
                    "read",
                    Some(key),
                    Value::Null,
                    Some(e.code()),
                );
            }
        }
    }
    if final_unread > 0 {
        problems.push(format!(
            "{final_unread} keys could not be read back after the heal"
        ));
    }

    // Set invariant: every acknowledged add is present.
    let (set_acked, set_unknown, dup_rounds, dup_violations) = {
        let outcomes = workload.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        (
            outcomes.set_acked.clone(),
            outcomes.set_unknown.len(),
            outcomes.dup_rounds_checked,
            outcomes.dup_violations.clone(),
        )
    };
    let mut set_lost = Vec::new();
    match workload::read_set(&reader).await {
        Ok(found) => {
            set_lost = set_acked
                .iter()
                .filter(|e| !found.contains(*e))
                .cloned()
                .collect();
            if !set_lost.is_empty() {
                problems.push(format!(
                    "set: {} acknowledged adds lost, e.g. {:?}",
                    set_lost.len(),
                    &set_lost[..set_lost.len().min(5)]
                ));
            }
        }
        Err(e) => problems.push(format!("set: cannot read back: {e}")),
    }
    for violation in dup_violations.iter().take(10) {
        problems.push(format!("double-applied retry: {violation}"));
    }
    if dup_violations.len() > 10 {
        problems.push(format!(
            "double-applied retry: {} more",
            dup_violations.len() - 10
        ));
    }

    // Bank: every full read during the run summed to the total, and a final linearizable
    // read does too.
    let bank_json = if mix.bank {
        let (reads, transfers_ok, transfers_failed, violations) = {
            let outcomes = workload.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            for violation in &outcomes.bank_violations {
                problems.push(format!("bank: {violation}"));
            }
            if outcomes.bank_violations_total > outcomes.bank_violations.len() as u64 {
                problems.push(format!(
                    "bank: {} more violations",
                    outcomes.bank_violations_total - outcomes.bank_violations.len() as u64
                ));
            }
            (
                outcomes.bank_reads_checked,
                outcomes.bank_transfers_ok,
                outcomes.bank_transfers_failed,
                outcomes.bank_violations_total,
            )
        };
        let final_read =
            bank::read_range(&reader, config.bank_accounts, ReadLevel::Linearizable).await;
        let final_balances = match final_read {
            Ok((read, _)) => {
                if let Err(problem) = bank::check_read(config.bank_accounts, &read) {
                    problems.push(format!("bank: final read: {problem}"));
                }
                json!(bank::balances(&read))
            }
            Err(e) => {
                problems.push(format!("bank: cannot read back: {e}"));
                Value::Null
            }
        };
        json!({"accounts": config.bank_accounts, "total": bank::total(config.bank_accounts),
               "reads_checked": reads, "transfers_ok": transfers_ok,
               "transfers_failed": transfers_failed, "violations": violations,
               "final_balances": final_balances})
    } else {
        Value::Null
    };

    // Metrics: the commit index never went down.
    {
        let mut seen = BTreeMap::new();
        for id in cluster.ids() {
            if let Some(value) = cluster.metric(id, REGRESSIONS_METRIC).await {
                seen.insert(id, value);
            }
        }
        let during = regressions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (id, value) in during {
            let entry = seen.entry(id).or_insert(0.0);
            *entry = f64::max(*entry, value);
        }
        if seen.is_empty() {
            notes.push(format!("{REGRESSIONS_METRIC} not found in /metrics"));
        }
        for (id, value) in seen {
            if value > 0.0 {
                problems.push(format!("node {id}: {REGRESSIONS_METRIC} = {value}"));
            }
        }
    }
    // The rolling upgrade: its checks, and every member's final build and versions.
    let upgrade_json = if upgrading {
        let progress = env
            .upgrade
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        problems.extend(progress.problems());
        let statuses = cluster.statuses().await;
        let final_nodes: Vec<_> = cluster
            .nodes
            .iter()
            .filter(|n| n.member)
            .map(|n| {
                let versions = statuses
                    .iter()
                    .find(|s| s.node_id == n.id)
                    .map(upgrade::versions_of);
                (n.id, n.binary, versions)
            })
            .collect();
        if progress.finalized() {
            for (id, _, versions) in &final_nodes {
                if let Some(v) = versions {
                    if v.cluster_version != upgrade::UPGRADED_VERSION
                        || v.data_format != upgrade::UPGRADED_VERSION
                    {
                        problems.push(format!(
                            "upgrade: at the end node {id} reports cluster version {} data format {} after finalization",
                            v.cluster_version, v.data_format
                        ));
                    }
                }
            }
        }
        let upgrade_bin = config
            .upgrade_to
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let json = upgrade::summary_json(&progress, &final_nodes, &upgrade_bin);
        notes.push(format!(
            "rolling upgrade: {}",
            json["summary"].as_str().unwrap_or("-")
        ));
        json
    } else {
        Value::Null
    };
    let frames_duplicated = cluster.frames_duplicated();
    cluster.stop_all();

    // Audit evidence: every node's chain verifies against the anchors the others hold.
    let audit_files: Vec<(u64, PathBuf)> = cluster
        .nodes
        .iter()
        .map(|n| (n.id, n.data_dir.join("audit.log")))
        .filter(|(_, p)| p.exists())
        .collect();
    if audit_files.is_empty() {
        notes.push("no audit files found (a server without audit evidence)".to_string());
    }
    let mut audit_anchors_checked = 0u64;
    for (id, path) in &audit_files {
        let mut anchors = Vec::new();
        for (other, other_path) in &audit_files {
            if other != id {
                match keel_audit::anchors_from(other_path) {
                    Ok(a) => anchors.extend(a),
                    Err(e) => problems.push(format!("node {other}: audit file unreadable: {e}")),
                }
            }
        }
        match keel_audit::verify(path, &anchors) {
            Ok(report) if report.is_intact() => audit_anchors_checked += report.anchors_checked,
            Ok(report) => problems.push(format!(
                "node {id}: audit chain damaged: {:?}",
                report.damage
            )),
            Err(e) => problems.push(format!("node {id}: audit file unreadable: {e}")),
        }
    }

    // Reads below linearizable, against their declared staleness.
    let clock_violated = !clock_violations.is_empty();
    let events = recorder.events();
    let (stale_reads, lease_reads) = {
        let outcomes = workload.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        (outcomes.stale_reads.clone(), outcomes.lease_reads.clone())
    };
    let staleness_report = staleness::check(
        &events,
        &stale_reads,
        config.clock_uncertainty_ms,
        !clock_violated,
    );
    for violation in &staleness_report.violations {
        problems.push(format!("staleness: {violation}"));
    }
    if staleness_report.violations_total > staleness_report.violations.len() as u64 {
        problems.push(format!(
            "staleness: {} more violations",
            staleness_report.violations_total - staleness_report.violations.len() as u64
        ));
    }

    // Linearizability of the registers. With the clock assumption violated (and not flagged
    // by the node), reads served from a lease are left out, as the simulator does.
    let register_events = linearizability_events(&events, clock_violated.then_some(&lease_reads));
    let lease_reads_excluded = if clock_violated { lease_reads.len() } else { 0 };
    if clock_violated {
        notes.push(format!(
            "clock assumption violated ({}): {lease_reads_excluded} lease-served reads left out of the linearizability check, bounded-read staleness not checked",
            clock_violations.join("; ")
        ));
    }
    let (history, _) = parse_history(&to_jsonl(&register_events), Some(Format::Keel))
        .map_err(|e| anyhow::anyhow!("own history does not parse: {e}"))?;
    let options = Options {
        time_limit: Some(Duration::from_millis(CHECK_TIME_LIMIT_MS)),
        threads: 1,
        // Keys are never deleted: a read of nothing really means "absent" (a stale follower
        // answering for a key it has not seen yet is caught).
        strict_nil: true,
        ..Options::default()
    };
    let check_report = check(&history, Model::CasRegister, &options)
        .map_err(|e| anyhow::anyhow!("own history is malformed: {e}"))?;
    let (_, bad_keys, unknown_keys) = check_report.partition_counts();
    if check_report.verdict == Verdict::NotLinearizable {
        let keys: Vec<&str> = check_report
            .partitions
            .iter()
            .filter(|p| p.verdict == Verdict::NotLinearizable)
            .map(|p| p.label.trim_matches('"'))
            .take(10)
            .collect();
        problems.push(format!(
            "linearizability: {bad_keys} keys not linearizable: {keys:?} (see linearizability.html)"
        ));
    }
    let verdict = if !problems.is_empty() {
        "invalid"
    } else if check_report.verdict == Verdict::Unknown {
        notes.push(format!("checker gave up on {unknown_keys} keys"));
        "unknown"
    } else {
        "valid"
    };

    // Counts over client operations (completions).
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count() as u64;
    let (ok, fail, info) = (count("ok"), count("fail"), count("info"));
    let ops = count("invoke");
    let kills = env
        .leader_kills
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let failovers = failover_ms(&events, &kills);
    let faults = recorder.faults();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let json = json!({
        "verdict": verdict,
        "ops": ops, "ok": ok, "fail": fail, "info": info,
        "faults": faults_applied,
        "seed": config.seed,
        "nodes": config.nodes,
        "time_ms": config.time_ms,
        "mix": config.faults.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "mutant": config.mutant,
        "election_timeout_ms": config.election_timeout_ms,
        "problems": problems,
        "notes": notes,
        "linearizability": {
            "verdict": check_report.verdict.name(),
            "keys": check_report.partitions.len(),
            "keys_not_linearizable": bad_keys,
            "keys_unknown": unknown_keys,
            "elapsed_ms": check_report.elapsed.as_millis() as u64,
        },
        "set": {"acked": set_acked.len(), "unknown": set_unknown, "lost": set_lost.len()},
        "bank": bank_json,
        "staleness": {
            "bounded_checked": staleness_report.bounded_checked,
            "any_checked": staleness_report.any_checked,
            "bound_unchecked": staleness_report.bound_unchecked,
            "violations": staleness_report.violations_total,
        },
        "clock_assumption_violated": clock_violated,
        "clock_beyond": clock_beyond.iter().map(|(id, offset, flagged)| json!({"node": id, "offset_ms": offset, "flagged": flagged})).collect::<Vec<_>>(),
        "upgrade": upgrade_json,
        "membership_changes": env.membership.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        "rolling_restarts": rolling.iter().map(|(id, ms)| json!({"node": id, "caught_up_ms": ms})).collect::<Vec<_>>(),
        "lease_reads_excluded": lease_reads_excluded,
        "lease_reads": lease_reads.len(),
        "workloads": {"register": mix.register, "set": mix.set, "dup": mix.dup, "bank": mix.bank,
                      "stale_reads": mix.stale_reads},
        "clock_uncertainty_ms": config.clock_uncertainty_ms,
        "frames_duplicated": frames_duplicated,
        "dup": {"rounds_checked": dup_rounds, "violations": dup_violations.len()},
        "failover_ms": {
            "samples": failovers.len(),
            "p50": percentile(&failovers, 0.5),
            "p99": percentile(&failovers, 0.99),
            "election_timeout_ms": config.election_timeout_ms,
        },
        "recovery_ms": recovery_ms,
        "audit": {"files": audit_files.len(), "anchors_checked": audit_anchors_checked},
        "elapsed_ms": elapsed_ms,
        "regressions_seen_during_run": regressions.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        "metrics_samples": samples.lock().unwrap_or_else(|p| p.into_inner()).len(),
    });
    let summary = Summary {
        ops,
        ok,
        fail,
        info,
        faults: faults_applied,
        verdict,
        problems,
        notes,
        elapsed_ms,
        json,
    };

    // Output directory.
    let out = &config.out_dir;
    std::fs::write(out.join("history.jsonl"), to_jsonl(&events))?;
    std::fs::write(out.join("faults.jsonl"), faults_to_jsonl(&faults))?;
    let samples = samples.into_inner().unwrap_or_else(|p| p.into_inner());
    std::fs::write(out.join("metrics.jsonl"), metrics::to_jsonl(&samples))?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary.json)?,
    )?;
    let has_check_page = check_report.verdict != Verdict::Linearizable;
    if has_check_page {
        let page = keel_check::html::render(&[("registers".to_string(), &check_report)]);
        std::fs::write(out.join("linearizability.html"), page)?;
    }
    let html = report::render(
        &summary,
        &events,
        &faults,
        &samples,
        &config,
        has_check_page,
    );
    std::fs::write(out.join("report.html"), html)?;
    Ok(summary)
}

/// The register operations for keel-check; with `excluded` (lease reads under a violated clock
/// assumption), those reads and their invocations are left out.
fn linearizability_events(
    events: &[Event],
    excluded: Option<&std::collections::BTreeSet<(u64, u64)>>,
) -> Vec<Event> {
    let register: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.f.as_str(), "read" | "write" | "cas"))
        .collect();
    let Some(excluded) = excluded else {
        return register.into_iter().cloned().collect();
    };
    let mut skip = vec![false; register.len()];
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, event) in register.iter().enumerate() {
        if event.kind == "invoke" {
            open.insert(event.process, index);
        } else if let Some(invoke) = open.remove(&event.process) {
            if excluded.contains(&(event.process, event.time_ns)) {
                skip[invoke] = true;
                skip[index] = true;
            }
        }
    }
    register
        .into_iter()
        .zip(skip)
        .filter(|(_, skip)| !skip)
        .map(|(e, _)| e.clone())
        .collect()
}

/// Parses a duration: `90` (seconds), `500ms`, `60s`, `30m`, `1h`.
pub fn parse_duration_ms(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (text, 1_000)
    };
    let value: u64 = number
        .trim()
        .parse()
        .with_context(|| format!("bad duration {text:?} (want e.g. 60s, 30m, 500ms)"))?;
    value
        .checked_mul(unit_ms)
        .filter(|&ms| ms <= 24 * 3_600_000)
        .with_context(|| format!("duration {text:?} above 24h"))
}

/// Runs a campaign on its own multi-threaded runtime; Ctrl-C or SIGTERM stop it (every child
/// is killed as the cluster drops) and count as a harness error.
pub fn run_blocking(config: CampaignConfig) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("signal handler")?;
        tokio::select! {
            summary = run(config) => summary,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (Ctrl-C); every node stopped"),
            _ = terminate.recv() => anyhow::bail!("terminated (SIGTERM); every node stopped"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("60s").unwrap(), 60_000);
        assert_eq!(parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("abc").is_err());
        assert!(parse_duration_ms("100h").is_err());
    }

    #[test]
    fn failover_times() {
        let event = |time_ns, kind, f: &str| Event {
            process: 0,
            kind,
            f: f.to_string(),
            key: None,
            value: Value::Null,
            time_ns,
            error: None,
        };
        let events = vec![
            event(5_000_000, "ok", "write"),
            event(12_000_000, "ok", "read"),
            event(30_000_000, "ok", "write"),
        ];
        assert_eq!(failover_ms(&events, &[10_000_000]), vec![20]);
        assert_eq!(percentile(&[1, 2, 3, 100], 0.5), Some(3));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
