//! `spindle scan`: find which unit ids answer on an RS-485 bus.
//!
//! Probes each unit id of `--units` (default 1–247) in turn with one harmless
//! read (by default FC03, one holding register at address 0) over the same
//! [`RtuLink`] the agent uses, so a dead unit costs the scan one timeout and
//! a late answer is never credited to the next unit. A unit is present when
//! it answers, with data or with a Modbus exception (most devices answer
//! "illegal data address" for a register they lack), except the gateway
//! exceptions 10 and 11, which say the unit did *not* answer behind a
//! gateway. Garbled answers (bad CRC, another unit id) are listed as
//! warnings: they usually mean a wrong baud rate or parity, or two devices
//! with the same id.
//!
//! Prints one line per present unit on stdout, a progress line on stderr
//! while it runs. Exit 0 when a unit answered, 2 when none did (or the port
//! cannot be opened), 1 for bad arguments.
//!
//! With `--dlt645` it finds DL/T 645-2007 meters instead, by address
//! abbreviation (缩位寻址, [`spindle_protocols::dlt645::scan`]): the low
//! address byte 00–99 with five `AA` bytes, descending a byte on every
//! answer, clean or garbled, so meters sharing low bytes are all found (100
//! probes a level: a line of a few meters takes some thousand probes, one
//! timeout each where nobody answers). `--single` asks read address (13H)
//! instead: the shortcut for a line known to hold one meter.

use std::io::{IsTerminal as _, Write as _};
use std::num::NonZeroU32;
use std::time::Duration;

use spindle_config::model::{Area, Parity, SerialBus};
use spindle_protocols::modbus::error::{ExceptionCode, LinkError, ReadError};
use spindle_protocols::modbus::transport::{Link as _, RtuLink};

use crate::cli::{EXIT_OK, EXIT_RUNTIME};
use crate::commands::read::{AreaArg, ParityArg};

/// The highest unit id a serial device may have (248–255 are reserved, 0 is
/// broadcast).
const MAX_UNIT: u8 = 247;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serial port of the RS-485 bus.
    #[arg(long)]
    pub serial: String,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub baud: u32,
    /// Parity; default none, or even with --dlt645 (DL/T 645-2007 is 8E1).
    #[arg(long, value_enum)]
    pub parity: Option<ParityArg>,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(5..=8))]
    pub data_bits: u8,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Unit ids to probe: ranges and single ids, comma-separated (`1-247`, `2,5,10-20`).
    #[arg(long, default_value = "1-247", value_parser = parse_units)]
    pub units: Units,
    /// How long to wait for each unit's answer.
    #[arg(long, default_value = "100ms", value_parser = spindle_config::units::parse_duration)]
    pub timeout: Duration,
    /// Area of the probing read (one value).
    #[arg(long, value_enum, default_value_t = AreaArg::Holding)]
    pub area: AreaArg,
    /// Address of the probing read (0-based).
    #[arg(long, default_value_t = 0)]
    pub address: u16,
    /// Find DL/T 645-2007 meters (by address abbreviation) instead of Modbus units.
    #[arg(long, conflicts_with_all = ["units", "area", "address"])]
    pub dlt645: bool,
    /// With --dlt645: the line holds one meter; ask its address (13H).
    #[arg(long, requires = "dlt645")]
    pub single: bool,
}

/// Unit ids to probe, in ascending order, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units(pub Vec<u8>);

/// Parses `1-247`, `5`, `2,5,10-20` into unit ids 1–247.
pub fn parse_units(text: &str) -> Result<Units, String> {
    let id = |s: &str| -> Result<u8, String> {
        match s.trim().parse::<u8>() {
            Ok(unit) if (1..=MAX_UNIT).contains(&unit) => Ok(unit),
            _ => Err(format!(
                "expected unit ids from 1 to {MAX_UNIT}, got {:?}",
                s.trim()
            )),
        }
    };
    let mut units = Vec::new();
    for part in text.split(',') {
        let (first, last) = if let Some((first, last)) = part.split_once('-') {
            (id(first)?, id(last)?)
        } else {
            let unit = id(part)?;
            (unit, unit)
        };
        if first > last {
            return Err(format!("the range {:?} runs backwards", part.trim()));
        }
        units.extend(first..=last);
    }
    units.sort_unstable();
    units.dedup();
    Ok(Units(units))
}

/// What a unit said to the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Data, as hex words (or bits).
    Data(String),
    /// A Modbus exception: the device is there.
    Exception(ExceptionCode),
}

