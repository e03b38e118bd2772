//! `keel-client`: the async Rust client for Keel's HTTP API.
//!
//! - **Endpoints and leader discovery**: any list of `host:port` client addresses; writes and
//!   linearizable reads go to the believed leader, and a NOT_LEADER answer's hint is followed
//!   only when its term is not older than the newest term the client has seen (a stale hint
//!   could point at a deposed leader and start a redirect loop).
//! - **Retries**: exponential backoff with jitter from a seeded generator, bounded by the call
//!   deadline, `attempts_max`, and a retry budget (token bucket: retries ≤ ~10% of calls plus a
//!   small reserve). OVERLOADED's `retry_after_ms` is a floor on the wait.
//! - **Exactly-once writes**: [`Client::register_session`] once, then every write carries
//!   (client_id, seq, lowest_unacked_seq); OUTCOME_UNKNOWN is retried with the *same* seq;
//!   SESSION_EXPIRED is surfaced, never silently re-executed.
//! - **Read levels** per call: linearizable, bounded(ms), any, plus `min_revision`.
//!
//! docs/client-retries.md states the rules for implementers in other languages.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keel_client::Error> {
//! use keel_client::{Client, ClientConfig, ReadOptions, WriteOptions};
//! let client = Client::new(ClientConfig::new(&["127.0.0.1:7379"]))?;
//! client.register_session().await?;
//! let put = client.put("greeting", "hello", WriteOptions::default()).await?;
//! let get = client.get("greeting", ReadOptions::default()).await?;
//! assert_eq!(get.kv.unwrap().mod_revision, put.revision);
//! # Ok(()) }
//! ```

mod api;
mod backoff;
mod budget;
mod client;
mod config;
mod error;
mod session;
mod types;

pub use api::kv_path;
pub use backoff::Backoff;
pub use budget::RetryBudget;
pub use client::{Client, ClientStats};
pub use config::{normalize_endpoint, ClientConfig, ENDPOINTS_MAX};
pub use error::{Error, ErrorCode, LeaderHint, RetryHint, ServerError};
pub use session::SESSION_WRITES_INFLIGHT_MAX;
pub use types::{
    AdminResponse, CasExpectation, CasResponse, DeleteResponse, FinalizeUpgrade, GetResponse,
    KeyValue, Member, MembersResponse, PutResponse, RangeResponse, RangeSpec, ReadLevel,
    ReadOptions, ResponseHeader, Served, SessionTag, Status, TxnResponse, WriteOptions,
};
