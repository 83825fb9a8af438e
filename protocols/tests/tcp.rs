//! Modbus TCP against the simulator over real sockets on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::{number, ordered, point, string, within, word};
use spindle_config::model::{Area, ValueType, WordOrder};
use spindle_protocols::modbus::{
    Backoff, Decoded, DevicePoller, Link, LinkError, PointValue, RawValue, ReadError, Response,
    TcpLink,
};
use spindle_protocols::sim::{Received, SimDevice, SimTcpServer};

const TIMEOUT: Duration = Duration::from_millis(300);

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn serve(device: &SimDevice) -> SimTcpServer {
    SimTcpServer::bind(device.clone(), localhost())
        .await
        .unwrap()
}

fn link(server: &SimTcpServer) -> TcpLink {
    TcpLink::new(server.local_addr().to_string(), TIMEOUT)
}

fn reads(device: &SimDevice) -> Vec<(u16, u16)> {
    device
        .received()
        .into_iter()
        .map(|Received { start, count, .. }| (start, count))
        .collect()
}

#[tokio::test]
async fn every_type_and_area_reads_right_over_tcp() {
    within(async {
        let device = SimDevice::new([1]);
        let mut scaled = point("temperature", Area::Holding, 4, ValueType::I16);
        scaled.scale = 0.1;
        scaled.offset = -10.0;
        let mut flag = point("alarm", Area::Holding, 20, ValueType::Bool);
        flag.bit = Some(3);
        let points = vec![
            point("power", Area::Holding, 0, ValueType::F32),
            ordered(
                point("parts", Area::Holding, 2, ValueType::U32),
                WordOrder::Cdab,
            ),
            scaled,
            string("serial", 10, 4),
            flag,
            point("running", Area::Coil, 5, ValueType::Bool),
            point("door", Area::Discrete, 7, ValueType::Bool),
            ordered(
                point("energy", Area::Input, 0, ValueType::U64),
                WordOrder::Dcba,
            ),
            ordered(
                point("volume", Area::Input, 10, ValueType::F64),
                WordOrder::Badc,
            ),
        ];
        let raws = [
            RawValue::Float(f64::from(1234.5_f32)),
            RawValue::Unsigned(4_000_000_007),
            RawValue::Signed(-125),
            RawValue::Text("SN42".into()),
            RawValue::Bool(true),
            RawValue::Bool(true),
            RawValue::Bool(true),
            RawValue::Unsigned(0x0102_0304_0506_0708),
            RawValue::Float(-0.001_25),
        ];
        for (p, raw) in points.iter().zip(&raws) {
            device.set_point(p, raw).unwrap();
        }
        let server = serve(&device).await;
        let mut link = link(&server);
        let mut poller = DevicePoller::with_points(1, points, 125, 8, 0);

        let before = SystemTime::now();
        let outcome = poller.poll(&mut link).await;

        assert!(outcome.started >= before && outcome.started <= SystemTime::now());
        assert!(outcome.answered());
        for (result, raw) in outcome.points.iter().zip(&raws) {
            let decoded = result.as_ref().expect("a value");
            assert_eq!(&decoded.raw, raw);
        }
        assert!((number(&outcome.points[2]) - -22.5).abs() < 1e-9);
        assert_eq!(
            outcome.points[3].as_ref().unwrap().value,
            PointValue::Text("SN42".into())
        );
        // holding 0..=20 in one request (gaps <= 8), input 0..=13, coil, discrete.
        assert_eq!(outcome.requests.len(), 4, "{:?}", outcome.requests);
        assert!(outcome.requests.iter().all(|r| r.attempts == 1));
    })
    .await;
}

