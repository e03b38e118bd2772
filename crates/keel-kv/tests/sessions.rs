//! Client sessions: registration, dedup, acknowledgement floor, window, expiry, eviction.

use keel_kv::*;

const TTL_MS: u64 = 10_000;

struct Harness {
    machine: StateMachine,
    index: u64,
}

impl Harness {
    fn new(config: Config) -> Self {
        Harness {
            machine: StateMachine::new(config),
            index: 0,
        }
    }
    fn apply_at(&mut self, time_ms: u64, command: &Command) -> ApplyResult {
        self.index += 1;
        self.machine.apply(self.index, time_ms, &command.encode())
    }
    fn register(&mut self, time_ms: u64) -> u64 {
        let result = self.apply_at(time_ms, &Command::RegisterSession);
        let Ok(Response::SessionRegistered { client_id }) = result.result else {
            panic!("{result:?}")
        };
        assert_eq!(client_id, self.index, "client id is the log index");
        client_id
    }
}

fn config() -> Config {
    Config {
        session_ttl_ms: TTL_MS,
        ..Config::default()
    }
}

fn tagged_put(client_id: u64, seq: u64, lowest_unacked_seq: u64, value: &str) -> Command {
    Command::Write {
        session: Some(SessionTag {
            client_id,
            seq,
            lowest_unacked_seq,
        }),
        request: WriteRequest::Put(PutRequest {
            key: b"k".to_vec(),
            value: value.as_bytes().to_vec(),
            prev_kv: true,
        }),
    }
}

fn code(result: &ApplyResult) -> &'static str {
    result.result.as_ref().unwrap_err().code()
}

#[test]
fn duplicate_returns_original_result_without_applying_again() {
    let mut h = Harness::new(config());
    let client = h.register(0);
    let first = h.apply_at(1, &tagged_put(client, 1, 1, "a"));
    assert_eq!(first.revision, 1);
    let snapshot_after_first = h.machine.snapshot();

    // Other writes happen in between.
    h.apply_at(2, &tagged_put(client, 2, 1, "b"));
    let retry = h.apply_at(3, &tagged_put(client, 1, 1, "a"));
    assert!(retry.duplicate);
    assert_eq!(retry.revision, first.revision, "original revision");
    assert_eq!(retry.result, first.result, "original result");
    let kv = h.machine.get(b"k").unwrap().body.unwrap();
    assert_eq!((kv.version, kv.value.as_slice()), (2, b"b".as_slice()));
    assert_eq!(h.machine.revision(), 2);
    assert_ne!(snapshot_after_first, h.machine.snapshot());
}

#[test]
fn dedup_disabled_mutant_reapplies_duplicates() {
    let mut h = Harness::new(Config {
        dedup_disabled: true,
        ..config()
    });
    let client = h.register(0);
    h.apply_at(1, &tagged_put(client, 1, 1, "a"));
    let retry = h.apply_at(2, &tagged_put(client, 1, 1, "a"));
    assert!(!retry.duplicate);
    assert_eq!(retry.revision, 2);
    assert_eq!(h.machine.get(b"k").unwrap().body.unwrap().version, 2);
}

#[test]
fn acknowledged_results_are_discarded_and_old_seqs_refused() {
    let mut h = Harness::new(config());
    let client = h.register(0);
    for seq in 1..=3 {
        h.apply_at(seq, &tagged_put(client, seq, 1, "v"));
    }
    // The client acknowledges everything below 3.
    let fourth = h.apply_at(10, &tagged_put(client, 4, 3, "v"));
    assert!(fourth.result.is_ok());
    let old = h.apply_at(11, &tagged_put(client, 2, 2, "v"));
    assert_eq!(
        old.result,
        Err(KvError::SeqDiscarded {
            seq: 2,
            floor_seq: 3
        })
    );
    let discarded = h.apply_at(12, &tagged_put(client, 2, 1, "v"));
    assert_eq!(
        discarded.result,
        Err(KvError::SeqDiscarded {
            seq: 2,
            floor_seq: 3
        })
    );
    assert_eq!(discarded.result.as_ref().unwrap_err().field(), Some("seq"));
    // seq 3 is still cached (>= floor).
    let third = h.apply_at(13, &tagged_put(client, 3, 3, "v"));
    assert!(third.duplicate);
    assert_eq!(h.machine.revision(), 4);
}

#[test]
fn floor_above_own_seq_is_a_bad_request() {
    let mut h = Harness::new(config());
    let client = h.register(0);
    let result = h.apply_at(1, &tagged_put(client, 2, 3, "v"));
    assert_eq!(
        result.result.as_ref().unwrap_err().field(),
        Some("lowest_unacked_seq")
    );
    assert_eq!(h.machine.revision(), 0);
}

