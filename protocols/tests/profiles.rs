//! Built-in profiles decode register images as the vendors document them.
//!
//! Each test writes a register image by hand — big-endian words in the order
//! the vendor's table gives, independent of `encode_point` — with readings a
//! meter of that kind shows, then decodes every profile point with
//! `decode_point` and checks the primary-side values. Meters that report
//! secondary-side values are checked under CT and PT ratios: a wrong ratio is
//! a 20–200× error in energy, so `ct_ratio` must multiply exactly current,
//! power and energy, and `pt_ratio` exactly voltage, power and energy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;

use spindle_config::model::{Point, ProfileOption};
use spindle_config::profiles::{self, ALL};
use spindle_protocols::modbus::{PointValue, RawValue, decode_point};

/// The registers of one device area: address → word (unset registers read 0).
#[derive(Debug, Default, Clone)]
struct Image(BTreeMap<u16, u16>);

impl Image {
    fn words(&mut self, address: u16, words: &[u16]) -> &mut Self {
        for (offset, word) in (0_u16..).zip(words) {
            self.0.insert(address + offset, *word);
        }
        self
    }

    fn u16(&mut self, address: u16, value: u16) -> &mut Self {
        self.words(address, &[value])
    }

    fn i16(&mut self, address: u16, value: i16) -> &mut Self {
        self.words(address, &[value as u16])
    }

    /// High word first (ABCD).
    fn u32(&mut self, address: u16, value: u32) -> &mut Self {
        self.words(address, &[(value >> 16) as u16, value as u16])
    }

    /// Low word first (CDAB).
    fn u32_low_word_first(&mut self, address: u16, value: u32) -> &mut Self {
        self.words(address, &[value as u16, (value >> 16) as u16])
    }

    fn i32(&mut self, address: u16, value: i32) -> &mut Self {
        self.u32(address, value as u32)
    }

    fn i64(&mut self, address: u16, value: i64) -> &mut Self {
        let bits = value as u64;
        self.words(
            address,
            &[
                (bits >> 48) as u16,
                (bits >> 32) as u16,
                (bits >> 16) as u16,
                bits as u16,
            ],
        )
    }

    /// IEEE 754 float32, high word first (ABCD).
    fn f32(&mut self, address: u16, value: f32) -> &mut Self {
        self.u32(address, value.to_bits())
    }

    /// The registers `point` occupies, as a device would answer them.
    fn read(&self, point: &Point) -> Vec<u16> {
        (0..point.width())
            .map(|offset| self.0.get(&(point.address + offset)).copied().unwrap_or(0))
            .collect()
    }
}

type Options = BTreeMap<String, ProfileOption>;

fn options(pairs: &[(&str, ProfileOption)]) -> Options {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn text(value: &str) -> ProfileOption {
    ProfileOption::String(value.to_owned())
}

/// Every point of `profile` with `options`, decoded from `image`, by name.
fn decode_all(profile: &str, options: &Options, image: &Image) -> BTreeMap<String, PointValue> {
    let profile = profiles::find(profile).unwrap();
    profile
        .points(options)
        .unwrap()
        .iter()
        .map(|point| {
            let decoded = decode_point(point, &image.read(point))
                .unwrap_or_else(|error| panic!("{}: {error}", point.name));
            (point.name.clone(), decoded.value)
        })
        .collect()
}

fn number(values: &BTreeMap<String, PointValue>, name: &str) -> f64 {
    match values.get(name) {
        Some(PointValue::Number(value)) => *value,
        other => panic!("{name}: {other:?}"),
    }
}

/// `actual` equals `expected` to 1e-9 relative (scales such as 0.1 are not exact in binary).
#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected}"
    );
}

#[track_caller]
fn assert_values(values: &BTreeMap<String, PointValue>, expected: &[(&str, f64)]) {
    for (name, value) in expected {
        let actual = number(values, name);
        assert!(
            (actual - value).abs() <= 1e-9 * value.abs().max(1.0),
            "{name}: {actual} is not {value}"
        );
    }
}

