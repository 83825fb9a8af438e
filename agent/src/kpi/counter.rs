//! Cumulative counters: the delta between two readings (rise, wrap or
//! reset) and linear interpolation of a counter between two samples.
//!
//! Owns the arithmetic only; the energy KPI keeps the per-input state.
//! Everything here is in the counter's *raw* units (before `scale`), where
//! integer counters are exact: integer readings are subtracted as `i128`,
//! so even a `u64` counter near its maximum gives an exact delta.
//!
//! # Rise, wrap or reset
//!
//! A reading at or above the previous one is a rise: `delta = current −
//! previous` (for float readings at most `f64::MAX`: two finite readings of
//! opposite signs can be further apart than that, and a delta is finite).
//! A fall is either a *wrap* (the counter passed its rollover and started
//! again from zero) or a *reset* (the meter was cleared or replaced;
//! consumption counts from zero again: `delta = current`, SPEC §4). The
//! rule, in this order:
//!
//! 1. A wrap is possible only for a counter with a rollover: an explicit
//!    `rollover`, or the maximum of its integer type. A float counter
//!    without `rollover` never wraps, unless it is read from a decimal
//!    register of range `M` ([`DecimalRegister`], e.g. a meter's
//!    `XXXXXX.XX` kWh, `M` = 1 000 000): then `delta = M − previous +
//!    current`. For a rollover `R` the wrapped delta
//!    is `R − previous + current + 1` (the counter's range is `M = R + 1`).
//!    A signed counter that falls from a non-negative to a negative reading
//!    wrapped in two's complement: `delta = current − previous + 2^bits`
//!    (`M = 2^bits`).
//! 2. The wrapped delta must be plausible: at most half the range
//!    (`M / 2`), and at most an allowance: once the counter's rate is known
//!    (its rise per millisecond over its last rising step), `max(4 × rate ×
//!    Δt, 16)` raw units, `Δt` being the time between the two readings;
//!    before that, `M / 1000`. So a counter just below its rollover that
//!    comes back small is a wrap, and a fall from mid-range to near zero is
//!    a reset even though a wrap could produce it.
//! 3. Otherwise it is a reset: `delta = current` (zero if negative).
//!
//! Either way the two readings of a wrap and a reset differ by exactly
//! `R − previous + 1`, the distance from the previous reading to the
//! rollover, and the rule only calls a fall a wrap when that distance fits
//! in the allowance. So a misread fall costs at most the allowance: about
//! four readings' worth of consumption once the rate is known (a reset just
//! below the rollover reads as a wrap; a wrap right after an idle spell, as
//! a reset), at most `M / 1000` raw units on a counter's first step.

use super::Raw;
use serde::{Deserialize, Serialize};
use spindle_config::model::{Point, ValueType};

/// A counter's raw reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Reading {
    Unsigned(u64),
    Signed(i64),
    Float(#[serde(with = "super::exact_f64")] f64),
}

impl Reading {
    /// The reading of a decoded raw value; `None` for bools, text and
    /// non-finite floats.
    pub fn from_raw(raw: &Raw) -> Option<Self> {
        match raw {
            Raw::Unsigned(v) => Some(Reading::Unsigned(*v)),
            Raw::Signed(v) => Some(Reading::Signed(*v)),
            Raw::Float(v) if v.is_finite() => Some(Reading::Float(*v)),
            Raw::Float(_) | Raw::Bool(_) | Raw::Text => None,
        }
    }

    fn as_int(self) -> Option<i128> {
        match self {
            Reading::Unsigned(v) => Some(i128::from(v)),
            Reading::Signed(v) => Some(i128::from(v)),
            Reading::Float(_) => None,
        }
    }

    /// The reading as a float (rounded for integers beyond 2^53).
    pub fn as_f64(self) -> f64 {
        match self {
            Reading::Unsigned(v) => int_to_f64(i128::from(v)),
            Reading::Signed(v) => int_to_f64(i128::from(v)),
            Reading::Float(v) => v,
        }
    }
}

/// How a counter can wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSpec {
    /// Raw value after which it wraps to zero; `None` = it never wraps.
    pub rollover: Option<u64>,
    /// Bits of a signed integer type (two's-complement wraps).
    pub signed_bits: Option<u32>,
    /// A float counter read from a decimal register (a meter's
    /// `XXXXXX.XX` kWh): it wraps at the register's range instead of
    /// `rollover` (rule 1).
    #[serde(default)]
    pub register: Option<DecimalRegister>,
}

