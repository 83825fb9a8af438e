//! CHINT DTSU666 three-phase electronic energy meter (Modbus RTU).
//!
//! Source: CHINT "DTSU666 Three-phase electronic energy meter — user manual",
//! Modbus communication address table (measurements 0x2000–0x2044, float32,
//! function code 03; energy block 0x101E / 0x1028), as collected in DOMAIN.md
//! §4. Firmware variants keep import energy at 0x401E or 0x4000 instead: the
//! `energy_register` option selects it. Readings are secondary-side, so the
//! CT ratio (meter register 0x0006) and PT ratio (0x0007, stored × 0.1) are
//! applied as options: currents × CT, voltages × PT, power and energy × CT × PT.
//! (The Huawei DTSU666-H has a different map and needs its own profile.)
//!
//! Checked against DOMAIN.md §4: holding registers, float32 ABCD; line
//! voltages 0x2000/2/4 and phase voltages 0x2006/8/A × 0.1 V, currents
//! 0x200C/E/0x2010 × 0.001 A, power 0x2012 (total) and 0x2014/6/8 × 0.1 W,
//! power factor 0x202A × 0.001, frequency 0x2044 × 0.01 Hz — all as below.
//! The same addresses and scales appear in public DTSU666 emulators (ratio
//! registers 0x0006 = 1 and 0x0007 = 10, i.e. PT 1.0; frequency 4999 = 49.99 Hz).

use std::collections::BTreeMap;

use super::{CT_RATIO, OptionError, OptionSpec, PT_RATIO, Profile, counter, ratios, register};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static PROFILE: Profile = Profile {
    name: "chint-dtsu666",
    title: "CHINT DTSU666 three-phase meter (9600 8N1, unit 1 by default)",
    source: "CHINT DTSU666 user manual, Modbus address table (DOMAIN.md §4)",
    options: &[
        OptionSpec {
            name: "energy_register",
            description: "import-energy register of the firmware: \"0x101E\", \"0x401E\" or \"0x4000\" (string or integer)",
            default: "\"0x101E\"",
        },
        CT_RATIO,
        PT_RATIO,
    ],
    max_registers: None,
    di: &[],
    build,
};

/// Import-energy registers of known firmware, with the matching export register.
const ENERGY_REGISTERS: [(u16, Option<u16>); 3] = [
    (0x101E, Some(0x1028)),
    (0x401E, Some(0x4028)),
    // The 0x4000 variant's export register is not documented in our sources: add a point.
    (0x4000, None),
];

fn energy_register(
    options: &BTreeMap<String, ProfileOption>,
) -> Result<(u16, Option<u16>), OptionError> {
    let address = match options.get("energy_register") {
        None => Some(0x101E),
        Some(ProfileOption::Integer(value)) => u16::try_from(*value).ok(),
        Some(ProfileOption::String(text)) => text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .and_then(|hex| u16::from_str_radix(hex, 16).ok()),
        Some(_) => None,
    };
    address
        .and_then(|address| {
            ENERGY_REGISTERS
                .into_iter()
                .find(|(import, _)| *import == address)
        })
        .ok_or_else(|| OptionError {
            option: "energy_register".to_owned(),
            message: "option `energy_register` must be one of \"0x101E\", \"0x401E\", \"0x4000\""
                .to_owned(),
        })
}

fn build(options: &BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>> {
    let energy = energy_register(options);
    let (ct, pt) = ratios(options);
    let (Ok((import, export)), Ok(ct), Ok(pt)) = (&energy, &ct, &pt) else {
        return Err([energy.err(), ct.err(), pt.err()]
            .into_iter()
            .flatten()
            .collect());
    };
    let (ct, pt) = (*ct, *pt);
    let f32 = |name: &str, address: u16, scale: f64, unit: &str| {
        register(name, Area::Holding, address, ValueType::F32, scale, unit)
    };
    let mut points = vec![
        f32("voltage_ab", 0x2000, 0.1 * pt, "V"),
        f32("voltage_bc", 0x2002, 0.1 * pt, "V"),
        f32("voltage_ca", 0x2004, 0.1 * pt, "V"),
        f32("voltage_a", 0x2006, 0.1 * pt, "V"),
        f32("voltage_b", 0x2008, 0.1 * pt, "V"),
        f32("voltage_c", 0x200A, 0.1 * pt, "V"),
        f32("current_a", 0x200C, 0.001 * ct, "A"),
        f32("current_b", 0x200E, 0.001 * ct, "A"),
        f32("current_c", 0x2010, 0.001 * ct, "A"),
        f32("power_total", 0x2012, 0.1 * ct * pt, "W"),
        f32("power_a", 0x2014, 0.1 * ct * pt, "W"),
        f32("power_b", 0x2016, 0.1 * ct * pt, "W"),
        f32("power_c", 0x2018, 0.1 * ct * pt, "W"),
        f32("power_factor", 0x202A, 0.001, ""),
        f32("frequency", 0x2044, 0.01, "Hz"),
        counter(f32("energy_import", *import, ct * pt, "kWh")),
    ];
    if let Some(export) = export {
        points.push(counter(f32("energy_export", *export, ct * pt, "kWh")));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(points: &'a [Point], name: &str) -> &'a Point {
        points.iter().find(|point| point.name == name).unwrap()
    }

    #[test]
    fn ct_and_pt_ratios_scale_energy_power_current_and_voltage() {
        let options = BTreeMap::from([
            ("ct_ratio".to_owned(), ProfileOption::Integer(40)),
            ("pt_ratio".to_owned(), ProfileOption::Float(2.0)),
        ]);
        let points = PROFILE.points(&options).unwrap();
        assert!((point(&points, "energy_import").scale - 80.0).abs() < 1e-12);
        assert!((point(&points, "power_total").scale - 8.0).abs() < 1e-12);
        assert!((point(&points, "current_a").scale - 0.04).abs() < 1e-12);
        assert!((point(&points, "voltage_a").scale - 0.2).abs() < 1e-12);
        assert!((point(&points, "frequency").scale - 0.01).abs() < 1e-12);
    }

    #[test]
    fn the_energy_register_option_takes_a_string_or_an_integer() {
        for value in [
            ProfileOption::String("0x401E".into()),
            ProfileOption::Integer(0x401E),
        ] {
            let options = BTreeMap::from([("energy_register".to_owned(), value)]);
            let points = PROFILE.points(&options).unwrap();
            assert_eq!(point(&points, "energy_import").address, 0x401E);
            assert_eq!(point(&points, "energy_export").address, 0x4028);
        }
        let options = BTreeMap::from([(
            "energy_register".to_owned(),
            ProfileOption::String("0x4000".into()),
        )]);
        let points = PROFILE.points(&options).unwrap();
        assert_eq!(point(&points, "energy_import").address, 0x4000);
        assert!(points.iter().all(|point| point.name != "energy_export"));
    }

    #[test]
    fn bad_option_values_are_all_reported() {
        let options = BTreeMap::from([
            (
                "energy_register".to_owned(),
                ProfileOption::String("0x1234".into()),
            ),
            ("ct_ratio".to_owned(), ProfileOption::Integer(0)),
            ("pt_ratio".to_owned(), ProfileOption::String("x".into())),
        ]);
        let errors = PROFILE.points(&options).unwrap_err();
        let options: Vec<_> = errors.iter().map(|error| error.option.as_str()).collect();
        assert_eq!(options, ["energy_register", "ct_ratio", "pt_ratio"]);
    }
}
