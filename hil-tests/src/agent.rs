//! The real `spindle` binary, run as a child process.
//!
//! Finds the binary next to the test executable (cargo puts integration test
//! executables in `target/<profile>/deps/` and binaries in
//! `target/<profile>/`), building it first if it is missing.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the `spindle` binary of this build.
pub fn spindle_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(PathBuf::from)
            .unwrap_or_default();
        let bin = profile_dir.join("spindle");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let _ = Command::new(cargo)
                .args(["build", "-p", "spindle", "--bin", "spindle"])
                .status();
        }
        bin
    })
    .clone()
}

/// Runs `spindle` with `args` to completion.
pub fn run_spindle(args: &[&str]) -> std::io::Result<Output> {
    Command::new(spindle_bin()).args(args).output()
}
