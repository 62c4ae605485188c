//! The API process itself: TLS on the API port, one thread per connection
//! (bounded), answers built from what host-init says over the channel.

use super::admission::Admission;
use super::channel::{
    Call, CallReply, Endpoint, Init, Open, Purpose, Request, Started, StatusReply, CHANNEL_FD,
};
use super::http;
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any single read or write may wait (an idle body, a stalled client).
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// From accept to a complete request head, TLS handshake included: a client
/// that sends half a head and waits is cut off here, before authentication.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long an answer given before authentication waits for a body it refuses.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

struct Shared {
    tls: Arc<rustls::ServerConfig>,
    /// The control socket to host-init; each request opens its own
    /// exchange through it.
    control: Endpoint,
    admission: Arc<Admission>,
}

/// The TCP stream under TLS, with an optional deadline over all reads
/// (per-read timeouts alone let a client trickle a byte at a time forever).
pub struct Timed {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl Timed {
    fn set_deadline(&mut self, within: Option<Duration>) {
        self.deadline = within.map(|d| Instant::now() + d);
    }
}

impl std::io::Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = match self.deadline {
            None => IO_TIMEOUT,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request deadline passed",
                    ));
                }
                left.min(IO_TIMEOUT)
            }
        };
        self.tcp.set_read_timeout(Some(wait))?;
        self.tcp.read(buf)
    }
}

impl std::io::Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// A new exchange with host-init: a fresh socket pair, one end handed over.
fn exchange(shared: &Shared) -> Option<Endpoint> {
    let (mine, theirs) = Endpoint::pair().ok()?;
    shared.control.send(&Open, Some(&theirs)).ok()?;
    Some(mine)
}

/// Largest JSON body any route takes.
const MAX_JSON: u64 = 1 << 20;
/// Largest file upload or download through the API.
const MAX_FILE: u64 = 256 << 20;

