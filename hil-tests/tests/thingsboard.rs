//! The `thingsboard` dialect against a real mosquitto: the gateway API's
//! topics and shapes, connect before data, disconnect after offline, every
//! seq arriving in batches that stay under the packet limit (with a broker
//! whose `max_packet_size` is that limit), and a broker restart that
//! loses nothing and resends batches identically; the real binary: two
//! agents with equal device names feed distinct ThingsBoard devices, and
//! `kill -9`s lose no seq.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use spindle::events::Counters;
use spindle::message::{
    self as msg, AvailabilityChange, AvailabilityReason, ErrorWord, Outgoing, Reachability,
    Reading, Status, Telemetry, Value,
};
use spindle::outbox::{Outbox, OutboxOptions, SledStore};
use spindle::publish::connection::ConnectionSettings;
use spindle::publish::{Publisher, PublisherOptions};
use spindle::wire::Dialect;
use spindle::wire::thingsboard::{self as tb, Gateway};
use spindle_config::model::{DeviceNameTemplate, MqttUrl, Replay};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::schema::validate_thingsboard;
use spindle_hil_tests::subscriber::{Message, Subscriber};
use tokio::sync::mpsc;

/// The packet limit of these tests.
const LIMIT: usize = 4096;
/// The broker's `max_packet_size`: the limit.
const BROKER_LIMIT: usize = LIMIT;

fn mqtt(port: u16) -> spindle_config::model::Mqtt {
    spindle_config::model::Mqtt {
        url: MqttUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        },
        client_id: format!("spindle-tb-test-{}", std::process::id()),
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        topic_prefix: "spindle".into(),
        keep_alive: Duration::from_secs(5),
        reconnect_max: Duration::from_secs(10),
        dialect: spindle_config::model::Dialect::ThingsBoard,
        token: None,
        device_name: DeviceNameTemplate::default(),
        max_packet: LIMIT,
    }
}

fn status() -> Status {
    Status {
        state: Reachability::Online,
        ts: 0,
        reason: None,
        store: "test".into(),
        version: "test".into(),
        config_sha256: String::new(),
    }
}

fn spawn_publisher(
    port: u16,
    dir: &std::path::Path,
) -> (
    mpsc::Sender<Outgoing>,
    tokio::task::JoinHandle<Outbox<SledStore>>,
) {
    spawn_paced_publisher(port, dir, None, Arc::default())
}

/// [`spawn_publisher`] with a `replay_rate`.
fn spawn_paced_publisher(
    port: u16,
    dir: &std::path::Path,
    replay_rate: Option<std::num::NonZeroU32>,
    counters: Arc<Counters>,
) -> (
    mpsc::Sender<Outgoing>,
    tokio::task::JoinHandle<Outbox<SledStore>>,
) {
    let dialect = Dialect::ThingsBoard(Box::new(Gateway::new(
        "site",
        "gw",
        DeviceNameTemplate::default(),
    )));
    let (tx, rx) = mpsc::channel(256);
    let settings = ConnectionSettings::new(&mqtt(port), String::new(), status(), LIMIT)
        .unwrap()
        .with_dialect(&dialect);
    let opts = OutboxOptions {
        max_size: 64 << 20,
        max_age: Duration::from_secs(3600),
        max_record: 256 << 10,
        cache_capacity: 4 << 20,
    };
    let outbox = Outbox::open(&dir.join("outbox"), opts, spindle::clock::now_ms())
        .unwrap()
        .0;
    let publisher = Publisher::new(
        outbox,
        PublisherOptions {
            topic_base: "spindle/site/gw/".into(),
            dialect,
            window: 64,
            replay_rate,
            status: status(),
            max_message: LIMIT,
            flush_interval: Duration::from_millis(100),
        },
        Replay::LiveFirst,
        counters,
    );
    let task = tokio::spawn(publisher.run(settings, rx, Duration::from_secs(3)));
    (tx, task)
}

