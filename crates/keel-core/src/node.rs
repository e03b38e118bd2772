//! The node: state, dispatch of events by role, term handling, and the output (`Ready`).
//!
//! Every public method takes the current `Time` from the driver, changes state, and queues
//! output; `ready()` hands the output over. Contract for the driver, per `Ready`:
//! 1. `restore` (if any): restore the application from this snapshot first.
//! 2. `writes`: start them in order; report each with `persisted(id)` once durable, in order.
//!    Inside one write: snapshot, then truncation, then entries, then hard state.
//! 3. `messages`: send now; the core already held back every message that depends on a write.
//! 4. `committed`: apply in order, then serve `reads` (each is ready once those are applied).

use crate::config::Config;
use crate::log::RaftLog;
use crate::message::{Body, Message};
use crate::progress::Progress;
use crate::quorum::Membership;
use crate::rng::SplitMix64;
use crate::types::*;
use crate::Mutant;
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// One durable write the driver must perform, in `id` order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Write {
    pub id: u64,
    pub snapshot: Option<Snapshot>,
    /// Remove every entry at this index and after, before appending `entries`.
    pub truncate_from: Option<Index>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// Entries up to and including this index may be purged (a durable snapshot covers them).
    pub compact_to: Option<Index>,
    /// Repair mode ended (`Note::RepairCompleted`): storage may now forget that this node is
    /// repairing. Losing this write in a crash only makes the node repair again.
    pub repair_completed: bool,
}

impl Write {
    fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.compact_to.is_none()
            && !self.repair_completed
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// Confirmed by a quorum heartbeat round after the read arrived.
    ReadIndex,
    /// Served under this leader's LeaseGuard lease: no round trip.
    Lease,
    /// Served by a new leader during its deferred-commit wait, for state untouched by the limbo
    /// region (the caller checked that).
    InheritedLease,
}

/// A read that may now be served: the state after applying `index` is fresh enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub id: u64,
    pub index: Index,
    pub path: ReadPath,
    pub term: Term,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotLeader {
        leader: Option<NodeId>,
        term: Term,
    },
    TooManyPending,
    /// Leadership was lost before the read could be confirmed.
    LeadershipLost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
        term: Term,
    },
    /// A leadership transfer is in progress; retry on the new leader.
    Transferring,
    /// The uncommitted tail would exceed `uncommitted_bytes_max`.
    UncommittedLimit {
        bytes: usize,
        limit: usize,
    },
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    ConfChangeInProgress,
    /// This leader has not yet committed an entry of its own term (or is still waiting out
    /// the previous leader's lease): retry shortly.
    TermNotEstablished,
    InvalidTransfer(String),
    InvalidConfChange(String),
    NotCaughtUp {
        node: NodeId,
        match_index: Index,
        commit: Index,
    },
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader, term } => {
                write!(f, "not the leader (term {term}, leader {leader:?})")
            }
            ProposeError::Transferring => write!(f, "leadership transfer in progress"),
            ProposeError::UncommittedLimit { bytes, limit } => {
                write!(f, "uncommitted log would hold {bytes} bytes, limit {limit}")
            }
            ProposeError::TooLarge { bytes, limit } => {
                write!(
                    f,
                    "entry of {bytes} bytes exceeds message_bytes_max {limit}"
                )
            }
            ProposeError::TermNotEstablished => write!(
                f,
                "the leader has not yet committed an entry of its term (retry shortly)"
            ),
            ProposeError::InvalidTransfer(why) => write!(f, "invalid leadership transfer: {why}"),
            ProposeError::ConfChangeInProgress => {
                write!(f, "a configuration change is already in flight")
            }
            ProposeError::InvalidConfChange(why) => {
                write!(f, "invalid configuration change: {why}")
            }
            ProposeError::NotCaughtUp {
                node,
                match_index,
                commit,
            } => write!(
                f,
                "learner {node} has not caught up (match {match_index}, commit {commit})"
            ),
        }
    }
}

