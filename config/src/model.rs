//! The validated configuration model.
//!
//! Owns the types the rest of spindle works with once a configuration file has
//! passed [`crate::validate`]. Every value here has been checked: names follow
//! their charset, references resolve, durations that must not be zero are not,
//! point layouts fit in the 16-bit address space, and the energy carriers of
//! every KPI are known. Code that receives a [`Config`] does not re-check.

use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the file it was read from (for messages).
    pub source: PathBuf,
    /// SHA-256 of the file's bytes, hex (published on `status`).
    pub sha256: String,
    pub agent: Agent,
    pub mqtt: Mqtt,
    pub buffer: Buffer,
    pub serial: Vec<SerialBus>,
    pub devices: Vec<Device>,
    /// The devices with `protocol = "dlt645"`, by device name; every other
    /// device speaks Modbus.
    pub dlt645: BTreeMap<String, Dlt645Device>,
    pub equipment: Vec<Equipment>,
    pub kpis: Kpis,
    /// Every carrier known to this configuration: the built-in table with the
    /// file's `[carriers.*]` overrides and additions applied.
    pub carriers: BTreeMap<String, Carrier>,
    pub history: History,
    /// `[http]`: the status page, JSON API and metrics.
    pub http: Http,
}

/// `[http]`: the embedded HTTP server (status page, JSON API, `/metrics`).
#[derive(Debug, Clone)]
pub struct Http {
    pub enabled: bool,
    /// An IP address and port (no host name: what is bound must be known
    /// to be loopback or not).
    pub listen: std::net::SocketAddr,
    /// The access token's file (read at start; required off loopback).
    pub token_file: Option<PathBuf>,
    /// TLS: both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub language: Language,
}

/// The status page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Zh,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
        }
    }
}

/// The default listen address: loopback, port 9180.
pub const DEFAULT_HTTP_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9180),
);

impl Default for Http {
    fn default() -> Self {
        Http {
            enabled: true,
            listen: DEFAULT_HTTP_LISTEN,
            token_file: None,
            cert_file: None,
            key_file: None,
            language: Language::En,
        }
    }
}

/// `[history]`: the local KPI history under `data_dir/history/`.
#[derive(Debug, Clone)]
pub struct History {
    /// A month's file is deleted once the month ended longer ago than this.
    pub max_age: Duration,
    /// Oldest files are deleted while the files hold more bytes than this.
    pub max_size: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            max_age: Duration::from_secs(190 * 86_400),
            max_size: 256 << 20,
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub site: String,
    pub data_dir: PathBuf,
    /// IANA name as written (e.g. `Asia/Shanghai`).
    pub timezone_name: String,
    /// The zone, from the database bundled in the binary.
    pub timezone: jiff::tz::TimeZone,
    /// Local time a production day starts.
    pub day_start: DayStart,
}

/// Local time of day a production day (and so every KPI window grid) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayStart {
    pub hour: u8,
    pub minute: u8,
}

/// `[mqtt]`.
#[derive(Debug, Clone)]
pub struct Mqtt {
    pub url: MqttUrl,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<PasswordSource>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub topic_prefix: String,
    /// Longest wait between connection attempts (full jitter: each wait is
    /// drawn uniformly from zero to the doubling delay, capped by this).
    pub reconnect_max: Duration,
    pub keep_alive: Duration,
    /// `dialect`: which MQTT API the payloads follow.
    pub dialect: Dialect,
    /// `token_file` / `token_env`: the ThingsBoard access token, sent as the
    /// MQTT username (read at run time, never stored here, never logged).
    pub token: Option<PasswordSource>,
    /// `device_name`: how a device is named on the platform (ThingsBoard).
    pub device_name: DeviceNameTemplate,
    /// `max_packet`: the broker's packet limit in bytes (topic and payload
    /// of one publish); a message whose rendering exceeds it is refused.
    pub max_packet: usize,
}

