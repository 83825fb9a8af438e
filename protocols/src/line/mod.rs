//! The line discipline of a half-duplex serial bus (RS-485), whatever the
//! protocol on it: which drain comes before the next request, and what the
//! bytes received so far are. Pure: it takes instants and bytes and returns
//! decisions; the link that owns the port carries them out.
//!
//! A protocol brings its [`Framing`]: how to tell, from the start of a
//! buffer, its answer to the request asked ([`Verdict::Answer`]), a whole
//! late reply to a request that got no answer ([`Verdict::Late`]), a whole
//! frame that answers something else ([`Verdict::Foreign`], only where the
//! protocol can tell — DL/T 645 echoes address and data identifier, Modbus
//! RTU does not), noise in front of a frame ([`Verdict::Noise`]), a frame
//! still arriving ([`Verdict::Partial`]), or bytes that make no answer
//! ([`Verdict::Garbage`]). Modbus RTU's framing is
//! [`crate::modbus::rtu::RtuFraming`], DL/T 645's
//! [`crate::dlt645::frame::Dlt645Framing`], and a bus shared by both
//! [`mixed::MixedFraming`].
//!
//! # The drain rule
//!
//! An RS-485 line has no transaction ids: what ties an answer to its request
//! is that it comes next. [`LineState`] keeps:
//!
//! * *unanswered* requests: a request that got no usable answer (timeout,
//!   truncated or garbled answer) may still be answered until its quiet
//!   period, `max(timeout, silent interval, 20 ms)`, has passed;
//! * whether the line is *dirty*: after any failure, or bytes after an
//!   answer, the line must be quiet before the next request.
//!
//! Before a request to a device ([`LineState::drain_before`]):
//!
//! * **re-asking a device with an unanswered request** needs a
//!   [`Drain::Long`]: its late reply would pass every check framing can
//!   make, so whatever arrives is discarded until its quiet period has
//!   passed and the line has been quiet for `max(silent interval, 20 ms)`;
//! * **asking another device on a dirty line** needs a [`Drain::Short`]:
//!   one silent interval of quiet counted from the last byte seen, then the
//!   input is discarded;
//! * a clean line needs none.
//!
//! Frames are separated by the silent interval plus the bus's turnaround
//! ([`LineState::free_at`]).
//!
//! [`link`] is the thin async shell that carries the decisions out on a
//! port.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub mod link;
pub mod mixed;

pub use link::{Clock, ExchangeError, LineLink, Port, PreciseClock, TimerClock};
pub use mixed::{BusAnswer, BusDevice, BusError, BusRequest, MixedFraming};

/// Shortest quiet that ends a long drain, and the slack an answer that has
/// started gets to finish (USB adapters deliver bytes in bursts).
pub const MIN_QUIET: Duration = Duration::from_millis(20);

/// What the start of a receive buffer is, to a line waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<A, E> {
    /// Not yet decidable: read more.
    Partial,
    /// The answer to the request asked, in the first `len` bytes.
    Answer { answer: A, len: usize },
    /// A whole reply to the unanswered request at `index` (of the list
    /// passed), `len` bytes: discard it and read on.
    Late { len: usize, index: usize },
    /// A whole, checked frame that answers neither the request asked nor an
    /// unanswered one (another master, a misaddressed meter), `len` bytes:
    /// discard it and read on.
    Foreign { len: usize },
    /// `len` bytes that cannot start a frame, in front of what may be one:
    /// discard them and read on.
    Noise { len: usize },
    /// Bytes that make no answer: the request failed (`decode`).
    Garbage(E),
}

/// A protocol's framing, as the line discipline needs it.
pub trait Framing {
    /// A request, as much of it as recognizing its answer takes.
    type Request: Clone + fmt::Debug;
    /// What a request is addressed to (a unit id, a meter address).
    type Device: PartialEq + Copy + fmt::Debug;
    type Answer;
    type Error;

    fn device(request: &Self::Request) -> Self::Device;

    /// What the start of `buf` is, to a line that asked `asked` and still
    /// has `unanswered` requests out.
    fn classify(
        buf: &[u8],
        asked: &Self::Request,
        unanswered: &[&Self::Request],
    ) -> Verdict<Self::Answer, Self::Error>;
}

