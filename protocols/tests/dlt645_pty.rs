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
use spindle_protocols::sim::SimDlt645PtyServer;
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
    let server = SimDlt645PtyServer::open(vec![meter("000012345678")]).unwrap();
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
    let requests = server.bus().lock().unwrap().requests.clone();
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
    let server = SimDlt645PtyServer::open(vec![refusing, silent, garbling, healthy]).unwrap();
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
        SimDlt645PtyServer::open(vec![meter("000012345678"), meter("000099000078")]).unwrap();
    let mut link = RtuLink::new(&bus(server.path()), Duration::from_millis(10));
    let found = tokio::time::timeout(Duration::from_secs(60), link.find_dlt645_meters(|_, _| {}))
        .await
        .expect("the scan ends")
        .unwrap();
    let addresses: Vec<String> = found.iter().map(|m| m.address.to_string()).collect();
    assert_eq!(addresses, ["000012345678", "000099000078"]);
}
