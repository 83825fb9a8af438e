//! The open gap: a range of dropped seqs, its `m/pending_gap` meta bytes, and
//! the `gap` message it becomes once announced.
//!
//! Pure: values in, values out. The meta value is 25 bytes, integers
//! big-endian:
//!
//! ```text
//! offset  size  field
//! 0       8     from_seq
//! 8       8     to_seq
//! 16      8     count
//! 24      1     reason: 0 outbox_full, 1 max_age, 2 store_damaged
//! ```
//!
//! Invariants: `from_seq <= to_seq` and `1 <= count <= to_seq - from_seq + 1`
//! (kept by the burst accounting in `retention`, which is the only code that
//! opens or widens a gap). Decoding refuses any other length and any unknown
//! reason byte: a malformed open gap is damage, never a guess.

use crate::message::{DropReason, GapReport, Message};

/// Encoded length of the `m/pending_gap` value.
const ENCODED_LEN: usize = 25;

/// A range of dropped seqs: `count` records within `[from_seq, to_seq]` were
/// dropped; any other seq of the range was delivered (or is still queued,
/// e.g. a KPI window kept while telemetry around it went).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from_seq: u64,
    pub to_seq: u64,
    pub count: u64,
    pub reason: DropReason,
}

impl Gap {
    /// The `m/pending_gap` meta value.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.extend_from_slice(&self.from_seq.to_be_bytes());
        out.extend_from_slice(&self.to_seq.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.push(reason_to_byte(self.reason));
        out
    }

    /// Reads an `m/pending_gap` meta value; `None` when it is malformed.
    pub(super) fn decode(bytes: &[u8]) -> Option<Gap> {
        let (from, rest) = bytes.split_at_checked(8)?;
        let (to, rest) = rest.split_at_checked(8)?;
        let (count, rest) = rest.split_at_checked(8)?;
        let [reason] = rest else { return None };
        Some(Gap {
            from_seq: u64::from_be_bytes(from.try_into().ok()?),
            to_seq: u64::from_be_bytes(to.try_into().ok()?),
            count: u64::from_be_bytes(count.try_into().ok()?),
            reason: reason_from_byte(*reason)?,
        })
    }

    /// The `gap` message announcing this gap at `ts`.
    pub(super) fn report(&self, ts: u64) -> Message {
        Message::Gap(GapReport::Dropped {
            ts,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            count: self.count,
            reason: self.reason,
        })
    }
}

fn reason_to_byte(reason: DropReason) -> u8 {
    match reason {
        DropReason::OutboxFull => 0,
        DropReason::MaxAge => 1,
        DropReason::StoreDamaged => 2,
    }
}

fn reason_from_byte(b: u8) -> Option<DropReason> {
    match b {
        0 => Some(DropReason::OutboxFull),
        1 => Some(DropReason::MaxAge),
        2 => Some(DropReason::StoreDamaged),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Gap = Gap {
        from_seq: 7,
        to_seq: 300,
        count: 12,
        reason: DropReason::MaxAge,
    };

    #[test]
    fn a_gap_survives_its_meta_encoding_for_every_reason() {
        for reason in [
            DropReason::OutboxFull,
            DropReason::MaxAge,
            DropReason::StoreDamaged,
        ] {
            let gap = Gap { reason, ..GAP };
            assert_eq!(Gap::decode(&gap.encode()), Some(gap));
        }
    }

    #[test]
    fn the_meta_encoding_is_three_big_endian_integers_and_a_reason_byte() {
        let mut want = Vec::new();
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&300u64.to_be_bytes());
        want.extend_from_slice(&12u64.to_be_bytes());
        want.push(1);
        assert_eq!(GAP.encode(), want);
    }

    #[test]
    fn a_meta_value_of_the_wrong_length_is_malformed() {
        let bytes = GAP.encode();
        assert_eq!(Gap::decode(&bytes[..ENCODED_LEN - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Gap::decode(&longer), None);
        assert_eq!(Gap::decode(&[]), None);
    }

    #[test]
    fn an_unknown_reason_byte_is_malformed() {
        let mut bytes = GAP.encode();
        bytes[ENCODED_LEN - 1] = 3;
        assert_eq!(Gap::decode(&bytes), None);
    }

    #[test]
    fn a_gap_is_announced_as_a_dropped_report_with_its_range_count_and_reason() {
        assert_eq!(
            GAP.report(1_000),
            Message::Gap(GapReport::Dropped {
                ts: 1_000,
                from_seq: 7,
                to_seq: 300,
                count: 12,
                reason: DropReason::MaxAge,
            })
        );
    }
}
