//! Valid configurations load and resolve as SPEC §3 says: profile points
//! merged, defaults applied, carriers overridden, energy units converted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp,
    clippy::too_many_lines
)]

use std::path::Path;
use std::time::Duration;

use spindle_config::model::{
    Area, Device, DeviceLink, Parity, PasswordSource, Replay, Report, Signal, ValueType,
    WindowLength, WordOrder,
};
use spindle_config::{load, parse};

fn device<'a>(devices: &'a [Device], name: &str) -> &'a Device {
    devices.iter().find(|device| device.name == name).unwrap()
}

#[test]
fn a_full_configuration_resolves_profiles_defaults_and_carriers() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/base.toml"));
    let config = load(path).unwrap();

    assert_eq!(config.source, path);
    assert_eq!(config.sha256.len(), 64);
    assert!(config.sha256.bytes().all(|b| b.is_ascii_hexdigit()));

    assert_eq!(config.agent.timezone_name, "Asia/Shanghai");
    assert_eq!(
        (config.agent.day_start.hour, config.agent.day_start.minute),
        (8, 0)
    );

    assert_eq!(config.mqtt.client_id, "spindle-gw-017");
    assert_eq!(config.mqtt.topic_prefix, "spindle");
    assert_eq!(
        (
            config.mqtt.url.tls,
            config.mqtt.url.host.as_str(),
            config.mqtt.url.port
        ),
        (false, "127.0.0.1", 1883)
    );
    assert_eq!(
        config.mqtt.password,
        Some(PasswordSource::File("/etc/spindle/mqtt.secret".into()))
    );
    assert_eq!(config.mqtt.keep_alive, Duration::from_secs(30));

    assert_eq!(config.buffer.max_size, 256 * 1024 * 1024);
    assert_eq!(config.buffer.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(config.buffer.flush_interval, Duration::from_millis(100));
    assert_eq!(config.buffer.replay, Replay::LiveFirst);

    let bus = &config.serial[0];
    assert_eq!(
        (bus.parity, bus.data_bits, bus.stop_bits, bus.turnaround),
        (Parity::Even, 8, 1, Duration::ZERO)
    );

    // Profile points merged; the file's energy_import replaced the profile's in place.
    let meter = device(&config.devices, "meter-line1");
    assert_eq!(meter.link, DeviceLink::Serial("rs485-1".into()));
    assert_eq!(meter.profile.as_deref(), Some("chint-dtsu666"));
    assert_eq!(meter.points.len(), 17);
    assert_eq!(
        meter
            .points
            .iter()
            .filter(|p| p.name == "energy_import")
            .count(),
        1
    );
    let import_index = meter
        .points
        .iter()
        .position(|p| p.name == "energy_import")
        .unwrap();
    assert_eq!(
        import_index, 15,
        "a replacement keeps the profile point's place"
    );
    let import = &meter.points[import_index];
    assert_eq!((import.unit.as_deref(), import.scale), (Some("Wh"), 1.0));
    let current = meter.points.iter().find(|p| p.name == "current_a").unwrap();
    assert!(
        (current.scale - 0.04).abs() < 1e-12,
        "ct_ratio 40 × 0.001 A"
    );
    let export = meter
        .points
        .iter()
        .find(|p| p.name == "energy_export")
        .unwrap();
    assert_eq!(
        (export.address, export.scale, export.counter),
        (0x1028, 40.0, true)
    );
    assert_eq!(meter.timeout, Duration::from_millis(300));

    // Device and point defaults.
    let gas = device(&config.devices, "gas-1");
    assert_eq!(gas.poll, Duration::from_secs(1));
    assert_eq!(gas.timeout, Duration::from_secs(1));
    assert_eq!(
        (gas.retries, gas.max_registers.get(), gas.max_gap),
        (1, 125, 8)
    );
    assert_eq!(
        (gas.report, gas.heartbeat),
        (Report::Always, Duration::from_secs(60))
    );
    let cnc = device(&config.devices, "cnc-07");
    assert_eq!(cnc.link, DeviceLink::Tcp("127.0.0.1:5020".into()));
    assert_eq!(cnc.report, Report::OnChange);
    let run_state = cnc.points.iter().find(|p| p.name == "run_state").unwrap();
    assert_eq!(
        (
            run_state.area,
            run_state.value_type,
            run_state.order,
            run_state.scale,
            run_state.offset,
            run_state.counter
        ),
        (
            Area::Holding,
            ValueType::U16,
            WordOrder::Abcd,
            1.0,
            0.0,
            false
        )
    );
    assert_eq!(
        cnc.points.iter().find(|p| p.name == "parts").unwrap().order,
        WordOrder::Cdab
    );

    let lathe = &config.equipment[0];
    assert_eq!(
        lathe.running,
        Some(Signal {
            point: "run_state".into(),
            values: vec![2.0, 3.0]
        })
    );
    assert_eq!(
        lathe.cnc_mode,
        Some(Signal {
            point: "auto_mode".into(),
            values: vec![]
        })
    );

    // Energy units convert to the carrier's; the carrier override applies.
    let line1 = &config.kpis.energy_per_output[0];
    assert_eq!(line1.window, WindowLength::Fixed(Duration::from_secs(3600)));
    assert_eq!(line1.energy[0].carrier, "electricity");
    assert_eq!(line1.energy[0].to_carrier_unit, 0.001);
    assert_eq!(line1.energy[1].to_carrier_unit, 1.0);
    assert_eq!(line1.output[0].device, "cnc-07");
    assert_eq!(
        config.kpis.cnc_coverage[0].window,
        WindowLength::Fixed(Duration::from_secs(900))
    );
    let electricity = &config.carriers["electricity"];
    assert_eq!(
        (
            electricity.unit.as_str(),
            electricity.kgce_per_unit,
            electricity.kgco2_per_unit
        ),
        ("kWh", 0.1229, 0.4364)
    );
    assert_eq!(config.carriers.len(), 9);
}

