//! Records: what the caller appends (`Record`), what a line of the file holds (`Entry`), the
//! canonical JSON line, and the canonical binary encoding the record hash covers.
//!
//! A line is accepted only if re-rendering its parsed content gives back exactly its bytes, so
//! every byte of the file is either covered by the record hash or fixed by the format.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::kind::Kind;

/// SHA-256 output.
pub type Hash = [u8; HASH_BYTES];
pub const HASH_BYTES: usize = 32;

/// Longest accepted line, without its newline. Bounds memory per line when reading any file.
pub const RECORD_LINE_BYTES_MAX: usize = 8 * 1024;
/// Most entries in one record's `details`.
pub const DETAILS_ENTRIES_MAX: usize = 16;
/// Longest `details` key. Keys are schema names: 1 to 64 of `[a-z0-9_]`.
pub const DETAIL_KEY_BYTES_MAX: usize = 64;
/// Longest `details` text value (UTF-8 bytes). `Details::text` cuts longer values.
pub const DETAIL_TEXT_BYTES_MAX: usize = 512;
/// Longest cluster id.
pub const CLUSTER_ID_BYTES_MAX: usize = 128;

/// The `details` key that record 0 of every chain carries: the cluster id the genesis hash binds.
pub const DETAIL_CLUSTER_ID: &str = "cluster_id";

/// Domain separation for the record hash and the genesis hash.
const RECORD_HASH_DOMAIN: &[u8] = b"keel-audit-record-v1\0";
const GENESIS_DOMAIN: &[u8] = b"keel-audit-genesis-v1\0";

/// A `details` value. Canonical: a non-negative integer is always `Uint`, `Int` is negative.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Text(String),
    Uint(u64),
    Int(i64),
}

/// The `details` object: schema keys to text or integers, sorted by key, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    entries: BTreeMap<String, Value>,
}

impl Details {
    pub fn new() -> Details {
        Details::default()
    }

    /// Adds a text value (user data welcome: JSON escaping neutralizes newlines and control
    /// characters). Values longer than `DETAIL_TEXT_BYTES_MAX` are cut at a character boundary
    /// and end with "…", so a long user string never makes an audit append fail.
    pub fn text(mut self, key: &str, value: &str) -> Details {
        self.entries
            .insert(key.to_string(), Value::Text(cut_text(value)));
        self
    }

    pub fn uint(mut self, key: &str, value: u64) -> Details {
        self.entries.insert(key.to_string(), Value::Uint(value));
        self
    }

    /// Adds a signed integer (stored as `Uint` when non-negative: one encoding per number).
    pub fn int(mut self, key: &str, value: i64) -> Details {
        let value = match u64::try_from(value) {
            Ok(unsigned) => Value::Uint(unsigned),
            Err(_) => Value::Int(value),
        };
        self.entries.insert(key.to_string(), value);
        self
    }

