//! Recovery benchmark: the release `spindle run` against a mosquitto
//! started here (loopback, persistence on, stopped with SIGTERM and started
//! again on the same port), with simulated Modbus TCP devices served by
//! this process.
//!
//! - `single`: one agent, one device polled every `--poll`; `--rounds`
//!   outages of `--outage-single` seconds each. For each, the time from the
//!   broker accepting connections again to the arrival (at a subscriber
//!   that stays subscribed through the outage) of the first message the
//!   agent created during the outage. Reports min, median, max.
//! - `herd`: `--agents` agents with one device each against one broker,
//!   one outage of `--outage-herd` seconds, then `--observe` seconds
//!   recorded, once without and once with `replay_rate = --replay-rate`.
//!   Reports each agent's reconnect time (its first message created during
//!   the outage to arrive, after the broker's return) as min / p10 / median
//!   / p90 / max, and the messages per second the subscriber received
//!   (peak, and the series per second from the return).
//!
//! `cargo build --release -p spindle && cargo run --release -p spindle-hil-tests --example outage_bench -- [--part single|herd|both] [--rounds 20] [--agents 50] [--replay-rate 10]`
//!
//! The subscriber's own reconnect (every 5 ms while the broker is down) is
//! part of the times measured.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use spindle_hil_tests::agent::{AgentProcess, spindle_bin};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::plant::{Plant, agent_toml};

type Res<T> = Result<T, Box<dyn Error>>;

#[derive(Debug)]
struct Args {
    single: bool,
    herd: bool,
    rounds: usize,
    outage_single: u64,
    agents: usize,
    outage_herd: u64,
    observe: u64,
    replay_rate: u32,
    poll: String,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        single: true,
        herd: true,
        rounds: 20,
        outage_single: 15,
        agents: 50,
        outage_herd: 30,
        observe: 45,
        replay_rate: 10,
        poll: "100ms".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--part" => {
                (args.single, args.herd) = match value()?.as_str() {
                    "single" => (true, false),
                    "herd" => (false, true),
                    "both" => (true, true),
                    other => return Err(format!("unknown part {other:?}").into()),
                };
            }
            "--rounds" => args.rounds = value()?.parse()?,
            "--outage-single" => args.outage_single = value()?.parse()?,
            "--agents" => args.agents = value()?.parse()?,
            "--outage-herd" => args.outage_herd = value()?.parse()?,
            "--observe" => args.observe = value()?.parse()?,
            "--replay-rate" => args.replay_rate = value()?.parse()?,
            "--poll" => args.poll = value()?,
            "-h" | "--help" => {
                println!(
                    "outage_bench [--part single|herd|both] [--rounds 20] [--outage-single 15] \
                     [--agents 50] [--outage-herd 30] [--observe 45] [--replay-rate 10] [--poll 100ms]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if args.rounds == 0 || args.agents == 0 || args.replay_rate == 0 {
        return Err("--rounds, --agents and --replay-rate must be at least 1".into());
    }
    Ok(args)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let bin = release_spindle()?;
    println!("agent binary: {}", bin.display());
    if args.single {
        single(&args)?;
    }
    if args.herd {
        herd(&args, None)?;
        herd(&args, Some(args.replay_rate))?;
    }
    Ok(())
}

/// The release `spindle` binary, refusing a missing or stale one (as `bench` does).
fn release_spindle() -> Res<PathBuf> {
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One telemetry message as the subscriber saw it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    /// The agent's number (`gw-N`).
    agent: usize,
    /// The payload's `ts` (when the poll was made), ms since the epoch.
    ts: u64,
}

