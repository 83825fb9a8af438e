//! `spindle demo [--for SECONDS] [--port N] [--mqtt URL]`: the first-run
//! experience, in one process: a simulated plant, an embedded MQTT broker
//! and the agent, with a live terminal view of what arrives on the broker.
//!
//! The plant is `examples/demo.toml`, built in: three Modbus meters and a
//! DL/T 645 sub-meter on one RS-485
//! bus served on a pseudo-terminal, four machines (three of them CNC) served
//! on free TCP ports of 127.0.0.1, each value moved by its `[device.sim]`
//! dynamics as `spindle simulate` moves it. The agent gets the same file
//! without the `[device.sim]` tables and with the run-time parts filled in
//! (ports, the pseudo-terminal, a temporary `data_dir`, the broker's URL),
//! checked by `spindle_config::parse` like any configuration, and runs as
//! `spindle run` does until the demo stops it.
//!
//! The broker is rumqttd (cargo feature `demo-broker`, on by default) on
//! 127.0.0.1: port 1883 when free, else a free port (`--port` picks one).
//! rumqttd cannot report the port it bound and has no shutdown, so the port
//! is checked free beforehand, the broker is awaited by connecting to it,
//! and it ends with the process. `--mqtt URL` uses another broker instead
//! (the only way without the feature).
//!
//! The view is built from what a subscriber to `spindle/#` on that broker
//! receives (availability, telemetry, KPI windows: the MQTT contract end to
//! end) and from the agent's counters (outbox depth, publishes). It is
//! redrawn every second on a terminal, printed every 5 s otherwise; a
//! summary follows the stop (Ctrl-C, SIGTERM or `--for`).
//!
//! Exit 0 after a clean stop; 1 for bad arguments; 2 when a part cannot
//! start (no free port, no pseudo-terminal, the broker not answering).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use spindle_config::ParseOptions;
use spindle_config::model::{Config, DeviceLink};
use spindle_protocols::sim::config::{SimDeviceConfig, sim_device};
use spindle_protocols::sim::{SimPlant, TcpPlacement};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cli::{EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME};
use crate::events::Counters;

/// The demo plant: devices with `[device.sim]` tables, equipment and KPIs.
const PLANT: &str = include_str!("../../../examples/demo.toml");
/// The name the plant's file goes by in messages.
const PLANT_FILE: &str = "examples/demo.toml";
/// How often every simulated value is recomputed.
const SIM_TICK: Duration = Duration::from_millis(100);
/// How often the view is redrawn on a terminal.
const VIEW_TICK: Duration = Duration::from_secs(1);
/// How often the view is printed when the output is not a terminal.
const VIEW_TICK_PLAIN: Duration = Duration::from_secs(5);
/// Points/s is averaged over this long.
const RATE_SPAN: Duration = Duration::from_secs(5);
/// The broker's port when it is free.
const MQTT_PORT: u16 = 1883;
/// How long the embedded broker may take to accept connections.
#[cfg(feature = "demo-broker")]
const BROKER_START: Duration = Duration::from_secs(5);
/// How long the agent may take to stop (it promises 5 s).
const AGENT_STOP: Duration = Duration::from_secs(8);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many seconds and print a summary (default: run until Ctrl-C).
    #[arg(long = "for", value_name = "SECONDS")]
    pub run_for: Option<f64>,
    /// Port of the embedded MQTT broker on 127.0.0.1 (default: 1883 if free, else a free port).
    #[arg(long, value_name = "N", conflicts_with = "mqtt")]
    pub port: Option<u16>,
    /// Publish to this broker (`mqtt://HOST:PORT`) instead of the embedded one.
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
}

