//! A closed KPI window as a message (SPEC §4, `kpi/{kind}/{name}`).
//!
//! [`KpiWindow`] is the layout this build writes (`Message::Kpi`, the
//! message's last variant); windows stored before it are read as
//! [`KpiWindowF2`] (`Message::KpiF2`) and published as they were: without
//! `sample_completeness` and the carriers' basis and CO2 factor ids.

use serde::{Deserialize, Serialize};

/// Which KPI a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KpiKind {
    CncCoverage,
    EnergyPerOutput,
    EnergyConsumption,
}

impl KpiKind {
    /// The `{kind}` of the topic and the `kind` member.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiKind::CncCoverage => "cnc_coverage",
            KpiKind::EnergyPerOutput => "energy_per_output",
            KpiKind::EnergyConsumption => "energy_consumption",
        }
    }

    /// The kind called `word` (as published).
    pub fn from_word(word: &str) -> Option<Self> {
        [
            KpiKind::CncCoverage,
            KpiKind::EnergyPerOutput,
            KpiKind::EnergyConsumption,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }
}

/// A window's `quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Quality {
    Good,
    Partial,
    NoOutput,
    NoData,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Partial => "partial",
            Quality::NoOutput => "no_output",
            Quality::NoData => "no_data",
        }
    }
}

/// What happened in a window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KpiFlag {
    /// A counter fell and was taken as a meter reset.
    Reset,
    /// A counter wrapped past its rollover.
    Wrap,
    /// This input device was offline at some time in the window.
    Offline(String),
    /// An input's samples stopped for longer than two poll intervals inside
    /// the window (the agent or the device was down): its consumption across
    /// the silence is the counter difference, interpolated at the window's
    /// boundaries.
    Outage,
}

impl KpiFlag {
    /// The flag as published: `reset`, `wrap`, `offline:DEVICE`.
    pub fn word(&self) -> String {
        match self {
            KpiFlag::Reset => "reset".to_owned(),
            KpiFlag::Wrap => "wrap".to_owned(),
            KpiFlag::Offline(device) => format!("offline:{device}"),
            KpiFlag::Outage => "outage".to_owned(),
        }
    }
}

/// `[start, end)` in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowSpan {
    pub start: u64,
    pub end: u64,
}

/// One closed KPI window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiWindow {
    /// When the window was closed (Unix ms): its `ts`.
    pub ts: u64,
    pub name: String,
    pub window: WindowSpan,
    pub figures: KpiFigures,
    pub quality: Quality,
    pub flags: Vec<KpiFlag>,
    /// `None` only for windows stored before the member existed.
    pub sample_completeness: Option<SampleCompleteness>,
}

impl KpiWindow {
    pub fn kind(&self) -> KpiKind {
        match self.figures {
            KpiFigures::CncCoverage(_) => KpiKind::CncCoverage,
            KpiFigures::EnergyPerOutput(_) => KpiKind::EnergyPerOutput,
            KpiFigures::EnergyConsumption(_) => KpiKind::EnergyConsumption,
        }
    }
}

/// Good samples received ÷ samples expected at the poll rate, per input
/// point (SPEC §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleCompleteness {
    /// The lowest ratio of any input; `None` for a KPI without input points.
    pub min: Option<f64>,
    /// The inputs under the threshold, lowest first, at most
    /// [`MAX_BELOW`]: `(DEVICE.POINT, ratio)`.
    pub below: Vec<(String, f64)>,
}

/// Most points `sample_completeness.below` lists.
pub const MAX_BELOW: usize = 16;

/// The figures of one KPI kind. **Add variants only at the end** (outbox format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KpiFigures {
    CncCoverage(CncCoverage),
    EnergyPerOutput(EnergyPerOutput),
    EnergyConsumption(EnergyConsumption),
}

/// Energy consumption per carrier and in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyConsumption {
    /// A label such as a workshop.
    pub scope: Option<String>,
    pub kgce: Option<f64>,
    /// `kgce / 1000`.
    pub tce: Option<f64>,
    pub kgco2: Option<f64>,
    /// Per carrier, by carrier name.
    pub energy: Vec<CarrierFigures>,
}

