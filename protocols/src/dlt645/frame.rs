//! DL/T 645-2007 frames: addresses, data identifiers, the master's read
//! requests, and the meter's answers. Pure: no I/O; never panics, whatever
//! the bytes (a cargo-fuzz target for [`parse_frame`] belongs in `fuzz/`).
//!
//! # Frame (DL/T 645-2007 §5, data link layer)
//!
//! ```text
//! [FE…]  68  A0 A1 A2 A3 A4 A5  68  C  L  DATA(L bytes, each +33H)  CS  16
//! ```
//!
//! * up to four `FE` wake-up bytes may precede a frame (a master sends four;
//!   meters answer with none to four) — skipped when parsing;
//! * the address is 12 BCD digits, sent low byte first (`000012345678` as
//!   printed goes out `78 56 34 12 00 00`); `AA` is a wildcard byte (read
//!   address uses `AA AA AA AA AA AA`; address abbreviation, 缩位寻址, puts
//!   `AA` in the high bytes it does not know);
//! * the control code `C`: bit 7 direction (1 = from the meter), bit 6
//!   abnormal answer, bit 5 more frames follow, bits 4–0 the function;
//! * every data byte goes on the wire plus 33H (mod 256) and comes off minus;
//! * `CS` is the sum mod 256 of every byte from the first `68` to the last
//!   data byte; `16` ends the frame.
//!
//! # Read-only by type
//!
//! A [`Request`] can be read data (11H), read subsequent data (12H) or read
//! address (13H), and nothing else: no variant, constructor or field yields
//! another control code, so no write, time-set, trip/close, freeze or clear
//! command can be sent by code that holds only requests. [`Frame::encode`]
//! (for the simulator) refuses a frame whose direction bit says master.
//!
//! # Answers (DL/T 645-2007 §7.1, §7.2, §7.4)
//!
//! | asked | normal | more follows | abnormal |
//! | --- | --- | --- | --- |
//! | 11H read data: `DI` | 91H: `DI N1…Nm` | B1H | D1H: `ERR` |
//! | 12H read subsequent: `DI SEQ` | 92H: `DI N1…Nm SEQ` | B2H | D2H: `ERR` |
//! | 13H read address (to `AA…AA`) | 93H: `A0…A5` | – | – |
//!
//! [`check_answer`] holds an answer against its request: it must come from
//! the meter (direction bit), answer the function asked, come from the
//! address asked (a wildcard byte of the request matches any), and echo the
//! data identifier asked. Anything else is a late or foreign reply
//! ([`AnswerError::is_foreign`]), never a value — the check Modbus RTU
//! cannot make.
//!
//! The abnormal answer's error information word `ERR` (one byte): bit 0
//! other error, bit 1 no requested data, bit 2 password wrong / not
//! authorized, bit 3 baud rate cannot be changed, bit 4 too many year time
//! zones, bit 5 too many day periods, bit 6 too many tariffs, bit 7
//! reserved. [`ErrorByte::word`] gives the SPEC §5 reason (`no_data`, …).

use std::fmt;

use thiserror::Error;

use crate::line::{Framing, Verdict};

/// The frame start and the second start after the address.
pub const START: u8 = 0x68;
/// The frame end.
pub const END: u8 = 0x16;
/// The wake-up byte that may precede a frame.
pub const WAKE_UP: u8 = 0xFE;
/// Wake-up bytes a master sends before each request.
pub const PREAMBLE_LEN: usize = 4;
/// What every data byte carries on the wire.
pub const OFFSET: u8 = 0x33;
/// Bytes of a frame around its data: 68, 6 address, 68, C, L, CS, 16.
pub const OVERHEAD: usize = 12;

/// Control code bits (DL/T 645-2007 §5, control code).
const FROM_METER: u8 = 0x80;
const ABNORMAL: u8 = 0x40;
const MORE_FOLLOWS: u8 = 0x20;
const FUNCTION: u8 = 0x1F;

/// Function codes the client may send.
const READ_DATA: u8 = 0x11;
const READ_SUBSEQUENT: u8 = 0x12;
const READ_ADDRESS: u8 = 0x13;

/// The wildcard address byte.
pub const WILDCARD_BYTE: u8 = 0xAA;

/// A meter address as sent: A0 (lowest two printed digits) first. Every byte
/// is two BCD digits or the wildcard `AA`. Ordered as printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address([u8; 6]);

