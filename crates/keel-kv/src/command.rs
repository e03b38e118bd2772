//! Commands: what a log entry asks the state machine to do, and their byte encoding.
//!
//! `Command::encode` produces the log entry payload; `Command::decode` is its exact inverse and
//! accepts only canonical bytes (`encode(decode(b)) == b` whenever decoding succeeds). The first
//! byte is the encoding version, `COMMAND_ENCODING_VERSION`.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Wire, Writer};
use crate::types::{Compare, CompareTarget, KeyRange};

/// First byte of every encoded command and result.
pub const COMMAND_ENCODING_VERSION: u8 = 1;

/// Initial buffer size for encoding: fits a put of a short key and a ~200-byte value.
const COMMAND_BYTES_GUESS: usize = 256;

/// One log entry's worth of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Create a client session; its client id is the entry's log index.
    RegisterSession,
    /// Mark the session active (resets its expiry clock) without writing.
    KeepAlive { client_id: u64 },
    /// A write, optionally tagged with a session for exactly-once semantics.
    Write {
        session: Option<SessionTag>,
        request: WriteRequest,
    },
    /// Anchor node `node`'s audit chain in the log: its audit file had head hash `head` at record
    /// `seq` (see crates/keel-audit). Changes no key, no revision and no session; the apply
    /// result carries the anchor back (`Response::AuditAnchored`) so every node can append an
    /// `anchor_committed` audit record at this entry's (term, index).
    AuditAnchor {
        node: u64,
        seq: u64,
        head: [u8; AUDIT_HEAD_BYTES],
    },
    /// Finalize an upgrade: the cluster version becomes `max(current, version)` (never lower;
    /// idempotent). Changes no key, no revision and no session. Each server checks, before it
    /// applies this, that its binary supports `version`, and stops if not (docs/upgrades.md).
    SetClusterVersion { version: u32 },
}

/// Size of an audit chain head hash (SHA-256) carried by `Command::AuditAnchor`.
pub const AUDIT_HEAD_BYTES: usize = 32;

/// Exactly-once tag (Raft dissertation §6.3). `seq` numbers the client's requests;
/// `lowest_unacked_seq` tells the state machine it may forget results for smaller seqs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTag {
    pub client_id: u64,
    pub seq: u64,
    pub lowest_unacked_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteRequest {
    Put(PutRequest),
    Delete(DeleteRequest),
    CompareAndSwap(CasRequest),
    Txn(TxnRequest),
}

/// Set `key` to `value`. With `prev_kv`, the response carries the key-value it replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub prev_kv: bool,
}

/// Delete every key in `range`. With `prev_kv`, the response carries the deleted key-values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

/// Read the keys in `range`, in byte order, at most `limit` of them (0 = `range_limit_max`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: KeyRange,
    pub limit: u64,
}

/// Put `value` at `key` if the key's `expected` field equals the given target (value, mod
/// revision, version or create revision; `ModRevision(0)` means "key absent").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasRequest {
    pub key: Vec<u8>,
    pub expected: CompareTarget,
    pub value: Vec<u8>,
}

/// An operation inside a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    Put(PutRequest),
    Delete(DeleteRequest),
    Range(RangeRequest),
}

/// If every compare holds, run `success`, else run `failure`; atomically, in order, as one
/// revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Command {
    /// The log entry payload for this command.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(COMMAND_BYTES_GUESS);
        w.u8(COMMAND_ENCODING_VERSION);
        self.write(&mut w);
        assert!(w.len() >= 2);
        w.into_bytes()
    }

    /// Parses a log entry payload. Rejects unknown versions, unknown tags, non-canonical
    /// integers, truncation and trailing bytes. Never panics; allocates at most the input size.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != COMMAND_ENCODING_VERSION {
            return Err(DecodeError {
                offset: 0,
                reason: "unsupported command encoding version",
            });
        }
        let command = Command::read(&mut r)?;
        r.finish()?;
        Ok(command)
    }
}

