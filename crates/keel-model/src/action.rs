//! The actions of the model: what the environment (network, disks, clocks, clients, operator)
//! may do next in a state, and how each one drives the real nodes.
//!
//! Time: one global clock, read by every node's monotonic clock. Wall clocks read true time
//! plus a per-node error that `clock N +U` / `clock N -U` moves to either end of the configured
//! uncertainty U (budget `clock_skews`); the nodes are told the readings are trusted. A timer
//! fires as the action `tick N`: it advances the global clock by a quantum and ticks node N.
//! The quantum for a follower or candidate is twice the election timeout, so its (randomized)
//! election timer has certainly expired; for a leader it is the heartbeat interval. Other nodes
//! see the new time at their next event. Monotonic-clock drift is not explored.

use crate::state::{app_bytes, boot, message_key, Host, State};
use crate::Bounds;
use keel_core::invariants::SafetyMonitor;
use keel_core::{ConfChange, EntryKind, Message, NodeId, ReadMode, Role};
use std::collections::BTreeSet;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Deliver(Message),
    Drop(Message),
    Duplicate(Message),
    Tick(NodeId),
    Persist(NodeId),
    Crash(NodeId),
    Propose(NodeId, u32),
    Read(NodeId, ReadMode),
    Conf(NodeId, ConfChange),
    Transfer(NodeId, NodeId),
    Snapshot(NodeId),
    /// Set a node's wall-clock error (ms, within the configured uncertainty).
    Clock(NodeId, i64),
    /// Set a node's monotonic-clock rate error (ppm, within the configured drift bound).
    Drift(NodeId, i64),
}

pub fn short_message(m: &Message) -> String {
    use keel_core::Body::*;
    let detail = match &m.body {
        PreVote {
            last_index,
            last_term,
        }
        | Vote {
            last_index,
            last_term,
            ..
        } => format!(" last {last_index}/{last_term}"),
        PreVoteResponse { granted } | VoteResponse { granted } => format!(" granted={granted}"),
        Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            format!(
                " prev {prev_index}/{prev_term} entries {} commit {commit}",
                entries.len()
            )
        }
        AppendResponse {
            index,
            reject,
            repairing,
        } => format!(
            " index {index} reject={}{}",
            reject.is_some(),
            if *repairing { " repairing" } else { "" }
        ),
        Heartbeat { commit, round } => format!(" commit {commit} round {round}"),
        HeartbeatResponse {
            round,
            last_index,
            repairing,
        } => format!(
            " round {round} last {last_index}{}",
            if *repairing { " repairing" } else { "" }
        ),
        InstallSnapshot { meta, offset, .. } => format!(" snap {} offset {offset}", meta.index),
        InstallSnapshotResponse {
            index,
            done,
            rejected,
            ..
        } => format!(" index {index} done={done} rejected={rejected}"),
        TimeoutNow => String::new(),
    };
    format!(
        "{}->{} {} t{}{}",
        m.from,
        m.to,
        m.kind_name(),
        m.term,
        detail
    )
}

impl fmt::Display for Action {
    /// The scenario-like replay format: one command per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Deliver(m) => write!(f, "deliver {}", short_message(m)),
            Action::Drop(m) => write!(f, "drop {}", short_message(m)),
            Action::Duplicate(m) => write!(f, "duplicate {}", short_message(m)),
            Action::Tick(n) => write!(f, "tick {n}"),
            Action::Persist(n) => write!(f, "persist {n}"),
            Action::Crash(n) => write!(f, "crash-restart {n}"),
            Action::Propose(n, v) => write!(f, "propose {n} v{v}"),
            Action::Read(n, mode) => write!(
                f,
                "read {n} {}",
                if *mode == ReadMode::Lease {
                    "lease"
                } else {
                    "read-index"
                }
            ),
            Action::Conf(n, c) => write!(f, "conf-change {n} {c:?}"),
            Action::Transfer(n, t) => write!(f, "transfer-leader {n} {t}"),
            Action::Snapshot(n) => write!(f, "snapshot {n}"),
            Action::Clock(n, offset) => write!(f, "clock {n} {offset:+}"),
            Action::Drift(n, ppm) => write!(f, "drift {n} {ppm:+}"),
        }
    }
}

