//! Modbus client side: read planning ([`plan`]), decoding ([`decode`]), the
//! two error layers ([`error`]), read-only links over TCP and RTU
//! ([`transport`], with our own framing: RTU in [`rtu`], TCP in [`mbap`]),
//! reconnection [`backoff`], and the device poller ([`poll`]).
//!
//! `plan`, `decode`, `rtu`, `mbap` and `backoff` are pure (no I/O) and
//! property-tested; `transport` and `poll` are the thin async shell.

pub mod decode;
pub mod error;
pub mod mbap;
pub mod plan;
pub mod poll;
pub mod rtu;
pub mod transport;

pub use crate::backoff::Backoff;
pub use decode::{
    DecodeError, Decoded, EncodeError, PointValue, RawValue, decode_bit, decode_point, encode_bit,
    encode_point,
};
pub use error::{ExceptionCode, LinkError, PointError, ReadError};
pub use plan::{ReadPlan, ReadRequest, plan_reads};
pub use poll::{DevicePoller, PollOutcome, RequestRecord};
pub use transport::{AnyLink, Link, Response, RtuLink, TcpLink};