/// The wait before the next request (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// The line is clean.
    None,
    /// Discard input until the line has been quiet for `quiet`, counted from
    /// `quiet_since` or the last byte that arrives.
    Short {
        quiet_since: Instant,
        quiet: Duration,
    },
    /// As `Short`, and not before `until`.
    Long {
        until: Instant,
        quiet_since: Instant,
        quiet: Duration,
    },
}

impl Drain {
    /// When the drain ends if the last byte seen arrived at `last` (`None`
    /// for no drain).
    pub fn ends_at(&self, last: Option<Instant>) -> Option<Instant> {
        match *self {
            Drain::None => None,
            Drain::Short { quiet_since, quiet } => {
                Some(last.unwrap_or(quiet_since).max(quiet_since) + quiet)
            }
            Drain::Long {
                until,
                quiet_since,
                quiet,
            } => Some(until.max(last.unwrap_or(quiet_since).max(quiet_since) + quiet)),
        }
    }
}

#[derive(Debug, Clone)]
struct Unanswered<R> {
    request: R,
    until: Instant,
}

/// The state of one serial line (see the module doc).
#[derive(Debug)]
pub struct LineState<F: Framing> {
    silent: Duration,
    turnaround: Duration,
    dirty: Option<Instant>,
    unanswered: Vec<Unanswered<F::Request>>,
    in_flight: Option<F::Request>,
    free_at: Option<Instant>,
    late_replies: u64,
    foreign_replies: u64,
}

impl<F: Framing> LineState<F> {
    /// A line whose frames are separated by `silent` plus `turnaround`.
    pub fn new(silent: Duration, turnaround: Duration) -> Self {
        LineState {
            silent,
            turnaround,
            dirty: None,
            unanswered: Vec::new(),
            in_flight: None,
            free_at: None,
            late_replies: 0,
            foreign_replies: 0,
        }
    }

    /// How long a request that failed may still be answered.
    pub fn quiet_period(&self, timeout: Duration) -> Duration {
        timeout.max(self.silent).max(MIN_QUIET)
    }

    /// The port was (re)opened at `now`, its input discarded.
    pub fn opened(&mut self, now: Instant) {
        self.dirty = None;
        self.free_at = Some(now + self.silent);
    }

    /// The port was closed: nothing on it can be answered any more.
    pub fn closed(&mut self) {
        self.in_flight = None;
        self.unanswered.clear();
    }

    /// Earliest instant the next request may start.
    pub fn free_at(&self) -> Option<Instant> {
        self.free_at
    }

    /// Whether another device than `asking`'s may still answer late (a
    /// garbled answer is then likely a collision with that reply).
    pub fn exposed(&self, asking: &F::Request, now: Instant) -> bool {
        let device = F::device(asking);
        self.unanswered
            .iter()
            .any(|entry| F::device(&entry.request) != device && entry.until > now)
    }

    /// The drain the line needs before `asking` goes out at `now`.
    pub fn drain_before(&mut self, asking: &F::Request, now: Instant) -> Drain {
        self.unanswered.retain(|entry| entry.until > now);
        let device = F::device(asking);
        let own = self
            .unanswered
            .iter()
            .filter(|entry| F::device(&entry.request) == device)
            .map(|entry| entry.until)
            .max();
        match (own, self.dirty) {
            (Some(until), quiet_since) => Drain::Long {
                until,
                quiet_since: quiet_since.unwrap_or(now),
                quiet: self.silent.max(MIN_QUIET),
            },
            (None, Some(quiet_since)) => Drain::Short {
                quiet_since,
                quiet: self.silent,
            },
            (None, None) => Drain::None,
        }
    }

    /// The drain before `asking` is done: the line is clean, and the
    /// device's unanswered requests can no longer be answered.
    pub fn drained(&mut self, asking: &F::Request) {
        let device = F::device(asking);
        self.dirty = None;
        self.unanswered
            .retain(|entry| F::device(&entry.request) != device);
    }

    /// `request` went out.
    pub fn sent(&mut self, request: F::Request) {
        self.in_flight = Some(request);
    }

