//! host-init's side of the API process: start it with its privileges
//! dropped, hand it the TLS identity, and answer its requests.

use super::channel::{
    self, Call, ChannelError, Init, Request, Started, StatusReply, CHANNEL_FD, FD_CHANNEL_FD,
};
use crate::control::service::Outcome;
use crate::warn;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The API process's own uid and gid (no other process uses them).
pub const API_UID: u32 = 900;
pub const API_GID: u32 = 900;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("starting the API process: {0}")]
    Spawn(std::io::Error),
    #[error("talking to the API process: {0}")]
    Channel(#[from] ChannelError),
    #[error("the API process could not start: {0}")]
    Failed(String),
}

pub struct Running {
    pub pid: u32,
    pub port: u16,
}

/// Starts `exe api-server`; `drop_to` is the (uid, gid) it runs as (None
/// only in tests that cannot switch users). `status` answers status
/// requests, `calls` everything else (with the caller's bearer secret).
pub fn spawn(
    exe: &Path,
    init: &Init,
    drop_to: Option<(u32, u32)>,
    status: impl Fn() -> StatusReply + Send + 'static,
    calls: impl Fn(&str, Call) -> Outcome + Send + 'static,
) -> Result<Running, ApiError> {
    let (ours, theirs) = UnixStream::pair().map_err(ApiError::Spawn)?;
    let (fds_ours, fds_theirs) = UnixStream::pair().map_err(ApiError::Spawn)?;
    let theirs_fd = theirs.as_raw_fd();
    let fds_theirs_fd = fds_theirs.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("api-server")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    crate::children::reset_signals(&mut cmd);
    if let Some((uid, gid)) = drop_to {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (dup2, prctl, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, CHANNEL_FD) < 0 || libc::dup2(fds_theirs_fd, FD_CHANNEL_FD) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            crate::children::confine_after_fork()
        });
    }
    let child = cmd.spawn().map_err(ApiError::Spawn)?;
    drop(theirs);
    drop(fds_theirs);
    let pid = child.id();
    // The child is reaped by PID 1's reaper, never through this handle.
    drop(child);

    let writer = ours.try_clone().map_err(|e| ApiError::Channel(e.into()))?;
    let mut writer = writer;
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| ApiError::Channel(e.into()))?;
    let mut reader = BufReader::new(ours);
    channel::send(&mut writer, init)?;
    let started: Started = channel::recv(&mut reader)?;
    let port = match started {
        Started {
            port: Some(p),
            error: None,
        } => p,
        Started { error: Some(e), .. } => return Err(ApiError::Failed(e)),
        _ => {
            return Err(ApiError::Failed(
                "it sent an inconsistent start-up reply".into(),
            ))
        }
    };
    let _ = reader.get_ref().set_read_timeout(None);
    std::thread::Builder::new()
        .name("api-channel".into())
        .spawn(move || loop {
            match channel::recv::<Request>(&mut reader) {
                Ok(Request::Status) => {
                    if channel::send(&mut writer, &status()).is_err() {
                        return;
                    }
                }
                Ok(Request::Call { auth, call }) => {
                    let out = calls(&auth, call);
                    let mut reply = out.reply;
                    reply.fd = out.stream.is_some();
                    if channel::send(&mut writer, &reply).is_err() {
                        return;
                    }
                    if let Some(stream) = out.stream {
                        if let Err(e) = channel::send_fd(&fds_ours, stream.as_raw_fd()) {
                            warn!("passing a workspace connection to the API process: {e}");
                            return;
                        }
                    }
                }
                Err(ChannelError::Closed) => return,
                Err(e) => {
                    // A misbehaving API process loses its channel (and so
                    // every privileged answer) until it is restarted.
                    warn!("API process sent a bad message ({e}); closing its channel");
                    return;
                }
            }
        })
        .map_err(ApiError::Spawn)?;
    Ok(Running { pid, port })
}
