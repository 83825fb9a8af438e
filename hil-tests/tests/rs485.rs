//! RS-485 end to end: the real `spindle run` (and `spindle scan`) against
//! simulated devices on real pseudo-terminals with RS-485 line timing.
//! Every line fault — garbage, a bad CRC, another unit's reply, a truncated
//! frame, a reply after the timeout, silence — gives its error word and
//! takes its device offline while the healthy meter on the same bus keeps
//! its rate and its right values; a dead meter costs its neighbours less
//! than a fifth of their rate; meters with different word orders on one bus
//! decode right; an unplugged adapter is reopened, the agent never exits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::time::Duration;

use spindle_config::model::{Area, Parity, SerialBus};
use spindle_hil_tests::agent::{AgentProcess, run_spindle};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::subscriber::{Message, Subscriber};
use spindle_protocols::modbus::rtu::crc16;
use spindle_protocols::sim::{Faults, SimDevice, SimPtyServer};

const PREFIX: &str = "spindle/hil/gw-1/";

/// A bus as the simulator paces it (the port is the simulator's own).
fn line(baud: u32) -> SerialBus {
    SerialBus {
        name: "bus1".into(),
        port: String::new(),
        baud: NonZeroU32::new(baud).unwrap(),
        parity: Parity::Even,
        data_bits: 8,
        stop_bits: 1,
        turnaround: Duration::ZERO,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Config head: agent, mqtt, one serial bus on `port` at `baud` 8E1.
fn head(broker: &Broker, port: &str, baud: u32) -> String {
    format!(
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
port = "{port}"
baud = {baud}
parity = "even"
"#,
        url = broker.url()
    )
}

/// One `[[device]]` on bus1 with one u32 point `energy` (scale 0.01) at holding 100.
fn energy_meter(name: &str, unit: u8, poll: &str, timeout: &str, order: &str) -> String {
    format!(
        r#"
[[device]]
name = "{name}"
serial = "bus1"
unit = {unit}
poll = "{poll}"
timeout = "{timeout}"

[[device.point]]
name = "energy"
area = "holding"
address = 100
type = "u32"
order = "{order}"
scale = 0.01
"#
    )
}

fn topic_is(m: &Message, topic: &str) -> bool {
    m.topic == format!("{PREFIX}{topic}")
}

fn latest<'a>(messages: &'a [Message], topic: &str) -> Option<&'a Message> {
    messages.iter().rev().find(|m| topic_is(m, topic))
}

fn count(messages: &[Message], topic: &str) -> usize {
    messages.iter().filter(|m| topic_is(m, topic)).count()
}

/// A register answer frame from `unit` (function 3), CRC included.
fn answer_frame(unit: u8, words: &[u16]) -> Vec<u8> {
    let mut frame = vec![unit, 3, u8::try_from(words.len() * 2).unwrap()];
    frame.extend(words.iter().flat_map(|w| w.to_be_bytes()));
    frame.extend(crc16(&frame).to_le_bytes());
    frame
}

/// Registers 100–101 of a u32 in ABCD order.
fn set_energy(device: &SimDevice, raw: u32) {
    device.set_registers(
        Area::Holding,
        100,
        &[(raw >> 16) as u16, (raw & 0xFFFF) as u16],
    );
}

