//! Schneider Electric `PowerLogic` PM5100 series power meter (Modbus RTU / TCP).
//!
//! Source: Schneider Electric "PM5100 / PM5300 series — public Modbus register
//! list" (with the PM5100 user manual's power-factor register format), as
//! collected in DOMAIN.md §4 (confidence H). The list gives 1-based register
//! numbers (current A = 3000); the wire addresses here are one lower (2999).
//! Holding registers (function code 03), big-endian (most significant register
//! first) for float32 and int64 alike.
//!
//! * Currents 2999/3001/3003, voltages L-L 3019/3021/3023 and L-N
//!   3027/3029/3031, frequency 3109: float32 in A, V, Hz.
//! * Active powers 3053/3055/3057 and total 3059: float32 in **kW**; the
//!   profile publishes **W** (scale 1000) like every other profile.
//! * Energy 3203 (delivered = import) and 3207 (received = export): int64 in
//!   **Wh** — published as integer Wh (unit "Wh"), exact; KPIs convert Wh to
//!   kWh themselves.
//! * Power factor 3083 is float32 *four-quadrant encoded* (−2…2, so the sign
//!   says lead/lag and the range says the quadrant): published raw as
//!   `power_factor_4q`; the true PF is the value itself in −1…1, `2 − v` above
//!   1 and `−2 − v` below −1 (docs/PROFILES.md).
//!
//! Models: the PM5100 itself has no communication port; the PM5110/PM5111
//! (RS-485) and the PM5300 series (RS-485 or Ethernet, Modbus TCP) share these
//! addresses, as do the basic registers of the iEM3xxx DIN-rail meters
//! (DOMAIN.md §4, confidence M), so the profile takes no options. The meter
//! applies its own CT/VT ratios: values are primary-side. Serial defaults are
//! unverified (often 19200 8E1, unit 1).

use std::collections::BTreeMap;

use super::{OptionError, Profile, counter, register};
use crate::model::{Area, Point, ProfileOption, ValueType};

pub(super) static PROFILE: Profile = Profile {
    name: "schneider-pm5100",
    title: "Schneider Electric PM5100 series (PM5110, PM5111), PM5300 series, iEM3xxx basics",
    source: "Schneider Electric PM5100/PM5300 public Modbus register list (DOMAIN.md §4)",
    options: &[],
    max_registers: None,
    di: &[],
    build,
};

#[allow(clippy::unnecessary_wraps)] // the shape every profile's builder has
fn build(_options: &BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>> {
    let f32 = |name: &str, address: u16, scale: f64, unit: &str| {
        register(name, Area::Holding, address, ValueType::F32, scale, unit)
    };
    let wh = |name: &str, address: u16| {
        counter(register(
            name,
            Area::Holding,
            address,
            ValueType::I64,
            1.0,
            "Wh",
        ))
    };
    Ok(vec![
        f32("current_a", 2999, 1.0, "A"),
        f32("current_b", 3001, 1.0, "A"),
        f32("current_c", 3003, 1.0, "A"),
        f32("voltage_ab", 3019, 1.0, "V"),
        f32("voltage_bc", 3021, 1.0, "V"),
        f32("voltage_ca", 3023, 1.0, "V"),
        f32("voltage_a", 3027, 1.0, "V"),
        f32("voltage_b", 3029, 1.0, "V"),
        f32("voltage_c", 3031, 1.0, "V"),
        f32("power_a", 3053, 1000.0, "W"),
        f32("power_b", 3055, 1000.0, "W"),
        f32("power_c", 3057, 1000.0, "W"),
        f32("power_total", 3059, 1000.0, "W"),
        f32("power_factor_4q", 3083, 1.0, ""),
        f32("frequency", 3109, 1.0, "Hz"),
        wh("energy_import", 3203),
        wh("energy_export", 3207),
    ])
}
