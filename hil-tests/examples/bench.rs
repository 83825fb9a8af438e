//! End-to-end benchmark of the real agent: 20 simulated Modbus TCP devices
//! of 50 u16 holding registers each (one merged read per poll), a mosquitto
//! started here, the release `spindle run` with its durable outbox (`QoS` 1,
//! default `[buffer]`, `report = "always"`), and a lean subscriber that
//! counts the points delivered (members of each telemetry message's
//! `values`) and the end-to-end latency (receive time − payload `ts`, the
//! time the poll's first request was sent).
//!
//! During a steady-state window after a warm-up it samples the agent
//! process's CPU time (`/proc/PID/stat` utime + stime) and resident memory
//! (`/proc/PID/status` `VmRSS`, peak and `VmHWM`).
//!
//! Scenarios: `paced` (poll = 1 s) and `flat-out` (poll = 1 ms: every device
//! is polled as fast as it answers; the missed ticks are overruns).
//!
//! `cargo build --release -p spindle && cargo run --release -p spindle-hil-tests --example bench -- [--scenario paced|flat-out] [--seconds N] [--warmup N]`
//!
//! Without `--scenario` both run. The agent logs at `SPINDLE_TEST_LOG`
//! (default `info`).
//!
//! `--independent` swaps both measuring sides for programs that share no code
//! with spindle (`hil-tests/independent/`, compiled here with gcc against
//! Debian's `libmodbus-dev` and `libmosquitto-dev`): one libmodbus process
//! serving all 20 endpoints, as protocol converters do, and a libmosquitto
//! subscriber. `--plant sim|libmodbus` and `--subscriber rumqttc|libmosquitto`
//! choose each side alone; `--broker-nodelay` sets mosquitto's
//! `set_tcp_nodelay true`; `--http off` turns the agent's HTTP server off
//! (on by default, as in the product; nobody connects). The report gives the CPU time of the plant and the
//! subscriber beside the agent's, to show they are not the bottleneck.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use spindle_config::model::Area;
use spindle_hil_tests::agent::{AgentProcess, spindle_bin};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::plant::agent_toml;
use spindle_protocols::sim::{SimDevice, SimTcpServer};

type Res<T> = Result<T, Box<dyn Error>>;

const DEVICES: usize = 20;
const POINTS: u16 = 50;
const TOPIC_PREFIX: &str = "spindle/hil/gw-1/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Paced,
    FlatOut,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Paced => "paced",
            Scenario::FlatOut => "flat-out",
        }
    }

    fn poll(self) -> &'static str {
        match self {
            Scenario::Paced => "1s",
            Scenario::FlatOut => "1ms",
        }
    }

    fn poll_interval(self) -> Duration {
        match self {
            Scenario::Paced => Duration::from_secs(1),
            Scenario::FlatOut => Duration::from_millis(1),
        }
    }
}

/// Which program serves the Modbus devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlantKind {
    /// spindle's own simulator, in this process.
    Sim,
    /// `hil-tests/independent/plant.c` on libmodbus, its own process.
    Libmodbus,
}

/// Which program counts what arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscriberKind {
    /// A rumqttc client in this process.
    Rumqttc,
    /// `hil-tests/independent/subscriber.c` on libmosquitto, its own process.
    Libmosquitto,
}

