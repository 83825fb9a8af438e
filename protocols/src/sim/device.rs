//! A simulated Modbus device: a register image with fault knobs, answering
//! read requests through a `tokio_modbus::server::Service`.
//!
//! [`SimDevice`] is a cheap handle (`Arc<Mutex<…>>`) so tests and
//! `spindle simulate` can change registers and faults while servers answer.
//! The lock is held only to read or change the state, never across an await.
//!
//! What the device does with a request, in this order:
//! 1. it logs it (every unit id), then ignores it (no answer) unless it is
//!    for one of its unit ids — on a shared RS-485 bus only the addressed
//!    slave may talk;
//! 2. `down`: no answer; with `timeout_probability`: no answer that often;
//! 3. `garbage` (RTU only): writes those bytes instead of an answer; with
//!    `garbage_probability`: writes 1–8 random bytes that often;
//! 4. anything but a read (function 1–4): exception 1 (illegal function) —
//!    the simulator is read-only, like the agent;
//! 5. a count of 0 or over the protocol maximum: exception 3; a range past
//!    65535 or touching a `missing` range: exception 2; touching an
//!    `exceptions` range: that range's code;
//! 6. otherwise the values at the time of the request, `short_by` registers
//!    (bytes of bits) fewer, after `reply_delay` (or, with
//!    `late_probability`, after `late_delay` that often).
//!
//! The random faults draw from a counter-based generator seeded by
//! `Faults::seed`: the same seed and the same requests give the same faults.

use std::future::Future;
use std::io::Write as _;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use spindle_config::model::{Area, Point};
use tokio_modbus::{ExceptionCode, Request, SlaveRequest};

use super::dynamics::{splitmix64, unit_interval};
use crate::modbus::decode::{EncodeError, RawValue, encode_bit, encode_point};

/// Fault knobs of a simulated device. The default is a healthy device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer this long after the request (set it above the client's
    /// timeout to make a late reply).
    pub reply_delay: Duration,
    /// Requests touching these ranges get exception 2 (illegal data address).
    pub missing: Vec<(Area, RangeInclusive<u16>)>,
    /// Answer with this many registers fewer than asked (for bits: this many
    /// bytes of bits fewer).
    pub short_by: u16,
    /// Do not answer at all.
    pub down: bool,
    /// RTU only: send these bytes instead of an answer (ignored over TCP,
    /// where it means no answer).
    pub garbage: Option<Vec<u8>>,
    /// Share of requests (0–1) not answered at all.
    pub timeout_probability: f64,
    /// Share of replies (0–1) sent after `late_delay` instead of `reply_delay`.
    pub late_probability: f64,
    pub late_delay: Duration,
    /// Requests touching these ranges get this exception code.
    pub exceptions: Vec<(Area, RangeInclusive<u16>, u8)>,
    /// Share of requests (0–1) answered with 1–8 random bytes (RTU; no
    /// answer over TCP).
    pub garbage_probability: f64,
    /// Seeds the random faults.
    pub seed: u64,
}

/// A request the device received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub unit: u8,
    /// `None` for functions other than reads.
    pub area: Option<Area>,
    pub start: u16,
    pub count: u16,
}

/// Everything a simulated device holds.
#[derive(Debug)]
struct State {
    units: Vec<u8>,
    holding: Vec<u16>,
    input: Vec<u16>,
    coils: Vec<bool>,
    discretes: Vec<bool>,
    faults: Faults,
    received: Vec<Received>,
    /// Random draws made so far (the generator's counter).
    draws: u64,
    /// Called before each request is answered (outside the lock).
    before_read: Option<BeforeRead>,
}

/// A hook run before a simulated device answers: it may set registers from
/// the time of the request (exact ground truth for tests).
#[derive(Clone)]
pub(crate) struct BeforeRead(Arc<dyn Fn(&SimDevice) + Send + Sync>);

impl std::fmt::Debug for BeforeRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeRead")
    }
}

const ADDRESSES: usize = 1 << 16;

/// A handle on a simulated device; clones share the device.
#[derive(Debug, Clone)]
pub struct SimDevice {
    state: Arc<Mutex<State>>,
}

