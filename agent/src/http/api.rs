//! The JSON API under `/api/v1/` and the probes `/healthz`, `/readyz`
//! (docs/openapi.yaml describes every response). Each handler reads the
//! live view and the counters once and renders on request; nothing here
//! touches the outbox or MQTT.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use spindle_config::model::{Device, DeviceLink};

use crate::clock::{now_ms, plausible};
use crate::health::{DeviceStats, health_report};
use crate::http::live::{DeviceLive, reason_word};
use crate::http::server::AppState;
use crate::http::sse::value_json;
use crate::message::{KpiKind, Message, Reachability, Reading};
use crate::wire::spindle::{history_line, unstored_payload};

/// History windows per page by default, and at most.
pub const HISTORY_LIMIT: usize = 500;
pub const HISTORY_MAX_LIMIT: usize = 2000;

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A body that is JSON text already.
fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Json_> {
    Json(json!({"status": "alive"}))
}

/// `GET /readyz`: configuration loaded and outbox open (both true once the
/// server runs: it starts after them) and the broker connected at least once.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut waiting: Vec<&str> = Vec::new();
    if state.sources.counters.mqtt_connects.get() == 0 {
        waiting.push("broker");
    }
    if waiting.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "waiting_for": waiting})),
        )
            .into_response()
    }
}

/// `GET /api/v1/agent`.
pub async fn agent(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let c = &state.config;
    Json(json!({
        "agent": c.agent.id,
        "site": c.agent.site,
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": c.sha256,
        "uptime_s": (state.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "started_ts": state.started_ts,
        "language": c.http.language.as_str(),
        "dialect": match c.mqtt.dialect {
            spindle_config::model::Dialect::Spindle => "spindle",
            spindle_config::model::Dialect::ThingsBoard => "thingsboard",
        },
    }))
}

/// `GET /api/v1/health`: the body the `health` topic would carry now
/// (without `seq`, which only the outbox gives).
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    json_text(health_body(&state))
}

/// The `health` body now.
pub fn health_body(state: &AppState) -> String {
    let now = now_ms();
    let report = health_report(
        &state.sources,
        state.started.elapsed().as_secs_f64(),
        now,
        plausible(now),
        &state.config.agent.data_dir,
    );
    unstored_payload(
        &Message::<crate::message::Name>::Health(report),
        &state.store,
    )
}

fn protocol(config: &spindle_config::model::Config, device: &Device) -> &'static str {
    if config.dlt645_device(&device.name).is_some() {
        "dlt645"
    } else {
        match device.link {
            DeviceLink::Tcp(_) => "modbus-tcp",
            DeviceLink::Serial(_) => "modbus-rtu",
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn ms3(us: u64) -> f64 {
    (us as f64).round() / 1000.0
}

/// A device's summary (the contract's `Device`).
fn device_json(state: &AppState, device: &Device, live: &DeviceLive) -> Json_ {
    let (bus, endpoint) = match &device.link {
        DeviceLink::Serial(bus) => (Some(bus.as_str()), None),
        DeviceLink::Tcp(endpoint) => (None, Some(endpoint.as_str())),
    };
    let zero = DeviceStats::default();
    let s: &DeviceStats = state.sources.devices.get(&device.name).map_or(&zero, |s| s);
    let polls = s.polls.get();
    let state_word = match live.state {
        Some(Reachability::Online) => "online",
        Some(Reachability::Offline) => "offline",
        None => "unknown",
    };
    json!({
        "name": device.name,
        "protocol": protocol(&state.config, device),
        "bus": bus,
        "endpoint": endpoint,
        "profile": device.profile,
        "state": state_word,
        "reason": live.reason.as_ref().and_then(reason_word),
        "since_ts": live.since_ts,
        "last_poll_ts": live.last_poll_ts,
        "latency_ms": {
            "last": (polls > 0).then(|| ms3(s.latency_last_us.get())),
            "mean": s.latency_sum_us.get().checked_div(polls).map(ms3),
            "max": (polls > 0).then(|| ms3(s.latency_max_us.get())),
        },
        "polls": polls,
        "errors": {
            "timeout": s.err_timeout.get(),
            "exception": s.err_exception.get(),
            "decode": s.err_decode.get(),
            "disconnected": s.err_disconnected.get(),
        },
    })
}

/// `GET /api/v1/devices`.
pub async fn devices(State(state): State<Arc<AppState>>) -> Json<Json_> {
    let list: Vec<Json_> = state
        .config
        .devices
        .iter()
        .filter_map(|d| Some(device_json(&state, d, &state.live.device_state(&d.name)?)))
        .collect();
    Json(json!({ "devices": list }))
}

/// `GET /api/v1/devices/{name}`: the summary and every point's latest reading.
pub async fn device(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let (Some(device), Some(live)) = (
        state.config.devices.iter().find(|d| d.name == name),
        state.live.device(&name),
    ) else {
        return error(StatusCode::NOT_FOUND, "no such device");
    };
    let mut body = device_json(&state, device, &live);
    let device_stats = state.sources.devices.get(&device.name);
    let points: Vec<Json_> = device
        .points
        .iter()
        .zip(&live.points)
        .enumerate()
        .map(|(index, (point, p))| {
            // Registers go with a value: none beside an error.
            let raw = match &p.reading {
                Some(Reading::Value(_)) => device_stats
                    .and_then(|s| s.registers(index))
                    .map(|r| Json_::from(r.as_slice())),
                _ => None,
            };
            let (value, error) = match &p.reading {
                Some(Reading::Value(v)) => (value_json(v), None),
                Some(Reading::Error(word)) => (Json_::Null, Some(word.word().into_owned())),
                None => (Json_::Null, None),
            };
            json!({
                "name": point.name,
                "value": value,
                "unit": point.unit,
                "raw": raw,
                "error": error,
                "ts": p.ts,
            })
        })
        .collect();
    if let Some(object) = body.as_object_mut() {
        object.insert("points".to_owned(), Json_::Array(points));
    }
    Json(body).into_response()
}

/// `GET /api/v1/kpi`: every configured KPI with its latest window.
pub async fn kpi(State(state): State<Arc<AppState>>) -> Response {
    let mut out = String::from("{\"kpi\":[");
    for (i, (kind, name, window)) in state.live.kpis().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"kind\":\"{}\",\"name\":{},\"window\":{}}}",
            kind.as_str(),
            Json_::from(name.as_str()),
            window
                .as_ref()
                .map_or_else(|| "null".to_owned(), history_line)
        );
    }
    out.push_str("]}");
    json_text(out)
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn rfc3339_ms(text: &str, what: &str) -> Result<u64, Box<Response>> {
    text.parse::<Timestamp>()
        .ok()
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("{what} must be an RFC 3339 time like 2026-11-27T08:00:00+08:00"),
            ))
        })
}

