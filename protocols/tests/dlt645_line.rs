//! The DL/T 645 client on an in-memory line with tokio's paused clock: a
//! simulated bus of meters on one side of a duplex, the client's line link
//! on the other, and virtual time that advances whenever both wait.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle_protocols::dlt645::frame::ErrorByte;
use spindle_protocols::dlt645::scan::find_meters;
use spindle_protocols::dlt645::{
    Address, Di, Dlt645Link, ReadError, decode_value, read_address, read_value,
};
use spindle_protocols::line::{ExchangeError, TimerClock};
use spindle_protocols::sim::dlt645::{SimBus, SimMeter, serve};
use tokio::io::DuplexStream;

const TIMEOUT: Duration = Duration::from_millis(300);
const VOLTAGE_A: Di = Di(0x0201_0100);
const CURRENT_A: Di = Di(0x0202_0100);
const ENERGY: Di = Di(0x0001_0000);

fn address(printed: &str) -> Address {
    Address::parse(printed).unwrap()
}

fn meter(printed: &str, volts: f64) -> SimMeter {
    let mut meter = SimMeter::new(address(printed));
    meter.set(VOLTAGE_A, volts);
    meter.set(CURRENT_A, -1.25);
    meter.set(ENERGY, 1206.42);
    meter
}

/// A link at 9600 baud 8E1 (11 bits a character) on a duplex served by `meters`.
fn line(meters: Vec<SimMeter>) -> (Dlt645Link<DuplexStream, TimerClock>, Arc<Mutex<SimBus>>) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let bus = SimBus::new(meters);
    tokio::spawn(serve(theirs, bus.clone()));
    let char_time = Duration::from_micros(1146);
    let mut link = Dlt645Link::new(
        char_time.mul_f64(3.5),
        Duration::ZERO,
        char_time,
        TimerClock,
    );
    link.attach(ours);
    (link, bus)
}

async fn read(
    link: &mut Dlt645Link<DuplexStream, TimerClock>,
    meter: &str,
    di: Di,
) -> Result<f64, ReadError> {
    let value = read_value(link, address(meter), di, 4, TIMEOUT).await?;
    Ok(decode_value(di, &value)
        .expect("a value of its format")
        .value())
}

#[tokio::test(start_paused = true)]
async fn a_meter_is_read_with_values_in_the_standards_formats() {
    let (mut link, bus) = line(vec![meter("000012345678", 229.8)]);
    assert_eq!(
        read(&mut link, "000012345678", VOLTAGE_A).await.unwrap(),
        229.8
    );
    assert_eq!(
        read(&mut link, "000012345678", CURRENT_A).await.unwrap(),
        -1.25
    );
    assert_eq!(
        read(&mut link, "000012345678", ENERGY).await.unwrap(),
        1206.42
    );
    assert_eq!(
        read_address(&mut link, TIMEOUT).await.unwrap(),
        address("000012345678")
    );
    // Only reads went out.
    assert!(
        bus.lock()
            .unwrap()
            .requests
            .iter()
            .all(|c| [0x11, 0x12, 0x13].contains(c))
    );
}

#[tokio::test(start_paused = true)]
async fn an_abnormal_answer_is_its_reason_never_a_value() {
    let mut refusing = meter("000012345678", 229.8);
    refusing.faults.abnormal = Some(ErrorByte::NO_DATA);
    let (mut link, _) = line(vec![refusing]);
    let error = read(&mut link, "000012345678", VOLTAGE_A)
        .await
        .unwrap_err();
    assert_eq!(error.word(), "abnormal:no_data");
    assert!(!error.is_unreachable());
}

