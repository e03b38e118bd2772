//! Key choice: uniform, or Zipf over ranks by inverse-CDF lookup in a precomputed table
//! (exact for any exponent, one binary search per draw). Randomness comes from the caller's seed.

use crate::config::{KeyDistribution, KEYS_MAX};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// The cumulative Zipf probabilities for ranks `0..keys`, shared by every client.
#[derive(Debug)]
pub struct ZipfTable {
    cdf: Vec<f64>,
}

impl ZipfTable {
    pub fn new(keys: u64, exponent: f64) -> ZipfTable {
        assert!((1..=KEYS_MAX).contains(&keys), "keys out of range: {keys}");
        assert!(exponent.is_finite() && exponent > 0.0);
        let mut cdf = Vec::with_capacity(keys as usize);
        let mut sum = 0.0f64;
        for rank in 0..keys {
            sum += 1.0 / ((rank + 1) as f64).powf(exponent);
            cdf.push(sum);
        }
        for p in cdf.iter_mut() {
            *p /= sum;
        }
        assert!((cdf[cdf.len() - 1] - 1.0).abs() < 1e-9);
        ZipfTable { cdf }
    }

    /// The probability of rank `rank` (for tests and reports).
    pub fn probability(&self, rank: u64) -> f64 {
        let r = rank as usize;
        if r == 0 {
            self.cdf[0]
        } else {
            self.cdf[r] - self.cdf[r - 1]
        }
    }

    /// Maps a uniform draw in [0, 1) to a rank.
    pub fn rank(&self, uniform: f64) -> u64 {
        let i = self.cdf.partition_point(|p| *p <= uniform);
        i.min(self.cdf.len() - 1) as u64
    }
}

/// One client's key and operation-kind source.
pub struct KeyPicker {
    rng: ChaCha8Rng,
    keys: u64,
    zipf: Option<Arc<ZipfTable>>,
}

impl KeyPicker {
    /// `zipf` must be given exactly when the distribution is Zipf (build it once with
    /// [`ZipfTable::new`] and share it).
    pub fn new(
        distribution: KeyDistribution,
        keys: u64,
        zipf: Option<Arc<ZipfTable>>,
        seed: u64,
    ) -> KeyPicker {
        assert!(keys >= 1);
        assert_eq!(
            matches!(distribution, KeyDistribution::Zipf { .. }),
            zipf.is_some(),
            "a Zipf table exactly for the Zipf distribution"
        );
        KeyPicker {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys,
            zipf,
        }
    }

    pub fn next_key_index(&mut self) -> u64 {
        match &self.zipf {
            None => self.rng.gen_range(0..self.keys),
            Some(table) => table.rank(self.rng.gen::<f64>()),
        }
    }

    /// True with probability `percent`/100.
    pub fn chance_percent(&mut self, percent: u8) -> bool {
        self.rng.gen_range(0u8..100) < percent
    }
}
