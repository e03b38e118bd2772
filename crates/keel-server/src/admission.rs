//! Admission control: refuse load at the boundary, before it is queued, so overload turns into
//! explicit OVERLOADED answers and never into inconsistency or unbounded memory.
//!
//! Three mechanisms, each with its own `reason` label on `keel_admission_rejected_total`:
//! - Fair shares (`client_share`, `key_share`): every client (its `x-keel-client-id` header,
//!   else its IP address) and every key hash into a fixed number of buckets; each bucket may
//!   hold at most `client_inflight_max` / `key_inflight_max` requests in flight. One hot client
//!   or hot key fills its own bucket and is refused there while the others proceed.
//! - Queueing delay (`queue_delay`, CoDel-like, Nichols & Jacobson 2012): the node loop measures
//!   each request's time in its queue. Once the delay has stayed above `target_ms` for a whole
//!   `interval_ms`, requests that waited longer than the target are refused until a request
//!   gets through within the target again. Refusing early, while memory is still fine, keeps
//!   admitted requests' latency bounded.
//! - Hard bounds (`queue_full`, `inflight_limit`, `apply_lag`, `uncommitted_limit`): the
//!   bounded queues and the loop's own limits, the last line of defence.
//!
//! Priorities are structural, not a scheduler: Raft votes, heartbeats and the lease-renewing
//! no-ops travel on the peer priority lane, which the node loop polls before any client queue;
//! reads have their own queue, polled before writes, so lease reads stay cheap under a write
//! overload.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Buckets for client identities. A fixed count bounds memory whatever the number of clients.
pub const CLIENT_BUCKETS: usize = 64;
/// Buckets for keys (writes only).
pub const KEY_BUCKETS: usize = 256;

/// FNV-1a: a fixed, seedless hash, so bucket assignment is the same on every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub struct Admission {
    client_inflight: Vec<AtomicU32>,
    key_inflight: Vec<AtomicU32>,
    client_inflight_max: u32,
    key_inflight_max: u32,
    started: Instant,
    /// Monotonic ms (since `started`) of the latest refusal, plus one (0: never).
    last_reject_ms: AtomicU64,
}

/// Which share a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    Client,
    Key,
}

/// A held in-flight slot; released on drop (whatever path the request takes).
pub struct Slot {
    admission: Arc<Admission>,
    share: Share,
    bucket: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = match self.share {
            Share::Client => &self.admission.client_inflight[self.bucket],
            Share::Key => &self.admission.key_inflight[self.bucket],
        };
        let before = counter.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "admission slot released twice");
    }
}

