//! The `spindle` dialect (SPEC §5): topics under `{prefix}/{site}/{agent}/`
//! and the JSON payloads, byte for byte as the golden fixtures
//! (`agent/tests/golden/`) pin them.

use super::json::{self, Object};
use crate::message::{
    AvailabilityChange, AvailabilityReason, CarrierFigures, CncCoverage, EnergyConsumption,
    EnergyPerOutput, GapReport, Health, KpiFigures, KpiFiguresF2, KpiKind, KpiWindow, Message,
    Reading, SampleCompleteness, Status, Telemetry, Value,
};

/// The topic of a message under the agent's base (`telemetry/meter-1`).
pub fn topic<S: AsRef<str>>(message: &Message<S>) -> String {
    topic_under("", message)
}

/// The whole topic: `base` (`{prefix}/{site}/{agent}/`) and the message's own part.
pub fn topic_under<S: AsRef<str>>(base: &str, message: &Message<S>) -> String {
    let mut out = String::with_capacity(base.len() + 48);
    out.push_str(base);
    match message {
        Message::Telemetry(t) => {
            out.push_str("telemetry/");
            out.push_str(t.device.as_ref());
        }
        Message::Availability(a) => {
            out.push_str("availability/");
            out.push_str(&a.device);
        }
        Message::Health(_) | Message::HealthF2(_) | Message::HealthF3(_) => out.push_str("health"),
        Message::Kpi(k) => {
            out.push_str("kpi/");
            out.push_str(k.kind().as_str());
            out.push('/');
            out.push_str(&k.name);
        }
        Message::KpiF2(k) => {
            out.push_str("kpi/");
            out.push_str(match k.figures {
                KpiFiguresF2::CncCoverage(_) => KpiKind::CncCoverage.as_str(),
                KpiFiguresF2::EnergyPerOutput(_) => KpiKind::EnergyPerOutput.as_str(),
            });
            out.push('/');
            out.push_str(&k.name);
        }
        Message::Gap(_) => out.push_str("gap"),
    }
    out
}

/// Whether the message's topic is retained (`availability/*`).
pub fn retained<S>(message: &Message<S>) -> bool {
    matches!(message, Message::Availability(_))
}

/// The payload of a stored message with its seq, from the store `store`.
pub fn payload<S: AsRef<str>>(message: &Message<S>, seq: u64, store: &str) -> String {
    let mut out = String::with_capacity(capacity_hint(message));
    out.push_str("{\"seq\":");
    json::unsigned(&mut out, seq);
    out.push_str(",\"ts\":");
    json::unsigned(&mut out, message.ts());
    members(out, message, store)
}

/// The payload of a message not stored (yet): as [`payload`] without
/// `seq`, which only the outbox gives (the HTTP API's `health`).
pub fn unstored_payload<S: AsRef<str>>(message: &Message<S>, store: &str) -> String {
    let mut out = String::with_capacity(capacity_hint(message));
    out.push_str("{\"ts\":");
    json::unsigned(&mut out, message.ts());
    members(out, message, store)
}

fn members<S: AsRef<str>>(mut out: String, message: &Message<S>, store: &str) -> String {
    out.push_str(",\"store\":");
    json::string(&mut out, store);
    let mut o = Object::resume(&mut out);
    match message {
        Message::Telemetry(t) => telemetry(&mut o, t),
        Message::Availability(a) => availability(&mut o, a),
        Message::Health(h) => health(&mut o, h),
        Message::HealthF2(h) => health(&mut o, &Health::from(h.clone())),
        Message::HealthF3(h) => health(&mut o, &Health::from(h.clone())),
        Message::Kpi(k) => kpi(&mut o, k),
        Message::KpiF2(k) => kpi(&mut o, &KpiWindow::from(k.clone())),
        Message::Gap(g) => gap(&mut o, g),
    }
    o.end();
    out
}

/// The retained `status` payload (it has no seq).
pub fn status(status: &Status) -> String {
    let mut out = String::with_capacity(160);
    let mut o = Object::open(&mut out);
    o.string("state", status.state.as_str());
    o.unsigned("ts", status.ts);
    if let Some(reason) = status.reason {
        o.string("reason", reason.as_str());
    }
    o.string("store", &status.store);
    o.string("version", &status.version);
    o.string("config_sha256", &status.config_sha256);
    o.end();
    out
}

fn capacity_hint<S: AsRef<str>>(message: &Message<S>) -> usize {
    match message {
        Message::Telemetry(t) => {
            96 + t
                .points
                .iter()
                .map(|(n, _)| n.as_ref().len() + 16)
                .sum::<usize>()
        }
        Message::Health(h) => 640 + 256 * h.devices.len(),
        Message::HealthF2(h) => 640 + 256 * h.devices.len(),
        Message::HealthF3(h) => 640 + 256 * h.devices.len(),
        Message::Kpi(_) | Message::KpiF2(_) => 640,
        Message::Availability(_) | Message::Gap(_) => 160,
    }
}

