//! The nemesis: a seeded schedule of faults (fixed by `--seed` and the mix), and its executor.
//!
//! The schedule is a list of steps: wait `quiet_ms`, apply a fault for `hold_ms`, heal. Which
//! node a fault hits is chosen when the schedule is made (by index into the sorted node ids);
//! "the leader" is resolved when the fault starts, because the real system's timing decides
//! who leads. Every start and end is written to the fault log.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::{ClockSkew, Cluster};
use crate::history::Recorder;
use crate::proxy::LinkMode;

/// Steps one schedule holds, at most.
pub const STEPS_MAX: usize = 100_000;
/// Flapping partitions toggle this often.
pub const FLAP_INTERVAL_MS: u64 = 300;

/// Fault families selectable with `--faults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Random majority/minority split (both directions black-holed).
    Partition,
    /// The current leader cut off from everyone.
    IsolateLeader,
    /// One node's outgoing links black-holed, incoming ones open.
    Asymmetric,
    /// Two sides that only a bridge node joins.
    Bridge,
    /// A partition switched on and off every `FLAP_INTERVAL_MS`.
    Flapping,
    /// Every link delayed with jitter (reorders frames across lanes).
    Delay,
    /// Every open peer connection reset.
    Reset,
    /// kill -9 a node (the leader half of the time), restart after the hold.
    Kill,
    /// SIGSTOP a node (the leader half of the time) longer than the election timeout.
    Pause,
    /// Hand leadership to another voter.
    Transfer,
    /// Restart a node with its wall clock offset through libfaketime (within bounds).
    Clock,
    /// Restart a node with a slow disk (`--test-fsync-delay-ms`), restored after the hold.
    SlowDisk,
    /// A CPU-burning process pinned beside one node (the leader half of the time).
    NoisyNeighbour,
    /// Every whole peer frame written twice (Raft messages are idempotent).
    Duplicate,
    /// Restart a node with its wall clock offset beyond the configured clock uncertainty:
    /// the run says "clock assumption violated" unless the node flags its clock untrusted.
    ClockBeyond,
    /// Restart every node one by one (SIGTERM), waiting for each to catch up.
    RollingRestart,
    /// Restart a node reading its wall clock through a jump file, then after a second jump it
    /// beyond the clock uncertainty while it runs, and back at the end of the hold: the node
    /// must see the discontinuity and flag its clock untrusted (else the run says "clock
    /// assumption violated").
    ClockJump,
    /// Replace a voter under load: start a spare, add it as a learner, wait for it to catch
    /// up, promote it, remove another voter (never the leader) and stop that node.
    Membership,
    /// Restart a node whose wall clock drifts (libfaketime rate) so little that its error
    /// stays within half the clock uncertainty for the hold; true clock again at the end.
    ClockDrift,
    /// One step of a seeded rolling upgrade to the `--upgrade-to` build (upgrade a node, roll
    /// one back, finalize, check that the old build then refuses): see [`crate::upgrade`].
    /// Only with `--upgrade-to`.
    Upgrade,
}

/// What the executor needs beyond the cluster, and what it reports back.
#[derive(Debug, Default)]
pub struct NemesisEnv {
    /// The servers' configured clock uncertainty.
    pub clock_uncertainty_ms: u64,
    /// Times (ns since the run's start) of kills that hit the leader.
    pub leader_kills: std::sync::Mutex<Vec<u64>>,
    /// Clock faults beyond the bound: (node, offset ms, whether the node flagged its clock).
    pub clock_beyond: std::sync::Mutex<Vec<(u64, i64, bool)>>,
    /// Nodes restarted by rolling restarts, and how long each took to catch up (ms; None:
    /// not within the bound).
    pub rolling: std::sync::Mutex<Vec<(u64, Option<u64>)>>,
    /// Membership changes: one line each (what was done, or where it stopped).
    pub membership: std::sync::Mutex<Vec<String>>,
    /// A clock jump about to happen: (node, offset ms), set when the fault starts.
    pub pending_jump: std::sync::Mutex<Option<(u64, i64)>>,
    /// The rolling upgrade's progress and checks.
    pub upgrade: std::sync::Mutex<crate::upgrade::Progress>,
}

/// A clock-jump node runs this long on a true clock before its clock jumps.
pub const CLOCK_JUMP_DELAY_MS: u64 = 1_000;

/// The server's counter of wall-clock discontinuities (a node that saw one distrusts its clock).
pub const DISCONTINUITIES_METRIC: &str = "keel_clock_discontinuities_total";
/// A restarted node must catch up within this during a rolling restart (else the roll goes on
/// and the run notes it).
pub const ROLLING_CATCH_UP_MS_MAX: u64 = 10_000;
/// While fewer `upgrade` steps than this are scheduled, three steps in four are `upgrade` (a
/// rolling upgrade needs about nodes + 2 x rollbacks + 2 firings to finish and be checked);
/// these come on top of the fault time the other kinds get.
pub const UPGRADE_STEPS_DENSE: usize = 24;

