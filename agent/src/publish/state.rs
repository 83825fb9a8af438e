//! Delivery bookkeeping between the outbox and the MQTT client: which seqs
//! are in flight, which packet id carries which seq, and where the live and
//! backlog cursors stand.
//!
//! Pure: no I/O, no clock. The publisher drives it with what it does
//! (`handed`) and what the event loop reports (`outgoing`, `puback`,
//! `connected`, `disconnected`).
//!
//! Invariants:
//! - at most `window` publishes are in flight (one publish carries one seq,
//!   or with the `thingsboard` dialect a batch of several);
//! - a seq is acknowledged only by the PUBACK of the packet id rumqttc gave
//!   *that* publish (`Outgoing::Publish(pkid)` arrives in hand-over order,
//!   so every `QoS` 1 publish is handed over here, also those that carry no
//!   record: status, connect, attributes — [`DeliveryState::handed_untracked`]);
//! - a batch's PUBACK acknowledges every seq in it; a batch handed over is
//!   remembered until acknowledged, across reconnects, so that a resend in
//!   the same run carries the same seqs ([`DeliveryState::batch_at`]);
//! - after every (re)connect nothing is in flight and both cursors restart
//!   at the oldest record, so every unacknowledged record is sent again;
//! - `live_first`: records appended after the connect (the live lane) are
//!   offered before the backlog (seqs below the connect-time bound);
//!   `oldest_first`: one cursor, strict seq order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use spindle_config::model::Replay;

/// Where the next records to publish come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    /// First seq to read.
    pub from: u64,
    /// Read only seqs below this (exclusive), `u64::MAX` for no bound.
    pub below: u64,
}

impl Lane {
    /// The `live_first` backlog (records older than the connect), which
    /// `[buffer] replay_rate` paces; the live lane has no bound.
    pub fn is_backlog(&self) -> bool {
        self.below != u64::MAX
    }
}

/// The publisher's delivery state.
#[derive(Debug)]
pub struct DeliveryState {
    window: usize,
    replay: Replay,
    connected: bool,
    in_flight: BTreeSet<u64>,
    /// Publishes in flight that carry records.
    packets: usize,
    /// The seqs of each publish handed over whose packet id is not known
    /// yet, in hand-over order; empty for a publish without records.
    awaiting_pkid: VecDeque<Vec<u64>>,
    by_pkid: HashMap<u16, Vec<u64>>,
    /// Batches handed over and not acknowledged, by their first seq.
    batches: BTreeMap<u64, Vec<u64>>,
    live_next: u64,
    backlog_next: u64,
    backlog_end: u64,
}

