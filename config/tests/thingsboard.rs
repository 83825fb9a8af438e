//! `[mqtt] dialect = "thingsboard"`: the access token, the device-name
//! template and the packet limit, and every mistake in them reported at
//! its position, all at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spindle_config::model::{DeviceNameTemplate, Dialect, PasswordSource};
use spindle_config::parse;
use std::fmt::Write as _;

fn config(mqtt: &str, points: &str) -> String {
    format!(
        r#"
[agent]
id = "gw-017"
site = "gedian-acme"
data_dir = "/tmp/spindle-tb"
timezone = "UTC"

[mqtt]
url = "mqtt://127.0.0.1:1883"
{mqtt}

[[device]]
name = "meter-line1"
tcp = "127.0.0.1:5020"
unit = 1

[[device.point]]
name = "voltage_a"
area = "holding"
address = 0
type = "f32"
{points}
"#
    )
}

fn errors(text: &str) -> String {
    parse("tb.toml", text).unwrap_err().to_string()
}

#[test]
fn the_spindle_dialect_stays_the_default_with_mqtts_packet_limit() {
    let c = parse("tb.toml", &config("", "")).unwrap();
    assert_eq!(c.mqtt.dialect, Dialect::Spindle);
    assert_eq!(c.mqtt.max_packet, 268_435_455);
    assert_eq!(c.mqtt.token, None);
}

#[test]
fn thingsboard_takes_its_token_from_a_variable_and_defaults_to_64_kib_packets() {
    // PATH is set in every test environment; only its name is kept.
    let c = parse(
        "tb.toml",
        &config("dialect = \"thingsboard\"\ntoken_env = \"PATH\"", ""),
    )
    .unwrap();
    assert_eq!(c.mqtt.dialect, Dialect::ThingsBoard);
    assert_eq!(c.mqtt.max_packet, 65_536);
    assert_eq!(c.mqtt.token, Some(PasswordSource::Env("PATH".into())));
    let path = std::env::var("PATH").unwrap();
    assert!(
        !format!("{c:?}").contains(&path),
        "the token itself is never in the model"
    );
    assert_eq!(
        c.mqtt.device_name.render("s", "a", "meter-line1"),
        "s.a.meter-line1"
    );
}

#[test]
fn a_token_file_is_read_at_check_time_and_a_missing_one_is_an_error_at_its_position() {
    let dir = std::env::temp_dir().join(format!("spindle-tb-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "A1_TEST_TOKEN\n").unwrap();
    let ok = config(
        &format!(
            "dialect = \"thingsboard\"\ntoken_file = \"{}\"\nmax_packet = \"32KiB\"",
            token.display()
        ),
        "",
    );
    let c = parse("tb.toml", &ok).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.mqtt.max_packet, 32 * 1024);
    let missing = config(
        "dialect = \"thingsboard\"\ntoken_file = \"/nonexistent/spindle/token\"",
        "",
    );
    let e = errors(&missing);
    assert!(
        e.starts_with("tb.toml:11:14: cannot read token_file /nonexistent/spindle/token"),
        "{e}"
    );
}

#[test]
fn every_mistake_of_the_thingsboard_keys_is_reported_at_once() {
    let text = config(
        "dialect = \"thingsboard\"\ntoken_env = \"SPINDLE_TB_TEST_UNSET\"\npassword_env = \"X\"\nusername = \"u\"\ndevice_name = \"{site}.{gateway}.{device}\"\nmax_packet = 100",
        "",
    );
    let e = errors(&text);
    for want in [
        "token_env SPINDLE_TB_TEST_UNSET is not set",
        "give an access token or a password, not both",
        "give an access token or a username, not both",
        "device_name: unknown placeholder {gateway}",
        "max_packet must be 1024 to 268435455 bytes",
    ] {
        assert!(e.contains(want), "no {want:?} in\n{e}");
    }
    assert_eq!(e.lines().count(), 5, "{e}");
}

#[test]
fn a_token_with_the_spindle_dialect_is_an_error() {
    let e = errors(&config("token_env = \"PATH\"", ""));
    assert!(
        e.contains("tb.toml:10:13: an access token needs dialect = \"thingsboard\""),
        "{e}"
    );
}

#[test]
fn a_template_without_its_device_or_with_a_stray_brace_is_refused() {
    assert!(DeviceNameTemplate::parse("{site}.{agent}").is_err());
    assert!(DeviceNameTemplate::parse("{site}.{device").is_err());
    assert!(DeviceNameTemplate::parse("{site}}.{device}").is_err());
    let t = DeviceNameTemplate::parse("plant/{device}@{site}").unwrap();
    assert_eq!(
        t.render("s", "a", "kpi.cnc_coverage.plant"),
        "plant/kpi.cnc_coverage.plant@s"
    );
}

#[test]
fn a_packet_limit_below_a_devices_largest_message_names_the_device() {
    let mut points = String::new();
    for i in 0..60 {
        let _ = write!(
            points,
            "\n[[device.point]]\nname = \"serial_number_register_block_{i:02}\"\narea = \"holding\"\naddress = {}\ntype = \"string\"\nlength = 8\n",
            100 + i * 8
        );
    }
    let e = errors(&config("max_packet = 8192", &points));
    assert!(
        e.contains("max_packet (8192 bytes) is below the largest telemetry device \"meter-line1\" can produce"),
        "{e}"
    );
}

#[test]
fn thingsboard_point_names_must_not_collide_with_the_keys_it_adds() {
    let points = "\n[[device.point]]\nname = \"seq\"\narea = \"holding\"\naddress = 10\ntype = \"u16\"\n\n[[device.point]]\nname = \"voltage_a_error\"\narea = \"holding\"\naddress = 11\ntype = \"u16\"\n";
    let e = errors(&config("dialect = \"thingsboard\"", points));
    assert!(
        e.contains("point \"seq\" of device \"meter-line1\" collides"),
        "{e}"
    );
    assert!(
        e.contains("point \"voltage_a_error\" of device \"meter-line1\" collides"),
        "{e}"
    );
    // The spindle dialect has no such keys.
    parse("tb.toml", &config("", points)).unwrap();
}
