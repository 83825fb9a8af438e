//! Golden tests: a valid configuration with exactly one mistake, and the
//! exact `file:line:col: message` it must produce.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use spindle_config::{ParseOptions, parse, parse_with};

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

/// The one error `text` produces, displayed.
fn the_error(text: &str) -> String {
    match parse("plant.toml", text) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(errors) => {
            assert_eq!(
                errors.0.len(),
                1,
                "expected exactly one error, got:\n{errors}"
            );
            errors.0[0].to_string()
        }
    }
}

#[test]
fn the_base_configuration_is_valid() {
    parse("plant.toml", BASE).unwrap();
}

#[test]
fn a_toml_syntax_error_is_reported_with_its_position() {
    assert_eq!(
        the_error(&with("unit = 3\n", "unit = = 3\n")),
        "plant.toml:27:8: extra `=`, expected nothing"
    );
}

#[test]
fn an_unknown_key_is_rejected() {
    assert_eq!(
        the_error(&with("poll = \"1s\"", "pol = \"1s\"")),
        "plant.toml:30:1: unknown field `pol`, expected one of `name`, `serial`, `tcp`, `protocol`, `unit`, `meter`, `profile`, `profile_options`, `poll`, `timeout`, `retries`, `max_registers`, `max_gap`, `report`, `heartbeat`, `offline_probe_max`, `point`, `sim`"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_rejected() {
    assert_eq!(
        the_error(&with("unit = 4", "unit = \"4\"")),
        "plant.toml:44:8: invalid type: string \"4\", expected i64"
    );
}

#[test]
fn an_agent_id_with_a_space_is_rejected() {
    assert_eq!(
        the_error(&with("id = \"gw-017\"", "id = \"gw 017\"")),
        "plant.toml:2:6: agent.id must be 1 to 64 characters from A-Z a-z 0-9 _ -, got \"gw 017\""
    );
}

#[test]
fn an_uppercase_device_name_is_rejected() {
    let text = with("name = \"gas-1\"", "name = \"Gas-1\"")
        .replace("\"gas-1.volume\"", "\"Gas-1.volume\"");
    assert_eq!(
        the_error(&text),
        "plant.toml:42:8: device name must be 1 to 64 characters from a-z 0-9 _ -, got \"Gas-1\""
    );
}

#[test]
fn a_point_name_with_a_dash_is_rejected() {
    let text = with("name = \"run_state\"", "name = \"run-state\"")
        .replace("point = \"run_state\"", "point = \"run-state\"");
    assert_eq!(
        the_error(&text),
        "plant.toml:71:8: point name must be 1 to 64 characters from a-z 0-9 _, got \"run-state\""
    );
}

#[test]
fn a_duplicate_device_name_is_rejected() {
    let text =
        format!("{BASE}\n[[device]]\nname = \"gas-1\"\ntcp = \"127.0.0.1:5021\"\nunit = 1\n");
    assert_eq!(
        the_error(&text),
        "plant.toml:108:8: duplicate device \"gas-1\", first defined at line 42"
    );
}

#[test]
fn a_duplicate_point_in_one_device_is_rejected() {
    let text = with(
        "type = \"bool\"\n",
        "type = \"bool\"\n\n[[device.point]]\nname = \"run_state\"\narea = \"input\"\naddress = 11\ntype = \"u16\"\n",
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:83:8: duplicate point \"run_state\" in device \"cnc-07\", first defined at line 71"
    );
}

#[test]
fn a_device_on_an_unknown_serial_bus_is_rejected() {
    assert_eq!(
        the_error(&with(
            "serial = \"rs485-1\"\nunit = 4",
            "serial = \"rs485-2\"\nunit = 4"
        )),
        "plant.toml:43:10: unknown serial bus \"rs485-2\" (defined: rs485-1)"
    );
}

#[test]
fn equipment_naming_an_unknown_device_is_rejected() {
    assert_eq!(
        the_error(&with("device = \"cnc-07\"", "device = \"cnc-08\"")),
        "plant.toml:84:10: unknown device \"cnc-08\""
    );
}

#[test]
fn a_running_point_the_device_lacks_is_rejected() {
    assert_eq!(
        the_error(&with("point = \"run_state\"", "point = \"run_status\"")),
        "plant.toml:88:21: device \"cnc-07\" has no point \"run_status\"; did you mean \"run_state\"?"
    );
}

#[test]
fn a_signal_on_equipment_without_a_device_is_rejected() {
    let text =
        with("device = \"cnc-07\"\n", "").replace("cnc_mode = { point = \"auto_mode\" }\n", "");
    assert_eq!(
        the_error(&text),
        "plant.toml:87:11: running reads a point, so the equipment needs a device"
    );
}

#[test]
fn a_kpi_point_on_an_unknown_device_is_rejected() {
    assert_eq!(
        the_error(&with("\"gas-1.volume\"", "\"gas-2.volume\"")),
        "plant.toml:100:22: unknown device \"gas-2\" in \"gas-2.volume\""
    );
}

#[test]
fn a_kpi_point_not_written_device_dot_point_is_rejected() {
    assert_eq!(
        the_error(&with("\"cnc-07.parts\"", "\"parts\"")),
        "plant.toml:101:22: expected \"DEVICE.POINT\", got \"parts\""
    );
}

#[test]
fn an_unknown_carrier_is_rejected() {
    assert_eq!(
        the_error(&with("carrier = \"natural_gas\"", "carrier = \"gas\"")),
        "plant.toml:100:48: unknown carrier \"gas\"; known carriers: coal, diesel, electricity, gasoline, heat, lpg, natural_gas, steam, water"
    );
}

#[test]
fn an_energy_point_in_a_unit_that_does_not_convert_is_rejected() {
    assert_eq!(
        the_error(&with("unit = \"Wh\"", "unit = \"W\"")),
        "plant.toml:99:22: point \"meter-line1.energy_import\" is in \"W\", which does not convert to \"kWh\" of carrier \"electricity\"; expected Wh, kWh, MWh, GWh"
    );
}

#[test]
fn an_energy_point_without_a_unit_is_rejected() {
    assert_eq!(
        the_error(&with("unit = \"m3\"\n", "")),
        "plant.toml:99:22: point \"gas-1.volume\" has no unit; give it unit = \"m³\" (the unit of carrier \"natural_gas\") or one that converts to it"
    );
}

#[test]
fn an_energy_point_that_is_not_a_counter_is_rejected() {
    assert_eq!(
        the_error(&with("unit = \"m3\"\ncounter = true", "unit = \"m3\"")),
        "plant.toml:99:22: point \"gas-1.volume\" is not a counter; KPIs take the consumption of cumulative counters (counter = true)"
    );
}

#[test]
fn an_output_point_in_another_unit_than_output_unit_is_rejected() {
    assert_eq!(
        the_error(&with("output_unit = \"piece\"", "output_unit = \"kg\"")),
        "plant.toml:101:22: point \"cnc-07.parts\" counts \"piece\" but output_unit is \"kg\""
    );
}

#[test]
fn two_buses_on_one_port_are_rejected() {
    let text = with(
        "parity = \"even\"\n",
        "parity = \"even\"\n\n[[serial]]\nname = \"rs485-2\"\nport = \"/dev/ttyS1\"\nbaud = 9600\n",
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:26:8: port \"/dev/ttyS1\" is already used by serial bus \"rs485-1\" (line 20)"
    );
}

#[test]
fn two_devices_at_one_unit_on_a_bus_are_rejected() {
    assert_eq!(
        the_error(&with("unit = 4", "unit = 3")),
        "plant.toml:44:8: unit 3 on serial bus \"rs485-1\" is already used by device \"meter-line1\" (line 27)"
    );
}

#[test]
fn two_devices_at_one_tcp_endpoint_and_unit_are_rejected() {
    let text =
        format!("{BASE}\n[[device]]\nname = \"cnc-08\"\ntcp = \"127.0.0.1:5020\"\nunit = 1\n");
    assert_eq!(
        the_error(&text),
        "plant.toml:110:8: unit 1 at tcp \"127.0.0.1:5020\" is already used by device \"cnc-07\" (line 58)"
    );
}

#[test]
fn a_device_with_both_tcp_and_serial_is_rejected() {
    assert_eq!(
        the_error(&with(
            "tcp = \"127.0.0.1:5020\"",
            "tcp = \"127.0.0.1:5020\"\nserial = \"rs485-1\""
        )),
        "plant.toml:57:7: give serial = BUS or tcp = \"HOST:PORT\", not both"
    );
}

#[test]
fn a_device_with_neither_tcp_nor_serial_is_rejected() {
    assert_eq!(
        the_error(&with("tcp = \"127.0.0.1:5020\"\n", "")),
        "plant.toml:55:1: missing key `serial` or `tcp` in [[device]]: say how the device is reached"
    );
}

#[test]
fn a_tcp_endpoint_without_a_port_is_rejected() {
    assert_eq!(
        the_error(&with("tcp = \"127.0.0.1:5020\"", "tcp = \"127.0.0.1\"")),
        "plant.toml:57:7: tcp must be \"HOST:PORT\" (like \"192.168.1.20:502\"), got \"127.0.0.1\""
    );
}

#[test]
fn a_bool_in_a_holding_register_without_a_bit_is_rejected() {
    assert_eq!(
        the_error(&with("area = \"coil\"", "area = \"holding\"")),
        "plant.toml:80:8: a bool in a holding register needs bit = 0 to 15 (or use area \"coil\" or \"discrete\")"
    );
}

#[test]
fn a_coil_point_that_is_not_bool_is_rejected() {
    assert_eq!(
        the_error(
            &with(
                "address = 10\ntype = \"u16\"",
                "address = 10\ntype = \"u16\"\narea = \"coil\""
            )
            .replace(
                "name = \"run_state\"\narea = \"holding\"\n",
                "name = \"run_state\"\n"
            )
        ),
        "plant.toml:73:8: a coil point must have type = \"bool\", got \"u16\""
    );
}

#[test]
fn a_bit_above_15_is_rejected() {
    assert_eq!(
        the_error(&with(
            "area = \"coil\"\naddress = 0\ntype = \"bool\"",
            "area = \"holding\"\naddress = 0\ntype = \"bool\"\nbit = 16"
        )),
        "plant.toml:81:7: bit must be 0 to 15, got 16"
    );
}

#[test]
fn a_bit_on_a_numeric_point_is_rejected() {
    assert_eq!(
        the_error(&with(
            "address = 10\ntype = \"u16\"",
            "address = 10\ntype = \"u16\"\nbit = 3"
        )),
        "plant.toml:75:7: bit is only for type = \"bool\""
    );
}

#[test]
fn a_point_address_past_65535_is_rejected() {
    assert_eq!(
        the_error(&with("address = 100\n", "address = 65535\n")),
        "plant.toml:64:11: point spans addresses 65535 to 65536, past the last address 65535"
    );
}

#[test]
fn a_serial_unit_id_of_0_is_rejected() {
    assert_eq!(
        the_error(&with("unit = 4", "unit = 0")),
        "plant.toml:44:8: unit must be 1 to 247 on a serial bus, got 0"
    );
}

#[test]
fn a_tcp_unit_id_above_255_is_rejected() {
    assert_eq!(
        the_error(&with("unit = 1\n", "unit = 256\n")),
        "plant.toml:58:8: unit must be 0 to 255 over tcp, got 256"
    );
}

#[test]
fn a_string_point_without_length_is_rejected() {
    assert_eq!(
        the_error(&with(
            "address = 10\ntype = \"u16\"",
            "address = 10\ntype = \"string\""
        )),
        "plant.toml:74:8: a string point needs length = registers (1 to 125)"
    );
}

#[test]
fn length_on_a_numeric_point_is_rejected() {
    assert_eq!(
        the_error(&with(
            "address = 10\ntype = \"u16\"",
            "address = 10\ntype = \"u16\"\nlength = 4"
        )),
        "plant.toml:75:10: length is only for type = \"string\""
    );
}

#[test]
fn a_non_finite_scale_is_rejected() {
    assert_eq!(
        the_error(&with("scale = 0.01", "scale = nan")),
        "plant.toml:51:9: scale must be a finite number, got NaN"
    );
}

#[test]
fn a_zero_poll_interval_is_rejected() {
    assert_eq!(
        the_error(&with("poll = \"1s\"", "poll = \"0ms\"")),
        "plant.toml:30:8: poll must not be zero"
    );
}

#[test]
fn a_malformed_duration_is_rejected_with_an_example() {
    assert_eq!(
        the_error(&with("timeout = \"300ms\"", "timeout = \"300 ms\"")),
        "plant.toml:31:11: timeout: expected a duration like \"500ms\", \"1s\", \"15m\", \"1h\" or \"1d\", got \"300 ms\""
    );
}

#[test]
fn max_registers_above_125_is_rejected() {
    assert_eq!(
        the_error(&with(
            "timeout = \"300ms\"",
            "timeout = \"300ms\"\nmax_registers = 126"
        )),
        "plant.toml:32:17: max_registers must be 1 to 125, got 126"
    );
}

#[test]
fn a_kpi_window_that_does_not_divide_a_day_is_rejected() {
    assert_eq!(
        the_error(&with("window = \"15m\"", "window = \"7m\"")),
        "plant.toml:93:10: window must divide a day evenly (like \"15m\", \"1h\" or \"1d\") or be a calendar month (\"1mo\"), got \"7m\""
    );
}

#[test]
fn a_kpi_window_longer_than_a_day_is_rejected() {
    assert_eq!(
        the_error(&with("window = \"1h\"", "window = \"2d\"")),
        "plant.toml:98:10: window must divide a day evenly (like \"15m\", \"1h\" or \"1d\") or be a calendar month (\"1mo\"), got \"2d\""
    );
}

#[test]
fn a_counter_on_a_bool_point_is_rejected() {
    assert_eq!(
        the_error(&with(
            "area = \"coil\"\naddress = 0\ntype = \"bool\"",
            "area = \"coil\"\naddress = 0\ntype = \"bool\"\ncounter = true"
        )),
        "plant.toml:81:11: a counter needs a numeric type, got \"bool\""
    );
}

#[test]
fn rollover_on_a_point_that_is_not_a_counter_is_rejected() {
    assert_eq!(
        the_error(&with(
            "address = 10\ntype = \"u16\"",
            "address = 10\ntype = \"u16\"\nrollover = 9999"
        )),
        "plant.toml:75:12: rollover is only for counters (counter = true)"
    );
}

#[test]
fn a_rollover_past_the_type_maximum_is_rejected() {
    assert_eq!(
        the_error(&with(
            "order = \"CDAB\"",
            "order = \"CDAB\"\nrollover = 4294967296"
        )),
        "plant.toml:67:12: rollover must be 1 to 4294967295 for u32, got 4294967296"
    );
}

#[test]
fn a_misspelt_timezone_is_rejected_with_the_name_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("\"Asia/Shanghai\"", "\"Asia/Shangai\"")),
        "plant.toml:5:12: unknown timezone \"Asia/Shangai\"; did you mean \"Asia/Shanghai\"?"
    );
}

