//! Replays the committed fuzz corpora and regression inputs of the
//! `outbox_record` and `kpi_counter` targets through the checks the fuzz
//! targets run: deterministic, no random search. See `fuzz/README.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../fuzz/checks/bytes.rs"]
#[allow(dead_code)]
mod bytes;
#[path = "../../fuzz/checks/kpi_counter.rs"]
mod kpi_counter;
#[path = "../../fuzz/checks/outbox_record.rs"]
mod outbox_record;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn every_outbox_record_seed_reads_back_and_renders_as_json() {
    replay::replay("outbox_record", outbox_record::check);
}

#[test]
fn every_kpi_counter_seed_keeps_the_counter_rules() {
    replay::replay("kpi_counter", kpi_counter::check);
}
