//! The peer wire format: prost messages mirroring `keel_core::Message`, the connection
//! handshake, and the conversions (decoding validates: bad input is an error, never a panic).
//!
//! A connection carries length-delimited frames (u32 big-endian length, then the bytes). The
//! dialer sends `Hello`, the listener answers `HelloAck`; after an accepted handshake every
//! frame from the dialer is a `WireMessage`. Connections are one-way (dialer → listener).

use keel_core::{Body, Entry, EntryKind, Membership, Message, RejectHint, SnapshotMeta, Stamp};

/// Protocol version: a node refuses a peer with another major version, and accepts the same
/// major with the same, the previous or a newer minor version.
pub const PROTOCOL_MAJOR: u32 = 1;
/// The test build `next-version` speaks the next minor (docs/upgrades.md).
pub const PROTOCOL_MINOR: u32 = if cfg!(feature = "next-version") { 1 } else { 0 };

/// Which lane a connection serves: votes and heartbeats never wait behind bulk appends.
pub const LANE_PRIORITY: u32 = 1;
pub const LANE_BULK: u32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    #[prost(string, tag = "1")]
    pub cluster_id: String,
    #[prost(uint64, tag = "2")]
    pub node_id: u64,
    #[prost(uint32, tag = "3")]
    pub version_major: u32,
    #[prost(uint32, tag = "4")]
    pub version_minor: u32,
    #[prost(string, tag = "5")]
    pub client_addr: String,
    #[prost(string, tag = "6")]
    pub peer_addr: String,
    #[prost(uint32, tag = "7")]
    pub lane: u32,
    /// The node the dialer expects to reach (0: any).
    #[prost(uint64, tag = "8")]
    pub to_node_id: u64,
    /// The highest cluster version the dialer's binary can run (absent/0: 1).
    #[prost(uint32, tag = "9")]
    pub cluster_version_max: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloAck {
    #[prost(bool, tag = "1")]
    pub accepted: bool,
    #[prost(string, tag = "2")]
    pub reason: String,
    #[prost(uint64, tag = "3")]
    pub node_id: u64,
    #[prost(uint32, tag = "4")]
    pub version_major: u32,
    #[prost(uint32, tag = "5")]
    pub version_minor: u32,
    #[prost(string, tag = "6")]
    pub client_addr: String,
    /// The highest cluster version the listener's binary can run (absent/0: 1).
    #[prost(uint32, tag = "7")]
    pub cluster_version_max: u32,
}

/// Same major: a peer's minor version is accepted if it is ours, newer, or the previous one.
pub fn minor_accepted(peer_minor: u32, our_minor: u32) -> bool {
    peer_minor.saturating_add(1) >= our_minor
}

