//! Jittered exponential backoff for reaching a device (or a port) that does
//! not answer. Pure apart from the random draw in [`Backoff::next_delay`].
//!
//! The n-th delay (n = 0, 1, …) is `min(initial * 2^n, max)`, shortened by a
//! random share of at most `jitter` (0 = none, 1 = anywhere down to zero), so
//! it always lies in `[base * (1 - jitter), base]` and never exceeds `max`.
//! The jitter keeps gateways that lost the same network from retrying in step.
//!
//! [`Backoff::full_jitter`] is the case `jitter = 1`: each delay is drawn
//! uniformly from `[0, min(cap, initial * 2^n)]` ("full jitter"), which
//! spreads many clients that lost the same broker evenly over the whole
//! interval instead of bunching them near its end, while the cap keeps a
//! single client's wait after the broker returns short.

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

    /// Full jitter: the n-th delay is uniform in `[0, min(cap, initial * 2^n)]`.
    /// `initial` is lowered to `cap` if it is larger, so no delay exceeds `cap`.
    pub fn full_jitter(initial: Duration, cap: Duration) -> Self {
        Self::new(initial.min(cap), cap, 1.0)
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

    #[test]
    fn full_jitter_draws_anywhere_from_zero_to_the_capped_doubling() {
        let backoff = Backoff::full_jitter(Duration::from_millis(200), Duration::from_secs(10));
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(200));
        assert_eq!(backoff.delay(3, 0.0), Duration::from_millis(1600));
        assert_eq!(backoff.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(backoff.delay(6, 0.0), Duration::from_secs(10), "capped");
        assert_eq!(backoff.delay(40, 0.0), Duration::from_secs(10), "capped");
        assert!(backoff.delay(6, 0.999_999) < Duration::from_millis(1));
    }

    #[test]
    fn full_jitter_never_waits_longer_than_a_cap_below_the_initial_delay() {
        let backoff = Backoff::full_jitter(Duration::from_millis(200), Duration::from_millis(50));
        for attempt in 0..40 {
            assert!(backoff.delay(attempt, 0.0) <= Duration::from_millis(50));
        }
    }

    #[test]
    fn full_jitter_delays_at_the_cap_spread_over_the_whole_interval() {
        let cap = Duration::from_secs(10);
        let mut backoff = Backoff::full_jitter(Duration::from_millis(200), cap);
        for _ in 0..8 {
            backoff.next_delay();
        }
        let delays: Vec<Duration> = (0..2000).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= cap));
        // Each tenth of [0, cap] holds about 200 of 2000 uniform draws; fewer
        // than 100 in any has a probability far below 1e-12.
        for tenth in 0..10_u32 {
            let (low, high) = (cap * tenth / 10, cap * (tenth + 1) / 10);
            let n = delays.iter().filter(|d| **d > low && **d <= high).count();
            assert!(n >= 100, "{n} of 2000 delays in ({low:?}, {high:?}]");
        }
    }

    proptest! {
        #[test]
        fn every_full_jitter_delay_lies_within_zero_and_the_capped_doubling(
            initial_ms in 0_u64..10_000,
            cap_ms in 0_u64..100_000,
            attempt in any::<u32>(),
            unit in any::<f64>(),
        ) {
            let cap = Duration::from_millis(cap_ms);
            let initial = Duration::from_millis(initial_ms);
            let backoff = Backoff::full_jitter(initial, cap);
            let delay = backoff.delay(attempt, unit);
            let doubling = initial
                .saturating_mul(2_u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX));
            prop_assert!(delay <= cap);
            prop_assert!(delay <= doubling.min(cap));
        }

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
