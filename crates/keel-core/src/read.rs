//! Reads: ReadIndex with batched confirmation rounds, and LeaseGuard leases.
//!
//! LeaseGuard ("the log is the lease"): every entry carries its creator's wall-clock interval.
//! Committing an own entry grants the leader a lease until `stamp.earliest + lease_duration`.
//! A new leader defers every commit until the newest entry of a previous term in its log is
//! certainly `lease_duration` old (its own interval's earliest bound has passed
//! `stamp.latest + lease_duration`), or, without a trusted wall clock, until
//! `lease_duration * (1 + drift)` has passed on its monotonic clock since it won. See
//! docs/leases.md for the argument.

use crate::node::{Node, PendingRead, ReadError, ReadPath, ReadState, Role};
use crate::types::{Index, NodeId, Time};
use crate::Mutant;

/// How the caller wants a read served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Quorum-confirmed read index.
    ReadIndex,
    /// A lease read when the lease is valid, else ReadIndex.
    Lease,
    /// The caller checked that the state it reads is untouched by the limbo region
    /// (`Node::limbo_range`); during the deferred-commit wait this may be served at once.
    /// Otherwise it behaves like `Lease`.
    InheritedLease,
}

impl Node {
    /// Asks for a linearizable read. The answer comes in a later `Ready` as a `ReadState` (serve
    /// the read after applying up to its index) or a failed read.
    pub fn read(&mut self, now: Time, id: u64, mode: ReadMode) -> Result<(), ReadError> {
        self.set_now(now);
        let result = self.read_inner(id, mode);
        self.after_step();
        result
    }

