//! DL/T 645-2007 meters, three-phase and single-phase: the standard's data
//! identifiers (every meter that speaks the protocol answers the same ones),
//! so these profiles fit any make.
//!
//! Source: DL/T 645-2007 Appendix A — Table A.1 (energy, DI3 = 00: DI2 01
//! forward active, 02 reverse active, 03/04 combined reactive 1/2; DI1 00
//! total, 01–04 tariffs 1–4) and Table A.3 (variables, DI3 = 02: DI2 01
//! voltage, 02 current, 03 active power, 04 reactive power, 06 power factor;
//! DI1 00 total, 01–03 phases A–C; 02800002 grid frequency), the same table
//! the protocol crate decodes with (`spindle_protocols::dlt645::table`).
//! Units kept by every profile: energy kWh (kvarh), power W (var): the
//! standard's kW × 1000.
//!
//! Meters on current or voltage transformers whose readings are
//! secondary-side take `ct_ratio` / `pt_ratio` (currents × CT, voltages ×
//! PT, power and energy × CT × PT); a meter that has its ratios set in its
//! own parameters (04000306/04000307) reports primary values: leave both at
//! 1.

use std::collections::BTreeMap;

use super::{CT_RATIO, OptionError, PT_RATIO, Profile, counter, ratios, register};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static THREE_PHASE: Profile = Profile {
    name: "dlt645-three-phase",
    title: "DL/T 645-2007 three-phase meter (any make; 2400 or 9600 8E1 as shipped)",
    source: "DL/T 645-2007 Appendix A, Tables A.1 and A.3",
    options: &[CT_RATIO, PT_RATIO],
    max_registers: None,
    di: &THREE_PHASE_DI,
    build: build_three_phase,
};

pub(super) static SINGLE_PHASE: Profile = Profile {
    name: "dlt645-single-phase",
    title: "DL/T 645-2007 single-phase meter (any make; 2400 8E1 as shipped)",
    source: "DL/T 645-2007 Appendix A, Tables A.1 and A.3",
    options: &[CT_RATIO, PT_RATIO],
    max_registers: None,
    di: &SINGLE_PHASE_DI,
    build: build_single_phase,
};

/// What a point scales with.
#[derive(Clone, Copy)]
enum Ratio {
    None,
    Current,
    Voltage,
    Both,
}

/// One point: name, DI, scale to the profile's unit, unit, ratio, counter.
type Row = (&'static str, u32, f64, &'static str, Ratio, bool);

const ENERGY: [Row; 12] = [
    ("energy_import", 0x0001_0000, 1.0, "kWh", Ratio::Both, true),
    ("energy_import_t1", 0x0001_0100, 1.0, "kWh", Ratio::Both, true),
    ("energy_import_t2", 0x0001_0200, 1.0, "kWh", Ratio::Both, true),
    ("energy_import_t3", 0x0001_0300, 1.0, "kWh", Ratio::Both, true),
    ("energy_import_t4", 0x0001_0400, 1.0, "kWh", Ratio::Both, true),
    ("energy_export", 0x0002_0000, 1.0, "kWh", Ratio::Both, true),
    ("energy_export_t1", 0x0002_0100, 1.0, "kWh", Ratio::Both, true),
    ("energy_export_t2", 0x0002_0200, 1.0, "kWh", Ratio::Both, true),
    ("energy_export_t3", 0x0002_0300, 1.0, "kWh", Ratio::Both, true),
    ("energy_export_t4", 0x0002_0400, 1.0, "kWh", Ratio::Both, true),
    ("reactive_energy_1", 0x0003_0000, 1.0, "kvarh", Ratio::Both, true),
    ("reactive_energy_2", 0x0004_0000, 1.0, "kvarh", Ratio::Both, true),
];

const THREE_PHASE_VARIABLES: [Row; 16] = [
    ("voltage_a", 0x0201_0100, 1.0, "V", Ratio::Voltage, false),
    ("voltage_b", 0x0201_0200, 1.0, "V", Ratio::Voltage, false),
    ("voltage_c", 0x0201_0300, 1.0, "V", Ratio::Voltage, false),
    ("current_a", 0x0202_0100, 1.0, "A", Ratio::Current, false),
    ("current_b", 0x0202_0200, 1.0, "A", Ratio::Current, false),
    ("current_c", 0x0202_0300, 1.0, "A", Ratio::Current, false),
    ("power_total", 0x0203_0000, 1000.0, "W", Ratio::Both, false),
    ("power_a", 0x0203_0100, 1000.0, "W", Ratio::Both, false),
    ("power_b", 0x0203_0200, 1000.0, "W", Ratio::Both, false),
    ("power_c", 0x0203_0300, 1000.0, "W", Ratio::Both, false),
    ("reactive_power_total", 0x0204_0000, 1000.0, "var", Ratio::Both, false),
    ("power_factor", 0x0206_0000, 1.0, "", Ratio::None, false),
    ("power_factor_a", 0x0206_0100, 1.0, "", Ratio::None, false),
    ("power_factor_b", 0x0206_0200, 1.0, "", Ratio::None, false),
    ("power_factor_c", 0x0206_0300, 1.0, "", Ratio::None, false),
    ("frequency", 0x0280_0002, 1.0, "Hz", Ratio::None, false),
];

