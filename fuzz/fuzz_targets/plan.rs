//! Fuzz target `plan`: see `fuzz/checks/plan.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/bytes.rs"]
#[allow(dead_code)]
mod bytes;
#[path = "../checks/plan.rs"]
mod plan;

libfuzzer_sys::fuzz_target!(|data: &[u8]| plan::check(data));
