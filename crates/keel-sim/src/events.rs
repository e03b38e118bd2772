//! The simulators' event queue entry: events run in time order, and events at the same
//! microsecond in the order they were scheduled (`seq`), so a run is deterministic.

/// An event `ev` due at `at_us`; `seq` breaks ties (schedule order).
pub(crate) struct Queued<E> {
    pub at_us: u64,
    pub seq: u64,
    pub ev: E,
}

impl<E> PartialEq for Queued<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at_us, self.seq) == (o.at_us, o.seq)
    }
}

impl<E> Eq for Queued<E> {}

impl<E> PartialOrd for Queued<E> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl<E> Ord for Queued<E> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at_us, self.seq).cmp(&(o.at_us, o.seq))
    }
}