impl FaultKind {
    pub const ALL: [FaultKind; 20] = [
        FaultKind::Partition,
        FaultKind::IsolateLeader,
        FaultKind::Asymmetric,
        FaultKind::Bridge,
        FaultKind::Flapping,
        FaultKind::Delay,
        FaultKind::Reset,
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Transfer,
        FaultKind::Clock,
        FaultKind::SlowDisk,
        FaultKind::NoisyNeighbour,
        FaultKind::Duplicate,
        FaultKind::ClockBeyond,
        FaultKind::RollingRestart,
        FaultKind::Membership,
        FaultKind::ClockJump,
        FaultKind::ClockDrift,
        FaultKind::Upgrade,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Asymmetric => "asymmetric",
            FaultKind::Bridge => "bridge",
            FaultKind::Flapping => "flapping",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "reset",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Transfer => "transfer",
            FaultKind::Clock => "clock",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::NoisyNeighbour => "noisy-neighbour",
            FaultKind::Duplicate => "duplicate",
            FaultKind::ClockBeyond => "clock-beyond",
            FaultKind::RollingRestart => "rolling-restart",
            FaultKind::Membership => "membership",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::ClockDrift => "clock-drift",
            FaultKind::Upgrade => "upgrade",
        }
    }

    /// Parses a comma list: names above, `partitions` (every network partition kind), `all`
    /// (every kind but `upgrade`, which needs an upgrade build: see
    /// [`FaultKind::parse_mix_with`]).
    pub fn parse_mix(text: &str) -> Result<Vec<FaultKind>> {
        FaultKind::parse_mix_with(text, false)
    }

    /// Like [`FaultKind::parse_mix`]; with `upgrade_build` (`--upgrade-to` given), `upgrade`
    /// is allowed and `all` includes it.
    pub fn parse_mix_with(text: &str, upgrade_build: bool) -> Result<Vec<FaultKind>> {
        let mut mix = BTreeSet::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => mix.extend(
                    FaultKind::ALL
                        .into_iter()
                        .filter(|&k| upgrade_build || k != FaultKind::Upgrade),
                ),
                "upgrade" if !upgrade_build => {
                    bail!("fault \"upgrade\" needs --upgrade-to BIN (the build to upgrade to)")
                }
                "none" => {}
                "partitions" => mix.extend([
                    FaultKind::Partition,
                    FaultKind::IsolateLeader,
                    FaultKind::Asymmetric,
                    FaultKind::Bridge,
                    FaultKind::Flapping,
                ]),
                _ => match FaultKind::ALL.iter().find(|k| k.name() == word) {
                    Some(kind) => {
                        mix.insert(*kind);
                    }
                    None => bail!(
                        "unknown fault {word:?}; known: all, none, partitions, {}",
                        FaultKind::ALL.map(|k| k.name()).join(", ")
                    ),
                },
            }
        }
        Ok(mix.into_iter().collect())
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub quiet_ms: u64,
    pub kind: FaultKind,
    pub hold_ms: u64,
    /// Random choices fixed by the seed (node picks, sides), used by the executor.
    pub choice: u64,
    /// Pick the leader as the target (kill, pause) when true.
    pub target_leader: bool,
}

/// Makes the schedule for `duration_ms` of faults. Deterministic in (seed, mix, timings).
pub fn schedule(
    seed: u64,
    mix: &[FaultKind],
    duration_ms: u64,
    election_timeout_ms: u64,
) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut steps = Vec::new();
    if mix.is_empty() {
        return steps;
    }
    let mut elapsed_ms = 0;
    let upgrading = mix.contains(&FaultKind::Upgrade);
    let mut upgrade_steps = 0;
    while elapsed_ms < duration_ms && steps.len() < STEPS_MAX {
        // A rolling upgrade needs many firings: dense at first (the rng is drawn only when
        // `upgrade` is in the mix, so other mixes keep their schedules).
        let dense = upgrading && upgrade_steps < UPGRADE_STEPS_DENSE && rng.gen_ratio(3, 4);
        let kind = if dense {
            FaultKind::Upgrade
        } else {
            *mix.choose(&mut rng).expect("non-empty mix")
        };
        upgrade_steps += usize::from(kind == FaultKind::Upgrade);
        let quiet_ms = if kind == FaultKind::Upgrade {
            rng.gen_range(300..=1_000)
        } else {
            rng.gen_range(500..=2_000)
        };
        let hold_ms = match kind {
            FaultKind::Transfer | FaultKind::Reset => 0,
            // Nominal: a graceful restart and a catch-up.
            FaultKind::Upgrade => 2_000,
            // Nominal: the roll takes as long as the nodes need to catch up.
            FaultKind::RollingRestart | FaultKind::Membership => 3_000,
            // Longer than the election timeout so the pause really deposes a leader.
            FaultKind::Pause => rng.gen_range(2 * election_timeout_ms..=5 * election_timeout_ms),
            _ => rng.gen_range(1_500..=5_000),
        };
        steps.push(Step {
            quiet_ms,
            kind,
            hold_ms,
            choice: rng.gen(),
            target_leader: rng.gen_bool(0.5),
        });
        // The dense upgrade steps come on top of the others' time (once the upgrade is done
        // the executor skips them without waiting), so the other faults keep their share.
        if kind != FaultKind::Upgrade || upgrade_steps > UPGRADE_STEPS_DENSE {
            elapsed_ms += quiet_ms + hold_ms;
        }
    }
    assert!(steps.len() <= STEPS_MAX);
    steps
}

