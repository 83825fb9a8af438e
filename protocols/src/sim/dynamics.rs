//! How a simulated point's value moves with time. Pure: no I/O, no clock.
//!
//! A [`Dynamics`] says what a point does — hold a constant, ramp at a rate,
//! count up, step through a schedule, or walk at random inside bounds — in
//! *published* units (after the point's `scale` and `offset`). A
//! [`SimPoint`] binds dynamics to a configured [`Point`] and a seed, and
//! [`SimPoint::raw_at`] gives the raw value the device holds `t` after the
//! simulation started; [`SimPoint::value_at`] gives what a reader publishes
//! (the raw value decoded). Both are pure functions of `t`, so a test
//! computes ground truth from the very formulas the simulator serves.
//!
//! Formulas (`t` in seconds since the start, `dt` since the last reset):
//! * **constant**: the value.
//! * **ramp**: `start + rate·t`; with both `min` and `max`, `bounce`
//!   reflects between them (a triangle wave), `wrap` starts again at `min`,
//!   `hold` stops at the bound (the default with one bound).
//! * **counter**: in raw units, `raw = base + ⌊(rate/scale)·dt⌋` for integer
//!   types (the floor forgives a relative 1e-12, so a product that is an
//!   integer on paper counts as one; integer arithmetic after it), without the floor
//!   for floats; `base` is `start` converted to raw, or 0 after `reset_at`
//!   (a one-time meter reset). With `wrap = W` the raw value runs
//!   `0..=W` (`raw mod (W+1)`, the SPEC's rollover rule); without it an
//!   integer wraps at its type's range.
//! * **schedule**: steps `[value, duration]` repeated; `reset_at` restarts
//!   the cycle at its first step.
//! * **random walk**: every `every` (default 1 s) the value moves by
//!   `step·u`, `u` uniform in [-1, 1) from a counter-based generator
//!   (`SplitMix64` of the seed and the step number), reflected into
//!   `[min, max]`. The same seed gives the same walk on every machine and
//!   every build.
//!
//! Conversion to raw for everything but counters: `(value − offset) / scale`,
//! rounded to the nearest integer and saturated to the type's range for
//! integer types, rounded to `f32` for `f32`; bools are `value ≠ 0`.

use std::time::Duration;

use spindle_config::model::{Point, ValueType};

use crate::modbus::decode::RawValue;

/// What a simulated point does over time (values in published units).
#[derive(Debug, Clone, PartialEq)]
pub enum Dynamics {
    Constant(Constant),
    Ramp(Ramp),
    Counter(Counter),
    Schedule(Schedule),
    RandomWalk(RandomWalk),
}

/// A fixed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    Number(f64),
    Bool(bool),
    Text(String),
}

/// What a ramp does at a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtLimit {
    /// Reflect: run back towards the other bound.
    #[default]
    Bounce,
    /// Start again at the other bound.
    Wrap,
    /// Stay at the bound.
    Hold,
}

/// `start + rate·t`, optionally bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    pub start: f64,
    /// Published units per second.
    pub rate: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub at_limit: AtLimit,
}

/// A cumulative counter (energy, volume, parts).
#[derive(Debug, Clone, PartialEq)]
pub struct Counter {
    /// Published units per second.
    pub rate: f64,
    /// Published value at the start.
    pub start: f64,
    /// Raw value after which the counter wraps to 0 (like a point's `rollover`).
    pub wrap: Option<u64>,
    /// When the counter is reset to 0 (once).
    pub reset_at: Option<Duration>,
}

/// Values held for durations, cycling.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Not empty; durations sum to more than zero.
    pub steps: Vec<Step>,
    /// When the cycle restarts at its first step (once).
    pub reset_at: Option<Duration>,
}

/// One step of a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub value: f64,
    pub duration: Duration,
}

/// A bounded random walk.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomWalk {
    pub start: f64,
    /// Largest move per step.
    pub step: f64,
    pub min: f64,
    pub max: f64,
    /// Time between steps (not zero).
    pub every: Duration,
}

/// A configured point with its dynamics and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPoint {
    pub point: Point,
    pub dynamics: Dynamics,
    /// Seeds the random walk; derive it with [`point_seed`].
    pub seed: u64,
}

