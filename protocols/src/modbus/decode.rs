//! Registers and bits ↔ typed, scaled point values. Pure: no I/O.
//!
//! [`decode_point`] turns the registers a point occupies into a [`Decoded`]:
//! the raw value as the device holds it (integers kept exact, for counters)
//! and the scaled [`PointValue`] (`raw * scale + offset`, as `f64`).
//! [`decode_bit`] does the same for a coil or discrete input.
//! [`encode_point`] / [`encode_bit`] are the inverse (used by the simulator).
//!
//! Rules (the contract of this module):
//! * `words` starts at the point's address and must hold at least
//!   `point.width()` registers; extra registers are ignored.
//! * Word orders apply to 32- and 64-bit types as documented on
//!   [`WordOrder`]: the wire registers are put into big-endian order by
//!   reversing the registers (`CDAB`), swapping the bytes of each register
//!   (`BADC`), or both (`DCBA`). The transform is its own inverse, so encoding
//!   uses it too. 16-bit types and strings ignore the order.
//! * `bool` comes from a coil/discrete bit, from `bit` n (0 = least
//!   significant) of a register, or, without `bit`, is "register ≠ 0".
//!   Bools are not scaled.
//! * Strings: `length` registers, two bytes per register, high byte first;
//!   the text ends at the first NUL, trailing spaces are trimmed. Bytes that
//!   are not UTF-8 are a [`DecodeError::NotUtf8`] (we never publish text
//!   with replacement characters the device did not send).
//! * A NaN or infinite value, from the device (floats) or after scaling, is a
//!   [`DecodeError::NotFinite`], never a number.

use spindle_config::model::{Point, ValueType, WordOrder};
use thiserror::Error;

/// A value as the device holds it, before scale and offset.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Bool(bool),
    /// u16, u32, u64.
    Unsigned(u64),
    /// i16, i32, i64.
    Signed(i64),
    /// f32 (widened exactly) and f64.
    Float(f64),
    Text(String),
}

/// A point's value as published: scaled numbers, bools, text.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// One decoded point.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub raw: RawValue,
    pub value: PointValue,
    /// The registers it was decoded from, when it came from at most four
    /// (every numeric type; not a string, not a bit): kept by the poller
    /// for the status page, without allocating.
    pub registers: Option<Registers>,
}

/// Up to four registers, inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registers {
    words: [u16; 4],
    len: u8,
}

impl Registers {
    /// The first `n` of `words`, when `n` is 1 to 4 and that many are there.
    pub fn first(words: &[u16], n: usize) -> Option<Self> {
        let taken = words.get(..n).filter(|w| (1..=4).contains(&w.len()))?;
        let mut out = Registers::default();
        for (slot, word) in out.words.iter_mut().zip(taken) {
            *slot = *word;
        }
        out.len = u8::try_from(taken.len()).ok()?;
        Some(out)
    }

