//! The configuration file as written: a serde mirror of SPEC §3.
//!
//! Owns the first stage of reading a file. Every table denies unknown keys;
//! every value keeps its byte span ([`Spanned`]) so that [`crate::validate`]
//! can point at it. Nothing is checked here beyond TOML syntax and types:
//! keywords (`parity`, `area`, …), durations and sizes stay strings, integers
//! stay `i64`, and required keys are `Option` so that a missing one is
//! reported beside every other mistake rather than alone. Before serde
//! runs, [`crate::nesting`] refuses key paths deeper than any spindle key.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::nesting::{KeyTooDeep, find_key_too_deep};

/// A value with its position in the file.
pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) agent: Option<S<RawAgent>>,
    pub(crate) mqtt: Option<S<RawMqtt>>,
    pub(crate) buffer: Option<S<RawBuffer>>,
    #[serde(default)]
    pub(crate) serial: Vec<S<RawSerial>>,
    #[serde(default)]
    pub(crate) device: Vec<S<RawDevice>>,
    #[serde(default)]
    pub(crate) equipment: Vec<S<RawEquipment>>,
    pub(crate) kpi: Option<S<RawKpis>>,
    #[serde(default)]
    pub(crate) carriers: BTreeMap<S<String>, S<RawCarrier>>,
    pub(crate) history: Option<S<RawHistory>>,
    pub(crate) http: Option<S<RawHttp>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) enabled: Option<S<bool>>,
    pub(crate) listen: Option<S<String>>,
    pub(crate) token_file: Option<S<String>>,
    pub(crate) cert_file: Option<S<String>>,
    pub(crate) key_file: Option<S<String>>,
    pub(crate) language: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHistory {
    pub(crate) max_age: Option<S<String>>,
    pub(crate) max_size: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub(crate) id: Option<S<String>>,
    pub(crate) site: Option<S<String>>,
    pub(crate) data_dir: Option<S<String>>,
    pub(crate) timezone: Option<S<String>>,
    pub(crate) day_start: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMqtt {
    pub(crate) url: Option<S<String>>,
    pub(crate) client_id: Option<S<String>>,
    pub(crate) username: Option<S<String>>,
    pub(crate) password_file: Option<S<String>>,
    pub(crate) password_env: Option<S<String>>,
    pub(crate) ca_file: Option<S<String>>,
    pub(crate) cert_file: Option<S<String>>,
    pub(crate) key_file: Option<S<String>>,
    pub(crate) topic_prefix: Option<S<String>>,
    pub(crate) reconnect_max: Option<S<String>>,
    pub(crate) keep_alive: Option<S<String>>,
    pub(crate) dialect: Option<S<String>>,
    pub(crate) token_file: Option<S<String>>,
    pub(crate) token_env: Option<S<String>>,
    pub(crate) device_name: Option<S<String>>,
    /// Bytes, as an integer or a size (`"64KiB"`).
    pub(crate) max_packet: Option<S<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuffer {
    pub(crate) max_size: Option<S<String>>,
    pub(crate) max_age: Option<S<String>>,
    pub(crate) flush_interval: Option<S<String>>,
    pub(crate) replay: Option<S<String>>,
    pub(crate) replay_rate: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSerial {
    pub(crate) name: Option<S<String>>,
    pub(crate) port: Option<S<String>>,
    pub(crate) baud: Option<S<i64>>,
    pub(crate) parity: Option<S<String>>,
    pub(crate) data_bits: Option<S<i64>>,
    pub(crate) stop_bits: Option<S<i64>>,
    pub(crate) turnaround: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub(crate) name: Option<S<String>>,
    pub(crate) serial: Option<S<String>>,
    pub(crate) tcp: Option<S<String>>,
    /// `"modbus"` (the default) or `"dlt645"`.
    pub(crate) protocol: Option<S<String>>,
    pub(crate) unit: Option<S<i64>>,
    /// DL/T 645: the 12 digits printed on the meter.
    pub(crate) meter: Option<S<String>>,
    pub(crate) profile: Option<S<String>>,
    #[serde(default)]
    pub(crate) profile_options: BTreeMap<S<String>, S<toml::Value>>,
    pub(crate) poll: Option<S<String>>,
    pub(crate) timeout: Option<S<String>>,
    pub(crate) retries: Option<S<i64>>,
    pub(crate) max_registers: Option<S<i64>>,
    pub(crate) max_gap: Option<S<i64>>,
    pub(crate) report: Option<S<String>>,
    pub(crate) heartbeat: Option<S<String>>,
    pub(crate) offline_probe_max: Option<S<String>>,
    #[serde(default)]
    pub(crate) point: Vec<S<RawPoint>>,
    /// `[device.sim]`: the simulator's table, kept whole for `spindle simulate`.
    pub(crate) sim: Option<S<toml::Table>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoint {
    pub(crate) name: Option<S<String>>,
    /// DL/T 645: the data identifier, 8 hex digits.
    pub(crate) di: Option<S<String>>,
    pub(crate) area: Option<S<String>>,
    pub(crate) address: Option<S<i64>>,
    #[serde(rename = "type")]
    pub(crate) value_type: Option<S<String>>,
    pub(crate) order: Option<S<String>>,
    pub(crate) bit: Option<S<i64>>,
    pub(crate) length: Option<S<i64>>,
    pub(crate) scale: Option<S<f64>>,
    pub(crate) offset: Option<S<f64>>,
    pub(crate) unit: Option<S<String>>,
    pub(crate) counter: Option<S<bool>>,
    pub(crate) deadband: Option<S<f64>>,
    pub(crate) rollover: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEquipment {
    pub(crate) name: Option<S<String>>,
    pub(crate) device: Option<S<String>>,
    pub(crate) process: Option<S<String>>,
    pub(crate) key_process: Option<S<bool>>,
    pub(crate) numerically_controlled: Option<S<bool>>,
    pub(crate) running: Option<S<RawSignal>>,
    pub(crate) cnc_mode: Option<S<RawSignal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignal {
    pub(crate) point: Option<S<String>>,
    pub(crate) values: Option<S<Vec<S<f64>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKpis {
    #[serde(default)]
    pub(crate) cnc_coverage: Vec<S<RawCncCoverage>>,
    #[serde(default)]
    pub(crate) energy_per_output: Vec<S<RawEnergyPerOutput>>,
    #[serde(default)]
    pub(crate) energy_consumption: Vec<S<RawEnergyConsumption>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCncCoverage {
    pub(crate) name: Option<S<String>>,
    pub(crate) window: Option<S<String>>,
    #[serde(default)]
    pub(crate) processes: Vec<S<String>>,
    pub(crate) day_start: Option<S<String>>,
    pub(crate) min_completeness: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnergyPerOutput {
    pub(crate) name: Option<S<String>>,
    pub(crate) window: Option<S<String>>,
    pub(crate) energy: Option<S<Vec<S<RawEnergyInput>>>>,
    pub(crate) output: Option<S<Vec<S<RawOutput>>>>,
    pub(crate) output_unit: Option<S<String>>,
    pub(crate) day_start: Option<S<String>>,
    pub(crate) min_completeness: Option<S<f64>>,
    pub(crate) limit: Option<S<RawLimit>>,
    pub(crate) baseline: Option<S<RawBaseline>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub(crate) value: Option<S<f64>>,
    pub(crate) period: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBaseline {
    pub(crate) value: Option<S<f64>>,
    pub(crate) year: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnergyConsumption {
    pub(crate) name: Option<S<String>>,
    pub(crate) window: Option<S<String>>,
    pub(crate) energy: Option<S<Vec<S<RawEnergyInput>>>>,
    pub(crate) scope: Option<S<String>>,
    pub(crate) day_start: Option<S<String>>,
    pub(crate) min_completeness: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEnergyInput {
    pub(crate) point: Option<S<String>>,
    pub(crate) carrier: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutput {
    pub(crate) point: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCarrier {
    pub(crate) unit: Option<S<String>>,
    pub(crate) kgce_per_unit: Option<S<f64>>,
    pub(crate) kgco2_per_unit: Option<S<f64>>,
    pub(crate) basis: Option<S<String>>,
    pub(crate) basis_year: Option<S<i64>>,
    pub(crate) co2_factor_id: Option<S<String>>,
    pub(crate) co2_factor_year: Option<S<i64>>,
}

/// Why a file's text did not make a [`RawConfig`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    /// A key path deeper than any spindle key, found before toml runs.
    #[error(transparent)]
    KeyTooDeep(#[from] KeyTooDeep),
    /// TOML syntax, a type or an unknown key: toml's first error.
    #[error("{}", toml_message(.0))]
    Toml(#[from] toml::de::Error),
}

impl RawError {
    /// Byte offset of the mistake, when known.
    pub(crate) fn offset(&self) -> Option<usize> {
        match self {
            RawError::KeyTooDeep(error) => Some(error.offset),
            RawError::Toml(error) => error.span().map(|span| span.start),
        }
    }
}

/// toml's message on one line (it may spread it over several).
fn toml_message(error: &toml::de::Error) -> String {
    error
        .message()
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parse the file's text into the raw mirror. A key nested too deep, or a
/// syntax, type or unknown-key error stops here: the first one is reported,
/// with its byte offset.
pub(crate) fn parse(text: &str) -> Result<RawConfig, RawError> {
    if let Some(too_deep) = find_key_too_deep(text) {
        return Err(too_deep.into());
    }
    Ok(toml::from_str(text)?)
}