/// Energy (and CO2) per unit of output; `None` is a figure that could not
/// be computed (published as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyPerOutput {
    pub value: Option<f64>,
    /// `kgce/{output_unit}`.
    pub unit: String,
    pub co2_kg_per_unit: Option<f64>,
    pub output: Option<f64>,
    pub kgce: Option<f64>,
    pub kgco2: Option<f64>,
    /// Per carrier, in configuration order.
    pub energy: Vec<CarrierFigures>,
    /// Over the configured quota `limit` (only on windows of its period).
    pub over_limit: Option<bool>,
    /// `value / baseline − 1`, when a baseline is configured.
    pub vs_baseline: Option<f64>,
}

/// One energy carrier's consumption in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierFigures {
    pub carrier: String,
    pub consumption: Option<f64>,
    pub unit: String,
    pub kgce: Option<f64>,
    pub kgco2: Option<f64>,
    pub kgce_per_unit: Option<f64>,
    pub kgco2_per_unit: Option<f64>,
    /// `None` only for windows stored before the members existed.
    pub basis: Option<CarrierBasis>,
}

/// Which coefficients a carrier's figures were computed with (DOMAIN §2–3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierBasis {
    /// `calorific` (当量值) or `equivalent` (等价值).
    pub basis: String,
    /// The year of an `equivalent` coefficient.
    pub basis_year: Option<u16>,
    pub co2_factor_id: Option<String>,
    pub co2_factor_year: Option<u16>,
}

/// Key-process CNC coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CncCoverage {
    pub count_ratio: Option<f64>,
    pub networked_ratio: Option<f64>,
    pub time_ratio: Option<f64>,
    pub equipment: u64,
    pub numerically_controlled: u64,
    pub networked: u64,
    pub running_s: f64,
    pub cnc_running_s: f64,
}

/// A KPI window as stored before energy consumption (outbox format 2 up to
/// then): frozen, read only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiWindowF2 {
    pub ts: u64,
    pub name: String,
    pub window: WindowSpan,
    pub figures: KpiFiguresF2,
    pub quality: Quality,
    pub flags: Vec<KpiFlag>,
}

/// [`KpiFigures`] as stored before energy consumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KpiFiguresF2 {
    CncCoverage(CncCoverage),
    EnergyPerOutput(EnergyPerOutputF2),
}

/// [`EnergyPerOutput`] as stored before energy consumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyPerOutputF2 {
    pub value: Option<f64>,
    pub unit: String,
    pub co2_kg_per_unit: Option<f64>,
    pub output: Option<f64>,
    pub kgce: Option<f64>,
    pub kgco2: Option<f64>,
    pub energy: Vec<CarrierFiguresF2>,
}

/// [`CarrierFigures`] as stored before energy consumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierFiguresF2 {
    pub carrier: String,
    pub consumption: Option<f64>,
    pub unit: String,
    pub kgce: Option<f64>,
    pub kgco2: Option<f64>,
    pub kgce_per_unit: Option<f64>,
    pub kgco2_per_unit: Option<f64>,
}

impl From<KpiWindowF2> for KpiWindow {
    fn from(old: KpiWindowF2) -> Self {
        let figures = match old.figures {
            KpiFiguresF2::CncCoverage(c) => KpiFigures::CncCoverage(c),
            KpiFiguresF2::EnergyPerOutput(e) => KpiFigures::EnergyPerOutput(EnergyPerOutput {
                value: e.value,
                unit: e.unit,
                co2_kg_per_unit: e.co2_kg_per_unit,
                output: e.output,
                kgce: e.kgce,
                kgco2: e.kgco2,
                energy: e
                    .energy
                    .into_iter()
                    .map(|c| CarrierFigures {
                        carrier: c.carrier,
                        consumption: c.consumption,
                        unit: c.unit,
                        kgce: c.kgce,
                        kgco2: c.kgco2,
                        kgce_per_unit: c.kgce_per_unit,
                        kgco2_per_unit: c.kgco2_per_unit,
                        basis: None,
                    })
                    .collect(),
                over_limit: None,
                vs_baseline: None,
            }),
        };
        KpiWindow {
            ts: old.ts,
            name: old.name,
            window: old.window,
            figures,
            quality: old.quality,
            flags: old.flags,
            sample_completeness: None,
        }
    }
}
