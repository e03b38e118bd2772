//! One test per operation: put, get, range, delete, compare-and-swap, txn, limits, snapshot.

use keel_kv::*;

fn put(key: &str, value: &str) -> Command {
    Command::Write {
        session: None,
        request: WriteRequest::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: true,
        }),
    }
}

fn write(request: WriteRequest) -> Command {
    Command::Write {
        session: None,
        request,
    }
}

struct Harness {
    machine: StateMachine,
    index: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }
    fn with(config: Config) -> Self {
        Harness {
            machine: StateMachine::new(config),
            index: 0,
        }
    }
    fn apply(&mut self, command: &Command) -> ApplyResult {
        self.index += 1;
        let result = self
            .machine
            .apply(self.index, 1_000 + self.index, &command.encode());
        assert_eq!(result.index, self.index);
        result
    }
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.machine.get(key.as_bytes()).unwrap().body
    }
}

fn bad_field(result: &ApplyResult) -> Option<&'static str> {
    match &result.result {
        Err(error) => {
            assert_eq!(error.code(), "BAD_REQUEST");
            error.field()
        }
        Ok(response) => panic!("expected an error, got {response:?}"),
    }
}

#[test]
fn put_creates_then_updates_with_revisions_and_versions() {
    let mut h = Harness::new();
    let first = h.apply(&put("a", "1"));
    assert_eq!(first.revision, 1);
    assert_eq!(
        first.result,
        Ok(Response::Put(PutResponse { prev_kv: None }))
    );
    let kv = h.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 1, 1));

    h.apply(&put("b", "x"));
    let third = h.apply(&put("a", "2"));
    assert_eq!(third.revision, 3);
    let Ok(Response::Put(PutResponse {
        prev_kv: Some(prev),
    })) = third.result
    else {
        panic!("expected prev_kv: {third:?}");
    };
    assert_eq!(prev.value, b"1");
    let kv = h.get("a").unwrap();
    assert_eq!(kv.value, b"2");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
}

#[test]
fn delete_single_and_range_count_deleted_and_bump_revision_only_if_something_went() {
    let mut h = Harness::new();
    for key in ["a", "b1", "b2", "b3", "c"] {
        h.apply(&put(key, "v"));
    }
    assert_eq!(h.machine.revision(), 5);
    let missing = h.apply(&write(WriteRequest::Delete(DeleteRequest {
        range: KeyRange::Key(b"zz".to_vec()),
        prev_kv: false,
    })));
    assert_eq!(missing.revision, 5, "deleting nothing is not a write");
    let prefix = h.apply(&write(WriteRequest::Delete(DeleteRequest {
        range: KeyRange::Prefix(b"b".to_vec()),
        prev_kv: true,
    })));
    assert_eq!(prefix.revision, 6, "a range delete is one revision");
    let Ok(Response::Delete(deleted)) = prefix.result else {
        panic!()
    };
    assert_eq!(deleted.deleted, 3);
    assert_eq!(deleted.prev_kvs.len(), 3);
    assert_eq!(deleted.prev_kvs[0].key, b"b1");
    assert!(h.get("b2").is_none());
    assert_eq!(h.machine.key_count(), 2);

    // Re-creating a deleted key restarts its version and create revision.
    h.apply(&put("b1", "again"));
    let kv = h.get("b1").unwrap();
    assert_eq!((kv.create_revision, kv.version), (7, 1));
}

