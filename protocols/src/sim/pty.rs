//! Serving simulated devices over Modbus RTU on a pseudo-terminal, optionally
//! with the line timing of a real RS-485 bus.
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
//! * every descriptor is closed on exec, so a child process (the agent under
//!   test) never holds the master: dropping the server makes the port vanish
//!   for its client, as unplugging a USB adapter does;
//! * tokio-modbus's RTU server stops on the first frame it cannot decode, and
//!   takes the stream by value: each run gets a duplicate of the master, and
//!   a supervisor starts a new run when one ends; the original master stays
//!   open throughout, so the path stays valid;
//! * `SerialStream::pair()` ignores parity and has no line timing of its own:
//!   a pseudo-terminal moves bytes at memory speed.
//!
//! # Line timing ([`SimPtyServer::open_timed`])
//!
//! With timing on, the bytes cross the line no faster than the configured
//! baud rate and character format allow (bits per character = start + data +
//! parity + stop). tokio-modbus's RTU server only takes a real
//! `SerialStream`, so the server gets a second, inner pseudo-terminal, and
//! two relay threads carry the bytes between the client's pseudo-terminal
//! and the server's, holding each frame for its on-wire time:
//!
//! * a request (whatever one read of the client's bytes brings, normally one
//!   whole frame) reaches the devices when its last character would have
//!   arrived: `max(now, end of the previous request) + bytes × char time`;
//! * an answer (or garbage) starts no sooner than one silent interval plus
//!   the configured answer delay after the end of the request (a device
//!   needs 3.5 quiet characters to see the request's end, then its own
//!   processing time), nor before the previous answer has left the wire; it
//!   reaches the client whole, at the end of its on-wire time.
//!
//! Frames are paced against `Instant` deadlines computed for the whole frame
//! (one character at 9600 baud is about 1.15 ms, finer than tokio's
//! millisecond timers): each relay thread sleeps to just short of the
//! deadline and spins the rest. The relays are plain threads so that the
//! pacing does not depend on the runtime the test or benchmark runs on.

use std::io::{self, Read as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort as _, TTYPort};
use spindle_config::model::SerialBus;
use tokio::task::JoinHandle;
use tokio_modbus::{Response, SlaveRequest, server::Service};
use tokio_serial::SerialStream;

use super::device::{RawWriter, SimDevice, SimService};
use super::dlt645::{SimBus, SimMeter};
use crate::dlt645::frame::{Frame, Scanned, parse_frame};

/// How long a relay thread blocks in a read before it checks for shutdown.
const RELAY_POLL: Duration = Duration::from_millis(20);

/// How much of a pacing wait is spun rather than slept (sleeps overshoot).
const SPIN: Duration = Duration::from_micros(300);

/// Simulated devices on a pseudo-terminal: Modbus units, DL/T 645 meters,
/// or both on one line as they share an RS-485 pair.
#[derive(Debug)]
pub struct SimPtyServer {
    path: String,
    tasks: Vec<JoinHandle<()>>,
    /// Held so that the master never sees EIO between clients.
    _slave: TTYPort,
    /// The other ends of the inner pseudo-terminals (mixed line), held open.
    _held: Vec<TTYPort>,
    /// With line timing: the relay threads and their stop flag.
    relay: Option<Relay>,
    /// The DL/T 645 meters on the line (empty when there are none).
    meters: Arc<Mutex<SimBus>>,
}

impl SimPtyServer {
    /// Serve Modbus `devices` on a new pseudo-terminal (inside a tokio
    /// runtime), without line timing: bytes move at memory speed.
    pub fn open(devices: Vec<SimDevice>) -> io::Result<Self> {
        Self::open_bus(devices, Vec::new(), None)
    }

    /// Serve Modbus `devices` on a new pseudo-terminal (inside a tokio
    /// runtime) with the line timing of `bus` (baud rate, data, parity and
    /// stop bits): every frame takes its on-wire time, and the devices start
    /// answering one silent interval plus `answer_delay` after a request's
    /// end.
    pub fn open_timed(
        devices: Vec<SimDevice>,
        bus: &SerialBus,
        answer_delay: Duration,
    ) -> io::Result<Self> {
        Self::open_bus(devices, Vec::new(), Some((bus, answer_delay)))
    }

