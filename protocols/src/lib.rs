//! spindle's Modbus side: links (TCP, RTU), read planning, decoding, and the
//! device simulator used by `spindle simulate` and the tests.

pub mod modbus;
pub mod sim;