#[test]
fn an_unknown_timezone_far_from_any_name_is_rejected_with_an_example() {
    assert_eq!(
        the_error(&with("\"Asia/Shanghai\"", "\"Mars/Olympus_Mons\"")),
        "plant.toml:5:12: unknown timezone \"Mars/Olympus_Mons\"; expected an IANA name like \"Asia/Shanghai\" or \"UTC\""
    );
}

#[test]
fn a_day_start_without_two_digit_hours_is_rejected() {
    assert_eq!(
        the_error(&with("\"08:00\"", "\"8:00\"")),
        "plant.toml:6:13: day_start must be a time \"HH:MM\" from \"00:00\" to \"23:59\", got \"8:00\""
    );
}

#[test]
fn password_file_and_password_env_together_are_rejected() {
    assert_eq!(
        the_error(&with(
            "keep_alive",
            "password_env = \"MQTT_PASSWORD\"\nkeep_alive"
        )),
        "plant.toml:12:16: give password_file or password_env, not both"
    );
}

#[test]
fn an_http_url_is_rejected() {
    assert_eq!(
        the_error(&with("mqtt://127.0.0.1:1883", "http://127.0.0.1:1883")),
        "plant.toml:9:7: url must start with mqtt:// or mqtts://, got \"http://127.0.0.1:1883\""
    );
}

