//! Simulated-disk campaigns: synced data is never lost or served corrupted; damage to synced
//! data is refused (never silently truncated); SimIo is deterministic per seed; group commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keel_storage::{
    Entry, Error, GroupCommitOptions, GroupCommitter, SimFaults, SimIo, Storage, StorageOptions,
    Wal, WalOptions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIR: &str = "/n1";

fn options() -> StorageOptions {
    StorageOptions {
        wal: WalOptions {
            segment_capacity_bytes: 4096,
            pending_bytes_max: 1 << 20,
            repair: false,
        },
        repair: false,
    }
}

/// Seeds to run; `KEEL_STORAGE_SEEDS` raises it for long campaigns.
fn seeds(default: u64) -> u64 {
    std::env::var("KEEL_STORAGE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn payload(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let len = rng.gen_range(0..600);
    (0..len).map(|_| rng.gen()).collect()
}

/// Random appends/syncs/crashes; after every crash every synced entry is back, byte for byte.
fn crash_campaign(seed: u64, faults: SimFaults) -> u64 {
    let io = SimIo::with_faults(seed, faults);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    let mut synced: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut crashes = 0;
    for _ in 0..300 {
        match rng.gen_range(0..10) {
            0..=5 => {
                let index = st.wal.last_index() + 1;
                st.wal
                    .append(&[Entry {
                        index,
                        term: 1,
                        payload: payload(&mut rng),
                    }])
                    .unwrap();
            }
            6..=7 => {
                let last = st.wal.sync().unwrap();
                for e in st
                    .wal
                    .entries(st.wal.first_index(), last + 1, usize::MAX)
                    .unwrap()
                {
                    synced.insert(e.index, e);
                }
            }
            8 => {
                let from = rng.gen_range(st.wal.synced_index().max(1)..=st.wal.last_index() + 1);
                st.wal.truncate_suffix(from).unwrap();
                synced.split_off(&from);
            }
            _ => {
                drop(st);
                io.crash();
                crashes += 1;
                let (reopened, recovered) =
                    Storage::open(io.clone(), Path::new(DIR), options()).expect("recovery");
                assert!(!recovered.repaired());
                st = reopened;
                let last_synced = synced.keys().next_back().copied().unwrap_or(0);
                assert!(
                    st.wal.last_index() >= last_synced,
                    "seed {seed}: lost synced entries"
                );
                for (index, entry) in &synced {
                    assert_eq!(
                        st.wal.entry(*index).unwrap().as_ref(),
                        Some(entry),
                        "seed {seed}: entry {index}"
                    );
                }
                // Unsynced survivors become the new baseline.
                for e in st
                    .wal
                    .entries(st.wal.first_index(), st.wal.last_index() + 1, usize::MAX)
                    .unwrap()
                {
                    synced.insert(e.index, e);
                }
            }
        }
    }
    crashes
}

#[test]
fn crashes_never_lose_synced_entries() {
    let mut crashes = 0;
    for seed in 0..seeds(150) {
        crashes += crash_campaign(seed, SimFaults::default());
        let harsh = SimFaults {
            crash_keep_unsynced_ppm: 900_000,
            crash_torn_write_ppm: 700_000,
            crash_unsynced_bit_flip_ppm: 500_000,
            ..SimFaults::default()
        };
        crashes += crash_campaign(seed, harsh);
    }
    assert!(crashes > 100, "campaign too weak: {crashes} crashes");
}

#[test]
fn damage_to_synced_data_is_refused_never_silently_truncated() {
    let mut refused = 0;
    for seed in 0..seeds(400) {
        let io = SimIo::new(seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        let mut all = Vec::new();
        for _ in 0..rng.gen_range(5..30) {
            for _ in 0..rng.gen_range(1..6) {
                let e = Entry {
                    index: st.wal.last_index() + 1,
                    term: 2,
                    payload: payload(&mut rng),
                };
                st.wal.append(std::slice::from_ref(&e)).unwrap();
                all.push(e);
            }
            st.wal.sync().unwrap();
        }
        let segments = st.wal.segment_ids();
        drop(st);
        if segments.len() < 2 {
            continue;
        }
        // Damage a written byte of a sealed segment all of whose batches were followed by a
        // later batch (damage inside the very last batch is indistinguishable from a torn write;
        // docs/storage.md "What recovery cannot tell apart").
        let victim = segments[rng.gen_range(0..segments.len() - 1)];
        let path = Path::new(DIR)
            .join("wal")
            .join(format!("{victim:016x}.wal"));
        let scan = keel_storage::scan(&io, &Path::new(DIR).join("wal")).unwrap();
        let summary = scan
            .segments
            .iter()
            .find(|s| s.segment_id == victim)
            .unwrap();
        if summary.batch_id_max == Some(scan.max_batch_id) {
            continue;
        }
        let end = summary.end_offset;
        let offset = rng.gen_range(0..end);
        io.flip_bit(&path, offset, rng.gen_range(0..8)).unwrap();
        match Storage::open(io.clone(), Path::new(DIR), options()) {
            Err(Error::Corrupt {
                path: p, reason, ..
            }) => {
                assert_eq!(p, path, "seed {seed}: {reason}");
                refused += 1;
            }
            Err(e) => panic!("seed {seed}: unexpected error {e}"),
            Ok((st, _)) => {
                // Only alignment padding is not checksummed: then nothing may differ.
                assert_eq!(
                    st.wal.last_index(),
                    all.len() as u64,
                    "seed {seed}: silently truncated"
                );
                for e in &all {
                    assert_eq!(
                        st.wal.entry(e.index).unwrap().as_ref(),
                        Some(e),
                        "seed {seed}: corrupted entry served"
                    );
                }
            }
        }
    }
    assert!(refused > 50, "too few refusals: {refused}");
}

#[test]
fn sim_io_is_deterministic_per_seed() {
    let run = |seed: u64| {
        let faults = SimFaults {
            crash_unsynced_bit_flip_ppm: 300_000,
            ..SimFaults::default()
        };
        let io = SimIo::with_faults(seed, faults);
        crash_campaign_with(&io, seed);
        let wal = io.contents(&Path::new(DIR).join("wal").join(format!("{:016x}.wal", 1)));
        (wal, io.stats(), io.take_latency_us())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).2, run(8).2);
}

fn crash_campaign_with(io: &SimIo, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut wal, _) = Wal::open(io.clone(), Path::new("/n1/wal"), options().wal).unwrap();
    for round in 0..50 {
        let index = wal.last_index() + 1;
        wal.append(&[Entry {
            index,
            term: 1,
            payload: payload(&mut rng),
        }])
        .unwrap();
        if round % 3 == 0 {
            wal.sync().unwrap();
        }
        if round % 17 == 16 {
            drop(wal);
            io.crash();
            wal = Wal::open(io.clone(), Path::new("/n1/wal"), options().wal)
                .unwrap()
                .0;
        }
    }
}

