//! Acrel ADL400 three-phase DIN-rail multifunction meter (Modbus RTU).
//!
//! Source: Acrel "ADL400 导轨式多功能电能表 安装使用说明书" (installation and
//! operation manual), MODBUS-RTU address table, as collected in DOMAIN.md §4
//! (confidence M); phase powers 0x0164/6/8 (i32, beside the total at 0x016A)
//! and the 0.01 A current scale agree with public ADL400-D integration tests.
//! All registers are holding registers (function code 03), high word first.
//!
//! The meter has two register blocks, picked with the `block` option:
//!
//! * `"secondary"` (default): integers as measured on the meter's terminals,
//!   i.e. on the secondary side of its transformers — voltages 0x0061–63
//!   (u16 × 0.1 V), currents 0x0064–66 (u16 × 0.01 A), frequency 0x0077
//!   (u16 × 0.01 Hz), active powers 0x0164/6/8 and total 0x016A (i32 in W,
//!   the manual's 0.001 kW), power factor 0x017F (i16 × 0.001), forward
//!   (import) active energy 0x000A (u32 × 0.01 kWh). The profile multiplies
//!   by the `ct_ratio` and `pt_ratio` options, so values come out
//!   primary-side: currents × CT, voltages × PT, power and energy × CT × PT.
//! * `"primary"`: float32 values the meter has already multiplied by its own
//!   ratio settings — voltages 0x0800/2/4 (V), currents 0x080C/E/0x0810 (A),
//!   total active power 0x081A (kW, published in W), power factor 0x0832,
//!   frequency 0x0834 (Hz), import energy 0x084C (u32 × 0.1 kWh). Here the
//!   ratio options are refused: applying them again would be a 20–200× error.
//!   A meter that answers this block with an exception does not have it:
//!   use the secondary block.
//!
//! Not mapped, because our sources disagree or are single: the combined
//! energy at 0x0000 (its sign convention is a meter setting), reverse
//! (export) energy, and per-phase powers of the primary block. Serial
//! defaults are unverified (9600 baud; 8N1 or 8E1 depending on the batch).

use std::collections::BTreeMap;

use super::{
    CT_RATIO, OptionError, OptionSpec, PT_RATIO, Profile, choice, counter, ratios, register,
};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static PROFILE: Profile = Profile {
    name: "acrel-adl400",
    title: "Acrel ADL400 three-phase meter (9600 baud; parity 8N1 or 8E1, check the meter)",
    source: "Acrel ADL400 installation and operation manual, MODBUS-RTU address table (DOMAIN.md §4)",
    options: &[
        OptionSpec {
            name: "block",
            description: "register block: \"secondary\" (integers, × ct_ratio/pt_ratio) or \"primary\" (float32, the meter's own ratios)",
            default: "\"secondary\"",
        },
        CT_RATIO,
        PT_RATIO,
    ],
    max_registers: None,
    di: &[],
    build,
};

const BLOCKS: [&str; 2] = ["secondary", "primary"];

