//! The client against tiny in-process mock nodes (axum on 127.0.0.1:0) that answer from a
//! script: leader-hint term rule, retry budget, same-seq retries, error decoding, timeouts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::Response;
use axum::Router;
use keel_client::{
    Client, ClientConfig, Error, ErrorCode, ReadLevel, ReadOptions, RetryHint, WriteOptions,
};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

struct Reply {
    status: u16,
    term: u64,
    body: Value,
    delay_ms: u64,
}

fn ok(term: u64, body: Value) -> Reply {
    Reply {
        status: 200,
        term,
        body,
        delay_ms: 0,
    }
}

fn err(status: u16, term: u64, body: Value) -> Reply {
    Reply {
        status,
        term,
        body,
        delay_ms: 0,
    }
}

/// Answers request `seen`, the `nth` (from 0) with the same method and path.
type Responder = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

struct Inner {
    log: Mutex<Vec<Seen>>,
    responder: Responder,
}

struct Mock {
    addr: String,
    inner: Arc<Inner>,
}

impl Mock {
    fn seen(&self) -> Vec<Seen> {
        self.inner.log.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .count()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let nth = {
        let mut log = inner.log.lock().unwrap();
        let nth = log
            .iter()
            .filter(|s| s.method == seen.method && s.path == seen.path)
            .count();
        log.push(seen.clone());
        nth
    };
    let reply = (inner.responder)(&seen, nth);
    if reply.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    Response::builder()
        .status(reply.status)
        .header("content-type", "application/json")
        .header("x-keel-term", reply.term.to_string())
        .body(Body::from(reply.body.to_string()))
        .unwrap()
}

async fn mock(responder: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Mock {
    let inner = Arc::new(Inner {
        log: Mutex::new(Vec::new()),
        responder: Arc::new(responder),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = Router::new().fallback(handle).with_state(inner.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Mock { addr, inner }
}

fn header(term: u64) -> Value {
    json!({"term": term, "leader": 1, "revision": 7, "applied_index": 9,
           "config_version": 1, "served_by": 1})
}

fn put_ok(term: u64, revision: u64) -> Reply {
    ok(term, json!({"header": header(term), "revision": revision}))
}

fn config(endpoints: &[&str]) -> ClientConfig {
    let mut config = ClientConfig::new(endpoints);
    config.backoff_base_ms = 1;
    config.backoff_max_ms = 4;
    config.call_timeout_ms = 5_000;
    config.rng_seed = 1;
    config
}

fn not_leader(term: u64, leader_addr: &str) -> Reply {
    err(
        421,
        term,
        json!({"code": "NOT_LEADER", "message": "not the leader", "retry": "leader",
               "term": term, "leader": {"id": 3, "client_addr": leader_addr}}),
    )
}

#[tokio::test]
async fn stale_not_leader_hint_is_ignored() {
    // C must never be contacted: the only hint pointing at it is from an older term.
    let c = mock(|_, _| put_ok(5, 1)).await;
    let c_addr = c.addr.clone();
    let b = mock(move |_, _| not_leader(3, &c_addr)).await;
    // A: leader at term 5; answers NO_LEADER once (so the client tries B), then succeeds.
    let a = mock(|_, nth| match nth {
        1 => err(
            503,
            5,
            json!({"code": "NO_LEADER", "message": "election", "retry": "other_node", "term": 5}),
        ),
        _ => put_ok(5, 10 + nth as u64),
    })
    .await;
    let client = Client::new(config(&[&a.addr, &b.addr])).unwrap();
    client
        .put("k", "v1", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(client.term_seen(), 5);
    let put = client
        .put("k", "v2", WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(put.revision, 12);
    assert_eq!(b.count("PUT", "/v1/kv/k"), 1, "B was asked once");
    assert_eq!(c.seen().len(), 0, "stale hint (term 3 < 5) was followed");
    assert_eq!(a.count("PUT", "/v1/kv/k"), 3);
    assert_eq!(client.stats().redirects, 0);
}

#[tokio::test]
async fn current_not_leader_hint_is_followed_without_backoff_budget() {
    let c = mock(|_, _| put_ok(6, 4)).await;
    let c_addr = c.addr.clone();
    let b = mock(move |_, _| not_leader(6, &c_addr)).await;
    let mut config = config(&[&b.addr]);
    config.retry_reserve_tokens = 0;
    let client = Client::new(config).unwrap();
    let put = client.put("k", "v", WriteOptions::default()).await.unwrap();
    assert_eq!(put.revision, 4);
    assert_eq!(c.count("PUT", "/v1/kv/k"), 1);
    assert_eq!(client.leader().as_deref(), Some(c.addr.as_str()));
    assert_eq!(client.term_seen(), 6);
    let stats = client.stats();
    assert_eq!((stats.redirects, stats.retries), (1, 0));
    // The learned leader is used directly next time.
    client.put("k", "w", WriteOptions::default()).await.unwrap();
    assert_eq!(b.seen().len(), 1);
    assert_eq!(c.count("PUT", "/v1/kv/k"), 2);
}

#[tokio::test]
async fn hint_to_an_unreachable_leader_is_not_followed_twice() {
    // The old leader D is dead; follower B keeps naming it (same term) until it wins the
    // election itself on its 4th answer.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let dead_addr = dead.clone();
    let b = mock(move |_, nth| {
        if nth < 3 {
            not_leader(2, &dead_addr)
        } else {
            put_ok(3, 9)
        }
    })
    .await;
    let mut config = config(&[&b.addr]);
    config.attempts_max = 6;
    let client = Client::new(config).unwrap();
    let put = client.put("k", "v", WriteOptions::default()).await.unwrap();
    assert_eq!(put.revision, 9);
    let stats = client.stats();
    assert_eq!(stats.redirects, 1, "the dead leader was only tried once");
    assert_eq!(stats.attempts, 5, "B, D (refused), then B three more times");
    assert_eq!(client.term_seen(), 3);
}

#[tokio::test]
async fn retry_budget_exhaustion_stops_retries() {
    let a = mock(|_, _| {
        err(
            503,
            2,
            json!({"code": "NO_LEADER", "message": "no leader", "retry": "other_node", "term": 2}),
        )
    })
    .await;
    let mut config = config(&[&a.addr]);
    config.retry_reserve_tokens = 3;
    config.retry_tokens_max = 3;
    config.retry_ratio_permille = 100;
    config.attempts_max = 100;
    let client = Client::new(config).unwrap();
    let read = || ReadOptions::default();
    // Call 1: the bucket is full (3 tokens, the cap, so its own deposit is lost): 1 attempt +
    // 3 retries, then refused.
    let error = client.get("k", read()).await.unwrap_err();
    assert!(
        matches!(error, Error::RetryBudgetExhausted { .. }),
        "{error}"
    );
    assert_eq!(error.code(), "RETRY_BUDGET_EXHAUSTED");
    assert_eq!(error.server().unwrap().code, ErrorCode::NoLeader);
    assert_eq!(a.seen().len(), 4);
    // Calls 2..=10: 0.1 .. 0.9 tokens: no retries at all.
    for call in 2..=10 {
        client.get("k", read()).await.unwrap_err();
        assert_eq!(a.seen().len(), 4 + (call - 1), "call {call}");
    }
    // Call 11: 1.0 token: exactly one retry.
    client.get("k", read()).await.unwrap_err();
    assert_eq!(a.seen().len(), 15);
    let stats = client.stats();
    assert_eq!(stats.calls, 11);
    assert_eq!(stats.retries, 4, "retries <= reserve + 10% of calls");
    assert_eq!(stats.budget_refusals, 11);
}

#[tokio::test]
async fn outcome_unknown_is_retried_with_the_same_seq() {
    let a = mock(|seen, nth| match (seen.path.as_str(), nth) {
        ("/v1/sessions", _) => ok(2, json!({"header": header(2), "client_id": 42})),
        ("/v1/kv/k", 0) => err(
            504,
            2,
            json!({"code": "OUTCOME_UNKNOWN", "message": "lost leadership while in flight",
                   "retry": "leader", "client_id": 42, "seq": 1}),
        ),
        _ => put_ok(2, 7 + nth as u64),
    })
    .await;
    let client = Client::new(config(&[&a.addr])).unwrap();
    assert_eq!(client.register_session().await.unwrap(), 42);
    let put = client.put("k", "v", WriteOptions::default()).await.unwrap();
    assert_eq!(put.revision, 8);
    let puts: Vec<Seen> = a
        .seen()
        .into_iter()
        .filter(|s| s.path == "/v1/kv/k")
        .collect();
    assert_eq!(puts.len(), 2);
    let tag = json!({"client_id": 42, "seq": 1, "lowest_unacked_seq": 1});
    assert_eq!(puts[0].body["session"], tag);
    assert_eq!(puts[1].body["session"], tag, "the retry must reuse the seq");
    assert_eq!(puts[1].body["value"], "v");
    // The next write takes the next seq and acknowledges the first.
    client.put("k", "w", WriteOptions::default()).await.unwrap();
    let last = a.seen().pop().unwrap();
    assert_eq!(
        last.body["session"],
        json!({"client_id": 42, "seq": 2, "lowest_unacked_seq": 2})
    );
    assert_eq!(a.count("POST", "/v1/sessions"), 1);
}

#[tokio::test]
async fn outcome_unknown_without_session_is_surfaced() {
    let a = mock(|_, _| {
        err(
            504,
            2,
            json!({"code": "OUTCOME_UNKNOWN", "message": "m", "retry": "leader"}),
        )
    })
    .await;
    let client = Client::new(config(&[&a.addr])).unwrap();
    let error = client
        .put("k", "v", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "OUTCOME_UNKNOWN");
    assert_eq!(
        a.seen().len(),
        1,
        "a write without a session is never resent"
    );
}

#[tokio::test]
async fn session_expired_is_surfaced_never_reexecuted() {
    let a = mock(|seen, _| match seen.path.as_str() {
        "/v1/sessions" => ok(2, json!({"header": header(2), "client_id": 5})),
        _ => err(
            410,
            2,
            json!({"code": "SESSION_EXPIRED", "message": "session 5 expired", "retry": "no"}),
        ),
    })
    .await;
    let client = Client::new(config(&[&a.addr])).unwrap();
    client.register_session().await.unwrap();
    let error = client
        .put("k", "v", WriteOptions::default())
        .await
        .unwrap_err();
    let server = error.server().unwrap();
    assert_eq!(server.code, ErrorCode::SessionExpired);
    assert_eq!(server.http_status, 410);
    assert_eq!(a.count("PUT", "/v1/kv/k"), 1);
    assert_eq!(
        a.count("POST", "/v1/sessions"),
        1,
        "no silent re-registration"
    );
}

#[tokio::test]
async fn errors_decode_with_code_field_and_hint() {
    let a = mock(|seen, _| match seen.path.as_str() {
        "/v1/kv/big" => err(
            413,
            1,
            json!({"code": "PAYLOAD_TOO_LARGE", "message": "value over 1 MiB", "retry": "no",
                   "field": "value"}),
        ),
        "/v1/kv/bad" => err(
            400,
            1,
            json!({"code": "BAD_REQUEST", "message": "bad base64", "retry": "no",
                   "field": "value_b64"}),
        ),
        _ => Reply {
            status: 404,
            term: 1,
            body: Value::String("not json at all".into()),
            delay_ms: 0,
        },
    })
    .await;
    let client = Client::new(config(&[&a.addr])).unwrap();
    let error = client
        .put("big", "v", WriteOptions::default())
        .await
        .unwrap_err();
    let server = error.server().unwrap();
    assert_eq!(server.code, ErrorCode::PayloadTooLarge);
    assert_eq!(server.field.as_deref(), Some("value"));
    assert_eq!(server.retry, Some(RetryHint::No));
    let error = client
        .put("bad", "v", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "BAD_REQUEST");
    assert!(error.to_string().contains("field=value_b64"), "{error}");
    let error = client
        .get("other", ReadOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "HTTP_404");
    assert_eq!(a.seen().len(), 3, "none of these is retried");
}

#[tokio::test]
async fn overloaded_retry_after_is_honoured_on_another_node() {
    let a = mock(|_, _| {
        err(
            429,
            1,
            json!({"code": "OVERLOADED", "message": "queue full", "scope": "node",
                   "retry": "other_node", "retry_after_ms": 150}),
        )
    })
    .await;
    let b = mock(|_, _| {
        ok(
            1,
            json!({"header": header(1), "kv": null,
                   "served": {"level": "any", "node": 2, "term": 1, "applied_index": 3,
                              "revision": 2, "leader": 1, "staleness_ms": null,
                              "config_version": 1}}),
        )
    })
    .await;
    let client = Client::new(config(&[&a.addr, &b.addr])).unwrap();
    let started = Instant::now();
    let options = ReadOptions {
        level: ReadLevel::Any,
        min_revision: Some(2),
        timeout_ms: None,
    };
    let get = client.get("k", options).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(get.kv.is_none());
    assert_eq!(get.served.node, 2);
    assert_eq!(b.seen()[0].query, "read=any&min_revision=2");
    assert_eq!(a.seen().len(), 1);
}

#[tokio::test]
async fn refused_connection_moves_to_the_next_endpoint() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let a = mock(|_, _| put_ok(1, 3)).await;
    let client = Client::new(config(&[&dead, &a.addr])).unwrap();
    let put = client.put("k", "v", WriteOptions::default()).await.unwrap();
    assert_eq!(put.revision, 3);
    assert_eq!(client.leader().as_deref(), Some(a.addr.as_str()));
}

#[tokio::test]
async fn call_timeout_reads_time_out_and_unsafe_writes_are_unknown() {
    let a = mock(|_, _| Reply {
        delay_ms: 2_000,
        ..put_ok(1, 1)
    })
    .await;
    let mut config = config(&[&a.addr]);
    config.call_timeout_ms = 300;
    let client = Client::new(config).unwrap();
    let started = Instant::now();
    let error = client.get("k", ReadOptions::default()).await.unwrap_err();
    assert_eq!(error.code(), "TIMEOUT", "{error}");
    let error = client
        .put("k", "v", WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "OUTCOME_UNKNOWN", "{error}");
    assert!(started.elapsed() < Duration::from_millis(1_500));
}
