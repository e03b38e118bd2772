//! Exponential backoff with jitter from a seedable generator (deterministic in tests).
//!
//! Attempt n (n >= 1 retries so far) waits a uniform random delay in
//! `[d/2, d]` where `d = min(backoff_base_ms * 2^(n-1), backoff_max_ms)` ("equal jitter": never
//! zero, so synchronized clients still spread out, and never above the cap).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct Backoff {
    rng: ChaCha8Rng,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
}

impl Backoff {
    pub fn new(seed: u64, backoff_base_ms: u64, backoff_max_ms: u64) -> Self {
        assert!(backoff_base_ms <= backoff_max_ms);
        Backoff {
            rng: ChaCha8Rng::seed_from_u64(seed),
            backoff_base_ms,
            backoff_max_ms,
        }
    }

    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay_ms(&mut self, retry: u32) -> u64 {
        assert!(retry >= 1);
        let exponent = (retry - 1).min(32);
        let ceiling_ms = self
            .backoff_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.backoff_max_ms);
        let floor_ms = ceiling_ms / 2;
        let delay_ms = if floor_ms == ceiling_ms {
            ceiling_ms
        } else {
            self.rng.gen_range(floor_ms..=ceiling_ms)
        };
        assert!(delay_ms <= self.backoff_max_ms);
        delay_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_delays_and_bounds_hold() {
        let mut a = Backoff::new(7, 10, 500);
        let mut b = Backoff::new(7, 10, 500);
        let delays_a: Vec<u64> = (1..=12).map(|n| a.delay_ms(n)).collect();
        let delays_b: Vec<u64> = (1..=12).map(|n| b.delay_ms(n)).collect();
        assert_eq!(delays_a, delays_b);
        for (index, delay_ms) in delays_a.iter().enumerate() {
            let ceiling_ms = (10u64 << index).min(500);
            assert!(*delay_ms >= ceiling_ms / 2 && *delay_ms <= ceiling_ms);
        }
        let mut c = Backoff::new(8, 10, 500);
        let delays_c: Vec<u64> = (1..=12).map(|n| c.delay_ms(n)).collect();
        assert_ne!(delays_a, delays_c, "different seeds should differ");
    }
}
