//! `Command::AuditAnchor`: an audit chain head carried through the log. It must round-trip
//! through bytes and JSON, change no key, revision or session, and hand the anchor back.

use keel_kv::*;
use proptest::prelude::*;

fn anchor(node: u64, seq: u64, fill: u8) -> Command {
    let mut head = [fill; AUDIT_HEAD_BYTES];
    head[0] = 0xa5;
    head[AUDIT_HEAD_BYTES - 1] = fill.wrapping_add(1);
    Command::AuditAnchor { node, seq, head }
}

fn put(key: &str, value: &str, session: Option<SessionTag>) -> Command {
    Command::Write {
        session,
        request: WriteRequest::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: false,
        }),
    }
}

#[test]
fn encoding_is_a_new_tag_after_the_version_byte() {
    let command = anchor(7, 300, 0x11);
    let bytes = command.encode();
    assert_eq!(bytes[0], COMMAND_ENCODING_VERSION);
    assert_eq!(
        bytes[1], 3,
        "tag 3: after RegisterSession 0, KeepAlive 1, Write 2"
    );
    assert_eq!(bytes[2], 7, "node as varint");
    assert_eq!(&bytes[3..5], &[0xac, 0x02], "seq 300 as varint");
    assert_eq!(bytes.len(), 5 + AUDIT_HEAD_BYTES, "head is 32 raw bytes");
    assert_eq!(Command::decode(&bytes).unwrap(), command);
    // Older commands keep their bytes: RegisterSession is still [version, 0].
    assert_eq!(
        Command::RegisterSession.encode(),
        vec![COMMAND_ENCODING_VERSION, 0]
    );
}

#[test]
fn truncated_or_padded_anchor_is_refused() {
    let bytes = anchor(1, 2, 3).encode();
    for cut in 2..bytes.len() {
        assert!(Command::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(Command::decode(&padded).is_err());
}

#[test]
fn apply_changes_no_key_revision_or_session_and_returns_the_anchor() {
    let mut machine = StateMachine::new(Config::default());
    let registered = machine.apply(1, 1_000, &Command::RegisterSession.encode());
    let Ok(Response::SessionRegistered { client_id }) = registered.result else {
        panic!("{registered:?}")
    };
    let tag = SessionTag {
        client_id,
        seq: 1,
        lowest_unacked_seq: 1,
    };
    let first = machine.apply(2, 1_001, &put("k", "v", Some(tag)).encode());
    assert_eq!(first.revision, 1);
    let snapshot_before = machine.snapshot();
    let sessions_before = machine.session_table_bytes();

    let command = anchor(2, 41, 0xee);
    let result = machine.apply(3, 1_002, &command.encode());
    let Command::AuditAnchor { node, seq, head } = command else {
        unreachable!()
    };
    assert_eq!(
        result.result,
        Ok(Response::AuditAnchored { node, seq, head })
    );
    assert_eq!(result.index, 3);
    assert_eq!(result.revision, 1, "anchor does not bump the revision");
    assert!(!result.duplicate);
    assert_eq!(machine.revision(), 1);
    assert_eq!(machine.key_count(), 1);
    assert_eq!(machine.get(b"k").unwrap().body.unwrap().mod_revision, 1);
    assert_eq!(machine.session_count(), 1);
    assert_eq!(machine.session_table_bytes(), sessions_before);
    // The snapshot differs only by the applied index and time it records.
    assert_ne!(machine.snapshot(), snapshot_before);
    let mut noop_twin = StateMachine::restore(Config::default(), &snapshot_before).unwrap();
    noop_twin.apply_noop(3, 1_002);
    assert_eq!(
        machine.snapshot(),
        noop_twin.snapshot(),
        "an anchor is a no-op for the state"
    );

    // Sessions unaffected: a retry of the tagged write is still answered from the cache.
    let retry = machine.apply(4, 1_003, &put("k", "v", Some(tag)).encode());
    assert!(retry.duplicate);
    assert_eq!(retry.revision, 1);
    assert_eq!(machine.revision(), 1);
}

#[test]
fn apply_result_round_trips_through_bytes_and_json() {
    let mut machine = StateMachine::new(Config::default());
    let result = machine.apply(1, 5, &anchor(u64::MAX, u64::MAX, 0).encode());
    assert_eq!(ApplyResult::decode(&result.encode()).unwrap(), result);
    let json = serde_json::to_string(&result).unwrap();
    assert_eq!(serde_json::from_str::<ApplyResult>(&json).unwrap(), result);
}

proptest! {
    #[test]
    fn anchors_round_trip_and_never_touch_the_store(
        node in any::<u64>(),
        seq in any::<u64>(),
        head in proptest::array::uniform32(any::<u8>()),
        puts in 0usize..4,
    ) {
        let command = Command::AuditAnchor { node, seq, head };
        let bytes = command.encode();
        prop_assert_eq!(Command::decode(&bytes).unwrap(), command.clone());
        let json = serde_json::to_string(&command).unwrap();
        prop_assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command.clone());

        let mut machine = StateMachine::new(Config::default());
        let mut index = 0;
        for i in 0..puts {
            index += 1;
            machine.apply(index, index, &put(&format!("k{i}"), "v", None).encode());
        }
        let revision = machine.revision();
        index += 1;
        let result = machine.apply(index, index, &bytes);
        prop_assert_eq!(result.revision, revision);
        prop_assert_eq!(machine.revision(), revision);
        prop_assert_eq!(machine.key_count(), puts);
        prop_assert_eq!(result.result, Ok(Response::AuditAnchored { node, seq, head }));
    }
}
