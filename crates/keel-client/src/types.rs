//! Typed requests options and results. Results keep the server's JSON (`raw`) next to the typed
//! fields, so a tool can print exactly what the server said (`keel ... --json`).
//!
//! Parsing is lenient: a missing field reads as its zero value rather than failing the call,
//! because an older or newer server may add or omit fields.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::Error;

/// How a read may be served (issue: read levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadLevel {
    /// Leader under a lease, else ReadIndex: never stale.
    #[default]
    Linearizable,
    /// Any node that can prove its state is at most this stale.
    Bounded { max_staleness_ms: u64 },
    /// Any node, whatever its state; the answer says how stale it may be.
    Any,
}

impl ReadLevel {
    /// Parses the CLI/query form: `linearizable`, `bounded:<ms>`, `any`.
    pub fn parse(text: &str) -> Result<ReadLevel, Error> {
        match text {
            "linearizable" => Ok(ReadLevel::Linearizable),
            "any" => Ok(ReadLevel::Any),
            _ => match text.strip_prefix("bounded:") {
                Some(ms) => ms
                    .parse::<u64>()
                    .map(|max_staleness_ms| ReadLevel::Bounded { max_staleness_ms })
                    .map_err(|_| {
                        Error::InvalidArgument(format!(
                            "bad staleness bound in read level {text:?}"
                        ))
                    }),
                None => Err(Error::InvalidArgument(format!(
                    "unknown read level {text:?} (linearizable | bounded:<ms> | any)"
                ))),
            },
        }
    }

    pub fn as_query(&self) -> String {
        match self {
            ReadLevel::Linearizable => "linearizable".to_string(),
            ReadLevel::Bounded { max_staleness_ms } => format!("bounded:{max_staleness_ms}"),
            ReadLevel::Any => "any".to_string(),
        }
    }

    /// Only linearizable reads must go to the leader.
    pub(crate) fn needs_leader(&self) -> bool {
        matches!(self, ReadLevel::Linearizable)
    }
}

/// Per-call read options.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub level: ReadLevel,
    /// Refuse (or wait) if the serving node is behind this revision: monotonic reads.
    pub min_revision: Option<u64>,
    /// Overrides the client's call timeout.
    pub timeout_ms: Option<u64>,
}

/// A session tag (exactly-once writes). Normally filled in by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTag {
    pub client_id: u64,
    pub seq: u64,
    pub lowest_unacked_seq: u64,
}

impl SessionTag {
    pub(crate) fn to_json(self) -> Value {
        json!({
            "client_id": self.client_id,
            "seq": self.seq,
            "lowest_unacked_seq": self.lowest_unacked_seq,
        })
    }
}

/// Per-call write options.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Overrides the client's call timeout.
    pub timeout_ms: Option<u64>,
    /// Send this exact tag instead of the client's own session sequence (tests, tools that
    /// replay a write). The client's session, if any, is not advanced.
    pub session_override: Option<SessionTag>,
    /// Ask the server for the previous key-value (put).
    pub prev_kv: bool,
}

/// The header block every answer carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub term: u64,
    pub leader: Option<u64>,
    pub revision: u64,
    pub applied_index: u64,
    pub config_version: u64,
    pub served_by: u64,
}

/// How a read was served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub level: String,
    pub node: u64,
    pub term: u64,
    pub applied_index: u64,
    pub revision: u64,
    pub leader: Option<u64>,
    pub staleness_ms: Option<u64>,
    pub config_version: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

