//! Byte encodings the server owns: the log entry payload stored in the WAL (core `Entry` kind and
//! stamp around the application bytes), the application envelope inside `Normal` entries (a
//! keel-kv command or an address-book update), the snapshot data envelope (keel-kv snapshot plus
//! the address book) and the core's snapshot metadata stored with a snapshot.
//!
//! All integers are little-endian fixed width; byte strings are a u32 length then the bytes.
//! Every decoder returns an error on bad input, never panics.

use keel_core::NodeId;
use std::collections::BTreeMap;

// The WAL payload of an entry and the snapshot metadata are keel-persist's (shared with the
// simulator, so every simulated seed runs the same encoding).
pub use keel_persist::codec::{
    decode_entry_payload, decode_snapshot_meta, encode_entry_payload, encode_snapshot_meta,
    DecodeError, ENCODING_VERSION,
};
use keel_persist::codec::{Reader, Writer};

/// Envelope tags inside a `Normal` entry.
pub const TAG_KV_COMMAND: u8 = 1;
pub const TAG_ADDRESS_UPDATE: u8 = 2;

/// Most members an address book or membership may name (bounded decode).
pub const MEMBERS_MAX: usize = 1024;
/// Longest address string accepted.
pub const ADDRESS_BYTES_MAX: usize = 256;

/// Where a member can be reached. Replicated through the log so that a learner added at
/// runtime is reachable by every node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    pub peer_addr: String,
    pub client_addr: String,
}

pub type AddressBook = BTreeMap<NodeId, Addresses>;

/// The application payload of a `Normal` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    KvCommand(Vec<u8>),
    AddressUpdate { id: NodeId, addresses: Addresses },
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            Envelope::KvCommand(cmd) => {
                w.u8(TAG_KV_COMMAND);
                w.0.extend_from_slice(cmd);
            }
            Envelope::AddressUpdate { id, addresses } => {
                w.u8(TAG_ADDRESS_UPDATE);
                w.u64(*id);
                w.bytes(addresses.peer_addr.as_bytes());
                w.bytes(addresses.client_addr.as_bytes());
            }
        }
        w.0
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            TAG_KV_COMMAND => Ok(Envelope::KvCommand(r.0.to_vec())),
            TAG_ADDRESS_UPDATE => {
                let id = r.u64()?;
                let peer_addr = r.string(ADDRESS_BYTES_MAX)?;
                let client_addr = r.string(ADDRESS_BYTES_MAX)?;
                r.finish()?;
                Ok(Envelope::AddressUpdate {
                    id,
                    addresses: Addresses {
                        peer_addr,
                        client_addr,
                    },
                })
            }
            _ => Err(DecodeError("unknown envelope tag")),
        }
    }
}

/// The snapshot data: the keel-kv snapshot and the replicated address book.
pub fn encode_snapshot_data(kv: &[u8], book: &AddressBook) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(kv.len() + 64));
    w.u8(ENCODING_VERSION);
    w.bytes(kv);
    w.u64(book.len() as u64);
    for (id, a) in book {
        w.u64(*id);
        w.bytes(a.peer_addr.as_bytes());
        w.bytes(a.client_addr.as_bytes());
    }
    w.0
}

pub fn decode_snapshot_data(bytes: &[u8]) -> Result<(&[u8], AddressBook), DecodeError> {
    let mut r = Reader(bytes);
    r.version()?;
    let kv = r.bytes()?;
    let n = r.u64()?;
    if n > MEMBERS_MAX as u64 {
        return Err(DecodeError("too many address book entries"));
    }
    let mut book = AddressBook::new();
    for _ in 0..n {
        let id = r.u64()?;
        let peer_addr = r.string(ADDRESS_BYTES_MAX)?;
        let client_addr = r.string(ADDRESS_BYTES_MAX)?;
        book.insert(
            id,
            Addresses {
                peer_addr,
                client_addr,
            },
        );
    }
    r.finish()?;
    Ok((kv, book))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_snapshot_round_trip() {
        let e = Envelope::AddressUpdate {
            id: 4,
            addresses: Addresses {
                peer_addr: "a:1".into(),
                client_addr: "b:2".into(),
            },
        };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        assert!(Envelope::decode(&[]).is_err());
        let mut book = AddressBook::new();
        book.insert(
            1,
            Addresses {
                peer_addr: "p".into(),
                client_addr: "c".into(),
            },
        );
        let data = encode_snapshot_data(b"kv", &book);
        let (kv, back) = decode_snapshot_data(&data).unwrap();
        assert_eq!((kv, back), (&b"kv"[..], book));
    }
}
