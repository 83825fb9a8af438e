//! Fuzz target `outbox_record`: see `fuzz/checks/outbox_record.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/outbox_record.rs"]
mod outbox_record;

libfuzzer_sys::fuzz_target!(|data: &[u8]| outbox_record::check(data));