// ---------------------------------------------------------------- Eastron

#[test]
fn sdm120_input_registers_decode_as_float32_in_volts_amps_watts_and_kwh() {
    let mut image = Image::default();
    image
        .f32(0x0000, 230.1)
        .f32(0x0006, 4.87)
        .f32(0x000C, 1103.2)
        .f32(0x001E, 0.985)
        .f32(0x0046, 50.02)
        .f32(0x0048, 1234.56)
        .f32(0x004A, 12.5)
        .f32(0x0156, 1247.06);
    let values = decode_all("eastron-sdm120", &Options::new(), &image);
    assert_eq!(values.len(), 8);
    // Scale 1: the device's float32, widened exactly.
    for (name, value) in [
        ("voltage", 230.1_f32),
        ("current", 4.87),
        ("power_total", 1103.2),
        ("power_factor", 0.985),
        ("frequency", 50.02),
        ("energy_import", 1234.56),
        ("energy_export", 12.5),
        ("energy_total", 1247.06),
    ] {
        assert_eq!(number(&values, name), f64::from(value), "{name}");
    }
}

#[test]
fn sdm630_input_registers_decode_per_phase_and_in_total() {
    let mut image = Image::default();
    image
        .f32(0x0000, 230.1)
        .f32(0x0002, 229.8)
        .f32(0x0004, 231.4)
        .f32(0x0006, 10.25)
        .f32(0x000C, 2300.0)
        .f32(0x0034, 6850.5)
        .f32(0x003E, 0.97)
        .f32(0x0046, 49.98)
        .f32(0x0048, 52_340.7)
        .f32(0x0156, 52_400.1);
    let values = decode_all("eastron-sdm630", &Options::new(), &image);
    assert_eq!(number(&values, "voltage_a"), f64::from(230.1_f32));
    assert_eq!(number(&values, "voltage_c"), f64::from(231.4_f32));
    assert_eq!(number(&values, "current_a"), 10.25);
    assert_eq!(number(&values, "power_total"), 6850.5);
    assert_eq!(number(&values, "energy_import"), f64::from(52_340.7_f32));
    assert_eq!(number(&values, "energy_total"), f64::from(52_400.1_f32));
}

// ---------------------------------------------------------------- CHINT

/// A DTSU666 behind 200/5 A CTs: raw floats in the meter's units
/// (0.1 V, 0.001 A, 0.1 W, kWh), all secondary-side.
fn dtsu666_image() -> Image {
    let mut image = Image::default();
    image
        .f32(0x2000, 3985.0) // 398.5 V line to line
        .f32(0x2006, 2301.0) // 230.1 V
        .f32(0x2008, 2298.0)
        .f32(0x200A, 2314.0)
        .f32(0x200C, 4870.0) // 4.870 A secondary
        .f32(0x200E, 4650.0)
        .f32(0x2010, 4990.0)
        .f32(0x2012, 32_450.0) // 3245.0 W secondary
        .f32(0x2014, 10_950.0)
        .f32(0x202A, 985.0) // 0.985
        .f32(0x2044, 4999.0) // 49.99 Hz
        .f32(0x101E, 1234.5) // kWh secondary
        .f32(0x1028, 12.25);
    image
}

#[test]
fn dtsu666_scales_raw_floats_into_volts_amps_watts() {
    let values = decode_all("chint-dtsu666", &Options::new(), &dtsu666_image());
    assert_values(
        &values,
        &[
            ("voltage_ab", 398.5),
            ("voltage_a", 230.1),
            ("current_a", 4.87),
            ("power_total", 3245.0),
            ("power_a", 1095.0),
            ("power_factor", 0.985),
            ("frequency", 49.99),
            ("energy_import", 1234.5),
            ("energy_export", 12.25),
        ],
    );
}