/// A safety property broken in a state, or a core assertion that fired.
#[derive(Clone, Debug)]
pub struct Broken {
    pub property: String,
    pub detail: String,
}

fn broken(property: &str, detail: String) -> Broken {
    Broken {
        property: property.to_string(),
        detail,
    }
}

/// Every action enabled in `s`, in a fixed order (determinism).
pub fn enabled(s: &State, b: &Bounds) -> Vec<Action> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &s.net {
        if !seen.insert(message_key(m)) {
            continue;
        }
        out.push(Action::Deliver(m.clone()));
        if s.budget.drops > 0 {
            out.push(Action::Drop(m.clone()));
        }
        if s.budget.duplicates > 0 && s.net.len() < b.messages {
            out.push(Action::Duplicate(m.clone()));
        }
    }
    for h in &s.hosts {
        let id = h.node.id();
        if !h.pending.is_empty() {
            out.push(Action::Persist(id));
        }
        let quantum = tick_quantum_ms(h, b);
        if s.budget.ticks > 0 && s.now_ms + quantum <= b.time_max_ms {
            out.push(Action::Tick(id));
        }
        if s.budget.crashes > 0 {
            out.push(Action::Crash(id));
        }
        if s.budget.clock_skews > 0 {
            let u = h.node.config().clock_uncertainty_ms as i64;
            for offset in [-u, u] {
                if h.wall_offset_ms != offset {
                    out.push(Action::Clock(id, offset));
                }
            }
        }
        if s.budget.clock_drifts > 0 {
            let rho = b.drift_ppm.unwrap_or(h.node.config().clock_drift_ppm_max) as i64;
            for rate in [-rho, rho] {
                if h.mono.rate_ppm != rate {
                    out.push(Action::Drift(id, rate));
                }
            }
        }
        if s.budget.snapshots > 0 && h.node.applied_index() > h.node.log().snapshot_index {
            out.push(Action::Snapshot(id));
        }
        if h.node.role() != Role::Leader {
            continue;
        }
        if s.budget.proposals > 0 {
            out.push(Action::Propose(id, s.next_value + 1));
        }
        if s.budget.reads > 0 {
            out.push(Action::Read(id, ReadMode::ReadIndex));
            out.push(Action::Read(id, ReadMode::Lease));
        }
        if s.budget.conf_changes > 0 {
            if let Some(c) = conf_change_for(s, h) {
                out.push(Action::Conf(id, c));
            }
        }
        if s.budget.transfers > 0 {
            for v in h.node.membership().voters.iter().filter(|v| **v != id) {
                out.push(Action::Transfer(id, *v));
            }
        }
    }
    out
}

/// One membership change per state, to keep branching small: bring the spare node in for the
/// highest voter other than the leader; once the spare is a voter, remove that highest voter.
pub(crate) fn conf_change_for(s: &State, leader: &Host) -> Option<ConfChange> {
    let m = leader.node.membership();
    let spare = s.hosts.len() as NodeId;
    let me = leader.node.id();
    let victim = m
        .voters
        .iter()
        .rev()
        .copied()
        .find(|v| *v != me && *v != spare)?;
    if !m.contains(spare) {
        Some(ConfChange::Replace {
            add_voters: vec![spare],
            remove_voters: vec![victim],
        })
    } else if m.voters.len() > 2 {
        Some(ConfChange::Remove(victim))
    } else {
        None
    }
}

