//! A TCP proxy on 127.0.0.1 that a test can close and open: closing cuts
//! every connection through it at once and refuses new ones (accepted, then
//! dropped), so the agent sees its broker vanish while the broker and the
//! test's subscriber stay up. Deafened, it still forwards what the client
//! sends but drops what the target answers (the broker takes publishes,
//! its PUBACKs never arrive) until the next close.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A closable TCP proxy to one target port.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    deaf: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`; starts open or closed.
    pub fn start(target: u16, open: bool) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let open = Arc::new(AtomicBool::new(open));
        let deaf = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (o, s, d) = (open.clone(), streams.clone(), deaf.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(client) = incoming else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    let mut list = s.lock().unwrap_or_else(PoisonError::into_inner);
                    list.retain(|t: &TcpStream| t.peer_addr().is_ok());
                    list.push(c2);
                    list.push(s2);
                }
                pump(client, server, d.clone());
            }
        });
        Ok(Proxy {
            port,
            open,
            deaf,
            streams,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Opens the proxy: new connections go through.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// From now until [`Proxy::close`], bytes from the target to the client
    /// are dropped: the client's publishes reach the broker, its PUBACKs
    /// never come back.
    pub fn deafen(&self) {
        self.deaf.store(true, Ordering::SeqCst);
    }

    /// Closes the proxy: cuts every connection and refuses new ones.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.deaf.store(false, Ordering::SeqCst);
        let mut list = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for s in list.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pump(a: TcpStream, b: TcpStream, deaf: Arc<AtomicBool>) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = io::copy(&mut a, &mut b2);
        let _ = b2.shutdown(Shutdown::Both);
        let _ = a.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut buf = [0_u8; 16 << 10];
        loop {
            let n = match io::Read::read(&mut b, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if deaf.load(Ordering::SeqCst) {
                continue;
            }
            if io::Write::write_all(&mut a2, buf.get(..n).unwrap_or_default()).is_err() {
                break;
            }
        }
        let _ = a2.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    });
}
