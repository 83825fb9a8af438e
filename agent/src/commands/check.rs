//! `spindle check -c FILE`: validate a config, print each device's read plan
//! and the estimated load of each serial bus.
//!
//! Exit 1 listing every error; a bus loaded over 100 % is a warning (exit 0).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use spindle_config::model::{Config, Device, DeviceLink, Dlt645Device, WindowLength};
use spindle_protocols::dlt645::Di;
use spindle_protocols::dlt645::poll::{MeterRead, plan_reads as plan_meter_reads};
use spindle_protocols::modbus::plan::plan_reads;

use crate::busload::{self, DeviceLoad, Transaction};
use crate::cli::{EXIT_BAD_INPUT, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> u8 {
    match spindle_config::load(&args.config) {
        Ok(config) => {
            let (report, overloaded) = report(&config);
            print!("{report}");
            if overloaded {
                eprintln!(
                    "warning: a serial bus is loaded over 100 %: its devices will be polled less often than configured"
                );
            }
            if let Some(warning) = history_warning(&config) {
                eprintln!("warning: {warning}");
            }
            EXIT_OK
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), args.config.display());
            EXIT_BAD_INPUT
        }
    }
}

/// Bytes a history line of a KPI window takes, about: the payload's fixed
/// members, plus each energy carrier's object.
const HISTORY_LINE_BYTES: u64 = 420;
const HISTORY_CARRIER_BYTES: u64 = 240;

/// About how many bytes of history the configured KPIs write a day.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn history_bytes_per_day(config: &Config) -> u64 {
    let per_day = |window: WindowLength| -> f64 {
        match window {
            WindowLength::Fixed(d) if !d.is_zero() => 86_400.0 / d.as_secs_f64(),
            WindowLength::Fixed(_) => 0.0,
            WindowLength::Month => 1.0 / 28.0,
        }
    };
    let line = |carriers: usize| HISTORY_LINE_BYTES + HISTORY_CARRIER_BYTES * carriers as u64;
    let k = &config.kpis;
    let total: f64 = k
        .cnc_coverage
        .iter()
        .map(|kpi| per_day(kpi.window) * line(0) as f64)
        .chain(
            k.energy_per_output
                .iter()
                .map(|kpi| per_day(kpi.window) * line(kpi.energy.len()) as f64),
        )
        .chain(
            k.energy_consumption
                .iter()
                .map(|kpi| per_day(kpi.window) * line(kpi.energy.len()) as f64),
        )
        .sum();
    total.ceil() as u64
}

/// A warning when `[history] max_size` cannot hold `max_age` of windows at
/// the configured KPI rates.
#[allow(clippy::cast_precision_loss)]
pub fn history_warning(config: &Config) -> Option<String> {
    let per_day = history_bytes_per_day(config);
    let days = config.history.max_age.as_secs_f64() / 86_400.0;
    let needed = per_day as f64 * days;
    (needed > config.history.max_size as f64).then(|| {
        format!(
            "[history] max_size ({} bytes) holds about {:.0} days of KPI windows at the configured rates (about {per_day} bytes a day), less than max_age ({days:.0} days): the oldest months will be deleted early",
            config.history.max_size,
            config.history.max_size as f64 / per_day.max(1) as f64,
        )
    })
}

/// A DL/T 645 device's lines: its meter, its reads (blocks merged as the
/// poller merges them) and identifiers; the reads for the bus load.
fn dlt645_report(out: &mut String, device: &Device, meter: &Dlt645Device) -> Vec<Transaction> {
    let link = link_text(device);
    let dis: Vec<Di> = device
        .points
        .iter()
        .filter_map(|point| meter.di.get(&point.name).map(|di| Di(*di)))
        .collect();
    let reads = plan_meter_reads(&dis, &BTreeSet::new());
    let _ = writeln!(
        out,
        "\ndevice {} ({link}, DL/T 645 meter {}, poll {}): {} points by di in {} reads",
        device.name,
        meter.meter,
        spindle_config::units::format_duration(device.poll),
        device.points.len(),
        reads.len(),
    );
    let name_of = |di: Di| {
        device
            .points
            .iter()
            .find(|point| meter.di.get(&point.name) == Some(&di.0))
            .map_or("", |point| point.name.as_str())
    };
    for read in &reads {
        match read {
            MeterRead::Single { di, .. } => {
                let _ = writeln!(out, "  di {:08X}  {}", di.0, name_of(*di));
            }
            MeterRead::Block { di, members } => {
                let names: Vec<&str> = members
                    .iter()
                    .filter(|(_, point)| point.is_some())
                    .map(|(member, _)| name_of(*member))
                    .collect();
                let _ = writeln!(out, "  di {:08X}  {} (block)", di.0, names.join(" "));
            }
        }
    }
    reads
        .iter()
        .map(|read| Transaction::Dlt645 {
            value_bytes: u32::try_from(read.value_len()).unwrap_or(u32::MAX),
        })
        .collect()
}

