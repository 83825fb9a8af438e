//! Delivery guarantees of the real binary under load: a broker outage, a
//! broker that loses its state with messages in flight, and 50 `kill -9`s
//! of the agent. Nothing durable is lost; a seq never carries two payloads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};
use spindle_hil_tests::proxy::Proxy;
use spindle_hil_tests::subscriber::{Message, Subscriber};

/// Seq → distinct payloads seen for it, over messages with a seq.
fn by_seq(messages: &[Message]) -> BTreeMap<u64, BTreeSet<Vec<u8>>> {
    let mut out: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for m in messages {
        if let Some(seq) = m.json()["seq"].as_u64() {
            out.entry(seq).or_default().insert(m.payload.clone());
        }
    }
    out
}

/// The seqs of the messages received so far, updated incrementally: the
/// predicates of `wait_until` run at every arrival, so they must not re-parse
/// thousands of payloads each time.
#[derive(Default)]
struct SeqTracker {
    processed: std::cell::Cell<usize>,
    seqs: std::cell::RefCell<BTreeSet<u64>>,
}

impl SeqTracker {
    fn update(&self, messages: &[Message]) -> std::cell::Ref<'_, BTreeSet<u64>> {
        let from = self.processed.get().min(messages.len());
        if let Some(new) = messages.get(from..) {
            self.seqs.borrow_mut().extend(seqs(new));
        }
        self.processed.set(messages.len());
        self.seqs.borrow()
    }
}

fn seqs(messages: &[Message]) -> BTreeSet<u64> {
    messages
        .iter()
        .filter_map(|m| m.json()["seq"].as_u64())
        .collect()
}

/// Whether `s` holds every seq from 1 to its largest, and that largest is at least `at_least`.
fn dense(s: &BTreeSet<u64>, at_least: u64) -> bool {
    s.last()
        .is_some_and(|&max| max >= at_least && s.len() as u64 == max && s.first() == Some(&1))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// 4 devices polled every 20 ms: 200 telemetry messages a second.
fn loaded_config(url: &str, plant: &Plant) -> String {
    agent_toml(
        url,
        "flush_interval = \"10ms\"",
        &plant.devices_toml("20ms"),
    )
}

#[test]
fn every_seq_arrives_after_the_broker_was_stopped_for_a_minute_under_200_messages_a_second() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(4).unwrap();
    let mut broker = Broker::start(true).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let agent = AgentProcess::start(&loaded_config(&broker.url(), &plant)).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| seqs(m).len() >= 200);
    assert!(ok, "telemetry flows; log:\n{}", agent.log());

    // The broker goes away (saving its sessions, so the test's subscriber misses nothing) for 60 s.
    broker.stop_gracefully();
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(60)); // the outage itself
    let produced_during_outage_at_least = 60 * 150;
    broker.restart().unwrap();
    let outage = stopped.elapsed();

    let tracker = SeqTracker::default();
    let (ok, got) = sub.wait_until(Duration::from_secs(90), |m| {
        dense(&tracker.update(m), produced_during_outage_at_least)
    });
    let s = seqs(&got);
    assert!(
        ok,
        "after a {outage:?} outage every seq arrives: {} seqs up to {:?}, first hole {:?}; log tail:\n{}",
        s.len(),
        s.last(),
        first_hole(&s),
        tail(&agent.log())
    );
    assert!(
        !got.iter().any(|m| m.topic.ends_with("/gap")),
        "no gap: nothing had to be dropped"
    );
    assert!(
        by_seq(&got).values().all(|p| p.len() == 1),
        "no seq carries two payloads"
    );
}

