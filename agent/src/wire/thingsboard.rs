//! The `thingsboard` dialect: the ThingsBoard gateway MQTT API
//! (`docs/THINGSBOARD.md` is the mapping a user reads; this file is it in code).
//!
//! Pure: messages in, `(topic, payload)` out. What is rendered:
//! - telemetry, KPI windows and availability changes are telemetry of a
//!   ThingsBoard device on `v1/gateway/telemetry`, one entry
//!   `{"ts":…,"values":{…}}` per record (a KPI window at its start, a KPI
//!   its own device `…kpi.{kind}.{name}`), `seq` and `store` keys in each;
//! - several entries of consecutive records go into one publish
//!   ([`batch`]), grouped by device in order of first appearance, as long
//!   as the whole packet stays within the limit;
//! - health and gaps are telemetry of the gateway device itself
//!   (`v1/devices/me/telemetry`), status its attributes
//!   (`v1/devices/me/attributes`);
//! - `connect`, `disconnect` and device attributes are session messages:
//!   the publisher sends them around the records ([`connect`],
//!   [`disconnect`], [`attributes`]); they are not stored.
//!
//! ThingsBoard's JSON converter refuses a `null` value (and with it the
//! whole payload), so a figure that could not be computed is left out
//! rather than written as `null`.

use std::collections::HashMap;

use spindle_config::model::{Config, DeviceLink, DeviceNameTemplate};

use super::json::{self, Object};
use crate::message::{
    AvailabilityReason, GapReport, Health, KpiFigures, KpiKind, KpiWindow, Message, Reachability,
    Reading, Status, Telemetry, Value,
};

/// Device connected through the gateway.
pub const CONNECT: &str = "v1/gateway/connect";
/// Device disconnected.
pub const DISCONNECT: &str = "v1/gateway/disconnect";
/// Telemetry of gateway devices.
pub const GATEWAY_TELEMETRY: &str = "v1/gateway/telemetry";
/// Client attributes of gateway devices.
pub const GATEWAY_ATTRIBUTES: &str = "v1/gateway/attributes";
/// Telemetry of the gateway device itself.
pub const ME_TELEMETRY: &str = "v1/devices/me/telemetry";
/// Attributes of the gateway device itself.
pub const ME_ATTRIBUTES: &str = "v1/devices/me/attributes";

/// Bytes of a `QoS` 1 `PUBLISH` besides its topic and payload: fixed header (at
/// most 5), topic length (2), packet id (2); rounded up.
pub const PACKET_OVERHEAD: usize = 16;

/// The device type of a device without a profile.
pub const DEFAULT_TYPE: &str = "modbus-device";
/// The device type of KPI devices.
pub const KPI_TYPE: &str = "spindle-kpi";

/// What the dialect takes from the configuration: how devices are named
/// and what each device says about itself.
#[derive(Debug, Clone)]
pub struct Gateway {
    site: String,
    agent: String,
    template: DeviceNameTemplate,
    devices: HashMap<String, DeviceInfo>,
}

/// A configured device's ThingsBoard type and attributes.
#[derive(Debug, Clone, PartialEq)]
struct DeviceInfo {
    kind: String,
    /// `(key, value)`: strings and one number (`unit_id`).
    attributes: Vec<(&'static str, Attribute)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Attribute {
    Text(String),
    Number(u64),
}

/// The ThingsBoard device a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A configured device, by its spindle name.
    Device(String),
    /// A KPI's device.
    Kpi(KpiKind, String),
    /// The gateway itself (health, gap).
    Gateway,
}

/// One record's entry in a gateway telemetry publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The ThingsBoard device name.
    pub device: String,
    /// `{"ts":…,"values":{…}}`.
    pub json: String,
}

/// One publish covering one or more records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The records it carries, in order.
    pub seqs: Vec<u64>,
    pub payload: String,
}

impl Gateway {
    /// Names and attributes from the configuration.
    pub fn from_config(config: &Config) -> Self {
        let mut gw = Gateway::new(
            &config.agent.site,
            &config.agent.id,
            config.mqtt.device_name.clone(),
        );
        for d in &config.devices {
            let mut attributes = vec![
                ("spindle_device", Attribute::Text(d.name.clone())),
                ("agent", Attribute::Text(config.agent.id.clone())),
                ("site", Attribute::Text(config.agent.site.clone())),
            ];
            if let Some(profile) = &d.profile {
                attributes.push(("profile", Attribute::Text(profile.clone())));
            }
            match &d.link {
                DeviceLink::Serial(bus) => attributes.push(("bus", Attribute::Text(bus.clone()))),
                DeviceLink::Tcp(endpoint) => {
                    attributes.push(("endpoint", Attribute::Text(endpoint.clone())));
                }
            }
            attributes.push(("unit_id", Attribute::Number(u64::from(d.unit))));
            gw.devices.insert(
                d.name.clone(),
                DeviceInfo {
                    kind: d.profile.clone().unwrap_or_else(|| DEFAULT_TYPE.to_owned()),
                    attributes,
                },
            );
        }
        gw
    }

