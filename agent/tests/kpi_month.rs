//! Calendar-month windows (`window = "1mo"`) on a simulated clock: months
//! tile time from the KPI's day start on the 1st, daylight-saving months
//! included; a month's consumption equals the sum of its days' when every
//! day is `good` (random counters with wraps and resets); a month across an
//! agent outage (state saved, engine restarted after the outage) publishes
//! the counter difference across it, flagged `outage`, with its quality by
//! the usual rules (sample completeness against `min_completeness`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::float_cmp
)]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use spindle::kpi::window::WindowGrid;
use spindle::kpi::{KpiEngine, KpiWindowOut, Quality, Raw, Sample, SampleValue};
use spindle::message::{KpiFigures, KpiFlag, Message};
use spindle_config::model::{Config, DayStart, WindowLength};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// The simulated meter's poll interval.
const POLL: u64 = 120_000;

fn ms(text: &str) -> u64 {
    u64::try_from(text.parse::<Timestamp>().unwrap().as_millisecond()).unwrap()
}

fn month_grid(zone: &str, hour: u8) -> WindowGrid {
    WindowGrid::for_kpi(
        TimeZone::get(zone).unwrap(),
        DayStart { hour, minute: 0 },
        WindowLength::Month,
    )
    .unwrap()
}

#[test]
fn a_march_in_berlin_runs_from_the_first_to_the_first_and_is_an_hour_short() {
    let g = month_grid("Europe/Berlin", 0);
    let w = g.window_containing(ms("2026-03-15T12:00:00Z")).unwrap();
    assert_eq!(w.start, ms("2026-02-28T23:00:00Z"), "1 March 00:00 CET");
    assert_eq!(w.end, ms("2026-03-31T22:00:00Z"), "1 April 00:00 CEST");
    assert_eq!(w.end - w.start, 31 * DAY - HOUR);
    let october = g.window_containing(ms("2026-10-15T12:00:00Z")).unwrap();
    assert_eq!(october.end - october.start, 31 * DAY + HOUR);
}

#[test]
fn with_an_eight_o_clock_day_start_the_night_before_the_first_belongs_to_the_last_month() {
    let g = month_grid("Asia/Shanghai", 8);
    // 1 March 2026 07:00 Shanghai is in the production day of 28 February.
    let w = g.window_containing(ms("2026-02-28T23:00:00Z")).unwrap();
    assert_eq!(w.start, ms("2026-02-01T00:00:00Z"), "1 February 08:00");
    assert_eq!(w.end, ms("2026-03-01T00:00:00Z"), "1 March 08:00");
    assert_eq!(g.next(w).unwrap().start, w.end);
}

fn zone() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("Europe/Berlin"),
        Just("America/New_York"),
        Just("Asia/Shanghai"),
        Just("Australia/Lord_Howe"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn months_tile_time_from_the_day_start_on_the_first(
        zone in zone(),
        hour in 0_u8..24,
        t in ms("2020-01-01T00:00:00Z")..ms("2032-01-01T00:00:00Z"),
    ) {
        let g = month_grid(zone, hour);
        let w = g.window_containing(t).unwrap();
        prop_assert!(w.contains(t));
        let next = g.next(w).unwrap();
        prop_assert_eq!(next.start, w.end);
        prop_assert_eq!(g.window_containing(w.end - 1), Some(w));
        // The month starts at a production-day start, on the 1st (local).
        let (day_start, _) = g.production_day(w.start).unwrap();
        prop_assert_eq!(day_start, w.start);
        let tz = TimeZone::get(zone).unwrap();
        let local = tz.to_datetime(Timestamp::from_millisecond(i64::try_from(w.start).unwrap()).unwrap());
        // A day start pushed forward by a gap can land after midnight, never on another date.
        prop_assert_eq!(local.day(), 1, "{} starts on {}", zone, local);
        // 28 to 31 days, give or take a daylight-saving shift.
        let length = w.end - w.start;
        prop_assert!((28 * DAY - 2 * HOUR..=31 * DAY + 2 * HOUR).contains(&length));
    }
}

/// A KPI config: the meter's counter (u16 with rollover `rollover`),
/// consumption over days and months from 00:00.
fn config(zone: &str) -> Config {
    let text = format!(
        r#"
[agent]
id = "gw"
site = "plant"
data_dir = "/tmp/spindle-kpi-month"
timezone = "{zone}"
day_start = "08:00"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[buffer]
max_age = "62d"

[[device]]
name = "meter"
tcp = "127.0.0.1:5020"
unit = 1
poll = "120s"

[[device.point]]
name = "energy"
area = "holding"
address = 0
type = "u16"
scale = 0.1
unit = "kWh"
counter = true

[[kpi.energy_consumption]]
name = "daily"
window = "1d"
day_start = "00:00"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]

[[kpi.energy_consumption]]
name = "monthly"
window = "1mo"
day_start = "00:00"
energy = [ {{ point = "meter.energy", carrier = "electricity" }} ]
"#
    );
    spindle_config::parse("month.toml", &text).unwrap()
}

