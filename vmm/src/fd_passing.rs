//! Descriptors over a Unix socket (SCM_RIGHTS), for the control socket's
//! snapshot request: std has no stable API for ancillary data.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one message may carry; more are closed and refused.
pub const MAX_FDS: usize = 4;

/// Space for a control message carrying `MAX_FDS` descriptors, aligned
/// for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Reads once into `buf`, adding any descriptors that came with the bytes
/// to `fds` (close-on-exec). A message with more than `MAX_FDS` has all
/// of them closed and is an error.
pub fn recv(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: a zeroed msghdr is valid; the pointers set below point at
    // `iov` and `cmsg`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.0.len();
    // SAFETY: recvmsg on a socket we own, with a msghdr describing live
    // buffers of the stated lengths.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut got = Vec::new();
    // SAFETY: the CMSG_* walk stays within msg_controllen bytes of the
    // buffer the kernel filled; each SCM_RIGHTS payload is an array of
    // ints the kernel installed as new descriptors in this process, which
    // we take ownership of exactly once.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    got.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() + got.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "more than {MAX_FDS} descriptors came with the request"
        )));
    }
    fds.extend(got);
    Ok(n as usize)
}

/// Writes all of `data`, with `fds` attached to the first byte.
pub fn send(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "at most {MAX_FDS} descriptors per message"
        )));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cmsg = CmsgBuf([0; 64]);
    // SAFETY: as in `recv`; the control message is built inside `cmsg`,
    // whose size covers CMSG_SPACE of MAX_FDS ints.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !raw.is_empty() {
            let payload = std::mem::size_of_val(raw.as_slice()) as u32;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(payload) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(c),
                payload as usize,
            );
        }
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    if n < data.len() {
        use std::io::Write;
        let mut s = sock;
        s.write_all(&data[n..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_arrive_with_their_bytes() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut file = tempfile();
        file.write_all(b"through the socket").expect("write");
        send(&a, b"hello\n", &[file.as_fd()]).expect("send");
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv(&b, &mut buf, &mut fds).expect("recv");
        assert_eq!(&buf[..n], b"hello\n");
        assert_eq!(fds.len(), 1);
        let mut got = std::fs::File::from(fds.remove(0));
        got.rewind().expect("seek");
        let mut text = String::new();
        got.read_to_string(&mut text).expect("read");
        assert_eq!(text, "through the socket");
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let (a, b) = UnixStream::pair().expect("pair");
        let f = tempfile();
        let many: Vec<_> = (0..MAX_FDS).map(|_| f.as_fd()).collect();
        send(&a, b"x", &many).expect("send");
        send(&a, b"y", &[f.as_fd()]).expect("send");
        let mut fds = Vec::new();
        let mut buf = [0u8; 1];
        recv(&b, &mut buf, &mut fds).expect("first four fit");
        assert!(recv(&b, &mut buf, &mut fds).is_err(), "a fifth is refused");
        assert!(send(&a, b"z", &[f.as_fd(); MAX_FDS + 1]).is_err());
    }

    fn tempfile() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "paddock-fdpass-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("tempfile");
        let _ = std::fs::remove_file(&path);
        f
    }
}
