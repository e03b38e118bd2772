//! Client sessions for exactly-once writes (Raft dissertation §6.3).
//!
//! Each session caches the result of every executed seq at or above the client's floor (its
//! latest `lowest_unacked_seq`), at most `session_results_max` of them. A duplicate seq is
//! answered from the cache; a seq below the floor is refused (its result is gone, and running
//! it again could apply it twice). Sessions expire after `session_ttl_ms` without activity,
//! measured in log-entry time; the oldest-idle session is evicted when `sessions_max` is reached.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{DecodeError, Reader, Wire, Writer};
use crate::command::SessionTag;
use crate::error::KvError;
use crate::response::{read_result, write_result, Response};

/// A result as first produced, replayed verbatim for duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedResult {
    pub(crate) revision: u64,
    pub(crate) result: Result<Response, KvError>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) last_active_ms: u64,
    /// Results for seq below this were discarded at the client's request.
    pub(crate) floor_seq: u64,
    /// Invariant: every key >= floor_seq; len <= session_results_max.
    pub(crate) results: BTreeMap<u64, CachedResult>,
}

/// What the state machine should do with a session-tagged write.
pub(crate) enum Admission {
    /// Execute it, then `record` the result.
    Execute,
    /// Already executed: answer with this.
    Duplicate(CachedResult),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionTable {
    pub(crate) sessions: BTreeMap<u64, Session>,
    /// (last_active_ms, client_id) of every session: expiry and eviction order.
    idle_order: BTreeSet<(u64, u64)>,
}

impl SessionTable {
    pub(crate) fn len(&self) -> usize {
        assert!(self.sessions.len() == self.idle_order.len());
        self.sessions.len()
    }

    /// Removes every session idle for `ttl_ms` or longer at `now_ms`, oldest first.
    pub(crate) fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        while let Some(&(last_active_ms, client_id)) = self.idle_order.first() {
            if now_ms.saturating_sub(last_active_ms) < ttl_ms {
                break;
            }
            self.remove(client_id);
        }
        assert!(self.sessions.len() == self.idle_order.len());
    }

    fn remove(&mut self, client_id: u64) {
        let session = self.sessions.remove(&client_id).expect("session present");
        let removed = self.idle_order.remove(&(session.last_active_ms, client_id));
        assert!(removed, "idle order tracks every session");
    }

    /// Creates session `client_id` (the log index), evicting the oldest-idle ones while the
    /// table is full.
    pub(crate) fn register(&mut self, client_id: u64, now_ms: u64, sessions_max: usize) {
        assert!(
            !self.sessions.contains_key(&client_id),
            "client ids are unique log indexes"
        );
        while self.len() >= sessions_max {
            let &(_, oldest) = self.idle_order.first().expect("table is not empty");
            self.remove(oldest);
        }
        self.sessions.insert(
            client_id,
            Session {
                last_active_ms: now_ms,
                floor_seq: 0,
                results: BTreeMap::new(),
            },
        );
        self.idle_order.insert((now_ms, client_id));
        assert!(self.len() <= sessions_max);
    }

    /// Marks the session active at `now_ms`; SESSION_EXPIRED if unknown.
    pub(crate) fn touch(&mut self, client_id: u64, now_ms: u64) -> Result<(), KvError> {
        let session = self
            .sessions
            .get_mut(&client_id)
            .ok_or(KvError::SessionExpired { client_id })?;
        assert!(session.last_active_ms <= now_ms, "time is monotonic");
        self.idle_order.remove(&(session.last_active_ms, client_id));
        session.last_active_ms = now_ms;
        self.idle_order.insert((now_ms, client_id));
        Ok(())
    }

