//! Anchors: "node N's audit chain had head hash H at seq S", committed in the replicated log.
//!
//! The server proposes `keel_kv::Command::AuditAnchor { node, seq, head }` with its own
//! `AuditLog::anchor()`; when the entry commits, EVERY node appends
//! `Record::anchor_committed(term, index, &anchor)`. A node that cuts the tail of its own file
//! cannot remove the anchors that the other nodes hold, so `verify` with `anchors_from(other
//! node's file)` detects the cut.

use crate::kind::Kind;
use crate::record::{parse_hash, Details, Hash, Record};

/// `details` keys of an `anchor_committed` record.
pub const DETAIL_ANCHOR_NODE: &str = "anchor_node";
pub const DETAIL_ANCHOR_SEQ: &str = "anchor_seq";
pub const DETAIL_ANCHOR_HEAD: &str = "anchor_head";

/// Node `node`'s audit file must contain record `seq` with record hash `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anchor {
    pub node: u64,
    pub seq: u64,
    pub head: Hash,
}

impl Anchor {
    /// The details an `anchor_committed` record carries.
    pub fn details(&self) -> Details {
        Details::new()
            .uint(DETAIL_ANCHOR_NODE, self.node)
            .uint(DETAIL_ANCHOR_SEQ, self.seq)
            .hash(DETAIL_ANCHOR_HEAD, &self.head)
    }

    /// Reads the anchor back from `anchor_committed` details (None if any field is missing or
    /// malformed).
    pub fn from_details(details: &Details) -> Option<Anchor> {
        Some(Anchor {
            node: details.get_uint(DETAIL_ANCHOR_NODE)?,
            seq: details.get_uint(DETAIL_ANCHOR_SEQ)?,
            head: parse_hash(details.get_text(DETAIL_ANCHOR_HEAD)?)?,
        })
    }

    /// The anchor an `anchor_committed` record carries, if `record` is one.
    pub fn from_record(record: &Record) -> Option<Anchor> {
        if record.kind != Kind::AnchorCommitted {
            return None;
        }
        Anchor::from_details(&record.details)
    }
}

impl Record {
    /// The record every node appends when the log entry at (`term`, `index`) carrying `anchor`
    /// commits (`keel_kv::Response::AuditAnchored { node, seq, head }`).
    pub fn anchor_committed(term: u64, index: u64, anchor: &Anchor) -> Record {
        let record = Record::from_log(Kind::AnchorCommitted, term, index, anchor.details());
        assert!(Anchor::from_record(&record) == Some(*anchor));
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_round_trips_through_a_record() {
        let anchor = Anchor {
            node: 3,
            seq: u64::MAX,
            head: [0xab; 32],
        };
        let record = Record::anchor_committed(5, 9, &anchor);
        assert_eq!(record.term, Some(5));
        assert_eq!(record.index, Some(9));
        assert_eq!(Anchor::from_record(&record), Some(anchor));
        assert!(record.validate().is_ok());
        let other = Record::from_log(Kind::MembershipCommitted, 5, 9, anchor.details());
        assert_eq!(Anchor::from_record(&other), None);
        let broken = Record::from_log(
            Kind::AnchorCommitted,
            5,
            9,
            Details::new().uint("anchor_node", 1),
        );
        assert!(broken.validate().is_err());
    }
}
