//! Messages between the API process and host-init. One JSON object per
//! SOCK_SEQPACKET message, each capped, so a compromised API process can
//! neither make the privileged side allocate without bound nor confuse it
//! with a malformed message.
//!
//! The control socket (fd 3 in the API process) carries the start-up
//! exchange (`Init`, `Started`) and then only `Open` messages, each with a
//! fresh socket attached: one exchange, one request and its reply. So calls
//! run side by side: a workspace being created does not hold up a health
//! check, an exec, or another create.

use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Longest message either side accepts.
pub const MAX_LINE: usize = 64 * 1024;
/// Longest answer host-init sends back on an exchange (a page of audit
/// events, an hour of samples, a network record): requests stay small,
/// answers may not.
pub const MAX_REPLY: usize = 4 << 20;
/// The descriptor the API process finds its control socket on.
pub const CHANNEL_FD: i32 = 3;

/// One end of a SOCK_SEQPACKET socket: every send is one whole message
/// (boundaries kept, so a descriptor always travels with the message it
/// belongs to and a reader can never consume half of the next one).
/// Messages are capped at `MAX_LINE` unless `with_limits` says otherwise.
pub struct Endpoint {
    sock: UnixStream,
    send_limit: usize,
    recv_limit: usize,
}

impl Endpoint {
    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> Result<(Endpoint, Endpoint), ChannelError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ChannelError::Io(e.into()))?;
        Ok((Endpoint::from(a), Endpoint::from(b)))
    }

    /// The same endpoint with messages capped at `send` bytes going out
    /// and `recv` coming in (PID 1's policy updates to the network
    /// services are bigger than what it takes back from them).
    pub fn with_limits(self, send: usize, recv: usize) -> Endpoint {
        Endpoint {
            send_limit: send,
            recv_limit: recv,
            ..self
        }
    }

    /// Takes over a descriptor inherited at `fd`.
    ///
    /// # Safety
    /// `fd` must be an open SOCK_SEQPACKET socket that nothing else owns.
    pub unsafe fn from_raw(fd: i32) -> Endpoint {
        // SAFETY: the caller vouches that the descriptor is ours alone.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        Endpoint {
            sock,
            send_limit: MAX_LINE,
            recv_limit: MAX_LINE,
        }
    }

    pub fn raw(&self) -> i32 {
        self.sock.as_raw_fd()
    }

    /// Bounds how long `recv` waits (None: forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), ChannelError> {
        self.sock.set_read_timeout(t)?;
        self.sock.set_write_timeout(t)?;
        Ok(())
    }

    /// Bounds how long `send` waits for room (None: forever), leaving
    /// `recv` as it is.
    pub fn set_send_timeout(&self, t: Option<Duration>) -> Result<(), ChannelError> {
        self.sock.set_write_timeout(t)?;
        Ok(())
    }

    /// Sends one JSON message, with a descriptor attached when given.
    pub fn send<T: Serialize>(&self, msg: &T, fd: Option<&impl AsFd>) -> Result<(), ChannelError> {
        self.send_with(msg, fd, nix::sys::socket::MsgFlags::empty())
    }

    /// `send`, but failing at once (EAGAIN) rather than waiting when the
    /// peer has not taken what was sent before: for a caller that must
    /// never block (the API process's async side).
    pub fn send_now<T: Serialize>(
        &self,
        msg: &T,
        fd: Option<&impl AsFd>,
    ) -> Result<(), ChannelError> {
        self.send_with(msg, fd, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
    }

    fn send_with<T: Serialize>(
        &self,
        msg: &T,
        fd: Option<&impl AsFd>,
        flags: nix::sys::socket::MsgFlags,
    ) -> Result<(), ChannelError> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let body = serde_json::to_vec(msg).map_err(|e| ChannelError::Malformed(e.to_string()))?;
        if body.len() > self.send_limit {
            return Err(ChannelError::TooLong(self.send_limit));
        }
        let iov = [std::io::IoSlice::new(&body)];
        let raw = fd.map(|f| [f.as_fd().as_raw_fd()]);
        let cmsg: Vec<ControlMessage> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
        let sent = sendmsg::<()>(
            self.raw(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL | flags,
            None,
        )
        .map_err(|e| ChannelError::Io(e.into()))?;
        if sent != body.len() {
            return Err(ChannelError::Malformed("message sent in part".into()));
        }
        Ok(())
    }

    /// Receives one message and the descriptor that came with it, if any.
    /// A message that is too long, does not parse, or carries more than one
    /// descriptor is an error (extra descriptors are closed, never used).
    pub fn recv<T: for<'de> Deserialize<'de>>(&self) -> Result<(T, Option<OwnedFd>), ChannelError> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        // The message's length first (a peek, MSG_TRUNC: its whole length),
        // so a buffer the size of the limit is not taken for every small
        // message (answers may be 4 MiB; most are a few hundred bytes).
        let mut probe = [0u8; 1];
        let whole = nix::sys::socket::recv(
            self.raw(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        )
        .map_err(|e| ChannelError::Io(e.into()))?;
        let mut buf = vec![0u8; whole.clamp(1, self.recv_limit + 1)];
        // Room for as many descriptors as one message can carry (the
        // kernel's SCM_MAX_FD): extra ones a sender attached are received
        // and closed here, so a truncated control message means only one
        // thing, that this process had no descriptor left to take one.
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 253]);
        let (n, flags, fds) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                self.raw(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| ChannelError::Io(e.into()))?;
            if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                return Err(ChannelError::DescriptorLost);
            }
            let mut fds = Vec::new();
            for c in msg.cmsgs().map_err(|e| ChannelError::Io(e.into()))? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    for fd in raw {
                        // SAFETY: the kernel just installed this descriptor
                        // for us; owning it makes sure it gets closed.
                        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                }
            }
            (msg.bytes, msg.flags, fds)
        };
        if n == 0 && fds.is_empty() {
            return Err(ChannelError::Closed);
        }
        if flags.contains(MsgFlags::MSG_TRUNC) || n > self.recv_limit {
            return Err(ChannelError::TooLong(self.recv_limit));
        }
        if fds.len() > 1 {
            return Err(ChannelError::Malformed("more than one descriptor".into()));
        }
        let msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| ChannelError::Malformed(e.to_string()))?;
        Ok((msg, fds.into_iter().next()))
    }
}

