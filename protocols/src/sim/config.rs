//! The `[device.sim]` table: what `spindle simulate` does with a device.
//!
//! spindle-config validates the device itself and hands its `[device.sim]`
//! table back unread (`ParseOptions { allow_sim: true }`); this module owns
//! that table's schema. [`sim_device`] checks it against the device's
//! points and returns a [`SimDeviceConfig`] — every point with its
//! [`Dynamics`] (points not named hold 0) and the [`Faults`] — or every
//! mistake found, each naming the device and the key (`sim.points.parts.
//! counter.rate`). [`locate`] finds a key's line and column in the file.
//!
//! Schema (durations are strings like `"40s"` or numbers of seconds):
//! ```toml
//! [device.sim]
//! seed = 7                            # seeds random walks and random faults (default 0)
//! listen = "127.0.0.1:5020"           # TCP devices: where to serve (default: the device's `tcp`)
//! points.mode = 1                     # a bare value: constant
//! points.program = { value = "O1234" }           # constant (also `constant = …`)
//! points.load = { ramp = { start = 0, rate = 2, min = 0, max = 80, at_limit = "bounce" } }
//! points.energy_import = { counter = { rate = 0.5, start = 0, wrap = 4294967295, reset_at = "300s" } }
//! points.run_state = { schedule = [[3, "40s"], [1, "20s"]] }
//! points.auto_mode = { schedule = { steps = [[true, "50s"], [false, "10s"]], reset_at = "120s" } }
//! points.voltage_a = { random_walk = { start = 230, step = 0.5, min = 220, max = 240, every = "1s" } }
//! faults = { timeout_probability = 0.05, late_reply = "2s", late_probability = 0.1,
//!            exception = { area = "holding", from = 100, to = 110, code = 2 },
//!            garbage_probability = 0.01 }
//! ```
//! Values are in published units; a counter's `wrap` is raw (like the
//! point's `rollover`, which is its default). `exception` may be a list of
//! such tables; `garbage = [bytes]`, `down = true` and `short_by = N` map
//! straight onto [`Faults`].

use std::fmt;
use std::time::Duration;

use spindle_config::model::{Area, Device, ValueType};
use toml::{Table, Value};

use super::device::Faults;
use super::dynamics::{
    AtLimit, Constant, Counter, Dynamics, Ramp, RandomWalk, Schedule, SimPoint, Step, point_seed,
};

/// What `spindle simulate` serves for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDeviceConfig {
    pub device: String,
    pub seed: u64,
    /// `HOST:PORT` to serve a TCP device on instead of its `tcp` address.
    pub listen: Option<String>,
    /// Every point of the device, in the device's order.
    pub points: Vec<SimPoint>,
    pub faults: Faults,
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Key(String),
    Index(usize),
}

/// A mistake in a `[device.sim]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfigError {
    pub device: String,
    /// From inside `sim` (empty: the table itself).
    pub path: Vec<KeyPart>,
    pub message: String,
    /// The mistake is the key itself (unknown), not its value.
    pub on_key: bool,
}

impl SimConfigError {
    /// The key as written: `sim.points.run_state.schedule[1]`.
    pub fn key(&self) -> String {
        let mut key = String::from("sim");
        for part in &self.path {
            match part {
                KeyPart::Key(name) => {
                    key.push('.');
                    key.push_str(name);
                }
                KeyPart::Index(index) => {
                    key.push('[');
                    key.push_str(&index.to_string());
                    key.push(']');
                }
            }
        }
        key
    }
}

impl fmt::Display for SimConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device {:?}: {}: {}",
            self.device,
            self.key(),
            self.message
        )
    }
}

impl std::error::Error for SimConfigError {}