const SINGLE_PHASE_VARIABLES: [Row; 6] = [
    ("voltage", 0x0201_0100, 1.0, "V", Ratio::Voltage, false),
    ("current", 0x0202_0100, 1.0, "A", Ratio::Current, false),
    ("power_total", 0x0203_0000, 1000.0, "W", Ratio::Both, false),
    ("reactive_power_total", 0x0204_0000, 1000.0, "var", Ratio::Both, false),
    ("power_factor", 0x0206_0000, 1.0, "", Ratio::None, false),
    ("frequency", 0x0280_0002, 1.0, "Hz", Ratio::None, false),
];

/// The (name, identifier) pairs of two tables, joined (evaluated at compile
/// time: an index out of range fails the build, never a run).
#[allow(clippy::indexing_slicing)]
const fn names<const N: usize, const M: usize, const T: usize>(
    first: [Row; N],
    second: [Row; M],
) -> [(&'static str, u32); T] {
    let mut out = [("", 0); T];
    let mut i = 0;
    while i < N {
        out[i] = (first[i].0, first[i].1);
        i += 1;
    }
    let mut j = 0;
    while j < M {
        out[N + j] = (second[j].0, second[j].1);
        j += 1;
    }
    out
}

static THREE_PHASE_DI: [(&str, u32); 28] = names(ENERGY, THREE_PHASE_VARIABLES);
static SINGLE_PHASE_DI: [(&str, u32); 18] = names(ENERGY, SINGLE_PHASE_VARIABLES);

fn build_three_phase(
    options: &BTreeMap<String, ProfileOption>,
) -> Result<Vec<Point>, Vec<OptionError>> {
    build(options, &THREE_PHASE_VARIABLES)
}

fn build_single_phase(
    options: &BTreeMap<String, ProfileOption>,
) -> Result<Vec<Point>, Vec<OptionError>> {
    build(options, &SINGLE_PHASE_VARIABLES)
}

fn build(
    options: &BTreeMap<String, ProfileOption>,
    variables: &[Row],
) -> Result<Vec<Point>, Vec<OptionError>> {
    let (ct, pt) = ratios(options);
    let (ct, pt) = match (ct, pt) {
        (Ok(ct), Ok(pt)) => (ct, pt),
        (ct, pt) => return Err([ct.err(), pt.err()].into_iter().flatten().collect()),
    };
    Ok(ENERGY
        .iter()
        .chain(variables)
        .map(|&(name, _, scale, unit, ratio, is_counter)| {
            let scale = scale
                * match ratio {
                    Ratio::None => 1.0,
                    Ratio::Current => ct,
                    Ratio::Voltage => pt,
                    Ratio::Both => ct * pt,
                };
            let point = dlt645_point(name, scale, unit);
            if is_counter { counter(point) } else { point }
        })
        .collect())
}

/// A DL/T 645 point as the validator makes one: an `f64` value whose
/// Modbus fields nobody reads.
fn dlt645_point(name: &str, scale: f64, unit: &str) -> Point {
    register(name, Area::Holding, 0, ValueType::F64, scale, unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point<'a>(points: &'a [Point], name: &str) -> &'a Point {
        points.iter().find(|point| point.name == name).unwrap()
    }

    #[test]
    fn every_point_has_an_identifier_and_every_identifier_a_point() {
        for (profile, count) in [(&THREE_PHASE, 28), (&SINGLE_PHASE, 18)] {
            let points = profile.points(&BTreeMap::new()).unwrap();
            assert_eq!(points.len(), count, "{}", profile.name);
            assert_eq!(profile.di.len(), count, "{}", profile.name);
            for (point, (name, _)) in points.iter().zip(profile.di) {
                assert_eq!(point.name, *name);
            }
        }
        let di = |name: &str| THREE_PHASE.di.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(di("energy_import"), 0x0001_0000);
        assert_eq!(di("energy_export_t4"), 0x0002_0400);
        assert_eq!(di("voltage_c"), 0x0201_0300);
        assert_eq!(di("power_total"), 0x0203_0000);
        assert_eq!(di("frequency"), 0x0280_0002);
    }

    #[test]
    fn ct_and_pt_ratios_scale_energy_power_current_and_voltage() {
        let options = BTreeMap::from([
            ("ct_ratio".to_owned(), ProfileOption::Integer(40)),
            ("pt_ratio".to_owned(), ProfileOption::Float(100.0)),
        ]);
        let points = THREE_PHASE.points(&options).unwrap();
        assert!((point(&points, "energy_import").scale - 4000.0).abs() < 1e-9);
        assert!((point(&points, "power_total").scale - 4_000_000.0).abs() < 1e-6);
        assert!((point(&points, "current_a").scale - 40.0).abs() < 1e-12);
        assert!((point(&points, "voltage_a").scale - 100.0).abs() < 1e-12);
        assert!((point(&points, "power_factor").scale - 1.0).abs() < 1e-12);
        assert!((point(&points, "frequency").scale - 1.0).abs() < 1e-12);
        assert!(point(&points, "energy_import").counter);
        assert!(!point(&points, "power_total").counter);
        let points = SINGLE_PHASE.points(&BTreeMap::new()).unwrap();
        assert!((point(&points, "power_total").scale - 1000.0).abs() < 1e-12);
        assert_eq!(point(&points, "power_total").unit.as_deref(), Some("W"));
    }

    #[test]
    fn bad_ratios_are_reported_each() {
        let options = BTreeMap::from([
            ("ct_ratio".to_owned(), ProfileOption::Integer(0)),
            ("pt_ratio".to_owned(), ProfileOption::String("x".into())),
        ]);
        let errors = THREE_PHASE.points(&options).unwrap_err();
        let options: Vec<_> = errors.iter().map(|error| error.option.as_str()).collect();
        assert_eq!(options, ["ct_ratio", "pt_ratio"]);
    }
}