    pub fn as_slice(&self) -> &[u16] {
        self.words.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Registers that do not make a value for the point.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{needed} registers needed, {got} given")]
    TooFewRegisters { needed: u16, got: usize },
    #[error("the value is NaN or infinite")]
    NotFinite,
    #[error("the text is not UTF-8")]
    NotUtf8,
    #[error("bit {0} does not exist in a 16-bit register")]
    NoSuchBit(u8),
    #[error("a {value_type} point cannot be read from the {area} area")]
    AreaMismatch {
        value_type: &'static str,
        area: &'static str,
    },
}

/// A value that cannot be written as the point's type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("a {value_type} point cannot hold this value")]
    WrongKind { value_type: &'static str },
    #[error("the value does not fit in {value_type}")]
    OutOfRange { value_type: &'static str },
    #[error("{needed} registers needed, {got} given")]
    TooFewRegisters { needed: u16, got: usize },
    #[error("the text needs more than {registers} registers")]
    TextTooLong { registers: u16 },
    #[error("bit {0} does not exist in a 16-bit register")]
    NoSuchBit(u8),
    #[error("a {value_type} point cannot be written to the {area} area")]
    AreaMismatch {
        value_type: &'static str,
        area: &'static str,
    },
}

/// Decode a register point from `words`, which start at `point.address`.
pub fn decode_point(point: &Point, words: &[u16]) -> Result<Decoded, DecodeError> {
    if point.area.is_bit() {
        return Err(DecodeError::AreaMismatch {
            value_type: point.value_type.as_str(),
            area: point.area.as_str(),
        });
    }
    let width = point.width();
    let words = words
        .get(..usize::from(width))
        .ok_or(DecodeError::TooFewRegisters {
            needed: width,
            got: words.len(),
        })?;
    let raw = match point.value_type {
        ValueType::Bool => {
            let word = words.first().copied().unwrap_or_default();
            match point.bit {
                None => RawValue::Bool(word != 0),
                Some(bit) if bit < 16 => RawValue::Bool(word >> bit & 1 == 1),
                Some(bit) => return Err(DecodeError::NoSuchBit(bit)),
            }
        }
        ValueType::String => RawValue::Text(decode_text(words)?),
        ValueType::U16 | ValueType::I16 | ValueType::U32 | ValueType::I32 => {
            let bits = integer_bits(words, point.order);
            match point.value_type {
                ValueType::U16 | ValueType::U32 => RawValue::Unsigned(bits),
                ValueType::I16 => RawValue::Signed(sign_extend(bits, 16)),
                _ => RawValue::Signed(sign_extend(bits, 32)),
            }
        }
        ValueType::U64 => RawValue::Unsigned(integer_bits(words, point.order)),
        ValueType::I64 => RawValue::Signed(sign_extend(integer_bits(words, point.order), 64)),
        ValueType::F32 => {
            let bits = u32::try_from(integer_bits(words, point.order)).unwrap_or(u32::MAX);
            RawValue::Float(f64::from(f32::from_bits(bits)))
        }
        ValueType::F64 => RawValue::Float(f64::from_bits(integer_bits(words, point.order))),
    };
    finish(point, raw)
}

/// Decode a coil or discrete input point from its bit.
pub fn decode_bit(point: &Point, bit: bool) -> Result<Decoded, DecodeError> {
    if !point.area.is_bit() || point.value_type != ValueType::Bool {
        return Err(DecodeError::AreaMismatch {
            value_type: point.value_type.as_str(),
            area: point.area.as_str(),
        });
    }
    finish(point, RawValue::Bool(bit))
}

/// Scale a raw value into the published value.
fn finish(point: &Point, raw: RawValue) -> Result<Decoded, DecodeError> {
    #[allow(clippy::cast_precision_loss)] // counters keep the exact raw value beside it
    let number = match &raw {
        RawValue::Bool(value) => {
            return Ok(Decoded {
                value: PointValue::Bool(*value),
                raw,
                registers: None,
            });
        }
        RawValue::Text(text) => {
            return Ok(Decoded {
                value: PointValue::Text(text.clone()),
                raw,
                registers: None,
            });
        }
        RawValue::Unsigned(value) => *value as f64,
        RawValue::Signed(value) => *value as f64,
        RawValue::Float(value) => *value,
    };
    let scaled = number.mul_add(point.scale, point.offset);
    if !number.is_finite() || !scaled.is_finite() {
        return Err(DecodeError::NotFinite);
    }
    Ok(Decoded {
        raw,
        value: PointValue::Number(scaled),
        registers: None,
    })
}

/// The registers of a 32/64-bit value in big-endian (`ABCD`) order; the
/// transform is an involution, so it also turns `ABCD` back into `order`.
fn to_big_endian(words: &[u16], order: WordOrder) -> Vec<u16> {
    if words.len() < 2 {
        return words.to_vec();
    }
    let mut out = words.to_vec();
    if matches!(order, WordOrder::Cdab | WordOrder::Dcba) {
        out.reverse();
    }
    if matches!(order, WordOrder::Badc | WordOrder::Dcba) {
        for word in &mut out {
            *word = word.swap_bytes();
        }
    }
    out
}

/// The bits of a 1-, 2- or 4-register integer or float.
fn integer_bits(words: &[u16], order: WordOrder) -> u64 {
    to_big_endian(words, order)
        .iter()
        .fold(0_u64, |acc, word| acc << 16 | u64::from(*word))
}

/// Sign-extend the low `bits` bits of `value`.
#[allow(clippy::cast_possible_wrap)] // reinterpreting two's complement is the point
fn sign_extend(value: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value << shift) as i64) >> shift
}

fn decode_text(words: &[u16]) -> Result<String, DecodeError> {
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_be_bytes()).collect();
    let end = bytes
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(bytes.len());
    let text = std::str::from_utf8(bytes.get(..end).unwrap_or_default())
        .map_err(|_| DecodeError::NotUtf8)?;
    Ok(text.trim_end_matches([' ', '\0']).to_owned())
}

