//! DL/T 645-2007 meters polled by the real `spindle run`: a DL/T 645 meter
//! and a Modbus unit on one pseudo-terminal bus (no line timing) of the
//! simulated plant `spindle simulate` serves (`SimPlant`), a mosquitto the
//! test starts, and the telemetry of both devices checked value by value.
#![cfg(unix)]
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp,
    clippy::too_many_lines
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::serve_plant;
use spindle_hil_tests::subscriber::{Message, Subscriber};

const PREFIX: &str = "spindle/hil/gw-1/";

/// The plant header every test's plant file starts with (`spindle simulate`
/// takes the same file).
const PLANT_HEAD: &str = r#"
[agent]
id = "plant"
site = "hil"
data_dir = "/tmp/unused"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[serial]]
name = "bus1"
port = "/tmp/unused-bus1"
baud = 9600
parity = "even"
"#;

/// A DL/T 645 meter and a Modbus unit on one simulated bus: the meter has
/// energy and phase A voltage (no current), unit 1 has 2298 in holding
/// register 0.
const MIXED_PLANT: &str = r#"
[[device]]
name = "mains"
serial = "bus1"
protocol = "dlt645"
meter = "000012345678"

[[device.point]]
name = "energy"
di = "00010000"
counter = true

[[device.point]]
name = "voltage"
di = "02010100"

[device.sim]
points.energy = 1206.42
points.voltage = 229.8

[[device]]
name = "plc"
serial = "bus1"
unit = 1

[[device.point]]
name = "voltage"
area = "holding"
address = 0
type = "u16"

[device.sim]
points.voltage = 2298
"#;

fn latest<'a>(messages: &'a [Message], topic: &str) -> Option<&'a Message> {
    let topic = format!("{PREFIX}{topic}");
    messages.iter().rev().find(|m| m.topic == topic)
}

#[test]
fn spindle_run_polls_a_dlt645_meter_and_a_modbus_unit_on_one_bus_without_cross_talk() {
    let _serial = one_at_a_time();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (plant, buses) = serve_plant(&rt, &format!("{PLANT_HEAD}{MIXED_PLANT}")).unwrap();
    let path = buses[0].path.clone();

    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let config = format!(
        r#"
[agent]
id = "gw-1"
site = "hil"
data_dir = "{{data_dir}}"
timezone = "UTC"

[mqtt]
url = "{url}"

[buffer]
flush_interval = "10ms"

[[serial]]
name = "bus1"
port = "{path}"
baud = 9600
parity = "even"

[[device]]
name = "mains"
serial = "bus1"
protocol = "dlt645"
meter = "000012345678"
poll = "200ms"
timeout = "300ms"

[[device.point]]
name = "energy"
di = "00010000"
unit = "kWh"
counter = true

[[device.point]]
name = "voltage"
di = "02010100"
scale = 2.0

# Not in the simulated meter: it answers abnormally (no data).
[[device.point]]
name = "current"
di = "02020100"

[[device]]
name = "plc"
serial = "bus1"
unit = 1
poll = "200ms"
timeout = "300ms"

[[device.point]]
name = "voltage"
area = "holding"
address = 0
type = "u16"
"#,
        url = broker.url()
    );
    let agent = AgentProcess::start(&config).unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(20), |m| {
        latest(m, "telemetry/mains").is_some() && latest(m, "telemetry/plc").is_some()
    });
    assert!(
        ok,
        "telemetry of both devices arrives; log:\n{}",
        agent.log()
    );
    let mains = latest(&got, "telemetry/mains").unwrap().json();
    assert_eq!(mains["values"]["energy"], 1206.42, "{mains}");
    assert_eq!(mains["values"]["voltage"], 459.6, "scaled: {mains}");
    assert_eq!(
        mains["values"].as_object().unwrap().len(),
        2,
        "only the meter's own points: {mains}"
    );
    eprintln!("mains telemetry: {mains}");
    assert_eq!(
        latest(&got, "availability/mains").map(|m| m.json()["state"].clone()),
        Some(serde_json::json!("online")),
        "a meter that answers is online, abnormal answers and all"
    );
    let plc = latest(&got, "telemetry/plc").unwrap().json();
    assert_eq!(plc["values"]["voltage"], 2298.0, "{plc}");
    assert_eq!(plc["values"].as_object().unwrap().len(), 1, "{plc}");
    // Every telemetry message of either device carried its own values only.
    for m in &got {
        if m.topic == format!("{PREFIX}telemetry/mains") {
            let body = m.json();
            assert_eq!(
                body["errors"],
                serde_json::json!({"current": "abnormal:no_data"}),
                "{body}"
            );
            assert_eq!(body["values"]["voltage"], 459.6, "{body}");
        }
        if m.topic == format!("{PREFIX}telemetry/plc") {
            assert_eq!(m.json()["values"]["voltage"], 2298.0);
        }
    }
    drop(agent);
    drop(plant);
}

