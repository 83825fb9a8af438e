//! The local KPI history under faults, with the real binary: a full disk
//! under `data_dir/history` (a tmpfs mounted there and filled) makes
//! history writes fail — counted in `health` (`history.write_errors`) and
//! logged — while telemetry and KPI windows keep flowing over MQTT, and the
//! history takes windows again once space is back; and a history file cut
//! inside its last record (what a kill during a write leaves) is read by
//! `spindle history` up to its last complete record with a warning naming
//! file and line, and `spindle run` reports the torn tail, ends it and
//! appends after it correctly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spindle_hil_tests::agent::{AgentProcess, run_spindle};
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::disk::SmallDisk;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::Plant;
use spindle_hil_tests::subscriber::{Message, Subscriber};

const KPI_TOPIC: &str = "spindle/hil/gw-1/kpi/energy_consumption/plant";

/// An agent with one meter and a 2 s `energy_consumption` KPI.
fn config(broker: &Broker, plant: &Plant, data_dir: &str) -> String {
    format!(
        r#"[agent]
id = "gw-1"
site = "hil"
data_dir = "{data_dir}"
timezone = "UTC"

[mqtt]
url = "{url}"

[buffer]
flush_interval = "10ms"

[[device]]
name = "meter"
tcp = "{meter}"
unit = 1
poll = "200ms"
timeout = "300ms"
[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u16"
unit = "kWh"
counter = true

[[kpi.energy_consumption]]
name = "plant"
window = "2s"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
"#,
        url = broker.url(),
        meter = plant.servers[0].local_addr(),
    )
}

/// Window starts of the KPI windows received.
fn window_starts(messages: &[Message]) -> BTreeSet<u64> {
    messages
        .iter()
        .filter(|m| m.topic == KPI_TOPIC)
        .filter_map(|m| m.json()["window"]["start"].as_u64())
        .collect()
}

/// `spindle history --format json` over every window: (window starts, stderr).
fn export(config: &Path) -> (Vec<u64>, String) {
    let out = run_spindle(&[
        "history",
        "-c",
        &config.display().to_string(),
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
    ])
    .unwrap();
    assert!(
        out.status.success(),
        "spindle history: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["window"]["start"]
                .as_u64()
                .unwrap()
        })
        .collect();
    (starts, String::from_utf8_lossy(&out.stderr).into_owned())
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
fn a_full_disk_under_the_history_is_counted_while_kpis_flow_and_history_resumes() {
    let _serial = one_at_a_time();
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let disk = SmallDisk::mount_on(&data.join("history"), "64k").unwrap();
    let filler = disk.fill("filler").unwrap();
    let plant = Plant::tcp(1).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let config_path = base.path().join("spindle.toml");
    std::fs::write(
        &config_path,
        config(&broker, &plant, &data.display().to_string()),
    )
    .unwrap();
    let mut agent = AgentProcess::start(&std::fs::read_to_string(&config_path).unwrap()).unwrap();

    // History full: KPI windows and telemetry still arrive, and the
    // failure is in health once the first report (60 s after start) is out.
    let (ok, got) = sub.wait_until(Duration::from_secs(90), |m| {
        m.iter().any(|m| {
            m.topic.ends_with("/health") && m.json()["history"]["write_errors"].as_u64() >= Some(1)
        })
    });
    assert!(
        ok,
        "health counts the failed history writes; log:\n{}",
        agent.log()
    );
    let health = got
        .iter()
        .find(|m| m.topic.ends_with("/health"))
        .unwrap()
        .json();
    spindle_hil_tests::schema::validate("health", &health).unwrap();
    let published = window_starts(&got);
    assert!(
        published.len() >= 20,
        "KPI windows keep flowing with the history full: {}",
        published.len()
    );
    assert!(
        got.iter()
            .filter(|m| m.topic.contains("/telemetry/"))
            .count()
            >= 200,
        "telemetry keeps flowing"
    );
    let errors = health["history"]["write_errors"].as_u64().unwrap();
    assert!(
        errors >= 20 && errors <= published.len() as u64,
        "every window the history could not take is counted ({errors} of {} published)",
        published.len()
    );
    assert!(
        agent
            .log()
            .contains("could not be written to the local history"),
        "the failure is logged"
    );
    let (in_history, _) = export(&agent.config_path());
    assert!(
        in_history.is_empty(),
        "nothing fitted into the full history: {in_history:?}"
    );

    // Space is back: the next windows are in the history again.
    std::fs::remove_file(&filler).unwrap();
    // Windows published until now may have met the full disk; of those
    // closed from now on, the first may still have (it was being written).
    let last_before = *window_starts(&sub.messages()).last().unwrap();
    let (ok, got) = sub.wait_until(Duration::from_secs(20), |m| {
        window_starts(m).range(last_before + 1..).count() >= 3
    });
    assert!(ok, "windows go on after space is back");
    let (in_history, _) = export(&agent.config_path());
    let later: Vec<u64> = window_starts(&got)
        .range(last_before + 1..)
        .copied()
        .collect();
    let resumed: Vec<u64> = in_history
        .iter()
        .copied()
        .filter(|s| *s > last_before)
        .collect();
    assert!(
        later.iter().skip(1).all(|s| resumed.contains(s)),
        "the history takes windows again: published {later:?}, history {resumed:?}"
    );
    assert!(
        in_history
            .iter()
            .all(|s| published.contains(s) || later.contains(s)),
        "the history holds only published windows"
    );
    let status = agent.terminate(Duration::from_secs(10));
    let log = agent.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "clean stop; log:\n{log}"
    );
    assert!(!log.contains("panicked"), "nothing panics; log:\n{log}");
    drop(disk);
}