/// Splits `ids` by `choice`: a minority (at least one) and the rest.
fn split(ids: &[u64], choice: u64) -> (Vec<u64>, Vec<u64>) {
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(choice));
    let minority_max = (ids.len() - 1) / 2;
    let minority = 1 + (choice as usize >> 8) % minority_max.max(1);
    let minority = minority.min(ids.len() - 1);
    let rest = shuffled.split_off(minority);
    (shuffled, rest)
}

fn pick(ids: &[u64], choice: u64) -> u64 {
    ids[(choice as usize) % ids.len()]
}

/// Applies the schedule until `deadline` passes or it ends; heals after every step.
pub async fn run(
    cluster: &tokio::sync::Mutex<Cluster>,
    recorder: &Recorder,
    steps: &[Step],
    deadline: tokio::time::Instant,
    env: &NemesisEnv,
) -> Result<u64> {
    let mut applied: u64 = 0;
    for step in steps {
        if step.kind == FaultKind::Upgrade && lock(&env.upgrade).done() {
            continue;
        }
        if tokio::time::Instant::now() + Duration::from_millis(step.quiet_ms) >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(step.quiet_ms)).await;
        if step.kind == FaultKind::RollingRestart {
            recorder.fault("start", step.kind.name(), "every node in turn".to_string());
            let detail = rolling_restart(cluster, env, deadline).await?;
            recorder.fault("end", step.kind.name(), detail);
            applied += 1;
            continue;
        }
        if step.kind == FaultKind::Upgrade {
            let progress = &env.upgrade;
            let done = crate::upgrade::step(cluster, progress, recorder, step.choice, deadline);
            if done.await?.is_some() {
                applied += 1;
            }
            continue;
        }
        if step.kind == FaultKind::Membership {
            let detail = membership_change(cluster, step, deadline).await?;
            if let Some(detail) = detail {
                recorder.fault("instant", step.kind.name(), detail.clone());
                lock(&env.membership).push(detail);
                applied += 1;
            }
            continue;
        }
        let hold_until = (tokio::time::Instant::now() + Duration::from_millis(step.hold_ms))
            .min(deadline.max(tokio::time::Instant::now()));
        let detail = {
            let mut cluster = cluster.lock().await;
            start_fault(&mut cluster, step, env, recorder).await?
        };
        let Some(detail) = detail else { continue };
        applied += 1;
        let instant = step.hold_ms == 0;
        recorder.fault(
            if instant { "instant" } else { "start" },
            step.kind.name(),
            detail.clone(),
        );
        let mut jumped = None;
        if step.kind == FaultKind::Flapping {
            flap(cluster, step, hold_until).await;
        } else if step.kind == FaultKind::ClockJump {
            let pending = lock(&env.pending_jump).take();
            let jump_at = tokio::time::Instant::now() + Duration::from_millis(CLOCK_JUMP_DELAY_MS);
            if let (Some((id, offset_ms)), true) =
                (pending, jump_at + Duration::from_millis(500) < hold_until)
            {
                tokio::time::sleep_until(jump_at).await;
                cluster.lock().await.jump_clock(id, offset_ms)?;
                recorder.fault(
                    "instant",
                    "clock-jump",
                    format!("node {id} wall clock jumps {offset_ms:+} ms"),
                );
                jumped = Some((id, offset_ms));
            }
            tokio::time::sleep_until(hold_until).await;
        } else {
            tokio::time::sleep_until(hold_until).await;
        }
        if !instant {
            let mut cluster = cluster.lock().await;
            if step.kind == FaultKind::ClockBeyond {
                // Did the skewed node notice (a discontinuity marks its clock untrusted)?
                let skewed: Vec<(u64, i64)> = cluster
                    .nodes
                    .iter()
                    .filter(|n| n.member)
                    .filter_map(|n| {
                        let skew = n.skew?;
                        let error_ms = skew.error_ms_after(step.hold_ms) as i64;
                        // The sign of the error: the offset's, or the drift's.
                        let sign = if skew.offset_ms != 0 {
                            skew.offset_ms.signum()
                        } else {
                            skew.rate_ppm.signum()
                        };
                        Some((n.id, sign * error_ms))
                    })
                    .filter(|(_, error_ms)| error_ms.unsigned_abs() > env.clock_uncertainty_ms)
                    .collect();
                for (id, offset) in skewed {
                    let flagged = cluster
                        .metric(id, DISCONTINUITIES_METRIC)
                        .await
                        .is_some_and(|v| v > 0.0);
                    lock(&env.clock_beyond).push((id, offset, flagged));
                }
            }
            if let Some((id, offset)) = jumped {
                let flagged = cluster
                    .metric(id, DISCONTINUITIES_METRIC)
                    .await
                    .is_some_and(|v| v > 0.0);
                lock(&env.clock_beyond).push((id, offset, flagged));
            }
            end_fault(&mut cluster, step, env.clock_uncertainty_ms)?;
            recorder.fault("end", step.kind.name(), detail);
        }
    }
    if let Some(last) = steps.iter().rev().find(|s| s.kind == FaultKind::Upgrade) {
        crate::upgrade::finish(cluster, &env.upgrade, recorder, last.choice).await?;
    }
    Ok(applied)
}

