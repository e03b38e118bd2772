//! `keel storage`: inspect and verify a node's data directory (read-only; never locks, cuts or
//! rewrites anything).
//!
//! - `keel storage verify DIR`: the checks recovery makes. Exit 0 clean (a torn tail that the
//!   next start would cut is reported but is not damage), 1 damaged (each problem printed with
//!   file and offset), 2 usage or the directory cannot be read.
//! - `keel storage dump DIR`: segments (id, index range, records, batches, bytes), hard state
//!   and snapshots. Exit 0, or 2 if the directory cannot be read.

use std::path::PathBuf;

use keel_storage::{verify, RealIo, Verification};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(clap::Subcommand)]
enum StorageCommand {
    /// Check a data directory; exit 0 clean, 1 damaged, 2 usage or unreadable.
    Verify {
        /// The node's data directory (holds wal/, snap/, hardstate).
        dir: PathBuf,
    },
    /// Summarize segments, records, hard state and snapshots.
    Dump {
        /// The node's data directory.
        dir: PathBuf,
    },
}

pub fn run(args: Args) -> i32 {
    match args.command {
        StorageCommand::Verify { dir } => match verify(&RealIo, &dir) {
            Ok(v) => {
                print_verdict(&v);
                if v.is_clean() {
                    0
                } else {
                    1
                }
            }
            Err(e) => {
                eprintln!("keel storage verify: {e}");
                2
            }
        },
        StorageCommand::Dump { dir } => match verify(&RealIo, &dir) {
            Ok(v) => {
                print_dump(&v);
                print_verdict(&v);
                0
            }
            Err(e) => {
                eprintln!("keel storage dump: {e}");
                2
            }
        },
    }
}

fn print_verdict(v: &Verification) {
    if let Some(format) = v.data_format {
        println!("data_format={format}");
    }
    for note in &v.notes {
        println!("note: {note}");
    }
    for damage in &v.damage {
        println!("DAMAGE: {damage}");
    }
    if let Some(text) = &v.repairing {
        println!(
            "REPAIRING: started with --repair and not caught up yet; the next start is in repair \
             mode again (no votes, acknowledgements not counted) until a leader brings it up to date"
        );
        for line in text.lines() {
            println!("  repaired: {line}");
        }
    }
    if v.is_clean() {
        println!(
            "clean: log {}..={} in {} segments",
            v.wal.first_index(),
            v.wal.last_index(),
            v.wal.segments.len()
        );
    } else {
        println!("damaged: {} problem(s); the node will refuse to start (repair mode discards the damaged suffix)", v.damage.len());
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

fn print_dump(v: &Verification) {
    println!("segments: {}", v.wal.segments.len());
    println!(
        "  {:<20} {:>10} {:>10} {:>8} {:>6} {:>10} {:>10} {:>12}",
        "file", "first", "last", "entries", "trunc", "batch_min", "batch_max", "used/bytes"
    );
    for s in &v.wal.segments {
        let name = s.path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        println!(
            "  {:<20} {:>10} {:>10} {:>8} {:>6} {:>10} {:>10} {:>12}",
            name,
            opt(s.first_entry_index),
            opt(s.last_entry_index),
            s.entry_records,
            s.truncate_records,
            opt(s.batch_id_min),
            opt(s.batch_id_max),
            format!("{}/{}", s.end_offset, s.file_bytes)
        );
    }
    println!(
        "log: first index {} last index {} (max batch id {})",
        v.wal.first_index(),
        v.wal.last_index(),
        v.wal.max_batch_id
    );
    match &v.hard_state {
        Some(hs) => println!(
            "hard state: term {} vote {} commit {} extra {} bytes",
            hs.term,
            hs.vote
                .map_or_else(|| "none".to_string(), |x| x.to_string()),
            hs.commit,
            hs.extra.len()
        ),
        None => println!("hard state: none"),
    }
    for (name, result) in &v.snapshots {
        match result {
            Ok(m) => println!(
                "snapshot {name}: index {} term {} metadata {} bytes data {} bytes crc32c {:08x}",
                m.index,
                m.term,
                m.metadata.len(),
                m.data_bytes,
                m.data_crc32c
            ),
            Err(e) => println!("snapshot {name}: INVALID: {e}"),
        }
    }
}
