//! The built-in energy carriers: unit, standard-coal coefficient and CO2
//! factor of each, with the source of every figure.
//!
//! Standard-coal coefficients are the reference values of GB/T 2589-2020
//! (综合能耗计算通则), Annex A, on the calorific-equivalent basis (当量值):
//! 1 kgce = 29 307.6 kJ lower heating value. CO2 factors are documented one by
//! one below. A configuration's `[carriers.NAME]` tables override fields of a
//! built-in carrier or add new carriers (see [`crate::validate`]); the result
//! is `Config::carriers`.

use std::collections::BTreeMap;

use crate::model::{Basis, Carrier};

/// One row of the built-in table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuiltinCarrier {
    pub name: &'static str,
    pub unit: &'static str,
    pub kgce_per_unit: f64,
    pub kgco2_per_unit: f64,
    /// Where the two coefficients come from, for `spindle profiles`-style listings and docs.
    pub source: &'static str,
    /// The CO2 factor's series, published beside every CO2 figure.
    pub co2_factor_id: &'static str,
    /// The CO2 factor's data year.
    pub co2_factor_year: u16,
}

/// The built-in carriers, by name.
pub const BUILTIN: &[BuiltinCarrier] = &[
    BuiltinCarrier {
        name: "electricity",
        unit: "kWh",
        // GB/T 2589-2020 Annex A: electricity, calorific equivalent 0.1229 kgce/kWh.
        kgce_per_unit: 0.1229,
        // MEE + NBS, national grid average emission factor, 2023 data: 0.5306 kgCO2/kWh.
        // Regional factors differ (Hubei 2022: 0.4364): override per site.
        kgco2_per_unit: 0.5306,
        source: "kgce: GB/T 2589-2020 Annex A (calorific equivalent); CO2: MEE/NBS national grid average, 2023 data",
        co2_factor_id: "MEE/NBS national grid 2023",
        co2_factor_year: 2023,
    },
    BuiltinCarrier {
        name: "natural_gas",
        unit: "m³",
        // GB/T 2589-2020 Annex A: natural gas (oil-field gas) 1.3300 kgce/m³, the upper
        // end of the 1.1000–1.3300 range; gas-field gas is 1.2143 (override if so).
        // Per standard m³: convert working-condition volume first.
        kgce_per_unit: 1.3300,
        // NDRC 2015 GHG accounting guideline default: 2.162 kgCO2/Nm³.
        kgco2_per_unit: 2.162,
        source: "kgce: GB/T 2589-2020 Annex A (oil-field gas); CO2: NDRC 2015 guideline default",
        co2_factor_id: "NDRC 2015 guideline default",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "steam",
        unit: "kg",
        // GB/T 2589-2020 Annex A: low-pressure steam fallback 0.1286 kgce/kg; better is
        // enthalpy (MJ/t) × 0.03412 / 1000 per kg when the steam conditions are known.
        kgce_per_unit: 0.1286,
        // Derived from heat: 0.1286 kgce × 29.3076 MJ/kgce = 3.769 MJ per kg of steam,
        // × 0.11 kgCO2/MJ (NDRC 2015 purchased-heat default) = 0.4146 kgCO2/kg.
        kgco2_per_unit: 0.4146,
        source: "kgce: GB/T 2589-2020 Annex A (low-pressure steam); CO2: derived, 3.769 MJ/kg × 0.11 kgCO2/MJ (NDRC 2015 heat)",
        co2_factor_id: "derived from NDRC 2015 purchased heat",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "heat",
        unit: "MJ",
        // GB/T 2589-2020 Annex A: heat 0.03412 kgce/MJ (= 34.12 kgce/GJ).
        kgce_per_unit: 0.03412,
        // NDRC 2015 GHG accounting guideline default for purchased heat: 0.11 tCO2/GJ.
        kgco2_per_unit: 0.11,
        source: "kgce: GB/T 2589-2020 Annex A; CO2: NDRC 2015 guideline purchased-heat default",
        co2_factor_id: "NDRC 2015 purchased heat",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "coal",
        unit: "kg",
        // GB/T 2589-2020 Annex A: raw coal 0.7143 kgce/kg (20 908 kJ/kg).
        kgce_per_unit: 0.7143,
        // Derived from the NDRC 2015 guideline defaults for general raw coal: net calorific
        // value 20.908 GJ/t × carbon content 26.37 tC/TJ × oxidation 94 % × 44/12
        // = 1.9003 kgCO2/kg. Coal varies widely: use the supplier's analysis where known.
        kgco2_per_unit: 1.9003,
        source: "kgce: GB/T 2589-2020 Annex A (raw coal); CO2: derived from NDRC 2015 raw-coal defaults (20.908 GJ/t, 26.37 tC/TJ, 94 %)",
        co2_factor_id: "derived from NDRC 2015 raw coal defaults",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "diesel",
        unit: "kg",
        // GB/T 2589-2020 Annex A: diesel 1.4571 kgce/kg.
        kgce_per_unit: 1.4571,
        // NDRC 2015 guideline default: 3.145 kgCO2/kg.
        kgco2_per_unit: 3.145,
        source: "kgce: GB/T 2589-2020 Annex A; CO2: NDRC 2015 guideline default",
        co2_factor_id: "NDRC 2015 guideline default",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "gasoline",
        unit: "kg",
        // GB/T 2589-2020 Annex A: gasoline 1.4714 kgce/kg.
        kgce_per_unit: 1.4714,
        // NDRC 2015 guideline default: 3.043 kgCO2/kg.
        kgco2_per_unit: 3.043,
        source: "kgce: GB/T 2589-2020 Annex A; CO2: NDRC 2015 guideline default",
        co2_factor_id: "NDRC 2015 guideline default",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "lpg",
        unit: "kg",
        // GB/T 2589-2020 Annex A: liquefied petroleum gas 1.7143 kgce/kg.
        kgce_per_unit: 1.7143,
        // NDRC 2015 guideline default: 2.954 kgCO2/kg.
        kgco2_per_unit: 2.954,
        source: "kgce: GB/T 2589-2020 Annex A; CO2: NDRC 2015 guideline default",
        co2_factor_id: "NDRC 2015 guideline default",
        co2_factor_year: 2015,
    },
    BuiltinCarrier {
        name: "water",
        unit: "t",
        // GB/T 2589-2020 Annex A: fresh water, an energy-consuming medium, 0.0857 kgce/t
        // (low confidence: confirm against the edition the plant reports under).
        kgce_per_unit: 0.0857,
        // Water is counted for its embodied energy only; its CO2 is the supplier's
        // electricity, not the plant's: 0.
        kgco2_per_unit: 0.0,
        source: "kgce: GB/T 2589-2020 Annex A (fresh water, energy-consuming medium); CO2: none counted",
        co2_factor_id: "none counted",
        co2_factor_year: 2015,
    },
];

