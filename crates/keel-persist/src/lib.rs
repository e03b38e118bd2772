//! keel-persist: how a node's core state meets its storage, with no runtime of its own.
//!
//! - [`open`]: lock and recover a data directory into the core's [`Restored`] plus the full
//!   latest snapshot.
//! - [`stage`] then [`finish`]: perform the core's [`Write`]s in order. `stage` makes a term or
//!   vote change durable first (a hard state whose term is at least the log's last term is always
//!   consistent), saves snapshots (durably) and writes log records (not yet synced); `finish`
//!   syncs the log once for everything staged (group commit), then saves the final hard state
//!   (its commit index names only durable entries), then compacts. Only after `finish` may the
//!   driver report the writes with `Node::persisted`.
//!
//! Generic over [`keel_storage::Io`]: the server runs it on the real disk, the simulator on
//! `SimIo`, so every simulated seed exercises this code and the real WAL.

pub mod codec;

use codec::{
    decode_entry_payload, decode_snapshot_meta, encode_entry_payload, encode_snapshot_meta,
};
use keel_core::{Entry, HardState, Restored, Snapshot, Write};
use keel_storage::{Io, Storage, StorageOptions};
use std::path::Path;

/// Most payload bytes read per WAL read during recovery.
const RECOVERY_READ_BYTES_MAX: usize = 8 << 20;
/// Snapshot bytes read per chunk during recovery.
const SNAPSHOT_CHUNK_BYTES_MAX: usize = 4 << 20;

/// What recovery produced for the core and the application.
pub struct Recovery {
    pub restored: Restored,
    /// The full latest snapshot (data included), if any.
    pub snapshot: Option<Snapshot>,
    /// What repair mode discarded (empty unless opened with `repair`).
    pub repairs: Vec<String>,
    /// Start the core with `Node::new_repairing`: this open repaired damage, or the node crashed
    /// while repairing (storage's `REPAIRING` marker, removed by a `Write::repair_completed`).
    pub repairing: bool,
}

/// Opens and recovers a data directory. Damage to synced data is an error naming file and
/// offset (unless `options.repair`).
pub fn open<I: Io>(
    io: I,
    dir: &Path,
    options: StorageOptions,
) -> Result<(Storage<I>, Recovery), String> {
    let (storage, recovered) = Storage::open(io, dir, options)
        .map_err(|e| format!("opening data directory {}: {e}", dir.display()))?;
    let mut snapshot = None;
    if let Some(meta) = &recovered.snapshot {
        let core_meta = decode_snapshot_meta(&meta.metadata)
            .map_err(|e| format!("snapshot metadata at index {}: {e}", meta.index))?;
        let mut reader = storage
            .snapshots
            .reader()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "snapshot listed but not readable".to_string())?;
        let mut data = Vec::with_capacity(meta.data_bytes as usize);
        while let Some((_, chunk)) = reader
            .next_chunk(SNAPSHOT_CHUNK_BYTES_MAX)
            .map_err(|e| e.to_string())?
        {
            data.extend_from_slice(&chunk);
        }
        if data.len() as u64 != meta.data_bytes {
            return Err(format!(
                "snapshot at index {} is short: {} of {} bytes",
                meta.index,
                data.len(),
                meta.data_bytes
            ));
        }
        snapshot = Some(Snapshot {
            meta: core_meta,
            data,
        });
    }
    let snap_index = snapshot.as_ref().map_or(0, |s| s.meta.index);
    let mut entries = Vec::new();
    let mut lo = storage.wal.first_index().max(snap_index + 1);
    let end = storage.wal.last_index() + 1;
    while lo < end {
        let batch = storage
            .wal
            .entries(lo, end, RECOVERY_READ_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            return Err(format!("the log returned no entries for {lo}..{end}"));
        }
        for e in batch {
            let (stamp, kind) = decode_entry_payload(&e.payload)
                .map_err(|err| format!("log entry {}: {err}", e.index))?;
            if e.index != lo {
                return Err(format!("log entries are not contiguous at {lo}"));
            }
            entries.push(Entry {
                index: e.index,
                term: e.term,
                stamp,
                kind,
            });
            lo += 1;
        }
    }
    let hs = &recovered.hard_state;
    let restored = Restored {
        hard_state: HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        },
        snapshot: snapshot.as_ref().map(|s| s.meta.clone()),
        entries,
    };
    Ok((
        storage,
        Recovery {
            restored,
            snapshot,
            repairs: recovered.repairs,
            repairing: recovered.repairing,
        },
    ))
}

