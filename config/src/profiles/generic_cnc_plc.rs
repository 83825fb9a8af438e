//! `generic-cnc-plc`: spindle's own register layout for a CNC machine behind a
//! PLC or protocol converter (Modbus TCP server, holding registers).
//!
//! Source: this file and docs/PROFILES.md define the layout; the codes are
//! FANUC's FOCAS status codes (`cnc_statinfo`: `run`, `aut`, `emergency`,
//! `alarm`; parameters 6711/6712 for part counts), as collected in DOMAIN.md
//! §5, so a converter reading a FANUC control can copy values through
//! unchanged. Integrators of other controls (SINUMERIK `progStatus` /
//! `opMode`, stack lights and part pulses on a PLC) translate into the same
//! codes.
//!
//! The block is 16 holding registers (function code 03) from `base_address`
//! (option, default 0); 32-bit values use the `word_order` option (default
//! "ABCD", high word first):
//!
//! | offset | point            | type | meaning |
//! | ------ | ---------------- | ---- | ------- |
//! | 0      | `run_state`      | u16  | 0 RESET, 1 STOP, 2 HOLD (feed hold), 3 START (running a program), 4 MSTR (manual numeric command running) |
//! | 1      | `mode`           | u16  | 0 MDI, 1 MEM (automatic), 3 EDIT, 4 HANDLE, 5 JOG, 9 REF, 10 REMOTE (tape/DNC); others as FANUC `aut` |
//! | 2      | `auto_mode`      | bool | register ≠ 0 while the machine runs under program control (FANUC: mode MEM or REMOTE) |
//! | 3      | `alarm`          | u16  | 0 no alarm; otherwise the active alarm number (or 1 when the control gives none) |
//! | 4      | `emergency`      | bool | register ≠ 0 while the emergency stop is pressed |
//! | 5      | `spindle_load`   | u16  | spindle load in % of rated (may exceed 100) |
//! | 6–7    | —                |      | reserved, read as part of the block (keep 0) |
//! | 8–9    | `part_count`     | u32  | machined parts (FANUC parameter 6711); operators reset it — a counter, resets are handled |
//! | 10–11  | `part_total`     | u32  | total parts (FANUC parameter 6712); a counter |
//! | 12–13  | `program_number` | u32  | running main program number (O-number) |
//! | 14–15  | —                |      | reserved |
//!
//! Equipment wiring: `running = { point = "run_state", values = [3] }` (add 4
//! to count manual numeric-command running), `cnc_mode = { point = "auto_mode" }`.
//! A point the converter does not serve is removed by not reading it: replace
//! it with a `[[device.point]]` of the same name at an address the converter
//! answers, or use individual points instead of the profile.

use std::collections::BTreeMap;

use super::{OptionError, OptionSpec, Profile, choice, counter, register};
use crate::model::{Area, Point, ProfileOption, ValueType, WordOrder};

pub(super) static PROFILE: Profile = Profile {
    name: "generic-cnc-plc",
    title: "Generic CNC machine behind a PLC or converter (FANUC-style codes, holding registers)",
    source: "spindle's own layout (docs/PROFILES.md), codes from FANUC FOCAS cnc_statinfo and parameters 6711/6712 (DOMAIN.md §5)",
    options: &[
        OptionSpec {
            name: "base_address",
            description: "address of the block's first register (0-based; integer or \"0x...\" string)",
            default: "0",
        },
        OptionSpec {
            name: "word_order",
            description: "order of the 32-bit values: \"ABCD\" (high word first), \"CDAB\", \"BADC\" or \"DCBA\"",
            default: "\"ABCD\"",
        },
    ],
    max_registers: None,
    di: &[],
    build,
};

/// Registers the block occupies.
const BLOCK_LENGTH: u16 = 16;

const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

fn base_address(options: &BTreeMap<String, ProfileOption>) -> Result<u16, OptionError> {
    let last = u16::MAX - (BLOCK_LENGTH - 1);
    let address = match options.get("base_address") {
        None => Some(0),
        Some(ProfileOption::Integer(value)) => u16::try_from(*value).ok(),
        Some(ProfileOption::String(text)) => text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .and_then(|hex| u16::from_str_radix(hex, 16).ok()),
        Some(_) => None,
    };
    address
        .filter(|address| *address <= last)
        .ok_or_else(|| OptionError {
            option: "base_address".to_owned(),
            message: format!(
                "option `base_address` must be an address from 0 to {last} (the block is {BLOCK_LENGTH} registers)"
            ),
        })
}

fn word_order(options: &BTreeMap<String, ProfileOption>) -> Result<WordOrder, OptionError> {
    choice(options, "word_order", &ORDERS).map(|order| match order {
        "CDAB" => WordOrder::Cdab,
        "BADC" => WordOrder::Badc,
        "DCBA" => WordOrder::Dcba,
        _ => WordOrder::Abcd,
    })
}

fn build(options: &BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>> {
    let (base, order) = match (base_address(options), word_order(options)) {
        (Ok(base), Ok(order)) => (base, order),
        (base, order) => return Err([base.err(), order.err()].into_iter().flatten().collect()),
    };
    // `base` leaves room for the whole block, so offsets cannot overflow.
    let at = |offset: u16| base.saturating_add(offset);
    let holding = |name: &str, offset: u16, value_type: ValueType, unit: &str| {
        let point = register(name, Area::Holding, at(offset), value_type, 1.0, unit);
        if matches!(value_type, ValueType::U32) {
            Point { order, ..point }
        } else {
            point
        }
    };
    Ok(vec![
        holding("run_state", 0, ValueType::U16, ""),
        holding("mode", 1, ValueType::U16, ""),
        holding("auto_mode", 2, ValueType::Bool, ""),
        holding("alarm", 3, ValueType::U16, ""),
        holding("emergency", 4, ValueType::Bool, ""),
        holding("spindle_load", 5, ValueType::U16, "%"),
        counter(holding("part_count", 8, ValueType::U32, "piece")),
        counter(holding("part_total", 10, ValueType::U32, "piece")),
        holding("program_number", 12, ValueType::U32, ""),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_address_moves_the_whole_block_and_word_order_applies_to_32_bit_values() {
        let options = BTreeMap::from([
            (
                "base_address".to_owned(),
                ProfileOption::String("0x0100".into()),
            ),
            (
                "word_order".to_owned(),
                ProfileOption::String("cdab".into()),
            ),
        ]);
        let points = PROFILE.points(&options).unwrap();
        let run = points.iter().find(|p| p.name == "run_state").unwrap();
        let parts = points.iter().find(|p| p.name == "part_count").unwrap();
        assert_eq!((run.address, run.order), (0x0100, WordOrder::Abcd));
        assert_eq!((parts.address, parts.order), (0x0108, WordOrder::Cdab));
        assert!(parts.counter);
    }

    #[test]
    fn a_base_address_that_pushes_the_block_past_the_address_space_is_refused() {
        let last = i64::from(u16::MAX - 15);
        let ok = BTreeMap::from([("base_address".to_owned(), ProfileOption::Integer(last))]);
        let points = PROFILE.points(&ok).unwrap();
        assert!(
            points
                .iter()
                .all(|p| u32::from(p.address) + u32::from(p.width()) <= 65_536)
        );
        for bad in [last + 1, -1] {
            let options =
                BTreeMap::from([("base_address".to_owned(), ProfileOption::Integer(bad))]);
            let errors = PROFILE.points(&options).unwrap_err();
            assert_eq!(errors[0].option, "base_address");
        }
    }
}
