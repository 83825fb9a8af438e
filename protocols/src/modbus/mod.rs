//! Modbus client: read planning ([`plan`]), decoding ([`decode`]), the two
//! error layers ([`error`]), read-only links over TCP and RTU ([`transport`],
//! [`rtu`] framing) and the device poller ([`poll`]).

pub mod decode;
pub mod error;
pub mod plan;

pub use decode::{
    DecodeError, Decoded, EncodeError, PointValue, RawValue, decode_bit, decode_point, encode_bit,
    encode_point,
};
pub use error::{ExceptionCode, LinkError, PointError, ReadError};
pub use plan::{ReadPlan, ReadRequest, plan_reads};