/// What the device decided to do with a request.
#[derive(Debug)]
pub(crate) enum Answer {
    Silent,
    Garbage(Vec<u8>),
    Reply {
        delay: Duration,
        result: Result<tokio_modbus::Response, ExceptionCode>,
    },
}

impl SimDevice {
    /// A device answering to `units`, every register and bit zero.
    pub fn new(units: impl Into<Vec<u8>>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                units: units.into(),
                holding: vec![0; ADDRESSES],
                input: vec![0; ADDRESSES],
                coils: vec![false; ADDRESSES],
                discretes: vec![false; ADDRESSES],
                faults: Faults::default(),
                received: Vec::new(),
                draws: 0,
                before_read: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `hook` before every answer, e.g. to set registers from a formula
    /// of the request's time.
    pub fn set_before_read(&self, hook: Arc<dyn Fn(&SimDevice) + Send + Sync>) {
        self.lock().before_read = Some(BeforeRead(hook));
    }

    pub fn units(&self) -> Vec<u8> {
        self.lock().units.clone()
    }

    /// Set registers of `area` (holding or input) from `start`; values past
    /// address 65535 are dropped. Bit areas take `value != 0`.
    pub fn set_registers(&self, area: Area, start: u16, values: &[u16]) {
        let mut state = self.lock();
        let start = usize::from(start);
        match area {
            Area::Holding | Area::Input => {
                let image = if area == Area::Holding {
                    &mut state.holding
                } else {
                    &mut state.input
                };
                for (slot, value) in image.iter_mut().skip(start).zip(values) {
                    *slot = *value;
                }
            }
            Area::Coil | Area::Discrete => {
                let image = if area == Area::Coil {
                    &mut state.coils
                } else {
                    &mut state.discretes
                };
                for (slot, value) in image.iter_mut().skip(start).zip(values) {
                    *slot = *value != 0;
                }
            }
        }
    }

    /// Set one coil or discrete input (registers take 0 or 1).
    pub fn set_bit(&self, area: Area, address: u16, value: bool) {
        self.set_registers(area, address, &[u16::from(value)]);
    }

    /// Registers of `area` from `start` (bits as 0/1).
    pub fn registers(&self, area: Area, start: u16, count: u16) -> Vec<u16> {
        let state = self.lock();
        let range = usize::from(start)..usize::from(start) + usize::from(count);
        match area {
            Area::Holding => state.holding.get(range).unwrap_or_default().to_vec(),
            Area::Input => state.input.get(range).unwrap_or_default().to_vec(),
            Area::Coil => state
                .coils
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|bit| u16::from(*bit))
                .collect(),
            Area::Discrete => state
                .discretes
                .get(range)
                .unwrap_or_default()
                .iter()
                .map(|bit| u16::from(*bit))
                .collect(),
        }
    }

    /// Write `raw` where `point` reads it (the inverse of decoding).
    pub fn set_point(&self, point: &Point, raw: &RawValue) -> Result<(), EncodeError> {
        if point.area.is_bit() {
            let bit = encode_bit(point, raw)?;
            self.set_bit(point.area, point.address, bit);
            return Ok(());
        }
        let mut words = self.registers(point.area, point.address, point.width());
        encode_point(point, raw, &mut words)?;
        self.set_registers(point.area, point.address, &words);
        Ok(())
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Change the faults in place.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.lock().faults);
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn clear_received(&self) {
        self.lock().received.clear();
    }

    /// The `tokio_modbus` service answering for this device.
    pub fn service(&self) -> SimService {
        SimService {
            device: self.clone(),
            raw: None,
        }
    }