/// A simulated meter: each poll adds a random rise; some polls reset it.
#[derive(Debug, Clone)]
struct Meter {
    raw: u64,
    /// Rises (raw units) drawn per poll, used round-robin.
    rises: Vec<u64>,
    /// Every `reset_every`-th poll the meter is cleared to its rise.
    reset_every: u64,
    polls: u64,
}

impl Meter {
    fn poll(&mut self) -> u64 {
        let rise = self.rises[(self.polls as usize) % self.rises.len()];
        self.polls += 1;
        if self.reset_every > 0 && self.polls % self.reset_every == 0 {
            self.raw = rise;
        } else {
            self.raw = (self.raw + rise) % 65_536;
        }
        self.raw
    }
}

fn feed(engine: &mut KpiEngine, t: u64, raw: u64, out: &mut Vec<KpiWindowOut>) {
    let sample = Sample {
        raw: Raw::Unsigned(raw),
        value: SampleValue::Number(raw as f64 * 0.1),
    };
    engine.on_poll("meter", t, &[("energy", Ok(&sample))]);
    out.extend(engine.due(t + 50, true));
}

fn consumption(w: &KpiWindowOut) -> Option<f64> {
    match &w.figures {
        KpiFigures::EnergyConsumption(e) => e.energy.first().and_then(|c| c.consumption),
        other => panic!("not a consumption window: {other:?}"),
    }
}

fn kgce(w: &KpiWindowOut) -> Option<f64> {
    match &w.figures {
        KpiFigures::EnergyConsumption(e) => e.kgce,
        other => panic!("not a consumption window: {other:?}"),
    }
}

/// The month holding `month_probe` in `zone`, polled from a day before it
/// to a day after it; returns the month window and its days.
fn run_month(
    zone: &str,
    month_probe: &str,
    phase: u64,
    meter: &mut Meter,
) -> (KpiWindowOut, Vec<KpiWindowOut>) {
    let config = config(zone);
    let mut engine = KpiEngine::new(&config);
    let kpi = &config.kpis.energy_consumption[1];
    let grid =
        WindowGrid::for_kpi(config.agent.timezone.clone(), kpi.day_start, kpi.window).unwrap();
    let month = grid.window_containing(ms(month_probe)).unwrap();
    let mut out = Vec::new();
    let mut t = month.start - DAY + phase;
    while t < month.end + DAY {
        feed(&mut engine, t, meter.poll(), &mut out);
        t += POLL;
    }
    out.extend(engine.due(month.end + 2 * DAY, true));
    let monthly = out
        .iter()
        .find(|w| w.name == "monthly" && w.window.start == month.start)
        .cloned()
        .expect("the month was published");
    let days: Vec<KpiWindowOut> = out
        .into_iter()
        .filter(|w| w.name == "daily" && w.window.start >= month.start && w.window.end <= month.end)
        .collect();
    (monthly, days)
}

fn month_probe() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("Europe/Berlin", "2026-03-15T12:00:00Z")), // spring forward
        Just(("Europe/Berlin", "2026-10-15T12:00:00Z")), // fall back
        Just(("America/New_York", "2026-03-15T12:00:00Z")),
        Just(("Asia/Shanghai", "2026-02-15T12:00:00Z")), // 28 days
        Just(("Australia/Lord_Howe", "2026-04-15T12:00:00Z")), // back by 30 min
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn a_months_consumption_is_the_sum_of_its_good_days(
        (zone, probe) in month_probe(),
        phase in 0_u64..POLL,
        start in 0_u64..65_536,
        rises in proptest::collection::vec(0_u64..60, 1..40),
        reset_every in prop_oneof![Just(0_u64), 3_000_u64..20_000],
    ) {
        let mut meter = Meter { raw: start, rises, reset_every, polls: 0 };
        let (month, days) = run_month(zone, probe, phase, &mut meter);
        let expected_days = days.len();
        prop_assert!((28..=31).contains(&expected_days), "{} days", expected_days);
        prop_assert!(days.windows(2).all(|p| p[0].window.end == p[1].window.start));
        prop_assert_eq!(days.first().map(|d| d.window.start), Some(month.window.start));
        prop_assert_eq!(days.last().map(|d| d.window.end), Some(month.window.end));
        prop_assert!(days.iter().all(|d| d.quality == Quality::Good), "every day good");
        prop_assert_eq!(month.quality, Quality::Good);
        let sum: f64 = days.iter().map(|d| consumption(d).unwrap()).sum();
        let whole = consumption(&month).unwrap();
        let tolerance = 1e-9 * whole.abs().max(1.0);
        prop_assert!((sum - whole).abs() <= tolerance, "days {} vs month {}", sum, whole);
        let kgce_sum: f64 = days.iter().map(|d| kgce(d).unwrap()).sum();
        prop_assert!((kgce_sum - kgce(&month).unwrap()).abs() <= tolerance);
        let completeness = month.sample_completeness.as_ref().unwrap();
        prop_assert_eq!(completeness.min, Some(1.0));
    }
}