#[test]
fn a_cert_file_without_a_key_file_is_rejected() {
    assert_eq!(
        the_error(&with(
            "url = \"mqtt://127.0.0.1:1883\"",
            "url = \"mqtts://broker.example:8883\"\ncert_file = \"/etc/spindle/client.pem\""
        )),
        "plant.toml:10:13: cert_file needs key_file (mutual TLS takes both)"
    );
}

#[test]
fn a_parity_other_than_none_even_or_odd_is_rejected() {
    assert_eq!(
        the_error(&with("parity = \"even\"", "parity = \"mark\"")),
        "plant.toml:22:10: parity must be one of none, even, odd, got \"mark\""
    );
}

#[test]
fn nine_data_bits_are_rejected() {
    assert_eq!(
        the_error(&with(
            "parity = \"even\"",
            "parity = \"even\"\ndata_bits = 9"
        )),
        "plant.toml:23:13: data_bits must be 5 to 8, got 9"
    );
}

#[test]
fn a_zero_baud_rate_is_rejected() {
    assert_eq!(
        the_error(&with("baud = 9600", "baud = 0")),
        "plant.toml:21:8: baud must be 1 to 4294967295, got 0"
    );
}

#[test]
fn an_empty_energy_list_is_rejected() {
    let text = with(
        "energy = [ { point = \"meter-line1.energy_import\", carrier = \"electricity\" },\n           { point = \"gas-1.volume\", carrier = \"natural_gas\" } ]",
        "energy = []",
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:99:10: energy must list at least one { point = \"DEVICE.POINT\", carrier = \"...\" }"
    );
}

#[test]
fn a_numeric_cnc_mode_point_without_values_is_rejected() {
    assert_eq!(
        the_error(&with(
            "{ point = \"auto_mode\" }",
            "{ point = \"run_state\" }"
        )),
        "plant.toml:89:22: point \"run_state\" is u16, so cnc_mode needs values = [...] (only a bool point may go without)"
    );
}

#[test]
fn a_non_finite_signal_value_is_rejected() {
    assert_eq!(
        the_error(&with("values = [2, 3]", "values = [2, inf]")),
        "plant.toml:88:47: running.values must be a finite number, got inf"
    );
}

#[test]
fn an_unknown_profile_is_rejected() {
    assert_eq!(
        the_error(&with(
            "profile = \"chint-dtsu666\"",
            "profile = \"chint-dtsu777\""
        )),
        "plant.toml:28:11: unknown profile \"chint-dtsu777\"; built-in profiles: chint-dtsu666, eastron-sdm630, eastron-sdm120, acrel-adl400, schneider-pm5100, generic-cnc-plc, dlt645-three-phase, dlt645-single-phase"
    );
}

#[test]
fn an_unknown_profile_option_is_rejected() {
    assert_eq!(
        the_error(&with("ct_ratio = 40", "ct = 40")),
        "plant.toml:29:54: unknown option `ct` for profile \"chint-dtsu666\"; expected one of energy_register, ct_ratio, pt_ratio"
    );
}

#[test]
fn an_energy_register_the_profile_does_not_know_is_rejected() {
    assert_eq!(
        the_error(&with("\"0x101E\"", "\"0x1234\"")),
        "plant.toml:29:39: option `energy_register` must be one of \"0x101E\", \"0x401E\", \"0x4000\""
    );
}

#[test]
fn a_missing_required_key_is_reported_at_its_table() {
    let text = with("process = \"machining\"\n", "").replace("processes = [\"machining\"]\n", "");
    assert_eq!(
        the_error(&text),
        "plant.toml:82:1: missing key `process` in [[equipment]]"
    );
}

#[test]
fn a_duplicate_kpi_name_within_a_kind_is_rejected() {
    let text = format!("{BASE}\n[[kpi.cnc_coverage]]\nname = \"plant\"\nwindow = \"1d\"\n");
    assert_eq!(
        the_error(&text),
        "plant.toml:108:8: duplicate cnc_coverage KPI \"plant\", first defined at line 92"
    );
}

#[test]
fn a_process_no_equipment_has_is_rejected() {
    assert_eq!(
        the_error(&with(
            "processes = [\"machining\"]",
            "processes = [\"machinning\"]"
        )),
        "plant.toml:94:14: no equipment has process \"machinning\" (processes: machining)"
    );
}

#[test]
fn a_new_carrier_without_coefficients_is_rejected() {
    let text = format!("{BASE}\n[carriers.compressed_air]\nunit = \"m3\"\nkgce_per_unit = 0.04\n");
    assert_eq!(
        the_error(&text),
        "plant.toml:107:1: missing key `kgco2_per_unit` in [carriers.compressed_air]"
    );
}

#[test]
fn a_sim_table_is_rejected_outside_the_simulator() {
    let text = with(
        "report = \"on_change\"\n",
        "report = \"on_change\"\n\n[device.sim]\nparts_per_minute = 2\n",
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:61:1: [device.sim] is read only by `spindle simulate`; remove it from configurations the agent runs"
    );
    let parsed = parse_with("plant.toml", &text, ParseOptions { allow_sim: true }).unwrap();
    assert_eq!(
        parsed.sim["cnc-07"]["parts_per_minute"].as_integer(),
        Some(2)
    );
}

#[test]
fn every_mistake_in_a_file_is_reported_in_one_run() {
    let text = BASE
        .replacen("id = \"gw-017\"", "id = \"gw 017\"", 1)
        .replacen("baud = 9600", "baud = 0", 1)
        .replacen(
            "serial = \"rs485-1\"\nunit = 4",
            "serial = \"rs485-9\"\nunit = 4",
            1,
        )
        .replacen("address = 100\n", "address = 65535\n", 1)
        .replacen("point = \"run_state\"", "point = \"run_status\"", 1)
        .replacen("window = \"15m\"", "window = \"7m\"", 1)
        .replacen("carrier = \"natural_gas\"", "carrier = \"gas\"", 1);
    let errors = parse("plant.toml", &text).unwrap_err();
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "plant.toml:2:6: agent.id must be 1 to 64 characters from A-Z a-z 0-9 _ -, got \"gw 017\"",
            "plant.toml:21:8: baud must be 1 to 4294967295, got 0",
            "plant.toml:43:10: unknown serial bus \"rs485-9\" (defined: rs485-1)",
            "plant.toml:64:11: point spans addresses 65535 to 65536, past the last address 65535",
            "plant.toml:88:21: device \"cnc-07\" has no point \"run_status\"; did you mean \"run_state\"?",
            "plant.toml:93:10: window must divide a day evenly (like \"15m\", \"1h\" or \"1d\") or be a calendar month (\"1mo\"), got \"7m\"",
            "plant.toml:100:48: unknown carrier \"gas\"; known carriers: coal, diesel, electricity, gasoline, heat, lpg, natural_gas, steam, water",
        ]
    );
    assert_eq!(errors.to_string(), shown.join("\n"));
}

