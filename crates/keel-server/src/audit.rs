//! Audit evidence for the node loop: critical actions go to `<data-dir>/audit.log`, a
//! hash-chained file (crates/keel-audit, docs/audit.md), and the chain head is anchored in the
//! replicated log so a cut tail is detectable against another node's file.
//!
//! Records derived from the log (election won, membership committed, anchor committed) are
//! built from the entry alone, so every node holds the same ones; entries re-applied after a
//! restart (the log beyond the last snapshot is applied again) are not recorded twice: the
//! highest log index already recorded is read back when the file is opened.
//!
//! An append is a write plus fdatasync on the node loop: audited events are rare by design
//! (never per request). A failed append stops auditing with an error log and a metric, never
//! the node: evidence is important, but not more than availability; the gap is visible to
//! `keel audit verify` as a chain that ends early, and to operators as
//! `keel_audit_failures_total`.

use keel_audit::{read_entries, Anchor, AnchorSchedule, AuditLog, Details, Kind, Record};
use prometheus_client::metrics::counter::Counter;
use std::path::{Path, PathBuf};

/// File name inside the data directory.
pub const AUDIT_FILE: &str = "audit.log";

pub struct Audit {
    log: Option<AuditLog>,
    schedule: AnchorSchedule,
    /// Highest log index a log-derived record covers (re-applied entries are skipped).
    log_index_recorded: u64,
    /// Term of the newest `election_won` recorded.
    election_term_recorded: u64,
    /// `keel_audit_records_total` and `keel_audit_failures_total`: counted where appends
    /// happen, so a skipped (already recorded) entry is not counted.
    records_total: Counter,
    failures_total: Counter,
}

impl Audit {
    /// Opens (or creates) the node's audit file. A damaged file is refused: the caller stops
    /// the node with the error (it names the line), as for damaged storage.
    pub fn open(
        data_dir: &Path,
        node: u64,
        cluster_id: &str,
        anchor_records_max: u64,
        anchor_interval_ms: u64,
        metrics: &crate::metrics::Metrics,
    ) -> anyhow::Result<Audit> {
        let path: PathBuf = data_dir.join(AUDIT_FILE);
        let log = AuditLog::open(&path, node, cluster_id)
            .map_err(|e| anyhow::anyhow!("audit file {}: {e}", path.display()))?;
        let mut log_index_recorded = 0;
        let mut election_term_recorded = 0;
        if log.next_seq() > 0 {
            read_entries(&path, &mut |entry| {
                if let Some(index) = entry.record.index {
                    log_index_recorded = log_index_recorded.max(index);
                }
                if entry.record.kind == Kind::ElectionWon {
                    election_term_recorded =
                        election_term_recorded.max(entry.record.term.unwrap_or(0));
                }
            })
            .map_err(|e| anyhow::anyhow!("audit file {}: {e}", path.display()))?;
        }
        Ok(Audit {
            log: Some(log),
            schedule: AnchorSchedule::new(node, anchor_records_max, anchor_interval_ms),
            log_index_recorded,
            election_term_recorded,
            records_total: metrics.audit_records_total.clone(),
            failures_total: metrics.audit_failures_total.clone(),
        })
    }

    fn append(&mut self, record: Record, now_ms: u64) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        let kind = record.kind;
        match log.append(record) {
            Ok(head) => {
                self.records_total.inc();
                self.schedule.note_append(kind, head, now_ms);
            }
            Err(e) => {
                self.failures_total.inc();
                tracing::error!(%e, kind = kind.as_str(), "audit append failed: auditing stops");
                self.log = None;
            }
        }
    }

    /// A local event (not derived from the log). `mono_ms` drives the anchor schedule.
    pub fn local(&mut self, kind: Kind, wall_ms: u64, mono_ms: u64, details: Details) {
        assert!(
            !matches!(kind, Kind::AnchorCommitted | Kind::MembershipCommitted),
            "log-derived kinds go through from_log"
        );
        self.append(Record::local(kind, wall_ms, details), mono_ms);
    }

    /// An event derived from the committed entry at (term, index); skipped if this index was
    /// already recorded before a restart.
    pub fn from_log(&mut self, kind: Kind, term: u64, index: u64, mono_ms: u64, details: Details) {
        if index <= self.log_index_recorded {
            return;
        }
        if kind == Kind::ElectionWon {
            if term <= self.election_term_recorded {
                return;
            }
            self.election_term_recorded = term;
        }
        self.log_index_recorded = index;
        self.append(Record::from_log(kind, term, index, details), mono_ms);
    }

    /// `AuditAnchored` applied at (term, index): every node records it.
    pub fn anchor_committed(&mut self, term: u64, index: u64, anchor: &Anchor, mono_ms: u64) {
        self.schedule.note_committed(anchor, mono_ms);
        if index <= self.log_index_recorded {
            return;
        }
        self.log_index_recorded = index;
        self.append(Record::anchor_committed(term, index, anchor), mono_ms);
    }

    /// The anchor to propose now, if one is due (the caller proposes it, then calls
    /// `proposed`).
    pub fn due(&self, mono_ms: u64) -> Option<Anchor> {
        let log = self.log.as_ref()?;
        self.schedule.due(log.anchor(), mono_ms)
    }

    pub fn proposed(&mut self, anchor: &Anchor, mono_ms: u64) {
        self.schedule.note_proposed(anchor, mono_ms);
    }
}
