//! The HTTP/JSON client API (axum), exactly as /openapi.yaml describes. Handlers parse and
//! validate, hand a `Request` to the node loop over a bounded queue (full: OVERLOADED), and
//! turn the answer into JSON. Every response carries the X-Keel-* header block; every error is
//! `{"code", "message", "retry", ...}`.

use crate::admission::Share;
use crate::codec::{Addresses, Envelope};
use crate::error::{leader_json, ApiError};
use crate::metrics::{bounded_label, CODES, LEVELS};
use crate::runtime::{Queued, ReadLevel, ReadOk, ReadQuery, ReadResult, Reply, Request, WriteOk};
use crate::shared::{Header, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use keel_core::{ConfChange, NodeId};
use keel_kv::{
    CasRequest, Command, Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue,
    PutRequest, RangeRequest, Response as KvResponse, SessionTag, TxnOp, TxnOpResponse, TxnRequest,
    WriteRequest,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Longest key prefix a log line shows.
const LOG_KEY_BYTES_MAX: usize = 128;
/// Extra body bytes allowed beyond the base64-expanded value (key, JSON syntax, session).
const BODY_OVERHEAD_BYTES: usize = 64 << 10;

#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<Shared>,
    /// Writes and admin requests.
    pub requests: mpsc::Sender<Queued>,
    /// Reads (their own queue: cheap reads stay cheap under a write overload).
    pub reads: mpsc::Sender<Queued>,
    pub http: reqwest::Client,
    pub request_timeout_ms: u64,
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
}

pub fn router(state: ApiState) -> Router {
    let body_limit =
        state.value_bytes_max.div_ceil(3) * 4 + state.key_bytes_max * 2 + BODY_OVERHEAD_BYTES;
    Router::new()
        .route(
            "/v1/kv/{*key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route(
            "/v1/kv-b64/{key}",
            get(get_key_b64).put(put_key_b64).delete(delete_key_b64),
        )
        .route("/v1/range", post(range))
        .route("/v1/cas", post(cas))
        .route("/v1/txn", post(txn))
        .route("/v1/sessions", post(register_session))
        .route("/v1/status", get(status))
        .route("/v1/members", get(list_members).post(add_member))
        .route("/v1/members/{id}/promote", post(promote_member))
        .route("/v1/members/{id}", axum::routing::delete(remove_member))
        .route("/v1/leader/transfer", post(transfer_leader))
        .route("/v1/cluster/finalize-upgrade", post(finalize_upgrade))
        .route("/v1/audit/anchor", post(audit_anchor))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admit_and_measure,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            header_block,
        ))
        .with_state(state)
}

// ----- Response helpers -----

/// The header block's names, parsed once (not per response).
static TERM: HeaderName = HeaderName::from_static("x-keel-term");
static LEADER: HeaderName = HeaderName::from_static("x-keel-leader");
static REVISION: HeaderName = HeaderName::from_static("x-keel-revision");
static APPLIED_INDEX: HeaderName = HeaderName::from_static("x-keel-applied-index");
static CONFIG_VERSION: HeaderName = HeaderName::from_static("x-keel-config-version");
static SERVED_BY: HeaderName = HeaderName::from_static("x-keel-served-by");
static MODE: HeaderName = HeaderName::from_static("x-keel-mode");

fn set_header_block(headers: &mut HeaderMap, h: &Header, overwrite: bool) {
    if !overwrite && headers.contains_key(&TERM) {
        return; // the handler set the block from the state it served
    }
    // `HeaderValue::from(u64)` formats digits without re-validating them.
    headers.insert(TERM.clone(), HeaderValue::from(h.term));
    let leader = match h.leader {
        Some(l) => HeaderValue::from(l),
        None => HeaderValue::from_static(""),
    };
    headers.insert(LEADER.clone(), leader);
    headers.insert(REVISION.clone(), HeaderValue::from(h.revision));
    headers.insert(APPLIED_INDEX.clone(), HeaderValue::from(h.applied_index));
    headers.insert(CONFIG_VERSION.clone(), HeaderValue::from(h.config_version));
    headers.insert(SERVED_BY.clone(), HeaderValue::from(h.served_by));
}

/// Middleware: every response gets the header block (from the latest published status unless
/// the handler set it from the state it served).
async fn header_block(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    let (header, mode) = state.shared.header_and_mode();
    set_header_block(resp.headers_mut(), &header, false);
    resp.headers_mut()
        .insert(MODE.clone(), HeaderValue::from_static(mode));
    resp
}

/// The operation a request is, from its method and path (None: not a client KV/admin call,
/// e.g. status, metrics, health, unknown routes).
fn classify(method: &Method, path: &str) -> Option<&'static str> {
    let kv = path.starts_with("/v1/kv/") || path.starts_with("/v1/kv-b64/");
    let op = match (method.as_str(), path) {
        ("GET", _) if kv => "get",
        ("PUT", _) if kv => "put",
        ("DELETE", _) if kv => "delete",
        ("POST", "/v1/range") => "range",
        ("POST", "/v1/cas") => "cas",
        ("POST", "/v1/txn") => "txn",
        ("POST", "/v1/sessions") => "session",
        ("POST", "/v1/leader/transfer") => "transfer",
        ("POST", "/v1/cluster/finalize-upgrade") => "finalize",
        ("POST", p) | ("DELETE", p) if p.starts_with("/v1/members") => "members",
        _ => return None,
    };
    Some(op)
}