#[test]
fn the_hash_is_the_sha256_of_the_file_bytes() {
    let empty_agent = "[agent]\nid = \"a\"\nsite = \"s\"\ndata_dir = \"/d\"\ntimezone = \"UTC\"\n[mqtt]\nurl = \"mqtt://b\"\n";
    let config = parse("x.toml", empty_agent).unwrap();
    let again = parse("x.toml", &format!("{empty_agent}\n")).unwrap();
    assert_ne!(config.sha256, again.sha256);
    assert_eq!(config.sha256, parse("y.toml", empty_agent).unwrap().sha256);
}

#[test]
fn a_minimal_configuration_takes_every_default() {
    let config = parse(
        "min.toml",
        "[agent]\nid = \"a\"\nsite = \"s\"\ndata_dir = \"/d\"\ntimezone = \"UTC\"\n[mqtt]\nurl = \"mqtts://broker\"\n",
    )
    .unwrap();
    assert_eq!(
        (config.agent.day_start.hour, config.agent.day_start.minute),
        (0, 0)
    );
    assert_eq!((config.mqtt.url.tls, config.mqtt.url.port), (true, 8883));
    assert_eq!(config.mqtt.client_id, "spindle-a");
    assert_eq!(config.buffer.max_size, 256 << 20);
    assert!(config.devices.is_empty() && config.kpis.cnc_coverage.is_empty());
}

#[test]
fn a_custom_carrier_is_added_and_a_builtin_unit_may_change_with_its_coefficients() {
    let text = "[agent]\nid = \"a\"\nsite = \"s\"\ndata_dir = \"/d\"\ntimezone = \"UTC\"\n[mqtt]\nurl = \"mqtt://b\"\n\
        [carriers.compressed_air]\nunit = \"m3\"\nkgce_per_unit = 0.004\nkgco2_per_unit = 0.017\n\
        [carriers.natural_gas]\nunit = \"kg\"\nkgce_per_unit = 1.7572\nkgco2_per_unit = 2.8\n";
    let config = parse("c.toml", text).unwrap();
    assert_eq!(config.carriers["compressed_air"].unit, "m3");
    assert_eq!(config.carriers["natural_gas"].unit, "kg");
    let text = text.replace("kgco2_per_unit = 2.8\n", "");
    let errors = parse("c.toml", &text).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "c.toml:13:8: changing the unit of carrier \"natural_gas\" from \"m³\" needs both kgce_per_unit and kgco2_per_unit for the new unit"
    );
}

#[test]
fn the_example_plant_configuration_validates() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/plant.toml"
    ));
    let config = load(path).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.devices.len(), 7);
    assert_eq!(config.equipment.len(), 5);
    assert_eq!(config.kpis.energy_per_output.len(), 2);
    let sdm = device(&config.devices, "meter-line2");
    assert_eq!(
        sdm.max_registers.get(),
        80,
        "the SDM630 profile's request size applies"
    );
    assert_eq!(
        sdm.points
            .iter()
            .find(|p| p.name == "energy_import")
            .unwrap()
            .area,
        Area::Input
    );
    let line2 = &config.kpis.energy_per_output[1];
    assert_eq!(line2.energy[1].to_carrier_unit, 1.0);
}

#[test]
fn an_unreadable_file_is_one_error_without_a_position() {
    let errors = load(Path::new("/nonexistent/spindle.toml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, 0);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/spindle.toml: cannot read: "),
        "{errors}"
    );
}
