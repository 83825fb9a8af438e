//! Estimated share of an RS-485 bus's time used by its devices' polls.
//!
//! Pure. One read transaction on a Modbus RTU line costs:
//!
//! - the request frame: unit (1) + function (1) + start (2) + count (2) + CRC (2) = 8 bytes;
//! - the silent interval after it (3.5 character times, 1.75 ms above 19200 baud);
//! - the device's turnaround, from the end of the request to the first byte of
//!   its reply: [`DEVICE_TURNAROUND`], an assumption (meters answer in 2–20 ms;
//!   5 ms is typical of the DTSU666/SDM630 class at 9600 baud);
//! - the response frame: unit (1) + function (1) + byte count (1) + data + CRC (2),
//!   data = 2 bytes per register, or one byte per 8 coils/discretes;
//! - the silent interval after it, and the bus's configured `turnaround`.
//!
//! A DL/T 645-2007 read (a [`Transaction::Dlt645`]) costs the same parts
//! with its own frames: the request `FE FE FE FE 68 A0…A5 68 11 04 DI0…DI3
//! CS 16` = 20 bytes; the answer, counted with the same four `FE` wake-up
//! bytes (most meters send them), `68 A0…A5 68 91 L DI0…DI3 DATA CS 16` =
//! 20 + value bytes; and [`DLT645_TURNAROUND`] instead of
//! [`DEVICE_TURNAROUND`]. A mixed bus adds both kinds into one load.
//!
//! Each byte takes `bits_per_char` bit times (start + data + parity + stop).
//! The load of a bus is the sum over its devices of (time per poll ÷ poll
//! interval); above 1.0 the configured poll rates cannot be met.

use std::time::Duration;

use spindle_config::model::{Area, SerialBus};

/// Assumed time a device takes to start answering a request, after the
/// request's silent interval. With devices that answer in this time, the
/// estimate is within 2 % of the load measured on a timed bus
/// (`cargo run --release -p spindle --example bus_bench`); a bus of slower
/// devices should declare the difference as its `turnaround`.
pub const DEVICE_TURNAROUND: Duration = Duration::from_millis(5);

/// Assumed time a DL/T 645 meter takes to start answering, after the
/// request's silent interval: an assumption (electricity meters of this
/// class answer slower than Modbus meters; a bus of slower meters should
/// declare the difference as its `turnaround`).
pub const DLT645_TURNAROUND: Duration = Duration::from_millis(20);

/// Request frame bytes of a read (function codes 1–4).
pub const REQUEST_BYTES: u32 = 8;

/// Request frame bytes of a DL/T 645 read data (11H): four `FE`, 12 bytes
/// of frame, the 4-byte identifier.
pub const DLT645_REQUEST_BYTES: u32 = 20;

/// Answer frame bytes of a DL/T 645 read of `value_bytes` value bytes.
pub fn dlt645_answer_bytes(value_bytes: u32) -> u32 {
    20 + value_bytes
}

/// One read transaction of a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transaction {
    /// A Modbus read of `count` registers or bits of `area`.
    Modbus { area: Area, count: u16 },
    /// A DL/T 645 read data whose answer carries `value_bytes` value bytes.
    Dlt645 { value_bytes: u32 },
}

/// Response frame bytes of a read of `count` registers or bits.
pub fn response_bytes(area: Area, count: u16) -> u32 {
    let data = if area.is_bit() {
        u32::from(count).div_ceil(8)
    } else {
        2 * u32::from(count)
    };
    5 + data
}

/// Time one read transaction occupies the bus.
pub fn transaction_time(bus: &SerialBus, transaction: Transaction) -> Duration {
    let (bytes, answer_after) = match transaction {
        Transaction::Modbus { area, count } => (
            REQUEST_BYTES + response_bytes(area, count),
            DEVICE_TURNAROUND,
        ),
        Transaction::Dlt645 { value_bytes } => (
            DLT645_REQUEST_BYTES + dlt645_answer_bytes(value_bytes),
            DLT645_TURNAROUND,
        ),
    };
    bus.char_time() * bytes + bus.silent_interval() * 2 + answer_after + bus.turnaround
}

/// One device's reads on a bus.
#[derive(Debug, Clone)]
pub struct DeviceLoad {
    pub name: String,
    pub poll: Duration,
    /// Each read of one poll.
    pub requests: Vec<Transaction>,
}

impl DeviceLoad {
    /// Bus time one poll of this device takes.
    pub fn time_per_poll(&self, bus: &SerialBus) -> Duration {
        self.requests
            .iter()
            .map(|&transaction| transaction_time(bus, transaction))
            .sum()
    }

    /// Share of the bus this device uses at its poll rate.
    pub fn share(&self, bus: &SerialBus) -> f64 {
        self.time_per_poll(bus).as_secs_f64() / self.poll.as_secs_f64()
    }
}

