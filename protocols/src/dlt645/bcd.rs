//! DL/T 645-2007 value formats: packed BCD, least significant byte first,
//! with a fixed number of decimals, and for signed quantities sign-magnitude
//! (bit 7 of the most significant byte, the last one on the wire, is the
//! sign: 1 = negative). Pure: no I/O.
//!
//! The standard writes a format as its digits (`XXXXXX.XX`: 4 bytes, 2
//! decimals; `XXX.X`: 2 bytes, 1 decimal; `XXX.XXX`: 3 bytes, 3 decimals;
//! `XX.XXXX`: 3 bytes, 4 decimals; `X.XXX`: 2 bytes, 3 decimals; `XX.XX`: 2
//! bytes, 2 decimals; `NNNNNN`: 3 bytes, an integer) — DL/T 645-2007 §6
//! and Appendix A, the data identifier tables. A signed format loses the top
//! bit to the sign, so its most significant digit goes up to 7.
//!
//! A nibble above 9 or a value of the wrong length is a [`BcdError`], never a
//! number (SPEC §5: `decode`).

use std::fmt;

use thiserror::Error;

/// One value format of the standard: `bytes` of packed BCD (2 digits a
/// byte), `decimals` of them after the point, `signed` in sign-magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    pub bytes: u8,
    pub decimals: u8,
    pub signed: bool,
}

impl Format {
    /// `XXXXXX.XX` — energy in kWh / kvarh.
    pub const ENERGY: Format = Format::new(4, 2, false);
    /// `XXXXXX.XX` with the sign bit — combined energies.
    pub const ENERGY_SIGNED: Format = Format::new(4, 2, true);
    /// `XXX.X` — voltage in V, phase angle in degrees.
    pub const VOLTAGE: Format = Format::new(2, 1, false);
    /// `XXX.XXX` with the sign bit — current in A (bit 7: direction).
    pub const CURRENT: Format = Format::new(3, 3, true);
    /// `XX.XXXX` with the sign bit — active/reactive power in kW / kvar.
    pub const POWER: Format = Format::new(3, 4, true);
    /// `XX.XXXX` — apparent power in kVA.
    pub const APPARENT_POWER: Format = Format::new(3, 4, false);
    /// `X.XXX` with the sign bit — power factor.
    pub const POWER_FACTOR: Format = Format::new(2, 3, true);
    /// `XX.XX` — frequency in Hz.
    pub const FREQUENCY: Format = Format::new(2, 2, false);
    /// `XXX.X` with the sign bit — temperature in °C.
    pub const TEMPERATURE: Format = Format::new(2, 1, true);
    /// `NNNNNN` — a ratio (CT, PT).
    pub const RATIO: Format = Format::new(3, 0, false);

    pub const fn new(bytes: u8, decimals: u8, signed: bool) -> Format {
        Format {
            bytes,
            decimals,
            signed,
        }
    }

    /// Digits the format holds (two a byte).
    pub fn digits(self) -> u32 {
        2 * u32::from(self.bytes)
    }

    /// The largest magnitude (in units of the last decimal) it can carry.
    pub fn max_magnitude(self) -> u64 {
        let all = 10_u64.saturating_pow(self.digits()).saturating_sub(1);
        if self.signed {
            // The top digit keeps 3 bits: 0–7.
            let below = 10_u64.saturating_pow(self.digits().saturating_sub(1));
            7 * below + (below - 1)
        } else {
            all
        }
    }
}

impl fmt::Display for Format {
    /// As the standard writes it: `XXX.XXX` (`NNNNNN` for integers), with a
    /// leading `±` when signed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = usize::try_from(self.digits()).unwrap_or(0);
        let decimals = usize::from(self.decimals).min(digits);
        if self.signed {
            f.write_str("±")?;
        }
        if decimals == 0 {
            return f.write_str(&"N".repeat(digits));
        }
        write!(
            f,
            "{}.{}",
            "X".repeat(digits - decimals),
            "X".repeat(decimals)
        )
    }
}

/// A decoded BCD value: `mantissa` × 10^−`decimals`, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bcd {
    pub mantissa: i64,
    pub decimals: u8,
}

