//! A deterministic, in-memory, fault-injecting disk for the simulator and the tests.
//!
//! Model (see docs/storage.md "Media assumptions"; SimIo is the executable version of them):
//! - each file (inode) keeps its `synced` bytes and an ordered list of unsynced operations;
//!   `sync_data` makes all of that file's pending operations durable;
//! - names (create, rename, remove) are pending per directory until `sync_dir` on the parent;
//! - [`SimIo::crash`] keeps, per file and for the namespace, a random *prefix* of the pending
//!   operations; the last kept write may be torn (only a prefix of its bytes survives) and may
//!   carry a flipped bit; everything else unsynced is lost. Handles opened before the crash go
//!   stale (every call fails with EIO) and locks are released, as if the process died.
//! - faults drawn per operation from the caller's seed: EIO on read/write/sync, misdirected
//!   writes (the data lands at another offset of the same file), ENOSPC past a capacity;
//!   explicit bit flips in durable data ([`SimIo::flip_bit`], [`SimIo::flip_random_bit`]).
//! - latency is not slept: each operation adds a simulated cost that [`SimIo::take_latency_us`]
//!   hands to the simulator.
//!
//! All randomness comes from a ChaCha8 generator seeded by the caller; no clocks, no global state.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::io::{Io, IoFile};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const ENOENT: i32 = 2;
const PPM: u32 = 1_000_000;

/// Fault probabilities in parts per million, and simulated costs. All zero by default
/// (a perfect disk that only loses unsynced data on crash).
#[derive(Clone, Debug)]
pub struct SimFaults {
    /// At a crash, chance that a file keeps some prefix of its unsynced operations.
    pub crash_keep_unsynced_ppm: u32,
    /// At a crash, chance that the last kept unsynced write is torn (a prefix of it survives).
    pub crash_torn_write_ppm: u32,
    /// At a crash, chance that a bit of the kept unsynced data is flipped.
    pub crash_unsynced_bit_flip_ppm: u32,
    pub read_eio_ppm: u32,
    pub write_eio_ppm: u32,
    pub sync_eio_ppm: u32,
    /// A write lands at a different offset of the same file (the intended bytes are unchanged).
    pub misdirected_write_ppm: u32,
    /// Total bytes of all files; writes and allocations past it fail with ENOSPC.
    pub capacity_bytes: u64,
    pub sync_latency_us_min: u64,
    pub sync_latency_us_max: u64,
    pub write_latency_us_per_kib: u64,
}

impl Default for SimFaults {
    fn default() -> Self {
        SimFaults {
            crash_keep_unsynced_ppm: 500_000,
            crash_torn_write_ppm: 500_000,
            crash_unsynced_bit_flip_ppm: 0,
            read_eio_ppm: 0,
            write_eio_ppm: 0,
            sync_eio_ppm: 0,
            misdirected_write_ppm: 0,
            capacity_bytes: u64::MAX,
            sync_latency_us_min: 100,
            sync_latency_us_max: 400,
            write_latency_us_per_kib: 1,
        }
    }
}

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    synced: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link { path: PathBuf, inode: u64 },
    Rename { from: PathBuf, to: PathBuf },
    Unlink { path: PathBuf },
}

impl DirOp {
    fn parent(&self) -> PathBuf {
        let path = match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => path,
            DirOp::Rename { to, .. } => to,
        };
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

/// Counters the simulator may report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub writes: u64,
    pub syncs: u64,
    pub crashes: u64,
    pub injected_faults: u64,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    faults: SimFaults,
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dir_ops: Vec<DirOp>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    latency_us: u64,
    stats: SimStats,
}

fn apply_op(bytes: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(data);
        }
        FileOp::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

fn apply_dir_op(names: &mut BTreeMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Link { path, inode } => {
            names.insert(path.clone(), *inode);
        }
        DirOp::Rename { from, to } => {
            if let Some(inode) = names.remove(from) {
                names.insert(to.clone(), inode);
            }
        }
        DirOp::Unlink { path } => {
            names.remove(path);
        }
    }
}

/// Simulated errors carry the raw OS code (the storage code classifies ENOSPC by it), so the
/// `what` context is only for readers of this file.
fn os_error(code: i32, what: &str) -> io::Error {
    let _ = what;
    io::Error::from_raw_os_error(code)
}

