//! Energy per output from simulated meters whose counters follow known
//! formulas: an electricity meter rising at a known rate through a u32 wrap
//! and a reset, a gas meter polled more slowly, and a part counter. Every
//! `good` window is checked against the formulas; flags, partial windows,
//! outages, restarts and the payload shape against SPEC §4–5.

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
use serde_json::Value;
use spindle::kpi::{KpiEngine, KpiWindowOut, Quality};
use spindle::kpi::{Raw, Sample, SampleValue};
use spindle::message::{ErrorWord, Message};
use spindle_config::model::Config;

/// 2026-11-27 08:00 Asia/Shanghai: a production day start.
const T0: u64 = 1_795_737_600_000;
const MINUTE: u64 = 60_000;

/// Electricity: 0.5 kWh per second (1.8 MW), raw counts of 0.01 kWh.
const KWH_PER_MS: f64 = 0.5 / 1000.0;
/// Gas: 0.02 m³ per second, raw counts of 0.001 m³ (a u16 with rollover 65535).
const M3_PER_MS: f64 = 0.02 / 1000.0;
/// One part every 7 s.
const MS_PER_PART: u64 = 7_000;

const ELECTRICITY_KGCE: f64 = 0.1229;
const ELECTRICITY_KGCO2: f64 = 0.5306;
const GAS_KGCE: f64 = 1.33;
const GAS_KGCO2: f64 = 2.162;

fn config(window: &str, max_age: &str) -> Config {
    let text = format!(
        r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-kpi-test"
timezone = "Asia/Shanghai"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[buffer]
max_age = "{max_age}"

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
scale = 0.01
unit = "kWh"
counter = true

[[device]]
name = "gas"
tcp = "127.0.0.1:5021"
unit = 1
poll = "5s"

[[device.point]]
name = "volume"
area = "holding"
address = 0
type = "u16"
scale = 0.001
unit = "m3"
counter = true

[[device]]
name = "cnc"
tcp = "127.0.0.1:5022"
unit = 1
poll = "1s"

[[device.point]]
name = "parts"
area = "holding"
address = 0
type = "u32"
unit = "piece"
counter = true

[[kpi.energy_per_output]]
name = "line1"
window = "{window}"
energy = [ {{ point = "meter.energy", carrier = "electricity" }},
           {{ point = "gas.volume", carrier = "natural_gas" }} ]
output = [ {{ point = "cnc.parts" }} ]
output_unit = "piece"
"#
    );
    spindle_config::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The simulated plant: raw register values at any instant.
#[derive(Debug, Clone)]
struct Plant {
    /// Raw electricity count at T0.
    energy_raw0: u64,
    /// When the electricity meter was cleared, if it is.
    energy_reset_at: Option<u64>,
    gas_raw0: u64,
}

impl Plant {
    fn energy_raw(&self, t: u64) -> u64 {
        match self.energy_reset_at {
            Some(reset) if t >= reset => ((t - reset) as f64 * KWH_PER_MS / 0.01).floor() as u64,
            _ => {
                let counts = ((t - T0) as f64 * KWH_PER_MS / 0.01).floor() as u64;
                (self.energy_raw0 + counts) % (1 << 32)
            }
        }
    }

    fn gas_raw(&self, t: u64) -> u64 {
        let counts = ((t - T0) as f64 * M3_PER_MS / 0.001).floor() as u64;
        (self.gas_raw0 + counts) % 65_536
    }

    fn parts(t: u64) -> u64 {
        (t - T0) / MS_PER_PART
    }
}

fn decoded(raw: u64, scale: f64) -> Sample {
    Sample {
        raw: Raw::Unsigned(raw),
        value: SampleValue::Number(raw as f64 * scale),
    }
}

/// What the feed does at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Run,
    /// The device does not answer (polled, every point `timeout`).
    Silent,
}

/// Polls every device on its own schedule (with up to `jitter_ms` of
/// lateness) from `from` to `to`, asking for due windows after each poll.
struct Driver {
    plant: Plant,
    jitter: Vec<u64>,
}

impl Driver {
    fn new(plant: Plant, jitter: Vec<u64>) -> Self {
        Driver { plant, jitter }
    }

