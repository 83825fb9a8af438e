//! The thin I/O shell of the line discipline: [`LineLink`] carries out one
//! request's exchange on a port — drain as [`LineState`] decides, keep the
//! silent interval, send, read until the [`Framing`] says answer, discard
//! late and foreign frames and noise in front of it.
//!
//! It is generic over its port ([`Port`]: a serial port, or an in-memory
//! duplex in tests) and over how it waits for the instant a frame may start
//! ([`Clock`]): [`PreciseClock`] sleeps to a millisecond short of it and
//! yields for the rest (tokio's timers round up to whole milliseconds,
//! which costs throughput at 19200 baud), [`TimerClock`] only sleeps, so
//! tokio's paused clock can drive a whole exchange in tests. Every instant
//! is tokio's, so paused time is the link's time.
//!
//! Timing: a request's timeout bounds the wait for the first byte of the
//! answer after the request has left the wire; once the answer has started
//! the rest gets its on-wire time plus [`MIN_QUIET`] (and again after a
//! discarded frame). Error words: nothing arrived → `timeout`; bytes that
//! make no answer → `decode`; a port that closed or failed →
//! `disconnected`: the owner then detaches the port (and reopens one).

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use super::{Drain, Framing, LineState, MIN_QUIET, Verdict};

/// Longest a drain waits for the line to go quiet, in quiet periods.
const DRAIN_LIMIT: u32 = 8;

/// A byte stream a line link can own.
pub trait Port: AsyncRead + AsyncWrite + Unpin + Send + Sync {
    /// Discard what the driver holds of the input (best effort).
    fn discard_input(&mut self) {}
}

impl Port for tokio_serial::SerialStream {
    fn discard_input(&mut self) {
        let _ = tokio_serial::SerialPort::clear(self, tokio_serial::ClearBuffer::Input);
    }
}

impl Port for tokio::io::DuplexStream {}

/// How a link waits for the instant the next frame may start.
pub trait Clock: Send + Sync + fmt::Debug {
    fn wait_until(&self, at: Instant) -> impl Future<Output = ()> + Send;
}

/// Real time, to well under a millisecond: sleeps to a millisecond short of
/// the instant, then yields to the runtime until it has passed.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreciseClock;

impl Clock for PreciseClock {
    async fn wait_until(&self, at: Instant) {
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
}

/// tokio's timer alone (whole milliseconds): what a paused clock can drive.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimerClock;

impl Clock for TimerClock {
    async fn wait_until(&self, at: Instant) {
        tokio::time::sleep_until(at).await;
    }
}

/// Why an exchange brought no answer.
#[derive(Debug, Clone, Error)]
pub enum ExchangeError<E: std::error::Error + 'static> {
    #[error("no answer within {after:?}")]
    Timeout { after: Duration },
    #[error("the answer stopped after {got} bytes")]
    Truncated { got: usize },
    #[error("the port is closed")]
    Closed,
    #[error("the port failed: {0}")]
    Io(Arc<io::Error>),
    #[error("the line does not go quiet")]
    NotQuiet,
    #[error(transparent)]
    Garbage(E),
}

impl<E: std::error::Error + 'static> ExchangeError<E> {
    /// The SPEC §5 error word.
    pub fn word(&self) -> &'static str {
        match self {
            ExchangeError::Timeout { .. } => "timeout",
            ExchangeError::Closed | ExchangeError::Io(_) => "disconnected",
            ExchangeError::Truncated { .. }
            | ExchangeError::NotQuiet
            | ExchangeError::Garbage(_) => "decode",
        }
    }
}

/// One serial line: a port (when open), its [`LineState`], its clock.
#[derive(Debug)]
pub struct LineLink<F: Framing, P: Port, C: Clock> {
    port: Option<P>,
    state: LineState<F>,
    clock: C,
    char_time: Duration,
    last_activity: Instant,
    last_answer: Vec<u8>,
}

