//! # keel-kv: Keel's replicated, deterministic key-value state machine
//!
//! A pure function of the log entries applied to it: no clocks, threads, files or randomness.
//! Every replica that applies the same entries holds the same state, byte for byte (compare
//! `snapshot()` outputs). The model is etcd's: byte-string keys and values, a cluster-wide
//! `revision` that grows by one per modifying command, and per key `create_revision`,
//! `mod_revision` and `version`. Exactly-once writes use client sessions (Raft dissertation
//! §6.3). The full specification, including every byte of the encodings, is docs/kv.md.
//!
//! ## For the server
//!
//! - Propose `Command::encode()` bytes as log entry payloads.
//! - Apply committed entries in order with [`StateMachine::apply`]`(index, entry_time_ms,
//!   bytes)`, where `entry_time_ms` is the leader's wall-clock stamp stored in the entry (session
//!   expiry uses only that), and [`StateMachine::apply_noop`] for no-op and configuration
//!   entries. The index must strictly increase (asserted).
//! - Answer the client with the [`ApplyResult`] (serde JSON, or `ApplyResult::encode`).
//!   [`KvError::code`] and [`KvError::field`] give the machine-readable error.
//! - Serve reads with [`StateMachine::get`] / [`StateMachine::range`] after ReadIndex or under a
//!   lease; each returns the revision and applied index it was served at.
//! - Snapshot with [`StateMachine::snapshot`], install with [`StateMachine::restore`].
//! - Audit anchors: propose `Command::AuditAnchor { node, seq, head }` (the node's audit chain
//!   head, see crates/keel-audit); applying it changes no key, revision or session and returns
//!   `Response::AuditAnchored { node, seq, head }` on every replica, from which each node appends
//!   an `anchor_committed` audit record at the entry's (term, index).
//! - `Config::dedup_disabled` is the `--mutant no-session-dedup` hook: test only.
//!
//! ```
//! use keel_kv::{
//!     Command, Config, KeyRange, PutRequest, RangeRequest, Response, SessionTag,
//!     StateMachine, WriteRequest,
//! };
//!
//! let mut machine = StateMachine::new(Config::default());
//!
//! // Register a session: its client id is the entry's index (here 1).
//! let result = machine.apply(1, 1_000, &Command::RegisterSession.encode());
//! let Ok(Response::SessionRegistered { client_id }) = result.result else { panic!() };
//!
//! // An exactly-once put.
//! let put = Command::Write {
//!     session: Some(SessionTag { client_id, seq: 1, lowest_unacked_seq: 1 }),
//!     request: WriteRequest::Put(PutRequest {
//!         key: b"greeting".to_vec(),
//!         value: b"hello".to_vec(),
//!         prev_kv: false,
//!     }),
//! };
//! let bytes = put.encode();
//! assert_eq!(Command::decode(&bytes).unwrap(), put);
//! let first = machine.apply(2, 1_010, &bytes);
//! assert_eq!(first.revision, 1);
//!
//! // The client retried (say the reply was lost): same result, applied once.
//! let retry = machine.apply(3, 1_020, &bytes);
//! assert!(retry.duplicate);
//! assert_eq!(retry.revision, 1);
//! assert_eq!(machine.revision(), 1);
//!
//! // A read, served after ReadIndex.
//! let read = machine.get(b"greeting").unwrap();
//! assert_eq!(read.body.unwrap().version, 1);
//! assert_eq!(read.header.applied_index, 3);
//! let all = machine
//!     .range(&RangeRequest { range: KeyRange::Prefix(Vec::new()), limit: 0 })
//!     .unwrap();
//! assert_eq!(all.body.count, 1);
//!
//! // Snapshot and restore.
//! let restored = StateMachine::restore(Config::default(), &machine.snapshot()).unwrap();
//! assert_eq!(restored.snapshot(), machine.snapshot());
//! ```

mod codec;
mod command;
mod config;
mod error;
mod machine;
mod response;
mod session;
mod snapshot;
mod store;
mod txn;
mod types;

pub use codec::DecodeError;
pub use command::{
    CasRequest, Command, DeleteRequest, PutRequest, RangeRequest, SessionTag, TxnOp, TxnRequest,
    WriteRequest, AUDIT_HEAD_BYTES, COMMAND_ENCODING_VERSION,
};
pub use config::Config;
pub use error::{KvError, TxnBranch};
pub use machine::{StateMachine, CLUSTER_VERSION_INITIAL};
pub use response::{
    ApplyResult, CasResponse, DeleteResponse, PutResponse, RangeResponse, Read, ReadHeader,
    Response, TxnOpResponse, TxnResponse,
};
pub use snapshot::{
    SnapshotError, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_FORMAT_VERSION_MIN, SNAPSHOT_MAGIC,
};
pub use types::{prefix_end, Compare, CompareOp, CompareTarget, KeyRange, KeyValue};
