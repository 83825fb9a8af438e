//! The `outbox_record` check: whatever bytes the store hands back, reading
//! them as an outbox record (`spindle::outbox::Record::decode`) and a
//! format-2 body as a typed message (`spindle::message::decode`), then
//! rendering that message for publishing (`spindle::wire::render`), never
//! panics, and:
//!
//! - a decoded record encodes to a record that decodes to itself, of
//!   `encoded_len` bytes, and its header reads back by `peek_header`;
//! - a decoded message encodes again, and that encoding decodes and encodes
//!   to the same bytes (postcard is stable across a read and a rewrite);
//! - its rendering has a topic and a payload that is one JSON value.
//!
//! Input: a mode byte, then the record. Mode bit 0 set: the CRC-32 of the
//! record bytes is appended before decoding, so the fuzzer gets past the
//! checksum into the header and body; clear: the bytes are the record as
//! stored, checksum included.

use spindle::message;
use spindle::outbox::record::peek_header;
use spindle::outbox::{Body, Record};
use spindle::wire;

pub(crate) fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stored = if mode & 1 == 1 {
        let mut with_crc = rest.to_vec();
        with_crc.extend_from_slice(&crc32fast::hash(rest).to_be_bytes());
        with_crc
    } else {
        rest.to_vec()
    };
    let _ = peek_header(&stored);
    let Ok(record) = Record::decode(&stored) else {
        return;
    };
    let header = peek_header(&stored).expect("a decoded record has a header");
    assert_eq!(
        (header.kind, header.created_ms),
        (record.kind, record.created_ms)
    );
    let encoded = record.encode();
    assert_eq!(encoded.len(), record.encoded_len());
    assert_eq!(Record::decode(&encoded).as_ref(), Ok(&record));

    let Body::Message(body) = &record.body else {
        return;
    };
    let Ok(decoded) = message::decode(body) else {
        return;
    };
    let again = message::encode(&decoded).expect("a decoded message encodes");
    let reread = message::decode(&again).expect("a message's encoding decodes");
    assert_eq!(message::encode(&reread).ok().as_ref(), Some(&again));

    let rendered = wire::render("", &decoded, 1, "0123456789abcdef0123456789abcdef");
    assert!(!rendered.topic.is_empty());
    if let Err(error) = serde_json::from_str::<serde_json::Value>(&rendered.payload) {
        panic!("payload is not JSON ({error}): {}", rendered.payload);
    }
}