fn build(options: &BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>> {
    let block = choice(options, "block", &BLOCKS);
    let (ct, pt) = ratios(options);
    match (block, ct, pt) {
        (Ok("primary"), Ok(_), Ok(_)) => {
            let refused: Vec<OptionError> = [CT_RATIO.name, PT_RATIO.name]
                .into_iter()
                .filter(|name| options.contains_key(*name))
                .map(|name| OptionError {
                    option: name.to_owned(),
                    message: format!(
                        "option `{name}` applies to block = \"secondary\" only: the primary block already includes the meter's CT/PT ratios"
                    ),
                })
                .collect();
            if refused.is_empty() {
                Ok(primary())
            } else {
                Err(refused)
            }
        }
        (Ok(_), Ok(ct), Ok(pt)) => Ok(secondary(ct, pt)),
        (block, ct, pt) => Err([block.err(), ct.err(), pt.err()]
            .into_iter()
            .flatten()
            .collect()),
    }
}

/// The integer block, scaled to primary-side values with the ratios.
fn secondary(ct: f64, pt: f64) -> Vec<Point> {
    let holding = |name: &str, address: u16, value_type: ValueType, scale: f64, unit: &str| {
        register(name, Area::Holding, address, value_type, scale, unit)
    };
    vec![
        holding("voltage_a", 0x0061, ValueType::U16, 0.1 * pt, "V"),
        holding("voltage_b", 0x0062, ValueType::U16, 0.1 * pt, "V"),
        holding("voltage_c", 0x0063, ValueType::U16, 0.1 * pt, "V"),
        holding("current_a", 0x0064, ValueType::U16, 0.01 * ct, "A"),
        holding("current_b", 0x0065, ValueType::U16, 0.01 * ct, "A"),
        holding("current_c", 0x0066, ValueType::U16, 0.01 * ct, "A"),
        holding("power_a", 0x0164, ValueType::I32, ct * pt, "W"),
        holding("power_b", 0x0166, ValueType::I32, ct * pt, "W"),
        holding("power_c", 0x0168, ValueType::I32, ct * pt, "W"),
        holding("power_total", 0x016A, ValueType::I32, ct * pt, "W"),
        holding("power_factor", 0x017F, ValueType::I16, 0.001, ""),
        holding("frequency", 0x0077, ValueType::U16, 0.01, "Hz"),
        counter(holding(
            "energy_import",
            0x000A,
            ValueType::U32,
            0.01 * ct * pt,
            "kWh",
        )),
    ]
}

/// The float32 block, already primary-side.
fn primary() -> Vec<Point> {
    let f32 = |name: &str, address: u16, scale: f64, unit: &str| {
        register(name, Area::Holding, address, ValueType::F32, scale, unit)
    };
    vec![
        f32("voltage_a", 0x0800, 1.0, "V"),
        f32("voltage_b", 0x0802, 1.0, "V"),
        f32("voltage_c", 0x0804, 1.0, "V"),
        f32("current_a", 0x080C, 1.0, "A"),
        f32("current_b", 0x080E, 1.0, "A"),
        f32("current_c", 0x0810, 1.0, "A"),
        f32("power_total", 0x081A, 1000.0, "W"),
        f32("power_factor", 0x0832, 1.0, ""),
        f32("frequency", 0x0834, 1.0, "Hz"),
        counter(register(
            "energy_import",
            Area::Holding,
            0x084C,
            ValueType::U32,
            0.1,
            "kWh",
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(points: &'a [Point], name: &str) -> &'a Point {
        points.iter().find(|point| point.name == name).unwrap()
    }

    #[test]
    fn the_secondary_block_is_the_default_and_takes_the_ratios() {
        let options = BTreeMap::from([
            ("ct_ratio".to_owned(), ProfileOption::Integer(40)),
            ("pt_ratio".to_owned(), ProfileOption::Integer(100)),
        ]);
        let points = PROFILE.points(&options).unwrap();
        assert_eq!(point(&points, "voltage_a").address, 0x0061);
        assert!((point(&points, "voltage_a").scale - 10.0).abs() < 1e-9);
        assert!((point(&points, "current_a").scale - 0.4).abs() < 1e-12);
        assert!((point(&points, "power_total").scale - 4000.0).abs() < 1e-9);
        assert!((point(&points, "energy_import").scale - 40.0).abs() < 1e-9);
        assert!((point(&points, "power_factor").scale - 0.001).abs() < 1e-15);
    }

    #[test]
    fn the_primary_block_refuses_ratio_options() {
        let options = BTreeMap::from([
            ("block".to_owned(), ProfileOption::String("primary".into())),
            ("ct_ratio".to_owned(), ProfileOption::Integer(40)),
        ]);
        let errors = PROFILE.points(&options).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].option, "ct_ratio");
        let options =
            BTreeMap::from([("block".to_owned(), ProfileOption::String("PRIMARY".into()))]);
        let points = PROFILE.points(&options).unwrap();
        assert_eq!(point(&points, "power_total").address, 0x081A);
    }

    #[test]
    fn an_unknown_block_and_a_bad_ratio_are_both_reported() {
        let options = BTreeMap::from([
            ("block".to_owned(), ProfileOption::String("tertiary".into())),
            ("pt_ratio".to_owned(), ProfileOption::Float(-1.0)),
        ]);
        let errors = PROFILE.points(&options).unwrap_err();
        let names: Vec<_> = errors.iter().map(|error| error.option.as_str()).collect();
        assert_eq!(names, ["block", "pt_ratio"]);
        assert_eq!(
            errors[0].message,
            "option `block` must be one of \"secondary\", \"primary\""
        );
    }
}
