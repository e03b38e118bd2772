//! The state machine: applies committed log entries in index order, serves reads, snapshots.
//!
//! Invariants (asserted): `applied_index` strictly increases with every applied entry;
//! `time_ms` (the largest entry time seen) never decreases; the store revision never decreases
//! and grows by at most one per entry.

use crate::codec::Writer;
use crate::command::{Command, RangeRequest, SessionTag, WriteRequest};
use crate::config::Config;
use crate::error::KvError;
use crate::response::{ApplyResult, RangeResponse, Read, ReadHeader, Response};
use crate::session::{Admission, CachedResult, SessionTable};
use crate::snapshot::{self, SnapshotError};

/// The cluster version of a new cluster, and of one that never finalized an upgrade.
pub const CLUSTER_VERSION_INITIAL: u32 = 1;
use crate::store::Store;
use crate::txn;
use crate::types::KeyValue;

#[derive(Clone, Debug)]
pub struct StateMachine {
    config: Config,
    store: Store,
    sessions: SessionTable,
    /// Index of the last applied entry (0 before any).
    applied_index: u64,
    /// Largest `entry_time_ms` applied: the state machine's notion of now. Leader clocks may
    /// disagree after a leader change; taking the maximum keeps time monotonic everywhere.
    time_ms: u64,
    /// The finalized cluster version (docs/upgrades.md): 1 until an upgrade is finalized; only
    /// ever raised, by `Command::SetClusterVersion`.
    cluster_version: u32,
}