/// What `finish` must still do for the writes that `stage` started.
#[derive(Clone, Debug, Default)]
pub struct Staged {
    pub hard_state: Option<HardState>,
    pub compact_to: u64,
}

impl Staged {
    pub fn merge(&mut self, other: Staged) {
        if other.hard_state.is_some() {
            self.hard_state = other.hard_state;
        }
        self.compact_to = self.compact_to.max(other.compact_to);
    }
}

/// Starts `writes`: term/vote first (durable), snapshots (durable), log records (not synced).
pub fn stage<I: Io>(st: &mut Storage<I>, writes: &[Write]) -> keel_storage::Result<Staged> {
    let mut staged = Staged::default();
    let stored = st.hard_state.get().clone();
    let last_hs = writes.iter().rev().find_map(|w| w.hard_state);
    if let Some(hs) = last_hs {
        if hs.term != stored.term || hs.vote != stored.vote {
            let early = keel_storage::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: stored.commit,
                extra: Vec::new(),
            };
            st.hard_state.save(&early)?;
        }
    }
    staged.hard_state = last_hs;
    if writes.iter().any(|w| w.repair_completed) {
        st.clear_repairing()?;
    }
    for w in writes {
        if let Some(s) = &w.snapshot {
            let newer = st.snapshots.latest().is_none_or(|l| s.meta.index > l.index);
            if newer {
                st.snapshots.save(
                    s.meta.index,
                    s.meta.term,
                    &encode_snapshot_meta(&s.meta),
                    &s.data,
                )?;
            }
            let idx = s.meta.index;
            if st.wal.term(idx) != Some(s.meta.term) {
                // An installed snapshot that does not match the log replaces it.
                if st.wal.last_index() > idx && idx + 1 >= st.wal.first_index() {
                    st.wal.truncate_suffix(idx + 1)?;
                }
                st.wal.purge_prefix(idx + 1)?;
            }
        }
        if let Some(t) = w.truncate_from {
            if t <= st.wal.last_index() && t >= st.wal.first_index() {
                st.wal.truncate_suffix(t)?;
            }
        }
        for e in &w.entries {
            if e.index <= st.wal.last_index() && e.index >= st.wal.first_index() {
                st.wal.truncate_suffix(e.index)?;
            }
            st.wal
                .append_one(e.index, e.term, &encode_entry_payload(e.stamp, &e.kind))?;
        }
        if let Some(c) = w.compact_to {
            staged.compact_to = staged.compact_to.max(c);
        }
    }
    Ok(staged)
}

/// Completes staged writes: one log sync, then the final hard state, then compaction.
pub fn finish<I: Io>(st: &mut Storage<I>, staged: &Staged) -> keel_storage::Result<()> {
    st.wal.sync()?;
    if let Some(hs) = staged.hard_state {
        let now = st.hard_state.get().clone();
        // A later write may already have made a newer term durable (staged before this one
        // finished): never move the term back; the commit index only grows.
        let (term, vote) = if now.term > hs.term {
            (now.term, now.vote)
        } else {
            (hs.term, hs.vote)
        };
        let commit = hs.commit.max(now.commit);
        if term != now.term || vote != now.vote || commit != now.commit {
            st.hard_state.save(&keel_storage::HardState {
                term,
                vote,
                commit,
                extra: Vec::new(),
            })?;
        }
    }
    let snap_index = st.snapshots.latest().map_or(0, |s| s.index);
    let c = staged.compact_to;
    if c > 0 && c <= snap_index && c < st.wal.last_index() {
        st.wal.purge_prefix(c + 1)?;
    }
    Ok(())
}

/// `stage` and `finish` in one call: what a server's storage thread does per batch.
pub fn write_batch<I: Io>(st: &mut Storage<I>, writes: &[Write]) -> keel_storage::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let staged = stage(st, writes)?;
    finish(st, &staged)
}