impl<F, P, C> LineLink<F, P, C>
where
    F: Framing,
    F::Error: std::error::Error + 'static,
    P: Port,
    C: Clock,
{
    /// A line with `silent` between frames plus `turnaround` after an
    /// answer, `char_time` per character; no port yet.
    pub fn new(silent: Duration, turnaround: Duration, char_time: Duration, clock: C) -> Self {
        LineLink {
            port: None,
            state: LineState::new(silent, turnaround),
            clock,
            char_time,
            last_activity: Instant::now(),
            last_answer: Vec::new(),
        }
    }

    /// Use `port` (freshly opened, its input discarded).
    pub fn attach(&mut self, port: P) {
        let now = Instant::now();
        self.port = Some(port);
        self.state.opened(now);
        self.last_activity = now;
    }

    /// Give up the port; whatever was owed on it is forgotten.
    pub fn detach(&mut self) -> Option<P> {
        self.state.closed();
        self.port.take()
    }

    pub fn is_attached(&self) -> bool {
        self.port.is_some()
    }

    pub fn state(&self) -> &LineState<F> {
        &self.state
    }

    /// The bytes of the last answer taken (for commissioning output).
    pub fn last_answer(&self) -> &[u8] {
        &self.last_answer
    }

    /// Wait until the next frame may start.
    pub async fn wait_free(&self) {
        if let Some(at) = self.state.free_at() {
            self.clock.wait_until(at).await;
        }
    }

    fn chars(&self, chars: usize) -> Duration {
        self.char_time
            .saturating_mul(u32::try_from(chars).unwrap_or(u32::MAX))
    }

    /// Ask `request` (sent as `frame`, answered in about `answer_len`
    /// bytes) and read its answer. A garbled answer while another device's
    /// late reply was due is most likely a collision with it: that request
    /// is asked once more (after a long drain, its device now owing one).
    pub async fn exchange(
        &mut self,
        request: &F::Request,
        frame: &[u8],
        answer_len: usize,
        timeout: Duration,
    ) -> Result<F::Answer, ExchangeError<F::Error>> {
        let exposed = self.state.exposed(request, Instant::now());
        let result = self
            .exchange_counted(request, frame, answer_len, timeout)
            .await;
        match result {
            Err(error) if exposed && error.word() == "decode" => {
                tracing::debug!(%error, "Asking again after a garbled answer on a line with a late reply due");
                self.exchange_counted(request, frame, answer_len, timeout)
                    .await
            }
            other => other,
        }
    }

    async fn exchange_counted(
        &mut self,
        request: &F::Request,
        frame: &[u8],
        answer_len: usize,
        timeout: Duration,
    ) -> Result<F::Answer, ExchangeError<F::Error>> {
        let result = self
            .exchange_once(request, frame, answer_len, timeout)
            .await;
        if result.is_err() {
            self.state
                .failed(Instant::now(), self.last_activity, timeout);
        }
        result
    }

    async fn exchange_once(
        &mut self,
        request: &F::Request,
        frame: &[u8],
        answer_len: usize,
        timeout: Duration,
    ) -> Result<F::Answer, ExchangeError<F::Error>> {
        if self.port.is_none() {
            return Err(ExchangeError::Closed);
        }
        let drain = self.state.drain_before(request, Instant::now());
        if drain != Drain::None {
            self.drain(drain, timeout).await?;
            self.state.drained(request);
        }
        self.wait_free().await;
        // The answer cannot start before the request has left the wire.
        let sent_at = Instant::now() + self.chars(frame.len());
        let mut deadline = sent_at + timeout;
        let answer_time = self.chars(answer_len) + MIN_QUIET;
        self.state.sent(request.clone());
        self.last_activity = sent_at;
        let port = self.port.as_mut().ok_or(ExchangeError::Closed)?;
        match tokio::time::timeout_at(deadline, async {
            port.write_all(frame).await?;
            port.flush().await
        })
        .await
        {
            Err(_) => return Err(ExchangeError::Timeout { after: timeout }),
            Ok(Err(error)) => return Err(ExchangeError::Io(Arc::new(error))),
            Ok(Ok(())) => {}
        }
        let mut received: Vec<u8> = Vec::with_capacity(256);
        let mut chunk = [0_u8; 256];
        let mut answering = false;
        loop {
            let port = self.port.as_mut().ok_or(ExchangeError::Closed)?;
            let got = match tokio::time::timeout_at(deadline, port.read(&mut chunk)).await {
                Err(_) if received.is_empty() && !answering => {
                    return Err(ExchangeError::Timeout { after: timeout });
                }
                Err(_) => {
                    return Err(ExchangeError::Truncated {
                        got: received.len(),
                    });
                }
                Ok(Ok(0)) => return Err(ExchangeError::Closed),
                Ok(Ok(got)) => got,
                Ok(Err(error)) => return Err(ExchangeError::Io(Arc::new(error))),
            };
            let now = Instant::now();
            self.last_activity = now;
            if !answering {
                // The timeout bounds the wait for the first byte; the rest
                // then follows at line speed.
                answering = true;
                deadline = deadline.max(now + answer_time);
            }
            received.extend_from_slice(chunk.get(..got).unwrap_or_default());
            loop {
                match self.state.classify(&received, request) {
                    Verdict::Partial => break,
                    Verdict::Answer { answer, len } => {
                        self.state.answered(now, received.len() > len);
                        self.last_answer = received.get(..len).unwrap_or_default().to_vec();
                        return Ok(answer);
                    }
                    Verdict::Late { len, .. }
                    | Verdict::Foreign { len }
                    | Verdict::Noise { len } => {
                        tracing::debug!(len, "Discarded bytes in front of the answer");
                        received.drain(..len.min(received.len()));
                        // The answer may still follow behind what was discarded.
                        deadline = deadline.max(now + answer_time);
                        if received.is_empty() {
                            break;
                        }
                    }
                    Verdict::Garbage(error) => return Err(ExchangeError::Garbage(error)),
                }
            }
        }
    }

    /// Discard whatever arrives until `drain` ends, then the driver's input.
    async fn drain(
        &mut self,
        drain: Drain,
        timeout: Duration,
    ) -> Result<(), ExchangeError<F::Error>> {
        let give_up = drain
            .ends_at(None)
            .unwrap_or_else(Instant::now)
            .max(Instant::now())
            + self.state.quiet_period(timeout) * DRAIN_LIMIT;
        let port = self.port.as_mut().ok_or(ExchangeError::Closed)?;
        let mut scratch = [0_u8; 256];
        let mut last = None;
        while let Some(end) = drain.ends_at(last) {
            // `timeout_at` polls the read first: bytes already there are
            // read even when `end` has passed.
            match tokio::time::timeout_at(end, port.read(&mut scratch)).await {
                Err(_) => break,
                Ok(Ok(0)) => return Err(ExchangeError::Closed),
                Ok(Ok(_)) => {
                    let now = Instant::now();
                    last = Some(now);
                    self.last_activity = now;
                    if now >= give_up {
                        return Err(ExchangeError::NotQuiet);
                    }
                }
                Ok(Err(error)) => return Err(ExchangeError::Io(Arc::new(error))),
            }
        }
        port.discard_input();
        Ok(())
    }
}