#[allow(clippy::cast_precision_loss)]
fn telemetry(i: u64) -> msg::Message {
    msg::Message::Telemetry(Telemetry {
        ts: 1_764_201_600_000 + i,
        device: Arc::from(["meter-1", "meter-2", "cnc-7"][(i % 3) as usize]),
        points: vec![
            (Arc::from("i"), Reading::Value(Value::Number(i as f64))),
            (Arc::from("pf"), Reading::Error(ErrorWord::Timeout)),
        ],
        snapshot: false,
    })
}

fn availability(device: &str, state: Reachability) -> msg::Message {
    msg::Message::Availability(AvailabilityChange {
        ts: spindle::clock::now_ms(),
        device: device.into(),
        state,
        reason: AvailabilityReason::Error(ErrorWord::Timeout),
    })
}

/// Every payload received matches the schema of its topic.
fn schema_checked(messages: &[Message]) {
    let checked = validate_thingsboard(
        messages
            .iter()
            .map(|m| (m.topic.as_str(), m.payload.as_slice())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, messages.len());
}

/// Every `seq` key in gateway telemetry, with the publishes' seqs.
fn seqs(messages: &[Message]) -> BTreeSet<u64> {
    messages
        .iter()
        .filter(|m| m.topic == tb::GATEWAY_TELEMETRY)
        .flat_map(|m| publish_seqs(&m.json()))
        .collect()
}

fn publish_seqs(payload: &Json) -> Vec<u64> {
    payload
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .flat_map(|entries| entries.as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["values"]["seq"].as_u64())
        .collect()
}

#[test]
fn every_record_arrives_in_the_gateway_shape_in_batches_under_the_packet_limit() {
    let _serial = one_at_a_time();
    // mosquitto disconnects a client that sends a larger packet, as ThingsBoard does.
    let broker = Broker::start_with(false, &format!("max_packet_size {BROKER_LIMIT}\n")).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (tx, task) = spawn_publisher(broker.port(), dir.path());
        for i in 0..3000 {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        tx.send(availability("meter-2", Reachability::Offline).into())
            .await
            .unwrap();
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(40), |m| {
                seqs(m).len() >= 3001 && m.iter().any(|m| m.topic == tb::DISCONNECT)
            })
        });
        assert!(ok, "only {} of 3001 seqs arrived", seqs(&got).len());
        drop(tx);
        task.await.unwrap()
    });
    let got = sub.messages();
    schema_checked(&got);
    assert_eq!(seqs(&got), (1..=3001).collect::<BTreeSet<u64>>());
    let mut batched = 0;
    for m in &got {
        assert!(
            m.topic.len() + m.payload.len() + tb::PACKET_OVERHEAD <= LIMIT,
            "a {} publish of {} bytes",
            m.topic,
            m.payload.len()
        );
        let v = m.json();
        assert!(v.is_object(), "{} is not a JSON object", m.topic);
        match m.topic.as_str() {
            tb::GATEWAY_TELEMETRY => {
                for (device, entries) in v.as_object().unwrap() {
                    assert!(device.starts_with("site.gw."), "{device}");
                    for e in entries.as_array().unwrap() {
                        assert!(e["ts"].is_u64());
                        let values = e["values"].as_object().unwrap();
                        assert!(values["seq"].is_u64() && values["store"].is_string());
                        if values.contains_key("i") {
                            assert_eq!(values["pf_error"], "timeout");
                        }
                    }
                }
                if publish_seqs(&v).len() > 1 {
                    batched += 1;
                }
            }
            tb::CONNECT => assert!(v["device"].is_string() && v["type"] == "modbus-device"),
            tb::DISCONNECT => assert_eq!(v["device"], "site.gw.meter-2"),
            tb::GATEWAY_ATTRIBUTES => {
                let (name, attrs) = v.as_object().unwrap().iter().next().unwrap();
                assert_eq!(attrs["spindle_device"], name.trim_start_matches("site.gw."));
            }
            tb::ME_ATTRIBUTES => assert!(v["state"] == "online" || v["state"] == "offline"),
            other => panic!("unexpected topic {other}"),
        }
    }
    assert!(
        batched > 10,
        "only {batched} publishes carried several records"
    );
    // Each device is connected (then described) before its first data.
    for device in ["site.gw.meter-1", "site.gw.meter-2", "site.gw.cnc-7"] {
        let at = |topic: &str| {
            got.iter().position(|m| {
                m.topic == topic
                    && if topic == tb::GATEWAY_TELEMETRY || topic == tb::GATEWAY_ATTRIBUTES {
                        m.json().get(device).is_some()
                    } else {
                        m.json()["device"] == device
                    }
            })
        };
        let (connect, attrs, data) = (
            at(tb::CONNECT).unwrap(),
            at(tb::GATEWAY_ATTRIBUTES).unwrap(),
            at(tb::GATEWAY_TELEMETRY).unwrap(),
        );
        assert!(
            connect < attrs && attrs < data,
            "{device}: {connect} {attrs} {data}"
        );
    }
}