pub fn run(args: &Args) -> u8 {
    let run_for = match super::run_for(args.run_for) {
        Ok(run_for) => run_for,
        Err(code) => return code,
    };
    let broker = match choose_broker(args) {
        Ok(broker) => broker,
        Err((code, message)) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    let plant = match Plant::parse() {
        Ok(plant) => plant,
        Err(message) => {
            eprintln!("error: the built-in demo plant ({PLANT_FILE}) is invalid: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(demo(plant, broker, run_for))
}

/// Where the agent publishes and the view subscribes.
#[derive(Debug, Clone)]
enum Broker {
    /// Start rumqttd on 127.0.0.1 at this port (checked free).
    Embedded(u16),
    /// A broker given with `--mqtt`.
    External { url: String },
}

/// The broker to use: `--mqtt`, else the embedded one on a port checked free.
fn choose_broker(args: &Args) -> Result<Broker, (u8, String)> {
    if let Some(url) = &args.mqtt {
        return Ok(Broker::External { url: url.clone() });
    }
    if !cfg!(feature = "demo-broker") {
        return Err((
            EXIT_BAD_INPUT,
            "this build has no embedded MQTT broker (it was built without the `demo-broker` \
             feature); give a broker with --mqtt mqtt://HOST:PORT"
                .into(),
        ));
    }
    match args.port {
        Some(port) => {
            if port_is_free(port) {
                Ok(Broker::Embedded(port))
            } else {
                Err((
                    EXIT_RUNTIME,
                    format!("port {port} on 127.0.0.1 is taken; pick another with --port"),
                ))
            }
        }
        None if port_is_free(MQTT_PORT) => Ok(Broker::Embedded(MQTT_PORT)),
        None => free_port()
            .map(Broker::Embedded)
            .map_err(|e| (EXIT_RUNTIME, format!("cannot find a free port: {e}"))),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(loopback(port)).is_ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(loopback(0))?.local_addr()?.port())
}

/// The built-in plant: its configuration and every device's simulation.
#[derive(Debug)]
struct Plant {
    config: Config,
    sims: Vec<SimDeviceConfig>,
}

impl Plant {
    fn parse() -> Result<Self, String> {
        let parsed =
            spindle_config::parse_with(PLANT_FILE, PLANT, ParseOptions { allow_sim: true })
                .map_err(|errors| joined(&errors.0))?;
        let mut sims = Vec::new();
        for device in &parsed.config.devices {
            let sim = sim_device(device, parsed.sim.get(&device.name))
                .map_err(|errors| joined(&errors))?;
            sims.push(sim);
        }
        Ok(Self {
            config: parsed.config,
            sims,
        })
    }
}

fn joined(errors: &[impl std::fmt::Display]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the simulator serves each device, as the agent must reach it.
#[derive(Debug, Default)]
struct Served {
    /// TCP device name → bound address.
    tcp: BTreeMap<String, SocketAddr>,
    /// Serial bus name → pseudo-terminal path.
    buses: BTreeMap<String, String>,
}

/// The agent's configuration text: the plant without `[device.sim]`, with
/// the served addresses, `data_dir` and the broker's URL filled in.
fn agent_toml(served: &Served, data_dir: &Path, mqtt_url: &str) -> Result<String, String> {
    let mut root: toml::Table = PLANT.parse().map_err(|e| format!("{e}"))?;
    let table = |root: &mut toml::Table, key: &str| -> Result<toml::Table, String> {
        match root.remove(key) {
            Some(toml::Value::Table(table)) => Ok(table),
            _ => Err(format!("no [{key}] table")),
        }
    };
    let mut agent = table(&mut root, "agent")?;
    agent.insert(
        "data_dir".into(),
        toml::Value::String(data_dir.display().to_string()),
    );
    root.insert("agent".into(), toml::Value::Table(agent));
    let mut mqtt = table(&mut root, "mqtt")?;
    mqtt.insert("url".into(), toml::Value::String(mqtt_url.to_owned()));
    root.insert("mqtt".into(), toml::Value::Table(mqtt));
    if let Some(toml::Value::Array(buses)) = root.get_mut("serial") {
        for bus in buses.iter_mut().filter_map(toml::Value::as_table_mut) {
            let name = bus.get("name").and_then(toml::Value::as_str).unwrap_or("");
            if let Some(path) = served.buses.get(name) {
                bus.insert("port".into(), toml::Value::String(path.clone()));
            }
        }
    }
    if let Some(toml::Value::Array(devices)) = root.get_mut("device") {
        for device in devices.iter_mut().filter_map(toml::Value::as_table_mut) {
            device.remove("sim");
            let name = device
                .get("name")
                .and_then(toml::Value::as_str)
                .unwrap_or("");
            if let Some(address) = served.tcp.get(name) {
                device.insert("tcp".into(), toml::Value::String(address.to_string()));
            }
        }
    }
    toml::to_string(&root).map_err(|e| format!("{e}"))
}

/// Serves the plant: every TCP device on a free port of 127.0.0.1, every
/// serial bus (Modbus units and DL/T 645 meters) on a pseudo-terminal.
async fn start_simulator(plant: &Plant) -> Result<(SimPlant, Served), String> {
    let mut simulator =
        SimPlant::new(&plant.config, plant.sims.clone()).map_err(|errors| joined(&errors))?;
    let mut served = Served::default();
    for tcp in simulator.serve_tcp(TcpPlacement::AnyLoopbackPort).await? {
        served.tcp.insert(tcp.device, tcp.address);
    }
    for bus in simulator.serve_buses(&plant.config, false)? {
        served.buses.insert(bus.bus, bus.path);
    }
    Ok((simulator, served))
}

/// Starts rumqttd on 127.0.0.1:`port` in its own threads (it has no
/// shutdown: it ends with the process) and waits until it accepts connections.
#[cfg(feature = "demo-broker")]
fn start_broker(port: u16) -> Result<(), String> {
    use std::collections::HashMap;

    use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};

    let server = ServerSettings {
        name: "demo".into(),
        listen: loopback(port),
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: crate::runtime::MAX_MESSAGE + 1024,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("demo".to_owned(), server)])),
        ..rumqttd::Config::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "The embedded MQTT broker stopped.");
            }
        })
        .map_err(|e| format!("cannot start the embedded MQTT broker: {e}"))?;
    let deadline = std::time::Instant::now() + BROKER_START;
    loop {
        if std::net::TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the embedded MQTT broker does not accept connections on 127.0.0.1:{port}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(not(feature = "demo-broker"))]
