//! The data directory on a small file system that fills up (a size-limited
//! tmpfs mounted by the test; the tests run as root): polling goes on, the
//! loss is announced on `gap`, and delivery resumes once space is freed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::disk::SmallDisk;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};
use spindle_hil_tests::proxy::Proxy;
use spindle_hil_tests::subscriber::Subscriber;

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn wait_for_log(agent: &AgentProcess, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if agent.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100)); // the log file has no change notification here
    }
    false
}

#[test]
fn a_full_disk_is_a_full_outbox_and_delivery_resumes_when_space_returns() {
    let _serial = one_at_a_time();
    let disk = SmallDisk::mount("6m").unwrap();
    let plant = Plant::tcp(3).unwrap();
    let broker = Broker::start(false).unwrap();
    let proxy = Proxy::start(broker.port(), false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let data = disk.path().join("data");
    let config = agent_toml(
        &proxy.url(),
        "flush_interval = \"10ms\"",
        &plant.devices_toml("20ms"),
    )
    .replace(
        "data_dir = \"{data_dir}\"",
        &format!("data_dir = \"{}\"", data.display()),
    );
    let mut agent = AgentProcess::start(&config).unwrap();
    assert!(
        wait_for_log(&agent, "Outbox open", Duration::from_secs(10)),
        "{}",
        agent.log()
    );

    // Leave about 1.5 MiB free, then let the outbox run into the wall while the broker is out of reach.
    let filler: PathBuf = disk.path().join("filler");
    let leave = 1_500_000u64;
    let fill = free_bytes(disk.path()).saturating_sub(leave);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    assert!(
        wait_for_log(&agent, "Outbox write failed", Duration::from_secs(60)),
        "the full disk is noticed; log:\n{}",
        agent.log()
    );
    assert!(agent.pid().is_some(), "the agent keeps running");

    // Space returns; the broker becomes reachable.
    std::fs::remove_file(&filler).unwrap();
    let freed_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    proxy.open();
    let (ok, got) = sub.wait_until(Duration::from_secs(60), |m| {
        let gap = m
            .iter()
            .any(|x| x.topic.ends_with("/gap") && x.json()["reason"] == "outbox_full");
        let fresh = m.iter().any(|x| {
            x.topic.contains("/telemetry/")
                && x.json()["ts"]
                    .as_u64()
                    .is_some_and(|ts| ts > freed_ms + 2000)
        });
        gap && fresh
    });
    assert!(
        ok,
        "the loss is announced and fresh telemetry flows again; log tail:\n{}",
        {
            let log = agent.log();
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        }
    );
    let gap = got
        .iter()
        .find(|x| x.topic.ends_with("/gap"))
        .unwrap()
        .json();
    assert!(gap["count"].as_u64().unwrap() > 0, "{gap}");
    // Every seq up to the gap is either received or inside it.
    let gap_seq = gap["seq"].as_u64().unwrap();
    let (from, to) = (
        gap["from_seq"].as_u64().unwrap(),
        gap["to_seq"].as_u64().unwrap(),
    );
    let received: std::collections::BTreeSet<u64> = got
        .iter()
        .filter_map(|m| m.json()["seq"].as_u64())
        .collect();
    let missing_outside: Vec<u64> = (1..gap_seq)
        .filter(|s| !received.contains(s) && !(from..=to).contains(s))
        .collect();
    let (ok, _) = sub.wait_until(Duration::from_secs(20), |m| {
        let r: std::collections::BTreeSet<u64> =
            m.iter().filter_map(|x| x.json()["seq"].as_u64()).collect();
        (1..gap_seq).all(|s| r.contains(&s) || (from..=to).contains(&s))
    });
    assert!(
        ok,
        "every seq before the gap is delivered or inside it; missing at first: {missing_outside:?}"
    );
    let status = agent.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop after recovering"
    );
}
