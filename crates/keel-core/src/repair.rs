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

#[cfg(test)]
mod tests {
    use crate::message::{Body, Message};
    use crate::node::{Node, Role};
    use crate::quorum::Membership;
    use crate::types::{Entry, EntryKind, HardState, Restored, Stamp, Time};
    use crate::Config;

    fn at(mono_ms: u64) -> Time {
        Time {
            mono_ms,
            wall_ms: 1_000_000 + mono_ms,
            wall_trusted: true,
        }
    }

    fn repairing_node() -> Node {
        let mut restored = Restored::bootstrap(Membership::new([1, 2, 3]));
        restored.hard_state = HardState {
            term: 3,
            vote: Some(1),
            commit: 2,
        };
        restored.entries = (1..=2)
            .map(|index| Entry {
                index,
                term: 3,
                stamp: Stamp::default(),
                kind: EntryKind::Noop,
            })
            .collect();
        let node = Node::new_repairing(Config::new(2), restored, at(0)).unwrap();
        assert!(node.repairing());
        assert_eq!((node.term(), node.vote()), (4, None), "term + 1, no vote");
        assert_eq!(
            node.commit_index(),
            0,
            "the saved commit index is not trusted"
        );
        node
    }

    fn msg(from: u64, term: u64, body: Body) -> Message {
        Message {
            from,
            to: 2,
            term,
            body,
        }
    }

    /// Persists every write, then returns the vote and pre-vote answers that left.
    fn granted(node: &mut Node) -> Vec<bool> {
        let mut messages = Vec::new();
        for _ in 0..3 {
            let ready = node.ready();
            messages.extend(ready.messages);
            for w in &ready.writes {
                node.persisted(node.now, w.id);
            }
        }
        messages
            .iter()
            .filter_map(|m| match m.body {
                Body::VoteResponse { granted } | Body::PreVoteResponse { granted } => Some(granted),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn repairing_node_refuses_votes_ignores_timeout_now_and_never_campaigns() {
        let mut node = repairing_node();
        let up_to_date = |transfer| Body::Vote {
            last_index: 10,
            last_term: 9,
            transfer,
        };
        let pre_vote = Body::PreVote {
            last_index: 10,
            last_term: 9,
        };
        node.receive(at(1), msg(1, 6, pre_vote));
        node.receive(at(2), msg(1, 6, up_to_date(false)));
        node.receive(at(3), msg(3, 7, up_to_date(true)));
        assert_eq!(granted(&mut node), vec![false, false, false]);
        node.receive(at(4), msg(3, 7, Body::TimeoutNow));
        for t in (10..100_000).step_by(10) {
            node.tick(at(t));
        }
        assert_eq!(node.role(), Role::Follower);
        assert_eq!(node.stats().elections_started, 0, "never campaigns");
        assert!(node.repairing());
    }

    #[test]
    fn repair_completes_after_a_durable_entry_of_a_newer_leader_then_votes() {
        let mut node = repairing_node();
        assert!(granted(&mut node).is_empty());
        // The leader of term 5 appends its own entry after the node's log, with commit 3.
        let entry = Entry {
            index: 3,
            term: 5,
            stamp: Stamp::default(),
            kind: EntryKind::Noop,
        };
        let append = Body::Append {
            prev_index: 2,
            prev_term: 3,
            entries: vec![entry],
            commit: 3,
        };
        node.receive(at(2), msg(1, 5, append));
        assert!(node.repairing(), "not before the entry is durable");
        let ready = node.ready();
        assert_eq!(ready.writes.len(), 1);
        node.persisted(at(3), ready.writes[0].id);
        assert!(!node.repairing());
        let ready = node.ready();
        assert!(ready
            .notes
            .contains(&crate::Note::RepairCompleted { index: 3, term: 5 }));
        assert!(ready.writes.iter().any(|w| w.repair_completed));
        // Votes again: a later candidate with an up-to-date log gets the vote.
        let vote = Body::Vote {
            last_index: 3,
            last_term: 5,
            transfer: false,
        };
        node.receive(at(10_000), msg(3, 6, vote));
        assert_eq!(granted(&mut node), vec![true]);
    }
}