impl Bcd {
    /// The value as a number (the nearest `f64`).
    #[allow(clippy::cast_precision_loss)] // ≤ 16 digits: < 2^53 for every format of the table
    pub fn value(self) -> f64 {
        self.mantissa as f64 / 10_f64.powi(i32::from(self.decimals))
    }
}

/// Bytes that are not a value of the format asked for.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BcdError {
    #[error("{got} value bytes, the format {format} takes {expected}")]
    WrongLength {
        format: Format,
        expected: usize,
        got: usize,
    },
    #[error("byte {byte:#04x} at {at} is not BCD")]
    NotBcd { at: usize, byte: u8 },
    #[error("{magnitude} does not fit the format {format}")]
    OutOfRange { format: Format, magnitude: u64 },
}

/// Decode `bytes` (already minus 0x33, least significant byte first) as
/// `format`.
pub fn decode(format: Format, bytes: &[u8]) -> Result<Bcd, BcdError> {
    let expected = usize::from(format.bytes);
    if bytes.len() != expected || expected > 9 {
        return Err(BcdError::WrongLength {
            format,
            expected,
            got: bytes.len(),
        });
    }
    let mut magnitude: i64 = 0;
    let mut negative = false;
    for (at, &byte) in bytes.iter().enumerate().rev() {
        let mut digits = byte;
        if format.signed && at + 1 == expected {
            negative = digits & 0x80 != 0;
            digits &= 0x7F;
        }
        let (high, low) = (digits >> 4, digits & 0x0F);
        if high > 9 || low > 9 {
            return Err(BcdError::NotBcd { at, byte });
        }
        magnitude = magnitude * 100 + i64::from(high) * 10 + i64::from(low);
    }
    Ok(Bcd {
        mantissa: if negative { -magnitude } else { magnitude },
        decimals: format.decimals,
    })
}

