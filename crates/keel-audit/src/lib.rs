//! # keel-audit: hash-chained audit evidence
//!
//! Each node appends its critical actions (elections won, membership changes, snapshots, mode
//! transitions, authz failures, admin requests...) to its own append-only file: one canonical
//! JSON object per line, each carrying `prev` = SHA-256 of the previous line's exact bytes and
//! `hash` = SHA-256 of its own content. [`verify`] detects any modified, removed, inserted or
//! reordered record. A chain cannot reveal that its newest records were cut off, so the server
//! regularly commits the chain head to the replicated log (`keel_kv::Command::AuditAnchor`);
//! every node then records it (`anchor_committed`), and verifying one node's file against the
//! anchors held in another node's file detects a cut tail up to the last anchor. The format,
//! the hash construction and exactly what is and is not detectable: docs/audit.md.
//!
//! Synchronous, std file IO only; the output is a pure function of the records, node id and
//! cluster id given (wall time comes from the caller and is informational).
//!
//! ## For the server
//!
//! ```text
//! AuditLog::open(path: &Path, node: u64, cluster_id: &str) -> Result<AuditLog, AuditError>
//! AuditLog::append(&mut self, record: Record) -> Result<Head, AuditError>   // write + fdatasync
//! AuditLog::head(&self) -> Option<Head>          // Head { seq: u64, hash: [u8; 32] }
//! AuditLog::anchor(&self) -> Option<Anchor>      // Anchor { node, seq, head: [u8; 32] }
//! Record::local(kind: Kind, wall_ms: u64, details: Details) -> Record
//! Record::from_log(kind: Kind, term: u64, index: u64, details: Details) -> Record
//! Record::anchor_committed(term: u64, index: u64, anchor: &Anchor) -> Record
//! Details::new().text(key, &str).uint(key, u64).int(key, i64).hash(key, &[u8; 32])
//! verify(path: &Path, anchors: &[Anchor]) -> Result<Report, AuditError>
//! anchors_from(path: &Path) -> Result<Vec<Anchor>, AuditError>
//! AnchorSchedule::new(node: u64, records_max: u64, interval_ms: u64) -> AnchorSchedule
//! AnchorSchedule::note_append(&mut self, kind: Kind, head: Head, now_ms: u64)
//! AnchorSchedule::due(&self, current: Option<Anchor>, now_ms: u64) -> Option<Anchor>
//! AnchorSchedule::note_proposed(&mut self, anchor: &Anchor, now_ms: u64)
//! AnchorSchedule::note_committed(&mut self, anchor: &Anchor, now_ms: u64)
//! ```
//!
//! 1. At start: `AuditLog::open` (it refuses a damaged file: the node should report that and
//!    keep running without auditing, or refuse to start, by policy), then append
//!    `Record::local(Kind::NodeStarted, now_ms, ...)`.
//! 2. For local events: `append(Record::local(kind, now_ms, details))`.
//! 3. For events derived from a committed entry (membership committed, anchor committed,
//!    election won as seen from the new leader's first entry): build the record from the entry
//!    alone with `Record::from_log(kind, term, index, details)`, so every node holds the same
//!    kind, term, index and details.
//! 4. When [`AnchorSchedule::due`] says so (a counted record waited `interval_ms`, or
//!    `records_max` are unanchored; `anchor_committed` records do not count), propose
//!    `keel_kv::Command::AuditAnchor { node: a.node, seq: a.seq, head: a.head }`. When it
//!    applies, `keel_kv::Response::AuditAnchored { node, seq, head }` comes back on every node;
//!    each appends `Record::anchor_committed(term, index, &Anchor { node, seq, head })` and
//!    calls `note_committed`.
//!
//! ```
//! use keel_audit::{anchors_from, verify, Anchor, AuditLog, Details, Kind, Record};
//!
//! let dir = std::env::temp_dir().join(format!("keel-audit-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let (a_path, b_path) = (dir.join("a.audit"), dir.join("b.audit"));
//! # let _ = std::fs::remove_file(&a_path);
//! # let _ = std::fs::remove_file(&b_path);
//! let mut a = AuditLog::open(&a_path, 1, "cluster-x").unwrap();
//! let mut b = AuditLog::open(&b_path, 2, "cluster-x").unwrap();
//! a.append(Record::local(Kind::NodeStarted, 1_000, Details::new())).unwrap();
//! a.append(Record::local(Kind::AdminRequest, 1_001, Details::new().text("op", "transfer"))).unwrap();
//! b.append(Record::local(Kind::NodeStarted, 1_000, Details::new())).unwrap();
//!
//! // Node 1's head is committed in the log; every node records the anchor.
//! let anchor: Anchor = a.anchor().unwrap();
//! for log in [&mut a, &mut b] {
//!     log.append(Record::anchor_committed(3, 42, &anchor)).unwrap();
//! }
//!
//! // Node 1's file verifies against the anchors node 2 holds.
//! let report = verify(&a_path, &anchors_from(&b_path).unwrap()).unwrap();
//! assert!(report.is_intact());
//! assert_eq!(report.anchors_checked, 1);
//! assert_eq!(report.unanchored_records, 1); // the anchor_committed record itself
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod anchor;
mod error;
mod kind;
mod lines;
mod log;
mod record;
mod schedule;
mod verify;

pub use anchor::{Anchor, DETAIL_ANCHOR_HEAD, DETAIL_ANCHOR_NODE, DETAIL_ANCHOR_SEQ};
pub use error::AuditError;
pub use kind::Kind;
pub use log::AuditLog;
pub use record::{
    genesis_hash, line_hash, parse_hash, Details, Entry, Hash, Head, Record, Value,
    CLUSTER_ID_BYTES_MAX, DETAILS_ENTRIES_MAX, DETAIL_CLUSTER_ID, DETAIL_KEY_BYTES_MAX,
    DETAIL_TEXT_BYTES_MAX, HASH_BYTES, RECORD_LINE_BYTES_MAX,
};
pub use schedule::AnchorSchedule;
pub use verify::{
    anchors_from, read_entries, verify, verify_with, Damage, DamageKind, Report, VerifyOptions,
    LOOKAHEAD_LINES_MAX,
};
