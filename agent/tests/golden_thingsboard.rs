//! Golden payloads of the `thingsboard` dialect: every message kind, the
//! session messages (connect, disconnect, attributes, status) and a batch,
//! byte for byte, from fixed inputs (`tests/golden/thingsboard/`).
//! Each fixture is one publish: its first line the topic, the rest the payload.
//!
//! `SPINDLE_BLESS=1 cargo test -p spindle --test golden_thingsboard`
//! rewrites the fixtures (only ever on purpose, with the reason in the commit).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::sync::Arc;

use spindle::message::{
    AvailabilityChange, AvailabilityReason, BusHealth, CarrierFigures, CncCoverage, DeviceHealth,
    DeviceState, DropReason, EnergyPerOutput, ErrorCounts, ErrorWord, GapReport, Health,
    KpiFigures, KpiFlag, KpiWindow, Latency, Message, MqttHealth, OutboxHealth, Quality,
    Reachability, Reading, Status, StatusReason, Telemetry, Value, WindowSpan,
};
use spindle::wire::thingsboard::{self as tb, Entry, Gateway, Subject};

const STORE: &str = "6f1c0e2a9b8d4c3f8e7a6b5c4d3e2f10";
const TS: u64 = 1_764_201_600_123;

fn check(name: &str, topic: &str, payload: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/thingsboard")
        .join(format!("{name}.txt"));
    let got = format!("{topic}\n{payload}\n");
    if std::env::var_os("SPINDLE_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got, want, "publish {name} differs from its golden fixture");
    let v: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert!(v.is_object());
    assert!(
        !payload.contains("null"),
        "ThingsBoard refuses null values: {payload}"
    );
}

fn gateway() -> Gateway {
    let config = spindle_config::parse(
        "golden.toml",
        r#"
[agent]
id = "gw-017"
site = "gedian-acme"
data_dir = "/tmp/spindle-golden"
timezone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"
dialect = "thingsboard"

[[serial]]
name = "rs485-1"
port = "/dev/ttyS1"
baud = 9600

[[device]]
name = "meter-line1"
serial = "rs485-1"
unit = 3
profile = "chint-dtsu666"

[[device]]
name = "cnc-07"
tcp = "127.0.0.1:5020"
unit = 1

[[device.point]]
name = "parts"
area = "holding"
address = 0
type = "u32"
"#,
    )
    .unwrap();
    Gateway::from_config(&config)
}

fn telemetry(snapshot: bool) -> Message {
    Message::Telemetry(Telemetry {
        ts: TS,
        device: Arc::from("meter-line1"),
        points: vec![
            (Arc::from("voltage_a"), Reading::Value(Value::Number(229.8))),
            (
                Arc::from("energy_import"),
                Reading::Value(Value::Number(12345.0)),
            ),
            (Arc::from("running"), Reading::Value(Value::Bool(true))),
            (
                Arc::from("serial_no"),
                Reading::Value(Value::Text(Arc::from("SN\"42"))),
            ),
            (
                Arc::from("power_factor"),
                Reading::Error(ErrorWord::Exception(2)),
            ),
            (Arc::from("frequency"), Reading::Error(ErrorWord::Timeout)),
        ],
        snapshot,
    })
}

fn availability(state: Reachability, reason: AvailabilityReason) -> Message {
    Message::Availability(AvailabilityChange {
        ts: TS,
        device: "meter-line1".into(),
        state,
        reason,
    })
}

fn health() -> Message {
    Message::Health(Health {
        history: None,
        mqtt_auth_refused: Some(2),
        ts: TS,
        uptime_s: 3600.5,
        clock_plausible: true,
        devices: vec![DeviceHealth {
            name: "meter-line1".into(),
            state: DeviceState::Online,
            polls: 3600,
            good_polls: 3590,
            overruns: 1,
            errors: ErrorCounts {
                timeout: 8,
                exception: 2,
                decode: 0,
                disconnected: 0,
            },
            latency: Some(Latency {
                last_ms: 41.25,
                mean_ms: 40.5,
                max_ms: 120.0,
            }),
        }],
        buses: vec![BusHealth {
            name: "rs485-1".into(),
            load_estimated: 0.42,
            busy_share: 0.4,
            late_replies: 0,
        }],
        outbox: OutboxHealth {
            depth: 12,
            bytes: 4096,
            oldest_age_s: None,
            ..OutboxHealth::default()
        },
        mqtt: MqttHealth {
            connects: 1,
            disconnects: 0,
            published: 3700,
            acked: 3688,
        },
        disk_free_bytes: Some(1_073_741_824),
        bytes_written: None,
    })
}

fn energy(quality: Quality, output: Option<f64>) -> Message {
    let value = output.map(|o| 88.1 / o);
    Message::Kpi(KpiWindow {
        sample_completeness: None,
        ts: 1_764_205_260_000,
        name: "line1".into(),
        window: WindowSpan {
            start: 1_764_201_600_000,
            end: 1_764_205_200_000,
        },
        figures: KpiFigures::EnergyPerOutput(EnergyPerOutput {
            over_limit: None,
            vs_baseline: None,
            value,
            unit: "kgce/piece".into(),
            co2_kg_per_unit: output.map(|o| 385.2 / o),
            output,
            kgce: Some(88.1),
            kgco2: Some(385.2),
            energy: vec![CarrierFigures {
                basis: None,
                carrier: "electricity".into(),
                consumption: Some(715.2),
                unit: "kWh".into(),
                kgce: Some(87.9),
                kgco2: Some(379.5),
                kgce_per_unit: Some(0.1229),
                kgco2_per_unit: Some(0.5306),
            }],
        }),
        quality,
        flags: if quality == Quality::Good {
            vec![]
        } else {
            vec![KpiFlag::Reset, KpiFlag::Offline("meter-line1".into())]
        },
    })
}

fn cnc() -> Message {
    Message::Kpi(KpiWindow {
        sample_completeness: None,
        ts: 1_764_202_560_000,
        name: "plant".into(),
        window: WindowSpan {
            start: 1_764_201_600_000,
            end: 1_764_202_500_000,
        },
        figures: KpiFigures::CncCoverage(CncCoverage {
            count_ratio: Some(0.75),
            networked_ratio: Some(1.0),
            time_ratio: None,
            equipment: 4,
            numerically_controlled: 3,
            networked: 4,
            running_s: 2412.0,
            cnc_running_s: 2195.0,
        }),
        quality: Quality::Good,
        flags: vec![],
    })
}

#[test]
fn every_message_kind_renders_as_its_golden_thingsboard_publish() {
    let gw = gateway();
    let cases: Vec<(&str, Message, u64)> = vec![
        ("telemetry_values_and_errors", telemetry(false), 1042),
        ("telemetry_snapshot", telemetry(true), 1043),
        (
            "availability_online",
            availability(Reachability::Online, AvailabilityReason::PollOk),
            1044,
        ),
        (
            "availability_offline_timeout",
            availability(
                Reachability::Offline,
                AvailabilityReason::Error(ErrorWord::Timeout),
            ),
            1045,
        ),
        ("health", health(), 1046),
        (
            "gap_outbox_full",
            Message::Gap(GapReport::Dropped {
                ts: TS,
                from_seq: 10,
                to_seq: 19,
                count: 10,
                reason: DropReason::OutboxFull,
            }),
            1047,
        ),
        (
            "gap_store_damaged",
            Message::Gap(GapReport::StoreDamaged {
                ts: TS,
                lost_store: None,
                detail: "checksum mismatch".into(),
            }),
            1,
        ),
        (
            "kpi_energy_per_output_good",
            energy(Quality::Good, Some(120.0)),
            2211,
        ),
        (
            "kpi_energy_per_output_no_output",
            energy(Quality::NoOutput, None),
            2212,
        ),
        ("kpi_cnc_coverage_good", cnc(), 2213),
    ];
    for (name, message, seq) in cases {
        let (topic, payload) = tb::render(&gw, &message, seq, STORE);
        check(name, topic, &payload);
    }
}

#[test]
fn session_messages_render_as_their_golden_publishes() {
    let gw = gateway();
    let meter = Subject::Device("meter-line1".into());
    let cnc07 = Subject::Device("cnc-07".into());
    let kpi = Subject::Kpi(spindle::message::KpiKind::CncCoverage, "plant".into());
    check("connect_profile", tb::CONNECT, &tb::connect(&gw, &meter));
    check("connect_no_profile", tb::CONNECT, &tb::connect(&gw, &cnc07));
    check("connect_kpi", tb::CONNECT, &tb::connect(&gw, &kpi));
    check("disconnect", tb::DISCONNECT, &tb::disconnect(&gw, &meter));
    check(
        "attributes_serial",
        tb::GATEWAY_ATTRIBUTES,
        &tb::attributes(&gw, &meter),
    );
    check(
        "attributes_tcp",
        tb::GATEWAY_ATTRIBUTES,
        &tb::attributes(&gw, &cnc07),
    );
    check(
        "attributes_kpi",
        tb::GATEWAY_ATTRIBUTES,
        &tb::attributes(&gw, &kpi),
    );
    let status = Status {
        state: Reachability::Offline,
        ts: TS,
        reason: Some(StatusReason::ConnectionLost),
        store: STORE.to_owned(),
        version: "0.1.0".to_owned(),
        config_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            .to_owned(),
    };
    check("status_will", tb::ME_ATTRIBUTES, &tb::status(&status));
}

#[test]
fn a_batch_of_three_records_renders_as_its_golden_publish() {
    let gw = gateway();
    let parts = Message::Telemetry(Telemetry {
        ts: TS + 1000,
        device: Arc::from("cnc-07"),
        points: vec![(Arc::from("parts"), Reading::Value(Value::Number(7.0)))],
        snapshot: false,
    });
    let run: Vec<(u64, Entry)> = [(1042, telemetry(false)), (1043, parts), (1044, cnc())]
        .into_iter()
        .map(|(seq, m)| (seq, tb::entry(&gw, &m, seq, STORE).unwrap()))
        .collect();
    let batch = tb::batch(&run, 65_536);
    assert_eq!(batch.seqs, vec![1042, 1043, 1044]);
    check("batch", tb::GATEWAY_TELEMETRY, &batch.payload);
    // Under a limit that holds two of them, the first two go together.
    let two = tb::GATEWAY_TELEMETRY.len()
        + tb::PACKET_OVERHEAD
        + tb::gateway_telemetry(&run[..2].iter().map(|(_, e)| e.clone()).collect::<Vec<_>>()).len();
    assert_eq!(tb::batch(&run, two).seqs, vec![1042, 1043]);
    assert_eq!(tb::batch(&run, two - 1).seqs, vec![1042]);
}
