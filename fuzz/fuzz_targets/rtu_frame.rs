//! Fuzz target `rtu_frame`: see `fuzz/checks/rtu_frame.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/rtu_frame.rs"]
mod rtu_frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| rtu_frame::check(data));
