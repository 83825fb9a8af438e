//! Modbus TCP (MBAP) client framing for the read functions 1–4. Pure: no I/O.
//!
//! We frame TCP answers ourselves rather than through tokio-modbus's client
//! because its codec cannot tell a bad answer from a lost link: it trusts the
//! MBAP length field and then reads the PDU with a cursor, so an answer whose
//! byte count promises more data than the frame carries comes back as an
//! `UnexpectedEof` I/O error (the same kind as a closed connection), and a
//! length field pointing past the frame makes it wait for bytes that never
//! come, so the request ends as a plain timeout although bytes arrived. With
//! the bytes in hand every inconsistent answer is a typed [`LinkError`] whose
//! word is `decode`, and the transport can tell "nothing arrived" (`timeout`)
//! and "the peer closed before answering" (`disconnected`) apart from
//! "something arrived but it is not the answer" (`decode`).
//!
//! A request is 12 bytes: transaction id (BE), protocol id 0 (BE), length 6
//! (BE: the unit id and the 5 PDU bytes that follow), unit id, function,
//! start (BE), count (BE). An answer is the 7-byte header (transaction id,
//! protocol id, length, unit id) and `length - 1` PDU bytes: function, byte
//! count, data; or function | 0x80 and an exception code.
//!
//! [`parse_response`] looks at the bytes received so far and checks every
//! field as soon as it has arrived: the transaction id must be the request's,
//! the protocol id 0, the length between 3 and 254 and (for a normal answer)
//! exactly 3 more than the byte count (an exception answer: exactly 3), the
//! unit and function those asked, and the values as many as asked
//! ([`Response::from_data`]). It never panics and never reads past the bytes
//! it is given, whatever they are.

use spindle_config::model::Area;

use super::error::{ExceptionCode, LinkError};
use super::rtu::{Parsed, function_code};
use super::transport::Response;

/// Bytes of the MBAP header, unit id included.
pub const HEADER_LEN: usize = 7;

/// Largest value of the length field: the unit id and a PDU of at most 253
/// bytes (the Modbus application protocol's limit, the same for RTU).
const MAX_LENGTH: u16 = 254;

/// The request frame reading `count` values of `area` from `start`.
pub fn encode_request(transaction: u16, unit: u8, area: Area, start: u16, count: u16) -> [u8; 12] {
    let [transaction_hi, transaction_lo] = transaction.to_be_bytes();
    let [start_hi, start_lo] = start.to_be_bytes();
    let [count_hi, count_lo] = count.to_be_bytes();
    [
        transaction_hi,
        transaction_lo,
        0,
        0,
        0,
        6,
        unit,
        function_code(area),
        start_hi,
        start_lo,
        count_hi,
        count_lo,
    ]
}

/// The big-endian `u16` at `at`, if both of its bytes have arrived.
fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let hi = *buf.get(at)?;
    let lo = *buf.get(at + 1)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Parse the answer to request `transaction`, which asked unit `unit` for
