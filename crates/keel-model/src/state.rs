//! One explored state: every node (real `keel_core::Node` clones), its durable disk and pending
//! writes, the network as a multiset of in-flight messages, one global clock, the remaining
//! action budgets, and the per-path history the properties need (leaders per term, committed
//! entries, acknowledged writes).

use keel_core::invariants::entry_hash;
use keel_core::rename::Rename;
use keel_core::{
    Config, Entry, HardState, Index, Membership, Message, Node, NodeId, Restored, Snapshot, Term,
    Time, Write,
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

    fn hash_into(&self, r: Rename, h: &mut impl Hasher) {
        let hs = &self.hard_state;
        (hs.term, hs.vote.map(r), hs.commit).hash(h);
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
    /// This node's monotonic clock (`drift` actions change its rate within the configured
    /// drift bound).
    pub mono: MonoClock,
}

/// A monotonic clock that runs at `1 + rate_ppm / 10^6` times true time since `base_true_ms`,
/// where it read `at_base_ms`. Never goes back (|rate| is far below 10^6 ppm).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MonoClock {
    pub base_true_ms: u64,
    pub at_base_ms: u64,
    pub rate_ppm: i64,
}

impl MonoClock {
    pub fn read(&self, now_ms: u64) -> u64 {
        assert!(now_ms >= self.base_true_ms, "true time never goes back");
        assert!(
            self.rate_ppm.abs() < 1_000_000,
            "a clock that runs backwards"
        );
        let elapsed = (now_ms - self.base_true_ms) as i128;
        let scaled = elapsed * (1_000_000 + self.rate_ppm as i128) / 1_000_000;
        self.at_base_ms + scaled as u64
    }

    /// From true time `now_ms` on, run at `rate_ppm`.
    pub fn set_rate(&mut self, now_ms: u64, rate_ppm: i64) {
        let reading = self.read(now_ms);
        *self = MonoClock {
            base_true_ms: now_ms,
            at_base_ms: reading,
            rate_ppm,
        };
        assert_eq!(
            self.read(now_ms),
            reading,
            "a rate change does not jump the clock"
        );
    }
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
    pub clock_drifts: u32,
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

pub fn message_key(m: &Message) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    keel_core::rename::hash_message(m, &keel_core::rename::identity, &mut h);
    h.finish()
}

impl State {
    /// The visited-set key. Leaves out nothing that can change a later outcome except the
    /// time-derived deadlines inside the nodes (see `Node::fingerprint`); the global clock is in.
    /// With `symmetric`, the smallest key over every renaming of the node ids (symmetry
    /// reduction; see lib.rs for what that assumes).
    pub fn fingerprint(&self, symmetric: bool) -> u64 {
        if !symmetric {
            return self.fingerprint_renamed(&keel_core::rename::identity, true);
        }
        let n = self.hosts.len() as NodeId;
        let mut best = u64::MAX;
        for perm in permutations(n) {
            let r = |id: NodeId| perm[(id - 1) as usize];
            best = best.min(self.fingerprint_renamed(&r, false));
        }
        best
    }

    /// The key with every node id renamed by `r`. `content`: include the content hashes of the
    /// committed history (they cannot be renamed; under symmetry the nodes' logs, which are
    /// renamed, still tell the contents apart).
    fn fingerprint_renamed(&self, r: Rename, content: bool) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        let mut order: Vec<(NodeId, &Host)> = self
            .hosts
            .iter()
            .map(|host| (r(host.node.id()), host))
            .collect();
        order.sort_unstable_by_key(|(id, _)| *id);
        for (id, host) in order {
            id.hash(&mut h);
            host.node.fingerprint_renamed(r).hash(&mut h);
            host.disk.hash_into(r, &mut h);
            host.pending.len().hash(&mut h);
            host.proposals.hash(&mut h);
            host.reads.hash(&mut h);
            (host.wall_offset_ms, host.mono).hash(&mut h);
        }
        let mut keys: Vec<u64> = self
            .net
            .iter()
            .map(|m| {
                let mut mh = std::hash::DefaultHasher::new();
                keel_core::rename::hash_message(m, r, &mut mh);
                mh.finish()
            })
            .collect();
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
        for (term, leader) in &self.leaders {
            (term, r(*leader)).hash(&mut h);
        }
        for (index, (term, hash, committed_in)) in &self.committed {
            (index, term, committed_in).hash(&mut h);
            if content {
                hash.hash(&mut h);
            }
        }
        h.finish()
    }

    /// What node `id`'s clocks read now.
    pub fn time_of(&self, id: NodeId) -> Time {
        let h = self.host(id);
        Time {
            mono_ms: h.mono.read(self.now_ms),
            ..time_at(self.now_ms, h.wall_offset_ms)
        }
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

/// Every permutation of the ids 1..=n, as the new id of each old id (index = old id - 1).
pub fn permutations(n: NodeId) -> Vec<Vec<NodeId>> {
    assert!(
        (1..=6).contains(&n),
        "symmetry reduction over at most 6 nodes"
    );
    let mut out = vec![Vec::new()];
    for _ in 0..n {
        let mut next = Vec::new();
        for p in &out {
            for id in 1..=n {
                if !p.contains(&id) {
                    let mut q = p.clone();
                    q.push(id);
                    next.push(q);
                }
            }
        }
        out = next;
    }
    assert_eq!(out.len(), (1..=n as usize).product::<usize>());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_changes_rate_without_jumping_and_never_goes_back() {
        let mut c = MonoClock::default();
        assert_eq!(c.read(1_000), 1_000);
        c.set_rate(1_000, 500_000);
        assert_eq!(c.read(1_000), 1_000, "no jump at the change");
        assert_eq!(c.read(1_200), 1_300, "runs 1.5x fast");
        c.set_rate(1_200, -500_000);
        assert_eq!(c.read(1_200), 1_300);
        assert_eq!(c.read(1_400), 1_400, "runs 0.5x slow, never back");
    }

    #[test]
    fn permutations_are_all_distinct_orderings() {
        let p = permutations(3);
        assert_eq!(p.len(), 6);
        let distinct: std::collections::BTreeSet<_> = p.iter().collect();
        assert_eq!(distinct.len(), 6);
        assert!(p.iter().all(|q| {
            let mut s = q.clone();
            s.sort_unstable();
            s == vec![1, 2, 3]
        }));
    }
}
