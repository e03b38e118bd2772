//! The rolling-upgrade fault (`upgrade`, with `--upgrade-to BIN`): every time it fires, one
//! step of a seeded rolling upgrade from the tested build (old) to the next one.
//!
//! The planner ([`plan`]) is pure: from what has been done ([`Progress`]), which build each
//! member runs and the step's seeded choice, it picks one [`Action`]:
//! - before finalization: upgrade an old node, or (a third of the time while some node is
//!   upgraded, at most `ROLLBACKS_MAX` times, and only in the first `forced_after(n)` firings)
//!   roll an upgraded node back to the old build; once every member runs the next build and a
//!   rollback has happened (or the upgrade has run long enough that it must proceed), finalize;
//! - after finalization: once, check that the old build refuses the upgraded data directory
//!   ("newer than this binary"); then nothing.
//!
//! The executor ([`step`]) does the action against the real cluster: graceful stop (SIGTERM)
//! and restart on the other build, then the rolling restart's bounded catch-up wait; the
//! finalize call (retried for a bounded time: a node just restarted may not have reconnected);
//! after it, every member must report the new cluster version and data format within a bound.
//! Every action is written to the fault log (kind `upgrade`). A failed check is a violation.

use std::time::Duration;

use anyhow::Result;
use keel_client::{Client, Status};
use serde_json::{json, Value};

use crate::cluster::{Binary, Cluster};
use crate::history::Recorder;

/// The cluster version (and data format) the next build finalizes to.
pub const UPGRADED_VERSION: u32 = 2;
/// Rollbacks one upgrade makes, at most.
pub const ROLLBACKS_MAX: u32 = 2;
/// The finalize call is retried (not leader, no leader, unavailable, a peer's build not yet
/// known) for this long per firing.
pub const FINALIZE_WAIT_MS_MAX: u64 = 15_000;
/// After finalization every member must report the new version and data format within this.
pub const VERSIONS_WAIT_MS_MAX: u64 = 10_000;
/// The old build started on a finalized data directory must exit within this.
pub const REFUSAL_EXIT_MS_MAX: u64 = 5_000;
/// What the old build must say when it refuses a finalized data directory.
pub const REFUSAL_MESSAGE: &str = "newer than this binary";
/// Finalize refusals kept for the report, at most.
const FINALIZE_ERRORS_MAX: usize = 10;
const POLL_INTERVAL_MS: u64 = 200;
/// Error codes after which the finalize call is tried again (within `FINALIZE_WAIT_MS_MAX`).
const FINALIZE_RETRY_CODES: [&str; 8] = [
    "NOT_LEADER",
    "NO_LEADER",
    "UNAVAILABLE",
    "FAILED_PRECONDITION",
    "UNREACHABLE",
    "TIMEOUT",
    "OVERLOADED",
    "RETRY_BUDGET_EXHAUSTED",
];

/// One step of the rolling upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Restart this old node on the next build.
    Upgrade(u64),
    /// Restart this upgraded node on the old build again (before finalization only).
    Rollback(u64),
    /// Finalize the upgrade (every member runs the next build).
    Finalize,
    /// Start the old build on this node's finalized data directory: it must refuse.
    CheckRefusal(u64),
    /// Nothing left to do.
    Idle,
}

/// What the upgrade has done so far: the planner's memory and the report's record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Firings that did something (not `Idle`).
    pub fired: u32,
    pub upgrades: u32,
    pub rollbacks: u32,
    /// When the finalize call succeeded (ns since the run's start).
    pub finalized_at_ns: Option<u64>,
    /// The cluster version the finalize call answered.
    pub finalized_version: Option<u32>,
    /// Finalize calls that did not succeed within their bound (code: message), latest last.
    pub finalize_errors: Vec<String>,
    /// After finalization: every member reported the new version and format (Ok: how long
    /// it took) or not within the bound (Err: what was seen).
    pub versions_check: Option<Result<String, String>>,
    /// The old build on a finalized data directory: refused (Ok) or not (Err).
    pub refusal_check: Option<Result<String, String>>,
    /// Restarted nodes that did not catch up within the bound.
    pub not_caught_up: u32,
}

impl Progress {
    pub fn finalized(&self) -> bool {
        self.finalized_at_ns.is_some()
    }