impl Ord for Address {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A printed address that is not 12 decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a meter address is 12 decimal digits as printed on the meter, got {0:?}")]
pub struct AddressError(pub String);

impl Address {
    /// `AA AA AA AA AA AA`: any meter (read address).
    pub const ANY: Address = Address([WILDCARD_BYTE; 6]);

    /// The address printed on the meter: 12 decimal digits, the highest
    /// first.
    pub fn parse(printed: &str) -> Result<Address, AddressError> {
        let digits = printed.as_bytes();
        if digits.len() != 12 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(AddressError(printed.to_owned()));
        }
        let mut wire = [0_u8; 6];
        for (index, pair) in digits.chunks_exact(2).enumerate() {
            let (Some(high), Some(low)) = (pair.first(), pair.get(1)) else {
                return Err(AddressError(printed.to_owned()));
            };
            if let Some(byte) = wire.get_mut(5 - index) {
                *byte = ((high - b'0') << 4) | (low - b'0');
            }
        }
        Ok(Address(wire))
    }

    /// An address as it came off the wire, if every byte is BCD or `AA`.
    pub fn from_wire(bytes: [u8; 6]) -> Option<Address> {
        bytes
            .iter()
            .all(|&byte| byte == WILDCARD_BYTE || is_bcd(byte))
            .then_some(Address(bytes))
    }

    /// The known low bytes (A0 first, each BCD) with `AA` for the rest: an
    /// abbreviated address (缩位寻址). `None` if a byte is not BCD or more
    /// than six are given.
    pub fn abbreviated(low: &[u8]) -> Option<Address> {
        if low.len() > 6 || !low.iter().all(|&byte| is_bcd(byte)) {
            return None;
        }
        let mut wire = [WILDCARD_BYTE; 6];
        for (slot, byte) in wire.iter_mut().zip(low) {
            *slot = *byte;
        }
        Some(Address(wire))
    }

    /// The six bytes as sent, A0 first.
    pub fn wire(&self) -> [u8; 6] {
        self.0
    }

    /// Whether no byte is a wildcard.
    pub fn is_complete(&self) -> bool {
        !self.0.contains(&WILDCARD_BYTE)
    }

    /// Whether a meter at `meter` answers a request to this address: equal
    /// bytes, or a wildcard here.
    pub fn matches(&self, meter: &Address) -> bool {
        self.0
            .iter()
            .zip(meter.0)
            .all(|(&asked, got)| asked == WILDCARD_BYTE || asked == got)
    }
}

impl fmt::Display for Address {
    /// As printed: the highest byte first (`AA` for a wildcard byte).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.iter().rev() {
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// A data identifier, `DI3 DI2 DI1 DI0` as the standard writes it
/// (`02010100` = phase-A voltage); sent DI0 first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Di(pub u32);

/// A data identifier that is not 8 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a data identifier is 8 hex digits (DI3 first, e.g. \"02010100\"), got {0:?}")]
pub struct DiError(pub String);

impl Di {
    /// 8 hex digits, DI3 first; a `0x` prefix is allowed.
    pub fn parse(text: &str) -> Result<Di, DiError> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(DiError(text.to_owned()));
        }
        u32::from_str_radix(digits, 16)
            .map(Di)
            .map_err(|_| DiError(text.to_owned()))
    }

    /// The four bytes as sent (before +33H), DI0 first.
    pub fn wire(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }

    /// A block identifier: one of DI2–DI0 is `FF` (e.g. `0201FF00`, all
    /// phase voltages).
    pub fn is_block(self) -> bool {
        self.0
            .to_le_bytes()
            .iter()
            .take(3)
            .any(|&byte| byte == 0xFF)
    }
}

impl fmt::Display for Di {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

impl fmt::Debug for Di {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Di({self})")
    }
}

/// What the client may ask a meter. There is no other request: see the
/// module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// 11H: the value of `di`.
    ReadData { address: Address, di: Di },
    /// 12H: frame `seq` (1, 2, …) of the rest of `di`'s value, after an
    /// answer that said more follows.
    ReadSubsequent { address: Address, di: Di, seq: u8 },
    /// 13H to `AA AA AA AA AA AA`: the address of the one meter on the line.
    ReadAddress,
}

impl Request {
    /// The control code: 11H, 12H or 13H.
    pub fn control(&self) -> u8 {
        match self {
            Request::ReadData { .. } => READ_DATA,
            Request::ReadSubsequent { .. } => READ_SUBSEQUENT,
            Request::ReadAddress => READ_ADDRESS,
        }
    }

