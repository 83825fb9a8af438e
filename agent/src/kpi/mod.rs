//! The KPI engine: samples in, KPI windows out (SPEC §4, the
//! `kpi/{kind}/{name}` topic of §5).
//!
//! Pure: no tokio, no I/O, no clock reads. The runtime feeds every poll of
//! every device ([`KpiEngine::on_poll`]) and every availability change
//! ([`KpiEngine::on_availability`]), asks for the windows that are due
//! ([`KpiEngine::due`]) and appends their bodies to the outbox, and stores
//! [`KpiEngine::state`] after each poll batch and window close so that a
//! restart resumes open windows ([`KpiEngine::restore`]).
//!
//! Driving it: call `on_poll` for every poll (failed ones too: any poll
//! shows the agent was running), `on_availability` on every availability
//! change, and `due` regularly (after each poll batch, or every second) with
//! the clock's plausibility; append what `due` returns to the outbox in the
//! order given, then store `state()`. Call `restore` once, before the first
//! poll. Until the first `due` with a plausible clock, a KPI keeps at most
//! [`window::MAX_UNANCHORED_WINDOWS`] open windows; from then on windows are
//! published from the oldest one seen (or the current one).
//!
//! Owns: the per-KPI window bookkeeping ([`window`]), counter arithmetic
//! ([`counter`]), energy per output and energy consumption (`energy`), CNC
//! coverage (`cnc`), sample completeness ([`completeness`]), and which
//! device was offline when.
//!
//! Invariants:
//! - every window of every KPI is returned by `due` exactly once, in window
//!   order per KPI, after its end plus a grace of two poll intervals of the
//!   KPI's slowest input device; nothing closes while the clock is not
//!   plausible; windows missed while the agent was down come out as
//!   `no_data`, back to `buffer.max_age`;
//! - memory is bounded: per KPI, the open windows (those not yet due, a
//!   handful) with a fixed-size accumulator per input, and the last sample
//!   of each input; never the sample history;
//! - no NaN or infinity in a payload: a number that cannot be computed is
//!   `null` and the window's `quality` says why;
//! - `state()` then `restore()` on a fresh engine of the same configuration
//!   gives the same windows as no restart.
//!
//! Quality, one per window: `no_data` (nothing measured in the window),
//! `no_output` (energy: the output was measured and is zero), `partial` (a
//! boundary lacks a sample within two poll intervals on one side, an input
//! has no data, or an input device was offline in the window), else `good`.
//! Flags: `reset`, `wrap`, `offline:DEVICE` (sorted), then `outage`.
//!
//! Every window carries `sample_completeness`: per input point, good
//! samples ÷ samples expected at its device's poll rate; `min` over the
//! inputs and the points `below` the KPI's `min_completeness` (0.9 where a
//! kind has none configured; at most 16, lowest first). Only a configured
//! threshold (and `energy_consumption`'s default 0.9) makes a window
//! `partial`.

pub mod counter;
pub mod window;

mod cnc;
mod energy;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spindle_config::model::{Config, Device, Kpis};
use thiserror::Error;

use crate::message::{ErrorWord, KpiFlag, MAX_BELOW, SampleCompleteness};
pub use crate::message::{KpiKind, KpiWindow, Quality};
use cnc::CncKpi;
use energy::EnergyKpi;
pub use window::{Window, WindowGrid};

/// One decoded point value as the KPI maths takes it (the poller converts
/// the protocol's values; nothing here knows a protocol).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The value before scaling, for counter arithmetic (wraps, resets).
    pub raw: Raw,
    /// The scaled value.
    pub value: SampleValue,
}

/// A point's value before scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text,
}

/// A point's scaled value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue {
    Bool(bool),
    Number(f64),
    Text,
}

/// One point of a poll: its name and its sample or error word.
pub type PolledPoint<'a> = (&'a str, Result<&'a Sample, &'a ErrorWord>);

/// A closed window as the engine hands it out (a message).
pub type KpiWindowOut = KpiWindow;

