//! A closed KPI window as a message (SPEC §4, `kpi/{kind}/{name}`).

use serde::{Deserialize, Serialize};

/// Which KPI a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KpiKind {
    CncCoverage,
    EnergyPerOutput,
}

impl KpiKind {
    /// The `{kind}` of the topic and the `kind` member.
    pub fn as_str(self) -> &'static str {
        match self {
            KpiKind::CncCoverage => "cnc_coverage",
            KpiKind::EnergyPerOutput => "energy_per_output",
        }
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
}

impl KpiFlag {
    /// The flag as published: `reset`, `wrap`, `offline:DEVICE`.
    pub fn word(&self) -> String {
        match self {
            KpiFlag::Reset => "reset".to_owned(),
            KpiFlag::Wrap => "wrap".to_owned(),
            KpiFlag::Offline(device) => format!("offline:{device}"),
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
}

impl KpiWindow {
    pub fn kind(&self) -> KpiKind {
        match self.figures {
            KpiFigures::CncCoverage(_) => KpiKind::CncCoverage,
            KpiFigures::EnergyPerOutput(_) => KpiKind::EnergyPerOutput,
        }
    }
}

/// The figures of one KPI kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KpiFigures {
    CncCoverage(CncCoverage),
    EnergyPerOutput(EnergyPerOutput),
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