/// One meter per line fault: (name, unit, fault, the error word it gives).
fn faulty_meters() -> Vec<(&'static str, u8, Faults, &'static str)> {
    let mut bad_crc = answer_frame(3, &[0, 7]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    // (name, unit, fault, expected error word)
    vec![
        (
            "noise",
            2,
            Faults {
                garbage: Some(vec![0x00, 0xFF, 0x13, 0x37]),
                ..Faults::default()
            },
            "decode",
        ),
        (
            "bad-crc",
            3,
            Faults {
                garbage: Some(bad_crc),
                ..Faults::default()
            },
            "decode",
        ),
        (
            "wrong-unit",
            4,
            Faults {
                garbage: Some(answer_frame(9, &[0, 7])),
                ..Faults::default()
            },
            "decode",
        ),
        (
            "truncated",
            5,
            Faults {
                garbage: Some(answer_frame(5, &[0, 7])[..5].to_vec()),
                ..Faults::default()
            },
            "decode",
        ),
        (
            "late",
            6,
            Faults {
                reply_delay: Duration::from_millis(350),
                ..Faults::default()
            },
            "timeout",
        ),
        (
            "dead",
            7,
            Faults {
                down: true,
                ..Faults::default()
            },
            "timeout",
        ),
    ]
}

#[test]
fn every_line_fault_gives_its_error_word_while_the_healthy_meter_keeps_its_rate_and_values() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let good = SimDevice::new(vec![1]);
    set_energy(&good, 123_456);
    let faulty = faulty_meters();
    let mut devices = vec![good.clone()];
    for (_, unit, faults, _) in &faulty {
        let device = SimDevice::new(vec![*unit]);
        // A late reply taken for the good meter's answer would show as 9999.99.
        set_energy(&device, 999_999);
        device.set_faults(faults.clone());
        devices.push(device);
    }
    let pty = rt
        .block_on(async {
            SimPtyServer::open_timed(devices, &line(19_200), Duration::from_millis(2))
        })
        .unwrap();

    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut config = head(&broker, pty.path(), 19_200);
    config.push_str(&energy_meter("good", 1, "250ms", "200ms", "ABCD"));
    for (name, unit, _, _) in &faulty {
        config.push_str(&energy_meter(name, *unit, "250ms", "200ms", "ABCD"));
    }
    let agent = AgentProcess::start(&config).unwrap();

    let (ok, got) = sub.wait_until(Duration::from_secs(40), |m| {
        faulty.iter().all(|(name, ..)| {
            latest(m, &format!("availability/{name}"))
                .is_some_and(|x| x.json()["state"] == "offline")
        })
    });
    assert!(ok, "every faulty meter goes offline; log:\n{}", agent.log());
    for (name, _, _, word) in &faulty {
        let first = got
            .iter()
            .find(|m| topic_is(m, &format!("telemetry/{name}")))
            .unwrap()
            .json();
        assert_eq!(first["errors"]["energy"], *word, "{name}: {first}");
        let availability = latest(&got, &format!("availability/{name}"))
            .unwrap()
            .json();
        assert_eq!(availability["reason"], *word, "{name}");
    }

    // The healthy meter: ≥ 80 % of its 4/s over 10 s while the others are
    // probed, and never another meter's value.
    let before = count(&got, "telemetry/good");
    std::thread::sleep(Duration::from_secs(10)); // measuring a rate over a fixed interval
    let all = sub.messages();
    let polls = count(&all, "telemetry/good") - before;
    assert!(
        polls >= 32,
        "good got {polls} polls in 10 s at 250ms (want ≥ 80 % of 40)"
    );
    for m in all.iter().filter(|m| topic_is(m, "telemetry/good")) {
        let body = m.json();
        assert_eq!(body["values"]["energy"], 1234.56, "{body}");
    }
    assert_eq!(
        latest(&all, "availability/good").unwrap().json()["state"],
        "online"
    );
}

#[test]
fn a_dead_meter_on_a_timed_9600_bus_keeps_four_fifths_of_its_neighbours_rate() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let live: Vec<SimDevice> = (1..=4)
        .map(|unit| {
            let device = SimDevice::new(vec![unit]);
            let words: Vec<u16> = (0..10).map(|i| u16::from(unit) * 1000 + i).collect();
            device.set_registers(Area::Holding, 0, &words);
            device
        })
        .collect();
    let dead = SimDevice::new(vec![5]);
    dead.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let mut devices = live.clone();
    devices.push(dead);
    let pty = rt
        .block_on(async {
            SimPtyServer::open_timed(devices, &line(9600), Duration::from_millis(5))
        })
        .unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut config = head(&broker, pty.path(), 9600);
    for unit in 1..=5 {
        // Ten registers per poll: one 33-byte transaction, about 51 ms at 9600 8E1.
        let _ = write!(
            config,
            "\n[[device]]\nname = \"m{unit}\"\nserial = \"bus1\"\nunit = {unit}\npoll = \"500ms\"\ntimeout = \"300ms\"\n"
        );
        for r in 0..10 {
            let _ = write!(
                config,
                "\n[[device.point]]\nname = \"r{r}\"\narea = \"holding\"\naddress = {r}\ntype = \"u16\"\n"
            );
        }
    }
    let agent = AgentProcess::start(&config).unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(30), |m| {
        latest(m, "availability/m5").is_some_and(|x| x.json()["state"] == "offline")
    });
    assert!(ok, "the dead meter goes offline; log:\n{}", agent.log());

    let before: Vec<usize> = (1..=4)
        .map(|u| count(&got, &format!("telemetry/m{u}")))
        .collect();
    std::thread::sleep(Duration::from_secs(10)); // measuring a rate over a fixed interval
    let all = sub.messages();
    for unit in 1..=4_u16 {
        let topic = format!("telemetry/m{unit}");
        let polls = count(&all, &topic) - before[usize::from(unit) - 1];
        assert!(
            polls >= 16,
            "m{unit} got {polls} polls in 10 s at 500ms beside a dead meter (want ≥ 80 % of 20)"
        );
        let body = latest(&all, &topic).unwrap().json();
        for r in 0..10_u16 {
            assert_eq!(body["values"][format!("r{r}")], unit * 1000 + r, "{body}");
        }
    }
}