/// `GET /api/v1/kpi/{kind}/{name}/history?from=&to=&limit=&cursor=`: the
/// windows starting in `[from, to)` (default: the last 24 h), by start,
/// `limit` a page (default 500, at most 2000); `next` is the cursor of
/// the following page.
pub async fn history(
    State(state): State<Arc<AppState>>,
    Path((kind, name)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let Some(kind) = KpiKind::from_word(&kind) else {
        return error(StatusCode::NOT_FOUND, "no such KPI kind");
    };
    if !state
        .live
        .kpis()
        .iter()
        .any(|(k, n, _)| *k == kind && *n == name)
    {
        return error(StatusCode::NOT_FOUND, "no such KPI");
    }
    let now = now_ms();
    let to = match q.to.as_deref() {
        Some(t) => match rfc3339_ms(t, "to") {
            Ok(ms) => ms,
            Err(r) => return *r,
        },
        None => now,
    };
    let mut from = match q.from.as_deref() {
        Some(t) => match rfc3339_ms(t, "from") {
            Ok(ms) => ms,
            Err(r) => return *r,
        },
        None => to.saturating_sub(24 * 3600 * 1000),
    };
    if let Some(cursor) = q.cursor.as_deref() {
        match cursor.parse::<u64>() {
            Ok(c) => from = from.max(c),
            Err(_) => return error(StatusCode::BAD_REQUEST, "cursor is not one this API gave"),
        }
    }
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => HISTORY_LIMIT,
        Some(Ok(n)) => n,
        Some(Err(_)) => 0,
    };
    if limit == 0 || limit > HISTORY_MAX_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be 1 to {HISTORY_MAX_LIMIT}"),
        );
    }
    let dir = crate::history::dir(&state.config.agent.data_dir);
    let tz = state.config.agent.timezone.clone();
    let kind_word = kind.as_str();
    let page = tokio::task::spawn_blocking(move || {
        crate::history::read_page(&dir, &tz, kind_word, &name, from, to, limit)
    })
    .await;
    match page {
        Ok(Ok(page)) => {
            let mut out = String::from("{\"windows\":[");
            out.push_str(&page.lines.join(","));
            out.push_str("],\"next\":");
            match page.next {
                Some(n) => {
                    let _ = write!(out, "\"{n}\"");
                }
                None => out.push_str("null"),
            }
            out.push('}');
            json_text(out)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Could not read the KPI history");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the KPI history could not be read",
            )
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the KPI history could not be read",
        ),
    }
}

/// `GET /api/v1/events`: live updates (server-sent events).
pub async fn events(State(state): State<Arc<AppState>>) -> Response {
    match state.live.events().subscribe() {
        Some(sse) => sse.into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live-update subscribers",
        ),
    }
}