#[test]
fn dtsu666_behind_200_to_5_a_cts_reports_primary_current_power_and_energy() {
    let options = options(&[("ct_ratio", ProfileOption::Integer(40))]);
    let values = decode_all("chint-dtsu666", &options, &dtsu666_image());
    assert_values(
        &values,
        &[
            ("current_a", 194.8),
            ("power_total", 129_800.0),
            ("energy_import", 49_380.0),
            ("energy_export", 490.0),
            // Neither voltage nor the dimensionless values move.
            ("voltage_a", 230.1),
            ("power_factor", 0.985),
            ("frequency", 49.99),
        ],
    );
}

#[test]
fn dtsu666_energy_register_option_reads_the_firmware_s_register() {
    let mut image = Image::default();
    image.f32(0x401E, 777.5).f32(0x4028, 1.5);
    let options = options(&[("energy_register", text("0x401E"))]);
    let values = decode_all("chint-dtsu666", &options, &image);
    assert_eq!(number(&values, "energy_import"), 777.5);
    assert_eq!(number(&values, "energy_export"), 1.5);
}

// ---------------------------------------------------------------- Acrel

/// An ADL400's integer (secondary) block behind 200/5 A CTs.
fn adl400_secondary_image() -> Image {
    let mut image = Image::default();
    image
        .u16(0x0061, 2301) // 230.1 V
        .u16(0x0062, 2298)
        .u16(0x0063, 2314)
        .u16(0x0064, 487) // 4.87 A
        .u16(0x0065, 1600) // 16.00 A
        .u16(0x0066, 499)
        .u16(0x0077, 5000) // 50.00 Hz
        .i32(0x0164, 1095) // W (0.001 kW)
        .i32(0x0166, -1200) // exporting phase: the sign survives
        .i32(0x0168, 3785)
        .i32(0x016A, 3680)
        .i16(0x017F, -985) // −0.985
        .u32(0x000A, 1_234_567); // 12 345.67 kWh, needs both words
    image
}

#[test]
fn adl400_secondary_block_decodes_integers_with_the_manual_s_scales() {
    let values = decode_all("acrel-adl400", &Options::new(), &adl400_secondary_image());
    assert_eq!(values.len(), 13);
    assert_values(
        &values,
        &[
            ("voltage_a", 230.1),
            ("current_b", 16.0),
            ("frequency", 50.0),
            ("power_a", 1095.0),
            ("power_b", -1200.0),
            ("power_total", 3680.0),
            ("power_factor", -0.985),
            ("energy_import", 12_345.67),
        ],
    );
}

#[test]
fn adl400_secondary_block_behind_transformers_reports_primary_values() {
    // 200/5 A CTs and 10 kV/100 V PTs.
    let options = options(&[
        ("ct_ratio", ProfileOption::Integer(40)),
        ("pt_ratio", ProfileOption::Integer(100)),
    ]);
    let values = decode_all("acrel-adl400", &options, &adl400_secondary_image());
    assert_values(
        &values,
        &[
            ("voltage_a", 23_010.0),
            ("current_b", 640.0),
            ("power_total", 14_720_000.0),
            ("power_b", -4_800_000.0),
            ("energy_import", 49_382_680.0),
            ("power_factor", -0.985),
            ("frequency", 50.0),
        ],
    );
}

#[test]
fn adl400_primary_block_decodes_floats_already_primary_and_publishes_watts() {
    let mut image = Image::default();
    image
        .f32(0x0800, 10_012.0)
        .f32(0x0802, 9_987.5)
        .f32(0x0804, 10_003.0)
        .f32(0x080C, 195.5)
        .f32(0x080E, 188.25)
        .f32(0x0810, 201.0)
        .f32(0x081A, 3_215.5) // kW
        .f32(0x0832, 0.97)
        .f32(0x0834, 50.01)
        .u32(0x084C, 123_456); // 12 345.6 kWh
    let options = options(&[("block", text("primary"))]);
    let values = decode_all("acrel-adl400", &options, &image);
    assert_eq!(values.len(), 10);
    assert_eq!(number(&values, "voltage_a"), 10_012.0);
    assert_eq!(number(&values, "current_b"), 188.25);
    assert_close(number(&values, "power_total"), 3_215_500.0);
    assert_eq!(number(&values, "power_factor"), f64::from(0.97_f32));
    assert_close(number(&values, "energy_import"), 12_345.6);
}