/// Encode `mantissa` (in units of the format's last decimal) as `format`,
/// least significant byte first (not yet plus 0x33). A negative value of an
/// unsigned format, or a magnitude the format cannot carry, is an error.
pub fn encode(format: Format, mantissa: i64) -> Result<Vec<u8>, BcdError> {
    let magnitude = mantissa.unsigned_abs();
    if magnitude > format.max_magnitude() || (mantissa < 0 && !format.signed) {
        return Err(BcdError::OutOfRange { format, magnitude });
    }
    let mut rest = magnitude;
    let mut bytes = Vec::with_capacity(usize::from(format.bytes));
    for _ in 0..format.bytes {
        let pair = rest % 100;
        rest /= 100;
        // `pair` < 100: both digits fit a nibble.
        let byte = u8::try_from(((pair / 10) << 4) | (pair % 10)).unwrap_or(0);
        bytes.push(byte);
    }
    if format.signed
        && mantissa < 0
        && let Some(top) = bytes.last_mut()
    {
        *top |= 0x80;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALL: [Format; 10] = [
        Format::ENERGY,
        Format::ENERGY_SIGNED,
        Format::VOLTAGE,
        Format::CURRENT,
        Format::POWER,
        Format::APPARENT_POWER,
        Format::POWER_FACTOR,
        Format::FREQUENCY,
        Format::TEMPERATURE,
        Format::RATIO,
    ];

    #[test]
    fn formats_print_as_the_standard_writes_them() {
        assert_eq!(Format::ENERGY.to_string(), "XXXXXX.XX");
        assert_eq!(Format::VOLTAGE.to_string(), "XXX.X");
        assert_eq!(Format::CURRENT.to_string(), "±XXX.XXX");
        assert_eq!(Format::POWER.to_string(), "±XX.XXXX");
        assert_eq!(Format::POWER_FACTOR.to_string(), "±X.XXX");
        assert_eq!(Format::FREQUENCY.to_string(), "XX.XX");
        assert_eq!(Format::RATIO.to_string(), "NNNNNN");
    }

    #[test]
    fn the_published_examples_decode() {
        // Forward active total 1206.42 kWh: data bytes 75 39 45 33 minus 0x33.
        let energy = decode(Format::ENERGY, &[0x42, 0x06, 0x12, 0x00]).unwrap();
        assert_eq!(energy.mantissa, 120_642);
        assert!((energy.value() - 1206.42).abs() < 1e-9);
        // Phase-A voltage 100.1 V: 01 10.
        let volts = decode(Format::VOLTAGE, &[0x01, 0x10]).unwrap();
        assert!((volts.value() - 100.1).abs() < 1e-9);
        // Frequency 49.98 Hz, power factor −0.985, power −1.2345 kW.
        assert!((decode(Format::FREQUENCY, &[0x98, 0x49]).unwrap().value() - 49.98).abs() < 1e-9);
        assert_eq!(
            decode(Format::POWER_FACTOR, &[0x85, 0x89])
                .unwrap()
                .mantissa,
            -985
        );
        assert_eq!(
            decode(Format::POWER, &[0x45, 0x23, 0x81]).unwrap().mantissa,
            -12_345
        );
    }

    #[test]
    fn the_sign_bit_is_only_a_sign_in_signed_formats() {
        // 0x80 in the top byte: −0.000 A for a current, the digits 80 for an
        // unsigned format.
        assert_eq!(
            decode(Format::CURRENT, &[0x00, 0x00, 0x80])
                .unwrap()
                .mantissa,
            0
        );
        assert_eq!(
            decode(Format::APPARENT_POWER, &[0x00, 0x00, 0x80])
                .unwrap()
                .mantissa,
            800_000
        );
        assert!(matches!(
            decode(Format::CURRENT, &[0x00, 0x00, 0x8A]),
            Err(BcdError::NotBcd { at: 2, byte: 0x8A })
        ));
        assert_eq!(
            decode(Format::CURRENT, &[0x99, 0x99, 0xF9])
                .unwrap()
                .mantissa,
            -799_999
        );
        assert_eq!(Format::CURRENT.max_magnitude(), 799_999);
        assert!(encode(Format::CURRENT, 800_000).is_err());
        assert!(encode(Format::VOLTAGE, -1).is_err());
    }

    #[test]
    fn a_non_bcd_nibble_or_a_wrong_length_is_never_a_number() {
        assert_eq!(
            decode(Format::VOLTAGE, &[0x0A, 0x22]),
            Err(BcdError::NotBcd { at: 0, byte: 0x0A })
        );
        assert_eq!(
            decode(Format::VOLTAGE, &[0x22, 0xA0]),
            Err(BcdError::NotBcd { at: 1, byte: 0xA0 })
        );
        assert!(matches!(
            decode(Format::VOLTAGE, &[0x22]),
            Err(BcdError::WrongLength {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            decode(Format::ENERGY, &[0; 5]),
            Err(BcdError::WrongLength { .. })
        ));
    }

    fn format_and_mantissa() -> impl Strategy<Value = (Format, i64)> {
        proptest::sample::select(ALL.to_vec()).prop_flat_map(|format| {
            let max = i64::try_from(format.max_magnitude()).unwrap();
            let min = if format.signed { -max } else { 0 };
            (Just(format), min..=max)
        })
    }

    proptest! {
        #[test]
        fn every_format_round_trips((format, mantissa) in format_and_mantissa()) {
            let bytes = encode(format, mantissa).unwrap();
            prop_assert_eq!(bytes.len(), usize::from(format.bytes));
            let back = decode(format, &bytes).unwrap();
            prop_assert_eq!(back.mantissa, mantissa);
            prop_assert_eq!(back.decimals, format.decimals);
        }

        #[test]
        fn any_bytes_decode_to_a_value_in_range_or_an_error(
            format in proptest::sample::select(ALL.to_vec()),
            bytes in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            match decode(format, &bytes) {
                Ok(value) => {
                    prop_assert!(value.mantissa.unsigned_abs() <= format.max_magnitude());
                    prop_assert!(format.signed || value.mantissa >= 0);
                    // Decoding is exact: a canonical value encodes back to the same bytes
                    // (except −0, which encodes without its sign).
                    if value.mantissa != 0 {
                        prop_assert_eq!(encode(format, value.mantissa).unwrap(), bytes);
                    }
                }
                Err(BcdError::WrongLength { .. }) => {
                    prop_assert_ne!(bytes.len(), usize::from(format.bytes));
                }
                Err(BcdError::NotBcd { at, byte }) => {
                    prop_assert_eq!(bytes.get(at), Some(&byte));
                }
                Err(BcdError::OutOfRange { .. }) => prop_assert!(false, "decode never says out of range"),
            }
        }
    }
}
