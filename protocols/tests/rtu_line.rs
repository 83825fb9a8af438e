//! RS-485 line faults and line timing against the simulator over real
//! pseudo-terminals: every fault gives a typed error, the line is drained,
//! and the next request to another device on the bus succeeds; a late reply
//! is never taken as an answer; a dead device costs the bus one timeout.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use common::{bus, within};
use spindle_config::model::{Area, Parity, SerialBus};
use spindle_protocols::modbus::rtu::{crc16, encode_request, response_len};
use spindle_protocols::modbus::{Link, LinkError, ReadError, Response, RtuLink};
use spindle_protocols::sim::{SimDevice, SimPtyServer};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_millis(300);

/// Whether an error is the one a fault should give.
type Expected = fn(&LinkError) -> bool;

fn timed_bus(path: &str, baud: u32, parity: Parity) -> SerialBus {
    SerialBus {
        baud: NonZeroU32::new(baud).unwrap(),
        parity,
        ..bus(path)
    }
}

/// A register answer frame from `unit`, CRC included.
fn answer(unit: u8, words: &[u16]) -> Vec<u8> {
    let mut frame = vec![unit, 3, u8::try_from(words.len() * 2).unwrap()];
    frame.extend(words.iter().flat_map(|w| w.to_be_bytes()));
    frame.extend(crc16(&frame).to_le_bytes());
    frame
}

