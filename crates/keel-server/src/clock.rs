//! The node's clocks: monotonic milliseconds from `Instant`, wall milliseconds from
//! `SystemTime`, and whether the wall clock is trusted. Each reading compares the wall step with
//! the monotonic step since the previous reading; a difference beyond the threshold (a jump, a
//! step by NTP, a VM pause seen differently by the two clocks) marks the wall clock untrusted
//! for a cooling-off period: no lease reads, a new leader waits on its monotonic clock.

use keel_core::Time;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The monotonic clock starts here so that 0 never means "now".
const MONO_BASE_MS: u64 = 1_000_000;

pub struct Clock {
    start: Instant,
    last_mono_ms: u64,
    last_wall_ms: u64,
    untrusted_until_mono_ms: u64,
    jump_threshold_ms: u64,
    cooloff_ms: u64,
    /// Discontinuities seen so far.
    pub discontinuities: u64,
}

fn wall_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Clock {
    pub fn new(jump_threshold_ms: u64, cooloff_ms: u64) -> Clock {
        Clock {
            start: Instant::now(),
            last_mono_ms: MONO_BASE_MS,
            last_wall_ms: wall_now_ms(),
            untrusted_until_mono_ms: 0,
            jump_threshold_ms,
            cooloff_ms,
            discontinuities: 0,
        }
    }

    /// Reads both clocks. Returns the time and whether a new discontinuity was seen.
    pub fn now(&mut self) -> (Time, bool) {
        let mono_ms =
            (MONO_BASE_MS + self.start.elapsed().as_millis() as u64).max(self.last_mono_ms);
        let wall_ms = wall_now_ms();
        let mono_step = mono_ms - self.last_mono_ms;
        let wall_step = wall_ms as i128 - self.last_wall_ms as i128;
        let jumped =
            (wall_step - mono_step as i128).unsigned_abs() > self.jump_threshold_ms as u128;
        if jumped {
            self.discontinuities += 1;
            self.untrusted_until_mono_ms = mono_ms + self.cooloff_ms;
        }
        self.last_mono_ms = mono_ms;
        self.last_wall_ms = wall_ms;
        assert!(mono_ms >= MONO_BASE_MS);
        (
            Time {
                mono_ms,
                wall_ms,
                wall_trusted: mono_ms >= self.untrusted_until_mono_ms,
            },
            jumped,
        )
    }
}
