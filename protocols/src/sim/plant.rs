//! One simulated plant, built from a configuration: every Modbus device
//! (TCP or serial) and every DL/T 645 meter of the file, with the dynamics
//! and faults of its `[device.sim]` table. `spindle simulate`, `spindle
//! demo` and the hil-tests all build their plant here.
//!
//! [`SimPlant::new`] makes the devices; [`SimPlant::serve_tcp`] serves each
//! TCP device on its own address (or any free loopback port);
//! [`SimPlant::serve_buses`] serves each serial bus on one pseudo-terminal,
//! its Modbus units and DL/T 645 meters side by side, as they share an
//! RS-485 pair; [`SimPlant::tick`] sets every Modbus point to its value at
//! the time since the plant was made. A meter's values are set at the
//! moment each request reaches it (a meter's register has a value at every
//! instant), from the same dynamics.
//!
//! Fault knobs of DL/T 645 meters (`MeterFaults`) are set in code; a
//! `faults` table on a meter's `[device.sim]` is refused with a clear error,
//! since its keys are those of a Modbus device.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use spindle_config::model::{Config, DeviceLink};

use super::config::SimDeviceConfig;
use super::device::{Faults, SimDevice};
use super::dlt645::{SimBus, SimMeter};
use super::dynamics::Sampler;
use super::tcp::SimTcpServer;
use crate::dlt645::{Address, Di};
use crate::modbus::decode::RawValue;

/// Where [`SimPlant::serve_tcp`] listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpPlacement {
    /// On each device's `sim.listen`, else its `tcp` address.
    AsConfigured,
    /// On a free port of 127.0.0.1.
    AnyLoopbackPort,
}

/// A TCP device being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedTcp {
    pub device: String,
    pub address: SocketAddr,
    pub unit: u8,
}

/// A serial bus being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedBus {
    pub bus: String,
    /// The pseudo-terminal a client opens.
    pub path: String,
    /// Its devices, as `name (unit N)` or `name (meter DIGITS)`.
    pub devices: Vec<String>,
}

/// What a device is in the plant.
enum Kind {
    Modbus {
        device: SimDevice,
        samplers: Vec<Sampler>,
    },
    Meter {
        address: Address,
        /// Each point's identifier and value generator.
        points: Vec<(Di, Sampler)>,
    },
}

struct Entry {
    name: String,
    link: DeviceLink,
    listen: Option<String>,
    unit: u8,
    kind: Kind,
}

/// See the module doc.
pub struct SimPlant {
    entries: Vec<Entry>,
    started: Instant,
    started_at: SystemTime,
    tcp: Vec<SimTcpServer>,
    #[cfg(unix)]
    buses: Vec<(String, super::SimPtyServer)>,
}

impl std::fmt::Debug for SimPlant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlant")
            .field("devices", &self.entries.len())
            .field("tcp", &self.tcp.len())
            .finish_non_exhaustive()
    }
}

/// A meter register's value from a point's raw value.
fn register(raw: &RawValue) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // as a reader decodes it
    match raw {
        RawValue::Float(value) => Some(*value),
        RawValue::Unsigned(value) => Some(*value as f64),
        RawValue::Signed(value) => Some(*value as f64),
        RawValue::Bool(value) => Some(f64::from(u8::from(*value))),
        RawValue::Text(_) => None,
    }
}

