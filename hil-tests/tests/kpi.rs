//! KPIs end to end against ground truth: simulated meters and CNC machines
//! follow known formulas (an electricity counter with a u32 wrap and a
//! reset, a u16 gas counter that wraps, part counters, run-state and
//! auto-mode schedules); the real agent computes 10 s windows through a
//! restart, a stop and a machine going offline; every window is checked
//! against the formulas.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::too_many_lines
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::Area;
use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{CounterScript, kpi_windows, now_ms, sleep_until_ms};
use spindle_hil_tests::subscriber::{Message, Subscriber};
use spindle_protocols::sim::{SimDevice, SimTcpServer};

const WINDOW_MS: u64 = 10_000;
const POLL_S: f64 = 0.5;
/// Electricity: raw kWh × 1000 per second, starting 40 s below the u32 wrap, reset to 0 at 125 s.
const E_RATE: f64 = 1000.0;
const E_START: f64 = 4_294_967_296.0 - 40.0 * E_RATE;
const E_RESET_S: f64 = 125.0;
/// Gas: raw m³ × 100 per second, u16, wraps at about 51.8 s.
const G_RATE: f64 = 300.0;
const G_START: f64 = 50_000.0;

/// The meters' counters by formula.
const SCRIPT: CounterScript = CounterScript {
    e_rate: E_RATE,
    e_start: E_START,
    e_reset_s: E_RESET_S,
    g_rate: G_RATE,
    g_start: G_START,
};

/// Consumption in kWh between two instants by the formulas (a reset loses nothing in the truth).
fn e_kwh(a: f64, b: f64) -> f64 {
    E_RATE * (b - a) / 1000.0
}

fn g_m3(a: f64, b: f64) -> f64 {
    G_RATE * (b - a) / 100.0
}

/// cnc-1 runs (state 3) for 5 s of every 8 s, under program control for the first 4 s of every 8 s.
fn cnc1(t: f64) -> (bool, bool) {
    let p = t.rem_euclid(8.0);
    (p < 5.0, p < 4.0)
}

fn parts(t: f64) -> u32 {
    (t / 2.0).floor() as u32
}

/// Seconds in [a, b) where `f` holds, by fine sampling.
fn measure(a: f64, b: f64, f: impl Fn(f64) -> bool) -> f64 {
    let step = 0.001;
    let n = ((b - a) / step).round() as u64;
    (0..n).filter(|i| f(a + (*i as f64 + 0.5) * step)).count() as f64 * step
}

/// Number of state changes of either signal of cnc-1 in [a, b).
fn changes(a: f64, b: f64) -> usize {
    let step = 0.01;
    let n = ((b - a) / step).round() as u64;
    (1..n)
        .filter(|i| cnc1(a + (*i as f64) * step) != cnc1(a + ((*i - 1) as f64) * step))
        .count()
}