#[tokio::test(start_paused = true)]
async fn a_silent_meter_times_out_and_a_bad_checksum_is_decode() {
    let mut silent = meter("000000000001", 229.8);
    silent.faults.silent = true;
    let mut garbling = meter("000000000002", 229.8);
    garbling.faults.bad_checksum = true;
    let (mut link, _) = line(vec![silent, garbling]);
    let started = tokio::time::Instant::now();
    let error = read(&mut link, "000000000001", VOLTAGE_A)
        .await
        .unwrap_err();
    assert_eq!(error.word(), "timeout");
    assert!(started.elapsed() >= TIMEOUT);
    let error = read(&mut link, "000000000002", VOLTAGE_A)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReadError::Link(ExchangeError::Garbage(_))),
        "{error}"
    );
    assert_eq!(error.word(), "decode");
}

#[tokio::test(start_paused = true)]
async fn noise_and_wake_up_bytes_before_the_frame_are_skipped() {
    let mut noisy = meter("000012345678", 229.8);
    noisy.faults.noise_before = vec![0x00, 0x13, 0x7F];
    noisy.faults.wake_up = 4;
    let (mut link, _) = line(vec![noisy]);
    assert_eq!(
        read(&mut link, "000012345678", VOLTAGE_A).await.unwrap(),
        229.8
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_is_never_taken_for_the_next_request() {
    // Meter 1 answers 400 ms late (timeout 300 ms); meter 2 is asked next and
    // its answer arrives behind meter 1's late one.
    let mut slow = meter("000000000001", 111.1);
    slow.faults.delay = Duration::from_millis(400);
    let (mut link, _) = line(vec![slow, meter("000000000002", 222.2)]);
    let error = read(&mut link, "000000000001", VOLTAGE_A)
        .await
        .unwrap_err();
    assert_eq!(error.word(), "timeout");
    assert_eq!(
        read(&mut link, "000000000002", VOLTAGE_A).await.unwrap(),
        222.2
    );
    assert_eq!(link.state().late_replies(), 1);
    // Re-asking the slow meter for another value: the long drain keeps its
    // earlier answer (voltage) from being taken for the current.
    let error = read(&mut link, "000000000001", CURRENT_A)
        .await
        .unwrap_err();
    assert_eq!(error.word(), "timeout");
    let again = read(&mut link, "000000000001", CURRENT_A).await;
    // Whatever came, it was never the voltage.
    assert_ne!(again.ok(), Some(111.1));
}

#[tokio::test(start_paused = true)]
async fn a_value_in_several_frames_is_joined_and_an_endless_one_is_decode() {
    let mut endless = meter("000012345678", 229.8);
    endless.faults.endless_more = true;
    let (mut link, bus) = line(vec![endless]);
    let error = read_value(&mut link, address("000012345678"), VOLTAGE_A, 2, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, ReadError::TooManyFrames));
    assert_eq!(error.word(), "decode");
    let requests = bus.lock().unwrap().requests.clone();
    assert_eq!(requests.len(), 16);
    assert_eq!(requests[0], 0x11);
    assert!(requests[1..].iter().all(|c| *c == 0x12));
}

#[tokio::test(start_paused = true)]
async fn a_block_read_returns_every_member() {
    let mut three = meter("000012345678", 229.8);
    three.set(Di(0x0201_0200), 230.5);
    three.set(Di(0x0201_0300), 231.7);
    let (mut link, _) = line(vec![three.clone()]);
    let value = read_value(&mut link, three.address, Di(0x0201_FF00), 6, TIMEOUT)
        .await
        .unwrap();
    let volts: Vec<f64> = value
        .chunks(2)
        .map(|pair| decode_value(VOLTAGE_A, pair).unwrap().value())
        .collect();
    assert_eq!(volts, [229.8, 230.5, 231.7]);
}

#[tokio::test(start_paused = true)]
async fn a_scan_finds_three_meters_two_of_them_sharing_a_low_byte() {
    let meters = vec![
        meter("000012345678", 230.0),
        meter("000099000078", 230.0),
        meter("202400000001", 230.0),
    ];
    let (mut link, bus) = line(meters);
    let mut probes = 0;
    let found = find_meters(&mut link, Duration::from_millis(20), |_, _| probes += 1)
        .await
        .unwrap();
    let addresses: Vec<String> = found.iter().map(|m| m.address.to_string()).collect();
    assert_eq!(addresses, ["000012345678", "000099000078", "202400000001"]);
    assert!(found.iter().all(|m| m.clean));
    // 100 probes a level: the first byte, five below 01, one below 78,
    // then four below each of 7856 and 7800.
    assert_eq!(probes, 100 * (1 + 5 + 1 + 2 * 4));
    // Only reads of data went out.
    assert!(bus.lock().unwrap().requests.iter().all(|c| *c == 0x11));
}

mod mixed {
    //! A Modbus meter and a DL/T 645 meter sharing one line.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use spindle_config::model::Area;
    use spindle_protocols::dlt645::frame::{Scanned, parse_frame};
    use spindle_protocols::dlt645::{Address, Di, decode_value, read_value};
    use spindle_protocols::line::{BusAnswer, BusRequest, LineLink, MixedFraming, TimerClock};
    use spindle_protocols::modbus::Response;
    use spindle_protocols::modbus::rtu::{RtuRequest, crc16, encode_request, response_len};
    use spindle_protocols::sim::dlt645::SimBus;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// Serves Modbus unit 1 (holding register 0 = 2298) and the DL/T 645 bus.
    async fn serve(mut port: DuplexStream, bus: Arc<Mutex<SimBus>>) {
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
                            if let Some((_, bytes)) = answer {
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
                        port.write_all(&answer).await.unwrap();
                    }
                } else {
                    break;
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_modbus_meter_and_a_dlt645_meter_never_read_each_others_values() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let mut meter =
            spindle_protocols::sim::dlt645::SimMeter::new(Address::parse("000012345678").unwrap());
        meter.set(Di(0x0201_0100), 231.4);
        let bus = SimBus::new(vec![meter]);
        tokio::spawn(serve(theirs, bus.clone()));
        let char_time = Duration::from_micros(1146);
        let mut link: LineLink<MixedFraming, DuplexStream, TimerClock> = LineLink::new(
            char_time.mul_f64(3.5),
            Duration::ZERO,
            char_time,
            TimerClock,
        );
        link.attach(ours);
        for _ in 0..5 {
            let request = BusRequest::Modbus(RtuRequest {
                unit: 1,
                area: Area::Holding,
                count: 1,
            });
            let answer = link
                .exchange(
                    &request,
                    &encode_request(1, Area::Holding, 0, 1),
                    response_len(Area::Holding, 1),
                    TIMEOUT,
                )
                .await
                .unwrap();
            assert_eq!(
                answer,
                BusAnswer::Modbus(Ok(Response::Registers(vec![2298])))
            );
            let value = read_value(
                &mut link,
                Address::parse("000012345678").unwrap(),
                Di(0x0201_0100),
                2,
                TIMEOUT,
            )
            .await
            .unwrap();
            assert_eq!(
                decode_value(Di(0x0201_0100), &value).unwrap().value(),
                231.4
            );
        }
        // A Modbus unit that does not exist times out; the meter is read right after.
        let silent = BusRequest::Modbus(RtuRequest {
            unit: 9,
            area: Area::Holding,
            count: 1,
        });
        let error = link
            .exchange(&silent, &encode_request(9, Area::Holding, 0, 1), 7, TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(error.word(), "timeout");
        let value = read_value(
            &mut link,
            Address::parse("000012345678").unwrap(),
            Di(0x0201_0100),
            2,
            TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(value, [0x14, 0x23]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_block_is_split_into_its_members_and_remembered() {
    use spindle_protocols::dlt645::poll::MeterPoller;
    let points = vec![VOLTAGE_A, Di(0x0201_0200), Di(0x0201_0300), ENERGY];
    for refuse in [false, true] {
        let mut three = meter("000012345678", 229.8);
        three.set(Di(0x0201_0200), 230.5);
        three.set(Di(0x0201_0300), 231.7);
        three.faults.refuse_blocks = refuse;
        let (mut link, bus) = line(vec![three.clone()]);
        let mut poller = MeterPoller::new(three.address, points.clone());
        for poll in 0..2 {
            let before = bus.lock().unwrap().requests.len();
            let values: Vec<f64> = poller
                .poll(&mut link, TIMEOUT)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(values, [229.8, 230.5, 231.7, 1206.42]);
            let sent = bus.lock().unwrap().requests.len() - before;
            let expected = match (refuse, poll) {
                (false, _) => 2,        // the block and the energy
                (true, 0) => 1 + 3 + 1, // the refused block, its members, the energy
                (true, _) => 3 + 1,
            };
            assert_eq!(sent, expected, "refuse {refuse}, poll {poll}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_poll_gives_every_point_its_value_or_its_error_word() {
    use spindle_protocols::dlt645::poll::MeterPoller;
    let mut meter = meter("000012345678", 229.8);
    meter.faults.refuse_blocks = true;
    let (mut link, _) = line(vec![meter.clone()]);
    // 02020200 (phase-B current) is not set: the meter answers "no data".
    let mut poller = MeterPoller::new(meter.address, vec![VOLTAGE_A, Di(0x0202_0200), CURRENT_A]);
    let words: Vec<String> = poller
        .poll(&mut link, TIMEOUT)
        .await
        .into_iter()
        .map(|result| result.map_or_else(|e| e.word(), |v| v.to_string()))
        .collect();
    assert_eq!(words, ["229.8", "abnormal:no_data", "-1.25"]);
    let mut silent = SimMeter::new(address("000000000009"));
    silent.faults.silent = true;
    let mut poller = MeterPoller::new(silent.address, vec![VOLTAGE_A]);
    let words: Vec<String> = poller
        .poll(&mut link, Duration::from_millis(50))
        .await
        .into_iter()
        .map(|result| result.map_or_else(|e| e.word(), |v| v.to_string()))
        .collect();
    assert_eq!(words, ["timeout"]);
}

#[tokio::test(start_paused = true)]
async fn a_read_is_retried_after_a_line_error_and_a_silent_meter_stops_the_poll() {
    use spindle_protocols::dlt645::poll::MeterPoller;
    let meter = meter("000012345678", 229.8);
    let (mut link, bus) = line(vec![meter.clone()]);
    // Silent to every other request: the first try of each read times out.
    bus.lock().unwrap().before_answer = Some(Box::new(|meters: &mut [SimMeter]| {
        meters[0].faults.silent = !meters[0].faults.silent;
    }));
    let words = |results: Vec<Result<f64, spindle_protocols::dlt645::poll::PointError>>| {
        results
            .into_iter()
            .map(|result| result.map_or_else(|e| e.word(), |v| v.to_string()))
            .collect::<Vec<String>>()
    };
    let mut poller = MeterPoller::new(meter.address, vec![VOLTAGE_A, ENERGY]);
    poller.set_retries(1);
    let got = words(poller.poll(&mut link, Duration::from_millis(50)).await);
    assert_eq!(got, ["229.8", "1206.42"], "each read answered on its retry");
    assert_eq!(bus.lock().unwrap().requests.len(), 4);

    // Without retries the first read times out, and the rest of the poll
    // is not sent: one request, every point `timeout`.
    bus.lock().unwrap().requests.clear();
    bus.lock().unwrap().meters[0].faults.silent = false;
    let mut poller = MeterPoller::new(meter.address, vec![VOLTAGE_A, ENERGY, CURRENT_A]);
    let got = words(poller.poll(&mut link, Duration::from_millis(50)).await);
    assert_eq!(got, ["timeout", "timeout", "timeout"]);
    assert_eq!(bus.lock().unwrap().requests.len(), 1);
}