fn start_broker(port: u16) -> Result<(), String> {
    Err(format!(
        "cannot serve MQTT on port {port}: this build has no embedded broker (feature `demo-broker`)"
    ))
}

async fn demo(plant: Plant, broker: Broker, run_for: Option<Duration>) -> u8 {
    let (simulator, served) = match start_simulator(&plant).await {
        Ok(started) => started,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_RUNTIME;
        }
    };
    let url = match &broker {
        Broker::Embedded(port) => {
            if let Err(message) = start_broker(*port) {
                eprintln!("error: {message}");
                return EXIT_RUNTIME;
            }
            format!("mqtt://127.0.0.1:{port}")
        }
        Broker::External { url } => url.clone(),
    };
    let data = match tempfile::Builder::new().prefix("spindle-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: cannot make a temporary data folder: {e}");
            return EXIT_RUNTIME;
        }
    };
    let config = match agent_toml(&served, data.path(), &url)
        .and_then(|text| spindle_config::parse(PLANT_FILE, &text).map_err(|e| joined(&e.0)))
    {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: the demo's agent configuration is invalid: {message}");
            return if matches!(broker, Broker::External { .. }) {
                EXIT_BAD_INPUT
            } else {
                EXIT_RUNTIME
            };
        }
    };
    if config.mqtt.url.tls {
        eprintln!("error: the demo's live view subscribes over plain MQTT; give an mqtt:// URL");
        return EXIT_BAD_INPUT;
    }
    let code = watch(config, &served, data.path(), simulator, run_for).await;
    drop(data);
    code
}

