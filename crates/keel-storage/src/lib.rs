//! keel-storage: a node's durable state. Knows nothing of Raft beyond (index, term, opaque
//! payload) entries, a hard state and opaque snapshots; knows nothing of keel-core.
//!
//! - [`Storage::open`]: lock + recover a data directory (WAL, hard state, snapshots).
//! - [`Wal`]: synchronous log (`append` buffers, `sync` makes one batch durable) — what the
//!   simulator drives.
//! - [`GroupCommitter`]: a writer thread that turns many proposers' appends into one fdatasync.
//! - [`Io`]: the file-IO boundary; [`RealIo`] for the disk, [`SimIo`] for the simulator.
//!
//! On-disk formats and media assumptions: docs/storage.md.

mod error;
mod group_commit;
mod hard_state;
mod index;
mod io;
pub mod record;
pub mod scan;
mod sim_io;
mod snapshot;
mod storage;
mod verify;
mod wal;

pub use error::{Error, Result};
pub use group_commit::{GroupCommitOptions, GroupCommitter, Ticket};
pub use hard_state::{
    decode_slot, HardState, HardStateRecovery, HardStateStore, HARD_STATE_EXTRA_BYTES_MAX,
};
pub use io::{Io, IoFile, RealFile, RealIo};
pub use scan::{scan, Problem, ProblemKind, Scan, SegmentSummary};
pub use sim_io::{SimFaults, SimFile, SimIo, SimLock, SimStats};
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotRecovery, SnapshotStore, SnapshotWriter};
pub use storage::{Recovered, Storage, StorageOptions, LOCK_FILE, SNAP_DIR, WAL_DIR};
pub use verify::{verify, Verification};
pub use wal::{Entry, RepairReport, Wal, WalOptions, WalRecovery};
