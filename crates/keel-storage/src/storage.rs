//! `Storage`: one node's data directory (lock, WAL, hard state, snapshots) and its recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{DATA_FORMAT_MAX, DATA_FORMAT_MIN};
use crate::hard_state::{HardState, HardStateRecovery, HardStateStore};
use crate::io::{Io, IoFile};
use crate::snapshot::{SnapshotMeta, SnapshotRecovery, SnapshotStore};
use crate::wal::{Wal, WalOptions, WalRecovery};

pub const LOCK_FILE: &str = "LOCK";
pub const WAL_DIR: &str = "wal";
pub const SNAP_DIR: &str = "snap";
/// Present while the node is in repair mode (docs/storage.md, "Repair marker").
pub const REPAIRING_FILE: &str = "REPAIRING";
/// Most bytes of audit text kept in the repair marker.
const REPAIRING_TEXT_BYTES_MAX: usize = 64 << 10;

#[derive(Clone, Debug, Default)]
pub struct StorageOptions {
    pub wal: WalOptions,
    /// Repair mode: discard damaged synced data instead of refusing to open (audited in
    /// [`Recovered::repairs`]); the node must not vote or acknowledge until caught up.
    pub repair: bool,
}

/// Everything recovery found. `repaired()` true means data that may have been acknowledged was
/// discarded: the server must not vote or acknowledge until it has caught up from a leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMeta>,
    pub wal: WalRecovery,
    pub hard_state_recovery: HardStateRecovery,
    pub snapshot_recovery: SnapshotRecovery,
    /// Human-readable audit lines, one per thing repair mode discarded.
    pub repairs: Vec<String>,
    /// The node must start in repair mode: this open repaired damage, or an earlier one did
    /// and the node has not yet reported catching up ([`Storage::clear_repairing`]).
    pub repairing: bool,
    /// The directory's data format (its `FORMAT` file; created at `DATA_FORMAT_MIN`).
    pub data_format: u32,
}

impl Recovered {
    pub fn repaired(&self) -> bool {
        !self.repairs.is_empty()
    }
}

pub struct Storage<I: Io> {
    pub wal: Wal<I>,
    pub hard_state: HardStateStore<I>,
    pub snapshots: SnapshotStore<I>,
    dir: PathBuf,
    io: I,
    /// The directory's data format: only ever raised, never above `DATA_FORMAT_MAX`.
    data_format: u32,
    _lock: Arc<I::Lock>,
}

