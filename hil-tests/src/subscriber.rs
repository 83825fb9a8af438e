//! An MQTT subscriber that records every message it receives, for assertions.
//!
//! Runs rumqttc's blocking client on its own thread, subscribed with `QoS` 1 to
//! a filter; tests wait on a predicate over everything received so far
//! (woken by each arrival, no polling sleeps).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// One received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    /// The payload as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<Message>>,
    arrived: Condvar,
}

/// A recording subscriber. Stops when dropped.
pub struct Subscriber {
    shared: Arc<Shared>,
    client: Client,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

impl Subscriber {
    /// Connects to the broker on `port` and subscribes to `filter`; returns
    /// once the subscription is acknowledged.
    pub fn start(port: u16, filter: &str) -> std::io::Result<Subscriber> {
        let id = format!("hil-sub-{}", rand_suffix());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_clean_session(false);
        let (client, mut connection) = Client::new(opts, 64);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        };
                        s.messages
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(msg);
                        s.arrived.notify_all();
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| std::io::Error::other("subscription was not acknowledged within 10 s"))?;
        Ok(Subscriber {
            shared,
            client,
            thread: Some(thread),
        })
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Message> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `done` holds over the messages received so far, or `limit`
    /// passes; returns the messages either way, and whether `done` held.
    pub fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[Message]) -> bool,
    ) -> (bool, Vec<Message>) {
        let deadline = Instant::now() + limit;
        let mut guard = self
            .shared
            .messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if done(&guard) {
                return (true, guard.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return (false, guard.clone());
            }
            guard = self
                .shared
                .arrived
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", std::process::id())
}
