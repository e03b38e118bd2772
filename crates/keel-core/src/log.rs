//! The in-memory Raft log: entries after the last snapshot, the commit and apply points.
//!
//! Invariants (checked by `check`):
//! - `snapshot_index <= applied <= committed <= last_index()`
//! - entries are contiguous: `entries[k].index == snapshot_index + 1 + k`
//! - terms never decrease along the log
//!
//! The log holds every entry after the snapshot in memory; storage holds the same entries
//! durably. Memory is bounded by how often the application snapshots (`compact`).

use crate::types::{Entry, Index, Stamp, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    pub snapshot_stamp: Stamp,
    entries: Vec<Entry>,
    /// Highest index known committed. Never decreases (also across restarts: persisted).
    pub committed: Index,
    /// Highest index the application reported applied.
    pub applied: Index,
    /// Highest index handed to the application for applying (applied <= handed <= committed).
    pub handed: Index,
}

impl RaftLog {
    pub fn new(snapshot_index: Index, snapshot_term: Term, snapshot_stamp: Stamp) -> Self {
        RaftLog {
            snapshot_index,
            snapshot_term,
            snapshot_stamp,
            entries: Vec::new(),
            committed: snapshot_index,
            applied: snapshot_index,
            handed: snapshot_index,
        }
    }

    pub fn first_index(&self) -> Index {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The stamp of the last entry (or of the snapshot's last entry).
    pub fn last_stamp(&self) -> Stamp {
        self.entries.last().map_or(self.snapshot_stamp, |e| e.stamp)
    }

    /// Term at `index`; `None` when compacted away or beyond the end.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot_index || index > self.last_index() {
            return None;
        }
        let e = &self.entries[(index - self.snapshot_index - 1) as usize];
        debug_assert_eq!(e.index, index);
        Some(e)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries in `[lo, hi]` bounded by count and bytes (at least one entry if any exists).
    pub fn slice(&self, lo: Index, hi: Index, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        assert!(lo > self.snapshot_index, "slice below the snapshot");
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = lo;
        while i <= hi.min(self.last_index()) && out.len() < count_max {
            let e = self.entry(i).expect("entry in range");
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(e.clone());
            i += 1;
        }
        out
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up to date as ours?
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Leader append: entries must continue the log exactly.
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "append must be contiguous"
        );
        assert!(
            entry.term >= self.last_term(),
            "terms never decrease along the log"
        );
        self.entries.push(entry);
    }

    /// Follower append after a successful previous-entry check. Skips entries already present,
    /// truncates at the first conflict, appends the rest. Returns the index it truncated from
    /// (if any) and the entries that are new to the log.
    pub fn append_after_match(&mut self, entries: Vec<Entry>) -> (Option<Index>, Vec<Entry>) {
        let mut truncated_from = None;
        let mut new_entries = Vec::new();
        for entry in entries {
            if entry.index <= self.snapshot_index {
                continue; // Covered by the snapshot: committed, hence identical.
            }
            if new_entries.is_empty() {
                match self.term(entry.index) {
                    Some(t) if t == entry.term => continue,
                    Some(_) => {
                        assert!(
                            entry.index > self.committed,
                            "conflict at committed index {} (committed {})",
                            entry.index,
                            self.committed
                        );
                        self.truncate_from(entry.index);
                        truncated_from = Some(entry.index);
                    }
                    None => {}
                }
            }
            self.append(entry.clone());
            new_entries.push(entry);
        }
        (truncated_from, new_entries)
    }

    /// Removes every entry at `index` and after. Never below the commit point.
    pub fn truncate_from(&mut self, index: Index) {
        assert!(index > self.committed, "never truncate committed entries");
        assert!(index > self.snapshot_index);
        let keep = (index - self.snapshot_index - 1) as usize;
        self.entries.truncate(keep);
        assert_eq!(self.last_index(), index - 1);
    }

    /// First index of `term` at or before `index` (for rejection hints).
    pub fn first_index_of_term_at(&self, index: Index) -> Index {
        let term = self.term(index).unwrap_or(0);
        let mut i = index;
        while i > self.first_index() && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Last index holding `term`, if the log has any entry of it.
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term <= term)
            .filter(|e| e.term == term)
            .map(|e| e.index)
    }

    pub fn commit_to(&mut self, index: Index) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit beyond the log");
        self.committed = index;
        true
    }

    /// Drops entries up to and including `index` (which must be applied).
    pub fn compact(&mut self, index: Index) {
        if index <= self.snapshot_index {
            return;
        }
        assert!(index <= self.applied, "compact only applied entries");
        let e = self.entry(index).expect("entry to compact").clone();
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = e.term;
        self.snapshot_stamp = e.stamp;
    }

    /// Replaces the log with a snapshot point. Entries after it are kept when they match.
    pub fn restore(&mut self, index: Index, term: Term, stamp: Stamp) {
        assert!(index > self.committed, "restoring an older snapshot");
        if self.matches(index, term) {
            let drop = (index - self.snapshot_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.snapshot_stamp = stamp;
        self.committed = index;
        self.applied = index;
        self.handed = index;
    }

    /// The internal invariants, spelled out one by one so a failure names its part.
    pub fn check(&self) {
        assert!(self.snapshot_index <= self.applied, "snapshot <= applied");
        assert!(self.applied <= self.handed, "applied <= handed");
        assert!(self.handed <= self.committed, "handed <= committed");
        assert!(
            self.committed <= self.last_index(),
            "committed <= last index"
        );
        if let Some(first) = self.entries.first() {
            assert_eq!(
                first.index,
                self.snapshot_index + 1,
                "log starts after snapshot"
            );
            assert!(
                first.term >= self.snapshot_term,
                "terms monotonic at snapshot"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn e(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            stamp: Stamp::default(),
            kind: EntryKind::Noop,
        }
    }

    #[test]
    fn append_after_match_truncates_at_first_conflict() {
        let mut log = RaftLog::new(0, 0, Stamp::default());
        for (i, t) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            log.append(e(i, t));
        }
        let (trunc, new) = log.append_after_match(vec![e(2, 1), e(3, 3)]);
        assert_eq!(trunc, Some(3));
        assert_eq!(new.len(), 1);
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.last_term(), 3);
    }

    #[test]
    fn duplicate_append_changes_nothing() {
        let mut log = RaftLog::new(0, 0, Stamp::default());
        log.append(e(1, 1));
        log.append(e(2, 1));
        let (trunc, new) = log.append_after_match(vec![e(1, 1)]);
        assert_eq!((trunc, new.len(), log.last_index()), (None, 0, 2));
    }

    #[test]
    fn compact_and_restore_keep_invariants() {
        let mut log = RaftLog::new(0, 0, Stamp::default());
        for i in 1..=5 {
            log.append(e(i, 1));
        }
        log.commit_to(4);
        log.handed = 4;
        log.applied = 4;
        log.compact(3);
        assert_eq!(
            (log.first_index(), log.term(3), log.term(2)),
            (4, Some(1), None)
        );
        log.check();
        log.restore(7, 2, Stamp::default());
        assert_eq!((log.last_index(), log.committed), (7, 7));
        log.check();
    }
}
