//! E2B's envd process service, the part its SDK's `commands.run` uses:
//! `process.Process/Start` over the Connect protocol with JSON messages
//! (what the SDK speaks), run as a native exec (api::exec) in the sandbox
//! named by `E2b-Sandbox-Id`, as the key's own request.
//!
//! Connect frames each message as a flag byte, a big-endian u32 length and
//! the JSON; a server stream ends with a frame flagged 0x02 holding `{}` or
//! `{"error": {"code", "message"}}`.

use super::conn::Exchange;
use super::exec::{ExecFormat, MAX_EXEC_JSON};
use super::http;
use super::server::Shared;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CONTENT_TYPE: &str = "application/connect+json";
/// A frame's flags: the stream's last frame (its status).
const END_STREAM: u8 = 0x02;
const COMPRESSED: u8 = 0x01;

/// One Connect frame.
pub fn frame(flags: u8, message: &Value) -> Vec<u8> {
    let json = message.to_string().into_bytes();
    let mut out = Vec::with_capacity(json.len() + 5);
    out.push(flags);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// The one message of a request stream: its JSON.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let Some((head, rest)) = body.split_first_chunk::<5>() else {
        return Err("a Connect message starts with 5 bytes of framing".into());
    };
    if head[0] & COMPRESSED != 0 {
        return Err("compressed Connect messages are not accepted".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!(
            "the Connect frame says {len} bytes and {} came",
            rest.len()
        ));
    }
    Ok(rest)
}

/// Connect's error code for a refusal's HTTP status.
fn code_of(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        409 => "failed_precondition",
        429 => "resource_exhausted",
        501 => "unimplemented",
        503 => "unavailable",
        _ => "internal",
    }
}

/// A stream that ends at once with an error.
fn refuse(io: &mut Exchange, status: u16, message: &str) {
    let end = frame(
        END_STREAM,
        &json!({"error": {"code": code_of(status), "message": message}}),
    );
    if http::start_stream(&mut io.out, CONTENT_TYPE).is_ok() && io.out.send(&end).is_ok() {
        io.out.finish();
    }
}

#[derive(Deserialize)]
struct ProcessConfig {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
}

#[derive(Deserialize)]
struct StartRequest {
    process: ProcessConfig,
    /// A terminal: not served yet (skipped, never built as a tree).
    #[serde(default)]
    pty: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    tag: Option<String>,
    /// Input sent later (SendInput): not served yet; the command's stdin
    /// is empty.
    #[serde(default)]
    stdin: Option<bool>,
}

/// The SDK's events: start, data (base64), end, in StartResponse messages.
struct Events;

impl ExecFormat for Events {
    fn content_type(&self) -> &'static str {
        CONTENT_TYPE
    }

    fn start(&mut self) -> Vec<u8> {
        // The agent does not say the command's pid; 0 stands for "not
        // known" (the SDK only needs it to signal or feed the process,
        // which are not served yet).
        frame(0, &json!({"event": {"start": {"pid": 0}}}))
    }

    fn output(&mut self, out: paddock_agent_client::Output<'_>) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = match out {
            paddock_agent_client::Output::Stdout(d) => json!({"stdout": b64.encode(d)}),
            paddock_agent_client::Output::Stderr(d) => json!({"stderr": b64.encode(d)}),
        };
        frame(0, &json!({"event": {"data": data}}))
    }

    fn end(
        &mut self,
        result: &Result<paddock_proto::ExitStatus, String>,
        _duration_ms: u64,
    ) -> Vec<u8> {
        match result {
            Ok(st) => {
                let (code, status) = match (st.code, st.signal) {
                    (Some(c), _) => (c, format!("exit status {c}")),
                    (None, Some(s)) => (-1, format!("signal: {s}")),
                    (None, None) => (-1, "ended".to_string()),
                };
                let status = if st.timed_out {
                    format!("{status} (timed out)")
                } else {
                    status
                };
                let mut out = frame(
                    0,
                    &json!({"event": {"end": {"exitCode": code, "exited": st.code.is_some(), "status": status}}}),
                );
                out.extend(frame(END_STREAM, &json!({})));
                out
            }
            Err(e) => frame(
                END_STREAM,
                &json!({"error": {"code": "internal", "message": e}}),
            ),
        }
    }
}

