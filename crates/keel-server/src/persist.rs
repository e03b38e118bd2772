//! Durability: recovery of a data directory into the core's `Restored`, and the storage thread
//! that performs the core's `Write`s with group commit (every batch waiting when the thread
//! wakes is written, then ONE WAL fdatasync covers all of it).
//!
//! Order inside a batch: a term or vote change is saved first (a hard state whose term is at
//! least the log's last term is always consistent); then snapshots, truncations and entries go
//! to the WAL; then one sync; then the final hard state (its commit index may only name
//! durable entries); then compaction. `persisted(id)` is reported only after all of it.

use keel_core::Write;
use keel_storage::{RealIo, Storage, StorageOptions};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Most write batches merged into one sync.
pub const BATCHES_PER_SYNC_MAX: usize = 256;

/// Recovery of a data directory: keel-persist's, shared with the simulator.
pub use keel_persist::Recovery;

/// Opens and recovers the data directory.
pub fn open(dir: &Path) -> anyhow::Result<(Storage<RealIo>, Recovery)> {
    keel_persist::open(RealIo, dir, StorageOptions::default()).map_err(|e| anyhow::anyhow!(e))
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
/// `fsync_delay_ms` is test-only (`--test-fsync-delay-ms`): a slow disk for fault campaigns.
pub fn start(
    storage: Storage<RealIo>,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
    fsync_delay_ms: u64,
) -> std::thread::JoinHandle<()> {
    assert!(fsync_delay_ms <= FSYNC_DELAY_MS_MAX);
    std::thread::Builder::new()
        .name("keel-storage".into())
        .spawn(move || run(storage, jobs, done, fsync_delay_ms))
        .expect("spawn storage thread")
}

/// The test-only fsync delay is bounded: a slow disk, not a dead one.
pub const FSYNC_DELAY_MS_MAX: u64 = 10_000;

fn run(
    mut storage: Storage<RealIo>,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
    fsync_delay_ms: u64,
) {
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
        if fsync_delay_ms > 0 && !writes.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(fsync_delay_ms));
        }
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

/// One batch: term and vote first, the log, ONE sync, the final hard state, compaction
/// (keel-persist's order, the same code the simulator runs).
fn write_batch(st: &mut Storage<RealIo>, writes: &[Write]) -> keel_storage::Result<()> {
    keel_persist::write_batch(st, writes)
}