    fn jitter(&self, i: u64) -> u64 {
        if self.jitter.is_empty() {
            0
        } else {
            self.jitter[(i as usize) % self.jitter.len()]
        }
    }

    fn run(
        &self,
        engine: &mut KpiEngine,
        from: u64,
        to: u64,
        meter: impl Fn(u64) -> Feed,
        out: &mut Vec<KpiWindowOut>,
    ) {
        let mut second = (from - T0).div_ceil(1000);
        while T0 + second * 1000 < to {
            let tick = T0 + second * 1000;
            let t = tick + self.jitter(second);
            if meter(t) == Feed::Run {
                let e = decoded(self.plant.energy_raw(t), 0.01);
                engine.on_poll("meter", t, &[("energy", Ok(&e))]);
            } else {
                engine.on_poll("meter", t, &[("energy", Err(&ErrorWord::Timeout))]);
            }
            let p = decoded(Plant::parts(t + 3), 1.0);
            engine.on_poll("cnc", t + 3, &[("parts", Ok(&p))]);
            if second % 5 == 0 {
                let g = decoded(self.plant.gas_raw(t + 7), 0.001);
                engine.on_poll("gas", t + 7, &[("volume", Ok(&g))]);
            }
            out.extend(engine.due(t + 50, true));
            second += 1;
        }
    }
}

/// The window's payload as published (seq 1, store "s").
fn body(window: &KpiWindowOut) -> String {
    spindle::wire::spindle::payload(&Message::<std::sync::Arc<str>>::Kpi(window.clone()), 1, "s")
}