#[test]
fn messages_in_flight_when_the_broker_loses_its_state_are_sent_again() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(4).unwrap();
    let mut broker = Broker::start(false).unwrap();
    let proxy = Proxy::start(broker.port(), true).unwrap();
    let first = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let agent = AgentProcess::start(&loaded_config(&proxy.url(), &plant)).unwrap();
    let (ok, _) = first.wait_until(Duration::from_secs(20), |m| seqs(m).len() >= 200);
    assert!(ok, "telemetry flows; log:\n{}", agent.log());

    // Freeze the broker: it acknowledges nothing more while the agent keeps
    // sending, so the agent's window (100) fills with unacknowledged messages.
    broker.pause();
    std::thread::sleep(Duration::from_secs(1)); // ~200 messages produced meanwhile
    let before = seqs(&first.messages());
    // Cut the agent off, kill the frozen broker and start a fresh one: no persistence, no sessions.
    proxy.close();
    broker.restart().unwrap();
    let second = Subscriber::start(broker.port(), "spindle/#").unwrap();
    proxy.open();

    let max_before = *before.last().unwrap();
    let tracker = SeqTracker::default();
    tracker.seqs.borrow_mut().extend(before.iter().copied());
    let (ok, got) = second.wait_until(Duration::from_secs(40), |m| {
        dense(&tracker.update(m), max_before + 400)
    });
    let mut all = before.clone();
    all.extend(seqs(&got));
    assert!(
        ok,
        "every seq arrives: first hole {:?} (max before {max_before}); log tail:\n{}",
        first_hole(&all),
        tail(&agent.log())
    );
    let resent: Vec<u64> = seqs(&got)
        .into_iter()
        .filter(|s| *s <= max_before + 200)
        .filter(|s| !before.contains(s))
        .collect();
    assert!(
        resent.len() >= 32,
        "at least 32 messages were in flight and sent again ({})",
        resent.len()
    );
    let mut everything = first.messages();
    everything.extend(got);
    assert!(
        by_seq(&everything).values().all(|p| p.len() == 1),
        "no seq carries two payloads"
    );
}

#[test]
fn fifty_kill_9s_under_load_lose_nothing_durable_and_never_reuse_a_seq_for_another_payload() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(4).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut agent = AgentProcess::start(&loaded_config(&broker.url(), &plant)).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| seqs(m).len() >= 50);
    assert!(ok, "telemetry flows; log:\n{}", agent.log());

    let mut rng = 0x2545_f491_4f6c_dd1d_u64; // xorshift, fixed seed: reproducible "random" moments
    let mut slowest = Duration::ZERO;
    for round in 0..50 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(50 + rng % 450)); // run under load until a random moment
        agent.kill9();
        let restarted_ms = now_ms();
        let restarted = Instant::now();
        agent.restart().unwrap();
        let (ok, _) = sub.wait_until(Duration::from_secs(5), |m| {
            m.iter().rev().take(500).any(|x| {
                x.topic.contains("/telemetry/")
                    && x.json()["ts"].as_u64().is_some_and(|ts| ts >= restarted_ms)
            })
        });
        assert!(
            ok,
            "round {round}: the restarted agent publishes within 5 s; log tail:\n{}",
            tail(&agent.log())
        );
        slowest = slowest.max(restarted.elapsed());
    }
    // Let the last run drain its backlog, then everything received must be dense.
    let tracker = SeqTracker::default();
    let (ok, got) = sub.wait_until(Duration::from_secs(30), |m| dense(&tracker.update(m), 1000));
    let s = seqs(&got);
    assert!(
        ok,
        "seqs are dense over 50 crashes: {} seqs up to {:?}, first hole {:?}",
        s.len(),
        s.last(),
        first_hole(&s)
    );
    let twice: Vec<u64> = by_seq(&got)
        .into_iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(s, _)| s)
        .collect();
    assert!(
        twice.is_empty(),
        "seqs with two different payloads: {twice:?}"
    );
    assert!(
        !got.iter().any(|m| m.topic.ends_with("/gap")),
        "nothing was dropped"
    );
    eprintln!("slowest restart to first publish: {slowest:?}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn first_hole(s: &BTreeSet<u64>) -> Option<u64> {
    (1..=s.last().copied().unwrap_or(0) + 1).find(|x| !s.contains(x))
}