    /// A gateway that knows no device (types and attributes are defaults).
    pub fn new(site: &str, agent: &str, template: DeviceNameTemplate) -> Self {
        Gateway {
            site: site.to_owned(),
            agent: agent.to_owned(),
            template,
            devices: HashMap::new(),
        }
    }

    /// The ThingsBoard name of a subject (the gateway's own is empty: it is `me`).
    pub fn name(&self, subject: &Subject) -> String {
        match subject {
            Subject::Device(device) => self.template.render(&self.site, &self.agent, device),
            Subject::Kpi(kind, name) => self.template.render(
                &self.site,
                &self.agent,
                &format!("kpi.{}.{name}", kind.as_str()),
            ),
            Subject::Gateway => String::new(),
        }
    }

    /// The device type sent with `connect`.
    pub fn device_type(&self, subject: &Subject) -> &str {
        match subject {
            Subject::Device(device) => self
                .devices
                .get(device)
                .map_or(DEFAULT_TYPE, |d| d.kind.as_str()),
            Subject::Kpi(..) => KPI_TYPE,
            Subject::Gateway => "",
        }
    }
}

/// Which device a message is about.
pub fn subject<S: AsRef<str>>(message: &Message<S>) -> Subject {
    match message {
        Message::Telemetry(t) => Subject::Device(t.device.as_ref().to_owned()),
        Message::Availability(a) => Subject::Device(a.device.clone()),
        Message::Kpi(k) => Subject::Kpi(k.kind(), k.name.clone()),
        Message::KpiF2(k) => Subject::Kpi(KpiWindow::from(k.clone()).kind(), k.name.clone()),
        Message::Health(_) | Message::HealthF2(_) | Message::HealthF3(_) | Message::Gap(_) => {
            Subject::Gateway
        }
    }
}

/// Whether a message may share a publish with others: telemetry and KPI
/// windows. (Availability goes alone: an offline one is followed by a
/// `disconnect`; health and gap go to the gateway's own topic.)
pub fn batchable<S>(message: &Message<S>) -> bool {
    matches!(
        message,
        Message::Telemetry(_) | Message::Kpi(_) | Message::KpiF2(_)
    )
}

/// A message's rendering alone: topic and payload.
pub fn render<S: AsRef<str>>(
    gw: &Gateway,
    message: &Message<S>,
    seq: u64,
    store: &str,
) -> (&'static str, String) {
    match entry(gw, message, seq, store) {
        Some(e) => (GATEWAY_TELEMETRY, gateway_telemetry(&[e])),
        None => (ME_TELEMETRY, own_telemetry(message, seq, store)),
    }
}

/// The gateway-telemetry entry of a message about a device; `None` for the
/// gateway's own (health, gap).
pub fn entry<S: AsRef<str>>(
    gw: &Gateway,
    message: &Message<S>,
    seq: u64,
    store: &str,
) -> Option<Entry> {
    let mut out = String::with_capacity(256);
    let (ts, subject) = match message {
        Message::Telemetry(t) => (t.ts, Subject::Device(t.device.as_ref().to_owned())),
        Message::Availability(a) => (a.ts, Subject::Device(a.device.clone())),
        Message::Kpi(k) => (k.window.start, Subject::Kpi(k.kind(), k.name.clone())),
        Message::KpiF2(k) => (
            k.window.start,
            Subject::Kpi(KpiWindow::from(k.clone()).kind(), k.name.clone()),
        ),
        Message::Health(_) | Message::HealthF2(_) | Message::HealthF3(_) | Message::Gap(_) => {
            return None;
        }
    };
    out.push_str("{\"ts\":");
    json::unsigned(&mut out, ts);
    out.push_str(",\"values\":");
    let mut values = Object::open(&mut out);
    match message {
        Message::Telemetry(t) => telemetry(&mut values, t),
        Message::Availability(a) => {
            values.boolean("online", a.state == Reachability::Online);
            match &a.reason {
                AvailabilityReason::PollOk => values.string("online_reason", "poll_ok"),
                AvailabilityReason::Error(word) => values.string("online_reason", &word.word()),
                AvailabilityReason::Unknown => values.string("online_reason", ""),
            }
        }
        Message::Kpi(k) => kpi(&mut values, k),
        Message::KpiF2(k) => kpi(&mut values, &KpiWindow::from(k.clone())),
        Message::Health(_) | Message::HealthF2(_) | Message::HealthF3(_) | Message::Gap(_) => {}
    }
    values.unsigned("seq", seq);
    values.string("store", store);
    values.end();
    out.push('}');
    Some(Entry {
        device: gw.name(&subject),
        json: out,
    })
}

