//! DL/T 645 meters on a real pseudo-terminal, read through the same
//! `RtuLink` (one serial bus for both protocols) the agent uses.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

mod common;

use std::time::Duration;

use spindle_protocols::dlt645::frame::ErrorByte;
use spindle_protocols::dlt645::{Address, Di, decode_value};
use spindle_protocols::modbus::RtuLink;
use spindle_protocols::sim::SimPtyServer;
use spindle_protocols::sim::dlt645::SimMeter;

use common::{bus, within};

fn meter(printed: &str) -> SimMeter {
    let mut meter = SimMeter::new(Address::parse(printed).unwrap());
    meter.set(Di(0x0001_0000), 1206.42);
    meter.set(Di(0x0201_0100), 229.8);
    meter.set(Di(0x0203_0000), -1.2345);
    meter
}

#[tokio::test]
async fn a_meter_on_a_pseudo_terminal_is_read_and_only_reads_are_sent() {
    let server = SimPtyServer::open_meters(vec![meter("000012345678")]).unwrap();
    let mut link = RtuLink::new(&bus(server.path()), Duration::from_millis(200));
    let address = Address::parse("000012345678").unwrap();
    for (di, expected) in [
        (0x0001_0000, 1206.42),
        (0x0201_0100, 229.8),
        (0x0203_0000, -1.2345),
    ] {
        let value = within(link.read_dlt645(address, Di(di), 4)).await.unwrap();
        assert_eq!(
            decode_value(Di(di), &value).unwrap().value(),
            expected,
            "{di:08X}"
        );
    }
    assert_eq!(within(link.read_dlt645_address()).await.unwrap(), address);
    assert!(link.last_answer().starts_with(&[0x68]));
    let requests = server.meters().lock().unwrap().requests.clone();
    assert!(
        requests.iter().all(|c| [0x11, 0x12, 0x13].contains(c)),
        "{requests:?}"
    );
}

#[tokio::test]
async fn abnormal_silent_and_garbled_meters_give_their_error_words() {
    let mut refusing = meter("000000000001");
    refusing.faults.abnormal = Some(ErrorByte(0x04));
    let mut silent = meter("000000000002");
    silent.faults.silent = true;
    let mut garbling = meter("000000000003");
    garbling.faults.bad_checksum = true;
    let healthy = meter("000000000004");
    let server = SimPtyServer::open_meters(vec![refusing, silent, garbling, healthy]).unwrap();
    let mut link = RtuLink::new(&bus(server.path()), Duration::from_millis(100));
    let read = |printed: &str| (Address::parse(printed).unwrap(), Di(0x0201_0100));
    let mut words = Vec::new();
    for printed in [
        "000000000001",
        "000000000002",
        "000000000003",
        "000000000004",
    ] {
        let (address, di) = read(printed);
        words.push(match within(link.read_dlt645(address, di, 2)).await {
            Ok(value) => decode_value(di, &value).unwrap().value().to_string(),
            Err(error) => error.word(),
        });
    }
    assert_eq!(
        words,
        ["abnormal:unauthorized", "timeout", "decode", "229.8"]
    );
}

#[tokio::test]
async fn a_scan_on_a_pseudo_terminal_finds_meters_sharing_a_low_byte() {
    let server =
        SimPtyServer::open_meters(vec![meter("000012345678"), meter("000099000078")]).unwrap();
    let mut link = RtuLink::new(&bus(server.path()), Duration::from_millis(10));
    let found = tokio::time::timeout(Duration::from_secs(60), link.find_dlt645_meters(|_, _| {}))
        .await
        .expect("the scan ends")
        .unwrap();
    let addresses: Vec<String> = found.iter().map(|m| m.address.to_string()).collect();
    assert_eq!(addresses, ["000012345678", "000099000078"]);
}

