//! keel-core: a sans-IO Raft state machine.
//!
//! No tokio, threads, clocks, files, sockets or global randomness: time arrives with every call
//! (`Time`), randomness from a seed in `Config`, messages and storage completions as method
//! calls; what to persist, send, apply and answer comes out of `Node::ready()`. The same calls
//! give the same outputs, bit for bit.
//!
//! Features: pre-vote, check-quorum, disruption protection, leadership transfer; pipelined
//! replication with probe/replicate/snapshot progress and fast backtracking; the current-term
//! commit rule with a no-op per term; ReadIndex reads with batched rounds; LeaseGuard leases
//! (deferred commit, inherited lease reads, idle renewal); joint consensus with learners;
//! chunked, checksummed snapshots. See docs/safety.md and docs/leases.md.
//!
//! ```
//! use keel_core::{Config, Node, Restored, Time, Membership};
//! let now = Time { mono_ms: 0, wall_ms: 1_000_000, wall_trusted: true };
//! let restored = Restored::bootstrap(Membership::new([1]));
//! let mut node = Node::new(Config::new(1), restored, now).unwrap();
//! node.tick(Time { mono_ms: 5_000, ..now });
//! let ready = node.ready();
//! assert_eq!(ready.writes.len(), 1); // term and vote to persist before winning
//! node.persisted(Time { mono_ms: 5_000, ..now }, ready.writes[0].id);
//! assert!(node.role() == keel_core::Role::Leader);
//! ```

mod config;
pub mod display;
mod election;
pub mod invariants;
mod log;
mod membership;
mod message;
mod mutant;
mod node;
mod progress;
mod quorum;
mod read;
pub mod rename;
mod repair;
mod replication;
mod rng;
mod snapshot;
mod types;

pub use config::Config;
pub use log::RaftLog;
pub use membership::{ConfChange, PROMOTE_LAG_ENTRIES_MAX};
pub use message::{Body, Message, RejectHint};
pub use mutant::Mutant;
pub use node::{
    Node, Note, ProposeError, ReadError, ReadPath, ReadState, Ready, Role, Stats, Write,
};
pub use progress::{Progress, ProgressState};
pub use quorum::{Membership, VoteResult};
pub use read::ReadMode;
pub use rng::SplitMix64;
pub use types::*;

impl Restored {
    /// The state of a brand-new cluster member: an empty log whose base carries the initial
    /// configuration (config version 0).
    pub fn bootstrap(membership: Membership) -> Restored {
        Restored {
            hard_state: HardState::default(),
            snapshot: Some(SnapshotMeta {
                membership,
                ..Default::default()
            }),
            entries: Vec::new(),
        }
    }
}
