//! `spindle history -c FILE [--kind K] [--name N] --from DATE --to DATE
//! [--format csv|json]`: export closed KPI windows from the local history
//! (`data_dir/history/`, see `crate::history`) while the agent runs. Only
//! the history files are read; nothing opens the outbox.
//!
//! `--from` / `--to` take a local date (`2026-11-01`, in `agent.timezone`:
//! from that day's 00:00; `--to` includes the whole day) or an RFC 3339
//! instant (`2026-11-01T08:00:00+08:00`; `--to` excluded). A window is
//! exported when its start lies in `[from, to)`; each (kind, name, window
//! start) once. `json` prints each line as written (JSON Lines); `csv`
//! prints a header and one row per window and energy carrier (one row
//! without a carrier for `cnc_coverage`). A torn or unreadable line is
//! skipped with a warning naming file and line (stderr).

use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::cli::{EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME};
use crate::history::{Filter, dir, read_windows};
use crate::message::KpiKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (for `data_dir` and `timezone`).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Only windows of this KPI kind (`energy_consumption`, `energy_per_output`, `cnc_coverage`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only windows of the KPI with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// First day (local date) or instant (RFC 3339).
    #[arg(long)]
    pub from: String,
    /// Last day, included (local date), or instant, excluded (RFC 3339).
    #[arg(long)]
    pub to: String,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

pub fn run(args: &Args) -> u8 {
    let config = match spindle_config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return EXIT_BAD_INPUT;
        }
    };
    if let Some(kind) = &args.kind
        && KpiKind::from_word(kind).is_none()
    {
        eprintln!(
            "error: --kind must be energy_consumption, energy_per_output or cnc_coverage, got \"{kind}\""
        );
        return EXIT_BAD_INPUT;
    }
    let tz = &config.agent.timezone;
    let (Some(from_ms), Some(to_ms)) =
        (instant(&args.from, tz, false), instant(&args.to, tz, true))
    else {
        eprintln!(
            "error: --from and --to take a date like 2026-11-01 or an instant like 2026-11-01T08:00:00+08:00"
        );
        return EXIT_BAD_INPUT;
    };
    let filter = Filter {
        kind: args.kind.clone(),
        name: args.name.clone(),
        from_ms,
        to_ms,
    };
    let history = dir(&config.agent.data_dir);
    let (windows, skipped) = match read_windows(&history, &filter) {
        Ok(found) => found,
        Err(e) => {
            eprintln!(
                "error: cannot read the history in {}: {e}",
                history.display()
            );
            return EXIT_RUNTIME;
        }
    };
    for s in &skipped {
        if s.torn {
            eprintln!(
                "warning: {}:{}: skipped a torn last line (a write the agent did not finish)",
                s.file.display(),
                s.line
            );
        } else {
            eprintln!(
                "warning: {}:{}: skipped a line that is not a KPI window",
                s.file.display(),
                s.line
            );
        }
    }
    match args.format {
        Format::Json => {
            for w in &windows {
                println!("{}", w.line);
            }
        }
        Format::Csv => {
            let values: Vec<Value> = windows.into_iter().map(|w| w.value).collect();
            print!("{}", csv(&values, tz));
        }
    }
    EXIT_OK
}

/// The instant of `--from` / `--to`: a local date's 00:00 (the next day's
/// for an inclusive `to`) or an RFC 3339 instant.
fn instant(text: &str, tz: &TimeZone, to: bool) -> Option<u64> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return u64::try_from(ts.as_millisecond()).ok();
    }
    let mut date: Date = text.parse().ok()?;
    if to {
        date = date.tomorrow().ok()?;
    }
    let zoned = date.to_zoned(tz.clone()).ok()?;
    u64::try_from(zoned.timestamp().as_millisecond()).ok()
}

/// The CSV columns.
pub const CSV_HEADER: &str = "kind,name,scope,start,end,quality,flags,sample_completeness_min,carrier,consumption,unit,kgce,kgco2,basis,co2_factor_id,co2_factor_year,total_kgce,total_tce,total_kgco2,value,value_unit";