#[derive(Debug)]
struct Args {
    scenarios: Vec<Scenario>,
    seconds: u64,
    warmup: u64,
    plant: PlantKind,
    subscriber: SubscriberKind,
    broker_nodelay: bool,
    /// `QoS` of the libmosquitto subscriber's subscriptions.
    subscriber_qos: u8,
    /// The agent's HTTP server (`[http] enabled`, on by default; nobody
    /// connects to it here).
    http: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        scenarios: vec![Scenario::Paced, Scenario::FlatOut],
        seconds: 30,
        warmup: 5,
        plant: PlantKind::Sim,
        subscriber: SubscriberKind::Rumqttc,
        broker_nodelay: false,
        subscriber_qos: 1,
        http: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--scenario" => {
                args.scenarios = match value()?.as_str() {
                    "paced" => vec![Scenario::Paced],
                    "flat-out" => vec![Scenario::FlatOut],
                    "both" => vec![Scenario::Paced, Scenario::FlatOut],
                    other => return Err(format!("unknown scenario {other:?}").into()),
                };
            }
            "--seconds" => args.seconds = value()?.parse()?,
            "--warmup" => args.warmup = value()?.parse()?,
            "--plant" => {
                args.plant = match value()?.as_str() {
                    "sim" => PlantKind::Sim,
                    "libmodbus" => PlantKind::Libmodbus,
                    other => return Err(format!("unknown plant {other:?}").into()),
                };
            }
            "--subscriber" => {
                args.subscriber = match value()?.as_str() {
                    "rumqttc" => SubscriberKind::Rumqttc,
                    "libmosquitto" => SubscriberKind::Libmosquitto,
                    other => return Err(format!("unknown subscriber {other:?}").into()),
                };
            }
            "--independent" => {
                args.plant = PlantKind::Libmodbus;
                args.subscriber = SubscriberKind::Libmosquitto;
            }
            "--broker-nodelay" => args.broker_nodelay = true,
            "--subscriber-qos" => args.subscriber_qos = value()?.parse()?,
            "--http" => {
                args.http = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--http on|off, not {other:?}").into()),
                };
            }
            "-h" | "--help" => {
                println!(
                    "bench [--scenario paced|flat-out|both] [--seconds N (window, 30)] [--warmup N (5)] \
                     [--independent | --plant sim|libmodbus --subscriber rumqttc|libmosquitto] [--broker-nodelay] [--subscriber-qos 0|1] [--http on|off]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.seconds == 0 {
        return Err("--seconds must be at least 1".into());
    }
    Ok(args)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let bin = release_spindle()?;
    println!("agent binary: {}", bin.display());
    println!(
        "setup: {DEVICES} TCP devices x {POINTS} u16 points, QoS 1, durable outbox (default [buffer]), report = \"always\""
    );
    println!(
        "plant: {:?}, subscriber: {:?} (QoS {} if libmosquitto), mosquitto set_tcp_nodelay: {}, agent's HTTP server: {}",
        args.plant,
        args.subscriber,
        args.subscriber_qos,
        args.broker_nodelay,
        if args.http { "on, no client" } else { "off" }
    );
    for scenario in &args.scenarios {
        let report = run(*scenario, &args)?;
        print!("{report}");
    }
    Ok(())
}

/// The release `spindle` binary, refusing a missing or stale one (older
/// than a source file of the crates it is built from). It is not built from
/// here: a `cargo build` nested in `cargo run` sees cargo's run-time
/// environment and rebuilds what the outer build just built.
fn release_spindle() -> Res<PathBuf> {
    // From target/release/examples/bench, `spindle_bin` looks in target/release/.
    let bin = spindle_bin();
    let in_release = bin
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|name| name == "release");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest_source = ["agent/src", "protocols/src", "config/src"]
        .iter()
        .filter_map(|dir| newest_mtime(&workspace.join(dir)))
        .max();
    match built {
        Ok(built) if in_release && newest_source.is_none_or(|s| s <= built) => Ok(bin),
        _ => Err(format!(
            "{} is missing, stale or not a release build: run `cargo build --release -p spindle` \
             first, and this bench with --release",
            bin.display()
        )
        .into()),
    }
}

