//! Verification: walk a file's chain, name the first damage and its kind, check anchors.
//!
//! Detection is exact: a file passes only if every line is a canonical record whose hash
//! matches, whose seq is its position, whose node is the file's node and whose prev is the hash
//! of the previous line's bytes (the genesis hash for line 1). The damage KIND is a diagnosis
//! of the first failing line made from it and up to `LOOKAHEAD_LINES_MAX` lines after it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::anchor::Anchor;
use crate::error::AuditError;
use crate::lines::LineReader;
use crate::record::{
    genesis_hash, line_hash, Entry, Hash, Head, CLUSTER_ID_BYTES_MAX, DETAIL_CLUSTER_ID,
};

/// Lines read past the first bad line to tell its kind (removed, reordered, inserted...).
pub const LOOKAHEAD_LINES_MAX: usize = 1024;

/// How the chain is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
/// Serialized as `as_str()` (kebab-case).
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// A line's bytes changed (it no longer parses, is not canonical, or its hash does not match
    /// its content), or a record was rewritten with a recomputed hash (the next line's prev no
    /// longer matches it).
    Modified,
    /// One or more records are missing before this line (seq jumps forward).
    Removed,
    /// This line is not part of the chain: the chain continues on the next line, or it repeats
    /// an earlier seq.
    Inserted,
    /// Genuine records are out of order.
    Reordered,
    /// The chain is intact but ends before a seq that an anchor says existed: its tail was cut.
    TruncatedBeforeAnchor,
    /// The chain is internally consistent but the record at an anchored seq has another hash:
    /// history was rewritten from that record on (every hash recomputed).
    AnchorMismatch,
}

impl DamageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Modified => "modified",
            DamageKind::Removed => "removed",
            DamageKind::Inserted => "inserted",
            DamageKind::Reordered => "reordered",
            DamageKind::TruncatedBeforeAnchor => "truncated-before-anchor",
            DamageKind::AnchorMismatch => "anchor-mismatch",
        }
    }
}

/// The first damage found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// 1-based line number of the first bad line (for a cut tail: the first missing line).
    pub line: u64,
    /// The seq that line should hold.
    pub seq: u64,
    pub kind: DamageKind,
    pub detail: String,
}

/// What was expected of the file, when known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The node whose file this is. Without it, line 1 decides (and anchors cannot be checked
    /// against an empty file).
    pub node: Option<u64>,
    /// The cluster id. Without it, line 1's `details.cluster_id` decides.
    pub cluster_id: Option<String>,
}

/// The outcome of `verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub path: String,
    /// The file's node (from the options or line 1).
    pub node: Option<u64>,
    pub cluster_id: Option<String>,
    /// Complete (newline-terminated) lines in the file.
    pub lines: u64,
    /// Records verified in order before the first damage (all of them if intact).
    pub records_verified: u64,
    /// The last verified record: the chain head if intact.
    pub head: Option<Head>,
    /// Bytes of a final line without a newline (a torn append that `open` would cut).
    pub torn_tail_bytes: u64,
    pub damage: Option<Damage>,
    /// Anchors for this node that were checked.
    pub anchors_checked: u64,
    /// Anchors given for other nodes (or for an unknown node: empty file, no `node` option).
    pub anchors_ignored: u64,
    /// The highest anchored seq found in the file with the anchored hash.
    pub anchored_through_seq: Option<u64>,
    /// Records after the last anchored one: a cut of these alone would not be detected.
    pub unanchored_records: u64,
}

impl Report {
    /// No damage: every record chains, and no anchor contradicts the file.
    pub fn is_intact(&self) -> bool {
        self.damage.is_none()
    }

    /// Intact and every record is covered by an anchor (no undetectable tail).
    pub fn is_fully_anchored(&self) -> bool {
        self.is_intact() && self.anchors_checked > 0 && self.unanchored_records == 0
    }
}

/// Verifies the chain of the audit file at `path`, and checks it against `anchors` (usually
/// `anchors_from` other nodes' files; anchors for other nodes are ignored). Err only when the
/// file cannot be read; damage is reported in the `Report`.
pub fn verify(path: &Path, anchors: &[Anchor]) -> Result<Report, AuditError> {
    verify_with(path, &VerifyOptions::default(), anchors)
}