/// The MQTT API the agent's payloads follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SPEC §5: `{prefix}/{site}/{agent}/...`.
    Spindle,
    /// The ThingsBoard gateway MQTT API (`v1/gateway/...`), `docs/THINGSBOARD.md`.
    ThingsBoard,
}

impl Dialect {
    /// The default `max_packet` of the dialect: ThingsBoard's
    /// `NETTY_MAX_PAYLOAD_SIZE` default, else MQTT's own limit.
    pub fn default_max_packet(self) -> usize {
        match self {
            Dialect::Spindle => 268_435_455,
            Dialect::ThingsBoard => 65_536,
        }
    }
}

/// A device-name template: text with `{site}`, `{agent}` and `{device}`
/// (KPI devices fill `{device}` with `kpi.{kind}.{name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNameTemplate {
    parts: Vec<NamePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePart {
    Text(String),
    Site,
    Agent,
    Device,
}

impl Default for DeviceNameTemplate {
    /// `{site}.{agent}.{device}`.
    fn default() -> Self {
        DeviceNameTemplate {
            parts: vec![
                NamePart::Site,
                NamePart::Text(".".to_owned()),
                NamePart::Agent,
                NamePart::Text(".".to_owned()),
                NamePart::Device,
            ],
        }
    }
}

impl DeviceNameTemplate {
    /// Reads a template; `Err` names the first unknown or unclosed
    /// placeholder, or says that `{device}` is missing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut has_device = false;
        while let Some(open) = rest.find('{') {
            let (before, after) = rest.split_at(open);
            if before.contains('}') {
                return Err(format!("a `}}` without its `{{` in \"{text}\""));
            }
            if !before.is_empty() {
                parts.push(NamePart::Text(before.to_owned()));
            }
            let Some(close) = after.find('}') else {
                return Err(format!("unclosed placeholder in \"{text}\""));
            };
            let name = after.get(1..close).unwrap_or_default();
            parts.push(match name {
                "site" => NamePart::Site,
                "agent" => NamePart::Agent,
                "device" => {
                    has_device = true;
                    NamePart::Device
                }
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}; the placeholders are {{site}}, {{agent}} and {{device}}"
                    ));
                }
            });
            rest = after.get(close + 1..).unwrap_or_default();
        }
        if rest.contains('}') {
            return Err(format!("a `}}` without its `{{` in \"{text}\""));
        }
        if !rest.is_empty() {
            parts.push(NamePart::Text(rest.to_owned()));
        }
        if !has_device {
            return Err(
                "the template must contain {device} (else every device gets one name)".to_owned(),
            );
        }
        Ok(DeviceNameTemplate { parts })
    }

    /// The name of `device` of agent `agent` at `site`.
    pub fn render(&self, site: &str, agent: &str, device: &str) -> String {
        let mut out = String::with_capacity(site.len() + agent.len() + device.len() + 8);
        for part in &self.parts {
            out.push_str(match part {
                NamePart::Text(text) => text,
                NamePart::Site => site,
                NamePart::Agent => agent,
                NamePart::Device => device,
            });
        }
        out
    }
}

/// A parsed `mqtt://` or `mqtts://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Where the MQTT password comes from; the password itself is read at run time
/// and never stored in the model (so it cannot end up in a `Debug` print).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// `[buffer]`.
#[derive(Debug, Clone)]
pub struct Buffer {
    /// Cap on the bytes of records held in the outbox.
    pub max_size: u64,
    pub max_age: Duration,
    /// Longest a record waits for the group commit; zero = flush before every publish.
    pub flush_interval: Duration,
    pub replay: Replay,
    /// Most backlog messages published per second after a (re)connect;
    /// `None` = unlimited. Live messages are never held back by it.
    pub replay_rate: Option<NonZeroU32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    LiveFirst,
    OldestFirst,
}

