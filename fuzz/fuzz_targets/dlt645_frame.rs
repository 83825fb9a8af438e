//! Fuzz target `dlt645_frame`: see `fuzz/checks/dlt645_frame.rs` for the input layout
//! and the invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/dlt645_frame.rs"]
mod dlt645_frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dlt645_frame::check(data));
