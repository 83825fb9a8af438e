//! The scheduler: one task per link (a TCP endpoint or a serial bus), which
//! serves the link's devices one request at a time.
//!
//! Each device is polled on fixed ticks of its `poll` interval. A tick that
//! passes while the device (or another on its link) is being polled is
//! served late, at once; ticks that pass entirely unserved are skipped and
//! counted as overruns, so polls never pile up (at most one late tick) and
//! the schedule returns to its grid. A device slower than its interval is
//! thus polled back to back, as fast as it answers, rather than every other
//! tick (which a 1 % overrun used to cost, and which the runtime timer's
//! 1 ms granularity turned into half the rate at a 1 ms interval: 430 →
//! 860 polls/s per device in the flat-out benchmark). A device that stops answering is
//! re-probed with jittered exponential backoff (from its poll interval up to
//! its `offline_probe_max`, default 30 s) instead of every tick, so a dead device costs
//! the others at most one timeout per probe. Every poll's outcome goes to
//! the telemetry encoder and the availability rule, and the resulting
//! messages into the publisher's bounded channel; when that channel is full
//! the poller waits (and its next ticks count as overruns): nothing is
//! dropped here.

use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::Device;
use spindle_protocols::backoff::Backoff;
use spindle_protocols::dlt645::poll::{MeterPoller, PointError as MeterError};
use spindle_protocols::modbus::poll::DevicePoller;
use spindle_protocols::modbus::transport::{AnyLink, reconnect_backoff};
use spindle_protocols::modbus::{Decoded, PointError, PointValue, RawValue, ReadError, plan_reads};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::busload::{DeviceLoad, Transaction};
use crate::clock::now_ms;
use crate::health::{BusStats, DeviceStats};
use crate::kpi::{Raw, Sample, SampleValue};
use crate::message::{AvailabilityChange, ErrorWord, Message, Outgoing, Reachability, Value};
use crate::telemetry::{Availability, PointOutcome, TelemetryEncoder};

/// Shortest wait between probes of an unreachable device.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What a poll hands on besides telemetry (the KPI engine's feed).
pub type PollSink = mpsc::Sender<PollReport>;

/// One poll's outcome, for consumers other than telemetry (the KPI engine).
#[derive(Debug, Clone)]
pub struct PollReport {
    pub device: String,
    /// Wall-clock ms when the poll's first request was sent.
    pub ts_ms: u64,
    /// One per point, in the device's point order.
    pub points: Arc<[Result<Sample, ErrorWord>]>,
    /// `Some(true)` when the device just came online, `Some(false)` offline.
    pub availability: Option<bool>,
}

/// How a device is read: Modbus requests, or DL/T 645 reads of a meter.
#[derive(Debug)]
enum Poller {
    Modbus(DevicePoller),
    Dlt645(MeterPoller),
}

/// One poll's results, whatever the protocol.
struct Polled {
    /// Wall-clock time the poll began (telemetry `ts`).
    started: std::time::SystemTime,
    /// One per point, in the device's point order.
    points: Vec<Result<Decoded, ErrorWord>>,
}

/// One device as its link task sees it.
#[derive(Debug)]
pub struct ScheduledDevice {
    device: Device,
    poller: Poller,
    encoder: TelemetryEncoder,
    availability: Availability,
    stats: Arc<DeviceStats>,
    next_tick: Instant,
    probe_at: Option<Instant>,
    probe_backoff: Backoff,
}

impl ScheduledDevice {
    pub fn new(device: Device, stats: Arc<DeviceStats>, start: Instant) -> Self {
        let probe_backoff = probe_backoff(&device);
        ScheduledDevice {
            poller: Poller::Modbus(DevicePoller::new(&device)),
            encoder: TelemetryEncoder::new(&device),
            availability: Availability::default(),
            stats,
            next_tick: start,
            probe_at: None,
            probe_backoff,
            device,
        }
    }

    /// Read this device as the DL/T 645 meter `meter` polls (one
    /// identifier per point, in the device's point order) instead of
    /// through Modbus.
    #[must_use]
    pub fn with_meter(mut self, meter: MeterPoller) -> Self {
        self.poller = Poller::Dlt645(meter);
        self
    }

    pub fn timeout(&self) -> Duration {
        self.device.timeout
    }

