//! One module per subcommand; each exposes `Args` (clap) and `run` (→ exit code).

pub mod check;
pub mod demo;
pub mod profiles;
pub mod read;
pub mod run;
pub mod scan;
pub mod simulate;
