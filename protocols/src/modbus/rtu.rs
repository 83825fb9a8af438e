//! Modbus RTU master framing for the read functions 1–4. Pure: no I/O.
//!
//! We frame RTU ourselves rather than use tokio-modbus's RTU client because
//! that client owns the serial stream: after a timeout we must drain the
//! line and discard buffered input before the next request (a late reply
//! would otherwise be taken as the next answer, tokio-modbus issue #324), and
//! we must keep the 3.5-character silent interval between frames (issue
//! #180). Owning the bytes makes both possible. The simulator answers with
//! tokio-modbus's RTU server, so the tests check this framing against an
//! independent implementation.
//!
//! A request is 8 bytes: unit, function, start (BE), count (BE), CRC (LE).
//! [`parse_response`] looks at the bytes received so far and says whether
//! they are an incomplete answer, the complete answer (and its length), or
//! not the answer asked for (a typed [`LinkError`]: wrong unit, wrong
//! function, bad CRC, too few values, malformed). It never panics, whatever
//! the bytes (fuzzed in `fuzz/`).

use spindle_config::model::Area;

use super::error::{ExceptionCode, LinkError};
use super::transport::Response;
use crate::line::{Framing, Verdict};

/// CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The read function code for `area`.
pub fn function_code(area: Area) -> u8 {
    match area {
        Area::Coil => 1,
        Area::Discrete => 2,
        Area::Holding => 3,
        Area::Input => 4,
    }
}

/// The request frame reading `count` values of `area` from `start`.
pub fn encode_request(unit: u8, area: Area, start: u16, count: u16) -> [u8; 8] {
    let [start_hi, start_lo] = start.to_be_bytes();
    let [count_hi, count_lo] = count.to_be_bytes();
    let body = [
        unit,
        function_code(area),
        start_hi,
        start_lo,
        count_hi,
        count_lo,
    ];
    let [crc_lo, crc_hi] = crc16(&body).to_le_bytes();
    [
        unit,
        function_code(area),
        start_hi,
        start_lo,
        count_hi,
        count_lo,
        crc_lo,
        crc_hi,
    ]
}

/// Bytes of the answer to a read of `count` values of `area` (an exception
/// answer is shorter: 5 bytes): unit, function, byte count, data, CRC.
pub fn response_len(area: Area, count: u16) -> usize {
    let data = if area.is_bit() {
        usize::from(count).div_ceil(8)
    } else {
        2 * usize::from(count)
    };
    5 + data
}

/// What the bytes received so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not yet a whole frame: read more.
    Incomplete,
    /// A whole, checked answer occupying the first `len` bytes.
    Complete {
        answer: Result<Response, ExceptionCode>,
        len: usize,
    },
}

/// Parse the answer to a request for `count` values of `area` from `unit`.
///
/// Registers must come back exactly as many as asked; bits at least as many
/// (the padding bits of the last byte are dropped).
pub fn parse_response(buf: &[u8], unit: u8, area: Area, count: u16) -> Result<Parsed, LinkError> {
    let function = function_code(area);
    let (Some(&got_unit), Some(&got_function)) = (buf.first(), buf.get(1)) else {
        return Ok(Parsed::Incomplete);
    };
    if got_unit != unit {
        return Err(LinkError::WrongUnit {
            expected: unit,
            got: got_unit,
        });
    }
    if got_function == function | 0x80 {
        let Some(frame) = checked_frame(buf, 5)? else {
            return Ok(Parsed::Incomplete);
        };
        let code = frame.get(2).copied().unwrap_or_default();
        return Ok(Parsed::Complete {
            answer: Err(ExceptionCode(code)),
            len: frame.len(),
        });
    }
    if got_function != function {
        return Err(LinkError::WrongFunction {
            expected: function,
            got: got_function,
        });
    }
    let Some(&byte_count) = buf.get(2) else {
        return Ok(Parsed::Incomplete);
    };
    let Some(frame) = checked_frame(buf, 3 + usize::from(byte_count) + 2)? else {
        return Ok(Parsed::Incomplete);
    };
    let data = frame
        .get(3..3 + usize::from(byte_count))
        .unwrap_or_default();
    let response = Response::from_data(area, count, data)?;
    Ok(Parsed::Complete {
        answer: Ok(response),
        len: frame.len(),
    })
}

