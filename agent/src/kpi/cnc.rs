//! Key-process CNC coverage for one `[[kpi.cnc_coverage]]`.
//!
//! Owns the equipment the KPI counts (key processes, filtered by
//! `processes`; an empty list takes every key process), each one's last
//! sampled state, and per open window: whether any poll happened (the agent
//! was running), which equipment's device answered, and the running and
//! program-controlled running time.
//!
//! - `count_ratio = numerically_controlled / equipment` (inventory; known
//!   even for a window without data).
//! - `networked_ratio = networked / equipment`, where an equipment is
//!   networked in a window when its device answered at least one poll whose
//!   first request went out inside the window (with data, an exception, or
//!   registers that did not decode). Equipment without a device counts in
//!   `equipment` and is never networked.
//! - `time_ratio = cnc_running_s / running_s` over equipment with both a
//!   `running` and a `cnc_mode` signal; `null` when there is none or nothing
//!   ran. A signal is active while its point has one of `values` (compared
//!   to the published, scaled value), or, with no values, while a bool
//!   point is true (a number: non-zero). A state holds from its sample until
//!   the next sample, at most two poll intervals of the device: time after
//!   that, or while either signal's point errored, counts as neither.
//!
//! Quality: `no_data` when no poll of any device happened in the window
//! (the agent was not running: the times are then 0 and the ratios other
//! than `count_ratio` null); `partial` when an equipment's device was
//! offline in the window (flag `offline:DEVICE`), or, with a configured
//! `min_completeness`, when the sample completeness is below it; else `good`.
//!
//! Sample completeness counts, per signal point of a timed machine
//! (`running`, `cnc_mode`), the polls that gave it a value.

use std::collections::BTreeSet;

use crate::message::{CncCoverage, KpiFigures, WindowSpan};
use serde::{Deserialize, Serialize};
use spindle_config::model::{CncCoverageKpi, Config, Signal};

use super::counter::ms_to_f64;
use super::window::{OpenWindows, OpenWindowsState, Window, WindowGrid};
use super::{
    Availability, KpiWindowOut, MAX_WINDOWS_PER_CALL, PolledPoint, Quality, SampleValue,
    completeness, ratio, two_polls,
};

/// One counted machine.
#[derive(Debug, Clone)]
struct Machine {
    device: Option<String>,
    numerically_controlled: bool,
    /// Both signals, when the machine has both (it then counts in `time_ratio`).
    signals: Option<(Signal, Signal)>,
    /// Longest a sampled state holds: two poll intervals of the device.
    hold_ms: u64,
}

/// A machine's sampled state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StateSample {
    t: u64,
    running: Option<bool>,
    cnc: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MachineState {
    last: Option<StateSample>,
    /// The last sample's state has been added to windows up to here.
    integrated_until: u64,
}

/// One open window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct CncWindow {
    polled: bool,
    answered: Vec<bool>,
    running_ms: u64,
    cnc_running_ms: u64,
    /// Milliseconds of the window each timed machine's state was known
    /// (samples held at most two poll intervals); below the window's length
    /// the time ratio is `partial`.
    #[serde(default)]
    known_ms: Vec<u64>,
    /// Per machine, polls that gave its `running` and its `cnc_mode` signal a value.
    #[serde(default)]
    samples: Vec<(u64, u64)>,
}

/// What a restart needs of one CNC-coverage KPI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CncState {
    pub(super) name: String,
    fingerprint: String,
    windows: OpenWindowsState<CncWindow>,
    machines: Vec<MachineState>,
}

/// One `[[kpi.cnc_coverage]]` and its running state.
#[derive(Debug)]
pub(super) struct CncKpi {
    name: String,
    min_completeness: Option<f64>,
    /// Labels (`DEVICE.POINT`) of each machine's two signal points.
    labels: Vec<Option<(String, String)>>,
    machines: Vec<Machine>,
    devices: BTreeSet<String>,
    fingerprint: String,
    windows: OpenWindows<CncWindow>,
    states: Vec<MachineState>,
}

