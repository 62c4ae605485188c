//! The host's side of the control socket: one request, one reply. Used by
//! the test kit and benchmarks, and meant for host-init's runner.

use crate::restore::{MEMORY_FILE, STATE_FILE};
use paddock_proto::vmm_control::{VmmReply, VmmRequest};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the VMM refused: {0}")]
    Refused(String),
    #[error("the VMM's reply {0:?} is not one of its replies")]
    Reply(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.to_path_buf();
    move |source| ClientError::Io { what, path, source }
}

/// Sends `req` (with `fds`) to the VMM's control socket at `sock` and
/// waits for its answer.
pub fn request(sock: &Path, req: &VmmRequest, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
    let conn = UnixStream::connect(sock).map_err(io("connecting to", sock))?;
    // A request serializes: its fields are strings and numbers.
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    crate::fd_passing::send(&conn, &line, fds).map_err(io("writing to", sock))?;
    let mut reply = String::new();
    (&conn)
        .read_to_string(&mut reply)
        .map_err(io("reading from", sock))?;
    match serde_json::from_str::<VmmReply>(reply.trim_end()) {
        Ok(VmmReply::Ok { ok: true }) => Ok(()),
        Ok(VmmReply::Error { error }) => Err(ClientError::Refused(error)),
        _ => Err(ClientError::Reply(reply)),
    }
}

/// Pauses the VM, writes its snapshot into `dir` (created if need be) and
/// leaves it paused. The files are written under new names and renamed
/// into place once complete: VMs restored from `dir` map its memory file,
/// and the pages they never wrote are still read from it, so a snapshot
/// file must never change under them (nor be half-written when read).
pub fn snapshot_into(sock: &Path, dir: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let fresh = |name: &str| {
        let path = dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map(|f| (f, path.clone()))
            .map_err(io("creating", &path))
    };
    let (state, state_tmp) = fresh(STATE_FILE)?;
    let (memory, memory_tmp) = fresh(MEMORY_FILE)?;
    request(sock, &VmmRequest::Pause {}, &[])?;
    let written = request(
        sock,
        &VmmRequest::Snapshot {},
        &[state.as_fd(), memory.as_fd()],
    )
    .and_then(|()| {
        for f in [&state, &memory] {
            f.sync_all().map_err(io("flushing", dir))?;
        }
        Ok(())
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&state_tmp);
        let _ = std::fs::remove_file(&memory_tmp);
        return Err(e);
    }
    // Memory first: a state file in place always has its memory beside it.
    for (tmp, name) in [(&memory_tmp, MEMORY_FILE), (&state_tmp, STATE_FILE)] {
        let to = dir.join(name);
        std::fs::rename(tmp, &to).map_err(io("renaming into", &to))?;
    }
    Ok(())
}