/// Most windows one KPI hands out per [`KpiEngine::due`] call (the rest come
/// on the next call), so a long outage does not make one huge batch.
pub const MAX_WINDOWS_PER_CALL: usize = 4096;

/// Version of the [`KpiEngine::state`] format.
const STATE_VERSION: u32 = 1;

/// A stored KPI state that cannot be used.
#[derive(Debug, Error)]
pub enum KpiStateError {
    #[error("the stored KPI state is not readable: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("the stored KPI state has format version {found}; this build reads version {expected}")]
    Version { found: u32, expected: u32 },
}

/// Computes every configured KPI from polls.
#[derive(Debug)]
pub struct KpiEngine {
    energy: Vec<EnergyKpi>,
    cnc: Vec<CncKpi>,
    consumption: Vec<EnergyKpi>,
    availability: Availability,
    max_age_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct EngineState {
    version: u32,
    energy: Vec<energy::EnergyState>,
    cnc: Vec<cnc::CncState>,
    availability: Availability,
    #[serde(default)]
    consumption: Vec<energy::EnergyState>,
}

impl KpiEngine {
    /// The engine for a validated configuration.
    pub fn new(config: &Config) -> Self {
        KpiEngine::from_parts(config, &config.kpis)
    }

    /// The engine for `kpis` over the devices, equipment, carriers and agent
    /// settings of `config`.
    pub fn from_parts(config: &Config, kpis: &Kpis) -> Self {
        let max_age_ms = millis(config.buffer.max_age);
        let energy = kpis
            .energy_per_output
            .iter()
            .filter_map(|kpi| EnergyKpi::new(config, kpi))
            .collect();
        let cnc = kpis
            .cnc_coverage
            .iter()
            .filter_map(|kpi| CncKpi::new(config, kpi))
            .collect();
        let consumption = kpis
            .energy_consumption
            .iter()
            .filter_map(|kpi| EnergyKpi::consumption(config, kpi))
            .collect();
        KpiEngine {
            energy,
            cnc,
            consumption,
            availability: Availability::default(),
            max_age_ms,
        }
    }

    /// Whether no KPI is configured (the runtime can skip the engine).
    pub fn is_empty(&self) -> bool {
        self.energy.is_empty() && self.cnc.is_empty() && self.consumption.is_empty()
    }

