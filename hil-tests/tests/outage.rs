//! Recovery after a broker outage, against the real binary and a mosquitto
//! the test starts (loopback only): the agent's first delivery after the
//! broker returns comes within `reconnect_max` plus a margin (liveness, not
//! speed), and with `replay_rate` the backlog arrives spread out while live
//! telemetry keeps arriving beside it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};
use spindle_hil_tests::subscriber::{Message, Subscriber};

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A telemetry message's seq and ts.
fn telemetry(m: &Message) -> Option<(u64, u64)> {
    if !m.topic.contains("/telemetry/") {
        return None;
    }
    let json = m.json();
    Some((json["seq"].as_u64()?, json["ts"].as_u64()?))
}

/// One device polled every `poll`, with `mqtt` and `buffer` lines added.
fn config(broker: &Broker, plant: &Plant, poll: &str, mqtt: &str, buffer: &str) -> String {
    let text = agent_toml(&broker.url(), buffer, &plant.devices_toml(poll));
    let keep_alive = "keep_alive = \"5s\"\n";
    assert_eq!(text.matches(keep_alive).count(), 1);
    text.replacen(keep_alive, &format!("{keep_alive}{mqtt}\n"), 1)
}

/// Arrival times of a subscriber's messages (by index), taken when the
/// waiting test sees each one (at most a wake-up after its arrival).
#[derive(Default)]
struct Arrivals(RefCell<Vec<Instant>>);

impl Arrivals {
    /// Waits on `sub` until `done` holds over the messages and their arrival times.
    fn wait_until(
        &self,
        sub: &Subscriber,
        limit: Duration,
        done: impl Fn(&[Message], &[Instant]) -> bool,
    ) -> (bool, Vec<Message>) {
        sub.wait_until(limit, |messages| {
            let mut times = self.0.borrow_mut();
            let now = Instant::now();
            while times.len() < messages.len() {
                times.push(now);
            }
            done(messages, &times)
        })
    }

    fn at(&self, index: usize) -> Instant {
        self.0.borrow()[index]
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn the_first_delivery_after_the_broker_returns_comes_within_reconnect_max_plus_5s() {
    let _serial = one_at_a_time();
    let reconnect_max = Duration::from_secs(2);
    let plant = Plant::tcp(1).unwrap();
    // Persistence, stopped gracefully: the subscriber's session survives the outage.
    let mut broker = Broker::start(true).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let text = config(
        &broker,
        &plant,
        "100ms",
        "reconnect_max = \"2s\"",
        "flush_interval = \"10ms\"",
    );
    let agent = AgentProcess::start(&text).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        m.iter().filter_map(telemetry).count() >= 10
    });
    assert!(ok, "telemetry flows; log:\n{}", agent.log());

    for round in 0..2 {
        broker.stop_gracefully();
        // Nothing created from now on can reach the broker before it returns.
        let stopped_ms = now_ms();
        // Long enough for the backoff to reach its cap (200 ms doubling to 2 s).
        std::thread::sleep(Duration::from_secs(10));
        broker.restart().unwrap();
        let returned = Instant::now();
        let (ok, _) = sub.wait_until(reconnect_max + Duration::from_secs(5), |m| {
            m.iter()
                .rev()
                .filter_map(telemetry)
                .any(|(_, ts)| ts >= stopped_ms)
        });
        assert!(
            ok,
            "round {round}: a message created during the outage arrives within {:?} of the broker's return; log tail:\n{}",
            reconnect_max + Duration::from_secs(5),
            tail(&agent.log())
        );
        eprintln!(
            "round {round}: first delivery {:?} after the broker's return",
            returned.elapsed()
        );
    }
}

