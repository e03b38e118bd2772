//! Each corruption class is detected with a clear message naming file and offset; a torn tail
//! is cut; repair mode discards and reports; IO failures map to the documented error classes.

use std::path::{Path, PathBuf};

use keel_storage::{
    Entry, Error, HardState, Io, SimFaults, SimIo, Storage, StorageOptions, Wal, WalOptions,
};

const DIR: &str = "/node";

fn options() -> StorageOptions {
    StorageOptions {
        wal: WalOptions {
            segment_capacity_bytes: 1024,
            pending_bytes_max: 1 << 20,
            repair: false,
        },
        repair: false,
    }
}

fn repair_options() -> StorageOptions {
    StorageOptions {
        repair: true,
        ..options()
    }
}

fn entry(index: u64) -> Entry {
    Entry {
        index,
        term: 1,
        payload: vec![index as u8; 100],
    }
}

/// Writes `batches` batches of `per_batch` entries (100-byte payloads, ~7 records per segment).
fn populate(io: &SimIo, batches: u64, per_batch: u64) {
    let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).expect("open");
    for b in 0..batches {
        for i in 0..per_batch {
            let index = b * per_batch + i + 1;
            st.wal.append(&[entry(index)]).expect("append");
        }
        st.wal.sync().expect("sync");
    }
}

fn segment(id: u64) -> PathBuf {
    Path::new(DIR).join("wal").join(format!("{id:016x}.wal"))
}

fn open_err(io: &SimIo) -> (PathBuf, u64, String) {
    match Storage::open(io.clone(), Path::new(DIR), options()) {
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, opened fine"),
    }
}

#[test]
fn bad_crc_in_sealed_segment_is_refused_with_file_and_offset() {
    let io = SimIo::new(1);
    populate(&io, 4, 5);
    // Segment 1 holds entries 1..=6; flip a payload bit of its second record (offset 64+152).
    io.flip_bit(&segment(1), 64 + 152 + 60, 3).unwrap();
    let (path, offset, reason) = open_err(&io);
    assert_eq!(path, segment(1));
    assert_eq!(offset, 64 + 152);
    assert!(reason.contains("checksum"), "{reason}");
    assert!(reason.contains("synced"), "{reason}");
    let message = Error::Corrupt {
        path,
        offset,
        reason,
    }
    .to_string();
    assert!(
        message.contains("0000000000000001.wal") && message.contains("offset 216"),
        "{message}"
    );
}

#[test]
fn bad_record_followed_by_later_batch_in_same_segment_is_refused() {
    let io = SimIo::new(2);
    populate(&io, 3, 2);
    // Entries 1,2 (batch 1) and 3,4 (batch 2) are in segment 1; damage entry 1.
    io.flip_bit(&segment(1), 64 + 20, 0).unwrap();
    let (path, offset, reason) = open_err(&io);
    assert_eq!((path, offset), (segment(1), 64));
    assert!(reason.contains("later batch"), "{reason}");
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let io = SimIo::new(3);
    populate(&io, 6, 5);
    io.remove_durable(&segment(2)).unwrap();
    let (path, _, reason) = open_err(&io);
    assert_eq!(path, segment(3));
    assert!(
        reason.contains("missing") && reason.contains("gap"),
        "{reason}"
    );
}

#[test]
fn zeroed_synced_region_followed_by_records_is_refused() {
    let io = SimIo::new(4);
    populate(&io, 3, 2);
    io.write_durable(&segment(1), 64, &[0u8; 152]).unwrap();
    let (path, offset, reason) = open_err(&io);
    assert_eq!((path, offset), (segment(1), 64));
    assert!(reason.contains("zero"), "{reason}");
}

#[test]
fn misdirected_record_from_another_segment_is_refused() {
    let io = SimIo::new(5);
    populate(&io, 6, 5);
    // Copy a valid record of segment 3 over the first record of segment 2.
    let donor = io.contents(&segment(3)).unwrap();
    io.write_durable(&segment(2), 64, &donor[64..64 + 152])
        .unwrap();
    let (path, offset, reason) = open_err(&io);
    assert_eq!((path, offset), (segment(2), 64));
    assert!(reason.contains("belongs to segment 3"), "{reason}");
}

