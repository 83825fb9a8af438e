//! Built-in device profiles: the point tables of common meters, so a device
//! needs only `profile = "..."` instead of a page of `[[device.point]]`.
//!
//! Owns the mechanism: a [`Profile`] declares its options ([`OptionSpec`]) and
//! builds its points from the device's `profile_options`. An option the profile
//! does not declare is an error; each profile checks the values of its own
//! options. The validator merges the points into the device: a
//! `[[device.point]]` with the name of a profile point replaces it whole (no
//! option scaling is applied to a replacement), other file points follow.
//!
//! Every profile file names the document its register map comes from. Adding a
//! profile is one file in this folder plus its module name in
//! `builtin_profiles!` below. `docs/PROFILES.md` has one section per profile.
//!
//! Conventions every profile keeps, so dashboards and KPIs can treat meters
//! alike: power in W, energy in kWh (or Wh where the meter counts integer Wh,
//! said in the unit), the same point names for the same quantity
//! (`voltage_a`, `current_a`, `power_total`, `power_factor`, `frequency`,
//! `energy_import`, …), and values primary-side: a meter that reports
//! secondary-side values takes `ct_ratio` / `pt_ratio` options ([`CT_RATIO`],
//! [`PT_RATIO`]) that are folded into the scales.
//!
//! [`describe_all`] renders every profile for `spindle profiles`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroU16;

use crate::model::{Area, Point, ProfileOption, ValueType, WordOrder};

macro_rules! builtin_profiles {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*
        mod dlt645;

        /// Every built-in profile, in listing order.
        pub static ALL: &[&Profile] = &[
            $(&$module::PROFILE,)*
            &dlt645::THREE_PHASE,
            &dlt645::SINGLE_PHASE,
        ];
    };
}

builtin_profiles! {
    chint_dtsu666,
    eastron_sdm630,
    eastron_sdm120,
    acrel_adl400,
    schneider_pm5100,
    generic_cnc_plc,
}

/// Builds a profile's points from a device's options.
type BuildPoints = fn(&BTreeMap<String, ProfileOption>) -> Result<Vec<Point>, Vec<OptionError>>;

/// A built-in device profile.
#[derive(Debug)]
pub struct Profile {
    /// The name a device gives in `profile = "..."`.
    pub name: &'static str,
    /// One line for `spindle profiles`.
    pub title: &'static str,
    /// The document the register map comes from.
    pub source: &'static str,
    pub options: &'static [OptionSpec],
    /// Registers per request this device handles, used when the device does
    /// not set `max_registers` itself.
    pub max_registers: Option<u16>,
    /// A DL/T 645 profile's data identifier of each point, by point name
    /// (every point has one); empty for a Modbus profile.
    pub di: &'static [(&'static str, u32)],
    build: BuildPoints,
}

impl Profile {
    /// Whether devices with `protocol = "dlt645"` take this profile.
    pub fn is_dlt645(&self) -> bool {
        !self.di.is_empty()
    }
}

/// One `profile_options` knob of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: &'static str,
    /// What it does and which values it takes.
    pub description: &'static str,
    /// The value used when the option is not given, as it would be written.
    pub default: &'static str,
}

/// A problem with one option of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option at fault.
    pub option: String,
    pub message: String,
}

impl Profile {
    /// The profile's points for these options (an empty map gives the
    /// defaults). Every unknown option and every bad value is reported.
    pub fn points(
        &self,
        options: &BTreeMap<String, ProfileOption>,
    ) -> Result<Vec<Point>, Vec<OptionError>> {
        let mut errors: Vec<OptionError> = options
            .keys()
            .filter(|name| !self.options.iter().any(|spec| spec.name == name.as_str()))
            .map(|name| OptionError {
                option: name.clone(),
                message: if self.options.is_empty() {
                    format!("profile \"{}\" takes no options, got `{name}`", self.name)
                } else {
                    format!(
                        "unknown option `{name}` for profile \"{}\"; expected one of {}",
                        self.name,
                        self.options
                            .iter()
                            .map(|spec| spec.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            })
            .collect();
        match (self.build)(options) {
            Ok(points) if errors.is_empty() => Ok(points),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                Err(errors)
            }
        }
    }
}

/// The built-in profile called `name`.
pub fn find(name: &str) -> Option<&'static Profile> {
    ALL.iter().copied().find(|profile| profile.name == name)
}

/// Names of every built-in profile, for messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|profile| profile.name).collect()
}

