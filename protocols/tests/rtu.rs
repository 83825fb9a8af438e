//! Modbus RTU against the simulator over a real pseudo-terminal pair: our
//! RTU framing talking to tokio-modbus's RTU server.
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

use common::{bus, number, ordered, point, within, word};
use spindle_config::model::{Area, ValueType, WordOrder};
use spindle_protocols::modbus::{
    Backoff, DevicePoller, Link, LinkError, RawValue, ReadError, Response, RtuLink,
};
use spindle_protocols::sim::{Received, SimDevice, SimPtyServer};

const TIMEOUT: Duration = Duration::from_millis(300);

fn link(server: &SimPtyServer) -> RtuLink {
    RtuLink::new(&bus(server.path()), TIMEOUT)
}

fn u16_poller(unit: u8, addresses: &[u16]) -> DevicePoller {
    let points = addresses
        .iter()
        .map(|a| point(&format!("p{a}"), Area::Holding, *a, ValueType::U16))
        .collect();
    DevicePoller::with_points(unit, points, 125, 8, 0)
}

#[tokio::test]
async fn two_devices_on_one_bus_with_different_word_orders_read_right() {
    within(async {
        let meter = SimDevice::new([3]);
        let plc = SimDevice::new([7]);
        let server = SimPtyServer::open(vec![meter.clone(), plc.clone()]).unwrap();
        let mut link = link(&server);
        let points_for = |order| {
            vec![
                ordered(point("energy", Area::Input, 0x48, ValueType::F32), order),
                ordered(point("parts", Area::Holding, 100, ValueType::U64), order),
                point("running", Area::Coil, 9, ValueType::Bool),
            ]
        };
        let mut meter_poller = DevicePoller::with_points(3, points_for(WordOrder::Abcd), 125, 8, 0);
        let mut plc_poller = DevicePoller::with_points(7, points_for(WordOrder::Dcba), 125, 8, 0);
        for (device, poller) in [(&meter, &meter_poller), (&plc, &plc_poller)] {
            let points = poller.points();
            device
                .set_point(&points[0], &RawValue::Float(f64::from(12_345.67_f32)))
                .unwrap();
            device
                .set_point(&points[1], &RawValue::Unsigned(9_876_543_210))
                .unwrap();
            device.set_point(&points[2], &RawValue::Bool(true)).unwrap();
        }

        for _ in 0..3 {
            for poller in [&mut meter_poller, &mut plc_poller] {
                let outcome = poller.poll(&mut link).await;
                assert_eq!(number(&outcome.points[0]), f64::from(12_345.67_f32));
                assert_eq!(
                    outcome.points[1].as_ref().unwrap().raw,
                    RawValue::Unsigned(9_876_543_210)
                );
                assert_eq!(
                    outcome.points[2].as_ref().unwrap().raw,
                    RawValue::Bool(true)
                );
            }
        }
        // Each device was asked only for its own unit id.
        assert!(meter.received().iter().all(|r| r.unit == 3));
        assert!(plc.received().iter().all(|r| r.unit == 7));
        assert_eq!(plc.received().len(), 3 * 3);
    })
    .await;
}

#[tokio::test]
async fn a_late_reply_on_the_line_is_drained_not_taken_as_the_next_answer() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[111]);
        device.update_faults(|f| f.reply_delay = TIMEOUT + Duration::from_millis(150));
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let mut link = link(&server);
        let mut poller = u16_poller(1, &[0]);

        let first = poller.poll(&mut link).await;
        assert_eq!(word(&first.points[0]), "timeout");

        // The late answer (111) arrives while the link waits for the line to go quiet.
        device.set_registers(Area::Holding, 0, &[222]);
        device.update_faults(|f| f.reply_delay = Duration::ZERO);
        let second = poller.poll(&mut link).await;
        assert_eq!(number(&second.points[0]), 222.0);
        device.set_registers(Area::Holding, 0, &[333]);
        let third = poller.poll(&mut link).await;
        assert_eq!(number(&third.points[0]), 333.0);
    })
    .await;
}

