//! Read-only recovery scan of `<dir>/wal/`: rebuilds the index and classifies the first
//! problem as a torn tail (never synced, safe to cut) or damage (may have been synced).
//!
//! Classification rule (docs/storage.md "Recovery"): batch `b + 1` is written only after batch
//! `b` is synced, and the last record of every batch carries the batch-end flag. So at a bad spot
//! we know the batch it belongs to (`last + 1` if the previous record ended its batch, else
//! `last`). If any valid record of a *later* batch exists after the spot, the spot lies in synced
//! data: damage. Otherwise the spot is in the last, unsynced batch: a torn write.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::{LogIndex, Position};
use crate::io::{Io, IoFile};
use crate::record::{
    decode_record, decode_segment_header, Decoded, SegmentHeader, FORMAT_VERSION,
    RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RECORD_TYPE_ENTRY, RECORD_TYPE_TRUNCATE,
    SEGMENT_HEADER_BYTES,
};

/// Largest segment the scanner will read into memory.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;

pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:016x}.wal")
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What the scan learned about one segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub segment_id: u64,
    pub path: PathBuf,
    pub header: Option<SegmentHeader>,
    pub file_bytes: u64,
    /// Offset just past the last valid record scanned.
    pub end_offset: u64,
    pub entry_records: u64,
    pub truncate_records: u64,
    pub first_entry_index: Option<u64>,
    pub last_entry_index: Option<u64>,
    pub batch_id_min: Option<u64>,
    pub batch_id_max: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Damage confined to the last batch, which was never synced (and so never acknowledged).
    TornTail,
    /// Damage to data that was synced: refused unless repair is requested.
    Damage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: PathBuf,
    /// Position of the segment in [`Scan::segments`].
    pub segment_slot: usize,
    pub offset: u64,
    pub reason: String,
}

impl Problem {
    pub fn to_error(&self) -> Error {
        Error::corrupt(&self.path, self.offset, self.reason.clone())
    }
}

#[derive(Debug)]
pub struct Scan {
    pub segments: Vec<SegmentSummary>,
    pub(crate) index: LogIndex,
    /// Highest batch id seen anywhere, including beyond a problem.
    pub max_batch_id: u64,
    pub problem: Option<Problem>,
    pub(crate) last_record: Option<LastRecord>,
}

impl Scan {
    pub fn first_index(&self) -> u64 {
        self.index.first_index()
    }
    pub fn last_index(&self) -> u64 {
        self.index.last_index()
    }
}

struct Spot {
    slot: usize,
    offset: u64,
    reason: String,
    kind: SpotKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SpotKind {
    /// Bytes that do not decode (checksum, zeros followed by data): classify by later batches.
    Undecodable,
    /// A valid segment header that does not fit: classify by later batches, its own included.
    Header,
    /// A valid record that does not fit (misdirected, stale, gap): always damage.
    Record,
}

/// The last record accepted by the scan (recovery sets its batch-end flag if missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LastRecord {
    pub slot: usize,
    pub offset: u64,
    pub batch_ended: bool,
}

/// Finds the first plausible valid record of `segment_id` at an aligned offset `>= from`.
fn probe(buf: &[u8], from: usize, segment_id: u64) -> Option<(usize, crate::record::RecordHeader)> {
    let mut off = from.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
    while off + RECORD_HEADER_BYTES <= buf.len() {
        // Skip zero runs quickly.
        if buf[off] == 0 && buf[off..off + RECORD_HEADER_BYTES].iter().all(|&b| b == 0) {
            match buf[off..].iter().position(|&b| b != 0) {
                Some(nz) => {
                    off = ((off + nz) / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
                    if off + RECORD_HEADER_BYTES > buf.len() {
                        return None;
                    }
                }
                None => return None,
            }
        }
        let plausible = (buf[off + 8] == RECORD_TYPE_ENTRY || buf[off + 8] == RECORD_TYPE_TRUNCATE)
            && buf[off + 9] == FORMAT_VERSION
            && buf[off + 12..off + 16] == [0, 0, 0, 0]
            && crate::record::u64_at(buf, off + 16) == segment_id;
        if plausible {
            if let Decoded::Record { header, .. } = decode_record(&buf[off..]) {
                return Some((off, header));
            }
        }
        off += RECORD_ALIGN_BYTES;
    }
    None
}

fn read_segment<I: Io>(io: &I, path: &Path, buf: &mut Vec<u8>) -> Result<u64> {
    let file = io
        .open(path)
        .map_err(|e| Error::io("open segment", path, e))?;
    let len = file
        .len_bytes()
        .map_err(|e| Error::io("stat segment", path, e))?;
    if len > SEGMENT_BYTES_MAX {
        return Err(Error::corrupt(
            path,
            0,
            format!("segment file of {len} bytes exceeds the {SEGMENT_BYTES_MAX}-byte limit"),
        ));
    }
    buf.clear();
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, 0)
        .map_err(|e| Error::io("read segment", path, e))?;
    Ok(len)
}

