//! The live view: the latest of everything the page and the API show,
//! kept from the typed messages as they pass into the outbox (a
//! [`Tap`] on the publisher), so producers know nothing of HTTP.
//!
//! Bounded by the configuration: one slot per configured device and point
//! and per configured KPI, made at start; a message for a name not
//! configured is ignored. Updating a slot copies the reading in place (a
//! number or bool is copied, a text shares its `Arc`); nothing is
//! rendered and nothing is allocated for HTTP unless a live-update
//! subscriber is connected (then each change is rendered once, for all of
//! them, see [`crate::http::sse`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use spindle_config::model::Config;

use crate::http::sse::{Broadcast, LiveEvent};
use crate::message::{
    AvailabilityChange, AvailabilityReason, Health, KpiKind, KpiWindow, Message, Reachability,
    Reading, Tap, Telemetry,
};

/// A point's latest reading.
#[derive(Debug, Clone, Default)]
pub struct PointLive {
    /// `None` before the point was first reported.
    pub reading: Option<Reading>,
    /// The poll that produced it (Unix ms).
    pub ts: Option<u64>,
}

/// A device's latest state.
#[derive(Debug, Clone, Default)]
pub struct DeviceLive {
    /// `None` before the first availability change.
    pub state: Option<Reachability>,
    pub reason: Option<AvailabilityReason>,
    pub since_ts: Option<u64>,
    /// The latest telemetry's poll time.
    pub last_poll_ts: Option<u64>,
    /// In the device's point order.
    pub points: Vec<PointLive>,
}

#[derive(Debug)]
struct DeviceSlot {
    point_names: Vec<String>,
    live: Mutex<DeviceLive>,
}

/// The live view (see the module doc).
#[derive(Debug)]
pub struct LiveView {
    devices: HashMap<String, DeviceSlot>,
    /// (kind, name) → latest window, in configuration order.
    kpis: Mutex<Vec<(KpiKind, String, Option<KpiWindow>)>>,
    health: Mutex<Option<Health>>,
    events: Broadcast,
}

/// A lock whose holder panicked still holds a consistent value here (every
/// update is a plain assignment).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LiveView {
    /// Slots for every configured device, point and KPI.
    pub fn new(config: &Config, events: Broadcast) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|d| {
                let slot = DeviceSlot {
                    point_names: d.points.iter().map(|p| p.name.clone()).collect(),
                    live: Mutex::new(DeviceLive {
                        points: vec![PointLive::default(); d.points.len()],
                        ..DeviceLive::default()
                    }),
                };
                (d.name.clone(), slot)
            })
            .collect();
        let k = &config.kpis;
        let kpis = k
            .cnc_coverage
            .iter()
            .map(|x| (KpiKind::CncCoverage, x.name.clone(), None))
            .chain(
                k.energy_per_output
                    .iter()
                    .map(|x| (KpiKind::EnergyPerOutput, x.name.clone(), None)),
            )
            .chain(
                k.energy_consumption
                    .iter()
                    .map(|x| (KpiKind::EnergyConsumption, x.name.clone(), None)),
            )
            .collect();
        LiveView {
            devices,
            kpis: Mutex::new(kpis),
            health: Mutex::new(None),
            events,
        }
    }

    /// A copy of a device's latest state (`None`: not configured).
    pub fn device(&self, name: &str) -> Option<DeviceLive> {
        self.devices.get(name).map(|slot| lock(&slot.live).clone())
    }

    /// A device's state without its points (`None`: not configured).
    pub fn device_state(&self, name: &str) -> Option<DeviceLive> {
        self.devices.get(name).map(|slot| {
            let live = lock(&slot.live);
            DeviceLive {
                state: live.state,
                reason: live.reason.clone(),
                since_ts: live.since_ts,
                last_poll_ts: live.last_poll_ts,
                points: Vec::new(),
            }
        })
    }

    /// Every configured KPI with its latest window, in configuration order.
    pub fn kpis(&self) -> Vec<(KpiKind, String, Option<KpiWindow>)> {
        lock(&self.kpis).clone()
    }

    /// The latest `health` report.
    pub fn health(&self) -> Option<Health> {
        lock(&self.health).clone()
    }

    /// Where live updates are sent.
    pub fn events(&self) -> &Broadcast {
        &self.events
    }

    fn telemetry(&self, t: &Telemetry) {
        let Some(slot) = self.devices.get(&*t.device) else {
            return;
        };
        {
            let mut live = lock(&slot.live);
            live.last_poll_ts = Some(t.ts);
            // The message's points are in the device's point order (a
            // subset for `on_change`): one forward walk finds them.
            let mut at = 0;
            for (name, reading) in &t.points {
                let Some(offset) = slot
                    .point_names
                    .iter()
                    .skip(at)
                    .position(|n| n.as_str() == &**name)
                else {
                    continue;
                };
                at += offset;
                if let Some(point) = live.points.get_mut(at) {
                    point.reading = Some(reading.clone());
                    point.ts = Some(t.ts);
                }
                at += 1;
            }
        }
        self.events.send_with(|| LiveEvent::telemetry(t));
    }

    fn availability(&self, a: &AvailabilityChange) {
        let Some(slot) = self.devices.get(&a.device) else {
            return;
        };
        {
            let mut live = lock(&slot.live);
            live.state = Some(a.state);
            live.reason = Some(a.reason.clone());
            live.since_ts = Some(a.ts);
        }
        self.events.send_with(|| LiveEvent::availability(a));
    }

    fn kpi(&self, k: &KpiWindow) {
        let kind = k.kind();
        {
            let mut kpis = lock(&self.kpis);
            let Some(slot) = kpis
                .iter_mut()
                .find(|(kd, name, _)| *kd == kind && *name == k.name)
            else {
                return;
            };
            // Windows can arrive late (backfill): keep the newest.
            if slot
                .2
                .as_ref()
                .is_none_or(|w| w.window.start <= k.window.start)
            {
                slot.2 = Some(k.clone());
            }
        }
        self.events.send_with(|| LiveEvent::kpi(k));
    }

    fn health_report(&self, h: &Health, store: &str) {
        *lock(&self.health) = Some(h.clone());
        self.events.send_with(|| LiveEvent::health(h, store));
    }
}