#[test]
fn a_broker_restart_loses_nothing_and_resent_batches_carry_the_same_bytes() {
    let _serial = one_at_a_time();
    let mut broker = Broker::start(false).unwrap();
    let port = broker.port();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = Subscriber::start(port, "v1/#").unwrap();
    let (before, after) = rt.block_on(async {
        let (tx, task) = spawn_publisher(port, dir.path());
        for i in 0..600 {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        let (seen, _) = tokio::task::block_in_place(|| {
            first.wait_until(Duration::from_secs(30), |m| seqs(m).len() >= 600)
        });
        assert!(seen, "the first 600 arrive while the broker is up");
        broker.stop();
        let before = first.messages();
        for i in 600..1800 {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        broker.restart().unwrap();
        let sub = tokio::task::block_in_place(|| Subscriber::start(port, "v1/#").unwrap());
        let have = seqs(&before);
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(40), |m| {
                let mut all = have.clone();
                all.extend(seqs(m));
                all.len() >= 1800
            })
        });
        drop(tx);
        let _ = task.await;
        assert!(ok, "records missing after the broker restart");
        (before, got)
    });
    schema_checked(&before);
    schema_checked(&after);
    let mut all = seqs(&before);
    all.extend(seqs(&after));
    assert_eq!(all, (1..=1800).collect::<BTreeSet<u64>>());
    assert!(
        after.iter().any(|m| m.topic == tb::CONNECT),
        "devices are connected again after the reconnect"
    );
    // A batch of several records sent twice (before and after the restart)
    // has the same bytes both times.
    let mut batches: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut resent = 0;
    for m in before.iter().chain(&after) {
        if m.topic != tb::GATEWAY_TELEMETRY {
            continue;
        }
        let s = publish_seqs(&m.json());
        if s.len() < 2 {
            continue;
        }
        let first = *s.iter().min().unwrap();
        if let Some(earlier) = batches.get(&first) {
            assert_eq!(
                earlier, &m.payload,
                "batch at seq {first} rebuilt differently"
            );
            resent += 1;
        } else {
            batches.insert(first, m.payload.clone());
        }
    }
    eprintln!("{resent} batches were seen twice");
}

#[test]
fn a_message_over_the_packet_limit_is_refused_without_a_seq_and_the_rest_flows() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outbox = rt.block_on(async {
        let (tx, task) = spawn_publisher(broker.port(), dir.path());
        for i in 0..100 {
            tx.send(telemetry(i).into()).await.unwrap();
            if i == 50 {
                let huge = msg::Message::Telemetry(Telemetry {
                    ts: spindle::clock::now_ms(),
                    device: Arc::from("meter-1"),
                    points: vec![(
                        Arc::from("serial_no"),
                        Reading::Value(Value::Text(Arc::from("x".repeat(LIMIT).as_str()))),
                    )],
                    snapshot: false,
                });
                tx.send(huge.into()).await.unwrap();
            }
        }
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(30), |m| seqs(m).len() >= 100)
        });
        assert!(ok, "only {} of 100 arrived", seqs(&got).len());
        drop(tx);
        task.await.unwrap()
    });
    schema_checked(&sub.messages());
    assert_eq!(
        seqs(&sub.messages()),
        (1..=100).collect::<BTreeSet<u64>>(),
        "the refused message used no seq"
    );
    assert_eq!(outbox.stats().depth, 0);
}