/// A published value of a simulated point.
#[derive(Debug, Clone, PartialEq)]
pub enum SimValue {
    Number(f64),
    Bool(bool),
    Text(String),
}

impl SimValue {
    /// The number (bools as 0/1); `None` for text.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SimValue::Number(value) => Some(*value),
            SimValue::Bool(value) => Some(f64::from(u8::from(*value))),
            SimValue::Text(_) => None,
        }
    }
}

/// The seed of one point: the device's seed mixed with the point's name, so
/// adding a point does not change the others' walks.
pub fn point_seed(device_seed: u64, point: &str) -> u64 {
    // FNV-1a of the name.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in point.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(device_seed ^ hash)
}

/// `SplitMix64`'s output function: a well-mixed `u64` for each input.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from 53 bits of `bits`.
pub fn unit_interval(bits: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 exactly
    let mantissa = (bits >> 11) as f64;
    mantissa / 9_007_199_254_740_992.0
}

impl RandomWalk {
    /// The value after `steps` steps.
    pub fn after(&self, seed: u64, steps: u64) -> f64 {
        self.continue_from(seed, 0, self.start, steps)
    }

    /// The value after step `to`, given `value` after step `from`.
    fn continue_from(&self, seed: u64, from: u64, value: f64, to: u64) -> f64 {
        let mut value = value;
        for index in from.saturating_add(1)..=to {
            let bits = splitmix64(seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            let moved = value + self.step * (2.0 * unit_interval(bits) - 1.0);
            value = reflect(moved, self.min, self.max);
        }
        value
    }

    /// Steps taken by time `t`.
    pub fn steps_at(&self, t: Duration) -> u64 {
        let every = self.every.as_nanos().max(1);
        u64::try_from(t.as_nanos() / every).unwrap_or(u64::MAX)
    }
}

/// Reflect `x` into `[min, max]` (once, then clamp).
fn reflect(x: f64, min: f64, max: f64) -> f64 {
    let x = if x > max { 2.0 * max - x } else { x };
    let x = if x < min { 2.0 * min - x } else { x };
    x.clamp(min, max.max(min))
}

impl Ramp {
    pub fn value_at(&self, t: Duration) -> f64 {
        let x = self.start + self.rate * t.as_secs_f64();
        match (self.min, self.max, self.at_limit) {
            (Some(min), Some(max), AtLimit::Bounce) if max > min => {
                let span = max - min;
                let y = (x - min).rem_euclid(2.0 * span);
                min + if y > span { 2.0 * span - y } else { y }
            }
            (Some(min), Some(max), AtLimit::Wrap) if max > min => {
                min + (x - min).rem_euclid(max - min)
            }
            (min, max, _) => {
                let x = min.map_or(x, |min| x.max(min));
                max.map_or(x, |max| x.min(max))
            }
        }
    }
}

impl Schedule {
    /// The cycle's length.
    pub fn period(&self) -> Duration {
        self.steps.iter().map(|step| step.duration).sum()
    }

    pub fn value_at(&self, t: Duration) -> f64 {
        let t = match self.reset_at {
            Some(reset) => t.checked_sub(reset).unwrap_or(t),
            None => t,
        };
        let period = self.period().as_nanos();
        if period == 0 {
            return self.steps.first().map_or(0.0, |step| step.value);
        }
        let mut phase = t.as_nanos() % period;
        for step in &self.steps {
            let length = step.duration.as_nanos();
            if phase < length {
                return step.value;
            }
            phase -= length;
        }
        self.steps.last().map_or(0.0, |step| step.value)
    }
}

impl Counter {
    /// `(base in raw units, seconds counted from it)` at time `t`.
    fn origin(&self, t: Duration, start_raw: f64) -> (f64, f64) {
        match self.reset_at.and_then(|reset| t.checked_sub(reset)) {
            Some(since_reset) => (0.0, since_reset.as_secs_f64()),
            None => (start_raw, t.as_secs_f64()),
        }
    }
}

impl SimPoint {
    /// The raw value the device holds `t` after the start.
    pub fn raw_at(&self, t: Duration) -> RawValue {
        match &self.dynamics {
            Dynamics::Constant(Constant::Text(text)) => RawValue::Text(text.clone()),
            Dynamics::Constant(Constant::Bool(value)) => {
                to_raw(&self.point, f64::from(u8::from(*value)))
            }
            Dynamics::Constant(Constant::Number(value)) => to_raw(&self.point, *value),
            Dynamics::Ramp(ramp) => to_raw(&self.point, ramp.value_at(t)),
            Dynamics::Schedule(schedule) => to_raw(&self.point, schedule.value_at(t)),
            Dynamics::RandomWalk(walk) => {
                to_raw(&self.point, walk.after(self.seed, walk.steps_at(t)))
            }
            Dynamics::Counter(counter) => counter_raw(&self.point, counter, t),
        }
    }

