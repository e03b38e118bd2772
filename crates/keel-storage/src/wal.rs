//! The segmented write-ahead log: synchronous API (`append` buffers, `sync` makes durable).
//!
//! Batches: the records between two successful `sync` calls form one batch. `sync` writes the
//! batch (one write per segment touched), fdatasyncs, and only then may the next batch be
//! written; the last record of a batch carries the batch-end flag. Recovery relies on that order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{is_no_space, Error, Result};
use crate::index::{LogIndex, Position, PENDING_SEGMENT};
use crate::io::{Io, IoFile};
use crate::record::{
    decode_record, encode_record, encode_segment_header, patch_record, Decoded, RecordHeader,
    SegmentHeader, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, RECORD_TYPE_ENTRY,
    RECORD_TYPE_TRUNCATE, SEGMENT_HEADER_BYTES,
};
use crate::scan::{scan, segment_file_name, ProblemKind, Scan, SEGMENT_BYTES_MAX};

/// One log entry. The payload is opaque to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Bytes preallocated per segment (header included); records never straddle segments.
    pub segment_capacity_bytes: u64,
    /// Bytes that may be appended before `sync` must be called.
    pub pending_bytes_max: usize,
    /// Open even if synced data is damaged: cut at the damage and report it.
    pub repair: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_capacity_bytes: 64 << 20,
            pending_bytes_max: 64 << 20,
            repair: false,
        }
    }
}

/// What a repair discarded (audit record; the server must not vote or acknowledge until it has
/// caught up from a leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// Last log index kept after the cut.
    pub last_index_kept: u64,
    pub removed_segments: Vec<PathBuf>,
}

/// What opening the WAL found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecovery {
    pub first_index: u64,
    pub last_index: u64,
    pub segments: usize,
    /// A torn (never synced) tail that was cut: description with file and offset.
    pub torn_tail: Option<String>,
    pub repair: Option<RepairReport>,
}

struct Segment<F> {
    id: u64,
    path: PathBuf,
    file: F,
    write_offset: u64,
    capacity_bytes: u64,
}

struct PendingRecord {
    start: usize,
    /// The log's next index just before this record (a new segment's header field).
    next_index_before: u64,
}

struct Chunk {
    segment_id: u64,
    pending_start: usize,
    pending_end: usize,
    file_offset: u64,
}

pub struct Wal<I: Io> {
    io: I,
    wal_dir: PathBuf,
    options: WalOptions,
    segments: BTreeMap<u64, Segment<I::File>>,
    next_segment_id: u64,
    index: LogIndex,
    pending: Vec<u8>,
    pending_records: Vec<PendingRecord>,
    next_batch_id: u64,
    synced_index: u64,
    poisoned: Option<String>,
    _lock: Option<Arc<I::Lock>>,
}

impl<I: Io> Wal<I> {
    /// Opens (creating if needed) the WAL in `wal_dir`, recovering as documented. Prefer
    /// [`crate::Storage::open`], which also takes the directory lock.
    pub fn open(io: I, wal_dir: &Path, options: WalOptions) -> Result<(Wal<I>, WalRecovery)> {
        Wal::open_locked(io, wal_dir, options, None)
    }

