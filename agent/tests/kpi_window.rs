//! KPI window alignment against a plain reference: production days from the
//! local day start, `round(day / L)` windows a day, the last one ending at
//! the next day start; in zones with and without daylight saving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use spindle::kpi::window::{Window, WindowGrid};
use spindle_config::model::DayStart;

const ZONES: [&str; 5] = [
    "Asia/Shanghai",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "UTC",
];
const DAY_STARTS: [(u8, u8); 4] = [(0, 0), (8, 0), (6, 30), (2, 30)];
const LENGTHS_S: [u64; 7] = [10, 900, 3600, 8 * 3600, 86_400, 45 * 60, 2 * 3600];

/// Daylight-saving changes near which instants are drawn (UTC dates).
const CHANGES: [&str; 6] = [
    "2026-03-29T01:00:00Z", // Berlin spring forward
    "2026-10-25T01:00:00Z", // Berlin fall back
    "2026-03-08T07:00:00Z", // New York spring forward
    "2026-11-01T06:00:00Z", // New York fall back
    "2026-04-04T15:00:00Z", // Lord Howe: back by 30 min
    "2026-10-03T15:30:00Z", // Lord Howe: forward by 30 min
];

fn ms_of(ts: Timestamp) -> u64 {
    u64::try_from(ts.as_millisecond()).unwrap()
}

/// Reference: the instant the production day of `date` starts.
fn reference_day_start(tz: &TimeZone, date: Date, (h, m): (u8, u8)) -> u64 {
    let civil = date.at(i8::try_from(h).unwrap(), i8::try_from(m).unwrap(), 0, 0);
    ms_of(tz.to_zoned(civil).unwrap().timestamp())
}

/// Reference: every window of the production days around `t`, by laying
/// them out one day at a time, then a linear search.
fn reference_window(zone: &str, day_start: (u8, u8), length_ms: u64, t: u64) -> Window {
    let tz = TimeZone::get(zone).unwrap();
    let local = tz.to_datetime(Timestamp::from_millisecond(i64::try_from(t).unwrap()).unwrap());
    let mut windows = Vec::new();
    let mut date = local.date().yesterday().unwrap().yesterday().unwrap();
    for _ in 0..4 {
        let start = reference_day_start(&tz, date, day_start);
        let next = date.tomorrow().unwrap();
        let end = reference_day_start(&tz, next, day_start);
        let count = (((end - start) as f64 / length_ms as f64).round() as u64).max(1);
        for k in 0..count {
            let s = start + k * length_ms;
            let e = if k + 1 == count { end } else { s + length_ms };
            windows.push(Window { start: s, end: e });
        }
        date = next;
    }
    *windows
        .iter()
        .find(|w| w.start <= t && t < w.end)
        .expect("the four days around t hold t")
}

fn grid(zone: &str, (hour, minute): (u8, u8), length_s: u64) -> WindowGrid {
    WindowGrid::new(
        TimeZone::get(zone).unwrap(),
        DayStart { hour, minute },
        Duration::from_secs(length_s),
    )
    .unwrap()
}