/// The current-transformer ratio option of meters that report secondary-side values.
const CT_RATIO: OptionSpec = OptionSpec {
    name: "ct_ratio",
    description: "current transformer ratio, e.g. 40 for 200/5 A; multiplies current, power and energy",
    default: "1",
};

/// The voltage-transformer ratio option of meters that report secondary-side values.
const PT_RATIO: OptionSpec = OptionSpec {
    name: "pt_ratio",
    description: "voltage transformer ratio, e.g. 100 for 10 kV/100 V; multiplies voltage, power and energy",
    default: "1",
};

/// The `ct_ratio` and `pt_ratio` options (1 when absent), or every problem with them.
fn ratios(
    options: &BTreeMap<String, ProfileOption>,
) -> (Result<f64, OptionError>, Result<f64, OptionError>) {
    (
        positive_number(options, CT_RATIO.name, 1.0),
        positive_number(options, PT_RATIO.name, 1.0),
    )
}

/// One of `choices` from string option `name` (compared without regard to
/// ASCII case), or `choices[0]` when it is absent.
fn choice(
    options: &BTreeMap<String, ProfileOption>,
    name: &str,
    choices: &[&'static str],
) -> Result<&'static str, OptionError> {
    let found = match options.get(name) {
        None => choices.first().copied(),
        Some(ProfileOption::String(text)) => choices
            .iter()
            .copied()
            .find(|choice| choice.eq_ignore_ascii_case(text)),
        Some(_) => None,
    };
    found.ok_or_else(|| OptionError {
        option: name.to_owned(),
        message: format!(
            "option `{name}` must be one of {}",
            choices
                .iter()
                .map(|choice| format!("\"{choice}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// A finite number > 0 from option `name`, or `default` when it is absent.
fn positive_number(
    options: &BTreeMap<String, ProfileOption>,
    name: &str,
    default: f64,
) -> Result<f64, OptionError> {
    let value = match options.get(name) {
        None => return Ok(default),
        #[allow(clippy::cast_precision_loss)]
        Some(ProfileOption::Integer(value)) => *value as f64,
        Some(ProfileOption::Float(value)) => *value,
        Some(_) => f64::NAN,
    };
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(OptionError {
            option: name.to_owned(),
            message: format!("option `{name}` must be a number greater than 0"),
        })
    }
}

/// A register point with the usual defaults (ABCD, no offset).
fn register(
    name: &str,
    area: Area,
    address: u16,
    value_type: ValueType,
    scale: f64,
    unit: &str,
) -> Point {
    Point {
        name: name.to_owned(),
        area,
        address,
        value_type,
        order: WordOrder::Abcd,
        bit: None,
        length: None::<NonZeroU16>,
        scale,
        offset: 0.0,
        unit: (!unit.is_empty()).then(|| unit.to_owned()),
        counter: false,
        deadband: None,
        rollover: None,
    }
}

/// The same point as a cumulative counter.
fn counter(point: Point) -> Point {
    Point {
        counter: true,
        ..point
    }
}

/// Every built-in profile as `spindle profiles` prints it, one [`describe`]
/// block each, separated by a blank line.
pub fn describe_all() -> String {
    ALL.iter()
        .map(|profile| describe(profile))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One profile for `spindle profiles`: name, title, source, options with
/// their defaults, and a table of the points it brings with default options
/// (area, address in hex and decimal, type, word order, scale, unit, counter).
pub fn describe(profile: &Profile) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{} \u{2014} {}", profile.name, profile.title);
    let _ = writeln!(out, "  source: {}", profile.source);
    if let Some(max) = profile.max_registers {
        let _ = writeln!(
            out,
            "  max_registers: {max} per request unless the device sets its own"
        );
    }
    if profile.options.is_empty() {
        let _ = writeln!(out, "  options: none");
    } else {
        let _ = writeln!(out, "  options (profile_options):");
        let width = profile
            .options
            .iter()
            .map(|spec| spec.name.len() + spec.default.len() + 3)
            .max()
            .unwrap_or(0);
        for spec in profile.options {
            let assignment = format!("{} = {}", spec.name, spec.default);
            let _ = writeln!(out, "    {assignment:<width$}  {}", spec.description);
        }
    }
    match profile.points(&BTreeMap::new()) {
        Ok(points) => {
            let _ = writeln!(out, "  points (with default options):");
            let mut rows: Vec<[String; 8]> = points.iter().map(point_row).collect();
            let mut header = [
                "name", "area", "address", "type", "order", "scale", "unit", "counter",
            ]
            .map(str::to_owned);
            if profile.is_dlt645() {
                // Read by data identifier: the area and address columns say so.
                let [_, area, address, ..] = &mut header;
                "protocol".clone_into(area);
                "di".clone_into(address);
                for [name, area, address, _, order, ..] in &mut rows {
                    let di = profile.di.iter().find(|(point, _)| point == name);
                    "dlt645".clone_into(area);
                    *address = di.map_or_else(|| "-".to_owned(), |(_, di)| format!("{di:08X}"));
                    "-".clone_into(order);
                }
            }
            let mut widths = header.clone().map(|cell| cell.chars().count());
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let mut line = String::from("   ");
                for (cell, width) in row.iter().zip(widths) {
                    let _ = write!(line, " {cell:<width$}");
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        Err(errors) => {
            for error in errors {
                let _ = writeln!(out, "  points unavailable: {}", error.message);
            }
        }
    }
    out
}

/// The table cells of one point in [`describe`].
fn point_row(point: &Point) -> [String; 8] {
    let order = if point.width() > 1 && point.value_type != ValueType::String {
        point.order.as_str()
    } else {
        "-"
    };
    let ty = match (point.value_type, point.bit) {
        (ValueType::Bool, Some(bit)) => format!("bool (bit {bit})"),
        (ValueType::String, _) => format!("string ({} registers)", point.width()),
        (value_type, _) => value_type.as_str().to_owned(),
    };
    [
        point.name.clone(),
        point.area.as_str().to_owned(),
        format!("0x{:04X} ({})", point.address, point.address),
        ty,
        order.to_owned(),
        if point.value_type == ValueType::Bool {
            "-".to_owned()
        } else {
            format!("{}", point.scale)
        },
        point.unit.clone().unwrap_or_else(|| "-".to_owned()),
        if point.counter { "yes" } else { "" }.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_profile_builds_well_formed_points_with_its_defaults() {
        for profile in ALL {
            let points = profile.points(&BTreeMap::new()).unwrap();
            assert!(!points.is_empty(), "{}", profile.name);
            let mut names = BTreeSet::new();
            for point in &points {
                assert!(
                    names.insert(point.name.clone()),
                    "{}: duplicate {}",
                    profile.name,
                    point.name
                );
                assert!(
                    point
                        .name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}",
                    point.name
                );
                assert!(point.scale.is_finite() && point.scale != 0.0);
                assert!(u32::from(point.address) + u32::from(point.width()) <= 65_536);
                assert!(point.width() <= profile.max_registers.unwrap_or(125));
            }
            assert!(!profile.source.is_empty());
            assert!(
                profile
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
    }

    #[test]
    fn profile_names_are_unique() {
        let names: BTreeSet<_> = names().into_iter().collect();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn an_unknown_option_is_reported_with_the_expected_ones() {
        let options = BTreeMap::from([("ct".to_owned(), ProfileOption::Integer(40))]);
        let errors = find("chint-dtsu666").unwrap().points(&options).unwrap_err();
        assert_eq!(
            errors,
            vec![OptionError {
                option: "ct".into(),
                message: "unknown option `ct` for profile \"chint-dtsu666\"; expected one of energy_register, ct_ratio, pt_ratio".into()
            }]
        );
        let errors = find("eastron-sdm630")
            .unwrap()
            .points(&options)
            .unwrap_err();
        assert_eq!(
            errors[0].message,
            "profile \"eastron-sdm630\" takes no options, got `ct`"
        );
    }
}