/// The newest modification time of a file under `dir`.
fn newest_mtime(dir: &std::path::Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// The Modbus devices: spindle's simulator on its own tokio runtime with one
/// worker (like the tests'), or the independent libmodbus process.
enum Plant {
    Sim {
        servers: Vec<SimTcpServer>,
        /// Serves the devices; dropped after them.
        _runtime: tokio::runtime::Runtime,
    },
    Libmodbus {
        child: Child,
        addrs: Vec<String>,
    },
}

impl Plant {
    fn start(kind: PlantKind) -> Res<Plant> {
        match kind {
            PlantKind::Sim => Self::start_sim(),
            PlantKind::Libmodbus => Self::start_libmodbus(),
        }
    }

    fn start_sim() -> Res<Plant> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut servers = Vec::with_capacity(DEVICES);
        for i in 0..DEVICES {
            let device = SimDevice::new(vec![1]);
            let base = u16::try_from(i)? * 100;
            let values: Vec<u16> = (0..POINTS).map(|r| base + r).collect();
            device.set_registers(Area::Holding, 0, &values);
            servers.push(runtime.block_on(SimTcpServer::bind(device, ([127, 0, 0, 1], 0).into()))?);
        }
        Ok(Plant::Sim {
            servers,
            _runtime: runtime,
        })
    }

    /// Starts `plant.c` and reads the port of each endpoint it prints.
    fn start_libmodbus() -> Res<Plant> {
        let bin = compile_independent("plant.c", &["-lmodbus"], &["libmodbus"])?;
        let mut child = Command::new(bin)
            .args([DEVICES.to_string(), POINTS.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the plant")?;
        let mut addrs = Vec::with_capacity(DEVICES);
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            if line == "ready" {
                break;
            }
            let port = line
                .strip_prefix("port ")
                .ok_or("unexpected plant output")?;
            addrs.push(format!("127.0.0.1:{port}"));
        }
        if addrs.len() != DEVICES {
            let _ = child.kill();
            return Err("the libmodbus plant did not start".into());
        }
        Ok(Plant::Libmodbus { child, addrs })
    }

    fn addrs(&self) -> Vec<String> {
        match self {
            Plant::Sim { servers, .. } => {
                servers.iter().map(|s| s.local_addr().to_string()).collect()
            }
            Plant::Libmodbus { addrs, .. } => addrs.clone(),
        }
    }

    fn devices_toml(&self, poll: &str) -> String {
        let mut out = String::new();
        for (i, addr) in self.addrs().iter().enumerate() {
            let _ = write!(
                out,
                "\n[[device]]\nname = \"dev{i}\"\ntcp = \"{addr}\"\nunit = 1\npoll = \"{poll}\"\n\
                 timeout = \"500ms\"\nreport = \"always\"\n",
            );
            for r in 0..POINTS {
                let _ = write!(
                    out,
                    "\n[[device.point]]\nname = \"r{r}\"\narea = \"holding\"\naddress = {r}\ntype = \"u16\"\n"
                );
            }
        }
        out
    }

    /// Requests the devices received since the last call (the simulator
    /// records each one; clearing keeps its memory flat). `None` for the
    /// libmodbus plant, which does not count.
    fn take_requests(&self) -> Option<usize> {
        match self {
            Plant::Sim { servers, .. } => Some(
                servers
                    .iter()
                    .map(|s| {
                        let n = s.device().received().len();
                        s.device().clear_received();
                        n
                    })
                    .sum(),
            ),
            Plant::Libmodbus { .. } => None,
        }
    }

    /// The plant's own process, when it has one.
    fn pid(&self) -> Option<u32> {
        match self {
            Plant::Sim { .. } => None,
            Plant::Libmodbus { child, .. } => Some(child.id()),
        }
    }
}

impl Drop for Plant {
    fn drop(&mut self) {
        match self {
            Plant::Sim { servers, .. } => {
                for server in servers {
                    server.stop();
                }
            }
            Plant::Libmodbus { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Compiles `hil-tests/independent/<source>` with gcc into the target
/// directory (once per source change) and returns the program's path.
fn compile_independent(source: &str, libs: &[&str], packages: &[&str]) -> Res<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("independent");
    let src = dir.join(source);
    let out_dir = spindle_bin()
        .parent()
        .ok_or("no target directory")?
        .join("independent");
    std::fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(source.trim_end_matches(".c"));
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(&src)
        .args(libs)
        .status()
        .map_err(|e| format!("gcc: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cannot compile {}: install gcc and {} (apt-get install {})",
            src.display(),
            packages.join(", "),
            packages
                .iter()
                .map(|p| format!("{p}-dev"))
                .collect::<Vec<_>>()
                .join(" ")
        )
        .into());
    }
    Ok(out)
}

/// What the subscriber counted while recording.
#[derive(Debug, Default)]
struct Counts {
    recording: bool,
    first_telemetry: bool,
    messages: u64,
    points: u64,
    /// End-to-end latency of each message, microseconds.
    latencies_us: Vec<u64>,
    /// `overruns` summed over devices from the latest `health` message.
    health_overruns: Option<u64>,
}

impl Counts {
    /// One telemetry message while recording.
    fn record(&mut self, received_us: u64, ts_ms: Option<u64>, points: u64) {
        if !self.recording {
            return;
        }
        self.messages += 1;
        self.points += points;
        if let Some(ts_ms) = ts_ms {
            self.latencies_us
                .push(received_us.saturating_sub(ts_ms.saturating_mul(1000)));
        }
    }
}

/// A lean `QoS` 1 subscriber that counts instead of recording.
struct Counter {
    counts: Arc<Mutex<Counts>>,
    side: CounterSide,
    thread: Option<JoinHandle<()>>,
}

enum CounterSide {
    Rumqttc(Client),
    /// The libmosquitto subscriber, writing one line per message.
    Libmosquitto(Child),
}

impl Counter {
    fn start(kind: SubscriberKind, port: u16, qos: u8) -> Res<Counter> {
        match kind {
            SubscriberKind::Rumqttc => Self::start_rumqttc(port),
            SubscriberKind::Libmosquitto => Self::start_libmosquitto(port, qos),
        }
    }

    fn start_rumqttc(port: u16) -> Res<Counter> {
        let mut opts = MqttOptions::new(format!("bench-{}", std::process::id()), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(opts, 64);
        client.subscribe(format!("{TOPIC_PREFIX}telemetry/+"), QoS::AtLeastOnce)?;
        client.subscribe(format!("{TOPIC_PREFIX}health"), QoS::AtLeastOnce)?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = counts.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut subacks = 0;
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 2 {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let received_us = now_us();
                        let mut c = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        if p.topic.ends_with("/health") {
                            c.health_overruns = sum_numbers_after(&p.payload, b"\"overruns\":");
                            continue;
                        }
                        c.first_telemetry = true;
                        if !c.recording {
                            continue;
                        }
                        let ts_ms = number_after(&p.payload, b"\"ts\":");
                        c.record(
                            received_us,
                            ts_ms,
                            member_count(&p.payload, b"\"values\":{") as u64,
                        );
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the subscription was not acknowledged within 10 s")?;
        Ok(Counter {
            counts,
            side: CounterSide::Rumqttc(client),
            thread: Some(thread),
        })
    }

    /// Starts `subscriber.c` and counts from its lines
    /// (`T <received us> <ts ms> <points>`, `H <overruns>`).
    fn start_libmosquitto(port: u16, qos: u8) -> Res<Counter> {
        let bin = compile_independent("subscriber.c", &["-lmosquitto"], &["libmosquitto"])?;
        let mut child = Command::new(bin)
            .args([port.to_string(), TOPIC_PREFIX.to_string(), qos.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the subscriber")?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = counts.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut fields = line.split(' ');
                let kind = fields.next();
                let numbers: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                let mut c = shared.lock().unwrap_or_else(PoisonError::into_inner);
                match (kind, numbers.as_slice()) {
                    (Some("ready"), _) => {
                        let _ = ready_tx.send(());
                    }
                    (Some("H"), [overruns]) => c.health_overruns = Some(*overruns),
                    (Some("T"), [received_us, ts_ms, points]) => {
                        c.first_telemetry = true;
                        c.record(*received_us, Some(*ts_ms), *points);
                    }
                    _ => {}
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            return Err("the libmosquitto subscriber did not subscribe within 10 s".into());
        }
        Ok(Counter {
            counts,
            side: CounterSide::Libmosquitto(child),
            thread: Some(thread),
        })
    }

    /// The subscriber's own process, when it has one.
    fn pid(&self) -> Option<u32> {
        match &self.side {
            CounterSide::Rumqttc(_) => None,
            CounterSide::Libmosquitto(child) => Some(child.id()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Counts) -> T) -> T {
        f(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        match &mut self.side {
            CounterSide::Rumqttc(client) => {
                let _ = client.disconnect();
            }
            CounterSide::Libmosquitto(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The unsigned integer right after the first `key` in `payload`.
fn number_after(payload: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(payload, key)? + key.len();
    let digits = payload.get(start..)?;
    let mut value: u64 = 0;
    let mut any = false;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// The sum of the integers after every `key` in `payload`.
fn sum_numbers_after(payload: &[u8], key: &[u8]) -> Option<u64> {
    let mut rest = payload;
    let mut total = None;
    while let Some(at) = find(rest, key) {
        let tail = rest.get(at..)?;
        if let Some(n) = number_after(tail, key) {
            total = Some(total.unwrap_or(0) + n);
        }
        rest = tail.get(key.len()..)?;
    }
    total
}

/// How many members the JSON object opened by `key` (which ends with `{`) has.
fn member_count(payload: &[u8], key: &[u8]) -> usize {
    let Some(at) = find(payload, key) else {
        return 0;
    };
    let Some(body) = payload.get(at + key.len()..) else {
        return 0;
    };
    let (mut depth, mut in_string, mut escaped, mut members) = (0usize, false, false, 0usize);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => break,
            b'}' | b']' => depth -= 1,
            b':' if depth == 0 => members += 1,
            _ => {}
        }
    }
    members
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// utime + stime of `pid`, in clock ticks (all its threads, dead ones included).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(rank).copied().unwrap_or(0) as f64 / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One RSS sample of the window.
struct Sample {
    at_s: f64,
    rss_kib: u64,
    points: u64,
}

/// What one scenario measured.
struct Measured {
    load_before: String,
    load_after: String,
    seconds: f64,
    cpu_s: f64,
    counts: Counts,
    /// CPU-seconds of the plant process, the subscriber process, this bench
    /// process (the simulator and/or the rumqttc subscriber when they run in
    /// it) and mosquitto, over the window.
    helper_cpu_s: [Option<f64>; 4],
    requests: Option<usize>,
    peak_rss_kib: u64,
    hwm_kib: u64,
    samples: Vec<Sample>,
    log_bytes: u64,
}

fn run(scenario: Scenario, args: &Args) -> Res<String> {
    let m = measure(scenario, args)?;
    Ok(report(scenario, args, &m))
}

/// mosquitto on a free port, with `set_tcp_nodelay true` if asked.
fn start_broker(args: &Args) -> Res<Broker> {
    Ok(if args.broker_nodelay {
        Broker::start_with(false, "set_tcp_nodelay true\n")?
    } else {
        Broker::start(false)?
    })
}

/// The agent's configuration: the plant's devices at the scenario's poll,
/// the HTTP server off if asked.
fn agent_config(scenario: Scenario, args: &Args, plant: &Plant, broker: &Broker) -> String {
    let mut devices = plant.devices_toml(scenario.poll());
    if !args.http {
        devices.push_str("\n[http]\nenabled = false\n");
    }
    agent_toml(&broker.url(), "", &devices)
}

fn measure(scenario: Scenario, args: &Args) -> Res<Measured> {
    let load_before = load_average();
    let plant = Plant::start(args.plant)?;
    let broker = start_broker(args)?;
    let counter = Counter::start(args.subscriber, broker.port(), args.subscriber_qos)?;
    let config = agent_config(scenario, args, &plant, &broker);
    let mut agent = AgentProcess::start(&config)?;
    let pid = agent.pid().ok_or("the agent did not start")?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while !counter.with(|c| c.first_telemetry) {
        if Instant::now() >= deadline {
            return Err(format!("no telemetry within 30 s; agent log:\n{}", agent.log()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(args.warmup));

    let ticks_per_s = clock_ticks_per_second();
    plant.take_requests();
    let cpu_start = cpu_ticks(pid).ok_or("cannot read the agent's /proc/PID/stat")?;
    let helpers = |p: &Plant, c: &Counter| {
        [
            p.pid().and_then(cpu_ticks),
            c.pid().and_then(cpu_ticks),
            cpu_ticks(std::process::id()),
            broker.pid().and_then(cpu_ticks),
        ]
    };
    let helpers_start = helpers(&plant, &counter);
    let started = Instant::now();
    counter.with(|c| c.recording = true);
    let window = Duration::from_secs(args.seconds);
    let mut samples = Vec::new();
    let mut peak_rss_kib = 0;
    let mut requests = Some(0);
    let mut next_sample = Duration::ZERO;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= window {
            break;
        }
        let rss = status_kib(pid, "VmRSS:").unwrap_or(0);
        peak_rss_kib = peak_rss_kib.max(rss);
        if elapsed >= next_sample {
            requests = requests.zip(plant.take_requests()).map(|(a, b)| a + b);
            samples.push(Sample {
                at_s: elapsed.as_secs_f64(),
                rss_kib: rss,
                points: counter.with(|c| c.points),
            });
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(100).min(window.saturating_sub(elapsed)));
    }
    let mut counts = counter.with(|c| {
        c.recording = false;
        std::mem::take(c)
    });
    let cpu_end = cpu_ticks(pid).ok_or("cannot read the agent's /proc/PID/stat")?;
    let helpers_end = helpers(&plant, &counter);
    let seconds = started.elapsed().as_secs_f64();
    requests = requests.zip(plant.take_requests()).map(|(a, b)| a + b);
    let mut helper_cpu_s = [None; 4];
    for (slot, (start, end)) in helper_cpu_s
        .iter_mut()
        .zip(helpers_start.iter().zip(helpers_end))
    {
        *slot = start
            .zip(end)
            .map(|(a, b)| b.saturating_sub(a) as f64 / ticks_per_s as f64);
    }
    let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0);
    peak_rss_kib = peak_rss_kib.max(rss_end);
    let hwm_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    samples.push(Sample {
        at_s: seconds,
        rss_kib: rss_end,
        points: counts.points,
    });
    let log_bytes = std::fs::metadata(agent.log_path()).map_or(0, |m| m.len());
    let _ = agent.terminate(Duration::from_secs(10));
    drop(counter);
    drop(broker);
    drop(plant);
    counts.latencies_us.sort_unstable();
    Ok(Measured {
        load_before,
        load_after: load_average(),
        seconds,
        cpu_s: cpu_end.saturating_sub(cpu_start) as f64 / ticks_per_s as f64,
        helper_cpu_s,
        counts,
        requests,
        peak_rss_kib,
        hwm_kib,
        samples,
        log_bytes,
    })
}

fn report(scenario: Scenario, args: &Args, m: &Measured) -> String {
    let seconds = m.seconds;
    let cpu_s = m.cpu_s;
    let points = m.counts.points;
    let points_per_s = points as f64 / seconds;
    let lat = &m.counts.latencies_us;
    // Every poll of a device publishes one telemetry message (report = "always").
    let polls = m.requests.map_or(m.counts.messages as f64, |r| r as f64);
    let polls_per_device = polls / seconds / DEVICES as f64;
    let cpu_per_mpt = (points > 0).then(|| cpu_s / (points as f64 / 1e6));
    let peak = mib(m.peak_rss_kib.max(m.hwm_kib));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} (poll = {}, window {seconds:.1} s after {} s warm-up; load average before {}, after {}) ==",
        scenario.name(),
        scenario.poll(),
        args.warmup,
        m.load_before,
        m.load_after,
    );
    let _ = writeln!(out, "| metric | value |\n| --- | --- |");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "| {name} | {value} |");
    };
    row("points/s delivered", format!("{points_per_s:.0}"));
    row(
        "telemetry messages/s delivered",
        format!("{:.0}", m.counts.messages as f64 / seconds),
    );
    row(
        if m.requests.is_some() {
            "polls/s answered by the devices"
        } else {
            "polls/s (telemetry messages; the plant does not count)"
        },
        format!("{:.0} ({polls_per_device:.1} per device)", polls / seconds),
    );
    if scenario == Scenario::FlatOut {
        let ticks_per_device = 1.0 / scenario.poll_interval().as_secs_f64();
        row(
            "overruns (missed ticks, estimated)",
            format!(
                "{:.0}/s per device",
                (ticks_per_device - polls_per_device).max(0.0)
            ),
        );
    }
    if let Some(overruns) = m.counts.health_overruns {
        row("overruns (last health)", overruns.to_string());
    }
    row(
        "agent CPU",
        format!(
            "{cpu_s:.2} s = {:.3} % of one core",
            cpu_s / seconds * 100.0
        ),
    );
    row(
        "plant process / subscriber process / bench process / mosquitto CPU",
        measuring_side_cpu(m),
    );
    row(
        "agent CPU-seconds per million points",
        cpu_per_mpt.map_or_else(|| "-".into(), |c| format!("{c:.3}")),
    );
    row(
        "agent RSS peak (sampled every 100 ms)",
        format!("{:.1} MiB", mib(m.peak_rss_kib)),
    );
    row(
        "agent VmHWM at the end",
        format!("{:.1} MiB", mib(m.hwm_kib)),
    );
    row(
        "latency p50 / p90 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms ({} messages)",
            percentile(lat, 0.50),
            percentile(lat, 0.90),
            percentile(lat, 0.99),
            percentile(lat, 1.0),
            lat.len()
        ),
    );
    row("agent log", format!("{} bytes", m.log_bytes));
    rss_timeline(&mut out, &m.samples);
    let targets = targets(scenario, m, cpu_per_mpt, peak, points_per_s);
    let _ = writeln!(out, "{targets}");
    out
}

/// The scenario's targets and whether they were met.
fn targets(
    scenario: Scenario,
    m: &Measured,
    cpu_per_mpt: Option<f64>,
    peak: f64,
    points_per_s: f64,
) -> String {
    let (seconds, cpu_s, lat) = (m.seconds, m.cpu_s, &m.counts.latencies_us);
    match scenario {
        Scenario::Paced => format!(
            "targets: <= 0.3 % of a core ({}), peak RSS <= 16 MiB ({}), p99 <= 20 ms ({})",
            verdict(cpu_s / seconds * 100.0 <= 0.3),
            verdict(peak <= 16.0),
            verdict(percentile(lat, 0.99) <= 20.0)
        ),
        Scenario::FlatOut => format!(
            "targets: <= 1 CPU-s per million points ({}), peak RSS <= 32 MiB ({}), >= 880000 points/s ({})",
            verdict(cpu_per_mpt.is_some_and(|c| c <= 1.0)),
            verdict(peak <= 32.0),
            verdict(points_per_s >= 880_000.0)
        ),
    }
}

/// The CPU share of everything but the agent, to show it is not the bottleneck.
fn measuring_side_cpu(m: &Measured) -> String {
    let share = |cpu: Option<f64>| {
        cpu.map_or_else(
            || "-".to_string(),
            |c| format!("{:.1} % of one core", c / m.seconds * 100.0),
        )
    };
    m.helper_cpu_s
        .iter()
        .map(|c| share(*c))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// RSS (and delivery rate) at about seven points of the window.
fn rss_timeline(out: &mut String, samples: &[Sample]) {
    let (lo, hi) = samples.iter().fold((u64::MAX, 0), |(lo, hi), s| {
        (lo.min(s.rss_kib), hi.max(s.rss_kib))
    });
    let _ = writeln!(
        out,
        "RSS over the window: min {:.1} MiB, max {:.1} MiB",
        mib(lo),
        mib(hi)
    );
    let step = (samples.len() / 6).max(1);
    let mut previous: Option<&Sample> = None;
    for s in samples.iter().step_by(step).chain(samples.last()) {
        if previous.is_some_and(|p| (p.at_s - s.at_s).abs() < 1e-9) {
            continue;
        }
        let rate = previous.map_or(String::new(), |p| {
            format!(
                ", {:.0} points/s",
                s.points.saturating_sub(p.points) as f64 / (s.at_s - p.at_s)
            )
        });
        let _ = writeln!(
            out,
            "  t = {:5.1} s: RSS {:.1} MiB{rate}",
            s.at_s,
            mib(s.rss_kib)
        );
        previous = Some(s);
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