/// The real binary with `dialect = "thingsboard"` as agent `id` over `plant`.
fn binary_config(broker: &Broker, plant: &spindle_hil_tests::plant::Plant, id: &str) -> String {
    spindle_hil_tests::plant::agent_toml(
        &broker.url(),
        "flush_interval = \"20ms\"",
        &plant.devices_toml("50ms"),
    )
    .replace("id = \"gw-1\"", &format!("id = \"{id}\""))
    .replace(
        "keep_alive = \"5s\"\n",
        "keep_alive = \"5s\"\ndialect = \"thingsboard\"\ntoken_env = \"SPINDLE_TB_TOKEN\"\n",
    )
}

/// (store, seq) of every record received, from gateway and gateway-own telemetry.
fn stored_seqs(messages: &[Message]) -> BTreeMap<String, BTreeSet<u64>> {
    let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for m in messages {
        let v = m.json();
        let entries: Vec<Json> = match m.topic.as_str() {
            tb::GATEWAY_TELEMETRY => v
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
                .flat_map(|e| e.as_array().cloned().unwrap_or_default())
                .collect(),
            tb::ME_TELEMETRY => vec![v],
            _ => continue,
        };
        for e in entries {
            let values = &e["values"];
            if let (Some(store), Some(seq)) = (values["store"].as_str(), values["seq"].as_u64()) {
                out.entry(store.to_owned()).or_default().insert(seq);
            }
        }
    }
    out
}

#[test]
fn two_agents_with_equal_device_names_feed_distinct_devices_and_kill_9s_lose_nothing() {
    use spindle_hil_tests::agent::AgentProcess;
    let _serial = one_at_a_time();
    let plant = spindle_hil_tests::plant::Plant::tcp(2).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let env = [("SPINDLE_TB_TOKEN", "hil-token")];
    let mut one =
        AgentProcess::start_with_env(&binary_config(&broker, &plant, "gw-1"), &env).unwrap();
    let mut two =
        AgentProcess::start_with_env(&binary_config(&broker, &plant, "gw-2"), &env).unwrap();
    let names = [
        "hil.gw-1.dev0",
        "hil.gw-1.dev1",
        "hil.gw-2.dev0",
        "hil.gw-2.dev1",
    ];
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        names.iter().all(|n| {
            m.iter()
                .any(|x| x.topic == tb::GATEWAY_TELEMETRY && x.json().get(*n).is_some())
        })
    });
    assert!(
        ok,
        "both agents' devices arrive under their own names; log:\n{}",
        one.log()
    );
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(150 + 97 * round));
        one.kill9();
        one.restart().unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    for agent in [&mut one, &mut two] {
        let status = agent.terminate(Duration::from_secs(5));
        assert!(
            status.is_some_and(|s| s.success()),
            "clean stop; log:\n{}",
            agent.log()
        );
    }
    let got = sub.messages();
    schema_checked(&got);
    let stores = stored_seqs(&got);
    assert_eq!(stores.len(), 2, "one store per agent: {:?}", stores.keys());
    for (store, seqs) in &stores {
        let last = *seqs.last().unwrap();
        assert!(last > 50, "store {store}: only {last} records");
        let holes: Vec<u64> = (1..=last).filter(|s| !seqs.contains(s)).take(5).collect();
        assert!(
            holes.is_empty(),
            "store {store}: seqs missing after kill -9s: {holes:?}"
        );
    }
    // Every telemetry entry's values are the simulated registers.
    for m in got.iter().filter(|m| m.topic == tb::GATEWAY_TELEMETRY) {
        for (device, entries) in m.json().as_object().unwrap() {
            let base = if device.ends_with("dev1") { 100 } else { 0 };
            for e in entries.as_array().unwrap() {
                if let Some(r3) = e["values"].get("r3") {
                    assert_eq!(r3.as_u64(), Some(base + 3), "{device}");
                }
            }
        }
    }
    assert!(
        got.iter()
            .any(|m| m.topic == tb::CONNECT && m.json()["device"] == "hil.gw-2.dev1"),
        "connect names the device by the template"
    );
    assert!(
        !one.log().contains("hil-token"),
        "the token is never logged"
    );
}

