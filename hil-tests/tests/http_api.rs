//! The HTTP server of the real `spindle run` (issue 16), against simulated
//! Modbus devices and a mosquitto started here, on loopback: every API
//! response matches docs/openapi.yaml, a value shown is the simulated
//! register, `/readyz` waits for the broker, `/metrics` passes `promtool
//! check metrics` and agrees with `health`, a token is enforced (bearer and
//! the cookie login), and a client opening connections in a loop stays
//! under the cap with the agent's memory bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::float_cmp,
    clippy::cast_precision_loss
)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::{Broker, free_port, wait_for_listener};
use spindle_hil_tests::http::{
    EventStream, get, get_bearer, openapi, request, rss_bytes, validate,
};
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};

fn http_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

/// The agent with its devices polled every 200 ms and `[http]` `extra`.
fn start_agent(broker: &Broker, plant: &Plant, addr: SocketAddr, extra: &str) -> AgentProcess {
    let config = format!(
        "{}\n[http]\nlisten = \"{addr}\"\n{extra}\n",
        agent_toml(
            &broker.url(),
            "flush_interval = \"50ms\"",
            &plant.devices_toml("200ms")
        )
        .replace(
            "keep_alive = \"5s\"",
            "keep_alive = \"5s\"\nreconnect_max = \"1s\""
        )
    );
    let agent = AgentProcess::start(&config).unwrap();
    wait_for_listener(addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no HTTP listener: {e}\n{}", agent.log()));
    agent
}

/// Polls `check` every 50 ms until it returns `Some`, at most `limit`.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn every_api_response_matches_the_openapi_file_and_a_value_is_the_simulated_register() {
    let _serial = one_at_a_time();
    let spec = openapi();
    assert!(spec["paths"].is_object(), "docs/openapi.yaml did not load");
    let mut broker = Broker::start(false).unwrap();
    broker.stop();
    let plant = Plant::tcp(2).unwrap();
    let addr = http_addr();
    let agent = start_agent(&broker, &plant, addr, "");

    // Not ready before the broker was ever reached; ready once it was.
    let r = get(addr, "/readyz").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    validate(&spec, "paths /readyz 503", &r.json()).unwrap();
    assert_eq!(r.json()["waiting_for"], serde_json::json!(["broker"]));
    broker.restart().unwrap();
    let ready = wait_for(Duration::from_secs(10), || {
        let r = get(addr, "/readyz").ok()?;
        (r.status == 200).then_some(r)
    })
    .unwrap_or_else(|| panic!("never ready\n{}", agent.log()));
    validate(&spec, "paths /readyz 200", &ready.json()).unwrap();

    let r = get(addr, "/healthz").unwrap();
    assert_eq!(r.status, 200);
    validate(&spec, "paths /healthz 200", &r.json()).unwrap();

    let r = get(addr, "/api/v1/agent").unwrap();
    assert_eq!(r.status, 200);
    validate(&spec, "paths /api/v1/agent 200", &r.json()).unwrap();
    assert_eq!(r.json()["agent"], "gw-1");

    // dev1's register 7 holds 107 (plant.rs): the API shows it once polled.
    let dev1 = wait_for(Duration::from_secs(10), || {
        let body = get(addr, "/api/v1/devices/dev1").ok()?.json();
        (body["points"][7]["value"] != serde_json::Value::Null).then_some(body)
    })
    .unwrap_or_else(|| panic!("dev1 never got a value\n{}", agent.log()));
    validate(&spec, "paths /api/v1/devices/{name} 200", &dev1).unwrap();
    assert_eq!(dev1["points"][7]["name"], "r7");
    assert_eq!(dev1["points"][7]["value"], 107);
    assert_eq!(dev1["points"][7]["raw"], serde_json::json!([107]));
    assert_eq!(dev1["points"][7]["error"], serde_json::Value::Null);
    assert_eq!(dev1["state"], "online");
    assert_eq!(dev1["protocol"], "modbus-tcp");
    // A changed register shows up as the new value.
    plant.servers[1]
        .device()
        .set_registers(spindle_config::model::Area::Holding, 7, &[4321]);
    wait_for(Duration::from_secs(5), || {
        let body = get(addr, "/api/v1/devices/dev1").ok()?.json();
        (body["points"][7]["value"] == 4321
            && body["points"][7]["raw"] == serde_json::json!([4321]))
        .then_some(())
    })
    .expect("the new register value was never shown");

    let r = get(addr, "/api/v1/devices").unwrap();
    validate(&spec, "paths /api/v1/devices 200", &r.json()).unwrap();
    assert_eq!(r.json()["devices"].as_array().unwrap().len(), 2);
    let r = get(addr, "/api/v1/devices/nope").unwrap();
    assert_eq!(r.status, 404);
    validate(&spec, "paths /api/v1/devices/{name} 404", &r.json()).unwrap();

    let r = get(addr, "/api/v1/health").unwrap();
    assert_eq!(r.status, 200);
    validate(&spec, "paths /api/v1/health 200", &r.json()).unwrap();
    let r = get(addr, "/api/v1/kpi").unwrap();
    validate(&spec, "paths /api/v1/kpi 200", &r.json()).unwrap();
    let r = get(addr, "/api/v1/kpi/cnc_coverage/nope/history").unwrap();
    assert_eq!(r.status, 404);
    validate(
        &spec,
        "paths /api/v1/kpi/{kind}/{name}/history 404",
        &r.json(),
    )
    .unwrap();

    // Live updates: a telemetry event of a configured device.
    let mut events = EventStream::open(addr, "/api/v1/events", &[]).unwrap();
    assert_eq!(events.status, 200);
    let (kind, data) = events.next_event().unwrap().expect("the stream ended");
    assert_eq!(kind, "telemetry", "{data}");
    let event: serde_json::Value = serde_json::from_str(&data).unwrap();
    validate(&spec, "TelemetryEvent", &event).unwrap();
    assert!(
        event["device"] == "dev0" || event["device"] == "dev1",
        "{event}"
    );
    drop(events);

    // Live-update subscribers are capped at 16: the 17th gets 503 JSON, and
    // a place comes free when a subscriber leaves.
    let mut subscribers: Vec<EventStream> = (0..16)
        .map(|_| EventStream::open(addr, "/api/v1/events", &[]).unwrap())
        .collect();
    assert!(subscribers.iter().all(|s| s.status == 200));
    let r = get(addr, "/api/v1/events").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    validate(&spec, "Error", &r.json()).unwrap();
    subscribers.pop();
    let again = wait_for(Duration::from_secs(5), || {
        let s = EventStream::open(addr, "/api/v1/events", &[]).ok()?;
        (s.status == 200).then_some(s)
    });
    assert!(again.is_some(), "no place came free");
    drop(agent);
}

