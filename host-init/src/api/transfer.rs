//! The routes that move bytes between a client and a workspace's agent:
//! exec (NDJSON stream out), file upload and download (streamed both ways,
//! never held whole), and forensic files (from a descriptor host-init opens).

use super::admission::Permits;
use super::channel::{Call, Purpose, Verdict};
use super::conn::Exchange;
use super::http;
use super::server::{
    body_refusal, call, call_fd, json_error, open_agent, parse_json, query, Shared, MAX_FILE,
};
use paddock_api_types::ExecEvent;
use serde_json::Value;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Largest exec request: it carries the command's stdin (base64), which
/// goes to the agent, not over the channel to host-init.
const MAX_EXEC_JSON: u64 = 1 << 20;
/// Exec bodies over the channel-sized JSON cap read at once in the whole
/// process: raw and parsed (several times the raw size), a few of them is
/// tens of MiB; more than this at once get 503 rather than pushing the
/// process toward its memory.max.
static LARGE_BODIES: Permits = Permits::new(8);
/// Most entries in an exec's `env`.
const MAX_ENV: usize = 4096;

/// Streams an exec as NDJSON: {"stdout": b64} / {"stderr": b64} events,
/// then {"exit_code", "signal", "timed_out", "duration_ms"}.
pub fn exec(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // A body of unknown length may be large.
    let large = req.chunked || req.content_length.unwrap_or(0) > super::server::MAX_FORWARDED_JSON;
    let large = match large.then(|| LARGE_BODIES.take(Duration::ZERO)) {
        Some(None) => {
            return Some(json_error(
                503,
                "too many large exec requests are being read at once; retry shortly",
            ))
        }
        Some(Some(permit)) => Some(permit),
        None => None,
    };
    let raw = match http::read_body(req, &mut io.body, MAX_EXEC_JSON) {
        Ok(b) => b,
        Err(e) => return Some(body_refusal(e, "exec request")),
    };
    // Parsed straight into its type: no intermediate JSON tree.
    let body: paddock_api_types::ExecRequest = match parse_json(&raw) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    drop(raw);
    if body.argv.is_empty() || body.argv.len() > 4096 || body.argv.iter().any(|a| a.contains('\0'))
    {
        return Some(json_error(
            422,
            "argv: 1 to 4096 arguments without NUL bytes",
        ));
    }
    if body.env.len() > MAX_ENV {
        return Some(json_error(422, format!("env: at most {MAX_ENV} variables")));
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
    drop(body.stdin);
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
    // Ending the agent session ends the command (the agent kills what a
    // session leaves behind): done when the client is gone, so a long exec
    // never outlives the client that holds its tenant's slot.
    let agent_end = match stream.try_clone() {
        Ok(a) => Arc::new(a),
        Err(_) => return Some(json_error(503, "out of descriptors; retry shortly")),
    };
    if http::start_stream(&mut io.out, "application/x-ndjson").is_err() {
        return None;
    }
    let client = paddock_agent_client::AgentClient::from_connected(stream);
    let input: Option<Box<dyn std::io::Read + Send>> = stdin.map(|b| {
        Box::new(Stdin {
            bytes: std::io::Cursor::new(b),
            large,
        }) as Box<dyn std::io::Read + Send>
    });
    // The client hanging up (or resetting its HTTP/2 stream) drops the
    // answer's body, which ends the agent session even while the command
    // prints nothing; `done` stops the watcher when the exec is over.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    if let Some(gone) = io.out.gone() {
        let agent = agent_end.clone();
        io.out.runtime().spawn(async move {
            tokio::select! {
                _ = gone => {
                    let _ = agent.shutdown(std::net::Shutdown::Both);
                }
                _ = finished => {}
            }
        });
    }
    let out = &mut io.out;
    let result = {
        let mut client_gone = false;
        let result = client.exec(request, input, |o| {
            let event = match o {
                paddock_agent_client::Output::Stdout(d) => ExecEvent::Stdout {
                    stdout: b64.encode(d),
                },
                paddock_agent_client::Output::Stderr(d) => ExecEvent::Stderr {
                    stderr: b64.encode(d),
                },
            };
            if !client_gone && out.send(&ndjson_line(&event)).is_err() {
                client_gone = true;
                let _ = agent_end.shutdown(std::net::Shutdown::Both);
            }
        });
        drop(done);
        result
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let (last, exit_code, signal) = match result {
        Ok(st) => (
            ExecEvent::Exit {
                exit_code: st.code,
                signal: st.signal,
                timed_out: st.timed_out,
                duration_ms,
            },
            st.code,
            st.signal,
        ),
        Err(e) => (
            ExecEvent::Error {
                error: e.to_string(),
                duration_ms,
            },
            None,
            None,
        ),
    };
    if io.out.send(&ndjson_line(&last)).is_ok() {
        io.out.finish();
    }
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

/// One line of an exec's NDJSON stream.
fn ndjson_line(event: &ExecEvent) -> Vec<u8> {
    // An ExecEvent holds only strings and numbers: it always serializes.
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    line
}

pub fn files(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
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
            if req.http2 && req.content_length.is_none() {
                // HTTP/2 gives a body without a length no end of its own
                // that a cut cannot fake (a reset with NO_ERROR reads as
                // a clean end), so an upload must say how long it is.
                return Some(json_error(
                    411,
                    "an upload over HTTP/2 needs a content-length",
                ));
            }
            if req.content_length.unwrap_or(0) > MAX_FILE {
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
            // whole in this process's memory. Only a body that ended as its
            // framing says (its Content-Length, or the last chunk) completes
            // the file; anything else ends the agent session without it.
            let mut body = Upload {
                body: &mut io.body,
                bytes: 0,
                over: false,
            };
            let written = client.write_file(&path, mode, &mut body);
            let (bytes, over) = (body.bytes, body.over);
            let complete = io.body.ended();
            Some(match written {
                _ if over => body_refusal(http::BodyError::TooLarge(MAX_FILE), "file"),
                Ok(()) if complete => (
                    200,
                    serde_json::json!({"path": path, "bytes": bytes, "mode": format!("{mode:o}")}),
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
            let mut out = Download {
                out: &mut io.out,
                left: MAX_FILE,
            };
            match client.read_file(&path, &mut out) {
                Ok(_) if out.out.started() => {
                    out.out.finish();
                    None
                }
                Ok(_) => {
                    if http::start_download(out.out, 0).is_ok() {
                        out.out.finish();
                    }
                    None
                }
                // Cut mid-stream: no last chunk (or a reset stream), so the
                // client sees a truncated body.
                Err(_) if out.out.started() => {
                    out.out.abort();
                    None
                }
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
pub fn forensic_file(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
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
        (Some(fd), Some(len)) if reply.verdict == Verdict::Ok => {
            let _ = http::send_from(&mut io.out, &mut std::fs::File::from(fd), len);
            None
        }
        _ => Some((http::status_of(reply.verdict), reply.body)),
    }
}

/// A download's bytes as they come from the agent, the head sent with the
/// first.
struct Download<'a> {
    out: &'a mut super::bridge::Responder,
    left: u64,
}

impl std::io::Write for Download<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() as u64 > self.left {
            return Err(std::io::Error::other(format!("file over {MAX_FILE} bytes")));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if !self.out.started() {
            http::start_stream(self.out, "application/octet-stream")?;
        }
        self.left -= data.len() as u64;
        self.out.send(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An upload's body on its way to the agent, counted and capped.
struct Upload<'a> {
    body: &'a mut super::bridge::BodyReader,
    bytes: u64,
    over: bool,
}

impl Read for Upload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.body.read(buf)?;
        self.bytes += n as u64;
        if self.bytes > MAX_FILE {
            self.over = true;
            return Err(std::io::Error::other(format!("file over {MAX_FILE} bytes")));
        }
        Ok(n)
    }
}

/// An exec's stdin, held until the agent has taken it all: then its memory
/// and its `LARGE_BODIES` permit (if it came in a large request) go back.
struct Stdin {
    bytes: std::io::Cursor<Vec<u8>>,
    large: Option<super::admission::Permit<'static>>,
}

impl std::io::Read for Stdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.bytes = std::io::Cursor::new(Vec::new());
            self.large = None;
        }
        Ok(n)
    }
}
