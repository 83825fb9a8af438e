//! Eastron SDM630 three-phase DIN-rail meter (Modbus RTU).
//!
//! Source: Eastron "SDM630 Modbus Protocol" (input registers, function code
//! 04, float32 big-endian), as collected in DOMAIN.md §4. The meter applies
//! its own CT setting, so readings are primary values and the profile takes no
//! options. Eastron advises at most 80 registers per request.

use std::collections::BTreeMap;

use super::{OptionError, Profile, counter, register};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static PROFILE: Profile = Profile {
    name: "eastron-sdm630",
    title: "Eastron SDM630 three-phase meter (9600 8N1, unit 1 by default)",
    source: "Eastron SDM630 Modbus protocol, input register table (DOMAIN.md §4)",
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
        f32("voltage_a", 0x0000, "V"),
        f32("voltage_b", 0x0002, "V"),
        f32("voltage_c", 0x0004, "V"),
        f32("current_a", 0x0006, "A"),
        f32("current_b", 0x0008, "A"),
        f32("current_c", 0x000A, "A"),
        f32("power_a", 0x000C, "W"),
        f32("power_b", 0x000E, "W"),
        f32("power_c", 0x0010, "W"),
        f32("power_total", 0x0034, "W"),
        f32("power_factor", 0x003E, ""),
        f32("frequency", 0x0046, "Hz"),
        counter(f32("energy_import", 0x0048, "kWh")),
        counter(f32("energy_export", 0x004A, "kWh")),
        counter(f32("energy_total", 0x0156, "kWh")),
    ])
}