#[test]
fn metrics_pass_promtool_and_agree_with_health() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let plant = Plant::tcp(1).unwrap();
    let addr = http_addr();
    let agent = start_agent(&broker, &plant, addr, "");
    wait_for(Duration::from_secs(10), || {
        let r = get(addr, "/metrics").ok()?;
        (metric(&r.body, "spindle_mqtt_connected") == Some(1.0)
            && metric(&r.body, "spindle_device_polls_total{device=\"dev0\"}")? >= 3.0)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("never connected and polled\n{}", agent.log()));

    let before = get(addr, "/api/v1/health").unwrap().json();
    let metrics = get(addr, "/metrics").unwrap();
    let after = get(addr, "/api/v1/health").unwrap().json();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = &metrics.body;

    // promtool reads the exposition on stdin.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed: .ci/run installs it");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each counter lies between the health reports read around it.
    let between = |series: &str, pointer: &str| {
        let m = metric(text, series).unwrap_or_else(|| panic!("no {series}\n{text}"));
        let lo = before.pointer(pointer).unwrap().as_f64().unwrap();
        let hi = after.pointer(pointer).unwrap().as_f64().unwrap();
        assert!(
            lo <= m && m <= hi,
            "{series} = {m}, health {pointer} {lo}..{hi}"
        );
    };
    between(
        "spindle_device_polls_total{device=\"dev0\"}",
        "/devices/dev0/polls",
    );
    between(
        "spindle_device_good_polls_total{device=\"dev0\"}",
        "/devices/dev0/good_polls",
    );
    between(
        "spindle_device_errors_total{device=\"dev0\",error=\"timeout\"}",
        "/devices/dev0/errors/timeout",
    );
    between("spindle_mqtt_published_total", "/mqtt/published");
    between("spindle_mqtt_acknowledged_total", "/mqtt/acked");
    between("spindle_mqtt_connects_total", "/mqtt/connects");
    between("spindle_outbox_gaps_total", "/outbox/gaps");
    // The histogram counts every poll (+Inf bucket = count = polls).
    let count = metric(
        text,
        "spindle_device_poll_latency_seconds_count{device=\"dev0\"}",
    )
    .unwrap();
    let inf = metric(
        text,
        "spindle_device_poll_latency_seconds_bucket{device=\"dev0\",le=\"+Inf\"}",
    )
    .unwrap();
    assert_eq!(count, inf);
    between(
        "spindle_device_poll_latency_seconds_count{device=\"dev0\"}",
        "/devices/dev0/polls",
    );
    assert_eq!(
        metric(text, "spindle_device_online{device=\"dev0\"}"),
        Some(1.0)
    );
    let rss = metric(text, "process_resident_memory_bytes").unwrap();
    let pid_rss = rss_bytes(agent.pid().unwrap()).unwrap() as f64;
    assert!(
        rss > 1e6 && (rss - pid_rss).abs() < 16e6,
        "rss {rss} vs /proc {pid_rss}"
    );
    assert!(metric(text, "process_cpu_seconds_total").unwrap() > 0.0);
    drop(agent);
}

