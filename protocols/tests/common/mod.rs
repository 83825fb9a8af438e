//! Builders shared by the protocol tests: points, buses, liveness bounds.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use spindle_config::model::{Area, Parity, Point, SerialBus, ValueType, WordOrder};
use spindle_protocols::modbus::{Decoded, PointError, PointValue};

/// Generous bound on any one test: a hang fails instead of blocking CI.
pub const LIVENESS: Duration = Duration::from_secs(60);

pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIVENESS, future)
        .await
        .expect("the test did not finish within its liveness bound")
}

pub fn point(name: &str, area: Area, address: u16, value_type: ValueType) -> Point {
    Point {
        name: name.into(),
        area,
        address,
        value_type,
        order: WordOrder::Abcd,
        bit: None,
        length: None,
        scale: 1.0,
        offset: 0.0,
        unit: None,
        counter: false,
        deadband: None,
        rollover: None,
    }
}

pub fn ordered(mut p: Point, order: WordOrder) -> Point {
    p.order = order;
    p
}

pub fn string(name: &str, address: u16, length: u16) -> Point {
    let mut p = point(name, Area::Holding, address, ValueType::String);
    p.length = NonZeroU16::new(length);
    p
}

pub fn bus(path: &str) -> SerialBus {
    SerialBus {
        name: "rs485-test".into(),
        port: path.into(),
        baud: NonZeroU32::new(115_200).unwrap(),
        parity: Parity::Even,
        data_bits: 8,
        stop_bits: 1,
        turnaround: Duration::ZERO,
    }
}

/// The number a point decoded to; panics with the error word otherwise.
pub fn number(result: &Result<Decoded, PointError>) -> f64 {
    match result {
        Ok(Decoded {
            value: PointValue::Number(n),
            ..
        }) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

/// The error word of a point that failed; panics if it has a value.
pub fn word(result: &Result<Decoded, PointError>) -> String {
    match result {
        Err(error) => error.word(),
        Ok(decoded) => panic!("expected an error, got {decoded:?}"),
    }
}