// ------------------------------------------------- CT and PT, every secondary meter

/// How a point must move with the ratios: (× CT?, × PT?).
fn ratio_exponents(name: &str) -> (bool, bool) {
    let power = name.starts_with("power") && !name.starts_with("power_factor");
    let power_or_energy = power || name.starts_with("energy");
    (
        power_or_energy || name.starts_with("current"),
        power_or_energy || name.starts_with("voltage"),
    )
}

#[test]
fn ct_ratio_40_multiplies_exactly_current_power_and_energy_by_40() {
    for (profile, image) in [
        ("chint-dtsu666", dtsu666_image()),
        ("acrel-adl400", adl400_secondary_image()),
    ] {
        let plain = decode_all(profile, &Options::new(), &image);
        let ct = decode_all(
            profile,
            &options(&[("ct_ratio", ProfileOption::Integer(40))]),
            &image,
        );
        for name in plain.keys() {
            let (by_ct, _) = ratio_exponents(name);
            let factor = if by_ct { 40.0 } else { 1.0 };
            let (before, after) = (number(&plain, name), number(&ct, name));
            assert!(
                (after - before * factor).abs() <= 1e-9 * (before * factor).abs().max(1.0),
                "{profile} {name}: {before} became {after} with ct_ratio 40"
            );
        }
    }
}

#[test]
fn pt_ratio_multiplies_exactly_voltage_power_and_energy() {
    for (profile, image) in [
        ("chint-dtsu666", dtsu666_image()),
        ("acrel-adl400", adl400_secondary_image()),
    ] {
        let plain = decode_all(profile, &Options::new(), &image);
        let pt = decode_all(
            profile,
            &options(&[("pt_ratio", ProfileOption::Float(100.0))]),
            &image,
        );
        for name in plain.keys() {
            let (_, by_pt) = ratio_exponents(name);
            let factor = if by_pt { 100.0 } else { 1.0 };
            let (before, after) = (number(&plain, name), number(&pt, name));
            assert!(
                (after - before * factor).abs() <= 1e-9 * (before * factor).abs().max(1.0),
                "{profile} {name}: {before} became {after} with pt_ratio 100"
            );
        }
    }
}

#[test]
fn both_ratios_compose_into_energy() {
    let options = options(&[
        ("ct_ratio", ProfileOption::Integer(40)),
        ("pt_ratio", ProfileOption::Integer(100)),
    ]);
    let values = decode_all("chint-dtsu666", &options, &dtsu666_image());
    // 1234.5 kWh secondary × 40 × 100.
    assert_close(number(&values, "energy_import"), 4_938_000.0);
}

// ---------------------------------------------------------------- Schneider

#[test]
fn pm5100_floats_decode_with_power_in_watts_and_int64_energy_in_exact_wh() {
    let mut image = Image::default();
    image
        .f32(2999, 125.4)
        .f32(3001, 118.0)
        .f32(3003, 130.5)
        .f32(3019, 398.5)
        .f32(3027, 230.1)
        .f32(3053, 28.5) // kW
        .f32(3059, 86.6) // kW
        .f32(3083, 1.2) // four-quadrant encoded: PF 0.8 leading
        .f32(3109, 50.0)
        .i64(3203, 123_456_789_012) // Wh, beyond 32 bits
        .i64(3207, 0);
    let values = decode_all("schneider-pm5100", &Options::new(), &image);
    assert_eq!(values.len(), 17);
    assert_eq!(number(&values, "current_a"), f64::from(125.4_f32));
    assert_eq!(number(&values, "voltage_ab"), f64::from(398.5_f32));
    assert_eq!(number(&values, "voltage_a"), f64::from(230.1_f32));
    assert_close(number(&values, "power_a"), f64::from(28.5_f32) * 1000.0);
    assert_close(number(&values, "power_total"), f64::from(86.6_f32) * 1000.0);
    assert_eq!(number(&values, "power_factor_4q"), f64::from(1.2_f32));
    assert_eq!(number(&values, "frequency"), 50.0);
    assert_eq!(number(&values, "energy_import"), 123_456_789_012.0);
    assert_eq!(number(&values, "energy_export"), 0.0);

    // The counter keeps the exact integer the meter holds.
    let profile = profiles::find("schneider-pm5100").unwrap();
    let points = profile.points(&Options::new()).unwrap();
    let energy = points.iter().find(|p| p.name == "energy_import").unwrap();
    let decoded = decode_point(energy, &image.read(energy)).unwrap();
    assert_eq!(decoded.raw, RawValue::Signed(123_456_789_012));
    assert_eq!(energy.unit.as_deref(), Some("Wh"));
}

