//! One module per subcommand; each exposes `Args` (clap) and `run` (→ exit code).

pub mod check;
pub mod demo;
pub mod history;
pub mod profiles;
pub mod read;
pub mod run;
pub mod scan;
pub mod simulate;

use std::time::Duration;

use crate::cli::{EXIT_BAD_INPUT, EXIT_RUNTIME};

/// The single-threaded tokio runtime every command runs on (a gateway has
/// one or two cores; blocking work goes to tokio's blocking pool), or the
/// exit code after saying why it could not start.
pub(crate) fn current_thread_runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            EXIT_RUNTIME
        })
}

/// `--for SECONDS` as a duration, or the exit code after saying it is not one.
pub(crate) fn run_for(seconds: Option<f64>) -> Result<Option<Duration>, u8> {
    seconds
        .map(Duration::try_from_secs_f64)
        .transpose()
        .map_err(|_| {
            eprintln!("error: --for takes a number of seconds ≥ 0");
            EXIT_BAD_INPUT
        })
}
