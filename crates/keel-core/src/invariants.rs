//! Cluster-wide safety properties as code (docs/safety.md). A `SafetyMonitor` watches every
//! node after every event; the simulator, the model checker and the scenario tests use it.
//! Node-local invariants (applied <= committed <= last index, commit monotonic within a life,
//! one uncommitted configuration at a leader) are asserted inside the core itself.

use crate::message::{Body, Message};
use crate::node::{Node, Role};
use crate::quorum::Membership;
use crate::types::{Entry, EntryKind, Index, NodeId, Term};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// One of the property names in docs/safety.md, e.g. `election-safety`.
    pub property: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

fn violation(property: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { property, detail })
}

/// Joint consensus: a configuration entry at `index` changes the voters of the configuration
/// before it in the log (or in the snapshot) only through a joint configuration whose outgoing
/// voters are the previous voters, and leaves a joint configuration only for its incoming one.
fn check_joint_step(node: &Node, index: Index, m: &Membership) -> Result<(), Violation> {
    let log = node.log();
    assert!(index > log.snapshot_index && index <= log.last_index());
    let p = (log.snapshot_index + 1..index)
        .rev()
        .find_map(|i| match &log.entry(i).expect("in range").kind {
            EntryKind::Config(p) => Some(p),
            _ => None,
        })
        .unwrap_or(&node.base_membership.1);
    if p.voters.is_empty() {
        // A node that joined empty learns the cluster's configuration: not a change.
        return Ok(());
    }
    let direct = !m.is_joint() && !p.is_joint() && m.voters != p.voters;
    let wrong_joint = m.is_joint() && m.voters_outgoing != p.voters;
    let wrong_leave = !m.is_joint() && p.is_joint() && m.voters != p.voters;
    if direct || wrong_joint || wrong_leave {
        return violation(
            "joint-consensus",
            format!(
                "node {}: configuration at index {index} switches voters {:?} -> {:?} without the joint phase",
                node.id(),
                p.voters,
                m.voters
            ),
        );
    }
    Ok(())
}

/// A stable content hash of an entry (deterministic: SipHash with fixed zero keys).
pub fn entry_hash(e: &Entry) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    e.term.hash(&mut h);
    e.index.hash(&mut h);
    match &e.kind {
        EntryKind::Noop => 0u8.hash(&mut h),
        EntryKind::Normal(d) => {
            1u8.hash(&mut h);
            d.hash(&mut h);
        }
        EntryKind::Config(m) => {
            2u8.hash(&mut h);
            m.hash(&mut h);
        }
    }
    h.finish()
}

#[derive(Clone, Debug, Default)]
struct NodeWatch {
    /// Highest index whose entry was checked against the global record, with its term.
    verified: Index,
    verified_term: Term,
    commit: Index,
    durable_commit: Index,
    durable_term: Term,
    leader_term: Term,
    leader_last: (Index, Term),
    sm_checked: Index,
    /// The term in which the node was leader at the previous observation, if it was.
    leading: Option<Term>,
}

#[derive(Clone, Debug, Default)]
pub struct SafetyMonitor {
    /// Election Safety: at most one leader per term.
    leaders: BTreeMap<Term, NodeId>,
    /// Log Matching, inductively: every (index, term) ever seen has one content and one
    /// predecessor term.
    seen: BTreeMap<(Index, Term), (u64, Term)>,
    /// State Machine Safety: the term and content of every index known committed anywhere,
    /// and the observing node's term when first seen committed (an upper bound of the term in
    /// which it was committed).
    committed: BTreeMap<Index, (Term, u64, Term)>,
    /// What each node applied (index -> hash), to compare across nodes.
    applied: BTreeMap<Index, u64>,
    nodes: BTreeMap<NodeId, NodeWatch>,
}

