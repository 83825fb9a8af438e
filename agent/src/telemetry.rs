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

use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::{Device, Report};

use crate::message::{
    AvailabilityReason, ErrorWord, Name, Reachability, Reading, Telemetry, Value,
};

/// One point's outcome in a poll: a value or an error word.
pub type PointOutcome = Result<Value, ErrorWord>;

/// Builds `telemetry` messages for one device.
#[derive(Debug)]
pub struct TelemetryEncoder {
    device: Name,
    report: Report,
    heartbeat_ms: u64,
    deadbands: Vec<f64>,
    names: Vec<Name>,
    last_sent: Vec<Option<PointOutcome>>,
    last_snapshot_ms: Option<u64>,
}

impl TelemetryEncoder {
    pub fn new(device: &Device) -> Self {
        TelemetryEncoder {
            device: Arc::from(device.name.as_str()),
            report: device.report,
            heartbeat_ms: u64::try_from(device.heartbeat.as_millis()).unwrap_or(u64::MAX),
            deadbands: device
                .points
                .iter()
                .map(|p| p.deadband.unwrap_or(0.0))
                .collect(),
            names: device
                .points
                .iter()
                .map(|p| Arc::from(p.name.as_str()))
                .collect(),
            last_sent: vec![None; device.points.len()],
            last_snapshot_ms: None,
        }
    }

    /// The message for one poll whose first request was sent at `ts_ms`
    /// and whose outcomes are in point order, or `None` when `on_change`
    /// has nothing to say.
    pub fn encode(&mut self, outcomes: &[PointOutcome], ts_ms: u64) -> Option<Telemetry> {
        let snapshot = match self.report {
            Report::Always => true,
            Report::OnChange => self
                .last_snapshot_ms
                .is_none_or(|last| ts_ms.saturating_sub(last) >= self.heartbeat_ms),
        };
        let mut points = Vec::with_capacity(if snapshot { outcomes.len() } else { 4 });
        for (i, outcome) in outcomes.iter().enumerate() {
            let Some(name) = self.names.get(i) else { break };
            let previous = self.last_sent.get(i).and_then(Option::as_ref);
            let deadband = self.deadbands.get(i).copied().unwrap_or(0.0);
            if !snapshot && !changed(previous, outcome, deadband) {
                continue;
            }
            let reading = match outcome {
                Ok(value) => Reading::Value(value.clone()),
                Err(word) => Reading::Error(word.clone()),
            };
            points.push((name.clone(), reading));
            // Only `on_change` compares with what was sent.
            if self.report == Report::OnChange
                && let Some(slot) = self.last_sent.get_mut(i)
            {
                *slot = Some(outcome.clone());
            }
        }
        if !snapshot && points.is_empty() {
            return None;
        }
        if snapshot {
            self.last_snapshot_ms = Some(ts_ms);
        }
        Some(Telemetry {
            ts: ts_ms,
            device: self.device.clone(),
            points,
            snapshot: snapshot && self.report == Report::OnChange,
        })
    }
}