/// Gives back the budget `a` will take, so that a scripted action (a prefix, a replay) costs
/// nothing: the bounds apply to the explored actions only.
pub fn credit(s: &mut State, a: &Action) {
    let budget = &mut s.budget;
    match a {
        Action::Deliver(_) | Action::Persist(_) => {}
        Action::Drop(_) => budget.drops += 1,
        Action::Duplicate(_) => budget.duplicates += 1,
        Action::Tick(_) => budget.ticks += 1,
        Action::Crash(_) => budget.crashes += 1,
        Action::Propose(..) => budget.proposals += 1,
        Action::Read(..) => budget.reads += 1,
        Action::Conf(..) => budget.conf_changes += 1,
        Action::Transfer(..) => budget.transfers += 1,
        Action::Snapshot(_) => budget.snapshots += 1,
        Action::Clock(..) => budget.clock_skews += 1,
        Action::Drift(..) => budget.clock_drifts += 1,
    }
}

pub(crate) fn tick_quantum_ms(h: &Host, b: &Bounds) -> u64 {
    if h.node.role() == Role::Leader {
        b.heartbeat_interval_ms
    } else {
        2 * b.election_timeout_ms
    }
}

/// Applies `a` to `s`. Returns a broken property seen while acting (durability before a send,
/// read freshness, a core assertion); state-wide properties are checked by `crate::check`.
pub fn apply(s: &mut State, a: &Action, b: &Bounds) -> Result<(), Broken> {
    match a {
        Action::Deliver(m) => {
            let pos = s
                .net
                .iter()
                .position(|x| x == m)
                .expect("delivered message is in flight");
            let m = s.net.swap_remove(pos);
            let to = m.to;
            let now = s.time_of(to);
            s.host_mut(to).node.receive(now, m);
            drive(s, to, b)?;
        }
        Action::Drop(m) => {
            let pos = s
                .net
                .iter()
                .position(|x| x == m)
                .expect("dropped message is in flight");
            s.net.swap_remove(pos);
            s.budget.drops -= 1;
        }
        Action::Duplicate(m) => {
            s.net.push(m.clone());
            s.budget.duplicates -= 1;
        }
        Action::Tick(id) => {
            s.budget.ticks -= 1;
            s.now_ms += tick_quantum_ms(s.host(*id), b);
            let now = s.time_of(*id);
            s.host_mut(*id).node.tick(now);
            drive(s, *id, b)?;
        }
        Action::Persist(id) => {
            let now = s.time_of(*id);
            let h = s.host_mut(*id);
            let w = h.pending.pop_front().expect("a pending write");
            h.disk.apply(&w);
            h.node.persisted(now, w.id);
            drive(s, *id, b)?;
        }
        Action::Crash(id) => {
            s.budget.crashes -= 1;
            let cfg = b.node_config(*id);
            let now = s.time_of(*id);
            let h = s.host_mut(*id);
            let durable_commit = h.disk.hard_state.commit;
            h.pending.clear();
            h.proposals.clear();
            h.reads.clear();
            h.node = boot(cfg, &h.disk, now)
                .map_err(|e| broken("recovery", format!("node {id} refused to restart: {e}")))?;
            if h.node.commit_index() < durable_commit {
                return Err(broken(
                    "commit-monotonic",
                    format!("node {id} restarted below its durable commit {durable_commit}"),
                ));
            }
            drive(s, *id, b)?;
        }
        Action::Propose(id, v) => {
            let now = s.time_of(*id);
            s.budget.proposals -= 1;
            s.next_value = s.next_value.max(*v);
            let data = format!("v{v}").into_bytes();
            if let Ok((index, term)) = s.host_mut(*id).node.propose(now, data) {
                s.host_mut(*id).proposals.insert(index, term);
            }
            drive(s, *id, b)?;
        }
        Action::Read(id, mode) => {
            let now = s.time_of(*id);
            s.budget.reads -= 1;
            s.next_read_id += 1;
            let rid = s.next_read_id;
            let required = s.acked_max;
            if s.host_mut(*id).node.read(now, rid, *mode).is_ok() {
                s.host_mut(*id).reads.insert(rid, required);
            }
            drive(s, *id, b)?;
        }
        Action::Conf(id, c) => {
            let now = s.time_of(*id);
            s.budget.conf_changes -= 1;
            let _ = s.host_mut(*id).node.propose_conf_change(now, c.clone());
            drive(s, *id, b)?;
        }
        Action::Transfer(id, target) => {
            let now = s.time_of(*id);
            s.budget.transfers -= 1;
            let _ = s.host_mut(*id).node.transfer_leader(now, *target);
            drive(s, *id, b)?;
        }
        Action::Snapshot(id) => {
            let now = s.time_of(*id);
            s.budget.snapshots -= 1;
            let h = s.host_mut(*id);
            let applied = h.node.applied_index();
            let _ = h
                .node
                .snapshot_created(now, applied, app_bytes(applied), Vec::new());
            drive(s, *id, b)?;
        }
        Action::Clock(id, offset) => {
            s.budget.clock_skews -= 1;
            s.host_mut(*id).wall_offset_ms = *offset;
        }
        Action::Drift(id, rate_ppm) => {
            s.budget.clock_drifts -= 1;
            let now = s.now_ms;
            s.host_mut(*id).mono.set_rate(now, *rate_ppm);
        }
    }
    Ok(())
}

