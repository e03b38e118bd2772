//! Latency recording in an HDR histogram (microseconds, 3 significant digits, 1 µs to 10 min).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Longest latency kept exactly; longer ones are recorded as this (and counted as clamped).
pub const LATENCY_US_MAX: u64 = 600_000_000;

pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    clamped_count: u64,
}

/// Percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Latencies longer than the histogram's range, recorded as its maximum.
    pub clamped_count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
            .expect("static histogram bounds are valid");
        LatencyHistogram {
            histogram,
            clamped_count: 0,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.record_us(us);
    }

    pub fn record_us(&mut self, us: u64) {
        let clamped = us.clamp(1, LATENCY_US_MAX);
        if clamped != us.max(1) {
            self.clamped_count += 1;
        }
        self.histogram
            .record(clamped)
            .expect("value within the histogram's bounds");
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds merge");
        self.clamped_count += other.clamped_count;
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at `quantile` (0..=1) in microseconds (HDR: the highest value equivalent to it).
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        assert!((0.0..=1.0).contains(&quantile));
        self.histogram.value_at_quantile(quantile)
    }

    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: self.histogram.len(),
            mean_ms: self.histogram.mean() / 1000.0,
            p50_ms: ms(self.quantile_us(0.50)),
            p90_ms: ms(self.quantile_us(0.90)),
            p99_ms: ms(self.quantile_us(0.99)),
            p999_ms: ms(self.quantile_us(0.999)),
            max_ms: ms(self.histogram.max()),
            clamped_count: self.clamped_count,
        }
    }
}
