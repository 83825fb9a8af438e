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
///
/// Stored compactly: an integral number below 2^53 in magnitude is encoded
/// as a zigzag varint (a u16 register takes 1–3 bytes instead of 8), any
/// other number as its 8 bytes; both read back to the same `f64` bits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "StoredValue<S>")]
pub enum Value<S = Name> {
    Bool(bool),
    Number(f64),
    Text(S),
}

/// How a [`Value`] is encoded (outbox format 2: the order of the variants
/// is the format; `Value`'s `Serialize` writes these variants).
#[derive(Deserialize)]
enum StoredValue<S> {
    Bool(bool),
    Float(f64),
    Text(S),
    Integer(i64),
}

/// Largest magnitude below which every integral `f64` is an `i64` exactly.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

impl<S: Serialize> Serialize for Value<S> {
    fn serialize<Z: serde::Serializer>(&self, z: Z) -> Result<Z::Ok, Z::Error> {
        const NAME: &str = "StoredValue";
        match self {
            Value::Bool(b) => z.serialize_newtype_variant(NAME, 0, "Bool", b),
            // -0.0 keeps its sign bit only as a float.
            #[allow(clippy::cast_possible_truncation)]
            Value::Number(n)
                if n.fract() == 0.0
                    && n.abs() < EXACT_INTEGER
                    && !(*n == 0.0 && n.is_sign_negative()) =>
            {
                z.serialize_newtype_variant(NAME, 3, "Integer", &(*n as i64))
            }
            Value::Number(n) => z.serialize_newtype_variant(NAME, 1, "Float", n),
            Value::Text(s) => z.serialize_newtype_variant(NAME, 2, "Text", s),
        }
    }
}

impl<S> From<StoredValue<S>> for Value<S> {
    fn from(v: StoredValue<S>) -> Self {
        match v {
            StoredValue::Bool(b) => Value::Bool(b),
            StoredValue::Float(n) => Value::Number(n),
            #[allow(clippy::cast_precision_loss)]
            StoredValue::Integer(i) => Value::Number(i as f64),
            StoredValue::Text(s) => Value::Text(s),
        }
    }
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
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_number_reads_back_to_the_same_bits(n in proptest::num::f64::ANY) {
            let bytes = postcard::to_allocvec(&Value::<Name>::Number(n)).unwrap();
            let back: Value<&str> = postcard::from_bytes(&bytes).unwrap();
            let Value::Number(m) = back else { panic!("not a number") };
            prop_assert!(m.to_bits() == n.to_bits() || (n.is_nan() && m.is_nan()), "{n} came back as {m}");
        }
    }

    #[test]
    fn a_register_value_is_stored_in_a_few_bytes() {
        let len = |n: f64| {
            postcard::to_allocvec(&Value::<Name>::Number(n))
                .unwrap()
                .len()
        };
        assert_eq!(len(7.0), 2);
        assert_eq!(len(65_535.0), 4);
        assert_eq!(len(229.8), 9);
        assert_eq!(len(-0.0), 9);
    }

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
