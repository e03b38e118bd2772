//! The data directory's format gate (docs/storage.md, "Data format version"): created at the
//! oldest format, a newer format refused before anything is read (also in repair mode), raised
//! only on request, never lowered.

use std::path::Path;

use keel_storage::{
    Entry, Error, Io, IoFile, SimIo, Storage, StorageOptions, DATA_FORMAT_MAX, DATA_FORMAT_MIN,
    FORMAT_FILE,
};

fn format_bytes(format: u32) -> Vec<u8> {
    let mut out = b"KEELFMT\0".to_vec();
    out.extend_from_slice(&format.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn write_format_file(io: &SimIo, dir: &Path, bytes: &[u8]) {
    let path = dir.join(FORMAT_FILE);
    let mut file = io.create(&path).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
    io.sync_dir(dir).unwrap();
}

fn options(repair: bool) -> StorageOptions {
    StorageOptions {
        repair,
        ..Default::default()
    }
}

#[test]
fn a_new_directory_starts_at_the_oldest_format_and_keeps_it() {
    let io = SimIo::new(1);
    let dir = Path::new("/n1");
    let (mut st, recovered) = Storage::open(io.clone(), dir, options(false)).unwrap();
    assert_eq!(recovered.data_format, DATA_FORMAT_MIN);
    assert_eq!(st.data_format(), DATA_FORMAT_MIN);
    st.wal
        .append(&[Entry {
            index: 1,
            term: 1,
            payload: b"x".to_vec(),
        }])
        .unwrap();
    st.wal.sync().unwrap();
    drop(st);
    io.crash();
    let (st, recovered) = Storage::open(io, dir, options(false)).unwrap();
    assert_eq!(recovered.data_format, DATA_FORMAT_MIN);
    assert_eq!(st.wal.last_index(), 1);
}

#[test]
fn a_newer_format_is_refused_before_anything_is_read_even_in_repair_mode() {
    let io = SimIo::new(2);
    let dir = Path::new("/n1");
    let (mut st, _) = Storage::open(io.clone(), dir, options(false)).unwrap();
    st.wal
        .append(&[Entry {
            index: 1,
            term: 1,
            payload: b"kept".to_vec(),
        }])
        .unwrap();
    st.wal.sync().unwrap();
    drop(st);
    write_format_file(&io, dir, &format_bytes(DATA_FORMAT_MAX + 1));
    for repair in [false, true] {
        match Storage::open(io.clone(), dir, options(repair)) {
            Err(Error::NewerFormat {
                found,
                supported_max,
                ..
            }) => {
                assert_eq!(
                    (found, supported_max),
                    (DATA_FORMAT_MAX + 1, DATA_FORMAT_MAX)
                );
            }
            Err(other) => panic!("expected NewerFormat, got {other}"),
            Ok(_) => panic!("a newer data format was opened (repair {repair})"),
        }
    }
    let message = Storage::open(io.clone(), dir, options(false))
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("newer than this binary"), "{message}");
    // Nothing was lost: with a format this binary reads, the entry is still there.
    write_format_file(&io, dir, &format_bytes(DATA_FORMAT_MIN));
    let (st, recovered) = Storage::open(io, dir, options(false)).unwrap();
    assert_eq!(recovered.data_format, DATA_FORMAT_MIN);
    assert_eq!(st.wal.last_index(), 1);
}

#[test]
fn a_damaged_format_file_is_corruption_not_a_format() {
    let io = SimIo::new(3);
    let dir = Path::new("/n1");
    drop(Storage::open(io.clone(), dir, options(false)).unwrap());
    let mut bytes = format_bytes(DATA_FORMAT_MIN);
    bytes[9] ^= 1;
    write_format_file(&io, dir, &bytes);
    match Storage::open(io, dir, options(false)) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("checksum"), "{reason}"),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged format file was accepted"),
    }
}

#[test]
fn formats_are_raised_only_within_what_the_binary_supports_and_never_lowered() {
    let io = SimIo::new(4);
    let dir = Path::new("/n1");
    let (mut st, _) = Storage::open(io.clone(), dir, options(false)).unwrap();
    assert!(matches!(
        st.set_data_format(DATA_FORMAT_MAX + 1),
        Err(Error::InvalidArgument(_))
    ));
    st.set_data_format(DATA_FORMAT_MAX).unwrap();
    st.set_data_format(DATA_FORMAT_MAX).unwrap(); // idempotent
    assert_eq!(st.data_format(), DATA_FORMAT_MAX);
    if DATA_FORMAT_MAX > DATA_FORMAT_MIN {
        assert!(matches!(
            st.set_data_format(DATA_FORMAT_MIN),
            Err(Error::InvalidArgument(_))
        ));
    }
    drop(st);
    io.crash();
    let (st, recovered) = Storage::open(io, dir, options(false)).unwrap();
    assert_eq!(recovered.data_format, DATA_FORMAT_MAX);
    assert_eq!(st.data_format(), DATA_FORMAT_MAX);
}
