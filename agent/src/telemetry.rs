//! What one poll of one device becomes on MQTT: the `telemetry/{device}`
//! body (SPEC §5, `report = "always"` or `"on_change"` with deadband and
//! heartbeat) and the device's `availability` state.
//!
//! Pure: polls in, message bodies out. Invariants:
//! - `always`: every configured point is in `values` or in `errors`;
//! - `on_change`: a point is sent when it changed beyond its deadband since
//!   the value last *sent* (so slow drifts are not lost), and on every change
//!   into, out of, or between errors; a full snapshot (`"snapshot":true`)
//!   goes out first and then at least every `heartbeat`;
//! - availability: `offline` after three consecutive failed polls (no point
//!   got a value) or at once when the link is lost, `online` at the next
//!   poll that got a value; each change is reported once.

use std::fmt::Write as _;
use std::time::Duration;

use spindle_config::model::{Device, Report};
use spindle_protocols::modbus::PointValue;

/// One point's outcome in a poll: a value or an error word.
pub type PointOutcome = Result<PointValue, String>;

/// Builds `telemetry` bodies for one device.
#[derive(Debug)]
pub struct TelemetryEncoder {
    device: String,
    report: Report,
    heartbeat_ms: u64,
    deadbands: Vec<f64>,
    names: Vec<String>,
    last_sent: Vec<Option<PointOutcome>>,
    last_snapshot_ms: Option<u64>,
    /// Longest body so far, to allocate the next one once.
    body_capacity: usize,
}

impl TelemetryEncoder {
    pub fn new(device: &Device) -> Self {
        TelemetryEncoder {
            device: device.name.clone(),
            report: device.report,
            heartbeat_ms: u64::try_from(device.heartbeat.as_millis()).unwrap_or(u64::MAX),
            deadbands: device
                .points
                .iter()
                .map(|p| p.deadband.unwrap_or(0.0))
                .collect(),
            names: device.points.iter().map(|p| p.name.clone()).collect(),
            last_sent: vec![None; device.points.len()],
            last_snapshot_ms: None,
            body_capacity: 64,
        }
    }

    /// The body (members after `seq`/`ts`/`store`) for one poll whose
    /// outcomes are in point order, or `None` when `on_change` has nothing to say.
    pub fn encode(&mut self, outcomes: &[PointOutcome], now_ms: u64) -> Option<String> {
        let snapshot = match self.report {
            Report::Always => true,
            Report::OnChange => self
                .last_snapshot_ms
                .is_none_or(|last| now_ms.saturating_sub(last) >= self.heartbeat_ms),
        };
        // The body is built in place: `,"device":…,"values":{` then the
        // values, then the errors (gathered apart, usually none).
        let mut body = String::with_capacity(self.body_capacity);
        body.push_str(",\"device\":");
        push_json_string(&mut body, &self.device);
        body.push_str(",\"values\":{");
        let values_start = body.len();
        let mut errors = String::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            let Some(name) = self.names.get(i) else { break };
            let previous = self.last_sent.get(i).and_then(Option::as_ref);
            let deadband = self.deadbands.get(i).copied().unwrap_or(0.0);
            if !snapshot && !changed(previous, outcome, deadband) {
                continue;
            }
            match outcome {
                Ok(value) => {
                    push_member(&mut body, values_start, name);
                    push_value(&mut body, value);
                }
                Err(word) => {
                    push_member(&mut errors, 0, name);
                    push_json_string(&mut errors, word);
                }
            }
            // Only `on_change` compares with what was sent.
            if self.report == Report::OnChange
                && let Some(slot) = self.last_sent.get_mut(i)
            {
                *slot = Some(outcome.clone());
            }
        }
        if !snapshot && body.len() == values_start && errors.is_empty() {
            return None;
        }
        if snapshot {
            self.last_snapshot_ms = Some(now_ms);
        }
        body.push_str("},\"errors\":{");
        body.push_str(&errors);
        body.push('}');
        if snapshot && self.report == Report::OnChange {
            body.push_str(",\"snapshot\":true");
        }
        self.body_capacity = self.body_capacity.max(body.len());
        Some(body)
    }
}

// Without a deadband any change counts, so exact comparison is intended.
#[allow(clippy::float_cmp)]
fn changed(previous: Option<&PointOutcome>, now: &PointOutcome, deadband: f64) -> bool {
    match (previous, now) {
        (Some(Ok(PointValue::Number(a))), Ok(PointValue::Number(b))) => {
            if deadband > 0.0 {
                (a - b).abs() >= deadband
            } else {
                a != b
            }
        }
        (Some(Ok(a)), Ok(b)) => a != b,
        (Some(Err(a)), Err(b)) => a != b,
        _ => true,
    }
}

