//! `spindle simulate` as an integrator runs it: the real binary serving a
//! config's devices over TCP and a linked pseudo-terminal, read back with
//! `spindle read`, values following their `[device.sim]` dynamics; bad sim
//! tables rejected with positions; links removed on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use spindle_hil_tests::agent::{run_spindle, spindle_bin};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(tcp_port: u16, sim_extra: &str) -> String {
    format!(
        r#"
[agent]
id = "gw"
site = "s"
data_dir = "/tmp/spindle-simulate-test"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[serial]]
name = "bus"
port = "/dev/ttyS9"
baud = 9600
parity = "none"

[[device]]
name = "gas"
serial = "bus"
unit = 5

[[device.point]]
name = "volume"
area = "holding"
address = 0
type = "u32"
scale = 0.01
counter = true

[device.sim]
points.volume = {{ counter = {{ rate = 0.5, start = 100 }} }}

[[device]]
name = "cnc"
tcp = "127.0.0.1:{tcp_port}"
unit = 1

[[device.point]]
name = "run_state"
area = "holding"
address = 10
type = "u16"

[[device.point]]
name = "parts"
area = "holding"
address = 100
type = "u32"
order = "CDAB"
counter = true

[device.sim]
points.run_state = {{ schedule = [[3, "1s"], [1, "1s"]] }}
points.parts = {{ counter = {{ rate = 20 }} }}
{sim_extra}
"#
    )
}

/// A `spindle simulate` child, killed on drop.
struct Simulator {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// When its "Simulating" line arrived.
    ready: Instant,
    /// When it was spawned (its clock started between this and `ready`).
    spawned: Instant,
}

impl Simulator {
    fn start(config: &Path, args: &[&str]) -> Simulator {
        let bin = spindle_bin();
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .arg("simulate")
            .arg("-c")
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut simulator = Simulator {
            child,
            lines,
            ready: spawned,
            spawned,
        };
        simulator.wait_for("Simulating");
        simulator.ready = Instant::now();
        simulator
    }

    fn wait_for(&mut self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?}; saw {seen:?}");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded number `spindle read` prints (the last number of its last
/// line: a DL/T 645 value is followed by its unit).
fn read_number(args: &[&str]) -> f64 {
    let out = run_spindle(args).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .last()
        .and_then(|line| {
            line.split_whitespace()
                .rev()
                .find_map(|word| word.parse().ok())
        })
        .unwrap_or_else(|| panic!("no number in {stdout}"))
}

/// Asserts `value` is what a counter at `rate` from `start` shows at some
/// time between `spawned` and now (the simulator's clock starts in between).
fn assert_counter(value: f64, start: f64, rate: f64, simulator: &Simulator, since_read: Instant) {
    let longest = since_read.duration_since(simulator.spawned).as_secs_f64();
    let shortest = simulator
        .ready
        .elapsed()
        .as_secs_f64()
        .min(longest)
        .max(0.0)
        - since_read.elapsed().as_secs_f64();
    let (low, high) = (
        start + rate * (shortest - 0.3),
        start + rate * (longest + 0.1),
    );
    assert!(
        (low..=high).contains(&value),
        "counter {value} outside {low}..={high} (rate {rate})"
    );
}

#[test]
fn simulated_counters_rise_at_their_rate_over_tcp_and_the_pty_link() {
    let _serial = spindle_hil_tests::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, config(port, "")).unwrap();
    let link = dir.path().join("rs485");
    let link_arg = link.to_str().unwrap().to_owned();
    let simulator = Simulator::start(&path, &["--pty-link", &link_arg, "--for", "60"]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let tcp = format!("127.0.0.1:{port}");
    let parts_args = [
        "read",
        "--tcp",
        &tcp,
        "--unit",
        "1",
        "--area",
        "holding",
        "--address",
        "100",
        "--count",
        "2",
        "--type",
        "u32",
        "--order",
        "CDAB",
    ];
    let volume_args = [
        "read",
        "--serial",
        &link_arg,
        "--baud",
        "9600",
        "--parity",
        "none",
        "--unit",
        "5",
        "--area",
        "holding",
        "--address",
        "0",
        "--count",
        "2",
        "--type",
        "u32",
    ];
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..2 {
        let asked = Instant::now();
        let parts = read_number(&parts_args);
        assert_counter(parts, 0.0, 20.0, &simulator, asked);
        let asked = Instant::now();
        // The volume is raw (0.01 m³): 100 m³ + 0.5 m³/s is 10000 + 50 counts/s.
        let volume = read_number(&volume_args);
        assert_counter(volume, 10_000.0, 50.0, &simulator, asked);
        std::thread::sleep(Duration::from_secs(3));
    }
    let run_state = read_number(&[
        "read",
        "--tcp",
        &tcp,
        "--unit",
        "1",
        "--area",
        "holding",
        "--address",
        "10",
        "--count",
        "1",
        "--type",
        "u16",
    ]);
    assert!(
        [1.0, 3.0]
            .iter()
            .any(|state| (run_state - state).abs() < 1e-9),
        "run_state {run_state}"
    );
}

#[test]
fn sigterm_stops_the_simulator_cleanly_and_removes_its_link() {
    let _serial = spindle_hil_tests::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, config(free_port(), "")).unwrap();
    let link = dir.path().join("rs485");
    // A stale link from an earlier run is replaced.
    std::os::unix::fs::symlink("/nonexistent", &link).unwrap();
    let mut simulator =
        Simulator::start(&path, &["--pty-link", &format!("bus={}", link.display())]);
    assert_ne!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("/nonexistent")
    );
    let status = Command::new("kill")
        .args(["-TERM", &simulator.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = simulator.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "link left behind"
    );
}

