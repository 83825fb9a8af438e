//! The seq ledger: which seqs have been handed out, which seq counter the
//! store holds, and which seqs are known to be durable.
//!
//! Pure: it touches no store. The [`Outbox`](super::Outbox) asks it what to
//! write (the counter at open, the counter a flush must write) and tells it
//! what was written; it owns no I/O and cannot fail.
//!
//! Three numbers, each the first seq *not* in its set:
//!
//! - `next`: seqs handed out (to records, to gap records, to records lost
//!   to a refused write). A seq is handed out once, ever.
//! - `stored_next`: the counter last written by the ledger's own writes
//!   (at open, at a flush start, after a recovery). Batches that carry a
//!   counter of their own (atomic appends, drops, gap records) do not move
//!   it, so the next flush start writes the counter again.
//! - `durable_next`: every seq below it is on disk;
//!   [`Outbox::read`](super::Outbox::read) returns nothing at or past it.
//!
//! Invariants: `durable_next <= next` and `stored_next <= next`; all three
//! only grow. A flush that *starts* with `next = n` writes a counter of at
//! least `n` before the store's flush, so once it returns every seq below
//! `n` is durable and so is a counter past them: a seq that was ever
//! published is never handed out again, even after its record is gone.

use std::ops::Range;

use super::Gap;

/// Seq bookkeeping of an open outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ledger {
    next: u64,
    stored_next: u64,
    durable_next: u64,
}

/// The ledger of a store just opened, and the counter to write back (and
/// flush) before anything can be acknowledged, when the stored one is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opened {
    pub(super) ledger: Ledger,
    pub(super) write_back: Option<u64>,
}

/// What a flush start must do: write `write_counter` (if any) before the
/// store's flush, and pass `bound` to [`Ledger::flush_done`] once the flush
/// returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlushStart {
    pub(super) write_counter: Option<u64>,
    pub(super) bound: u64,
}

impl Ledger {
    /// The ledger at open: the counter is the larger of the stored one
    /// (`stored`, 1 for a new store), the highest record + 1, and the open
    /// gap's `to_seq + 1` (seqs counted in the open gap are never handed out
    /// again). Everything in the store is durable.
    pub(super) fn open(stored: u64, highest_record: Option<u64>, open_gap: Option<&Gap>) -> Opened {
        let next = stored
            .max(highest_record.map_or(0, |seq| seq.saturating_add(1)))
            .max(open_gap.map_or(0, |gap| gap.to_seq.saturating_add(1)));
        Opened {
            ledger: Ledger {
                next,
                stored_next: next,
                durable_next: next,
            },
            // Records appended after the last counter write survived: the
            // counter must be durable past them before any of them can be
            // acknowledged and deleted.
            write_back: (next > stored).then_some(next),
        }
    }

    /// The next seq to hand out.
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// First seq not known to be durable.
    pub(super) fn durable_next(&self) -> u64 {
        self.durable_next
    }

    /// Hands out the next `count` seqs.
    pub(super) fn allocate(&mut self, count: u64) -> Range<u64> {
        let first = self.next;
        self.next += count;
        first..self.next
    }

    /// True when seqs were handed out that no flush has covered yet.
    pub(super) fn needs_flush(&self) -> bool {
        self.next > self.durable_next
    }

    /// What a flush starting now must write, and the bound it makes durable.
    pub(super) fn begin_flush(&self) -> FlushStart {
        FlushStart {
            write_counter: (self.next > self.stored_next).then_some(self.next),
            bound: self.next,
        }
    }

    /// The counter `counter` was written by the ledger's own write.
    pub(super) fn counter_stored(&mut self, counter: u64) {
        self.stored_next = self.stored_next.max(counter);
    }

    /// The store's flush for a [`FlushStart`] with `bound` returned: every
    /// seq below it is durable.
    pub(super) fn flush_done(&mut self, bound: u64) {
        self.durable_next = self.durable_next.max(bound);
    }

