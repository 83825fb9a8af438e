//! Model-based test of the outbox: random sequences of append, flush,
//! publish, ack, reconnect (with and without a session), crash (losing some
//! or all unflushed writes), reopen, and a filling/recovering disk, checked
//! against a plain in-memory model of what must hold.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use std::sync::Arc;

use spindle::message::{
    self, AvailabilityChange, AvailabilityReason, CncCoverage, GapReport, KpiFigures, KpiWindow,
    Message, Quality, Reachability, Reading, Telemetry, Value, WindowSpan,
};
use spindle::outbox::{Body, Kind, MemStore, Outbox, OutboxOptions, Record, Store};

/// A message of `kind` whose encoding grows with `pad`.
fn msg(kind: Kind, pad: usize) -> Message {
    let text = "x".repeat(pad);
    match kind {
        Kind::Telemetry | Kind::Health | Kind::Gap => Message::Telemetry(Telemetry {
            ts: 1,
            device: Arc::from("d"),
            points: vec![(
                Arc::from("pad"),
                Reading::Value(Value::Text(Arc::from(text.as_str()))),
            )],
            snapshot: false,
        }),
        Kind::Availability => Message::Availability(AvailabilityChange {
            ts: 1,
            device: text,
            state: Reachability::Online,
            reason: AvailabilityReason::PollOk,
        }),
        Kind::Kpi => Message::Kpi(KpiWindow {
            ts: 1,
            name: text,
            window: WindowSpan { start: 0, end: 1 },
            figures: KpiFigures::CncCoverage(CncCoverage {
                count_ratio: None,
                networked_ratio: None,
                time_ratio: None,
                equipment: 0,
                numerically_controlled: 0,
                networked: 0,
                running_s: 0.0,
                cnc_running_s: 0.0,
            }),
            quality: Quality::NoData,
            flags: Vec::new(),
            sample_completeness: None,
        }),
    }
}

#[derive(Debug, Clone)]
enum Action {
    Append { kind: Kind, size: usize },
    Flush,
    Publish { n: usize },
    Ack { n: usize },
    Reconnect,
    Crash { keep: usize },
    DiskFull(bool),
    Tick { advance_ms: u64 },
    Recover,
}

fn action() -> impl Strategy<Value = Action> {
    let kind = prop_oneof![
        6 => Just(Kind::Telemetry),
        1 => Just(Kind::Health),
        1 => Just(Kind::Availability),
        1 => Just(Kind::Kpi),
    ];
    prop_oneof![
        30 => (kind, 0usize..200).prop_map(|(kind, size)| Action::Append { kind, size }),
        8 => Just(Action::Flush),
        8 => (1usize..20).prop_map(|n| Action::Publish { n }),
        8 => (1usize..20).prop_map(|n| Action::Ack { n }),
        2 => Just(Action::Reconnect),
        2 => (0usize..4).prop_map(|keep| Action::Crash { keep }),
        1 => any::<bool>().prop_map(Action::DiskFull),
        3 => (0u64..40_000).prop_map(|advance_ms| Action::Tick { advance_ms }),
        1 => Just(Action::Recover),
    ]
}

fn opts() -> OutboxOptions {
    OutboxOptions {
        max_size: 2_000,
        max_age: Duration::from_secs(60),
        max_record: 1_000,
        cache_capacity: 1 << 20,
    }
}

/// Everything the store holds, by seq.
fn contents(store: &MemStore) -> BTreeMap<u64, Record> {
    let mut prefix_from = vec![b'r'];
    prefix_from.extend_from_slice(&0u64.to_be_bytes());
    store
        .scan(b"r", &prefix_from, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            (
                u64::from_be_bytes(k[1..].try_into().unwrap()),
                Record::decode(&v).unwrap(),
            )
        })
        .collect()
}

#[derive(Debug, Default)]
struct GapSeen {
    from: u64,
    to: u64,
    count: u64,
}