    /// Decides whether a tagged write runs, is a duplicate, or is refused.
    pub(crate) fn admit(
        &mut self,
        tag: &SessionTag,
        now_ms: u64,
        results_max: usize,
        dedup_disabled: bool,
    ) -> Result<Admission, KvError> {
        if tag.lowest_unacked_seq > tag.seq {
            return Err(KvError::AckFloorAboveSeq {
                seq: tag.seq,
                lowest_unacked_seq: tag.lowest_unacked_seq,
            });
        }
        self.touch(tag.client_id, now_ms)?;
        let session = self.sessions.get_mut(&tag.client_id).expect("touched");
        if tag.lowest_unacked_seq > session.floor_seq {
            session.floor_seq = tag.lowest_unacked_seq;
            session.results = session.results.split_off(&session.floor_seq);
        }
        if let Some(cached) = session.results.get(&tag.seq) {
            if !dedup_disabled {
                return Ok(Admission::Duplicate(cached.clone()));
            }
        } else {
            if tag.seq < session.floor_seq {
                return Err(KvError::SeqDiscarded {
                    seq: tag.seq,
                    floor_seq: session.floor_seq,
                });
            }
            if session.results.len() >= results_max {
                return Err(KvError::SessionWindowFull {
                    results_max: results_max as u64,
                });
            }
        }
        assert!(session.results.keys().all(|&seq| seq >= session.floor_seq));
        Ok(Admission::Execute)
    }

    /// Stores the result of an executed seq (after `admit` returned `Execute`).
    pub(crate) fn record(&mut self, tag: &SessionTag, cached: CachedResult, results_max: usize) {
        let session = self
            .sessions
            .get_mut(&tag.client_id)
            .expect("admitted session exists");
        assert!(tag.seq >= session.floor_seq);
        session.results.insert(tag.seq, cached);
        assert!(session.results.len() <= results_max);
    }

    /// Rebuilds the idle order after decoding; checks the table's invariants.
    fn from_sessions(sessions: BTreeMap<u64, Session>) -> Result<Self, &'static str> {
        let mut idle_order = BTreeSet::new();
        for (&client_id, session) in &sessions {
            if session.results.keys().any(|&seq| seq < session.floor_seq) {
                return Err("session caches a result below its floor");
            }
            idle_order.insert((session.last_active_ms, client_id));
        }
        Ok(SessionTable {
            sessions,
            idle_order,
        })
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.count(self.sessions.len());
        for (&client_id, session) in &self.sessions {
            w.varint(client_id);
            w.varint(session.last_active_ms);
            w.varint(session.floor_seq);
            w.count(session.results.len());
            for (&seq, cached) in &session.results {
                w.varint(seq);
                w.varint(cached.revision);
                write_result(&cached.result, w);
            }
        }
    }

    /// Decodes the session section; client ids and seqs must be strictly increasing.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let count = r.count()?;
        let mut sessions = BTreeMap::new();
        let mut previous_client_id = None;
        for _ in 0..count {
            let client_id = r.varint()?;
            if previous_client_id.is_some_and(|previous| client_id <= previous) {
                return Err(r.error("session client ids not strictly increasing"));
            }
            previous_client_id = Some(client_id);
            let last_active_ms = r.varint()?;
            let floor_seq = r.varint()?;
            let results_count = r.count()?;
            let mut results = BTreeMap::new();
            let mut previous_seq = None;
            for _ in 0..results_count {
                let seq = r.varint()?;
                if previous_seq.is_some_and(|previous| seq <= previous) {
                    return Err(r.error("session seqs not strictly increasing"));
                }
                previous_seq = Some(seq);
                let revision = r.varint()?;
                let result = read_result(r)?;
                results.insert(seq, CachedResult { revision, result });
            }
            sessions.insert(
                client_id,
                Session {
                    last_active_ms,
                    floor_seq,
                    results,
                },
            );
        }
        SessionTable::from_sessions(sessions).map_err(|reason| r.error(reason))
    }
}

impl Wire for SessionTable {
    fn write(&self, w: &mut Writer) {
        self.encode(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        SessionTable::decode(r)
    }
}