    /// After the store was reopened from what is durable (a full disk) and
    /// its counter at open is `reopened_next`: the seqs handed out whose
    /// records are gone. Their seqs stay used.
    pub(super) fn lost_after_reopen(&self, reopened_next: u64) -> Range<u64> {
        reopened_next.min(self.next)..self.next
    }

    /// The counter was written and flushed after a reopen: everything
    /// handed out so far is settled (durable or announced as lost).
    pub(super) fn recovered(&mut self) {
        self.stored_next = self.next;
        self.durable_next = self.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DropReason;

    fn gap_to(to_seq: u64) -> Gap {
        Gap {
            from_seq: 1,
            to_seq,
            count: 1,
            reason: DropReason::OutboxFull,
        }
    }

    #[test]
    fn a_new_store_starts_at_seq_one_and_writes_nothing_back() {
        let opened = Ledger::open(1, None, None);
        assert_eq!(opened.ledger.next(), 1);
        assert_eq!(opened.write_back, None);
        assert!(!opened.ledger.needs_flush());
    }

    #[test]
    fn the_counter_at_open_is_the_largest_of_the_stored_one_the_highest_record_and_the_open_gap() {
        assert_eq!(
            Ledger::open(10, Some(4), Some(&gap_to(6))).ledger.next(),
            10
        );
        assert_eq!(
            Ledger::open(10, Some(14), Some(&gap_to(6))).ledger.next(),
            15
        );
        assert_eq!(
            Ledger::open(10, Some(14), Some(&gap_to(20))).ledger.next(),
            21
        );
    }

    #[test]
    fn a_counter_behind_the_records_is_written_back_at_open() {
        assert_eq!(Ledger::open(10, Some(14), None).write_back, Some(15));
        assert_eq!(Ledger::open(10, Some(9), None).write_back, None);
    }

    #[test]
    fn everything_in_the_store_is_durable_at_open() {
        let ledger = Ledger::open(3, Some(7), None).ledger;
        assert_eq!(ledger.durable_next(), 8);
        assert_eq!(ledger.begin_flush().write_counter, None);
    }

    #[test]
    fn seqs_are_handed_out_densely_and_once() {
        let mut ledger = Ledger::open(5, None, None).ledger;
        assert_eq!(ledger.allocate(1), 5..6);
        assert_eq!(ledger.allocate(3), 6..9);
        assert_eq!(ledger.allocate(0), 9..9);
        assert_eq!(ledger.next(), 9);
    }

    #[test]
    fn a_flush_writes_the_counter_only_when_seqs_were_handed_out_since_the_last_write() {
        let mut ledger = Ledger::open(1, None, None).ledger;
        ledger.allocate(2);
        let start = ledger.begin_flush();
        assert_eq!(
            start,
            FlushStart {
                write_counter: Some(3),
                bound: 3
            }
        );
        ledger.counter_stored(3);
        assert_eq!(ledger.begin_flush().write_counter, None);
    }

    #[test]
    fn a_flush_makes_durable_only_what_was_handed_out_before_it_started() {
        let mut ledger = Ledger::open(1, None, None).ledger;
        ledger.allocate(2);
        let start = ledger.begin_flush();
        ledger.counter_stored(start.bound);
        ledger.allocate(1);
        ledger.flush_done(start.bound);
        assert_eq!(ledger.durable_next(), 3);
        assert!(ledger.needs_flush());
    }

    #[test]
    fn a_late_flush_never_moves_durable_next_backwards() {
        let mut ledger = Ledger::open(1, None, None).ledger;
        ledger.allocate(4);
        ledger.flush_done(5);
        ledger.flush_done(2);
        assert_eq!(ledger.durable_next(), 5);
        assert!(!ledger.needs_flush());
    }

    #[test]
    fn the_seqs_lost_to_a_full_disk_are_those_past_the_reopened_counter() {
        let mut ledger = Ledger::open(1, None, None).ledger;
        ledger.allocate(9);
        assert_eq!(ledger.lost_after_reopen(6), 6..10);
        assert_eq!(ledger.lost_after_reopen(12), 10..10);
        ledger.recovered();
        assert_eq!(ledger.durable_next(), 10);
        assert_eq!(ledger.begin_flush().write_counter, None);
    }
}