#[test]
fn profile_options_without_a_profile_are_rejected() {
    assert_eq!(
        the_error(&with(
            "unit = 4\n",
            "unit = 4\nprofile_options = { ct_ratio = 40 }\n"
        )),
        "plant.toml:45:21: profile_options needs a profile"
    );
}

#[test]
fn a_missing_mqtt_table_is_reported_at_the_top_of_the_file() {
    let text = with(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"gw-017\"\npassword_file = \"/etc/spindle/mqtt.secret\"\nkeep_alive = \"30s\"\n",
        "",
    );
    assert_eq!(the_error(&text), "plant.toml:1:1: missing table [mqtt]");
}

#[test]
fn a_zero_keep_alive_is_rejected() {
    assert_eq!(
        the_error(&with("keep_alive = \"30s\"", "keep_alive = \"0s\"")),
        "plant.toml:12:14: keep_alive must not be zero"
    );
}

#[test]
fn a_keep_alive_that_is_not_whole_seconds_is_rejected() {
    assert_eq!(
        the_error(&with("keep_alive = \"30s\"", "keep_alive = \"1500ms\"")),
        "plant.toml:12:14: keep_alive must be whole seconds from 1s to 65535s"
    );
}

#[test]
fn a_topic_prefix_with_a_wildcard_is_rejected() {
    assert_eq!(
        the_error(&with(
            "keep_alive = \"30s\"",
            "keep_alive = \"30s\"\ntopic_prefix = \"plant/#\""
        )),
        "plant.toml:13:16: topic_prefix must be topic levels without wildcards or empty levels (like \"spindle\"), got \"plant/#\""
    );
}