impl StateMachine {
    /// An empty state machine. Panics if `config.validate()` fails (a programming error).
    pub fn new(config: Config) -> StateMachine {
        if let Err(reason) = config.validate() {
            panic!("invalid keel-kv config: {reason}");
        }
        StateMachine {
            config,
            store: Store::default(),
            sessions: SessionTable::default(),
            applied_index: 0,
            time_ms: 0,
            cluster_version: CLUSTER_VERSION_INITIAL,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The revision: number of modifying commands applied so far.
    pub fn revision(&self) -> u64 {
        self.store.revision
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The largest entry time applied so far (ms, leader's clock).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The finalized cluster version (1 until an upgrade is finalized).
    pub fn cluster_version(&self) -> u32 {
        self.cluster_version
    }

    pub fn key_count(&self) -> usize {
        self.store.records.len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Moves to entry `index` at `entry_time_ms` and expires idle sessions.
    fn advance(&mut self, index: u64, entry_time_ms: u64) {
        assert!(
            index > self.applied_index,
            "applied index must strictly increase: {} after {}",
            index,
            self.applied_index
        );
        self.applied_index = index;
        self.time_ms = self.time_ms.max(entry_time_ms);
        self.sessions
            .expire(self.time_ms, self.config.session_ttl_ms);
        assert!(self.time_ms >= entry_time_ms);
    }

    /// Applies a no-op or configuration entry: advances index and time (expiring sessions).
    pub fn apply_noop(&mut self, index: u64, entry_time_ms: u64) {
        let revision_before = self.store.revision;
        self.advance(index, entry_time_ms);
        assert!(self.store.revision == revision_before);
    }

    /// Applies one committed entry's command bytes. Malformed bytes give a BAD_REQUEST result
    /// (field `command`) and change nothing but the index and time. Panics only if `index` does
    /// not strictly increase.
    pub fn apply(&mut self, index: u64, entry_time_ms: u64, command_bytes: &[u8]) -> ApplyResult {
        let revision_before = self.store.revision;
        self.advance(index, entry_time_ms);
        let result = match Command::decode(command_bytes) {
            Ok(command) => self.apply_command(index, command),
            Err(error) => self.result(
                false,
                Err(KvError::MalformedCommand {
                    reason: error.to_string(),
                }),
            ),
        };
        assert!(self.store.revision >= revision_before);
        assert!(self.store.revision <= revision_before + 1);
        result
    }

    fn result(&self, duplicate: bool, result: Result<Response, KvError>) -> ApplyResult {
        ApplyResult {
            index: self.applied_index,
            revision: self.store.revision,
            duplicate,
            result,
        }
    }

    fn apply_command(&mut self, index: u64, command: Command) -> ApplyResult {
        match command {
            Command::RegisterSession => {
                self.sessions
                    .register(index, self.time_ms, self.config.sessions_max);
                self.result(false, Ok(Response::SessionRegistered { client_id: index }))
            }
            Command::KeepAlive { client_id } => {
                let result = self
                    .sessions
                    .touch(client_id, self.time_ms)
                    .map(|()| Response::SessionKeptAlive { client_id });
                self.result(false, result)
            }
            Command::Write {
                session: None,
                request,
            } => {
                let result = txn::execute_write(&mut self.store, &request, &self.config);
                self.result(false, result)
            }
            Command::Write {
                session: Some(tag),
                request,
            } => self.apply_tagged_write(&tag, &request),
            Command::AuditAnchor { node, seq, head } => {
                // Evidence only: no key, revision or session changes (the caller asserts the
                // revision; sessions expire by entry time exactly as for a no-op).
                let revision_before = self.store.revision;
                let result = self.result(false, Ok(Response::AuditAnchored { node, seq, head }));
                assert!(self.store.revision == revision_before);
                result
            }
            Command::SetClusterVersion { version } => {
                let previous = self.cluster_version;
                self.cluster_version = previous.max(version);
                assert!(self.cluster_version >= previous);
                let version = self.cluster_version;
                self.result(false, Ok(Response::ClusterVersionSet { version, previous }))
            }
        }
    }

    fn apply_tagged_write(&mut self, tag: &SessionTag, request: &WriteRequest) -> ApplyResult {
        let admission = self.sessions.admit(
            tag,
            self.time_ms,
            self.config.session_results_max,
            self.config.dedup_disabled,
        );
        match admission {
            // Refused (expired session, discarded seq, full window): not executed, not cached.
            Err(error) => self.result(false, Err(error)),
            Ok(Admission::Duplicate(cached)) => {
                assert!(cached.revision <= self.store.revision);
                ApplyResult {
                    index: self.applied_index,
                    revision: cached.revision,
                    duplicate: true,
                    result: cached.result,
                }
            }
            Ok(Admission::Execute) => {
                let result = txn::execute_write(&mut self.store, request, &self.config);
                let cached = CachedResult {
                    revision: self.store.revision,
                    result: result.clone(),
                };
                self.sessions
                    .record(tag, cached, self.config.session_results_max);
                self.result(false, result)
            }
        }
    }

    /// The key's current key-value, if any. Validates the key (BAD_REQUEST field=key).
    pub fn get(&self, key: &[u8]) -> Result<Read<Option<KeyValue>>, KvError> {
        txn::validate_key(key, &self.config)?;
        Ok(Read {
            header: self.read_header(),
            body: self.store.get(key),
        })
    }

    /// Keys in the range, sorted, with `more` and the total `count`.
    pub fn range(&self, request: &RangeRequest) -> Result<Read<RangeResponse>, KvError> {
        let limit = txn::validate_range(request, &self.config)?;
        Ok(Read {
            header: self.read_header(),
            body: self
                .store
                .range(&request.range, limit, self.config.range_response_bytes_max),
        })
    }

    pub fn read_header(&self) -> ReadHeader {
        ReadHeader {
            revision: self.store.revision,
            applied_index: self.applied_index,
        }
    }

    /// The whole state as deterministic, versioned, crc32c-checksummed bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(
            self.applied_index,
            self.time_ms,
            self.cluster_version,
            &self.store,
            &self.sessions,
        )
    }

    /// The session table alone (same encoding as the snapshot's session section), for Raft
    /// snapshot metadata.
    pub fn session_table_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.sessions.encode(&mut w);
        w.into_bytes()
    }

    /// Rebuilds a state machine from `snapshot()` bytes, validating magic, version, checksum,
    /// structure and invariants. `config` is not stored in snapshots: pass the same config as
    /// every other replica.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<StateMachine, SnapshotError> {
        let state = snapshot::decode(bytes)?;
        let mut machine = StateMachine::new(config);
        machine.store = state.store;
        machine.sessions = state.sessions;
        machine.applied_index = state.applied_index;
        machine.time_ms = state.time_ms;
        machine.cluster_version = state.cluster_version;
        assert!(machine.store.check_invariants().is_ok());
        Ok(machine)
    }
}