#[test]
fn full_window_refuses_new_seqs_without_executing() {
    let mut h = Harness::new(Config {
        session_results_max: 2,
        ..config()
    });
    let client = h.register(0);
    h.apply_at(1, &tagged_put(client, 1, 1, "v"));
    h.apply_at(2, &tagged_put(client, 2, 1, "v"));
    let third = h.apply_at(3, &tagged_put(client, 3, 1, "v"));
    assert_eq!(
        third.result,
        Err(KvError::SessionWindowFull { results_max: 2 })
    );
    assert_eq!(h.machine.revision(), 2);
    // Duplicates inside the window are still answered.
    assert!(h.apply_at(4, &tagged_put(client, 2, 1, "v")).duplicate);
    // Acknowledging frees the window; seq 3 then runs (it never ran before).
    let retried = h.apply_at(5, &tagged_put(client, 3, 2, "v"));
    assert!(!retried.duplicate);
    assert_eq!(retried.revision, 3);
}

#[test]
fn sessions_expire_by_entry_time_and_writes_get_session_expired() {
    let mut h = Harness::new(config());
    let client = h.register(1_000);
    h.apply_at(1_000 + TTL_MS - 1, &tagged_put(client, 1, 1, "v"));
    // Still alive one ms before the ttl after its last activity.
    let alive = h.apply_at(1_000 + 2 * TTL_MS - 2, &tagged_put(client, 2, 1, "v"));
    assert!(alive.result.is_ok());
    // A no-op far in the future expires it; nothing re-executes afterwards.
    h.machine.apply_noop(h.index + 1, 1_000 + 3 * TTL_MS);
    h.index += 1;
    assert_eq!(h.machine.session_count(), 0);
    let revision = h.machine.revision();
    let expired = h.apply_at(1_000 + 3 * TTL_MS, &tagged_put(client, 2, 1, "v"));
    assert_eq!(code(&expired), "SESSION_EXPIRED");
    assert!(!expired.duplicate);
    assert_eq!(h.machine.revision(), revision);
    let keep_alive = h.apply_at(
        1_000 + 3 * TTL_MS,
        &Command::KeepAlive { client_id: client },
    );
    assert_eq!(code(&keep_alive), "SESSION_EXPIRED");
}

#[test]
fn unknown_session_gets_session_expired() {
    let mut h = Harness::new(config());
    let result = h.apply_at(0, &tagged_put(42, 1, 1, "v"));
    assert_eq!(
        result.result,
        Err(KvError::SessionExpired { client_id: 42 })
    );
    assert_eq!(h.machine.revision(), 0);
}

#[test]
fn keep_alive_postpones_expiry_and_time_never_goes_back() {
    let mut h = Harness::new(config());
    let client = h.register(0);
    let kept = h.apply_at(TTL_MS - 1, &Command::KeepAlive { client_id: client });
    assert_eq!(
        kept.result,
        Ok(Response::SessionKeptAlive { client_id: client })
    );
    // An entry stamped earlier (a new leader with a slower clock) does not move time back.
    h.apply_at(5, &Command::KeepAlive { client_id: client });
    assert_eq!(h.machine.time_ms(), TTL_MS - 1);
    h.machine.apply_noop(h.index + 1, 2 * TTL_MS - 2);
    assert_eq!(h.machine.session_count(), 1);
    h.machine.apply_noop(h.index + 2, 2 * TTL_MS - 1);
    assert_eq!(h.machine.session_count(), 0);
}

#[test]
fn registering_beyond_the_bound_evicts_the_oldest_idle_session() {
    let mut h = Harness::new(Config {
        sessions_max: 2,
        ..config()
    });
    let first = h.register(0);
    let second = h.register(1);
    // `first` becomes the most recently active.
    h.apply_at(2, &Command::KeepAlive { client_id: first });
    let third = h.register(3);
    assert_eq!(h.machine.session_count(), 2);
    let evicted = h.apply_at(4, &Command::KeepAlive { client_id: second });
    assert_eq!(code(&evicted), "SESSION_EXPIRED");
    for alive in [first, third] {
        assert!(h
            .apply_at(5, &Command::KeepAlive { client_id: alive })
            .result
            .is_ok());
    }
}

#[test]
fn session_table_survives_snapshot_and_dedups_after_restore() {
    let mut h = Harness::new(config());
    let client = h.register(0);
    let first = h.apply_at(1, &tagged_put(client, 1, 1, "v"));
    let table = h.machine.session_table_bytes();
    assert!(!table.is_empty());
    let mut restored = StateMachine::restore(config(), &h.machine.snapshot()).unwrap();
    assert_eq!(restored.session_table_bytes(), table);
    let retry = restored.apply(h.index + 1, 2, &tagged_put(client, 1, 1, "v").encode());
    assert!(retry.duplicate);
    assert_eq!(retry.result, first.result);
    // The retry refreshed the session's last activity, nothing else.
    assert_ne!(restored.session_table_bytes(), table);
    assert_eq!(restored.revision(), 1);
}
