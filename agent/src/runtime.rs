//! `spindle run`: wires the parts together and runs until SIGTERM/SIGINT.
//!
//! Start-up: check the data directory, open the outbox (a damaged store is
//! moved aside and reported), prepare the MQTT connection, start one task
//! per link, the health task and the publisher. Nothing here waits for a
//! broker or a device: the agent runs and buffers without either.
//!
//! Shutdown (within 5 s): the link and health tasks stop at once (a poll in
//! progress is abandoned), which closes the publisher's channel; the
//! publisher appends what was queued, flushes, gives in-flight messages a
//! moment to be acknowledged, publishes `status` offline and disconnects.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::{Config, Device, DeviceLink, Dlt645Device};
use spindle_protocols::dlt645::poll::MeterPoller;
use spindle_protocols::dlt645::{Address, Di};
use spindle_protocols::modbus::transport::{AnyLink, RtuLink, TcpLink};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::busload::{self, DeviceLoad};
use crate::clock::{now_ms, plausible};
use crate::events::Counters;
use crate::health::{BusStats, DeviceStats, HealthSources, health_report};
use crate::http::live::{LiveTap, LiveView};
use crate::http::sse::Broadcast;
use crate::kpi::KpiEngine;
use crate::kpi_task::{STATE_KEY, run_kpis};
use crate::message::{Message, Outgoing, Reachability, Status};
use crate::notify::Notifier;
use crate::outbox::{Outbox, OutboxOptions, SledStore};
use crate::poll::{ScheduledDevice, link_backoff, run_link};
use crate::publish::connection::ConnectionSettings;
use crate::publish::{Publisher, PublisherOptions};

/// Largest message accepted into the outbox, and the MQTT packet limit set
/// on the client (mosquitto's default `message_size_limit` is far larger).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Records in flight at most.
pub const WINDOW: usize = 100;
/// Messages queued between producers and the publisher.
pub const QUEUE: usize = 1024;
/// sled page cache.
pub const CACHE: u64 = 8 << 20;
/// How often `health` is published.
pub const HEALTH_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data_dir {dir} is not writable: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error(transparent)]
    Connection(#[from] crate::publish::connection::ConnectionSetupError),
    /// A DL/T 645 device whose meter address or identifiers do not make a
    /// poller (validation rules this out).
    #[error("DL/T 645 device \"{device}\": {detail}")]
    Dlt645Meter { device: String, detail: String },
    #[error(transparent)]
    Http(#[from] crate::http::server::HttpError),
}

/// The poller of a DL/T 645 device: its meter, one identifier per point.
fn meter_poller(device: &Device, meter: &Dlt645Device) -> Result<MeterPoller, StartError> {
    let error = |detail: String| StartError::Dlt645Meter {
        device: device.name.clone(),
        detail,
    };
    let address = Address::parse(&meter.meter).map_err(|e| error(e.to_string()))?;
    let dis =
        device
            .points
            .iter()
            .map(|point| {
                meter.di.get(&point.name).map(|&di| Di(di)).ok_or_else(|| {
                    error(format!("point \"{}\" has no data identifier", point.name))
                })
            })
            .collect::<Result<Vec<Di>, StartError>>()?;
    let mut poller = MeterPoller::new(address, dis);
    poller.set_retries(device.retries);
    Ok(poller)
}

fn check_data_dir(dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".spindle-write-test");
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

/// Checks the data directory and opens the outbox (moving a damaged store
/// aside); also returns the stored KPI state.
fn open_outbox(config: &Config) -> Result<(Outbox<SledStore>, Option<Vec<u8>>), StartError> {
    check_data_dir(&config.agent.data_dir)?;
    let outbox_dir = config.agent.data_dir.join("outbox");
    let opts = OutboxOptions {
        max_size: config.buffer.max_size,
        max_age: config.buffer.max_age,
        max_record: MAX_MESSAGE,
        cache_capacity: CACHE,
    };
    let (outbox, recovery) = Outbox::open(&outbox_dir, opts, now_ms())?;
    if let Some(r) = &recovery {
        tracing::error!(
            moved_to = %r.moved_to.display(),
            lost_store = r.lost_store.as_deref().unwrap_or("unknown"),
            cause = %r.cause,
            "Outbox store was damaged; moved it aside and started a new store. Its unsent messages are lost (announced on gap)"
        );
    }
    if let Err(e) = outbox.write_id_file(&outbox_dir) {
        tracing::warn!(error = %e, "Could not write the store id file");
    }
    let kpi_state = match outbox.meta(STATE_KEY) {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(error = %e, "Could not read the KPI state");
            None
        }
    };
    Ok((outbox, kpi_state))
}

/// Runs the agent until a signal; `Err` only for start-up failures.
pub async fn run(config: Config) -> Result<(), StartError> {
    run_until(config, Arc::new(Counters::default()), wait_for_signal()).await
}

