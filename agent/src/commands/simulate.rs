//! `spindle simulate -c FILE [--pty-link [BUS=]PATH]... [--for SECONDS]`:
//! serve the configured devices as simulators, for integrators and tests.
//!
//! The file is a normal configuration whose devices may carry a
//! `[device.sim]` table (schema: `spindle_protocols::sim::config`). Every TCP
//! device is served on its `tcp` address (or its `sim.listen`); every serial
//! bus gets one pseudo-terminal with all its devices on it. A bus's
//! pseudo-terminal is linked (a symlink) at the `--pty-link` path given for
//! it, or else at the bus's own `port` when that port lies outside `/dev`
//! (so `port = "/tmp/spindle-rs485-1"` in the file makes the link the agent's
//! configuration opens). Links are replaced when stale and removed on exit.
//! A bus's Modbus units and DL/T 645 meters (`protocol = "dlt645"`) share
//! its pseudo-terminal, as they share an RS-485 pair; the plant is
//! `spindle_protocols::sim::SimPlant`.
//!
//! `--line-timing` gives each pseudo-terminal the timing of its bus (baud
//! rate, character format), as a real RS-485 line has.
//!
//! An update task sets every Modbus point from its dynamics every 100 ms,
//! from the formulas of `spindle_protocols::sim::dynamics` at the time since
//! start; a meter's values are set from the same formulas at each request.
//!
//! Exit 1 for a bad config or arguments (every error listed, with the file
//! position), 2 when an address cannot be bound or a pseudo-terminal opened,
//! 0 after Ctrl-C, SIGTERM or `--for`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spindle_config::model::{Config, DeviceLink};
use spindle_config::{ParseOptions, Parsed};
use spindle_protocols::sim::config::{SimDeviceConfig, locate, sim_device};
use spindle_protocols::sim::{SimPlant, TcpPlacement};

use crate::cli::{EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME};

/// How often every point's value is recomputed.
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (devices, with optional `[device.sim]` tables).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Make a symlink to a bus's pseudo-terminal: `BUS=PATH`, or `PATH` when
    /// the file has one serial bus. Repeatable.
    #[arg(long = "pty-link", value_name = "[BUS=]PATH")]
    pub pty_links: Vec<String>,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long = "for", value_name = "SECONDS")]
    pub run_for: Option<f64>,
    /// Give each bus's pseudo-terminal the line timing of its baud rate and
    /// character format (frames take their on-wire time, answers come after
    /// the silent interval), so a bus's load is as on a real RS-485 line.
    #[arg(long)]
    pub line_timing: bool,
}

/// How to serve.
#[derive(Debug, Clone, Copy)]
struct ServeOptions {
    run_for: Option<Duration>,
    line_timing: bool,
}

pub fn run(args: &Args) -> u8 {
    let parsed = match spindle_config::load_with(&args.config, ParseOptions { allow_sim: true }) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return EXIT_BAD_INPUT;
        }
    };
    let sims = match sim_configs(&args.config, &parsed) {
        Ok(sims) => sims,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) in {}", errors.len(), args.config.display());
            return EXIT_BAD_INPUT;
        }
    };
    let links = match pty_links(&parsed.config, &args.pty_links) {
        Ok(links) => links,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    if let Err(message) = check_addresses(&parsed.config, &sims) {
        eprintln!("error: {message}");
        return EXIT_BAD_INPUT;
    }
    let run_for = match super::run_for(args.run_for) {
        Ok(run_for) => run_for,
        Err(code) => return code,
    };
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let options = ServeOptions {
        run_for,
        line_timing: args.line_timing,
    };
    runtime.block_on(serve(&parsed.config, sims, &links, options))
}

/// Every device's sim config, or every error with its file position.
fn sim_configs(path: &Path, parsed: &Parsed) -> Result<Vec<SimDeviceConfig>, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut sims = Vec::new();
    let mut errors = Vec::new();
    for device in &parsed.config.devices {
        match sim_device(device, parsed.sim.get(&device.name)) {
            Ok(sim) => sims.push(sim),
            Err(found) => {
                errors.extend(found.into_iter().map(|error| match locate(&text, &error) {
                    Some((line, column)) => {
                        format!("{}:{line}:{column}: {error}", path.display())
                    }
                    None => format!("{}: {error}", path.display()),
                }));
            }
        }
    }
    if errors.is_empty() {
        Ok(sims)
    } else {
        Err(errors)
    }
}

/// The link path of each serial bus that gets one.
fn pty_links(config: &Config, given: &[String]) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut links = BTreeMap::new();
    for link in given {
        let (bus, path) = match link.split_once('=') {
            Some((bus, path)) => (bus.to_owned(), path),
            None => match config.serial.as_slice() {
                [only] => (only.name.clone(), link.as_str()),
                buses => {
                    return Err(format!(
                        "--pty-link {link}: the file has {} serial buses; write BUS=PATH",
                        buses.len()
                    ));
                }
            },
        };
        if !config.serial.iter().any(|serial| serial.name == bus) {
            let names: Vec<&str> = config.serial.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--pty-link {link}: no serial bus {bus:?}; the file has: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        }
        if path.is_empty() {
            return Err(format!("--pty-link {link}: the path is empty"));
        }
        if links.insert(bus.clone(), PathBuf::from(path)).is_some() {
            return Err(format!("--pty-link: bus {bus:?} is linked twice"));
        }
    }
    for serial in &config.serial {
        if !links.contains_key(&serial.name) && !serial.port.starts_with("/dev/") {
            links.insert(serial.name.clone(), PathBuf::from(&serial.port));
        }
    }
    Ok(links)
}