impl std::os::fd::AsRawFd for Endpoint {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl From<OwnedFd> for Endpoint {
    /// The descriptor must be a SOCK_SEQPACKET socket (one that came
    /// attached to an `Open`).
    fn from(fd: OwnedFd) -> Endpoint {
        Endpoint {
            sock: fd.into(),
            send_limit: MAX_LINE,
            recv_limit: MAX_LINE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("channel closed")]
    Closed,
    #[error("message longer than {0} bytes")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message's descriptor could not be taken (this process is at its
    /// descriptor limit): that message is lost, the channel is fine.
    #[error("a descriptor sent with the message was lost: no descriptor left to receive it")]
    DescriptorLost,
}

/// A short digest of a whole argv: which command, without keeping it
/// (an argv may carry what its user would rather not have kept).
pub fn command_digest(argv: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in argv {
        h.update((a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// host-init → API, once at start.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub cert_pem: String,
    pub key_pem: String,
    pub port: u16,
    /// The API without TLS on one interface, when configured.
    #[serde(default)]
    pub plain_http: Option<PlainHttp>,
    /// The box's DNS domain (config `api.domain`), for E2B's host names:
    /// `api.{domain}` and `49983-{id}.{domain}`.
    #[serde(default)]
    pub domain: Option<String>,
}

/// Where the API also listens without TLS: a port on one interface
/// (SO_BINDTODEVICE), so it is reachable from that network only.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlainHttp {
    pub interface: String,
    pub port: u16,
}

/// API → host-init, once bound (or failed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Started {
    pub port: Option<u16>,
    pub error: Option<String>,
    /// The plain-HTTP port, when one is configured and bound.
    #[serde(default)]
    pub plain_port: Option<u16>,
    /// Why the configured plain-HTTP listener is not serving (the TLS
    /// port serves regardless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_error: Option<String>,
}

/// API → host-init on the control socket: "here is a new exchange" (the
/// socket is attached).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open;

/// API → host-init, the one request of an exchange.
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
    /// Ends a running workspace `ttl_s` seconds from now, sooner or later
    /// than it would have (create scope; past the token's `max_ttl_s` its
    /// policy decides, `reason` is for the approver).
    SetTtl {
        id: String,
        ttl_s: u64,
        #[serde(default)]
        reason: Option<String>,
    },
    /// New disk rate limits for a running workspace (admin).
    SetLimits {
        id: String,
        request: serde_json::Value,
    },
    /// A workspace port reachable from the uplink (admin).
    PublishPort {
        id: String,
        request: serde_json::Value,
    },
    UnpublishPort {
        id: String,
        port: String,
    },
    /// Directed private links between workspaces (admin).
    ListLinks,
    CreateLink {
        request: serde_json::Value,
    },
    DeleteLink {
        id: String,
    },
    /// A new egress allowlist, in force at once (admin).
    SetEgress {
        id: String,
        request: serde_json::Value,
    },
    /// Freeze, revoke its tokens, take a forensic snapshot (admin).
    QuarantineWorkspace {
        id: String,
    },
    /// One file of a workspace's forensic snapshot, passed back as a
    /// descriptor (admin).
    ForensicFile {
        id: String,
        name: String,
    },
    DeleteForensics {
        id: String,
    },
    /// A new secret for a token (admin, or the token that minted it).
    RotateToken {
        id: String,
    },
    /// A new TLS identity for the API (admin).
    RotateTls,
    /// How the disk keys are held (admin).
    KeyStatus,
    /// Re-seal the disk keys to this boot state with the recovery secret
    /// (admin).
    RecoverKeys {
        secret: String,
    },
    /// Test images only: which host processes hold `needle` in their argv
    /// or environment (admin).
    ScanProcesses {
        needle: String,
    },
    /// Test images only: open a workspace's disk with the key the key store
    /// holds for it, read-only, and say whether an ext4 filesystem is there
    /// (admin). Proves from outside which disks the box can still read.
    ProbeDisk {
        id: String,
    },
    /// Test images only: the end of a workspace's serial console (the
    /// demo's too), to see from outside why a guest did not come up (admin).
    ReadConsole {
        name: String,
    },
    /// Test images only: write back and drop the host's page cache, so a
    /// benchmark's next read reaches the disk (and dm-crypt) (admin).
    DropCaches,
    /// Test images only: SIGKILL the network services process (resolver,
    /// egress proxy), to see that it comes back with its policy (admin).
    KillNetServices,
    /// A workspace's brokered secrets (no values).
    ListSecrets {
        id: String,
    },
    /// Adds or rotates one (create scope).
    SetSecret {
        id: String,
        name: String,
        request: serde_json::Value,
    },
    RemoveSecret {
        id: String,
        name: String,
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
        /// Which command it was (`command_digest` of its whole argv), so
        /// the same command failing again is told from others.
        #[serde(default)]
        command: String,
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
    /// A workspace's samples (control::samples) from `since` on.
    WorkspaceMetrics {
        id: String,
        since: u64,
    },
    /// Approvals, `state` one of pending, approved, denied, expired (every
    /// one for an admin, its own asks for any other token).
    ListApprovals {
        state: Option<String>,
    },
    /// One approval (an admin's, or the asker's).
    GetApproval {
        id: String,
    },
    /// Approve (for a while) or deny a pending approval (admin).
    DecideApproval {
        id: String,
        request: serde_json::Value,
    },
    /// A workspace's report (all but its changed files, which the API
    /// process asks its agent for).
    WorkspaceReport {
        id: String,
    },
    /// Where a workspace connected (control::netlog): records ending at or
    /// after `since`, of one decision if given, the newest `limit`.
    NetworkLog {
        id: String,
        since: u64,
        decision: Option<String>,
        limit: usize,
    },
    /// Who the bearer is, before any body is read: `{"token", "admin",
    /// "tenant"}` or the refusal.
    WhoAmI,
    ReadAudit {
        filters: Vec<(String, String)>,
        limit: usize,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Purpose {
    /// A command: `root` when it runs as the guest's root, `terminal` when
    /// on a pseudo-terminal (both audited with `exec_started`).
    Exec {
        argv0: String,
        #[serde(default)]
        root: bool,
        #[serde(default)]
        terminal: bool,
    },
    /// `root`: as the guest's root rather than its `agent` user.
    ReadFile {
        path: String,
        #[serde(default)]
        root: bool,
    },
    WriteFile {
        path: String,
        #[serde(default)]
        root: bool,
    },
    /// A file's or directory's metadata (stat, listing): not audited.
    Inspect {
        path: String,
        #[serde(default)]
        root: bool,
    },
    /// A change to the tree that writes no contents: `op` is "mkdir",
    /// "remove" or "move" (to `to`).
    Modify {
        op: String,
        path: String,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        root: bool,
    },
    /// An operation on a process started to outlive its connection (exec
    /// scope, as starting one), named by pid or tag. All but listing and
    /// resizing are audited.
    Process {
        action: ProcessAction,
        #[serde(default)]
        pid: Option<u32>,
        #[serde(default)]
        tag: Option<String>,
    },
    /// The names and sizes of what the workspace changed against its
    /// template, for its report (files scope; not audited).
    Changes,
}

/// What a `Purpose::Process` does.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    List,
    /// Input to its stdin or terminal (how many bytes; never what).
    Input {
        bytes: u64,
    },
    CloseInput,
    Signal {
        signal: i32,
    },
    Resize,
    /// Its output, from now on.
    Attach,
}

/// What became of a call, as the control plane says it: done, or why not.
/// The API process says it in HTTP (`api::http::status_of`); the control
/// plane knows nothing of HTTP.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Created,
    /// Recorded, not done: it waits for a person's approval.
    Accepted,
    /// The request itself is malformed.
    BadRequest,
    /// No token, or one that is invalid, expired or revoked.
    Unauthenticated,
    /// The token may not do this (or see what it names).
    Forbidden,
    NotFound,
    /// Not now: a quota, the box's capacity, or the thing's state.
    Conflict,
    TooLarge,
    /// Well-formed but out of range, unknown or missing fields.
    Invalid,
    TooMany,
    /// Something on the box failed; nothing the caller can fix.
    Failed,
    /// A part it needs is not ready (keys, firewall, an agent).
    Unavailable,
    NoSpace,
}

/// host-init → API, for a Call: the verdict and JSON body to answer
/// with; `fd` says a descriptor (a connection to a workspace's agent) is
/// attached to this message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallReply {
    pub verdict: Verdict,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn round_trip_with_and_without_descriptors() {
        let (a, b) = Endpoint::pair().expect("pair");
        a.send(&Request::Status, None::<&OwnedFd>).expect("send");
        let (back, fd) = b.recv::<Request>().expect("recv");
        assert_eq!(back, Request::Status);
        assert!(fd.is_none());

        let (mut x, mut y) = UnixStream::pair().expect("stream pair");
        b.send(&Open, Some(&x)).expect("send fd");
        let (_, fd) = a.recv::<Open>().expect("recv fd");
        let mut passed = UnixStream::from(fd.expect("a descriptor"));
        passed.write_all(b"hi").expect("write");
        let mut got = [0u8; 2];
        y.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hi");
        x.write_all(b"!").expect("still ours too");
    }

    #[test]
    fn hostile_messages_are_errors() {
        let (a, b) = Endpoint::pair().expect("pair");
        let raw = |bytes: &[u8]| {
            nix::sys::socket::send(a.raw(), bytes, nix::sys::socket::MsgFlags::empty())
                .expect("raw send")
        };
        raw(br#"{"op":"format_disk"}"#);
        assert!(matches!(
            b.recv::<Request>(),
            Err(ChannelError::Malformed(_))
        ));
        raw(&vec![b'x'; MAX_LINE + 10]);
        assert!(matches!(b.recv::<Request>(), Err(ChannelError::TooLong(_))));
        // Two descriptors where one is allowed: refused, both closed.
        let (s1, _k1) = UnixStream::pair().expect("pair");
        let (s2, _k2) = UnixStream::pair().expect("pair");
        let fds = [s1.as_raw_fd(), s2.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"null")];
        nix::sys::socket::sendmsg::<()>(
            a.raw(),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        assert!(matches!(b.recv::<Open>(), Err(ChannelError::Malformed(_))));
        drop(a);
        assert!(matches!(b.recv::<Request>(), Err(ChannelError::Closed)));
    }
}
