//! Membership by joint consensus, learners, config versions, and leadership transfer.
//!
//! Rule (the dissertation's, §4.1): a node uses the latest configuration in its log as soon as
//! the entry is appended, committed or not; if that entry is truncated away, the node falls back
//! to the previous one. The config version is the index of the entry holding the configuration
//! in effect. One change at a time: a leader refuses a change while any configuration entry is
//! uncommitted or the configuration is joint. Changing voters goes through C_old,new (joint:
//! every decision needs both majorities); once that commits, the leader appends C_new by itself.
//! A leader that is not a voter of C_new steps down once C_new commits.

use crate::message::Body;
use crate::node::{Gate, Node, Note, ProposeError, Role, Transfer};
use crate::progress::Progress;
use crate::quorum::Membership;
use crate::types::{EntryKind, Index, NodeId, Term, Time};
use crate::Mutant;
use std::collections::BTreeSet;

/// A requested change, resolved by the leader against the configuration in effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChange {
    AddLearner(NodeId),
    /// Learner to voter; refused until the learner has caught up.
    Promote(NodeId),
    /// Removes a voter or a learner.
    Remove(NodeId),
    /// Any voter-set change at once (e.g. replace a node): add these voters, remove those.
    Replace {
        add_voters: Vec<NodeId>,
        remove_voters: Vec<NodeId>,
    },
}

/// How far behind the commit index a learner may be and still be promoted.
pub const PROMOTE_LAG_ENTRIES_MAX: u64 = 64;

impl Node {
    pub fn propose_conf_change(
        &mut self,
        now: Time,
        change: ConfChange,
    ) -> Result<(Index, Term), ProposeError> {
        self.set_now(now);
        let result = self.propose_conf_change_inner(change);
        self.after_step();
        result
    }

    fn propose_conf_change_inner(
        &mut self,
        change: ConfChange,
    ) -> Result<(Index, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
                term: self.term,
            });
        }
        let current = self.membership().clone();
        if current.is_joint() || self.config_version() > self.log.committed {
            return Err(ProposeError::ConfChangeInProgress);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            // Until an own entry commits, an older uncommitted configuration may still be
            // replaced; wait (Ongaro's single-server-change bug shows why).
            return Err(ProposeError::TermNotEstablished);
        }
        let mut voters = current.voters.clone();
        let mut learners = current.learners.clone();
        let invalid = |why: String| Err(ProposeError::InvalidConfChange(why));
        match &change {
            ConfChange::AddLearner(id) => {
                if current.contains(*id) {
                    return invalid(format!("node {id} is already a member"));
                }
                learners.insert(*id);
            }
            ConfChange::Promote(id) => {
                if !current.learners.contains(id) {
                    return invalid(format!("node {id} is not a learner"));
                }
                let matched = self.progress.get(id).map_or(0, |p| p.match_index);
                if matched + PROMOTE_LAG_ENTRIES_MAX < self.log.committed {
                    return Err(ProposeError::NotCaughtUp {
                        node: *id,
                        match_index: matched,
                        commit: self.log.committed,
                    });
                }
                learners.remove(id);
                voters.insert(*id);
            }
            ConfChange::Remove(id) => {
                if !current.contains(*id) {
                    return invalid(format!("node {id} is not a member"));
                }
                learners.remove(id);
                voters.remove(id);
            }
            ConfChange::Replace {
                add_voters,
                remove_voters,
            } => {
                for id in remove_voters {
                    if !voters.remove(id) {
                        return invalid(format!("node {id} is not a voter"));
                    }
                }
                for id in add_voters {
                    learners.remove(id);
                    voters.insert(*id);
                }
            }
        }
        if voters.is_empty() {
            return invalid("the change would leave no voters".into());
        }
        if voters == current.voters && learners == current.learners {
            return invalid("the change changes nothing".into());
        }
        let next = if voters == current.voters || self.mutant(Mutant::SkipJointConsensus) {
            Membership {
                voters,
                voters_outgoing: BTreeSet::new(),
                learners,
            }
        } else {
            let learners = learners
                .into_iter()
                .filter(|id| !current.voters.contains(id))
                .collect();
            Membership {
                voters,
                voters_outgoing: current.voters.clone(),
                learners,
            }
        };
        next.validate().map_err(ProposeError::InvalidConfChange)?;
        self.propose_entry(EntryKind::Config(next))
    }

    /// Progress entries follow the configuration in effect.
    pub(crate) fn sync_progress_with_membership(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let all = self.membership().all_nodes();
        let next = self.log.last_index() + 1;
        let me = self.id;
        self.progress.retain(|id, _| all.contains(id));
        for id in all {
            if id != me {
                self.progress.entry(id).or_insert_with(|| {
                    let mut p = Progress::new(next);
                    p.recent_active = true; // A new member gets one check-quorum period.
                    p
                });
            }
        }
    }

    /// After the leader's commit index moved: finish a joint change, or step down if removed.
    pub(crate) fn on_config_committed(&mut self) {
        if self.role != Role::Leader || self.config_version() > self.log.committed {
            return;
        }
        let current = self.membership().clone();
        if current.is_joint() {
            let next = Membership {
                voters: current.voters.clone(),
                voters_outgoing: BTreeSet::new(),
                learners: current.learners.clone(),
            };
            let entry = crate::types::Entry {
                index: self.log.last_index() + 1,
                term: self.term,
                stamp: self.now_stamp(),
                kind: EntryKind::Config(next),
            };
            self.append_as_leader(entry);
            self.broadcast_append();
            return;
        }
        if !current.is_voter(self.id) {
            self.step_down_in_term("removed from configuration");
        }
    }

    /// Starts a leadership transfer: catch the target up, then send TimeoutNow.
    pub fn transfer_leader(&mut self, now: Time, target: NodeId) -> Result<(), ProposeError> {
        self.set_now(now);
        let result = self.transfer_leader_inner(target);
        self.after_step();
        result
    }

    fn transfer_leader_inner(&mut self, target: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
                term: self.term,
            });
        }
        if target == self.id {
            return Err(ProposeError::InvalidTransfer(format!(
                "node {target} is already the leader"
            )));
        }
        if self.membership().learners.contains(&target) {
            return Err(ProposeError::InvalidTransfer(format!(
                "node {target} is a learner (learners cannot lead)"
            )));
        }
        if !self.membership().voters.contains(&target) {
            return Err(ProposeError::InvalidTransfer(format!(
                "node {target} is not a voter of the current configuration"
            )));
        }
        if self.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        if !self.commit_allowed() || self.log.term(self.log.committed) != Some(self.term) {
            // The new leader skips the lease wait, so ours must be over and our term established.
            return Err(ProposeError::TermNotEstablished);
        }
        self.transfer = Some(Transfer {
            target,
            deadline_mono_ms: self.now.mono_ms + self.cfg.election_timeout_ms,
        });
        self.out.notes.push(Note::TransferStarted { target });
        self.maybe_finish_transfer(target);
        if self.transfer.is_some() {
            self.maybe_send_append(target, true);
        }
        Ok(())
    }

    /// Sends TimeoutNow once the target's log matches ours. Lease reads stop first.
    pub(crate) fn maybe_finish_transfer(&mut self, peer: NodeId) {
        let Some(t) = &self.transfer else { return };
        if t.target != peer {
            return;
        }
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.lease_forfeited_term = self.term;
            self.send(peer, Body::TimeoutNow, Gate::None);
        }
    }
}