    /// The address the request goes to.
    pub fn address(&self) -> Address {
        match self {
            Request::ReadData { address, .. } | Request::ReadSubsequent { address, .. } => *address,
            Request::ReadAddress => Address::ANY,
        }
    }

    /// The data identifier asked for, if any.
    pub fn di(&self) -> Option<Di> {
        match self {
            Request::ReadData { di, .. } | Request::ReadSubsequent { di, .. } => Some(*di),
            Request::ReadAddress => None,
        }
    }

    /// The data field before +33H.
    fn data(&self) -> Vec<u8> {
        match self {
            Request::ReadData { di, .. } => di.wire().to_vec(),
            Request::ReadSubsequent { di, seq, .. } => {
                let mut data = di.wire().to_vec();
                data.push(*seq);
                data
            }
            Request::ReadAddress => Vec::new(),
        }
    }

    /// The request on the wire, after the four `FE` wake-up bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![WAKE_UP; PREAMBLE_LEN];
        bytes.extend(build(self.address().wire(), self.control(), &self.data()));
        bytes
    }

    /// Bytes [`Request::encode`] sends.
    pub fn encoded_len(&self) -> usize {
        PREAMBLE_LEN + OVERHEAD + self.data().len()
    }
}

/// `68 A 68 C L DATA+33 CS 16` (the data length is cut to 255).
fn build(address: [u8; 6], control: u8, data: &[u8]) -> Vec<u8> {
    let data = data.get(..data.len().min(255)).unwrap_or_default();
    let mut frame = Vec::with_capacity(OVERHEAD + data.len());
    frame.push(START);
    frame.extend_from_slice(&address);
    frame.push(START);
    frame.push(control);
    frame.push(u8::try_from(data.len()).unwrap_or(u8::MAX));
    frame.extend(data.iter().map(|byte| byte.wrapping_add(OFFSET)));
    frame.push(checksum(&frame));
    frame.push(END);
    frame
}

/// The sum mod 256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0_u8, |sum, byte| sum.wrapping_add(*byte))
}

fn is_bcd(byte: u8) -> bool {
    byte >> 4 <= 9 && byte & 0x0F <= 9
}

/// One whole, checksummed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The address field as sent (A0 first).
    pub address: [u8; 6],
    pub control: u8,
    /// The data field, minus 33H.
    pub data: Vec<u8>,
}

impl Frame {
    /// The frame on the wire, without wake-up bytes — for the meter's side
    /// (the simulator, tests). `None` for a frame whose direction bit says
    /// master: requests are built only from [`Request`].
    pub fn encode(&self) -> Option<Vec<u8>> {
        (self.control & FROM_METER != 0).then(|| build(self.address, self.control, &self.data))
    }

    /// The normal answer to `request` carrying `value` (the value bytes,
    /// before +33H); `more` sets the more-follows bit.
    pub fn answer(request: &Request, meter: Address, value: &[u8], more: bool) -> Frame {
        let mut data = request
            .di()
            .map(|di| di.wire().to_vec())
            .unwrap_or_default();
        data.extend_from_slice(value);
        if let Request::ReadSubsequent { seq, .. } = request {
            data.push(*seq);
        }
        let more = if more { MORE_FOLLOWS } else { 0 };
        Frame {
            address: meter.wire(),
            control: FROM_METER | more | request.control(),
            data,
        }
    }

    /// The abnormal answer to `request` with the error byte `error`.
    pub fn abnormal(request: &Request, meter: Address, error: ErrorByte) -> Frame {
        Frame {
            address: meter.wire(),
            control: FROM_METER | ABNORMAL | request.control(),
            data: vec![error.0],
        }
    }
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// Not yet a whole frame (wake-up bytes, a frame still arriving).
    Incomplete,
    /// A whole frame ending `len` bytes into the buffer (wake-up bytes
    /// included).
    Complete { frame: Frame, len: usize },
}

/// Bytes that are not a DL/T 645 frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("byte {byte:#04x} at {at} where a frame should start (68H or a wake-up FEH)")]
    NoStart { at: usize, byte: u8 },
    #[error("byte {byte:#04x} after the address where 68H should be")]
    NoSecondStart { byte: u8 },
    #[error("bad checksum: frame says {received:#04x}, bytes give {computed:#04x}")]
    BadChecksum { computed: u8, received: u8 },
    #[error("byte {byte:#04x} where the end 16H should be")]
    NoEnd { byte: u8 },
}