    /// Serve DL/T 645 `meters` alone, at memory speed.
    pub fn open_meters(meters: Vec<SimMeter>) -> io::Result<Self> {
        Self::open_bus(Vec::new(), meters, None)
    }

    /// Serve DL/T 645 `meters` alone with the line timing of `bus`.
    pub fn open_meters_timed(
        meters: Vec<SimMeter>,
        bus: &SerialBus,
        answer_delay: Duration,
    ) -> io::Result<Self> {
        Self::open_bus(Vec::new(), meters, Some((bus, answer_delay)))
    }

    /// Serve Modbus `devices` and DL/T 645 `meters` on one new
    /// pseudo-terminal (inside a tokio runtime), with the line timing of a
    /// bus when `timing` is given. With both kinds, every request is routed
    /// by its framing ([`route`]): a DL/T 645 frame to the meters, anything
    /// else to the Modbus server.
    pub fn open_bus(
        devices: Vec<SimDevice>,
        meters: Vec<SimMeter>,
        timing: Option<(&SerialBus, Duration)>,
    ) -> io::Result<Self> {
        // The client's pseudo-terminal, and with timing a second one the
        // relay threads carry the bytes to.
        let (client_master, client_slave) = pty_pair()?;
        let path = client_slave
            .name()
            .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
        let mut held = Vec::new();
        let (line, relay) = match timing {
            Some((bus, answer_delay)) => {
                let (inner_master, inner_slave) = pty_pair()?;
                let relay =
                    Relay::start(client_master, inner_slave, Timing::of(bus, answer_delay))?;
                (inner_master, Some(relay))
            }
            None => (client_master, None),
        };
        let meters = SimBus::new(meters);
        let has_meters = !lock(&meters).meters.is_empty();
        let mut tasks = Vec::new();
        if has_meters && !devices.is_empty() {
            // The Modbus server gets a pseudo-terminal of its own.
            let (modbus_master, modbus_slave) = pty_pair()?;
            let raw: RawWriter = Arc::new(Mutex::new(Box::new(
                modbus_master.try_clone_native().map_err(io::Error::from)?,
            )));
            tasks.push(tokio::spawn(supervise(modbus_master, devices, raw)));
            tasks.push(tokio::spawn(supervise_mixed(
                line,
                modbus_slave.try_clone_native().map_err(io::Error::from)?,
                Arc::clone(&meters),
            )));
            held.push(modbus_slave);
        } else if has_meters {
            tasks.push(super::dlt645::spawn_serving(line, Arc::clone(&meters)));
        } else {
            let raw: RawWriter = Arc::new(Mutex::new(Box::new(
                line.try_clone_native().map_err(io::Error::from)?,
            )));
            tasks.push(tokio::spawn(supervise(line, devices, raw)));
        }
        Ok(Self {
            path,
            tasks,
            _slave: client_slave,
            _held: held,
            relay,
            meters,
        })
    }

    /// The path a client opens (`/dev/pts/N`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The DL/T 645 meters on the line (to change values and faults while
    /// served) and the requests they received.
    pub fn meters(&self) -> &Arc<Mutex<SimBus>> {
        &self.meters
    }
}

fn lock(bus: &Mutex<SimBus>) -> std::sync::MutexGuard<'_, SimBus> {
    bus.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the request bytes at the start of a mixed line's buffer go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A whole DL/T 645 frame of `len` bytes (wake-up bytes included).
    Dlt645 { frame: Frame, len: usize },
    /// The first `len` bytes are for the Modbus server (it frames them).
    Modbus(usize),
    /// The start of a DL/T 645 frame: wait for more.
    Wait,
}

/// Route the bytes at the start of `buf` (non-empty): a buffer that starts
/// like a DL/T 645 frame (`FE` or `68`) and parses as one goes to the
/// meters; one that parses as no DL/T 645 frame goes to Modbus whole; a
/// DL/T 645 frame still incomplete waits for more, unless its first eight
/// bytes are a Modbus read with a good CRC (unit 0x68 = 104 or 0xFE).
pub(crate) fn route(buf: &[u8]) -> Route {
    if !matches!(buf.first(), Some(0xFE | 0x68)) {
        return Route::Modbus(buf.len());
    }
    match parse_frame(buf) {
        Ok(Scanned::Complete { frame, len }) => Route::Dlt645 { frame, len },
        Ok(Scanned::Incomplete) => match buf.get(..8) {
            Some(request)
                if crate::modbus::rtu::crc16(request.get(..6).unwrap_or_default())
                    == u16::from_le_bytes([
                        request.get(6).copied().unwrap_or(0),
                        request.get(7).copied().unwrap_or(0),
                    ]) =>
            {
                Route::Modbus(8)
            }
            _ => Route::Wait,
        },
        Err(_) => Route::Modbus(buf.len()),
    }
}

