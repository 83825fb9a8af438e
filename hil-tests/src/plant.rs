//! Simulated devices for end-to-end tests, served on real TCP sockets on
//! 127.0.0.1 from a tokio runtime owned by the [`Plant`], plus the matching
//! config text; [`serve_plant`] serves a plant described by a configuration
//! with `[device.sim]` tables (the `SimPlant` of `spindle simulate`).

use std::fmt::Write as _;

use spindle_config::model::Area;
use spindle_protocols::sim::config::sim_device;
use spindle_protocols::sim::{ServedBus, SimDevice, SimPlant, SimTcpServer};

/// A set of simulated TCP devices, each with ten holding registers.
#[derive(Debug)]
pub struct Plant {
    pub runtime: tokio::runtime::Runtime,
    pub servers: Vec<SimTcpServer>,
}

impl Plant {
    /// `n` devices, unit 1 each, holding registers 0..10 set to `i * 100 + r`.
    pub fn tcp(n: usize) -> std::io::Result<Plant> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut servers = Vec::with_capacity(n);
        for i in 0..n {
            let device = SimDevice::new(vec![1]);
            let values: Vec<u16> = (0..10u16)
                .map(|r| u16::try_from(i).unwrap_or(0) * 100 + r)
                .collect();
            device.set_registers(Area::Holding, 0, &values);
            let server =
                runtime.block_on(SimTcpServer::bind(device, ([127, 0, 0, 1], 0).into()))?;
            servers.push(server);
        }
        Ok(Plant { runtime, servers })
    }

    /// `[[device]]` tables for every device: names `dev0`…, polled every
    /// `poll`, ten u16 points each.
    pub fn devices_toml(&self, poll: &str) -> String {
        let mut out = String::new();
        for (i, server) in self.servers.iter().enumerate() {
            let _ = write!(
                out,
                "\n[[device]]\nname = \"dev{i}\"\ntcp = \"{}\"\nunit = 1\npoll = \"{poll}\"\ntimeout = \"500ms\"\n",
                server.local_addr()
            );
            for r in 0..10 {
                let _ = write!(
                    out,
                    "\n[[device.point]]\nname = \"r{r}\"\narea = \"holding\"\naddress = {r}\ntype = \"u16\"\n"
                );
            }
        }
        out
    }
}

/// An agent config around `devices` (from [`Plant::devices_toml`]).
pub fn agent_toml(mqtt_url: &str, buffer: &str, devices: &str) -> String {
    format!(
        "[agent]\nid = \"gw-1\"\nsite = \"hil\"\ndata_dir = \"{{data_dir}}\"\ntimezone = \"UTC\"\n\n\
         [mqtt]\nurl = \"{mqtt_url}\"\nkeep_alive = \"5s\"\n\n[buffer]\n{buffer}\n{devices}"
    )
}

/// The plant `toml` describes (a configuration whose devices carry
/// `[device.sim]` tables, as `spindle simulate` takes it), its serial buses
/// served on pseudo-terminals from `runtime`: the plant (keep it: dropping
/// it stops serving) and each bus's pseudo-terminal.
pub fn serve_plant(
    runtime: &tokio::runtime::Runtime,
    toml: &str,
) -> Result<(SimPlant, Vec<ServedBus>), String> {
    let parsed = spindle_config::parse_with(
        "plant.toml",
        toml,
        spindle_config::ParseOptions { allow_sim: true },
    )
    .map_err(|errors| format!("{errors:?}"))?;
    let mut sims = Vec::new();
    for device in &parsed.config.devices {
        sims.push(sim_device(device, parsed.sim.get(&device.name)).map_err(|e| format!("{e:?}"))?);
    }
    let mut plant = SimPlant::new(&parsed.config, sims).map_err(|e| e.join("; "))?;
    let _guard = runtime.enter();
    let buses = plant.serve_buses(&parsed.config, false)?;
    Ok((plant, buses))
}