#[test]
fn a_token_is_required_as_bearer_or_a_login_cookie() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let plant = Plant::tcp(1).unwrap();
    let addr = http_addr();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("http-token");
    std::fs::write(&token_file, "correct-horse-battery\n").unwrap();
    let agent = start_agent(
        &broker,
        &plant,
        addr,
        &format!("token_file = \"{}\"", token_file.display()),
    );
    let spec = openapi();
    assert!(
        !agent.log().contains("correct-horse-battery"),
        "the token was logged"
    );

    // Probes are open; the API and metrics are not.
    assert_eq!(get(addr, "/healthz").unwrap().status, 200);
    for path in [
        "/api/v1/devices",
        "/api/v1/health",
        "/metrics",
        "/api/v1/events",
    ] {
        let r = get(addr, path).unwrap();
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        validate(&spec, "Error", &r.json()).unwrap();
    }
    assert_eq!(
        get_bearer(addr, "/api/v1/devices", "wrong").unwrap().status,
        401
    );
    let r = get_bearer(addr, "/api/v1/devices", "correct-horse-battery").unwrap();
    assert_eq!(r.status, 200);
    validate(&spec, "paths /api/v1/devices 200", &r.json()).unwrap();
    assert_eq!(
        get_bearer(addr, "/metrics", "correct-horse-battery")
            .unwrap()
            .status,
        200
    );

    // A page without auth goes to the login form.
    let r = get(addr, "/").unwrap();
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let form = get(addr, "/login").unwrap();
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"token\""));

    // Cookie login over plain HTTP.
    let form_headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let wrong = request(addr, "POST", "/login", &form_headers, "token=nope").unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let ok = request(
        addr,
        "POST",
        "/login",
        &form_headers,
        "token=correct-horse-battery",
    )
    .unwrap();
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/"));
    let cookie = ok.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("spindle_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("correct-horse-battery"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = [("Cookie", session.as_str())];
    let r = request(addr, "GET", "/api/v1/agent", &with_cookie, "").unwrap();
    assert_eq!(r.status, 200);
    validate(&spec, "paths /api/v1/agent 200", &r.json()).unwrap();
    assert_eq!(
        request(addr, "GET", "/", &with_cookie, "").unwrap().status,
        200
    );
    let mut events = EventStream::open(addr, "/api/v1/events", &with_cookie).unwrap();
    assert_eq!(events.status, 200);
    drop(events.next_event());

    // Logout ends the session.
    let out = request(addr, "POST", "/logout", &with_cookie, "").unwrap();
    assert_eq!(out.status, 303);
    assert_eq!(
        request(addr, "GET", "/api/v1/agent", &with_cookie, "")
            .unwrap()
            .status,
        401
    );
    assert!(
        !agent.log().contains("correct-horse-battery"),
        "the token was logged"
    );
    drop(agent);
}

