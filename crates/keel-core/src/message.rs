//! Messages between nodes. Every message carries the sender's term.

use crate::types::{Entry, Index, NodeId, SnapshotMeta, Term};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Pre-vote: `term` is the term the sender *would* campaign in; the sender's own term is
    /// unchanged. Receivers never change their term for it.
    PreVote {
        last_index: Index,
        last_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    Vote {
        last_index: Index,
        last_term: Term,
        /// Set by a campaign that a leadership transfer (TimeoutNow) started: receivers do not
        /// ignore it because they know a live leader.
        transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    AppendResponse {
        /// On success: the index of the last entry now matching the leader's log.
        /// On rejection: the `prev_index` that was rejected.
        index: Index,
        reject: Option<RejectHint>,
        /// The sender is repairing (repair.rs): the leader uses `index` to replicate but never
        /// counts this acknowledgement toward a commit.
        repairing: bool,
    },
    /// Keeps followers quiet and confirms leadership for ReadIndex: `round` identifies the
    /// broadcast; a quorum of responses echoing `round` proves the leader was leader after the
    /// round started.
    Heartbeat {
        commit: Index,
        round: u64,
    },
    HeartbeatResponse {
        round: u64,
        /// The follower's last log index, so a leader can notice a lagging follower.
        last_index: Index,
        /// The sender is repairing: the leader never counts this acknowledgement toward a
        /// ReadIndex round.
        repairing: bool,
    },
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        total_bytes: u64,
        /// CRC32C of the whole data, checked before the snapshot replaces any state.
        checksum: u32,
        chunk: Vec<u8>,
        done: bool,
    },
    InstallSnapshotResponse {
        /// Bytes received so far (next offset expected), or the snapshot index once installed.
        offset: u64,
        index: Index,
        done: bool,
        rejected: bool,
    },
    /// Leadership transfer: campaign now, skipping pre-vote.
    TimeoutNow,
}

/// Fast backtracking hint (Raft paper §5.3 optimisation, as in etcd):
/// the follower's log either ends before `prev_index` (then `index` = its last index + 1 and
/// `term` = 0) or holds a different term there (then `term` is that term and `index` the first
/// index the follower has of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectHint {
    pub index: Index,
    pub term: Term,
}

impl Message {
    /// Approximate wire size used for `message_bytes_max`.
    pub fn size_bytes(&self) -> usize {
        32 + match &self.body {
            Body::Append { entries, .. } => entries.iter().map(|e| e.size_bytes()).sum(),
            Body::InstallSnapshot { chunk, meta, .. } => chunk.len() + meta.session_table.len(),
            _ => 0,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.body {
            Body::PreVote { .. } => "PreVote",
            Body::PreVoteResponse { .. } => "PreVoteResp",
            Body::Vote { .. } => "Vote",
            Body::VoteResponse { .. } => "VoteResp",
            Body::Append { .. } => "App",
            Body::AppendResponse { .. } => "AppResp",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatResponse { .. } => "HeartbeatResp",
            Body::InstallSnapshot { .. } => "Snap",
            Body::InstallSnapshotResponse { .. } => "SnapResp",
            Body::TimeoutNow => "TimeoutNow",
        }
    }

    /// Vote-class messages travel on the priority lane: never behind bulk appends.
    pub fn is_priority(&self) -> bool {
        !matches!(
            self.body,
            Body::Append { .. } | Body::InstallSnapshot { .. }
        )
    }
}