/// A decimal register's range as plain numbers: `steps` steps of
/// 10^−`decimals` raw units (100 000 000 steps of 0.01: 0 to 999999.99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecimalRegister {
    pub steps: u64,
    pub decimals: u8,
}

impl DecimalRegister {
    /// The register's range `M` in raw units: it reads below `M`, then 0.
    pub fn range(self) -> f64 {
        u64_to_f64(self.steps) / 10_f64.powi(i32::from(self.decimals))
    }
}

impl CounterSpec {
    /// The spec of a configured point: its `rollover`, else its integer
    /// type's maximum.
    pub fn for_point(point: &Point) -> Self {
        let signed_bits = match point.value_type {
            ValueType::I16 => Some(16),
            ValueType::I32 => Some(32),
            ValueType::I64 => Some(64),
            _ => None,
        };
        CounterSpec {
            rollover: point.rollover.or_else(|| point.value_type.raw_max()),
            signed_bits,
            register: None,
        }
    }
}

/// What happened between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepKind {
    Rise,
    Wrap,
    Reset,
}

/// The counter's movement between two readings, in raw units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Never negative.
    pub delta: f64,
    pub kind: StepKind,
}

/// Rate allowance factor of the wrap rule (rule 2 of the module doc).
pub const WRAP_RATE_SLACK: f64 = 4.0;
/// Raw units a wrapped delta may always take once the rate is known (rule 2).
pub const WRAP_MIN_ALLOWANCE: f64 = 16.0;
/// Share of the range a wrapped delta may take before the rate is known (rule 2).
pub const WRAP_FIRST_STEP_FRACTION: f64 = 0.001;
/// Largest share of the range a wrapped delta may take (rule 2).
pub const WRAP_MAX_FRACTION: f64 = 0.5;

/// The step from `previous` to `current`, `dt_ms` apart; `rate` is the
/// counter's last known rise per millisecond.
pub fn step(
    spec: CounterSpec,
    previous: Reading,
    current: Reading,
    dt_ms: u64,
    rate: Option<f64>,
) -> Step {
    let (wrapped, reset_delta) = if let (Some(p), Some(c)) = (previous.as_int(), current.as_int()) {
        if c >= p {
            return rise(int_to_f64(c - p));
        }
        (int_wrap(spec, p, c), int_to_f64(c.max(0)))
    } else {
        let (p, c) = (previous.as_f64(), current.as_f64());
        if c >= p {
            // Finite readings of opposite signs can be further apart than
            // the largest f64: the rise is that largest f64, never infinity.
            return rise((c - p).min(f64::MAX));
        }
        (float_wrap(spec, p, c), c.max(0.0))
    };
    match wrapped {
        Some((delta, range)) if plausible_wrap(delta, range, dt_ms, rate) => Step {
            delta,
            kind: StepKind::Wrap,
        },
        _ => Step {
            delta: reset_delta,
            kind: StepKind::Reset,
        },
    }
}

/// Rule 1 for integer readings, `p > c`: the wrapped delta and the range.
fn int_wrap(spec: CounterSpec, p: i128, c: i128) -> Option<(f64, f64)> {
    let (delta, range) = if c < 0 && p >= 0 {
        let range = 1_i128.checked_shl(spec.signed_bits?)?;
        (c - p + range, range)
    } else {
        let r = i128::from(spec.rollover?);
        if p > r || c < 0 {
            return None;
        }
        (r - p + c + 1, r + 1)
    };
    Some((int_to_f64(delta), int_to_f64(range)))
}

/// Rule 1 for float readings, `p > c`: a decimal register of range `M`
/// wraps from below `M` to 0 (`delta = M − p + c`); else as an integer
/// rollover `R` (`delta = R − p + c + 1`).
fn float_wrap(spec: CounterSpec, p: f64, c: f64) -> Option<(f64, f64)> {
    if let Some(register) = spec.register {
        let range = register.range();
        return (p < range && c >= 0.0).then_some((range - p + c, range));
    }
    let r = u64_to_f64(spec.rollover?);
    (p <= r && c >= 0.0).then_some((r - p + c + 1.0, r + 1.0))
}

fn rise(delta: f64) -> Step {
    Step {
        delta,
        kind: StepKind::Rise,
    }
}

