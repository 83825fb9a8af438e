//! `Type=notify` under systemd, simulated: the agent says READY=1 when it
//! runs, feeds the watchdog while it makes progress, and says STOPPING=1 on
//! SIGTERM — all on the socket named by `NOTIFY_SOCKET`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::Broker;
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_agent_notifies_systemd_and_feeds_its_watchdog() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let plant = Plant::tcp(1).unwrap();
    let broker = Broker::start(false).unwrap();
    let config = agent_toml(&broker.url(), "", &plant.devices_toml("200ms"));
    let mut agent = AgentProcess::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    )
    .unwrap();
    assert_eq!(next(&socket), "READY=1", "log:\n{}", agent.log());
    assert_eq!(next(&socket), "WATCHDOG=1");
    assert_eq!(next(&socket), "WATCHDOG=1", "fed again while running");
    assert!(
        agent
            .terminate(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    assert_eq!(next(&socket), "STOPPING=1");
}
