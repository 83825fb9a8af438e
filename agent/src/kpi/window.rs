//! KPI windows: tumbling intervals of absolute time laid on the production
//! days of `agent.timezone`.
//!
//! Owns the mapping from an instant to the window holding it. Times are Unix
//! epoch milliseconds (UTC); the zone comes from the database bundled in the
//! binary, so a gateway without `/usr/share/zoneinfo` gets the same windows.
//!
//! # The grid
//!
//! A *production day* runs from one local day start (`agent.day_start` on a
//! local date) to the next. A day start that falls into a daylight-saving
//! gap is pushed forward by the gap's length (jiff's "compatible" rule, as
//! in RFC 5545: 02:30 on a spring-forward night becomes 03:30); one that
//! falls into a fold is taken at its first occurrence.
//!
//! Inside a production day of `D` ms, windows of length `L` are laid in
//! absolute time from the day start. The day holds `n = max(1, round(D / L))`
//! windows (halves round up): windows `0 … n−2` last exactly `L`, and the
//! last one ends at the next day start. On ordinary days `L` divides `D`, so
//! every window lasts `L` and `window.end = window.start + L` (SPEC §5).
//! On a daylight-saving change day (23 or 25 h) only the day's last window
//! differs:
//!
//! - windows that divide the shift (`10s`, `15m`, `1h`) still last `L`: a
//!   23 h day has 23 hourly windows, a 25 h day 25, each on a whole local
//!   hour;
//! - longer windows absorb the shift in the day's last window: with `8h`
//!   windows a 23 h day ends with a 7 h window, a 25 h day with a 9 h one;
//! - `1d` windows are exactly the production days (23, 24 or 25 h).
//!
//! # Calendar months
//!
//! A `"1mo"` window runs from the production day of the first of a local
//! month to the production day of the first of the next month: from the
//! day start (the KPI's `day_start`) on the 1st to the day start on the
//! next month's 1st, so it holds exactly that month's production days and
//! lasts 28 to 31 days give or take a daylight-saving hour. `window.end`
//! is then the next month's start, not `start + L` (SPEC §5 as amended).
//!
//! Invariants (property-tested): windows tile time without gaps or overlaps
//! (`next(w).start == w.end`), every window starts at a day start plus a
//! whole number of `L` (a month window at the day start of a 1st), and no
//! window crosses a day start (a month window is a whole number of days).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use spindle_config::model::{DayStart, WindowLength};

/// One KPI window, `[start, end)` in Unix epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Whether `ts_ms` lies inside the window.
    pub fn contains(&self, ts_ms: u64) -> bool {
        self.start <= ts_ms && ts_ms < self.end
    }

    /// Milliseconds of `[from, to)` that lie inside the window.
    pub fn overlap_ms(&self, from: u64, to: u64) -> u64 {
        to.min(self.end).saturating_sub(from.max(self.start))
    }
}

/// The window grid of one KPI: a zone, a day start and a window length.
#[derive(Debug, Clone)]
pub struct WindowGrid {
    tz: TimeZone,
    day_start: Time,
    /// The fixed length; 0 for calendar months.
    length_ms: u64,
}

impl WindowGrid {
    /// The grid of windows `length` long; `None` when the length is zero or
    /// shorter than a millisecond, or the day start is not a time of day.
    pub fn new(tz: TimeZone, day_start: DayStart, length: Duration) -> Option<Self> {
        let length_ms = u64::try_from(length.as_millis()).ok()?;
        if length_ms == 0 {
            return None;
        }
        Self::with_length_ms(tz, day_start, length_ms)
    }

    /// The grid of a configured window length (fixed or `"1mo"`).
    pub fn for_kpi(tz: TimeZone, day_start: DayStart, length: WindowLength) -> Option<Self> {
        match length {
            WindowLength::Fixed(length) => Self::new(tz, day_start, length),
            WindowLength::Month => Self::with_length_ms(tz, day_start, 0),
        }
    }