    /// Decide the answer to `request` for `unit`, at the time of the call.
    pub(crate) fn answer(&self, unit: u8, request: &Request<'_>) -> Answer {
        let hook = self.lock().before_read.clone();
        if let Some(BeforeRead(hook)) = hook {
            hook(self);
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let (area, start, count) = match *request {
            Request::ReadCoils(start, count) => (Some(Area::Coil), start, count),
            Request::ReadDiscreteInputs(start, count) => (Some(Area::Discrete), start, count),
            Request::ReadHoldingRegisters(start, count) => (Some(Area::Holding), start, count),
            Request::ReadInputRegisters(start, count) => (Some(Area::Input), start, count),
            _ => (None, 0, 0),
        };
        state.received.push(Received {
            unit,
            area,
            start,
            count,
        });
        if !state.units.contains(&unit) || state.faults.down {
            return Answer::Silent;
        }
        if state.chance(state.faults.timeout_probability) {
            return Answer::Silent;
        }
        if let Some(garbage) = &state.faults.garbage {
            return Answer::Garbage(garbage.clone());
        }
        if state.chance(state.faults.garbage_probability) {
            return Answer::Garbage(state.random_bytes());
        }
        let delay = if state.chance(state.faults.late_probability) {
            state.faults.late_delay
        } else {
            state.faults.reply_delay
        };
        let Some(area) = area else {
            return Answer::Reply {
                delay,
                result: Err(ExceptionCode::IllegalFunction),
            };
        };
        Answer::Reply {
            delay,
            result: state.read(area, start, count),
        }
    }
}

impl State {
    /// The next random number of this device's fault generator.
    fn draw(&mut self) -> u64 {
        self.draws = self.draws.wrapping_add(1);
        splitmix64(self.faults.seed ^ splitmix64(self.draws))
    }

    /// True with `probability` (never for 0 or less, always for 1 or more).
    fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        unit_interval(self.draw()) < probability
    }

    /// 1 to 8 random bytes.
    fn random_bytes(&mut self) -> Vec<u8> {
        let bits = self.draw();
        let count = usize::from(bits.to_le_bytes().first().copied().unwrap_or(0) % 8) + 1;
        self.draw().to_le_bytes().into_iter().take(count).collect()
    }

