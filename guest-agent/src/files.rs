//! File operations: streamed write and read, stat, list, mkdir, remove,
//! rename.
//! Paths must be absolute; writes go to a temporary file renamed into
//! place on success, so an interrupted upload never leaves half a file.

use crate::conn::{Conn, ConnError};
use paddock_proto::{AgentMsg, DirEntry, ErrorKind, FileKind, FileStat, HostMsg, CHUNK};
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Directory listings longer than this are cut (the reply must fit a frame).
const MAX_DIR_ENTRIES: usize = 5000;

pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        _ => ErrorKind::Io,
    }
}

fn reply_io(conn: &Conn, what: &str, path: &str, e: &std::io::Error) -> Result<(), ConnError> {
    conn.error(io_kind(e), format!("{what} {path}: {e}"))
}

fn check_path(conn: &Conn, path: &str) -> Result<bool, ConnError> {
    if !path.starts_with('/') || path.contains('\0') {
        conn.error(
            ErrorKind::InvalidRequest,
            format!("path must be absolute: {path:?}"),
        )?;
        return Ok(false);
    }
    Ok(true)
}

fn stat_of(m: &Metadata) -> FileStat {
    let ft = m.file_type();
    FileStat {
        kind: if ft.is_file() {
            FileKind::File
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        },
        size: m.len(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_s: m.mtime(),
    }
}

pub fn write_file(conn: &Conn, path: &str, mode: u32) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = format!(
        "{path}.paddock-upload-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // A new file, never an existing one: a symlink another user of the
    // guest planted at this name must not redirect an upload (O_EXCL does
    // not follow it).
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp);
    let mut file = match created {
        Ok(f) => f,
        Err(e) => return reply_io(conn, "creating", path, &e),
    };
    let mut failed: Option<std::io::Error> = None;
    let result = loop {
        match conn.recv() {
            Ok(HostMsg::Data(d)) => {
                if failed.is_none() {
                    if let Err(e) = file.write_all(&d) {
                        failed = Some(e);
                    }
                }
            }
            Ok(HostMsg::DataEnd) => break Ok(()),
            Ok(other) => {
                break Err(format!(
                    "{} is not valid during a file upload",
                    crate::conn::name(&other)
                ))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if e.is_protocol_error() {
                    conn.error(e.kind(), e.to_string())?;
                }
                return Err(e);
            }
        }
    };
    if let Err(msg) = result {
        let _ = std::fs::remove_file(&tmp);
        return conn.error(ErrorKind::UnexpectedMessage, msg);
    }
    let done = match failed {
        Some(e) => Err(e),
        None => file
            .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path)),
    };
    match done {
        Ok(()) => conn.send(&AgentMsg::Done),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            reply_io(conn, "writing", path, &e)
        }
    }
}

pub fn read_file(conn: &Conn, path: &str) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return reply_io(conn, "opening", path, &e),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return conn.error(
                ErrorKind::InvalidRequest,
                format!("{path} is not a regular file"),
            )
        }
        Err(e) => return reply_io(conn, "stat", path, &e),
    };
    conn.send(&AgentMsg::FileStart {
        size: meta.len(),
        mode: meta.mode() & 0o7777,
    })?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => conn.send(&AgentMsg::Data(buf[..n].to_vec()))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return reply_io(conn, "reading", path, &e),
        }
    }
    conn.send(&AgentMsg::DataEnd)
}

pub fn stat(conn: &Conn, path: &str) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => conn.send(&AgentMsg::Stat(stat_of(&m))),
        Err(e) => reply_io(conn, "stat", path, &e),
    }
}

pub fn list_dir(conn: &Conn, path: &str) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    let rd = match std::fs::read_dir(path) {
        Ok(r) => r,
        Err(e) => return reply_io(conn, "listing", path, &e),
    };
    let mut entries: Vec<DirEntry> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.path().symlink_metadata().ok()?;
            Some(DirEntry {
                name: e.file_name().to_string_lossy().to_string(),
                stat: stat_of(&m),
            })
        })
        .take(MAX_DIR_ENTRIES)
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    conn.send(&AgentMsg::DirEntries(entries))
}

pub fn make_dir(conn: &Conn, path: &str, mode: u32, parents: bool) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    // A directory that is there already keeps its mode (/tmp's 1777 must
    // not become 755 because someone asked for it again).
    let existed = Path::new(path).is_dir();
    let r = if parents {
        std::fs::create_dir_all(path)
    } else {
        std::fs::create_dir(path)
    };
    match r.and_then(|()| {
        if existed {
            return Ok(());
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
    }) {
        Ok(()) => conn.send(&AgentMsg::Done),
        Err(e) => reply_io(conn, "creating directory", path, &e),
    }
}

pub fn remove(conn: &Conn, path: &str, recursive: bool) -> Result<(), ConnError> {
    if !check_path(conn, path)? {
        return Ok(());
    }
    if Path::new(path) == Path::new("/") {
        return conn.error(ErrorKind::InvalidRequest, "refusing to remove /");
    }
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && recursive => std::fs::remove_dir_all(path),
        Ok(m) if m.is_dir() => std::fs::remove_dir(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Ok(()) => conn.send(&AgentMsg::Done),
        Err(e) => reply_io(conn, "removing", path, &e),
    }
}

/// Moves a file or directory (within the workspace's filesystems; across
/// them the kernel refuses and the host hears why).
pub fn rename(conn: &Conn, from: &str, to: &str) -> Result<(), ConnError> {
    if !check_path(conn, from)? || !check_path(conn, to)? {
        return Ok(());
    }
    if Path::new(from) == Path::new("/") {
        return conn.error(ErrorKind::InvalidRequest, "refusing to move /");
    }
    match std::fs::rename(from, to) {
        Ok(()) => conn.send(&AgentMsg::Done),
        Err(e) => reply_io(conn, &format!("moving {from} to"), to, &e),
    }
}