/// Runs the agent until `shutdown` resolves (then stops as on a signal),
/// counting into `counters` (so an embedding such as `spindle demo` can
/// show them); `Err` only for start-up failures.
pub async fn run_until(
    config: Config,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let started = Instant::now();
    // The HTTP server's files are read first: a bad one stops the start
    // before anything else runs.
    let http_server = crate::http::bind(&config).await?;
    let (outbox, kpi_state) = open_outbox(&config)?;
    let store_id = outbox.store_id().to_owned();
    tracing::info!(store = %store_id, next_seq = outbox.next_seq(), depth = outbox.stats().depth, "Outbox open");

    let topic_base = format!(
        "{}/{}/{}/",
        config.mqtt.topic_prefix, config.agent.site, config.agent.id
    );
    let status = Status {
        state: Reachability::Online,
        ts: 0,
        reason: None,
        store: store_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_sha256: config.sha256.clone(),
    };
    let dialect = crate::wire::Dialect::from_config(&config);
    // The packet limit: the broker's (`max_packet`), within the outbox's record limit.
    let max_message = MAX_MESSAGE.min(config.mqtt.max_packet);
    let settings = ConnectionSettings::new(
        &config.mqtt,
        format!("{topic_base}status"),
        status.clone(),
        max_message,
    )?
    .with_dialect(&dialect);

    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(QUEUE);
    let (stop_tx, stop_rx) = watch::channel(false);
    let publisher = Publisher::new(
        outbox,
        PublisherOptions {
            topic_base,
            dialect,
            window: WINDOW,
            replay_rate: config.buffer.replay_rate,
            status,
            max_message,
            flush_interval: config.buffer.flush_interval,
        },
        config.buffer.replay,
        counters.clone(),
    );
    let (publisher, live) = live_view(&config, http_server.is_some(), publisher, &store_id);
    let publisher_task = tokio::spawn(publisher.run(settings, out_rx, Duration::from_secs(2)));

    let mut sources = HealthSources {
        counters: counters.clone(),
        ..HealthSources::default()
    };
    let mut tasks = Vec::new();
    let report_tx = spawn_kpis(&config, &counters, kpi_state, &out_tx, &stop_rx, &mut tasks);
    for (link, devices, bus_stats) in build_links(&config, &mut sources)? {
        tasks.push(tokio::spawn(run_link(
            link,
            devices,
            bus_stats,
            out_tx.clone(),
            report_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(report_tx);
    let sources = Arc::new(sources);
    if let (Some(server), Some(live)) = (http_server, live) {
        let parts = (Arc::new(config.clone()), sources.clone(), live);
        tasks.push(crate::http::spawn(
            server,
            parts,
            store_id,
            started,
            stop_rx.clone(),
        ));
    }
    tasks.push(tokio::spawn(health_loop(
        sources,
        config.agent.data_dir.clone(),
        started,
        out_tx.clone(),
        stop_rx.clone(),
    )));
    drop(out_tx);

    // Under systemd (Type=notify): ready now, and a watchdog fed while the
    // publisher's loop keeps turning.
    let notifier = Arc::new(Notifier::from_env());
    notifier.notify("READY=1");
    if let Some(every) = Notifier::watchdog_interval() {
        tasks.push(tokio::spawn(feed_watchdog(
            notifier.clone(),
            counters.clone(),
            every,
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    notifier.notify("STOPPING=1");
    stop_all(&stop_tx, tasks, publisher_task).await;
    Ok(())
}

/// Stops the tasks, then waits for the publisher to flush and say goodbye.
async fn stop_all(
    stop_tx: &watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    publisher_task: tokio::task::JoinHandle<Outbox<SledStore>>,
) {
    tracing::info!("Stopping: polling stops, the outbox is flushed");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    if let Ok(Ok(outbox)) = tokio::time::timeout(Duration::from_secs(4), publisher_task).await {
        tracing::info!(
            depth = outbox.stats().depth,
            "Stopped; unsent messages stay in the outbox"
        );
    } else {
        tracing::warn!("Publisher did not stop in time");
    }
}

/// With the HTTP server on: the live view, fed by a tap on the publisher.
fn live_view(
    config: &Config,
    on: bool,
    publisher: Publisher<SledStore>,
    store: &str,
) -> (Publisher<SledStore>, Option<Arc<LiveView>>) {
    if !on {
        return (publisher, None);
    }
    let view = Arc::new(LiveView::new(config, Broadcast::default()));
    let tap = Arc::new(LiveTap {
        view: view.clone(),
        store: store.to_owned(),
    });
    (publisher.with_tap(tap), Some(view))
}

/// Starts the KPI task when KPIs are configured; returns where polls go.
fn spawn_kpis(
    config: &Config,
    counters: &Arc<Counters>,
    state: Option<Vec<u8>>,
    out: &mpsc::Sender<Outgoing>,
    stop: &watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Option<mpsc::Sender<crate::poll::PollReport>> {
    let mut engine = KpiEngine::new(config);
    if engine.is_empty() {
        return None;
    }
    if let Some(bytes) = state {
        match engine.restore(&bytes) {
            Ok(()) => tracing::info!("KPI state restored: open windows continue"),
            Err(e) => {
                tracing::warn!(error = %e, "KPI state not usable; open windows start over (partial)");
            }
        }
    }
    let (tx, rx) = mpsc::channel(1024);
    tasks.push(tokio::spawn(run_kpis(
        engine,
        Arc::new(config.clone()),
        counters.clone(),
        rx,
        out.clone(),
        stop.clone(),
    )));
    Some(tx)
}

type LinkTask = (AnyLink, Vec<ScheduledDevice>, Option<Arc<BusStats>>);

/// One link per serial bus and per TCP endpoint, with its devices.
fn build_links(config: &Config, sources: &mut HealthSources) -> Result<Vec<LinkTask>, StartError> {
    let start = Instant::now();
    let mut tcp: BTreeMap<String, Vec<ScheduledDevice>> = BTreeMap::new();
    let mut serial: BTreeMap<String, Vec<ScheduledDevice>> = BTreeMap::new();
    for device in &config.devices {
        let stats = Arc::new(DeviceStats::default());
        sources.devices.insert(device.name.clone(), stats.clone());
        let mut scheduled = ScheduledDevice::new(device.clone(), stats, start);
        if let Some(meter) = config.dlt645_device(&device.name) {
            scheduled = scheduled.with_meter(meter_poller(device, meter)?);
        }
        match &device.link {
            DeviceLink::Tcp(endpoint) => tcp
                .entry(endpoint.to_ascii_lowercase())
                .or_default()
                .push(scheduled),
            DeviceLink::Serial(bus) => serial.entry(bus.clone()).or_default().push(scheduled),
        }
    }
    let mut links = Vec::new();
    for (endpoint, devices) in tcp {
        let timeout = devices
            .first()
            .map_or(Duration::from_secs(1), ScheduledDevice::timeout);
        let link = TcpLink::new(endpoint, timeout).with_backoff(link_backoff(&devices));
        links.push((AnyLink::Tcp(link), devices, None));
    }
    for bus in &config.serial {
        let devices = serial.remove(&bus.name).unwrap_or_default();
        if devices.is_empty() {
            continue;
        }
        let loads: Vec<DeviceLoad> = devices.iter().map(ScheduledDevice::load).collect();
        let stats = Arc::new(BusStats::default());
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        stats
            .load_estimated_permille
            .set((busload::bus_load(bus, &loads) * 1000.0).round() as u64);
        sources.buses.insert(bus.name.clone(), stats.clone());
        let timeout = devices
            .first()
            .map_or(Duration::from_secs(1), ScheduledDevice::timeout);
        links.push((
            AnyLink::Rtu(RtuLink::new(bus, timeout)),
            devices,
            Some(stats),
        ));
    }
    Ok(links)
}

async fn health_loop(
    sources: Arc<HealthSources>,
    data_dir: std::path::PathBuf,
    started: Instant,
    out: mpsc::Sender<Outgoing>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(Instant::now() + HEALTH_EVERY, HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = now_ms();
        let msg = Message::Health(health_report(
            &sources,
            started.elapsed().as_secs_f64(),
            now,
            plausible(now),
            &data_dir,
        ));
        tokio::select! {
            sent = out.send(msg.into()) => if sent.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends `WATCHDOG=1` every `every` as long as the publisher made progress since the last time.
async fn feed_watchdog(
    notifier: Arc<Notifier>,
    counters: Arc<Counters>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = counters.publisher_ticks.get();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let now = counters.publisher_ticks.get();
        if now == last {
            tracing::error!("The publisher made no progress; not feeding the watchdog");
        } else {
            notifier.notify("WATCHDOG=1");
            last = now;
        }
    }
}

/// Ctrl-C, SIGTERM, or the end of `run_for` when given (`demo`, `simulate`).
pub fn wait_for_stop(run_for: Option<Duration>) -> impl Future<Output = ()> {
    let signal = wait_for_signal();
    async move {
        let deadline = async {
            match run_for {
                Some(duration) => tokio::time::sleep(duration).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = deadline => {}
            () = signal => {}
        }
    }
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed by the call, not
/// when the future is first polled: a signal that arrives in between (say,
/// right after a "ready" line) is kept, not left to kill the process.
/// Must be called inside the runtime.
pub fn wait_for_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // A handler that cannot be installed never fires.
        async fn received(signal: Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let term = received(signal(SignalKind::terminate()).ok());
        let int = received(signal(SignalKind::interrupt()).ok());
        async move {
            tokio::select! {
                () = term => {}
                () = int => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
