//! Client-side half of exactly-once sessions (Raft dissertation §6.3).
//!
//! After `POST /v1/sessions` returns a `client_id`, every write gets the next `seq` and the
//! lowest seq still in flight (`lowest_unacked_seq`), which lets the server drop the results of
//! everything below. A seq leaves the in-flight set when its call returns, whatever the
//! outcome: a call that gave up (timeout, budget) is reported to the caller as such and never
//! resent by this client.

use std::collections::BTreeSet;

use crate::types::SessionTag;

/// Bound on concurrent session writes; the server keeps at most 64 results per session, so
/// more in flight could push the window past the server's limit.
pub const SESSION_WRITES_INFLIGHT_MAX: usize = 32;

#[derive(Clone, Debug)]
pub(crate) struct SessionState {
    pub(crate) client_id: u64,
    seq_next: u64,
    inflight: BTreeSet<u64>,
}

impl SessionState {
    pub(crate) fn new(client_id: u64) -> SessionState {
        SessionState {
            client_id,
            seq_next: 1,
            inflight: BTreeSet::new(),
        }
    }

    /// The tag for a new write, or None when too many writes are in flight.
    pub(crate) fn begin(&mut self) -> Option<SessionTag> {
        if self.inflight.len() >= SESSION_WRITES_INFLIGHT_MAX {
            return None;
        }
        let seq = self.seq_next;
        self.seq_next += 1;
        self.inflight.insert(seq);
        let lowest_unacked_seq = *self.inflight.first().expect("just inserted");
        assert!(lowest_unacked_seq <= seq);
        Some(SessionTag {
            client_id: self.client_id,
            seq,
            lowest_unacked_seq,
        })
    }

    /// The call for `seq` returned (success or final error).
    pub(crate) fn finish(&mut self, seq: u64) {
        let removed = self.inflight.remove(&seq);
        assert!(removed, "finish of a seq not in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_unacked_tracks_inflight() {
        let mut session = SessionState::new(9);
        let first = session.begin().unwrap();
        let second = session.begin().unwrap();
        assert_eq!((first.seq, first.lowest_unacked_seq), (1, 1));
        assert_eq!((second.seq, second.lowest_unacked_seq), (2, 1));
        session.finish(1);
        let third = session.begin().unwrap();
        assert_eq!((third.seq, third.lowest_unacked_seq), (3, 2));
        session.finish(2);
        session.finish(3);
        let fourth = session.begin().unwrap();
        assert_eq!((fourth.seq, fourth.lowest_unacked_seq), (4, 4));
    }
}
