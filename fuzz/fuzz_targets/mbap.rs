//! Fuzz target `mbap`: see `fuzz/checks/mbap.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/bytes.rs"]
#[allow(dead_code)]
mod bytes;
#[path = "../checks/mbap.rs"]
mod mbap;

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbap::check(data));
