//! Plain data that crosses the core's boundary: entries, hard state, time, snapshots.

use crate::quorum::Membership;

pub type NodeId = u64;
pub type Term = u64;
pub type Index = u64;

/// The two clocks the driver passes in with every event. The core never reads a clock itself.
///
/// `mono_ms` is the node's local monotonic clock (never goes back; may drift by at most
/// `Config::clock_drift_ppm_max`). `wall_ms` is the node's wall-clock reading; the core turns it
/// into the interval `[wall_ms - clock_uncertainty_ms, wall_ms + clock_uncertainty_ms]`, which is
/// assumed to contain true time while `wall_trusted` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub mono_ms: u64,
    pub wall_ms: u64,
    /// False once the driver has seen a clock discontinuity (jump, or wall vs monotonic rates
    /// disagree). While false: no lease reads, and a new leader waits on its monotonic clock.
    pub wall_trusted: bool,
}

/// A wall-clock interval `[earliest_ms, latest_ms]` that contained true time when it was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub earliest_ms: u64,
    pub latest_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Appended by every new leader at the start of its term, and periodically by an idle leader
    /// to keep its LeaseGuard lease.
    Noop,
    /// Application command, opaque to the core.
    Normal(Vec<u8>),
    /// A configuration. Takes effect when appended (see membership.rs).
    Config(Membership),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    /// The creating leader's wall-clock interval at creation: the LeaseGuard lease start.
    pub stamp: Stamp,
    pub kind: EntryKind,
}

impl Entry {
    /// Bytes this entry counts against message and uncommitted-size limits.
    pub fn size_bytes(&self) -> usize {
        let payload = match &self.kind {
            EntryKind::Noop => 0,
            EntryKind::Normal(data) => data.len(),
            EntryKind::Config(m) => 8 * m.node_count(),
        };
        32 + payload
    }
}

/// What must survive a crash besides the log. Written before any message that depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    /// Persisted so that the commit index is monotonic across restarts.
    pub commit: Index,
}

/// Describes the state a snapshot captures. Everything the protocol needs after compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    /// The configuration in effect at `index`, and the index of its entry (the config version).
    pub membership: Membership,
    pub config_version: Index,
    /// Creation stamp of the entry at `index`: a new leader's lease wait depends on it.
    pub last_stamp: Stamp,
    /// The state machine's client-session table (opaque to the core).
    pub session_table: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    /// The application's state at `meta.index` (opaque to the core).
    pub data: Vec<u8>,
}

impl Snapshot {
    pub fn checksum(&self) -> u32 {
        crc32c::crc32c(&self.data)
    }
}

/// Everything a node recovers from its storage at start-up.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMeta>,
    /// Entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}