/// The first `len` bytes of `buf` with their CRC checked, or `None` while
/// fewer have arrived.
fn checked_frame(buf: &[u8], len: usize) -> Result<Option<&[u8]>, LinkError> {
    let Some(frame) = buf.get(..len) else {
        return Ok(None);
    };
    let body = frame.get(..len.saturating_sub(2)).unwrap_or_default();
    let received = u16::from_le_bytes([
        frame.get(len.saturating_sub(2)).copied().unwrap_or(0),
        frame.get(len.saturating_sub(1)).copied().unwrap_or(0),
    ]);
    let computed = crc16(body);
    if computed != received {
        return Err(LinkError::BadCrc { computed, received });
    }
    Ok(Some(frame))
}

/// A request, as much of it as the line discipline needs to recognize its
/// answer (the start address is not echoed by an RTU answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtuRequest {
    pub unit: u8,
    pub area: Area,
    pub count: u16,
}

/// Modbus RTU's framing for the protocol-neutral line discipline
/// ([`crate::line`]): an answer from another unit than the one asked is a
/// late reply only if it parses whole, CRC checked, as the answer to an
/// unanswered request of that unit; anything else that is not the answer is
/// garbage (RTU cannot tell a foreign frame from a garbled one).
#[derive(Debug, Clone, Copy)]
pub struct RtuFraming;

impl Framing for RtuFraming {
    type Request = RtuRequest;
    type Device = u8;
    type Answer = Result<Response, ExceptionCode>;
    type Error = LinkError;

    fn device(request: &RtuRequest) -> u8 {
        request.unit
    }

