//! Wall-clock time as the agent uses it, and whether it can be trusted.
//!
//! A gateway without a real-time clock boots in 1970 (or at its image's
//! build time) until NTP syncs. Timestamps are still published (they are
//! what the clock says), but KPI windows do not close while the clock is
//! implausible: earlier than this binary's build.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix epoch milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 2026-11-01T00:00:00Z: no correct clock reads earlier than this (the
/// project's first build); a later release moves it forward.
pub const PLAUSIBLE_AFTER_MS: u64 = 1_793_491_200_000;

/// Whether `ms` is a plausible current time.
pub fn plausible(ms: u64) -> bool {
    ms >= PLAUSIBLE_AFTER_MS
}
