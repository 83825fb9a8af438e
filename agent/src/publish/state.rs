//! Delivery bookkeeping between the outbox and the MQTT client: which seqs
//! are in flight, which packet id carries which seq, and where the live and
//! backlog cursors stand.
//!
//! Pure: no I/O, no clock. The publisher drives it with what it does
//! (`handed`) and what the event loop reports (`outgoing`, `puback`,
//! `connected`, `disconnected`).
//!
//! Invariants:
//! - at most `window` seqs are in flight;
//! - a seq is acknowledged only by the PUBACK of the packet id rumqttc gave
//!   *that* publish (`Outgoing::Publish(pkid)` arrives in hand-over order);
//! - after every (re)connect nothing is in flight and both cursors restart
//!   at the oldest record, so every unacknowledged record is sent again;
//! - `live_first`: records appended after the connect (the live lane) are
//!   offered before the backlog (seqs below the connect-time bound);
//!   `oldest_first`: one cursor, strict seq order.

use std::collections::{BTreeSet, HashMap, VecDeque};

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
    awaiting_pkid: VecDeque<u64>,
    by_pkid: HashMap<u16, u64>,
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
            awaiting_pkid: VecDeque::new(),
            by_pkid: HashMap::new(),
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
        self.awaiting_pkid.clear();
        self.by_pkid.clear();
    }

    /// Free places in the in-flight window.
    pub fn room(&self) -> usize {
        if self.connected {
            self.window.saturating_sub(self.in_flight.len())
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
        self.in_flight.insert(seq);
        self.awaiting_pkid.push_back(seq);
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
        if let Some(seq) = self.awaiting_pkid.pop_front() {
            self.by_pkid.insert(pkid, seq);
        }
    }

    /// The broker acknowledged `pkid`: returns the seq it carried.
    pub fn puback(&mut self, pkid: u16) -> Option<u64> {
        let seq = self.by_pkid.remove(&pkid)?;
        self.in_flight.remove(&seq);
        Some(seq)
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
        assert_eq!(s.puback(3), Some(2));
        assert_eq!(s.puback(7), Some(1));
        assert_eq!(s.puback(7), None, "an ack is used once");
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
        assert_eq!(s.puback(1), None, "acks of a lost session mean nothing");
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
}
