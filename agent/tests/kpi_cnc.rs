//! Key-process CNC coverage from simulated machines whose run state and
//! mode follow known schedules: `time_ratio`'s times within one poll
//! interval per state change, `networked_ratio` lowered by a machine taken
//! offline (and the window `partial`, flagged), `no_data` while nothing was
//! polled, restarts, and the payload shape of SPEC §5.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::float_cmp
)]

use proptest::prelude::*;
use serde_json::Value;
use spindle::kpi::{KpiEngine, KpiWindowOut, Quality};
use spindle::kpi::{Raw, Sample, SampleValue};
use spindle::message::{ErrorWord, Message};
use spindle_config::model::Config;

/// 2026-11-27 08:00 Asia/Shanghai.
const T0: u64 = 1_795_737_600_000;
const MINUTE: u64 = 60_000;
/// Largest poll lateness the driver adds.
const JITTER_MS: u64 = 300;

fn config() -> Config {
    let text = r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-kpi-test"
timezone = "Asia/Shanghai"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "cnc-1"
tcp = "127.0.0.1:5020"
unit = 1
poll = "1s"

[[device.point]]
name = "run_state"
area = "holding"
address = 10
type = "u16"

[[device.point]]
name = "mode"
area = "holding"
address = 11
type = "u16"

[[device]]
name = "cnc-2"
tcp = "127.0.0.1:5021"
unit = 1
poll = "1s"

[[device.point]]
name = "spindle_on"
area = "holding"
address = 20
type = "bool"
bit = 0

[[device.point]]
name = "auto_mode"
area = "holding"
address = 20
type = "bool"
bit = 3

[[device]]
name = "weld"
tcp = "127.0.0.1:5022"
unit = 1
poll = "1s"

[[device.point]]
name = "welding"
area = "discrete"
address = 0
type = "bool"

[[equipment]]
name = "lathe"
device = "cnc-1"
process = "machining"
key_process = true
numerically_controlled = true
running = { point = "run_state", values = [3, 4] }
cnc_mode = { point = "mode", values = [1] }

[[equipment]]
name = "mill"
device = "cnc-2"
process = "machining"
key_process = true
numerically_controlled = true
running = { point = "spindle_on" }
cnc_mode = { point = "auto_mode" }

[[equipment]]
name = "press"
process = "pressing"
key_process = true
numerically_controlled = false

[[equipment]]
name = "welder"
device = "weld"
process = "welding"
key_process = true
numerically_controlled = true
running = { point = "welding" }

[[equipment]]
name = "saw"
process = "cutting"
key_process = false
numerically_controlled = false

[[kpi.cnc_coverage]]
name = "plant"
window = "1m"
processes = ["machining", "pressing"]

[[kpi.cnc_coverage]]
name = "all"
window = "1m"
"#;
    spindle_config::parse("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// A machine's known schedule: from each offset on, (running, cnc mode).
#[derive(Debug, Clone)]
struct Schedule(Vec<(u64, bool, bool)>);

impl Schedule {
    fn at(&self, t: u64) -> (bool, bool) {
        self.0
            .iter()
            .rev()
            .find(|(from, _, _)| T0 + from <= t)
            .map_or((false, false), |&(_, r, c)| (r, c))
    }

    /// Exact running and program-controlled running ms in `[start, end)`.
    fn truth(&self, start: u64, end: u64) -> (u64, u64) {
        let (mut running, mut cnc) = (0, 0);
        for (i, &(from, r, c)) in self.0.iter().enumerate() {
            let until = self.0.get(i + 1).map_or(u64::MAX, |next| T0 + next.0);
            let overlap = until.min(end).saturating_sub((T0 + from).max(start));
            if r {
                running += overlap;
                if c {
                    cnc += overlap;
                }
            }
        }
        (running, cnc)
    }

    /// State changes (of either signal) in `[from, to)`.
    fn changes(&self, from: u64, to: u64) -> u64 {
        self.0
            .windows(2)
            .filter(|pair| {
                let at = T0 + pair[1].0;
                (pair[0].1, pair[0].2) != (pair[1].1, pair[1].2) && from <= at && at < to
            })
            .count() as u64
    }
}

fn number(raw: u64) -> Sample {
    Sample {
        raw: Raw::Unsigned(raw),
        value: SampleValue::Number(raw as f64),
    }
}

fn boolean(b: bool) -> Sample {
    Sample {
        raw: Raw::Bool(b),
        value: SampleValue::Bool(b),
    }
}

struct Plant {
    lathe: Schedule,
    mill: Schedule,
    jitter: Vec<u64>,
}

impl Plant {
    fn jitter(&self, s: u64) -> u64 {
        if self.jitter.is_empty() {
            0
        } else {
            self.jitter[usize::try_from(s).unwrap() % self.jitter.len()]
        }
    }

    /// Polls every device each second in `[from, to)`; `answers(device, t)`
    /// says whether it answers; asks for due windows after each second.
    fn run(
        &self,
        engine: &mut KpiEngine,
        from: u64,
        to: u64,
        answers: impl Fn(&str, u64) -> bool,
        out: &mut Vec<KpiWindowOut>,
    ) {
        let mut s = (from - T0).div_ceil(1000);
        while T0 + s * 1000 < to {
            let t = T0 + s * 1000 + self.jitter(s);
            let (r, c) = self.lathe.at(t);
            let (run_state, mode) = (number(if r { 3 } else { 1 }), number(u64::from(c)));
            if answers("cnc-1", t) {
                engine.on_poll(
                    "cnc-1",
                    t,
                    &[("run_state", Ok(&run_state)), ("mode", Ok(&mode))],
                );
            } else {
                engine.on_poll(
                    "cnc-1",
                    t,
                    &[
                        ("run_state", Err(&ErrorWord::Timeout)),
                        ("mode", Err(&ErrorWord::Timeout)),
                    ],
                );
            }
            let t2 = t + 5;
            let (r, c) = self.mill.at(t2);
            let (spindle, auto) = (boolean(r), boolean(c));
            if answers("cnc-2", t2) {
                engine.on_poll(
                    "cnc-2",
                    t2,
                    &[("spindle_on", Ok(&spindle)), ("auto_mode", Ok(&auto))],
                );
            } else {
                engine.on_poll(
                    "cnc-2",
                    t2,
                    &[
                        ("spindle_on", Err(&ErrorWord::Timeout)),
                        ("auto_mode", Err(&ErrorWord::Timeout)),
                    ],
                );
            }
            let welding = boolean(s % 10 < 3);
            if answers("weld", t + 9) {
                engine.on_poll("weld", t + 9, &[("welding", Ok(&welding))]);
            }
            out.extend(engine.due(t + 50, true));
            s += 1;
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

fn plant_windows(out: &[KpiWindowOut]) -> Vec<&KpiWindowOut> {
    out.iter().filter(|w| w.name == "plant").collect()
}

fn schedule() -> impl Strategy<Value = Schedule> {
    proptest::collection::vec((3_u64..90, any::<bool>(), any::<bool>()), 1..25).prop_map(
        |segments| {
            let mut at = 0;
            Schedule(
                segments
                    .into_iter()
                    .map(|(len, r, c)| {
                        let from = at;
                        at += len * 1000 + len * 37 % 1000;
                        (from, r, c)
                    })
                    .collect(),
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn running_and_program_time_are_within_one_poll_interval_per_state_change(
        lathe in schedule(),
        mill in schedule(),
        jitter in proptest::collection::vec(0..JITTER_MS, 1..10),
    ) {
        let plant = Plant { lathe, mill, jitter };
        let mut engine = KpiEngine::new(&config());
        let mut out = Vec::new();
        plant.run(&mut engine, T0, T0 + 12 * MINUTE, |_, _| true, &mut out);
        let windows = plant_windows(&out);
        prop_assert!(windows.len() >= 10);
        let poll = 1000 + JITTER_MS;
        for window in windows.iter().skip(1) {
            let (start, end) = (window.window.start, window.window.end);
            let v = json(window);
            prop_assert_eq!(window.quality, Quality::Good);
            let (lr, lc) = plant.lathe.truth(start, end);
            let (mr, mc) = plant.mill.truth(start, end);
            let changes = plant.lathe.changes(start - poll, end) + plant.mill.changes(start - poll, end);
            let tolerance = (changes * poll) as f64 / 1000.0 + 1e-9;
            let running_s = v["running_s"].as_f64().unwrap();
            let cnc_running_s = v["cnc_running_s"].as_f64().unwrap();
            prop_assert!(((lr + mr) as f64 / 1000.0 - running_s).abs() <= tolerance,
                "running {} vs {} ± {}", running_s, (lr + mr) as f64 / 1000.0, tolerance);
            prop_assert!(((lc + mc) as f64 / 1000.0 - cnc_running_s).abs() <= tolerance,
                "cnc {} vs {} ± {}", cnc_running_s, (lc + mc) as f64 / 1000.0, tolerance);
            if running_s > 0.0 {
                let ratio = v["time_ratio"].as_f64().unwrap();
                prop_assert!((ratio - cnc_running_s / running_s).abs() <= 1e-12);
            } else {
                prop_assert_eq!(&v["time_ratio"], &Value::Null);
            }
        }
    }

    #[test]
    fn a_restart_in_the_middle_of_a_window_gives_the_same_windows_as_no_restart(
        lathe in schedule(),
        mill in schedule(),
        restart_s in 61_u64..500,
    ) {
        let plant = Plant { lathe, mill, jitter: vec![0, 170, 40] };
        let end = T0 + 9 * MINUTE;
        let mut straight = KpiEngine::new(&config());
        let mut expected = Vec::new();
        plant.run(&mut straight, T0, end, |_, _| true, &mut expected);

        let cut = T0 + restart_s * 1000;
        let mut before = KpiEngine::new(&config());
        let mut got = Vec::new();
        plant.run(&mut before, T0, cut, |_, _| true, &mut got);
        let bytes = before.state();
        let mut after = KpiEngine::new(&config());
        after.restore(&bytes).unwrap();
        plant.run(&mut after, cut, end, |_, _| true, &mut got);
        prop_assert_eq!(got, expected);
    }
}

fn steady_plant() -> Plant {
    Plant {
        lathe: Schedule(vec![(0, true, true), (150_000, true, false)]),
        mill: Schedule(vec![(0, true, true)]),
        jitter: vec![],
    }
}

#[test]
fn a_machine_taken_offline_lowers_networked_ratio_and_makes_its_windows_partial() {
    let plant = steady_plant();
    let mut engine = KpiEngine::new(&config());
    let mut out = Vec::new();
    let (fail, back) = (T0 + 3 * MINUTE + 20_000, T0 + 5 * MINUTE + 40_000);
    let offline = |device: &str, t: u64| !(device == "cnc-2" && (fail..back).contains(&t));
    plant.run(&mut engine, T0, fail + 2_500, offline, &mut out);
    // The third failed poll takes it offline; the next good one, online.
    engine.on_availability("cnc-2", fail + 2_005, false);
    plant.run(&mut engine, fail + 2_500, back, offline, &mut out);
    engine.on_availability("cnc-2", back + 5, true);
    plant.run(&mut engine, back, T0 + 8 * MINUTE, offline, &mut out);

    let windows = plant_windows(&out);
    for window in &windows {
        let v = json(window);
        let minute = (window.window.start - T0) / MINUTE;
        assert_eq!(v["equipment"], 3);
        assert_eq!(v["numerically_controlled"], 2);
        assert_eq!(v["count_ratio"].as_f64().unwrap(), 2.0 / 3.0);
        let flags = v["flags"].as_array().unwrap();
        match minute {
            3 | 5 => {
                assert_eq!(window.quality, Quality::Partial, "{}", body(window));
                assert_eq!(flags, &[Value::from("offline:cnc-2")]);
                assert_eq!(v["networked"], 2, "it answered in part of the window");
            }
            4 => {
                assert_eq!(window.quality, Quality::Partial);
                assert_eq!(flags, &[Value::from("offline:cnc-2")]);
                assert_eq!(v["networked"], 1);
                assert_eq!(v["networked_ratio"].as_f64().unwrap(), 1.0 / 3.0);
                // Only the lathe ran, and not under program control (from 2:30).
                assert_eq!(v["running_s"], 60);
                assert_eq!(v["cnc_running_s"], 0);
                assert_eq!(v["time_ratio"], 0);
            }
            1 | 2 | 6 => {
                assert_eq!(window.quality, Quality::Good, "{}", body(window));
                assert!(flags.is_empty());
                assert_eq!(v["networked"], 2);
                assert_eq!(v["networked_ratio"].as_f64().unwrap(), 2.0 / 3.0);
            }
            _ => {}
        }
    }
    // The mill's last state holds until its next poll, which failed: from
    // then on it counts as neither running nor stopped.
    let three = json(windows[3]);
    let lathe_and_mill = 60.0 + 20.0;
    assert!(
        (three["running_s"].as_f64().unwrap() - lathe_and_mill).abs() <= 1.0,
        "{three}"
    );
}

#[test]
fn a_window_in_which_nothing_was_polled_is_no_data_with_the_inventory_ratio_only() {
    let plant = steady_plant();
    let mut engine = KpiEngine::new(&config());
    let mut out = Vec::new();
    plant.run(&mut engine, T0, T0 + 3 * MINUTE, |_, _| true, &mut out);
    plant.run(
        &mut engine,
        T0 + 5 * MINUTE,
        T0 + 7 * MINUTE,
        |_, _| true,
        &mut out,
    );
    let windows = plant_windows(&out);
    let qualities: Vec<Quality> = windows.iter().map(|w| w.quality).collect();
    assert_eq!(qualities[3..5], [Quality::NoData, Quality::NoData]);
    let v = json(windows[3]);
    assert_eq!(v["count_ratio"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(v["networked_ratio"], Value::Null);
    assert_eq!(v["time_ratio"], Value::Null);
    assert_eq!(v["networked"], 0);
    assert_eq!(v["running_s"], 0);
    // The window the outage began in holds the states up to two polls after the last sample.
    assert_eq!(windows[2].quality, Quality::Good);
}

#[test]
fn equipment_without_a_device_counts_in_count_ratio_and_is_never_networked() {
    let plant = steady_plant();
    let mut engine = KpiEngine::new(&config());
    let mut out = Vec::new();
    plant.run(&mut engine, T0, T0 + 3 * MINUTE, |_, _| true, &mut out);
    let all: Vec<&KpiWindowOut> = out.iter().filter(|w| w.name == "all").collect();
    let v = json(all[1]);
    // lathe, mill, press, welder; the saw is not a key process.
    assert_eq!(v["equipment"], 4);
    assert_eq!(v["numerically_controlled"], 3);
    assert_eq!(v["networked"], 3);
    assert_eq!(v["count_ratio"], 0.75);
    assert_eq!(v["networked_ratio"], 0.75);
    // The welder has no cnc_mode signal: it is not in time_ratio.
    assert_eq!(v["running_s"], 120);
}

#[test]
fn a_payload_has_every_member_of_the_spec_example() {
    let plant = steady_plant();
    let mut engine = KpiEngine::new(&config());
    let mut out = Vec::new();
    plant.run(&mut engine, T0, T0 + 3 * MINUTE, |_, _| true, &mut out);
    let window = plant_windows(&out)[1];
    let v = json(window);
    for key in [
        "kind",
        "name",
        "window",
        "count_ratio",
        "networked_ratio",
        "time_ratio",
        "equipment",
        "numerically_controlled",
        "networked",
        "running_s",
        "cnc_running_s",
        "quality",
        "flags",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["kind"], "cnc_coverage");
    assert_eq!(v["name"], "plant");
    assert_eq!(v["window"]["start"], T0 + MINUTE);
    assert_eq!(v["window"]["end"], T0 + 2 * MINUTE);
    assert_eq!(v["time_ratio"], 1);
    assert_eq!(v["quality"], "good");
    assert_eq!(v["flags"], serde_json::json!([]));
}
