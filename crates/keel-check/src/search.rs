//! Wing & Gong's search with Lowe's memoization, over one partition.
//!
//! Operations are entries in a doubly linked list of calls and returns in real-time order.
//! The search repeatedly linearizes the first call it can (legal in the model and leading to
//! a (linearized-set, state) pair never seen before), removing its call and return from the
//! list; when it reaches a return whose operation is not linearized, it backtracks. An `info`
//! operation has no return entry, so it never forces anything: it is tried at every point
//! after its invoke, and may stay unlinearized (it never happened). The search succeeds when
//! every return is gone.

use crate::model::SeqModel;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

const NIL: u32 = u32::MAX;
/// How often (in search steps, a power of two) the wall-clock deadline is read.
const DEADLINE_CHECK_STEPS_INTERVAL: u64 = 4096;
/// Memory is published to the shared counter in chunks of this size.
const MEMORY_PUBLISH_BYTES: u64 = 256 * 1024;

/// Limits shared by all partitions of one check.
pub(crate) struct Budget {
    pub deadline: Option<Instant>,
    pub steps_max: Option<u64>,
    pub memory_bytes_max: u64,
    pub memory_bytes_used: AtomicU64,
    pub memory_exceeded: AtomicBool,
}

/// One operation as the search sees it.
pub(crate) struct SearchOp<I> {
    pub input: I,
    /// Position of the invoke in the history.
    pub call_at: usize,
    /// Position of the completion; `None` for info operations (open to the end).
    pub return_at: Option<usize>,
}

pub(crate) enum Outcome {
    /// A full linearization: the order of the linearized operations (indices into the ops).
    Linearizable {
        order: Vec<u32>,
    },
    /// The longest linearizable prefix found and the operation whose return it could not pass.
    NotLinearizable {
        prefix: Vec<u32>,
        blocking: u32,
    },
    Unknown {
        reason: String,
        prefix: Vec<u32>,
    },
}

pub(crate) struct SearchStats {
    pub steps: u64,
    pub cache_entries: u64,
    pub cache_bytes: u64,
}