/// The tap on the publisher: feeds a [`LiveView`].
#[derive(Debug)]
pub struct LiveTap {
    pub view: Arc<LiveView>,
    /// The outbox's store id (the `health` body names it).
    pub store: String,
}

impl Tap for LiveTap {
    fn observe(&self, message: &Message) {
        match message {
            Message::Telemetry(t) => self.view.telemetry(t),
            Message::Availability(a) => self.view.availability(a),
            Message::Kpi(k) => self.view.kpi(k),
            Message::Health(h) => self.view.health_report(h, &self.store),
            // Never produced by this build (read back from old records only).
            Message::HealthF2(_) | Message::HealthF3(_) | Message::KpiF2(_) | Message::Gap(_) => {}
        }
    }
}

/// The text of an availability reason as published (`None`: failed polls
/// that carried no error word, published as `""`).
pub fn reason_word(reason: &AvailabilityReason) -> Option<String> {
    match reason {
        AvailabilityReason::PollOk => Some("poll_ok".to_owned()),
        AvailabilityReason::Error(word) => Some(word.word().into_owned()),
        AvailabilityReason::Unknown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ErrorWord, Value};

    fn config() -> Config {
        let text = r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-live"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "meter"
tcp = "127.0.0.1:5020"
unit = 1
poll = "1s"

[[device.point]]
name = "a"
area = "holding"
address = 0
type = "u16"

[[device.point]]
name = "b"
area = "holding"
address = 1
type = "u16"

[[device.point]]
name = "c"
area = "holding"
address = 2
type = "u16"
"#;
        spindle_config::parse("t.toml", text).unwrap()
    }

    fn telemetry(device: &str, ts: u64, points: &[(&str, Reading)]) -> Message {
        Message::Telemetry(Telemetry {
            ts,
            device: Arc::from(device),
            points: points
                .iter()
                .map(|(n, r)| (Arc::from(*n), r.clone()))
                .collect(),
            snapshot: false,
        })
    }

    #[test]
    fn readings_land_in_their_points_slots_and_unknown_names_are_ignored() {
        let view = Arc::new(LiveView::new(&config(), Broadcast::default()));
        let tap = LiveTap {
            view: view.clone(),
            store: "s".into(),
        };
        tap.observe(&telemetry(
            "meter",
            10,
            &[
                ("a", Reading::Value(Value::Number(1.0))),
                ("b", Reading::Value(Value::Number(2.0))),
                ("c", Reading::Error(ErrorWord::Timeout)),
            ],
        ));
        // on_change: a subset, in point order; a point not configured is skipped.
        tap.observe(&telemetry(
            "meter",
            20,
            &[
                ("nope", Reading::Value(Value::Number(9.0))),
                ("c", Reading::Value(Value::Number(3.0))),
            ],
        ));
        tap.observe(&telemetry(
            "other",
            30,
            &[("a", Reading::Value(Value::Number(5.0)))],
        ));
        let live = view.device("meter").unwrap();
        assert_eq!(live.last_poll_ts, Some(20));
        let got: Vec<_> = live
            .points
            .iter()
            .map(|p| (p.reading.clone(), p.ts))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(Reading::Value(Value::Number(1.0))), Some(10)),
                (Some(Reading::Value(Value::Number(2.0))), Some(10)),
                (Some(Reading::Value(Value::Number(3.0))), Some(20)),
            ]
        );
        assert!(view.device("other").is_none());
    }

    #[test]
    fn availability_is_kept_and_nothing_is_rendered_without_a_subscriber() {
        let view = Arc::new(LiveView::new(&config(), Broadcast::default()));
        let change = AvailabilityChange {
            ts: 5,
            device: "meter".into(),
            state: Reachability::Offline,
            reason: AvailabilityReason::Error(ErrorWord::Timeout),
        };
        let mut rendered = false;
        view.events().send_with(|| {
            rendered = true;
            LiveEvent::availability(&change)
        });
        assert!(!rendered, "rendered with nobody listening");
        view.availability(&change);
        let live = view.device_state("meter").unwrap();
        assert_eq!(live.state, Some(Reachability::Offline));
        assert_eq!(live.since_ts, Some(5));
        assert_eq!(
            live.reason.as_ref().and_then(reason_word).as_deref(),
            Some("timeout")
        );
    }
}
