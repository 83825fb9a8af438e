//! A real headless browser for page tests: Debian's `chromium` driven
//! through `chromedriver` over `WebDriver` (W3C, JSON over HTTP).
//!
//! [`Browser::start`] starts chromedriver on a free loopback port and opens
//! one session of headless chromium (`--headless=new`, `--no-sandbox` since
//! tests run as root, a fresh profile directory). Dropping the [`Browser`]
//! ends the session and kills chromedriver and every process under it
//! (chromium's, even when the session could not be ended).
//!
//! The `WebDriver` client is a few blocking HTTP/1.1 requests over a
//! `TcpStream` (one connection per command, `Connection: close`): the tests
//! are synchronous, and the commands used are few (navigate, execute a
//! script, read the URL, take a screenshot). Conditions are awaited by
//! running a script that reads the DOM until it returns something truthy or
//! a deadline passes ([`Browser::wait_for`]); nothing sleeps a fixed time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::broker::{free_port, wait_for_listener};

/// A chromedriver child and one headless chromium session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: tempfile::TempDir,
}

/// Path of Debian's chromedriver (`chromium-driver`).
pub fn chromedriver_path() -> PathBuf {
    for candidate in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("chromedriver")
}

fn chromium_path() -> PathBuf {
    for candidate in ["/usr/lib/chromium/chromium", "/usr/bin/chromium"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("chromium")
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a `width`×`height` window.
    pub fn start(width: u32, height: u32) -> io::Result<Browser> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let driver = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let profile = tempfile::tempdir()?;
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        wait_for_listener(addr, Duration::from_secs(10))?;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium_path(), "args": args},
        }}});
        let reply = browser.command("POST", "/session", Some(&caps))?;
        let id = reply
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| io::Error::other(format!("no session id in {reply}")))?;
        id.clone_into(&mut browser.session);
        Ok(browser)
    }

    /// Loads `url` (returns when the document has loaded).
    pub fn goto(&self, url: &str) -> io::Result<()> {
        self.session_command("POST", "url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The URL of the current page.
    pub fn url(&self) -> io::Result<String> {
        let v = self.session_command("GET", "url", None)?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page
    /// and returns what it returned.
    pub fn execute(&self, script: &str, args: &[Value]) -> io::Result<Value> {
        self.session_command(
            "POST",
            "execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` over and over until it returns something other than
    /// `null`/`false`, or `limit` passes; returns that value with the instant
    /// it was seen, or `None` on timeout. Script errors (the page being
    /// replaced) count as "not yet".
    pub fn wait_for(&self, limit: Duration, script: &str) -> Option<(Value, Instant)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(v) = self.execute(script, &[]) {
                if !(v.is_null() || v == Value::Bool(false)) {
                    return Some((v, Instant::now()));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Each round trip through chromedriver takes a few ms; a short
            // pause keeps the poll from eating a core the agent needs.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> io::Result<Vec<u8>> {
        let v = self.session_command("GET", "screenshot", None)?;
        let b64 = v
            .as_str()
            .ok_or_else(|| io::Error::other("screenshot is not a string"))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(io::Error::other)
    }

    /// Resizes the window (CSS pixels of the outer window).
    pub fn set_size(&self, width: u32, height: u32) -> io::Result<()> {
        self.session_command(
            "POST",
            "window/rect",
            Some(&json!({ "width": width, "height": height })),
        )
        .map(drop)
    }

    fn session_command(&self, method: &str, path: &str, body: Option<&Value>) -> io::Result<Value> {
        self.command(method, &format!("/session/{}/{path}", self.session), body)
    }

    /// One `WebDriver` command; returns its `value`, or the `WebDriver` error as an `io::Error`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> io::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let (status, payload) = read_response(&mut stream)?;
        let v: Value = serde_json::from_slice(&payload).map_err(io::Error::other)?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status >= 300 || value.get("error").is_some_and(Value::is_string) {
            return Err(io::Error::other(format!(
                "WebDriver {method} {path}: {status} {value}"
            )));
        }
        Ok(value)
    }
}

/// Reads one HTTP/1.1 response (chromedriver may keep the connection open,
/// so the body ends by its `Content-Length` or its last chunk, not at EOF).
fn read_response(stream: &mut TcpStream) -> io::Result<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(done) = complete_response(&raw, false)? {
            return Ok(done);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return complete_response(&raw, true)?
                .ok_or_else(|| io::Error::other("WebDriver closed the connection mid-reply"));
        }
        raw.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
}

/// The status and body of `raw` once it holds a whole response, else `None`
/// (`eof`: the peer closed the connection after `raw`).
fn complete_response(raw: &[u8], eof: bool) -> io::Result<Option<(u16, Vec<u8>)>> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default()).to_ascii_lowercase();
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if let Some(length) = header("content-length:") {
        let length: usize = length.parse().map_err(io::Error::other)?;
        return Ok(body.get(..length).map(|b| (status, b.to_vec())));
    }
    if !header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        return Ok(eof.then(|| (status, body.to_vec()))); // ends at EOF
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default());
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(io::Error::other)?;
        if size == 0 {
            return Ok(Some((status, out)));
        }
        let Some(chunk) = rest.get(line_end + 2..line_end + 2 + size) else {
            return Ok(None);
        };
        out.extend_from_slice(chunk);
        rest = rest.get(line_end + 4 + size..).unwrap_or_default();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command("DELETE", &format!("/session/{}", self.session), None);
        }
        // Every chromium process chromedriver started (found by parent in
        // /proc, killed by pid: no process-group kill, which could reach
        // further than this browser), then chromedriver.
        let pids = descendants(self.driver.id());
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Every process under `root` (children, their children, …), from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid …": the command may hold spaces, so read after the last ')'.
            let parent = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 1..))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(parent) = parent {
                parent_of.push((pid, parent));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while let Some(&parent) = found.get(i) {
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found.retain(|&p| p != root);
    found
}