impl Wire for Command {
    fn write(&self, w: &mut Writer) {
        match self {
            Command::RegisterSession => w.u8(0),
            Command::KeepAlive { client_id } => {
                w.u8(1);
                w.varint(*client_id);
            }
            Command::Write { session, request } => {
                w.u8(2);
                session.write(w);
                request.write(w);
            }
            Command::AuditAnchor { node, seq, head } => {
                w.u8(3);
                w.varint(*node);
                w.varint(*seq);
                w.raw(head);
            }
            Command::SetClusterVersion { version } => {
                w.u8(4);
                w.varint(u64::from(*version));
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Command::RegisterSession,
            1 => Command::KeepAlive {
                client_id: r.varint()?,
            },
            2 => Command::Write {
                session: Option::<SessionTag>::read(r)?,
                request: WriteRequest::read(r)?,
            },
            3 => Command::AuditAnchor {
                node: r.varint()?,
                seq: r.varint()?,
                head: read_audit_head(r)?,
            },
            4 => Command::SetClusterVersion {
                version: read_cluster_version(r)?,
            },
            _ => return Err(r.error("unknown command tag")),
        })
    }
}

/// A cluster version: a varint in 1..=u32::MAX.
pub(crate) fn read_cluster_version(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let version = r.varint()?;
    if version == 0 {
        return Err(r.error("cluster version 0"));
    }
    u32::try_from(version).map_err(|_| r.error("cluster version above u32"))
}

/// Exactly `AUDIT_HEAD_BYTES` raw bytes (no length prefix: the size is fixed).
pub(crate) fn read_audit_head(r: &mut Reader<'_>) -> Result<[u8; AUDIT_HEAD_BYTES], DecodeError> {
    let slice = r.slice(AUDIT_HEAD_BYTES)?;
    let mut head = [0u8; AUDIT_HEAD_BYTES];
    head.copy_from_slice(slice);
    Ok(head)
}

impl Wire for SessionTag {
    fn write(&self, w: &mut Writer) {
        w.varint(self.client_id);
        w.varint(self.seq);
        w.varint(self.lowest_unacked_seq);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SessionTag {
            client_id: r.varint()?,
            seq: r.varint()?,
            lowest_unacked_seq: r.varint()?,
        })
    }
}

impl Wire for WriteRequest {
    fn write(&self, w: &mut Writer) {
        match self {
            WriteRequest::Put(put) => {
                w.u8(0);
                put.write(w);
            }
            WriteRequest::Delete(delete) => {
                w.u8(1);
                delete.write(w);
            }
            WriteRequest::CompareAndSwap(cas) => {
                w.u8(2);
                cas.write(w);
            }
            WriteRequest::Txn(txn) => {
                w.u8(3);
                txn.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => WriteRequest::Put(PutRequest::read(r)?),
            1 => WriteRequest::Delete(DeleteRequest::read(r)?),
            2 => WriteRequest::CompareAndSwap(CasRequest::read(r)?),
            3 => WriteRequest::Txn(TxnRequest::read(r)?),
            _ => return Err(r.error("unknown write request tag")),
        })
    }
}

impl Wire for PutRequest {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.key);
        w.bytes(&self.value);
        w.bool(self.prev_kv);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PutRequest {
            key: r.bytes()?,
            value: r.bytes()?,
            prev_kv: r.bool()?,
        })
    }
}

impl Wire for DeleteRequest {
    fn write(&self, w: &mut Writer) {
        self.range.write(w);
        w.bool(self.prev_kv);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteRequest {
            range: KeyRange::read(r)?,
            prev_kv: r.bool()?,
        })
    }
}

impl Wire for RangeRequest {
    fn write(&self, w: &mut Writer) {
        self.range.write(w);
        w.varint(self.limit);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RangeRequest {
            range: KeyRange::read(r)?,
            limit: r.varint()?,
        })
    }
}

impl Wire for CasRequest {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.key);
        self.expected.write(w);
        w.bytes(&self.value);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CasRequest {
            key: r.bytes()?,
            expected: CompareTarget::read(r)?,
            value: r.bytes()?,
        })
    }
}

impl Wire for TxnOp {
    fn write(&self, w: &mut Writer) {
        match self {
            TxnOp::Put(put) => {
                w.u8(0);
                put.write(w);
            }
            TxnOp::Delete(delete) => {
                w.u8(1);
                delete.write(w);
            }
            TxnOp::Range(range) => {
                w.u8(2);
                range.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => TxnOp::Put(PutRequest::read(r)?),
            1 => TxnOp::Delete(DeleteRequest::read(r)?),
            2 => TxnOp::Range(RangeRequest::read(r)?),
            _ => return Err(r.error("unknown txn op tag")),
        })
    }
}

impl Wire for TxnRequest {
    fn write(&self, w: &mut Writer) {
        self.compares.write(w);
        self.success.write(w);
        self.failure.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxnRequest {
            compares: Vec::<Compare>::read(r)?,
            success: Vec::<TxnOp>::read(r)?,
            failure: Vec::<TxnOp>::read(r)?,
        })
    }
}