/// `verify` with the node and cluster the file must belong to.
pub fn verify_with(
    path: &Path,
    options: &VerifyOptions,
    anchors: &[Anchor],
) -> Result<Report, AuditError> {
    Ok(scan(path, options, anchors, &mut |_| {})?.report)
}

/// The anchors held in the `anchor_committed` records of the audit file at `path` (usually
/// another node's: log-derived records are on every node). Refuses a damaged file: anchors from
/// a broken chain prove nothing.
pub fn anchors_from(path: &Path) -> Result<Vec<Anchor>, AuditError> {
    let mut anchors = Vec::new();
    let scanned = scan(path, &VerifyOptions::default(), &[], &mut |entry| {
        if let Some(anchor) = Anchor::from_record(&entry.record) {
            anchors.push(anchor);
        }
    })?;
    if let Some(damage) = scanned.report.damage {
        return Err(AuditError::Damaged {
            path: path.to_path_buf(),
            line: damage.line,
            kind: damage.kind,
            detail: damage.detail,
        });
    }
    Ok(anchors)
}

/// Every verified record, in order, with the report (for `keel audit show`).
pub fn read_entries(path: &Path, on_entry: &mut dyn FnMut(&Entry)) -> Result<Report, AuditError> {
    Ok(scan(path, &VerifyOptions::default(), &[], on_entry)?.report)
}

/// A scan's report plus what `AuditLog::open` needs to continue the chain.
pub(crate) struct Scan {
    pub report: Report,
    /// Bytes of the file up to and including the last complete line.
    pub complete_bytes: u64,
    /// Hash of the last line (the next record's prev), if any.
    pub last_line_hash: Option<Hash>,
}

/// A complete line: its parse (with the reason it failed) and its bytes' hash.
struct LineInfo {
    parsed: Result<Entry, String>,
    line_hash: Hash,
}

/// What the chain expects of its next line.
struct Chain {
    node: Option<u64>,
    cluster_id: Option<String>,
    /// Hash of the previous line; None before line 1.
    prev_line_hash: Option<Hash>,
    next_seq: u64,
}

impl Chain {
    /// Why `info` cannot be the next line, or Ok with the (node, cluster) it establishes.
    fn fits(&self, info: &LineInfo) -> Result<(), String> {
        let entry = info.parsed.as_ref().map_err(|reason| reason.clone())?;
        if let Some(node) = self.node {
            if entry.node != node {
                return Err(format!(
                    "record of node {} in node {node}'s file",
                    entry.node
                ));
            }
        }
        if entry.seq != self.next_seq {
            return Err(format!(
                "seq {} where {} was expected",
                entry.seq, self.next_seq
            ));
        }
        match self.prev_line_hash {
            Some(prev) if entry.prev != prev => {
                Err("prev is not the hash of the previous line".to_string())
            }
            Some(_) => Ok(()),
            None => {
                let cluster = entry
                    .record
                    .details
                    .get_text(DETAIL_CLUSTER_ID)
                    .ok_or("record 0 does not name its cluster (details.cluster_id)")?;
                if cluster.len() > CLUSTER_ID_BYTES_MAX {
                    return Err("record 0's cluster id is too long".to_string());
                }
                if let Some(expected) = &self.cluster_id {
                    if cluster != expected {
                        return Err(format!(
                            "record 0 is for cluster {cluster:?}, expected {expected:?}"
                        ));
                    }
                }
                if entry.prev != genesis_hash(cluster, entry.node) {
                    return Err(
                        "record 0's prev is not the genesis hash of its cluster and node"
                            .to_string(),
                    );
                }
                Ok(())
            }
        }
    }

    fn advance(&mut self, info: &LineInfo) {
        let entry = info
            .parsed
            .as_ref()
            .expect("advance only past a fitting line");
        assert!(entry.seq == self.next_seq);
        if self.prev_line_hash.is_none() {
            self.node = Some(entry.node);
            let cluster = entry.record.details.get_text(DETAIL_CLUSTER_ID);
            self.cluster_id = cluster.map(str::to_string);
        }
        assert!(self.node == Some(entry.node));
        self.prev_line_hash = Some(info.line_hash);
        self.next_seq += 1;
    }
}

