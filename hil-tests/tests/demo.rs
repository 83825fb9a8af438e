//! `spindle demo` as a newcomer runs it: the real binary starts the simulated
//! plant, its embedded broker and the agent, shows every device online and
//! KPI windows of both kinds that it received over MQTT, prints the
//! `mosquitto_sub` command, and with `--for` stops by itself with exit 0.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use spindle_hil_tests::agent::spindle_bin;
use spindle_hil_tests::one_at_a_time;

/// Waits for `child` to exit within `limit`, killing it otherwise.
fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn the_demo_shows_devices_online_and_kpis_of_both_kinds_and_stops_by_itself() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let started = Instant::now();
    let mut child = Command::new(spindle_bin())
        .args(["demo", "--for", "25"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(40));
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    let context = format!("stdout:\n{out}\nstderr:\n{err}");
    let status =
        status.unwrap_or_else(|| panic!("demo --for 25 did not exit within 40 s; {context}"));
    assert!(status.success(), "exit {status}; {context}");
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "ran its 25 s; {context}"
    );

    let hint = out
        .lines()
        .find(|l| l.contains("mosquitto_sub -h 127.0.0.1 -p "))
        .unwrap_or_else(|| panic!("the mosquitto_sub hint; {context}"));
    assert!(hint.contains("-t 'spindle/#' -v"), "{hint}");

    // The last view, after the stop.
    let last = out
        .rsplit("spindle demo · ")
        .next()
        .unwrap_or_else(|| panic!("a view; {context}"));
    assert!(last.contains("Devices: 8/8 online"), "{context}");
    for device in [
        "meter-line1",
        "meter-line2",
        "gas-washer",
        "meter-compressor",
        "cnc-07",
        "cnc-08",
        "cnc-mill-03",
        "press-02-io",
    ] {
        assert!(
            last.lines()
                .any(|l| l.contains(device) && l.contains(" online ")),
            "{device} online; {context}"
        );
    }
    let energy: Vec<&str> = last
        .lines()
        .filter(|l| l.contains("energy_per_output/") && l.contains("kgce/piece"))
        .collect();
    assert_eq!(energy.len(), 2, "a window of line1 and of line2; {context}");
    let coverage = last
        .lines()
        .find(|l| l.contains("cnc_coverage/plant"))
        .unwrap_or_else(|| panic!("a CNC coverage window; {context}"));
    // Four machines, three of them numerically controlled, all networked.
    assert!(coverage.contains("count_ratio 0.75"), "{coverage}");
    assert!(coverage.contains("networked_ratio 1.00"), "{coverage}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Demo stopped after ") && l.contains(": 8/8 devices online")),
        "the summary; {context}"
    );
    let points_per_second = last
        .split(" points/s")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("points/s; {context}"));
    assert!(
        points_per_second > 10.0,
        "{points_per_second} points/s; {context}"
    );
}

#[test]
fn a_taken_broker_port_is_refused_with_exit_2() {
    let _serial = one_at_a_time();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = Command::new(spindle_bin())
        .args(["demo", "--for", "1", "--port", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is taken")),
        "{err}"
    );
}