    /// Any check that failed (each a violation).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(Err(e)) = &self.versions_check {
            out.push(format!("upgrade: after finalization, {e}"));
        }
        if let Some(Err(e)) = &self.refusal_check {
            out.push(format!(
                "upgrade: rollback after finalization not refused: {e}"
            ));
        }
        if let Some(version) = self.finalized_version {
            if version != UPGRADED_VERSION {
                out.push(format!(
                    "upgrade: finalize answered cluster version {version}, expected {UPGRADED_VERSION}"
                ));
            }
        }
        out
    }
}

/// Firings after which no more rollbacks are made and the upgrade proceeds to finalization.
pub fn forced_after(members: usize) -> u32 {
    2 * members as u32 + 2
}

fn pick(ids: &[u64], choice: u64) -> u64 {
    assert!(!ids.is_empty());
    ids[(choice as usize) % ids.len()]
}

/// The next step, from the progress so far, each member's build (sorted by id) and the
/// step's seeded choice. Pure and deterministic.
pub fn plan(progress: &Progress, members: &[(u64, Binary)], choice: u64) -> Action {
    assert!(
        members.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, distinct"
    );
    if members.is_empty() {
        return Action::Idle;
    }
    let node_choice = choice >> 8;
    if progress.finalized() {
        if progress.refusal_checked() {
            return Action::Idle;
        }
        let ids: Vec<u64> = members.iter().map(|m| m.0).collect();
        return Action::CheckRefusal(pick(&ids, node_choice));
    }
    let old: Vec<u64> = members
        .iter()
        .filter(|m| m.1 == Binary::Old)
        .map(|m| m.0)
        .collect();
    let next: Vec<u64> = members
        .iter()
        .filter(|m| m.1 == Binary::Next)
        .map(|m| m.0)
        .collect();
    assert_eq!(old.len() + next.len(), members.len());
    let may_roll_back = !next.is_empty()
        && progress.rollbacks < ROLLBACKS_MAX
        && progress.fired < forced_after(members.len());
    if old.is_empty() {
        // Everyone upgraded: finalize once a rollback has been exercised (or it must proceed).
        if progress.rollbacks > 0 || !may_roll_back {
            return Action::Finalize;
        }
        return Action::Rollback(pick(&next, node_choice));
    }
    if may_roll_back && choice.is_multiple_of(3) {
        return Action::Rollback(pick(&next, node_choice));
    }
    Action::Upgrade(pick(&old, node_choice))
}

impl Progress {
    fn refusal_checked(&self) -> bool {
        self.refusal_check.is_some()
    }