impl State {
    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..PPM) < ppm
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }

    fn inode_mut(&mut self, inode: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&inode)
            .ok_or_else(|| os_error(ENOENT, "inode gone"))
    }

    fn crash(&mut self) {
        self.stats.crashes += 1;
        self.generation += 1;
        self.locks.clear();
        // Namespace: durable names plus a random prefix of the pending directory operations.
        let dir_ops = std::mem::take(&mut self.dir_ops);
        let keep_ops = if !dir_ops.is_empty() && self.chance(self.faults.crash_keep_unsynced_ppm) {
            self.rng.gen_range(0..=dir_ops.len())
        } else {
            0
        };
        let mut names = self.durable_names.clone();
        for op in &dir_ops[..keep_ops] {
            apply_dir_op(&mut names, op);
        }
        self.durable_names = names.clone();
        self.names = names;
        // Files: synced bytes plus a random prefix of pending operations, the last maybe torn.
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        for id in ids {
            let pending =
                std::mem::take(&mut self.inodes.get_mut(&id).expect("live inode").pending);
            let keep = if !pending.is_empty() && self.chance(self.faults.crash_keep_unsynced_ppm) {
                self.rng.gen_range(0..=pending.len())
            } else {
                0
            };
            let torn = self.chance(self.faults.crash_torn_write_ppm);
            let flip = self.chance(self.faults.crash_unsynced_bit_flip_ppm);
            let mut bytes =
                std::mem::take(&mut self.inodes.get_mut(&id).expect("live inode").synced);
            for (i, op) in pending[..keep].iter().enumerate() {
                let last = i + 1 == keep;
                match op {
                    FileOp::Write { offset, data }
                        if last && (torn || flip) && !data.is_empty() =>
                    {
                        let mut data = data.clone();
                        if torn {
                            let kept = self.rng.gen_range(0..data.len());
                            data.truncate(kept);
                        }
                        if flip && !data.is_empty() {
                            let at = self.rng.gen_range(0..data.len());
                            data[at] ^= 1 << self.rng.gen_range(0..8);
                        }
                        apply_op(
                            &mut bytes,
                            &FileOp::Write {
                                offset: *offset,
                                data,
                            },
                        );
                    }
                    op => apply_op(&mut bytes, op),
                }
            }
            let inode = self.inodes.get_mut(&id).expect("live inode");
            inode.current = bytes.clone();
            inode.synced = bytes;
        }
    }
}

/// The simulated disk. Cloning shares the same disk (as two handles to one machine's disk).
#[derive(Clone, Debug)]
pub struct SimIo {
    state: Arc<Mutex<State>>,
}

impl SimIo {
    /// A perfect disk (except that a crash loses unsynced data), seeded by the caller.
    pub fn new(seed: u64) -> SimIo {
        SimIo::with_faults(seed, SimFaults::default())
    }