    /// A 32-byte hash as 64 lowercase hex digits.
    pub fn hash(self, key: &str, value: &Hash) -> Details {
        self.text(key, &hex::encode(value))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    pub fn get_uint(&self, key: &str) -> Option<u64> {
        match self.entries.get(key) {
            Some(Value::Uint(value)) => Some(*value),
            _ => None,
        }
    }

    pub fn get_text(&self, key: &str) -> Option<&str> {
        match self.entries.get(key) {
            Some(Value::Text(value)) => Some(value),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn insert(&mut self, key: &str, value: Value) {
        self.entries.insert(key.to_string(), value);
    }

    /// Checks the limits and canonical forms; the reason names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.entries.len() > DETAILS_ENTRIES_MAX {
            return Err(format!(
                "details has {} entries, limit {DETAILS_ENTRIES_MAX}",
                self.entries.len()
            ));
        }
        for (key, value) in &self.entries {
            if !valid_key(key) {
                return Err(format!(
                    "details key {key:?} is not 1 to {DETAIL_KEY_BYTES_MAX} of [a-z0-9_]"
                ));
            }
            match value {
                Value::Text(text) if text.len() > DETAIL_TEXT_BYTES_MAX => {
                    return Err(format!(
                        "details.{key} is {} bytes, limit {DETAIL_TEXT_BYTES_MAX}",
                        text.len()
                    ));
                }
                Value::Int(int) if *int >= 0 => {
                    return Err(format!("details.{key}: non-negative Int must be Uint"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= DETAIL_KEY_BYTES_MAX
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn cut_text(value: &str) -> String {
    if value.len() <= DETAIL_TEXT_BYTES_MAX {
        return value.to_string();
    }
    const MARK: &str = "…";
    let mut end = DETAIL_TEXT_BYTES_MAX - MARK.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let cut = format!("{}{MARK}", &value[..end]);
    assert!(cut.len() <= DETAIL_TEXT_BYTES_MAX);
    cut
}

/// What the caller appends. The log assigns `seq`, `node`, `prev` and `hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// The node's wall clock when the record was made, in ms since the Unix epoch.
    /// Informational only: nothing verifies it and nothing should trust it.
    pub wall_ms: u64,
    /// Raft term, when the record is derived from the log (else None).
    pub term: Option<u64>,
    /// Raft log index, when the record is derived from the log (else None).
    pub index: Option<u64>,
    pub details: Details,
}

impl Record {
    /// A record of something this node did or saw locally (not derived from the log).
    pub fn local(kind: Kind, wall_ms: u64, details: Details) -> Record {
        Record {
            kind,
            wall_ms,
            term: None,
            index: None,
            details,
        }
    }

    /// A record derived from the committed log entry at (`term`, `index`). Every node that
    /// applies the entry builds it from the entry alone, so kind, term, index and details are
    /// identical on every node (only seq, node, wall_ms, prev and hash differ). `wall_ms` is 0;
    /// set it with `with_wall_ms` if wanted.
    pub fn from_log(kind: Kind, term: u64, index: u64, details: Details) -> Record {
        Record {
            kind,
            wall_ms: 0,
            term: Some(term),
            index: Some(index),
            details,
        }
    }

    pub fn with_wall_ms(mut self, wall_ms: u64) -> Record {
        self.wall_ms = wall_ms;
        self
    }

    pub fn validate(&self) -> Result<(), String> {
        self.details.validate()?;
        if self.kind == Kind::AnchorCommitted
            && crate::anchor::Anchor::from_details(&self.details).is_none()
        {
            return Err("anchor_committed details must hold anchor_node, anchor_seq and anchor_head (64 hex digits)".to_string());
        }
        Ok(())
    }
}

/// One line of an audit file: a record with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the chain: 0 for the first line, contiguous.
    pub seq: u64,
    /// The node whose file this is.
    pub node: u64,
    pub record: Record,
    /// SHA-256 of the previous line's exact bytes (without its newline); for seq 0, the genesis
    /// hash of (cluster id, node).
    pub prev: Hash,
    /// SHA-256 of the canonical encoding of every other field (`Entry::compute_hash`).
    pub hash: Hash,
}

/// The chain's newest record: what an anchor pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl serde::Serialize for Head {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Head", 2)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("hash", &hex::encode(self.hash))?;
        s.end()
    }
}

/// The `prev` of record 0: SHA-256("keel-audit-genesis-v1\0" || u32 BE length || cluster id ||
/// u64 BE node).
pub fn genesis_hash(cluster_id: &str, node: u64) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(GENESIS_DOMAIN);
    hasher.update((cluster_id.len() as u32).to_be_bytes());
    hasher.update(cluster_id.as_bytes());
    hasher.update(node.to_be_bytes());
    hasher.finalize().into()
}

/// SHA-256 of a line's exact bytes (without the newline): the next record's `prev`.
pub fn line_hash(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_option(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

impl Entry {
    /// The canonical encoding hashed into `hash`: domain, then seq, kind name, node, wall_ms,
    /// term, index, details, prev. Integers u64 big-endian; strings u32 big-endian length then
    /// bytes; options a 0/1 byte then the value; details a u32 count then (key, tag, value) in
    /// key order with tag 0 text, 1 u64, 2 i64 (two's complement, big-endian).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(RECORD_HASH_DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        put_bytes(&mut out, self.record.kind.as_str().as_bytes());
        out.extend_from_slice(&self.node.to_be_bytes());
        out.extend_from_slice(&self.record.wall_ms.to_be_bytes());
        put_option(&mut out, self.record.term);
        put_option(&mut out, self.record.index);
        out.extend_from_slice(&(self.record.details.len() as u32).to_be_bytes());
        for (key, value) in self.record.details.iter() {
            put_bytes(&mut out, key.as_bytes());
            match value {
                Value::Text(text) => {
                    out.push(0);
                    put_bytes(&mut out, text.as_bytes());
                }
                Value::Uint(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_be_bytes());
                }
                Value::Int(v) => {
                    out.push(2);
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        out.extend_from_slice(&self.prev);
        out
    }

    pub fn compute_hash(&self) -> Hash {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// The canonical JSON line, without the newline. Field order is fixed; strings are escaped
    /// by serde_json (quotes, backslashes and every control character), so no user data can
    /// start a new line or carry a terminal escape.
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(256);
        line.push_str(&format!(
            "{{\"seq\":{},\"kind\":\"{}\",\"node\":{},\"wall_ms\":{},\"term\":{},\"index\":{},\"details\":{{",
            self.seq,
            self.record.kind.as_str(),
            self.node,
            self.record.wall_ms,
            json_option(self.record.term),
            json_option(self.record.index),
        ));
        for (i, (key, value)) in self.record.details.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&json_string(key));
            line.push(':');
            match value {
                Value::Text(text) => line.push_str(&json_string(text)),
                Value::Uint(v) => line.push_str(&v.to_string()),
                Value::Int(v) => line.push_str(&v.to_string()),
            }
        }
        line.push_str(&format!(
            "}},\"prev\":\"{}\",\"hash\":\"{}\"}}",
            hex::encode(self.prev),
            hex::encode(self.hash)
        ));
        assert!(!line.contains('\n'));
        line
    }

    /// Parses one line (without its newline) and checks it completely: JSON shape, known kind,
    /// limits, canonical bytes (re-rendering gives the same line) and the record hash. Does not
    /// check the chain (seq, prev, node): that needs the previous line.
    pub fn parse_line(line: &[u8]) -> Result<Entry, String> {
        if line.len() > RECORD_LINE_BYTES_MAX {
            return Err(format!(
                "line is {} bytes, limit {RECORD_LINE_BYTES_MAX}",
                line.len()
            ));
        }
        let raw: RawLine =
            serde_json::from_slice(line).map_err(|e| format!("not a record: {e}"))?;
        let kind = Kind::parse(&raw.kind).ok_or_else(|| format!("unknown kind {:?}", raw.kind))?;
        let mut details = Details::new();
        for (key, value) in raw.details {
            let value = if let Some(text) = value.as_str() {
                Value::Text(text.to_string())
            } else if let Some(v) = value.as_u64() {
                Value::Uint(v)
            } else if let Some(v) = value.as_i64() {
                Value::Int(v)
            } else {
                return Err(format!("details.{key} is neither text nor an integer"));
            };
            details.insert(&key, value);
        }
        let entry = Entry {
            seq: raw.seq,
            node: raw.node,
            record: Record {
                kind,
                wall_ms: raw.wall_ms,
                term: raw.term,
                index: raw.index,
                details,
            },
            prev: parse_hash(&raw.prev).ok_or("prev is not 64 lowercase hex digits")?,
            hash: parse_hash(&raw.hash).ok_or("hash is not 64 lowercase hex digits")?,
        };
        entry.record.validate()?;
        if entry.to_line().as_bytes() != line {
            return Err("line is not in canonical form (bytes were changed)".to_string());
        }
        if entry.compute_hash() != entry.hash {
            return Err("record hash does not match its content (record was modified)".to_string());
        }
        Ok(entry)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    seq: u64,
    kind: String,
    node: u64,
    wall_ms: u64,
    term: Option<u64>,
    index: Option<u64>,
    details: BTreeMap<String, serde_json::Value>,
    prev: String,
    hash: String,
}

/// 64 lowercase hex digits to a hash (uppercase is refused: one spelling per hash).
pub fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 2 * HASH_BYTES || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut hash = [0u8; HASH_BYTES];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

fn json_option(value: Option<u64>) -> String {
    match value {
        None => "null".to_string(),
        Some(v) => v.to_string(),
    }
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("serializing a str cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(details: Details) -> Entry {
        let mut entry = Entry {
            seq: 3,
            node: 2,
            record: Record::from_log(Kind::MembershipCommitted, 4, 17, details).with_wall_ms(99),
            prev: genesis_hash("c", 2),
            hash: [0; HASH_BYTES],
        };
        entry.hash = entry.compute_hash();
        entry
    }

    #[test]
    fn line_round_trips_and_is_one_line() {
        let e = entry(
            Details::new()
                .text("user_key", "a\nb\u{1b}[31m\"\\")
                .uint("voters", 3)
                .int("skew_ms", -5)
                .int("zero", 0),
        );
        let line = e.to_line();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'));
        assert!(line.contains("\\u001b"));
        assert_eq!(Entry::parse_line(line.as_bytes()).unwrap(), e);
        assert_eq!(e.record.details.get("zero"), Some(&Value::Uint(0)));
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let e = entry(Details::new().text("path", "/x").uint("n", 5));
        let line = e.to_line();
        for (from, to) in [
            ("\"/x\"", "\"\\/x\""),
            (":5", ":5.0"),
            (":5", ":05"),
            ("\"seq\":3", "\"seq\": 3"),
        ] {
            let forged = line.replacen(from, to, 1);
            assert_ne!(forged, line);
            assert!(Entry::parse_line(forged.as_bytes()).is_err(), "{forged}");
        }
        let upper = line.replacen(&hex::encode(e.hash), &hex::encode_upper(e.hash), 1);
        assert!(Entry::parse_line(upper.as_bytes()).is_err());
    }

    #[test]
    fn details_limits() {
        let long = "é".repeat(DETAIL_TEXT_BYTES_MAX);
        let d = Details::new().text("k", &long);
        let Some(Value::Text(cut)) = d.get("k") else {
            panic!()
        };
        assert!(cut.len() <= DETAIL_TEXT_BYTES_MAX && cut.ends_with('…'));
        assert!(d.validate().is_ok());
        assert!(Details::new().uint("Bad", 1).validate().is_err());
        assert!(Details::new().uint("", 1).validate().is_err());
        let mut many = Details::new();
        for i in 0..=DETAILS_ENTRIES_MAX {
            many = many.uint(&format!("k{i}"), 1);
        }
        assert!(many.validate().is_err());
    }

    #[test]
    fn genesis_binds_cluster_and_node() {
        assert_ne!(genesis_hash("a", 1), genesis_hash("a", 2));
        assert_ne!(genesis_hash("a", 1), genesis_hash("b", 1));
        assert_eq!(genesis_hash("a", 1), genesis_hash("a", 1));
    }
}
