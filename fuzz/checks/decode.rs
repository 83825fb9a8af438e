//! The `decode` check: arbitrary registers decoded for an arbitrary point
//! never panic, never give a non-finite number, and what encodes decodes
//! back to itself.
//!
//! Input: a point (`bytes::Bytes::point`), then the registers, two bytes
//! each (big-endian; an odd last byte is the high byte of a last word).

use spindle_protocols::modbus::{PointValue, decode_bit, decode_point, encode_point};

use crate::bytes::Bytes;

pub(crate) fn check(data: &[u8]) {
    let mut bytes = Bytes(data);
    let point = bytes.point();
    let words: Vec<u16> = bytes
        .0
        .chunks(2)
        .map(|pair| {
            u16::from_be_bytes([
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    if let Ok(decoded) = decode_point(&point, &words) {
        if let PointValue::Number(number) = decoded.value {
            assert!(number.is_finite(), "{number} decoded for {point:?}");
        }
        let mut again = words.clone();
        if encode_point(&point, &decoded.raw, &mut again).is_ok() {
            let round = decode_point(&point, &again).expect("an encoded value decodes");
            assert_eq!(round.raw, decoded.raw);
        }
    }
    let _ = decode_bit(&point, data.first().is_some_and(|b| b & 1 == 1));
}