fn line_info(bytes: &[u8], too_long: bool) -> LineInfo {
    let parsed = if too_long {
        Err(format!(
            "line is longer than {} bytes",
            crate::record::RECORD_LINE_BYTES_MAX
        ))
    } else {
        Entry::parse_line(bytes)
    };
    LineInfo {
        parsed,
        line_hash: line_hash(bytes),
    }
}

pub(crate) fn scan(
    path: &Path,
    options: &VerifyOptions,
    anchors: &[Anchor],
    on_entry: &mut dyn FnMut(&Entry),
) -> Result<Scan, AuditError> {
    let mut by_place: BTreeMap<(u64, u64), Vec<Hash>> = BTreeMap::new();
    for anchor in anchors {
        by_place
            .entry((anchor.node, anchor.seq))
            .or_default()
            .push(anchor.head);
    }
    let mut chain = Chain {
        node: options.node,
        cluster_id: options.cluster_id.clone(),
        prev_line_hash: None,
        next_seq: 0,
    };
    let mut reader = LineReader::open(path)?;
    let mut report = Report {
        path: path.display().to_string(),
        node: options.node,
        cluster_id: options.cluster_id.clone(),
        lines: 0,
        records_verified: 0,
        head: None,
        torn_tail_bytes: 0,
        damage: None,
        anchors_checked: 0,
        anchors_ignored: 0,
        anchored_through_seq: None,
        unanchored_records: 0,
    };
    let mut complete_bytes = 0u64;
    let mut pending: Vec<LineInfo> = Vec::new();
    while let Some(raw) = reader.next_line()? {
        if !raw.terminated {
            report.torn_tail_bytes = raw.file_bytes;
            break;
        }
        report.lines += 1;
        complete_bytes = raw.offset + raw.file_bytes;
        if report.damage.is_some() {
            continue;
        }
        let info = line_info(&raw.bytes, raw.too_long);
        if !pending.is_empty() {
            pending.push(info);
            if pending.len() > LOOKAHEAD_LINES_MAX {
                report.damage = Some(classify(&chain, &pending));
            }
            continue;
        }
        if chain.fits(&info).is_err() {
            pending.push(info);
            continue;
        }
        let entry = info.parsed.as_ref().expect("fits implies parsed");
        if let Some(heads) = by_place.get(&(entry.node, entry.seq)) {
            if let Some(other) = heads.iter().find(|h| **h != entry.hash) {
                report.damage = Some(Damage {
                    line: chain.next_seq + 1,
                    seq: entry.seq,
                    kind: DamageKind::AnchorMismatch,
                    detail: format!(
                        "an anchor says record {} has hash {}, the file's has {}: the chain was rewritten from here on",
                        entry.seq,
                        hex::encode(other),
                        hex::encode(entry.hash)
                    ),
                });
                continue;
            }
        }
        on_entry(entry);
        report.head = Some(Head {
            seq: entry.seq,
            hash: entry.hash,
        });
        chain.advance(&info);
        report.records_verified += 1;
    }
    if report.damage.is_none() && !pending.is_empty() {
        report.damage = Some(classify(&chain, &pending));
    }
    report.node = chain.node;
    report.cluster_id = chain.cluster_id.clone();
    check_anchors(&mut report, &chain, anchors);
    Ok(Scan {
        report,
        complete_bytes,
        last_line_hash: chain.prev_line_hash,
    })
}