/// The month payload of the Berlin spring-forward month on the simulated
/// clock (printed with `--nocapture`, as the issue's closing note shows).
#[test]
fn a_spring_forward_month_in_berlin_is_published_after_its_end_with_its_days_adding_up() {
    let mut meter = Meter {
        raw: 65_000,
        rises: vec![7, 12, 30, 0, 5, 41],
        reset_every: 15_000,
        polls: 0,
    };
    let (month, days) = run_month("Europe/Berlin", "2026-03-15T12:00:00Z", 37_000, &mut meter);
    assert_eq!(days.len(), 31);
    assert_eq!(
        days.iter()
            .filter(|d| d.window.end - d.window.start == 23 * HOUR)
            .count(),
        1
    );
    assert!(month.flags.contains(&KpiFlag::Wrap) && month.flags.contains(&KpiFlag::Reset));
    let sum: f64 = days.iter().map(|d| consumption(d).unwrap()).sum();
    assert!((sum - consumption(&month).unwrap()).abs() < 1e-6);
    println!(
        "{}",
        spindle::wire::spindle::payload(&Message::<std::sync::Arc<str>>::Kpi(month), 1, "sim")
    );
}

#[test]
fn a_month_across_an_agent_outage_publishes_the_counter_difference_flagged_outage() {
    let config = config("Europe/Berlin");
    let kpi = &config.kpis.energy_consumption[1];
    let grid =
        WindowGrid::for_kpi(config.agent.timezone.clone(), kpi.day_start, kpi.window).unwrap();
    let month = grid.window_containing(ms("2026-10-15T12:00:00Z")).unwrap();
    let outage = (
        month.start + 10 * DAY + 5 * HOUR,
        month.start + 13 * DAY + 2 * HOUR,
    );
    let mut engine = KpiEngine::new(&config);
    let mut out = Vec::new();
    // 1 kWh (10 raw) per poll; the counter keeps rising while the agent is down.
    let raw_at = |t: u64| 10 * ((t - (month.start - DAY)) / POLL);
    let mut t = month.start - DAY;
    let mut at_start = None;
    let mut at_end = None;
    while t < month.end + DAY {
        if t >= outage.0 && t < outage.1 {
            t += POLL;
            continue;
        }
        if t >= outage.1 && at_start.is_none() {
            // The agent restarts: a fresh engine from the stored state.
            let state = engine.state();
            engine = KpiEngine::new(&config);
            engine.restore(&state).unwrap();
            at_start = Some(t);
        }
        if t == month.end {
            at_end = Some(raw_at(t));
        }
        feed(&mut engine, t, raw_at(t) % 65_536, &mut out);
        t += POLL;
    }
    assert!(at_start.is_some() && at_end.is_some());
    out.extend(engine.due(month.end + 2 * DAY, true));
    let monthly = out
        .iter()
        .find(|w| w.name == "monthly" && w.window.start == month.start)
        .unwrap();
    // The polls are on the month's boundaries: its consumption is the
    // counter's difference between them, outage included (10 raw = 1 kWh per poll).
    let polls = (month.end - month.start) / POLL;
    assert_eq!(consumption(monthly), Some(polls as f64));
    assert!(
        monthly.flags.contains(&KpiFlag::Outage),
        "{:?}",
        monthly.flags
    );
    assert!(
        monthly.flags.contains(&KpiFlag::Wrap),
        "the u16 wrapped meanwhile"
    );
    // Quality follows the usual rules: the boundaries have samples, and
    // 2 d 21 h missing of 31 d 1 h is 90.7 % complete, above 0.9: good.
    let min = monthly.sample_completeness.as_ref().unwrap().min.unwrap();
    assert!(min > 0.9 && min < 0.91, "{min}");
    assert_eq!(monthly.quality, Quality::Good);
    // The days strictly inside the outage have no data.
    let inside: Vec<_> = out
        .iter()
        .filter(|w| w.name == "daily" && w.window.start >= outage.0 && w.window.end <= outage.1)
        .collect();
    assert_eq!(inside.len(), 2);
    assert!(inside.iter().all(|w| w.quality == Quality::NoData));
}