    /// What a reader publishes at `t`: the raw value scaled.
    pub fn value_at(&self, t: Duration) -> SimValue {
        published(&self.point, &self.raw_at(t))
    }
}

/// The published value of `raw` for `point` (`raw·scale + offset`).
pub fn published(point: &Point, raw: &RawValue) -> SimValue {
    #[allow(clippy::cast_precision_loss)] // as a reader decodes it
    let number = |raw: f64| SimValue::Number(raw * point.scale + point.offset);
    match raw {
        RawValue::Bool(value) => SimValue::Bool(*value),
        RawValue::Text(text) => SimValue::Text(text.clone()),
        #[allow(clippy::cast_precision_loss)]
        RawValue::Unsigned(value) => number(*value as f64),
        #[allow(clippy::cast_precision_loss)]
        RawValue::Signed(value) => number(*value as f64),
        RawValue::Float(value) => number(*value),
    }
}

/// Range of raw values of an integer type, as `i128`.
fn integer_range(value_type: ValueType) -> Option<(i128, i128)> {
    match value_type {
        ValueType::U16 => Some((0, i128::from(u16::MAX))),
        ValueType::U32 => Some((0, i128::from(u32::MAX))),
        ValueType::U64 => Some((0, i128::from(u64::MAX))),
        ValueType::I16 => Some((i128::from(i16::MIN), i128::from(i16::MAX))),
        ValueType::I32 => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
        ValueType::I64 => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
        _ => None,
    }
}

/// An integer in the type's range as a [`RawValue`].
fn integer_raw(value_type: ValueType, value: i128) -> RawValue {
    let signed = matches!(value_type, ValueType::I16 | ValueType::I32 | ValueType::I64);
    if signed {
        RawValue::Signed(i64::try_from(value).unwrap_or(if value < 0 {
            i64::MIN
        } else {
            i64::MAX
        }))
    } else {
        RawValue::Unsigned(u64::try_from(value).unwrap_or(if value < 0 { 0 } else { u64::MAX }))
    }
}

/// `⌊x⌋`, counting a product that lands a hair (a relative 1e-12) below an
/// integer in floating point as that integer: `105 × 2356.2` is 247401.
fn floor_exact(x: f64) -> f64 {
    (x + x.abs().max(1.0) * 1e-12).floor()
}

/// A float rounded to the nearest integer, saturated to `i128`.
#[allow(clippy::cast_possible_truncation)] // `as` saturates; NaN becomes 0
fn round_to_i128(value: f64) -> i128 {
    value.round() as i128
}

/// Convert a published value to the raw value `point` holds.
pub fn to_raw(point: &Point, value: f64) -> RawValue {
    let raw = if point.scale == 0.0 {
        0.0
    } else {
        (value - point.offset) / point.scale
    };
    match point.value_type {
        ValueType::Bool => RawValue::Bool(value != 0.0),
        ValueType::String => RawValue::Text(String::new()),
        ValueType::F32 => RawValue::Float(round_f32(raw)),
        ValueType::F64 => RawValue::Float(raw),
        integer => {
            let (low, high) = integer_range(integer).unwrap_or((0, 0));
            integer_raw(integer, round_to_i128(raw).clamp(low, high))
        }
    }
}

/// The nearest `f32`, widened back.
#[allow(clippy::cast_possible_truncation)] // rounding to f32 is the point
fn round_f32(value: f64) -> f64 {
    f64::from(value as f32)
}

fn counter_raw(point: &Point, counter: &Counter, t: Duration) -> RawValue {
    let scale = if point.scale == 0.0 { 1.0 } else { point.scale };
    let raw_rate = counter.rate / scale;
    let start_raw = (counter.start - point.offset) / scale;
    let (base, seconds) = counter.origin(t, start_raw);
    if let Some((low, high)) = integer_range(point.value_type) {
        #[allow(clippy::cast_possible_truncation)] // saturating, by design
        let steps = floor_exact(raw_rate * seconds) as i128;
        let total = round_to_i128(base).saturating_add(steps);
        let value = match counter.wrap {
            Some(wrap) => total.rem_euclid(i128::from(wrap) + 1),
            // Wrap as the register does: modulo the type's range.
            None => low + (total - low).rem_euclid(high - low + 1),
        };
        return integer_raw(point.value_type, value.clamp(low, high));
    }
    #[allow(clippy::cast_precision_loss)] // a float counter's rollover
    let value = match counter.wrap {
        Some(wrap) => (base + raw_rate * seconds).rem_euclid(wrap as f64 + 1.0),
        None => base + raw_rate * seconds,
    };
    match point.value_type {
        ValueType::F32 => RawValue::Float(round_f32(value)),
        ValueType::F64 => RawValue::Float(value),
        ValueType::Bool => RawValue::Bool(value != 0.0),
        _ => RawValue::Text(String::new()),
    }
}

/// Samples a [`SimPoint`] at increasing times, remembering the random walk
/// so far (the same values as [`SimPoint::raw_at`], without replaying the
/// walk from its start on every tick).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub sim: SimPoint,
    /// `(steps, value)` of the walk at the last sample.
    walked: (u64, f64),
}