fn ms_since_epoch(time: SystemTime) -> u64 {
    u64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// The simulated meter's energy register (its `[device.sim]` counter): kWh
/// from `E_START` at `E_RATE` kWh/s (to the format's 0.01 kWh), so a 15 s
/// window holds 60 kWh.
const E_START: f64 = 100_000.0;
const E_RATE: f64 = 4.0;
const WINDOW_MS: u64 = 15_000;

#[test]
fn an_energy_consumption_kpi_fed_by_a_dlt645_meter_is_within_a_thousandth_of_the_truth() {
    let _serial = one_at_a_time();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (plant, buses) = serve_plant(
        &rt,
        &format!(
            "{PLANT_HEAD}{}",
            r#"
[[device]]
name = "mains"
serial = "bus1"
protocol = "dlt645"
meter = "000012345678"

[[device.point]]
name = "energy"
di = "00010000"
counter = true

[device.sim]
points.energy = { counter = { rate = 4.0, start = 100000.0 } }
"#
        ),
    )
    .unwrap();
    let path = buses[0].path.clone();
    let t0 = ms_since_epoch(plant.started_at());
    let energy = move |ms: u64| E_START + E_RATE * (ms as f64 - t0 as f64) / 1000.0;

    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let config = format!(
        r#"
[agent]
id = "gw-1"
site = "hil"
data_dir = "{{data_dir}}"
timezone = "UTC"

[mqtt]
url = "{url}"

[buffer]
flush_interval = "10ms"

[[serial]]
name = "bus1"
port = "{path}"
baud = 9600
parity = "even"

[[device]]
name = "mains"
serial = "bus1"
protocol = "dlt645"
meter = "000012345678"
poll = "500ms"
timeout = "300ms"

[[device.point]]
name = "energy"
di = "00010000"
unit = "kWh"
counter = true

[[kpi.energy_consumption]]
name = "plant"
window = "15s"
day_start = "00:00"
energy = [ {{ point = "mains.energy", carrier = "electricity" }} ]
"#,
        url = broker.url()
    );
    let agent = AgentProcess::start(&config).unwrap();
    let first_full = (t0 / WINDOW_MS + 1) * WINDOW_MS;
    let good = |m: &[Message]| -> Vec<serde_json::Value> {
        m.iter()
            .filter(|m| m.topic.ends_with("/kpi/energy_consumption/plant"))
            .map(Message::json)
            .filter(|w| w["window"]["start"].as_u64().unwrap() >= first_full)
            .filter(|w| w["quality"] == "good")
            .collect()
    };
    let (ok, got) = sub.wait_until(Duration::from_secs(75), |m| good(m).len() >= 2);
    assert!(ok, "two good windows; log:\n{}", agent.log());
    for w in good(&got) {
        let (start, end) = (
            w["window"]["start"].as_u64().unwrap(),
            w["window"]["end"].as_u64().unwrap(),
        );
        let truth = energy(end) - energy(start);
        let v = w["energy"]["electricity"]["consumption"].as_f64().unwrap();
        let rel = (v - truth).abs() / truth;
        eprintln!("window {start}–{end}: {v} kWh vs {truth} kWh ({rel:.2e})");
        assert!(rel <= 0.001, "{v} vs {truth}: {w}");
    }
    drop(agent);
    drop(plant);
}