/// Whether an answer to the probe shows the unit is present, and what it said.
pub fn classify(result: &Result<String, ReadError>) -> Option<Said> {
    match result {
        Ok(hex) => Some(Said::Data(hex.clone())),
        // 10, 11: a gateway answering that the unit behind it did not.
        Err(ReadError::Exception(ExceptionCode(10 | 11)) | ReadError::Link(_)) => None,
        Err(ReadError::Exception(code)) => Some(Said::Exception(*code)),
    }
}

fn exception_name(code: ExceptionCode) -> &'static str {
    match code.0 {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

fn format_of(bus: &SerialBus) -> String {
    let parity = match bus.parity {
        Parity::None => 'N',
        Parity::Even => 'E',
        Parity::Odd => 'O',
    };
    format!("{}{parity}{}", bus.data_bits, bus.stop_bits)
}

/// Keeps the progress line on stderr: rewritten in place on a terminal, a
/// line every 16 units otherwise.
struct Progress {
    terminal: bool,
    total: usize,
}

impl Progress {
    fn show(&self, done: usize, unit: u8, answered: usize) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(
                err,
                "\rProbing unit {unit:>3} ({done}/{}), {answered} answered so far ",
                self.total
            );
            let _ = err.flush();
        } else if done > 0 && done % 16 == 0 {
            let _ = writeln!(
                err,
                "Probed {done}/{} unit ids, {answered} answered so far",
                self.total
            );
        }
    }

    fn finish(&self) {
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r{:60}\r", "");
        }
    }
}

fn bus_of(args: &Args) -> SerialBus {
    SerialBus {
        name: "scan".into(),
        port: args.serial.clone(),
        baud: NonZeroU32::new(args.baud).unwrap_or(NonZeroU32::MIN),
        parity: match args.parity.unwrap_or(if args.dlt645 {
            ParityArg::Even
        } else {
            ParityArg::None
        }) {
            ParityArg::None => Parity::None,
            ParityArg::Even => Parity::Even,
            ParityArg::Odd => Parity::Odd,
        },
        data_bits: args.data_bits,
        stop_bits: args.stop_bits,
        turnaround: Duration::ZERO,
    }
}

fn area_of(area: AreaArg) -> Area {
    match area {
        AreaArg::Holding => Area::Holding,
        AreaArg::Input => Area::Input,
        AreaArg::Coil => Area::Coil,
        AreaArg::Discrete => Area::Discrete,
    }
}

/// Prints what `unit` said (stdout) or a warning about it (stderr); true
/// when the unit is present.
fn report(unit: u8, area: Area, address: u16, result: &Result<String, ReadError>) -> bool {
    match (classify(result), result) {
        (Some(Said::Data(hex)), _) => {
            println!("unit {unit:>3}: {} {address} = {hex}", area.as_str());
            true
        }
        (Some(Said::Exception(code)), _) => {
            println!(
                "unit {unit:>3}: exception {code} ({})",
                exception_name(code)
            );
            true
        }
        (None, Err(ReadError::Link(error))) if !error.is_unreachable() => {
            eprintln!(
                "warning: unit {unit}: garbled answer ({error}); check the baud rate, \
                 parity and wiring, and that no two devices share the id"
            );
            false
        }
        (None, Err(ReadError::Exception(code))) => {
            eprintln!(
                "warning: unit {unit}: a gateway answered exception {code} ({})",
                exception_name(*code)
            );
            false
        }
        (None, _) => false,
    }
}

