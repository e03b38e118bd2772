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
pub fn open(dir: &Path, options: StorageOptions) -> anyhow::Result<(Storage<RealIo>, Recovery)> {
    keel_persist::open(RealIo, dir, options).map_err(|e| anyhow::anyhow!(e))
}

/// The storage options a server configuration asks for.
pub fn storage_options(cfg: &crate::ServerConfig) -> StorageOptions {
    let mut options = StorageOptions::default();
    options.wal.segment_capacity_bytes = cfg.wal_segment_bytes;
    options.repair = cfg.repair;
    options
}

pub enum Job {
    Writes(Vec<Write>),
    /// Reply once everything before it is durable.
    Flush(oneshot::Sender<()>),
    /// The cluster version was raised: switch the data directory to this format (after the
    /// batch's writes; docs/upgrades.md).
    SetDataFormat(u32),
}

pub enum Done {
    /// Every write up to this id is durable; `fsync_ms` is the batch's sync time.
    Persisted { id: u64, sync_seconds: f64 },
    /// A batch is waiting for space (ENOSPC where nothing was written): mode `disk_full` until
    /// the next `Persisted`.
    NoSpace { reason: String },
    /// Storage failed (fatal: the node must stop); `no_space` if it was ENOSPC.
    Failed { reason: String, no_space: bool },
    /// The data directory now has this format (durably).
    DataFormat(u32),
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
        let mut format = None;
        for job in batch {
            match job {
                Job::Writes(w) => writes.extend(w),
                Job::Flush(tx) => flushes.push(tx),
                Job::SetDataFormat(v) => format = format.max(Some(v)),
            }
        }
        let last_id = writes.last().map(|w| w.id);
        let started = std::time::Instant::now();
        if fsync_delay_ms > 0 && !writes.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(fsync_delay_ms));
        }
        match write_batch_waiting_for_space(&mut storage, &writes, &done) {
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
                if let Some(v) = format {
                    // A failure stops the node; on restart the runtime asks again (the applied
                    // cluster version is above the directory's format).
                    let outcome = match storage.set_data_format(v) {
                        Ok(()) => Done::DataFormat(storage.data_format()),
                        Err(e) => Done::Failed {
                            reason: format!("raising the data format to {v}: {e}"),
                            no_space: matches!(e, keel_storage::Error::NoSpace { .. }),
                        },
                    };
                    let failed = matches!(outcome, Done::Failed { .. });
                    if done.blocking_send(outcome).is_err() || failed {
                        return;
                    }
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

/// How often a batch refused for lack of space is retried.
pub const NO_SPACE_RETRY_MS: u64 = 1000;

/// One batch, waiting out ENOSPC: keel-storage reports `NoSpace` only where nothing of the
/// failing step was written (preallocating a segment, a temporary hard-state or snapshot
/// file), so the same step is retried until space returns. Meanwhile the node loop is told
/// (`Done::NoSpace`: mode `disk_full`, new writes refused) and nothing this batch covers is
/// reported durable, so the core keeps holding back whatever depends on it. Any other error
/// is fatal (never retry a failed fsync).
fn write_batch_waiting_for_space(
    st: &mut Storage<RealIo>,
    writes: &[Write],
    done: &mpsc::Sender<Done>,
) -> keel_storage::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    // What `stage` did is kept across retries: only the step that ran out of space repeats.
    let mut staged: Option<keel_persist::Staged> = None;
    let mut reported = false;
    loop {
        let attempt = match &staged {
            Some(s) => keel_persist::finish(st, s),
            None => keel_persist::stage(st, writes)
                .and_then(|s| keel_persist::finish(st, staged.insert(s))),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(keel_storage::Error::NoSpace { path }) => {
                if !reported {
                    reported = true;
                    let reason = format!("no space left on device ({})", path.display());
                    if done.blocking_send(Done::NoSpace { reason }).is_err() {
                        return Err(keel_storage::Error::NoSpace { path });
                    }
                }
                if done.is_closed() {
                    return Err(keel_storage::Error::NoSpace { path });
                }
                std::thread::sleep(std::time::Duration::from_millis(NO_SPACE_RETRY_MS));
            }
            Err(e) => return Err(e),
        }
    }
}