#[test]
fn range_by_prefix_and_interval_sorted_with_limit_more_and_count() {
    let mut h = Harness::new();
    for key in ["k3", "k1", "k2", "j", "l", "k10"] {
        h.apply(&put(key, "v"));
    }
    let read = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Prefix(b"k".to_vec()),
            limit: 2,
        })
        .unwrap();
    let keys: Vec<_> = read.body.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"k1".to_vec(), b"k10".to_vec()]);
    assert!(read.body.more);
    assert_eq!(read.body.count, 4);
    assert_eq!(read.header.revision, 6);
    assert_eq!(read.header.applied_index, 6);

    let interval = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Interval {
                start: b"k2".to_vec(),
                end: Some(b"l".to_vec()),
            },
            limit: 0,
        })
        .unwrap();
    let keys: Vec<_> = interval.body.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"k2".to_vec(), b"k3".to_vec()]);
    assert!(!interval.body.more);

    let unbounded = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Interval {
                start: b"k3".to_vec(),
                end: None,
            },
            limit: 0,
        })
        .unwrap();
    assert_eq!(unbounded.body.count, 2);
}

#[test]
fn range_response_bytes_are_capped_but_always_return_one() {
    let config = Config {
        range_response_bytes_max: 10,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    h.apply(&put("a", "0123456789abcdef"));
    h.apply(&put("b", "x"));
    let read = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Prefix(Vec::new()),
            limit: 0,
        })
        .unwrap();
    assert_eq!(read.body.kvs.len(), 1);
    assert!(read.body.more);
    assert_eq!(read.body.count, 2);
}

#[test]
fn compare_and_swap_on_value_and_mod_revision() {
    let mut h = Harness::new();
    let cas = |expected: CompareTarget, value: &str| {
        write(WriteRequest::CompareAndSwap(CasRequest {
            key: b"k".to_vec(),
            expected,
            value: value.as_bytes().to_vec(),
        }))
    };
    // ModRevision(0) means "absent": create-if-absent.
    let created = h.apply(&cas(CompareTarget::ModRevision(0), "v1"));
    assert_eq!(
        created.result,
        Ok(Response::CompareAndSwap(CasResponse {
            succeeded: true,
            current: None
        }))
    );
    assert_eq!(created.revision, 1);
    let again = h.apply(&cas(CompareTarget::ModRevision(0), "v2"));
    let Ok(Response::CompareAndSwap(failed)) = again.result else {
        panic!()
    };
    assert!(!failed.succeeded);
    assert_eq!(failed.current.unwrap().value, b"v1");
    assert_eq!(again.revision, 1, "a failed CAS writes nothing");

    let by_value = h.apply(&cas(CompareTarget::Value(b"v1".to_vec()), "v2"));
    assert_eq!(by_value.revision, 2);
    let stale_value = h.apply(&cas(CompareTarget::Value(b"v1".to_vec()), "v3"));
    assert_eq!(stale_value.revision, 2);
    let by_mod = h.apply(&cas(CompareTarget::ModRevision(2), "v3"));
    assert_eq!(by_mod.revision, 3);
    let by_version = h.apply(&cas(CompareTarget::Version(3), "v4"));
    assert_eq!(by_version.revision, 4);
    assert_eq!(h.get("k").unwrap().value, b"v4");
}