    /// This device's reads, for the bus-load estimate.
    pub fn load(&self) -> DeviceLoad {
        if let Poller::Dlt645(meter) = &self.poller {
            return DeviceLoad {
                name: self.device.name.clone(),
                poll: self.device.poll,
                requests: meter_transactions(meter),
            };
        }
        let plan = plan_reads(
            &self.device.points,
            self.device.max_registers.get(),
            self.device.max_gap,
        );
        DeviceLoad {
            name: self.device.name.clone(),
            poll: self.device.poll,
            requests: plan
                .requests()
                .iter()
                .map(|r| Transaction::Modbus {
                    area: r.area,
                    count: r.count,
                })
                .collect(),
        }
    }

    fn due(&self) -> Instant {
        self.probe_at
            .map_or(self.next_tick, |p| p.max(self.next_tick))
    }

    /// Moves `next_tick` on after a poll that ended at `now`. Ticks skipped
    /// because the poll (or the link's other devices) ran late are counted
    /// as overruns; ticks skipped on purpose while probing an unreachable
    /// device are not.
    fn advance_tick(&mut self, now: Instant, probing: bool) {
        let (next, skipped) = next_tick(self.next_tick, self.device.poll, now);
        self.next_tick = next;
        if !probing && skipped > 0 {
            self.stats.overruns.add(skipped);
        }
    }
}

/// Delays between probes of `device` while it is offline: from its poll
/// interval (at least [`MIN_PROBE_INTERVAL`]) doubling up to its
/// `offline_probe_max` (raised to that first delay if smaller), 20 % jitter.
fn probe_backoff(device: &Device) -> Backoff {
    let first = device.poll.max(MIN_PROBE_INTERVAL);
    Backoff::new(first, device.offline_probe_max.max(first), 0.2)
}

/// The backoff of a TCP link between failed connection attempts: the
/// transport's ([`reconnect_backoff`]: 500 ms doubling to 30 s, 20 % jitter)
/// capped by the smallest `offline_probe_max` of the link's `devices`, so a
/// probe of an offline device is not failed at once by a link still waiting
/// out a longer reconnect delay.
pub fn link_backoff(devices: &[ScheduledDevice]) -> Backoff {
    let base = reconnect_backoff();
    let cap = devices
        .iter()
        .map(|d| d.device.offline_probe_max)
        .min()
        .map_or(LINK_RECONNECT_MAX, |probe_max| {
            probe_max.min(LINK_RECONNECT_MAX)
        });
    Backoff::new(base.delay(0, 0.0).min(cap), cap, 0.2)
}