/// A `QoS` 1 subscriber with a persistent session that records every
/// telemetry arrival and reconnects every 5 ms while the broker is away.
struct Recorder {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    client: Client,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    fn start(port: u16) -> Res<Recorder> {
        let mut opts = MqttOptions::new(
            format!("outage-bench-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(false);
        let (client, mut connection) = Client::new(opts, 1024);
        client.subscribe("spindle/+/+/telemetry/+", QoS::AtLeastOnce)?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let shared = arrivals.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = Instant::now();
                        let agent = p
                            .topic
                            .split('/')
                            .nth(2)
                            .and_then(|id| id.strip_prefix("gw-"))
                            .and_then(|n| n.parse().ok());
                        let ts = serde_json::from_slice::<serde_json::Value>(&p.payload)
                            .ok()
                            .and_then(|v| v.get("ts").and_then(serde_json::Value::as_u64));
                        if let (Some(agent), Some(ts)) = (agent, ts) {
                            shared
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Arrival { at, agent, ts });
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the subscription was not acknowledged within 10 s")?;
        Ok(Recorder {
            arrivals,
            client,
            thread: Some(thread),
        })
    }

    fn snapshot(&self) -> Vec<Arrival> {
        self.arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (polling every 2 ms) until `done` holds over the arrivals, or `limit` passes.
    fn wait_until(&self, limit: Duration, done: impl Fn(&[Arrival]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(&self.arrivals.lock().unwrap_or_else(PoisonError::into_inner)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An agent `gw-{n}` with the one device at `addr`.
fn agent_config(
    n: usize,
    broker: &Broker,
    addr: std::net::SocketAddr,
    poll: &str,
    buffer: &str,
) -> String {
    let mut device = format!(
        "\n[[device]]\nname = \"dev0\"\ntcp = \"{addr}\"\nunit = 1\npoll = \"{poll}\"\ntimeout = \"500ms\"\n"
    );
    for r in 0..10 {
        let _ = write!(
            device,
            "\n[[device.point]]\nname = \"r{r}\"\narea = \"holding\"\naddress = {r}\ntype = \"u16\"\n"
        );
    }
    agent_toml(&broker.url(), buffer, &device).replacen(
        "id = \"gw-1\"",
        &format!("id = \"gw-{n}\""),
        1,
    )
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    sorted
        .get(((last as f64) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// One agent, many outages: time from the broker's return to the first delivery.
fn single(args: &Args) -> Res<()> {
    println!(
        "\nsingle: 1 agent, 1 device polled every {}, default reconnect_max (10s); {} outages of {} s",
        args.poll, args.rounds, args.outage_single
    );
    let plant = Plant::tcp(1)?;
    let addr = plant.servers.first().ok_or("no device")?.local_addr();
    let mut broker = Broker::start(true)?;
    let recorder = Recorder::start(broker.port())?;
    let _agent = AgentProcess::start(&agent_config(
        1,
        &broker,
        addr,
        &args.poll,
        "flush_interval = \"10ms\"",
    ))?;
    if !recorder.wait_until(Duration::from_secs(30), |a| a.len() >= 5) {
        return Err("no telemetry within 30 s".into());
    }
    let mut times = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        broker.stop_gracefully();
        let stopped_ms = now_ms();
        std::thread::sleep(Duration::from_secs(args.outage_single));
        broker.restart()?;
        let returned = Instant::now();
        if !recorder.wait_until(Duration::from_secs(60), |a| {
            a.iter()
                .rev()
                .any(|x| x.ts >= stopped_ms && x.at >= returned)
        }) {
            return Err(
                format!("round {round}: nothing delivered within 60 s of the return").into(),
            );
        }
        let first = recorder
            .snapshot()
            .iter()
            .filter(|x| x.ts >= stopped_ms && x.at >= returned)
            .map(|x| x.at)
            .min()
            .ok_or("no arrival")?;
        let took = first.duration_since(returned);
        println!("  outage {:>2}: first delivery {}", round + 1, secs(took));
        times.push(took);
        std::thread::sleep(Duration::from_secs(1));
    }
    times.sort();
    println!(
        "single: first delivery after the broker's return over {} outages: min {}, median {}, max {}",
        times.len(),
        secs(percentile(&times, 0.0)),
        secs(percentile(&times, 0.5)),
        secs(percentile(&times, 1.0)),
    );
    Ok(())
}

/// Many agents, one outage: reconnect spread and the broker's arrival rate.
fn herd(args: &Args, replay_rate: Option<u32>) -> Res<()> {
    let label = replay_rate.map_or_else(
        || "replay_rate unlimited".to_owned(),
        |r| format!("replay_rate = {r}"),
    );
    println!(
        "\nherd: {} agents x 1 device polled every {}, default reconnect_max (10s), {label}; one outage of {} s",
        args.agents, args.poll, args.outage_herd
    );
    let plant = Plant::tcp(args.agents)?;
    let mut broker = Broker::start(true)?;
    let recorder = Recorder::start(broker.port())?;
    let buffer = match replay_rate {
        Some(r) => format!("flush_interval = \"10ms\"\nreplay_rate = {r}"),
        None => "flush_interval = \"10ms\"".to_owned(),
    };
    let mut agents = Vec::with_capacity(args.agents);
    for (n, server) in plant.servers.iter().enumerate() {
        agents.push(AgentProcess::start(&agent_config(
            n,
            &broker,
            server.local_addr(),
            &args.poll,
            &buffer,
        ))?);
    }
    let all = args.agents;
    if !recorder.wait_until(Duration::from_secs(60), |a| {
        let mut seen = vec![false; all];
        for x in a {
            if let Some(s) = seen.get_mut(x.agent) {
                *s = true;
            }
        }
        seen.iter().all(|s| *s)
    }) {
        return Err("not every agent delivered within 60 s".into());
    }
    std::thread::sleep(Duration::from_secs(3));

    broker.stop_gracefully();
    let stopped_ms = now_ms();
    std::thread::sleep(Duration::from_secs(args.outage_herd));
    let returned_ms = now_ms();
    broker.restart()?;
    let returned = Instant::now();
    std::thread::sleep(Duration::from_secs(args.observe));
    let arrivals: Vec<Arrival> = recorder
        .snapshot()
        .into_iter()
        .filter(|x| x.at >= returned)
        .collect();
    drop(agents); // killed (-9): what they hold does not matter here

    // Each agent's reconnect: its first message created during the outage to arrive.
    let mut first: BTreeMap<usize, Instant> = BTreeMap::new();
    for x in arrivals.iter().filter(|x| x.ts >= stopped_ms) {
        first
            .entry(x.agent)
            .and_modify(|t| *t = (*t).min(x.at))
            .or_insert(x.at);
    }
    let mut reconnects: Vec<Duration> =
        first.values().map(|t| t.duration_since(returned)).collect();
    reconnects.sort();
    println!(
        "  reconnects ({} of {} agents within {} s): min {}, p10 {}, median {}, p90 {}, max {}",
        reconnects.len(),
        args.agents,
        args.observe,
        secs(percentile(&reconnects, 0.0)),
        secs(percentile(&reconnects, 0.1)),
        secs(percentile(&reconnects, 0.5)),
        secs(percentile(&reconnects, 0.9)),
        secs(percentile(&reconnects, 1.0)),
    );

    // Messages per second at the subscriber, from the return.
    let mut per_second = vec![0_u64; usize::try_from(args.observe)?.max(1)];
    for x in &arrivals {
        let s = x.at.duration_since(returned).as_secs() as usize;
        if let Some(n) = per_second.get_mut(s) {
            *n += 1;
        }
    }
    let backlog = arrivals.iter().filter(|x| x.ts < returned_ms).count();
    let drained = arrivals
        .iter()
        .filter(|x| x.ts < returned_ms)
        .map(|x| x.at.duration_since(returned))
        .max()
        .unwrap_or_default();
    let live_rate = args.agents as f64 * 1000.0 / parse_ms(&args.poll).max(1.0);
    println!(
        "  broker-side messages/s: peak {}, live alone ≈ {live_rate:.0}; backlog of {backlog} (created during the outage) delivered by {}",
        per_second.iter().max().copied().unwrap_or(0),
        secs(drained),
    );
    let series: Vec<String> = per_second.iter().map(u64::to_string).collect();
    println!("  per second from the return: {}", series.join(" "));
    drop(recorder);
    drop(broker);
    drop(plant);
    Ok(())
}

/// `"100ms"` or `"1s"` in milliseconds (for the live rate shown).
fn parse_ms(poll: &str) -> f64 {
    if let Some(ms) = poll.strip_suffix("ms") {
        ms.parse().unwrap_or(0.0)
    } else if let Some(s) = poll.strip_suffix('s') {
        s.parse::<f64>().unwrap_or(0.0) * 1000.0
    } else {
        0.0
    }
}