#[test]
fn meters_with_different_word_orders_on_one_timed_bus_all_decode_right() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let bits = 229.8_f32.to_bits();
    let (hi, lo) = ((bits >> 16) as u16, (bits & 0xFFFF) as u16);
    let energy: u32 = 0x0012_D687; // 1234567 → 12345.67 at scale 0.01
    let (ehi, elo) = ((energy >> 16) as u16, (energy & 0xFFFF) as u16);
    // (unit, order, f32 words, u32 words)
    let orders = [
        (1_u8, "ABCD", [hi, lo], [ehi, elo]),
        (2, "CDAB", [lo, hi], [elo, ehi]),
        (
            3,
            "BADC",
            [hi.swap_bytes(), lo.swap_bytes()],
            [ehi.swap_bytes(), elo.swap_bytes()],
        ),
        (
            4,
            "DCBA",
            [lo.swap_bytes(), hi.swap_bytes()],
            [elo.swap_bytes(), ehi.swap_bytes()],
        ),
    ];
    let devices: Vec<SimDevice> = orders
        .iter()
        .map(|(unit, _, voltage, energy)| {
            let device = SimDevice::new(vec![*unit]);
            device.set_registers(Area::Input, 0, voltage);
            device.set_registers(Area::Holding, 100, energy);
            device
        })
        .collect();
    let pty = rt
        .block_on(async {
            SimPtyServer::open_timed(devices, &line(9600), Duration::from_millis(5))
        })
        .unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut config = head(&broker, pty.path(), 9600);
    for (unit, order, _, _) in &orders {
        config.push_str(&energy_meter(
            &format!("meter-{unit}"),
            *unit,
            "300ms",
            "300ms",
            order,
        ));
        let _ = write!(
            config,
            "\n[[device.point]]\nname = \"voltage\"\narea = \"input\"\naddress = 0\ntype = \"f32\"\norder = \"{order}\"\n"
        );
    }
    let agent = AgentProcess::start(&config).unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(20), |m| {
        orders
            .iter()
            .all(|(unit, ..)| latest(m, &format!("telemetry/meter-{unit}")).is_some())
    });
    assert!(ok, "every meter reports; log:\n{}", agent.log());
    for (unit, order, _, _) in &orders {
        let body = latest(&got, &format!("telemetry/meter-{unit}"))
            .unwrap()
            .json();
        assert_eq!(body["errors"], serde_json::json!({}), "{order}: {body}");
        let voltage = body["values"]["voltage"].as_f64().unwrap();
        assert!((voltage - 229.8).abs() < 1e-4, "{order}: {body}");
        assert_eq!(body["values"]["energy"], 12345.67, "{order}: {body}");
    }
}