#[test]
fn txn_runs_success_or_failure_branch_atomically_as_one_revision() {
    let mut h = Harness::new();
    h.apply(&put("a", "1"));
    h.apply(&put("b", "1"));
    let txn = |compares: Vec<Compare>| {
        write(WriteRequest::Txn(TxnRequest {
            compares,
            success: vec![
                TxnOp::Put(PutRequest {
                    key: b"a".to_vec(),
                    value: b"2".to_vec(),
                    prev_kv: false,
                }),
                TxnOp::Delete(DeleteRequest {
                    range: KeyRange::Key(b"b".to_vec()),
                    prev_kv: false,
                }),
                TxnOp::Put(PutRequest {
                    key: b"c".to_vec(),
                    value: b"new".to_vec(),
                    prev_kv: false,
                }),
                TxnOp::Range(RangeRequest {
                    range: KeyRange::Prefix(Vec::new()),
                    limit: 0,
                }),
            ],
            failure: vec![TxnOp::Range(RangeRequest {
                range: KeyRange::Key(b"a".to_vec()),
                limit: 0,
            })],
        }))
    };
    let failing = h.apply(&txn(vec![
        Compare {
            key: b"a".to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Value(b"1".to_vec()),
        },
        Compare {
            key: b"b".to_vec(),
            op: CompareOp::Greater,
            target: CompareTarget::Version(5),
        },
    ]));
    assert_eq!(failing.revision, 2, "failure branch only reads");
    let Ok(Response::Txn(response)) = failing.result else {
        panic!()
    };
    assert!(!response.succeeded);
    assert_eq!(response.responses.len(), 1);

    let passing = h.apply(&txn(vec![
        Compare {
            key: b"a".to_vec(),
            op: CompareOp::NotEqual,
            target: CompareTarget::Value(b"9".to_vec()),
        },
        Compare {
            key: b"b".to_vec(),
            op: CompareOp::Less,
            target: CompareTarget::ModRevision(3),
        },
        Compare {
            key: b"missing".to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(0),
        },
    ]));
    assert_eq!(passing.revision, 3, "three writes, one revision");
    let Ok(Response::Txn(response)) = passing.result else {
        panic!()
    };
    assert!(response.succeeded);
    let TxnOpResponse::Range(range) = &response.responses[3] else {
        panic!()
    };
    // Reads inside a txn see the txn's earlier writes.
    let keys: Vec<_> = range.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(h.get("a").unwrap().mod_revision, 3);
    assert_eq!(h.get("c").unwrap().mod_revision, 3);
    assert!(h.get("b").is_none());
}

#[test]
fn value_compare_on_absent_key_is_false() {
    let mut h = Harness::new();
    let result = h.apply(&write(WriteRequest::Txn(TxnRequest {
        compares: vec![Compare {
            key: b"nope".to_vec(),
            op: CompareOp::NotEqual,
            target: CompareTarget::Value(b"x".to_vec()),
        }],
        success: vec![],
        failure: vec![],
    })));
    let Ok(Response::Txn(response)) = result.result else {
        panic!()
    };
    assert!(!response.succeeded);
}

#[test]
fn limits_are_enforced_with_the_field_at_fault_and_nothing_applied() {
    let config = Config {
        key_bytes_max: 8,
        value_bytes_max: 16,
        txn_ops_max: 2,
        txn_compares_max: 1,
        range_limit_max: 5,
        ..Config::default()
    };
    let mut h = Harness::with(config);
    assert_eq!(bad_field(&h.apply(&put("123456789", "v"))), Some("key"));
    assert_eq!(bad_field(&h.apply(&put("", "v"))), Some("key"));
    assert_eq!(
        bad_field(&h.apply(&put("k", &"v".repeat(17)))),
        Some("value")
    );
    let ok = h.apply(&put("12345678", &"v".repeat(16)));
    assert!(ok.result.is_ok());

    let op = TxnOp::Put(PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        prev_kv: false,
    });
    let too_many = h.apply(&write(WriteRequest::Txn(TxnRequest {
        compares: vec![],
        success: vec![op.clone(), op.clone(), op.clone()],
        failure: vec![],
    })));
    assert_eq!(bad_field(&too_many), Some("success"));
    let compare = Compare {
        key: b"k".to_vec(),
        op: CompareOp::Equal,
        target: CompareTarget::Version(0),
    };
    let too_many_compares = h.apply(&write(WriteRequest::Txn(TxnRequest {
        compares: vec![compare.clone(), compare],
        success: vec![],
        failure: vec![],
    })));
    assert_eq!(bad_field(&too_many_compares), Some("compares"));
    // One bad op anywhere refuses the whole txn: nothing of it is applied.
    let partly_bad = h.apply(&write(WriteRequest::Txn(TxnRequest {
        compares: vec![],
        success: vec![
            op,
            TxnOp::Put(PutRequest {
                key: b"far-too-long-key".to_vec(),
                value: Vec::new(),
                prev_kv: false,
            }),
        ],
        failure: vec![],
    })));
    assert_eq!(bad_field(&partly_bad), Some("key"));
    assert!(h.get("k").is_none());
    assert_eq!(h.machine.revision(), 1);

    let range_error = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Prefix(Vec::new()),
            limit: 6,
        })
        .unwrap_err();
    assert_eq!(range_error.field(), Some("limit"));
    let reversed = h
        .machine
        .range(&RangeRequest {
            range: KeyRange::Interval {
                start: b"b".to_vec(),
                end: Some(b"a".to_vec()),
            },
            limit: 0,
        })
        .unwrap_err();
    assert_eq!(reversed.field(), Some("range_end"));
    assert_eq!(h.machine.get(b"").unwrap_err().field(), Some("key"));
}