#[tokio::test]
async fn a_late_reply_is_never_taken_as_the_answer_to_the_next_request() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[111]);
        device.update_faults(|f| f.reply_delay = TIMEOUT + Duration::from_millis(200));
        let server = serve(&device).await;
        let mut link = link(&server);
        let mut poller = DevicePoller::with_points(
            1,
            vec![point("count", Area::Holding, 0, ValueType::U16)],
            125,
            8,
            0,
        );

        let first = poller.poll(&mut link).await;
        assert_eq!(word(&first.points[0]), "timeout");

        // The late answer (111) is still on its way when the next request goes out.
        device.set_registers(Area::Holding, 0, &[222]);
        device.update_faults(|f| f.reply_delay = Duration::ZERO);
        let second = poller.poll(&mut link).await;
        assert_eq!(number(&second.points[0]), 222.0);
        let third = poller.poll(&mut link).await;
        assert_eq!(number(&third.points[0]), 222.0);
    })
    .await;
}

#[tokio::test]
async fn exception_2_inside_a_merged_read_splits_it_and_the_split_is_remembered() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[10, 11, 12, 13]);
        device.update_faults(|f| f.missing.push((Area::Holding, 2..=2)));
        let server = serve(&device).await;
        let mut link = link(&server);
        let points = (0..4)
            .map(|i| point(&format!("p{i}"), Area::Holding, i, ValueType::U16))
            .collect();
        let mut poller = DevicePoller::with_points(1, points, 125, 8, 0);
        assert_eq!(poller.plan().len(), 1);

        let first = poller.poll(&mut link).await;
        assert_eq!(number(&first.points[0]), 10.0);
        assert_eq!(number(&first.points[1]), 11.0);
        assert_eq!(word(&first.points[2]), "exception:2");
        assert_eq!(number(&first.points[3]), 13.0);
        assert_eq!(reads(&device), [(0, 4), (0, 2), (2, 2), (2, 1), (3, 1)]);

        device.clear_received();
        let second = poller.poll(&mut link).await;
        assert_eq!(reads(&device), [(0, 2), (2, 1), (3, 1)]);
        assert_eq!(word(&second.points[2]), "exception:2");
        assert_eq!(number(&second.points[3]), 13.0);
    })
    .await;
}

#[tokio::test]
async fn fewer_registers_than_asked_is_a_short_response_never_a_value() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[1, 2, 3, 4]);
        device.update_faults(|f| f.short_by = 1);
        let server = serve(&device).await;
        let mut link = link(&server);

        let result = link.read(1, Area::Holding, 0, 4).await;
        assert!(
            matches!(
                result,
                Err(ReadError::Link(LinkError::ShortResponse {
                    expected: 4,
                    got: 3
                }))
            ),
            "{result:?}"
        );
        let mut poller = DevicePoller::with_points(
            1,
            vec![ordered(
                point("wide", Area::Holding, 0, ValueType::U64),
                WordOrder::Abcd,
            )],
            125,
            8,
            0,
        );
        assert_eq!(word(&poller.poll(&mut link).await.points[0]), "decode");

        device.update_faults(|f| f.short_by = 0);
        let outcome = poller.poll(&mut link).await;
        assert_eq!(
            outcome.points[0].as_ref().unwrap().raw,
            RawValue::Unsigned(0x0001_0002_0003_0004)
        );
        assert_eq!(
            outcome.requests[0].result.as_ref().unwrap(),
            &Response::Registers(vec![1, 2, 3, 4])
        );
    })
    .await;
}

#[tokio::test]
async fn a_refused_device_reports_disconnected_and_is_retried_after_a_backoff() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Input, 0, &[5]);
        let mut server = serve(&device).await;
        let mut link = link(&server).with_backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(8),
            0.0,
        ));
        let mut poller = DevicePoller::with_points(
            1,
            vec![point("level", Area::Input, 0, ValueType::U16)],
            125,
            8,
            2,
        );
        assert_eq!(number(&poller.poll(&mut link).await.points[0]), 5.0);

        server.stop();
        let refused = poller.poll(&mut link).await;
        assert_eq!(word(&refused.points[0]), "disconnected");
        assert!(!refused.answered());
        let retry_at = link
            .retry_at()
            .expect("a backoff after a refused connection");

        // Back, but the link waits out its backoff without trying.
        server.restart().await.unwrap();
        device.clear_received();
        let waiting = poller.poll(&mut link).await;
        assert_eq!(word(&waiting.points[0]), "disconnected");
        assert!(device.received().is_empty());

        tokio::time::sleep_until(retry_at).await;
        assert_eq!(number(&poller.poll(&mut link).await.points[0]), 5.0);
        assert_eq!(link.retry_at(), None);
    })
    .await;
}

