//! Quick probe: entries/s and entries per fdatasync for P proposer threads on the real disk.
//! `cargo run --release -p keel-storage --example group_commit_probe -- 64 100 3`
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_storage::{GroupCommitOptions, GroupCommitter, RealIo, Wal, WalOptions};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (proposers, bytes, seconds) = (
        args.first().copied().unwrap_or(64),
        args.get(1).copied().unwrap_or(100),
        args.get(2).copied().unwrap_or(3),
    );
    let dir = std::env::temp_dir().join(format!("keel-gc-probe-{}", std::process::id()));
    let (wal, _) = Wal::open(RealIo, &dir, WalOptions::default()).unwrap();
    let c = Arc::new(GroupCommitter::start(wal, GroupCommitOptions::default()).unwrap());
    let cpu0 = cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..proposers {
            let c = c.clone();
            s.spawn(move || {
                while Instant::now() < deadline {
                    c.propose_and_wait(1, vec![1u8; bytes as usize]).unwrap();
                }
            });
        }
    });
    let stats = c.stats();
    let cpu = cpu_seconds() - cpu0;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "proposers={proposers} bytes={bytes}: {:.0} entries/s, {:.1} entries/batch, {:.0} batches/s, CPU {:.1} us/entry",
        stats.requests as f64 / secs,
        stats.requests as f64 / stats.batches.max(1) as f64,
        stats.batches as f64 / secs,
        cpu * 1e6 / stats.requests.max(1) as f64
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// User+system CPU seconds of this process, all threads (10 ms resolution).
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
