//! One explored state: every node (real `keel_core::Node` clones), its durable disk and pending
//! writes, the network as a multiset of in-flight messages, one global clock, the remaining
//! action budgets, and the per-path history the properties need (leaders per term, committed
//! entries, acknowledged writes).

use keel_core::invariants::entry_hash;
use keel_core::{
    Body, Config, Entry, HardState, Index, Membership, Message, Node, NodeId, Restored, Snapshot,
    Term, Time, Write,
};
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

/// Wall-clock reading at model time 0 (any value well above the lease durations).
pub const WALL_BASE_MS: u64 = 1_000_000;

/// What survived on a node's disk (same rules as the simulator's disk: writes apply in order).
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Durable {
    pub fn apply(&mut self, w: &Write) {
        if let Some(s) = &w.snapshot {
            let keep_from = s.meta.index + 1;
            let matches = self
                .entries
                .iter()
                .any(|e| e.index == s.meta.index && e.term == s.meta.term);
            if !matches {
                self.entries.retain(|e| e.index >= keep_from);
                if self.entries.first().is_some_and(|e| e.index != keep_from) {
                    self.entries.clear();
                }
            }
            self.snapshot = Some(s.clone());
        }
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        for e in &w.entries {
            if self
                .entries
                .last()
                .is_some_and(|last| e.index != last.index + 1)
            {
                self.entries.retain(|x| x.index < e.index);
            }
            self.entries.push(e.clone());
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
        if let Some(c) = w.compact_to {
            self.entries.retain(|e| e.index > c);
        }
    }

    /// The contiguous run right after the snapshot, as a restarting node gets it.
    pub fn restored(&self) -> Restored {
        let base = self.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let mut entries = Vec::new();
        for e in self.entries.iter().filter(|e| e.index > base) {
            if e.index != base + 1 + entries.len() as u64 {
                break;
            }
            entries.push(e.clone());
        }
        Restored {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|s| s.meta.clone()),
            entries,
        }
    }

    fn hash_into(&self, h: &mut impl Hasher) {
        self.hard_state.hash(h);
        self.snapshot
            .as_ref()
            .map(|s| (s.meta.index, s.meta.term))
            .hash(h);
        for e in &self.entries {
            (e.index, e.term).hash(h);
        }
    }
}

#[derive(Clone)]
pub struct Host {
    pub node: Node,
    pub disk: Durable,
    /// Writes issued by the node and not yet durable, in order.
    pub pending: VecDeque<Write>,
    /// Client writes proposed here in this life: index -> term (acknowledged once applied).
    pub proposals: BTreeMap<Index, Term>,
    /// Reads asked here in this life: read id -> the highest acknowledged write index when the
    /// read began (the read must return a state at least that new).
    pub reads: BTreeMap<u64, Index>,
    /// This node's wall-clock error: its reading is true time plus this, within the configured
    /// uncertainty (`clock` actions move it between its two extremes).
    pub wall_offset_ms: i64,
}

/// Remaining budgets of the bounded actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Budget {
    pub crashes: u32,
    pub proposals: u32,
    pub reads: u32,
    pub conf_changes: u32,
    pub transfers: u32,
    pub snapshots: u32,
    pub drops: u32,
    pub duplicates: u32,
    pub ticks: u32,
    pub clock_skews: u32,
}

#[derive(Clone)]
pub struct State {
    pub hosts: Vec<Host>,
    /// In-flight messages; a multiset (order is irrelevant; the fingerprint sorts).
    pub net: Vec<Message>,
    pub now_ms: u64,
    pub budget: Budget,
    pub next_read_id: u64,
    /// The highest client value proposed so far (values are `v1`, `v2`, ...).
    pub next_value: u32,
    /// Per-path history: the leader of every term so far (Election Safety across time).
    pub leaders: BTreeMap<Term, NodeId>,
    /// Per-path history: every index ever committed anywhere, with (term, content hash, the
    /// term of the node first seen holding it committed).
    pub committed: BTreeMap<Index, (Term, u64, Term)>,
    /// Highest log index of a client write acknowledged so far.
    pub acked_max: Index,
    /// "Sometimes" properties reached on this path (bit set, see `crate::SOMETIMES`).
    pub reached: u8,
}