/// `[[serial]]`: one RS-485 line.
#[derive(Debug, Clone)]
pub struct SerialBus {
    pub name: String,
    pub port: String,
    pub baud: NonZeroU32,
    pub parity: Parity,
    /// 5 to 8.
    pub data_bits: u8,
    /// 1 or 2.
    pub stop_bits: u8,
    pub turnaround: Duration,
}

impl SerialBus {
    /// Bits on the wire per character: start + data + parity + stop.
    pub fn bits_per_char(&self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }

    /// On-wire time of one character.
    pub fn char_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.bits_per_char()) / f64::from(self.baud.get()))
    }

    /// The Modbus RTU silent interval between frames: 3.5 character times, or a
    /// fixed 1.75 ms above 19200 baud (Modbus over Serial Line v1.02, §2.5.1.1).
    pub fn silent_interval(&self) -> Duration {
        if self.baud.get() > 19_200 {
            Duration::from_micros(1750)
        } else {
            self.char_time().mul_f64(3.5)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// `[[device]]`, with its profile's points merged in.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub link: DeviceLink,
    /// Modbus unit id (1–247 on a serial bus; 0–255 over TCP).
    pub unit: u8,
    pub profile: Option<String>,
    pub profile_options: BTreeMap<String, ProfileOption>,
    pub poll: Duration,
    pub timeout: Duration,
    pub retries: u32,
    /// Registers per request (bits for coil/discrete are capped at 2000 separately).
    pub max_registers: NonZeroU16,
    pub max_gap: u16,
    pub report: Report,
    pub heartbeat: Duration,
    /// Longest wait between probes while the device is offline (never
    /// shorter than the poll interval).
    pub offline_probe_max: Duration,
    /// Profile points (replaced where the file names the same point) then the
    /// file's own points, in that order; names unique.
    pub points: Vec<Point>,
}

/// What a `protocol = "dlt645"` device adds to its [`Device`]: the meter's
/// address and each point's data identifier. Such a device is on a serial
/// bus; its [`Point`]s are `f64` values (the standard's scaling, then the
/// point's `scale` and `offset`), and their Modbus fields (`area`,
/// `address`, `order`, …) and the device's `unit`, `max_registers` and
/// `max_gap` are placeholders nobody reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dlt645Device {
    /// The 12 decimal digits printed on the meter, highest first.
    pub meter: String,
    /// Data identifier (`DI3 DI2 DI1 DI0` as a number) by point name; one per
    /// point of the device.
    pub di: BTreeMap<String, u32>,
    /// The register range of each counter point whose register wraps: the
    /// energy identifiers (DI3 = 00, DL/T 645-2007 Table A.1) hold
    /// `XXXXXX.XX` kWh, so after 999999.99 they start again at 0.
    pub wraps: BTreeMap<String, RegisterWrap>,
}

/// A decimal counter register's range: it reads 0 to `steps − 1` steps of
/// 10^−`decimals` units, then starts again at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterWrap {
    pub steps: u64,
    pub decimals: u8,
}

impl RegisterWrap {
    /// DL/T 645-2007 energy, `XXXXXX.XX`: 100 000 000 steps of 0.01 kWh.
    pub const DLT645_ENERGY: RegisterWrap = RegisterWrap {
        steps: 100_000_000,
        decimals: 2,
    };
}

