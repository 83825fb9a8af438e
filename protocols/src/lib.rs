//! spindle's protocol side: Modbus links (TCP, RTU), read planning, decoding,
//! the DL/T 645-2007 codec ([`dlt645`]), and the
//! device simulator used by `spindle simulate` and the tests; [`backoff`],
//! the retry timing that links and the MQTT publisher share.

pub mod backoff;
pub mod dlt645;
pub mod line;
pub mod modbus;
pub mod sim;
