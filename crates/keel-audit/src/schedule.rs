//! When to anchor: a small deterministic policy for the server (time comes from the caller).
//!
//! Anchor when a record worth anchoring has waited `interval_ms`, or when `records_max` of them
//! are unanchored, whichever comes first; never while an earlier proposal may still commit
//! (for `interval_ms` after proposing). `anchor_committed` records do not count: they are
//! derived from the log and held by every node, and counting them would make anchors beget
//! anchors forever.
//!
//! ```text
//! after every append:          schedule.note_append(kind, head)
//! on every tick:               if let Some(a) = schedule.due(log.anchor(), now_ms) {
//!                                  propose(Command::AuditAnchor { node: a.node, seq: a.seq, head: a.head });
//!                                  schedule.note_proposed(&a, now_ms);
//!                              }
//! when AuditAnchored applies:  schedule.note_committed(&anchor)   (anchors of any node; others are ignored)
//! ```

use crate::anchor::Anchor;
use crate::kind::Kind;
use crate::record::Head;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorSchedule {
    node: u64,
    /// Unanchored records that make an anchor due at once.
    records_max: u64,
    /// How long an unanchored record may wait, and how long a proposal may take to commit
    /// before it is proposed again.
    interval_ms: u64,
    /// Records that count, not yet covered by a committed anchor.
    unanchored_records: u64,
    /// Seq of the newest record that counts.
    newest_counted_seq: Option<u64>,
    /// When the oldest uncovered counted record was appended.
    oldest_unanchored_at_ms: Option<u64>,
    /// The proposal that may still commit, with when it was made.
    in_flight: Option<(Anchor, u64)>,
    /// Highest seq of this node covered by a committed anchor.
    committed_through_seq: Option<u64>,
}

impl AnchorSchedule {
    /// Panics on a zero limit (a configuration error the caller validates first).
    pub fn new(node: u64, records_max: u64, interval_ms: u64) -> AnchorSchedule {
        assert!(records_max > 0, "records_max must be positive");
        assert!(interval_ms > 0, "interval_ms must be positive");
        AnchorSchedule {
            node,
            records_max,
            interval_ms,
            unanchored_records: 0,
            newest_counted_seq: None,
            oldest_unanchored_at_ms: None,
            in_flight: None,
            committed_through_seq: None,
        }
    }

    /// Call after every successful append, with the kind appended and the new head.
    pub fn note_append(&mut self, kind: Kind, head: Head, now_ms: u64) {
        if kind == Kind::AnchorCommitted {
            return;
        }
        assert!(self.newest_counted_seq.is_none_or(|seq| seq < head.seq));
        self.newest_counted_seq = Some(head.seq);
        self.unanchored_records += 1;
        if self.oldest_unanchored_at_ms.is_none() {
            self.oldest_unanchored_at_ms = Some(now_ms);
        }
    }

    /// The anchor to propose now, if any. `current` is `AuditLog::anchor()`.
    pub fn due(&self, current: Option<Anchor>, now_ms: u64) -> Option<Anchor> {
        let anchor = current?;
        assert!(anchor.node == self.node);
        if self.unanchored_records == 0 {
            return None;
        }
        if let Some((_, at_ms)) = self.in_flight {
            let may_still_commit = now_ms < at_ms.saturating_add(self.interval_ms);
            if may_still_commit {
                return None;
            }
        }
        let waited_ms = now_ms.saturating_sub(self.oldest_unanchored_at_ms.unwrap_or(now_ms));
        if self.unanchored_records >= self.records_max || waited_ms >= self.interval_ms {
            Some(anchor)
        } else {
            None
        }
    }

    pub fn note_proposed(&mut self, anchor: &Anchor, now_ms: u64) {
        assert!(anchor.node == self.node);
        self.in_flight = Some((*anchor, now_ms));
    }

    /// Call when an `AuditAnchored` result applies (for any node; others' are ignored).
    pub fn note_committed(&mut self, anchor: &Anchor, now_ms: u64) {
        if anchor.node != self.node {
            return;
        }
        self.committed_through_seq = self.committed_through_seq.max(Some(anchor.seq));
        if self.in_flight.is_some_and(|(p, _)| p.seq <= anchor.seq) {
            self.in_flight = None;
        }
        if self.newest_counted_seq.is_some_and(|seq| seq <= anchor.seq) {
            self.unanchored_records = 0;
            self.oldest_unanchored_at_ms = None;
        } else if self.unanchored_records > 0 {
            // Some counted records came after the anchored head: they wait from now on.
            self.unanchored_records = 1;
            self.oldest_unanchored_at_ms = Some(now_ms);
        }
    }

    /// Records that count and are not yet covered by a committed anchor.
    pub fn unanchored_records(&self) -> u64 {
        self.unanchored_records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Head {
        Head {
            seq,
            hash: [seq as u8; 32],
        }
    }

    fn anchor(seq: u64) -> Anchor {
        Anchor {
            node: 1,
            seq,
            head: [seq as u8; 32],
        }
    }

    #[test]
    fn due_after_interval_or_record_count_and_not_while_in_flight() {
        let mut s = AnchorSchedule::new(1, 3, 1_000);
        assert_eq!(s.due(None, 0), None);
        s.note_append(Kind::NodeStarted, head(0), 100);
        assert_eq!(s.due(Some(anchor(0)), 500), None, "waited 400 ms of 1000");
        assert_eq!(s.due(Some(anchor(0)), 1_100), Some(anchor(0)));
        s.note_proposed(&anchor(0), 1_100);
        assert_eq!(s.due(Some(anchor(0)), 1_200), None, "in flight");
        // It did not commit within the interval: propose again.
        assert_eq!(s.due(Some(anchor(0)), 2_100), Some(anchor(0)));
        s.note_committed(&anchor(0), 2_150);
        assert_eq!(s.unanchored_records(), 0);
        // The anchor_committed records (this node's and others') do not make another anchor due.
        s.note_append(Kind::AnchorCommitted, head(1), 2_150);
        s.note_append(Kind::AnchorCommitted, head(2), 2_160);
        assert_eq!(s.due(Some(anchor(2)), 99_000), None);
        // Three records make one due at once.
        for seq in 3..6 {
            s.note_append(Kind::AuthzFailure, head(seq), 3_000);
        }
        assert_eq!(s.due(Some(anchor(5)), 3_000), Some(anchor(5)));
    }

    #[test]
    fn records_after_the_anchored_head_stay_pending() {
        let mut s = AnchorSchedule::new(1, 100, 1_000);
        s.note_append(Kind::NodeStarted, head(0), 0);
        s.note_proposed(&anchor(0), 1_000);
        s.note_append(Kind::AdminRequest, head(1), 1_010);
        s.note_committed(&anchor(0), 1_020);
        assert_eq!(s.unanchored_records(), 1);
        assert_eq!(s.due(Some(anchor(1)), 1_500), None);
        assert_eq!(s.due(Some(anchor(1)), 2_020), Some(anchor(1)));
        // Another node's anchor changes nothing here.
        let other = Anchor {
            node: 2,
            seq: 50,
            head: [0; 32],
        };
        s.note_committed(&other, 2_030);
        assert_eq!(s.unanchored_records(), 1);
    }
}
