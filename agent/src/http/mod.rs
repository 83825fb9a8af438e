//! The embedded HTTP server (`[http]`, issue 16): the status page, a
//! read-only JSON API under `/api/v1/`, live updates as server-sent
//! events, `/metrics` for Prometheus, `/healthz` and `/readyz`.
//!
//! Layering: this module reads the [`live::LiveView`] (fed by a tap on the
//! publisher, see `crate::message::Tap`), the event counters
//! (`crate::events`, `crate::health`), the configuration and the local KPI
//! history files. It never touches the outbox's internals or MQTT, and
//! producers know nothing of it.
//!
//! Cost when nobody looks: one tap call per message that copies the
//! reading into a preallocated slot under an uncontended mutex; JSON is
//! rendered only for a request or while a live-update subscriber is
//! connected.
//!
//! Files: `server.rs` (router, accept loop, caps, TLS, stop), `auth.rs`
//! (token, sessions, login), `api.rs` (JSON routes and probes),
//! `metrics.rs` (Prometheus text), `live.rs` (the live view and the tap),
//! `sse.rs` (the live-update channel), `page.rs` (the status page and its
//! embedded assets, `assets/`).

pub mod api;
pub mod auth;
pub mod live;
pub mod metrics;
pub mod page;
pub mod server;
pub mod sse;

use std::sync::Arc;

use spindle_config::model::Config;
use tokio::sync::watch;

use crate::health::HealthSources;
use crate::http::live::LiveView;
use crate::http::server::{AppState, HttpError, Server};

/// Reads the token and TLS files (a start-up error when they cannot be
/// used) and binds `http.listen`, before anything else starts; `None` when
/// `[http] enabled = false`, or when the address cannot be bound (a port
/// in use): that is logged as an error and the agent runs without the
/// server, since polling and delivery must not stop for the status page.
pub async fn bind(config: &Config) -> Result<Option<Server>, HttpError> {
    if !config.http.enabled {
        return Ok(None);
    }
    let server = match Server::bind(&config.http).await {
        Ok(server) => server,
        Err(e @ HttpError::Bind { .. }) => {
            tracing::error!(error = %e, "HTTP server not started; the agent runs without it");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let bound = server
        .local_addr()
        .map_or_else(|| config.http.listen.to_string(), |a| a.to_string());
    tracing::info!(
        listen = %bound,
        tls = server.tls(),
        token = server.auth.required(),
        "HTTP server listening"
    );
    Ok(Some(server))
}

/// Spawns the server; it stops when `stop` turns true.
pub fn spawn(
    server: Server,
    (config, sources, live): (Arc<Config>, Arc<HealthSources>, Arc<LiveView>),
    store: String,
    started: tokio::time::Instant,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let started_ts = crate::clock::now_ms();
    tokio::spawn(server::serve(
        server,
        move |auth| AppState {
            config,
            sources,
            live,
            auth,
            started,
            started_ts,
            store,
            connections: Arc::default(),
        },
        stop,
    ))
}
