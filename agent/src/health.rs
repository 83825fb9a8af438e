//! The `health` payload, built every 60 s from the typed event counters.
//!
//! Owns [`DeviceStats`] (written by a device's poller, read here) and the
//! body builder. Nothing here is computed from logs: every number is a
//! counter or level some event updated.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::events::{Counter, Counters, Gauge};
use crate::telemetry::{push_json_string, push_number};

/// Per-device counters, written by the device's poller.
#[derive(Debug, Default)]
pub struct DeviceStats {
    pub polls: Counter,
    pub good_polls: Counter,
    pub overruns: Counter,
    pub err_timeout: Counter,
    pub err_exception: Counter,
    pub err_decode: Counter,
    pub err_disconnected: Counter,
    pub latency_last_us: Gauge,
    pub latency_sum_us: Counter,
    pub latency_max_us: Gauge,
    /// 0 unknown, 1 online, 2 offline.
    state: AtomicU8,
}

impl DeviceStats {
    /// Counts one point error by its SPEC word.
    pub fn count_error(&self, word: &str) {
        match word {
            "timeout" => self.err_timeout.inc(),
            "decode" => self.err_decode.inc(),
            "disconnected" => self.err_disconnected.inc(),
            _ => self.err_exception.inc(),
        }
    }

    /// Records one poll's duration.
    pub fn record_latency(&self, micros: u64) {
        self.latency_last_us.set(micros);
        self.latency_sum_us.add(micros);
        if micros > self.latency_max_us.get() {
            self.latency_max_us.set(micros);
        }
    }

    pub fn set_online(&self, online: bool) {
        self.state
            .store(if online { 1 } else { 2 }, Ordering::Relaxed);
    }

    fn state_word(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            1 => "online",
            2 => "offline",
            _ => "unknown",
        }
    }
}

/// A serial bus's figures for `health`.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Estimated load from the plan (per mille, fixed at start).
    pub load_estimated_permille: Gauge,
    /// Microseconds the bus spent in transactions (measured).
    pub busy_us: Counter,
    /// Replies that came after their request had timed out, recognised
    /// (a unit and function the bus asked earlier) and discarded.
    pub late_replies: Gauge,
}

/// Everything `health` reads.
#[derive(Debug, Default)]
pub struct HealthSources {
    pub counters: Arc<Counters>,
    pub devices: BTreeMap<String, Arc<DeviceStats>>,
    pub buses: BTreeMap<String, Arc<BusStats>>,
}

/// Builds the `health` body (members after `seq`/`ts`/`store`).
pub fn health_body(
    sources: &HealthSources,
    uptime_s: f64,
    now_ms: u64,
    clock_plausible: bool,
    data_dir: &Path,
) -> String {
    let c = &sources.counters;
    let mut b = String::with_capacity(512 + 256 * sources.devices.len());
    b.push_str(",\"uptime_s\":");
    push_number(&mut b, (uptime_s * 10.0).round() / 10.0);
    let _ = write!(
        b,
        ",\"clock\":{{\"plausible\":{clock_plausible}}},\"devices\":{{"
    );
    for (i, (name, d)) in sources.devices.iter().enumerate() {
        if i > 0 {
            b.push(',');
        }
        push_json_string(&mut b, name);
        push_device(&mut b, d);
    }
    b.push_str("},\"buses\":{");
    push_buses(&mut b, &sources.buses, uptime_s);
    let oldest = c.outbox_oldest_ms.get();
    b.push_str("},\"outbox\":{");
    let _ = write!(
        b,
        "\"depth\":{},\"bytes\":{},\"oldest_age_s\":",
        c.outbox_depth.get(),
        c.outbox_bytes.get()
    );
    if oldest == 0 {
        b.push_str("null");
    } else {
        #[allow(clippy::cast_precision_loss)]
        push_number(&mut b, now_ms.saturating_sub(oldest) as f64 / 1000.0);
    }
    let _ = write!(
        b,
        ",\"backlog\":{},\"dropped\":{{\"outbox_full\":{},\"max_age\":{},\"store_damaged\":{}}},\"gaps\":{},\"store_errors\":{},\"refused_too_large\":{},\"flushes\":{},\"slow_flushes\":{},\"flush_waits\":{}}}",
        c.outbox_backlog.get(),
        c.outbox_dropped_full.get(),
        c.outbox_dropped_age.get(),
        c.outbox_dropped_damaged.get(),
        c.outbox_gaps.get(),
        c.outbox_store_errors.get(),
        c.outbox_refused_too_large.get(),
        c.outbox_flushes.get(),
        c.outbox_slow_flushes.get(),
        c.outbox_flush_waits.get(),
    );
    let _ = write!(
        b,
        ",\"mqtt\":{{\"connects\":{},\"disconnects\":{},\"published\":{},\"acked\":{}}}",
        c.mqtt_connects.get(),
        c.mqtt_disconnects.get(),
        c.published.get(),
        c.published_acked.get()
    );
    b.push_str(",\"disk\":{\"free_bytes\":");
    match disk_free(data_dir) {
        Some(free) => {
            let _ = write!(b, "{free}");
        }
        None => b.push_str("null"),
    }
    b.push_str(",\"bytes_written\":");
    match process_bytes_written() {
        Some(w) => {
            let _ = write!(b, "{w}");
        }
        None => b.push_str("null"),
    }
    b.push('}');
    b
}

