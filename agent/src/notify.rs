//! systemd integration for `Type=notify` units: `READY=1` once the agent is
//! running, `WATCHDOG=1` while its tasks make progress, `STOPPING=1` on the
//! way out. Without `NOTIFY_SOCKET` (not under systemd) every call is a
//! no-op. The protocol is one datagram per message on a Unix socket, so no
//! library is needed.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A handle on systemd's notification socket, if there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty())
            .and_then(|path| UnixDatagram::unbound().ok().map(|s| (s, path)));
        Notifier { socket }
    }

    /// Sends one notification; failures are ignored (systemd may be gone).
    pub fn notify(&self, message: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        if let Some(name) = path.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            {
                use std::os::linux::net::SocketAddrExt as _;
                if let Ok(addr) =
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                {
                    let _ = socket.send_to_addr(message.as_bytes(), &addr);
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = name;
        } else {
            let _ = socket.send_to(message.as_bytes(), path);
        }
    }

    /// How often to feed the watchdog (half of `WATCHDOG_USEC`), if enabled.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_arrive_on_the_socket_named_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), path.display().to_string())),
        };
        notifier.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn without_a_socket_notifying_does_nothing() {
        Notifier { socket: None }.notify("READY=1");
    }
}
