//! Errors a command or read can produce. Each has a machine-readable `code()` from the list in
//! the degraded-modes issue (BAD_REQUEST with the field at fault, SESSION_EXPIRED) so the server
//! maps them to HTTP without string matching. A failed transaction compare is NOT an error: the
//! transaction runs its `failure` branch and reports `succeeded: false`.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire, Writer};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KvError {
    /// A single key was empty (field `key`).
    KeyEmpty,
    /// A key (or range bound) was longer than `key_bytes_max` (field `key`).
    KeyTooLarge { size_bytes: u64, max_bytes: u64 },
    /// A value was longer than `value_bytes_max` (field `value`).
    ValueTooLarge { size_bytes: u64, max_bytes: u64 },
    /// An interval's end was not greater than its start (field `range_end`).
    RangeEndNotAfterStart,
    /// A range `limit` above `range_limit_max` (field `limit`).
    RangeLimitTooLarge { limit: u64, max: u64 },
    /// Too many compares in a transaction (field `compares`).
    TooManyCompares { count: u64, max: u64 },
    /// Too many operations in a transaction branch (field `success` or `failure`).
    TooManyOps {
        branch: TxnBranch,
        count: u64,
        max: u64,
    },
    /// The request's `lowest_unacked_seq` was above its own `seq` (field `lowest_unacked_seq`).
    AckFloorAboveSeq { seq: u64, lowest_unacked_seq: u64 },
    /// The seq is below the session's acknowledged floor: its result was discarded, so the
    /// state machine cannot answer it and will not execute it again (field `seq`).
    SeqDiscarded { seq: u64, floor_seq: u64 },
    /// The session already holds `session_results_max` unacknowledged results; the new seq was
    /// not executed. Advance `lowest_unacked_seq` and retry (field `seq`).
    SessionWindowFull { results_max: u64 },
    /// The session is unknown or expired; the command was not executed.
    SessionExpired { client_id: u64 },
    /// The command bytes did not decode (field `command`).
    MalformedCommand { reason: String },
}

/// Which branch of a transaction an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnBranch {
    Success,
    Failure,
}

impl KvError {
    /// The machine-readable code (issue 6): `BAD_REQUEST` or `SESSION_EXPIRED`.
    pub fn code(&self) -> &'static str {
        match self {
            KvError::SessionExpired { .. } => "SESSION_EXPIRED",
            _ => "BAD_REQUEST",
        }
    }

    /// The request field at fault, for BAD_REQUEST errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            KvError::KeyEmpty | KvError::KeyTooLarge { .. } => Some("key"),
            KvError::ValueTooLarge { .. } => Some("value"),
            KvError::RangeEndNotAfterStart => Some("range_end"),
            KvError::RangeLimitTooLarge { .. } => Some("limit"),
            KvError::TooManyCompares { .. } => Some("compares"),
            KvError::TooManyOps {
                branch: TxnBranch::Success,
                ..
            } => Some("success"),
            KvError::TooManyOps {
                branch: TxnBranch::Failure,
                ..
            } => Some("failure"),
            KvError::AckFloorAboveSeq { .. } => Some("lowest_unacked_seq"),
            KvError::SeqDiscarded { .. } | KvError::SessionWindowFull { .. } => Some("seq"),
            KvError::MalformedCommand { .. } => Some("command"),
            KvError::SessionExpired { .. } => None,
        }
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::KeyEmpty => write!(f, "key must not be empty"),
            KvError::KeyTooLarge {
                size_bytes,
                max_bytes,
            } => write!(f, "key is {size_bytes} bytes, the limit is {max_bytes}"),
            KvError::ValueTooLarge {
                size_bytes,
                max_bytes,
            } => write!(f, "value is {size_bytes} bytes, the limit is {max_bytes}"),
            KvError::RangeEndNotAfterStart => write!(f, "range_end must be greater than key"),
            KvError::RangeLimitTooLarge { limit, max } => {
                write!(f, "limit {limit} is above the maximum {max}")
            }
            KvError::TooManyCompares { count, max } => {
                write!(f, "{count} compares, the limit is {max}")
            }
            KvError::TooManyOps { branch, count, max } => {
                write!(
                    f,
                    "{count} operations in {branch:?} branch, the limit is {max}"
                )
            }
            KvError::AckFloorAboveSeq {
                seq,
                lowest_unacked_seq,
            } => write!(
                f,
                "lowest_unacked_seq {lowest_unacked_seq} is above the request's own seq {seq}"
            ),
            KvError::SeqDiscarded { seq, floor_seq } => write!(
                f,
                "seq {seq} is below the acknowledged floor {floor_seq}: its result was discarded"
            ),
            KvError::SessionWindowFull { results_max } => write!(
                f,
                "session holds {results_max} unacknowledged results; advance lowest_unacked_seq"
            ),
            KvError::SessionExpired { client_id } => {
                write!(
                    f,
                    "session {client_id} is unknown or expired; register a new one"
                )
            }
            KvError::MalformedCommand { reason } => write!(f, "malformed command: {reason}"),
        }
    }
}

