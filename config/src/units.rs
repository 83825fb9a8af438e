//! Units written in configuration files: durations (`"500ms"`, `"1h30m"`),
//! sizes (`"256MiB"`, `"100MB"`) and the physical units of energy points.
//!
//! Owns the conversion of a point's unit to its carrier's unit: units convert
//! only within one family (electric energy Wh/kWh/MWh/GWh, heat kJ/MJ/GJ,
//! volume m³ (also written `m3`, `Nm³`, `Nm3`), mass g/kg/t). Units outside
//! these families match only when written identically.

use std::fmt::Write as _;
use std::time::Duration;

/// Parse a duration: one or more `<integer><unit>` parts, units `ms`, `s`,
/// `m`, `h`, `d` (e.g. `"500ms"`, `"15m"`, `"1h30m"`, `"0ms"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "expected a duration like \"500ms\", \"1s\", \"15m\", \"1h\" or \"1d\", got \"{text}\""
        )
    };
    if text.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(expected());
        }
        let (number, tail) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| expected())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(expected()),
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| format!("duration \"{text}\" is too long"))?;
        rest = tail;
    }
    Ok(total)
}

/// Write a duration the way a configuration file would (`"1h30m"`, `"500ms"`, `"0ms"`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0ms".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            let _ = write!(out, "{}{unit}", millis / size);
            millis %= size;
        }
    }
    out
}

/// Parse a size in bytes: `<integer><unit>`, units `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) and `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let expected =
        || format!("expected a size like \"512KiB\", \"256MiB\" or \"1GiB\", got \"{text}\"");
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(expected());
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let multiplier: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(expected()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// A family of units that convert into each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    ElectricEnergy,
    Heat,
    Volume,
    Mass,
}

/// The family of a unit and its size in the family's base unit
/// (kWh, MJ, m³, kg).
fn family_of(unit: &str) -> Option<(Family, f64)> {
    Some(match unit {
        "Wh" => (Family::ElectricEnergy, 1e-3),
        "kWh" => (Family::ElectricEnergy, 1.0),
        "MWh" => (Family::ElectricEnergy, 1e3),
        "GWh" => (Family::ElectricEnergy, 1e6),
        "kJ" => (Family::Heat, 1e-3),
        "MJ" => (Family::Heat, 1.0),
        "GJ" => (Family::Heat, 1e3),
        "m³" | "m3" | "Nm³" | "Nm3" => (Family::Volume, 1.0),
        "g" => (Family::Mass, 1e-3),
        "kg" => (Family::Mass, 1.0),
        "t" => (Family::Mass, 1e3),
        _ => return None,
    })
}

/// The factor that turns a value in `from` into a value in `to`
/// (`conversion_factor("Wh", "kWh") == Some(0.001)`), or `None` when the two
/// units do not measure the same thing.
pub fn conversion_factor(from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(1.0);
    }
    let (from_family, from_size) = family_of(from)?;
    let (to_family, to_size) = family_of(to)?;
    (from_family == to_family).then_some(from_size / to_size)
}

/// Units `unit` converts to, for messages (`"Wh, kWh, MWh, GWh"`).
pub fn convertible_units(unit: &str) -> Vec<&'static str> {
    const ALL: [&str; 15] = [
        "Wh", "kWh", "MWh", "GWh", "kJ", "MJ", "GJ", "m³", "m3", "Nm³", "Nm3", "g", "kg", "t", "",
    ];
    ALL.into_iter()
        .filter(|candidate| !candidate.is_empty() && conversion_factor(unit, candidate).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn compound_durations_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn malformed_durations_are_rejected_with_an_example() {
        for bad in [
            "", "1", "s", "1.5s", "1 s", "-1s", "1sec", "1S", "ms", "1h30", "１s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.starts_with("expected a duration like"), "{bad}: {err}");
        }
    }

    #[test]
    fn overlong_durations_are_rejected_not_wrapped() {
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(
            parse_duration("18446744073709551615d")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_format_back_to_config_syntax() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("256").is_err());
        assert!(parse_size("256mib").is_err());
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn energy_units_convert_within_their_family() {
        assert_eq!(conversion_factor("Wh", "kWh"), Some(0.001));
        assert_eq!(conversion_factor("MWh", "kWh"), Some(1000.0));
        assert_eq!(conversion_factor("kWh", "kWh"), Some(1.0));
        assert_eq!(conversion_factor("GJ", "MJ"), Some(1000.0));
        assert_eq!(conversion_factor("m3", "m³"), Some(1.0));
        assert_eq!(conversion_factor("Nm3", "m³"), Some(1.0));
        assert_eq!(conversion_factor("t", "kg"), Some(1000.0));
        assert_eq!(conversion_factor("kg", "t"), Some(0.001));
    }

    #[test]
    fn units_of_different_quantities_do_not_convert() {
        assert_eq!(conversion_factor("kWh", "MJ"), None);
        assert_eq!(conversion_factor("kg", "m³"), None);
        assert_eq!(conversion_factor("W", "kWh"), None);
        assert_eq!(conversion_factor("piece", "pieces"), None);
        assert_eq!(conversion_factor("piece", "piece"), Some(1.0));
    }

    #[test]
    fn convertible_units_lists_the_family() {
        assert_eq!(convertible_units("kWh"), vec!["Wh", "kWh", "MWh", "GWh"]);
        assert!(convertible_units("piece").is_empty());
    }
}
