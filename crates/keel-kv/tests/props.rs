//! Property tests: determinism, snapshot/restore equivalence, exactly-once, decoder robustness.
//!
//! Case counts are proptest's default (256) unless `PROPTEST_CASES` says otherwise, e.g.
//! `PROPTEST_CASES=5000 cargo test -p keel-kv --release --test props` for a longer run.

use std::collections::BTreeMap;

use keel_kv::*;
use proptest::prelude::*;

const TTL_MS: u64 = 60;

fn config() -> Config {
    Config {
        session_ttl_ms: TTL_MS,
        sessions_max: 4,
        session_results_max: 3,
        key_bytes_max: 3,
        value_bytes_max: 4,
        txn_ops_max: 3,
        txn_compares_max: 2,
        range_limit_max: 4,
        // Above 4 key-values of at most 7 bytes: all_kvs pages by `limit` alone.
        range_response_bytes_max: 64,
        dedup_disabled: false,
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"ab".to_vec()),
        Just(b"b".to_vec()),
        Just(vec![b'b', 0xff]),
        Just(b"c".to_vec()),
        // Sometimes invalid: empty or too long.
        proptest::collection::vec(any::<u8>(), 0..5),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, 0..6)
}

fn key_range() -> impl Strategy<Value = KeyRange> {
    prop_oneof![
        key().prop_map(KeyRange::Key),
        key().prop_map(KeyRange::Prefix),
        (key(), proptest::option::of(key()))
            .prop_map(|(start, end)| KeyRange::Interval { start, end }),
    ]
}

fn compare_target() -> impl Strategy<Value = CompareTarget> {
    prop_oneof![
        value().prop_map(CompareTarget::Value),
        (0u64..8).prop_map(CompareTarget::ModRevision),
        (0u64..4).prop_map(CompareTarget::Version),
        (0u64..8).prop_map(CompareTarget::CreateRevision),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Equal),
        Just(CompareOp::NotEqual),
        Just(CompareOp::Less),
        Just(CompareOp::Greater),
    ]
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (key(), value(), any::<bool>()).prop_map(|(key, value, prev_kv)| PutRequest {
        key,
        value,
        prev_kv,
    })
}

fn delete_request() -> impl Strategy<Value = DeleteRequest> {
    (key_range(), any::<bool>()).prop_map(|(range, prev_kv)| DeleteRequest { range, prev_kv })
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        put_request().prop_map(TxnOp::Put),
        delete_request().prop_map(TxnOp::Delete),
        (key_range(), 0u64..6)
            .prop_map(|(range, limit)| TxnOp::Range(RangeRequest { range, limit })),
    ]
}

fn write_request() -> impl Strategy<Value = WriteRequest> {
    prop_oneof![
        3 => put_request().prop_map(WriteRequest::Put),
        1 => delete_request().prop_map(WriteRequest::Delete),
        1 => (key(), compare_target(), value()).prop_map(|(key, expected, value)| {
            WriteRequest::CompareAndSwap(CasRequest { key, expected, value })
        }),
        2 => (
            proptest::collection::vec(
                (key(), compare_op(), compare_target())
                    .prop_map(|(key, op, target)| Compare { key, op, target }),
                0..3,
            ),
            proptest::collection::vec(txn_op(), 0..4),
            proptest::collection::vec(txn_op(), 0..4),
        )
            .prop_map(|(compares, success, failure)| {
                WriteRequest::Txn(TxnRequest { compares, success, failure })
            }),
    ]
}

fn session_tag() -> impl Strategy<Value = SessionTag> {
    // Client ids are log indexes of registrations: small numbers hit real sessions.
    (1u64..24, 1u64..6, 0u64..6).prop_map(|(client_id, seq, floor)| SessionTag {
        client_id,
        seq,
        lowest_unacked_seq: floor.min(seq),
    })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        2 => Just(Command::RegisterSession),
        1 => (1u64..24).prop_map(|client_id| Command::KeepAlive { client_id }),
        6 => (proptest::option::of(session_tag()), write_request())
            .prop_map(|(session, request)| Command::Write { session, request }),
    ]
}

/// An entry: time advance in ms, then a command or (None) a no-op entry.
fn entries() -> impl Strategy<Value = Vec<(u64, Option<Command>)>> {
    proptest::collection::vec(
        (0u64..25, proptest::option::weighted(0.9, command())),
        1..60,
    )
}

/// Applies entries from index `first_index`, returning every result (None for no-ops).
fn run(
    machine: &mut StateMachine,
    first_index: u64,
    start_time_ms: u64,
    entries: &[(u64, Option<Command>)],
) -> Vec<Option<ApplyResult>> {
    let mut time_ms = start_time_ms;
    let mut results = Vec::new();
    for (offset, (advance_ms, command)) in entries.iter().enumerate() {
        time_ms += advance_ms;
        let index = first_index + offset as u64;
        results.push(match command {
            Some(command) => Some(machine.apply(index, time_ms, &command.encode())),
            None => {
                machine.apply_noop(index, time_ms);
                None
            }
        });
    }
    results
}

fn all_kvs(machine: &StateMachine) -> Vec<KeyValue> {
    // Pages through the whole key space; each page starts at the previous page's last key
    // (inclusive, so the bound never exceeds key_bytes_max) and skips it.
    let mut kvs: Vec<KeyValue> = Vec::new();
    loop {
        let start = kvs.last().map_or_else(Vec::new, |kv| kv.key.clone());
        let read = machine
            .range(&RangeRequest {
                range: KeyRange::Interval { start, end: None },
                limit: 0,
            })
            .unwrap();
        let more = read.body.more;
        let skip = usize::from(!kvs.is_empty());
        let page: Vec<KeyValue> = read.body.kvs.into_iter().skip(skip).collect();
        let progressed = !page.is_empty();
        kvs.extend(page);
        if !more || !progressed {
            assert!(!more, "paging made no progress");
            return kvs;
        }
    }
}

