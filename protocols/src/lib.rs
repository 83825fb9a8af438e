//! spindle's Modbus side: links (TCP, RTU), read planning, decoding, and the
//! device simulator used by `spindle simulate` and the tests; [`backoff`],
//! the retry timing that links and the MQTT publisher share.

pub mod backoff;
pub mod modbus;
pub mod sim;
