//! The transport: one JSON message per SOCK_SEQPACKET send, capped, with
//! at most one descriptor attached.

use crate::MAX_LINE;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Open, Request};
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