/// A clock reading at model time `now_ms` for a node whose wall clock is off by `offset_ms`.
pub fn time_at(now_ms: u64, offset_ms: i64) -> Time {
    Time {
        mono_ms: now_ms,
        wall_ms: (WALL_BASE_MS + now_ms).saturating_add_signed(offset_ms),
        wall_trusted: true,
    }
}

pub fn hash_message(m: &Message, h: &mut impl Hasher) {
    (m.from, m.to, m.term).hash(h);
    match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => (0u8, last_index, last_term).hash(h),
        Body::PreVoteResponse { granted } => (1u8, granted).hash(h),
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => (2u8, last_index, last_term, transfer).hash(h),
        Body::VoteResponse { granted } => (3u8, granted).hash(h),
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => (4u8, prev_index, prev_term, entries, commit).hash(h),
        Body::AppendResponse {
            index,
            reject,
            repairing,
        } => (5u8, index, reject.map(|r| (r.index, r.term)), repairing).hash(h),
        Body::Heartbeat { commit, round } => (6u8, commit, round).hash(h),
        Body::HeartbeatResponse {
            round,
            last_index,
            repairing,
        } => (7u8, round, last_index, repairing).hash(h),
        Body::InstallSnapshot {
            meta,
            offset,
            total_bytes,
            checksum,
            chunk,
            done,
        } => (8u8, meta, offset, total_bytes, checksum, chunk, done).hash(h),
        Body::InstallSnapshotResponse {
            offset,
            index,
            done,
            rejected,
        } => (9u8, offset, index, done, rejected).hash(h),
        Body::TimeoutNow => 10u8.hash(h),
    }
}

pub fn message_key(m: &Message) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    hash_message(m, &mut h);
    h.finish()
}

impl State {
    /// The visited-set key. Leaves out nothing that can change a later outcome except the
    /// time-derived deadlines inside the nodes (see `Node::fingerprint`); the global clock is in.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        for host in &self.hosts {
            host.node.fingerprint().hash(&mut h);
            host.disk.hash_into(&mut h);
            host.pending.len().hash(&mut h);
            host.proposals.hash(&mut h);
            host.reads.hash(&mut h);
            host.wall_offset_ms.hash(&mut h);
        }
        let mut keys: Vec<u64> = self.net.iter().map(message_key).collect();
        keys.sort_unstable();
        keys.hash(&mut h);
        (
            self.now_ms,
            self.budget,
            self.next_read_id,
            self.next_value,
            self.acked_max,
            self.reached,
        )
            .hash(&mut h);
        self.leaders.hash(&mut h);
        self.committed.hash(&mut h);
        h.finish()
    }

    /// What node `id`'s clocks read now.
    pub fn time_of(&self, id: NodeId) -> Time {
        time_at(self.now_ms, self.host(id).wall_offset_ms)
    }

    pub fn host(&self, id: NodeId) -> &Host {
        &self.hosts[(id - 1) as usize]
    }

    pub fn host_mut(&mut self, id: NodeId) -> &mut Host {
        &mut self.hosts[(id - 1) as usize]
    }
}

/// Boots node `id` from a disk.
pub fn boot(cfg: Config, disk: &Durable, now: Time) -> Result<Node, String> {
    let mut node = Node::new(cfg, disk.restored(), now)?;
    if let Some(s) = &disk.snapshot {
        node.set_snapshot(s.clone());
    }
    Ok(node)
}

/// The disk of a brand-new member of `membership` (config version 0).
pub fn bootstrap_disk(membership: &Membership) -> Durable {
    let meta = Restored::bootstrap(membership.clone())
        .snapshot
        .expect("bootstrap has a snapshot base");
    Durable {
        hard_state: HardState::default(),
        snapshot: Some(Snapshot {
            meta,
            data: app_bytes(0),
        }),
        entries: Vec::new(),
    }
}

/// The model's application state is just the applied index (content is checked through the
/// log); its snapshot bytes encode that index.
pub fn app_bytes(applied: Index) -> Vec<u8> {
    applied.to_le_bytes().to_vec()
}

pub fn entry_key(e: &Entry) -> u64 {
    entry_hash(e)
}
