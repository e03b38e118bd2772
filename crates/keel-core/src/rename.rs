//! Hashing protocol state under a renaming of node ids, for the model checker's symmetry
//! reduction: two cluster states that differ only by a permutation of node ids behave alike
//! (up to the timing the model abstracts: deadlines are not part of a fingerprint), so the
//! checker keys its visited set by the smallest hash over all renamings.
//!
//! Every node id inside the hashed value goes through the renaming; sets and maps keyed by id
//! are re-sorted after renaming, so the hash does not depend on the original order.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use crate::message::{Body, Message};
use crate::quorum::Membership;
use crate::types::{Entry, EntryKind, NodeId, SnapshotMeta};

/// A renaming of node ids (a permutation of the ids in play).
pub type Rename<'a> = &'a dyn Fn(NodeId) -> NodeId;

/// The identity renaming.
pub fn identity(id: NodeId) -> NodeId {
    id
}

fn ids(set: &BTreeSet<NodeId>, r: Rename) -> BTreeSet<NodeId> {
    let out: BTreeSet<NodeId> = set.iter().map(|id| r(*id)).collect();
    assert_eq!(out.len(), set.len(), "a renaming is a permutation");
    out
}

pub fn hash_membership(m: &Membership, r: Rename, h: &mut impl Hasher) {
    (
        ids(&m.voters, r),
        ids(&m.voters_outgoing, r),
        ids(&m.learners, r),
    )
        .hash(h);
}

pub fn hash_entry(e: &Entry, r: Rename, h: &mut impl Hasher) {
    (e.index, e.term, e.stamp.earliest_ms, e.stamp.latest_ms).hash(h);
    match &e.kind {
        EntryKind::Noop => 0u8.hash(h),
        EntryKind::Normal(d) => (1u8, d).hash(h),
        EntryKind::Config(m) => {
            2u8.hash(h);
            hash_membership(m, r, h);
        }
    }
}

pub fn hash_entries(es: &[Entry], r: Rename, h: &mut impl Hasher) {
    es.len().hash(h);
    for e in es {
        hash_entry(e, r, h);
    }
}

pub fn hash_snapshot_meta(m: &SnapshotMeta, r: Rename, h: &mut impl Hasher) {
    (
        m.index,
        m.term,
        m.config_version,
        m.last_stamp.earliest_ms,
        m.last_stamp.latest_ms,
        &m.session_table,
    )
        .hash(h);
    hash_membership(&m.membership, r, h);
}

/// A message's hash with its sender, receiver and any ids in its body renamed.
pub fn hash_message(m: &Message, r: Rename, h: &mut impl Hasher) {
    (r(m.from), r(m.to), m.term).hash(h);
    match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => (0u8, last_index, last_term).hash(h),
        Body::PreVoteResponse { granted } => (1u8, granted).hash(h),
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => (2u8, last_index, last_term, transfer).hash(h),
        Body::VoteResponse { granted } => (3u8, granted).hash(h),
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            (4u8, prev_index, prev_term, commit).hash(h);
            hash_entries(entries, r, h);
        }
        Body::AppendResponse {
            index,
            reject,
            repairing,
        } => (5u8, index, reject.map(|x| (x.index, x.term)), repairing).hash(h),
        Body::Heartbeat { commit, round } => (6u8, commit, round).hash(h),
        Body::HeartbeatResponse {
            round,
            last_index,
            repairing,
        } => (7u8, round, last_index, repairing).hash(h),
        Body::InstallSnapshot {
            meta,
            offset,
            total_bytes,
            checksum,
            chunk,
            done,
        } => {
            (8u8, offset, total_bytes, checksum, chunk, done).hash(h);
            hash_snapshot_meta(meta, r, h);
        }
        Body::InstallSnapshotResponse {
            offset,
            index,
            done,
            rejected,
        } => (9u8, offset, index, done, rejected).hash(h),
        Body::TimeoutNow => 10u8.hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Stamp;

    fn hash_of(f: impl Fn(&mut std::hash::DefaultHasher)) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        f(&mut h);
        h.finish()
    }

    #[test]
    fn renaming_a_configuration_changes_its_hash_and_swapping_back_restores_it() {
        let e = Entry {
            index: 3,
            term: 2,
            stamp: Stamp::default(),
            kind: EntryKind::Config(Membership::new([1, 2, 4])),
        };
        let swap = |id: NodeId| match id {
            3 => 4,
            4 => 3,
            x => x,
        };
        let plain = hash_of(|h| hash_entry(&e, &identity, h));
        let swapped = hash_of(|h| hash_entry(&e, &swap, h));
        assert_ne!(plain, swapped, "ids are part of the hash");
        let e3 = Entry {
            kind: EntryKind::Config(Membership::new([1, 2, 3])),
            ..e.clone()
        };
        assert_eq!(swapped, hash_of(|h| hash_entry(&e3, &identity, h)));
    }
}
