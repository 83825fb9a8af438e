//! The outbox record format: one outgoing message as stored on disk.
//!
//! Pure: bytes in, values out; no I/O. Every record starts with a 12-byte
//! header and ends with a CRC (all integers big-endian):
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1 or 2)
//! 1       1     kind (see `Kind`)
//! 2       1     flags: bit 0 = retain (format 1; format 2 writes 0)
//! 3       1     reserved, 0
//! 4       8     created, Unix epoch milliseconds
//! 12      …     body
//! end-4   4     CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Bodies:
//! - **format 2** (written by this build): the typed message, postcard
//!   (`crate::message::encode`); topic and payload are rendered from it at
//!   publish time by the wire layer.
//! - **format 1** (written by releases up to 86b2ec8, still read): a
//!   finished rendering: topic length T (2 bytes), the topic suffix under
//!   `{prefix}/{site}/{agent}/` (UTF-8), then the JSON payload. Published
//!   as it is.
//!
//! A record of a version above [`FORMAT_VERSION`] was written by a newer
//! release: it is [`RecordError::FutureVersion`], which the outbox turns
//! into a refusal to open (never into damage: a downgrade must not throw
//! the backlog away).
//!
//! A record's key is `b'r'` followed by its seq as 8 big-endian bytes, so the
//! store's key order is seq order.

use thiserror::Error;

/// Format version written by this build (and the newest it reads).
pub const FORMAT_VERSION: u8 = 2;
/// The format of finished JSON renderings (read, never written).
pub const FORMAT_RENDERED: u8 = 1;
const HEADER_LEN: usize = 12;
const CRC_LEN: usize = 4;

/// Prefix of record keys in the store.
pub const RECORD_PREFIX: u8 = b'r';

/// What a record carries; decides what is dropped first when space runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Telemetry,
    Health,
    Availability,
    Kpi,
    Gap,
}

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Telemetry => 0,
            Kind::Health => 1,
            Kind::Availability => 2,
            Kind::Kpi => 3,
            Kind::Gap => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Telemetry,
            1 => Kind::Health,
            2 => Kind::Availability,
            3 => Kind::Kpi,
            4 => Kind::Gap,
            _ => return None,
        })
    }

    /// Drop class: lower goes first. Telemetry and health first, then
    /// availability, KPI windows last; gaps are never dropped (they are what
    /// reports a drop).
    pub fn drop_class(self) -> Option<u8> {
        match self {
            Kind::Telemetry | Kind::Health => Some(0),
            Kind::Availability => Some(1),
            Kind::Kpi => Some(2),
            Kind::Gap => None,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub retain: bool,
    pub created_ms: u64,
    pub body: Body,
}

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Format 2: a typed message, postcard-encoded.
    Message(Vec<u8>),
    /// Format 1: a finished rendering from an older release.
    Rendered { topic: String, payload: Vec<u8> },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is {len} bytes, shorter than the smallest record")]
    TooShort { len: usize },
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("record format version {0} is not supported")]
    Version(u8),
    #[error(
        "record format version {0} was written by a newer spindle; this build reads versions up to {FORMAT_VERSION}"
    )]
    FutureVersion(u8),
    #[error("record kind {0} is unknown")]
    Kind(u8),
    #[error("record topic length {topic_len} runs past its end")]
    TopicLength { topic_len: usize },
    #[error("record topic is not UTF-8")]
    TopicUtf8,
    #[error("record key is not a seq key")]
    Key,
}

impl Record {
    /// A format-2 record of a typed message's encoding.
    pub fn message(kind: Kind, created_ms: u64, encoded: Vec<u8>) -> Record {
        Record {
            kind,
            retain: false,
            created_ms,
            body: Body::Message(encoded),
        }
    }