/// Header naming a client for fair shares (else its IP address is used).
const CLIENT_ID_HEADER: &str = "x-keel-client-id";
const CLIENT_ID_BYTES_MAX: usize = 64;

/// Middleware: per-client fair share at the boundary (before any queueing), then request
/// metrics with bounded labels only (operation, read level, response code).
async fn admit_and_measure(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let op = classify(req.method(), req.uri().path());
    if let Some(tokens) = &state.shared.auth {
        if let Err(failure) = tokens.check(req.method(), req.uri().path(), req.headers()) {
            state.shared.authz_failure(failure);
            let resp = ApiError::auth(failure).into_response();
            if let Some(op) = op {
                let code = if matches!(failure, crate::auth::Failure::Forbidden { .. }) {
                    "PERMISSION_DENIED"
                } else {
                    "UNAUTHENTICATED"
                };
                state.shared.metrics.request(
                    op,
                    "linearizable",
                    code,
                    started.elapsed().as_secs_f64(),
                );
            }
            return resp;
        }
    }
    let Some(op) = op else {
        return next.run(req).await;
    };
    // The client's identity, copied to the stack (the request moves on below).
    let mut identity_buf = [0u8; CLIENT_ID_BYTES_MAX];
    let identity_len = match req.headers().get(CLIENT_ID_HEADER) {
        Some(v) if v.len() <= CLIENT_ID_BYTES_MAX => {
            identity_buf[..v.len()].copy_from_slice(v.as_bytes());
            v.len()
        }
        _ => match req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
        {
            Some(std::net::IpAddr::V4(ip)) => {
                identity_buf[..4].copy_from_slice(&ip.octets());
                4
            }
            Some(std::net::IpAddr::V6(ip)) => {
                identity_buf[..16].copy_from_slice(&ip.octets());
                16
            }
            None => 0,
        },
    };
    let identity = &identity_buf[..identity_len];
    let query_level = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("read=")))
        .map(|l| {
            if l.starts_with("bounded") {
                "bounded"
            } else {
                l
            }
        })
        .map(|l| bounded_label(l, &LEVELS, "linearizable"))
        .unwrap_or("linearizable");
    let resp = match state.shared.admission.acquire(Share::Client, identity) {
        Some(_slot) => next.run(req).await,
        None => {
            state.shared.reject("client_share");
            ApiError::overloaded(
                "node",
                50,
                "this client's share of in-flight requests is used up",
            )
            .into_response()
        }
    };
    let code = resp
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|c| bounded_label(c, &CODES, "OTHER"))
        .unwrap_or("OK");
    let level = resp
        .headers()
        .get(READ_LEVEL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|l| bounded_label(l, &LEVELS, "linearizable"))
        .unwrap_or(query_level);
    state
        .shared
        .metrics
        .request(op, level, code, started.elapsed().as_secs_f64());
    resp
}

/// Response header carrying an error's code (also read back by the metrics middleware).
const ERROR_HEADER: &str = "x-keel-error";
/// Response header carrying the read level a read was served at.
const READ_LEVEL_HEADER: &str = "x-keel-read-level";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        resp.headers_mut().insert(
            HeaderName::from_static(ERROR_HEADER),
            HeaderValue::from_static(self.code),
        );
        resp
    }
}

fn ok_json(header: &Header, mut body: Map<String, Value>) -> Response {
    body.insert(
        "header".into(),
        serde_json::to_value(header).expect("header serializes"),
    );
    let mut resp = (StatusCode::OK, Json(Value::Object(body))).into_response();
    set_header_block(resp.headers_mut(), header, true);
    resp
}

fn put_bytes(m: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => m.insert(name.to_string(), Value::String(s.to_string())),
        Err(_) => m.insert(format!("{name}_b64"), Value::String(B64.encode(bytes))),
    };
}

pub fn kv_json(kv: &KeyValue) -> Value {
    let mut m = Map::new();
    put_bytes(&mut m, "key", &kv.key);
    put_bytes(&mut m, "value", &kv.value);
    m.insert("create_revision".into(), kv.create_revision.into());
    m.insert("mod_revision".into(), kv.mod_revision.into());
    m.insert("version".into(), kv.version.into());
    Value::Object(m)
}

// ----- Request helpers -----

fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new("PAYLOAD_TOO_LARGE", "request body is larger than the limit")
        } else {
            ApiError::bad_request("body", format!("unreadable body: {rejection}"))
        }
    })?;
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        b"{}"
    } else {
        &body
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" || path.is_empty() {
            "body".to_string()
        } else {
            path
        };
        ApiError::bad_request(&field, format!("malformed JSON: {}", e.inner()))
    })
}

fn query_map(raw: &Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(q) = raw else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| {
                ApiError::bad_request("query", "query string is not valid percent-encoded UTF-8")
            })
        };
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn query_get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn forward_flag(q: &[(String, String)]) -> Result<bool, ApiError> {
    match query_get(q, "forward") {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "forward",
            "forward must be true or false",
        )),
    }
}

fn read_params(q: &[(String, String)]) -> Result<(ReadLevel, u64), ApiError> {
    let level = match query_get(q, "read") {
        None => ReadLevel::Linearizable,
        Some(s) => ReadLevel::parse(s).ok_or_else(|| {
            ApiError::bad_request("read", "read must be linearizable, any or bounded:<ms>")
        })?,
    };
    let min_revision = match query_get(q, "min_revision") {
        None => 0,
        Some(s) => s.parse().map_err(|_| {
            ApiError::bad_request(
                "min_revision",
                "min_revision must be a non-negative integer",
            )
        })?,
    };
    Ok((level, min_revision))
}