    pub(crate) fn open_locked(
        io: I,
        wal_dir: &Path,
        options: WalOptions,
        lock: Option<Arc<I::Lock>>,
    ) -> Result<(Wal<I>, WalRecovery)> {
        let min_capacity = (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 8) as u64;
        if options.segment_capacity_bytes < min_capacity
            || options.segment_capacity_bytes > SEGMENT_BYTES_MAX.min(u32::MAX as u64)
        {
            return Err(Error::InvalidArgument(format!(
                "segment_capacity_bytes {} outside {min_capacity}..={}",
                options.segment_capacity_bytes,
                SEGMENT_BYTES_MAX.min(u32::MAX as u64)
            )));
        }
        io.create_dir_all(wal_dir)
            .map_err(|e| Error::io("create dir", wal_dir, e))?;
        let scanned = scan(&io, wal_dir)?;
        let mut torn_tail = None;
        let mut repair = None;
        let mut cut_at: Option<(usize, u64)> = None;
        if let Some(problem) = &scanned.problem {
            match problem.kind {
                ProblemKind::Damage if !options.repair => return Err(problem.to_error()),
                ProblemKind::Damage => {
                    repair = Some(RepairReport {
                        path: problem.path.clone(),
                        offset: problem.offset,
                        reason: problem.reason.clone(),
                        last_index_kept: scanned.last_index(),
                        removed_segments: Vec::new(),
                    });
                }
                ProblemKind::TornTail => {
                    torn_tail = Some(format!(
                        "{} at offset {}: {}",
                        problem.path.display(),
                        problem.offset,
                        problem.reason
                    ));
                }
            }
            cut_at = Some((problem.segment_slot, problem.offset));
        }
        let removed = match cut_at {
            Some((slot, offset)) => cut(&io, wal_dir, &scanned, slot, offset)?,
            None => Vec::new(),
        };
        if let Some(report) = repair.as_mut() {
            report.removed_segments = removed.clone();
        }
        // The next batch must follow a batch-end flag, or the next recovery would see an
        // incomplete batch followed by a later one.
        if let Some(last) = scanned.last_record.filter(|r| !r.batch_ended) {
            let path = &scanned.segments[last.slot].path;
            mark_batch_end(
                &io,
                path,
                scanned.segments[last.slot].segment_id,
                last.offset,
            )?;
        }
        let mut segments = BTreeMap::new();
        let mut last_id = None;
        for (slot, summary) in scanned.segments.iter().enumerate() {
            if removed.contains(&summary.path) {
                continue;
            }
            let Some(header) = summary.header else {
                continue;
            };
            let file = io
                .open(&summary.path)
                .map_err(|e| Error::io("open segment", &summary.path, e))?;
            let write_offset = match cut_at {
                Some((cut_slot, offset)) if cut_slot == slot => offset,
                _ => summary.end_offset,
            };
            last_id = Some(summary.segment_id);
            segments.insert(
                summary.segment_id,
                Segment {
                    id: summary.segment_id,
                    path: summary.path.clone(),
                    file,
                    write_offset,
                    capacity_bytes: header.capacity_bytes.min(summary.file_bytes),
                },
            );
        }
        let max_seen_id = scanned
            .segments
            .iter()
            .map(|s| s.segment_id)
            .max()
            .unwrap_or(0);
        let next_segment_id = last_id.map_or(max_seen_id + 1, |id| id + 1);
        let index = scanned.index.clone();
        let recovery = WalRecovery {
            first_index: index.first_index(),
            last_index: index.last_index(),
            segments: segments.len(),
            torn_tail,
            repair,
        };
        let wal = Wal {
            io,
            wal_dir: wal_dir.to_path_buf(),
            options,
            segments,
            next_segment_id,
            synced_index: index.last_index(),
            index,
            pending: Vec::new(),
            pending_records: Vec::new(),
            next_batch_id: scanned.max_batch_id + 1,
            poisoned: None,
            _lock: lock,
        };
        Ok((wal, recovery))
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(msg) => Err(Error::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, error: Error) -> Error {
        self.poisoned = Some(error.to_string());
        error
    }

    pub fn first_index(&self) -> u64 {
        self.index.first_index()
    }

    /// Last index in the log (durable or not); `first_index() - 1` when empty.
    pub fn last_index(&self) -> u64 {
        self.index.last_index()
    }

    /// Entries `first_index()..=synced_index()` are durable exactly as the log holds them now.
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Largest payload an entry may carry with this segment size.
    pub fn payload_bytes_max(&self) -> usize {
        let room = self.options.segment_capacity_bytes as usize
            - SEGMENT_HEADER_BYTES
            - RECORD_HEADER_BYTES
            - 8;
        room.min(RECORD_PAYLOAD_BYTES_MAX)
    }

    pub fn term(&self, index: u64) -> Option<u64> {
        self.index.get(index).map(|p| p.term)
    }

    fn push_record(
        &mut self,
        record_type: u8,
        index: u64,
        term: u64,
        payload: &[u8],
    ) -> Result<()> {
        let total = crate::record::record_total_bytes(payload.len());
        if self.pending.len() + total > self.options.pending_bytes_max {
            return Err(Error::InvalidArgument(format!(
                "pending bytes would exceed pending_bytes_max {} (call sync first)",
                self.options.pending_bytes_max
            )));
        }
        let start = self.pending.len();
        let header = RecordHeader {
            record_type,
            flags: 0,
            segment_id: 0,
            batch_id: 0,
            index,
            term,
            payload_len: payload.len() as u32,
        };
        encode_record(&mut self.pending, &header, payload);
        self.pending_records.push(PendingRecord {
            start,
            next_index_before: self.index.next_index(),
        });
        Ok(())
    }

    /// Buffers one entry; it must be `last_index() + 1`. Durable only after [`Wal::sync`].
    pub fn append_one(&mut self, index: u64, term: u64, payload: &[u8]) -> Result<()> {
        self.check_poisoned()?;
        if index != self.index.next_index() {
            return Err(Error::InvalidArgument(format!(
                "append of index {index} but the log continues at {}",
                self.index.next_index()
            )));
        }
        if payload.len() > self.payload_bytes_max() {
            return Err(Error::InvalidArgument(format!(
                "payload of {} bytes exceeds payload_bytes_max {}",
                payload.len(),
                self.payload_bytes_max()
            )));
        }
        let start = self.pending.len();
        self.push_record(RECORD_TYPE_ENTRY, index, term, payload)?;
        let record_bytes = (self.pending.len() - start) as u32;
        self.index.push(Position {
            term,
            segment_id: PENDING_SEGMENT,
            offset: start as u32,
            record_bytes,
        });
        assert_eq!(self.index.last_index(), index);
        Ok(())
    }

    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        for entry in entries {
            self.append_one(entry.index, entry.term, &entry.payload)?;
        }
        Ok(())
    }

