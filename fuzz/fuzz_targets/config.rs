//! Fuzz target `config`: see `fuzz/checks/config.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/config.rs"]
mod config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| config::check(data));
