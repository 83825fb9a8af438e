//! Simulated DL/T 645-2007 meters on one line, with fault knobs.
//!
//! A [`SimMeter`] holds values by data identifier and answers the reads of
//! the standard (11H read data — single identifiers and the blocks of the
//! built-in table —, 12H read subsequent data, 13H read address) with the
//! behaviours of real meters that the client must survive, each a knob of
//! [`MeterFaults`]: no answer, an abnormal answer with a chosen error byte,
//! a bad checksum, noise before the `68`, wake-up bytes, a late answer (an
//! answer delay longer than the client's timeout), endless more-follows
//! answers (B1H/B2H), blocks refused. Any other control code (a write, a
//! time-set, a clear) is answered abnormally (unauthorized) and counted, so
//! a test can show the client never sent one.
//!
//! [`SimBus`] is the line: every meter a request's address matches answers
//! (an abbreviated address can match several); two answers at once collide
//! and arrive garbled, as on RS-485. [`serve`] runs a bus on any byte
//! stream: a pseudo-terminal, or an in-memory duplex in tests.
//!
//! On a pseudo-terminal, alone or beside Modbus units, with or without
//! line timing: [`super::SimPtyServer::open_bus`]; [`serve`]
//! itself answers at once. Not simulated: the 1997 edition, passwords and
//! writes, meters that answer 13H to their full address, and the echo of
//! the request some half-duplex adapters give.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::dlt645::bcd;
use crate::dlt645::frame::{Address, Di, ErrorByte, Frame, Request, Scanned, WAKE_UP, parse_frame};
use crate::dlt645::table::{block_members, lookup};

/// How a simulated meter misbehaves (independent knobs, hence the bools).
#[derive(Debug, Clone, Default)]
#[allow(clippy::struct_excessive_bools)]
pub struct MeterFaults {
    /// Never answers.
    pub silent: bool,
    /// Answers every read abnormally with this error byte.
    pub abnormal: Option<ErrorByte>,
    /// Answers with a wrong checksum.
    pub bad_checksum: bool,
    /// Sends these bytes before its answer.
    pub noise_before: Vec<u8>,
    /// `FE` wake-up bytes before its answer.
    pub wake_up: usize,
    /// Answers this long after the request (late, when above the client's
    /// timeout).
    pub delay: Duration,
    /// Every answer says more follows, for ever.
    pub endless_more: bool,
    /// Answers a block identifier abnormally (no data).
    pub refuse_blocks: bool,
}

/// One simulated meter.
#[derive(Debug, Clone)]
pub struct SimMeter {
    pub address: Address,
    values: BTreeMap<Di, f64>,
    pub faults: MeterFaults,
}

impl SimMeter {
    pub fn new(address: Address) -> Self {
        SimMeter {
            address,
            values: BTreeMap::new(),
            faults: MeterFaults::default(),
        }
    }

    /// Set the value of `di` (an identifier of the built-in table).
    pub fn set(&mut self, di: Di, value: f64) {
        self.values.insert(di, value);
    }

    pub fn value(&self, di: Di) -> Option<f64> {
        self.values.get(&di).copied()
    }

    /// The value bytes of a single identifier, in its format (rounded,
    /// clamped to what the format carries).
    fn value_bytes(&self, di: Di) -> Option<Vec<u8>> {
        let info = lookup(di)?;
        let value = self.value(di)?;
        let max = i64::try_from(info.format.max_magnitude()).unwrap_or(i64::MAX);
        let min = if info.format.signed { -max } else { 0 };
        #[allow(clippy::cast_possible_truncation)] // `as` saturates; clamped right after
        let mantissa = (value * 10_f64.powi(i32::from(info.format.decimals))).round() as i64;
        bcd::encode(info.format, mantissa.clamp(min, max)).ok()
    }