    /// Discards entries `>= from` (a conflict in Raft). Durable at the next sync.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        self.check_poisoned()?;
        if from < self.index.first_index() || from > self.index.next_index() {
            return Err(Error::InvalidArgument(format!(
                "truncate from {from} outside {}..={}",
                self.index.first_index(),
                self.index.next_index()
            )));
        }
        if from == self.index.next_index() {
            return Ok(());
        }
        self.push_record(RECORD_TYPE_TRUNCATE, from, 0, &[])?;
        self.index.truncate(from);
        self.synced_index = self.synced_index.min(from - 1);
        assert_eq!(self.index.next_index(), from);
        Ok(())
    }

    /// Entries `< keep_from` are no longer needed (a durable snapshot covers them). Whole
    /// segments holding only such entries are deleted; the log may keep a few older entries.
    /// If `keep_from` is past the end, the log restarts empty at `keep_from` (durable at sync).
    pub fn purge_prefix(&mut self, keep_from: u64) -> Result<()> {
        self.check_poisoned()?;
        if keep_from <= self.index.first_index() {
            return Ok(());
        }
        let active = self.segments.keys().next_back().copied();
        let keep_segment = if keep_from < self.index.next_index() {
            self.index.purge(keep_from);
            match self.index.get(keep_from) {
                Some(p) if p.segment_id != PENDING_SEGMENT => Some(p.segment_id),
                _ => active,
            }
        } else {
            self.push_record(RECORD_TYPE_TRUNCATE, keep_from, 0, &[])?;
            self.index.reset(keep_from);
            self.synced_index = keep_from - 1;
            active
        };
        let Some(keep_segment) = keep_segment else {
            return Ok(());
        };
        let doomed: Vec<u64> = self
            .segments
            .range(..keep_segment)
            .map(|(&id, _)| id)
            .collect();
        // Oldest first, each removal made durable before the next: a crash never leaves a hole.
        for id in doomed {
            let segment = self.segments.remove(&id).expect("listed segment");
            self.io
                .remove_file(&segment.path)
                .map_err(|e| Error::io("remove segment", &segment.path, e))?;
            if let Err(e) = self.io.sync_dir(&self.wal_dir) {
                return Err(self.poison(Error::fatal("sync dir", self.wal_dir.clone(), e)));
            }
        }
        assert!(self.segments.keys().all(|&id| id >= keep_segment));
        Ok(())
    }

    /// Writes the pending batch, fdatasyncs it, and returns the synced last index.
    /// `NoSpace`: a new segment could not be preallocated; nothing was written, retry later.
    /// Any other write or sync failure poisons the WAL (fatal, never retried).
    pub fn sync(&mut self) -> Result<u64> {
        self.check_poisoned()?;
        if self.pending_records.is_empty() {
            self.synced_index = self.index.last_index();
            return Ok(self.synced_index);
        }
        let batch_id = self.next_batch_id;
        let capacity = self.options.segment_capacity_bytes;
        // 1. Plan where each pending record goes.
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut new_headers: Vec<SegmentHeader> = Vec::new();
        let (mut seg_id, mut offset, mut seg_capacity) = match self.segments.values().next_back() {
            Some(s) => (s.id, s.write_offset, s.capacity_bytes),
            None => (u64::MAX, 0, 0),
        };
        for (i, record) in self.pending_records.iter().enumerate() {
            let end = self
                .pending_records
                .get(i + 1)
                .map_or(self.pending.len(), |r| r.start);
            let len = (end - record.start) as u64;
            if seg_id == u64::MAX || offset + len > seg_capacity {
                seg_id = if seg_id == u64::MAX {
                    self.next_segment_id
                } else {
                    seg_id + 1
                };
                assert!(seg_id >= self.next_segment_id);
                new_headers.push(SegmentHeader {
                    segment_id: seg_id,
                    first_index: record.next_index_before,
                    batch_id,
                    capacity_bytes: capacity,
                });
                offset = SEGMENT_HEADER_BYTES as u64;
                seg_capacity = capacity;
                assert!(offset + len <= seg_capacity, "record larger than a segment");
            }
            match chunks.last_mut() {
                Some(c) if c.segment_id == seg_id => c.pending_end = end,
                _ => chunks.push(Chunk {
                    segment_id: seg_id,
                    pending_start: record.start,
                    pending_end: end,
                    file_offset: offset,
                }),
            }
            offset += len;
        }
        // 2. Preallocate new segments first: ENOSPC here is recoverable, nothing written yet.
        let mut created: Vec<Segment<I::File>> = Vec::new();
        for header in &new_headers {
            let path = self.wal_dir.join(segment_file_name(header.segment_id));
            let prepared = self
                .io
                .create(&path)
                .and_then(|mut file| file.allocate(capacity).map(|()| file));
            match prepared {
                Ok(file) => created.push(Segment {
                    id: header.segment_id,
                    path,
                    file,
                    write_offset: SEGMENT_HEADER_BYTES as u64,
                    capacity_bytes: capacity,
                }),
                Err(e) => {
                    let no_space = is_no_space(&e);
                    for segment in &created {
                        let _ = self.io.remove_file(&segment.path);
                    }
                    let _ = self.io.remove_file(&path);
                    return Err(if no_space {
                        Error::NoSpace { path }
                    } else {
                        Error::io("create segment", path, e)
                    });
                }
            }
        }
        // 3. Stamp segment, batch and batch-end into the records.
        let last = self.pending_records.len() - 1;
        for (i, record) in self.pending_records.iter().enumerate() {
            let end = self
                .pending_records
                .get(i + 1)
                .map_or(self.pending.len(), |r| r.start);
            let chunk = chunks
                .iter()
                .find(|c| c.pending_start <= record.start && record.start < c.pending_end)
                .expect("planned");
            patch_record(
                &mut self.pending[record.start..end],
                chunk.segment_id,
                batch_id,
                i == last,
            );
        }
        // 4. Write headers and records, then make them durable. Failures are fatal from here on.
        for (header, segment) in new_headers.iter().zip(created.iter_mut()) {
            if let Err(e) = segment.file.write_all_at(&encode_segment_header(header), 0) {
                return Err(self.poison(Error::fatal(
                    "write segment header",
                    segment.path.clone(),
                    e,
                )));
            }
        }
        let mut touched: Vec<u64> = Vec::new();
        for chunk in &chunks {
            let bytes = &self.pending[chunk.pending_start..chunk.pending_end];
            let segment = match self.segments.get_mut(&chunk.segment_id) {
                Some(s) => s,
                None => created
                    .iter_mut()
                    .find(|s| s.id == chunk.segment_id)
                    .expect("created segment"),
            };
            if let Err(e) = segment.file.write_all_at(bytes, chunk.file_offset) {
                let path = segment.path.clone();
                return Err(self.poison(Error::fatal("write", path, e)));
            }
            segment.write_offset = chunk.file_offset + bytes.len() as u64;
            touched.push(chunk.segment_id);
        }
        for id in &touched {
            let segment = match self.segments.get_mut(id) {
                Some(s) => s,
                None => created
                    .iter_mut()
                    .find(|s| s.id == *id)
                    .expect("created segment"),
            };
            if let Err(e) = segment.file.sync_data() {
                let path = segment.path.clone();
                return Err(self.poison(Error::fatal("fdatasync", path, e)));
            }
        }
        if !created.is_empty() {
            if let Err(e) = self.io.sync_dir(&self.wal_dir) {
                return Err(self.poison(Error::fatal("sync dir", self.wal_dir.clone(), e)));
            }
        }
        // 5. The batch is durable: publish it.
        for segment in created {
            self.next_segment_id = segment.id + 1;
            self.segments.insert(segment.id, segment);
        }
        for position in self.index.iter_back_mut() {
            if position.segment_id != PENDING_SEGMENT {
                break;
            }
            let at = position.offset as usize;
            let chunk = chunks
                .iter()
                .find(|c| c.pending_start <= at && at < c.pending_end)
                .expect("planned");
            position.segment_id = chunk.segment_id;
            position.offset = (chunk.file_offset + (at - chunk.pending_start) as u64) as u32;
        }
        self.pending.clear();
        self.pending_records.clear();
        self.next_batch_id += 1;
        self.synced_index = self.index.last_index();
        Ok(self.synced_index)
    }

    /// Reads one entry.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>> {
        if index < self.first_index() || index > self.last_index() {
            return Ok(None);
        }
        Ok(self.entries(index, index + 1, usize::MAX)?.pop())
    }

    /// Entries in `lo..hi`, stopping once `bytes_max` payload bytes are exceeded (at least one
    /// entry is returned when the range is non-empty).
    pub fn entries(&self, lo: u64, hi: u64, bytes_max: usize) -> Result<Vec<Entry>> {
        if lo < self.first_index() || hi > self.index.next_index() || lo > hi {
            return Err(Error::InvalidArgument(format!(
                "entries {lo}..{hi} outside the log {}..{}",
                self.first_index(),
                self.index.next_index()
            )));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut buf = Vec::new();
        for index in lo..hi {
            let position = *self.index.get(index).expect("index in range");
            let record: &[u8] = if position.segment_id == PENDING_SEGMENT {
                let start = position.offset as usize;
                &self.pending[start..start + position.record_bytes as usize]
            } else {
                let segment = self.segments.get(&position.segment_id).ok_or_else(|| {
                    Error::corrupt(
                        &self.wal_dir,
                        0,
                        format!("segment {} of index {index} is gone", position.segment_id),
                    )
                })?;
                buf.resize(position.record_bytes as usize, 0);
                segment
                    .file
                    .read_exact_at(&mut buf, position.offset as u64)
                    .map_err(|e| Error::io("read", &segment.path, e))?;
                &buf
            };
            let entry = self.decode_entry(record, index, &position)?;
            bytes += entry.payload.len();
            out.push(entry);
            if bytes > bytes_max {
                break;
            }
        }
        Ok(out)
    }

    fn decode_entry(&self, record: &[u8], index: u64, position: &Position) -> Result<Entry> {
        let path = || match self.segments.get(&position.segment_id) {
            Some(s) => s.path.clone(),
            None => self.wal_dir.join("(pending)"),
        };
        match decode_record(record) {
            Decoded::Record { header, .. }
                if header.record_type == RECORD_TYPE_ENTRY
                    && header.index == index
                    && header.term == position.term =>
            {
                let payload = record
                    [RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + header.payload_len as usize]
                    .to_vec();
                Ok(Entry {
                    index,
                    term: header.term,
                    payload,
                })
            }
            Decoded::Record { .. } => Err(Error::corrupt(
                path(),
                position.offset as u64,
                format!("record read for index {index} holds another entry"),
            )),
            Decoded::End => Err(Error::corrupt(
                path(),
                position.offset as u64,
                format!("entry {index} reads as zeros"),
            )),
            Decoded::Invalid { reason } => Err(Error::corrupt(
                path(),
                position.offset as u64,
                format!("entry {index}: {reason}"),
            )),
        }
    }

    /// Segment ids currently in use (oldest first).
    pub fn segment_ids(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }
}