/// `{"<device>":[entry,…],…}`: entries grouped by device in order of first
/// appearance, each device's in the given order.
pub fn gateway_telemetry(entries: &[Entry]) -> String {
    let mut order: Vec<&str> = Vec::new();
    for e in entries {
        if !order.contains(&e.device.as_str()) {
            order.push(&e.device);
        }
    }
    let mut out =
        String::with_capacity(entries.iter().map(|e| e.json.len() + 1).sum::<usize>() + 64);
    let mut o = Object::open(&mut out);
    for device in order {
        let list = o.key(device);
        list.push('[');
        let mut first = true;
        for e in entries.iter().filter(|e| e.device == device) {
            if !first {
                list.push(',');
            }
            first = false;
            list.push_str(&e.json);
        }
        list.push(']');
    }
    o.end();
    out
}

/// The largest run of `run` (at least its first record) whose
/// [`gateway_telemetry`] publish fits `limit` bytes (topic, payload and
/// [`PACKET_OVERHEAD`]), and that publish. The same run and limit give the
/// same batch: batches depend on the records only.
pub fn batch(run: &[(u64, Entry)], limit: usize) -> Batch {
    let fixed = GATEWAY_TELEMETRY.len() + PACKET_OVERHEAD + 2; // `{}`
    let mut size = fixed;
    let mut devices: Vec<&str> = Vec::new();
    let mut taken = 0;
    for (_, e) in run {
        let added = if devices.contains(&e.device.as_str()) {
            1 + e.json.len() // `,entry`
        } else {
            // `,"name":[entry]` (no comma before the first device)
            let mut name = String::new();
            json::string(&mut name, &e.device);
            usize::from(!devices.is_empty()) + name.len() + 3 + e.json.len()
        };
        if taken > 0 && size + added > limit {
            break;
        }
        size += added;
        if !devices.contains(&e.device.as_str()) {
            devices.push(&e.device);
        }
        taken += 1;
    }
    let chosen: Vec<Entry> = run.iter().take(taken).map(|(_, e)| e.clone()).collect();
    let payload = gateway_telemetry(&chosen);
    debug_assert!(taken <= 1 || fixed - 2 + payload.len() <= limit);
    Batch {
        seqs: run.iter().take(taken).map(|(seq, _)| *seq).collect(),
        payload,
    }
}

/// Whether a message's publish alone fits `limit` bytes.
pub fn fits<S: AsRef<str>>(gw: &Gateway, message: &Message<S>, limit: usize) -> bool {
    let (topic, payload) = render(gw, message, u64::MAX, &"f".repeat(32));
    topic.len() + payload.len() + PACKET_OVERHEAD <= limit
}

/// `v1/gateway/connect`: `{"device":…,"type":…}`.
pub fn connect(gw: &Gateway, subject: &Subject) -> String {
    let mut out = String::with_capacity(96);
    let mut o = Object::open(&mut out);
    o.string("device", &gw.name(subject));
    o.string("type", gw.device_type(subject));
    o.end();
    out
}

/// `v1/gateway/disconnect`: `{"device":…}`.
pub fn disconnect(gw: &Gateway, subject: &Subject) -> String {
    let mut out = String::with_capacity(64);
    let mut o = Object::open(&mut out);
    o.string("device", &gw.name(subject));
    o.end();
    out
}

