//! Elections: pre-vote, vote, check-quorum, becoming leader.

use crate::message::Body;
use crate::node::{Gate, Node, Note, Role};
use crate::progress::Progress;
use crate::quorum::VoteResult;
use crate::types::{Entry, EntryKind, NodeId, Term};
use crate::Mutant;

impl Node {
    /// Starts a pre-vote round, or (transfer, or pre-vote off) a real election.
    pub(crate) fn start_election(&mut self, transfer: bool) {
        assert!(self.promotable(), "only voters campaign");
        assert!(!self.repairing(), "a repairing node never campaigns");
        assert_ne!(self.role, Role::Leader);
        self.stats.elections_started += 1;
        if self.cfg.pre_vote && !transfer {
            self.role = Role::PreCandidate;
            self.votes.clear();
            self.votes.insert(self.id, true);
            self.reset_election_deadline();
            let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
            let future_term = self.term + 1;
            for peer in self.voters_except_self() {
                self.send_raw(
                    peer,
                    future_term,
                    Body::PreVote {
                        last_index,
                        last_term,
                    },
                    Gate::None,
                );
            }
            self.maybe_win_pre_vote();
        } else {
            self.campaign(transfer);
        }
    }

    fn campaign(&mut self, transfer: bool) {
        self.term += 1;
        self.vote = Some(self.id);
        self.mark_term_changed();
        self.role = Role::Candidate;
        self.transfer_campaign = transfer;
        if self.leader.is_some() {
            self.leader = None;
            self.out.notes.push(Note::LeaderChanged {
                term: self.term,
                leader: None,
            });
        }
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.reset_election_deadline();
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.voters_except_self() {
            self.send(
                peer,
                Body::Vote {
                    last_index,
                    last_term,
                    transfer,
                },
                Gate::Term,
            );
        }
        self.maybe_win_election();
    }

    fn voters_except_self(&self) -> Vec<NodeId> {
        let m = self.membership();
        let mut all: Vec<NodeId> = m
            .voters
            .iter()
            .chain(m.voters_outgoing.iter())
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all.retain(|id| *id != self.id);
        all
    }

    fn maybe_win_pre_vote(&mut self) {
        if self.role != Role::PreCandidate {
            return;
        }
        let result = self
            .membership()
            .vote_result(&|id| self.votes.get(&id).copied());
        match result {
            VoteResult::Won => self.campaign(false),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    /// Wins only once its own vote is durable: a vote that a crash could forget must not count.
    pub(crate) fn maybe_win_election(&mut self) {
        if self.role != Role::Candidate {
            return;
        }
        let result = self
            .membership()
            .vote_result(&|id| self.votes.get(&id).copied());
        match result {
            VoteResult::Won => {
                let durable = self.durable_hard_state;
                if durable.term == self.term && durable.vote == Some(self.id) {
                    self.become_leader();
                }
            }
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    pub(crate) fn handle_pre_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: u64,
        last_term: Term,
    ) {
        // Grant when the candidate could win a real election: its term is ahead, its log is up to
        // date, and no live leader is known here.
        let granted = term > self.term
            && !self.repairing()
            && !self.in_leader_lease()
            && (self.log.is_up_to_date(last_index, last_term)
                || self.mutant(Mutant::VoteWithoutLogCheck));
        let reply_term = if granted { term } else { self.term };
        self.send_raw(
            from,
            reply_term,
            Body::PreVoteResponse { granted },
            Gate::None,
        );
    }

    pub(crate) fn handle_vote(
        &mut self,
        from: NodeId,
        last_index: u64,
        last_term: Term,
        transfer: bool,
    ) {
        let can_vote = self.vote.is_none_or(|v| v == from);
        let log_ok = self.log.is_up_to_date(last_index, last_term)
            || self.mutant(Mutant::VoteWithoutLogCheck);
        let ignore = !transfer
            && self.role == Role::Follower
            && self.leader.is_some()
            && self.in_leader_lease();
        let granted =
            can_vote && log_ok && !ignore && self.role != Role::Leader && !self.repairing();
        if granted {
            self.vote = Some(from);
            self.mark_term_changed();
            self.reset_election_deadline();
        }
        let gate = if self.mutant(Mutant::VoteBeforePersist) {
            Gate::None
        } else {
            Gate::Term
        };
        self.send(from, Body::VoteResponse { granted }, gate);
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre: bool,
    ) {
        let expected = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected {
            return;
        }
        if pre && granted && term != self.term + 1 {
            return; // An answer to an older pre-vote round.
        }
        self.votes.entry(from).or_insert(granted);
        if pre {
            self.maybe_win_pre_vote();
        } else {
            self.maybe_win_election();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(
            self.durable_hard_state.term, self.term,
            "leader's term is durable"
        );
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.stats.leader_terms_won += 1;
        self.out.notes.push(Note::BecameLeader { term: self.term });
        self.out.notes.push(Note::LeaderChanged {
            term: self.term,
            leader: Some(self.id),
        });
        let next = self.log.last_index() + 1;
        self.progress.clear();
        for id in self.membership().all_nodes() {
            if id != self.id {
                self.progress.insert(id, Progress::new(next));
            }
        }
        self.heartbeat_due_mono_ms = self.now.mono_ms;
        self.check_quorum_due_mono_ms = self.now.mono_ms + self.cfg.election_timeout_ms;
        self.read_round = 0;
        self.round_outstanding = false;
        self.begin_lease_wait();
        self.limbo_end = self.log.last_index();
        // The no-op of the new term: committing it commits every earlier entry (Figure 8).
        let entry = Entry {
            index: next,
            term: self.term,
            stamp: self.now_stamp(),
            kind: EntryKind::Noop,
        };
        self.append_as_leader(entry);
        self.broadcast_append();
        self.maybe_commit();
    }

    /// Check-quorum: a leader that heard from no quorum within an election timeout steps down.
    pub(crate) fn check_quorum(&mut self) {
        let id = self.id;
        let active = |n: NodeId| n == id || self.progress.get(&n).is_some_and(|p| p.recent_active);
        if !self.membership().has_quorum(&active) {
            self.step_down_in_term("check-quorum");
            return;
        }
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
    }
}
