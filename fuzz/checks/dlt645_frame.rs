//! The `dlt645_frame` check: the DL/T 645-2007 frame decoder on arbitrary
//! bytes never panics; a complete frame never claims more bytes than were
//! given, and a meter's frame encodes back to the bytes it was parsed from
//! (after the wake-up bytes); an answer checked against a request either
//! echoes that request's address and identifier or is refused; a value
//! decoded in the identifier's format is a finite number.
//!
//! Input: a selector byte (low 2 bits: the request asked — read data, read
//! subsequent, read address; bit 2: use the frame's own address as the
//! meter's, so the echo check is passed more often), four bytes of the
//! identifier asked (DI0 first), then the bytes received.

use spindle_protocols::dlt645::frame::{
    Address, Answer, Di, Request, Scanned, check_answer, parse_frame,
};
use spindle_protocols::dlt645::table::decode_value;

pub(crate) fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((di, received)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let di = Di(u32::from_le_bytes(*di));
    let Ok(Scanned::Complete { frame, len }) = parse_frame(received) else {
        return;
    };
    assert!(len <= received.len(), "{len} > {}", received.len());
    let wake_up = received.iter().take_while(|&&byte| byte == 0xFE).count();
    if let Some(encoded) = frame.encode() {
        assert_eq!(
            received.get(wake_up..len),
            Some(encoded.as_slice()),
            "a meter's frame encodes back to its bytes"
        );
    }
    let meter = if selector & 4 == 4 {
        Address::from_wire(frame.address).unwrap_or(Address::ANY)
    } else {
        Address::parse("000012345678").unwrap_or(Address::ANY)
    };
    let request = match selector & 3 {
        0 => Request::ReadData { address: meter, di },
        1 => Request::ReadSubsequent {
            address: meter,
            di,
            seq: selector >> 3,
        },
        _ => Request::ReadAddress,
    };
    let Ok(answer) = check_answer(&request, &frame) else {
        return;
    };
    // Only an answer from the meter asked (a whole address, never a
    // wildcard), and data only for the identifier asked.
    let got = Address::from_wire(frame.address);
    assert!(
        got.is_some_and(|got| request.address().matches(&got) && got.is_complete()),
        "{frame:?} taken as the answer to {request:?}"
    );
    if matches!(answer, Answer::Data { .. }) {
        assert_eq!(
            frame.data.get(..4),
            Some(di.wire().as_slice()),
            "an answer echoes the identifier asked"
        );
    }
    if let Answer::Data { value, .. } = answer
        && let Ok(bcd) = decode_value(di, &value)
    {
        assert!(bcd.value().is_finite(), "{bcd:?}");
    }
}
