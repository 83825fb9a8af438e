//! Quota limits and baselines of `energy_per_output` (单位产品能耗限额):
//! `over_limit` only on windows of the limit's period, `vs_baseline` =
//! value ÷ baseline − 1 on every window with a value.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss
)]

use spindle::kpi::{KpiEngine, KpiWindowOut, Raw, Sample, SampleValue};
use spindle::message::KpiFigures;

/// 2026-11-27 08:00 Asia/Shanghai (a production day start).
const T0: u64 = 1_795_737_600_000;
const DAY: u64 = 86_400_000;

fn config(window: &str) -> spindle_config::model::Config {
    let text = format!(
        r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-kpi-quota"
timezone = "Asia/Shanghai"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[device]]
name = "meter"
tcp = "127.0.0.1:5020"
unit = 1
poll = "60s"

[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u32"
unit = "kWh"
counter = true

[[device.point]]
name = "parts"
area = "holding"
address = 2
type = "u32"
unit = "piece"
counter = true

[[kpi.energy_per_output]]
name = "line1"
window = "{window}"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
output = [ {{ point = "meter.parts" }} ]
output_unit = "piece"
limit = {{ value = 0.2, period = "1d" }}
baseline = {{ value = 0.25, year = 2020 }}
"#
    );
    spindle_config::parse("quota.toml", &text).unwrap()
}

/// 2 kWh and 1 part a minute: 0.2458 kgce per part, over the 0.2 limit.
fn run(window: &str) -> Vec<KpiWindowOut> {
    let mut engine = KpiEngine::new(&config(window));
    let mut out = Vec::new();
    let mut t = T0 - 120_000;
    let mut minute = 0_u64;
    while t < T0 + DAY + 600_000 {
        let e = Sample {
            raw: Raw::Unsigned(2 * minute),
            value: SampleValue::Number((2 * minute) as f64),
        };
        let p = Sample {
            raw: Raw::Unsigned(minute),
            value: SampleValue::Number(minute as f64),
        };
        engine.on_poll("meter", t, &[("energy", Ok(&e)), ("parts", Ok(&p))]);
        out.extend(engine.due(t, true));
        t += 60_000;
        minute += 1;
    }
    out
}

fn figures(w: &KpiWindowOut) -> (Option<f64>, Option<bool>, Option<f64>) {
    match &w.figures {
        KpiFigures::EnergyPerOutput(e) => (e.value, e.over_limit, e.vs_baseline),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_daily_window_over_its_quota_says_so_and_compares_with_the_baseline() {
    let day = run("1d")
        .into_iter()
        .find(|w| w.window.start == T0)
        .unwrap();
    let (value, over, vs) = figures(&day);
    let value = value.unwrap();
    assert!((value - 2.0 * 0.1229).abs() < 1e-9, "{value}");
    assert_eq!(over, Some(true));
    assert!((vs.unwrap() - (value / 0.25 - 1.0)).abs() < 1e-12);
    let body = spindle::wire::spindle::payload(
        &spindle::message::Message::<std::sync::Arc<str>>::Kpi(day),
        1,
        "s",
    );
    assert!(
        body.contains(r#""over_limit":true,"vs_baseline":-0.01680000000000"#),
        "{body}"
    );
}

#[test]
fn hourly_windows_carry_no_over_limit_but_still_compare_with_the_baseline() {
    let hours = run("1h");
    let hour = hours.iter().find(|w| w.window.start == T0).unwrap();
    let (value, over, vs) = figures(hour);
    assert!(value.is_some());
    assert_eq!(over, None, "the limit is judged on daily windows only");
    assert!(vs.is_some());
}