#[tokio::test]
async fn a_device_that_does_not_answer_times_out_once_per_try_not_once_per_request() {
    within(async {
        let device = SimDevice::new([1]);
        device.update_faults(|f| f.down = true);
        let server = serve(&device).await;
        let mut link = link(&server);
        let mut poller = DevicePoller::with_points(
            1,
            vec![
                point("a", Area::Holding, 0, ValueType::U16),
                point("b", Area::Input, 0, ValueType::U16),
            ],
            125,
            8,
            1,
        );

        let outcome = poller.poll(&mut link).await;
        assert_eq!(word(&outcome.points[0]), "timeout");
        assert_eq!(word(&outcome.points[1]), "timeout");
        assert_eq!(outcome.requests[0].attempts, 2);
        assert_eq!(
            outcome.requests[1].attempts, 0,
            "not sent after the timeout"
        );
        assert_eq!(device.received().len(), 2);
        assert!(!outcome.answered());
        assert!(outcome.elapsed >= TIMEOUT * 2);
    })
    .await;
}

#[tokio::test]
async fn two_devices_with_different_word_orders_each_read_their_own_values() {
    within(async {
        let big = SimDevice::new([1]);
        let little = SimDevice::new([1]);
        let points_for = |order| {
            vec![
                ordered(point("parts", Area::Holding, 0, ValueType::U32), order),
                ordered(point("power", Area::Holding, 2, ValueType::F32), order),
            ]
        };
        let (big_points, little_points) =
            (points_for(WordOrder::Abcd), points_for(WordOrder::Cdab));
        for (device, points) in [(&big, &big_points), (&little, &little_points)] {
            device
                .set_point(&points[0], &RawValue::Unsigned(123_456_789))
                .unwrap();
            device
                .set_point(&points[1], &RawValue::Float(f64::from(-42.5_f32)))
                .unwrap();
        }
        assert_ne!(
            big.registers(Area::Holding, 0, 4),
            little.registers(Area::Holding, 0, 4)
        );
        let (big_server, little_server) = (serve(&big).await, serve(&little).await);
        let (mut big_link, mut little_link) = (link(&big_server), link(&little_server));
        let mut big_poller = DevicePoller::with_points(1, big_points, 125, 8, 0);
        let mut little_poller = DevicePoller::with_points(1, little_points, 125, 8, 0);

        for outcome in [
            big_poller.poll(&mut big_link).await,
            little_poller.poll(&mut little_link).await,
        ] {
            assert_eq!(number(&outcome.points[0]), 123_456_789.0);
            assert_eq!(number(&outcome.points[1]), -42.5);
        }
    })
    .await;
}

#[tokio::test]
async fn a_bool_from_a_coil_and_a_decode_error_for_nan() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[0x7FC0, 0x0000]);
        device.set_bit(Area::Coil, 3, true);
        let server = serve(&device).await;
        let mut link = link(&server);
        let mut poller = DevicePoller::with_points(
            1,
            vec![
                point("nan", Area::Holding, 0, ValueType::F32),
                point("on", Area::Coil, 3, ValueType::Bool),
            ],
            125,
            8,
            0,
        );
        let outcome = poller.poll(&mut link).await;
        assert_eq!(word(&outcome.points[0]), "decode");
        assert!(matches!(
            outcome.points[1],
            Ok(Decoded {
                value: PointValue::Bool(true),
                ..
            })
        ));
    })
    .await;
}