impl DeliveryState {
    pub fn new(window: usize, replay: Replay) -> Self {
        DeliveryState {
            window: window.max(1),
            replay,
            connected: false,
            in_flight: BTreeSet::new(),
            packets: 0,
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
            batches: BTreeMap::new(),
            live_next: 1,
            backlog_next: 1,
            backlog_end: 1,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A session started: resend everything not yet acknowledged.
    /// `next_seq` is the outbox's next seq at this moment: older records
    /// form the backlog.
    pub fn connected(&mut self, next_seq: u64) {
        self.reset();
        self.connected = true;
        self.backlog_next = 1;
        self.backlog_end = next_seq;
        self.live_next = next_seq;
    }

    /// The session is gone: whatever was in flight will be sent again after the next connect.
    pub fn disconnected(&mut self) {
        self.reset();
        self.connected = false;
    }

    fn reset(&mut self) {
        self.in_flight.clear();
        self.packets = 0;
        self.awaiting_pkid.clear();
        self.by_pkid.clear();
    }

    /// Free places in the in-flight window.
    pub fn room(&self) -> usize {
        if self.connected {
            self.window.saturating_sub(self.packets)
        } else {
            0
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The lanes to read from, in priority order.
    pub fn lanes(&self) -> Vec<Lane> {
        if !self.connected {
            return Vec::new();
        }
        match self.replay {
            Replay::OldestFirst => vec![Lane {
                from: self.backlog_next,
                below: u64::MAX,
            }],
            Replay::LiveFirst => {
                let mut lanes = vec![Lane {
                    from: self.live_next,
                    below: u64::MAX,
                }];
                if self.backlog_next < self.backlog_end {
                    lanes.push(Lane {
                        from: self.backlog_next,
                        below: self.backlog_end,
                    });
                }
                lanes
            }
        }
    }

    /// `seq` was handed to the MQTT client; its packet id comes with the next
    /// `Outgoing::Publish`.
    pub fn handed(&mut self, seq: u64) {
        self.handed_batch(&[seq]);
    }

    /// One publish carrying `seqs` (in order, from one lane) was handed to
    /// the MQTT client. A batch of several is remembered until acknowledged.
    pub fn handed_batch(&mut self, seqs: &[u64]) {
        if let Some(&first) = seqs.first() {
            self.forget_skipped_batches(first);
        }
        for &seq in seqs {
            self.in_flight.insert(seq);
            self.advance(seq);
            self.batches.remove(&seq);
        }
        self.packets += 1;
        self.awaiting_pkid.push_back(seqs.to_vec());
        if let [first, _, ..] = seqs {
            self.batches.insert(*first, seqs.to_vec());
        }
    }

    /// A lane hands seqs over in order: a batch remembered below `first`
    /// in the same lane that is not in flight now was skipped, its first
    /// record gone (dropped by retention or as damage), and is forgotten.
    /// (The live lane starts at the connect-time bound; batches of earlier
    /// sessions all lie below it, in the backlog lane.)
    fn forget_skipped_batches(&mut self, first: u64) {
        let lane_start = match self.replay {
            Replay::LiveFirst if first >= self.backlog_end => self.backlog_end,
            _ => 0,
        };
        let skipped: Vec<u64> = self
            .batches
            .range(lane_start..first)
            .map(|(&start, _)| start)
            .filter(|start| !self.in_flight.contains(start))
            .collect();
        for start in skipped {
            self.batches.remove(&start);
        }
    }

    /// A `QoS` 1 publish that carries no record (status, connect, attributes)
    /// was handed to the MQTT client: its packet id is not a record's.
    pub fn handed_untracked(&mut self) {
        self.awaiting_pkid.push_back(Vec::new());
    }

    /// The batch handed over earlier (and not acknowledged) that starts at
    /// `seq`: a resend carries the same seqs.
    pub fn batch_at(&self, seq: u64) -> Option<&[u64]> {
        self.batches.get(&seq).map(Vec::as_slice)
    }

    fn advance(&mut self, seq: u64) {
        match self.replay {
            Replay::OldestFirst => self.backlog_next = self.backlog_next.max(seq + 1),
            Replay::LiveFirst => {
                if seq >= self.backlog_end {
                    self.live_next = self.live_next.max(seq + 1);
                } else {
                    self.backlog_next = self.backlog_next.max(seq + 1);
                }
            }
        }
    }

    /// A read of the backlog lane found nothing more below its bound: the
    /// backlog is drained for this session.
    pub fn backlog_drained(&mut self, lane: Lane) {
        if lane.below != u64::MAX {
            self.backlog_next = self.backlog_next.max(lane.below);
        }
    }

    /// Seqs below the connect-time bound not yet offered in this session (0 when drained).
    pub fn backlog_remaining(&self) -> u64 {
        self.backlog_end.saturating_sub(self.backlog_next)
    }

    /// rumqttc wrote the next handed publish with packet id `pkid`.
    pub fn outgoing(&mut self, pkid: u16) {
        if let Some(seqs) = self.awaiting_pkid.pop_front()
            && !seqs.is_empty()
        {
            self.by_pkid.insert(pkid, seqs);
        }
    }

    /// The broker acknowledged `pkid`: returns the seqs it carried (none
    /// for a publish without records or an unknown packet id).
    pub fn puback(&mut self, pkid: u16) -> Vec<u64> {
        let Some(seqs) = self.by_pkid.remove(&pkid) else {
            return Vec::new();
        };
        for seq in &seqs {
            self.in_flight.remove(seq);
        }
        if let Some(first) = seqs.first() {
            self.batches.remove(first);
        }
        self.packets = self.packets.saturating_sub(1);
        seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_offered_while_disconnected() {
        let s = DeliveryState::new(8, Replay::LiveFirst);
        assert_eq!(s.room(), 0);
        assert!(s.lanes().is_empty());
    }

    #[test]
    fn live_records_are_offered_before_the_backlog() {
        let mut s = DeliveryState::new(8, Replay::LiveFirst);
        s.connected(100);
        assert_eq!(
            s.lanes(),
            vec![
                Lane {
                    from: 100,
                    below: u64::MAX
                },
                Lane {
                    from: 1,
                    below: 100
                }
            ]
        );
        s.handed(100);
        s.handed(1);
        assert_eq!(
            s.lanes(),
            vec![
                Lane {
                    from: 101,
                    below: u64::MAX
                },
                Lane {
                    from: 2,
                    below: 100
                }
            ]
        );
    }

    #[test]
    fn oldest_first_uses_one_cursor_in_seq_order() {
        let mut s = DeliveryState::new(8, Replay::OldestFirst);
        s.connected(100);
        assert_eq!(
            s.lanes(),
            vec![Lane {
                from: 1,
                below: u64::MAX
            }]
        );
        s.handed(5);
        assert_eq!(
            s.lanes(),
            vec![Lane {
                from: 6,
                below: u64::MAX
            }]
        );
    }

    #[test]
    fn a_puback_acknowledges_the_seq_its_packet_id_carried() {
        let mut s = DeliveryState::new(8, Replay::OldestFirst);
        s.connected(1);
        s.handed(1);
        s.handed(2);
        s.outgoing(7);
        s.outgoing(3);
        assert_eq!(s.puback(3), vec![2]);
        assert_eq!(s.puback(7), vec![1]);
        assert!(s.puback(7).is_empty(), "an ack is used once");
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let mut s = DeliveryState::new(2, Replay::OldestFirst);
        s.connected(1);
        s.handed(1);
        s.handed(2);
        assert_eq!(s.room(), 0);
        s.outgoing(1);
        s.puback(1);
        assert_eq!(s.room(), 1);
    }

    #[test]
    fn a_reconnect_resends_everything_unacknowledged_from_the_oldest() {
        let mut s = DeliveryState::new(8, Replay::LiveFirst);
        s.connected(10);
        s.handed(10);
        s.handed(1);
        s.outgoing(1);
        s.disconnected();
        assert!(
            s.puback(1).is_empty(),
            "acks of a lost session mean nothing"
        );
        s.connected(12);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(
            s.lanes(),
            vec![
                Lane {
                    from: 12,
                    below: u64::MAX
                },
                Lane { from: 1, below: 12 }
            ]
        );
    }

    #[test]
    fn a_batch_puback_acknowledges_every_seq_it_carried() {
        let mut s = DeliveryState::new(2, Replay::OldestFirst);
        s.connected(1);
        s.handed_batch(&[1, 2, 3]);
        assert_eq!(s.room(), 1, "the window counts publishes");
        assert_eq!(s.in_flight(), 3);
        s.outgoing(9);
        assert_eq!(s.puback(9), vec![1, 2, 3]);
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.room(), 2);
        assert_eq!(s.batch_at(1), None, "an acknowledged batch is forgotten");
    }

    #[test]
    fn publishes_without_records_keep_packet_ids_matched_to_their_own_publish() {
        let mut s = DeliveryState::new(8, Replay::OldestFirst);
        s.connected(1);
        s.handed_untracked(); // status
        s.handed_untracked(); // connect
        s.handed_batch(&[1, 2]);
        s.handed(3);
        for pkid in [1, 2, 3, 4] {
            s.outgoing(pkid);
        }
        assert!(s.puback(1).is_empty());
        assert!(s.puback(2).is_empty());
        assert_eq!(s.puback(4), vec![3]);
        assert_eq!(s.puback(3), vec![1, 2]);
    }

    #[test]
    fn an_unacknowledged_batch_is_offered_again_with_the_same_seqs_after_a_reconnect() {
        let mut s = DeliveryState::new(8, Replay::LiveFirst);
        s.connected(1);
        s.handed_batch(&[1, 2, 3]);
        s.handed_batch(&[4, 5]);
        s.outgoing(1);
        s.outgoing(2);
        assert_eq!(s.puback(1), vec![1, 2, 3]);
        s.disconnected();
        s.connected(9);
        assert_eq!(s.batch_at(1), None);
        assert_eq!(s.batch_at(4), Some(&[4, 5][..]));
        s.handed_batch(&[4, 5]);
        assert_eq!(s.batch_at(4), Some(&[4, 5][..]));
        assert_eq!(s.lanes()[1], Lane { from: 6, below: 9 });
    }

    #[test]
    fn a_remembered_batch_whose_records_are_gone_is_forgotten_when_its_lane_passes_it() {
        let mut s = DeliveryState::new(8, Replay::LiveFirst);
        s.connected(1);
        s.handed_batch(&[1, 2]);
        s.handed_batch(&[3, 4]);
        s.disconnected();
        s.connected(10);
        // Live records do not touch the backlog's remembered batches.
        s.handed_batch(&[10, 11]);
        assert!(s.batch_at(1).is_some() && s.batch_at(3).is_some());
        // Records 1 and 2 were dropped: the backlog resumes at 3.
        s.handed_batch(&[3, 4]);
        assert_eq!(s.batch_at(1), None);
        assert_eq!(s.batch_at(3), Some(&[3, 4][..]));
        assert_eq!(s.batch_at(10), Some(&[10, 11][..]), "in flight, kept");
    }
}
