//! Builds every golden payload from fixed inputs through the agent's API.
//! (Captured through the API of commit 86b2ec8; see `golden_payloads.rs`.)

use std::sync::Arc;
use std::time::Duration;

use spindle::health::{BusStats, DeviceStats, HealthSources, health_body};
use spindle::kpi::{KpiEngine, KpiWindowOut};
use spindle::outbox::{
    Envelope, Kind, MemStore, Outbox, OutboxOptions, SledStore, Store, WriteBatch,
};
use spindle::publish::connection::status_payload;
use spindle::telemetry::{Reachability, TelemetryEncoder, availability_body};
use spindle_config::model::Config;
use spindle_protocols::modbus::{Decoded, PointValue, RawValue};

use super::{BYTES_WRITTEN, FREE_BYTES, STORE, TS, pin_number, pin_text};

type Payloads = Vec<(String, Vec<u8>)>;

fn env(seq: u64, ts: u64) -> Envelope<'static> {
    Envelope {
        seq,
        ts,
        store: STORE,
    }
}

pub fn status() -> Payloads {
    let fields = format!(
        ",\"store\":\"{STORE}\",\"version\":\"0.1.0\",\"config_sha256\":\"{}\"",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
    let mut out = Payloads::new();
    for (name, state, reason) in [
        ("status_online", "online", None),
        ("status_offline_shutdown", "offline", Some("shutdown")),
        (
            "status_will_connection_lost",
            "offline",
            Some("connection_lost"),
        ),
    ] {
        let payload = status_payload(state, reason, &fields);
        out.push((name.to_owned(), pin_number(&payload, "ts", TS)));
    }
    out
}

/// A device of five points: a float, an integer, a bool, a text and a
/// second float (deadband 0.5 for `on_change`).
fn device_config(report: &str) -> Config {
    let text = format!(
        r#"
[agent]
id = "gw-017"
site = "gedian-acme"
data_dir = "/tmp/spindle-golden"
timezone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "meter-line1"
tcp = "127.0.0.1:5020"
unit = 1
report = "{report}"
heartbeat = "60s"

[[device.point]]
name = "voltage_a"
area = "holding"
address = 0
type = "f32"
deadband = 0.5

[[device.point]]
name = "energy_import"
area = "holding"
address = 2
type = "u32"

[[device.point]]
name = "running"
area = "coil"
address = 0
type = "bool"

[[device.point]]
name = "serial_no"
area = "holding"
address = 10
type = "string"
length = 4

[[device.point]]
name = "power_factor"
area = "holding"
address = 20
type = "f32"
"#
    );
    spindle_config::parse("golden.toml", &text).unwrap()
}

type Outcome = Result<PointValue, String>;

fn values(v: f64, e: f64) -> Vec<Outcome> {
    vec![
        Ok(PointValue::Number(v)),
        Ok(PointValue::Number(e)),
        Ok(PointValue::Bool(true)),
        Ok(PointValue::Text("SN-\"7\"\\x".into())),
        Ok(PointValue::Number(0.987)),
    ]
}

pub fn telemetry() -> Payloads {
    let mut out = Payloads::new();
    let config = device_config("always");
    let device = config.devices.first().unwrap();
    let mut always = TelemetryEncoder::new(device);
    let body = always.encode(&values(229.8, 12345.0), TS).unwrap();
    out.push(("telemetry_always_values".into(), env(1042, TS).wrap(&body)));
    let errors: Vec<Outcome> = vec![
        Err("timeout".into()),
        Err("exception:2".into()),
        Err("decode".into()),
        Err("disconnected".into()),
        Ok(PointValue::Number(-3.5e-7)),
    ];
    let body = always.encode(&errors, TS + 1000).unwrap();
    out.push((
        "telemetry_always_errors".into(),
        env(1043, TS + 1000).wrap(&body),
    ));

    let config = device_config("on_change");
    let device = config.devices.first().unwrap();
    let mut on_change = TelemetryEncoder::new(device);
    let body = on_change.encode(&values(229.8, 12345.0), TS).unwrap();
    out.push((
        "telemetry_on_change_snapshot".into(),
        env(7, TS).wrap(&body),
    ));
    // 229.8 → 230.4 passes the deadband; the counter moved; an error appears.
    let mut changed = values(230.4, 12346.0);
    if let Some(last) = changed.last_mut() {
        *last = Err("exception:11".into());
    }
    let body = on_change.encode(&changed, TS + 1000).unwrap();
    out.push((
        "telemetry_on_change_delta".into(),
        env(8, TS + 1000).wrap(&body),
    ));
    out
}

pub fn availability() -> Payloads {
    vec![
        (
            "availability_online".into(),
            env(11, TS).wrap(&availability_body(Reachability::Online, "poll_ok")),
        ),
        (
            "availability_offline_timeout".into(),
            env(12, TS).wrap(&availability_body(Reachability::Offline, "timeout")),
        ),
        (
            "availability_offline_exception".into(),
            env(13, TS).wrap(&availability_body(Reachability::Offline, "exception:4")),
        ),
    ]
}

pub fn health() -> Payloads {
    let sources = HealthSources::default();
    let mut sources = HealthSources {
        counters: sources.counters,
        ..HealthSources::default()
    };
    let d = Arc::new(DeviceStats::default());
    d.polls.add(60);
    d.good_polls.add(57);
    d.overruns.add(1);
    d.count_error("timeout");
    d.count_error("exception:2");
    d.count_error("decode");
    d.record_latency(1500);
    d.record_latency(2750);
    d.set_online(true);
    sources.devices.insert("meter-line1".into(), d);
    sources
        .devices
        .insert("cnc-07".into(), Arc::new(DeviceStats::default()));
    let bus = Arc::new(BusStats::default());
    bus.load_estimated_permille.set(887);
    bus.busy_us.add(30_000_000);
    bus.late_replies.set(2);
    sources.buses.insert("rs485-1".into(), bus);
    let c = &sources.counters;
    c.outbox_depth.set(7);
    c.outbox_bytes.set(9100);
    c.outbox_oldest_ms.set(TS - 2500);
    c.outbox_backlog.set(3);
    c.outbox_dropped_full.set(4);
    c.outbox_gaps.set(1);
    c.outbox_flushes.add(600);
    c.outbox_slow_flushes.add(2);
    c.outbox_flush_waits.inc();
    c.mqtt_connects.add(2);
    c.mqtt_disconnects.inc();
    c.published.add(700);
    c.published_acked.add(693);
    let body = health_body(&sources, 60.04, TS, true, std::path::Path::new("/"));
    let payload = env(99, TS).wrap(&body);
    let payload = pin_number(&payload, "free_bytes", FREE_BYTES);
    let payload = pin_number(&payload, "bytes_written", BYTES_WRITTEN);
    vec![("health".into(), payload)]
}

fn options(max_size: u64, max_age: Duration) -> OutboxOptions {
    OutboxOptions {
        max_size,
        max_age,
        max_record: 1 << 20,
        cache_capacity: 1 << 20,
    }
}

/// The payload of every record, in seq order, with the store id pinned.
fn drain<S: Store>(outbox: &mut Outbox<S>, now: u64) -> Vec<(Kind, Vec<u8>)> {
    outbox.flush().unwrap();
    let id = outbox.store_id().to_owned();
    outbox
        .read(1, 1000, now)
        .unwrap()
        .into_iter()
        .map(|(_, r)| (r.kind, pin_text(&r.payload, &id, STORE)))
        .collect()
}

fn filler(outbox: &mut Outbox<MemStore>, n: usize, ts: u64) {
    for _ in 0..n {
        outbox
            .append(Kind::Telemetry, false, "telemetry/m", ts, |e| {
                e.wrap(",\"device\":\"m\",\"values\":{\"a\":1},\"errors\":{}")
            })
            .unwrap();
    }
}

pub fn gap() -> Payloads {
    let mut out = Payloads::new();
    // Full: a small outbox takes twenty records, drops the oldest, and
    // announces the burst once a quarter is free again.
    let mut outbox = Outbox::from_store(
        MemStore::default(),
        options(1000, Duration::from_secs(3600)),
    )
    .unwrap();
    filler(&mut outbox, 20, TS);
    outbox.flush().unwrap();
    let acked: Vec<u64> = outbox
        .read(1, 1000, TS)
        .unwrap()
        .into_iter()
        .filter(|(_, r)| r.kind == Kind::Telemetry)
        .map(|(seq, _)| seq)
        .collect();
    outbox.ack(&acked).unwrap();
    outbox.enforce_limits(TS + 10).unwrap();
    let gaps: Vec<Vec<u8>> = drain(&mut outbox, TS + 10)
        .into_iter()
        .filter(|(k, _)| *k == Kind::Gap)
        .map(|(_, p)| p)
        .collect();
    out.push(("gap_outbox_full".into(), gaps.first().cloned().unwrap()));

    // Age: records older than max_age go at the next check.
    let mut outbox = Outbox::from_store(
        MemStore::default(),
        options(1 << 20, Duration::from_secs(60)),
    )
    .unwrap();
    filler(&mut outbox, 3, TS);
    outbox.enforce_limits(TS + 61_000).unwrap();
    // The burst ends at the next check that finds nothing to drop.
    outbox.enforce_limits(TS + 62_000).unwrap();
    let gaps: Vec<Vec<u8>> = drain(&mut outbox, TS + 61_000)
        .into_iter()
        .filter(|(k, _)| *k == Kind::Gap)
        .map(|(_, p)| p)
        .collect();
    out.push(("gap_max_age".into(), gaps.first().cloned().unwrap()));

    // Damaged: a store holding a record whose checksum fails is moved aside.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox");
    {
        let store = SledStore::open(&path, 1 << 20).unwrap();
        let outbox =
            Outbox::from_store(store.clone(), options(1 << 20, Duration::from_secs(60))).unwrap();
        std::fs::write(path.join("store_id"), STORE).unwrap();
        let mut batch = WriteBatch::default();
        let mut key = vec![b'r'];
        key.extend_from_slice(&1u64.to_be_bytes());
        batch.insert(key, b"not a record at all, bad checksum".to_vec());
        store.apply(batch).unwrap();
        store.flush().unwrap();
        drop(outbox);
    }
    let (mut outbox, recovery) =
        Outbox::open(&path, options(1 << 20, Duration::from_secs(60)), TS).unwrap();
    assert!(recovery.is_some());
    let records = drain(&mut outbox, TS);
    let (kind, payload) = records.first().cloned().unwrap();
    assert_eq!(kind, Kind::Gap);
    out.push(("gap_store_damaged".into(), payload));
    out
}

fn kpi_config() -> Config {
    let text = r#"
[agent]
id = "gw-017"
site = "gedian-acme"
data_dir = "/tmp/spindle-golden"
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
scale = 0.01
unit = "kWh"
counter = true

[[device]]
name = "cnc-1"
tcp = "127.0.0.1:5021"
unit = 1
poll = "1s"

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
address = 10
type = "u16"

[[device.point]]
name = "auto"
area = "coil"
address = 0
type = "bool"

[[equipment]]
name = "lathe"
device = "cnc-1"
process = "machining"
key_process = true
numerically_controlled = true
running = { point = "run_state", values = [3] }
cnc_mode = { point = "auto" }

[[equipment]]
name = "press"
process = "pressing"
key_process = true
numerically_controlled = false

[[kpi.energy_per_output]]
name = "line1"
window = "15m"
energy = [ { point = "meter.energy", carrier = "electricity" } ]
output = [ { point = "cnc-1.parts" } ]
output_unit = "piece"

[[kpi.cnc_coverage]]
name = "plant"
window = "15m"
"#;
    spindle_config::parse("golden.toml", text).unwrap()
}

/// 2026-11-27 08:00 Asia/Shanghai.
const T0: u64 = 1_795_737_600_000;
const WINDOW: u64 = 15 * 60_000;

fn unsigned(raw: u64, scale: f64) -> Decoded {
    #[allow(clippy::cast_precision_loss)]
    Decoded {
        raw: RawValue::Unsigned(raw),
        value: PointValue::Number(raw as f64 * scale),
    }
}

fn boolean(b: bool) -> Decoded {
    Decoded {
        raw: RawValue::Bool(b),
        value: PointValue::Bool(b),
    }
}

/// Six windows: 0 good (energy and parts rise, the lathe runs under
/// program control half the time), 1 no output (parts stand still), 2
/// partial (cnc-1 offline for a minute), 3 and 4 nothing polled (no data),
/// 5 polled again.
pub fn kpi() -> Payloads {
    let mut engine = KpiEngine::new(&kpi_config());
    let mut windows: Vec<KpiWindowOut> = Vec::new();
    let mut parts = 100u64;
    // From a minute before the first window, so its start has samples.
    for s in 0..(6 * WINDOW / 1000 + 60) {
        let t = T0 - 60_000 + s * 1000;
        let w = t.saturating_sub(T0) / WINDOW;
        if w == 3 || w == 4 {
            continue;
        }
        let energy = unsigned(1_000_000 + s * 37, 0.01);
        engine.on_poll("meter", t, &[("energy", Ok(&energy))]);
        if w != 1 && s % 7 == 0 {
            parts += 1;
        }
        let offline = w == 2 && (t - T0) % WINDOW >= 120_000 && (t - T0) % WINDOW < 180_000;
        if w == 2 && (t - T0) % WINDOW == 120_000 {
            engine.on_availability("cnc-1", t, false);
        }
        if w == 2 && (t - T0) % WINDOW == 180_000 {
            engine.on_availability("cnc-1", t, true);
        }
        if offline {
            engine.on_poll(
                "cnc-1",
                t,
                &[
                    ("parts", Err("timeout")),
                    ("run_state", Err("timeout")),
                    ("auto", Err("timeout")),
                ],
            );
        } else {
            let p = unsigned(parts, 1.0);
            let run = unsigned(3, 1.0);
            let auto = boolean(s % 2 == 0);
            engine.on_poll(
                "cnc-1",
                t,
                &[
                    ("parts", Ok(&p)),
                    ("run_state", Ok(&run)),
                    ("auto", Ok(&auto)),
                ],
            );
        }
        windows.extend(engine.due(t, true));
    }
    windows.extend(engine.due(T0 + 7 * WINDOW, true));
    let mut out = Payloads::new();
    let mut seq = 2000;
    for w in windows {
        let name = format!("kpi_{}_{}", w.kind.as_str(), w.quality.as_str());
        seq += 1;
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        out.push((name, env(seq, w.window.end + 2000).wrap(&w.body)));
    }
    out
}
