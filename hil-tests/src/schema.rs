//! Validation of emitted payloads against the JSON Schemas in `docs/schemas/`.

use std::path::PathBuf;

/// The schema file for a topic suffix (`telemetry/x` → `telemetry.json`).
pub fn schema_for(topic_suffix: &str) -> Option<&'static str> {
    let first = topic_suffix.split('/').next()?;
    Some(match first {
        "status" => "status",
        "telemetry" => "telemetry",
        "availability" => "availability",
        "health" => "health",
        "gap" => "gap",
        "kpi" => match topic_suffix.split('/').nth(1)? {
            "energy_per_output" => "kpi_energy_per_output",
            "cnc_coverage" => "kpi_cnc_coverage",
            "energy_consumption" => "kpi_energy_consumption",
            _ => return None,
        },
        _ => return None,
    })
}

/// The schema of a `thingsboard` dialect topic (`docs/schemas/thingsboard/`).
pub fn thingsboard_schema_for(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "v1/gateway/telemetry" => "thingsboard/gateway_telemetry",
        "v1/gateway/connect" => "thingsboard/connect",
        "v1/gateway/disconnect" => "thingsboard/disconnect",
        "v1/gateway/attributes" => "thingsboard/gateway_attributes",
        "v1/devices/me/telemetry" => "thingsboard/me_telemetry",
        "v1/devices/me/attributes" => "thingsboard/me_attributes",
        _ => return None,
    })
}

/// Validates every `thingsboard` payload received (topic, payload) against
/// its schema; a topic without one is an error. Returns how many were checked.
pub fn validate_thingsboard<'a>(
    messages: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<usize, String> {
    let mut checked = 0;
    for (topic, payload) in messages {
        let name = thingsboard_schema_for(topic)
            .ok_or_else(|| format!("no ThingsBoard schema for topic {topic}"))?;
        let json: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
            format!(
                "{topic}: not JSON ({e}): {}",
                String::from_utf8_lossy(payload)
            )
        })?;
        validate(name, &json).map_err(|e| format!("{topic}: {e}"))?;
        checked += 1;
    }
    Ok(checked)
}

/// Validates `payload` against the schema named `name`; the error lists every violation.
pub fn validate(name: &str, payload: &serde_json::Value) -> Result<(), String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/schemas")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| format!("schema {name}: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(payload)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", errors.join("; ")))
    }
}
