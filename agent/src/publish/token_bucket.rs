//! The backlog's pace: a token bucket that caps how many backlog records
//! the publisher hands to the MQTT client per second (`[buffer]
//! replay_rate`), so a park broker restarted under hundreds of gateways is
//! not flooded by all their backlogs at once.
//!
//! Pure: it takes instants and counts and returns decisions; the publisher
//! owns the timer that wakes it when the next token is due.
//!
//! Invariants:
//! - tokens accrue at `rate` per second up to `burst`; a full bucket hands
//!   out at most `burst` at once, and over any span `t` at most
//!   `burst + rate * t` are taken;
//! - the arithmetic is exact (nanosecond credit in integers): no drift over
//!   a long replay;
//! - a take larger than the tokens at hand (a repeated ThingsBoard batch,
//!   which must carry the records it carried before) empties the bucket
//!   and leaves it owing the rest: no token is available until the debt is
//!   paid, so the rate holds over time;
//! - only the backlog lane is paced ([`Pace`]): the live lane is never
//!   counted against the bucket nor held back by it.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::Instant;

use super::state::Lane;

/// Credit of one token: tokens are kept in units of `1 / (NANOS * rate)`
/// seconds' accrual, so a nanosecond of elapsed time adds exactly `rate`.
const NANOS: u128 = 1_000_000_000;

/// Tokens at `rate` per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: u128,
    /// Capacity, in credit units.
    capacity: u128,
    /// Credit held at `at` (one token = [`NANOS`] units).
    credit: u128,
    /// Credit owed (taken beyond what was held), paid before any accrues.
    debt: u128,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: NonZeroU32, burst: NonZeroU32, now: Instant) -> Self {
        let capacity = u128::from(burst.get()) * NANOS;
        TokenBucket {
            rate: u128::from(rate.get()),
            capacity,
            credit: capacity,
            debt: 0,
            at: now,
        }
    }

    /// Brings the credit up to `now` (an instant before the last one counts as no time).
    fn refill(&mut self, now: Instant) {
        if now <= self.at {
            return;
        }
        let elapsed = now.duration_since(self.at).as_nanos();
        let accrued = elapsed.saturating_mul(self.rate);
        let paid = accrued.min(self.debt);
        self.debt -= paid;
        self.credit = self
            .credit
            .saturating_add(accrued - paid)
            .min(self.capacity);
        self.at = now;
    }

    /// Whole tokens available at `now`.
    pub(crate) fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        usize::try_from(self.credit / NANOS).unwrap_or(usize::MAX)
    }

    /// Takes `n` tokens at `now`; if fewer are available, takes them all
    /// and owes the rest.
    pub(crate) fn take(&mut self, n: usize, now: Instant) {
        self.refill(now);
        let wanted = u128::try_from(n).unwrap_or(u128::MAX).saturating_mul(NANOS);
        let held = wanted.min(self.credit);
        self.credit -= held;
        self.debt = self.debt.saturating_add(wanted - held);
    }

    /// When the next whole token is available (`now` if one already is).
    pub(crate) fn next_token_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = NANOS.saturating_add(self.debt).saturating_sub(self.credit);
        let nanos = missing.div_ceil(self.rate);
        now + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The burst allowed at `rate`: a tenth of a second's worth, at least one.
pub(crate) fn burst_for(rate: NonZeroU32) -> NonZeroU32 {
    rate.get()
        .div_ceil(10)
        .try_into()
        .unwrap_or(NonZeroU32::MIN)
}

/// The pace applied to the delivery lanes: the backlog lane through the
/// bucket (if a `replay_rate` is set), the live lane never.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    bucket: Option<TokenBucket>,
}

impl Pace {
    /// `None`: unlimited.
    pub(crate) fn new(rate: Option<NonZeroU32>, now: Instant) -> Self {
        Pace {
            bucket: rate.map(|rate| TokenBucket::new(rate, burst_for(rate), now)),
        }
    }

    /// How many records of `lane` may be handed over now, given `room` in
    /// the in-flight window.
    pub(crate) fn budget(&mut self, lane: Lane, room: usize, now: Instant) -> usize {
        match &mut self.bucket {
            Some(bucket) if lane.is_backlog() => room.min(bucket.available(now)),
            _ => room,
        }
    }

    /// `n` records of `lane` were handed over at `now`.
    pub(crate) fn spent(&mut self, lane: Lane, n: usize, now: Instant) {
        if let Some(bucket) = &mut self.bucket
            && lane.is_backlog()
        {
            bucket.take(n, now);
        }
    }

