//! The golden KPI payloads (`agent/tests/golden/kpi_*.json`) against the
//! JSON Schemas in `docs/schemas/`: every kind, every quality, and a window
//! stored before energy consumption; the ThingsBoard goldens against
//! `docs/schemas/thingsboard/`. No broker, no agent: file against file.

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

#[test]
fn every_golden_thingsboard_payload_matches_the_schema_of_its_topic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/golden/thingsboard");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let (topic, payload) = text.split_once('\n').unwrap();
        files.push((path, topic.to_owned(), payload.trim_end().to_owned()));
    }
    for (path, topic, payload) in &files {
        spindle_hil_tests::schema::validate_thingsboard([(topic.as_str(), payload.as_bytes())])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert!(
        files.len() >= 19,
        "only {} ThingsBoard goldens",
        files.len()
    );
}

#[test]
fn the_thingsboard_schemas_refuse_what_thingsboard_would_refuse() {
    use spindle_hil_tests::schema::validate_thingsboard;
    for (topic, bad) in [
        (
            "v1/gateway/telemetry",
            r#"{"d":[{"ts":1,"values":{"v":null,"seq":1,"store":"s"}}]}"#,
        ),
        (
            "v1/gateway/telemetry",
            r#"{"d":[{"ts":1,"values":{"v":{"nested":1},"seq":1,"store":"s"}}]}"#,
        ),
        (
            "v1/gateway/telemetry",
            r#"{"d":[{"ts":1,"values":{"v":1}}]}"#,
        ),
        ("v1/gateway/telemetry", r#"{"d":[]}"#),
        (
            "v1/gateway/telemetry",
            r#"{"d":[{"ts":1,"values":{"v_error":3,"seq":1,"store":"s"}}]}"#,
        ),
        ("v1/gateway/connect", r#"{"device":"d"}"#),
        ("v1/gateway/disconnect", r#"{"device":""}"#),
        ("v1/gateway/attributes", r#"{"d":{"site":"s"}}"#),
        ("v1/devices/me/attributes", r#"{"state":"gone","ts":1}"#),
        (
            "v1/devices/me/telemetry",
            r#"{"values":{"seq":1,"store":"s"}}"#,
        ),
    ] {
        assert!(
            validate_thingsboard([(topic, bad.as_bytes())]).is_err(),
            "{topic} {bad} passed"
        );
    }
}