/// Runs the agent, the subscriber and the view until the stop; the exit code.
async fn watch(
    config: Config,
    served: &Served,
    data_dir: &Path,
    mut simulator: SimPlant,
    run_for: Option<Duration>,
) -> u8 {
    let header = Header::new(&config, served, data_dir);
    let seen = Arc::new(Mutex::new(Seen::new(&config)));
    let subscriber = tokio::spawn(subscribe(
        config.mqtt.url.host.clone(),
        config.mqtt.url.port,
        format!("{}/#", config.mqtt.topic_prefix),
        seen.clone(),
    ));
    let counters = Arc::new(Counters::default());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let agent = crate::runtime::run_until(config, counters.clone(), async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    tokio::pin!(agent);

    let terminal = std::io::stdout().is_terminal();
    let mut view = View::new(header, terminal);
    if !terminal {
        view.print_intro();
    }
    let stop = crate::runtime::wait_for_stop(run_for);
    tokio::pin!(stop);
    let mut sim_tick = tokio::time::interval(SIM_TICK);
    sim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut view_tick = tokio::time::interval(if terminal { VIEW_TICK } else { VIEW_TICK_PLAIN });
    view_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rate_tick = tokio::time::interval(VIEW_TICK);
    rate_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut finished = None;
    loop {
        tokio::select! {
            () = &mut stop => break,
            result = &mut agent => {
                finished = Some(result);
                break;
            }
            _ = sim_tick.tick() => simulator.tick(),
            _ = rate_tick.tick() => view.sample(&seen),
            _ = view_tick.tick() => view.show(&seen, &counters),
        }
    }
    let result = if let Some(result) = finished {
        result
    } else {
        let _ = stop_tx.send(true);
        if let Ok(result) = tokio::time::timeout(AGENT_STOP, &mut agent).await {
            result
        } else {
            eprintln!("error: the agent did not stop in time");
            subscriber.abort();
            return EXIT_RUNTIME;
        }
    };
    subscriber.abort();
    if let Err(e) = result {
        eprintln!("error: the agent cannot start: {e}");
        return EXIT_RUNTIME;
    }
    view.sample(&seen);
    view.finish(&seen, &counters);
    simulator.stop();
    EXIT_OK
}

// ---------------------------------------------------------------------------
// What the subscriber saw.

/// One device, as its availability and telemetry messages tell.
#[derive(Debug, Default)]
struct DeviceSeen {
    /// Where the simulator serves it.
    link: String,
    /// `online` / `offline`, from `availability/{device}`.
    state: Option<String>,
    reason: Option<String>,
    polls: u64,
    /// Values in the latest poll, and the points in error in it.
    values: usize,
    errors: usize,
}

/// Everything received on `spindle/#`.
#[derive(Debug, Default)]
struct Seen {
    connected: bool,
    messages: u64,
    /// Values received in telemetry, over all devices.
    points: u64,
    status: Option<String>,
    devices: BTreeMap<String, DeviceSeen>,
    /// Latest window per `kind/name`.
    kpis: BTreeMap<String, serde_json::Value>,
    /// Windows received per kind.
    windows: BTreeMap<String, u64>,
    gaps: u64,
}

impl Seen {
    fn new(config: &Config) -> Self {
        let mut seen = Self::default();
        for device in &config.devices {
            let link = match &device.link {
                DeviceLink::Tcp(address) => format!("tcp {address}"),
                DeviceLink::Serial(bus) => format!("{bus} unit {}", device.unit),
            };
            seen.devices.insert(
                device.name.clone(),
                DeviceSeen {
                    link,
                    ..DeviceSeen::default()
                },
            );
        }
        seen
    }

    /// Takes in one message; `topic` is the part after `{prefix}/{site}/{agent}/`.
    fn receive(&mut self, topic: &str, payload: &[u8]) {
        self.messages += 1;
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        let text = |key: &str| body.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let mut parts = topic.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("status"), None, None) => self.status = text("state"),
            (Some("availability"), Some(device), None) => {
                let entry = self.devices.entry(device.to_owned()).or_default();
                entry.state = text("state");
                entry.reason = text("reason");
            }
            (Some("telemetry"), Some(device), None) => {
                let count = |key: &str| {
                    body.get(key)
                        .and_then(|v| v.as_object())
                        .map_or(0, serde_json::Map::len)
                };
                let entry = self.devices.entry(device.to_owned()).or_default();
                entry.polls += 1;
                entry.values = count("values");
                entry.errors = count("errors");
                self.points += entry.values as u64;
            }
            (Some("kpi"), Some(kind), Some(name)) => {
                *self.windows.entry(kind.to_owned()).or_default() += 1;
                self.kpis.insert(format!("{kind}/{name}"), body);
            }
            (Some("gap"), None, None) => self.gaps += 1,
            _ => {}
        }
    }

    fn online(&self) -> usize {
        self.devices
            .values()
            .filter(|d| d.state.as_deref() == Some("online"))
            .count()
    }
}