/// `v1/gateway/attributes`: `{"<device>":{…}}` — for a configured device
/// its spindle name, agent, site, profile, bus or endpoint and unit id; for
/// a KPI device its agent, site, kind and name.
pub fn attributes(gw: &Gateway, subject: &Subject) -> String {
    let mut out = String::with_capacity(256);
    let mut o = Object::open(&mut out);
    let mut a = Object::open(o.key(&gw.name(subject)));
    match subject {
        Subject::Device(device) => {
            if let Some(info) = gw.devices.get(device) {
                for (key, value) in &info.attributes {
                    match value {
                        Attribute::Text(text) => a.string(key, text),
                        Attribute::Number(n) => a.unsigned(key, *n),
                    }
                }
            } else {
                a.string("spindle_device", device);
                a.string("agent", &gw.agent);
                a.string("site", &gw.site);
            }
        }
        Subject::Kpi(kind, name) => {
            a.string("agent", &gw.agent);
            a.string("site", &gw.site);
            a.string("kind", kind.as_str());
            a.string("name", name);
        }
        Subject::Gateway => {}
    }
    a.end();
    o.end();
    out
}

/// `v1/devices/me/attributes`: the gateway's status (the same members as
/// the `spindle` dialect's `status`).
pub fn status(status: &Status) -> String {
    super::spindle::status(status)
}

/// `v1/devices/me/telemetry` of health and gap: `{"ts":…,"values":{…}}`.
fn own_telemetry<S>(message: &Message<S>, seq: u64, store: &str) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("{\"ts\":");
    json::unsigned(&mut out, message.ts());
    out.push_str(",\"values\":");
    let mut values = Object::open(&mut out);
    match message {
        Message::Health(h) => health(&mut values, h),
        Message::HealthF2(h) => health(&mut values, &Health::from(h.clone())),
        Message::HealthF3(h) => health(&mut values, &Health::from(h.clone())),
        Message::Gap(g) => gap(&mut values, g),
        Message::Telemetry(_) | Message::Availability(_) | Message::Kpi(_) | Message::KpiF2(_) => {}
    }
    values.unsigned("seq", seq);
    values.string("store", store);
    values.end();
    out.push('}');
    out
}

fn telemetry<S: AsRef<str>>(o: &mut Object<'_>, t: &Telemetry<S>) {
    for (name, reading) in &t.points {
        match reading {
            Reading::Value(v) => {
                let out = o.key(name.as_ref());
                match v {
                    Value::Bool(b) => json::boolean(out, *b),
                    Value::Number(n) => json::number(out, *n),
                    Value::Text(s) => json::string(out, s.as_ref()),
                }
            }
            Reading::Error(word) => {
                let key = format!("{}_error", name.as_ref());
                o.string(&key, &word.word());
            }
        }
    }
    if t.snapshot {
        o.boolean("snapshot", true);
    }
}

/// A number member, left out when unknown (ThingsBoard refuses `null`).
fn some_number(o: &mut Object<'_>, key: &str, n: Option<f64>) {
    if let Some(n) = n.filter(|n| n.is_finite()) {
        o.number(key, n);
    }
}

fn kpi(o: &mut Object<'_>, k: &KpiWindow) {
    o.unsigned("window_start", k.window.start);
    o.unsigned("window_end", k.window.end);
    o.unsigned("closed_ts", k.ts);
    match &k.figures {
        KpiFigures::EnergyPerOutput(e) => {
            some_number(o, "value", e.value);
            o.string("unit", &e.unit);
            some_number(o, "co2_kg_per_unit", e.co2_kg_per_unit);
            some_number(o, "output", e.output);
            some_number(o, "kgce", e.kgce);
            some_number(o, "kgco2", e.kgco2);
            carriers(o, &e.energy);
        }
        KpiFigures::EnergyConsumption(e) => {
            if let Some(scope) = &e.scope {
                o.string("scope", scope);
            }
            some_number(o, "kgce", e.kgce);
            some_number(o, "tce", e.tce);
            some_number(o, "kgco2", e.kgco2);
            carriers(o, &e.energy);
        }
        KpiFigures::CncCoverage(c) => {
            some_number(o, "count_ratio", c.count_ratio);
            some_number(o, "networked_ratio", c.networked_ratio);
            some_number(o, "time_ratio", c.time_ratio);
            o.unsigned("equipment", c.equipment);
            o.unsigned("numerically_controlled", c.numerically_controlled);
            o.unsigned("networked", c.networked);
            o.number("running_s", c.running_s);
            o.number("cnc_running_s", c.cnc_running_s);
        }
    }
    o.string("quality", k.quality.as_str());
    let flags: Vec<String> = k.flags.iter().map(crate::message::KpiFlag::word).collect();
    o.string("flags", &flags.join(","));
}

