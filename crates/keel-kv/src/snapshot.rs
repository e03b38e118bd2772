//! Snapshot format (docs/kv.md, "Snapshot format"):
//!
//! ```text
//! magic            8 bytes   "KEELKVSN"
//! format_version   u32 LE    SNAPSHOT_FORMAT_VERSION
//! applied_index    varint
//! revision         varint
//! time_ms          varint
//! cluster_version  varint    (format 2 only; format 1 means cluster version 1)
//! record_count     varint, then per record (keys strictly increasing):
//!     key bytes, value bytes, create_revision, mod_revision, version (varints)
//! session section  (see SessionTable::encode)
//! checksum         u32 LE    crc32c of every byte before it
//! ```
//!
//! The same state always gives the same bytes (BTreeMap order, canonical varints).

use std::collections::BTreeMap;
use std::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::session::SessionTable;
use crate::store::{Record, Store};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"KEELKVSN";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
/// The oldest snapshot format still read (format 1: no cluster version, which is then 1).
pub const SNAPSHOT_FORMAT_VERSION_MIN: u32 = 1;
const HEADER_BYTES: usize = 12;
const CHECKSUM_BYTES: usize = 4;
/// Revisions and versions at or above 2^62 cannot come from a real history.
const COUNTER_PLAUSIBLE_MAX: u64 = 1 << 62;

/// Why snapshot bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    TooShort { size_bytes: usize },
    BadMagic,
    UnsupportedVersion { version: u32 },
    ChecksumMismatch { stored: u32, computed: u32 },
    Malformed(DecodeError),
    Inconsistent { reason: &'static str },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::TooShort { size_bytes } => {
                write!(f, "snapshot is only {size_bytes} bytes")
            }
            SnapshotError::BadMagic => write!(f, "not a keel-kv snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion { version } => {
                write!(f, "unsupported snapshot format version {version}")
            }
            SnapshotError::ChecksumMismatch { stored, computed } => write!(
                f,
                "snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            SnapshotError::Malformed(error) => write!(f, "snapshot body: {error}"),
            SnapshotError::Inconsistent { reason } => write!(f, "snapshot inconsistent: {reason}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// The decoded contents of a snapshot.
pub(crate) struct SnapshotState {
    pub(crate) applied_index: u64,
    pub(crate) time_ms: u64,
    pub(crate) cluster_version: u32,
    pub(crate) store: Store,
    pub(crate) sessions: SessionTable,
}

pub(crate) fn encode(
    applied_index: u64,
    time_ms: u64,
    cluster_version: u32,
    store: &Store,
    sessions: &SessionTable,
) -> Vec<u8> {
    assert!(cluster_version >= 1);
    let mut w = Writer::with_capacity(64);
    w.raw(&SNAPSHOT_MAGIC);
    w.u32_le(SNAPSHOT_FORMAT_VERSION);
    w.varint(applied_index);
    w.varint(store.revision);
    w.varint(time_ms);
    w.varint(u64::from(cluster_version));
    w.count(store.records.len());
    for (key, record) in &store.records {
        w.bytes(key);
        w.bytes(&record.value);
        w.varint(record.create_revision);
        w.varint(record.mod_revision);
        w.varint(record.version);
    }
    sessions.encode(&mut w);
    let checksum = crc32c::crc32c(w.as_slice());
    w.u32_le(checksum);
    let bytes = w.into_bytes();
    assert!(bytes.len() >= HEADER_BYTES + CHECKSUM_BYTES);
    bytes
}

pub(crate) fn decode(bytes: &[u8]) -> Result<SnapshotState, SnapshotError> {
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(SnapshotError::TooShort {
            size_bytes: bytes.len(),
        });
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let (covered, checksum_bytes) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let stored = u32::from_le_bytes([
        checksum_bytes[0],
        checksum_bytes[1],
        checksum_bytes[2],
        checksum_bytes[3],
    ]);
    let computed = crc32c::crc32c(covered);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    let mut r = Reader::new(&covered[8..]);
    let version = r.u32_le().map_err(SnapshotError::Malformed)?;
    if !(SNAPSHOT_FORMAT_VERSION_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion { version });
    }
    let state = decode_body(&mut r, version).map_err(SnapshotError::Malformed)?;
    r.finish().map_err(SnapshotError::Malformed)?;
    check(&state).map_err(|reason| SnapshotError::Inconsistent { reason })?;
    Ok(state)
}

fn decode_body(r: &mut Reader<'_>, version: u32) -> Result<SnapshotState, DecodeError> {
    let applied_index = r.varint()?;
    let revision = r.varint()?;
    let time_ms = r.varint()?;
    let cluster_version = if version >= 2 {
        crate::command::read_cluster_version(r)?
    } else {
        crate::machine::CLUSTER_VERSION_INITIAL
    };
    let count = r.count()?;
    // Collected in order, then bulk-built: BTreeMap::from_iter on sorted input is linear.
    let mut sorted: Vec<(Vec<u8>, Record)> = Vec::new();
    for _ in 0..count {
        let key = r.bytes()?;
        if sorted.last().is_some_and(|(previous, _)| key <= *previous) {
            return Err(r.error("snapshot keys not strictly increasing"));
        }
        let record = Record {
            value: r.bytes()?,
            create_revision: r.varint()?,
            mod_revision: r.varint()?,
            version: r.varint()?,
        };
        sorted.push((key, record));
    }
    let records: BTreeMap<Vec<u8>, Record> = sorted.into_iter().collect();
    assert!(records.len() == count);
    let sessions = SessionTable::decode(r)?;
    Ok(SnapshotState {
        applied_index,
        time_ms,
        cluster_version,
        store: Store { records, revision },
        sessions,
    })
}

/// Cross-field invariants a snapshot of a real state machine always satisfies.
fn check(state: &SnapshotState) -> Result<(), &'static str> {
    state.store.check_invariants()?;
    // Counters must be able to keep growing: a forged snapshot must not set up an overflow
    // panic on the next write.
    if state.store.revision >= COUNTER_PLAUSIBLE_MAX {
        return Err("revision implausibly large");
    }
    if state
        .store
        .records
        .values()
        .any(|record| record.version >= COUNTER_PLAUSIBLE_MAX)
    {
        return Err("version implausibly large");
    }
    if state.store.records.keys().any(|key| key.is_empty()) {
        return Err("empty key");
    }
    for (&client_id, session) in &state.sessions.sessions {
        if client_id == 0 || client_id > state.applied_index {
            return Err("session client id is not a past log index");
        }
        if session.last_active_ms > state.time_ms {
            return Err("session active after the snapshot's time");
        }
        if session
            .results
            .values()
            .any(|cached| cached.revision > state.store.revision)
        {
            return Err("cached result revision above store revision");
        }
    }
    Ok(())
}