/// The windows as CSV (RFC 4180 quoting), times as local RFC 3339.
pub fn csv(windows: &[Value], tz: &TimeZone) -> String {
    let mut out = String::new();
    out.push_str(CSV_HEADER);
    out.push('\n');
    for w in windows {
        let common = [
            text(at(w, &["kind"])),
            text(at(w, &["name"])),
            text(at(w, &["scope"])),
            local(at(w, &["window", "start"]), tz),
            local(at(w, &["window", "end"]), tz),
            text(at(w, &["quality"])),
            at(w, &["flags"])
                .as_array()
                .map(|f| f.iter().map(text).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            text(at(w, &["sample_completeness", "min"])),
        ];
        let (value, value_unit) = match at(w, &["kind"]).as_str() {
            Some("energy_per_output") => (text(at(w, &["value"])), text(at(w, &["unit"]))),
            Some("cnc_coverage") => (text(at(w, &["count_ratio"])), "count_ratio".to_owned()),
            _ => (String::new(), String::new()),
        };
        let totals = [
            text(at(w, &["kgce"])),
            text(at(w, &["tce"])),
            text(at(w, &["kgco2"])),
            value,
            value_unit,
        ];
        let carriers: Vec<(&String, &Value)> = at(w, &["energy"])
            .as_object()
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        let empty = Value::Null;
        let rows: Vec<(String, &Value)> = if carriers.is_empty() {
            vec![(String::new(), &empty)]
        } else {
            carriers.into_iter().map(|(n, c)| (n.clone(), c)).collect()
        };
        for (carrier, c) in rows {
            let fields = common
                .iter()
                .cloned()
                .chain([
                    carrier,
                    text(at(c, &["consumption"])),
                    text(at(c, &["unit"])),
                    text(at(c, &["kgce"])),
                    text(at(c, &["kgco2"])),
                    text(at(c, &["basis"])),
                    text(at(c, &["co2_factor_id"])),
                    text(at(c, &["co2_factor_year"])),
                ])
                .chain(totals.iter().cloned())
                .map(|f| quote(&f))
                .collect::<Vec<_>>();
            let _ = writeln!(out, "{}", fields.join(","));
        }
    }
    out
}

/// The member at `path` (`Null` when absent).
fn at<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .unwrap_or(&Value::Null)
}

/// A JSON scalar as CSV text (`null` and absent are empty).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Epoch ms as local RFC 3339 (`2026-11-27T08:00:00+08:00`).
fn local(v: &Value, tz: &TimeZone) -> String {
    v.as_i64()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|ts| {
            ts.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_local_midnight_and_an_inclusive_to_is_the_next_midnight() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(instant("2026-11-27", &tz, false), Some(1_795_708_800_000));
        assert_eq!(instant("2026-11-27", &tz, true), Some(1_795_795_200_000));
        assert_eq!(
            instant("2026-11-27T08:00:00+08:00", &tz, true),
            Some(1_795_737_600_000)
        );
        assert_eq!(instant("27.11.2026", &tz, false), None);
    }

    #[test]
    fn a_consumption_window_is_one_csv_row_per_carrier() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let w: Value = serde_json::from_str(
            r#"{"ts":1,"kind":"energy_consumption","name":"plant","window":{"start":1795737600000,"end":1795738500000},"scope":"ws, 2","kgce":4.1,"tce":0.0041,"kgco2":9.5,"energy":{"electricity":{"consumption":10,"unit":"kWh","kgce":1.229,"kgco2":5.306,"basis":"calorific","co2_factor_id":"MEE/NBS national grid 2023","co2_factor_year":2023},"natural_gas":{"consumption":2,"unit":"m³","kgce":2.66,"kgco2":4.324,"basis":"calorific","co2_factor_id":null,"co2_factor_year":null}},"quality":"good","flags":["wrap"],"sample_completeness":{"min":1,"below":[]}}"#,
        )
        .unwrap();
        let text = csv(&[w], &tz);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[1],
            "energy_consumption,plant,\"ws, 2\",2026-11-27T08:00:00+08:00,2026-11-27T08:15:00+08:00,good,wrap,1,electricity,10,kWh,1.229,5.306,calorific,MEE/NBS national grid 2023,2023,4.1,0.0041,9.5,,"
        );
        assert!(lines[2].contains(",natural_gas,2,m³,2.66,4.324,calorific,,,"));
    }
}