    /// Finalized and checked: nothing left for the fault to do.
    pub fn done(&self) -> bool {
        self.finalized() && self.refusal_checked()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Each member's build, sorted by id.
fn members(cluster: &Cluster) -> Vec<(u64, Binary)> {
    let mut out: Vec<(u64, Binary)> = cluster
        .nodes
        .iter()
        .filter(|n| n.member)
        .map(|n| (n.id, n.binary))
        .collect();
    out.sort_unstable();
    out
}

/// One firing of the `upgrade` fault. Returns what it did, or None when there was nothing to
/// do. Every action goes to the fault log.
pub async fn step(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    recorder: &Recorder,
    choice: u64,
    deadline: tokio::time::Instant,
) -> Result<Option<String>> {
    let members_now = members(&*cluster.lock().await);
    let action = plan(&lock(progress).clone(), &members_now, choice);
    if action == Action::Idle {
        return Ok(None);
    }
    lock(progress).fired += 1;
    let mut done = vec![execute(cluster, progress, recorder, action, deadline).await?];
    if matches!(action, Action::Upgrade(_)) {
        // The firing that completes the upgrade finalizes it at once when the plan says so.
        let members_now = members(&*cluster.lock().await);
        if plan(&lock(progress).clone(), &members_now, choice) == Action::Finalize {
            done.push(execute(cluster, progress, recorder, Action::Finalize, deadline).await?);
        }
    }
    Ok(Some(done.join("; ")))
}

/// After the fault time: if the upgrade was finalized but the refusal check has not run yet,
/// run it now (it is the point of finalizing).
pub async fn finish(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    recorder: &Recorder,
    choice: u64,
) -> Result<()> {
    let members_now = members(&*cluster.lock().await);
    let action = plan(&lock(progress).clone(), &members_now, choice);
    if let Action::CheckRefusal(_) = action {
        let deadline = tokio::time::Instant::now();
        execute(cluster, progress, recorder, action, deadline).await?;
    }
    Ok(())
}

async fn execute(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    recorder: &Recorder,
    action: Action,
    deadline: tokio::time::Instant,
) -> Result<String> {
    let detail = match action {
        Action::Upgrade(id) | Action::Rollback(id) => {
            let (binary, verb) = match action {
                Action::Upgrade(_) => (Binary::Next, format!("node {id} → next")),
                _ => (Binary::Old, format!("node {id} rolled back to old")),
            };
            let how = cluster.lock().await.restart_on(id, binary).await?;
            let caught_up = catch_up(cluster, progress, id, deadline).await;
            let members_now = members(&*cluster.lock().await);
            let on_next = members_now.iter().filter(|m| m.1 == Binary::Next).count();
            let mut p = lock(progress);
            if binary == Binary::Next {
                p.upgrades += 1;
            } else {
                p.rollbacks += 1;
            }
            format!(
                "{verb} ({how}, {caught_up}; {on_next} of {} members on next)",
                members_now.len()
            )
        }
        Action::Finalize => finalize(cluster, progress, recorder).await?,
        Action::CheckRefusal(id) => check_refusal(cluster, progress, id, deadline).await?,
        Action::Idle => unreachable!("step() returns before executing Idle"),
    };
    recorder.fault("instant", "upgrade", detail.clone());
    Ok(detail)
}

/// The rolling restart's bounded catch-up wait; a description of how it went.
async fn catch_up(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    id: u64,
    deadline: tokio::time::Instant,
) -> String {
    let bound_ms = crate::nemesis::catch_up_bound_ms(deadline);
    match crate::nemesis::wait_caught_up(cluster, id, bound_ms).await {
        Some(ms) => format!("caught up in {ms} ms"),
        None => {
            lock(progress).not_caught_up += 1;
            format!("not caught up within {bound_ms} ms")
        }
    }
}

/// The versions a node reports in its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVersions {
    pub protocol: String,
    pub cluster_version: u32,
    pub cluster_version_max: u32,
    pub data_format: u32,
}

/// The versions out of a status answer.
pub fn versions_of(status: &Status) -> NodeVersions {
    NodeVersions {
        protocol: status.protocol.clone(),
        cluster_version: status.cluster_version,
        cluster_version_max: status.cluster_version_max,
        data_format: status.data_format,
    }
}

/// The server's finalize call (to the highest version every member supports): (cluster
/// version now, before).
async fn finalize_call(client: &Client) -> Result<(u32, u32), keel_client::Error> {
    let answer = client.finalize_upgrade(None).await?;
    Ok((answer.cluster_version, answer.previous))
}

async fn finalize(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    recorder: &Recorder,
) -> Result<String> {
    let (endpoints, ids) = {
        let guard = cluster.lock().await;
        let ids = guard.ids();
        let endpoints: Vec<String> = ids
            .iter()
            .map(|&id| guard.node(id).client_addr.clone())
            .collect();
        (endpoints, ids)
    };
    let client = crate::workload::client(&endpoints, 2_000, ids.len() as u64)
        .map_err(|e| anyhow::anyhow!("client: {e}"))?;
    let started = std::time::Instant::now();
    let polls_max = FINALIZE_WAIT_MS_MAX / POLL_INTERVAL_MS;
    let mut answer = finalize_call(&client).await;
    for _ in 0..polls_max {
        let retry = match &answer {
            Ok(_) => false,
            Err(e) => FINALIZE_RETRY_CODES.contains(&e.code().as_str()),
        };
        if !retry || started.elapsed() >= Duration::from_millis(FINALIZE_WAIT_MS_MAX) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        answer = finalize_call(&client).await;
    }
    let (version, previous) = match answer {
        Ok(versions) => versions,
        Err(e) => {
            let error = e.to_string();
            let mut p = lock(progress);
            if p.finalize_errors.len() >= FINALIZE_ERRORS_MAX {
                p.finalize_errors.remove(0);
            }
            p.finalize_errors.push(error.clone());
            return Ok(format!(
                "finalize refused after {} ms: {error}",
                started.elapsed().as_millis()
            ));
        }
    };
    {
        let mut p = lock(progress);
        p.finalized_at_ns = Some(recorder.now_ns());
        p.finalized_version = Some(version);
    }
    cluster.lock().await.upgrade_finalized();
    recorder.fault(
        "instant",
        "upgrade",
        format!(
            "finalized cluster version {version} (was {previous}) after {} ms",
            started.elapsed().as_millis()
        ),
    );
    let check = check_versions(cluster).await;
    let detail = match &check {
        Ok(how) => format!("every node reports {how}"),
        Err(e) => format!("version check failed: {e}"),
    };
    lock(progress).versions_check = Some(check);
    Ok(detail)
}

/// Polls every member until each reports the upgraded cluster version and data format.
async fn check_versions(cluster: &tokio::sync::Mutex<Cluster>) -> Result<String, String> {
    let started = std::time::Instant::now();
    let polls_max = VERSIONS_WAIT_MS_MAX / POLL_INTERVAL_MS;
    let mut behind = Vec::new();
    for _ in 0..polls_max {
        let (ids, statuses) = {
            let guard = cluster.lock().await;
            (guard.ids(), guard.statuses().await)
        };
        behind = ids
            .iter()
            .filter_map(|id| {
                let seen = statuses.iter().find(|s| s.node_id == *id).map(versions_of);
                match seen {
                    Some(v)
                        if v.cluster_version == UPGRADED_VERSION
                            && v.data_format == UPGRADED_VERSION =>
                    {
                        None
                    }
                    Some(v) => Some(format!(
                        "node {id} cluster version {} data format {}",
                        v.cluster_version, v.data_format
                    )),
                    None => Some(format!("node {id} not answering")),
                }
            })
            .collect();
        if behind.is_empty() {
            return Ok(format!(
                "cluster version {UPGRADED_VERSION}, data format {UPGRADED_VERSION} ({} ms after finalization)",
                started.elapsed().as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
    Err(format!(
        "not every node reports cluster version {UPGRADED_VERSION} and data format {UPGRADED_VERSION} within {VERSIONS_WAIT_MS_MAX} ms: {}",
        behind.join(", ")
    ))
}

/// Stops node `id`, starts the old build on its (finalized) data directory, which must exit
/// non-zero saying "newer than this binary"; then restarts the node on its own build.
async fn check_refusal(
    cluster: &tokio::sync::Mutex<Cluster>,
    progress: &std::sync::Mutex<Progress>,
    id: u64,
    deadline: tokio::time::Instant,
) -> Result<String> {
    let refusal = {
        let mut guard = cluster.lock().await;
        guard.stop_graceful(id).await?;
        let refusal = guard
            .start_expecting_refusal(id, Binary::Old, REFUSAL_MESSAGE, REFUSAL_EXIT_MS_MAX)
            .await;
        // Back on its own build whatever happened.
        guard.start(id)?;
        refusal?
    };
    let caught_up = catch_up(cluster, progress, id, deadline).await;
    let exit = refusal
        .exit
        .clone()
        .unwrap_or_else(|| format!("still running after {REFUSAL_EXIT_MS_MAX} ms"));
    let seen = format!(
        "node {id}: old build {exit} in {} ms, last line {:?}",
        refusal.elapsed_ms, refusal.last_line
    );
    let check = if refusal.failed && refusal.message_seen {
        Ok(seen.clone())
    } else if !refusal.failed {
        Err(format!("{seen} (expected a non-zero exit)"))
    } else {
        Err(format!("{seen} (no {REFUSAL_MESSAGE:?} in its output)"))
    };
    let mark = if check.is_ok() { "✓" } else { "✗" };
    lock(progress).refusal_check = Some(check.clone());
    let verdict = if check.is_ok() {
        "rollback refused"
    } else {
        "rollback NOT refused"
    };
    Ok(format!(
        "{verdict} {mark} ({seen}); node {id} back on next, {caught_up}"
    ))
}

/// The report's account: counts, finalization, checks, and every member's final build and
/// versions (`final_nodes`: (id, build, versions if it answered)).
pub fn summary_json(
    progress: &Progress,
    final_nodes: &[(u64, Binary, Option<NodeVersions>)],
    upgrade_bin: &str,
) -> Value {
    let upgraded = final_nodes.iter().filter(|n| n.1 == Binary::Next).count();
    let summary = match progress.finalized_at_ns {
        Some(ns) => format!(
            "finalized at {} ms · {} upgrades, {} rollbacks · versions: {} · refusal: {}",
            ns / 1_000_000,
            progress.upgrades,
            progress.rollbacks,
            match &progress.versions_check {
                Some(Ok(_)) => "ok".to_string(),
                Some(Err(e)) => format!("FAILED ({e})"),
                None => "not checked".to_string(),
            },
            match &progress.refusal_check {
                Some(Ok(_)) => "ok".to_string(),
                Some(Err(e)) => format!("FAILED ({e})"),
                None => "not checked".to_string(),
            }
        ),
        None => format!(
            "not finalized ({upgraded} of {} nodes upgraded) · {} upgrades, {} rollbacks{}",
            final_nodes.len(),
            progress.upgrades,
            progress.rollbacks,
            progress
                .finalize_errors
                .last()
                .map_or(String::new(), |e| format!(" · last finalize refusal: {e}"))
        ),
    };
    let nodes: Vec<String> = final_nodes
        .iter()
        .map(|(id, binary, versions)| match versions {
            Some(v) => format!(
                "{id}: {} (protocol {}, cluster version {}/{}, data format {})",
                binary.name(),
                v.protocol,
                v.cluster_version,
                v.cluster_version_max,
                v.data_format
            ),
            None => format!("{id}: {} (not answering)", binary.name()),
        })
        .collect();
    let summary = format!("{summary} · final: {}", nodes.join("; "));
    json!({
        "to": upgrade_bin,
        "summary": summary,
        "fired": progress.fired,
        "upgrades": progress.upgrades,
        "rollbacks": progress.rollbacks,
        "finalized": progress.finalized(),
        "finalized_at_ms": progress.finalized_at_ns.map(|ns| ns / 1_000_000),
        "finalized_version": progress.finalized_version,
        "finalize_errors": progress.finalize_errors,
        "versions_check": progress.versions_check.as_ref().map(|r| match r {
            Ok(s) => json!({"ok": true, "detail": s}),
            Err(s) => json!({"ok": false, "detail": s}),
        }),
        "refusal_check": progress.refusal_check.as_ref().map(|r| match r {
            Ok(s) => json!({"ok": true, "detail": s}),
            Err(s) => json!({"ok": false, "detail": s}),
        }),
        "not_caught_up": progress.not_caught_up,
        "nodes": final_nodes.iter().map(|(id, binary, versions)| json!({
            "node": id,
            "binary": binary.name(),
            "protocol": versions.as_ref().map(|v| v.protocol.clone()),
            "cluster_version": versions.as_ref().map(|v| v.cluster_version),
            "cluster_version_max": versions.as_ref().map(|v| v.cluster_version_max),
            "data_format": versions.as_ref().map(|v| v.data_format),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn all(binary: Binary, n: u64) -> Vec<(u64, Binary)> {
        (1..=n).map(|id| (id, binary)).collect()
    }

    /// Applies an action to the simulated members and progress, as the executor would when
    /// every call succeeds.
    fn apply(progress: &mut Progress, members: &mut [(u64, Binary)], action: Action) {
        match action {
            Action::Upgrade(id) | Action::Rollback(id) => {
                let member = members.iter_mut().find(|m| m.0 == id).expect("a member");
                if let Action::Upgrade(_) = action {
                    assert_eq!(member.1, Binary::Old, "only an old node is upgraded");
                    member.1 = Binary::Next;
                    progress.upgrades += 1;
                } else {
                    assert_eq!(member.1, Binary::Next, "only an upgraded node rolls back");
                    member.1 = Binary::Old;
                    progress.rollbacks += 1;
                }
            }
            Action::Finalize => {
                assert!(members.iter().all(|m| m.1 == Binary::Next));
                progress.finalized_at_ns = Some(1);
                progress.finalized_version = Some(UPGRADED_VERSION);
            }
            Action::CheckRefusal(_) => progress.refusal_check = Some(Ok(String::new())),
            Action::Idle => {}
        }
    }

    /// Runs the planner from a fresh cluster until it idles; returns the actions.
    fn run(seed: u64, nodes: u64) -> Vec<Action> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut progress = Progress::default();
        let mut members = all(Binary::Old, nodes);
        let mut actions = Vec::new();
        let firings_max = 100;
        for _ in 0..firings_max {
            let action = plan(&progress, &members, rng.gen());
            if action == Action::Idle {
                break;
            }
            progress.fired += 1;
            apply(&mut progress, &mut members, action);
            actions.push(action);
        }
        actions
    }

    #[test]
    fn every_seed_upgrades_rolls_back_finalizes_and_checks_in_bounded_firings() {
        for nodes in [1u64, 3, 5, 7] {
            let mut rollbacks_before_all_upgraded = 0;
            for seed in 0..300 {
                let actions = run(seed, nodes);
                let finalize = actions
                    .iter()
                    .position(|a| *a == Action::Finalize)
                    .unwrap_or_else(|| panic!("seed {seed}, {nodes} nodes: {actions:?}"));
                let rollbacks = actions
                    .iter()
                    .filter(|a| matches!(a, Action::Rollback(_)))
                    .count() as u32;
                assert!(rollbacks >= 1, "seed {seed}: a rollback before finalizing");
                assert!(rollbacks <= ROLLBACKS_MAX);
                assert!(
                    actions[finalize + 1..]
                        .iter()
                        .all(|a| matches!(a, Action::CheckRefusal(_))),
                    "after finalization only the refusal check: {actions:?}"
                );
                assert_eq!(actions.len(), finalize + 2, "one refusal check, then idle");
                // Bounded: every upgrade plus the rollbacks undone, finalize, check.
                assert!(actions.len() as u32 <= nodes as u32 + 2 * ROLLBACKS_MAX + 2);
                let upgraded_all_first = actions
                    .iter()
                    .take_while(|a| !matches!(a, Action::Rollback(_)))
                    .count() as u64;
                if upgraded_all_first < nodes {
                    rollbacks_before_all_upgraded += 1;
                }
            }
            if nodes > 1 {
                assert!(
                    rollbacks_before_all_upgraded > 30,
                    "{nodes} nodes: rollbacks also happen mid-upgrade ({rollbacks_before_all_upgraded} of 300 seeds)"
                );
            }
        }
    }

    #[test]
    fn the_plan_is_deterministic_in_the_seed() {
        assert_eq!(run(7, 3), run(7, 3));
        let differs = (0..20).any(|seed| run(seed, 5) != run(seed + 100, 5));
        assert!(differs, "the seed chooses nodes and rollbacks");
    }

    #[test]
    fn no_rollback_after_finalization_and_finalize_only_when_everyone_is_upgraded() {
        let mut progress = Progress {
            rollbacks: 1,
            fired: 4,
            ..Progress::default()
        };
        let mixed = vec![(1, Binary::Next), (2, Binary::Old), (3, Binary::Next)];
        for choice in 0..200 {
            let action = plan(&progress, &mixed, choice);
            assert_ne!(action, Action::Finalize, "node 2 still runs the old build");
        }
        progress.finalized_at_ns = Some(5);
        let upgraded = all(Binary::Next, 3);
        for choice in 0..200 {
            assert!(matches!(
                plan(&progress, &upgraded, choice),
                Action::CheckRefusal(1..=3)
            ));
        }
        assert!(!progress.done());
        progress.refusal_check = Some(Err("exited 0".to_string()));
        assert!(progress.done());
        assert_eq!(plan(&progress, &upgraded, 9), Action::Idle);
        assert_eq!(progress.problems().len(), 1, "{:?}", progress.problems());
    }

    #[test]
    fn the_upgrade_proceeds_when_forced() {
        // No rollback yet, but the upgrade has fired long enough: finalize, not roll back.
        let progress = Progress {
            fired: forced_after(3),
            ..Progress::default()
        };
        assert_eq!(plan(&progress, &all(Binary::Next, 3), 0), Action::Finalize);
        let fresh = Progress::default();
        assert!(matches!(
            plan(&fresh, &all(Binary::Next, 3), 1),
            Action::Rollback(_)
        ));
        // A spare that joined on the old build must be upgraded before finalization.
        let joined = vec![(1, Binary::Next), (2, Binary::Next), (4, Binary::Old)];
        assert_eq!(plan(&progress, &joined, 0), Action::Upgrade(4));
        assert_eq!(plan(&fresh, &[], 3), Action::Idle);
    }
}