    /// One poll of `device` whose first request was sent at `ts_ms`: every
    /// point's decoded value or error word. Points the KPIs do not use are
    /// ignored; so are polls of devices they do not use (except that any
    /// poll shows the agent was running in that window).
    pub fn on_poll(&mut self, device: &str, ts_ms: u64, points: &[PolledPoint<'_>]) {
        for kpi in self.energy.iter_mut().chain(&mut self.consumption) {
            kpi.on_poll(device, ts_ms, points);
        }
        // The device answered when a request came back at all: with data,
        // with a Modbus exception, or with registers that did not decode.
        let answered = points.iter().any(|(_, outcome)| match outcome {
            Ok(_) => true,
            Err(word) => word.answered(),
        });
        for kpi in &mut self.cnc {
            kpi.on_poll(device, ts_ms, points, answered);
        }
    }

    /// `device` went online or offline at `ts_ms` (the availability rule).
    pub fn on_availability(&mut self, device: &str, ts_ms: u64, online: bool) {
        self.availability.set(device, ts_ms, online);
    }

    /// The windows due at `now_ms`, oldest first (window order within each
    /// KPI); none while the clock is not plausible.
    pub fn due(&mut self, now_ms: u64, clock_plausible: bool) -> Vec<KpiWindowOut> {
        if !clock_plausible {
            return Vec::new();
        }
        let mut out = Vec::new();
        for kpi in self.energy.iter_mut().chain(&mut self.consumption) {
            kpi.close_due(now_ms, self.max_age_ms, &self.availability, &mut out);
        }
        for kpi in &mut self.cnc {
            kpi.close_due(now_ms, self.max_age_ms, &self.availability, &mut out);
        }
        out.sort_by_key(|w| (w.window.end, w.window.start));
        for w in &mut out {
            w.ts = now_ms;
        }
        let oldest_open = self
            .energy
            .iter()
            .chain(&self.consumption)
            .map(EnergyKpi::cursor)
            .chain(self.cnc.iter().map(CncKpi::cursor))
            .min()
            .flatten();
        if let Some(oldest) = oldest_open {
            self.availability.forget_before(oldest);
        }
        out
    }

    /// The state a restart needs, as bytes (JSON).
    pub fn state(&self) -> Vec<u8> {
        let state = EngineState {
            version: STATE_VERSION,
            energy: self.energy.iter().map(EnergyKpi::save).collect(),
            cnc: self.cnc.iter().map(CncKpi::save).collect(),
            availability: self.availability.clone(),
            consumption: self.consumption.iter().map(EnergyKpi::save).collect(),
        };
        serde_json::to_vec(&state).unwrap_or_default()
    }

    /// Resumes from [`Self::state`] bytes. A KPI is matched by name; one
    /// whose configuration changed keeps only its publishing cursor (so no
    /// window is published twice); KPIs not in the state start fresh. On an
    /// error nothing changes.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), KpiStateError> {
        let state: EngineState = serde_json::from_slice(bytes)?;
        if state.version != STATE_VERSION {
            return Err(KpiStateError::Version {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        let mut energy: BTreeMap<String, energy::EnergyState> = state
            .energy
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        for kpi in &mut self.energy {
            if let Some(saved) = energy.remove(kpi.name()) {
                kpi.load(saved);
            }
        }
        let mut cnc: BTreeMap<String, cnc::CncState> =
            state.cnc.into_iter().map(|s| (s.name.clone(), s)).collect();
        for kpi in &mut self.cnc {
            if let Some(saved) = cnc.remove(kpi.name()) {
                kpi.load(saved);
            }
        }
        let mut consumption: BTreeMap<String, energy::EnergyState> = state
            .consumption
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        for kpi in &mut self.consumption {
            if let Some(saved) = consumption.remove(kpi.name()) {
                kpi.load(saved);
            }
        }
        self.availability = state.availability;
        Ok(())
    }
}

/// When each device was offline, as far back as open windows need.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Availability {
    devices: BTreeMap<String, Offline>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Offline {
    /// Offline since then, until now.
    since: Option<u64>,
    /// Closed offline intervals `[from, to)`, oldest first.
    past: Vec<(u64, u64)>,
}

/// Most closed offline intervals kept per device; beyond it the two oldest
/// merge (which can only widen what counts as offline).
const MAX_OFFLINE_INTERVALS: usize = 64;

impl Availability {
    fn set(&mut self, device: &str, ts_ms: u64, online: bool) {
        let entry = self.devices.entry(device.to_owned()).or_default();
        match (online, entry.since) {
            (false, None) => entry.since = Some(ts_ms),
            (true, Some(from)) => {
                entry.since = None;
                entry.past.push((from, ts_ms.max(from)));
                if entry.past.len() > MAX_OFFLINE_INTERVALS
                    && let [first, second, ..] = entry.past.as_mut_slice()
                {
                    second.0 = first.0.min(second.0);
                    entry.past.remove(0);
                }
            }
            _ => {}
        }
    }

    /// Whether `device` was offline at any time inside `window`.
    fn offline_in(&self, device: &str, window: Window) -> bool {
        self.devices.get(device).is_some_and(|d| {
            d.since.is_some_and(|from| from < window.end)
                || d.past
                    .iter()
                    .any(|&(from, to)| from < window.end && to > window.start)
        })
    }

    /// The `offline:DEVICE` flags of `devices` (sorted, unique) for `window`.
    fn flags<'a>(&self, devices: impl Iterator<Item = &'a str>, window: Window) -> Vec<KpiFlag> {
        let mut flags: Vec<KpiFlag> = devices
            .filter(|d| self.offline_in(d, window))
            .map(|d| KpiFlag::Offline(d.to_owned()))
            .collect();
        flags.sort();
        flags.dedup();
        flags
    }

    fn forget_before(&mut self, ts_ms: u64) {
        for device in self.devices.values_mut() {
            device.past.retain(|&(_, to)| to > ts_ms);
        }
        self.devices
            .retain(|_, d| d.since.is_some() || !d.past.is_empty());
    }
}

/// Floats in the stored state as their bit patterns: `serde_json` does not
/// parse every float back to the same bits, and a restored window must give
/// exactly what it would have without the restart.
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)] // the signature serde's `with` expects
    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.to_bits())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        u64::deserialize(deserializer).map(f64::from_bits)
    }

    pub(super) mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        #[allow(clippy::ref_option)] // the signature serde's `with` expects
        pub(in super::super) fn serialize<S: Serializer>(
            value: &Option<f64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.serialize_some(&v.to_bits()),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<f64>, D::Error> {
            Option::<u64>::deserialize(deserializer).map(|bits| bits.map(f64::from_bits))
        }
    }
}

