//! The KPI task: feeds the pure [`KpiEngine`] with every poll and
//! availability change, closes due windows once a second, and hands them to
//! the publisher *together with the engine's state* in one atomic outbox
//! batch — so after any crash the stored state and the stored windows agree
//! (a window is neither lost nor published twice). Between windows the
//! state alone is saved every few seconds, bounding what a restart re-learns.
//!
//! Before a batch goes to the publisher its windows are appended to the
//! local history (`crate::history`) and fsynced, on a blocking thread; a
//! crash between the two writes a window to history twice, which readers
//! dedupe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use spindle_config::model::Config;
use tokio::sync::{mpsc, watch};

use crate::clock::{now_ms, plausible};
use crate::events::Counters;
use crate::history::History;
use crate::kpi::{KpiEngine, PolledPoint};
use crate::message::{Message, Outgoing};
use crate::poll::PollReport;

/// Outbox meta key of the KPI engine state.
pub const STATE_KEY: &[u8] = b"m/kpi_state";
/// How often the state is saved when no window closes.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Runs the engine until `shutdown`; saves the state once more on the way out.
pub async fn run_kpis(
    mut engine: KpiEngine,
    config: Arc<Config>,
    counters: Arc<Counters>,
    mut reports: mpsc::Receiver<PollReport>,
    out: mpsc::Sender<Outgoing>,
    mut shutdown: watch::Receiver<bool>,
) {
    let names: HashMap<String, Vec<String>> = config
        .devices
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.points.iter().map(|p| p.name.clone()).collect(),
            )
        })
        .collect();
    let history = Arc::new(History::new(&config));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = tokio::time::Instant::now();
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Some(report) => feed(&mut engine, &names, &report),
                None => break,
            },
            _ = tick.tick() => {
                let now = now_ms();
                let windows = engine.due(now, plausible(now));
                if windows.is_empty() && last_save.elapsed() < SAVE_EVERY {
                    continue;
                }
                for w in &windows {
                    tracing::info!(kind = w.kind().as_str(), name = %w.name, start = w.window.start, quality = w.quality.as_str(), "KPI window closed");
                }
                if !windows.is_empty() {
                    let (history, counters) = (history.clone(), counters.clone());
                    let written = windows.clone();
                    let _ = tokio::task::spawn_blocking(move || history.append(&written, now, &counters)).await;
                }
                let messages: Vec<Message> = windows.into_iter().map(Message::Kpi).collect();
                let batch = Outgoing::Atomic { messages, meta: Some((STATE_KEY.to_vec(), engine.state())) };
                tokio::select! {
                    sent = out.send(batch) => if sent.is_err() { return },
                    _ = shutdown.changed() => break,
                }
                last_save = tokio::time::Instant::now();
            }
            _ = shutdown.changed() => break,
        }
    }
    // Keep what open windows have learnt for the next start.
    let _ = out.try_send(Outgoing::Atomic {
        messages: Vec::new(),
        meta: Some((STATE_KEY.to_vec(), engine.state())),
    });
}

fn feed(engine: &mut KpiEngine, names: &HashMap<String, Vec<String>>, report: &PollReport) {
    let Some(point_names) = names.get(&report.device) else {
        return;
    };
    let points: Vec<PolledPoint<'_>> = point_names
        .iter()
        .zip(report.points.iter())
        .map(|(name, outcome)| (name.as_str(), outcome.as_ref()))
        .collect();
    engine.on_poll(&report.device, report.ts_ms, &points);
    if let Some(online) = report.availability {
        engine.on_availability(&report.device, report.ts_ms, online);
    }
}
