//! Counter deltas (rise, wrap, reset) and interpolation against a plain
//! reference implementation of the rule in `kpi::counter`'s module doc, and
//! against simulated counters whose true increments are known.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::float_cmp
)]

use proptest::prelude::*;
use spindle::kpi::counter::{CounterSpec, Reading, StepKind, interpolate, step};

/// Reference for unsigned integer counters with rollover `r`, in u128.
fn reference_unsigned(r: u64, p: u64, c: u64, dt_ms: u64, rate: Option<f64>) -> (f64, StepKind) {
    if c >= p {
        return ((c - p) as f64, StepKind::Rise);
    }
    if p <= r {
        let range = u128::from(r) + 1;
        let wrapped = u128::from(r) - u128::from(p) + u128::from(c) + 1;
        let allowance = match rate {
            Some(rate) => (4.0 * rate * dt_ms as f64).max(16.0),
            None => 0.001 * range as f64,
        };
        if wrapped as f64 <= range as f64 / 2.0 && wrapped as f64 <= allowance {
            return (wrapped as f64, StepKind::Wrap);
        }
    }
    (c as f64, StepKind::Reset)
}

fn unsigned(rollover: u64) -> CounterSpec {
    CounterSpec {
        rollover: Some(rollover),
        signed_bits: None,
        register: None,
    }
}

fn rollovers() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::from(u16::MAX)),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(99_999_999),
        1_u64..1_000_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn an_unsigned_step_matches_the_reference(
        r in rollovers(),
        p_frac in 0.0..=1.0_f64,
        c_frac in 0.0..=1.0_f64,
        near_top in any::<bool>(),
        dt_ms in 1_u64..120_000,
        rate in proptest::option::of(0.0..10.0_f64),
    ) {
        let scale = r as f64;
        let (mut p, mut c) = ((p_frac * scale) as u64, (c_frac * scale) as u64);
        if near_top {
            // Just below the rollover and just after it: the wrap region.
            p = r - (r as f64 * p_frac / 2000.0) as u64;
            c = (r as f64 * c_frac / 2000.0) as u64;
        }
        let s = step(unsigned(r), Reading::Unsigned(p), Reading::Unsigned(c), dt_ms, rate);
        let (delta, kind) = reference_unsigned(r, p, c, dt_ms, rate);
        prop_assert_eq!(s.kind, kind);
        prop_assert_eq!(s.delta, delta);
        prop_assert!(s.delta >= 0.0);
    }

    #[test]
    fn a_counter_wrapping_at_its_rollover_sums_to_its_true_increments(
        r in prop_oneof![Just(u64::from(u16::MAX)), Just(u64::from(u32::MAX)), 10_000_u64..1_000_000],
        start_frac in 0.0..1.0_f64,
        increments in proptest::collection::vec(0_u64..8, 1..400),
    ) {
        // Increments of up to 7 raw units a second: within the 16-unit
        // allowance even after an idle second, so every fall is a wrap.
        let start = (start_frac * r as f64) as u64;
        let mut raw = start;
        let range = u128::from(r) + 1;
        let mut rate = None;
        let mut total = 0.0;
        let mut wraps = 0_u128;
        for inc in &increments {
            let next = u64::try_from((u128::from(raw) + u128::from(*inc)) % range).unwrap();
            let s = step(unsigned(r), Reading::Unsigned(raw), Reading::Unsigned(next), 1000, rate);
            prop_assert_ne!(s.kind, StepKind::Reset);
            if s.kind == StepKind::Wrap {
                wraps += 1;
            } else {
                rate = Some(s.delta / 1000.0);
            }
            total += s.delta;
            raw = next;
        }
        prop_assert_eq!(total, increments.iter().sum::<u64>() as f64);
        let expected_wraps = (u128::from(start) + u128::from(increments.iter().sum::<u64>())) / range;
        prop_assert_eq!(wraps, expected_wraps);
    }

    #[test]
    fn a_meter_cleared_from_mid_range_is_a_reset_counted_from_zero(
        r in prop_oneof![Just(u64::from(u16::MAX)), Just(u64::from(u32::MAX)), Just(u64::MAX)],
        p_frac in 0.01..0.49_f64,
        after in 0_u64..50,
        rate in proptest::option::of(0.0..1.0_f64),
    ) {
        let p = ((p_frac * r as f64) as u64).max(after + 1);
        let s = step(unsigned(r), Reading::Unsigned(p), Reading::Unsigned(after), 1000, rate);
        prop_assert_eq!(s.kind, StepKind::Reset);
        prop_assert_eq!(s.delta, after as f64);
    }

    #[test]
    fn a_signed_counter_wraps_through_its_negative_half_in_twos_complement(
        bits in prop_oneof![Just(16_u32), Just(32_u32)],
        before_top in 0_i64..20,
        past_bottom in 0_i64..20,
    ) {
        let max = (1_i64 << (bits - 1)) - 1;
        let spec = CounterSpec { rollover: Some(u64::try_from(max).unwrap()), signed_bits: Some(bits), register: None };
        let p = max - before_top;
        let c = -max - 1 + past_bottom;
        let s = step(spec, Reading::Signed(p), Reading::Signed(c), 1000, None);
        prop_assert_eq!(s.kind, StepKind::Wrap);
        prop_assert_eq!(s.delta, (before_top + past_bottom + 1) as f64);
    }

    #[test]
    fn a_float_counter_rises_by_the_difference_and_resets_to_its_reading(
        p in 0.0..1e6_f64,
        c in 0.0..1e6_f64,
    ) {
        let spec = CounterSpec { rollover: None, signed_bits: None, register: None };
        let s = step(spec, Reading::Float(p), Reading::Float(c), 1000, None);
        if c >= p {
            prop_assert_eq!((s.kind, s.delta), (StepKind::Rise, c - p));
        } else {
            prop_assert_eq!((s.kind, s.delta), (StepKind::Reset, c));
        }
    }

    #[test]
    fn interpolation_is_the_straight_line_between_the_two_samples(
        t0 in 0_u64..1_000_000,
        dt in 1_u64..1_000_000,
        at in 0.0..=1.0_f64,
        v0 in -1e6..1e6_f64,
        dv in 0.0..1e6_f64,
    ) {
        let t1 = t0 + dt;
        let t = t0 + (at * dt as f64) as u64;
        let v = interpolate(t0, v0, t1, v0 + dv, t);
        // Reference: the same line through exact rationals, to float rounding.
        let expected = v0 + dv * ((t - t0) as f64) / (dt as f64);
        prop_assert!((v - expected).abs() <= 1e-9 * (1.0 + v0.abs() + dv));
        prop_assert!(v >= v0 - 1e-9 && v <= v0 + dv + 1e-9);
        prop_assert_eq!(interpolate(t0, v0, t1, v0 + dv, t0), v0);
        prop_assert_eq!(interpolate(t0, v0, t1, v0 + dv, t1), v0 + dv);
    }
}