#[test]
fn a_broker_that_refuses_the_token_is_retried_and_the_token_never_logged() {
    use spindle_hil_tests::agent::AgentProcess;
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["someone-else", "secret"])
        .status()
        .unwrap();
    assert!(made.success(), "mosquitto_passwd");
    let plant = spindle_hil_tests::plant::Plant::tcp(1).unwrap();
    let broker = Broker::start_with(
        false,
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::start_with_env(
        &binary_config(&broker, &plant, "gw-1"),
        &[("SPINDLE_TB_TOKEN", "refused-token-4711")],
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let log = agent.log();
    let refusals = log.matches("return code: `NotAuthorized`").count();
    assert!(
        refusals >= 2,
        "the agent keeps retrying ({refusals} refusals); log:\n{log}"
    );
    assert!(
        !log.contains("refused-token-4711"),
        "the token is never logged"
    );
    let status = agent.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "a refused broker never stops the agent; log:\n{}",
        agent.log()
    );
}

#[test]
fn kpi_windows_health_and_gaps_arrive_as_thingsboard_telemetry() {
    use spindle::message::{
        CncCoverage, DropReason, GapReport, Health, KpiFigures, KpiWindow, MqttHealth,
        OutboxHealth, Quality, WindowSpan,
    };
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = spindle::clock::now_ms();
    let window = KpiWindow {
        sample_completeness: None,
        ts: now,
        name: "plant".into(),
        window: WindowSpan {
            start: now - 900_000,
            end: now,
        },
        figures: KpiFigures::CncCoverage(CncCoverage {
            count_ratio: Some(0.75),
            networked_ratio: Some(1.0),
            time_ratio: None,
            equipment: 4,
            numerically_controlled: 3,
            networked: 4,
            running_s: 10.0,
            cnc_running_s: 5.0,
        }),
        quality: Quality::Partial,
        flags: vec![spindle::message::KpiFlag::Offline("meter-1".into())],
    };
    let health = Health {
        history: None,
        mqtt_auth_refused: Some(0),
        ts: now,
        uptime_s: 1.5,
        clock_plausible: true,
        devices: vec![],
        buses: vec![],
        outbox: OutboxHealth::default(),
        mqtt: MqttHealth::default(),
        disk_free_bytes: None,
        bytes_written: None,
    };
    let gap = GapReport::Dropped {
        ts: now,
        from_seq: 10,
        to_seq: 12,
        count: 3,
        reason: DropReason::MaxAge,
    };
    rt.block_on(async {
        let (tx, task) = spawn_publisher(broker.port(), dir.path());
        for m in [
            msg::Message::Kpi(window),
            msg::Message::Health(health),
            msg::Message::Gap(gap),
        ] {
            tx.send(m.into()).await.unwrap();
        }
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(20), |m| {
                stored_seqs(m).values().any(|s| s.len() >= 3)
            })
        });
        assert!(ok, "three records arrive: {:?}", stored_seqs(&got));
        drop(tx);
        task.await.unwrap()
    });
    let got = sub.messages();
    schema_checked(&got);
    let kpi_device = "site.gw.kpi.cnc_coverage.plant";
    let connect = got
        .iter()
        .find(|m| m.topic == tb::CONNECT)
        .expect("the KPI device is connected");
    assert_eq!(connect.json()["device"], kpi_device);
    assert_eq!(connect.json()["type"], "spindle-kpi");
    let kpi = got
        .iter()
        .find(|m| m.topic == tb::GATEWAY_TELEMETRY)
        .unwrap()
        .json();
    let entry = &kpi[kpi_device][0];
    assert_eq!(
        entry["ts"].as_u64(),
        Some(now - 900_000),
        "ts = window start"
    );
    assert_eq!(entry["values"]["quality"], "partial");
    assert_eq!(entry["values"]["flags"], "offline:meter-1");
    assert!(entry["values"].get("time_ratio").is_none(), "no nulls");
    let own: Vec<Json> = got
        .iter()
        .filter(|m| m.topic == tb::ME_TELEMETRY)
        .map(Message::json)
        .collect();
    assert_eq!(
        own.len(),
        2,
        "health and gap on the gateway's own telemetry"
    );
    assert!(own.iter().any(|v| v["values"]["uptime_s"] == 1.5));
    let gap = own
        .iter()
        .find(|v| v["values"].get("gap_reason").is_some())
        .unwrap();
    assert_eq!(gap["values"]["gap_reason"], "max_age");
    assert_eq!(gap["values"]["gap_count"], 3);
    assert!(gap["values"]["seq"].is_u64() && gap["values"]["store"].is_string());
}

