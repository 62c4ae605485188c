//! Messages on the channel between the API process and host-init. One JSON
//! object per line, each line capped, so a compromised API process can
//! neither make the privileged side allocate without bound nor confuse it
//! with a malformed message.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// Longest line either side accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// The descriptor the API process finds the channel on.
pub const CHANNEL_FD: i32 = 3;
/// The descriptor channel: one byte plus one SCM_RIGHTS descriptor per
/// message, sent only right after a CallReply that says so.
pub const FD_CHANNEL_FD: i32 = 4;

/// Sends `fd` over a Unix socket with SCM_RIGHTS.
pub fn send_fd(
    sock: &impl std::os::fd::AsRawFd,
    fd: std::os::fd::RawFd,
) -> Result<(), ChannelError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(b"F")];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| ChannelError::Io(e.into()))?;
    Ok(())
}

/// Receives one descriptor sent by [`send_fd`].
pub fn recv_fd(sock: &impl std::os::fd::AsRawFd) -> Result<std::os::fd::OwnedFd, ChannelError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ChannelError::Io(e.into()))?;
    let mut got = None;
    for c in msg.cmsgs().map_err(|e| ChannelError::Io(e.into()))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    got.ok_or_else(|| ChannelError::Malformed("no descriptor arrived".into()))
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("channel closed")]
    Closed,
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// host-init → API, once at start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub cert_pem: String,
    pub key_pem: String,
    pub port: u16,
}

/// API → host-init, once bound (or failed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub port: Option<u16>,
    pub error: Option<String>,
}

/// API → host-init.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    /// One API call, with the caller's bearer secret ("" when none).
    Call {
        auth: String,
        call: Call,
    },
}

/// The API calls host-init decides; bodies travel as parsed JSON and are
/// validated on this side.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    CreateWorkspace {
        spec: serde_json::Value,
    },
    ListWorkspaces {
        labels: Vec<(String, String)>,
    },
    GetWorkspace {
        id: String,
    },
    DeleteWorkspace {
        id: String,
    },
    StopWorkspace {
        id: String,
    },
    /// A connection to the workspace's agent, passed back as a descriptor.
    OpenAgent {
        id: String,
        purpose: Purpose,
    },
    ExecEnded {
        id: String,
        argv0: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
    },
    CreateToken {
        request: serde_json::Value,
    },
    ListTokens,
    RevokeToken {
        id: String,
    },
    /// Prometheus text for the workspaces the token may see, and the host.
    Metrics,
    ReadAudit {
        filters: Vec<(String, String)>,
        limit: usize,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Purpose {
    Exec { argv0: String },
    ReadFile { path: String },
    WriteFile { path: String },
}

/// host-init → API, for a Call: the HTTP status and JSON body to answer
/// with; `fd` says a descriptor follows on the descriptor channel.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallReply {
    pub status: u16,
    pub body: serde_json::Value,
    pub fd: bool,
}

/// host-init → API.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatusReply {
    pub version: String,
    pub state: String,
    pub workspaces: u32,
    pub uptime_s: u64,
}

pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ChannelError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    if line.len() >= MAX_LINE {
        return Err(ChannelError::TooLong);
    }
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

pub fn recv<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> Result<T, ChannelError> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ChannelError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE {
            ChannelError::TooLong
        } else {
            ChannelError::Closed
        });
    }
    serde_json::from_slice(&line).map_err(|e| ChannelError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn round_trip_and_hostile_lines() {
        let mut buf = Vec::new();
        send(&mut buf, &Request::Status).expect("send");
        let back: Request = recv(&mut BufReader::new(&buf[..])).expect("recv");
        assert_eq!(back, Request::Status);

        let r: Result<Request, _> = recv(&mut BufReader::new(&b"{\"op\":\"format_disk\"}\n"[..]));
        assert!(matches!(r, Err(ChannelError::Malformed(_))));
        let long = vec![b'x'; MAX_LINE + 10];
        let r: Result<Request, _> = recv(&mut BufReader::new(&long[..]));
        assert!(matches!(r, Err(ChannelError::TooLong)));
        let r: Result<Request, _> = recv(&mut BufReader::new(&b""[..]));
        assert!(matches!(r, Err(ChannelError::Closed)));
    }
}
