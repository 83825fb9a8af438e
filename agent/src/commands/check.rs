//! `spindle check -c FILE`: validate a config, print each device's read plan
//! and the estimated load of each serial bus.
//!
//! Exit 1 listing every error; a bus loaded over 100 % is a warning (exit 0).

use std::fmt::Write as _;
use std::path::PathBuf;

use spindle_config::model::{Config, DeviceLink};
use spindle_protocols::modbus::plan::plan_reads;

use crate::busload::{self, DeviceLoad};
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
        let plan = plan_reads(&device.points, device.max_registers.get(), device.max_gap);
        let link = match &device.link {
            DeviceLink::Serial(bus) => format!("serial {bus}"),
            DeviceLink::Tcp(endpoint) => format!("tcp {endpoint}"),
        };
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
        if let DeviceLink::Serial(bus) = &device.link {
            loads.push((
                bus.clone(),
                DeviceLoad {
                    name: device.name.clone(),
                    poll: device.poll,
                    requests: plan.requests().iter().map(|r| (r.area, r.count)).collect(),
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
            "  (assumes {} ms device turnaround per request; frames and 3.5-character silent intervals counted)",
            busload::DEVICE_TURNAROUND.as_millis()
        );
    }
    (out, overloaded)
}