#[test]
fn a_client_opening_connections_in_a_loop_stays_under_the_cap_with_memory_bounded() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let plant = Plant::tcp(1).unwrap();
    let addr = http_addr();
    let agent = start_agent(&broker, &plant, addr, "");
    let pid = agent.pid().unwrap();
    // Warm up: a few requests of every kind, then the baseline.
    for _ in 0..20 {
        get(addr, "/api/v1/devices/dev0").unwrap();
        get(addr, "/metrics").unwrap();
    }
    let baseline = rss_bytes(pid).unwrap();

    // 2000 connections opened in a loop, up to 40 held open at a time
    // (idle: they send nothing), every tenth making a request.
    let mut held: Vec<TcpStream> = Vec::new();
    let mut peak_served = 0.0_f64;
    for i in 0..2000 {
        if i % 10 == 0 {
            let r = get(addr, "/api/v1/devices/dev0").unwrap();
            assert_eq!(r.status, 200);
        } else {
            held.push(TcpStream::connect(addr).unwrap());
        }
        if held.len() >= 40 {
            held.drain(..20);
        }
        if i % 500 == 499 {
            let m = get(addr, "/metrics").unwrap();
            peak_served = peak_served.max(metric(&m.body, "spindle_http_connections").unwrap());
        }
    }
    // 100 idle connections take every slot: a request gets no answer yet.
    held.clear();
    for _ in 0..100 {
        held.push(TcpStream::connect(addr).unwrap());
    }
    let mut waiting = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(
        &mut waiting,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = std::io::Read::read(&mut waiting, &mut buf);
    assert!(
        early.is_err(),
        "answered while 100 idle connections were open: the cap did not hold"
    );
    // Closing them frees the slots: the waiting request is answered.
    held.clear();
    waiting
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let n = std::io::Read::read(&mut waiting, &mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let m = get(addr, "/metrics").unwrap();
    peak_served = peak_served.max(metric(&m.body, "spindle_http_connections").unwrap());
    assert!(peak_served <= 64.0, "served {peak_served} at once");
    let after = rss_bytes(pid).unwrap();
    eprintln!("rss baseline {baseline} after {after}");
    assert!(
        after < baseline + (8 << 20),
        "RSS grew from {baseline} to {after} bytes"
    );
    drop(agent);
}

#[test]
fn check_refuses_a_non_loopback_listen_without_a_token_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[http]\nlisten = \"0.0.0.0:9180\"\n",
        agent_toml("mqtt://127.0.0.1:1883", "", "")
    );
    let line = text.lines().count();
    let path = dir.path().join("plant.toml");
    std::fs::write(&path, &text).unwrap();
    let out =
        spindle_hil_tests::agent::run_spindle(&["check", "-c", path.to_str().unwrap()]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "plant.toml:{line}:10: http.listen 0.0.0.0:9180 is not a loopback address: give http.token_file (a token is required off loopback)"
        )),
        "{stderr}"
    );
}

/// One request over TLS trusting only `cert_pem`; the raw response text.
fn tls_request(addr: SocketAddr, cert_pem: &str, request: &str) -> std::io::Result<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    std::io::Write::write_all(&mut tls, request.as_bytes())?;
    let mut out = Vec::new();
    // The server closes after one response (no TLS close_notify is needed
    // for a response with a length).
    let _ = std::io::Read::read_to_end(&mut tls, &mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn over_tls_the_api_answers_and_the_session_cookie_is_secure() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let plant = Plant::tcp(1).unwrap();
    let addr = http_addr();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("http.crt"), &cert_pem).unwrap();
    std::fs::write(
        dir.path().join("http.key"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "tls-token-1234\n").unwrap();
    let d = dir.path().display();
    let agent = start_agent(
        &broker,
        &plant,
        addr,
        &format!(
            "cert_file = \"{d}/http.crt\"\nkey_file = \"{d}/http.key\"\ntoken_file = \"{d}/token\""
        ),
    );
    let head = format!("Host: {addr}\r\nConnection: close\r\n");
    let r = tls_request(
        addr,
        &cert_pem,
        &format!("GET /healthz HTTP/1.1\r\n{head}\r\n"),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}\n{}", agent.log());
    assert!(r.ends_with("{\"status\":\"alive\"}"), "{r}");
    let r = tls_request(
        addr,
        &cert_pem,
        &format!(
            "GET /api/v1/devices HTTP/1.1\r\n{head}Authorization: Bearer tls-token-1234\r\n\r\n"
        ),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = "token=tls-token-1234";
    let r = tls_request(
        addr,
        &cert_pem,
        &format!(
            "POST /login HTTP/1.1\r\n{head}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let cookie = r
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l.to_owned())
        })
        .unwrap_or_else(|| panic!("no cookie: {r}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = get(addr, "/healthz");
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 200),
        "{plain:?}"
    );
    drop(agent);
}

