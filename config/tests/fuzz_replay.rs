//! Replays the committed fuzz corpus of the `config` target through the
//! check the fuzz target runs: deterministic, no random search. See
//! `fuzz/README.md`.

#![allow(clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/checks/config.rs"]
mod config;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn every_config_seed_parses_or_is_refused_with_positioned_errors() {
    replay::replay("config", config::check);
}