#[test]
fn an_unplugged_adapter_is_reopened_and_the_agent_never_exits() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let meter = SimDevice::new(vec![1]);
    set_energy(&meter, 100_000);
    let plug = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            SimPtyServer::open_timed(vec![meter.clone()], &line(19_200), Duration::from_millis(2))
        })
        .unwrap()
    };
    // The config names a stable path, as udev's /dev/serial/by-id links do.
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("usb-rs485");
    let pty = plug(&rt);
    std::os::unix::fs::symlink(pty.path(), &port).unwrap();

    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut config = head(&broker, &port.display().to_string(), 19_200);
    config.push_str(&energy_meter("meter", 1, "200ms", "200ms", "ABCD"));
    let mut agent = AgentProcess::start(&config).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        latest(m, "telemetry/meter").is_some_and(|x| x.json()["values"]["energy"] == 1000.0)
    });
    assert!(ok, "the meter reports; log:\n{}", agent.log());

    // Unplug: the pseudo-terminal vanishes under the open port.
    drop(pty);
    std::fs::remove_file(&port).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        latest(m, "availability/meter").is_some_and(|x| x.json()["state"] == "offline")
    });
    assert!(
        ok,
        "the meter goes offline when the adapter vanishes; log:\n{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(3)); // unplugged for a while: reopening fails into backoff

    // Plug back in (a new pseudo-terminal behind the same path).
    set_energy(&meter, 200_000);
    let pty = plug(&rt);
    std::os::unix::fs::symlink(pty.path(), &port).unwrap();
    // The availability change is published right after the poll's telemetry: wait for both.
    let (ok, got) = sub.wait_until(Duration::from_secs(60), |m| {
        latest(m, "telemetry/meter").is_some_and(|x| x.json()["values"]["energy"] == 2000.0)
            && latest(m, "availability/meter").is_some_and(|x| x.json()["state"] == "online")
    });
    if !ok {
        for m in &got {
            eprintln!(
                "received {} {}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            );
        }
    }
    assert!(
        ok,
        "the agent reopens the port and reads again; log:\n{}",
        agent.log()
    );
    assert_eq!(
        latest(&got, "availability/meter").unwrap().json()["state"],
        "online"
    );
    let words: Vec<String> = got
        .iter()
        .filter(|m| topic_is(m, "telemetry/meter"))
        .filter_map(|m| m.json()["errors"]["energy"].as_str().map(str::to_owned))
        .collect();
    assert!(
        words.iter().all(|w| w == "disconnected" || w == "timeout"),
        "unplugged polls say disconnected or timeout: {words:?}"
    );
    let status = agent.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "the agent ran through the unplugging and stops cleanly"
    );
}

#[test]
fn spindle_scan_lists_the_units_that_answer_with_what_they_said() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let two = SimDevice::new(vec![2]);
    two.set_registers(Area::Holding, 0, &[0x1234]);
    let five = SimDevice::new(vec![5]);
    five.set_faults(Faults {
        missing: vec![(Area::Holding, 0..=9)],
        ..Faults::default()
    });
    let pty = rt
        .block_on(async {
            SimPtyServer::open_timed(vec![two, five], &line(9600), Duration::from_millis(5))
        })
        .unwrap();

    let out = run_spindle(&[
        "scan",
        "--serial",
        pty.path(),
        "--baud",
        "9600",
        "--parity",
        "even",
        "--units",
        "1-8",
        "--timeout",
        "100ms",
    ])
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("unit   2:") && lines[0].contains("0x1234"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("unit   5:") && lines[1].contains("exception 2"),
        "{stdout}"
    );
    assert!(stderr.contains("Scanning 8 unit ids"), "{stderr}");
    assert!(stderr.contains("2 of 8 unit ids answered"), "{stderr}");

    let none = run_spindle(&[
        "scan",
        "--serial",
        pty.path(),
        "--baud",
        "9600",
        "--parity",
        "even",
        "--units",
        "10-12",
        "--timeout",
        "50ms",
    ])
    .unwrap();
    assert_eq!(none.status.code(), Some(2), "no unit answered: exit 2");
    assert!(none.stdout.is_empty());

    let bad = run_spindle(&[
        "scan",
        "--serial",
        pty.path(),
        "--baud",
        "9600",
        "--units",
        "0-300",
    ])
    .unwrap();
    assert_eq!(bad.status.code(), Some(1), "bad unit ids: exit 1");
    let missing = run_spindle(&[
        "scan",
        "--serial",
        "/dev/spindle-no-such-port",
        "--baud",
        "9600",
    ])
    .unwrap();
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a port that cannot be opened: exit 2"
    );
}