#[test]
fn a_bad_sim_table_exits_1_naming_the_position_device_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = config(
        free_port(),
        "points.part = 3\nfaults = { late_probability = 0.5 }\n",
    );
    std::fs::write(&path, &text).unwrap();
    let out = run_spindle(&["simulate", "-c", path.to_str().unwrap(), "--for", "0"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = text
        .lines()
        .position(|line| line.starts_with("points.part ="))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "bad.toml:{line}:8: device \"cnc\": sim.points.part: the device has no point \"part\"; its points: run_state, parts"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "bad.toml:{}:12: device \"cnc\": sim.faults.late_probability: `late_probability` needs `late_reply` (how late)",
            line + 1
        )),
        "{stderr}"
    );
}

#[test]
fn the_example_plant_simulator_serves_every_device() {
    let _serial = spindle_hil_tests::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/plant-sim.toml");
    let link = format!("rs485-1={}", dir.path().join("rs485-1").display());
    let out = run_spindle(&[
        "simulate",
        "-c",
        example.to_str().unwrap(),
        "--pty-link",
        &link,
        "--for",
        "0.5",
    ])
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for device in ["cnc-07", "cnc-08", "cnc-mill-03", "weld-cell-1"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("tcp 127.0.0.1:50") && l.contains(device)),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("meter-line1 (unit 1), meter-line2 (unit 2), gas-washer (unit 5)"),
        "{stdout}"
    );
}

#[test]
fn the_example_plant_runs_end_to_end_under_simulate_and_run() {
    let _serial = spindle_hil_tests::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let link = dir.path().join("rs485-1");
    let _simulator = Simulator::start(
        &examples.join("plant-sim.toml"),
        &["--pty-link", &format!("rs485-1={}", link.display())],
    );
    let broker = spindle_hil_tests::broker::Broker::start(false).unwrap();
    let sub = spindle_hil_tests::subscriber::Subscriber::start(broker.port(), "spindle/#").unwrap();
    let plant = std::fs::read_to_string(examples.join("plant.toml")).unwrap();
    let config = plant
        .replace(
            "data_dir = \"/var/lib/spindle\"",
            "data_dir = \"{data_dir}\"",
        )
        .replace(
            "url = \"mqtt://127.0.0.1:1883\"",
            &format!("url = \"{}\"", broker.url()),
        )
        .replace(
            "port = \"/tmp/spindle-rs485-1\"",
            &format!("port = \"{}\"", link.display()),
        );
    let agent = spindle_hil_tests::agent::AgentProcess::start_with_env(
        &config,
        &[("SPINDLE_MQTT_PASSWORD", "x")],
    )
    .unwrap();
    let devices = [
        "meter-line1",
        "meter-line2",
        "gas-washer",
        "cnc-07",
        "cnc-08",
        "cnc-mill-03",
        "weld-cell-1",
    ];
    let (ok, got) = sub.wait_until(Duration::from_secs(40), |m| {
        devices.iter().all(|d| {
            m.iter().any(|x| {
                x.topic.ends_with(&format!("/telemetry/{d}"))
                    && !x.json()["values"]
                        .as_object()
                        .is_none_or(serde_json::Map::is_empty)
            })
        })
    });
    let seen: Vec<&str> = devices
        .iter()
        .copied()
        .filter(|d| {
            got.iter()
                .any(|x| x.topic.ends_with(&format!("/telemetry/{d}")))
        })
        .collect();
    assert!(
        ok,
        "telemetry with values from every device of the example plant; seen {seen:?}; log:\n{}",
        agent.log()
    );
}