impl Admission {
    pub fn new(client_inflight_max: u32, key_inflight_max: u32) -> Admission {
        assert!(client_inflight_max > 0 && key_inflight_max > 0);
        Admission {
            client_inflight: (0..CLIENT_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            key_inflight: (0..KEY_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            client_inflight_max,
            key_inflight_max,
            started: Instant::now(),
            last_reject_ms: AtomicU64::new(0),
        }
    }

    /// Takes an in-flight slot for `identity` in the given share, or None when its bucket is
    /// full (the caller refuses with OVERLOADED and counts the reason).
    pub fn acquire(self: &Arc<Self>, share: Share, identity: &[u8]) -> Option<Slot> {
        let (counters, max) = match share {
            Share::Client => (&self.client_inflight, self.client_inflight_max),
            Share::Key => (&self.key_inflight, self.key_inflight_max),
        };
        let bucket = (fnv1a(identity) % counters.len() as u64) as usize;
        let counter = &counters[bucket];
        let mut current = counter.load(Ordering::Acquire);
        loop {
            if current >= max {
                return None;
            }
            match counter.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        Some(Slot {
            admission: self.clone(),
            share,
            bucket,
        })
    }

    /// In-flight requests held in `share`, summed over buckets (for tests and status).
    pub fn inflight(&self, share: Share) -> u64 {
        let counters = match share {
            Share::Client => &self.client_inflight,
            Share::Key => &self.key_inflight,
        };
        counters
            .iter()
            .map(|c| u64::from(c.load(Ordering::Acquire)))
            .sum()
    }

    /// Records a refusal (any reason) for the `overloaded` mode.
    pub fn note_reject(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_reject_ms.store(ms + 1, Ordering::Release);
    }

    /// True when something was refused within the last `window_ms`.
    pub fn rejected_within(&self, window_ms: u64) -> bool {
        let last = self.last_reject_ms.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let now = self.started.elapsed().as_millis() as u64 + 1;
        now.saturating_sub(last) <= window_ms
    }
}

/// CoDel's control law reduced to what a request queue needs: refuse requests that waited
/// longer than `target_ms` once the queueing delay has stayed above the target for a whole
/// `interval_ms` (a standing queue, not a burst); stop as soon as one request gets through
/// within the target.
#[derive(Clone, Debug)]
pub struct CoDel {
    pub target_ms: u64,
    pub interval_ms: u64,
    /// When the delay first went above target in the current episode (+interval).
    first_above_deadline_ms: Option<u64>,
    dropping: bool,
}

impl CoDel {
    pub fn new(target_ms: u64, interval_ms: u64) -> CoDel {
        assert!(target_ms > 0, "CoDel target must be positive");
        assert!(interval_ms >= target_ms, "CoDel interval below its target");
        CoDel {
            target_ms,
            interval_ms,
            first_above_deadline_ms: None,
            dropping: false,
        }
    }

    /// Called for every dequeued request with the current monotonic time and how long the
    /// request waited. Returns true when the request must be refused.
    pub fn on_dequeue(&mut self, now_ms: u64, sojourn_ms: u64) -> bool {
        if sojourn_ms < self.target_ms {
            self.first_above_deadline_ms = None;
            self.dropping = false;
            return false;
        }
        match self.first_above_deadline_ms {
            None => {
                self.first_above_deadline_ms = Some(now_ms + self.interval_ms);
                false
            }
            Some(deadline) => {
                if now_ms >= deadline {
                    self.dropping = true;
                }
                self.dropping
            }
        }
    }

    pub fn dropping(&self) -> bool {
        self.dropping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_refuses_only_its_own_identity() {
        let a = Arc::new(Admission::new(2, 1));
        let s1 = a.acquire(Share::Client, b"hot").expect("first");
        let s2 = a.acquire(Share::Client, b"hot").expect("second");
        assert!(a.acquire(Share::Client, b"hot").is_none(), "third refused");
        // Another client in another bucket still gets in.
        let other = (0..1000u32)
            .map(|i| format!("c{i}"))
            .find(|c| fnv1a(c.as_bytes()) % 64 != fnv1a(b"hot") % 64)
            .expect("some identity lands elsewhere");
        let s3 = a.acquire(Share::Client, other.as_bytes()).expect("other");
        assert_eq!(a.inflight(Share::Client), 3);
        drop(s1);
        assert!(a.acquire(Share::Client, b"hot").is_some(), "slot released");
        drop((s2, s3));
        assert_eq!(a.inflight(Share::Client), 0);
        let k = a.acquire(Share::Key, b"k").expect("key slot");
        assert!(a.acquire(Share::Key, b"k").is_none());
        drop(k);
        assert_eq!(a.inflight(Share::Key), 0);
    }

    #[test]
    fn codel_tolerates_bursts_and_drops_standing_queues() {
        let mut c = CoDel::new(5, 100);
        // A burst: delay above target for less than an interval, then below.
        assert!(!c.on_dequeue(0, 50));
        assert!(!c.on_dequeue(50, 50));
        assert!(!c.on_dequeue(60, 1));
        assert!(!c.dropping());
        // A standing queue: above target for a whole interval.
        assert!(!c.on_dequeue(100, 20));
        assert!(!c.on_dequeue(150, 20));
        assert!(c.on_dequeue(200, 20), "refuse after a whole interval above");
        assert!(c.on_dequeue(210, 30));
        // One request within target ends the episode.
        assert!(!c.on_dequeue(220, 2));
        assert!(!c.dropping());
        assert!(
            !c.on_dequeue(230, 20),
            "a new episode waits an interval again"
        );
    }

    #[test]
    fn rejection_window() {
        let a = Admission::new(1, 1);
        assert!(!a.rejected_within(1000));
        a.note_reject();
        assert!(a.rejected_within(1000));
    }
}