/// Exactly one of `text` and `b64` (standard base64) as bytes; `field` names the pair.
fn bytes_of(
    text: &Option<String>,
    b64: &Option<String>,
    field: &str,
    required: bool,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            field,
            format!("give {field} or {field}_b64, not both"),
        )),
        (Some(t), None) => Ok(Some(t.as_bytes().to_vec())),
        (None, Some(b)) => B64.decode(b.as_bytes()).map(Some).map_err(|e| {
            ApiError::bad_request(
                &format!("{field}_b64"),
                format!("{field}_b64 is not valid base64: {e}"),
            )
        }),
        (None, None) if required => Err(ApiError::bad_request(
            field,
            format!("{field} (or {field}_b64) is required"),
        )),
        (None, None) => Ok(None),
    }
}

fn check_key(state: &ApiState, key: &[u8]) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("key", "key must not be empty"));
    }
    if key.len() > state.key_bytes_max {
        return Err(ApiError::bad_request(
            "key",
            format!(
                "key is {} bytes, the limit is {}",
                key.len(),
                state.key_bytes_max
            ),
        ));
    }
    Ok(())
}

fn check_value(state: &ApiState, value: &[u8]) -> Result<(), ApiError> {
    if value.len() > state.value_bytes_max {
        return Err(ApiError::bad_request(
            "value",
            format!(
                "value is {} bytes, the limit is {}",
                value.len(),
                state.value_bytes_max
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct SessionIn {
    client_id: u64,
    seq: u64,
    lowest_unacked_seq: Option<u64>,
}

fn session_tag(s: &Option<SessionIn>) -> Result<Option<SessionTag>, ApiError> {
    let Some(s) = s else { return Ok(None) };
    if s.client_id == 0 {
        return Err(ApiError::bad_request(
            "session.client_id",
            "client_id must be positive (POST /v1/sessions)",
        ));
    }
    if s.seq == 0 {
        return Err(ApiError::bad_request("session.seq", "seq starts at 1"));
    }
    Ok(Some(SessionTag {
        client_id: s.client_id,
        seq: s.seq,
        lowest_unacked_seq: s.lowest_unacked_seq.unwrap_or(s.seq),
    }))
}

async fn call<T>(state: &ApiState, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ApiError> {
    if state.shared.is_shutting_down() {
        state.shared.reject("shutting_down");
        return Err(ApiError::unavailable("node is shutting down").retry("other_node"));
    }
    let (tx, rx) = oneshot::channel();
    let req = make(tx);
    let lane = if matches!(req, Request::Read { .. }) {
        &state.reads
    } else {
        &state.requests
    };
    if lane.try_send(req.queued()).is_err() {
        state.shared.reject("queue_full");
        return Err(ApiError::overloaded("node", 50, "request queue is full"));
    }
    match tokio::time::timeout(Duration::from_millis(state.request_timeout_ms + 1000), rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::unavailable(
            "the node stopped while handling the request",
        )),
        Err(_) => Err(ApiError::unavailable("request timed out inside the node")),
    }
}

/// A write or admin call: on NOT_LEADER with `?forward=true`, forward to the leader.
async fn write_call(
    state: &ApiState,
    command: Command,
    session: Option<SessionTag>,
    forward: Option<(Method, Uri, Bytes)>,
) -> Result<WriteOk, Response> {
    if let Some(key) = write_key(&command) {
        // User data reaches logs only as an escaped field (Debug form: newlines and escape
        // characters are written as escapes in both the JSON and the text format).
        let shown = String::from_utf8_lossy(&key[..key.len().min(LOG_KEY_BYTES_MAX)]);
        tracing::debug!(key = ?shown, key_bytes = key.len(), "write received");
    }
    // A hot key gets its share of in-flight writes, not the node's.
    let _key_slot = match write_key(&command) {
        Some(key) => match state.shared.admission.acquire(Share::Key, key) {
            Some(slot) => Some(slot),
            None => {
                state.shared.reject("key_share");
                return Err(ApiError::overloaded(
                    "node",
                    50,
                    "too many writes in flight for this key",
                )
                .into_response());
            }
        },
        None => None,
    };
    let payload = Envelope::KvCommand(command.encode()).encode();
    let sess = session.map(|s| (s.client_id, s.seq));
    let result = call(state, |reply| Request::Write {
        payload,
        session: sess,
        reply,
    })
    .await;
    match result {
        Ok(ok) => Ok(ok),
        Err(e) => Err(maybe_forward(state, e, forward).await),
    }
}

/// The key a single-key write touches (for the per-key fair share).
fn write_key(command: &Command) -> Option<&[u8]> {
    match command {
        Command::Write { request, .. } => match request {
            WriteRequest::Put(p) => Some(&p.key),
            WriteRequest::Delete(d) => match &d.range {
                KeyRange::Key(k) => Some(k),
                _ => None,
            },
            WriteRequest::CompareAndSwap(c) => Some(&c.key),
            WriteRequest::Txn(_) => None,
        },
        _ => None,
    }
}

async fn maybe_forward(
    state: &ApiState,
    e: ApiError,
    forward: Option<(Method, Uri, Bytes)>,
) -> Response {
    let Some((method, uri, body)) = forward else {
        return e.into_response();
    };
    if e.code != "NOT_LEADER" {
        return e.into_response();
    }
    let Some(addr) = e
        .details
        .get("leader")
        .and_then(|l| l.get("client_addr"))
        .and_then(Value::as_str)
    else {
        return e.into_response();
    };
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("forward"))
        .collect();
    let url = if query.is_empty() {
        format!("http://{addr}{}", uri.path())
    } else {
        format!("http://{addr}{}?{}", uri.path(), query.join("&"))
    };
    let mut request = state
        .http
        .request(method, &url)
        .header("content-type", "application/json")
        .header("x-keel-forwarded-by", state.shared.node_id.to_string())
        .timeout(Duration::from_millis(state.request_timeout_ms + 2000))
        .body(body);
    if let Some(tokens) = &state.shared.auth {
        // The client was authorized here; the leader sees this node's own credentials.
        request = request.header("authorization", tokens.service_authorization());
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.unwrap_or_default();
            let mut out = (status, body).into_response();
            for (name, value) in headers.iter() {
                if name.as_str().starts_with("x-keel-") || name == "content-type" {
                    out.headers_mut().insert(name.clone(), value.clone());
                }
            }
            out
        }
        Err(err) if err.is_connect() => ApiError::unavailable(format!(
            "could not reach the leader at {addr} to forward: {err}"
        ))
        .into_response(),
        Err(err) => ApiError::outcome_unknown(
            None,
            &format!("forwarding to the leader at {addr} failed ({err})"),
        )
        .into_response(),
    }
}

fn write_result(
    ok: WriteOk,
    shape: impl FnOnce(u64, KvResponse) -> Map<String, Value>,
) -> Response {
    let Some(result) = ok.result else {
        return ApiError::new("INTERNAL", "write produced no key-value result").into_response();
    };
    match result.result {
        Err(e) => ApiError::from_kv(&e).into_response(),
        Ok(resp) => {
            let mut body = shape(result.revision, resp);
            body.insert("revision".into(), result.revision.into());
            if result.duplicate {
                body.insert("duplicate".into(), true.into());
            }
            ok_json(&ok.header, body)
        }
    }
}

fn read_result(ok: ReadOk, shape: impl FnOnce(ReadResult) -> Map<String, Value>) -> Response {
    let mut body = shape(ok.result);
    let level = ok.served.level;
    body.insert(
        "served".into(),
        serde_json::to_value(&ok.served).expect("served serializes"),
    );
    let mut resp = ok_json(&ok.header, body);
    resp.headers_mut().insert(
        HeaderName::from_static(READ_LEVEL_HEADER),
        HeaderValue::from_static(level),
    );
    resp
}

// ----- Key-value routes -----

fn key_from_path(
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Vec<u8>, ApiError> {
    key.map(|Path(k)| k.into_bytes()).map_err(|e| {
        ApiError::bad_request(
            "key",
            format!("key is not valid percent-encoded UTF-8: {e}"),
        )
    })
}

fn key_from_b64(
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Vec<u8>, ApiError> {
    let Path(k) = key.map_err(|e| ApiError::bad_request("key", format!("bad key: {e}")))?;
    B64URL
        .decode(k.trim_end_matches('=').as_bytes())
        .map_err(|e| ApiError::bad_request("key", format!("key is not valid base64url: {e}")))
}

async fn get_key(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(q): RawQuery,
) -> Response {
    match key_from_path(key) {
        Ok(k) => do_get(&s, k, q).await,
        Err(e) => e.into_response(),
    }
}

async fn get_key_b64(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(q): RawQuery,
) -> Response {
    match key_from_b64(key) {
        Ok(k) => do_get(&s, k, q).await,
        Err(e) => e.into_response(),
    }
}

async fn do_get(s: &ApiState, key: Vec<u8>, q: Option<String>) -> Response {
    let run = async {
        let q = query_map(&q)?;
        let (level, min_revision) = read_params(&q)?;
        check_key(s, &key)?;
        call(s, |reply| Request::Read {
            level,
            min_revision,
            query: ReadQuery::Get(key),
            reply,
        })
        .await
    };
    match run.await {
        Ok(ok) => read_result(ok, |r| {
            let mut m = Map::new();
            let kv = match r {
                ReadResult::Get(Some(kv)) => kv_json(&kv),
                _ => Value::Null,
            };
            m.insert("kv".into(), kv);
            m
        }),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct PutIn {
    value: Option<String>,
    value_b64: Option<String>,
    #[serde(default)]
    prev_kv: bool,
    session: Option<SessionIn>,
}

async fn put_key(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match key_from_path(key) {
        Ok(k) => do_put(&s, k, method, uri, body).await,
        Err(e) => e.into_response(),
    }
}

async fn put_key_b64(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match key_from_b64(key) {
        Ok(k) => do_put(&s, k, method, uri, body).await,
        Err(e) => e.into_response(),
    }
}

/// The original request, kept to forward it to the leader (`?forward=true`).
type Forward = Option<(Method, Uri, Bytes)>;
type Prepared = (Command, Option<SessionTag>, Forward);

fn forward_ctx(
    uri: &Uri,
    method: Method,
    body: &Result<Bytes, BytesRejection>,
) -> Result<Option<(Method, Uri, Bytes)>, ApiError> {
    let q = query_map(&uri.query().map(str::to_string))?;
    let fwd = forward_flag(&q)?;
    Ok(fwd.then(|| {
        (
            method,
            uri.clone(),
            body.as_ref().ok().cloned().unwrap_or_default(),
        )
    }))
}

async fn do_put(
    s: &ApiState,
    key: Vec<u8>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<Prepared, ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: PutIn = parse_body(body, false)?;
        check_key(s, &key)?;
        let value = bytes_of(&input.value, &input.value_b64, "value", true)?.expect("required");
        check_value(s, &value)?;
        let session = session_tag(&input.session)?;
        let cmd = Command::Write {
            session,
            request: WriteRequest::Put(PutRequest {
                key,
                value,
                prev_kv: input.prev_kv,
            }),
        };
        Ok((cmd, session, fwd))
    })();
    let (cmd, session, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match write_call(s, cmd, session, fwd).await {
        Ok(ok) => write_result(ok, |_, resp| {
            let mut m = Map::new();
            if let KvResponse::Put(p) = resp {
                if let Some(prev) = p.prev_kv {
                    m.insert("prev_kv".into(), kv_json(&prev));
                }
            }
            m
        }),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct DeleteIn {
    session: Option<SessionIn>,
    #[serde(default)]
    prev_kv: bool,
}

async fn delete_key(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match key_from_path(key) {
        Ok(k) => do_delete(&s, k, method, uri, body).await,
        Err(e) => e.into_response(),
    }
}

async fn delete_key_b64(
    State(s): State<ApiState>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match key_from_b64(key) {
        Ok(k) => do_delete(&s, k, method, uri, body).await,
        Err(e) => e.into_response(),
    }
}

async fn do_delete(
    s: &ApiState,
    key: Vec<u8>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<Prepared, ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: DeleteIn = parse_body(body, true)?;
        check_key(s, &key)?;
        let session = session_tag(&input.session)?;
        let cmd = Command::Write {
            session,
            request: WriteRequest::Delete(DeleteRequest {
                range: KeyRange::Key(key),
                prev_kv: input.prev_kv,
            }),
        };
        Ok((cmd, session, fwd))
    })();
    let (cmd, session, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match write_call(s, cmd, session, fwd).await {
        Ok(ok) => write_result(ok, |_, resp| {
            let mut m = Map::new();
            if let KvResponse::Delete(d) = resp {
                m.insert("deleted".into(), d.deleted.into());
                if !d.prev_kvs.is_empty() {
                    m.insert(
                        "prev_kvs".into(),
                        Value::Array(d.prev_kvs.iter().map(kv_json).collect()),
                    );
                }
            }
            m
        }),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct RangeIn {
    prefix: Option<String>,
    prefix_b64: Option<String>,
    start: Option<String>,
    start_b64: Option<String>,
    end: Option<String>,
    end_b64: Option<String>,
    limit: Option<u64>,
    read: Option<String>,
    min_revision: Option<u64>,
}

async fn range(State(s): State<ApiState>, body: Result<Bytes, BytesRejection>) -> Response {
    let run = async {
        let input: RangeIn = parse_body(body, true)?;
        let prefix = bytes_of(&input.prefix, &input.prefix_b64, "prefix", false)?;
        let start = bytes_of(&input.start, &input.start_b64, "start", false)?;
        let end = bytes_of(&input.end, &input.end_b64, "end", false)?;
        let range = match (prefix, start) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "prefix",
                    "give prefix or start/end, not both",
                ))
            }
            (Some(p), None) => {
                if end.is_some() {
                    return Err(ApiError::bad_request(
                        "end",
                        "end goes with start, not prefix",
                    ));
                }
                KeyRange::Prefix(p)
            }
            (None, Some(st)) => KeyRange::Interval { start: st, end },
            (None, None) => match end {
                Some(e) => KeyRange::Interval {
                    start: Vec::new(),
                    end: Some(e),
                },
                None => KeyRange::Prefix(Vec::new()),
            },
        };
        let level = match &input.read {
            None => ReadLevel::Linearizable,
            Some(r) => ReadLevel::parse(r).ok_or_else(|| {
                ApiError::bad_request("read", "read must be linearizable, any or bounded:<ms>")
            })?,
        };
        let req = RangeRequest {
            range,
            limit: input.limit.unwrap_or(0),
        };
        let min_revision = input.min_revision.unwrap_or(0);
        call(&s, |reply| Request::Read {
            level,
            min_revision,
            query: ReadQuery::Range(req),
            reply,
        })
        .await
    };
    match run.await {
        Ok(ok) => read_result(ok, |r| {
            let mut m = Map::new();
            if let ReadResult::Range(r) = r {
                m.insert(
                    "kvs".into(),
                    Value::Array(r.kvs.iter().map(kv_json).collect()),
                );
                m.insert("more".into(), r.more.into());
                m.insert("count".into(), r.count.into());
            }
            m
        }),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CasIn {
    key: Option<String>,
    key_b64: Option<String>,
    expected_value: Option<String>,
    expected_value_b64: Option<String>,
    expected_mod_revision: Option<u64>,
    value: Option<String>,
    value_b64: Option<String>,
    session: Option<SessionIn>,
}

async fn cas(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<Prepared, ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: CasIn = parse_body(body, false)?;
        let key = bytes_of(&input.key, &input.key_b64, "key", true)?.expect("required");
        check_key(&s, &key)?;
        let value = bytes_of(&input.value, &input.value_b64, "value", true)?.expect("required");
        check_value(&s, &value)?;
        let expected_value = bytes_of(
            &input.expected_value,
            &input.expected_value_b64,
            "expected_value",
            false,
        )?;
        let expected =
            match (expected_value, input.expected_mod_revision) {
                (Some(v), None) => CompareTarget::Value(v),
                (None, Some(r)) => CompareTarget::ModRevision(r),
                _ => return Err(ApiError::bad_request(
                    "expected_value",
                    "give exactly one of expected_value, expected_value_b64, expected_mod_revision",
                )),
            };
        let session = session_tag(&input.session)?;
        let cmd = Command::Write {
            session,
            request: WriteRequest::CompareAndSwap(CasRequest {
                key,
                expected,
                value,
            }),
        };
        Ok((cmd, session, fwd))
    })();
    let (cmd, session, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match write_call(&s, cmd, session, fwd).await {
        Ok(ok) => write_result(ok, |_, resp| {
            let mut m = Map::new();
            if let KvResponse::CompareAndSwap(c) = resp {
                m.insert("succeeded".into(), c.succeeded.into());
                if !c.succeeded {
                    m.insert(
                        "current".into(),
                        c.current.as_ref().map_or(Value::Null, kv_json),
                    );
                }
            }
            m
        }),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
struct KeyIn {
    key: Option<String>,
    key_b64: Option<String>,
}

#[derive(Deserialize)]
struct PutOpIn {
    key: Option<String>,
    key_b64: Option<String>,
    value: Option<String>,
    value_b64: Option<String>,
}

#[derive(Deserialize)]
struct OpIn {
    put: Option<PutOpIn>,
    delete: Option<KeyIn>,
    get: Option<KeyIn>,
}

#[derive(Deserialize)]
struct CompareIn {
    key: Option<String>,
    key_b64: Option<String>,
    target: String,
    op: String,
    value: Option<String>,
    value_b64: Option<String>,
    number: Option<u64>,
}

#[derive(Deserialize)]
struct TxnIn {
    #[serde(default)]
    compare: Vec<CompareIn>,
    #[serde(default)]
    success: Vec<OpIn>,
    #[serde(default)]
    failure: Vec<OpIn>,
    session: Option<SessionIn>,
}

fn txn_op(s: &ApiState, op: &OpIn, field: &str) -> Result<TxnOp, ApiError> {
    match (&op.put, &op.delete, &op.get) {
        (Some(p), None, None) => {
            let key =
                bytes_of(&p.key, &p.key_b64, &format!("{field}.put.key"), true)?.expect("required");
            check_key(s, &key)?;
            let value = bytes_of(&p.value, &p.value_b64, &format!("{field}.put.value"), true)?
                .expect("required");
            check_value(s, &value)?;
            Ok(TxnOp::Put(PutRequest {
                key,
                value,
                prev_kv: false,
            }))
        }
        (None, Some(d), None) => {
            let key = bytes_of(&d.key, &d.key_b64, &format!("{field}.delete.key"), true)?
                .expect("required");
            check_key(s, &key)?;
            Ok(TxnOp::Delete(DeleteRequest {
                range: KeyRange::Key(key),
                prev_kv: false,
            }))
        }
        (None, None, Some(g)) => {
            let key =
                bytes_of(&g.key, &g.key_b64, &format!("{field}.get.key"), true)?.expect("required");
            check_key(s, &key)?;
            Ok(TxnOp::Range(RangeRequest {
                range: KeyRange::Key(key),
                limit: 0,
            }))
        }
        _ => Err(ApiError::bad_request(
            field,
            "each op is exactly one of put, delete, get",
        )),
    }
}

async fn txn(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<Prepared, ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: TxnIn = parse_body(body, false)?;
        let mut compares = Vec::new();
        for (i, c) in input.compare.iter().enumerate() {
            let field = format!("compare[{i}]");
            let key =
                bytes_of(&c.key, &c.key_b64, &format!("{field}.key"), true)?.expect("required");
            check_key(&s, &key)?;
            let op = match c.op.as_str() {
                "==" | "=" => CompareOp::Equal,
                "!=" => CompareOp::NotEqual,
                "<" => CompareOp::Less,
                ">" => CompareOp::Greater,
                _ => {
                    return Err(ApiError::bad_request(
                        &format!("{field}.op"),
                        "op must be ==, !=, < or >",
                    ))
                }
            };
            let number = || {
                c.number.ok_or_else(|| {
                    ApiError::bad_request(&format!("{field}.number"), "number is required")
                })
            };
            let target = match c.target.as_str() {
                "value" => CompareTarget::Value(
                    bytes_of(&c.value, &c.value_b64, &format!("{field}.value"), true)?
                        .expect("required"),
                ),
                "mod_revision" => CompareTarget::ModRevision(number()?),
                "version" => CompareTarget::Version(number()?),
                "create_revision" => CompareTarget::CreateRevision(number()?),
                _ => {
                    return Err(ApiError::bad_request(
                        &format!("{field}.target"),
                        "target must be value, mod_revision, version or create_revision",
                    ))
                }
            };
            compares.push(Compare { key, op, target });
        }
        let mut success = Vec::new();
        for (i, op) in input.success.iter().enumerate() {
            success.push(txn_op(&s, op, &format!("success[{i}]"))?);
        }
        let mut failure = Vec::new();
        for (i, op) in input.failure.iter().enumerate() {
            failure.push(txn_op(&s, op, &format!("failure[{i}]"))?);
        }
        let session = session_tag(&input.session)?;
        let cmd = Command::Write {
            session,
            request: WriteRequest::Txn(TxnRequest {
                compares,
                success,
                failure,
            }),
        };
        Ok((cmd, session, fwd))
    })();
    let (cmd, session, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match write_call(&s, cmd, session, fwd).await {
        Ok(ok) => write_result(ok, |revision, resp| {
            let mut m = Map::new();
            if let KvResponse::Txn(t) = resp {
                m.insert("succeeded".into(), t.succeeded.into());
                let responses = t
                    .responses
                    .iter()
                    .map(|r| match r {
                        TxnOpResponse::Put(_) => json!({"put": {"revision": revision}}),
                        TxnOpResponse::Delete(d) => json!({"delete": {"deleted": d.deleted}}),
                        TxnOpResponse::Range(r) => {
                            json!({"get": {"kv": r.kvs.first().map_or(Value::Null, kv_json)}})
                        }
                    })
                    .collect();
                m.insert("responses".into(), Value::Array(responses));
            }
            m
        }),
        Err(resp) => resp,
    }
}

async fn register_session(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let fwd = match forward_ctx(&uri, method, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = parse_body::<Value>(body, true) {
        return e.into_response();
    }
    match write_call(&s, Command::RegisterSession, None, fwd).await {
        Ok(ok) => write_result(ok, |_, resp| {
            let mut m = Map::new();
            if let KvResponse::SessionRegistered { client_id } = resp {
                m.insert("client_id".into(), client_id.into());
            }
            m
        }),
        Err(resp) => resp,
    }
}

// ----- Cluster routes -----

fn status_json(s: &ApiState) -> Value {
    let st = s.shared.status();
    let leader = leader_json(st.header.leader.map(|id| (id, s.shared.client_addr(id))));
    let members = s.shared.members(&st);
    json!({
        "header": st.header,
        "node_id": s.shared.node_id,
        "role": st.role,
        "term": st.header.term,
        "leader": leader,
        "commit_index": st.commit_index,
        "applied_index": st.header.applied_index,
        "config_version": st.header.config_version,
        "members": members,
        "mode": st.mode,
        "revision": st.header.revision,
        "lease_valid": st.lease_valid,
        "last_contact_ms": st.last_contact_ms,
        "version": version_json(s),
    })
}

/// What this binary speaks and stores, what the cluster finalized, and what each peer's
/// handshake said (docs/upgrades.md).
fn version_json(s: &ApiState) -> Value {
    use std::sync::atomic::Ordering;
    let peers: Map<String, Value> = s
        .shared
        .peer_versions()
        .into_iter()
        .map(|(id, v)| {
            let peer = json!({
                "protocol": format!("{}.{}", crate::wire::PROTOCOL_MAJOR, v.protocol_minor),
                "cluster_version_max": v.cluster_version_max,
            });
            (id.to_string(), peer)
        })
        .collect();
    json!({
        "binary": env!("CARGO_PKG_VERSION"),
        "protocol": format!("{}.{}", crate::wire::PROTOCOL_MAJOR, crate::wire::PROTOCOL_MINOR),
        "cluster_version": s.shared.cluster_version(),
        "cluster_version_max": crate::version::CLUSTER_VERSION_MAX,
        "data_format": s.shared.data_format.load(Ordering::Acquire),
        "peers": peers,
    })
}

async fn status(State(s): State<ApiState>) -> Response {
    (StatusCode::OK, Json(status_json(&s))).into_response()
}

fn members_response(s: &ApiState, header: Option<&Header>) -> Response {
    let st = s.shared.status();
    let members = s.shared.members(&st);
    let mut m = Map::new();
    m.insert(
        "members".into(),
        serde_json::to_value(members).expect("members serialize"),
    );
    m.insert("config_version".into(), st.header.config_version.into());
    ok_json(header.unwrap_or(&st.header), m)
}

async fn list_members(State(s): State<ApiState>) -> Response {
    members_response(&s, None)
}

#[derive(Deserialize)]
struct MemberIn {
    id: NodeId,
    peer_addr: String,
    client_addr: String,
}

fn check_addr(field: &str, a: &str) -> Result<(), ApiError> {
    if a.is_empty()
        || a.len() > crate::codec::ADDRESS_BYTES_MAX
        || !a.contains(':')
        || a.chars().any(char::is_whitespace)
    {
        return Err(ApiError::bad_request(
            field,
            format!("{field} must be HOST:PORT"),
        ));
    }
    Ok(())
}

async fn conf_change(
    s: &ApiState,
    change: ConfChange,
    forward: Option<(Method, Uri, Bytes)>,
) -> Response {
    match call(s, |reply| Request::ConfChange { change, reply }).await {
        Ok(ok) => members_response(s, Some(&ok.header)),
        Err(e) => maybe_forward(s, e, forward).await,
    }
}

async fn add_member(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<(MemberIn, Forward), ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: MemberIn = parse_body(body, false)?;
        if input.id == 0 {
            return Err(ApiError::bad_request("id", "id must be positive"));
        }
        check_addr("peer_addr", &input.peer_addr)?;
        check_addr("client_addr", &input.client_addr)?;
        Ok((input, fwd))
    })();
    let (input, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // First replicate the new member's addresses, then add it as a learner.
    let payload = Envelope::AddressUpdate {
        id: input.id,
        addresses: Addresses {
            peer_addr: input.peer_addr,
            client_addr: input.client_addr,
        },
    }
    .encode();
    if let Err(e) = call(&s, |reply| Request::Write {
        payload,
        session: None,
        reply,
    })
    .await
    {
        return maybe_forward(&s, e, fwd).await;
    }
    conf_change(&s, ConfChange::AddLearner(input.id), fwd).await
}

fn member_id(
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<NodeId, ApiError> {
    match id {
        Ok(Path(id)) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(
            "id",
            "member id must be a positive integer",
        )),
    }
}

async fn promote_member(
    State(s): State<ApiState>,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (id, fwd) = match member_id(id).and_then(|id| Ok((id, forward_ctx(&uri, method, &body)?))) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    conf_change(&s, ConfChange::Promote(id), fwd).await
}

async fn remove_member(
    State(s): State<ApiState>,
    id: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (id, fwd) = match member_id(id).and_then(|id| Ok((id, forward_ctx(&uri, method, &body)?))) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    conf_change(&s, ConfChange::Remove(id), fwd).await
}

#[derive(Deserialize)]
struct TransferIn {
    target: Option<NodeId>,
}

async fn transfer_leader(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<(Option<NodeId>, Forward), ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: TransferIn = parse_body(body, true)?;
        if input.target == Some(0) {
            return Err(ApiError::bad_request(
                "target",
                "target must be a positive node id",
            ));
        }
        Ok((input.target, fwd))
    })();
    let (target, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match call(&s, |reply| Request::Transfer { target, reply }).await {
        Ok(t) => {
            let mut m = Map::new();
            m.insert("target".into(), t.into());
            ok_json(&s.shared.header(), m)
        }
        Err(e) => maybe_forward(&s, e, fwd).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinalizeIn {
    version: Option<u32>,
}

/// Finalizes an upgrade (docs/upgrades.md): on the leader, checks that every member's binary
/// (from its latest handshake) can run the target cluster version, then commits
/// `SetClusterVersion`. From then on no node can be rolled back to an older release.
async fn finalize_upgrade(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = (|| -> Result<(Option<u32>, Forward), ApiError> {
        let fwd = forward_ctx(&uri, method, &body)?;
        let input: FinalizeIn = parse_body(body, true)?;
        if input.version == Some(0) {
            return Err(ApiError::bad_request(
                "version",
                "cluster versions start at 1",
            ));
        }
        Ok((input.version, fwd))
    })();
    let (requested, fwd) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let st = s.shared.status();
    if st.role != "leader" {
        let leader = st.header.leader.map(|id| (id, s.shared.client_addr(id)));
        let e = ApiError::not_leader(leader, st.header.term, st.last_contact_ms);
        return maybe_forward(&s, e, fwd).await;
    }
    let members: Vec<NodeId> = st
        .voters
        .iter()
        .chain(&st.voters_outgoing)
        .chain(&st.learners)
        .copied()
        .filter(|&id| id != s.shared.node_id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let current = s.shared.cluster_version();
    let target = match crate::version::finalize_target(
        requested,
        current,
        crate::version::CLUSTER_VERSION_MAX,
        &members,
        &s.shared.peer_versions(),
    ) {
        Ok(t) => t,
        Err(reason) => return ApiError::failed_precondition(reason).into_response(),
    };
    match write_call(
        &s,
        Command::SetClusterVersion { version: target },
        None,
        fwd,
    )
    .await
    {
        Ok(ok) => write_result(ok, |_, resp| {
            let mut m = Map::new();
            if let KvResponse::ClusterVersionSet { version, previous } = resp {
                m.insert("cluster_version".into(), version.into());
                m.insert("previous".into(), previous.into());
            }
            m
        }),
        Err(resp) => resp,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorIn {
    node: NodeId,
    seq: u64,
    head: String,
}

/// Internal: a follower's audit chain head, proposed by the leader (see lib.rs). An anchor
/// only claims "node N's chain had hash H at record S"; a false one makes that node's file
/// fail verification (a false alarm), it cannot hide tampering.
async fn audit_anchor(State(s): State<ApiState>, body: Result<Bytes, BytesRejection>) -> Response {
    let a: AnchorIn = match parse_body(body, false) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let head = match hex::decode(&a.head)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
    {
        Some(h) => h,
        None => {
            return ApiError::bad_request("head", "head must be 64 hex digits (SHA-256)")
                .into_response()
        }
    };
    if a.node == 0 {
        return ApiError::bad_request("node", "node ids start at 1").into_response();
    }
    let cmd = Command::AuditAnchor {
        node: a.node,
        seq: a.seq,
        head,
    };
    match write_call(&s, cmd, None, None).await {
        Ok(ok) => ok_json(&ok.header, Map::new()),
        Err(resp) => resp,
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let body = s.shared.metrics.encode();
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn health(State(s): State<ApiState>) -> Response {
    if s.shared.is_shutting_down() {
        return ApiError::unavailable("node is shutting down")
            .retry("other_node")
            .into_response();
    }
    let st = s.shared.status();
    (
        StatusCode::OK,
        Json(json!({"status": "ok", "node_id": s.shared.node_id, "mode": st.mode})),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new("NOT_FOUND", format!("no route for {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}
