//! Results of applying commands and of reads, with their byte encoding and JSON (serde).

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Wire, Writer};
use crate::command::{
    read_audit_head, read_cluster_version, AUDIT_HEAD_BYTES, COMMAND_ENCODING_VERSION,
};
use crate::error::KvError;
use crate::types::KeyValue;

/// What applying one log entry produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// The log index of the entry.
    pub index: u64,
    /// The store revision after the command. For a duplicate, the revision after the
    /// ORIGINAL execution (what the client would have seen the first time).
    pub revision: u64,
    /// True if this was a duplicate (client id, seq) answered from the session cache.
    pub duplicate: bool,
    pub result: Result<Response, KvError>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    SessionRegistered {
        client_id: u64,
    },
    SessionKeptAlive {
        client_id: u64,
    },
    Put(PutResponse),
    Delete(DeleteResponse),
    CompareAndSwap(CasResponse),
    Txn(TxnResponse),
    /// `Command::AuditAnchor` applied: node `node`'s audit chain had head `head` at record `seq`.
    AuditAnchored {
        node: u64,
        seq: u64,
        head: [u8; AUDIT_HEAD_BYTES],
    },
    /// `Command::SetClusterVersion` applied: the cluster version went from `previous` to
    /// `version` (equal when it was already there or higher).
    ClusterVersionSet {
        version: u32,
        previous: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResponse {
    /// The replaced key-value, if `prev_kv` was asked and the key existed.
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// How many keys were deleted.
    pub deleted: u64,
    /// The deleted key-values, if `prev_kv` was asked.
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResponse {
    /// Key-values in byte order of key, at most the limit.
    pub kvs: Vec<KeyValue>,
    /// True if keys in range were left out (limit or `range_response_bytes_max`).
    pub more: bool,
    /// How many keys are in the range in total.
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasResponse {
    pub succeeded: bool,
    /// On failure, the key's current key-value (None if the key is absent) so the client can
    /// retry; on success None (the new mod revision is the result's revision).
    pub current: Option<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// True if every compare held and the `success` branch ran.
    pub succeeded: bool,
    /// One response per operation of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOpResponse {
    Put(PutResponse),
    Delete(DeleteResponse),
    Range(RangeResponse),
}

/// The state a read was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadHeader {
    pub revision: u64,
    pub applied_index: u64,
}

/// A read's answer with the state it was served from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read<T> {
    pub header: ReadHeader,
    pub body: T,
}

impl ApplyResult {
    /// Canonical bytes (first byte `COMMAND_ENCODING_VERSION`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(COMMAND_ENCODING_VERSION);
        self.write(&mut w);
        assert!(w.len() >= 5);
        w.into_bytes()
    }

    /// Exact inverse of `encode`; never panics, allocates at most the input size.
    pub fn decode(bytes: &[u8]) -> Result<ApplyResult, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != COMMAND_ENCODING_VERSION {
            return Err(DecodeError {
                offset: 0,
                reason: "unsupported result encoding version",
            });
        }
        let result = ApplyResult::read(&mut r)?;
        r.finish()?;
        Ok(result)
    }
}

impl Wire for ApplyResult {
    fn write(&self, w: &mut Writer) {
        w.varint(self.index);
        w.varint(self.revision);
        w.bool(self.duplicate);
        write_result(&self.result, w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ApplyResult {
            index: r.varint()?,
            revision: r.varint()?,
            duplicate: r.bool()?,
            result: read_result(r)?,
        })
    }
}

pub(crate) fn write_result(result: &Result<Response, KvError>, w: &mut Writer) {
    match result {
        Ok(response) => {
            w.u8(0);
            response.write(w);
        }
        Err(error) => {
            w.u8(1);
            error.write(w);
        }
    }
}

pub(crate) fn read_result(r: &mut Reader<'_>) -> Result<Result<Response, KvError>, DecodeError> {
    match r.u8()? {
        0 => Ok(Ok(Response::read(r)?)),
        1 => Ok(Err(KvError::read(r)?)),
        _ => Err(r.error("result tag must be 0 or 1")),
    }
}

