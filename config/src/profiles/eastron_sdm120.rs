//! Eastron SDM120-Modbus single-phase DIN-rail meter (Modbus RTU).
//!
//! Source: Eastron "SDM120-Modbus Smart Single Phase Energy Meter — Modbus
//! Protocol" (input register table, function code 04, every parameter an
//! IEEE 754 float32, high word first), as collected in DOMAIN.md §4; the
//! same input-register addresses appear for the SDM220 and in public SDM120
//! integrations.
//!
//! Defaults of the meter: 2400 baud, 8N1, unit 1 (set on the meter's front
//! buttons). Eastron advises at most 80 registers per request. The meter is
//! direct-connected (45 A) and reports the values it measures, so the profile
//! takes no options. The SDM120CT variant (external CT) is not covered by our
//! sources: check its manual before using this profile for it. Point names
//! follow the three-phase profiles
//! (`power_total` is the meter's only active power) so dashboards treat every
//! meter alike.

use std::collections::BTreeMap;

use super::{OptionError, Profile, counter, register};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static PROFILE: Profile = Profile {
    name: "eastron-sdm120",
    title: "Eastron SDM120-Modbus single-phase meter (2400 8N1, unit 1 by default)",
    source: "Eastron SDM120-Modbus protocol, input register table, FC04 float32 (DOMAIN.md §4)",
    options: &[],
    max_registers: Some(80),
    di: &[],
    build,
};

#[allow(clippy::unnecessary_wraps)] // the shape every profile's builder has
fn build(_options: &BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>> {
    let f32 = |name: &str, address: u16, unit: &str| {
        register(name, Area::Input, address, ValueType::F32, 1.0, unit)
    };
    Ok(vec![
        f32("voltage", 0x0000, "V"),
        f32("current", 0x0006, "A"),
        f32("power_total", 0x000C, "W"),
        f32("power_factor", 0x001E, ""),
        f32("frequency", 0x0046, "Hz"),
        counter(f32("energy_import", 0x0048, "kWh")),
        counter(f32("energy_export", 0x004A, "kWh")),
        counter(f32("energy_total", 0x0156, "kWh")),
    ])
}