impl<I: Io> Storage<I> {
    /// Locks and opens (creating if needed) the data directory, recovering as documented in
    /// docs/storage.md. Damage to synced data is an `Error::Corrupt` unless `options.repair`.
    pub fn open(io: I, dir: &Path, options: StorageOptions) -> Result<(Storage<I>, Recovered)> {
        io.create_dir_all(dir)
            .map_err(|e| Error::io("create dir", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match io.lock(&lock_path) {
            Ok(lock) => Arc::new(lock),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { path: lock_path })
            }
            Err(e) => return Err(Error::io("lock", lock_path, e)),
        };
        // The format gate comes first: a directory from a newer release is not read at all
        // (repair mode included: a newer release's data is not damage).
        let data_format = match crate::format::read(&io, dir)? {
            Some(format) => format,
            None => {
                crate::format::write(&io, dir, DATA_FORMAT_MIN)?;
                DATA_FORMAT_MIN
            }
        };
        assert!((DATA_FORMAT_MIN..=DATA_FORMAT_MAX).contains(&data_format));
        let repair = options.repair;
        let marker = dir.join(REPAIRING_FILE);
        let marker_present = io
            .exists(&marker)
            .map_err(|e| Error::io("stat", &marker, e))?;
        let (snapshots, snapshot_recovery) =
            SnapshotStore::open(io.clone(), &dir.join(SNAP_DIR), repair)?;
        let (hard_state, hard_state_recovery) = HardStateStore::open(&io, dir, repair)?;
        let mut wal_options = options.wal.clone();
        wal_options.repair = repair;
        let (mut wal, wal_recovery) = Wal::open_locked(
            io.clone(),
            &dir.join(WAL_DIR),
            wal_options,
            Some(lock.clone()),
        )?;
        let mut repairs = Vec::new();
        if let Some(r) = &snapshot_recovery.repaired {
            repairs.push(format!("discarded damaged snapshot: {r}"));
        }
        if let Some(r) = &hard_state_recovery.repaired {
            repairs.push(format!("reset unreadable hard state: {r}"));
        }
        if let Some(r) = &wal_recovery.repair {
            repairs.push(format!(
                "cut the log at {} offset {} after index {}: {} (removed {} later segments)",
                r.path.display(),
                r.offset,
                r.last_index_kept,
                r.reason,
                r.removed_segments.len()
            ));
        }
        let snapshot = snapshots.latest().cloned();
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.index);
        if wal_recovery.repair.is_some() && snapshot_index > 0 {
            // A log cut at damage is an older state of the log; its entries after the snapshot
            // are kept only if it still links to the snapshot (same term at the snapshot index).
            let snapshot_term = snapshot.as_ref().map_or(0, |s| s.term);
            let linked = wal.term(snapshot_index) == Some(snapshot_term);
            let keep_from = snapshot_index + 1;
            if !linked && wal.first_index() <= keep_from && wal.last_index() >= keep_from {
                repairs.push(format!(
                    "discarded the repaired log after the snapshot at {snapshot_index}: it does \
                     not link to it"
                ));
                wal.truncate_suffix(keep_from)?;
                wal.purge_prefix(keep_from)?;
                wal.sync()?;
                assert_eq!(wal.last_index(), snapshot_index);
            }
        }
        // The log must continue from the snapshot (or from index 1 without one).
        if wal.first_index() > snapshot_index + 1 && wal.last_index() >= wal.first_index() {
            let reason = format!(
                "the log starts at index {} but the snapshot covers only up to {snapshot_index} (gap)",
                wal.first_index()
            );
            if !repair {
                return Err(Error::corrupt(dir.join(WAL_DIR), 0, reason));
            }
            repairs.push(format!("discarded the log: {reason}"));
            wal.purge_prefix(wal.last_index() + 1)?;
            wal.sync()?;
        }
        let mut hard = hard_state.get().clone();
        let end = wal.last_index().max(snapshot_index);
        if hard.commit > end {
            let reason = format!(
                "hard state commit index {} is beyond the recovered log end {end}",
                hard.commit
            );
            // While repairing (marker present) the core does not trust the saved commit index,
            // and a leader may have truncated the log below it: lower it without a new repair.
            if !repair && !marker_present {
                return Err(Error::corrupt(
                    dir.join(crate::hard_state::HARD_STATE_FILE),
                    0,
                    reason,
                ));
            }
            if repair {
                repairs.push(format!("{reason}; commit lowered to {end}"));
            }
            hard.commit = end;
        }
        let mut storage = Storage {
            wal,
            hard_state,
            snapshots,
            dir: dir.to_path_buf(),
            io,
            data_format,
            _lock: lock,
        };
        if !repairs.is_empty() {
            // Durable before the node starts: a crash while repairing must restart repairing.
            storage.write_repairing(&repairs)?;
        }
        let repairing = marker_present || !repairs.is_empty();
        if hard != *storage.hard_state.get() {
            storage.hard_state.save(&hard)?;
        }
        // A snapshot newer than the log's end: restart the log right after it.
        if snapshot_index > 0 && storage.wal.last_index() < snapshot_index {
            storage.wal.purge_prefix(snapshot_index + 1)?;
            storage.wal.sync()?;
        }
        let recovered = Recovered {
            hard_state: hard,
            snapshot,
            wal: wal_recovery,
            hard_state_recovery,
            snapshot_recovery,
            repairs,
            repairing,
            data_format,
        };
        Ok((storage, recovered))
    }

    /// Writes the repair marker (the audit text, truncated) durably: file synced, then the
    /// directory.
    fn write_repairing(&mut self, repairs: &[String]) -> Result<()> {
        let path = self.dir.join(REPAIRING_FILE);
        let mut text = repairs.join("\n").into_bytes();
        text.truncate(REPAIRING_TEXT_BYTES_MAX);
        text.push(b'\n');
        let mut file = self
            .io
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        file.write_all_at(&text, 0)
            .map_err(|e| Error::fatal("write", &path, e))?;
        file.sync_data()
            .map_err(|e| Error::fatal("fdatasync", &path, e))?;
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::fatal("fsync dir", &self.dir, e))?;
        assert!(self.io.exists(&path).unwrap_or(true), "marker written");
        Ok(())
    }

    /// The node caught up after a repair (the core's `Write::repair_completed`): removes the
    /// marker durably. Idempotent.
    pub fn clear_repairing(&mut self) -> Result<()> {
        let path = self.dir.join(REPAIRING_FILE);
        let present = self
            .io
            .exists(&path)
            .map_err(|e| Error::io("stat", &path, e))?;
        if !present {
            return Ok(());
        }
        self.io
            .remove_file(&path)
            .map_err(|e| Error::io("remove", &path, e))?;
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::fatal("fsync dir", &self.dir, e))?;
        Ok(())
    }

    /// The directory's data format.
    pub fn data_format(&self) -> u32 {
        self.data_format
    }

    /// Raises the directory's data format (the cluster finalized an upgrade): durable and
    /// atomic before it returns. From then on a binary whose `DATA_FORMAT_MAX` is lower
    /// refuses the directory. Idempotent; lowering is refused (`InvalidArgument`), as is a
    /// format this binary does not know.
    pub fn set_data_format(&mut self, format: u32) -> Result<()> {
        if format > DATA_FORMAT_MAX {
            return Err(Error::InvalidArgument(format!(
                "data format {format} is newer than this binary supports (up to {DATA_FORMAT_MAX})"
            )));
        }
        if format < self.data_format {
            return Err(Error::InvalidArgument(format!(
                "data format {format} is older than the directory's {} (formats are never lowered)",
                self.data_format
            )));
        }
        if format == self.data_format {
            return Ok(());
        }
        crate::format::write(&self.io, &self.dir, format)?;
        self.data_format = format;
        assert!(self.data_format <= DATA_FORMAT_MAX);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
