//! The local KPI history: every closed KPI window, kept as plain files for
//! months (SPEC §2 `spindle history`, the provincial monitoring system's
//! "at least six months of local history that can be exported").
//!
//! # On-disk format
//!
//! ```text
//! data_dir/history/YYYY-MM.jsonl     one file per local month (agent.timezone)
//!                                    of the window's *start*
//! ```
//!
//! Each line is one window: the `kpi/{kind}/{name}` payload without `seq`
//! and `store` (`crate::wire::spindle::history_line`), then `\n`. Lines are
//! only ever appended; a file is never rewritten, only deleted whole.
//!
//! # Invariants
//!
//! - A window is appended and fsynced **before** it enters the outbox (the
//!   KPI task writes history, then hands the batch to the publisher), so a
//!   window dropped from the outbox, or delivered and deleted, is still here.
//! - A crash between the two makes the engine close the window again after
//!   the restart: the line is then written twice. Readers dedupe on (kind,
//!   name, window start) ([`read_windows`]), so an export never shows a
//!   window twice.
//! - A crash inside a write leaves a torn last line. The next append first
//!   ends it with `\n`, so it stays one bad line and never swallows a good
//!   one; readers skip it with a warning naming file and line.
//! - Bounded: a month's file is deleted once the month ended more than
//!   `history.max_age` ago; while the files hold more than
//!   `history.max_size` bytes the oldest is deleted (never the newest one).
//!   Every deletion and every failed write is counted (`health.history`)
//!   and logged; a failed write (full disk) loses the window from history
//!   only: polling and delivery go on.
//! - Files of months still being written stay writable: late windows and
//!   `no_data` backfill go to the file of their own start month.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use spindle_config::model::Config;

use crate::events::Counters;
use crate::message::KpiWindow;
use crate::wire::spindle::history_line;

/// The history directory under a data dir.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("history")
}

/// The file name (`YYYY-MM.jsonl`) of the local month holding `ts_ms`.
pub fn file_name(tz: &TimeZone, ts_ms: u64) -> Option<String> {
    let date = local_date(tz, ts_ms)?;
    Some(format!("{:04}-{:02}.jsonl", date.year(), date.month()))
}

fn local_date(tz: &TimeZone, ts_ms: u64) -> Option<Date> {
    let ts = Timestamp::from_millisecond(i64::try_from(ts_ms).ok()?).ok()?;
    Some(tz.to_datetime(ts).date())
}

/// The month a file name stands for: its first day.
fn month_of(name: &str) -> Option<Date> {
    let stem = name.strip_suffix(".jsonl")?;
    let (year, month) = stem.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    Date::new(year.parse().ok()?, month.parse().ok()?, 1).ok()
}

/// The instant (ms) a month starts, local midnight of its first day.
fn month_start_ms(tz: &TimeZone, first: Date) -> Option<u64> {
    let zoned = first.to_zoned(tz.clone()).ok()?;
    u64::try_from(zoned.timestamp().as_millisecond()).ok()
}

/// The history files of `dir`, oldest month first, with their sizes.
pub fn files(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut out: BTreeMap<Date, (PathBuf, u64)> = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(month) = month_of(&name) {
            let len = entry.metadata().map_or(0, |m| m.len());
            out.insert(month, (entry.path(), len));
        }
    }
    Ok(out.into_values().collect())
}

/// Appends KPI windows to the history files (the KPI task's writer).
#[derive(Debug)]
pub struct History {
    dir: PathBuf,
    tz: TimeZone,
    max_age_ms: u64,
    max_size: u64,
}

impl History {
    pub fn new(config: &Config) -> Self {
        History {
            dir: dir(&config.agent.data_dir),
            tz: config.agent.timezone.clone(),
            max_age_ms: millis(config.history.max_age),
            max_size: config.history.max_size,
        }
    }

    /// Appends `windows` (one line each) and fsyncs every file written,
    /// then trims. Failures are counted and logged, never returned: the
    /// windows go on to the outbox either way.
    pub fn append(&self, windows: &[KpiWindow], now_ms: u64, counters: &Counters) {
        if windows.is_empty() {
            return;
        }
        let mut by_file: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for w in windows {
            let Some(name) = file_name(&self.tz, w.window.start) else {
                counters.history_write_errors.inc();
                continue;
            };
            let entry = by_file.entry(name).or_default();
            entry.0.push_str(&history_line(w));
            entry.0.push('\n');
            entry.1 += 1;
        }
        for (name, (lines, count)) in by_file {
            let path = self.dir.join(&name);
            match append_synced(&self.dir, &path, lines.as_bytes()) {
                Ok(()) => counters.history_windows.add(count),
                Err(error) => {
                    counters.history_write_errors.add(count);
                    tracing::error!(file = %path.display(), windows = count, %error, "KPI windows could not be written to the local history; they are in the outbox only");
                }
            }
        }
        self.trim(now_ms, counters);
    }

