//! Simulated Modbus devices for tests and `spindle simulate`.
//!
//! A [`SimDevice`] is a register image (holding, input, coils, discretes)
//! with fault knobs ([`Faults`]: late replies, exception 2 on address
//! ranges, short answers, down, garbage bytes on RTU), shared behind a
//! handle so it can be changed while served. [`SimTcpServer`] serves one
//! device over TCP; [`SimPtyServer`] serves devices over RTU on a
//! pseudo-terminal. Both use tokio-modbus's servers, which keeps the
//! client's own RTU framing honest against an independent implementation.
//!
//! [`dynamics`] moves point values with time (pure formulas); [`config`]
//! reads and checks the `[device.sim]` tables `spindle simulate` takes.
//! [`SimPlant`] builds a whole plant from a configuration and serves it
//! (TCP devices, serial buses with Modbus units and DL/T 645 meters).
//! [`dlt645`] simulates DL/T 645-2007 meters on a line (any byte stream),
//! with their own fault knobs.

pub mod config;
mod device;
pub mod dlt645;
pub mod dynamics;
mod plant;
#[cfg(unix)]
mod pty;
mod tcp;

pub use device::{Faults, Received, SimDevice, SimService};
pub use plant::{ServedBus, ServedTcp, SimPlant, TcpPlacement};
#[cfg(unix)]
pub use pty::SimPtyServer;
pub use tcp::SimTcpServer;
