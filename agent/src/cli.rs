//! Command-line arguments (SPEC §2) and dispatch to `commands`.
//!
//! Exit codes: 0 ok, 1 bad config or input, 2 runtime failure.

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: bad configuration or input.
pub const EXIT_BAD_INPUT: u8 = 1;
/// Exit code: runtime failure (no answer, data dir not writable, …).
pub const EXIT_RUNTIME: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "spindle",
    version,
    about = "Edge agent for factory equipment telemetry: Modbus in, plant KPIs and MQTT out"
)]
pub struct Cli {
    /// Log line format (logs go to stderr; `RUST_LOG` filters them).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (foreground; logs to stderr).
    Run(commands::run::Args),
    /// Validate a config; print the read plan per device and the load of every serial bus.
    Check(commands::check::Args),
    /// One-off read of registers or bits, for commissioning.
    Read(commands::read::Args),
    /// List the built-in device profiles and their points.
    Profiles(commands::profiles::Args),
    /// Serve simulated devices (TCP and pseudo-terminals) from a config's `[device.sim]` tables.
    Simulate(commands::simulate::Args),
    /// Find which unit ids answer on an RS-485 bus.
    Scan(commands::scan::Args),
    /// First run: a simulated plant, an embedded MQTT broker and the agent, with live KPIs.
    Demo(commands::demo::Args),
    /// Export closed KPI windows from the local history (while the agent runs).
    History(commands::history::Args),
}

/// Sets up the tracing subscriber on stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rumqttd (`spindle demo`'s broker) logs every connection, some as errors.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the command; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => commands::run::run(&args),
        Command::Check(args) => commands::check::run(&args),
        Command::Read(args) => commands::read::run(&args),
        Command::Profiles(args) => commands::profiles::run(&args),
        Command::Simulate(args) => commands::simulate::run(&args),
        Command::Scan(args) => commands::scan::run(&args),
        Command::Demo(args) => commands::demo::run(&args),
        Command::History(args) => commands::history::run(&args),
    }
}
