//! WAL record and segment-header encoding. Every field is little-endian; docs/storage.md is the
//! normative description (offsets below must match it).
//!
//! Record (header 48 bytes, then payload, then zero padding to a multiple of 8):
//! ```text
//!  0  u32 crc32c      over bytes 4..48 and the payload
//!  4  u32 payload_len
//!  8  u8  record_type (1 = entry, 2 = truncate)
//!  9  u8  format_version (1)
//! 10  u16 flags       (bit 0 = last record of its batch)
//! 12  u32 reserved    (0)
//! 16  u64 segment_id
//! 24  u64 batch_id
//! 32  u64 index
//! 40  u64 term
//! 48  payload
//! ```

pub const FORMAT_VERSION: u8 = 1;
pub const RECORD_HEADER_BYTES: usize = 48;
/// Records start at multiples of this many bytes within a segment.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// Upper bound on one record's payload; the decoder rejects larger lengths without allocating.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

pub const RECORD_TYPE_ENTRY: u8 = 1;
pub const RECORD_TYPE_TRUNCATE: u8 = 2;
pub const FLAG_BATCH_END: u16 = 1;

pub const SEGMENT_MAGIC: [u8; 8] = *b"KEELWAL\0";
pub const SEGMENT_HEADER_BYTES: usize = 64;

/// Decoded fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_type: u8,
    pub flags: u16,
    pub segment_id: u64,
    pub batch_id: u64,
    pub index: u64,
    pub term: u64,
    pub payload_len: u32,
}

