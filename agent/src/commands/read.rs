//! `spindle read`: one read for commissioning. Prints the raw registers (or
//! bits) in hex and the decoded values.
//!
//! Exit 0 with data, 1 for bad arguments, 2 when the device gave no data
//! (no answer, a Modbus exception, or a malformed answer).

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use clap::ValueEnum;
use spindle_config::model::{Area, Parity, Point, SerialBus, ValueType, WordOrder};
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
    #[arg(long, value_enum, default_value_t = ParityArg::None)]
    pub parity: ParityArg,
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
    #[arg(long, value_parser = parse_address)]
    pub address: u16,
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
        address: args.address,
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
    if count > cap || u32::from(args.address) + u32::from(count) > 65_536 {
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
                .read(args.unit, point.area, args.address, count)
                .await
        } else {
            let bus = SerialBus {
                name: "read".into(),
                port: args.serial.clone().unwrap_or_default(),
                baud: NonZeroU32::new(args.baud.unwrap_or(9600)).unwrap_or(NonZeroU32::MIN),
                parity: match args.parity {
                    ParityArg::None => Parity::None,
                    ParityArg::Even => Parity::Even,
                    ParityArg::Odd => Parity::Odd,
                },
                data_bits: args.data_bits,
                stop_bits: args.stop_bits,
                turnaround: Duration::ZERO,
            };
            RtuLink::new(&bus, args.timeout)
                .read(args.unit, point.area, args.address, count)
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