// Without a deadband any change counts, so exact comparison is intended.
#[allow(clippy::float_cmp)]
fn changed(previous: Option<&PointOutcome>, now: &PointOutcome, deadband: f64) -> bool {
    match (previous, now) {
        (Some(Ok(Value::Number(a))), Ok(Value::Number(b))) => {
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

/// Consecutive failed polls before a device counts as offline.
pub const FAILED_POLLS_FOR_OFFLINE: u32 = 3;

/// The availability rule of SPEC §5 for one device.
#[derive(Debug, Default)]
pub struct Availability {
    state: Option<Reachability>,
    failures: u32,
    last_error: Option<ErrorWord>,
}

impl Availability {
    /// Feeds one poll: `got_value` = at least one point decoded;
    /// `link_lost` = the connection or port went away; `error` = the poll's
    /// last error word. Returns the new state and reason on a change.
    pub fn on_poll(
        &mut self,
        got_value: bool,
        link_lost: bool,
        error: Option<&ErrorWord>,
    ) -> Option<(Reachability, AvailabilityReason)> {
        if got_value {
            self.failures = 0;
            if self.state != Some(Reachability::Online) {
                self.state = Some(Reachability::Online);
                return Some((Reachability::Online, AvailabilityReason::PollOk));
            }
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if let Some(e) = error {
            self.last_error = Some(e.clone());
        }
        let offline_now = link_lost || self.failures >= FAILED_POLLS_FOR_OFFLINE;
        if offline_now && self.state != Some(Reachability::Offline) {
            self.state = Some(Reachability::Offline);
            let reason = self
                .last_error
                .clone()
                .map_or(AvailabilityReason::Unknown, AvailabilityReason::Error);
            return Some((Reachability::Offline, reason));
        }
        None
    }

    pub fn state(&self) -> Option<Reachability> {
        self.state
    }
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
            offline_probe_max: Duration::from_secs(30),
            points: vec![point("a", Some(0.5)), point("b", None)],
        }
    }

    fn body_json(body: Telemetry) -> serde_json::Value {
        let payload =
            crate::wire::spindle::payload(&crate::message::Message::Telemetry(body), 1, "s");
        serde_json::from_str(&payload).unwrap()
    }

    #[test]
    fn always_reports_every_point_in_values_or_errors() {
        let mut enc = TelemetryEncoder::new(&device(Report::Always));
        let body = enc
            .encode(&[Ok(Value::Number(229.8)), Err(ErrorWord::Timeout)], 0)
            .unwrap();
        let v = body_json(body);
        assert_eq!(v["values"]["a"], 229.8);
        assert_eq!(v["errors"]["b"], "timeout");
        assert_eq!(v["device"], "m1");
        assert!(v.get("snapshot").is_none());
    }

    #[test]
    fn on_change_sends_only_what_moved_past_the_deadband_since_last_sent() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        let first = body_json(
            enc.encode(&[Ok(Value::Number(10.0)), Ok(Value::Number(1.0))], 0)
                .unwrap(),
        );
        assert_eq!(first["snapshot"], true);
        assert!(
            enc.encode(&[Ok(Value::Number(10.3)), Ok(Value::Number(1.0))], 1000)
                .is_none()
        );
        // 10.3 then 10.6: 0.6 from the last *sent* 10.0, so it goes.
        let moved = body_json(
            enc.encode(&[Ok(Value::Number(10.6)), Ok(Value::Number(1.0))], 2000)
                .unwrap(),
        );
        assert_eq!(moved["values"]["a"], 10.6);
        assert!(moved["values"].get("b").is_none());
    }

    #[test]
    fn on_change_reports_changes_into_and_out_of_errors() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        enc.encode(&[Ok(Value::Number(1.0)), Ok(Value::Number(1.0))], 0);
        let into = body_json(
            enc.encode(&[Ok(Value::Number(1.0)), Err(ErrorWord::Exception(2))], 1)
                .unwrap(),
        );
        assert_eq!(into["errors"]["b"], "exception:2");
        assert!(
            enc.encode(&[Ok(Value::Number(1.0)), Err(ErrorWord::Exception(2))], 2)
                .is_none()
        );
        let out = body_json(
            enc.encode(&[Ok(Value::Number(1.0)), Ok(Value::Number(1.0))], 3)
                .unwrap(),
        );
        assert_eq!(out["values"]["b"], 1);
    }

    #[test]
    fn on_change_sends_a_full_snapshot_every_heartbeat() {
        let mut enc = TelemetryEncoder::new(&device(Report::OnChange));
        enc.encode(&[Ok(Value::Number(1.0)), Ok(Value::Number(1.0))], 0);
        assert!(
            enc.encode(&[Ok(Value::Number(1.0)), Ok(Value::Number(1.0))], 59_999)
                .is_none()
        );
        let hb = body_json(
            enc.encode(&[Ok(Value::Number(1.0)), Ok(Value::Number(1.0))], 60_000)
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
            Some((Reachability::Online, AvailabilityReason::PollOk))
        );
        assert_eq!(a.on_poll(false, false, Some(&ErrorWord::Timeout)), None);
        assert_eq!(a.on_poll(false, false, Some(&ErrorWord::Timeout)), None);
        assert_eq!(
            a.on_poll(false, false, Some(&ErrorWord::Exception(2))),
            Some((
                Reachability::Offline,
                AvailabilityReason::Error(ErrorWord::Exception(2))
            ))
        );
        assert_eq!(
            a.on_poll(false, false, Some(&ErrorWord::Timeout)),
            None,
            "reported once"
        );
        assert_eq!(
            a.on_poll(true, false, None),
            Some((Reachability::Online, AvailabilityReason::PollOk))
        );
    }

    #[test]
    fn a_device_that_always_answers_malformed_goes_offline_with_decode_and_stays_there() {
        let mut a = Availability::default();
        a.on_poll(true, false, None);
        let decode = Some(&ErrorWord::Decode);
        assert_eq!(a.on_poll(false, false, decode), None);
        assert_eq!(a.on_poll(false, false, decode), None);
        assert_eq!(
            a.on_poll(false, false, decode),
            Some((
                Reachability::Offline,
                AvailabilityReason::Error(ErrorWord::Decode)
            ))
        );
        for _ in 0..20 {
            assert_eq!(a.on_poll(false, false, decode), None, "no flapping");
        }
    }

    #[test]
    fn a_lost_link_takes_a_device_offline_at_once() {
        let mut a = Availability::default();
        a.on_poll(true, false, None);
        assert_eq!(
            a.on_poll(false, true, Some(&ErrorWord::Disconnected)),
            Some((
                Reachability::Offline,
                AvailabilityReason::Error(ErrorWord::Disconnected)
            ))
        );
    }
}