#[test]
fn sync_failure_is_fatal_and_disk_errors_never_corrupt() {
    for seed in 0..seeds(40) {
        let io = SimIo::new(seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        io.set_faults(SimFaults {
            write_eio_ppm: 20_000,
            sync_eio_ppm: 20_000,
            ..SimFaults::default()
        });
        let mut acked = 0;
        for _ in 0..200 {
            let index = st.wal.last_index() + 1;
            if st
                .wal
                .append(&[Entry {
                    index,
                    term: 1,
                    payload: vec![index as u8; 50],
                }])
                .is_err()
            {
                break;
            }
            match st.wal.sync() {
                Ok(i) => acked = i,
                Err(e) => {
                    assert!(e.is_fatal(), "seed {seed}: {e}");
                    assert!(matches!(st.wal.sync(), Err(Error::Poisoned(_))));
                    break;
                }
            }
        }
        drop(st);
        io.set_faults(SimFaults::default());
        io.crash();
        let _ = rng.gen::<u8>();
        let (st, _) =
            Storage::open(io.clone(), Path::new(DIR), options()).expect("recovers after EIO");
        assert!(
            st.wal.last_index() >= acked,
            "seed {seed}: acknowledged entries lost"
        );
        for i in 1..=st.wal.last_index() {
            assert_eq!(st.wal.entry(i).unwrap().unwrap().payload, vec![i as u8; 50]);
        }
    }
}

#[test]
fn group_commit_shares_syncs_and_acknowledges_only_durable_entries() {
    let io = SimIo::new(99);
    let (st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    let committer = Arc::new(
        GroupCommitter::start(
            st.wal,
            GroupCommitOptions {
                batch_entries_max: 64,
                ..GroupCommitOptions::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = committer.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let index = c.propose_and_wait(1, vec![t as u8, i as u8]).unwrap();
                        assert!(c.synced_index() >= index);
                        index
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut indices: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (1..=800).collect::<Vec<u64>>());
    let syncs = io.stats().syncs;
    assert!(syncs < 800, "no sharing: {syncs} syncs for 800 entries");
    let committer = Arc::try_unwrap(committer).ok().unwrap();
    let t = committer.truncate_suffix(701).unwrap();
    assert_eq!(committer.wait(t).unwrap(), 700);
    let wal = committer.shutdown().unwrap();
    assert_eq!(wal.last_index(), 700);
    drop(wal);
    drop(st.hard_state);
    drop(st.snapshots);
    io.crash();
    let (st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert_eq!(st.wal.last_index(), 700);
}

#[test]
fn snapshot_install_streams_in_chunks_and_is_verified() {
    let io = SimIo::new(5);
    let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let crc = crc32c::crc32c(&data);
    // A bad install (wrong checksum) is rejected and leaves nothing behind.
    let mut w = st
        .snapshots
        .begin(50, 3, b"meta", data.len() as u64)
        .unwrap();
    for (i, chunk) in data.chunks(8192).enumerate() {
        w.write((i * 8192) as u64, chunk).unwrap();
    }
    assert!(matches!(
        st.snapshots.finish(w, Some(crc ^ 1)),
        Err(Error::Corrupt { .. })
    ));
    assert!(st.snapshots.latest().is_none());
    // Out-of-order chunk is refused.
    let mut w = st
        .snapshots
        .begin(50, 3, b"meta", data.len() as u64)
        .unwrap();
    assert!(w.write(8192, &data[..10]).is_err());
    for (i, chunk) in data.chunks(8192).enumerate() {
        w.write((i * 8192) as u64, chunk).unwrap();
    }
    let meta = st.snapshots.finish(w, Some(crc)).unwrap();
    assert_eq!((meta.index, meta.term, meta.data_crc32c), (50, 3, crc));
    let mut reader = st.snapshots.reader().unwrap().unwrap();
    let mut back = Vec::new();
    while let Some((offset, chunk)) = reader.next_chunk(10_000).unwrap() {
        assert_eq!(offset as usize, back.len());
        back.extend_from_slice(&chunk);
    }
    assert_eq!(back, data);
    // A newer snapshot replaces the old one only once durable; the log restarts after it.
    st.snapshots.save(80, 3, b"m2", b"small").unwrap();
    drop(st);
    io.crash();
    let (st, recovered) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
    assert_eq!(recovered.snapshot.unwrap().index, 80);
    assert_eq!(st.wal.last_index(), 80);
    assert_eq!(st.wal.first_index(), 81);
    let names = keel_storage::Io::list_dir(&io, &Path::new(DIR).join("snap")).unwrap();
    assert_eq!(names, vec![format!("{:016x}-{:016x}.snap", 80, 3)]);
}

#[test]
fn misdirected_writes_are_refused_or_harmless_never_served() {
    let (mut refused, mut opened) = (0, 0);
    for seed in 0..seeds(150) {
        let io = SimIo::new(seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut st, _) = Storage::open(io.clone(), Path::new(DIR), options()).unwrap();
        io.set_faults(SimFaults {
            misdirected_write_ppm: 30_000,
            ..SimFaults::default()
        });
        let mut written: BTreeMap<u64, Entry> = BTreeMap::new();
        for _ in 0..40 {
            for _ in 0..rng.gen_range(1..4) {
                let e = Entry {
                    index: st.wal.last_index() + 1,
                    term: 3,
                    payload: payload(&mut rng),
                };
                st.wal.append(std::slice::from_ref(&e)).unwrap();
                written.insert(e.index, e);
            }
            st.wal.sync().unwrap();
        }
        drop(st);
        io.set_faults(SimFaults::default());
        io.crash();
        match Storage::open(io.clone(), Path::new(DIR), options()) {
            Err(Error::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("seed {seed}: unexpected {e}"),
            Ok((st, _)) => {
                opened += 1;
                for i in st.wal.first_index()..=st.wal.last_index() {
                    // A read either returns exactly what was written or reports damage.
                    match st.wal.entry(i) {
                        Ok(Some(e)) => assert_eq!(
                            Some(&e),
                            written.get(&i),
                            "seed {seed}: corrupted entry {i} served"
                        ),
                        Ok(None) => panic!("seed {seed}: hole at {i}"),
                        Err(Error::Corrupt { .. }) => {}
                        Err(e) => panic!("seed {seed}: {e}"),
                    }
                }
            }
        }
    }
    assert!(
        refused > 0 && opened > 0,
        "refused {refused} opened {opened}"
    );
}
