//! `spindle profiles`: the built-in device profiles and their points.

use crate::cli::EXIT_OK;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> u8 {
    print!("{}", spindle_config::profiles::describe_all());
    EXIT_OK
}
