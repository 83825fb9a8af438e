//! `GET /metrics`: the Prometheus text format (version 0.0.4), rendered
//! at scrape time from the same counters `health` reads.
//!
//! Hand-rendered rather than through `prometheus-client`: every number
//! already lives in an atomic (`events::Counters`, `health::DeviceStats`,
//! `BusStats`), so a registry would mirror them (memory and a second
//! update per event) or need a collector per family; the format for
//! counters, gauges and one histogram is a few lines, and a hil test runs
//! the output through `promtool check metrics`.
//!
//! Labels come from the configuration only (device, bus and KPI names,
//! fixed word sets such as error words and drop reasons), never from a
//! value, so the number of series is fixed at start.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::health::LATENCY_BUCKETS_US;
use crate::http::server::AppState;
use crate::message::{KpiFigures, Quality};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value escaped for the text format.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: integers exactly, other numbers in Rust's shortest
/// round-trip form (`NaN`, `+Inf`, `-Inf` as the format spells them).
fn value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample: `name{k="v",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            label(out, val);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value(out, v);
    out.push('\n');
}

#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

/// The whole exposition.
#[allow(
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::many_single_char_names
)]
pub fn render(state: &AppState) -> String {
    let mut o = String::with_capacity(8192);
    let s = &state.sources;
    let c = &s.counters;
    let devices = &s.devices;

    header(
        &mut o,
        "spindle_device_polls_total",
        "counter",
        "Polls of a device.",
    );
    for (name, d) in devices {
        sample(
            &mut o,
            "spindle_device_polls_total",
            &[("device", name)],
            f(d.polls.get()),
        );
    }
    header(
        &mut o,
        "spindle_device_good_polls_total",
        "counter",
        "Polls that got at least one value.",
    );
    for (name, d) in devices {
        sample(
            &mut o,
            "spindle_device_good_polls_total",
            &[("device", name)],
            f(d.good_polls.get()),
        );
    }
    header(
        &mut o,
        "spindle_device_errors_total",
        "counter",
        "Point errors by error word (exception counts every code and protocol refusal).",
    );
    for (name, d) in devices {
        for (word, n) in [
            ("timeout", d.err_timeout.get()),
            ("exception", d.err_exception.get()),
            ("decode", d.err_decode.get()),
            ("disconnected", d.err_disconnected.get()),
        ] {
            sample(
                &mut o,
                "spindle_device_errors_total",
                &[("device", name), ("error", word)],
                f(n),
            );
        }
    }
    header(
        &mut o,
        "spindle_device_overruns_total",
        "counter",
        "Poll ticks skipped because the device was still being served.",
    );
    for (name, d) in devices {
        sample(
            &mut o,
            "spindle_device_overruns_total",
            &[("device", name)],
            f(d.overruns.get()),
        );
    }
    header(
        &mut o,
        "spindle_device_online",
        "gauge",
        "1 when the device is online, 0 when offline or not yet known.",
    );
    for name in devices.keys() {
        let online = state
            .live
            .device_state(name)
            .is_some_and(|d| d.state == Some(crate::message::Reachability::Online));
        sample(
            &mut o,
            "spindle_device_online",
            &[("device", name)],
            if online { 1.0 } else { 0.0 },
        );
    }
    header(
        &mut o,
        "spindle_device_poll_latency_seconds",
        "histogram",
        "Duration of a device's polls.",
    );
    for (name, d) in devices {
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS_US.iter().enumerate() {
            cumulative += d
                .latency_buckets
                .get(i)
                .map_or(0, crate::events::Counter::get);
            let le = format!("{}", *le as f64 / 1e6);
            sample(
                &mut o,
                "spindle_device_poll_latency_seconds_bucket",
                &[("device", name), ("le", &le)],
                f(cumulative),
            );
        }
        cumulative += d
            .latency_buckets
            .get(LATENCY_BUCKETS_US.len())
            .map_or(0, crate::events::Counter::get);
        sample(
            &mut o,
            "spindle_device_poll_latency_seconds_bucket",
            &[("device", name), ("le", "+Inf")],
            f(cumulative),
        );
        sample(
            &mut o,
            "spindle_device_poll_latency_seconds_sum",
            &[("device", name)],
            f(d.latency_sum_us.get()) / 1e6,
        );
        sample(
            &mut o,
            "spindle_device_poll_latency_seconds_count",
            &[("device", name)],
            f(cumulative),
        );
    }

    let uptime_us = state.started.elapsed().as_secs_f64() * 1e6;
    header(
        &mut o,
        "spindle_bus_load_estimated_ratio",
        "gauge",
        "Share of a serial bus's time its poll plan needs (estimated at start).",
    );
    for (name, bus) in &s.buses {
        sample(
            &mut o,
            "spindle_bus_load_estimated_ratio",
            &[("bus", name)],
            f(bus.load_estimated_permille.get()) / 1000.0,
        );
    }
    header(
        &mut o,
        "spindle_bus_load_measured_ratio",
        "gauge",
        "Share of a serial bus's time spent in transactions since start (measured).",
    );
    for (name, bus) in &s.buses {
        let ratio = if uptime_us > 0.0 {
            f(bus.busy_us.get()) / uptime_us
        } else {
            0.0
        };
        sample(
            &mut o,
            "spindle_bus_load_measured_ratio",
            &[("bus", name)],
            ratio,
        );
    }
    header(
        &mut o,
        "spindle_bus_busy_seconds_total",
        "counter",
        "Time a serial bus spent in transactions.",
    );
    for (name, bus) in &s.buses {
        sample(
            &mut o,
            "spindle_bus_busy_seconds_total",
            &[("bus", name)],
            f(bus.busy_us.get()) / 1e6,
        );
    }
    header(
        &mut o,
        "spindle_bus_late_replies_total",
        "counter",
        "Replies that came after their request timed out, recognised and discarded.",
    );
    for (name, bus) in &s.buses {
        sample(
            &mut o,
            "spindle_bus_late_replies_total",
            &[("bus", name)],
            f(bus.late_replies.get()),
        );
    }

    header(
        &mut o,
        "spindle_outbox_records",
        "gauge",
        "Records in the outbox.",
    );
    sample(
        &mut o,
        "spindle_outbox_records",
        &[],
        f(c.outbox_depth.get()),
    );
    header(
        &mut o,
        "spindle_outbox_bytes",
        "gauge",
        "Bytes the outbox's records hold.",
    );
    sample(&mut o, "spindle_outbox_bytes", &[], f(c.outbox_bytes.get()));
    header(
        &mut o,
        "spindle_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest record in the outbox (0 when empty).",
    );
    let oldest = c.outbox_oldest_ms.get();
    let now = crate::clock::now_ms();
    let age = if oldest == 0 {
        0.0
    } else {
        f(now.saturating_sub(oldest)) / 1000.0
    };
    sample(&mut o, "spindle_outbox_oldest_age_seconds", &[], age);
    header(
        &mut o,
        "spindle_outbox_backlog_records",
        "gauge",
        "Records waiting to be published.",
    );
    sample(
        &mut o,
        "spindle_outbox_backlog_records",
        &[],
        f(c.outbox_backlog.get()),
    );
    header(
        &mut o,
        "spindle_outbox_dropped_total",
        "counter",
        "Records dropped, by reason.",
    );
    for (reason, n) in [
        ("outbox_full", c.outbox_dropped_full.get()),
        ("max_age", c.outbox_dropped_age.get()),
        ("store_damaged", c.outbox_dropped_damaged.get()),
    ] {
        sample(
            &mut o,
            "spindle_outbox_dropped_total",
            &[("reason", reason)],
            f(n),
        );
    }
    header(
        &mut o,
        "spindle_outbox_gaps_total",
        "counter",
        "Gaps announced on the gap topic.",
    );
    sample(
        &mut o,
        "spindle_outbox_gaps_total",
        &[],
        f(c.outbox_gaps.get()),
    );
    header(
        &mut o,
        "spindle_outbox_store_errors_total",
        "counter",
        "Outbox store operations that failed.",
    );
    sample(
        &mut o,
        "spindle_outbox_store_errors_total",
        &[],
        f(c.outbox_store_errors.get()),
    );

    header(
        &mut o,
        "spindle_mqtt_connected",
        "gauge",
        "1 while an MQTT session is up.",
    );
    sample(
        &mut o,
        "spindle_mqtt_connected",
        &[],
        f(c.mqtt_connected.get()),
    );
    header(
        &mut o,
        "spindle_mqtt_in_flight",
        "gauge",
        "Records published and not yet acknowledged.",
    );
    sample(
        &mut o,
        "spindle_mqtt_in_flight",
        &[],
        f(c.mqtt_in_flight.get()),
    );
    header(
        &mut o,
        "spindle_mqtt_published_total",
        "counter",
        "Records published.",
    );
    sample(
        &mut o,
        "spindle_mqtt_published_total",
        &[],
        f(c.published.get()),
    );
    header(
        &mut o,
        "spindle_mqtt_acknowledged_total",
        "counter",
        "Records the broker acknowledged.",
    );
    sample(
        &mut o,
        "spindle_mqtt_acknowledged_total",
        &[],
        f(c.published_acked.get()),
    );
    header(
        &mut o,
        "spindle_mqtt_connects_total",
        "counter",
        "MQTT sessions established.",
    );
    sample(
        &mut o,
        "spindle_mqtt_connects_total",
        &[],
        f(c.mqtt_connects.get()),
    );
    header(
        &mut o,
        "spindle_mqtt_reconnects_total",
        "counter",
        "MQTT sessions established after the first.",
    );
    sample(
        &mut o,
        "spindle_mqtt_reconnects_total",
        &[],
        f(c.mqtt_connects.get().saturating_sub(1)),
    );

    let kpis = state.live.kpis();
    header(
        &mut o,
        "spindle_kpi_value",
        "gauge",
        "The latest window's headline figure (cnc_coverage: count_ratio, energy_per_output: value, energy_consumption: kgce); absent when the window has none.",
    );
    for (kind, name, window) in &kpis {
        let Some(w) = window else { continue };
        let (figure, v) = match &w.figures {
            KpiFigures::CncCoverage(x) => ("count_ratio", x.count_ratio),
            KpiFigures::EnergyPerOutput(x) => ("value", x.value),
            KpiFigures::EnergyConsumption(x) => ("kgce", x.kgce),
        };
        if let Some(v) = v {
            sample(
                &mut o,
                "spindle_kpi_value",
                &[("kind", kind.as_str()), ("name", name), ("figure", figure)],
                v,
            );
        }
    }
    header(
        &mut o,
        "spindle_kpi_quality",
        "gauge",
        "1 for the latest window's quality, 0 for the others.",
    );
    for (kind, name, window) in &kpis {
        let Some(w) = window else { continue };
        for q in [
            Quality::Good,
            Quality::Partial,
            Quality::NoOutput,
            Quality::NoData,
        ] {
            sample(
                &mut o,
                "spindle_kpi_quality",
                &[
                    ("kind", kind.as_str()),
                    ("name", name),
                    ("quality", q.as_str()),
                ],
                if w.quality == q { 1.0 } else { 0.0 },
            );
        }
    }
    header(
        &mut o,
        "spindle_kpi_window_end_timestamp_seconds",
        "gauge",
        "End of the latest window (Unix seconds).",
    );
    for (kind, name, window) in &kpis {
        let Some(w) = window else { continue };
        sample(
            &mut o,
            "spindle_kpi_window_end_timestamp_seconds",
            &[("kind", kind.as_str()), ("name", name)],
            f(w.window.end) / 1000.0,
        );
    }

    header(
        &mut o,
        "spindle_http_connections",
        "gauge",
        "HTTP connections being served (at most 64).",
    );
    let connections = state.connections.load(std::sync::atomic::Ordering::Acquire);
    sample(&mut o, "spindle_http_connections", &[], connections as f64);
    header(
        &mut o,
        "spindle_http_live_subscribers",
        "gauge",
        "Live-update (server-sent events) subscribers.",
    );
    sample(
        &mut o,
        "spindle_http_live_subscribers",
        &[],
        state.live.events().subscribers() as f64,
    );

    if let Some(cpu) = process_cpu_seconds() {
        header(
            &mut o,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent in seconds.",
        );
        sample(&mut o, "process_cpu_seconds_total", &[], cpu);
    }
    if let Some(rss) = process_resident_memory_bytes() {
        header(
            &mut o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        sample(&mut o, "process_resident_memory_bytes", &[], f(rss));
    }
    o
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state)).into_response()
}

/// Clock ticks per second of `/proc/self/stat`'s times: `USER_HZ`, 100 on
/// every Linux architecture spindle builds for (reading it needs
/// `sysconf`, i.e. `unsafe` FFI, which the crate forbids).
const USER_HZ: f64 = 100.0;

/// User + system CPU time of this process (Linux `/proc/self/stat`).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident set size of this process (Linux `/proc/self/status` `VmRSS`).
pub fn process_resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_spelt_as_the_format_says() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw")], f64::INFINITY);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} +Inf\n");
        out.clear();
        sample(&mut out, "m", &[], 0.25);
        sample(&mut out, "m", &[], 7.0);
        assert_eq!(out, "m 0.25\nm 7\n");
    }

    #[test]
    fn this_process_has_cpu_time_and_resident_memory() {
        assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(process_resident_memory_bytes().is_some_and(|b| b > 1 << 20));
    }
}