impl CncKpi {
    /// `None` when the window length is zero (validation prevents it).
    pub(super) fn new(config: &Config, kpi: &CncCoverageKpi) -> Option<Self> {
        let grid = WindowGrid::for_kpi(config.agent.timezone.clone(), kpi.day_start, kpi.window)?;
        let equipment: Vec<_> = config
            .equipment
            .iter()
            .filter(|e| {
                e.key_process && (kpi.processes.is_empty() || kpi.processes.contains(&e.process))
            })
            .collect();
        let machines: Vec<Machine> = equipment
            .iter()
            .map(|e| Machine {
                device: e.device.clone(),
                numerically_controlled: e.numerically_controlled,
                signals: e
                    .device
                    .as_ref()
                    .and(e.running.clone().zip(e.cnc_mode.clone())),
                hold_ms: e
                    .device
                    .as_deref()
                    .map_or(0, |d| two_polls(&config.devices, d)),
            })
            .collect();
        let devices: BTreeSet<String> = machines.iter().filter_map(|m| m.device.clone()).collect();
        let grace = machines.iter().map(|m| m.hold_ms).max().unwrap_or(0);
        let names: Vec<&str> = equipment.iter().map(|e| e.name.as_str()).collect();
        let fingerprint = format!(
            "{}|{}|{:?}|{:?}|{:?}",
            grid.length_ms(),
            config.agent.timezone_name,
            kpi.day_start,
            names,
            machines,
        );
        let labels = machines
            .iter()
            .map(|m| {
                let device = m.device.as_deref()?;
                let (running, cnc) = m.signals.as_ref()?;
                Some((
                    format!("{device}.{}", running.point),
                    format!("{device}.{}", cnc.point),
                ))
            })
            .collect();
        Some(CncKpi {
            name: kpi.name.clone(),
            min_completeness: kpi.min_completeness,
            labels,
            states: vec![MachineState::default(); machines.len()],
            machines,
            devices,
            fingerprint,
            windows: OpenWindows::new(grid, grace),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn cursor(&self) -> Option<u64> {
        self.windows.cursor()
    }

    pub(super) fn on_poll(
        &mut self,
        device: &str,
        ts_ms: u64,
        points: &[PolledPoint<'_>],
        answered: bool,
    ) {
        let count = self.machines.len();
        let Some(window) = self.windows.grid().window_containing(ts_ms) else {
            return;
        };
        if let Some(acc) = self.windows.acc(window) {
            acc.polled = true;
            if answered {
                acc.answered.resize(count, false);
                for (machine, seen) in self.machines.iter().zip(acc.answered.iter_mut()) {
                    if machine.device.as_deref() == Some(device) {
                        *seen = true;
                    }
                }
            }
        }
        for index in 0..count {
            let Some(machine) = self.machines.get(index) else {
                break;
            };
            if machine.device.as_deref() != Some(device) {
                continue;
            }
            let Some((running, cnc)) = &machine.signals else {
                continue;
            };
            let sample = StateSample {
                t: ts_ms,
                running: active(running, points),
                cnc: active(cnc, points),
            };
            self.count_sample(index, sample);
            self.on_state(index, sample);
        }
        self.windows.bound_unanchored();
    }

    /// Counts the signal values `sample` brought, for sample completeness.
    fn count_sample(&mut self, index: usize, sample: StateSample) {
        let machines = self.machines.len();
        let Some(window) = self.windows.grid().window_containing(sample.t) else {
            return;
        };
        if let Some(acc) = self.windows.acc(window) {
            acc.samples.resize(machines, (0, 0));
            if let Some(counts) = acc.samples.get_mut(index) {
                counts.0 += u64::from(sample.running.is_some());
                counts.1 += u64::from(sample.cnc.is_some());
            }
        }
    }

    fn on_state(&mut self, index: usize, sample: StateSample) {
        let (Some(machine), Some(state)) = (self.machines.get(index), self.states.get(index))
        else {
            return;
        };
        let hold = machine.hold_ms;
        let state = state.clone();
        if let Some(last) = state.last {
            if sample.t == last.t {
                return;
            }
            if sample.t > last.t {
                let from = state.integrated_until.max(last.t);
                let to = sample.t.min(last.t.saturating_add(hold));
                self.integrate(index, from, to, last);
            }
        }
        if let Some(state) = self.states.get_mut(index) {
            state.last = Some(sample);
            state.integrated_until = sample.t;
        }
    }

    /// Adds `[from, to)` in state `sample` to the open windows it overlaps.
    fn integrate(&mut self, machine: usize, from: u64, to: u64, sample: StateSample) {
        let Some((running, cnc)) = sample.running.zip(sample.cnc) else {
            return;
        };
        if from >= to {
            return;
        }
        let machines = self.machines.len();
        let grid = self.windows.grid().clone();
        let mut window = grid.window_containing(from);
        while let Some(w) = window {
            if w.start >= to {
                break;
            }
            let overlap = w.overlap_ms(from, to);
            if let Some(acc) = self.windows.acc(w) {
                acc.known_ms.resize(machines, 0);
                if let Some(known) = acc.known_ms.get_mut(machine) {
                    *known = known.saturating_add(overlap);
                }
                if running {
                    acc.running_ms = acc.running_ms.saturating_add(overlap);
                    if cnc {
                        acc.cnc_running_ms = acc.cnc_running_ms.saturating_add(overlap);
                    }
                }
            }
            window = grid.next(w);
        }
    }

    /// Adds every held state up to the end of `window`, which is closing.
    fn settle(&mut self, window: Window) {
        for index in 0..self.machines.len() {
            let (Some(machine), Some(state)) = (self.machines.get(index), self.states.get(index))
            else {
                break;
            };
            let Some(last) = state.last else { continue };
            let from = state.integrated_until.max(last.t);
            let to = window.end.min(last.t.saturating_add(machine.hold_ms));
            if to > from {
                self.integrate(index, from, to, last);
                if let Some(state) = self.states.get_mut(index) {
                    state.integrated_until = to;
                }
            }
        }
    }

    pub(super) fn close_due(
        &mut self,
        now_ms: u64,
        max_age_ms: u64,
        availability: &Availability,
        out: &mut Vec<KpiWindowOut>,
    ) {
        for _ in 0..MAX_WINDOWS_PER_CALL {
            let Some(window) = self.windows.next_due(now_ms, max_age_ms) else {
                break;
            };
            self.settle(window);
            let acc = self.windows.take(window).unwrap_or_default();
            out.push(self.close(window, &acc, availability));
        }
    }

    fn close(&self, window: Window, acc: &CncWindow, availability: &Availability) -> KpiWindowOut {
        let equipment = self.machines.len();
        let numerically_controlled = self
            .machines
            .iter()
            .filter(|m| m.numerically_controlled)
            .count();
        let networked = self
            .machines
            .iter()
            .zip(acc.answered.iter())
            .filter(|(m, seen)| m.device.is_some() && **seen)
            .count();
        // A window without polls measured nothing, not even the tail of a
        // state held from before it.
        let (run_ms, program_ms) = if acc.polled {
            (acc.running_ms, acc.cnc_running_ms)
        } else {
            (0, 0)
        };
        let timed = self.machines.iter().any(|m| m.signals.is_some());
        let running_s = ms_to_f64(run_ms) / 1000.0;
        let cnc_running_s = ms_to_f64(program_ms) / 1000.0;
        let flags = availability.flags(self.devices.iter().map(String::as_str), window);
        // Every timed machine's state must be known over the whole window
        // (a millisecond of rounding allowed) for the time ratio to be good.
        let length = window.end.saturating_sub(window.start);
        let unknown_time = self.machines.iter().enumerate().any(|(i, m)| {
            m.signals.is_some()
                && acc.known_ms.get(i).copied().unwrap_or(0).saturating_add(1) < length
        });
        let sample_completeness = completeness(
            self.machines
                .iter()
                .zip(&self.labels)
                .enumerate()
                .filter_map(|(i, (m, labels))| {
                    let (running, cnc) = labels.clone()?;
                    let (r, c) = acc.samples.get(i).copied().unwrap_or((0, 0));
                    let poll = m.hold_ms / 2;
                    Some([(running, r, poll), (cnc, c, poll)])
                })
                .flatten(),
            window,
            self.min_completeness,
        );
        let incomplete = self
            .min_completeness
            .zip(sample_completeness.min)
            .is_some_and(|(threshold, min)| min < threshold);
        let quality = if !acc.polled {
            Quality::NoData
        } else if !flags.is_empty() || unknown_time || incomplete {
            Quality::Partial
        } else {
            Quality::Good
        };
        let all = count_f64(equipment);
        let networked_ratio = if acc.polled {
            ratio(Some(count_f64(networked)), Some(all))
        } else {
            None
        };
        let time_ratio = if timed && run_ms > 0 {
            ratio(Some(cnc_running_s), Some(running_s))
        } else {
            None
        };
        KpiWindowOut {
            ts: 0,
            name: self.name.clone(),
            window: WindowSpan {
                start: window.start,
                end: window.end,
            },
            figures: KpiFigures::CncCoverage(CncCoverage {
                count_ratio: ratio(Some(count_f64(numerically_controlled)), Some(all)),
                networked_ratio,
                time_ratio,
                equipment: equipment as u64,
                numerically_controlled: numerically_controlled as u64,
                networked: networked as u64,
                running_s,
                cnc_running_s,
            }),
            quality,
            flags,
            sample_completeness: Some(sample_completeness),
        }
    }

    pub(super) fn save(&self) -> CncState {
        CncState {
            name: self.name.clone(),
            fingerprint: self.fingerprint.clone(),
            windows: self.windows.save(),
            machines: self.states.clone(),
        }
    }

    pub(super) fn load(&mut self, saved: CncState) {
        let same =
            saved.fingerprint == self.fingerprint && saved.machines.len() == self.machines.len();
        self.windows.load(saved.windows, same);
        if same {
            self.states = saved.machines;
        }
    }
}

/// Whether `signal` is active in this poll; `None` when its point is
/// missing, errored or text.
fn active(signal: &Signal, points: &[PolledPoint<'_>]) -> Option<bool> {
    let (_, outcome) = points.iter().find(|(name, _)| *name == signal.point)?;
    let sample = outcome.ok()?;
    let number = match sample.value {
        SampleValue::Bool(b) if signal.values.is_empty() => return Some(b),
        SampleValue::Bool(b) => f64::from(u8::from(b)),
        SampleValue::Number(n) if signal.values.is_empty() => return Some(n != 0.0),
        SampleValue::Number(n) => n,
        SampleValue::Text => return None,
    };
    Some(
        signal
            .values
            .iter()
            .any(|v| (v - number).abs() <= 1e-9 * v.abs().max(1.0)),
    )
}

/// A count as a JSON number.
#[allow(clippy::cast_precision_loss)]
fn count_f64(n: usize) -> f64 {
    n as f64
}