/// Each carrier's figures as `energy.CARRIER.FIELD` keys.
fn carriers(o: &mut Object<'_>, energy: &[crate::message::CarrierFigures]) {
    for c in energy {
        let key = |field: &str| format!("energy.{}.{field}", c.carrier);
        some_number(o, &key("consumption"), c.consumption);
        o.string(&key("unit"), &c.unit);
        some_number(o, &key("kgce"), c.kgce);
        some_number(o, &key("kgco2"), c.kgco2);
        some_number(o, &key("kgce_per_unit"), c.kgce_per_unit);
        some_number(o, &key("kgco2_per_unit"), c.kgco2_per_unit);
        if let Some(b) = &c.basis {
            o.string(&key("basis"), &b.basis);
        }
    }
}

fn health(o: &mut Object<'_>, h: &Health) {
    o.number("uptime_s", h.uptime_s);
    o.boolean("clock.plausible", h.clock_plausible);
    for d in &h.devices {
        let key = |field: &str| format!("devices.{}.{field}", d.name);
        o.string(&key("state"), d.state.as_str());
        o.unsigned(&key("polls"), d.polls);
        o.unsigned(&key("good_polls"), d.good_polls);
        o.unsigned(&key("overruns"), d.overruns);
        o.unsigned(&key("errors.timeout"), d.errors.timeout);
        o.unsigned(&key("errors.exception"), d.errors.exception);
        o.unsigned(&key("errors.decode"), d.errors.decode);
        o.unsigned(&key("errors.disconnected"), d.errors.disconnected);
        if let Some(l) = d.latency {
            o.number(&key("latency_ms.last"), l.last_ms);
            o.number(&key("latency_ms.mean"), l.mean_ms);
            o.number(&key("latency_ms.max"), l.max_ms);
        }
    }
    for b in &h.buses {
        let key = |field: &str| format!("buses.{}.{field}", b.name);
        o.number(&key("load_estimated"), b.load_estimated);
        o.number(&key("busy_share"), b.busy_share);
        o.unsigned(&key("late_replies"), b.late_replies);
    }
    let ob = &h.outbox;
    o.unsigned("outbox.depth", ob.depth);
    o.unsigned("outbox.bytes", ob.bytes);
    some_number(o, "outbox.oldest_age_s", ob.oldest_age_s);
    o.unsigned("outbox.backlog", ob.backlog);
    o.unsigned("outbox.dropped.outbox_full", ob.dropped_outbox_full);
    o.unsigned("outbox.dropped.max_age", ob.dropped_max_age);
    o.unsigned("outbox.dropped.store_damaged", ob.dropped_store_damaged);
    o.unsigned("outbox.gaps", ob.gaps);
    o.unsigned("outbox.store_errors", ob.store_errors);
    o.unsigned("outbox.refused_too_large", ob.refused_too_large);
    o.unsigned("outbox.flushes", ob.flushes);
    o.unsigned("outbox.slow_flushes", ob.slow_flushes);
    o.unsigned("outbox.flush_waits", ob.flush_waits);
    o.unsigned("mqtt.connects", h.mqtt.connects);
    o.unsigned("mqtt.disconnects", h.mqtt.disconnects);
    o.unsigned("mqtt.published", h.mqtt.published);
    o.unsigned("mqtt.acked", h.mqtt.acked);
    if let Some(refused) = h.mqtt_auth_refused {
        o.unsigned("mqtt.auth_refused", refused);
    }
    if let Some(free) = h.disk_free_bytes {
        o.unsigned("disk.free_bytes", free);
    }
    if let Some(written) = h.bytes_written {
        o.unsigned("disk.bytes_written", written);
    }
}