/// The built-in carrier called `name`.
pub fn builtin(name: &str) -> Option<&'static BuiltinCarrier> {
    BUILTIN.iter().find(|carrier| carrier.name == name)
}

/// The built-in table as model carriers, before any `[carriers.*]` override.
pub fn builtin_table() -> BTreeMap<String, Carrier> {
    BUILTIN
        .iter()
        .map(|carrier| {
            (
                carrier.name.to_owned(),
                Carrier {
                    unit: carrier.unit.to_owned(),
                    kgce_per_unit: carrier.kgce_per_unit,
                    kgco2_per_unit: carrier.kgco2_per_unit,
                    basis: Basis::Calorific,
                    co2_factor_id: Some(carrier.co2_factor_id.to_owned()),
                    co2_factor_year: Some(carrier.co2_factor_year),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_carrier_has_finite_nonnegative_coefficients_and_a_source() {
        for carrier in BUILTIN {
            assert!(carrier.kgce_per_unit.is_finite() && carrier.kgce_per_unit > 0.0);
            assert!(carrier.kgco2_per_unit.is_finite() && carrier.kgco2_per_unit >= 0.0);
            assert!(!carrier.source.is_empty());
            assert!(crate::units::conversion_factor(carrier.unit, carrier.unit).is_some());
        }
        assert_eq!(builtin_table().len(), BUILTIN.len());
    }

    #[test]
    fn electricity_uses_the_calorific_equivalent_and_2023_grid_factor() {
        let electricity = builtin("electricity").unwrap();
        assert_eq!(
            (
                electricity.unit,
                electricity.kgce_per_unit,
                electricity.kgco2_per_unit
            ),
            ("kWh", 0.1229, 0.5306)
        );
    }
}
