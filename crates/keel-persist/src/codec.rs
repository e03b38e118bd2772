//! The on-disk encoding of what keel-core hands to storage: an entry's stamp and kind (the WAL
//! payload; index and term live in the WAL record), and a snapshot's core metadata (stored as
//! the storage snapshot's opaque metadata). Little-endian fixed-width integers; byte strings
//! are a u32 length then the bytes; every encoding starts with a version byte. Decoders return
//! an error on bad input, never panic, and bound every count.

use keel_core::{EntryKind, Membership, NodeId, SnapshotMeta, Stamp};
use std::collections::BTreeSet;

/// Version byte that starts every encoding below.
pub const ENCODING_VERSION: u8 = 1;
/// Most members a membership may name (bounded decode).
pub const MEMBERS_MAX: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decode error: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Little-endian byte writer shared by Keel's encodings.
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        let len = u32::try_from(b.len()).expect("byte strings are below 4 GiB");
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(b);
    }
    pub fn ids(&mut self, ids: &BTreeSet<NodeId>) {
        self.u64(ids.len() as u64);
        for id in ids {
            self.u64(*id);
        }
    }
}

/// The matching reader: every method fails on truncation, never panics.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
    pub fn ids(&mut self) -> Result<BTreeSet<NodeId>, DecodeError> {
        let n = self.u64()?;
        if n > MEMBERS_MAX as u64 {
            return Err(DecodeError("too many members"));
        }
        let mut out = BTreeSet::new();
        for _ in 0..n {
            out.insert(self.u64()?);
        }
        Ok(out)
    }
    pub fn string(&mut self, max: usize) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        if b.len() > max {
            return Err(DecodeError("string too long"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8"))
    }
    pub fn version(&mut self) -> Result<(), DecodeError> {
        if self.u8()? != ENCODING_VERSION {
            return Err(DecodeError("unknown encoding version"));
        }
        Ok(())
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        if !self.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(())
    }
}

fn write_membership(w: &mut Writer, m: &Membership) {
    w.ids(&m.voters);
    w.ids(&m.voters_outgoing);
    w.ids(&m.learners);
}

fn read_membership(r: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let m = Membership {
        voters: r.ids()?,
        voters_outgoing: r.ids()?,
        learners: r.ids()?,
    };
    m.validate()
        .map_err(|_| DecodeError("invalid membership"))?;
    Ok(m)
}

/// Encodes a core entry's stamp and kind as the WAL payload (index and term live in the WAL).
pub fn encode_entry_payload(stamp: Stamp, kind: &EntryKind) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32));
    w.u8(ENCODING_VERSION);
    w.u64(stamp.earliest_ms);
    w.u64(stamp.latest_ms);
    match kind {
        EntryKind::Noop => w.u8(0),
        EntryKind::Normal(data) => {
            w.u8(1);
            w.bytes(data);
        }
        EntryKind::Config(m) => {
            w.u8(2);
            write_membership(&mut w, m);
        }
    }
    w.0
}

pub fn decode_entry_payload(bytes: &[u8]) -> Result<(Stamp, EntryKind), DecodeError> {
    let mut r = Reader(bytes);
    r.version()?;
    let stamp = Stamp {
        earliest_ms: r.u64()?,
        latest_ms: r.u64()?,
    };
    let kind = match r.u8()? {
        0 => EntryKind::Noop,
        1 => EntryKind::Normal(r.bytes()?.to_vec()),
        2 => EntryKind::Config(read_membership(&mut r)?),
        _ => return Err(DecodeError("unknown entry kind")),
    };
    r.finish()?;
    Ok((stamp, kind))
}

/// The core's snapshot metadata, stored as the storage snapshot's opaque metadata.
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + meta.session_table.len()));
    w.u8(ENCODING_VERSION);
    w.u64(meta.index);
    w.u64(meta.term);
    write_membership(&mut w, &meta.membership);
    w.u64(meta.config_version);
    w.u64(meta.last_stamp.earliest_ms);
    w.u64(meta.last_stamp.latest_ms);
    w.bytes(&meta.session_table);
    w.0
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, DecodeError> {
    let mut r = Reader(bytes);
    r.version()?;
    let meta = SnapshotMeta {
        index: r.u64()?,
        term: r.u64()?,
        membership: read_membership(&mut r)?,
        config_version: r.u64()?,
        last_stamp: Stamp {
            earliest_ms: r.u64()?,
            latest_ms: r.u64()?,
        },
        session_table: r.bytes()?.to_vec(),
    };
    r.finish()?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_payload_round_trips_and_rejects_garbage() {
        let stamp = Stamp {
            earliest_ms: 5,
            latest_ms: 9,
        };
        for kind in [
            EntryKind::Noop,
            EntryKind::Normal(b"abc".to_vec()),
            EntryKind::Config(Membership::new([1, 2, 3])),
        ] {
            let bytes = encode_entry_payload(stamp, &kind);
            assert_eq!(decode_entry_payload(&bytes).unwrap(), (stamp, kind));
            for cut in 0..bytes.len() {
                assert!(
                    decode_entry_payload(&bytes[..cut]).is_err(),
                    "truncated at {cut} must fail"
                );
            }
        }
        assert!(decode_entry_payload(&[9, 0, 0]).is_err());
    }

    #[test]
    fn snapshot_meta_round_trips() {
        let meta = SnapshotMeta {
            index: 7,
            term: 3,
            membership: Membership::new([1, 2, 3]),
            config_version: 4,
            last_stamp: Stamp {
                earliest_ms: 1,
                latest_ms: 2,
            },
            session_table: vec![1, 2, 3],
        };
        let bytes = encode_snapshot_meta(&meta);
        assert_eq!(decode_snapshot_meta(&bytes).unwrap(), meta);
        let mut bad = bytes.clone();
        bad.push(0);
        assert!(
            decode_snapshot_meta(&bad).is_err(),
            "trailing bytes are refused"
        );
    }
}
