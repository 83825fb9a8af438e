//! The publisher stops taking messages while a slow flush has a bounded
//! amount appended behind it, and takes the rest once the flush returns:
//! sled would otherwise hold everything appended meanwhile in its log
//! buffers (memory without bound on a slow disk).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle::events::Counters;
use std::sync::Arc as Shared;

use spindle::message::{Message, Outgoing, Reachability, Reading, Status, Telemetry, Value};
use spindle::outbox::{MemStore, Outbox, OutboxOptions};
use spindle::publish::connection::ConnectionSettings;
use spindle::publish::{MAX_UNFLUSHED, Publisher, PublisherOptions};
use spindle_config::model::{Mqtt, MqttUrl, Replay};
use tokio::sync::mpsc;

const BODY: usize = 8 << 10;
const MESSAGES: usize = 400;

/// A loopback port nothing listens on: the publisher keeps retrying it.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn settings() -> ConnectionSettings {
    let mqtt = Mqtt {
        url: MqttUrl {
            tls: false,
            host: "127.0.0.1".into(),
            port: dead_port(),
        },
        client_id: "spindle-backpressure-test".into(),
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        topic_prefix: "spindle".into(),
        reconnect_max: Duration::from_secs(10),
        keep_alive: Duration::from_secs(5),
        dialect: spindle_config::model::Dialect::Spindle,
        token: None,
        device_name: spindle_config::model::DeviceNameTemplate::default(),
        max_packet: 1 << 20,
    };
    ConnectionSettings::new(&mqtt, "spindle/site/gw/status".into(), status(), 1 << 20).unwrap()
}

fn status() -> Status {
    Status {
        state: Reachability::Online,
        ts: 0,
        reason: None,
        store: String::new(),
        version: String::new(),
        config_sha256: String::new(),
    }
}

/// A telemetry message of about `BODY` bytes (a text point).
#[allow(clippy::cast_precision_loss)]
fn message(i: usize) -> Outgoing {
    Message::Telemetry(Telemetry {
        ts: spindle::clock::now_ms(),
        device: Shared::from("dev"),
        points: vec![
            (Shared::from("i"), Reading::Value(Value::Number(i as f64))),
            (
                Shared::from("pad"),
                Reading::Value(Value::Text(Shared::from("x".repeat(BODY).as_str()))),
            ),
        ],
        snapshot: false,
    })
    .into()
}

struct Release(MemStore);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.hold_flushes(false);
    }
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn a_slow_flush_stops_the_publisher_taking_messages_until_it_returns() {
    let store = MemStore::default();
    let opts = OutboxOptions {
        max_size: 64 << 20,
        max_age: Duration::from_secs(3600),
        max_record: 256 << 10,
        cache_capacity: 0,
    };
    let outbox = Outbox::from_store(store.clone(), opts).unwrap();
    let counters = Arc::new(Counters::default());
    let publisher = Publisher::new(
        outbox,
        PublisherOptions {
            topic_base: "spindle/site/gw/".into(),
            dialect: spindle::wire::Dialect::Spindle {
                topic_base: "spindle/site/gw/".into(),
            },
            window: 64,
            replay_rate: None,
            status: status(),
            max_message: 1 << 20,
            flush_interval: Duration::from_millis(100),
        },
        Replay::LiveFirst,
        counters.clone(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A failed assertion must not leave the flush held: the runtime's drop
    // waits for its blocking threads.
    let _release = Release(store.clone());
    let outbox = rt.block_on(async {
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(publisher.run(settings(), rx, Duration::from_millis(200)));
        store.hold_flushes(true);
        tx.send(message(0)).await.unwrap();
        wait_for("the first flush", || store.flushes_waiting() == 1).await;

        // 400 × 8 KiB = 3.2 MiB queued behind a flush that does not return.
        for i in 1..=MESSAGES {
            tx.send(message(i)).await.unwrap();
        }
        let queued = |tx: &mpsc::Sender<Outgoing>| tx.max_capacity() - tx.capacity();
        wait_for("the publisher to take messages", || queued(&tx) < MESSAGES).await;
        // The publisher runs on this thread: when this task runs again it
        // has taken all it will take while the flush is held.
        tokio::task::yield_now().await;
        let written = store.written_while_flush_waited();
        assert!(
            written >= MAX_UNFLUSHED,
            "the publisher stopped early: {written} bytes appended behind the flush"
        );
        assert!(
            written < MAX_UNFLUSHED + BODY as u64 + 256,
            "{written} bytes appended behind a held flush (bound {MAX_UNFLUSHED} + one record)"
        );
        let left = queued(&tx);
        assert!(left > 0, "every message was taken while the flush was held");
        assert_eq!(store.flushes_waiting(), 1);
        assert_eq!(counters.outbox_flush_waits.get(), 1, "the wait is reported");

        // The flush returns: the rest is taken, and nothing was lost.
        store.hold_flushes(false);
        wait_for("the queue to drain", || queued(&tx) == 0).await;
        drop(tx);
        task.await.unwrap()
    });
    assert_eq!(outbox.stats().depth, MESSAGES as u64 + 1);
}