    fn read_inner(&mut self, id: u64, mode: ReadMode) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
                term: self.term,
            });
        }
        if self.pending_reads.len() >= self.cfg.pending_reads_max {
            return Err(ReadError::TooManyPending);
        }
        let index = self.log.committed;
        if mode == ReadMode::InheritedLease && self.inherited_lease_valid() {
            self.pending_reads.push_back(PendingRead {
                id,
                index,
                round: 0,
                path: ReadPath::InheritedLease,
                needs_round: false,
            });
            return Ok(());
        }
        if mode != ReadMode::ReadIndex && self.lease_valid() {
            self.pending_reads.push_back(PendingRead {
                id,
                index,
                round: 0,
                path: ReadPath::Lease,
                needs_round: false,
            });
            return Ok(());
        }
        // ReadIndex: needs an own-term commit first (index assigned then), then a round that
        // starts after the read arrived.
        let has_own_commit = self.log.term(self.log.committed) == Some(self.term);
        let index = if has_own_commit { index } else { 0 };
        self.pending_reads.push_back(PendingRead {
            id,
            index,
            round: 0,
            path: ReadPath::ReadIndex,
            needs_round: true,
        });
        if self.mutant(Mutant::ReadIndexWithoutQuorum) {
            if let Some(r) = self.pending_reads.back_mut() {
                r.needs_round = false;
                r.index = self.log.committed;
            }
            return Ok(());
        }
        if has_own_commit && !self.round_outstanding {
            self.broadcast_heartbeat();
        }
        self.confirm_reads();
        Ok(())
    }

    /// Reads waiting for a round that has not started yet.
    pub(crate) fn round_needed(&self) -> bool {
        self.pending_reads
            .iter()
            .any(|r| r.needs_round && r.round == 0 && r.index > 0)
    }

    pub(crate) fn assign_round_to_waiting_reads(&mut self) {
        let round = self.read_round;
        for r in self.pending_reads.iter_mut() {
            if r.needs_round && r.round == 0 && r.index > 0 {
                r.round = round;
            }
        }
    }

    /// Marks reads whose round a quorum acknowledged; starts the next round if reads wait.
    pub(crate) fn confirm_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        // Reads that arrived before the first own-term commit get their index now.
        if self.log.term(self.log.committed) == Some(self.term) {
            let committed = self.log.committed;
            for r in self.pending_reads.iter_mut() {
                if r.needs_round && r.index == 0 {
                    r.index = committed;
                }
            }
        }
        let id = self.id;
        let round = self.read_round;
        let progress = &self.progress;
        let acked = |n: NodeId| {
            if n == id {
                round
            } else {
                progress
                    .get(&n)
                    .filter(|p| !p.repairing)
                    .map_or(0, |p| p.acked_round)
            }
        };
        let confirmed = self.membership().committed_index(&acked);
        for r in self.pending_reads.iter_mut() {
            if r.needs_round && r.round > 0 && r.round <= confirmed {
                r.needs_round = false;
            }
        }
        if confirmed >= round {
            self.round_outstanding = false;
        }
        if !self.round_outstanding && self.round_needed() {
            self.broadcast_heartbeat();
            // A single-voter cluster confirms its own round at once.
            if self
                .membership()
                .committed_index(&|n| if n == id { self.read_round } else { 0 })
                >= self.read_round
            {
                self.confirm_reads();
            }
        }
    }

    /// Moves confirmed reads whose index has been handed to the application into the output.
    pub(crate) fn release_reads(&mut self) {
        let handed = self.log.handed;
        let term = self.term;
        let mut keep = std::collections::VecDeque::with_capacity(self.pending_reads.len());
        for r in self.pending_reads.drain(..) {
            if !r.needs_round && r.index > 0 && r.index <= handed {
                self.out.reads.push(ReadState {
                    id: r.id,
                    index: r.index,
                    path: r.path,
                    term,
                });
            } else {
                keep.push_back(r);
            }
        }
        self.pending_reads = keep;
    }

    /// The deferred-commit rule: may this leader commit yet?
    pub(crate) fn commit_allowed(&self) -> bool {
        if self.mutant(Mutant::LeaseWithoutWait) {
            return true;
        }
        if self.now.mono_ms >= self.prior_lease_end_mono_ms {
            return true;
        }
        self.now.wall_trusted && self.now_stamp().earliest_ms > self.prior_lease_end_wall_ms
    }

    /// Called when this node wins an election: compute when the previous leader's lease ends.
    pub(crate) fn begin_lease_wait(&mut self) {
        if self.transfer_campaign || !self.cfg.lease_reads {
            // No lease to wait out: the previous leader forfeited it (transfer), or the cluster
            // serves no lease reads at all (`lease_reads` must then be off on every node).
            self.prior_lease_end_wall_ms = 0;
            self.prior_lease_end_mono_ms = 0;
            return;
        }
        let newest = self
            .log
            .entries()
            .iter()
            .map(|e| e.stamp.latest_ms)
            .max()
            .unwrap_or(0)
            .max(self.log.snapshot_stamp.latest_ms);
        let has_history = self.log.last_index() > 0;
        if has_history {
            self.prior_lease_end_wall_ms = newest + self.cfg.lease_duration_ms;
            self.prior_lease_end_mono_ms = self.now.mono_ms + self.cfg.lease_wait_untrusted_ms();
        } else {
            self.prior_lease_end_wall_ms = 0;
            self.prior_lease_end_mono_ms = 0;
        }
    }

    /// This leader's own lease: an own entry committed recently enough, a trusted clock, no
    /// transfer started, and not forfeited in this term.
    pub(crate) fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.cfg.lease_reads
            && self.now.wall_trusted
            && self.transfer.is_none()
            && self.lease_forfeited_term != self.term
            && self.commit_allowed()
            && self.log.term(self.log.committed) == Some(self.term)
            && self.now_stamp().latest_ms < self.own_lease_end_ms
    }

    /// During the deferred-commit wait no one can commit anything, so committed state untouched
    /// by the limbo region is current until the previous lease ends.
    pub(crate) fn inherited_lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.cfg.lease_reads
            && self.now.wall_trusted
            && self.transfer.is_none()
            && self.lease_forfeited_term != self.term
            && !self.commit_allowed()
            && self.now_stamp().latest_ms < self.prior_lease_end_wall_ms
    }

    /// For the driver: re-check the lease with a clock reading taken after the state was read.
    pub fn lease_read_still_valid(&mut self, now: Time, path: ReadPath) -> bool {
        self.set_now(now);
        match path {
            ReadPath::ReadIndex => true,
            ReadPath::Lease => self.lease_valid(),
            ReadPath::InheritedLease => self.inherited_lease_valid(),
        }
    }

    /// The limbo region of a new leader still waiting out the previous lease: entries that may
    /// or may not be committed. `None` when not waiting.
    pub fn limbo_range(&self) -> Option<(Index, Index)> {
        if self.role != Role::Leader
            || self.commit_allowed()
            || self.limbo_end <= self.log.committed
        {
            return None;
        }
        Some((self.log.committed + 1, self.limbo_end))
    }
}