#[test]
fn malformed_command_is_a_bad_request_that_changes_nothing() {
    let mut h = Harness::new();
    h.apply(&put("a", "1"));
    let before = h.machine.snapshot();
    let result = h.machine.apply(2, 5_000, &[1, 2, 200]);
    assert_eq!(bad_field(&result), Some("command"));
    assert_eq!(result.revision, 1);
    assert_eq!(h.machine.applied_index(), 2);
    // Only the applied index and time moved.
    let mut expected = StateMachine::restore(Config::default(), &before).unwrap();
    expected.apply_noop(2, 5_000);
    assert_eq!(expected.snapshot(), h.machine.snapshot());
}

#[test]
#[should_panic(expected = "applied index must strictly increase")]
fn applying_an_old_index_panics() {
    let mut h = Harness::new();
    h.apply(&put("a", "1"));
    h.machine.apply(1, 0, &put("b", "1").encode());
}

#[test]
fn snapshot_restore_round_trips_and_rejects_corruption() {
    let mut h = Harness::new();
    h.apply(&Command::RegisterSession);
    for i in 0..20 {
        h.apply(&put(&format!("key{i}"), &format!("value{i}")));
    }
    let bytes = h.machine.snapshot();
    assert_eq!(&bytes[..8], b"KEELKVSN");
    let restored = StateMachine::restore(Config::default(), &bytes).unwrap();
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.revision(), 20);
    assert_eq!(restored.applied_index(), 21);
    assert_eq!(restored.session_count(), 1);

    for position in [0, 9, 13, bytes.len() / 2, bytes.len() - 1] {
        let mut corrupt = bytes.clone();
        corrupt[position] ^= 0x40;
        assert!(StateMachine::restore(Config::default(), &corrupt).is_err());
    }
    assert!(matches!(
        StateMachine::restore(Config::default(), &bytes[..bytes.len() - 1]),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
    assert!(matches!(
        StateMachine::restore(Config::default(), &bytes[..5]),
        Err(SnapshotError::TooShort { .. })
    ));
}

#[test]
fn results_encode_and_serialize_to_json() {
    let mut h = Harness::new();
    let result = h.apply(&put("a", "1"));
    assert_eq!(ApplyResult::decode(&result.encode()).unwrap(), result);
    let json = serde_json::to_string(&result).unwrap();
    let back: ApplyResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, result);
    let error = h.apply(&put("", "1"));
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["result"]["Err"]["kind"], "key_empty");
}