/// Parse the frame at the start of `buf` (after any wake-up bytes).
pub fn parse_frame(buf: &[u8]) -> Result<Scanned, FrameError> {
    let start = buf.iter().take_while(|&&byte| byte == WAKE_UP).count();
    let Some(rest) = buf.get(start..) else {
        return Ok(Scanned::Incomplete);
    };
    match rest.first() {
        None => return Ok(Scanned::Incomplete),
        Some(&START) => {}
        Some(&byte) => return Err(FrameError::NoStart { at: start, byte }),
    }
    match rest.get(7) {
        None => return Ok(Scanned::Incomplete),
        Some(&START) => {}
        Some(&byte) => return Err(FrameError::NoSecondStart { byte }),
    }
    let (Some(&control), Some(&length)) = (rest.get(8), rest.get(9)) else {
        return Ok(Scanned::Incomplete);
    };
    let length = usize::from(length);
    let Some(frame) = rest.get(..OVERHEAD + length) else {
        return Ok(Scanned::Incomplete);
    };
    let body = frame.get(..10 + length).unwrap_or_default();
    let received = frame.get(10 + length).copied().unwrap_or_default();
    let computed = checksum(body);
    if computed != received {
        return Err(FrameError::BadChecksum { computed, received });
    }
    let end = frame.get(11 + length).copied().unwrap_or_default();
    if end != END {
        return Err(FrameError::NoEnd { byte: end });
    }
    let mut address = [0_u8; 6];
    for (slot, byte) in address.iter_mut().zip(frame.get(1..7).unwrap_or_default()) {
        *slot = *byte;
    }
    let data = frame
        .get(10..10 + length)
        .unwrap_or_default()
        .iter()
        .map(|byte| byte.wrapping_sub(OFFSET))
        .collect();
    Ok(Scanned::Complete {
        frame: Frame {
            address,
            control,
            data,
        },
        len: start + frame.len(),
    })
}

/// The error information word of an abnormal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorByte(pub u8);

impl ErrorByte {
    pub const OTHER: ErrorByte = ErrorByte(0x01);
    pub const NO_DATA: ErrorByte = ErrorByte(0x02);
    pub const UNAUTHORIZED: ErrorByte = ErrorByte(0x04);

    /// The reasons, one per bit set, bit 0 first (SPEC §5 `abnormal:REASON`).
    pub fn reasons(self) -> Vec<&'static str> {
        const NAMES: [&str; 8] = [
            "other",
            "no_data",
            "unauthorized",
            "baud_locked",
            "year_zones_exceeded",
            "day_periods_exceeded",
            "tariffs_exceeded",
            "reserved",
        ];
        NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 >> bit & 1 == 1)
            .map(|(_, name)| *name)
            .collect()
    }

    /// The reason of the error word: the reasons joined by `+`
    /// (`no_data`, `other+no_data`), `unspecified` when no bit is set.
    pub fn word(self) -> String {
        let reasons = self.reasons();
        if reasons.is_empty() {
            "unspecified".to_owned()
        } else {
            reasons.join("+")
        }
    }
}

impl fmt::Display for ErrorByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.word())
    }
}

/// A meter's answer, checked against its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The value bytes of the identifier asked (minus 33H, DI and SEQ
    /// removed); `more`: the rest follows with read subsequent.
    Data { value: Vec<u8>, more: bool },
    /// The meter refused: its error byte.
    Abnormal(ErrorByte),
    /// The answer to read address.
    Address(Address),
}

/// A whole frame that is not the answer to the request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// A master's frame (another master, or our own echo).
    #[error("a frame from a master (control {control:#04x}), not a meter's answer")]
    NotFromMeter { control: u8 },
    #[error("an answer to function {got:#04x}, {expected:#04x} was asked")]
    WrongFunction { expected: u8, got: u8 },
    #[error("an answer from meter {got}, {asked} was asked")]
    ForeignAddress { asked: Address, got: String },
    #[error("an answer for {got}, {asked} was asked")]
    ForeignDi { asked: Di, got: Di },
    #[error("malformed answer: {detail}")]
    Malformed { detail: String },
}

impl AnswerError {
    /// A late reply to an earlier request or another meter's answer: the
    /// frame is fine but answers something else.
    pub fn is_foreign(&self) -> bool {
        !matches!(self, AnswerError::Malformed { .. })
    }
}

