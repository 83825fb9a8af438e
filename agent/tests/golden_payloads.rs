//! Golden payloads: every payload kind of the `spindle` dialect, byte for
//! byte, from fixed inputs. The fixtures under `tests/golden/` were captured
//! from commit 86b2ec8 (before typed messages and the wire layer); they pin
//! the bytes through refactors. A payload that changes is a bug unless the
//! changelog says otherwise.
//!
//! Inputs that the old code read from the world (the clock for `status`,
//! `/proc/self/io` and the free disk space for `health`, the random store
//! id) are pinned here: `STORE`, `TS`, `BYTES_WRITTEN`, `FREE_BYTES`.
//!
//! `SPINDLE_BLESS=1 cargo test -p spindle --test golden_payloads` rewrites
//! the fixtures (only ever on purpose, with the reason in the commit).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

const STORE: &str = "6f1c0e2a9b8d4c3f8e7a6b5c4d3e2f10";
const TS: u64 = 1_764_201_600_123;
const BYTES_WRITTEN: u64 = 40_960;
const FREE_BYTES: u64 = 1_073_741_824;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares (or with `SPINDLE_BLESS=1` writes) one fixture.
fn check(name: &str, payload: &[u8]) {
    let path = golden_dir().join(format!("{name}.json"));
    if std::env::var_os("SPINDLE_BLESS").is_some() {
        std::fs::write(&path, payload).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(payload),
        String::from_utf8_lossy(&want),
        "payload {name} differs from its golden fixture"
    );
    // Every fixture is one JSON object.
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert!(v.is_object());
}

/// Replaces every occurrence of `from` with `to`.
fn pin_text(payload: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(payload.to_vec())
        .unwrap()
        .replace(from, to)
        .into_bytes()
}

#[path = "golden/capture.rs"]
mod capture;

#[test]
fn status_payloads_match_their_golden_bytes() {
    for (name, payload) in capture::status() {
        check(&name, &payload);
    }
}

#[test]
fn telemetry_payloads_match_their_golden_bytes() {
    for (name, payload) in capture::telemetry() {
        check(&name, &payload);
    }
}

#[test]
fn availability_payloads_match_their_golden_bytes() {
    for (name, payload) in capture::availability() {
        check(&name, &payload);
    }
}

#[test]
fn health_payload_matches_its_golden_bytes() {
    for (name, payload) in capture::health() {
        check(&name, &payload);
    }
}

#[test]
fn gap_payloads_match_their_golden_bytes() {
    for (name, payload) in capture::gap() {
        check(&name, &payload);
    }
}

#[test]
fn kpi_payloads_match_their_golden_bytes() {
    let all = capture::kpi();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "kpi_energy_per_output_good",
        "kpi_energy_per_output_partial",
        "kpi_energy_per_output_no_output",
        "kpi_energy_per_output_no_data",
        "kpi_cnc_coverage_good",
        "kpi_cnc_coverage_partial",
        "kpi_cnc_coverage_no_data",
    ] {
        assert!(names.contains(&want), "no {want} among {names:?}");
    }
    for (name, payload) in all {
        check(&name, &payload);
    }
}

#[test]
fn energy_consumption_payloads_match_their_golden_bytes() {
    let all = capture::kpi_consumption();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "kpi_energy_consumption_good",
        "kpi_energy_consumption_partial",
        "kpi_energy_consumption_no_data",
    ] {
        assert!(names.contains(&want), "no {want} among {names:?}");
    }
    for (name, payload) in all {
        check(&name, &payload);
    }
}

#[test]
fn a_kpi_window_stored_before_energy_consumption_publishes_the_bytes_it_always_had() {
    for (name, payload) in capture::kpi_stored_before_consumption() {
        check(&name, &payload);
    }
}
