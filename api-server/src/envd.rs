//! E2B's envd, the API inside a sandbox its SDK talks to, served by the
//! API process for the sandbox named by `E2b-Sandbox-Id`, as the key's own
//! request: the Connect calls of the process (crate::envd_process) and
//! filesystem (crate::envd_fs) services are sent on from here, and the REST
//! `/files` is answered here. The protocol's pieces are crate::connect.

use crate::bridge::Exchange;
use crate::connect::{absolute, envd_root, refuse, rpc_error};
use crate::http;
use crate::shared::Shared;
use serde_json::{json, Value};

/// One envd Connect call (`/process.Process/*`, `/filesystem.Filesystem/*`)
/// in the sandbox its `E2b-Sandbox-Id` names.
pub fn rpc(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    service: &str,
    method: &str,
) -> Option<(u16, Value)> {
    let id = match sandbox_of(req) {
        Ok(id) => id,
        Err((status, body)) => {
            let message = body["message"]
                .as_str()
                .unwrap_or("E2b-Sandbox-Id")
                .to_string();
            return match method {
                "Start" | "Connect" | "StreamInput" | "WatchDir" => {
                    refuse(io, status, &message);
                    None
                }
                _ => Some(rpc_error(status, message)),
            };
        }
    };
    match service {
        "process.Process" => crate::envd_process::rpc(shared, req, io, &id, method),
        _ => crate::envd_fs::rpc(shared, req, io, &id, method),
    }
}

/// The sandbox an envd request names, if it is an id at all.
fn sandbox_of(req: &http::Request) -> Result<String, (u16, Value)> {
    match req.sandbox.as_deref() {
        Some(id) if crate::routes::valid_id(id) => Ok(id.to_string()),
        Some(_) => Err(crate::e2b::error(400, "E2b-Sandbox-Id: not a sandbox id")),
        None => Err(crate::e2b::error(400, "E2b-Sandbox-Id: which sandbox")),
    }
}

fn envd_path(req: &http::Request, root: bool) -> Result<String, (u16, Value)> {
    let Some(path) = crate::handling::query(req, "path").filter(|p| !p.is_empty()) else {
        return Err(crate::e2b::error(400, "path: which file"));
    };
    absolute(path, root).map_err(|m| crate::e2b::error(400, m))
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
    crate::transfer::download(shared, &req.bearer, &id, &path, root, &mut io.out).map(
        |(status, body)| crate::e2b::error(status, body["error"].as_str().unwrap_or("refused")),
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
    if req.content_length.unwrap_or(0) > crate::handling::MAX_FILE + (64 << 10) {
        return crate::e2b::error(
            413,
            format!("file over {} bytes", crate::handling::MAX_FILE),
        );
    }
    let root = envd_root(req);
    let path = match envd_path(req, root) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if req.http2 && req.content_length.is_none() {
        return crate::e2b::error(411, "an upload over HTTP/2 needs a content-length");
    }
    if req
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        // Stored as sent, an encoded body would be a corrupt file.
        return crate::e2b::error(415, "send the file unencoded (no Content-Encoding)");
    }
    let content_type = req.content_type.as_deref().unwrap_or("");
    let written = match crate::multipart::boundary(content_type) {
        Some(b) => {
            let mut part = crate::multipart::FirstPart::new(&mut io.body, &b);
            crate::transfer::upload(shared, &req.bearer, &id, &path, root, 0o644, &mut part)
        }
        None if content_type.starts_with("application/octet-stream") => {
            crate::transfer::upload(shared, &req.bearer, &id, &path, root, 0o644, &mut io.body)
        }
        None => {
            return crate::e2b::error(
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
            crate::e2b::error(status, body["error"].as_str().unwrap_or("refused"))
        }
    }
}