    pub fn with_faults(seed: u64, faults: SimFaults) -> SimIo {
        let state = State {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            generation: 0,
            next_inode: 1,
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dir_ops: Vec::new(),
            dirs: BTreeSet::new(),
            locks: BTreeSet::new(),
            latency_us: 0,
            stats: SimStats::default(),
        };
        SimIo {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent-enough model for the test to report.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_faults(&self, faults: SimFaults) {
        self.lock_state().faults = faults;
    }

    pub fn faults(&self) -> SimFaults {
        self.lock_state().faults.clone()
    }

    /// Simulates a power loss / process kill: see the module docs.
    pub fn crash(&self) {
        self.lock_state().crash();
    }

    /// Simulated microseconds spent in IO since the last call.
    pub fn take_latency_us(&self) -> u64 {
        std::mem::take(&mut self.lock_state().latency_us)
    }

    pub fn stats(&self) -> SimStats {
        self.lock_state().stats.clone()
    }

    /// Flips one bit of a file, in both its durable and its current contents (media damage).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut st = self.lock_state();
        let id = *st
            .names
            .get(path)
            .ok_or_else(|| os_error(ENOENT, "no such file"))?;
        let inode = st.inode_mut(id)?;
        let at = offset as usize;
        if at >= inode.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset past end of file",
            ));
        }
        inode.current[at] ^= 1 << (bit % 8);
        if at < inode.synced.len() {
            inode.synced[at] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    /// Flips a random bit within the first `len_limit(path)` bytes of a random file whose name
    /// satisfies `filter`; returns where. `len_limit` lets a caller restrict damage to written data.
    pub fn flip_random_bit(
        &self,
        filter: impl Fn(&Path) -> bool,
        len_limit: impl Fn(&Path, u64) -> u64,
    ) -> Option<(PathBuf, u64)> {
        let mut st = self.lock_state();
        let candidates: Vec<(PathBuf, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| filter(p))
            .map(|(p, id)| (p.clone(), len_limit(p, st.inodes[id].synced.len() as u64)))
            .filter(|(_, len)| *len > 0)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, len) = candidates[st.rng.gen_range(0..candidates.len())].clone();
        let offset = st.rng.gen_range(0..len);
        let bit = st.rng.gen_range(0..8u8);
        drop(st);
        self.flip_bit(&path, offset, bit).ok()?;
        Some((path, offset))
    }

    /// Overwrites bytes durably (test helper for corruption classes).
    pub fn write_durable(&self, path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock_state();
        let id = *st
            .names
            .get(path)
            .ok_or_else(|| os_error(ENOENT, "no such file"))?;
        let inode = st.inode_mut(id)?;
        let op = FileOp::Write {
            offset,
            data: data.to_vec(),
        };
        apply_op(&mut inode.current, &op);
        apply_op(&mut inode.synced, &op);
        Ok(())
    }

    /// Current contents of a file (test helper).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock_state();
        let id = st.names.get(path)?;
        Some(st.inodes[id].current.clone())
    }

    /// Removes a file durably, as an operator or a disk fault might (test helper).
    pub fn remove_durable(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.names
            .remove(path)
            .ok_or_else(|| os_error(ENOENT, "no such file"))?;
        st.durable_names.remove(path);
        Ok(())
    }
}

/// An open simulated file; stale after a crash.
#[derive(Debug)]
pub struct SimFile {
    io: SimIo,
    inode: u64,
    generation: u64,
}

