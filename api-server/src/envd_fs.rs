//! E2B's envd filesystem service (`filesystem.Filesystem/*`, Connect with
//! JSON) on the agent's file operations, as the user the call names (root
//! needs the exec scope, as on the native API): Stat, ListDir (to a
//! depth), MakeDir, Move and Remove; watching a directory is
//! crate::envd_watch's.

use crate::bridge::Exchange;
use crate::connect::{self, rpc_error, unary_body};
use crate::http;
use crate::shared::Shared;
use paddock_agent_client::AgentClient;
use paddock_api_channel::Purpose;
use paddock_proto::{FileKind, FileStat, User};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most entries one ListDir answers, whatever its depth.
const MAX_ENTRIES: usize = 5000;
/// Deepest listing.
const MAX_DEPTH: u32 = 16;
/// Most directories one listing reads.
const MAX_LISTED_DIRS: usize = 256;

#[derive(Deserialize)]
struct PathRequest {
    path: String,
}

#[derive(Deserialize)]
struct ListDirRequest {
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

#[derive(Deserialize)]
struct MoveRequest {
    source: String,
    destination: String,
}

pub fn rpc(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    method: &str,
) -> Option<(u16, Value)> {
    match method {
        "WatchDir" => {
            crate::envd_watch::stream(shared, req, io, id);
            None
        }
        "CreateWatcher" | "GetWatcherEvents" | "RemoveWatcher" => {
            Some(crate::envd_watch::unary(shared, req, io, id, method).unwrap_or_else(|e| e))
        }
        _ => Some(unary(shared, req, io, id, method).unwrap_or_else(|e| e)),
    }
}

/// A file operation's agent connection, as the call's user.
fn agent(
    shared: &Shared,
    req: &http::Request,
    id: &str,
    purpose: Purpose,
    root: bool,
) -> Result<AgentClient, (u16, Value)> {
    let (_, stream) = crate::handling::open_agent(shared, &req.bearer, id, purpose)
        .map_err(|(status, body)| rpc_error(status, body["error"].as_str().unwrap_or("refused")))?;
    let user = if root { User::Root } else { User::Agent };
    Ok(AgentClient::from_connected(stream).as_user(user))
}

fn unary(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    method: &str,
) -> Result<(u16, Value), (u16, Value)> {
    if !matches!(method, "Stat" | "ListDir" | "MakeDir" | "Move" | "Remove") {
        return Err(rpc_error(
            404,
            format!("filesystem.Filesystem/{method} is not a method envd serves"),
        ));
    }
    let body = unary_body(req, io)?;
    let parse_err = |e: serde_json::Error| rpc_error(400, e.to_string());
    let root = connect::envd_root(req);
    let path_of = |p: &str| connect::absolute(p, root).map_err(|m| rpc_error(400, m));
    let inspect = |path: &str| Purpose::Inspect {
        path: path.to_string(),
        root,
    };
    let modify = |op: &str, path: String, to: Option<String>| Purpose::Modify {
        op: op.into(),
        path,
        to,
        root,
    };
    match method {
        "Stat" => {
            let r: PathRequest = serde_json::from_value(body).map_err(parse_err)?;
            let path = path_of(&r.path)?;
            let st = agent(shared, req, id, inspect(&path), root)?
                .stat(&path)
                .map_err(connect::agent_error)?;
            Ok((200, json!({"entry": entry(&path, &st)})))
        }
        "ListDir" => {
            let r: ListDirRequest = serde_json::from_value(body).map_err(parse_err)?;
            let path = path_of(&r.path)?;
            let depth = r.depth.unwrap_or(1).clamp(1, MAX_DEPTH);
            let mut entries = Vec::new();
            let mut dirs = 0;
            list(shared, req, id, root, &path, depth, &mut entries, &mut dirs)?;
            Ok((200, json!({ "entries": entries })))
        }
        "MakeDir" => {
            let r: PathRequest = serde_json::from_value(body).map_err(parse_err)?;
            let path = path_of(&r.path)?;
            // envd's answer for a directory that is there already.
            let exists = agent(shared, req, id, inspect(&path), root)?
                .stat(&path)
                .is_ok();
            if exists {
                // The code the SDK's make_dir answers False for.
                return Err((
                    409,
                    json!({"code": "already_exists", "message": format!("{path} exists already")}),
                ));
            }
            agent(shared, req, id, modify("mkdir", path.clone(), None), root)?
                .make_dir(&path, 0o755, true)
                .map_err(connect::agent_error)?;
            let st = agent(shared, req, id, inspect(&path), root)?
                .stat(&path)
                .map_err(connect::agent_error)?;
            Ok((200, json!({"entry": entry(&path, &st)})))
        }
        "Move" => {
            let r: MoveRequest = serde_json::from_value(body).map_err(parse_err)?;
            let (from, to) = (path_of(&r.source)?, path_of(&r.destination)?);
            let purpose = modify("move", from.clone(), Some(to.clone()));
            agent(shared, req, id, purpose, root)?
                .rename(&from, &to)
                .map_err(connect::agent_error)?;
            let st = agent(shared, req, id, inspect(&to), root)?
                .stat(&to)
                .map_err(connect::agent_error)?;
            Ok((200, json!({"entry": entry(&to, &st)})))
        }
        _ => {
            let r: PathRequest = serde_json::from_value(body).map_err(parse_err)?;
            let path = path_of(&r.path)?;
            agent(shared, req, id, modify("remove", path.clone(), None), root)?
                .remove(&path, true)
                .map_err(connect::agent_error)?;
            Ok((200, json!({})))
        }
    }
}

/// `path`'s entries, and theirs down to `depth` levels: at most
/// MAX_ENTRIES entries from MAX_LISTED_DIRS directories in all (each is an
/// agent connection). A directory below `path` that cannot be listed is
/// left out; `path` itself must be.
#[allow(clippy::too_many_arguments)]
fn list(
    shared: &Shared,
    req: &http::Request,
    id: &str,
    root: bool,
    path: &str,
    depth: u32,
    out: &mut Vec<Value>,
    dirs: &mut usize,
) -> Result<(), (u16, Value)> {
    let top = *dirs == 0;
    *dirs += 1;
    let purpose = Purpose::Inspect {
        path: path.to_string(),
        root,
    };
    let listed = agent(shared, req, id, purpose, root)?
        .list_dir(path)
        .map_err(connect::agent_error);
    let entries = match listed {
        Ok(e) => e,
        Err(e) if top => return Err(e),
        Err(_) => return Ok(()),
    };
    let base = path.trim_end_matches('/');
    for e in entries {
        if out.len() >= MAX_ENTRIES {
            return Ok(());
        }
        let child = format!("{base}/{}", e.name);
        out.push(entry(&child, &e.stat));
        if depth > 1 && e.stat.kind == FileKind::Dir && *dirs < MAX_LISTED_DIRS {
            list(shared, req, id, root, &child, depth - 1, out, dirs)?;
        }
    }
    Ok(())
}

/// envd's EntryInfo for `path`.
fn entry(path: &str, st: &FileStat) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    let (kind, type_bit, letter) = match st.kind {
        FileKind::File => ("FILE_TYPE_FILE", 0, '-'),
        FileKind::Dir => ("FILE_TYPE_DIRECTORY", 1u32 << 31, 'd'),
        FileKind::Symlink => ("FILE_TYPE_SYMLINK", 1 << 27, 'l'),
        FileKind::Other => ("FILE_TYPE_UNSPECIFIED", 0, '?'),
    };
    json!({
        "name": name,
        "type": kind,
        "path": path,
        // int64 is a string in protobuf's JSON.
        "size": st.size.to_string(),
        // Go's fs.FileMode, as envd sends it: type bits over permissions.
        "mode": type_bit | (st.mode & 0o777),
        "permissions": permissions(letter, st.mode),
        "owner": account(st.uid),
        "group": account(st.gid),
        // Within what a protobuf Timestamp can say (years 1 to 9999).
        "modifiedTime": crate::e2b::rfc3339(st.mtime_s.clamp(0, 253_402_300_799) as u64),
        "isSymlink": st.kind == FileKind::Symlink,
    })
}

/// `ls -l`'s permission string.
fn permissions(letter: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(letter);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// An owner's name as every template has it: root, the `agent` user
/// (uid/gid 1000, image-build's templates), or the number.
fn account(id: u32) -> String {
    match id {
        0 => "root".into(),
        1000 => "agent".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_as_envd_writes_them() {
        let st = FileStat {
            kind: FileKind::Dir,
            size: 4096,
            mode: 0o750,
            uid: 1000,
            gid: 0,
            mtime_s: 0,
        };
        let e = entry("/home/agent/d", &st);
        assert_eq!(e["name"], "d");
        assert_eq!(e["type"], "FILE_TYPE_DIRECTORY");
        assert_eq!(e["size"], "4096");
        assert_eq!(e["mode"], (1u64 << 31) | 0o750);
        assert_eq!(e["permissions"], "drwxr-x---");
        assert_eq!(e["owner"], "agent");
        assert_eq!(e["group"], "root");
        assert_eq!(e["modifiedTime"], "1970-01-01T00:00:00Z");
    }
}
