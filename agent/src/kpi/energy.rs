//! Energy (kgce and CO2) per unit of output for one `[[kpi.energy_per_output]]`,
//! and energy consumption for one `[[kpi.energy_consumption]]` (the same
//! counters without an output).
//!
//! Owns, per input counter (the energy points, then the output points): the
//! last sample and the counter's *unwrapped* running total `u` in raw units
//! (each step adds its rise, wrap or reset delta from [`super::counter`]),
//! and per open window the values of `u` at the window's two boundaries,
//! interpolated linearly between the samples on either side, plus the first
//! and last `u` sampled inside the window.
//!
//! A window's consumption of an input is `u(end) − u(start)`, in raw units,
//! times the point's `scale`, times `to_carrier_unit` (1 for outputs). A
//! boundary with no sample yet on its far side (the device went quiet) is
//! replaced by the last sample inside the window, one with no sample before
//! it by the first sample inside: the window is then `partial`. A sample
//! gap longer than two poll intervals of the input's device only gives
//! boundaries to the windows at its two ends; the windows strictly inside
//! it get nothing from this input (and are `no_data` when nothing else was
//! measured there, as after an agent outage).
//!
//! An input has data in a window when it was sampled inside it or both
//! boundaries were interpolated; it is *good* when both boundaries have a
//! sample within two poll intervals on each side. The window is `no_data`
//! when no input has data; `no_output` when the output has data and is
//! zero; `partial` when an input is not good or an input device was offline
//! in the window; else `good`.
//!
//! Per carrier, the consumption is the sum over its inputs with data
//! (`null` when none has); `kgce` and `kgco2` are `null` when a carrier's
//! consumption is; `value = kgce / output` and `co2_kg_per_unit = kgco2 /
//! output` are `null` unless both are known and the output is not zero.
//! Besides SPEC §5's members each carrier object carries the coefficients
//! used (`kgce_per_unit`, `kgco2_per_unit`) with their `basis` and CO2
//! factor series (`co2_factor_id`, `co2_factor_year`), as DOMAIN §2–3 asks.
//!
//! Quota: with `limit = { value, period }` windows of that period (the
//! KPI's own window equal to it) carry `over_limit = value > limit` when
//! the value is known; with `baseline`, every window with a value carries
//! `vs_baseline = value / baseline − 1`.
//!
//! Energy consumption: per carrier `consumption`, `kgce`, `kgco2`; totals
//! `kgce`, `tce = kgce / 1000`, `kgco2`. Its quality is `no_data`,
//! `partial` (as above, or `sample_completeness.min` under the KPI's
//! `min_completeness`), else `good`.
//!
//! Sample completeness: per input, the good samples recorded in the window
//! ÷ the samples expected at its device's poll rate (`round(window length /
//! poll)`, at least 1), capped at 1 ([`super::completeness`]).
//!
//! A sample gap longer than two poll intervals flags every window it
//! touches `outage`: a window that holds the whole gap (a month across an
//! agent outage) has the counter difference across it; the windows at its
//! two ends share the difference by linear interpolation at their boundary,
//! and are `partial` for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spindle_config::model::{
    Basis, Carrier, Config, DayStart, EnergyConsumptionKpi, EnergyInput, EnergyPerOutputKpi,
    PointRef, WindowLength,
};

use super::counter::{self, CounterSpec, DecimalRegister, Reading, StepKind};
use super::window::{OpenWindows, OpenWindowsState, Window, WindowGrid};
use super::{
    Availability, KpiWindowOut, MAX_WINDOWS_PER_CALL, PolledPoint, Quality, completeness, ratio,
    two_polls,
};
use crate::message::{
    CarrierBasis, CarrierFigures, EnergyConsumption, EnergyPerOutput, KpiFigures, KpiFlag,
    WindowSpan,
};

/// One counter the KPI reads.
#[derive(Debug, Clone)]
struct Input {
    device: String,
    point: String,
    spec: CounterSpec,
    /// Raw units to carrier (or output) units: `scale × to_carrier_unit`.
    factor: f64,
    /// Two poll intervals of the device.
    gap_ms: u64,
    /// `None` for an output.
    carrier: Option<String>,
}

/// An input's last sample.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct LastSample {
    t: u64,
    reading: Reading,
    /// Unwrapped running total, raw units, since the input was first sampled.
    #[serde(with = "super::exact_f64")]
    u: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InputState {
    last: Option<LastSample>,
    /// Rise per ms over the last rising step (for the wrap rule).
    #[serde(with = "super::exact_f64::option")]
    rate: Option<f64>,
}