/// Where a TCP device is served.
fn listen_address(config: &Config, sim: &SimDeviceConfig) -> Option<String> {
    let device = config.devices.iter().find(|d| d.name == sim.device)?;
    match &device.link {
        DeviceLink::Tcp(address) => Some(sim.listen.clone().unwrap_or_else(|| address.clone())),
        DeviceLink::Serial(_) => None,
    }
}

/// Two TCP devices on one address cannot both be served.
fn check_addresses(config: &Config, sims: &[SimDeviceConfig]) -> Result<(), String> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for sim in sims {
        let Some(address) = listen_address(config, sim) else {
            continue;
        };
        if address.ends_with(":0") {
            continue;
        }
        if let Some(first) = seen.insert(address.clone(), &sim.device) {
            return Err(format!(
                "devices {first:?} and {:?} would both be served on {address}; give one a `listen` in its [device.sim]",
                sim.device
            ));
        }
    }
    Ok(())
}

async fn serve(
    config: &Config,
    sims: Vec<SimDeviceConfig>,
    links: &BTreeMap<String, PathBuf>,
    options: ServeOptions,
) -> u8 {
    let mut plant = match SimPlant::new(config, sims) {
        Ok(plant) => plant,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {}: {error}", config.source.display());
            }
            return EXIT_BAD_INPUT;
        }
    };
    let mut out = String::new();
    match plant.serve_tcp(TcpPlacement::AsConfigured).await {
        Ok(served) => {
            for tcp in served {
                let _ = writeln!(
                    out,
                    "tcp {} {} (unit {})",
                    tcp.address, tcp.device, tcp.unit
                );
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_RUNTIME;
        }
    }
    let made_links = match open_buses(config, &mut plant, links, options.line_timing, &mut out) {
        Ok(made) => made,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_RUNTIME;
        }
    };
    // Signal handlers first: a SIGTERM right after the line below must stop
    // the simulator cleanly (its links removed), not kill it.
    let stop = crate::runtime::wait_for_stop(options.run_for);
    print!("{out}");
    println!(
        "Simulating {} device(s) from {}; Ctrl-C stops.",
        plant.len(),
        config.source.display()
    );
    let _ = std::io::stdout().flush();
    tracing::info!(devices = plant.len(), "Simulator started.");

    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => plant.tick(),
        }
    }
    for path in &made_links {
        remove_link(path);
    }
    plant.stop();
    tracing::info!("Simulator stopped.");
    EXIT_OK
}

/// One pseudo-terminal per serial bus with devices (Modbus units and DL/T
/// 645 meters side by side); the links made.
fn open_buses(
    config: &Config,
    plant: &mut SimPlant,
    links: &BTreeMap<String, PathBuf>,
    line_timing: bool,
    out: &mut String,
) -> Result<Vec<PathBuf>, String> {
    let served = plant.serve_buses(config, line_timing)?;
    let mut made: Vec<PathBuf> = Vec::new();
    for bus in served {
        let devices = bus.devices.join(", ");
        if let Some(link) = links.get(&bus.bus) {
            if let Err(message) = make_link(Path::new(&bus.path), link) {
                for path in &made {
                    remove_link(path);
                }
                return Err(format!("bus {:?}: {message}", bus.bus));
            }
            made.push(link.clone());
            let _ = writeln!(
                out,
                "pty {} -> {} bus {}: {devices}",
                link.display(),
                bus.path,
                bus.bus
            );
        } else {
            let _ = writeln!(out, "pty {} bus {}: {devices}", bus.path, bus.bus);
        }
    }
    Ok(made)
}

/// A symlink at `link` to `target`, replacing a stale symlink (never a file).
#[cfg(unix)]
fn make_link(target: &Path, link: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::remove_file(link)
                .map_err(|e| format!("cannot replace the old link {}: {e}", link.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a symlink; not replacing it",
                link.display()
            ));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).map_err(|e| {
        format!(
            "cannot link {} to {}: {e}",
            link.display(),
            target.display()
        )
    })
}

#[cfg(not(unix))]
fn make_link(_target: &Path, link: &Path) -> Result<(), String> {
    Err(format!(
        "cannot link {}: symlinks need a Unix system",
        link.display()
    ))
}

/// Remove a link this process made (if it is still a symlink).
fn remove_link(link: &Path) {
    let is_link = std::fs::symlink_metadata(link).is_ok_and(|meta| meta.file_type().is_symlink());
    if is_link {
        if let Err(error) = std::fs::remove_file(link) {
            tracing::warn!(link = %link.display(), %error, "Cannot remove the pseudo-terminal link.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_BUSES: &str = r#"
[agent]
id = "gw"
site = "s"
data_dir = "/tmp/x"
timezone = "UTC"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[serial]]
name = "a"
port = "/dev/ttyS1"
baud = 9600
parity = "none"
[[serial]]
name = "b"
port = "/tmp/spindle-b"
baud = 9600
parity = "none"
"#;

    fn config() -> Config {
        spindle_config::parse("t.toml", TWO_BUSES).unwrap()
    }

    #[test]
    fn a_bare_link_path_needs_a_single_bus() {
        let error = pty_links(&config(), &["/tmp/x".into()]).unwrap_err();
        assert!(error.contains("write BUS=PATH"), "{error}");
        let error = pty_links(&config(), &["c=/tmp/x".into()]).unwrap_err();
        assert!(error.contains("no serial bus \"c\""), "{error}");
    }

    #[test]
    fn a_bus_port_outside_dev_is_its_default_link() {
        let links = pty_links(&config(), &["a=/tmp/link-a".into()]).unwrap();
        assert_eq!(links["a"], PathBuf::from("/tmp/link-a"));
        assert_eq!(links["b"], PathBuf::from("/tmp/spindle-b"));
        let links = pty_links(&config(), &[]).unwrap();
        assert!(!links.contains_key("a"), "never a link under /dev");
    }
}