fn telemetry<S: AsRef<str>>(o: &mut Object<'_>, t: &Telemetry<S>) {
    o.string("device", t.device.as_ref());
    let mut values = Object::open(o.key("values"));
    for (name, reading) in &t.points {
        if let Reading::Value(v) = reading {
            let out = values.key(name.as_ref());
            match v {
                Value::Bool(b) => json::boolean(out, *b),
                Value::Number(n) => json::number(out, *n),
                Value::Text(s) => json::string(out, s.as_ref()),
            }
        }
    }
    values.end();
    let mut errors = Object::open(o.key("errors"));
    for (name, reading) in &t.points {
        if let Reading::Error(word) = reading {
            errors.string(name.as_ref(), &word.word());
        }
    }
    errors.end();
    if t.snapshot {
        o.boolean("snapshot", true);
    }
}

fn availability(o: &mut Object<'_>, a: &AvailabilityChange) {
    o.string("state", a.state.as_str());
    match &a.reason {
        AvailabilityReason::PollOk => o.string("reason", "poll_ok"),
        AvailabilityReason::Error(word) => o.string("reason", &word.word()),
        AvailabilityReason::Unknown => o.string("reason", ""),
    }
}

fn health(o: &mut Object<'_>, h: &Health) {
    o.number("uptime_s", h.uptime_s);
    let mut clock = Object::open(o.key("clock"));
    clock.boolean("plausible", h.clock_plausible);
    clock.end();
    let mut devices = Object::open(o.key("devices"));
    for d in &h.devices {
        let mut dev = Object::open(devices.key(&d.name));
        dev.string("state", d.state.as_str());
        dev.unsigned("polls", d.polls);
        dev.unsigned("good_polls", d.good_polls);
        dev.unsigned("overruns", d.overruns);
        let mut errors = Object::open(dev.key("errors"));
        errors.unsigned("timeout", d.errors.timeout);
        errors.unsigned("exception", d.errors.exception);
        errors.unsigned("decode", d.errors.decode);
        errors.unsigned("disconnected", d.errors.disconnected);
        errors.end();
        let mut latency = Object::open(dev.key("latency_ms"));
        latency.opt_number("last", d.latency.map(|l| l.last_ms));
        latency.opt_number("mean", d.latency.map(|l| l.mean_ms));
        latency.opt_number("max", d.latency.map(|l| l.max_ms));
        latency.end();
        dev.end();
    }
    devices.end();
    let mut buses = Object::open(o.key("buses"));
    for b in &h.buses {
        let mut bus = Object::open(buses.key(&b.name));
        bus.number("load_estimated", b.load_estimated);
        bus.number("busy_share", b.busy_share);
        bus.unsigned("late_replies", b.late_replies);
        bus.end();
    }
    buses.end();
    let ob = &h.outbox;
    let mut outbox = Object::open(o.key("outbox"));
    outbox.unsigned("depth", ob.depth);
    outbox.unsigned("bytes", ob.bytes);
    outbox.opt_number("oldest_age_s", ob.oldest_age_s);
    outbox.unsigned("backlog", ob.backlog);
    let mut dropped = Object::open(outbox.key("dropped"));
    dropped.unsigned("outbox_full", ob.dropped_outbox_full);
    dropped.unsigned("max_age", ob.dropped_max_age);
    dropped.unsigned("store_damaged", ob.dropped_store_damaged);
    dropped.end();
    outbox.unsigned("gaps", ob.gaps);
    outbox.unsigned("store_errors", ob.store_errors);
    outbox.unsigned("refused_too_large", ob.refused_too_large);
    outbox.unsigned("flushes", ob.flushes);
    outbox.unsigned("slow_flushes", ob.slow_flushes);
    outbox.unsigned("flush_waits", ob.flush_waits);
    outbox.end();
    let mut mqtt = Object::open(o.key("mqtt"));
    mqtt.unsigned("connects", h.mqtt.connects);
    mqtt.unsigned("disconnects", h.mqtt.disconnects);
    mqtt.unsigned("published", h.mqtt.published);
    mqtt.unsigned("acked", h.mqtt.acked);
    if let Some(refused) = h.mqtt_auth_refused {
        mqtt.unsigned("auth_refused", refused);
    }
    mqtt.end();
    let mut disk = Object::open(o.key("disk"));
    let opt_unsigned = |d: &mut Object<'_>, key: &str, v: Option<u64>| match v {
        Some(v) => d.unsigned(key, v),
        None => d.key(key).push_str("null"),
    };
    opt_unsigned(&mut disk, "free_bytes", h.disk_free_bytes);
    opt_unsigned(&mut disk, "bytes_written", h.bytes_written);
    disk.end();
    if let Some(history) = &h.history {
        let mut hist = Object::open(o.key("history"));
        hist.unsigned("windows", history.windows);
        hist.unsigned("bytes", history.bytes);
        hist.unsigned("trimmed_files", history.trimmed_files);
        hist.unsigned("write_errors", history.write_errors);
        hist.end();
    }
}