fn is_refusal(result: &ApplyResult) -> bool {
    matches!(
        result.result,
        Err(KvError::SessionExpired { .. })
            | Err(KvError::SeqDiscarded { .. })
            | Err(KvError::SessionWindowFull { .. })
            | Err(KvError::AckFloorAboveSeq { .. })
    )
}

proptest! {
    #[test]
    fn same_commands_give_identical_state_and_results(entries in entries()) {
        let mut one = StateMachine::new(config());
        let mut two = StateMachine::new(config());
        let results_one = run(&mut one, 1, 0, &entries);
        let results_two = run(&mut two, 1, 0, &entries);
        prop_assert_eq!(results_one, results_two);
        prop_assert_eq!(one.snapshot(), two.snapshot());
        prop_assert_eq!(one.session_table_bytes(), two.session_table_bytes());
    }

    #[test]
    fn snapshot_restore_then_continue_equals_continuing(
        before in entries(),
        after in entries(),
    ) {
        let mut direct = StateMachine::new(config());
        run(&mut direct, 1, 0, &before);
        let snapshot = direct.snapshot();
        let mut restored = StateMachine::restore(config(), &snapshot).unwrap();
        prop_assert_eq!(restored.snapshot(), snapshot);
        let next_index = direct.applied_index() + 1;
        let now_ms = direct.time_ms();
        let results_direct = run(&mut direct, next_index, now_ms, &after);
        let results_restored = run(&mut restored, next_index, now_ms, &after);
        prop_assert_eq!(results_direct, results_restored);
        prop_assert_eq!(direct.snapshot(), restored.snapshot());
    }

    #[test]
    fn executed_session_writes_are_never_executed_twice(entries in entries()) {
        let mut machine = StateMachine::new(config());
        let mut executed: BTreeMap<(u64, u64), (Command, ApplyResult)> = BTreeMap::new();
        let mut time_ms = 0;
        for (index, (advance_ms, command)) in (1u64..).zip(entries.iter()) {
            time_ms += advance_ms;
            let Some(command) = command else {
                machine.apply_noop(index, time_ms);
                continue;
            };
            let revision_before = machine.revision();
            let kvs_before = all_kvs(&machine);
            let result = machine.apply(index, time_ms, &command.encode());
            if let Command::Write { session: Some(tag), .. } = command {
                if result.duplicate {
                    let (_, original) = &executed[&(tag.client_id, tag.seq)];
                    prop_assert_eq!(&result.result, &original.result);
                    prop_assert_eq!(result.revision, original.revision);
                    prop_assert_eq!(machine.revision(), revision_before);
                    prop_assert_eq!(all_kvs(&machine), kvs_before);
                } else if !is_refusal(&result) {
                    executed.insert((tag.client_id, tag.seq), (command.clone(), result));
                }
            }
        }
        // Replaying every executed write now: answered from the cache or refused, never run.
        for ((client_id, seq), (command, original)) in &executed {
            let Command::Write { request, .. } = command else { unreachable!() };
            let replay = Command::Write {
                session: Some(SessionTag { client_id: *client_id, seq: *seq, lowest_unacked_seq: 0 }),
                request: request.clone(),
            };
            let revision_before = machine.revision();
            let kvs_before = all_kvs(&machine);
            let index = machine.applied_index() + 1;
            let result = machine.apply(index, machine.time_ms(), &replay.encode());
            prop_assert!(result.duplicate || is_refusal(&result), "re-executed: {:?}", result);
            if result.duplicate {
                prop_assert_eq!(&result.result, &original.result);
                prop_assert_eq!(result.revision, original.revision);
            }
            prop_assert_eq!(machine.revision(), revision_before);
            prop_assert_eq!(all_kvs(&machine), kvs_before);
        }
    }

    #[test]
    fn commands_round_trip_through_bytes_and_json(command in command()) {
        let bytes = command.encode();
        prop_assert_eq!(Command::decode(&bytes).unwrap(), command.clone());
        let json = serde_json::to_string(&command).unwrap();
        prop_assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
    }

    #[test]
    fn results_round_trip_through_bytes(entries in entries()) {
        let mut machine = StateMachine::new(config());
        for result in run(&mut machine, 1, 0, &entries).into_iter().flatten() {
            prop_assert_eq!(ApplyResult::decode(&result.encode()).unwrap(), result);
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics_and_accepts_only_canonical(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(command) = Command::decode(&bytes) {
            prop_assert_eq!(command.encode(), bytes.clone());
        }
        if let Ok(result) = ApplyResult::decode(&bytes) {
            prop_assert_eq!(result.encode(), bytes.clone());
        }
        prop_assert!(StateMachine::restore(config(), &bytes).is_err());
        let mut machine = StateMachine::new(config());
        let result = machine.apply(1, 0, &bytes);
        prop_assert!(result.revision <= 1);
    }

    #[test]
    fn mutated_valid_commands_never_panic(
        command in command(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let original = command.encode();
        // The encoding is prefix-free: no strict prefix of a valid command decodes.
        prop_assert!(Command::decode(&original[..cut.index(original.len())]).is_err());
        let mut bytes = original;
        let at = position.index(bytes.len());
        bytes[at] = byte;
        if let Ok(decoded) = Command::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes.clone());
        }
    }

    #[test]
    fn corrupted_snapshots_are_refused_without_panic(
        entries in entries(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut machine = StateMachine::new(config());
        run(&mut machine, 1, 0, &entries);
        let mut bytes = machine.snapshot();
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(StateMachine::restore(config(), &bytes).is_err());
    }
}