/// Share of the bus's time all `devices` use (1.0 = fully busy).
pub fn bus_load(bus: &SerialBus, devices: &[DeviceLoad]) -> f64 {
    devices.iter().map(|d| d.share(bus)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_config::model::Parity;
    use std::num::NonZeroU32;

    fn bus(baud: u32, parity: Parity) -> SerialBus {
        SerialBus {
            name: "b".into(),
            port: "/dev/null".into(),
            baud: NonZeroU32::new(baud).unwrap(),
            parity,
            data_bits: 8,
            stop_bits: 1,
            turnaround: Duration::ZERO,
        }
    }

    #[test]
    fn a_character_at_9600_8e1_takes_eleven_bit_times() {
        let b = bus(9600, Parity::Even);
        assert_eq!(b.bits_per_char(), 11);
        assert!((b.char_time().as_secs_f64() - 11.0 / 9600.0).abs() < 1e-8);
    }

    #[test]
    fn the_silent_interval_is_fixed_above_19200_baud() {
        assert_eq!(
            bus(38400, Parity::None).silent_interval(),
            Duration::from_micros(1750)
        );
        let at_9600 = bus(9600, Parity::None).silent_interval().as_secs_f64();
        assert!((at_9600 - 3.5 * 10.0 / 9600.0).abs() < 1e-8);
    }

    #[test]
    fn a_ten_register_read_at_9600_8n1_costs_frames_gaps_and_turnaround() {
        let b = bus(9600, Parity::None);
        // 8 + 25 bytes of 10 bits, two silent intervals of 35 bits, 5 ms device turnaround.
        let expected = (33.0 * 10.0 + 70.0) / 9600.0 + 0.005;
        let got = transaction_time(
            &b,
            Transaction::Modbus {
                area: Area::Holding,
                count: 10,
            },
        )
        .as_secs_f64();
        assert!((got - expected).abs() < 1e-7, "{got} vs {expected}");
    }

    #[test]
    fn coils_are_packed_eight_to_a_byte() {
        assert_eq!(response_bytes(Area::Coil, 1), 6);
        assert_eq!(response_bytes(Area::Coil, 8), 6);
        assert_eq!(response_bytes(Area::Coil, 9), 7);
        assert_eq!(response_bytes(Area::Input, 2), 9);
    }

    #[test]
    fn load_adds_up_over_devices_at_their_poll_rates() {
        let b = bus(9600, Parity::None);
        let d = DeviceLoad {
            name: "m".into(),
            poll: Duration::from_secs(1),
            requests: vec![Transaction::Modbus {
                area: Area::Holding,
                count: 10,
            }],
        };
        let one = bus_load(&b, std::slice::from_ref(&d));
        let two = bus_load(
            &b,
            &[
                d.clone(),
                DeviceLoad {
                    poll: Duration::from_millis(500),
                    ..d
                },
            ],
        );
        assert!((two - 3.0 * one).abs() < 1e-8);
    }

    #[test]
    fn a_dlt645_read_at_2400_8e1_costs_its_frames_with_preambles_gaps_and_turnaround() {
        let b = bus(2400, Parity::Even);
        // Voltage (2 value bytes): 20 + 22 bytes of 11 bits, two silent
        // intervals of 38.5 bits, 20 ms meter turnaround.
        let expected = (42.0 * 11.0 + 77.0) / 2400.0 + 0.020;
        let got = transaction_time(&b, Transaction::Dlt645 { value_bytes: 2 }).as_secs_f64();
        assert!((got - expected).abs() < 1e-7, "{got} vs {expected}");
    }

    #[test]
    fn a_mixed_bus_has_one_load_the_sum_of_both_protocols() {
        let b = bus(9600, Parity::Even);
        let modbus = DeviceLoad {
            name: "m".into(),
            poll: Duration::from_secs(1),
            requests: vec![Transaction::Modbus {
                area: Area::Holding,
                count: 10,
            }],
        };
        let meter = DeviceLoad {
            name: "d".into(),
            poll: Duration::from_secs(2),
            requests: vec![
                Transaction::Dlt645 { value_bytes: 4 },
                Transaction::Dlt645 { value_bytes: 6 },
            ],
        };
        let both = bus_load(&b, &[modbus.clone(), meter.clone()]);
        let sum = bus_load(&b, &[modbus]) + bus_load(&b, std::slice::from_ref(&meter));
        assert!((both - sum).abs() < 1e-12);
        let meter_alone = (2.0 * (40.0 * 11.0 + 77.0) + 10.0 * 11.0) / 9600.0 + 0.040;
        assert!((bus_load(&b, &[meter]) - meter_alone / 2.0).abs() < 1e-7);
    }
}