/// Records the cut-off test sends.
const N: u64 = 20_000;

/// Multi-record batches seen more than once, by first seq: how many, and
/// whether every repeat had the first one's bytes.
fn repeated_batches(messages: &[Message]) -> (usize, Vec<u64>) {
    let mut first_seen: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut repeats, mut differing) = (0, Vec::new());
    for m in messages.iter().filter(|m| m.topic == tb::GATEWAY_TELEMETRY) {
        let s = publish_seqs(&m.json());
        if s.len() < 2 {
            continue;
        }
        let first = *s.iter().min().unwrap();
        match first_seen.get(&first) {
            Some(bytes) => {
                repeats += 1;
                if bytes != &m.payload {
                    differing.push(first);
                }
            }
            None => {
                first_seen.insert(first, m.payload.clone());
            }
        }
    }
    (repeats, differing)
}

/// How many times each seq arrived in gateway telemetry.
fn arrivals(messages: &[Message]) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for m in messages.iter().filter(|m| m.topic == tb::GATEWAY_TELEMETRY) {
        for seq in publish_seqs(&m.json()) {
            *out.entry(seq).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn batches_whose_puback_was_cut_off_are_resent_with_the_same_bytes() {
    use spindle_hil_tests::proxy::Proxy;
    // Records (i) taken by the broker whose PUBACKs never came back: UNACKED_FROM..UNACKED_TO.
    const UNACKED_FROM: u64 = 50;
    const UNACKED_TO: u64 = 300;
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let proxy = Proxy::start(broker.port(), true).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    rt.block_on(async {
        let (tx, task) = spawn_publisher(proxy.port(), dir.path());
        for i in 0..UNACKED_FROM {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        let (ok, _) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(20), |m| {
                seqs(m).len() as u64 >= UNACKED_FROM
            })
        });
        assert!(ok, "the first records arrive");
        // The broker takes the next records, but its PUBACKs are lost: they
        // stay unacknowledged in the agent, in batches, until the cut.
        proxy.deafen();
        for i in UNACKED_FROM..UNACKED_TO {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(20), |m| {
                seqs(m).len() as u64 >= UNACKED_TO
            })
        });
        assert!(ok, "the broker took them all ({} seqs)", seqs(&got).len());
        proxy.close();
        proxy.open();
        // Then cut the connection a few times while batches are in flight
        // under load: whatever was repeated must be repeated identically.
        let producer = tokio::spawn(async move {
            for i in UNACKED_TO..N {
                tx.send(telemetry(i).into()).await.unwrap();
                if i % 500 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            tx
        });
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            proxy.close();
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.open();
        }
        let tx = producer.await.unwrap();
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(60), |m| {
                let seen = arrivals(m);
                seen.len() as u64 >= N
                    && (UNACKED_FROM..UNACKED_TO)
                        .all(|seq| seen.get(&(seq + 1)).is_some_and(|&n| n >= 2))
            })
        });
        assert!(
            ok,
            "only {} of {N} arrived, {} of the unacknowledged twice",
            seqs(&got).len(),
            (UNACKED_FROM..UNACKED_TO)
                .filter(|seq| arrivals(&got).get(&(seq + 1)).is_some_and(|&n| n >= 2))
                .count()
        );
        drop(tx);
        task.await.unwrap()
    });
    let got = sub.messages();
    let checked =
        validate_thingsboard(got.iter().map(|m| (m.topic.as_str(), m.payload.as_slice())))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(checked, got.len());
    // Nothing lost.
    assert_eq!(seqs(&got), (1..=N).collect::<BTreeSet<u64>>());
    // Every record the broker took without its PUBACK reaching the agent
    // came again after the reconnect, in batches byte-identical to the first.
    let seen = arrivals(&got);
    for seq in (UNACKED_FROM..UNACKED_TO).map(|i| i + 1) {
        assert!(seen[&seq] >= 2, "seq {seq} was not repeated");
    }
    let (repeats, differing) = repeated_batches(&got);
    assert!(repeats >= 1, "no batch of several records was repeated");
    assert!(
        differing.is_empty(),
        "batches rebuilt differently: {differing:?}"
    );
    let unacked_batches = got
        .iter()
        .filter(|m| m.topic == tb::GATEWAY_TELEMETRY)
        .filter(|m| {
            let s = publish_seqs(&m.json());
            s.len() >= 2 && s.iter().all(|&q| q > UNACKED_FROM && q <= UNACKED_TO)
        })
        .count();
    eprintln!(
        "{repeats} batches of several records were received twice, each with the same bytes \
         ({unacked_batches} publishes carried the {} unacknowledged records)",
        UNACKED_TO - UNACKED_FROM
    );
}

