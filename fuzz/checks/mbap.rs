//! The `mbap` check: parsing arbitrary bytes as the Modbus TCP answer to a
//! read (`spindle_protocols::modbus::mbap::parse_response`) never panics,
//! decides on the bytes it has, and never changes its mind when more
//! arrive:
//!
//! - a complete answer ends within the bytes given, after at least the
//!   header, function and byte count or exception code, exactly where its
//!   length field says; its data are as many values as asked, bits for a
//!   bit area and registers otherwise;
//! - every prefix of the bytes parses to "incomplete" or to the same error
//!   as the whole (an error is final), and every prefix shorter than a
//!   complete answer to "incomplete"; bytes after a complete answer do not
//!   change it.
//!
//! Input: a selector byte (area = low 2 bits), the count asked (u16), the
//! transaction id (u16) and unit id asked, then the bytes received (at most
//! 300 are looked at: an answer is at most 260).

use spindle_config::model::Area;
use spindle_protocols::modbus::mbap::{HEADER_LEN, parse_response};
use spindle_protocols::modbus::rtu::Parsed;
use spindle_protocols::modbus::{LinkError, Response};

use crate::bytes::Bytes;

/// Bytes received that the check looks at.
const MAX_RECEIVED: usize = 300;

/// A parse result in a comparable form (`LinkError` is not `PartialEq`: it
/// may hold an I/O error).
#[derive(Debug, PartialEq)]
enum Outcome {
    Incomplete,
    Complete {
        answer: Result<Response, u8>,
        len: usize,
    },
    Error(String),
}

fn outcome(result: Result<Parsed, LinkError>) -> Outcome {
    match result {
        Ok(Parsed::Incomplete) => Outcome::Incomplete,
        Ok(Parsed::Complete { answer, len }) => Outcome::Complete {
            answer: answer.map_err(|code| code.0),
            len,
        },
        Err(error) => Outcome::Error(error.to_string()),
    }
}

pub(crate) fn check(data: &[u8]) {
    let mut bytes = Bytes(data);
    let area = match bytes.u8() % 4 {
        0 => Area::Holding,
        1 => Area::Input,
        2 => Area::Coil,
        _ => Area::Discrete,
    };
    let count = bytes.u16();
    let transaction = bytes.u16();
    let unit = bytes.u8();
    let received = bytes.0.get(..MAX_RECEIVED).unwrap_or(bytes.0);
    let parse = |buf: &[u8]| outcome(parse_response(buf, transaction, unit, area, count));

    let whole = parse(received);
    if let Outcome::Complete { answer, len } = &whole {
        assert!(
            *len <= received.len(),
            "answer of {len} bytes from {received:?}"
        );
        assert!(
            *len > HEADER_LEN + 1,
            "answer of {len} bytes from {received:?}"
        );
        let length = usize::from(u16::from_be_bytes([received[4], received[5]]));
        assert_eq!(*len, 6 + length, "length field {length}");
        if let Ok(response) = answer {
            assert_eq!(response.len(), usize::from(count));
            assert_eq!(matches!(response, Response::Bits(_)), area.is_bit());
        }
    }
    for cut in 0..received.len() {
        let prefix = parse(&received[..cut]);
        match (&whole, &prefix) {
            (_, Outcome::Incomplete) => {}
            (Outcome::Complete { len, .. }, _) if cut >= *len => {
                assert_eq!(prefix, whole, "{cut} of {received:?}");
            }
            (Outcome::Error(_), Outcome::Error(_)) => {
                assert_eq!(prefix, whole, "{cut} of {received:?}");
            }
            _ => panic!("{cut} bytes of {received:?} give {prefix:?}, all of them {whole:?}"),
        }
    }
}