/// After the scan: anchors for this node beyond the end of the file mean a cut tail.
fn check_anchors(report: &mut Report, chain: &Chain, anchors: &[Anchor]) {
    let Some(node) = chain.node else {
        report.anchors_ignored = anchors.len() as u64;
        return;
    };
    let records = report.records_verified;
    let mut beyond: Option<&Anchor> = None;
    for anchor in anchors {
        if anchor.node != node {
            report.anchors_ignored += 1;
            continue;
        }
        report.anchors_checked += 1;
        if anchor.seq < records {
            // Found in the file with the anchored hash (a mismatch stopped the scan earlier).
            report.anchored_through_seq = report.anchored_through_seq.max(Some(anchor.seq));
        } else if beyond.is_none_or(|b| anchor.seq > b.seq) {
            beyond = Some(anchor);
        }
    }
    if report.damage.is_some() {
        return;
    }
    report.unanchored_records = match report.anchored_through_seq {
        Some(seq) => records - seq - 1,
        None => records,
    };
    if let Some(anchor) = beyond {
        report.damage = Some(Damage {
            line: records + 1,
            seq: records,
            kind: DamageKind::TruncatedBeforeAnchor,
            detail: format!(
                "an anchor says node {node} had record {} (hash {}), but the file ends after {records} record(s): at least {} record(s) were cut",
                anchor.seq,
                hex::encode(anchor.head),
                anchor.seq + 1 - records
            ),
        });
    }
}

/// Names the first damage. `pending[0]` is the first line that does not fit the chain, the rest
/// are the lines after it (at most `LOOKAHEAD_LINES_MAX`).
fn classify(chain: &Chain, pending: &[LineInfo]) -> Damage {
    assert!(!pending.is_empty());
    let position = chain.next_seq;
    let line = position + 1;
    let first = &pending[0];
    let after = &pending[1..];
    let reason = chain
        .fits(first)
        .expect_err("the first pending line does not fit");
    let continues_after = after.first().is_some_and(|next| chain.fits(next).is_ok());
    if continues_after {
        // Without this line the chain would continue: it is extra, or a genuine record moved up.
        let moved_up = first.parsed.as_ref().is_ok_and(|entry| {
            after.iter().any(|later| later.line_hash == entry.prev)
                && Some(entry.node) == chain.node.or(Some(entry.node))
        });
        return if moved_up {
            Damage {
                line,
                seq: position,
                kind: DamageKind::Reordered,
                detail: format!(
                    "line {line} holds a record that belongs after a later line; seq {position} is on line {}",
                    line + 1
                ),
            }
        } else {
            Damage {
                line,
                seq: position,
                kind: DamageKind::Inserted,
                detail: format!(
                    "line {line} is not part of the chain ({reason}); the chain continues on line {}",
                    line + 1
                ),
            }
        };
    }
    let entry = match &first.parsed {
        Err(reason) => {
            return Damage {
                line,
                seq: position,
                kind: DamageKind::Modified,
                detail: reason.clone(),
            }
        }
        Ok(entry) => entry,
    };
    if chain.node.is_some_and(|node| node != entry.node) {
        return Damage {
            line,
            seq: position,
            kind: DamageKind::Modified,
            detail: reason,
        };
    }
    if entry.seq == position {
        if position == 0 {
            return Damage {
                line,
                seq: position,
                kind: DamageKind::Modified,
                detail: reason,
            };
        }
        return Damage {
            line: line - 1,
            seq: position - 1,
            kind: DamageKind::Modified,
            detail: format!(
                "line {line}'s prev is not the hash of line {}: line {} was rewritten (with a recomputed hash), or line {line} was forged",
                line - 1,
                line - 1
            ),
        };
    }
    if entry.seq > position {
        let missing = position..entry.seq;
        let found_later = after.iter().any(|later| {
            later
                .parsed
                .as_ref()
                .is_ok_and(|e| missing.contains(&e.seq))
        });
        return if found_later {
            Damage {
                line,
                seq: position,
                kind: DamageKind::Reordered,
                detail: format!(
                    "line {line} holds seq {} but seq {position} comes later in the file",
                    entry.seq
                ),
            }
        } else {
            Damage {
                line,
                seq: position,
                kind: DamageKind::Removed,
                detail: format!(
                    "seq {}..={} missing before line {line} (which holds seq {})",
                    position,
                    entry.seq - 1,
                    entry.seq
                ),
            }
        };
    }
    Damage {
        line,
        seq: position,
        kind: DamageKind::Inserted,
        detail: format!(
            "line {line} repeats seq {} (already verified on line {})",
            entry.seq,
            entry.seq + 1
        ),
    }
}
