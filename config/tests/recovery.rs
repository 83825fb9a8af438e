//! The keys that pace recovery after an outage: `[mqtt] reconnect_max`,
//! `[buffer] replay_rate`, `[[device]] offline_probe_max` — their defaults,
//! their values, and the exact error for each mistake.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::num::NonZeroU32;
use std::time::Duration;

use spindle_config::parse;

const BASE: &str = include_str!("base.toml");

/// The base configuration with `from` (which must occur once) replaced by `to`.
fn with(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "`{from}` must occur once in base.toml"
    );
    BASE.replacen(from, to, 1)
}

/// The errors `text` produces, displayed.
fn errors(text: &str) -> Vec<String> {
    match parse("plant.toml", text) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const KEEP_ALIVE: &str = "keep_alive = \"30s\"\n";
const FLUSH: &str = "flush_interval = \"100ms\"\n";
const METER_TIMEOUT: &str = "timeout = \"300ms\"\n";

#[test]
fn without_the_keys_reconnects_cap_at_10s_replay_is_unlimited_and_probes_cap_at_30s() {
    let config = parse("plant.toml", BASE).unwrap();
    assert_eq!(config.mqtt.reconnect_max, Duration::from_secs(10));
    assert_eq!(config.buffer.replay_rate, None);
    assert!(
        config
            .devices
            .iter()
            .all(|d| d.offline_probe_max == Duration::from_secs(30))
    );
}

#[test]
fn the_keys_take_the_values_written() {
    let text = with(
        KEEP_ALIVE,
        "keep_alive = \"30s\"\nreconnect_max = \"2500ms\"\n",
    )
    .replacen(FLUSH, "flush_interval = \"100ms\"\nreplay_rate = 200\n", 1)
    .replacen(
        METER_TIMEOUT,
        "timeout = \"300ms\"\noffline_probe_max = \"5m\"\n",
        1,
    );
    let config = parse("plant.toml", &text).unwrap();
    assert_eq!(config.mqtt.reconnect_max, Duration::from_millis(2500));
    assert_eq!(config.buffer.replay_rate, NonZeroU32::new(200));
    let meter = config
        .devices
        .iter()
        .find(|d| d.name == "meter-line1")
        .unwrap();
    assert_eq!(meter.offline_probe_max, Duration::from_secs(300));
    let gas = config.devices.iter().find(|d| d.name == "gas-1").unwrap();
    assert_eq!(gas.offline_probe_max, Duration::from_secs(30), "per device");
}

#[test]
fn a_zero_reconnect_max_is_rejected() {
    assert_eq!(
        errors(&with(
            KEEP_ALIVE,
            "keep_alive = \"30s\"\nreconnect_max = \"0s\"\n"
        )),
        ["plant.toml:13:17: reconnect_max must not be zero"]
    );
}

#[test]
fn a_reconnect_max_that_is_not_a_duration_is_rejected() {
    assert_eq!(
        errors(&with(
            KEEP_ALIVE,
            "keep_alive = \"30s\"\nreconnect_max = \"10\"\n"
        )),
        [
            "plant.toml:13:17: reconnect_max: expected a duration like \"500ms\", \"1s\", \"15m\", \"1h\" or \"1d\", got \"10\""
        ]
    );
}

#[test]
fn a_reconnect_max_that_is_a_number_is_rejected_as_the_wrong_type() {
    assert_eq!(
        errors(&with(
            KEEP_ALIVE,
            "keep_alive = \"30s\"\nreconnect_max = 10\n"
        )),
        ["plant.toml:13:17: invalid type: integer `10`, expected a string"]
    );
}

#[test]
fn a_zero_replay_rate_is_rejected() {
    assert_eq!(
        errors(&with(
            FLUSH,
            "flush_interval = \"100ms\"\nreplay_rate = 0\n"
        )),
        ["plant.toml:17:15: replay_rate must be 1 to 1000000 messages a second, got 0"]
    );
}

#[test]
fn a_negative_replay_rate_is_rejected() {
    assert_eq!(
        errors(&with(
            FLUSH,
            "flush_interval = \"100ms\"\nreplay_rate = -5\n"
        )),
        ["plant.toml:17:15: replay_rate must be 1 to 1000000 messages a second, got -5"]
    );
}

#[test]
fn a_replay_rate_written_as_a_duration_is_rejected_as_the_wrong_type() {
    assert_eq!(
        errors(&with(
            FLUSH,
            "flush_interval = \"100ms\"\nreplay_rate = \"100/s\"\n"
        )),
        ["plant.toml:17:15: invalid type: string \"100/s\", expected i64"]
    );
}

#[test]
fn a_replay_rate_with_oldest_first_is_rejected_because_live_data_would_wait_behind_it() {
    assert_eq!(
        errors(&with(
            FLUSH,
            "flush_interval = \"100ms\"\nreplay = \"oldest_first\"\nreplay_rate = 50\n"
        )),
        [
            "plant.toml:18:15: replay_rate needs replay = \"live_first\": with \"oldest_first\" live data would wait behind the paced backlog"
        ]
    );
}

#[test]
fn a_zero_offline_probe_max_is_rejected() {
    assert_eq!(
        errors(&with(
            METER_TIMEOUT,
            "timeout = \"300ms\"\noffline_probe_max = \"0ms\"\n"
        )),
        ["plant.toml:32:21: offline_probe_max must not be zero"]
    );
}

#[test]
fn a_malformed_offline_probe_max_is_rejected() {
    assert_eq!(
        errors(&with(
            METER_TIMEOUT,
            "timeout = \"300ms\"\noffline_probe_max = \"half a minute\"\n"
        )),
        [
            "plant.toml:32:21: offline_probe_max: expected a duration like \"500ms\", \"1s\", \"15m\", \"1h\" or \"1d\", got \"half a minute\""
        ]
    );
}

#[test]
fn every_mistake_in_the_three_keys_is_reported_at_once() {
    let text = with(KEEP_ALIVE, "keep_alive = \"30s\"\nreconnect_max = \"0s\"\n")
        .replacen(FLUSH, "flush_interval = \"100ms\"\nreplay_rate = 0\n", 1)
        .replacen(
            METER_TIMEOUT,
            "timeout = \"300ms\"\noffline_probe_max = \"-1s\"\n",
            1,
        );
    assert_eq!(errors(&text).len(), 3, "{:?}", errors(&text));
}