/// Processes everything node `id` has to say until it is quiet, as the simulator's driver
/// does: writes go to the pending queue, messages to the network (checked against durable
/// state as they leave; dropped when the buffer is full), committed entries are applied,
/// client writes acknowledged, and reads served and checked for freshness.
fn drive(s: &mut State, id: NodeId, b: &Bounds) -> Result<(), Broken> {
    const DRIVE_ROUNDS_MAX: usize = 64;
    let now = s.time_of(id);
    for _ in 0..DRIVE_ROUNDS_MAX {
        let h = s.host_mut(id);
        if !h.node.has_ready() {
            return Ok(());
        }
        let ready = h.node.ready();
        let sync = !b.async_disk();
        for w in ready.writes {
            if sync {
                h.disk.apply(&w);
                h.node.persisted(now, w.id);
            } else {
                h.pending.push_back(w);
            }
        }
        let monitor = &mut SafetyMonitor::new();
        for m in &ready.messages {
            monitor
                .observe_sent(&h.node, m)
                .map_err(|v| broken(v.property, v.detail))?;
        }
        for n in &ready.notes {
            if let keel_core::Note::ConfigCommitted { membership, .. } = n {
                if !membership.is_joint() && membership.voters != b.initial_voters() {
                    s.reached |= crate::REACHED_RECONFIGURED;
                }
            }
        }
        let h = s.host_mut(id);
        let mut acked = 0;
        for e in &ready.committed {
            if let (EntryKind::Normal(_), Some(term)) = (&e.kind, h.proposals.remove(&e.index)) {
                if term == e.term {
                    acked = acked.max(e.index);
                }
            }
        }
        let handed = ready.committed.last().map(|e| e.index);
        if let Some(i) = handed {
            if i > h.node.applied_index() {
                h.node.applied(now, i);
            }
        }
        let applied = h.node.applied_index();
        for r in &ready.reads {
            let Some(required) = h.reads.remove(&r.id) else {
                continue;
            };
            let still_valid = h.node.lease_read_still_valid(now, r.path);
            if still_valid && applied < required {
                return Err(broken(
                    "read-freshness",
                    format!("node {id} served a {:?} read at applied index {applied}, but a write acknowledged before the read began is at index {required}", r.path),
                ));
            }
        }
        for (rid, _) in &ready.failed_reads {
            h.reads.remove(rid);
        }
        s.acked_max = s.acked_max.max(acked);
        for m in ready.messages {
            if s.net.len() < b.messages {
                s.net.push(m);
            }
        }
    }
    Err(broken(
        "driver",
        format!("node {id} still had output after {DRIVE_ROUNDS_MAX} rounds"),
    ))
}