/// Subscribes to `filter` and records every message into `seen`, reconnecting
/// after a lost connection.
async fn subscribe(host: String, port: u16, filter: String, seen: Arc<Mutex<Seen>>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let mut options = MqttOptions::new(
        format!("spindle-demo-view-{}", std::process::id()),
        host,
        port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(crate::runtime::MAX_MESSAGE + 1024, 1024);
    let (client, mut events) = AsyncClient::new(options, 64);
    // The topic base has three levels: `{prefix}/{site}/{agent}/`.
    let skip = filter.trim_end_matches("/#").split('/').count() + 2;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                lock(&seen).connected = true;
                if let Err(error) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(%error, "The demo view cannot subscribe.");
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic: Vec<&str> = publish.topic.splitn(skip + 1, '/').collect();
                if let Some(rest) = topic.get(skip) {
                    lock(&seen).receive(rest, &publish.payload);
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "The demo view lost its broker connection.");
                lock(&seen).connected = false;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The terminal view.

/// What does not change while the demo runs.
#[derive(Debug)]
struct Header {
    watch: String,
    broker: String,
    data_dir: String,
    buses: Vec<String>,
    topic_base: String,
}

impl Header {
    fn new(config: &Config, served: &Served, data_dir: &Path) -> Self {
        let url = &config.mqtt.url;
        Self {
            watch: format!(
                "mosquitto_sub -h {} -p {} -t '{}/#' -v",
                url.host, url.port, config.mqtt.topic_prefix
            ),
            broker: format!("{}:{}", url.host, url.port),
            data_dir: data_dir.display().to_string(),
            buses: served
                .buses
                .iter()
                .map(|(bus, path)| format!("{bus} on {path}"))
                .collect(),
            topic_base: format!(
                "{}/{}/{}/",
                config.mqtt.topic_prefix, config.agent.site, config.agent.id
            ),
        }
    }
}

#[derive(Debug)]
struct View {
    header: Header,
    terminal: bool,
    started: Instant,
    /// (time, points received) once a second, for points/s.
    samples: VecDeque<(Instant, u64)>,
}

impl View {
    fn new(header: Header, terminal: bool) -> Self {
        Self {
            header,
            terminal,
            started: Instant::now(),
            samples: VecDeque::new(),
        }
    }

    fn print_intro(&self) {
        println!("spindle demo: a simulated plant, an MQTT broker and the agent, in one process.");
        println!("Watch the topics:  {}", self.header.watch);
        let _ = std::io::stdout().flush();
    }

    fn sample(&mut self, seen: &Mutex<Seen>) {
        let now = Instant::now();
        let points = lock(seen).points;
        self.samples.push_back((now, points));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_SPAN)
        {
            self.samples.pop_front();
        }
    }

    fn points_per_second(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, p0)), Some((t1, p1))) if t1 > t0 => {
                #[allow(clippy::cast_precision_loss)]
                let points = p1.saturating_sub(*p0) as f64;
                points / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn show(&self, seen: &Mutex<Seen>, counters: &Counters) {
        let text = self.render(&lock(seen), counters, false);
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Clear the screen and go home, then draw.
            let _ = write!(out, "\x1b[2J\x1b[H{text}");
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }

    fn finish(&self, seen: &Mutex<Seen>, counters: &Counters) {
        let seen = lock(seen);
        let mut text = self.render(&seen, counters, true);
        let windows = seen
            .windows
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>();
        let _ = write!(
            text,
            "\nDemo stopped after {:.0} s: {}/{} devices online, {} points and {} messages received;\n\
             KPI windows received: {}; the agent published {} messages, {} acknowledged.\n",
            self.started.elapsed().as_secs_f64(),
            seen.online(),
            seen.devices.len(),
            seen.points,
            seen.messages,
            if windows.is_empty() {
                "none".to_owned()
            } else {
                windows.join(", ")
            },
            counters.published.get(),
            counters.published_acked.get(),
        );
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn render(&self, seen: &Seen, counters: &Counters, stopped: bool) -> String {
        let mut s = String::new();
        let header = &self.header;
        let _ = writeln!(
            s,
            "spindle demo · {:.0} s · broker {} ({}) · agent {}",
            self.started.elapsed().as_secs_f64(),
            header.broker,
            if seen.connected {
                "connected"
            } else {
                "connecting"
            },
            if stopped {
                "stopped"
            } else {
                seen.status.as_deref().unwrap_or("starting")
            },
        );
        let _ = writeln!(s, "Watch the topics:  {}", header.watch);
        let _ = writeln!(
            s,
            "Topics under {} · data in {}{}",
            header.topic_base,
            header.data_dir,
            if header.buses.is_empty() {
                String::new()
            } else {
                format!(" · RS-485 bus {}", header.buses.join(", "))
            }
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Devices: {}/{} online · {:.1} points/s · outbox depth {} · {} published, {} acknowledged{}",
            seen.online(),
            seen.devices.len(),
            self.points_per_second(),
            counters.outbox_depth.get(),
            counters.published.get(),
            counters.published_acked.get(),
            if seen.gaps > 0 {
                format!(" · {} gaps", seen.gaps)
            } else {
                String::new()
            }
        );
        for (name, device) in &seen.devices {
            let state = match (device.state.as_deref(), device.reason.as_deref()) {
                (Some("offline"), Some(reason)) => format!("offline ({reason})"),
                (Some(state), _) => state.to_owned(),
                (None, _) => "waiting".to_owned(),
            };
            let _ = writeln!(
                s,
                "  {name:<13} {:<22} {state:<10} {:>5} polls  {:>2} values{}",
                device.link,
                device.polls,
                device.values,
                if device.errors > 0 {
                    format!(", {} errors", device.errors)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "KPIs (latest window of each):");
        if seen.kpis.is_empty() {
            let _ = writeln!(s, "  waiting for the first windows to close (10 s windows)");
        }
        for (key, body) in &seen.kpis {
            let _ = writeln!(s, "  {}", kpi_line(key, body));
        }
        if self.terminal && !stopped {
            let _ = writeln!(s, "\nCtrl-C stops.");
        }
        s
    }
}

/// One KPI window on one line.
fn kpi_line(key: &str, body: &serde_json::Value) -> String {
    let number = |key: &str| body.get(key).and_then(serde_json::Value::as_f64);
    let shown = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
    };
    let window = body.get("window");
    let at = |key: &str| {
        window
            .and_then(|w| w.get(key))
            .and_then(serde_json::Value::as_i64)
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(
                || "?".to_owned(),
                |ts| {
                    ts.to_zoned(jiff::tz::TimeZone::system())
                        .strftime("%H:%M:%S")
                        .to_string()
                },
            )
    };
    let quality = body.get("quality").and_then(|q| q.as_str()).unwrap_or("?");
    let flags = body
        .get("flags")
        .and_then(|f| f.as_array())
        .map(|flags| {
            flags
                .iter()
                .filter_map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let mut line = format!("{key:<26} {}–{}  ", at("start"), at("end"));
    match body.get("kind").and_then(|k| k.as_str()) {
        Some("energy_per_output") => {
            let unit = body
                .get("unit")
                .and_then(|u| u.as_str())
                .unwrap_or("kgce/unit");
            let output_unit = unit.split_once('/').map_or("unit", |(_, u)| u);
            let _ = write!(
                line,
                "{} {unit}  CO2 {} kg/{output_unit}  output {}  ({} kgce, {} kg CO2)",
                shown(number("value"), 4),
                shown(number("co2_kg_per_unit"), 4),
                shown(number("output"), 1),
                shown(number("kgce"), 4),
                shown(number("kgco2"), 3),
            );
        }
        Some("energy_consumption") => {
            let _ = write!(
                line,
                "{} kgce  {} tce  {} kg CO2",
                shown(number("kgce"), 4),
                shown(number("tce"), 6),
                shown(number("kgco2"), 3),
            );
        }
        Some("cnc_coverage") => {
            let _ = write!(
                line,
                "count_ratio {}  networked_ratio {}  time_ratio {}",
                shown(number("count_ratio"), 2),
                shown(number("networked_ratio"), 2),
                shown(number("time_ratio"), 2),
            );
        }
        _ => {}
    }
    let _ = write!(line, "  {quality}");
    if !flags.is_empty() {
        let _ = write!(line, " [{flags}]");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_plant_has_four_meters_and_four_machines_three_of_them_cnc() {
        let plant = Plant::parse().unwrap();
        assert_eq!(plant.config.devices.len(), 8);
        assert_eq!(plant.sims.len(), 8);
        assert_eq!(plant.config.dlt645.len(), 1, "one DL/T 645 sub-meter");
        assert_eq!(plant.config.equipment.len(), 4);
        let cnc = plant
            .config
            .equipment
            .iter()
            .filter(|e| e.numerically_controlled)
            .count();
        assert_eq!(cnc, 3);
    }

    #[test]
    fn the_agent_gets_the_plant_without_sim_tables_and_with_the_served_addresses() {
        let mut served = Served::default();
        served
            .tcp
            .insert("cnc-07".into(), "127.0.0.1:40007".parse().unwrap());
        served.buses.insert("rs485-1".into(), "/dev/pts/77".into());
        let text = agent_toml(
            &served,
            Path::new("/tmp/demo-data"),
            "mqtt://127.0.0.1:1999",
        )
        .unwrap();
        let config = spindle_config::parse("demo.toml", &text).unwrap();
        let cnc = config.devices.iter().find(|d| d.name == "cnc-07").unwrap();
        assert_eq!(cnc.link, DeviceLink::Tcp("127.0.0.1:40007".into()));
        assert_eq!(config.serial[0].port, "/dev/pts/77");
        assert_eq!(config.agent.data_dir, Path::new("/tmp/demo-data"));
        assert_eq!(config.mqtt.url.port, 1999);
        assert_eq!(config.kpis.energy_per_output.len(), 2);
        assert_eq!(config.kpis.cnc_coverage.len(), 1);
        assert_eq!(config.kpis.energy_consumption.len(), 1);
    }

    #[test]
    fn the_view_counts_points_and_keeps_the_latest_window() {
        let plant = Plant::parse().unwrap();
        let mut seen = Seen::new(&plant.config);
        seen.receive("availability/cnc-07", br#"{"state":"online","ts":1}"#);
        seen.receive(
            "telemetry/cnc-07",
            br#"{"seq":1,"ts":1,"device":"cnc-07","values":{"parts":1,"mode":1},"errors":{"run_state":"timeout"}}"#,
        );
        seen.receive(
            "kpi/cnc_coverage/plant",
            br#"{"kind":"cnc_coverage","name":"plant","window":{"start":0,"end":10000},"count_ratio":0.75,"networked_ratio":1.0,"time_ratio":null,"quality":"good","flags":[]}"#,
        );
        assert_eq!(seen.online(), 1);
        assert_eq!(seen.points, 2);
        assert_eq!(seen.devices["cnc-07"].errors, 1);
        let line = kpi_line("cnc_coverage/plant", &seen.kpis["cnc_coverage/plant"]);
        assert!(line.contains("count_ratio 0.75"), "{line}");
        assert!(line.contains("time_ratio –"), "{line}");
    }
}
