//! Durability: recovery of a data directory into the core's `Restored`, and the storage thread
//! that performs the core's `Write`s with group commit (every batch waiting when the thread
//! wakes is written, then ONE WAL fdatasync covers all of it).
//!
//! Order inside a batch: a term or vote change is saved first (a hard state whose term is at
//! least the log's last term is always consistent); then snapshots, truncations and entries go
//! to the WAL; then one sync; then the final hard state (its commit index may only name
//! durable entries); then compaction. `persisted(id)` is reported only after all of it.

use crate::codec::{
    decode_entry_payload, decode_snapshot_meta, encode_entry_payload, encode_snapshot_meta,
};
use keel_core::{Entry, HardState, Restored, Snapshot, Write};
use keel_storage::{RealIo, Storage, StorageOptions};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Most payload bytes read per WAL read during recovery.
const RECOVERY_READ_BYTES_MAX: usize = 8 << 20;
/// Most write batches merged into one sync.
pub const BATCHES_PER_SYNC_MAX: usize = 256;

pub struct Recovery {
    pub restored: Restored,
    /// The full latest snapshot (data included), if any.
    pub snapshot: Option<Snapshot>,
    pub repairs: Vec<String>,
}

/// Opens and recovers the data directory.
pub fn open(dir: &Path) -> anyhow::Result<(Storage<RealIo>, Recovery)> {
    let (storage, recovered) = Storage::open(RealIo, dir, StorageOptions::default())
        .map_err(|e| anyhow::anyhow!("opening data directory {}: {e}", dir.display()))?;
    let mut snapshot = None;
    if let Some(meta) = &recovered.snapshot {
        let core_meta = decode_snapshot_meta(&meta.metadata)
            .map_err(|e| anyhow::anyhow!("snapshot metadata at index {}: {e}", meta.index))?;
        let mut reader = storage
            .snapshots
            .reader()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .ok_or_else(|| anyhow::anyhow!("snapshot listed but not readable"))?;
        let mut data = Vec::with_capacity(meta.data_bytes as usize);
        while let Some((_, chunk)) = reader
            .next_chunk(4 << 20)
            .map_err(|e| anyhow::anyhow!("{e}"))?
        {
            data.extend_from_slice(&chunk);
        }
        anyhow::ensure!(
            data.len() as u64 == meta.data_bytes,
            "snapshot data is short"
        );
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
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(!batch.is_empty(), "WAL returned no entries for {lo}..{end}");
        for e in batch {
            let (stamp, kind) = decode_entry_payload(&e.payload)
                .map_err(|err| anyhow::anyhow!("WAL entry {}: {err}", e.index))?;
            anyhow::ensure!(e.index == lo, "WAL entries are not contiguous at {lo}");
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
        },
    ))
}

pub enum Job {
    Writes(Vec<Write>),
    /// Reply once everything before it is durable.
    Flush(oneshot::Sender<()>),
}

pub enum Done {
    /// Every write up to this id is durable; `fsync_ms` is the batch's sync time.
    Persisted { id: u64, sync_seconds: f64 },
    /// Storage failed (fatal: the node must stop); `no_space` if it was ENOSPC.
    Failed { reason: String, no_space: bool },
}

/// Starts the storage thread. It exits when the job channel closes.
pub fn start(
    storage: Storage<RealIo>,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("keel-storage".into())
        .spawn(move || run(storage, jobs, done))
        .expect("spawn storage thread")
}

fn run(mut storage: Storage<RealIo>, mut jobs: mpsc::Receiver<Job>, done: mpsc::Sender<Done>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCHES_PER_SYNC_MAX {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        let mut flushes = Vec::new();
        for job in batch {
            match job {
                Job::Writes(w) => writes.extend(w),
                Job::Flush(tx) => flushes.push(tx),
            }
        }
        let last_id = writes.last().map(|w| w.id);
        let started = std::time::Instant::now();
        match write_batch(&mut storage, &writes) {
            Ok(()) => {
                if let Some(id) = last_id {
                    let sync_seconds = started.elapsed().as_secs_f64();
                    if done
                        .blocking_send(Done::Persisted { id, sync_seconds })
                        .is_err()
                    {
                        return;
                    }
                }
                for f in flushes {
                    let _ = f.send(());
                }
            }
            Err(e) => {
                let no_space = matches!(e, keel_storage::Error::NoSpace { .. });
                let _ = done.blocking_send(Done::Failed {
                    reason: e.to_string(),
                    no_space,
                });
                return;
            }
        }
    }
}

fn write_batch(st: &mut Storage<RealIo>, writes: &[Write]) -> keel_storage::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let stored = st.hard_state.get().clone();
    // 1. A term/vote change is made durable before anything that depends on it.
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
    // 2. The log.
    let mut compact_to = 0u64;
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
            compact_to = compact_to.max(c);
        }
    }
    st.wal.sync()?;
    // 3. The commit index (and anything else) once the entries it names are durable.
    if let Some(hs) = last_hs {
        let now = st.hard_state.get().clone();
        if hs.term != now.term || hs.vote != now.vote || hs.commit != now.commit {
            st.hard_state.save(&keel_storage::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
                extra: Vec::new(),
            })?;
        }
    }
    // 4. Compaction, covered by a durable snapshot.
    let snap_index = st.snapshots.latest().map_or(0, |s| s.index);
    if compact_to > 0 && compact_to <= snap_index && compact_to < st.wal.last_index() {
        st.wal.purge_prefix(compact_to + 1)?;
    }
    Ok(())
}