#[test]
fn a_u16_counter_three_quarters_up_that_comes_back_small_is_a_reset_once_its_rate_is_known() {
    let s = step(
        unsigned(65_535),
        Reading::Unsigned(49_000),
        Reading::Unsigned(2),
        1000,
        Some(0.002),
    );
    assert_eq!((s.kind, s.delta), (StepKind::Reset, 2.0));
}

#[test]
fn a_reset_within_a_thousandth_of_the_rollover_on_the_first_step_reads_as_a_wrap() {
    // The documented residual ambiguity, bounded by 0.1 % of the range.
    let s = step(
        unsigned(u64::from(u32::MAX)),
        Reading::Unsigned(u64::from(u32::MAX) - 1000),
        Reading::Unsigned(3),
        1000,
        None,
    );
    assert_eq!((s.kind, s.delta), (StepKind::Wrap, 1004.0));
}

#[test]
fn once_the_rate_is_known_a_reset_just_below_the_rollover_is_a_reset() {
    // Rising 50 a second: 1004 in one second is not a plausible wrap.
    let s = step(
        unsigned(u64::from(u32::MAX)),
        Reading::Unsigned(u64::from(u32::MAX) - 1000),
        Reading::Unsigned(3),
        1000,
        Some(0.05),
    );
    assert_eq!((s.kind, s.delta), (StepKind::Reset, 3.0));
}