/// `--dlt645`: the meters on the line.
fn run_dlt645(args: &Args) -> u8 {
    let bus = bus_of(args);
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut link = RtuLink::new(&bus, args.timeout);
    eprintln!(
        "Scanning for DL/T 645 meters on {} at {} baud {}, {:?} a probe{}",
        bus.port,
        bus.baud,
        format_of(&bus),
        args.timeout,
        if args.single {
            ", read address (one meter on the line)"
        } else {
            ", by address abbreviation"
        }
    );
    if args.single {
        return match runtime.block_on(link.read_dlt645_address()) {
            Ok(address) => {
                println!("meter {address}");
                EXIT_OK
            }
            Err(error) => {
                eprintln!("No meter answered read address ({}): {error}", error.word());
                EXIT_RUNTIME
            }
        };
    }
    let terminal = std::io::stderr().is_terminal();
    let mut probes = 0_usize;
    let result = runtime.block_on(link.find_dlt645_meters(|address, found| {
        probes += 1;
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(
                err,
                "\rProbing {address} ({probes} probes), {found} found so far "
            );
            let _ = err.flush();
        } else if probes % 100 == 0 {
            let _ = writeln!(err, "Probed {probes} addresses, {found} found so far");
        }
    }));
    if terminal {
        let _ = write!(std::io::stderr().lock(), "\r{:70}\r", "");
    }
    match result {
        Ok(found) if !found.is_empty() => {
            for meter in &found {
                if meter.clean {
                    println!("meter {}", meter.address);
                } else {
                    println!(
                        "meter {} (garbled: more than one meter answers to this address)",
                        meter.address
                    );
                }
            }
            eprintln!(
                "{} meters found on {} in {probes} probes",
                found.len(),
                bus.port
            );
            EXIT_OK
        }
        Ok(_) => {
            eprintln!(
                "No DL/T 645 meter answered on {} at {} baud {} ({probes} probes)",
                bus.port,
                bus.baud,
                format_of(&bus)
            );
            EXIT_RUNTIME
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_RUNTIME
        }
    }
}

pub fn run(args: &Args) -> u8 {
    if args.dlt645 {
        return run_dlt645(args);
    }
    let bus = bus_of(args);
    let area = area_of(args.area);
    let units = &args.units.0;
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let longest = (args.timeout + bus.char_time() * 16) * u32::try_from(units.len()).unwrap_or(0);
    eprintln!(
        "Scanning {} unit ids on {} at {} baud {}, {} {} at {}, {:?} each (at most {:.0} s)",
        units.len(),
        bus.port,
        bus.baud,
        format_of(&bus),
        area.as_str(),
        if area.is_bit() { "bit" } else { "register" },
        args.address,
        args.timeout,
        longest.as_secs_f64().ceil()
    );
    let progress = Progress {
        terminal: std::io::stderr().is_terminal(),
        total: units.len(),
    };
    let mut link = RtuLink::new(&bus, args.timeout);
    let mut answered = 0_usize;
    let outcome: Result<(), LinkError> = runtime.block_on(async {
        for (done, &unit) in units.iter().enumerate() {
            progress.show(done, unit, answered);
            let result = link
                .read(unit, area, args.address, 1)
                .await
                .map(|response| response.to_hex());
            if let Err(ReadError::Link(error @ LinkError::Connect { .. })) = &result {
                return Err(error.clone());
            }
            if !result.as_ref().is_err_and(ReadError::is_unreachable) {
                // Something will be printed: clear the progress line first.
                progress.finish();
            }
            if report(unit, area, args.address, &result) {
                answered += 1;
            }
        }
        Ok(())
    });
    progress.finish();
    if let Err(error) = outcome {
        eprintln!("error: {error}");
        return EXIT_RUNTIME;
    }
    if answered == 0 {
        eprintln!(
            "No unit answered among {} unit ids on {} at {} baud {}",
            units.len(),
            bus.port,
            bus.baud,
            format_of(&bus)
        );
        return EXIT_RUNTIME;
    }
    eprintln!(
        "{answered} of {} unit ids answered on {}",
        units.len(),
        bus.port
    );
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_lists_take_ranges_and_single_ids() {
        assert_eq!(parse_units("1-247").unwrap().0.len(), 247);
        assert_eq!(parse_units("5").unwrap().0, [5]);
        assert_eq!(parse_units("10-12, 2,5,11").unwrap().0, [2, 5, 10, 11, 12]);
    }

    #[test]
    fn unit_lists_outside_1_to_247_or_backwards_are_refused() {
        for bad in ["0", "248", "1-248", "9-3", "", "a", "1-", "300"] {
            assert!(parse_units(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_and_exceptions_count_as_present_gateway_exceptions_and_silence_do_not() {
        assert_eq!(
            classify(&Ok("0x0001".into())),
            Some(Said::Data("0x0001".into()))
        );
        assert_eq!(
            classify(&Err(ReadError::Exception(ExceptionCode(2)))),
            Some(Said::Exception(ExceptionCode(2)))
        );
        assert_eq!(
            classify(&Err(ReadError::Exception(ExceptionCode(11)))),
            None
        );
        assert_eq!(
            classify(&Err(ReadError::Link(LinkError::Timeout {
                after: Duration::from_millis(100)
            }))),
            None
        );
        assert_eq!(
            classify(&Err(ReadError::Link(LinkError::BadCrc {
                computed: 1,
                received: 2
            }))),
            None
        );
    }
}
