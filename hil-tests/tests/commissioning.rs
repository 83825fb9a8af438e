//! The commissioning commands as a plant engineer runs them: `spindle check`
//! on a config and `spindle read` against simulated devices over TCP and a
//! pseudo-terminal, with the exit codes of SPEC §2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use spindle_config::model::Area;
use spindle_hil_tests::agent::run_spindle;
use spindle_protocols::sim::{SimDevice, SimPtyServer, SimTcpServer};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_every_device_plan_and_the_bus_load_of_the_example_plant() {
    let out = run_spindle(&["check", "-c", example("plant.toml").to_str().unwrap()]).unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("device meter-line1"), "{stdout}");
    assert!(
        stdout.contains("holding  start  8192 (0x2000)"),
        "merged DTSU666 measurement block: {stdout}"
    );
    assert!(stdout.contains("bus rs485-1"), "{stdout}");
    assert!(stdout.contains("load "), "{stdout}");
}

#[test]
fn check_lists_every_error_with_its_position_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[agent]\nid = \"gw 1\"\nsite = \"s\"\ndata_dir = \"/tmp/x\"\ntimezone = \"Mars/Base\"\n\
         [mqtt]\nurl = \"http://x\"\n",
    )
    .unwrap();
    let out = run_spindle(&["check", "-c", path.to_str().unwrap()]).unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("bad.toml:2:6: agent.id"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:5:12: unknown timezone \"Mars/Base\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:7:7: url must start with mqtt:// or mqtts://"),
        "{stderr}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn read_decodes_a_float_in_cdab_order_over_tcp_and_prints_the_raw_registers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = SimDevice::new(vec![7]);
    let bits = 229.8f32.to_bits();
    device.set_registers(
        Area::Holding,
        0x10,
        &[(bits & 0xffff) as u16, (bits >> 16) as u16],
    );
    let server = rt
        .block_on(SimTcpServer::bind(device, "127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = server.local_addr().to_string();
    let out = run_spindle(&[
        "read",
        "--tcp",
        &addr,
        "--unit",
        "7",
        "--area",
        "holding",
        "--address",
        "0x10",
        "--type",
        "f32",
        "--order",
        "CDAB",
    ])
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{:#06x} {:#06x}", bits & 0xffff, bits >> 16)),
        "raw registers in hex: {stdout}"
    );
    assert!(stdout.contains("229.8"), "{stdout}");
}

#[test]
fn read_over_a_pseudo_terminal_reads_several_values_of_a_type() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = SimDevice::new(vec![2]);
    device.set_registers(Area::Input, 100, &[0x0001, 0x86a0, 0x0000, 0x0007]);
    let pty = rt
        .block_on(async { SimPtyServer::open(vec![device]) })
        .unwrap();
    let out = run_spindle(&[
        "read",
        "--serial",
        pty.path(),
        "--baud",
        "9600",
        "--unit",
        "2",
        "--area",
        "input",
        "--address",
        "100",
        "--count",
        "4",
        "--type",
        "u32",
    ])
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("100000"), "{stdout}");
    assert!(
        stdout.contains("  7\n") || stdout.ends_with("7\n"),
        "{stdout}"
    );
}

#[test]
fn read_exits_2_when_nothing_answers_and_1_for_bad_arguments() {
    let port = spindle_hil_tests::broker::free_port().unwrap();
    let out = run_spindle(&[
        "read",
        "--tcp",
        &format!("127.0.0.1:{port}"),
        "--address",
        "0",
        "--timeout",
        "300ms",
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("disconnected"),
        "{}",
        text(&out.stderr)
    );
    let out = run_spindle(&["read", "--tcp", "127.0.0.1:1", "--address", "70000"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = run_spindle(&[
        "read",
        "--tcp",
        "127.0.0.1:1",
        "--area",
        "coil",
        "--address",
        "1",
        "--type",
        "f32",
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("use --type bool"),
        "{}",
        text(&out.stderr)
    );
}
