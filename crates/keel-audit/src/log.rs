//! The writer: one node's append-only audit file.
//!
//! Invariants: the file always holds a verified chain followed by nothing (open checks every
//! line and cuts only a torn final line without a newline); `next_seq` is the number of records;
//! `prev_line_hash` is the hash of the last line (the genesis hash when empty). One writer per
//! file: the caller must not open the same path twice.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::anchor::Anchor;
use crate::error::AuditError;
use crate::record::{
    genesis_hash, line_hash, Entry, Hash, Head, Record, Value, CLUSTER_ID_BYTES_MAX,
    DETAIL_CLUSTER_ID, RECORD_LINE_BYTES_MAX,
};
use crate::verify::{scan, VerifyOptions};

pub struct AuditLog {
    file: File,
    path: PathBuf,
    node: u64,
    cluster_id: String,
    next_seq: u64,
    prev_line_hash: Hash,
    head: Option<Head>,
    /// File length: the end of the last complete line.
    len_bytes: u64,
    /// Bytes of a torn final line that `open` cut.
    torn_bytes_cut: u64,
    /// A write or sync failed: the tail is uncertain, refuse appends until reopened.
    poisoned: bool,
}

impl AuditLog {
    /// Opens (or creates) node `node`'s audit file at `path` in cluster `cluster_id`. Verifies
    /// the whole existing chain and its identity; refuses a damaged file with an error naming
    /// the first bad line. A final line without a newline (a torn append: never acknowledged,
    /// since `append` returns only after the newline is synced) is cut and the cut synced.
    pub fn open(path: &Path, node: u64, cluster_id: &str) -> Result<AuditLog, AuditError> {
        if cluster_id.is_empty() || cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return Err(AuditError::BadIdentity {
                reason: format!("cluster id must be 1 to {CLUSTER_ID_BYTES_MAX} bytes"),
            });
        }
        let io = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| AuditError::Io { path, op, source }
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open for appending"))?;
        if created {
            sync_parent_dir(path).map_err(io("sync the parent directory"))?;
        }
        let options = VerifyOptions {
            node: Some(node),
            cluster_id: Some(cluster_id.to_string()),
        };
        let scanned = scan(path, &options, &[], &mut |_| {})?;
        if let Some(damage) = scanned.report.damage {
            return Err(AuditError::Damaged {
                path: path.to_path_buf(),
                line: damage.line,
                kind: damage.kind,
                detail: damage.detail,
            });
        }
        let torn_bytes_cut = scanned.report.torn_tail_bytes;
        if torn_bytes_cut > 0 {
            file.set_len(scanned.complete_bytes)
                .map_err(io("cut the torn final line"))?;
            file.sync_all().map_err(io("sync the cut"))?;
        }
        file.seek(SeekFrom::Start(scanned.complete_bytes))
            .map_err(io("seek to the end"))?;
        let log = AuditLog {
            file,
            path: path.to_path_buf(),
            node,
            cluster_id: cluster_id.to_string(),
            next_seq: scanned.report.records_verified,
            prev_line_hash: scanned
                .last_line_hash
                .unwrap_or_else(|| genesis_hash(cluster_id, node)),
            head: scanned.report.head,
            len_bytes: scanned.complete_bytes,
            torn_bytes_cut,
            poisoned: false,
        };
        assert!(log.head.map(|h| h.seq + 1) == Some(log.next_seq).filter(|n| *n > 0));
        Ok(log)
    }

    /// Appends `record` as the next line and syncs it (fdatasync) before returning the new
    /// head. Record 0 of a chain gets `details.cluster_id` (the cluster id given to `open`).
    /// Refuses, writing nothing, a record that breaks a limit (`InvalidRecord`); after an IO
    /// failure the log is poisoned and must be reopened.
    pub fn append(&mut self, record: Record) -> Result<Head, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut record = record;
        if self.next_seq == 0 {
            match record.details.get(DETAIL_CLUSTER_ID) {
                None => record
                    .details
                    .insert(DETAIL_CLUSTER_ID, Value::Text(self.cluster_id.clone())),
                Some(Value::Text(c)) if *c == self.cluster_id => {}
                Some(_) => {
                    return Err(AuditError::InvalidRecord {
                        reason: "details.cluster_id of record 0 differs from the log's cluster id"
                            .to_string(),
                    })
                }
            }
        }
        record
            .validate()
            .map_err(|reason| AuditError::InvalidRecord { reason })?;
        let mut entry = Entry {
            seq: self.next_seq,
            node: self.node,
            record,
            prev: self.prev_line_hash,
            hash: [0; 32],
        };
        entry.hash = entry.compute_hash();
        let line = entry.to_line();
        if line.len() > RECORD_LINE_BYTES_MAX {
            return Err(AuditError::InvalidRecord {
                reason: format!(
                    "record line is {} bytes, limit {RECORD_LINE_BYTES_MAX}",
                    line.len()
                ),
            });
        }
        debug_assert!(Entry::parse_line(line.as_bytes()).as_ref() == Ok(&entry));
        let mut bytes = line.into_bytes();
        let new_line_hash = line_hash(&bytes);
        bytes.push(b'\n');
        if let Err(source) = self.write_and_sync(&bytes) {
            self.poisoned = true;
            return Err(AuditError::Io {
                path: self.path.clone(),
                op: "append",
                source,
            });
        }
        self.len_bytes += bytes.len() as u64;
        self.prev_line_hash = new_line_hash;
        let head = Head {
            seq: entry.seq,
            hash: entry.hash,
        };
        self.head = Some(head);
        self.next_seq += 1;
        assert!(self.next_seq == head.seq + 1);
        Ok(head)
    }

    fn write_and_sync(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()
    }

    /// The newest record's (seq, hash); None while the file is empty.
    pub fn head(&self) -> Option<Head> {
        self.head
    }

    /// What to propose as `keel_kv::Command::AuditAnchor { node, seq, head }`; None while empty.
    pub fn anchor(&self) -> Option<Anchor> {
        self.head.map(|head| Anchor {
            node: self.node,
            seq: head.seq,
            head: head.hash,
        })
    }

    /// Records in the file (the seq the next append gets).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Bytes of a torn final line that `open` cut (0 if none).
    pub fn torn_bytes_cut(&self) -> u64 {
        self.torn_bytes_cut
    }
}

/// Makes a newly created file's directory entry durable.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}
