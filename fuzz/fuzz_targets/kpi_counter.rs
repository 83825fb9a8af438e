//! Fuzz target `kpi_counter`: see `fuzz/checks/kpi_counter.rs` for the input layout and the
//! invariants checked (the corpus replay test runs the same check).
#![no_main]

#[path = "../checks/bytes.rs"]
#[allow(dead_code)]
mod bytes;
#[path = "../checks/kpi_counter.rs"]
mod kpi_counter;

libfuzzer_sys::fuzz_target!(|data: &[u8]| kpi_counter::check(data));
