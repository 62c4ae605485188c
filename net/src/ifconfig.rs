//! Interface configuration through the classic socket ioctls: enough for
//! one IPv4 address and a default route, without a netlink library.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
#[error("{what} on {iface}: {source}")]
pub struct IfError {
    what: &'static str,
    iface: String,
    source: std::io::Error,
}

fn control_socket(iface: &str) -> Result<OwnedFd, IfError> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(IfError {
            what: "opening a control socket",
            iface: iface.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(iface: &str) -> Result<libc::ifreq, IfError> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
        return Err(IfError {
            what: "naming the interface",
            iface: iface.to_string(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux, and a
    // sockaddr holding an AF_INET address is exactly how the ioctls take it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl(
    sock: &OwnedFd,
    request: libc::c_ulong,
    arg: *mut libc::c_void,
    what: &'static str,
    iface: &str,
) -> Result<(), IfError> {
    // SAFETY: `arg` points at the struct type `request` expects, alive for
    // the duration of the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(IfError {
            what,
            iface: iface.to_string(),
            source: std::io::Error::last_os_error(),
        })
    } else {
        Ok(())
    }
}

pub fn set_up(iface: &str) -> Result<(), IfError> {
    let sock = control_socket(iface)?;
    let mut req = ifreq_for(iface)?;
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
        "reading flags",
        iface,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
        "bringing up",
        iface,
    )
}

pub fn set_address(iface: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), IfError> {
    let sock = control_socket(iface)?;
    let mut req = ifreq_for(iface)?;
    req.ifr_ifru.ifru_addr = sockaddr(ip);
    ioctl(
        &sock,
        libc::SIOCSIFADDR,
        (&mut req as *mut libc::ifreq).cast(),
        "setting the address",
        iface,
    )?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    let mut req = ifreq_for(iface)?;
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    ioctl(
        &sock,
        libc::SIOCSIFNETMASK,
        (&mut req as *mut libc::ifreq).cast(),
        "setting the netmask",
        iface,
    )
}

pub fn add_default_route(iface: &str, gateway: Ipv4Addr) -> Result<(), IfError> {
    let sock = control_socket(iface)?;
    let mut dev: Vec<libc::c_char> = iface.bytes().map(|b| b as libc::c_char).collect();
    dev.push(0);
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    rt.rt_dev = dev.as_mut_ptr();
    match ioctl(
        &sock,
        libc::SIOCADDRT,
        (&mut rt as *mut libc::rtentry).cast(),
        "adding the default route",
        iface,
    ) {
        Err(e) if e.source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}