/// `serial BUS` or `tcp HOST:PORT`.
fn link_text(device: &Device) -> String {
    match &device.link {
        DeviceLink::Serial(bus) => format!("serial {bus}"),
        DeviceLink::Tcp(endpoint) => format!("tcp {endpoint}"),
    }
}

/// A Modbus device's lines: its read plan; the reads for the bus load.
fn modbus_report(out: &mut String, device: &Device) -> Vec<Transaction> {
    let plan = plan_reads(&device.points, device.max_registers.get(), device.max_gap);
    let link = link_text(device);
    let _ = writeln!(
        out,
        "\ndevice {} ({link}, unit {}, poll {}): {} points in {} requests",
        device.name,
        device.unit,
        spindle_config::units::format_duration(device.poll),
        device.points.len(),
        plan.requests().len()
    );
    for request in plan.requests() {
        let names: Vec<&str> = request
            .points
            .iter()
            .filter_map(|&i| device.points.get(i).map(|p| p.name.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "  {:<8} start {:>5} ({:#06x})  count {:>4}  {}",
            request.area.as_str(),
            request.start,
            request.start,
            request.count,
            names.join(" ")
        );
    }
    plan.requests()
        .iter()
        .map(|r| Transaction::Modbus {
            area: r.area,
            count: r.count,
        })
        .collect()
}

/// The text `check` prints for a valid config, and whether any bus is over 100 %.
pub fn report(config: &Config) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok ({} device(s), {} serial bus(es))",
        config.source.display(),
        config.devices.len(),
        config.serial.len()
    );
    let mut loads: Vec<(String, DeviceLoad)> = Vec::new();
    for device in &config.devices {
        let requests = match config.dlt645_device(&device.name) {
            Some(meter) => dlt645_report(&mut out, device, meter),
            None => modbus_report(&mut out, device),
        };
        if let DeviceLink::Serial(bus) = &device.link {
            loads.push((
                bus.clone(),
                DeviceLoad {
                    name: device.name.clone(),
                    poll: device.poll,
                    requests,
                },
            ));
        }
    }
    let mut overloaded = false;
    for bus in &config.serial {
        let devices: Vec<DeviceLoad> = loads
            .iter()
            .filter(|(b, _)| *b == bus.name)
            .map(|(_, d)| d.clone())
            .collect();
        let load = busload::bus_load(bus, &devices);
        overloaded |= load > 1.0;
        let parity = match bus.parity {
            spindle_config::model::Parity::None => 'N',
            spindle_config::model::Parity::Even => 'E',
            spindle_config::model::Parity::Odd => 'O',
        };
        let _ = writeln!(
            out,
            "\nbus {} ({} {} {}{}{}, {} bits/char, silent interval {:.2} ms): load {:.1} %{}",
            bus.name,
            bus.port,
            bus.baud,
            bus.data_bits,
            parity,
            bus.stop_bits,
            bus.bits_per_char(),
            bus.silent_interval().as_secs_f64() * 1e3,
            load * 100.0,
            if load > 1.0 { "  OVERLOADED" } else { "" }
        );
        for d in &devices {
            let _ = writeln!(
                out,
                "  {:<20} {:>7.2} ms per poll, {:>5.1} %",
                d.name,
                d.time_per_poll(bus).as_secs_f64() * 1e3,
                d.share(bus) * 100.0
            );
        }
        let _ = writeln!(
            out,
            "  (assumes {} ms device turnaround per request, {} ms for a DL/T 645 meter; frames, FE wake-up bytes and 3.5-character silent intervals counted)",
            busload::DEVICE_TURNAROUND.as_millis(),
            busload::DLT645_TURNAROUND.as_millis()
        );
    }
    (out, overloaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_size: &str) -> Config {
        let text = format!(
            r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-check"
timezone = "Asia/Shanghai"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[history]
max_size = "{max_size}"

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

[[kpi.energy_consumption]]
name = "plant"
window = "15m"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]

[[kpi.energy_consumption]]
name = "plant-month"
window = "1mo"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
"#
        );
        spindle_config::parse("check.toml", &text).unwrap()
    }

    #[test]
    fn check_lists_a_dlt645_meter_by_its_identifiers_not_as_modbus_requests() {
        let text = "[agent]\nid = \"gw\"\nsite = \"plant\"\ndata_dir = \"/tmp/x\"\ntimezone = \"UTC\"\n\
                    [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
                    [[serial]]\nname = \"bus1\"\nport = \"/dev/ttyS1\"\nbaud = 2400\nparity = \"even\"\n\
                    [[device]]\nname = \"mains\"\nserial = \"bus1\"\nprotocol = \"dlt645\"\nmeter = \"000012345678\"\n\
                    [[device.point]]\nname = \"energy\"\ndi = \"00010000\"\n";
        let config = spindle_config::parse("check.toml", text).unwrap();
        let (out, over) = report(&config);
        assert!(
            out.contains("device mains (serial bus1, DL/T 645 meter 000012345678, poll 1s): 1 points by di in 1 reads\n  di 00010000  energy"),
            "{out}"
        );
        assert!(!out.contains("holding"), "{out}");
        assert!(!over);
    }

    #[test]
    fn a_mixed_bus_shows_one_load_with_the_dlt645_meter_s_frames_in_it() {
        let text = "[agent]\nid = \"gw\"\nsite = \"plant\"\ndata_dir = \"/tmp/x\"\ntimezone = \"UTC\"\n\
                    [mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
                    [[serial]]\nname = \"bus1\"\nport = \"/dev/ttyS1\"\nbaud = 9600\nparity = \"even\"\n\
                    [[device]]\nname = \"mains\"\nserial = \"bus1\"\nprotocol = \"dlt645\"\nmeter = \"000012345678\"\npoll = \"2s\"\n\
                    [[device.point]]\nname = \"energy\"\ndi = \"00010000\"\n\
                    [[device.point]]\nname = \"voltage_a\"\ndi = \"02010100\"\n\
                    [[device.point]]\nname = \"voltage_b\"\ndi = \"02010200\"\n\
                    [[device]]\nname = \"plc\"\nserial = \"bus1\"\nunit = 1\n\
                    [[device.point]]\nname = \"v\"\narea = \"holding\"\naddress = 0\ntype = \"u16\"\n";
        let config = spindle_config::parse("check.toml", text).unwrap();
        let (out, over) = report(&config);
        assert!(!over);
        assert!(
            out.contains("3 points by di in 2 reads\n  di 00010000  energy\n  di 0201FF00  voltage_a voltage_b (block)\n"),
            "{out}"
        );
        // 9600 8E1: 11 bits a character, silent interval 38.5 bits.
        // The meter every 2 s: (20 + 24) and (20 + 26) bytes, 2 × 20 ms.
        // The PLC every 1 s: 8 + 7 bytes, 5 ms.
        let c = 11.0 / 9600.0;
        let gap = 2.0 * 3.5 * c;
        let meter = (90.0 * c + 2.0 * gap + 0.040) / 2.0;
        let plc = 15.0 * c + gap + 0.005;
        let expected = format!("load {:.1} %", (meter + plc) * 100.0);
        assert!(
            out.contains(&format!(
                "bus bus1 (/dev/ttyS1 9600 8E1, 11 bits/char, silent interval 4.01 ms): {expected}"
            )),
            "{expected}\n{out}"
        );
        assert!(
            out.contains(&format!(
                "  mains                {:>7.2} ms per poll",
                (90.0 * c + 2.0 * gap + 0.040) * 1e3
            )),
            "{out}"
        );
        assert!(out.contains("  plc "), "{out}");
    }

    #[test]
    fn check_warns_when_history_max_size_cannot_hold_max_age() {
        // 96 windows a day of about 660 bytes: some 63 KB a day, 12 MB for 190 days.
        let small = config("4MiB");
        let per_day = history_bytes_per_day(&small);
        assert!((60_000..70_000).contains(&per_day), "{per_day}");
        let warning = history_warning(&small).unwrap();
        assert!(warning.contains("holds about 66 days"), "{warning}");
        assert_eq!(history_warning(&config("64MiB")), None);
    }
}