    /// The encoded format-2 record of a message, built in one buffer:
    /// header, the message's encoding, CRC.
    pub fn encode_message<S: serde::Serialize + AsRef<str>>(
        kind: Kind,
        created_ms: u64,
        message: &crate::message::Message<S>,
    ) -> Result<Vec<u8>, postcard::Error> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + CRC_LEN + crate::message::encoded_len_hint(message));
        out.push(FORMAT_VERSION);
        out.push(kind.to_byte());
        out.push(0);
        out.push(0);
        out.extend_from_slice(&created_ms.to_be_bytes());
        let mut out = crate::message::encode_into(message, out)?;
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Decodes and verifies a record it takes ownership of; a format-2
    /// body is kept in the same buffer (no copy).
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Record, RecordError> {
        if bytes.first() != Some(&FORMAT_VERSION) {
            return Record::decode(&bytes);
        }
        let header = Record::decode_header(&bytes)?;
        bytes.truncate(bytes.len() - CRC_LEN);
        bytes.drain(..HEADER_LEN);
        Ok(Record {
            kind: header.kind,
            retain: header.retain,
            created_ms: header.created_ms,
            body: Body::Message(bytes),
        })
    }

    /// Verifies a format-2 record's checksum and reads its header.
    fn decode_header(bytes: &[u8]) -> Result<FullHeader, RecordError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(RecordError::TooShort { len: bytes.len() });
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let stored = u32::from_be_bytes(
            crc.try_into()
                .map_err(|_| RecordError::TooShort { len: bytes.len() })?,
        );
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        let [
            _version,
            kind,
            flags,
            _reserved,
            c0,
            c1,
            c2,
            c3,
            c4,
            c5,
            c6,
            c7,
            ..,
        ] = body
        else {
            return Err(RecordError::TooShort { len: bytes.len() });
        };
        Ok(FullHeader {
            kind: Kind::from_byte(*kind).ok_or(RecordError::Kind(*kind))?,
            retain: flags & 1 == 1,
            created_ms: u64::from_be_bytes([*c0, *c1, *c2, *c3, *c4, *c5, *c6, *c7]),
        })
    }

    /// Bytes this record takes when encoded (what `max_size` counts).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + CRC_LEN
            + match &self.body {
                Body::Message(bytes) => bytes.len(),
                Body::Rendered { topic, payload } => 2 + topic.len() + payload.len(),
            }
    }

    /// Encodes the record. Format-1 topics longer than 65535 bytes are
    /// refused before this point (MQTT topics are at most 65535 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        let version = match self.body {
            Body::Message(_) => FORMAT_VERSION,
            Body::Rendered { .. } => FORMAT_RENDERED,
        };
        out.push(version);
        out.push(self.kind.to_byte());
        out.push(u8::from(self.retain));
        out.push(0);
        out.extend_from_slice(&self.created_ms.to_be_bytes());
        match &self.body {
            Body::Message(bytes) => out.extend_from_slice(bytes),
            Body::Rendered { topic, payload } => {
                let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
                let topic = topic
                    .as_bytes()
                    .get(..usize::from(topic_len))
                    .unwrap_or_default();
                out.extend_from_slice(&topic_len.to_be_bytes());
                out.extend_from_slice(topic);
                out.extend_from_slice(payload);
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes and verifies a record.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(RecordError::TooShort { len: bytes.len() });
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let stored = u32::from_be_bytes(
            crc.try_into()
                .map_err(|_| RecordError::TooShort { len: bytes.len() })?,
        );
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        let [version, kind, flags, _reserved, rest @ ..] = body else {
            return Err(RecordError::TooShort { len: bytes.len() });
        };
        if *version > FORMAT_VERSION {
            return Err(RecordError::FutureVersion(*version));
        }
        if *version != FORMAT_VERSION && *version != FORMAT_RENDERED {
            return Err(RecordError::Version(*version));
        }
        let kind = Kind::from_byte(*kind).ok_or(RecordError::Kind(*kind))?;
        let (created, rest) = rest
            .split_at_checked(8)
            .ok_or(RecordError::TooShort { len: bytes.len() })?;
        let created_ms = u64::from_be_bytes(
            created
                .try_into()
                .map_err(|_| RecordError::TooShort { len: bytes.len() })?,
        );
        let body = if *version == FORMAT_VERSION {
            Body::Message(rest.to_vec())
        } else {
            let (topic_len, rest) = rest
                .split_at_checked(2)
                .ok_or(RecordError::TooShort { len: bytes.len() })?;
            let topic_len = usize::from(u16::from_be_bytes(
                topic_len
                    .try_into()
                    .map_err(|_| RecordError::TooShort { len: bytes.len() })?,
            ));
            let (topic, payload) = rest
                .split_at_checked(topic_len)
                .ok_or(RecordError::TopicLength { topic_len })?;
            let topic = std::str::from_utf8(topic)
                .map_err(|_| RecordError::TopicUtf8)?
                .to_owned();
            Body::Rendered {
                topic,
                payload: payload.to_vec(),
            }
        };
        Ok(Record {
            kind,
            retain: flags & 1 == 1,
            created_ms,
            body,
        })
    }
}

struct FullHeader {
    kind: Kind,
    retain: bool,
    created_ms: u64,
}

