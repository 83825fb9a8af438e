//! The HTTP server: the router, the accept loop with its connection cap,
//! optional TLS (rustls, as the MQTT side), and a clean stop.
//!
//! Caps (so that no client can grow the agent's memory):
//! - [`MAX_CONNECTIONS`] connections at once: a permit is taken *before*
//!   `accept`, so further clients wait in the kernel's listen backlog;
//! - a connection's first byte and its request headers must arrive within
//!   [`HEADER_TIMEOUT`], a TLS handshake within [`HANDSHAKE_TIMEOUT`];
//!   one request per connection (no keep-alive), so an idle client cannot
//!   hold a permit;
//! - request bodies (only the login form has one) at most [`MAX_BODY`];
//! - live-update subscribers: `sse::MAX_SUBSCRIBERS`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use spindle_config::model::{Config, Http};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::health::HealthSources;
use crate::http::auth::{self, Auth};
use crate::http::live::LiveView;
use crate::http::{api, metrics, page};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time for a request's headers to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body.
pub const MAX_BODY: usize = 4096;

/// What the handlers read.
#[derive(Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sources: Arc<HealthSources>,
    pub live: Arc<LiveView>,
    pub auth: Auth,
    pub started: Instant,
    /// Wall-clock start (Unix ms).
    pub started_ts: u64,
    /// The outbox's store id.
    pub store: String,
    /// Connections being served now.
    pub connections: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on http.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error("http TLS: {0}")]
    Tls(String),
}

/// The routes, behind the auth guard.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(page::routes())
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/v1/agent", get(api::agent))
        .route("/api/v1/health", get(api::health))
        .route("/api/v1/devices", get(api::devices))
        .route("/api/v1/devices/:name", get(api::device))
        .route("/api/v1/kpi", get(api::kpi))
        .route("/api/v1/kpi/:kind/:name/history", get(api::history))
        .route("/api/v1/events", get(api::events))
        .fallback(|| async { api::error(axum::http::StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves `server` with the state built from it (its auth moved in) until
/// `stop` turns true.
pub async fn serve(
    server: Server,
    state: impl FnOnce(Auth) -> AppState,
    stop: watch::Receiver<bool>,
) {
    let Server {
        listener,
        tls,
        auth,
    } = server;
    Server::run(listener, tls, Arc::new(state(auth)), stop).await;
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// The token, read at bind.
    pub auth: Auth,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Reads the token and the TLS files, binds `http.listen`.
    pub async fn bind(http: &Http) -> Result<Self, HttpError> {
        let auth = Auth::load(http.token_file.as_deref(), http.cert_file.is_some())?;
        let tls = match (&http.cert_file, &http.key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(http.listen)
            .await
            .map_err(|source| HttpError::Bind {
                addr: http.listen,
                source,
            })?;
        Ok(Server {
            listener,
            tls,
            auth,
        })
    }

    /// Whether connections are TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address bound (the port, when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` turns true, then closes every connection.
    pub async fn run(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        state: Arc<AppState>,
        mut stop: watch::Receiver<bool>,
    ) {
        let connections = state.connections.clone();
        let app = router(state);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = JoinSet::new();
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stop.changed() => break,
            };
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(app.clone());
            let tls = tls.clone();
            let count = Live::new(connections.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let _count = count;
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false);
                match tls {
                    None => {
                        // A client that connects and sends nothing gives its
                        // permit back after HEADER_TIMEOUT.
                        let mut first = [0u8; 1];
                        if !matches!(
                            tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut first)).await,
                            Ok(Ok(1..))
                        ) {
                            return;
                        }
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        let Ok(Ok(stream)) =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
            // Reap finished connections so the set stays as small as the cap.
            while tasks.try_join_next().is_some() {}
        }
        tasks.shutdown().await;
    }
}

/// Counts a connection while it lives.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Live(count)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, HttpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| HttpError::Tls(format!("cannot read {what} {}: {e}", path.display())))
    };
    let cert_pem = read("http.cert_file", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| HttpError::Tls(format!("{} holds no PEM certificate", cert.display())))?;
    if chain.is_empty() {
        return Err(HttpError::Tls(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let key_pem = read("http.key_file", key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| HttpError::Tls(format!("{} holds no PEM private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
