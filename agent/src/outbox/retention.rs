//! Retention: which records the limits drop, and how drops are gathered into
//! one gap per burst.
//!
//! Pure: the [`Outbox`](super::Outbox) scans its store oldest first and
//! feeds each record as `(seq, header or none, encoded length)` to a chooser
//! ([`Expiry`] for `max_age`, [`SizeCut`] for `max_size`), which says when
//! to stop and which records are [`Victim`]s; the outbox removes them and
//! tells the [`Burst`] of each drop.
//!
//! Invariants of the choice:
//! - oldest first: records are visited in seq order and chosen in it;
//! - `gap` records are never chosen (they are what reports a drop);
//! - records in flight are never chosen (their PUBACK may be on its way);
//! - a record whose header does not read is chosen as `store_damaged`
//!   (first, by the size cut), never as an ordinary drop;
//! - the size cut takes drop class 0 (telemetry, health) before class 1
//!   (availability) before class 2 (KPI windows), and no more records than
//!   bring the outbox back to `max_size`.
//!
//! Invariants of the burst: at most one gap is open; drops of its reason
//! widen it; a drop of another reason replaces it (the caller announces the
//! replaced one in the same write). A burst ends when a check drops nothing
//! and a quarter of `max_size` is free — and at least two of the burst's
//! largest records: while the broker is away, or while delivery only just
//! keeps up, every append drops the oldest, and that is one burst, one gap.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use super::Gap;
use super::record::Header;
use crate::message::DropReason;

/// A record a limit drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Victim {
    pub(super) seq: u64,
    /// Encoded length, bytes.
    pub(super) len: u64,
    pub(super) reason: DropReason,
}

/// Records in flight: seq → encoded length.
pub(super) type InFlight = BTreeMap<u64, u64>;

/// Creation times before this are older than `max_age` at `now_ms`.
pub(super) fn age_cutoff(now_ms: u64, max_age: Duration) -> u64 {
    now_ms.saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX))
}

/// The victims of `max_age`: every droppable record created before the
/// cutoff, oldest first, up to the first record young enough.
#[derive(Debug)]
pub(super) struct Expiry<'a> {
    cutoff_ms: u64,
    in_flight: &'a InFlight,
    victims: Vec<Victim>,
}

impl<'a> Expiry<'a> {
    pub(super) fn new(cutoff_ms: u64, in_flight: &'a InFlight) -> Self {
        Expiry {
            cutoff_ms,
            in_flight,
            victims: Vec::new(),
        }
    }

