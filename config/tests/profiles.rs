//! Built-in profiles, through the public API: every profile under every
//! documented option value gives well-formed points, options reach the points
//! through a configuration file, and `describe_all` lists everything
//! `spindle profiles` must show.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp
)]

use std::collections::{BTreeMap, BTreeSet};

use spindle_config::model::{Point, ProfileOption, ValueType};
use spindle_config::parse;
use spindle_config::profiles::{self, ALL, Profile};

fn options(pairs: &[(&str, ProfileOption)]) -> BTreeMap<String, ProfileOption> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn text(value: &str) -> ProfileOption {
    ProfileOption::String(value.to_owned())
}

/// Every profile with the option sets its documentation names.
fn every_variant() -> Vec<(&'static Profile, BTreeMap<String, ProfileOption>)> {
    let mut variants: Vec<_> = ALL
        .iter()
        .map(|profile| (*profile, BTreeMap::new()))
        .collect();
    let find = |name| profiles::find(name).unwrap();
    for register in ["0x101E", "0x401E", "0x4000"] {
        variants.push((
            find("chint-dtsu666"),
            options(&[("energy_register", text(register))]),
        ));
    }
    variants.push((
        find("chint-dtsu666"),
        options(&[
            ("ct_ratio", ProfileOption::Integer(40)),
            ("pt_ratio", ProfileOption::Float(100.0)),
        ]),
    ));
    for block in ["secondary", "primary"] {
        variants.push((find("acrel-adl400"), options(&[("block", text(block))])));
    }
    variants.push((
        find("acrel-adl400"),
        options(&[
            ("ct_ratio", ProfileOption::Integer(40)),
            ("pt_ratio", ProfileOption::Integer(100)),
        ]),
    ));
    for order in ["ABCD", "CDAB", "BADC", "DCBA"] {
        variants.push((
            find("generic-cnc-plc"),
            options(&[
                ("word_order", text(order)),
                ("base_address", ProfileOption::Integer(65_520)),
            ]),
        ));
    }
    variants
}