/// Starts one fault; returns its description, or None when it does not apply now.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Restarts every node in turn, leader last; waits for each to catch up (bounded) before the
/// next. The cluster lock is released while waiting, so the workload and scrapes go on.
async fn rolling_restart(
    cluster: &tokio::sync::Mutex<Cluster>,
    env: &NemesisEnv,
    deadline: tokio::time::Instant,
) -> Result<String> {
    let (mut order, leader) = {
        let cluster = cluster.lock().await;
        (cluster.ids(), cluster.leader().await)
    };
    if let Some(leader) = leader {
        order.retain(|&i| i != leader);
        order.push(leader);
    }
    let mut done = Vec::new();
    for id in order {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let how = cluster.lock().await.restart_graceful(id).await?;
        let bound_ms = catch_up_bound_ms(deadline);
        let caught_up_ms = wait_caught_up(cluster, id, bound_ms).await;
        lock(&env.rolling).push((id, caught_up_ms));
        done.push(format!(
            "{id} ({how}, {})",
            caught_up_ms.map_or("not caught up in time".to_string(), |ms| format!(
                "caught up in {ms} ms"
            ))
        ));
    }
    Ok(format!("restarted {}", done.join(", ")))
}

/// How long a restarted node may take to catch up: bounded, and never far past the end of the
/// fault time.
pub(crate) fn catch_up_bound_ms(deadline: tokio::time::Instant) -> u64 {
    let remaining_ms = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .as_millis() as u64;
    ROLLING_CATCH_UP_MS_MAX.min(remaining_ms + 2_000)
}

/// Waits (bounded) until node `id` answers, knows a leader and has applied the commit index
/// the leader had when the wait began (the leader's commit moves on under load: chasing it
/// would never end). Returns the time it took.
pub(crate) async fn wait_caught_up(
    cluster: &tokio::sync::Mutex<Cluster>,
    id: u64,
    bound_ms: u64,
) -> Option<u64> {
    let started = std::time::Instant::now();
    let polls_max = bound_ms / 100;
    let mut target = None;
    for _ in 0..polls_max {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let statuses = cluster.lock().await.statuses().await;
        if target.is_none() {
            target = statuses
                .iter()
                .filter(|s| s.role == "leader")
                .max_by_key(|s| s.term)
                .map(|s| s.commit_index);
        }
        let mine = statuses.iter().find(|s| s.node_id == id);
        if let (Some(target), Some(mine)) = (target, mine) {
            if mine.leader.is_some() && mine.applied_index >= target {
                return Some(started.elapsed().as_millis() as u64);
            }
        }
    }
    None
}