/// Below this share a point is listed in `sample_completeness.below` when
/// the KPI configures no `min_completeness`.
pub const DEFAULT_BELOW: f64 = spindle_config::model::DEFAULT_MIN_COMPLETENESS;

/// The `sample_completeness` of `window` from each input's label
/// (`DEVICE.POINT`), good samples recorded in the window and poll interval
/// (ms): `samples ÷ round(length ÷ poll)` (at least one expected), capped
/// at 1. `below` lists the inputs under `threshold` (else
/// [`DEFAULT_BELOW`]), lowest first then by name, at most [`MAX_BELOW`]; an
/// input listed twice (one point feeding two roles) counts once.
pub fn completeness(
    inputs: impl Iterator<Item = (String, u64, u64)>,
    window: Window,
    threshold: Option<f64>,
) -> SampleCompleteness {
    let length = window.end.saturating_sub(window.start);
    let mut ratios: BTreeMap<String, f64> = BTreeMap::new();
    for (label, samples, poll_ms) in inputs {
        let expected = (length + poll_ms / 2)
            .checked_div(poll_ms)
            .unwrap_or(1)
            .max(1);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^53
        let ratio = (samples as f64 / expected as f64).min(1.0);
        ratios.insert(label, ratio);
    }
    let min = ratios.values().copied().reduce(f64::min);
    let threshold = threshold.unwrap_or(DEFAULT_BELOW);
    let mut below: Vec<(String, f64)> =
        ratios.into_iter().filter(|(_, r)| *r < threshold).collect();
    below.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    below.truncate(MAX_BELOW);
    SampleCompleteness { min, below }
}

/// Milliseconds of a duration, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Two poll intervals of the named device (0 for an unknown device).
fn two_polls(devices: &[Device], device: &str) -> u64 {
    devices
        .iter()
        .find(|d| d.name == device)
        .map_or(0, |d| millis(d.poll).saturating_mul(2))
}

