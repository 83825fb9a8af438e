//! The group commit: when the publisher's next outbox flush may start, and
//! whether it may take messages while a flush runs.
//!
//! Pure: it takes instants and byte counts and returns decisions; the
//! publisher owns the I/O (the flush on a blocking thread, the timer that
//! wakes it when a held-back flush is due).
//!
//! Invariants:
//! - a flush is started only when one is wanted (records no flush covers,
//!   no flush running, the store not failed) and at least the gather time
//!   ([`FLUSH_GATHER`], capped by `flush_interval`) after the last start:
//!   what arrives meanwhile joins the next flush;
//! - while a flush runs, messages are taken until [`MAX_UNFLUSHED`] record
//!   bytes are appended behind it, then not until it returns; each such
//!   wait is reported once.

use std::time::Duration;

use tokio::time::Instant;

/// Least time between the starts of two flushes (capped by
/// `flush_interval`): what arrives meanwhile joins the next flush. Every
/// sled flush hands its log buffer to sled's I/O thread pool, which wakes
/// all seven of its idle threads; back-to-back flushes under sustained load
/// (1 200 a second) made those wake-ups a sixth of the agent's CPU time.
/// At most 200 flushes a second; a record waits at most this much longer
/// (measured, flat-out: 1.4 → 0.8–1.2 CPU-s per million points over the
/// machine's spread, latency p50 1.7 → 6.4 ms, p99 unchanged or better).
pub(crate) const FLUSH_GATHER: Duration = Duration::from_millis(5);

/// Record bytes appended while a flush runs, at most: beyond it the
/// publisher stops taking messages until the flush returns (producers wait
/// on the bounded queue, their missed ticks counted as overruns). sled holds
/// what is appended in 512 KiB log buffers until its I/O threads have
/// written them, and a slow `fsync` (an SD card, a busy disk) would let
/// them pile up without bound: flat-out, 20 buffers (10 MiB) were seen
/// live at once. 1 MiB of records is ≈ 45 ms of the flat-out benchmark.
pub const MAX_UNFLUSHED: u64 = 1 << 20;

/// When a wanted flush may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushDue {
    /// Start it now.
    Now,
    /// Hold it back until then.
    At(Instant),
}

/// Whether to take messages now, and whether that is a new wait behind a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Take {
    pub(crate) accepting: bool,
    /// The publisher just stopped taking messages behind a slow flush.
    pub(crate) wait_began: bool,
}

/// The group-commit policy and the little it remembers.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    flush_interval: Duration,
    /// When the last flush started.
    last_start: Option<Instant>,
    /// Not taking messages behind a slow flush.
    waiting: bool,
}

/// False while a running flush has [`MAX_UNFLUSHED`] bytes appended behind it.
pub(crate) fn accepting(flush_running: bool, unflushed_bytes: u64) -> bool {
    !flush_running || unflushed_bytes < MAX_UNFLUSHED
}

impl GroupCommit {
    pub(crate) fn new(flush_interval: Duration) -> Self {
        GroupCommit {
            flush_interval,
            last_start: None,
            waiting: false,
        }
    }

    /// When the next flush may start, if one is `wanted` (records no flush
    /// covers, none running, the store not failed).
    pub(crate) fn next_flush(&self, wanted: bool, now: Instant) -> Option<FlushDue> {
        if !wanted {
            return None;
        }
        let gather = FLUSH_GATHER.min(self.flush_interval);
        let due = self.last_start.map_or(now, |at| at + gather);
        Some(if due > now {
            FlushDue::At(due)
        } else {
            FlushDue::Now
        })
    }

    /// A flush started at `now`.
    pub(crate) fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    /// [`accepting`], noting each stop behind a slow flush once.
    pub(crate) fn take_messages(&mut self, flush_running: bool, unflushed_bytes: u64) -> Take {
        let accepting = accepting(flush_running, unflushed_bytes);
        let wait_began = !accepting && !self.waiting;
        self.waiting = !accepting;
        Take {
            accepting,
            wait_began,
        }
    }

    /// Whether a flush that took `took` was slower than `flush_interval`
    /// (which bounds the data at risk; zero means no bound).
    pub(crate) fn is_slow(&self, took: Duration) -> bool {
        took > self.flush_interval && !self.flush_interval.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[test]
    fn no_flush_is_due_when_none_is_wanted() {
        let commit = GroupCommit::new(INTERVAL);
        assert_eq!(commit.next_flush(false, Instant::now()), None);
    }

    #[test]
    fn the_first_flush_starts_at_once() {
        let commit = GroupCommit::new(INTERVAL);
        assert_eq!(commit.next_flush(true, Instant::now()), Some(FlushDue::Now));
    }

    #[test]
    fn a_flush_starts_no_sooner_than_the_gather_time_after_the_last_start() {
        let mut commit = GroupCommit::new(INTERVAL);
        let t0 = Instant::now();
        commit.started(t0);
        let early = t0 + Duration::from_millis(2);
        assert_eq!(
            commit.next_flush(true, early),
            Some(FlushDue::At(t0 + FLUSH_GATHER))
        );
        assert_eq!(
            commit.next_flush(true, t0 + FLUSH_GATHER),
            Some(FlushDue::Now)
        );
    }

    #[test]
    fn the_gather_time_is_capped_by_the_flush_interval() {
        let mut commit = GroupCommit::new(Duration::from_millis(1));
        let t0 = Instant::now();
        commit.started(t0);
        assert_eq!(
            commit.next_flush(true, t0),
            Some(FlushDue::At(t0 + Duration::from_millis(1)))
        );
        let mut zero = GroupCommit::new(Duration::ZERO);
        zero.started(t0);
        assert_eq!(zero.next_flush(true, t0), Some(FlushDue::Now));
    }

    #[test]
    fn messages_are_taken_whatever_is_unflushed_while_no_flush_runs() {
        assert!(accepting(false, MAX_UNFLUSHED * 4));
    }

    #[test]
    fn messages_wait_once_max_unflushed_bytes_are_behind_a_running_flush() {
        assert!(accepting(true, MAX_UNFLUSHED - 1));
        assert!(!accepting(true, MAX_UNFLUSHED));
    }

    #[test]
    fn a_wait_behind_a_flush_is_reported_once() {
        let mut commit = GroupCommit::new(INTERVAL);
        let began = commit.take_messages(true, MAX_UNFLUSHED);
        assert_eq!(
            began,
            Take {
                accepting: false,
                wait_began: true
            }
        );
        assert!(!commit.take_messages(true, MAX_UNFLUSHED).wait_began);
        assert!(commit.take_messages(false, MAX_UNFLUSHED).accepting);
        assert!(commit.take_messages(true, MAX_UNFLUSHED).wait_began);
    }

    #[test]
    fn a_flush_is_slow_only_past_a_nonzero_flush_interval() {
        let commit = GroupCommit::new(INTERVAL);
        assert!(!commit.is_slow(INTERVAL));
        assert!(commit.is_slow(INTERVAL + Duration::from_millis(1)));
        assert!(!GroupCommit::new(Duration::ZERO).is_slow(Duration::from_secs(9)));
    }
}
