//! The leader's view of each follower: how much matches, what to send next, flow control.

use crate::types::Index;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Unknown match point: one append at a time, waiting for its answer.
    Probe,
    /// Known match point: appends are pipelined up to the in-flight window.
    Replicate,
    /// Follower is behind the compaction point: snapshot chunks are being streamed.
    Snapshot,
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log. Never decreases within a term.
    pub match_index: Index,
    /// Next index to send. Invariant: `match_index < next_index`.
    pub next_index: Index,
    pub state: ProgressState,
    /// In probe state: an append is outstanding; wait for its answer or a heartbeat response.
    pub probe_sent: bool,
    /// Last index of each in-flight append (Replicate state); bounded by `inflight_messages_max`.
    pub inflight: VecDeque<Index>,
    /// Heard from since the last check-quorum period.
    pub recent_active: bool,
    /// Highest ReadIndex heartbeat round this follower acknowledged in this term.
    pub acked_round: u64,
    /// The follower's latest append or heartbeat response said it is repairing (repair.rs):
    /// its `match_index` drives replication but counts toward no commit and no read round.
    pub repairing: bool,
    /// Snapshot streaming: index being sent, next byte offset, when the last chunk went out.
    pub snapshot_index: Index,
    pub snapshot_offset: u64,
    pub snapshot_sent_mono_ms: u64,
}

impl Progress {
    pub fn new(next_index: Index) -> Self {
        assert!(next_index > 0);
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            acked_round: 0,
            repairing: false,
            snapshot_index: 0,
            snapshot_offset: 0,
            snapshot_sent_mono_ms: 0,
        }
    }

    pub fn become_probe(&mut self) {
        // After a snapshot the follower holds at least the snapshot point.
        if self.state == ProgressState::Snapshot {
            self.next_index = (self.match_index.max(self.snapshot_index)) + 1;
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        assert!(self.match_index < self.next_index);
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_snapshot(&mut self, index: Index, now_mono_ms: u64) {
        self.state = ProgressState::Snapshot;
        self.snapshot_index = index;
        self.snapshot_offset = 0;
        self.snapshot_sent_mono_ms = now_mono_ms;
        self.inflight.clear();
    }

    /// Records an acknowledged match. Returns true when it moved forward.
    pub fn update(&mut self, index: Index) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|last| *last <= index) {
            self.inflight.pop_front();
        }
        assert!(self.match_index < self.next_index);
        advanced
    }

    pub fn is_paused(&self, inflight_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflight.len() >= inflight_max,
            ProgressState::Snapshot => true,
        }
    }

    /// A rejected append: move `next_index` back using the follower's hint. Returns false when
    /// the rejection is stale (answers an older append) and must be ignored.
    pub fn maybe_decrement(&mut self, rejected: Index, hint_next: Index) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false; // Stale: that index already matched.
            }
            self.become_probe();
            self.next_index =
                hint_next.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
            return true;
        }
        if self.next_index == 0 || rejected != self.next_index - 1 {
            return false; // Stale: not the probe we are waiting on.
        }
        self.next_index = hint_next.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
        self.probe_sent = false;
        true
    }
}