/// A record's header fields, read without copying the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub created_ms: u64,
}

/// Reads a record's kind and creation time from its header, without
/// verifying the checksum (drop decisions need no more; records are verified
/// when the store opens and when they are read for publishing).
pub fn peek_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_LEN + CRC_LEN
        || !matches!(bytes.first(), Some(&(FORMAT_VERSION | FORMAT_RENDERED)))
    {
        return None;
    }
    let kind = Kind::from_byte(*bytes.get(1)?)?;
    let created_ms = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some(Header { kind, created_ms })
}

/// The store key of a seq.
pub fn seq_key(seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = RECORD_PREFIX;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The seq of a store key.
pub fn key_seq(key: &[u8]) -> Result<u64, RecordError> {
    match key {
        [RECORD_PREFIX, rest @ ..] => Ok(u64::from_be_bytes(
            rest.try_into().map_err(|_| RecordError::Key)?,
        )),
        _ => Err(RecordError::Key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Telemetry),
            Just(Kind::Health),
            Just(Kind::Availability),
            Just(Kind::Kpi),
            Just(Kind::Gap)
        ]
    }

    /// The bench's message: 50 u16 registers named r0..r49.
    #[test]
    fn a_typed_telemetry_record_is_smaller_than_the_json_record_it_replaces() {
        use crate::message::{Message, Reading, Telemetry, Value};
        use std::sync::Arc;
        let message: Message = Message::Telemetry(Telemetry {
            ts: 1_796_406_814_123,
            device: Arc::from("dev0"),
            points: (0..50u32)
                .map(|i| {
                    (
                        Arc::from(format!("r{i}").as_str()),
                        Reading::Value(Value::Number(f64::from(1000 + i * 997 % 64_000))),
                    )
                })
                .collect(),
            snapshot: false,
        });
        let typed = Record::encode_message(Kind::Telemetry, 1, &message).unwrap();
        let rendered = crate::wire::render("", &message, 123_456, &"f".repeat(32));
        let json = Record {
            kind: Kind::Telemetry,
            retain: false,
            created_ms: 1,
            body: Body::Rendered {
                topic: rendered.topic,
                payload: rendered.payload.into_bytes(),
            },
        }
        .encode();
        println!(
            "telemetry record of 50 u16 points: {} bytes typed, {} bytes as JSON",
            typed.len(),
            json.len()
        );
        assert!(
            typed.len() * 10 < json.len() * 8,
            "{} vs {}",
            typed.len(),
            json.len()
        );
    }

    proptest! {
        #[test]
        fn a_record_round_trips_through_its_encoding(
            kind in kind(), retain: bool, created_ms: u64, rendered: bool,
            topic in "[a-z/0-9_-]{0,80}", payload in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let (retain, body) = if rendered {
                (retain, Body::Rendered { topic, payload })
            } else {
                (false, Body::Message(payload))
            };
            let record = Record { kind, retain, created_ms, body };
            let bytes = record.encode();
            prop_assert_eq!(bytes.len(), record.encoded_len());
            prop_assert_eq!(Record::decode(&bytes).unwrap(), record.clone());
            prop_assert_eq!(Record::from_bytes(bytes.clone()).unwrap(), record.clone());
            let header = peek_header(&bytes).unwrap();
            prop_assert_eq!((header.kind, header.created_ms), (record.kind, record.created_ms));
        }

        #[test]
        fn any_flipped_bit_is_caught_by_the_checksum(
            payload in proptest::collection::vec(any::<u8>(), 1..256), at: proptest::sample::Index, bit in 0u8..8
        ) {
            let record = Record::message(Kind::Telemetry, 7, payload);
            let mut bytes = record.encode();
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(Record::decode(&bytes).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Record::decode(&bytes);
            let _ = peek_header(&bytes);
            let _ = key_seq(&bytes);
        }

        #[test]
        fn a_newer_format_is_told_apart_from_damage(version in 3u8..=255, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = Record::message(Kind::Kpi, 1, payload).encode();
            bytes[0] = version;
            let crc_at = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..crc_at]);
            bytes[crc_at..].copy_from_slice(&crc.to_be_bytes());
            prop_assert_eq!(Record::decode(&bytes), Err(RecordError::FutureVersion(version)));
        }

        #[test]
        fn seq_keys_sort_in_seq_order(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), seq_key(a).cmp(&seq_key(b)));
            prop_assert_eq!(key_seq(&seq_key(a)).unwrap(), a);
        }
    }
}