fn push_device(b: &mut String, d: &DeviceStats) {
    let polls = d.polls.get();
    let _ = write!(
        b,
        ":{{\"state\":\"{}\",\"polls\":{polls},\"good_polls\":{},\"overruns\":{},\"errors\":{{\"timeout\":{},\"exception\":{},\"decode\":{},\"disconnected\":{}}},\"latency_ms\":{{\"last\":",
        d.state_word(),
        d.good_polls.get(),
        d.overruns.get(),
        d.err_timeout.get(),
        d.err_exception.get(),
        d.err_decode.get(),
        d.err_disconnected.get(),
    );
    match d.latency_sum_us.get().checked_div(polls) {
        None => b.push_str("null,\"mean\":null,\"max\":null}}"),
        Some(mean) => {
            push_number(b, ms3(d.latency_last_us.get()));
            b.push_str(",\"mean\":");
            push_number(b, ms3(mean));
            b.push_str(",\"max\":");
            push_number(b, ms3(d.latency_max_us.get()));
            b.push_str("}}");
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn push_buses(b: &mut String, buses: &BTreeMap<String, Arc<BusStats>>, uptime_s: f64) {
    let uptime_micros = uptime_s * 1e6;
    for (i, (name, bus)) in buses.iter().enumerate() {
        if i > 0 {
            b.push(',');
        }
        push_json_string(b, name);
        b.push_str(":{\"load_estimated\":");
        push_number(b, bus.load_estimated_permille.get() as f64 / 1000.0);
        b.push_str(",\"busy_share\":");
        let busy = if uptime_micros > 0.0 {
            bus.busy_us.get() as f64 / uptime_micros
        } else {
            0.0
        };
        push_number(b, (busy * 1000.0).round() / 1000.0);
        let _ = write!(b, ",\"late_replies\":{}}}", bus.late_replies.get());
    }
}

#[allow(clippy::cast_precision_loss)]
fn ms3(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// Bytes free for unprivileged users on the file system holding `path`.
pub fn disk_free(path: &Path) -> Option<u64> {
    fs4::available_space(path).ok()
}

/// Bytes this process caused to be written to storage (Linux `/proc/self/io`).
pub fn process_bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_body_is_json_with_every_counter() {
        let mut sources = HealthSources::default();
        let d = Arc::new(DeviceStats::default());
        d.polls.add(4);
        d.good_polls.add(3);
        d.count_error("timeout");
        d.count_error("exception:2");
        d.record_latency(1500);
        d.record_latency(2500);
        d.set_online(true);
        sources.devices.insert("m1".into(), d);
        sources.counters.outbox_depth.set(7);
        sources.counters.outbox_slow_flushes.add(2);
        sources.counters.outbox_flush_waits.inc();
        let bus = Arc::new(BusStats::default());
        bus.late_replies.set(2);
        bus.busy_us.add(3_000_000);
        sources.buses.insert("rs485-1".into(), bus);
        let body = health_body(&sources, 12.0, 1_000, true, Path::new("/"));
        let v: serde_json::Value = serde_json::from_str(&format!("{{\"seq\":1{body}}}")).unwrap();
        assert_eq!(v["devices"]["m1"]["errors"]["timeout"], 1);
        assert_eq!(v["devices"]["m1"]["errors"]["exception"], 1);
        assert_eq!(v["devices"]["m1"]["latency_ms"]["max"], 2.5);
        assert_eq!(v["devices"]["m1"]["state"], "online");
        assert_eq!(v["outbox"]["depth"], 7);
        assert_eq!(v["outbox"]["slow_flushes"], 2);
        assert_eq!(v["outbox"]["flush_waits"], 1);
        assert_eq!(v["buses"]["rs485-1"]["late_replies"], 2);
        assert_eq!(v["buses"]["rs485-1"]["busy_share"], 0.25);
        assert!(v["disk"]["free_bytes"].as_u64().is_some());
    }
}