/// Rule 2 of the module doc.
fn plausible_wrap(delta: f64, range: f64, dt_ms: u64, rate: Option<f64>) -> bool {
    let allowance = match rate {
        Some(rate) => (WRAP_RATE_SLACK * rate.max(0.0) * ms_to_f64(dt_ms)).max(WRAP_MIN_ALLOWANCE),
        None => WRAP_FIRST_STEP_FRACTION * range,
    };
    delta > 0.0 && delta <= WRAP_MAX_FRACTION * range && delta <= allowance
}

/// The rise per millisecond of a rising step, for the wrap rule.
pub fn rate(delta: f64, dt_ms: u64) -> Option<f64> {
    (dt_ms > 0 && delta.is_finite()).then(|| delta / ms_to_f64(dt_ms))
}

/// The value at `t` of the line through `(t0, v0)` and `(t1, v1)`, clamped
/// to the two samples; exact at both ends.
///
/// The clamp holds where float rounding alone would break it: with `v1`
/// far below `v0`, `v0 + (v1 - v0)` can cancel to less than `v1`, and past
/// 2^53 ms the fraction of the way rounds to 1 before `t` reaches `t1`.
pub fn interpolate(t0: u64, v0: f64, t1: u64, v1: f64, t: u64) -> f64 {
    if t <= t0 || t1 <= t0 {
        return v0;
    }
    if t >= t1 {
        return v1;
    }
    let v = v0 + (v1 - v0) * (ms_to_f64(t - t0) / ms_to_f64(t1 - t0));
    v.max(v0.min(v1)).min(v0.max(v1))
}

// Deltas beyond 2^53 raw units lose precision in the float they are published as.
#[allow(clippy::cast_precision_loss)]
fn int_to_f64(v: i128) -> f64 {
    v as f64
}

#[allow(clippy::cast_precision_loss)]
fn u64_to_f64(v: u64) -> f64 {
    v as f64
}

/// Milliseconds as a float (exact below 2^53 ms, some 285 000 years).
#[allow(clippy::cast_precision_loss)]
pub fn ms_to_f64(ms: u64) -> f64 {
    ms as f64
}