fn tls_config(init: &Init) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(init.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e:?}"))?;
    let key = PrivateKeyDer::from_pem_slice(init.key_pem.as_bytes())
        .map_err(|e| format!("key: {e:?}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

fn status(shared: &Shared) -> Option<StatusReply> {
    let ex = exchange(shared)?;
    ex.send(&Request::Status, None::<&OwnedFd>).ok()?;
    ex.recv().ok().map(|(reply, _)| reply)
}

/// One call to host-init; the connection it passes back, if any.
fn call(shared: &Shared, auth: &str, call: Call) -> (CallReply, Option<UnixStream>) {
    let (reply, fd) = call_fd(shared, auth, call);
    (reply, fd.map(UnixStream::from))
}

/// A call whose reply may carry a descriptor of any kind.
fn call_fd(shared: &Shared, auth: &str, call: Call) -> (CallReply, Option<OwnedFd>) {
    let failed = || CallReply {
        status: 503,
        body: serde_json::json!({"error": "host-init did not answer"}),
        fd: false,
    };
    let Some(ex) = exchange(shared) else {
        return (failed(), None);
    };
    let req = Request::Call {
        auth: auth.to_string(),
        call,
    };
    if ex.send(&req, None::<&OwnedFd>).is_err() {
        return (failed(), None);
    }
    match ex.recv::<CallReply>() {
        Ok((reply, fd)) if reply.fd == fd.is_some() => (reply, fd),
        _ => (failed(), None),
    }
}

fn json_error(status: u16, msg: impl Into<String>) -> (u16, Value) {
    (status, serde_json::json!({"error": msg.into()}))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, Timed>;

/// The answer to a body that could not be read; `what` names it ("body",
/// "file") in the size refusal.
fn body_refusal(e: http::BodyError, what: &str) -> (u16, Value) {
    match e {
        http::BodyError::TooLarge(cap) => json_error(413, format!("{what} over {cap} bytes")),
        http::BodyError::LengthRequired => json_error(411, "send a Content-Length"),
        http::BodyError::Io(e) => json_error(400, format!("reading the body: {e}")),
    }
}

/// Asks host-init for a connection to the workspace's agent: its reply body
/// and the connection, or (when refused) the answer to give.
fn open_agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    purpose: Purpose,
) -> Result<(Value, UnixStream), (u16, Value)> {
    let (reply, stream) = call(
        shared,
        bearer,
        Call::OpenAgent {
            id: id.to_string(),
            purpose,
        },
    );
    match stream.filter(|_| reply.status == 200) {
        Some(s) => Ok((reply.body, s)),
        None => Err((reply.status, reply.body)),
    }
}

fn read_json(req: &http::Request, tls: &mut Tls) -> Result<Value, (u16, Value)> {
    let body = http::read_body(req, tls, MAX_JSON).map_err(|e| body_refusal(e, "body"))?;
    if body.is_empty() {
        return Err(json_error(400, "a JSON body is required"));
    }
    serde_json::from_slice(&body).map_err(|e| json_error(400, format!("malformed JSON: {e}")))
}

fn query<'a>(req: &'a http::Request, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecBody {
    argv: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    cwd: Option<String>,
    user: Option<String>,
    timeout_s: Option<u64>,
    /// Standard input, base64.
    stdin: Option<String>,
}

/// Streams an exec as NDJSON: {"stdout": b64} / {"stderr": b64} events,
/// then {"exit_code", "signal", "timed_out", "duration_ms"}.
fn exec(shared: &Shared, req: &http::Request, tls: &mut Tls, id: &str) -> Option<(u16, Value)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = match read_json(req, tls) {
        Ok(v) => v,
        Err(e) => return Some(e),
    };
    let body: ExecBody = match serde_json::from_value(body) {
        Ok(b) => b,
        Err(e) => return Some(json_error(422, format!("exec request: {e}"))),
    };
    if body.argv.is_empty() || body.argv.len() > 4096 || body.argv.iter().any(|a| a.contains('\0'))
    {
        return Some(json_error(
            422,
            "argv: 1 to 4096 arguments without NUL bytes",
        ));
    }
    let user = match body.user.as_deref() {
        None | Some("agent") => paddock_proto::User::Agent,
        Some("root") => paddock_proto::User::Root,
        Some(other) => {
            return Some(json_error(
                422,
                format!("user: {other:?} is not \"agent\" or \"root\""),
            ))
        }
    };
    let stdin = match body.stdin.as_deref().map(|s| b64.decode(s)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Some(json_error(422, format!("stdin: not base64: {e}"))),
    };
    let argv0 = body.argv[0].clone();
    let purpose = Purpose::Exec {
        argv0: argv0.clone(),
    };
    let (reply, stream) = match open_agent(shared, &req.bearer, id, purpose) {
        Ok(r) => r,
        Err(refusal) => return Some(refusal),
    };
    let mut env: std::collections::BTreeMap<String, String> =
        serde_json::from_value(reply.get("env").cloned().unwrap_or_default()).unwrap_or_default();
    env.extend(body.env);
    let request = paddock_proto::ExecRequest {
        argv: body.argv,
        env: env.into_iter().collect(),
        cwd: body.cwd,
        user,
        stdin: stdin.is_some(),
        timeout_ms: body.timeout_s.map(|s| s.saturating_mul(1000)),
    };
    let started = std::time::Instant::now();
    if http::start_chunked(tls, "application/x-ndjson").is_err() {
        return None;
    }
    let client = paddock_agent_client::AgentClient::from_connected(stream);
    let input: Option<Box<dyn std::io::Read + Send>> =
        stdin.map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::Read + Send>);
    let mut client_gone = false;
    let result = client.exec(request, input, |o| {
        let line = match o {
            paddock_agent_client::Output::Stdout(d) => serde_json::json!({"stdout": b64.encode(d)}),
            paddock_agent_client::Output::Stderr(d) => serde_json::json!({"stderr": b64.encode(d)}),
        };
        if !client_gone && http::write_chunk(tls, format!("{line}\n").as_bytes()).is_err() {
            client_gone = true;
        }
    });
    let duration_ms = started.elapsed().as_millis() as u64;
    let (last, exit_code, signal) = match result {
        Ok(st) => (
            serde_json::json!({"exit_code": st.code, "signal": st.signal, "timed_out": st.timed_out, "duration_ms": duration_ms}),
            st.code,
            st.signal,
        ),
        Err(e) => (
            serde_json::json!({"error": e.to_string(), "duration_ms": duration_ms}),
            None,
            None,
        ),
    };
    let _ = http::write_chunk(tls, format!("{last}\n").as_bytes());
    let _ = http::end_chunks(tls);
    let _ = call(
        shared,
        &req.bearer,
        Call::ExecEnded {
            id: id.to_string(),
            argv0,
            exit_code,
            signal,
            duration_ms,
        },
    );
    None
}

