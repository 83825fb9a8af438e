//! A broker that refuses the agent's credentials, in both dialects: every
//! refused attempt is counted (`mqtt.auth_refused` in `health`), the agent
//! keeps retrying with backoff, and once the broker accepts it the count
//! arrives in the `health` payload (validated against its schema in the
//! spindle dialect). The binary's log never holding the token is tested in
//! `thingsboard.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::events::Counters;
use spindle::health::{HealthSources, health_report};
use spindle::message::{Message as Msg, Outgoing, Reachability, Status};
use spindle::outbox::{Outbox, OutboxOptions};
use spindle::publish::connection::ConnectionSettings;
use spindle::publish::{Publisher, PublisherOptions};
use spindle::wire::Dialect;
use spindle::wire::thingsboard::{self as tb, Gateway};
use spindle_config::model::{DeviceNameTemplate, MqttUrl, PasswordSource, Replay};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::subscriber::Subscriber;

const LIMIT: usize = 1 << 16;

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

/// A broker that knows only `someone-else` and allows no anonymous client.
fn refusing_broker(dir: &std::path::Path) -> Broker {
    let passwords = dir.join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["someone-else", "secret"])
        .status()
        .unwrap();
    assert!(made.success(), "mosquitto_passwd");
    Broker::start_with(
        false,
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    )
    .unwrap()
}

/// Runs a publisher of `dialect` against a broker that refuses its
/// credentials, lets the broker accept them, publishes a `health` report
/// read from the publisher's counters and returns (refusals counted,
/// the health payload received on `health_topic`).
fn refused_then_accepted(thingsboard: bool, health_topic: &str) -> (u64, serde_json::Value) {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = refusing_broker(dir.path());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not-the-password-0815").unwrap();
    let mut mqtt = spindle_config::model::Mqtt {
        url: MqttUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port: broker.port(),
        },
        client_id: format!("spindle-auth-test-{}", std::process::id()),
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        topic_prefix: "spindle".into(),
        keep_alive: Duration::from_secs(5),
        reconnect_max: Duration::from_millis(500),
        dialect: spindle_config::model::Dialect::Spindle,
        token: None,
        device_name: DeviceNameTemplate::default(),
        max_packet: LIMIT,
    };
    let dialect = if thingsboard {
        mqtt.dialect = spindle_config::model::Dialect::ThingsBoard;
        mqtt.token = Some(PasswordSource::File(secret));
        Dialect::ThingsBoard(Box::new(Gateway::new(
            "site",
            "gw",
            DeviceNameTemplate::default(),
        )))
    } else {
        mqtt.username = Some("spindle".into());
        mqtt.password = Some(PasswordSource::File(secret));
        Dialect::Spindle {
            topic_base: "spindle/site/gw/".into(),
        }
    };
    let settings = ConnectionSettings::new(&mqtt, "spindle/site/gw/status".into(), status(), LIMIT)
        .unwrap()
        .with_dialect(&dialect);
    let outbox = Outbox::open(
        &dir.path().join("outbox"),
        OutboxOptions {
            max_size: 64 << 20,
            max_age: Duration::from_secs(3600),
            max_record: 256 << 10,
            cache_capacity: 4 << 20,
        },
        spindle::clock::now_ms(),
    )
    .unwrap()
    .0;
    let counters = Arc::new(Counters::default());
    let publisher = Publisher::new(
        outbox,
        PublisherOptions {
            topic_base: "spindle/site/gw/".into(),
            dialect,
            window: 64,
            replay_rate: None,
            status: status(),
            max_message: LIMIT,
            flush_interval: Duration::from_millis(50),
        },
        Replay::LiveFirst,
        Arc::clone(&counters),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = rt.spawn(publisher.run(settings, rx, Duration::from_secs(3)));

    // Refused again and again: counted, never connected.
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters.mqtt_auth_refused.get() < 3 {
        assert!(
            Instant::now() < deadline,
            "refusals are counted ({} so far)",
            counters.mqtt_auth_refused.get()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        counters.mqtt_connects.get(),
        0,
        "the broker never let it in"
    );

    // The broker accepts it now: the agent comes in by its own retries.
    broker.reconfigure("").unwrap();
    let sub = Subscriber::start(broker.port(), health_topic).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while counters.mqtt_connects.get() == 0 {
        assert!(Instant::now() < deadline, "the agent retried and connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = counters.mqtt_auth_refused.get();
    let sources = HealthSources {
        counters: Arc::clone(&counters),
        ..HealthSources::default()
    };
    let report = health_report(&sources, 1.0, spindle::clock::now_ms(), true, dir.path());
    rt.block_on(tx.send(Outgoing::from(Msg::Health(report))))
        .unwrap();
    let (got, messages) = sub.wait_until(Duration::from_secs(10), |m| !m.is_empty());
    assert!(got, "the health report arrives");
    drop(tx);
    rt.block_on(task).unwrap();
    (refused, messages[0].json())
}

#[test]
fn refused_credentials_are_counted_in_health_in_the_spindle_dialect() {
    let (refused, health) = refused_then_accepted(false, "spindle/site/gw/health");
    assert!(refused >= 3);
    assert_eq!(health["mqtt"]["auth_refused"].as_u64(), Some(refused));
    spindle_hil_tests::schema::validate("health", &health).unwrap();
}

#[test]
fn a_refused_token_is_counted_in_health_in_the_thingsboard_dialect() {
    let (refused, health) = refused_then_accepted(true, tb::ME_TELEMETRY);
    assert!(refused >= 3);
    assert_eq!(
        health["values"]["mqtt.auth_refused"].as_u64(),
        Some(refused),
        "{health}"
    );
}