fn json(window: &KpiWindowOut) -> Value {
    serde_json::from_str(&body(window)).unwrap_or_else(|e| panic!("{e}: {}", body(window)))
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// True kgce and kgco2 of a window with no reset in it.
fn truth(start: u64, end: u64) -> (f64, f64) {
    let ms = (end - start) as f64;
    let kwh = ms * KWH_PER_MS;
    let m3 = ms * M3_PER_MS;
    (
        kwh * ELECTRICITY_KGCE + m3 * GAS_KGCE,
        kwh * ELECTRICITY_KGCO2 + m3 * GAS_KGCO2,
    )
}

fn relative_error(got: f64, want: f64) -> f64 {
    ((got - want) / want).abs()
}

fn assert_published_once_in_order(windows: &[KpiWindowOut]) {
    for pair in windows.windows(2) {
        assert_eq!(
            pair[1].window.start, pair[0].window.end,
            "windows are contiguous, each once"
        );
    }
}

#[test]
fn good_windows_match_the_simulated_meters_within_a_thousandth_through_a_wrap_and_a_reset() {
    let config = config("1m", "7d");
    let plant = Plant {
        // Wraps after 4.5 minutes: 13 500 counts of 0.01 kWh before 2^32.
        energy_raw0: (1 << 32) - 13_500,
        energy_reset_at: Some(T0 + 17 * MINUTE + 20_500),
        gas_raw0: 60_000,
    };
    let driver = Driver::new(plant, vec![0, 130, 40, 220, 90, 10, 300]);
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    driver.run(&mut engine, T0, T0 + 30 * MINUTE, |_| Feed::Run, &mut out);

    assert!(out.len() >= 28, "{} windows", out.len());
    assert_published_once_in_order(&out);
    let mut worst: f64 = 0.0;
    let mut saw = (false, false);
    for window in &out {
        let v = json(window);
        let (start, end) = (window.window.start, window.window.end);
        assert_eq!(end - start, MINUTE);
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let has_reset = (start..end).contains(&(T0 + 17 * MINUTE + 20_500));
        let has_wrap = (start..end).contains(&(T0 + 4 * MINUTE + 30_000));
        assert_eq!(flags.contains(&"reset"), has_reset, "{}", body(window));
        // The u16 gas counter wraps too: 4.5 minutes of 20 counts a second.
        if has_wrap {
            assert!(flags.contains(&"wrap"), "{}", body(window));
            saw.0 = true;
        }
        saw.1 |= has_reset;
        if start == T0 {
            // Its start boundary has no sample before it.
            assert_eq!(window.quality, Quality::Partial);
            continue;
        }
        assert_eq!(window.quality, Quality::Good, "{}", body(window));
        let (kgce, kgco2) = truth(start, end);
        let got = number(&v["kgce"]);
        if has_reset {
            // The consumption between the last sample before the clear and
            // the clear itself is lost: at most one poll interval's worth.
            let one_poll = 1000.0 * KWH_PER_MS * ELECTRICITY_KGCE;
            assert!(
                got <= kgce + 1e-6 && got >= kgce - 1.5 * one_poll,
                "{got} vs {kgce}"
            );
            continue;
        }
        worst = worst.max(relative_error(got, kgce));
        assert!(relative_error(got, kgce) < 1e-3, "{got} vs {kgce}");
        assert!(relative_error(number(&v["kgco2"]), kgco2) < 1e-3);
        let output = number(&v["output"]);
        let true_output = ((end - T0) / MS_PER_PART - (start - T0) / MS_PER_PART) as f64;
        assert!(
            (output - true_output).abs() <= 1.0,
            "{output} vs {true_output}"
        );
        assert!(relative_error(number(&v["value"]), got / output) < 1e-12);
        assert!(
            relative_error(number(&v["co2_kg_per_unit"]), number(&v["kgco2"]) / output) < 1e-12
        );
        let electricity = &v["energy"]["electricity"];
        assert_eq!(electricity["unit"], "kWh");
        assert!(relative_error(number(&electricity["consumption"]), 30.0) < 1e-3);
        assert_eq!(v["energy"]["natural_gas"]["unit"], "m³");
        assert!(relative_error(number(&v["energy"]["natural_gas"]["consumption"]), 1.2) < 1e-3);
    }
    assert_eq!(saw, (true, true));
    eprintln!("worst relative error of a good window's kgce: {worst:e}");
    assert!(worst < 1e-3, "worst relative error {worst}");
}

#[test]
fn a_payload_has_every_member_of_the_spec_example() {
    let config = config("1m", "7d");
    let driver = Driver::new(
        Plant {
            energy_raw0: 0,
            energy_reset_at: None,
            gas_raw0: 0,
        },
        vec![],
    );
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    driver.run(&mut engine, T0, T0 + 3 * MINUTE, |_| Feed::Run, &mut out);
    let v = json(&out[1]);
    for key in [
        "kind",
        "name",
        "window",
        "value",
        "unit",
        "co2_kg_per_unit",
        "output",
        "kgce",
        "kgco2",
        "energy",
        "quality",
        "flags",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["kind"], "energy_per_output");
    assert_eq!(v["name"], "line1");
    assert_eq!(v["unit"], "kgce/piece");
    assert_eq!(v["window"]["start"], T0 + MINUTE);
    assert_eq!(v["window"]["end"], T0 + 2 * MINUTE);
    assert_eq!(v["energy"]["electricity"]["kgce_per_unit"], 0.1229);
    let electricity = &v["energy"]["electricity"];
    for key in ["consumption", "unit", "kgce", "kgco2"] {
        assert!(electricity.get(key).is_some());
    }
    assert_eq!(out[1].quality, Quality::Good);
    assert_eq!(v["flags"], serde_json::json!([]));
}

#[test]
fn a_meter_offline_for_two_minutes_makes_its_windows_partial_and_flagged_with_no_energy_inside() {
    let config = config("1m", "7d");
    let driver = Driver::new(
        Plant {
            energy_raw0: 5_000,
            energy_reset_at: None,
            gas_raw0: 0,
        },
        vec![],
    );
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    let (down, up) = (T0 + 3 * MINUTE + 30_000, T0 + 6 * MINUTE + 30_000);
    driver.run(&mut engine, T0, down, |_| Feed::Run, &mut out);
    engine.on_availability("meter", down + 2_000, false);
    driver.run(&mut engine, down, up, |_| Feed::Silent, &mut out);
    engine.on_availability("meter", up, true);
    driver.run(&mut engine, up, T0 + 10 * MINUTE, |_| Feed::Run, &mut out);
    assert_published_once_in_order(&out);
    for window in &out {
        let v = json(window);
        let minute = (window.window.start - T0) / MINUTE;
        let flagged = v["flags"]
            .as_array()
            .unwrap()
            .contains(&Value::from("offline:meter"));
        match minute {
            3..=6 => {
                assert_eq!(window.quality, Quality::Partial, "{}", body(window));
                assert!(flagged, "{}", body(window));
            }
            1 | 2 | 7..=9 => {
                assert_eq!(window.quality, Quality::Good, "{}", body(window));
                assert!(!flagged);
            }
            _ => {}
        }
        if (4..=5).contains(&minute) {
            // Nothing of the meter inside: its carrier and the totals are unknown.
            assert_eq!(v["energy"]["electricity"]["consumption"], Value::Null);
            assert_eq!(v["kgce"], Value::Null);
            assert_eq!(v["value"], Value::Null);
            assert!(number(&v["output"]) > 0.0);
        }
    }
}

#[test]
fn a_window_without_output_has_a_null_value_and_quality_no_output() {
    let config = config("1m", "7d");
    let plant = Plant {
        energy_raw0: 0,
        energy_reset_at: None,
        gas_raw0: 0,
    };
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    for s in 0..200_u64 {
        let t = T0 + s * 1000;
        let e = decoded(plant.energy_raw(t), 0.01);
        engine.on_poll("meter", t, &[("energy", Ok(&e))]);
        let p = decoded(42, 1.0);
        engine.on_poll("cnc", t, &[("parts", Ok(&p))]);
        let g = decoded(plant.gas_raw(t), 0.001);
        engine.on_poll("gas", t, &[("volume", Ok(&g))]);
        out.extend(engine.due(t, true));
    }
    let v = json(&out[1]);
    assert_eq!(out[1].quality, Quality::NoOutput);
    assert_eq!(v["value"], Value::Null);
    assert_eq!(v["co2_kg_per_unit"], Value::Null);
    assert_eq!(v["output"], 0);
    assert!(number(&v["kgce"]) > 0.0);
}

#[test]
fn windows_missed_while_the_agent_was_down_come_out_as_no_data_back_to_max_age() {
    let config = config("15m", "1h");
    let driver = Driver::new(
        Plant {
            energy_raw0: 0,
            energy_reset_at: None,
            gas_raw0: 0,
        },
        vec![],
    );
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    driver.run(&mut engine, T0, T0 + 40 * MINUTE, |_| Feed::Run, &mut out);
    let saved = engine.state();
    // Down for three hours; max_age is one hour.
    let back = T0 + 220 * MINUTE;
    let mut engine = KpiEngine::new(&config);
    engine.restore(&saved).unwrap();
    driver.run(
        &mut engine,
        back,
        back + 40 * MINUTE,
        |_| Feed::Run,
        &mut out,
    );
    assert_eq!(out[0].window.start, T0);
    assert_eq!(out[1].window.start, T0 + 15 * MINUTE);
    // The window open at shutdown is older than max_age by now: skipped, like
    // everything until the window holding `back − max_age`.
    let resumed = &out[2..];
    assert_eq!(resumed[0].window.start, T0 + 150 * MINUTE);
    assert_published_once_in_order(resumed);
    for window in resumed {
        let v = json(window);
        if window.window.end <= back {
            assert_eq!(window.quality, Quality::NoData, "{}", body(window));
            assert_eq!(v["value"], Value::Null);
            assert_eq!(v["kgce"], Value::Null);
            assert_eq!(v["output"], Value::Null);
        }
    }
    assert!(resumed.iter().any(|w| w.quality == Quality::Good));
}

#[test]
fn the_window_open_at_shutdown_closes_after_a_restart_with_what_it_had() {
    let config = config("15m", "1h");
    let driver = Driver::new(
        Plant {
            energy_raw0: 0,
            energy_reset_at: None,
            gas_raw0: 0,
        },
        vec![],
    );
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    driver.run(&mut engine, T0, T0 + 40 * MINUTE, |_| Feed::Run, &mut out);
    let saved = engine.state();
    let back = T0 + 70 * MINUTE;
    let mut engine = KpiEngine::new(&config);
    engine.restore(&saved).unwrap();
    driver.run(
        &mut engine,
        back,
        back + 30 * MINUTE,
        |_| Feed::Run,
        &mut out,
    );
    assert_published_once_in_order(&out);
    let qualities: Vec<Quality> = out.iter().map(|w| w.quality).collect();
    assert_eq!(
        qualities,
        [
            Quality::Partial, // started at its start, no sample before
            Quality::Good,
            Quality::Partial, // cut by the shutdown at 40 min
            Quality::NoData,  // 45–60: the agent was down
            Quality::Partial, // 60–75: restarted at 70
            Quality::Good,
        ]
    );
    // 30–45 holds the ten minutes measured before the shutdown, and the
    // interpolation across the outage up to its end (the first sample after
    // the restart came before the window closed): the meter ran on, so that
    // is the whole quarter hour here.
    let v = json(&out[2]);
    let kwh = number(&v["energy"]["electricity"]["consumption"]);
    assert!(
        relative_error(kwh, 15.0 * 60_000.0 * KWH_PER_MS) < 2e-3,
        "{kwh}"
    );
}

#[test]
fn no_window_closes_while_the_clock_is_not_plausible() {
    let config = config("1m", "7d");
    let mut engine = KpiEngine::new(&config);
    let e = decoded(1, 0.01);
    engine.on_poll("meter", T0, &[("energy", Ok(&e))]);
    assert!(engine.due(T0 + 10 * MINUTE, false).is_empty());
    assert_eq!(engine.due(T0 + 10 * MINUTE + 10_000, true).len(), 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_restart_in_the_middle_of_a_window_gives_the_same_windows_as_no_restart(
        restart_s in 61_u64..600,
        jitter in proptest::collection::vec(0_u64..400, 1..20),
        energy_raw0 in (1_u64 << 32) - 40_000..(1_u64 << 32),
    ) {
        let config = config("1m", "7d");
        let plant = Plant { energy_raw0, energy_reset_at: Some(T0 + 7 * MINUTE + 3_000), gas_raw0: 65_000 };
        let driver = Driver::new(plant, jitter);
        let end = T0 + 10 * MINUTE;

        let mut straight = KpiEngine::new(&config);
        let mut expected = Vec::new();
        driver.run(&mut straight, T0, end, |_| Feed::Run, &mut expected);

        let mut before = KpiEngine::new(&config);
        let mut got = Vec::new();
        let cut = T0 + restart_s * 1000;
        driver.run(&mut before, T0, cut, |_| Feed::Run, &mut got);
        let bytes = before.state();
        drop(before);
        let mut after = KpiEngine::new(&config);
        after.restore(&bytes).unwrap();
        driver.run(&mut after, cut, end, |_| Feed::Run, &mut got);

        prop_assert_eq!(got, expected);
    }

    #[test]
    fn consumption_over_consecutive_windows_adds_up_to_the_meters_total(
        jitter in proptest::collection::vec(0_u64..900, 1..30),
        energy_raw0 in 0_u64..(1_u64 << 32),
    ) {
        // Whatever the poll jitter and wherever the wrap, the interpolated
        // boundaries are shared by neighbouring windows, so the windows'
        // consumptions telescope to the counter's rise between two boundaries.
        let config = config("1m", "7d");
        let plant = Plant { energy_raw0, energy_reset_at: None, gas_raw0: 0 };
        let driver = Driver::new(plant, jitter);
        let mut engine = KpiEngine::new(&config);
        let mut out = Vec::new();
        driver.run(&mut engine, T0, T0 + 12 * MINUTE, |_| Feed::Run, &mut out);
        let inner: Vec<&KpiWindowOut> = out.iter().filter(|w| w.window.start > T0).collect();
        prop_assert!(inner.len() >= 10);
        let total: f64 = inner
            .iter()
            .map(|w| number(&json(w)["energy"]["electricity"]["consumption"]))
            .sum();
        let span = (inner.last().unwrap().window.end - inner[0].window.start) as f64;
        prop_assert!(relative_error(total, span * KWH_PER_MS) < 1e-4, "{} vs {}", total, span * KWH_PER_MS);
    }
}
