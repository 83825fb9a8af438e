//! Typed messages: what producers (pollers, the health task, the KPI
//! engine, the outbox's own gap reports) hand on, and what the outbox
//! stores. Nothing here knows MQTT, JSON, topics or storage: the outbox
//! encodes a [`Message`] into a record ([`encode`], [`decode`]), and the
//! wire layer (`crate::wire`) renders it in a dialect at publish time.
//!
//! Invariants:
//! - a message holds values, never renderings: no JSON fragment, no topic;
//! - error words are [`ErrorWord`]s, compared as values, spelled once (in
//!   [`ErrorWord::word`]);
//! - the binary encoding is postcard of these types. **The order of enum
//!   variants and struct fields is the outbox's on-disk format 2**: add
//!   variants and fields only at the end of an enum, and change a field
//!   only with a new record format version (`outbox::record`).

mod health;
mod kpi;
mod telemetry;

use serde::{Deserialize, Serialize};

pub use health::{
    BusHealth, DeviceHealth, DeviceState, ErrorCounts, Health, HealthF2, HealthF3, HistoryHealth,
    Latency, MqttHealth, OutboxHealth,
};
pub use kpi::{
    CarrierBasis, CarrierFigures, CarrierFiguresF2, CncCoverage, EnergyConsumption,
    EnergyPerOutput, EnergyPerOutputF2, KpiFigures, KpiFiguresF2, KpiFlag, KpiKind, KpiWindow,
    KpiWindowF2, MAX_BELOW, Quality, SampleCompleteness, WindowSpan,
};
pub use telemetry::{ErrorWord, Name, Reading, Telemetry, Value};

/// One message for the outbox. `S` is the string type of telemetry names
/// and texts: shared [`Name`]s when produced, `&str` borrowed from a record
/// when read back for publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message<S = Name> {
    Telemetry(Telemetry<S>),
    Availability(AvailabilityChange),
    /// A `health` report stored before the history member (read, never written).
    HealthF2(HealthF2),
    /// A KPI window stored before energy consumption (read, never written).
    KpiF2(KpiWindowF2),
    Gap(GapReport),
    /// A KPI window.
    Kpi(KpiWindow),
    /// A `health` report stored before `mqtt_auth_refused` (read, never written).
    HealthF3(HealthF3),
    /// A `health` report.
    Health(Health),
}

impl<S> Message<S> {
    /// When the message was created (Unix ms): its `ts`.
    pub fn ts(&self) -> u64 {
        match self {
            Message::Telemetry(t) => t.ts,
            Message::Availability(a) => a.ts,
            Message::Health(h) => h.ts,
            Message::HealthF2(h) => h.ts,
            Message::HealthF3(h) => h.ts,
            Message::Kpi(k) => k.ts,
            Message::KpiF2(k) => k.ts,
            Message::Gap(g) => g.ts(),
        }
    }
}

/// Watches every message on its way into the outbox (the HTTP live view),
/// so producers need not know who else looks. Runs in the publisher's
/// loop: it must be quick and must not block.
pub trait Tap: Send + Sync + std::fmt::Debug {
    fn observe(&self, message: &Message);
}

/// What producers send the publisher.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one message at a time through a bounded channel
pub enum Outgoing {
    /// One message.
    Message(Message),
    /// Messages and a meta value stored in one atomic batch (KPI windows
    /// with the engine state that says they were made).
    Atomic {
        messages: Vec<Message>,
        meta: Option<(Vec<u8>, Vec<u8>)>,
    },
}

impl From<Message> for Outgoing {
    fn from(m: Message) -> Self {
        Outgoing::Message(m)
    }
}

/// A device's reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reachability {
    Online,
    Offline,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Online => "online",
            Reachability::Offline => "offline",
        }
    }
}

/// Why a device's reachability changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AvailabilityReason {
    /// A poll got a value.
    PollOk,
    /// The last error word of the failed polls.
    Error(ErrorWord),
    /// Failed polls that carried no error word (a device without points).
    Unknown,
}

/// A change of a device's reachability (SPEC §5 `availability`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityChange {
    pub ts: u64,
    pub device: String,
    pub state: Reachability,
    pub reason: AvailabilityReason,
}

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DropReason {
    OutboxFull,
    MaxAge,
    StoreDamaged,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OutboxFull => "outbox_full",
            DropReason::MaxAge => "max_age",
            DropReason::StoreDamaged => "store_damaged",
        }
    }
}

/// Loss the outbox announces (SPEC §5 `gap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GapReport {
    /// `count` records within `[from_seq, to_seq]` were dropped.
    Dropped {
        ts: u64,
        from_seq: u64,
        to_seq: u64,
        count: u64,
        reason: DropReason,
    },
    /// A damaged store was moved aside and this one started in its place.
    StoreDamaged {
        ts: u64,
        lost_store: Option<String>,
        detail: String,
    },
}

