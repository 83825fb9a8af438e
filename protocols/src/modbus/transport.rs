//! Read-only Modbus links: [`TcpLink`] and [`RtuLink`], behind the [`Link`]
//! trait, whose only operation is `read` (function codes 1–4). There is no
//! write function on any link, by type: the agent cannot write to a device.
//!
//! Invariants every link keeps:
//! * every request runs under the link's timeout;
//! * an answer is checked against what was asked: registers exactly `count`,
//!   bits at least `count` (then cut to `count`), else
//!   [`LinkError::ShortResponse`] (tokio-modbus does not check this in
//!   release builds, and panics on it in debug builds, so we use its raw
//!   `call`);
//! * after a timeout or any other link error, the link is made clean before
//!   its next request, so a late reply is never taken as the answer to the
//!   next request: TCP drops the connection and reconnects lazily on the next
//!   request; RTU follows the drain rule below;
//! * an RTU request's timeout bounds the wait for the first byte of the
//!   answer after the request has left the wire; once the answer has started,
//!   the rest gets its on-wire time (plus 20 ms of slack for USB adapters
//!   that deliver bytes in bursts);
//! * RTU frames are separated by at least the bus's silent interval plus its
//!   `turnaround`, and by little more: the wait sleeps to a millisecond short
//!   of its end and yields to the runtime for the rest (tokio's timers round
//!   up to whole milliseconds, which cost 10 % of the throughput at 19200
//!   baud); an RTU link is one bus, shared by its devices one request at a
//!   time (it takes the unit id per request);
//! * a link that cannot be (re)opened waits a jittered exponential
//!   [`Backoff`] before trying again; meanwhile reads fail at once with a
//!   `disconnected` error ([`LinkError::Connect`]).
//!
//! # The RTU drain rule
//!
//! An RS-485 line has no transaction ids: the only thing that ties an answer
//! to its request is that it comes next. A reply that arrives after its
//! request timed out would be taken as the answer to the next request; our
//! own framing (unit id, function, byte count, CRC: [`rtu`]) is what lets us
//! tell most such replies apart, and the rule leans on it:
//!
//! * a request that got no usable answer (timeout, truncated or garbled
//!   answer) leaves its unit *unanswered* for a quiet period,
//!   `max(timeout, silent interval, 20 ms)` from the failure: its reply may
//!   still come;
//! * **re-asking an unanswered unit** is the one case framing cannot save —
//!   its late reply would have the right unit, function, byte count and CRC.
//!   Before that request the line is drained *long*: whatever arrives is
//!   discarded until the unit's quiet period has passed and the line has been
//!   quiet for `max(silent interval, 20 ms)`;
//! * **asking another unit** after a failure needs only a *short* drain: the
//!   line must have been quiet for one silent interval, counted from the last
//!   byte seen (after a plain timeout the line has been quiet all along, so
//!   this costs nothing), and the input buffer is discarded. A dead or slow
//!   device therefore costs the bus its timeout per request, not twice that;
//! * a late reply that still shows up in front of another unit's answer is
//!   recognized: its unit id is not the one asked. If it parses as a whole,
//!   CRC-checked answer to that unit's unanswered request, it is discarded
//!   and the answer behind it is read as usual (counted in
//!   [`RtuLink::late_replies`]). Anything else — a reply garbled by a
//!   collision on the wire, noise — is a typed error (`WrongUnit`, `BadCrc`,
//!   …): the line is drained and, when another unit's reply was due, the
//!   request is asked once more (after a long drain, since the asked unit is
//!   now unanswered too);
//! * a device's own retries re-ask the same unit, so the long drain comes
//!   between them: a dead device with `retries = 1` costs its bus about three
//!   timeouts per poll until it is marked offline; after that it is probed
//!   with single tries, normally further apart than its quiet period, at the
//!   cost of one timeout each;
//! * a reply later than its quiet period after the failure is the one case
//!   left: if the same unit is asked again, it could be taken as the answer.
//!   Set timeouts above the device's worst answer time.
//!
//! Line faults end the same way: garbage, a truncated frame, a bad CRC, a
//! reply from the wrong unit, a reply after the timeout each give a typed
//! [`LinkError`] and a drained line, and the next request to another device
//! goes out after at most a silent interval of quiet. An I/O error (EIO from
//! an unplugged USB adapter, a closed peer) closes the port; the next read
//! reopens it with backoff.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::{Area, Parity, SerialBus};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::slave::SlaveContext as _;
use tokio_serial::{SerialPort as _, SerialStream};