#[tokio::test]
async fn exception_2_over_rtu_splits_and_remembers() {
    within(async {
        let device = SimDevice::new([2]);
        device.set_registers(Area::Holding, 0, &[0, 1, 2, 3, 4, 5]);
        device.update_faults(|f| f.missing.push((Area::Holding, 4..=4)));
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let mut link = link(&server);
        let mut poller = u16_poller(2, &[0, 1, 4, 5]);

        let first = poller.poll(&mut link).await;
        assert_eq!(number(&first.points[1]), 1.0);
        assert_eq!(word(&first.points[2]), "exception:2");
        assert_eq!(number(&first.points[3]), 5.0);

        device.clear_received();
        poller.poll(&mut link).await;
        let reads: Vec<_> = device
            .received()
            .into_iter()
            .map(|Received { start, count, .. }| (start, count))
            .collect();
        assert_eq!(reads, [(0, 2), (4, 1), (5, 1)]);
    })
    .await;
}

#[tokio::test]
async fn a_short_answer_over_rtu_is_a_short_response() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Input, 0, &[1, 2, 3]);
        device.update_faults(|f| f.short_by = 2);
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let mut link = link(&server);

        let result = link.read(1, Area::Input, 0, 3).await;
        assert!(
            matches!(
                result,
                Err(ReadError::Link(LinkError::ShortResponse {
                    expected: 3,
                    got: 1
                }))
            ),
            "{result:?}"
        );
        device.update_faults(|f| f.short_by = 0);
        assert_eq!(
            link.read(1, Area::Input, 0, 3).await.unwrap(),
            Response::Registers(vec![1, 2, 3])
        );
    })
    .await;
}

#[tokio::test]
async fn garbage_on_the_line_is_a_decode_error_and_the_line_recovers() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[42]);
        // Looks like our answer, with a broken CRC; then noise.
        device.update_faults(|f| {
            f.garbage = Some(vec![1, 3, 2, 0, 99, 0xDE, 0xAD, 0xBE, 0xEF, 0x55]);
        });
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let mut link = link(&server);
        let mut poller = u16_poller(1, &[0]);

        let outcome = poller.poll(&mut link).await;
        assert_eq!(word(&outcome.points[0]), "decode");
        assert!(
            matches!(
                outcome.requests[0].result,
                Err(ReadError::Link(LinkError::BadCrc { .. }))
            ),
            "{:?}",
            outcome.requests[0].result
        );

        device.update_faults(|f| f.garbage = Some(vec![9, 3, 2, 0, 1, 0, 0]));
        let outcome = poller.poll(&mut link).await;
        assert!(matches!(
            outcome.requests[0].result,
            Err(ReadError::Link(LinkError::WrongUnit {
                expected: 1,
                got: 9
            }))
        ));

        device.update_faults(|f| f.garbage = None);
        assert_eq!(number(&poller.poll(&mut link).await.points[0]), 42.0);
    })
    .await;
}

#[tokio::test]
async fn a_silent_unit_times_out_and_the_others_on_the_bus_keep_answering() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[7]);
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let mut link = link(&server);
        let mut absent = u16_poller(5, &[0]);
        let mut present = u16_poller(1, &[0]);

        for _ in 0..2 {
            assert_eq!(word(&absent.poll(&mut link).await.points[0]), "timeout");
            assert_eq!(number(&present.poll(&mut link).await.points[0]), 7.0);
        }
    })
    .await;
}

#[tokio::test]
async fn a_missing_port_reports_disconnected_and_is_retried_after_a_backoff() {
    within(async {
        let mut link = RtuLink::new(&bus("/dev/spindle-no-such-port"), TIMEOUT).with_backoff(
            Backoff::new(Duration::from_secs(5), Duration::from_secs(10), 0.0),
        );
        let result = link.read(1, Area::Holding, 0, 1).await;
        assert!(
            matches!(result, Err(ReadError::Link(LinkError::Connect { .. }))),
            "{result:?}"
        );
        let retry_at = link.retry_at().expect("a backoff");
        // Within the backoff no attempt is made: the same error, at once.
        let again = link.read(1, Area::Holding, 0, 1).await.unwrap_err();
        assert_eq!(again.word(), "disconnected");
        assert_eq!(link.retry_at(), Some(retry_at));
    })
    .await;
}
