//! The built-in table of DL/T 645-2007 data identifiers: format, unit and
//! whether the quantity is a cumulative counter, so a configured point needs
//! only its `di`. Pure data.
//!
//! Source: DL/T 645-2007 Appendix A — Table A.1 (energy: DI3 = 00), Table
//! A.3 (variables: DI3 = 02) and Table A.5 (parameters: DI3 = 04). In the
//! energy identifiers DI2 is the quantity (00 combined active, 01 forward
//! active, 02 reverse active, 03/04 combined reactive 1/2, 05–08 reactive in
//! quadrants I–IV) and DI1 the tariff (00 total, 01–3F tariffs 1–63, FF the
//! block of total and all tariffs); in the variables DI2 is the quantity and
//! DI1 the phase (00 total, 01–03 A–C, FF the block). Combined energies,
//! currents, powers and power factors carry a sign in bit 7 of their most
//! significant byte; apparent power, voltages, frequency and the forward,
//! reverse and quadrant energies do not. The table was checked against the
//! published frame examples and public meter firmware/driver tables (see
//! the module doc of [`super`]).

use thiserror::Error;

use super::bcd::{self, Bcd, BcdError, Format};
use super::frame::Di;

/// What the standard says of one data identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiInfo {
    pub di: Di,
    /// Words of the standard (in English).
    pub name: &'static str,
    pub format: Format,
    pub unit: &'static str,
    /// A cumulative counter (energy).
    pub counter: bool,
}

/// Tariffs the table lists per energy quantity: 1–4, the four of a Chinese
/// time-of-use tariff (sharp, peak, flat, valley — 尖峰平谷 — commonly in
/// that order, but which tariff is which is the meter's configuration).
pub const TARIFFS: u8 = 4;

const ENERGIES: [(u8, &str, &str, bool); 8] = [
    (0x00, "combined active energy", "kWh", true),
    (0x01, "forward active energy", "kWh", false),
    (0x02, "reverse active energy", "kWh", false),
    (0x03, "combined reactive energy 1", "kvarh", true),
    (0x04, "combined reactive energy 2", "kvarh", true),
    (0x05, "quadrant I reactive energy", "kvarh", false),
    (0x06, "quadrant II reactive energy", "kvarh", false),
    (0x07, "quadrant III reactive energy", "kvarh", false),
];
const QUADRANT_IV: (u8, &str, &str, bool) = (0x08, "quadrant IV reactive energy", "kvarh", false);

/// Per-phase variables: DI2, name, format, unit, whether DI1 = 00 (total)
/// exists.
const VARIABLES: [(u8, &str, Format, &str, bool); 7] = [
    (0x01, "voltage", Format::VOLTAGE, "V", false),
    (0x02, "current", Format::CURRENT, "A", false),
    (0x03, "active power", Format::POWER, "kW", true),
    (0x04, "reactive power", Format::POWER, "kvar", true),
    (0x05, "apparent power", Format::APPARENT_POWER, "kVA", true),
    (0x06, "power factor", Format::POWER_FACTOR, "", true),
    (0x07, "phase angle", Format::VOLTAGE, "°", false),
];

/// Single identifiers of the 0280xxxx and parameter groups.
const OTHERS: [(u32, &str, Format, &str); 6] = [
    (0x0280_0001, "neutral current", Format::CURRENT, "A"),
    (0x0280_0002, "frequency", Format::FREQUENCY, "Hz"),
    (
        0x0280_0003,
        "one-minute average active power",
        Format::POWER,
        "kW",
    ),
    (0x0280_0007, "meter temperature", Format::TEMPERATURE, "°C"),
    (0x0400_0306, "current transformer ratio", Format::RATIO, ""),
    (0x0400_0307, "voltage transformer ratio", Format::RATIO, ""),
];

/// The format, unit and name of `di`, for the single identifiers the table
/// knows (blocks are not in it: a block's answer is its members' values in
/// order, see [`block_members`]).
pub fn lookup(di: Di) -> Option<DiInfo> {
    let [di0, di1, di2, di3] = di.0.to_le_bytes();
    match di3 {
        0x00 if di0 == 0x00 && di1 <= TARIFFS => {
            let (_, name, unit, signed) = ENERGIES
                .iter()
                .chain([&QUADRANT_IV])
                .find(|(code, ..)| *code == di2)?;
            Some(DiInfo {
                di,
                name,
                format: if *signed {
                    Format::ENERGY_SIGNED
                } else {
                    Format::ENERGY
                },
                unit,
                counter: true,
            })
        }
        0x02 if di0 == 0x00 && di2 != 0x80 => {
            let (_, name, format, unit, total) =
                VARIABLES.iter().find(|(code, ..)| *code == di2)?;
            let phase_ok = (1..=3).contains(&di1) || (di1 == 0 && *total);
            phase_ok.then_some(DiInfo {
                di,
                name,
                format: *format,
                unit,
                counter: false,
            })
        }
        _ => OTHERS
            .iter()
            .find(|(code, ..)| *code == di.0)
            .map(|(_, name, format, unit)| DiInfo {
                di,
                name,
                format: *format,
                unit,
                counter: false,
            }),
    }
}

