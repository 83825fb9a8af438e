//! The framing of a serial bus shared by Modbus RTU and DL/T 645 devices:
//! each request is classified by its own protocol's framing, and a whole
//! late reply of the other protocol in front of the answer is recognized
//! too (a DL/T 645 answer starts `FE` or `68`, which Modbus alone would take
//! for a wrong unit; a Modbus answer would be noise to DL/T 645 alone).

use std::fmt;

use thiserror::Error;

use super::{Framing, Verdict};
use crate::dlt645::frame::{Address, Answer, BadAnswer, Dlt645Framing, Request};
use crate::modbus::error::{ExceptionCode, LinkError};
use crate::modbus::rtu::{RtuFraming, RtuRequest};
use crate::modbus::transport::Response;

/// A request on a mixed bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusRequest {
    Modbus(RtuRequest),
    Dlt645(Request),
}

/// A device on a mixed bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusDevice {
    Modbus(u8),
    Dlt645(Address),
}

/// An answer on a mixed bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAnswer {
    Modbus(Result<Response, ExceptionCode>),
    Dlt645(Answer),
}

/// Bytes that make no answer, in the asked protocol's words.
#[derive(Debug, Clone, Error)]
pub enum BusError {
    #[error(transparent)]
    Modbus(LinkError),
    #[error(transparent)]
    Dlt645(BadAnswer),
}

/// See the module doc.
#[derive(Debug, Clone, Copy)]
pub struct MixedFraming;

