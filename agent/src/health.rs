//! The `health` message, built every 60 s from the typed event counters.
//!
//! Owns [`DeviceStats`] (written by a device's poller, read here) and the
//! report builder. Nothing here is computed from logs: every number is a
//! counter or level some event updated.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use spindle_protocols::modbus::decode::Registers;

use crate::events::{Counter, Counters, Gauge};
use crate::message::{
    BusHealth, DeviceHealth, DeviceState, ErrorCounts, ErrorWord, Health, HistoryHealth, Latency,
    MqttHealth, OutboxHealth,
};

/// Upper bounds of the poll latency histogram (µs): 5 ms to 10 s.
pub const LATENCY_BUCKETS_US: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

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
    /// Polls by duration: `LATENCY_BUCKETS_US[i]` or less (the last: longer).
    pub latency_buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    /// 0 unknown, 1 online, 2 offline.
    state: AtomicU8,
    /// Each point's registers as last read (`None`: an error, a string,
    /// a bit, DL/T 645), in point order: for the status page. Sized once,
    /// then overwritten in place.
    registers: Mutex<Vec<Option<Registers>>>,
}

impl DeviceStats {
    /// Counts one point error by its word (`exception` counts every
    /// exception code and protocol refusal).
    pub fn count_error(&self, word: &ErrorWord) {
        match word {
            ErrorWord::Timeout => self.err_timeout.inc(),
            ErrorWord::Decode => self.err_decode.inc(),
            ErrorWord::Disconnected => self.err_disconnected.inc(),
            ErrorWord::Exception(_) | ErrorWord::Abnormal(_) => self.err_exception.inc(),
        }
    }

    /// Records one poll's duration.
    pub fn record_latency(&self, micros: u64) {
        self.latency_last_us.set(micros);
        let bucket = LATENCY_BUCKETS_US.partition_point(|&le| le < micros);
        if let Some(b) = self.latency_buckets.get(bucket) {
            b.inc();
        }
        self.latency_sum_us.add(micros);
        if micros > self.latency_max_us.get() {
            self.latency_max_us.set(micros);
        }
    }

    /// Keeps one poll's registers, point by point.
    pub fn set_registers(&self, points: impl ExactSizeIterator<Item = Option<Registers>>) {
        let mut slots = self
            .registers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.resize(points.len(), None);
        for (slot, registers) in slots.iter_mut().zip(points) {
            *slot = registers;
        }
    }

    /// The registers of point `index` as last read.
    pub fn registers(&self, index: usize) -> Option<Registers> {
        self.registers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(index)
            .copied()
            .flatten()
    }

    pub fn set_online(&self, online: bool) {
        self.state
            .store(if online { 1 } else { 2 }, Ordering::Relaxed);
    }

    fn state(&self) -> DeviceState {
        match self.state.load(Ordering::Relaxed) {
            1 => DeviceState::Online,
            2 => DeviceState::Offline,
            _ => DeviceState::Unknown,
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

/// The `health` report at `now_ms`: every counter and level read once.
#[allow(clippy::cast_precision_loss)]
pub fn health_report(
    sources: &HealthSources,
    uptime_s: f64,
    now_ms: u64,
    clock_plausible: bool,
    data_dir: &Path,
) -> Health {
    let c = &sources.counters;
    let oldest = c.outbox_oldest_ms.get();
    let uptime_micros = uptime_s * 1e6;
    Health {
        ts: now_ms,
        uptime_s: (uptime_s * 10.0).round() / 10.0,
        clock_plausible,
        devices: sources
            .devices
            .iter()
            .map(|(name, d)| device_health(name, d))
            .collect(),
        buses: sources
            .buses
            .iter()
            .map(|(name, bus)| {
                let busy = if uptime_micros > 0.0 {
                    bus.busy_us.get() as f64 / uptime_micros
                } else {
                    0.0
                };
                BusHealth {
                    name: name.clone(),
                    load_estimated: bus.load_estimated_permille.get() as f64 / 1000.0,
                    busy_share: (busy * 1000.0).round() / 1000.0,
                    late_replies: bus.late_replies.get(),
                }
            })
            .collect(),
        outbox: OutboxHealth {
            depth: c.outbox_depth.get(),
            bytes: c.outbox_bytes.get(),
            oldest_age_s: (oldest != 0).then(|| now_ms.saturating_sub(oldest) as f64 / 1000.0),
            backlog: c.outbox_backlog.get(),
            dropped_outbox_full: c.outbox_dropped_full.get(),
            dropped_max_age: c.outbox_dropped_age.get(),
            dropped_store_damaged: c.outbox_dropped_damaged.get(),
            gaps: c.outbox_gaps.get(),
            store_errors: c.outbox_store_errors.get(),
            refused_too_large: c.outbox_refused_too_large.get(),
            flushes: c.outbox_flushes.get(),
            slow_flushes: c.outbox_slow_flushes.get(),
            flush_waits: c.outbox_flush_waits.get(),
        },
        mqtt: MqttHealth {
            connects: c.mqtt_connects.get(),
            disconnects: c.mqtt_disconnects.get(),
            published: c.published.get(),
            acked: c.published_acked.get(),
        },
        disk_free_bytes: disk_free(data_dir),
        bytes_written: process_bytes_written(),
        history: Some(HistoryHealth {
            windows: c.history_windows.get(),
            bytes: c.history_bytes.get(),
            trimmed_files: c.history_trimmed_files.get(),
            write_errors: c.history_write_errors.get(),
        }),
        mqtt_auth_refused: Some(c.mqtt_auth_refused.get()),
    }
}

fn device_health(name: &str, d: &DeviceStats) -> DeviceHealth {
    let polls = d.polls.get();
    DeviceHealth {
        name: name.to_owned(),
        state: d.state(),
        polls,
        good_polls: d.good_polls.get(),
        overruns: d.overruns.get(),
        errors: ErrorCounts {
            timeout: d.err_timeout.get(),
            exception: d.err_exception.get(),
            decode: d.err_decode.get(),
            disconnected: d.err_disconnected.get(),
        },
        latency: d
            .latency_sum_us
            .get()
            .checked_div(polls)
            .map(|mean| Latency {
                last_ms: ms3(d.latency_last_us.get()),
                mean_ms: ms3(mean),
                max_ms: ms3(d.latency_max_us.get()),
            }),
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
        d.count_error(&ErrorWord::Timeout);
        d.count_error(&ErrorWord::Exception(2));
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
        let report = health_report(&sources, 12.0, 1_000, true, Path::new("/"));
        let payload = crate::wire::spindle::payload(
            &crate::message::Message::<crate::message::Name>::Health(report),
            1,
            "s",
        );
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
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
