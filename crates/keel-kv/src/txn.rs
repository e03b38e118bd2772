//! Validation and execution of writes (put, delete, compare-and-swap, transactions).
//!
//! A write is validated completely before any of it runs, so execution cannot fail half-way:
//! every write is atomic. All modifications of one command share one new revision.

use crate::command::{CasRequest, DeleteRequest, PutRequest, RangeRequest, TxnOp, WriteRequest};
use crate::config::Config;
use crate::error::{KvError, TxnBranch};
use crate::response::{CasResponse, Response, TxnOpResponse, TxnResponse};
use crate::store::Store;
use crate::types::{CompareOp, KeyRange};

pub(crate) fn validate_key(key: &[u8], config: &Config) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::KeyEmpty);
    }
    validate_key_bytes(key, config)
}

/// Length check only (range bounds and prefixes may be empty).
fn validate_key_bytes(key: &[u8], config: &Config) -> Result<(), KvError> {
    if key.len() > config.key_bytes_max {
        return Err(KvError::KeyTooLarge {
            size_bytes: key.len() as u64,
            max_bytes: config.key_bytes_max as u64,
        });
    }
    Ok(())
}

fn validate_value(value: &[u8], config: &Config) -> Result<(), KvError> {
    if value.len() > config.value_bytes_max {
        return Err(KvError::ValueTooLarge {
            size_bytes: value.len() as u64,
            max_bytes: config.value_bytes_max as u64,
        });
    }
    Ok(())
}

pub(crate) fn validate_key_range(range: &KeyRange, config: &Config) -> Result<(), KvError> {
    match range {
        KeyRange::Key(key) => validate_key(key, config),
        KeyRange::Prefix(prefix) => validate_key_bytes(prefix, config),
        KeyRange::Interval { start, end } => {
            validate_key_bytes(start, config)?;
            if let Some(end) = end {
                validate_key_bytes(end, config)?;
                if end.as_slice() <= start.as_slice() {
                    return Err(KvError::RangeEndNotAfterStart);
                }
            }
            Ok(())
        }
    }
}

/// Validates a range request and returns its effective limit (0 means `range_limit_max`).
pub(crate) fn validate_range(request: &RangeRequest, config: &Config) -> Result<u64, KvError> {
    validate_key_range(&request.range, config)?;
    if request.limit > config.range_limit_max {
        return Err(KvError::RangeLimitTooLarge {
            limit: request.limit,
            max: config.range_limit_max,
        });
    }
    let limit = if request.limit == 0 {
        config.range_limit_max
    } else {
        request.limit
    };
    assert!(limit >= 1 && limit <= config.range_limit_max);
    Ok(limit)
}

fn validate_put(put: &PutRequest, config: &Config) -> Result<(), KvError> {
    validate_key(&put.key, config)?;
    validate_value(&put.value, config)
}

fn validate_delete(delete: &DeleteRequest, config: &Config) -> Result<(), KvError> {
    validate_key_range(&delete.range, config)
}

fn validate_ops(ops: &[TxnOp], branch: TxnBranch, config: &Config) -> Result<(), KvError> {
    if ops.len() > config.txn_ops_max {
        return Err(KvError::TooManyOps {
            branch,
            count: ops.len() as u64,
            max: config.txn_ops_max as u64,
        });
    }
    for op in ops {
        match op {
            TxnOp::Put(put) => validate_put(put, config)?,
            TxnOp::Delete(delete) => validate_delete(delete, config)?,
            TxnOp::Range(range) => {
                validate_range(range, config)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_write(request: &WriteRequest, config: &Config) -> Result<(), KvError> {
    match request {
        WriteRequest::Put(put) => validate_put(put, config),
        WriteRequest::Delete(delete) => validate_delete(delete, config),
        WriteRequest::CompareAndSwap(cas) => {
            validate_key(&cas.key, config)?;
            if let crate::types::CompareTarget::Value(expected) = &cas.expected {
                validate_value(expected, config)?;
            }
            validate_value(&cas.value, config)
        }
        WriteRequest::Txn(txn) => {
            if txn.compares.len() > config.txn_compares_max {
                return Err(KvError::TooManyCompares {
                    count: txn.compares.len() as u64,
                    max: config.txn_compares_max as u64,
                });
            }
            for compare in &txn.compares {
                validate_key(&compare.key, config)?;
                if let crate::types::CompareTarget::Value(expected) = &compare.target {
                    validate_value(expected, config)?;
                }
            }
            validate_ops(&txn.success, TxnBranch::Success, config)?;
            validate_ops(&txn.failure, TxnBranch::Failure, config)
        }
    }
}

/// Validates and executes one write; returns the response (the revision is the store's after).
pub(crate) fn execute_write(
    store: &mut Store,
    request: &WriteRequest,
    config: &Config,
) -> Result<Response, KvError> {
    validate_write(request, config)?;
    let revision_before = store.revision;
    let mut batch = store.begin();
    let response = match request {
        WriteRequest::Put(put) => {
            Response::Put(store.put(&mut batch, &put.key, &put.value, put.prev_kv))
        }
        WriteRequest::Delete(delete) => {
            Response::Delete(store.delete(&mut batch, &delete.range, delete.prev_kv))
        }
        WriteRequest::CompareAndSwap(cas) => {
            Response::CompareAndSwap(execute_cas(store, &mut batch, cas))
        }
        WriteRequest::Txn(txn) => {
            let succeeded = txn
                .compares
                .iter()
                .all(|c| store.compare(&c.key, c.op, &c.target));
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            let mut responses = Vec::with_capacity(ops.len());
            for op in ops {
                responses.push(match op {
                    TxnOp::Put(put) => {
                        TxnOpResponse::Put(store.put(&mut batch, &put.key, &put.value, put.prev_kv))
                    }
                    TxnOp::Delete(delete) => TxnOpResponse::Delete(store.delete(
                        &mut batch,
                        &delete.range,
                        delete.prev_kv,
                    )),
                    TxnOp::Range(range) => {
                        let limit = validate_range(range, config).expect("validated above");
                        TxnOpResponse::Range(store.range(
                            &range.range,
                            limit,
                            config.range_response_bytes_max,
                        ))
                    }
                });
            }
            assert!(responses.len() == ops.len());
            Response::Txn(TxnResponse {
                succeeded,
                responses,
            })
        }
    };
    let changed = batch.changed;
    store.finish(batch);
    assert!(store.revision == revision_before + u64::from(changed));
    Ok(response)
}

fn execute_cas(
    store: &mut Store,
    batch: &mut crate::store::WriteBatch,
    cas: &CasRequest,
) -> CasResponse {
    if store.compare(&cas.key, CompareOp::Equal, &cas.expected) {
        store.put(batch, &cas.key, &cas.value, false);
        CasResponse {
            succeeded: true,
            current: None,
        }
    } else {
        CasResponse {
            succeeded: false,
            current: store.get(&cas.key),
        }
    }
}