fn config(url: &str, meter: &str, gas: &str, c1: &str, c2: &str) -> String {
    format!(
        r#"
[agent]
id = "gw-1"
site = "hil"
data_dir = "{{data_dir}}"
timezone = "Asia/Shanghai"

[mqtt]
url = "{url}"

[buffer]
flush_interval = "10ms"
max_age = "1h"

[[device]]
name = "meter"
tcp = "{meter}"
unit = 1
poll = "500ms"
timeout = "300ms"
[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u32"
scale = 0.001
unit = "kWh"
counter = true

[[device]]
name = "gas"
tcp = "{gas}"
unit = 1
poll = "500ms"
timeout = "300ms"
[[device.point]]
name = "volume"
area = "holding"
address = 0
type = "u16"
scale = 0.01
unit = "m³"
counter = true

[[device]]
name = "cnc-1"
tcp = "{c1}"
unit = 1
poll = "500ms"
timeout = "300ms"
[[device.point]]
name = "parts"
area = "holding"
address = 0
type = "u32"
unit = "piece"
counter = true
[[device.point]]
name = "run_state"
area = "holding"
address = 2
type = "u16"
[[device.point]]
name = "auto"
area = "holding"
address = 3
type = "bool"
bit = 0

[[device]]
name = "cnc-2"
tcp = "{c2}"
unit = 1
poll = "500ms"
timeout = "300ms"
[[device.point]]
name = "run_state"
area = "holding"
address = 2
type = "u16"
[[device.point]]
name = "auto"
area = "holding"
address = 3
type = "bool"
bit = 0

[[equipment]]
name = "lathe-1"
device = "cnc-1"
process = "machining"
key_process = true
numerically_controlled = true
running = {{ point = "run_state", values = [3] }}
cnc_mode = {{ point = "auto" }}

[[equipment]]
name = "lathe-2"
device = "cnc-2"
process = "machining"
key_process = true
numerically_controlled = true

[[equipment]]
name = "saw-1"
process = "machining"
key_process = true
numerically_controlled = false

[[kpi.cnc_coverage]]
name = "plant"
window = "10s"

[[kpi.energy_per_output]]
name = "line1"
window = "10s"
energy = [ {{ point = "meter.energy", carrier = "electricity" }}, {{ point = "gas.volume", carrier = "natural_gas" }} ]
output = [ {{ point = "cnc-1.parts" }} ]
output_unit = "piece"
"#
    )
}

fn windows(messages: &[Message], topic_end: &str) -> BTreeMap<u64, serde_json::Value> {
    kpi_windows(messages, topic_end).unwrap()
}

#[test]
#[allow(clippy::too_many_lines)]
fn kpi_windows_match_the_simulated_plant_through_a_restart_a_stop_and_a_machine_going_offline() {
    let _serial = one_at_a_time();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (meter, gas, c1, c2) = (
        SimDevice::new(vec![1]),
        SimDevice::new(vec![1]),
        SimDevice::new(vec![1]),
        SimDevice::new(vec![1]),
    );
    c2.set_registers(Area::Holding, 2, &[3, 1]);
    let bind = |d: &SimDevice| {
        rt.block_on(SimTcpServer::bind(
            d.clone(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap()
    };
    let (s_meter, s_gas, s_c1, mut s_c2) = (bind(&meter), bind(&gas), bind(&c1), bind(&c2));

    // The plant: each device sets its registers from the formulas at the
    // moment a request arrives (exact ground truth, no update lag).
    let t0 = now_ms();
    let secs_now = move || (now_ms() - t0) as f64 / 1000.0;
    meter.set_before_read(Arc::new(move |d: &SimDevice| {
        d.set_registers(Area::Holding, 0, &SCRIPT.e_registers(secs_now()));
    }));
    gas.set_before_read(Arc::new(move |d: &SimDevice| {
        d.set_registers(Area::Holding, 0, &[SCRIPT.g_register(secs_now())]);
    }));
    c1.set_before_read(Arc::new(move |d: &SimDevice| {
        let t = secs_now();
        let p = parts(t);
        let (run, auto) = cnc1(t);
        d.set_registers(
            Area::Holding,
            0,
            &[
                (p >> 16) as u16,
                (p & 0xffff) as u16,
                if run { 3 } else { 1 },
                u16::from(auto),
            ],
        );
    }));
    let at = |s: f64| sleep_until_ms(t0 + (s * 1000.0) as u64); // following the plant's script

    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let cfg = config(
        &broker.url(),
        &s_meter.local_addr().to_string(),
        &s_gas.local_addr().to_string(),
        &s_c1.local_addr().to_string(),
        &s_c2.local_addr().to_string(),
    );
    let mut agent = AgentProcess::start(&cfg).unwrap();

    // A restart inside a window (SIGTERM, start again at once).
    at(62.3);
    let restart_ms = now_ms();
    assert!(
        agent
            .terminate(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    agent.restart().unwrap();
    // A stop long enough to miss whole windows.
    at(146.0);
    let stop_from = now_ms();
    agent.terminate(Duration::from_secs(5)).unwrap();
    at(182.0);
    let stop_to = now_ms();
    agent.restart().unwrap();
    // cnc-2 goes away for a while.
    at(192.0);
    let off_from = now_ms();
    s_c2.stop();
    at(218.0);
    let off_to = now_ms();
    rt.block_on(s_c2.restart()).unwrap();
    at(246.0);
    let end_ms = now_ms();
    let (ok, got) = sub.wait_until(Duration::from_secs(10), |m| {
        windows(m, "/kpi/energy_per_output/line1")
            .keys()
            .any(|s| s + WINDOW_MS >= end_ms - WINDOW_MS)
    });
    assert!(ok, "windows keep coming; log:\n{}", agent.log());

    // Every KPI payload matches its schema.
    for m in got.iter().filter(|m| m.topic.contains("/kpi/")) {
        let suffix = m.topic.split("/gw-1/").nth(1).unwrap();
        spindle_hil_tests::schema::validate(
            spindle_hil_tests::schema::schema_for(suffix).unwrap(),
            &m.json(),
        )
        .unwrap();
    }
    let secs = |ms: u64| (ms as f64 - t0 as f64) / 1000.0;
    let energy = windows(&got, "/kpi/energy_per_output/line1");
    let cnc = windows(&got, "/kpi/cnc_coverage/plant");
    let first_full = (t0 / WINDOW_MS + 1) * WINDOW_MS;
    let mut checked_good = 0;
    let mut spanning_restart_good = false;
    let mut worst = 0.0f64;
    for (&start, w) in energy.range(first_full..) {
        let end = start + WINDOW_MS;
        let (a, b) = (secs(start), secs(end));
        let quality = w["quality"].as_str().unwrap();
        let flags: Vec<&str> = w["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(w["window"]["end"].as_u64().unwrap(), end);
        let inside_stop = start >= stop_from && end <= stop_to;
        if inside_stop {
            assert_eq!(
                quality, "no_data",
                "window {a:.1}–{b:.1} s while the agent was stopped: {w}"
            );
            continue;
        }
        if start < stop_to && end > stop_from {
            assert_ne!(
                quality, "good",
                "window {a:.1}–{b:.1} s overlaps the stop: {w}"
            );
        }
        if a < E_RESET_S && E_RESET_S < b && quality != "no_data" {
            assert!(
                flags.contains(&"reset"),
                "the reset at {E_RESET_S} s is flagged in {a:.1}–{b:.1}: {w}"
            );
        }
        if a < 40.0 && 40.0 < b && quality == "good" {
            assert!(
                flags.contains(&"wrap"),
                "the u32 wrap at 40 s is flagged in {a:.1}–{b:.1}: {w}"
            );
        }
        if quality != "good" || flags.contains(&"reset") {
            continue;
        }
        let e_truth = e_kwh(a, b);
        let g_truth = g_m3(a, b);
        let kgce_truth = e_truth * 0.1229 + g_truth * 1.33;
        let e = w["energy"]["electricity"]["consumption"].as_f64().unwrap();
        let g = w["energy"]["natural_gas"]["consumption"].as_f64().unwrap();
        let kgce = w["kgce"].as_f64().unwrap();
        for (what, got_v, truth) in [
            ("electricity", e, e_truth),
            ("gas", g, g_truth),
            ("kgce", kgce, kgce_truth),
        ] {
            let rel = (got_v - truth).abs() / truth;
            if rel > worst {
                eprintln!(
                    "worst so far: {what} in {a:.2}–{b:.2} s: {got_v} vs {truth} ({rel:.2e}) flags {flags:?}"
                );
            }
            worst = worst.max(rel);
            assert!(
                rel <= 0.001,
                "{what} in {a:.1}–{b:.1} s: {got_v} vs {truth} ({:.4} %)",
                rel * 100.0
            );
        }
        let out_truth = f64::from(parts(b)) - f64::from(parts(a));
        assert!(
            (w["output"].as_f64().unwrap() - out_truth).abs() <= 1.0,
            "output in {a:.1}–{b:.1}: {w}"
        );
        checked_good += 1;
        if start < restart_ms && restart_ms < end {
            spanning_restart_good = true;
        }
    }
    eprintln!("energy windows checked: {checked_good}, worst relative error {worst:.2e}");
    if let Some(w) = energy.values().find(|w| w["quality"] == "good") {
        eprintln!("a good energy window: {w}");
    }
    assert!(
        checked_good >= 12,
        "at least 12 good windows checked against the formulas, got {checked_good}"
    );
    assert!(
        energy.range(first_full..).count() >= 20,
        "at least 20 windows"
    );
    assert!(
        spanning_restart_good,
        "the window spanning the restart is computed and good"
    );

    let mut offline_seen = false;
    for (&start, w) in cnc.range(first_full..) {
        let end = start + WINDOW_MS;
        let (a, b) = (secs(start), secs(end));
        if start >= stop_from && end <= stop_to {
            assert_eq!(w["quality"], "no_data", "{w}");
            continue;
        }
        assert_eq!(w["equipment"], 3);
        assert_eq!(w["numerically_controlled"], 2);
        assert!((w["count_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        // A machine's state holds two poll intervals after its last sample
        // (kpi/cnc.rs), so a stop that began less than that before the
        // window's end leaves no unknown time in it.
        let hold_ms = (2.0 * POLL_S * 1000.0) as u64;
        if start < stop_to && end > stop_from + hold_ms {
            assert_ne!(
                w["quality"], "good",
                "window {a:.1}–{b:.1} s overlaps the stop: {w}"
            );
        }
        if start >= off_from + 1000 && end <= off_to {
            assert_eq!(
                w["networked"], 1,
                "cnc-2 offline for the whole window {a:.1}–{b:.1}: {w}"
            );
            assert!((w["networked_ratio"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
            offline_seen = true;
            continue;
        }
        if w["quality"] != "good" {
            continue;
        }
        assert_eq!(w["networked"], 2, "{w}");
        // time_ratio covers lathe-1 only (the one with both signals).
        let run = measure(a, b, |t| cnc1(t).0);
        let cnc_run = measure(a, b, |t| cnc1(t).0 && cnc1(t).1);
        let tolerance = POLL_S * (changes(a, b) as f64) + 0.05;
        let running_s = w["running_s"].as_f64().unwrap();
        let cnc_running_s = w["cnc_running_s"].as_f64().unwrap();
        assert!(
            (running_s - run).abs() <= tolerance,
            "running_s {running_s} vs {run} in {a:.1}–{b:.1} (±{tolerance})"
        );
        assert!(
            (cnc_running_s - cnc_run).abs() <= tolerance,
            "cnc_running_s {cnc_running_s} vs {cnc_run} in {a:.1}–{b:.1}"
        );
    }
    assert!(offline_seen, "a window with cnc-2 offline throughout");
}