/// Lists segment ids in `wal_dir`, sorted.
pub(crate) fn list_segments<I: Io>(io: &I, wal_dir: &Path) -> Result<Vec<u64>> {
    let names = io
        .list_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?;
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Scans the WAL directory without modifying anything.
pub fn scan<I: Io>(io: &I, wal_dir: &Path) -> Result<Scan> {
    let ids = list_segments(io, wal_dir)?;
    let mut segments: Vec<SegmentSummary> = Vec::with_capacity(ids.len());
    let mut index: Option<LogIndex> = None;
    let mut max_batch_id = 0u64;
    let mut last_batch = 0u64;
    let mut last_batch_ended = true;
    let mut spot: Option<Spot> = None;
    let mut last_record: Option<LastRecord> = None;
    let mut buf = Vec::new();

    'segments: for (slot, &id) in ids.iter().enumerate() {
        let path = wal_dir.join(segment_file_name(id));
        let file_bytes = read_segment(io, &path, &mut buf)?;
        let mut summary = SegmentSummary {
            segment_id: id,
            path: path.clone(),
            header: None,
            file_bytes,
            end_offset: 0,
            entry_records: 0,
            truncate_records: 0,
            first_entry_index: None,
            last_entry_index: None,
            batch_id_min: None,
            batch_id_max: None,
        };
        let header = match decode_segment_header(&buf) {
            Ok(h) => h,
            Err(reason) => {
                segments.push(summary);
                spot = Some(Spot {
                    slot,
                    offset: 0,
                    reason: format!("segment header: {reason}"),
                    kind: SpotKind::Undecodable,
                });
                break 'segments;
            }
        };
        summary.header = Some(header);
        let header_problem = if header.segment_id != id {
            Some(format!(
                "segment header names segment {} (misplaced file)",
                header.segment_id
            ))
        } else if slot > 0 && id != ids[slot - 1] + 1 {
            Some(format!(
                "segments {}..{} are missing (gap)",
                ids[slot - 1] + 1,
                id - 1
            ))
        } else if index
            .as_ref()
            .is_some_and(|ix| ix.next_index() != header.first_index)
        {
            let next = index.as_ref().map_or(0, |ix| ix.next_index());
            Some(format!(
                "segment starts at index {} but the log continues at {next} (gap)",
                header.first_index
            ))
        } else if header.batch_id < last_batch {
            Some(format!(
                "segment created in batch {} after batch {last_batch} (out of order)",
                header.batch_id
            ))
        } else if header.first_index == 0 {
            Some("segment first index is 0".to_string())
        } else {
            None
        };
        if let Some(reason) = header_problem {
            segments.push(summary);
            spot = Some(Spot {
                slot,
                offset: 0,
                reason,
                kind: SpotKind::Header,
            });
            break 'segments;
        }
        max_batch_id = max_batch_id.max(header.batch_id);
        let ix = index.get_or_insert_with(|| LogIndex::new(header.first_index));
        let limit = (header.capacity_bytes.min(file_bytes)) as usize;
        let mut off = SEGMENT_HEADER_BYTES;
        summary.end_offset = off as u64;
        while off < limit {
            let (record, total) = match decode_record(&buf[off..limit]) {
                Decoded::Record {
                    header,
                    total_bytes,
                } => (header, total_bytes),
                Decoded::End => {
                    // Clean end of this segment unless a valid record follows the zeros.
                    if let Some((at, _)) = probe(&buf[..limit], off, id) {
                        spot = Some(Spot {
                            slot,
                            offset: off as u64,
                            reason: format!(
                                "unwritten (zero) bytes followed by a valid record at offset {at}"
                            ),
                            kind: SpotKind::Undecodable,
                        });
                    }
                    break;
                }
                Decoded::Invalid { reason } => {
                    spot = Some(Spot {
                        slot,
                        offset: off as u64,
                        reason: reason.to_string(),
                        kind: SpotKind::Undecodable,
                    });
                    break;
                }
            };
            let problem = if record.segment_id != id {
                Some(format!(
                    "record belongs to segment {} (misdirected or stale write)",
                    record.segment_id
                ))
            } else if record.batch_id < last_batch {
                Some(format!(
                    "batch id {} after batch {last_batch} (stale record)",
                    record.batch_id
                ))
            } else if record.batch_id > last_batch && !last_batch_ended {
                Some(format!(
                    "batch {last_batch} is incomplete but batch {} follows",
                    record.batch_id
                ))
            } else if record.record_type == RECORD_TYPE_ENTRY && record.index != ix.next_index() {
                Some(format!(
                    "entry index {} but the log continues at {} (gap or misplaced record)",
                    record.index,
                    ix.next_index()
                ))
            } else if record.record_type == RECORD_TYPE_TRUNCATE && record.index == 0 {
                Some("truncate record to index 0".to_string())
            } else {
                None
            };
            if let Some(reason) = problem {
                spot = Some(Spot {
                    slot,
                    offset: off as u64,
                    reason,
                    kind: SpotKind::Record,
                });
                break;
            }
            if record.record_type == RECORD_TYPE_ENTRY {
                ix.push(Position {
                    term: record.term,
                    segment_id: id,
                    offset: off as u32,
                    record_bytes: total as u32,
                });
                summary.entry_records += 1;
                summary.first_entry_index.get_or_insert(record.index);
                summary.last_entry_index = Some(record.index);
            } else {
                ix.truncate(record.index);
                summary.truncate_records += 1;
            }
            summary.batch_id_min.get_or_insert(record.batch_id);
            summary.batch_id_max = Some(record.batch_id);
            last_batch = record.batch_id;
            last_batch_ended = record.batch_end();
            last_record = Some(LastRecord {
                slot,
                offset: off as u64,
                batch_ended: last_batch_ended,
            });
            max_batch_id = max_batch_id.max(record.batch_id);
            off += total;
            summary.end_offset = off as u64;
        }
        segments.push(summary);
        if spot.is_some() {
            break 'segments;
        }
    }

    let problem = match spot {
        None => None,
        Some(spot) => {
            let spot_batch = if last_batch_ended {
                last_batch + 1
            } else {
                last_batch
            };
            let mut evidence = find_later_batch(
                io,
                wal_dir,
                &ids,
                &spot,
                spot_batch,
                &mut buf,
                &mut max_batch_id,
            )?;
            if spot.kind == SpotKind::Record {
                evidence = Some(
                    evidence.unwrap_or_else(|| "a checksummed record cannot be torn".to_string()),
                );
            }
            let path = segments[spot.slot].path.clone();
            Some(match evidence {
                Some(ev) => Problem {
                    kind: ProblemKind::Damage,
                    path,
                    segment_slot: spot.slot,
                    offset: spot.offset,
                    reason: format!(
                        "{} (in batch {spot_batch} or earlier, but {ev}: this data was synced)",
                        spot.reason
                    ),
                },
                None => Problem {
                    kind: ProblemKind::TornTail,
                    path,
                    segment_slot: spot.slot,
                    offset: spot.offset,
                    reason: format!(
                        "{} (torn write in the last, unsynced batch {spot_batch})",
                        spot.reason
                    ),
                },
            })
        }
    };
    let index = index.unwrap_or_else(|| LogIndex::new(1));
    Ok(Scan {
        segments,
        index,
        max_batch_id,
        problem,
        last_record,
    })
}

