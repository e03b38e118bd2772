//! One node's disk: the real keel-storage code (WAL, hard state, snapshots) through
//! keel-persist, over the simulated file system `SimIo`. A write is staged when the core hands
//! it over (log records written, not synced) and finished (synced) after a simulated latency;
//! a crash in between loses or tears what was not synced, exactly as SimIo models it.

use keel_core::Write;
use keel_persist::{Recovery, Staged};
use keel_storage::{Io, SimFaults, SimIo, Storage, StorageOptions, WalOptions};
use std::collections::VecDeque;
use std::path::PathBuf;

/// Small segments so that rollover and purge happen often in a short run.
const SEGMENT_CAPACITY_BYTES: u64 = 64 << 10;
/// WAL layout (docs/storage.md section 3): segment header and record header sizes.
const SEGMENT_HEADER_BYTES: usize = 64;
const RECORD_HEADER_BYTES: usize = 48;
const RECORD_TYPE_ENTRY: u8 = 1;
/// Damage picks one of this many newest synced entry records that a later batch follows.
const DAMAGE_CANDIDATES_MAX: usize = 16;

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

    /// Opens (recovers) the data directory; `repair`: discard damaged synced data.
    pub fn open(&mut self, repair: bool) -> Result<Recovery, String> {
        assert!(self.storage.is_none(), "open a closed disk only");
        let options = StorageOptions {
            wal: WalOptions {
                segment_capacity_bytes: SEGMENT_CAPACITY_BYTES,
                ..WalOptions::default()
            },
            repair,
        };
        let (storage, recovery) = keel_persist::open(self.io.clone(), &self.dir, options)?;
        self.storage = Some(storage);
        Ok(recovery)
    }

    /// Stages a write now; returns the true time (µs) at which it will be durable.
    pub fn submit(&mut self, now_us: u64, latency_us: u64, w: Write) -> Result<u64, String> {
        self.try_submit(now_us, latency_us, &w)
            .map_err(|e| format!("stage write {}: {e}", w.id))
    }

    /// `submit` keeping the storage error's kind (ENOSPC is `keel_storage::Error::NoSpace`:
    /// nothing was written, the same write may be submitted again later).
    pub fn try_submit(
        &mut self,
        now_us: u64,
        latency_us: u64,
        w: &Write,
    ) -> keel_storage::Result<u64> {
        let st = self.storage.as_mut().expect("disk open");
        let staged = keel_persist::stage(st, std::slice::from_ref(w))?;
        self.staged.push_back((w.id, staged));
        let done = (now_us + latency_us).max(self.last_done_us + 1);
        self.last_done_us = done;
        Ok(done)
    }

    /// Bytes of this node's files (the data directory, its WAL and snapshot directories).
    pub fn used_bytes(&self) -> u64 {
        let dirs = [
            self.dir.clone(),
            self.dir.join(keel_storage::WAL_DIR),
            self.dir.join(keel_storage::SNAP_DIR),
        ];
        let mut total = 0;
        for d in dirs {
            for name in self.io.list_dir(&d).unwrap_or_default() {
                total += self
                    .io
                    .contents(&d.join(name))
                    .map_or(0, |c| c.len() as u64);
            }
        }
        total
    }

    /// Sets the simulated file system's capacity (ENOSPC past it); `u64::MAX`: unlimited.
    pub fn set_capacity_bytes(&mut self, capacity_bytes: u64) {
        let mut faults = self.io.faults();
        faults.capacity_bytes = capacity_bytes;
        self.io.set_faults(faults);
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

    /// Like `complete_next`, but a failed sync leaves the write staged (after ENOSPC the WAL
    /// keeps its pending records: the same write is finished again later).
    pub fn try_complete_next(&mut self) -> keel_storage::Result<Option<u64>> {
        let Some((id, staged)) = self.staged.front() else {
            return Ok(None);
        };
        let id = *id;
        let st = self.storage.as_mut().expect("disk open");
        keel_persist::finish(st, staged)?;
        self.staged.pop_front();
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

    /// Media damage to synced data of a crashed node: flips a bit in the header of one of the
    /// newest entry records that a record of a later batch follows (so recovery can prove the
    /// record was synced: damage, not a torn write). `pick` chooses among the candidates
    /// (newest last). Returns the damaged entry's index, or None when no record qualifies.
    pub fn damage_synced_record(&mut self, pick: impl FnOnce(usize) -> usize) -> Option<u64> {
        assert!(self.storage.is_none(), "damage a crashed disk only");
        let wal_dir = self.dir.join("wal");
        let names = self.io.list_dir(&wal_dir).ok()?;
        // (path, offset, index, batch) of every valid entry record, in log order.
        let mut records = Vec::new();
        for name in names.iter().filter(|n| n.ends_with(".wal")) {
            let path = wal_dir.join(name);
            let data = self.io.contents(&path)?;
            if !scan_segment(&data, &path, &mut records) {
                break; // A bad spot: nothing after it is replayed.
            }
        }
        let max_batch = records.iter().map(|r| r.3).max()?;
        let candidates: Vec<&(PathBuf, u64, u64, u64)> =
            records.iter().filter(|r| r.3 < max_batch).collect();
        if candidates.is_empty() {
            return None;
        }
        let tail = &candidates[candidates.len().saturating_sub(DAMAGE_CANDIDATES_MAX)..];
        let (path, offset, index, _) = tail[pick(tail.len()).min(tail.len() - 1)];
        // Bit 0 of the index field: the record's CRC no longer matches.
        self.io.flip_bit(path, offset + 32, 0).ok()?;
        Some(*index)
    }
}

/// Appends the valid entry records of one segment; false if it ends at a bad record.
fn scan_segment(
    data: &[u8],
    path: &std::path::Path,
    out: &mut Vec<(PathBuf, u64, u64, u64)>,
) -> bool {
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_HEADER_BYTES <= data.len() {
        let header = &data[at..at + RECORD_HEADER_BYTES];
        if header.iter().all(|b| *b == 0) {
            return true; // End of the written part.
        }
        let payload_len = u32_at(at + 4) as usize;
        let end = at + RECORD_HEADER_BYTES + payload_len;
        if end > data.len() {
            return false;
        }
        let crc = crc32c::crc32c(&data[at + 4..end]);
        if crc != u32_at(at) {
            return false;
        }
        if data[at + 8] == RECORD_TYPE_ENTRY {
            out.push((
                path.to_path_buf(),
                at as u64,
                u64_at(at + 32),
                u64_at(at + 24),
            ));
        }
        at = end.next_multiple_of(8);
    }
    true
}
