//! Arbitrary bytes through every decoder of untrusted on-disk data: WAL records, segment
//! headers, hard-state slots, snapshot headers, and a whole-segment recovery scan over SimIo.
//! None may panic or allocate beyond the input size.
#![no_main]

use keel_storage::record::{
    decode_record, decode_segment_header, encode_record, encode_segment_header, Decoded, RecordHeader, SegmentHeader,
};
use keel_storage::{decode_slot, Io, IoFile, SimIo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Walk the buffer as a segment body would be walked.
    let mut off = 0;
    while off < data.len() {
        match decode_record(&data[off..]) {
            Decoded::Record { total_bytes, .. } => {
                assert!(total_bytes >= 48);
                off += total_bytes;
            }
            Decoded::End | Decoded::Invalid { .. } => break,
        }
    }
    let _ = decode_segment_header(data);
    let _ = decode_slot(data);
    let _ = keel_storage::decode_snapshot_header(data);
    // The full recovery scan over the bytes as the body of a segment with a valid header (so
    // the fuzzer reaches record semantics, the batch classification and the lookahead), and
    // as a raw file.
    if data.len() <= 1 << 16 {
        let io = SimIo::new(0);
        let dir = std::path::Path::new("/f/wal");
        io.create_dir_all(dir).unwrap();
        let header = encode_segment_header(&SegmentHeader {
            segment_id: 1,
            first_index: 1,
            batch_id: 1,
            capacity_bytes: 1 << 20,
        });
        let mut f = io.create(&dir.join("0000000000000001.wal")).unwrap();
        f.write_all_at(&header, 0).unwrap();
        let body = if data.first().is_some_and(|b| b % 2 == 1) { structured(&data[1..]) } else { data.to_vec() };
        f.write_all_at(&body, header.len() as u64).unwrap();
        let mut g = io.create(&dir.join("0000000000000002.wal")).unwrap();
        g.write_all_at(data, 0).unwrap();
        if let Ok(scan) = keel_storage::scan(&io, dir) {
            assert!(scan.last_index() + 1 >= scan.first_index());
        }
    }
});

/// Turns 12-byte chunks of fuzz input into valid-CRC records with fuzzed fields (or raw bytes),
/// so the scan's record semantics and torn/damage classification are reached.
fn structured(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks_exact(12) {
        if out.len() > 1 << 15 {
            break;
        }
        if c[0] % 4 == 0 {
            out.extend_from_slice(&c[1..]);
            out.resize(out.len().div_ceil(8) * 8, 0);
            continue;
        }
        let record_type = 1 + c[1] % 2;
        let payload_len = if record_type == 2 { 0 } else { u32::from(c[7] % 32) };
        let header = RecordHeader {
            record_type,
            flags: u16::from(c[2] % 2),
            segment_id: 1 + u64::from(c[3] % 5 == 0),
            batch_id: 1 + u64::from(c[4] % 4),
            index: 1 + u64::from(c[5] % 8),
            term: u64::from(c[6]),
            payload_len,
        };
        encode_record(&mut out, &header, &vec![c[8]; payload_len as usize]);
    }
    out
}