#[test]
fn torn_last_batch_is_cut_and_reported() {
    let io = SimIo::with_faults(
        6,
        SimFaults {
            crash_keep_unsynced_ppm: 1_000_000,
            crash_torn_write_ppm: 1_000_000,
            ..SimFaults::default()
        },
    );
    populate(&io, 2, 3);
    {
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        st.wal.append(&[entry(7), entry(8), entry(9)]).unwrap();
        // Write the batch but crash before its fdatasync completes: emulate by EIO on sync.
        io.set_faults(SimFaults {
            sync_eio_ppm: 1_000_000,
            crash_keep_unsynced_ppm: 1_000_000,
            crash_torn_write_ppm: 1_000_000,
            ..SimFaults::default()
        });
        let err = st.wal.sync().unwrap_err();
        assert!(err.is_fatal(), "{err}");
        assert!(matches!(st.wal.sync(), Err(Error::Poisoned(_))));
    }
    io.set_faults(SimFaults {
        crash_keep_unsynced_ppm: 1_000_000,
        crash_torn_write_ppm: 1_000_000,
        ..SimFaults::default()
    });
    io.crash();
    let (st, recovered) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert!(st.wal.last_index() >= 6, "synced entries lost");
    assert!(!recovered.repaired());
    if st.wal.last_index() < 9 {
        let torn = recovered.wal.torn_tail.expect("torn tail reported");
        assert!(torn.contains(".wal at offset"), "{torn}");
    }
    for i in 1..=st.wal.last_index() {
        assert_eq!(st.wal.entry(i).unwrap().unwrap(), entry(i));
    }
}

#[test]
fn repair_mode_cuts_damage_and_reports_it() {
    let io = SimIo::new(7);
    populate(&io, 6, 5);
    io.flip_bit(&segment(2), 64 + 10, 1).unwrap();
    let (mut st, recovered) =
        Storage::open(io.clone(), Path::new(DIR), repair_options()).expect("repair opens");
    assert!(recovered.repaired());
    let report = recovered.wal.repair.clone().expect("report");
    assert_eq!((report.path.clone(), report.offset), (segment(2), 64));
    assert_eq!(report.last_index_kept, 6);
    assert!(!report.removed_segments.is_empty());
    assert!(
        recovered.repairs[0].contains("0000000000000002.wal"),
        "{:?}",
        recovered.repairs
    );
    assert_eq!(st.wal.last_index(), 6);
    assert!(recovered.repairing, "repair mode starts the node repairing");
    // `keel storage verify` reports the marker and what the repair discarded.
    let v = keel_storage::verify(&io, Path::new(DIR)).expect("verify");
    let marker = v
        .repairing
        .clone()
        .expect("verify reports the REPAIRING marker");
    assert!(marker.contains("0000000000000002.wal"), "{marker}");
    // The log continues and the next open is clean.
    st.wal.append(&[entry(7)]).unwrap();
    st.wal.sync().unwrap();
    drop(st);
    // A crash while repairing: the marker was durable before the node started.
    io.crash();
    let (mut st, recovered) =
        Storage::open(io.clone(), Path::new(DIR), options()).expect("clean after repair");
    assert!(!recovered.repaired());
    assert!(recovered.repairing, "still repairing until cleared");
    assert_eq!(st.wal.last_index(), 7);
    st.clear_repairing().unwrap();
    st.clear_repairing().unwrap();
    drop(st);
    io.crash();
    let (_, recovered) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert!(!recovered.repairing, "the cleared marker stays cleared");
    let v = keel_storage::verify(&io, Path::new(DIR)).expect("verify");
    assert_eq!(v.repairing, None, "no marker once repaired");
}

#[test]
fn snapshot_with_bad_checksum_is_refused_then_repaired() {
    let io = SimIo::new(8);
    {
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        st.snapshots.save(10, 2, b"config", &[7u8; 5000]).unwrap();
    }
    let snap = Path::new(DIR)
        .join("snap")
        .join(format!("{:016x}-{:016x}.snap", 10, 2));
    io.flip_bit(&snap, 64 + 6 + 4000, 5).unwrap();
    let (path, offset, reason) = open_err(&io);
    assert_eq!((path, offset), (snap.clone(), 70));
    assert!(reason.contains("snapshot data checksum"), "{reason}");
    let (_, recovered) = Storage::open(io.clone(), Path::new(DIR), repair_options()).unwrap();
    assert!(recovered.snapshot.is_none());
    assert!(
        recovered.repairs.iter().any(|r| r.contains("snapshot")),
        "{:?}",
        recovered.repairs
    );
}

