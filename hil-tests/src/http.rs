//! A small HTTP/1.1 client over a blocking loopback socket (one request per
//! connection, as the agent's server serves them), a server-sent-events
//! reader, and validation of responses against `docs/openapi.yaml`.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; a body that is not JSON becomes a string saying
    /// so (which no schema of the API accepts).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| serde_json::Value::String(format!("not JSON ({e}): {}", self.body)))
    }
}

/// Sends `method path` with `headers` and `body`, reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            chunk.truncate(n);
            raw.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut raw)?;
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    })
}

fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    request(addr, "GET", path, &[], "")
}

/// `GET path` with a bearer token.
pub fn get_bearer(addr: SocketAddr, path: &str, token: &str) -> io::Result<Response> {
    let auth = format!("Bearer {token}");
    request(addr, "GET", path, &[("Authorization", &auth)], "")
}

/// A server-sent-events stream.
#[derive(Debug)]
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
}

impl EventStream {
    /// Opens `GET path` and reads the response head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let (status, _) = read_head(&mut reader)?;
        Ok(EventStream { reader, status })
    }

    /// The next event (`event:` name, `data:` text); `None` when the stream
    /// ended. Chunk-size lines and comments are skipped.
    pub fn next_event(&mut self) -> io::Result<Option<(String, String)>> {
        let mut event = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = l.strip_prefix("event:") {
                v.trim().clone_into(&mut event);
            } else if let Some(v) = l.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if l.is_empty() && !data.is_empty() {
                return Ok(Some((event, data)));
            }
        }
    }
}

/// `docs/openapi.yaml` as JSON.
pub fn openapi() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_default();
    docs.first().map_or(serde_json::Value::Null, yaml_to_json)
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Validates `body` against a schema of `docs/openapi.yaml`: `target` is
/// either `paths ROUTE STATUS` (the response's JSON schema) or a component
/// name (`TelemetryEvent`). The error lists every violation.
pub fn validate(
    spec: &serde_json::Value,
    target: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let null = serde_json::Value::Null;
    let schema = match target.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["paths", route, status] => {
            let escaped = route.replace('~', "~0").replace('/', "~1");
            let response = spec
                .pointer(&format!("/paths/{escaped}/get/responses/{status}"))
                .unwrap_or(&null);
            let response = match response.get("$ref").and_then(|r| r.as_str()) {
                Some(r) => spec.pointer(r.trim_start_matches('#')).unwrap_or(&null),
                None => response,
            };
            response
                .pointer("/content/application~1json/schema")
                .cloned()
                .unwrap_or_default()
        }
        [component] => serde_json::json!({ "$ref": format!("#/components/schemas/{component}") }),
        _ => return Err(format!("bad target {target}")),
    };
    if schema.is_null() {
        return Err(format!("openapi.yaml has no schema for {target}"));
    }
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": spec.get("components").cloned().unwrap_or_default(),
    });
    let validator =
        jsonschema::validator_for(&root).map_err(|e| format!("schema {target}: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{target}: {}\nbody: {body}", errors.join("; ")))
    }
}

/// Resident memory of process `pid` in bytes (`/proc/PID/status` `VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