/// Replaces a voter: spare started, added as learner, caught up, promoted; then another voter
/// (not the leader) removed and stopped. None when it does not apply (no leader, no spare
/// left, or an older server without `--peer-routes`). Every step's outcome is in the detail.
async fn membership_change(
    cluster: &tokio::sync::Mutex<Cluster>,
    step: &Step,
    deadline: tokio::time::Instant,
) -> Result<Option<String>> {
    let (spare, leader, admin, peer_addr, client_addr) = {
        let mut guard = cluster.lock().await;
        if !guard.peer_routes_supported {
            return Ok(None);
        }
        let Some(spare) = guard.spare() else {
            return Ok(None);
        };
        let Some(leader) = guard.leader().await else {
            return Ok(None);
        };
        let endpoints: Vec<String> = guard
            .ids()
            .iter()
            .map(|&id| guard.node(id).client_addr.clone())
            .collect();
        let admin = crate::workload::client(&endpoints, 5_000, step.choice)
            .map_err(|e| anyhow::anyhow!("client: {e}"))?;
        let node = guard.node(spare);
        let (peer_addr, client_addr) = (node.peer_addr.clone(), node.client_addr.clone());
        guard.start(spare)?;
        (spare, leader, admin, peer_addr, client_addr)
    };
    let mut detail = format!("node {spare} started");
    if let Err(e) = admin.add_learner(spare, &peer_addr, &client_addr).await {
        detail.push_str(&format!(
            ", add learner failed ({}): node stopped",
            e.code()
        ));
        cluster.lock().await.kill(spare)?;
        return Ok(Some(detail));
    }
    cluster.lock().await.set_member(spare, true);
    detail.push_str(", added as learner");
    let bound_ms = catch_up_bound_ms(deadline);
    match wait_caught_up(cluster, spare, bound_ms).await {
        Some(ms) => detail.push_str(&format!(", caught up in {ms} ms")),
        None => {
            detail.push_str(", did not catch up in time: stays a learner");
            return Ok(Some(detail));
        }
    }
    // A learner that just caught up may still be refused promotion for a moment: retry.
    let attempts_max = 5;
    let mut promoted = Err(String::new());
    for _ in 0..attempts_max {
        promoted = admin.promote(spare).await.map_err(|e| e.code());
        if promoted.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Err(code) = promoted {
        detail.push_str(&format!(", promote failed ({code}): stays a learner"));
        return Ok(Some(detail));
    }
    detail.push_str(", promoted");
    // Remove a voter other than the new one: a third of the time the leader itself (it
    // commits the configuration without itself and steps down; the rest elect a successor),
    // otherwise another voter.
    let (voters, leader_now) = {
        let guard = cluster.lock().await;
        let leader_now = guard.leader().await.unwrap_or(leader);
        (guard.ids(), leader_now)
    };
    let others: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|&i| i != leader_now && i != spare)
        .collect();
    let remove_leader = (step.choice >> 16).is_multiple_of(3) && leader_now != spare;
    let victim = if remove_leader || others.is_empty() {
        if leader_now == spare {
            return Ok(Some(detail));
        }
        leader_now
    } else {
        pick(&others, step.choice >> 8)
    };
    let victim_is_leader = victim == leader_now;
    let mut removed = Err(String::new());
    for _ in 0..attempts_max {
        removed = admin.remove_member(victim).await.map_err(|e| e.code());
        if removed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    match removed {
        Ok(_) => {
            let mut guard = cluster.lock().await;
            guard.kill(victim)?;
            guard.set_member(victim, false);
            let role = if victim_is_leader {
                " (the leader)"
            } else {
                ""
            };
            detail.push_str(&format!(", node {victim}{role} removed and stopped"));
        }
        Err(code) => detail.push_str(&format!(", removing node {victim} failed ({code})")),
    }
    Ok(Some(detail))
}

async fn start_fault(
    cluster: &mut Cluster,
    step: &Step,
    env: &NemesisEnv,
    recorder: &Recorder,
) -> Result<Option<String>> {
    let leader_kills = &env.leader_kills;
    let ids = cluster.ids();
    let black_hole = LinkMode::BlackHole;
    let leader = cluster.leader().await;
    let target = match (step.target_leader, leader) {
        (true, Some(leader)) => leader,
        _ => pick(&ids, step.choice),
    };
    let detail = match step.kind {
        FaultKind::Partition | FaultKind::Flapping => {
            let (minority, majority) = split(&ids, step.choice);
            cluster.cut_between(&minority, &majority, black_hole);
            format!("{minority:?} | {majority:?}")
        }
        FaultKind::IsolateLeader => {
            let Some(leader) = leader else {
                return Ok(None);
            };
            let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            cluster.cut_between(&[leader], &rest, black_hole);
            format!("leader {leader} isolated")
        }
        FaultKind::Asymmetric => {
            let node = pick(&ids, step.choice);
            for &other in &ids {
                if other != node {
                    cluster.set_link(node, other, black_hole);
                }
            }
            format!("{node} -> * black-holed (it still hears the others)")
        }
        FaultKind::Bridge => {
            if ids.len() < 3 {
                return Ok(None);
            }
            let mut shuffled = ids.clone();
            shuffled.shuffle(&mut ChaCha8Rng::seed_from_u64(step.choice));
            let bridge = shuffled[0];
            let half = (shuffled.len() - 1) / 2;
            let left = shuffled[1..1 + half].to_vec();
            let right = shuffled[1 + half..].to_vec();
            cluster.cut_between(&left, &right, black_hole);
            format!("{left:?} | {right:?} bridged by {bridge}")
        }
        FaultKind::Delay => {
            let base_ms = 20 + step.choice % 80;
            let jitter_ms = base_ms / 2;
            cluster.set_all_links(LinkMode::Delay { base_ms, jitter_ms });
            format!("all links {base_ms}±{jitter_ms} ms")
        }
        FaultKind::Reset => {
            cluster.reset_connections();
            "all peer connections reset".to_string()
        }
        FaultKind::Kill => {
            cluster.kill(target)?;
            if Some(target) == leader {
                let mut kills = leader_kills.lock().unwrap_or_else(|p| p.into_inner());
                kills.push(recorder.now_ns());
            }
            format!(
                "kill -9 node {target}{}",
                if Some(target) == leader {
                    " (leader)"
                } else {
                    ""
                }
            )
        }
        FaultKind::Pause => {
            let node = cluster
                .nodes
                .iter()
                .find(|n| n.id == target)
                .expect("known id");
            if !node.running() {
                return Ok(None);
            }
            cluster.pause(target)?;
            format!(
                "SIGSTOP node {target}{}",
                if Some(target) == leader {
                    " (leader)"
                } else {
                    ""
                }
            )
        }
        FaultKind::Transfer => {
            let Some(leader) = leader else {
                return Ok(None);
            };
            let others: Vec<u64> = ids.iter().copied().filter(|&i| i != leader).collect();
            let to = pick(&others, step.choice);
            let client = cluster.client_for(leader)?;
            let answer = client.transfer_leader(Some(to)).await;
            format!(
                "transfer {leader} -> {to}: {}",
                match answer {
                    Ok(_) => "accepted".to_string(),
                    Err(e) => e.code(),
                }
            )
        }
        FaultKind::Clock => {
            if !cluster.faketime_available() {
                return Ok(None);
            }
            // Within the configured uncertainty: everything must hold.
            let bound = env.clock_uncertainty_ms as i64;
            let offset_ms = (step.choice % (2 * bound as u64 + 1)) as i64 - bound;
            let node = pick(&ids, step.choice >> 16);
            cluster.restart_with_skew(
                node,
                Some(ClockSkew {
                    offset_ms,
                    rate_ppm: 0,
                }),
            )?;
            format!("node {node} restarted with wall clock {offset_ms:+} ms (libfaketime, within ±{bound} ms)")
        }
        FaultKind::ClockBeyond => {
            if !cluster.faketime_available() {
                return Ok(None);
            }
            let bound = env.clock_uncertainty_ms as i64;
            let sign = if (step.choice >> 12) & 1 == 0 { 1 } else { -1 };
            let role = if Some(target) == leader {
                " (leader)"
            } else {
                ""
            };
            if (step.choice >> 13) & 1 == 0 {
                let offset_ms = sign * (bound + 500 + (step.choice % 2_000) as i64);
                let skew = ClockSkew {
                    offset_ms,
                    rate_ppm: 0,
                };
                cluster.restart_with_skew(target, Some(skew))?;
                format!(
                    "node {target}{role} restarted with wall clock {offset_ms:+} ms, beyond the ±{bound} ms bound (libfaketime)"
                )
            } else {
                // A drift that carries the error past the bound early in the hold (4x by its
                // end): gradual, so no discontinuity to notice.
                let rate_ppm = sign * (4 * bound * 1_000_000 / step.hold_ms.max(1) as i64);
                let skew = ClockSkew {
                    offset_ms: 0,
                    rate_ppm,
                };
                cluster.restart_with_skew(target, Some(skew))?;
                format!(
                    "node {target}{role} restarted with its wall clock drifting {rate_ppm:+} ppm: {} ms off by the end of the hold, beyond the ±{bound} ms bound (libfaketime)",
                    skew.error_ms_after(step.hold_ms)
                )
            }
        }
        FaultKind::ClockDrift => {
            if !cluster.faketime_available() {
                return Ok(None);
            }
            // Within the bound: the error reaches at most half the uncertainty by the end of
            // the hold, and the node gets its true clock back then.
            let bound = env.clock_uncertainty_ms;
            let rate_max = (bound * 1_000_000 / (2 * step.hold_ms.max(1))).max(1) as i64;
            let magnitude = 1 + (step.choice % rate_max as u64) as i64;
            let rate_ppm = if (step.choice >> 12) & 1 == 0 {
                magnitude
            } else {
                -magnitude
            };
            let skew = ClockSkew {
                offset_ms: 0,
                rate_ppm,
            };
            assert!(skew.error_ms_after(step.hold_ms) <= bound);
            cluster.restart_with_skew(target, Some(skew))?;
            format!(
                "node {target}{} restarted with its wall clock drifting {rate_ppm:+} ppm ({} ms off at most by the end of the hold, within ±{bound} ms; libfaketime)",
                if Some(target) == leader { " (leader)" } else { "" },
                skew.error_ms_after(step.hold_ms)
            )
        }
        FaultKind::ClockJump => {
            if !cluster.faketime_available() {
                return Ok(None);
            }
            let bound = env.clock_uncertainty_ms as i64;
            let magnitude = bound + 500 + (step.choice % 2_000) as i64;
            let offset_ms = if (step.choice >> 12) & 1 == 0 {
                magnitude
            } else {
                -magnitude
            };
            cluster.restart_with_clock_file(target, true)?;
            *lock(&env.pending_jump) = Some((target, offset_ms));
            format!(
                "node {target}{} restarted on a jump file; its wall clock jumps {offset_ms:+} ms after {CLOCK_JUMP_DELAY_MS} ms and back at the end (beyond ±{bound} ms)",
                if Some(target) == leader { " (leader)" } else { "" }
            )
        }
        FaultKind::NoisyNeighbour => {
            let running = cluster.nodes.iter().any(|n| n.id == target && n.running());
            if !running {
                return Ok(None);
            }
            let detail = cluster.start_noisy(target)?;
            format!(
                "{detail}{}",
                if Some(target) == leader {
                    " (leader)"
                } else {
                    ""
                }
            )
        }
        FaultKind::Duplicate => {
            cluster.set_all_links(LinkMode::Duplicate);
            "every peer frame on every link sent twice".to_string()
        }
        FaultKind::RollingRestart | FaultKind::Membership | FaultKind::Upgrade => {
            unreachable!("run() executes rolling restarts, membership changes and upgrades itself")
        }
        FaultKind::SlowDisk => {
            if !cluster.fsync_delay_supported {
                return Ok(None);
            }
            let delay_ms = 20 + step.choice % 181;
            cluster.restart_with_fsync_delay(target, delay_ms)?;
            format!(
                "node {target}{} restarted with every WAL sync delayed {delay_ms} ms",
                if Some(target) == leader {
                    " (leader)"
                } else {
                    ""
                }
            )
        }
    };
    Ok(Some(detail))
}

fn end_fault(cluster: &mut Cluster, step: &Step, clock_uncertainty_ms: u64) -> Result<()> {
    match step.kind {
        FaultKind::Kill => {
            for id in cluster.ids() {
                if !cluster.nodes.iter().any(|n| n.id == id && n.running()) {
                    cluster.start(id)?;
                }
            }
        }
        FaultKind::Pause => {
            for id in cluster.ids() {
                cluster.resume(id)?;
            }
        }
        FaultKind::Clock => {
            // The skewed node keeps its offset until the final heal.
        }
        FaultKind::ClockBeyond => {
            // Back to a true clock after the hold (the clock-beyond window is in the log).
            cluster.restart_true_clock_where(|s| {
                s.offset_ms.unsigned_abs() > clock_uncertainty_ms || s.rate_ppm != 0
            })?;
        }
        FaultKind::ClockDrift => {
            // Back to a true clock before the drift could carry the error past the bound.
            cluster.restart_true_clock_where(|s| s.rate_ppm != 0)?;
        }
        FaultKind::NoisyNeighbour => cluster.stop_noisy(),
        FaultKind::ClockJump => {
            // Jump back to true time (a second discontinuity); the file stays until the heal.
            let jumping: Vec<u64> = cluster
                .nodes
                .iter()
                .filter(|n| n.member && n.running() && n.clock_file.is_some())
                .map(|n| n.id)
                .collect();
            for id in jumping {
                cluster.jump_clock(id, 0)?;
            }
        }
        FaultKind::RollingRestart | FaultKind::Membership | FaultKind::Upgrade => {}
        FaultKind::SlowDisk => {
            let slow: Vec<u64> = cluster
                .nodes
                .iter()
                .filter(|n| n.member && n.fsync_delay_ms > 0)
                .map(|n| n.id)
                .collect();
            for id in slow {
                cluster.restart_with_fsync_delay(id, 0)?;
            }
        }
        _ => cluster.heal_network(),
    }
    Ok(())
}

async fn flap(cluster: &tokio::sync::Mutex<Cluster>, step: &Step, until: tokio::time::Instant) {
    let ids = cluster.lock().await.ids();
    let (minority, majority) = split(&ids, step.choice);
    let mut cut = true;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(FLAP_INTERVAL_MS)).await;
        cut = !cut;
        let mode = if cut {
            LinkMode::BlackHole
        } else {
            LinkMode::Pass
        };
        cluster.lock().await.cut_between(&minority, &majority, mode);
    }
}