/// A local-history line of KPI `cnc_coverage` `name` for the 15-minute window
/// `k` after 2026-11-15T00:00Z (the layout `spindle` writes).
fn history_line(name: &str, k: u64, ts_offset: u64) -> String {
    const START: u64 = 1_794_700_800_000; // 2026-11-15T00:00:00Z
    let start = START + k * 900_000;
    format!(
        "{{\"ts\":{},\"kind\":\"cnc_coverage\",\"name\":\"{name}\",\"window\":{{\"start\":{start},\"end\":{}}},\"count_ratio\":1,\"networked_ratio\":1,\"time_ratio\":0.5,\"equipment\":1,\"numerically_controlled\":1,\"networked\":1,\"running_s\":900,\"cnc_running_s\":450,\"quality\":\"good\",\"flags\":[]}}\n",
        start + 900_000 + ts_offset,
        start + 900_000
    )
}

#[test]
fn kpi_history_is_paged_by_window_start_and_bad_parameters_are_json_errors() {
    let _serial = one_at_a_time();
    let broker = Broker::start(false).unwrap();
    let addr = http_addr();
    let config = include_str!("../../config/tests/base.toml")
        .replace(
            "data_dir = \"/var/lib/spindle\"",
            "data_dir = \"{data_dir}\"",
        )
        .replace("password_file = \"/etc/spindle/mqtt.secret\"\n", "")
        .replace("mqtt://127.0.0.1:1883", &broker.url());
    let agent = AgentProcess::start(&format!("{config}\n[http]\nlisten = \"{addr}\"\n")).unwrap();
    wait_for_listener(addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("no HTTP listener: {e}\n{}", agent.log()));
    let spec = openapi();

    // Windows 0..5 of "plant", written out of order, one twice (a crash
    // between history and outbox), and one of another KPI name.
    let dir = agent.data_dir().join("history");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for (k, ts) in [(2, 0), (0, 0), (1, 0), (0, 7), (4, 0), (3, 0)] {
        text.push_str(&history_line("plant", k, ts));
    }
    text.push_str(&history_line("elsewhere", 0, 0));
    std::fs::write(dir.join("2026-11.jsonl"), text).unwrap();

    let base = "/api/v1/kpi/cnc_coverage/plant/history?from=2026-11-15T00:00:00Z&to=2026-11-15T16:00:00%2B08:00";
    let mut starts = Vec::new();
    let mut path = format!("{base}&limit=2");
    let mut pages = 0;
    loop {
        let r = get(addr, &path).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        validate(&spec, "paths /api/v1/kpi/{kind}/{name}/history 200", &body).unwrap();
        for w in body["windows"].as_array().unwrap() {
            starts.push(w["window"]["start"].as_u64().unwrap());
            assert_eq!(w["name"], "plant");
            if starts.len() == 1 {
                assert!(
                    w["ts"].as_u64().unwrap() % 10 == 0,
                    "the first line written: {w}"
                );
            }
        }
        pages += 1;
        match body["next"].as_str() {
            Some(next) => path = format!("{base}&limit=2&cursor={next}"),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..5).map(|k| 1_794_700_800_000 + k * 900_000).collect();
    assert_eq!(starts, expected, "each window once, by start");
    assert_eq!(pages, 3);

    let kpi = get(addr, "/api/v1/kpi").unwrap().json();
    validate(&spec, "paths /api/v1/kpi 200", &kpi).unwrap();
    assert_eq!(kpi["kpi"].as_array().unwrap().len(), 2);

    for bad in [
        "/api/v1/kpi/cnc_coverage/plant/history?from=yesterday",
        "/api/v1/kpi/cnc_coverage/plant/history?limit=5000",
        "/api/v1/kpi/cnc_coverage/plant/history?limit=many",
        "/api/v1/kpi/cnc_coverage/plant/history?cursor=x",
    ] {
        let r = get(addr, bad).unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        validate(
            &spec,
            "paths /api/v1/kpi/{kind}/{name}/history 400",
            &r.json(),
        )
        .unwrap();
    }
    let r = get(addr, "/api/v1/kpi/no_such_kind/plant/history").unwrap();
    assert_eq!(r.status, 404);
    validate(
        &spec,
        "paths /api/v1/kpi/{kind}/{name}/history 404",
        &r.json(),
    )
    .unwrap();
    drop(agent);
}