/// The newest history file of a data dir.
fn newest_history_file(data: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("history"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn a_history_file_cut_inside_its_last_record_is_read_reported_and_appended_after() {
    let _serial = one_at_a_time();
    let plant = Plant::tcp(1).unwrap();
    let broker = Broker::start(false).unwrap();
    let sub = Subscriber::start(broker.port(), KPI_TOPIC).unwrap();
    let mut agent = AgentProcess::start(&config(&broker, &plant, "{data_dir}")).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(30), |m| window_starts(m).len() >= 4);
    assert!(ok, "windows are published; log:\n{}", agent.log());
    agent.kill9();

    // What a kill inside a write leaves: the last record cut short.
    let file = newest_history_file(&agent.data_dir());
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    let last = lines.last().unwrap();
    let cut = text.len() - 1 - last.len() / 2; // inside the last record, its newline gone
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    let complete: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["window"]["start"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let (exported, warnings) = export(&agent.config_path());
    assert_eq!(exported, complete, "every complete record, in order, once");
    let torn_line = lines.len();
    assert!(
        warnings.contains(&format!(
            "{}:{torn_line}: skipped a torn last line",
            file.display()
        )),
        "the torn tail is reported with file and line: {warnings}"
    );

    // The agent comes back: it reports the torn tail, ends it and appends after it.
    agent.restart().unwrap();
    let seen = window_starts(&sub.messages()).len();
    let (ok, got) = sub.wait_until(Duration::from_secs(30), |m| {
        window_starts(m).len() >= seen + 3
    });
    assert!(ok, "windows after the restart; log:\n{}", agent.log());
    assert!(
        wait_for_log(
            &agent,
            "The local history ends inside a line",
            Duration::from_secs(5)
        ),
        "run reports the torn tail; log:\n{}",
        agent.log()
    );
    let status = agent.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()));
    let (exported, warnings) = export(&agent.config_path());
    let published = window_starts(&got);
    let torn_start = serde_json::from_str::<serde_json::Value>(last).unwrap()["window"]["start"]
        .as_u64()
        .unwrap();
    assert_eq!(
        &exported[..complete.len()],
        complete.as_slice(),
        "the complete records before the tear are all there"
    );
    let after: Vec<u64> = exported[complete.len()..].to_vec();
    assert!(
        after.len() >= 3 && after.iter().all(|s| *s > *complete.last().unwrap()),
        "the windows after the restart follow: {after:?}"
    );
    assert!(
        exported.iter().all(|s| published.contains(s)),
        "only published windows, each once (dedupe): {exported:?}"
    );
    assert_eq!(
        exported.iter().collect::<BTreeSet<_>>().len(),
        exported.len(),
        "each window once"
    );
    // The cut record is skipped, never guessed at. (It was delivered over
    // MQTT before the cut: here the tear was made after the fact. A kill
    // inside the real write leaves the window out of the outbox, and the
    // engine closes it again after the restart — `kpi_consumption.rs`.)
    assert!(
        !exported.contains(&torn_start) || after.contains(&torn_start),
        "the torn record is not read as a window"
    );
    assert!(
        warnings.contains(&format!("{}:{torn_line}: skipped a line", file.display())),
        "the ended torn line stays one skipped line: {warnings}"
    );
    assert!(!agent.log().contains("panicked"));
}
