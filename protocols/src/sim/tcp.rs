//! Serving a simulated device over Modbus TCP.
//!
//! [`SimTcpServer`] binds a listener (tests use `127.0.0.1:0` and read the
//! bound address back), serves it with tokio-modbus's TCP server in a
//! supervised task (restarted if it ever returns), and can be stopped and
//! restarted on the same address to play a device that goes away: while it
//! is stopped, connections are refused and open ones are closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::device::SimDevice;

/// A simulated device served on a TCP port.
#[derive(Debug)]
pub struct SimTcpServer {
    device: SimDevice,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl SimTcpServer {
    /// Serve `device` on `addr` (port 0: any free port).
    pub async fn bind(device: SimDevice, addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = Some(tokio::spawn(serve(device.clone(), listener)));
        Ok(Self { device, addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn device(&self) -> &SimDevice {
        &self.device
    }

    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Stop listening and close every connection (the device is gone).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listen again on the same address.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.addr).await?;
        self.task = Some(tokio::spawn(serve(self.device.clone(), listener)));
        Ok(())
    }
}

impl Drop for SimTcpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve until aborted; tokio-modbus's server returns only when `accept`
/// fails (e.g. out of file descriptors): then pause and serve again.
async fn serve(device: SimDevice, listener: TcpListener) {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, _peer: SocketAddr| {
        let service = device.service();
        async move { Ok(Some((service, stream))) }
    };
    loop {
        let on_error = |error: io::Error| {
            tracing::debug!(%error, "Simulated device closed a connection.");
        };
        if let Err(error) = server.serve(&on_connected, on_error).await {
            tracing::warn!(%error, "Simulated TCP device stopped accepting; serving again.");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
