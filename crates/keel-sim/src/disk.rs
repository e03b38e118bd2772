//! One node's disk: the real keel-storage code (WAL, hard state, snapshots) through
//! keel-persist, over the simulated file system `SimIo`. A write is staged when the core hands
//! it over (log records written, not synced) and finished (synced) after a simulated latency;
//! a crash in between loses or tears what was not synced, exactly as SimIo models it.

use keel_core::Write;
use keel_persist::{Recovery, Staged};
use keel_storage::{SimFaults, SimIo, Storage, StorageOptions, WalOptions};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Small segments so that rollover and purge happen often in a short run.
const SEGMENT_CAPACITY_BYTES: u64 = 64 << 10;

pub struct Disk {
    pub io: SimIo,
    dir: PathBuf,
    storage: Option<Storage<SimIo>>,
    /// Staged writes not yet finished: (write id, what finish must do).
    staged: VecDeque<(u64, Staged)>,
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    last_done_us: u64,
}

impl Disk {
    pub fn new(seed: u64, id: u64, latency_us: (u64, u64)) -> Disk {
        // Crashes keep a random prefix of unsynced writes, tear the last one, and flip bits in
        // what they keep: recovery must cut all of it as an unsynced tail.
        let faults = SimFaults {
            crash_unsynced_bit_flip_ppm: 300_000,
            sync_latency_us_min: 0,
            sync_latency_us_max: 0,
            write_latency_us_per_kib: 0,
            ..SimFaults::default()
        };
        Disk {
            io: SimIo::with_faults(seed ^ id.wrapping_mul(0x9E37_79B9), faults),
            dir: PathBuf::from(format!("/node-{id}")),
            storage: None,
            staged: VecDeque::new(),
            latency_us_min: latency_us.0,
            latency_us_max: latency_us.1,
            last_done_us: 0,
        }
    }

    /// Opens (recovers) the data directory.
    pub fn open(&mut self) -> Result<Recovery, String> {
        assert!(self.storage.is_none(), "open a closed disk only");
        let options = StorageOptions {
            wal: WalOptions {
                segment_capacity_bytes: SEGMENT_CAPACITY_BYTES,
                ..WalOptions::default()
            },
            repair: false,
        };
        let (storage, recovery) = keel_persist::open(self.io.clone(), &self.dir, options)?;
        self.storage = Some(storage);
        Ok(recovery)
    }

    /// Stages a write now; returns the true time (µs) at which it will be durable.
    pub fn submit(&mut self, now_us: u64, latency_us: u64, w: Write) -> Result<u64, String> {
        let st = self.storage.as_mut().expect("disk open");
        let staged = keel_persist::stage(st, std::slice::from_ref(&w))
            .map_err(|e| format!("stage write {}: {e}", w.id))?;
        self.staged.push_back((w.id, staged));
        let done = (now_us + latency_us).max(self.last_done_us + 1);
        self.last_done_us = done;
        Ok(done)
    }

    /// Finishes the oldest staged write (one sync). Returns its id.
    pub fn complete_next(&mut self) -> Result<Option<u64>, String> {
        let Some((id, staged)) = self.staged.pop_front() else {
            return Ok(None);
        };
        let st = self.storage.as_mut().expect("disk open");
        keel_persist::finish(st, &staged).map_err(|e| format!("finish write {id}: {e}"))?;
        Ok(Some(id))
    }

    pub fn pending(&self) -> usize {
        self.staged.len()
    }

    /// Clean shutdown: everything was finished; the directory is closed (lock released).
    pub fn close(&mut self) {
        assert!(
            self.staged.is_empty(),
            "close only with every write finished"
        );
        self.storage = None;
    }

    /// Power loss: unsynced data is lost or torn (SimIo's crash model), the process is gone.
    pub fn crash(&mut self) {
        self.storage = None;
        self.staged.clear();
        self.io.crash();
    }
}
