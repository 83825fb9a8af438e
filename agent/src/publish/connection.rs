//! The MQTT connection: builds rumqttc options from the config (TLS, mutual
//! TLS, credentials, last will) and drives one fresh client and event loop
//! per connection attempt, with full-jitter exponential backoff between
//! attempts (each wait uniform in `[0, min(reconnect_max, 200 ms * 2^n)]`,
//! so gateways that lost one broker come back spread over the interval, and
//! none waits longer than `reconnect_max` after it returns). It reports what
//! the publisher needs and nothing else.
//!
//! rumqttc cannot be trusted with unacknowledged publishes (it drops its
//! pending queue on a reconnect without a session), so every attempt starts
//! clean and the publisher resends from the outbox after each `Up`.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, NetworkOptions, Packet, QoS, Transport};
use spindle_config::model::{Mqtt, PasswordSource};

use crate::message::{Reachability, Status, StatusReason};
use spindle_protocols::backoff::Backoff;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// What the connection task tells the publisher.
#[derive(Debug)]
pub enum ConnEvent {
    /// A session is up (CONNACK received); publish through this client.
    Up(AsyncClient),
    /// rumqttc wrote a publish with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// The session is gone; the reason is for the log.
    Down(String),
    /// The broker refused an attempt's credentials (bad username or
    /// password, not authorized); it is retried with backoff.
    AuthRefused,
}

#[derive(Debug, Error)]
pub enum ConnectionSetupError {
    #[error("cannot read the MQTT password file {path}: {source}")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the MQTT password variable {0} is not set")]
    PasswordEnv(String),
    #[error("cannot read the access token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the access token variable {0} is not set")]
    TokenEnv(String),
    #[error("cannot read {what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable {expected}")]
    PemEmpty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Everything needed to open connections, prepared once at start-up.
#[derive(Clone)]
pub struct ConnectionSettings {
    options: MqttOptions,
    status_topic: String,
    status: Status,
    will_retain: bool,
    /// Longest wait between connection attempts.
    reconnect_max: Duration,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // MqttOptions would print the password.
        f.debug_struct("ConnectionSettings").finish_non_exhaustive()
    }
}

impl ConnectionSettings {
    /// Builds the options: reads the password (never logged; a warning if
    /// its file is readable by others), the CA and client certificates.
    /// `status` gives the store, version and configuration hash; the last
    /// will is made from it, stamped with the time of each connection attempt.
    pub fn new(
        mqtt: &Mqtt,
        status_topic: String,
        status: Status,
        max_packet: usize,
    ) -> Result<Self, ConnectionSetupError> {
        let mut options =
            MqttOptions::new(mqtt.client_id.clone(), mqtt.url.host.clone(), mqtt.url.port);
        options.set_keep_alive(mqtt.keep_alive.max(Duration::from_secs(1)));
        options.set_clean_session(true);
        options.set_max_packet_size(max_packet.max(1 << 16), max_packet);
        if let Some(token) = &mqtt.token {
            // ThingsBoard: the access token is the username, with no password.
            let token = read_password(token).map_err(|e| match e {
                ConnectionSetupError::PasswordFile { path, source } => {
                    ConnectionSetupError::TokenFile { path, source }
                }
                ConnectionSetupError::PasswordEnv(var) => ConnectionSetupError::TokenEnv(var),
                other => other,
            })?;
            options.set_credentials(token.trim().to_owned(), String::new());
        } else if let Some(user) = &mqtt.username {
            let password = match &mqtt.password {
                Some(source) => read_password(source)?,
                None => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        if mqtt.url.tls {
            options.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(mqtt)?)),
            ));
        }
        Ok(ConnectionSettings {
            options,
            status_topic,
            status,
            will_retain: true,
            reconnect_max: mqtt.reconnect_max,
        })
    }

    /// The last will as `dialect` publishes status (its topic; retained
    /// only in the `spindle` dialect).
    #[must_use]
    pub fn with_dialect(mut self, dialect: &crate::wire::Dialect) -> Self {
        let probe = dialect.status(&self.status);
        self.status_topic = probe.topic;
        self.will_retain = probe.retain;
        self
    }

    /// Options for one attempt, with a last will stamped now.
    fn attempt(&self) -> MqttOptions {
        let mut options = self.options.clone();
        let will = status_payload(
            &self.status,
            Reachability::Offline,
            Some(StatusReason::ConnectionLost),
        );
        options.set_last_will(LastWill::new(
            self.status_topic.clone(),
            will,
            QoS::AtLeastOnce,
            self.will_retain,
        ));
        options
    }
}

/// The `status` publish of `dialect` for `state`, stamped now.
pub fn status_publish(
    dialect: &crate::wire::Dialect,
    status: &Status,
    state: Reachability,
    reason: Option<StatusReason>,
) -> crate::wire::Rendered {
    let status = Status {
        state,
        ts: crate::clock::now_ms(),
        reason,
        ..status.clone()
    };
    dialect.status(&status)
}

