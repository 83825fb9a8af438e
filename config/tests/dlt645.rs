//! Golden tests for DL/T 645-2007 devices: the base configuration with a
//! meter added on its RS-485 bus, and the exact `file:line:col: message`s a
//! mistake in it produces — every one at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use spindle_config::model::{DeviceLink, RegisterWrap};
use spindle_config::parse;

const BASE: &str = include_str!("base.toml");

/// A DL/T 645 meter on `rs485-1` beside the Modbus meters; its table starts
/// on line 55 of the combined file.
const METER: &str = r#"[[device]]
name = "mains"
serial = "rs485-1"
protocol = "dlt645"
meter = "000012345678"
poll = "2s"

[[device.point]]
name = "energy"
di = "00010000"
unit = "kWh"
counter = true

[[device.point]]
name = "voltage_a"
di = "02010100"
scale = 1.0

"#;

/// The base configuration with the meter (edited by `from` → `to`, `from`
/// occurring once in the meter) inserted before the device `cnc-07`.
fn with_meter(from: &str, to: &str) -> String {
    assert_eq!(METER.matches(from).count(), 1, "`{from}` must occur once");
    let meter = METER.replacen(from, to, 1);
    let anchor = "[[device]]\nname = \"cnc-07\"";
    assert_eq!(BASE.matches(anchor).count(), 1);
    BASE.replacen(anchor, &format!("{meter}{anchor}"), 1)
}