/// Each line fault on unit 1, its expected error, then unit 2's answer.
#[tokio::test]
async fn every_line_fault_is_a_typed_error_and_the_next_device_answers() {
    within(async {
        let faulty = SimDevice::new([1]);
        let neighbour = SimDevice::new([2]);
        neighbour.set_registers(Area::Holding, 0, &[42]);
        let server = SimPtyServer::open_timed(
            vec![faulty.clone(), neighbour.clone()],
            &timed_bus("", 19_200, Parity::Even),
            Duration::from_millis(2),
        )
        .unwrap();
        let wire = timed_bus(server.path(), 19_200, Parity::Even);
        let mut link = RtuLink::new(&wire, TIMEOUT);

        let mut bad_crc = answer(1, &[7]);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xFF;
        let truncated = answer(1, &[7])[..4].to_vec();
        let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
            ("noise", vec![0x00, 0xFF, 0x13, 0x37, 0xAA], |e| {
                matches!(e, LinkError::WrongUnit { got: 0, .. })
            }),
            ("bad CRC", bad_crc, |e| {
                matches!(e, LinkError::BadCrc { .. })
            }),
            ("wrong unit", answer(9, &[7]), |e| {
                matches!(
                    e,
                    LinkError::WrongUnit {
                        expected: 1,
                        got: 9
                    }
                )
            }),
            ("truncated frame", truncated, |e| {
                matches!(e, LinkError::Truncated { got: 4 })
            }),
        ];
        for (name, garbage, expected) in cases {
            faulty.update_faults(|f| f.garbage = Some(garbage.clone()));
            let result = link.read(1, Area::Holding, 0, 1).await;
            match &result {
                Err(ReadError::Link(error)) if expected(error) => {
                    assert_eq!(error.word(), "decode", "{name}");
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
            assert_eq!(
                link.read(2, Area::Holding, 0, 1).await.unwrap(),
                Response::Registers(vec![42]),
                "the neighbour answers right after {name}"
            );
        }

        // A reply after the timeout: a timeout, then the neighbour's answer
        // (the late reply arrives in front of it and is recognized).
        faulty.update_faults(|f| {
            f.garbage = None;
            f.reply_delay = TIMEOUT + Duration::from_millis(50);
        });
        faulty.set_registers(Area::Holding, 0, &[7]);
        let result = link.read(1, Area::Holding, 0, 1).await;
        assert!(
            matches!(result, Err(ReadError::Link(LinkError::Timeout { .. }))),
            "{result:?}"
        );
        assert_eq!(
            link.read(2, Area::Holding, 0, 1).await.unwrap(),
            Response::Registers(vec![42])
        );
        assert_eq!(link.late_replies(), 1);

        // Silence: a timeout, and the neighbour still answers.
        faulty.update_faults(|f| {
            f.reply_delay = Duration::ZERO;
            f.down = true;
        });
        let result = link.read(1, Area::Holding, 0, 1).await;
        assert!(
            matches!(result, Err(ReadError::Link(LinkError::Timeout { .. }))),
            "{result:?}"
        );
        assert_eq!(
            link.read(2, Area::Holding, 0, 1).await.unwrap(),
            Response::Registers(vec![42])
        );
    })
    .await;
}

#[tokio::test]
async fn a_late_reply_is_never_taken_as_the_answer_to_its_unit_or_another() {
    within(async {
        let slow = SimDevice::new([1]);
        let other = SimDevice::new([2]);
        slow.set_registers(Area::Holding, 0, &[111, 112]);
        other.set_registers(Area::Holding, 0, &[222, 223]);
        let server = SimPtyServer::open(vec![slow.clone(), other.clone()]).unwrap();
        let mut link = RtuLink::new(&bus(server.path()), TIMEOUT);

        for round in 0..3 {
            slow.update_faults(|f| f.reply_delay = TIMEOUT + Duration::from_millis(40));
            let late = link.read(1, Area::Holding, 0, 2).await;
            assert!(
                matches!(late, Err(ReadError::Link(LinkError::Timeout { .. }))),
                "round {round}: {late:?}"
            );
            // Same shape of request to another unit: its own answer, not 111.
            assert_eq!(
                link.read(2, Area::Holding, 0, 2).await.unwrap(),
                Response::Registers(vec![222, 223]),
                "round {round}"
            );
            // Re-asking the slow unit (now quick) gets the fresh answer.
            slow.update_faults(|f| f.reply_delay = Duration::ZERO);
            slow.set_registers(Area::Holding, 0, &[round, round + 1]);
            assert_eq!(
                link.read(1, Area::Holding, 0, 2).await.unwrap(),
                Response::Registers(vec![round, round + 1]),
                "round {round}"
            );
        }
        assert_eq!(link.late_replies(), 3);
    })
    .await;
}

#[tokio::test]
async fn re_asking_a_unit_whose_reply_is_late_waits_for_the_reply_to_pass() {
    within(async {
        let slow = SimDevice::new([1]);
        slow.set_registers(Area::Holding, 0, &[111]);
        let server = SimPtyServer::open(vec![slow.clone()]).unwrap();
        let mut link = RtuLink::new(&bus(server.path()), TIMEOUT);

        slow.update_faults(|f| f.reply_delay = TIMEOUT + Duration::from_millis(100));
        assert!(link.read(1, Area::Holding, 0, 1).await.is_err());
        slow.update_faults(|f| f.reply_delay = Duration::ZERO);
        slow.set_registers(Area::Holding, 0, &[222]);
        // The late 111 has the right unit, function, length and CRC: only
        // the long drain keeps it from being taken as this answer.
        assert_eq!(
            link.read(1, Area::Holding, 0, 1).await.unwrap(),
            Response::Registers(vec![222])
        );
        assert_eq!(link.late_replies(), 0);
    })
    .await;
}

#[tokio::test]
async fn an_answer_garbled_while_a_late_reply_was_due_is_asked_again() {
    within(async {
        let slow = SimDevice::new([1]);
        let other = SimDevice::new([2]);
        other.set_registers(Area::Holding, 0, &[5, 6]);
        let server = SimPtyServer::open(vec![slow.clone(), other.clone()]).unwrap();
        let mut link = RtuLink::new(&bus(server.path()), TIMEOUT);

        // The slow unit's late reply does not match what was asked (one
        // register short): it cannot be recognized, so it garbles the next
        // answer, which is then asked again.
        slow.update_faults(|f| {
            f.reply_delay = TIMEOUT + Duration::from_millis(40);
            f.short_by = 1;
        });
        assert!(link.read(1, Area::Holding, 0, 2).await.is_err());
        assert_eq!(
            link.read(2, Area::Holding, 0, 2).await.unwrap(),
            Response::Registers(vec![5, 6])
        );
        assert_eq!(link.late_replies(), 0);
        // Unit 2 was asked twice: once garbled, once answered.
        assert_eq!(other.received().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_dead_device_costs_the_bus_one_timeout_per_request() {
    within(async {
        let live = SimDevice::new([2]);
        live.set_registers(Area::Holding, 0, &[9]);
        let wire = |path: &str| timed_bus(path, 19_200, Parity::Even);
        let server =
            SimPtyServer::open_timed(vec![live.clone()], &wire(""), Duration::ZERO).unwrap();
        let timeout = Duration::from_millis(200);
        let mut link = RtuLink::new(&wire(server.path()), timeout);
        assert!(link.read(2, Area::Holding, 0, 1).await.is_ok());

        // Each dead unit asked once (as a scan does, or the scheduler's
        // probes, which come back only after their quiet period), each
        // followed by the live device.
        let start = Instant::now();
        for dead in 10..14 {
            assert!(link.read(dead, Area::Holding, 0, 1).await.is_err());
            assert_eq!(
                link.read(2, Area::Holding, 0, 1).await.unwrap(),
                Response::Registers(vec![9])
            );
        }
        // Before, each timeout was followed by a drain as long again.
        let per_cycle = start.elapsed() / 4;
        assert!(
            per_cycle < timeout + timeout / 2,
            "a dead device and a live one took {per_cycle:?} per cycle (timeout {timeout:?})"
        );
    })
    .await;
}

#[tokio::test]
async fn timed_frames_take_at_least_their_time_on_the_wire() {
    within(async {
        let meter = SimDevice::new([3]);
        meter.set_registers(Area::Input, 0, &[1; 20]);
        let wire = |path: &str| timed_bus(path, 9600, Parity::None);
        let answer_delay = Duration::from_millis(3);
        let server =
            SimPtyServer::open_timed(vec![meter.clone()], &wire(""), answer_delay).unwrap();
        let spec = wire(server.path());
        let mut link = RtuLink::new(&spec, Duration::from_secs(1));
        assert!(link.read(3, Area::Input, 0, 20).await.is_ok());

        let reads = 5_u32;
        let start = Instant::now();
        for _ in 0..reads {
            assert_eq!(link.read(3, Area::Input, 0, 20).await.unwrap().len(), 20);
        }
        let elapsed = start.elapsed();
        let bytes = encode_request(3, Area::Input, 0, 20).len() + response_len(Area::Input, 20);
        // Request, silent interval, answer delay, answer, silent interval.
        let on_wire = spec.char_time() * u32::try_from(bytes).unwrap()
            + spec.silent_interval() * 2
            + answer_delay;
        assert!(
            elapsed >= on_wire * reads,
            "{reads} reads took {elapsed:?}, the wire needs {:?}",
            on_wire * reads
        );
    })
    .await;
}