#[test]
fn a_ca_file_on_a_plain_mqtt_url_is_rejected() {
    assert_eq!(
        the_error(&with(
            "keep_alive = \"30s\"",
            "keep_alive = \"30s\"\nca_file = \"/etc/spindle/ca.pem\""
        )),
        "plant.toml:13:11: ca_file needs an mqtts:// url"
    );
}

#[test]
fn a_zero_max_size_is_rejected() {
    assert_eq!(
        the_error(&with("max_size = \"256MiB\"", "max_size = \"0MiB\"")),
        "plant.toml:15:12: max_size must not be zero"
    );
}

#[test]
fn a_string_longer_than_max_registers_is_rejected() {
    let text = with(
        "address = 10\ntype = \"u16\"",
        "address = 10\ntype = \"string\"\nlength = 40",
    )
    .replace("unit = 1\nreport", "unit = 1\nmax_registers = 32\nreport");
    assert_eq!(
        the_error(&text),
        "plant.toml:59:17: point \"run_state\" needs 40 registers in one request but max_registers is 32"
    );
}

/// `segment` repeated `count` times, joined by dots.
fn dotted(segment: &str, count: usize) -> String {
    vec![segment; count].join(".")
}

#[test]
fn a_dotted_key_nested_too_deep_is_reported_at_the_key() {
    let text = with(
        "day_start = \"08:00\"\n",
        &format!("day_start = \"08:00\"\n{} = 1\n", dotted("a", 85)),
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:7:1: key nests 86 levels deep (at most 16 allowed); no spindle key nests deeper than 4 (6 in [device.sim])"
    );
}