fn gap(o: &mut Object<'_>, g: &GapReport) {
    match g {
        GapReport::Dropped {
            from_seq,
            to_seq,
            count,
            reason,
            ..
        } => {
            o.unsigned("gap_from_seq", *from_seq);
            o.unsigned("gap_to_seq", *to_seq);
            o.unsigned("gap_count", *count);
            o.string("gap_reason", reason.as_str());
        }
        GapReport::StoreDamaged {
            lost_store, detail, ..
        } => {
            o.string("gap_reason", "store_damaged");
            if let Some(id) = lost_store {
                o.string("gap_lost_store", id);
            }
            o.string("gap_detail", detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ErrorWord, Name};
    use std::sync::Arc;

    fn gw() -> Gateway {
        Gateway::new("site", "gw-1", DeviceNameTemplate::default())
    }

    #[allow(clippy::cast_precision_loss)]
    fn telemetry(device: &str, ts: u64, n: usize) -> Message {
        Message::Telemetry(Telemetry {
            ts,
            device: Arc::from(device),
            points: (0..n)
                .map(|i| {
                    let name: Name = Arc::from(format!("p{i}").as_str());
                    let reading = if i % 5 == 4 {
                        Reading::Error(ErrorWord::Timeout)
                    } else {
                        Reading::Value(Value::Number(i as f64 + 0.5))
                    };
                    (name, reading)
                })
                .collect(),
            snapshot: false,
        })
    }

    fn run(messages: &[Message], first_seq: u64) -> Vec<(u64, Entry)> {
        messages
            .iter()
            .zip(first_seq..)
            .map(|(m, seq)| (seq, entry(&gw(), m, seq, "s").unwrap()))
            .collect()
    }

    #[test]
    fn point_errors_become_string_keys_beside_the_values() {
        let (topic, payload) = render(&gw(), &telemetry("meter", 7, 5), 3, "s");
        assert_eq!(topic, "v1/gateway/telemetry");
        assert_eq!(
            payload,
            r#"{"site.gw-1.meter":[{"ts":7,"values":{"p0":0.5,"p1":1.5,"p2":2.5,"p3":3.5,"p4_error":"timeout","seq":3,"store":"s"}}]}"#
        );
    }

    #[test]
    fn a_batch_groups_entries_by_device_in_order_of_first_appearance() {
        let msgs = [
            telemetry("a", 1, 1),
            telemetry("b", 2, 1),
            telemetry("a", 3, 1),
        ];
        let b = batch(&run(&msgs, 10), 1 << 16);
        assert_eq!(b.seqs, vec![10, 11, 12]);
        let v: serde_json::Value = serde_json::from_str(&b.payload).unwrap();
        let a = v["site.gw-1.a"].as_array().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1]["values"]["seq"], 12);
        assert_eq!(v["site.gw-1.b"][0]["ts"], 2);
        assert!(b.payload.starts_with(r#"{"site.gw-1.a":["#));
    }

    #[test]
    fn batches_stay_within_the_limit_and_cover_every_record_once() {
        let msgs: Vec<Message> = (0..200)
            .map(|i| telemetry(["a", "b", "c"][i % 3], i as u64, 1 + i % 40))
            .collect();
        let all = run(&msgs, 1);
        for limit in [700, 2_000, 8_192, 65_536] {
            let mut rest = all.as_slice();
            let mut covered = Vec::new();
            while !rest.is_empty() {
                let b = batch(rest, limit);
                assert!(
                    GATEWAY_TELEMETRY.len() + b.payload.len() + PACKET_OVERHEAD <= limit,
                    "a batch of {} records is {} bytes over {limit}",
                    b.seqs.len(),
                    b.payload.len()
                );
                assert_eq!(b, batch(rest, limit), "a batch is rebuilt identically");
                serde_json::from_str::<serde_json::Value>(&b.payload).unwrap();
                covered.extend_from_slice(&b.seqs);
                rest = &rest[b.seqs.len()..];
            }
            assert_eq!(covered, (1..=200).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn a_batch_is_as_large_as_the_limit_allows() {
        let msgs: Vec<Message> = (0..50).map(|i| telemetry("a", i, 10)).collect();
        let all = run(&msgs, 1);
        let b = batch(&all, 4096);
        let one_more = gateway_telemetry(
            &all[..=b.seqs.len()]
                .iter()
                .map(|(_, e)| e.clone())
                .collect::<Vec<_>>(),
        );
        assert!(GATEWAY_TELEMETRY.len() + one_more.len() + PACKET_OVERHEAD > 4096);
    }

    #[test]
    fn kpi_devices_follow_the_template_with_kpi_kind_and_name() {
        let g = Gateway::new(
            "s",
            "a",
            DeviceNameTemplate::parse("{device}@{site}/{agent}").unwrap(),
        );
        assert_eq!(
            g.name(&Subject::Kpi(KpiKind::CncCoverage, "plant".into())),
            "kpi.cnc_coverage.plant@s/a"
        );
        assert_eq!(
            connect(&g, &Subject::Device("m".into())),
            r#"{"device":"m@s/a","type":"modbus-device"}"#
        );
        assert_eq!(
            disconnect(&g, &Subject::Kpi(KpiKind::EnergyPerOutput, "l1".into())),
            r#"{"device":"kpi.energy_per_output.l1@s/a"}"#
        );
    }
}