impl GapReport {
    pub fn ts(&self) -> u64 {
        match self {
            GapReport::Dropped { ts, .. } | GapReport::StoreDamaged { ts, .. } => *ts,
        }
    }
}

/// The agent's connection state as published on the retained `status`
/// topic (not stored in the outbox: it describes the connection itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: Reachability,
    pub ts: u64,
    pub reason: Option<StatusReason>,
    pub store: String,
    pub version: String,
    pub config_sha256: String,
}

/// Why the agent went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    /// A clean stop (SIGTERM).
    Shutdown,
    /// The broker publishes the last will: the connection was lost.
    ConnectionLost,
}

impl StatusReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::Shutdown => "shutdown",
            StatusReason::ConnectionLost => "connection_lost",
        }
    }
}

/// A message's bytes in the outbox (record format 2).
pub fn encode<S: Serialize>(message: &Message<S>) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(message)
}

/// Appends a message's encoding to `out` (the outbox writes it straight
/// into the record it is building).
pub fn encode_into<S: Serialize>(
    message: &Message<S>,
    out: Vec<u8>,
) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(message, out)
}

/// About how many bytes a message encodes to (a capacity hint, not a bound).
pub fn encoded_len_hint<S: AsRef<str>>(message: &Message<S>) -> usize {
    match message {
        Message::Telemetry(t) => {
            24 + t.device.as_ref().len()
                + t.points
                    .iter()
                    .map(|(name, reading)| {
                        name.as_ref().len()
                            + 12
                            + match reading {
                                Reading::Value(Value::Text(s)) => s.as_ref().len(),
                                _ => 0,
                            }
                    })
                    .sum::<usize>()
        }
        Message::Health(h) => 128 + 64 * (h.devices.len() + h.buses.len()),
        Message::HealthF2(h) => 128 + 64 * (h.devices.len() + h.buses.len()),
        Message::HealthF3(h) => 128 + 64 * (h.devices.len() + h.buses.len()),
        Message::Kpi(_) | Message::KpiF2(_) => 256,
        Message::Availability(_) | Message::Gap(_) => 64,
    }
}

/// A stored message, borrowing its names and texts from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message<&str>, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_message_round_trips_through_its_encoding_and_borrows_its_names() {
        let name: Name = Arc::from("voltage_a");
        let msg: Message = Message::Telemetry(Telemetry {
            ts: 7,
            device: Arc::from("meter"),
            points: vec![
                (name.clone(), Reading::Value(Value::Number(229.8))),
                (Arc::from("pf"), Reading::Error(ErrorWord::Exception(2))),
                (
                    Arc::from("sn"),
                    Reading::Value(Value::Text(Arc::from("x\"y"))),
                ),
            ],
            snapshot: true,
        });
        let bytes = encode(&msg).unwrap();
        let back = decode(&bytes).unwrap();
        let Message::Telemetry(t) = &back else {
            panic!("not telemetry: {back:?}")
        };
        assert_eq!(t.device, "meter");
        assert_eq!(t.points.len(), 3);
        assert_eq!(
            encode(&back).unwrap(),
            bytes,
            "the borrowed form encodes the same"
        );
    }

    #[test]
    fn bytes_that_are_not_a_message_are_an_error_not_a_panic() {
        assert!(decode(&[]).is_err(), "empty");
        assert!(decode(&[0]).is_err(), "a telemetry without its fields");
        assert!(
            decode(&[0, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "a ts past u64"
        );
        assert!(decode(&[200]).is_err(), "unknown variant");
    }

    #[test]
    fn a_health_report_stored_before_auth_refused_keeps_its_variant_and_decodes() {
        let old = HealthF3 {
            ts: 5,
            uptime_s: 1.5,
            clock_plausible: true,
            devices: vec![],
            buses: vec![],
            outbox: OutboxHealth::default(),
            mqtt: MqttHealth {
                connects: 3,
                ..MqttHealth::default()
            },
            disk_free_bytes: None,
            bytes_written: Some(9),
            history: Some(HistoryHealth::default()),
        };
        let bytes = encode(&Message::<Name>::HealthF3(old.clone())).unwrap();
        assert_eq!(
            bytes.first(),
            Some(&6),
            "the variant index health had before"
        );
        let Message::HealthF3(back) = decode(&bytes).unwrap() else {
            panic!("not the old layout")
        };
        let now = Health::from(back);
        assert_eq!(now.mqtt.connects, 3);
        assert_eq!(now.history, old.history);
        assert_eq!(now.mqtt_auth_refused, None, "not counted then: not zero");
        let new = encode(&Message::<Name>::Health(now)).unwrap();
        assert_eq!(new.first(), Some(&7), "the current layout is a new variant");
    }
}
