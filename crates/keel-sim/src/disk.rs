//! An in-memory disk for one node that models durable vs not-yet-durable writes: writes become
//! durable in order, after a latency; a crash loses every write not yet durable, except that
//! the first of them may survive torn (a prefix of its entries, never its hard state).

use keel_core::{Entry, HardState, Snapshot, Write};
use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Entries after `first_index - 1`, contiguous.
    pub entries: Vec<Entry>,
}

impl Durable {
    pub fn apply(&mut self, w: &Write, torn_entries: Option<usize>) {
        if let Some(s) = &w.snapshot {
            let keep_from = s.meta.index + 1;
            // Entries the snapshot covers stay until compaction; a snapshot that does not match
            // the log replaces it (install from a leader).
            let matches = self.entries.iter().any(|e| e.index == s.meta.index && e.term == s.meta.term);
            if !matches {
                self.entries.retain(|e| e.index >= keep_from);
                if self.entries.first().is_some_and(|e| e.index != keep_from) {
                    self.entries.clear();
                }
            }
            self.snapshot = Some(s.clone());
        }
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        let n = torn_entries.unwrap_or(w.entries.len()).min(w.entries.len());
        for e in &w.entries[..n] {
            if let Some(last) = self.entries.last() {
                if e.index != last.index + 1 {
                    // Appends after a snapshot install start a fresh contiguous run.
                    self.entries.retain(|x| x.index < e.index);
                }
            }
            self.entries.push(e.clone());
        }
        if torn_entries.is_some() {
            return; // A torn write never reaches its hard state.
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
        if let Some(c) = w.compact_to {
            self.entries.retain(|e| e.index > c);
        }
    }

    /// The entries a restarting node gets: contiguous, right after the snapshot.
    pub fn restored_entries(&self) -> Vec<Entry> {
        let base = self.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let mut out: Vec<Entry> = self.entries.iter().filter(|e| e.index > base).cloned().collect();
        // Keep only the contiguous run from base + 1.
        let mut expect = base + 1;
        let mut keep = 0;
        for e in &out {
            if e.index != expect {
                break;
            }
            expect += 1;
            keep += 1;
        }
        out.truncate(keep);
        out
    }
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub durable: Durable,
    /// Issued writes not yet durable, with the true time (µs) each completes.
    pub pending: VecDeque<(u64, Write)>,
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    pub last_done_us: u64,
}

impl Disk {
    /// Enqueues a write; returns its completion time (writes complete in order).
    pub fn submit(&mut self, now_us: u64, latency_us: u64, w: Write) -> u64 {
        let done = (now_us + latency_us).max(self.last_done_us + 1);
        self.last_done_us = done;
        self.pending.push_back((done, w));
        done
    }

    /// Completes the oldest pending write (its time has come). Returns its id.
    pub fn complete_next(&mut self) -> Option<u64> {
        let (_, w) = self.pending.pop_front()?;
        self.durable.apply(&w, None);
        Some(w.id)
    }

    /// A crash: pending writes are lost; the first may survive torn.
    pub fn crash(&mut self, torn_prefix: Option<usize>) {
        if let (Some(n), Some((_, w))) = (torn_prefix, self.pending.front()) {
            let w = w.clone();
            self.durable.apply(&w, Some(n));
        }
        self.pending.clear();
    }
}