fn files(shared: &Shared, req: &http::Request, tls: &mut Tls, id: &str) -> Option<(u16, Value)> {
    let Some(path) = query(req, "path").map(str::to_string) else {
        return Some(json_error(400, "the path query parameter is required"));
    };
    if !path.starts_with('/') || path.len() > 4096 || path.contains('\0') {
        return Some(json_error(
            422,
            "path: an absolute path inside the workspace",
        ));
    }
    let (user, root) = match query(req, "user") {
        None | Some("agent") => (paddock_proto::User::Agent, false),
        Some("root") => (paddock_proto::User::Root, true),
        Some(other) => {
            return Some(json_error(
                422,
                format!("user: {other:?} is not \"agent\" or \"root\""),
            ))
        }
    };
    match req.method.as_str() {
        "PUT" => {
            let mode = match query(req, "mode") {
                None => 0o644,
                Some(m)
                    if (1..=4).contains(&m.len())
                        && m.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
                {
                    u32::from_str_radix(m, 8).unwrap_or(0o644)
                }
                Some(_) => return Some(json_error(422, "mode: octal permission bits, e.g. 644")),
            };
            if req.chunked {
                return Some(body_refusal(http::BodyError::LengthRequired, "file"));
            }
            let len = req.content_length.unwrap_or(0);
            if len > MAX_FILE {
                return Some(body_refusal(http::BodyError::TooLarge(MAX_FILE), "file"));
            }
            if !root && mode & 0o6000 != 0 {
                return Some(json_error(
                    422,
                    format!("mode {mode:o}: setuid and setgid bits need user=root"),
                ));
            }
            let purpose = Purpose::WriteFile {
                path: path.clone(),
                root,
            };
            let stream = match open_agent(shared, &req.bearer, id, purpose) {
                Ok((_, s)) => s,
                Err(refusal) => return Some(refusal),
            };
            let client = paddock_agent_client::AgentClient::from_connected(stream).as_user(user);
            // Streamed from the client to the agent: an upload never sits
            // whole in this process's memory.
            req.body_taken.set(true);
            let mut body = http::ExactBody::new(req, tls, len);
            let written = client.write_file(&path, mode, &mut body);
            let complete = body.complete();
            Some(match written {
                Ok(()) if complete => (
                    200,
                    serde_json::json!({"path": path, "bytes": len, "mode": format!("{mode:o}")}),
                ),
                Ok(()) => json_error(400, "the body ended before its Content-Length"),
                Err(e) if !complete => json_error(400, format!("reading the body: {e}")),
                Err(e) => json_error(422, e.to_string()),
            })
        }
        "GET" => {
            let purpose = Purpose::ReadFile {
                path: path.clone(),
                root,
            };
            let stream = match open_agent(shared, &req.bearer, id, purpose) {
                Ok((_, s)) => s,
                Err(refusal) => return Some(refusal),
            };
            let client = paddock_agent_client::AgentClient::from_connected(stream).as_user(user);
            // Streamed as chunks as the agent sends them; the answer starts
            // with the first bytes, so an error before them is still a status.
            let mut out = ChunkedOut {
                tls,
                started: false,
                left: MAX_FILE,
            };
            match client.read_file(&path, &mut out) {
                Ok(_) if out.started => {
                    let _ = http::end_chunks(out.tls);
                    None
                }
                Ok(_) => {
                    let _ = http::write_bytes(out.tls, &[]);
                    None
                }
                // Cut mid-stream: no last chunk, so the client sees a truncated body.
                Err(_) if out.started => None,
                Err(e) if e.to_string().contains("NotFound") => {
                    Some(json_error(404, e.to_string()))
                }
                Err(e) => Some(json_error(422, e.to_string())),
            }
        }
        _ => Some(json_error(405, "use GET or PUT")),
    }
}

