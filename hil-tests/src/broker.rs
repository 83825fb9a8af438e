//! A mosquitto broker started by a test on a free loopback port.
//!
//! Owns the child process and its config/persistence folder. The broker can
//! be stopped and started again on the same port (to test reconnects), with
//! or without persistence. Dropping the [`Broker`] kills the process.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) mosquitto owned by a test.
#[derive(Debug)]
pub struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    persistence: bool,
    /// More configuration lines (extra listeners, TLS).
    extra: String,
    child: Option<Child>,
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Blocks until something accepts TCP connections on `addr`, or `limit` passes.
pub fn wait_for_listener(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Broker {
    /// Starts mosquitto on a free loopback port.
    pub fn start(persistence: bool) -> io::Result<Broker> {
        Broker::start_with(persistence, "")
    }

    /// Starts mosquitto with `extra` configuration lines after the plain
    /// loopback listener (e.g. a TLS listener on another free port).
    pub fn start_with(persistence: bool, extra: &str) -> io::Result<Broker> {
        let dir = tempfile::tempdir()?;
        let mut broker = Broker {
            port: free_port()?,
            dir,
            persistence,
            extra: extra.to_owned(),
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker again on the same port with other `extra`
    /// configuration lines (e.g. without the password file that refused a client).
    pub fn reconfigure(&mut self, extra: &str) -> io::Result<()> {
        extra.clone_into(&mut self.extra);
        self.restart()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// Starts the broker again on the same port (after [`Broker::stop`]).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let conf = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence {p}\npersistence_location {dir}/\n\
             max_inflight_messages 0\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n",
            port = self.port,
            p = self.persistence,
            dir = self.dir.path().display(),
        ) + &self.extra;
        std::fs::write(self.config_path(), conf)?;
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        self.child = Some(child);
        wait_for_listener(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        )
    }

    /// Kills the broker (SIGKILL: nothing is saved beyond what persistence already wrote).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mosquitto_path() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("mosquitto")
}

impl Broker {
    /// SIGTERM and wait: mosquitto saves its persistence database on the way out.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker freezes (neither acknowledges nor forwards) until [`Broker::resume`] or a kill.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-STOP")
                .arg(child.id().to_string())
                .status();
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
    }
}
