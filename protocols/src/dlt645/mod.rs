//! DL/T 645-2007 (多功能电能表通信协议, the multi-function meter protocol of
//! China's power industry): the client side, read-only by type.
//!
//! * [`frame`]: addresses, data identifiers, the three requests the client
//!   can build (read data 11H, read subsequent data 12H, read address 13H —
//!   nothing else is constructible), frame parsing (wake-up bytes, +33H,
//!   checksum) and the checks that tie an answer to its request (address and
//!   data identifier echoed, else a late or foreign reply);
//! * [`bcd`]: the standard's BCD value formats, sign-magnitude included;
//! * [`table`]: the built-in table of data identifiers (format, unit,
//!   counter), so a point needs only its `di`;
//! * [`client`]: the thin async shell — one value of one meter over a
//!   serial line (the protocol-neutral [`crate::line`] discipline);
//! * [`poll`]: one poll of one meter — block reads where the meter takes
//!   them, split into single identifiers (and remembered) where it refuses;
//! * [`scan`]: finding the meters on a line by address abbreviation.
//!
//! `frame`, `bcd` and `table` are pure (no I/O) and property-tested.
//!
//! The codec is written by hand: no Rust crate for DL/T 645 was worth taking
//! (the few published are small, unmaintained, build write and control
//! commands beside reads, and do not check echoes), and the protocol is a
//! page of framing.
//!
//! # Sources
//!
//! DL/T 645-2007 *Multi-function watt-hour meter communication protocol*
//! (revision of DL/T 645-1997): §5 data link layer (byte format 8E1, frame
//! `68 A0…A5 68 C L DATA CS 16`, control code bits, +33H, checksum, FEH
//! wake-up bytes), §6 data identifiers (4 bytes, DI0 sent first), §7
//! application layer (7.1 read data, 7.2 read subsequent data, 7.4 read
//! address; normal, more-follows and abnormal answers with the error
//! information word), Appendix A data identifier tables. The standard text
//! is sold, not published; every fact used here was cross-checked against
//! public material that quotes it:
//! * frame format, +33H, checksum, FEH and worked frames (read 00010000 from
//!   000102030425: `68 25 04 03 02 01 00 68 11 04 33 33 34 33 E1 16`, answer
//!   1206.42 kWh; read address `68 AA…AA 68 13 00 DF 16`):
//!   <https://m.icode9.com/content-4-712469.html>,
//!   <https://mbb.eet-china.com/forum/topic/114707_1_1.html>,
//!   <https://360docs.net/doc/722295758.html> (a summary of the standard);
//! * control code bits D7 direction, D6 abnormal, D5 more follows:
//!   <https://zixin.com.cn/doc/5601037.html> (the 1997 edition, same bits);
//! * the error information word ERR (bit 0 other, bit 1 no requested data,
//!   bit 2 password wrong / unauthorized, bit 3 baud rate cannot change,
//!   bit 4 year zones, bit 5 day periods, bit 6 tariffs exceeded, bit 7
//!   reserved): several public meter firmwares and master stations agree;
//! * identifier formats (voltage `XXX.X` 2 bytes, current `XXX.XXX` 3 bytes,
//!   power `XX.XXXX` 3 bytes, power factor `X.XXX`, frequency 02800002
//!   `XX.XX`, energy `XXXXXX.XX` 4 bytes): the same summaries and public
//!   meter tables; a worked phase-A voltage answer reads 100.1 V from
//!   `01 10`.

pub mod bcd;
pub mod client;
pub mod frame;
pub mod poll;
pub mod scan;
pub mod table;

pub use bcd::{Bcd, BcdError, Format};
pub use client::{Dlt645Line, Dlt645Link, MAX_FRAMES, ReadError, read_address, read_value};
pub use frame::{
    Address, AddressError, Answer, AnswerError, Di, DiError, ErrorByte, Frame, FrameError, Request,
    Scanned, check_answer, parse_frame,
};
pub use table::{DiInfo, ValueError, block_members, decode_value, lookup};