/// The single identifiers a block identifier stands for, in the order its
/// answer carries their values: `0201FF00` → A, B, C voltage; `0001FF00` →
/// total and tariffs 1–4 of forward active energy. `None` for a block the
/// table does not know (a meter with more tariffs answers more values:
/// the caller checks the answer's length).
pub fn block_members(di: Di) -> Option<Vec<Di>> {
    let [di0, di1, di2, di3] = di.0.to_le_bytes();
    let members: Vec<Di> = match (di3, di2, di1, di0) {
        (0x00, _, 0xFF, 0x00) => (0..=TARIFFS)
            .map(|tariff| Di(u32::from_le_bytes([0x00, tariff, di2, 0x00])))
            .collect(),
        (0x02, _, 0xFF, 0x00) => {
            let has_total = lookup(Di(u32::from_le_bytes([0x00, 0x00, di2, 0x02]))).is_some();
            let first = u8::from(!has_total);
            (first..=3)
                .map(|phase| Di(u32::from_le_bytes([0x00, phase, di2, 0x02])))
                .collect()
        }
        _ => return None,
    };
    members
        .iter()
        .all(|member| lookup(*member).is_some())
        .then_some(members)
}

/// Value bytes that do not make a value of their identifier (`decode`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("{0} is not in the built-in table of data identifiers")]
    UnknownDi(Di),
    #[error(transparent)]
    Bcd(#[from] BcdError),
}

/// The value of `di` from its value bytes (minus 33H, low byte first).
pub fn decode_value(di: Di, value: &[u8]) -> Result<Bcd, ValueError> {
    let info = lookup(di).ok_or(ValueError::UnknownDi(di))?;
    Ok(bcd::decode(info.format, value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(di: u32) -> DiInfo {
        lookup(Di(di)).unwrap_or_else(|| panic!("{di:08X} not in the table"))
    }

    #[test]
    fn the_identifiers_of_the_issue_have_their_standard_formats() {
        let cases = [
            (0x0000_0000, Format::ENERGY_SIGNED, "kWh", true),
            (0x0001_0000, Format::ENERGY, "kWh", true),
            (0x0001_0400, Format::ENERGY, "kWh", true),
            (0x0002_0000, Format::ENERGY, "kWh", true),
            (0x0201_0100, Format::VOLTAGE, "V", false),
            (0x0202_0100, Format::CURRENT, "A", false),
            (0x0203_0000, Format::POWER, "kW", false),
            (0x0204_0300, Format::POWER, "kvar", false),
            (0x0206_0000, Format::POWER_FACTOR, "", false),
            (0x0280_0002, Format::FREQUENCY, "Hz", false),
        ];
        for (di, format, unit, counter) in cases {
            let info = info(di);
            assert_eq!(info.format, format, "{di:08X}");
            assert_eq!(info.unit, unit, "{di:08X}");
            assert_eq!(info.counter, counter, "{di:08X}");
        }
    }

    #[test]
    fn unknown_identifiers_and_blocks_are_not_single_entries() {
        for di in [
            0x0201_0000, // no total voltage
            0x0201_0400, // no phase D
            0x0201_FF00, // a block
            0x0001_0500, // tariff 5: not listed
            0x0009_0000,
            0x0400_0101, // date: not a number
            0x1234_5678,
        ] {
            assert_eq!(lookup(Di(di)), None, "{di:08X}");
        }
    }

    #[test]
    fn blocks_stand_for_their_members_in_order() {
        assert_eq!(
            block_members(Di(0x0201_FF00)),
            Some(vec![Di(0x0201_0100), Di(0x0201_0200), Di(0x0201_0300)])
        );
        assert_eq!(
            block_members(Di(0x0203_FF00)).map(|members| members.len()),
            Some(4)
        );
        assert_eq!(
            block_members(Di(0x0001_FF00)),
            Some(vec![
                Di(0x0001_0000),
                Di(0x0001_0100),
                Di(0x0001_0200),
                Di(0x0001_0300),
                Di(0x0001_0400)
            ])
        );
        assert_eq!(block_members(Di(0x0201_0100)), None);
    }
}
