//! The key space: a sorted map of keys to records, and the cluster-wide revision.
//!
//! Only the latest version of each key is kept (no MVCC history): reads are "at latest".
//! Invariant: for every record, `1 <= create_revision <= mod_revision <= revision` and
//! `version >= 1`.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::response::{DeleteResponse, PutResponse, RangeResponse};
use crate::types::{CompareTarget, KeyRange, KeyValue};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: u64,
    pub(crate) mod_revision: u64,
    pub(crate) version: u64,
}

impl Record {
    fn to_key_value(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Store {
    pub(crate) records: BTreeMap<Vec<u8>, Record>,
    /// Grows by exactly one for each command that modifies at least one key.
    pub(crate) revision: u64,
}

/// A write in progress: every modification it makes carries `revision`, which the store adopts
/// at `finish` only if something changed (a txn with several writes is one revision, etcd-like).
pub(crate) struct WriteBatch {
    pub(crate) revision: u64,
    pub(crate) changed: bool,
}

impl Store {
    pub(crate) fn begin(&self) -> WriteBatch {
        let revision = self.revision.checked_add(1).expect("revision overflow");
        WriteBatch {
            revision,
            changed: false,
        }
    }

    pub(crate) fn finish(&mut self, batch: WriteBatch) {
        assert!(
            batch.revision == self.revision + 1,
            "one write batch at a time"
        );
        if batch.changed {
            self.revision = batch.revision;
        }
        assert!(self.revision >= batch.revision - 1, "revision is monotonic");
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<KeyValue> {
        self.records.get(key).map(|record| record.to_key_value(key))
    }

    fn iter(&self, range: &KeyRange) -> std::collections::btree_map::Range<'_, Vec<u8>, Record> {
        let (start, end) = range.to_interval();
        // BTreeMap::range panics on start > end; an empty interval yields nothing instead
        // ([start, start) is a valid empty range).
        let upper = match &end {
            Some(end) if end.as_slice() > start.as_slice() => Bound::Excluded(end.as_slice()),
            Some(_) => Bound::Excluded(start.as_slice()),
            None => Bound::Unbounded,
        };
        self.records
            .range::<[u8], _>((Bound::Included(start.as_slice()), upper))
    }

    /// Keys in `range`, at most `limit` (already validated, >= 1) and about
    /// `response_bytes_max` bytes (at least one key-value if any is in range).
    pub(crate) fn range(
        &self,
        range: &KeyRange,
        limit: u64,
        response_bytes_max: usize,
    ) -> RangeResponse {
        assert!(limit >= 1);
        let mut kvs = Vec::new();
        let mut count: u64 = 0;
        let mut response_bytes: usize = 0;
        let mut full = false;
        for (key, record) in self.iter(range) {
            count += 1;
            if full || kvs.len() as u64 >= limit {
                full = true;
                continue;
            }
            let size_bytes = key.len() + record.value.len();
            if !kvs.is_empty() && response_bytes + size_bytes > response_bytes_max {
                full = true;
                continue;
            }
            response_bytes += size_bytes;
            kvs.push(record.to_key_value(key));
        }
        assert!(kvs.len() as u64 <= count);
        RangeResponse {
            more: (kvs.len() as u64) < count,
            kvs,
            count,
        }
    }

    pub(crate) fn put(
        &mut self,
        batch: &mut WriteBatch,
        key: &[u8],
        value: &[u8],
        want_prev: bool,
    ) -> PutResponse {
        let revision = batch.revision;
        let prev_kv = match self.records.get_mut(key) {
            Some(record) => {
                assert!(record.mod_revision <= revision);
                let prev = want_prev.then(|| record.to_key_value(key));
                record.value = value.to_vec();
                record.mod_revision = revision;
                record.version = record.version.checked_add(1).expect("version overflow");
                assert!(record.create_revision <= record.mod_revision);
                prev
            }
            None => {
                let record = Record {
                    value: value.to_vec(),
                    create_revision: revision,
                    mod_revision: revision,
                    version: 1,
                };
                self.records.insert(key.to_vec(), record);
                None
            }
        };
        batch.changed = true;
        PutResponse { prev_kv }
    }

    pub(crate) fn delete(
        &mut self,
        batch: &mut WriteBatch,
        range: &KeyRange,
        want_prev: bool,
    ) -> DeleteResponse {
        let keys: Vec<Vec<u8>> = self.iter(range).map(|(key, _)| key.clone()).collect();
        let mut prev_kvs = Vec::new();
        for key in &keys {
            let record = self.records.remove(key).expect("key listed by iter");
            if want_prev {
                prev_kvs.push(record.to_key_value(key));
            }
        }
        if !keys.is_empty() {
            batch.changed = true;
        }
        assert!(!want_prev || prev_kvs.len() == keys.len());
        DeleteResponse {
            deleted: keys.len() as u64,
            prev_kvs,
        }
    }

    /// `current <op> target` for the key's field; etcd rules for absent keys: a value compare
    /// is false, revisions and version are 0.
    pub(crate) fn compare(
        &self,
        key: &[u8],
        op: crate::types::CompareOp,
        target: &CompareTarget,
    ) -> bool {
        let record = self.records.get(key);
        match target {
            CompareTarget::Value(expected) => match record {
                None => false,
                Some(record) => op.holds(record.value.as_slice(), expected.as_slice()),
            },
            CompareTarget::ModRevision(n) => op.holds(&record.map_or(0, |r| r.mod_revision), n),
            CompareTarget::Version(n) => op.holds(&record.map_or(0, |r| r.version), n),
            CompareTarget::CreateRevision(n) => {
                op.holds(&record.map_or(0, |r| r.create_revision), n)
            }
        }
    }

    /// Checks the record invariants over the whole store (used by restore and tests).
    pub(crate) fn check_invariants(&self) -> Result<(), &'static str> {
        for record in self.records.values() {
            if record.create_revision == 0 {
                return Err("create_revision is 0");
            }
            if record.create_revision > record.mod_revision {
                return Err("create_revision above mod_revision");
            }
            if record.mod_revision > self.revision {
                return Err("mod_revision above store revision");
            }
            if record.version == 0 {
                return Err("version is 0");
            }
        }
        Ok(())
    }
}
