//! A serial port that vanishes under the link (its own test binary: the
//! pseudo-terminal's number may be reused by a concurrently running test).
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

use common::{bus, number, point, within, word};
use spindle_config::model::{Area, ValueType};
use spindle_protocols::modbus::{Backoff, DevicePoller, RtuLink};
use spindle_protocols::sim::{SimDevice, SimPtyServer};

const TIMEOUT: Duration = Duration::from_millis(300);

fn u16_poller(unit: u8, addresses: &[u16]) -> DevicePoller {
    let points = addresses
        .iter()
        .map(|a| point(&format!("p{a}"), Area::Holding, *a, ValueType::U16))
        .collect();
    DevicePoller::with_points(unit, points, 125, 8, 0)
}

#[tokio::test]
async fn a_vanished_port_reports_disconnected_and_is_reopened_with_backoff() {
    within(async {
        let device = SimDevice::new([1]);
        device.set_registers(Area::Holding, 0, &[7]);
        let server = SimPtyServer::open(vec![device.clone()]).unwrap();
        let path = server.path().to_owned();
        let mut link = RtuLink::new(&bus(&path), TIMEOUT).with_backoff(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(4),
            0.0,
        ));
        let mut poller = u16_poller(1, &[0]);
        assert_eq!(number(&poller.poll(&mut link).await.points[0]), 7.0);

        drop(server);
        // The first symptom may be a timeout (the simulator's task ends
        // asynchronously) or EIO; either way the port is soon closed, and
        // reopening fails (the pseudo-terminal is gone) into a backoff.
        let mut polls = 0;
        while link.is_open() || link.retry_at().is_none() {
            polls += 1;
            assert!(polls <= 5, "the link never gave up the vanished port");
            let error = word(&poller.poll(&mut link).await.points[0]);
            assert!(
                error == "disconnected" || error == "timeout",
                "unexpected {error}"
            );
        }
        let again = poller.poll(&mut link).await;
        assert_eq!(word(&again.points[0]), "disconnected");
    })
    .await;
}