impl Config {
    /// The DL/T 645 side of device `name`, when it speaks DL/T 645.
    pub fn dlt645_device(&self, name: &str) -> Option<&Dlt645Device> {
        self.dlt645.get(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceLink {
    /// The `name` of a [`SerialBus`].
    Serial(String),
    /// `HOST:PORT` as written.
    Tcp(String),
}

/// A value from `profile_options`.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileOption {
    Integer(i64),
    Float(f64),
    String(String),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Always,
    OnChange,
}

/// One named, typed, scaled value read from a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub area: Area,
    /// 0-based protocol address.
    pub address: u16,
    pub value_type: ValueType,
    pub order: WordOrder,
    /// A bool taken from one bit (0–15) of a 16-bit register.
    pub bit: Option<u8>,
    /// Registers, for strings.
    pub length: Option<NonZeroU16>,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub counter: bool,
    pub deadband: Option<f64>,
    /// Raw value after which a counter wraps; `None` = the type's maximum.
    pub rollover: Option<u64>,
}

impl Point {
    /// Registers (or bits, for coil/discrete) this point occupies.
    pub fn width(&self) -> u16 {
        match self.area {
            Area::Coil | Area::Discrete => 1,
            Area::Holding | Area::Input => match self.value_type {
                ValueType::Bool | ValueType::U16 | ValueType::I16 => 1,
                ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
                ValueType::U64 | ValueType::I64 | ValueType::F64 => 4,
                ValueType::String => self.length.map_or(1, NonZeroU16::get),
            },
        }
    }

    /// Last address this point occupies.
    pub fn last_address(&self) -> u16 {
        self.address.saturating_add(self.width().saturating_sub(1))
    }
}

/// A Modbus data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// Function code 3.
    Holding,
    /// Function code 4.
    Input,
    /// Function code 1.
    Coil,
    /// Function code 2.
    Discrete,
}

impl Area {
    pub fn is_bit(self) -> bool {
        matches!(self, Area::Coil | Area::Discrete)
    }

    /// Most registers (or bits) one read request may ask for (Modbus application protocol v1.1b3).
    pub fn protocol_max(self) -> u16 {
        if self.is_bit() { 2000 } else { 125 }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Holding => "holding",
            Area::Input => "input",
            Area::Coil => "coil",
            Area::Discrete => "discrete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

impl ValueType {
    pub fn is_numeric(self) -> bool {
        !matches!(self, ValueType::Bool | ValueType::String)
    }

    /// Largest raw value, for integer types (the default counter rollover).
    pub fn raw_max(self) -> Option<u64> {
        match self {
            ValueType::U16 => Some(u64::from(u16::MAX)),
            ValueType::I16 => Some(i16::MAX.unsigned_abs().into()),
            ValueType::U32 => Some(u64::from(u32::MAX)),
            ValueType::I32 => Some(i32::MAX.unsigned_abs().into()),
            ValueType::U64 => Some(u64::MAX),
            ValueType::I64 => Some(i64::MAX.unsigned_abs()),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F32 => "f32",
            ValueType::F64 => "f64",
            ValueType::String => "string",
        }
    }
}

/// Order of bytes within a multi-register value. Letters name the bytes of the
/// big-endian value, most significant first, as they appear on the wire;
/// for 64-bit values the pattern extends to the four registers
/// (`CDAB` swaps the registers of each 32-bit half *and* the halves, i.e. the
/// register order is fully reversed, the usual "little-endian word order").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// Big-endian bytes, big-endian registers.
    #[default]
    Abcd,
    /// Big-endian bytes, little-endian registers.
    Cdab,
    /// Little-endian bytes (swapped in each register), big-endian registers.
    Badc,
    /// Little-endian bytes, little-endian registers.
    Dcba,
}

impl WordOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }
}

/// `[[equipment]]`: a machine whose CNC coverage counts.
#[derive(Debug, Clone)]
pub struct Equipment {
    pub name: String,
    pub device: Option<String>,
    pub process: String,
    pub key_process: bool,
    pub numerically_controlled: bool,
    pub running: Option<Signal>,
    pub cnc_mode: Option<Signal>,
}

/// A state signal: a point of the equipment's device, active while it has one
/// of `values` (or, with no values, while a bool point is true).
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub point: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Kpis {
    pub cnc_coverage: Vec<CncCoverageKpi>,
    pub energy_per_output: Vec<EnergyPerOutputKpi>,
    pub energy_consumption: Vec<EnergyConsumptionKpi>,
}