    /// When a backlog held back at `now` may go on (`None` when unpaced).
    pub(crate) fn resume_at(&mut self, now: Instant) -> Option<Instant> {
        self.bucket.as_mut().map(|bucket| bucket.next_token_at(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    const LIVE: Lane = Lane {
        from: 100,
        below: u64::MAX,
    };
    const BACKLOG: Lane = Lane {
        from: 1,
        below: 100,
    };

    #[test]
    fn a_full_bucket_hands_out_its_burst_at_once_and_no_more() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(100), rate(10), t0);
        assert_eq!(bucket.available(t0), 10);
        bucket.take(10, t0);
        assert_eq!(bucket.available(t0), 0);
        assert_eq!(bucket.available(t0 + Duration::from_millis(10)), 1);
    }

    #[test]
    fn a_take_beyond_the_tokens_at_hand_is_owed_and_paid_before_new_tokens() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(100), rate(10), t0);
        bucket.take(15, t0); // 10 held, 5 owed
        assert_eq!(bucket.available(t0), 0);
        assert_eq!(
            bucket.next_token_at(t0),
            t0 + Duration::from_millis(60),
            "5 owed and 1 to take"
        );
        assert_eq!(bucket.available(t0 + Duration::from_millis(59)), 0);
        assert_eq!(bucket.available(t0 + Duration::from_millis(60)), 1);
        // Over 100 ms: at most the burst + the rate's 10, of which 15 went at t0.
        assert_eq!(bucket.available(t0 + Duration::from_millis(100)), 5);
    }

    #[test]
    fn tokens_accrue_at_the_rate_and_never_beyond_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(100), rate(10), t0);
        bucket.take(10, t0);
        assert_eq!(bucket.available(t0 + Duration::from_millis(9)), 0);
        assert_eq!(bucket.available(t0 + Duration::from_millis(10)), 1);
        assert_eq!(bucket.available(t0 + Duration::from_millis(55)), 5);
        assert_eq!(bucket.available(t0 + Duration::from_secs(60)), 10);
    }

    #[test]
    fn the_next_token_is_due_when_its_credit_is_complete() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(3), rate(1), t0);
        assert_eq!(bucket.next_token_at(t0), t0, "one is there already");
        bucket.take(1, t0);
        let due = bucket.next_token_at(t0);
        assert_eq!(due, t0 + Duration::from_nanos(333_333_334));
        assert_eq!(bucket.available(due - Duration::from_nanos(1)), 0);
        assert_eq!(bucket.available(due), 1);
    }

    #[test]
    fn over_a_window_at_most_the_burst_plus_the_rate_times_the_window_is_taken() {
        // A greedy taker polling every millisecond for 10 s at 200/s with a
        // burst of 20: exactly 20 + 2000, spread evenly after the burst.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(200), rate(20), t0);
        let mut per_second = [0_usize; 10];
        for ms in 0..10_000_u64 {
            let now = t0 + Duration::from_millis(ms);
            let n = bucket.available(now);
            bucket.take(n, now);
            per_second[usize::try_from(ms / 1000).unwrap()] += n;
        }
        let total =
            per_second.iter().sum::<usize>() + bucket.available(t0 + Duration::from_secs(10));
        assert_eq!(total, 20 + 2000);
        assert_eq!(per_second[0], 20 + 199, "the burst, then the rate");
        assert!(per_second[1..].iter().all(|&n| n == 200), "{per_second:?}");
    }

    #[test]
    fn a_long_replay_does_not_drift() {
        // 7 per second for an hour, taken at irregular moments: 25,200 plus the burst of 10.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(7), rate(10), t0);
        let mut taken = bucket.available(t0);
        bucket.take(taken, t0);
        let mut at = t0;
        for step in 0..200_000_u64 {
            at += Duration::from_micros(30_000 + (step * 7919) % 12_000);
            if at > t0 + Duration::from_secs(3600) {
                break;
            }
            let n = bucket.available(at);
            bucket.take(n, at);
            taken += n;
        }
        taken += bucket.available(t0 + Duration::from_secs(3600));
        assert_eq!(taken, 10 + 7 * 3600);
    }

    #[test]
    fn the_burst_is_a_tenth_of_a_second_and_at_least_one() {
        assert_eq!(burst_for(rate(1)).get(), 1);
        assert_eq!(burst_for(rate(10)).get(), 1);
        assert_eq!(burst_for(rate(11)).get(), 2);
        assert_eq!(burst_for(rate(500)).get(), 50);
        assert_eq!(burst_for(rate(u32::MAX)).get(), 429_496_730);
    }

    #[test]
    fn the_live_lane_is_never_held_back_nor_counted() {
        let t0 = Instant::now();
        let mut pace = Pace::new(Some(rate(1)), t0);
        assert_eq!(pace.budget(BACKLOG, 64, t0), 1);
        pace.spent(BACKLOG, 1, t0);
        assert_eq!(pace.budget(BACKLOG, 64, t0), 0, "the backlog waits");
        assert_eq!(pace.budget(LIVE, 64, t0), 64, "live data does not");
        pace.spent(LIVE, 64, t0);
        assert_eq!(
            pace.budget(BACKLOG, 64, t0 + Duration::from_secs(1)),
            1,
            "live records took no backlog tokens"
        );
        assert_eq!(
            pace.budget(LIVE, 7, t0),
            7,
            "the window still bounds live data"
        );
    }

    #[test]
    fn a_held_back_backlog_resumes_when_the_next_token_is_due() {
        let t0 = Instant::now();
        let mut pace = Pace::new(Some(rate(10)), t0);
        pace.spent(BACKLOG, 1, t0);
        assert_eq!(pace.resume_at(t0), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn without_a_rate_nothing_is_paced() {
        let t0 = Instant::now();
        let mut pace = Pace::new(None, t0);
        pace.spent(BACKLOG, 1_000_000, t0);
        assert_eq!(pace.budget(BACKLOG, 64, t0), 64);
        assert_eq!(pace.resume_at(t0), None);
    }
}
