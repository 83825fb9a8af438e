//! `spindle read`: one read for commissioning. Prints the raw registers (or
//! bits) in hex and the decoded values; with `--dlt645`, one data
//! identifier of a DL/T 645-2007 meter: the request and answer frames in
//! hex and the value in the identifier's format (`--serial PORT --dlt645
//! --meter ADDR --di DI`). Only read requests can be sent.
//!
//! Exit 0 with data, 1 for bad arguments, 2 when the device gave no data
//! (no answer, a Modbus exception, a DL/T 645 abnormal answer, or a
//! malformed answer).

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use clap::ValueEnum;
use spindle_config::model::{Area, Parity, Point, SerialBus, ValueType, WordOrder};
use spindle_protocols::dlt645;
use spindle_protocols::modbus::decode::{PointValue, decode_bit, decode_point};
use spindle_protocols::modbus::transport::{Link, Response, RtuLink, TcpLink};

use crate::cli::{EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("link").required(true).args(["tcp", "serial"])))]
pub struct Args {
    /// Modbus TCP device, HOST:PORT.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Serial port of an RS-485 bus (Modbus RTU).
    #[arg(long, requires = "baud")]
    pub serial: Option<String>,
    #[arg(long)]
    pub baud: Option<u32>,
    /// Parity; default none, or even with --dlt645 (DL/T 645-2007 is 8E1).
    #[arg(long, value_enum)]
    pub parity: Option<ParityArg>,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(5..=8))]
    pub data_bits: u8,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Unit (slave) id.
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    #[arg(long, value_enum, default_value_t = AreaArg::Holding)]
    pub area: AreaArg,
    /// 0-based protocol address (decimal or 0x-prefixed hex).
    #[arg(long, value_parser = parse_address, required_unless_present = "dlt645")]
    pub address: Option<u16>,
    /// Speak DL/T 645-2007 to a meter on the serial port (with --meter and --di).
    #[arg(long, requires_all = ["serial", "meter", "di"], conflicts_with_all = ["tcp", "address"])]
    pub dlt645: bool,
    /// DL/T 645 meter address, 12 digits as printed on the meter.
    #[arg(long, requires = "dlt645", value_parser = parse_meter)]
    pub meter: Option<dlt645::Address>,
    /// DL/T 645 data identifier, 8 hex digits DI3 first (e.g. 02010100).
    #[arg(long, requires = "dlt645", value_parser = parse_di)]
    pub di: Option<dlt645::Di>,
    /// Registers (or bits) to read; default: one value of `--type`.
    #[arg(long)]
    pub count: Option<u16>,
    #[arg(long = "type", value_enum, default_value_t = TypeArg::U16)]
    pub value_type: TypeArg,
    #[arg(long, value_enum, default_value_t = OrderArg::Abcd, ignore_case = true)]
    pub order: OrderArg,
    /// For `--type bool` on a register: the bit (0–15).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=15))]
    pub bit: Option<u8>,
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, default_value_t = 0.0)]
    pub offset: f64,
    /// How long to wait for the answer.
    #[arg(long, default_value = "1s", value_parser = spindle_config::units::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ParityArg {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AreaArg {
    Holding,
    Input,
    Coil,
    Discrete,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TypeArg {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrderArg {
    #[value(name = "ABCD")]
    Abcd,
    #[value(name = "CDAB")]
    Cdab,
    #[value(name = "BADC")]
    Badc,
    #[value(name = "DCBA")]
    Dcba,
}

fn parse_meter(s: &str) -> Result<dlt645::Address, String> {
    dlt645::Address::parse(s).map_err(|e| e.to_string())
}

fn parse_di(s: &str) -> Result<dlt645::Di, String> {
    dlt645::Di::parse(s).map_err(|e| e.to_string())
}

fn parse_address(s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed
        .map_err(|_| format!("expected an address from 0 to 65535 (decimal or 0x hex), got {s:?}"))
}

fn area(a: AreaArg) -> Area {
    match a {
        AreaArg::Holding => Area::Holding,
        AreaArg::Input => Area::Input,
        AreaArg::Coil => Area::Coil,
        AreaArg::Discrete => Area::Discrete,
    }
}

fn value_type(t: TypeArg) -> ValueType {
    match t {
        TypeArg::Bool => ValueType::Bool,
        TypeArg::U16 => ValueType::U16,
        TypeArg::I16 => ValueType::I16,
        TypeArg::U32 => ValueType::U32,
        TypeArg::I32 => ValueType::I32,
        TypeArg::U64 => ValueType::U64,
        TypeArg::I64 => ValueType::I64,
        TypeArg::F32 => ValueType::F32,
        TypeArg::F64 => ValueType::F64,
        TypeArg::String => ValueType::String,
    }
}

fn order(o: OrderArg) -> WordOrder {
    match o {
        OrderArg::Abcd => WordOrder::Abcd,
        OrderArg::Cdab => WordOrder::Cdab,
        OrderArg::Badc => WordOrder::Badc,
        OrderArg::Dcba => WordOrder::Dcba,
    }
}

/// The point the arguments describe (its width decides the default count).
fn point(args: &Args) -> Result<Point, String> {
    let area = area(args.area);
    let value_type = value_type(args.value_type);
    if area.is_bit() && value_type != ValueType::Bool {
        return Err(format!(
            "a {} read gives bits: use --type bool",
            area.as_str()
        ));
    }
    if !args.scale.is_finite() || !args.offset.is_finite() {
        return Err("--scale and --offset must be finite numbers".into());
    }
    let length = match (value_type, args.count) {
        (ValueType::String, Some(n)) => {
            Some(NonZeroU16::new(n).ok_or("--count must be at least 1")?)
        }
        (ValueType::String, None) => {
            return Err("--type string needs --count (registers of text)".into());
        }
        _ => None,
    };
    Ok(Point {
        name: "value".into(),
        area,
        address: args.address.unwrap_or(0),
        value_type,
        order: order(args.order),
        bit: args.bit,
        length,
        scale: args.scale,
        offset: args.offset,
        unit: None,
        counter: false,
        deadband: None,
        rollover: None,
    })
}

pub fn run(args: &Args) -> u8 {
    if args.dlt645 {
        return run_dlt645(args);
    }
    let point = match point(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let width = point.width();
    let count = args.count.unwrap_or(width).max(1);
    let cap = point.area.protocol_max();
    if count > cap || u32::from(point.address) + u32::from(count) > 65_536 {
        eprintln!("error: --count must be 1 to {cap} and stay within address 65535");
        return EXIT_BAD_INPUT;
    }
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        if let Some(target) = &args.tcp {
            TcpLink::new(target.clone(), args.timeout)
                .read(args.unit, point.area, point.address, count)
                .await
        } else {
            RtuLink::new(&serial_bus(args), args.timeout)
                .read(args.unit, point.area, point.address, count)
                .await
        }
    });
    match result {
        Ok(response) => {
            print!("{}", render(&point, count, &response));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: no data from unit {} ({}): {e}", args.unit, e.word());
            EXIT_RUNTIME
        }
    }
}