/// The data-directory lock of a simulated process; released on drop or crash.
#[derive(Debug)]
pub struct SimLock {
    io: SimIo,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.io.lock_state();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

impl SimIo {
    fn link_new(&self, st: &mut State, path: &Path) -> io::Result<u64> {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !st.dirs.contains(&parent) {
            return Err(os_error(ENOENT, "parent directory missing"));
        }
        let id = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(id, Inode::default());
        st.names.insert(path.to_path_buf(), id);
        st.dir_ops.push(DirOp::Link {
            path: path.to_path_buf(),
            inode: id,
        });
        Ok(id)
    }
}

impl Io for SimIo {
    type File = SimFile;
    type Lock = SimLock;

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        // Directories are durable at once (documented simplification).
        let mut st = self.lock_state();
        let mut p = Some(path);
        while let Some(dir) = p {
            st.dirs.insert(dir.to_path_buf());
            p = dir.parent();
        }
        Ok(())
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let st = self.lock_state();
        let id = *st
            .names
            .get(path)
            .ok_or_else(|| os_error(ENOENT, "no such file"))?;
        Ok(SimFile {
            io: self.clone(),
            inode: id,
            generation: st.generation,
        })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut st = self.lock_state();
        if let Some(&id) = st.names.get(path) {
            let inode = st.inode_mut(id)?;
            inode.pending.push(FileOp::SetLen(0));
            inode.current.clear();
            return Ok(SimFile {
                io: self.clone(),
                inode: id,
                generation: st.generation,
            });
        }
        let id = self.link_new(&mut st, path)?;
        Ok(SimFile {
            io: self.clone(),
            inode: id,
            generation: st.generation,
        })
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let st = self.lock_state();
        Ok(st.names.contains_key(path) || st.dirs.contains(path))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.lock_state();
        if !st.dirs.contains(path) {
            return Err(os_error(ENOENT, "no such directory"));
        }
        let mut names: Vec<String> = st
            .names
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        let id = st
            .names
            .remove(from)
            .ok_or_else(|| os_error(ENOENT, "rename source missing"))?;
        st.names.insert(to.to_path_buf(), id);
        st.dir_ops.push(DirOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        st.names
            .remove(path)
            .ok_or_else(|| os_error(ENOENT, "no such file"))?;
        st.dir_ops.push(DirOp::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock_state();
        let ppm = st.faults.sync_eio_ppm;
        if st.chance(ppm) {
            st.stats.injected_faults += 1;
            return Err(os_error(EIO, "sync_dir"));
        }
        let (mut mine, rest): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut st.dir_ops)
            .into_iter()
            .partition(|op| op.parent() == path);
        st.dir_ops = rest;
        let mut durable = std::mem::take(&mut st.durable_names);
        for op in mine.drain(..) {
            apply_dir_op(&mut durable, &op);
        }
        st.durable_names = durable;
        let cost = st.faults.sync_latency_us_min;
        st.latency_us += cost;
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<SimLock> {
        let mut st = self.lock_state();
        if !st.locks.insert(path.to_path_buf()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(SimLock {
            io: self.clone(),
            path: path.to_path_buf(),
            generation: st.generation,
        })
    }
}

impl SimFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.io.lock_state();
        if st.generation != self.generation {
            return Err(os_error(EIO, "stale handle after crash"));
        }
        Ok(st)
    }
}

impl IoFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut st = self.state()?;
        let ppm = st.faults.read_eio_ppm;
        if st.chance(ppm) {
            st.stats.injected_faults += 1;
            return Err(os_error(EIO, "read"));
        }
        let inode = st.inode_mut(self.inode)?;
        let start = offset as usize;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if end > inode.current.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buf.copy_from_slice(&inode.current[start..end]);
        Ok(())
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.state()?;
        st.stats.writes += 1;
        let ppm = st.faults.write_eio_ppm;
        if st.chance(ppm) {
            st.stats.injected_faults += 1;
            return Err(os_error(EIO, "write"));
        }
        let len_now = st
            .inodes
            .get(&self.inode)
            .map_or(0, |i| i.current.len() as u64);
        let growth = (offset + buf.len() as u64).saturating_sub(len_now);
        if st.used_bytes().saturating_add(growth) > st.faults.capacity_bytes {
            return Err(os_error(ENOSPC, "write"));
        }
        let mut target = offset;
        let ppm = st.faults.misdirected_write_ppm;
        if st.chance(ppm) {
            st.stats.injected_faults += 1;
            let shift = 4096 * st.rng.gen_range(1..=8u64);
            target = if st.rng.gen_bool(0.5) || offset < shift {
                offset + shift
            } else {
                offset - shift
            };
        }
        st.latency_us += st.faults.write_latency_us_per_kib * (buf.len() as u64).div_ceil(1024);
        let op = FileOp::Write {
            offset: target,
            data: buf.to_vec(),
        };
        let inode = st.inode_mut(self.inode)?;
        apply_op(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.state()?;
        st.stats.syncs += 1;
        let ppm = st.faults.sync_eio_ppm;
        if st.chance(ppm) {
            st.stats.injected_faults += 1;
            return Err(os_error(EIO, "fdatasync"));
        }
        let (lo, hi) = (
            st.faults.sync_latency_us_min,
            st.faults
                .sync_latency_us_max
                .max(st.faults.sync_latency_us_min),
        );
        let cost = st.rng.gen_range(lo..=hi);
        st.latency_us += cost;
        let inode = st.inode_mut(self.inode)?;
        for op in std::mem::take(&mut inode.pending) {
            apply_op(&mut inode.synced, &op);
        }
        Ok(())
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        let mut st = self.state()?;
        let inode = st.inode_mut(self.inode)?;
        let op = FileOp::SetLen(len_bytes);
        apply_op(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn allocate(&mut self, len_bytes: u64) -> io::Result<()> {
        let mut st = self.state()?;
        let len_now = st
            .inodes
            .get(&self.inode)
            .map_or(0, |i| i.current.len() as u64);
        if len_bytes <= len_now {
            return Ok(());
        }
        if st.used_bytes().saturating_add(len_bytes - len_now) > st.faults.capacity_bytes {
            return Err(os_error(ENOSPC, "fallocate"));
        }
        let inode = st.inode_mut(self.inode)?;
        let op = FileOp::SetLen(len_bytes);
        apply_op(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        let mut st = self.state()?;
        Ok(st.inode_mut(self.inode)?.current.len() as u64)
    }
}
