//! The wire layer: renders a typed [`Message`] at publish time. The one
//! place that knows topics and payload bytes; nothing here stores or sends.
//!
//! Rendering is deterministic: the same message, seq and store id give the
//! same bytes from the same binary and configuration. What a resend takes
//! from the configuration *at publish time* is the topic base
//! (`mqtt.topic_prefix`, `agent.site`, `agent.id`); a record stored before
//! one of those changed goes out under the new topic. Everything inside a
//! payload (names, values, `ts`, `seq`, `store`) comes from the record, so
//! a payload's bytes never change between a first send and a resend.
//!
//! Dialects: `spindle` (SPEC §5) in [`spindle`].

pub mod json;
pub mod spindle;

use crate::message::{Message, Reading, Value};

/// A message ready for the MQTT client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The topic (under the base given to [`render`]).
    pub topic: String,
    pub payload: String,
    pub retain: bool,
}

/// Renders a stored message with its seq, from the store `store`; the
/// topic under `base` (`{prefix}/{site}/{agent}/`, or empty for the suffix).
pub fn render<S: AsRef<str>>(base: &str, message: &Message<S>, seq: u64, store: &str) -> Rendered {
    Rendered {
        topic: spindle::topic_under(base, message),
        payload: spindle::payload(message, seq, store),
        retain: spindle::retained(message),
    }
}

/// The largest seq and ts a payload can carry are 20 digits each; a store
/// id is 32 characters.
const ENVELOPE_BOUND: usize = 128;

/// Whether the rendering of `message` (payload and topic under a base of
/// `base_len` bytes) stays within `max` bytes. Telemetry is bounded without
/// rendering (each character of a name or text takes at most 6 bytes
/// escaped, a number at most 24); only when that bound is over `max`, and
/// for the other (rare) kinds, is the message rendered to measure it.
pub fn fits<S: AsRef<str>>(message: &Message<S>, base_len: usize, max: usize) -> bool {
    if let Message::Telemetry(t) = message {
        let mut bound = ENVELOPE_BOUND + base_len + 16 + 7 * t.device.as_ref().len() + 64;
        for (name, reading) in &t.points {
            bound += 6 * name.as_ref().len() + 4;
            bound += match reading {
                Reading::Value(Value::Bool(_)) => 5,
                Reading::Value(Value::Number(_)) => 24,
                Reading::Value(Value::Text(s)) => 6 * s.as_ref().len() + 2,
                Reading::Error(word) => 6 * word.word().len() + 2,
            };
        }
        if bound <= max {
            return true;
        }
    }
    let r = render("", message, u64::MAX, &"f".repeat(32));
    r.payload.len() + r.topic.len() + base_len <= max
}
