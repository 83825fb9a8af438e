//! Read-only Modbus links: [`TcpLink`] and [`RtuLink`], behind the [`Link`]
//! trait, whose only operation is `read` (function codes 1–4). There is no
//! write function on any link, by type: the agent cannot write to a device.
//!
//! Invariants every link keeps:
//! * every request runs under the link's timeout;
//! * both framings are our own ([`mbap`] for TCP, [`rtu`]), and an answer is
//!   checked against what was asked in every field: registers exactly
//!   `count`, bits at least `count` (then cut to `count`), else
//!   [`LinkError::ShortResponse`] (tokio-modbus's client does not check this
//!   in release builds and panics on it in debug builds);
//! * the error says what happened on the wire: nothing arrived within the
//!   timeout → `timeout`; bytes arrived but are not a whole, consistent
//!   answer (inconsistent in any field, still incomplete at the timeout, or
//!   cut off by the peer closing) → `decode`; `disconnected` only for a link
//!   that could not be opened or closed before any byte of the answer;
//! * after a timeout or any other link error, the link is made clean before
//!   its next request, so a late reply is never taken as the answer to the
//!   next request: TCP drops the connection (and one that had bytes after an
//!   answer, or bytes or a close while idle) and reconnects lazily on the
//!   next request; RTU follows the drain rule below. Reconnecting to clean
//!   the link is not a lost link and is not reported as one;
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
//! The rule is carried out by the protocol-neutral line discipline,
//! [`crate::line`] (decisions in the pure `LineState`, I/O in `LineLink`,
//! generic over port and clock); an [`RtuLink`] is one bus whose devices may
//! be Modbus units and DL/T 645 meters alike, so the rule spans both.
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
use tokio_serial::{SerialPort as _, SerialStream};

use super::error::{LinkError, ReadError};
use super::mbap;
use super::rtu::{self, Parsed, RtuRequest};
use crate::backoff::Backoff;
use crate::dlt645;
use crate::line::{
    BusAnswer, BusError, BusRequest, ExchangeError, LineLink, MixedFraming, PreciseClock,
};

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

    /// The values in the data bytes of an answer to a read of `count` values
    /// of `area` (the bytes after the byte count, RTU and TCP alike):
    /// registers exactly `count` (big-endian words), bits at least `count`
    /// (least significant bit first, cut to `count`).
    pub fn from_data(area: Area, count: u16, data: &[u8]) -> Result<Response, LinkError> {
        let expected = usize::from(count);
        if area.is_bit() {
            let bits: Vec<bool> = data
                .iter()
                .flat_map(|byte| (0..8).map(move |bit| byte >> bit & 1 == 1))
                .take(expected)
                .collect();
            if bits.len() < expected {
                return Err(LinkError::ShortResponse {
                    expected: count,
                    got: bits.len(),
                });
            }
            return Ok(Response::Bits(bits));
        }
        if data.len() % 2 != 0 {
            return Err(LinkError::Malformed {
                detail: format!("odd byte count {} for registers", data.len()),
            });
        }
        let words: Vec<u16> = data
            .chunks_exact(2)
            .map(|pair| {
                u16::from_be_bytes([
                    pair.first().copied().unwrap_or(0),
                    pair.get(1).copied().unwrap_or(0),
                ])
            })
            .collect();
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

/// A Modbus TCP link to one `HOST:PORT` (a device or a gateway). The MBAP
/// framing is our own ([`mbap`]), so that every answer that arrived but is
/// not the answer asked for is `decode`, whatever field is wrong.
pub struct TcpLink {
    target: String,
    timeout: Duration,
    /// The open connection, clean: no request is out on it.
    stream: Option<TcpStream>,
    /// Transaction id of the last request sent.
    transaction: u16,
    reconnect: Reconnect,
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("connected", &self.stream.is_some())
            .field("transaction", &self.transaction)
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
            stream: None,
            transaction: 0,
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
        self.stream.is_some()
    }

    /// When the next connection attempt may be made, after a failed one.
    pub fn retry_at(&self) -> Option<Instant> {
        self.reconnect.retry_at
    }

    /// Drop the connection (if any); the next read reconnects.
    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    /// Open the connection if there is none. An idle connection with
    /// something to read (stray bytes, or the peer's close) is not clean: it
    /// is dropped and a new one opened, so what the next request reads can
    /// only be its own answer.
    async fn connect(&mut self) -> Result<(), LinkError> {
        if let Some(stream) = &self.stream
            && !is_quiet(stream)
        {
            tracing::debug!(
                target = %self.target,
                "Reconnecting: the idle connection had bytes to read or was closed"
            );
            self.stream = None;
        }
        if self.stream.is_some() {
            return Ok(());
        }
        self.reconnect
            .check(&self.target, "waiting before the next connection attempt")?;
        let attempt = tokio::time::timeout(self.timeout, TcpStream::connect(&self.target))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        match attempt {
            Ok(stream) => {
                // Small requests: do not wait to fill a segment.
                stream.set_nodelay(true).map_err(LinkError::io)?;
                self.stream = Some(stream);
                self.reconnect.succeeded();
                Ok(())
            }
            Err(source) => Err(self.reconnect.failed(&self.target, source)),
        }
    }

    async fn exchange(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        let timeout = self.timeout;
        self.connect().await?;
        // Taken out, and put back only after a whole answer with nothing
        // behind it: after any failure the connection is closed, so a late
        // reply never reaches the next request (it reconnects). That reopening
        // is not a lost link and reports nothing of its own.
        let Some(mut stream) = self.stream.take() else {
            return Err(LinkError::Closed.into());
        };
        self.transaction = self.transaction.wrapping_add(1);
        let transaction = self.transaction;
        let deadline = Instant::now() + timeout;
        let request = mbap::encode_request(transaction, unit, area, start, count);
        match tokio::time::timeout_at(deadline, stream.write_all(&request)).await {
            Err(_) => return Err(LinkError::Timeout { after: timeout }.into()),
            Ok(Err(error)) => return Err(LinkError::io(error).into()),
            Ok(Ok(())) => {}
        }
        let mut received = Vec::with_capacity(64);
        let mut chunk = [0_u8; 256];
        loop {
            let got = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(got)) if got > 0 => got,
                // Nothing arrived: a silent device, or a connection that is gone.
                Err(_) if received.is_empty() => {
                    return Err(LinkError::Timeout { after: timeout }.into());
                }
                Ok(Ok(_)) if received.is_empty() => return Err(LinkError::Closed.into()),
                Ok(Err(error)) if received.is_empty() => return Err(LinkError::io(error).into()),
                // Part of an answer arrived, then no more: the deadline
                // passed, or the peer closed (or reset) the connection in the
                // middle of its answer. Bytes came, so the device is there
                // and its answer is what failed: `decode`, not `disconnected`.
                _ => {
                    return Err(LinkError::Truncated {
                        got: received.len(),
                    }
                    .into());
                }
            };
            received.extend_from_slice(chunk.get(..got).unwrap_or_default());
            if let Parsed::Complete { answer, len } =
                mbap::parse_response(&received, transaction, unit, area, count)?
            {
                if received.len() == len {
                    self.stream = Some(stream);
                } else {
                    tracing::debug!(
                        target = %self.target,
                        extra = received.len() - len,
                        "Reconnecting: the device sent bytes after its answer"
                    );
                }
                return answer.map_err(ReadError::Exception);
            }
        }
    }
}