    fn read(
        &self,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<tokio_modbus::Response, ExceptionCode> {
        if count == 0 || count > area.protocol_max() {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let first = usize::from(start);
        let end = first + usize::from(count);
        if end > ADDRESSES {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let last = start.saturating_add(count - 1);
        let touches_missing = self.faults.missing.iter().any(|(missing_area, range)| {
            *missing_area == area && *range.start() <= last && start <= *range.end()
        });
        if touches_missing {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let touched = self
            .faults
            .exceptions
            .iter()
            .find(|(range_area, range, _)| {
                *range_area == area && *range.start() <= last && start <= *range.end()
            });
        if let Some((_, _, code)) = touched {
            return Err(ExceptionCode::new(*code));
        }
        let short = usize::from(self.faults.short_by);
        let words = |image: &[u16]| {
            let keep = usize::from(count).saturating_sub(short);
            image.get(first..first + keep).unwrap_or_default().to_vec()
        };
        let bits = |image: &[bool]| {
            let keep = usize::from(count).saturating_sub(short * 8);
            image.get(first..first + keep).unwrap_or_default().to_vec()
        };
        Ok(match area {
            Area::Holding => tokio_modbus::Response::ReadHoldingRegisters(words(&self.holding)),
            Area::Input => tokio_modbus::Response::ReadInputRegisters(words(&self.input)),
            Area::Coil => tokio_modbus::Response::ReadCoils(bits(&self.coils)),
            Area::Discrete => tokio_modbus::Response::ReadDiscreteInputs(bits(&self.discretes)),
        })
    }
}

/// Writes raw bytes to a serial line beside the RTU server (for `garbage`).
pub(crate) type RawWriter = Arc<Mutex<Box<dyn std::io::Write + Send>>>;

/// A simulated device as a `tokio_modbus` server service.
#[derive(Clone)]
pub struct SimService {
    device: SimDevice,
    raw: Option<RawWriter>,
}

impl std::fmt::Debug for SimService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimService")
            .field("device", &self.device)
            .field("raw", &self.raw.is_some())
            .finish()
    }
}

impl SimService {
    pub fn device(&self) -> &SimDevice {
        &self.device
    }

    pub(crate) fn with_raw(device: SimDevice, raw: RawWriter) -> Self {
        Self {
            device,
            raw: Some(raw),
        }
    }
}

impl tokio_modbus::server::Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<tokio_modbus::Response>;
    type Exception = ExceptionCode;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Exception>> + Send + 'static>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let answer = self.device.answer(request.slave, &request.request);
        let raw = self.raw.clone();
        Box::pin(async move {
            match answer {
                Answer::Silent => Ok(None),
                Answer::Garbage(bytes) => {
                    if let Some(raw) = raw {
                        let mut writer = raw.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Err(error) = writer.write_all(&bytes).and_then(|()| writer.flush()) {
                            tracing::debug!(%error, "Simulator could not write garbage bytes.");
                        }
                    }
                    Ok(None)
                }
                Answer::Reply { delay, result } => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    result.map(Some)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(answer: Answer) -> Result<tokio_modbus::Response, ExceptionCode> {
        match answer {
            Answer::Reply { result, .. } => result,
            other => panic!("no reply: {other:?}"),
        }
    }

    #[test]
    fn the_device_answers_only_its_own_units() {
        let device = SimDevice::new([3]);
        device.set_registers(Area::Holding, 10, &[7, 8]);
        assert!(matches!(
            device.answer(4, &Request::ReadHoldingRegisters(10, 2)),
            Answer::Silent
        ));
        assert_eq!(
            reply(device.answer(3, &Request::ReadHoldingRegisters(10, 2))),
            Ok(tokio_modbus::Response::ReadHoldingRegisters(vec![7, 8]))
        );
        assert_eq!(device.received().len(), 2);
    }

    #[test]
    fn faults_shape_the_answer() {
        let device = SimDevice::new([1]);
        device.update_faults(|f| f.missing.push((Area::Holding, 5..=5)));
        assert_eq!(
            reply(device.answer(1, &Request::ReadHoldingRegisters(0, 10))),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert!(reply(device.answer(1, &Request::ReadHoldingRegisters(0, 5))).is_ok());
        assert_eq!(
            reply(device.answer(1, &Request::ReadHoldingRegisters(65535, 2))),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            reply(device.answer(1, &Request::ReadInputRegisters(0, 126))),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            reply(device.answer(1, &Request::WriteSingleRegister(0, 1))),
            Err(ExceptionCode::IllegalFunction)
        );
        device.update_faults(|f| f.short_by = 1);
        assert_eq!(
            reply(device.answer(1, &Request::ReadInputRegisters(0, 3))),
            Ok(tokio_modbus::Response::ReadInputRegisters(vec![0, 0]))
        );
        device.update_faults(|f| f.down = true);
        assert!(matches!(
            device.answer(1, &Request::ReadInputRegisters(0, 3)),
            Answer::Silent
        ));
    }

    #[test]
    fn an_exception_range_answers_its_code() {
        let device = SimDevice::new([1]);
        device.update_faults(|f| f.exceptions.push((Area::Holding, 100..=110, 4)));
        assert_eq!(
            reply(device.answer(1, &Request::ReadHoldingRegisters(105, 1))),
            Err(ExceptionCode::ServerDeviceFailure)
        );
        assert!(reply(device.answer(1, &Request::ReadHoldingRegisters(90, 10))).is_ok());
        assert!(reply(device.answer(1, &Request::ReadInputRegisters(105, 1))).is_ok());
    }

    /// How many of 10 000 requests get each kind of answer.
    fn tally(faults: Faults) -> (usize, usize, usize) {
        let device = SimDevice::new([1]);
        device.set_faults(faults);
        let (mut silent, mut garbage, mut late) = (0, 0, 0);
        for _ in 0..10_000 {
            match device.answer(1, &Request::ReadHoldingRegisters(0, 1)) {
                Answer::Silent => silent += 1,
                Answer::Garbage(bytes) => {
                    assert!((1..=8).contains(&bytes.len()));
                    garbage += 1;
                }
                Answer::Reply { delay, .. } => late += usize::from(!delay.is_zero()),
            }
        }
        (silent, garbage, late)
    }

    #[test]
    fn random_faults_happen_at_their_rate_and_repeat_with_the_seed() {
        let faults = Faults {
            timeout_probability: 0.1,
            garbage_probability: 0.05,
            late_probability: 0.2,
            late_delay: Duration::from_secs(2),
            seed: 7,
            ..Faults::default()
        };
        let (silent, garbage, late) = tally(faults.clone());
        assert!((800..1200).contains(&silent), "{silent} timeouts");
        // Garbage is drawn among the answered, late among the rest.
        assert!((300..600).contains(&garbage), "{garbage} garbage");
        assert!((1400..2000).contains(&late), "{late} late");
        assert_eq!(tally(faults.clone()), (silent, garbage, late));
        assert_ne!(tally(Faults { seed: 8, ..faults }), (silent, garbage, late));
    }
}