    /// The answer frame to a request `frame`, `None` when this meter keeps
    /// silent (not addressed to it, or its fault).
    pub fn reply(&self, frame: &Frame) -> Option<Frame> {
        let asked = Address::from_wire(frame.address)?;
        if frame.control & 0x80 != 0 || !asked.matches(&self.address) || self.faults.silent {
            return None;
        }
        let di = frame
            .data
            .first_chunk::<4>()
            .map(|bytes| Di(u32::from_le_bytes(*bytes)));
        let request = match (frame.control, di) {
            (0x13, _) if asked == Address::ANY => Request::ReadAddress,
            (0x11, Some(di)) => Request::ReadData {
                address: self.address,
                di,
            },
            (0x12, Some(di)) => Request::ReadSubsequent {
                address: self.address,
                di,
                seq: frame.data.get(4).copied().unwrap_or(0),
            },
            _ => {
                // Not a read: refused, as a meter refuses a command without
                // its password.
                return Some(Frame {
                    address: self.address.wire(),
                    control: 0xC0 | (frame.control & 0x1F),
                    data: vec![ErrorByte::UNAUTHORIZED.0],
                });
            }
        };
        if let Some(error) = self.faults.abnormal {
            return Some(Frame::abnormal(&request, self.address, error));
        }
        let Some(di) = request.di() else {
            return Some(Frame {
                address: self.address.wire(),
                control: 0x93,
                data: self.address.wire().to_vec(),
            });
        };
        let more = self.faults.endless_more;
        if matches!(request, Request::ReadSubsequent { .. }) && !more {
            return Some(Frame::abnormal(&request, self.address, ErrorByte::NO_DATA));
        }
        let value = if di.is_block() {
            if self.faults.refuse_blocks {
                None
            } else {
                block_members(di).and_then(|members| {
                    members
                        .iter()
                        .map(|member| self.value_bytes(*member))
                        .collect::<Option<Vec<_>>>()
                        .map(|parts| parts.concat())
                })
            }
        } else {
            self.value_bytes(di)
        };
        Some(match value {
            Some(value) => Frame::answer(&request, self.address, &value, more),
            None => Frame::abnormal(&request, self.address, ErrorByte::NO_DATA),
        })
    }

    /// The bytes of an answer frame, with this meter's wake-up bytes, noise
    /// and checksum fault.
    fn reply_bytes(&self, answer: &Frame) -> Vec<u8> {
        let mut bytes = self.faults.noise_before.clone();
        bytes.extend(std::iter::repeat_n(WAKE_UP, self.faults.wake_up));
        let mut frame = answer.encode().unwrap_or_default();
        if self.faults.bad_checksum
            && let Some(sum) = frame.len().checked_sub(2).and_then(|at| frame.get_mut(at))
        {
            *sum = sum.wrapping_add(1);
        }
        bytes.extend(frame);
        bytes
    }
}

/// Runs on the meters before every answer (to move values with time).
pub type BeforeAnswer = Box<dyn FnMut(&mut [SimMeter]) + Send>;

/// The meters on one simulated line, and what the line carried.
#[derive(Default)]
pub struct SimBus {
    pub meters: Vec<SimMeter>,
    /// The control code of every request frame received, in order.
    pub requests: Vec<u8>,
    /// Set values at the moment of a request, so an answer carries the
    /// value of that instant (a meter's register, not a sample of it).
    pub before_answer: Option<BeforeAnswer>,
}

impl std::fmt::Debug for SimBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBus")
            .field("meters", &self.meters)
            .field("requests", &self.requests)
            .field("before_answer", &self.before_answer.is_some())
            .finish()
    }
}

impl SimBus {
    pub fn new(meters: Vec<SimMeter>) -> Arc<Mutex<SimBus>> {
        Arc::new(Mutex::new(SimBus {
            meters,
            requests: Vec::new(),
            before_answer: None,
        }))
    }

    /// What the line carries back after request `frame`: the delay before
    /// it and the bytes (several answers at once collide: their bytes are
    /// OR-ed together, as open drains on a shared pair would garble them).
    pub fn answer(&mut self, frame: &Frame) -> Option<(Duration, Vec<u8>)> {
        self.requests.push(frame.control);
        if let Some(before) = self.before_answer.as_mut() {
            before(&mut self.meters);
        }
        let answers: Vec<(Duration, Vec<u8>)> = self
            .meters
            .iter()
            .filter_map(|meter| {
                meter
                    .reply(frame)
                    .map(|answer| (meter.faults.delay, meter.reply_bytes(&answer)))
            })
            .collect();
        let delay = answers.iter().map(|(delay, _)| *delay).max()?;
        let len = answers
            .iter()
            .map(|(_, bytes)| bytes.len())
            .max()
            .unwrap_or(0);
        let mut line = vec![0_u8; len];
        for (_, bytes) in &answers {
            for (slot, byte) in line.iter_mut().zip(bytes) {
                *slot |= byte;
            }
        }
        Some((delay, line))
    }
}

