//! `[http]`: goldens for its errors (exact `file:line:col: message`) and
//! the defaults. No socket is opened: `check` and `parse` only read.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use spindle_config::model::{DEFAULT_HTTP_LISTEN, Language};
use spindle_config::parse;

const BASE: &str = include_str!("base.toml");

/// The base configuration with an `[http]` table of `lines` appended; the
/// table's first key is on line `first_line()`.
fn with_http(lines: &str) -> String {
    format!("{BASE}\n[http]\n{lines}\n")
}

fn first_line() -> usize {
    BASE.lines().count() + 3
}

fn the_error(text: &str) -> String {
    match parse("plant.toml", text) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(errors) => {
            assert_eq!(errors.0.len(), 1, "expected one error, got:\n{errors}");
            errors.0[0].to_string()
        }
    }
}

#[test]
fn without_a_table_the_server_is_on_at_loopback_port_9180_in_english() {
    let config = parse("plant.toml", BASE).unwrap();
    assert!(config.http.enabled);
    assert_eq!(config.http.listen, DEFAULT_HTTP_LISTEN);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9180");
    assert_eq!(config.http.language, Language::En);
    assert!(config.http.token_file.is_none() && config.http.cert_file.is_none());
}

#[test]
fn a_non_loopback_listen_without_a_token_is_an_error_at_its_position() {
    assert_eq!(
        the_error(&with_http("listen = \"0.0.0.0:9180\"")),
        format!(
            "plant.toml:{}:10: http.listen 0.0.0.0:9180 is not a loopback address: give http.token_file (a token is required off loopback)",
            first_line()
        )
    );
    assert_eq!(
        the_error(&with_http("listen = \"192.168.1.20:80\"")),
        format!(
            "plant.toml:{}:10: http.listen 192.168.1.20:80 is not a loopback address: give http.token_file (a token is required off loopback)",
            first_line()
        )
    );
}

#[test]
fn a_non_loopback_listen_with_a_token_is_accepted_and_a_disabled_server_needs_none() {
    let token = std::env::temp_dir().join(format!("spindle-http-token-{}", std::process::id()));
    std::fs::write(&token, "s3cret\n").unwrap();
    let text = with_http(&format!(
        "listen = \"0.0.0.0:9180\"\ntoken_file = \"{}\"\nlanguage = \"zh\"",
        token.display()
    ));
    let config = parse("plant.toml", &text).unwrap();
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9180");
    assert_eq!(config.http.token_file.as_deref(), Some(token.as_path()));
    assert_eq!(config.http.language, Language::Zh);
    let _ = std::fs::remove_file(&token);
    let off = with_http("enabled = false\nlisten = \"0.0.0.0:9180\"");
    assert!(!parse("plant.toml", &off).unwrap().http.enabled);
    let v6 = with_http("listen = \"[::1]:9181\"");
    assert!(
        parse("plant.toml", &v6)
            .unwrap()
            .http
            .listen
            .ip()
            .is_loopback()
    );
}

#[test]
fn a_listen_that_is_not_an_ip_and_port_is_an_error() {
    assert_eq!(
        the_error(&with_http("listen = \"localhost:9180\"")),
        format!(
            "plant.toml:{}:10: http.listen must be an IP address and port like \"127.0.0.1:9180\" or \"[::1]:9180\", got \"localhost:9180\"",
            first_line()
        )
    );
}

#[test]
fn an_unreadable_token_file_an_unknown_language_and_a_lone_cert_are_errors() {
    assert_eq!(
        the_error(&with_http(
            "token_file = \"/nonexistent/spindle/http-token\""
        )),
        format!(
            "plant.toml:{}:14: cannot read token_file /nonexistent/spindle/http-token: No such file or directory (os error 2)",
            first_line()
        )
    );
    assert_eq!(
        the_error(&with_http("language = \"fr\"")),
        format!(
            "plant.toml:{}:12: http.language must be one of en, zh, got \"fr\"",
            first_line()
        )
    );
    assert_eq!(
        the_error(&with_http("cert_file = \"/etc/spindle/http.crt\"")),
        format!(
            "plant.toml:{}:13: http.cert_file needs http.key_file",
            first_line()
        )
    );
}

#[test]
fn an_unknown_http_key_is_rejected() {
    assert_eq!(
        the_error(&with_http("port = 80")),
        format!(
            "plant.toml:{}:1: unknown field `port`, expected one of `enabled`, `listen`, `token_file`, `cert_file`, `key_file`, `language`",
            first_line()
        )
    );
}