fn is_snake_case(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn every_profile_variant_has_unique_valid_points_that_fit_the_address_space_and_one_request() {
    for (profile, options) in every_variant() {
        let label = format!("{} {options:?}", profile.name);
        let points = profile.points(&options).unwrap_or_else(|errors| {
            panic!("{label}: {errors:?}");
        });
        assert!(!points.is_empty(), "{label}");
        let mut names = BTreeSet::new();
        for point in &points {
            assert!(
                names.insert(point.name.as_str()),
                "{label}: duplicate {}",
                point.name
            );
            assert!(is_snake_case(&point.name), "{label}: {}", point.name);
            assert!(
                u32::from(point.address) + u32::from(point.width()) <= 65_536,
                "{label}: {} runs past the address space",
                point.name
            );
            assert!(
                point.width() <= profile.max_registers.unwrap_or(125),
                "{label}: {} is wider than one request",
                point.name
            );
            assert!(
                point.scale.is_finite() && point.scale != 0.0,
                "{label}: {}",
                point.name
            );
            assert!(point.offset == 0.0, "{label}: {}", point.name);
            assert!(!point.area.is_bit(), "{label}: profiles read registers");
            if point.counter {
                assert!(
                    point.value_type.is_numeric(),
                    "{label}: counter {} must be numeric",
                    point.name
                );
            }
        }
    }
}

#[test]
fn no_two_points_of_a_profile_overlap() {
    for (profile, options) in every_variant() {
        if profile.is_dlt645() {
            // Read by identifier: no two points share one.
            let dis: BTreeSet<u32> = profile.di.iter().map(|(_, di)| *di).collect();
            assert_eq!(dis.len(), profile.di.len(), "{}", profile.name);
            continue;
        }
        let mut points: Vec<Point> = profile.points(&options).unwrap();
        points.sort_by_key(|point| point.address);
        for pair in points.windows(2) {
            assert!(
                pair[0].last_address() < pair[1].address,
                "{}: {} overlaps {}",
                profile.name,
                pair[0].name,
                pair[1].name
            );
        }
    }
}

#[test]
fn every_meter_publishes_power_in_watts_and_a_counted_import_energy() {
    for profile in ALL
        .iter()
        .filter(|profile| profile.name != "generic-cnc-plc")
    {
        let points = profile.points(&BTreeMap::new()).unwrap();
        let power = points.iter().find(|p| p.name == "power_total").unwrap();
        assert_eq!(power.unit.as_deref(), Some("W"), "{}", profile.name);
        let energy = points.iter().find(|p| p.name == "energy_import").unwrap();
        assert!(energy.counter, "{}", profile.name);
        assert!(
            matches!(energy.unit.as_deref(), Some("kWh" | "Wh")),
            "{}",
            profile.name
        );
    }
}

#[test]
fn every_profile_names_a_source_and_has_a_title() {
    for profile in ALL {
        assert!(profile.source.len() > 10, "{}", profile.name);
        assert!(!profile.title.is_empty(), "{}", profile.name);
        for spec in profile.options {
            assert!(!spec.default.is_empty() && !spec.description.is_empty());
        }
    }
}

#[test]
fn the_issue_s_six_profiles_are_built_in() {
    let names: BTreeSet<_> = profiles::names().into_iter().collect();
    for name in [
        "eastron-sdm630",
        "eastron-sdm120",
        "chint-dtsu666",
        "acrel-adl400",
        "schneider-pm5100",
        "generic-cnc-plc",
    ] {
        assert!(names.contains(name), "{name}");
    }
}

#[test]
fn describe_all_lists_every_profile_with_its_source_options_and_points() {
    let listing = profiles::describe_all();
    for profile in ALL {
        assert!(listing.contains(profile.name), "{}", profile.name);
        assert!(listing.contains(profile.source), "{}", profile.name);
        for spec in profile.options {
            assert!(
                listing.contains(&format!("{} = {}", spec.name, spec.default)),
                "{}: {}",
                profile.name,
                spec.name
            );
        }
        let block = profiles::describe(profile);
        for point in profile.points(&BTreeMap::new()).unwrap() {
            let row = block
                .lines()
                .find(|line| line.split_whitespace().next() == Some(point.name.as_str()))
                .unwrap_or_else(|| panic!("{}: no row for {}", profile.name, point.name));
            if profile.is_dlt645() {
                let di = profile
                    .di
                    .iter()
                    .find(|(name, _)| *name == point.name)
                    .unwrap();
                let words: Vec<&str> = row.split_whitespace().collect();
                assert_eq!(words[1..3], ["dlt645", &format!("{:08X}", di.1)], "{row}");
            } else {
                let hex = format!("0x{:04X} ({})", point.address, point.address);
                assert!(row.contains(&hex), "{row}");
                assert!(row.contains(point.area.as_str()), "{row}");
            }
            assert!(row.contains(point.value_type.as_str()), "{row}");
            assert_eq!(row.trim_end().ends_with("yes"), point.counter, "{row}");
        }
    }
}

#[test]
fn describe_shows_word_order_only_where_it_matters() {
    let block = profiles::describe(profiles::find("acrel-adl400").unwrap());
    let row = |name: &str| {
        block
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // name area address (decimal) type order scale unit
    assert_eq!(row("voltage_a")[4..7], ["u16", "-", "0.1"]);
    assert_eq!(row("power_total")[4..7], ["i32", "ABCD", "1"]);
}

/// A configuration with one device using `profile` with `profile_options`.
fn config_with(profile: &str, profile_options: &str) -> String {
    format!(
        r#"
[agent]
id = "gw-1"
site = "site"
data_dir = "/tmp/spindle"
timezone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "dev"
tcp = "127.0.0.1:502"
unit = 1
profile = "{profile}"
profile_options = {profile_options}
"#
    )
}

#[test]
fn ratio_options_in_a_file_reach_the_points_of_a_secondary_side_meter() {
    let config = parse(
        "plant.toml",
        &config_with("acrel-adl400", "{ ct_ratio = 40, pt_ratio = 1 }"),
    )
    .unwrap();
    let device = &config.devices[0];
    let scale = |name: &str| device.points.iter().find(|p| p.name == name).unwrap().scale;
    assert!((scale("current_a") - 0.4).abs() < 1e-12);
    assert!((scale("power_total") - 40.0).abs() < 1e-12);
    assert!((scale("energy_import") - 0.4).abs() < 1e-12);
    assert!((scale("voltage_a") - 0.1).abs() < 1e-12);
}

#[test]
fn ratio_options_on_the_primary_block_are_refused_with_their_position() {
    let errors = parse(
        "plant.toml",
        &config_with("acrel-adl400", "{ block = \"primary\", ct_ratio = 40 }"),
    )
    .unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert!(
        error
            .message
            .contains("option `ct_ratio` applies to block = \"secondary\" only")
    );
    assert_eq!((error.line, error.column), (16, 51), "{error}");
}

#[test]
fn the_cnc_profile_gives_the_signals_equipment_needs() {
    let text = config_with(
        "generic-cnc-plc",
        "{ base_address = 100, word_order = \"CDAB\" }",
    ) + r#"
[[equipment]]
name = "lathe-1"
device = "dev"
process = "machining"
key_process = true
numerically_controlled = true
running = { point = "run_state", values = [3] }
cnc_mode = { point = "auto_mode" }
"#;
    let config = parse("plant.toml", &text).unwrap();
    let device = &config.devices[0];
    let point = |name: &str| device.points.iter().find(|p| p.name == name).unwrap();
    assert_eq!(point("run_state").address, 100);
    assert_eq!(point("auto_mode").value_type, ValueType::Bool);
    assert!(point("part_count").counter);
    assert_eq!(point("part_count").address, 108);
}
