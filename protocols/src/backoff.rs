//! Jittered exponential backoff for reaching a device (or a port) that does
//! not answer. Pure apart from the random draw in [`Backoff::next_delay`].
//!
//! The n-th delay (n = 0, 1, …) is `min(initial * 2^n, max)`, shortened by a
//! random share of at most `jitter` (0 = none, 1 = anywhere down to zero), so
//! it always lies in `[base * (1 - jitter), base]` and never exceeds `max`.
//! The jitter keeps gateways that lost the same network from retrying in step.

use std::time::Duration;

/// Delays between attempts to reach something that does not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    attempt: u32,
}

impl Backoff {
    /// `jitter` is clamped to `0.0..=1.0` (NaN counts as 0); `max` is raised
    /// to `initial` if it is smaller.
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        Self {
            initial,
            max: max.max(initial),
            jitter,
            attempt: 0,
        }
    }

    /// The delay before attempt number `attempt + 1`, for a uniform draw
    /// `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let factor = 2_u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        base.mul_f64(1.0 - self.jitter * unit)
    }

    /// The next delay (with a random jitter); counts an attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt, rand::random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Failed attempts counted since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    /// 1 s doubling to 60 s, with 20 % jitter.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60), 0.2)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.0);
        let delays: Vec<_> = (0..6).map(|n| backoff.delay(n, 0.5).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1), 0.0);
        backoff.next_delay();
        backoff.next_delay();
        assert_eq!(backoff.attempts(), 2);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }

    proptest! {
        #[test]
        fn every_delay_lies_within_its_jitter_band_and_under_the_cap(
            initial_ms in 0_u64..10_000,
            max_ms in 0_u64..100_000,
            jitter in any::<f64>(),
            attempt in any::<u32>(),
            unit in any::<f64>(),
        ) {
            let backoff = Backoff::new(
                Duration::from_millis(initial_ms),
                Duration::from_millis(max_ms),
                jitter,
            );
            let delay = backoff.delay(attempt, unit);
            let cap = Duration::from_millis(initial_ms.max(max_ms));
            prop_assert!(delay <= cap);
            let base = backoff.delay(attempt, 0.0);
            prop_assert!(delay <= base);
            prop_assert!(delay + Duration::from_nanos(1) >= base.mul_f64(1.0 - backoff.jitter));
        }
    }
}
