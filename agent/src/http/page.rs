//! The plant engineer's status page: `GET /`, `GET /device/:name` and the
//! embedded assets under `GET /assets/:file`.
//!
//! Everything is compiled into the binary (`include_str!` of `assets/`);
//! nothing is fetched from elsewhere, and there is no build step: the page
//! is one HTML shell, one stylesheet and one plain script (`app.js`) that
//! reads the JSON API, follows `/api/v1/events` and draws the KPI plots as
//! inline SVG. The page routes hold no state and know nothing of auth: the
//! server's auth layer sits in front of `/` and `/device/…` and lets
//! `/assets/…` through (they hold no data). The sign-in form's markup
//! ([`login_html`]) lives here so it matches the page; the `/login` handler
//! is the server's.
//!
//! Caching: assets are answered with a strong `ETag` (a hash of their bytes,
//! fixed at compile time) and `Cache-Control: no-cache`, so a browser
//! revalidates with one small request and gets `304` until the binary
//! changes. The HTML shell is `no-store` (it sits behind auth). Every answer
//! carries a strict Content-Security-Policy: scripts, styles and connections
//! from this origin only.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");

/// An embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// Strong entity tag, quoted, from a hash of `body`.
    pub etag: &'static str,
}

/// FNV-1a 64 of `bytes`, at compile time.
// Indexing in a const fn (no `get` there): `i` stays below the length.
#[allow(clippy::indexing_slicing)]
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`, at compile time.
// Indexing in a const fn: `1 + i` < 18 and the nibble < 16.
#[allow(clippy::indexing_slicing)]
const fn etag_bytes(hash: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("assets/", $name));
        const TAG: [u8; 18] = etag_bytes(fnv1a(BODY.as_bytes()));
        const ETAG: &str = match std::str::from_utf8(&TAG) {
            Ok(s) => s,
            Err(_) => "\"0\"",
        };
        Asset {
            name: $name,
            content_type: $type,
            body: BODY,
            etag: ETAG,
        }
    }};
}

/// Every file under `/assets/`.
pub const ASSETS: [Asset; 2] = [
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
];

/// The embedded file called `name`, if there is one.
pub fn find_asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The answer for `asset`, given the request's `If-None-Match` (304 when it names the current tag).
pub fn asset_response(asset: &Asset, if_none_match: Option<&HeaderValue>) -> Response {
    let fresh = if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    common_headers(headers);
    response
}

/// The page shell (the same for `/` and `/device/:name`; `app.js` routes).
pub fn page_response() -> Response {
    html_response(INDEX_HTML.to_owned())
}

fn html_response(body: String) -> Response {
    let mut r = body.into_response();
    let headers = r.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    common_headers(headers);
    r
}

/// The sign-in form (a POST of field `token` to `/login`), in both
/// languages; with `failed`, it says the last token was wrong.
pub fn login_html(failed: bool) -> String {
    let notice = if failed {
        "<p class=\"error\" id=\"login-error\">Wrong token. <span class=\"zh\" lang=\"zh-CN\">令牌不正确。</span></p>"
    } else {
        ""
    };
    LOGIN_HTML.replace("<!--ERROR-->", notice)
}

/// [`login_html`] as a response with the page's headers.
pub fn login_response(failed: bool) -> Response {
    html_response(login_html(failed))
}

async fn index() -> Response {
    page_response()
}

async fn device(Path(_name): Path<String>) -> Response {
    page_response()
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match find_asset(&file) {
        Some(a) => asset_response(a, headers.get(header::IF_NONE_MATCH)),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no asset {file}") })),
        )
            .into_response(),
    }
}

/// The page routes: `/`, `/device/:name` (behind auth) and `/assets/:file` (public).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/device/:name", get(device))
        .route("/assets/:file", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_content_type_and_a_tag_from_its_bytes() {
        let css = find_asset("app.css").map(|a| a.content_type);
        assert_eq!(css, Some("text/css; charset=utf-8"));
        let js = find_asset("app.js").map(|a| a.content_type);
        assert_eq!(js, Some("text/javascript; charset=utf-8"));
        assert!(find_asset("../Cargo.toml").is_none());
        assert!(
            find_asset("index.html").is_none(),
            "the shell is served by its routes"
        );
        for a in &ASSETS {
            assert_eq!(a.etag.len(), 18);
            assert_eq!(
                a.etag,
                format!("\"{:016x}\"", fnv1a(a.body.as_bytes())),
                "{}",
                a.name
            );
        }
        assert_ne!(
            find_asset("app.css").map(|a| a.etag),
            find_asset("app.js").map(|a| a.etag)
        );
    }

    #[test]
    fn an_asset_is_revalidated_by_its_tag_and_answered_304_while_it_is_current() {
        let Some(js) = find_asset("app.js") else {
            panic!("app.js is embedded");
        };
        let full = asset_response(js, None);
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(
            full.headers()
                .get(header::CACHE_CONTROL)
                .map(HeaderValue::as_bytes),
            Some(&b"no-cache"[..])
        );
        assert_eq!(
            full.headers().get(header::ETAG).map(HeaderValue::as_bytes),
            Some(js.etag.as_bytes())
        );
        let tag = HeaderValue::from_static(js.etag);
        assert_eq!(
            asset_response(js, Some(&tag)).status(),
            StatusCode::NOT_MODIFIED
        );
        let old = HeaderValue::from_static("\"0000000000000000\"");
        assert_eq!(asset_response(js, Some(&old)).status(), StatusCode::OK);
    }

    #[test]
    fn the_shell_loads_only_embedded_assets_and_is_not_stored() {
        let r = page_response();
        assert_eq!(
            r.headers()
                .get(header::CACHE_CONTROL)
                .map(HeaderValue::as_bytes),
            Some(&b"no-store"[..])
        );
        assert!(
            r.headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .is_some_and(|v| v.to_str().is_ok_and(|s| s.contains("script-src 'self'")))
        );
        for needed in ["/assets/app.js", "/assets/app.css"] {
            assert!(INDEX_HTML.contains(needed), "{needed}");
        }
        for text in [INDEX_HTML, LOGIN_HTML] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        assert!(
            ASSETS
                .iter()
                .all(|a| !a.body.contains("https://") && !a.body.contains("//cdn")),
            "no outside resources"
        );
    }

    #[test]
    fn the_login_form_posts_a_token_field_and_says_when_the_last_one_was_wrong() {
        let form = login_html(false);
        assert!(form.contains("method=\"post\" action=\"/login\""));
        assert!(form.contains("name=\"token\" type=\"password\""));
        assert!(!form.contains("login-error"));
        assert!(login_html(true).contains("id=\"login-error\""));
    }
}
