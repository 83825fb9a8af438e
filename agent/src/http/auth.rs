//! Who may read: the `[http] token_file` token, as `Authorization: Bearer`
//! (API, `/metrics`) or a session cookie a browser gets from the login
//! form. Without a token (allowed on loopback only) everything is open.
//!
//! - The token is read once at start (surrounding whitespace trimmed) and
//!   never logged, never put in a URL; it is compared in constant time.
//! - Sessions are random 256-bit ids kept server-side: at most
//!   [`MAX_SESSIONS`], each valid for [`SESSION_TTL`]; a new login when the
//!   map is full evicts the expired ones, then the oldest.
//! - The cookie is `spindle_session=<id>; HttpOnly; SameSite=Strict;
//!   Path=/` (and `Secure` under TLS).
//! - Open without auth: `/healthz`, `/readyz`, `/login`, `/assets/*`.
//!   Otherwise, an API or `/metrics` request without auth gets 401 JSON, a
//!   page request a 303 to `/login`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::http::api::error;
use crate::http::server::AppState;

/// Browser sessions kept at once.
pub const MAX_SESSIONS: usize = 64;
/// How long a session is valid after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "spindle_session";

/// The token and the sessions.
#[derive(Debug)]
pub struct Auth {
    token: Option<Box<[u8]>>,
    secure: bool,
    sessions: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read http.token_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("http.token_file {path} is empty")]
    Empty { path: String },
}

impl Auth {
    /// Reads the token from `token_file` (none: open, loopback only).
    pub fn load(token_file: Option<&Path>, secure: bool) -> Result<Self, TokenError> {
        let token = match token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(TokenError::Empty {
                        path: path.display().to_string(),
                    });
                }
                Some(token.as_bytes().into())
            }
        };
        Ok(Auth {
            token,
            secure,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the token (constant time in the token's content).
    fn token_matches(&self, given: &[u8]) -> bool {
        self.token
            .as_deref()
            .is_some_and(|token| constant_time_eq(token, given))
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request carries the bearer token or a live session.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.required() {
            return true;
        }
        if let Some(bearer) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            && self.token_matches(bearer.trim().as_bytes())
        {
            return true;
        }
        session_cookie(headers).is_some_and(|id| {
            let mut sessions = self.sessions();
            match sessions.get(id) {
                Some(at) if at.elapsed() < SESSION_TTL => true,
                Some(_) => {
                    sessions.remove(id);
                    false
                }
                None => false,
            }
        })
    }

    /// A new session's id (evicting expired ones, then the oldest, when full).
    fn open_session(&self) -> String {
        let id = rand::random::<[u8; 32]>()
            .iter()
            .fold(String::with_capacity(64), |mut id, b| {
                let _ = write!(id, "{b:02x}");
                id
            });
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, at| at.elapsed() < SESSION_TTL);
        }
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Instant::now());
        id
    }

    fn cookie(&self, value: &str, max_age: Option<u64>) -> String {
        let mut cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/");
        if let Some(age) = max_age {
            let _ = write!(cookie, "; Max-Age={age}");
        }
        if self.secure {
            cookie.push_str("; Secure");
        }
        cookie
    }
}

/// Equal bytes, compared without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Paths open without auth.
fn open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/login") || path.starts_with("/assets/")
}

/// The middleware in front of every route.
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if open_path(path) || state.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    if path.starts_with("/api/") || path == "/metrics" {
        let mut response = error(StatusCode::UNAUTHORIZED, "authentication required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"spindle\""),
        );
        response
    } else {
        see_other("/login", None)
    }
}

fn see_other(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /login`: the form (the page's markup, `page::login_html`).
pub async fn login_form() -> Response {
    crate::http::page::login_response(false)
}

#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login`: a session cookie for the right token.
pub async fn login(State(state): State<Arc<AppState>>, Form(form): Form<Login>) -> Response {
    let auth = &state.auth;
    if !auth.required() {
        return see_other("/", None);
    }
    if auth.token_matches(form.token.trim().as_bytes()) {
        let id = auth.open_session();
        return see_other("/", Some(auth.cookie(&id, Some(SESSION_TTL.as_secs()))));
    }
    tracing::warn!("HTTP login with a wrong token");
    (
        StatusCode::UNAUTHORIZED,
        crate::http::page::login_response(true),
    )
        .into_response()
}

/// `POST /logout`: forgets the session.
pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.auth.sessions().remove(id);
    }
    see_other("/login", Some(state.auth.cookie("", Some(0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_match_and_any_difference_does_not() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret\0"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_goes_first() {
        let dir = std::env::temp_dir().join(format!("spindle-auth-{}", std::process::id()));
        std::fs::write(&dir, "tok\n").unwrap();
        let auth = Auth::load(Some(&dir), false).unwrap();
        let _ = std::fs::remove_file(&dir);
        let first = auth.open_session();
        for _ in 0..MAX_SESSIONS {
            auth.open_session();
        }
        assert_eq!(auth.sessions().len(), MAX_SESSIONS);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={first}")).unwrap(),
        );
        assert!(!auth.allows(&headers), "the oldest session was evicted");
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert!(auth.allows(&bearer));
    }
}