    fn with_length_ms(tz: TimeZone, day_start: DayStart, length_ms: u64) -> Option<Self> {
        let hour = i8::try_from(day_start.hour).ok()?;
        let minute = i8::try_from(day_start.minute).ok()?;
        let day_start = Time::new(hour, minute, 0, 0).ok()?;
        Some(WindowGrid {
            tz,
            day_start,
            length_ms,
        })
    }

    /// The nominal window length in milliseconds (0 for calendar months).
    pub fn length_ms(&self) -> u64 {
        self.length_ms
    }

    /// Whether windows are calendar months.
    pub fn is_monthly(&self) -> bool {
        self.length_ms == 0
    }

    /// The instant the production day of local date `date` starts.
    fn day_start_ms(&self, date: Date) -> Option<i64> {
        let ts = self
            .tz
            .to_ambiguous_timestamp(date.to_datetime(self.day_start))
            .compatible()
            .ok()?;
        Some(ts.as_millisecond())
    }

    /// The production day holding `ts_ms`: `(start, end)` in epoch ms.
    pub fn production_day(&self, ts_ms: u64) -> Option<(u64, u64)> {
        self.production_date(ts_ms)
            .map(|(_, start, end)| (start, end))
    }

    /// The production day holding `ts_ms`: its local date, start and end.
    fn production_date(&self, ts_ms: u64) -> Option<(Date, u64, u64)> {
        let t = i64::try_from(ts_ms).ok()?;
        let timestamp = Timestamp::from_millisecond(t).ok()?;
        let mut day = self.tz.to_datetime(timestamp).date();
        let mut start = self.day_start_ms(day)?;
        // A day start later than the local time of day (or in a gap) means
        // the instant belongs to an earlier production day. Offsets differ
        // by far less than a day, so a couple of steps always suffice.
        for _ in 0..3 {
            if t >= start {
                break;
            }
            day = day.yesterday().ok()?;
            start = self.day_start_ms(day)?;
        }
        let mut end = self.day_start_ms(day.tomorrow().ok()?)?;
        for _ in 0..3 {
            if t < end {
                break;
            }
            day = day.tomorrow().ok()?;
            start = end;
            end = self.day_start_ms(day.tomorrow().ok()?)?;
        }
        if !(start <= t && t < end) {
            return None;
        }
        Some((day, u64::try_from(start).ok()?, u64::try_from(end).ok()?))
    }

    /// The calendar-month window holding `ts_ms`.
    fn month_containing(&self, ts_ms: u64) -> Option<Window> {
        let (day, _, _) = self.production_date(ts_ms)?;
        let first = day.first_of_month();
        let next = first.last_of_month().tomorrow().ok()?;
        let start = u64::try_from(self.day_start_ms(first)?).ok()?;
        let end = u64::try_from(self.day_start_ms(next)?).ok()?;
        (start <= ts_ms && ts_ms < end).then_some(Window { start, end })
    }

    /// The window holding `ts_ms`; `None` outside the range jiff represents
    /// or before the first window that starts at or after the Unix epoch.
    pub fn window_containing(&self, ts_ms: u64) -> Option<Window> {
        if self.is_monthly() {
            return self.month_containing(ts_ms);
        }
        let (day_start, day_end) = self.production_day(ts_ms)?;
        let day_len = day_end - day_start;
        let windows = ((day_len + self.length_ms / 2) / self.length_ms).max(1);
        let index = ((ts_ms - day_start) / self.length_ms).min(windows - 1);
        let start = day_start + index * self.length_ms;
        let end = if index + 1 == windows {
            day_end
        } else {
            start + self.length_ms
        };
        Some(Window { start, end })
    }

    /// The window after `window`.
    pub fn next(&self, window: Window) -> Option<Window> {
        self.window_containing(window.end)
    }
}

/// Most open windows a KPI keeps before its cursor is set, i.e. while the
/// clock has not been plausible yet (a gateway without RTC before NTP).
pub const MAX_UNANCHORED_WINDOWS: usize = 64;

