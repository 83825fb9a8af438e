//! Whatever a device sends, planning, response handling and decoding never
//! panic, and every point of a poll ends with exactly one result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

mod common;

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::time::Duration;

use proptest::prelude::*;
use spindle_config::model::{Area, Point, ValueType, WordOrder};
use spindle_protocols::modbus::{
    DevicePoller, ExceptionCode, Link, LinkError, ReadError, Response, mbap, plan_reads, rtu,
};

/// A link that answers from a script (then times out), whatever was asked.
#[derive(Debug)]
struct ScriptedLink {
    answers: VecDeque<Result<Response, ReadError>>,
    asked: usize,
}

impl Link for ScriptedLink {
    async fn read(
        &mut self,
        _unit: u8,
        _area: Area,
        _start: u16,
        _count: u16,
    ) -> Result<Response, ReadError> {
        self.asked += 1;
        self.answers.pop_front().unwrap_or(Err(LinkError::Timeout {
            after: Duration::from_millis(1),
        }
        .into()))
    }
}

fn any_point() -> impl Strategy<Value = Point> {
    (
        prop_oneof![
            Just(Area::Holding),
            Just(Area::Input),
            Just(Area::Coil),
            Just(Area::Discrete)
        ],
        any::<u16>(),
        prop_oneof![
            Just(ValueType::Bool),
            Just(ValueType::U16),
            Just(ValueType::I16),
            Just(ValueType::U32),
            Just(ValueType::I32),
            Just(ValueType::U64),
            Just(ValueType::I64),
            Just(ValueType::F32),
            Just(ValueType::F64),
            Just(ValueType::String)
        ],
        prop_oneof![
            Just(WordOrder::Abcd),
            Just(WordOrder::Cdab),
            Just(WordOrder::Badc),
            Just(WordOrder::Dcba)
        ],
        proptest::option::of(any::<u8>()),
        0_u16..130,
        any::<f64>(),
        any::<f64>(),
    )
        .prop_map(
            |(area, address, value_type, order, bit, length, scale, offset)| {
                let mut p = common::point("p", area, address, value_type);
                p.order = order;
                p.bit = bit;
                p.length = NonZeroU16::new(length);
                p.scale = scale;
                p.offset = offset;
                p
            },
        )
}

fn any_answer() -> impl Strategy<Value = Result<Response, ReadError>> {
    prop_oneof![
        proptest::collection::vec(any::<u16>(), 0..140).prop_map(|w| Ok(Response::Registers(w))),
        proptest::collection::vec(any::<bool>(), 0..40).prop_map(|b| Ok(Response::Bits(b))),
        any::<u8>().prop_map(|c| Err(ReadError::Exception(ExceptionCode(c)))),
        Just(Err(ReadError::Exception(
            ExceptionCode::ILLEGAL_DATA_ADDRESS
        ))),
        Just(Err(LinkError::Closed.into())),
        Just(Err(LinkError::Truncated { got: 3 }.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn polling_with_arbitrary_answers_never_panics_and_gives_every_point_one_result(
        points in proptest::collection::vec(any_point(), 0..25),
        answers in proptest::collection::vec(any_answer(), 0..40),
        max_registers in any::<u16>(),
        max_gap in any::<u16>(),
        retries in 0_u32..3,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let count = points.len();
        let mut poller = DevicePoller::with_points(1, points, max_registers, max_gap, retries);
        let mut link = ScriptedLink { answers: answers.into(), asked: 0 };
        for _ in 0..2 {
            let outcome = runtime.block_on(poller.poll(&mut link));
            prop_assert_eq!(outcome.points.len(), count);
            for result in &outcome.points {
                if let Err(error) = result {
                    let word = error.word();
                    prop_assert!(
                        ["timeout", "decode", "disconnected"].contains(&word.as_str())
                            || word.starts_with("exception:"),
                        "not a SPEC word: {}", word
                    );
                }
            }
        }
        // Splits are bounded: at most one request per point plus the merged ones.
        prop_assert!(poller.plan().len() <= count.max(1) * 2);
    }

    #[test]
    fn checking_arbitrary_answer_data_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        count in any::<u16>(),
    ) {
        for area in [Area::Holding, Area::Input, Area::Coil, Area::Discrete] {
            if let Ok(response) = Response::from_data(area, count, &data) {
                prop_assert_eq!(response.len(), usize::from(count));
            }
        }
    }

    #[test]
    fn parsing_arbitrary_tcp_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        transaction in any::<u16>(),
        unit in any::<u8>(),
        count in any::<u16>(),
    ) {
        for area in [Area::Holding, Area::Input, Area::Coil, Area::Discrete] {
            let _ = mbap::parse_response(&bytes, transaction, unit, area, count);
        }
    }

    #[test]
    fn parsing_arbitrary_rtu_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        unit in any::<u8>(),
        count in any::<u16>(),
    ) {
        for area in [Area::Holding, Area::Input, Area::Coil, Area::Discrete] {
            let _ = rtu::parse_response(&bytes, unit, area, count);
        }
    }

    #[test]
    fn planning_arbitrary_points_carries_each_once(
        points in proptest::collection::vec(any_point(), 0..60),
        max_registers in any::<u16>(),
        max_gap in any::<u16>(),
    ) {
        let plan = plan_reads(&points, max_registers, max_gap);
        let mut carried = vec![0_u32; points.len()];
        for request in plan.requests() {
            for &index in &request.points {
                carried[index] += 1;
            }
        }
        prop_assert!(carried.iter().all(|c| *c == 1));
    }
}