// ---------------------------------------------------------------- generic CNC

#[test]
fn generic_cnc_plc_reads_fanuc_codes_flags_and_32_bit_counters() {
    let mut image = Image::default();
    image
        .u16(0, 3) // START
        .u16(1, 1) // MEM
        .u16(2, 1) // automatic
        .u16(3, 0) // no alarm
        .u16(4, 0) // no emergency
        .u16(5, 85) // %
        .u32(8, 70_000) // more than 16 bits
        .u32(10, 1_234_567)
        .u32(12, 1234);
    let values = decode_all("generic-cnc-plc", &Options::new(), &image);
    assert_eq!(values.len(), 9);
    assert_eq!(number(&values, "run_state"), 3.0);
    assert_eq!(number(&values, "mode"), 1.0);
    assert_eq!(values["auto_mode"], PointValue::Bool(true));
    assert_eq!(number(&values, "alarm"), 0.0);
    assert_eq!(values["emergency"], PointValue::Bool(false));
    assert_eq!(number(&values, "spindle_load"), 85.0);
    assert_eq!(number(&values, "part_count"), 70_000.0);
    assert_eq!(number(&values, "part_total"), 1_234_567.0);
    assert_eq!(number(&values, "program_number"), 1234.0);
}

#[test]
fn generic_cnc_plc_at_a_base_address_with_low_word_first_counters() {
    let mut image = Image::default();
    image
        .u16(100, 2) // HOLD
        .u16(102, 0) // not automatic
        .u16(103, 1010) // alarm number
        .u16(104, 1) // emergency stop
        .u32_low_word_first(108, 70_000)
        .u32_low_word_first(112, 9001);
    let cdab = options(&[
        ("base_address", ProfileOption::Integer(100)),
        ("word_order", text("CDAB")),
    ]);
    let values = decode_all("generic-cnc-plc", &cdab, &image);
    assert_eq!(number(&values, "run_state"), 2.0);
    assert_eq!(values["auto_mode"], PointValue::Bool(false));
    assert_eq!(number(&values, "alarm"), 1010.0);
    assert_eq!(values["emergency"], PointValue::Bool(true));
    assert_eq!(number(&values, "part_count"), 70_000.0);
    assert_eq!(number(&values, "program_number"), 9001.0);

    // The wrong order misreads the same registers: the option matters.
    let abcd = options(&[("base_address", ProfileOption::Integer(100))]);
    let misread = decode_all("generic-cnc-plc", &abcd, &image);
    assert_ne!(number(&misread, "part_count"), 70_000.0);
}

// ---------------------------------------------------------------- all profiles

#[test]
fn every_profile_decodes_an_idle_device_without_errors() {
    for profile in ALL {
        let points = profile.points(&Options::new()).unwrap();
        let image = Image::default();
        for point in &points {
            let decoded = decode_point(point, &image.read(point));
            assert!(
                decoded.is_ok(),
                "{} {}: {decoded:?}",
                profile.name,
                point.name
            );
        }
    }
}