impl Wire for Response {
    fn write(&self, w: &mut Writer) {
        match self {
            Response::SessionRegistered { client_id } => {
                w.u8(0);
                w.varint(*client_id);
            }
            Response::SessionKeptAlive { client_id } => {
                w.u8(1);
                w.varint(*client_id);
            }
            Response::Put(put) => {
                w.u8(2);
                put.write(w);
            }
            Response::Delete(delete) => {
                w.u8(3);
                delete.write(w);
            }
            Response::CompareAndSwap(cas) => {
                w.u8(4);
                cas.write(w);
            }
            Response::Txn(txn) => {
                w.u8(5);
                txn.write(w);
            }
            Response::AuditAnchored { node, seq, head } => {
                w.u8(6);
                w.varint(*node);
                w.varint(*seq);
                w.raw(head);
            }
            Response::ClusterVersionSet { version, previous } => {
                w.u8(7);
                w.varint(u64::from(*version));
                w.varint(u64::from(*previous));
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => Response::SessionRegistered {
                client_id: r.varint()?,
            },
            1 => Response::SessionKeptAlive {
                client_id: r.varint()?,
            },
            2 => Response::Put(PutResponse::read(r)?),
            3 => Response::Delete(DeleteResponse::read(r)?),
            4 => Response::CompareAndSwap(CasResponse::read(r)?),
            5 => Response::Txn(TxnResponse::read(r)?),
            6 => Response::AuditAnchored {
                node: r.varint()?,
                seq: r.varint()?,
                head: read_audit_head(r)?,
            },
            7 => Response::ClusterVersionSet {
                version: read_cluster_version(r)?,
                previous: read_cluster_version(r)?,
            },
            _ => return Err(r.error("unknown response tag")),
        })
    }
}

impl Wire for PutResponse {
    fn write(&self, w: &mut Writer) {
        self.prev_kv.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(PutResponse {
            prev_kv: Option::<KeyValue>::read(r)?,
        })
    }
}

impl Wire for DeleteResponse {
    fn write(&self, w: &mut Writer) {
        w.varint(self.deleted);
        self.prev_kvs.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DeleteResponse {
            deleted: r.varint()?,
            prev_kvs: Vec::<KeyValue>::read(r)?,
        })
    }
}

impl Wire for RangeResponse {
    fn write(&self, w: &mut Writer) {
        self.kvs.write(w);
        w.bool(self.more);
        w.varint(self.count);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RangeResponse {
            kvs: Vec::<KeyValue>::read(r)?,
            more: r.bool()?,
            count: r.varint()?,
        })
    }
}

impl Wire for CasResponse {
    fn write(&self, w: &mut Writer) {
        w.bool(self.succeeded);
        self.current.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CasResponse {
            succeeded: r.bool()?,
            current: Option::<KeyValue>::read(r)?,
        })
    }
}

impl Wire for TxnResponse {
    fn write(&self, w: &mut Writer) {
        w.bool(self.succeeded);
        self.responses.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxnResponse {
            succeeded: r.bool()?,
            responses: Vec::<TxnOpResponse>::read(r)?,
        })
    }
}

impl Wire for TxnOpResponse {
    fn write(&self, w: &mut Writer) {
        match self {
            TxnOpResponse::Put(put) => {
                w.u8(0);
                put.write(w);
            }
            TxnOpResponse::Delete(delete) => {
                w.u8(1);
                delete.write(w);
            }
            TxnOpResponse::Range(range) => {
                w.u8(2);
                range.write(w);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => TxnOpResponse::Put(PutResponse::read(r)?),
            1 => TxnOpResponse::Delete(DeleteResponse::read(r)?),
            2 => TxnOpResponse::Range(RangeResponse::read(r)?),
            _ => return Err(r.error("unknown txn op response tag")),
        })
    }
}
