//! Live updates as server-sent events (`GET /api/v1/events`).
//!
//! One [`tokio::sync::broadcast`] channel of [`CAPACITY`] events feeds
//! every subscriber. An event is rendered to JSON once, when it happens,
//! and only while someone subscribes ([`Broadcast::send_with`] checks the
//! receiver count first): with no subscriber a change costs one atomic
//! load. At most [`MAX_SUBSCRIBERS`] subscribe at once (the next gets
//! 503); a subscriber that falls [`CAPACITY`] events behind is dropped
//! (its stream ends, the browser's `EventSource` reconnects and reloads
//! the state) rather than buffered without bound.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value as Json, json};
use tokio::sync::broadcast;

use crate::http::live::reason_word;
use crate::message::{AvailabilityChange, Health, KpiWindow, Message, Reading, Telemetry, Value};
use crate::wire::spindle::{history_line, unstored_payload};

/// Events buffered for the slowest subscriber before it is dropped.
pub const CAPACITY: usize = 256;
/// Live-update subscribers at once.
pub const MAX_SUBSCRIBERS: usize = 16;

/// One rendered event: its SSE `event:` name and its `data:` JSON.
#[derive(Debug)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub data: String,
}

impl LiveEvent {
    pub fn telemetry(t: &Telemetry) -> Self {
        let points: Vec<Json> = t
            .points
            .iter()
            .map(|(name, reading)| match reading {
                Reading::Value(v) => {
                    json!({"name": &**name, "value": value_json(v), "error": null})
                }
                Reading::Error(word) => {
                    json!({"name": &**name, "value": null, "error": word.word()})
                }
            })
            .collect();
        LiveEvent {
            kind: "telemetry",
            data: json!({"device": &*t.device, "ts": t.ts, "points": points}).to_string(),
        }
    }

    pub fn availability(a: &AvailabilityChange) -> Self {
        LiveEvent {
            kind: "availability",
            data: json!({
                "device": a.device,
                "state": a.state.as_str(),
                "reason": reason_word(&a.reason),
                "ts": a.ts,
            })
            .to_string(),
        }
    }

    pub fn kpi(k: &KpiWindow) -> Self {
        LiveEvent {
            kind: "kpi",
            data: format!(
                "{{\"kind\":\"{}\",\"name\":{},\"window\":{}}}",
                k.kind().as_str(),
                Json::from(k.name.as_str()),
                history_line(k)
            ),
        }
    }

    pub fn health(h: &Health, store: &str) -> Self {
        LiveEvent {
            kind: "health",
            data: unstored_payload(&Message::<crate::message::Name>::Health(h.clone()), store),
        }
    }
}

/// A point value as JSON, spelt as on MQTT: an integral number below 2^53
/// as an integer (`107`, not `107.0`), a non-finite one (never produced)
/// as `null`.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        #[allow(clippy::cast_possible_truncation)]
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 => {
            Json::from(*n as i64)
        }
        Value::Number(n) => Json::from(*n),
        Value::Text(s) => Json::from(&**s),
    }
}

/// The live-update channel and its subscriber count.
#[derive(Debug, Clone)]
pub struct Broadcast {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    subscribers: Arc<AtomicUsize>,
}

impl Default for Broadcast {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Broadcast {
            tx,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A subscriber's place, given back when its stream is dropped.
#[derive(Debug)]
struct Seat(Arc<AtomicUsize>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Broadcast {
    /// Renders and sends an event, only when someone listens.
    pub fn send_with(&self, render: impl FnOnce() -> LiveEvent) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(render()));
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// A new subscriber's event stream, or `None` when [`MAX_SUBSCRIBERS`]
    /// are connected.
    pub fn subscribe(&self) -> Option<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
        let taken = self
            .subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            });
        if taken.is_err() {
            return None;
        }
        let seat = Seat(self.subscribers.clone());
        let rx = self.tx.subscribe();
        let stream = futures_util::stream::unfold((rx, seat), |(mut rx, seat)| async move {
            match rx.recv().await {
                Ok(event) => {
                    let sse = Event::default().event(event.kind).data(&event.data);
                    Some((Ok(sse), (rx, seat)))
                }
                // Lagged: dropped (it reconnects); closed: the agent stops.
                Err(_) => None,
            }
        });
        Some(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
    }
}