#[test]
fn a_table_header_nested_too_deep_is_reported_at_its_first_segment() {
    let text = format!("{BASE}\n[{}]\nx = 1\n", dotted("a", 85));
    assert_eq!(
        the_error(&text),
        "plant.toml:107:2: key nests 85 levels deep (at most 16 allowed); no spindle key nests deeper than 4 (6 in [device.sim])"
    );
}

#[test]
fn an_array_table_header_with_quoted_segments_nested_too_deep_is_reported() {
    let text = format!("{BASE}\n[[device.\"sim.x\".{}]]\n", dotted("'b'", 15));
    assert_eq!(
        the_error(&text),
        "plant.toml:107:3: key nests 17 levels deep (at most 16 allowed); no spindle key nests deeper than 4 (6 in [device.sim])"
    );
}

#[test]
fn inline_tables_nested_too_deep_are_reported_at_the_first_key_past_the_limit() {
    let mut value = String::from("1");
    for _ in 0..100 {
        value = format!("{{ a = {value} }}");
    }
    let text = with("unit = 4\n", &format!("unit = 4\nx = {value}\n"));
    assert_eq!(
        the_error(&text),
        "plant.toml:45:91: key nests 17 levels deep (at most 16 allowed); no spindle key nests deeper than 4 (6 in [device.sim])"
    );
}

