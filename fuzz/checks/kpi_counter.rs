//! The `kpi_counter` check: a counter step (`spindle::kpi::counter::step`)
//! between arbitrary readings, with an arbitrary rollover, time and rate,
//! and interpolation (`interpolate`) between arbitrary samples keep the
//! rules of `kpi::counter`'s module doc:
//!
//! - a step's delta is a number, finite and never negative;
//! - it is a rise exactly when the reading did not fall, with the delta the
//!   difference (exact for integer readings, as far as an `f64` holds it;
//!   at most `f64::MAX` for float readings);
//! - a reset counts from zero: the delta is the reading, or zero if negative;
//! - a wrap needs a way to wrap (a rollover the previous reading is at most,
//!   or a signed counter falling into its negative half) and is plausible:
//!   more than zero, at most half the range and at most the allowance;
//! - `rate` is finite and not negative when it is known;
//! - interpolation between finite samples whose difference is finite is
//!   finite, exact at both ends and never outside the two samples.
//!
//! Input: the spec (a selector byte: signed bits none, 16, 32 or 64 as
//! `CounterSpec::for_point` gives them, and whether a rollover follows; the
//! rollover, u64), the two readings (a variant byte and 8 bytes each; a
//! float reading that is not finite is no reading, as in
//! `Reading::from_raw`), the time between them (u64 ms), the rate (a byte
//! saying whether there is one, then an f64), then an interpolation: t0,
//! v0, t1, v1, t (u64, f64, u64, f64, u64).

use spindle::kpi::counter::{
    CounterSpec, DecimalRegister, Reading, StepKind, WRAP_FIRST_STEP_FRACTION, WRAP_MAX_FRACTION,
    WRAP_MIN_ALLOWANCE, WRAP_RATE_SLACK, interpolate, ms_to_f64, rate, step,
};

use crate::bytes::Bytes;

fn reading(bytes: &mut Bytes<'_>) -> Option<Reading> {
    let variant = bytes.u8() % 3;
    let raw = bytes.u64();
    match variant {
        0 => Some(Reading::Unsigned(raw)),
        1 => Some(Reading::Signed(i64::from_be_bytes(raw.to_be_bytes()))),
        _ => Some(Reading::Float(f64::from_bits(raw))).filter(|r| r.as_f64().is_finite()),
    }
}

fn as_int(reading: Reading) -> Option<i128> {
    match reading {
        Reading::Unsigned(v) => Some(i128::from(v)),
        Reading::Signed(v) => Some(i128::from(v)),
        Reading::Float(_) => None,
    }
}

#[allow(clippy::cast_precision_loss)]
fn to_f64(v: i128) -> f64 {
    v as f64
}

pub(crate) fn check(data: &[u8]) {
    let mut bytes = Bytes(data);
    let selector = bytes.u8();
    let signed_bits = match selector % 4 {
        0 => None,
        1 => Some(16),
        2 => Some(32),
        _ => Some(64),
    };
    let rollover = bytes.u64();
    let register = DecimalRegister {
        steps: bytes.u64(),
        decimals: bytes.u8() % 20,
    };
    let spec = CounterSpec {
        rollover: (selector & 4 == 4).then_some(rollover),
        signed_bits,
        register: (selector & 8 == 8).then_some(register),
    };
    let previous = reading(&mut bytes);
    let current = reading(&mut bytes);
    let dt_ms = bytes.u64();
    let has_rate = bytes.u8() & 1 == 1;
    let known_rate = bytes.f64();
    let known_rate = has_rate.then_some(known_rate);
    if let (Some(previous), Some(current)) = (previous, current) {
        check_step(spec, previous, current, dt_ms, known_rate);
    }
    let (t0, v0, t1, v1, t) = (
        bytes.u64(),
        bytes.f64(),
        bytes.u64(),
        bytes.f64(),
        bytes.u64(),
    );
    check_interpolation(t0, v0, t1, v1, t);
}

fn check_step(
    spec: CounterSpec,
    previous: Reading,
    current: Reading,
    dt_ms: u64,
    known_rate: Option<f64>,
) {
    let s = step(spec, previous, current, dt_ms, known_rate);
    let case =
        format!("{spec:?} {previous:?} -> {current:?} in {dt_ms} ms at {known_rate:?}: {s:?}");
    assert!(s.delta.is_finite() && s.delta >= 0.0, "{case}");
    let ints = as_int(previous).zip(as_int(current));
    let rose = match ints {
        Some((p, c)) => c >= p,
        None => current.as_f64() >= previous.as_f64(),
    };
    assert_eq!(s.kind == StepKind::Rise, rose, "{case}");
    match s.kind {
        StepKind::Rise => {
            let difference = match ints {
                Some((p, c)) => to_f64(c - p),
                None => (current.as_f64() - previous.as_f64()).min(f64::MAX),
            };
            assert_eq!(s.delta.to_bits(), difference.to_bits(), "{case}");
        }
        StepKind::Reset => {
            let from_zero = match as_int(current) {
                Some(c) => to_f64(c.max(0)),
                None => current.as_f64().max(0.0),
            };
            assert_eq!(s.delta.to_bits(), from_zero.to_bits(), "{case}");
        }
        StepKind::Wrap => {
            let signed_wrap =
                spec.signed_bits.is_some() && matches!(ints, Some((p, c)) if c < 0 && p >= 0);
            let range = if signed_wrap {
                spec.signed_bits
                    .map(|bits| 2_f64.powi(i32::try_from(bits).unwrap_or(i32::MAX)))
            } else if let (Some(register), None) = (spec.register, ints) {
                // A float reading of a decimal register wraps at its range.
                Some(register.range())
            } else {
                spec.rollover
                    .filter(|r| previous.as_f64() <= to_f64(i128::from(*r)))
                    .map(|r| to_f64(i128::from(r)) + 1.0)
            };
            let range = range.unwrap_or_else(|| panic!("a wrap without a way to wrap: {case}"));
            let allowance = match known_rate {
                Some(r) => {
                    (WRAP_RATE_SLACK * r.max(0.0) * ms_to_f64(dt_ms)).max(WRAP_MIN_ALLOWANCE)
                }
                None => WRAP_FIRST_STEP_FRACTION * range,
            };
            assert!(s.delta > 0.0, "{case}");
            assert!(s.delta <= WRAP_MAX_FRACTION * range, "{case}");
            assert!(s.delta <= allowance, "{case}");
        }
    }
    if let Some(r) = rate(s.delta, dt_ms) {
        assert!(r.is_finite() && r >= 0.0, "rate {r}: {case}");
    }
}

fn check_interpolation(t0: u64, v0: f64, t1: u64, v1: f64, t: u64) {
    if !(v0.is_finite() && v1.is_finite() && (v1 - v0).is_finite()) {
        return;
    }
    let case = format!("({t0}, {v0}) to ({t1}, {v1}) at {t}");
    let v = interpolate(t0, v0, t1, v1, t);
    assert!(v.is_finite(), "{v}: {case}");
    assert!(v >= v0.min(v1) && v <= v0.max(v1), "{v}: {case}");
    assert_eq!(
        interpolate(t0, v0, t1, v1, t0).to_bits(),
        v0.to_bits(),
        "{case}"
    );
    if t1 > t0 {
        assert_eq!(
            interpolate(t0, v0, t1, v1, t1).to_bits(),
            v1.to_bits(),
            "{case}"
        );
    }
}