/// Serve a mixed line on duplicates of `line` until aborted: DL/T 645
/// frames answered by `meters`, every other byte passed to the Modbus
/// server's pseudo-terminal (`modbus`) and its answers passed back.
async fn supervise_mixed(line: TTYPort, modbus: TTYPort, meters: Arc<Mutex<SimBus>>) {
    loop {
        let streams = line
            .try_clone_native()
            .and_then(SerialStream::try_from)
            .and_then(|line| {
                modbus
                    .try_clone_native()
                    .and_then(SerialStream::try_from)
                    .map(|modbus| (line, modbus))
            })
            .map_err(io::Error::from);
        match streams {
            Ok((line, modbus)) => {
                if let Err(error) = serve_mixed(line, modbus, &meters).await {
                    tracing::debug!(%error, "Simulated mixed line ended; serving again.");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Simulator cannot use its pseudo-terminal; retrying.");
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve_mixed<L, M>(mut line: L, mut modbus: M, meters: &Mutex<SimBus>) -> io::Result<()>
where
    L: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    M: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut received: Vec<u8> = Vec::new();
    let mut from_line = [0_u8; 256];
    let mut from_modbus = [0_u8; 256];
    loop {
        tokio::select! {
            got = line.read(&mut from_line) => {
                let got = got?;
                if got == 0 {
                    return Ok(());
                }
                received.extend_from_slice(from_line.get(..got).unwrap_or_default());
                while !received.is_empty() {
                    match route(&received) {
                        Route::Wait => break,
                        Route::Modbus(len) => {
                            let bytes: Vec<u8> = received.drain(..len.min(received.len())).collect();
                            modbus.write_all(&bytes).await?;
                        }
                        Route::Dlt645 { frame, len } => {
                            received.drain(..len.min(received.len()));
                            let answer = lock(meters).answer(&frame);
                            if let Some((delay, bytes)) = answer {
                                tokio::time::sleep(delay).await;
                                line.write_all(&bytes).await?;
                            }
                        }
                    }
                }
            }
            got = modbus.read(&mut from_modbus) => {
                let got = got?;
                if got == 0 {
                    return Ok(());
                }
                line.write_all(from_modbus.get(..got).unwrap_or_default()).await?;
            }
        }
    }
}

impl Drop for SimPtyServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(relay) = self.relay.take() {
            relay.stop();
        }
    }
}

/// A pseudo-terminal pair (master, slave) whose descriptors are closed on
/// exec. `TTYPort::pair` leaves them inheritable: a child process started
/// meanwhile (the agent under test) would keep the master open, and the port
/// would never vanish for it.
pub(super) fn pty_pair() -> io::Result<(TTYPort, TTYPort)> {
    let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
    // The duplicates are made with F_DUPFD_CLOEXEC; the originals close here.
    let master = master.try_clone_native().map_err(io::Error::from)?;
    let slave = slave.try_clone_native().map_err(io::Error::from)?;
    Ok((master, slave))
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

/// The line timing a relay emulates.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    char_time: Duration,
    silent_interval: Duration,
    answer_delay: Duration,
}

impl Timing {
    /// The timing of `bus`, devices answering `answer_delay` after a
    /// request's end plus one silent interval.
    pub(super) fn of(bus: &SerialBus, answer_delay: Duration) -> Self {
        Timing {
            char_time: bus.char_time(),
            silent_interval: bus.silent_interval(),
            answer_delay,
        }
    }

    fn frame_time(&self, bytes: usize) -> Duration {
        self.char_time
            .saturating_mul(u32::try_from(bytes).unwrap_or(u32::MAX))
    }
}

/// When each direction of the line is next free.
#[derive(Debug)]
struct LineState {
    /// End of the last request's last character.
    request_end: Instant,
    /// End of the last answer's last character.
    answer_end: Instant,
}

/// The two relay threads of a timed line.
#[derive(Debug)]
pub(super) struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<ThreadHandle<()>>,
}

impl Relay {
    pub(super) fn start(
        outer_master: TTYPort,
        inner_slave: TTYPort,
        timing: Timing,
    ) -> io::Result<Self> {
        let now = Instant::now();
        let line = Arc::new(Mutex::new(LineState {
            request_end: now,
            answer_end: now,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut from_client = outer_master.try_clone_native().map_err(io::Error::from)?;
        let mut to_server = inner_slave.try_clone_native().map_err(io::Error::from)?;
        let mut from_server = inner_slave;
        let mut to_client = outer_master;
        from_client
            .set_timeout(RELAY_POLL)
            .map_err(io::Error::from)?;
        from_server
            .set_timeout(RELAY_POLL)
            .map_err(io::Error::from)?;
        let requests = {
            let (line, stop) = (Arc::clone(&line), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("sim-line-requests".into())
                .spawn(move || {
                    relay(&mut from_client, &mut to_server, &stop, |bytes| {
                        let mut line = line.lock().unwrap_or_else(PoisonError::into_inner);
                        let end = Instant::now().max(line.request_end) + timing.frame_time(bytes);
                        line.request_end = end;
                        end
                    });
                })?
        };
        let answers = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("sim-line-answers".into())
                .spawn(move || {
                    relay(&mut from_server, &mut to_client, &stop, |bytes| {
                        let mut line = line.lock().unwrap_or_else(PoisonError::into_inner);
                        let start = Instant::now()
                            .max(line.answer_end)
                            .max(line.request_end + timing.silent_interval + timing.answer_delay);
                        let end = start + timing.frame_time(bytes);
                        line.answer_end = end;
                        end
                    });
                })?
        };
        Ok(Self {
            stop,
            threads: vec![requests, answers],
        })
    }

    /// Stop both threads and wait for them (they close their ends of the
    /// pseudo-terminals, so the client sees the port vanish).
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Copy frames from `from` to `to` until `stop`, each delivered at the
/// deadline `deliver_at` gives for its length.
fn relay(
    from: &mut TTYPort,
    to: &mut TTYPort,
    stop: &AtomicBool,
    mut deliver_at: impl FnMut(usize) -> Instant,
) {
    let mut buf = [0_u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => std::thread::sleep(RELAY_POLL),
            Ok(got) => {
                let deadline = deliver_at(got);
                wait_until(deadline, stop);
                let frame = buf.get(..got).unwrap_or_default();
                if let Err(error) = to.write_all(frame) {
                    tracing::debug!(%error, "Simulated line could not pass a frame on.");
                }
            }
            Err(error) if error.kind() == io::ErrorKind::TimedOut => {}
            Err(error) => {
                tracing::debug!(%error, "Simulated line read failed; retrying.");
                std::thread::sleep(RELAY_POLL);
            }
        }
    }
}

/// Sleep to just short of `deadline`, then spin to it (or until `stop`).
fn wait_until(deadline: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            return;
        }
        let left = deadline - now;
        if left > SPIN {
            std::thread::sleep(left.saturating_sub(SPIN).min(RELAY_POLL));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlt645::{Address, Di, Request};

    #[test]
    fn a_mixed_line_routes_dlt645_frames_to_the_meters_and_the_rest_to_modbus() {
        let request = Request::ReadData {
            address: Address::parse("000012345678").unwrap(),
            di: Di(0x0001_0000),
        }
        .encode();
        let Route::Dlt645 { frame, len } = route(&request) else {
            panic!("a whole DL/T 645 request goes to the meters")
        };
        assert_eq!((frame.control, len), (0x11, request.len()));
        assert_eq!(route(&request[..10]), Route::Wait, "half a frame waits");
        let mut modbus = vec![1, 3, 0, 0, 0, 1];
        modbus.extend(crate::modbus::rtu::crc16(&modbus).to_le_bytes());
        assert_eq!(route(&modbus), Route::Modbus(8));
        // Unit 0x68 (104) starts like a DL/T 645 frame; its CRC tells.
        let mut unit_104 = vec![0x68, 3, 0, 0, 0, 1];
        unit_104.extend(crate::modbus::rtu::crc16(&unit_104).to_le_bytes());
        assert_eq!(route(&unit_104), Route::Modbus(8));
    }
}