#[test]
fn hard_state_survives_one_damaged_slot_and_refuses_two() {
    let io = SimIo::new(9);
    let hs = HardState {
        term: 5,
        vote: Some(3),
        commit: 0,
        extra: b"x".to_vec(),
    };
    {
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        st.hard_state.save(&hs).unwrap();
    }
    let file = Path::new(DIR).join("hardstate");
    io.flip_bit(&file, 30, 1).unwrap();
    let (_, recovered) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert_eq!(recovered.hard_state, hs);
    assert!(recovered.hard_state_recovery.rewrote_slot.is_some());
    io.flip_bit(&file, 30, 1).unwrap();
    io.flip_bit(&file, 4096 + 30, 1).unwrap();
    let (path, _, reason) = open_err(&io);
    assert_eq!(path, file);
    assert!(reason.contains("both hard-state slots"), "{reason}");
    // Repair mode refuses too: it cannot know which vote the node gave.
    match Storage::open(io.clone(), Path::new(DIR), repair_options()) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert_eq!(path, file);
            assert!(reason.contains("cannot recover a lost vote"), "{reason}");
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("repair mode accepted a lost hard state"),
    }
}

#[test]
fn commit_beyond_log_end_is_refused() {
    let io = SimIo::new(10);
    populate(&io, 1, 3);
    {
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        st.hard_state
            .save(&HardState {
                term: 1,
                vote: None,
                commit: 3,
                extra: vec![],
            })
            .unwrap();
    }
    // Lose the only segment: the log now ends before the commit index.
    io.remove_durable(&segment(1)).unwrap();
    let (_, _, reason) = open_err(&io);
    assert!(reason.contains("commit index 3"), "{reason}");
}

#[test]
fn second_open_of_a_locked_dir_fails() {
    let io = SimIo::new(11);
    let (_st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert!(matches!(
        Storage::open(io.clone(), Path::new(DIR), options()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn no_space_at_preallocation_is_recoverable() {
    let io = SimIo::new(12);
    let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    let used: u64 = ["hardstate"]
        .iter()
        .map(|f| io.contents(&Path::new(DIR).join(f)).unwrap().len() as u64)
        .sum();
    io.set_faults(SimFaults {
        capacity_bytes: used + 1500,
        ..SimFaults::default()
    });
    st.wal.append(&[entry(1)]).unwrap();
    st.wal.sync().unwrap(); // first segment fits
    for i in 2..=12 {
        st.wal.append(&[entry(i)]).unwrap();
    }
    let err = st.wal.sync().unwrap_err();
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert!(!err.is_fatal());
    assert_eq!(st.wal.synced_index(), 1);
    io.set_faults(SimFaults::default());
    assert_eq!(st.wal.sync().unwrap(), 12);
    drop(st);
    let (st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert_eq!(st.wal.last_index(), 12);
}

#[test]
fn wal_over_real_disk_round_trips_and_locks() {
    let dir = std::env::temp_dir().join(format!("keel-storage-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let (mut st, _) = Storage::open(keel_storage::RealIo, &dir, options()).unwrap();
        assert!(matches!(
            Storage::open(keel_storage::RealIo, &dir, options()),
            Err(Error::Locked { .. })
        ));
        for i in 1..=40 {
            st.wal.append(&[entry(i)]).unwrap();
        }
        assert_eq!(st.wal.sync().unwrap(), 40);
        st.hard_state
            .save(&HardState {
                term: 2,
                vote: Some(1),
                commit: 40,
                extra: vec![],
            })
            .unwrap();
        st.snapshots.save(19, 1, b"meta", b"state").unwrap();
        st.wal.purge_prefix(20).unwrap();
    }
    let (st, recovered) = Storage::open(keel_storage::RealIo, &dir, options()).unwrap();
    assert_eq!(recovered.hard_state.commit, 40);
    assert!(st.wal.first_index() <= 20 && st.wal.last_index() == 40);
    assert_eq!(st.wal.entry(33).unwrap().unwrap(), entry(33));
    assert!(
        keel_storage::RealIo
            .list_dir(&dir.join("wal"))
            .unwrap()
            .len()
            < 7
    );
    drop(st);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wal_open_without_storage_and_truncate_then_reappend() {
    let io = SimIo::new(13);
    let dir = Path::new("/w");
    let (mut wal, _) = Wal::open(
        io.clone(),
        dir,
        WalOptions {
            segment_capacity_bytes: 1024,
            ..WalOptions::default()
        },
    )
    .unwrap();
    wal.append(&(1..=10).map(entry).collect::<Vec<_>>())
        .unwrap();
    wal.sync().unwrap();
    wal.truncate_suffix(6).unwrap();
    assert_eq!(wal.synced_index(), 5);
    wal.append(&[Entry {
        index: 6,
        term: 2,
        payload: b"new".to_vec(),
    }])
    .unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (wal, _) = Wal::open(
        io.clone(),
        dir,
        WalOptions {
            segment_capacity_bytes: 1024,
            ..WalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(wal.last_index(), 6);
    assert_eq!(wal.term(6), Some(2));
    assert_eq!(wal.entry(6).unwrap().unwrap().payload, b"new");
}
