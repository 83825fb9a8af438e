//! The `rtu_frame` check: parsing arbitrary bytes as the RTU answer to a
//! read never panics, a complete answer never claims more bytes than were
//! given, and data comes back exactly as many values as asked.
//!
//! Input: a selector byte (area = low 2 bits, count = the other 6 + 1), the
//! unit id asked, then the bytes received.

use spindle_config::model::Area;
use spindle_protocols::modbus::Response;
use spindle_protocols::modbus::rtu::{Parsed, parse_response};

pub(crate) fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&unit, rest)) = rest.split_first() else {
        return;
    };
    let area = match selector % 4 {
        0 => Area::Holding,
        1 => Area::Input,
        2 => Area::Coil,
        _ => Area::Discrete,
    };
    let count = u16::from(selector >> 2) + 1;
    if let Ok(Parsed::Complete { answer, len }) = parse_response(rest, unit, area, count) {
        assert!(len <= rest.len());
        if let Ok(response) = answer {
            assert_eq!(response.len(), usize::from(count));
            assert_eq!(matches!(response, Response::Bits(_)), area.is_bit());
        }
    }
}