#[test]
fn with_replay_rate_the_backlog_arrives_spread_out_while_live_telemetry_keeps_arriving() {
    let _serial = one_at_a_time();
    let rate = 20.0; // replay_rate; its burst is a tenth of a second's worth: 2
    let burst = 2.0;
    let plant = Plant::tcp(1).unwrap();
    let mut broker = Broker::start(true).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let text = config(
        &broker,
        &plant,
        "100ms",
        "reconnect_max = \"2s\"",
        "flush_interval = \"10ms\"\nreplay_rate = 20",
    );
    let agent = AgentProcess::start(&text).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        m.iter().filter_map(telemetry).count() >= 10
    });
    assert!(ok, "telemetry flows; log:\n{}", agent.log());
    let arrivals = Arrivals::default();

    // 10 s without a broker at 10 telemetry messages a second: ~100 backlog.
    broker.stop_gracefully();
    let stopped_ms = now_ms();
    std::thread::sleep(Duration::from_secs(10));
    let returned_ms = now_ms();
    broker.restart().unwrap();

    // Created during the outage: the backlog (all of it older than the
    // reconnect). Created after the broker returned with a seq above all of
    // it: live data, unless it was appended before the reconnect (then it
    // is backlog too, and comes after the older backlog).
    let is_backlog = |ts: u64| (stopped_ms..returned_ms).contains(&ts);
    // Done when a message created after the return has arrived and every
    // seq up to the highest is in: the whole backlog is (its seqs are lower).
    let (ok, got) = arrivals.wait_until(&sub, Duration::from_secs(60), |m, _| {
        // Every outbox message has a seq (telemetry, availability, health).
        let seqs: BTreeSet<u64> = m.iter().filter_map(|m| m.json()["seq"].as_u64()).collect();
        let dense = seqs.first() == Some(&1) && seqs.last() == Some(&(seqs.len() as u64));
        dense
            && m.iter()
                .filter_map(telemetry)
                .any(|(_, ts)| ts >= returned_ms)
    });
    assert!(
        ok,
        "the backlog drains and every seq arrives; log tail:\n{}",
        tail(&agent.log())
    );

    // Indices (arrival order) of the backlog, and the highest backlog seq.
    let indexed: Vec<(usize, u64, u64)> = got
        .iter()
        .enumerate()
        .filter_map(|(i, m)| telemetry(m).map(|(s, ts)| (i, s, ts)))
        .collect();
    let backlog: Vec<&(usize, u64, u64)> = indexed
        .iter()
        .filter(|(_, _, ts)| is_backlog(*ts))
        .collect();
    assert!(
        backlog.len() >= 50,
        "the outage left a backlog: {} messages",
        backlog.len()
    );
    let top = backlog.iter().map(|(_, s, _)| *s).max().unwrap();
    let first = backlog.iter().map(|(i, _, _)| *i).min().unwrap();
    let last = backlog.iter().map(|(i, _, _)| *i).max().unwrap();
    let live_before_drained = indexed
        .iter()
        .filter(|(i, s, _)| *s > top && *i < last)
        .count();
    let span = arrivals.at(last).duration_since(arrivals.at(first));
    #[allow(clippy::cast_precision_loss)]
    let paced = Duration::from_secs_f64((backlog.len() as f64 - burst) / rate);
    eprintln!(
        "backlog of {} arrived over {span:?} (at {rate}/s: {paced:?}); {live_before_drained} live messages arrived before it drained",
        backlog.len()
    );
    assert!(
        live_before_drained >= 10,
        "live telemetry interleaves with the paced backlog: {live_before_drained} live messages arrived before the backlog drained"
    );
    assert!(
        span >= paced / 2,
        "the backlog of {} arrives spread out: over {span:?}, at least half of {paced:?}",
        backlog.len()
    );
}

/// How many `availability/dev0` messages with `state` say so.
fn availability(m: &[Message], state: &str) -> usize {
    m.iter()
        .filter(|x| x.topic.ends_with("/availability/dev0") && x.json()["state"] == state)
        .count()
}

#[test]
fn a_tcp_device_back_from_a_long_outage_is_online_again_within_twice_offline_probe_max() {
    let _serial = one_at_a_time();
    let probe_max = Duration::from_secs(2);
    let mut plant = Plant::tcp(1).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let text = config(&broker, &plant, "200ms", "", "flush_interval = \"10ms\"").replacen(
        "timeout = \"500ms\"\n",
        "timeout = \"500ms\"\noffline_probe_max = \"2s\"\n",
        1,
    );
    let agent = AgentProcess::start(&text).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| availability(m, "online") >= 1);
    assert!(ok, "the device comes online; log:\n{}", agent.log());

    // The device goes away (connections refused) for 40 s: long enough for
    // the link's and the prober's backoffs to reach their caps.
    plant.servers[0].stop();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| availability(m, "offline") >= 1);
    assert!(ok, "the device goes offline; log:\n{}", tail(&agent.log()));
    std::thread::sleep(Duration::from_secs(40));
    plant.runtime.block_on(plant.servers[0].restart()).unwrap();
    let back = Instant::now();
    let limit = probe_max * 2 + Duration::from_secs(5);
    let (ok, _) = sub.wait_until(limit, |m| availability(m, "online") >= 2);
    assert!(
        ok,
        "the device is online again within {limit:?} of its return; log tail:\n{}",
        tail(&agent.log())
    );
    eprintln!("device online again {:?} after its return", back.elapsed());
}