use super::error::{LinkError, ReadError};
use super::rtu::{self, Parsed};
use crate::backoff::Backoff;

/// Values a read brought back: registers (holding, input) or bits (coil,
/// discrete), exactly as many as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Registers(Vec<u16>),
    Bits(Vec<bool>),
}

impl Response {
    pub fn len(&self) -> usize {
        match self {
            Response::Registers(words) => words.len(),
            Response::Bits(bits) => bits.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers as hex words (`"0x1234 0xabcd"`), bits as `0`/`1`.
    pub fn to_hex(&self) -> String {
        match self {
            Response::Registers(words) => words
                .iter()
                .map(|word| format!("{word:#06x}"))
                .collect::<Vec<_>>()
                .join(" "),
            Response::Bits(bits) => bits
                .iter()
                .map(|bit| if *bit { '1' } else { '0' })
                .collect(),
        }
    }

    /// Check a tokio-modbus answer against the request for `count` values of
    /// `area`: registers exactly `count`, bits at least `count` (cut to it).
    pub fn checked(
        area: Area,
        count: u16,
        answer: tokio_modbus::Response,
    ) -> Result<Response, LinkError> {
        use tokio_modbus::Response as Answer;
        let expected = usize::from(count);
        match (area, answer) {
            (Area::Holding, Answer::ReadHoldingRegisters(words))
            | (Area::Input, Answer::ReadInputRegisters(words)) => {
                match words.len().cmp(&expected) {
                    std::cmp::Ordering::Less => Err(LinkError::ShortResponse {
                        expected: count,
                        got: words.len(),
                    }),
                    std::cmp::Ordering::Greater => Err(LinkError::Malformed {
                        detail: format!("{} registers, {count} were asked for", words.len()),
                    }),
                    std::cmp::Ordering::Equal => Ok(Response::Registers(words)),
                }
            }
            (Area::Coil, Answer::ReadCoils(mut bits))
            | (Area::Discrete, Answer::ReadDiscreteInputs(mut bits)) => {
                if bits.len() < expected {
                    Err(LinkError::ShortResponse {
                        expected: count,
                        got: bits.len(),
                    })
                } else {
                    bits.truncate(expected);
                    Ok(Response::Bits(bits))
                }
            }
            (area, other) => Err(LinkError::WrongFunction {
                expected: rtu::function_code(area),
                got: other.function_code().value(),
            }),
        }
    }
}

/// A read-only Modbus link.
pub trait Link: Send {
    /// Read `count` registers (bits) of `area` from `start` on unit `unit`.
    fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> impl Future<Output = Result<Response, ReadError>> + Send;

    /// Gets the link ready to send at once (connects or opens it if needed),
    /// so a poll's timestamp is taken when its first request really goes
    /// out. Failures are left for the next `read` to report.
    fn ready(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Backoff links use between failed (re)connection attempts: 500 ms doubling
/// to 30 s, 20 % jitter.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.2)
}

/// When a closed link may try to connect (or open its port) again: a
/// jittered backoff between failed attempts, shared by both kinds of link.
#[derive(Debug)]
struct Reconnect {
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl Reconnect {
    fn new() -> Self {
        Reconnect {
            backoff: reconnect_backoff(),
            retry_at: None,
        }
    }

    /// An error naming `target` while the backoff after a failed attempt runs.
    fn check(&self, target: &str, waiting: &'static str) -> Result<(), LinkError> {
        match self.retry_at {
            Some(at) if Instant::now() < at => Err(LinkError::Connect {
                target: target.to_owned(),
                source: Arc::new(io::Error::other(waiting)),
            }),
            _ => Ok(()),
        }
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
    }

    /// Starts the next backoff; the error to report.
    fn failed(&mut self, target: &str, source: io::Error) -> LinkError {
        self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        LinkError::Connect {
            target: target.to_owned(),
            source: Arc::new(source),
        }
    }
}

/// An I/O error of an open link, in the link-error layer.
fn link_io_error(error: io::Error) -> LinkError {
    match error.kind() {
        io::ErrorKind::InvalidData => LinkError::Malformed {
            detail: error.to_string(),
        },
        io::ErrorKind::UnexpectedEof => LinkError::Closed,
        _ => LinkError::io(error),
    }
}

/// A Modbus TCP link to one `HOST:PORT` (a device or a gateway).
pub struct TcpLink {
    target: String,
    timeout: Duration,
    context: Option<Context>,
    reconnect: Reconnect,
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("connected", &self.context.is_some())
            .field("retry_at", &self.reconnect.retry_at)
            .finish_non_exhaustive()
    }
}

impl TcpLink {
    /// A link to `target` (`HOST:PORT`); it connects on the first read.
    pub fn new(target: impl Into<String>, timeout: Duration) -> Self {
        Self {
            target: target.into(),
            timeout,
            context: None,
            reconnect: Reconnect::new(),
        }
    }

    /// Use `backoff` between failed connection attempts.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect.backoff = backoff;
        self
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn is_connected(&self) -> bool {
        self.context.is_some()
    }

    /// When the next connection attempt may be made, after a failed one.
    pub fn retry_at(&self) -> Option<Instant> {
        self.reconnect.retry_at
    }

    /// Drop the connection (if any); the next read reconnects.
    pub fn disconnect(&mut self) {
        self.context = None;
    }

    async fn connect(&mut self) -> Result<&mut Context, LinkError> {
        if self.context.is_none() {
            self.reconnect
                .check(&self.target, "waiting before the next connection attempt")?;
            let attempt = tokio::time::timeout(self.timeout, TcpStream::connect(&self.target))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
            match attempt {
                Ok(stream) => {
                    // Small requests: do not wait to fill a segment.
                    stream.set_nodelay(true).map_err(LinkError::io)?;
                    self.context = Some(tokio_modbus::client::tcp::attach(stream));
                    self.reconnect.succeeded();
                }
                Err(source) => return Err(self.reconnect.failed(&self.target, source)),
            }
        }
        self.context.as_mut().ok_or(LinkError::Closed)
    }

    async fn exchange(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        use tokio_modbus::Request;
        let timeout = self.timeout;
        let context = self.connect().await?;
        context.set_slave(tokio_modbus::Slave(unit));
        let request = match area {
            Area::Holding => Request::ReadHoldingRegisters(start, count),
            Area::Input => Request::ReadInputRegisters(start, count),
            Area::Coil => Request::ReadCoils(start, count),
            Area::Discrete => Request::ReadDiscreteInputs(start, count),
        };
        match tokio::time::timeout(timeout, context.call(request)).await {
            Err(_) => Err(LinkError::Timeout { after: timeout }.into()),
            Ok(Err(tokio_modbus::Error::Transport(error))) => Err(link_io_error(error).into()),
            Ok(Err(tokio_modbus::Error::Protocol(error))) => Err(LinkError::Malformed {
                detail: error.to_string(),
            }
            .into()),
            Ok(Ok(Err(code))) => Err(ReadError::Exception(code.into())),
            Ok(Ok(Ok(answer))) => Ok(Response::checked(area, count, answer)?),
        }
    }
}

impl Link for TcpLink {
    async fn ready(&mut self) {
        let _ = self.connect().await;
    }

    async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        let result = self.exchange(unit, area, start, count).await;
        if let Err(ReadError::Link(_)) = &result {
            // A late reply must not reach the next request: start afresh.
            self.context = None;
        }
        result
    }
}

/// Shortest quiet period that ends a long RTU drain, and the slack an answer
/// that has started to arrive gets to finish (USB adapters deliver bytes in
/// bursts, up to their latency timer apart).
const MIN_QUIET: Duration = Duration::from_millis(20);

/// Longest an RTU drain waits for the line to go quiet, in quiet periods.
const DRAIN_LIMIT: u32 = 8;

/// A request sent on an RTU line that got no usable answer: its unit may
/// still send one until `until`.
#[derive(Debug, Clone, Copy)]
struct Unanswered {
    unit: u8,
    area: Area,
    count: u16,
    until: Instant,
}

/// What the bytes at the start of a buffer are, against the unanswered
/// requests of other units.
enum LateReply {
    /// A whole, CRC-checked answer to an unanswered request, `len` bytes.
    Whole { len: usize, index: usize },
    /// Could still become one: read more.
    Partial,
    /// Not an answer to any unanswered request.
    No,
}

/// A Modbus RTU link: one serial bus (RS-485), shared by its devices one
/// request at a time. The RTU framing is our own ([`rtu`]).
#[derive(Debug)]
pub struct RtuLink {
    bus: SerialBus,
    timeout: Duration,
    port: Option<SerialStream>,
    /// After a link error: the line is drained before the next request, until
    /// it has been quiet for a silent interval counted from this instant (the
    /// last byte seen, or the end of the request when nothing came back).
    dirty: Option<Instant>,
    /// Requests whose answers may still arrive (see the module doc).
    unanswered: Vec<Unanswered>,
    /// The request on the line now: sent, not yet answered.
    in_flight: Option<(u8, Area, u16)>,
    /// When the line last carried a byte (ours or a device's).
    last_activity: Instant,
    /// Earliest instant the next request may start (silent interval and
    /// turnaround after the last frame).
    line_free_at: Option<Instant>,
    /// Late replies recognized (and discarded) in front of another answer.
    late_replies: u64,
    reconnect: Reconnect,
}

impl RtuLink {
    /// A link on `bus`; it opens the port on the first read.
    pub fn new(bus: &SerialBus, timeout: Duration) -> Self {
        Self {
            bus: bus.clone(),
            timeout,
            port: None,
            dirty: None,
            unanswered: Vec::new(),
            in_flight: None,
            last_activity: Instant::now(),
            line_free_at: None,
            late_replies: 0,
            reconnect: Reconnect::new(),
        }
    }

    /// Use `backoff` between failed attempts to open the port.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.reconnect.backoff = backoff;
        self
    }

    /// The timeout of the next requests (devices on one bus may differ).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn bus(&self) -> &SerialBus {
        &self.bus
    }

