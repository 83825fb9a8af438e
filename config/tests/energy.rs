//! `[[kpi.energy_consumption]]`, per-KPI `day_start`, `"1mo"` windows,
//! `min_completeness` and the carriers' basis and CO2 factor ids.

use std::time::Duration;

use spindle_config::model::{Basis, DayStart, WindowLength};
use spindle_config::parse;

const BASE: &str = r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-energy"
timezone = "Asia/Shanghai"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "meter"
tcp = "127.0.0.1:5020"
unit = 1
poll = "1s"

[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u32"
unit = "kWh"
counter = true

[[device.point]]
name = "gas"
area = "holding"
address = 2
type = "u32"
unit = "m³"
counter = true

[[device.point]]
name = "parts"
area = "holding"
address = 4
type = "u32"
unit = "piece"
counter = true
"#;

fn errors(text: &str) -> Vec<String> {
    match parse("plant.toml", text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_energy_consumption_kpi_takes_its_own_day_start_window_and_threshold() {
    let text = format!(
        r#"{BASE}
[[kpi.energy_consumption]]
name = "plant-15m"
window = "15m"
scope = "workshop 2"
day_start = "00:00"
energy = [ {{ point = "meter.energy", carrier = "electricity" }}, {{ point = "meter.gas", carrier = "natural_gas" }} ]

[[kpi.energy_consumption]]
name = "plant-month"
window = "1mo"
day_start = "00:00"
min_completeness = 0.95
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]

[[kpi.energy_per_output]]
name = "line1"
window = "1mo"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
output = [ {{ point = "meter.parts" }} ]
output_unit = "piece"
"#
    );
    let config = parse("plant.toml", &text).unwrap();
    let [quarter, month] = config.kpis.energy_consumption.as_slice() else {
        panic!("two consumption KPIs")
    };
    assert_eq!(
        quarter.window,
        WindowLength::Fixed(Duration::from_secs(900))
    );
    assert_eq!(quarter.day_start, DayStart { hour: 0, minute: 0 });
    assert_eq!(quarter.scope.as_deref(), Some("workshop 2"));
    assert!((quarter.min_completeness - 0.9).abs() < f64::EPSILON);
    assert_eq!(quarter.energy.len(), 2);
    assert_eq!(month.window, WindowLength::Month);
    assert!((month.min_completeness - 0.95).abs() < f64::EPSILON);
    let line1 = &config.kpis.energy_per_output[0];
    assert_eq!(line1.window, WindowLength::Month);
    assert_eq!(
        line1.day_start,
        DayStart { hour: 8, minute: 0 },
        "the agent's"
    );
    assert_eq!(
        line1.min_completeness, None,
        "no threshold unless configured"
    );
}

#[test]
fn carriers_publish_their_basis_and_co2_factor_series() {
    let text = format!(
        r#"{BASE}
[carriers.electricity]
kgce_per_unit = 0.2990
basis = "equivalent"
basis_year = 2023
kgco2_per_unit = 0.4364
co2_factor_id = "MEE/NBS Hubei 2022"
co2_factor_year = 2022

[carriers.natural_gas]
kgce_per_unit = 1.2143
"#
    );
    let config = parse("plant.toml", &text).unwrap();
    let electricity = &config.carriers["electricity"];
    assert_eq!(electricity.basis, Basis::Equivalent { year: Some(2023) });
    assert_eq!(
        electricity.co2_factor_id.as_deref(),
        Some("MEE/NBS Hubei 2022")
    );
    assert_eq!(electricity.co2_factor_year, Some(2022));
    let gas = &config.carriers["natural_gas"];
    assert_eq!(gas.basis, Basis::Calorific);
    assert_eq!(
        gas.co2_factor_id.as_deref(),
        Some("NDRC 2015 guideline default"),
        "the built-in CO2 factor is untouched"
    );
    let steam = &config.carriers["steam"];
    assert_eq!(steam.co2_factor_year, Some(2015));
    assert!(
        (config.carriers["electricity"].kgco2_per_unit - 0.4364).abs() < 1e-12,
        "overridden"
    );
}

#[test]
fn a_co2_factor_of_the_file_without_an_id_has_no_id() {
    let text = format!("{BASE}\n[carriers.electricity]\nkgco2_per_unit = 0.4364\n");
    let config = parse("plant.toml", &text).unwrap();
    assert_eq!(config.carriers["electricity"].co2_factor_id, None);
    assert_eq!(config.carriers["electricity"].co2_factor_year, None);
}

#[test]
fn bad_energy_input_is_reported_all_at_once_with_positions() {
    let text = format!(
        r#"{BASE}
[carriers.electricity]
basis = "equivelent"

[carriers.heat]
basis_year = 2020

[[kpi.energy_consumption]]
name = "plant"
window = "5w"
min_completeness = 1.5
day_start = "24:00"
energy = [ {{ point = "meter.gas", carrier = "electricity" }} ]
"#
    );
    assert_eq!(
        errors(&text),
        vec![
            "plant.toml:43:9: unknown basis \"equivelent\"; did you mean \"equivalent\"?",
            "plant.toml:46:14: basis_year belongs to basis = \"equivalent\" (等价值: the generation coal rate of that year)",
            "plant.toml:50:10: window must be a duration that divides a day (like \"15m\", \"1h\" or \"1d\") or a calendar month (\"1mo\"), got \"5w\"",
            "plant.toml:51:20: min_completeness must be a share from 0 to 1 (0.9 = 90 %), got 1.5",
            "plant.toml:52:13: day_start must be a time \"HH:MM\" from \"00:00\" to \"23:59\", got \"24:00\"",
            "plant.toml:53:22: point \"meter.gas\" is in \"m³\", which does not convert to \"kWh\" of carrier \"electricity\"; expected Wh, kWh, MWh, GWh",
        ]
    );
}

#[test]
fn a_quota_limit_over_days_and_a_baseline_are_read_and_bad_ones_reported() {
    let good = format!(
        r#"{BASE}
[[kpi.energy_per_output]]
name = "line1"
window = "1d"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
output = [ {{ point = "meter.parts" }} ]
output_unit = "piece"
limit = {{ value = 0.35, period = "1d" }}
baseline = {{ value = 0.4, year = 2020 }}
"#
    );
    let config = parse("plant.toml", &good).unwrap();
    let line1 = &config.kpis.energy_per_output[0];
    let limit = line1.limit.unwrap();
    assert!((limit.value - 0.35).abs() < 1e-12);
    assert_eq!(
        limit.period,
        WindowLength::Fixed(Duration::from_secs(86_400))
    );
    assert_eq!(line1.baseline.unwrap().year, Some(2020));

    let bad = format!(
        r#"{BASE}
[[kpi.energy_per_output]]
name = "line1"
window = "1h"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
output = [ {{ point = "meter.parts" }} ]
output_unit = "piece"
limit = {{ value = 0.35, period = "1h" }}
baseline = {{ value = 0.0, year = 2020 }}
"#
    );
    assert_eq!(
        errors(&bad),
        vec![
            "plant.toml:48:34: limit.period must be a day or longer (\"1d\" or \"1mo\"), got \"1h\"",
            "plant.toml:49:22: baseline.value must be a number > 0, got 0",
        ]
    );
}