#[test]
fn golden_command_and_snapshot_bytes() {
    // Guards the documented formats (docs/kv.md): a change here is a format change.
    let command = Command::Write {
        session: Some(SessionTag {
            client_id: 300,
            seq: 2,
            lowest_unacked_seq: 1,
        }),
        request: WriteRequest::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            prev_kv: false,
        }),
    };
    // version, Write, Some, client_id 300 = varint [0xac, 0x02], seq, floor, Put, key, value, bool
    let expected = [1, 2, 1, 0xac, 0x02, 2, 1, 0, 1, b'a', 1, b'1', 0];
    assert_eq!(command.encode(), expected);

    let mut machine = StateMachine::new(Config::default());
    machine.apply(1, 5, &put("a", "1").encode());
    let snapshot = machine.snapshot();
    let mut body = b"KEELKVSN".to_vec();
    body.extend_from_slice(&2u32.to_le_bytes()); // format version
    body.extend_from_slice(&[1, 1, 5, 1]); // applied_index, revision, time_ms, cluster_version
    body.extend_from_slice(&[1, 1, b'a', 1, b'1', 1, 1, 1]); // one record
    body.push(0); // no sessions
    body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    assert_eq!(snapshot, body);

    // Format 1 (no cluster version field) is still read, as cluster version 1.
    let mut old = b"KEELKVSN".to_vec();
    old.extend_from_slice(&1u32.to_le_bytes());
    old.extend_from_slice(&[1, 1, 5]);
    old.extend_from_slice(&[1, 1, b'a', 1, b'1', 1, 1, 1]);
    old.push(0);
    old.extend_from_slice(&crc32c::crc32c(&old).to_le_bytes());
    let restored = StateMachine::restore(Config::default(), &old).unwrap();
    assert_eq!(restored.cluster_version(), 1);
    assert_eq!(restored.snapshot(), snapshot);

    let finalize = Command::SetClusterVersion { version: 2 };
    assert_eq!(finalize.encode(), [1, 4, 2]);
    assert_eq!(Command::decode(&[1, 4, 2]), Ok(finalize));
    assert!(Command::decode(&[1, 4, 0]).is_err(), "cluster version 0");
}

#[test]
fn cluster_version_is_raised_only_survives_snapshots_and_touches_no_key() {
    let mut machine = StateMachine::new(Config::default());
    machine.apply(1, 5, &put("a", "1").encode());
    assert_eq!(machine.cluster_version(), 1);
    let set = |v: u32| Command::SetClusterVersion { version: v }.encode();
    let result = machine.apply(2, 6, &set(3));
    assert_eq!(
        result.result,
        Ok(Response::ClusterVersionSet {
            version: 3,
            previous: 1
        })
    );
    assert_eq!(result.revision, 1, "no revision for a version change");
    // Lower and equal requests change nothing and say so.
    let result = machine.apply(3, 7, &set(2));
    assert_eq!(
        result.result,
        Ok(Response::ClusterVersionSet {
            version: 3,
            previous: 3
        })
    );
    assert_eq!(machine.cluster_version(), 3);
    let restored = StateMachine::restore(Config::default(), &machine.snapshot()).unwrap();
    assert_eq!(restored.cluster_version(), 3);
    assert_eq!(restored.revision(), 1);
    assert_eq!(restored.key_count(), 1);
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A snapshot with a correct checksum but the given header numbers and one record.
fn forged_snapshot(revision: u64, version: u64, create_revision: u64) -> Vec<u8> {
    let mut body = b"KEELKVSN".to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    varint(1, &mut body); // applied_index
    varint(revision, &mut body);
    varint(0, &mut body); // time_ms
    varint(1, &mut body); // one record
    body.extend_from_slice(&[1, b'k', 1, b'v']);
    varint(create_revision, &mut body);
    varint(revision, &mut body); // mod_revision
    varint(version, &mut body);
    body.push(0); // no sessions
    body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    body
}

#[test]
fn forged_snapshots_with_valid_checksums_are_refused() {
    let config = Config::default;
    assert!(StateMachine::restore(config(), &forged_snapshot(3, 2, 1)).is_ok());
    for (revision, version, create_revision) in [
        (1 << 62, 1, 1), // revision overflow bait
        (3, 1 << 62, 1), // version overflow bait
        (3, 0, 1),       // version 0
        (3, 1, 0),       // create_revision 0
        (3, 1, 4),       // create_revision above mod_revision
    ] {
        let result = StateMachine::restore(
            config(),
            &forged_snapshot(revision, version, create_revision),
        );
        assert!(
            matches!(result, Err(SnapshotError::Inconsistent { .. })),
            "{revision} {version} {create_revision}: {result:?}"
        );
    }
}