/// Every error `text` produces, displayed.
fn the_errors(text: &str) -> Vec<String> {
    match parse("plant.toml", text) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_dlt645_meter_shares_the_serial_bus_with_modbus_devices() {
    let config = parse("plant.toml", &with_meter("poll", "poll")).unwrap();
    let mains = config.devices.iter().find(|d| d.name == "mains").unwrap();
    assert_eq!(mains.link, DeviceLink::Serial("rs485-1".to_owned()));
    let points: Vec<&str> = mains.points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(points, ["energy", "voltage_a"]);
    assert!(mains.points[0].counter);
    assert_eq!(mains.points[0].unit.as_deref(), Some("kWh"));
    let dlt645 = config.dlt645_device("mains").unwrap();
    assert_eq!(dlt645.meter, "000012345678");
    assert_eq!(dlt645.di["energy"], 0x0001_0000);
    assert_eq!(dlt645.di["voltage_a"], 0x0201_0100);
    // The energy counter's register wraps after 999999.99 kWh; the
    // voltage is no counter.
    let wraps: Vec<(&String, &RegisterWrap)> = dlt645.wraps.iter().collect();
    assert_eq!(
        wraps,
        [(&"energy".to_owned(), &RegisterWrap::DLT645_ENERGY)]
    );
    assert_eq!(config.dlt645.len(), 1, "the Modbus devices stay Modbus");
    assert!(config.dlt645_device("gas-1").is_none());
}

#[test]
fn modbus_keys_on_a_dlt645_device_are_refused_all_at_once() {
    let text = with_meter(
        "poll = \"2s\"\n\n[[device.point]]\nname = \"energy\"\ndi = \"00010000\"\n",
        "poll = \"2s\"\nunit = 5\nmax_registers = 10\nmax_gap = 2\n\n[[device.point]]\nname = \"energy\"\ndi = \"00010000\"\narea = \"holding\"\naddress = 0\ntype = \"f32\"\norder = \"CDAB\"\nbit = 1\nlength = 2\n",
    );
    assert_eq!(
        the_errors(&text),
        [
            "plant.toml:61:8: unit is a Modbus key; a DL/T 645 device (protocol = \"dlt645\") is addressed by meter = \"000012345678\"",
            "plant.toml:62:17: max_registers is a Modbus key; a DL/T 645 device (protocol = \"dlt645\") is addressed by meter = \"000012345678\"",
            "plant.toml:63:11: max_gap is a Modbus key; a DL/T 645 device (protocol = \"dlt645\") is addressed by meter = \"000012345678\"",
            "plant.toml:68:8: area is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
            "plant.toml:69:11: address is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
            "plant.toml:70:8: type is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
            "plant.toml:71:9: order is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
            "plant.toml:72:7: bit is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
            "plant.toml:73:10: length is a Modbus key; a DL/T 645 point is read by di = \"02010100\"",
        ]
    );
}

#[test]
fn meter_and_di_on_a_modbus_device_are_refused() {
    let text = BASE
        .replacen("unit = 4\n", "unit = 4\nmeter = \"000012345678\"\n", 1)
        .replacen(
            "name = \"volume\"\n",
            "name = \"volume\"\ndi = \"00010000\"\n",
            1,
        );
    assert_eq!(
        the_errors(&text),
        [
            "plant.toml:45:9: meter is for DL/T 645 devices (protocol = \"dlt645\"); a Modbus device has unit",
            "plant.toml:49:6: di is for DL/T 645 points (protocol = \"dlt645\" on the device); a Modbus point has area and address",
        ]
    );
}

#[test]
fn a_dlt645_device_must_be_on_a_serial_bus() {
    assert_eq!(
        the_errors(&with_meter(
            "serial = \"rs485-1\"",
            "tcp = \"127.0.0.1:5021\""
        )),
        ["plant.toml:57:7: a DL/T 645 device must be on a serial bus: give serial = BUS, not tcp"]
    );
}

#[test]
fn a_dlt645_device_needs_its_meter_address_and_each_point_its_di() {
    let text = with_meter("meter = \"000012345678\"\n", "").replacen("di = \"02010100\"\n", "", 1);
    assert_eq!(
        the_errors(&text),
        [
            "plant.toml:55:1: missing key `meter` in a DL/T 645 [[device]]",
            "plant.toml:67:1: missing key `di` in a DL/T 645 [[device.point]]",
        ]
    );
}

#[test]
fn a_meter_address_is_twelve_digits_and_a_di_eight_hex_digits() {
    let text = with_meter("meter = \"000012345678\"", "meter = \"12345678\"")
        .replacen("di = \"02010100\"", "di = \"0201010\"", 1)
        .replacen("di = \"00010000\"", "di = \"0001000G\"", 1);
    assert_eq!(
        the_errors(&text),
        [
            "plant.toml:59:9: meter must be the 12 digits printed on the meter (like \"000012345678\"), got \"12345678\"",
            "plant.toml:64:6: di must be 8 hex digits, DI3 first (like \"00010000\"), got \"0001000G\"",
            "plant.toml:70:6: di must be 8 hex digits, DI3 first (like \"00010000\"), got \"0201010\"",
        ]
    );
}

#[test]
fn two_devices_with_one_meter_address_on_one_bus_are_refused() {
    let second = METER.replacen("name = \"mains\"", "name = \"mains_2\"", 1);
    let text = with_meter("scale = 1.0\n", &format!("scale = 1.0\n\n{second}"));
    assert_eq!(
        the_errors(&text),
        [
            "plant.toml:77:9: meter 000012345678 on serial bus \"rs485-1\" is already used by device \"mains\" (line 59)"
        ]
    );
}

#[test]
fn an_unknown_protocol_is_refused_with_a_suggestion() {
    assert_eq!(
        the_errors(&with_meter(
            "protocol = \"dlt645\"",
            "protocol = \"dlt654\""
        )),
        ["plant.toml:58:12: unknown protocol \"dlt654\"; did you mean \"dlt645\"?"]
    );
}

#[test]
fn a_dlt645_profile_brings_points_with_identifiers_and_ct_pt_scaling() {
    let text = with_meter(
        "poll = \"2s\"\n",
        "poll = \"2s\"\nprofile = \"dlt645-three-phase\"\nprofile_options = { ct_ratio = 40, pt_ratio = 1 }\n",
    );
    let config = parse("plant.toml", &text).unwrap();
    let mains = config.devices.iter().find(|d| d.name == "mains").unwrap();
    let dlt645 = config.dlt645_device("mains").unwrap();
    assert_eq!(
        mains.points.len(),
        28 + 1,
        "the profile's 28 and the file's energy"
    );
    assert_eq!(
        dlt645.di.len(),
        mains.points.len(),
        "every point has its di"
    );
    let point = |name: &str| mains.points.iter().find(|p| p.name == name).unwrap();
    assert_eq!(dlt645.di["energy_import"], 0x0001_0000);
    assert!((point("energy_import").scale - 40.0).abs() < 1e-12);
    assert!((point("power_total").scale - 40_000.0).abs() < 1e-9);
    assert!((point("current_b").scale - 40.0).abs() < 1e-12);
    assert_eq!(point("power_total").unit.as_deref(), Some("W"));
    // The file's voltage_a replaces the profile's, scale and all.
    assert_eq!(dlt645.di["voltage_a"], 0x0201_0100);
    assert!((point("voltage_a").scale - 1.0).abs() < 1e-12);
}

#[test]
fn a_profile_of_the_other_protocol_is_refused_at_its_position() {
    let errors = the_errors(&with_meter(
        "poll = \"2s\"\n",
        "poll = \"2s\"\nprofile = \"chint-dtsu666\"\n",
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("profile \"chint-dtsu666\" is a Modbus meter's"),
        "{errors:?}"
    );
    let text = BASE.replacen(
        "[[device]]\nname = \"cnc-07\"",
        "[[device]]\nname = \"sub\"\nserial = \"rs485-1\"\nunit = 9\nprofile = \"dlt645-single-phase\"\n\n[[device]]\nname = \"cnc-07\"",
        1,
    );
    let errors = the_errors(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("profile \"dlt645-single-phase\" is for DL/T 645 meters")),
        "{errors:?}"
    );
}