/// Check `table` (the device's `[device.sim]`, if any) against `device`.
pub fn sim_device(
    device: &Device,
    table: Option<&Table>,
) -> Result<SimDeviceConfig, Vec<SimConfigError>> {
    let empty = Table::new();
    let table = table.unwrap_or(&empty);
    let mut checker = Checker {
        device: device.name.clone(),
        path: Vec::new(),
        errors: Vec::new(),
    };
    checker.unknown_keys(table, &["seed", "listen", "points", "faults"]);
    let seed = checker.at("seed", |c| {
        table.get("seed").map_or(0, |value| c.seed(value))
    });
    let listen = checker.at("listen", |c| {
        table
            .get("listen")
            .and_then(|value| c.listen(device, value))
    });
    let mut dynamics: Vec<Option<Dynamics>> = vec![None; device.points.len()];
    if let Some(value) = table.get("points") {
        checker.at("points", |c| {
            let Some(points) = c.table(value) else { return };
            for (name, value) in points {
                let found = device.points.iter().position(|point| point.name == *name);
                c.at(name, |c| match found {
                    None => c.key_error(format!(
                        "the device has no point {name:?}; its points: {}",
                        device
                            .points
                            .iter()
                            .map(|point| point.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Some(index) => {
                        let point = device.points.get(index);
                        let parsed = point.and_then(|point| c.dynamics(point, value));
                        if let Some(slot) = dynamics.get_mut(index) {
                            *slot = parsed;
                        }
                    }
                });
            }
        });
    }
    let faults = checker.at("faults", |c| {
        table
            .get("faults")
            .map_or_else(Faults::default, |value| c.faults(value))
    });
    if !checker.errors.is_empty() {
        return Err(checker.errors);
    }
    let points = device
        .points
        .iter()
        .zip(dynamics)
        .map(|(point, dynamics)| SimPoint {
            point: point.clone(),
            dynamics: dynamics.unwrap_or_else(|| {
                Dynamics::Constant(if point.value_type == ValueType::String {
                    Constant::Text(String::new())
                } else {
                    Constant::Number(0.0)
                })
            }),
            seed: point_seed(seed, &point.name),
        })
        .collect();
    Ok(SimDeviceConfig {
        device: device.name.clone(),
        seed,
        listen,
        points,
        faults: Faults { seed, ..faults },
    })
}

/// Walks a sim table, collecting errors at key paths.
struct Checker {
    device: String,
    path: Vec<KeyPart>,
    errors: Vec<SimConfigError>,
}

impl Checker {
    fn error(&mut self, message: impl Into<String>) {
        self.errors.push(SimConfigError {
            device: self.device.clone(),
            path: self.path.clone(),
            message: message.into(),
            on_key: false,
        });
    }

    /// An error about the key at the end of the path, not its value.
    fn key_error(&mut self, message: impl Into<String>) {
        self.error(message);
        if let Some(error) = self.errors.last_mut() {
            error.on_key = true;
        }
    }

    fn at<T>(&mut self, key: &str, check: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(KeyPart::Key(key.to_owned()));
        let result = check(self);
        self.path.pop();
        result
    }

    fn at_index<T>(&mut self, index: usize, check: impl FnOnce(&mut Self) -> T) -> T {
        self.path.push(KeyPart::Index(index));
        let result = check(self);
        self.path.pop();
        result
    }

    fn unknown_keys(&mut self, table: &Table, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let expected = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.at(key, |c| {
                    c.key_error(format!("unknown key, expected one of {expected}"));
                });
            }
        }
    }

    fn table<'v>(&mut self, value: &'v Value) -> Option<&'v Table> {
        if let Value::Table(table) = value {
            Some(table)
        } else {
            self.error(format!("expected a table, got {}", value.type_str()));
            None
        }
    }

    fn number(&mut self, value: &Value) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // configuration numbers
        let number = match value {
            Value::Integer(integer) => Some(*integer as f64),
            Value::Float(float) if float.is_finite() => Some(*float),
            _ => None,
        };
        if number.is_none() {
            self.error(format!(
                "expected a finite number, got {}",
                value.type_str()
            ));
        }
        number
    }

    /// A number at `key` of `table`, or `default` when absent.
    fn number_at(&mut self, table: &Table, key: &str, default: Option<f64>) -> Option<f64> {
        if let Some(value) = table.get(key) {
            return self.at(key, |c| c.number(value));
        }
        if default.is_none() {
            self.error(format!("`{key}` is required"));
        }
        default
    }

    fn probability(&mut self, table: &Table, key: &str, default: f64) -> f64 {
        let value = self.number_at(table, key, Some(default)).unwrap_or(default);
        if (0.0..=1.0).contains(&value) {
            value
        } else {
            self.at(key, |c| {
                c.error(format!("a probability is 0 to 1, got {value}"));
            });
            default
        }
    }

    fn duration(&mut self, value: &Value) -> Option<Duration> {
        match value {
            Value::String(text) => match spindle_config::units::parse_duration(text) {
                Ok(duration) => Some(duration),
                Err(message) => {
                    self.error(message);
                    None
                }
            },
            Value::Integer(_) | Value::Float(_) => {
                let seconds = self.number(value)?;
                let duration = Duration::try_from_secs_f64(seconds).ok();
                if duration.is_none() {
                    self.error(format!("expected seconds ≥ 0, got {seconds}"));
                }
                duration
            }
            other => {
                self.error(format!(
                    "expected a duration like \"40s\" or seconds, got {}",
                    other.type_str()
                ));
                None
            }
        }
    }

    fn duration_at(&mut self, table: &Table, key: &str) -> Option<Duration> {
        let value = table.get(key)?;
        self.at(key, |c| c.duration(value))
    }

    fn seed(&mut self, value: &Value) -> u64 {
        match value {
            Value::Integer(seed) => u64::from_ne_bytes(seed.to_ne_bytes()),
            other => {
                self.error(format!("expected an integer, got {}", other.type_str()));
                0
            }
        }
    }

    fn listen(&mut self, device: &Device, value: &Value) -> Option<String> {
        if matches!(device.link, spindle_config::model::DeviceLink::Serial(_)) {
            self.error(
                "only a TCP device listens; a serial device is served on its bus's pseudo-terminal",
            );
            return None;
        }
        let Value::String(text) = value else {
            self.error(format!("expected \"HOST:PORT\", got {}", value.type_str()));
            return None;
        };
        let port = text.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
        if let Some(Ok(_)) = port {
            Some(text.clone())
        } else {
            self.error(format!("expected \"HOST:PORT\", got {text:?}"));
            None
        }
    }

    fn dynamics(
        &mut self,
        point: &spindle_config::model::Point,
        value: &Value,
    ) -> Option<Dynamics> {
        let (kind, body) = match value {
            Value::Table(table) => {
                let mut keys = table.iter();
                let (Some((kind, body)), None) = (keys.next(), keys.next()) else {
                    self.error(
                        "expected one of `value`, `constant`, `ramp`, `counter`, `schedule`, `random_walk`",
                    );
                    return None;
                };
                (kind.as_str(), body)
            }
            bare => ("value", bare),
        };
        let is_text = point.value_type == ValueType::String;
        let is_bool = point.value_type == ValueType::Bool;
        let fits = match kind {
            "value" | "constant" => true,
            "schedule" => !is_text,
            "ramp" | "counter" | "random_walk" => !is_text && !is_bool,
            _ => {
                self.at(kind, |c| {
                    c.error("unknown dynamics, expected one of `value`, `constant`, `ramp`, `counter`, `schedule`, `random_walk`");
                });
                return None;
            }
        };
        if !fits {
            self.at(kind, |c| {
                c.error(format!(
                    "a {} point cannot take `{kind}`",
                    point.value_type.as_str()
                ));
            });
            return None;
        }
        self.at(kind, |c| match kind {
            "value" | "constant" => c.constant(point, body).map(Dynamics::Constant),
            "ramp" => c.ramp(body).map(Dynamics::Ramp),
            "counter" => c.counter(point, body).map(Dynamics::Counter),
            "schedule" => c.schedule(body).map(Dynamics::Schedule),
            _ => c.random_walk(body).map(Dynamics::RandomWalk),
        })
    }

    fn constant(
        &mut self,
        point: &spindle_config::model::Point,
        value: &Value,
    ) -> Option<Constant> {
        match (point.value_type, value) {
            (ValueType::String, Value::String(text)) => {
                let room = usize::from(point.width()) * 2;
                if text.len() > room {
                    self.error(format!("the text needs more than {room} bytes"));
                    return None;
                }
                Some(Constant::Text(text.clone()))
            }
            (ValueType::String, other) => {
                self.error(format!(
                    "a string point takes text, got {}",
                    other.type_str()
                ));
                None
            }
            (_, Value::Boolean(value)) => Some(Constant::Bool(*value)),
            (_, value) => self.number(value).map(Constant::Number),
        }
    }

    fn ramp(&mut self, value: &Value) -> Option<Ramp> {
        let table = self.table(value)?;
        self.unknown_keys(table, &["start", "rate", "min", "max", "at_limit"]);
        let rate = self.number_at(table, "rate", None);
        let min = table
            .get("min")
            .and_then(|v| self.at("min", |c| c.number(v)));
        let max = table
            .get("max")
            .and_then(|v| self.at("max", |c| c.number(v)));
        let start = self.number_at(table, "start", Some(min.unwrap_or(0.0)));
        let at_limit = match table.get("at_limit") {
            None => AtLimit::Bounce,
            Some(value) => self.at("at_limit", |c| match value.as_str() {
                Some("bounce") => AtLimit::Bounce,
                Some("wrap") => AtLimit::Wrap,
                Some("hold") => AtLimit::Hold,
                _ => {
                    c.error("expected \"bounce\", \"wrap\" or \"hold\"");
                    AtLimit::Bounce
                }
            }),
        };
        if let (Some(min), Some(max)) = (min, max) {
            if min >= max {
                self.error(format!("`min` ({min}) must be below `max` ({max})"));
                return None;
            }
        } else if at_limit == AtLimit::Wrap {
            self.error("`at_limit = \"wrap\"` needs both `min` and `max`");
            return None;
        }
        Some(Ramp {
            start: start?,
            rate: rate?,
            min,
            max,
            at_limit: if min.is_some() && max.is_some() {
                at_limit
            } else {
                AtLimit::Hold
            },
        })
    }

    fn counter(&mut self, point: &spindle_config::model::Point, value: &Value) -> Option<Counter> {
        let table = self.table(value)?;
        self.unknown_keys(table, &["rate", "start", "wrap", "reset_at"]);
        let rate = self.number_at(table, "rate", None);
        if let Some(rate) = rate.filter(|rate| *rate < 0.0) {
            self.at("rate", |c| {
                c.error(format!("a counter counts up: rate ≥ 0, got {rate}"));
            });
        }
        let start = self.number_at(table, "start", Some(0.0));
        let wrap = match table.get("wrap") {
            None => point.rollover,
            Some(value) => self.at("wrap", |c| match value {
                Value::Integer(wrap) if *wrap > 0 => {
                    let wrap = u64::try_from(*wrap).ok()?;
                    match point.value_type.raw_max() {
                        Some(max) if wrap > max => {
                            c.error(format!(
                                "wrap {wrap} is above the {} maximum {max}",
                                point.value_type.as_str()
                            ));
                            None
                        }
                        _ => Some(wrap),
                    }
                }
                _ => {
                    c.error("expected a raw value above 0 (like the point's `rollover`)");
                    None
                }
            }),
        };
        let reset_at = self.duration_at(table, "reset_at");
        Some(Counter {
            rate: rate.filter(|rate| *rate >= 0.0)?,
            start: start?,
            wrap,
            reset_at,
        })
    }

    fn schedule(&mut self, value: &Value) -> Option<Schedule> {
        let (steps_value, reset_at) = match value {
            Value::Array(_) => (value, None),
            Value::Table(table) => {
                self.unknown_keys(table, &["steps", "reset_at"]);
                let reset_at = self.duration_at(table, "reset_at");
                let Some(steps) = table.get("steps") else {
                    self.error("`steps` is required");
                    return None;
                };
                (steps, reset_at)
            }
            other => {
                self.error(format!(
                    "expected steps [[value, \"duration\"], …], got {}",
                    other.type_str()
                ));
                return None;
            }
        };
        let steps = if let Value::Table(_) = value {
            self.at("steps", |c| c.steps(steps_value))
        } else {
            self.steps(steps_value)
        }?;
        Some(Schedule { steps, reset_at })
    }

    fn steps(&mut self, value: &Value) -> Option<Vec<Step>> {
        let Value::Array(items) = value else {
            self.error(format!(
                "expected steps [[value, \"duration\"], …], got {}",
                value.type_str()
            ));
            return None;
        };
        let mut steps = Vec::new();
        let mut complete = true;
        for (index, item) in items.iter().enumerate() {
            let step = self.at_index(index, |c| {
                let Some([value, duration]) = item.as_array().map(Vec::as_slice) else {
                    c.error("expected a step [value, \"duration\"]");
                    return None;
                };
                let value = match value {
                    Value::Boolean(flag) => Some(f64::from(u8::from(*flag))),
                    other => c.at_index(0, |c| c.number(other)),
                };
                let duration = c.at_index(1, |c| c.duration(duration));
                Some(Step {
                    value: value?,
                    duration: duration?,
                })
            });
            match step {
                Some(step) => steps.push(step),
                None => complete = false,
            }
        }
        if !complete {
            return None;
        }
        if steps.iter().all(|step| step.duration.is_zero()) {
            self.error("a schedule needs at least one step with a duration above 0");
            return None;
        }
        Some(steps)
    }

    fn random_walk(&mut self, value: &Value) -> Option<RandomWalk> {
        let table = self.table(value)?;
        self.unknown_keys(table, &["start", "step", "min", "max", "every"]);
        let step = self.number_at(table, "step", None);
        let min = self.number_at(table, "min", None);
        let max = self.number_at(table, "max", None);
        let (min, max) = (min?, max?);
        if min >= max {
            self.error(format!("`min` ({min}) must be below `max` ({max})"));
            return None;
        }
        let start = self.number_at(table, "start", Some(f64::midpoint(min, max)))?;
        if !(min..=max).contains(&start) {
            self.at("start", |c| {
                c.error(format!("`start` ({start}) must be within {min} to {max}"));
            });
            return None;
        }
        let step = step?;
        if step <= 0.0 {
            self.at("step", |c| {
                c.error(format!("`step` must be above 0, got {step}"));
            });
            return None;
        }
        let every = self
            .duration_at(table, "every")
            .unwrap_or(Duration::from_secs(1));
        if every.is_zero() {
            self.at("every", |c| c.error("`every` must be above 0"));
            return None;
        }
        Some(RandomWalk {
            start,
            step,
            min,
            max,
            every,
        })
    }

    fn faults(&mut self, value: &Value) -> Faults {
        let mut faults = Faults::default();
        let Some(table) = self.table(value) else {
            return faults;
        };
        self.unknown_keys(
            table,
            &[
                "timeout_probability",
                "late_reply",
                "late_probability",
                "exception",
                "garbage_probability",
                "garbage",
                "down",
                "short_by",
            ],
        );
        faults.timeout_probability = self.probability(table, "timeout_probability", 0.0);
        faults.garbage_probability = self.probability(table, "garbage_probability", 0.0);
        if let Some(delay) = self.duration_at(table, "late_reply") {
            faults.late_delay = delay;
            faults.late_probability = self.probability(table, "late_probability", 1.0);
        } else if table.contains_key("late_probability") {
            self.at("late_probability", |c| {
                c.key_error("`late_probability` needs `late_reply` (how late)");
            });
        }
        if let Some(value) = table.get("exception") {
            faults.exceptions = self.at("exception", |c| match value {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(index, item)| c.at_index(index, |c| c.exception(item)))
                    .collect(),
                single => c.exception(single).into_iter().collect(),
            });
        }
        if let Some(value) = table.get("garbage") {
            faults.garbage = self.at("garbage", |c| {
                let bytes: Option<Vec<u8>> = value.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|item| item.as_integer().and_then(|b| u8::try_from(b).ok()))
                        .collect()
                });
                match bytes {
                    Some(bytes) if !bytes.is_empty() => Some(bytes),
                    _ => {
                        c.error("expected a list of bytes, e.g. [0x01, 0xFF]");
                        None
                    }
                }
            });
        }
        if let Some(value) = table.get("down") {
            faults.down = self.at("down", |c| {
                value.as_bool().unwrap_or_else(|| {
                    c.error("expected true or false");
                    false
                })
            });
        }
        if let Some(value) = table.get("short_by") {
            faults.short_by = self.at("short_by", |c| {
                value
                    .as_integer()
                    .and_then(|n| u16::try_from(n).ok())
                    .unwrap_or_else(|| {
                        c.error("expected a register count 0 to 65535");
                        0
                    })
            });
        }
        faults
    }

    fn exception(&mut self, value: &Value) -> Option<(Area, std::ops::RangeInclusive<u16>, u8)> {
        let table = self.table(value)?;
        self.unknown_keys(table, &["area", "from", "to", "code"]);
        let area = self.at("area", |c| {
            match table.get("area").and_then(Value::as_str) {
                Some("holding") => Some(Area::Holding),
                Some("input") => Some(Area::Input),
                Some("coil") => Some(Area::Coil),
                Some("discrete") => Some(Area::Discrete),
                _ => {
                    c.error("expected \"holding\", \"input\", \"coil\" or \"discrete\"");
                    None
                }
            }
        });
        let address = |c: &mut Self, key: &str, default: Option<u16>| match table.get(key) {
            None if default.is_some() => default,
            Some(Value::Integer(n)) if u16::try_from(*n).is_ok() => u16::try_from(*n).ok(),
            _ => {
                c.at(key, |c| c.error("expected an address 0 to 65535"));
                None
            }
        };
        let from = address(self, "from", None);
        let to = address(self, "to", from);
        let code = match table.get("code") {
            None => Some(2),
            Some(Value::Integer(n)) if (1..=255).contains(n) => u8::try_from(*n).ok(),
            Some(_) => {
                self.at("code", |c| c.error("expected an exception code 1 to 255"));
                None
            }
        };
        let (area, from, to, code) = (area?, from?, to?, code?);
        if from > to {
            self.error(format!("`from` ({from}) is after `to` ({to})"));
            return None;
        }
        Some((area, from..=to, code))
    }
}

