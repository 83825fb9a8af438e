//! Fuzz target `decode`: see `fuzz/checks/decode.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/bytes.rs"]
#[allow(dead_code)]
mod bytes;
#[path = "../checks/decode.rs"]
mod decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decode::check(data));