#[test]
fn a_misspelt_parity_is_rejected_with_the_word_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("parity = \"even\"", "parity = \"evn\"")),
        "plant.toml:22:10: unknown parity \"evn\"; did you mean \"even\"?"
    );
}

#[test]
fn a_word_order_in_lowercase_is_rejected_with_its_uppercase_spelling() {
    assert_eq!(
        the_error(&with("order = \"CDAB\"", "order = \"cdab\"")),
        "plant.toml:66:9: unknown order \"cdab\"; did you mean \"CDAB\"?"
    );
}

#[test]
fn a_misspelt_area_is_rejected_with_the_word_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("area = \"coil\"", "area = \"coils\"")),
        "plant.toml:78:8: unknown area \"coils\"; did you mean \"coil\"?"
    );
}

#[test]
fn a_value_type_with_swapped_digits_is_rejected_with_the_type_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("type = \"f32\"", "type = \"f23\"")),
        "plant.toml:37:8: unknown type \"f23\"; did you mean \"f32\"?"
    );
}

#[test]
fn a_misspelt_report_mode_is_rejected_with_the_word_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("report = \"on_change\"", "report = \"on_chnage\"")),
        "plant.toml:59:10: unknown report \"on_chnage\"; did you mean \"on_change\"?"
    );
}