pub(crate) fn search<M: SeqModel>(
    model: &mut M,
    ops: &[SearchOp<M::Input>],
    budget: &Budget,
) -> (Outcome, SearchStats) {
    let n = ops.len();
    assert!(
        n < (u32::MAX / 2) as usize - 1,
        "too many operations in one partition"
    );
    let head = (2 * n) as u32;
    // Entry 2i is op i's call, 2i+1 its return. Build the list in real-time order.
    let mut order: Vec<(usize, u32)> = Vec::with_capacity(2 * n);
    let mut returns_remaining = 0usize;
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call_at, 2 * i as u32));
        if let Some(at) = op.return_at {
            assert!(at > op.call_at, "a return must follow its call");
            order.push((at, 2 * i as u32 + 1));
            returns_remaining += 1;
        }
    }
    order.sort_unstable();
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut last = head;
    for &(_, entry) in &order {
        next[last as usize] = entry;
        prev[entry as usize] = last;
        last = entry;
    }

    let words = n.div_ceil(64).max(1);
    let zobrist: Vec<u64> = (0..n as u64)
        .map(|i| splitmix64(i ^ 0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut linearized = vec![0u64; words];
    let mut bits_hash = 0u64;
    let mut cache: Cache<M::State> = Cache::new(words);
    let mut state = model.init();
    let mut calls: Vec<(u32, M::State, bool)> = Vec::new();
    let mut best_prefix: Vec<u32> = Vec::new();
    let mut best_blocking = NIL;
    let mut steps = 0u64;
    let mut memory_published = 0u64;
    let mut entry = next[head as usize];
    let mut fresh_level = true;
    let mut forced = false;

    let stats = |steps, cache: &Cache<M::State>| SearchStats {
        steps,
        cache_entries: cache.len() as u64,
        cache_bytes: cache.bytes,
    };

    let steps_max = budget.steps_max.unwrap_or(u64::MAX);
    while returns_remaining > 0 {
        steps += 1;
        if steps > steps_max || steps & (DEADLINE_CHECK_STEPS_INTERVAL - 1) == 0 {
            let reason = if steps > steps_max {
                Some(format!("step budget exhausted ({steps_max} steps)"))
            } else if budget.deadline.is_some_and(|d| Instant::now() >= d) {
                Some("time budget exhausted".to_string())
            } else if budget.memory_exceeded.load(Ordering::Relaxed) {
                Some("memory budget exhausted".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                budget
                    .memory_bytes_used
                    .fetch_sub(memory_published, Ordering::Relaxed);
                return (
                    Outcome::Unknown {
                        reason,
                        prefix: best_prefix,
                    },
                    stats(steps, &cache),
                );
            }
        }
        assert!(entry != NIL, "a remaining return entry bounds every scan");
        if fresh_level {
            // Prefer a legal no-op among the candidates: taking it first makes every
            // alternative at this level redundant (see `noop` below).
            fresh_level = false;
            let mut candidate = next[head as usize];
            while candidate != NIL && candidate & 1 == 0 {
                let input = &ops[(candidate >> 1) as usize].input;
                if model.commutes_to_front(input)
                    && model.step(&state, input).is_some_and(|s| s == state)
                {
                    entry = candidate;
                    forced = true;
                    break;
                }
                candidate = next[candidate as usize];
            }
        }
        let op = entry >> 1;
        if entry & 1 == 0 && !forced && delay_info(model, ops, &next, head, op) {
            // An info write nobody pending needs yet: try it later (see `delay_info`).
            entry = next[entry as usize];
        } else if entry & 1 == 0 {
            // A call: try to linearize it now.
            if let Some(new_state) = model.step(&state, &ops[op as usize].input) {
                let word = (op / 64) as usize;
                let bit = 1u64 << (op % 64);
                linearized[word] |= bit;
                let new_bits_hash = bits_hash ^ zobrist[op as usize];
                let hash = mix(new_bits_hash, hash_state(&new_state));
                let extra = model.state_heap_bytes(&new_state);
                if cache.insert_if_absent(hash, &linearized, &new_state, extra) {
                    let grown = cache.bytes.saturating_sub(memory_published);
                    if grown >= MEMORY_PUBLISH_BYTES {
                        let used =
                            budget.memory_bytes_used.fetch_add(grown, Ordering::Relaxed) + grown;
                        memory_published += grown;
                        if used > budget.memory_bytes_max {
                            budget.memory_exceeded.store(true, Ordering::Relaxed);
                        }
                    }
                    // A legal operation that leaves the state unchanged and commutes to the
                    // front (a read; see SeqModel::commutes_to_front) is taken greedily: any
                    // linearization from here can be rearranged to start with it (it is
                    // invoked, nothing pending must precede it, and removing it from its old
                    // place keeps the rest legal). So if this branch fails, so does this
                    // configuration: backtracking does not try alternatives to it.
                    let noop =
                        new_state == state && model.commutes_to_front(&ops[op as usize].input);
                    let old_state = std::mem::replace(&mut state, new_state);
                    calls.push((op, old_state, noop));
                    bits_hash = new_bits_hash;
                    lift(
                        &mut next,
                        &mut prev,
                        op,
                        ops[op as usize].return_at.is_some(),
                    );
                    if ops[op as usize].return_at.is_some() {
                        returns_remaining -= 1;
                    }
                    entry = next[head as usize];
                    fresh_level = true;
                } else {
                    linearized[word] &= !bit;
                    entry = next[entry as usize];
                    if forced {
                        // The no-op's configuration already failed, so this one fails:
                        // skip to the first return, which backtracks.
                        while entry & 1 == 0 {
                            entry = next[entry as usize];
                        }
                    }
                }
                forced = false;
            } else {
                entry = next[entry as usize];
            }
        } else {
            // A return of an operation not yet linearized: dead end, backtrack.
            if best_blocking == NIL || calls.len() > best_prefix.len() {
                best_prefix.clear();
                best_prefix.extend(calls.iter().map(|(op, _, _)| *op));
                best_blocking = op;
            }
            // Pop until an operation whose alternatives are worth trying (see `noop`).
            loop {
                let Some((top, old_state, noop)) = calls.pop() else {
                    budget
                        .memory_bytes_used
                        .fetch_sub(memory_published, Ordering::Relaxed);
                    let outcome = Outcome::NotLinearizable {
                        prefix: best_prefix,
                        blocking: best_blocking,
                    };
                    return (outcome, stats(steps, &cache));
                };
                state = old_state;
                linearized[(top / 64) as usize] &= !(1u64 << (top % 64));
                bits_hash ^= zobrist[top as usize];
                let has_return = ops[top as usize].return_at.is_some();
                unlift(&mut next, &mut prev, top, has_return);
                if has_return {
                    returns_remaining += 1;
                }
                entry = next[2 * top as usize];
                if !noop {
                    break;
                }
            }
        }
    }
    budget
        .memory_bytes_used
        .fetch_sub(memory_published, Ordering::Relaxed);
    let order = calls.iter().map(|(op, _, _)| *op).collect();
    (Outcome::Linearizable { order }, stats(steps, &cache))
}

/// Lazy info writes. For register models every operation either requires one value (read,
/// cas) or blindly sets one (write, cas). Take any linearization in which an `info`
/// operation W setting v is placed: the next state-relevant operation after W either
/// overwrites v (then W can be dropped: info operations may never happen) or requires v (then
/// it directly follows W, and since W has no return entry, it is a candidate whenever W is).
/// So W needs to be tried only while some other candidate requires v.
fn delay_info<M: SeqModel>(
    model: &M,
    ops: &[SearchOp<M::Input>],
    next: &[u32],
    head: u32,
    op: u32,
) -> bool {
    let this = &ops[op as usize];
    if this.return_at.is_some() {
        return false;
    }
    let Some(produced) = model.produces(&this.input) else {
        return false;
    };
    let mut candidate = next[head as usize];
    while candidate != NIL && candidate & 1 == 0 {
        let other = candidate >> 1;
        if other != op && model.requires(&ops[other as usize].input) == Some(produced) {
            return false;
        }
        candidate = next[candidate as usize];
    }
    true
}

fn remove(next: &mut [u32], prev: &mut [u32], entry: u32) {
    let (p, n) = (prev[entry as usize], next[entry as usize]);
    next[p as usize] = n;
    if n != NIL {
        prev[n as usize] = p;
    }
}

fn restore(next: &mut [u32], prev: &mut [u32], entry: u32) {
    let (p, n) = (prev[entry as usize], next[entry as usize]);
    next[p as usize] = entry;
    if n != NIL {
        prev[n as usize] = entry;
    }
}

fn lift(next: &mut [u32], prev: &mut [u32], op: u32, has_return: bool) {
    remove(next, prev, 2 * op);
    if has_return {
        remove(next, prev, 2 * op + 1);
    }
}

fn unlift(next: &mut [u32], prev: &mut [u32], op: u32, has_return: bool) {
    if has_return {
        restore(next, prev, 2 * op + 1);
    }
    restore(next, prev, 2 * op);
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ b.rotate_left(29))
}

/// A small, fast, deterministic hasher (FxHash's multiply-rotate) for model states.
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

fn hash_state<S: Hash>(state: &S) -> u64 {
    let mut hasher = FxHasher(0);
    state.hash(&mut hasher);
    hasher.finish()
}

/// Lowe's cache of visited (linearized set, state) configurations: open addressing over an
/// arena of bitsets; exact comparison on hash match, so collisions never prune wrongly.
struct Cache<S> {
    words: usize,
    bits: Vec<u64>,
    states: Vec<S>,
    hashes: Vec<u64>,
    /// 0 = empty; otherwise entry index + 1.
    slots: Vec<u32>,
    /// Approximate bytes held (arena, states, table).
    bytes: u64,
}

impl<S: Clone + Eq> Cache<S> {
    fn new(words: usize) -> Cache<S> {
        let slots = vec![0u32; 1024];
        let bytes = (slots.len() * 4) as u64;
        Cache {
            words,
            bits: Vec::new(),
            states: Vec::new(),
            hashes: Vec::new(),
            slots,
            bytes,
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Inserts unless present; true when inserted.
    fn insert_if_absent(
        &mut self,
        hash: u64,
        bits: &[u64],
        state: &S,
        state_heap_bytes: usize,
    ) -> bool {
        debug_assert_eq!(bits.len(), self.words);
        let mask = self.slots.len() - 1;
        let mut slot = (hash as usize) & mask;
        loop {
            let at = self.slots[slot];
            if at == 0 {
                break;
            }
            let index = (at - 1) as usize;
            if self.hashes[index] == hash
                && self.states[index] == *state
                && self.bits[index * self.words..(index + 1) * self.words] == *bits
            {
                return false;
            }
            slot = (slot + 1) & mask;
        }
        let index = self.hashes.len();
        assert!(index < u32::MAX as usize - 1, "memo cache index overflow");
        self.slots[slot] = index as u32 + 1;
        self.hashes.push(hash);
        self.states.push(state.clone());
        self.bits.extend_from_slice(bits);
        self.bytes += (self.words * 8 + 8 + std::mem::size_of::<S>() + state_heap_bytes) as u64;
        if self.hashes.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        self.bytes += (self.slots.len() * 4) as u64;
        let mut slots = vec![0u32; size];
        let mask = size - 1;
        for (index, &hash) in self.hashes.iter().enumerate() {
            let mut slot = (hash as usize) & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = index as u32 + 1;
        }
        self.slots = slots;
    }
}