/// The transport's own cap on a link's reconnect delay.
const LINK_RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Runs one link's devices until `shutdown` turns true.
pub async fn run_link(
    mut link: AnyLink,
    mut devices: Vec<ScheduledDevice>,
    bus: Option<Arc<BusStats>>,
    out: mpsc::Sender<Outgoing>,
    reports: Option<PollSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    if devices.is_empty() {
        return;
    }
    loop {
        if *shutdown.borrow() {
            return;
        }
        // The device due first (ties: configuration order).
        let Some(index) = devices
            .iter()
            .enumerate()
            .min_by_key(|(_, d)| d.due())
            .map(|(i, _)| i)
        else {
            return;
        };
        let Some(dev) = devices.get_mut(index) else {
            return;
        };
        // A device already due is polled without arming a timer (arming one
        // wakes the runtime's driver through an eventfd: a system call per
        // poll when devices are polled back to back).
        let due = dev.due();
        if due > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                _ = shutdown.changed() => return,
            }
        }
        let probing = dev.probe_at.is_some();
        link.set_timeout(dev.device.timeout);
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = poll_device(&mut dev.poller, &dev.device, &mut link) => outcome,
            _ = shutdown.changed() => return,
        };
        let elapsed = started.elapsed();
        if let Some(bus) = &bus {
            bus.busy_us
                .add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
            bus.late_replies.set(link.late_replies());
        }
        let messages = handle_outcome(dev, &outcome, elapsed);
        let now = Instant::now();
        dev.advance_tick(now, probing);
        let report = reports.as_ref().map(|_| PollReport {
            device: dev.device.name.clone(),
            ts_ms: system_ms(outcome.started),
            availability: messages.availability,
            points: outcome.points.iter().map(sample).collect(),
        });
        for msg in messages.out {
            tokio::select! {
                sent = out.send(msg.into()) => if sent.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
        if let (Some(sink), Some(report)) = (&reports, report) {
            tokio::select! {
                sent = sink.send(report) => if sent.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One poll of `device` on `link`, by its protocol.
async fn poll_device(poller: &mut Poller, device: &Device, link: &mut AnyLink) -> Polled {
    match (poller, link) {
        (Poller::Modbus(poller), link) => {
            let outcome = poller.poll(link).await;
            Polled {
                started: outcome.started,
                points: outcome
                    .points
                    .into_iter()
                    .map(|r| r.map_err(|e| error_word(&e)))
                    .collect(),
            }
        }
        (Poller::Dlt645(meter), AnyLink::Rtu(rtu)) => {
            let started = std::time::SystemTime::now();
            let results = rtu.poll_dlt645(meter).await;
            let points = device
                .points
                .iter()
                .zip(results)
                .map(|(point, result)| {
                    let raw = result.map_err(|e| meter_error_word(&e))?;
                    Ok(Decoded {
                        raw: RawValue::Float(raw),
                        value: PointValue::Number(raw * point.scale + point.offset),
                        registers: None,
                    })
                })
                .collect();
            Polled { started, points }
        }
        // Configuration puts DL/T 645 meters on serial buses only.
        (Poller::Dlt645(_), AnyLink::Tcp(_)) => Polled {
            started: std::time::SystemTime::now(),
            points: vec![Err(ErrorWord::Disconnected); device.points.len()],
        },
    }
}

/// The SPEC §5 error word of a DL/T 645 point error.
pub fn meter_error_word(e: &MeterError) -> ErrorWord {
    let word = e.word();
    match word.as_str() {
        "timeout" => ErrorWord::Timeout,
        "disconnected" => ErrorWord::Disconnected,
        _ => match word.strip_prefix("abnormal:") {
            Some(reason) => ErrorWord::Abnormal(reason.to_owned()),
            None => ErrorWord::Decode,
        },
    }
}

/// The tick to poll at after the one at `tick`, for a poll that ended at
/// `now`, and how many ticks are skipped: the latest tick not after `now`
/// (served late, at once) when the following one has passed too, else the
/// following one. Only ticks that passed entirely while the device was not
/// being served are skipped.
fn next_tick(tick: Instant, poll: Duration, now: Instant) -> (Instant, u64) {
    let next = tick + poll;
    if next > now {
        return (next, 0);
    }
    let behind = now.duration_since(next).as_nanos() / poll.as_nanos().max(1);
    let skipped = u32::try_from(behind).unwrap_or(u32::MAX);
    (next + poll.saturating_mul(skipped), u64::from(skipped))
}

struct Produced {
    out: Vec<Message>,
    availability: Option<bool>,
}

/// Counts, encodes and schedules after one poll.
fn handle_outcome(dev: &mut ScheduledDevice, outcome: &Polled, elapsed: Duration) -> Produced {
    let stats = &dev.stats;
    stats.set_registers(
        outcome
            .points
            .iter()
            .map(|r| r.as_ref().ok().and_then(|d| d.registers)),
    );
    stats.polls.inc();
    stats.record_latency(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    let mut got_value = false;
    let mut link_lost = false;
    let mut last_error: Option<ErrorWord> = None;
    let outcomes: Vec<PointOutcome> = outcome
        .points
        .iter()
        .map(|r| match r {
            Ok(decoded) => {
                got_value = true;
                Ok(value(&decoded.value))
            }
            Err(word) => {
                stats.count_error(word);
                if *word == ErrorWord::Disconnected {
                    link_lost = true;
                }
                last_error = Some(word.clone());
                Err(word.clone())
            }
        })
        .collect();
    if got_value {
        stats.good_polls.inc();
    }
    let mut out = Vec::with_capacity(2);
    let ts_ms = system_ms(outcome.started);
    if let Some(telemetry) = dev.encoder.encode(&outcomes, ts_ms) {
        out.push(Message::Telemetry(telemetry));
    }
    let change = dev
        .availability
        .on_poll(got_value, link_lost, last_error.as_ref());
    let mut availability = None;
    if let Some((state, reason)) = change {
        let online = state == Reachability::Online;
        stats.set_online(online);
        availability = Some(online);
        if online {
            tracing::info!(device = %dev.device.name, "Device is online");
        } else {
            tracing::warn!(device = %dev.device.name, reason = ?reason, "Device is offline; probing it with backoff");
        }
        out.push(Message::Availability(AvailabilityChange {
            ts: now_ms(),
            device: dev.device.name.clone(),
            state,
            reason,
        }));
    }
    // An unreachable device is probed with backoff, not every tick, with a
    // single try: it costs its link one timeout per probe.
    if dev.availability.state() == Some(Reachability::Offline) {
        dev.probe_at = Some(Instant::now() + dev.probe_backoff.next_delay());
        match &mut dev.poller {
            Poller::Modbus(poller) => poller.set_retries(0),
            Poller::Dlt645(meter) => meter.set_retries(0),
        }
    } else if dev.probe_at.take().is_some() {
        dev.probe_backoff.reset();
        match &mut dev.poller {
            Poller::Modbus(poller) => poller.set_retries(dev.device.retries),
            Poller::Dlt645(meter) => meter.set_retries(dev.device.retries),
        }
    }
    Produced { out, availability }
}

/// The reads of one poll of a DL/T 645 meter, for the bus-load estimate.
pub fn meter_transactions(meter: &MeterPoller) -> Vec<Transaction> {
    meter
        .reads()
        .iter()
        .map(|read| Transaction::Dlt645 {
            value_bytes: u32::try_from(read.value_len()).unwrap_or(u32::MAX),
        })
        .collect()
}

/// The SPEC §5 error word of a point error (the one place protocol errors
/// become words).
pub fn error_word(e: &PointError) -> ErrorWord {
    match e {
        PointError::Decode(_) => ErrorWord::Decode,
        PointError::Read(ReadError::Exception(code)) => ErrorWord::Exception(code.0),
        PointError::Read(ReadError::Link(link)) => match link.word() {
            "timeout" => ErrorWord::Timeout,
            "disconnected" => ErrorWord::Disconnected,
            _ => ErrorWord::Decode,
        },
    }
}

/// A decoded point value as a message value.
pub fn value(v: &PointValue) -> Value {
    match v {
        PointValue::Bool(b) => Value::Bool(*b),
        PointValue::Number(n) => Value::Number(*n),
        PointValue::Text(t) => Value::Text(Arc::from(t.as_str())),
    }
}

/// A point's outcome as the KPI engine takes it.
fn sample(r: &Result<Decoded, ErrorWord>) -> Result<Sample, ErrorWord> {
    let decoded = r.as_ref().map_err(Clone::clone)?;
    Ok(Sample {
        raw: match &decoded.raw {
            RawValue::Bool(b) => Raw::Bool(*b),
            RawValue::Unsigned(v) => Raw::Unsigned(*v),
            RawValue::Signed(v) => Raw::Signed(*v),
            RawValue::Float(v) => Raw::Float(*v),
            RawValue::Text(_) => Raw::Text,
        },
        value: match &decoded.value {
            PointValue::Bool(b) => SampleValue::Bool(*b),
            PointValue::Number(n) => SampleValue::Number(*n),
            PointValue::Text(_) => SampleValue::Text,
        },
    })
}

fn system_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The one device of a minimal configuration with these `[[device]]` lines.
    fn device(lines: &str) -> Device {
        let text = format!(
            "[agent]\nid = \"gw\"\nsite = \"s\"\ndata_dir = \"/tmp/x\"\ntimezone = \"UTC\"\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1\"\n\
             [[device]]\nname = \"d\"\ntcp = \"127.0.0.1:502\"\nunit = 1\n{lines}\n\
             [[device.point]]\nname = \"p\"\narea = \"holding\"\naddress = 0\ntype = \"u16\"\n"
        );
        match spindle_config::parse("t.toml", &text) {
            Ok(config) => config.devices.into_iter().next().unwrap(),
            Err(errors) => panic!("{errors}"),
        }
    }

    /// The longest delay the probe backoff of `device` ever gives.
    fn longest_probe_wait(device: &Device) -> Duration {
        let backoff = probe_backoff(device);
        (0..64).map(|n| backoff.delay(n, 0.0)).max().unwrap()
    }

    #[test]
    fn an_offline_device_is_probed_at_least_every_30s_by_default() {
        let d = device("poll = \"1s\"");
        assert_eq!(longest_probe_wait(&d), Duration::from_secs(30));
        assert_eq!(probe_backoff(&d).delay(0, 0.0), Duration::from_secs(1));
    }

    #[test]
    fn offline_probe_max_caps_the_wait_between_probes() {
        let d = device("poll = \"1s\"\noffline_probe_max = \"5s\"");
        assert_eq!(longest_probe_wait(&d), Duration::from_secs(5));
        let mut backoff = probe_backoff(&d);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Duration::from_secs(5));
        }
    }

    #[test]
    fn an_offline_device_is_never_probed_more_often_than_it_is_polled() {
        let d = device("poll = \"10s\"\noffline_probe_max = \"2s\"");
        assert_eq!(longest_probe_wait(&d), Duration::from_secs(10));
    }

    /// The longest delay of `backoff`.
    fn longest(backoff: &Backoff) -> Duration {
        (0..64).map(|n| backoff.delay(n, 0.0)).max().unwrap()
    }

    #[test]
    fn a_tcp_link_retries_its_connection_at_least_every_offline_probe_max() {
        let scheduled =
            |lines: &str| ScheduledDevice::new(device(lines), Arc::default(), Instant::now());
        let fast = scheduled("offline_probe_max = \"5s\"");
        let default = scheduled("");
        assert_eq!(longest(&link_backoff(&[default])), Duration::from_secs(30));
        let default = scheduled("");
        assert_eq!(
            longest(&link_backoff(&[default, fast])),
            Duration::from_secs(5),
            "the link's smallest"
        );
        let slow = scheduled("offline_probe_max = \"5m\"");
        assert_eq!(
            longest(&link_backoff(&[slow])),
            LINK_RECONNECT_MAX,
            "never longer than the transport's own cap"
        );
        let tiny = scheduled("offline_probe_max = \"100ms\"");
        assert_eq!(longest(&link_backoff(&[tiny])), Duration::from_millis(100));
    }

    #[test]
    fn dlt645_errors_become_the_same_words_as_modbus_ones_plus_abnormal() {
        use spindle_protocols::dlt645::{ErrorByte, ReadError as MeterRead};
        let read = |e: MeterRead| meter_error_word(&MeterError::Read(e));
        assert_eq!(
            read(MeterRead::Abnormal(ErrorByte::NO_DATA)),
            ErrorWord::Abnormal("no_data".into())
        );
        assert_eq!(read(MeterRead::TooManyFrames), ErrorWord::Decode);
        assert_eq!(read(MeterRead::Unexpected), ErrorWord::Decode);
    }

    #[test]
    fn a_dlt645_device_counts_its_frames_in_the_bus_load_not_modbus_requests() {
        use spindle_protocols::dlt645::{Address, Di};
        let meter = MeterPoller::new(
            Address::parse("000012345678").unwrap(),
            // Energy (4 bytes) and two phase voltages (one block of 3 × 2).
            vec![Di(0x0001_0000), Di(0x0201_0100), Di(0x0201_0200)],
        );
        let scheduled =
            ScheduledDevice::new(device(""), Arc::default(), Instant::now()).with_meter(meter);
        assert_eq!(
            scheduled.load().requests,
            [
                Transaction::Dlt645 { value_bytes: 4 },
                Transaction::Dlt645 { value_bytes: 6 }
            ]
        );
    }

    #[test]
    fn a_poll_that_ends_before_the_next_tick_waits_for_it() {
        let t0 = Instant::now();
        assert_eq!(next_tick(t0, POLL, t0 + ms(30)), (t0 + ms(100), 0));
        assert_eq!(next_tick(t0, POLL, t0 + ms(99)), (t0 + ms(100), 0));
    }

    #[test]
    fn a_tick_that_passed_during_the_poll_is_served_late_not_skipped() {
        let t0 = Instant::now();
        // Ended 1 % late: the tick at 100 ms is due at once, nothing skipped.
        assert_eq!(next_tick(t0, POLL, t0 + ms(101)), (t0 + ms(100), 0));
        assert_eq!(next_tick(t0, POLL, t0 + ms(100)), (t0 + ms(100), 0));
        assert_eq!(next_tick(t0, POLL, t0 + ms(199)), (t0 + ms(100), 0));
    }

    #[test]
    fn ticks_that_passed_entirely_are_skipped_and_counted() {
        let t0 = Instant::now();
        // The tick at 100 ms passed unserved once 200 ms passed: skipped,
        // and the one at 200 ms is served late.
        assert_eq!(next_tick(t0, POLL, t0 + ms(200)), (t0 + ms(200), 1));
        assert_eq!(next_tick(t0, POLL, t0 + ms(350)), (t0 + ms(300), 2));
        // Never more than one late tick: the schedule stays on its grid.
        let (next, _) = next_tick(t0, POLL, t0 + ms(1234));
        assert_eq!(next, t0 + ms(1200));
    }

    #[test]
    fn a_device_slower_than_its_interval_is_polled_back_to_back_on_the_grid() {
        // Each poll takes 1.3 intervals: every poll starts as soon as the
        // previous ends, and over ten polls 3 of 13 ticks go unserved.
        let t0 = Instant::now();
        let (mut tick, mut start, mut skipped) = (t0, t0, 0);
        for _ in 0..10 {
            let end = start + ms(130);
            let (next, s) = next_tick(tick, POLL, end);
            assert!(next <= end, "a late tick is due at once");
            assert!(end.duration_since(next) < POLL, "at most one tick late");
            skipped += s;
            tick = next;
            start = end;
        }
        assert_eq!(start, t0 + ms(1300));
        assert_eq!(skipped, 3);
    }
}