/// Line and column (1-based, column in characters) in the file `text` of
/// what `error` is about: the value at its path inside the device's
/// `[device.sim]` table (the key itself when `on_key`), or the deepest part
/// of the path that exists. `None` if the file does not parse or has no such
/// device.
pub fn locate(text: &str, error: &SimConfigError) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let devices = root.get_ref().get("device")?;
    let DeValue::Array(devices) = devices.get_ref() else {
        return None;
    };
    let entry = devices.iter().find(|entry| {
        entry
            .get_ref()
            .get("name")
            .and_then(|name| name.get_ref().as_str())
            == Some(error.device.as_str())
    })?;
    let mut current = entry.get_ref().get("sim")?;
    let mut span = current.span();
    for (index, part) in error.path.iter().enumerate() {
        let last = index + 1 == error.path.len();
        if let (true, true, KeyPart::Key(key), DeValue::Table(table)) =
            (last, error.on_key, part, current.get_ref())
        {
            if let Some((found, _)) = table.iter().find(|(found, _)| found.get_ref() == key) {
                span = found.span();
                break;
            }
        }
        let next = match part {
            KeyPart::Key(key) => current.get_ref().get(key.as_str()),
            KeyPart::Index(index) => current.get_ref().get(*index),
        };
        match next {
            Some(next) => {
                current = next;
                span = next.span();
            }
            None => break,
        }
    }
    let before = text.get(..span.start)?;
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use spindle_config::ParseOptions;

    use super::*;
    use crate::modbus::decode::RawValue;

    const BASE: &str = r#"