    /// Deletes month files past `max_age`, then the oldest while the files
    /// hold more than `max_size` (never the newest); updates the byte gauge.
    pub fn trim(&self, now_ms: u64, counters: &Counters) {
        let Ok(mut files) = files(&self.dir) else {
            return;
        };
        let cutoff = now_ms.saturating_sub(self.max_age_ms);
        let mut total: u64 = files.iter().map(|(_, len)| len).sum();
        let mut keep = Vec::with_capacity(files.len());
        for (path, len) in files.drain(..) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let month_end = name
                .as_deref()
                .and_then(month_of)
                .and_then(|first| first.last_of_month().tomorrow().ok())
                .and_then(|next| month_start_ms(&self.tz, next));
            if month_end.is_some_and(|end| end <= cutoff) && remove(&path, "max_age", counters) {
                total = total.saturating_sub(len);
                continue;
            }
            keep.push((path, len));
        }
        let mut keep = keep.into_iter().peekable();
        while total > self.max_size {
            let Some((path, len)) = keep.next() else {
                break;
            };
            if keep.peek().is_none() {
                break; // the newest month stays
            }
            if remove(&path, "max_size", counters) {
                total = total.saturating_sub(len);
            }
        }
        counters.history_bytes.set(total);
    }
}

fn remove(path: &Path, reason: &str, counters: &Counters) -> bool {
    match fs::remove_file(path) {
        Ok(()) => {
            counters.history_trimmed_files.inc();
            tracing::warn!(file = %path.display(), reason, "Deleted a month of local KPI history");
            true
        }
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "Could not delete a month of local KPI history");
            false
        }
    }
}

/// Appends `bytes` to `path` and fsyncs it (and the directory when the
/// file is new). A torn last line left by a crash is ended first.
fn append_synced(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let new = !path.exists();
    if new {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0_u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            tracing::warn!(file = %path.display(), bytes = len, "The local history ends inside a line (a write cut short by a crash or a full disk); the line is ended and readers skip it");
            file.write_all(b"\n")?;
        }
    }
    file.write_all(bytes)?;
    file.sync_data()?;
    if new {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Milliseconds of a duration, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A line a reader could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// The file's last line without its `\n`: a write a crash cut short.
    pub torn: bool,
}

/// One window read back: its line as written and its parsed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub line: String,
    pub value: serde_json::Value,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<String>,
    pub name: Option<String>,
    /// Windows starting at or after (ms).
    pub from_ms: u64,
    /// Windows starting before (ms).
    pub to_ms: u64,
}

/// The windows of the history under `dir` that pass `filter`, as JSON
/// records, by (window start, kind, name), each (kind, name, start) once
/// (the first line written), and the lines skipped.
pub fn read_windows(dir: &Path, filter: &Filter) -> io::Result<(Vec<Record>, Vec<SkippedLine>)> {
    let mut windows: BTreeMap<(u64, String, String), Record> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (path, _) in files(dir)? {
        let text = fs::read(&path)?;
        let ends_with_newline = text.last() == Some(&b'\n');
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        let count = if ends_with_newline {
            lines.len().saturating_sub(1)
        } else {
            lines.len()
        };
        for (index, line) in lines.iter().take(count).enumerate() {
            if line.is_empty() {
                continue;
            }
            let parsed: Option<serde_json::Value> = serde_json::from_slice(line).ok();
            let key = parsed.as_ref().and_then(|v| {
                Some((
                    v.get("window")?.get("start")?.as_u64()?,
                    v.get("kind")?.as_str()?.to_owned(),
                    v.get("name")?.as_str()?.to_owned(),
                ))
            });
            let (Some(value), Some(key)) = (parsed, key) else {
                skipped.push(SkippedLine {
                    file: path.clone(),
                    line: index + 1,
                    torn: !ends_with_newline && index + 1 == count,
                });
                continue;
            };
            let (start, kind, name) = &key;
            if *start < filter.from_ms
                || *start >= filter.to_ms
                || filter.kind.as_ref().is_some_and(|k| k != kind)
                || filter.name.as_ref().is_some_and(|n| n != name)
            {
                continue;
            }
            windows.entry(key).or_insert_with(|| Record {
                line: String::from_utf8_lossy(line).into_owned(),
                value,
            });
        }
    }
    Ok((windows.into_values().collect(), skipped))
}