/// Hold `frame` against `request` (see the module doc).
pub fn check_answer(request: &Request, frame: &Frame) -> Result<Answer, AnswerError> {
    let control = frame.control;
    if control & FROM_METER == 0 {
        return Err(AnswerError::NotFromMeter { control });
    }
    if control & FUNCTION != request.control() {
        return Err(AnswerError::WrongFunction {
            expected: request.control(),
            got: control & FUNCTION,
        });
    }
    let got = Address::from_wire(frame.address);
    match got {
        Some(meter) if request.address().matches(&meter) && meter.is_complete() => {}
        _ => {
            return Err(AnswerError::ForeignAddress {
                asked: request.address(),
                got: hex(&frame.address),
            });
        }
    }
    if control & ABNORMAL != 0 {
        return match frame.data.as_slice() {
            [error] => Ok(Answer::Abnormal(ErrorByte(*error))),
            other => Err(AnswerError::Malformed {
                detail: format!("an abnormal answer with {} data bytes, not 1", other.len()),
            }),
        };
    }
    let more = control & MORE_FOLLOWS != 0;
    match request {
        Request::ReadAddress => {
            let bytes: Option<[u8; 6]> = frame.data.as_slice().try_into().ok();
            match bytes {
                Some(bytes) if bytes == frame.address => Ok(Answer::Address(Address(bytes))),
                _ => Err(AnswerError::Malformed {
                    detail: format!(
                        "read address answered {} in the data, {} in the address field",
                        hex(&frame.data),
                        hex(&frame.address)
                    ),
                }),
            }
        }
        Request::ReadData { di, .. } | Request::ReadSubsequent { di, .. } => {
            let Some((echo, rest)) = frame.data.split_first_chunk::<4>() else {
                return Err(AnswerError::Malformed {
                    detail: format!("{} data bytes, no data identifier", frame.data.len()),
                });
            };
            let echo = Di(u32::from_le_bytes(*echo));
            if echo != *di {
                return Err(AnswerError::ForeignDi {
                    asked: *di,
                    got: echo,
                });
            }
            let value = match request {
                Request::ReadSubsequent { seq, .. } => match rest.split_last() {
                    Some((got, value)) if got == seq => value,
                    _ => {
                        return Err(AnswerError::Malformed {
                            detail: format!("frame number is not {seq}"),
                        });
                    }
                },
                _ => rest,
            };
            Ok(Answer::Data {
                value: value.to_vec(),
                more,
            })
        }
    }
}

/// Bytes that make no answer to the request: not a frame, or a whole frame
/// that is inconsistent in itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadAnswer {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// DL/T 645's framing for the protocol-neutral line discipline
/// ([`crate::line`]). Unlike Modbus RTU, every whole frame can be held
/// against the request: one that echoes another address or identifier is a
/// late reply (it answers an unanswered request) or a foreign one (it
/// answers nothing asked), discarded either way and never a value. Bytes in
/// front of a frame that cannot start one (neither `FE` nor `68`) are noise
/// and skipped: the checksum and the echo checks keep a frame found behind
/// them honest.
#[derive(Debug, Clone, Copy)]
pub struct Dlt645Framing;

impl Framing for Dlt645Framing {
    type Request = Request;
    type Device = Address;
    type Answer = Answer;
    type Error = BadAnswer;

    fn device(request: &Request) -> Address {
        request.address()
    }

    fn classify(
        buf: &[u8],
        asked: &Request,
        unanswered: &[&Request],
    ) -> Verdict<Answer, BadAnswer> {
        let (frame, len) = match parse_frame(buf) {
            Ok(Scanned::Incomplete) => return Verdict::Partial,
            Ok(Scanned::Complete { frame, len }) => (frame, len),
            Err(FrameError::NoStart { at, .. }) => {
                // Skip to the next byte that may start a frame.
                let rest = buf.get(at + 1..).unwrap_or_default();
                let skip = rest
                    .iter()
                    .position(|&byte| byte == START || byte == WAKE_UP)
                    .unwrap_or(rest.len());
                return Verdict::Noise { len: at + 1 + skip };
            }
            Err(error) => return Verdict::Garbage(error.into()),
        };
        match check_answer(asked, &frame) {
            Ok(answer) => Verdict::Answer { answer, len },
            Err(error) if error.is_foreign() => unanswered
                .iter()
                .position(|request| check_answer(request, &frame).is_ok())
                .map_or(Verdict::Foreign { len }, |index| Verdict::Late {
                    len,
                    index,
                }),
            Err(error) => Verdict::Garbage(error.into()),
        }
    }
}