/// Checks a peer's handshake against ours; `Err` is the reason to refuse (logged by both sides),
/// `Ok` what the peer's binary supports. `cluster_version` is the finalized cluster version this
/// node has applied (`version::check_peer`).
pub fn check_hello(
    h: &Hello,
    cluster_id: &str,
    my_id: u64,
    cluster_version: u32,
) -> Result<crate::version::PeerVersion, String> {
    let peer = crate::version::check_peer(
        h.node_id,
        h.version_minor,
        h.cluster_version_max,
        cluster_version,
    )?;
    if h.version_major != PROTOCOL_MAJOR {
        return Err(format!(
            "incompatible protocol version {}.{} (this node speaks {}.{}; majors must match)",
            h.version_major, h.version_minor, PROTOCOL_MAJOR, PROTOCOL_MINOR
        ));
    }
    if !minor_accepted(h.version_minor, PROTOCOL_MINOR) {
        return Err(format!(
            "protocol version {}.{} is too old (this node accepts {}.{} and {}.{})",
            h.version_major,
            h.version_minor,
            PROTOCOL_MAJOR,
            PROTOCOL_MINOR.saturating_sub(1),
            PROTOCOL_MAJOR,
            PROTOCOL_MINOR
        ));
    }
    if h.cluster_id != cluster_id {
        return Err(format!(
            "cluster id {:?} does not match this node's {:?}",
            h.cluster_id, cluster_id
        ));
    }
    if h.node_id == 0 || h.node_id == my_id {
        return Err(format!(
            "peer claims node id {} (this node is {my_id})",
            h.node_id
        ));
    }
    if h.to_node_id != 0 && h.to_node_id != my_id {
        return Err(format!(
            "peer meant to reach node {}, this is node {my_id}",
            h.to_node_id
        ));
    }
    if h.lane != LANE_PRIORITY && h.lane != LANE_BULK {
        return Err(format!("unknown lane {}", h.lane));
    }
    Ok(peer)
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMembership {
    #[prost(uint64, repeated, tag = "1")]
    pub voters: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub voters_outgoing: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    pub learners: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEntry {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(uint64, tag = "3")]
    pub stamp_earliest_ms: u64,
    #[prost(uint64, tag = "4")]
    pub stamp_latest_ms: u64,
    /// 0 no-op, 1 normal, 2 configuration.
    #[prost(uint32, tag = "5")]
    pub kind: u32,
    #[prost(bytes = "vec", tag = "6")]
    pub data: Vec<u8>,
    #[prost(message, optional, tag = "7")]
    pub membership: Option<WireMembership>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSnapshotMeta {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(uint64, tag = "2")]
    pub term: u64,
    #[prost(message, optional, tag = "3")]
    pub membership: Option<WireMembership>,
    #[prost(uint64, tag = "4")]
    pub config_version: u64,
    #[prost(uint64, tag = "5")]
    pub stamp_earliest_ms: u64,
    #[prost(uint64, tag = "6")]
    pub stamp_latest_ms: u64,
    #[prost(bytes = "vec", tag = "7")]
    pub session_table: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMessage {
    #[prost(uint64, tag = "1")]
    pub from: u64,
    #[prost(uint64, tag = "2")]
    pub to: u64,
    #[prost(uint64, tag = "3")]
    pub term: u64,
    #[prost(
        oneof = "WireBody",
        tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20"
    )]
    pub body: Option<WireBody>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WireBody {
    #[prost(message, tag = "10")]
    PreVote(VoteRequest),
    #[prost(message, tag = "11")]
    PreVoteResponse(VoteResponse),
    #[prost(message, tag = "12")]
    Vote(VoteRequest),
    #[prost(message, tag = "13")]
    VoteResponse(VoteResponse),
    #[prost(message, tag = "14")]
    Append(Append),
    #[prost(message, tag = "15")]
    AppendResponse(AppendResponse),
    #[prost(message, tag = "16")]
    Heartbeat(Heartbeat),
    #[prost(message, tag = "17")]
    HeartbeatResponse(HeartbeatResponse),
    #[prost(message, tag = "18")]
    InstallSnapshot(InstallSnapshot),
    #[prost(message, tag = "19")]
    InstallSnapshotResponse(InstallSnapshotResponse),
    #[prost(message, tag = "20")]
    TimeoutNow(TimeoutNow),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteRequest {
    #[prost(uint64, tag = "1")]
    pub last_index: u64,
    #[prost(uint64, tag = "2")]
    pub last_term: u64,
    #[prost(bool, tag = "3")]
    pub transfer: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteResponse {
    #[prost(bool, tag = "1")]
    pub granted: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Append {
    #[prost(uint64, tag = "1")]
    pub prev_index: u64,
    #[prost(uint64, tag = "2")]
    pub prev_term: u64,
    #[prost(message, repeated, tag = "3")]
    pub entries: Vec<WireEntry>,
    #[prost(uint64, tag = "4")]
    pub commit: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendResponse {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(bool, tag = "2")]
    pub rejected: bool,
    #[prost(uint64, tag = "3")]
    pub hint_index: u64,
    #[prost(uint64, tag = "4")]
    pub hint_term: u64,
    /// The sender is repairing: never counted toward a commit (absent = false, so older
    /// senders decode unchanged).
    #[prost(bool, tag = "5")]
    pub repairing: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Heartbeat {
    #[prost(uint64, tag = "1")]
    pub commit: u64,
    #[prost(uint64, tag = "2")]
    pub round: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeartbeatResponse {
    #[prost(uint64, tag = "1")]
    pub round: u64,
    #[prost(uint64, tag = "2")]
    pub last_index: u64,
    /// The sender is repairing: never counted toward a ReadIndex round.
    #[prost(bool, tag = "3")]
    pub repairing: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallSnapshot {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<WireSnapshotMeta>,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    #[prost(uint64, tag = "3")]
    pub total_bytes: u64,
    #[prost(uint32, tag = "4")]
    pub checksum: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub chunk: Vec<u8>,
    #[prost(bool, tag = "6")]
    pub done: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallSnapshotResponse {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(uint64, tag = "2")]
    pub index: u64,
    #[prost(bool, tag = "3")]
    pub done: bool,
    #[prost(bool, tag = "4")]
    pub rejected: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeoutNow {}

fn membership_to_wire(m: &Membership) -> WireMembership {
    WireMembership {
        voters: m.voters.iter().copied().collect(),
        voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
    }
}

fn membership_from_wire(w: Option<WireMembership>) -> Result<Membership, String> {
    let w = w.ok_or("membership missing")?;
    let total = w.voters.len() + w.voters_outgoing.len() + w.learners.len();
    if total > crate::codec::MEMBERS_MAX {
        return Err("membership too large".into());
    }
    let m = Membership {
        voters: w.voters.into_iter().collect(),
        voters_outgoing: w.voters_outgoing.into_iter().collect(),
        learners: w.learners.into_iter().collect(),
    };
    m.validate()?;
    Ok(m)
}

fn entry_to_wire(e: &Entry) -> WireEntry {
    let (kind, data, membership) = match &e.kind {
        EntryKind::Noop => (0, Vec::new(), None),
        EntryKind::Normal(d) => (1, d.clone(), None),
        EntryKind::Config(m) => (2, Vec::new(), Some(membership_to_wire(m))),
    };
    WireEntry {
        index: e.index,
        term: e.term,
        stamp_earliest_ms: e.stamp.earliest_ms,
        stamp_latest_ms: e.stamp.latest_ms,
        kind,
        data,
        membership,
    }
}

fn entry_from_wire(w: WireEntry) -> Result<Entry, String> {
    let kind = match w.kind {
        0 => EntryKind::Noop,
        1 => EntryKind::Normal(w.data),
        2 => EntryKind::Config(membership_from_wire(w.membership)?),
        k => return Err(format!("unknown entry kind {k}")),
    };
    if w.index == 0 || w.term == 0 {
        return Err("entry with index or term 0".into());
    }
    Ok(Entry {
        index: w.index,
        term: w.term,
        stamp: Stamp {
            earliest_ms: w.stamp_earliest_ms,
            latest_ms: w.stamp_latest_ms,
        },
        kind,
    })
}

fn meta_to_wire(m: &SnapshotMeta) -> WireSnapshotMeta {
    WireSnapshotMeta {
        index: m.index,
        term: m.term,
        membership: Some(membership_to_wire(&m.membership)),
        config_version: m.config_version,
        stamp_earliest_ms: m.last_stamp.earliest_ms,
        stamp_latest_ms: m.last_stamp.latest_ms,
        session_table: m.session_table.clone(),
    }
}

fn meta_from_wire(w: Option<WireSnapshotMeta>) -> Result<SnapshotMeta, String> {
    let w = w.ok_or("snapshot meta missing")?;
    Ok(SnapshotMeta {
        index: w.index,
        term: w.term,
        membership: membership_from_wire(w.membership)?,
        config_version: w.config_version,
        last_stamp: Stamp {
            earliest_ms: w.stamp_earliest_ms,
            latest_ms: w.stamp_latest_ms,
        },
        session_table: w.session_table,
    })
}

pub fn message_to_wire(m: &Message) -> WireMessage {
    let body = match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => WireBody::PreVote(VoteRequest {
            last_index: *last_index,
            last_term: *last_term,
            transfer: false,
        }),
        Body::PreVoteResponse { granted } => {
            WireBody::PreVoteResponse(VoteResponse { granted: *granted })
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => WireBody::Vote(VoteRequest {
            last_index: *last_index,
            last_term: *last_term,
            transfer: *transfer,
        }),
        Body::VoteResponse { granted } => {
            WireBody::VoteResponse(VoteResponse { granted: *granted })
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => WireBody::Append(Append {
            prev_index: *prev_index,
            prev_term: *prev_term,
            entries: entries.iter().map(entry_to_wire).collect(),
            commit: *commit,
        }),
        Body::AppendResponse {
            index,
            reject,
            repairing,
        } => WireBody::AppendResponse(AppendResponse {
            index: *index,
            rejected: reject.is_some(),
            hint_index: reject.map_or(0, |r| r.index),
            hint_term: reject.map_or(0, |r| r.term),
            repairing: *repairing,
        }),
        Body::Heartbeat { commit, round } => WireBody::Heartbeat(Heartbeat {
            commit: *commit,
            round: *round,
        }),
        Body::HeartbeatResponse {
            round,
            last_index,
            repairing,
        } => WireBody::HeartbeatResponse(HeartbeatResponse {
            round: *round,
            last_index: *last_index,
            repairing: *repairing,
        }),
        Body::InstallSnapshot {
            meta,
            offset,
            total_bytes,
            checksum,
            chunk,
            done,
        } => WireBody::InstallSnapshot(InstallSnapshot {
            meta: Some(meta_to_wire(meta)),
            offset: *offset,
            total_bytes: *total_bytes,
            checksum: *checksum,
            chunk: chunk.clone(),
            done: *done,
        }),
        Body::InstallSnapshotResponse {
            offset,
            index,
            done,
            rejected,
        } => WireBody::InstallSnapshotResponse(InstallSnapshotResponse {
            offset: *offset,
            index: *index,
            done: *done,
            rejected: *rejected,
        }),
        Body::TimeoutNow => WireBody::TimeoutNow(TimeoutNow {}),
    };
    WireMessage {
        from: m.from,
        to: m.to,
        term: m.term,
        body: Some(body),
    }
}

/// Converts a decoded frame into a core message; the sender must be `expected_from` (the
/// node the handshake authenticated) and the receiver `my_id`.
pub fn message_from_wire(
    w: WireMessage,
    expected_from: u64,
    my_id: u64,
) -> Result<Message, String> {
    if w.from != expected_from {
        return Err(format!(
            "message from {} on node {expected_from}'s connection",
            w.from
        ));
    }
    if w.to != my_id {
        return Err(format!(
            "message for node {} delivered to node {my_id}",
            w.to
        ));
    }
    let body = match w.body.ok_or("message without body")? {
        WireBody::PreVote(v) => Body::PreVote {
            last_index: v.last_index,
            last_term: v.last_term,
        },
        WireBody::PreVoteResponse(v) => Body::PreVoteResponse { granted: v.granted },
        WireBody::Vote(v) => Body::Vote {
            last_index: v.last_index,
            last_term: v.last_term,
            transfer: v.transfer,
        },
        WireBody::VoteResponse(v) => Body::VoteResponse { granted: v.granted },
        WireBody::Append(a) => {
            let mut entries = Vec::with_capacity(a.entries.len());
            for e in a.entries {
                entries.push(entry_from_wire(e)?);
            }
            for pair in entries.windows(2) {
                if pair[1].index != pair[0].index + 1 {
                    return Err("append entries are not contiguous".into());
                }
            }
            if entries.first().is_some_and(|e| e.index != a.prev_index + 1) {
                return Err("append entries do not follow prev_index".into());
            }
            Body::Append {
                prev_index: a.prev_index,
                prev_term: a.prev_term,
                entries,
                commit: a.commit,
            }
        }
        WireBody::AppendResponse(r) => Body::AppendResponse {
            index: r.index,
            reject: r.rejected.then_some(RejectHint {
                index: r.hint_index,
                term: r.hint_term,
            }),
            repairing: r.repairing,
        },
        WireBody::Heartbeat(h) => Body::Heartbeat {
            commit: h.commit,
            round: h.round,
        },
        WireBody::HeartbeatResponse(h) => Body::HeartbeatResponse {
            round: h.round,
            last_index: h.last_index,
            repairing: h.repairing,
        },
        WireBody::InstallSnapshot(s) => Body::InstallSnapshot {
            meta: meta_from_wire(s.meta)?,
            offset: s.offset,
            total_bytes: s.total_bytes,
            checksum: s.checksum,
            chunk: s.chunk,
            done: s.done,
        },
        WireBody::InstallSnapshotResponse(r) => Body::InstallSnapshotResponse {
            offset: r.offset,
            index: r.index,
            done: r.done,
            rejected: r.rejected,
        },
        WireBody::TimeoutNow(_) => Body::TimeoutNow,
    };
    Ok(Message {
        from: w.from,
        to: w.to,
        term: w.term,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn messages_round_trip_through_bytes() {
        let entries = vec![
            Entry {
                index: 5,
                term: 2,
                stamp: Stamp {
                    earliest_ms: 1,
                    latest_ms: 3,
                },
                kind: EntryKind::Noop,
            },
            Entry {
                index: 6,
                term: 2,
                stamp: Stamp::default(),
                kind: EntryKind::Normal(vec![1, 2]),
            },
            Entry {
                index: 7,
                term: 2,
                stamp: Stamp::default(),
                kind: EntryKind::Config(Membership::new([1, 2])),
            },
        ];
        let bodies = vec![
            Body::PreVote {
                last_index: 3,
                last_term: 1,
            },
            Body::Vote {
                last_index: 3,
                last_term: 1,
                transfer: true,
            },
            Body::Append {
                prev_index: 4,
                prev_term: 1,
                entries,
                commit: 3,
            },
            Body::AppendResponse {
                index: 4,
                reject: Some(RejectHint { index: 2, term: 1 }),
                repairing: false,
            },
            Body::AppendResponse {
                index: 4,
                reject: None,
                repairing: true,
            },
            Body::Heartbeat {
                commit: 9,
                round: 2,
            },
            Body::HeartbeatResponse {
                round: 2,
                last_index: 7,
                repairing: true,
            },
            Body::TimeoutNow,
        ];
        for body in bodies {
            let m = Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            };
            let bytes = message_to_wire(&m).encode_to_vec();
            let back = message_from_wire(WireMessage::decode(&bytes[..]).unwrap(), 1, 2).unwrap();
            assert_eq!(back, m);
            assert!(message_from_wire(WireMessage::decode(&bytes[..]).unwrap(), 9, 2).is_err());
        }
    }

    #[test]
    fn handshake_refuses_other_major_and_cluster() {
        let ok = Hello {
            cluster_id: "c".into(),
            node_id: 2,
            version_major: PROTOCOL_MAJOR,
            version_minor: PROTOCOL_MINOR,
            lane: LANE_BULK,
            ..Default::default()
        };
        assert!(check_hello(&ok, "c", 1, 1).is_ok());
        let newer_minor = Hello {
            version_minor: PROTOCOL_MINOR + 1,
            ..ok.clone()
        };
        assert!(check_hello(&newer_minor, "c", 1, 1).is_ok());
        let other_major = Hello {
            version_major: PROTOCOL_MAJOR + 1,
            ..ok.clone()
        };
        assert!(check_hello(&other_major, "c", 1, 1)
            .unwrap_err()
            .contains("incompatible"));
        assert!(check_hello(&ok, "other", 1, 1).is_err());
        assert!(minor_accepted(2, 3) && minor_accepted(3, 3) && minor_accepted(4, 3));
        assert!(!minor_accepted(1, 3));
        assert!(check_hello(&ok, "c", 2, 1).is_err());
        // A binary that predates the field runs cluster version 1 only: refused once the
        // cluster finalized 2, accepted before.
        let refused = check_hello(&ok, "c", 1, 2).unwrap_err();
        assert!(refused.contains("finalized version 2"), "{refused}");
        let upgraded = Hello {
            cluster_version_max: 2,
            ..ok.clone()
        };
        assert!(check_hello(&upgraded, "c", 1, 2).is_ok());
    }
}