/// `u` interpolated at a window boundary, with the distance to the samples
/// it was interpolated between.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Boundary {
    #[serde(with = "super::exact_f64")]
    u: f64,
    before_ms: u64,
    after_ms: u64,
}

/// One input in one open window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InputWindow {
    start: Option<Boundary>,
    end: Option<Boundary>,
    #[serde(with = "super::exact_f64::option")]
    first: Option<f64>,
    #[serde(with = "super::exact_f64::option")]
    last: Option<f64>,
    wrap: bool,
    reset: bool,
    /// Good samples recorded inside the window.
    #[serde(default)]
    samples: u64,
    /// A sample gap longer than two poll intervals touches the window.
    #[serde(default)]
    outage: bool,
}

impl InputWindow {
    fn has_data(&self) -> bool {
        self.first.is_some() || (self.start.is_some() && self.end.is_some())
    }

    /// Raw consumption in the window, when it has data.
    fn consumption(&self) -> Option<f64> {
        if !self.has_data() {
            return None;
        }
        let start = self.start.map(|b| b.u).or(self.first)?;
        let end = self.end.map(|b| b.u).or(self.last)?;
        Some((end - start).max(0.0))
    }

    fn good(&self, gap_ms: u64) -> bool {
        let near =
            |b: Option<Boundary>| b.is_some_and(|b| b.before_ms <= gap_ms && b.after_ms <= gap_ms);
        near(self.start) && near(self.end)
    }
}

/// One open window: a slot per input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct EnergyWindow {
    inputs: Vec<InputWindow>,
}

/// What a restart needs of one energy KPI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EnergyState {
    pub(super) name: String,
    fingerprint: String,
    windows: OpenWindowsState<EnergyWindow>,
    inputs: Vec<InputState>,
}

/// What the KPI publishes.
#[derive(Debug, Clone)]
enum Mode {
    /// `[[kpi.energy_per_output]]`.
    PerOutput {
        output_unit: String,
        /// The quota limit (kgce per output unit), when it applies to this KPI's windows.
        limit: Option<f64>,
        /// The baseline figure (kgce per output unit).
        baseline: Option<f64>,
    },
    /// `[[kpi.energy_consumption]]`.
    Consumption { scope: Option<String> },
}

/// One `[[kpi.energy_per_output]]` or `[[kpi.energy_consumption]]` and its
/// running state.
#[derive(Debug)]
pub(super) struct EnergyKpi {
    name: String,
    mode: Mode,
    /// Below it a window is `partial` (energy per output: only when configured).
    min_completeness: Option<f64>,
    inputs: Vec<Input>,
    carriers: BTreeMap<String, Carrier>,
    fingerprint: String,
    windows: OpenWindows<EnergyWindow>,
    states: Vec<InputState>,
}

impl EnergyKpi {
    /// `None` when the window length is zero (validation prevents it).
    pub(super) fn new(config: &Config, kpi: &EnergyPerOutputKpi) -> Option<Self> {
        Self::build(
            config,
            &kpi.name,
            (kpi.window, kpi.day_start),
            &kpi.energy,
            &kpi.output,
            Mode::PerOutput {
                output_unit: kpi.output_unit.clone(),
                limit: kpi
                    .limit
                    .filter(|limit| limit.period == kpi.window)
                    .map(|limit| limit.value),
                baseline: kpi.baseline.map(|b| b.value),
            },
            kpi.min_completeness,
        )
    }

    /// An energy-consumption KPI; `None` when the window length is zero.
    pub(super) fn consumption(config: &Config, kpi: &EnergyConsumptionKpi) -> Option<Self> {
        Self::build(
            config,
            &kpi.name,
            (kpi.window, kpi.day_start),
            &kpi.energy,
            &[],
            Mode::Consumption {
                scope: kpi.scope.clone(),
            },
            Some(kpi.min_completeness),
        )
    }