/// One closed KPI window as a line of the local history
/// (`data_dir/history/`, see `crate::history`): the `kpi/{kind}/{name}`
/// payload without `seq` and `store`, which the outbox gives only later.
pub fn history_line(k: &KpiWindow) -> String {
    let mut out = String::with_capacity(640);
    out.push_str("{\"ts\":");
    json::unsigned(&mut out, k.ts);
    let mut o = Object::resume(&mut out);
    kpi(&mut o, k);
    o.end();
    out
}

#[allow(clippy::cast_precision_loss)]
fn kpi(o: &mut Object<'_>, k: &KpiWindow) {
    o.string("kind", k.kind().as_str());
    o.string("name", &k.name);
    let mut window = Object::open(o.key("window"));
    window.unsigned("start", k.window.start);
    window.unsigned("end", k.window.end);
    window.end();
    match &k.figures {
        KpiFigures::EnergyPerOutput(e) => energy_per_output(o, e),
        KpiFigures::CncCoverage(c) => cnc_coverage(o, c),
        KpiFigures::EnergyConsumption(e) => energy_consumption(o, e),
    }
    o.string("quality", k.quality.as_str());
    let flags = o.key("flags");
    flags.push('[');
    for (i, flag) in k.flags.iter().enumerate() {
        if i > 0 {
            flags.push(',');
        }
        json::string(flags, &flag.word());
    }
    flags.push(']');
    if let Some(completeness) = &k.sample_completeness {
        sample_completeness(o, completeness);
    }
}

fn sample_completeness(o: &mut Object<'_>, c: &SampleCompleteness) {
    let mut sc = Object::open(o.key("sample_completeness"));
    sc.opt_number("min", c.min);
    let below = sc.key("below");
    below.push('[');
    for (i, (point, ratio)) in c.below.iter().enumerate() {
        if i > 0 {
            below.push(',');
        }
        let mut item = Object::open(below);
        item.string("point", point);
        item.number("ratio", *ratio);
        item.end();
    }
    below.push(']');
    sc.end();
}

fn carriers(o: &mut Object<'_>, figures: &[CarrierFigures]) {
    let mut energy = Object::open(o.key("energy"));
    for c in figures {
        let mut carrier = Object::open(energy.key(&c.carrier));
        carrier.opt_number("consumption", c.consumption);
        carrier.string("unit", &c.unit);
        carrier.opt_number("kgce", c.kgce);
        carrier.opt_number("kgco2", c.kgco2);
        carrier.opt_number("kgce_per_unit", c.kgce_per_unit);
        carrier.opt_number("kgco2_per_unit", c.kgco2_per_unit);
        if let Some(basis) = &c.basis {
            carrier.string("basis", &basis.basis);
            if let Some(year) = basis.basis_year {
                carrier.unsigned("basis_year", u64::from(year));
            }
            match &basis.co2_factor_id {
                Some(id) => carrier.string("co2_factor_id", id),
                None => carrier.key("co2_factor_id").push_str("null"),
            }
            carrier.opt_number("co2_factor_year", basis.co2_factor_year.map(f64::from));
        }
        carrier.end();
    }
    energy.end();
}

fn energy_consumption(o: &mut Object<'_>, e: &EnergyConsumption) {
    if let Some(scope) = &e.scope {
        o.string("scope", scope);
    }
    o.opt_number("kgce", e.kgce);
    o.opt_number("tce", e.tce);
    o.opt_number("kgco2", e.kgco2);
    carriers(o, &e.energy);
}

fn energy_per_output(o: &mut Object<'_>, e: &EnergyPerOutput) {
    o.opt_number("value", e.value);
    o.string("unit", &e.unit);
    o.opt_number("co2_kg_per_unit", e.co2_kg_per_unit);
    o.opt_number("output", e.output);
    o.opt_number("kgce", e.kgce);
    o.opt_number("kgco2", e.kgco2);
    carriers(o, &e.energy);
    if let Some(over) = e.over_limit {
        o.boolean("over_limit", over);
    }
    if e.vs_baseline.is_some() {
        o.opt_number("vs_baseline", e.vs_baseline);
    }
}

#[allow(clippy::cast_precision_loss)]
fn cnc_coverage(o: &mut Object<'_>, c: &CncCoverage) {
    o.opt_number("count_ratio", c.count_ratio);
    o.opt_number("networked_ratio", c.networked_ratio);
    o.opt_number("time_ratio", c.time_ratio);
    o.unsigned("equipment", c.equipment);
    o.unsigned("numerically_controlled", c.numerically_controlled);
    o.unsigned("networked", c.networked);
    o.number("running_s", c.running_s);
    o.number("cnc_running_s", c.cnc_running_s);
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
            o.unsigned("from_seq", *from_seq);
            o.unsigned("to_seq", *to_seq);
            o.unsigned("count", *count);
            o.string("reason", reason.as_str());
        }
        GapReport::StoreDamaged {
            lost_store, detail, ..
        } => {
            o.string("reason", "store_damaged");
            match lost_store {
                Some(id) => o.string("lost_store", id),
                None => o.key("lost_store").push_str("null"),
            }
            o.string("detail", detail);
        }
    }
}
