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
//! Dialects: `spindle` (SPEC §5) in [`spindle`], `thingsboard` (the
//! ThingsBoard gateway MQTT API, `docs/THINGSBOARD.md`) in [`thingsboard`];
//! [`Dialect`] is the choice the publisher holds.

pub mod json;
pub mod spindle;
pub mod thingsboard;

use crate::message::{Message, Reading, Status, Value};

/// The dialect a publisher renders in, with what it takes from the
/// configuration.
#[derive(Debug, Clone)]
pub enum Dialect {
    /// SPEC §5 under `topic_base` (`{prefix}/{site}/{agent}/`).
    Spindle { topic_base: String },
    /// The ThingsBoard gateway API.
    ThingsBoard(Box<thingsboard::Gateway>),
}

impl Dialect {
    /// The configured dialect.
    pub fn from_config(config: &spindle_config::model::Config) -> Self {
        match config.mqtt.dialect {
            spindle_config::model::Dialect::Spindle => Dialect::Spindle {
                topic_base: format!(
                    "{}/{}/{}/",
                    config.mqtt.topic_prefix, config.agent.site, config.agent.id
                ),
            },
            spindle_config::model::Dialect::ThingsBoard => {
                Dialect::ThingsBoard(Box::new(thingsboard::Gateway::from_config(config)))
            }
        }
    }

    /// A stored message rendered alone.
    pub fn render<S: AsRef<str>>(&self, message: &Message<S>, seq: u64, store: &str) -> Rendered {
        match self {
            Dialect::Spindle { topic_base } => render(topic_base, message, seq, store),
            Dialect::ThingsBoard(gw) => {
                let (topic, payload) = thingsboard::render(gw, message, seq, store);
                Rendered {
                    topic: topic.to_owned(),
                    payload,
                    retain: false,
                }
            }
        }
    }

    /// Whether a message rendered alone fits a packet of `max` bytes.
    pub fn fits<S: AsRef<str>>(&self, message: &Message<S>, max: usize) -> bool {
        match self {
            Dialect::Spindle { topic_base } => fits(message, topic_base.len(), max),
            Dialect::ThingsBoard(gw) => thingsboard::fits(gw, message, max),
        }
    }

    /// What a log line names a message by: its topic, or its ThingsBoard device.
    pub fn label<S: AsRef<str>>(&self, message: &Message<S>) -> String {
        match self {
            Dialect::Spindle { .. } => spindle::topic(message),
            Dialect::ThingsBoard(gw) => gw.name(&thingsboard::subject(message)),
        }
    }

    /// The status publish: topic, payload, retained.
    pub fn status(&self, status: &Status) -> Rendered {
        match self {
            Dialect::Spindle { topic_base } => Rendered {
                topic: format!("{topic_base}status"),
                payload: spindle::status(status),
                retain: true,
            },
            Dialect::ThingsBoard(_) => Rendered {
                topic: thingsboard::ME_ATTRIBUTES.to_owned(),
                payload: thingsboard::status(status),
                retain: false,
            },
        }
    }
}

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