/// One file of a forensic snapshot, sent from the descriptor host-init
/// passes back (this process cannot open files itself).
fn forensic_file(
    shared: &Shared,
    req: &http::Request,
    tls: &mut Tls,
    id: &str,
    name: &str,
) -> Option<(u16, Value)> {
    let call = Call::ForensicFile {
        id: id.to_string(),
        name: name.to_string(),
    };
    let (reply, fd) = call_fd(shared, &req.bearer, call);
    let len = reply.body.get("bytes").and_then(Value::as_u64);
    match (fd, len) {
        (Some(fd), Some(len)) if reply.status == 200 => {
            let _ = http::write_from(tls, &mut std::fs::File::from(fd), len);
            None
        }
        _ => Some((reply.status, reply.body)),
    }
}

/// A download's bytes as response chunks, the head sent with the first.
struct ChunkedOut<'a> {
    tls: &'a mut Tls,
    started: bool,
    left: u64,
}

impl std::io::Write for ChunkedOut<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() as u64 > self.left {
            return Err(std::io::Error::other(format!("file over {MAX_FILE} bytes")));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if !self.started {
            http::start_chunked(self.tls, "application/octet-stream")?;
            self.started = true;
        }
        self.left -= data.len() as u64;
        http::write_chunk(self.tls, data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The methods a known resource has; None for paths that are not ours.
fn allowed_methods(segs: &[&str]) -> Option<&'static [&'static str]> {
    Some(match segs {
        ["v1", "health"] | ["metrics"] | ["v1", "audit"] | ["v1", "keys"] => &["GET"],
        ["v1", "workspaces"] | ["v1", "tokens"] | ["v1", "links"] => &["GET", "POST"],
        ["v1", "links", _] => &["DELETE"],
        ["v1", "workspaces", _] => &["GET", "DELETE"],
        ["v1", "workspaces", _, "stop" | "exec" | "quarantine" | "limits"] => &["POST"],
        ["v1", "workspaces", _, "egress"] => &["PUT"],
        ["v1", "workspaces", _, "ports"] => &["POST"],
        ["v1", "workspaces", _, "ports", _] => &["DELETE"],
        ["v1", "workspaces", _, "forensics"] => &["DELETE"],
        ["v1", "workspaces", _, "forensics", _] => &["GET"],
        ["v1", "workspaces", _, "files"] => &["GET", "PUT"],
        ["v1", "tokens", _] => &["DELETE"],
        ["v1", "tokens", _, "rotate"] | ["v1", "tls", "rotate"] | ["v1", "keys", "recover"] => {
            &["POST"]
        }
        _ => return None,
    })
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// A label filter or label: 1-63 of letters, digits, '.', '_', '-'.
fn label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Answers one request; None when the handler already wrote the response.
fn route(shared: &Shared, req: &http::Request, tls: &mut Tls) -> Option<(u16, Value)> {
    let segs = segments(&req.path);
    let m = req.method.as_str();
    let simple = |c: Call| {
        let (r, _) = call(shared, &req.bearer, c);
        Some((r.status, r.body))
    };
    match (m, segs.as_slice()) {
        ("GET", ["v1", "health"]) => Some(match status(shared) {
            Some(s) => (
                200,
                serde_json::json!({
                    "status": if s.state == "ready" { "ok" } else { "degraded" },
                    "state": s.state,
                    "version": s.version,
                    "workspaces": s.workspaces,
                    "uptime_s": s.uptime_s,
                }),
            ),
            None => json_error(503, "host-init did not answer"),
        }),
        ("POST", ["v1", "workspaces"]) => match read_json(req, tls) {
            Ok(spec) => simple(Call::CreateWorkspace { spec }),
            Err(e) => Some(e),
        },
        ("GET", ["v1", "workspaces"]) => {
            let mut labels = Vec::new();
            for (k, v) in &req.query {
                if k == "label" {
                    match v.split_once('=') {
                        Some((a, b)) if label_ok(a) && label_ok(b) => {
                            labels.push((a.to_string(), b.to_string()))
                        }
                        _ => {
                            return Some(json_error(
                                400,
                                format!("label filter {v:?}: use label=KEY=VALUE, each 1-63 of letters, digits, '.', '_', '-'"),
                            ))
                        }
                    }
                }
            }
            simple(Call::ListWorkspaces { labels })
        }
        (_, ["v1", "workspaces", id, ..]) if !valid_id(id) => {
            Some(json_error(404, "no such endpoint"))
        }
        ("GET", ["v1", "workspaces", id]) => simple(Call::GetWorkspace { id: id.to_string() }),
        ("DELETE", ["v1", "workspaces", id]) => {
            simple(Call::DeleteWorkspace { id: id.to_string() })
        }
        ("POST", ["v1", "workspaces", id, "stop"]) => {
            simple(Call::StopWorkspace { id: id.to_string() })
        }
        ("POST", ["v1", "workspaces", id, "limits"]) => match read_json(req, tls) {
            Ok(request) => simple(Call::SetLimits {
                id: id.to_string(),
                request,
            }),
            Err(e) => Some(e),
        },
        ("POST", ["v1", "workspaces", id, "ports"]) => match read_json(req, tls) {
            Ok(request) => simple(Call::PublishPort {
                id: id.to_string(),
                request,
            }),
            Err(e) => Some(e),
        },
        ("DELETE", ["v1", "workspaces", id, "ports", port]) => simple(Call::UnpublishPort {
            id: id.to_string(),
            port: port.to_string(),
        }),
        ("GET", ["v1", "links"]) => simple(Call::ListLinks),
        ("POST", ["v1", "links"]) => match read_json(req, tls) {
            Ok(request) => simple(Call::CreateLink { request }),
            Err(e) => Some(e),
        },
        ("DELETE", ["v1", "links", id]) => simple(Call::DeleteLink { id: id.to_string() }),
        ("PUT", ["v1", "workspaces", id, "egress"]) => match read_json(req, tls) {
            Ok(request) => simple(Call::SetEgress {
                id: id.to_string(),
                request,
            }),
            Err(e) => Some(e),
        },
        ("POST", ["v1", "workspaces", id, "quarantine"]) => {
            simple(Call::QuarantineWorkspace { id: id.to_string() })
        }
        ("DELETE", ["v1", "workspaces", id, "forensics"]) => {
            simple(Call::DeleteForensics { id: id.to_string() })
        }
        ("GET", ["v1", "workspaces", id, "forensics", name]) => {
            forensic_file(shared, req, tls, id, name)
        }
        ("POST", ["v1", "workspaces", id, "exec"]) => exec(shared, req, tls, id),
        (_, ["v1", "workspaces", id, "files"]) => files(shared, req, tls, id),
        ("POST", ["v1", "tokens"]) => match read_json(req, tls) {
            Ok(request) => simple(Call::CreateToken { request }),
            Err(e) => Some(e),
        },
        ("GET", ["v1", "tokens"]) => simple(Call::ListTokens),
        ("DELETE", ["v1", "tokens", id]) if valid_id(id) => {
            simple(Call::RevokeToken { id: id.to_string() })
        }
        ("POST", ["v1", "tokens", id, "rotate"]) if valid_id(id) => {
            simple(Call::RotateToken { id: id.to_string() })
        }
        ("POST", ["v1", "tls", "rotate"]) => simple(Call::RotateTls),
        ("GET", ["v1", "keys"]) => simple(Call::KeyStatus),
        ("POST", ["v1", "keys", "recover"]) => match read_json(req, tls) {
            Ok(v) => match v.get("recovery_secret").and_then(Value::as_str) {
                Some(secret) if secret.len() <= 256 => simple(Call::RecoverKeys {
                    secret: secret.to_string(),
                }),
                _ => Some(json_error(
                    422,
                    "recovery_secret: a string (the secret shown at first boot) is required",
                )),
            },
            Err(e) => Some(e),
        },
        // Answered 404 by host-init unless the image enables test probes.
        ("POST", ["v1", "debug", "process-scan"]) => match read_json(req, tls) {
            Ok(v) => match v.get("needle").and_then(Value::as_str) {
                Some(n) => simple(Call::ScanProcesses {
                    needle: n.to_string(),
                }),
                None => Some(json_error(422, "needle: a string is required")),
            },
            Err(e) => Some(e),
        },
        ("POST", ["v1", "debug", "drop-caches"]) => simple(Call::DropCaches),
        ("POST", ["v1", "debug", "open-disk"]) => match read_json(req, tls) {
            Ok(v) => match v.get("workspace").and_then(Value::as_str) {
                Some(id) if valid_id(id) => simple(Call::ProbeDisk { id: id.to_string() }),
                _ => Some(json_error(422, "workspace: a workspace id is required")),
            },
            Err(e) => Some(e),
        },
        ("GET", ["metrics"]) => {
            let (r, _) = call(shared, &req.bearer, Call::Metrics);
            match r.body.get("text").and_then(Value::as_str) {
                Some(text) if r.status == 200 => {
                    let _ = http::write_text(tls, text);
                    None
                }
                _ => Some((r.status, r.body)),
            }
        }
        ("GET", ["v1", "audit"]) => {
            let limit = match query(req, "limit").map(str::parse::<usize>) {
                None => 1000,
                Some(Ok(l)) if (1..=10_000).contains(&l) => l,
                Some(_) => return Some(json_error(400, "limit: a number from 1 to 10000")),
            };
            let filters: Vec<(String, String)> = req
                .query
                .iter()
                .filter(|(k, _)| ["event", "workspace", "token"].contains(&k.as_str()))
                .cloned()
                .collect();
            if let Some((k, _)) = filters.iter().find(|(_, v)| v.len() > 64) {
                return Some(json_error(400, format!("{k}: at most 64 characters")));
            }
            simple(Call::ReadAudit { filters, limit })
        }
        _ => Some(json_error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        )),
    }
}

/// Whether a request is answered without a token (and so before one is checked).
fn public(req: &http::Request) -> bool {
    req.method == "GET" && segments(&req.path) == ["v1", "health"]
}

/// Who the bearer is, asked before any body is read: Ok((tenant, admin)),
/// or the refusal to answer with.
fn who(shared: &Shared, bearer: &str) -> Result<(String, bool), (u16, Value)> {
    let (reply, _) = call(shared, bearer, Call::WhoAmI);
    let tenant = reply.body.get("tenant").and_then(Value::as_str);
    let admin = reply.body.get("admin").and_then(Value::as_bool);
    match (reply.status, tenant, admin) {
        (200, Some(t), Some(a)) => Ok((t.to_string(), a)),
        (200, _, _) => Err(json_error(503, "host-init gave no identity")),
        (status, _, _) => Err((status, reply.body)),
    }
}

fn handle(shared: &Shared, tcp: TcpStream) {
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let _ = nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::KeepAlive, &true);
    let Ok(conn) = rustls::ServerConnection::new(shared.tls.clone()) else {
        return;
    };
    let timed = Timed {
        tcp,
        deadline: Some(Instant::now() + HEAD_DEADLINE),
    };
    let mut tls = rustls::StreamOwned::new(conn, timed);
    // Held until this function returns: a non-admin request's slot.
    let mut _slot = None;
    let answer = match http::read_request(&mut tls) {
        Ok(req) => {
            tls.sock.set_deadline(None);
            let allowed = allowed_methods(&segments(&req.path));
            let identity = if public(&req) || allowed.is_none() {
                Ok(None)
            } else {
                who(shared, &req.bearer).map(Some)
            };
            match identity {
                Err(refusal) => {
                    // No token, no body read: a refusal costs the client a
                    // round trip and the server next to nothing.
                    tls.sock.set_deadline(Some(DRAIN_DEADLINE));
                    http::discard_body(&req, &mut tls, MAX_JSON);
                    Some(refusal)
                }
                Ok(id) => {
                    let admitted = match &id {
                        Some((tenant, admin)) => shared
                            .admission
                            .request(tenant, *admin)
                            .map_err(|e| json_error(429, e.to_string())),
                        None => Ok(None),
                    };
                    match admitted {
                        Err(refusal) => {
                            tls.sock.set_deadline(Some(DRAIN_DEADLINE));
                            http::discard_body(&req, &mut tls, MAX_JSON);
                            Some(refusal)
                        }
                        Ok(slot) => {
                            _slot = slot;
                            if let Some(methods) =
                                allowed.filter(|m| !m.contains(&req.method.as_str()))
                            {
                                http::discard_body(&req, &mut tls, MAX_JSON);
                                let _ = http::write_not_allowed(&mut tls, methods);
                                None
                            } else {
                                let answer = route(shared, &req, &mut tls);
                                if answer.is_some() {
                                    http::discard_body(&req, &mut tls, MAX_JSON);
                                }
                                answer
                            }
                        }
                    }
                }
            }
        }
        Err(http::HttpError::TooLarge) => Some(json_error(413, "request head too large")),
        Err(http::HttpError::Malformed(m)) => Some(json_error(400, m)),
        Err(_) => return,
    };
    if let Some((status, body)) = answer {
        let _ = http::write_json(&mut tls, status, &body);
    }
    tls.conn.send_close_notify();
    let _ = std::io::Write::flush(&mut tls);
}

