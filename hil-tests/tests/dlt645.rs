//! DL/T 645-2007 commissioning end to end: the real `spindle read --dlt645`
//! and `spindle scan --dlt645` against simulated meters on a real
//! pseudo-terminal (no line timing).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use spindle_hil_tests::agent::run_spindle;
use spindle_hil_tests::one_at_a_time;
use spindle_protocols::dlt645::frame::ErrorByte;
use spindle_protocols::dlt645::{Address, Di};
use spindle_protocols::sim::SimPtyServer;
use spindle_protocols::sim::dlt645::SimMeter;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn meter(printed: &str) -> SimMeter {
    let mut meter = SimMeter::new(Address::parse(printed).unwrap());
    meter.set(Di(0x0001_0000), 1206.42);
    meter.set(Di(0x0201_0100), 229.8);
    meter.set(Di(0x0201_0200), 230.5);
    meter.set(Di(0x0201_0300), 231.7);
    meter
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn spindle_read_dlt645_prints_the_frames_and_the_value_in_its_format() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let mut refusing = meter("000000000002");
    refusing.faults.abnormal = Some(ErrorByte::NO_DATA);
    let pty = rt
        .block_on(async { SimPtyServer::open_meters(vec![meter("000012345678"), refusing]) })
        .unwrap();
    let read = |meter: &str, di: &str| {
        run_spindle(&[
            "read",
            "--serial",
            pty.path(),
            "--baud",
            "2400",
            "--parity",
            "even",
            "--dlt645",
            "--meter",
            meter,
            "--di",
            di,
            "--timeout",
            "500ms",
        ])
        .unwrap()
    };

    let out = read("000012345678", "02010100");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "request FE FE FE FE 68 78 56 34 12 00 00 68 11 04 33 34 34 35 C9 16"
    );
    assert!(
        lines[1].starts_with("answer  68 78 56 34 12 00 00 68 91 06"),
        "{stdout}"
    );
    assert_eq!(lines[2], "02010100 (voltage, XXX.X): 229.8 V");

    let block = read("000012345678", "0201FF00");
    assert_eq!(block.status.code(), Some(0));
    assert!(text(&block.stdout).contains("02010300 (voltage, XXX.X): 231.7 V"));

    let energy = read("000012345678", "00010000");
    assert!(
        text(&energy.stdout).contains("00010000 (forward active energy, XXXXXX.XX): 1206.42 kWh")
    );

    let refused = read("000000000002", "02010100");
    assert_eq!(refused.status.code(), Some(2), "an abnormal answer: exit 2");
    assert!(
        text(&refused.stderr).contains("abnormal:no_data"),
        "{}",
        text(&refused.stderr)
    );

    let silent = read("000000000009", "02010100");
    assert_eq!(silent.status.code(), Some(2));
    assert!(
        text(&silent.stderr).contains("(timeout)"),
        "{}",
        text(&silent.stderr)
    );

    let bad = run_spindle(&[
        "read",
        "--serial",
        pty.path(),
        "--baud",
        "2400",
        "--dlt645",
        "--meter",
        "12345",
        "--di",
        "02010100",
    ])
    .unwrap();
    assert_ne!(
        bad.status.code(),
        Some(0),
        "a short meter address is refused"
    );

    // Only reads went out.
    let requests = pty.meters().lock().unwrap().requests.clone();
    assert!(
        requests.iter().all(|c| [0x11, 0x12, 0x13].contains(c)),
        "{requests:?}"
    );
}

#[test]
fn spindle_scan_dlt645_finds_three_meters_two_sharing_a_low_byte() {
    let _serial = one_at_a_time();
    let rt = runtime();
    let pty = rt
        .block_on(async {
            SimPtyServer::open_meters(vec![
                meter("000012345678"),
                meter("000099000078"),
                meter("202400000001"),
            ])
        })
        .unwrap();
    let out = run_spindle(&[
        "scan",
        "--serial",
        pty.path(),
        "--baud",
        "115200",
        "--parity",
        "even",
        "--dlt645",
        "--timeout",
        "10ms",
    ])
    .unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    // Shown with --nocapture: what an operator sees.
    println!(
        "$ spindle scan --serial PTY --baud 115200 --parity even --dlt645 --timeout 10ms\n{stderr}{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "meter 000012345678",
            "meter 000099000078",
            "meter 202400000001"
        ]
    );
    assert!(stderr.contains("3 meters found"), "{stderr}");
    assert!(
        pty.meters()
            .lock()
            .unwrap()
            .requests
            .iter()
            .all(|c| *c == 0x11)
    );

    let single = rt
        .block_on(async { SimPtyServer::open_meters(vec![meter("000012345678")]) })
        .unwrap();
    let one = run_spindle(&[
        "scan",
        "--serial",
        single.path(),
        "--baud",
        "2400",
        "--dlt645",
        "--single",
    ])
    .unwrap();
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert_eq!(text(&one.stdout), "meter 000012345678\n");
}