impl RecordHeader {
    pub fn batch_end(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid record occupying `total_bytes` (header + payload + padding).
    Record {
        header: RecordHeader,
        total_bytes: usize,
    },
    /// An all-zero header: the clean end of the written part of a preallocated segment.
    End,
    /// Not a valid record; `reason` says why.
    Invalid { reason: &'static str },
}

pub fn record_total_bytes(payload_len: usize) -> usize {
    let raw = RECORD_HEADER_BYTES + payload_len;
    raw.div_ceil(RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Appends one record to `out` (padding included). The caller guarantees the payload limit.
pub fn encode_record(out: &mut Vec<u8>, header: &RecordHeader, payload: &[u8]) {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX);
    assert_eq!(header.payload_len as usize, payload.len());
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&header.payload_len.to_le_bytes());
    out.push(header.record_type);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&header.flags.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&header.segment_id.to_le_bytes());
    out.extend_from_slice(&header.batch_id.to_le_bytes());
    out.extend_from_slice(&header.index.to_le_bytes());
    out.extend_from_slice(&header.term.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    let total = record_total_bytes(payload.len());
    out.resize(start + total, 0);
    debug_assert_eq!(out.len() - start, total);
}

/// Rewrites fields of an encoded record in place (used to set the batch-end flag and the
/// segment id when a pending record is placed) and recomputes its CRC.
pub fn patch_record(record: &mut [u8], segment_id: u64, batch_id: u64, batch_end: bool) {
    assert!(record.len() >= RECORD_HEADER_BYTES);
    let payload_len = u32_at(record, 4) as usize;
    assert!(RECORD_HEADER_BYTES + payload_len <= record.len());
    let mut flags = u16_at(record, 10) & !FLAG_BATCH_END;
    if batch_end {
        flags |= FLAG_BATCH_END;
    }
    record[10..12].copy_from_slice(&flags.to_le_bytes());
    record[16..24].copy_from_slice(&segment_id.to_le_bytes());
    record[24..32].copy_from_slice(&batch_id.to_le_bytes());
    let crc = crc32c::crc32c(&record[4..RECORD_HEADER_BYTES + payload_len]);
    record[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `buf`. Never panics, never allocates: `buf` is untrusted.
pub fn decode_record(buf: &[u8]) -> Decoded {
    if buf.len() < RECORD_HEADER_BYTES {
        if buf.iter().all(|&b| b == 0) {
            return Decoded::End;
        }
        return Decoded::Invalid {
            reason: "truncated record header",
        };
    }
    let head = &buf[..RECORD_HEADER_BYTES];
    if head.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let payload_len = u32_at(head, 4) as usize;
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Decoded::Invalid {
            reason: "payload length above the limit",
        };
    }
    let record_type = head[8];
    if record_type != RECORD_TYPE_ENTRY && record_type != RECORD_TYPE_TRUNCATE {
        return Decoded::Invalid {
            reason: "unknown record type",
        };
    }
    if head[9] != FORMAT_VERSION {
        return Decoded::Invalid {
            reason: "unknown record format version",
        };
    }
    let body_end = RECORD_HEADER_BYTES + payload_len;
    if body_end > buf.len() {
        return Decoded::Invalid {
            reason: "record extends past the end of the segment",
        };
    }
    let stored_crc = u32_at(head, 0);
    if crc32c::crc32c(&buf[4..body_end]) != stored_crc {
        return Decoded::Invalid {
            reason: "record checksum mismatch",
        };
    }
    let header = RecordHeader {
        record_type,
        flags: u16_at(head, 10),
        segment_id: u64_at(head, 16),
        batch_id: u64_at(head, 24),
        index: u64_at(head, 32),
        term: u64_at(head, 40),
        payload_len: payload_len as u32,
    };
    if record_type == RECORD_TYPE_TRUNCATE && payload_len != 0 {
        return Decoded::Invalid {
            reason: "truncate record with a payload",
        };
    }
    Decoded::Record {
        header,
        total_bytes: record_total_bytes(payload_len),
    }
}

/// Segment header (64 bytes):
/// ```text
///  0  [u8; 8] magic "KEELWAL\0"
///  8  u8  format_version
///  9  [u8; 7] reserved (0)
/// 16  u64 segment_id
/// 24  u64 first_index   (index the first entry appended to this segment will carry)
/// 32  u64 batch_id      (the batch during which the segment was created)
/// 40  u64 capacity_bytes
/// 48  [u8; 12] reserved (0)
/// 60  u32 crc32c over bytes 0..60
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    pub first_index: u64,
    pub batch_id: u64,
    pub capacity_bytes: u64,
}

pub fn encode_segment_header(h: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut out = [0u8; SEGMENT_HEADER_BYTES];
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8] = FORMAT_VERSION;
    out[16..24].copy_from_slice(&h.segment_id.to_le_bytes());
    out[24..32].copy_from_slice(&h.first_index.to_le_bytes());
    out[32..40].copy_from_slice(&h.batch_id.to_le_bytes());
    out[40..48].copy_from_slice(&h.capacity_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&out[0..60]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    out
}

pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, &'static str> {
    if buf.len() < SEGMENT_HEADER_BYTES {
        return Err("segment shorter than its header");
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    if crc32c::crc32c(&buf[0..60]) != u32_at(buf, 60) {
        return Err("segment header checksum mismatch");
    }
    if buf[8] != FORMAT_VERSION {
        return Err("unknown segment format version");
    }
    Ok(SegmentHeader {
        segment_id: u64_at(buf, 16),
        first_index: u64_at(buf, 24),
        batch_id: u64_at(buf, 32),
        capacity_bytes: u64_at(buf, 40),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(payload_len: u32) -> RecordHeader {
        RecordHeader {
            record_type: RECORD_TYPE_ENTRY,
            flags: 0,
            segment_id: 3,
            batch_id: 9,
            index: 42,
            term: 7,
            payload_len,
        }
    }

    #[test]
    fn record_round_trip_and_every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &header(5), b"hello");
        assert_eq!(buf.len(), 56);
        match decode_record(&buf) {
            Decoded::Record {
                header: h,
                total_bytes,
            } => {
                assert_eq!(h, header(5));
                assert_eq!(total_bytes, 56);
            }
            other => panic!("unexpected {other:?}"),
        }
        for bit in 0..(RECORD_HEADER_BYTES + 5) * 8 {
            let mut copy = buf.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_record(&copy), Decoded::Invalid { .. }),
                "bit {bit} flip undetected"
            );
        }
    }

    #[test]
    fn patch_sets_flag_and_keeps_checksum_valid() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &header(0), b"");
        patch_record(&mut buf, 11, 12, true);
        match decode_record(&buf) {
            Decoded::Record { header: h, .. } => {
                assert!(h.batch_end());
                assert_eq!((h.segment_id, h.batch_id), (11, 12));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn zeros_are_end_and_garbage_is_invalid() {
        assert_eq!(decode_record(&[0u8; 100]), Decoded::End);
        assert_eq!(decode_record(&[]), Decoded::End);
        assert!(matches!(
            decode_record(&[1u8; 100]),
            Decoded::Invalid { .. }
        ));
        let mut big = vec![0u8; 48];
        big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_record(&big), Decoded::Invalid { .. }));
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        let h = SegmentHeader {
            segment_id: 1,
            first_index: 2,
            batch_id: 3,
            capacity_bytes: 4096,
        };
        let mut bytes = encode_segment_header(&h);
        assert_eq!(decode_segment_header(&bytes), Ok(h));
        bytes[20] ^= 1;
        assert!(decode_segment_header(&bytes).is_err());
    }
}