/// Undoes everything: network healed, paused nodes resumed, dead nodes restarted, clocks
/// reset (skewed nodes restarted without faketime).
pub fn heal_all(cluster: &mut Cluster) -> Result<()> {
    cluster.heal_network();
    cluster.stop_noisy();
    for id in cluster.ids() {
        cluster.resume(id)?;
        let skewed = cluster
            .nodes
            .iter()
            .any(|n| n.id == id && (n.skew.is_some() || n.clock_file.is_some()));
        if skewed {
            cluster.restart_with_skew(id, None)?;
        }
        let slow = cluster
            .nodes
            .iter()
            .any(|n| n.id == id && n.fsync_delay_ms > 0);
        if slow {
            cluster.restart_with_fsync_delay(id, 0)?;
        }
        cluster.start(id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_deterministic_and_within_mix() {
        let mix = FaultKind::parse_mix("partition,kill,pause").unwrap();
        let a = schedule(7, &mix, 60_000, 300);
        let b = schedule(7, &mix, 60_000, 300);
        assert_eq!(a, b);
        assert!(a.len() >= 8);
        assert!(a.iter().all(|s| mix.contains(&s.kind)));
        let c = schedule(8, &mix, 60_000, 300);
        assert_ne!(a, c);
        assert!(a
            .iter()
            .filter(|s| s.kind == FaultKind::Pause)
            .all(|s| s.hold_ms >= 600));
    }

    #[test]
    fn mix_parsing() {
        assert_eq!(
            FaultKind::parse_mix("all").unwrap().len(),
            FaultKind::ALL.len() - 1,
            "all but upgrade without an upgrade build"
        );
        assert!(!FaultKind::parse_mix("all")
            .unwrap()
            .contains(&FaultKind::Upgrade));
        let with = FaultKind::parse_mix_with("all", true).unwrap();
        assert_eq!(with.len(), FaultKind::ALL.len());
        let error = FaultKind::parse_mix("kill,upgrade")
            .unwrap_err()
            .to_string();
        assert!(error.contains("--upgrade-to"), "{error}");
        assert_eq!(
            FaultKind::parse_mix_with("upgrade", true).unwrap(),
            vec![FaultKind::Upgrade]
        );
        assert_eq!(FaultKind::parse_mix("partitions").unwrap().len(), 5);
        assert!(FaultKind::parse_mix("partition,bogus").is_err());
    }

    #[test]
    fn upgrade_steps_are_dense_enough_to_finish_in_a_short_run() {
        let mix = FaultKind::parse_mix_with(
            "partition,isolate-leader,kill,pause,transfer,clock,duplicate,noisy-neighbour,rolling-restart,membership,upgrade",
            true,
        )
        .unwrap();
        for seed in 1..50 {
            let steps = schedule(seed, &mix, 60_000, 300);
            let upgrades = steps
                .iter()
                .filter(|s| s.kind == FaultKind::Upgrade)
                .count();
            // 3 nodes: 3 upgrades + 2 x 2 rollbacks (the last upgrade finalizes) + the refusal
            // check, + 1 for a spare that joined on the old build.
            assert!(upgrades >= 9, "seed {seed}: {upgrades} upgrade steps");
            // The other kinds keep (nominally) the fault time, but for the upgrade's ordinary
            // share (one kind in eleven) once its dense steps are scheduled.
            let others_ms: u64 = steps
                .iter()
                .filter(|s| s.kind != FaultKind::Upgrade)
                .map(|s| s.quiet_ms + s.hold_ms)
                .sum();
            assert!(others_ms >= 50_000, "seed {seed}: {others_ms} ms");
        }
        let plain = FaultKind::parse_mix("partition,kill,pause").unwrap();
        let a = schedule(7, &plain, 60_000, 300);
        assert!(a.iter().all(|s| s.kind != FaultKind::Upgrade));
        // An upgrade-only mix still ends.
        let only = schedule(7, &[FaultKind::Upgrade], 60_000, 300);
        assert!(
            only.len() > UPGRADE_STEPS_DENSE && only.len() < 100,
            "{}",
            only.len()
        );
    }

    #[test]
    fn split_leaves_a_majority() {
        for n in [3usize, 5] {
            let ids: Vec<u64> = (1..=n as u64).collect();
            for choice in 0..200u64 {
                let (minority, majority) = split(&ids, choice * 7919);
                assert!(!minority.is_empty());
                assert!(majority.len() > minority.len());
                assert_eq!(minority.len() + majority.len(), n);
            }
        }
    }
}
