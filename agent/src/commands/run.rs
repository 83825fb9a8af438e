//! `spindle run -c FILE`: the agent, in the foreground, logging to stderr.
//!
//! Exit 1 for a bad config, 2 when it cannot start (data dir not writable,
//! unreadable password or certificates), 0 after a clean stop on a signal.
//! It never exits because a broker or a device is unreachable.

use std::path::PathBuf;

use crate::cli::{EXIT_BAD_INPUT, EXIT_OK, EXIT_RUNTIME};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long)]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> u8 {
    let config = match spindle_config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return EXIT_BAD_INPUT;
        }
    };
    // One worker thread: a gateway has one or two cores; flushes run on
    // tokio's blocking pool beside it.
    let runtime = match super::current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(crate::runtime::run(config)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start");
            eprintln!("error: {e}");
            EXIT_RUNTIME
        }
    }
}