    fn build(
        config: &Config,
        name: &str,
        (window, day_start): (WindowLength, DayStart),
        energy: &[EnergyInput],
        output: &[PointRef],
        mode: Mode,
        min_completeness: Option<f64>,
    ) -> Option<Self> {
        let grid = WindowGrid::for_kpi(config.agent.timezone.clone(), day_start, window)?;
        let mut inputs = Vec::new();
        for energy in energy {
            inputs.push(input(
                config,
                &energy.point,
                energy.to_carrier_unit,
                Some(&energy.carrier),
            ));
        }
        for output in output {
            inputs.push(input(config, output, 1.0, None));
        }
        let grace = inputs.iter().map(|i| i.gap_ms).max().unwrap_or(0);
        let carriers = energy
            .iter()
            .filter_map(|e| Some((e.carrier.clone(), config.carriers.get(&e.carrier)?.clone())))
            .collect();
        let unit = match &mode {
            Mode::PerOutput { output_unit, .. } => output_unit.as_str(),
            Mode::Consumption { .. } => "",
        };
        let fingerprint = format!(
            "{}|{}|{:?}|{}|{:?}",
            grid.length_ms(),
            config.agent.timezone_name,
            day_start,
            unit,
            inputs,
        );
        Some(EnergyKpi {
            name: name.to_owned(),
            mode,
            min_completeness,
            states: vec![InputState::default(); inputs.len()],
            inputs,
            carriers,
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

    pub(super) fn on_poll(&mut self, device: &str, ts_ms: u64, points: &[PolledPoint<'_>]) {
        for index in 0..self.inputs.len() {
            let Some(input) = self.inputs.get(index) else {
                break;
            };
            if input.device != device {
                continue;
            }
            let reading = points
                .iter()
                .find(|(name, _)| *name == input.point)
                .and_then(|(_, outcome)| outcome.ok())
                .and_then(|decoded| Reading::from_raw(&decoded.raw));
            if let Some(reading) = reading {
                self.on_sample(index, ts_ms, reading);
            }
        }
        self.windows.bound_unanchored();
    }

    fn on_sample(&mut self, index: usize, t: u64, reading: Reading) {
        let (Some(input), Some(state)) = (self.inputs.get(index), self.states.get_mut(index))
        else {
            return;
        };
        let spec = input.spec;
        let gap_ms = input.gap_ms;
        let u = match state.last {
            None => 0.0,
            Some(last) if t == last.t => return,
            // The clock went back: start over from here, count nothing across.
            Some(last) if t < last.t => last.u,
            Some(last) => {
                let dt = t - last.t;
                let step = counter::step(spec, last.reading, reading, dt, state.rate);
                if step.kind == StepKind::Rise {
                    state.rate = counter::rate(step.delta, dt);
                }
                let u = last.u + step.delta;
                state.last = Some(LastSample { t, reading, u });
                self.spread_step(index, gap_ms, (last.t, last.u), (t, u), step.kind);
                self.record_sample(index, t, u);
                return;
            }
        };
        state.last = Some(LastSample { t, reading, u });
        self.record_sample(index, t, u);
    }

    fn record_sample(&mut self, index: usize, t: u64, u: f64) {
        let n = self.inputs.len();
        let Some(window) = self.windows.grid().window_containing(t) else {
            return;
        };
        if let Some(slot) = slot(&mut self.windows, window, index, n) {
            slot.first.get_or_insert(u);
            slot.last = Some(u);
            slot.samples = slot.samples.saturating_add(1);
        }
    }

    /// Gives the boundaries inside the step `(tp, tc]` their interpolated
    /// `u`, and flags the windows the step's delta falls in.
    fn spread_step(
        &mut self,
        index: usize,
        gap_ms: u64,
        (tp, up): (u64, f64),
        (tc, uc): (u64, f64),
        kind: StepKind,
    ) {
        let n = self.inputs.len();
        let grid = self.windows.grid().clone();
        let (Some(first), Some(last)) = (grid.window_containing(tp), grid.window_containing(tc))
        else {
            return;
        };
        let boundary = |b: u64| Boundary {
            u: counter::interpolate(tp, up, tc, uc, b),
            before_ms: b - tp,
            after_ms: tc - b,
        };
        // The windows holding `[tp, tc]`: all of them for a short step, only
        // the two holding a sample for a long one (longer than two poll
        // intervals), so a window strictly inside a gap gets nothing from
        // this input and has no data.
        let mut visited = vec![first];
        if first != last {
            if tc - tp <= gap_ms {
                let mut w = first;
                while let Some(next) = grid.next(w) {
                    if next.start >= last.start || visited.len() > MAX_WINDOWS_PER_CALL {
                        break;
                    }
                    visited.push(next);
                    w = next;
                }
            }
            visited.push(last);
        }
        // Each visited window gets the boundaries that lie inside the step.
        let outage = tc - tp > gap_ms;
        for &w in &visited {
            if let Some(slot) = slot(&mut self.windows, w, index, n) {
                slot.outage |= outage;
                if w.start > tp {
                    slot.start = Some(boundary(w.start));
                }
                if w.end <= tc {
                    slot.end = Some(boundary(w.end));
                }
            }
        }
        // Only windows that get a share of the delta are flagged.
        visited.retain(|w| w.start < tc);
        if kind != StepKind::Rise {
            for w in visited {
                if let Some(slot) = slot(&mut self.windows, w, index, n) {
                    match kind {
                        StepKind::Wrap => slot.wrap = true,
                        StepKind::Reset => slot.reset = true,
                        StepKind::Rise => {}
                    }
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
            let acc = self.windows.take(window).unwrap_or_default();
            out.push(self.close(window, &acc, availability));
        }
    }

    fn close(
        &self,
        window: Window,
        acc: &EnergyWindow,
        availability: &Availability,
    ) -> KpiWindowOut {
        let empty = InputWindow::default();
        let mut any_data = false;
        let mut all_good = true;
        let (mut wrap, mut reset, mut outage) = (false, false, false);
        let mut per_carrier: BTreeMap<&str, Option<f64>> = BTreeMap::new();
        let mut output: Option<f64> = None;
        for (index, input) in self.inputs.iter().enumerate() {
            let slot = acc.inputs.get(index).unwrap_or(&empty);
            any_data |= slot.has_data();
            all_good &= slot.good(input.gap_ms);
            wrap |= slot.wrap;
            reset |= slot.reset;
            outage |= slot.outage;
            let value = slot.consumption().map(|raw| raw * input.factor);
            let total = match &input.carrier {
                Some(carrier) => per_carrier.entry(carrier.as_str()).or_insert(None),
                None => &mut output,
            };
            if let Some(value) = value {
                *total = Some(total.unwrap_or(0.0) + value);
            }
        }
        for carrier in self.carriers.keys() {
            per_carrier.entry(carrier.as_str()).or_insert(None);
        }
        let offline = availability.flags(self.inputs.iter().map(|i| i.device.as_str()), window);
        let sample_completeness = completeness(
            self.inputs.iter().enumerate().map(|(index, input)| {
                let samples = acc.inputs.get(index).map_or(0, |slot| slot.samples);
                (
                    format!("{}.{}", input.device, input.point),
                    samples,
                    input.gap_ms / 2,
                )
            }),
            window,
            self.min_completeness,
        );
        let incomplete = self
            .min_completeness
            .zip(sample_completeness.min)
            .is_some_and(|(threshold, min)| min < threshold);
        let consumption_only = matches!(self.mode, Mode::Consumption { .. });
        let quality = if !any_data {
            Quality::NoData
        } else if !consumption_only && output == Some(0.0) {
            Quality::NoOutput
        } else if !all_good || !offline.is_empty() || incomplete {
            Quality::Partial
        } else {
            Quality::Good
        };
        let mut flags = Vec::new();
        if reset {
            flags.push(KpiFlag::Reset);
        }
        if wrap {
            flags.push(KpiFlag::Wrap);
        }
        flags.extend(offline);
        if outage {
            flags.push(KpiFlag::Outage);
        }

        let (mut kgce, mut kgco2, energy) = self.carrier_figures(&per_carrier);
        if !any_data {
            kgce = None;
            kgco2 = None;
        }
        KpiWindowOut {
            ts: 0,
            name: self.name.clone(),
            window: WindowSpan {
                start: window.start,
                end: window.end,
            },
            figures: self.figures(output, kgce, kgco2, energy),
            quality,
            flags,
            sample_completeness: Some(sample_completeness),
        }
    }

    /// The figures of the KPI's kind from its totals and carriers.
    fn figures(
        &self,
        output: Option<f64>,
        kgce: Option<f64>,
        kgco2: Option<f64>,
        energy: Vec<CarrierFigures>,
    ) -> KpiFigures {
        match &self.mode {
            Mode::PerOutput {
                output_unit,
                limit,
                baseline,
            } => {
                let value = ratio(kgce, output);
                KpiFigures::EnergyPerOutput(EnergyPerOutput {
                    value,
                    unit: format!("kgce/{output_unit}"),
                    co2_kg_per_unit: ratio(kgco2, output),
                    output,
                    kgce,
                    kgco2,
                    energy,
                    over_limit: limit.zip(value).map(|(limit, value)| value > limit),
                    vs_baseline: baseline.zip(value).map(|(base, value)| value / base - 1.0),
                })
            }
            Mode::Consumption { scope } => KpiFigures::EnergyConsumption(EnergyConsumption {
                scope: scope.clone(),
                kgce,
                tce: kgce.map(|k| k / 1000.0),
                kgco2,
                energy,
            }),
        }
    }

    /// Each carrier's figures and the totals (`None` when a carrier's
    /// consumption is unknown).
    fn carrier_figures(
        &self,
        per_carrier: &BTreeMap<&str, Option<f64>>,
    ) -> (Option<f64>, Option<f64>, Vec<CarrierFigures>) {
        let mut kgce = Some(0.0);
        let mut kgco2 = Some(0.0);
        let mut energy = Vec::with_capacity(per_carrier.len());
        for (name, consumption) in per_carrier {
            let carrier = self.carriers.get(*name);
            let ce = consumption.zip(carrier).map(|(c, k)| c * k.kgce_per_unit);
            let co2 = consumption.zip(carrier).map(|(c, k)| c * k.kgco2_per_unit);
            kgce = kgce.zip(ce).map(|(a, b)| a + b);
            kgco2 = kgco2.zip(co2).map(|(a, b)| a + b);
            energy.push(CarrierFigures {
                carrier: (*name).to_owned(),
                consumption: *consumption,
                unit: carrier.map_or_else(String::new, |c| c.unit.clone()),
                kgce: ce,
                kgco2: co2,
                kgce_per_unit: carrier.map(|c| c.kgce_per_unit),
                kgco2_per_unit: carrier.map(|c| c.kgco2_per_unit),
                basis: carrier.map(carrier_basis),
            });
        }
        (kgce, kgco2, energy)
    }

    pub(super) fn save(&self) -> EnergyState {
        EnergyState {
            name: self.name.clone(),
            fingerprint: self.fingerprint.clone(),
            windows: self.windows.save(),
            inputs: self.states.clone(),
        }
    }

    pub(super) fn load(&mut self, saved: EnergyState) {
        let same = saved.fingerprint == self.fingerprint && saved.inputs.len() == self.inputs.len();
        self.windows.load(saved.windows, same);
        if same {
            self.states = saved.inputs;
        }
    }
}

fn input(config: &Config, point: &PointRef, to_unit: f64, carrier: Option<&String>) -> Input {
    let configured = config
        .devices
        .iter()
        .find(|d| d.name == point.device)
        .and_then(|d| d.points.iter().find(|p| p.name == point.point));
    Input {
        device: point.device.clone(),
        point: point.point.clone(),
        spec: configured.map_or(
            CounterSpec {
                rollover: None,
                signed_bits: None,
                register: None,
            },
            |configured| CounterSpec {
                // A meter register's range, as config gives it (DL/T 645
                // energy wraps after 999999.99 kWh).
                register: config
                    .dlt645_device(&point.device)
                    .and_then(|meter| meter.wraps.get(&point.point))
                    .map(|wrap| DecimalRegister {
                        steps: wrap.steps,
                        decimals: wrap.decimals,
                    }),
                ..CounterSpec::for_point(configured)
            },
        ),
        factor: configured.map_or(1.0, |p| p.scale) * to_unit,
        gap_ms: two_polls(&config.devices, &point.device),
        carrier: carrier.cloned(),
    }
}

/// The basis and CO2 factor series a carrier's figures were computed with.
fn carrier_basis(carrier: &Carrier) -> CarrierBasis {
    CarrierBasis {
        basis: carrier.basis.as_str().to_owned(),
        basis_year: match carrier.basis {
            Basis::Equivalent { year } => year,
            Basis::Calorific => None,
        },
        co2_factor_id: carrier.co2_factor_id.clone(),
        co2_factor_year: carrier.co2_factor_year,
    }
}

/// The slot of input `index` in `window`, opening the window if needed.
fn slot(
    windows: &mut OpenWindows<EnergyWindow>,
    window: Window,
    index: usize,
    inputs: usize,
) -> Option<&mut InputWindow> {
    let acc = windows.acc(window)?;
    if acc.inputs.len() < inputs {
        acc.inputs.resize_with(inputs, InputWindow::default);
    }
    acc.inputs.get_mut(index)
}