impl Sampler {
    pub fn new(sim: SimPoint) -> Self {
        let start = match &sim.dynamics {
            Dynamics::RandomWalk(walk) => walk.start,
            _ => 0.0,
        };
        Self {
            sim,
            walked: (0, start),
        }
    }

    /// The raw value at `t`.
    pub fn raw_at(&mut self, t: Duration) -> RawValue {
        let Dynamics::RandomWalk(walk) = &self.sim.dynamics else {
            return self.sim.raw_at(t);
        };
        let steps = walk.steps_at(t);
        let (done, value) = self.walked;
        let value = if steps >= done {
            walk.continue_from(self.sim.seed, done, value, steps)
        } else {
            walk.after(self.sim.seed, steps)
        };
        self.walked = (steps, value);
        to_raw(&self.sim.point, value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spindle_config::model::{Area, WordOrder};

    use super::*;

    fn point(value_type: ValueType, scale: f64) -> Point {
        Point {
            name: "p".into(),
            area: Area::Holding,
            address: 0,
            value_type,
            order: WordOrder::Abcd,
            bit: None,
            length: None,
            scale,
            offset: 0.0,
            unit: None,
            counter: true,
            deadband: None,
            rollover: None,
        }
    }

    fn sim(value_type: ValueType, scale: f64, dynamics: Dynamics) -> SimPoint {
        SimPoint {
            point: point(value_type, scale),
            dynamics,
            seed: 7,
        }
    }

    fn secs(seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds)
    }

    fn counter(rate: f64, wrap: Option<u64>, reset_at: Option<u64>) -> Dynamics {
        Dynamics::Counter(Counter {
            rate,
            start: 0.0,
            wrap,
            reset_at: reset_at.map(Duration::from_secs),
        })
    }

    #[test]
    fn an_integer_counter_counts_whole_raw_steps() {
        // 0.05 m³/s on a u32 of 0.01 m³: 5 counts a second.
        let gas = sim(ValueType::U32, 0.01, counter(0.05, None, None));
        assert_eq!(gas.raw_at(secs(0.0)), RawValue::Unsigned(0));
        assert_eq!(gas.raw_at(secs(0.19)), RawValue::Unsigned(0));
        assert_eq!(gas.raw_at(secs(0.2)), RawValue::Unsigned(1));
        assert_eq!(gas.raw_at(secs(100.0)), RawValue::Unsigned(500));
        assert_eq!(gas.value_at(secs(100.0)), SimValue::Number(5.0));
    }

    #[test]
    fn a_counter_wraps_after_its_wrap_value_and_resets_once() {
        let energy = SimPoint {
            point: point(ValueType::U32, 1.0),
            dynamics: Dynamics::Counter(Counter {
                rate: 10.0,
                start: 4_294_967_200.0,
                wrap: Some(u64::from(u32::MAX)),
                reset_at: Some(Duration::from_secs(300)),
            }),
            seed: 0,
        };
        assert_eq!(energy.raw_at(secs(9.5)), RawValue::Unsigned(4_294_967_295));
        assert_eq!(energy.raw_at(secs(9.6)), RawValue::Unsigned(0));
        assert_eq!(energy.raw_at(secs(20.0)), RawValue::Unsigned(104));
        assert_eq!(energy.raw_at(secs(299.9)), RawValue::Unsigned(2_903));
        assert_eq!(energy.raw_at(secs(300.0)), RawValue::Unsigned(0));
        assert_eq!(energy.raw_at(secs(310.0)), RawValue::Unsigned(100));
    }

    #[test]
    fn a_u16_counter_without_wrap_rolls_over_at_the_type_range() {
        let seams = sim(ValueType::U16, 1.0, counter(1000.0, None, None));
        assert_eq!(seams.raw_at(secs(65.535)), RawValue::Unsigned(65_535));
        assert_eq!(seams.raw_at(secs(65.536)), RawValue::Unsigned(0));
    }

    #[test]
    fn a_float_counter_is_rounded_to_f32_and_scaled() {
        // DTSU666 with a 40× CT: the meter holds secondary kWh.
        let energy = sim(ValueType::F32, 40.0, counter(0.5, None, None));
        let RawValue::Float(raw) = energy.raw_at(secs(80.0)) else {
            panic!("not a float");
        };
        assert!((raw - 1.0).abs() < 1e-6);
        assert_eq!(energy.value_at(secs(80.0)), SimValue::Number(40.0));
    }

    #[test]
    fn a_schedule_cycles_through_its_steps_and_restarts_at_reset() {
        let run = sim(
            ValueType::U16,
            1.0,
            Dynamics::Schedule(Schedule {
                steps: vec![
                    Step {
                        value: 3.0,
                        duration: Duration::from_secs(40),
                    },
                    Step {
                        value: 1.0,
                        duration: Duration::from_secs(20),
                    },
                ],
                reset_at: Some(Duration::from_secs(110)),
            }),
        );
        let at = |s: f64| run.raw_at(secs(s));
        assert_eq!(at(0.0), RawValue::Unsigned(3));
        assert_eq!(at(39.9), RawValue::Unsigned(3));
        assert_eq!(at(40.0), RawValue::Unsigned(1));
        assert_eq!(at(60.0), RawValue::Unsigned(3));
        assert_eq!(at(105.0), RawValue::Unsigned(1));
        assert_eq!(at(110.0), RawValue::Unsigned(3), "restarted at reset_at");
        assert_eq!(at(150.0), RawValue::Unsigned(1));
    }

    #[test]
    fn a_bounded_ramp_bounces_wraps_or_holds() {
        let ramp = |at_limit| Ramp {
            start: 0.0,
            rate: 1.0,
            min: Some(0.0),
            max: Some(10.0),
            at_limit,
        };
        assert!((ramp(AtLimit::Bounce).value_at(secs(13.0)) - 7.0).abs() < 1e-9);
        assert!((ramp(AtLimit::Bounce).value_at(secs(23.0)) - 3.0).abs() < 1e-9);
        assert!((ramp(AtLimit::Wrap).value_at(secs(13.0)) - 3.0).abs() < 1e-9);
        assert!((ramp(AtLimit::Hold).value_at(secs(13.0)) - 10.0).abs() < 1e-9);
        let free = Ramp {
            min: None,
            max: None,
            ..ramp(AtLimit::Bounce)
        };
        assert!((free.value_at(secs(13.0)) - 13.0).abs() < 1e-9);
    }

    #[test]
    fn constants_convert_through_scale_and_type() {
        let volts = sim(
            ValueType::U16,
            0.1,
            Dynamics::Constant(Constant::Number(230.04)),
        );
        assert_eq!(volts.raw_at(secs(5.0)), RawValue::Unsigned(2300));
        let negative = sim(
            ValueType::U16,
            1.0,
            Dynamics::Constant(Constant::Number(-5.0)),
        );
        assert_eq!(
            negative.raw_at(secs(0.0)),
            RawValue::Unsigned(0),
            "saturated"
        );
        let flag = sim(
            ValueType::Bool,
            1.0,
            Dynamics::Constant(Constant::Bool(true)),
        );
        assert_eq!(flag.raw_at(secs(0.0)), RawValue::Bool(true));
    }

    fn walk() -> RandomWalk {
        RandomWalk {
            start: 230.0,
            step: 0.5,
            min: 220.0,
            max: 240.0,
            every: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_sampler_gives_the_same_walk_as_the_pure_function() {
        let point = sim(ValueType::F64, 1.0, Dynamics::RandomWalk(walk()));
        let mut sampler = Sampler::new(point.clone());
        for tenth in 0..600_u32 {
            let t = Duration::from_millis(u64::from(tenth) * 100);
            assert_eq!(sampler.raw_at(t), point.raw_at(t));
        }
        assert_eq!(
            sampler.raw_at(secs(3.0)),
            point.raw_at(secs(3.0)),
            "back in time"
        );
    }

    proptest! {
        #[test]
        fn a_random_walk_stays_in_bounds_and_is_reproducible(seed: u64, steps in 0_u64..2000) {
            let walk = RandomWalk { step: 3.0, ..walk() };
            let value = walk.after(seed, steps);
            prop_assert!((220.0..=240.0).contains(&value));
            prop_assert_eq!(value.to_bits(), walk.after(seed, steps).to_bits());
        }

        #[test]
        fn different_seeds_walk_differently(seed: u64) {
            prop_assert_ne!(walk().after(seed, 50).to_bits(), walk().after(seed ^ 1, 50).to_bits());
        }

        #[test]
        fn an_integer_counter_is_exact_and_rises_by_rate_times_time(
            rate_steps in 1_u32..1000,
            millis in 0_u64..10_000_000,
        ) {
            // rate in whole raw steps per second: the count is exactly ⌊rate·t⌋.
            let parts = sim(ValueType::U32, 1.0, counter(f64::from(rate_steps), None, None));
            let expected = u64::from(rate_steps) * millis / 1000;
            prop_assert_eq!(
                parts.raw_at(Duration::from_millis(millis)),
                RawValue::Unsigned(expected % (1 << 32))
            );
        }

        #[test]
        fn a_wrapping_counter_stays_within_zero_and_wrap(
            wrap in 1_u64..100_000,
            rate in 0.1_f64..10_000.0,
            seconds in 0.0_f64..100_000.0,
            reset in proptest::option::of(0_u64..100_000),
        ) {
            let point = sim(ValueType::U32, 1.0, counter(rate, Some(wrap), reset));
            let RawValue::Unsigned(raw) = point.raw_at(secs(seconds)) else {
                return Err(TestCaseError::fail("not unsigned"));
            };
            prop_assert!(raw <= wrap);
        }

        #[test]
        fn a_schedule_only_takes_its_step_values(
            values in proptest::collection::vec(0_u16..10, 1..5),
            seconds in 0.0_f64..10_000.0,
        ) {
            let steps = values
                .iter()
                .map(|v| Step { value: f64::from(*v), duration: Duration::from_secs(7) })
                .collect();
            let point = sim(ValueType::U16, 1.0, Dynamics::Schedule(Schedule { steps, reset_at: None }));
            let RawValue::Unsigned(raw) = point.raw_at(secs(seconds)) else {
                return Err(TestCaseError::fail("not unsigned"));
            };
            prop_assert!(values.iter().any(|v| u64::from(*v) == raw));
        }
    }
}