/// Serve `bus` on `port` until it closes: every whole request frame gets
/// the bus's answer (after its delay); bytes that are no frame are dropped.
pub async fn serve<P>(mut port: P, bus: Arc<Mutex<SimBus>>) -> std::io::Result<()>
where
    P: AsyncRead + AsyncWrite + Unpin,
{
    let mut received = Vec::new();
    let mut chunk = [0_u8; 256];
    loop {
        let got = port.read(&mut chunk).await?;
        if got == 0 {
            return Ok(());
        }
        received.extend_from_slice(chunk.get(..got).unwrap_or_default());
        loop {
            match parse_frame(&received) {
                Ok(Scanned::Incomplete) => break,
                Ok(Scanned::Complete { frame, len }) => {
                    received.drain(..len.min(received.len()));
                    let answer = bus
                        .lock()
                        .map_err(|_| std::io::Error::other("simulated bus poisoned"))?
                        .answer(&frame);
                    if let Some((delay, bytes)) = answer {
                        tokio::time::sleep(delay).await;
                        port.write_all(&bytes).await?;
                        port.flush().await?;
                    }
                }
                Err(_) => {
                    received.drain(..1.min(received.len()));
                }
            }
        }
    }
}

/// Serve `bus` on duplicates of `master` until aborted.
#[cfg(unix)]
pub(super) fn spawn_serving(
    master: serialport::TTYPort,
    bus: Arc<Mutex<SimBus>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stream = master
                .try_clone_native()
                .and_then(tokio_serial::SerialStream::try_from)
                .map_err(std::io::Error::from);
            match stream {
                Ok(stream) => {
                    if let Err(error) = serve(stream, Arc::clone(&bus)).await {
                        tracing::debug!(%error, "Simulated DL/T 645 line ended; serving again.");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Simulator cannot use its pseudo-terminal; retrying.");
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> SimMeter {
        let mut meter = SimMeter::new(Address::parse("000012345678").unwrap());
        meter.set(Di(0x0201_0100), 229.8);
        meter.set(Di(0x0201_0200), 230.1);
        meter.set(Di(0x0201_0300), 231.0);
        meter
    }

    fn request_frame(request: &Request) -> Frame {
        let Ok(Scanned::Complete { frame, .. }) = parse_frame(&request.encode()) else {
            panic!("request does not parse")
        };
        frame
    }

    #[test]
    fn a_meter_answers_its_values_blocks_and_address() {
        let meter = meter();
        let read = Request::ReadData {
            address: meter.address,
            di: Di(0x0201_0100),
        };
        let answer = meter.reply(&request_frame(&read)).unwrap();
        assert_eq!(answer.control, 0x91);
        assert_eq!(answer.data, [0x00, 0x01, 0x01, 0x02, 0x98, 0x22]);
        let block = Request::ReadData {
            address: meter.address,
            di: Di(0x0201_FF00),
        };
        let answer = meter.reply(&request_frame(&block)).unwrap();
        assert_eq!(answer.data.len(), 4 + 6);
        let address = meter.reply(&request_frame(&Request::ReadAddress)).unwrap();
        assert_eq!(address.control, 0x93);
        // Unknown identifier: abnormal, no data.
        let unknown = Request::ReadData {
            address: meter.address,
            di: Di(0x0202_0100),
        };
        let answer = meter.reply(&request_frame(&unknown)).unwrap();
        assert_eq!(
            (answer.control, answer.data.as_slice()),
            (0xD1, &[0x02][..])
        );
        // Another meter's address: silence.
        let other = Request::ReadData {
            address: Address::parse("000012345679").unwrap(),
            di: Di(0x0201_0100),
        };
        assert_eq!(meter.reply(&request_frame(&other)), None);
    }

    #[test]
    fn two_meters_answering_at_once_collide() {
        let one = meter();
        let mut two = meter();
        two.address = Address::parse("000099345678").unwrap();
        let bus = SimBus::new(vec![one, two]);
        let probe = Request::ReadData {
            address: Address::abbreviated(&[0x78, 0x56, 0x34]).unwrap(),
            di: Di(0x0201_0100),
        };
        let (_, bytes) = bus.lock().unwrap().answer(&request_frame(&probe)).unwrap();
        assert!(parse_frame(&bytes).is_err());
    }
}
