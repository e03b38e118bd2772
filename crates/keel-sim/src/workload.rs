//! Client operations, their encoding into log entries, the per-node toy state machine, and the
//! client-visible history.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Put {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        expected: String,
        new: String,
    },
    Get {
        key: String,
    },
}

impl OpKind {
    pub fn key(&self) -> &str {
        match self {
            OpKind::Put { key, .. } | OpKind::Cas { key, .. } | OpKind::Get { key } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Open,
    /// Write applied (for CAS: whether it swapped); read returned this value (None = absent).
    Ok {
        value: Option<String>,
        swapped: bool,
    },
    Fail,
    Info,
}

#[derive(Clone, Debug)]
pub struct Op {
    pub id: u64,
    pub client: usize,
    pub kind: OpKind,
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Outcome,
    /// Reads: a lease read (excluded from checks when the clock assumption was violated).
    pub lease: bool,
    /// Reads: the highest log index of a write to this key acknowledged before the invoke.
    pub required_index: u64,
    /// Writes: the entry index once accepted.
    pub index: u64,
}

/// Command encoding in entries: `P\0key\0value\0opid`, `C\0key\0expected\0new\0opid`.
pub fn encode(op_id: u64, kind: &OpKind) -> Vec<u8> {
    match kind {
        OpKind::Put { key, value } => format!("P\0{key}\0{value}\0{op_id}").into_bytes(),
        OpKind::Cas { key, expected, new } => {
            format!("C\0{key}\0{expected}\0{new}\0{op_id}").into_bytes()
        }
        OpKind::Get { .. } => unreachable!("reads are not logged"),
    }
}

/// The key an entry payload writes (for the limbo check of inherited lease reads).
pub fn written_key(data: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(data).ok()?;
    s.split('\0').nth(1)
}

/// The toy replicated state machine: a string map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    pub kv: BTreeMap<String, String>,
    pub applied: u64,
    pub applied_since_snapshot: u64,
}

impl App {
    /// Applies one command; returns (op id, swapped) for completion.
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Option<(u64, bool)> {
        assert!(index > self.applied, "apply in order");
        self.applied = index;
        self.applied_since_snapshot += 1;
        let s = std::str::from_utf8(data).ok()?;
        let parts: Vec<&str> = s.split('\0').collect();
        match parts.as_slice() {
            ["P", key, value, id] => {
                self.kv.insert(key.to_string(), value.to_string());
                Some((id.parse().ok()?, true))
            }
            ["C", key, expected, new, id] => {
                let swapped = self.kv.get(*key).map(|v| v.as_str()) == Some(*expected);
                if swapped {
                    self.kv.insert(key.to_string(), new.to_string());
                }
                Some((id.parse().ok()?, swapped))
            }
            _ => None,
        }
    }

    pub fn noop(&mut self, index: u64) {
        assert!(index > self.applied, "apply in order");
        self.applied = index;
        self.applied_since_snapshot += 1;
    }

    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\n", self.applied);
        for (k, v) in &self.kv {
            out.push_str(&format!("{k}\0{v}\n"));
        }
        out.into_bytes()
    }

    /// The application a node boots with: its recovered snapshot's state (empty for the
    /// bootstrap snapshot at index 0, or none).
    pub fn recovered(snapshot: Option<&keel_core::Snapshot>) -> App {
        match snapshot {
            Some(s) if s.meta.index > 0 => App::restore(&s.data),
            _ => App::default(),
        }
    }

    pub fn restore(bytes: &[u8]) -> App {
        let s = std::str::from_utf8(bytes).expect("snapshot is utf-8");
        let mut lines = s.lines();
        let applied = lines
            .next()
            .and_then(|l| l.parse().ok())
            .expect("snapshot header");
        let kv = lines
            .filter_map(|l| l.split_once('\0'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        App {
            kv,
            applied,
            applied_since_snapshot: 0,
        }
    }
}