[agent]
id = "gw"
site = "s"
data_dir = "/tmp/spindle-sim-test"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "cnc"
tcp = "127.0.0.1:5020"
unit = 1

[[device.point]]
name = "parts"
area = "holding"
address = 100
type = "u32"
counter = true

[[device.point]]
name = "run_state"
area = "holding"
address = 10
type = "u16"

[[device.point]]
name = "program"
area = "holding"
address = 200
type = "string"
length = 4
"#;

    fn parse(sim: &str) -> (Device, Option<Table>, String) {
        let text = format!("{BASE}\n[device.sim]\n{sim}\n");
        let parsed = spindle_config::parse_with("t.toml", &text, ParseOptions { allow_sim: true })
            .unwrap_or_else(|errors| panic!("{errors}"));
        let device = parsed.config.devices[0].clone();
        let table = parsed.sim.get("cnc").cloned();
        (device, table, text)
    }

    fn errors(sim: &str) -> Vec<String> {
        let (device, table, _) = parse(sim);
        sim_device(&device, table.as_ref())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_example_table_gives_dynamics_and_faults() {
        let (device, table, _) = parse(
            r#"seed = 7
listen = "127.0.0.1:0"
points.parts = { counter = { rate = 0.5, wrap = 4294967295, reset_at = "300s" } }
points.run_state = { schedule = [[3, "40s"], [1, 20]] }
points.program = "O1234"
faults = { timeout_probability = 0.05, late_reply = "2s", exception = { area = "holding", from = 100, to = 110 }, garbage_probability = 0.01 }
"#,
        );
        let sim = sim_device(&device, table.as_ref()).unwrap();
        assert_eq!(sim.seed, 7);
        assert_eq!(sim.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(
            sim.points[0].dynamics,
            Dynamics::Counter(Counter {
                rate: 0.5,
                start: 0.0,
                wrap: Some(4_294_967_295),
                reset_at: Some(Duration::from_secs(300)),
            })
        );
        assert_eq!(
            sim.points[1].raw_at(Duration::from_secs(45)),
            RawValue::Unsigned(1)
        );
        assert_eq!(
            sim.points[2].raw_at(Duration::ZERO),
            RawValue::Text("O1234".into())
        );
        assert_eq!(sim.faults.seed, 7);
        assert_eq!(sim.faults.late_delay, Duration::from_secs(2));
        assert!((sim.faults.late_probability - 1.0).abs() < f64::EPSILON);
        assert_eq!(sim.faults.exceptions, vec![(Area::Holding, 100..=110, 2)]);
    }

    #[test]
    fn points_without_dynamics_hold_zero() {
        let (device, _, _) = parse("seed = 1");
        let sim = sim_device(&device, None).unwrap();
        assert_eq!(sim.points.len(), 3);
        assert_eq!(
            sim.points[0].raw_at(Duration::from_secs(99)),
            RawValue::Unsigned(0)
        );
    }

    #[test]
    fn every_mistake_is_reported_with_the_device_and_the_key() {
        let errors = errors(
            r#"sede = 1
points.part = 3
points.parts = { counter = { rate = -1, wrap = 5000000000 } }
points.run_state = { schedule = [[3, "forty"], [1]] }
points.program = { ramp = { rate = 1 } }
faults = { timeout_probability = 2, exception = { area = "holding", from = 10, to = 5 } }
"#,
        );
        let expected = [
            "device \"cnc\": sim.sede: unknown key, expected one of `seed`, `listen`, `points`, `faults`",
            "device \"cnc\": sim.points.part: the device has no point \"part\"; its points: parts, run_state, program",
            "device \"cnc\": sim.points.parts.counter.rate: a counter counts up: rate ≥ 0, got -1",
            "device \"cnc\": sim.points.parts.counter.wrap: wrap 5000000000 is above the u32 maximum 4294967295",
            "device \"cnc\": sim.points.program.ramp: a string point cannot take `ramp`",
            "device \"cnc\": sim.faults.timeout_probability: a probability is 0 to 1, got 2",
            "device \"cnc\": sim.faults.exception: `from` (10) is after `to` (5)",
        ];
        for line in expected {
            assert!(
                errors.iter().any(|e| e == line),
                "missing {line:?} in {errors:#?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("device \"cnc\": sim.points.run_state.schedule[0][1]: ")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e
                == "device \"cnc\": sim.points.run_state.schedule[1]: expected a step [value, \"duration\"]"),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), 9, "{errors:#?}");
    }

    #[test]
    fn a_random_walk_needs_bounds_around_its_start() {
        let errors = errors(
            "points.run_state = { random_walk = { start = 50, step = 1, min = 0, max = 10 } }",
        );
        assert_eq!(
            errors,
            [
                "device \"cnc\": sim.points.run_state.random_walk.start: `start` (50) must be within 0 to 10"
            ]
        );
    }

    #[test]
    fn a_key_is_located_in_the_file() {
        let (device, table, text) = parse("seed = 1\npoints.parts = { counter = { rate = -1 } }\n");
        let error = sim_device(&device, table.as_ref()).unwrap_err().remove(0);
        let (line, column) = locate(&text, &error).unwrap();
        let line_text = text.lines().nth(line - 1).unwrap();
        assert!(line_text.starts_with("points.parts"), "{line_text}");
        assert_eq!(&line_text[column - 1..=column], "-1");
    }
}