    pub fn is_open(&self) -> bool {
        self.port.is_some()
    }

    /// When the next attempt to open the port may be made, after a failed one.
    pub fn retry_at(&self) -> Option<Instant> {
        self.reconnect.retry_at
    }

    /// How long a unit that did not answer may still answer late: a unit
    /// re-asked within this time after its failure gets a long drain first.
    pub fn quiet_period(&self) -> Duration {
        self.timeout.max(self.bus.silent_interval()).max(MIN_QUIET)
    }

    /// Late replies recognized and discarded so far (each one the answer to
    /// a request that had timed out, arriving in front of another answer).
    pub fn late_replies(&self) -> u64 {
        self.late_replies
    }

    fn builder(&self) -> tokio_serial::SerialPortBuilder {
        let data_bits = match self.bus.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        };
        let stop_bits = if self.bus.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        };
        let parity = match self.bus.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        };
        tokio_serial::new(&self.bus.port, self.bus.baud.get())
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(tokio_serial::FlowControl::None)
    }

    /// Open the port if it is closed (respecting the backoff); a fresh port
    /// starts with its input discarded.
    fn open(&mut self) -> Result<(), LinkError> {
        if self.port.is_some() {
            return Ok(());
        }
        self.reconnect.check(
            &self.bus.port,
            "waiting before the next attempt to open the port",
        )?;
        match SerialStream::open(&self.builder()) {
            Ok(port) => {
                // Best effort: a port that cannot flush is drained by reading.
                let _ = port.clear(tokio_serial::ClearBuffer::All);
                self.port = Some(port);
                self.reconnect.succeeded();
                self.dirty = None;
                self.line_free_at = Some(Instant::now() + self.bus.silent_interval());
                Ok(())
            }
            Err(error) => Err(self
                .reconnect
                .failed(&self.bus.port, io::Error::from(error))),
        }
    }

    /// Close the port; the next read reopens it.
    pub fn close(&mut self) {
        if let Some(mut port) = self.port.take() {
            // Let the port be opened again (TIOCEXCL outlives us while a
            // pseudo-terminal's other side keeps it open).
            let _ = port.set_exclusive(false);
        }
        self.in_flight = None;
        self.unanswered.clear();
    }

    /// On-wire time of `chars` characters.
    fn chars(&self, chars: usize) -> Duration {
        self.bus
            .char_time()
            .saturating_mul(u32::try_from(chars).unwrap_or(u32::MAX))
    }

    /// Make the line ready for a request to `unit` (see the module doc): a
    /// long drain if `unit` may still answer an earlier request, a short one
    /// after any other link error, none on a clean line.
    async fn prepare(&mut self, unit: u8) -> Result<(), LinkError> {
        let now = Instant::now();
        self.unanswered.retain(|entry| entry.until > now);
        let own = self
            .unanswered
            .iter()
            .filter(|entry| entry.unit == unit)
            .map(|entry| entry.until)
            .max();
        match (own, self.dirty) {
            (Some(until), quiet_since) => {
                let quiet = self.bus.silent_interval().max(MIN_QUIET);
                self.drain(until, quiet_since.unwrap_or(now), quiet).await?;
                self.unanswered.retain(|entry| entry.unit != unit);
            }
            (None, Some(quiet_since)) => {
                let quiet = self.bus.silent_interval();
                self.drain(now, quiet_since, quiet).await?;
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Discard whatever arrives until `until` has passed and the line has
    /// been quiet for `quiet` (counted from `quiet_since` or the last byte),
    /// then discard the port's input buffer.
    async fn drain(
        &mut self,
        until: Instant,
        quiet_since: Instant,
        quiet: Duration,
    ) -> Result<(), LinkError> {
        let give_up = until.max(Instant::now()) + self.quiet_period() * DRAIN_LIMIT;
        let port = self.port.as_mut().ok_or(LinkError::Closed)?;
        let mut scratch = [0_u8; 256];
        let mut last = quiet_since;
        loop {
            let end = until.max(last + quiet);
            // `timeout_at` polls the read first: bytes already there are
            // read even when `end` has passed.
            match tokio::time::timeout_at(end, port.read(&mut scratch)).await {
                Err(_) => break,
                Ok(Ok(0)) => return Err(LinkError::Closed),
                Ok(Ok(_)) => {
                    last = Instant::now();
                    self.last_activity = last;
                    if last >= give_up {
                        return Err(LinkError::Malformed {
                            detail: "the line does not go quiet".into(),
                        });
                    }
                }
                Ok(Err(error)) => return Err(link_io_error(error)),
            }
        }
        let _ = port.clear(tokio_serial::ClearBuffer::Input);
        self.dirty = None;
        Ok(())
    }

    /// Whether `buf` starts with the answer to an unanswered request of
    /// unit `got` (another unit than the one asked now).
    fn late_reply(&self, buf: &[u8], got: u8) -> LateReply {
        let mut partial = false;
        for (index, entry) in self.unanswered.iter().enumerate() {
            if entry.unit != got {
                continue;
            }
            match rtu::parse_response(buf, got, entry.area, entry.count) {
                Ok(Parsed::Complete { len, .. }) => return LateReply::Whole { len, index },
                Ok(Parsed::Incomplete) => partial = true,
                Err(_) => {}
            }
        }
        if partial {
            LateReply::Partial
        } else {
            LateReply::No
        }
    }

    async fn exchange(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        self.open()?;
        self.prepare(unit).await?;
        if let Some(at) = self.line_free_at {
            wait_precisely(at).await;
        }
        let timeout = self.timeout;
        let frame = rtu::encode_request(unit, area, start, count);
        // The answer cannot start before the request has left the wire.
        let sent_at = Instant::now() + self.chars(frame.len());
        let mut deadline = sent_at + timeout;
        let answer_time = self.chars(rtu::response_len(area, count)) + MIN_QUIET;
        self.in_flight = Some((unit, area, count));
        self.last_activity = sent_at;
        let port = self.port.as_mut().ok_or(LinkError::Closed)?;
        match tokio::time::timeout_at(deadline, async {
            port.write_all(&frame).await?;
            port.flush().await
        })
        .await
        {
            Err(_) => return Err(LinkError::Timeout { after: timeout }.into()),
            Ok(Err(error)) => return Err(link_io_error(error).into()),
            Ok(Ok(())) => {}
        }
        let mut received = Vec::with_capacity(256);
        let mut chunk = [0_u8; 256];
        let mut answering = false;
        loop {
            let port = self.port.as_mut().ok_or(LinkError::Closed)?;
            let got = match tokio::time::timeout_at(deadline, port.read(&mut chunk)).await {
                Err(_) if received.is_empty() => {
                    return Err(LinkError::Timeout { after: timeout }.into());
                }
                Err(_) => {
                    return Err(LinkError::Truncated {
                        got: received.len(),
                    }
                    .into());
                }
                Ok(Ok(0)) => return Err(LinkError::Closed.into()),
                Ok(Ok(got)) => got,
                Ok(Err(error)) => return Err(link_io_error(error).into()),
            };
            self.last_activity = Instant::now();
            if !answering {
                // The timeout bounds the wait for the first byte; the rest of
                // the frame then follows at line speed.
                answering = true;
                deadline = deadline.max(self.last_activity + answer_time);
            }
            received.extend_from_slice(chunk.get(..got).unwrap_or_default());
            loop {
                let error = match rtu::parse_response(&received, unit, area, count) {
                    Ok(Parsed::Incomplete) => break,
                    Ok(Parsed::Complete { answer, len }) => {
                        self.in_flight = None;
                        self.line_free_at =
                            Some(Instant::now() + self.bus.silent_interval() + self.bus.turnaround);
                        if received.len() > len {
                            // Bytes after the answer: clean the line before the next request.
                            self.dirty = Some(self.last_activity);
                        }
                        return answer.map_err(ReadError::Exception);
                    }
                    Err(error) => error,
                };
                let LinkError::WrongUnit { got, .. } = error else {
                    return Err(error.into());
                };
                match self.late_reply(&received, got) {
                    LateReply::Whole { len, index } => {
                        // Another unit's answer to a request that had timed
                        // out: it cannot be ours (unit id and CRC checked).
                        received.drain(..len.min(received.len()));
                        if index < self.unanswered.len() {
                            self.unanswered.swap_remove(index);
                        }
                        self.late_replies += 1;
                        tracing::debug!(
                            unit = got,
                            asked = unit,
                            "Discarded a late reply in front of the answer"
                        );
                    }
                    LateReply::Partial => break,
                    LateReply::No => return Err(error.into()),
                }
            }
        }
    }

    /// One exchange, and the line's bookkeeping after it failed.
    async fn read_once(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        let result = self.exchange(unit, area, start, count).await;
        if let Err(ReadError::Link(error)) = &result {
            if let Some((unit, area, count)) = self.in_flight.take() {
                // Its answer may still come: re-asking this unit waits for it.
                self.unanswered.push(Unanswered {
                    unit,
                    area,
                    count,
                    until: Instant::now() + self.quiet_period(),
                });
            }
            if matches!(error, LinkError::Connect { .. }) {
                // Nothing was sent: the port could not be opened.
                return result;
            }
            self.dirty = Some(self.last_activity);
            if matches!(error, LinkError::Io { .. } | LinkError::Closed) {
                // EIO, a vanished adapter, a closed peer: reopen.
                self.close();
            }
        }
        result
    }
}

impl Link for RtuLink {
    async fn ready(&mut self) {
        if self.open().is_ok()
            && let Some(at) = self.line_free_at
        {
            tokio::time::sleep_until(at).await;
        }
    }

    async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        let now = Instant::now();
        let exposed = self
            .unanswered
            .iter()
            .any(|entry| entry.unit != unit && entry.until > now);
        let result = self.read_once(unit, area, start, count).await;
        match &result {
            // A garbled answer while another unit's answer was still due: most
            // likely a late reply collided with it. Ask again, once; this unit
            // is unanswered now, so the line is drained long first.
            Err(ReadError::Link(error)) if exposed && !error.is_unreachable() => {
                tracing::debug!(
                    unit,
                    %error,
                    "Asking again after a garbled answer on a line with a late reply due"
                );
                self.read_once(unit, area, start, count).await
            }
            _ => result,
        }
    }
}

/// Wait until `at`, to well under a millisecond: tokio's timers round up to
/// the next millisecond tick (a silent interval at 19200 baud is 2 ms, so
/// that would waste up to half of it per frame). Sleeps to a millisecond
/// short of `at`, then yields to the runtime until `at` has passed.
async fn wait_precisely(at: Instant) {
    let coarse = at.checked_sub(Duration::from_millis(1));
    if let Some(coarse) = coarse
        && Instant::now() < coarse
    {
        tokio::time::sleep_until(coarse).await;
    }
    while Instant::now() < at {
        tokio::task::yield_now().await;
    }
}

/// A device's link, TCP or RTU (for code that holds either).
#[derive(Debug)]
pub enum AnyLink {
    Tcp(TcpLink),
    Rtu(RtuLink),
}

impl AnyLink {
    pub fn set_timeout(&mut self, timeout: Duration) {
        match self {
            AnyLink::Tcp(link) => link.set_timeout(timeout),
            AnyLink::Rtu(link) => link.set_timeout(timeout),
        }
    }

    /// Late replies recognised and discarded on an RTU line (0 over TCP,
    /// where a late reply closes the connection instead).
    pub fn late_replies(&self) -> u64 {
        match self {
            AnyLink::Tcp(_) => 0,
            AnyLink::Rtu(link) => link.late_replies(),
        }
    }
}

impl Link for AnyLink {
    async fn ready(&mut self) {
        match self {
            AnyLink::Tcp(link) => link.ready().await,
            AnyLink::Rtu(link) => link.ready().await,
        }
    }

    async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        match self {
            AnyLink::Tcp(link) => link.read(unit, area, start, count).await,
            AnyLink::Rtu(link) => link.read(unit, area, start, count).await,
        }
    }
}