    fn classify(
        buf: &[u8],
        asked: &RtuRequest,
        unanswered: &[&RtuRequest],
    ) -> Verdict<Self::Answer, LinkError> {
        let error = match parse_response(buf, asked.unit, asked.area, asked.count) {
            Ok(Parsed::Incomplete) => return Verdict::Partial,
            Ok(Parsed::Complete { answer, len }) => return Verdict::Answer { answer, len },
            Err(error) => error,
        };
        let LinkError::WrongUnit { got, .. } = error else {
            return Verdict::Garbage(error);
        };
        let mut partial = false;
        for (index, request) in unanswered.iter().enumerate() {
            if request.unit != got {
                continue;
            }
            match parse_response(buf, got, request.area, request.count) {
                Ok(Parsed::Complete { len, .. }) => return Verdict::Late { len, index },
                Ok(Parsed::Incomplete) => partial = true,
                Err(_) => {}
            }
        }
        if partial {
            Verdict::Partial
        } else {
            Verdict::Garbage(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn with_crc(body: &[u8]) -> Vec<u8> {
        let mut frame = body.to_vec();
        frame.extend(crc16(body).to_le_bytes());
        frame
    }

    #[test]
    fn the_crc_matches_the_specification_example() {
        // Modbus over serial line v1.02, §6.2.2: 02 07 → CRC 0x1241 (sent 41 12).
        assert_eq!(crc16(&[0x02, 0x07]), 0x1241);
        assert_eq!(
            encode_request(1, Area::Holding, 0, 10),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]
        );
    }

    #[test]
    fn a_register_answer_is_complete_only_with_its_crc() {
        let frame = with_crc(&[7, 3, 4, 0x12, 0x34, 0xAB, 0xCD]);
        for cut in 0..frame.len() {
            assert_eq!(
                parse_response(&frame[..cut], 7, Area::Holding, 2).ok(),
                Some(Parsed::Incomplete)
            );
        }
        let mut with_tail = frame.clone();
        with_tail.push(0xFF);
        assert_eq!(
            parse_response(&with_tail, 7, Area::Holding, 2).ok(),
            Some(Parsed::Complete {
                answer: Ok(Response::Registers(vec![0x1234, 0xABCD])),
                len: frame.len()
            })
        );
    }

    #[test]
    fn exceptions_bits_and_every_kind_of_wrong_answer_are_told_apart() {
        let exception = with_crc(&[7, 0x83, 2]);
        assert_eq!(
            parse_response(&exception, 7, Area::Holding, 2).ok(),
            Some(Parsed::Complete {
                answer: Err(ExceptionCode(2)),
                len: 5
            })
        );
        let bits = with_crc(&[7, 1, 2, 0b0000_0101, 0b1]);
        let Ok(Parsed::Complete {
            answer: Ok(Response::Bits(bits)),
            ..
        }) = parse_response(&bits, 7, Area::Coil, 9)
        else {
            panic!("bits not parsed")
        };
        assert_eq!(
            bits,
            [true, false, true, false, false, false, false, false, true]
        );
        assert!(matches!(
            parse_response(&with_crc(&[8, 3, 2, 0, 0]), 7, Area::Holding, 1),
            Err(LinkError::WrongUnit {
                expected: 7,
                got: 8
            })
        ));
        assert!(matches!(
            parse_response(&with_crc(&[7, 4, 2, 0, 0]), 7, Area::Holding, 1),
            Err(LinkError::WrongFunction { .. })
        ));
        let mut bad = with_crc(&[7, 3, 2, 0, 0]);
        bad[3] ^= 1;
        assert!(matches!(
            parse_response(&bad, 7, Area::Holding, 1),
            Err(LinkError::BadCrc { .. })
        ));
        assert!(matches!(
            parse_response(&with_crc(&[7, 3, 2, 0, 0]), 7, Area::Holding, 2),
            Err(LinkError::ShortResponse {
                expected: 2,
                got: 1
            })
        ));
        assert!(matches!(
            parse_response(&with_crc(&[7, 1, 1, 0]), 7, Area::Coil, 9),
            Err(LinkError::ShortResponse {
                expected: 9,
                got: 8
            })
        ));
    }

    #[test]
    fn the_line_tells_a_late_reply_from_the_answer_and_from_garbage() {
        let asked = RtuRequest {
            unit: 2,
            area: Area::Holding,
            count: 1,
        };
        let late = RtuRequest {
            unit: 1,
            area: Area::Holding,
            count: 2,
        };
        let mut buf = with_crc(&[1, 3, 4, 0, 1, 0, 2]);
        let late_len = buf.len();
        buf.extend(with_crc(&[2, 3, 2, 0x12, 0x34]));
        assert!(matches!(
            RtuFraming::classify(&buf, &asked, &[&late]),
            Verdict::Late { len, index: 0 } if len == late_len
        ));
        assert!(matches!(
            RtuFraming::classify(&buf[late_len..], &asked, &[&late]),
            Verdict::Answer { answer: Ok(Response::Registers(words)), len: 7 } if words == [0x1234]
        ));
        // Part of the late reply: wait for the rest.
        assert!(matches!(
            RtuFraming::classify(&buf[..4], &asked, &[&late]),
            Verdict::Partial
        ));
        // Another unit's frame that answers no unanswered request: garbage.
        assert!(matches!(
            RtuFraming::classify(&buf, &asked, &[]),
            Verdict::Garbage(LinkError::WrongUnit {
                expected: 2,
                got: 1
            })
        ));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics_and_never_overreads(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            unit in any::<u8>(),
            count in any::<u16>(),
            bits in any::<bool>(),
        ) {
            let area = if bits { Area::Coil } else { Area::Input };
            if let Ok(Parsed::Complete { len, .. }) = parse_response(&bytes, unit, area, count) {
                prop_assert!(len <= bytes.len());
            }
        }

        #[test]
        fn a_well_formed_register_answer_reads_back(
            unit in any::<u8>(),
            words in proptest::collection::vec(any::<u16>(), 1..125),
        ) {
            let mut body = vec![unit, 4, u8::try_from(words.len() * 2).unwrap()];
            body.extend(words.iter().flat_map(|w| w.to_be_bytes()));
            let frame = with_crc(&body);
            let count = u16::try_from(words.len()).unwrap();
            prop_assert_eq!(
                parse_response(&frame, unit, Area::Input, count).ok(),
                Some(Parsed::Complete { answer: Ok(Response::Registers(words)), len: frame.len() })
            );
        }
    }
}