/// Protocol events worth an audit record or a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    BecameLeader {
        term: Term,
    },
    SteppedDown {
        term: Term,
        reason: &'static str,
    },
    LeaderChanged {
        term: Term,
        leader: Option<NodeId>,
    },
    ConfigCommitted {
        index: Index,
        membership: Membership,
    },
    SnapshotInstalled {
        index: Index,
        term: Term,
    },
    SnapshotInstallFailed {
        reason: String,
    },
    TransferStarted {
        target: NodeId,
    },
    TransferAborted {
        target: NodeId,
    },
    /// Repair mode ended: the log durably holds a leader's log up to `index`, an entry of that
    /// leader's term `term` (see repair.rs). The node votes and campaigns again.
    RepairCompleted {
        index: Index,
        term: Term,
    },
}

/// Everything the driver must act on; see the module docs for the order.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    pub restore: Option<Snapshot>,
    pub writes: Vec<Write>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
    pub reads: Vec<ReadState>,
    pub failed_reads: Vec<(u64, ReadError)>,
    pub notes: Vec<Note>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.restore.is_none()
            && self.writes.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.failed_reads.is_empty()
            && self.notes.is_empty()
    }
}

/// Which durability a message waits for before it may leave the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    None,
    /// The current term and vote must be durable.
    Term,
    /// Everything written so far (log and hard state) must be durable.
    Log,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub elections_started: u64,
    pub leader_terms_won: u64,
    pub snapshot_install_failures: u64,
    pub snapshots_installed: u64,
    pub snapshots_sent: u64,
    pub proposals_refused: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub id: u64,
    pub index: Index,
    /// 0 until the read has a heartbeat round (no own-term commit yet, or it needs none).
    pub round: u64,
    pub path: ReadPath,
    /// Needs a confirming round (ReadIndex) before release.
    pub needs_round: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Transfer {
    pub target: NodeId,
    pub deadline_mono_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct IncomingSnapshot {
    pub meta: SnapshotMeta,
    pub total_bytes: u64,
    pub checksum: u32,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) rng: SplitMix64,
    pub(crate) now: Time,

    // Persistent state (durable copies are tracked below).
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) log: RaftLog,

    // Membership: the latest configuration in the log takes effect when appended.
    pub(crate) base_membership: (Index, Membership),
    pub(crate) config_entries: Vec<(Index, Membership)>,

    // Volatile state.
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) leader_contact_mono_ms: Option<u64>,
    pub(crate) election_deadline_mono_ms: u64,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// The campaign in `term` was started by TimeoutNow from the leader of `term - 1`.
    pub(crate) transfer_campaign: bool,

    // Leader state.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) heartbeat_due_mono_ms: u64,
    pub(crate) check_quorum_due_mono_ms: u64,
    pub(crate) last_append_mono_ms: u64,
    pub(crate) uncommitted_bytes: usize,
    pub(crate) transfer: Option<Transfer>,
    /// Lease reads are off for the rest of this term (TimeoutNow was sent).
    pub(crate) lease_forfeited_term: Term,
    /// LeaseGuard deferred commit: no commit before this wall-clock instant (earliest bound)...
    pub(crate) prior_lease_end_wall_ms: u64,
    /// ...or, when the wall clock is not trusted, before this monotonic instant.
    pub(crate) prior_lease_end_mono_ms: u64,
    /// The own lease: valid while `now.latest < own_lease_end_ms`.
    pub(crate) own_lease_end_ms: u64,
    /// Index of the last entry from a previous term when this node became leader (the end of
    /// the limbo region; its start is the commit index then).
    pub(crate) limbo_end: Index,

    // Reads.
    pub(crate) read_round: u64,
    pub(crate) round_outstanding: bool,
    pub(crate) pending_reads: VecDeque<PendingRead>,

    // Durability and gating.
    pub(crate) open_write: Write,
    pub(crate) write_seq: u64,
    pub(crate) durable_seq: u64,
    pub(crate) write_results: VecDeque<(u64, Index, HardState)>,
    pub(crate) durable_last_index: Index,
    pub(crate) durable_hard_state: HardState,
    pub(crate) written_hard_state: HardState,
    /// Write id (possibly the open write's future id) holding the latest term/vote change.
    pub(crate) term_write_id: u64,
    pub(crate) gated: VecDeque<(u64, Message)>,
    /// Proposals were appended since the last `ready()`: broadcast them there, together.
    pub(crate) broadcast_pending: bool,

    // Snapshots.
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,

    // Output.
    pub(crate) out: Ready,
    pub(crate) stats: Stats,
    pub(crate) max_committed_seen: Index,
    /// Repair mode (repair.rs): no votes, no campaigns until caught up from a leader.
    pub(crate) repair: Option<crate::repair::Repair>,
}

