//! Builds every golden payload from fixed inputs through the agent's API:
//! producers make typed messages, the wire layer renders them. (The
//! fixtures were captured through the API of commit 86b2ec8, from the same
//! inputs; see `golden_payloads.rs`.)

use std::sync::Arc;
use std::time::Duration;

use spindle::health::{BusStats, DeviceStats, HealthSources, health_report};
use spindle::kpi::{KpiEngine, KpiWindowOut, Raw, Sample, SampleValue};
use spindle::message::{
    self, AvailabilityChange, AvailabilityReason, ErrorWord, Message, Reachability, Status,
    StatusReason, Value,
};
use spindle::outbox::{Body, Kind, MemStore, Outbox, OutboxOptions, SledStore, Store, WriteBatch};
use spindle::telemetry::TelemetryEncoder;
use spindle::wire;
use spindle_config::model::Config;

use super::{BYTES_WRITTEN, FREE_BYTES, STORE, TS, pin_text};

type Payloads = Vec<(String, Vec<u8>)>;

fn render(message: &Message, seq: u64) -> Vec<u8> {
    wire::spindle::payload(message, seq, STORE).into_bytes()
}

pub(crate) fn status() -> Payloads {
    let mut out = Payloads::new();
    for (name, state, reason) in [
        ("status_online", Reachability::Online, None),
        (
            "status_offline_shutdown",
            Reachability::Offline,
            Some(StatusReason::Shutdown),
        ),
        (
            "status_will_connection_lost",
            Reachability::Offline,
            Some(StatusReason::ConnectionLost),
        ),
    ] {
        let status = Status {
            state,
            ts: TS,
            reason,
            store: STORE.to_owned(),
            version: "0.1.0".to_owned(),
            config_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                .to_owned(),
        };
        out.push((name.to_owned(), wire::spindle::status(&status).into_bytes()));
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

type Outcome = Result<Value, ErrorWord>;

fn values(v: f64, e: f64) -> Vec<Outcome> {
    vec![
        Ok(Value::Number(v)),
        Ok(Value::Number(e)),
        Ok(Value::Bool(true)),
        Ok(Value::Text(Arc::from("SN-\"7\"\\x"))),
        Ok(Value::Number(0.987)),
    ]
}

fn telemetry_payload(t: Option<message::Telemetry>, seq: u64) -> Vec<u8> {
    render(&Message::Telemetry(t.unwrap()), seq)
}

pub(crate) fn telemetry() -> Payloads {
    let mut out = Payloads::new();
    let config = device_config("always");
    let device = config.devices.first().unwrap();
    let mut always = TelemetryEncoder::new(device);
    let t = always.encode(&values(229.8, 12345.0), TS);
    out.push(("telemetry_always_values".into(), telemetry_payload(t, 1042)));
    let errors: Vec<Outcome> = vec![
        Err(ErrorWord::Timeout),
        Err(ErrorWord::Exception(2)),
        Err(ErrorWord::Decode),
        Err(ErrorWord::Disconnected),
        Ok(Value::Number(-3.5e-7)),
    ];
    let t = always.encode(&errors, TS + 1000);
    out.push(("telemetry_always_errors".into(), telemetry_payload(t, 1043)));

    let config = device_config("on_change");
    let device = config.devices.first().unwrap();
    let mut on_change = TelemetryEncoder::new(device);
    let t = on_change.encode(&values(229.8, 12345.0), TS);
    out.push((
        "telemetry_on_change_snapshot".into(),
        telemetry_payload(t, 7),
    ));
    // 229.8 → 230.4 passes the deadband; the counter moved; an error appears.
    let mut changed = values(230.4, 12346.0);
    if let Some(last) = changed.last_mut() {
        *last = Err(ErrorWord::Exception(11));
    }
    let t = on_change.encode(&changed, TS + 1000);
    out.push(("telemetry_on_change_delta".into(), telemetry_payload(t, 8)));
    out
}

fn availability_change(state: Reachability, reason: AvailabilityReason) -> Message {
    Message::Availability(AvailabilityChange {
        ts: TS,
        device: "meter-line1".into(),
        state,
        reason,
    })
}

pub(crate) fn availability() -> Payloads {
    vec![
        (
            "availability_online".into(),
            render(
                &availability_change(Reachability::Online, AvailabilityReason::PollOk),
                11,
            ),
        ),
        (
            "availability_offline_timeout".into(),
            render(
                &availability_change(
                    Reachability::Offline,
                    AvailabilityReason::Error(ErrorWord::Timeout),
                ),
                12,
            ),
        ),
        (
            "availability_offline_exception".into(),
            render(
                &availability_change(
                    Reachability::Offline,
                    AvailabilityReason::Error(ErrorWord::Exception(4)),
                ),
                13,
            ),
        ),
    ]
}

pub(crate) fn health() -> Payloads {
    let sources = HealthSources::default();
    let mut sources = HealthSources {
        counters: sources.counters,
        ..HealthSources::default()
    };
    let d = Arc::new(DeviceStats::default());
    d.polls.add(60);
    d.good_polls.add(57);
    d.overruns.add(1);
    d.count_error(&ErrorWord::Timeout);
    d.count_error(&ErrorWord::Exception(2));
    d.count_error(&ErrorWord::Decode);
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
    let mut report = health_report(&sources, 60.04, TS, true, std::path::Path::new("/"));
    report.disk_free_bytes = Some(FREE_BYTES);
    report.bytes_written = Some(BYTES_WRITTEN);
    // The same report as an outbox written before the history member holds it.
    let stored: Message = Message::HealthF2(message::HealthF2 {
        ts: report.ts,
        uptime_s: report.uptime_s,
        clock_plausible: report.clock_plausible,
        devices: report.devices.clone(),
        buses: report.buses.clone(),
        outbox: report.outbox,
        mqtt: report.mqtt,
        disk_free_bytes: report.disk_free_bytes,
        bytes_written: report.bytes_written,
    });
    let bytes = message::encode(&stored).unwrap();
    assert_eq!(
        bytes.first(),
        Some(&2),
        "the variant index format 2 has always used for health"
    );
    let back = message::decode(&bytes).unwrap();
    vec![
        ("health".into(), render(&Message::Health(report), 99)),
        (
            "health_stored_before_history".into(),
            wire::spindle::payload(&back, 99, STORE).into_bytes(),
        ),
    ]
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
        .map(|(seq, r)| {
            let Body::Message(bytes) = &r.body else {
                panic!("this build writes typed records")
            };
            let message = message::decode(bytes).unwrap();
            let payload = wire::render("", &message, seq, &id).payload;
            (r.kind, pin_text(payload.as_bytes(), &id, STORE))
        })
        .collect()
}

fn filler(outbox: &mut Outbox<MemStore>, n: usize, ts: u64) {
    for _ in 0..n {
        let message = Message::Telemetry(message::Telemetry {
            ts,
            device: Arc::from("m"),
            points: vec![(Arc::from("a"), message::Reading::Value(Value::Number(1.0)))],
            snapshot: false,
        });
        outbox.append(&message, ts).unwrap();
    }
}

pub(crate) fn gap() -> Payloads {
    let mut out = Payloads::new();
    // Full: a small outbox takes twenty records, drops the oldest, and
    // announces the burst once a quarter is free again. The cap is an input
    // sized to the record: just under seven records, as the 1000 bytes of
    // 86b2ec8 held just under seven of its 142–143-byte finished-JSON
    // records, so the same burst is dropped whatever a record's encoding
    // takes.
    let mut probe = Outbox::from_store(
        MemStore::default(),
        options(1 << 20, Duration::from_secs(3600)),
    )
    .unwrap();
    filler(&mut probe, 1, TS);
    let record = probe.stats().bytes;
    let mut outbox = Outbox::from_store(
        MemStore::default(),
        options(7 * record - 1, Duration::from_secs(3600)),
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

fn unsigned(raw: u64, scale: f64) -> Sample {
    #[allow(clippy::cast_precision_loss)]
    Sample {
        raw: Raw::Unsigned(raw),
        value: SampleValue::Number(raw as f64 * scale),
    }
}

fn boolean(b: bool) -> Sample {
    Sample {
        raw: Raw::Bool(b),
        value: SampleValue::Bool(b),
    }
}

/// Six windows: 0 good (energy and parts rise, the lathe runs under
/// program control half the time), 1 no output (parts stand still), 2
/// partial (cnc-1 offline for a minute), 3 and 4 nothing polled (no data),
/// 5 polled again.
pub(crate) fn kpi() -> Payloads {
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
                    ("parts", Err(&ErrorWord::Timeout)),
                    ("run_state", Err(&ErrorWord::Timeout)),
                    ("auto", Err(&ErrorWord::Timeout)),
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
    for mut w in windows {
        let name = format!("kpi_{}_{}", w.kind().as_str(), w.quality.as_str());
        seq += 1;
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        // Closed at the end plus the grace (the input `ts`).
        w.ts = w.window.end + 2000;
        out.push((name, render(&Message::Kpi(w), seq)));
    }
    out
}

/// An energy-consumption KPI over the meter and a gas meter, 15-minute
/// windows from a 00:00 day start: 0 good, 1 partial (the gas meter missed
/// two of its fifteen minutes of polls: completeness 13/15 < 0.9), 2 and 3
/// nothing polled (no data; the meters come back in 4).
pub(crate) fn kpi_consumption() -> Payloads {
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
name = "gas"
tcp = "127.0.0.1:5022"
unit = 1
poll = "1s"

[[device.point]]
name = "volume"
area = "holding"
address = 0
type = "u32"
scale = 0.1
unit = "m³"
counter = true

[[kpi.energy_consumption]]
name = "plant"
window = "15m"
scope = "workshop-2"
day_start = "00:00"
energy = [ { point = "meter.energy", carrier = "electricity" },
           { point = "gas.volume", carrier = "natural_gas" } ]
"#;
    let config = spindle_config::parse("golden.toml", text).unwrap();
    let mut engine = KpiEngine::new(&config);
    let mut windows: Vec<KpiWindowOut> = Vec::new();
    for s in 0..(5 * WINDOW / 1000 + 60) {
        let t = T0 - 60_000 + s * 1000;
        let w = t.saturating_sub(T0) / WINDOW;
        if w == 2 || w == 3 {
            continue;
        }
        let energy = unsigned(1_000_000 + s * 37, 0.01);
        engine.on_poll("meter", t, &[("energy", Ok(&energy))]);
        let gas_missed = w == 1 && (t - T0) % WINDOW >= 300_000 && (t - T0) % WINDOW < 420_000;
        if gas_missed {
            engine.on_poll("gas", t, &[("volume", Err(&ErrorWord::Timeout))]);
        } else {
            let volume = unsigned(50_000 + s * 3, 0.1);
            engine.on_poll("gas", t, &[("volume", Ok(&volume))]);
        }
        windows.extend(engine.due(t, true));
    }
    windows.extend(engine.due(T0 + 6 * WINDOW, true));
    let mut out = Payloads::new();
    let mut seq = 3000;
    // From the first whole window (the one before it started a minute in).
    for mut w in windows.into_iter().filter(|w| w.window.start >= T0) {
        let name = format!("kpi_{}_{}", w.kind().as_str(), w.quality.as_str());
        seq += 1;
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        w.ts = w.window.end + 2000;
        out.push((name, render(&Message::Kpi(w), seq)));
    }
    out
}

/// A KPI window as an outbox written before energy consumption holds it
/// (`Message::KpiF2`, postcard), read back and rendered: the payload
/// captured from 86b2ec8 for `kpi_energy_per_output_good`.
pub(crate) fn kpi_stored_before_consumption() -> Payloads {
    let stored: Message = Message::KpiF2(message::KpiWindowF2 {
        ts: 1_795_738_502_000,
        name: "line1".to_owned(),
        window: message::WindowSpan {
            start: 1_795_737_600_000,
            end: 1_795_738_500_000,
        },
        figures: message::KpiFiguresF2::EnergyPerOutput(message::EnergyPerOutputF2 {
            value: Some(0.317_253_488_372_093),
            unit: "kgce/piece".to_owned(),
            co2_kg_per_unit: Some(1.369_688_372_093_023),
            output: Some(129.0),
            kgce: Some(40.9257),
            kgco2: Some(176.6898),
            energy: vec![message::CarrierFiguresF2 {
                carrier: "electricity".to_owned(),
                consumption: Some(333.0),
                unit: "kWh".to_owned(),
                kgce: Some(40.9257),
                kgco2: Some(176.6898),
                kgce_per_unit: Some(0.1229),
                kgco2_per_unit: Some(0.5306),
            }],
        }),
        quality: message::Quality::Good,
        flags: Vec::new(),
    });
    let bytes = message::encode(&stored).unwrap();
    assert_eq!(
        bytes.first(),
        Some(&3),
        "the variant index format 2 has always used for KPI windows"
    );
    let back = message::decode(&bytes).unwrap();
    let payload = wire::spindle::payload(&back, 2003, STORE).into_bytes();
    vec![(
        "kpi_energy_per_output_good_stored_before_consumption".to_owned(),
        payload,
    )]
}