#[cfg(test)]
// Small integers and halves: exact in binary floating point.
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    const U32: CounterSpec = CounterSpec {
        rollover: Some(u32::MAX as u64),
        signed_bits: None,
        register: None,
    };

    #[test]
    fn a_rise_is_the_difference() {
        let s = step(
            U32,
            Reading::Unsigned(10),
            Reading::Unsigned(25),
            1000,
            None,
        );
        assert_eq!(s, rise(15.0));
    }

    #[test]
    fn a_fall_just_after_the_rollover_is_a_wrap() {
        let s = step(
            U32,
            Reading::Unsigned(u64::from(u32::MAX) - 4),
            Reading::Unsigned(5),
            1000,
            Some(0.01),
        );
        assert_eq!(s.kind, StepKind::Wrap);
        assert_eq!(s.delta, 10.0);
    }

    /// A meter's `XXXXXX.XX` kWh register.
    const METER: CounterSpec = CounterSpec {
        rollover: None,
        signed_bits: None,
        register: Some(DecimalRegister {
            steps: 100_000_000,
            decimals: 2,
        }),
    };

    #[test]
    fn a_decimal_register_near_its_top_that_comes_back_small_wrapped() {
        // 999999.50 kWh, then 0.25 kWh a second later at 0.5 kWh/s.
        let s = step(
            METER,
            Reading::Float(999_999.5),
            Reading::Float(0.25),
            1000,
            Some(0.0005),
        );
        assert_eq!(s.kind, StepKind::Wrap);
        assert!((s.delta - 0.75).abs() < 1e-6, "{s:?}");
        // Before the rate is known: within a thousandth of the range.
        let s = step(
            METER,
            Reading::Float(999_990.0),
            Reading::Float(12.0),
            1000,
            None,
        );
        assert_eq!(s.kind, StepKind::Wrap);
        assert!((s.delta - 22.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn a_decimal_register_falling_from_mid_range_was_reset_and_without_it_a_float_never_wraps() {
        let s = step(
            METER,
            Reading::Float(500_000.0),
            Reading::Float(3.0),
            1000,
            Some(0.0005),
        );
        assert_eq!((s.kind, s.delta), (StepKind::Reset, 3.0));
        let plain = CounterSpec {
            register: None,
            ..METER
        };
        let s = step(
            plain,
            Reading::Float(999_999.5),
            Reading::Float(0.25),
            1000,
            Some(0.0005),
        );
        assert_eq!(
            (s.kind, s.delta),
            (StepKind::Reset, 0.25),
            "a wrap read as a reset"
        );
        assert_eq!(
            DecimalRegister {
                steps: 100_000_000,
                decimals: 2
            }
            .range(),
            1_000_000.0
        );
    }

    #[test]
    fn a_fall_from_mid_range_is_a_reset_counted_from_zero() {
        let s = step(
            U32,
            Reading::Unsigned(1_000_000),
            Reading::Unsigned(7),
            1000,
            None,
        );
        assert_eq!(s.kind, StepKind::Reset);
        assert_eq!(s.delta, 7.0);
    }

    #[test]
    fn a_wrap_larger_than_the_rate_allows_is_a_reset() {
        // 3/4 of the way up a u16, back to 3: wrapped delta 16 387 is under
        // half the range, but the counter was rising 1 per second.
        let spec = CounterSpec {
            rollover: Some(65_535),
            signed_bits: None,
            register: None,
        };
        let s = step(
            spec,
            Reading::Unsigned(49_152),
            Reading::Unsigned(3),
            1000,
            Some(0.001),
        );
        assert_eq!(s.kind, StepKind::Reset);
        assert_eq!(s.delta, 3.0);
    }

    #[test]
    fn a_signed_counter_wraps_through_negative_values() {
        let spec = CounterSpec {
            rollover: Some(i16::MAX as u64),
            signed_bits: Some(16),
            register: None,
        };
        let s = step(
            spec,
            Reading::Signed(32_766),
            Reading::Signed(-32_767),
            1000,
            None,
        );
        assert_eq!(s.kind, StepKind::Wrap);
        assert_eq!(s.delta, 3.0);
    }

    #[test]
    fn a_float_counter_without_rollover_never_wraps() {
        let spec = CounterSpec {
            rollover: None,
            signed_bits: None,
            register: None,
        };
        let s = step(spec, Reading::Float(99.5), Reading::Float(0.25), 1000, None);
        assert_eq!(s.kind, StepKind::Reset);
        assert_eq!(s.delta, 0.25);
    }

    #[test]
    fn a_u64_counter_wraps_exactly_at_its_maximum() {
        let spec = CounterSpec {
            rollover: Some(u64::MAX),
            signed_bits: None,
            register: None,
        };
        let s = step(
            spec,
            Reading::Unsigned(u64::MAX - 1),
            Reading::Unsigned(2),
            1000,
            None,
        );
        assert_eq!(s.kind, StepKind::Wrap);
        assert_eq!(s.delta, 4.0);
    }

    #[test]
    fn a_rise_between_float_readings_further_apart_than_f64_max_is_f64_max() {
        // Found by the kpi_counter fuzz target (fuzz/regressions/kpi_counter/rise-overflow).
        let spec = CounterSpec {
            rollover: None,
            signed_bits: None,
            register: None,
        };
        let s = step(
            spec,
            Reading::Float(-1.5e308),
            Reading::Float(1.5e308),
            0,
            None,
        );
        assert_eq!(s, rise(f64::MAX));
    }

    #[test]
    fn interpolation_never_leaves_the_two_samples_through_rounding() {
        // Found by the kpi_counter fuzz target (fuzz/regressions/kpi_counter/
        // interpolation-cancels): past 2^53 ms the fraction rounds to 1 and
        // v0 + (v1 - v0) cancels to 0, below v1.
        let t0 = 426_869_220_195;
        let t1 = 4_629_771_061_636_907_072;
        let v = interpolate(t0, 1.687_598_288_766_143e35, t1, 32.5, t1 - 64);
        assert!((32.5..=1.687_598_288_766_143e35).contains(&v), "{v}");
        let v = interpolate(
            4_262_465,
            2_262_016.0,
            4_702_111_234_474_983_745,
            1e-300,
            4_702_111_234_474_983_695,
        );
        assert!((1e-300..=2_262_016.0).contains(&v), "{v}");
    }

    #[test]
    fn interpolation_is_exact_at_both_samples_and_linear_between() {
        assert_eq!(interpolate(1000, 10.0, 3000, 30.0, 1000), 10.0);
        assert_eq!(interpolate(1000, 10.0, 3000, 30.0, 3000), 30.0);
        assert_eq!(interpolate(1000, 10.0, 3000, 30.0, 1500), 15.0);
        assert_eq!(interpolate(1000, 10.0, 3000, 30.0, 9000), 30.0);
    }
}