#[derive(Clone, Debug)]
pub struct PutResponse {
    pub header: ResponseHeader,
    pub revision: u64,
    pub prev_kv: Option<KeyValue>,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct GetResponse {
    pub header: ResponseHeader,
    pub kv: Option<KeyValue>,
    pub served: Served,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct DeleteResponse {
    pub header: ResponseHeader,
    pub deleted: u64,
    pub revision: u64,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct RangeResponse {
    pub header: ResponseHeader,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: u64,
    pub served: Served,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct CasResponse {
    pub header: ResponseHeader,
    pub succeeded: bool,
    pub revision: u64,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct TxnResponse {
    pub header: ResponseHeader,
    pub succeeded: bool,
    pub responses: Vec<Value>,
    pub raw: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub role: String,
    pub peer_addr: String,
    pub client_addr: String,
}

#[derive(Clone, Debug)]
pub struct Status {
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    /// (id, client_addr) of the leader this node knows.
    pub leader: Option<(u64, String)>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub config_version: u64,
    pub members: Vec<Member>,
    pub mode: String,
    pub revision: u64,
    /// Peer protocol this node's binary speaks ("1.0"; empty from a server without versions).
    pub protocol: String,
    /// The finalized cluster version this node applied (docs/upgrades.md).
    pub cluster_version: u32,
    /// The highest cluster version this node's binary can run.
    pub cluster_version_max: u32,
    /// The format of this node's data directory.
    pub data_format: u32,
    pub raw: Value,
}

/// `finalize_upgrade`'s answer: the cluster version before and after.
#[derive(Clone, Debug)]
pub struct FinalizeUpgrade {
    pub header: ResponseHeader,
    pub cluster_version: u32,
    pub previous: u32,
    pub raw: Value,
}

#[derive(Clone, Debug)]
pub struct MembersResponse {
    pub members: Vec<Member>,
    pub config_version: u64,
    pub raw: Value,
}

/// A successful answer that carries nothing typed beyond the header (member changes,
/// leadership transfer).
#[derive(Clone, Debug)]
pub struct AdminResponse {
    pub header: ResponseHeader,
    pub raw: Value,
}

/// How a compare-and-swap decides.
#[derive(Clone, Debug)]
pub enum CasExpectation {
    Value(Vec<u8>),
    ModRevision(u64),
}

/// The range to scan.
#[derive(Clone, Debug)]
pub enum RangeSpec {
    Prefix(Vec<u8>),
    /// `[start, end)`; `end` None means to the end of the keyspace.
    Span {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

// ---- encoding helpers -----------------------------------------------------------------------

/// Writes `bytes` under `name` (UTF-8) or `name_b64` (anything else) into `object`.
pub(crate) fn put_bytes(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            object.insert(name.to_string(), Value::String(text.to_string()));
        }
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            object.insert(format!("{name}_b64"), Value::String(encoded));
        }
    }
}

/// Reads `name` or `name_b64` from `object`.
pub(crate) fn get_bytes(object: &Value, name: &str) -> Option<Vec<u8>> {
    if let Some(text) = object.get(name).and_then(Value::as_str) {
        return Some(text.as_bytes().to_vec());
    }
    let encoded = object.get(format!("{name}_b64"))?.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
}

fn u64_field(object: &Value, name: &str) -> u64 {
    object.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// A u32 field (0: absent, not a number, or out of range).
pub(crate) fn u32_field(object: &Value, name: &str) -> u32 {
    object
        .get(name)
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// A leader field may be an id, an object with an id, or null.
fn leader_id(value: Option<&Value>) -> Option<u64> {
    let value = value?;
    if let Some(id) = value.as_u64() {
        return Some(id);
    }
    if let Some(text) = value.as_str() {
        return text.parse().ok();
    }
    value.get("id").and_then(Value::as_u64)
}

pub(crate) fn parse_header(body: &Value) -> ResponseHeader {
    let Some(header) = body.get("header") else {
        return ResponseHeader::default();
    };
    ResponseHeader {
        term: u64_field(header, "term"),
        leader: leader_id(header.get("leader")),
        revision: u64_field(header, "revision"),
        applied_index: u64_field(header, "applied_index"),
        config_version: u64_field(header, "config_version"),
        served_by: u64_field(header, "served_by"),
    }
}

pub(crate) fn parse_served(body: &Value) -> Served {
    let Some(served) = body.get("served") else {
        return Served::default();
    };
    Served {
        level: served
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        node: u64_field(served, "node"),
        term: u64_field(served, "term"),
        applied_index: u64_field(served, "applied_index"),
        revision: u64_field(served, "revision"),
        leader: leader_id(served.get("leader")),
        staleness_ms: served.get("staleness_ms").and_then(Value::as_u64),
        config_version: u64_field(served, "config_version"),
    }
}

pub(crate) fn parse_kv(value: &Value) -> Option<KeyValue> {
    if value.is_null() {
        return None;
    }
    Some(KeyValue {
        key: get_bytes(value, "key").unwrap_or_default(),
        value: get_bytes(value, "value").unwrap_or_default(),
        create_revision: u64_field(value, "create_revision"),
        mod_revision: u64_field(value, "mod_revision"),
        version: u64_field(value, "version"),
    })
}

pub(crate) fn parse_members(body: &Value) -> Vec<Member> {
    let Some(members) = body.get("members").and_then(Value::as_array) else {
        return Vec::new();
    };
    members
        .iter()
        .map(|member| Member {
            id: u64_field(member, "id"),
            role: member
                .get("role")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            peer_addr: member
                .get("peer_addr")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            client_addr: member
                .get("client_addr")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
        .collect()
}

pub(crate) fn parse_status(body: Value) -> Status {
    let leader = body.get("leader").and_then(|leader| {
        let id = leader.get("id").and_then(Value::as_u64)?;
        let client_addr = leader
            .get("client_addr")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Some((id, client_addr))
    });
    Status {
        node_id: u64_field(&body, "node_id"),
        role: body
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        term: u64_field(&body, "term"),
        leader,
        commit_index: u64_field(&body, "commit_index"),
        applied_index: u64_field(&body, "applied_index"),
        config_version: u64_field(&body, "config_version"),
        members: parse_members(&body),
        mode: body
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        revision: u64_field(&body, "revision"),
        protocol: body
            .pointer("/version/protocol")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        cluster_version: u32_field(&body["version"], "cluster_version"),
        cluster_version_max: u32_field(&body["version"], "cluster_version_max"),
        data_format: u32_field(&body["version"], "data_format"),
        raw: body,
    }
}

pub(crate) fn parse_put(body: Value) -> PutResponse {
    PutResponse {
        header: parse_header(&body),
        revision: u64_field(&body, "revision"),
        prev_kv: body.get("prev_kv").and_then(parse_kv),
        raw: body,
    }
}

pub(crate) fn parse_get(body: Value) -> GetResponse {
    GetResponse {
        header: parse_header(&body),
        kv: body.get("kv").and_then(parse_kv),
        served: parse_served(&body),
        raw: body,
    }
}

pub(crate) fn parse_delete(body: Value) -> DeleteResponse {
    let deleted = match body.get("deleted") {
        Some(Value::Bool(deleted)) => u64::from(*deleted),
        Some(other) => other.as_u64().unwrap_or(0),
        None => 0,
    };
    DeleteResponse {
        header: parse_header(&body),
        deleted,
        revision: u64_field(&body, "revision"),
        raw: body,
    }
}

pub(crate) fn parse_range(body: Value) -> RangeResponse {
    let kvs: Vec<KeyValue> = body
        .get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| kvs.iter().filter_map(parse_kv).collect())
        .unwrap_or_default();
    RangeResponse {
        header: parse_header(&body),
        count: body
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or(kvs.len() as u64),
        kvs,
        more: body.get("more").and_then(Value::as_bool).unwrap_or(false),
        served: parse_served(&body),
        raw: body,
    }
}

pub(crate) fn parse_cas(body: Value) -> CasResponse {
    CasResponse {
        header: parse_header(&body),
        succeeded: body
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        revision: u64_field(&body, "revision"),
        raw: body,
    }
}

pub(crate) fn parse_txn(body: Value) -> TxnResponse {
    TxnResponse {
        header: parse_header(&body),
        succeeded: body
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        responses: body
            .get("responses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        raw: body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_level_round_trip() {
        for text in ["linearizable", "any", "bounded:250"] {
            assert_eq!(ReadLevel::parse(text).unwrap().as_query(), text);
        }
        assert!(ReadLevel::parse("bounded:x").is_err());
        assert!(ReadLevel::parse("eventual").is_err());
    }

    #[test]
    fn bytes_use_b64_only_when_not_utf8() {
        let mut object = Map::new();
        put_bytes(&mut object, "value", b"hello");
        put_bytes(&mut object, "key", &[0xff, 0x00]);
        let value = Value::Object(object);
        assert_eq!(value["value"], "hello");
        assert_eq!(value["key_b64"], "/wA=");
        assert_eq!(get_bytes(&value, "key").unwrap(), vec![0xff, 0x00]);
        assert_eq!(get_bytes(&value, "value").unwrap(), b"hello".to_vec());
    }

    #[test]
    fn get_parses_kv_and_served() {
        let body = json!({
            "header": {"term": 3, "leader": 1, "revision": 9, "applied_index": 12,
                       "config_version": 1, "served_by": 2},
            "kv": {"key": "k", "value": "v", "create_revision": 4, "mod_revision": 9, "version": 2},
            "served": {"level": "any", "node": 2, "term": 3, "applied_index": 12, "revision": 9,
                       "leader": {"id": 1, "client_addr": "x:1"}, "staleness_ms": 40,
                       "config_version": 1}
        });
        let get = parse_get(body);
        assert_eq!(get.header.leader, Some(1));
        assert_eq!(get.kv.as_ref().unwrap().value, b"v".to_vec());
        assert_eq!(get.kv.unwrap().version, 2);
        assert_eq!(get.served.leader, Some(1));
        assert_eq!(get.served.staleness_ms, Some(40));
    }
}