    /// What the start of `buf` is; a late or foreign reply is counted (and
    /// a late one's request is answered now).
    pub fn classify(&mut self, buf: &[u8], asked: &F::Request) -> Verdict<F::Answer, F::Error> {
        let pending: Vec<&F::Request> =
            self.unanswered.iter().map(|entry| &entry.request).collect();
        let verdict = F::classify(buf, asked, &pending);
        match verdict {
            Verdict::Late { index, .. } => {
                if index < self.unanswered.len() {
                    self.unanswered.swap_remove(index);
                }
                self.late_replies += 1;
            }
            Verdict::Foreign { .. } => self.foreign_replies += 1,
            _ => {}
        }
        verdict
    }

    /// The request was answered at `now`; `leftover`: bytes came after the
    /// answer, so the line is dirty.
    pub fn answered(&mut self, now: Instant, leftover: bool) {
        self.in_flight = None;
        self.free_at = Some(now + self.silent + self.turnaround);
        if leftover {
            self.dirty = Some(now);
        }
    }

    /// The request on the line got no usable answer (`now`); the line last
    /// carried a byte at `last_activity`. Its answer may still come within
    /// the quiet period of `timeout`.
    pub fn failed(&mut self, now: Instant, last_activity: Instant, timeout: Duration) {
        if let Some(request) = self.in_flight.take() {
            self.unanswered.push(Unanswered {
                request,
                until: now + self.quiet_period(timeout),
            });
        }
        self.dirty = Some(last_activity);
    }

    /// Late replies recognized and discarded.
    pub fn late_replies(&self) -> u64 {
        self.late_replies
    }

    /// Whole frames that answered something else, discarded.
    pub fn foreign_replies(&self) -> u64 {
        self.foreign_replies
    }
}

#[cfg(test)]
mod tests {
    //! The rule with a toy framing: a frame is `[device, tag]`, its answer
    //! `[device, tag, value]`; `0xFF` is noise.

    use super::*;

    #[derive(Debug)]
    struct Toy;

    impl Framing for Toy {
        type Request = (u8, u8);
        type Device = u8;
        type Answer = u8;
        type Error = &'static str;

        fn device(request: &(u8, u8)) -> u8 {
            request.0
        }

