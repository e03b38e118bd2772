//! Repair mode: protocol-aware recovery after storage discarded a damaged suffix of synced data
//! (Alagappan et al., FAST 2018). See docs/safety.md, "Repair mode".
//!
//! A node whose storage cut synced entries may have acknowledged those entries, and a leader
//! may have counted that acknowledgement toward a commit. Until it holds them again it must not
//! help elect a leader that lacks them, so while repairing it:
//! - refuses every pre-vote and vote (election.rs),
//! - never campaigns: no election-timeout campaign, TimeoutNow ignored (node.rs),
//! - starts in `restored term + 1` without a vote, so the leader it acknowledged (whose
//!   progress still counts the lost acknowledgements) steps down and the next leader probes it
//!   from scratch.
//!
//! The driver persists the flag (keel-persist keeps a marker file from the repairing open until
//! it performs a `Write` with `repair_completed`), so a crash while repairing restarts repairing.
//!
//! It is caught up (and the flag clears, `Note::RepairCompleted`) once its log durably holds a
//! leader's log up to an entry of that leader's term, which is newer than any term the node had
//! before the damage, and up to that leader's commit index. Every entry committed with the
//! node's lost acknowledgements was committed in an older term, so by Leader Completeness it
//! precedes that entry in the leader's log, and is now durable here.

use crate::node::{Node, Note};
use crate::types::{Index, Term};
use crate::{Config, Restored, Time};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Repair {
    /// The term the node restarted with: every entry it acknowledged before the damage has a
    /// term at most this.
    pub restored_term: Term,
    /// An entry (index, term) of a leader's term > `restored_term` that this node accepted from
    /// that leader, at or beyond the leader's commit index: caught up once it is durable.
    pub target: Option<(Index, Term)>,
}

impl Node {
    /// Starts a node whose storage discarded damaged synced data (or that crashed while
    /// repairing): it neither votes nor campaigns until it has caught up from a leader.
    pub fn new_repairing(cfg: Config, restored: Restored, now: Time) -> Result<Node, String> {
        let mut node = Node::new(cfg, restored, now)?;
        // The saved commit index is not trusted: a log cut at damage may be an older state of
        // the log than the one that index was saved for (entries a later truncate record had
        // replaced are back). Only the snapshot is known committed; the rest is re-learned
        // from a leader.
        let base = node.log.snapshot_index;
        node.log.committed = base;
        node.max_committed_seen = base;
        node.durable_hard_state.commit = base;
        node.written_hard_state.commit = base;
        let restored_term = node.term;
        node.term = restored_term + 1;
        node.vote = None;
        node.mark_term_changed();
        node.repair = Some(Repair {
            restored_term,
            target: None,
        });
        node.reset_election_deadline();
        assert!(node.term > restored_term);
        node.check_invariants();
        Ok(node)
    }

    /// True while the node is repairing: it refuses votes and never campaigns.
    pub fn repairing(&self) -> bool {
        self.repair.is_some()
    }

    /// The leader of the current term appended up to `last_new` (accepted) with commit `commit`.
    pub(crate) fn repair_on_append(&mut self, last_new: Index, commit: Index) {
        let term = self.term;
        let own_term_entry = self.log.term(last_new) == Some(term);
        let Some(repair) = self.repair.as_mut() else {
            return;
        };
        assert!(term > repair.restored_term, "repairing node kept its term");
        if own_term_entry && last_new >= commit {
            let better = repair.target.is_none_or(|(i, t)| (t, i) < (term, last_new));
            if better {
                repair.target = Some((last_new, term));
            }
        }
        self.repair_maybe_complete();
    }

    /// Clears the flag once the target entry is durable here and still in the log.
    pub(crate) fn repair_maybe_complete(&mut self) {
        let Some(repair) = &self.repair else {
            return;
        };
        let Some((index, term)) = repair.target else {
            return;
        };
        assert!(term > repair.restored_term, "target of an old term");
        if self.log.term(index) != Some(term) {
            // Truncated by a later leader: wait for a new target.
            self.repair.as_mut().expect("checked").target = None;
            return;
        }
        if self.durable_last_index < index {
            return;
        }
        self.repair = None;
        self.open_write.repair_completed = true;
        self.out.notes.push(Note::RepairCompleted { index, term });
    }
}
