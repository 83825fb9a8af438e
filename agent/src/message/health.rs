//! The agent's own figures as a message (SPEC §5 `health`), every number
//! read from a counter or level at one instant.

use serde::{Deserialize, Serialize};

/// One `health` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ts: u64,
    /// Seconds since start, to a tenth.
    pub uptime_s: f64,
    pub clock_plausible: bool,
    /// By device name, sorted.
    pub devices: Vec<DeviceHealth>,
    /// By bus name, sorted.
    pub buses: Vec<BusHealth>,
    pub outbox: OutboxHealth,
    pub mqtt: MqttHealth,
    pub disk_free_bytes: Option<u64>,
    pub bytes_written: Option<u64>,
    /// `None` only for reports stored before the member existed.
    pub history: Option<HistoryHealth>,
    /// Connection attempts the broker refused for their credentials (bad
    /// username or password, not authorized), rendered as
    /// `mqtt.auth_refused`. `None` only for reports stored before the
    /// member existed.
    pub mqtt_auth_refused: Option<u64>,
}

/// A `health` report as stored before `mqtt_auth_refused` (read only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthF3 {
    pub ts: u64,
    pub uptime_s: f64,
    pub clock_plausible: bool,
    pub devices: Vec<DeviceHealth>,
    pub buses: Vec<BusHealth>,
    pub outbox: OutboxHealth,
    pub mqtt: MqttHealth,
    pub disk_free_bytes: Option<u64>,
    pub bytes_written: Option<u64>,
    pub history: Option<HistoryHealth>,
}

impl From<HealthF3> for Health {
    fn from(old: HealthF3) -> Self {
        Health {
            ts: old.ts,
            uptime_s: old.uptime_s,
            clock_plausible: old.clock_plausible,
            devices: old.devices,
            buses: old.buses,
            outbox: old.outbox,
            mqtt: old.mqtt,
            disk_free_bytes: old.disk_free_bytes,
            bytes_written: old.bytes_written,
            history: old.history,
            mqtt_auth_refused: None,
        }
    }
}

/// The local KPI history (`data_dir/history/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryHealth {
    /// KPI windows written (and fsynced).
    pub windows: u64,
    /// Bytes the history files hold.
    pub bytes: u64,
    /// Month files deleted by `max_age` or `max_size`.
    pub trimmed_files: u64,
    /// Windows that could not be written (full disk, …): they are in the outbox only.
    pub write_errors: u64,
}

/// A `health` report as stored before the history member (read only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthF2 {
    pub ts: u64,
    pub uptime_s: f64,
    pub clock_plausible: bool,
    pub devices: Vec<DeviceHealth>,
    pub buses: Vec<BusHealth>,
    pub outbox: OutboxHealth,
    pub mqtt: MqttHealth,
    pub disk_free_bytes: Option<u64>,
    pub bytes_written: Option<u64>,
}

impl From<HealthF2> for Health {
    fn from(old: HealthF2) -> Self {
        Health {
            ts: old.ts,
            uptime_s: old.uptime_s,
            clock_plausible: old.clock_plausible,
            devices: old.devices,
            buses: old.buses,
            outbox: old.outbox,
            mqtt: old.mqtt,
            disk_free_bytes: old.disk_free_bytes,
            bytes_written: old.bytes_written,
            history: None,
            mqtt_auth_refused: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    Unknown,
    Online,
    Offline,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "unknown",
            DeviceState::Online => "online",
            DeviceState::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceHealth {
    pub name: String,
    pub state: DeviceState,
    pub polls: u64,
    pub good_polls: u64,
    pub overruns: u64,
    pub errors: ErrorCounts,
    /// `None` before the first poll.
    pub latency: Option<Latency>,
}

/// Point errors by word (`exception` counts every code and protocol refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub timeout: u64,
    pub exception: u64,
    pub decode: u64,
    pub disconnected: u64,
}

/// Poll latency in milliseconds (three decimals).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub last_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusHealth {
    pub name: String,
    pub load_estimated: f64,
    pub busy_share: f64,
    pub late_replies: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OutboxHealth {
    pub depth: u64,
    pub bytes: u64,
    /// `None` when the outbox is empty.
    pub oldest_age_s: Option<f64>,
    pub backlog: u64,
    pub dropped_outbox_full: u64,
    pub dropped_max_age: u64,
    pub dropped_store_damaged: u64,
    pub gaps: u64,
    pub store_errors: u64,
    pub refused_too_large: u64,
    pub flushes: u64,
    pub slow_flushes: u64,
    pub flush_waits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MqttHealth {
    pub connects: u64,
    pub disconnects: u64,
    pub published: u64,
    pub acked: u64,
}