/// The requests of one protocol among `unanswered`, with their indices.
fn split<'a, R>(
    unanswered: &[&'a BusRequest],
    pick: impl Fn(&'a BusRequest) -> Option<&'a R>,
) -> (Vec<&'a R>, Vec<usize>) {
    unanswered
        .iter()
        .enumerate()
        .filter_map(|(index, request)| pick(request).map(|request| (request, index)))
        .unzip()
}

fn modbus(request: &BusRequest) -> Option<&RtuRequest> {
    match request {
        BusRequest::Modbus(request) => Some(request),
        BusRequest::Dlt645(_) => None,
    }
}

fn dlt645(request: &BusRequest) -> Option<&Request> {
    match request {
        BusRequest::Dlt645(request) => Some(request),
        BusRequest::Modbus(_) => None,
    }
}

/// What the start of a buffer is to the protocol not asked.
enum Other {
    No,
    /// Could become a whole late reply: read more.
    Partial,
    /// A whole late reply to the unanswered request at `index` (of all).
    Whole {
        len: usize,
        index: usize,
    },
}

/// Whether `buf` starts with a late reply of the protocol not asked.
fn other_late<F: Framing>(buf: &[u8], unanswered: &[&F::Request], indices: &[usize]) -> Other {
    let Some(first) = unanswered.first() else {
        return Other::No;
    };
    // Classify against one of them as if asked: an answer to it, or a late
    // reply to another of them, is a late reply on this bus.
    match F::classify(buf, first, unanswered) {
        Verdict::Answer { len, .. } => indices
            .first()
            .map_or(Other::No, |index| Other::Whole { len, index: *index }),
        Verdict::Late { len, index } => indices
            .get(index)
            .map_or(Other::No, |index| Other::Whole { len, index: *index }),
        Verdict::Partial => Other::Partial,
        _ => Other::No,
    }
}

impl Framing for MixedFraming {
    type Request = BusRequest;
    type Device = BusDevice;
    type Answer = BusAnswer;
    type Error = BusError;

    fn device(request: &BusRequest) -> BusDevice {
        match request {
            BusRequest::Modbus(request) => BusDevice::Modbus(request.unit),
            BusRequest::Dlt645(request) => BusDevice::Dlt645(request.address()),
        }
    }

    fn classify(
        buf: &[u8],
        asked: &BusRequest,
        unanswered: &[&BusRequest],
    ) -> Verdict<BusAnswer, BusError> {
        let (modbus_unanswered, modbus_indices) = split(unanswered, modbus);
        let (dlt_unanswered, dlt_indices) = split(unanswered, dlt645);
        let (verdict, other) = match asked {
            BusRequest::Modbus(asked) => (
                map(
                    RtuFraming::classify(buf, asked, &modbus_unanswered),
                    &modbus_indices,
                    BusAnswer::Modbus,
                    BusError::Modbus,
                ),
                other_late::<Dlt645Framing>(buf, &dlt_unanswered, &dlt_indices),
            ),
            BusRequest::Dlt645(asked) => (
                map(
                    Dlt645Framing::classify(buf, asked, &dlt_unanswered),
                    &dlt_indices,
                    BusAnswer::Dlt645,
                    BusError::Dlt645,
                ),
                other_late::<RtuFraming>(buf, &modbus_unanswered, &modbus_indices),
            ),
        };
        match (verdict, other) {
            (verdict @ (Verdict::Answer { .. } | Verdict::Late { .. }), _) => verdict,
            (_, Other::Whole { len, index }) => Verdict::Late { len, index },
            (Verdict::Noise { .. } | Verdict::Garbage(_) | Verdict::Partial, Other::Partial) => {
                Verdict::Partial
            }
            (verdict, _) => verdict,
        }
    }
}

/// One protocol's verdict in the bus's terms (late indices mapped back).
fn map<A, E>(
    verdict: Verdict<A, E>,
    indices: &[usize],
    answer: impl FnOnce(A) -> BusAnswer,
    error: impl FnOnce(E) -> BusError,
) -> Verdict<BusAnswer, BusError> {
    match verdict {
        Verdict::Partial => Verdict::Partial,
        Verdict::Answer { answer: got, len } => Verdict::Answer {
            answer: answer(got),
            len,
        },
        Verdict::Late { len, index } => match indices.get(index) {
            Some(index) => Verdict::Late { len, index: *index },
            None => Verdict::Foreign { len },
        },
        Verdict::Foreign { len } => Verdict::Foreign { len },
        Verdict::Noise { len } => Verdict::Noise { len },
        Verdict::Garbage(got) => Verdict::Garbage(error(got)),
    }
}

impl fmt::Display for BusDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusDevice::Modbus(unit) => write!(f, "unit {unit}"),
            BusDevice::Dlt645(address) => write!(f, "meter {address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use spindle_config::model::Area;

    use super::*;
    use crate::dlt645::frame::{Di, Frame};
    use crate::modbus::rtu::crc16;

    fn with_crc(body: &[u8]) -> Vec<u8> {
        let mut frame = body.to_vec();
        frame.extend(crc16(body).to_le_bytes());
        frame
    }

    const METER: Request = Request::ReadData {
        address: Address::ANY,
        di: Di(0x0201_0100),
    };

    fn meter_request() -> Request {
        Request::ReadData {
            address: Address::parse("000012345678").unwrap(),
            di: Di(0x0201_0100),
        }
    }

    #[test]
    fn a_late_dlt645_answer_in_front_of_a_modbus_answer_is_recognized() {
        let late = meter_request();
        let late_bytes = Frame::answer(&late, late.address(), &[0x98, 0x22], false)
            .encode()
            .unwrap();
        let asked = BusRequest::Modbus(RtuRequest {
            unit: 3,
            area: Area::Holding,
            count: 1,
        });
        let mut buf = late_bytes.clone();
        buf.extend(with_crc(&[3, 3, 2, 0, 7]));
        let pending = BusRequest::Dlt645(late);
        let other = BusRequest::Modbus(RtuRequest {
            unit: 9,
            area: Area::Input,
            count: 4,
        });
        assert!(matches!(
            MixedFraming::classify(&buf, &asked, &[&other, &pending]),
            Verdict::Late { len, index: 1 } if len == late_bytes.len()
        ));
        assert!(matches!(
            MixedFraming::classify(&buf[late_bytes.len()..], &asked, &[&other]),
            Verdict::Answer { answer: BusAnswer::Modbus(Ok(Response::Registers(words))), len: 7 }
                if words == [7]
        ));
        // Without it unanswered, the meter's frame is garbage to Modbus.
        assert!(matches!(
            MixedFraming::classify(&buf, &asked, &[&other]),
            Verdict::Garbage(BusError::Modbus(LinkError::WrongUnit { .. }))
        ));
    }

    #[test]
    fn a_late_modbus_answer_in_front_of_a_dlt645_answer_is_recognized() {
        let late = RtuRequest {
            unit: 3,
            area: Area::Holding,
            count: 1,
        };
        let late_bytes = with_crc(&[3, 3, 2, 0, 7]);
        let asked = meter_request();
        let mut buf = late_bytes.clone();
        buf.extend(
            Frame::answer(&asked, asked.address(), &[0x98, 0x22], false)
                .encode()
                .unwrap(),
        );
        let pending = BusRequest::Modbus(late);
        assert!(matches!(
            MixedFraming::classify(&buf, &BusRequest::Dlt645(asked), &[&pending]),
            Verdict::Late { len: 7, index: 0 }
        ));
        assert_eq!(
            MixedFraming::device(&BusRequest::Dlt645(METER)),
            BusDevice::Dlt645(Address::ANY)
        );
    }

    fn any_request() -> impl Strategy<Value = BusRequest> {
        prop_oneof![
            (any::<u8>(), 1_u16..125).prop_map(|(unit, count)| BusRequest::Modbus(RtuRequest {
                unit,
                area: Area::Holding,
                count
            })),
            (proptest::array::uniform6(0_u8..100), any::<u32>()).prop_map(|(digits, di)| {
                let wire = digits.map(|value| ((value / 10) << 4) | (value % 10));
                BusRequest::Dlt645(Request::ReadData {
                    address: Address::from_wire(wire).unwrap(),
                    di: Di(di),
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn classifying_arbitrary_bytes_never_panics_and_never_overreads(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            asked in any_request(),
            unanswered in proptest::collection::vec(any_request(), 0..4),
        ) {
            let pending: Vec<&BusRequest> = unanswered.iter().collect();
            match MixedFraming::classify(&bytes, &asked, &pending) {
                Verdict::Answer { len, .. } | Verdict::Foreign { len } | Verdict::Noise { len } => {
                    prop_assert!(len > 0 && len <= bytes.len());
                }
                Verdict::Late { len, index } => {
                    prop_assert!(len > 0 && len <= bytes.len());
                    prop_assert!(index < unanswered.len());
                }
                Verdict::Partial | Verdict::Garbage(_) => {}
            }
        }
    }
}
