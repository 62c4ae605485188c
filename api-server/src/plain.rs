//! The API's optional listener without TLS (config `api.plain_http`): a
//! port bound to one network interface with SO_BINDTODEVICE, so only
//! connections that arrive on that interface reach it, whatever address
//! the interface has or gets from DHCP later. It is for clients that
//! cannot be given the appliance's certificate (E2B's SDK trusts only the
//! OS store) on a network the owner trusts: tokens cross it in the clear.

use nix::sys::socket::{
    self as sock, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn,
};
use paddock_api_channel::PlainHttp;
use std::ffi::OsString;

#[derive(Debug, thiserror::Error)]
#[error("plain HTTP on {interface} port {port}: {step}: {source}")]
pub struct BindError {
    interface: String,
    port: u16,
    step: &'static str,
    source: nix::Error,
}

/// Binds `0.0.0.0:port` on `interface` only, listening, non-blocking.
pub fn bind(plain: &PlainHttp) -> Result<std::net::TcpListener, BindError> {
    let fail = |step| {
        move |source| BindError {
            interface: plain.interface.clone(),
            port: plain.port,
            step,
            source,
        }
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(fail("socket"))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail("SO_REUSEADDR"))?;
    // Before bind: from here the socket sees that interface's traffic only.
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &OsString::from(&plain.interface),
    )
    .map_err(fail("binding to the interface"))?;
    sock::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(0, 0, 0, 0, plain.port),
    )
    .map_err(fail("bind"))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN)).map_err(fail("listen"))?;
    Ok(std::net::TcpListener::from(fd))
}