    /// Takes the next record in seq order; breaks at the first record
    /// created at or after the cutoff.
    pub(super) fn visit(&mut self, seq: u64, header: Option<Header>, len: u64) -> ControlFlow<()> {
        match header {
            None => self.victims.push(Victim {
                seq,
                len,
                reason: DropReason::StoreDamaged,
            }),
            Some(h) if h.created_ms >= self.cutoff_ms => return ControlFlow::Break(()),
            Some(h) => {
                if h.kind.drop_class().is_some() && !self.in_flight.contains_key(&seq) {
                    self.victims.push(Victim {
                        seq,
                        len,
                        reason: DropReason::MaxAge,
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }

    pub(super) fn into_victims(self) -> Vec<Victim> {
        self.victims
    }
}

/// The victims of `max_size`: one pass over the records per drop class,
/// lowest class first, oldest first within it, until enough is freed.
#[derive(Debug)]
pub(super) struct SizeCut<'a> {
    to_free: u64,
    class: u8,
    in_flight: &'a InFlight,
    victims: Vec<Victim>,
}

/// The highest drop class (see [`super::Kind::drop_class`]).
const LAST_CLASS: u8 = 2;

impl<'a> SizeCut<'a> {
    /// `None` when `bytes` is within `max_size` (nothing to drop).
    pub(super) fn new(bytes: u64, max_size: u64, in_flight: &'a InFlight) -> Option<Self> {
        (bytes > max_size).then(|| SizeCut {
            to_free: bytes - max_size,
            class: 0,
            in_flight,
            victims: Vec::new(),
        })
    }

    /// Takes the next record of the current pass, in seq order; breaks once
    /// enough is freed.
    pub(super) fn visit(&mut self, seq: u64, header: Option<Header>, len: u64) -> ControlFlow<()> {
        if self.in_flight.contains_key(&seq) {
            return ControlFlow::Continue(());
        }
        let reason = match header {
            Some(h) if h.kind.drop_class() == Some(self.class) => DropReason::OutboxFull,
            None if self.class == 0 => DropReason::StoreDamaged,
            Some(_) | None => return ControlFlow::Continue(()),
        };
        self.victims.push(Victim { seq, len, reason });
        self.to_free = self.to_free.saturating_sub(len);
        if self.to_free == 0 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// After a pass over every record: true when another pass (the next
    /// class) is wanted.
    pub(super) fn next_pass(&mut self) -> bool {
        if self.to_free == 0 || self.class >= LAST_CLASS {
            return false;
        }
        self.class += 1;
        true
    }

    pub(super) fn into_victims(self) -> Vec<Victim> {
        self.victims
    }
}

/// The open gap and the burst of drops it counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Burst {
    open: Option<Gap>,
    /// Largest record appended since the open gap began.
    max_len: u64,
}

impl Burst {
    /// The burst of a store just opened, with the open gap it holds.
    pub(super) fn resume(open: Option<Gap>) -> Burst {
        Burst { open, max_len: 0 }
    }

    pub(super) fn open_gap(&self) -> Option<Gap> {
        self.open
    }

    /// Replaces the open gap with the one a reopened store holds.
    pub(super) fn reopened(&mut self, open: Option<Gap>) {
        self.open = open;
    }

    /// A record of `len` bytes was appended.
    pub(super) fn appended(&mut self, len: u64) {
        self.max_len = self.max_len.max(len);
    }

    /// The reason a record lost to a refused write is counted under:
    /// nothing can be written then, so an open gap of another reason cannot
    /// be announced first; the lost record joins it (its count stays exact,
    /// only its reason word is the open gap's).
    pub(super) fn reason_for_lost_write(&self) -> DropReason {
        self.open.map_or(DropReason::OutboxFull, |g| g.reason)
    }

    /// The open gap, taken out when a drop for `reason` cannot join it: it
    /// must be announced in the write that drops.
    pub(super) fn take_if_other_reason(&mut self, reason: DropReason) -> Option<Gap> {
        self.open.take_if(|g| g.reason != reason)
    }

    /// Counts the drop of `seq` for `reason` in the open gap (opening one,
    /// or replacing one of another reason that the caller has already
    /// queued for announcement).
    pub(super) fn note_drop(&mut self, seq: u64, reason: DropReason) {
        if self.open.is_none() {
            self.max_len = 0;
        }
        match &mut self.open {
            Some(gap) if gap.reason == reason => {
                gap.from_seq = gap.from_seq.min(seq);
                gap.to_seq = gap.to_seq.max(seq);
                gap.count += 1;
            }
            _ => {
                self.open = Some(Gap {
                    from_seq: seq,
                    to_seq: seq,
                    count: 1,
                    reason,
                });
            }
        }
    }

    /// Whether the open gap is to be announced now: this check `dropped`
    /// nothing, and with `bytes` stored a quarter of `max_size` (and at
    /// least two of the burst's largest records) is free.
    pub(super) fn ends(&self, dropped: bool, bytes: u64, max_size: u64) -> bool {
        let want = (max_size / 4).max(2 * self.max_len);
        let headroom = bytes.saturating_add(want) <= max_size;
        !dropped && headroom && self.open.is_some()
    }

    /// The open gap was announced.
    pub(super) fn closed(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Kind;

    fn header(kind: Kind, created_ms: u64) -> Header {
        Header { kind, created_ms }
    }

    /// Runs `visit` over `records` as the outbox's scan does: in order,
    /// stopping at a break.
    fn pass(
        records: &[(u64, Option<Header>, u64)],
        mut visit: impl FnMut(u64, Option<Header>, u64) -> ControlFlow<()>,
    ) {
        for &(seq, h, len) in records {
            if visit(seq, h, len).is_break() {
                return;
            }
        }
    }

    fn expired(
        records: &[(u64, Option<Header>, u64)],
        cutoff: u64,
        in_flight: &InFlight,
    ) -> Vec<Victim> {
        let mut expiry = Expiry::new(cutoff, in_flight);
        pass(records, |s, h, l| expiry.visit(s, h, l));
        expiry.into_victims()
    }

    fn cut(
        records: &[(u64, Option<Header>, u64)],
        bytes: u64,
        max_size: u64,
        in_flight: &InFlight,
    ) -> Vec<Victim> {
        let Some(mut cut) = SizeCut::new(bytes, max_size, in_flight) else {
            return Vec::new();
        };
        loop {
            pass(records, |s, h, l| cut.visit(s, h, l));
            if !cut.next_pass() {
                return cut.into_victims();
            }
        }
    }

    fn seqs(victims: &[Victim]) -> Vec<u64> {
        victims.iter().map(|v| v.seq).collect()
    }

    #[test]
    fn the_age_cutoff_is_now_minus_max_age_and_never_below_zero() {
        assert_eq!(age_cutoff(10_000, Duration::from_secs(3)), 7_000);
        assert_eq!(age_cutoff(1_000, Duration::from_secs(3)), 0);
        assert_eq!(age_cutoff(1_000, Duration::MAX), 0);
    }

    #[test]
    fn expiry_drops_old_records_and_stops_at_the_first_young_enough() {
        let records = [
            (1, Some(header(Kind::Telemetry, 10)), 5),
            (2, Some(header(Kind::Kpi, 20)), 5),
            (3, Some(header(Kind::Telemetry, 30)), 5),
            (4, Some(header(Kind::Telemetry, 5)), 5),
        ];
        let victims = expired(&records, 30, &InFlight::new());
        assert_eq!(seqs(&victims), [1, 2]);
        assert!(victims.iter().all(|v| v.reason == DropReason::MaxAge));
    }

    #[test]
    fn expiry_never_drops_gaps_or_records_in_flight() {
        let records = [
            (1, Some(header(Kind::Gap, 10)), 5),
            (2, Some(header(Kind::Telemetry, 10)), 5),
            (3, Some(header(Kind::Health, 10)), 5),
        ];
        let in_flight = InFlight::from([(2, 5)]);
        assert_eq!(seqs(&expired(&records, 30, &in_flight)), [3]);
    }

    #[test]
    fn a_record_whose_header_does_not_read_expires_as_store_damaged() {
        let records = [(1, None, 7), (2, Some(header(Kind::Telemetry, 50)), 5)];
        assert_eq!(
            expired(&records, 30, &InFlight::new()),
            [Victim {
                seq: 1,
                len: 7,
                reason: DropReason::StoreDamaged
            }]
        );
    }

    #[test]
    fn nothing_is_cut_while_the_outbox_is_within_max_size() {
        assert!(SizeCut::new(100, 100, &InFlight::new()).is_none());
    }

    #[test]
    fn the_size_cut_drops_the_oldest_of_the_lowest_class_and_only_what_is_needed() {
        let records = [
            (1, Some(header(Kind::Kpi, 0)), 10),
            (2, Some(header(Kind::Telemetry, 0)), 10),
            (3, Some(header(Kind::Health, 0)), 10),
            (4, Some(header(Kind::Telemetry, 0)), 10),
        ];
        let victims = cut(&records, 40, 25, &InFlight::new());
        assert_eq!(seqs(&victims), [2, 3]);
        assert!(victims.iter().all(|v| v.reason == DropReason::OutboxFull));
    }

    #[test]
    fn the_size_cut_takes_telemetry_then_availability_then_kpi_windows() {
        let records = [
            (1, Some(header(Kind::Kpi, 0)), 10),
            (2, Some(header(Kind::Availability, 0)), 10),
            (3, Some(header(Kind::Telemetry, 0)), 10),
            (4, Some(header(Kind::Gap, 0)), 10),
        ];
        assert_eq!(seqs(&cut(&records, 40, 20, &InFlight::new())), [3, 2]);
        assert_eq!(seqs(&cut(&records, 40, 5, &InFlight::new())), [3, 2, 1]);
    }

    #[test]
    fn the_size_cut_never_drops_gaps_or_records_in_flight_even_when_short() {
        let records = [
            (1, Some(header(Kind::Telemetry, 0)), 10),
            (2, Some(header(Kind::Gap, 0)), 10),
            (3, Some(header(Kind::Telemetry, 0)), 10),
        ];
        let in_flight = InFlight::from([(1, 10)]);
        assert_eq!(seqs(&cut(&records, 30, 0, &in_flight)), [3]);
    }

    #[test]
    fn the_size_cut_drops_damaged_headers_with_the_first_class_as_store_damaged() {
        let records = [(1, Some(header(Kind::Telemetry, 0)), 10), (2, None, 10)];
        let victims = cut(&records, 20, 5, &InFlight::new());
        assert_eq!(
            victims
                .iter()
                .map(|v| (v.seq, v.reason))
                .collect::<Vec<_>>(),
            [(1, DropReason::OutboxFull), (2, DropReason::StoreDamaged)]
        );
    }

    #[test]
    fn drops_of_one_reason_widen_one_gap() {
        let mut burst = Burst::default();
        burst.note_drop(5, DropReason::OutboxFull);
        burst.note_drop(3, DropReason::OutboxFull);
        burst.note_drop(9, DropReason::OutboxFull);
        assert_eq!(
            burst.open_gap(),
            Some(Gap {
                from_seq: 3,
                to_seq: 9,
                count: 3,
                reason: DropReason::OutboxFull
            })
        );
    }

    #[test]
    fn a_drop_of_another_reason_hands_the_open_gap_over_and_opens_its_own() {
        let mut burst = Burst::default();
        burst.note_drop(5, DropReason::OutboxFull);
        assert_eq!(burst.take_if_other_reason(DropReason::OutboxFull), None);
        let closed = burst.take_if_other_reason(DropReason::MaxAge);
        assert_eq!(closed.map(|g| g.reason), Some(DropReason::OutboxFull));
        burst.note_drop(6, DropReason::MaxAge);
        assert_eq!(
            burst.open_gap(),
            Some(Gap {
                from_seq: 6,
                to_seq: 6,
                count: 1,
                reason: DropReason::MaxAge
            })
        );
    }

    #[test]
    fn a_write_lost_during_a_burst_joins_its_gap_and_otherwise_counts_as_outbox_full() {
        let mut burst = Burst::default();
        assert_eq!(burst.reason_for_lost_write(), DropReason::OutboxFull);
        burst.note_drop(1, DropReason::MaxAge);
        assert_eq!(burst.reason_for_lost_write(), DropReason::MaxAge);
    }

    #[test]
    fn a_burst_does_not_end_while_its_check_still_drops() {
        let mut burst = Burst::default();
        burst.note_drop(1, DropReason::OutboxFull);
        assert!(!burst.ends(true, 0, 1000));
        assert!(burst.ends(false, 0, 1000));
    }

    #[test]
    fn a_burst_ends_once_a_quarter_of_the_outbox_is_free() {
        let mut burst = Burst::default();
        burst.note_drop(1, DropReason::OutboxFull);
        assert!(!burst.ends(false, 751, 1000));
        assert!(burst.ends(false, 750, 1000));
    }

    #[test]
    fn a_burst_of_large_records_ends_only_with_room_for_two_of_them() {
        let mut burst = Burst::default();
        burst.note_drop(1, DropReason::OutboxFull);
        burst.appended(400);
        assert!(!burst.ends(false, 201, 1000));
        assert!(burst.ends(false, 200, 1000));
    }

    #[test]
    fn the_largest_record_counts_from_the_first_drop_of_a_burst() {
        let mut burst = Burst::default();
        burst.appended(400);
        burst.note_drop(1, DropReason::OutboxFull);
        assert!(burst.ends(false, 750, 1000));
    }

    #[test]
    fn without_an_open_gap_there_is_no_burst_to_end() {
        assert!(!Burst::default().ends(false, 0, 1000));
        let mut burst = Burst::default();
        burst.note_drop(1, DropReason::OutboxFull);
        burst.closed();
        assert!(!burst.ends(false, 0, 1000));
    }
}
