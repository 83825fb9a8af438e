//! Errors of a Modbus read, in two layers kept apart.
//!
//! * [`ReadError::Exception`]: the device answered, with a Modbus exception.
//!   The link is fine and the next request may go out at once.
//! * [`ReadError::Link`]: no usable answer came back ([`LinkError`]). After
//!   any link error the link is made clean (TCP reconnects, RTU drains) before
//!   its next request, so a late reply is never taken for the next answer.
//!
//! A point's error is a [`PointError`]: a read error of the request that
//! carried it, or a [`DecodeError`] of its own registers. Every error maps to
//! one SPEC §5 error word with `word()`: `timeout`, `exception:N`, `decode`,
//! `disconnected`. Answers that arrived but could not be used (bad CRC,
//! another unit's reply, fewer registers than asked, a byte count the frame
//! does not carry, an answer cut short) are `decode`; `timeout` means nothing
//! arrived, `disconnected` that the link could not be opened or closed
//! before the answer began.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::decode::DecodeError;

/// A Modbus exception code, as the device sent it (1 = illegal function,
/// 2 = illegal data address, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExceptionCode(pub u8);

impl ExceptionCode {
    pub const ILLEGAL_FUNCTION: Self = Self(1);
    /// The code that makes the poller split a merged read.
    pub const ILLEGAL_DATA_ADDRESS: Self = Self(2);
    pub const ILLEGAL_DATA_VALUE: Self = Self(3);
    pub const SERVER_DEVICE_FAILURE: Self = Self(4);
}

impl fmt::Display for ExceptionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<tokio_modbus::ExceptionCode> for ExceptionCode {
    fn from(code: tokio_modbus::ExceptionCode) -> Self {
        Self(u8::from(code))
    }
}

impl From<ExceptionCode> for tokio_modbus::ExceptionCode {
    fn from(code: ExceptionCode) -> Self {
        tokio_modbus::ExceptionCode::new(code.0)
    }
}

/// No usable answer came back over the link. (I/O errors are shared in an
/// `Arc` so that one failure can be reported for every point it hit.)
#[derive(Debug, Clone, Error)]
pub enum LinkError {
    /// Nothing arrived within the device's timeout (part of an answer is
    /// [`LinkError::Truncated`]).
    #[error("no answer within {after:?}")]
    Timeout { after: Duration },
    /// The link could not be opened (connection refused, port missing).
    #[error("cannot open {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: Arc<io::Error>,
    },
    /// The open link failed while sending or receiving.
    #[error("link failed: {source}")]
    Io {
        #[source]
        source: Arc<io::Error>,
    },
    /// The peer closed the connection before any byte of the answer.
    #[error("the peer closed the connection")]
    Closed,
    /// The answer held fewer registers (or bits) than asked for; registers
    /// must come back exactly, bits at least as many as asked.
    #[error("answer holds {got} values, {expected} were asked for")]
    ShortResponse { expected: u16, got: usize },
    /// An RTU frame whose CRC does not match its bytes.
    #[error("bad CRC: frame says {received:#06x}, bytes give {computed:#06x}")]
    BadCrc { computed: u16, received: u16 },
    /// An answer from another unit id than the one asked.
    #[error("answer from unit {got}, unit {expected} was asked")]
    WrongUnit { expected: u8, got: u8 },
    /// An answer to another function than the one asked.
    #[error("answer to function {got}, function {expected} was asked")]
    WrongFunction { expected: u8, got: u8 },
    /// Part of a frame arrived, then nothing more within the timeout, or the
    /// peer closed the connection in the middle of it.
    #[error("the answer stopped after {got} bytes")]
    Truncated { got: usize },
    /// Bytes that do not form the answer asked for.
    #[error("malformed answer: {detail}")]
    Malformed { detail: String },
}

impl LinkError {
    /// The SPEC §5 error word.
    pub fn word(&self) -> &'static str {
        match self {
            LinkError::Timeout { .. } => "timeout",
            LinkError::Connect { .. } | LinkError::Io { .. } | LinkError::Closed => "disconnected",
            LinkError::ShortResponse { .. }
            | LinkError::BadCrc { .. }
            | LinkError::WrongUnit { .. }
            | LinkError::WrongFunction { .. }
            | LinkError::Truncated { .. }
            | LinkError::Malformed { .. } => "decode",
        }
    }

    /// An I/O failure of the open link.
    pub fn io(source: io::Error) -> Self {
        LinkError::Io {
            source: Arc::new(source),
        }
    }

    /// Whether the device (or the line) may be unreachable (`timeout`,
    /// `disconnected`), as opposed to an answer that arrived but was unusable.
    pub fn is_unreachable(&self) -> bool {
        self.word() != "decode"
    }
}

/// The result of one read request that brought no data.
#[derive(Debug, Clone, Error)]
pub enum ReadError {
    /// The device answered with a Modbus exception.
    #[error("device answered with exception {0}")]
    Exception(ExceptionCode),
    /// No usable answer.
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl ReadError {
    /// Whether the device (or the line) may be unreachable; never for an
    /// exception (the device answered).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ReadError::Link(link) if link.is_unreachable())
    }

    /// The SPEC §5 error word: `timeout`, `exception:N`, `decode`, `disconnected`.
    pub fn word(&self) -> String {
        match self {
            ReadError::Exception(code) => format!("exception:{code}"),
            ReadError::Link(link) => link.word().to_owned(),
        }
    }
}

/// Why one point has no value in a poll.
#[derive(Debug, Clone, Error)]
pub enum PointError {
    /// The request carrying the point failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The registers came back but do not make a value.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl PointError {
    /// The SPEC §5 error word.
    pub fn word(&self) -> String {
        match self {
            PointError::Read(read) => read.word(),
            PointError::Decode(_) => "decode".to_owned(),
        }
    }
}

impl From<LinkError> for PointError {
    fn from(link: LinkError) -> Self {
        PointError::Read(ReadError::Link(link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_a_spec_word() {
        let cases: Vec<(PointError, &str)> = vec![
            (
                LinkError::Timeout {
                    after: Duration::from_millis(300),
                }
                .into(),
                "timeout",
            ),
            (
                ReadError::Exception(ExceptionCode::ILLEGAL_DATA_ADDRESS).into(),
                "exception:2",
            ),
            (
                ReadError::Exception(ExceptionCode(11)).into(),
                "exception:11",
            ),
            (LinkError::Closed.into(), "disconnected"),
            (
                LinkError::Connect {
                    target: "127.0.0.1:502".into(),
                    source: Arc::new(io::ErrorKind::ConnectionRefused.into()),
                }
                .into(),
                "disconnected",
            ),
            (
                LinkError::ShortResponse {
                    expected: 4,
                    got: 2,
                }
                .into(),
                "decode",
            ),
            (DecodeError::NotFinite.into(), "decode"),
        ];
        for (error, word) in cases {
            assert_eq!(error.word(), word, "{error}");
        }
    }

    #[test]
    fn exception_codes_convert_both_ways() {
        let ours = ExceptionCode::from(tokio_modbus::ExceptionCode::IllegalDataAddress);
        assert_eq!(ours, ExceptionCode::ILLEGAL_DATA_ADDRESS);
        assert_eq!(
            tokio_modbus::ExceptionCode::from(ExceptionCode(4)),
            tokio_modbus::ExceptionCode::ServerDeviceFailure
        );
    }
}
