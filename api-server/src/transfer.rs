//! The routes that move files between a client and a workspace: upload and
//! download through its agent (streamed both ways, never held whole), and
//! forensic files (from a descriptor host-init opens). Exec is crate::exec.

use crate::bridge::Exchange;
use crate::handling::{body_refusal, json_error, open_agent, query, MAX_FILE};
use crate::http;
use crate::shared::{call_fd, Shared};
use paddock_api_channel::{Call, Purpose, Verdict};
use serde_json::Value;
use std::io::Read;

pub fn files(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> Option<(u16, Value)> {
    let (path, root) = match crate::dirs::target(req) {
        Ok(t) => t,
        Err(e) => return Some(e),
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
            Some(
                match upload(shared, &req.bearer, id, &path, root, mode, &mut io.body) {
                    Ok(bytes) => (
                        200,
                        serde_json::json!({"path": path, "bytes": bytes, "mode": format!("{mode:o}")}),
                    ),
                    Err(refusal) => refusal,
                },
            )
        }
        "GET" => download(shared, &req.bearer, id, &path, root, &mut io.out),
        "DELETE" => Some(crate::dirs::remove(shared, req, id)),
        _ => Some(json_error(405, "use GET, PUT or DELETE")),
    }
}

/// A body whose framing says whether it ended whole.
pub trait Framed: Read {
    /// Whether it ended as its framing says (a Content-Length reached, the
    /// last chunk, a multipart's closing boundary).
    fn complete(&self) -> bool;
}

impl Framed for crate::bridge::BodyReader {
    fn complete(&self) -> bool {
        self.ended()
    }
}

/// Streams `body` into `path` in workspace `id` (as root or agent, with
/// `mode`): the bytes written, or the refusal to answer with. Streamed
/// from the client to the agent, so an upload never sits whole in this
/// process's memory; only a body that ended whole completes the file, and
/// anything else ends the agent session without it.
pub fn upload(
    shared: &Shared,
    bearer: &str,
    id: &str,
    path: &str,
    root: bool,
    mode: u32,
    body: &mut dyn Framed,
) -> Result<u64, (u16, Value)> {
    if !root && mode & 0o6000 != 0 {
        return Err(json_error(
            422,
            format!("mode {mode:o}: setuid and setgid bits need user=root"),
        ));
    }
    let user = if root {
        paddock_proto::User::Root
    } else {
        paddock_proto::User::Agent
    };
    let purpose = Purpose::WriteFile {
        path: path.to_string(),
        root,
    };
    let (_, stream) = open_agent(shared, bearer, id, purpose)?;
    let client = paddock_agent_client::AgentClient::from_connected(stream).as_user(user);
    let mut counted = Upload {
        body: &mut *body,
        bytes: 0,
        over: false,
    };
    let written = client.write_file(path, mode, &mut counted);
    let (bytes, over) = (counted.bytes, counted.over);
    let complete = body.complete();
    match written {
        _ if over => Err(body_refusal(http::BodyError::TooLarge(MAX_FILE), "file")),
        Ok(()) if complete => Ok(bytes),
        Ok(()) => Err(json_error(400, "the body ended before its Content-Length")),
        Err(e) if !complete => Err(json_error(400, format!("reading the body: {e}"))),
        Err(e) => Err(json_error(422, e.to_string())),
    }
}

/// Streams `path` from workspace `id` to the client as chunks as the agent
/// sends them; the answer starts with the first bytes, so an error before
/// them is still a status (returned).
pub fn download(
    shared: &Shared,
    bearer: &str,
    id: &str,
    path: &str,
    root: bool,
    out: &mut crate::bridge::Responder,
) -> Option<(u16, Value)> {
    let user = if root {
        paddock_proto::User::Root
    } else {
        paddock_proto::User::Agent
    };
    let purpose = Purpose::ReadFile {
        path: path.to_string(),
        root,
    };
    let stream = match open_agent(shared, bearer, id, purpose) {
        Ok((_, s)) => s,
        Err(refusal) => return Some(refusal),
    };
    let client = paddock_agent_client::AgentClient::from_connected(stream).as_user(user);
    let mut sink = Download {
        out,
        left: MAX_FILE,
    };
    match client.read_file(path, &mut sink) {
        Ok(_) if sink.out.started() => {
            sink.out.finish();
            None
        }
        Ok(_) => {
            if http::start_download(sink.out, 0).is_ok() {
                sink.out.finish();
            }
            None
        }
        // Cut mid-stream: no last chunk (or a reset stream), so the
        // client sees a truncated body.
        Err(_) if sink.out.started() => {
            sink.out.abort();
            None
        }
        Err(e) if e.to_string().contains("NotFound") => Some(json_error(404, e.to_string())),
        Err(e) => Some(json_error(422, e.to_string())),
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
    out: &'a mut crate::bridge::Responder,
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
    body: &'a mut dyn Framed,
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
