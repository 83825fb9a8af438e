//! The outbox under pressure, end to end: a tiny `max_size`, a damaged
//! store, and a full disk. Every loss is announced on `gap`, exactly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};
use spindle_hil_tests::proxy::Proxy;
use spindle_hil_tests::subscriber::{Message, Subscriber};

#[derive(Debug, Clone, PartialEq, Eq)]
struct GapSeen {
    seq: u64,
    from: u64,
    to: u64,
    count: u64,
    reason: String,
}

/// Seq → payload of everything with a seq from `store`, and the gaps among them.
fn analyse(messages: &[Message], store: &str) -> (BTreeMap<u64, Vec<u8>>, Vec<GapSeen>) {
    let mut received = BTreeMap::new();
    let mut gaps = Vec::new();
    for m in messages {
        let v = m.json();
        if v["store"] != store {
            continue;
        }
        let Some(seq) = v["seq"].as_u64() else {
            continue;
        };
        received.insert(seq, m.payload.clone());
        if m.topic.ends_with("/gap") && v.get("from_seq").is_some() {
            gaps.push(GapSeen {
                seq,
                from: v["from_seq"].as_u64().unwrap(),
                to: v["to_seq"].as_u64().unwrap(),
                count: v["count"].as_u64().unwrap(),
                reason: v["reason"].as_str().unwrap().to_owned(),
            });
        }
    }
    gaps.sort_by_key(|g| g.from);
    gaps.dedup();
    (received, gaps)
}

fn store_of(messages: &[Message]) -> Option<String> {
    messages
        .iter()
        .find(|m| m.topic.ends_with("/status"))
        .and_then(|m| m.json()["store"].as_str().map(str::to_owned))
}

/// Seqs below `upto` that are neither received nor inside a gap.
fn unaccounted(received: &BTreeMap<u64, Vec<u8>>, gaps: &[GapSeen], upto: u64) -> Vec<u64> {
    (1..upto)
        .filter(|s| !received.contains_key(s) && !gaps.iter().any(|g| g.from <= *s && *s <= g.to))
        .collect()
}

#[test]
fn a_tiny_max_size_drops_the_oldest_and_announces_exactly_one_gap_with_the_right_count() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(3).unwrap();
    let broker = Broker::start(false).unwrap();
    let proxy = Proxy::start(broker.port(), false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let config = agent_toml(
        &proxy.url(),
        "max_size = \"8KiB\"\nflush_interval = \"10ms\"",
        &plant.devices_toml("50ms"),
    );
    let agent = AgentProcess::start(&config).unwrap();

    // Produce ~180 messages into an outbox that holds ~40 while the broker is out of reach.
    std::thread::sleep(Duration::from_secs(3));
    proxy.open();
    let (ok, got) = sub.wait_until(Duration::from_secs(40), |m| {
        let Some(store) = store_of(m) else {
            return false;
        };
        let (received, gaps) = analyse(m, &store);
        gaps.first()
            .is_some_and(|g| unaccounted(&received, &gaps, g.seq).is_empty())
    });
    assert!(
        ok,
        "a gap arrives and accounts for every missing seq; log:\n{}",
        agent.log()
    );
    let store = store_of(&got).unwrap();
    let (received, gaps) = analyse(&got, &store);
    assert_eq!(gaps.len(), 1, "one burst of drops is one gap: {gaps:?}");
    let g = &gaps[0];
    assert_eq!(g.reason, "outbox_full");
    let missing = (g.from..=g.to)
        .filter(|s| !received.contains_key(s))
        .count() as u64;
    assert_eq!(
        g.count, missing,
        "the gap's count is exactly what is missing in its range"
    );
    assert!(
        g.count > 100,
        "most of the ~180 messages had to go (count {})",
        g.count
    );
    assert_eq!(g.from, 1, "the oldest telemetry went first");
    let gap = got.iter().find(|m| m.topic.ends_with("/gap")).unwrap();
    spindle_hil_tests::schema::validate("gap", &gap.json()).unwrap();
}

#[test]
fn a_corrupted_store_is_moved_aside_and_its_loss_announced() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(1).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let config = agent_toml(
        &broker.url(),
        "flush_interval = \"10ms\"",
        &plant.devices_toml("100ms"),
    );
    let mut agent = AgentProcess::start(&config).unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(20), |m| {
        m.iter().filter(|x| x.topic.contains("/telemetry/")).count() >= 5
    });
    assert!(ok, "telemetry flows; log:\n{}", agent.log());
    let old_store = store_of(&got).unwrap();
    agent.kill9();

    // Damage every file of the store.
    let outbox = agent.data_dir().join("outbox");
    let mut damaged = 0;
    for entry in walk(&outbox) {
        if entry.file_name().is_some_and(|n| n == "store_id") {
            continue;
        }
        let len = std::fs::metadata(&entry).unwrap().len();
        std::fs::write(&entry, vec![0xA5; usize::try_from(len.max(64)).unwrap()]).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "the store has files to damage");

    agent.restart().unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(20), |m| {
        m.iter()
            .any(|x| x.topic.ends_with("/gap") && x.json()["reason"] == "store_damaged")
    });
    assert!(
        ok,
        "a store_damaged gap is published; log:\n{}",
        agent.log()
    );
    let gap = got
        .iter()
        .find(|x| x.topic.ends_with("/gap"))
        .unwrap()
        .json();
    assert_eq!(
        gap["lost_store"],
        old_store.as_str(),
        "the gap names the lost store"
    );
    assert_ne!(
        gap["store"],
        old_store.as_str(),
        "a new store with a new id"
    );
    assert_eq!(gap["seq"], 1, "the new store's sequence starts over");
    spindle_hil_tests::schema::validate("gap", &gap).unwrap();
    let aside: Vec<_> = std::fs::read_dir(agent.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("outbox.damaged-")
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the damaged store is kept aside for inspection"
    );
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        m.iter()
            .any(|x| x.topic.contains("/telemetry/") && x.json()["store"] == gap["store"])
    });
    assert!(ok, "the agent goes on with the new store");
    assert!(agent.log().contains("damaged"), "the loss is logged");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
