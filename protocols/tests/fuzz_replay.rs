//! Replays the committed fuzz corpora of the protocol targets (`decode`,
//! `plan`, `rtu_frame`, `mbap`, `dlt645_frame`) through the checks the fuzz targets run:
//! deterministic, no random search. See `fuzz/README.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../fuzz/checks/bytes.rs"]
mod bytes;
#[path = "../../fuzz/checks/decode.rs"]
mod decode;
#[path = "../../fuzz/checks/dlt645_frame.rs"]
mod dlt645_frame;
#[path = "../../fuzz/checks/mbap.rs"]
mod mbap;
#[path = "../../fuzz/checks/plan.rs"]
mod plan;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../fuzz/checks/rtu_frame.rs"]
mod rtu_frame;

#[test]
fn every_decode_seed_keeps_the_decode_invariants() {
    replay::replay("decode", decode::check);
}

#[test]
fn every_plan_seed_keeps_every_point_in_exactly_one_request() {
    replay::replay("plan", plan::check);
}

#[test]
fn every_rtu_frame_seed_parses_within_its_bytes() {
    replay::replay("rtu_frame", rtu_frame::check);
}

#[test]
fn every_mbap_seed_parses_within_its_bytes_and_never_changes_its_mind() {
    replay::replay("mbap", mbap::check);
}

#[test]
fn every_dlt645_frame_seed_parses_within_its_bytes_and_only_echoing_answers_pass() {
    replay::replay("dlt645_frame", dlt645_frame::check);
}
