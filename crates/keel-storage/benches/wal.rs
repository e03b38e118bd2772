//! WAL benchmarks on the real disk (temporary directories under $KEEL_BENCH_DIR or /tmp,
//! removed afterwards).
//!
//! - `group_commit/P/B`: P proposer threads, B-byte entries, each proposer waits for durability
//!   of its entry before proposing the next; one fdatasync per batch (GroupCommitter).
//! - `fsync_per_entry/P/B`: the same proposers, but every entry gets its own fdatasync.
//! - `append_cpu/B`: single thread, batches of 1000 entries per fdatasync (CPU per entry).
//! - recovery of a 1 GiB log: measured once (not a criterion loop), printed at the end.
//!
//! Run: `cargo bench -p keel-storage --bench wal` (about 3 minutes).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use keel_storage::{
    GroupCommitOptions, GroupCommitter, RealIo, Storage, StorageOptions, Wal, WalOptions,
};

fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var("KEEL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("keel-storage-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// User+system CPU seconds of this process (from /proc/self/stat, 10 ms resolution).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time of the calling thread in ns (user + system, /proc/thread-self/schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0)
}

const ENTRIES_PER_PROPOSER: usize = 40;

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for &bytes in &[100usize, 4096] {
        for &proposers in &[1usize, 16, 64] {
            let dir = bench_dir(&format!("gc-{proposers}-{bytes}"));
            let (st, _) = Storage::open(RealIo, &dir, StorageOptions::default()).unwrap();
            let committer =
                Arc::new(GroupCommitter::start(st.wal, GroupCommitOptions::default()).unwrap());
            let (mut entries, mut cpu, mut wall) = (0u64, 0.0f64, Duration::ZERO);
            group.throughput(Throughput::Elements(
                (proposers * ENTRIES_PER_PROPOSER) as u64,
            ));
            group.bench_function(BenchmarkId::new(format!("{proposers}"), bytes), |b| {
                b.iter_custom(|iters| {
                    let cpu_start = cpu_seconds();
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::thread::scope(|s| {
                            for _ in 0..proposers {
                                let c = committer.clone();
                                s.spawn(move || {
                                    for _ in 0..ENTRIES_PER_PROPOSER {
                                        c.propose_and_wait(1, vec![7u8; bytes]).unwrap();
                                    }
                                });
                            }
                        });
                    }
                    entries += iters * (proposers * ENTRIES_PER_PROPOSER) as u64;
                    let elapsed = start.elapsed();
                    wall += elapsed;
                    cpu += cpu_seconds() - cpu_start;
                    elapsed
                })
            });
            let stats = committer.stats();
            eprintln!(
                "group_commit proposers={proposers} bytes={bytes}: {:.0} entries/s, {:.1} entries/fdatasync, process CPU {:.1} us/entry (all threads, incl. thread wake-ups)",
                entries as f64 / wall.as_secs_f64(),
                stats.requests as f64 / stats.batches.max(1) as f64,
                cpu * 1e6 / entries as f64
            );
            drop(committer);
            drop(st.hard_state);
            drop(st.snapshots);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    group.finish();
}

fn fsync_per_entry(c: &mut Criterion) {
    let mut group = c.benchmark_group("fsync_per_entry");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for &bytes in &[100usize, 4096] {
        for &proposers in &[1usize, 16, 64] {
            let dir = bench_dir(&format!("fs-{proposers}-{bytes}"));
            let (st, _) = Storage::open(RealIo, &dir, StorageOptions::default()).unwrap();
            let wal = Arc::new(Mutex::new(st.wal));
            let per = ENTRIES_PER_PROPOSER / 4; // keep it short: each entry costs a full fdatasync
            group.throughput(Throughput::Elements((proposers * per) as u64));
            group.bench_function(BenchmarkId::new(format!("{proposers}"), bytes), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        std::thread::scope(|s| {
                            for _ in 0..proposers {
                                let wal = wal.clone();
                                s.spawn(move || {
                                    for _ in 0..per {
                                        let mut w = wal.lock().unwrap();
                                        let index = w.last_index() + 1;
                                        w.append_one(index, 1, &vec![7u8; bytes]).unwrap();
                                        w.sync().unwrap();
                                    }
                                });
                            }
                        });
                    }
                    start.elapsed()
                })
            });
            drop(wal);
            drop(st.hard_state);
            drop(st.snapshots);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    group.finish();
}

fn append_cpu(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_cpu");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for &bytes in &[100usize, 4096] {
        let dir = bench_dir(&format!("cpu-{bytes}"));
        let (wal, _) = Wal::open(RealIo, &dir, WalOptions::default()).unwrap();
        let mut wal = wal;
        let payload = vec![9u8; bytes];
        group.throughput(Throughput::Elements(1000));
        let (mut cpu_ns, mut entries) = (0u64, 0u64);
        group.bench_function(BenchmarkId::from_parameter(bytes), |b| {
            b.iter_custom(|iters| {
                let cpu_start = thread_cpu_ns();
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..1000 {
                        let index = wal.last_index() + 1;
                        wal.append_one(index, 1, &payload).unwrap();
                    }
                    wal.sync().unwrap();
                }
                cpu_ns += thread_cpu_ns() - cpu_start;
                entries += iters * 1000;
                start.elapsed()
            })
        });
        eprintln!(
            "append_cpu bytes={bytes}: {:.2} us CPU per appended entry (append + encode + CRC + write + fdatasync syscalls, amortized over 1000-entry batches)",
            cpu_ns as f64 / 1e3 / entries as f64
        );
        drop(wal);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// Writes a 1 GiB log (4 KiB entries) and measures one recovery, warm and (if permitted) cold.
fn recovery_1gib() {
    let dir = bench_dir("recovery");
    let payload = vec![5u8; 4096 - 48];
    let target_bytes: u64 = 1 << 30;
    let write_start = Instant::now();
    let entries;
    {
        let (mut wal, _) = Wal::open(RealIo, &dir, WalOptions::default()).unwrap();
        let mut written = 0u64;
        while written < target_bytes {
            for _ in 0..1024 {
                let index = wal.last_index() + 1;
                wal.append_one(index, 1, &payload).unwrap();
            }
            wal.sync().unwrap();
            written += 1024 * 4096;
        }
        entries = wal.last_index();
    }
    eprintln!(
        "recovery: wrote {entries} entries (1 GiB) in {:.2} s",
        write_start.elapsed().as_secs_f64()
    );
    for label in ["warm page cache", "cold (after drop_caches)"] {
        if label.starts_with("cold") && std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
            eprintln!("recovery: cannot drop caches (not root); cold run skipped");
            continue;
        }
        let start = Instant::now();
        let (wal, recovery) = Wal::open(RealIo, &dir, WalOptions::default()).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(wal.last_index(), entries);
        eprintln!(
            "recovery of 1 GiB ({} segments, {entries} entries), {label}: {:.3} s",
            recovery.segments,
            elapsed.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    if std::env::var("KEEL_BENCH_SKIP_CRITERION").is_err() {
        group_commit(&mut c);
        fsync_per_entry(&mut c);
        append_cpu(&mut c);
    }
    recovery_1gib();
    c.final_summary();
}
