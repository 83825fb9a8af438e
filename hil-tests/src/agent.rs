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

/// A `spindle run` child process with its own data directory and config.
#[derive(Debug)]
pub struct AgentProcess {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    /// How many times it was started.
    pub starts: u32,
    env: Vec<(String, String)>,
}

impl AgentProcess {
    /// Writes `config` (with `{data_dir}` replaced by a fresh directory) and starts the agent.
    pub fn start(config: &str) -> std::io::Result<AgentProcess> {
        AgentProcess::start_with_env(config, &[])
    }

    /// Like [`AgentProcess::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> std::io::Result<AgentProcess> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let text = config.replace("{data_dir}", &data.display().to_string());
        std::fs::write(dir.path().join("spindle.toml"), text)?;
        let mut agent = AgentProcess {
            dir,
            child: None,
            starts: 0,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        agent.restart()?;
        Ok(agent)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("spindle.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Path of the agent's log (stderr), appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("spindle.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the agent (again), after it was killed or stopped.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(spindle_bin())
            .arg("run")
            .arg("-c")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("SPINDLE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit
    /// status, or `None` if it had to be killed.
    pub fn terminate(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
