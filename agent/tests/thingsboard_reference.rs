//! Reference shape: spindle's `thingsboard` rendering of the points the
//! ThingsBoard IoT Gateway 3.8.5 read from the same simulated device
//! (`tests/fixtures/thingsboard-gateway/`) has the gateway's structure:
//! the same topics, the same nesting (`{device:[{"ts":…,"values":{…}}]}`),
//! an integer `ts`, every key the gateway sent with the same JSON type and
//! (within the gateway's rounding) the same value. The only keys spindle
//! adds to an entry are `seq` and `store`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value as Json;
use spindle::message::{Message, Reading, Telemetry, Value};
use spindle::wire::thingsboard::{self as tb, Gateway, Subject};
use spindle_config::model::DeviceNameTemplate;

fn reference() -> Vec<(String, Json)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/thingsboard-gateway/capture.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let (topic, payload) = line.split_once(' ').unwrap();
            (topic.to_owned(), serde_json::from_str(payload).unwrap())
        })
        .collect()
}

fn first<'a>(reference: &'a [(String, Json)], topic: &str) -> &'a Json {
    &reference.iter().find(|(t, _)| t == topic).unwrap().1
}

/// The JSON type of a value, as ThingsBoard's converter sees it.
fn kind(v: &Json) -> &'static str {
    match v {
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
        Json::Null => "null",
    }
}

#[test]
fn spindle_telemetry_has_the_iot_gateways_structure_for_the_same_points() {
    let reference = reference();
    // The IoT Gateway names the device as its connector config does: `{device}`.
    let gw = Gateway::new("ref", "ref", DeviceNameTemplate::parse("{device}").unwrap());
    let message = Message::Telemetry(Telemetry {
        ts: 1_796_409_833_954,
        device: Arc::from("meter-1"),
        points: vec![
            (Arc::from("count"), Reading::Value(Value::Number(1234.0))),
            (
                Arc::from("temp"),
                Reading::Value(Value::Number(-53.0 * 0.1)),
            ),
            (
                Arc::from("voltage"),
                Reading::Value(Value::Number(f64::from(229.8f32))),
            ),
            (
                Arc::from("energy"),
                Reading::Value(Value::Number(100_000.0)),
            ),
        ],
        snapshot: false,
    });
    let (topic, payload) = tb::render(&gw, &message, 1, "de996c7dd19a0c2008b7ddedfef4beb4");
    let ours: Json = serde_json::from_str(&payload).unwrap();
    let theirs = first(&reference, tb::GATEWAY_TELEMETRY);
    assert!(reference.iter().any(|(t, _)| t == topic));

    // {device: [entry]} with one device, the same name.
    let (o, t) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    assert_eq!(
        o.keys().collect::<Vec<_>>(),
        t.keys().collect::<Vec<_>>(),
        "device names"
    );
    let ours = &o["meter-1"][0];
    let theirs = &t["meter-1"][0];
    let keys = |e: &Json| {
        e.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(ours), keys(theirs), "entry members");
    assert_eq!(kind(&ours["ts"]), "integer");
    assert_eq!(kind(&theirs["ts"]), "integer");

    let (ov, tv) = (
        ours["values"].as_object().unwrap(),
        theirs["values"].as_object().unwrap(),
    );
    for (key, value) in tv {
        let mine = ov.get(key).unwrap_or_else(|| panic!("no {key} in {ov:?}"));
        let (a, b) = (mine.as_f64().unwrap(), value.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{key}: {mine} vs the gateway's {value}"
        );
        // An integral value is an integer in both; a fraction a number in both.
        assert_eq!(kind(mine), kind(value), "{key}: {mine} vs {value}");
    }
    let extra: BTreeSet<&str> = ov
        .keys()
        .map(String::as_str)
        .filter(|k| !tv.contains_key(*k))
        .collect();
    assert_eq!(
        extra,
        BTreeSet::from(["seq", "store"]),
        "the keys spindle adds"
    );
}

#[test]
fn connect_and_attributes_have_the_iot_gateways_structure() {
    let reference = reference();
    let gw = Gateway::new("ref", "ref", DeviceNameTemplate::parse("{device}").unwrap());
    let device = Subject::Device("meter-1".into());
    let ours: Json = serde_json::from_str(&tb::connect(&gw, &device)).unwrap();
    assert_eq!(
        &ours,
        first(&reference, tb::CONNECT),
        "connect, byte for byte in JSON"
    );
    let ours: Json = serde_json::from_str(&tb::attributes(&gw, &device)).unwrap();
    let theirs = first(&reference, tb::GATEWAY_ATTRIBUTES);
    // {device: {key: primitive, …}}; the keys are each gateway's own.
    for payload in [&ours, theirs] {
        let o = payload.as_object().unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), vec!["meter-1"]);
        assert!(
            o["meter-1"]
                .as_object()
                .unwrap()
                .values()
                .all(|v| matches!(kind(v), "string" | "integer" | "number" | "boolean")),
            "{payload}"
        );
    }
}