#[test]
fn replay_rate_paces_a_thingsboard_backlog_by_the_records_its_batches_carry() {
    use spindle_hil_tests::proxy::Proxy;
    use std::time::Instant;
    const BACKLOG: u64 = 100;
    let rate = 20; // its burst is a tenth of a second's worth: 2
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let proxy = Proxy::start(broker.port(), false).unwrap();
    let sub = Subscriber::start(broker.port(), "v1/#").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // When the waiting test saw each message (at most a wake-up late).
    let arrived = std::cell::RefCell::new(Vec::<Instant>::new());
    let got = rt.block_on(async {
        let counters = Arc::new(Counters::default());
        let (tx, task) = spawn_paced_publisher(
            proxy.port(),
            dir.path(),
            std::num::NonZeroU32::new(rate),
            Arc::clone(&counters),
        );
        // The broker is out of reach: everything becomes backlog once the
        // publisher has it in its outbox.
        for i in 0..BACKLOG {
            tx.send(telemetry(i).into()).await.unwrap();
        }
        while counters.outbox_appended.get() < BACKLOG {
            tokio::time::sleep(Duration::from_millis(10)).await; // a counter has no notification
        }
        proxy.open();
        let (ok, got) = tokio::task::block_in_place(|| {
            sub.wait_until(Duration::from_secs(30), |m| {
                let mut times = arrived.borrow_mut();
                while times.len() < m.len() {
                    times.push(Instant::now());
                }
                seqs(m).len() as u64 >= BACKLOG
            })
        });
        assert!(ok, "only {} of {BACKLOG} arrived", seqs(&got).len());
        drop(tx);
        task.await.unwrap();
        got
    });
    schema_checked(&got);
    assert_eq!(seqs(&got), (1..=BACKLOG).collect::<BTreeSet<u64>>());
    let arrived = arrived.borrow();
    let carrying: Vec<(usize, usize)> = got
        .iter()
        .enumerate()
        .filter(|(_, m)| m.topic == tb::GATEWAY_TELEMETRY)
        .map(|(i, m)| (i, publish_seqs(&m.json()).len()))
        .collect();
    let largest = carrying.iter().map(|(_, n)| *n).max().unwrap();
    assert!(
        largest <= 2,
        "a backlog batch carries at most the tokens at hand (the burst, 2): one carried {largest}"
    );
    let first = carrying.first().unwrap().0;
    let last = carrying.last().unwrap().0;
    let span = arrived[last].duration_since(arrived[first]);
    #[allow(clippy::cast_precision_loss)]
    let paced = Duration::from_secs_f64((BACKLOG as f64 - 2.0) / f64::from(rate));
    eprintln!(
        "a backlog of {BACKLOG} in {} publishes arrived over {span:?} (at {rate}/s: {paced:?})",
        carrying.len()
    );
    assert!(
        span >= paced / 2,
        "the backlog arrives spread out: over {span:?}, at least half of {paced:?}"
    );
}
