//! A workspace's directories on the native API: `GET .../dir?path=` lists
//! one, `POST .../dir?path=` makes one (with its parents), and `DELETE
//! .../files?path=` (crate::transfer) removes a file or a tree. Each runs in
//! the guest as the user the call names, as the file transfers do.

use crate::bridge::Exchange;
use crate::handling::{json_error, open_agent, query};
use crate::http;
use crate::shared::Shared;
use paddock_agent_client::{AgentClient, ClientError};
use paddock_api_channel::Purpose;
use paddock_api_types::{DirCreated, DirListing, FileEntry, FileKind};
use paddock_proto::User;
use serde_json::Value;

/// Most entries a listing answers.
const MAX_LISTED: usize = 5000;

/// The path and user of a file or directory call, checked.
pub fn target(req: &http::Request) -> Result<(String, bool), (u16, Value)> {
    let Some(path) = query(req, "path").map(str::to_string) else {
        return Err(json_error(400, "the path query parameter is required"));
    };
    if !path.starts_with('/') || path.len() > 4096 || path.contains('\0') {
        return Err(json_error(
            422,
            "path: an absolute path inside the workspace",
        ));
    }
    let root = match query(req, "user") {
        None | Some("agent") => false,
        Some("root") => true,
        Some(other) => {
            return Err(json_error(
                422,
                format!("user: {other:?} is not \"agent\" or \"root\""),
            ))
        }
    };
    Ok((path, root))
}

/// What the agent said, as the native API's refusal.
pub fn agent_refusal(e: ClientError) -> (u16, Value) {
    use paddock_proto::ErrorKind as K;
    let status = match &e {
        ClientError::Agent(r) => match r.kind {
            K::NotFound => 404,
            K::PermissionDenied => 403,
            K::AlreadyExists => 409,
            _ => 422,
        },
        ClientError::Timeout(_) => 504,
        _ => 503,
    };
    let message = match e {
        ClientError::Agent(r) => r.message,
        other => other.to_string(),
    };
    json_error(status, message)
}

/// An agent connection for `purpose`, acting as the call's user.
pub fn agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    purpose: Purpose,
    root: bool,
) -> Result<AgentClient, (u16, Value)> {
    let (_, stream) = open_agent(shared, bearer, id, purpose)?;
    let user = if root { User::Root } else { User::Agent };
    Ok(AgentClient::from_connected(stream).as_user(user))
}

pub fn dir(shared: &Shared, req: &http::Request, _io: &mut Exchange, id: &str) -> (u16, Value) {
    let (path, root) = match target(req) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let answer = match req.method.as_str() {
        "GET" => list(shared, req, id, path, root),
        "POST" => make(shared, req, id, path, root),
        _ => Err(json_error(405, "use GET or POST")),
    };
    answer.unwrap_or_else(|e| e)
}

fn list(
    shared: &Shared,
    req: &http::Request,
    id: &str,
    path: String,
    root: bool,
) -> Result<(u16, Value), (u16, Value)> {
    let purpose = Purpose::Inspect {
        path: path.clone(),
        root,
    };
    let entries = agent(shared, &req.bearer, id, purpose, root)?
        .list_dir(&path)
        .map_err(agent_refusal)?;
    // The agent caps a listing; a hostile guest's agent might not.
    let entries = entries
        .into_iter()
        .take(MAX_LISTED)
        .map(|e| FileEntry {
            name: e.name,
            kind: match e.stat.kind {
                paddock_proto::FileKind::File => FileKind::File,
                paddock_proto::FileKind::Dir => FileKind::Dir,
                paddock_proto::FileKind::Symlink => FileKind::Symlink,
                paddock_proto::FileKind::Other => FileKind::Other,
            },
            size: e.stat.size,
            mode: format!("{:o}", e.stat.mode),
            uid: e.stat.uid,
            gid: e.stat.gid,
            mtime: e.stat.mtime_s,
        })
        .collect();
    Ok((200, json(&DirListing { path, entries })))
}

fn make(
    shared: &Shared,
    req: &http::Request,
    id: &str,
    path: String,
    root: bool,
) -> Result<(u16, Value), (u16, Value)> {
    let mode = match query(req, "mode") {
        None => 0o755,
        Some(m) if (1..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b)) => {
            u32::from_str_radix(m, 8).unwrap_or(0o755)
        }
        Some(_) => return Err(json_error(422, "mode: octal permission bits, e.g. 755")),
    };
    if !root && mode & 0o6000 != 0 {
        return Err(json_error(
            422,
            format!("mode {mode:o}: setuid and setgid bits need user=root"),
        ));
    }
    let purpose = Purpose::Modify {
        op: "mkdir".into(),
        path: path.clone(),
        to: None,
        root,
    };
    agent(shared, &req.bearer, id, purpose, root)?
        .make_dir(&path, mode, true)
        .map_err(agent_refusal)?;
    Ok((201, json(&DirCreated { created: path })))
}

/// `DELETE .../files?path=&recursive=`: the file, or the directory (and,
/// with `recursive=true`, all in it).
pub fn remove(shared: &Shared, req: &http::Request, id: &str) -> (u16, Value) {
    let (path, root) = match target(req) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let recursive = match query(req, "recursive") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return json_error(422, "recursive: true or false"),
    };
    let purpose = Purpose::Modify {
        op: "remove".into(),
        path: path.clone(),
        to: None,
        root,
    };
    let removed = agent(shared, &req.bearer, id, purpose, root)
        .and_then(|c| c.remove(&path, recursive).map_err(agent_refusal));
    match removed {
        Ok(()) => (200, json(&paddock_api_types::Deleted { deleted: path })),
        Err(e) => e,
    }
}

fn json(v: &impl serde::Serialize) -> Value {
    // These types hold only strings and numbers: they always serialize.
    serde_json::to_value(v).unwrap_or_default()
}
