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
//!   request; RTU waits until the line has been quiet for
//!   `max(timeout, silent interval, 20 ms)` (discarding what arrives), then
//!   discards the port's input buffer. On RTU, a reply later than about
//!   twice the timeout cannot be told from an answer and is the one case this
//!   cannot catch: set timeouts above the device's worst answer time;
//! * RTU frames are separated by at least the bus's silent interval plus its
//!   `turnaround`; an RTU link is one bus, shared by its devices one request
//!   at a time (it takes the unit id per request);
//! * a link that cannot be (re)opened waits a jittered exponential
//!   [`Backoff`] before trying again; meanwhile reads fail at once with a
//!   `disconnected` error ([`LinkError::Connect`]).

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

use super::backoff::Backoff;
use super::error::{LinkError, ReadError};
use super::rtu::{self, Parsed};

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
}

/// Backoff links use between failed (re)connection attempts: 500 ms doubling
/// to 30 s, 20 % jitter.
pub fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.2)
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
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("connected", &self.context.is_some())
            .field("retry_at", &self.retry_at)
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
            backoff: reconnect_backoff(),
            retry_at: None,
        }
    }

    /// Use `backoff` between failed connection attempts.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
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
        self.retry_at
    }

    /// Drop the connection (if any); the next read reconnects.
    pub fn disconnect(&mut self) {
        self.context = None;
    }

    async fn connect(&mut self) -> Result<&mut Context, LinkError> {
        if self.context.is_none() {
            if let Some(at) = self.retry_at
                && Instant::now() < at
            {
                return Err(LinkError::Connect {
                    target: self.target.clone(),
                    source: Arc::new(io::Error::other(
                        "waiting before the next connection attempt",
                    )),
                });
            }
            let attempt = tokio::time::timeout(self.timeout, TcpStream::connect(&self.target))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
            match attempt {
                Ok(stream) => {
                    // Small requests: do not wait to fill a segment.
                    stream.set_nodelay(true).map_err(LinkError::io)?;
                    self.context = Some(tokio_modbus::client::tcp::attach(stream));
                    self.backoff.reset();
                    self.retry_at = None;
                }
                Err(source) => {
                    self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                    return Err(LinkError::Connect {
                        target: self.target.clone(),
                        source: Arc::new(source),
                    });
                }
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

/// Shortest quiet period that ends an RTU drain.
const MIN_QUIET: Duration = Duration::from_millis(20);

/// Longest an RTU drain waits for the line to go quiet, in quiet periods.
const DRAIN_LIMIT: u32 = 8;

/// A Modbus RTU link: one serial bus (RS-485), shared by its devices one
/// request at a time. The RTU framing is our own ([`rtu`]).
#[derive(Debug)]
pub struct RtuLink {
    bus: SerialBus,
    timeout: Duration,
    port: Option<SerialStream>,
    /// A timeout or link error happened: drain before the next request.
    dirty: bool,
    /// Earliest instant the next request may start (silent interval and
    /// turnaround after the last frame).
    line_free_at: Option<Instant>,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl RtuLink {
    /// A link on `bus`; it opens the port on the first read.
    pub fn new(bus: &SerialBus, timeout: Duration) -> Self {
        Self {
            bus: bus.clone(),
            timeout,
            port: None,
            dirty: false,
            line_free_at: None,
            backoff: reconnect_backoff(),
            retry_at: None,
        }
    }

    /// Use `backoff` between failed attempts to open the port.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
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
        self.retry_at
    }

    /// How long the line must stay silent to end a drain.
    pub fn quiet_period(&self) -> Duration {
        self.timeout.max(self.bus.silent_interval()).max(MIN_QUIET)
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
        let refuse = |target: &str, source: io::Error| LinkError::Connect {
            target: target.to_owned(),
            source: Arc::new(source),
        };
        if let Some(at) = self.retry_at
            && Instant::now() < at
        {
            return Err(refuse(
                &self.bus.port,
                io::Error::other("waiting before the next attempt to open the port"),
            ));
        }
        match SerialStream::open(&self.builder()) {
            Ok(port) => {
                // Best effort: a port that cannot flush is drained by reading.
                let _ = port.clear(tokio_serial::ClearBuffer::All);
                self.port = Some(port);
                self.backoff.reset();
                self.retry_at = None;
                self.line_free_at = Some(Instant::now() + self.bus.silent_interval());
                Ok(())
            }
            Err(error) => {
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                Err(refuse(&self.bus.port, io::Error::from(error)))
            }
        }
    }

    /// Close the port; the next read reopens it.
    pub fn close(&mut self) {
        if let Some(mut port) = self.port.take() {
            // Let the port be opened again (TIOCEXCL outlives us while a
            // pseudo-terminal's other side keeps it open).
            let _ = port.set_exclusive(false);
        }
    }

    /// Wait until the line has been quiet for a quiet period, discarding
    /// whatever arrives, then discard the port's input buffer.
    async fn drain(&mut self) -> Result<(), LinkError> {
        let quiet = self.quiet_period();
        let give_up = Instant::now() + quiet * DRAIN_LIMIT;
        let port = self.port.as_mut().ok_or(LinkError::Closed)?;
        let mut scratch = [0_u8; 256];
        loop {
            match tokio::time::timeout(quiet, port.read(&mut scratch)).await {
                Err(_) => break,
                Ok(Ok(0)) => return Err(LinkError::Closed),
                Ok(Ok(_)) if Instant::now() >= give_up => {
                    return Err(LinkError::Malformed {
                        detail: "the line does not go quiet".into(),
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(link_io_error(error)),
            }
        }
        let _ = port.clear(tokio_serial::ClearBuffer::Input);
        self.dirty = false;
        Ok(())
    }

    async fn exchange(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        self.open()?;
        if self.dirty {
            self.drain().await?;
        }
        if let Some(at) = self.line_free_at {
            tokio::time::sleep_until(at).await;
        }
        let timeout = self.timeout;
        let frame = rtu::encode_request(unit, area, start, count);
        // The answer cannot start before the request has left the wire.
        let on_wire = self
            .bus
            .char_time()
            .saturating_mul(u32::try_from(frame.len()).unwrap_or(u32::MAX));
        let deadline = Instant::now() + on_wire + timeout;
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
        loop {
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
            received.extend_from_slice(chunk.get(..got).unwrap_or_default());
            match rtu::parse_response(&received, unit, area, count)? {
                Parsed::Incomplete => {}
                Parsed::Complete { answer, len } => {
                    self.line_free_at =
                        Some(Instant::now() + self.bus.silent_interval() + self.bus.turnaround);
                    if received.len() > len {
                        // Bytes after the answer: clean the line before the next request.
                        self.dirty = true;
                    }
                    return answer.map_err(ReadError::Exception);
                }
            }
        }
    }
}

impl Link for RtuLink {
    async fn read(
        &mut self,
        unit: u8,
        area: Area,
        start: u16,
        count: u16,
    ) -> Result<Response, ReadError> {
        let result = self.exchange(unit, area, start, count).await;
        if let Err(ReadError::Link(error)) = &result {
            if matches!(error, LinkError::Connect { .. }) {
                // Nothing was sent: the port could not be opened.
                return result;
            }
            self.dirty = true;
            if matches!(error, LinkError::Io { .. } | LinkError::Closed) {
                // EIO, a vanished adapter, a closed peer: reopen.
                self.close();
            }
        }
        result
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
}

impl Link for AnyLink {
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