impl std::error::Error for KvError {}

impl Wire for TxnBranch {
    fn write(&self, w: &mut Writer) {
        w.u8(match self {
            TxnBranch::Success => 0,
            TxnBranch::Failure => 1,
        });
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            0 => Ok(TxnBranch::Success),
            1 => Ok(TxnBranch::Failure),
            _ => Err(r.error("unknown txn branch")),
        }
    }
}

impl Wire for KvError {
    fn write(&self, w: &mut Writer) {
        match self {
            KvError::KeyEmpty => w.u8(0),
            KvError::KeyTooLarge {
                size_bytes,
                max_bytes,
            } => {
                w.u8(1);
                w.varint(*size_bytes);
                w.varint(*max_bytes);
            }
            KvError::ValueTooLarge {
                size_bytes,
                max_bytes,
            } => {
                w.u8(2);
                w.varint(*size_bytes);
                w.varint(*max_bytes);
            }
            KvError::RangeEndNotAfterStart => w.u8(3),
            KvError::RangeLimitTooLarge { limit, max } => {
                w.u8(4);
                w.varint(*limit);
                w.varint(*max);
            }
            KvError::TooManyCompares { count, max } => {
                w.u8(5);
                w.varint(*count);
                w.varint(*max);
            }
            KvError::TooManyOps { branch, count, max } => {
                w.u8(6);
                branch.write(w);
                w.varint(*count);
                w.varint(*max);
            }
            KvError::AckFloorAboveSeq {
                seq,
                lowest_unacked_seq,
            } => {
                w.u8(7);
                w.varint(*seq);
                w.varint(*lowest_unacked_seq);
            }
            KvError::SeqDiscarded { seq, floor_seq } => {
                w.u8(8);
                w.varint(*seq);
                w.varint(*floor_seq);
            }
            KvError::SessionWindowFull { results_max } => {
                w.u8(9);
                w.varint(*results_max);
            }
            KvError::SessionExpired { client_id } => {
                w.u8(10);
                w.varint(*client_id);
            }
            KvError::MalformedCommand { reason } => {
                w.u8(11);
                w.bytes(reason.as_bytes());
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => KvError::KeyEmpty,
            1 => KvError::KeyTooLarge {
                size_bytes: r.varint()?,
                max_bytes: r.varint()?,
            },
            2 => KvError::ValueTooLarge {
                size_bytes: r.varint()?,
                max_bytes: r.varint()?,
            },
            3 => KvError::RangeEndNotAfterStart,
            4 => KvError::RangeLimitTooLarge {
                limit: r.varint()?,
                max: r.varint()?,
            },
            5 => KvError::TooManyCompares {
                count: r.varint()?,
                max: r.varint()?,
            },
            6 => KvError::TooManyOps {
                branch: TxnBranch::read(r)?,
                count: r.varint()?,
                max: r.varint()?,
            },
            7 => KvError::AckFloorAboveSeq {
                seq: r.varint()?,
                lowest_unacked_seq: r.varint()?,
            },
            8 => KvError::SeqDiscarded {
                seq: r.varint()?,
                floor_seq: r.varint()?,
            },
            9 => KvError::SessionWindowFull {
                results_max: r.varint()?,
            },
            10 => KvError::SessionExpired {
                client_id: r.varint()?,
            },
            11 => KvError::MalformedCommand {
                reason: r.string()?,
            },
            _ => return Err(r.error("unknown error tag")),
        })
    }
}