fn gap_of(record: &Record) -> Option<GapSeen> {
    if record.kind != Kind::Gap {
        return None;
    }
    let Body::Message(bytes) = &record.body else {
        return None;
    };
    match message::decode(bytes).unwrap() {
        Message::Gap(GapReport::Dropped {
            from_seq,
            to_seq,
            count,
            ..
        }) => Some(GapSeen {
            from: from_seq,
            to: to_seq,
            count,
        }),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn the_outbox_never_loses_a_durable_record_silently(actions in proptest::collection::vec(action(), 1..120)) {
        check(actions)?;
    }
}

/// A case proptest found once (CI, seed in the regressions file), kept as a plain test.
#[test]
fn a_crash_after_drops_keeps_every_gap_count_exact() {
    use Action::{Append, Crash, Flush, Publish};
    let t = |size| Append {
        kind: Kind::Telemetry,
        size,
    };
    let actions = vec![
        t(112),
        t(1),
        t(20),
        t(180),
        t(158),
        Flush,
        t(111),
        t(150),
        t(182),
        t(9),
        Flush,
        t(0),
        Publish { n: 9 },
        t(47),
        Crash { keep: 3 },
        Publish { n: 9 },
        t(47),
        t(0),
    ];
    check(actions).unwrap();
}

#[allow(clippy::too_many_lines, clippy::needless_pass_by_value)]
fn check(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let mut store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    let store_id = outbox.store_id().to_owned();
    let mut now = 1_000_000u64;
    let mut failing = false;

    // Model.
    let mut published: BTreeMap<u64, Body> = BTreeMap::new();
    let mut in_flight: Vec<u64> = Vec::new();
    let mut cursor = 1u64;
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut ever_durable: BTreeSet<u64> = BTreeSet::new();
    let mut gap_records: BTreeMap<u64, Record> = BTreeMap::new();

    for action in actions {
        let before = contents(&store);
        match action {
            Action::Append { kind, size } => {
                let appended = outbox.append(&msg(kind, size), now);
                if let Ok(seq) = appended {
                    prop_assert!(
                        before.keys().all(|&s| s < seq),
                        "seq {seq} not above every stored seq"
                    );
                }
                let after = contents(&store);
                // Drop order: whatever disappeared (not acked) was the oldest of its class,
                // and KPI windows only go once nothing droppable of a lower class is left.
                let dropped: Vec<u64> = before
                    .keys()
                    .filter(|s| !after.contains_key(s))
                    .copied()
                    .collect();
                for &d in &dropped {
                    let class = before[&d].kind;
                    prop_assert!(class != Kind::Gap, "a gap record was dropped");
                    let in_flight_set: BTreeSet<u64> = in_flight.iter().copied().collect();
                    prop_assert!(
                        !in_flight_set.contains(&d),
                        "an in-flight record was dropped"
                    );
                    let expired = before[&d].created_ms + 60_000 < now;
                    if class == Kind::Kpi && !expired {
                        prop_assert!(
                            after.iter().all(|(s, r)| in_flight_set.contains(s)
                                || matches!(r.kind, Kind::Kpi | Kind::Gap)),
                            "a KPI window was dropped while telemetry remained"
                        );
                    }
                }
                if !failing {
                    let undroppable: u64 = after
                        .iter()
                        .filter(|(s, r)| r.kind == Kind::Gap || in_flight.contains(s))
                        .map(|(_, r)| r.encoded_len() as u64)
                        .sum();
                    prop_assert!(
                        outbox.stats().bytes <= opts().max_size.max(undroppable),
                        "bytes over max_size"
                    );
                }
            }
            Action::Flush => {
                if outbox.flush().is_ok() {
                    ever_durable.extend(contents(&store).keys());
                }
            }
            Action::Publish { n } => {
                let records = outbox.read(cursor, n, now).unwrap_or_default();
                for (seq, rec) in records {
                    prop_assert!(
                        seq < outbox.durable_next(),
                        "a record that is not durable was published"
                    );
                    if let Some(previous) = published.get(&seq) {
                        prop_assert_eq!(previous, &rec.body, "seq {} carried two payloads", seq);
                    }
                    published.insert(seq, rec.body.clone());
                    if rec.kind == Kind::Gap {
                        gap_records.insert(seq, rec.clone());
                    }
                    outbox.mark_in_flight(seq, rec.encoded_len());
                    in_flight.push(seq);
                    cursor = seq + 1;
                }
            }
            Action::Ack { n } => {
                let take: Vec<u64> = in_flight.drain(..n.min(in_flight.len())).collect();
                if outbox.ack(&take).is_ok() {
                    acked.extend(take);
                } else {
                    in_flight.splice(0..0, take);
                }
            }
            Action::Reconnect => {
                outbox.release_in_flight();
                in_flight.clear();
                cursor = 1;
            }
            Action::Crash { keep } => {
                // The broker may have acked things that the crash un-removes: they come back (duplicates are fine).
                store = store.crash(keep);
                outbox = Outbox::from_store(store.clone(), opts()).unwrap();
                prop_assert_eq!(outbox.store_id(), store_id.as_str());
                let now_present = contents(&store);
                for &s in &ever_durable {
                    prop_assert!(
                        now_present.contains_key(&s)
                            || acked.contains(&s)
                            || !before.contains_key(&s),
                        "durable record {s} vanished in a crash"
                    );
                }
                ever_durable.extend(now_present.keys());
                in_flight.clear();
                cursor = 1;
                failing = false;
            }
            Action::DiskFull(on) => {
                store.set_failing(on);
                failing = on;
            }
            Action::Recover => {
                // Reopen from what is durable (what a full disk forces).
                let _ = outbox.recover();
                in_flight.retain(|s| contents(&store).contains_key(s));
            }
            Action::Tick { advance_ms } => {
                now += advance_ms;
                let _ = outbox.enforce_limits(now);
            }
        }
        // Counters agree with the store.
        let present = contents(&store);
        prop_assert_eq!(outbox.stats().depth, present.len() as u64);
        prop_assert_eq!(
            outbox.stats().bytes,
            present
                .values()
                .map(|r| r.encoded_len() as u64)
                .sum::<u64>()
        );
    }

    // Settle: the disk works again, everything is flushed, the open gap is announced.
    // Then a broker drains everything (which lets the open gap close).
    store.set_failing(false);
    outbox.release_in_flight();
    for _ in 0..3 {
        outbox.flush().unwrap();
        let all = outbox.read(1, usize::MAX, now).unwrap();
        for (seq, rec) in &all {
            if rec.kind == Kind::Gap {
                gap_records.insert(*seq, rec.clone());
            }
        }
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        outbox.ack(&seqs).unwrap();
        acked.extend(seqs);
        outbox.enforce_limits(now).unwrap();
    }
    outbox.flush().unwrap();
    let present = contents(&store);
    for (seq, rec) in &present {
        if rec.kind == Kind::Gap {
            gap_records.insert(*seq, rec.clone());
        }
    }
    let gaps: Vec<GapSeen> = gap_records.values().filter_map(gap_of).collect();
    // Nothing durable is gone without being delivered or announced.
    for &s in &ever_durable {
        if present.contains_key(&s) || acked.contains(&s) {
            continue;
        }
        prop_assert!(
            gaps.iter().any(|g| g.from <= s && s <= g.to),
            "record {s} vanished without a gap"
        );
    }
    // Every gap counts exactly the records of its range that are gone.
    for g in &gaps {
        prop_assert!(
            g.from <= g.to && g.count >= 1 && g.count <= g.to - g.from + 1,
            "gap {:?} of {:?}",
            g,
            gaps
        );
    }
    prop_assert!(outbox.pending_gap().is_none());
    Ok(())
}

#[test]
fn a_reopened_outbox_continues_the_sequence_and_keeps_its_store_id() {
    let store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    let id = outbox.store_id().to_owned();
    for _ in 0..5 {
        outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    }
    outbox.flush().unwrap();
    let crashed = store.crash(0);
    let mut reopened = Outbox::from_store(crashed, opts()).unwrap();
    assert_eq!(reopened.store_id(), id);
    let seq = reopened.append(&msg(Kind::Telemetry, 0), 2).unwrap();
    assert_eq!(seq, 6);
}

#[test]
fn a_seq_is_never_reused_when_records_that_outlived_their_counter_are_acknowledged() {
    // Appends write their record alone and the seq counter is written when
    // a flush starts; records that survive a crash beyond the stored
    // counter must push it past them before they can be acknowledged.
    let store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    outbox.flush().unwrap();
    for _ in 0..3 {
        outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    }
    // The crash keeps the three unflushed records (seqs 2..=4) but the
    // counter stored is still 2.
    let crashed = store.crash(3);
    let mut reopened = Outbox::from_store(crashed.clone(), opts()).unwrap();
    assert_eq!(reopened.next_seq(), 5);
    let published: Vec<u64> = reopened
        .read(1, 10, 1)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(published, vec![1, 2, 3, 4]);
    assert_eq!(reopened.ack(&published).unwrap(), 4);
    // A crash that keeps none of the (unflushed) deletions, and one that keeps all.
    for keep in [0, 4] {
        let mut again = Outbox::from_store(crashed.crash(keep), opts()).unwrap();
        assert_eq!(again.next_seq(), 5, "keeping {keep} deletions");
        let seq = again.append(&msg(Kind::Telemetry, 0), 2).unwrap();
        assert_eq!(seq, 5);
    }
}

#[test]
fn unflushed_records_are_never_published_and_may_be_lost_in_a_crash() {
    let store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    assert!(outbox.read(1, 10, 1).unwrap().is_empty());
    outbox.flush().unwrap();
    assert_eq!(outbox.read(1, 10, 1).unwrap().len(), 1);
    outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    let mut reopened = Outbox::from_store(store.crash(0), opts()).unwrap();
    assert_eq!(reopened.read(1, 10, 1).unwrap().len(), 1);
    assert_eq!(reopened.next_seq(), 2);
}

#[test]
fn a_full_outbox_drops_the_oldest_telemetry_and_announces_one_gap_for_the_range() {
    let store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    outbox.append(&msg(Kind::Kpi, 1), 1).unwrap();
    for _ in 0..60 {
        outbox.append(&msg(Kind::Telemetry, 80), 1).unwrap();
    }
    let gap = outbox.pending_gap().expect("drops are pending");
    assert_eq!(
        gap.from_seq, 2,
        "the KPI window (seq 1) is kept, telemetry from seq 2 goes"
    );
    // Draining makes room: the next check finds nothing to drop and announces the gap.
    outbox.flush().unwrap();
    let all: Vec<u64> = outbox
        .read(1, 1000, 1)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    outbox.ack(&all).unwrap();
    outbox.enforce_limits(2).unwrap();
    assert!(outbox.pending_gap().is_none());
    outbox.flush().unwrap();
    let rest = outbox.read(1, 1000, 2).unwrap();
    let gaps: Vec<_> = rest.iter().filter_map(|(_, r)| gap_of(r)).collect();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].from, gaps[0].count), (gap.from_seq, gap.count));
    assert_eq!(
        gaps[0].to - gaps[0].from + 1,
        gaps[0].count,
        "telemetry-only range is contiguous"
    );
}

#[test]
fn a_message_over_the_packet_limit_is_refused_without_using_a_seq() {
    let mut outbox = Outbox::from_store(MemStore::default(), opts()).unwrap();
    let err = outbox.append(&msg(Kind::Telemetry, 2000), 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than the broker's packet limit"),
        "{err}"
    );
    assert_eq!(outbox.next_seq(), 1);
}

#[test]
fn a_corrupted_record_makes_the_store_count_as_damaged() {
    let store = MemStore::default();
    let mut outbox = Outbox::from_store(store.clone(), opts()).unwrap();
    outbox.append(&msg(Kind::Telemetry, 0), 1).unwrap();
    outbox.flush().unwrap();
    let mut key = vec![b'r'];
    key.extend_from_slice(&1u64.to_be_bytes());
    store.corrupt(&key, b"garbage that is long enough".to_vec());
    let err = Outbox::from_store(store, opts()).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}