impl Node {
    /// Starts a node from what its storage recovered. Refuses inconsistent state with a reason.
    pub fn new(cfg: Config, restored: Restored, now: Time) -> Result<Node, String> {
        cfg.validate()?;
        let snapshot_meta = restored.snapshot.clone().unwrap_or_default();
        let mut log = RaftLog::new(
            snapshot_meta.index,
            snapshot_meta.term,
            snapshot_meta.last_stamp,
        );
        for e in restored.entries {
            if e.index != log.last_index() + 1 {
                return Err(format!(
                    "restored log has a gap at index {}",
                    log.last_index() + 1
                ));
            }
            if e.term < log.last_term() {
                return Err(format!(
                    "restored log has a decreasing term at index {}",
                    e.index
                ));
            }
            log.append(e);
        }
        let mut hs = restored.hard_state;
        if hs.term < log.last_term() {
            // A write holding entries of a newer term and the new hard state was torn after the
            // entries: the term is at least the log's last term. The vote of that newer term
            // (if any) was never sent: vote replies wait for the write that was lost.
            hs.term = log.last_term();
            hs.vote = None;
        }
        if hs.commit > log.last_index() {
            return Err(format!(
                "hard state commit {} is beyond the last log index {}",
                hs.commit,
                log.last_index()
            ));
        }
        log.committed = hs.commit.max(log.snapshot_index);
        let mut node = Node {
            id: cfg.id,
            rng: SplitMix64::new(cfg.random_seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            now,
            term: hs.term,
            vote: hs.vote,
            base_membership: (
                snapshot_meta.config_version,
                snapshot_meta.membership.clone(),
            ),
            config_entries: Vec::new(),
            role: Role::Follower,
            leader: None,
            leader_contact_mono_ms: None,
            election_deadline_mono_ms: 0,
            votes: BTreeMap::new(),
            transfer_campaign: false,
            progress: BTreeMap::new(),
            heartbeat_due_mono_ms: 0,
            check_quorum_due_mono_ms: 0,
            last_append_mono_ms: now.mono_ms,
            uncommitted_bytes: 0,
            transfer: None,
            lease_forfeited_term: 0,
            prior_lease_end_wall_ms: 0,
            prior_lease_end_mono_ms: 0,
            own_lease_end_ms: 0,
            limbo_end: 0,
            read_round: 0,
            round_outstanding: false,
            pending_reads: VecDeque::new(),
            open_write: Write::default(),
            write_seq: 0,
            durable_seq: 0,
            write_results: VecDeque::new(),
            durable_last_index: log.last_index(),
            durable_hard_state: hs,
            written_hard_state: hs,
            term_write_id: 0,
            gated: VecDeque::new(),
            broadcast_pending: false,
            snapshot: None,
            incoming_snapshot: None,
            out: Ready::default(),
            stats: Stats::default(),
            max_committed_seen: log.committed,
            repair: None,
            log,
            cfg,
        };
        let config_entries: Vec<(Index, Membership)> = node
            .log
            .entries()
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Config(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .collect();
        node.config_entries = config_entries;
        node.reset_election_deadline();
        node.check_invariants();
        Ok(node)
    }

    /// Gives the node the full snapshot its storage holds (needed to send it to followers).
    pub fn set_snapshot(&mut self, snapshot: Snapshot) {
        assert_eq!(
            snapshot.meta.index, self.log.snapshot_index,
            "snapshot must match the log's base"
        );
        self.snapshot = Some(snapshot);
    }

    // ----- Accessors -----

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn commit_index(&self) -> Index {
        self.log.committed
    }
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn durable_hard_state(&self) -> HardState {
        self.durable_hard_state
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// The configuration in effect (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        self.config_entries
            .last()
            .map_or(&self.base_membership.1, |(_, m)| m)
    }
    /// The config version: the index of the entry that holds the configuration in effect.
    pub fn config_version(&self) -> Index {
        self.config_entries
            .last()
            .map_or(self.base_membership.0, |(i, _)| *i)
    }
    /// Milliseconds since this node last heard from a leader (None: never in this life).
    pub fn last_leader_contact_ms(&self) -> Option<u64> {
        if self.role == Role::Leader {
            return Some(0);
        }
        self.leader_contact_mono_ms
            .map(|t| self.now.mono_ms.saturating_sub(t))
    }
    /// A hash of the protocol state that matters for exploration (model checking): role, term,
    /// vote, leader, log (index, term, content), commit, membership, durable state, progress.
    /// Time-derived deadlines are left out (the model checker fires timers as actions).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint_renamed(&crate::rename::identity)
    }

    /// `fingerprint` with every node id passed through `r` (a permutation): equal for two
    /// nodes whose states differ only by that renaming (symmetry reduction, rename.rs).
    pub fn fingerprint_renamed(&self, r: crate::rename::Rename) -> u64 {
        use crate::rename::{hash_entries, hash_membership};
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (
            r(self.id),
            self.role,
            self.term,
            self.vote.map(r),
            self.leader.map(r),
        )
            .hash(&mut h);
        (
            self.log.snapshot_index,
            self.log.snapshot_term,
            self.log.committed,
            self.log.handed,
        )
            .hash(&mut h);
        hash_entries(self.log.entries(), r, &mut h);
        for (index, m) in &self.config_entries {
            index.hash(&mut h);
            hash_membership(m, r, &mut h);
        }
        self.base_membership.0.hash(&mut h);
        hash_membership(&self.base_membership.1, r, &mut h);
        let hs = &self.durable_hard_state;
        (
            hs.term,
            hs.vote.map(r),
            hs.commit,
            self.durable_last_index,
            self.write_seq,
            self.durable_seq,
        )
            .hash(&mut h);
        let votes: BTreeMap<NodeId, bool> = self.votes.iter().map(|(id, v)| (r(*id), *v)).collect();
        assert_eq!(votes.len(), self.votes.len(), "a renaming is a permutation");
        votes.hash(&mut h);
        let mut progress: Vec<_> = self
            .progress
            .iter()
            .map(|(id, p)| {
                (
                    r(*id),
                    p.match_index,
                    p.next_index,
                    p.state as u8,
                    p.probe_sent,
                    p.acked_round,
                    p.repairing,
                )
            })
            .collect();
        progress.sort_unstable();
        progress.hash(&mut h);
        (
            self.read_round,
            self.pending_reads.len(),
            self.transfer.as_ref().map(|t| r(t.target)),
            self.broadcast_pending,
        )
            .hash(&mut h);
        if let Some(repair) = &self.repair {
            repair.hash(&mut h);
        }
        h.finish()
    }

    /// One line of protocol state, for traces and debugging.
    pub fn summary(&self) -> String {
        let repairing = if self.repair.is_some() {
            " repairing"
        } else {
            ""
        };
        format!(
            "node {} {} term {} vote {:?} leader {:?} commit {} applied {} last {} snap {} cfg v{} {:?} writes {}/{} gated {}{}",
            self.id,
            self.role.name(),
            self.term,
            self.vote,
            self.leader,
            self.log.committed,
            self.log.applied,
            self.log.last_index(),
            self.log.snapshot_index,
            self.config_version(),
            self.membership().voters,
            self.durable_seq,
            self.write_seq,
            self.gated.len(),
            repairing
        )
    }

    pub(crate) fn mutant(&self, m: Mutant) -> bool {
        cfg!(feature = "mutants") && self.cfg.mutant == Some(m)
    }

    // ----- Events -----

    /// Time advanced: elections, heartbeats, check-quorum, lease renewal, transfer timeouts.
    pub fn tick(&mut self, now: Time) {
        self.set_now(now);
        if self.role == Role::Leader {
            self.tick_leader();
        } else if now.mono_ms >= self.election_deadline_mono_ms {
            if self.promotable() && !self.repairing() {
                self.start_election(false);
            } else {
                self.reset_election_deadline();
            }
        }
        self.after_step();
    }

    /// A message from a peer.
    pub fn receive(&mut self, now: Time, msg: Message) {
        self.set_now(now);
        assert_eq!(msg.to, self.id, "message delivered to the wrong node");
        self.step(msg);
        self.after_step();
    }

    /// The driver made write `id` (and every earlier one) durable.
    pub fn persisted(&mut self, now: Time, id: u64) {
        self.set_now(now);
        assert!(
            id <= self.write_seq,
            "persisted a write that was never issued"
        );
        while let Some(&(wid, last, hs)) = self.write_results.front() {
            if wid > id {
                break;
            }
            self.write_results.pop_front();
            self.durable_seq = wid;
            self.durable_last_index = last;
            assert!(
                hs.commit >= self.durable_hard_state.commit,
                "durable commit regressed"
            );
            assert!(
                hs.term >= self.durable_hard_state.term,
                "durable term regressed"
            );
            self.durable_hard_state = hs;
        }
        self.repair_maybe_complete();
        if self.role == Role::Leader {
            self.maybe_commit();
        } else if self.role == Role::Candidate {
            self.maybe_win_election();
        }
        self.after_step();
    }

    /// The application applied every entry up to `index`.
    pub fn applied(&mut self, now: Time, index: Index) {
        self.set_now(now);
        assert!(
            index <= self.log.handed,
            "applied an entry that was never handed out"
        );
        if index > self.log.applied {
            self.log.applied = index;
        }
        self.after_step();
    }

    pub(crate) fn set_now(&mut self, now: Time) {
        assert!(
            now.mono_ms >= self.now.mono_ms,
            "monotonic clock went backwards"
        );
        self.now = now;
    }

    /// Wall-clock interval of the current reading.
    pub(crate) fn now_stamp(&self) -> Stamp {
        let u = self.cfg.clock_uncertainty_ms;
        Stamp {
            earliest_ms: self.now.wall_ms.saturating_sub(u),
            latest_ms: self.now.wall_ms.saturating_add(u),
        }
    }

    /// Hands over everything queued. The write ids in it are final.
    pub fn ready(&mut self) -> Ready {
        if std::mem::take(&mut self.broadcast_pending) && self.role == Role::Leader {
            self.broadcast_append();
        }
        self.flush_write();
        self.release_gated();
        self.hand_out_committed();
        self.release_reads();
        self.check_invariants();
        std::mem::take(&mut self.out)
    }

    pub fn has_ready(&self) -> bool {
        self.broadcast_pending
            || !self.out.is_empty()
            || !self.open_write.is_empty()
            || self.hard_state() != self.written_hard_state
            || self.log.handed < self.log.committed
            || self
                .gated
                .front()
                .is_some_and(|(g, _)| *g <= self.durable_seq)
            || self.gated.iter().any(|(g, _)| *g > self.write_seq)
            || self.pending_reads.iter().any(|r| {
                !r.needs_round && r.index > 0 && r.index <= self.log.handed.max(self.log.committed)
            })
    }

    // ----- Message dispatch -----

    pub(crate) fn step(&mut self, msg: Message) {
        if msg.term > self.term {
            match msg.body {
                Body::PreVote { .. } => {
                    // Never change term for a pre-vote; answered below.
                }
                Body::Vote { transfer, .. } if !transfer && self.in_leader_lease() => {
                    // Disruption protection: a live leader is known; ignore.
                    return;
                }
                Body::PreVoteResponse { granted: true } => {
                    // The response carries the future term; no term change.
                }
                _ => {
                    let leader = match msg.body {
                        Body::Append { .. }
                        | Body::Heartbeat { .. }
                        | Body::InstallSnapshot { .. } => Some(msg.from),
                        _ => None,
                    };
                    self.become_follower(msg.term, leader);
                }
            }
        } else if msg.term < self.term {
            match msg.body {
                Body::Append { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                    // A stale leader: tell it our term so it steps down.
                    self.send(
                        msg.from,
                        Body::AppendResponse {
                            index: 0,
                            reject: None,
                            repairing: self.repair.is_some(),
                        },
                        Gate::Term,
                    );
                }
                Body::PreVote { .. } => {
                    self.send_raw(
                        msg.from,
                        self.term,
                        Body::PreVoteResponse { granted: false },
                        Gate::None,
                    );
                }
                _ => {}
            }
            return;
        }

        match msg.body {
            Body::PreVote {
                last_index,
                last_term,
            } => self.handle_pre_vote(msg.from, msg.term, last_index, last_term),
            Body::Vote {
                last_index,
                last_term,
                transfer,
            } => self.handle_vote(msg.from, last_index, last_term, transfer),
            Body::PreVoteResponse { granted } => {
                self.handle_vote_response(msg.from, msg.term, granted, true)
            }
            Body::VoteResponse { granted } => {
                self.handle_vote_response(msg.from, msg.term, granted, false)
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.hear_from_leader(msg.from);
                self.handle_append(msg.from, prev_index, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, round } => {
                self.hear_from_leader(msg.from);
                self.handle_heartbeat(msg.from, commit, round);
            }
            Body::InstallSnapshot {
                meta,
                offset,
                total_bytes,
                checksum,
                chunk,
                done,
            } => {
                self.hear_from_leader(msg.from);
                self.handle_install_snapshot(
                    msg.from,
                    meta,
                    offset,
                    total_bytes,
                    checksum,
                    chunk,
                    done,
                );
            }
            Body::AppendResponse {
                index,
                reject,
                repairing,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(msg.from, index, reject, repairing);
                }
            }
            Body::HeartbeatResponse {
                round,
                last_index,
                repairing,
            } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(msg.from, round, last_index, repairing);
                }
            }
            Body::InstallSnapshotResponse {
                offset,
                index,
                done,
                rejected,
            } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(msg.from, offset, index, done, rejected);
                }
            }
            Body::TimeoutNow => {
                if self.promotable() && self.role != Role::Leader && !self.repairing() {
                    self.start_election(true);
                }
            }
        }
    }

    /// A follower that heard from its leader in the last election timeout ignores vote requests.
    pub(crate) fn in_leader_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        match (self.leader, self.leader_contact_mono_ms) {
            (Some(_), Some(t)) => self.now.mono_ms < t + self.cfg.election_timeout_ms,
            _ => false,
        }
    }

    pub(crate) fn hear_from_leader(&mut self, leader: NodeId) {
        assert_ne!(self.role, Role::Leader, "two leaders in term {}", self.term);
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        if self.leader != Some(leader) {
            self.leader = Some(leader);
            self.out.notes.push(Note::LeaderChanged {
                term: self.term,
                leader: Some(leader),
            });
        }
        self.leader_contact_mono_ms = Some(self.now.mono_ms);
        self.reset_election_deadline();
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never go back");
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.mark_term_changed();
        }
        self.role = Role::Follower;
        self.transfer_campaign = false;
        if self.leader != leader {
            self.leader = leader;
            self.out.notes.push(Note::LeaderChanged {
                term: self.term,
                leader,
            });
        }
        if leader.is_some() {
            self.leader_contact_mono_ms = Some(self.now.mono_ms);
        }
        if was_leader {
            self.out.notes.push(Note::SteppedDown {
                term: self.term,
                reason: "higher term",
            });
            self.clear_leader_state();
        }
        self.votes.clear();
        self.reset_election_deadline();
    }

    /// A leader gives up leadership without a term change (check-quorum, self-removal).
    pub(crate) fn step_down_in_term(&mut self, reason: &'static str) {
        assert_eq!(self.role, Role::Leader, "only a leader steps down");
        self.out.notes.push(Note::SteppedDown {
            term: self.term,
            reason,
        });
        self.clear_leader_state();
        self.role = Role::Follower;
        self.leader = None;
        self.out.notes.push(Note::LeaderChanged {
            term: self.term,
            leader: None,
        });
        self.reset_election_deadline();
    }

    pub(crate) fn clear_leader_state(&mut self) {
        self.progress.clear();
        self.transfer = None;
        self.uncommitted_bytes = 0;
        self.own_lease_end_ms = 0;
        self.round_outstanding = false;
        for read in self.pending_reads.drain(..) {
            self.out
                .failed_reads
                .push((read.id, ReadError::LeadershipLost));
        }
    }

    pub(crate) fn reset_election_deadline(&mut self) {
        let t = self.cfg.election_timeout_ms;
        self.election_deadline_mono_ms = self.now.mono_ms + t + self.rng.below(t);
    }

    /// Only voters of the configuration in effect may campaign.
    pub(crate) fn promotable(&self) -> bool {
        self.membership().is_voter(self.id)
    }

    // ----- Sending and durability -----

    pub(crate) fn send(&mut self, to: NodeId, body: Body, gate: Gate) {
        self.send_raw(to, self.term, body, gate);
    }

    pub(crate) fn send_raw(&mut self, to: NodeId, term: Term, body: Body, gate: Gate) {
        assert_ne!(to, self.id, "a node never messages itself");
        let msg = Message {
            from: self.id,
            to,
            term,
            body,
        };
        let gate_id = match gate {
            Gate::None => 0,
            Gate::Term => self.term_write_id,
            Gate::Log => self.write_seq + 1,
        };
        if gate_id <= self.durable_seq && self.gated.is_empty() {
            self.out.messages.push(msg);
        } else {
            // Keep order: a message never overtakes an earlier gated one to the same peer.
            self.gated.push_back((gate_id, msg));
        }
    }

    pub(crate) fn mark_term_changed(&mut self) {
        // The open write (future id write_seq + 1) will carry the new term and vote.
        self.term_write_id = self.write_seq + 1;
    }

    fn flush_write(&mut self) {
        let hs = self.hard_state();
        if hs != self.written_hard_state {
            self.open_write.hard_state = Some(hs);
        }
        if self.open_write.is_empty() {
            // Nothing to write: gates that waited for a write that never came fall back to the
            // last issued one.
            let seq = self.write_seq;
            for (gate, _) in self.gated.iter_mut() {
                if *gate > seq {
                    *gate = seq;
                }
            }
            self.term_write_id = self.term_write_id.min(seq);
            return;
        }
        self.write_seq += 1;
        let mut w = std::mem::take(&mut self.open_write);
        w.id = self.write_seq;
        self.written_hard_state = hs;
        self.write_results
            .push_back((w.id, self.log.last_index(), hs));
        self.out.writes.push(w);
    }

    fn release_gated(&mut self) {
        while let Some((gate, _)) = self.gated.front() {
            if *gate > self.durable_seq {
                break;
            }
            let (_, mut msg) = self.gated.pop_front().expect("front exists");
            // An acknowledgement says whether the node is repairing when it leaves, not when
            // it was queued: the write it waited for may have completed the repair, and every
            // entry it acknowledges is durable now.
            let now_repairing = self.repair.is_some();
            match &mut msg.body {
                Body::AppendResponse { repairing, .. }
                | Body::HeartbeatResponse { repairing, .. } => {
                    assert!(*repairing || !now_repairing, "repair mode never restarts");
                    *repairing = now_repairing;
                }
                _ => {}
            }
            self.out.messages.push(msg);
        }
    }

    fn hand_out_committed(&mut self) {
        const HAND_OUT_ENTRIES_MAX: u64 = 4096;
        let hi = self
            .log
            .committed
            .min(self.log.handed + HAND_OUT_ENTRIES_MAX);
        if hi > self.log.handed {
            let entries = self
                .log
                .slice(self.log.handed + 1, hi, usize::MAX, usize::MAX);
            assert_eq!(entries.len() as u64, hi - self.log.handed);
            self.log.handed = hi;
            self.out.committed.extend(entries);
        }
    }

    /// Common tail of every event: commit bookkeeping and invariants.
    pub(crate) fn after_step(&mut self) {
        if self.log.committed > self.max_committed_seen {
            self.max_committed_seen = self.log.committed;
        }
        self.check_invariants();
    }

    /// Local invariants, after every event. Cluster-wide ones live in `invariants.rs`.
    pub(crate) fn check_invariants(&self) {
        self.log.check();
        assert!(
            self.log.committed >= self.max_committed_seen,
            "commit index regressed"
        );
        assert!(
            self.durable_hard_state.term <= self.term,
            "durable term ahead of memory"
        );
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.id), "leader knows itself");
                assert_eq!(self.vote, Some(self.id), "leader voted for itself");
                let uncommitted_configs = self
                    .config_entries
                    .iter()
                    .filter(|(i, _)| *i > self.log.committed)
                    .count();
                assert!(
                    uncommitted_configs <= 1,
                    "at most one configuration change uncommitted"
                );
            }
            Role::Candidate => assert_eq!(self.vote, Some(self.id), "candidate voted for itself"),
            Role::Follower | Role::PreCandidate => {}
        }
        if self.repair.is_some() {
            assert_eq!(
                self.role,
                Role::Follower,
                "a repairing node never campaigns"
            );
        }
        if let Some((i, _)) = self.config_entries.last() {
            assert!(*i <= self.log.last_index(), "config entry beyond the log");
        }
    }
}
