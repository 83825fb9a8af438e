//! The `spindle` command line: parses arguments and runs one command.

use std::process::ExitCode;

use clap::Parser;
use spindle::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not mistakes.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    spindle::cli::init_logging(cli.log_format);
    ExitCode::from(spindle::cli::run(cli))
}