/// `count` values of `area`.
///
/// Registers must come back exactly as many as asked; bits at least as many
/// (the padding bits of the last byte are dropped). Bytes after the answer
/// are not looked at: `len` says where it ends.
pub fn parse_response(
    buf: &[u8],
    transaction: u16,
    unit: u8,
    area: Area,
    count: u16,
) -> Result<Parsed, LinkError> {
    let Some(got_transaction) = u16_at(buf, 0) else {
        return Ok(Parsed::Incomplete);
    };
    if got_transaction != transaction {
        return Err(LinkError::Malformed {
            detail: format!("answer to transaction {got_transaction}, {transaction} was sent"),
        });
    }
    let Some(protocol) = u16_at(buf, 2) else {
        return Ok(Parsed::Incomplete);
    };
    if protocol != 0 {
        return Err(LinkError::Malformed {
            detail: format!("protocol id {protocol}, 0 (Modbus) expected"),
        });
    }
    let Some(length) = u16_at(buf, 4) else {
        return Ok(Parsed::Incomplete);
    };
    if !(3..=MAX_LENGTH).contains(&length) {
        return Err(LinkError::Malformed {
            detail: format!("length field {length}, an answer has 3 to {MAX_LENGTH}"),
        });
    }
    let (Some(&got_unit), Some(&got_function)) = (buf.get(6), buf.get(7)) else {
        return Ok(Parsed::Incomplete);
    };
    if got_unit != unit {
        return Err(LinkError::WrongUnit {
            expected: unit,
            got: got_unit,
        });
    }
    let function = function_code(area);
    let frame_len = 6 + usize::from(length);
    if got_function == function | 0x80 {
        if length != 3 {
            return Err(LinkError::Malformed {
                detail: format!("length field {length} for an exception answer, 3 expected"),
            });
        }
        let Some(&code) = buf.get(8) else {
            return Ok(Parsed::Incomplete);
        };
        return Ok(Parsed::Complete {
            answer: Err(ExceptionCode(code)),
            len: frame_len,
        });
    }
    if got_function != function {
        return Err(LinkError::WrongFunction {
            expected: function,
            got: got_function,
        });
    }
    let Some(&byte_count) = buf.get(8) else {
        return Ok(Parsed::Incomplete);
    };
    let carried = usize::from(length) - 3;
    if usize::from(byte_count) != carried {
        return Err(LinkError::Malformed {
            detail: format!(
                "byte count {byte_count}, but the length field leaves {carried} data bytes"
            ),
        });
    }
    let Some(data) = buf.get(HEADER_LEN + 2..frame_len) else {
        return Ok(Parsed::Incomplete);
    };
    Ok(Parsed::Complete {
        answer: Ok(Response::from_data(area, count, data)?),
        len: frame_len,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An answer frame to transaction `transaction` from `unit` with `pdu`.
    fn frame(transaction: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut frame = transaction.to_be_bytes().to_vec();
        frame.extend([0, 0]);
        frame.extend(u16::try_from(pdu.len() + 1).unwrap().to_be_bytes());
        frame.push(unit);
        frame.extend(pdu);
        frame
    }

    #[test]
    fn a_request_is_the_mbap_header_and_the_read_pdu() {
        assert_eq!(
            encode_request(0x0102, 7, Area::Holding, 0x0010, 10),
            [0x01, 0x02, 0, 0, 0, 6, 7, 3, 0x00, 0x10, 0x00, 0x0A]
        );
    }

    #[test]
    fn a_register_answer_is_complete_only_with_its_last_byte() {
        let whole = frame(9, 7, &[3, 4, 0x12, 0x34, 0xAB, 0xCD]);
        for cut in 0..whole.len() {
            assert_eq!(
                parse_response(&whole[..cut], 9, 7, Area::Holding, 2).ok(),
                Some(Parsed::Incomplete),
                "{cut} bytes"
            );
        }
        let mut with_tail = whole.clone();
        with_tail.push(0xFF);
        assert_eq!(
            parse_response(&with_tail, 9, 7, Area::Holding, 2).ok(),
            Some(Parsed::Complete {
                answer: Ok(Response::Registers(vec![0x1234, 0xABCD])),
                len: whole.len()
            })
        );
    }

    #[test]
    fn exceptions_and_bits_read_back() {
        assert_eq!(
            parse_response(&frame(1, 7, &[0x83, 2]), 1, 7, Area::Holding, 2).ok(),
            Some(Parsed::Complete {
                answer: Err(ExceptionCode(2)),
                len: 9
            })
        );
        let Ok(Parsed::Complete {
            answer: Ok(Response::Bits(bits)),
            ..
        }) = parse_response(&frame(1, 7, &[1, 2, 0b101, 1]), 1, 7, Area::Coil, 9)
        else {
            panic!("bits not parsed")
        };
        assert_eq!(
            bits,
            [true, false, true, false, false, false, false, false, true]
        );
    }

    #[test]
    fn every_inconsistent_field_is_a_typed_error_as_soon_as_it_arrives() {
        type Check = fn(&LinkError) -> bool;
        let malformed: Check = |e| matches!(e, LinkError::Malformed { .. });
        let good = frame(5, 7, &[3, 4, 0, 1, 0, 2]);
        let mut length_past_frame = good.clone();
        length_past_frame[5] = 40;
        let mut short_length = good.clone();
        short_length[5] = 2;
        let mut protocol = good.clone();
        protocol[3] = 1;
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            (
                "another transaction",
                frame(6, 7, &[3, 4, 0, 1, 0, 2]),
                malformed,
            ),
            ("another protocol", protocol, malformed),
            ("a length past the frame", length_past_frame, malformed),
            ("a length too small", short_length, malformed),
            (
                "a byte count past the frame",
                frame(5, 7, &[3, 8, 0, 1, 0, 2]),
                malformed,
            ),
            (
                "data past the byte count",
                frame(5, 7, &[3, 4, 0, 1, 0, 2, 0, 3]),
                malformed,
            ),
            (
                "an odd byte count",
                frame(5, 7, &[3, 3, 0, 1, 0]),
                malformed,
            ),
            ("a long exception", frame(5, 7, &[0x83, 2, 0]), malformed),
            ("another unit", frame(5, 8, &[3, 4, 0, 1, 0, 2]), |e| {
                matches!(
                    e,
                    LinkError::WrongUnit {
                        expected: 7,
                        got: 8
                    }
                )
            }),
            ("another function", frame(5, 7, &[4, 4, 0, 1, 0, 2]), |e| {
                matches!(
                    e,
                    LinkError::WrongFunction {
                        expected: 3,
                        got: 4
                    }
                )
            }),
            ("fewer registers", frame(5, 7, &[3, 2, 0, 1]), |e| {
                matches!(
                    e,
                    LinkError::ShortResponse {
                        expected: 2,
                        got: 1
                    }
                )
            }),
            (
                "more registers",
                frame(5, 7, &[3, 6, 0, 1, 0, 2, 0, 3]),
                malformed,
            ),
        ];
        for (case, bytes, expected) in cases {
            // The error shows as soon as its field is there (a bad length
            // before any data byte): no waiting for bytes that never come.
            let decisive = match case {
                "a length too small" => 6,
                "a length past the frame" => 9,
                _ => bytes.len(),
            };
            match parse_response(&bytes[..decisive], 5, 7, Area::Holding, 2) {
                Err(error) => assert!(expected(&error), "{case}: {error}"),
                other => panic!("{case}: {other:?}"),
            }
            assert!(
                parse_response(&bytes, 5, 7, Area::Holding, 2).is_err(),
                "{case}"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics_and_never_overreads(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            transaction in any::<u16>(),
            unit in any::<u8>(),
            count in any::<u16>(),
            bits in any::<bool>(),
        ) {
            let area = if bits { Area::Coil } else { Area::Input };
            if let Ok(Parsed::Complete { len, .. }) =
                parse_response(&bytes, transaction, unit, area, count)
            {
                prop_assert!(len <= bytes.len());
            }
        }

        #[test]
        fn a_well_formed_register_answer_reads_back(
            transaction in any::<u16>(),
            unit in any::<u8>(),
            words in proptest::collection::vec(any::<u16>(), 1..125),
        ) {
            let mut pdu = vec![4, u8::try_from(words.len() * 2).unwrap()];
            pdu.extend(words.iter().flat_map(|w| w.to_be_bytes()));
            let whole = frame(transaction, unit, &pdu);
            let count = u16::try_from(words.len()).unwrap();
            prop_assert_eq!(
                parse_response(&whole, transaction, unit, Area::Input, count).ok(),
                Some(Parsed::Complete { answer: Ok(Response::Registers(words)), len: whole.len() })
            );
        }
    }
}
