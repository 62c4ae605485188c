//! AF_VSOCK streams for code inside the guest (std has no vsock support).

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

pub const HOST_CID: u32 = 2;
const VMADDR_CID_ANY: u32 = u32::MAX;

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// Connects to `cid:port`; the stream is returned as a File for Read/Write.
pub fn connect(cid: u32, port: u32) -> io::Result<File> {
    let fd = socket()?;
    let a = addr(cid, port);
    // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes for this call.
    let r = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&a as *const libc::sockaddr_vm).cast(),
            ADDR_LEN,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(fd))
}

/// A listening vsock socket.
pub struct Listener(OwnedFd);

impl Listener {
    /// Listens on `port` for connections from any CID.
    pub fn bind(port: u32) -> io::Result<Listener> {
        let fd = socket()?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let a = addr(VMADDR_CID_ANY, port);
        // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes.
        if unsafe { libc::bind(raw, (&a as *const libc::sockaddr_vm).cast(), ADDR_LEN) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: listen on a bound socket we own.
        if unsafe { libc::listen(raw, 128) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Listener(fd))
    }

    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<File> {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        loop {
            // SAFETY: null peer address is allowed by accept4.
            let c = unsafe {
                libc::accept4(
                    raw,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if c >= 0 {
                // SAFETY: c is a fresh descriptor we own.
                return Ok(File::from(unsafe { OwnedFd::from_raw_fd(c) }));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Listens on `port` for any CID and returns the first accepted stream.
pub fn accept_one(port: u32) -> io::Result<File> {
    Listener::bind(port)?.accept()
}

/// Half-closes the write side, so the peer reads EOF.
pub fn shutdown_write(f: &File) -> io::Result<()> {
    // SAFETY: shutdown on a socket fd we own.
    let r = unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(f), libc::SHUT_WR) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
