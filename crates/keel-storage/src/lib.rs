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
//!
//! ```
//! use keel_storage::{Entry, HardState, SimIo, Storage, StorageOptions, WalOptions};
//! let io = SimIo::new(42); // one SimIo per simulated node; RealIo for the real disk
//! let opts = StorageOptions { wal: WalOptions { segment_capacity_bytes: 64 << 10, ..Default::default() }, repair: false };
//! let (mut st, recovered) = Storage::open(io.clone(), "/node1".as_ref(), opts.clone()).unwrap();
//! assert!(!recovered.repaired());
//! st.wal.append(&[Entry { index: 1, term: 1, payload: b"put x 1".to_vec() }]).unwrap();
//! assert_eq!(st.wal.sync().unwrap(), 1); // durable: may be acknowledged
//! st.hard_state.save(&HardState { term: 1, vote: Some(1), commit: 1, extra: vec![] }).unwrap();
//! drop(st);
//! io.crash(); // unsynced data lost, torn writes; then recover
//! let (st, recovered) = Storage::open(io, "/node1".as_ref(), opts).unwrap();
//! assert_eq!((st.wal.last_index(), recovered.hard_state.commit), (1, 1));
//! ```

mod error;
mod format;
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
pub use format::{DATA_FORMAT_MAX, DATA_FORMAT_MIN, FORMAT_FILE};
pub use group_commit::{GroupCommitOptions, GroupCommitStats, GroupCommitter, Ticket};
pub use hard_state::{
    decode_slot, HardState, HardStateRecovery, HardStateStore, HARD_STATE_EXTRA_BYTES_MAX,
};
pub use io::{Io, IoFile, RealFile, RealIo};
pub use scan::{scan, Problem, ProblemKind, Scan, SegmentSummary};
pub use sim_io::{SimFaults, SimFile, SimIo, SimLock, SimStats};
pub use snapshot::{
    decode_header as decode_snapshot_header, SnapshotMeta, SnapshotReader, SnapshotRecovery,
    SnapshotStore, SnapshotWriter,
};
pub use storage::{Recovered, Storage, StorageOptions, LOCK_FILE, SNAP_DIR, WAL_DIR};
pub use verify::{verify, Verification};
pub use wal::{Entry, RepairReport, Wal, WalOptions, WalRecovery};
