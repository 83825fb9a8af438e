//! The second stage of reading a configuration: [`crate::raw`] → [`crate::model`].
//!
//! Owns every semantic rule of SPEC §3: charsets, ranges, defaults, the
//! merging of profile points, resource conflicts (two buses on one port, two
//! devices at one address), references (buses, devices, points, carriers,
//! processes) and energy-unit conversion. It never stops at the first
//! mistake: each check records a [`ConfigError`] with the position of the
//! offending value (or of its table when a key is missing) and goes on, using a
//! placeholder for the broken value, so one run reports everything. Values
//! that failed are remembered so that references to them are not reported
//! a second time. A value outside a known set (a keyword, timezone, bus,
//! device, point, profile or carrier) names the one it was probably meant
//! to be when [`crate::near_miss`] finds one. The model is returned only
//! when no error was found.

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU16, NonZeroU32};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;
use sha2::{Digest, Sha256};

use crate::model::{
    Agent, Area, Baseline, Basis, Buffer, Carrier, CncCoverageKpi, Config,
    DEFAULT_MIN_COMPLETENESS, DayStart, Device, DeviceLink, DeviceNameTemplate, Dialect,
    Dlt645Device, EnergyConsumptionKpi, EnergyInput, EnergyPerOutputKpi, Equipment, History, Http,
    Kpis, Language, Mqtt, MqttUrl, Parity, PasswordSource, Point, PointRef, ProfileOption,
    QuotaLimit, RegisterWrap, Replay, Report, SerialBus, Signal, ValueType, WindowLength,
    WordOrder,
};
use crate::near_miss::{closest_name, closest_word};
use crate::raw::{
    RawAgent, RawBaseline, RawBuffer, RawCarrier, RawConfig, RawDevice, RawEnergyConsumption,
    RawEnergyInput, RawEnergyPerOutput, RawEquipment, RawHistory, RawHttp, RawKpis, RawLimit,
    RawMqtt, RawOutput, RawPoint, RawSerial, RawSignal, S,
};
use crate::{ConfigError, ParseOptions, Parsed, carriers, profiles, units};

type Span = Range<usize>;

const AREAS: [(&str, Area); 4] = [
    ("holding", Area::Holding),
    ("input", Area::Input),
    ("coil", Area::Coil),
    ("discrete", Area::Discrete),
];

const TYPES: [(&str, ValueType); 10] = [
    ("bool", ValueType::Bool),
    ("u16", ValueType::U16),
    ("i16", ValueType::I16),
    ("u32", ValueType::U32),
    ("i32", ValueType::I32),
    ("u64", ValueType::U64),
    ("i64", ValueType::I64),
    ("f32", ValueType::F32),
    ("f64", ValueType::F64),
    ("string", ValueType::String),
];

const ORDERS: [(&str, WordOrder); 4] = [
    ("ABCD", WordOrder::Abcd),
    ("CDAB", WordOrder::Cdab),
    ("BADC", WordOrder::Badc),
    ("DCBA", WordOrder::Dcba),
];

/// The protocol a device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Modbus,
    Dlt645,
}

const PROTOCOLS: [(&str, Protocol); 2] =
    [("modbus", Protocol::Modbus), ("dlt645", Protocol::Dlt645)];

const DAY: Duration = Duration::from_secs(86_400);

/// Validate a parsed file. `text` is the whole file (for positions and the hash).
pub(crate) fn validate(
    file: &str,
    text: &str,
    raw: &RawConfig,
    options: ParseOptions,
) -> Result<Parsed, Vec<ConfigError>> {
    let mut v = Validator::new(file, text, options);
    let parsed = v.config(raw);
    if v.errors.is_empty() {
        Ok(parsed)
    } else {
        let mut errors = v.errors;
        errors.sort_by_key(|error| (error.line, error.column));
        Err(errors)
    }
}

/// 1-based line and column (in characters) of a byte offset of `text`.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before
        .get(line_start..)
        .map_or(0, |line| line.chars().count())
        + 1;
    (line, column)
}

/// What a name may be made of.
#[derive(Debug, Clone, Copy)]
enum Charset {
    /// `[A-Za-z0-9_-]{1,64}`: agent id and site.
    Id,
    /// `[a-z0-9_-]{1,64}`: buses, devices, equipment, KPIs.
    Lower,
    /// `[a-z0-9_]{1,64}`: points and carriers.
    Identifier,
}

impl Charset {
    fn accepts(self, name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name.chars().all(|c| match self {
                Charset::Id => c.is_ascii_alphanumeric() || c == '_' || c == '-',
                Charset::Lower => {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                }
                Charset::Identifier => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
            })
    }

    fn describe(self) -> &'static str {
        match self {
            Charset::Id => "1 to 64 characters from A-Z a-z 0-9 _ -",
            Charset::Lower => "1 to 64 characters from a-z 0-9 _ -",
            Charset::Identifier => "1 to 64 characters from a-z 0-9 _",
        }
    }
}

/// A validated device's points as other sections see them.
#[derive(Debug, Default)]
struct DeviceSymbols {
    /// Every point name, with the point when it validated.
    points: BTreeMap<String, Option<Point>>,
}

struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    options: ParseOptions,
    errors: Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    fn new(file: &'a str, text: &'a str, options: ParseOptions) -> Self {
        Self {
            file,
            text,
            options,
            errors: Vec::new(),
        }
    }

    // ----- reporting helpers -------------------------------------------------

    fn error(&mut self, span: &Span, message: impl Into<String>) {
        let (line, column) = position(self.text, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    fn line_of(&self, span: &Span) -> usize {
        position(self.text, span.start).0
    }

    /// The value of a required key, or an error at its table.
    fn require<'r, T>(
        &mut self,
        value: Option<&'r S<T>>,
        table: &Span,
        key: &str,
        table_name: &str,
    ) -> Option<&'r S<T>> {
        if value.is_none() {
            self.error(table, format!("missing key `{key}` in {table_name}"));
        }
        value
    }

    fn name(&mut self, value: &S<String>, what: &str, charset: Charset) -> bool {
        let ok = charset.accepts(value.get_ref());
        if !ok {
            self.error(
                &value.span(),
                format!(
                    "{what} must be {}, got \"{}\"",
                    charset.describe(),
                    value.get_ref()
                ),
            );
        }
        ok
    }

    /// Record `name` in `seen`, reporting a duplicate.
    fn unique(
        &mut self,
        seen: &mut BTreeMap<String, Span>,
        name: &S<String>,
        what: &str,
        context: &str,
    ) -> bool {
        if let Some(first) = seen.get(name.get_ref()) {
            let line = self.line_of(first);
            self.error(
                &name.span(),
                format!(
                    "duplicate {what} \"{}\"{context}, first defined at line {line}",
                    name.get_ref()
                ),
            );
            false
        } else {
            seen.insert(name.get_ref().clone(), name.span());
            true
        }
    }

    fn non_empty(&mut self, value: &S<String>, key: &str) -> bool {
        let ok = !value.get_ref().trim().is_empty();
        if !ok {
            self.error(&value.span(), format!("{key} must not be empty"));
        }
        ok
    }

    /// A duration, `default` when absent; zero is an error unless `zero_ok`.
    fn duration(
        &mut self,
        value: Option<&S<String>>,
        key: &str,
        default: Duration,
        zero_ok: bool,
    ) -> Duration {
        let Some(value) = value else { return default };
        match units::parse_duration(value.get_ref()) {
            Ok(duration) if duration.is_zero() && !zero_ok => {
                self.error(&value.span(), format!("{key} must not be zero"));
                default
            }
            Ok(duration) => duration,
            Err(message) => {
                self.error(&value.span(), format!("{key}: {message}"));
                default
            }
        }
    }

    /// An integer in `min..=max`, converted.
    fn integer<T: TryFrom<i64>>(
        &mut self,
        value: &S<i64>,
        key: &str,
        min: i64,
        max: i64,
        context: &str,
    ) -> Option<T> {
        let number = *value.get_ref();
        if (min..=max).contains(&number)
            && let Ok(converted) = T::try_from(number)
        {
            return Some(converted);
        }
        self.error(
            &value.span(),
            format!("{key} must be {min} to {max}{context}, got {number}"),
        );
        None
    }

    fn finite(&mut self, value: &S<f64>, key: &str) -> Option<f64> {
        let number = *value.get_ref();
        if number.is_finite() {
            Some(number)
        } else {
            self.error(
                &value.span(),
                format!("{key} must be a finite number, got {number}"),
            );
            None
        }
    }

    /// One of a fixed set of words.
    fn keyword<T: Copy>(
        &mut self,
        value: &S<String>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, chosen)) = choices.iter().find(|(word, _)| *word == value.get_ref()) {
            return Some(*chosen);
        }
        let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
        let message = match closest_word(value.get_ref(), words.iter().copied()) {
            Some(meant) => format!(
                "unknown {key} \"{}\"; did you mean \"{meant}\"?",
                value.get_ref()
            ),
            None => format!(
                "{key} must be one of {}, got \"{}\"",
                words.join(", "),
                value.get_ref()
            ),
        };
        self.error(&value.span(), message);
        None
    }

    // ----- sections ----------------------------------------------------------

    fn config(&mut self, raw: &RawConfig) -> Parsed {
        let whole = 0..0;
        let agent = if let Some(agent) = &raw.agent {
            self.agent(agent)
        } else {
            self.error(&whole, "missing table [agent]");
            placeholder_agent()
        };
        let mqtt = if let Some(mqtt) = &raw.mqtt {
            self.mqtt(mqtt, &agent.id)
        } else {
            self.error(&whole, "missing table [mqtt]");
            placeholder_mqtt()
        };
        let buffer = self.buffer(raw.buffer.as_ref());
        let serial = self.serial_buses(&raw.serial);
        let carriers = self.carriers(&raw.carriers);
        let (devices, dlt645, symbols, sim) = self.devices(&raw.device, &serial);
        if let Some(raw_mqtt) = &raw.mqtt {
            self.packet_limit(raw_mqtt, &mqtt, &agent, &devices, &raw.device);
        }
        let equipment = self.equipment(&raw.equipment, &symbols);
        let kpis = match &raw.kpi {
            Some(kpis) => self.kpis(kpis, &symbols, &carriers, &equipment, agent.day_start),
            None => Kpis::default(),
        };
        let config = Config {
            source: PathBuf::from(self.file),
            sha256: sha256_hex(self.text.as_bytes()),
            agent,
            mqtt,
            buffer,
            serial,
            devices,
            dlt645,
            equipment,
            kpis,
            carriers,
            history: self.history(raw.history.as_ref()),
            http: self.http(raw.http.as_ref()),
        };
        Parsed { config, sim }
    }

    fn agent(&mut self, raw: &S<RawAgent>) -> Agent {
        let table = raw.span();
        let raw = raw.get_ref();
        let mut agent = placeholder_agent();
        if let Some(id) = self.require(raw.id.as_ref(), &table, "id", "[agent]") {
            self.name(id, "agent.id", Charset::Id);
            agent.id.clone_from(id.get_ref());
        }
        if let Some(site) = self.require(raw.site.as_ref(), &table, "site", "[agent]") {
            self.name(site, "agent.site", Charset::Id);
            agent.site.clone_from(site.get_ref());
        }
        if let Some(dir) = self.require(raw.data_dir.as_ref(), &table, "data_dir", "[agent]") {
            self.non_empty(dir, "data_dir");
            agent.data_dir = PathBuf::from(dir.get_ref());
        }
        if let Some(zone) = self.require(raw.timezone.as_ref(), &table, "timezone", "[agent]") {
            if let Ok(tz) = jiff::tz::db().get(zone.get_ref()) {
                agent.timezone = tz;
                agent.timezone_name.clone_from(zone.get_ref());
            } else {
                let names: Vec<String> = jiff::tz::db()
                    .available()
                    .map(|name| name.as_str().to_owned())
                    .collect();
                let message = match closest_name(zone.get_ref(), names.iter().map(String::as_str)) {
                    Some(meant) => format!(
                        "unknown timezone \"{}\"; did you mean \"{meant}\"?",
                        zone.get_ref()
                    ),
                    None => format!(
                        "unknown timezone \"{}\"; expected an IANA name like \"Asia/Shanghai\" or \"UTC\"",
                        zone.get_ref()
                    ),
                };
                self.error(&zone.span(), message);
            }
        }
        if let Some(start) = &raw.day_start {
            match parse_day_start(start.get_ref()) {
                Some(day_start) => agent.day_start = day_start,
                None => self.error(
                    &start.span(),
                    format!("day_start must be a time \"HH:MM\" from \"00:00\" to \"23:59\", got \"{}\"", start.get_ref()),
                ),
            }
        }
        agent
    }

    fn mqtt(&mut self, raw: &S<RawMqtt>, agent_id: &str) -> Mqtt {
        let table = raw.span();
        let raw = raw.get_ref();
        let mut mqtt = placeholder_mqtt();
        mqtt.client_id = format!("spindle-{agent_id}");
        if let Some(url) = self.require(raw.url.as_ref(), &table, "url", "[mqtt]") {
            match parse_mqtt_url(url.get_ref()) {
                Ok(parsed) => mqtt.url = parsed,
                Err(message) => self.error(&url.span(), message),
            }
        }
        if let Some(client_id) = &raw.client_id
            && self.non_empty(client_id, "client_id")
        {
            mqtt.client_id.clone_from(client_id.get_ref());
        }
        if let Some(username) = &raw.username
            && self.non_empty(username, "username")
        {
            mqtt.username = Some(username.get_ref().clone());
        }
        match (&raw.password_file, &raw.password_env) {
            (Some(_), Some(env)) => {
                self.error(&env.span(), "give password_file or password_env, not both");
            }
            (Some(file), None) => {
                if self.non_empty(file, "password_file") {
                    mqtt.password = Some(PasswordSource::File(PathBuf::from(file.get_ref())));
                }
            }
            (None, Some(env)) => {
                if self.non_empty(env, "password_env") {
                    mqtt.password = Some(PasswordSource::Env(env.get_ref().clone()));
                }
            }
            (None, None) => {}
        }
        for (key, value, slot) in [
            ("ca_file", &raw.ca_file, &mut mqtt.ca_file),
            ("cert_file", &raw.cert_file, &mut mqtt.cert_file),
            ("key_file", &raw.key_file, &mut mqtt.key_file),
        ] {
            if let Some(value) = value {
                if !mqtt.url.tls {
                    self.error(&value.span(), format!("{key} needs an mqtts:// url"));
                }
                if self.non_empty(value, key) {
                    *slot = Some(PathBuf::from(value.get_ref()));
                }
            }
        }
        match (&raw.cert_file, &raw.key_file) {
            (Some(cert), None) => self.error(
                &cert.span(),
                "cert_file needs key_file (mutual TLS takes both)",
            ),
            (None, Some(key)) => self.error(
                &key.span(),
                "key_file needs cert_file (mutual TLS takes both)",
            ),
            _ => {}
        }
        if let Some(prefix) = &raw.topic_prefix {
            let text = prefix.get_ref();
            if text.is_empty()
                || text.starts_with('/')
                || text.ends_with('/')
                || text.contains(['+', '#', '\0'])
                || text.contains("//")
            {
                self.error(
                    &prefix.span(),
                    format!("topic_prefix must be topic levels without wildcards or empty levels (like \"spindle\"), got \"{text}\""),
                );
            } else {
                mqtt.topic_prefix.clone_from(text);
            }
        }
        mqtt.reconnect_max = self.duration(
            raw.reconnect_max.as_ref(),
            "reconnect_max",
            mqtt.reconnect_max,
            false,
        );
        if let Some(keep_alive) = &raw.keep_alive {
            let duration = self.duration(Some(keep_alive), "keep_alive", mqtt.keep_alive, false);
            if duration.subsec_nanos() != 0 || duration > Duration::from_secs(u64::from(u16::MAX)) {
                self.error(
                    &keep_alive.span(),
                    "keep_alive must be whole seconds from 1s to 65535s",
                );
            } else {
                mqtt.keep_alive = duration;
            }
        }
        self.mqtt_dialect(raw, &mut mqtt);
        mqtt
    }

    /// `dialect`, `token_file` / `token_env`, `device_name`, `max_packet`.
    fn mqtt_dialect(&mut self, raw: &RawMqtt, mqtt: &mut Mqtt) {
        if let Some(dialect) = &raw.dialect
            && let Some(chosen) = self.keyword(dialect, "dialect", &DIALECTS)
        {
            mqtt.dialect = chosen;
        }
        mqtt.max_packet = mqtt.dialect.default_max_packet();
        let token = match (&raw.token_file, &raw.token_env) {
            (Some(_), Some(env)) => {
                self.error(&env.span(), "give token_file or token_env, not both");
                None
            }
            (Some(file), None) => self.token_file(file),
            (None, Some(env)) => self.token_env(env),
            (None, None) => None,
        };
        if let Some((span, source)) = token {
            if mqtt.dialect != Dialect::ThingsBoard {
                self.error(&span, "an access token needs dialect = \"thingsboard\"");
            }
            if let Some(password) = raw.password_file.as_ref().or(raw.password_env.as_ref()) {
                self.error(
                    &password.span(),
                    "give an access token or a password, not both (the token is the username, sent without a password)",
                );
            }
            if let Some(username) = &raw.username {
                self.error(
                    &username.span(),
                    "give an access token or a username, not both (the token is the username)",
                );
            }
            mqtt.token = Some(source);
        }
        if let Some(template) = &raw.device_name {
            match DeviceNameTemplate::parse(template.get_ref()) {
                Ok(parsed) => mqtt.device_name = parsed,
                Err(message) => self.error(&template.span(), format!("device_name: {message}")),
            }
        }
        if let Some(max) = &raw.max_packet {
            let bytes = match max.get_ref() {
                toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| String::new()),
                toml::Value::String(text) => units::parse_size(text),
                _ => Err(String::new()),
            };
            match bytes.ok().and_then(|b| usize::try_from(b).ok()) {
                Some(bytes) if (MIN_PACKET..=MQTT_MAX_PACKET).contains(&bytes) => {
                    mqtt.max_packet = bytes;
                }
                _ => self.error(
                    &max.span(),
                    format!("max_packet must be {MIN_PACKET} to {MQTT_MAX_PACKET} bytes (an integer or a size like \"64KiB\")"),
                ),
            }
        }
    }

    /// A token file that can be read and is not empty (its content is not kept).
    fn token_file(&mut self, file: &S<String>) -> Option<(Span, PasswordSource)> {
        if !self.non_empty(file, "token_file") {
            return None;
        }
        match std::fs::read_to_string(file.get_ref()) {
            Ok(text) if text.trim().is_empty() => {
                self.error(
                    &file.span(),
                    format!("token_file {} is empty", file.get_ref()),
                );
            }
            Ok(_) => {}
            Err(error) => self.error(
                &file.span(),
                format!("cannot read token_file {}: {error}", file.get_ref()),
            ),
        }
        Some((
            file.span(),
            PasswordSource::File(PathBuf::from(file.get_ref())),
        ))
    }

    /// A token variable that is set and not empty (its value is not kept).
    fn token_env(&mut self, env: &S<String>) -> Option<(Span, PasswordSource)> {
        if !self.non_empty(env, "token_env") {
            return None;
        }
        match std::env::var(env.get_ref()) {
            Ok(value) if !value.trim().is_empty() => {}
            Ok(_) => self.error(&env.span(), format!("token_env {} is empty", env.get_ref())),
            Err(_) => self.error(
                &env.span(),
                format!("token_env {} is not set", env.get_ref()),
            ),
        }
        Some((env.span(), PasswordSource::Env(env.get_ref().clone())))
    }

    /// The largest telemetry message each device can produce must fit
    /// `max_packet` (an upper bound, the one the agent checks at append);
    /// with `dialect = "thingsboard"`, point names must not collide with the
    /// keys the dialect adds (`seq`, `store`, `online`, `online_reason`,
    /// `<point>_error`).
    fn packet_limit(
        &mut self,
        raw: &S<RawMqtt>,
        mqtt: &Mqtt,
        agent: &Agent,
        devices: &[Device],
        raw_devices: &[S<RawDevice>],
    ) {
        let at = raw
            .get_ref()
            .max_packet
            .as_ref()
            .map_or_else(|| raw.span(), S::span);
        for device in devices {
            let device_at = raw_devices
                .iter()
                .find(|r| {
                    r.get_ref()
                        .name
                        .as_ref()
                        .is_some_and(|n| *n.get_ref() == device.name)
                })
                .map_or_else(|| raw.span(), S::span);
            let name = mqtt
                .device_name
                .render(&agent.site, &agent.id, &device.name);
            let topic = mqtt.topic_prefix.len()
                + agent.site.len()
                + agent.id.len()
                + 13
                + device.name.len();
            let bound = telemetry_bound(device, name.len().max(device.name.len()), topic);
            if bound > mqtt.max_packet {
                let key = if raw.get_ref().max_packet.is_some() {
                    "max_packet"
                } else {
                    "the default max_packet"
                };
                self.error(
                    &at,
                    format!(
                        "{key} ({} bytes) is below the largest telemetry device \"{}\" can produce (up to {bound} bytes); raise max_packet or split the device",
                        mqtt.max_packet, device.name
                    ),
                );
            }
            if mqtt.dialect == Dialect::ThingsBoard {
                for point in &device.points {
                    let taken = ["seq", "store", "online", "online_reason", "snapshot"]
                        .contains(&point.name.as_str())
                        || point
                            .name
                            .strip_suffix("_error")
                            .is_some_and(|base| device.points.iter().any(|p| p.name == base));
                    if taken {
                        self.error(
                            &device_at,
                            format!(
                                "point \"{}\" of device \"{}\" collides with a key the thingsboard dialect adds (seq, store, online, online_reason, snapshot, <point>_error); rename the point",
                                point.name, device.name
                            ),
                        );
                    }
                }
            }
        }
    }

    fn buffer(&mut self, raw: Option<&S<RawBuffer>>) -> Buffer {
        let mut buffer = Buffer {
            max_size: 256 << 20,
            max_age: Duration::from_secs(7 * 86_400),
            flush_interval: Duration::from_millis(100),
            replay: Replay::LiveFirst,
            replay_rate: None,
        };
        let Some(raw) = raw else { return buffer };
        let raw = raw.get_ref();
        if let Some(size) = &raw.max_size {
            match units::parse_size(size.get_ref()) {
                Ok(0) => self.error(&size.span(), "max_size must not be zero"),
                Ok(bytes) => buffer.max_size = bytes,
                Err(message) => self.error(&size.span(), format!("max_size: {message}")),
            }
        }
        buffer.max_age = self.duration(raw.max_age.as_ref(), "max_age", buffer.max_age, false);
        buffer.flush_interval = self.duration(
            raw.flush_interval.as_ref(),
            "flush_interval",
            buffer.flush_interval,
            true,
        );
        if let Some(replay) = &raw.replay
            && let Some(chosen) = self.keyword(
                replay,
                "replay",
                &[
                    ("live_first", Replay::LiveFirst),
                    ("oldest_first", Replay::OldestFirst),
                ],
            )
        {
            buffer.replay = chosen;
        }
        if let Some(raw_rate) = &raw.replay_rate
            && let Some(rate) =
                self.integer::<u32>(raw_rate, "replay_rate", 1, 1_000_000, " messages a second")
        {
            if buffer.replay == Replay::OldestFirst {
                self.error(
                    &raw_rate.span(),
                    "replay_rate needs replay = \"live_first\": with \"oldest_first\" live data would wait behind the paced backlog",
                );
            } else {
                buffer.replay_rate = NonZeroU32::new(rate);
            }
        }
        buffer
    }

    fn history(&mut self, raw: Option<&S<RawHistory>>) -> History {
        let mut history = History::default();
        let Some(raw) = raw else { return history };
        let raw = raw.get_ref();
        history.max_age = self.duration(raw.max_age.as_ref(), "max_age", history.max_age, false);
        if let Some(size) = &raw.max_size {
            match units::parse_size(size.get_ref()) {
                Ok(0) => self.error(&size.span(), "max_size must not be zero"),
                Ok(bytes) => history.max_size = bytes,
                Err(message) => self.error(&size.span(), format!("max_size: {message}")),
            }
        }
        history
    }

    /// `[http]`: an IP listen address; off loopback a token is required;
    /// TLS files come in pairs.
    fn http(&mut self, raw: Option<&S<RawHttp>>) -> Http {
        let mut http = Http::default();
        let Some(raw) = raw else { return http };
        let raw = raw.get_ref();
        if let Some(enabled) = &raw.enabled {
            http.enabled = *enabled.get_ref();
        }
        if let Some(language) = &raw.language
            && let Some(chosen) = self.keyword(
                language,
                "http.language",
                &[("en", Language::En), ("zh", Language::Zh)],
            )
        {
            http.language = chosen;
        }
        if let Some(file) = &raw.token_file
            && let Some((_, PasswordSource::File(path))) = self.token_file(file)
        {
            http.token_file = Some(path);
        }
        for (key, value, slot) in [
            ("cert_file", &raw.cert_file, &mut http.cert_file),
            ("key_file", &raw.key_file, &mut http.key_file),
        ] {
            if let Some(value) = value
                && self.non_empty(value, key)
            {
                *slot = Some(PathBuf::from(value.get_ref()));
            }
        }
        match (&raw.cert_file, &raw.key_file) {
            (Some(cert), None) => self.error(&cert.span(), "http.cert_file needs http.key_file"),
            (None, Some(key)) => self.error(&key.span(), "http.key_file needs http.cert_file"),
            _ => {}
        }
        if let Some(listen) = &raw.listen {
            match listen.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) => {
                    http.listen = addr;
                    if http.enabled && !addr.ip().is_loopback() && raw.token_file.is_none() {
                        self.error(
                            &listen.span(),
                            format!(
                                "http.listen {addr} is not a loopback address: give http.token_file (a token is required off loopback)"
                            ),
                        );
                    }
                }
                Err(_) => self.error(
                    &listen.span(),
                    format!(
                        "http.listen must be an IP address and port like \"127.0.0.1:9180\" or \"[::1]:9180\", got \"{}\"",
                        listen.get_ref()
                    ),
                ),
            }
        }
        http
    }

    fn serial_buses(&mut self, raw: &[S<RawSerial>]) -> Vec<SerialBus> {
        let mut names = BTreeMap::new();
        let mut ports: BTreeMap<String, (String, Span)> = BTreeMap::new();
        let mut buses = Vec::new();
        for bus in raw {
            let table = bus.span();
            let raw = bus.get_ref();
            let mut bus = SerialBus {
                name: String::new(),
                port: String::new(),
                baud: NonZeroU32::MIN,
                parity: Parity::None,
                data_bits: 8,
                stop_bits: 1,
                turnaround: Duration::ZERO,
            };
            if let Some(name) = self.require(raw.name.as_ref(), &table, "name", "[[serial]]") {
                self.name(name, "serial bus name", Charset::Lower);
                self.unique(&mut names, name, "serial bus", "");
                bus.name.clone_from(name.get_ref());
            }
            if let Some(port) = self.require(raw.port.as_ref(), &table, "port", "[[serial]]")
                && self.non_empty(port, "port")
            {
                if let Some((other, first)) = ports.get(port.get_ref()) {
                    let line = self.line_of(first);
                    self.error(
                        &port.span(),
                        format!(
                            "port \"{}\" is already used by serial bus \"{other}\" (line {line})",
                            port.get_ref()
                        ),
                    );
                } else {
                    ports.insert(port.get_ref().clone(), (bus.name.clone(), port.span()));
                }
                bus.port.clone_from(port.get_ref());
            }
            if let Some(baud) = self.require(raw.baud.as_ref(), &table, "baud", "[[serial]]")
                && let Some(rate) = self.integer::<u32>(baud, "baud", 1, i64::from(u32::MAX), "")
                && let Some(rate) = NonZeroU32::new(rate)
            {
                bus.baud = rate;
            }
            if let Some(parity) = &raw.parity
                && let Some(chosen) = self.keyword(
                    parity,
                    "parity",
                    &[
                        ("none", Parity::None),
                        ("even", Parity::Even),
                        ("odd", Parity::Odd),
                    ],
                )
            {
                bus.parity = chosen;
            }
            if let Some(bits) = &raw.data_bits
                && let Some(bits) = self.integer(bits, "data_bits", 5, 8, "")
            {
                bus.data_bits = bits;
            }
            if let Some(bits) = &raw.stop_bits
                && let Some(bits) = self.integer(bits, "stop_bits", 1, 2, "")
            {
                bus.stop_bits = bits;
            }
            bus.turnaround =
                self.duration(raw.turnaround.as_ref(), "turnaround", Duration::ZERO, true);
            buses.push(bus);
        }
        buses
    }

    fn carriers(&mut self, raw: &BTreeMap<S<String>, S<RawCarrier>>) -> BTreeMap<String, Carrier> {
        let mut table = carriers::builtin_table();
        for (name, carrier) in raw {
            let span = carrier.span();
            let raw = carrier.get_ref();
            self.name(name, "carrier name", Charset::Identifier);
            let unit = raw
                .unit
                .as_ref()
                .filter(|unit| self.non_empty(unit, "unit"));
            let kgce = raw
                .kgce_per_unit
                .as_ref()
                .and_then(|value| self.coefficient(value, "kgce_per_unit"));
            let kgco2 = raw
                .kgco2_per_unit
                .as_ref()
                .and_then(|value| self.coefficient(value, "kgco2_per_unit"));
            let basis = self.basis(raw);
            let co2_factor_year = raw
                .co2_factor_year
                .as_ref()
                .and_then(|year| self.integer::<u16>(year, "co2_factor_year", 1900, 2200, ""));
            let co2_factor_id = raw
                .co2_factor_id
                .as_ref()
                .filter(|id| self.non_empty(id, "co2_factor_id"))
                .map(|id| id.get_ref().clone());
            if let Some(existing) = table.get_mut(name.get_ref()) {
                // A CO2 factor of the file's own is not the built-in series:
                // its id and year are the file's (absent: unknown, null).
                if raw.kgco2_per_unit.is_some() {
                    existing.co2_factor_id = None;
                    existing.co2_factor_year = None;
                }
                if let Some(basis) = basis {
                    existing.basis = basis;
                }
                if co2_factor_id.is_some() {
                    existing.co2_factor_id = co2_factor_id;
                }
                if co2_factor_year.is_some() {
                    existing.co2_factor_year = co2_factor_year;
                }
                if let Some(unit) = unit
                    && *unit.get_ref() != existing.unit
                    && (raw.kgce_per_unit.is_none() || raw.kgco2_per_unit.is_none())
                {
                    self.error(
                            &unit.span(),
                            format!(
                                "changing the unit of carrier \"{}\" from \"{}\" needs both kgce_per_unit and kgco2_per_unit for the new unit",
                                name.get_ref(),
                                existing.unit
                            ),
                        );
                }
                if let Some(unit) = unit {
                    existing.unit.clone_from(unit.get_ref());
                }
                if let Some(kgce) = kgce {
                    existing.kgce_per_unit = kgce;
                }
                if let Some(kgco2) = kgco2 {
                    existing.kgco2_per_unit = kgco2;
                }
            } else {
                let what = format!("[carriers.{}]", name.get_ref());
                let unit = self
                    .require(raw.unit.as_ref(), &span, "unit", &what)
                    .map(|unit| unit.get_ref().clone());
                self.require(raw.kgce_per_unit.as_ref(), &span, "kgce_per_unit", &what);
                self.require(raw.kgco2_per_unit.as_ref(), &span, "kgco2_per_unit", &what);
                table.insert(
                    name.get_ref().clone(),
                    Carrier {
                        unit: unit.unwrap_or_default(),
                        kgce_per_unit: kgce.unwrap_or_default(),
                        kgco2_per_unit: kgco2.unwrap_or_default(),
                        basis: basis.unwrap_or_default(),
                        co2_factor_id,
                        co2_factor_year,
                    },
                );
            }
        }
        table
    }

    /// A carrier's `basis` (and `basis_year`, which only `"equivalent"` takes).
    fn basis(&mut self, raw: &RawCarrier) -> Option<Basis> {
        let year = raw
            .basis_year
            .as_ref()
            .and_then(|year| self.integer::<u16>(year, "basis_year", 1900, 2200, ""));
        let basis = raw.basis.as_ref().and_then(|basis| {
            self.keyword(
                basis,
                "basis",
                &[
                    ("calorific", Basis::Calorific),
                    ("equivalent", Basis::Equivalent { year: None }),
                ],
            )
        });
        if let Some(Basis::Equivalent { .. }) = basis {
            return Some(Basis::Equivalent { year });
        }
        if let Some(year_value) = &raw.basis_year
            && (raw.basis.is_none() || basis == Some(Basis::Calorific))
        {
            self.error(
                &year_value.span(),
                "basis_year belongs to basis = \"equivalent\" (等价值: the generation coal rate of that year)",
            );
        }
        basis
    }

    fn coefficient(&mut self, value: &S<f64>, key: &str) -> Option<f64> {
        let number = *value.get_ref();
        if number.is_finite() && number >= 0.0 {
            Some(number)
        } else {
            self.error(
                &value.span(),
                format!("{key} must be a finite number ≥ 0, got {number}"),
            );
            None
        }
    }

    // ----- devices -----------------------------------------------------------

    #[allow(clippy::type_complexity)]
    fn devices(
        &mut self,
        raw: &[S<RawDevice>],
        buses: &[SerialBus],
    ) -> (
        Vec<Device>,
        BTreeMap<String, Dlt645Device>,
        BTreeMap<String, DeviceSymbols>,
        BTreeMap<String, toml::Table>,
    ) {
        let mut names = BTreeMap::new();
        let mut addresses: BTreeMap<(bool, String, u8), (String, Span)> = BTreeMap::new();
        let mut meters: BTreeMap<(String, String), (String, Span)> = BTreeMap::new();
        let mut dlt645 = BTreeMap::new();
        let mut devices = Vec::new();
        let mut symbols = BTreeMap::new();
        let mut sims = BTreeMap::new();
        for raw_device in raw {
            let (device, device_symbols, unit_span, meter) =
                self.device(raw_device, buses, &mut names);
            if let Some((meter, meter_span)) = meter
                && !device.name.is_empty()
            {
                if let (Some(meter_span), DeviceLink::Serial(bus)) = (meter_span, &device.link) {
                    let key = (bus.clone(), meter.meter.clone());
                    if let Some((other, first)) = meters.get(&key) {
                        let line = self.line_of(first);
                        self.error(
                            &meter_span,
                            format!(
                                "meter {} on serial bus \"{bus}\" is already used by device \"{other}\" (line {line})",
                                meter.meter
                            ),
                        );
                    } else {
                        meters.insert(key, (device.name.clone(), meter_span));
                    }
                }
                dlt645.entry(device.name.clone()).or_insert(meter);
            }
            if let Some(unit_span) = unit_span
                && !device.name.is_empty()
            {
                let key = match &device.link {
                    DeviceLink::Serial(bus) => (true, bus.clone(), device.unit),
                    DeviceLink::Tcp(endpoint) => {
                        (false, endpoint.to_ascii_lowercase(), device.unit)
                    }
                };
                if let Some((other, first)) = addresses.get(&key) {
                    let line = self.line_of(first);
                    let place = match &device.link {
                        DeviceLink::Serial(bus) => format!("on serial bus \"{bus}\""),
                        DeviceLink::Tcp(endpoint) => format!("at tcp \"{endpoint}\""),
                    };
                    self.error(
                        &unit_span,
                        format!(
                            "unit {} {place} is already used by device \"{other}\" (line {line})",
                            device.unit
                        ),
                    );
                } else {
                    addresses.insert(key, (device.name.clone(), unit_span));
                }
            }
            if let Some(sim) = &raw_device.get_ref().sim {
                if self.options.allow_sim {
                    sims.insert(device.name.clone(), sim.get_ref().clone());
                } else {
                    self.error(
                        &sim.span(),
                        "[device.sim] is read only by `spindle simulate`; remove it from configurations the agent runs",
                    );
                }
            }
            symbols.entry(device.name.clone()).or_insert(device_symbols);
            devices.push(device);
        }
        (devices, dlt645, symbols, sims)
    }

    /// One device; returns it (placeholders where broken), its symbols, the
    /// span of its unit when its link and unit are valid (for conflicts), and
    /// for a DL/T 645 device its meter side with the span of its valid meter
    /// address.
    #[allow(clippy::too_many_lines, clippy::type_complexity)]
    fn device(
        &mut self,
        raw: &S<RawDevice>,
        buses: &[SerialBus],
        names: &mut BTreeMap<String, Span>,
    ) -> (
        Device,
        DeviceSymbols,
        Option<Span>,
        Option<(Dlt645Device, Option<Span>)>,
    ) {
        let table = raw.span();
        let raw = raw.get_ref();
        let mut device = Device {
            name: String::new(),
            link: DeviceLink::Tcp(String::new()),
            unit: 0,
            profile: None,
            profile_options: BTreeMap::new(),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 1,
            max_registers: NonZeroU16::new(125).unwrap_or(NonZeroU16::MIN),
            max_gap: 8,
            report: Report::Always,
            heartbeat: Duration::from_secs(60),
            offline_probe_max: Duration::from_secs(30),
            points: Vec::new(),
        };
        if let Some(name) = self.require(raw.name.as_ref(), &table, "name", "[[device]]") {
            self.name(name, "device name", Charset::Lower);
            self.unique(names, name, "device", "");
            device.name.clone_from(name.get_ref());
        }
        let protocol = match &raw.protocol {
            Some(protocol) => {
                self.keyword(protocol, "protocol", &PROTOCOLS)
                    .unwrap_or(if raw.meter.is_some() {
                        Protocol::Dlt645
                    } else {
                        Protocol::Modbus
                    })
            }
            None => Protocol::Modbus,
        };
        let dlt = protocol == Protocol::Dlt645;
        let (link_ok, (unit_min, unit_max, unit_context)) =
            self.link(raw, &table, buses, &mut device);
        let mut unit_span = None;
        let mut meter = None;
        if dlt {
            if let (None, Some(tcp)) = (&raw.serial, &raw.tcp) {
                self.error(
                    &tcp.span(),
                    "a DL/T 645 device must be on a serial bus: give serial = BUS, not tcp",
                );
            }
            for (key, span) in [
                ("unit", raw.unit.as_ref().map(Spanned::span)),
                (
                    "max_registers",
                    raw.max_registers.as_ref().map(Spanned::span),
                ),
                ("max_gap", raw.max_gap.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.error(
                        &span,
                        format!("{key} is a Modbus key; a DL/T 645 device (protocol = \"dlt645\") is addressed by meter = \"000012345678\""),
                    );
                }
            }
            let mut dlt645 = Dlt645Device {
                meter: String::new(),
                di: BTreeMap::new(),
                wraps: BTreeMap::new(),
            };
            let mut meter_span = None;
            if let Some(printed) =
                self.require(raw.meter.as_ref(), &table, "meter", "a DL/T 645 [[device]]")
            {
                let text = printed.get_ref();
                if text.len() == 12 && text.bytes().all(|byte| byte.is_ascii_digit()) {
                    dlt645.meter.clone_from(text);
                    meter_span = link_ok.then(|| printed.span());
                } else {
                    self.error(
                        &printed.span(),
                        format!("meter must be the 12 digits printed on the meter (like \"000012345678\"), got \"{text}\""),
                    );
                }
            }
            meter = Some((dlt645, meter_span));
        } else {
            if let Some(printed) = &raw.meter {
                self.error(
                    &printed.span(),
                    "meter is for DL/T 645 devices (protocol = \"dlt645\"); a Modbus device has unit",
                );
            }
            if let Some(unit) = self.require(raw.unit.as_ref(), &table, "unit", "[[device]]")
                && let Some(id) = self.integer::<u8>(unit, "unit", unit_min, unit_max, unit_context)
            {
                device.unit = id;
                unit_span = link_ok.then(|| unit.span());
            }
        }
        device.poll = self.duration(raw.poll.as_ref(), "poll", device.poll, false);
        device.timeout = self.duration(raw.timeout.as_ref(), "timeout", device.timeout, false);
        device.heartbeat =
            self.duration(raw.heartbeat.as_ref(), "heartbeat", device.heartbeat, false);
        device.offline_probe_max = self.duration(
            raw.offline_probe_max.as_ref(),
            "offline_probe_max",
            device.offline_probe_max,
            false,
        );
        if let Some(retries) = &raw.retries
            && let Some(retries) = self.integer(retries, "retries", 0, 100, "")
        {
            device.retries = retries;
        }
        if let Some(gap) = &raw.max_gap
            && !dlt
            && let Some(gap) = self.integer(gap, "max_gap", 0, 125, "")
        {
            device.max_gap = gap;
        }
        if let Some(report) = &raw.report
            && let Some(report) = self.keyword(
                report,
                "report",
                &[("always", Report::Always), ("on_change", Report::OnChange)],
            )
        {
            device.report = report;
        }

        let (profile_points, profile_max_registers) = self.profile(raw, &mut device, dlt);
        let mut max_registers_span = None;
        match &raw.max_registers {
            Some(_) if dlt => {}
            Some(max) => {
                if let Some(max_registers) = self.integer::<u16>(max, "max_registers", 1, 125, "")
                    && let Some(max_registers) = NonZeroU16::new(max_registers)
                {
                    device.max_registers = max_registers;
                    max_registers_span = Some(max.span());
                }
            }
            None => {
                if let Some(max_registers) = profile_max_registers.and_then(NonZeroU16::new) {
                    device.max_registers = max_registers;
                }
            }
        }

        // A DL/T 645 profile's points come with their identifiers (a file
        // point of the same name replaces both).
        let mut di: BTreeMap<String, u32> = device
            .profile
            .as_deref()
            .and_then(profiles::find)
            .map(|profile| {
                profile
                    .di
                    .iter()
                    .map(|(name, di)| ((*name).to_owned(), *di))
                    .collect()
            })
            .unwrap_or_default();
        let symbols = self.merge_points(
            raw,
            &mut device,
            profile_points,
            max_registers_span.unwrap_or(table),
            dlt.then_some(&mut di),
        );
        if let Some((dlt645, _)) = &mut meter {
            // Energy registers (DI3 = 00) of counter points wrap after
            // 999999.99 kWh.
            dlt645.wraps = device
                .points
                .iter()
                .filter(|point| point.counter)
                .filter(|point| di.get(&point.name).is_some_and(|di| di >> 24 == 0))
                .map(|point| (point.name.clone(), RegisterWrap::DLT645_ENERGY))
                .collect();
            dlt645.di = di;
        }
        (device, symbols, unit_span, meter)
    }

    /// The device's link; whether it is valid, and the unit id range it allows.
    fn link(
        &mut self,
        raw: &RawDevice,
        table: &Span,
        buses: &[SerialBus],
        device: &mut Device,
    ) -> (bool, (i64, i64, &'static str)) {
        let mut link_ok = true;
        let mut unit_max = 255;
        let mut unit_min = 0;
        let mut unit_context = " over tcp";
        match (&raw.serial, &raw.tcp) {
            (Some(_), Some(tcp)) => {
                link_ok = false;
                self.error(
                    &tcp.span(),
                    "give serial = BUS or tcp = \"HOST:PORT\", not both",
                );
            }
            (None, None) => {
                link_ok = false;
                self.error(
                    table,
                    "missing key `serial` or `tcp` in [[device]]: say how the device is reached",
                );
            }
            (Some(bus), None) => {
                (unit_min, unit_max, unit_context) = (1, 247, " on a serial bus");
                if buses.iter().any(|known| known.name == *bus.get_ref()) {
                    device.link = DeviceLink::Serial(bus.get_ref().clone());
                } else {
                    link_ok = false;
                    let known: Vec<&str> = buses.iter().map(|known| known.name.as_str()).collect();
                    let message = match closest_name(bus.get_ref(), known.iter().copied()) {
                        Some(meant) => format!(
                            "unknown serial bus \"{}\"; did you mean \"{meant}\"?",
                            bus.get_ref()
                        ),
                        None if known.is_empty() => {
                            format!("unknown serial bus \"{}\" (none is defined)", bus.get_ref())
                        }
                        None => format!(
                            "unknown serial bus \"{}\" (defined: {})",
                            bus.get_ref(),
                            known.join(", ")
                        ),
                    };
                    self.error(&bus.span(), message);
                }
            }
            (None, Some(tcp)) => {
                if let Ok((_, Some(_))) = split_host_port(tcp.get_ref()) {
                    device.link = DeviceLink::Tcp(tcp.get_ref().clone());
                } else {
                    link_ok = false;
                    self.error(
                        &tcp.span(),
                        format!(
                            "tcp must be \"HOST:PORT\" (like \"192.168.1.20:502\"), got \"{}\"",
                            tcp.get_ref()
                        ),
                    );
                }
            }
        }
        (link_ok, (unit_min, unit_max, unit_context))
    }

    /// The device's profile points (with its options applied) and the
    /// profile's `max_registers`; fills `device.profile` and `profile_options`.
    fn profile(
        &mut self,
        raw: &RawDevice,
        device: &mut Device,
        dlt: bool,
    ) -> (Vec<Point>, Option<u16>) {
        let mut profile_points = Vec::new();
        let mut profile_max_registers = None;
        let mut option_spans = BTreeMap::new();
        for (key, value) in &raw.profile_options {
            option_spans.insert(key.get_ref().clone(), value.span());
            let option = match value.get_ref() {
                toml::Value::Integer(number) => Some(ProfileOption::Integer(*number)),
                toml::Value::Float(number) => Some(ProfileOption::Float(*number)),
                toml::Value::String(text) => Some(ProfileOption::String(text.clone())),
                toml::Value::Boolean(flag) => Some(ProfileOption::Bool(*flag)),
                _ => {
                    self.error(
                        &value.span(),
                        format!(
                            "option `{}` must be a number, string or boolean",
                            key.get_ref()
                        ),
                    );
                    None
                }
            };
            if let Some(option) = option {
                device.profile_options.insert(key.get_ref().clone(), option);
            }
        }
        match &raw.profile {
            Some(name) => {
                if let Some(profile) = profiles::find(name.get_ref())
                    && profile.is_dlt645() != dlt
                {
                    self.error(
                        &name.span(),
                        if dlt {
                            format!("profile \"{}\" is a Modbus meter's; a DL/T 645 device takes \"dlt645-three-phase\" or \"dlt645-single-phase\"", profile.name)
                        } else {
                            format!("profile \"{}\" is for DL/T 645 meters: give the device protocol = \"dlt645\" and meter = \"…\"", profile.name)
                        },
                    );
                } else if let Some(profile) = profiles::find(name.get_ref()) {
                    device.profile = Some(profile.name.to_owned());
                    profile_max_registers = profile.max_registers;
                    match profile.points(&device.profile_options) {
                        Ok(points) => profile_points = points,
                        Err(errors) => {
                            for error in errors {
                                let span = option_spans
                                    .get(&error.option)
                                    .cloned()
                                    .unwrap_or_else(|| name.span());
                                self.error(&span, error.message);
                            }
                        }
                    }
                } else {
                    let names = profiles::names();
                    let message = match closest_name(name.get_ref(), names.iter().copied()) {
                        Some(meant) => format!(
                            "unknown profile \"{}\"; did you mean \"{meant}\"?",
                            name.get_ref()
                        ),
                        None => format!(
                            "unknown profile \"{}\"; built-in profiles: {}",
                            name.get_ref(),
                            names.join(", ")
                        ),
                    };
                    self.error(&name.span(), message);
                }
            }
            None => {
                if let Some((key, _)) = raw.profile_options.iter().next() {
                    self.error(&key.span(), "profile_options needs a profile");
                }
            }
        }
        (profile_points, profile_max_registers)
    }

    /// Profile points, replaced by name, then the file's; checks every point
    /// fits one request (`max_registers_span` is where that limit was set).
    fn merge_points(
        &mut self,
        raw: &RawDevice,
        device: &mut Device,
        profile_points: Vec<Point>,
        max_registers_span: Span,
        mut di: Option<&mut BTreeMap<String, u32>>,
    ) -> DeviceSymbols {
        let mut symbols = DeviceSymbols::default();
        let mut points: Vec<(Point, bool)> = profile_points
            .into_iter()
            .map(|point| (point, true))
            .collect();
        let mut from_file: BTreeMap<String, Span> = BTreeMap::new();
        for raw_point in &raw.point {
            let (point, point_di, ok) = self.point(raw_point, di.is_some());
            if let (Some(di), Some(point_di)) = (di.as_deref_mut(), point_di) {
                di.insert(point.name.clone(), point_di);
            }
            if let Some(name) = &raw_point.get_ref().name {
                if !self.unique(
                    &mut from_file,
                    name,
                    "point",
                    &format!(" in device \"{}\"", device.name),
                ) {
                    continue;
                }
                if let Some(slot) = points
                    .iter_mut()
                    .find(|(existing, _)| existing.name == point.name)
                {
                    *slot = (point, ok);
                    continue;
                }
            }
            points.push((point, ok));
        }
        for (point, ok) in &mut points {
            if *ok && point.width() > device.max_registers.get() && !point.area.is_bit() {
                *ok = false;
                let span = max_registers_span.clone();
                self.error(
                    &span,
                    format!(
                        "point \"{}\" needs {} registers in one request but max_registers is {}",
                        point.name,
                        point.width(),
                        device.max_registers
                    ),
                );
            }
        }
        for (point, ok) in points {
            symbols
                .points
                .insert(point.name.clone(), ok.then(|| point.clone()));
            device.points.push(point);
        }
        symbols
    }

    /// One `[[device.point]]` of a Modbus device, or of a DL/T 645 device when
    /// `dlt`; its data identifier (DL/T 645) and whether it is valid.
    fn point(&mut self, raw: &S<RawPoint>, dlt: bool) -> (Point, Option<u32>, bool) {
        let before = self.errors.len();
        let table = raw.span();
        let raw = raw.get_ref();
        let mut point = Point {
            name: String::new(),
            area: Area::Holding,
            address: 0,
            value_type: ValueType::U16,
            order: WordOrder::Abcd,
            bit: None,
            length: None,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            counter: false,
            deadband: None,
            rollover: None,
        };

        if let Some(name) = self.require(raw.name.as_ref(), &table, "name", "[[device.point]]") {
            self.name(name, "point name", Charset::Identifier);
            point.name.clone_from(name.get_ref());
        }
        let mut di = None;
        let value_type = if dlt {
            point.value_type = ValueType::F64;
            di = self.dlt645_point(raw, &table);
            None
        } else {
            if let Some(di) = &raw.di {
                self.error(
                    &di.span(),
                    "di is for DL/T 645 points (protocol = \"dlt645\" on the device); a Modbus point has area and address",
                );
            }
            self.modbus_layout(raw, &table, &mut point)
        };
        self.point_reporting(raw, &mut point, value_type.as_ref());
        (point, di, self.errors.len() == before)
    }

    /// A DL/T 645 point's data identifier; refuses the Modbus layout keys.
    fn dlt645_point(&mut self, raw: &RawPoint, table: &Span) -> Option<u32> {
        for (key, span) in [
            ("area", raw.area.as_ref().map(Spanned::span)),
            ("address", raw.address.as_ref().map(Spanned::span)),
            ("type", raw.value_type.as_ref().map(Spanned::span)),
            ("order", raw.order.as_ref().map(Spanned::span)),
            ("bit", raw.bit.as_ref().map(Spanned::span)),
            ("length", raw.length.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                self.error(
                    &span,
                    format!("{key} is a Modbus key; a DL/T 645 point is read by di = \"02010100\""),
                );
            }
        }
        if let Some(rollover) = &raw.rollover {
            self.error(
                &rollover.span(),
                "rollover is not supported on a DL/T 645 point yet",
            );
        }
        let text = self.require(raw.di.as_ref(), table, "di", "a DL/T 645 [[device.point]]")?;
        let digits = text.get_ref();
        if digits.len() == 8
            && let Ok(di) = u32::from_str_radix(digits, 16)
            && digits.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            Some(di)
        } else {
            self.error(
                &text.span(),
                format!("di must be 8 hex digits, DI3 first (like \"00010000\"), got \"{digits}\""),
            );
            None
        }
    }

    /// A Modbus point's area, address, type, order, bit and length; its type
    /// with the span, when valid.
    #[allow(clippy::too_many_lines)]
    fn modbus_layout(
        &mut self,
        raw: &RawPoint,
        table: &Span,
        point: &mut Point,
    ) -> Option<(ValueType, Span)> {
        let table = table.clone();
        let area = self
            .require(raw.area.as_ref(), &table, "area", "[[device.point]]")
            .and_then(|area| self.keyword(area, "area", &AREAS));
        let address = self
            .require(raw.address.as_ref(), &table, "address", "[[device.point]]")
            .and_then(|address| {
                self.integer::<u16>(address, "address", 0, 65_535, "")
                    .map(|a| (a, address.span()))
            });
        let value_type = self
            .require(raw.value_type.as_ref(), &table, "type", "[[device.point]]")
            .and_then(|value_type| {
                self.keyword(value_type, "type", &TYPES)
                    .map(|t| (t, value_type.span()))
            });
        if let Some(area) = area {
            point.area = area;
        }
        if let Some((address, _)) = address {
            point.address = address;
        }
        if let Some((value_type, _)) = value_type {
            point.value_type = value_type;
        }
        if let Some(order) = &raw.order
            && let Some(order) = self.keyword(order, "order", &ORDERS)
        {
            point.order = order;
        }

        // Type against area, bit and length.
        if let (Some(area), Some((value_type, type_span))) = (area, &value_type) {
            if area.is_bit() && *value_type != ValueType::Bool {
                self.error(
                    type_span,
                    format!(
                        "a {} point must have type = \"bool\", got \"{}\"",
                        area.as_str(),
                        value_type.as_str()
                    ),
                );
            }
            if !area.is_bit() && *value_type == ValueType::Bool && raw.bit.is_none() {
                self.error(
                    type_span,
                    format!("a bool in a {} register needs bit = 0 to 15 (or use area \"coil\" or \"discrete\")", area.as_str()),
                );
            }
            if area.is_bit()
                && let Some(order) = &raw.order
            {
                self.error(
                    &order.span(),
                    format!(
                        "order applies to registers, not to a {} point",
                        area.as_str()
                    ),
                );
            }
        }
        if let Some(bit) = &raw.bit {
            if let Some(bit) = self.integer::<u8>(bit, "bit", 0, 15, "") {
                point.bit = Some(bit);
            }
            if area.is_some_and(Area::is_bit) {
                self.error(
                    &bit.span(),
                    "bit applies to holding or input registers, not to coil or discrete points",
                );
            } else if value_type
                .as_ref()
                .is_some_and(|(t, _)| *t != ValueType::Bool)
            {
                self.error(&bit.span(), "bit is only for type = \"bool\"");
            }
        }
        match (&raw.length, &value_type) {
            (Some(length), Some((ValueType::String, _))) => {
                if let Some(length) = self.integer::<u16>(length, "length", 1, 125, " registers") {
                    point.length = NonZeroU16::new(length);
                }
            }
            (Some(length), Some(_)) => {
                self.error(&length.span(), "length is only for type = \"string\"");
            }
            (None, Some((ValueType::String, type_span))) => {
                self.error(
                    type_span,
                    "a string point needs length = registers (1 to 125)",
                );
            }
            _ => {}
        }
        if let (Some((address, address_span)), Some(_)) = (&address, &value_type) {
            let last = u32::from(*address) + u32::from(point.width()) - 1;
            if last > 65_535 {
                self.error(
                    address_span,
                    format!(
                        "point spans addresses {address} to {last}, past the last address 65535"
                    ),
                );
            }
        }

        value_type
    }

    /// Scale, offset, deadband, unit, counter and rollover, for either protocol.
    fn point_reporting(
        &mut self,
        raw: &RawPoint,
        point: &mut Point,
        value_type: Option<&(ValueType, Span)>,
    ) {
        if let Some(scale) = &raw.scale
            && let Some(scale) = self.finite(scale, "scale")
        {
            point.scale = scale;
        }
        if let Some(offset) = &raw.offset
            && let Some(offset) = self.finite(offset, "offset")
        {
            point.offset = offset;
        }
        if let Some(deadband) = &raw.deadband {
            let number = *deadband.get_ref();
            if number.is_finite() && number >= 0.0 {
                point.deadband = Some(number);
            } else {
                self.error(
                    &deadband.span(),
                    format!("deadband must be a finite number ≥ 0, got {number}"),
                );
            }
        }
        if let Some(unit) = &raw.unit
            && self.non_empty(unit, "unit")
        {
            point.unit = Some(unit.get_ref().clone());
        }
        if let Some(counter) = &raw.counter {
            point.counter = *counter.get_ref();
            if point.counter
                && let Some((value_type, _)) = &value_type
                && !value_type.is_numeric()
            {
                self.error(
                    &counter.span(),
                    format!(
                        "a counter needs a numeric type, got \"{}\"",
                        value_type.as_str()
                    ),
                );
            }
        }
        if let Some(rollover) = &raw.rollover {
            if !point.counter {
                self.error(
                    &rollover.span(),
                    "rollover is only for counters (counter = true)",
                );
            } else if let Some((value_type, _)) = &value_type {
                let max = value_type
                    .raw_max()
                    .map_or(i64::MAX, |max| i64::try_from(max).unwrap_or(i64::MAX));
                if let Some(rollover) = self.integer::<u64>(
                    rollover,
                    "rollover",
                    1,
                    max,
                    &format!(" for {}", value_type.as_str()),
                ) {
                    point.rollover = Some(rollover);
                }
            }
        }
    }

    // ----- equipment ---------------------------------------------------------

    fn equipment(
        &mut self,
        raw: &[S<RawEquipment>],
        symbols: &BTreeMap<String, DeviceSymbols>,
    ) -> Vec<Equipment> {
        let mut names = BTreeMap::new();
        let mut all = Vec::new();
        for machine in raw {
            let table = machine.span();
            let raw = machine.get_ref();
            let mut equipment = Equipment {
                name: String::new(),
                device: None,
                process: String::new(),
                key_process: false,
                numerically_controlled: false,
                running: None,
                cnc_mode: None,
            };
            if let Some(name) = self.require(raw.name.as_ref(), &table, "name", "[[equipment]]") {
                self.name(name, "equipment name", Charset::Lower);
                self.unique(&mut names, name, "equipment", "");
                equipment.name.clone_from(name.get_ref());
            }
            let mut device_symbols = None;
            if let Some(device) = &raw.device {
                device_symbols = symbols.get(device.get_ref());
                if device_symbols.is_none() {
                    let meant = closest_name(device.get_ref(), symbols.keys().map(String::as_str));
                    self.error(
                        &device.span(),
                        format!(
                            "unknown device \"{}\"{}",
                            device.get_ref(),
                            did_you_mean(meant)
                        ),
                    );
                }
                equipment.device = Some(device.get_ref().clone());
            }
            if let Some(process) =
                self.require(raw.process.as_ref(), &table, "process", "[[equipment]]")
                && self.non_empty(process, "process")
            {
                equipment.process.clone_from(process.get_ref());
            }
            if let Some(flag) = self.require(
                raw.key_process.as_ref(),
                &table,
                "key_process",
                "[[equipment]]",
            ) {
                equipment.key_process = *flag.get_ref();
            }
            if let Some(flag) = self.require(
                raw.numerically_controlled.as_ref(),
                &table,
                "numerically_controlled",
                "[[equipment]]",
            ) {
                equipment.numerically_controlled = *flag.get_ref();
            }
            let device_named = raw.device.is_some();
            equipment.running = raw.running.as_ref().and_then(|signal| {
                self.signal(
                    signal,
                    "running",
                    device_named,
                    device_symbols,
                    raw.device.as_ref(),
                )
            });
            equipment.cnc_mode = raw.cnc_mode.as_ref().and_then(|signal| {
                self.signal(
                    signal,
                    "cnc_mode",
                    device_named,
                    device_symbols,
                    raw.device.as_ref(),
                )
            });
            all.push(equipment);
        }
        all
    }

    fn signal(
        &mut self,
        raw: &S<RawSignal>,
        key: &str,
        device_named: bool,
        symbols: Option<&DeviceSymbols>,
        device: Option<&S<String>>,
    ) -> Option<Signal> {
        let span = raw.span();
        let raw = raw.get_ref();
        let mut values = Vec::new();
        if let Some(list) = &raw.values {
            if list.get_ref().is_empty() {
                self.error(
                    &list.span(),
                    format!("{key}.values must not be empty (leave it out for a bool point)"),
                );
            }
            for value in list.get_ref() {
                if let Some(number) = self.finite(value, &format!("{key}.values")) {
                    values.push(number);
                }
            }
        }
        let point = self.require(raw.point.as_ref(), &span, "point", key)?;
        if !device_named {
            self.error(
                &span,
                format!("{key} reads a point, so the equipment needs a device"),
            );
            return None;
        }
        let device_name = device.map_or("", |device| device.get_ref().as_str());
        // An unknown device was reported already.
        let symbols = symbols?;
        match symbols.points.get(point.get_ref()) {
            None => {
                let meant =
                    closest_name(point.get_ref(), symbols.points.keys().map(String::as_str));
                self.error(
                    &point.span(),
                    format!(
                        "device \"{device_name}\" has no point \"{}\"{}",
                        point.get_ref(),
                        did_you_mean(meant)
                    ),
                );
                None
            }
            Some(Some(found)) if raw.values.is_none() && found.value_type != ValueType::Bool => {
                self.error(
                    &point.span(),
                    format!(
                        "point \"{}\" is {}, so {key} needs values = [...] (only a bool point may go without)",
                        point.get_ref(),
                        found.value_type.as_str()
                    ),
                );
                None
            }
            Some(_) => Some(Signal {
                point: point.get_ref().clone(),
                values,
            }),
        }
    }

    // ----- KPIs --------------------------------------------------------------

    fn kpis(
        &mut self,
        raw: &S<RawKpis>,
        symbols: &BTreeMap<String, DeviceSymbols>,
        carriers: &BTreeMap<String, Carrier>,
        equipment: &[Equipment],
        agent_day_start: DayStart,
    ) -> Kpis {
        let raw = raw.get_ref();
        let mut kpis = Kpis::default();
        let mut names = BTreeMap::new();
        let processes: BTreeSet<&str> = equipment
            .iter()
            .map(|machine| machine.process.as_str())
            .collect();
        for kpi in &raw.cnc_coverage {
            let table = kpi.span();
            let raw = kpi.get_ref();
            let mut out = CncCoverageKpi {
                name: String::new(),
                window: WindowLength::Fixed(Duration::from_secs(900)),
                processes: Vec::new(),
                day_start: self.kpi_day_start(raw.day_start.as_ref(), agent_day_start),
                min_completeness: raw
                    .min_completeness
                    .as_ref()
                    .and_then(|value| self.min_completeness(value)),
            };
            if let Some(name) =
                self.require(raw.name.as_ref(), &table, "name", "[[kpi.cnc_coverage]]")
            {
                self.name(name, "KPI name", Charset::Lower);
                self.unique(&mut names, name, "cnc_coverage KPI", "");
                out.name.clone_from(name.get_ref());
            }
            if let Some(window) = self.require(
                raw.window.as_ref(),
                &table,
                "window",
                "[[kpi.cnc_coverage]]",
            ) {
                out.window = self.window(window);
            }
            for process in &raw.processes {
                if !processes.contains(process.get_ref().as_str()) {
                    let known: Vec<&str> = processes.iter().copied().collect();
                    self.error(
                        &process.span(),
                        format!(
                            "no equipment has process \"{}\" (processes: {})",
                            process.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
                out.processes.push(process.get_ref().clone());
            }
            kpis.cnc_coverage.push(out);
        }
        let mut names = BTreeMap::new();
        for kpi in &raw.energy_per_output {
            kpis.energy_per_output.push(self.energy_per_output(
                kpi,
                &mut names,
                symbols,
                carriers,
                agent_day_start,
            ));
        }
        let mut names = BTreeMap::new();
        for kpi in &raw.energy_consumption {
            kpis.energy_consumption.push(self.energy_consumption(
                kpi,
                &mut names,
                symbols,
                carriers,
                agent_day_start,
            ));
        }
        kpis
    }

    fn energy_per_output(
        &mut self,
        kpi: &S<RawEnergyPerOutput>,
        names: &mut BTreeMap<String, Span>,
        symbols: &BTreeMap<String, DeviceSymbols>,
        carriers: &BTreeMap<String, Carrier>,
        agent_day_start: DayStart,
    ) -> EnergyPerOutputKpi {
        const TABLE: &str = "[[kpi.energy_per_output]]";
        let table = kpi.span();
        let raw = kpi.get_ref();
        let mut out = EnergyPerOutputKpi {
            name: String::new(),
            window: WindowLength::Fixed(Duration::from_secs(3600)),
            energy: Vec::new(),
            output: Vec::new(),
            output_unit: String::new(),
            day_start: self.kpi_day_start(raw.day_start.as_ref(), agent_day_start),
            min_completeness: raw
                .min_completeness
                .as_ref()
                .and_then(|value| self.min_completeness(value)),
            limit: raw.limit.as_ref().and_then(|limit| self.quota_limit(limit)),
            baseline: raw
                .baseline
                .as_ref()
                .and_then(|baseline| self.baseline(baseline)),
        };
        if let Some(name) = self.require(raw.name.as_ref(), &table, "name", TABLE) {
            self.name(name, "KPI name", Charset::Lower);
            self.unique(names, name, "energy_per_output KPI", "");
            out.name.clone_from(name.get_ref());
        }
        if let Some(window) = self.require(raw.window.as_ref(), &table, "window", TABLE) {
            out.window = self.window(window);
        }
        let output_unit = self.require(raw.output_unit.as_ref(), &table, "output_unit", TABLE);
        if let Some(unit) = output_unit
            && self.non_empty(unit, "output_unit")
        {
            out.output_unit.clone_from(unit.get_ref());
        }
        if let Some(energy) = self.require(raw.energy.as_ref(), &table, "energy", TABLE) {
            out.energy = self.energy_inputs(energy, symbols, carriers);
        }
        if let Some(output) = raw.output.as_ref() {
            out.output = self.outputs(output, output_unit, symbols);
        } else {
            self.error(&table, format!("missing key `output` in {TABLE}"));
        }
        out
    }

    fn energy_consumption(
        &mut self,
        kpi: &S<RawEnergyConsumption>,
        names: &mut BTreeMap<String, Span>,
        symbols: &BTreeMap<String, DeviceSymbols>,
        carriers: &BTreeMap<String, Carrier>,
        agent_day_start: DayStart,
    ) -> EnergyConsumptionKpi {
        const TABLE: &str = "[[kpi.energy_consumption]]";
        let table = kpi.span();
        let raw = kpi.get_ref();
        let mut out = EnergyConsumptionKpi {
            name: String::new(),
            window: WindowLength::Fixed(Duration::from_secs(900)),
            energy: Vec::new(),
            scope: None,
            day_start: self.kpi_day_start(raw.day_start.as_ref(), agent_day_start),
            min_completeness: raw
                .min_completeness
                .as_ref()
                .and_then(|value| self.min_completeness(value))
                .unwrap_or(DEFAULT_MIN_COMPLETENESS),
        };
        if let Some(name) = self.require(raw.name.as_ref(), &table, "name", TABLE) {
            self.name(name, "KPI name", Charset::Lower);
            self.unique(names, name, "energy_consumption KPI", "");
            out.name.clone_from(name.get_ref());
        }
        if let Some(window) = self.require(raw.window.as_ref(), &table, "window", TABLE) {
            out.window = self.window(window);
        }
        if let Some(scope) = &raw.scope
            && self.non_empty(scope, "scope")
        {
            out.scope = Some(scope.get_ref().clone());
        }
        if let Some(energy) = self.require(raw.energy.as_ref(), &table, "energy", TABLE) {
            out.energy = self.energy_inputs(energy, symbols, carriers);
        }
        out
    }

    /// A KPI's `day_start`, else the agent's.
    fn kpi_day_start(&mut self, value: Option<&S<String>>, agent: DayStart) -> DayStart {
        let Some(value) = value else { return agent };
        parse_day_start(value.get_ref()).unwrap_or_else(|| {
            self.error(
                &value.span(),
                format!(
                    "day_start must be a time \"HH:MM\" from \"00:00\" to \"23:59\", got \"{}\"",
                    value.get_ref()
                ),
            );
            agent
        })
    }

    /// `limit = { value, period }`: a positive kgce figure over windows of a day or longer.
    fn quota_limit(&mut self, raw: &S<RawLimit>) -> Option<QuotaLimit> {
        let span = raw.span();
        let raw = raw.get_ref();
        let value = self
            .require(raw.value.as_ref(), &span, "value", "limit")
            .and_then(|value| self.positive(value, "limit.value"));
        let period = self
            .require(raw.period.as_ref(), &span, "period", "limit")
            .map(|period| (period, self.window(period)));
        let period = match period {
            Some((text, WindowLength::Fixed(length))) if !length.is_zero() && length < DAY => {
                self.error(
                    &text.span(),
                    format!(
                        "limit.period must be a day or longer (\"1d\" or \"1mo\"), got \"{}\"",
                        text.get_ref()
                    ),
                );
                None
            }
            Some((_, WindowLength::Fixed(length))) if length.is_zero() => None,
            Some((_, period)) => Some(period),
            None => None,
        };
        Some(QuotaLimit {
            value: value?,
            period: period?,
        })
    }

    /// `baseline = { value, year }`: a positive figure.
    fn baseline(&mut self, raw: &S<RawBaseline>) -> Option<Baseline> {
        let span = raw.span();
        let raw = raw.get_ref();
        let year = raw
            .year
            .as_ref()
            .and_then(|year| self.integer::<u16>(year, "baseline.year", 1900, 2200, ""));
        let value = self
            .require(raw.value.as_ref(), &span, "value", "baseline")
            .and_then(|value| self.positive(value, "baseline.value"))?;
        Some(Baseline { value, year })
    }

    fn positive(&mut self, value: &S<f64>, key: &str) -> Option<f64> {
        let number = *value.get_ref();
        if number.is_finite() && number > 0.0 {
            Some(number)
        } else {
            self.error(
                &value.span(),
                format!("{key} must be a number > 0, got {number}"),
            );
            None
        }
    }

    /// `min_completeness`: a share in `0..=1`.
    fn min_completeness(&mut self, value: &S<f64>) -> Option<f64> {
        let number = *value.get_ref();
        if (0.0..=1.0).contains(&number) {
            Some(number)
        } else {
            self.error(
                &value.span(),
                format!("min_completeness must be a share from 0 to 1 (0.9 = 90 %), got {number}"),
            );
            None
        }
    }

    /// The `energy` list of an energy KPI: counters with their carriers.
    fn energy_inputs(
        &mut self,
        energy: &S<Vec<S<RawEnergyInput>>>,
        symbols: &BTreeMap<String, DeviceSymbols>,
        carriers: &BTreeMap<String, Carrier>,
    ) -> Vec<EnergyInput> {
        let mut inputs = Vec::new();
        let mut seen = BTreeMap::new();
        if energy.get_ref().is_empty() {
            self.error(
                &energy.span(),
                "energy must list at least one { point = \"DEVICE.POINT\", carrier = \"...\" }",
            );
        }
        for input in energy.get_ref() {
            let span = input.span();
            let input = input.get_ref();
            let point = self.require(input.point.as_ref(), &span, "point", "energy");
            let carrier_name = self.require(input.carrier.as_ref(), &span, "carrier", "energy");
            let carrier = carrier_name.and_then(|name| {
                let found = carriers.get(name.get_ref());
                if found.is_none() {
                    let known: Vec<&str> = carriers.keys().map(String::as_str).collect();
                    let message = match closest_name(name.get_ref(), known.iter().copied()) {
                        Some(meant) => format!(
                            "unknown carrier \"{}\"; did you mean \"{meant}\"?",
                            name.get_ref()
                        ),
                        None => format!(
                            "unknown carrier \"{}\"; known carriers: {}",
                            name.get_ref(),
                            known.join(", ")
                        ),
                    };
                    self.error(&name.span(), message);
                }
                found
            });
            let Some(point) = point else { continue };
            if !self.unique(&mut seen, point, "energy point", " in this KPI") {
                continue;
            }
            let Some((reference, resolved)) = self.point_ref(point, symbols) else {
                continue;
            };
            let mut to_carrier_unit = 1.0;
            if let (Some(resolved), Some(carrier), Some(carrier_name)) =
                (resolved, carrier, carrier_name)
            {
                self.require_counter(point, resolved);
                to_carrier_unit =
                    self.carrier_factor(point, resolved, carrier, carrier_name.get_ref());
            }
            inputs.push(EnergyInput {
                point: reference,
                carrier: carrier_name
                    .map(|name| name.get_ref().clone())
                    .unwrap_or_default(),
                to_carrier_unit,
            });
        }
        inputs
    }

    /// The `output` list of an energy-per-output KPI.
    fn outputs(
        &mut self,
        output: &S<Vec<S<RawOutput>>>,
        output_unit: Option<&S<String>>,
        symbols: &BTreeMap<String, DeviceSymbols>,
    ) -> Vec<PointRef> {
        let mut seen = BTreeMap::new();
        let mut references = Vec::new();
        if output.get_ref().is_empty() {
            self.error(
                &output.span(),
                "output must list at least one { point = \"DEVICE.POINT\" }",
            );
        }
        for item in output.get_ref() {
            let Some(point) = self.require(
                item.get_ref().point.as_ref(),
                &item.span(),
                "point",
                "output",
            ) else {
                continue;
            };
            if !self.unique(&mut seen, point, "output point", " in this KPI") {
                continue;
            }
            let Some((reference, resolved)) = self.point_ref(point, symbols) else {
                continue;
            };
            if let Some(resolved) = resolved {
                self.require_counter(point, resolved);
                if let (Some(unit), Some(output_unit)) = (&resolved.unit, output_unit)
                    && unit != output_unit.get_ref()
                {
                    self.error(
                        &point.span(),
                        format!(
                            "point \"{}\" counts \"{unit}\" but output_unit is \"{}\"",
                            point.get_ref(),
                            output_unit.get_ref()
                        ),
                    );
                }
            }
            references.push(reference);
        }
        references
    }

    /// The factor from an energy point's unit to its carrier's unit (1 after an error).
    fn carrier_factor(
        &mut self,
        reference: &S<String>,
        point: &Point,
        carrier: &Carrier,
        carrier_name: &str,
    ) -> f64 {
        let Some(unit) = &point.unit else {
            self.error(
                &reference.span(),
                format!(
                    "point \"{}\" has no unit; give it unit = \"{}\" (the unit of carrier \"{carrier_name}\") or one that converts to it",
                    reference.get_ref(),
                    carrier.unit,
                ),
            );
            return 1.0;
        };
        if let Some(factor) = units::conversion_factor(unit, &carrier.unit) {
            return factor;
        }
        let convertible = units::convertible_units(&carrier.unit);
        let expected = if convertible.is_empty() {
            format!("\"{}\"", carrier.unit)
        } else {
            convertible.join(", ")
        };
        self.error(
            &reference.span(),
            format!(
                "point \"{}\" is in \"{unit}\", which does not convert to \"{}\" of carrier \"{carrier_name}\"; expected {expected}",
                reference.get_ref(),
                carrier.unit,
            ),
        );
        1.0
    }

    fn require_counter(&mut self, reference: &S<String>, point: &Point) {
        if !point.counter {
            self.error(
                &reference.span(),
                format!(
                    "point \"{}\" is not a counter; KPIs take the consumption of cumulative counters (counter = true)",
                    reference.get_ref()
                ),
            );
        }
    }

    /// Resolve `DEVICE.POINT`; the point is `None` when it exists but is broken.
    fn point_ref<'s>(
        &mut self,
        reference: &S<String>,
        symbols: &'s BTreeMap<String, DeviceSymbols>,
    ) -> Option<(PointRef, Option<&'s Point>)> {
        let text = reference.get_ref();
        let Some((device, point)) = text.split_once('.') else {
            self.error(
                &reference.span(),
                format!("expected \"DEVICE.POINT\", got \"{text}\""),
            );
            return None;
        };
        let Some(device_symbols) = symbols.get(device) else {
            // The device it was meant to be, and the point there it was meant to be.
            let meant = closest_name(device, symbols.keys().map(String::as_str))
                .and_then(|meant| symbols.get_key_value(meant))
                .map(|(meant, meant_symbols)| {
                    let point = if meant_symbols.points.contains_key(point) {
                        Some(point)
                    } else {
                        closest_name(point, meant_symbols.points.keys().map(String::as_str))
                    };
                    (meant, point)
                });
            let hint = match meant {
                Some((meant, Some(meant_point))) => {
                    format!("; did you mean \"{meant}.{meant_point}\"?")
                }
                Some((meant, None)) => format!("; did you mean device \"{meant}\"?"),
                None => String::new(),
            };
            self.error(
                &reference.span(),
                format!("unknown device \"{device}\" in \"{text}\"{hint}"),
            );
            return None;
        };
        let Some(resolved) = device_symbols.points.get(point) else {
            let meant = closest_name(point, device_symbols.points.keys().map(String::as_str))
                .map(|meant| format!("{device}.{meant}"));
            self.error(
                &reference.span(),
                format!(
                    "device \"{device}\" has no point \"{point}\"{}",
                    did_you_mean(meant.as_deref())
                ),
            );
            return None;
        };
        Some((
            PointRef {
                device: device.to_owned(),
                point: point.to_owned(),
            },
            resolved.as_ref(),
        ))
    }

    /// A KPI window: whole seconds dividing a day, or `"1mo"` (a calendar month).
    fn window(&mut self, value: &S<String>) -> WindowLength {
        if value.get_ref().trim() == "1mo" {
            return WindowLength::Month;
        }
        if units::parse_duration(value.get_ref()).is_err() {
            self.error(
                &value.span(),
                format!(
                    "window must be a duration that divides a day (like \"15m\", \"1h\" or \"1d\") or a calendar month (\"1mo\"), got \"{}\"",
                    value.get_ref()
                ),
            );
            return WindowLength::Fixed(Duration::ZERO);
        }
        let window = self.duration(Some(value), "window", Duration::ZERO, false);
        if window.is_zero() {
            return WindowLength::Fixed(window);
        }
        let millis = window.as_millis();
        if window > DAY || millis % 1000 != 0 || DAY.as_millis() % millis != 0 {
            self.error(
                &value.span(),
                format!(
                    "window must divide a day evenly (like \"15m\", \"1h\" or \"1d\") or be a calendar month (\"1mo\"), got \"{}\"",
                    value.get_ref()
                ),
            );
        }
        WindowLength::Fixed(window)
    }
}

/// `; did you mean "MEANT"?` after a message, when there is a near miss.
fn did_you_mean(meant: Option<&str>) -> String {
    meant.map_or_else(String::new, |meant| format!("; did you mean \"{meant}\"?"))
}

fn placeholder_agent() -> Agent {
    Agent {
        id: String::new(),
        site: String::new(),
        data_dir: PathBuf::new(),
        timezone_name: "UTC".to_owned(),
        timezone: jiff::tz::TimeZone::UTC,
        day_start: DayStart::default(),
    }
}

fn placeholder_mqtt() -> Mqtt {
    Mqtt {
        url: MqttUrl {
            tls: false,
            host: String::new(),
            port: 1883,
        },
        client_id: String::new(),
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        topic_prefix: "spindle".to_owned(),
        reconnect_max: Duration::from_secs(10),
        keep_alive: Duration::from_secs(30),
        dialect: Dialect::Spindle,
        token: None,
        device_name: DeviceNameTemplate::default(),
        max_packet: Dialect::Spindle.default_max_packet(),
    }
}

/// `[mqtt] dialect`.
const DIALECTS: [(&str, Dialect); 2] = [
    ("spindle", Dialect::Spindle),
    ("thingsboard", Dialect::ThingsBoard),
];

/// The smallest `max_packet` accepted (a status or a gap must fit).
const MIN_PACKET: usize = 1024;
/// MQTT's largest packet (the remaining length's limit).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// An upper bound of one telemetry publish of `device` in either dialect:
/// `name_len` is the longer of its names, `topic` its spindle topic's
/// length. Each character of a name or text takes at most 6 bytes escaped,
/// a number at most 24, an error word at most 16 (`exception:255`).
fn telemetry_bound(device: &Device, name_len: usize, topic: usize) -> usize {
    let envelope = 192 + topic.max(20) + 6 * name_len;
    device.points.iter().fold(envelope, |bound, point| {
        let value = match point.value_type {
            ValueType::String => 12 * usize::from(point.width()) + 2,
            _ => 24,
        };
        // `"name":value` and `"name_error":"word"`: a point is one or the other.
        bound + 6 * point.name.len() + 10 + value.max(6 * 6 + 16)
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// `"HH:MM"`, two digits each.
fn parse_day_start(text: &str) -> Option<DayStart> {
    let (hour, minute) = text.split_once(':')?;
    if hour.len() != 2
        || minute.len() != 2
        || !(hour.bytes().chain(minute.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let hour: u8 = hour.parse().ok()?;
    let minute: u8 = minute.parse().ok()?;
    (hour < 24 && minute < 60).then_some(DayStart { hour, minute })
}

/// `HOST`, `HOST:PORT` or `[V6]:PORT`; the port, when given, is 1–65535.
fn split_host_port(text: &str) -> Result<(&str, Option<u16>), ()> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(())?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or(())?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err(()),
            None => (text, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || "/?#@[]".contains(c))
    {
        return Err(());
    }
    let port = match port {
        None => None,
        Some(port) => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or(())?,
            )
        }
    };
    Ok((host, port))
}

fn parse_mqtt_url(url: &str) -> Result<MqttUrl, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(format!(
            "url must start with mqtt:// or mqtts://, got \"{url}\""
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_host_port(rest).map_err(|()| {
        format!("url must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] with no path, got \"{url}\"")
    })?;
    Ok(MqttUrl {
        tls,
        host: host.to_owned(),
        port: port.unwrap_or(if tls { 8883 } else { 1883 }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\ncé d\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 3), (2, 1));
        assert_eq!(position(text, 6), (2, 3));
        assert_eq!(position(text, 999), (3, 1));
    }

    #[test]
    fn mqtt_urls_default_their_port_by_scheme() {
        assert_eq!(
            parse_mqtt_url("mqtt://broker"),
            Ok(MqttUrl {
                tls: false,
                host: "broker".into(),
                port: 1883
            })
        );
        assert_eq!(
            parse_mqtt_url("mqtts://broker/"),
            Ok(MqttUrl {
                tls: true,
                host: "broker".into(),
                port: 8883
            })
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1884"),
            Ok(MqttUrl {
                tls: false,
                host: "::1".into(),
                port: 1884
            })
        );
        assert!(parse_mqtt_url("http://broker").is_err());
        assert!(parse_mqtt_url("mqtt://broker:0").is_err());
        assert!(parse_mqtt_url("mqtt://broker/x").is_err());
        assert!(parse_mqtt_url("mqtt://user@broker").is_err());
        assert!(parse_mqtt_url("mqtt://").is_err());
    }

    #[test]
    fn tcp_endpoints_need_a_port() {
        assert_eq!(split_host_port("10.0.0.5:502"), Ok(("10.0.0.5", Some(502))));
        assert_eq!(
            split_host_port("plc.local:502"),
            Ok(("plc.local", Some(502)))
        );
        assert_eq!(split_host_port("10.0.0.5"), Ok(("10.0.0.5", None)));
        assert!(split_host_port("10.0.0.5:").is_err());
        assert!(split_host_port(":502").is_err());
        assert!(split_host_port("::1:502").is_err());
        assert!(split_host_port("host:99999").is_err());
    }

    #[test]
    fn day_start_is_two_digit_hours_and_minutes() {
        assert_eq!(
            parse_day_start("08:00"),
            Some(DayStart { hour: 8, minute: 0 })
        );
        assert_eq!(
            parse_day_start("23:59"),
            Some(DayStart {
                hour: 23,
                minute: 59
            })
        );
        for bad in ["8:00", "24:00", "12:60", "12-00", "", "+1:00", "08:00:00"] {
            assert_eq!(parse_day_start(bad), None, "{bad}");
        }
    }
}