        fn classify(
            buf: &[u8],
            asked: &(u8, u8),
            unanswered: &[&(u8, u8)],
        ) -> Verdict<u8, &'static str> {
            let noise = buf.iter().take_while(|&&byte| byte == 0xFF).count();
            if noise > 0 {
                return Verdict::Noise { len: noise };
            }
            let [device, tag, value, ..] = *buf else {
                return Verdict::Partial;
            };
            if (device, tag) == *asked {
                return Verdict::Answer {
                    answer: value,
                    len: 3,
                };
            }
            match unanswered
                .iter()
                .position(|request| **request == (device, tag))
            {
                Some(index) => Verdict::Late { len: 3, index },
                None if device < 0x80 => Verdict::Foreign { len: 3 },
                None => Verdict::Garbage("garbage"),
            }
        }
    }

    const SILENT: Duration = Duration::from_millis(4);
    const TIMEOUT: Duration = Duration::from_millis(300);

    fn line() -> (LineState<Toy>, Instant) {
        let now = Instant::now();
        let mut line = LineState::<Toy>::new(SILENT, Duration::ZERO);
        line.opened(now);
        (line, now)
    }

    #[test]
    fn a_clean_line_needs_no_drain_and_keeps_the_silent_interval() {
        let (mut line, now) = line();
        assert_eq!(line.free_at(), Some(now + SILENT));
        assert_eq!(line.drain_before(&(1, 0), now), Drain::None);
        line.sent((1, 0));
        assert_eq!(
            line.classify(&[1, 0, 42], &(1, 0)),
            Verdict::Answer { answer: 42, len: 3 }
        );
        let later = now + Duration::from_millis(10);
        line.answered(later, false);
        assert_eq!(line.free_at(), Some(later + SILENT));
        assert_eq!(line.drain_before(&(1, 0), later), Drain::None);
    }

    #[test]
    fn re_asking_a_device_that_did_not_answer_drains_long() {
        let (mut line, now) = line();
        line.sent((1, 0));
        let failed_at = now + TIMEOUT;
        line.failed(failed_at, now, TIMEOUT);
        let drain = line.drain_before(&(1, 0), failed_at);
        assert_eq!(
            drain,
            Drain::Long {
                until: failed_at + TIMEOUT,
                quiet_since: now,
                quiet: MIN_QUIET
            }
        );
        // Bytes arriving during the drain push its end out by the quiet time.
        let byte_at = failed_at + TIMEOUT + Duration::from_millis(5);
        assert_eq!(drain.ends_at(Some(byte_at)), Some(byte_at + MIN_QUIET));
        line.drained(&(1, 0));
        assert_eq!(line.drain_before(&(1, 0), byte_at), Drain::None);
    }

    #[test]
    fn asking_another_device_after_a_failure_drains_short() {
        let (mut line, now) = line();
        line.sent((1, 0));
        let failed_at = now + TIMEOUT;
        line.failed(failed_at, now, TIMEOUT);
        assert_eq!(
            line.drain_before(&(2, 0), failed_at),
            Drain::Short {
                quiet_since: now,
                quiet: SILENT
            }
        );
        // After a plain timeout the line was quiet all along: no wait.
        let drain = line.drain_before(&(2, 0), failed_at);
        assert!(drain.ends_at(None).unwrap() <= failed_at);
        line.drained(&(2, 0));
        assert!(line.exposed(&(2, 0), failed_at));
        assert!(!line.exposed(&(1, 0), failed_at));
        // Device 1 is still owed a long drain.
        assert!(matches!(
            line.drain_before(&(1, 0), failed_at),
            Drain::Long { .. }
        ));
    }

    #[test]
    fn an_unanswered_request_is_forgotten_after_its_quiet_period() {
        let (mut line, now) = line();
        line.sent((1, 0));
        line.failed(now, now, TIMEOUT);
        line.drained(&(2, 0));
        let after = now + TIMEOUT + Duration::from_millis(1);
        assert_eq!(line.drain_before(&(1, 0), after), Drain::None);
        assert!(!line.exposed(&(2, 0), after));
    }

    #[test]
    fn a_late_reply_in_front_of_an_answer_is_discarded_and_counted() {
        let (mut line, now) = line();
        line.sent((1, 7));
        line.failed(now, now, TIMEOUT);
        line.drained(&(2, 0));
        line.sent((2, 0));
        let buf = [1, 7, 99, 2, 0, 42];
        assert_eq!(
            line.classify(&buf, &(2, 0)),
            Verdict::Late { len: 3, index: 0 }
        );
        assert_eq!(line.late_replies(), 1);
        assert_eq!(
            line.classify(&buf[3..], &(2, 0)),
            Verdict::Answer { answer: 42, len: 3 }
        );
        // Its request is answered: re-asking device 1 needs no long drain.
        line.answered(now, false);
        assert_eq!(line.drain_before(&(1, 7), now), Drain::None);
    }

    #[test]
    fn foreign_frames_noise_and_garbage_are_told_apart() {
        let (mut line, _) = line();
        line.sent((2, 0));
        assert_eq!(
            line.classify(&[5, 5, 5], &(2, 0)),
            Verdict::Foreign { len: 3 }
        );
        assert_eq!(line.foreign_replies(), 1);
        assert_eq!(
            line.classify(&[0xFF, 0xFF, 2], &(2, 0)),
            Verdict::Noise { len: 2 }
        );
        assert_eq!(
            line.classify(&[0x90, 0, 0], &(2, 0)),
            Verdict::Garbage("garbage")
        );
        assert_eq!(line.classify(&[2, 0], &(2, 0)), Verdict::Partial);
    }

    #[test]
    fn bytes_after_an_answer_make_the_line_dirty() {
        let (mut line, now) = line();
        line.sent((1, 0));
        line.answered(now, true);
        assert_eq!(
            line.drain_before(&(2, 0), now),
            Drain::Short {
                quiet_since: now,
                quiet: SILENT
            }
        );
    }

    #[test]
    fn a_closed_port_forgets_what_was_owed() {
        let (mut line, now) = line();
        line.sent((1, 0));
        line.failed(now, now, TIMEOUT);
        line.closed();
        line.opened(now);
        assert_eq!(line.drain_before(&(1, 0), now), Drain::None);
    }
}