/// A KPI's window length: a fixed length that divides a day, or a calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowLength {
    /// Whole seconds dividing a day (`"15m"`, `"1h"`, `"1d"`).
    Fixed(Duration),
    /// `"1mo"`: from the first day of a local month at the KPI's day start
    /// to the first day of the next.
    Month,
}

impl WindowLength {
    /// The nominal length: the fixed length, 31 days for a month (the longest one).
    pub fn nominal(self) -> Duration {
        match self {
            WindowLength::Fixed(d) => d,
            WindowLength::Month => Duration::from_secs(31 * 86_400),
        }
    }
}

/// Default `min_completeness` of `[[kpi.energy_consumption]]`.
pub const DEFAULT_MIN_COMPLETENESS: f64 = 0.9;

#[derive(Debug, Clone)]
pub struct CncCoverageKpi {
    pub name: String,
    pub window: WindowLength,
    /// Empty = every key process.
    pub processes: Vec<String>,
    /// The KPI's `day_start`, else `agent.day_start`.
    pub day_start: DayStart,
    /// A window whose sample completeness is below this is `partial`; `None`: no threshold.
    pub min_completeness: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct EnergyPerOutputKpi {
    pub name: String,
    pub window: WindowLength,
    pub energy: Vec<EnergyInput>,
    pub output: Vec<PointRef>,
    pub output_unit: String,
    /// The KPI's `day_start`, else `agent.day_start`.
    pub day_start: DayStart,
    /// A window whose sample completeness is below this is `partial`; `None`: no threshold.
    pub min_completeness: Option<f64>,
    /// A quota (单位产品能耗限额) in kgce per output unit.
    pub limit: Option<QuotaLimit>,
    /// The figure of a reference year, for `vs_baseline`.
    pub baseline: Option<Baseline>,
}

/// `limit = { value, period }` of an energy-per-output KPI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaLimit {
    /// kgce per output unit; > 0.
    pub value: f64,
    /// The windows it is evaluated on: a day or longer.
    pub period: WindowLength,
}

/// `baseline = { value, year }` of an energy-per-output KPI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// kgce per output unit; > 0.
    pub value: f64,
    pub year: Option<u16>,
}

/// `[[kpi.energy_consumption]]`: per-carrier consumption, kgce and CO2.
#[derive(Debug, Clone)]
pub struct EnergyConsumptionKpi {
    pub name: String,
    pub window: WindowLength,
    pub energy: Vec<EnergyInput>,
    /// A label such as a workshop, published as it is.
    pub scope: Option<String>,
    /// The KPI's `day_start`, else `agent.day_start`.
    pub day_start: DayStart,
    /// In `0..=1`; default [`DEFAULT_MIN_COMPLETENESS`].
    pub min_completeness: f64,
}

#[derive(Debug, Clone)]
pub struct EnergyInput {
    pub point: PointRef,
    pub carrier: String,
    /// Multiply the point's value by this to get the carrier's unit (e.g. 0.001 for Wh → kWh).
    pub to_carrier_unit: f64,
}

/// A point written `device.point`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRef {
    pub device: String,
    pub point: String,
}

/// An energy carrier with its coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct Carrier {
    pub unit: String,
    pub kgce_per_unit: f64,
    pub kgco2_per_unit: f64,
    /// Which standard-coal basis `kgce_per_unit` is on.
    pub basis: Basis,
    /// Names the CO2 factor's series (e.g. "MEE/NBS national grid 2023").
    pub co2_factor_id: Option<String>,
    /// The data year of the CO2 factor.
    pub co2_factor_year: Option<u16>,
}

/// The standard-coal basis of a carrier's coefficient (GB/T 2589-2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Basis {
    /// 当量值: the carrier's own heating value (the default).
    #[default]
    Calorific,
    /// 等价值: the primary energy used to make it (electricity: the
    /// generation coal rate of `year`).
    Equivalent { year: Option<u16> },
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Calorific => "calorific",
            Basis::Equivalent { .. } => "equivalent",
        }
    }
}
