//! The netlink socket: a batch sent and its acknowledgements read, and
//! rule counters dumped and parsed back (the kernel's replies are checked,
//! never trusted to be well formed).

use super::encode::{describe, encode_op, nft_kind, Msg};
use super::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    /// The send and receive buffers asked for so far (`make_room`).
    sndbuf: usize,
    rcvbuf: usize,
}

impl Netlink {
    pub fn open() -> Result<Netlink, NftError> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a pointer to a local timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Netlink {
            fd,
            seq: 1,
            sndbuf: 0,
            rcvbuf: 0,
        })
    }

    /// Makes room for a batch of `send` bytes and `answers` bytes of
    /// answers to it. The whole batch is one message, refused (EMSGSIZE)
    /// when larger than the send buffer; and the kernel answers every
    /// operation before we read any, each answer a buffer of about a
    /// kilobyte however small its message, so the default queues (about
    /// 200 KiB) overflow at a dozen workspaces: the answers are then lost
    /// and the batch's outcome unknown (ENOBUFS). The `*FORCE` options
    /// (host-init has CAP_NET_ADMIN) are not capped by `net.core.*mem_max`;
    /// the plain ones are the fallback.
    fn make_room(&mut self, send: usize, answers: usize) -> Result<(), NftError> {
        for (want, have, force, plain) in [
            (
                send,
                &mut self.sndbuf,
                libc::SO_SNDBUFFORCE,
                libc::SO_SNDBUF,
            ),
            (
                answers,
                &mut self.rcvbuf,
                libc::SO_RCVBUFFORCE,
                libc::SO_RCVBUF,
            ),
        ] {
            if want <= *have {
                continue;
            }
            let value = i32::try_from(want).unwrap_or(i32::MAX);
            let set = |option: i32| {
                // SAFETY: setsockopt with a pointer to a local int of the right size.
                unsafe {
                    libc::setsockopt(
                        self.fd.as_raw_fd(),
                        libc::SOL_SOCKET,
                        option,
                        (&value as *const i32).cast(),
                        std::mem::size_of::<i32>() as u32,
                    )
                }
            };
            if set(force) != 0 && set(plain) != 0 {
                return Err(NftError::Socket(std::io::Error::last_os_error()));
            }
            *have = want;
        }
        Ok(())
    }

    pub(super) fn send(&self, buf: &[u8]) -> Result<(), NftError> {
        // SAFETY: send from a buffer we own, its length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 || n as usize != buf.len() {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    pub(super) fn recv(&self, buf: &mut [u8]) -> Result<usize, NftError> {
        // SAFETY: recv into a buffer we own, its length given.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        Ok(n as usize)
    }

    /// Applies `ops` to `table` atomically: all of them or, on the first
    /// refusal, none (the kernel aborts the whole batch).
    pub fn apply(&mut self, table: &str, ops: &[Op]) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let first = self.seq;
        let mut buf = Msg::new(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first,
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();
        for (i, op) in ops.iter().enumerate() {
            buf.extend(encode_op(op, table, first + 1 + i as u32));
        }
        let last = first + ops.len() as u32;
        buf.extend(
            Msg::new(
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                last + 1,
                0,
                NFNL_SUBSYS_NFTABLES,
            )
            .finish(),
        );
        self.seq = last + 2;
        // The batch with room to spare (the kernel counts its own
        // overhead), and every answer (about 1 KiB each; twice that).
        self.make_room(
            (buf.len() * 2).max(1 << 20),
            (ops.len() * 2048).max(1 << 20),
        )?;
        self.send(&buf)?;
        // One ack per operation; an error names the operation by its seq.
        let mut acked = 0usize;
        let mut rbuf = vec![0u8; 1 << 16];
        while acked < ops.len() {
            let n = match self.recv(&mut rbuf) {
                Ok(n) => n,
                Err(NftError::Socket(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(NftError::NoAnswer(format!(
                        "a batch of {} operations",
                        ops.len()
                    )))
                }
                // Answers lost: the batch may have been applied or not;
                // the next change rebuilds the whole table either way.
                Err(NftError::Socket(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(NftError::NoAnswer(format!(
                        "a batch of {} operations (its answers overflowed the socket's receive queue)",
                        ops.len()
                    )))
                }
                Err(e) => return Err(e),
            };
            for (kind, seq, payload) in messages(&rbuf[..n])? {
                // Only this batch's answers count: anything older (the acks
                // of a batch that failed part way) is left behind.
                if kind != NLMSG_ERROR || !(first + 1..=last).contains(&seq) {
                    continue;
                }
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(NftError::Malformed("short error message"))?;
                if code != 0 {
                    let what = seq
                        .checked_sub(first + 1)
                        .and_then(|i| ops.get(i as usize))
                        .map(describe)
                        .unwrap_or_else(|| format!("the batch (seq {seq})"));
                    return Err(NftError::Refused {
                        what,
                        source: std::io::Error::from_raw_os_error(-code),
                    });
                }
                acked += 1;
            }
        }
        Ok(())
    }

    /// Packets and bytes of every counter in `chain`'s rules, by the rules' tags.
    pub fn counters(
        &mut self,
        table: &str,
        chain: &str,
    ) -> Result<Vec<(String, u64, u64)>, NftError> {
        let seq = self.seq;
        self.seq += 1;
        let mut m = Msg::new(
            nft_kind(NFT_MSG_GETRULE),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_INET,
            0,
        );
        m.str(1, table).str(2, chain);
        self.send(&m.finish())?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 1 << 16];
        loop {
            let n = self.recv(&mut rbuf)?;
            for (kind, got, payload) in messages(&rbuf[..n])? {
                if got != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EPROTO);
                        return Err(NftError::Refused {
                            what: format!("reading chain {chain}"),
                            source: std::io::Error::from_raw_os_error(-code),
                        });
                    }
                    k if k == nft_kind(NFT_MSG_NEWRULE) => {
                        if let Some(c) = rule_counter(payload.get(4..).unwrap_or_default())? {
                            out.push(c);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Splits a netlink datagram into (type, seq, payload) messages.
/// (type, seq, payload) of one netlink message.
pub(super) type Message<'a> = (u16, u32, &'a [u8]);

pub(super) fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, NftError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(NftError::Malformed("message length"));
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let seq = u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
        out.push((kind, seq, &buf[at + 16..at + len]));
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// Attributes of a nested block: (type without flags, payload).
pub(super) fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, NftError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return Err(NftError::Malformed("attribute length"));
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    Ok(out)
}

pub(super) fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// A dumped rule's tag and its counter's packets and bytes, if it has both.
pub(super) fn rule_counter(payload: &[u8]) -> Result<Option<(String, u64, u64)>, NftError> {
    let mut tag = None;
    let mut counter = None;
    for (kind, data) in attrs(payload)? {
        match kind {
            7 => tag = Some(String::from_utf8_lossy(data).to_string()),
            4 => {
                for (_, elem) in attrs(data)? {
                    let fields = attrs(elem)?;
                    let is_counter = fields
                        .iter()
                        .any(|(k, v)| *k == 1 && v.starts_with(b"counter"));
                    if !is_counter {
                        continue;
                    }
                    if let Some((_, d)) = fields.iter().find(|(k, _)| *k == 2) {
                        let inner = attrs(d)?;
                        let get = |k: u16| {
                            inner
                                .iter()
                                .find(|(x, _)| *x == k)
                                .and_then(|(_, v)| be_u64(v))
                        };
                        counter = Some((get(2).unwrap_or(0), get(1).unwrap_or(0)));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(match (tag, counter) {
        (Some(t), Some((packets, bytes))) => Some((t, packets, bytes)),
        _ => None,
    })
}
