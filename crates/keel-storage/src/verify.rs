//! Read-only verification of a data directory (`keel storage verify` / `dump`): the same checks
//! as recovery, without cutting, rewriting or locking anything.

use std::path::Path;

use crate::error::{Error, Result};
use crate::hard_state::{decode_slot, HardState, HARD_STATE_FILE, SLOT_BYTES};
use crate::io::{Io, IoFile};
use crate::scan::{scan, ProblemKind, Scan};
use crate::snapshot::{verify_file, SnapshotMeta};
use crate::storage::{REPAIRING_FILE, SNAP_DIR, WAL_DIR};

/// At most this much of the `REPAIRING` marker is read (the marker itself is capped when
/// written).
const REPAIRING_READ_BYTES_MAX: u64 = 64 << 10;

#[derive(Debug)]
pub struct Verification {
    pub wal: Scan,
    pub hard_state: Option<HardState>,
    pub snapshots: Vec<(String, std::result::Result<SnapshotMeta, String>)>,
    /// Damage: recovery would refuse to start. Each line names file and offset.
    pub damage: Vec<String>,
    /// Not damage: a torn tail the next start would cut, a torn hard-state slot, leftovers.
    pub notes: Vec<String>,
    /// The `REPAIRING` marker's text (what the repairing start discarded), if present: the node
    /// was started with `--repair` and has not caught up from a leader yet, so it starts in
    /// repair mode again (no votes, no counted acknowledgements) whatever its flags say.
    pub repairing: Option<String>,
    /// The directory's data format (`FORMAT`); None: no file yet (written at the next start,
    /// as the oldest format).
    pub data_format: Option<u32>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

pub fn verify<I: Io>(io: &I, dir: &Path) -> Result<Verification> {
    if !io.exists(dir).map_err(|e| Error::io("stat", dir, e))? {
        return Err(Error::io(
            "open",
            dir,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let mut damage = Vec::new();
    let mut notes = Vec::new();
    // A newer release's directory is refused as a whole (NewerFormat), like recovery does:
    // its files are not this binary's to judge.
    let data_format = match crate::format::read(io, dir) {
        Ok(format) => format,
        Err(Error::Corrupt {
            path,
            offset,
            reason,
        }) => {
            damage.push(format!("{} offset {offset}: {reason}", path.display()));
            None
        }
        Err(e) => return Err(e),
    };
    if data_format.is_none() && damage.is_empty() {
        notes.push(format!(
            "no {} file: data format {} is assumed and written at the next start",
            crate::format::FORMAT_FILE,
            crate::format::DATA_FORMAT_MIN
        ));
    }
    let wal_dir = dir.join(WAL_DIR);
    let wal = if io
        .exists(&wal_dir)
        .map_err(|e| Error::io("stat", &wal_dir, e))?
    {
        scan(io, &wal_dir)?
    } else {
        notes.push(format!("{} does not exist (empty log)", wal_dir.display()));
        scan_empty()
    };
    if let Some(problem) = &wal.problem {
        let line = format!(
            "{} offset {}: {}",
            problem.path.display(),
            problem.offset,
            problem.reason
        );
        match problem.kind {
            ProblemKind::Damage => damage.push(line),
            ProblemKind::TornTail => notes.push(format!("torn tail (cut at next start): {line}")),
        }
    }
    let hs_path = dir.join(HARD_STATE_FILE);
    let mut hard_state = None;
    if io
        .exists(&hs_path)
        .map_err(|e| Error::io("stat", &hs_path, e))?
    {
        let file = io
            .open(&hs_path)
            .map_err(|e| Error::io("open", &hs_path, e))?;
        let len = file
            .len_bytes()
            .map_err(|e| Error::io("stat", &hs_path, e))?;
        let mut bytes = vec![0u8; 2 * SLOT_BYTES];
        if len >= bytes.len() as u64 {
            file.read_exact_at(&mut bytes, 0)
                .map_err(|e| Error::io("read", &hs_path, e))?;
        }
        let a = decode_slot(&bytes[..SLOT_BYTES]);
        let b = decode_slot(&bytes[SLOT_BYTES..]);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                if a.1 != b.1 {
                    notes.push(format!(
                        "{}: slots differ (interrupted save; repaired at next start)",
                        hs_path.display()
                    ));
                }
                hard_state = Some(if a.1 >= b.1 { a.0 } else { b.0 });
            }
            (Ok((s, _)), Err(r)) | (Err(r), Ok((s, _))) => {
                notes.push(format!(
                    "{}: one slot invalid ({r}); the other is used",
                    hs_path.display()
                ));
                hard_state = Some(s);
            }
            (Err(ra), Err(rb)) => damage.push(format!(
                "{} offset 0: both hard-state slots are invalid (slot A: {ra}; slot B: {rb})",
                hs_path.display()
            )),
        }
    } else {
        notes.push(format!(
            "{} does not exist (fresh directory)",
            hs_path.display()
        ));
    }
    let snap_dir = dir.join(SNAP_DIR);
    let mut snapshots = Vec::new();
    if io
        .exists(&snap_dir)
        .map_err(|e| Error::io("stat", &snap_dir, e))?
    {
        for name in io
            .list_dir(&snap_dir)
            .map_err(|e| Error::io("list", &snap_dir, e))?
        {
            if name.ends_with(".tmp") {
                notes.push(format!(
                    "{}: unfinished snapshot (removed at next start)",
                    snap_dir.join(&name).display()
                ));
                continue;
            }
            if !name.ends_with(".snap") {
                continue;
            }
            let result = verify_file(io, &snap_dir.join(&name)).map_err(|e| e.to_string());
            snapshots.push((name, result));
        }
    }
    if let Some((_, Err(e))) = snapshots.last() {
        damage.push(e.clone());
    }
    let snapshot_index = snapshots
        .iter()
        .rev()
        .find_map(|(_, r)| r.as_ref().ok())
        .map_or(0, |m| m.index);
    if wal.last_index() >= wal.first_index() && wal.first_index() > snapshot_index + 1 {
        damage.push(format!(
            "{}: the log starts at index {} but the snapshot covers only up to {snapshot_index} (gap)",
            wal_dir.display(),
            wal.first_index()
        ));
    }
    if let Some(hs) = &hard_state {
        let end = wal.last_index().max(snapshot_index);
        if hs.commit > end && damage.is_empty() {
            damage.push(format!(
                "{} offset 0: hard state commit index {} is beyond the log end {end}",
                hs_path.display(),
                hs.commit
            ));
        }
    }
    let repairing = read_marker(io, &dir.join(REPAIRING_FILE))?;
    Ok(Verification {
        wal,
        hard_state,
        snapshots,
        damage,
        notes,
        repairing,
        data_format,
    })
}

fn read_marker<I: Io>(io: &I, path: &Path) -> Result<Option<String>> {
    if !io.exists(path).map_err(|e| Error::io("stat", path, e))? {
        return Ok(None);
    }
    let file = io.open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file.len_bytes().map_err(|e| Error::io("stat", path, e))?;
    let mut bytes = vec![0u8; len.min(REPAIRING_READ_BYTES_MAX) as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read", path, e))?;
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    assert!(text.len() <= 4 * REPAIRING_READ_BYTES_MAX as usize);
    Ok(Some(text))
}

fn scan_empty() -> Scan {
    Scan {
        segments: Vec::new(),
        index: crate::index::LogIndex::new(1),
        max_batch_id: 0,
        problem: None,
        last_record: None,
    }
}
