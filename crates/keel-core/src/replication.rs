//! Replication: proposals, appends and their answers, flow control, the commit rule, and the
//! leader's periodic duties.

use crate::message::{Body, RejectHint};
use crate::node::{Gate, Node, Note, ProposeError, Role};
use crate::progress::ProgressState;
use crate::types::{Entry, EntryKind, Index, NodeId, Term};
use crate::Mutant;

impl Node {
    /// Proposes an application command. On success returns the entry's (index, term): the
    /// command took effect if and only if that entry is later applied with that term.
    pub fn propose(
        &mut self,
        now: crate::Time,
        data: Vec<u8>,
    ) -> Result<(Index, Term), ProposeError> {
        self.set_now(now);
        let result = self.propose_entry(EntryKind::Normal(data));
        self.after_step();
        result
    }

    pub(crate) fn propose_entry(&mut self, kind: EntryKind) -> Result<(Index, Term), ProposeError> {
        if self.role != Role::Leader {
            self.stats.proposals_refused += 1;
            return Err(ProposeError::NotLeader {
                leader: self.leader,
                term: self.term,
            });
        }
        if self.transfer.is_some() {
            self.stats.proposals_refused += 1;
            return Err(ProposeError::Transferring);
        }
        let entry = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            stamp: self.now_stamp(),
            kind,
        };
        let size = entry.size_bytes();
        if size > self.cfg.message_bytes_max {
            self.stats.proposals_refused += 1;
            return Err(ProposeError::TooLarge {
                bytes: size,
                limit: self.cfg.message_bytes_max,
            });
        }
        if self.uncommitted_bytes + size > self.cfg.uncommitted_bytes_max {
            self.stats.proposals_refused += 1;
            return Err(ProposeError::UncommittedLimit {
                bytes: self.uncommitted_bytes + size,
                limit: self.cfg.uncommitted_bytes_max,
            });
        }
        let (index, term) = (entry.index, entry.term);
        self.append_as_leader(entry);
        // Sent from `ready()`: the proposals a driver makes between two `ready()` calls go out
        // as one append per follower, not one per proposal.
        self.broadcast_pending = true;
        self.maybe_commit();
        Ok((index, term))
    }

    pub(crate) fn append_as_leader(&mut self, entry: Entry) {
        assert_eq!(self.role, Role::Leader);
        assert_eq!(
            entry.term, self.term,
            "a leader only creates entries of its own term"
        );
        self.uncommitted_bytes += entry.size_bytes();
        self.last_append_mono_ms = self.now.mono_ms;
        if let EntryKind::Config(m) = &entry.kind {
            self.config_entries.push((entry.index, m.clone()));
            self.sync_progress_with_membership();
        }
        self.log.append(entry.clone());
        self.open_write.entries.push(entry);
    }

    pub(crate) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.maybe_send_append(peer, false);
        }
    }

    /// Sends the next batch to `peer` unless flow control says wait. With `send_empty`, sends an
    /// empty append (to carry the commit index or probe) when there is nothing new.
    pub(crate) fn maybe_send_append(&mut self, peer: NodeId, send_empty: bool) -> bool {
        let inflight_max = self.cfg.inflight_messages_max;
        let Some(pr) = self.progress.get(&peer) else {
            return false;
        };
        if pr.is_paused(inflight_max) {
            return false;
        }
        let next = pr.next_index;
        if next <= self.log.snapshot_index {
            self.start_snapshot_send(peer);
            return true;
        }
        let prev_index = next - 1;
        let prev_term = self
            .log
            .term(prev_index)
            .expect("prev entry exists above the snapshot");
        let entries = if next <= self.log.last_index() {
            self.log.slice(
                next,
                self.log.last_index(),
                self.cfg.append_entries_max,
                self.cfg.message_bytes_max,
            )
        } else {
            Vec::new()
        };
        if entries.is_empty() && !send_empty && pr.state == ProgressState::Replicate {
            return false;
        }
        let last_sent = prev_index + entries.len() as u64;
        let pr = self.progress.get_mut(&peer).expect("checked above");
        match pr.state {
            ProgressState::Replicate => {
                if !entries.is_empty() {
                    pr.next_index = last_sent + 1;
                    pr.inflight.push_back(last_sent);
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot => unreachable!("paused"),
        }
        let commit = self.log.committed;
        self.send(
            peer,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
            Gate::None,
        );
        true
    }

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        assert_eq!(self.role, Role::Follower);
        if prev_index < self.log.committed {
            // Everything up to our commit point already matches; skip what we have.
            let committed = self.log.committed;
            let rest: Vec<Entry> = entries
                .into_iter()
                .filter(|e| e.index > committed)
                .collect();
            if rest.is_empty() || self.log.term(committed).is_none() {
                self.send(
                    from,
                    Body::AppendResponse {
                        index: committed,
                        reject: None,
                        repairing: self.repairing(),
                    },
                    Gate::Log,
                );
                return;
            }
            let t = self.log.term(committed).expect("checked");
            return self.handle_append(from, committed, t, rest, commit);
        }
        let prev_ok = self.log.matches(prev_index, prev_term);
        let mutant_accept = !prev_ok
            && self.mutant(Mutant::AppendWithoutPrevCheck)
            && prev_index <= self.log.last_index();
        if !prev_ok && !mutant_accept {
            let hint = if prev_index > self.log.last_index() {
                RejectHint {
                    index: self.log.last_index() + 1,
                    term: 0,
                }
            } else {
                RejectHint {
                    index: self.log.first_index_of_term_at(prev_index),
                    term: self.log.term(prev_index).unwrap_or(0),
                }
            };
            self.send(
                from,
                Body::AppendResponse {
                    index: prev_index,
                    reject: Some(hint),
                    repairing: self.repairing(),
                },
                Gate::Term,
            );
            return;
        }
        if mutant_accept && prev_index < self.log.last_index() {
            // The known bug: drop whatever follows prev without checking that prev matches.
            self.follower_truncate(prev_index + 1);
        }
        let last_new = prev_index + entries.len() as u64;
        let (truncated_from, new_entries) = self.log.append_after_match(entries);
        if let Some(from_index) = truncated_from {
            self.on_truncated(from_index);
        }
        for e in &new_entries {
            if let EntryKind::Config(m) = &e.kind {
                self.config_entries.push((e.index, m.clone()));
            }
        }
        self.open_write.entries.extend(new_entries);
        self.log.commit_to(commit.min(last_new));
        self.repair_on_append(last_new, commit);
        self.send(
            from,
            Body::AppendResponse {
                index: last_new,
                reject: None,
                repairing: self.repairing(),
            },
            Gate::Log,
        );
    }

    fn follower_truncate(&mut self, from_index: Index) {
        if from_index <= self.log.committed || from_index > self.log.last_index() {
            return;
        }
        self.log.truncate_from(from_index);
        self.on_truncated(from_index);
    }

    /// A suffix from `from_index` was removed: roll back configurations it held, tell storage.
    fn on_truncated(&mut self, from_index: Index) {
        self.config_entries.retain(|(i, _)| *i < from_index);
        // If the open write already holds entries at or after this index, drop them: storage
        // sees one truncation point and the surviving entries.
        self.open_write.entries.retain(|e| e.index < from_index);
        let t = self
            .open_write
            .truncate_from
            .map_or(from_index, |t| t.min(from_index));
        self.open_write.truncate_from = Some(t);
        self.durable_last_index = self.durable_last_index.min(from_index - 1);
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        index: Index,
        reject: Option<RejectHint>,
        repairing: bool,
    ) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        // A follower that finished repairing counts again: its durable log may now complete a
        // quorum that was waiting.
        let repair_cleared = pr.repairing && !repairing;
        pr.repairing = repairing;
        match reject {
            None => {
                let was_probe = pr.state == ProgressState::Probe;
                let advanced = pr.update(index);
                if was_probe && pr.state == ProgressState::Probe {
                    pr.become_replicate();
                }
                if advanced || repair_cleared {
                    self.maybe_commit();
                    self.maybe_finish_transfer(from);
                }
                // Keep the pipe full.
                while self.maybe_send_append(from, false) {}
            }
            Some(hint) => {
                let hint_next = if hint.term > 0 {
                    match self.log.last_index_of_term(hint.term) {
                        Some(i) => (i + 1).min(index),
                        None => hint.index,
                    }
                } else {
                    hint.index
                };
                let pr = self.progress.get_mut(&from).expect("exists");
                if pr.maybe_decrement(index, hint_next) {
                    self.maybe_send_append(from, true);
                }
            }
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, round: u64) {
        // The leader sends min(match, commit): safe to commit here without a log check.
        self.log.commit_to(commit.min(self.log.last_index()));
        let last_index = self.log.last_index();
        let repairing = self.repairing();
        self.send(
            from,
            Body::HeartbeatResponse {
                round,
                last_index,
                repairing,
            },
            Gate::Term,
        );
    }

    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        round: u64,
        last_index: Index,
        repairing: bool,
    ) {
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let repair_cleared = pr.repairing && !repairing;
        pr.repairing = repairing;
        if !repairing {
            pr.acked_round = pr.acked_round.max(round);
        }
        if repair_cleared {
            // Its durable log up to `match_index` now holds every entry committed before its
            // damage (repair.rs), so its earlier acknowledgements count from here on.
            self.maybe_commit();
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        if pr.state == ProgressState::Probe {
            pr.probe_sent = false;
        }
        if pr.state == ProgressState::Replicate
            && pr.inflight.len() >= self.cfg.inflight_messages_max
        {
            // The whole window may have been lost: free a slot so an append goes out; a gap
            // makes the follower reject it and the leader probes (as etcd does).
            pr.inflight.pop_front();
        }
        let lagging = pr.match_index < self.log.last_index() || last_index != pr.match_index;
        if lagging {
            self.maybe_send_append(from, true);
        }
        if pr_snapshot_stalled(self, from) {
            self.resend_snapshot_chunk(from);
        }
        self.confirm_reads();
    }

    /// The commit rule: the largest index stored on a quorum (the leader counts itself only once
    /// durable), and only if that entry is of the current term (Raft §5.4.2, Figure 8).
    pub(crate) fn maybe_commit(&mut self) {
        assert_eq!(self.role, Role::Leader);
        if !self.commit_allowed() {
            return;
        }
        let id = self.id;
        let durable = self.durable_last_index;
        let progress = &self.progress;
        // A repairing follower's acknowledgements never count (repair.rs): it may be missing
        // entries it acknowledged before its storage was damaged.
        let matched = |n: NodeId| {
            if n == id {
                durable
            } else {
                progress
                    .get(&n)
                    .filter(|p| !p.repairing)
                    .map_or(0, |p| p.match_index)
            }
        };
        let index = self.membership().committed_index(&matched);
        if index <= self.log.committed {
            return;
        }
        let term_ok =
            self.log.term(index) == Some(self.term) || self.mutant(Mutant::CommitPreviousTerm);
        if !term_ok {
            return;
        }
        let old = self.log.committed;
        self.log.commit_to(index);
        self.on_leader_commit(old, index);
    }

    fn on_leader_commit(&mut self, old: Index, new: Index) {
        let mut released = 0;
        let mut lease_from = None;
        let mut committed_configs = Vec::new();
        for i in old + 1..=new {
            let e = self.log.entry(i).expect("committed entry present");
            if e.term == self.term {
                released += e.size_bytes();
                lease_from = Some(e.stamp);
            }
            if let EntryKind::Config(m) = &e.kind {
                committed_configs.push((i, m.clone()));
            }
        }
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(released);
        if let Some(stamp) = lease_from {
            // LeaseGuard: committing an own entry grants a lease from its creation stamp.
            self.own_lease_end_ms = self
                .own_lease_end_ms
                .max(stamp.earliest_ms + self.cfg.lease_duration_ms);
        }
        for (index, membership) in committed_configs {
            self.out
                .notes
                .push(Note::ConfigCommitted { index, membership });
        }
        self.on_config_committed();
        self.confirm_reads();
        // Followers learn the new commit index promptly.
        if self.role == Role::Leader {
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for peer in peers {
                let caught_up = self.progress.get(&peer).is_some_and(|p| {
                    p.state == ProgressState::Replicate && p.next_index > self.log.last_index()
                });
                if caught_up {
                    self.maybe_send_append(peer, true);
                }
            }
        }
    }

    pub(crate) fn tick_leader(&mut self) {
        let now = self.now.mono_ms;
        if self.cfg.check_quorum && now >= self.check_quorum_due_mono_ms {
            self.check_quorum_due_mono_ms = now + self.cfg.election_timeout_ms;
            self.check_quorum();
            if self.role != Role::Leader {
                return;
            }
        }
        if let Some(t) = &self.transfer {
            if now >= t.deadline_mono_ms {
                let target = t.target;
                self.transfer = None;
                self.out.notes.push(Note::TransferAborted { target });
            }
        }
        // Deferred commit: time passing may end the wait for the previous lease.
        self.maybe_commit();
        if self.role != Role::Leader {
            return; // Committing C_new may have removed this leader.
        }
        // An idle leader renews its lease with a no-op.
        if self.cfg.lease_reads
            && self.commit_allowed()
            && self.transfer.is_none()
            && now >= self.last_append_mono_ms + self.cfg.lease_renew_interval_ms
        {
            let entry = Entry {
                index: self.log.last_index() + 1,
                term: self.term,
                stamp: self.now_stamp(),
                kind: EntryKind::Noop,
            };
            self.append_as_leader(entry);
            self.broadcast_append();
            self.maybe_commit();
        }
        if now >= self.heartbeat_due_mono_ms {
            self.heartbeat_due_mono_ms = now + self.cfg.heartbeat_interval_ms;
            self.broadcast_heartbeat();
        }
    }

    pub(crate) fn broadcast_heartbeat(&mut self) {
        if self.round_needed() {
            self.read_round += 1;
            self.round_outstanding = true;
            self.assign_round_to_waiting_reads();
        }
        let round = self.read_round;
        let peers: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .map(|(id, p)| (*id, p.match_index))
            .collect();
        for (peer, matched) in peers {
            let commit = self.log.committed.min(matched);
            self.send(peer, Body::Heartbeat { commit, round }, Gate::None);
        }
    }
}

fn pr_snapshot_stalled(node: &Node, peer: NodeId) -> bool {
    node.progress.get(&peer).is_some_and(|p| {
        p.state == ProgressState::Snapshot
            && node.now.mono_ms >= p.snapshot_sent_mono_ms + node.cfg.election_timeout_ms
    })
}
