//! The outbox across releases: a store written by the previous release
//! (record format 1, finished JSON) is published as it is; a store holding
//! a record of a format newer than this build refuses to start (exit 2)
//! and is left where it is.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use spindle::outbox::{SledStore, Store, WriteBatch};
use spindle_hil_tests::agent::{AgentProcess, run_spindle};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::agent_toml;
use spindle_hil_tests::subscriber::Subscriber;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures/store-format1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// (seq, topic suffix, payload) of each record the fixture store holds,
/// as the release that wrote it would have published them.
fn expected() -> Vec<(u64, String, String)> {
    let text = std::fs::read_to_string(fixture().with_extension("expected")).unwrap();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            (
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An agent that ran once (so its data directory exists) and was stopped.
fn stopped_agent(broker: &Broker) -> AgentProcess {
    // The fixture's records were made in 2025: keep them from `max_age`.
    let buffer = "max_age = \"3650d\"";
    let mut agent = AgentProcess::start(&agent_toml(&broker.url(), buffer, "")).unwrap();
    let outbox = agent.data_dir().join("outbox");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !outbox.join("store_id").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        outbox.join("store_id").exists(),
        "the agent never opened its outbox"
    );
    agent.terminate(Duration::from_secs(10)).unwrap();
    std::fs::remove_dir_all(&outbox).unwrap();
    agent
}

#[test]
fn a_store_written_by_the_previous_release_is_published_byte_for_byte() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let mut agent = stopped_agent(&broker);
    copy_dir(&fixture(), &agent.data_dir().join("outbox"));
    agent.restart().unwrap();
    let want = expected();
    let (ok, got) = sub.wait_until(Duration::from_secs(30), |messages| {
        want.iter().all(|(_, topic, payload)| {
            messages.iter().any(|m| {
                m.topic == format!("spindle/hil/gw-1/{topic}") && m.payload == payload.as_bytes()
            })
        })
    });
    assert!(
        ok,
        "the format-1 records did not arrive as stored: {:?}",
        got.iter()
            .map(|m| (
                m.topic.clone(),
                String::from_utf8_lossy(&m.payload).into_owned()
            ))
            .collect::<Vec<_>>()
    );
    // The store was kept (same id, no move aside) and goes on past its records.
    let id = std::fs::read_to_string(agent.data_dir().join("outbox/store_id")).unwrap();
    assert_eq!(
        id.trim(),
        want[0].2.split("\"store\":\"").nth(1).unwrap()[..32].to_owned()
    );
    let status = got
        .iter()
        .rev()
        .find(|m| m.topic.ends_with("/status"))
        .unwrap()
        .json();
    assert_eq!(status["store"], id.trim());
    assert!(
        std::fs::read_dir(agent.data_dir()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("damaged")),
        "nothing was moved aside"
    );
}

#[test]
fn a_record_of_a_newer_format_refuses_to_start_and_keeps_the_store() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let agent = stopped_agent(&broker);
    let outbox = agent.data_dir().join("outbox");
    copy_dir(&fixture(), &outbox);
    {
        // A record as a future release would write it: version 3, valid checksum.
        let store = SledStore::open(&outbox, 1 << 20).unwrap();
        let mut record = vec![3u8, 0, 0, 0];
        record.extend_from_slice(&1_764_201_600_999u64.to_be_bytes());
        record.extend_from_slice(b"a body this build cannot read");
        let crc = crc32(&record);
        record.extend_from_slice(&crc.to_be_bytes());
        let mut key = vec![b'r'];
        key.extend_from_slice(&9u64.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.insert(key, record);
        store.apply(batch).unwrap();
        store.flush().unwrap();
    }
    let out = run_spindle(&["run", "-c", agent.config_path().to_str().unwrap()]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("format 3")
            && stderr.contains("newer spindle")
            && stderr.contains("up to 2"),
        "{stderr}"
    );
    assert!(
        outbox.join("store_id").exists(),
        "the store is where it was"
    );
    assert!(
        std::fs::read_dir(agent.data_dir()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("damaged")),
        "a newer store is not damage: nothing was moved aside"
    );
}

/// CRC-32 (IEEE), as the record format uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