/// A Modbus unit and a DL/T 645 meter on one pseudo-terminal, the way they
/// share an RS-485 pair: unit 1 answers holding register 0 = 2298 after
/// `modbus_delay`; the DL/T 645 bus answers as simulated.
async fn serve_mixed(
    master: serialport::TTYPort,
    bus: std::sync::Arc<std::sync::Mutex<spindle_protocols::sim::dlt645::SimBus>>,
    modbus_delay: Duration,
) {
    use spindle_protocols::dlt645::frame::{Scanned, parse_frame};
    use spindle_protocols::modbus::rtu::crc16;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut port = tokio_serial::SerialStream::try_from(master).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 256];
    while let Ok(got) = port.read(&mut chunk).await {
        if got == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..got]);
        loop {
            if buf.first().is_some_and(|b| *b == 0xFE || *b == 0x68) {
                match parse_frame(&buf) {
                    Ok(Scanned::Complete { frame, len }) => {
                        buf.drain(..len);
                        let answer = bus.lock().unwrap().answer(&frame);
                        if let Some((delay, bytes)) = answer {
                            tokio::time::sleep(delay).await;
                            port.write_all(&bytes).await.unwrap();
                        }
                    }
                    Ok(Scanned::Incomplete) => break,
                    Err(_) => {
                        buf.remove(0);
                    }
                }
            } else if buf.len() >= 8 {
                let request: Vec<u8> = buf.drain(..8).collect();
                if request[0] == 1
                    && crc16(&request[..6]) == u16::from_le_bytes([request[6], request[7]])
                {
                    let mut answer = vec![1, 3, 2, 0x08, 0xFA];
                    answer.extend(crc16(&answer).to_le_bytes());
                    tokio::time::sleep(modbus_delay).await;
                    port.write_all(&answer).await.unwrap();
                }
            } else {
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_modbus_unit_and_a_dlt645_meter_share_a_9600_8e1_bus_without_reading_each_others_values()
{
    use serialport::SerialPort as _;
    use spindle_config::model::Area;
    use spindle_protocols::modbus::Link as _;
    use spindle_protocols::modbus::Response;
    use spindle_protocols::sim::dlt645::SimBus;

    let (master, slave) = serialport::TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let mut slow = meter("000000000002");
    // Answers after the timeout: its late reply lands in front of the next answer.
    slow.faults.delay = Duration::from_millis(150);
    let bus = SimBus::new(vec![meter("000012345678"), slow]);
    tokio::spawn(serve_mixed(master, bus.clone(), Duration::from_millis(2)));
    let mut serial = common::bus(&path);
    serial.baud = std::num::NonZeroU32::new(9600).unwrap();
    let mut link = RtuLink::new(&serial, Duration::from_millis(100));
    let meter_address = Address::parse("000012345678").unwrap();
    let voltage = Di(0x0201_0100);
    for round in 0..5 {
        let modbus = within(link.read(1, Area::Holding, 0, 1)).await.unwrap();
        assert_eq!(modbus, Response::Registers(vec![2298]), "round {round}");
        let value = within(link.read_dlt645(meter_address, voltage, 2))
            .await
            .unwrap();
        assert_eq!(
            decode_value(voltage, &value).unwrap().value(),
            229.8,
            "round {round}"
        );
        // The slow meter times out; its late answer must not become the
        // next answer, whichever protocol asks next.
        let late =
            within(link.read_dlt645(Address::parse("000000000002").unwrap(), voltage, 2)).await;
        assert_eq!(late.unwrap_err().word(), "timeout");
    }
    assert!(
        link.late_replies() >= 1,
        "late replies were recognized and discarded"
    );
    drop(slave);
}

#[tokio::test]
async fn a_meter_on_a_timed_2400_baud_line_answers_in_its_on_wire_time() {
    let mut serial = common::bus("");
    serial.baud = std::num::NonZeroU32::new(2400).unwrap();
    let server = SimPtyServer::open_meters_timed(
        vec![meter("000012345678")],
        &serial,
        Duration::from_millis(5),
    )
    .unwrap();
    serial.port = server.path().to_owned();
    let mut link = RtuLink::new(&serial, Duration::from_millis(500));
    let address = Address::parse("000012345678").unwrap();
    let voltage = Di(0x0201_0100);
    let _ = within(link.read_dlt645(address, voltage, 2)).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let value = within(link.read_dlt645(address, voltage, 2)).await.unwrap();
        assert_eq!(decode_value(voltage, &value).unwrap().value(), 229.8);
    }
    // Request 20 bytes (4 FE + 16), answer 18, 11 bits a character at 2400
    // baud: 38 × 4.58 ms = 174 ms on the wire, plus a silent interval and the
    // answer delay, per read.
    let each = started.elapsed() / 3;
    assert!(each >= Duration::from_millis(174), "{each:?}");
    assert!(each < Duration::from_millis(260), "{each:?}");
}