/// The windows of one KPI that are not published yet, each with its
/// accumulator, and the publishing cursor.
///
/// Invariants: every open window starts at or after the cursor (once the
/// cursor is set), so a window is published at most once and in order; the
/// cursor only moves forward; before it is set (no plausible clock yet),
/// only the newest [`MAX_UNANCHORED_WINDOWS`] are kept, which bounds memory.
#[derive(Debug, Clone)]
pub struct OpenWindows<A> {
    grid: WindowGrid,
    grace_ms: u64,
    /// Start of the next window to publish.
    cursor: Option<u64>,
    open: BTreeMap<u64, (Window, A)>,
}

/// What [`OpenWindows`] keeps across a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenWindowsState<A> {
    pub cursor: Option<u64>,
    pub open: Vec<(Window, A)>,
}

impl<A: Default + Clone> OpenWindows<A> {
    /// No window open, no cursor yet. A window is due `grace_ms` after its end.
    pub fn new(grid: WindowGrid, grace_ms: u64) -> Self {
        OpenWindows {
            grid,
            grace_ms,
            cursor: None,
            open: BTreeMap::new(),
        }
    }

    pub fn grid(&self) -> &WindowGrid {
        &self.grid
    }

    /// Start of the next window to publish, once known.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// How many windows are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The accumulator of `window`, opened on first use; `None` for a window
    /// already published (before the cursor).
    pub fn acc(&mut self, window: Window) -> Option<&mut A> {
        if self.cursor.is_some_and(|cursor| window.start < cursor) {
            return None;
        }
        let slot = self
            .open
            .entry(window.start)
            .or_insert_with(|| (window, A::default()));
        Some(&mut slot.1)
    }

    /// Before the cursor is set (no plausible `due` yet): keep only the
    /// newest [`MAX_UNANCHORED_WINDOWS`] open windows.
    pub fn bound_unanchored(&mut self) {
        if self.cursor.is_none() {
            while self.open.len() > MAX_UNANCHORED_WINDOWS {
                self.open.pop_first();
            }
        }
    }