/// `POST /process.Process/Start`: runs the command, streaming its events.
pub fn start(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let Some(id) = req.sandbox.clone() else {
        refuse(io, 400, "E2b-Sandbox-Id: which sandbox to run in");
        return None;
    };
    if req.content_type.as_deref() != Some(CONTENT_TYPE) {
        refuse(
            io,
            501,
            "only Connect's JSON encoding (application/connect+json) is served",
        );
        return None;
    }
    if !super::routes::valid_id(&id) {
        refuse(io, 400, "E2b-Sandbox-Id: not a sandbox id");
        return None;
    }
    // The same caps on memory as the native exec: large bodies a few at a
    // time, parsing under the process's parse permits.
    let Some(_large) = super::exec::large_body_permit(req) else {
        refuse(
            io,
            503,
            "too many large requests are being read at once; retry shortly",
        );
        return None;
    };
    let raw = match http::read_body(req, &mut io.body, MAX_EXEC_JSON) {
        Ok(b) => b,
        Err(e) => {
            let (status, body) = super::server::body_refusal(e, "start request");
            refuse(io, status, body["error"].as_str().unwrap_or("bad body"));
            return None;
        }
    };
    let message = match unframe(&raw) {
        Ok(m) => m,
        Err(e) => {
            refuse(io, 400, &e);
            return None;
        }
    };
    let start: StartRequest = match super::server::parse_json(message) {
        Ok(s) => s,
        Err((status, body)) => {
            refuse(io, status, body["error"].as_str().unwrap_or("StartRequest"));
            return None;
        }
    };
    drop(raw);
    if start.process.args.len() > 4096 || start.process.envs.len() > 4096 {
        refuse(io, 400, "at most 4096 args and 4096 envs");
        return None;
    }
    if start.pty.is_some() {
        refuse(io, 501, "terminals (pty) are not served yet");
        return None;
    }
    let _ = (start.tag, start.stdin);
    let mut argv = vec![start.process.cmd];
    argv.extend(start.process.args);
    let user = match req.basic_user.as_deref() {
        Some("root") => "root",
        _ => "agent",
    };
    let body = paddock_api_types::ExecRequest {
        argv,
        env: start.process.envs,
        cwd: start.process.cwd.filter(|c| !c.is_empty()),
        user: Some(user.into()),
        timeout_s: None,
        stdin: None,
    };
    if let Some((status, refusal)) =
        super::exec::run(shared, &req.bearer, &id, body, None, io, &mut Events)
    {
        refuse(io, status, refusal["error"].as_str().unwrap_or("refused"));
    }
    None
}

/// An envd path: absolute, or relative to the user's home.
/// The sandbox an envd request names, if it is an id at all.
fn sandbox_of(req: &http::Request) -> Result<String, (u16, Value)> {
    match req.sandbox.as_deref() {
        Some(id) if super::routes::valid_id(id) => Ok(id.to_string()),
        Some(_) => Err(super::e2b::error(400, "E2b-Sandbox-Id: not a sandbox id")),
        None => Err(super::e2b::error(400, "E2b-Sandbox-Id: which sandbox")),
    }
}

fn envd_path(req: &http::Request, root: bool) -> Result<String, (u16, Value)> {
    let Some(path) = super::server::query(req, "path").filter(|p| !p.is_empty()) else {
        return Err(super::e2b::error(400, "path: which file"));
    };
    if path.len() > 4096 || path.contains('\0') {
        return Err(super::e2b::error(400, "path: at most 4096 bytes, no NUL"));
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else if root {
        format!("/root/{path}")
    } else {
        format!("/home/agent/{path}")
    })
}

/// Who an envd file request acts as: root when it names root, else agent.
fn envd_root(req: &http::Request) -> bool {
    super::server::query(req, "username").or(req.basic_user.as_deref()) == Some("root")
}

/// envd's `GET /files?path=&username=`: the file's bytes.
pub fn read_file(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let id = match sandbox_of(req) {
        Ok(id) => id,
        Err(e) => return Some(e),
    };
    let root = envd_root(req);
    let path = match envd_path(req, root) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    super::transfer::download(shared, &req.bearer, &id, &path, root, &mut io.out).map(
        |(status, body)| super::e2b::error(status, body["error"].as_str().unwrap_or("refused")),
    )
}

/// envd's `POST /files?path=&username=`: the file from a multipart form's
/// first part, or from the raw body (`application/octet-stream`).
/// Answers envd's list of what was written.
pub fn write_file(shared: &Shared, req: &http::Request, io: &mut Exchange) -> (u16, Value) {
    let id = match sandbox_of(req) {
        Ok(id) => id,
        Err(e) => return e,
    };
    if req.content_length.unwrap_or(0) > super::server::MAX_FILE + (64 << 10) {
        return super::e2b::error(413, format!("file over {} bytes", super::server::MAX_FILE));
    }
    let root = envd_root(req);
    let path = match envd_path(req, root) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if req.http2 && req.content_length.is_none() {
        return super::e2b::error(411, "an upload over HTTP/2 needs a content-length");
    }
    if req
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        // Stored as sent, an encoded body would be a corrupt file.
        return super::e2b::error(415, "send the file unencoded (no Content-Encoding)");
    }
    let content_type = req.content_type.as_deref().unwrap_or("");
    let written = match super::multipart::boundary(content_type) {
        Some(b) => {
            let mut part = super::multipart::FirstPart::new(&mut io.body, &b);
            super::transfer::upload(shared, &req.bearer, &id, &path, root, 0o644, &mut part)
        }
        None if content_type.starts_with("application/octet-stream") => {
            super::transfer::upload(shared, &req.bearer, &id, &path, root, 0o644, &mut io.body)
        }
        None => {
            return super::e2b::error(
                400,
                "send the file as multipart/form-data or application/octet-stream",
            )
        }
    };
    match written {
        Ok(_) => {
            let name = path.rsplit('/').next().unwrap_or("").to_string();
            (200, json!([{"name": name, "type": "file", "path": path}]))
        }
        Err((status, body)) => {
            super::e2b::error(status, body["error"].as_str().unwrap_or("refused"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let f = frame(0, &json!({"a": 1}));
        assert_eq!(unframe(&f), Ok(&br#"{"a":1}"#[..]));
        assert!(unframe(&f[..4]).is_err(), "short");
        assert!(unframe(&f[..f.len() - 1]).is_err(), "cut");
        let mut z = f.clone();
        z[0] = COMPRESSED;
        assert!(unframe(&z).is_err(), "compressed");
        let mut long = f;
        long.push(b' ');
        assert!(unframe(&long).is_err(), "trailing bytes");
    }
}