/// Write `raw` into `into`, the registers starting at `point.address`
/// (at least `point.width()` of them). A bool with `bit` sets or clears only
/// that bit; every other type overwrites its registers. Strings are padded
/// with NULs.
pub fn encode_point(point: &Point, raw: &RawValue, into: &mut [u16]) -> Result<(), EncodeError> {
    let value_type = point.value_type.as_str();
    if point.area.is_bit() {
        return Err(EncodeError::AreaMismatch {
            value_type,
            area: point.area.as_str(),
        });
    }
    let width = point.width();
    let got = into.len();
    let into = into
        .get_mut(..usize::from(width))
        .ok_or(EncodeError::TooFewRegisters { needed: width, got })?;
    let wrong_kind = EncodeError::WrongKind { value_type };
    let out_of_range = EncodeError::OutOfRange { value_type };
    let bits: u64 = match (point.value_type, raw) {
        (ValueType::Bool, RawValue::Bool(value)) => {
            let word = into
                .first_mut()
                .ok_or(EncodeError::TooFewRegisters { needed: width, got })?;
            match point.bit {
                None => *word = u16::from(*value),
                Some(bit) if bit < 16 => {
                    let mask = 1_u16 << bit;
                    *word = if *value { *word | mask } else { *word & !mask };
                }
                Some(bit) => return Err(EncodeError::NoSuchBit(bit)),
            }
            return Ok(());
        }
        (ValueType::String, RawValue::Text(text)) => {
            let bytes = text.as_bytes();
            if bytes.len() > usize::from(width) * 2 {
                return Err(EncodeError::TextTooLong { registers: width });
            }
            for (index, word) in into.iter_mut().enumerate() {
                let high = bytes.get(index * 2).copied().unwrap_or(0);
                let low = bytes.get(index * 2 + 1).copied().unwrap_or(0);
                *word = u16::from_be_bytes([high, low]);
            }
            return Ok(());
        }
        (ValueType::U16, RawValue::Unsigned(v)) => {
            u64::from(u16::try_from(*v).map_err(|_| out_of_range)?)
        }
        (ValueType::U32, RawValue::Unsigned(v)) => {
            u64::from(u32::try_from(*v).map_err(|_| out_of_range)?)
        }
        (ValueType::U64, RawValue::Unsigned(v)) => *v,
        (ValueType::I16, RawValue::Signed(v)) => u64::from(u16::from_be_bytes(
            i16::try_from(*v).map_err(|_| out_of_range)?.to_be_bytes(),
        )),
        (ValueType::I32, RawValue::Signed(v)) => u64::from(u32::from_be_bytes(
            i32::try_from(*v).map_err(|_| out_of_range)?.to_be_bytes(),
        )),
        (ValueType::I64, RawValue::Signed(v)) => u64::from_be_bytes(v.to_be_bytes()),
        (ValueType::F32, RawValue::Float(v)) => {
            #[allow(clippy::cast_possible_truncation)] // f32 points hold f32 values
            let narrow = *v as f32;
            if f64::from(narrow).to_bits() != v.to_bits() && !v.is_nan() {
                return Err(out_of_range);
            }
            u64::from(narrow.to_bits())
        }
        (ValueType::F64, RawValue::Float(v)) => v.to_bits(),
        _ => return Err(wrong_kind),
    };
    // Big-endian registers of the value, most significant first, then into `order`.
    let big_endian: Vec<u16> = (0..width)
        .rev()
        .map(|index| {
            let shift = u32::from(index) * 16;
            u16::try_from(bits.checked_shr(shift).unwrap_or(0) & 0xFFFF).unwrap_or(0)
        })
        .collect();
    for (slot, word) in into.iter_mut().zip(to_big_endian(&big_endian, point.order)) {
        *slot = word;
    }
    Ok(())
}

