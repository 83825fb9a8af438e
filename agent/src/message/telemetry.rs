//! One poll of one device as a message: typed values and error words.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A device or point name, shared between the configuration and every
/// message that carries it (no copy per poll).
pub type Name = Arc<str>;

/// One poll's telemetry (SPEC §5 `telemetry/{device}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry<S = Name> {
    /// Wall-clock time of the poll's first request (Unix ms).
    pub ts: u64,
    pub device: S,
    /// The points this message reports, in the device's point order.
    pub points: Vec<(S, Reading<S>)>,
    /// A full snapshot of an `on_change` device (first message and heartbeats).
    pub snapshot: bool,
}

/// A point's outcome in a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reading<S = Name> {
    Value(Value<S>),
    Error(ErrorWord),
}

/// A decoded, scaled point value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value<S = Name> {
    Bool(bool),
    Number(f64),
    Text(S),
}

/// Why a point has no value (SPEC §5 error words).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorWord {
    /// Nothing arrived within the device's timeout.
    Timeout,
    /// The device answered with this Modbus exception code.
    Exception(u8),
    /// Bytes arrived but do not make the answer or the value.
    Decode,
    /// The connection closed or could not be made.
    Disconnected,
    /// A protocol's own refusal, e.g. a DL/T 645 abnormal answer: `abnormal:REASON`.
    Abnormal(String),
}

impl ErrorWord {
    /// The word as published.
    pub fn word(&self) -> Cow<'static, str> {
        match self {
            ErrorWord::Timeout => Cow::Borrowed("timeout"),
            ErrorWord::Decode => Cow::Borrowed("decode"),
            ErrorWord::Disconnected => Cow::Borrowed("disconnected"),
            ErrorWord::Exception(code) => Cow::Owned(format!("exception:{code}")),
            ErrorWord::Abnormal(reason) => Cow::Owned(format!("abnormal:{reason}")),
        }
    }

    /// Whether the device answered (an exception, bytes that did not
    /// decode, a protocol's refusal) rather than being unreachable.
    pub fn answered(&self) -> bool {
        !matches!(self, ErrorWord::Timeout | ErrorWord::Disconnected)
    }
}

impl fmt::Display for ErrorWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_words_are_spelled_as_spec_section_5_says() {
        assert_eq!(ErrorWord::Timeout.to_string(), "timeout");
        assert_eq!(ErrorWord::Exception(2).to_string(), "exception:2");
        assert_eq!(ErrorWord::Decode.to_string(), "decode");
        assert_eq!(ErrorWord::Disconnected.to_string(), "disconnected");
        assert_eq!(
            ErrorWord::Abnormal("no_data".into()).to_string(),
            "abnormal:no_data"
        );
        assert!(ErrorWord::Decode.answered() && !ErrorWord::Timeout.answered());
    }
}