/// Three DL/T 645 meters (two sharing the low byte 78) and a Modbus unit on
/// one simulated bus.
const MIXED_BUS: &str = r#"
[agent]
id = "gw"
site = "s"
data_dir = "/tmp/spindle-simulate-test"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[serial]]
name = "bus"
port = "/dev/ttyS9"
baud = 9600
parity = "even"

[[device]]
name = "gas"
serial = "bus"
unit = 5

[[device.point]]
name = "volume"
area = "holding"
address = 0
type = "u32"
scale = 0.01
counter = true

[device.sim]
points.volume = { counter = { rate = 1.0, start = 500 } }

[[device]]
name = "mains"
serial = "bus"
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
points.energy = { counter = { rate = 2.0, start = 1000 } }
points.voltage = 229.8

[[device]]
name = "sub1"
serial = "bus"
protocol = "dlt645"
meter = "000099000078"

[[device.point]]
name = "energy"
di = "00010000"

[[device]]
name = "sub2"
serial = "bus"
protocol = "dlt645"
meter = "202400000001"

[[device.point]]
name = "energy"
di = "00010000"
"#;

#[test]
fn simulate_serves_dlt645_meters_beside_a_modbus_unit_on_one_pty() {
    let _serial = spindle_hil_tests::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, MIXED_BUS).unwrap();
    let link = dir.path().join("rs485");
    let link_arg = link.to_str().unwrap().to_owned();
    let simulator = Simulator::start(&path, &["--pty-link", &link_arg, "--for", "120"]);
    let serial = ["--serial", &link_arg, "--baud", "9600", "--parity", "even"];
    let energy_args: Vec<&str> = ["read"]
        .into_iter()
        .chain(serial)
        .chain(["--dlt645", "--meter", "000012345678", "--di", "00010000"])
        .collect();
    let volume_args: Vec<&str> = ["read"]
        .into_iter()
        .chain(serial)
        .chain([
            "--unit",
            "5",
            "--area",
            "holding",
            "--address",
            "0",
            "--count",
            "2",
            "--type",
            "u32",
            "--scale",
            "0.01",
        ])
        .collect();
    for _ in 0..2 {
        let asked = Instant::now();
        let energy = read_number(&energy_args);
        assert_counter(energy, 1000.0, 2.0, &simulator, asked);
        let asked = Instant::now();
        let volume = read_number(&volume_args);
        assert_counter(volume, 500.0, 1.0, &simulator, asked);
    }
    let voltage_args: Vec<&str> = ["read"]
        .into_iter()
        .chain(serial)
        .chain(["--dlt645", "--meter", "000012345678", "--di", "02010100"])
        .collect();
    assert!((read_number(&voltage_args) - 229.8).abs() < 1e-9);
    // The three meters found on the bus the Modbus unit shares.
    let scan: Vec<&str> = ["scan"]
        .into_iter()
        .chain(serial)
        .chain(["--dlt645", "--timeout", "10ms"])
        .collect();
    let out = run_spindle(&scan).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!(
        "$ spindle scan --serial LINK --baud 9600 --parity even --dlt645 --timeout 10ms\n{stderr}{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "meter 000012345678",
            "meter 000099000078",
            "meter 202400000001"
        ]
    );
}