/// Whether an idle connection has nothing to read (no stray bytes, no close
/// from the peer), as far as the runtime has seen.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0_u8; 1];
    matches!(stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
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
        self.exchange(unit, area, start, count).await
    }
}

/// A serial bus (RS-485), shared by its devices one request at a time —
/// Modbus RTU units and DL/T 645 meters alike. The line discipline is the
/// protocol-neutral [`crate::line`] ([`LineLink`] with [`MixedFraming`]);
/// this type opens and reopens the port, with backoff, and speaks Modbus
/// through [`Link`] and DL/T 645 through [`RtuLink::read_dlt645`].
#[derive(Debug)]
pub struct RtuLink {
    bus: SerialBus,
    timeout: Duration,
    /// Boxed: the line is most of the link, and `AnyLink` holds either kind.
    line: Box<LineLink<MixedFraming, SerialStream, PreciseClock>>,
    reconnect: Reconnect,
}

impl RtuLink {
    /// A link on `bus`; it opens the port on the first read.
    pub fn new(bus: &SerialBus, timeout: Duration) -> Self {
        Self {
            bus: bus.clone(),
            timeout,
            line: Box::new(LineLink::new(
                bus.silent_interval(),
                bus.turnaround,
                bus.char_time(),
                PreciseClock,
            )),
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
        self.line.is_attached()
    }

    /// When the next attempt to open the port may be made, after a failed one.
    pub fn retry_at(&self) -> Option<Instant> {
        self.reconnect.retry_at
    }

    /// How long a unit that did not answer may still answer late: a unit
    /// re-asked within this time after its failure gets a long drain first.
    pub fn quiet_period(&self) -> Duration {
        self.line.state().quiet_period(self.timeout)
    }

    /// Late replies recognized and discarded so far (each one the answer to
    /// a request that had timed out, arriving in front of another answer).
    pub fn late_replies(&self) -> u64 {
        self.line.state().late_replies()
    }

    /// Whole DL/T 645 frames that answered something else (another meter's
    /// answer, a reply no request of ours is owed), discarded.
    pub fn foreign_replies(&self) -> u64 {
        self.line.state().foreign_replies()
    }

    /// The bytes of the last answer taken.
    pub fn last_answer(&self) -> &[u8] {
        self.line.last_answer()
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
        if self.line.is_attached() {
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
                self.line.attach(port);
                self.reconnect.succeeded();
                Ok(())
            }
            Err(error) => Err(self
                .reconnect
                .failed(&self.bus.port, io::Error::from(error))),
        }
    }