/// `"name":` of an object whose members start at `start` in `out`.
fn push_member(out: &mut String, start: usize, name: &str) {
    if out.len() > start {
        out.push(',');
    }
    push_json_string(out, name);
    out.push(':');
}

fn push_value(out: &mut String, value: &PointValue) {
    match value {
        PointValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PointValue::Number(n) => push_number(out, *n),
        PointValue::Text(t) => push_json_string(out, t),
    }
}

/// A finite number as JSON; a non-finite one (never produced by decoding) as `null`.
pub fn push_number(out: &mut String, n: f64) {
    if n.is_finite() {
        // Integral values print without a fraction; others in shortest
        // round-trip form (exponent for very large or small magnitudes).
        if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
            // Exact: an integral f64 below 2^53 is an i64 without loss, and
            // integer formatting is far cheaper than `{:.0}` on a float.
            #[allow(clippy::cast_possible_truncation)]
            let _ = write!(out, "{}", n as i64);
        } else {
            out.push_str(
                &serde_json::Number::from_f64(n)
                    .map_or_else(|| "null".to_owned(), |v| v.to_string()),
            );
        }
    } else {
        out.push_str("null");
    }
}

/// `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Point and device names rarely need escaping: copy them whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A device's reachability as published on `availability/{device}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Online,
    Offline,
}

/// Consecutive failed polls before a device counts as offline.
pub const FAILED_POLLS_FOR_OFFLINE: u32 = 3;

/// The availability rule of SPEC §5 for one device.
#[derive(Debug, Default)]
pub struct Availability {
    state: Option<Reachability>,
    failures: u32,
    last_error: String,
}

impl Availability {
    /// Feeds one poll: `got_value` = at least one point decoded;
    /// `link_lost` = the connection or port went away; `error` = the poll's
    /// last error word. Returns the new state and reason on a change.
    pub fn on_poll(
        &mut self,
        got_value: bool,
        link_lost: bool,
        error: Option<&str>,
    ) -> Option<(Reachability, String)> {
        if got_value {
            self.failures = 0;
            if self.state != Some(Reachability::Online) {
                self.state = Some(Reachability::Online);
                return Some((Reachability::Online, "poll_ok".to_owned()));
            }
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if let Some(e) = error {
            e.clone_into(&mut self.last_error);
        }
        let offline_now = link_lost || self.failures >= FAILED_POLLS_FOR_OFFLINE;
        if offline_now && self.state != Some(Reachability::Offline) {
            self.state = Some(Reachability::Offline);
            return Some((Reachability::Offline, self.last_error.clone()));
        }
        None
    }

    pub fn state(&self) -> Option<Reachability> {
        self.state
    }
}

/// The `availability` body for a state change.
pub fn availability_body(state: Reachability, reason: &str) -> String {
    let mut body = String::from(",\"state\":");
    body.push_str(match state {
        Reachability::Online => "\"online\"",
        Reachability::Offline => "\"offline\"",
    });
    body.push_str(",\"reason\":");
    push_json_string(&mut body, reason);
    body
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_config::model::{Area, DeviceLink, Point, ValueType, WordOrder};
    use std::collections::BTreeMap;
    use std::num::NonZeroU16;

    fn point(name: &str, deadband: Option<f64>) -> Point {
        Point {
            name: name.into(),
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
            deadband,
            rollover: None,
        }
    }

    fn device(report: Report) -> Device {
        Device {
            name: "m1".into(),
            link: DeviceLink::Tcp("127.0.0.1:502".into()),
            unit: 1,
            profile: None,
            profile_options: BTreeMap::new(),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 0,
            max_registers: NonZeroU16::new(125).unwrap(),
            max_gap: 8,
            report,
            heartbeat: Duration::from_secs(60),
            points: vec![point("a", Some(0.5)), point("b", None)],
        }
    }

    fn body_json(body: &str) -> serde_json::Value {
        serde_json::from_str(&format!("{{\"seq\":1{body}}}")).unwrap()
    }

    #[test]
    fn always_reports_every_point_in_values_or_errors() {
        let mut enc = TelemetryEncoder::new(&device(Report::Always));
        let body = enc
            .encode(&[Ok(PointValue::Number(229.8)), Err("timeout".into())], 0)
            .unwrap();
        let v = body_json(&body);
        assert_eq!(v["values"]["a"], 229.8);
        assert_eq!(v["errors"]["b"], "timeout");
        assert_eq!(v["device"], "m1");
        assert!(v.get("snapshot").is_none());
    }

    #[test]
    fn on_change_sends_only_what_moved_past_the_deadband_since_last_sent() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        let first = body_json(
            &enc.encode(
                &[Ok(PointValue::Number(10.0)), Ok(PointValue::Number(1.0))],
                0,
            )
            .unwrap(),
        );
        assert_eq!(first["snapshot"], true);
        assert!(
            enc.encode(
                &[Ok(PointValue::Number(10.3)), Ok(PointValue::Number(1.0))],
                1000
            )
            .is_none()
        );
        // 10.3 then 10.6: 0.6 from the last *sent* 10.0, so it goes.
        let moved = body_json(
            &enc.encode(
                &[Ok(PointValue::Number(10.6)), Ok(PointValue::Number(1.0))],
                2000,
            )
            .unwrap(),
        );
        assert_eq!(moved["values"]["a"], 10.6);
        assert!(moved["values"].get("b").is_none());
    }