/// A `status` payload for `state`, stamped now.
pub fn status_payload(
    status: &Status,
    state: Reachability,
    reason: Option<StatusReason>,
) -> Vec<u8> {
    let status = Status {
        state,
        ts: crate::clock::now_ms(),
        reason,
        ..status.clone()
    };
    crate::wire::spindle::status(&status).into_bytes()
}

fn read_password(source: &PasswordSource) -> Result<String, ConnectionSetupError> {
    match source {
        PasswordSource::File(path) => {
            warn_if_readable_by_others(path);
            let text = std::fs::read_to_string(path).map_err(|source| {
                ConnectionSetupError::PasswordFile {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        PasswordSource::Env(var) => {
            std::env::var(var).map_err(|_| ConnectionSetupError::PasswordEnv(var.clone()))
        }
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o044 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "MQTT password file is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &std::path::Path) {}

fn read_pem(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ConnectionSetupError> {
    std::fs::read(path).map_err(|source| ConnectionSetupError::Pem {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(mqtt: &Mqtt) -> Result<rustls::ClientConfig, ConnectionSetupError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &mqtt.ca_file {
        let pem = read_pem("CA file", ca)?;
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            roots
                .add(cert)
                .map_err(|e| ConnectionSetupError::Tls(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ConnectionSetupError::PemEmpty {
                what: "CA file",
                path: ca.display().to_string(),
                expected: "certificate",
            });
        }
    } else {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectionSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&mqtt.cert_file, &mqtt.key_file) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_pem("client certificate", cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .flatten()
                .collect();
            if chain.is_empty() {
                return Err(ConnectionSetupError::PemEmpty {
                    what: "client certificate",
                    path: cert.display().to_string(),
                    expected: "certificate",
                });
            }
            let key_pem = read_pem("client key", key)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                ConnectionSetupError::PemEmpty {
                    what: "client key",
                    path: key.display().to_string(),
                    expected: "private key",
                }
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConnectionSetupError::Tls(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The upper end of the first wait after a failed attempt or a lost
/// session; it doubles with each further failure up to `reconnect_max`.
pub const FIRST_RECONNECT: Duration = Duration::from_millis(200);

/// The socket options of every connection: `TCP_NODELAY` on. rumqttc
/// writes each packet with its own flush, so Nagle's algorithm saves no
/// segment under load worth having, and with it a publish written while an
/// earlier one is unacknowledged waits for the broker's ACK, which the
/// broker's delayed ACK holds for 40 ms when it has nothing to send back
/// (README, "Tail latency").
fn network_options() -> NetworkOptions {
    let mut options = NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

/// Runs connection attempts until `shutdown` turns true.
pub async fn run(
    settings: ConnectionSettings,
    events: mpsc::Sender<ConnEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Full-jitter exponential backoff (rumqttc has none): 200 ms doubling
    // to `reconnect_max`, each wait drawn uniformly from zero to that.
    let mut backoff = Backoff::full_jitter(FIRST_RECONNECT, settings.reconnect_max);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let (client, mut eventloop) = AsyncClient::new(settings.attempt(), 1024);
        eventloop.set_network_options(network_options());
        let mut up = false;
        let reason = loop {
            let polled = tokio::select! {
                polled = eventloop.poll() => polled,
                _ = shutdown.changed() => {
                    let _ = client.try_disconnect();
                    // Let the DISCONNECT go out so the broker does not send the last will.
                    let _ = tokio::time::timeout(Duration::from_millis(300), async {
                        while let Ok(ev) = eventloop.poll().await {
                            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) { break; }
                        }
                    }).await;
                    return;
                }
            };
            let forward = match polled {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != rumqttc::ConnectReturnCode::Success {
                        break format!("broker refused the connection: {:?}", ack.code);
                    }
                    up = true;
                    backoff.reset();
                    Some(ConnEvent::Up(client.clone()))
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    Some(ConnEvent::Sent(pkid))
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => Some(ConnEvent::Acked(ack.pkid)),
                Ok(_) => None,
                Err(rumqttc::ConnectionError::ConnectionRefused(
                    code @ (rumqttc::ConnectReturnCode::BadUserNamePassword
                    | rumqttc::ConnectReturnCode::NotAuthorized),
                )) => {
                    // The credentials are never in the reason: only the broker's code.
                    if events.send(ConnEvent::AuthRefused).await.is_err() {
                        return;
                    }
                    break format!(
                        "the broker refused the credentials (return code: `{code:?}`); retrying with backoff"
                    );
                }
                Err(e) => break e.to_string(),
            };
            if let Some(ev) = forward
                && events.send(ev).await.is_err()
            {
                return;
            }
        };
        if up {
            tracing::warn!(reason = %reason, "MQTT connection lost; unacknowledged messages will be sent again");
            if events.send(ConnEvent::Down(reason)).await.is_err() {
                return;
            }
        } else {
            tracing::warn!(reason = %reason, "MQTT connection attempt failed");
        }
        let wait = backoff.next_delay();
        tracing::debug!(
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            failures = backoff.attempts(),
            "Next MQTT connection attempt after a jittered wait"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