fn instant() -> impl Strategy<Value = u64> {
    let anywhere = (1_767_225_600_000_u64..1_830_297_600_000).boxed(); // 2026-01-01 .. 2028-01-01
    let near_change = (0..CHANGES.len(), -2 * 86_400_000_i64..2 * 86_400_000)
        .prop_map(|(i, offset)| {
            let change = ms_of(CHANGES[i].parse::<Timestamp>().unwrap());
            change.checked_add_signed(offset).unwrap()
        })
        .boxed();
    prop_oneof![anywhere, near_change]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_window_holding_an_instant_matches_the_reference(
        zone in 0..ZONES.len(),
        day_start in 0..DAY_STARTS.len(),
        length in 0..LENGTHS_S.len(),
        t in instant(),
    ) {
        let (zone, day_start, length_s) = (ZONES[zone], DAY_STARTS[day_start], LENGTHS_S[length]);
        let g = grid(zone, day_start, length_s);
        let w = g.window_containing(t).unwrap();
        prop_assert_eq!(w, reference_window(zone, day_start, length_s * 1000, t));
    }

    #[test]
    fn windows_tile_time_and_never_cross_a_day_start(
        zone in 0..ZONES.len(),
        day_start in 0..DAY_STARTS.len(),
        length in 0..LENGTHS_S.len(),
        t in instant(),
    ) {
        let g = grid(ZONES[zone], DAY_STARTS[day_start], LENGTHS_S[length]);
        let w = g.window_containing(t).unwrap();
        prop_assert!(w.contains(t));
        let next = g.next(w).unwrap();
        prop_assert_eq!(next.start, w.end);
        prop_assert_eq!(g.window_containing(w.end - 1).unwrap(), w);
        let day = g.production_day(w.start).unwrap();
        prop_assert_eq!(g.production_day(w.end - 1).unwrap(), day);
        prop_assert_eq!((w.start - day.0) % (LENGTHS_S[length] * 1000), 0);
        // Only the last window of a day may differ from the nominal length.
        if w.end != day.1 {
            prop_assert_eq!(w.end - w.start, LENGTHS_S[length] * 1000);
        }
    }

    #[test]
    fn on_days_without_a_clock_change_every_window_starts_on_the_local_grid(
        day_start in 0..DAY_STARTS.len(),
        length in 0..LENGTHS_S.len(),
        t in 1_767_225_600_000_u64..1_830_297_600_000,
    ) {
        // Shanghai has had no daylight saving since 1991.
        let (h, m) = DAY_STARTS[day_start];
        let length_s = LENGTHS_S[length];
        let g = grid("Asia/Shanghai", (h, m), length_s);
        let w = g.window_containing(t).unwrap();
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let local = tz.to_datetime(Timestamp::from_millisecond(i64::try_from(w.start).unwrap()).unwrap());
        let second_of_day = u64::try_from(
            i64::from(local.hour()) * 3600 + i64::from(local.minute()) * 60 + i64::from(local.second()),
        )
        .unwrap();
        let day_start_s = u64::from(h) * 3600 + u64::from(m) * 60;
        prop_assert_eq!((second_of_day + 86_400 - day_start_s) % 86_400 % length_s, 0);
        prop_assert_eq!(w.end - w.start, length_s * 1000);
    }
}

#[test]
fn a_fall_back_day_in_berlin_has_twenty_five_hourly_windows_from_eight_to_eight() {
    let g = grid("Europe/Berlin", (8, 0), 3600);
    let start = ms_of("2026-10-24T06:00:00Z".parse().unwrap()); // 08:00 CEST
    let end = ms_of("2026-10-25T07:00:00Z".parse().unwrap()); // 08:00 CET
    let mut w = g.window_containing(start).unwrap();
    assert_eq!(w.start, start);
    let mut count = 1;
    while w.end < end {
        assert_eq!(w.end - w.start, 3_600_000);
        w = g.next(w).unwrap();
        count += 1;
    }
    assert_eq!((count, w.end), (25, end));
}

#[test]
fn ten_second_windows_cross_a_spring_forward_night_without_a_gap() {
    let g = grid("Europe/Berlin", (0, 0), 10);
    let change = ms_of("2026-03-29T01:00:00Z".parse().unwrap());
    let before = g.window_containing(change - 1).unwrap();
    let after = g.next(before).unwrap();
    assert_eq!((before.end, after.start), (change, change));
    assert_eq!(after.end - after.start, 10_000);
}

#[test]
fn a_day_window_in_shanghai_is_eight_to_eight_local() {
    let g = grid("Asia/Shanghai", (8, 0), 86_400);
    let w = g
        .window_containing(ms_of("2026-11-27T03:00:00Z".parse().unwrap()))
        .unwrap();
    assert_eq!(w.start, ms_of("2026-11-27T00:00:00Z".parse().unwrap()));
    assert_eq!(w.end, ms_of("2026-11-28T00:00:00Z".parse().unwrap()));
}