    /// The next window to publish if it is due at `now_ms` (its end plus
    /// the grace has passed). Sets the cursor on first use: to the oldest
    /// open window, else the current one. Windows older than the one holding
    /// `now_ms − max_age_ms` are skipped (never published).
    pub fn next_due(&mut self, now_ms: u64, max_age_ms: u64) -> Option<Window> {
        let current = self.grid.window_containing(now_ms)?;
        let floor = self
            .grid
            .window_containing(now_ms.saturating_sub(max_age_ms))
            .map_or(0, |w| w.start);
        let next = match self.cursor {
            Some(cursor) => cursor.max(floor),
            None => self
                .open
                .range(floor..)
                .next()
                .map_or(current.start, |(&start, _)| start.min(current.start)),
        };
        let mut window = self.grid.window_containing(next)?;
        if window.start < next {
            // A cursor off the grid (restored under another grid): the
            // window holding it was published in part, so go on after it.
            window = self.grid.next(window)?;
        }
        self.cursor = Some(window.start);
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() < window.start {
                entry.remove();
            } else {
                break;
            }
        }
        (window.end.saturating_add(self.grace_ms) <= now_ms).then_some(window)
    }

    /// Takes `window` (the one [`Self::next_due`] returned) out for
    /// publishing and moves the cursor past it.
    pub fn take(&mut self, window: Window) -> Option<A> {
        self.cursor = Some(window.end);
        self.open.remove(&window.start).map(|(_, acc)| acc)
    }

    pub fn save(&self) -> OpenWindowsState<A> {
        OpenWindowsState {
            cursor: self.cursor,
            open: self.open.values().cloned().collect(),
        }
    }

    /// Restores a saved state; with `same_grid` false (the KPI's
    /// configuration changed) only the cursor is kept, and the open windows,
    /// computed under the old configuration, are dropped.
    pub fn load(&mut self, state: OpenWindowsState<A>, same_grid: bool) {
        self.cursor = state.cursor;
        self.open.clear();
        if !same_grid {
            return;
        }
        for (window, acc) in state.open {
            let on_grid = self.grid.window_containing(window.start) == Some(window);
            let unpublished = self.cursor.is_none_or(|cursor| window.start >= cursor);
            if on_grid && unpublished {
                self.open.insert(window.start, (window, acc));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn ms(text: &str) -> u64 {
        u64::try_from(text.parse::<Timestamp>().unwrap().as_millisecond()).unwrap()
    }

    fn grid(zone: &str, hour: u8, length: Duration) -> WindowGrid {
        WindowGrid::new(
            TimeZone::get(zone).unwrap(),
            DayStart { hour, minute: 0 },
            length,
        )
        .unwrap()
    }

    #[test]
    fn fifteen_minute_windows_start_at_the_shanghai_day_start() {
        let g = grid("Asia/Shanghai", 8, Duration::from_secs(900));
        // 08:07 local = 00:07 UTC.
        let w = g.window_containing(ms("2026-11-27T00:07:00Z")).unwrap();
        assert_eq!(w.start, ms("2026-11-27T00:00:00Z"));
        assert_eq!(w.end, ms("2026-11-27T00:15:00Z"));
    }

    #[test]
    fn a_day_window_before_the_day_start_belongs_to_the_previous_production_day() {
        let g = grid("Asia/Shanghai", 8, Duration::from_secs(86_400));
        // 07:59 local on the 27th is in the production day of the 26th.
        let w = g.window_containing(ms("2026-11-26T23:59:00Z")).unwrap();
        assert_eq!(w.start, ms("2026-11-26T00:00:00Z"));
        assert_eq!(w.end, ms("2026-11-27T00:00:00Z"));
    }

    #[test]
    fn a_spring_forward_day_in_berlin_has_twenty_three_hourly_windows() {
        let g = grid("Europe/Berlin", 0, Duration::from_secs(3600));
        let (start, end) = g.production_day(ms("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(end - start, 23 * HOUR);
        let mut w = g.window_containing(start).unwrap();
        let mut count = 1;
        while w.end < end {
            assert_eq!(w.end - w.start, HOUR);
            w = g.next(w).unwrap();
            count += 1;
        }
        assert_eq!(count, 23);
        assert_eq!(w.end, end);
    }

    #[test]
    fn eight_hour_windows_absorb_the_daylight_saving_shift_in_the_last_window() {
        let g = grid("Europe/Berlin", 8, Duration::from_secs(8 * 3600));
        // Production day 2026-10-24 08:00 CEST to 2026-10-25 08:00 CET: 25 h.
        let (start, end) = g.production_day(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(end - start, 25 * HOUR);
        let last = g.window_containing(end - 1).unwrap();
        assert_eq!(last.start, start + 16 * HOUR);
        assert_eq!(last.end, end);
        // And the spring-forward day ends with a 7 h window.
        let (start, end) = g.production_day(ms("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(end - start, 23 * HOUR);
        assert_eq!(
            g.window_containing(end - 1).unwrap().end - (start + 16 * HOUR),
            7 * HOUR
        );
    }

    #[test]
    fn a_day_window_is_the_whole_production_day_even_when_it_lasts_twenty_five_hours() {
        let g = grid("Europe/Berlin", 8, Duration::from_secs(86_400));
        let w = g.window_containing(ms("2026-10-25T05:00:00Z")).unwrap();
        assert_eq!(w.end - w.start, 25 * HOUR);
        assert_eq!(g.next(w).unwrap().end - w.end, 24 * HOUR);
    }

    #[test]
    fn a_day_start_inside_a_gap_is_pushed_forward_by_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29: the day starts at 03:30 CEST.
        let g = WindowGrid::new(
            TimeZone::get("Europe/Berlin").unwrap(),
            DayStart {
                hour: 2,
                minute: 30,
            },
            Duration::from_secs(86_400),
        )
        .unwrap();
        let w = g.window_containing(ms("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(w.start, ms("2026-03-29T01:30:00Z"));
        assert_eq!(w.end, ms("2026-03-30T00:30:00Z"));
    }
}
