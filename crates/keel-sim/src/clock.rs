//! Per-node clocks: a wall clock with offset and drift, a monotonic clock with drift, and the
//! driver's discontinuity detector (the same rule the server uses).

use keel_core::Time;

#[derive(Clone, Debug)]
pub struct NodeClock {
    /// Wall offset from true time, microseconds (may change by jumps).
    pub wall_offset_us: i64,
    /// Drift of both clocks, parts per million (signed).
    pub drift_ppm: i64,
    /// Monotonic clock value at true time 0, microseconds.
    pub mono_base_us: u64,
    last_mono_ms: u64,
    last_wall_ms: u64,
    untrusted_until_mono_ms: u64,
    jump_threshold_ms: u64,
    cooloff_ms: u64,
    pub discontinuities: u64,
}

impl NodeClock {
    pub fn new(
        wall_offset_us: i64,
        drift_ppm: i64,
        mono_base_us: u64,
        jump_threshold_ms: u64,
        cooloff_ms: u64,
    ) -> Self {
        NodeClock {
            wall_offset_us,
            drift_ppm,
            mono_base_us,
            last_mono_ms: 0,
            last_wall_ms: 0,
            untrusted_until_mono_ms: 0,
            jump_threshold_ms,
            cooloff_ms,
            discontinuities: 0,
        }
    }

    fn drifted(&self, true_us: u64) -> u64 {
        let d = (true_us as i128 * self.drift_ppm as i128 / 1_000_000) as i64;
        (true_us as i64 + d).max(0) as u64
    }

    /// Reads both clocks at true time `true_us`, running the discontinuity check.
    pub fn read(&mut self, true_us: u64) -> Time {
        let mono_ms = (self.mono_base_us + self.drifted(true_us)) / 1000;
        let wall_us =
            (self.drifted(true_us) as i64 + self.wall_offset_us + 1_000_000_000_000).max(0) as u64;
        let wall_ms = wall_us / 1000;
        let mono_ms = mono_ms.max(self.last_mono_ms);
        if self.last_mono_ms > 0 {
            let dm = mono_ms - self.last_mono_ms;
            let dw = wall_ms as i64 - self.last_wall_ms as i64;
            if (dw - dm as i64).unsigned_abs() > self.jump_threshold_ms {
                self.untrusted_until_mono_ms = mono_ms + self.cooloff_ms;
                self.discontinuities += 1;
            }
        }
        self.last_mono_ms = mono_ms;
        self.last_wall_ms = wall_ms;
        Time {
            mono_ms,
            wall_ms,
            wall_trusted: mono_ms >= self.untrusted_until_mono_ms,
        }
    }
}