/// The bit a coil or discrete input point holds for `raw`.
pub fn encode_bit(point: &Point, raw: &RawValue) -> Result<bool, EncodeError> {
    let value_type = point.value_type.as_str();
    if !point.area.is_bit() {
        return Err(EncodeError::AreaMismatch {
            value_type,
            area: point.area.as_str(),
        });
    }
    match raw {
        RawValue::Bool(value) if point.value_type == ValueType::Bool => Ok(*value),
        _ => Err(EncodeError::WrongKind { value_type }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::num::NonZeroU16;

    use proptest::prelude::*;

    use spindle_config::model::Area;

    use super::*;

    pub(crate) fn point(area: Area, value_type: ValueType, order: WordOrder) -> Point {
        Point {
            name: "p".into(),
            area,
            address: 0,
            value_type,
            order,
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

    fn holding(value_type: ValueType, order: WordOrder) -> Point {
        point(Area::Holding, value_type, order)
    }

    #[test]
    fn f32_in_every_word_order_reads_the_same_value() {
        // 123.456f32 = 0x42F6E979: bytes A=42 B=F6 C=E9 D=79.
        let cases = [
            (WordOrder::Abcd, [0x42F6, 0xE979]),
            (WordOrder::Cdab, [0xE979, 0x42F6]),
            (WordOrder::Badc, [0xF642, 0x79E9]),
            (WordOrder::Dcba, [0x79E9, 0xF642]),
        ];
        for (order, words) in cases {
            let decoded = decode_point(&holding(ValueType::F32, order), &words).unwrap();
            assert_eq!(
                decoded.raw,
                RawValue::Float(f64::from(123.456_f32)),
                "{order:?}"
            );
        }
    }

    #[test]
    fn u64_cdab_reverses_all_four_registers() {
        let words = [0x7788, 0x5566, 0x3344, 0x1122];
        let decoded = decode_point(&holding(ValueType::U64, WordOrder::Cdab), &words).unwrap();
        assert_eq!(decoded.raw, RawValue::Unsigned(0x1122_3344_5566_7788));
        let decoded = decode_point(&holding(ValueType::U64, WordOrder::Badc), &words).unwrap();
        assert_eq!(decoded.raw, RawValue::Unsigned(0x8877_6655_4433_2211));
    }

    #[test]
    fn signed_types_are_sign_extended() {
        let decoded = decode_point(&holding(ValueType::I16, WordOrder::Abcd), &[0xFFFE]).unwrap();
        assert_eq!(decoded.raw, RawValue::Signed(-2));
        let decoded =
            decode_point(&holding(ValueType::I32, WordOrder::Cdab), &[0xFFFF, 0xFFFF]).unwrap();
        assert_eq!(decoded.value, PointValue::Number(-1.0));
    }

    #[test]
    fn scale_and_offset_apply_to_numbers() {
        let mut p = holding(ValueType::U16, WordOrder::Abcd);
        p.scale = 0.1;
        p.offset = -40.0;
        let decoded = decode_point(&p, &[650]).unwrap();
        assert_eq!(decoded.raw, RawValue::Unsigned(650));
        let PointValue::Number(value) = decoded.value else {
            panic!("not a number")
        };
        assert!((value - 25.0).abs() < 1e-9);
    }

    #[test]
    fn nan_and_infinity_are_decode_errors() {
        let p = holding(ValueType::F32, WordOrder::Abcd);
        assert_eq!(decode_point(&p, &[0x7FC0, 0]), Err(DecodeError::NotFinite));
        assert_eq!(decode_point(&p, &[0x7F80, 0]), Err(DecodeError::NotFinite));
        let mut p = holding(ValueType::F64, WordOrder::Abcd);
        p.scale = 1e300;
        // 1e300 * 1e300 overflows to infinity after scaling.
        let mut words = [0; 4];
        encode_point(&p, &RawValue::Float(1e300), &mut words).unwrap();
        assert_eq!(decode_point(&p, &words), Err(DecodeError::NotFinite));
    }

    #[test]
    fn bools_come_from_bits_of_registers_and_from_coils() {
        let mut p = holding(ValueType::Bool, WordOrder::Abcd);
        p.bit = Some(3);
        assert_eq!(
            decode_point(&p, &[0b1000]).unwrap().value,
            PointValue::Bool(true)
        );
        assert_eq!(
            decode_point(&p, &[0b0111]).unwrap().value,
            PointValue::Bool(false)
        );
        p.bit = Some(16);
        assert_eq!(decode_point(&p, &[0]), Err(DecodeError::NoSuchBit(16)));
        let coil = point(Area::Coil, ValueType::Bool, WordOrder::Abcd);
        assert_eq!(
            decode_bit(&coil, true).unwrap().value,
            PointValue::Bool(true)
        );
        assert!(decode_point(&coil, &[1]).is_err());
    }

    #[test]
    fn strings_end_at_nul_and_lose_trailing_spaces() {
        let mut p = holding(ValueType::String, WordOrder::Abcd);
        p.length = NonZeroU16::new(4);
        // "AB", "C ", "  ", NUL
        let words = [0x4142, 0x4320, 0x2020, 0x0000];
        assert_eq!(
            decode_point(&p, &words).unwrap().value,
            PointValue::Text("ABC".into())
        );
        let words = [0xFFFE, 0, 0, 0];
        assert_eq!(decode_point(&p, &words), Err(DecodeError::NotUtf8));
    }

    #[test]
    fn too_few_registers_is_an_error_not_a_value() {
        let p = holding(ValueType::U32, WordOrder::Abcd);
        assert_eq!(
            decode_point(&p, &[1]),
            Err(DecodeError::TooFewRegisters { needed: 2, got: 1 })
        );
    }

    fn any_order() -> impl Strategy<Value = WordOrder> {
        prop_oneof![
            Just(WordOrder::Abcd),
            Just(WordOrder::Cdab),
            Just(WordOrder::Badc),
            Just(WordOrder::Dcba)
        ]
    }

    /// A point of any register type and a raw value that type can hold.
    fn any_typed_value() -> impl Strategy<Value = (ValueType, RawValue)> {
        prop_oneof![
            any::<bool>().prop_map(|v| (ValueType::Bool, RawValue::Bool(v))),
            any::<u16>().prop_map(|v| (ValueType::U16, RawValue::Unsigned(v.into()))),
            any::<i16>().prop_map(|v| (ValueType::I16, RawValue::Signed(v.into()))),
            any::<u32>().prop_map(|v| (ValueType::U32, RawValue::Unsigned(v.into()))),
            any::<i32>().prop_map(|v| (ValueType::I32, RawValue::Signed(v.into()))),
            any::<u64>().prop_map(|v| (ValueType::U64, RawValue::Unsigned(v))),
            any::<i64>().prop_map(|v| (ValueType::I64, RawValue::Signed(v))),
            proptest::num::f32::NORMAL
                .prop_map(|v| (ValueType::F32, RawValue::Float(f64::from(v)))),
            proptest::num::f64::NORMAL.prop_map(|v| (ValueType::F64, RawValue::Float(v))),
            "[a-zA-Z0-9 é中-]{0,7}[a-zA-Z0-9]".prop_map(|v| (ValueType::String, RawValue::Text(v))),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_the_raw_value_back(
            (value_type, raw) in any_typed_value(),
            order in any_order(),
            bit in proptest::option::of(0_u8..16),
            background in any::<u16>(),
        ) {
            let mut p = holding(value_type, order);
            p.length = NonZeroU16::new(16);
            if value_type == ValueType::Bool {
                p.bit = bit;
            }
            let mut words = vec![background; usize::from(p.width())];
            encode_point(&p, &raw, &mut words).unwrap();
            let decoded = decode_point(&p, &words).unwrap();
            prop_assert_eq!(decoded.raw, raw);
        }

        #[test]
        fn scaled_value_is_raw_times_scale_plus_offset(
            raw in any::<i32>(),
            order in any_order(),
            scale in -1e6_f64..1e6,
            offset in -1e6_f64..1e6,
        ) {
            let mut p = holding(ValueType::I32, order);
            p.scale = scale;
            p.offset = offset;
            let mut words = [0; 2];
            encode_point(&p, &RawValue::Signed(raw.into()), &mut words).unwrap();
            let decoded = decode_point(&p, &words).unwrap();
            prop_assert_eq!(
                decoded.value,
                PointValue::Number(f64::from(raw).mul_add(scale, offset))
            );
        }

        #[test]
        fn decoding_arbitrary_registers_never_panics_nor_yields_non_finite_numbers(
            value_type in prop_oneof![
                Just(ValueType::Bool), Just(ValueType::U16), Just(ValueType::I16),
                Just(ValueType::U32), Just(ValueType::I32), Just(ValueType::U64),
                Just(ValueType::I64), Just(ValueType::F32), Just(ValueType::F64),
                Just(ValueType::String)
            ],
            order in any_order(),
            bit in proptest::option::of(any::<u8>()),
            length in 0_u16..8,
            scale in any::<f64>(),
            offset in any::<f64>(),
            words in proptest::collection::vec(any::<u16>(), 0..10),
        ) {
            let mut p = holding(value_type, order);
            p.bit = bit;
            p.length = NonZeroU16::new(length);
            p.scale = scale;
            p.offset = offset;
            if let Ok(Decoded { value: PointValue::Number(n), .. }) = decode_point(&p, &words) {
                prop_assert!(n.is_finite());
            }
        }
    }
}