#[test]
fn a_misspelt_profile_is_rejected_with_the_profile_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with(
            "profile = \"chint-dtsu666\"",
            "profile = \"chint-dtsu66\""
        )),
        "plant.toml:28:11: unknown profile \"chint-dtsu66\"; did you mean \"chint-dtsu666\"?"
    );
}

#[test]
fn a_misspelt_serial_bus_is_rejected_with_the_bus_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with(
            "serial = \"rs485-1\"\nunit = 4",
            "serial = \"rs485_1\"\nunit = 4"
        )),
        "plant.toml:43:10: unknown serial bus \"rs485_1\"; did you mean \"rs485-1\"?"
    );
}

#[test]
fn equipment_naming_a_misspelt_device_is_rejected_with_the_device_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with("device = \"cnc-07\"", "device = \"cnc07\"")),
        "plant.toml:84:10: unknown device \"cnc07\"; did you mean \"cnc-07\"?"
    );
}

#[test]
fn a_misspelt_kpi_point_is_rejected_with_the_reference_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with(
            "\"meter-line1.energy_import\"",
            "\"meter-line1.energy_imprt\""
        )),
        "plant.toml:99:22: device \"meter-line1\" has no point \"energy_imprt\"; did you mean \"meter-line1.energy_import\"?"
    );
}

#[test]
fn a_kpi_point_on_a_misspelt_device_is_rejected_with_the_reference_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with(
            "\"meter-line1.energy_import\"",
            "\"meter-lin1.energy_imprt\""
        )),
        "plant.toml:99:22: unknown device \"meter-lin1\" in \"meter-lin1.energy_imprt\"; did you mean \"meter-line1.energy_import\"?"
    );
}

#[test]
fn a_misspelt_built_in_carrier_is_rejected_with_the_carrier_it_was_meant_to_be() {
    assert_eq!(
        the_error(&with(
            "carrier = \"electricity\"",
            "carrier = \"electricty\""
        )),
        "plant.toml:99:61: unknown carrier \"electricty\"; did you mean \"electricity\"?"
    );
}

#[test]
fn a_misspelt_configured_carrier_is_rejected_with_the_carrier_it_was_meant_to_be() {
    let text = format!(
        "{}\n[carriers.town_gas]\nunit = \"m3\"\nkgce_per_unit = 0.5\nkgco2_per_unit = 0.9\n",
        with("carrier = \"natural_gas\"", "carrier = \"twon_gas\"")
    );
    assert_eq!(
        the_error(&text),
        "plant.toml:100:48: unknown carrier \"twon_gas\"; did you mean \"town_gas\"?"
    );
}