/// Sets the batch-end flag of the record at `offset` (the last one kept by recovery), durably.
fn mark_batch_end<I: Io>(io: &I, path: &Path, segment_id: u64, offset: u64) -> Result<()> {
    let mut file = io
        .open(path)
        .map_err(|e| Error::io("open segment", path, e))?;
    let mut head = [0u8; RECORD_HEADER_BYTES];
    file.read_exact_at(&mut head, offset)
        .map_err(|e| Error::io("read segment", path, e))?;
    let payload_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    let mut record = vec![0u8; RECORD_HEADER_BYTES + payload_len];
    file.read_exact_at(&mut record, offset)
        .map_err(|e| Error::io("read segment", path, e))?;
    let batch_id = crate::record::u64_at(&record, 24);
    patch_record(&mut record, segment_id, batch_id, true);
    assert!(matches!(decode_record(&record), Decoded::Record { .. }));
    file.write_all_at(&record[..RECORD_HEADER_BYTES], offset)
        .map_err(|e| Error::fatal("write", path, e))?;
    file.sync_data()
        .map_err(|e| Error::fatal("fdatasync", path, e))?;
    Ok(())
}

/// Removes everything at and after (`slot`, `offset`): later segments newest first, then either
/// the whole segment (`offset == 0`) or its bytes from `offset` (zeroed and synced).
fn cut<I: Io>(
    io: &I,
    wal_dir: &Path,
    scanned: &Scan,
    slot: usize,
    offset: u64,
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let all = crate::scan::list_segments(io, wal_dir)?;
    let cut_id = scanned.segments[slot].segment_id;
    for &id in all.iter().rev().filter(|&&id| id > cut_id) {
        let path = wal_dir.join(segment_file_name(id));
        io.remove_file(&path)
            .map_err(|e| Error::io("remove segment", &path, e))?;
        io.sync_dir(wal_dir)
            .map_err(|e| Error::fatal("sync dir", wal_dir, e))?;
        removed.push(path);
    }
    let path = scanned.segments[slot].path.clone();
    if offset == 0 {
        io.remove_file(&path)
            .map_err(|e| Error::io("remove segment", &path, e))?;
        io.sync_dir(wal_dir)
            .map_err(|e| Error::fatal("sync dir", wal_dir, e))?;
        removed.push(path);
        return Ok(removed);
    }
    let mut file = io
        .open(&path)
        .map_err(|e| Error::io("open segment", &path, e))?;
    let len = file
        .len_bytes()
        .map_err(|e| Error::io("stat segment", &path, e))?;
    if offset < len {
        let mut tail = vec![0u8; (len - offset) as usize];
        file.read_exact_at(&mut tail, offset)
            .map_err(|e| Error::io("read segment", &path, e))?;
        if let Some(last_nonzero) = tail.iter().rposition(|&b| b != 0) {
            let zeros = vec![0u8; last_nonzero + 1];
            file.write_all_at(&zeros, offset)
                .map_err(|e| Error::fatal("write", &path, e))?;
            file.sync_data()
                .map_err(|e| Error::fatal("fdatasync", &path, e))?;
        }
    }
    Ok(removed)
}