/// Entry point of `paddock-init api-server`.
pub fn main() -> std::process::ExitCode {
    // SAFETY: host-init placed the control socket (SOCK_SEQPACKET) at
    // CHANNEL_FD before exec; this process owns it from here on.
    let control = unsafe { Endpoint::from_raw(CHANNEL_FD) };
    let init: Init = match control.recv() {
        Ok((i, _)) => i,
        Err(e) => {
            eprintln!("paddock-api: reading start-up message: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let fail = |control: &Endpoint, msg: String| {
        let _ = control.send(
            &Started {
                port: None,
                error: Some(msg.clone()),
            },
            None::<&OwnedFd>,
        );
        eprintln!("paddock-api: {msg}");
        std::process::ExitCode::from(1)
    };
    let tls = match tls_config(&init) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail(&control, format!("TLS configuration: {e}")),
    };
    let listener = match TcpListener::bind(("0.0.0.0", init.port)) {
        Ok(l) => l,
        Err(e) => return fail(&control, format!("binding port {}: {e}", init.port)),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(init.port);
    if let Err(e) = super::sandbox::apply() {
        return fail(&control, e.to_string());
    }
    let started = Started {
        port: Some(port),
        error: None,
    };
    if control.send(&started, None::<&OwnedFd>).is_err() {
        return std::process::ExitCode::from(1);
    }
    let shared = Arc::new(Shared {
        tls,
        control,
        admission: Arc::new(Admission::default()),
    });
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        let Some(address) = tcp.peer_addr().ok().map(|a| a.ip()) else {
            continue;
        };
        // Over the global or this address's cap: closed at once (the
        // client sees a reset); the head deadline frees slots within 10 s.
        let Some(slot) = shared.admission.connect(address) else {
            continue;
        };
        let s = shared.clone();
        let _ = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            handle(&s, tcp);
        });
    }
    std::process::ExitCode::SUCCESS
}