    #[test]
    fn on_change_reports_changes_into_and_out_of_errors() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        enc.encode(
            &[Ok(PointValue::Number(1.0)), Ok(PointValue::Number(1.0))],
            0,
        );
        let into = body_json(
            &enc.encode(&[Ok(PointValue::Number(1.0)), Err("exception:2".into())], 1)
                .unwrap(),
        );
        assert_eq!(into["errors"]["b"], "exception:2");
        assert!(
            enc.encode(&[Ok(PointValue::Number(1.0)), Err("exception:2".into())], 2)
                .is_none()
        );
        let out = body_json(
            &enc.encode(
                &[Ok(PointValue::Number(1.0)), Ok(PointValue::Number(1.0))],
                3,
            )
            .unwrap(),
        );
        assert_eq!(out["values"]["b"], 1);
    }

    #[test]
    fn on_change_sends_a_full_snapshot_every_heartbeat() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        enc.encode(
            &[Ok(PointValue::Number(1.0)), Ok(PointValue::Number(1.0))],
            0,
        );
        assert!(
            enc.encode(
                &[Ok(PointValue::Number(1.0)), Ok(PointValue::Number(1.0))],
                59_999
            )
            .is_none()
        );
        let hb = body_json(
            &enc.encode(
                &[Ok(PointValue::Number(1.0)), Ok(PointValue::Number(1.0))],
                60_000,
            )
            .unwrap(),
        );
        assert_eq!(hb["snapshot"], true);
        assert_eq!(hb["values"].as_object().unwrap().len(), 2);
    }

    #[test]
    fn a_device_goes_offline_after_three_failed_polls_and_online_at_the_next_good_one() {
        let mut a = Availability::default();
        assert_eq!(
            a.on_poll(true, false, None),
            Some((Reachability::Online, "poll_ok".into()))
        );
        assert_eq!(a.on_poll(false, false, Some("timeout")), None);
        assert_eq!(a.on_poll(false, false, Some("timeout")), None);
        assert_eq!(
            a.on_poll(false, false, Some("exception:2")),
            Some((Reachability::Offline, "exception:2".into()))
        );
        assert_eq!(
            a.on_poll(false, false, Some("timeout")),
            None,
            "reported once"
        );
        assert_eq!(
            a.on_poll(true, false, None),
            Some((Reachability::Online, "poll_ok".into()))
        );
    }

    #[test]
    fn a_lost_link_takes_a_device_offline_at_once() {
        let mut a = Availability::default();
        a.on_poll(true, false, None);
        assert_eq!(
            a.on_poll(false, true, Some("disconnected")),
            Some((Reachability::Offline, "disconnected".into()))
        );
    }

    #[test]
    fn strings_are_escaped_only_where_json_needs_it() {
        for s in [
            "meter-1",
            "温度 °C",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{1}\u{1f}",
            "",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s, "{s:?} encoded as {out}");
        }
    }

    #[test]
    fn numbers_print_as_json_numbers() {
        let mut s = String::new();
        push_number(&mut s, 12345.0);
        s.push(' ');
        push_number(&mut s, 0.1);
        s.push(' ');
        push_number(&mut s, -3.5e-7);
        assert_eq!(s, "12345 0.1 -3.5e-7");
        for n in [
            -9_007_199_254_740_991.0,
            -65_536.0,
            -1.0,
            -0.0,
            0.0,
            65_535.0,
            4_294_967_295.0,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e300,
        ] {
            let mut s = String::new();
            push_number(&mut s, n);
            let back: f64 = serde_json::from_str(&s).unwrap();
            assert!(
                back.to_bits() == n.to_bits() || (n == 0.0 && back == 0.0),
                "{n} printed as {s}"
            );
        }
    }
}