    /// Close the port; the next read reopens it.
    pub fn close(&mut self) {
        if let Some(mut port) = self.line.detach() {
            // Let the port be opened again (TIOCEXCL outlives us while a
            // pseudo-terminal's other side keeps it open).
            let _ = port.set_exclusive(false);
        }
    }

    /// Read `di` from the DL/T 645 meter at `address` on this bus: the value
    /// bytes (minus 33H, low byte first), `value_len` of them expected.
    pub async fn read_dlt645(
        &mut self,
        address: dlt645::Address,
        di: dlt645::Di,
        value_len: usize,
    ) -> Result<Vec<u8>, dlt645::ReadError> {
        self.open().map_err(dlt645::ReadError::Open)?;
        let result =
            dlt645::read_value(&mut *self.line, address, di, value_len, self.timeout).await;
        if let Err(dlt645::ReadError::Link(ExchangeError::Closed | ExchangeError::Io(_))) = &result
        {
            // EIO, a vanished adapter, a closed peer: reopen.
            self.close();
        }
        result
    }

    /// One poll of a DL/T 645 meter on this bus through its `poller`: a
    /// result per point, in the poller's point order.
    pub async fn poll_dlt645(
        &mut self,
        poller: &mut dlt645::poll::MeterPoller,
    ) -> Vec<Result<f64, dlt645::poll::PointError>> {
        if let Err(error) = self.open() {
            let error = dlt645::poll::PointError::Read(dlt645::ReadError::Open(error));
            return vec![Err(error); poller.points().len()];
        }
        let results = poller.poll(&mut *self.line, self.timeout).await;
        if results.iter().any(|result| {
            matches!(
                result,
                Err(dlt645::poll::PointError::Read(dlt645::ReadError::Link(
                    ExchangeError::Closed | ExchangeError::Io(_)
                )))
            )
        }) {
            // EIO, a vanished adapter, a closed peer: reopen.
            self.close();
        }
        results
    }

    /// Find the DL/T 645 meters on this bus by address abbreviation
    /// ([`dlt645::scan`]); `progress` sees each address probed and the count
    /// found so far.
    pub async fn find_dlt645_meters(
        &mut self,
        progress: impl FnMut(&dlt645::Address, usize),
    ) -> Result<Vec<dlt645::scan::Found>, dlt645::ReadError> {
        self.open().map_err(dlt645::ReadError::Open)?;
        let result = dlt645::scan::find_meters(&mut *self.line, self.timeout, progress).await;
        if let Err(ExchangeError::Closed | ExchangeError::Io(_)) = &result {
            self.close();
        }
        result.map_err(dlt645::ReadError::Link)
    }

    /// Read the address of the one DL/T 645 meter on this bus (13H).
    pub async fn read_dlt645_address(&mut self) -> Result<dlt645::Address, dlt645::ReadError> {
        self.open().map_err(dlt645::ReadError::Open)?;
        let result = dlt645::read_address(&mut *self.line, self.timeout).await;
        if let Err(dlt645::ReadError::Link(ExchangeError::Closed | ExchangeError::Io(_))) = &result
        {
            self.close();
        }
        result
    }
}

/// A line failure in Modbus's link-error words.
fn bus_link_error(error: ExchangeError<BusError>) -> LinkError {
    match error {
        ExchangeError::Timeout { after } => LinkError::Timeout { after },
        ExchangeError::Truncated { got } => LinkError::Truncated { got },
        ExchangeError::Closed => LinkError::Closed,
        ExchangeError::Io(source) => match source.kind() {
            io::ErrorKind::InvalidData => LinkError::Malformed {
                detail: source.to_string(),
            },
            io::ErrorKind::UnexpectedEof => LinkError::Closed,
            _ => LinkError::Io { source },
        },
        ExchangeError::NotQuiet => LinkError::Malformed {
            detail: "the line does not go quiet".into(),
        },
        ExchangeError::Garbage(BusError::Modbus(error)) => error,
        ExchangeError::Garbage(BusError::Dlt645(error)) => LinkError::Malformed {
            detail: error.to_string(),
        },
    }
}

impl Link for RtuLink {
    async fn ready(&mut self) {
        if self.open().is_ok() {
            self.line.wait_free().await;
        }
    }

    async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        self.open()?;
        let request = BusRequest::Modbus(RtuRequest { unit, area, count });
        let frame = rtu::encode_request(unit, area, start, count);
        let answer_len = rtu::response_len(area, count);
        match self
            .line
            .exchange(&request, &frame, answer_len, self.timeout)
            .await
        {
            Ok(BusAnswer::Modbus(answer)) => answer.map_err(ReadError::Exception),
            Ok(BusAnswer::Dlt645(_)) => Err(LinkError::Malformed {
                detail: "a DL/T 645 answer to a Modbus request".into(),
            }
            .into()),
            Err(error) => {
                let error = bus_link_error(error);
                if matches!(error, LinkError::Io { .. } | LinkError::Closed) {
                    // EIO, a vanished adapter, a closed peer: reopen.
                    self.close();
                }
                Err(error.into())
            }
        }
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
