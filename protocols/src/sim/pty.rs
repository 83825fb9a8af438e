//! Serving simulated devices over Modbus RTU on a pseudo-terminal.
//!
//! [`SimPtyServer`] opens a pseudo-terminal pair. The simulator keeps the
//! master side and serves it with tokio-modbus's RTU server; a client opens
//! the slave side by its path ([`SimPtyServer::path`]) like a real serial
//! port. Several devices (unit ids) may share one pseudo-terminal, as they
//! share an RS-485 bus: each answers only its own unit ids.
//!
//! Invariants and the quirks they handle:
//! * the simulator also holds the slave side open, so the master never reads
//!   EIO while no client has the port open (a closed peer reads as EIO);
//! * tokio-modbus's RTU server stops on the first frame it cannot decode, and
//!   takes the stream by value: each run gets a duplicate of the master, and
//!   a supervisor starts a new run when one ends; the original master stays
//!   open throughout, so the path stays valid;
//! * `SerialStream::pair()` has no line timing and ignores parity: timing and
//!   parity are not simulated.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serialport::{SerialPort as _, TTYPort};
use tokio::task::JoinHandle;
use tokio_modbus::{Response, SlaveRequest, server::Service};
use tokio_serial::SerialStream;

use super::device::{RawWriter, SimDevice, SimService};

/// Simulated devices on a pseudo-terminal.
#[derive(Debug)]
pub struct SimPtyServer {
    path: String,
    task: JoinHandle<()>,
    /// Held so that the master never sees EIO between clients.
    _slave: TTYPort,
}

impl SimPtyServer {
    /// Serve `devices` on a new pseudo-terminal (inside a tokio runtime).
    pub fn open(devices: Vec<SimDevice>) -> io::Result<Self> {
        let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
        let path = slave
            .name()
            .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
        let raw: RawWriter = Arc::new(Mutex::new(Box::new(
            master.try_clone_native().map_err(io::Error::from)?,
        )));
        let task = tokio::spawn(supervise(master, devices, raw));
        Ok(Self {
            path,
            task,
            _slave: slave,
        })
    }

    /// The path a client opens (`/dev/pts/N`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for SimPtyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run tokio-modbus's RTU server on duplicates of `master` until aborted.
async fn supervise(master: TTYPort, devices: Vec<SimDevice>, raw: RawWriter) {
    let services: Vec<SimService> = devices
        .into_iter()
        .map(|device| SimService::with_raw(device, Arc::clone(&raw)))
        .collect();
    loop {
        let stream = master
            .try_clone_native()
            .and_then(SerialStream::try_from)
            .map_err(io::Error::from);
        match stream {
            Ok(stream) => {
                let server = tokio_modbus::server::rtu::Server::new(stream);
                match server.serve_forever(Bus(services.clone())).await {
                    Ok(()) => tracing::debug!("Simulated RTU line ended; serving again."),
                    Err(error) => {
                        tracing::debug!(%error, "Simulated RTU server stopped; serving again.");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Simulator cannot use its pseudo-terminal; retrying.");
            }
        }
        // Do not spin if the line keeps failing.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Several devices on one line: the first that answers for the unit id does.
#[derive(Debug, Clone)]
struct Bus(Vec<SimService>);

impl Service for Bus {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = tokio_modbus::ExceptionCode;
    type Future = <SimService as Service>::Future;

    fn call(&self, request: Self::Request) -> Self::Future {
        let owner = self
            .0
            .iter()
            .find(|service| service.device().units().contains(&request.slave))
            .or_else(|| self.0.first());
        match owner {
            Some(service) => service.call(request),
            None => Box::pin(async { Ok(None) }),
        }
    }
}