/// `a / b` when both are known, `b` is not zero and the result is finite.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 08:00 Asia/Shanghai.
    const T0: u64 = 1_795_737_600_000;

    fn config(window: &str) -> Config {
        let text = format!(
            r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-kpi-unit"
timezone = "Asia/Shanghai"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "meter"
tcp = "127.0.0.1:5020"
unit = 1
poll = "1s"

[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u32"
unit = "kWh"
counter = true

[[kpi.energy_per_output]]
name = "line1"
window = "{window}"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
output = [ {{ point = "meter.energy" }} ]
output_unit = "kWh"
"#
        );
        spindle_config::parse("unit.toml", &text).unwrap()
    }

    fn feed(engine: &mut KpiEngine, t: u64, raw: u64) {
        let decoded = Sample {
            raw: Raw::Unsigned(raw),
            #[allow(clippy::cast_precision_loss)]
            value: SampleValue::Number(raw as f64),
        };
        engine.on_poll("meter", t, &[("energy", Ok(&decoded))]);
    }

    #[test]
    fn polls_stamped_in_1970_before_ntp_do_not_turn_into_windows_once_the_clock_is_set() {
        let mut engine = KpiEngine::new(&config("1m"));
        for s in 0..30 {
            feed(&mut engine, 5_000 + s * 1000, s);
            assert!(engine.due(5_000 + s * 1000, false).is_empty());
        }
        for s in 0..130 {
            feed(&mut engine, T0 + s * 1000, 100 + s);
        }
        let out = engine.due(T0 + 130_000, true);
        assert_eq!(out.len(), 2);
        assert_eq!(out.first().map(|w| w.window.start), Some(T0));
    }

    #[test]
    fn a_kpi_whose_window_changed_keeps_only_its_cursor_across_a_restart() {
        let mut engine = KpiEngine::new(&config("1m"));
        for s in 0..200 {
            feed(&mut engine, T0 + s * 1000, s);
        }
        let published = engine.due(T0 + 200_000, true);
        assert_eq!(published.len(), 3);
        let bytes = engine.state();
        let mut engine = KpiEngine::new(&config("5m"));
        engine.restore(&bytes).unwrap();
        let out = engine.due(T0 + 20 * 60_000, true);
        // The old cursor (03:00 into the day) is inside 00:00–05:00, which
        // was published in part: go on from 05:00.
        assert_eq!(out.first().map(|w| w.window.start), Some(T0 + 5 * 60_000));
        assert!(
            out.iter()
                .all(|w| w.window.end - w.window.start == 5 * 60_000)
        );
    }

    #[test]
    fn a_state_that_does_not_parse_is_refused_and_changes_nothing() {
        let mut engine = KpiEngine::new(&config("1m"));
        feed(&mut engine, T0, 1);
        let before = engine.state();
        assert!(matches!(
            engine.restore(b"{not json"),
            Err(KpiStateError::Unreadable(_))
        ));
        let other_version = String::from_utf8(before.clone())
            .unwrap()
            .replace("\"version\":1", "\"version\":99");
        assert!(matches!(
            engine.restore(other_version.as_bytes()),
            Err(KpiStateError::Version { found: 99, .. })
        ));
        assert_eq!(engine.state(), before);
    }

    #[test]
    fn a_flapping_device_keeps_a_bounded_offline_history_that_only_widens() {
        let mut availability = Availability::default();
        for i in 0..200 {
            availability.set("meter", i * 10, false);
            availability.set("meter", i * 10 + 5, true);
        }
        let kept = availability
            .devices
            .get("meter")
            .map_or(0, |d| d.past.len());
        assert!(kept <= MAX_OFFLINE_INTERVALS);
        for i in 0..200 {
            let window = Window {
                start: i * 10,
                end: i * 10 + 1,
            };
            assert!(availability.offline_in("meter", window));
        }
    }

    #[test]
    fn sample_completeness_lists_at_most_sixteen_points_lowest_first() {
        let window = Window {
            start: 0,
            end: 900_000,
        };
        // 200 machines polled every second; machine i answered 900 − i polls.
        let inputs = (0..200_u64).map(|i| (format!("m{i:03}.run"), 900 - i, 1000));
        let c = completeness(inputs, window, None);
        assert_eq!(c.below.len(), MAX_BELOW);
        assert_eq!(c.below[0].0, "m199.run");
        assert!((c.below[0].1 - 701.0 / 900.0).abs() < 1e-12);
        assert!(c.below.windows(2).all(|p| p[0].1 <= p[1].1));
        assert_eq!(c.min, Some(c.below[0].1));
    }

    #[test]
    fn sample_completeness_is_capped_at_one_and_takes_a_configured_threshold() {
        let window = Window {
            start: 0,
            end: 15_000,
        };
        let c = completeness(
            [("a.e".to_owned(), 16, 1000), ("b.e".to_owned(), 14, 1000)].into_iter(),
            window,
            Some(0.95),
        );
        assert_eq!(c.min, Some(14.0 / 15.0));
        assert_eq!(c.below, vec![("b.e".to_owned(), 14.0 / 15.0)]);
        let none = completeness(std::iter::empty(), window, None);
        assert_eq!((none.min, none.below.len()), (None, 0));
    }
}