impl SafetyMonitor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// Checks every property that can be seen in one node's state. Call after every event.
    pub fn observe(&mut self, node: &Node) -> Result<(), Violation> {
        let id = node.id();
        let mut w = self.nodes.remove(&id).unwrap_or_default();
        let result = self.observe_inner(node, &mut w);
        self.nodes.insert(id, w);
        result
    }

    fn observe_inner(&mut self, node: &Node, w: &mut NodeWatch) -> Result<(), Violation> {
        let id = node.id();
        let log = node.log();
        // applied <= committed <= last index.
        if log.applied > log.committed || log.committed > log.last_index() {
            return violation(
                "index-order",
                format!(
                    "node {id}: applied {} committed {} last {}",
                    log.applied,
                    log.committed,
                    log.last_index()
                ),
            );
        }
        // Commit index monotonic (within a life here; across restarts in `observe_restart`).
        if log.committed < w.commit {
            return violation(
                "commit-monotonic",
                format!("node {id}: commit {} after {}", log.committed, w.commit),
            );
        }
        let commit_before = w.commit;
        w.commit = log.committed;
        // The commit rule (Raft Figure 8): a leader advances its commit index only to an entry
        // of its own term; older entries are committed indirectly, never by counting replicas.
        let was_leading = w.leading == Some(node.term());
        w.leading = (node.role() == Role::Leader).then_some(node.term());
        if was_leading
            && node.role() == Role::Leader
            && log.committed > commit_before
            && log.term(log.committed) != Some(node.term())
        {
            return violation(
                "commit-current-term",
                format!(
                    "leader {id} of term {} advanced its commit to index {} of term {:?}",
                    node.term(),
                    log.committed,
                    log.term(log.committed)
                ),
            );
        }
        let hs = node.durable_hard_state();
        if hs.commit < w.durable_commit || hs.term < w.durable_term {
            return violation(
                "commit-monotonic",
                format!(
                    "node {id}: durable (term {}, commit {}) after ({}, {})",
                    hs.term, hs.commit, w.durable_term, w.durable_commit
                ),
            );
        }
        w.durable_commit = hs.commit;
        w.durable_term = hs.term;

        // Election Safety.
        if node.role() == Role::Leader {
            match self.leaders.get(&node.term()) {
                Some(other) if *other != id => {
                    return violation(
                        "election-safety",
                        format!("nodes {other} and {id} both leader in term {}", node.term()),
                    );
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(node.term(), id);
                }
            }
        }

        // Log Matching (incremental): re-verify from the last point still unchanged.
        if w.verified > log.last_index()
            || (w.verified > log.snapshot_index && log.term(w.verified) != Some(w.verified_term))
        {
            // The suffix changed (truncation); walk back to an unchanged point.
            let mut i = w.verified.min(log.last_index());
            while i > log.snapshot_index {
                if let Some(e) = log.entry(i) {
                    if self
                        .seen
                        .get(&(i, e.term))
                        .is_some_and(|(h, _)| *h == entry_hash(e))
                    {
                        break;
                    }
                }
                i -= 1;
            }
            w.verified = i;
        }
        let start = w.verified.max(log.snapshot_index) + 1;
        for i in start..=log.last_index() {
            let e = log.entry(i).expect("in range");
            if let EntryKind::Config(m) = &e.kind {
                check_joint_step(node, i, m)?;
            }
            let h = entry_hash(e);
            let prev_term = log.term(i - 1).unwrap_or(0);
            match self.seen.get(&(i, e.term)) {
                Some((h0, p0)) => {
                    if *h0 != h {
                        return violation(
                            "log-matching",
                            format!(
                                "node {id}: index {i} term {} holds different content",
                                e.term
                            ),
                        );
                    }
                    if i - 1 > log.snapshot_index && *p0 != prev_term {
                        return violation(
                            "log-matching",
                            format!("node {id}: index {i} term {} follows term {prev_term}, elsewhere term {p0}", e.term),
                        );
                    }
                }
                None => {
                    self.seen.insert((i, e.term), (h, prev_term));
                }
            }
        }
        w.verified = log.last_index();
        w.verified_term = log.last_term();

        // State Machine Safety: what one node committed, no node commits differently.
        let lo = w.sm_checked.max(log.snapshot_index) + 1;
        for i in lo..=log.committed {
            let e = log.entry(i).expect("committed entry above the snapshot");
            let h = entry_hash(e);
            match self.committed.get(&i) {
                Some((t, h0, _)) if *t != e.term || *h0 != h => {
                    return violation(
                        "state-machine-safety",
                        format!("node {id}: committed index {i} term {} but term {t} was committed there before", e.term),
                    );
                }
                Some(_) => {}
                None => {
                    self.committed.insert(i, (e.term, h, node.term()));
                }
            }
        }
        w.sm_checked = w.sm_checked.max(log.committed);

        // Leader Completeness: the leader of term L holds every entry committed in a term below
        // L (checked when it takes office; Leader Append-Only keeps it true).
        if node.role() == Role::Leader {
            if w.leader_term != node.term() {
                w.leader_term = node.term();
                for (&i, &(t, h, committed_in)) in self.committed.range(log.snapshot_index + 1..) {
                    if committed_in >= node.term() {
                        continue;
                    }
                    match log.entry(i) {
                        Some(e) if e.term == t && entry_hash(e) == h => {}
                        _ => {
                            return violation(
                                "leader-completeness",
                                format!(
                                    "leader {id} of term {} lacks committed index {i} (term {t})",
                                    node.term()
                                ),
                            );
                        }
                    }
                }
                w.leader_last = (log.last_index(), log.last_term());
            } else {
                // Leader Append-Only: the entry that was last stays, with its term.
                let (li, lt) = w.leader_last;
                if li > log.snapshot_index && log.term(li) != Some(lt) {
                    return violation(
                        "leader-append-only",
                        format!("leader {id} of term {} changed index {li}", node.term()),
                    );
                }
                w.leader_last = (log.last_index(), log.last_term());
            }
        }
        Ok(())
    }

    /// The application applied `entry` on node `id`: every node applies the same entry at an index.
    pub fn observe_applied(&mut self, id: NodeId, entry: &Entry) -> Result<(), Violation> {
        let h = entry_hash(entry);
        match self.applied.get(&entry.index) {
            Some(h0) if *h0 != h => violation(
                "state-machine-safety",
                format!(
                    "node {id} applied a different entry at index {} (term {})",
                    entry.index, entry.term
                ),
            ),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(entry.index, h);
                Ok(())
            }
        }
    }

    /// A message left `node`: its term (and, for a granted vote, the vote) must be durable.
    pub fn observe_sent(&mut self, node: &Node, msg: &Message) -> Result<(), Violation> {
        let hs = node.durable_hard_state();
        match &msg.body {
            Body::PreVoteResponse { granted: true } | Body::VoteResponse { granted: true }
                if node.repairing() =>
            {
                violation(
                    "repair-no-vote",
                    format!(
                        "node {} granted a {} in term {} to {} while repairing",
                        msg.from,
                        msg.kind_name(),
                        msg.term,
                        msg.to
                    ),
                )
            }
            Body::PreVote { .. } | Body::PreVoteResponse { .. } => Ok(()),
            Body::VoteResponse { granted: true } => {
                if hs.term != msg.term || hs.vote != Some(msg.to) {
                    violation(
                        "vote-persisted-before-reply",
                        format!(
                            "node {} granted its vote in term {} to {} before persisting it",
                            msg.from, msg.term, msg.to
                        ),
                    )
                } else {
                    Ok(())
                }
            }
            _ if hs.term < msg.term => violation(
                "term-persisted-before-send",
                format!(
                    "node {} sent {} in term {} with durable term {}",
                    msg.from,
                    msg.kind_name(),
                    msg.term,
                    hs.term
                ),
            ),
            _ => Ok(()),
        }
    }

    /// A node restarted: its commit index must not be below what it had made durable.
    pub fn observe_restart(&mut self, node: &Node) -> Result<(), Violation> {
        let id = node.id();
        let w = self.nodes.entry(id).or_default();
        if node.repairing() {
            // Repair mode distrusts the saved commit index (repair.rs): it restarts from the
            // snapshot and is re-learned from a leader.
            w.durable_commit = w.durable_commit.min(node.commit_index());
        }
        if node.commit_index() < w.durable_commit {
            return violation(
                "commit-monotonic",
                format!(
                    "node {id} restarted with commit {} below its durable {}",
                    node.commit_index(),
                    w.durable_commit
                ),
            );
        }
        w.commit = node.commit_index();
        w.verified = 0;
        w.verified_term = 0;
        w.leader_term = 0;
        w.sm_checked = 0;
        Ok(())
    }

    /// A node's storage discarded damaged synced entries after `kept_index` (repair mode, or
    /// the unsafe silent truncation the simulator uses to prove the checks have teeth): its
    /// durable commit index may come back lowered to `kept_index`.
    pub fn observe_storage_damage(&mut self, id: NodeId, kept_index: Index) {
        if let Some(w) = self.nodes.get_mut(&id) {
            w.durable_commit = w.durable_commit.min(kept_index);
        }
    }

    /// A node lost its memory (crash): forget in-memory watermarks, keep durable ones.
    pub fn observe_crash(&mut self, id: NodeId) {
        if let Some(w) = self.nodes.get_mut(&id) {
            w.commit = 0;
            w.leader_term = 0;
        }
    }
}