impl SimPlant {
    /// The devices of `config`, each with its checked `[device.sim]`
    /// (`sims`, one per device, as `sim::config::sim_device` gives them).
    /// Errors: a DL/T 645 meter with Modbus fault knobs, an address that is
    /// no meter address.
    pub fn new(config: &Config, sims: Vec<SimDeviceConfig>) -> Result<Self, Vec<String>> {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for sim in sims {
            let Some(device) = config.devices.iter().find(|d| d.name == sim.device) else {
                errors.push(format!("device {:?} is not in the file", sim.device));
                continue;
            };
            let kind = if let Some(meter) = config.dlt645_device(&device.name) {
                // (The faults' seed comes from the device's seed, faults or not.)
                let knobs = Faults {
                    seed: 0,
                    ..sim.faults.clone()
                };
                if knobs != Faults::default() {
                    errors.push(format!(
                        "device {:?}: [device.sim] faults are Modbus fault knobs; a DL/T 645 meter takes none",
                        device.name
                    ));
                    continue;
                }
                let Ok(address) = Address::parse(&meter.meter) else {
                    errors.push(format!(
                        "device {:?}: {:?} is no meter address",
                        device.name, meter.meter
                    ));
                    continue;
                };
                let points = sim
                    .points
                    .into_iter()
                    .filter_map(|point| {
                        let di = meter.di.get(&point.point.name)?;
                        Some((Di(*di), Sampler::new(point)))
                    })
                    .collect();
                Kind::Meter { address, points }
            } else {
                let modbus = SimDevice::new([device.unit]);
                modbus.set_faults(sim.faults.clone());
                Kind::Modbus {
                    device: modbus,
                    samplers: sim.points.into_iter().map(Sampler::new).collect(),
                }
            };
            entries.push(Entry {
                name: device.name.clone(),
                link: device.link.clone(),
                listen: sim.listen,
                unit: device.unit,
                kind,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut plant = SimPlant {
            entries,
            started: Instant::now(),
            started_at: SystemTime::now(),
            tcp: Vec::new(),
            #[cfg(unix)]
            buses: Vec::new(),
        };
        plant.tick();
        Ok(plant)
    }

    /// When the plant was made: the dynamics' time zero.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How many devices the plant has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The simulated Modbus device `name` (to change faults while served).
    pub fn device(&self, name: &str) -> Option<&SimDevice> {
        self.entries.iter().find_map(|entry| match &entry.kind {
            Kind::Modbus { device, .. } if entry.name == name => Some(device),
            _ => None,
        })
    }

    /// Serve every TCP device (inside a tokio runtime).
    pub async fn serve_tcp(&mut self, placement: TcpPlacement) -> Result<Vec<ServedTcp>, String> {
        let mut served = Vec::new();
        for entry in &self.entries {
            let (DeviceLink::Tcp(address), Kind::Modbus { device, .. }) =
                (&entry.link, &entry.kind)
            else {
                continue;
            };
            let address = match placement {
                TcpPlacement::AsConfigured => entry.listen.clone().unwrap_or(address.clone()),
                TcpPlacement::AnyLoopbackPort => "127.0.0.1:0".to_owned(),
            };
            let resolved = tokio::net::lookup_host(&address)
                .await
                .map_err(|e| format!("device {:?}: cannot resolve {address}: {e}", entry.name))?
                .next()
                .ok_or_else(|| {
                    format!("device {:?}: {address} resolves to no address", entry.name)
                })?;
            let listener = SimTcpServer::bind(device.clone(), resolved)
                .await
                .map_err(|e| format!("device {:?}: cannot listen on {address}: {e}", entry.name))?;
            served.push(ServedTcp {
                device: entry.name.clone(),
                address: listener.local_addr(),
                unit: entry.unit,
            });
            self.tcp.push(listener);
        }
        Ok(served)
    }

    /// Serve every serial bus of `config` that has devices on one
    /// pseudo-terminal (inside a tokio runtime), with the bus's line timing
    /// when `line_timing`.
    #[cfg(unix)]
    pub fn serve_buses(
        &mut self,
        config: &Config,
        line_timing: bool,
    ) -> Result<Vec<ServedBus>, String> {
        let mut served = Vec::new();
        for bus in &config.serial {
            let link = DeviceLink::Serial(bus.name.clone());
            let mut devices = Vec::new();
            let mut meters = Vec::new();
            let mut names = Vec::new();
            let mut moving: Vec<(usize, Vec<(Di, Sampler)>)> = Vec::new();
            for entry in self.entries.iter().filter(|entry| entry.link == link) {
                match &entry.kind {
                    Kind::Modbus { device, .. } => {
                        devices.push(device.clone());
                        names.push(format!("{} (unit {})", entry.name, entry.unit));
                    }
                    Kind::Meter { address, points } => {
                        let mut meter = SimMeter::new(*address);
                        for (di, sampler) in points {
                            if let Some(value) =
                                register(&sampler.sim.raw_at(self.started.elapsed()))
                            {
                                meter.set(*di, value);
                            }
                        }
                        moving.push((meters.len(), points.clone()));
                        meters.push(meter);
                        names.push(format!("{} (meter {address})", entry.name));
                    }
                }
            }
            if names.is_empty() {
                continue;
            }
            let timing = line_timing.then_some((bus, Duration::ZERO));
            let pty = super::SimPtyServer::open_bus(devices, meters, timing)
                .map_err(|e| format!("bus {:?}: cannot open a pseudo-terminal: {e}", bus.name))?;
            if !moving.is_empty() {
                set_before_answer(pty.meters(), moving, self.started);
            }
            served.push(ServedBus {
                bus: bus.name.clone(),
                path: pty.path().to_owned(),
                devices: names,
            });
            self.buses.push((bus.name.clone(), pty));
        }
        Ok(served)
    }

    /// Serial buses are simulated on pseudo-terminals, which need Unix.
    #[cfg(not(unix))]
    pub fn serve_buses(
        &mut self,
        config: &Config,
        _line_timing: bool,
    ) -> Result<Vec<ServedBus>, String> {
        if config.serial.is_empty() {
            Ok(Vec::new())
        } else {
            Err("serial buses are simulated on pseudo-terminals, which need a Unix system".into())
        }
    }

    /// The pseudo-terminal server of bus `name`, once served (its
    /// [`super::SimPtyServer::meters`] change meters' faults while served).
    #[cfg(unix)]
    pub fn bus(&self, name: &str) -> Option<&super::SimPtyServer> {
        self.buses
            .iter()
            .find(|(bus, _)| bus == name)
            .map(|(_, pty)| pty)
    }

    /// Set every Modbus point to its value at the time since the plant was
    /// made (meters are set at each request).
    pub fn tick(&mut self) {
        let elapsed = self.started.elapsed();
        for entry in &mut self.entries {
            let Kind::Modbus { device, samplers } = &mut entry.kind else {
                continue;
            };
            for sampler in samplers {
                let raw = sampler.raw_at(elapsed);
                if let Err(error) = device.set_point(&sampler.sim.point, &raw) {
                    tracing::debug!(
                        device = %entry.name,
                        point = %sampler.sim.point.name,
                        %error,
                        "Simulated value does not fit its point."
                    );
                }
            }
        }
    }

    /// Stop serving (the pseudo-terminals vanish for their clients).
    pub fn stop(&mut self) {
        self.tcp.clear();
        #[cfg(unix)]
        self.buses.clear();
    }
}

/// Every meter of a bus set from its dynamics at the moment of a request.
#[cfg(unix)]
fn set_before_answer(
    bus: &Arc<Mutex<SimBus>>,
    moving: Vec<(usize, Vec<(Di, Sampler)>)>,
    started: Instant,
) {
    let mut moving = moving;
    let before = move |meters: &mut [SimMeter]| {
        let elapsed = started.elapsed();
        for (index, points) in &mut moving {
            let Some(meter) = meters.get_mut(*index) else {
                continue;
            };
            for (di, sampler) in points.iter_mut() {
                if let Some(value) = register(&sampler.raw_at(elapsed)) {
                    meter.set(*di, value);
                }
            }
        }
    };
    bus.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .before_answer = Some(Box::new(before));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::sim_device;

    const PLANT: &str = r#"
[agent]
id = "gw"
site = "s"
data_dir = "/tmp/x"
timezone = "UTC"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[serial]]
name = "bus"
port = "/dev/ttyS1"
baud = 9600
parity = "even"
[[device]]
name = "mains"
serial = "bus"
protocol = "dlt645"
meter = "000012345678"
[[device.point]]
name = "energy"
di = "00010000"
counter = true
[device.sim]
seed = 3
points.energy = { counter = { rate = 1.0, start = 10 } }
"#;

    fn plant(extra: &str) -> Result<SimPlant, Vec<String>> {
        let text = format!("{PLANT}{extra}");
        let parsed = spindle_config::parse_with(
            "p.toml",
            &text,
            spindle_config::ParseOptions { allow_sim: true },
        )
        .unwrap();
        let sims = parsed
            .config
            .devices
            .iter()
            .map(|device| sim_device(device, parsed.sim.get(&device.name)).unwrap())
            .collect();
        SimPlant::new(&parsed.config, sims)
    }

    #[test]
    fn a_meter_with_a_seed_is_built_and_one_with_modbus_fault_knobs_is_refused() {
        let built = plant("").unwrap();
        assert_eq!(built.len(), 1);
        assert!(
            built.device("mains").is_none(),
            "a meter is no Modbus device"
        );
        let errors = plant("faults.down = true\n").unwrap_err();
        assert_eq!(
            errors,
            [
                "device \"mains\": [device.sim] faults are Modbus fault knobs; a DL/T 645 meter takes none"
            ]
        );
    }
}
