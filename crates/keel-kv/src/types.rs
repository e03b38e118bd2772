//! Data types shared by commands, results and reads: key-values, key ranges, compares.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Wire, Writer};

/// A key with its value and etcd-style metadata.
///
/// Invariants (asserted where written): `1 <= create_revision <= mod_revision <= revision`
/// (the store's revision), `version >= 1`; `version` counts puts since the key was created and
/// restarts at 1 when a deleted key is put again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// Which keys an operation covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRange {
    /// Exactly one key (must be non-empty).
    Key(Vec<u8>),
    /// Every key starting with the prefix; the empty prefix means every key.
    Prefix(Vec<u8>),
    /// Keys in `[start, end)` in byte order; `end: None` means no upper bound.
    Interval {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// The half-open interval `[start, end)` covered by this range; `None` end is unbounded.
    pub fn to_interval(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            KeyRange::Key(key) => {
                // The immediate successor of `key` in byte order is `key` followed by 0x00.
                let mut end = key.clone();
                end.push(0);
                (key.clone(), Some(end))
            }
            KeyRange::Prefix(prefix) => (prefix.clone(), prefix_end(prefix)),
            KeyRange::Interval { start, end } => (start.clone(), end.clone()),
        }
    }
}

/// The first key after every key starting with `prefix`, or `None` if there is none (the
/// prefix is empty or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            assert!(end.as_slice() > prefix);
            return Some(end);
        }
    }
    None
}

/// What a compare looks at, with the value to compare against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareTarget {
    /// The key's value. A compare on the value of an absent key is always false (etcd).
    Value(Vec<u8>),
    /// The key's mod revision; an absent key has 0.
    ModRevision(u64),
    /// The key's version; an absent key has 0.
    Version(u64),
    /// The key's create revision; an absent key has 0.
    CreateRevision(u64),
}

/// How the key's current field compares to the target: `current OP target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

impl CompareOp {
    pub(crate) fn holds<T: Ord + ?Sized>(self, current: &T, target: &T) -> bool {
        match self {
            CompareOp::Equal => current == target,
            CompareOp::NotEqual => current != target,
            CompareOp::Less => current < target,
            CompareOp::Greater => current > target,
        }
    }
}

/// One guard of a transaction: `key.<target field> <op> <target value>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Wire for KeyValue {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.key);
        w.bytes(&self.value);
        w.varint(self.create_revision);
        w.varint(self.mod_revision);
        w.varint(self.version);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(KeyValue {
            key: r.bytes()?,
            value: r.bytes()?,
            create_revision: r.varint()?,
            mod_revision: r.varint()?,
            version: r.varint()?,
        })
    }
}

impl Wire for KeyRange {
    fn write(&self, w: &mut Writer) {
        match self {
            KeyRange::Key(key) => {
                w.u8(0);
                w.bytes(key);
            }
            KeyRange::Prefix(prefix) => {
                w.u8(1);
                w.bytes(prefix);
            }
            KeyRange::Interval { start, end } => {
                w.u8(2);
                w.bytes(start);
                w.opt_bytes(end.as_deref());
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => KeyRange::Key(r.bytes()?),
            1 => KeyRange::Prefix(r.bytes()?),
            2 => KeyRange::Interval {
                start: r.bytes()?,
                end: r.opt_bytes()?,
            },
            _ => return Err(r.error("unknown key range tag")),
        })
    }
}

impl Wire for CompareTarget {
    fn write(&self, w: &mut Writer) {
        match self {
            CompareTarget::Value(value) => {
                w.u8(0);
                w.bytes(value);
            }
            CompareTarget::ModRevision(n) => {
                w.u8(1);
                w.varint(*n);
            }
            CompareTarget::Version(n) => {
                w.u8(2);
                w.varint(*n);
            }
            CompareTarget::CreateRevision(n) => {
                w.u8(3);
                w.varint(*n);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => CompareTarget::Value(r.bytes()?),
            1 => CompareTarget::ModRevision(r.varint()?),
            2 => CompareTarget::Version(r.varint()?),
            3 => CompareTarget::CreateRevision(r.varint()?),
            _ => return Err(r.error("unknown compare target tag")),
        })
    }
}

impl Wire for CompareOp {
    fn write(&self, w: &mut Writer) {
        w.u8(match self {
            CompareOp::Equal => 0,
            CompareOp::NotEqual => 1,
            CompareOp::Less => 2,
            CompareOp::Greater => 3,
        });
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            0 => CompareOp::Equal,
            1 => CompareOp::NotEqual,
            2 => CompareOp::Less,
            3 => CompareOp::Greater,
            _ => return Err(r.error("unknown compare op tag")),
        })
    }
}

impl Wire for Compare {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.key);
        self.op.write(w);
        self.target.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Compare {
            key: r.bytes()?,
            op: CompareOp::read(r)?,
            target: CompareTarget::read(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_below_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn single_key_interval_contains_only_the_key() {
        let (start, end) = KeyRange::Key(b"k".to_vec()).to_interval();
        let end = end.unwrap();
        assert!(start.as_slice() == b"k");
        assert!(b"k\x00".as_slice() >= end.as_slice());
    }
}
