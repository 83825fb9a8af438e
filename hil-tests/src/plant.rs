//! Simulated devices for end-to-end tests, served on real TCP sockets on
//! 127.0.0.1 from a tokio runtime owned by the [`Plant`], plus the matching
//! config text.

use std::fmt::Write as _;

use spindle_config::model::Area;
use spindle_protocols::sim::{SimDevice, SimTcpServer};

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
