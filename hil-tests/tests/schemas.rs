//! The golden KPI payloads (`agent/tests/golden/kpi_*.json`) against the
//! JSON Schemas in `docs/schemas/`: every kind, every quality, and a window
//! stored before energy consumption. No broker, no agent: file against file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use spindle_hil_tests::schema::validate;

#[test]
fn every_golden_kpi_payload_matches_the_schema_of_its_kind() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file.starts_with("kpi_") || path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let payload: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let kind = payload["kind"].as_str().unwrap();
        validate(&format!("kpi_{kind}"), &payload).unwrap_or_else(|e| panic!("{file}: {e}"));
        checked += 1;
    }
    assert!(checked >= 11, "only {checked} golden KPI payloads");
}