/// Looks past a bad spot for any valid record or segment header of a batch after `spot_batch`.
fn find_later_batch<I: Io>(
    io: &I,
    wal_dir: &Path,
    ids: &[u64],
    spot: &Spot,
    spot_batch: u64,
    buf: &mut Vec<u8>,
    max_batch_id: &mut u64,
) -> Result<Option<String>> {
    let mut found: Option<String> = None;
    for (slot, &id) in ids.iter().enumerate().skip(spot.slot) {
        let path = wal_dir.join(segment_file_name(id));
        read_segment(io, &path, buf)?;
        let mut from = if slot == spot.slot {
            spot.offset as usize + RECORD_ALIGN_BYTES
        } else {
            SEGMENT_HEADER_BYTES
        };
        if slot == spot.slot && spot.offset == 0 {
            from = SEGMENT_HEADER_BYTES;
        }
        if slot != spot.slot || spot.kind == SpotKind::Header {
            if let Ok(h) = decode_segment_header(buf) {
                *max_batch_id = (*max_batch_id).max(h.batch_id);
                if h.batch_id > spot_batch && h.segment_id == id && found.is_none() {
                    found = Some(format!(
                        "segment {} was created in later batch {}",
                        path.display(),
                        h.batch_id
                    ));
                }
            }
        }
        while let Some((at, header)) = probe(buf, from, id) {
            *max_batch_id = (*max_batch_id).max(header.batch_id);
            if header.batch_id > spot_batch && found.is_none() {
                found = Some(format!(
                    "{} offset {at} holds a record of later batch {}",
                    path.display(),
                    header.batch_id
                ));
            }
            from = at + crate::record::record_total_bytes(header.payload_len as usize);
        }
    }
    Ok(found)
}
