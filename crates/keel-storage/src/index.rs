//! The in-memory index from log index to record position, so reads never scan.
//! Invariant: entries are `first_index ..= first_index + positions.len() - 1`, contiguous.

use std::collections::VecDeque;

/// Marks a position inside the not-yet-written pending buffer.
pub(crate) const PENDING_SEGMENT: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub term: u64,
    /// Segment id, or [`PENDING_SEGMENT`] for records still in the pending buffer.
    pub segment_id: u64,
    /// Byte offset of the record in the segment (or in the pending buffer).
    pub offset: u32,
    /// Total record bytes (header, payload, padding).
    pub record_bytes: u32,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LogIndex {
    first_index: u64,
    positions: VecDeque<Position>,
}

impl LogIndex {
    pub fn new(first_index: u64) -> LogIndex {
        LogIndex {
            first_index,
            positions: VecDeque::new(),
        }
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Index of the last entry; `first_index - 1` when empty.
    pub fn last_index(&self) -> u64 {
        self.first_index + self.positions.len() as u64 - 1
    }

    pub fn next_index(&self) -> u64 {
        self.first_index + self.positions.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<&Position> {
        let slot = index.checked_sub(self.first_index)?;
        self.positions.get(usize::try_from(slot).ok()?)
    }

    pub fn push(&mut self, position: Position) {
        self.positions.push_back(position);
    }

    /// Applies a truncate record: entries `>= index` go; if that leaves a hole the log restarts
    /// empty at `index` (used to restart the log after a snapshot).
    pub fn truncate(&mut self, index: u64) {
        if index < self.first_index || index > self.next_index() {
            self.positions.clear();
            self.first_index = index;
        } else {
            self.positions.truncate((index - self.first_index) as usize);
        }
        assert_eq!(self.next_index(), index);
    }

    /// Empties the log; the next entry will be `index`.
    pub fn reset(&mut self, index: u64) {
        self.positions.clear();
        self.first_index = index;
    }

    /// Drops entries `< index` (at most all of them).
    pub fn purge(&mut self, index: u64) {
        let drop = index
            .saturating_sub(self.first_index)
            .min(self.positions.len() as u64);
        self.positions.drain(..drop as usize);
        self.first_index += drop;
        assert!(self.first_index <= index.max(self.first_index));
    }

    /// Positions from the back while they are pending (for translation after a write).
    pub fn iter_back_mut(&mut self) -> impl Iterator<Item = &mut Position> {
        self.positions.iter_mut().rev()
    }
}