/// The serial bus the arguments describe.
fn serial_bus(args: &Args) -> SerialBus {
    SerialBus {
        name: "read".into(),
        port: args.serial.clone().unwrap_or_default(),
        baud: NonZeroU32::new(args.baud.unwrap_or(9600)).unwrap_or(NonZeroU32::MIN),
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

/// `--dlt645`: one data identifier of one meter.
fn run_dlt645(args: &Args) -> u8 {
    let (Some(meter), Some(di)) = (args.meter, args.di) else {
        eprintln!("error: --dlt645 needs --meter and --di");
        return EXIT_BAD_INPUT;
    };
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let request = dlt645::Request::ReadData { address: meter, di };
    let bytes = |di| dlt645::lookup(di).map_or(4, |info| usize::from(info.format.bytes));
    let value_len = match dlt645::block_members(di) {
        Some(members) => members.into_iter().map(bytes).sum(),
        None => bytes(di),
    };
    let mut link = RtuLink::new(&serial_bus(args), args.timeout);
    let result = runtime.block_on(link.read_dlt645(meter, di, value_len));
    println!("request {}", dlt645::frame::hex(&request.encode()));
    if !link.last_answer().is_empty() {
        println!("answer  {}", dlt645::frame::hex(link.last_answer()));
    }
    match result {
        Ok(value) => {
            print!("{}", render_dlt645(di, &value));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: no data from meter {meter} ({}): {e}", e.word());
            EXIT_RUNTIME
        }
    }
}

/// The values of a DL/T 645 answer: one line per identifier (a block's
/// members in order), in the identifier's format and unit.
pub fn render_dlt645(di: dlt645::Di, value: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let members = dlt645::block_members(di).unwrap_or_else(|| vec![di]);
    let mut rest = value;
    for member in members {
        let Some(info) = dlt645::lookup(member) else {
            let _ = writeln!(
                out,
                "{member}: value bytes (low first) {}; not in the built-in table",
                dlt645::frame::hex(rest)
            );
            return out;
        };
        let len = usize::from(info.format.bytes);
        let Some((bytes, tail)) = rest.split_at_checked(len) else {
            let _ = writeln!(
                out,
                "{member} ({}): decode error: {} bytes left, {len} needed",
                info.name,
                rest.len()
            );
            return out;
        };
        rest = tail;
        let shown = dlt645::bcd::decode(info.format, bytes).map_or_else(
            |e| format!("decode error: {e}"),
            |v| {
                let mut s = String::new();
                crate::wire::json::number(&mut s, v.value());
                if !info.unit.is_empty() {
                    s.push(' ');
                    s.push_str(info.unit);
                }
                s
            },
        );
        let _ = writeln!(out, "{member} ({}, {}): {shown}", info.name, info.format);
    }
    if !rest.is_empty() {
        let _ = writeln!(
            out,
            "{} more value bytes: {}",
            rest.len(),
            dlt645::frame::hex(rest)
        );
    }
    out
}

/// The text printed for a successful read.
pub fn render(point: &Point, count: u16, response: &Response) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({:#06x}) count {count}: {}",
        point.area.as_str(),
        point.address,
        point.address,
        response.to_hex()
    );
    let width = point.width().max(1);
    match response {
        Response::Bits(bits) => {
            for (i, bit) in bits.iter().enumerate() {
                let address = usize::from(point.address) + i;
                let shown = decode_bit(point, *bit)
                    .map_or_else(|e| format!("decode error: {e}"), |d| show(&d.value));
                let _ = writeln!(out, "  {address:>5}  {shown}");
            }
        }
        Response::Registers(words) => {
            let mut offset = 0usize;
            while offset + usize::from(width) <= words.len() {
                let mut p = point.clone();
                p.address = point
                    .address
                    .saturating_add(u16::try_from(offset).unwrap_or(u16::MAX));
                let shown = match words.get(offset..) {
                    Some(slice) => decode_point(&p, slice)
                        .map_or_else(|e| format!("decode error: {e}"), |d| show(&d.value)),
                    None => break,
                };
                let _ = writeln!(
                    out,
                    "  {:>5} ({:#06x})  {} {}  {shown}",
                    p.address,
                    p.address,
                    p.value_type.as_str(),
                    p.order.as_str()
                );
                offset += usize::from(width);
            }
        }
    }
    out
}

fn show(v: &PointValue) -> String {
    match v {
        PointValue::Bool(b) => b.to_string(),
        PointValue::Number(n) => {
            let mut s = String::new();
            crate::wire::json::number(&mut s, *n);
            s
        }
        PointValue::Text(t) => format!("{t:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dlt645_value_is_shown_in_its_format_and_unit() {
        let voltage = dlt645::Di(0x0201_0100);
        assert_eq!(
            render_dlt645(voltage, &[0x98, 0x22]),
            "02010100 (voltage, XXX.X): 229.8 V\n"
        );
        let block = dlt645::Di(0x0201_FF00);
        assert_eq!(
            render_dlt645(block, &[0x98, 0x22, 0x05, 0x23, 0x00, 0xA0]),
            "02010100 (voltage, XXX.X): 229.8 V\n02010200 (voltage, XXX.X): 230.5 V\n\
             02010300 (voltage, XXX.X): decode error: byte 0xa0 at 1 is not BCD\n"
        );
        assert_eq!(
            render_dlt645(dlt645::Di(0x0400_0401), &[0x78, 0x56]),
            "04000401: value bytes (low first) 78 56; not in the built-in table\n"
        );
        assert_eq!(
            render_dlt645(dlt645::Di(0x0203_0000), &[0x45, 0x23, 0x81]),
            "02030000 (active power, ±XX.XXXX): -1.2345 kW\n"
        );
    }
}
