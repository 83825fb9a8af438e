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

/// Wall-clock Unix milliseconds (the agent stamps windows with the same clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sleeps until the wall clock reaches `target` ms (a test following its
/// plant's script); returns at once when it has passed.
pub fn sleep_until_ms(target: u64) {
    let now = now_ms();
    if target > now {
        std::thread::sleep(std::time::Duration::from_millis(target - now));
    }
}

/// The energy counters of the KPI tests' simulated meters, by formula, so
/// every window has an exact truth: an electricity counter (u32, raw ×
/// 1000 kWh) that wraps and is reset, and a gas counter (u16, raw × 100 m³)
/// that wraps.
#[derive(Debug, Clone, Copy)]
pub struct CounterScript {
    /// Raw electricity units per second.
    pub e_rate: f64,
    /// Raw electricity reading at `t = 0` (below the u32 wrap).
    pub e_start: f64,
    /// When the electricity counter is reset to 0 (s).
    pub e_reset_s: f64,
    /// Raw gas units per second.
    pub g_rate: f64,
    /// Raw gas reading at `t = 0`.
    pub g_start: f64,
}

impl CounterScript {
    /// Electricity counter (raw, before wrapping) at `t` seconds.
    pub fn e_raw(&self, t: f64) -> f64 {
        if t < self.e_reset_s {
            self.e_start + self.e_rate * t
        } else {
            self.e_rate * (t - self.e_reset_s)
        }
    }

    /// The electricity meter's two u32 registers (high word first) at `t`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn e_registers(&self, t: f64) -> [u16; 2] {
        let e = (self.e_raw(t).floor() as u64 % (1 << 32)) as u32;
        [(e >> 16) as u16, (e & 0xffff) as u16]
    }

    /// The gas meter's u16 register at `t`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn g_register(&self, t: f64) -> u16 {
        ((self.g_start + self.g_rate * t).floor() as u64 % (1 << 16)) as u16
    }
}

/// The KPI windows received on topics ending in `topic_end`, by window
/// start; an error when one window came with two different seqs (published
/// twice rather than resent).
pub fn kpi_windows(
    messages: &[crate::subscriber::Message],
    topic_end: &str,
) -> Result<std::collections::BTreeMap<u64, serde_json::Value>, String> {
    let mut out = std::collections::BTreeMap::new();
    for m in messages.iter().filter(|m| m.topic.ends_with(topic_end)) {
        let v = m.json();
        let start = v
            .get("window")
            .and_then(|w| w.get("start"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("a window without a start: {v}"))?;
        if let Some(previous) = out.get(&start) {
            let previous: &serde_json::Value = previous;
            if previous.get("seq") != v.get("seq") {
                return Err(format!(
                    "window {start} published twice: {previous} and {v}"
                ));
            }
        }
        out.insert(start, v);
    }
    Ok(out)
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