/// One page of one KPI's windows (for the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The lines as written, by window start, each start once.
    pub lines: Vec<String>,
    /// The window start the next page begins at, when more windows match.
    pub next: Option<u64>,
}

/// The windows of KPI `kind`/`name` starting in `[from_ms, to_ms)`, the
/// `limit` earliest. Bounded: only the month files the range touches are
/// read, line by line, and at most `limit + 1` lines are held.
pub fn read_page(
    dir: &Path,
    tz: &TimeZone,
    kind: &str,
    name: &str,
    from_ms: u64,
    to_ms: u64,
    limit: usize,
) -> io::Result<Page> {
    use std::io::BufRead as _;
    let mut kept: BTreeMap<u64, String> = BTreeMap::new();
    if from_ms >= to_ms || limit == 0 {
        return Ok(Page {
            lines: Vec::new(),
            next: None,
        });
    }
    let first = file_name(tz, from_ms).unwrap_or_default();
    let last = file_name(tz, to_ms - 1).unwrap_or_default();
    let files = match files(dir) {
        Ok(files) => files,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    for (path, _) in files {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file_name < first || file_name > last {
            continue;
        }
        let reader = io::BufReader::new(File::open(&path)?);
        for line in reader.split(b'\n') {
            let line = line?;
            // Cheap refusal before parsing: the name must appear.
            if !line
                .windows(name.len().max(1))
                .any(|w| w == name.as_bytes())
            {
                continue;
            }
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue; // a torn line (`spindle history` names it)
            };
            let matches = value.get("kind").and_then(|v| v.as_str()) == Some(kind)
                && value.get("name").and_then(|v| v.as_str()) == Some(name);
            let Some(start) = value
                .get("window")
                .and_then(|w| w.get("start"))
                .and_then(serde_json::Value::as_u64)
            else {
                continue;
            };
            if !matches || start < from_ms || start >= to_ms || kept.contains_key(&start) {
                continue;
            }
            kept.insert(start, String::from_utf8_lossy(&line).into_owned());
            if kept.len() > limit + 1 {
                kept.pop_last();
            }
        }
    }
    let next = if kept.len() > limit {
        kept.pop_last().map(|(start, _)| start)
    } else {
        None
    };
    Ok(Page {
        lines: kept.into_values().collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{CncCoverage, KpiFigures, Quality, WindowSpan};

    /// 2026-11-27 08:00 Asia/Shanghai.
    const T0: u64 = 1_795_737_600_000;

    fn window(name: &str, start: u64, ts: u64) -> KpiWindow {
        KpiWindow {
            ts,
            name: name.to_owned(),
            window: WindowSpan {
                start,
                end: start + 900_000,
            },
            figures: KpiFigures::CncCoverage(CncCoverage {
                count_ratio: Some(0.5),
                networked_ratio: Some(1.0),
                time_ratio: None,
                equipment: 2,
                numerically_controlled: 1,
                networked: 2,
                running_s: 0.0,
                cnc_running_s: 0.0,
            }),
            quality: Quality::Good,
            flags: Vec::new(),
            sample_completeness: None,
        }
    }

    fn history(dir: &Path, max_age_days: u64, max_size: u64) -> History {
        History {
            dir: dir.to_path_buf(),
            tz: TimeZone::get("Asia/Shanghai").unwrap(),
            max_age_ms: max_age_days * 86_400_000,
            max_size,
        }
    }

    fn all() -> Filter {
        Filter {
            to_ms: u64::MAX,
            ..Filter::default()
        }
    }

    #[test]
    fn a_window_goes_to_the_file_of_the_local_month_of_its_start() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        // 2026-11-30T16:30Z is 1 December 00:30 in Shanghai.
        let ts = 1_796_056_200_000;
        assert_eq!(file_name(&tz, ts).unwrap(), "2026-12.jsonl");
        assert_eq!(file_name(&tz, T0).unwrap(), "2026-11.jsonl");
    }

    #[test]
    fn a_window_written_twice_reads_back_once_and_a_torn_last_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let counters = Counters::default();
        let h = history(tmp.path(), 190, 1 << 30);
        h.append(&[window("plant", T0, T0 + 1)], T0, &counters);
        // A crash between history and outbox: the window comes again.
        h.append(
            &[
                window("plant", T0, T0 + 2),
                window("plant", T0 + 900_000, T0 + 3),
            ],
            T0,
            &counters,
        );
        let path = tmp.path().join("2026-11.jsonl");
        // A crash inside a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"ts\":17957").unwrap();
        let (windows, skipped) = read_windows(tmp.path(), &all()).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].value["ts"], T0 + 1, "the first line written");
        assert!(windows[0].line.starts_with("{\"ts\":"));
        assert_eq!(
            skipped,
            vec![SkippedLine {
                file: path.clone(),
                line: 4,
                torn: true
            }]
        );
        // The next append ends the torn line first: it stays one bad line.
        h.append(&[window("plant", T0 + 1_800_000, T0 + 4)], T0, &counters);
        let (windows, skipped) = read_windows(tmp.path(), &all()).unwrap();
        assert_eq!(windows.len(), 3);
        assert_eq!(skipped.len(), 1);
        assert!(!skipped[0].torn);
        assert_eq!(counters.history_windows.get(), 4);
    }

    #[test]
    fn months_past_max_age_and_the_oldest_beyond_max_size_are_deleted_never_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let counters = Counters::default();
        let day = 86_400_000;
        let h = history(tmp.path(), 40, 1 << 30);
        for month in 0..4 {
            h.append(&[window("plant", T0 - month * 31 * day, T0)], T0, &counters);
        }
        let names = |dir: &Path| -> Vec<String> {
            files(dir)
                .unwrap()
                .iter()
                .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        // On 27 November, 40 days back is 18 October: September ended before it.
        assert_eq!(names(tmp.path()), ["2026-10.jsonl", "2026-11.jsonl"]);
        assert_eq!(counters.history_trimmed_files.get(), 2);
        let tiny = history(tmp.path(), 190, 1);
        tiny.trim(T0, &counters);
        assert_eq!(names(tmp.path()), ["2026-11.jsonl"]);
        assert_eq!(counters.history_trimmed_files.get(), 3);
        assert!(counters.history_bytes.get() > 0);
    }

    #[test]
    fn a_history_that_cannot_be_written_counts_the_windows_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocked = tmp.path().join("history");
        fs::write(&blocked, b"").unwrap();
        let counters = Counters::default();
        let h = history(&blocked, 190, 1 << 30);
        h.append(&[window("plant", T0, T0)], T0, &counters);
        assert_eq!(counters.history_write_errors.get(), 1);
        assert_eq!(counters.history_windows.get(), 0);
    }

    #[test]
    fn a_page_holds_one_kpis_windows_by_start_each_once_and_says_where_the_next_begins() {
        const W: u64 = 900_000;
        let tmp = tempfile::tempdir().unwrap();
        let counters = Counters::default();
        let h = history(tmp.path(), 190, 1 << 30);
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        // Five windows of "plant", written out of order and one twice, and
        // one of another KPI.
        for (start, ts) in [(2, 1), (0, 2), (1, 3), (0, 4), (4, 5), (3, 6)] {
            h.append(&[window("plant", T0 + start * W, T0 + ts)], T0, &counters);
        }
        h.append(&[window("other", T0, T0)], T0, &counters);
        let read = |from: u64, limit: usize| {
            read_page(
                tmp.path(),
                &tz,
                "cnc_coverage",
                "plant",
                from,
                T0 + 10 * W,
                limit,
            )
            .unwrap()
        };
        let starts = |page: &Page| -> Vec<u64> {
            page.lines
                .iter()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (v["window"]["start"].as_u64().unwrap() - T0) / W
                })
                .collect()
        };
        let first = read(T0, 2);
        assert_eq!(starts(&first), vec![0, 1]);
        assert!(
            first.lines[0].contains(&format!("\"ts\":{}", T0 + 2)),
            "the first line written"
        );
        assert_eq!(first.next, Some(T0 + 2 * W));
        let second = read(first.next.unwrap(), 2);
        assert_eq!(starts(&second), vec![2, 3]);
        let last = read(second.next.unwrap(), 2);
        assert_eq!(starts(&last), vec![4]);
        assert_eq!(last.next, None);
        assert!(read(T0 + 5 * W, 2).lines.is_empty());
        // A missing history directory is an empty page, not an error.
        let none = read_page(
            &tmp.path().join("none"),
            &tz,
            "cnc_coverage",
            "plant",
            0,
            1,
            5,
        );
        assert_eq!(none.unwrap().lines.len(), 0);
    }
}
