//! Typed events and the counters `health` is built from.
//!
//! Each degradation is counted where it happens, in one call that also logs
//! it (see the emitters in the poller and publisher). Counters are atomics:
//! written by the task that sees the event, read by the `health` builder.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::outbox::OutboxStats;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A level that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Agent-wide counters (per-device ones live with each device's poller).
#[derive(Debug, Default)]
pub struct Counters {
    pub outbox_appended: Counter,
    pub outbox_flushes: Counter,
    /// Flushes that took longer than `flush_interval`.
    pub outbox_slow_flushes: Counter,
    /// Times the publisher stopped taking messages behind a running flush
    /// (`MAX_UNFLUSHED` appended behind it): a slow disk.
    pub outbox_flush_waits: Counter,
    pub outbox_store_errors: Counter,
    pub outbox_refused_too_large: Counter,
    pub outbox_depth: Gauge,
    pub outbox_bytes: Gauge,
    pub outbox_oldest_ms: Gauge,
    pub outbox_backlog: Gauge,
    pub outbox_dropped_full: Gauge,
    pub outbox_dropped_age: Gauge,
    pub outbox_dropped_damaged: Gauge,
    pub outbox_gaps: Gauge,
    pub published: Counter,
    pub published_acked: Counter,
    pub mqtt_connects: Counter,
    pub mqtt_disconnects: Counter,
    /// Connection attempts the broker refused for their credentials.
    pub mqtt_auth_refused: Counter,
    /// 1 while an MQTT session is up.
    pub mqtt_connected: Gauge,
    /// Records published and not yet acknowledged (set every second).
    pub mqtt_in_flight: Gauge,
    /// Turns of the publisher's periodic tick (the watchdog's sign of life).
    pub publisher_ticks: Counter,
    /// KPI windows written to the local history.
    pub history_windows: Counter,
    /// KPI windows the local history could not take.
    pub history_write_errors: Counter,
    /// History month files deleted by `max_age` or `max_size`.
    pub history_trimmed_files: Counter,
    /// Bytes the history files hold.
    pub history_bytes: Gauge,
}

impl Counters {
    pub fn set_outbox_levels(&self, stats: &OutboxStats, backlog: u64) {
        self.outbox_depth.set(stats.depth);
        self.outbox_bytes.set(stats.bytes);
        self.outbox_backlog.set(backlog);
        self.outbox_dropped_full.set(stats.dropped_outbox_full);
        self.outbox_dropped_age.set(stats.dropped_max_age);
        self.outbox_dropped_damaged.set(stats.dropped_store_damaged);
        self.outbox_gaps.set(stats.gaps_announced);
    }
}