/// Bytes as hex, space separated.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn address(printed: &str) -> Address {
        Address::parse(printed).unwrap()
    }

    fn unhex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|pair| u8::from_str_radix(pair, 16).unwrap())
            .collect()
    }

    #[test]
    fn a_printed_address_goes_out_low_byte_first() {
        let meter = address("000012345678");
        assert_eq!(meter.wire(), [0x78, 0x56, 0x34, 0x12, 0x00, 0x00]);
        assert_eq!(meter.to_string(), "000012345678");
        assert!(Address::parse("00001234567").is_err());
        assert!(Address::parse("00001234567x").is_err());
        assert!(Address::parse("0000123456789").is_err());
        assert_eq!(Address::ANY.to_string(), "AAAAAAAAAAAA");
        let abbreviated = Address::abbreviated(&[0x78, 0x56]).unwrap();
        assert_eq!(abbreviated.to_string(), "AAAAAAAA5678");
        assert!(abbreviated.matches(&meter));
        assert!(!Address::abbreviated(&[0x79]).unwrap().matches(&meter));
        assert!(Address::abbreviated(&[0x7A]).is_none());
    }

    #[test]
    fn requests_match_the_published_examples() {
        // Read forward active total (00010000) from 000102030425.
        let request = Request::ReadData {
            address: address("000102030425"),
            di: Di::parse("00010000").unwrap(),
        };
        assert_eq!(
            request.encode(),
            unhex("FE FE FE FE 68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16")
        );
        assert_eq!(request.encoded_len(), request.encode().len());
        // Read address.
        assert_eq!(
            Request::ReadAddress.encode(),
            unhex("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
        );
    }

    #[test]
    fn a_published_answer_parses_and_checks() {
        let request = Request::ReadData {
            address: address("000102030425"),
            di: Di(0x0001_0000),
        };
        let bytes = unhex("68 25 04 03 02 01 00 68 91 08 33 33 34 33 75 39 45 33 8B 16");
        let Ok(Scanned::Complete { frame, len }) = parse_frame(&bytes) else {
            panic!("not parsed")
        };
        assert_eq!(len, bytes.len());
        assert_eq!(
            check_answer(&request, &frame),
            Ok(Answer::Data {
                value: vec![0x42, 0x06, 0x12, 0x00],
                more: false
            })
        );
    }

    #[test]
    fn wake_up_bytes_are_skipped_and_counted() {
        let request = Request::ReadData {
            address: address("000012345678"),
            di: Di(0x0201_0100),
        };
        let frame = Frame::answer(&request, request.address(), &[0x01, 0x22], false);
        let mut bytes = vec![WAKE_UP; 3];
        bytes.extend(frame.encode().unwrap());
        for cut in 0..bytes.len() {
            assert_eq!(parse_frame(&bytes[..cut]), Ok(Scanned::Incomplete), "{cut}");
        }
        assert_eq!(
            parse_frame(&bytes),
            Ok(Scanned::Complete {
                frame,
                len: bytes.len()
            })
        );
    }

    #[test]
    fn every_kind_of_broken_frame_is_told_apart() {
        let request = Request::ReadData {
            address: address("000012345678"),
            di: Di(0x0201_0100),
        };
        let good = Frame::answer(&request, request.address(), &[0x01, 0x22], false)
            .encode()
            .unwrap();
        let mut garbage = vec![0x00];
        garbage.extend(&good);
        assert_eq!(
            parse_frame(&garbage),
            Err(FrameError::NoStart { at: 0, byte: 0 })
        );
        let mut bad = good.clone();
        bad[7] = 0x69;
        assert_eq!(
            parse_frame(&bad),
            Err(FrameError::NoSecondStart { byte: 0x69 })
        );
        let mut bad = good.clone();
        bad[12] ^= 0x01;
        assert!(matches!(
            parse_frame(&bad),
            Err(FrameError::BadChecksum { .. })
        ));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = 0x17;
        assert_eq!(parse_frame(&bad), Err(FrameError::NoEnd { byte: 0x17 }));
    }

    #[test]
    fn the_client_can_encode_only_the_three_reads() {
        let address = address("000012345678");
        let requests = [
            Request::ReadData {
                address,
                di: Di(0x0001_0000),
            },
            Request::ReadSubsequent {
                address,
                di: Di(0x0001_0000),
                seq: 1,
            },
            Request::ReadAddress,
        ];
        for request in requests {
            let bytes = request.encode();
            let Ok(Scanned::Complete { frame, .. }) = parse_frame(&bytes) else {
                panic!("{request:?} does not parse")
            };
            assert!([0x11, 0x12, 0x13].contains(&frame.control), "{request:?}");
        }
        // The meter's side cannot build a master's frame either.
        let write = Frame {
            address: address.wire(),
            control: 0x14,
            data: vec![],
        };
        assert_eq!(write.encode(), None);
    }

    #[test]
    fn abnormal_answers_give_their_reasons() {
        let request = Request::ReadData {
            address: address("000012345678"),
            di: Di(0x0001_0000),
        };
        let frame = Frame::abnormal(&request, request.address(), ErrorByte::NO_DATA);
        assert_eq!(frame.control, 0xD1);
        assert_eq!(
            check_answer(&request, &frame),
            Ok(Answer::Abnormal(ErrorByte::NO_DATA))
        );
        assert_eq!(ErrorByte(0x02).word(), "no_data");
        assert_eq!(ErrorByte(0x05).word(), "other+unauthorized");
        assert_eq!(ErrorByte(0).word(), "unspecified");
        assert_eq!(ErrorByte(0xFF).reasons().len(), 8);
    }

    #[test]
    fn an_answer_from_another_meter_or_for_another_di_is_foreign() {
        let asked = address("000012345678");
        let other = address("000012345679");
        let request = Request::ReadData {
            address: asked,
            di: Di(0x0201_0100),
        };
        let from_other = Frame::answer(&request, other, &[0x01, 0x22], false);
        let error = check_answer(&request, &from_other).unwrap_err();
        assert!(matches!(error, AnswerError::ForeignAddress { .. }));
        assert!(error.is_foreign());
        let earlier = Request::ReadData {
            address: asked,
            di: Di(0x0202_0100),
        };
        let late = Frame::answer(&earlier, asked, &[0x00, 0x50, 0x01], false);
        let error = check_answer(&request, &late).unwrap_err();
        assert_eq!(
            error,
            AnswerError::ForeignDi {
                asked: Di(0x0201_0100),
                got: Di(0x0202_0100)
            }
        );
        assert!(error.is_foreign());
        // Our own request echoed back is not an answer.
        let echo = parse_frame(&request.encode()).unwrap();
        let Scanned::Complete { frame, .. } = echo else {
            panic!()
        };
        assert!(check_answer(&request, &frame).unwrap_err().is_foreign());
    }

    #[test]
    fn more_follows_and_subsequent_frames_carry_their_number() {
        let meter = address("000012345678");
        let first = Request::ReadData {
            address: meter,
            di: Di(0x0001_FF00),
        };
        let answer = Frame::answer(&first, meter, &[1, 2, 3, 4], true);
        assert_eq!(answer.control, 0xB1);
        assert_eq!(
            check_answer(&first, &answer),
            Ok(Answer::Data {
                value: vec![1, 2, 3, 4],
                more: true
            })
        );
        let next = Request::ReadSubsequent {
            address: meter,
            di: Di(0x0001_FF00),
            seq: 1,
        };
        let answer = Frame::answer(&next, meter, &[5, 6], false);
        assert_eq!(answer.control, 0x92);
        assert_eq!(
            check_answer(&next, &answer),
            Ok(Answer::Data {
                value: vec![5, 6],
                more: false
            })
        );
        let wrong_seq = Request::ReadSubsequent {
            address: meter,
            di: Di(0x0001_FF00),
            seq: 2,
        };
        assert!(matches!(
            check_answer(&wrong_seq, &answer),
            Err(AnswerError::Malformed { .. })
        ));
    }

    #[test]
    fn read_address_is_answered_with_the_meters_address() {
        let meter = address("202411300017");
        let answer = Frame {
            address: meter.wire(),
            control: 0x93,
            data: meter.wire().to_vec(),
        };
        let bytes = answer.encode().unwrap();
        let Ok(Scanned::Complete { frame, .. }) = parse_frame(&bytes) else {
            panic!()
        };
        assert_eq!(
            check_answer(&Request::ReadAddress, &frame),
            Ok(Answer::Address(meter))
        );
    }

    #[test]
    fn data_identifiers_parse_and_go_out_di0_first() {
        let di = Di::parse("02010100").unwrap();
        assert_eq!(di, Di(0x0201_0100));
        assert_eq!(di.wire(), [0x00, 0x01, 0x01, 0x02]);
        assert_eq!(di.to_string(), "02010100");
        assert_eq!(Di::parse("0x0201ff00").unwrap(), Di(0x0201_FF00));
        assert!(Di::parse("0201FF00").unwrap().is_block());
        assert!(!di.is_block());
        assert!(Di::parse("020101").is_err());
        assert!(Di::parse("0201010G").is_err());
    }

    #[test]
    fn the_line_skips_noise_and_discards_late_and_foreign_frames() {
        let meter = address("000012345678");
        let asked = Request::ReadData {
            address: meter,
            di: Di(0x0201_0100),
        };
        let earlier = Request::ReadData {
            address: meter,
            di: Di(0x0202_0100),
        };
        let answer = Frame::answer(&asked, meter, &[0x01, 0x22], false)
            .encode()
            .unwrap();
        let late = Frame::answer(&earlier, meter, &[0, 0x50, 1], false)
            .encode()
            .unwrap();
        // Noise before the frame is skipped up to the next FE or 68.
        let mut noisy = vec![0x00, 0x13, 0xFE];
        noisy.extend(&answer);
        assert_eq!(
            Dlt645Framing::classify(&noisy, &asked, &[]),
            Verdict::Noise { len: 2 }
        );
        assert!(matches!(
            Dlt645Framing::classify(&noisy[2..], &asked, &[]),
            Verdict::Answer { len, .. } if len == answer.len() + 1
        ));
        // The late answer to an unanswered request of the same meter.
        assert_eq!(
            Dlt645Framing::classify(&late, &asked, &[&earlier]),
            Verdict::Late {
                len: late.len(),
                index: 0
            }
        );
        // The same frame with nothing unanswered: foreign, never the value.
        assert_eq!(
            Dlt645Framing::classify(&late, &asked, &[]),
            Verdict::Foreign { len: late.len() }
        );
        // A broken frame is garbage.
        let mut bad = answer.clone();
        bad[11] ^= 0x40;
        assert!(matches!(
            Dlt645Framing::classify(&bad, &asked, &[]),
            Verdict::Garbage(BadAnswer::Frame(FrameError::BadChecksum { .. }))
        ));
    }

    fn any_address() -> impl Strategy<Value = Address> {
        proptest::array::uniform6(0_u8..100)
            .prop_map(|digits| Address(digits.map(|value| ((value / 10) << 4) | (value % 10))))
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics_and_never_overreads(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            if let Ok(Scanned::Complete { frame, len }) = parse_frame(&bytes) {
                prop_assert!(len <= bytes.len());
                prop_assert_eq!(len, bytes.iter().take_while(|&&b| b == WAKE_UP).count()
                    + OVERHEAD + frame.data.len());
            }
        }

        #[test]
        fn answers_round_trip_with_the_offset_and_checksum(
            meter in any_address(),
            di in any::<u32>(),
            value in proptest::collection::vec(any::<u8>(), 0..100),
            more in any::<bool>(),
            wake_up in 0_usize..5,
        ) {
            let request = Request::ReadData { address: meter, di: Di(di) };
            let frame = Frame::answer(&request, meter, &value, more);
            let mut bytes = vec![WAKE_UP; wake_up];
            let encoded = frame.encode().unwrap();
            // Every data byte carries +33H; the checksum is the sum from the first 68.
            for (on_wire, plain) in encoded[10..encoded.len() - 2].iter().zip(&frame.data) {
                prop_assert_eq!(*on_wire, plain.wrapping_add(OFFSET));
            }
            prop_assert_eq!(encoded[encoded.len() - 2], checksum(&encoded[..encoded.len() - 2]));
            bytes.extend(&encoded);
            let parsed = parse_frame(&bytes).unwrap();
            prop_assert_eq!(parsed, Scanned::Complete { frame: frame.clone(), len: bytes.len() });
            prop_assert_eq!(check_answer(&request, &frame), Ok(Answer::Data { value, more }));
        }

        #[test]
        fn a_single_flipped_byte_is_never_taken_as_the_answer(
            meter in any_address(),
            di in any::<u32>(),
            value in proptest::collection::vec(any::<u8>(), 1..8),
            at in any::<prop::sample::Index>(),
            flip in 1_u8..=255,
        ) {
            let request = Request::ReadData { address: meter, di: Di(di) };
            let frame = Frame::answer(&request, meter, &value, false);
            let mut bytes = frame.encode().unwrap();
            let at = at.index(bytes.len());
            bytes[at] ^= flip;
            // Same positions, one byte changed: the header bytes and the end are
            // checked, the checksum covers the rest, and a flipped CS mismatches.
            if let Ok(Scanned::Complete { frame: got, len }) = parse_frame(&bytes) {
                prop_assert!(len != bytes.len(), "flipped byte {} still parsed: {:?}", at, got);
            }
        }
    }
}
